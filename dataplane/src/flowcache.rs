//! The established-flow fast path's memory: a small per-worker,
//! two-way set-associative cache of what the hooks decided for a forwarded TCP or UDP
//! flow in one direction, so that its next packets skip the rule traversal.
//!
//! An entry is only made from a full traversal ([`crate::pipeline`]) of a
//! packet that conntrack found ESTABLISHED (not RELATED) and that was
//! forwarded to a next hop whose MAC the worker's neighbour snapshot knew,
//! when no rule evaluated on the way could decide differently for the next
//! packet of the same flow (no TCP-flag, DSCP, ICMP or limit match, no LOG:
//! [`crate::classify::CRule::volatile`]) and the counters it bumped fit.
//! Rules only see fields that are the same for every packet of a flow in
//! one direction (addresses and ports before and after its NAT, interfaces,
//! the conntrack state bits, the mark the rules themselves set), so the
//! same rule set gives the same result.
//!
//! A cached entry is used only while that still holds, checked per packet:
//! the same rule set and neighbour snapshot (the cache's epoch), the same
//! conntrack entry (its slot and generation: so the same direction, tuples
//! and NAT state bits, which are fixed at confirm) says ESTABLISHED, and
//! the packet's TTL and length pass the forwarding checks. Conntrack itself
//! runs for every packet, on that entry without a lookup
//! ([`crate::conntrack::Conntrack::track_entry`]: timeouts, TCP window
//! tracking, counters), and the rule counters the traversal
//! bumped are bumped again, so counters, `conntrack -L` and traces cannot
//! tell a cached packet from another. Anything else takes the full path.

use crate::conntrack::EntryRef;
use crate::flow::{Dir, Tuple};
use crate::wire::fast::FlowEdit;

/// What a forwarded flow's traversal decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    /// The connection as conntrack reported it: its entry (so that its
    /// next packets are tracked without a lookup), direction and state bits.
    pub entry: EntryRef,
    pub dir: Dir,
    pub ct_bits: u8,
    /// The rewrite: the connection's NAT in this direction, and the DSCP a
    /// rule set, if any.
    pub edit: FlowEdit,
    /// Where it went.
    pub out_iface: u8,
    pub mtu: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The counter slots the traversal bumped.
    pub counters: [u32; FlowCache::MAX_COUNTERS],
    pub ncounters: u8,
}

/// A slot's key: the input interface and the packet's tuple as it arrives
/// (before NAT), and the epoch its entry was decided in (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    tuple: Tuple,
    iface: u8,
    /// 0: empty.
    epoch: u8,
}

const EMPTY: Key = Key {
    tuple: Tuple {
        src: std::net::Ipv4Addr::UNSPECIFIED,
        dst: std::net::Ipv4Addr::UNSPECIFIED,
        sport: 0,
        dport: 0,
        proto: 0,
    },
    iface: 0,
    epoch: 0,
};

/// Entries per bucket.
const WAYS: usize = 2;

/// The cache: a power-of-two number of buckets of two entries (two-way set
/// associative: two flows that hash alike both stay; a third replaces the
/// one cached first). The keys live apart from the entries, 32 bytes a
/// bucket, so that a miss (every packet of a new connection) reads one
/// small line. Entries carry the epoch they were decided in: a new rule set
/// or neighbour snapshot starts a new epoch ([`FlowCache::new_epoch`]),
/// which ends every entry at once.
pub(crate) struct FlowCache {
    keys: Box<[[Key; WAYS]]>,
    slots: Box<[[Option<Cached>; WAYS]]>,
    mask: usize,
    epoch: u8,
}

impl FlowCache {
    pub const MAX_COUNTERS: usize = crate::classify::EvalState::MAX_RECORDED;

    /// A cache of at least `entries` entries.
    pub fn new(entries: usize) -> FlowCache {
        let n = entries.div_ceil(WAYS).max(1).next_power_of_two();
        FlowCache {
            keys: vec![[EMPTY; WAYS]; n].into_boxed_slice(),
            slots: vec![[None; WAYS]; n].into_boxed_slice(),
            mask: n - 1,
            epoch: 1,
        }
    }

