//! Recording a full traversal for the cache: which packet (its input
//! interface and tuple as it arrived), the counter slots the rules bumped,
//! whether a volatile rule was evaluated, and the entry the traversal ends
//! with ([`Recording::note`], made where FORWARD sends the packet out).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::classify::{AddrFamily, CRule, EvalObserver};
use crate::conntrack::Track;
use crate::flow::{Addr, Tuple};

use super::cache::Cached;

/// The most counter slots a cached traversal bumps (more make it
/// uncacheable).
pub(crate) const MAX_RECORDED: usize = 12;

/// A recorded packet: its input interface and tuple as it arrived. Aligned:
/// written for every packet the fast path sees, and a packed `(u8, Tuple)`
/// at an odd offset made the write a chain of overlapping unaligned stores
/// the CPU could not forward (measured: a fifth of IPv4's fast path).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub(crate) struct Keyed<A: Addr = Ipv4Addr> {
    pub(crate) in_iface: u8,
    pub(crate) tuple: Tuple<A>,
}

/// The recording of the packet the full path is running, if it is one the
/// fast path could take; and a conntrack result the fast path already
/// obtained for it.
pub(crate) struct Recording {
    /// A packet is being recorded (from its fast-path check to the end of
    /// its traversal).
    pub(crate) on: bool,
    /// A rule that may decide otherwise for the flow's next packet (see
    /// [`CRule::volatile`]) was evaluated, or more than [`MAX_RECORDED`]
    /// slots were bumped.
    volatile: bool,
    slots: [u32; MAX_RECORDED],
    nslots: usize,
    /// The packet: its input interface and tuple as it arrived (an IPv4
    /// packet's, or an IPv6 one's in `key6`).
    pub(crate) key: Option<Keyed>,
    pub(crate) key6: Option<Keyed<Ipv6Addr>>,
    /// Whether the cache had an entry for it (which no longer holds, if
    /// the traversal does not make a new one).
    pub(crate) hit: bool,
    /// The entry the traversal produced.
    pub(crate) pending: Option<Cached>,
    pub(crate) pending6: Option<Cached<Ipv6Addr>>,
    /// What conntrack said when the fast path tracked the packet and then
    /// handed it to the full path (which must not track it again).
    pub(crate) pre_track: Option<Track>,
    pub(crate) pre_track6: Option<Track<Ipv6Addr>>,
}

impl Recording {
    pub(crate) fn new() -> Recording {
        Recording {
            on: false,
            volatile: false,
            slots: [0; MAX_RECORDED],
            nslots: 0,
            key: None,
            key6: None,
            hit: false,
            pending: None,
            pending6: None,
            pre_track: None,
            pre_track6: None,
        }
    }

    /// Starts recording the packet `tuple` that arrived on `in_iface`.
    #[inline(always)]
    pub(crate) fn start(&mut self, in_iface: u8, tuple: Tuple) {
        self.on = true;
        self.volatile = false;
        self.nslots = 0;
        self.key = Some(Keyed { in_iface, tuple });
        self.hit = false;
    }

    /// [`Recording::start`] for an IPv6 packet.
    #[inline(always)]
    pub(crate) fn start6(&mut self, in_iface: u8, tuple: Tuple<Ipv6Addr>) {
        self.on = true;
        self.volatile = false;
        self.nslots = 0;
        self.key6 = Some(Keyed { in_iface, tuple });
        self.hit = false;
    }

    /// The counter slots the traversal bumped, in order.
    pub(crate) fn slots(&self) -> &[u32] {
        &self.slots[..self.nslots.min(MAX_RECORDED)]
    }

    /// Whether what was recorded may be cached.
    pub(crate) fn cacheable(&self) -> bool {
        !self.volatile
    }

    /// The entry the traversal made for the packet.
    pub(crate) fn note(&mut self, c: Cached) {
        self.pending = Some(c);
    }

    /// The entry the traversal made for an IPv6 packet.
    pub(crate) fn note6(&mut self, c: Cached<Ipv6Addr>) {
        self.pending6 = Some(c);
    }
}

impl<F: AddrFamily> EvalObserver<F> for Recording {
    #[inline(always)]
    fn considered(&mut self, rule: &CRule<F>) {
        self.volatile |= rule.volatile;
    }

    #[inline(always)]
    fn counted(&mut self, slot: u32) {
        match self.slots.get_mut(self.nslots) {
            Some(r) => {
                *r = slot;
                self.nslots += 1;
            }
            None => self.volatile = true,
        }
    }
}
