//! Neighbour discovery (RFC 4861): neighbour solicitations and
//! advertisements, router solicitations and advertisements (with the
//! prefix, MTU and RDNSS (RFC 8106) options SLAAC clients use), and the
//! addresses they go between: the EUI-64 link-local address, the
//! solicited-node multicast address, the multicast MAC.
//!
//! [`parse_ndp`] validates a received message as Linux's `ndisc_rcv` and
//! `ndisc_parse_options` do; the `build_*` functions write whole frames
//! with the hop limit 255 every ND message carries (RFC 4861 6.1, 7.1: a
//! receiver drops any other, which proves the sender on-link).

use std::net::Ipv6Addr;

use super::super::checksum::{self, l4_v6};
use super::super::field::{self, read128, read16, read32, read8};
use super::super::ETH_HDR;
use super::build::{put, put_eth_ipv6};
use super::{
    Ipv6Info, L4v6, IPV6_HDR, NDISC_NEIGHBOUR_ADVERTISEMENT, NDISC_NEIGHBOUR_SOLICITATION,
    NDISC_REDIRECT, NDISC_ROUTER_ADVERTISEMENT, NDISC_ROUTER_SOLICITATION, NEXTHDR_ICMPV6,
};
use crate::drop::DropReason;

/// The hop limit of every ND message.
pub const NDISC_HOP_LIMIT: u8 = 255;

/// ND option types (RFC 4861 4.6, RFC 8106).
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
pub const OPT_TARGET_LL_ADDR: u8 = 2;
pub const OPT_PREFIX_INFO: u8 = 3;
pub const OPT_REDIRECT_HDR: u8 = 4;
pub const OPT_MTU: u8 = 5;
pub const OPT_NONCE: u8 = 14;
pub const OPT_RDNSS: u8 = 25;

/// All nodes and all routers on the link (ff02::1, ff02::2).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The link-local address Linux gives an Ethernet interface with
/// `addrgenmode eui64` (the default): `fe80::/64` with the modified EUI-64
/// interface identifier of its MAC (RFC 4291 appendix A; Linux's
/// `addrconf_ifid_eui48`): the MAC's first three bytes, ff:fe, the last
/// three, with the universal/local bit flipped.
pub fn link_local_eui64(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// The solicited-node multicast address of `addr` (RFC 4291 2.7.1):
/// ff02::1:ff00:0/104 with its low 24 bits.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `addr` is a solicited-node multicast address (Linux's
/// `ipv6_addr_is_solict_mult`).
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    let o = addr.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet address of an IPv6 multicast address (RFC 2464 7, Linux's
/// `ipv6_eth_mc_map`): 33:33 and its low 32 bits.
pub fn multicast_mac(addr: Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The link-layer and IP addresses of an ND message to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpAddrs {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// A neighbour solicitation (type 135).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourSolicit {
    pub target: Ipv6Addr,
    /// The source link-layer address option (absent from a DAD probe).
    pub source_mac: Option<[u8; 6]>,
    /// The nonce option of enhanced DAD (RFC 7527; Linux sends one with
    /// its DAD probes, `enhanced_dad`).
    pub nonce: Option<[u8; 6]>,
}

/// A neighbour advertisement (type 136).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourAdvert {
    pub target: Ipv6Addr,
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: override the cached link-layer address.
    pub override_flag: bool,
    /// The target link-layer address option.
    pub target_mac: Option<[u8; 6]>,
}

/// A router solicitation (type 133).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterSolicit {
    pub source_mac: Option<[u8; 6]>,
}

/// A prefix information option (RFC 4861 4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: usable for SLAAC.
    pub autonomous: bool,
    /// Seconds; 0xffffffff is infinity.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

/// A router advertisement (type 134) to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterAdvert<'a> {
    /// The hop limit hosts should use (0: unspecified).
    pub cur_hop_limit: u8,
    /// M: addresses by DHCPv6.
    pub managed: bool,
    /// O: other configuration by DHCPv6.
    pub other: bool,
    /// Seconds as a default router (0: not one).
    pub router_lifetime: u16,
    /// Milliseconds (0: unspecified).
    pub reachable_time: u32,
    pub retrans_timer: u32,
    pub source_mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub prefixes: &'a [PrefixInfo],
    /// Recursive DNS servers (RFC 8106) and their lifetime in seconds; no
    /// option when empty.
    pub rdnss: &'a [Ipv6Addr],
    pub rdnss_lifetime: u32,
}

/// A received router advertisement: its fixed fields, and its options,
/// validated, to read with [`NdpOptions::prefixes`] and
/// [`NdpOptions::rdnss`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterAdvertView<'a> {
    pub cur_hop_limit: u8,
    pub managed: bool,
    pub other: bool,
    pub router_lifetime: u16,
    pub reachable_time: u32,
    pub retrans_timer: u32,
    pub source_mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub options: NdpOptions<'a>,
}

