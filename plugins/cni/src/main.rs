//! `flannel-rs-cni`: the flannel, bridge, host-local and portmap CNI plugins in one
//! executable, installed under each plugin's name as hard links. Started as `bridge`, it is
//! the bridge plugin, and so on; a delegate that resolves to this same file on `CNI_PATH`
//! runs in this process instead of a new one (`skel::delegate`).

use skel::multicall::{self, Applet};

const APPLETS: &[Applet] = &[
    Applet {
        name: "flannel",
        plugin: &flannel_cni::plugin::Flannel,
    },
    Applet {
        name: "bridge",
        plugin: &bridge_cni::Bridge,
    },
    Applet {
        name: "host-local",
        plugin: &host_local::plugin::HostLocal,
    },
    Applet {
        name: "portmap",
        plugin: &portmap_cni::plugin::Portmap,
    },
];

fn main() {
    std::process::exit(multicall::main("flannel-rs-cni", APPLETS));
}
