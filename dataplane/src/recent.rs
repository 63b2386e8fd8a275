//! `-m recent`'s tables (Linux's xt_recent): named lists of recently seen
//! addresses, each with the times it was seen, shared by every rule that
//! names the table and by every worker, and kept across reloads as long as
//! a rule names them.
//!
//! A table holds at most [`IP_LIST_TOT`] addresses (xt_recent's
//! `ip_list_tot`); a new one beyond that replaces the least recently
//! updated. Each address keeps a ring of timestamps (at least 32, more when
//! a rule's `--hitcount` needs more: up to 65,536, 52 MB for a table, as
//! Linux's worst case). All memory is taken when the table is made; a
//! table has one short lock, as xt_recent has one for all tables.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::rule::{RecentCmd, RecentMatch};

/// Addresses per table (`ip_list_tot`).
pub const IP_LIST_TOT: usize = 100;
/// Timestamps per address when no rule asks for more (xt_recent's default
/// `nstamps_max_mask` of 31).
pub const MIN_STAMPS: usize = 32;

#[derive(Clone, Debug)]
struct Entry {
    addr: u32,
    ttl: u8,
    /// Ring of times seen (ns); `stamps[index - 1]` is the latest.
    stamps: Box<[u64]>,
    nstamps: usize,
    index: usize,
    /// When it was last set or updated, in table order (its place in the
    /// LRU list: the smallest is the oldest).
    seq: u64,
    live: bool,
}

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    seq: u64,
}

/// One named table.
#[derive(Debug)]
pub struct RecentTable {
    inner: spin::mutex::SpinMutex<Inner>,
}

impl RecentTable {
    /// A table whose addresses keep `stamps` timestamps (a power of two).
    fn new(stamps: usize) -> RecentTable {
        let e = Entry {
            addr: 0,
            ttl: 0,
            stamps: vec![0; stamps].into_boxed_slice(),
            nstamps: 0,
            index: 0,
            seq: 0,
            live: false,
        };
        RecentTable {
            inner: spin::mutex::SpinMutex::new(Inner {
                entries: vec![e; IP_LIST_TOT],
                seq: 0,
            }),
        }
    }

    /// Timestamps each address keeps.
    pub fn stamps(&self) -> usize {
        self.inner
            .lock()
            .entries
            .first()
            .map_or(0, |e| e.stamps.len())
    }

