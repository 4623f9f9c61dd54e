#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) to build flannel-rs and run every
# test: system packages, a Rust toolchain, kernel modules, the libcni driver.
# Idempotent: a second run changes nothing and touches no package index.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (tests create network namespaces)"

packages=(
  etcd-server etcd-client iptables nftables iproute2 iputils-ping iperf3
  protobuf-compiler libprotobuf-dev golang-go golang-github-appc-cni-dev containernetworking-plugins
  jq kmod procps openssl socat strace util-linux ethtool
  wireguard-go wireguard-tools
  golang-1.19-go # the go binary itself (Debian 12's golang-go is a symlink to it); the tests run it
)

systemd_running() { [[ -d /run/systemd/system ]]; }

install_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "packages: all present"
    return
  fi
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && systemd_running; then
    # Masking before installation keeps the package from ever starting a
    # system etcd on 127.0.0.1:2379, flanneld's default endpoint.
    systemctl mask etcd.service >/dev/null
  fi
  log "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Tests start their own etcd servers; a system one would answer on the
# default endpoint and hide a test that forgot to point at its own.
disable_system_etcd() {
  if systemd_running; then
    if systemctl is-active --quiet etcd.service || systemctl is-enabled --quiet etcd.service 2>/dev/null; then
      log "etcd: stopping and disabling the system service"
      systemctl disable --now etcd.service >/dev/null 2>&1 || true
    fi
  elif [[ -x /etc/init.d/etcd ]]; then
    if service etcd status >/dev/null 2>&1; then
      log "etcd: stopping the system service"
      service etcd stop >/dev/null
    fi
    if compgen -G '/etc/rc[2-5].d/S*etcd' >/dev/null; then
      log "etcd: disabling the init script"
      update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
  if ss -Hltn 'sport = :2379' 2>/dev/null | grep -q .; then
    log "warning: something still listens on port 2379 (not started by a package service); tests may be confused"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null; then
    command -v rustup >/dev/null || die "no cargo and no rustup; install rustup from https://rustup.rs"
    log "rust: installing the stable toolchain with rustup"
    rustup default stable
  fi
  local want have
  want="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
  have="$(rustc --version | awk '{print $2}')"
  if [[ -n $want && "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]]; then
    die "rustc $have is older than the workspace's rust-version $want (rustup update stable)"
  fi
  log "rust: $(cargo --version)"
}

load_modules() {
  local m
  command -v modprobe >/dev/null || return 0
  for m in br_netfilter vxlan tun nf_conntrack; do
    # Built-in or unavailable (containers without /lib/modules) is fine:
    # the tests fail loudly if a feature is really missing.
    modprobe "$m" 2>/dev/null || true
  done
}

install_packages
disable_system_etcd
ensure_rust
load_modules
bash "$root/conformance/cnidriver/build.sh"
log "ready"
