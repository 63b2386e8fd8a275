//! The fast path's memory: a small per-worker, two-way set-associative
//! cache of what the hooks decided for a forwarded TCP or UDP flow in one
//! direction ([`Cached`]), keyed by the flow's tuple as it arrives and its
//! input interface, valid for one epoch (a rule set, neighbour and link
//! snapshot); one cache per address family. What may be cached and when it
//! is used: see [`super`].

use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conntrack::{EntryRef, Track};
use crate::flow::{Addr, Dir, Tuple};
use crate::hint::prefetch::prefetch_line;
use crate::wire::fast::{self, FlowEdit, Peek};

use super::record::Recording;

/// An address family whose flows the fast path caches: how its tuples pack
/// into a cache key, how its frames are read and rewritten, and where the
/// recording keeps its packets.
pub(crate) trait FastAddr: Addr {
    /// A key's words: the tuple's addresses, then one word of ports,
    /// protocol, interface and epoch (see [`Key`]).
    type KeyWords: Copy + Eq + Debug + AsRef<[u64]> + AsMut<[u64]>;
    const EMPTY: Self::KeyWords;
    /// The tuple's addresses in the leading words, the last word 0.
    fn addr_words(t: &Tuple<Self>) -> Self::KeyWords;
    /// [`Key::hash`] of a key's words.
    fn key_hash(w: &Self::KeyWords) -> u64;
    /// Makes a cached flow's rewrite on a frame the family's peek took.
    fn apply(edit: &FlowEdit<Self>, frame: &mut [u8], proto: u8);
    /// Whether the transport checksum of a peeked frame verifies.
    fn l4_checksum_ok(frame: &[u8], p: &Peek<Self>) -> bool;
    /// Starts recording the packet `t` that arrived on `in_iface`.
    fn start(rec: &mut Recording, in_iface: u8, t: Tuple<Self>);
    /// Hands what conntrack said of the packet to the full path.
    fn hand_over(rec: &mut Recording, t: Track<Self>);
}

