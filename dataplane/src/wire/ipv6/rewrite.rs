//! In-place rewrites of a parsed IPv6 frame (NAT66, mangle, forwarding).
//! IPv6 has no header checksum; the transport checksums cover the
//! addresses through the pseudo-header (ICMPv6's too, unlike ICMP's), so
//! an address change updates them incrementally (RFC 1624), and a checksum
//! that was wrong stays wrong.
//!
//! As for IPv4, every function reads the old values from the frame, so
//! several rewrites can follow one parse, and writes nothing if a field it
//! needs lies outside the frame (possible only when `info` is not the
//! parse of this frame).

use std::net::Ipv6Addr;

use super::super::checksum::{update128, update16};
use super::super::field::{self, read16, read8, write128, write16, write8};
use super::parse::addr;
use super::{Ipv6Info, L4v6, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST};
use super::{NEXTHDR_ICMPV6, NEXTHDR_TCP, NEXTHDR_UDP};

/// The hop limit Linux gives the packets it originates
/// (`ipv6_devconf.hop_limit`, `IPV6_DEFAULT_HOPLIMIT`).
pub(super) const DEFAULT_HOP_LIMIT: u8 = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

impl End {
    fn addr_off(self) -> usize {
        match self {
            End::Src => field::ipv6::SRC,
            End::Dst => field::ipv6::DST,
        }
    }
    fn port_off(self) -> usize {
        match self {
            End::Src => field::tcp::SPORT,
            End::Dst => field::tcp::DPORT,
        }
    }
}

/// A planned rewrite of a transport header at `l4` for a change of address
/// (and port, or echo id): every offset checked and every old value read
/// before anything is written.
#[derive(Clone, Copy)]
struct Plan {
    /// The port (or echo id) and its old value, when one changes.
    port: Option<(usize, u16)>,
    /// The checksum and its old value, when the buffer holds it.
    csum: Option<(usize, u16)>,
    /// UDP: a checksum of 0 stays 0 (none; invalid on IPv6, and not ours
    /// to launder), a computed 0 is sent as 0xffff.
    udp: bool,
}

impl Plan {
    /// `quoted_len` bounds the bytes of a quoted transport header that may
    /// be touched. An ICMPv6 header has an id to change only if it is an
    /// echo (its type read from the frame).
    fn new(frame: &[u8], proto: u8, l4: usize, end: End, quoted_len: usize) -> Option<Plan> {
        let (port_off, csum_off, udp) = match proto {
            NEXTHDR_TCP => (Some(end.port_off()), field::tcp::CHECKSUM, false),
            NEXTHDR_UDP => (Some(end.port_off()), field::udp::CHECKSUM, true),
            NEXTHDR_ICMPV6 => {
                let ty = read8(frame, l4.saturating_add(field::icmpv6::TYPE))?;
                let id = super::icmpv6_is_query(ty).then_some(field::icmpv6::ID);
                (id, field::icmpv6::CHECKSUM, false)
            }
            _ => return Some(Plan::none()),
        };
        let port = match port_off {
            Some(off) => {
                let at = l4.saturating_add(off);
                Some((at, read16(frame, at)?))
            }
            None => None,
        };
        let csum = if csum_off + 2 <= quoted_len {
            let at = l4.saturating_add(csum_off);
            Some((at, read16(frame, at)?))
        } else {
            None
        };
        Some(Plan { port, csum, udp })
    }

    fn none() -> Plan {
        Plan {
            port: None,
            csum: None,
            udp: false,
        }
    }

    /// Writes the new port and the updated checksum; returns the words that
    /// changed (old, new) for a checksum that covers this header in turn:
    /// the port's and the checksum's.
    fn apply(self, frame: &mut [u8], old: Ipv6Addr, new: Ipv6Addr, port: u16) -> [(u16, u16); 2] {
        let mut changed = [(0, 0); 2];
        if let Some((at, old_port)) = self.port {
            let _ = write16(frame, at, port);
            changed[0] = (old_port, port);
        }
        if let Some((at, csum)) = self.csum {
            if self.udp && csum == 0 {
                return changed;
            }
            let mut c = update128(csum, old, new);
            if let Some((_, old_port)) = self.port {
                c = update16(c, old_port, port);
            }
            if self.udp && c == 0 {
                c = 0xffff;
            }
            let _ = write16(frame, at, c);
            changed[1] = (csum, c);
        }
        changed
    }
}

