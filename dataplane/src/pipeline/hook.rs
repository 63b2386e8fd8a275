//! The hooks: PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING, with the
//! tables each evaluates, conntrack, NAT and routing between them, in
//! Linux's order (`ip_rcv` -> `ip_forward`/`ip_local_deliver`,
//! `__ip_local_out` -> `ip_output`).

use std::net::Ipv4Addr;

use crate::action::Action;
use crate::classify::{NatAction, Verdict};
use crate::conntrack::{ConfirmError, CtState, Track};
use crate::drop::DropReason;
use crate::fastpath::cache::{Cached, FlowCache};
use crate::nat::{self, Binding, Manip};
use crate::rule::{AddrRange, Hook, Table};
use crate::wire::fast::FlowEdit;
use crate::wire::{self, IcmpError, Ipv4Info, L4};

use super::observe::Observer;
use super::packet::{
    is_group, is_link_local_multicast, l4_error, meta_of, refresh_view, Attached, Conn, Pkt,
    IPV4_MIN_HDR,
};
use super::{Cx, Emit, Hooks, ETH_HLEN};

impl Hooks {
    /// PREROUTING for an arriving packet, then routing: INPUT or FORWARD.
    pub(super) fn prerouting<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        in_iface: u8,
        frame: &mut [u8],
        info: Ipv4Info,
    ) -> Action {
        if self.local_iface(info.src).is_some()
            || info.src.is_multicast()
            || info.src.is_loopback()
            || info.src == Ipv4Addr::BROADCAST
        {
            return cx.drop(DropReason::MartianSource);
        }
        let mut p = Pkt::new(info, Some(in_iface), None);
        let r = self
            .accept_or_drop(cx, frame, &mut p, Table::Raw, Hook::Prerouting)
            .and_then(|()| {
                self.track(cx, &mut p, frame, true);
                self.accept_or_drop(cx, frame, &mut p, Table::Mangle, Hook::Prerouting)
            })
            .and_then(|()| self.nat_hook(cx, frame, &mut p, Hook::Prerouting, Manip::Dst));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        // Linux routes the packet here (`ip_route_input_noref`), then checks
        // its options (`ip_rcv_options`).
        let dst = p.info.dst;
        if dst.is_multicast() {
            // Link-local groups (224.0.0.0/24: VRRP, OSPF) the host joined
            // on the interface's device go to it (`ip_check_mc_rcu`); they
            // are never forwarded. No multicast routing: other groups are
            // refused, as `ip_route_input_rcu` refuses groups not joined
            // without `mc_forwarding`.
            if is_link_local_multicast(dst) && self.gw.host_joined(in_iface, dst) {
                if p.info.ihl > IPV4_MIN_HDR {
                    // IGMP's Router Alert.
                    if let Err(r) = self.options(cx, frame, &p, in_iface) {
                        return cx.drop(r);
                    }
                }
                return self.input(cx, frame, &mut p);
            }
            return cx.drop(DropReason::MulticastDst);
        }
        if dst.octets()[0] == 0 {
            return cx.drop(DropReason::MartianDst);
        }
        if p.info.ihl > IPV4_MIN_HDR {
            if let Err(r) = self.options(cx, frame, &p, in_iface) {
                return cx.drop(r);
            }
        }
        if self.local_iface(dst).is_some()
            || self.gw.is_broadcast(dst)
            || (!self.host_addrs.is_empty() && self.host_addrs.is_broadcast(dst, None))
        {
            return self.input(cx, frame, &mut p);
        }
        self.forward(cx, in_iface, frame, &mut p)
    }

    /// `ip_rcv_options`: options that do not parse get a parameter problem
    /// pointing at the byte at fault; a source route is refused (Linux's
    /// default `accept_source_route=0`).
    fn options<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt,
        in_iface: u8,
    ) -> Result<(), DropReason> {
        let header = frame
            .get(p.info.l3..p.info.l3 + p.info.ihl)
            .unwrap_or_default();
        match wire::ipv4_options(header) {
            Ok(false) => Ok(()),
            Ok(true) => Err(DropReason::Ipv4SourceRoute),
            Err(pointer) => {
                let err = IcmpError::parameter_problem(pointer);
                self.icmp_error(cx, frame, p, err, in_iface);
                Err(DropReason::Ipv4BadOptions)
            }
        }
    }

    /// FORWARD (`ip_forward`): TTL and MTU, mangle and filter FORWARD,
    /// POSTROUTING, then out to the next hop. Records the decision for the
    /// fast path when it records.
    fn forward<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        in_iface: u8,
        frame: &mut [u8],
        p: &mut Pkt,
    ) -> Action {
        // `ip_forward`: only frames sent to our MAC (PACKET_HOST).
        if is_group(frame) {
            return cx.drop(DropReason::LinkBroadcast);
        }
        // Policy routing sees the mark PREROUTING left (multi-WAN by mark).
        let Some(hop) = self
            .gw
            .routes
            .lookup_from(p.info.dst, p.info.src, p.view.mark)
        else {
            self.icmp_error(cx, frame, p, IcmpError::unreachable(0), in_iface);
            return cx.drop(DropReason::NoRoute);
        };
        // A TTL target in mangle PREROUTING acts before the check.
        self.apply_edits(frame, p);
        if p.info.ttl <= 1 {
            self.icmp_error(cx, frame, p, IcmpError::ttl_exceeded(), in_iface);
            return cx.drop(DropReason::TtlExceeded);
        }
        let mtu = self.gw.mtu(hop.iface);
        // `ip_exceeds_mtu`: only DF datagrams are refused here (for a
        // reassembled one, only if a fragment was larger than the MTU);
        // others are fragmented on the way out.
        let reassembled = self.defrag.active;
        if p.info.total_len > mtu && p.info.df && (!reassembled || self.defrag.max_size > mtu) {
            self.icmp_error(cx, frame, p, IcmpError::frag_needed(mtu), in_iface);
            cx.stats.frag_fails += 1;
            return cx.drop(DropReason::FragNeeded);
        }
        wire::dec_ttl(frame, &p.info);
        p.info.ttl -= 1;
        p.view.ttl = p.info.ttl;
        p.view.out_iface = Some(hop.iface);
        let r = self
            .accept_or_drop(cx, frame, p, Table::Mangle, Hook::Forward)
            .and_then(|()| self.filter(cx, frame, p, Hook::Forward, false))
            .and_then(|()| self.postrouting(cx, frame, p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        if reassembled || p.info.total_len > mtu {
            // A reassembled datagram leaves in fragments again, as one
            // over the MTU does (`ip_finish_output` -> `ip_fragment`).
            return self.transmit_fragments(cx, frame, p, hop.iface, hop.addr, mtu, true);
        }
        let a = self.transmit(cx, frame, p, hop.iface, hop.addr);
        if cx.fast.rec.on {
            if let Action::Forward { .. } = a {
                self.note_flow(cx, p, hop.iface, hop.addr, mtu);
            }
        }
        a
    }

    /// Notes what the full path decided for a forwarded packet, for the
    /// fast path, if it may be reused (see [`crate::fastpath`]).
    fn note_flow<E: Emit, O: Observer>(
        &self,
        cx: &mut Cx<'_, E, O>,
        p: &Pkt,
        out: u8,
        hop: Ipv4Addr,
        mtu: u16,
    ) {
        let rec = &mut cx.fast.rec;
        if rec.key.is_none() {
            return;
        }
        let Conn::Existing {
            nat,
            related: false,
            entry: Some(entry),
        } = p.conn
        else {
            return;
        };
        if p.ct_state != CtState::Established {
            return;
        }
        let (Some(&dst_mac), Some(src_mac)) = (
            self.neigh.get(&(out, hop)),
            self.gw.ifaces.get(usize::from(out)).map(|f| f.mac),
        ) else {
            return;
        };
        let slots = rec.slots();
        let mut counters = [0; FlowCache::MAX_COUNTERS];
        counters[..slots.len()].copy_from_slice(slots);
        let ncounters = slots.len() as u8;
        rec.note(Cached {
            entry,
            dir: nat.dir,
            edit: FlowEdit {
                dst: nat.target(Manip::Dst),
                src: nat.target(Manip::Src),
                dscp: p.view.tos_changed.then_some(p.view.tos >> 2),
            },
            out_iface: out,
            mtu,
            dst_mac,
            src_mac,
            counters,
            ncounters,
            credit_round: 0,
            credit_idx: 0,
        });
    }

    /// POSTROUTING: mangle and nat POSTROUTING, conntrack confirm, the DSCP
    /// a rule set.
    fn postrouting<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt,
    ) -> Result<(), DropReason> {
        self.accept_or_drop(cx, frame, p, Table::Mangle, Hook::Postrouting)?;
        self.nat_hook(cx, frame, p, Hook::Postrouting, Manip::Src)?;
        self.confirm(cx, p)?;
        self.apply_edits(frame, p);
        Ok(())
    }

    /// TCPMSS (`tcpmss_mangle_packet`): the MSS lowered to the smallest
    /// `--set-mss` and, with `--clamp-mss-to-pmtu`, to the smaller MTU of
    /// the routes out and back to the sender less 40.
    fn apply_mss(&self, frame: &mut [u8], p: &mut Pkt) {
        let mut mss = p.view.mss_set.unwrap_or(u16::MAX);
        if p.view.mss_clamp {
            let back = self
                .gw
                .routes
                .lookup(p.info.src)
                .map(|h| self.gw.mtu(h.iface));
            let out = p.view.out_iface.map(|i| self.gw.mtu(i));
            if let Some(mtu) = out.into_iter().chain(back).min() {
                mss = mss.min(mtu.saturating_sub(40));
            }
        }
        (p.view.mss_set, p.view.mss_clamp) = (None, false);
        if wire::clamp_mss(frame, &p.info, mss) == wire::MssEdit::Inserted {
            p.info.total_len += 4;
            p.view.len = p.info.total_len;
            if let L4::Tcp(t) = &mut p.info.l4info {
                t.header_len += 4;
            }
        }
    }

    /// Writes what DSCP, TOS, TTL and TCPMSS targets changed into the
    /// packet.
    #[inline]
    fn apply_edits(&self, frame: &mut [u8], p: &mut Pkt) {
        if p.view.mss_set.is_some() || p.view.mss_clamp {
            self.apply_mss(frame, p);
        }
        if p.view.tos != p.info.tos {
            wire::set_tos(frame, &p.info, p.view.tos);
            p.info.tos = p.view.tos;
        }
        if p.view.ttl != p.info.ttl {
            wire::set_ttl(frame, &p.info, p.view.ttl);
            p.info.ttl = p.view.ttl;
        }
    }

    /// Sets the MACs and sends, or holds the frame while ARP resolves `hop`.
    pub(super) fn transmit<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &Pkt,
        iface: u8,
        hop: Ipv4Addr,
    ) -> Action {
        let Some(our_mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
            return cx.drop(DropReason::NoRoute);
        };
        let len = usize::from(p.info.total_len) + p.info.l3;
        let len = len.min(frame.len());
        match self.link_dst(iface, hop) {
            Some(mac) => {
                wire::set_macs(frame, mac, our_mac);
                Action::Forward { iface, len }
            }
            None => match self.hold.hold(cx.now, iface, hop, &frame[..len]) {
                Ok(first) => {
                    cx.obs.held(iface, hop);
                    if first {
                        self.arp_request(cx.stats, &mut *cx.emit, iface, hop);
                    }
                    Action::Consumed
                }
                Err(r) => cx.drop(r),
            },
        }
    }

    /// INPUT (`ip_local_deliver`): mangle and filter INPUT, nat INPUT,
    /// confirm; then the gateway answers a ping itself, and everything
    /// else goes to the host.
    fn input<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt,
    ) -> Action {
        let r = self
            .accept_or_drop(cx, frame, p, Table::Mangle, Hook::Input)
            .and_then(|()| self.filter(cx, frame, p, Hook::Input, true))
            .and_then(|()| self.nat_hook(cx, frame, p, Hook::Input, Manip::Src))
            .and_then(|()| self.confirm(cx, p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        // The gateway answers ping to its own addresses itself.
        if let L4::Icmp(i) = p.info.l4info {
            if i.ty == 8 && i.code == 0 && self.local_iface(p.info.dst).is_some() {
                let our = p.info.dst;
                wire::echo_reply_in_place(frame, &p.info, our);
                return self.output(cx, frame, None);
            }
        }
        self.apply_edits(frame, p);
        let len = (p.info.l3 + usize::from(p.info.total_len)).min(frame.len());
        match p.view.in_iface {
            Some(iface) if p.info.l3 == ETH_HLEN => Action::Host { iface, len },
            _ => cx.drop(DropReason::NotForUs),
        }
    }

    /// The OUTPUT path for a packet the gateway itself sends, in `frame`
    /// (an Ethernet frame whose MACs the path sets). `attached` ties a
    /// generated answer (reset, ICMP error) to the connection of the packet
    /// it answers, as the kernel's nf_ct_attach does.
    pub(super) fn output<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        attached: Option<Attached>,
    ) -> Action {
        self.output_via(cx, frame, attached, None)
    }

    /// [`Hooks::output`] for a packet the host wrote into interface
    /// `dev`'s host path device, if `dev`: the host's kernel chose that
    /// interface, which a multicast packet (VRRP, IGMP) leaves by, with
    /// no routing lookup (`IP_MULTICAST_IF`, keepalived's bound socket).
    pub(super) fn output_via<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        attached: Option<Attached>,
        dev: Option<u8>,
    ) -> Action {
        let info = match wire::parse_ipv4(frame) {
            Ok(i) => i,
            Err(r) => return cx.drop(r),
        };
        cx.obs.generated(&info);
        let Some(hop) = self.route_local(info.dst, info.src, 0, dev) else {
            return cx.drop(DropReason::NoRoute);
        };
        let mut p = Pkt::new(info, None, Some(hop.iface));
        let r = self
            .accept_or_drop(cx, frame, &mut p, Table::Raw, Hook::Output)
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
                    _ => self.track(cx, &mut p, frame, false),
                }
                self.accept_or_drop(cx, frame, &mut p, Table::Mangle, Hook::Output)
            });
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        if let Err(reason) = self.nat_hook(cx, frame, &mut p, Hook::Output, Manip::Dst) {
            return cx.drop(reason);
        }
        // DNAT (or a mark) in OUTPUT re-routes (`ip_route_me_harder`).
        let Some(hop) = self.route_local(p.info.dst, p.info.src, p.view.mark, dev) else {
            return cx.drop(DropReason::NoRoute);
        };
        p.view.out_iface = Some(hop.iface);
        let r = match self.run(cx, Table::Filter, Hook::Output, &mut p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            // A REJECT of our own packet is not answered again.
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
        }
        .and_then(|()| self.postrouting(cx, frame, &mut p));
        if let Err(reason) = r {
            return cx.drop(reason);
        }
        let mtu = self.gw.mtu(hop.iface);
        if p.info.total_len > mtu || self.defrag.active {
            // A datagram the host sent in fragments (leaving in them
            // again), or an answer to a reassembled one (a large ping's
            // reply).
            if p.info.total_len > mtu && p.info.df && !self.defrag.active {
                cx.stats.frag_fails += 1;
                return cx.drop(DropReason::FragNeeded);
            }
            // The host's own geometry is kept; an answer is cut to the MTU.
            let geometry = self.defrag.from_host;
            return self.transmit_fragments(cx, frame, &p, hop.iface, hop.addr, mtu, geometry);
        }
        self.transmit(cx, frame, &p, hop.iface, hop.addr)
    }

    /// Where a packet the gateway or its host sends goes: a multicast one
    /// out of the host path device's interface `dev` it was written to
    /// (to the group itself, whose MAC is mapped, never resolved), anything
    /// else by the routes (from `mark` on: policy routing).
    #[inline]
    fn route_local(
        &self,
        dst: Ipv4Addr,
        src: Ipv4Addr,
        mark: u32,
        dev: Option<u8>,
    ) -> Option<crate::route::NextHop> {
        if dst.is_multicast() {
            return dev.map(|iface| crate::route::NextHop { iface, addr: dst });
        }
        if mark == 0 {
            self.gw.routes.lookup(dst)
        } else {
            self.gw.routes.lookup_from(dst, src, mark)
        }
    }

    /// The MAC a frame to next hop `hop` on `iface` goes to, if known: a
    /// multicast group's (RFC 1112 6.4, `ip_eth_mc_map`), else the
    /// neighbour's as of this batch or as just learnt.
    #[inline]
    pub(super) fn link_dst(&self, iface: u8, hop: Ipv4Addr) -> Option<crate::neigh::Mac> {
        if hop.is_multicast() {
            return Some(crate::neigh::ipv4_multicast_mac(hop));
        }
        let known = self.neigh.get(&(iface, hop)).copied();
        known.or_else(|| self.gw.neigh.get(iface, hop))
    }

    /// The interface holding `addr`: its own address, or one its host path
    /// device holds (the set of this batch).
    #[inline]
    pub(super) fn local_iface(&self, addr: Ipv4Addr) -> Option<u8> {
        self.gw.own_iface(addr).or_else(|| {
            if self.host_addrs.is_empty() {
                None
            } else {
                self.host_addrs.iface_of(addr)
            }
        })
    }

    /// Evaluates a table at a hook, recording LOG hits.
    fn run<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        table: Table,
        hook: Hook,
        p: &mut Pkt,
        frame: &[u8],
    ) -> Verdict {
        self.eval.nlogs = 0;
        if self.rules.uses_addrtype {
            self.fill_addr_types(&mut p.view);
        }
        if self.rules.uses_ct_tuple {
            let tuple =
                |t: crate::flow::Tuple| (u32::from(t.src), u32::from(t.dst), t.sport, t.dport);
            p.view.ct = p.conn.nat().map(|n| crate::classify::CtView {
                proto: n.orig.proto,
                tuples: [tuple(n.orig), tuple(n.reply)],
                status: n.status,
                reply_dir: n.dir == crate::flow::Dir::Reply,
                expires: 0,
            });
            if self.rules.uses_ct_expire {
                if let (Some(v), Conn::Existing { entry: Some(e), .. }) = (&mut p.view.ct, &p.conn)
                {
                    // `nf_ct_expires(ct) / HZ`.
                    v.expires = self.gw.conntrack.get(*e).map_or(0, |s| {
                        u32::try_from(s.expires.saturating_sub(cx.now) / 1_000_000_000)
                            .unwrap_or(u32::MAX)
                    });
                }
            }
        }
        let v = cx.obs.eval(
            &self.rules,
            (table, hook),
            &mut p.view,
            &mut self.eval,
            cx.now,
            &mut cx.fast.rec,
        );
        for i in 0..self.eval.nlogs {
            self.logs
                .push(self.eval.logs[i], p.view.in_iface, p.view.out_iface, frame);
        }
        if p.view.ctmark_changed {
            p.view.ctmark_changed = false;
            self.write_ctmark(p);
        }
        v
    }

    /// The route types `-m addrtype` looks at (see
    /// [`crate::gateway::Gateway::addr_type`]).
    fn fill_addr_types(&self, v: &mut crate::classify::PacketView) {
        let (src, dst) = (Ipv4Addr::from(v.src), Ipv4Addr::from(v.dst));
        let gw = &self.gw;
        let on = |dev: Option<u8>| match dev {
            Some(d) => (gw.addr_type(src, Some(d)), gw.addr_type(dst, Some(d))),
            None => (
                gw.addr_type(src, Some(u8::MAX)),
                gw.addr_type(dst, Some(u8::MAX)),
            ),
        };
        let (si, di) = on(v.in_iface);
        let (so, dout) = on(v.out_iface);
        v.addr_types = [
            gw.addr_type(src, None),
            gw.addr_type(dst, None),
            si,
            di,
            so,
            dout,
        ];
    }

    /// Writes a mark CONNMARK set into the packet's connection: the entry,
    /// or the pending one (confirmed with it).
    fn write_ctmark(&self, p: &mut Pkt) {
        match &mut p.conn {
            Conn::New(pending) => pending.set_mark(p.view.ctmark),
            Conn::Existing { entry: Some(e), .. } => {
                self.gw.conntrack.set_mark(*e, p.view.ctmark);
            }
            _ => {}
        }
    }

    /// Conntrack for a packet, as nf_conntrack_in.
    /// `verify`: check the transport checksum first (arriving packets, as
    /// Linux's `nf_conntrack_checksum` does at PREROUTING).
    fn track<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        p: &mut Pkt,
        frame: &[u8],
        verify: bool,
    ) {
        if p.view.notrack {
            p.conn = Conn::Untracked;
            p.ct_state = CtState::Untracked;
            cx.obs.untracked();
        } else {
            let meta = meta_of(&p.info);
            let track = if let Some(t) = cx.fast.rec.pre_track.take() {
                // The fast path tracked (and counted) it already.
                t
            } else {
                let t = match l4_error(frame, &p.info, verify) {
                    Some(reason) => self.gw.conntrack.protocol_error(&meta.tuple, reason),
                    None => self.gw.conntrack.track(cx.now, &meta),
                };
                cx.stats.ct.count_track(&t, meta.tuple.proto);
                t
            };
            cx.obs.conntrack(&track, meta.tuple.proto);
            let ctmark = match &track {
                Track::Existing { snap, .. } => snap.mark,
                Track::New(pending) => pending.mark(),
                Track::Invalid { .. } => 0,
            };
            let (conn, state) = match track {
                Track::Existing {
                    entry,
                    dir,
                    state,
                    snap,
                } => (
                    Conn::Existing {
                        nat: nat::ConnNat {
                            orig: snap.orig,
                            reply: snap.reply,
                            status: snap.status,
                            dir,
                        },
                        related: state == CtState::Related,
                        entry: Some(entry),
                    },
                    state,
                ),
                Track::New(pending) => (Conn::New(pending), CtState::New),
                Track::Invalid { .. } => (Conn::Invalid, CtState::Invalid),
            };
            p.view.ctmark = ctmark;
            p.conn = conn;
            p.ct_state = state;
        }
        p.view.ct_bits = p.conn.ct_bits(p.ct_state);
    }

    /// Applies a connection's translation for a hook's manip (telling the
    /// trace what changed).
    #[inline(always)]
    fn translate<E: Emit, O: Observer>(
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt,
        hook: Hook,
        manip: Manip,
    ) {
        let Some(nat) = p.conn.nat() else {
            return;
        };
        let before = if O::ON { Some(p.tuple()) } else { None };
        let changed = if p.conn.related() {
            nat.translate_related(frame, &mut p.info, manip)
        } else {
            nat.translate(frame, &mut p.info, manip)
        };
        if changed {
            refresh_view(&mut p.view, &p.info);
        }
        if let Some(before) = before {
            cx.obs.nat(hook, before, p.tuple());
        }
    }

    /// A NAT rule's decision for a new connection.
    fn bind(
        &mut self,
        now: u64,
        p: &mut Pkt,
        action: NatAction,
        in_iface: Option<u8>,
        out_iface: Option<u8>,
    ) -> Result<(), DropReason> {
        if !matches!(p.conn, Conn::New(_)) {
            return Ok(());
        }
        let iface_addr = |i: Option<u8>| i.and_then(|i| self.gw.addr(i));
        let single = |a: Ipv4Addr| AddrRange { lo: a, hi: a };
        // MASQUERADE: `inet_select_addr` towards the next hop
        // (`nf_nat_masquerade_ipv4`), which only an interface with host
        // addresses needs to look up.
        let (dst, src, mark) = (p.info.dst, p.info.src, p.view.mark);
        let masq_src = |out: u8| {
            self.gw.select_src(out, || {
                self.gw
                    .routes
                    .lookup_from(dst, src, mark)
                    .filter(|h| h.iface == out)
                    .map_or(dst, |h| h.addr)
            })
        };
        let Conn::New(pending) = &mut p.conn else {
            return Ok(());
        };
        let b = match action {
            NatAction::Masquerade(n) => Binding {
                manip: Manip::Src,
                addrs: single(out_iface.and_then(masq_src).ok_or(DropReason::NoRoute)?),
                ports: n.ports,
                random_fully: n.random_fully,
            },
            NatAction::Snat(r) => Binding {
                manip: Manip::Src,
                addrs: r.addrs.unwrap_or(single(pending.orig.src)),
                ports: r.ports,
                random_fully: false,
            },
            NatAction::Dnat(r) => Binding {
                manip: Manip::Dst,
                addrs: r.addrs.unwrap_or(single(pending.orig.dst)),
                ports: r.ports,
                random_fully: false,
            },
            NatAction::Redirect(n) => Binding {
                manip: Manip::Dst,
                // Locally generated packets are redirected to the loopback address.
                addrs: single(iface_addr(in_iface).unwrap_or(Ipv4Addr::LOCALHOST)),
                ports: n.ports,
                random_fully: false,
            },
        };
        let bound = nat::bind(&self.gw.conntrack, pending, &b, &mut self.ports, now);
        if bound == Err(DropReason::NatNoFreePort) {
            let iface = match b.manip {
                Manip::Src => out_iface,
                Manip::Dst => in_iface,
            };
            if let Some(i) = iface {
                self.gw.count_nat_no_free_port(i);
            }
        }
        bound
    }

    /// nat at a hook: for a new connection, the rules decide (once); for
    /// others, the connection's translation applies.
    fn nat_hook<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt,
        hook: Hook,
        manip: Manip,
    ) -> Result<(), DropReason> {
        if let Conn::New(_) = p.conn {
            match self.run(cx, Table::Nat, hook, p, frame) {
                Verdict::Nat(a) => {
                    let (i, o) = (p.view.in_iface, p.view.out_iface);
                    self.bind(cx.now, p, a, i, o)?;
                    p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                }
                Verdict::Drop | Verdict::Reject(_) => return Err(DropReason::FilterDrop),
                Verdict::PolicyDrop => return Err(DropReason::PolicyDrop),
                Verdict::Accept => {}
            }
        } else if manip == Manip::Src && p.src_nat_undecided {
            // See `Attached`: the chain runs, nothing binds.
            match self.run(cx, Table::Nat, hook, p, frame) {
                Verdict::Drop | Verdict::Reject(_) => return Err(DropReason::FilterDrop),
                Verdict::PolicyDrop => return Err(DropReason::PolicyDrop),
                Verdict::Accept | Verdict::Nat(_) => {}
            }
        }
        Self::translate(cx, frame, p, hook, manip);
        Ok(())
    }

    /// The filter verdict, as an action on the frame (REJECT answers first).
    fn filter<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &mut Pkt,
        hook: Hook,
        local: bool,
    ) -> Result<(), DropReason> {
        match self.run(cx, Table::Filter, hook, p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            Verdict::Drop => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Reject(w) => {
                self.reject(cx, frame, p, w, local);
                Err(DropReason::FilterReject)
            }
        }
    }

    /// mangle/filter-style hooks that may only accept or drop.
    fn accept_or_drop<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &mut Pkt,
        table: Table,
        hook: Hook,
    ) -> Result<(), DropReason> {
        match self.run(cx, table, hook, p, frame) {
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
        }
    }

    /// Conntrack confirm (`nf_conntrack_confirm`): a new connection's entry
    /// goes into the table.
    fn confirm<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        p: &mut Pkt,
    ) -> Result<(), DropReason> {
        if let Conn::New(pending) = &p.conn {
            match self
                .gw
                .conntrack
                .confirm_counted(cx.now, pending, &mut cx.stats.ct)
            {
                Ok(_) => {}
                Err(ConfirmError::TableFull) => {
                    if let Some(i) = p.view.in_iface.or(p.view.out_iface) {
                        self.gw.count_ct_table_full(i);
                    }
                    return Err(DropReason::CtTableFull);
                }
                Err(_) => return Err(DropReason::CtInsertFailed),
            }
        }
        Ok(())
    }
}
