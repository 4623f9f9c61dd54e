#!/usr/bin/env bash
# The flannel-rs demo: prepares the machine (scripts/setup.sh), builds the
# workspace in release mode, then runs a three-host flannel cluster in
# network namespaces with our flanneld and CNI plugins, backend by backend
# (vxlan, vxlan+DirectRouting, host-gw), and prints pod-to-pod reachability,
# latency and throughput. Needs root; changes nothing outside the namespaces
# and temp dirs it creates, and removes those on exit or Ctrl-C.
# Exit status: 0 all pings answered, 1 some failed, 2 setup error, 130 Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh" demo
exec "$root/target/release/demo" "$@"