/// Rewrites the source address and, for TCP/UDP, the source port; for an
/// ICMPv6 echo, its id. The transport checksum is updated for both (the
/// address through the pseudo-header: ICMPv6 errors and other ICMPv6
/// messages too, whose checksum covers it). For another protocol or a
/// non-first fragment only the address changes and `port` is ignored; the
/// datagram an ICMPv6 error quotes is [`set_inner_src`]'s business.
#[inline]
pub fn set_src(frame: &mut [u8], info: &Ipv6Info, addr: Ipv6Addr, port: u16) {
    let _ = set_end(frame, info, End::Src, addr, port);
}

/// [`set_src`] for the destination.
#[inline]
pub fn set_dst(frame: &mut [u8], info: &Ipv6Info, addr: Ipv6Addr, port: u16) {
    let _ = set_end(frame, info, End::Dst, addr, port);
}

fn set_end(frame: &mut [u8], info: &Ipv6Info, end: End, new: Ipv6Addr, port: u16) -> Option<()> {
    let addr_off = info.l3.saturating_add(end.addr_off());
    let old = addr(frame, addr_off)?;
    let plan = match info.l4info {
        L4v6::Tcp(_) | L4v6::Udp { .. } | L4v6::Icmp(_) => {
            Plan::new(frame, info.proto, info.l4, end, usize::MAX)?
        }
        L4v6::Other => Plan::none(),
    };
    write128(frame, addr_off, new.octets())?;
    plan.apply(frame, old, new, port);
    Some(())
}

/// For an ICMPv6 error: rewrites the quoted datagram's source address and
/// port (or echo id), its transport checksum when the quote holds it
/// (UDP's and ICMPv6's always, TCP's when 18 bytes of TCP are quoted), and
/// the error's own checksum for every word that changed. Does nothing
/// unless `info` is an ICMPv6 error with an [`Inner6Info`](super::Inner6Info).
///
/// The quoted datagram travels the other way: reply-direction NAT66
/// rewrites the outer destination and the quote's source.
#[inline]
pub fn set_inner_src(frame: &mut [u8], info: &Ipv6Info, addr: Ipv6Addr, port: u16) {
    let _ = set_inner_end(frame, info, End::Src, addr, port);
}

/// [`set_inner_src`] for the quoted datagram's destination.
#[inline]
pub fn set_inner_dst(frame: &mut [u8], info: &Ipv6Info, addr: Ipv6Addr, port: u16) {
    let _ = set_inner_end(frame, info, End::Dst, addr, port);
}

fn set_inner_end(
    frame: &mut [u8],
    info: &Ipv6Info,
    end: End,
    new: Ipv6Addr,
    port: u16,
) -> Option<()> {
    let L4v6::Icmp(icmp) = info.l4info else {
        return None;
    };
    let inner = icmp.inner?;
    let outer_at = info.l4.saturating_add(field::icmpv6::CHECKSUM);
    let outer = read16(frame, outer_at)?;
    let addr_off = inner.l3.saturating_add(end.addr_off());
    let old = addr(frame, addr_off)?;
    let plan = Plan::new(frame, inner.proto, inner.l4, end, inner.l4_len)?;

    write128(frame, addr_off, new.octets())?;
    let mut c = update128(outer, old, new);
    for (was, now) in plan.apply(frame, old, new, port) {
        c = update16(c, was, now);
    }
    write16(frame, outer_at, c)
}

/// Decrements the hop limit (no checksum covers it). The caller checks
/// `hop_limit > 1` first; 0 is left alone rather than wrapped.
#[inline]
pub fn dec_hop_limit(frame: &mut [u8], info: &Ipv6Info) {
    let at = info.l3.saturating_add(field::ipv6::HOP_LIMIT);
    if let Some(h) = read8(frame, at) {
        let _ = write8(frame, at, h.saturating_sub(1));
    }
}

/// Sets the hop limit.
#[inline]
pub fn set_hop_limit(frame: &mut [u8], info: &Ipv6Info, hop_limit: u8) {
    let _ = write8(
        frame,
        info.l3.saturating_add(field::ipv6::HOP_LIMIT),
        hop_limit,
    );
}

/// Sets the whole traffic class (DSCP and ECN): bits 4-11 of the header's
/// first word, between the version and the flow label.
#[inline]
pub fn set_tclass(frame: &mut [u8], info: &Ipv6Info, tclass: u8) {
    let at = info.l3.saturating_add(field::ipv6::VER_TC_FLOW);
    if let Some(word) = read16(frame, at) {
        let _ = write16(frame, at, (word & 0xf00f) | (u16::from(tclass) << 4));
    }
}

/// Sets the DSCP (the traffic class's upper 6 bits; `dscp` masked to 6
/// bits), keeping the ECN bits, as ip6tables' `-j DSCP` does.
#[inline]
pub fn set_dscp(frame: &mut [u8], info: &Ipv6Info, dscp: u8) {
    let at = info.l3.saturating_add(field::ipv6::VER_TC_FLOW);
    if let Some(word) = read16(frame, at) {
        let tclass = ((word >> 4) as u8 & 0x03) | ((dscp & 0x3f) << 2);
        let _ = write16(frame, at, (word & 0xf00f) | (u16::from(tclass) << 4));
    }
}

