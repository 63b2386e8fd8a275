//! Fragments through the hooks: a fragment goes to the reassembly table
//! before anything else sees it (Linux's `nf_defrag_ipv4`, ahead of raw
//! PREROUTING), and a completed datagram, copied into the worker's
//! reassembly buffer, takes the hooks as one packet: rules, conntrack and
//! NAT see it whole, and rule counters count it once. It leaves in
//! fragments again (`transmit_fragments`), as do datagrams over the egress
//! MTU without DF (`ip_fragment`). Fragments never take the fast path.

use std::net::Ipv4Addr;

use crate::action::Action;
use crate::drop::DropReason;
use crate::frag::{self, Fragment, Insert};
use crate::trace::WorkerTrace;
use crate::wire;

use super::observe::{Observer, Untraced};
use super::packet::Pkt;
use super::{Cx, Emit, Hooks, ETH_HLEN, FRAME_SIZE};

/// Whether the IPv4 packet in `frame` is a fragment (MF or an offset).
#[inline]
pub(super) fn is_fragment(frame: &[u8]) -> bool {
    frame
        .get(ETH_HLEN + 6..ETH_HLEN + 8)
        .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & 0x3fff != 0)
}

impl Hooks {
    /// A frame whose IPv4 packet is a fragment, or does not parse
    /// (`parsed`: why): the fragment is reassembled (a first fragment too
    /// short for its transport header too: its IPv4 header was checked),
    /// anything else dropped. Out of line: the whole packets' path stays
    /// as it was.
    #[cold]
    #[inline(never)]
    pub(super) fn not_whole<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
        parsed: Option<DropReason>,
    ) -> Action {
        match parsed {
            None => self.reassemble(cx, trace, in_iface, frame),
            Some(r) if r.is_transport() && is_fragment(frame) => {
                self.reassemble(cx, trace, in_iface, frame)
            }
            Some(r) => cx.drop(r),
        }
    }

    /// A fragment that arrived on `in_iface` (its IPv4 header checked):
    /// queued, dropped (counted by the table), or the last one its
    /// datagram needed, which then runs through PREROUTING and on.
    fn reassemble<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        frame: &mut [u8],
    ) -> Action {
        self.collect(cx, frame, |h, cx, dgram| {
            h.run_reassembled(cx, trace, in_iface, dgram)
        })
    }

    /// Queues `frame`'s fragment; when it completes its datagram, runs
    /// `then` on the datagram (the fragment's Ethernet header, then the
    /// reassembled datagram, in the worker's reassembly buffer).
    fn collect<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        frame: &[u8],
        then: impl FnOnce(&mut Self, &mut Cx<'_, E, Untraced>, &mut [u8]) -> Action,
    ) -> Action {
        let Some(f) = frame.get(ETH_HLEN..).and_then(Fragment::parse) else {
            return cx.drop(DropReason::Ipv4Truncated);
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
            Insert::Queued => Action::Consumed,
            Insert::Dropped(reason) => Action::Drop(reason),
            Insert::Complete { len, max_size } => {
                buf[..ETH_HLEN].copy_from_slice(&frame[..ETH_HLEN]);
                self.defrag.max_size = max_size;
                then(self, cx, &mut buf[..ETH_HLEN + len])
            }
        };
        self.defrag.buf = buf;
        a
    }

    /// A fragment the gateway host sent (read from the host path, its
    /// Ethernet header written): Linux's stack fragments after
    /// POSTROUTING, so OUTPUT sees whole datagrams; the host's fragments
    /// (cut to its device's MTU) are reassembled first, then take OUTPUT as
    /// one packet and leave in fragments again.
    #[cold]
    #[inline(never)]
    pub(super) fn reassemble_from_host<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        frame: &mut [u8],
    ) -> Action {
        if let Err(r) = wire::parse_ipv4(frame) {
            if !r.is_transport() {
                return cx.drop(r);
            }
        }
        self.collect(cx, frame, |h, cx, dgram| {
            h.defrag.active = true;
            h.defrag.from_host = true;
            let a = h.output(cx, dgram, None);
            h.defrag.active = false;
            h.defrag.from_host = false;
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
        })
    }

    /// A reassembled datagram (Ethernet header, then the datagram) through
    /// PREROUTING and on, counted once.
    fn run_reassembled<E: Emit>(
        &mut self,
        cx: &mut Cx<'_, E, Untraced>,
        trace: &mut WorkerTrace,
        in_iface: u8,
        dgram: &mut [u8],
    ) -> Action {
        let info = match wire::parse_ipv4(dgram) {
            Ok(i) => i,
            Err(r) => return cx.drop(r),
        };
        self.defrag.active = true;
        let a = if trace.active() {
            self.prerouting_traced(cx, trace, in_iface, dgram, info)
        } else {
            self.prerouting(cx, in_iface, dgram, info)
        };
        self.defrag.active = false;
        cx.fast.end_recording();
        match a {
            // An answer built in place (a ping's echo reply) that fits one
            // frame.
            Action::Forward { iface, len } => match dgram.get(..len) {
                Some(f) if len <= FRAME_SIZE => {
                    cx.emit.emit(iface, f);
                    cx.stats.forwarded += 1;
                    Action::Emitted { iface, frames: 1 }
                }
                _ => cx.drop(DropReason::FragNeeded),
            },
            Action::Host { iface, len } => {
                cx.stats.host += 1;
                Action::HostReassembled { iface, len }
            }
            Action::Emitted { .. } => {
                cx.stats.forwarded += 1;
                a
            }
            Action::Consumed => {
                cx.stats.consumed += 1;
                a
            }
            Action::HostReassembled { .. } | Action::Drop(_) => a,
        }
    }

    /// Sends the datagram in `frame` out of `iface` towards `hop` in
    /// fragments of at most `mtu` bytes (`ip_do_fragment`): a reassembled
    /// one in the fragments it arrived in if `geometry` and each fits,
    /// else cut to the MTU. Each fragment goes to the emit sink, or is
    /// held while ARP resolves `hop`.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    pub(super) fn transmit_fragments<E: Emit, O: Observer>(
        &mut self,
        cx: &mut Cx<'_, E, O>,
        frame: &mut [u8],
        p: &Pkt,
        iface: u8,
        hop: Ipv4Addr,
        mtu: u16,
        geometry: bool,
    ) -> Action {
        let Some(our_mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
            return cx.drop(DropReason::NoRoute);
        };
        let known = self.link_dst(iface, hop);
        if let Some(mac) = known {
            wire::set_macs(frame, mac, our_mac);
        }
        let reassembled = self.defrag.active;
        let (pieces, max_size) = if reassembled {
            let pieces = if geometry {
                &self.defrag.pieces[..]
            } else {
                &[]
            };
            (pieces, self.defrag.max_size)
        } else {
            (&[][..], 0)
        };
        let keep_df = reassembled && p.info.df;
        let mut out = [0u8; FRAME_SIZE];
        let (hold, emit, now) = (&mut self.hold, &mut *cx.emit, cx.now);
        let (mut first_held, mut lost) = (false, 0u64);
        let n = frag::fragment(
            frame,
            p.info.ihl,
            usize::from(p.info.total_len),
            pieces,
            max_size,
            keep_df,
            mtu,
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
            if first_held {
                self.arp_request(cx.stats, &mut *cx.emit, iface, hop);
            }
        }
        Action::Emitted {
            iface,
            frames: n as u32,
        }
    }
}