/// A received ND message, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ndp<'a> {
    RouterSolicit(RouterSolicit),
    RouterAdvert(RouterAdvertView<'a>),
    NeighbourSolicit(NeighbourSolicit),
    NeighbourAdvert(NeighbourAdvert),
    /// A redirect (137): a router's business to send, not to follow.
    Redirect {
        target: Ipv6Addr,
        destination: Ipv6Addr,
    },
}

/// The options of an ND message, checked as Linux's `ndisc_parse_options`
/// checks them: every option has a non-zero length within the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpOptions<'a> {
    bytes: &'a [u8],
}

/// One ND option: its type and its whole bytes (type and length included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpOption<'a> {
    pub ty: u8,
    pub bytes: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// Validates `bytes` (`ndisc_parse_options`): fewer than 2 bytes left,
    /// a length of 0, or a length past the end make it invalid.
    pub fn new(bytes: &'a [u8]) -> Option<NdpOptions<'a>> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = usize::from(read8(rest, 1)?) * 8;
            if len == 0 {
                return None;
            }
            rest = rest.get(len..)?;
        }
        Some(NdpOptions { bytes })
    }

    /// The options in order.
    pub fn iter(&self) -> impl Iterator<Item = NdpOption<'a>> {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let ty = read8(rest, 0)?;
            let len = usize::from(read8(rest, 1)?) * 8;
            let bytes = rest.get(..len).filter(|_| len > 0)?;
            rest = rest.get(len..).unwrap_or_default();
            Some(NdpOption { ty, bytes })
        })
    }

    /// The first option of type `ty` (Linux keeps the first of a
    /// duplicated link-layer address, MTU or nonce option).
    pub fn first(&self, ty: u8) -> Option<NdpOption<'a>> {
        self.iter().find(|o| o.ty == ty)
    }

    /// A link-layer address option's Ethernet address: `Some(None)` when
    /// there is none, `None` when its length is not 8 bytes (Linux's
    /// `ndisc_opt_addr_data` finds no address for the device in it).
    fn mac(&self, ty: u8) -> Option<Option<[u8; 6]>> {
        match self.first(ty) {
            None => Some(None),
            Some(o) => o.bytes.get(2..8).filter(|_| o.bytes.len() == 8).map(|m| {
                let mut mac = [0; 6];
                mac.copy_from_slice(m);
                Some(mac)
            }),
        }
    }

    /// The MTU option's value (an option of the wrong length is ignored,
    /// as Linux's `ndisc_router_discovery` ignores it).
    pub fn mtu(&self) -> Option<u32> {
        self.first(OPT_MTU)
            .filter(|o| o.bytes.len() == 8)
            .and_then(|o| read32(o.bytes, 4))
    }

    /// The prefix information options of the right length (32 bytes;
    /// Linux's `addrconf_prefix_rcv` skips shorter ones).
    pub fn prefixes(&self) -> impl Iterator<Item = PrefixInfo> + 'a {
        self.iter().filter_map(|o| {
            if o.ty != OPT_PREFIX_INFO || o.bytes.len() != 32 {
                return None;
            }
            let flags = read8(o.bytes, 3)?;
            Some(PrefixInfo {
                len: read8(o.bytes, 2)?,
                on_link: flags & 0x80 != 0,
                autonomous: flags & 0x40 != 0,
                valid_lifetime: read32(o.bytes, 4)?,
                preferred_lifetime: read32(o.bytes, 8)?,
                prefix: Ipv6Addr::from(read128(o.bytes, 16)?),
            })
        })
    }

    /// The recursive DNS servers of the RDNSS options (RFC 8106 5.1: a
    /// length of at least 3, odd), each with its option's lifetime.
    pub fn rdnss(&self) -> impl Iterator<Item = (Ipv6Addr, u32)> + 'a {
        self.iter()
            .filter(|o| o.ty == OPT_RDNSS && o.bytes.len() >= 24 && (o.bytes.len() / 8) % 2 == 1)
            .flat_map(|o| {
                let lifetime = read32(o.bytes, 4).unwrap_or(0);
                o.bytes
                    .get(8..)
                    .unwrap_or_default()
                    .chunks_exact(16)
                    .filter_map(move |a| Some((Ipv6Addr::from(read128(a, 0)?), lifetime)))
            })
    }
}

