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

use std::net::Ipv6Addr;

use crate::action::Action;
use crate::classify::EvalState;
use crate::conntrack::{status, Conntrack, CtCounters, EntryTrack, PacketMeta, TcpSeg};
use crate::flow::Tuple;
use crate::gateway::Gateway;
use crate::hint::prefetch::prefetch_line;
use crate::wire;
use crate::wire::fast::{FastTcp, Peek};

use cache::{Cached, FastAddr, FlowCache, Place};
use credit::{Credit, Credits, NO_CREDIT};
use record::Recording;

pub use credit::CREDIT_ROUND;

/// Entries of each worker's established-flow cache (two per bucket).
const FLOW_CACHE_ENTRIES: usize = 8192;

/// A worker's fast path: the caches (one per family), the recording of the
/// packet the full path is running for it, and the credit rounds.
pub(crate) struct FastPath {
    cache: FlowCache,
    cache6: FlowCache<Ipv6Addr>,
    /// Off, every packet takes the full traversal.
    pub(crate) on: bool,
    pub(crate) rec: Recording,
    credits: Credits,
    credits6: Credits<Ipv6Addr>,
}

impl FastPath {
    pub(crate) fn new(gw: &Gateway) -> FastPath {
        let removals6 = gw.conntrack6.as_ref().map_or(0, |ct| ct.removals());
        FastPath {
            cache: FlowCache::new(FLOW_CACHE_ENTRIES),
            cache6: FlowCache::new(FLOW_CACHE_ENTRIES),
            on: true,
            rec: Recording::new(),
            credits: Credits::new(gw.conntrack.removals()),
            credits6: Credits::new(removals6),
        }
    }

    /// Ends every cached decision (the rule set or the neighbours changed).
    pub(crate) fn new_epoch(&mut self) {
        self.cache.new_epoch();
        self.cache6.new_epoch();
    }

    /// At a batch's beginning: a credit round that must end ends.
    #[inline]
    pub(crate) fn begin_batch(&mut self, gw: &Gateway) {
        self.credits.begin_batch(&gw.conntrack);
        if let Some(ct6) = &gw.conntrack6 {
            self.credits6.begin_batch(ct6);
        }
    }

    /// Between batches: a credit round older than [`CREDIT_ROUND`] ends.
    pub(crate) fn end_old_round(&mut self, now: u64, gw: &Gateway) {
        self.credits.end_if_old(now, &gw.conntrack);
        if let Some(ct6) = &gw.conntrack6 {
            self.credits6.end_if_old(now, ct6);
        }
    }

    /// Ends the credit rounds (the worker goes idle or stops).
    pub(crate) fn end_round(&mut self, gw: &Gateway) {
        self.credits.flush(&gw.conntrack);
        if let Some(ct6) = &gw.conntrack6 {
            self.credits6.flush(ct6);
        }
    }

    /// Where `t` arriving on `in_iface` is cached, if it is, having started
    /// loading its entry (the prefetch pass).
    #[inline]
    pub(crate) fn probe(&self, in_iface: u8, t: &Tuple) -> Option<Place> {
        self.cache.probe(in_iface, t)
    }

