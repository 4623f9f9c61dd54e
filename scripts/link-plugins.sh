#!/bin/sh
# Gives the multicall executable (flannel-rs-cni) the four CNI plugin names, as hard links in
# its own directory or in DIR. Each name is linked under a temporary name and renamed into
# place, so a runtime executing the old plugin at that moment keeps its inode and never finds
# the name missing.
#
#   link-plugins.sh EXE [DIR]     e.g. link-plugins.sh target/release/flannel-rs-cni
#   PLUGINS   the names to link (default: all four)
set -eu

PLUGINS=${PLUGINS:-flannel bridge host-local portmap}

[ $# -ge 1 ] || { echo "usage: link-plugins.sh EXE [DIR]" >&2; exit 2; }
exe=$1
dir=${2:-$(dirname "$exe")}
[ -f "$exe" ] || { echo "link-plugins.sh: missing $exe (build with: cargo build --release)" >&2; exit 1; }

for p in $PLUGINS; do
    # Already this very file: nothing to do (and mv refuses to rename a file onto itself).
    [ "$exe" -ef "$dir/$p" ] && continue
    tmp="$dir/.$p.tmp.$$"
    ln -f "$exe" "$tmp"
    mv -f "$tmp" "$dir/$p"
    [ -z "${LINK_PLUGINS_VERBOSE:-}" ] || echo "installed $dir/$p"
done
