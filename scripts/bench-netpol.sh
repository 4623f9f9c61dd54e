#!/usr/bin/env bash
# NetworkPolicy benchmark: one node with 1,000 pods attached through the CNI
# chain and 200 policies enforced by flanneld --network-policy (kube mode
# against the test API server): table size as policies and pods grow, API
# change -> enforced latency measured by probe connections, pod-to-pod
# throughput with the policies against no table, flanneld's memory.
# BENCH_NETPOL_PODS (1000), BENCH_NETPOL_POLICIES (200), BENCH_NETPOL_EVENTS
# (100). Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh" bench-netpol
exec "$root/target/release/bench_netpol" "$@"
