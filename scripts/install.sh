#!/bin/sh
# Installs flannel-rs onto a node: the CNI plugins into $CNI_BIN_DIR (/opt/cni/bin) as hard
# links to one executable (flannel-rs-cni, which runs the plugin it is started as), flanneld
# into $BIN_DIR (/usr/local/bin) with its systemd unit, and optionally the CNI conflist.
#
# Everything is placed under $DESTDIR (empty by default), so packaging, the DaemonSet's init
# container (DESTDIR=/host) and tests (DESTDIR=<tempdir>) never touch the running system.
#
#   CNI_PLUGINS       the CNI plugins to install (default: "flannel bridge host-local portmap");
#                     each one listed replaces the file of that name in $CNI_BIN_DIR, the others
#                     are left alone
#   SRC_DIR           where the built binaries are (default: target/release next to this script)
#   DESTDIR           root to install under (default: none)
#   CNI_BIN_DIR       default /opt/cni/bin
#   BIN_DIR           default /usr/local/bin
#   INSTALL_FLANNELD  "false" installs only the CNI side (the DaemonSet runs flanneld itself)
#   SYSTEMD_DIR       default /etc/systemd/system; the unit is installed with flanneld
#   CNI_CONF_SRC      a conflist to install as $CNI_CONF_DIR/$CNI_CONF_NAME (default: none)
#   CNI_CONF_DIR      default /etc/cni/net.d
#   CNI_CONF_NAME     default 10-flannel.conflist
set -eu

here=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=${SRC_DIR:-$here/../target/release}
DESTDIR=${DESTDIR:-}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
INSTALL_FLANNELD=${INSTALL_FLANNELD:-true}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
CNI_CONF_SRC=${CNI_CONF_SRC:-}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
CNI_CONF_NAME=${CNI_CONF_NAME:-10-flannel.conflist}
UNIT_SRC=${UNIT_SRC:-$here/../deploy/flanneld.service}

KNOWN_PLUGINS="flannel bridge host-local portmap"
PLUGINS=${CNI_PLUGINS-$KNOWN_PLUGINS}
# The one executable behind every plugin name.
CNI_EXE=flannel-rs-cni

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# Copies $1 to $2 through a temporary name in the same directory and renames it into place:
# a runtime executing the old plugin at that moment keeps its inode, and never sees a
# half-written file ("text file busy" and truncated binaries are the classic failure).
place() {
    src=$1 dst=$2 mode=$3
    [ -f "$src" ] || die "missing $src (build with: cargo build --release)"
    mkdir -p "$(dirname "$dst")"
    tmp="$dst.tmp.$$"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dst"
    echo "installed $dst"
}

# Check everything first so a missing binary leaves nothing half-installed.
for p in $PLUGINS; do
    case " $KNOWN_PLUGINS " in
    *" $p "*) ;;
    *) die "CNI_PLUGINS names $p, which flannel-rs does not build (it builds: $KNOWN_PLUGINS)" ;;
    esac
done
if [ -n "$PLUGINS" ]; then
    [ -f "$SRC_DIR/$CNI_EXE" ] || die "missing $SRC_DIR/$CNI_EXE (build with: cargo build --release)"
    [ -f "$here/link-plugins.sh" ] || die "missing $here/link-plugins.sh"
fi
if [ "$INSTALL_FLANNELD" != false ]; then
    [ -f "$SRC_DIR/flanneld" ] || die "missing $SRC_DIR/flanneld (build with: cargo build --release)"
fi
if [ -n "$CNI_CONF_SRC" ]; then
    [ -f "$CNI_CONF_SRC" ] || die "missing $CNI_CONF_SRC"
fi

# One copy of the executable, linked under each plugin name and renamed into place name by
# name; the copy's own name goes again, so the directory holds only the plugin names.
# Only the names in $PLUGINS are touched; the node's other plugins stay as they are.
if [ -n "$PLUGINS" ]; then
    mkdir -p "$DESTDIR$CNI_BIN_DIR"
    exe_tmp="$DESTDIR$CNI_BIN_DIR/.$CNI_EXE.tmp.$$"
    cp "$SRC_DIR/$CNI_EXE" "$exe_tmp"
    chmod 0755 "$exe_tmp"
    PLUGINS=$PLUGINS LINK_PLUGINS_VERBOSE=1 sh "$here/link-plugins.sh" "$exe_tmp" "$DESTDIR$CNI_BIN_DIR" ||
        { rm -f "$exe_tmp"; die "linking the plugins failed"; }
    rm -f "$exe_tmp"
fi
if [ "$INSTALL_FLANNELD" != false ]; then
    place "$SRC_DIR/flanneld" "$DESTDIR$BIN_DIR/flanneld" 0755
    # The companion tools go with the daemon when they were built (`cargo build --release` builds
    # both; flannelctl is its own package, so `-p flanneld` alone leaves it out).
    for tool in mk-docker-opts flannelctl; do
        if [ -f "$SRC_DIR/$tool" ]; then
            place "$SRC_DIR/$tool" "$DESTDIR$BIN_DIR/$tool" 0755
        fi
    done
    if [ -f "$UNIT_SRC" ]; then
        place "$UNIT_SRC" "$DESTDIR$SYSTEMD_DIR/flanneld.service" 0644
    fi
fi
if [ -n "$CNI_CONF_SRC" ]; then
    place "$CNI_CONF_SRC" "$DESTDIR$CNI_CONF_DIR/$CNI_CONF_NAME" 0644
fi
