//! Validation and parsing of an IPv6 frame: the header, the extension
//! headers, the transport header, the datagram quoted by an ICMPv6 error.

use std::net::Ipv6Addr;

use smoltcp::wire::Ipv6Packet;

use super::super::field::{self, read128, read16, read32, read8};
use super::super::parse::parse_tcp;
use super::super::{ethertype, ETH_HDR};
use super::{
    icmpv6_is_error, icmpv6_is_ndp, icmpv6_is_query, ExtHeaders, FragHeader, Icmpv6Info,
    Inner6Info, Ipv6Info, L4v6, RoutingHeader, ETHERTYPE_IPV6, ICMPV6_HDR_FIELD, ICMPV6_UNK_OPTION,
    IPV6_HDR, MASK_AH, MASK_DSTOPTS, MASK_ESP, MASK_FRAGMENT, MASK_HOPOPTS, MASK_NONE, MASK_PROTO,
    MASK_ROUTING, NEXTHDR_AUTH, NEXTHDR_DEST, NEXTHDR_ESP, NEXTHDR_FRAGMENT, NEXTHDR_HOP,
    NEXTHDR_ICMPV6, NEXTHDR_NONE, NEXTHDR_ROUTING, NEXTHDR_TCP, NEXTHDR_UDP,
};
use crate::drop::DropReason;

/// The most extension headers we walk. Linux sets no limit (the packet's
/// length does); RFC 8200 4.1's order has at most six (destination options
/// twice), so 16 leaves room for anything a real sender builds.
pub const MAX_EXT_HEADERS: u8 = 16;

/// Linux's `IP6_DEFAULT_MAX_HBH_OPTS_CNT` (`net.ipv6.max_hbh_opts_number`):
/// the most hop-by-hop options other than padding.
const MAX_HBH_OPTS: usize = 8;

/// Hop-by-hop option types (Linux's `IPV6_TLV_*`).
const TLV_PAD1: u8 = 0;
const TLV_PADN: u8 = 1;
const TLV_ROUTERALERT: u8 = 5;
const TLV_CALIPSO: u8 = 7;
const TLV_IOAM: u8 = 0x31;
const TLV_JUMBO: u8 = 0xc2;

/// Validates and parses an IPv6 frame (Ethernet header included).
///
/// Checks in Linux's `ip6_rcv_core` order, each failure with its reason:
/// the Ethernet header is there (`EthTruncated`) and says IPv6
/// (`NotIpv6`); 40 bytes of header (`Ipv6Truncated`); version 6
/// (`Ipv6BadVersion`); a loopback source or destination (RFC 4291 2.5.3:
/// `MartianSource`, `MartianDst`); a multicast destination of
/// interface-local (1) or reserved (0) scope (RFC 4291 2.7, errata 3480:
/// `MartianDst`); a multicast source (`MartianSource`); a payload length
/// of 0 with a hop-by-hop header, a jumbogram (RFC 2675), which we refuse
/// (`Ipv6Jumbogram`; Linux takes them for BIG TCP); the frame holds the
/// payload length (`Ipv6Truncated`, Linux's InTruncatedPkts), Ethernet
/// padding beyond it ignored; the hop-by-hop options as
/// `ipv6_parse_hopopts`/`ip6_parse_tlv` check them (`Ipv6BadOption`, or
/// `Ipv6Jumbogram` for a jumbo payload option; see [`hop_by_hop_problem`]
/// for the parameter problem Linux answers some of them with).
///
/// Then the extension headers are walked as `ipv6_skip_exthdr` and
/// `ipv6_find_hdr` walk them: hop-by-hop (0), routing (43), fragment (44),
/// destination options (60) and AH (51) are skipped (AH's length in 4-byte
/// units); ESP (50), "no next header" (59) and anything else end the walk,
/// as does a fragment header with a non-zero offset. Other next-header
/// values (mobility, HIP, shim6, unknown ones) are upper-layer protocols
/// to Linux too. A header that runs past the payload is `Ipv6BadExtHeader`
/// (Linux forwards such a datagram untouched, but cannot track or match
/// it); a hop-by-hop header anywhere but first is
/// `Ipv6HopByHopNotFirst` (RFC 8200 4.1; Linux answers a parameter problem
/// when it delivers one locally, and does not look when it forwards);
/// more than [`MAX_EXT_HEADERS`] is `Ipv6TooManyExtHeaders`.
///
/// The transport header of a first fragment or whole datagram must then be
/// present, as for IPv4: TCP's 20 bytes (`L4Truncated`) with a sane data
/// offset (`TcpBadHeaderLen`), UDP's 8 (`L4Truncated`), ICMPv6's 8
/// (`IcmpTruncated`). Transport checksums are not verified, neither are
/// destination options (Linux checks them only when it is the
/// destination).
#[inline]
pub fn parse_ipv6(frame: &[u8]) -> Result<Ipv6Info, DropReason> {
    parse(frame, true)
}

