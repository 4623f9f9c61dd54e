#!/usr/bin/env bash
# Scale: thousands of simulated nodes acquiring leases from one etcd at once
# (flanneld's own lease code; duplicates checked against an etcdctl listing;
# etcd's calls counted from its metrics), and one flanneld with thousands of
# peers: start-up route programming, new-lease-to-route latency, memory.
# Tables on stdout. Arguments go to the benchmark, e.g.
#   bench-scale.sh --nodes 1000,5000 --peers 1000,5000 --samples 200
# (the defaults; `--only leases|routes` runs half).
# Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh" bench-scale
# The benchmark links flanneld's lease code, which the bench crate leaves out by default.
cargo build --release -p bench --features scale --bin bench_scale
# Thousands of etcd connections (one per simulated node) need file descriptors.
ulimit -n "$(ulimit -Hn)"
exec "$root/target/release/bench_scale" "$@"
