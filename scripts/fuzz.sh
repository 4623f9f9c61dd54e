#!/usr/bin/env bash
# Fuzzes every parser and the CNI entry points in-process (the fuzz/ crate):
#   scripts/fuzz.sh [COUNT] [TARGET...]
# COUNT executions per target (default 1000000), all targets unless some are named.
# Each target runs in its own process, so a crash that kills the process (stack overflow,
# abort) is reported for that target and the others still run. Prints a table and exits
# non-zero if any target crashed; crash inputs are saved under fuzz/crashes/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
count="${1:-1000000}"
shift || true
if ! [[ $count =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [COUNT] [TARGET...]" >&2
  exit 2
fi

cd "$root"
cargo build --profile fuzz --quiet -p flannel-rs-fuzz --bin fuzz
bin="$root/target/fuzz/fuzz"
logs="$root/target/fuzz/logs"
mkdir -p "$logs"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <("$bin" list)
fi

failed=0
rows=()
for t in "${targets[@]}"; do
  start=$(date +%s.%N)
  if out="$("$bin" run "$t" "$count" 2>"$logs/$t.stderr")"; then
    rows+=("$(awk -F'\t' '$1 == "RESULT" {printf "%s\t%s\t%ss\t%s\t%s", $2, $3, $4, $5, $6}' <<<"$out")")
  else
    rc=$?
    failed=1
    line="$(awk -F'\t' '$1 == "RESULT" {printf "%s\t%s\t%ss\t%s\t%s", $2, $3, $4, $5, $6}' <<<"$out")"
    if [[ -z $line ]]; then
      # The process died before reporting: that is a crash the harness could not catch.
      secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
      line="$t	?	${secs}s	?	died (exit $rc)"
    fi
    rows+=("$line")
    sed 's/^/  /' "$logs/$t.stderr" >&2
  fi
done

{
  printf 'target\texecs\ttime\toutcomes\tcrashes\n'
  printf '%s\n' "${rows[@]}"
} | column -t -s $'\t'
exit "$failed"
