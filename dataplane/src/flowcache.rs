//! The established-flow fast path's memory: a small per-worker,
//! direct-mapped cache of what the hooks decided for a forwarded TCP or UDP
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
//! the same rule set and neighbour snapshot (pointer equality), the same
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
    /// The rule set and neighbour snapshot it was decided with.
    pub rules_id: usize,
    pub neigh_id: usize,
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

/// The cache: a power-of-two number of slots, one entry each (a newer flow
/// replaces an older one in its slot), keyed by the input interface and the
/// packet's tuple as it arrives (before NAT). The keys live apart from the
/// entries, 16 bytes a slot, so that a miss (every packet of a new
/// connection) reads one small line.
pub(crate) struct FlowCache {
    keys: Box<[Option<(u8, Tuple)>]>,
    slots: Box<[Option<Cached>]>,
    mask: usize,
}

impl FlowCache {
    pub const MAX_COUNTERS: usize = crate::classify::EvalState::MAX_RECORDED;

    pub fn new(slots: usize) -> FlowCache {
        let n = slots.max(1).next_power_of_two();
        FlowCache {
            keys: vec![None; n].into_boxed_slice(),
            slots: vec![None; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// One multiply-xorshift: enough to spread flows over a per-worker
    /// cache (a collision only sends a flow down the full path), and cheaper
    /// than conntrack's [`Tuple::hash64`].
    #[inline]
    fn slot(&self, in_iface: u8, key: &Tuple) -> usize {
        let a = (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst));
        let b = (u64::from(key.sport) << 48)
            | (u64::from(key.dport) << 32)
            | (u64::from(key.proto) << 8)
            | u64::from(in_iface);
        let h = (a ^ b.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h ^ (h >> 29)) as usize & self.mask
    }

    /// The entry for `key` arriving on `in_iface`, if cached.
    #[inline]
    pub fn get(&self, in_iface: u8, key: &Tuple) -> Option<&Cached> {
        let i = self.slot(in_iface, key);
        if self.keys[i] != Some((in_iface, *key)) {
            return None;
        }
        self.slots[i].as_ref()
    }

    pub fn insert(&mut self, in_iface: u8, key: &Tuple, c: Cached) {
        let i = self.slot(in_iface, key);
        self.keys[i] = Some((in_iface, *key));
        self.slots[i] = Some(c);
    }

    /// Forgets `key` (its traversal changed).
    pub fn remove(&mut self, in_iface: u8, key: &Tuple) {
        let i = self.slot(in_iface, key);
        if self.keys[i] == Some((in_iface, *key)) {
            self.keys[i] = None;
            self.slots[i] = None;
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
            rules_id: 1,
            neigh_id: 2,
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
}
