//! One shard's keys: tuple -> where its entry lives, in a table allocated
//! once at a fixed size and never reallocated.
//!
//! A hash's home bucket is one 64-byte line holding three IPv4 keys (the
//! whole tuple and the entry's place), or two lines holding two IPv6 keys
//! ([`TableWords`]), at an address computable from the hash
//! alone ([`KeyTable::line`]), so that the line can be prefetched before
//! the shard's lock is taken, and a lookup, and the insert that follows a
//! miss, usually touch that one line and nothing else.
//!
//! A key whose home bucket is full goes to the next bucket with room
//! (linear probing, wrapping around); every bucket it passed counts it in
//! `overflow`, so a lookup stops at the first bucket that no key passed.
//! Removal undoes the counts: no tombstones. A count that reached
//! `u16::MAX` stays there (lookups then just look one bucket further).

use std::net::Ipv4Addr;

use crate::flow::{Addr, Dir, TableWords, Tuple};

/// Bits of a slot index in a key: a shard holds fewer entries than this.
pub(super) const SLOT_BITS: u32 = 23;
pub(super) const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// A key names its entry's home shard in 16 bits.
pub(super) const MAX_SHARDS: usize = 1 << 16;

/// Where a tuple's entry lives.
///
/// `gen` is the entry's generation; a key read from a table carries only
/// its low 16 bits (compare with [`same_gen`]; `ShardInner::resolve` gives
/// the full one back under the home shard's lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pub home: u32,
    pub slot: u32,
    pub gen: u32,
    pub dir: Dir,
}

/// Whether two generations agree in the bits a key keeps.
#[inline]
pub(super) fn same_gen(a: u32, b: u32) -> bool {
    (a ^ b) & 0xffff == 0
}

/// A key as stored: the tuple in three words plus protocol, direction,
/// slot, home shard and generation packed into two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct Rec<W> {
    src: W,
    dst: W,
    /// sport << 16 | dport
    ports: u32,
    /// slot << 9 | dir << 8 | proto
    meta: u32,
    /// home << 16 | gen & 0xffff
    link: u32,
}

/// A tuple in the words a `Rec` compares.
#[derive(Clone, Copy)]
struct Probe<W> {
    src: W,
    dst: W,
    ports: u32,
    proto: u32,
}

impl<W: Copy + Eq> Probe<W> {
    #[inline]
    fn of<A: Addr<Words = W>>(t: &Tuple<A>) -> Probe<W> {
        Probe {
            src: t.src.words(),
            dst: t.dst.words(),
            ports: (u32::from(t.sport) << 16) | u32::from(t.dport),
            proto: u32::from(t.proto),
        }
    }
}

impl<W: Copy + Eq> Rec<W> {
    fn new(p: &Probe<W>, k: Key) -> Rec<W> {
        debug_assert!((k.slot as usize) < MAX_SLOTS && (k.home as usize) < MAX_SHARDS);
        let dir = match k.dir {
            Dir::Original => 0,
            Dir::Reply => 1,
        };
        Rec {
            src: p.src,
            dst: p.dst,
            ports: p.ports,
            meta: (k.slot << 9) | (dir << 8) | p.proto,
            link: (k.home << 16) | (k.gen & 0xffff),
        }
    }

    #[inline]
    fn matches(&self, p: &Probe<W>) -> bool {
        self.src == p.src
            && self.dst == p.dst
            && self.ports == p.ports
            && self.meta & 0xff == p.proto
    }

    #[inline]
    fn key(&self) -> Key {
        Key {
            home: self.link >> 16,
            slot: self.meta >> 9,
            gen: self.link & 0xffff,
            dir: if self.meta & 0x100 != 0 {
                Dir::Reply
            } else {
                Dir::Original
            },
        }
    }

    fn is_key(&self, k: &Key) -> bool {
        let mine = self.key();
        mine.home == k.home && mine.slot == k.slot && mine.dir == k.dir && same_gen(mine.gen, k.gen)
    }

