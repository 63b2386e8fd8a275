//! The established-flow fast path: a TCP or UDP packet of a flow whose
//! traversal is cached goes out with the cached decision, skipping the
//! rule traversal.
//!
//! An entry ([`cache`]) is only made from a full traversal
//! ([`crate::pipeline`]) of a packet that conntrack found ESTABLISHED (not
//! RELATED) and that was forwarded to a next hop whose MAC the worker's
//! neighbour snapshot knew, when no rule evaluated on the way could decide
//! differently for the next packet of the same flow (no TCP-flag, DSCP,
//! ICMP or limit match, no LOG: [`crate::classify::CRule::volatile`]) and
//! the counters it bumped fit ([`record`]). Rules only see fields that are
//! the same for every packet of a flow in one direction (addresses and
//! ports before and after its NAT, interfaces, the conntrack state bits,
//! the mark the rules themselves set), so the same rule set gives the same
//! result.
//!
//! A cached entry is used only while that still holds, checked per packet:
//! the same rule set, neighbour snapshot and link state (MTUs, addresses:
//! [`crate::gateway::Gateway::link_epoch`]) (the cache's epoch), the same
//! conntrack entry (its slot and generation: so the same direction, tuples
//! and NAT state bits, which are fixed at confirm) says ESTABLISHED, and
//! the packet's TTL and length pass the forwarding checks. Conntrack itself
//! runs for every packet, on that entry without a lookup
//! ([`crate::conntrack::Conntrack::track_entry`]: timeouts, TCP window
//! tracking, counters) — or, for a steady UDP stream, counts it in the
//! worker's credit round ([`credit`]) — and the rule counters the traversal
//! bumped are bumped again, so counters, `conntrack -L` and traces cannot
//! tell a cached packet from another. Anything else takes the full path.

pub(crate) mod cache;
pub(crate) mod credit;
pub(crate) mod record;

use crate::action::Action;
use crate::classify::EvalState;
use crate::conntrack::{status, Conntrack, CtCounters, EntryTrack, PacketMeta, TcpSeg};
use crate::flow::Tuple;
use crate::gateway::Gateway;
use crate::hint::prefetch::prefetch_line;
use crate::wire;

use cache::{Cached, FlowCache, Place};
use credit::{Credit, Credits, NO_CREDIT};
use record::Recording;

pub use credit::CREDIT_ROUND;

/// Entries of each worker's established-flow cache (two per bucket).
const FLOW_CACHE_ENTRIES: usize = 8192;

/// A worker's fast path: the cache, the recording of the packet the full
/// path is running for it, and the credit round.
pub(crate) struct FastPath {
    cache: FlowCache,
    /// Off, every packet takes the full traversal.
    pub(crate) on: bool,
    pub(crate) rec: Recording,
    credits: Credits,
}

impl FastPath {
    pub(crate) fn new(ct: &Conntrack) -> FastPath {
        FastPath {
            cache: FlowCache::new(FLOW_CACHE_ENTRIES),
            on: true,
            rec: Recording::new(),
            credits: Credits::new(ct),
        }
    }

    /// Ends every cached decision (the rule set or the neighbours changed).
    pub(crate) fn new_epoch(&mut self) {
        self.cache.new_epoch();
    }

    /// At a batch's beginning: a credit round that must end ends.
    #[inline]
    pub(crate) fn begin_batch(&mut self, ct: &Conntrack) {
        self.credits.begin_batch(ct);
    }

    /// Between batches: a credit round older than [`CREDIT_ROUND`] ends.
    pub(crate) fn end_old_round(&mut self, now: u64, ct: &Conntrack) {
        self.credits.end_if_old(now, ct);
    }

    /// Ends the credit round (the worker goes idle or stops).
    pub(crate) fn end_round(&mut self, ct: &Conntrack) {
        self.credits.flush(ct);
    }

    /// Where `t` arriving on `in_iface` is cached, if it is, having started
    /// loading its entry (the prefetch pass).
    #[inline]
    pub(crate) fn probe(&self, in_iface: u8, t: &Tuple) -> Option<Place> {
        self.cache.probe(in_iface, t)
    }

