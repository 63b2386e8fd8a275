//! The packet pipeline: netfilter's hook traversal over one Ethernet frame,
//! in Linux's order, rewriting the frame in place.
//!
//! Arriving packets: raw PREROUTING, conntrack, mangle PREROUTING, nat
//! PREROUTING (first packet of a connection only; later packets get the
//! connection's translation), routing, then either FORWARD (TTL, MTU, mangle,
//! filter) or INPUT (mangle, filter, nat INPUT), then mangle and nat
//! POSTROUTING, conntrack confirm, neighbour resolution. Packets the gateway
//! itself sends (echo replies, ICMP errors, TCP resets from REJECT) take the
//! OUTPUT path: routing, raw, conntrack, mangle, nat and filter OUTPUT, then
//! POSTROUTING.
//!
//! No I/O and no clock: frames come in with their interface and the time,
//! and the result says what to do with each; extra frames the gateway
//! generates go to an [`Emit`] sink.
//!
//! The parts: `Hooks` (a worker's state for the traversal) takes a frame
//! through the link layer here; the hooks themselves are in `hook`, the
//! packets the gateway generates (ARP, ICMP errors, resets) in `generate`,
//! the packet as the hooks carry it and what they read off it in `packet`,
//! and what a packet trace is told in `observe`. The hooks take a
//! `Pkt` (`packet::Pkt`) whatever its link layer and address family: a
//! parse (IPv4 here), what rules see of it, and its connection.

mod generate;
mod hook;
mod observe;
mod packet;
mod reassemble;
mod v6;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::action::Action;
use crate::classify::{CompiledRuleSet, EvalState};
use crate::drop::DropReason;
use crate::fastpath::FastPath;
use crate::frag::Defrag;
use crate::gateway::Gateway;
use crate::host_addr::HostAddrs;
use crate::log::LogRing;
use crate::nat::PortSearch;
use crate::neigh::{HoldQueue, NeighMap};
use crate::stats::WorkerStats;
use crate::trace::{rules_id, WorkerTrace};
use crate::wire::{self, Ipv4Info};

use observe::{Observer, Untraced};
use packet::{is_group, meta_of, view_of};

/// Where frames the gateway generates go (ARP, ICMP errors, resets, held
/// packets once resolved). The port copies them into a transmit frame.
pub trait Emit {
    fn emit(&mut self, iface: u8, frame: &[u8]);
}

impl<E: Emit + ?Sized> Emit for &mut E {
    #[inline]
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        (**self).emit(iface, frame);
    }
}

/// An emit sink that drops everything (where nothing may be emitted, and
/// benchmarks).
pub struct NoEmit;

impl Emit for NoEmit {
    fn emit(&mut self, _: u8, _: &[u8]) {}
}

/// The Ethernet header's length: where the IPv4 header starts.
pub const ETH_HLEN: usize = wire::ETH_HDR;

/// Frames larger than this are not generated or held: the largest MTU's
/// ([`crate::port::MAX_MTU`], multi-buffer frames) with its Ethernet
/// header and a VLAN tag.
pub const FRAME_SIZE: usize = crate::port::MAX_MTU as usize + 18;

/// What one packet's way through the hooks carries besides the packet:
/// the time, where generated frames go, the worker's counters, the fast
/// path (which records the traversal when the packet is one it may take
/// next time), and the trace that is told each step.
pub(crate) struct Cx<'a, E: Emit, O: Observer> {
    pub now: u64,
    pub emit: &'a mut E,
    pub stats: &'a mut WorkerStats,
    pub fast: &'a mut FastPath,
    obs: O,
}

impl<'a, E: Emit> Cx<'a, E, Untraced> {
    /// The context of an untraced packet.
    #[inline(always)]
    pub(crate) fn new(
        now: u64,
        emit: &'a mut E,
        stats: &'a mut WorkerStats,
        fast: &'a mut FastPath,
    ) -> Self {
        Cx {
            now,
            emit,
            stats,
            fast,
            obs: Untraced,
        }
    }

