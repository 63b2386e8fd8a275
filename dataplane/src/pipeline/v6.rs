//! IPv6 through the hooks, in Linux's order (`ipv6_rcv` ->
//! `ip6_forward` / `ip6_input`, `ip6_local_out` -> `ip6_output`), with
//! ip6tables' tables, conntrack and NAT66 between them; neighbour discovery
//! (answers to solicitations for the gateway's addresses, resolution of
//! next hops, router advertisements) and the ICMPv6 errors a router sends.
//!
//! The same hooks as IPv4's (`hook`), over the IPv6 parse, rule set,
//! connection table and neighbour table, telling a packet trace the same
//! steps (`observe`). Not yet for IPv6: the fast path (every packet takes
//! the hooks).

use std::net::Ipv6Addr;
use std::sync::Arc;

use crate::action::Action;
use crate::classify::{CompiledRuleSet, EvalState, FragFields, Ip6Fields, NatAction, PacketView};
use crate::classify::{RtFields, Verdict, V6};
use crate::conntrack::{ConfirmError, CtState, IcmpMeta, InvalidReason, PacketMeta, TcpSeg, Track};
use crate::drop::DropReason;
use crate::flow::{mix, Tuple, IPPROTO_TCP};
use crate::frag;
use crate::nat::{self, Binding, ConnNat, Manip};
use crate::neigh::{HoldQueue, NeighMap};
use crate::rule::{AddrRange, Hook, RejectWith, Table};
use crate::trace::{rules_id, WorkerTrace};
use crate::wire::ipv6::ndp::{self, Ndp, NdpAddrs, NeighbourAdvert, NeighbourSolicit};
use crate::wire::ipv6::{self as w6, Icmpv6Error, Ipv6Info, L4v6, IPV6_HDR, IPV6_MIN_MTU};
use crate::wire::{self, checksum};

use super::observe::{Observer, Untraced};
use super::packet::{is_group, Attached, Conn};
use super::{Cx, Emit, Hooks, ETH_HLEN, FRAME_SIZE};

/// ICMPv6 types conntrack leaves untracked (`icmpv6_error`'s
/// `noct_valid_new`): MLD queries, reports and done (130-132), neighbour
/// discovery (133-136) and MLDv2 reports (143).
fn untracked_icmpv6(ty: u8) -> bool {
    matches!(ty, 130..=136 | 143)
}

/// A worker's IPv6 state: the rule set and neighbour table as of its
/// batch, its evaluation scratch and counter stripe, the packets held for
/// neighbour discovery.
pub(crate) struct State6 {
    rules: Arc<CompiledRuleSet<V6>>,
    eval: EvalState,
    neigh: Arc<NeighMap<Ipv6Addr>>,
    hold: HoldQueue<Ipv6Addr>,
}

impl State6 {
    pub(super) fn new(gw: &crate::gateway::Gateway, index: usize) -> State6 {
        let rules = gw.rules6();
        State6 {
            eval: EvalState::for_worker(&rules, index),
            rules,
            neigh: gw.neigh6.snapshot(),
            hold: HoldQueue::new(128, FRAME_SIZE),
        }
    }

    /// The IPv6 rule set as of the worker's batch.
    pub(super) fn rules(&self) -> &CompiledRuleSet<V6> {
        &self.rules
    }

    /// The worker's counters in it.
    pub(super) fn eval(&self) -> &EvalState {
        &self.eval
    }

    /// Picks up a new rule set and neighbour table; whether either changed.
    pub(super) fn refresh(&mut self, gw: &crate::gateway::Gateway, index: usize) -> bool {
        let mut changed = false;
        let neigh = gw.neigh6.snapshot();
        if !Arc::ptr_eq(&neigh, &self.neigh) {
            self.neigh = neigh;
            changed = true;
        }
        let current = gw.rules6_now();
        if !Arc::ptr_eq(&current, &self.rules) {
            self.rules = Arc::clone(&current);
            self.eval = EvalState::for_worker(&self.rules, index);
            changed = true;
        }
        changed
    }
}

/// An IPv6 packet on its way through the hooks.
pub(super) struct Pkt6 {
    info: Ipv6Info,
    view: PacketView<V6>,
    conn: Conn<Ipv6Addr>,
    ct_state: CtState,
    src_nat_undecided: bool,
}

impl Pkt6 {
    fn new(info: Ipv6Info, in_iface: Option<u8>, out_iface: Option<u8>) -> Pkt6 {
        let mut view = PacketView::<V6> {
            proto: info.proto,
            in_iface,
            out_iface,
            tos: info.tclass,
            ttl: info.hop_limit,
            len: info.payload_len.saturating_add(IPV6_HDR as u16),
            extra: ip6_fields(&info),
            ..PacketView::default()
        };
        refresh_view(&mut view, &info);
        Pkt6 {
            info,
            view,
            conn: Conn::Untracked,
            ct_state: CtState::Untracked,
            src_nat_undecided: false,
        }
    }

    /// The packet's length from its IPv6 header on.
    fn len(&self) -> usize {
        IPV6_HDR + usize::from(self.info.payload_len)
    }
}

/// What ip6tables' IPv6-only matches read (`-m ipv6header`, `-m frag`,
/// `-m rt`).
fn ip6_fields(info: &Ipv6Info) -> Ip6Fields {
    Ip6Fields {
        headers: info.ext.mask,
        frag: info.ext.frag.map(|f| FragFields {
            id: f.id,
            frag_off: (f.offset << 3) | (u16::from(f.reserved_bits & 3) << 1) | u16::from(f.more),
            reserved: f.reserved,
        }),
        rt: info.ext.routing.map(|r| RtFields {
            rt_type: r.ty,
            segs_left: r.segments_left,
            hdrlen: u8::try_from(r.len / 8).unwrap_or(1).saturating_sub(1),
        }),
    }
}

/// Brings a view's addresses and ports in line with the packet.
fn refresh_view(v: &mut PacketView<V6>, info: &Ipv6Info) {
    v.src = u128::from(info.src);
    v.dst = u128::from(info.dst);
    match info.l4info {
        L4v6::Tcp(t) => {
            v.has_ports = true;
            v.sport = t.sport;
            v.dport = t.dport;
            v.tcp_flags = t.flags;
        }
        L4v6::Udp { sport, dport } => {
            v.has_ports = true;
            v.sport = sport;
            v.dport = dport;
        }
        L4v6::Icmp(i) => v.icmp = Some((i.ty, i.code)),
        L4v6::Other => {}
    }
}

