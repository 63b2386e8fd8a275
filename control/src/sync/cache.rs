//! The external cache: the entries a peer sent (conntrackd's "cache
//! external", `external_cache.c`), kept apart from the live table until a
//! commit puts them in it (`conntrackd -c`). Keyed by the original tuple;
//! NEW and UPDATE put an entry in (the latest wins), DESTROY takes it out.
//! Bounded (`HashLimit`): when full, a new entry is refused and counted,
//! as conntrackd's cache refuses it (`cache_add`, ENOSPC).

use std::collections::HashMap;
use std::net::IpAddr;

use xdpgw_dataplane::conntrack::Nanos;

use super::wire::{CtKind, SyncedCt};

/// What identifies an entry: addresses, protocol, ports (ICMP: the id).
pub type CacheKey = (IpAddr, IpAddr, u8, u16, u16);

fn key(ct: &SyncedCt) -> CacheKey {
    let (sp, dp) = match (ct.ports, ct.icmp) {
        (Some(p), _) => p,
        (None, Some((_, _, id))) => (id, id),
        (None, None) => (0, 0),
    };
    (ct.src, ct.dst, ct.proto, sp, dp)
}

/// An entry and when (workers' clock) it last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cached {
    pub ct: SyncedCt,
    pub at: Nanos,
}

/// What the cache has done (`conntrackd -s`'s "cache external").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub created: u64,
    pub updated: u64,
    pub destroyed: u64,
    /// New entries refused: the cache was full.
    pub full: u64,
    /// DESTROY of an entry not in the cache.
    pub destroy_unknown: u64,
}

/// The external cache.
#[derive(Debug)]
pub struct ExternalCache {
    map: HashMap<CacheKey, Cached>,
    max: usize,
    pub counters: CacheCounters,
}

impl ExternalCache {
    /// A cache of at most `max` entries.
    pub fn new(max: usize) -> ExternalCache {
        ExternalCache {
            map: HashMap::new(),
            max,
            counters: CacheCounters::default(),
        }
    }

    /// Applies a received message at `now`.
    pub fn apply(&mut self, kind: CtKind, ct: SyncedCt, now: Nanos) {
        let k = key(&ct);
        match kind {
            CtKind::New | CtKind::Update => {
                if let Some(c) = self.map.get_mut(&k) {
                    *c = Cached { ct, at: now };
                    self.counters.updated += 1;
                } else if self.map.len() < self.max {
                    self.map.insert(k, Cached { ct, at: now });
                    self.counters.created += 1;
                } else {
                    self.counters.full += 1;
                }
            }
            CtKind::Destroy => {
                if self.map.remove(&k).is_some() {
                    self.counters.destroyed += 1;
                } else {
                    self.counters.destroy_unknown += 1;
                }
            }
        }
    }

    /// Forgets every entry (`conntrackd -f`).
    pub fn flush(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        n
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entries, in a stable order (by key).
    pub fn entries(&self) -> Vec<Cached> {
        let mut v: Vec<(&CacheKey, &Cached)> = self.map.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, c)| *c).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ct(port: u16) -> SyncedCt {
        SyncedCt {
            ports: Some((port, 53)),
            ..SyncedCt::new(
                IpAddr::V4(Ipv4Addr::new(192, 168, 10, 2)),
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254)),
                17,
            )
        }
    }

    #[test]
    fn new_update_destroy_and_a_bound() {
        let mut c = ExternalCache::new(2);
        c.apply(CtKind::New, ct(1), 1);
        let mut upd = ct(1);
        upd.timeout = Some(180);
        c.apply(CtKind::Update, upd, 2);
        c.apply(CtKind::Update, ct(2), 3);
        c.apply(CtKind::New, ct(3), 4);
        assert_eq!(c.len(), 2);
        assert_eq!(c.counters.full, 1);
        assert_eq!(c.entries()[0], Cached { ct: upd, at: 2 });
        c.apply(CtKind::Destroy, ct(2), 5);
        c.apply(CtKind::Destroy, ct(9), 5);
        assert_eq!(
            (
                c.counters.created,
                c.counters.updated,
                c.counters.destroyed,
                c.counters.destroy_unknown
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(c.flush(), 1);
        assert!(c.is_empty());
    }
}
