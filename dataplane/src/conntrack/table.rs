//! One shard of the table: a slab of entries (with a free list linked
//! through it) and a key table from tuples to where their entry lives
//! (`key_table.rs`). Everything here runs under the shard's lock.
//!
//! An entry lives in the slab of the shard of its *original* tuple (its
//! home). Its original tuple's key sits in the same shard; its reply tuple's
//! key sits in the reply tuple's shard, which may be another one. Keys carry
//! the home shard, slot and generation of their entry: a key left behind in
//! another shard after its entry was freed (between freeing and unlinking,
//! which take two locks one after the other) is recognised as stale by its
//! generation and treated as absent.
//!
//! What a new connection touches, in cache lines: the home bucket of each
//! tuple (read by the lookups, written by the insert) and the two lines of
//! its slot (a third for TCP); each can be prefetched (`prefetch_alloc`,
//! `Conntrack::prefetch`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::TableLayout;
use super::key_table::{same_gen, Key, KeyTable, Lines, KEYS_PER_BUCKET, MAX_SLOTS};
use super::tcp::TcpCt;
use super::Conn;
use std::net::Ipv4Addr;

use crate::flow::{Addr, Dir, Tuple};
use crate::hint::prefetch::{prefetch_line, prefetch_span};

/// A slab slot. `gen` changes each time the slot is freed, so that stale
/// `EntryRef`s and keys can be told apart from the slot's next occupant.
/// Two cache lines (three for IPv6's tuples); a TCP entry's window tracking is in a third
/// ([`TcpLine`], at the same index in `ShardInner::tcp`), which other
/// protocols never touch.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(super) struct Slot<A: Addr = Ipv4Addr> {
    pub gen: u32,
    pub live: bool,
    /// While free: the next free slot (`NO_SLOT`: none).
    next_free: u32,
    pub orig: Tuple<A>,
    pub reply: Tuple<A>,
    pub conn: Conn,
}

/// The TCP window tracking state of a slot's entry. Meaningful only while
/// the slot holds a TCP entry: other protocols leave it as it was, so as
/// not to touch its line.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(super) struct TcpLine(pub Option<TcpCt>);

const _: () = assert!(std::mem::size_of::<Slot>() == 128 && std::mem::size_of::<TcpLine>() == 64);

/// The end of the free list.
const NO_SLOT: u32 = u32::MAX;

/// A reply key to remove from another shard once the home shard's lock is
/// released (never two locks at once outside `confirm`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Unlink<A: Addr = Ipv4Addr> {
    pub shard: usize,
    pub hash: u64,
    pub tuple: Tuple<A>,
    pub key: Key,
}

pub(super) struct ShardInner<A: Addr = Ipv4Addr> {
    idx: u32,
    keys: KeyTable<A>,
    pub slab: Vec<Slot<A>>,
    /// `slab`'s TCP halves, index for index.
    pub tcp: Vec<TcpLine>,
    /// The free slots, last freed first, linked through `Slot::next_free`
    /// (so that the next one is known without touching another line).
    free: u32,
    pub live: usize,
    /// The event ring while someone listens (`conntrack -E`), else `None`.
    pub events: Option<Box<super::event::EventRing<A>>>,
}

impl<A: Addr> ShardInner<A> {
    /// Shard<A> `idx` of a table laid out as `layout` says.
    pub fn new(idx: usize, layout: &TableLayout) -> ShardInner<A> {
        let slots = layout.slots_per_shard;
        ShardInner {
            idx: u32::try_from(idx).unwrap_or(u32::MAX),
            keys: KeyTable::new(
                layout.buckets_per_shard * KEYS_PER_BUCKET,
                layout.keys_per_shard,
            ),
            slab: Vec::with_capacity(slots),
            tcp: Vec::with_capacity(slots),
            free: NO_SLOT,
            live: 0,
            events: None,
        }
    }

    /// Where the key table's lines are (fixed for the shard's life).
    pub fn key_lines(&self) -> Lines {
        self.keys.lines()
    }

    /// `t`'s key; its generation has only the low 16 bits (see `resolve`).
    #[inline]
    pub fn find(&self, hash: u64, t: &Tuple<A>) -> Option<Key> {
        self.keys.find(hash, t)
    }

    /// Whether `n` more keys fit in this shard.
    #[inline]
    pub fn has_key_room(&self, n: usize) -> bool {
        self.keys.has_room(n)
    }

    /// Adds a key for a tuple that has none here; `false` if the shard's
    /// key table is full (check `has_key_room` first).
    pub fn insert_key(&mut self, hash: u64, tuple: Tuple<A>, key: Key) -> bool {
        self.keys.insert(hash, &tuple, key)
    }

    /// Removes `t`'s key if it is `key`; returns whether it did.
    pub fn remove_key(&mut self, hash: u64, t: &Tuple<A>, key: Key) -> bool {
        self.keys.remove(hash, t, key)
    }

    #[inline]
    pub fn is_live(&self, slot: u32, gen: u32) -> bool {
        self.slab
            .get(slot as usize)
            .is_some_and(|s| s.live && same_gen(s.gen, gen))
    }

    /// A key found in a table (this shard being its home), with its entry's
    /// full generation; `None` if that entry is gone.
    #[inline]
    pub fn resolve(&self, key: Key) -> Option<Key> {
        match self.slab.get(key.slot as usize) {
            Some(s) if s.live && same_gen(s.gen, key.gen) => Some(Key { gen: s.gen, ..key }),
            _ => None,
        }
    }

