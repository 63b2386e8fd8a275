//! Builders of the packets a router originates: ARP, ICMP errors, TCP
//! resets. Each writes a whole Ethernet frame into a caller's buffer and
//! returns its length, or `None` if the buffer is too small or the answer
//! must not be sent. MAC addresses are the caller's to fill in (except in
//! ARP, where they are part of the message).
//!
//! Frames are not padded to Ethernet's 60-byte minimum: like Linux, we leave
//! that to the NIC (an ARP frame is 42 bytes, a RST 54).

use std::net::Ipv4Addr;

use super::checksum::{self, finish, pseudo_header, sum};
use super::field::{self, read8};
use super::rewrite::DEFAULT_TTL;
use super::{
    icmp_is_error, Ipv4Info, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR, ICMP_DEST_UNREACH,
    ICMP_EXC_TTL, ICMP_FRAG_NEEDED, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, L4, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN,
};
use crate::flow::{IPPROTO_ICMP, IPPROTO_TCP};

/// The largest IPv4 total length of an ICMP error we build (RFC 1812 4.3.2.3,
/// Linux's limit): the frame is [`ETH_HDR`] bytes more.
pub const ICMP_ERROR_MAX_LEN: usize = 576;

/// Linux's `NR_ICMP_TYPES`: ICMP types above it are taken for errors.
const NR_ICMP_TYPES: u8 = 18;

/// IPv4 header without options, ICMP header, TCP header without options.
const IP_HDR: usize = 20;
const ICMP_HDR: usize = field::icmp::LEN;
const TCP_HDR: usize = field::tcp::MIN_LEN;

