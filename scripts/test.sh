#!/usr/bin/env bash
# The one command that runs every test: prepares the machine, builds the
# release binaries the conformance tests execute, runs all unit and
# conformance tests, then checks that nothing was left behind in the root
# network namespace. Extra arguments go to `cargo test`.
#
# Prints `N passed, N failed` (summed over cargo's `test result:` lines) last;
# exits non-zero if the build, any test, or the leak check failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf 'test.sh: %s\n' "$*" >&2; }

bash scripts/setup.sh
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

locked=()
[[ -f Cargo.lock ]] && locked=(--locked)
# The CNI plugins are one executable under four names (hard links); link-plugins.sh makes them.
if ! cargo build --release --workspace "${locked[@]}" ||
  ! sh scripts/link-plugins.sh target/release/flannel-rs-cni; then
  log "release build failed; no tests ran"
  echo "0 passed, 0 failed"
  exit 1
fi

# Root-namespace state, normalised so that only real changes show: packet
# counters, interface indexes and carrier state are dropped.
snapshot() {
  local dir="$1"
  mkdir -p "$dir"
  ip netns list | awk '{print $1}' | sort >"$dir/netns"
  ip -j -d link show |
    jq -r '.[] | "\(.ifname) kind=\(.linkinfo.info_kind // .link_type) mtu=\(.mtu) master=\(.master // "-")"' |
    sort >"$dir/links"
  iptables-save | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]//g' >"$dir/iptables"
  ip6tables-save | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]//g' >"$dir/ip6tables"
  nft list ruleset | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/g' >"$dir/nft"
}

# Fails on anything added; removals are reported but tolerated, since the bed
# itself removes namespaces that earlier, killed test runs leaked.
compare() {
  local before="$1" after="$2" leaked=0 f d
  for f in netns links iptables ip6tables nft; do
    d="$(diff -U0 "$before/$f" "$after/$f" | tail -n +3 || true)"
    [[ -z $d ]] && continue
    if grep -q '^+' <<<"$d"; then
      log "root namespace $f changed by the tests:"
      leaked=1
    else
      log "root namespace $f lost entries during the tests (tolerated):"
    fi
    printf '%s\n' "$d" >&2
  done
  return "$leaked"
}

snapshot "$work/before"

set +e
# --no-fail-fast: one broken crate must not hide the results of the others.
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee "$work/test.log"
test_status=${PIPESTATUS[0]}
set -e

snapshot "$work/after"
leak_status=0
compare "$work/before" "$work/after" || leak_status=1

read -r passed failed < <(
  sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed;.*/\1 \2/p' "$work/test.log" |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}'
)

status=0
if ((test_status != 0)); then
  log "cargo test failed (exit $test_status)"
  status=1
fi
if ((leak_status != 0)); then
  log "tests left state behind in the root network namespace"
  status=1
fi
echo "$passed passed, $failed failed"
exit "$status"