    pub fn idx(&self) -> usize {
        self.idx as usize
    }

    /// The index of the slot the next `alloc` takes.
    #[inline]
    fn next_slot(&self) -> usize {
        if self.free == NO_SLOT {
            self.slab.len()
        } else {
            self.free as usize
        }
    }

    /// The address of the slot the next `alloc` takes (0: not allocated
    /// yet).
    #[inline]
    pub fn next_slot_addr(&self) -> usize {
        let i = self.next_slot();
        if i < self.slab.capacity() {
            self.slab.as_ptr() as usize + i * std::mem::size_of::<Slot<A>>()
        } else {
            0
        }
    }

    /// Starts loading the slot the next `alloc` takes, and its TCP line
    /// if `tcp` (a hint: the free list may change before).
    #[inline]
    pub fn prefetch_alloc(&self, tcp: bool) {
        let at = self.next_slot_addr();
        if at != 0 {
            prefetch_span(at, std::mem::size_of::<Slot<A>>());
        }
        let i = self.next_slot();
        if tcp && i < self.tcp.capacity() {
            prefetch_line(self.tcp.as_ptr() as usize + i * std::mem::size_of::<TcpLine>());
        }
    }

    /// Takes a free slot (or grows the slab past its preallocation, which
    /// only an unlucky hash distribution does) and fills it; `None` if the
    /// shard has no slot a key can name.
    pub fn alloc(
        &mut self,
        orig: Tuple<A>,
        reply: Tuple<A>,
        conn: Conn,
        tcp: Option<TcpCt>,
    ) -> Option<(u32, u32)> {
        if self.free == NO_SLOT && self.slab.len() >= MAX_SLOTS {
            return None;
        }
        self.live += 1;
        if self.free != NO_SLOT {
            let i = self.free;
            let s = &mut self.slab[i as usize];
            self.free = s.next_free;
            s.live = true;
            s.orig = orig;
            s.reply = reply;
            s.conn = conn;
            let gen = s.gen;
            if tcp.is_some() {
                self.tcp[i as usize] = TcpLine(tcp);
            }
            return Some((i, gen));
        }
        let i = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
        self.slab.push(Slot {
            gen: 0,
            live: true,
            next_free: NO_SLOT,
            orig,
            reply,
            conn,
        });
        self.tcp.push(TcpLine(tcp));
        Some((i, 0))
    }

    /// Frees a live slot and removes the keys of its entry held here (`place`:
    /// a tuple's hash and shard); returns
    /// the reply key to remove from another shard, if it lives elsewhere.
    /// The slot keeps the entry's values until it is reused (the caller may
    /// still read them under this lock).
    pub fn free(
        &mut self,
        slot: u32,
        place: impl Fn(&Tuple<A>) -> (u64, usize),
    ) -> Option<Unlink<A>> {
        let s = &mut self.slab[slot as usize];
        debug_assert!(s.live);
        let gen = s.gen;
        s.live = false;
        s.gen = s.gen.wrapping_add(1);
        let (orig, reply) = (s.orig, s.reply);
        s.next_free = self.free;
        self.free = slot;
        self.live -= 1;
        let home = self.idx;
        let okey = Key {
            home,
            slot,
            gen,
            dir: Dir::Original,
        };
        let removed = self.remove_key(place(&orig).0, &orig, okey);
        debug_assert!(removed, "original key of a live entry is missing");
        if reply == orig {
            return None;
        }
        let rkey = Key {
            dir: Dir::Reply,
            ..okey
        };
        let (rhash, rshard) = place(&reply);
        if rshard == home as usize {
            let removed = self.remove_key(rhash, &reply, rkey);
            debug_assert!(removed, "reply key of a live entry is missing");
            None
        } else {
            Some(Unlink {
                shard: rshard,
                hash: rhash,
                tuple: reply,
                key: rkey,
            })
        }
    }

    /// Every key (generations cut to 16 bits), for invariant checks in tests.
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = (Tuple<A>, Key)> + '_ {
        self.keys.iter()
    }
}

/// Per-shard counters, summed by `Conntrack::stats`. Relaxed atomics: each
/// is an independent monotonic statistic that publishes no other memory, and
/// a reader may see a slightly stale sum; keeping them per shard (beside the
/// shard's lock) means workers only share a counter's cache line when they
/// touch the same shard anyway.
#[derive(Default)]
pub(super) struct ShardStats {
    /// Only incremented under the shard's lock ([`ShardStats::inc_locked`]).
    pub found: AtomicU64,
    pub related: AtomicU64,
    /// Only incremented under the shard's lock.
    pub ignored: AtomicU64,
    pub invalid: [AtomicU64; super::InvalidReason::COUNT],
    /// Only incremented under the shard's lock.
    pub insert: AtomicU64,
    pub insert_failed: AtomicU64,
    pub drop: AtomicU64,
    pub early_drop: AtomicU64,
    pub expired: AtomicU64,
    pub deleted: AtomicU64,
}

impl ShardStats {
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// [`ShardStats::inc`] for a counter that is only ever incremented with
    /// its shard's lock held (`found`, `ignored`, `insert`): the lock orders the
    /// writers, so a plain load and store lose nothing, and no locked
    /// instruction is paid per packet.
    #[inline]
    pub fn inc_locked(c: &AtomicU64) {
        Self::add_locked(c, 1);
    }

    /// [`ShardStats::inc_locked`] by `n`.
    #[inline]
    pub fn add_locked(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}