    /// `recent_mt`: whether the match matches a packet of address `addr`
    /// (already the source or destination, as the rule says) and TTL `ttl`
    /// (as before forwarding) at `now`, with its side effects on the table.
    pub fn check(&self, m: &RecentMatch, addr: Ipv4Addr, ttl: u8, now: u64) -> bool {
        let addr = u32::from(addr) & u32::from(m.mask);
        let mut ret = m.invert;
        let mut g = self.inner.lock();
        let t = &mut *g;
        let want_ttl = if m.rttl { ttl } else { 0 };
        let found = t.entries.iter().position(|e| {
            e.live && e.addr == addr && (want_ttl == 0 || e.ttl == 0 || e.ttl == want_ttl)
        });
        let Some(i) = found else {
            if m.cmd != RecentCmd::Set {
                return ret;
            }
            // recent_entry_init: the oldest goes when the table is full.
            let slot = t.entries.iter().position(|e| !e.live).unwrap_or_else(|| {
                t.entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.seq)
                    .map_or(0, |(k, _)| k)
            });
            t.seq += 1;
            let e = &mut t.entries[slot];
            e.live = true;
            e.addr = addr;
            e.ttl = ttl;
            e.stamps[0] = now;
            e.nstamps = 1;
            e.index = 1;
            e.seq = t.seq;
            return !ret;
        };
        let time = now.saturating_sub(u64::from(m.seconds) * 1_000_000_000);
        match m.cmd {
            RecentCmd::Set => ret = !ret,
            RecentCmd::Remove => {
                t.entries[i].live = false;
                return !ret;
            }
            RecentCmd::Rcheck | RecentCmd::Update => {
                let e = &t.entries[i];
                let mut hits = 0;
                for &s in &e.stamps[..e.nstamps] {
                    if m.seconds != 0 && s < time {
                        continue;
                    }
                    hits += 1;
                    if m.hitcount == 0 || hits >= m.hitcount {
                        ret = !ret;
                        break;
                    }
                }
                if m.reap {
                    // recent_entry_reap: the oldest entry goes when its
                    // latest time is before the window, unless it is the
                    // one about to be updated.
                    let updating = m.cmd == RecentCmd::Update && ret;
                    let oldest = t
                        .entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.live)
                        .min_by_key(|(_, e)| e.seq)
                        .map(|(k, _)| k);
                    if let Some(o) = oldest.filter(|&o| !(o == i && updating)) {
                        let e = &t.entries[o];
                        let latest = e.stamps[(e.index + e.stamps.len() - 1) % e.stamps.len()];
                        if latest < time {
                            t.entries[o].live = false;
                            if o == i {
                                return ret;
                            }
                        }
                    }
                }
            }
        }
        if m.cmd == RecentCmd::Set || (m.cmd == RecentCmd::Update && ret) {
            // recent_entry_update.
            t.seq += 1;
            let seq = t.seq;
            let e = &mut t.entries[i];
            e.index &= e.stamps.len() - 1;
            e.stamps[e.index] = now;
            e.index += 1;
            e.nstamps = e.nstamps.max(e.index);
            e.seq = seq;
            e.ttl = ttl;
        }
        ret
    }

    /// The addresses in the table (control plane).
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let g = self.inner.lock();
        let mut v: Vec<(u64, u32)> = g
            .entries
            .iter()
            .filter(|e| e.live)
            .map(|e| (e.seq, e.addr))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, a)| Ipv4Addr::from(a)).collect()
    }
}

/// The gateway's tables by name. A rule set being compiled takes its
/// tables from here ([`RecentTables::table`]); a table lives while a
/// compiled rule set holds it (the registry keeps weak references), so a
/// reload that still names it keeps its addresses, as Linux's does.
#[derive(Debug, Default)]
pub struct RecentTables {
    by_name: Mutex<HashMap<String, Weak<RecentTable>>>,
}

impl RecentTables {
    /// The table `name`, made with room for `hitcount` timestamps per
    /// address if it does not exist. An existing table with too small a
    /// ring for `hitcount` is replaced by an empty bigger one (xt_recent
    /// flushes and grows it).
    pub fn table(&self, name: &str, hitcount: u32) -> Arc<RecentTable> {
        let stamps = (hitcount as usize).next_power_of_two().max(MIN_STAMPS);
        let mut g = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        g.retain(|_, w| w.strong_count() > 0);
        if let Some(t) = g.get(name).and_then(Weak::upgrade) {
            if t.stamps() >= stamps {
                return t;
            }
        }
        let t = Arc::new(RecentTable::new(stamps));
        g.insert(name.to_owned(), Arc::downgrade(&t));
        t
    }