    #[cfg(test)]
    fn tuple<A: Addr<Words = W>>(&self) -> Tuple<A> {
        Tuple {
            src: A::from_words(self.src),
            dst: A::from_words(self.dst),
            sport: (self.ports >> 16) as u16,
            dport: self.ports as u16,
            proto: self.meta as u8,
        }
    }
}

/// Keys an IPv4 bucket holds: the unit of [`TableLayout`]'s bucket counts
/// (`nf_conntrack_buckets`).
///
/// [`TableLayout`]: super::config::TableLayout
pub(super) const KEYS_PER_BUCKET: usize = 3;
/// An IPv4 bucket's size: one cache line.
pub(super) const BUCKET_BYTES: usize = std::mem::size_of::<Bucket<u32>>();

#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket<W: TableWords> {
    recs: W::Recs<Rec<W>>,
    /// Bit k: `recs[k]` holds a key.
    used: u8,
    _pad: u8,
    /// Keys stored beyond this bucket whose home is here or before it.
    overflow: u16,
}

impl<W: TableWords> Bucket<W> {
    /// Keys a bucket holds.
    const KEYS: usize = std::mem::size_of::<W::Recs<Rec<W>>>() / std::mem::size_of::<Rec<W>>();
    /// `used` with every key taken.
    const ALL_USED: u8 = (1 << Self::KEYS) - 1;
}

const _: () = assert!(std::mem::size_of::<Bucket<u32>>() == 64 && Bucket::<u32>::KEYS == 3);
const _: () = assert!(std::mem::size_of::<Bucket<[u32; 4]>>() == 128);

/// The key table of one shard.
pub(super) struct KeyTable<A: Addr = Ipv4Addr> {
    buckets: Box<[Bucket<A::Words>]>,
    len: usize,
    limit: usize,
}

/// Where a table's buckets are, for prefetching without its lock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lines {
    base: usize,
    n: usize,
    /// A bucket's size in bytes.
    size: usize,
}

impl Lines {
    /// The table's address and size in bytes.
    pub fn span(&self) -> (usize, usize) {
        (self.base, self.n * self.size)
    }

    /// The address of `hash`'s home bucket.
    #[inline]
    pub fn line(&self, hash: u64) -> usize {
        self.base + home_of(hash, self.n) * self.size
    }

    /// Starts loading `hash`'s home bucket: one line, or the two of an
    /// IPv6 bucket.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        crate::hint::prefetch::prefetch_span(self.line(hash), self.size);
    }
}

/// The home bucket of a hash among `n`: its low 32 bits scaled to `n`
/// (the shard is picked by bits 32..).
#[inline]
fn home_of(hash: u64, n: usize) -> usize {
    (((hash & 0xffff_ffff) * n as u64) >> 32) as usize
}

impl<A: Addr> KeyTable<A> {
    /// A table that takes up to `keys` keys, with its slots at most two
    /// thirds used.
    #[cfg(test)]
    pub fn with_capacity(keys: usize) -> KeyTable<A> {
        let keys = keys.max(1);
        KeyTable::new(keys.div_ceil(2) * KEYS_PER_BUCKET, keys)
    }

    /// A table with room for `room` keys (in buckets of this family's
    /// size) that takes up to `limit` keys (at most as many as fit).
    pub fn new(room: usize, limit: usize) -> KeyTable<A> {
        let per = Bucket::<A::Words>::KEYS;
        let n = room.div_ceil(per).max(1);
        KeyTable {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            len: 0,
            limit: limit.clamp(1, n * per),
        }
    }

