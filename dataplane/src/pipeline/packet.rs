//! A packet on its way through the hooks ([`Pkt`]): its parse, what rules
//! see of it, and the connection it belongs to ([`Conn`]); and what the
//! hooks read off an IPv4 packet (the rules' view, conntrack's metadata,
//! the transport errors conntrack judges INVALID).

use crate::classify::PacketView;
use crate::conntrack::{
    status, CtState, EntryRef, IcmpMeta, InvalidReason, PacketMeta, Pending, TcpSeg,
};
use std::net::Ipv4Addr;

use crate::flow::{Addr, Dir, Tuple};
use crate::nat::ConnNat;
use crate::rule::CtStates;
use crate::wire::{self, Ipv4Info, L4};

/// An IPv4 header without options.
pub(super) const IPV4_MIN_HDR: usize = 20;

/// A parsed packet on its way through the hooks.
pub(super) struct Pkt {
    pub info: Ipv4Info,
    pub view: PacketView,
    pub conn: Conn,
    pub ct_state: CtState,
    /// A packet the gateway generated in answer to a new connection's
    /// packet (REJECT's reset) while that connection's source NAT is not
    /// decided: nat POSTROUTING runs for it (see [`Attached`]).
    pub src_nat_undecided: bool,
}

impl Pkt {
    /// A packet not tracked yet, as it arrived on `in_iface` or leaves by
    /// `out_iface`.
    #[inline]
    pub fn new(info: Ipv4Info, in_iface: Option<u8>, out_iface: Option<u8>) -> Pkt {
        Pkt {
            view: view_of(&info, in_iface, out_iface),
            info,
            conn: Conn::Untracked,
            ct_state: CtState::Untracked,
            src_nat_undecided: false,
        }
    }

    /// The tuple conntrack sees (after any NAT so far).
    #[inline]
    pub fn tuple(&self) -> Tuple {
        meta_of(&self.info).tuple
    }
}

/// The connection a packet belongs to, as the pipeline carries it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Conn<A: Addr = Ipv4Addr> {
    Untracked,
    Invalid,
    Existing {
        /// Its tuples and NAT as this packet's direction sees them.
        nat: ConnNat<A>,
        /// An ICMP error about the connection (RELATED).
        related: bool,
        /// The entry, when conntrack found it (not for answers we build).
        entry: Option<EntryRef>,
    },
    New(Pending<A>),
}

impl<A: Addr> Conn<A> {
    /// The connection's NAT as the packet sees it, if it is tracked.
    #[inline]
    pub fn nat(&self) -> Option<ConnNat<A>> {
        match self {
            Conn::Existing { nat, .. } => Some(*nat),
            Conn::New(p) => Some(ConnNat {
                orig: p.orig,
                reply: p.reply,
                status: p.status,
                dir: Dir::Original,
            }),
            _ => None,
        }
    }

    /// Whether the packet is an ICMP error about the connection.
    #[inline]
    pub fn related(&self) -> bool {
        matches!(self, Conn::Existing { related: true, .. })
    }

    /// The conntrack bits rules see (`--ctstate`): the state, and SNAT/DNAT
    /// from the connection's status.
    #[inline]
    pub fn ct_bits(&self, state: CtState) -> u8 {
        let st = self.nat().map_or(0, |n| n.status);
        let mut bits = state.bit();
        if st & status::SRC_NAT != 0 {
            bits |= CtStates::SNAT;
        }
        if st & status::DST_NAT != 0 {
            bits |= CtStates::DNAT;
        }
        bits
    }
}

/// The connection a packet the gateway generates is attached to
/// (`nf_ct_attach`): the reply direction of the connection of the packet it
/// answers. Linux's `nf_conntrack_attach` makes every such answer RELATED
/// (an ICMP error and REJECT's TCP reset alike).
#[derive(Clone, Copy, Debug)]
pub(super) struct Attached<A: Addr = Ipv4Addr> {
    pub nat: ConnNat<A>,
    /// An ICMP error: translated as one, the packet it quotes too.
    pub icmp_error: bool,
    /// The answered packet's connection is new and its source NAT not
    /// decided (it was refused before nat POSTROUTING). Linux's
    /// `nf_nat_inet_fn` then runs the nat POSTROUTING chain for the answer
    /// (its counters move, its LOG rules log); `nf_nat_ipv4_fn` spares ICMP
    /// errors that. A binding the chain chose would belong to the refused
    /// connection, which is never confirmed: nothing binds.
    pub src_nat_undecided: bool,
}

