//! Flow keys: the 5-tuple of a packet as connection tracking sees it, its
//! direction, and the hash that picks a conntrack shard.

use std::net::Ipv4Addr;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A connection's tuple in one direction. For TCP and UDP the ports are the
/// ports; for ICMP queries (echo, timestamp, ...) both are the query id, so
/// that inverting a tuple gives the reply's; for other protocols both are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Tuple {
    /// The tuple of the other direction.
    #[inline]
    pub fn invert(&self) -> Tuple {
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
        let a = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
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
        let a = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
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
