//! Flow keys: the 5-tuple of a packet as connection tracking sees it, its
//! direction, and the hash that picks a conntrack shard.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// An address family's address, as the family-generic parts (tuples,
/// connection tracking) see it. Implemented by [`Ipv4Addr`] and
/// [`Ipv6Addr`]; each family gets its own monomorphised table, so IPv4's
/// code is what it was before IPv6 came (Linux keeps one table with
/// 16-byte addresses for both; we keep the IPv4 key at 20 bytes).
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static {
    /// The address as the key table stores it.
    type Words: TableWords;
    /// The family's ICMP protocol number (1 or 58).
    const ICMP: u8;
    /// `/proc/net/nf_conntrack`'s layer-3 name and number (`ipv4 2`,
    /// `ipv6 10`).
    const L3: (&'static str, u8);
    const UNSPECIFIED: Self;
    /// The highest ICMP type conntrack accepts (`NR_ICMP_TYPES` for IPv4;
    /// ICMPv6 has no such check).
    const ICMP_MAX_TYPE: u8;
    fn words(self) -> Self::Words;
    fn from_words(w: Self::Words) -> Self;
    /// Both addresses of a tuple in 64 bits, before mixing.
    fn pair(src: Self, dst: Self) -> u64;
    /// `conntrack`'s ICMP "is an error" test for this family
    /// (`icmp_is_err`, `icmpv6_error`: types below 128).
    fn icmp_is_error(ty: u8) -> bool;
    /// Whether an ICMP message of type `ty` may start a connection
    /// (`icmp_new`'s `valid_new`, `icmpv6_new`'s).
    fn icmp_valid_new(ty: u8) -> bool;
    /// The type of the reply to a query of type `ty` (`invmap`); `ty`
    /// itself for others.
    fn icmp_reply_type(ty: u8) -> u8;
    /// Bits in an address (32, 128).
    const BITS: u8;
    /// The address with all but its first `len` bits cleared (`len`
    /// beyond [`Addr::BITS`] keeps them all).
    fn masked(self, len: u8) -> Self;
    /// Appends the address as `/proc/net/nf_conntrack` prints it (`%pI4`;
    /// `%pI6`: eight groups of four hex digits, nothing compressed).
    fn push_proc(self, out: &mut String);
    /// Appends the address as conntrack-tools prints it (`inet_ntop`: IPv6
    /// compressed).
    fn push_ntop(self, out: &mut String);
}

/// An address as conntrack's key table stores it, and how many keys of
/// such addresses a bucket holds: as many as its cache lines take (three
/// IPv4 keys in one line; two IPv6 keys in two, where three would take
/// three lines).
pub trait TableWords: Copy + Eq + Default + Debug + Send + Sync + 'static {
    /// A bucket's keys.
    type Recs<R: Copy + Default + Debug + Send + Sync + 'static>: Copy
        + Default
        + Debug
        + Send
        + Sync
        + AsRef<[R]>
        + AsMut<[R]>;
}

impl TableWords for u32 {
    type Recs<R: Copy + Default + Debug + Send + Sync + 'static> = [R; 3];
}

impl TableWords for [u32; 4] {
    type Recs<R: Copy + Default + Debug + Send + Sync + 'static> = [R; 2];
}