/// What rules see of a packet.
#[inline]
pub(super) fn view_of(info: &Ipv4Info, in_iface: Option<u8>, out_iface: Option<u8>) -> PacketView {
    let mut v = PacketView {
        proto: info.proto,
        in_iface,
        out_iface,
        tos: info.tos,
        ttl: info.ttl,
        len: info.total_len,
        ..PacketView::default()
    };
    refresh_view(&mut v, info);
    v
}

/// Brings the addresses and ports of a view in line with the packet.
#[inline]
pub(super) fn refresh_view(v: &mut PacketView, info: &Ipv4Info) {
    v.src = u32::from(info.src);
    v.dst = u32::from(info.dst);
    match info.l4info {
        L4::Tcp(t) => {
            v.has_ports = true;
            v.sport = t.sport;
            v.dport = t.dport;
            v.tcp_flags = t.flags;
        }
        L4::Udp { sport, dport } => {
            v.has_ports = true;
            v.sport = sport;
            v.dport = dport;
        }
        L4::Icmp(i) => v.icmp = Some((i.ty, i.code)),
        L4::Other => {}
    }
}

/// Whether a frame went to a link-layer group (broadcast or multicast)
/// address: the I/G bit of its destination MAC.
#[inline]
pub(super) fn is_group(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 != 0)
}

/// Whether `a` is a link-local multicast group (224.0.0.0/24,
/// `ipv4_is_local_multicast`): never routed, TTL 1 or VRRP's 255.
#[inline]
pub(super) fn is_link_local_multicast(a: Ipv4Addr) -> bool {
    u32::from(a) & 0xffff_ff00 == 0xe000_0000
}

/// Why Linux's protocol error handlers would judge the packet INVALID, if
/// they would: a UDP length field below 8 or beyond the datagram
/// (`udp_error`, on every hook), then, with `verify` (arriving packets,
/// `nf_conntrack_checksum` at PREROUTING), a TCP, UDP (unless 0) or ICMP
/// checksum that does not verify.
#[inline]
pub(super) fn l4_error(frame: &[u8], info: &Ipv4Info, verify: bool) -> Option<InvalidReason> {
    let end = info.l3 + usize::from(info.total_len);
    let Some(seg) = frame.get(info.l4..end) else {
        return verify.then_some(InvalidReason::BadChecksum);
    };
    if let L4::Udp { .. } = info.l4info {
        let udp_len = wire::udp_len(seg).map_or(0, usize::from);
        if udp_len < 8 || udp_len > seg.len() {
            return Some(InvalidReason::UdpBadLength);
        }
    }
    let ok = !verify
        || match info.l4info {
            L4::Tcp(_) => wire::checksum::transport_ok(info.src, info.dst, 6, seg),
            L4::Udp { .. } => wire::checksum::transport_ok(info.src, info.dst, 17, seg),
            L4::Icmp(_) => wire::checksum::verify(wire::checksum::sum(seg)),
            L4::Other => true,
        };
    (!ok).then_some(InvalidReason::BadChecksum)
}

/// What conntrack needs of a packet.
#[inline]
pub(super) fn meta_of(info: &Ipv4Info) -> PacketMeta {
    let (sport, dport, tcp, icmp) = match info.l4info {
        L4::Tcp(t) => (t.sport, t.dport, Some(TcpSeg::from(&t)), None),
        L4::Udp { sport, dport } => (sport, dport, None, None),
        L4::Icmp(i) => {
            let id = if i.is_query { i.id } else { 0 };
            let inner = i.inner.map(|n| Tuple {
                src: n.src,
                dst: n.dst,
                sport: n.sport,
                dport: n.dport,
                proto: n.proto,
            });
            (
                id,
                id,
                None,
                Some(IcmpMeta {
                    ty: i.ty,
                    code: i.code,
                    is_query: i.is_query,
                    is_error: i.is_error,
                    inner,
                }),
            )
        }
        L4::Other => (0, 0, None, None),
    };
    PacketMeta {
        tuple: Tuple {
            src: info.src,
            dst: info.dst,
            sport,
            dport,
            proto: info.proto,
        },
        len: info.total_len,
        tcp,
        icmp,
    }
}