    /// Runs `f` with this context recording into `obs` (a traced packet).
    #[cold]
    pub(crate) fn observed<O: Observer>(
        &mut self,
        obs: O,
        f: impl FnOnce(&mut Cx<'_, E, O>) -> Action,
    ) -> Action {
        f(&mut Cx {
            now: self.now,
            emit: &mut *self.emit,
            stats: &mut *self.stats,
            fast: &mut *self.fast,
            obs,
        })
    }
}

impl<E: Emit, O: Observer> Cx<'_, E, O> {
    /// Counts a drop; the action for it.
    #[inline]
    pub fn drop(&mut self, r: DropReason) -> Action {
        self.stats.drops[r as usize] += 1;
        Action::Drop(r)
    }
}

/// A worker's state for the hooks: the rule set and neighbour table as of
/// its current batch, its rule evaluation scratch and counter stripe, the
/// packets held for ARP, its NAT port search, a buffer for the packets it
/// generates and its LOG ring. Shares the gateway.
pub(crate) struct Hooks {
    gw: Arc<Gateway>,
    rules: Arc<CompiledRuleSet>,
    eval: EvalState,
    /// The worker's index: its stripe of the rule counters.
    index: usize,
    /// The neighbour table as of this batch.
    neigh: Arc<NeighMap>,
    hold: HoldQueue,
    ports: PortSearch,
    scratch: Box<[u8]>,
    logs: LogRing,
    /// Reassembly: the datagram the pipeline runs when a fragment
    /// completed one.
    defrag: Defrag,
    /// The IPv6 rule set, neighbours and held packets.
    v6: v6::State6,
    /// The host path devices' addresses as of the gateway's link epoch
    /// `addrs_epoch` (taken again when the epoch moves).
    host_addrs: Arc<HostAddrs>,
    addrs_epoch: u32,
}

impl Hooks {
    pub(crate) fn new(gw: Arc<Gateway>, index: usize, seed: u64) -> Hooks {
        let rules = gw.rules();
        let mut eval = EvalState::for_worker(&rules, index);
        eval.sets = gw.sets.snapshot();
        Hooks {
            eval,
            index,
            rules,
            // Linux queues up to unres_qlen_bytes (212,992) per unresolved
            // neighbour: about as many small packets as this.
            hold: HoldQueue::new(128, FRAME_SIZE),
            ports: PortSearch::new(seed),
            scratch: vec![0u8; FRAME_SIZE].into_boxed_slice(),
            logs: LogRing::new(256),
            defrag: Defrag::new(&gw.frags),
            v6: v6::State6::new(&gw, index),
            neigh: gw.neigh.snapshot(),
            addrs_epoch: gw.link_epoch(),
            host_addrs: gw.host_addrs(),
            gw,
        }
    }

    /// Picks up a newly installed neighbour table and rule set (atomic
    /// loads, never blocking); whether either changed.
    #[inline]
    pub(crate) fn refresh(&mut self) -> bool {
        let mut changed = false;
        let neigh = self.gw.neigh.snapshot();
        if !Arc::ptr_eq(&neigh, &self.neigh) {
            self.neigh = neigh;
            changed = true;
        }
        let epoch = self.gw.link_epoch();
        if epoch != self.addrs_epoch {
            // Acquire (in `link_epoch`): the set stored before the epoch
            // moved is the one loaded here, or a newer one.
            self.host_addrs = self.gw.host_addrs();
            self.addrs_epoch = epoch;
            changed = true;
        }
        let current = self.gw.rules_now();
        if !Arc::ptr_eq(&current, &self.rules) {
            self.rules = Arc::clone(&current);
            self.eval = EvalState::for_worker(&self.rules, self.index);
            self.eval.sets = self.gw.sets.snapshot();
            changed = true;
        }
        // IPv6's snapshots only where IPv6 is on: two atomic loads fewer
        // per batch for an IPv4-only gateway.
        if self.gw.conntrack6.is_some() && self.v6.refresh(&self.gw, self.index) {
            changed = true;
        }
        // A change of the sets does not start a new fast-path epoch: a
        // traversal that evaluated a `-m set` rule is never cached (the
        // rule is volatile), so no cached flow depends on a set.
        let sets = self.gw.sets.now();
        if !Arc::ptr_eq(&sets, &self.eval.sets) {
            self.eval.sets = Arc::clone(&sets);
        }
        changed
    }

    /// The rule set as of the current batch, and the worker's counters in
    /// it.
    pub(crate) fn rules(&self) -> (&Arc<CompiledRuleSet>, &EvalState) {
        (&self.rules, &self.eval)
    }

