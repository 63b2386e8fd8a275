//! One shard of the table: a slab of entries (with a free list) and a map
//! from tuples to where their entry lives. Everything here runs under the
//! shard's lock.
//!
//! An entry lives in the slab of the shard of its *original* tuple (its
//! home). Its original tuple's key sits in the same shard; its reply tuple's
//! key sits in the reply tuple's shard, which may be another one. Keys carry
//! the home shard, slot and generation of their entry: a key left behind in
//! another shard after its entry was freed (between freeing and unlinking,
//! which take two locks one after the other) is recognised as stale by its
//! generation and treated as absent.

use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;

use super::Conn;
use crate::flow::{Dir, Tuple};

/// Where a tuple's entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pub home: u32,
    pub slot: u32,
    pub gen: u32,
    pub dir: Dir,
}

#[derive(Clone, Copy, Debug)]
struct KeyRec {
    tuple: Tuple,
    key: Key,
}

/// A slab slot. `gen` changes each time the slot is freed, so that stale
/// `EntryRef`s and keys can be told apart from the slot's next occupant.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub gen: u32,
    pub live: bool,
    pub orig: Tuple,
    pub reply: Tuple,
    pub conn: Conn,
}

/// A reply key to remove from another shard once the home shard's lock is
/// released (never two locks at once outside `confirm`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Unlink {
    pub shard: usize,
    pub hash: u64,
    pub tuple: Tuple,
    pub key: Key,
}

pub(super) struct ShardInner {
    idx: u32,
    keys: HashTable<KeyRec>,
    pub slab: Vec<Slot>,
    free: Vec<u32>,
    pub live: usize,
    /// The event ring while someone listens (`conntrack -E`), else `None`.
    pub events: Option<Box<super::event::EventRing>>,
}

impl ShardInner {
    pub fn with_capacity(idx: usize, entries: usize) -> ShardInner {
        ShardInner {
            idx: u32::try_from(idx).unwrap_or(u32::MAX),
            // Two keys per entry on average (original here, reply wherever it
            // hashes), plus slack so the map does not grow at the nominal
            // load.
            keys: HashTable::with_capacity(entries * 2 + entries / 2),
            slab: Vec::with_capacity(entries),
            free: Vec::with_capacity(entries),
            live: 0,
            events: None,
        }
    }

    #[inline]
    pub fn find(&self, hash: u64, t: &Tuple) -> Option<Key> {
        self.keys.find(hash, |r| r.tuple == *t).map(|r| r.key)
    }

    pub fn insert_key(&mut self, hash: u64, tuple: Tuple, key: Key) {
        self.keys
            .insert_unique(hash, KeyRec { tuple, key }, |r| r.tuple.hash64());
    }

    /// Removes `t`'s key if it is exactly `key`; returns whether it did.
    pub fn remove_key(&mut self, hash: u64, t: &Tuple, key: Key) -> bool {
        match self
            .keys
            .find_entry(hash, |r| r.tuple == *t && r.key == key)
        {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    #[inline]
    pub fn is_live(&self, slot: u32, gen: u32) -> bool {
        self.slab
            .get(slot as usize)
            .is_some_and(|s| s.live && s.gen == gen)
    }

    /// Takes a free slot (or grows the slab past its preallocation, which
    /// only an unlucky hash distribution does) and fills it.
    pub fn alloc(&mut self, orig: Tuple, reply: Tuple, conn: Conn) -> (u32, u32) {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            let s = &mut self.slab[i as usize];
            s.live = true;
            s.orig = orig;
            s.reply = reply;
            s.conn = conn;
            return (i, s.gen);
        }
        let i = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
        self.slab.push(Slot {
            gen: 0,
            live: true,
            orig,
            reply,
            conn,
        });
        (i, 0)
    }

    /// Frees a live slot and removes the keys of its entry held here; returns
    /// the reply key to remove from another shard, if it lives elsewhere.
    /// The slot keeps the entry's values until it is reused (the caller may
    /// still read them under this lock).
    pub fn free(&mut self, slot: u32, shard_of: impl Fn(u64) -> usize) -> Option<Unlink> {
        let s = &mut self.slab[slot as usize];
        debug_assert!(s.live);
        let gen = s.gen;
        s.live = false;
        s.gen = s.gen.wrapping_add(1);
        let (orig, reply) = (s.orig, s.reply);
        self.free.push(slot);
        self.live -= 1;
        let home = self.idx;
        let okey = Key {
            home,
            slot,
            gen,
            dir: Dir::Original,
        };
        let removed = self.remove_key(orig.hash64(), &orig, okey);
        debug_assert!(removed, "original key of a live entry is missing");
        if reply == orig {
            return None;
        }
        let rkey = Key {
            dir: Dir::Reply,
            ..okey
        };
        let rhash = reply.hash64();
        let rshard = shard_of(rhash);
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

    /// Every key, for invariant checks in tests.
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = (Tuple, Key)> + '_ {
        self.keys.iter().map(|r| (r.tuple, r.key))
    }
}

/// Per-shard counters, summed by `Conntrack::stats`. Relaxed atomics: each
/// is an independent monotonic statistic that publishes no other memory, and
/// a reader may see a slightly stale sum; keeping them per shard (beside the
/// shard's lock) means workers only share a counter's cache line when they
/// touch the same shard anyway.
#[derive(Default)]
pub(super) struct ShardStats {
    pub found: AtomicU64,
    pub new: AtomicU64,
    pub related: AtomicU64,
    pub ignored: AtomicU64,
    pub invalid: [AtomicU64; super::InvalidReason::COUNT],
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
}