/// Validates a received ND message as Linux does, and parses it. `frame`
/// is the frame [`parse_ipv6`](super::parse_ipv6) gave `info` for, an
/// ICMPv6 message of type 133-137. Errors:
///
/// - `NdiscMalformed` when it is not one, or came in fragments (Linux's
///   `ndisc_rcv` drops those: NDISC_FRAG);
/// - `Icmpv6BadChecksum` (checked first, by `icmpv6_rcv`);
/// - `NdiscHopLimit` unless the hop limit is 255, `NdiscBadCode` unless
///   the code is 0 (`ndisc_rcv`);
/// - `NdiscMalformed` for a message shorter than its fixed part, a
///   multicast target (NS, NA), a DAD probe (NS from ::) not sent to a
///   solicited-node address or carrying a source link-layer option, a
///   solicited NA sent to a multicast address (`ndisc_recv_ns`,
///   `ndisc_recv_na`), a router solicitation from :: with a source
///   link-layer option (RFC 4861 6.1.1; radvd's `process_rs` ignores it),
///   a router advertisement or redirect from a source that is not
///   link-local (`ndisc_router_discovery`, `ndisc_redirect_rcv`);
/// - `NdiscBadOptions` for options `ndisc_parse_options` refuses (a length
///   of 0 or past the end) and a link-layer address option that is not 8
///   bytes long ("invalid link-layer address length").
///
/// Unknown options are skipped; of duplicated link-layer address and MTU
/// options the first counts.
pub fn parse_ndp<'a>(frame: &'a [u8], info: &Ipv6Info) -> Result<Ndp<'a>, DropReason> {
    let malformed = DropReason::NdiscMalformed;
    let L4v6::Icmp(icmp) = info.l4info else {
        return Err(malformed);
    };
    if !icmp.is_ndp || info.proto != NEXTHDR_ICMPV6 || info.fragment {
        return Err(malformed);
    }
    let end = info
        .l3
        .checked_add(IPV6_HDR + usize::from(info.payload_len))
        .ok_or(malformed)?;
    let msg = frame.get(info.l4..end).ok_or(malformed)?;
    if !checksum::transport_ok6(info.src, info.dst, NEXTHDR_ICMPV6, msg) {
        return Err(DropReason::Icmpv6BadChecksum);
    }
    if info.hop_limit != NDISC_HOP_LIMIT {
        return Err(DropReason::NdiscHopLimit);
    }
    if icmp.code != 0 {
        return Err(DropReason::NdiscBadCode);
    }
    let options = |at: usize| {
        msg.get(at..)
            .ok_or(malformed)
            .and_then(|b| NdpOptions::new(b).ok_or(DropReason::NdiscBadOptions))
    };
    let bad_lladdr = DropReason::NdiscBadOptions;
    let target = || {
        read128(msg, field::icmpv6::ND_TARGET)
            .map(Ipv6Addr::from)
            .ok_or(malformed)
    };
    match icmp.ty {
        NDISC_ROUTER_SOLICITATION => {
            let opts = options(field::icmpv6::RS_OPTIONS)?;
            let source_mac = opts.mac(OPT_SOURCE_LL_ADDR).ok_or(bad_lladdr)?;
            if info.src.is_unspecified() && source_mac.is_some() {
                return Err(malformed);
            }
            Ok(Ndp::RouterSolicit(RouterSolicit { source_mac }))
        }
        NDISC_ROUTER_ADVERTISEMENT => {
            if !info.src.is_unicast_link_local() {
                return Err(malformed);
            }
            let opts = options(field::icmpv6::RA_OPTIONS)?;
            let flags = read8(msg, field::icmpv6::RA_FLAGS).ok_or(malformed)?;
            Ok(Ndp::RouterAdvert(RouterAdvertView {
                cur_hop_limit: read8(msg, field::icmpv6::RA_HOP_LIMIT).ok_or(malformed)?,
                managed: flags & 0x80 != 0,
                other: flags & 0x40 != 0,
                router_lifetime: read16(msg, field::icmpv6::RA_LIFETIME).ok_or(malformed)?,
                reachable_time: read32(msg, field::icmpv6::RA_REACHABLE).ok_or(malformed)?,
                retrans_timer: read32(msg, field::icmpv6::RA_RETRANS).ok_or(malformed)?,
                source_mac: opts.mac(OPT_SOURCE_LL_ADDR).ok_or(bad_lladdr)?,
                mtu: opts.mtu(),
                options: opts,
            }))
        }
        NDISC_NEIGHBOUR_SOLICITATION => {
            let target = target()?;
            let dad = info.src.is_unspecified();
            if target.is_multicast() || (dad && !is_solicited_node(info.dst)) {
                return Err(malformed);
            }
            let opts = options(field::icmpv6::ND_OPTIONS)?;
            let source_mac = opts.mac(OPT_SOURCE_LL_ADDR).ok_or(bad_lladdr)?;
            if dad && source_mac.is_some() {
                return Err(malformed);
            }
            let nonce = opts
                .first(OPT_NONCE)
                .and_then(|o| o.bytes.get(2..8))
                .and_then(|n| <[u8; 6]>::try_from(n).ok());
            Ok(Ndp::NeighbourSolicit(NeighbourSolicit {
                target,
                source_mac,
                nonce,
            }))
        }
        NDISC_NEIGHBOUR_ADVERTISEMENT => {
            let target = target()?;
            let flags = read8(msg, field::icmpv6::REST).ok_or(malformed)?;
            let solicited = flags & 0x40 != 0;
            if target.is_multicast() || (info.dst.is_multicast() && solicited) {
                return Err(malformed);
            }
            let opts = options(field::icmpv6::ND_OPTIONS)?;
            Ok(Ndp::NeighbourAdvert(NeighbourAdvert {
                target,
                router: flags & 0x80 != 0,
                solicited,
                override_flag: flags & 0x20 != 0,
                target_mac: opts.mac(OPT_TARGET_LL_ADDR).ok_or(bad_lladdr)?,
            }))
        }
        NDISC_REDIRECT => {
            if !info.src.is_unicast_link_local() {
                return Err(malformed);
            }
            let target = target()?;
            let destination = read128(msg, field::icmpv6::ND_OPTIONS)
                .map(Ipv6Addr::from)
                .ok_or(malformed)?;
            options(field::icmpv6::ND_OPTIONS + 16)?;
            Ok(Ndp::Redirect {
                target,
                destination,
            })
        }
        _ => Err(malformed),
    }
}