    /// A cached flow's packet reads its conntrack entry, unless the flow is
    /// credited in this round: then its credit. Starts loading that.
    #[inline]
    pub(crate) fn prefetch(&self, p: Place, ct: &Conntrack) {
        if let Some(c) = self.cache.at(p) {
            if c.credit_round != self.credits.round {
                ct.prefetch_entry(c.entry);
            } else if let Some(cr) = self.credits.get(c.credit_idx) {
                prefetch_line(cr as *const Credit as usize);
            }
        }
    }

    /// The fast path for a frame that arrived on `in_iface`: a TCP or UDP
    /// packet of a flow whose traversal is cached, conntrack still
    /// ESTABLISHED as then, goes out with the cached decision, its
    /// counters (`eval`'s, conntrack's `ct`) bumped as the traversal bumped
    /// them. It reads the frame with [`wire::fast::peek`] rather than a full
    /// parse. None: take the full path (recording it for the cache when the
    /// frame is one the fast path takes: such a frame always reaches the
    /// end of the full path); if conntrack already ran here, its result is
    /// handed over in the recording's `pre_track`.
    #[inline(always)]
    pub(crate) fn forward(
        &mut self,
        gw: &Gateway,
        eval: &EvalState,
        ct: &mut CtCounters,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Option<Action> {
        let iface = gw.ifaces.get(usize::from(in_iface))?;
        let pk = wire::fast::peek(frame, &iface.mac)?;
        self.rec.start(in_iface, pk.tuple);
        let c = self.cache.get_mut(in_iface, &pk.tuple)?;
        self.rec.hit = true;
        if pk.ttl <= 1 || pk.total_len > c.mtu || !wire::fast::l4_checksum_ok(frame, &pk) {
            return None;
        }
        // A UDP stream conntrack found steady earlier in this credit round:
        // its tracking is a count and a timeout (`Conntrack::credit`), given
        // to conntrack when the round ends. Anything else is tracked now.
        let credited =
            c.credit_round == self.credits.round && self.credits.add(c, now, pk.total_len);
        if !credited {
            let meta = PacketMeta {
                tuple: pk.tuple,
                len: pk.total_len,
                tcp: pk.tcp.map(|t| TcpSeg {
                    flags: t.flags,
                    seq: t.seq,
                    ack: t.ack,
                    window: t.window,
                    payload_len: t.payload_len,
                    wscale: None,
                    sack_perm: false,
                }),
                icmp: None,
            };
            match gw.conntrack.track_entry(now, &meta, c.entry, c.dir) {
                EntryTrack::Hit { status } => {
                    let steady = status::ASSURED | status::SEEN_REPLY;
                    if pk.tcp.is_none() && status & steady == steady {
                        // Its next packets in this round get a credit.
                        c.credit_round = self.credits.round;
                        c.credit_idx = NO_CREDIT;
                    }
                }
                EntryTrack::Other(track) => {
                    ct.count_track(&track, meta.tuple.proto);
                    self.rec.pre_track = Some(track);
                    return None;
                }
                EntryTrack::Miss => return None,
            }
        }
        ct.found += 1;
        self.rec.on = false;
        self.rec.key = None;
        Some(forward_cached(c, eval, frame, &pk))
    }

    /// After a full traversal: caches what it decided if it may be reused,
    /// forgets a cached decision that no longer holds.
    #[inline]
    pub(crate) fn end_recording(&mut self) {
        if !self.rec.on {
            return;
        }
        self.rec.on = false;
        self.rec.pre_track = None;
        let pending = self.rec.pending.take();
        if let Some((in_iface, key)) = self.rec.key.take() {
            match pending {
                Some(c) if self.rec.cacheable() => self.cache.insert(in_iface, &key, c),
                // A cached decision that no longer holds.
                _ if self.rec.hit => self.cache.remove(in_iface, &key),
                _ => {}
            }
        }
    }
}

/// The fast path's decision for a packet of a cached flow, once conntrack
/// agreed: the cached rewrite, counters and next hop.
#[inline(always)]
fn forward_cached(c: &Cached, eval: &EvalState, frame: &mut [u8], pk: &wire::fast::Peek) -> Action {
    c.edit.apply(frame, pk.tuple.proto);
    for &slot in &c.counters[..usize::from(c.ncounters)] {
        eval.bump(slot, pk.total_len);
    }
    wire::set_macs(frame, c.dst_mac, c.src_mac);
    Action::Forward {
        iface: c.out_iface,
        len: (wire::ETH_HDR + usize::from(pk.total_len)).min(frame.len()),
    }
}