    /// Ends every entry (the rule set or the neighbours changed).
    pub fn new_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: entries of 255 epochs ago would look current.
            self.keys.fill([EMPTY; WAYS]);
            self.epoch = 1;
        }
    }

    /// One multiply-xorshift: enough to spread flows over a per-worker
    /// cache (a collision only sends a flow down the full path), and cheaper
    /// than conntrack's [`Tuple::hash64`].
    #[inline]
    fn bucket(&self, in_iface: u8, key: &Tuple) -> usize {
        let a = (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst));
        let b = (u64::from(key.sport) << 48)
            | (u64::from(key.dport) << 32)
            | (u64::from(key.proto) << 8)
            | u64::from(in_iface);
        let h = (a ^ b.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h ^ (h >> 29)) as usize & self.mask
    }

    #[inline]
    fn key(&self, in_iface: u8, key: &Tuple) -> Key {
        Key {
            tuple: *key,
            iface: in_iface,
            epoch: self.epoch,
        }
    }

    /// The entry for `key` arriving on `in_iface`, if cached this epoch.
    #[inline]
    pub fn get(&self, in_iface: u8, key: &Tuple) -> Option<&Cached> {
        let b = self.bucket(in_iface, key);
        let want = self.key(in_iface, key);
        let way = self.keys[b].iter().position(|k| *k == want)?;
        self.slots[b][way].as_ref()
    }

    pub fn insert(&mut self, in_iface: u8, key: &Tuple, c: Cached) {
        let b = self.bucket(in_iface, key);
        let k = self.key(in_iface, key);
        let (keys, slots) = (&mut self.keys[b], &mut self.slots[b]);
        // The flow's own slot if it has one (any epoch), else the older one.
        let way = keys
            .iter()
            .position(|x| x.tuple == k.tuple && x.iface == k.iface && x.epoch != 0)
            .unwrap_or_else(|| {
                keys[1] = keys[0];
                slots[1] = slots[0];
                0
            });
        keys[way] = k;
        slots[way] = Some(c);
    }

    /// Forgets `key` (its traversal changed).
    pub fn remove(&mut self, in_iface: u8, key: &Tuple) {
        let b = self.bucket(in_iface, key);
        let want = self.key(in_iface, key);
        if let Some(way) = self.keys[b].iter().position(|k| *k == want) {
            self.keys[b][way] = EMPTY;
            self.slots[b][way] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(sport: u16) -> Tuple {
        Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 9),
            sport,
            dport: 80,
            proto: 6,
        }
    }

    fn entry(key: Tuple) -> Cached {
        Cached {
            entry: EntryRef::new(0, 1, 0),
            dir: Dir::Original,
            ct_bits: 0,
            edit: FlowEdit {
                dst: None,
                src: Some((key.src, key.sport)),
                dscp: None,
            },
            out_iface: 1,
            mtu: 1500,
            dst_mac: [0; 6],
            src_mac: [0; 6],
            counters: [0; FlowCache::MAX_COUNTERS],
            ncounters: 0,
        }
    }

    #[test]
    fn get_insert_remove() {
        let mut c = FlowCache::new(16);
        let k = key(1000);
        let e = entry(k);
        assert!(c.get(0, &k).is_none());
        c.insert(0, &k, e);
        assert_eq!(c.get(0, &k), Some(&e));
        assert!(c.get(1, &k).is_none(), "another input interface");
        c.remove(0, &k);
        assert!(c.get(0, &k).is_none());
    }

    #[test]
    fn two_flows_of_a_bucket_both_stay_a_third_replaces_the_first() {
        // One bucket: every flow shares it.
        let mut c = FlowCache::new(2);
        let (a, b, d) = (key(1), key(2), key(3));
        c.insert(0, &a, entry(a));
        c.insert(0, &b, entry(b));
        assert_eq!(c.get(0, &a), Some(&entry(a)));
        assert_eq!(c.get(0, &b), Some(&entry(b)));
        // Re-inserting a cached flow keeps the other.
        c.insert(0, &a, entry(a));
        assert!(c.get(0, &b).is_some());
        c.insert(0, &d, entry(d));
        assert!(c.get(0, &d).is_some());
        assert!(c.get(0, &b).is_some(), "the newer one stays");
        assert!(c.get(0, &a).is_none(), "the one cached first went");
    }

    #[test]
    fn a_new_epoch_ends_every_entry() {
        let mut c = FlowCache::new(64);
        let k = key(7);
        c.insert(0, &k, entry(k));
        c.new_epoch();
        assert!(c.get(0, &k).is_none());
        c.insert(0, &k, entry(k));
        assert!(c.get(0, &k).is_some());
        // 256 epochs later the counter wraps: old entries must not return.
        c.insert(1, &k, entry(k));
        for _ in 0..256 {
            c.new_epoch();
        }
        assert!(c.get(1, &k).is_none());
    }
}