/// Writes the ICMPv6 message `msg_len` bytes long already at `out[l4..]`
/// behind an Ethernet and IPv6 header for `addrs`, hop limit 255, and its
/// checksum. Returns the frame's length.
fn finish_nd(out: &mut [u8], addrs: &NdpAddrs, msg_len: usize) -> Option<usize> {
    let l4 = ETH_HDR + IPV6_HDR;
    let len = l4 + msg_len;
    let plen = u16::try_from(msg_len).ok()?;
    put_eth_ipv6(
        out,
        (addrs.dst_mac, addrs.src_mac),
        plen,
        NEXTHDR_ICMPV6,
        NDISC_HOP_LIMIT,
        addrs.src,
        addrs.dst,
    );
    let csum = l4_v6(addrs.src, addrs.dst, NEXTHDR_ICMPV6, out.get(l4..len)?);
    put(out, l4 + field::icmpv6::CHECKSUM, &csum.to_be_bytes());
    Some(len)
}

/// A link-layer address option (8 bytes on Ethernet).
fn put_lladdr(out: &mut [u8], at: usize, ty: u8, mac: [u8; 6]) -> usize {
    put(out, at, &[ty, 1]);
    put(out, at + 2, &mac);
    8
}

/// Builds a neighbour solicitation from `src_mac`/`src` as Linux's
/// `ndisc_send_ns` does: to the target's solicited-node address and its
/// multicast MAC (address resolution, DAD), or, with `unicast_mac`, to the
/// target itself at that MAC (a reachability probe); hop limit 255; the
/// source link-layer option from `ns.source_mac` (Linux includes its MAC
/// unless the source is ::), the nonce option if any. A DAD probe has
/// source :: and no source link-layer option (RFC 4861 7.2.2): `None` if
/// asked for both, or when `out` is too small.
pub fn build_ns(
    out: &mut [u8],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    ns: &NeighbourSolicit,
    unicast_mac: Option<[u8; 6]>,
) -> Option<usize> {
    if src.is_unspecified() && ns.source_mac.is_some() {
        return None;
    }
    let (dst, dst_mac) = match unicast_mac {
        Some(mac) => (ns.target, mac),
        None => {
            let group = solicited_node(ns.target);
            (group, multicast_mac(group))
        }
    };
    let msg_len =
        24 + 8 * usize::from(ns.source_mac.is_some()) + 8 * usize::from(ns.nonce.is_some());
    let l4 = ETH_HDR + IPV6_HDR;
    let out = out.get_mut(..l4 + msg_len)?;
    out.fill(0);
    put(out, l4, &[NDISC_NEIGHBOUR_SOLICITATION, 0]);
    put(out, l4 + field::icmpv6::ND_TARGET, &ns.target.octets());
    let mut at = l4 + field::icmpv6::ND_OPTIONS;
    if let Some(mac) = ns.source_mac {
        at += put_lladdr(out, at, OPT_SOURCE_LL_ADDR, mac);
    }
    if let Some(nonce) = ns.nonce {
        put(out, at, &[OPT_NONCE, 1]);
        put(out, at + 2, &nonce);
    }
    let addrs = NdpAddrs {
        src_mac,
        dst_mac,
        src,
        dst,
    };
    finish_nd(out, &addrs, msg_len)
}