    /// The IPv6 rule set as of the current batch, and the worker's
    /// counters in it.
    pub(crate) fn rules6(&self) -> (&CompiledRuleSet<crate::classify::V6>, &EvalState) {
        (self.v6.rules(), self.v6.eval())
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The LOG entries, and the rule sets (IPv4, IPv6) they refer to.
    pub(crate) fn logs(
        &mut self,
    ) -> (
        &mut LogRing,
        &CompiledRuleSet,
        &CompiledRuleSet<crate::classify::V6>,
    ) {
        (&mut self.logs, &self.rules, self.v6.rules())
    }

    /// Runs one frame that arrived on `in_iface` through the pipeline: the
    /// link layer (ARP, or an IPv4 packet for us), then the hooks, recorded
    /// in `trace` if a trace runs and the packet may match it.
    #[inline]
    pub(crate) fn receive<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Action {
        let et = match wire::ethertype(frame) {
            Ok(e) => e,
            Err(r) => return cx.drop(r),
        };
        let Some(iface) = self.gw.ifaces.get(usize::from(in_iface)) else {
            return cx.drop(DropReason::NotForUs);
        };
        let (et, frame) = if et == wire::ETHERTYPE_ARP
            || et == wire::ETHERTYPE_IPV4
            || et == wire::ETHERTYPE_IPV6
        {
            (et, frame)
        } else {
            match without_priority_tag(et, frame) {
                Ok(f) => f,
                Err(r) => return cx.drop(r),
            }
        };
        if et == wire::ETHERTYPE_ARP {
            return self.arp(cx, in_iface, frame);
        }
        if et != wire::ETHERTYPE_IPV4 && et != wire::ETHERTYPE_IPV6 {
            return cx.drop(DropReason::NotIpv4);
        }
        // Frames to another host's MAC are not ours (Linux: PACKET_OTHERHOST,
        // dropped in `ip_rcv_core`); link-layer broadcast and multicast ones
        // go through PREROUTING but are never forwarded (`forward`).
        if !is_group(frame) && frame[..6] != iface.mac {
            return cx.drop(DropReason::NotForUs);
        }
        if et == wire::ETHERTYPE_IPV6 {
            let a = self.receive6(cx, trace, in_iface, frame);
            cx.fast.end_recording();
            return a;
        }
        let info = match wire::parse_ipv4(frame) {
            Ok(i) if !i.fragment => i,
            // Fragments are reassembled before raw PREROUTING, as
            // `nf_defrag_ipv4` does; what does not parse is dropped.
            r => return self.not_whole(cx, trace, in_iface, frame, r.err()),
        };
        let a = if trace.active() {
            self.prerouting_traced(cx, trace, in_iface, frame, info)
        } else {
            self.prerouting(cx, in_iface, frame, info)
        };
        cx.fast.end_recording();
        match a {
            Action::Forward { .. } => cx.stats.forwarded += 1,
            Action::Host { .. } => cx.stats.host += 1,
            Action::Consumed => cx.stats.consumed += 1,
            Action::Emitted { .. } => cx.stats.forwarded += 1,
            Action::HostReassembled { .. } | Action::Drop(_) => {}
        }
        a
    }

    /// The reassembly buffer: the datagram of the last
    /// [`Action::HostReassembled`].
    pub(crate) fn reassembled(&self) -> &[u8] {
        &self.defrag.buf
    }

    /// [`Hooks::prerouting`] for a packet that may match the running
    /// trace's filter: recorded in the trace.
    #[cold]
    #[inline(never)]
    fn prerouting_traced<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
        info: Ipv4Info,
    ) -> Action {
        let view = view_of(&info, Some(in_iface), None);
        let (worker, rules) = (self.index as u32, rules_id(&self.rules));
        let Some(record) = trace.begin(worker, rules, &view, meta_of(&info).tuple, cx.now) else {
            return self.prerouting(cx, in_iface, frame, info);
        };
        let a = cx.observed(record, |c| self.prerouting(c, in_iface, frame, info));
        trace.end(cx.now, a);
        a
    }

