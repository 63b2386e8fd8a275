//! The packets the gateway generates and answers itself: ARP (answers to
//! requests for its addresses, requests for next hops), ICMP errors
//! (`icmp_send`, rate-limited as Linux limits them) and REJECT's answers.
//! A generated packet takes OUTPUT and POSTROUTING like any the gateway
//! sends, tied to the connection of the packet it answers.

use std::net::Ipv4Addr;

use crate::action::Action;
use crate::drop::DropReason;
use crate::flow::IPPROTO_TCP;
use crate::neigh::BROADCAST;
use crate::rule::RejectWith;
use crate::stats::WorkerStats;
use crate::wire::{self, IcmpError};

use super::observe::Observer;
use super::packet::{is_group, Attached, Conn, Pkt};
use super::{Cx, Emit, Hooks};

impl Hooks {
    /// ARP: answer requests for our address on that interface, learn the
    /// sender of anything addressed to us.
    pub(super) fn arp<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Action {
        let arp = match wire::parse_arp(frame) {
            Ok(a) => a,
            Err(r) => return cx.drop(r),
        };
        let Some(iface) = self.gw.ifaces.get(usize::from(in_iface)).cloned() else {
            return cx.drop(DropReason::NotForUs);
        };
        // `arp_rcv` ignores frames to another host's MAC (PACKET_OTHERHOST).
        if !is_group(frame) && frame.get(..6) != Some(&iface.mac[..]) {
            return cx.drop(DropReason::NotForUs);
        }
        // For the interface's own address, or one its host path device
        // holds (keepalived's virtual addresses).
        let our_addr = arp.target_ip;
        let ours = self.gw.addr_prefix(in_iface).map(|(a, _)| a) == Some(our_addr)
            || self.host_addrs.holds(in_iface, our_addr);
        if !ours || our_addr == Ipv4Addr::UNSPECIFIED {
            return cx.drop(DropReason::NotForUs);
        }
        if arp.sender_ip != Ipv4Addr::UNSPECIFIED {
            self.gw.neigh.learn(in_iface, arp.sender_ip, arp.sender_mac);
        }
        if arp.op != 1 {
            cx.stats.consumed += 1;
            return Action::Consumed;
        }
        match wire::build_arp(
            frame,
            2,
            iface.mac,
            our_addr,
            arp.sender_mac,
            arp.sender_mac,
            arp.sender_ip,
        ) {
            Some(n) => {
                cx.stats.forwarded += 1;
                Action::Forward {
                    iface: in_iface,
                    len: n,
                }
            }
            None => cx.drop(DropReason::ArpMalformed),
        }
    }

    /// Asks for `hop`'s MAC on `iface` (broadcast ARP request). Built in
    /// the scratch buffer: nothing is sent while a generated packet holds
    /// it (see [`Hooks::send_generated`]).
    pub(super) fn arp_request(
        &mut self,
        stats: &mut WorkerStats,
        emit: &mut impl Emit,
        iface: u8,
        hop: Ipv4Addr,
    ) {
        let Some(f) = self.gw.ifaces.get(usize::from(iface)) else {
            return;
        };
        // `arp_solicit`: from the interface's address, 0.0.0.0 without one.
        let (mac, addr) = (f.mac, self.gw.addr(iface).unwrap_or(Ipv4Addr::UNSPECIFIED));
        if let Some(n) = wire::build_arp(&mut self.scratch, 1, mac, addr, BROADCAST, [0; 6], hop) {
            emit.emit(iface, &self.scratch[..n]);
            stats.emitted += 1;
        }
    }

    /// Gratuitous ARPs for the host path devices' new addresses, as
    /// keepalived sends them for a new master (`send_gratuitous_arp_immediate`:
    /// a broadcast ARP request from and for the address, target MAC
    /// ff:ff:ff:ff:ff:ff), a burst of [`crate::host_addr::GARP_REPEAT`] per
    /// address when due. keepalived cannot send them itself: a TUN device
    /// has no link layer.
    pub(super) fn gratuitous_arps(
        &mut self,
        now: u64,
        stats: &mut WorkerStats,
        emit: &mut impl Emit,
    ) {
        let mut due = [(0u8, Ipv4Addr::UNSPECIFIED); 4];
        let n = self.gw.garps_due(now, &mut due);
        for &(iface, addr) in &due[..n] {
            let Some(mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
                continue;
            };
            if let Some(len) =
                wire::build_arp(&mut self.scratch, 1, mac, addr, BROADCAST, BROADCAST, addr)
            {
                for _ in 0..crate::host_addr::GARP_REPEAT {
                    emit.emit(iface, &self.scratch[..len]);
                    stats.emitted += 1;
                }
            }
        }
    }