/// Turns an ICMPv6 echo request into its reply in place, as Linux's
/// `icmpv6_echo_reply` answers: source `our_addr` (the request's
/// destination when it was ours and unicast; the caller chooses for a
/// multicast one), destination the request's source, type 129 (code,
/// identifier, sequence and data kept), hop limit 64, traffic class kept
/// (Linux reflects it). The flow label is kept too: Linux picks a new one
/// unless `flowlabel_reflect` is set; any extension headers stay (Linux
/// sends none). The ICMPv6 checksum is updated. Does nothing unless `info`
/// is an unfragmented echo request.
pub fn echo_reply_in_place(frame: &mut [u8], info: &Ipv6Info, our_addr: Ipv6Addr) {
    let _ = echo_reply(frame, info, our_addr);
}

fn echo_reply(frame: &mut [u8], info: &Ipv6Info, our_addr: Ipv6Addr) -> Option<()> {
    let L4v6::Icmp(icmp) = info.l4info else {
        return None;
    };
    if icmp.ty != ICMPV6_ECHO_REQUEST || info.fragment {
        return None;
    }
    let src_at = info.l3.saturating_add(field::ipv6::SRC);
    let dst_at = info.l3.saturating_add(field::ipv6::DST);
    let hop_at = info.l3.saturating_add(field::ipv6::HOP_LIMIT);
    let type_at = info.l4.saturating_add(field::icmpv6::TYPE);
    let csum_at = info.l4.saturating_add(field::icmpv6::CHECKSUM);
    let src = addr(frame, src_at)?;
    let dst = addr(frame, dst_at)?;
    let type_code = read16(frame, type_at)?;
    let csum = read16(frame, csum_at)?;
    read8(frame, hop_at)?;

    let new_type_code = (u16::from(ICMPV6_ECHO_REPLY) << 8) | (type_code & 0x00ff);
    let mut c = update128(csum, src, our_addr);
    c = update128(c, dst, src);
    c = update16(c, type_code, new_type_code);
    write128(frame, src_at, our_addr.octets())?;
    write128(frame, dst_at, src.octets())?;
    write8(frame, hop_at, DEFAULT_HOP_LIMIT)?;
    write16(frame, type_at, new_type_code)?;
    write16(frame, csum_at, c)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::super::fixture::{self, verify_checksums6, A, B, MAC_A, MAC_B};
    use super::super::{parse_ipv6, Icmpv6Info};
    use super::*;
    use crate::wire::set_macs;
    use proptest::prelude::*;

    const NAT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0xabcd, 0x1234);

    fn ports(info: &Ipv6Info) -> Option<(u16, u16)> {
        match info.l4info {
            L4v6::Tcp(t) => Some((t.sport, t.dport)),
            L4v6::Udp { sport, dport } => Some((sport, dport)),
            L4v6::Icmp(i) if i.is_query => Some((i.id, i.id)),
            _ => None,
        }
    }

    #[test]
    fn nat66_rewrites_keep_checksums_right() {
        for (name, f) in fixture::ipv6_frames() {
            let info = parse_ipv6(&f).unwrap();
            let mut g = f.clone();
            set_src(&mut g, &info, NAT, 61000);
            set_dst(&mut g, &info, B, 62000);
            assert_eq!(verify_checksums6(&g), Ok(()), "{name}");
            let got = parse_ipv6(&g).unwrap();
            assert_eq!((got.src, got.dst), (NAT, B), "{name}");
            if let Some((sport, dport)) = ports(&info) {
                let want = if matches!(info.l4info, L4v6::Icmp(_)) {
                    (62000, 62000)
                } else {
                    (61000, 62000)
                };
                assert_eq!(ports(&got), Some(want), "{name}");
                // And back: the original bytes.
                set_src(&mut g, &got, info.src, sport);
                set_dst(&mut g, &got, info.dst, dport);
                assert_eq!(g, f, "{name}");
            }
        }
    }

    /// Reply-direction NAT66 of an ICMPv6 error: outer destination and the
    /// quote's source; then back to the original.
    #[test]
    fn inner_rewrites_keep_both_checksums_right() {
        for f in [
            fixture::UDP_PORT_UNREACH.to_vec(),
            fixture::UDP_DSTOPT_PORT_UNREACH.to_vec(),
            fixture::UDP_HOP1_TIME_EXCEEDED.to_vec(),
            fixture::TCP_SYN_81_ADM_PROHIBITED.to_vec(),
            fixture::echo_1400_too_big(),
        ] {
            let info = parse_ipv6(&f).unwrap();
            let L4v6::Icmp(Icmpv6Info {
                inner: Some(inner), ..
            }) = info.l4info
            else {
                panic!()
            };
            let mut g = f.clone();
            set_dst(&mut g, &info, NAT, 0);
            set_inner_src(&mut g, &info, NAT, 50000);
            set_inner_dst(&mut g, &info, NAT, 50001);
            assert_eq!(verify_checksums6(&g), Ok(()));
            let got = parse_ipv6(&g).unwrap();
            let L4v6::Icmp(Icmpv6Info {
                inner: Some(gi), ..
            }) = got.l4info
            else {
                panic!()
            };
            assert_eq!((got.dst, gi.src, gi.dst), (NAT, NAT, NAT));
            if inner.proto == 58 {
                assert_eq!((gi.sport, gi.dport), (50001, 50001));
            } else {
                assert_eq!((gi.sport, gi.dport), (50000, 50001));
            }
            set_dst(&mut g, &got, info.dst, 0);
            set_inner_src(&mut g, &got, inner.src, inner.sport);
            set_inner_dst(&mut g, &got, inner.dst, inner.dport);
            assert_eq!(g, f);
        }
        // Not an error: nothing happens.
        let mut g = fixture::UDP.to_vec();
        let info = parse_ipv6(&g).unwrap();
        set_inner_src(&mut g, &info, NAT, 1);
        assert_eq!(g, fixture::UDP);
    }

    /// The reply Linux sent, but for its flow label (Linux picks one).
    #[test]
    fn echo_reply_matches_linux() {
        let mut f = fixture::ECHO_REQUEST.to_vec();
        let info = parse_ipv6(&f).unwrap();
        echo_reply_in_place(&mut f, &info, B);
        set_macs(&mut f, MAC_A, MAC_B);
        f[15..18].copy_from_slice(&fixture::ECHO_REPLY[15..18]);
        assert_eq!(f, fixture::ECHO_REPLY);
        // Only echo requests, whole.
        for mut g in [
            fixture::ECHO_REPLY.to_vec(),
            fixture::UDP.to_vec(),
            fixture::frag_first(),
        ] {
            let before = g.clone();
            let info = parse_ipv6(&g).unwrap();
            echo_reply_in_place(&mut g, &info, A);
            assert_eq!(g, before);
        }
    }

    #[test]
    fn hop_limit_and_traffic_class() {
        let mut f = fixture::UDP.to_vec();
        let info = parse_ipv6(&f).unwrap();
        dec_hop_limit(&mut f, &info);
        assert_eq!(parse_ipv6(&f).unwrap().hop_limit, 63);
        set_hop_limit(&mut f, &info, 0);
        dec_hop_limit(&mut f, &info);
        assert_eq!(parse_ipv6(&f).unwrap().hop_limit, 0);
        set_tclass(&mut f, &info, 0xb9);
        let got = parse_ipv6(&f).unwrap();
        assert_eq!((got.tclass, got.flow_label), (0xb9, info.flow_label));
        set_dscp(&mut f, &info, 0xff);
        let got = parse_ipv6(&f).unwrap();
        assert_eq!((got.tclass, got.flow_label), (0xfd, info.flow_label));
        set_dscp(&mut f, &info, 46);
        assert_eq!(parse_ipv6(&f).unwrap().tclass, (46 << 2) | 1);
        assert_eq!(f[14] >> 4, 6);
        assert_eq!(verify_checksums6(&f), Ok(()));
    }

    proptest! {
        /// Any addresses and ports on any fixture: checksums stay right
        /// (equal to a full recompute), and the parse sees the new values.
        #[test]
        fn rewrites_equal_recompute(
            which in 0usize..100,
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            sport in any::<u16>(),
            dport in any::<u16>(),
            tclass in any::<u8>(),
        ) {
            let all = fixture::ipv6_frames();
            let (name, f) = &all[which % all.len()];
            let info = parse_ipv6(f).unwrap();
            let mut g = f.clone();
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            set_src(&mut g, &info, src, sport);
            set_dst(&mut g, &info, dst, dport);
            set_inner_src(&mut g, &info, dst, dport);
            set_inner_dst(&mut g, &info, src, sport);
            set_tclass(&mut g, &info, tclass);
            dec_hop_limit(&mut g, &info);
            prop_assert_eq!(verify_checksums6(&g), Ok(()), "{}", name);
            // The parse may now refuse a martian address; otherwise it sees
            // the new ones.
            if let Ok(got) = parse_ipv6(&g) {
                prop_assert_eq!((got.src, got.dst, got.tclass), (src, dst, tclass));
            }
        }
    }
}
