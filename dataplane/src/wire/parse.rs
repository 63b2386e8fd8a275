//! Validation and parsing: Ethernet, IPv4 with its transport header, ARP.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpHardware, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Packet, Ipv4Packet, TcpPacket,
};

use super::field::{self, read16, read32, read8};
use super::{
    icmp_is_error, icmp_is_query, ArpInfo, IcmpInfo, InnerInfo, Ipv4Info, TcpInfo, ARP_REPLY,
    ARP_REQUEST, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR, L4,
};
use crate::drop::DropReason;
use crate::flow::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// The ethertype of an Ethernet II frame (its payload starts at [`ETH_HDR`]).
/// Values below 0x0600 (802.3 lengths) are returned as they are; the caller
/// recognises none of them. Errors: `EthTruncated`.
#[inline]
pub fn ethertype(frame: &[u8]) -> Result<u16, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    Ok(u16::from(eth.ethertype()))
}

/// Validates and parses an IPv4 frame (Ethernet header included).
///
/// Checks, in Linux's `ip_rcv_core` order, each failure with its reason:
/// the Ethernet header is there (`EthTruncated`) and says IPv4 (`NotIpv4`);
/// 20 bytes of header are there (`Ipv4Truncated`); version 4
/// (`Ipv4BadVersion`); IHL >= 5 (`Ipv4BadHeaderLen`); the whole header with
/// its options is there (`Ipv4Truncated`); its checksum is right
/// (`Ipv4BadChecksum`); total length >= header length (`Ipv4BadTotalLen`);
/// the frame holds the total length (`Ipv4Truncated`, Linux's
/// InTruncatedPkts: a frame cut short is the common cause). So any
/// truncation of a valid frame fails with `EthTruncated` or `Ipv4Truncated`.
/// Ethernet padding beyond the total length is ignored.
///
/// The transport header of first fragments and unfragmented datagrams must
/// then be present: TCP's 20 bytes (`L4Truncated`) with a data offset of at
/// least 5 words that fits in the datagram (`TcpBadHeaderLen`); UDP's 8
/// bytes (`L4Truncated`; the UDP length field is not checked against the
/// datagram: a first fragment carries only part of it); ICMP's 8 bytes
/// (`IcmpTruncated`). TCP options are scanned for window scale and
/// SACK-permitted the way Linux's `tcp_parse_options` does (a malformed
/// option ends the scan; it is not an error). The datagram quoted by an
/// ICMP error goes into [`IcmpInfo::inner`] when usable (see there).
///
/// Fragments are parsed (`fragment` = true; non-first ones get
/// [`L4::Other`]); reassembling them is the caller's business
/// (`frag`). Transport checksums are not verified.
#[inline]
pub fn parse_ipv4(frame: &[u8]) -> Result<Ipv4Info, DropReason> {
    if ethertype(frame)? != ETHERTYPE_IPV4 {
        return Err(DropReason::NotIpv4);
    }
    let ip = frame.get(ETH_HDR..).unwrap_or_default();
    let ver_ihl = read8(ip, field::ipv4::VER_IHL).ok_or(DropReason::Ipv4Truncated)?;
    if ip.len() < field::ipv4::MIN_LEN {
        return Err(DropReason::Ipv4Truncated);
    }
    if ver_ihl >> 4 != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < field::ipv4::MIN_LEN {
        return Err(DropReason::Ipv4BadHeaderLen);
    }
    let header = ip.get(..ihl).ok_or(DropReason::Ipv4Truncated)?;
    if !super::checksum::verify(super::checksum::sum(header)) {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let total_len = read16(ip, field::ipv4::TOTAL_LEN).ok_or(DropReason::Ipv4Truncated)?;
    if usize::from(total_len) < ihl {
        return Err(DropReason::Ipv4BadTotalLen);
    }
    let datagram = ip
        .get(..usize::from(total_len))
        .ok_or(DropReason::Ipv4Truncated)?;
    // Cannot fail after the checks above (smoltcp does not check IHL >= 5,
    // which is why we check first).
    let pkt = Ipv4Packet::new_checked(datagram).map_err(|_| DropReason::Ipv4Truncated)?;

    let flags_frag = read16(ip, field::ipv4::FLAGS_FRAG).unwrap_or(0);
    let more_fragments = flags_frag & field::ipv4::FLAG_MF != 0;
    let first_fragment = flags_frag & field::ipv4::FRAG_OFFSET == 0;
    let proto = u8::from(pkt.next_header());
    let l3 = ETH_HDR;
    let l4 = l3 + ihl;
    let l4info = if first_fragment {
        parse_l4(proto, pkt.payload(), l4)?
    } else {
        L4::Other
    };
    Ok(Ipv4Info {
        l3,
        ihl,
        l4,
        total_len,
        src: pkt.src_addr(),
        dst: pkt.dst_addr(),
        proto,
        ttl: pkt.hop_limit(),
        tos: (pkt.dscp() << 2) | pkt.ecn(),
        id: pkt.ident(),
        df: pkt.dont_frag(),
        fragment: more_fragments || !first_fragment,
        first_fragment,
        l4info,
    })
}

/// The length field of the UDP header at the start of `seg`.
#[inline]
pub fn udp_len(seg: &[u8]) -> Option<u16> {
    read16(seg, field::udp::LENGTH)
}

/// What Linux's `ip_options_compile` makes of a received datagram's
/// options: `Ok(source_route)` when they are valid (`source_route`: a loose
/// or strict source route is among them), `Err(pointer)` when they are not,
/// with the offset from the start of the IP header of the byte at fault:
/// the pointer of the "parameter problem" Linux answers with.
///
/// `header` is the IP header with its options (`ihl` bytes). Checked as the
/// receive path does (an skb, so no CAP_NET_RAW questions): an option
/// length below 2 or beyond the options; record route, timestamp and CIPSO
/// more than once, or a second source route; source route or record route
/// shorter than 3 bytes or with a pointer below 4; record route with room
/// for less than one address at its pointer; timestamp shorter than 4 bytes,
/// pointer below 5, less than one slot at its pointer (an address and a
/// timestamp for flags 1 and 3), or its overflow counter at 15 when full;
/// router alert shorter than 4 bytes; CIPSO, which Linux refuses without a
/// configured DOI (pointer at its DOI, or at its length when shorter than 8
/// bytes; so a second CIPSO option is never reached). Other options (security, stream id, unknown ones) pass. An end of
/// list ends the scan.
pub fn ipv4_options(header: &[u8]) -> Result<bool, u8> {
    const END: u8 = 0;
    const NOOP: u8 = 1;
    const RR: u8 = 7;
    const TIMESTAMP: u8 = 68;
    const LSRR: u8 = 131;
    const CIPSO: u8 = 134;
    const SSRR: u8 = 137;
    const RA: u8 = 148;
    const TS_TSANDADDR: u8 = 1;
    const TS_PRESPEC: u8 = 3;
    let opts = header.get(field::ipv4::MIN_LEN..).unwrap_or_default();
    // Offsets fit a u8: an IPv4 header is at most 60 bytes.
    let at = |i: usize| (field::ipv4::MIN_LEN + i) as u8;
    let byte = |i: usize| opts.get(i).copied().unwrap_or(0);
    let (mut srr, mut rr, mut ts) = (false, false, false);
    let mut i = 0;
    while i < opts.len() {
        let left = opts.len() - i;
        match byte(i) {
            END => break,
            NOOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if left < 2 {
            return Err(at(i));
        }
        let len = usize::from(byte(i + 1));
        if len < 2 || len > left {
            return Err(at(i));
        }
        let ptr = usize::from(byte(i + 2));
        match byte(i) {
            LSRR | SSRR => {
                if len < 3 {
                    return Err(at(i + 1));
                }
                if ptr < 4 {
                    return Err(at(i + 2));
                }
                if srr {
                    return Err(at(i));
                }
                srr = true;
            }
            RR => {
                if rr {
                    return Err(at(i));
                }
                if len < 3 {
                    return Err(at(i + 1));
                }
                if ptr < 4 {
                    return Err(at(i + 2));
                }
                if ptr <= len && ptr + 3 > len {
                    return Err(at(i + 2));
                }
                rr = true;
            }
            TIMESTAMP => {
                if ts {
                    return Err(at(i));
                }
                if len < 4 {
                    return Err(at(i + 1));
                }
                if ptr < 5 {
                    return Err(at(i + 2));
                }
                let flags = byte(i + 3) & 0x0f;
                if ptr <= len {
                    let slot = if flags == TS_TSANDADDR || flags == TS_PRESPEC {
                        7
                    } else {
                        3
                    };
                    if ptr + slot > len {
                        return Err(at(i + 2));
                    }
                } else if flags != TS_PRESPEC && byte(i + 3) >> 4 == 15 {
                    return Err(at(i + 3));
                }
                ts = true;
            }
            RA if len < 4 => return Err(at(i + 1)),
            // `cipso_v4_validate` finds no DOI: none is configured.
            CIPSO => return Err(if len < 8 { at(i + 1) } else { at(i + 2) }),
            _ => {}
        }
        i += len;
    }
    Ok(srr)
}

/// The ports of the UDP header at the start of `data`, whose 8 bytes must
/// be there (`L4Truncated`). Not smoltcp's `UdpPacket::new_checked`: it
/// requires the whole datagram the UDP length field claims, which a first
/// fragment does not have.
pub(crate) fn udp_ports(data: &[u8]) -> Result<(u16, u16), DropReason> {
    match (
        read16(data, field::udp::SPORT),
        read16(data, field::udp::DPORT),
    ) {
        (Some(sport), Some(dport)) if data.len() >= field::udp::LEN => Ok((sport, dport)),
        _ => Err(DropReason::L4Truncated),
    }
}

/// The transport header at the start of `data` (the datagram's payload),
/// which sits at offset `l4` of the frame.
fn parse_l4(proto: u8, data: &[u8], l4: usize) -> Result<L4, DropReason> {
    match proto {
        IPPROTO_TCP => parse_tcp(data).map(L4::Tcp),
        IPPROTO_UDP => udp_ports(data).map(|(sport, dport)| L4::Udp { sport, dport }),
        IPPROTO_ICMP => parse_icmp(data, l4).map(L4::Icmp),
        _ => Ok(L4::Other),
    }
}

pub(super) fn parse_tcp(data: &[u8]) -> Result<TcpInfo, DropReason> {
    let data_off = read8(data, field::tcp::DATA_OFF).ok_or(DropReason::L4Truncated)?;
    if data.len() < field::tcp::MIN_LEN {
        return Err(DropReason::L4Truncated);
    }
    let header_len = usize::from(data_off >> 4) * 4;
    // A header longer than the segment is a bad header length rather than a
    // truncation: the datagram is whole (its total length checked out).
    if header_len < field::tcp::MIN_LEN || header_len > data.len() {
        return Err(DropReason::TcpBadHeaderLen);
    }
    let tcp = TcpPacket::new_checked(data).map_err(|_| DropReason::TcpBadHeaderLen)?;
    let (wscale, sack_perm) = tcp_options(tcp.options());
    Ok(TcpInfo {
        sport: tcp.src_port(),
        dport: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        flags: read8(data, field::tcp::FLAGS).unwrap_or(0),
        window: tcp.window_len(),
        header_len,
        payload_len: data.len() - header_len,
        wscale,
        sack_perm,
    })
}

/// Linux caps the window-scale shift at 14 (`TCP_MAX_WSCALE`).
const TCP_MAX_WSCALE: u8 = 14;

/// Window scale and SACK-permitted from a TCP option list, as Linux's
/// `tcp_parse_options` reads them: EOL ends the list, NOP is one byte, any
/// other option has a length byte; a length below 2 or beyond the list ends
/// the scan; an option of the wrong length is ignored.
fn tcp_options(mut opts: &[u8]) -> (Option<u8>, bool) {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const WSCALE: u8 = 3;
    const SACK_PERM: u8 = 4;
    let mut wscale = None;
    let mut sack_perm = false;
    loop {
        match *opts {
            [] | [EOL, ..] | [_] => break,
            [NOP, ..] => opts = opts.get(1..).unwrap_or_default(),
            [kind, len, ..] => {
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    break;
                }
                match (kind, len) {
                    (WSCALE, 3) => wscale = read8(opts, 2).map(|s| s.min(TCP_MAX_WSCALE)),
                    (SACK_PERM, 2) => sack_perm = true,
                    _ => {}
                }
                opts = opts.get(len..).unwrap_or_default();
            }
        }
    }
    (wscale, sack_perm)
}

fn parse_icmp(data: &[u8], l4: usize) -> Result<IcmpInfo, DropReason> {
    let icmp = Icmpv4Packet::new_checked(data).map_err(|_| DropReason::IcmpTruncated)?;
    let ty = u8::from(icmp.msg_type());
    let is_query = icmp_is_query(ty);
    let is_error = icmp_is_error(ty);
    let inner = if is_error {
        data.get(field::icmp::LEN..)
            .and_then(|quote| parse_inner(quote, l4 + field::icmp::LEN))
    } else {
        None
    };
    Ok(IcmpInfo {
        ty,
        code: icmp.msg_code(),
        // Every query type keeps its identifier where echo does.
        id: if is_query { icmp.echo_ident() } else { 0 },
        is_query,
        is_error,
        inner,
    })
}

/// The datagram quoted by an ICMP error, which starts at offset `l3` of the
/// frame. A partial view (netstack3's idea): the quote is usually cut short,
/// so its total length and checksum describe bytes that are not here, and
/// smoltcp's `new_checked` would refuse it; we check what we read instead.
fn parse_inner(quote: &[u8], l3: usize) -> Option<InnerInfo> {
    let ver_ihl = read8(quote, field::ipv4::VER_IHL)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < field::ipv4::MIN_LEN {
        return None;
    }
    let l4 = quote.get(ihl..)?;
    if l4.len() < 8 {
        return None;
    }
    if read16(quote, field::ipv4::FLAGS_FRAG)? & field::ipv4::FRAG_OFFSET != 0 {
        return None;
    }
    let proto = read8(quote, field::ipv4::PROTO)?;
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (read16(l4, 0)?, read16(l4, 2)?),
        IPPROTO_ICMP if icmp_is_query(read8(l4, field::icmp::TYPE)?) => {
            let id = read16(l4, field::icmp::ID)?;
            (id, id)
        }
        _ => (0, 0),
    };
    Some(InnerInfo {
        l3,
        ihl,
        src: Ipv4Addr::from(read32(quote, field::ipv4::SRC)?),
        dst: Ipv4Addr::from(read32(quote, field::ipv4::DST)?),
        proto,
        sport,
        dport,
        l4_len: l4.len(),
    })
}

