use netops::netlink::NetlinkError;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend type {0:?} is not supported by this flanneld")]
    Unsupported(String),
    /// Upstream's wording, so existing runbooks keep matching.
    #[error("your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend")]
    Nat,
    #[error("the flannel configuration enables IPv4 but has no Network")]
    NoNetwork,
    #[error("the flannel configuration enables IPv6 but has no IPv6Network")]
    NoIpv6Network,
    #[error("IPv6 is enabled but the external interface {0:?} has no IPv6 address")]
    NoIpv6Address(String),
    #[error("invalid VNI {0}: a VXLAN network identifier has 24 bits")]
    InvalidVni(u32),
    #[error("MTU {mtu} of {source_name} leaves no room for the {overhead}-byte VXLAN overhead")]
    MtuTooSmall {
        mtu: u32,
        source_name: String,
        overhead: u32,
    },
    #[error("{0} called before prepare()")]
    NotPrepared(&'static str),
    #[error("failed to create VXLAN device {name:?}: {reason}")]
    Device { name: String, reason: String },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("device {0} vanished; restart flanneld to recreate it")]
    DeviceGone(String),
    #[error(transparent)]
    Udp(#[from] super::udp::UdpError),
    #[error(transparent)]
    Wireguard(#[from] super::wireguard::WireguardError),
}
