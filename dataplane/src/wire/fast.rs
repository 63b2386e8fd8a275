//! The established-flow fast path's wire work, on the frames it takes:
//! Ethernet II, IPv4 without options and not a fragment (or IPv6 without
//! extension headers), TCP without SYN or UDP. [`peek`] ([`peek6`]) reads
//! what the flow cache and conntrack need without a full parse;
//! [`FlowEdit::apply`] makes a cached flow's rewrite (NAT both ways,
//! TTL or hop limit, DSCP) with the same incremental checksum updates, in
//! the same order, as the full path's hooks, so the bytes out are the same.
//!
//! Anything else (IP options, extension headers, fragments, SYNs, other
//! protocols, a bad IPv4 header checksum, truncation) is left to the full
//! path: `peek` answers `None` and the frame is parsed and judged as usual,
//! with its drop reason.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{self, update128, update16, update32};
use super::field::{self, read16, read32, read8, write128, write16, write32, write8};
use super::ipv6::IPV6_HDR;
use super::rewrite::{set_word, transport_csum, Sum};
use super::ETH_HDR;
use crate::flow::{Tuple, IPPROTO_TCP, IPPROTO_UDP};

const L3: usize = ETH_HDR;
/// Where the transport header starts: the fast path takes no IP options.
const L4: usize = ETH_HDR + field::ipv4::MIN_LEN;
const TCP_SYN: u8 = 0x02;

/// Where IPv6's transport header starts: the fast path takes no extension
/// headers.
const L4_6: usize = ETH_HDR + IPV6_HDR;

/// What the fast path needs of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peek<A = Ipv4Addr> {
    /// As it arrives (before any NAT).
    pub tuple: Tuple<A>,
    /// From the IP header on (IPv6: the payload length plus 40).
    pub total_len: u16,
    /// The TTL or hop limit.
    pub ttl: u8,
    pub tcp: Option<FastTcp>,
}

/// The TCP fields conntrack reads (no options: they matter on SYNs only,
/// which the fast path does not take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastTcp {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload_len: u32,
}

/// Reads a frame addressed to `mac` that the fast path may take; `None`
/// for anything else. Verifies the IPv4 header checksum (the transport
/// checksum is the caller's, as it is conntrack's). Always inlined: it is
/// the fast path's parse, and a worker compiled for several `Emit` types
/// (tests, tools) must not turn it into a call.
#[inline(always)]
pub fn peek(frame: &[u8], mac: &[u8; 6]) -> Option<Peek> {
    // Ethernet, IPv4 without options and the first 8 bytes of UDP or TCP,
    // as one fixed-size block: no bounds checks below.
    let h: &[u8; L4 + 8] = frame.first_chunk()?;
    let ip: &[u8; field::ipv4::MIN_LEN] = h[L3..L4].try_into().ok()?;
    if h[..6] != *mac || h[field::eth::ETHERTYPE..L3] != [0x08, 0x00] || ip[0] != 0x45 {
        return None;
    }
    // MF or a fragment offset.
    if ip[6] & 0x3f != 0 || ip[7] != 0 {
        return None;
    }
    if !checksum::verify(checksum::sum(ip)) {
        return None;
    }
    let total_len = u16::from_be_bytes([ip[2], ip[3]]);
    let seg = frame.get(L4..L3 + usize::from(total_len))?;
    let proto = ip[9];
    let tcp = match proto {
        // A UDP length conntrack refuses (`udp_error`) is the full path's.
        IPPROTO_UDP => {
            let udp_len = usize::from(u16::from_be_bytes([
                h[L4 + field::udp::LENGTH],
                h[L4 + field::udp::LENGTH + 1],
            ]));
            if udp_len < field::udp::LEN || udp_len > seg.len() {
                return None;
            }
            None
        }
        IPPROTO_TCP => {
            let t: &[u8; field::tcp::MIN_LEN] = seg.first_chunk()?;
            let header_len = usize::from(t[field::tcp::DATA_OFF] >> 4) * 4;
            let flags = t[field::tcp::FLAGS];
            if header_len < field::tcp::MIN_LEN || header_len > seg.len() || flags & TCP_SYN != 0 {
                return None;
            }
            let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
            Some(FastTcp {
                flags,
                seq: word(field::tcp::SEQ),
                ack: word(field::tcp::ACK),
                window: u16::from_be_bytes([t[field::tcp::WINDOW], t[field::tcp::WINDOW + 1]]),
                payload_len: (seg.len() - header_len) as u32,
            })
        }
        _ => return None,
    };
    let l4 = &h[L4..];
    Some(Peek {
        tuple: Tuple {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            proto,
        },
        total_len,
        ttl: ip[field::ipv4::TTL],
        tcp,
    })
}

