#!/usr/bin/env bash
# CNI ADD/DEL latency through libcni and of the plugins alone, ours against the
# reference Go plugins in one interleaved run, serial and 16 pods at once,
# plus each plugin process's peak RSS. Tables on stdout.
# BENCH_CNI_ITERATIONS (default 30) and BENCH_CNI_ROUNDS (default 3) buy
# more samples; the defaults finish in well under 3 minutes.
# Needs root; everything runs in network namespaces and temp dirs the
# benchmark creates and removes again, also on Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh" bench-cni
exec "$root/target/release/bench_cni" "$@"
