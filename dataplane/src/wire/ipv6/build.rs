//! Builders of the IPv6 packets a router originates about others' packets:
//! ICMPv6 errors and TCP resets. Each writes a whole Ethernet frame into a
//! caller's buffer and returns its length, or `None` if the buffer is too
//! small or Linux would not answer. MAC addresses are left zero for the
//! caller.

use std::net::Ipv6Addr;

use super::super::checksum::{self, finish, l4_v6, pseudo_header6, sum};
use super::super::field::{self, read8};
use super::super::{ETH_HDR, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::rewrite::DEFAULT_HOP_LIMIT;
use super::{
    icmpv6_is_error, Ipv6Info, L4v6, ETHERTYPE_IPV6, ICMPV6_DEST_UNREACH, ICMPV6_EXC_HOPLIMIT,
    ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, ICMPV6_UNK_OPTION, IPV6_HDR,
    IPV6_MIN_MTU, NEXTHDR_ICMPV6, NEXTHDR_TCP,
};

/// The largest IPv6 packet (header included) of an ICMPv6 error we build:
/// the minimum MTU (RFC 4443 2.4 (c), Linux's `icmp6_send`); the frame is
/// [`ETH_HDR`] bytes more.
pub const ICMPV6_ERROR_MAX_LEN: usize = IPV6_MIN_MTU;

const ICMP_HDR: usize = field::icmpv6::LEN;
const TCP_HDR: usize = field::tcp::MIN_LEN;

/// Copies `bytes` to `buf[off..]` (a write that does not fit is dropped).
pub(super) fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(off..).and_then(|b| b.get_mut(..bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

/// Writes an Ethernet header (MACs `dst_mac`, `src_mac`) and an IPv6 header
/// (traffic class and flow label 0, as Linux's `ip6_flow_hdr(hdr, 0, 0)`
/// for the packets it makes) at the start of `out`.
pub(super) fn put_eth_ipv6(
    out: &mut [u8],
    macs: ([u8; 6], [u8; 6]),
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    let l3 = ETH_HDR;
    put(out, field::eth::DST, &macs.0);
    put(out, field::eth::SRC, &macs.1);
    put(out, field::eth::ETHERTYPE, &ETHERTYPE_IPV6.to_be_bytes());
    put(out, l3 + field::ipv6::VER_TC_FLOW, &[0x60, 0, 0, 0]);
    put(
        out,
        l3 + field::ipv6::PAYLOAD_LEN,
        &payload_len.to_be_bytes(),
    );
    put(
        out,
        l3 + field::ipv6::NEXT_HEADER,
        &[next_header, hop_limit],
    );
    put(out, l3 + field::ipv6::SRC, &src.octets());
    put(out, l3 + field::ipv6::DST, &dst.octets());
}

/// Whether `addr` can be the destination of an answer: not unspecified,
/// not multicast (Linux's checks; loopback never gets past `parse_ipv6`).
fn is_unicast(addr: Ipv6Addr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast())
}

/// An ICMPv6 error to send: its type, code, and the 4 bytes after its
/// checksum (big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Error {
    pub ty: u8,
    pub code: u8,
    pub rest: u32,
}

impl Icmpv6Error {
    /// Destination unreachable (type 1): code 0 no route, 1
    /// administratively prohibited, 2 beyond the scope of the source, 3
    /// address unreachable, 4 port unreachable, 5 source address failed
    /// policy, 6 reject route.
    pub fn unreachable(code: u8) -> Icmpv6Error {
        Icmpv6Error {
            ty: ICMPV6_DEST_UNREACH,
            code,
            rest: 0,
        }
    }

    /// Packet too big (type 2) with the next hop's MTU (RFC 8201).
    pub fn packet_too_big(mtu: u32) -> Icmpv6Error {
        Icmpv6Error {
            ty: ICMPV6_PKT_TOOBIG,
            code: 0,
            rest: mtu,
        }
    }

    /// Hop limit exceeded in transit (type 3 code 0).
    pub fn hop_limit_exceeded() -> Icmpv6Error {
        Icmpv6Error {
            ty: ICMPV6_TIME_EXCEED,
            code: ICMPV6_EXC_HOPLIMIT,
            rest: 0,
        }
    }

    /// Time exceeded (type 3) with `code` (1: fragment reassembly).
    pub fn time_exceeded(code: u8) -> Icmpv6Error {
        Icmpv6Error {
            ty: ICMPV6_TIME_EXCEED,
            code,
            rest: 0,
        }
    }

    /// Parameter problem (type 4) with `code` (0 erroneous header field, 1
    /// unrecognised next header, 2 unrecognised option) pointing at byte
    /// `pointer` of the offending packet, from its IPv6 header.
    pub fn parameter_problem(code: u8, pointer: u32) -> Icmpv6Error {
        Icmpv6Error {
            ty: ICMPV6_PARAMPROB,
            code,
            rest: pointer,
        }
    }
}

/// Builds the ICMPv6 error `err` about the datagram in `orig` (a frame;
/// `info` its parse) from `src`, as Linux's `icmp6_send` does:
///
/// - IPv6: traffic class 0, flow label 0 (Linux computes one, per boot,
///   from a hash of the flow), hop limit 64, next header 58, from `src`
///   (the caller's choice: Linux takes the original destination when it is
///   its own, else the source address of the route back) to the original's
///   source.
/// - ICMPv6: `rest` in the 4 bytes after the checksum (the MTU of a packet
///   too big, the pointer of a parameter problem), then as much of the
///   original packet, from its IPv6 header, as keeps the error within
///   [`IPV6_MIN_MTU`] bytes (1,232 bytes of quote); Ethernet padding is not
///   quoted. The checksum covers the pseudo-header.
/// - Ethernet MACs zero.
///
/// Returns `None`, sending nothing, as Linux does when: the original was
/// sent to a multicast address or an Ethernet group address
/// (`pkt_type != PACKET_HOST`), unless the error is a packet too big or a
/// parameter problem about an unrecognised option whose type asks for an
/// answer even then (top bits 10, `opt_unrec`); the original's source is
/// unspecified or multicast; the original is an ICMPv6 error (or a
/// message whose type cannot be read; `is_ineligible`). Unlike IPv4,
/// errors about non-first fragments are sent (whatever they carry). Also `None` when
/// `out` is too small.
pub fn build_icmpv6_error(
    out: &mut [u8],
    orig: &[u8],
    info: &Ipv6Info,
    err: Icmpv6Error,
    src: Ipv6Addr,
) -> Option<usize> {
    let Icmpv6Error { ty, code, rest } = err;
    let group = read8(orig, field::eth::DST)? & 0x01 != 0 || info.dst.is_multicast();
    if group {
        let unrec_option = ty == ICMPV6_PARAMPROB
            && code == ICMPV6_UNK_OPTION
            && usize::try_from(rest)
                .ok()
                .and_then(|p| read8(orig, info.l3.checked_add(p)?))
                .is_none_or(|opt| opt & 0xc0 == 0x80);
        if ty != ICMPV6_PKT_TOOBIG && !unrec_option {
            return None;
        }
    }
    if !is_unicast(info.src) {
        return None;
    }
    let datagram = orig
        .get(info.l3..)?
        .get(..IPV6_HDR + usize::from(info.payload_len))?;
    // is_ineligible: ipv6_skip_exthdr stops at the fragment header of a
    // non-first fragment, so those are never taken for ICMPv6.
    if info.proto == NEXTHDR_ICMPV6 && info.first_fragment {
        match datagram.get(info.l4.checked_sub(info.l3)?) {
            None if info.fragment => {}
            Some(&t) if !icmpv6_is_error(t) => {}
            _ => return None,
        }
    }
    let quote_len = datagram
        .len()
        .min(ICMPV6_ERROR_MAX_LEN - IPV6_HDR - ICMP_HDR);
    let quote = datagram.get(..quote_len)?;
    let payload_len = ICMP_HDR + quote_len;
    let len = ETH_HDR + IPV6_HDR + payload_len;
    let out = out.get_mut(..len)?;

    // payload_len <= 1240: the cast cannot truncate.
    let plen = payload_len as u16;
    out.fill(0);
    put_eth_ipv6(
        out,
        ([0; 6], [0; 6]),
        plen,
        NEXTHDR_ICMPV6,
        DEFAULT_HOP_LIMIT,
        src,
        info.src,
    );
    let l4 = ETH_HDR + IPV6_HDR;
    let mut icmp = [0u8; ICMP_HDR];
    put(&mut icmp, field::icmpv6::TYPE, &[ty, code]);
    put(&mut icmp, field::icmpv6::REST, &rest.to_be_bytes());
    let pseudo = pseudo_header6(src, info.src, NEXTHDR_ICMPV6, u32::from(plen));
    let csum = finish(sum(&icmp) + sum(quote) + pseudo);
    put(&mut icmp, field::icmpv6::CHECKSUM, &csum.to_be_bytes());
    put(out, l4, &icmp);
    put(out, l4 + ICMP_HDR, quote);
    Some(len)
}

/// Builds the TCP RST answering the segment in `orig` (`info` its parse),
/// as Linux's `nf_send_reset6` (ip6tables `REJECT --reject-with
/// tcp-reset`) does: traffic class and flow label 0, hop limit 64 (the
/// route's, 64 by default), addresses and ports swapped; if the segment had
/// ACK, seq = its ack and no ACK flag, else seq 0, ACK, ack = its seq
/// plus SYN, FIN and the payload length; data offset 5, window 0, no
/// options; Ethernet MACs zero. 74 bytes.
///
/// Returns `None`, as Linux does, for a RST, a segment whose TCP checksum
/// is wrong, or one between addresses that are not unicast; also for a
/// fragment (answered after reassembly), or `out` too small.
pub fn build_tcp_rst6(out: &mut [u8], orig: &[u8], info: &Ipv6Info) -> Option<usize> {
    let L4v6::Tcp(tcp) = info.l4info else {
        return None;
    };
    if tcp.flags & TCP_RST != 0 || info.fragment || !is_unicast(info.dst) || !is_unicast(info.src) {
        return None;
    }
    let end = info
        .l3
        .checked_add(IPV6_HDR + usize::from(info.payload_len))?;
    let segment = orig.get(info.l4..end)?;
    if !checksum::transport_ok6(info.src, info.dst, NEXTHDR_TCP, segment) {
        return None;
    }
    let len = ETH_HDR + IPV6_HDR + TCP_HDR;
    let out = out.get_mut(..len)?;

    let (seq, ack, flags) = if tcp.flags & TCP_ACK != 0 {
        (tcp.ack, 0, TCP_RST)
    } else {
        let syn_fin = u32::from(tcp.flags & TCP_SYN != 0) + u32::from(tcp.flags & TCP_FIN != 0);
        let ack = tcp
            .seq
            .wrapping_add(syn_fin)
            .wrapping_add(tcp.payload_len as u32);
        (0, ack, TCP_RST | TCP_ACK)
    };
    out.fill(0);
    put_eth_ipv6(
        out,
        ([0; 6], [0; 6]),
        TCP_HDR as u16,
        NEXTHDR_TCP,
        DEFAULT_HOP_LIMIT,
        info.dst,
        info.src,
    );
    let mut t = [0u8; TCP_HDR];
    put(&mut t, field::tcp::SPORT, &tcp.dport.to_be_bytes());
    put(&mut t, field::tcp::DPORT, &tcp.sport.to_be_bytes());
    put(&mut t, field::tcp::SEQ, &seq.to_be_bytes());
    put(&mut t, field::tcp::ACK, &ack.to_be_bytes());
    let data_off = ((TCP_HDR / 4) as u8) << 4;
    put(&mut t, field::tcp::DATA_OFF, &[data_off, flags]);
    let csum = l4_v6(info.dst, info.src, NEXTHDR_TCP, &t);
    put(&mut t, field::tcp::CHECKSUM, &csum.to_be_bytes());
    put(out, ETH_HDR + IPV6_HDR, &t);
    Some(len)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::super::fixture::{self, fix_checksum6, verify_checksums6, A, B, MAC_A, MAC_B};
    use super::super::{parse_ipv6, ICMPV6_ADM_PROHIBITED, ICMPV6_PORT_UNREACH};
    use super::*;
    use crate::wire::set_macs;
    use proptest::prelude::*;

    fn error(orig: &[u8], err: Icmpv6Error, src: Ipv6Addr) -> Option<Vec<u8>> {
        let info = parse_ipv6(orig).unwrap();
        let mut out = [0u8; 1600];
        let n = build_icmpv6_error(&mut out, orig, &info, err, src)?;
        Some(out[..n].to_vec())
    }

    /// Linux's ICMPv6 errors (icmp6_send), byte for byte once the MACs are
    /// set and Linux's flow label carried over.
    #[test]
    fn icmpv6_errors_match_linux() {
        for (orig, err, linux) in [
            (
                fixture::UDP.to_vec(),
                Icmpv6Error::unreachable(ICMPV6_PORT_UNREACH),
                fixture::UDP_PORT_UNREACH.to_vec(),
            ),
            (
                fixture::UDP_DSTOPT.to_vec(),
                Icmpv6Error::unreachable(ICMPV6_PORT_UNREACH),
                fixture::UDP_DSTOPT_PORT_UNREACH.to_vec(),
            ),
            (
                fixture::UDP_HOP1.to_vec(),
                Icmpv6Error::hop_limit_exceeded(),
                fixture::UDP_HOP1_TIME_EXCEEDED.to_vec(),
            ),
            (
                fixture::TCP_SYN_81.to_vec(),
                Icmpv6Error::unreachable(ICMPV6_ADM_PROHIBITED),
                fixture::TCP_SYN_81_ADM_PROHIBITED.to_vec(),
            ),
            (
                fixture::echo_1400(),
                Icmpv6Error::packet_too_big(1280),
                fixture::echo_1400_too_big(),
            ),
        ] {
            let mut f = error(&orig, err, B).unwrap();
            assert_eq!(f[..12], [0; 12]);
            assert_eq!(verify_checksums6(&f), Ok(()));
            assert_eq!(f[15..18], [0; 3], "flow label 0");
            set_macs(&mut f, MAC_A, MAC_B);
            f[15..18].copy_from_slice(&linux[15..18]);
            assert_eq!(f, linux);
        }
    }

    #[test]
    fn parameter_problem_and_time_exceeded() {
        let f = error(&fixture::UDP, Icmpv6Error::parameter_problem(0, 6), B).unwrap();
        assert_eq!(f[54..56], [4, 0]);
        assert_eq!(f[58..62], [0, 0, 0, 6]);
        assert_eq!(verify_checksums6(&f), Ok(()));
        let f = error(&fixture::frag_first(), Icmpv6Error::time_exceeded(1), B).unwrap();
        assert_eq!(f.len(), 14 + 1280);
        assert_eq!(f[54..56], [3, 1]);
        // About a non-first fragment too (Linux sends those).
        assert!(error(&fixture::frag_last(), Icmpv6Error::time_exceeded(1), B).is_some());
    }

    #[test]
    fn no_icmpv6_error() {
        let unreach = Icmpv6Error::unreachable(ICMPV6_PORT_UNREACH);
        // About an ICMPv6 error.
        assert_eq!(error(&fixture::UDP_PORT_UNREACH, unreach, A), None);
        // About an echo request: yes.
        assert!(error(&fixture::ECHO_REQUEST, unreach, B).is_some());
        // To a multicast address (the MLD report to ff02::16): only packet
        // too big goes.
        assert_eq!(error(&fixture::MLD_REPORT, unreach, B), None);
        assert!(error(&fixture::MLD_REPORT, Icmpv6Error::packet_too_big(1280), B).is_some());
        // An Ethernet group destination.
        let mut bcast = fixture::UDP.to_vec();
        bcast[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(error(&bcast, unreach, B), None);
        // A parameter problem about an unrecognised option whose type says
        // "answer even to multicast" (top bits 10) goes; 11 does not.
        let mut opt = fixture::datagram(0, &[17, 0, 1, 0, 0x9e, 0, 1, 0, 0, 1, 0, 2, 0, 8, 0, 0]);
        opt[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        let (problem, info) = super::super::hop_by_hop_problem(&opt).unwrap();
        let mut out = [0u8; 1600];
        let pp = Icmpv6Error::parameter_problem(problem.code, problem.pointer);
        assert_eq!(pp, Icmpv6Error::parameter_problem(ICMPV6_UNK_OPTION, 44));
        assert!(build_icmpv6_error(&mut out, &opt, &info, pp, B).is_some());
        opt[14 + 44] = 0xde;
        assert_eq!(build_icmpv6_error(&mut out, &opt, &info, pp, B), None);
        // From :: or a multicast source.
        let mut any = fixture::UDP.to_vec();
        any[22..38].copy_from_slice(&[0; 16]);
        fix_checksum6(&mut any);
        assert_eq!(error(&any, unreach, B), None);
        // Too small a buffer.
        let info = parse_ipv6(&fixture::UDP).unwrap();
        let n = 14 + 40 + 8 + 53;
        for short in 0..n {
            assert_eq!(
                build_icmpv6_error(&mut out[..short], &fixture::UDP, &info, unreach, B),
                None
            );
        }
        assert_eq!(
            build_icmpv6_error(&mut out[..n], &fixture::UDP, &info, unreach, B),
            Some(n)
        );
    }

    #[test]
    fn ethernet_padding_is_not_quoted() {
        let unreach = Icmpv6Error::unreachable(ICMPV6_PORT_UNREACH);
        let mut padded = fixture::UDP.to_vec();
        padded.resize(80, 0xee);
        assert_eq!(error(&padded, unreach, B), error(&fixture::UDP, unreach, B));
    }

    /// Linux's reset (nf_send_reset6), byte for byte once the MACs are set.
    #[test]
    fn tcp_rst_matches_linux() {
        let info = parse_ipv6(&fixture::TCP_SYN).unwrap();
        let mut out = [0u8; 128];
        let n = build_tcp_rst6(&mut out, &fixture::TCP_SYN, &info).unwrap();
        let mut f = out[..n].to_vec();
        set_macs(&mut f, MAC_A, MAC_B);
        assert_eq!(f, fixture::TCP_SYN_RST);
        for short in 0..n {
            assert_eq!(
                build_tcp_rst6(&mut out[..short], &fixture::TCP_SYN, &info),
                None
            );
        }
    }

    #[test]
    fn no_tcp_rst() {
        let rst = |f: &[u8]| {
            let info = parse_ipv6(f).unwrap();
            build_tcp_rst6(&mut [0u8; 128], f, &info)
        };
        assert_eq!(rst(&fixture::TCP_SYN_RST), None);
        assert_eq!(rst(&fixture::UDP), None);
        let mut bad = fixture::TCP_SYN.to_vec();
        bad[80] ^= 1;
        assert_eq!(rst(&bad), None);
        // An ACK: seq = its ack, no ACK flag.
        let mut ack = fixture::TCP_SYN.to_vec();
        ack[67] = 0x10;
        ack[62..66].copy_from_slice(&[1, 2, 3, 4]);
        fix_checksum6(&mut ack);
        let info = parse_ipv6(&ack).unwrap();
        let mut out = [0u8; 128];
        let n = build_tcp_rst6(&mut out, &ack, &info).unwrap();
        assert_eq!(out[58..62], [1, 2, 3, 4]);
        assert_eq!(out[67], TCP_RST);
        assert_eq!(verify_checksums6(&out[..n]), Ok(()));
    }

    proptest! {
        /// Every error built about any fixture parses, verifies, quotes the
        /// original's start and stays within 1,280 bytes.
        #[test]
        fn answers_parse_and_verify(
            which in 0usize..100,
            ty in 1u8..5,
            code in 0u8..8,
            rest in any::<u32>(),
            src in any::<[u8; 16]>(),
        ) {
            let all = fixture::ipv6_frames();
            let (name, orig) = &all[which % all.len()];
            let info = parse_ipv6(orig).unwrap();
            let src = Ipv6Addr::from(src);
            let mut out = [0u8; 1600];
            if let Some(n) = build_icmpv6_error(&mut out, orig, &info, Icmpv6Error { ty, code, rest }, src) {
                let f = &out[..n];
                prop_assert!(n <= ETH_HDR + ICMPV6_ERROR_MAX_LEN);
                prop_assert_eq!(verify_checksums6(f), Ok(()), "{}", name);
                prop_assert_eq!(&f[62..], &orig[14..14 + n - 62]);
                if let Ok(got) = parse_ipv6(f) {
                    prop_assert_eq!((got.src, got.dst, got.hop_limit), (src, info.src, 64));
                }
            }
            if let Some(n) = build_tcp_rst6(&mut out, orig, &info) {
                prop_assert_eq!(verify_checksums6(&out[..n]), Ok(()));
            }
        }
    }
}
