//! Existence questions answered by the kernel's nf_tables over netlink, without a process.
//!
//! Spawning `iptables-save` or `nft list` costs milliseconds each, and most of the answers
//! a plugin needs are yes/no: does the table `inet cni_plugins_masquerade` exist, does the
//! iptables-nft chain `CNI-<hash>` exist in `ip nat`? One NFT_MSG_GETTABLE / GETCHAIN
//! request answers that in microseconds. Rules created through iptables-nft are nf_tables
//! objects (table `ip nat`, chain by its iptables name), so the same query covers them;
//! iptables-legacy rules are not, which is why [`IptablesVariant`] exists.
//!
//! Queries run in the calling thread's network namespace. Any error (no nf_tables in the
//! kernel, no permission) is returned as such: callers then fall back to the tools.

use std::io;
use std::path::{Path, PathBuf};

use netlink_sys::{Socket, SocketAddr};

use super::nft::TableFamily;

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Whether `table` exists in `family`.
pub fn table_exists(family: TableFamily, table: &str) -> io::Result<bool> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_TABLE_NAME, table);
    ask(family, NFT_MSG_GETTABLE, &attrs)
}

/// Whether `chain` exists in `table` of `family` (a missing table is "no").
pub fn chain_exists(family: TableFamily, table: &str, chain: &str) -> io::Result<bool> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_CHAIN_TABLE, table);
    put_str(&mut attrs, NFTA_CHAIN_NAME, chain);
    ask(family, NFT_MSG_GETCHAIN, &attrs)
}

/// Which kernel interface the `iptables` tools on PATH program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesVariant {
    /// iptables-nft (`xtables-nft-multi`): rules are nf_tables objects.
    Nft,
    /// iptables-legacy or something we cannot classify: only the tools know.
    Other,
}

/// Classifies `tool` (e.g. `iptables-save`) as found on PATH by following its symlinks
/// (Debian's alternatives: `/usr/sbin/iptables-save` → `/etc/alternatives/...` →
/// `xtables-nft-multi`). Only a positive identification says [`IptablesVariant::Nft`].
pub fn iptables_variant(tool: &str) -> IptablesVariant {
    match find_on_path(tool).and_then(|p| std::fs::canonicalize(p).ok()) {
        Some(real) if real.file_name().is_some_and(|n| n == "xtables-nft-multi") => {
            IptablesVariant::Nft
        }
        _ => IptablesVariant::Other,
    }
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn put_str(buf: &mut Vec<u8>, kind: u16, value: &str) {
    let payload = value.len() + 1; // NUL-terminated, as NLA_NUL_STRING wants
    buf.extend_from_slice(&((4 + payload) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value.as_bytes());
    buf.push(0);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// The request: nlmsghdr, nfgenmsg (family, version 0, resource id 0), attributes.
fn request(family: TableFamily, msg: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    buf.push(family.nfproto());
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&0u16.to_be_bytes());
    buf.extend_from_slice(attrs);
    buf
}

/// Outcome of reading the kernel's reply to a GET with NLM_F_ACK.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Found,
    Missing,
    Failed(i32),
    Incomplete,
}

/// Reads the messages in `buf`: the object (then an ACK), or an error. ENOENT is "missing".
fn interpret(buf: &[u8]) -> Reply {
    let mut found = false;
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
        if len < 16 || at + len > buf.len() {
            break;
        }
        match kind {
            NLMSG_ERROR if len >= 20 => {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                return match -code {
                    0 => {
                        if found {
                            Reply::Found
                        } else {
                            // An ACK with no object before it: the kernel answered "no object".
                            Reply::Missing
                        }
                    }
                    libc::ENOENT => Reply::Missing,
                    errno => Reply::Failed(errno),
                };
            }
            NLMSG_DONE => return if found { Reply::Found } else { Reply::Missing },
            k if k >> 8 == NFNL_SUBSYS_NFTABLES => found = true,
            _ => {}
        }
        at += (len + 3) & !3;
    }
    if found {
        Reply::Found
    } else {
        Reply::Incomplete
    }
}

fn ask(family: TableFamily, msg: u16, attrs: &[u8]) -> io::Result<bool> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&request(family, msg, attrs), 0)?;
    let mut collected = Vec::new();
    loop {
        let mut buf = vec![0u8; 32 * 1024];
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink closed",
            ));
        }
        collected.extend_from_slice(&buf[..n]);
        match interpret(&collected) {
            Reply::Found => {
                // The ACK may follow in a second datagram; the answer is already known.
                return Ok(true);
            }
            Reply::Missing => return Ok(false),
            Reply::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
            Reply::Incomplete => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn request_layout() {
        let mut attrs = Vec::new();
        put_str(&mut attrs, NFTA_TABLE_NAME, "nat");
        assert_eq!(attrs.len(), 8, "4 header + 'nat\\0'");
        let r = request(TableFamily::Ip, NFT_MSG_GETTABLE, &attrs);
        assert_eq!(r.len(), 28);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x0a01);
        assert_eq!(r[16], 2, "NFPROTO_IPV4");
        let mut attrs = Vec::new();
        put_str(&mut attrs, NFTA_CHAIN_NAME, "CNI-abcd");
        assert_eq!(attrs.len(), 16, "4 + 9 padded to 16");
    }

    #[test]
    fn replies() {
        let enoent = msg(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(interpret(&enoent), Reply::Missing);
        let eperm = msg(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(interpret(&eperm), Reply::Failed(libc::EPERM));
        let mut found = msg(0x0a00, &[2, 0, 0, 0]);
        assert_eq!(interpret(&found), Reply::Found);
        found.extend(msg(NLMSG_ERROR, &0i32.to_ne_bytes()));
        assert_eq!(interpret(&found), Reply::Found);
        assert_eq!(interpret(&found[..10]), Reply::Incomplete);
    }
}
