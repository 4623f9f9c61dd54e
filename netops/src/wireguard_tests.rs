//! Messages checked byte by byte against the layout of the kernel's
//! `include/uapi/linux/wireguard.h` (attribute numbers, nesting, byte orders), without a
//! kernel: this machine's has no WireGuard module.

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_generic::GenlHeader;

use super::*;

// include/uapi/linux/wireguard.h
const WG_CMD_GET_DEVICE: u8 = 0;
const WG_CMD_SET_DEVICE: u8 = 1;
const WG_GENL_VERSION: u8 = 1;
const WGDEVICE_A_IFINDEX: u16 = 1;
const WGDEVICE_A_IFNAME: u16 = 2;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_PUBLIC_KEY: u16 = 4;
const WGDEVICE_A_FLAGS: u16 = 5;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_PEERS: u16 = 8;
const WGDEVICE_F_REPLACE_PEERS: u32 = 1;
const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_PRESHARED_KEY: u16 = 2;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
const WGPEER_A_RX_BYTES: u16 = 7;
const WGPEER_A_TX_BYTES: u16 = 8;
const WGPEER_A_ALLOWEDIPS: u16 = 9;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;

/// One attribute: `struct nlattr` (length, type, host order), payload, padding to 4.
fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | NLA_F_NESTED, &parts.concat())
}

fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = (libc::AF_INET as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(&[0; 8]);
    v
}

fn sockaddr_in6(ip: [u8; 16], port: u16) -> Vec<u8> {
    let mut v = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes()); // flow info
    v.extend_from_slice(&ip);
    v.extend_from_slice(&0u32.to_ne_bytes()); // scope id
    v
}

fn allowed(family: i32, addr: &[u8], cidr: u8) -> Vec<u8> {
    // Each allowed IP is a nest of type 0 (an array element) inside WGPEER_A_ALLOWEDIPS.
    nest(
        0,
        &[
            nla(WGALLOWEDIP_A_FAMILY, &(family as u16).to_ne_bytes()),
            nla(WGALLOWEDIP_A_IPADDR, addr),
            nla(WGALLOWEDIP_A_CIDR_MASK, &[cidr]),
        ],
    )
}

fn emitted(m: &WireguardMessage) -> Vec<u8> {
    let mut b = vec![0u8; m.buffer_len()];
    m.emit(&mut b);
    b
}

fn config() -> WgDeviceConfig {
    WgDeviceConfig {
        ifname: "flannel-wg".into(),
        private_key: Some([1; 32]),
        listen_port: Some(51820),
        replace_peers: true,
        peers: vec![
            WgPeerConfig {
                public_key: [2; 32],
                remove: false,
                preshared_key: Some([3; 32]),
                endpoint: Some("192.168.1.2:51820".parse().unwrap()),
                persistent_keepalive: Some(25),
                allowed_ips: Some(vec![
                    "10.244.2.0/24".parse().unwrap(),
                    "fc00:0:0:2::/64".parse().unwrap(),
                ]),
            },
            WgPeerConfig {
                public_key: [4; 32],
                remove: false,
                preshared_key: None,
                endpoint: Some("[fd00::3]:51821".parse().unwrap()),
                persistent_keepalive: None,
                allowed_ips: None,
            },
            WgPeerConfig {
                public_key: [5; 32],
                remove: true,
                preshared_key: None,
                endpoint: None,
                persistent_keepalive: None,
                allowed_ips: None,
            },
        ],
    }
}

#[test]
fn set_device_matches_the_uapi_layout() {
    let msgs = set_device_messages(&config());
    assert_eq!(msgs.len(), 1);
    let mut v6 = [0u8; 16];
    v6[0] = 0xfc;
    v6[7] = 2;
    let mut fd3 = [0u8; 16];
    fd3[0] = 0xfd;
    fd3[15] = 3;
    let want = [
        nla(WGDEVICE_A_IFNAME, b"flannel-wg\0"),
        nla(WGDEVICE_A_PRIVATE_KEY, &[1; 32]),
        nla(WGDEVICE_A_LISTEN_PORT, &51820u16.to_ne_bytes()),
        nla(WGDEVICE_A_FLAGS, &WGDEVICE_F_REPLACE_PEERS.to_ne_bytes()),
        nest(
            WGDEVICE_A_PEERS,
            &[
                nest(
                    0,
                    &[
                        nla(WGPEER_A_PUBLIC_KEY, &[2; 32]),
                        nla(WGPEER_A_FLAGS, &WGPEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes()),
                        nla(WGPEER_A_PRESHARED_KEY, &[3; 32]),
                        nla(WGPEER_A_ENDPOINT, &sockaddr_in([192, 168, 1, 2], 51820)),
                        nla(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, &25u16.to_ne_bytes()),
                        nest(
                            WGPEER_A_ALLOWEDIPS,
                            &[
                                allowed(libc::AF_INET, &[10, 244, 2, 0], 24),
                                allowed(libc::AF_INET6, &v6, 64),
                            ],
                        ),
                    ],
                ),
                nest(
                    0,
                    &[
                        nla(WGPEER_A_PUBLIC_KEY, &[4; 32]),
                        nla(WGPEER_A_ENDPOINT, &sockaddr_in6(fd3, 51821)),
                    ],
                ),
                nest(
                    0,
                    &[
                        nla(WGPEER_A_PUBLIC_KEY, &[5; 32]),
                        nla(WGPEER_A_FLAGS, &WGPEER_F_REMOVE_ME.to_ne_bytes()),
                    ],
                ),
            ],
        ),
    ]
    .concat();
    assert_eq!(emitted(&msgs[0]), want);
}