    /// Runs a generated frame (built in the scratch buffer) through OUTPUT
    /// and emits it.
    fn send_generated<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        len: usize,
        attached: Option<Attached>,
    ) {
        // The scratch buffer is taken while the frame runs: an ARP request
        // cannot be built meanwhile (`arp_request` sends nothing), and is
        // sent after `output` (below) if the frame was held for one.
        let mut buf = std::mem::take(&mut self.scratch);
        if let Some(frame) = buf.get_mut(..len) {
            let action = self.output(cx, frame, attached);
            cx.obs.generated_end(action);
            match action {
                Action::Forward { iface, len } => {
                    if let Some(f) = frame.get(..len) {
                        cx.emit.emit(iface, f);
                        cx.stats.emitted += 1;
                    }
                }
                Action::Consumed => {
                    // Held for ARP inside output: the hold queue took a copy; the ARP
                    // request goes out now.
                    if let Ok(info) = wire::parse_ipv4(frame) {
                        if let Some(hop) = self.gw.routes.lookup(info.dst) {
                            self.scratch = buf;
                            self.arp_request(cx.stats, &mut *cx.emit, hop.iface, hop.addr);
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
        self.scratch = buf;
    }

    /// The connection an answer to `p` is attached to: the reply direction
    /// of p's connection (pending ones included, as nf_ct_attach does).
    fn attach(p: &Pkt, icmp_error: bool) -> Option<Attached> {
        Some(Attached {
            nat: p.conn.nat()?.reversed(),
            icmp_error,
            src_nat_undecided: !icmp_error && matches!(p.conn, Conn::New(_)),
        })
    }

    /// An ICMP error about `p` (its current bytes in `frame`), sent from our
    /// address on the interface it came in on.
    pub(super) fn icmp_error<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt,
        err: IcmpError,
        in_iface: u8,
    ) {
        let Some(src) = self.gw.addr(in_iface) else {
            return;
        };
        self.icmp_error_from(cx, frame, p, err, src);
    }

    /// An ICMP error about `p` from `src`, if Linux would send one and the
    /// rate limits allow.
    fn icmp_error_from<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt,
        err: IcmpError,
        src: Ipv4Addr,
    ) {
        if let Some(n) = wire::build_icmp_error(&mut self.scratch, frame, &p.info, err, src) {
            // Linux limits after the checks the builder made (no error about
            // an error, a fragment, a broadcast), towards the sender.
            let limit = &self.gw.icmp_limit;
            if limit.allow(cx.now, err.ty, err.code, p.info.src).is_err() {
                return;
            }
            let conn = Self::attach(p, true);
            self.send_generated(cx, n, conn);
        }
    }

    /// REJECT: the ICMP error or TCP reset Linux sends.
    pub(super) fn reject<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &[u8],
        p: &Pkt,
        w: RejectWith,
        local: bool,
    ) {
        match w.icmp_code() {
            None => {
                if p.info.proto == IPPROTO_TCP {
                    if let Some(n) = wire::build_tcp_rst(&mut self.scratch, frame, &p.info) {
                        let conn = Self::attach(p, false);
                        self.send_generated(cx, n, conn);
                    }
                }
            }
            Some(code) => {
                // To a local address the error comes from that address; else from
                // ours towards the sender.
                let src = if local {
                    Some(p.info.dst)
                } else {
                    self.gw
                        .routes
                        .lookup(p.info.src)
                        .and_then(|h| self.gw.addr(h.iface))
                };
                if let Some(src) = src {
                    self.icmp_error_from(cx, frame, p, IcmpError::unreachable(code), src);
                }
            }
        }
    }
}
