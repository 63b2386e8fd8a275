//! `-m connlimit`'s counts, as Linux's xt_connlimit over nf_conncount: each
//! rule keeps, per key (the packet's source or destination address under
//! the rule's mask), the original tuples of the connections it has seen,
//! and a packet's count is the number of those still open. A tuple is
//! dropped when conntrack no longer has its connection, or has it closed
//! (TCP TIME_WAIT or CLOSE, `already_closed`); a tuple conntrack does not
//! know is dropped when the worker that added it looks again, or two
//! jiffies after it was added (before, another worker's connection may be
//! about to be confirmed, `find_or_evict`): so a refused attempt stops
//! counting.
//!
//! Memory is bounded: a table holds at most as many tuples as the
//! connection table has entries (plus slack per shard), reserved when the
//! rule set is compiled. Keys are spread over [`SHARDS`] shards, each with
//! its own short spin lock; no lock is shared by all workers. Like Linux's
//! (one `nf_conncount_data` per rule), a table is the rule's own and starts
//! empty when the rules are loaded.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::bucket_slab::BucketSlab;
use crate::conntrack::{Conntrack, Nanos, TcpState};
use crate::flow::{Tuple, IPPROTO_TCP};

/// Shards of a table (`CONNCOUNT_LOCK_SLOTS` is 256 in Linux; a few per
/// core are enough here).
pub const SHARDS: usize = 16;
/// How long a tuple conntrack does not know yet still counts: two jiffies
/// at this kernel's HZ of 250 (`find_or_evict`).
pub const UNCONFIRMED_GRACE: Nanos = 8_000_000;
/// At most this many stale tuples are dropped per packet before the rest
/// is counted unchecked (`CONNCOUNT_GC_MAX_NODES`).
pub const GC_MAX_NODES: u32 = 8;

#[derive(Clone, Copy, Debug)]
struct Conn {
    key: u32,
    tuple: Tuple,
    added: Nanos,
    /// The thread (worker) that added it: Linux's `conn->cpu`.
    thread: u32,
}

/// A number for the calling thread, as Linux's `raw_smp_processor_id` for
/// `find_or_evict`: a worker handles one packet at a time, so a tuple it
/// added that conntrack does not know is one it refused, not one about to
/// be confirmed.
fn thread_tag() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Relaxed: only uniqueness matters.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    thread_local! {
        static TAG: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TAG.with(|t| *t)
}

/// One rule's counts.
pub struct ConnlimitTable {
    shards: Box<[spin::mutex::SpinMutex<BucketSlab<Conn>>]>,
    hasher: std::collections::hash_map::RandomState,
    conntrack: Option<Arc<Conntrack>>,
}