#[test]
fn the_datagram_carries_genl_header_family_and_version() {
    let msg = set_device_messages(&WgDeviceConfig {
        ifname: "wg".into(),
        private_key: None,
        listen_port: None,
        replace_peers: false,
        peers: vec![],
    })
    .remove(0);
    let bytes = encode(msg, 0x1d, NLM_F_REQUEST | NLM_F_ACK, 7);
    let attrs = nla(WGDEVICE_A_IFNAME, b"wg\0");
    assert_eq!(bytes.len(), 16 + 4 + attrs.len());
    assert_eq!(
        &bytes[0..4],
        &(bytes.len() as u32).to_ne_bytes(),
        "nlmsg_len"
    );
    assert_eq!(
        &bytes[4..6],
        &0x1du16.to_ne_bytes(),
        "nlmsg_type = family id"
    );
    assert_eq!(
        &bytes[6..8],
        &(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes(),
        "flags"
    );
    assert_eq!(&bytes[8..12], &7u32.to_ne_bytes(), "sequence");
    assert_eq!(bytes[16], WG_CMD_SET_DEVICE);
    assert_eq!(bytes[17], WG_GENL_VERSION);
    assert_eq!(&bytes[20..], &attrs[..]);
}

#[test]
fn many_peers_are_split_and_only_the_first_message_replaces() {
    let mut cfg = config();
    cfg.peers = (0..130u8)
        .map(|i| WgPeerConfig {
            public_key: [i; 32],
            remove: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            allowed_ips: Some(vec![format!("10.244.{i}.0/24").parse().unwrap()]),
        })
        .collect();
    let msgs = set_device_messages(&cfg);
    assert_eq!(msgs.len(), 3);
    let count = |m: &WireguardMessage| {
        m.attributes
            .iter()
            .find_map(|a| match a {
                WireguardAttribute::Peers(p) => Some(p.len()),
                _ => None,
            })
            .unwrap_or(0)
    };
    assert_eq!(msgs.iter().map(count).collect::<Vec<_>>(), [64, 64, 2]);
    let has_flags = |m: &WireguardMessage| {
        m.attributes.iter().any(|a| {
            matches!(
                a,
                WireguardAttribute::Flags(_) | WireguardAttribute::PrivateKey(_)
            )
        })
    };
    assert!(has_flags(&msgs[0]));
    assert!(!has_flags(&msgs[1]) && !has_flags(&msgs[2]));
}

#[test]
fn get_device_replies_are_decoded_and_continued_peers_merged() {
    let peer = |key: u8, extra: Vec<Vec<u8>>| {
        let mut parts = vec![nla(WGPEER_A_PUBLIC_KEY, &[key; 32])];
        parts.extend(extra);
        nest(0, &parts)
    };
    let mut ts = 1_700_000_000i64.to_ne_bytes().to_vec();
    ts.extend_from_slice(&5i64.to_ne_bytes());
    let first = [
        nla(WGDEVICE_A_IFINDEX, &9u32.to_ne_bytes()),
        nla(WGDEVICE_A_IFNAME, b"flannel-wg\0"),
        nla(WGDEVICE_A_PUBLIC_KEY, &[8; 32]),
        nla(WGDEVICE_A_LISTEN_PORT, &51820u16.to_ne_bytes()),
        nest(
            WGDEVICE_A_PEERS,
            &[peer(
                2,
                vec![
                    nla(WGPEER_A_ENDPOINT, &sockaddr_in([192, 168, 1, 2], 51820)),
                    nla(WGPEER_A_LAST_HANDSHAKE_TIME, &ts),
                    nla(WGPEER_A_RX_BYTES, &1000u64.to_ne_bytes()),
                    nla(WGPEER_A_TX_BYTES, &2000u64.to_ne_bytes()),
                    nest(
                        WGPEER_A_ALLOWEDIPS,
                        &[allowed(libc::AF_INET, &[10, 244, 2, 0], 24)],
                    ),
                ],
            )],
        ),
    ]
    .concat();
    // The next message repeats the device and continues peer 2's allowed IPs.
    let second = [
        nla(WGDEVICE_A_IFINDEX, &9u32.to_ne_bytes()),
        nest(
            WGDEVICE_A_PEERS,
            &[
                peer(
                    2,
                    vec![nest(
                        WGPEER_A_ALLOWEDIPS,
                        &[allowed(libc::AF_INET, &[10, 244, 3, 0], 24)],
                    )],
                ),
                peer(4, vec![]),
            ],
        ),
    ]
    .concat();
    let mut dev = WgDeviceState::default();
    for bytes in [first, second] {
        let header = GenlHeader {
            cmd: WG_CMD_GET_DEVICE,
            version: WG_GENL_VERSION,
        };
        let m = WireguardMessage::parse_with_param(&bytes[..], header).unwrap();
        merge_device_reply(&mut dev, &m);
    }
    assert_eq!(dev.ifindex, 9);
    assert_eq!(dev.ifname, "flannel-wg");
    assert_eq!(dev.listen_port, 51820);
    assert_eq!(dev.public_key, Some([8; 32]));
    assert_eq!(dev.peers.len(), 2);
    let p = &dev.peers[0];
    assert_eq!(p.endpoint, Some("192.168.1.2:51820".parse().unwrap()));
    assert_eq!((p.rx_bytes, p.tx_bytes), (1000, 2000));
    assert_eq!(
        p.last_handshake,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_nanos(5))
    );
    assert_eq!(
        p.allowed_ips,
        vec![
            "10.244.2.0/24".parse::<IpNet>().unwrap(),
            "10.244.3.0/24".parse().unwrap()
        ]
    );
    assert_eq!(dev.peers[1].public_key, [4; 32]);
    assert_eq!(dev.peers[1].last_handshake, None);
}
