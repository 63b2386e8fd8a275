//! The fast path's memory: a small per-worker, two-way set-associative
//! cache of what the hooks decided for a forwarded TCP or UDP flow in one
//! direction ([`Cached`]), keyed by the flow's tuple as it arrives and its
//! input interface, valid for one epoch (a rule set, neighbour and link
//! snapshot). What may be cached and when it is used: see [`super`].

use crate::conntrack::EntryRef;
use crate::flow::{Dir, Tuple};
use crate::hint::prefetch::prefetch_line;
use crate::wire::fast::FlowEdit;

/// What a forwarded flow's traversal decided: two cache lines exactly (the
/// prefetch pass loads both), the counter slots last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Cached {
    /// The connection as conntrack reported it: its entry (so that its
    /// next packets are tracked without a lookup) and direction. The state
    /// bits the rules saw follow from the entry (ESTABLISHED, and NAT bits
    /// fixed at confirm).
    pub entry: EntryRef,
    pub dir: Dir,
    /// The rewrite: the connection's NAT in this direction, and the DSCP a
    /// rule set, if any.
    pub edit: FlowEdit,
    /// Where it went.
    pub out_iface: u8,
    pub mtu: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ncounters: u8,
    /// The worker's credit round this flow's packets are credited in (see
    /// `Conntrack::credit`), and its credit's index there; round 0: none.
    pub credit_round: u32,
    pub credit_idx: u16,
    /// The counter slots the traversal bumped (`ncounters` of them).
    pub counters: [u32; FlowCache::MAX_COUNTERS],
}

const _: () = assert!(std::mem::size_of::<Option<Cached>>() == 128);

/// Where an entry is in the cache ([`FlowCache::probe`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Place(usize);

/// A slot's key: the packet's tuple as it arrives (before NAT), the input
/// interface and the epoch its entry was decided in, packed in two words
/// (compared and hashed as such): `[src << 32 | dst, sport << 48 |
/// dport << 32 | proto << 16 | iface << 8 | epoch]`. Epoch 0: empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key([u64; 2]);

impl Key {
    #[inline]
    fn new(t: &Tuple, iface: u8, epoch: u8) -> Key {
        Key([
            (u64::from(u32::from(t.src)) << 32) | u64::from(u32::from(t.dst)),
            (u64::from(t.sport) << 48)
                | (u64::from(t.dport) << 32)
                | (u64::from(t.proto) << 16)
                | (u64::from(iface) << 8)
                | u64::from(epoch),
        ])
    }

    /// The same flow and interface, whatever the epoch (and not empty).
    fn same_flow(&self, o: &Key) -> bool {
        self.0[0] == o.0[0] && self.0[1] >> 8 == o.0[1] >> 8 && self.0[1] & 0xff != 0
    }
}

const EMPTY: Key = Key([0; 2]);

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
    /// 64 - log2(buckets): a hash's top bits pick its bucket.
    shift: u32,
    epoch: u8,
}

impl FlowCache {
    pub const MAX_COUNTERS: usize = super::record::MAX_RECORDED;