/// The transport header of a segment the fast path may take: UDP with a
/// length conntrack accepts (a bad one is `udp_error`'s, the full path's),
/// or TCP without SYN with a sane header length, whose fields it returns.
/// `None`: not the fast path's.
#[inline(always)]
fn transport(proto: u8, seg: &[u8]) -> Option<Option<FastTcp>> {
    match proto {
        IPPROTO_UDP => {
            let u: &[u8; field::udp::LEN] = seg.first_chunk()?;
            let at = field::udp::LENGTH;
            let udp_len = usize::from(u16::from_be_bytes([u[at], u[at + 1]]));
            if udp_len < field::udp::LEN || udp_len > seg.len() {
                return None;
            }
            Some(None)
        }
        IPPROTO_TCP => {
            let t: &[u8; field::tcp::MIN_LEN] = seg.first_chunk()?;
            let header_len = usize::from(t[field::tcp::DATA_OFF] >> 4) * 4;
            let flags = t[field::tcp::FLAGS];
            if header_len < field::tcp::MIN_LEN || header_len > seg.len() || flags & TCP_SYN != 0 {
                return None;
            }
            let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
            Some(Some(FastTcp {
                flags,
                seq: word(field::tcp::SEQ),
                ack: word(field::tcp::ACK),
                window: u16::from_be_bytes([t[field::tcp::WINDOW], t[field::tcp::WINDOW + 1]]),
                payload_len: (seg.len() - header_len) as u32,
            }))
        }
        _ => None,
    }
}

/// [`peek`] for IPv6: a frame addressed to `mac` with an IPv6 header whose
/// next header is TCP or UDP (no extension headers: they, fragments among
/// them, are the full path's), a payload the frame holds, and a source and
/// destination the full path would not refuse on sight (multicast, the
/// reserved scopes, loopback: left to `parse_ipv6` to count).
#[inline(always)]
pub fn peek6(frame: &[u8], mac: &[u8; 6]) -> Option<Peek<Ipv6Addr>> {
    let h: &[u8; L4_6 + 8] = frame.first_chunk()?;
    let ip: &[u8; IPV6_HDR] = h[L3..L4_6].try_into().ok()?;
    if h[..6] != *mac || h[field::eth::ETHERTYPE..L3] != [0x86, 0xdd] || ip[0] >> 4 != 6 {
        return None;
    }
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]);
    let seg = frame.get(L4_6..L4_6 + usize::from(payload_len))?;
    let proto = ip[field::ipv6::NEXT_HEADER];
    let addr = |at: usize| -> Option<Ipv6Addr> {
        let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(b))
    };
    let (src, dst) = (addr(field::ipv6::SRC)?, addr(field::ipv6::DST)?);
    if src.is_multicast() || dst.is_multicast() || src.is_loopback() || dst.is_loopback() {
        return None;
    }
    let tcp = transport(proto, seg)?;
    let l4 = &h[L4_6..];
    Some(Peek {
        tuple: Tuple {
            src,
            dst,
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            proto,
        },
        total_len: payload_len.checked_add(IPV6_HDR as u16)?,
        ttl: ip[field::ipv6::HOP_LIMIT],
        tcp,
    })
}

/// [`l4_checksum_ok`] for IPv6 (a UDP checksum of 0 is wrong there).
#[inline]
pub fn l4_checksum_ok6(frame: &[u8], p: &Peek<Ipv6Addr>) -> bool {
    let t = &p.tuple;
    frame
        .get(L4_6..ETH_HDR + usize::from(p.total_len))
        .is_some_and(|seg| checksum::transport_ok6(t.src, t.dst, t.proto, seg))
}

/// Whether the transport checksum of a peeked frame verifies (a UDP
/// checksum of 0 means none).
#[inline]
pub fn l4_checksum_ok(frame: &[u8], p: &Peek) -> bool {
    let t = &p.tuple;
    frame
        .get(L4..L3 + usize::from(p.total_len))
        .is_some_and(|seg| checksum::transport_ok(t.src, t.dst, t.proto, seg))
}