impl std::fmt::Debug for ConnlimitTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnlimitTable")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl ConnlimitTable {
    /// A table for up to `conns` tuples, checking them against `conntrack`
    /// (without one, as when a rule set is only checked, a tuple counts
    /// until two jiffies have passed).
    pub fn new(conns: usize, conntrack: Option<Arc<Conntrack>>) -> ConnlimitTable {
        // Twice the even share per shard: keys are not spread evenly.
        let per = (conns / SHARDS * 2).max(256);
        ConnlimitTable {
            shards: (0..SHARDS)
                .map(|_| spin::mutex::SpinMutex::new(BucketSlab::new(per / 4, per)))
                .collect(),
            hasher: Default::default(),
            conntrack,
        }
    }

    fn hash(&self, key: u32) -> u64 {
        self.hasher.hash_one(key)
    }

    /// `nf_conncount_count`: adds `tuple` (the packet's connection) under
    /// `key` unless it is there, and answers how many connections the key
    /// has, this one included; `None` when the table is full (Linux's
    /// allocation failure, which drops the packet).
    pub fn count(&self, key: Ipv4Addr, tuple: &Tuple, now: Nanos) -> Option<u32> {
        let key = u32::from(key);
        let h = self.hash(key);
        let mut s = self.shards[(h >> 32) as usize % SHARDS].lock();
        let b = s.bucket(h);
        let mut count = 0u32;
        let mut collected = 0u32;
        let mut present = false;
        let me = thread_tag();
        s.walk(b, |c| {
            if c.key != key {
                return (true, true);
            }
            if present || collected > GC_MAX_NODES {
                count += 1;
                return (true, true);
            }
            let open = match &self.conntrack {
                Some(ct) => ct.lookup(&c.tuple, now),
                None => None,
            };
            match open {
                None if c.thread == me || now.saturating_sub(c.added) >= UNCONFIRMED_GRACE => {
                    collected += 1;
                    (false, true)
                }
                None => {
                    present |= c.tuple == *tuple;
                    count += 1;
                    (true, true)
                }
                Some(_) if c.tuple == *tuple => {
                    present = true;
                    count += 1;
                    (true, true)
                }
                // `already_closed`.
                Some(snap)
                    if snap.orig.proto == IPPROTO_TCP
                        && matches!(snap.tcp_state, TcpState::TimeWait | TcpState::Close) =>
                {
                    collected += 1;
                    (false, true)
                }
                Some(_) => {
                    count += 1;
                    (true, true)
                }
            }
        });
        if present {
            return Some(count);
        }
        let conn = Conn {
            key,
            tuple: *tuple,
            added: now,
            thread: me,
        };
        s.push(b, conn).ok()?;
        Some(count + 1)
    }

    /// How many tuples the table holds (tests, the control plane).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{ConntrackConfig, PacketMeta, TcpSeg, Track};

    const MS: Nanos = 1_000_000;

    fn tuple(sport: u16) -> Tuple {
        Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 1),
            sport,
            dport: 80,
            proto: IPPROTO_TCP,
        }
    }

    fn seg(t: Tuple, flags: u8) -> PacketMeta {
        PacketMeta {
            tuple: t,
            tcp: Some(TcpSeg {
                flags,
                seq: 1000,
                ack: 0,
                window: 64240,
                payload_len: 0,
                wscale: None,
                sack_perm: false,
            }),
            len: 40,
            icmp: None,
        }
    }

    /// A SYN confirmed into the table.
    fn open(ct: &Conntrack, t: Tuple, now: Nanos) {
        match ct.track(now, &seg(t, 0x02)) {
            Track::New(p) => assert!(ct.confirm(now, &p).is_ok()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_open_connections_and_forgets_refused_attempts() {
        let ct = Arc::new(Conntrack::new(ConntrackConfig::default()));
        let t = ConnlimitTable::new(1024, Some(Arc::clone(&ct)));
        let key = Ipv4Addr::new(192, 168, 10, 2);
        // Three connections, each counted with itself, then confirmed.
        for (i, sport) in [1000, 1001, 1002].into_iter().enumerate() {
            let now = i as u64 * 100 * MS;
            assert_eq!(t.count(key, &tuple(sport), now), Some(i as u32 + 1));
            open(&ct, tuple(sport), now);
        }
        // A retransmitted SYN of one of them is not counted twice.
        assert_eq!(t.count(key, &tuple(1001), 400 * MS), Some(3));
        // A fourth, refused (never confirmed): counted while it is checked...
        assert_eq!(t.count(key, &tuple(1003), 500 * MS), Some(4));
        // ...and gone two jiffies later.
        assert_eq!(t.count(key, &tuple(1004), 600 * MS), Some(4));
        assert_eq!(t.len(), 4);
        // Another key is its own.
        assert_eq!(t.count(Ipv4Addr::new(10, 0, 0, 1), &tuple(1), 0), Some(1));
        // Another worker's unconfirmed connection counts for two jiffies.
        std::thread::scope(|sc| {
            sc.spawn(|| assert_eq!(t.count(key, &tuple(2000), 700 * MS), Some(4)));
        });
        assert_eq!(t.count(key, &tuple(2001), 701 * MS), Some(5));
        assert_eq!(t.count(key, &tuple(2002), 720 * MS), Some(4));
    }

    #[test]
    fn a_connection_gone_from_conntrack_stops_counting() {
        let ct = Arc::new(Conntrack::new(ConntrackConfig::default()));
        let t = ConnlimitTable::new(1024, Some(Arc::clone(&ct)));
        let key = Ipv4Addr::new(192, 168, 10, 2);
        assert_eq!(t.count(key, &tuple(1000), 0), Some(1));
        open(&ct, tuple(1000), 0);
        assert_eq!(t.count(key, &tuple(1001), MS), Some(2));
        open(&ct, tuple(1001), MS);
        // The first one deleted (closed and collected, or `conntrack -D`).
        assert_eq!(ct.remove_if(|s| s.orig.sport == 1000).len(), 1);
        assert_eq!(t.count(key, &tuple(1002), 20 * MS), Some(2));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn memory_is_bounded() {
        let ct = Arc::new(Conntrack::new(ConntrackConfig::default()));
        let t = ConnlimitTable::new(0, Some(Arc::clone(&ct)));
        let key = Ipv4Addr::new(1, 1, 1, 1);
        let mut last = None;
        for sport in 0..300u16 {
            last = t.count(key, &tuple(sport), 0);
            open(&ct, tuple(sport), 0);
        }
        // All in one shard: 256 tuples, then "full".
        assert_eq!(last, None);
        assert_eq!(t.len(), 256);
    }
}