/// [`parse_ipv6`], with or without the hop-by-hop options' checks.
fn parse(frame: &[u8], check_options: bool) -> Result<Ipv6Info, DropReason> {
    if ethertype(frame)? != ETHERTYPE_IPV6 {
        return Err(DropReason::NotIpv6);
    }
    let ip = frame.get(ETH_HDR..).unwrap_or_default();
    let ver = read8(ip, field::ipv6::VER_TC_FLOW).ok_or(DropReason::Ipv6Truncated)?;
    if ip.len() < IPV6_HDR {
        return Err(DropReason::Ipv6Truncated);
    }
    if ver >> 4 != 6 {
        return Err(DropReason::Ipv6BadVersion);
    }
    let src = addr(ip, field::ipv6::SRC).ok_or(DropReason::Ipv6Truncated)?;
    let dst = addr(ip, field::ipv6::DST).ok_or(DropReason::Ipv6Truncated)?;
    if src.is_loopback() {
        return Err(DropReason::MartianSource);
    }
    if dst.is_loopback() {
        return Err(DropReason::MartianDst);
    }
    if dst.is_multicast() && dst.octets()[1] & 0x0f <= 1 {
        return Err(DropReason::MartianDst);
    }
    if src.is_multicast() {
        return Err(DropReason::MartianSource);
    }
    let payload_len = read16(ip, field::ipv6::PAYLOAD_LEN).ok_or(DropReason::Ipv6Truncated)?;
    let first_nh = read8(ip, field::ipv6::NEXT_HEADER).ok_or(DropReason::Ipv6Truncated)?;
    if payload_len == 0 && first_nh == NEXTHDR_HOP {
        return Err(DropReason::Ipv6Jumbogram);
    }
    let datagram = ip
        .get(..IPV6_HDR + usize::from(payload_len))
        .ok_or(DropReason::Ipv6Truncated)?;
    // Cannot fail after the checks above.
    let pkt = Ipv6Packet::new_checked(datagram).map_err(|_| DropReason::Ipv6Truncated)?;

    let l3 = ETH_HDR;
    let walk = walk(datagram, first_nh, dst.is_multicast(), check_options)
        .map_err(|(reason, _)| reason)?;
    let l4 = l3 + walk.off;
    let ext = walk.ext;
    let first_fragment = ext.frag.is_none_or(|f| f.offset == 0);
    let fragment = ext.frag.is_some_and(|f| f.offset != 0 || f.more);
    let l4info = if first_fragment {
        let data = datagram.get(walk.off..).unwrap_or_default();
        parse_l4(walk.proto, data, l4)?
    } else {
        L4v6::Other
    };
    Ok(Ipv6Info {
        l3,
        l4,
        payload_len,
        src,
        dst,
        proto: walk.proto,
        hop_limit: pkt.hop_limit(),
        tclass: pkt.traffic_class(),
        flow_label: pkt.flow_label(),
        ext,
        fragment,
        first_fragment,
        l4info,
    })
}

/// The parameter problem Linux's `ip6_parse_tlv` answers a datagram's
/// hop-by-hop options with, when [`parse_ipv6`] refuses them
/// (`Ipv6BadOption`, `Ipv6Jumbogram`) and Linux would answer: an unknown
/// option whose type says "discard and send" (code 2, pointing at the
/// option: the top bits 10, or 11 unless the destination is multicast), or
/// a jumbo payload option with a wrong length or alignment, a value below
/// 65,536, or a non-zero payload length in the IPv6 header (code 0,
/// pointing at the field). The pointer is an offset from the start of the
/// IPv6 header, as the error carries it. With it comes the frame's parse
/// without the options' checks, for
/// [`build_icmpv6_error`](super::build_icmpv6_error). `None` for the other
/// cases (Linux drops them silently) and for anything [`parse_ipv6`] takes.
pub fn hop_by_hop_problem(frame: &[u8]) -> Option<(OptionProblem, Ipv6Info)> {
    let ip = frame.get(ETH_HDR..)?;
    if read8(ip, field::ipv6::NEXT_HEADER)? != NEXTHDR_HOP {
        return None;
    }
    let payload_len = read16(ip, field::ipv6::PAYLOAD_LEN)?;
    let datagram = ip.get(..IPV6_HDR + usize::from(payload_len))?;
    let dst_multicast = read8(ip, field::ipv6::DST)? == 0xff;
    let len = (usize::from(read8(datagram, IPV6_HDR + 1)?) + 1) * 8;
    let hdr = datagram.get(IPV6_HDR..IPV6_HDR + len)?;
    let problem = hop_options(hdr, IPV6_HDR, payload_len, dst_multicast)
        .err()
        .and_then(|(_, problem)| problem)?;
    Some((problem, parse(frame, false).ok()?))
}

/// A parameter problem to answer with (type 4): its code and pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionProblem {
    pub code: u8,
    pub pointer: u32,
}

/// What the walk of the extension headers found.
struct Walk {
    /// Offset in the datagram where it stopped.
    off: usize,
    proto: u8,
    ext: ExtHeaders,
}

type WalkError = (DropReason, Option<OptionProblem>);