/// Builds a neighbour advertisement as Linux's `ndisc_send_na` does: hop
/// limit 255, flags R/S/O, the target link-layer option when
/// `na.target_mac` is set. Linux includes it when the solicitation was
/// sent to a multicast address and omits it in answer to a unicast probe;
/// it answers a DAD probe (from ::) to ff02::1 with S clear, anything else
/// to the solicitor with S set: the caller picks `addrs` and the flags so.
/// `None` when `out` is too small.
pub fn build_na(out: &mut [u8], addrs: &NdpAddrs, na: &NeighbourAdvert) -> Option<usize> {
    let msg_len = 24 + 8 * usize::from(na.target_mac.is_some());
    let l4 = ETH_HDR + IPV6_HDR;
    let out = out.get_mut(..l4 + msg_len)?;
    out.fill(0);
    let flags = (u8::from(na.router) << 7)
        | (u8::from(na.solicited) << 6)
        | (u8::from(na.override_flag) << 5);
    put(out, l4, &[NDISC_NEIGHBOUR_ADVERTISEMENT, 0]);
    put(out, l4 + field::icmpv6::REST, &[flags]);
    put(out, l4 + field::icmpv6::ND_TARGET, &na.target.octets());
    if let Some(mac) = na.target_mac {
        put_lladdr(out, l4 + field::icmpv6::ND_OPTIONS, OPT_TARGET_LL_ADDR, mac);
    }
    finish_nd(out, addrs, msg_len)
}

