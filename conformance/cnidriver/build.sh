#!/usr/bin/env bash
# Builds the libcni driver into <workspace>/target/cnidriver.
#
# Rebuilds only when the sources, go.mod, the libcni sources or the Go
# toolchain changed (content hash, not mtimes, so a fresh checkout or a
# touched file does not trigger a rebuild). Safe to run concurrently: test
# processes and setup.sh serialise on a lock file and the binary is replaced
# atomically, so a running test never executes a half-written file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="$root/target"
out="$target/cnidriver"
stamp="$target/cnidriver.stamp"
libcni_src=/usr/share/gocode/src/github.com/containernetworking/cni

command -v go >/dev/null || { echo "cnidriver: go not found (apt-get install golang-go)" >&2; exit 1; }
[[ -d $libcni_src/libcni ]] || { echo "cnidriver: $libcni_src missing (apt-get install golang-github-appc-cni-dev)" >&2; exit 1; }

mkdir -p "$target"
exec 9>"$target/cnidriver.lock"
flock 9

fingerprint() {
  {
    go version
    (cd "$here" && find . -maxdepth 1 -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 |
      sort -z | xargs -0 sha256sum)
    (cd "$libcni_src" && find libcni pkg -type f -name '*.go' ! -name '*_test.go' -print0 |
      sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1
}

want="$(fingerprint)"
if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

gohome="$target/go"
mkdir -p "$gohome/path" "$gohome/cache"
tmp="$(mktemp "$target/cnidriver.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(
  cd "$here"
  # No module proxy is reachable; every import resolves through the replace
  # directive to Debian's libcni sources.
  GOPATH="$gohome/path" GOCACHE="$gohome/cache" GOPROXY=off GOFLAGS=-mod=mod \
    GO111MODULE=on CGO_ENABLED=0 go build -trimpath -o "$tmp" .
)
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$want" >"$stamp"
echo "cnidriver: built $out" >&2