fn walk(
    datagram: &[u8],
    first: u8,
    dst_multicast: bool,
    check_options: bool,
) -> Result<Walk, WalkError> {
    let bad = (DropReason::Ipv6BadExtHeader, None);
    let payload_len = u16::try_from(datagram.len().saturating_sub(IPV6_HDR)).unwrap_or(u16::MAX);
    let mut ext = ExtHeaders::default();
    let mut nh = first;
    let mut off = IPV6_HDR;
    loop {
        match nh {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_DEST | NEXTHDR_AUTH => {}
            NEXTHDR_NONE => {
                ext.mask |= MASK_NONE;
                break;
            }
            NEXTHDR_ESP => {
                ext.mask |= MASK_ESP;
                break;
            }
            _ => {
                ext.mask |= MASK_PROTO;
                break;
            }
        }
        if nh == NEXTHDR_HOP && ext.count > 0 {
            return Err((DropReason::Ipv6HopByHopNotFirst, None));
        }
        if ext.count >= MAX_EXT_HEADERS {
            return Err((DropReason::Ipv6TooManyExtHeaders, None));
        }
        ext.count += 1;
        let next = read8(datagram, off).ok_or(bad)?;
        let hdr_len = usize::from(read8(datagram, off + 1).ok_or(bad)?);
        let len = match nh {
            NEXTHDR_FRAGMENT => 8,
            NEXTHDR_AUTH => (hdr_len + 2) * 4,
            _ => (hdr_len + 1) * 8,
        };
        let hdr = datagram.get(off..off + len).ok_or(bad)?;
        let at = ETH_HDR + off;
        match nh {
            NEXTHDR_HOP => {
                ext.mask |= MASK_HOPOPTS;
                ext.hop_by_hop = Some(at);
                let options = hop_options(hdr, off, payload_len, dst_multicast);
                ext.router_alert = match options {
                    Ok(ra) => ra,
                    Err(e) if check_options => return Err(e),
                    Err(_) => None,
                };
            }
            NEXTHDR_ROUTING => {
                ext.mask |= MASK_ROUTING;
                if ext.routing.is_none() {
                    ext.routing = Some(RoutingHeader {
                        at,
                        len,
                        ty: read8(hdr, 2).unwrap_or(0),
                        segments_left: read8(hdr, 3).unwrap_or(0),
                    });
                }
            }
            NEXTHDR_FRAGMENT => {
                ext.mask |= MASK_FRAGMENT;
                let frag_off = read16(hdr, 2).unwrap_or(0);
                let frag = FragHeader {
                    at,
                    next_header: next,
                    offset: frag_off >> 3,
                    more: frag_off & 1 != 0,
                    id: read32(hdr, 4).unwrap_or(0),
                    reserved: read8(hdr, 1).unwrap_or(0),
                    reserved_bits: ((frag_off >> 1) & 3) as u8,
                };
                if ext.frag.is_none() {
                    ext.frag = Some(frag);
                }
                if frag.offset != 0 {
                    // A non-first fragment: its data follows (and the next
                    // header is the protocol, to ipv6_find_hdr).
                    off += len;
                    nh = next;
                    if !is_ext_header(nh) && nh != NEXTHDR_ESP {
                        ext.mask |= MASK_PROTO;
                    }
                    break;
                }
            }
            NEXTHDR_DEST => {
                ext.mask |= MASK_DSTOPTS;
                ext.dest_opts.get_or_insert(at);
            }
            _ => ext.mask |= MASK_AH,
        }
        nh = next;
        off += len;
    }
    Ok(Walk {
        off,
        proto: nh,
        ext,
    })
}

/// Linux's `ipv6_ext_hdr`, and AH.
fn is_ext_header(nh: u8) -> bool {
    matches!(
        nh,
        NEXTHDR_HOP
            | NEXTHDR_ROUTING
            | NEXTHDR_FRAGMENT
            | NEXTHDR_DEST
            | NEXTHDR_AUTH
            | NEXTHDR_NONE
    )
}

/// The hop-by-hop options in `hdr` (the whole header, at offset `off` of
/// the IPv6 header), checked as Linux's `ip6_parse_tlv(true, ...)` does:
/// Pad1 and PadN pad at most 7 bytes in a row, PadN's bytes are zero; an
/// option's length fits in the header; at most 8 options other than
/// padding; a router alert is 2 bytes long (`ipv6_hop_ra`); a jumbo
/// payload option is refused (`ipv6_hop_jumbo`'s checks give the pointer
/// of Linux's answer); CALIPSO is refused (no DOI is configured, so
/// `calipso_validate` fails); IOAM must be 4n-aligned and is then ignored
/// (off by default, `ioam6_enabled`); an unknown option is skipped or discards the datagram
/// by the top two bits of its type (`ip6_tlvopt_unknown`). Returns the
/// router alert's value, if any.
fn hop_options(
    hdr: &[u8],
    off: usize,
    payload_len: u16,
    dst_multicast: bool,
) -> Result<Option<u16>, WalkError> {
    let bad = (DropReason::Ipv6BadOption, None);
    let at = |i: usize| u32::try_from(off + i).unwrap_or(u32::MAX);
    let problem = |reason, code, i| {
        Err((
            reason,
            Some(OptionProblem {
                code,
                pointer: at(i),
            }),
        ))
    };
    let mut router_alert = None;
    let mut padlen = 0;
    let mut count = 0;
    let mut i = 2;
    while i < hdr.len() {
        let ty = read8(hdr, i).ok_or(bad)?;
        if ty == TLV_PAD1 {
            padlen += 1;
            if padlen > 7 {
                return Err(bad);
            }
            i += 1;
            continue;
        }
        let optlen = usize::from(read8(hdr, i + 1).ok_or(bad)?) + 2;
        let opt = hdr.get(i..i + optlen).ok_or(bad)?;
        if ty == TLV_PADN {
            padlen += optlen;
            if padlen > 7 || opt.iter().skip(2).any(|&b| b != 0) {
                return Err(bad);
            }
        } else {
            count += 1;
            if count > MAX_HBH_OPTS {
                return Err(bad);
            }
            match ty {
                TLV_ROUTERALERT => {
                    if optlen != 4 {
                        return Err(bad);
                    }
                    router_alert = read16(opt, 2);
                }
                TLV_JUMBO => {
                    let jumbo = DropReason::Ipv6Jumbogram;
                    if optlen != 6 || (off + i) & 3 != 2 {
                        return problem(jumbo, ICMPV6_HDR_FIELD, i + 1);
                    }
                    if read32(opt, 2).unwrap_or(0) <= 0xffff {
                        return problem(jumbo, ICMPV6_HDR_FIELD, i + 2);
                    }
                    if payload_len != 0 {
                        return problem(jumbo, ICMPV6_HDR_FIELD, i);
                    }
                    return Err((jumbo, None));
                }
                TLV_CALIPSO => return Err(bad),
                // ipv6_hop_ioam: 4n-aligned, then ignored (IOAM is off).
                TLV_IOAM if (off + i) & 3 != 0 => return Err(bad),
                TLV_IOAM => {}
                _ => match ty >> 6 {
                    0 => {}
                    1 => return Err(bad),
                    3 if dst_multicast => return Err(bad),
                    _ => return problem(DropReason::Ipv6BadOption, ICMPV6_UNK_OPTION, i),
                },
            }
            padlen = 0;
        }
        i += optlen;
    }
    Ok(router_alert)
}