/// A cached flow's rewrite: what its NAT makes of the destination
/// (PREROUTING) and of the source (POSTROUTING), and the DSCP a rule sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEdit<A = Ipv4Addr> {
    pub dst: Option<(A, u16)>,
    pub src: Option<(A, u16)>,
    pub dscp: Option<u8>,
}

impl FlowEdit<Ipv6Addr> {
    /// Rewrites a frame [`peek6`] took (protocol `proto`): destination NAT,
    /// hop limit decrement, source NAT, DSCP, as the full path's
    /// `wire::ipv6::{set_dst, dec_hop_limit, set_src, set_tclass}` do them
    /// (no header checksum; the transport checksum updated through the
    /// pseudo-header, a UDP sum of 0 sent as 0xffff). The caller checked
    /// hop limit > 1.
    #[inline]
    pub fn apply(&self, frame: &mut [u8], proto: u8) {
        let _ = self.try_apply(frame, proto);
    }

    fn try_apply(&self, frame: &mut [u8], proto: u8) -> Option<()> {
        if let Some((addr, port)) = self.dst {
            set_end6(
                frame,
                proto,
                field::ipv6::DST,
                field::tcp::DPORT,
                addr,
                port,
            )?;
        }
        let hl = L3 + field::ipv6::HOP_LIMIT;
        let h = read8(frame, hl)?;
        write8(frame, hl, h.saturating_sub(1))?;
        if let Some((addr, port)) = self.src {
            set_end6(
                frame,
                proto,
                field::ipv6::SRC,
                field::tcp::SPORT,
                addr,
                port,
            )?;
        }
        if let Some(d) = self.dscp {
            // The traffic class is bits 4-11 of the first word; ECN kept.
            let at = L3 + field::ipv6::VER_TC_FLOW;
            let word = read16(frame, at)?;
            let tclass = ((word >> 4) as u8 & 0x03) | ((d & 0x3f) << 2);
            write16(frame, at, (word & 0xf00f) | (u16::from(tclass) << 4))?;
        }
        Some(())
    }
}

/// The IPv6 `set_end` of `wire::ipv6::rewrite` for a frame [`peek6`] took:
/// the address at `addr_off` of the IPv6 header and the TCP/UDP port at
/// `port_off`, the transport checksum updated for both (`update128`, then
/// `update16`), a UDP checksum of 0 left alone and a computed 0 sent as
/// 0xffff.
#[inline]
fn set_end6(
    frame: &mut [u8],
    proto: u8,
    addr_off: usize,
    port_off: usize,
    addr: Ipv6Addr,
    port: u16,
) -> Option<()> {
    let (csum_off, udp) = if proto == IPPROTO_TCP {
        (field::tcp::CHECKSUM, false)
    } else {
        (field::udp::CHECKSUM, true)
    };
    let old: [u8; 16] = frame
        .get(L3 + addr_off..L3 + addr_off + 16)?
        .try_into()
        .ok()?;
    let old_port = read16(frame, L4_6 + port_off)?;
    let csum = read16(frame, L4_6 + csum_off)?;
    write128(frame, L3 + addr_off, addr.octets())?;
    write16(frame, L4_6 + port_off, port)?;
    if udp && csum == 0 {
        return Some(());
    }
    let mut c = update16(update128(csum, Ipv6Addr::from(old), addr), old_port, port);
    if udp && c == 0 {
        c = 0xffff;
    }
    write16(frame, L4_6 + csum_off, c)
}

impl FlowEdit {
    /// Rewrites a frame [`peek`] took (protocol `proto`): destination NAT,
    /// TTL decrement, source NAT, DSCP, each with its checksum updates, as
    /// the full path does them (`set_dst`, `dec_ttl`, `set_src`,
    /// `set_dscp`). The caller checked `ttl > 1`.
    #[inline]
    pub fn apply(&self, frame: &mut [u8], proto: u8) {
        let _ = self.try_apply(frame, proto);
    }

    fn try_apply(&self, frame: &mut [u8], proto: u8) -> Option<()> {
        if let Some((addr, port)) = self.dst {
            set_end(
                frame,
                proto,
                field::ipv4::DST,
                field::tcp::DPORT,
                addr,
                port,
            )?;
        }
        set_word(frame, L3, field::ipv4::TTL, |w| w - 0x0100)?;
        if let Some((addr, port)) = self.src {
            set_end(
                frame,
                proto,
                field::ipv4::SRC,
                field::tcp::SPORT,
                addr,
                port,
            )?;
        }
        if let Some(d) = self.dscp {
            set_word(frame, L3, field::ipv4::VER_IHL, |w| {
                (w & 0xff03) | (u16::from(d & 0x3f) << 2)
            })?;
        }
        Some(())
    }
}