    /// Whether IPv6's `t` arriving on `in_iface` is cached, having started
    /// loading its entry if it is.
    #[inline]
    pub(crate) fn probe6(&self, in_iface: u8, t: &Tuple<Ipv6Addr>) -> bool {
        self.cache6.probe(in_iface, t).is_some()
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
    /// counters (`eval`'s, or `eval6`'s for IPv6; conntrack's `ct`) bumped
    /// as the traversal bumped them. It reads the frame with
    /// [`wire::fast::peek`] ([`wire::fast::peek6`]) rather than a full
    /// parse. None: take the full path (recording it for the cache when the
    /// frame is one the fast path takes: such a frame always reaches the
    /// end of the full path); if conntrack already ran here, its result is
    /// handed over in the recording's `pre_track`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        gw: &Gateway,
        eval: &EvalState,
        eval6: &EvalState,
        ct: &mut CtCounters,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Option<Action> {
        let iface = gw.ifaces.get(usize::from(in_iface))?;
        let Some(pk) = wire::fast::peek(frame, &iface.mac) else {
            return self.forward6(gw, eval6, ct, now, in_iface, frame);
        };
        let cx = Take {
            cache: &mut self.cache,
            credits: &mut self.credits,
            rec: &mut self.rec,
            table: &gw.conntrack,
        };
        cx.forward(eval, ct, now, in_iface, frame, pk)
    }

    /// [`FastPath::forward`] for a frame IPv4's peek did not take: an IPv6
    /// one, if it is. Out of line: IPv4's path stays as it was.
    #[inline(never)]
    fn forward6(
        &mut self,
        gw: &Gateway,
        eval: &EvalState,
        ct: &mut CtCounters,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Option<Action> {
        let ct6 = gw.conntrack6.as_ref()?;
        let iface = gw.ifaces.get(usize::from(in_iface))?;
        let pk = wire::fast::peek6(frame, &iface.mac)?;
        let cx = Take {
            cache: &mut self.cache6,
            credits: &mut self.credits6,
            rec: &mut self.rec,
            table: ct6,
        };
        cx.forward(eval, ct, now, in_iface, frame, pk)
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
        self.rec.pre_track6 = None;
        let (hit, cacheable) = (self.rec.hit, self.rec.cacheable());
        let pending = self.rec.pending.take();
        if let Some(k) = self.rec.key.take() {
            settle(
                &mut self.cache,
                k.in_iface,
                &k.tuple,
                pending,
                hit,
                cacheable,
            );
        }
        let pending = self.rec.pending6.take();
        if let Some(k) = self.rec.key6.take() {
            settle(
                &mut self.cache6,
                k.in_iface,
                &k.tuple,
                pending,
                hit,
                cacheable,
            );
        }
    }
}

/// One family's part of the fast path, for one packet: its cache, credit
/// round and conntrack table, and the worker's recording.
struct Take<'a, A: FastAddr> {
    cache: &'a mut FlowCache<A>,
    credits: &'a mut Credits<A>,
    rec: &'a mut Recording,
    table: &'a Conntrack<A>,
}

impl<A: FastAddr> Take<'_, A> {
    /// [`FastPath::forward`] for the peeked frame `pk`.
    #[inline(always)]
    fn forward(
        self,
        eval: &EvalState,
        ct: &mut CtCounters,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
        pk: Peek<A>,
    ) -> Option<Action> {
        // The packet is recorded for the full path only when the fast path
        // leaves it there (`miss`): a hit copies no tuple.
        let rec = self.rec;
        let miss = |rec: &mut Recording, hit: bool| {
            A::start(rec, in_iface, pk.tuple);
            rec.hit = hit;
            None
        };
        let Some(c) = self.cache.get_mut(in_iface, &pk.tuple) else {
            return miss(rec, false);
        };
        // `ip_forward`'s and `ip6_forward`'s checks: the full path answers.
        if pk.ttl <= 1 || pk.total_len > c.mtu || !A::l4_checksum_ok(frame, &pk) {
            return miss(rec, true);
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
                tcp: pk.tcp.map(segment),
                icmp: None,
            };
            match self.table.track_entry(now, &meta, c.entry, c.dir) {
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
                    A::hand_over(rec, track);
                    return miss(rec, true);
                }
                EntryTrack::Miss => return miss(rec, true),
            }
        }
        ct.found += 1;
        // A packet before this one may have left a recording unfinished
        // (dropped before the hooks): none runs now.
        rec.on = false;
        Some(forward_cached(c, eval, frame, pk.total_len, pk.tuple.proto))
    }
}

/// Caches the entry a full traversal made for `key`, if it may be reused;
/// forgets a cached one (`hit`) that no longer holds.
#[inline]
fn settle<A: FastAddr>(
    cache: &mut FlowCache<A>,
    in_iface: u8,
    key: &Tuple<A>,
    pending: Option<Cached<A>>,
    hit: bool,
    cacheable: bool,
) {
    match pending {
        Some(c) if cacheable => cache.insert(in_iface, key, c),
        _ if hit => cache.remove(in_iface, key),
        _ => {}
    }
}

/// What conntrack reads of a peeked TCP segment (no options: they matter
/// on SYNs only, which the fast path does not take).
#[inline(always)]
fn segment(t: FastTcp) -> TcpSeg {
    TcpSeg {
        flags: t.flags,
        seq: t.seq,
        ack: t.ack,
        window: t.window,
        payload_len: t.payload_len,
        wscale: None,
        sack_perm: false,
    }
}

/// The fast path's decision for a packet of a cached flow (`len` bytes from
/// its IP header on), once conntrack agreed: the cached rewrite, counters
/// and next hop.
#[inline(always)]
fn forward_cached<A: FastAddr>(
    c: &Cached<A>,
    eval: &EvalState,
    frame: &mut [u8],
    len: u16,
    proto: u8,
) -> Action {
    A::apply(&c.edit, frame, proto);
    for &slot in &c.counters[..usize::from(c.ncounters)] {
        eval.bump(slot, len);
    }
    wire::set_macs(frame, c.dst_mac, c.src_mac);
    Action::Forward {
        iface: c.out_iface,
        len: (wire::ETH_HDR + usize::from(len)).min(frame.len()),
    }
}
