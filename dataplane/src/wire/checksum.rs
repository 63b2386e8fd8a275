//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A *partial sum* is the ones'-complement sum of big-endian 16-bit words,
//! kept in a `u32`. Partial sums of pieces that each start at an even offset
//! of the checksummed data can be added together (`sum(a) + sum(b)`), then
//! [`fold`]ed and complemented ([`finish`]) to give the value to store.
//! A piece of odd length is padded with a zero byte, so only the *last* piece
//! may have odd length.
//!
//! Checking a received checksum: sum the data *including* the stored checksum
//! (and the pseudo-header for TCP/UDP); it is right when [`fold`] gives
//! `0xffff`. See [`verify`].

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ones'-complement partial sum of `data` (an odd trailing byte is padded
/// with zero). The result is already folded to at most `0xffff`, so a few
/// partial sums (and [`pseudo_header`]s) can be added without overflow.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Summing 32-bit words and folding gives the same ones'-complement value
    // as summing 16-bit words, because 2^16 = 1 (mod 2^16 - 1); it halves the
    // additions. A u64 cannot overflow below 16 GiB of input.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let word: [u8; 4] = word.try_into().unwrap_or([0; 4]);
        acc += u64::from(u32::from_be_bytes(word));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + u64::from(c) * 256,
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a] => acc += u64::from(a) * 256,
        _ => {}
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    acc as u32
}

/// Folds the carries of a partial sum into 16 bits. Not complemented.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for a partial sum: `!fold(sum)`.
#[inline]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The IPv4 header checksum to store for `hdr` (the whole header, options
/// included), treating its checksum field (bytes 10..12) as zero.
#[inline]
pub fn ipv4_header(hdr: &[u8]) -> u16 {
    let before = hdr.get(..10).unwrap_or(hdr);
    let after = hdr.get(12..).unwrap_or(&[]);
    finish(sum(before) + sum(after))
}

/// The partial sum of the TCP/UDP pseudo-header (RFC 793 / RFC 768).
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(l4_len)
}

/// Whether a received TCP or UDP `segment` (header and payload) between
/// `src` and `dst` has a right checksum; a UDP checksum of 0 means none.
#[inline]
pub fn transport_ok(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> bool {
    if proto == 17 && segment.get(6..8) == Some(&[0, 0]) {
        return true;
    }
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    verify(sum(segment) + pseudo_header(src, dst, proto, len))
}

/// The TCP or UDP checksum to store for `segment` (header and payload, its
/// checksum field included: clear it first or the result is meaningless).
/// For UDP the caller maps a result of 0 to `0xffff` (RFC 768).
#[inline]
pub fn l4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    finish(sum(segment) + pseudo_header(src, dst, proto, len))
}

/// The partial sum of the IPv6 pseudo-header (RFC 8200 8.1): source and
/// destination addresses, the upper-layer packet length (32 bits) and the
/// next header value (the upper-layer protocol, not that of an extension
/// header before it).
#[inline]
pub fn pseudo_header6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4_len: u32) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + (l4_len >> 16) + (l4_len & 0xffff) + u32::from(proto)
}

/// Whether a received TCP, UDP or ICMPv6 `segment` (header and payload, to
/// the end of the IPv6 payload) between `src` and `dst` has a right
/// checksum. A UDP checksum of 0 is wrong on IPv6 (RFC 8200 8.1: Linux's
/// udp6 receive path drops it, as `udp6_csum_init` does). Conntrack's
/// `udp_error` is laxer (it takes 0 as "no checksum" on IPv6 too), so a
/// caller copying conntrack tests for 0 first.
#[inline]
pub fn transport_ok6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, segment: &[u8]) -> bool {
    if proto == 17 && segment.get(6..8) == Some(&[0, 0]) {
        return false;
    }
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    verify(sum(segment) + pseudo_header6(src, dst, proto, len))
}

/// The TCP, UDP or ICMPv6 checksum to store for `segment` (its checksum
/// field cleared first). For UDP the caller maps 0 to `0xffff` (a UDP
/// checksum is mandatory on IPv6; 0 would mean none).
#[inline]
pub fn l4_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    finish(sum(segment) + pseudo_header6(src, dst, proto, len))
}

