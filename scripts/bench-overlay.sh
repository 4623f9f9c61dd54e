#!/usr/bin/env bash
# Pod-to-pod TCP throughput per flanneld backend (vxlan, vxlan+DirectRouting,
# host-gw) next to the raw underlay between the same hosts, and how long a new
# lease takes to become a route on a peer. Tables on stdout.
# BENCH_OVERLAY_REPEATS (default 3 runs of 2 s per figure, median reported)
# and BENCH_OVERLAY_LEASES (default 10 leases timed per backend).
# Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "bench-overlay: must run as root (it creates network namespaces)" >&2; exit 2; }

bash "$root/scripts/setup.sh"
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
cd "$root"
cargo build --release --workspace
sh scripts/link-plugins.sh target/release/flannel-rs-cni
exec "$root/target/release/bench_overlay" "$@"
