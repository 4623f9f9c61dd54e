//! The `flannel` CNI plugin binary: the skel edge around [`plugin::Flannel`].

mod plugin;

fn main() {
    std::process::exit(skel::run(&plugin::Flannel));
}