/// Whether a received checksum is right: `partial` is the partial sum of the
/// covered data with the stored checksum in place (plus the pseudo-header
/// where one applies).
#[inline]
pub fn verify(partial: u32) -> bool {
    fold(partial) == 0xffff
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data
/// changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`. The word must lie at
/// an even offset of the checksummed data (every header field we rewrite does).
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    if old == new {
        // Keep the stored representation (eqn. 3 would turn 0xffff into 0).
        return csum;
    }
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field (an IPv4 address), in one step.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    if old == new {
        return csum;
    }
    !fold(
        u32::from(!csum)
            + u32::from(!((old >> 16) as u16))
            + u32::from(!(old as u16))
            + (new >> 16)
            + (new & 0xffff),
    )
}

/// [`update16`] for a 128-bit field (an IPv6 address, NAT66), in one step:
/// `HC' = ~(~HC + sum(~m) + sum(m'))` over its eight words.
#[inline]
pub fn update128(csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    if old == new {
        return csum;
    }
    let (old, new) = (old.segments(), new.segments());
    let mut acc = u32::from(!csum);
    for (o, n) in old.iter().zip(new.iter()) {
        acc += u32::from(!*o) + u32::from(*n);
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(
            sum(&[0x12, 0x34, 0x56, 0x78, 0x9a]),
            fold(0x1234 + 0x5678 + 0x9a00).into()
        );
        assert_eq!(sum(&[]), 0);
    }

    /// A real header (the TCP SYN fixture's): its stored checksum is 0xa636.
    #[test]
    fn ipv4_header_of_a_real_packet() {
        let hdr = &crate::wire::fixture::TCP_SYN[14..34];
        assert_eq!(ipv4_header(hdr), 0xa636);
        assert!(verify(sum(hdr)));
    }

    /// RFC 8200's pseudo-header over a real segment: the UDP fixture from
    /// Linux verifies, and recomputing its checksum gives the stored one.
    #[test]
    fn ipv6_pseudo_header_of_a_real_packet() {
        let f = &crate::wire::ipv6::fixture::UDP;
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap_or([0; 16]));
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap_or([0; 16]));
        let seg = &f[54..];
        assert!(transport_ok6(src, dst, 17, seg));
        assert!(!transport_ok6(dst, src, 6, seg));
        let mut cleared = seg.to_vec();
        cleared[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(
            l4_v6(src, dst, 17, &cleared).to_be_bytes(),
            [seg[6], seg[7]]
        );
        // A UDP checksum of 0 is wrong on IPv6.
        assert!(!transport_ok6(src, dst, 17, &cleared));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// The reference: sum 16-bit words one at a time, as RFC 1071 does.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]);
            let lo = u64::from(pair.get(1).copied().unwrap_or(0));
            s += (hi << 8) | lo;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    proptest! {
        #[test]
        fn sum_agrees_with_the_naive_sum(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), naive(&data));
        }

        #[test]
        fn partial_sums_of_even_pieces_add(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }

        /// Incremental update equals full recompute, for 16- and 32-bit
        /// fields at any even offset of a random buffer.
        #[test]
        fn incremental_update_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..200),
            at in any::<usize>(),
            new16 in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            let at = (at % (data.len() - 3)) & !1;
            let before = finish(sum(&data));

            let old16 = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new16.to_be_bytes());
            let after16 = update16(before, old16, new16);
            // The one ones'-complement ambiguity: all-zero data sums to +0,
            // whose checksum a full recompute writes as 0xffff.
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(after16, finish(sum(&data)));
            }

            let old32 = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new32.to_be_bytes());
            let after32 = update32(after16, old32, new32);
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(after32, finish(sum(&data)));
                prop_assert!(verify(sum(&data) + u32::from(after32)));
            }
        }

        /// NAT66: an address change updated incrementally, in the data and
        /// through the pseudo-header, equals a full recompute.
        #[test]
        fn update128_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 16..200),
            at in any::<usize>(),
            new in any::<[u8; 16]>(),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            new_src in any::<[u8; 16]>(),
        ) {
            let at = (at % (data.len() - 15)) & !1;
            let before = finish(sum(&data));
            let old: [u8; 16] = data[at..at + 16].try_into().unwrap_or([0; 16]);
            data[at..at + 16].copy_from_slice(&new);
            let after = update128(before, Ipv6Addr::from(old), Ipv6Addr::from(new));
            if data.iter().any(|&b| b != 0) {
                prop_assert_eq!(after, finish(sum(&data)));
            }
            // Through the pseudo-header: a new source address.
            let (src, dst, new_src) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new_src));
            let full = l4_v6(src, dst, 6, &data);
            prop_assert_eq!(update128(full, src, new_src), l4_v6(new_src, dst, 6, &data));
        }
    }
}