impl FastAddr for Ipv4Addr {
    type KeyWords = [u64; 2];
    const EMPTY: [u64; 2] = [0; 2];
    #[inline(always)]
    fn key_hash(w: &[u64; 2]) -> u64 {
        (w[0].wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w[1] >> 8)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
    #[inline(always)]
    fn addr_words(t: &Tuple) -> [u64; 2] {
        [
            (u64::from(u32::from(t.src)) << 32) | u64::from(u32::from(t.dst)),
            0,
        ]
    }
    #[inline(always)]
    fn apply(edit: &FlowEdit, frame: &mut [u8], proto: u8) {
        edit.apply(frame, proto);
    }
    #[inline(always)]
    fn l4_checksum_ok(frame: &[u8], p: &Peek) -> bool {
        fast::l4_checksum_ok(frame, p)
    }
    #[inline(always)]
    fn start(rec: &mut Recording, in_iface: u8, t: Tuple) {
        rec.start(in_iface, t);
    }
    #[inline(always)]
    fn hand_over(rec: &mut Recording, t: Track) {
        rec.pre_track = Some(t);
    }
}

impl FastAddr for Ipv6Addr {
    type KeyWords = [u64; 5];
    const EMPTY: [u64; 5] = [0; 5];
    #[inline(always)]
    fn key_hash(w: &[u64; 5]) -> u64 {
        let k = 0x9e37_79b9_7f4a_7c15u64;
        let acc = (((w[0].wrapping_mul(k) ^ w[1]).wrapping_mul(k) ^ w[2]).wrapping_mul(k)) ^ w[3];
        (acc.wrapping_mul(k) ^ (w[4] >> 8)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
    #[inline(always)]
    fn addr_words(t: &Tuple<Ipv6Addr>) -> [u64; 5] {
        let (s, d) = (t.src.to_bits(), t.dst.to_bits());
        [(s >> 64) as u64, s as u64, (d >> 64) as u64, d as u64, 0]
    }
    #[inline(always)]
    fn apply(edit: &FlowEdit<Ipv6Addr>, frame: &mut [u8], proto: u8) {
        edit.apply(frame, proto);
    }
    #[inline(always)]
    fn l4_checksum_ok(frame: &[u8], p: &Peek<Ipv6Addr>) -> bool {
        fast::l4_checksum_ok6(frame, p)
    }
    #[inline(always)]
    fn start(rec: &mut Recording, in_iface: u8, t: Tuple<Ipv6Addr>) {
        rec.start6(in_iface, t);
    }
    #[inline(always)]
    fn hand_over(rec: &mut Recording, t: Track<Ipv6Addr>) {
        rec.pre_track6 = Some(t);
    }
}

/// What a forwarded flow's traversal decided: two cache lines exactly (the
/// prefetch pass loads both), the counter slots last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Cached<A: Addr = Ipv4Addr> {
    /// The connection as conntrack reported it: its entry (so that its
    /// next packets are tracked without a lookup) and direction. The state
    /// bits the rules saw follow from the entry (ESTABLISHED, and NAT bits
    /// fixed at confirm).
    pub entry: EntryRef,
    pub dir: Dir,
    /// The rewrite: the connection's NAT in this direction, and the DSCP a
    /// rule set, if any.
    pub edit: FlowEdit<A>,
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
// IPv6's: three lines (the prefetch pass loads the first two).
const _: () = assert!(std::mem::size_of::<Option<Cached<Ipv6Addr>>>() <= 192);

/// Where an entry is in the cache ([`FlowCache::probe`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Place(usize);

/// A slot's key: the packet's tuple as it arrives (before NAT), the input
/// interface and the epoch its entry was decided in, packed in words
/// (compared and hashed as such): the addresses (IPv4: `src << 32 | dst`;
/// IPv6: four words), then `sport << 48 | dport << 32 | proto << 16 |
/// iface << 8 | epoch`. Epoch 0: empty.
#[derive(Clone, Copy, Debug)]
struct Key<A: FastAddr>(A::KeyWords);

impl<A: FastAddr> PartialEq for Key<A> {
    /// Word by word, without a branch per word (an IPv6 key's 40 bytes
    /// would otherwise be a `memcmp` call).
    #[inline(always)]
    fn eq(&self, o: &Key<A>) -> bool {
        let (a, b) = (self.0.as_ref(), o.0.as_ref());
        a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
    }
}

impl<A: FastAddr> Eq for Key<A> {}

impl<A: FastAddr> Key<A> {
    #[inline]
    fn new(t: &Tuple<A>, iface: u8, epoch: u8) -> Key<A> {
        let mut w = A::addr_words(t);
        if let Some(last) = w.as_mut().last_mut() {
            *last = (u64::from(t.sport) << 48)
                | (u64::from(t.dport) << 32)
                | (u64::from(t.proto) << 16)
                | (u64::from(iface) << 8)
                | u64::from(epoch);
        }
        Key(w)
    }

    const EMPTY: Key<A> = Key(A::EMPTY);

    /// The word of ports, protocol, interface and epoch.
    #[inline]
    fn last(&self) -> u64 {
        self.0.as_ref().last().copied().unwrap_or(0)
    }

    /// The same flow and interface, whatever the epoch (and not empty).
    fn same_flow(&self, o: &Key<A>) -> bool {
        let (a, b) = (self.0.as_ref(), o.0.as_ref());
        let n = a.len().saturating_sub(1);
        a[..n] == b[..n] && self.last() >> 8 == o.last() >> 8 && self.last() & 0xff != 0
    }

    /// One multiply-xorshift per word, the epoch left out (enough to spread
    /// flows over a per-worker cache, where a collision only sends a flow
    /// down the full path; cheaper than [`Tuple::hash64`]). The product's
    /// top bits depend on every bit of its input.
    #[inline(always)]
    fn hash(&self) -> u64 {
        A::key_hash(&self.0)
    }
}

/// Entries per bucket.
const WAYS: usize = 2;

/// The cache: a power-of-two number of buckets of two entries (two-way set
/// associative: two flows that hash alike both stay; a third replaces the
/// one cached first). The keys live apart from the entries, 32 bytes a
/// bucket, so that a miss (every packet of a new connection) reads one
/// small line. Entries carry the epoch they were decided in: a new rule set
/// or neighbour snapshot starts a new epoch ([`FlowCache::new_epoch`]),
/// which ends every entry at once.
pub(crate) struct FlowCache<A: FastAddr = Ipv4Addr> {
    keys: Box<[[Key<A>; WAYS]]>,
    slots: Box<[[Option<Cached<A>>; WAYS]]>,
    /// 64 - log2(buckets): a hash's top bits pick its bucket.
    shift: u32,
    epoch: u8,
}

impl FlowCache {
    pub const MAX_COUNTERS: usize = super::record::MAX_RECORDED;
}

impl<A: FastAddr> FlowCache<A> {
    /// A cache of at least `entries` entries.
    pub fn new(entries: usize) -> FlowCache<A> {
        let n = entries.div_ceil(WAYS).max(2).next_power_of_two();
        FlowCache {
            keys: vec![[Key::<A>::EMPTY; WAYS]; n].into_boxed_slice(),
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
            self.keys.fill([Key::<A>::EMPTY; WAYS]);
            self.epoch = 1;
        }
    }

    /// The key for `t` arriving on `in_iface` this epoch, and its bucket
    /// (the top bits of [`Key::hash`]).
    #[inline]
    fn locate(&self, in_iface: u8, t: &Tuple<A>) -> (Key<A>, usize) {
        let k = Key::new(t, in_iface, self.epoch);
        let h = k.hash();
        (k, (h >> self.shift) as usize)
    }

    /// The entry for `t` arriving on `in_iface`, if cached this epoch.
    #[cfg(test)]
    pub fn get(&self, in_iface: u8, t: &Tuple<A>) -> Option<&Cached<A>> {
        let (b, way) = self.find(in_iface, t)?;
        self.slots[b][way].as_ref()
    }

    /// Where `t` arriving on `in_iface` is cached this epoch, if it is (for
    /// [`FlowCache::at`]), having started loading that entry's lines.
    #[inline]
    pub fn probe(&self, in_iface: u8, t: &Tuple<A>) -> Option<Place> {
        let (b, way) = self.find(in_iface, t)?;
        let c = self.slots.get(b)?.get(way)?;
        let at = c as *const Option<Cached<A>> as usize;
        prefetch_line(at);
        prefetch_line(at + 64);
        Some(Place(b * WAYS + way))
    }

    /// The entry a [`FlowCache::probe`] found, if it is still there.
    #[inline]
    pub fn at(&self, p: Place) -> Option<&Cached<A>> {
        self.slots.get(p.0 / WAYS)?.get(p.0 % WAYS)?.as_ref()
    }

    /// [`FlowCache::get`], to update the entry's batch state.
    #[inline]
    pub fn get_mut(&mut self, in_iface: u8, t: &Tuple<A>) -> Option<&mut Cached<A>> {
        let (b, way) = self.find(in_iface, t)?;
        self.slots[b][way].as_mut()
    }

    #[inline]
    fn find(&self, in_iface: u8, t: &Tuple<A>) -> Option<(usize, usize)> {
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

    pub fn insert(&mut self, in_iface: u8, t: &Tuple<A>, c: Cached<A>) {
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
    pub fn remove(&mut self, in_iface: u8, t: &Tuple<A>) {
        let (want, b) = self.locate(in_iface, t);
        if let Some(way) = self.keys[b].iter().position(|k| *k == want) {
            self.keys[b][way] = Key::EMPTY;
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

    fn entry<A: FastAddr>(key: Tuple<A>) -> Cached<A> {
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

    #[test]
    fn ipv6_flows_are_told_apart_and_spread() {
        let key6 = |host: u16, sport: u16| Tuple {
            src: Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, host),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9),
            sport,
            dport: 443,
            proto: 6,
        };
        let mut c = FlowCache::<Ipv6Addr>::new(8192);
        let (a, b) = (key6(2, 1000), key6(3, 1000));
        c.insert(0, &a, entry(a));
        assert_eq!(c.get(0, &a), Some(&entry(a)));
        assert!(c.get(0, &b).is_none(), "another host, same port");
        assert!(c.get(1, &a).is_none(), "another input interface");
        c.new_epoch();
        assert!(c.get(0, &a).is_none());
        // Hosts differing in the last word only, and ports, both spread.
        let by_host: std::collections::HashSet<usize> =
            (0..1024).map(|h| c.locate(0, &key6(h, 1000)).1).collect();
        let by_port: std::collections::HashSet<usize> = (0..1024)
            .map(|p| c.locate(0, &key6(2, 20_000 + p)).1)
            .collect();
        assert!(by_host.len() > 800, "{} buckets", by_host.len());
        assert!(by_port.len() > 800, "{} buckets", by_port.len());
    }
}