    /// A table by name, if some rule set holds it (control plane).
    pub fn get(&self, name: &str) -> Option<Arc<RecentTable>> {
        let g = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        g.get(name).and_then(Weak::upgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn m(cmd: RecentCmd, seconds: u32, hitcount: u32) -> RecentMatch {
        RecentMatch {
            name: "SSH".into(),
            cmd,
            seconds,
            reap: false,
            hitcount,
            rttl: false,
            rdest: false,
            mask: Ipv4Addr::BROADCAST,
            invert: false,
        }
    }

    /// The usual brute-force guard: `--set`, then `--update --seconds 60
    /// --hitcount 4` drops the 4th new connection within a minute (the
    /// current packet counts), and every caught attempt keeps it blocked.
    #[test]
    fn set_then_update_catches_the_nth_and_keeps_blocking() {
        let tables = RecentTables::default();
        let t = tables.table("SSH", 4);
        let (set, upd) = (m(RecentCmd::Set, 0, 0), m(RecentCmd::Update, 60, 4));
        let a = Ipv4Addr::new(192, 168, 10, 2);
        let mut caught = Vec::new();
        for k in 0..6u64 {
            assert!(t.check(&set, a, 64, k * S));
            caught.push(t.check(&upd, a, 64, k * S));
        }
        assert_eq!(caught, [false, false, false, true, true, true]);
        // A minute after the last attempt it passes again... once the
        // stamps within 60 s fall below 4.
        let later = 5 * S + 61 * S;
        assert!(t.check(&set, a, 64, later));
        assert!(!t.check(&upd, a, 64, later));
        // Another address is its own.
        assert!(!t.check(
            &m(RecentCmd::Rcheck, 0, 0),
            Ipv4Addr::new(10, 0, 0, 1),
            64,
            later
        ));
    }

    #[test]
    fn remove_rttl_mask_invert_and_the_full_table() {
        let tables = RecentTables::default();
        let t = tables.table("X", 0);
        let set = m(RecentCmd::Set, 0, 0);
        let a = Ipv4Addr::new(192, 168, 10, 2);
        assert!(t.check(&set, a, 64, S));
        let mut rttl = m(RecentCmd::Rcheck, 0, 0);
        rttl.rttl = true;
        assert!(t.check(&rttl, a, 64, S));
        assert!(!t.check(&rttl, a, 63, S));
        let mut masked = m(RecentCmd::Rcheck, 0, 0);
        masked.mask = Ipv4Addr::new(255, 255, 255, 0);
        assert!(!t.check(&masked, Ipv4Addr::new(192, 168, 10, 9), 64, S));
        let mut inv = m(RecentCmd::Rcheck, 0, 0);
        inv.invert = true;
        assert!(!t.check(&inv, a, 64, S));
        assert!(t.check(&m(RecentCmd::Remove, 0, 0), a, 64, S));
        assert!(!t.check(&m(RecentCmd::Remove, 0, 0), a, 64, S));
        // 101 addresses: the first set goes.
        for k in 0..=IP_LIST_TOT as u32 {
            assert!(t.check(&set, Ipv4Addr::from(0x0a00_0000 + k), 64, S + u64::from(k)));
        }
        assert_eq!(t.addresses().len(), IP_LIST_TOT);
        assert!(!t.addresses().contains(&Ipv4Addr::from(0x0a00_0000)));
    }

    #[test]
    fn tables_live_while_a_rule_set_holds_them() {
        let tables = RecentTables::default();
        let t = tables.table("A", 0);
        let a = Ipv4Addr::new(1, 2, 3, 4);
        assert!(t.check(&m(RecentCmd::Set, 0, 0), a, 64, S));
        // A reload naming it again gets the same table.
        let again = tables.table("A", 10);
        assert!(Arc::ptr_eq(&t, &again));
        // One asking for more stamps than it keeps gets a bigger, empty one.
        let bigger = tables.table("A", 100);
        assert_eq!(bigger.stamps(), 128);
        assert!(bigger.addresses().is_empty());
        drop((t, again, bigger));
        assert!(tables.get("A").is_none());
    }

    #[test]
    fn reap_takes_the_oldest_when_it_is_out_of_the_window() {
        let tables = RecentTables::default();
        let t = tables.table("R", 0);
        let set = m(RecentCmd::Set, 0, 0);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert!(t.check(&set, a, 64, S));
        assert!(t.check(&set, b, 64, 50 * S));
        let mut reap = m(RecentCmd::Rcheck, 10, 0);
        reap.reap = true;
        assert!(t.check(&reap, b, 64, 55 * S));
        assert_eq!(t.addresses(), [b]);
    }
}