    pub fn lines(&self) -> Lines {
        Lines {
            base: self.buckets.as_ptr() as usize,
            n: self.buckets.len(),
            size: std::mem::size_of::<Bucket<A::Words>>(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `n` more keys fit.
    #[inline]
    pub fn has_room(&self, n: usize) -> bool {
        self.len + n <= self.limit
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// `t`'s key (its generation cut to 16 bits).
    #[inline]
    pub fn find(&self, hash: u64, t: &Tuple<A>) -> Option<Key> {
        let p = Probe::of(t);
        let mut i = home_of(hash, self.buckets.len());
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[i];
            for (k, r) in b.recs.as_ref().iter().enumerate() {
                if b.used & (1 << k) != 0 && r.matches(&p) {
                    return Some(r.key());
                }
            }
            if b.overflow == 0 {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    /// Adds a key (the caller made sure `t` has none); `false` if the
    /// table is full.
    pub fn insert(&mut self, hash: u64, t: &Tuple<A>, key: Key) -> bool {
        if !self.has_room(1) {
            return false;
        }
        let rec = Rec::new(&Probe::of(t), key);
        let mut i = home_of(hash, self.buckets.len());
        // Below the limit some bucket has room: the loop ends there.
        for _ in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            if b.used != Bucket::<A::Words>::ALL_USED {
                let k = (!b.used).trailing_zeros() as usize;
                b.recs.as_mut()[k] = rec;
                b.used |= 1 << k;
                self.len += 1;
                return true;
            }
            b.overflow = b.overflow.saturating_add(1);
            i = self.next(i);
        }
        debug_assert!(false, "key table below its limit without room");
        false
    }

    /// Removes `t`'s key if it is `key`; returns whether it did.
    pub fn remove(&mut self, hash: u64, t: &Tuple<A>, key: Key) -> bool {
        let p = Probe::of(t);
        let home = home_of(hash, self.buckets.len());
        let mut i = home;
        for passed in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            let hit = b
                .recs
                .as_ref()
                .iter()
                .enumerate()
                .find(|&(k, r)| b.used & (1 << k) != 0 && r.matches(&p) && r.is_key(&key));
            if let Some((k, _)) = hit {
                b.used &= !(1 << k);
                b.recs.as_mut()[k] = Rec::default();
                self.len -= 1;
                let mut j = home;
                for _ in 0..passed {
                    let o = &mut self.buckets[j].overflow;
                    if *o != u16::MAX {
                        *o -= 1;
                    }
                    j = self.next(j);
                }
                return true;
            }
            if b.overflow == 0 {
                return false;
            }
            i = self.next(i);
        }
        false
    }

    /// Every key (generations cut to 16 bits).
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (Tuple<A>, Key)> + '_ {
        self.buckets.iter().flat_map(|b| {
            b.recs
                .as_ref()
                .iter()
                .enumerate()
                .filter(move |(k, _)| b.used & (1 << k) != 0)
                .map(|(_, r)| (r.tuple(), r.key()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tuple(i: u32) -> Tuple {
        Tuple {
            src: Ipv4Addr::from(0x0a00_0000 + i),
            dst: Ipv4Addr::new(203, 0, 113, 9),
            sport: 1024 + (i % 60_000) as u16,
            dport: 53,
            proto: 17,
        }
    }

    fn key(i: u32) -> Key {
        Key {
            home: i % 7,
            slot: i,
            gen: 0x1_0000 + i,
            dir: if i.is_multiple_of(2) {
                Dir::Original
            } else {
                Dir::Reply
            },
        }
    }

    /// Every key in the same home bucket.
    const SAME: u64 = 5;

    #[test]
    fn record_round_trip() {
        let t = Tuple {
            src: Ipv4Addr::new(255, 1, 2, 3),
            dst: Ipv4Addr::new(4, 5, 6, 255),
            sport: 65535,
            dport: 1,
            proto: 255,
        };
        let k = Key {
            home: (MAX_SHARDS - 1) as u32,
            slot: (MAX_SLOTS - 1) as u32,
            gen: 0xdead_beef,
            dir: Dir::Reply,
        };
        let r = Rec::new(&Probe::of(&t), k);
        assert_eq!(r.tuple(), t);
        assert_eq!(r.key(), Key { gen: 0xbeef, ..k });
        assert!(r.is_key(&k));
        assert!(!r.is_key(&Key {
            gen: k.gen + 1,
            ..k
        }));
        assert!(!r.is_key(&Key {
            dir: Dir::Original,
            ..k
        }));
    }

    #[test]
    fn insert_find_remove() {
        let mut m = KeyTable::with_capacity(1000);
        for i in 0..1000 {
            assert!(m.insert(tuple(i).hash64(), &tuple(i), key(i)));
        }
        assert_eq!(m.len(), 1000);
        for i in 0..1000 {
            let k = m.find(tuple(i).hash64(), &tuple(i)).expect("present");
            assert_eq!(
                k,
                Key {
                    gen: key(i).gen & 0xffff,
                    ..key(i)
                }
            );
        }
        assert_eq!(m.find(tuple(5000).hash64(), &tuple(5000)), None);
        for i in (0..1000).step_by(2) {
            assert!(m.remove(tuple(i).hash64(), &tuple(i), key(i)));
            assert!(
                !m.remove(tuple(i).hash64(), &tuple(i), key(i)),
                "removed twice"
            );
        }
        for i in 0..1000 {
            assert_eq!(m.find(tuple(i).hash64(), &tuple(i)).is_some(), i % 2 == 1);
        }
        assert_eq!(m.len(), 500);
        assert_eq!(m.iter().count(), 500);
    }

    #[test]
    fn collisions_probe_past_full_buckets_and_removal_keeps_the_rest_reachable() {
        let mut m = KeyTable::with_capacity(40);
        for i in 0..10 {
            assert!(m.insert(SAME, &tuple(i), key(i)));
        }
        // 10 keys with one home: four buckets, the first three full.
        let h = home_of(SAME, m.buckets.len());
        assert_eq!(m.buckets[h].overflow, 7);
        for i in 0..10 {
            assert_eq!(m.find(SAME, &tuple(i)).map(|k| k.slot), Some(i));
        }
        // A key of the full home bucket goes; those beyond stay reachable.
        assert!(m.remove(SAME, &tuple(1), key(1)));
        assert_eq!(m.find(SAME, &tuple(1)), None);
        for i in (0..10).filter(|&i| i != 1) {
            assert_eq!(m.find(SAME, &tuple(i)).map(|k| k.slot), Some(i));
        }
        // Removing the farthest key undoes its counts.
        assert!(m.remove(SAME, &tuple(9), key(9)));
        assert_eq!(m.buckets[h].overflow, 6);
        for i in [0, 2, 3, 4, 5, 6, 7, 8] {
            assert!(m.remove(SAME, &tuple(i), key(i)));
        }
        assert!(m.buckets.iter().all(|b| b.overflow == 0 && b.used == 0));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn probing_wraps_at_the_end() {
        let mut m = KeyTable::with_capacity(12);
        let last = u64::from(u32::MAX); // home: the last bucket
        assert_eq!(home_of(last, m.buckets.len()), m.buckets.len() - 1);
        for i in 0..5 {
            assert!(m.insert(last, &tuple(i), key(i)));
        }
        assert_eq!(m.buckets[0].used.count_ones(), 2);
        for i in 0..5 {
            assert!(m.find(last, &tuple(i)).is_some());
        }
        for i in 0..5 {
            assert!(m.remove(last, &tuple(i), key(i)));
        }
        assert!(m.buckets.iter().all(|b| b.overflow == 0 && b.used == 0));
    }

    #[test]
    fn a_full_table_refuses_and_takes_keys_again_after_removal() {
        let mut m = KeyTable::with_capacity(6);
        for i in 0..6 {
            assert!(m.insert(SAME, &tuple(i), key(i)));
        }
        assert!(!m.has_room(1));
        assert!(!m.insert(SAME, &tuple(6), key(6)));
        assert_eq!(m.find(SAME, &tuple(6)), None);
        assert!(m.remove(SAME, &tuple(3), key(3)));
        assert!(m.insert(SAME, &tuple(6), key(6)));
        assert_eq!(m.find(SAME, &tuple(6)).map(|k| k.slot), Some(6));
    }

    #[test]
    fn a_stale_key_is_removed_only_by_its_own_generation() {
        let mut m = KeyTable::with_capacity(6);
        let t = tuple(1);
        assert!(m.insert(t.hash64(), &t, key(1)));
        let newer = Key {
            gen: key(1).gen + 1,
            ..key(1)
        };
        assert!(!m.remove(t.hash64(), &t, newer));
        assert!(m.find(t.hash64(), &t).is_some());
        // The full generation removes the key stored with its low bits.
        assert!(m.remove(t.hash64(), &t, key(1)));
        assert_eq!(m.find(t.hash64(), &t), None);
    }

    #[test]
    fn same_tuple_other_protocol_is_another_key() {
        let mut m = KeyTable::with_capacity(6);
        let t = tuple(1);
        let u = Tuple { proto: 6, ..t };
        assert!(m.insert(SAME, &t, key(1)));
        assert_eq!(m.find(SAME, &u), None);
    }

    #[test]
    fn lines_point_at_the_home_bucket() {
        let m: KeyTable = KeyTable::with_capacity(100);
        let l = m.lines();
        for h in [0u64, 77, u64::from(u32::MAX), 0xffff_ffff_0000_1234] {
            let want = &m.buckets[home_of(h, m.buckets.len())] as *const Bucket<u32> as usize;
            assert_eq!(l.line(h), want);
            assert_eq!(l.line(h) % 64, 0);
        }
    }

    fn tuple6(i: u32) -> Tuple<std::net::Ipv6Addr> {
        let t = tuple(i);
        Tuple {
            src: t.src.to_ipv6_mapped(),
            dst: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9),
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
        }
    }

    #[test]
    fn an_ipv6_bucket_is_two_lines_of_two_keys() {
        let mut m: KeyTable<std::net::Ipv6Addr> = KeyTable::with_capacity(40);
        let l = m.lines();
        assert_eq!((l.size, l.line(SAME) % 64), (128, 0));
        // As much room as IPv4's buckets of three for the same layout.
        assert_eq!(m.buckets.len(), 30);
        for i in 0..7 {
            assert!(m.insert(SAME, &tuple6(i), key(i)));
        }
        // Seven keys with one home: four buckets, the first three full.
        let h = home_of(SAME, m.buckets.len());
        assert_eq!(m.buckets[h].overflow, 5);
        for i in 0..7 {
            assert_eq!(m.find(SAME, &tuple6(i)).map(|k| k.slot), Some(i));
        }
        for i in 0..7 {
            assert!(m.remove(SAME, &tuple6(i), key(i)));
        }
        assert!(m.buckets.iter().all(|b| b.overflow == 0 && b.used == 0));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32),
        Remove(u32),
    }

    /// The table against a plain map, for a family: `hash` folds tuples
    /// onto few homes so that probing, wrapping and overflow counts work.
    fn against_a_map<A: Addr>(ops: &[Op], tuple: impl Fn(u32) -> Tuple<A>, homes: u64) {
        let mut m: KeyTable<A> = KeyTable::with_capacity(24);
        let mut plain = std::collections::HashMap::new();
        let hash = |i: u32| (u64::from(i) % homes) * (u64::from(u32::MAX) / homes);
        for op in ops {
            match *op {
                Op::Insert(i) => {
                    if plain.contains_key(&i) {
                        continue;
                    }
                    let fits = m.has_room(1);
                    assert_eq!(m.insert(hash(i), &tuple(i), key(i)), fits);
                    if fits {
                        plain.insert(i, key(i));
                    }
                }
                Op::Remove(i) => {
                    assert_eq!(
                        m.remove(hash(i), &tuple(i), key(i)),
                        plain.remove(&i).is_some()
                    );
                }
            }
            assert_eq!(m.len(), plain.len());
            for i in 0..40 {
                let want = plain.get(&i).map(|k| Key {
                    gen: k.gen & 0xffff,
                    ..*k
                });
                assert_eq!(m.find(hash(i), &tuple(i)), want, "key {i}");
            }
        }
    }

    use proptest::prelude::*;

    proptest::proptest! {
        #[test]
        fn both_families_tables_agree_with_a_map(
            ops in proptest::collection::vec(
                proptest::prop_oneof![
                    (0..40u32).prop_map(Op::Insert),
                    (0..40u32).prop_map(Op::Remove),
                ],
                1..150,
            ),
            homes in 1..6u64,
        ) {
            against_a_map(&ops, tuple, homes);
            against_a_map(&ops, tuple6, homes);
        }
    }
}
