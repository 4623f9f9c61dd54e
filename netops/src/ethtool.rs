//! Device features (offloads) over the ethtool ioctl, `SIOCETHTOOL`: what `ethtool -k` reads
//! and `ethtool -K` sets, without the program. Feature names are the kernel's own
//! (`ETH_SS_FEATURES` strings such as `tx-checksum-ip-generic`), looked up per device.
//!
//! The ioctl acts in the network namespace of the socket it is issued on: [`Ethtool::open`]
//! uses the calling thread's, [`Ethtool::in_netns`] creates its socket inside another one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::netns::{NetnsError, NetnsGuard};

// linux/ethtool.h
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("ethtool socket: {0}")]
    Socket(io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("interface name {0:?} is not a valid device name")]
    BadName(String),
    #[error("ethtool {what} on {dev:?}: {source}")]
    Ioctl {
        dev: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("{dev:?} has no feature {feature:?}")]
    UnknownFeature { dev: String, feature: String },
    #[error("{dev:?} cannot change {feature:?} (it is fixed {})", if *.active { "on" } else { "off" })]
    Fixed {
        dev: String,
        feature: String,
        active: bool,
    },
    #[error("{dev:?} kept {feature:?} {} after it was asked to change it", if *.active { "on" } else { "off" })]
    NotApplied {
        dev: String,
        feature: String,
        active: bool,
    },
}

/// A socket to issue ethtool requests on.
pub struct Ethtool {
    fd: OwnedFd,
}

/// One feature of a device: its bit in the kernel's feature words.
#[derive(Debug, Clone, Copy)]
struct Bit {
    word: usize,
    mask: u32,
    words: usize,
}

/// What `ETHTOOL_GFEATURES` says about one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureState {
    /// Whether it is on now.
    pub active: bool,
    /// Whether it can be changed (the device's `hw_features`).
    pub changeable: bool,
}

impl Ethtool {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Ethtool, EthtoolError> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(EthtoolError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(Ethtool {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// A socket created inside the namespace at `path`; it keeps acting there from any
    /// thread.
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Ethtool, EthtoolError> {
        let guard = NetnsGuard::enter_path(path)?;
        let sock = Ethtool::open();
        drop(guard);
        sock
    }

    /// One `SIOCETHTOOL` request on `dev` with `data` as the command buffer; returns the
    /// ioctl's non-negative result.
    fn ioctl(&self, dev: &str, what: &'static str, data: *mut u8) -> Result<i32, EthtoolError> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = dev.as_bytes();
        if name.is_empty() || name.len() >= ifr.ifr_name.len() || name.contains(&0) {
            return Err(EthtoolError::BadName(dev.to_owned()));
        }
        for (slot, b) in ifr.ifr_name.iter_mut().zip(name) {
            *slot = *b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = data.cast();
        // SAFETY: `data` points to a live buffer laid out as the command expects and large
        // enough for the kernel's answer (each caller sizes it from the counts it sent).
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
        if rc < 0 {
            return Err(EthtoolError::Ioctl {
                dev: dev.to_owned(),
                what,
                source: io::Error::last_os_error(),
            });
        }
        Ok(rc)
    }

    /// The names of `dev`'s features, in bit order.
    fn feature_names(&self, dev: &str) -> Result<Vec<String>, EthtoolError> {
        // struct ethtool_sset_info { u32 cmd, reserved; u64 sset_mask; u32 data[1]; }
        #[repr(C)]
        struct SsetInfo {
            cmd: u32,
            reserved: u32,
            mask: u64,
            data: [u32; 1],
        }
        let mut info = SsetInfo {
            cmd: ETHTOOL_GSSET_INFO,
            reserved: 0,
            mask: 1 << ETH_SS_FEATURES,
            data: [0],
        };
        self.ioctl(dev, "GSSET_INFO", (&mut info as *mut SsetInfo).cast())?;
        let count = if info.mask & (1 << ETH_SS_FEATURES) != 0 {
            info.data[0] as usize
        } else {
            0
        };
        // struct ethtool_gstrings { u32 cmd, string_set, len; u8 data[len * 32]; }, in u32s
        // for alignment.
        let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
        buf[0] = ETHTOOL_GSTRINGS;
        buf[1] = ETH_SS_FEATURES;
        buf[2] = count as u32;
        self.ioctl(dev, "GSTRINGS", buf.as_mut_ptr().cast())?;
        let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(bytes
            .chunks(ETH_GSTRING_LEN)
            .take(count)
            .map(|c| {
                let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect())
    }

    fn bit(&self, dev: &str, feature: &str) -> Result<Bit, EthtoolError> {
        let names = self.feature_names(dev)?;
        let i = names.iter().position(|n| n == feature).ok_or_else(|| {
            EthtoolError::UnknownFeature {
                dev: dev.to_owned(),
                feature: feature.to_owned(),
            }
        })?;
        Ok(Bit {
            word: i / 32,
            mask: 1 << (i % 32),
            words: names.len().div_ceil(32),
        })
    }

    fn state_of(&self, dev: &str, bit: Bit) -> Result<FeatureState, EthtoolError> {
        // struct ethtool_gfeatures { u32 cmd, size; { u32 available, requested, active,
        // never_changed; } features[size]; }
        let mut buf = vec![0u32; 2 + 4 * bit.words];
        buf[0] = ETHTOOL_GFEATURES;
        buf[1] = bit.words as u32;
        self.ioctl(dev, "GFEATURES", buf.as_mut_ptr().cast())?;
        let block = &buf[2 + 4 * bit.word..2 + 4 * bit.word + 4];
        Ok(FeatureState {
            active: block[2] & bit.mask != 0,
            changeable: block[0] & bit.mask != 0,
        })
    }

    /// Whether `feature` is on on `dev`, and whether it could be changed.
    pub fn feature(&self, dev: &str, feature: &str) -> Result<FeatureState, EthtoolError> {
        let bit = self.bit(dev, feature)?;
        self.state_of(dev, bit)
    }

    /// Turns `feature` on or off on `dev` (`ethtool -K dev feature on|off`); returns whether
    /// anything changed. The kernel turns off what depends on it by itself (no checksum
    /// offload, no TSO), as it does for ethtool.
    pub fn set_feature(&self, dev: &str, feature: &str, on: bool) -> Result<bool, EthtoolError> {
        let bit = self.bit(dev, feature)?;
        let state = self.state_of(dev, bit)?;
        if state.active == on {
            return Ok(false);
        }
        if !state.changeable {
            return Err(EthtoolError::Fixed {
                dev: dev.to_owned(),
                feature: feature.to_owned(),
                active: state.active,
            });
        }
        // struct ethtool_sfeatures { u32 cmd, size; { u32 valid, requested; } features[size]; }
        let mut buf = vec![0u32; 2 + 2 * bit.words];
        buf[0] = ETHTOOL_SFEATURES;
        buf[1] = bit.words as u32;
        buf[2 + 2 * bit.word] = bit.mask;
        buf[3 + 2 * bit.word] = if on { bit.mask } else { 0 };
        // A positive answer (ETHTOOL_F_WISH and friends) means not everything asked for was
        // done; reading back tells whether this feature was.
        self.ioctl(dev, "SFEATURES", buf.as_mut_ptr().cast())?;
        let after = self.state_of(dev, bit)?;
        if after.active != on {
            return Err(EthtoolError::NotApplied {
                dev: dev.to_owned(),
                feature: feature.to_owned(),
                active: after.active,
            });
        }
        Ok(true)
    }
}