/// The transport header at the start of `data`, at offset `l4` of the frame.
fn parse_l4(proto: u8, data: &[u8], l4: usize) -> Result<L4v6, DropReason> {
    match proto {
        NEXTHDR_TCP => parse_tcp(data).map(L4v6::Tcp),
        NEXTHDR_UDP => {
            crate::wire::parse::udp_ports(data).map(|(sport, dport)| L4v6::Udp { sport, dport })
        }
        NEXTHDR_ICMPV6 => parse_icmpv6(data, l4).map(L4v6::Icmp),
        _ => Ok(L4v6::Other),
    }
}

fn parse_icmpv6(data: &[u8], l4: usize) -> Result<Icmpv6Info, DropReason> {
    if data.len() < field::icmpv6::LEN {
        return Err(DropReason::IcmpTruncated);
    }
    let ty = read8(data, field::icmpv6::TYPE).ok_or(DropReason::IcmpTruncated)?;
    let code = read8(data, field::icmpv6::CODE).ok_or(DropReason::IcmpTruncated)?;
    let is_query = icmpv6_is_query(ty);
    let is_error = icmpv6_is_error(ty);
    let inner = if is_error {
        data.get(field::icmpv6::LEN..)
            .and_then(|quote| parse_inner(quote, l4 + field::icmpv6::LEN))
    } else {
        None
    };
    Ok(Icmpv6Info {
        ty,
        code,
        id: if is_query {
            read16(data, field::icmpv6::ID).unwrap_or(0)
        } else {
            0
        },
        is_query,
        is_error,
        is_ndp: icmpv6_is_ndp(ty),
        inner,
    })
}