    /// A cache of at least `entries` entries.
    pub fn new(entries: usize) -> FlowCache {
        let n = entries.div_ceil(WAYS).max(2).next_power_of_two();
        FlowCache {
            keys: vec![[EMPTY; WAYS]; n].into_boxed_slice(),
            slots: vec![[None; WAYS]; n].into_boxed_slice(),
            shift: 64 - n.trailing_zeros(),
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

    /// The key for `t` arriving on `in_iface` this epoch, and its bucket:
    /// one multiply-xorshift of the key's words without the epoch (enough
    /// to spread flows over a per-worker cache, where a collision only
    /// sends a flow down the full path; cheaper than [`Tuple::hash64`]).
    #[inline]
    fn locate(&self, in_iface: u8, t: &Tuple) -> (Key, usize) {
        let k = Key::new(t, in_iface, self.epoch);
        let h = (k.0[0].wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k.0[1] >> 8))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        // The product's top bits depend on every bit of its input.
        (k, (h >> self.shift) as usize)
    }

    /// The entry for `t` arriving on `in_iface`, if cached this epoch.
    #[cfg(test)]
    pub fn get(&self, in_iface: u8, t: &Tuple) -> Option<&Cached> {
        let (b, way) = self.find(in_iface, t)?;
        self.slots[b][way].as_ref()
    }

    /// Where `t` arriving on `in_iface` is cached this epoch, if it is (for
    /// [`FlowCache::at`]), having started loading that entry's lines.
    #[inline]
    pub fn probe(&self, in_iface: u8, t: &Tuple) -> Option<Place> {
        let (b, way) = self.find(in_iface, t)?;
        let c = self.slots.get(b)?.get(way)?;
        let at = c as *const Option<Cached> as usize;
        prefetch_line(at);
        prefetch_line(at + 64);
        Some(Place(b * WAYS + way))
    }

    /// The entry a [`FlowCache::probe`] found, if it is still there.
    #[inline]
    pub fn at(&self, p: Place) -> Option<&Cached> {
        self.slots.get(p.0 / WAYS)?.get(p.0 % WAYS)?.as_ref()
    }

    /// [`FlowCache::get`], to update the entry's batch state.
    #[inline]
    pub fn get_mut(&mut self, in_iface: u8, t: &Tuple) -> Option<&mut Cached> {
        let (b, way) = self.find(in_iface, t)?;
        self.slots[b][way].as_mut()
    }

    #[inline]
    fn find(&self, in_iface: u8, t: &Tuple) -> Option<(usize, usize)> {
        let (want, b) = self.locate(in_iface, t);
        let keys = &self.keys[b];
        if keys[0] == want {
            Some((b, 0))
        } else if keys[1] == want {
            Some((b, 1))
        } else {
            None
        }
    }

    pub fn insert(&mut self, in_iface: u8, t: &Tuple, c: Cached) {
        let (k, b) = self.locate(in_iface, t);
        let (keys, slots) = (&mut self.keys[b], &mut self.slots[b]);
        // The flow's own slot if it has one (any epoch), else the older one.
        let way = keys
            .iter()
            .position(|x| x.same_flow(&k))
            .unwrap_or_else(|| {
                keys[1] = keys[0];
                slots[1] = slots[0];
                0
            });
        keys[way] = k;
        slots[way] = Some(c);
    }

    /// Forgets `t` (its traversal changed).
    pub fn remove(&mut self, in_iface: u8, t: &Tuple) {
        let (want, b) = self.locate(in_iface, t);
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
            credit_round: 0,
            credit_idx: 0,
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
        let p = c.probe(0, &k).expect("cached");
        assert_eq!(c.at(p), Some(&e));
        assert!(c.probe(1, &k).is_none());
        c.remove(0, &k);
        assert!(c.get(0, &k).is_none());
        assert!(c.probe(0, &k).is_none());
        assert!(c.at(p).is_none(), "a place whose entry went holds nothing");
    }

    #[test]
    fn two_flows_of_a_bucket_both_stay_a_third_replaces_the_first() {
        // Two buckets: three flows of the same one.
        let mut c = FlowCache::new(2);
        assert_eq!(c.keys.len(), 2);
        let b0 = c.locate(0, &key(1)).1;
        let mut ks = (1..1000u16).map(key).filter(|k| c.locate(0, k).1 == b0);
        let (a, b, d) = (
            ks.next().expect("a"),
            ks.next().expect("b"),
            ks.next().expect("d"),
        );
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
    fn flows_spread_over_the_buckets() {
        // 1,024 flows differing only in their source port, as a client's.
        let c = FlowCache::new(8192);
        let buckets: std::collections::HashSet<usize> =
            (0..1024).map(|i| c.locate(0, &key(20_000 + i)).1).collect();
        assert!(buckets.len() > 800, "{} buckets", buckets.len());
        assert!(buckets.iter().all(|&b| b < c.keys.len()));
        let by_iface: std::collections::HashSet<usize> =
            (0..64).map(|i| c.locate(i, &key(1)).1).collect();
        assert!(by_iface.len() > 50);
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