/// What conntrack needs of an IPv6 packet.
fn meta_of(info: &Ipv6Info) -> PacketMeta<Ipv6Addr> {
    let (sport, dport, tcp, icmp) = match info.l4info {
        L4v6::Tcp(t) => (t.sport, t.dport, Some(TcpSeg::from(&t)), None),
        L4v6::Udp { sport, dport } => (sport, dport, None, None),
        L4v6::Icmp(i) => {
            let id = if i.is_query { i.id } else { 0 };
            let inner = i.inner.map(|n| Tuple {
                src: n.src,
                dst: n.dst,
                sport: n.sport,
                dport: n.dport,
                proto: n.proto,
            });
            let meta = IcmpMeta {
                ty: i.ty,
                code: i.code,
                is_query: i.is_query,
                is_error: i.is_error,
                inner,
            };
            (id, id, None, Some(meta))
        }
        L4v6::Other => (0, 0, None, None),
    };
    PacketMeta {
        tuple: Tuple {
            src: info.src,
            dst: info.dst,
            sport,
            dport,
            proto: info.proto,
        },
        len: info.payload_len.saturating_add(IPV6_HDR as u16),
        tcp,
        icmp,
    }
}

/// A datagram in the reassembly buffer `dgram` that `a` forwards whole (an
/// answer built in place, a datagram that fits after all) goes out through
/// the emit sink from there; other actions stand.
fn emitted_whole<E: Emit, O: Observer>(cx: &mut Cx<'_, E, O>, dgram: &[u8], a: Action) -> Action {
    match a {
        Action::Forward { iface, len } => match dgram.get(..len) {
            Some(f) if len <= FRAME_SIZE => {
                cx.emit.emit(iface, f);
                Action::Emitted { iface, frames: 1 }
            }
            _ => cx.drop(DropReason::FragNeeded),
        },
        a => a,
    }
}

/// The unfragmentable part of an IPv6 datagram (RFC 8200 4.5: the IPv6
/// header, hop-by-hop options, and a routing header with the destination
/// options before it), as `ip6_find_1stfragopt` finds it: its length, and
/// the offset in it of the next-header byte a fragment header goes after.
fn unfragmentable(frame: &[u8], info: &Ipv6Info) -> (usize, usize) {
    let e = &info.ext;
    let dest_before_routing = e.dest_opts.filter(|&d| e.routing.is_some_and(|r| d < r.at));
    let mut parts = [e.hop_by_hop, dest_before_routing, e.routing.map(|r| r.at)];
    parts.sort_unstable();
    let (mut end, mut nh_at) = (IPV6_HDR, 6);
    for at in parts.into_iter().flatten() {
        let rel = at - info.l3;
        if rel != end {
            break;
        }
        let Some(&len) = frame.get(at + 1) else {
            break;
        };
        nh_at = rel;
        end = rel + (usize::from(len) + 1) * 8;
    }
    (end, nh_at)
}

/// Why conntrack's error handlers judge the packet INVALID, if they do: a
/// bad UDP length (`udp_error`), then with `verify` (arriving packets) a
/// TCP, UDP or ICMPv6 checksum that does not verify (the pseudo-header
/// always counts; a UDP checksum of 0 is not allowed in IPv6).
fn l4_error(frame: &[u8], info: &Ipv6Info, verify: bool) -> Option<InvalidReason> {
    let end = info.l3 + IPV6_HDR + usize::from(info.payload_len);
    if info.fragment {
        return None;
    }
    let Some(seg) = frame.get(info.l4..end) else {
        return verify.then_some(InvalidReason::BadChecksum);
    };
    let proto = match info.l4info {
        L4v6::Udp { .. } => {
            let udp_len = wire::udp_len(seg).map_or(0, usize::from);
            if udp_len < 8 || udp_len > seg.len() {
                return Some(InvalidReason::UdpBadLength);
            }
            17
        }
        L4v6::Tcp(_) => 6,
        L4v6::Icmp(_) => w6::NEXTHDR_ICMPV6,
        L4v6::Other => return None,
    };
    let ok = !verify || checksum::transport_ok6(info.src, info.dst, proto, seg);
    (!ok).then_some(InvalidReason::BadChecksum)
}

impl Hooks {
    /// An IPv6 frame that arrived on `in_iface` for us (our MAC or a
    /// group address): `ipv6_rcv`, then the hooks.
    pub(super) fn receive6<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Action {
        if self.gw.conntrack6.is_none() {
            return cx.drop(DropReason::Ipv6Off);
        }
        let info = match w6::parse_ipv6(frame) {
            Ok(i) => i,
            Err(r) => return cx.drop(r),
        };
        let a = if info.fragment {
            self.reassemble6(cx, trace, in_iface, frame, &info)
        } else if trace.active() {
            self.prerouting6_traced(cx, trace, in_iface, frame, info)
        } else {
            self.prerouting6(cx, in_iface, frame, info)
        };
        match a {
            Action::Forward { .. } | Action::Emitted { .. } => cx.stats.forwarded += 1,
            Action::Host { .. } | Action::HostReassembled { .. } => cx.stats.host += 1,
            Action::Consumed => cx.stats.consumed += 1,
            Action::Drop(_) => {}
        }
        a
    }