/// Builds an Ethernet/IPv4 ARP message: Ethernet source `src_mac`,
/// destination `dst_mac` (broadcast for a request, say); ARP sender
/// `src_mac`/`src_ip`, target `target_mac`/`target_ip`. 42 bytes.
pub fn build_arp(
    out: &mut [u8],
    op: u16,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_mac: [u8; 6],
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> Option<usize> {
    const LEN: usize = ETH_HDR + field::arp::LEN;
    let out = out.get_mut(..LEN)?;
    let mut f = [0u8; LEN];
    put(&mut f, field::eth::DST, &dst_mac);
    put(&mut f, field::eth::SRC, &src_mac);
    put(&mut f, field::eth::ETHERTYPE, &ETHERTYPE_ARP.to_be_bytes());
    let arp = ETH_HDR;
    put(
        &mut f,
        arp + field::arp::HTYPE,
        &field::arp::HTYPE_ETHERNET.to_be_bytes(),
    );
    put(
        &mut f,
        arp + field::arp::PTYPE,
        &ETHERTYPE_IPV4.to_be_bytes(),
    );
    put(&mut f, arp + field::arp::HLEN, &[6, 4]);
    put(&mut f, arp + field::arp::OPER, &op.to_be_bytes());
    put(&mut f, arp + field::arp::SHA, &src_mac);
    put(&mut f, arp + field::arp::SPA, &src_ip.octets());
    put(&mut f, arp + field::arp::THA, &target_mac);
    put(&mut f, arp + field::arp::TPA, &target_ip.octets());
    out.copy_from_slice(&f);
    Some(LEN)
}

/// Copies `bytes` to `buf[off..]`, on buffers sized by the builders (a write
/// that does not fit is dropped, never a panic).
fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(off..).and_then(|b| b.get_mut(..bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

/// Whether `addr` can be the destination of a packet we originate.
fn is_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast())
}

/// An IPv4 header without options: Ethernet header (MACs zero) and IP
/// header, checksum included.
fn eth_ipv4_header(
    tos: u8,
    total_len: u16,
    df: bool,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> [u8; ETH_HDR + IP_HDR] {
    use field::ipv4;
    const L3: usize = ETH_HDR;
    let mut h = [0u8; ETH_HDR + IP_HDR];
    put(&mut h, field::eth::ETHERTYPE, &ETHERTYPE_IPV4.to_be_bytes());
    put(&mut h, L3 + ipv4::VER_IHL, &[0x45, tos]);
    put(&mut h, L3 + ipv4::TOTAL_LEN, &total_len.to_be_bytes());
    // Id 0.
    let flags = if df { ipv4::FLAG_DF } else { 0 };
    put(&mut h, L3 + ipv4::FLAGS_FRAG, &flags.to_be_bytes());
    put(&mut h, L3 + ipv4::TTL, &[DEFAULT_TTL, proto]);
    put(&mut h, L3 + ipv4::SRC, &src.octets());
    put(&mut h, L3 + ipv4::DST, &dst.octets());
    let csum = checksum::ipv4_header(h.get(L3..).unwrap_or_default());
    put(&mut h, L3 + ipv4::CHECKSUM, &csum.to_be_bytes());
    h
}

/// An ICMP error to send: its type, code, and the 4 bytes after its
/// checksum (big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    pub ty: u8,
    pub code: u8,
    pub rest: u32,
}

impl IcmpError {
    /// Destination unreachable (type 3) with `code`.
    pub fn unreachable(code: u8) -> IcmpError {
        IcmpError {
            ty: ICMP_DEST_UNREACH,
            code,
            rest: 0,
        }
    }

    /// Fragmentation needed and DF set (type 3 code 4), with the next hop's
    /// MTU (RFC 1191).
    pub fn frag_needed(mtu: u16) -> IcmpError {
        IcmpError {
            ty: ICMP_DEST_UNREACH,
            code: ICMP_FRAG_NEEDED,
            rest: u32::from(mtu),
        }
    }

    /// Time to live exceeded in transit (type 11 code 0).
    pub fn ttl_exceeded() -> IcmpError {
        IcmpError {
            ty: ICMP_TIME_EXCEEDED,
            code: ICMP_EXC_TTL,
            rest: 0,
        }
    }

    /// Parameter problem (type 12 code 0) pointing at byte `pointer` of the
    /// header.
    pub fn parameter_problem(pointer: u8) -> IcmpError {
        IcmpError {
            ty: ICMP_PARAMETER_PROBLEM,
            code: 0,
            rest: u32::from(pointer) << 24,
        }
    }
}

/// Builds the ICMP error `err` about the datagram in `orig` (a frame;
/// `info` its parse) from `src`, as Linux's `icmp_send` does:
///
/// - IPv4: TOS `(orig tos & 0x1e) | 0xc0` (Linux's `IPTOS_TOS_MASK` and
///   precedence "internetwork control"; the mask keeps the low ECN bit, so an
///   ECT(0) original gets an ECT(0) error, as Linux sends it), id 0 (Linux
///   picks one), DF clear (Linux's ICMP socket does no PMTU discovery), TTL
///   64, to the original's source. No IP options (Linux would echo the
///   original's record-route/timestamp/source-route ones).
/// - ICMP: `rest` in the 4 bytes after the checksum (big-endian): the
///   next-hop MTU in the low 16 bits for "fragmentation needed" (type 3
///   code 4, RFC 1191), the pointer in the high 8 bits for "parameter
///   problem" (type 12), 0 for the others.
/// - As much of the original datagram (from its IP header; Ethernet padding
///   excluded) as fits in [`ICMP_ERROR_MAX_LEN`] bytes of IP total length.
/// - Ethernet MACs zero.
///
/// Returns `None`, sending nothing, as Linux does when: the original was
/// sent to an Ethernet group address (Linux: `pkt_type != PACKET_HOST`) or
/// an IP broadcast (255.255.255.255) or multicast address (the route's
/// RTCF_BROADCAST/MULTICAST; directed broadcasts are the router's to know);
/// it is a non-first fragment; it is an ICMP error or of an ICMP type above
/// 18 (no error about an error). Also when the original's source is not a
/// unicast address one could answer (0.0.0.0, 255.255.255.255, multicast),
/// and when `out` is too small.
pub fn build_icmp_error(
    out: &mut [u8],
    orig: &[u8],
    info: &Ipv4Info,
    err: IcmpError,
    src: Ipv4Addr,
) -> Option<usize> {
    let IcmpError { ty, code, rest } = err;
    let eth_group = read8(orig, field::eth::DST)? & 0x01 != 0;
    if eth_group || !is_unicast(info.dst) || !is_unicast(info.src) || !info.first_fragment {
        return None;
    }
    if info.proto == IPPROTO_ICMP {
        match info.l4info {
            L4::Icmp(icmp) if icmp.ty <= NR_ICMP_TYPES && !icmp_is_error(icmp.ty) => {}
            _ => return None,
        }
    }
    let quote_len = usize::from(info.total_len).min(ICMP_ERROR_MAX_LEN - IP_HDR - ICMP_HDR);
    let quote = orig.get(info.l3..)?.get(..quote_len)?;
    let ip_len = IP_HDR + ICMP_HDR + quote_len;
    let len = ETH_HDR + ip_len;
    let out = out.get_mut(..len)?;

    let tos = (info.tos & 0x1e) | 0xc0;
    // ip_len <= 576: the cast cannot truncate.
    let hdr = eth_ipv4_header(tos, ip_len as u16, false, IPPROTO_ICMP, src, info.src);
    let mut icmp = [0u8; ICMP_HDR];
    put(&mut icmp, field::icmp::TYPE, &[ty, code]);
    put(&mut icmp, field::icmp::REST, &rest.to_be_bytes());
    let csum = finish(sum(&icmp) + sum(quote));
    put(&mut icmp, field::icmp::CHECKSUM, &csum.to_be_bytes());

    let (h, rest) = out.split_at_mut(ETH_HDR + IP_HDR);
    h.copy_from_slice(&hdr);
    let (i, q) = rest.split_at_mut(ICMP_HDR);
    i.copy_from_slice(&icmp);
    q.copy_from_slice(quote);
    Some(len)
}

/// Builds the TCP RST answering the segment in `orig` (`info` its parse),
/// as Linux's `nf_send_reset` (REJECT --reject-with tcp-reset) does: IPv4
/// TOS 0, id 0, DF set, TTL 64 (Linux: the route's hop limit, 64 by
/// default); addresses and ports swapped; if the segment had ACK, seq = its
/// ack and no ACK flag; else seq 0, ACK flag, ack = its seq + SYN + FIN +
/// payload length; data offset 5, window 0, no options; Ethernet MACs zero.
/// 54 bytes.
///
/// Returns `None`, as Linux does, for a RST, a segment whose TCP checksum is
/// wrong, or one sent to a broadcast or multicast address; also for any
/// fragment (Linux answers only after reassembly; we cannot check the
/// checksum or know the payload length of a piece), a source that is not
/// unicast, or `out` too small.
pub fn build_tcp_rst(out: &mut [u8], orig: &[u8], info: &Ipv4Info) -> Option<usize> {
    let L4::Tcp(tcp) = info.l4info else {
        return None;
    };
    if tcp.flags & TCP_RST != 0 || info.fragment || !is_unicast(info.dst) || !is_unicast(info.src) {
        return None;
    }
    let seg_len = usize::from(info.total_len).checked_sub(info.ihl)?;
    let segment = orig.get(info.l4..)?.get(..seg_len)?;
    let pseudo = pseudo_header(
        info.src,
        info.dst,
        IPPROTO_TCP,
        u16::try_from(seg_len).ok()?,
    );
    if !checksum::verify(sum(segment) + pseudo) {
        return None;
    }
    let len = ETH_HDR + IP_HDR + TCP_HDR;
    let out = out.get_mut(..len)?;

    let (seq, ack, flags) = if tcp.flags & TCP_ACK != 0 {
        (tcp.ack, 0, TCP_RST)
    } else {
        let syn_fin = u32::from(tcp.flags & TCP_SYN != 0) + u32::from(tcp.flags & TCP_FIN != 0);
        // Linux computes this in u32 too: it wraps.
        let ack = tcp
            .seq
            .wrapping_add(syn_fin)
            .wrapping_add(tcp.payload_len as u32);
        (0, ack, TCP_RST | TCP_ACK)
    };
    let hdr = eth_ipv4_header(
        0,
        (IP_HDR + TCP_HDR) as u16,
        true,
        IPPROTO_TCP,
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
    // Window 0, urgent pointer 0; the checksum computed over a zero field.
    put(&mut t, field::tcp::WINDOW, &0u16.to_be_bytes());
    let csum = checksum::l4(info.dst, info.src, IPPROTO_TCP, &t);
    put(&mut t, field::tcp::CHECKSUM, &csum.to_be_bytes());

    let (h, rest) = out.split_at_mut(ETH_HDR + IP_HDR);
    h.copy_from_slice(&hdr);
    rest.copy_from_slice(&t);
    Some(len)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::*;
    use crate::wire::checksum::update16;
    use crate::wire::fixture::{self, fix_ip_checksum, verify_checksums};
    use crate::wire::{parse_arp, parse_ipv4, set_macs, IcmpInfo, ARP_REPLY, ARP_REQUEST};
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

    #[test]
    fn arp_matches_linux() {
        let mut out = [0u8; 64];
        let n = build_arp(&mut out, ARP_REQUEST, MAC_A, A, [0xff; 6], [0; 6], B).unwrap();
        assert_eq!(out[..n], fixture::ARP_REQUEST);
        let n = build_arp(&mut out, ARP_REPLY, MAC_B, B, MAC_A, MAC_A, A).unwrap();
        assert_eq!(out[..n], fixture::ARP_REPLY);
        assert_eq!(parse_arp(&out[..n]).unwrap().sender_mac, MAC_B);
        for short in 0..42 {
            assert_eq!(
                build_arp(&mut out[..short], 1, MAC_A, A, MAC_B, [0; 6], B),
                None
            );
        }
    }

    fn rst(orig: &[u8]) -> Option<Vec<u8>> {
        let info = parse_ipv4(orig).unwrap();
        let mut out = [0u8; 128];
        let n = build_tcp_rst(&mut out, orig, &info)?;
        Some(out[..n].to_vec())
    }

    /// Linux's resets (nf_send_reset) to the three TCP fixtures, byte for
    /// byte once the MACs are set.
    #[test]
    fn tcp_rst_matches_linux() {
        for (orig, linux) in [
            (&fixture::TCP_SYN[..], &fixture::TCP_SYN_RST[..]),
            (&fixture::TCP_PSH_ACK[..], &fixture::TCP_PSH_ACK_RST[..]),
            (&fixture::TCP_FIN[..], &fixture::TCP_FIN_RST[..]),
        ] {
            let mut f = rst(orig).unwrap();
            assert_eq!(f[..12], [0; 12]);
            assert_eq!(verify_checksums(&f), Ok(()));
            set_macs(&mut f, MAC_A, MAC_B);
            assert_eq!(f, linux);
        }
    }

    #[test]
    fn no_tcp_rst() {
        // No RST for a RST.
        assert_eq!(rst(&fixture::TCP_SYN_RST), None);
        // Not TCP.
        assert_eq!(rst(&fixture::UDP), None);
        // A wrong TCP checksum.
        let mut bad = fixture::TCP_SYN.to_vec();
        bad[50] ^= 0x40;
        assert_eq!(rst(&bad), None);
        // Broadcast and multicast destinations, an unspecified source.
        for (at, addr) in [
            (30, [255, 255, 255, 255]),
            (30, [224, 0, 0, 1]),
            (26, [0, 0, 0, 0]),
        ] {
            let mut f = fixture::TCP_SYN.to_vec();
            let old = [f[at], f[at + 1], f[at + 2], f[at + 3]];
            f[at..at + 4].copy_from_slice(&addr);
            fix_ip_checksum(&mut f);
            // Keep the TCP checksum right, so only the address is at fault.
            let c = u16::from_be_bytes([f[50], f[51]]);
            let c = crate::wire::checksum::update32(
                c,
                u32::from_be_bytes(old),
                u32::from_be_bytes(addr),
            );
            f[50..52].copy_from_slice(&c.to_be_bytes());
            assert_eq!(rst(&f), None, "{addr:?}");
        }
        // A fragment.
        let mut frag = fixture::TCP_SYN.to_vec();
        frag[20] |= 0x20;
        fix_ip_checksum(&mut frag);
        assert_eq!(rst(&frag), None);
        // Too small a buffer.
        let info = parse_ipv4(&fixture::TCP_SYN).unwrap();
        let mut out = [0u8; 54];
        for n in 0..54 {
            assert_eq!(build_tcp_rst(&mut out[..n], &fixture::TCP_SYN, &info), None);
        }
        assert_eq!(build_tcp_rst(&mut out, &fixture::TCP_SYN, &info), Some(54));
    }

    fn icmp_error(orig: &[u8], ty: u8, code: u8, rest: u32, src: Ipv4Addr) -> Option<Vec<u8>> {
        let info = parse_ipv4(orig).unwrap();
        let mut out = [0u8; 1600];
        let n = build_icmp_error(&mut out, orig, &info, IcmpError { ty, code, rest }, src)?;
        Some(out[..n].to_vec())
    }

    /// Linux's port unreachables (icmp_send) about five fixtures, byte for
    /// byte once the MACs are set and Linux's IP id carried over.
    #[test]
    fn port_unreachable_matches_linux() {
        for (orig, linux) in [
            (fixture::UDP.to_vec(), fixture::UDP_PORT_UNREACH.to_vec()),
            (
                fixture::UDP_NO_CSUM.to_vec(),
                fixture::UDP_NO_CSUM_PORT_UNREACH.to_vec(),
            ),
            (
                fixture::TCP_SYN_81.to_vec(),
                fixture::TCP_PORT_UNREACH.to_vec(),
            ),
            (
                fixture::UDP_OPTIONS.to_vec(),
                fixture::UDP_OPTIONS_PORT_UNREACH.to_vec(),
            ),
            (fixture::udp_tos(), fixture::udp_tos_port_unreach()),
        ] {
            let mut f = icmp_error(&orig, 3, 3, 0, B).unwrap();
            assert_eq!(f[..12], [0; 12]);
            assert_eq!(verify_checksums(&f), Ok(()));
            set_macs(&mut f, MAC_A, MAC_B);
            let id = [linux[18], linux[19]];
            let c = update16(
                u16::from_be_bytes([f[24], f[25]]),
                0,
                u16::from_be_bytes(id),
            );
            f[18..20].copy_from_slice(&id);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            assert_eq!(f, linux);
        }
    }

    #[test]
    fn frag_needed_and_time_exceeded() {
        let f = icmp_error(&fixture::frag_first(), 3, 4, 1400, B).unwrap();
        assert_eq!(f.len(), 14 + 576);
        assert_eq!(f[38..42], [0, 0, 0x05, 0x78]);
        assert_eq!(verify_checksums(&f), Ok(()));
        let info = parse_ipv4(&f).unwrap();
        let L4::Icmp(IcmpInfo {
            ty: 3,
            code: 4,
            inner: Some(inner),
            ..
        }) = info.l4info
        else {
            panic!("{info:?}")
        };
        assert_eq!((inner.src, inner.sport, inner.dport), (A, 5357, 9995));

        let router = Ipv4Addr::new(192, 0, 2, 254);
        let f = icmp_error(&fixture::TCP_SYN, 11, 0, 0, router).unwrap();
        let info = parse_ipv4(&f).unwrap();
        assert_eq!(
            (info.src, info.dst, info.ttl, info.tos, info.df),
            (router, A, 64, 0xc0, false)
        );
        assert_eq!(f[38..42], [0; 4]);
        // A parameter problem's pointer is the high byte.
        let f = icmp_error(&fixture::TCP_SYN, 12, 0, 22 << 24, router).unwrap();
        assert_eq!(f[34..36], [12, 0]);
        assert_eq!(f[38..42], [22, 0, 0, 0]);
        assert_eq!(verify_checksums(&f), Ok(()));
        // An echo request is a query: it may get an error.
        assert!(icmp_error(&fixture::ICMP_ECHO_REQUEST, 3, 1, 0, B).is_some());
    }

    #[test]
    fn no_icmp_error() {
        // About an ICMP error.
        assert_eq!(icmp_error(&fixture::UDP_PORT_UNREACH, 3, 3, 0, A), None);
        // About an ICMP message of unknown type (> 18).
        let mut unknown = fixture::ICMP_ECHO_REQUEST.to_vec();
        unknown[34] = 19;
        assert_eq!(icmp_error(&unknown, 3, 3, 0, B), None);
        // About a non-first fragment.
        assert_eq!(icmp_error(&fixture::frag_last(), 11, 1, 0, B), None);
        // About a frame sent to an Ethernet group address.
        let mut bcast = fixture::UDP.to_vec();
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(icmp_error(&bcast, 3, 3, 0, B), None);
        bcast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_eq!(icmp_error(&bcast, 3, 3, 0, B), None);
        // To an IP broadcast or multicast address, from a source one cannot
        // answer.
        for (at, addr) in [
            (30, [255, 255, 255, 255]),
            (30, [239, 1, 2, 3]),
            (26, [0, 0, 0, 0]),
            (26, [224, 0, 0, 5]),
            (26, [255, 255, 255, 255]),
        ] {
            let mut f = fixture::UDP.to_vec();
            f[at..at + 4].copy_from_slice(&addr);
            fix_ip_checksum(&mut f);
            assert_eq!(icmp_error(&f, 3, 3, 0, B), None, "{addr:?}");
        }
        // Too small a buffer.
        let info = parse_ipv4(&fixture::UDP).unwrap();
        let mut out = [0u8; 81];
        for n in 0..81 {
            assert_eq!(
                build_icmp_error(
                    &mut out[..n],
                    &fixture::UDP,
                    &info,
                    IcmpError::unreachable(3),
                    B
                ),
                None
            );
        }
        assert_eq!(
            build_icmp_error(&mut out, &fixture::UDP, &info, IcmpError::unreachable(3), B),
            Some(81)
        );
        // An `info` that does not describe `orig`.
        let syn_info = parse_ipv4(&fixture::udp_tos()).unwrap();
        assert_eq!(
            build_icmp_error(
                &mut [0; 1600],
                &fixture::UDP,
                &syn_info,
                IcmpError::unreachable(3),
                B
            ),
            None
        );
    }

    #[test]
    fn ethernet_padding_is_not_quoted() {
        let mut padded = fixture::UDP.to_vec();
        padded.resize(60, 0xee);
        let f = icmp_error(&padded, 3, 3, 0, B).unwrap();
        assert_eq!(f, icmp_error(&fixture::UDP, 3, 3, 0, B).unwrap());
    }

    proptest! {
        /// Every answer we build parses and its checksums verify; an ICMP
        /// error's quote is the original's start and never exceeds 576 bytes.
        #[test]
        fn answers_parse_and_verify(
            which in 0usize..1000,
            ty in prop_oneof![Just(3u8), Just(11), Just(12), Just(4), Just(5)],
            code in 0u8..16,
            rest in any::<u32>(),
            src in any::<u32>(),
        ) {
            let all = fixture::ipv4_frames();
            let (name, orig) = &all[which % all.len()];
            let info = parse_ipv4(orig).unwrap();
            let mut out = [0u8; 1600];
            if let Some(n) = build_icmp_error(&mut out, orig, &info, IcmpError { ty, code, rest }, Ipv4Addr::from(src)) {
                let f = &out[..n];
                prop_assert!(n <= ETH_HDR + ICMP_ERROR_MAX_LEN);
                prop_assert_eq!(verify_checksums(f), Ok(()), "{}", name);
                let got = parse_ipv4(f).unwrap();
                prop_assert_eq!((got.src, got.dst, got.ttl), (Ipv4Addr::from(src), info.src, 64));
                let quoted = n - 42;
                prop_assert_eq!(&f[42..], &orig[14..14 + quoted]);
                let L4::Icmp(icmp) = got.l4info else { panic!() };
                prop_assert_eq!((icmp.ty, icmp.code, icmp.is_error), (ty, code, true));
                let inner = icmp.inner.unwrap();
                prop_assert_eq!((inner.src, inner.dst, inner.proto), (info.src, info.dst, info.proto));
            }
            if let Some(n) = build_tcp_rst(&mut out, orig, &info) {
                let f = &out[..n];
                prop_assert_eq!(verify_checksums(f), Ok(()), "{}", name);
                let got = parse_ipv4(f).unwrap();
                prop_assert_eq!((got.src, got.dst, got.df), (info.dst, info.src, true));
                let (L4::Tcp(t), L4::Tcp(o)) = (got.l4info, info.l4info) else { panic!() };
                prop_assert_eq!((t.sport, t.dport), (o.dport, o.sport));
                prop_assert!(t.flags & TCP_RST != 0);
            }
        }

        /// Whatever a mutated frame parses into, the builders and rewrites
        /// neither panic nor produce a frame with a wrong IPv4 checksum.
        #[test]
        fn mutated_frames_never_panic(
            which in 0usize..1000,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let all = fixture::ipv4_frames();
            let mut f = all[which % all.len()].1.clone();
            for (at, x) in flips {
                let at = 14 + at % (f.len() - 14);
                f[at] ^= x;
            }
            fix_ip_checksum(&mut f);
            let keep = f.len() - cut % 8;
            f.truncate(keep);
            if let Ok(info) = parse_ipv4(&f) {
                let mut out = [0u8; 1600];
                if let Some(n) = build_icmp_error(&mut out, &f, &info, IcmpError::unreachable(3), B) {
                    prop_assert!(parse_ipv4(&out[..n]).is_ok());
                }
                if let Some(n) = build_tcp_rst(&mut out, &f, &info) {
                    prop_assert_eq!(verify_checksums(&out[..n]), Ok(()));
                }
                let a = Ipv4Addr::new(100, 64, 0, 1);
                let mut g = f.clone();
                crate::wire::set_src(&mut g, &info, a, 1);
                crate::wire::set_dst(&mut g, &info, a, 2);
                crate::wire::set_inner_src(&mut g, &info, a, 3);
                crate::wire::set_inner_dst(&mut g, &info, a, 4);
                crate::wire::set_dscp(&mut g, &info, 46);
                crate::wire::dec_ttl(&mut g, &info);
                crate::wire::echo_reply_in_place(&mut g, &info, a);
                prop_assert!(parse_ipv4(&g).is_ok());
            }
        }
    }
}
