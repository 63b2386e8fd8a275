//! The lookup structure of the hash and bitmap set types: one hash table
//! per prefix length present, probed from the most specific prefix to the
//! least, as the kernel's `mtype_test_cidrs` (ip_set_hash_gen.h) does. A
//! packet costs one probe per prefix length present (at most 33), whatever
//! the number of entries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;

/// An element's key: address (already masked to its prefix), protocol and
/// port, packed as `addr << 32 | port << 8 | proto`. Types without a port
/// leave it and the protocol 0; bitmap:port keeps only the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u64);

impl Key {
    pub fn new(addr: u32, proto: u8, port: u16) -> Key {
        Key(u64::from(addr) << 32 | u64::from(port) << 8 | u64::from(proto))
    }
    pub fn addr(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn port(self) -> u16 {
        (self.0 >> 8) as u16
    }
    pub fn proto(self) -> u8 {
        self.0 as u8
    }
}

/// An element's packet and byte counters (`counters` sets). Shared by the
/// copies of a set a change makes, so that counts go on across changes.
#[derive(Debug, Default)]
pub struct ElemCounter {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl ElemCounter {
    pub fn get(&self) -> (u64, u64) {
        // Relaxed: statistics; no other memory is published through them.
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// What an element carries besides its key.
#[derive(Clone, Debug)]
pub struct ElemValue {
    /// `nomatch` (hash:net types): the element excludes its network.
    pub nomatch: bool,
    /// When it expires (gateway nanoseconds), `u64::MAX` for never.
    pub expires: u64,
    pub counter: Option<Arc<ElemCounter>>,
}

impl ElemValue {
    #[inline]
    pub fn live(&self, now: u64) -> bool {
        now < self.expires
    }
}

/// How many shards each prefix length's table is cut into: a change
/// copies only the shard it touches (the tables are shared, copy on write,
/// between the published set and the one being changed), 1/64 of a large
/// set.
const SHARDS: usize = 64;

type Shard = Arc<HashMap<Key, ElemValue>>;

/// The shard of a key: the top bits of a multiplicative hash.
#[inline]
fn shard_of(key: Key) -> usize {
    (key.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
}

/// The elements of one set, by prefix length.
#[derive(Clone, Debug, Default)]
pub struct PrefixTables {
    /// By prefix length 0..=32: [`SHARDS`] shards, or none while the
    /// prefix length has no element.
    tables: Vec<Vec<Shard>>,
    /// The prefix lengths that have elements, most specific first.
    present: Vec<u8>,
    len: usize,
}

/// The mask of a prefix length (0..=32).
#[inline]
pub fn mask(cidr: u8) -> u32 {
    if cidr == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(cidr.min(32)))
    }
}

impl PrefixTables {
    pub fn new() -> PrefixTables {
        PrefixTables {
            tables: (0..=32).map(|_| Vec::new()).collect(),
            present: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn shard(&self, cidr: u8, key: Key) -> Option<&HashMap<Key, ElemValue>> {
        self.tables
            .get(usize::from(cidr))?
            .get(shard_of(key))
            .map(|s| &**s)
    }

    pub fn get(&self, cidr: u8, key: Key) -> Option<&ElemValue> {
        self.shard(cidr, key)?.get(&key)
    }

    /// The element, to change: its shard is copied first if shared.
    pub fn get_mut(&mut self, cidr: u8, key: Key) -> Option<&mut ElemValue> {
        self.shard(cidr, key)?.get(&key)?;
        let s = self
            .tables
            .get_mut(usize::from(cidr))?
            .get_mut(shard_of(key))?;
        Arc::make_mut(s).get_mut(&key)
    }

    /// Inserts or replaces; whether the element is new.
    pub fn insert(&mut self, cidr: u8, key: Key, value: ElemValue) -> bool {
        let Some(t) = self.tables.get_mut(usize::from(cidr)) else {
            return false;
        };
        if t.is_empty() {
            t.extend((0..SHARDS).map(|_| Arc::new(HashMap::new())));
        }
        let Some(s) = t.get_mut(shard_of(key)) else {
            return false;
        };
        let new = Arc::make_mut(s).insert(key, value).is_none();
        if new {
            self.len += 1;
            if !self.present.contains(&cidr) {
                self.present.push(cidr);
                self.present.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        new
    }

    pub fn remove(&mut self, cidr: u8, key: Key) -> Option<ElemValue> {
        self.shard(cidr, key)?.get(&key)?;
        let t = self.tables.get_mut(usize::from(cidr))?;
        let v = Arc::make_mut(t.get_mut(shard_of(key))?).remove(&key)?;
        self.len -= 1;
        if t.iter().all(|s| s.is_empty()) {
            // Give the memory of a prefix length emptied back.
            t.clear();
            self.present.retain(|&c| c != cidr);
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        *self = PrefixTables::new();
    }

    /// Drops the elements expired at `now`; how many. Only the shards
    /// that hold some are copied.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut gone = 0;
        for t in &mut self.tables {
            for s in t.iter_mut() {
                if s.values().any(|v| !v.live(now)) {
                    let m = Arc::make_mut(s);
                    let before = m.len();
                    m.retain(|_, v| v.live(now));
                    gone += before - m.len();
                }
            }
            if t.iter().all(|s| s.is_empty()) {
                t.clear();
            }
        }
        self.len -= gone;
        let tables = &self.tables;
        self.present
            .retain(|&c| tables.get(usize::from(c)).is_some_and(|t| !t.is_empty()));
        gone
    }

    /// The most specific live element covering `addr` with `proto` and
    /// `port` for which `accept` holds (the kernel goes on to shorter
    /// prefixes when an element's counters do not match:
    /// `mtype_test_cidrs`).
    #[inline]
    pub fn lookup(
        &self,
        addr: u32,
        proto: u8,
        port: u16,
        now: u64,
        mut accept: impl FnMut(&ElemValue) -> bool,
    ) -> Option<&ElemValue> {
        for &cidr in &self.present {
            let key = Key::new(addr & mask(cidr), proto, port);
            if let Some(v) = self.shard(cidr, key).and_then(|t| t.get(&key)) {
                if v.live(now) && accept(v) {
                    return Some(v);
                }
            }
        }
        None
    }

    /// Every element with its prefix length, in key order (the order
    /// `ipset save` prints them in here; the kernel's is its hash order).
    pub fn elements(&self) -> Vec<(u8, Key, &ElemValue)> {
        let mut v: Vec<(u8, Key, &ElemValue)> = self
            .tables
            .iter()
            .enumerate()
            .flat_map(|(c, t)| {
                t.iter()
                    .flat_map(|s| s.iter())
                    .map(move |(k, v)| (c as u8, *k, v))
            })
            .collect();
        v.sort_by_key(|(c, k, _)| (k.addr(), *c, k.proto(), k.port()));
        v
    }
}
