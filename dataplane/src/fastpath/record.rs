//! Recording a full traversal for the cache: which packet (its input
//! interface and tuple as it arrived), the counter slots the rules bumped,
//! whether a volatile rule was evaluated, and the entry the traversal ends
//! with ([`Recording::note`], made where FORWARD sends the packet out).

use crate::classify::{CRule, EvalObserver};
use crate::conntrack::Track;
use crate::flow::Tuple;

use super::cache::Cached;

/// The most counter slots a cached traversal bumps (more make it
/// uncacheable).
pub(crate) const MAX_RECORDED: usize = 12;

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
    /// The packet: its input interface and tuple as it arrived.
    pub(crate) key: Option<(u8, Tuple)>,
    /// Whether the cache had an entry for it (which no longer holds, if
    /// the traversal does not make a new one).
    pub(crate) hit: bool,
    /// The entry the traversal produced.
    pub(crate) pending: Option<Cached>,
    /// What conntrack said when the fast path tracked the packet and then
    /// handed it to the full path (which must not track it again).
    pub(crate) pre_track: Option<Track>,
}

impl Recording {
    pub(crate) fn new() -> Recording {
        Recording {
            on: false,
            volatile: false,
            slots: [0; MAX_RECORDED],
            nslots: 0,
            key: None,
            hit: false,
            pending: None,
            pre_track: None,
        }
    }

    /// Starts recording the packet `tuple` that arrived on `in_iface`.
    #[inline(always)]
    pub(crate) fn start(&mut self, in_iface: u8, tuple: Tuple) {
        self.on = true;
        self.volatile = false;
        self.nslots = 0;
        self.key = Some((in_iface, tuple));
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
}

impl EvalObserver for Recording {
    #[inline(always)]
    fn considered(&mut self, rule: &CRule) {
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
