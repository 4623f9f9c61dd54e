# Sourced by the demo and the benchmarks: the same start for each of them.
# Usage: source scripts/prelude.sh NAME   (NAME prefixes the error message)
# Checks for root (they create network namespaces), installs what they need
# (scripts/setup.sh), builds the release binaries, links the four CNI plugin
# names to flannel-rs-cni, and leaves the shell in the repository root with
# $root set.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "$1: must run as root (it creates network namespaces)" >&2; exit 2; }

bash "$root/scripts/setup.sh"
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
cd "$root"
echo "$1: cargo build --release --workspace" >&2
cargo build --release --workspace
sh scripts/link-plugins.sh target/release/flannel-rs-cni