impl Addr for Ipv4Addr {
    type Words = u32;
    const ICMP: u8 = IPPROTO_ICMP;
    const L3: (&'static str, u8) = ("ipv4", 2);
    const UNSPECIFIED: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const ICMP_MAX_TYPE: u8 = 18;
    #[inline]
    fn words(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn from_words(w: u32) -> Ipv4Addr {
        Ipv4Addr::from(w)
    }
    #[inline]
    fn pair(src: Self, dst: Self) -> u64 {
        (u64::from(u32::from(src)) << 32) | u64::from(u32::from(dst))
    }
    fn icmp_is_error(ty: u8) -> bool {
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem.
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
    fn icmp_valid_new(ty: u8) -> bool {
        // Echo, timestamp, information and address mask requests.
        matches!(ty, 8 | 13 | 15 | 17)
    }
    fn icmp_reply_type(ty: u8) -> u8 {
        match ty {
            8 => 0,
            0 => 8,
            13 => 14,
            14 => 13,
            15 => 16,
            16 => 15,
            17 => 18,
            18 => 17,
            t => t,
        }
    }
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> Ipv4Addr {
        let m = u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self) & m)
    }
    fn push_proc(self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{self}");
    }
    fn push_ntop(self, out: &mut String) {
        self.push_proc(out);
    }
}

impl Addr for Ipv6Addr {
    type Words = [u32; 4];
    const ICMP: u8 = IPPROTO_ICMPV6;
    const L3: (&'static str, u8) = ("ipv6", 10);
    const UNSPECIFIED: Ipv6Addr = Ipv6Addr::UNSPECIFIED;
    const ICMP_MAX_TYPE: u8 = u8::MAX;
    #[inline]
    fn words(self) -> [u32; 4] {
        let b = self.octets();
        std::array::from_fn(|i| {
            u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        })
    }
    #[inline]
    fn from_words(w: [u32; 4]) -> Ipv6Addr {
        let mut b = [0u8; 16];
        for (i, x) in w.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
        }
        Ipv6Addr::from(b)
    }
    #[inline]
    fn pair(src: Self, dst: Self) -> u64 {
        let (s, d) = (u128::from(src), u128::from(dst));
        let fold = |x: u128| mix((x >> 64) as u64 ^ mix(x as u64));
        fold(s) ^ fold(d).rotate_left(32)
    }
    fn icmp_is_error(ty: u8) -> bool {
        ty < 128
    }
    fn icmp_valid_new(ty: u8) -> bool {
        // Echo request, node information query (`icmpv6_new`).
        matches!(ty, 128 | 139)
    }
    fn icmp_reply_type(ty: u8) -> u8 {
        match ty {
            128 => 129,
            129 => 128,
            139 => 140,
            140 => 139,
            t => t,
        }
    }
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> Ipv6Addr {
        let m = u128::MAX
            .checked_shl(128 - u32::from(len.min(128)))
            .unwrap_or(0);
        Ipv6Addr::from(u128::from(self) & m)
    }
    fn push_proc(self, out: &mut String) {
        use std::fmt::Write;
        for (i, g) in self.segments().iter().enumerate() {
            let sep = if i == 0 { "" } else { ":" };
            let _ = write!(out, "{sep}{g:04x}");
        }
    }
    fn push_ntop(self, out: &mut String) {
        use std::fmt::Write;
        // glibc's `inet_ntop6`: Rust's form, but for an IPv4-compatible
        // address (six zero groups, then not zero), written `::a.b.c.d`.
        let g = self.segments();
        let _ = if g[..6] == [0; 6] && g[6] != 0 {
            let o = self.octets();
            write!(out, "::{}.{}.{}.{}", o[12], o[13], o[14], o[15])
        } else {
            write!(out, "{self}")
        };
    }
}

/// A connection's tuple in one direction. For TCP and UDP the ports are the
/// ports; for ICMP queries (echo, timestamp, ...) both are the query id, so
/// that inverting a tuple gives the reply's; for other protocols both are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple<A = Ipv4Addr> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl<A: Addr> Tuple<A> {
    /// The tuple of the other direction.
    #[inline]
    pub fn invert(&self) -> Tuple<A> {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// A well-mixed 64-bit hash (no allocation, no global state): used to pick
    /// shards and inside the shard maps.
    #[inline]
    pub fn hash64(&self) -> u64 {
        let a = A::pair(self.src, self.dst);
        let b =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        mix(a ^ mix(b ^ 0x9e37_79b9_7f4a_7c15))
    }

    /// [`Tuple::hash64`] keyed with a secret (`key`, drawn at start), for
    /// tables an outsider fills: without the key, tuples cannot be chosen
    /// to crowd one bucket or shard (Linux keys its conntrack hash with
    /// `nf_conntrack_hash_rnd` for the same reason).
    #[inline]
    pub fn hash_keyed(&self, key: [u64; 2]) -> u64 {
        let a = A::pair(self.src, self.dst);
        let b =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        mix(a ^ key[0] ^ mix(b ^ key[1]))
    }
}

/// A 64-bit finaliser (splitmix64).
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which way a packet goes relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original,
    Reply,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }
    pub fn flip(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_twice_is_identity_and_hash_differs_by_direction() {
        let t = Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 9),
            sport: 40000,
            dport: 80,
            proto: IPPROTO_TCP,
        };
        assert_eq!(t.invert().invert(), t);
        assert_ne!(t.hash64(), t.invert().hash64());
    }
}
