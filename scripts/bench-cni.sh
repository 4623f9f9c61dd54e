#!/usr/bin/env bash
# CNI ADD/DEL latency through libcni and of the plugins alone, ours against the
# reference Go plugins in one interleaved run, serial and 16 pods at once,
# plus each plugin process's peak RSS. Tables on stdout.
# BENCH_CNI_ITERATIONS (default 30) and BENCH_CNI_ROUNDS (default 3) buy
# more samples; the defaults finish in well under 3 minutes.
# Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "bench-cni: must run as root (it creates network namespaces)" >&2; exit 2; }

bash "$root/scripts/setup.sh"
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
cd "$root"
cargo build --release --workspace
sh scripts/link-plugins.sh target/release/flannel-rs-cni
exec "$root/target/release/bench_cni" "$@"