    /// A packet the gateway host sent (read from the host path): the IPv4
    /// packet is in `buf[ETH_HLEN..ETH_HLEN + len]`; the Ethernet header in
    /// front of it is written here. It takes OUTPUT and POSTROUTING like
    /// everything the gateway originates.
    pub(crate) fn output_from_host<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        dev: u8,
        buf: &mut [u8],
        len: usize,
    ) -> Action {
        cx.stats.from_host += 1;
        let Some(frame) = buf.get_mut(..ETH_HLEN + len) else {
            return cx.drop(DropReason::EthTruncated);
        };
        frame[..12].fill(0);
        if frame.get(ETH_HLEN).is_some_and(|v| v >> 4 == 6) {
            frame[12..ETH_HLEN].copy_from_slice(&wire::ETHERTYPE_IPV6.to_be_bytes());
            if self.gw.conntrack6.is_none() {
                return cx.drop(DropReason::Ipv6Off);
            }
            let a = self.output6_from_host(cx, frame);
            if let Action::Forward { .. } | Action::Emitted { .. } = a {
                cx.stats.forwarded += 1;
            }
            return a;
        }
        frame[12..ETH_HLEN].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
        if reassemble::is_fragment(frame) {
            let a = self.reassemble_from_host(cx, frame);
            if let Action::Emitted { .. } = a {
                cx.stats.forwarded += 1;
            }
            return a;
        }
        let a = self.output_via(cx, frame, None, Some(dev));
        if let Action::Forward { .. } = a {
            cx.stats.forwarded += 1;
        }
        a
    }

    /// Held packets whose next hop resolved go out to `emit`, stale ones
    /// are dropped (counted in `stats`), and next hops still unresolved are
    /// asked again.
    pub(crate) fn release_held(
        &mut self,
        now: u64,
        stats: &mut WorkerStats,
        fast: &mut FastPath,
        emit: &mut impl Emit,
    ) {
        self.gratuitous_arps(now, stats, emit);
        if self.gw.conntrack6.is_some() {
            // IPv6's neighbour discovery and advertisements take OUTPUT.
            let mut cx = Cx::new(now, &mut *emit, &mut *stats, fast);
            self.release_held6(&mut cx);
            self.router_adverts(&mut cx);
        }
        if self.hold.is_empty() {
            return;
        }
        let gw = Arc::clone(&self.gw);
        let mut asks: [(u8, Ipv4Addr); 4] = [(0, Ipv4Addr::UNSPECIFIED); 4];
        let mut nasks = 0;
        let (mut sent, mut dropped) = (0u64, 0u64);
        self.hold.service(
            now,
            &gw.neigh,
            |iface, mac, frame| {
                if let Some(f) = gw.ifaces.get(usize::from(iface)) {
                    wire::set_macs(frame, mac, f.mac);
                    emit.emit(iface, frame);
                    sent += 1;
                }
            },
            || dropped += 1,
            |iface, hop| {
                if nasks < asks.len() {
                    asks[nasks] = (iface, hop);
                    nasks += 1;
                }
            },
        );
        stats.emitted += sent;
        stats.drops[DropReason::NeighUnresolved as usize] += dropped;
        for &(iface, hop) in &asks[..nasks] {
            self.arp_request(stats, emit, iface, hop);
        }
    }
}

/// A frame whose EtherType is neither ARP nor IPv4, with an 802.1Q tag the
/// links left in it (none of its port's VLANs is an interface, or a second
/// tag): a priority tag (VLAN 0) is removed, once, and the frame is its
/// interface's own; any other VLAN is not ours (`__netif_receive_skb_core`
/// marks it `PACKET_OTHERHOST`). Other EtherTypes are returned as they are.
/// Out of line and cold: it must not weigh on the inlined packet path.
#[cold]
#[inline(never)]
fn without_priority_tag(et: u16, frame: &mut [u8]) -> Result<(u16, &mut [u8]), DropReason> {
    if et != wire::vlan::TPID_8021Q {
        return Ok((et, frame));
    }
    if wire::vlan::read_tag(frame) != wire::vlan::Tag::Vlan(0) {
        return Err(DropReason::VlanUnknown);
    }
    let len = wire::vlan::untag(frame, frame.len()).ok_or(DropReason::EthTruncated)?;
    let frame = frame.get_mut(..len).ok_or(DropReason::EthTruncated)?;
    match wire::ethertype(frame)? {
        wire::vlan::TPID_8021Q => Err(DropReason::VlanUnknown),
        et => Ok((et, frame)),
    }
}