/// `rewrite::set_end` for a frame [`peek`] took: the address at `addr_off`
/// of the IPv4 header and the port at `port_off` of the TCP/UDP header,
/// with the same checksum updates ([`transport_csum`]).
#[inline]
fn set_end(
    frame: &mut [u8],
    proto: u8,
    addr_off: usize,
    port_off: usize,
    addr: Ipv4Addr,
    port: u16,
) -> Option<()> {
    let (csum_off, kind) = if proto == IPPROTO_TCP {
        (field::tcp::CHECKSUM, Sum::Tcp)
    } else {
        (field::udp::CHECKSUM, Sum::Udp)
    };
    let old_addr = read32(frame, L3 + addr_off)?;
    let old_port = read16(frame, L4 + port_off)?;
    let ip_csum = read16(frame, L3 + field::ipv4::CHECKSUM)?;
    let old = read16(frame, L4 + csum_off)?;
    let new_addr = u32::from(addr);
    write32(frame, L3 + addr_off, new_addr)?;
    write16(
        frame,
        L3 + field::ipv4::CHECKSUM,
        update32(ip_csum, old_addr, new_addr),
    )?;
    write16(frame, L4 + port_off, port)?;
    match transport_csum(kind, old, old_port, port, old_addr, new_addr) {
        Some(new) => write16(frame, L4 + csum_off, new),
        None => Some(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, parse_ipv4, L4 as WL4};
    use proptest::prelude::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];

    /// A TCP or UDP frame with a payload and right checksums.
    fn frame(
        udp: bool,
        t: &Tuple,
        ttl: u8,
        tos: u8,
        flags: u8,
        payload: &[u8],
        zero_udp: bool,
    ) -> Vec<u8> {
        let l4_len = if udp { 8 } else { 20 } + payload.len();
        let total = 20 + l4_len;
        let mut f = vec![0u8; 14 + total];
        f[..6].copy_from_slice(&MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[15] = tos;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[18..20].copy_from_slice(&[0x12, 0x34]);
        f[22] = ttl;
        f[23] = if udp { 17 } else { 6 };
        f[26..30].copy_from_slice(&t.src.octets());
        f[30..34].copy_from_slice(&t.dst.octets());
        let c = checksum::ipv4_header(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&t.sport.to_be_bytes());
        f[36..38].copy_from_slice(&t.dport.to_be_bytes());
        let hl = if udp {
            f[38..40].copy_from_slice(&(l4_len as u16).to_be_bytes());
            8
        } else {
            f[38..42].copy_from_slice(&7u32.to_be_bytes());
            f[42..46].copy_from_slice(&9u32.to_be_bytes());
            f[46] = 5 << 4;
            f[47] = flags;
            f[48..50].copy_from_slice(&1000u16.to_be_bytes());
            20
        };
        f[34 + hl..].copy_from_slice(payload);
        if !(udp && zero_udp) {
            let at = 34 + if udp { 6 } else { 16 };
            let mut c = checksum::l4(t.src, t.dst, f[23], &f[34..]);
            if udp && c == 0 {
                c = 0xffff;
            }
            f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    fn tuple(a: u32, b: u32, sp: u16, dp: u16, udp: bool) -> Tuple {
        Tuple {
            src: Ipv4Addr::from(a),
            dst: Ipv4Addr::from(b),
            sport: sp,
            dport: dp,
            proto: if udp { 17 } else { 6 },
        }
    }

    #[test]
    fn peek_reads_what_parse_reads() {
        let t = tuple(0xc0a8_0a02, 0xcb00_7109, 40000, 443, false);
        let f = frame(false, &t, 64, 0, 0x18, b"hello", false);
        let p = peek(&f, &MAC).expect("fast frame");
        let info = parse_ipv4(&f).expect("valid");
        let WL4::Tcp(tcp) = info.l4info else {
            panic!("tcp")
        };
        assert_eq!(p.tuple, t);
        assert_eq!((p.total_len, p.ttl), (info.total_len, info.ttl));
        assert_eq!(
            p.tcp,
            Some(FastTcp {
                flags: tcp.flags,
                seq: tcp.seq,
                ack: tcp.ack,
                window: tcp.window,
                payload_len: tcp.payload_len as u32
            })
        );
        assert!(l4_checksum_ok(&f, &p));
    }

    #[test]
    fn peek_leaves_the_rest_to_the_full_path() {
        let t = tuple(0x0a00_0001, 0x0a00_0002, 1000, 53, true);
        let good = frame(true, &t, 64, 0, 0, b"q", false);
        assert!(peek(&good, &MAC).is_some());
        let syn = frame(false, &tuple(1, 2, 3, 4, false), 64, 0, 0x02, b"", false);
        assert!(peek(&syn, &MAC).is_none(), "SYN");
        let mut bad = good.clone();
        bad[24] ^= 1;
        assert!(peek(&bad, &MAC).is_none(), "IPv4 header checksum");
        let mut frag = good.clone();
        frag[20] = 0x20; // MF
        assert!(peek(&frag, &MAC).is_none(), "fragment");
        let mut options = good.clone();
        options[14] = 0x46;
        assert!(peek(&options, &MAC).is_none(), "IP options");
        assert!(peek(&good[..good.len() - 1], &MAC).is_none(), "truncated");
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(peek(&arp, &MAC).is_none(), "not IPv4");
        assert!(peek(&good, &[2, 0, 0, 0, 0, 9]).is_none(), "another MAC");
        let mut l4 = good.clone();
        l4[42] ^= 0xff;
        let p = peek(&l4, &MAC).expect("peeked");
        assert!(!l4_checksum_ok(&l4, &p), "UDP checksum");
        let zero = frame(true, &t, 64, 0, 0, b"q", true);
        assert!(l4_checksum_ok(&zero, &peek(&zero, &MAC).expect("peeked")));
        for n in 0..good.len() {
            let _ = peek(&good[..n], &MAC);
        }
    }

    proptest! {
        /// The fast rewrite gives the bytes the full path's rewrites give.
        #[test]
        fn apply_matches_the_full_path(
            udp in any::<bool>(),
            zero_udp in any::<bool>(),
            a in any::<u32>(), b in any::<u32>(), sp in any::<u16>(), dp in any::<u16>(),
            dst in proptest::option::of((any::<u32>(), any::<u16>())),
            src in proptest::option::of((any::<u32>(), any::<u16>())),
            dscp in proptest::option::of(0u8..64),
            ttl in 2u8..=255, tos in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let t = tuple(a, b, sp, dp, udp);
            let f = frame(udp, &t, ttl, tos, 0x10, &payload, zero_udp);
            let p = peek(&f, &MAC).expect("fast frame");
            let edit = FlowEdit {
                dst: dst.map(|(a, p)| (Ipv4Addr::from(a), p)),
                src: src.map(|(a, p)| (Ipv4Addr::from(a), p)),
                dscp,
            };
            let mut fast = f.clone();
            edit.apply(&mut fast, p.tuple.proto);

            let mut full = f.clone();
            let info = parse_ipv4(&full).expect("valid");
            if let Some((addr, port)) = edit.dst {
                wire::set_dst(&mut full, &info, addr, port);
            }
            wire::dec_ttl(&mut full, &info);
            if let Some((addr, port)) = edit.src {
                wire::set_src(&mut full, &info, addr, port);
            }
            if let Some(d) = dscp {
                wire::set_dscp(&mut full, &info, d);
            }
            prop_assert_eq!(fast, full);
        }

        /// IPv6: the fast rewrite gives the bytes the full path's
        /// `wire::ipv6` rewrites give, in the hooks' order.
        #[test]
        fn apply6_matches_the_full_path(
            udp in any::<bool>(),
            a in any::<u128>(), b in any::<u128>(), sp in any::<u16>(), dp in any::<u16>(),
            dst in proptest::option::of((any::<u128>(), any::<u16>())),
            src in proptest::option::of((any::<u128>(), any::<u16>())),
            dscp in proptest::option::of(0u8..64),
            hl in 2u8..=255, tclass in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            // Unicast, not loopback: what `peek6` takes.
            let unicast = |x: u128| Ipv6Addr::from(x & !(0xffu128 << 120) | 0x2001u128 << 112);
            let t = Tuple {
                src: unicast(a),
                dst: unicast(b),
                sport: sp,
                dport: dp,
                proto: if udp { 17 } else { 6 },
            };
            let f = frame6(&t, hl, tclass, &payload);
            let p = peek6(&f, &MAC).expect("fast frame");
            prop_assert!(l4_checksum_ok6(&f, &p));
            let edit = FlowEdit {
                dst: dst.map(|(a, p)| (Ipv6Addr::from(a), p)),
                src: src.map(|(a, p)| (Ipv6Addr::from(a), p)),
                dscp,
            };
            let mut fast = f.clone();
            edit.apply(&mut fast, p.tuple.proto);

            let mut full = f.clone();
            let info = crate::wire::ipv6::parse_ipv6(&full).expect("valid");
            if let Some((addr, port)) = edit.dst {
                crate::wire::ipv6::set_dst(&mut full, &info, addr, port);
            }
            crate::wire::ipv6::dec_hop_limit(&mut full, &info);
            if let Some((addr, port)) = edit.src {
                crate::wire::ipv6::set_src(&mut full, &info, addr, port);
            }
            if let Some(d) = dscp {
                crate::wire::ipv6::set_dscp(&mut full, &info, d);
            }
            prop_assert_eq!(fast, full);
        }
    }

    /// A TCP (flags ACK) or UDP frame in IPv6, checksum right.
    fn frame6(t: &Tuple<Ipv6Addr>, hl: u8, tclass: u8, payload: &[u8]) -> Vec<u8> {
        let udp = t.proto == 17;
        let mut seg = Vec::new();
        seg.extend_from_slice(&t.sport.to_be_bytes());
        seg.extend_from_slice(&t.dport.to_be_bytes());
        if udp {
            seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            seg.extend_from_slice(&[0, 0]);
        } else {
            seg.extend_from_slice(&7u32.to_be_bytes());
            seg.extend_from_slice(&9u32.to_be_bytes());
            seg.extend_from_slice(&[5 << 4, 0x10, 0x03, 0xe8, 0, 0, 0, 0]);
        }
        seg.extend_from_slice(payload);
        let at = if udp { 6 } else { 16 };
        let mut c = checksum::l4_v6(t.src, t.dst, t.proto, &seg);
        if udp && c == 0 {
            c = 0xffff;
        }
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 9, 9, 0x86, 0xdd]);
        f.extend_from_slice(&(0x6000_0000u32 | u32::from(tclass) << 20 | 0x12345).to_be_bytes());
        f.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        f.extend_from_slice(&[t.proto, hl]);
        f.extend_from_slice(&t.src.octets());
        f.extend_from_slice(&t.dst.octets());
        f.extend_from_slice(&seg);
        f
    }

    #[test]
    fn peek6_leaves_the_rest_to_the_full_path() {
        let t = Tuple {
            src: "fd00:10::2".parse().expect("addr"),
            dst: "2001:db8::9".parse().expect("addr"),
            sport: 1000,
            dport: 53,
            proto: 17,
        };
        let good = frame6(&t, 64, 0, b"q");
        let p = peek6(&good, &MAC).expect("fast frame");
        assert_eq!((p.tuple, p.total_len, p.ttl), (t, 49, 64));
        assert!(l4_checksum_ok6(&good, &p));
        let mut ext = good.clone();
        ext[20] = 0; // hop-by-hop
        assert!(peek6(&ext, &MAC).is_none(), "extension header");
        let mut frag = good.clone();
        frag[20] = 44;
        assert!(peek6(&frag, &MAC).is_none(), "fragment header");
        let mut mcast = good.clone();
        mcast[38] = 0xff;
        assert!(peek6(&mcast, &MAC).is_none(), "multicast destination");
        assert!(peek6(&good[..good.len() - 1], &MAC).is_none(), "truncated");
        assert!(peek6(&good, &[2, 0, 0, 0, 0, 9]).is_none(), "another MAC");
        let mut zero = good.clone();
        zero[60..62].fill(0);
        let p = peek6(&zero, &MAC).expect("peeked");
        assert!(
            !l4_checksum_ok6(&zero, &p),
            "a UDP checksum of 0 is wrong in IPv6"
        );
        let mut syn = frame6(&Tuple { proto: 6, ..t }, 64, 0, b"");
        syn[67] = 0x02;
        assert!(peek6(&syn, &MAC).is_none(), "SYN");
        for n in 0..good.len() {
            let _ = peek6(&good[..n], &MAC);
        }
    }
}
