//! The prefetch pass: a batch's frames are shown to it before any is
//! processed, so that the cache misses of their lookups overlap. Only
//! hints: it reads the frames' headers and changes nothing but its queue.
//!
//! A flow the fast path takes needs no conntrack lookup, only its cached
//! decision and its entry, which that decision names: the pass starts
//! loading the decision and queues the frame; the first `process` after
//! the pass reads the (by then loaded) decisions and starts loading the
//! entries. Any other frame may open a connection: it is queued too, and
//! its lookups start loading a few frames before its own `process`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fastpath::cache::Place;
use crate::fastpath::FastPath;
use crate::flow::Tuple;
use crate::gateway::Gateway;

/// Frames the prefetch pass queues for its second step, cached flows and
/// others each: a port's rx batch (more are prefetched at once).
const PEEKED: usize = 64;
/// How many frames ahead of its `process` a frame that is no cached flow
/// starts loading its lookups (2 to 8 measured alike).
const FRESH_AHEAD: usize = 4;
const NO_TUPLE: Tuple = Tuple {
    src: Ipv4Addr::UNSPECIFIED,
    dst: Ipv4Addr::UNSPECIFIED,
    sport: 0,
    dport: 0,
    proto: 0,
};
const NO_TUPLE6: Tuple<Ipv6Addr> = Tuple {
    src: Ipv6Addr::UNSPECIFIED,
    dst: Ipv6Addr::UNSPECIFIED,
    sport: 0,
    dport: 0,
    proto: 0,
};

/// A batch's prefetch queues: the cached flows the pass saw, and the other
/// frames' tuples with the next one whose lookups are still to be started.
pub(crate) struct PrefetchQueue {
    peeked: [Place; PEEKED],
    npeeked: usize,
    fresh: [Tuple; PEEKED],
    nfresh: usize,
    fresh_next: usize,
    /// IPv6's other frames, paced alike.
    fresh6: [Tuple<Ipv6Addr>; PEEKED],
    nfresh6: usize,
    fresh6_next: usize,
    /// `npeeked > 0 || fresh_next < nfresh || fresh6_next < nfresh6`,
    /// kept as one flag: the test every `process` makes, a fast-path
    /// packet's included.
    queued: bool,
}

impl PrefetchQueue {
    pub(crate) fn new() -> PrefetchQueue {
        PrefetchQueue {
            peeked: [Place::default(); PEEKED],
            npeeked: 0,
            fresh: [NO_TUPLE; PEEKED],
            nfresh: 0,
            fresh_next: 0,
            fresh6: [NO_TUPLE6; PEEKED],
            nfresh6: 0,
            fresh6_next: 0,
            queued: false,
        }
    }

