//! Credit rounds ([`crate::conntrack::Conntrack::credit`]): packets of
//! steady UDP streams after the first of each in the round are counted
//! here, per flow, and given to conntrack together when the round ends: at
//! most [`CREDIT_ROUND`] after its first credit, when the list fills up,
//! when an entry was deleted, or when the worker goes idle.

use std::marker::PhantomData;
use std::net::Ipv4Addr;

use crate::conntrack::{Conntrack, EntryRef};
use crate::flow::{Addr, Dir};

use super::cache::Cached;

/// Flows whose packets one round may credit together (more take the
/// per-packet way until the round ends; a round ends at the next batch
/// once three quarters are taken).
const CREDITS: usize = 2048;
/// The longest a credit round lasts (ns): how late a steady UDP stream's
/// counters and timeout may reach conntrack while traffic flows, and how
/// long its entry goes unchecked (an entry deleted by the operator ends
/// the round at the next batch instead).
pub const CREDIT_ROUND: u64 = 50_000_000;
/// `Cached::credit_idx` of a flow found steady in this round whose credit
/// is not made yet (only its second packet in the round makes one).
pub(crate) const NO_CREDIT: u16 = u16::MAX;

/// Packets of one UDP stream in one round, not yet told to conntrack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Credit {
    entry: EntryRef,
    dir: Dir,
    packets: u64,
    bytes: u64,
    last: u64,
}

/// A worker's credit round for one family's table.
pub(crate) struct Credits<A: Addr = Ipv4Addr> {
    list: Vec<Credit>,
    /// Numbers rounds (0: never).
    pub(crate) round: u32,
    /// When the round's first credit was made.
    since: u64,
    /// Conntrack's deletion count when the round began.
    removals_seen: u64,
    family: PhantomData<A>,
}

impl<A: Addr> Credits<A> {
    /// A round of a table whose deletion count is `removals`.
    pub(crate) fn new(removals: u64) -> Credits<A> {
        Credits {
            list: Vec::with_capacity(CREDITS),
            round: 1,
            since: 0,
            removals_seen: removals,
            family: PhantomData,
        }
    }

    /// At a batch's beginning: the round ends if an entry was deleted since
    /// it began, or if it is three quarters full.
    #[inline]
    pub(crate) fn begin_batch(&mut self, ct: &Conntrack<A>) {
        let removals = ct.removals();
        if removals != self.removals_seen || self.list.len() >= CREDITS / 4 * 3 {
            self.removals_seen = removals;
            self.flush(ct);
        }
    }

    /// Between batches: the round ends if it is [`CREDIT_ROUND`] old.
    pub(crate) fn end_if_old(&mut self, now: u64, ct: &Conntrack<A>) {
        if !self.list.is_empty() && now.saturating_sub(self.since) >= CREDIT_ROUND {
            self.flush(ct);
        }
    }

    /// Ends the round: gives conntrack the packets credited since it began.
    /// The next packet of each flow is tracked against its entry again.
    pub(crate) fn flush(&mut self, ct: &Conntrack<A>) {
        self.round = self.round.wrapping_add(1).max(1);
        for c in self.list.drain(..) {
            if c.packets > 0 {
                ct.credit(c.entry, c.dir, c.packets, c.bytes, c.last);
            }
        }
    }

    /// The credit at `idx`, if it is in this round's list.
    #[inline]
    pub(crate) fn get(&self, idx: u16) -> Option<&Credit> {
        self.list.get(usize::from(idx))
    }

    /// Counts a packet of `len` bytes at `now` into the round's credit of
    /// the cached flow `c` (making it on the flow's second packet in the
    /// round, and noting when the round's first credit was made); false if
    /// the round has no room for another credit.
    #[inline]
    pub(crate) fn add(&mut self, c: &mut Cached<A>, now: u64, len: u16) -> bool {
        if c.credit_idx == NO_CREDIT {
            if self.list.len() >= CREDITS {
                return false;
            }
            if self.list.is_empty() {
                self.since = now;
            }
            c.credit_idx = self.list.len() as u16;
            self.list.push(Credit {
                entry: c.entry,
                dir: c.dir,
                packets: 0,
                bytes: 0,
                last: now,
            });
        }
        let Some(cr) = self.list.get_mut(usize::from(c.credit_idx)) else {
            return false;
        };
        cr.packets += 1;
        cr.bytes += u64::from(len);
        cr.last = now;
        true
    }
}