/// The datagram quoted by an ICMPv6 error, at offset `l3` of the frame: a
/// partial view (netstack3's idea), checked as far as it is read. Its
/// extension headers are walked as `ipv6_skip_exthdr` walks them (what
/// conntrack's `icmpv6_error_message` does) within the quote; "no next
/// header", a header cut off, or a non-first fragment give `None`.
fn parse_inner(quote: &[u8], l3: usize) -> Option<Inner6Info> {
    if read8(quote, 0)? >> 4 != 6 {
        return None;
    }
    let src = addr(quote, field::ipv6::SRC)?;
    let dst = addr(quote, field::ipv6::DST)?;
    let mut nh = read8(quote, field::ipv6::NEXT_HEADER)?;
    let mut off = IPV6_HDR;
    let mut count = 0;
    while is_ext_header(nh) {
        count += 1;
        if nh == NEXTHDR_NONE || count > MAX_EXT_HEADERS {
            return None;
        }
        let next = read8(quote, off)?;
        let len = match nh {
            NEXTHDR_FRAGMENT => {
                if read16(quote, off + 2)? & !7 != 0 {
                    return None;
                }
                8
            }
            NEXTHDR_AUTH => (usize::from(read8(quote, off + 1)?) + 2) * 4,
            _ => (usize::from(read8(quote, off + 1)?) + 1) * 8,
        };
        nh = next;
        off += len;
    }
    let l4 = quote.get(off..)?;
    if l4.len() < 8 {
        return None;
    }
    let (sport, dport) = match nh {
        NEXTHDR_TCP | NEXTHDR_UDP => (read16(l4, 0)?, read16(l4, 2)?),
        NEXTHDR_ICMPV6 if icmpv6_is_query(read8(l4, 0)?) => {
            let id = read16(l4, field::icmpv6::ID)?;
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Inner6Info {
        l3,
        l4: l3 + off,
        src,
        dst,
        proto: nh,
        sport,
        dport,
        l4_len: l4.len(),
    })
}

/// The IPv6 address at `off` of `buf`.
#[inline]
pub(super) fn addr(buf: &[u8], off: usize) -> Option<Ipv6Addr> {
    read128(buf, off).map(Ipv6Addr::from)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::super::fixture::{self, datagram, A, B, C, LL_A};
    use super::super::{ICMPV6_ECHO_REQUEST, ICMPV6_PKT_TOOBIG, MASK_PROTO};
    use super::*;
    use crate::wire::{parse_ipv4, TCP_SYN};
    use proptest::prelude::*;

    /// A UDP header from port 1 to port 2 (checksum not computed).
    const UDP8: [u8; 8] = [0, 1, 0, 2, 0, 8, 0, 0];

    fn icmp(info: &Ipv6Info) -> Icmpv6Info {
        match info.l4info {
            L4v6::Icmp(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn echo_request() {
        let info = parse_ipv6(&fixture::ECHO_REQUEST).unwrap();
        assert_eq!(
            info,
            Ipv6Info {
                l3: 14,
                l4: 54,
                payload_len: 24,
                src: A,
                dst: B,
                proto: NEXTHDR_ICMPV6,
                hop_limit: 64,
                tclass: 0,
                flow_label: 0x6afb5,
                ext: ExtHeaders {
                    mask: MASK_PROTO,
                    ..ExtHeaders::default()
                },
                fragment: false,
                first_fragment: true,
                l4info: L4v6::Icmp(Icmpv6Info {
                    ty: ICMPV6_ECHO_REQUEST,
                    code: 0,
                    id: u16::from_be_bytes([fixture::ECHO_REQUEST[58], fixture::ECHO_REQUEST[59]]),
                    is_query: true,
                    is_error: false,
                    is_ndp: false,
                    inner: None,
                }),
            }
        );
        let reply = parse_ipv6(&fixture::ECHO_REPLY).unwrap();
        assert_eq!(
            (reply.src, reply.dst, icmp(&reply).id),
            (B, A, icmp(&info).id)
        );
        assert!(icmp(&reply).is_query);
    }

    #[test]
    fn tcp_syn() {
        let info = parse_ipv6(&fixture::TCP_SYN).unwrap();
        let L4v6::Tcp(t) = info.l4info else { panic!() };
        assert_eq!((t.sport, t.dport, t.flags), (40080, 80, TCP_SYN));
        assert_eq!((t.header_len, t.payload_len), (40, 0));
        assert_eq!((t.wscale, t.sack_perm), (Some(10), true));
        assert_eq!((info.proto, info.l4, info.ext.mask), (6, 54, MASK_PROTO));
    }

    #[test]
    fn hop_by_hop_router_alert() {
        let info = parse_ipv6(&fixture::MLD_REPORT).unwrap();
        assert_eq!(info.ext.hop_by_hop, Some(54));
        assert_eq!(info.ext.router_alert, Some(0));
        assert_eq!(info.ext.mask, MASK_HOPOPTS | MASK_PROTO);
        assert_eq!((info.ext.count, info.l4, info.proto), (1, 62, 58));
        assert_eq!((info.src, info.hop_limit), (LL_A, 1));
        let i = icmp(&info);
        assert_eq!(
            (i.ty, i.is_error, i.is_ndp, i.is_query),
            (143, false, false, false)
        );
    }

    #[test]
    fn destination_options() {
        let info = parse_ipv6(&fixture::UDP_DSTOPT).unwrap();
        assert_eq!(info.ext.dest_opts, Some(54));
        assert_eq!(info.ext.mask, MASK_DSTOPTS | MASK_PROTO);
        assert_eq!(
            info.l4info,
            L4v6::Udp {
                sport: 40000,
                dport: 9
            }
        );
        assert_eq!(info.l4, 62);
    }

    #[test]
    fn fragments() {
        let first = parse_ipv6(&fixture::frag_first()).unwrap();
        let frag = first.ext.frag.unwrap();
        assert_eq!(
            (frag.at, frag.next_header, frag.offset, frag.more),
            (54, 58, 0, true)
        );
        assert_eq!((frag.reserved, frag.reserved_bits), (0, 0));
        assert!(first.fragment && first.first_fragment);
        assert_eq!((first.proto, first.l4), (58, 62));
        assert_eq!(icmp(&first).ty, ICMPV6_ECHO_REQUEST);
        assert_eq!(first.ext.mask, MASK_FRAGMENT | MASK_PROTO);

        let last = parse_ipv6(&fixture::frag_last()).unwrap();
        let lf = last.ext.frag.unwrap();
        assert_eq!((lf.offset, lf.more, lf.id), (1448 / 8, false, frag.id));
        assert!(last.fragment && !last.first_fragment);
        assert_eq!((last.proto, last.l4, last.l4info), (58, 62, L4v6::Other));
        assert_eq!(last.ext.mask, MASK_FRAGMENT | MASK_PROTO);

        // An atomic fragment (offset 0, no M) is whole (RFC 6946).
        let mut atomic = fixture::frag_first();
        atomic[57] = 0;
        let info = parse_ipv6(&atomic).unwrap();
        assert!(!info.fragment && info.first_fragment && info.ext.frag.is_some());
    }

    #[test]
    fn icmpv6_errors_quote_a_datagram() {
        let info = parse_ipv6(&fixture::UDP_PORT_UNREACH).unwrap();
        let i = icmp(&info);
        assert_eq!((i.ty, i.code, i.is_error, i.id), (1, 4, true, 0));
        assert_eq!(
            i.inner,
            Some(Inner6Info {
                l3: 62,
                l4: 102,
                src: A,
                dst: B,
                proto: 17,
                sport: 40000,
                dport: 9,
                l4_len: 13,
            })
        );
        // Its extension headers are walked.
        let info = parse_ipv6(&fixture::UDP_DSTOPT_PORT_UNREACH).unwrap();
        let inner = icmp(&info).inner.unwrap();
        assert_eq!((inner.l4, inner.proto, inner.sport), (110, 17, 40000));
        // From the router, about a datagram to C.
        let info = parse_ipv6(&fixture::UDP_HOP1_TIME_EXCEEDED).unwrap();
        let inner = icmp(&info).inner.unwrap();
        assert_eq!((icmp(&info).ty, inner.dst, inner.dport), (3, C, 7));
        // A quoted echo: its id as both ports; cut at 1,280 bytes.
        let f = fixture::echo_1400_too_big();
        assert_eq!(f.len(), 14 + 1280);
        let info = parse_ipv6(&f).unwrap();
        let i = icmp(&info);
        let inner = i.inner.unwrap();
        assert_eq!(i.ty, ICMPV6_PKT_TOOBIG);
        assert_eq!(u32::from_be_bytes(f[58..62].try_into().unwrap()), 1280);
        let id = u16::from_be_bytes([f[106], f[107]]);
        assert_eq!((inner.proto, inner.sport, inner.dport), (58, id, id));
        assert_eq!(inner.l4_len, 1280 - 40 - 8 - 40);
        let tcp = parse_ipv6(&fixture::TCP_SYN_81_ADM_PROHIBITED).unwrap();
        let inner = icmp(&tcp).inner.unwrap();
        assert_eq!((icmp(&tcp).code, inner.proto, inner.dport), (1, 6, 81));
    }

    #[test]
    fn neighbour_discovery_is_flagged() {
        for (f, ty) in [
            (&fixture::RS[..], 133),
            (&fixture::RA[..], 134),
            (&fixture::NS[..], 135),
            (&fixture::NS_DAD[..], 135),
            (&fixture::NA[..], 136),
        ] {
            let i = icmp(&parse_ipv6(f).unwrap());
            assert_eq!((i.ty, i.is_ndp, i.is_error), (ty, true, false));
        }
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        for (name, f) in fixture::ipv6_frames() {
            let want = parse_ipv6(&f).unwrap();
            let mut padded = f.clone();
            padded.extend_from_slice(&[0xee; 18]);
            assert_eq!(parse_ipv6(&padded), Ok(want), "{name}");
        }
    }

    /// Every prefix of every fixture: EthTruncated or Ipv6Truncated, never
    /// a panic; the whole one parses.
    #[test]
    fn truncated_at_every_length() {
        for (name, f) in fixture::ipv6_frames() {
            for n in 0..f.len() {
                let want = if n < ETH_HDR {
                    DropReason::EthTruncated
                } else {
                    DropReason::Ipv6Truncated
                };
                assert_eq!(parse_ipv6(&f[..n]), Err(want), "{name} cut at {n}");
            }
            assert!(parse_ipv6(&f).is_ok(), "{name}");
        }
    }

    #[test]
    fn not_ipv6() {
        assert_eq!(
            parse_ipv6(&crate::wire::fixture::TCP_SYN),
            Err(DropReason::NotIpv6)
        );
        assert_eq!(parse_ipv4(&fixture::TCP_SYN), Err(DropReason::NotIpv4));
    }

    #[test]
    fn ip6_rcv_core_checks() {
        use DropReason::*;
        let edit = |at: usize, bytes: &[u8]| {
            let mut f = fixture::UDP.to_vec();
            f[at..at + bytes.len()].copy_from_slice(bytes);
            parse_ipv6(&f)
        };
        assert_eq!(edit(14, &[0x40]), Err(Ipv6BadVersion));
        assert_eq!(edit(14, &[0x70]), Err(Ipv6BadVersion));
        let loopback = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(edit(22, &loopback), Err(MartianSource));
        assert_eq!(edit(38, &loopback), Err(MartianDst));
        // Multicast destinations of scope 0 and 1; 2 (link) is fine.
        assert_eq!(edit(38, &[0xff, 0x00]), Err(MartianDst));
        assert_eq!(edit(38, &[0xff, 0x01]), Err(MartianDst));
        assert_eq!(edit(38, &[0xff, 0x11]), Err(MartianDst));
        assert!(edit(38, &[0xff, 0x02]).is_ok());
        assert!(edit(38, &[0xff, 0x0e]).is_ok());
        assert_eq!(edit(22, &[0xff, 0x02]), Err(MartianSource));
        // Payload length beyond the frame; shorter is padding.
        assert_eq!(edit(18, &[0, 14]), Err(Ipv6Truncated));
        assert_eq!(edit(18, &[0, 7]), Err(L4Truncated));
        assert!(edit(18, &[0, 8]).is_ok());
        assert_eq!(edit(18, &[0, 0]), Err(L4Truncated));
        // A jumbogram: payload length 0 and a hop-by-hop header.
        let mut jumbo = datagram(NEXTHDR_HOP, &[17, 0, 0xc2, 4, 0, 1, 0, 0]);
        jumbo[18..20].copy_from_slice(&[0, 0]);
        jumbo.extend_from_slice(&[0; 65536 - 8]);
        assert_eq!(parse_ipv6(&jumbo), Err(Ipv6Jumbogram));
        assert_eq!(hop_by_hop_problem(&jumbo), None);
    }

    #[test]
    fn extension_header_walk() {
        use DropReason::*;
        // Hop-by-hop, destination options, routing (type 0, 2 segments
        // left, one address), AH (length in 4-byte units), UDP.
        let mut p = vec![NEXTHDR_DEST, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[NEXTHDR_ROUTING, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[NEXTHDR_AUTH, 2, 0, 2, 0, 0, 0, 0]);
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[NEXTHDR_UDP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&UDP8);
        let info = parse_ipv6(&datagram(NEXTHDR_HOP, &p)).unwrap();
        assert_eq!(
            info.ext.mask,
            MASK_HOPOPTS | MASK_DSTOPTS | MASK_ROUTING | MASK_AH | MASK_PROTO
        );
        assert_eq!(info.ext.count, 4);
        assert_eq!(
            info.ext.routing,
            Some(RoutingHeader {
                at: 70,
                len: 24,
                ty: 0,
                segments_left: 2,
            })
        );
        assert_eq!(
            (info.ext.hop_by_hop, info.ext.dest_opts),
            (Some(54), Some(62))
        );
        assert_eq!(info.ext.router_alert, None);
        assert_eq!((info.l4, info.proto), (54 + 8 + 8 + 24 + 12, NEXTHDR_UDP));
        assert_eq!(info.l4info, L4v6::Udp { sport: 1, dport: 2 });

        // ESP and "no next header" end the walk.
        let esp = parse_ipv6(&datagram(
            NEXTHDR_DEST,
            &[NEXTHDR_ESP, 0, 1, 4, 0, 0, 0, 0, 9],
        ))
        .unwrap();
        assert_eq!(
            (esp.proto, esp.l4, esp.l4info),
            (NEXTHDR_ESP, 62, L4v6::Other)
        );
        assert_eq!(esp.ext.mask, MASK_DSTOPTS | MASK_ESP);
        let none = parse_ipv6(&datagram(NEXTHDR_NONE, &[1, 2, 3])).unwrap();
        assert_eq!(
            (none.proto, none.l4, none.ext.mask),
            (NEXTHDR_NONE, 54, MASK_NONE)
        );
        // Mobility (135) and unknown values are upper-layer protocols.
        let mh = parse_ipv6(&datagram(135, &[59, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(
            (mh.proto, mh.ext.mask, mh.l4info),
            (135, MASK_PROTO, L4v6::Other)
        );

        // Hop-by-hop after another header.
        let late = [
            NEXTHDR_HOP,
            0,
            1,
            4,
            0,
            0,
            0,
            0,
            NEXTHDR_UDP,
            0,
            1,
            4,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            parse_ipv6(&datagram(NEXTHDR_DEST, &late)),
            Err(Ipv6HopByHopNotFirst)
        );
        // A header past the payload (a routing header claiming 16 bytes).
        let cut = [NEXTHDR_UDP, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(
            parse_ipv6(&datagram(NEXTHDR_ROUTING, &cut)),
            Err(Ipv6BadExtHeader)
        );
        assert_eq!(
            parse_ipv6(&datagram(NEXTHDR_DEST, &[17])),
            Err(Ipv6BadExtHeader)
        );
        assert_eq!(
            parse_ipv6(&datagram(NEXTHDR_FRAGMENT, &[17, 0, 0, 0])),
            Err(Ipv6BadExtHeader)
        );
        // 16 destination options headers pass, 17 do not.
        let chain = |n: usize| {
            let mut p = Vec::new();
            for i in 0..n {
                let next = if i + 1 == n {
                    NEXTHDR_UDP
                } else {
                    NEXTHDR_DEST
                };
                p.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            p.extend_from_slice(&UDP8);
            datagram(NEXTHDR_DEST, &p)
        };
        assert_eq!(parse_ipv6(&chain(16)).unwrap().ext.count, 16);
        assert_eq!(parse_ipv6(&chain(17)), Err(Ipv6TooManyExtHeaders));
        // A first fragment must hold the transport header.
        let frag = [NEXTHDR_UDP, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 2];
        assert_eq!(
            parse_ipv6(&datagram(NEXTHDR_FRAGMENT, &frag)),
            Err(L4Truncated)
        );
        // A non-first fragment need not; its reserved fields are reported.
        let frag = [NEXTHDR_UDP, 0x5a, 0, 0x0f, 0, 0, 0, 7, 1];
        let info = parse_ipv6(&datagram(NEXTHDR_FRAGMENT, &frag)).unwrap();
        let fh = info.ext.frag.unwrap();
        assert_eq!(
            (fh.offset, fh.more, fh.reserved, fh.reserved_bits, fh.id),
            (1, true, 0x5a, 3, 7)
        );
        assert_eq!(
            (info.proto, info.l4, info.l4info),
            (NEXTHDR_UDP, 62, L4v6::Other)
        );
    }

    /// `hdr` as a hop-by-hop header before UDP (its length set).
    fn hbh(opts: &[u8]) -> Vec<u8> {
        let mut p = vec![NEXTHDR_UDP, (opts.len() as u8 + 2) / 8 - 1];
        p.extend_from_slice(opts);
        p.extend_from_slice(&UDP8);
        datagram(NEXTHDR_HOP, &p)
    }

    #[test]
    fn hop_by_hop_options_as_ip6_parse_tlv() {
        use DropReason::*;
        let ok = |opts: &[u8]| parse_ipv6(&hbh(opts)).map(|i| i.ext.router_alert);
        let problem = |opts: &[u8]| hop_by_hop_problem(&hbh(opts)).map(|(p, _)| p);
        assert_eq!(ok(&[1, 4, 0, 0, 0, 0]), Ok(None));
        assert_eq!(ok(&[0, 0, 0, 0, 0, 0]), Ok(None));
        assert_eq!(ok(&[5, 2, 0, 1, 1, 0]), Ok(Some(1)));
        // Padding: non-zero PadN, more than 7 bytes in a row.
        assert_eq!(ok(&[1, 4, 0, 0, 1, 0]), Err(Ipv6BadOption));
        assert_eq!(
            ok(&[1, 4, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0]),
            Err(Ipv6BadOption)
        );
        assert_eq!(
            ok(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Ipv6BadOption)
        );
        // An option running past the header; a router alert of length 3.
        assert_eq!(ok(&[1, 5, 0, 0, 0, 0]), Err(Ipv6BadOption));
        assert_eq!(ok(&[5, 3, 0, 1, 0, 0]), Err(Ipv6BadOption));
        assert_eq!(problem(&[5, 3, 0, 1, 0, 0]), None);
        // Unknown options by their top bits: skip, discard, discard and
        // answer (pointer at the option, from the IPv6 header), answer
        // unless multicast.
        assert_eq!(ok(&[0x1e, 4, 9, 9, 9, 9]), Ok(None));
        assert_eq!(ok(&[0x5e, 4, 9, 9, 9, 9]), Err(Ipv6BadOption));
        assert_eq!(problem(&[0x5e, 4, 9, 9, 9, 9]), None);
        assert_eq!(ok(&[1, 0, 0x9e, 2, 9, 9]), Err(Ipv6BadOption));
        let want = Some(OptionProblem {
            code: ICMPV6_UNK_OPTION,
            pointer: 44,
        });
        assert_eq!(problem(&[1, 0, 0x9e, 2, 9, 9]), want);
        assert_eq!(problem(&[1, 0, 0xde, 2, 9, 9]), want);
        let mut mcast = hbh(&[1, 0, 0xde, 2, 9, 9]);
        mcast[38..40].copy_from_slice(&[0xff, 0x02]);
        assert_eq!(parse_ipv6(&mcast), Err(Ipv6BadOption));
        assert_eq!(hop_by_hop_problem(&mcast), None);
        // With the problem comes the parse, options unchecked.
        let (_, info) = hop_by_hop_problem(&hbh(&[1, 0, 0x9e, 2, 9, 9])).unwrap();
        assert_eq!(
            (info.ext.hop_by_hop, info.l4info),
            (Some(54), L4v6::Udp { sport: 1, dport: 2 })
        );
        // CALIPSO is refused; IOAM ignored; at most 8 options.
        assert_eq!(ok(&[7, 4, 0, 0, 0, 0]), Err(Ipv6BadOption));
        assert_eq!(ok(&[0x31, 4, 0, 0, 0, 0]), Err(Ipv6BadOption));
        assert_eq!(ok(&[1, 0, 0x31, 2, 0, 0]), Ok(None));
        let nine = [0x1e, 0].repeat(9);
        let mut opts = nine.clone();
        opts.extend_from_slice(&[1, 2, 0, 0]);
        assert_eq!(ok(&opts), Err(Ipv6BadOption));
        let mut eight = [0x1e, 0].repeat(8);
        eight.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
        assert_eq!(ok(&eight), Ok(None));
        // A jumbo payload option, wrong in each of ipv6_hop_jumbo's ways.
        assert_eq!(ok(&[0xc2, 4, 0, 1, 0, 0]), Err(Ipv6Jumbogram));
        let at = |pointer| {
            Some(OptionProblem {
                code: ICMPV6_HDR_FIELD,
                pointer,
            })
        };
        assert_eq!(problem(&[0xc2, 4, 0, 1, 0, 0]), at(42));
        assert_eq!(problem(&[0xc2, 4, 0, 0, 0xff, 0xff]), at(44));
        assert_eq!(problem(&[0xc2, 3, 0, 0, 0xff, 0]), at(43));
        // Misaligned (at 43): the pointer is at its length byte.
        assert_eq!(
            problem(&[0, 0xc2, 4, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 0]),
            at(44)
        );
        assert_eq!(hop_by_hop_problem(&fixture::UDP), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_ipv6(&data);
            let _ = hop_by_hop_problem(&data);
        }

        /// Random payloads behind a real header, with next header values
        /// that reach every branch; offsets stay within the frame.
        #[test]
        fn random_datagrams_never_panic(
            nh in prop_oneof![Just(0u8), Just(6), Just(17), Just(43), Just(44), Just(50), Just(51), Just(58), Just(59), Just(60), any::<u8>()],
            body in proptest::collection::vec(any::<u8>(), 0..300),
            len_delta in -8i32..8,
        ) {
            let mut f = datagram(nh, &body);
            let plen = (body.len() as i32 + len_delta).clamp(0, 0xffff) as u16;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            let _ = hop_by_hop_problem(&f);
            if let Ok(info) = parse_ipv6(&f) {
                prop_assert!(info.l4 <= f.len());
                prop_assert!(54 + usize::from(info.payload_len) <= f.len());
                if let L4v6::Icmp(Icmpv6Info { inner: Some(inner), .. }) = info.l4info {
                    prop_assert!(inner.l4 + inner.l4_len <= f.len());
                    prop_assert!(inner.l4_len >= 8);
                }
            }
        }
    }
}