    /// Forgets what was queued (the batch ended).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.npeeked = 0;
        self.nfresh = 0;
        self.fresh_next = 0;
        self.nfresh6 = 0;
        self.fresh6_next = 0;
        self.queued = false;
    }

    /// Whether the second step has something to do.
    #[inline(always)]
    pub(crate) fn queued(&self) -> bool {
        self.queued
    }

    /// The pass's first step for a frame that arrived on `in_iface`: a
    /// cached flow's decision starts loading, and the frame is queued.
    #[inline]
    pub(crate) fn add(&mut self, fast: &FastPath, gw: &Gateway, in_iface: u8, frame: &[u8]) {
        let Some(t) = crate::conntrack::frame_tuple(frame) else {
            return self.add6(fast, gw, in_iface, frame);
        };
        if fast.on {
            if let Some(p) = fast.probe(in_iface, &t) {
                match self.peeked.get_mut(self.npeeked) {
                    Some(q) => {
                        *q = p;
                        self.npeeked += 1;
                        self.queued = true;
                    }
                    None => fast.prefetch(p, &gw.conntrack),
                }
                return;
            }
        }
        if let Some(q) = self.fresh.get_mut(self.nfresh) {
            *q = t;
            self.nfresh += 1;
            self.queued = true;
        } else {
            prefetch_new_conn(gw, &t);
        }
    }

    /// The pass's second step, run by each `process` while the pass left
    /// something queued: the first call starts loading the conntrack
    /// entries of the cached flows and the lookups of the first
    /// [`FRESH_AHEAD`] other frames, each call after that the next other
    /// frame's, so that they start a few frames before their own `process`
    /// (issuing all of a batch's at once measured 5-8 % fewer new
    /// connections per second: a new connection issues five, and a batch's
    /// 300 outrun the misses a core keeps in flight).
    #[inline(never)]
    pub(crate) fn issue(&mut self, fast: &FastPath, gw: &Gateway) {
        for i in 0..std::mem::take(&mut self.npeeked) {
            fast.prefetch(self.peeked[i], &gw.conntrack);
        }
        pace(&self.fresh[..self.nfresh], &mut self.fresh_next, |t| {
            prefetch_new_conn(gw, t)
        });
        if self.nfresh6 > 0 {
            pace(&self.fresh6[..self.nfresh6], &mut self.fresh6_next, |t| {
                prefetch_new_conn6(gw, t)
            });
        }
        self.queued = self.fresh_next < self.nfresh || self.fresh6_next < self.nfresh6;
    }

    /// [`PrefetchQueue::add`] for an IPv6 frame: a cached flow's decision
    /// starts loading at once (its conntrack entry is loaded by its own
    /// `process`); another frame is queued. Out of line: IPv4's pass stays
    /// as it was.
    #[inline(never)]
    fn add6(&mut self, fast: &FastPath, gw: &Gateway, in_iface: u8, frame: &[u8]) {
        let Some(t) = crate::conntrack::frame_tuple6(frame) else {
            return;
        };
        if gw.conntrack6.is_none() || (fast.on && fast.probe6(in_iface, &t)) {
            return;
        }
        if let Some(q) = self.fresh6.get_mut(self.nfresh6) {
            *q = t;
            self.nfresh6 += 1;
            self.queued = true;
        } else {
            prefetch_new_conn6(gw, &t);
        }
    }
}

/// Starts the lookups of the queue's next frames: [`FRESH_AHEAD`] of them
/// at its first call in a batch, one at each call after that.
#[inline(always)]
fn pace<T>(queue: &[T], next: &mut usize, start: impl Fn(&T)) {
    let ahead = if *next == 0 { FRESH_AHEAD } else { 1 };
    for _ in 0..ahead {
        if let Some(t) = queue.get(*next) {
            start(t);
            *next += 1;
        }
    }
}

/// [`prefetch_new_conn`] in the IPv6 table (MASQUERADE's address being
/// the one `ipv6_dev_get_saddr` picks for the destination).
fn prefetch_new_conn6(gw: &Gateway, t: &Tuple<Ipv6Addr>) {
    let Some(ct) = &gw.conntrack6 else {
        return;
    };
    ct.prefetch_new(ct.hash(t));
    let r = t.invert();
    ct.prefetch(ct.hash(&r));
    let out = gw.routes6.lookup(t.dst);
    if let Some(addr) = out.and_then(|h| gw.source6(h.iface, t.dst)) {
        ct.prefetch(ct.hash(&Tuple { dst: addr, ..r }));
    }
}

/// Starts loading what a new connection's lookups touch: its tuple, and
/// its reply tuple for confirm (and NAT's port choice): the inverse, or
/// under MASQUERADE keeping the port, the inverse to the outgoing
/// interface's address.
#[inline]
fn prefetch_new_conn(gw: &Gateway, t: &Tuple) {
    let ct = &gw.conntrack;
    ct.prefetch_new(ct.hash(t));
    let r = t.invert();
    ct.prefetch(ct.hash(&r));
    let out = gw.routes.lookup(t.dst);
    if let Some(addr) = out.and_then(|h| gw.addr(h.iface)) {
        ct.prefetch(ct.hash(&Tuple { dst: addr, ..r }));
    }
}
