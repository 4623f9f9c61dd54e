//! The Internet checksum (RFC 1071), fast enough to run over every byte we forward.
//!
//! Words are summed in native byte order: one's-complement addition commutes with byte
//! swapping, so the folded result only has to be stored back with the same byte order. That
//! lets the compiler vectorise the 32-bit loads instead of assembling big-endian words.

/// Adds `data` to a running sum. Every part but the last must have even length, so that the
/// 16-bit words of the parts line up with those of the whole.
pub fn add(acc: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // The same loop compiled for AVX2 sums ~5 times faster than the baseline SSE2 build
        // (69 vs 14 GB/s in cache on this project's machine); every byte forwarded is summed
        // once, so this is most of the checksum's cost. std caches the CPUID answer.
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, which is all `add_avx2` is compiled for.
            return unsafe { add_avx2(acc, data) };
        }
    }
    add_portable(acc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(acc: u64, data: &[u8]) -> u64 {
    add_portable(acc, data)
}

#[inline(always)]
fn add_portable(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_ne_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc
}

/// Folds a running sum to 16 bits (not inverted), as stored by the caller with `to_ne_bytes`.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (inverted fold), in native representation.
pub fn of(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// The TCP/UDP pseudo-header of IPv4, summed.
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, len: u16) -> u64 {
    let l = len.to_be_bytes();
    add(
        0,
        &[
            src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], 0, protocol, l[0], l[1],
        ],
    )
}

/// Writes a checksum computed by this module into `buf[at..at + 2]`.
pub fn store(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_ne_bytes());
}

/// RFC 1624 incremental update of the checksum at `buf[at..]` after the 16-bit word `old`
/// (as it was in the packet, native representation) became `new`. Keeps a corrupted header
/// detectable downstream, which recomputing from scratch would hide.
pub fn update(buf: &mut [u8], at: usize, old: u16, new: u16) {
    let check = u16::from_ne_bytes([buf[at], buf[at + 1]]);
    let sum = u64::from(!check) + u64::from(!old) + u64::from(new);
    store(buf, at, !fold(sum));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward big-endian reference.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            sum += w;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn the_dispatched_sum_equals_the_portable_one() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in [0, 1, 2, 3, 31, 32, 33, 1448, 65_535, 70_000] {
            assert_eq!(
                add(5, &data[..len]),
                add_portable(5, &data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn matches_the_textbook_algorithm_for_every_length_and_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 13) as u8 ^ 0xa5).collect();
        for len in 0..data.len() {
            let want = reference(&data[..len]);
            assert_eq!(
                u16::from_be_bytes(of(&data[..len]).to_ne_bytes()),
                want,
                "len {len}"
            );
            let split = (len / 2) & !1;
            let parts = add(add(0, &data[..split]), &data[split..len]);
            assert_eq!(!fold(parts), of(&data[..len]), "len {len} split {split}");
        }
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Example header from RFC 1071 discussions: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = of(&h);
        store(&mut h, 10, c);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
        assert_eq!(of(&h), 0, "a correct header sums to zero");
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = of(&h);
        store(&mut h, 10, c);
        for ttl in (1..=0x40u8).rev() {
            let old = u16::from_ne_bytes([h[8], h[9]]);
            h[8] = ttl - 1;
            let new = u16::from_ne_bytes([h[8], h[9]]);
            update(&mut h, 10, old, new);
            assert_eq!(of(&h), 0, "ttl {ttl}");
        }
    }
}