/// Builds a router advertisement from `addrs` (the source must be the
/// interface's link-local address: hosts ignore others; the destination
/// ff02::1, or the soliciting host), hop limit 255, with its options in
/// radvd's order: prefix information, RDNSS, MTU, source link-layer
/// address. `None` when `out` is too small, or the message would not fit
/// a 16-bit payload length.
pub fn build_ra(out: &mut [u8], addrs: &NdpAddrs, ra: &RouterAdvert<'_>) -> Option<usize> {
    let rdnss_len = if ra.rdnss.is_empty() {
        0
    } else {
        8 + 16 * ra.rdnss.len()
    };
    let msg_len = 16
        + 32 * ra.prefixes.len()
        + rdnss_len
        + 8 * usize::from(ra.mtu.is_some())
        + 8 * usize::from(ra.source_mac.is_some());
    let l4 = ETH_HDR + IPV6_HDR;
    let rdnss_units = u8::try_from(rdnss_len / 8).ok()?;
    let out = out.get_mut(..l4.checked_add(msg_len)?)?;
    out.fill(0);
    let flags = (u8::from(ra.managed) << 7) | (u8::from(ra.other) << 6);
    put(
        out,
        l4,
        &[NDISC_ROUTER_ADVERTISEMENT, 0, 0, 0, ra.cur_hop_limit, flags],
    );
    put(
        out,
        l4 + field::icmpv6::RA_LIFETIME,
        &ra.router_lifetime.to_be_bytes(),
    );
    put(
        out,
        l4 + field::icmpv6::RA_REACHABLE,
        &ra.reachable_time.to_be_bytes(),
    );
    put(
        out,
        l4 + field::icmpv6::RA_RETRANS,
        &ra.retrans_timer.to_be_bytes(),
    );
    let mut at = l4 + field::icmpv6::RA_OPTIONS;
    for p in ra.prefixes {
        let flags = (u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6);
        put(out, at, &[OPT_PREFIX_INFO, 4, p.len, flags]);
        put(out, at + 4, &p.valid_lifetime.to_be_bytes());
        put(out, at + 8, &p.preferred_lifetime.to_be_bytes());
        put(out, at + 16, &p.prefix.octets());
        at += 32;
    }
    if rdnss_len > 0 {
        put(out, at, &[OPT_RDNSS, rdnss_units]);
        put(out, at + 4, &ra.rdnss_lifetime.to_be_bytes());
        for (i, server) in ra.rdnss.iter().enumerate() {
            put(out, at + 8 + 16 * i, &server.octets());
        }
        at += rdnss_len;
    }
    if let Some(mtu) = ra.mtu {
        put(out, at, &[OPT_MTU, 1]);
        put(out, at + 4, &mtu.to_be_bytes());
        at += 8;
    }
    if let Some(mac) = ra.source_mac {
        put_lladdr(out, at, OPT_SOURCE_LL_ADDR, mac);
    }
    finish_nd(out, addrs, msg_len)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::super::fixture::{self, fix_checksum6, A, B, LL_A, LL_B, MAC_A, MAC_B};
    use super::super::parse_ipv6;
    use super::*;
    use proptest::prelude::*;

    fn ndp(f: &[u8]) -> Result<Ndp<'_>, DropReason> {
        let info = parse_ipv6(f).unwrap();
        parse_ndp(f, &info)
    }

    #[test]
    fn addresses_as_linux_derives_them() {
        assert_eq!(link_local_eui64(MAC_A), LL_A);
        assert_eq!(link_local_eui64(MAC_B), LL_B);
        assert_eq!(
            link_local_eui64([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        // The NS fixture: A asks for B at B's solicited-node group.
        let group = solicited_node(B);
        assert_eq!(group, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(group) && !is_solicited_node(ALL_NODES));
        assert_eq!(fixture::NS[38..54], group.octets());
        assert_eq!(multicast_mac(group), [0x33, 0x33, 0xff, 0, 0, 2]);
        assert_eq!(fixture::NS[..6], multicast_mac(group));
        assert_eq!(multicast_mac(ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
    }

    #[test]
    fn parses_linux_and_radvd_messages() {
        assert_eq!(
            ndp(&fixture::RS),
            Ok(Ndp::RouterSolicit(RouterSolicit {
                source_mac: Some(MAC_A)
            }))
        );
        assert_eq!(
            ndp(&fixture::NS),
            Ok(Ndp::NeighbourSolicit(NeighbourSolicit {
                target: B,
                source_mac: Some(MAC_A),
                nonce: None,
            }))
        );
        let Ok(Ndp::NeighbourSolicit(dad)) = ndp(&fixture::NS_DAD) else {
            panic!()
        };
        assert_eq!((dad.target, dad.source_mac), (A, None));
        assert!(dad.nonce.is_some(), "Linux's enhanced DAD sends a nonce");
        assert_eq!(
            ndp(&fixture::NA),
            Ok(Ndp::NeighbourAdvert(NeighbourAdvert {
                target: B,
                router: true,
                solicited: true,
                override_flag: true,
                target_mac: Some(MAC_B),
            }))
        );
        let Ok(Ndp::RouterAdvert(ra)) = ndp(&fixture::RA) else {
            panic!()
        };
        assert_eq!(
            (ra.cur_hop_limit, ra.managed, ra.other, ra.router_lifetime),
            (64, false, true, 1800)
        );
        assert_eq!((ra.reachable_time, ra.retrans_timer), (30000, 1000));
        assert_eq!((ra.source_mac, ra.mtu), (Some(MAC_B), Some(1500)));
        let prefixes: Vec<_> = ra.options.prefixes().collect();
        assert_eq!(prefixes, [radvd_prefix()]);
        let dns: Vec<_> = ra.options.rdnss().collect();
        assert_eq!(dns, [("2001:db8:1::53".parse().unwrap(), 600)]);
    }

    fn radvd_prefix() -> PrefixInfo {
        PrefixInfo {
            prefix: "2001:db8:1::".parse().unwrap(),
            len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: 86400,
            preferred_lifetime: 14400,
        }
    }

    /// Linux's NS and NA, byte for byte.
    #[test]
    fn builds_neighbour_messages_as_linux() {
        let mut out = [0u8; 200];
        let ns = NeighbourSolicit {
            target: B,
            source_mac: Some(MAC_A),
            nonce: None,
        };
        let n = build_ns(&mut out, MAC_A, A, &ns, None).unwrap();
        assert_eq!(out[..n], fixture::NS);
        let Ok(Ndp::NeighbourSolicit(dad)) = ndp(&fixture::NS_DAD) else {
            panic!()
        };
        let n = build_ns(&mut out, MAC_A, Ipv6Addr::UNSPECIFIED, &dad, None).unwrap();
        assert_eq!(out[..n], fixture::NS_DAD);
        let addrs = NdpAddrs {
            src_mac: MAC_B,
            dst_mac: MAC_A,
            src: B,
            dst: A,
        };
        let na = NeighbourAdvert {
            target: B,
            router: true,
            solicited: true,
            override_flag: true,
            target_mac: Some(MAC_B),
        };
        let n = build_na(&mut out, &addrs, &na).unwrap();
        assert_eq!(out[..n], fixture::NA);
        // A DAD probe with a source link-layer option is not a thing.
        assert_eq!(
            build_ns(&mut out, MAC_A, Ipv6Addr::UNSPECIFIED, &ns, None),
            None
        );
        // A unicast probe goes to the target at the given MAC.
        let n = build_ns(&mut out, MAC_A, A, &ns, Some(MAC_B)).unwrap();
        let info = parse_ipv6(&out[..n]).unwrap();
        assert_eq!((info.dst, &out[..6]), (B, &MAC_B[..]));
        assert!(ndp(&out[..n]).is_ok());
        for short in 0..86 {
            assert_eq!(build_na(&mut out[..short], &addrs, &na), None);
        }
    }

    /// radvd's router advertisement, byte for byte but for its flow label.
    #[test]
    fn builds_router_advertisements_as_radvd() {
        let prefixes = [radvd_prefix()];
        let dns = ["2001:db8:1::53".parse().unwrap()];
        let ra = RouterAdvert {
            cur_hop_limit: 64,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 30000,
            retrans_timer: 1000,
            source_mac: Some(MAC_B),
            mtu: Some(1500),
            prefixes: &prefixes,
            rdnss: &dns,
            rdnss_lifetime: 600,
        };
        let addrs = NdpAddrs {
            src_mac: MAC_B,
            dst_mac: MAC_A,
            src: LL_B,
            dst: LL_A,
        };
        let mut out = [0u8; 300];
        let n = build_ra(&mut out, &addrs, &ra).unwrap();
        let mut f = out[..n].to_vec();
        f[15..18].copy_from_slice(&fixture::RA[15..18]);
        assert_eq!(f, fixture::RA);
    }

    /// `f` with `edit` applied and its ICMPv6 checksum made right again.
    fn edited(f: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut f = f.to_vec();
        edit(&mut f);
        let plen = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        fix_checksum6(&mut f);
        f
    }

    #[test]
    fn refuses_what_linux_refuses() {
        use DropReason::*;
        let ns = &fixture::NS[..];
        let mut bad_sum = ns.to_vec();
        bad_sum[60] ^= 1;
        assert_eq!(ndp(&bad_sum), Err(Icmpv6BadChecksum));
        // The hop limit is outside the checksum.
        let mut hop = ns.to_vec();
        hop[21] = 254;
        assert_eq!(ndp(&hop), Err(NdiscHopLimit));
        assert_eq!(ndp(&edited(ns, |f| f[55] = 1)), Err(NdiscBadCode));
        // Options: a zero length, one past the end, a 16-byte link-layer
        // address, a lone byte.
        assert_eq!(ndp(&edited(ns, |f| f[79] = 0)), Err(NdiscBadOptions));
        assert_eq!(ndp(&edited(ns, |f| f[79] = 2)), Err(NdiscBadOptions));
        let long = edited(ns, |f| {
            f[79] = 2;
            f.extend_from_slice(&[0; 8]);
        });
        assert_eq!(ndp(&long), Err(NdiscBadOptions));
        assert_eq!(ndp(&edited(ns, |f| f.push(1))), Err(NdiscBadOptions));
        // Unknown options are skipped; a duplicated SLL: the first counts.
        let extra = edited(ns, |f| {
            f.extend_from_slice(&[99, 1, 0, 0, 0, 0, 0, 0, 1, 1, 9, 9, 9, 9, 9, 9])
        });
        assert_eq!(ndp(&extra), ndp(ns));
        // Too short; a multicast target.
        assert_eq!(
            ndp(&edited(ns, |f| f.truncate(54 + 20))),
            Err(NdiscMalformed)
        );
        assert_eq!(ndp(&edited(ns, |f| f[62] = 0xff)), Err(NdiscMalformed));
        // DAD: to a solicited-node group only, without an SLL option.
        let dad = &fixture::NS_DAD[..];
        assert_eq!(
            ndp(&edited(dad, |f| f[38..54].copy_from_slice(&ALL_NODES.octets()))),
            Err(NdiscMalformed)
        );
        let with_sll = edited(dad, |f| f.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(ndp(&with_sll), Err(NdiscMalformed));
        // A solicited NA to a multicast address.
        let na = edited(&fixture::NA, |f| {
            f[38..54].copy_from_slice(&ALL_NODES.octets())
        });
        assert_eq!(ndp(&na), Err(NdiscMalformed));
        let unsolicited = edited(&fixture::NA, |f| {
            f[38..54].copy_from_slice(&ALL_NODES.octets());
            f[58] = 0x20;
        });
        assert!(matches!(
            ndp(&unsolicited),
            Ok(Ndp::NeighbourAdvert(NeighbourAdvert {
                solicited: false,
                ..
            }))
        ));
        // An RA from a global address; an RS from :: with an SLL option.
        let ra = edited(&fixture::RA, |f| f[22..38].copy_from_slice(&B.octets()));
        assert_eq!(ndp(&ra), Err(NdiscMalformed));
        let rs = edited(&fixture::RS, |f| f[22..38].copy_from_slice(&[0; 16]));
        assert_eq!(ndp(&rs), Err(NdiscMalformed));
        // Not ND at all.
        assert_eq!(ndp(&fixture::ECHO_REQUEST), Err(NdiscMalformed));
        assert_eq!(ndp(&fixture::UDP), Err(NdiscMalformed));
    }

    fn mac() -> impl Strategy<Value = Option<[u8; 6]>> {
        proptest::option::of(any::<[u8; 6]>())
    }

    proptest! {
        /// What we build, we parse back to the same.
        #[test]
        fn neighbour_messages_round_trip(
            target in any::<[u8; 16]>(),
            source_mac in mac(),
            nonce in mac(),
            flags in any::<(bool, bool, bool)>(),
            target_mac in mac(),
        ) {
            let target = Ipv6Addr::from(target);
            prop_assume!(!target.is_multicast());
            let mut out = [0u8; 200];
            let ns = NeighbourSolicit { target, source_mac, nonce };
            let n = build_ns(&mut out, MAC_A, A, &ns, None).unwrap();
            prop_assert_eq!(ndp(&out[..n]), Ok(Ndp::NeighbourSolicit(ns)));
            let (router, solicited, override_flag) = flags;
            let na = NeighbourAdvert { target, router, solicited, override_flag, target_mac };
            let addrs = NdpAddrs { src_mac: MAC_B, dst_mac: MAC_A, src: B, dst: A };
            let n = build_na(&mut out, &addrs, &na).unwrap();
            prop_assert_eq!(ndp(&out[..n]), Ok(Ndp::NeighbourAdvert(na)));
        }

        #[test]
        fn router_advertisements_round_trip(
            fields in (any::<u8>(), any::<bool>(), any::<bool>(), any::<u16>(), any::<u32>(), any::<u32>()),
            source_mac in mac(),
            mtu in proptest::option::of(any::<u32>()),
            prefixes in proptest::collection::vec((any::<[u8; 16]>(), 0u8..=128, any::<(bool, bool)>(), any::<u32>(), any::<u32>()), 0..4),
            dns in proptest::collection::vec(any::<[u8; 16]>(), 0..4),
            rdnss_lifetime in any::<u32>(),
        ) {
            let prefixes: Vec<PrefixInfo> = prefixes
                .into_iter()
                .map(|(p, len, (on_link, autonomous), valid_lifetime, preferred_lifetime)| PrefixInfo {
                    prefix: p.into(), len, on_link, autonomous, valid_lifetime, preferred_lifetime,
                })
                .collect();
            let dns: Vec<Ipv6Addr> = dns.into_iter().map(Ipv6Addr::from).collect();
            let (cur_hop_limit, managed, other, router_lifetime, reachable_time, retrans_timer) = fields;
            let ra = RouterAdvert {
                cur_hop_limit, managed, other, router_lifetime, reachable_time, retrans_timer,
                source_mac, mtu, prefixes: &prefixes, rdnss: &dns, rdnss_lifetime,
            };
            let addrs = NdpAddrs { src_mac: MAC_B, dst_mac: [0x33, 0x33, 0, 0, 0, 1], src: LL_B, dst: ALL_NODES };
            let mut out = [0u8; 600];
            let n = build_ra(&mut out, &addrs, &ra).unwrap();
            let Ok(Ndp::RouterAdvert(got)) = ndp(&out[..n]) else { panic!() };
            prop_assert_eq!(
                (got.cur_hop_limit, got.managed, got.other, got.router_lifetime, got.reachable_time, got.retrans_timer),
                fields
            );
            prop_assert_eq!((got.source_mac, got.mtu), (source_mac, mtu));
            prop_assert_eq!(got.options.prefixes().collect::<Vec<_>>(), prefixes);
            let want: Vec<_> = dns.iter().map(|d| (*d, rdnss_lifetime)).collect();
            prop_assert_eq!(got.options.rdnss().collect::<Vec<_>>(), want);
        }

        /// Random ICMPv6 messages of the ND types never panic the parser.
        #[test]
        fn random_messages_never_panic(
            ty in 133u8..=137,
            body in proptest::collection::vec(any::<u8>(), 0..120),
            hop in prop_oneof![Just(255u8), any::<u8>()],
        ) {
            let mut p = vec![ty, 0, 0, 0];
            p.extend_from_slice(&body);
            let mut f = fixture::datagram(58, &p);
            f[21] = hop;
            fix_checksum6(&mut f);
            if let Ok(info) = parse_ipv6(&f) {
                if let Ok(Ndp::RouterAdvert(ra)) = parse_ndp(&f, &info) {
                    let _ = ra.options.prefixes().count() + ra.options.rdnss().count();
                }
            }
        }
    }
}