/// Parses an Ethernet/IPv4 ARP request or reply. Errors: `EthTruncated`
/// (no Ethernet header); `ArpMalformed` for anything else that is not one:
/// another ethertype (there is no "not ARP" reason; the caller dispatches on
/// [`ethertype`] first anyway), a short packet, a hardware type other than
/// Ethernet (1) or IEEE 802 (6) (an Ethernet device takes both, Linux's
/// `arp_process` says, after RFC 2625 and RFC 1390), another protocol type
/// or address length, an operation other than request (1) or reply (2)
/// (Linux's `arp_process` ignores the rest too). Trailing padding is fine.
pub fn parse_arp(frame: &[u8]) -> Result<ArpInfo, DropReason> {
    if ethertype(frame)? != ETHERTYPE_ARP {
        return Err(DropReason::ArpMalformed);
    }
    let payload = frame.get(ETH_HDR..).unwrap_or_default();
    let arp = ArpPacket::new_checked(payload).map_err(|_| DropReason::ArpMalformed)?;
    const ARPHRD_IEEE802: u16 = 6;
    let ethernet = match arp.hardware_type() {
        ArpHardware::Ethernet => true,
        ArpHardware::Unknown(t) => t == ARPHRD_IEEE802,
    };
    if !ethernet
        || arp.protocol_type() != EthernetProtocol::Ipv4
        || arp.hardware_len() != 6
        || arp.protocol_len() != 4
    {
        return Err(DropReason::ArpMalformed);
    }
    let op = u16::from(arp.operation());
    if op != ARP_REQUEST && op != ARP_REPLY {
        return Err(DropReason::ArpMalformed);
    }
    let mac = |b: &[u8]| <[u8; 6]>::try_from(b).map_err(|_| DropReason::ArpMalformed);
    let ip = |b: &[u8]| {
        <[u8; 4]>::try_from(b)
            .map(Ipv4Addr::from)
            .map_err(|_| DropReason::ArpMalformed)
    };
    Ok(ArpInfo {
        op,
        sender_mac: mac(arp.source_hardware_addr())?,
        sender_ip: ip(arp.source_protocol_addr())?,
        target_mac: mac(arp.target_hardware_addr())?,
        target_ip: ip(arp.target_protocol_addr())?,
    })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::*;
    use crate::wire::fixture::{self, fix_ip_checksum};
    use crate::wire::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn base(total_len: u16, id: u16, proto: u8, l4info: L4) -> Ipv4Info {
        Ipv4Info {
            l3: 14,
            ihl: 20,
            l4: 34,
            total_len,
            src: A,
            dst: B,
            proto,
            ttl: 64,
            tos: 0,
            id,
            df: true,
            fragment: false,
            first_fragment: true,
            l4info,
        }
    }

    #[test]
    fn ethertypes() {
        assert_eq!(ethertype(&fixture::TCP_SYN), Ok(ETHERTYPE_IPV4));
        assert_eq!(ethertype(&fixture::ARP_REQUEST), Ok(ETHERTYPE_ARP));
        assert_eq!(
            ethertype(&fixture::TCP_SYN[..13]),
            Err(DropReason::EthTruncated)
        );
        assert_eq!(ethertype(&fixture::TCP_SYN[..14]), Ok(ETHERTYPE_IPV4));
    }

    #[test]
    fn tcp_syn_with_options() {
        let tcp = TcpInfo {
            sport: 49964,
            dport: 80,
            seq: 745_467_464,
            ack: 0,
            flags: TCP_SYN,
            window: 64240,
            header_len: 40,
            payload_len: 0,
            wscale: Some(10),
            sack_perm: true,
        };
        assert_eq!(
            parse_ipv4(&fixture::TCP_SYN),
            Ok(base(60, 0x8083, IPPROTO_TCP, L4::Tcp(tcp)))
        );
    }

    #[test]
    fn tcp_with_payload() {
        let info = parse_ipv4(&fixture::TCP_PSH_ACK).unwrap();
        let L4::Tcp(tcp) = info.l4info else {
            panic!("{info:?}")
        };
        assert_eq!((tcp.seq, tcp.ack), (0x1122_3344, 0x5566_7788));
        assert_eq!(tcp.flags, TCP_PSH | TCP_ACK);
        assert_eq!((tcp.header_len, tcp.payload_len), (20, 18));
        assert_eq!((tcp.wscale, tcp.sack_perm), (None, false));
        let L4::Tcp(fin) = parse_ipv4(&fixture::TCP_FIN).unwrap().l4info else {
            panic!()
        };
        assert_eq!((fin.flags, fin.payload_len), (TCP_FIN, 3));
    }

    #[test]
    fn udp() {
        let udp = L4::Udp {
            sport: 5353,
            dport: 9999,
        };
        assert_eq!(
            parse_ipv4(&fixture::UDP),
            Ok(base(39, 0x5aaa, IPPROTO_UDP, udp))
        );
    }

    #[test]
    fn icmp_echo_request() {
        let icmp = IcmpInfo {
            ty: 8,
            code: 0,
            id: 0x1234,
            is_query: true,
            is_error: false,
            inner: None,
        };
        assert_eq!(
            parse_ipv4(&fixture::ICMP_ECHO_REQUEST),
            Ok(base(57, 0x1e30, IPPROTO_ICMP, L4::Icmp(icmp)))
        );
    }

    #[test]
    fn icmp_port_unreachable_quoting_udp() {
        let inner = InnerInfo {
            l3: 42,
            ihl: 20,
            src: A,
            dst: B,
            proto: IPPROTO_UDP,
            sport: 5353,
            dport: 9999,
            l4_len: 19,
        };
        let icmp = IcmpInfo {
            ty: 3,
            code: 3,
            id: 0,
            is_query: false,
            is_error: true,
            inner: Some(inner),
        };
        let want = Ipv4Info {
            src: B,
            dst: A,
            tos: 0xc0,
            df: false,
            ..base(67, 0x59d6, IPPROTO_ICMP, L4::Icmp(icmp))
        };
        assert_eq!(parse_ipv4(&fixture::UDP_PORT_UNREACH), Ok(want));
    }

    #[test]
    fn icmp_port_unreachable_quoting_tcp_and_options() {
        let info = parse_ipv4(&fixture::TCP_PORT_UNREACH).unwrap();
        let L4::Icmp(IcmpInfo {
            inner: Some(inner), ..
        }) = info.l4info
        else {
            panic!()
        };
        assert_eq!(
            (inner.proto, inner.sport, inner.dport, inner.l4_len),
            (6, 56004, 81, 40)
        );

        let info = parse_ipv4(&fixture::UDP_OPTIONS_PORT_UNREACH).unwrap();
        let L4::Icmp(IcmpInfo {
            inner: Some(inner), ..
        }) = info.l4info
        else {
            panic!()
        };
        assert_eq!(
            (inner.l3, inner.ihl, inner.sport, inner.l4_len),
            (42, 24, 5356, 12)
        );

        // A quote of 548 bytes from a longer datagram.
        let info = parse_ipv4(&fixture::udp_tos_port_unreach()).unwrap();
        assert_eq!((info.total_len, info.tos), (576, 0xda));
        let L4::Icmp(IcmpInfo {
            inner: Some(inner), ..
        }) = info.l4info
        else {
            panic!()
        };
        assert_eq!((inner.sport, inner.dport, inner.l4_len), (5355, 9997, 528));
    }

    #[test]
    fn ip_options_and_tos() {
        let info = parse_ipv4(&fixture::UDP_OPTIONS).unwrap();
        assert_eq!((info.ihl, info.l4, info.total_len), (24, 38, 36));
        assert_eq!(
            info.l4info,
            L4::Udp {
                sport: 5356,
                dport: 9996
            }
        );
        let info = parse_ipv4(&fixture::udp_tos()).unwrap();
        assert_eq!(info.tos, 0xba);
    }

    #[test]
    fn fragments() {
        let first = parse_ipv4(&fixture::frag_first()).unwrap();
        assert!(first.fragment && first.first_fragment && !first.df);
        assert_eq!(
            first.l4info,
            L4::Udp {
                sport: 5357,
                dport: 9995
            }
        );
        let last = parse_ipv4(&fixture::frag_last()).unwrap();
        assert!(last.fragment && !last.first_fragment);
        assert_eq!(
            (last.l4info, last.id, last.total_len),
            (L4::Other, first.id, 548)
        );
        // A non-first fragment too short for any transport header is fine.
        let mut tiny = fixture::FRAG_LAST_HDR.to_vec();
        tiny[16..18].copy_from_slice(&20u16.to_be_bytes());
        fix_ip_checksum(&mut tiny);
        assert_eq!(parse_ipv4(&tiny).unwrap().l4info, L4::Other);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        for (name, f) in fixture::ipv4_frames() {
            let want = parse_ipv4(&f).unwrap();
            let mut padded = f.clone();
            padded.extend_from_slice(&[0xee; 18]);
            assert_eq!(parse_ipv4(&padded), Ok(want), "{name}");
        }
        let mut arp = fixture::ARP_REQUEST.to_vec();
        arp.resize(60, 0);
        assert_eq!(parse_arp(&arp), parse_arp(&fixture::ARP_REQUEST));
    }

    /// Every prefix of every fixture: a truncated frame fails with
    /// EthTruncated or Ipv4Truncated, never panics; the whole one parses.
    #[test]
    fn truncated_at_every_length() {
        for (name, f) in fixture::ipv4_frames() {
            for n in 0..f.len() {
                let want = if n < ETH_HDR {
                    DropReason::EthTruncated
                } else {
                    DropReason::Ipv4Truncated
                };
                assert_eq!(parse_ipv4(&f[..n]), Err(want), "{name} cut at {n}");
            }
            assert!(parse_ipv4(&f).is_ok(), "{name}");
        }
        for f in [&fixture::ARP_REQUEST[..], &fixture::ARP_REPLY[..]] {
            for n in 0..f.len() {
                let want = if n < ETH_HDR {
                    DropReason::EthTruncated
                } else {
                    DropReason::ArpMalformed
                };
                assert_eq!(parse_arp(&f[..n]), Err(want), "arp cut at {n}");
            }
        }
    }

    /// `f` with `edit` applied to its IPv4 datagram and the header checksum
    /// made right again.
    fn edited(f: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = f.to_vec();
        edit(&mut f[14..]);
        fix_ip_checksum(&mut f);
        f
    }

    #[test]
    fn malformed_ipv4() {
        use DropReason::*;
        let syn = &fixture::TCP_SYN[..];
        assert_eq!(parse_ipv4(&fixture::ARP_REQUEST), Err(NotIpv4));
        let mut v6 = syn.to_vec();
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(parse_ipv4(&v6), Err(NotIpv4));
        let mut vlan = syn.to_vec();
        vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert_eq!(parse_ipv4(&vlan), Err(NotIpv4));

        assert_eq!(
            parse_ipv4(&edited(syn, |ip| ip[0] = 0x65)),
            Err(Ipv4BadVersion)
        );
        let mut ihl4 = syn.to_vec();
        ihl4[14] = 0x44;
        assert_eq!(parse_ipv4(&ihl4), Err(Ipv4BadHeaderLen));
        // IHL 15: the frame holds 60 bytes of "header" (TCP bytes really),
        // so the checksum is what fails; cut shorter, the header is truncated.
        let mut ihl15 = syn.to_vec();
        ihl15[14] = 0x4f;
        assert_eq!(parse_ipv4(&ihl15), Err(Ipv4BadChecksum));
        assert_eq!(parse_ipv4(&ihl15[..70]), Err(Ipv4Truncated));

        let mut bad_sum = syn.to_vec();
        bad_sum[22] ^= 0x01; // TTL
        assert_eq!(parse_ipv4(&bad_sum), Err(Ipv4BadChecksum));

        let short_total = |n: u16| edited(syn, |ip| ip[2..4].copy_from_slice(&n.to_be_bytes()));
        assert_eq!(parse_ipv4(&short_total(19)), Err(Ipv4BadTotalLen));
        assert_eq!(parse_ipv4(&short_total(0)), Err(Ipv4BadTotalLen));
        assert_eq!(parse_ipv4(&short_total(61)), Err(Ipv4Truncated));
        assert_eq!(parse_ipv4(&short_total(20)), Err(L4Truncated));
        assert_eq!(parse_ipv4(&short_total(39)), Err(L4Truncated));
        // 20 bytes of TCP but a data offset of 40: the options are cut off.
        assert_eq!(parse_ipv4(&short_total(40)), Err(TcpBadHeaderLen));
        assert_eq!(parse_ipv4(&short_total(59)), Err(TcpBadHeaderLen));
        // The datagram shrunk, the frame did not: the rest is padding.
        let info = parse_ipv4(&short_total(60)).unwrap();
        assert_eq!(info.total_len, 60);

        let doff = |d: u8| edited(syn, |ip| ip[20 + 12] = d << 4);
        assert_eq!(parse_ipv4(&doff(4)), Err(TcpBadHeaderLen));
        assert_eq!(parse_ipv4(&doff(0)), Err(TcpBadHeaderLen));
        assert_eq!(parse_ipv4(&doff(11)), Err(TcpBadHeaderLen));
        assert!(parse_ipv4(&doff(5)).is_ok());

        let udp = &fixture::UDP[..];
        let udp_total = |n: u16| edited(udp, |ip| ip[2..4].copy_from_slice(&n.to_be_bytes()));
        assert_eq!(parse_ipv4(&udp_total(27)), Err(L4Truncated));
        assert!(parse_ipv4(&udp_total(28)).is_ok());

        let echo = &fixture::ICMP_ECHO_REQUEST[..];
        let echo_total = |n: u16| edited(echo, |ip| ip[2..4].copy_from_slice(&n.to_be_bytes()));
        assert_eq!(parse_ipv4(&echo_total(27)), Err(IcmpTruncated));
        assert_eq!(parse_ipv4(&echo_total(20)), Err(IcmpTruncated));
        assert!(parse_ipv4(&echo_total(28)).is_ok());

        // A first fragment must hold the transport header too.
        let frag = edited(&fixture::frag_first(), |ip| {
            ip[2..4].copy_from_slice(&24u16.to_be_bytes())
        });
        assert_eq!(parse_ipv4(&frag), Err(L4Truncated));
    }

    #[test]
    fn unusable_quotes_give_no_inner() {
        let inner_of = |f: &[u8]| match parse_ipv4(f).unwrap().l4info {
            L4::Icmp(icmp) => icmp.inner,
            other => panic!("{other:?}"),
        };
        let f = &fixture::UDP_PORT_UNREACH[..];
        assert!(inner_of(f).is_some());
        // The quote cut to its IPv4 header + 7 bytes, then + 8.
        let cut = |n: u16| edited(f, |ip| ip[2..4].copy_from_slice(&n.to_be_bytes()));
        assert_eq!(inner_of(&cut(20 + 8 + 20 + 7)), None);
        assert_eq!(inner_of(&cut(20 + 8 + 20 + 8)).map(|i| i.l4_len), Some(8));
        assert_eq!(inner_of(&cut(28)), None);
        // Not IPv4, a bad IHL, a non-first fragment.
        assert_eq!(inner_of(&edited(f, |ip| ip[28] = 0x65)), None);
        assert_eq!(inner_of(&edited(f, |ip| ip[28] = 0x44)), None);
        assert_eq!(inner_of(&edited(f, |ip| ip[28 + 7] = 0x01)), None);
        // More fragments but offset 0: usable.
        assert!(inner_of(&edited(f, |ip| ip[28 + 6] = 0x20)).is_some());
        // A quoted IHL longer than the quote.
        assert_eq!(inner_of(&edited(f, |ip| ip[28] = 0x4f)), None);
    }

    #[test]
    fn quoted_icmp_query_has_its_id_as_ports() {
        // A time exceeded quoting the echo request fixture.
        let echo = &fixture::ICMP_ECHO_REQUEST[14..];
        let mut f = fixture::UDP_PORT_UNREACH[..42].to_vec();
        f[34] = 11;
        f[35] = 0;
        f.extend_from_slice(echo);
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ip_checksum(&mut f);
        let L4::Icmp(icmp) = parse_ipv4(&f).unwrap().l4info else {
            panic!()
        };
        let inner = icmp.inner.unwrap();
        assert_eq!(
            (icmp.ty, inner.proto, inner.sport, inner.dport),
            (11, 1, 0x1234, 0x1234)
        );
    }

    #[test]
    fn other_icmp_types() {
        let with_type = |ty: u8| {
            let f = edited(&fixture::ICMP_ECHO_REQUEST, |ip| ip[20] = ty);
            match parse_ipv4(&f).unwrap().l4info {
                L4::Icmp(i) => (i.is_query, i.is_error, i.id, i.inner),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(with_type(0), (true, false, 0x1234, None));
        assert_eq!(with_type(13), (true, false, 0x1234, None));
        assert_eq!(with_type(18), (true, false, 0x1234, None));
        assert_eq!(with_type(9), (false, false, 0, None));
        // An error whose "quote" is echo data: not IPv4, so no inner.
        assert_eq!(with_type(11), (false, true, 0, None));
    }

    #[test]
    fn other_protocols() {
        let f = edited(&fixture::UDP, |ip| ip[9] = 47);
        let info = parse_ipv4(&f).unwrap();
        assert_eq!((info.proto, info.l4info), (47, L4::Other));
    }

    #[test]
    fn tcp_option_scan() {
        assert_eq!(tcp_options(&[]), (None, false));
        assert_eq!(tcp_options(&[3, 3, 7]), (Some(7), false));
        assert_eq!(tcp_options(&[3, 3, 15, 4, 2]), (Some(14), true));
        assert_eq!(tcp_options(&[1, 1, 4, 2, 0, 3, 3, 7]), (None, true));
        // Wrong lengths are skipped; a length beyond the list or below 2
        // ends the scan.
        assert_eq!(tcp_options(&[3, 4, 7, 0, 4, 2]), (None, true));
        assert_eq!(tcp_options(&[4, 2, 3, 4, 7]), (None, true));
        assert_eq!(tcp_options(&[3, 1, 4, 2]), (None, false));
        assert_eq!(tcp_options(&[3]), (None, false));
        assert_eq!(tcp_options(&[2, 4, 5, 180, 3, 3]), (None, false));
    }

    #[test]
    fn arp() {
        assert_eq!(
            parse_arp(&fixture::ARP_REQUEST),
            Ok(ArpInfo {
                op: ARP_REQUEST,
                sender_mac: [2, 0, 0, 0, 0, 0x0a],
                sender_ip: A,
                target_mac: [0; 6],
                target_ip: B,
            })
        );
        assert_eq!(
            parse_arp(&fixture::ARP_REPLY),
            Ok(ArpInfo {
                op: ARP_REPLY,
                sender_mac: [2, 0, 0, 0, 0, 0x0b],
                sender_ip: B,
                target_mac: [2, 0, 0, 0, 0, 0x0a],
                target_ip: A,
            })
        );
    }

    #[test]
    fn malformed_arp() {
        let edit = |at: usize, v: u8| {
            let mut f = fixture::ARP_REQUEST.to_vec();
            f[at] = v;
            parse_arp(&f)
        };
        assert_eq!(parse_arp(&fixture::TCP_SYN), Err(DropReason::ArpMalformed));
        assert_eq!(parse_arp(&[0; 10]), Err(DropReason::EthTruncated));
        // IEEE 802 hardware (6) is Ethernet's too, as Linux's arp_process
        // takes it; token ring (4) is not.
        assert_eq!(edit(15, 6), parse_arp(&fixture::ARP_REQUEST));
        assert_eq!(edit(15, 4), Err(DropReason::ArpMalformed));
        assert_eq!(edit(16, 0x86), Err(DropReason::ArpMalformed)); // protocol
        assert_eq!(edit(18, 8), Err(DropReason::ArpMalformed)); // hardware length
        assert_eq!(edit(19, 16), Err(DropReason::ArpMalformed)); // protocol length
        assert_eq!(edit(21, 3), Err(DropReason::ArpMalformed)); // RARP request
        assert_eq!(edit(21, 0), Err(DropReason::ArpMalformed));
        assert!(edit(21, 2).is_ok());
    }

    /// The options of an IP header, as `ipv4_options` reads them.
    fn options(opts: &[u8]) -> Result<bool, u8> {
        let mut h = vec![0x45; 20];
        h.extend_from_slice(opts);
        ipv4_options(&h)
    }

    /// The cases a Linux gateway (6.18) answered with a parameter problem
    /// in the hostile-frames lab test, with its pointers, and the ones it
    /// forwarded or refused as a source route.
    #[test]
    fn options_as_linux_judges_them() {
        // Record route whose length runs past the options.
        assert_eq!(options(&[7, 40, 4, 0, 0, 0, 0, 0]), Err(20));
        // NOP, then a timestamp of length 3.
        assert_eq!(options(&[1, 68, 3, 5]), Err(22));
        // Record route with pointer 3.
        assert_eq!(options(&[7, 7, 3, 0, 0, 0, 0, 0]), Err(22));
        assert_eq!(options(&[1, 1, 1, 0]), Ok(false));
        assert_eq!(options(&[1, 131, 7, 4, 203, 0, 113, 254]), Ok(true));
    }

    #[test]
    fn options_by_the_book() {
        // Empty, end of list, garbage after the end of list.
        assert_eq!(options(&[]), Ok(false));
        assert_eq!(options(&[0, 0xff, 0xff, 0xff]), Ok(false));
        // A lone option type with no length byte; a length below 2.
        assert_eq!(options(&[1, 1, 1, 7]), Err(23));
        assert_eq!(options(&[7, 1, 0, 0]), Err(20));
        // Record route: full (pointer past the end) is fine, room for less
        // than an address is not, twice is not.
        assert_eq!(options(&[7, 7, 8, 1, 2, 3, 4, 0]), Ok(false));
        assert_eq!(options(&[7, 7, 5, 1, 2, 3, 4, 0]), Err(22));
        assert_eq!(options(&[7, 3, 4, 7, 3, 4, 0, 0]), Err(23));
        // Timestamp: pointer below 5; an address+time slot needs 8 bytes;
        // a full one whose overflow counter is at 15.
        assert_eq!(options(&[68, 8, 4, 0, 0, 0, 0, 0]), Err(22));
        assert_eq!(options(&[68, 8, 5, 1, 0, 0, 0, 0]), Err(22));
        assert_eq!(options(&[68, 8, 5, 0, 0, 0, 0, 0]), Ok(false));
        assert_eq!(options(&[68, 4, 5, 0xf0]), Err(23));
        assert_eq!(options(&[68, 4, 5, 0xe0]), Ok(false));
        // Two source routes; one too short; a pointer below 4.
        let two = [131, 3, 4, 137, 3, 4, 0, 0];
        assert_eq!(options(&two), Err(23));
        assert_eq!(options(&[137, 2, 0, 0]), Err(21));
        assert_eq!(options(&[131, 3, 3, 0]), Err(22));
        // Router alert needs 4 bytes; CIPSO is refused (no DOI).
        assert_eq!(options(&[148, 4, 0, 0]), Ok(false));
        assert_eq!(options(&[148, 3, 0, 0]), Err(21));
        assert_eq!(options(&[134, 8, 0, 0, 0, 1, 0, 0]), Err(22));
        assert_eq!(options(&[134, 6, 0, 0, 0, 1, 0, 0]), Err(21));
        // Security and unknown options pass.
        assert_eq!(options(&[130, 4, 0, 0, 0x99, 4, 0, 0]), Ok(false));
    }

    proptest! {
        #[test]
        fn options_never_panic_and_point_into_them(opts in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Err(p) = options(&opts) {
                prop_assert!(usize::from(p) >= 20 && usize::from(p) < 20 + opts.len());
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_ipv4(&data);
            let _ = parse_arp(&data);
            let _ = ethertype(&data);
        }

        /// Random bytes after a real Ethernet + IPv4 header reach the
        /// transport parsers (the header checksum is made right).
        #[test]
        fn random_datagrams_never_panic(
            proto in prop_oneof![Just(1u8), Just(6), Just(17), any::<u8>()],
            ihl in 5u8..=15,
            frag in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            total_delta in -8i32..8,
        ) {
            let mut f = fixture::UDP[..34].to_vec();
            f.extend_from_slice(&body);
            f[14] = 0x40 | ihl;
            f[23] = proto;
            f[20..22].copy_from_slice(&frag.to_be_bytes());
            let total = (f.len() as i32 - 14 + total_delta).clamp(0, 0xffff) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            if f.len() >= 14 + usize::from(ihl) * 4 {
                fix_ip_checksum(&mut f);
            }
            if let Ok(info) = parse_ipv4(&f) {
                prop_assert!(info.l4 <= f.len());
                prop_assert!(info.l3 + usize::from(info.total_len) <= f.len());
                if let L4::Icmp(IcmpInfo { inner: Some(inner), .. }) = info.l4info {
                    prop_assert!(inner.l3 + inner.ihl + inner.l4_len <= f.len());
                    prop_assert!(inner.l4_len >= 8);
                }
            }
        }
    }
}