    /// An IPv6 fragment: to the reassembly table before anything else
    /// sees it (`nf_defrag_ipv6`, ahead of raw PREROUTING); the datagram it
    /// completes, in the worker's reassembly buffer, takes the hooks as one
    /// packet. Out of line: whole packets' path stays as it was.
    #[cold]
    #[inline(never)]
    fn reassemble6<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &[u8],
        info: &Ipv6Info,
    ) -> Action {
        self.collect6(cx, frame, info, |h, cx, dgram| {
            h.run_reassembled6(cx, trace, in_iface, dgram)
        })
    }

    /// [`Hooks::prerouting6`] for a packet that may match the running
    /// trace's filter: recorded in the trace.
    #[cold]
    #[inline(never)]
    fn prerouting6_traced<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
        info: Ipv6Info,
    ) -> Action {
        let view = Pkt6::new(info, Some(in_iface), None).view;
        let (worker, rules) = (self.index as u32, rules_id(&self.v6.rules));
        let tuple = meta_of(&info).tuple;
        let Some(record) = trace.begin6(worker, rules, &view, tuple, cx.now) else {
            return self.prerouting6(cx, in_iface, frame, info);
        };
        let a = cx.observed(record, |c| self.prerouting6(c, in_iface, frame, info));
        trace.end(cx.now, a);
        a
    }

    /// Queues `frame`'s fragment (`info` its parse); when it completes its
    /// datagram, runs `then` on the datagram (the fragment's Ethernet
    /// header, then the reassembled datagram, in the worker's reassembly
    /// buffer), Linux's `frag_max_size` noted.
    fn collect6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        info: &Ipv6Info,
        then: impl FnOnce(&mut Self, &mut Cx<'_, E, O>, &mut [u8]) -> Action,
    ) -> Action {
        let mut hdr = [0u8; frag::MAX_HDR];
        let Some(f) = frag::Fragment::parse6(frame, info, &mut hdr) else {
            return cx.drop(DropReason::FragMalformed);
        };
        let mut buf = std::mem::take(&mut self.defrag.buf);
        let r = self.gw.frags.insert(
            cx.now,
            &f,
            &mut buf[ETH_HLEN..],
            &mut self.defrag.pieces,
            cx.stats,
        );
        let a = match r {
            frag::Insert::Queued => Action::Consumed,
            frag::Insert::Dropped(reason) => Action::Drop(reason),
            frag::Insert::Complete { len, max_size } => {
                buf[..ETH_HLEN].copy_from_slice(&frame[..ETH_HLEN]);
                // The largest fragment, its fragment header included.
                self.defrag.max_size = max_size.saturating_add(8);
                then(self, cx, &mut buf[..ETH_HLEN + len])
            }
        };
        self.defrag.buf = buf;
        a
    }

    /// An IPv6 packet the gateway host sent (its Ethernet header written):
    /// OUTPUT sees whole datagrams, so the host's fragments are reassembled
    /// first and leave in fragments again.
    pub(super) fn output6_from_host<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
    ) -> Action {
        let info = match w6::parse_ipv6(frame) {
            Ok(i) => i,
            Err(r) => return cx.drop(r),
        };
        if !info.fragment {
            return self.output6(cx, frame, None, None);
        }
        self.collect6(cx, frame, &info, |h, cx, dgram| {
            (h.defrag.active, h.defrag.from_host) = (true, true);
            let a = h.output6(cx, dgram, None, None);
            (h.defrag.active, h.defrag.from_host) = (false, false);
            emitted_whole(cx, dgram, a)
        })
    }

    /// A reassembled IPv6 datagram (Ethernet header, then the datagram)
    /// through PREROUTING and on.
    fn run_reassembled6<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        dgram: &mut [u8],
    ) -> Action {
        let info = match w6::parse_ipv6(dgram) {
            Ok(i) if !i.fragment => i,
            Ok(_) => return cx.drop(DropReason::FragMalformed),
            Err(r) => return cx.drop(r),
        };
        self.defrag.active = true;
        let a = if trace.active() {
            self.prerouting6_traced(cx, trace, in_iface, dgram, info)
        } else {
            self.prerouting6(cx, in_iface, dgram, info)
        };
        self.defrag.active = false;
        match a {
            Action::Host { iface, len } => Action::HostReassembled { iface, len },
            a => emitted_whole(cx, dgram, a),
        }
    }

    /// Sends the (reassembled) datagram in `frame` out of `iface` towards
    /// `hop` in fragments (`ip6_fragment`): in the fragments it arrived in
    /// when each fits the MTU, else cut to the smaller of the MTU and its
    /// largest fragment; each goes to the emit sink, or is held while
    /// neighbour discovery resolves `hop`.
    #[cold]
    #[inline(never)]
    fn transmit_fragments6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &Pkt6,
        iface: u8,
        hop: Ipv6Addr,
        mtu: usize,
    ) -> Action {
        let Some(our_mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
            return cx.drop(DropReason::NoRoute);
        };
        let known = if hop.is_multicast() {
            Some(ndp::multicast_mac(hop))
        } else {
            let cached = self.v6.neigh.get(&(iface, hop)).copied();
            cached.or_else(|| self.gw.neigh6.get(iface, hop))
        };
        if let Some(mac) = known {
            wire::set_macs(frame, mac, our_mac);
        }
        let (hlen, nh_at) = unfragmentable(frame, &p.info);
        let id = self.ports.rng().next_u32();
        let mut out = [0u8; FRAME_SIZE];
        let (hold, emit, now) = (&mut self.v6.hold, &mut *cx.emit, cx.now);
        let (mut first_held, mut lost) = (false, 0u64);
        let n = frag::fragment6(
            frame,
            hlen,
            nh_at,
            p.len(),
            &self.defrag.pieces,
            self.defrag.max_size,
            u16::try_from(mtu).unwrap_or(u16::MAX),
            id,
            &mut out,
            |f| match known {
                Some(_) => emit.emit(iface, f),
                None => match hold.hold(now, iface, hop, f) {
                    Ok(first) => first_held |= first,
                    Err(_) => lost += 1,
                },
            },
        );
        let Some(n) = n else {
            cx.stats.frag_fails += 1;
            return cx.drop(DropReason::FragNeeded);
        };
        cx.stats.frag_oks += 1;
        cx.stats.frag_creates += n as u64;
        cx.stats.drops[DropReason::NeighQueueFull as usize] += lost;
        if known.is_none() {
            cx.obs.held(iface, hop);
        }
        if known.is_none() && first_held {
            self.neighbour_solicit(cx, iface, hop);
        }
        Action::Emitted {
            iface,
            frames: n as u32,
        }
    }

    /// PREROUTING, then routing: INPUT or FORWARD.
    fn prerouting6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        in_iface: u8,
        frame: &mut [u8],
        info: Ipv6Info,
    ) -> Action {
        // `ipv6_rcv`: a multicast or loopback source, a loopback
        // destination, or one of our own addresses as the source.
        if info.src.is_multicast()
            || info.src.is_loopback()
            || info.dst.is_loopback()
            || self.gw.local6(info.src).is_some()
        {
            return cx.drop(DropReason::MartianSource);
        }
        let mut p = Pkt6::new(info, Some(in_iface), None);
        let r = self
            .accept_or_drop6(cx, frame, &mut p, Table::Raw, Hook::Prerouting)
            .and_then(|()| {
                self.track6(cx, &mut p, frame, true);
                self.accept_or_drop6(cx, frame, &mut p, Table::Mangle, Hook::Prerouting)
            })
            .and_then(|()| self.nat_hook6(cx, frame, &mut p, Hook::Prerouting, Manip::Dst));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        let dst = p.info.dst;
        if dst.is_multicast() {
            // The groups a router's interface is in: all nodes, all
            // routers and the solicited-node groups of its addresses.
            if self.joined(in_iface, dst) {
                return self.input6(cx, frame, &mut p, in_iface);
            }
            return cx.drop(DropReason::MulticastDst);
        }
        if dst.is_unspecified() {
            return cx.drop(DropReason::MartianDst);
        }
        if self.gw.is_local6_on(in_iface, dst) || self.gw.local6(dst).is_some() {
            return self.input6(cx, frame, &mut p, in_iface);
        }
        self.forward6(cx, in_iface, frame, &mut p)
    }

    /// Whether interface `iface` listens to multicast group `group`.
    fn joined(&self, iface: u8, group: Ipv6Addr) -> bool {
        if group == ndp::ALL_NODES || group == ndp::ALL_ROUTERS {
            return true;
        }
        let Some(f) = self.gw.ifaces.get(usize::from(iface)) else {
            return false;
        };
        ndp::is_solicited_node(group)
            && std::iter::once(f.link_local)
                .chain(f.addr6.iter().map(|&(a, _)| a))
                .any(|a| ndp::solicited_node(a) == group)
    }

    /// `ip6_forward`: the route, the hop limit and the MTU, mangle and
    /// filter FORWARD, POSTROUTING, then out to the next hop.
    fn forward6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        in_iface: u8,
        frame: &mut [u8],
        p: &mut Pkt6,
    ) -> Action {
        // `ip6_route_input` first: without a route, `ip6_pkt_discard`.
        let Some(hop) = self.gw.routes6.lookup(p.info.dst) else {
            self.icmp6_error(cx, frame, p, Icmpv6Error::unreachable(w6::ICMPV6_NOROUTE));
            return cx.drop(DropReason::NoRoute);
        };
        if is_group(frame) {
            return cx.drop(DropReason::LinkBroadcast);
        }
        if p.info.dst.is_unicast_link_local() {
            return cx.drop(DropReason::NotForUs);
        }
        // A HL target in mangle PREROUTING acts before the check.
        self.apply_edits6(frame, p);
        if p.info.hop_limit <= 1 {
            self.icmp6_error(cx, frame, p, Icmpv6Error::hop_limit_exceeded());
            return cx.drop(DropReason::TtlExceeded);
        }
        // A link-local source is not forwarded: "beyond scope".
        if p.info.src.is_unicast_link_local() {
            self.icmp6_error(
                cx,
                frame,
                p,
                Icmpv6Error::unreachable(w6::ICMPV6_NOT_NEIGHBOUR),
            );
            return cx.drop(DropReason::MartianSource);
        }
        let mtu = usize::from(self.gw.mtu(hop.iface)).max(IPV6_MIN_MTU);
        // Routers never fragment IPv6 (`ip6_pkt_too_big`); a reassembled
        // datagram is too big when its largest fragment was.
        let reassembled = self.defrag.active;
        let size = if reassembled {
            usize::from(self.defrag.max_size)
        } else {
            p.len()
        };
        if size > mtu {
            self.icmp6_error(cx, frame, p, Icmpv6Error::packet_too_big(mtu as u32));
            cx.stats.frag_fails += 1;
            return cx.drop(DropReason::FragNeeded);
        }
        w6::dec_hop_limit(frame, &p.info);
        p.info.hop_limit -= 1;
        p.view.ttl = p.info.hop_limit;
        p.view.out_iface = Some(hop.iface);
        let _ = in_iface;
        let r = self
            .accept_or_drop6(cx, frame, p, Table::Mangle, Hook::Forward)
            .and_then(|()| self.filter6(cx, frame, p, Hook::Forward))
            .and_then(|()| self.postrouting6(cx, frame, p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        if reassembled {
            return self.transmit_fragments6(cx, frame, p, hop.iface, hop.addr, mtu);
        }
        let a = self.transmit6(cx, frame, p, hop.iface, hop.addr);
        if cx.fast.rec.on {
            if let Action::Forward { .. } = a {
                self.note_flow6(cx, p, hop.iface, hop.addr, mtu);
            }
        }
        a
    }

    /// Notes what the full path decided for a forwarded IPv6 packet, for
    /// the fast path, if it may be reused (see [`crate::fastpath`]): an
    /// ESTABLISHED, not RELATED, connection to a next hop the worker's
    /// neighbour snapshot knew.
    fn note_flow6<E: Emit, O: Observer>(
        &self,
        cx: &mut Cx<'_, E, O>,
        p: &Pkt6,
        out: u8,
        hop: Ipv6Addr,
        mtu: usize,
    ) {
        let rec = &mut cx.fast.rec;
        if rec.key6.is_none() {
            return;
        }
        let dscp = p.view.tos_changed.then_some(p.view.tos >> 2);
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
        let macs = || {
            let dst = self.v6.neigh.get(&(out, hop))?;
            Some((*dst, self.gw.ifaces.get(usize::from(out))?.mac))
        };
        if let Some(c) = p.conn.cached(p.ct_state, rec, dscp, out, mtu, macs) {
            rec.note6(c);
        }
    }

    /// POSTROUTING: mangle and nat, conntrack confirm, the edits of rules.
    fn postrouting6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt6,
    ) -> Result<(), DropReason> {
        self.accept_or_drop6(cx, frame, p, Table::Mangle, Hook::Postrouting)?;
        self.nat_hook6(cx, frame, p, Hook::Postrouting, Manip::Src)?;
        self.confirm6(cx, p)?;
        self.apply_edits6(frame, p);
        Ok(())
    }

    /// TCPMSS for IPv6: the smallest `--set-mss`, and with
    /// `--clamp-mss-to-pmtu` the smaller MTU of the routes out and back
    /// less 60.
    fn apply_mss6(&self, frame: &mut [u8], p: &mut Pkt6) {
        let mut mss = p.view.mss_set.unwrap_or(u16::MAX);
        if p.view.mss_clamp {
            let back = self
                .gw
                .routes6
                .lookup(p.info.src)
                .map(|h| self.gw.mtu(h.iface));
            let out = p.view.out_iface.map(|i| self.gw.mtu(i));
            if let Some(mtu) = out.into_iter().chain(back).min() {
                mss = mss.min(mtu.saturating_sub(60));
            }
        }
        (p.view.mss_set, p.view.mss_clamp) = (None, false);
        if wire::clamp_mss6(frame, &p.info, mss) == wire::MssEdit::Inserted {
            p.info.payload_len += 4;
            p.view.len += 4;
            if let L4v6::Tcp(t) = &mut p.info.l4info {
                t.header_len += 4;
            }
        }
    }

    /// Writes what DSCP/TOS, HL and TCPMSS targets changed into the packet.
    fn apply_edits6(&self, frame: &mut [u8], p: &mut Pkt6) {
        if p.view.mss_set.is_some() || p.view.mss_clamp {
            self.apply_mss6(frame, p);
        }
        if p.view.tos != p.info.tclass {
            w6::set_tclass(frame, &p.info, p.view.tos);
            p.info.tclass = p.view.tos;
        }
        if p.view.ttl != p.info.hop_limit {
            w6::set_hop_limit(frame, &p.info, p.view.ttl);
            p.info.hop_limit = p.view.ttl;
        }
    }

    /// INPUT (`ip6_input`): mangle and filter INPUT, nat INPUT, confirm;
    /// then neighbour discovery and echo are answered here, the rest goes
    /// to the host.
    fn input6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt6,
        in_iface: u8,
    ) -> Action {
        let r = self
            .accept_or_drop6(cx, frame, p, Table::Mangle, Hook::Input)
            .and_then(|()| self.filter6(cx, frame, p, Hook::Input))
            .and_then(|()| self.nat_hook6(cx, frame, p, Hook::Input, Manip::Src))
            .and_then(|()| self.confirm6(cx, p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        if let L4v6::Icmp(i) = p.info.l4info {
            if i.is_ndp {
                return self.ndp6(cx, frame, p, in_iface);
            }
            if i.ty == w6::ICMPV6_ECHO_REQUEST && i.code == 0 {
                // Echo to a group address is answered from the
                // interface's own (`icmpv6_echo_reply`).
                let our = if p.info.dst.is_multicast() {
                    match self.gw.source6(in_iface, p.info.src) {
                        Some(a) => a,
                        None => return cx.drop(DropReason::NotForUs),
                    }
                } else {
                    p.info.dst
                };
                w6::echo_reply_in_place(frame, &p.info, our);
                let via = p.info.src.is_unicast_link_local().then_some(in_iface);
                return self.output6(cx, frame, None, via);
            }
        }
        if p.info.dst.is_multicast() {
            // The host path carries unicast only.
            return cx.drop(DropReason::MulticastDst);
        }
        self.apply_edits6(frame, p);
        let len = (p.info.l3 + p.len()).min(frame.len());
        match p.view.in_iface {
            Some(iface) if p.info.l3 == ETH_HLEN => Action::Host { iface, len },
            _ => cx.drop(DropReason::NotForUs),
        }
    }

    /// Neighbour discovery addressed to us (`ndisc_rcv`): solicitations for
    /// our addresses answered, advertisements learnt, router solicitations
    /// answered by an earlier advertisement.
    fn ndp6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt6,
        in_iface: u8,
    ) -> Action {
        let msg = match ndp::parse_ndp(frame, &p.info) {
            Ok(m) => m,
            Err(r) => return cx.drop(r),
        };
        let Some(our_mac) = self.gw.ifaces.get(usize::from(in_iface)).map(|f| f.mac) else {
            return cx.drop(DropReason::NotForUs);
        };
        match msg {
            Ndp::NeighbourSolicit(ns) => {
                if !self.gw.is_local6_on(in_iface, ns.target) {
                    return cx.drop(DropReason::NotForUs);
                }
                let dad = p.info.src.is_unspecified();
                if let (false, Some(mac)) = (dad, ns.source_mac) {
                    self.gw.neigh6.learn(in_iface, p.info.src, mac);
                }
                // `ndisc_recv_ns`: a DAD probe is answered to all nodes,
                // unsolicited; others to the solicitor, solicited, with
                // our MAC and override when it asked by multicast.
                let multicast = p.info.dst.is_multicast();
                let (dst, dst_mac) = if dad {
                    (ndp::ALL_NODES, ndp::multicast_mac(ndp::ALL_NODES))
                } else {
                    let mut src_mac = [0u8; 6];
                    src_mac.copy_from_slice(frame.get(6..12).unwrap_or(&[0; 6]));
                    (p.info.src, ns.source_mac.unwrap_or(src_mac))
                };
                let addrs = NdpAddrs {
                    src_mac: our_mac,
                    dst_mac,
                    src: ns.target,
                    dst,
                };
                let na = NeighbourAdvert {
                    target: ns.target,
                    router: true,
                    solicited: !dad,
                    override_flag: dad || multicast,
                    target_mac: (dad || multicast).then_some(our_mac),
                };
                if let Some(n) = ndp::build_na(&mut self.scratch, &addrs, &na) {
                    self.send_ndp(cx, in_iface, n);
                }
            }
            Ndp::NeighbourAdvert(na) => {
                if let Some(mac) = na.target_mac {
                    self.gw.neigh6.learn(in_iface, na.target, mac);
                }
            }
            Ndp::RouterSolicit(rs) => {
                if let (false, Some(mac)) = (p.info.src.is_unspecified(), rs.source_mac) {
                    self.gw.neigh6.learn(in_iface, p.info.src, mac);
                }
                let rand = self.ports.rng().next_u32();
                self.gw.router_solicited(in_iface, cx.now, rand);
            }
            Ndp::RouterAdvert(_) | Ndp::Redirect { .. } => {}
        }
        Action::Consumed
    }

    /// The OUTPUT path for an IPv6 packet the gateway sends (in `frame`,
    /// an Ethernet frame whose MACs the path sets); `via` names the
    /// interface of a link-local destination.
    pub(super) fn output6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        attached: Option<Attached<Ipv6Addr>>,
        via: Option<u8>,
    ) -> Action {
        let info = match w6::parse_ipv6(frame) {
            Ok(i) => i,
            Err(r) => return cx.drop(r),
        };
        cx.obs.generated6(&info);
        let route = |gw: &crate::gateway::Gateway, dst: Ipv6Addr| match via {
            Some(iface) if dst.is_unicast_link_local() || dst.is_multicast() => {
                Some(crate::route::NextHop { iface, addr: dst })
            }
            _ => gw.routes6.lookup(dst),
        };
        let Some(hop) = route(&self.gw, info.dst) else {
            return cx.drop(DropReason::NoRoute);
        };
        let mut p = Pkt6::new(info, None, Some(hop.iface));
        let r = self
            .accept_or_drop6(cx, frame, &mut p, Table::Raw, Hook::Output)
            .and_then(|()| {
                match attached {
                    Some(a) if !p.view.notrack => {
                        p.ct_state = CtState::Related;
                        p.conn = Conn::Existing {
                            nat: a.nat,
                            related: a.icmp_error,
                            entry: None,
                        };
                        p.src_nat_undecided = a.src_nat_undecided;
                        p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                    }
                    _ => self.track6(cx, &mut p, frame, false),
                }
                self.accept_or_drop6(cx, frame, &mut p, Table::Mangle, Hook::Output)
            })
            .and_then(|()| self.nat_hook6(cx, frame, &mut p, Hook::Output, Manip::Dst));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        // DNAT in OUTPUT re-routes.
        let Some(hop) = route(&self.gw, p.info.dst) else {
            return cx.drop(DropReason::NoRoute);
        };
        p.view.out_iface = Some(hop.iface);
        let r = match self.run6(cx, Table::Filter, Hook::Output, &mut p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
        }
        .and_then(|()| self.postrouting6(cx, frame, &mut p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        let mtu = usize::from(self.gw.mtu(hop.iface)).max(IPV6_MIN_MTU);
        if p.len() > mtu {
            // An answer to a reassembled datagram (a large ping's reply)
            // leaves in fragments, as the sender's stack sends one.
            if self.defrag.active && self.defrag.from_host {
                // The host's own fragments, reassembled for OUTPUT, leave
                // in their geometry.
                return self.transmit_fragments6(cx, frame, &p, hop.iface, hop.addr, mtu);
            }
            if self.defrag.active {
                let pieces = std::mem::take(&mut self.defrag.pieces);
                let max_size = std::mem::replace(&mut self.defrag.max_size, 0);
                let a = self.transmit_fragments6(cx, frame, &p, hop.iface, hop.addr, mtu);
                self.defrag.pieces = pieces;
                self.defrag.max_size = max_size;
                return a;
            }
            cx.stats.frag_fails += 1;
            return cx.drop(DropReason::FragNeeded);
        }
        self.transmit6(cx, frame, &p, hop.iface, hop.addr)
    }

    /// Sets the MACs and sends, or holds the frame while neighbour
    /// discovery resolves `hop`.
    fn transmit6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &Pkt6,
        iface: u8,
        hop: Ipv6Addr,
    ) -> Action {
        let Some(our_mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
            return cx.drop(DropReason::NoRoute);
        };
        let len = (p.info.l3 + p.len()).min(frame.len());
        let known = if hop.is_multicast() {
            Some(ndp::multicast_mac(hop))
        } else {
            let cached = self.v6.neigh.get(&(iface, hop)).copied();
            cached.or_else(|| self.gw.neigh6.get(iface, hop))
        };
        match known {
            Some(mac) => {
                wire::set_macs(frame, mac, our_mac);
                Action::Forward { iface, len }
            }
            None => match self.v6.hold.hold(cx.now, iface, hop, &frame[..len]) {
                Ok(first) => {
                    cx.obs.held(iface, hop);
                    if first {
                        self.neighbour_solicit(cx, iface, hop);
                    }
                    Action::Consumed
                }
                Err(r) => cx.drop(r),
            },
        }
    }

    /// Asks for `target`'s MAC on `iface` (`ndisc_send_ns` to its
    /// solicited-node group).
    fn neighbour_solicit<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        iface: u8,
        target: Ipv6Addr,
    ) {
        let Some(f) = self.gw.ifaces.get(usize::from(iface)) else {
            return;
        };
        let mac = f.mac;
        let Some(src) = self.gw.source6(iface, target) else {
            return;
        };
        let ns = NeighbourSolicit {
            target,
            source_mac: Some(mac),
            nonce: None,
        };
        if let Some(n) = ndp::build_ns(&mut self.scratch, mac, src, &ns, None) {
            self.send_ndp(cx, iface, n);
        }
    }

    /// Sends the neighbour discovery message built in the scratch buffer
    /// (`len` bytes) out of `iface`, through OUTPUT and POSTROUTING as
    /// `ndisc_send_skb` does (untracked: conntrack leaves ND alone). Sends
    /// nothing while a generated packet holds the scratch buffer.
    fn send_ndp<E: Emit, O: Observer>(&mut self, cx: &mut Cx<'_, E, O>, iface: u8, len: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        if let Some(frame) = buf.get_mut(..len) {
            let action = self.output6(cx, frame, None, Some(iface));
            cx.obs.generated_end(action);
            if let Action::Forward { iface, len } = action {
                if let Some(f) = frame.get(..len) {
                    cx.emit.emit(iface, f);
                    cx.stats.emitted += 1;
                }
            }
        }
        self.scratch = buf;
    }

    /// Held IPv6 packets whose next hop resolved go out, stale ones are
    /// dropped, unresolved next hops are asked again.
    pub(super) fn release_held6<E: Emit, O: Observer>(&mut self, cx: &mut Cx<'_, E, O>) {
        if self.v6.hold.is_empty() {
            return;
        }
        let (now, emit) = (cx.now, &mut *cx.emit);
        let gw = Arc::clone(&self.gw);
        let mut asks = [(0u8, Ipv6Addr::UNSPECIFIED); 4];
        let mut nasks = 0;
        let (mut sent, mut dropped) = (0u64, 0u64);
        self.v6.hold.service(
            now,
            &gw.neigh6,
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
        cx.stats.emitted += sent;
        cx.stats.drops[DropReason::NeighUnresolved as usize] += dropped;
        for &(iface, hop) in &asks[..nasks] {
            self.neighbour_solicit(cx, iface, hop);
        }
    }

    /// Router advertisements that are due go out to all nodes of their
    /// interfaces (any worker may send one; the schedule is shared).
    pub(super) fn router_adverts<E: Emit, O: Observer>(&mut self, cx: &mut Cx<'_, E, O>) {
        let (gw, now) = (Arc::clone(&self.gw), cx.now);
        for (i, f) in gw.ifaces.iter().enumerate() {
            let Some(cfg) = &f.ra else {
                continue;
            };
            let rand = self.ports.rng().next_u32();
            if !gw.router_advert_due(i as u8, now, cfg, rand) {
                continue;
            }
            let prefixes: Vec<ndp::PrefixInfo> = cfg
                .prefixes
                .iter()
                .map(|p| ndp::PrefixInfo {
                    prefix: p.prefix.addr,
                    len: p.prefix.len,
                    on_link: p.on_link,
                    autonomous: p.autonomous,
                    valid_lifetime: p.valid_lifetime,
                    preferred_lifetime: p.preferred_lifetime,
                })
                .collect();
            let ra = ndp::RouterAdvert {
                cur_hop_limit: cfg.hop_limit,
                managed: cfg.managed,
                other: cfg.other,
                router_lifetime: cfg.router_lifetime,
                reachable_time: cfg.reachable_ms,
                retrans_timer: cfg.retrans_ms,
                source_mac: Some(f.mac),
                mtu: cfg.mtu,
                prefixes: &prefixes,
                rdnss: &cfg.rdnss,
                rdnss_lifetime: cfg.rdnss_lifetime,
            };
            let addrs = NdpAddrs {
                src_mac: f.mac,
                dst_mac: ndp::multicast_mac(ndp::ALL_NODES),
                src: f.link_local,
                dst: ndp::ALL_NODES,
            };
            if let Some(n) = ndp::build_ra(&mut self.scratch, &addrs, &ra) {
                self.send_ndp(cx, i as u8, n);
            }
        }
    }

    /// Evaluates an IPv6 table at a hook.
    fn run6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        table: Table,
        hook: Hook,
        p: &mut Pkt6,
        frame: &[u8],
    ) -> Verdict<Ipv6Addr> {
        self.v6.eval.nlogs = 0;
        if self.v6.rules.uses_ct_tuple {
            self.fill_ct_view6(cx.now, p);
        }
        let v = cx.obs.eval6(
            &self.v6.rules,
            (table, hook),
            &mut p.view,
            &mut self.v6.eval,
            cx.now,
            &mut cx.fast.rec,
        );
        for i in 0..self.v6.eval.nlogs {
            let (log, view) = (self.v6.eval.logs[i], &p.view);
            self.logs
                .push_family(log, view.in_iface, view.out_iface, frame, true);
        }
        if p.view.ctmark_changed {
            p.view.ctmark_changed = false;
            match &mut p.conn {
                Conn::New(pending) => pending.set_mark(p.view.ctmark),
                Conn::Existing { entry: Some(e), .. } => {
                    if let Some(ct) = &self.gw.conntrack6 {
                        ct.set_mark(*e, p.view.ctmark);
                    }
                }
                _ => {}
            }
        }
        v
    }

    /// What `-m conntrack` beyond the state reads of the packet's
    /// connection (as [`Hooks::run`] fills it for IPv4).
    #[cold]
    fn fill_ct_view6(&self, now: u64, p: &mut Pkt6) {
        let tuple = |t: Tuple<Ipv6Addr>| (u128::from(t.src), u128::from(t.dst), t.sport, t.dport);
        p.view.ct = p.conn.nat().map(|n| crate::classify::CtView {
            proto: n.orig.proto,
            tuples: [tuple(n.orig), tuple(n.reply)],
            status: n.status,
            reply_dir: n.dir == crate::flow::Dir::Reply,
            expires: 0,
        });
        if self.v6.rules.uses_ct_expire {
            if let (Some(v), Conn::Existing { entry: Some(e), .. }, Some(ct)) =
                (&mut p.view.ct, &p.conn, &self.gw.conntrack6)
            {
                // `nf_ct_expires(ct) / HZ`.
                v.expires = ct.get(*e).map_or(0, |s| {
                    u32::try_from(s.expires.saturating_sub(now) / 1_000_000_000).unwrap_or(u32::MAX)
                });
            }
        }
    }

    fn accept_or_drop6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &mut Pkt6,
        table: Table,
        hook: Hook,
    ) -> Result<(), DropReason> {
        match self.run6(cx, table, hook, p, frame) {
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
        }
    }

    /// The filter verdict (REJECT answered first).
    fn filter6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &mut Pkt6,
        hook: Hook,
    ) -> Result<(), DropReason> {
        match self.run6(cx, Table::Filter, hook, p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            Verdict::Drop => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Reject(w) => {
                self.reject6(cx, frame, p, w);
                Err(DropReason::FilterReject)
            }
        }
    }

    /// Conntrack for an IPv6 packet (`nf_conntrack_in`).
    fn track6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        p: &mut Pkt6,
        frame: &[u8],
        verify: bool,
    ) {
        let ndp = matches!(p.info.l4info, L4v6::Icmp(i) if untracked_icmpv6(i.ty));
        let ct = match &self.gw.conntrack6 {
            Some(ct) if !p.view.notrack && !ndp => ct,
            _ => {
                if p.view.notrack {
                    cx.obs.untracked();
                }
                p.conn = Conn::Untracked;
                p.ct_state = CtState::Untracked;
                p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                return;
            }
        };
        let meta = meta_of(&p.info);
        let track = if let Some(t) = cx.fast.rec.pre_track6.take() {
            // The fast path tracked (and counted) it already.
            t
        } else {
            let t = match l4_error(frame, &p.info, verify) {
                Some(reason) => ct.protocol_error(&meta.tuple, reason),
                None => ct.track(cx.now, &meta),
            };
            cx.stats.ct.count_track(&t, meta.tuple.proto);
            t
        };
        cx.obs.conntrack(&track, meta.tuple.proto);
        let (conn, state, mark) = match track {
            Track::Existing {
                entry,
                dir,
                state,
                snap,
            } => (
                Conn::Existing {
                    nat: ConnNat {
                        orig: snap.orig,
                        reply: snap.reply,
                        status: snap.status,
                        dir,
                    },
                    related: state == CtState::Related,
                    entry: Some(entry),
                },
                state,
                snap.mark,
            ),
            Track::New(pending) => {
                let mark = pending.mark();
                (Conn::New(pending), CtState::New, mark)
            }
            Track::Invalid { .. } => (Conn::Invalid, CtState::Invalid, 0),
        };
        p.view.ctmark = mark;
        p.conn = conn;
        p.ct_state = state;
        p.view.ct_bits = p.conn.ct_bits(p.ct_state);
    }

    /// nat at a hook: the rules decide for a new connection; others get
    /// the connection's translation.
    fn nat_hook6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt6,
        hook: Hook,
        manip: Manip,
    ) -> Result<(), DropReason> {
        if let Conn::New(_) = p.conn {
            match self.run6(cx, Table::Nat, hook, p, frame) {
                Verdict::Nat(a) => {
                    self.bind6(cx.now, p, a)?;
                    p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                }
                Verdict::Drop | Verdict::Reject(_) => return Err(DropReason::FilterDrop),
                Verdict::PolicyDrop => return Err(DropReason::PolicyDrop),
                Verdict::Accept => {}
            }
        } else if manip == Manip::Src && p.src_nat_undecided {
            match self.run6(cx, Table::Nat, hook, p, frame) {
                Verdict::Drop | Verdict::Reject(_) => return Err(DropReason::FilterDrop),
                Verdict::PolicyDrop => return Err(DropReason::PolicyDrop),
                Verdict::Accept | Verdict::Nat(_) => {}
            }
        }
        if let Some(nat) = p.conn.nat() {
            let before = if O::ON {
                Some(meta_of(&p.info).tuple)
            } else {
                None
            };
            let changed = if p.conn.related() {
                nat.translate_related(frame, &mut p.info, manip)
            } else {
                nat.translate(frame, &mut p.info, manip)
            };
            if changed {
                refresh_view(&mut p.view, &p.info);
            }
            if let Some(before) = before {
                cx.obs.nat(hook, before, meta_of(&p.info).tuple);
            }
        }
        Ok(())
    }

    /// A NAT rule's decision for a new IPv6 connection (NAT66).
    fn bind6(
        &mut self,
        now: u64,
        p: &mut Pkt6,
        action: NatAction<Ipv6Addr>,
    ) -> Result<(), DropReason> {
        let Conn::New(pending) = &mut p.conn else {
            return Ok(());
        };
        let (in_iface, out_iface) = (p.view.in_iface, p.view.out_iface);
        let pick = |r: Option<AddrRange<Ipv6Addr>>, default: Ipv6Addr| {
            r.map_or(default, |r| {
                let (lo, hi) = (u128::from(r.lo), u128::from(r.hi).max(u128::from(r.lo)));
                let span = (hi - lo).saturating_add(1);
                let key = u128::from(pending.orig.src) ^ u128::from(pending.orig.dst);
                let key = mix((key ^ (key >> 64)) as u64);
                Ipv6Addr::from(lo + u128::from(key) % span)
            })
        };
        let (manip, addr, ports, random_fully) = match action {
            NatAction::Masquerade(n) => {
                let out = out_iface.ok_or(DropReason::NoRoute)?;
                let addr = self
                    .gw
                    .source6(out, pending.orig.dst)
                    .ok_or(DropReason::NoRoute)?;
                (Manip::Src, addr, n.ports, n.random_fully)
            }
            NatAction::Snat(r) => (Manip::Src, pick(r.addrs, pending.orig.src), r.ports, false),
            NatAction::Dnat(r) => (Manip::Dst, pick(r.addrs, pending.orig.dst), r.ports, false),
            NatAction::Redirect(n) => {
                // To the arriving interface's address; the host's own
                // packets to ::1.
                let addr = in_iface
                    .and_then(|i| self.gw.source6(i, pending.orig.src))
                    .unwrap_or(Ipv6Addr::LOCALHOST);
                (Manip::Dst, addr, n.ports, false)
            }
        };
        let b = Binding {
            manip,
            // Not read by `bind_to`: the address is chosen.
            addrs: AddrRange {
                lo: std::net::Ipv4Addr::UNSPECIFIED,
                hi: std::net::Ipv4Addr::UNSPECIFIED,
            },
            ports,
            random_fully,
        };
        let Some(ct) = &self.gw.conntrack6 else {
            return Ok(());
        };
        let bound = nat::bind_to(ct, pending, addr, &b, &mut self.ports, now);
        if bound == Err(DropReason::NatNoFreePort) {
            let iface = match manip {
                Manip::Src => out_iface,
                Manip::Dst => in_iface,
            };
            if let Some(i) = iface {
                self.gw.count_nat_no_free_port(i);
            }
        }
        bound
    }

    /// Conntrack confirm for an IPv6 connection.
    fn confirm6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        p: &mut Pkt6,
    ) -> Result<(), DropReason> {
        let (Conn::New(pending), Some(ct)) = (&p.conn, &self.gw.conntrack6) else {
            return Ok(());
        };
        match ct.confirm_counted(cx.now, pending, &mut cx.stats.ct) {
            Ok(_) => Ok(()),
            Err(ConfirmError::TableFull) => {
                if let Some(i) = p.view.in_iface.or(p.view.out_iface) {
                    self.gw.count_ct_table_full(i);
                }
                Err(DropReason::CtTableFull)
            }
            Err(_) => Err(DropReason::CtInsertFailed),
        }
    }

    /// The connection an answer to `p` is attached to (`nf_ct_attach`).
    fn attach6(p: &Pkt6, icmp_error: bool) -> Option<Attached<Ipv6Addr>> {
        Some(Attached {
            nat: p.conn.nat()?.reversed(),
            icmp_error,
            src_nat_undecided: !icmp_error && matches!(p.conn, Conn::New(_)),
        })
    }

    /// An ICMPv6 error about `p` (`icmp6_send`): from its destination when
    /// that is ours, else from our address towards its source; rate
    /// limited as Linux limits them.
    fn icmp6_error<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt6,
        err: Icmpv6Error,
    ) {
        let back = self.gw.routes6.lookup(p.info.src);
        let local = self.gw.local6(p.info.dst).is_some()
            || p.view
                .in_iface
                .is_some_and(|i| self.gw.is_local6_on(i, p.info.dst));
        let src = if local {
            Some(p.info.dst)
        } else {
            back.and_then(|h| self.gw.source6(h.iface, p.info.src))
        };
        let Some(src) = src else {
            return;
        };
        let Some(n) = w6::build_icmpv6_error(&mut self.scratch, frame, &p.info, err, src) else {
            return;
        };
        if self
            .gw
            .icmp_limit
            .allow6(cx.now, err.ty, p.info.src)
            .is_err()
        {
            return;
        }
        let conn = Self::attach6(p, true);
        let via = p
            .view
            .in_iface
            .filter(|_| p.info.src.is_unicast_link_local());
        self.send_generated6(cx, n, conn, via);
    }

    /// REJECT for IPv6: the ICMPv6 error or TCP reset Linux sends.
    fn reject6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt6,
        w: RejectWith,
    ) {
        match w.icmp_code() {
            None => {
                if p.info.proto == IPPROTO_TCP {
                    if let Some(n) = w6::build_tcp_rst6(&mut self.scratch, frame, &p.info) {
                        let conn = Self::attach6(p, false);
                        self.send_generated6(cx, n, conn, None);
                    }
                }
            }
            Some(code) => self.icmp6_error(cx, frame, p, Icmpv6Error::unreachable(code)),
        }
    }

    /// Runs a generated IPv6 frame (built in the scratch buffer) through
    /// OUTPUT and emits it.
    fn send_generated6<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        len: usize,
        attached: Option<Attached<Ipv6Addr>>,
        via: Option<u8>,
    ) {
        let mut buf = std::mem::take(&mut self.scratch);
        if let Some(frame) = buf.get_mut(..len) {
            let action = self.output6(cx, frame, attached, via);
            cx.obs.generated_end(action);
            match action {
                Action::Forward { iface, len } => {
                    if let Some(f) = frame.get(..len) {
                        cx.emit.emit(iface, f);
                        cx.stats.emitted += 1;
                    }
                }
                Action::Consumed => {
                    // Held for neighbour discovery: the solicitation goes
                    // out now that the scratch buffer is free.
                    if let Ok(info) = w6::parse_ipv6(frame) {
                        if let Some(hop) = self.gw.routes6.lookup(info.dst) {
                            self.scratch = buf;
                            self.neighbour_solicit(cx, hop.iface, hop.addr);
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
        self.scratch = buf;
    }
}
