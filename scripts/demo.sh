#!/usr/bin/env bash
# The flannel-rs demo: prepares the machine (scripts/setup.sh), builds the
# workspace in release mode, then runs a three-host flannel cluster in
# network namespaces with our flanneld and CNI plugins, backend by backend
# (vxlan, vxlan+DirectRouting, host-gw), and prints pod-to-pod reachability,
# latency and throughput. Needs root; changes nothing outside the namespaces
# and temp dirs it creates, and removes those on exit or Ctrl-C.
# Exit status: 0 all pings answered, 1 some failed, 2 setup error, 130 Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "demo: must run as root (it creates network namespaces)" >&2; exit 2; }

bash "$root/scripts/setup.sh"
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
cd "$root"
echo "demo: cargo build --release --workspace" >&2
cargo build --release --workspace
sh scripts/link-plugins.sh target/release/flannel-rs-cni
exec "$root/target/release/demo" "$@"
