#!/usr/bin/env bash
# Pod-to-pod TCP throughput per flanneld backend (vxlan, vxlan+DirectRouting,
# host-gw, udp, userspace WireGuard) and Debian's wireguard-go next to the raw
# underlay between the same hosts, WireGuard's ceiling on this machine, and how
# long a new lease takes to become a route on a peer. Tables on stdout.
# BENCH_OVERLAY_REPEATS (default 3 runs of 2 s per figure, median reported),
# BENCH_OVERLAY_LEASES (default 10 leases timed per backend) and
# BENCH_OVERLAY_ONLY (a comma list of vxlan, vxlan-dr, host-gw, udp,
# wireguard, wireguard-go: run only those; ratios need vxlan among them).
# Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh" bench-overlay
exec "$root/target/release/bench_overlay" "$@"
