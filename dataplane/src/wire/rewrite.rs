//! In-place rewrites of a parsed frame (NAT, mangle, forwarding), each
//! keeping every checksum right by incremental update (RFC 1624), so that a
//! rewrite costs the same whatever the payload size, and a checksum that was
//! wrong stays wrong (we never launder a corrupt packet).
//!
//! Every function reads the old values from the frame, not from `info`, so
//! several rewrites can follow one parse. Each one first reads every field it
//! will touch and writes nothing if any lies outside the frame (possible only
//! when `info` is not the parse of this frame).

use std::net::Ipv4Addr;

use super::checksum::{update16, update32};
use super::field::{self, read16, read32, read8, write16, write32, write8};
use super::{icmp_is_query, InnerInfo, Ipv4Info, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, L4};
use crate::flow::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// The TTL Linux gives the packets it originates (`ip_default_ttl`).
pub(super) const DEFAULT_TTL: u8 = 64;

/// Which end of the tuple a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

impl End {
    fn addr_off(self) -> usize {
        match self {
            End::Src => field::ipv4::SRC,
            End::Dst => field::ipv4::DST,
        }
    }
    /// TCP and UDP keep their ports at the same offsets.
    fn port_off(self) -> usize {
        match self {
            End::Src => field::tcp::SPORT,
            End::Dst => field::tcp::DPORT,
        }
    }
}

/// How a transport checksum treats a change of addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sum {
    /// TCP: the pseudo-header covers the addresses.
    Tcp,
    /// UDP: likewise, but 0 means "no checksum" (stays 0) and a computed 0 is
    /// sent as 0xffff (RFC 768).
    Udp,
    /// ICMP: no pseudo-header.
    Icmp,
}

/// A planned rewrite of a port (or ICMP query id) and the transport checksum
/// covering it: every offset checked and every old value read, before any
/// byte is written.
#[derive(Clone, Copy)]
struct PortEdit {
    port_off: usize,
    old_port: u16,
    /// Where the checksum is and its old value; `None` when the checksum is
    /// not in the buffer (a TCP header quoted by an ICMP error may stop short
    /// of it).
    csum: Option<(usize, u16)>,
    kind: Sum,
}

impl PortEdit {
    /// Plans the edit of the transport header at `l4` for `end`, given the
    /// protocol; `None` if a needed field is outside `frame`. `quoted_len`
    /// bounds the bytes of a quoted header that may be touched.
    fn plan(
        frame: &[u8],
        proto: u8,
        l4: usize,
        end: End,
        quoted_len: usize,
    ) -> Option<Option<Self>> {
        let (port_off, csum_off, kind) = match proto {
            IPPROTO_TCP => (end.port_off(), field::tcp::CHECKSUM, Sum::Tcp),
            IPPROTO_UDP => (end.port_off(), field::udp::CHECKSUM, Sum::Udp),
            // Both directions of an ICMP query carry the same id.
            IPPROTO_ICMP if icmp_is_query(read8(frame, l4)?) => {
                (field::icmp::ID, field::icmp::CHECKSUM, Sum::Icmp)
            }
            _ => return Some(None),
        };
        let port_off = l4.saturating_add(port_off);
        let old_port = read16(frame, port_off)?;
        let csum = if csum_off + 2 <= quoted_len {
            let at = l4.saturating_add(csum_off);
            Some((at, read16(frame, at)?))
        } else {
            None
        };
        Some(Some(PortEdit {
            port_off,
            old_port,
            csum,
            kind,
        }))
    }

    /// Writes `new_port` and updates the transport checksum for it and for an
    /// address change `old_addr -> new_addr`. Returns the checksum's old and
    /// new values (equal when it was not touched), for a checksum that in
    /// turn covers this one (the ICMP error around a quoted datagram).
    fn apply(self, frame: &mut [u8], old_addr: u32, new_addr: u32, new_port: u16) -> (u16, u16) {
        // Offsets were checked by `plan`: these writes cannot fail.
        let _ = write16(frame, self.port_off, new_port);
        let Some((at, old)) = self.csum else {
            return (0, 0);
        };
        let Some(new) = transport_csum(self.kind, old, self.old_port, new_port, old_addr, new_addr)
        else {
            return (0, 0);
        };
        let _ = write16(frame, at, new);
        (old, new)
    }
}

/// A transport checksum `old` after its port (or query id) went from
/// `old_port` to `new_port` and, for TCP and UDP (pseudo-header), the
/// address from `old_addr` to `new_addr`: port first, then address. `None`
/// for a UDP checksum of 0 ("none": it stays 0); a computed UDP 0 is sent
/// as 0xffff (RFC 768).
#[inline]
pub(super) fn transport_csum(
    kind: Sum,
    old: u16,
    old_port: u16,
    new_port: u16,
    old_addr: u32,
    new_addr: u32,
) -> Option<u16> {
    if kind == Sum::Udp && old == 0 {
        return None;
    }
    let mut new = update16(old, old_port, new_port);
    if kind != Sum::Icmp {
        new = update32(new, old_addr, new_addr);
    }
    if kind == Sum::Udp && new == 0 {
        new = 0xffff;
    }
    Some(new)
}

/// Rewrites the source address and, for TCP/UDP, the source port; for an
/// ICMP query, its id. Fixes the IPv4 header checksum and the transport
/// checksum (TCP/UDP through the pseudo-header; a UDP checksum of 0 stays 0
/// and a computed 0 becomes 0xffff; ICMP's covers no pseudo-header). For an
/// ICMP error, another protocol or a non-first fragment only the address
/// changes and `port` is ignored (the quoted datagram is [`set_inner_dst`]'s
/// business). A first fragment's transport checksum covers the whole
/// datagram; updating it incrementally is still exact.
#[inline]
pub fn set_src(frame: &mut [u8], info: &Ipv4Info, addr: Ipv4Addr, port: u16) {
    let _ = set_end(frame, info, End::Src, addr, port);
}

/// [`set_src`] for the destination (an ICMP query's id too: both directions
/// carry the same id).
#[inline]
pub fn set_dst(frame: &mut [u8], info: &Ipv4Info, addr: Ipv4Addr, port: u16) {
    let _ = set_end(frame, info, End::Dst, addr, port);
}

fn set_end(frame: &mut [u8], info: &Ipv4Info, end: End, addr: Ipv4Addr, port: u16) -> Option<()> {
    let addr_off = info.l3.saturating_add(end.addr_off());
    let csum_off = info.l3.saturating_add(field::ipv4::CHECKSUM);
    let old_addr = read32(frame, addr_off)?;
    let ip_csum = read16(frame, csum_off)?;
    let edit = match info.l4info {
        L4::Tcp(_) | L4::Udp { .. } => PortEdit::plan(frame, info.proto, info.l4, end, usize::MAX)?,
        L4::Icmp(icmp) if icmp.is_query => {
            PortEdit::plan(frame, IPPROTO_ICMP, info.l4, end, usize::MAX)?
        }
        _ => None,
    };
    let new_addr = u32::from(addr);
    write32(frame, addr_off, new_addr)?;
    write16(frame, csum_off, update32(ip_csum, old_addr, new_addr))?;
    if let Some(edit) = edit {
        edit.apply(frame, old_addr, new_addr, port);
    }
    Some(())
}

/// For an ICMP error: rewrites the quoted datagram's source address and
/// port (or query id), its IPv4 header checksum, its transport checksum when
/// the quote holds it (UDP's always, within the first 8 bytes; TCP's only if
/// 18 bytes of TCP are quoted; a quoted ICMP query's), then updates the outer
/// ICMP checksum for every changed word (all sit at even offsets of the ICMP
/// message). Does nothing unless `info` is an ICMP error with
/// [`IcmpInfo::inner`](super::IcmpInfo::inner).
///
/// The quoted datagram travels the other way: in an error about a packet we
/// sent A -> B, the quote's source is A. Reply-direction NAT therefore
/// rewrites the outer destination and the quote's source.
#[inline]
pub fn set_inner_src(frame: &mut [u8], info: &Ipv4Info, addr: Ipv4Addr, port: u16) {
    let _ = set_inner_end(frame, info, End::Src, addr, port);
}

/// [`set_inner_src`] for the quoted datagram's destination.
#[inline]
pub fn set_inner_dst(frame: &mut [u8], info: &Ipv4Info, addr: Ipv4Addr, port: u16) {
    let _ = set_inner_end(frame, info, End::Dst, addr, port);
}

fn set_inner_end(
    frame: &mut [u8],
    info: &Ipv4Info,
    end: End,
    addr: Ipv4Addr,
    port: u16,
) -> Option<()> {
    let L4::Icmp(icmp) = info.l4info else {
        return None;
    };
    let inner: InnerInfo = icmp.inner?;
    let icmp_csum_off = info.l4.saturating_add(field::icmp::CHECKSUM);
    let icmp_csum = read16(frame, icmp_csum_off)?;
    let addr_off = inner.l3.saturating_add(end.addr_off());
    let ip_csum_off = inner.l3.saturating_add(field::ipv4::CHECKSUM);
    let old_addr = read32(frame, addr_off)?;
    let old_ip_csum = read16(frame, ip_csum_off)?;
    let inner_l4 = inner.l3.saturating_add(inner.ihl);
    let edit = PortEdit::plan(frame, inner.proto, inner_l4, end, inner.l4_len)?;

    let new_addr = u32::from(addr);
    let new_ip_csum = update32(old_ip_csum, old_addr, new_addr);
    write32(frame, addr_off, new_addr)?;
    write16(frame, ip_csum_off, new_ip_csum)?;
    let mut outer = update32(icmp_csum, old_addr, new_addr);
    outer = update16(outer, old_ip_csum, new_ip_csum);
    if let Some(edit) = edit {
        let (old_l4_csum, new_l4_csum) = edit.apply(frame, old_addr, new_addr, port);
        outer = update16(outer, edit.old_port, port);
        outer = update16(outer, old_l4_csum, new_l4_csum);
    }
    write16(frame, icmp_csum_off, outer)
}

/// Sets the DSCP (the upper 6 bits of the TOS byte; `dscp` is masked to 6
/// bits), keeping the ECN bits, and fixes the header checksum.
#[inline]
pub fn set_dscp(frame: &mut [u8], info: &Ipv4Info, dscp: u8) {
    let _ = set_word(frame, info.l3, field::ipv4::VER_IHL, |word| {
        (word & 0xff03) | (u16::from(dscp & 0x3f) << 2)
    });
}

/// Sets the whole TOS byte (DSCP and ECN) and fixes the header checksum.
#[inline]
pub fn set_tos(frame: &mut [u8], info: &Ipv4Info, tos: u8) {
    let _ = set_word(frame, info.l3, field::ipv4::VER_IHL, |word| {
        (word & 0xff00) | u16::from(tos)
    });
}

/// Sets the TTL and fixes the header checksum.
#[inline]
pub fn set_ttl(frame: &mut [u8], info: &Ipv4Info, ttl: u8) {
    let _ = set_word(frame, info.l3, field::ipv4::TTL, |word| {
        (word & 0x00ff) | (u16::from(ttl) << 8)
    });
}

/// Decrements the TTL and fixes the header checksum. The caller checks
/// `ttl > 1` first; a TTL of 0 is left alone rather than wrapped.
#[inline]
pub fn dec_ttl(frame: &mut [u8], info: &Ipv4Info) {
    let _ = set_word(frame, info.l3, field::ipv4::TTL, |word| {
        if word >> 8 == 0 {
            word
        } else {
            word - 0x0100
        }
    });
}

/// Replaces the 16-bit IPv4 header word at `off` by `f(word)` and updates the
/// header checksum.
#[inline]
pub(super) fn set_word(
    frame: &mut [u8],
    l3: usize,
    off: usize,
    f: impl FnOnce(u16) -> u16,
) -> Option<()> {
    let at = l3.saturating_add(off);
    let csum_at = l3.saturating_add(field::ipv4::CHECKSUM);
    let old = read16(frame, at)?;
    let csum = read16(frame, csum_at)?;
    let new = f(old);
    write16(frame, at, new)?;
    write16(frame, csum_at, update16(csum, old, new))
}

/// Sets the Ethernet destination and source addresses (no checksum covers
/// them). Does nothing to a frame shorter than 12 bytes.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    if let Some(macs) = frame.get_mut(..12) {
        let (d, s) = macs.split_at_mut(6);
        d.copy_from_slice(&dst);
        s.copy_from_slice(&src);
    }
}

/// Turns an ICMP echo request into its reply in place: the source becomes
/// `our_addr` and the destination the request's source; type 0 (code and
/// everything after the checksum kept, as RFC 792 requires); TTL 64 and DF
/// clear, as Linux's `icmp_reply` sends it (its ICMP socket does no PMTU
/// discovery); TOS, id and any IP options stay as they are (Linux picks a
/// new id and echoes options through `ip_options_echo`; we do neither).
/// Both checksums fixed. The MACs are left for the caller. Does nothing
/// unless `info` is an unfragmented echo request.
pub fn echo_reply_in_place(frame: &mut [u8], info: &Ipv4Info, our_addr: Ipv4Addr) {
    let _ = echo_reply(frame, info, our_addr);
}

fn echo_reply(frame: &mut [u8], info: &Ipv4Info, our_addr: Ipv4Addr) -> Option<()> {
    let L4::Icmp(icmp) = info.l4info else {
        return None;
    };
    if icmp.ty != ICMP_ECHO_REQUEST || info.fragment {
        return None;
    }
    let l3 = info.l3;
    let src_off = l3.saturating_add(field::ipv4::SRC);
    let dst_off = l3.saturating_add(field::ipv4::DST);
    let ttl_off = l3.saturating_add(field::ipv4::TTL);
    let frag_off = l3.saturating_add(field::ipv4::FLAGS_FRAG);
    let ip_csum_off = l3.saturating_add(field::ipv4::CHECKSUM);
    let type_off = info.l4.saturating_add(field::icmp::TYPE);
    let icmp_csum_off = info.l4.saturating_add(field::icmp::CHECKSUM);

    let old_src = read32(frame, src_off)?;
    let old_dst = read32(frame, dst_off)?;
    let old_ttl_proto = read16(frame, ttl_off)?;
    let old_frag = read16(frame, frag_off)?;
    let ip_csum = read16(frame, ip_csum_off)?;
    let old_type_code = read16(frame, type_off)?;
    let icmp_csum = read16(frame, icmp_csum_off)?;

    let new_src = u32::from(our_addr);
    let new_ttl_proto = (u16::from(DEFAULT_TTL) << 8) | (old_ttl_proto & 0x00ff);
    let new_frag = old_frag & !field::ipv4::FLAG_DF;
    let new_type_code = (u16::from(ICMP_ECHO_REPLY) << 8) | (old_type_code & 0x00ff);

    write32(frame, src_off, new_src)?;
    write32(frame, dst_off, old_src)?;
    write16(frame, ttl_off, new_ttl_proto)?;
    write16(frame, frag_off, new_frag)?;
    let mut c = update32(ip_csum, old_src, new_src);
    c = update32(c, old_dst, old_src);
    c = update16(c, old_ttl_proto, new_ttl_proto);
    c = update16(c, old_frag, new_frag);
    write16(frame, ip_csum_off, c)?;
    write8(frame, type_off, ICMP_ECHO_REPLY)?;
    write16(
        frame,
        icmp_csum_off,
        update16(icmp_csum, old_type_code, new_type_code),
    )
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a panic is how a check fails")]
mod tests {
    use super::*;
    use crate::wire::fixture::{self, verify_checksums};
    use crate::wire::{parse_ipv4, IcmpInfo};
    use proptest::prelude::*;

    /// The fixtures the rewrites are exercised on.
    fn frames() -> Vec<(&'static str, Vec<u8>)> {
        fixture::ipv4_frames()
    }

    fn inner_of(f: &[u8]) -> InnerInfo {
        match parse_ipv4(f).unwrap().l4info {
            L4::Icmp(IcmpInfo {
                inner: Some(inner), ..
            }) => inner,
            other => panic!("{other:?}"),
        }
    }

    /// Source port (or query id) as a fresh parse sees it.
    fn ports(f: &[u8]) -> Option<(u16, u16)> {
        match parse_ipv4(f).unwrap().l4info {
            L4::Tcp(t) => Some((t.sport, t.dport)),
            L4::Udp { sport, dport } => Some((sport, dport)),
            L4::Icmp(i) if i.is_query => Some((i.id, i.id)),
            _ => None,
        }
    }

    #[test]
    fn set_src_and_dst_on_every_fixture() {
        let a = Ipv4Addr::new(198, 51, 100, 7);
        let b = Ipv4Addr::new(203, 0, 113, 200);
        for (name, mut f) in frames() {
            let info = parse_ipv4(&f).unwrap();
            let before = ports(&f);
            set_src(&mut f, &info, a, 1111);
            set_dst(&mut f, &info, b, 2222);
            assert_eq!(verify_checksums(&f), Ok(()), "{name}");
            let after = parse_ipv4(&f).unwrap();
            assert_eq!((after.src, after.dst), (a, b), "{name}");
            match (info.l4info, before) {
                (L4::Icmp(_), Some(_)) => assert_eq!(ports(&f), Some((2222, 2222)), "{name}"),
                (_, Some(_)) => assert_eq!(ports(&f), Some((1111, 2222)), "{name}"),
                (_, None) => assert_eq!(ports(&f), None, "{name}"),
            }
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut f = fixture::UDP_NO_CSUM.to_vec();
        let info = parse_ipv4(&f).unwrap();
        set_src(&mut f, &info, Ipv4Addr::new(1, 2, 3, 4), 9);
        set_dst(&mut f, &info, Ipv4Addr::new(5, 6, 7, 8), 10);
        assert_eq!(f[info.l4 + 6..info.l4 + 8], [0, 0]);
        assert_eq!(verify_checksums(&f), Ok(()));
    }

    #[test]
    fn udp_computed_zero_becomes_ffff() {
        let f0 = fixture::UDP.to_vec();
        let info = parse_ipv4(&f0).unwrap();
        let addr = Ipv4Addr::new(192, 0, 2, 1);
        // Find the source port for which the updated checksum comes out 0.
        let port = (0..=u16::MAX)
            .find(|&p| {
                let mut f = f0.clone();
                set_src(&mut f, &info, addr, p);
                // 0 would have been written as 0xffff; recompute to tell.
                let mut g = f.clone();
                g[info.l4 + 6..info.l4 + 8].copy_from_slice(&[0, 0]);
                let seg = &g[info.l4..];
                crate::wire::checksum::l4(addr, info.dst, 17, seg) == 0
            })
            .expect("some port makes the checksum 0");
        let mut f = f0.clone();
        set_src(&mut f, &info, addr, port);
        assert_eq!(f[info.l4 + 6..info.l4 + 8], [0xff, 0xff]);
        assert_eq!(verify_checksums(&f), Ok(()));
    }

    #[test]
    fn first_fragment_checksum_covers_the_whole_datagram() {
        let mut first = fixture::frag_first();
        let mut last = fixture::frag_last();
        let (fi, li) = (parse_ipv4(&first).unwrap(), parse_ipv4(&last).unwrap());
        let addr = Ipv4Addr::new(100, 64, 3, 9);
        set_src(&mut first, &fi, addr, 40000);
        set_src(&mut last, &li, addr, 40000);
        assert_eq!(verify_checksums(&first), Ok(()));
        assert_eq!(verify_checksums(&last), Ok(()));
        // Reassemble and check the UDP checksum over the whole datagram.
        let mut dgram = first[..34].to_vec();
        dgram.extend_from_slice(&first[34..]);
        dgram.extend_from_slice(&last[34..]);
        let total = (dgram.len() - 14) as u16;
        dgram[16..18].copy_from_slice(&total.to_be_bytes());
        dgram[20..22].copy_from_slice(&[0, 0]);
        fixture::fix_ip_checksum(&mut dgram);
        assert_eq!(verify_checksums(&dgram), Ok(()));
        // The last fragment's payload is untouched.
        assert_eq!(last[34..], fixture::frag_last()[34..]);
    }

    #[test]
    fn inner_rewrites_on_icmp_errors() {
        for f in [
            fixture::UDP_PORT_UNREACH.to_vec(),
            fixture::UDP_NO_CSUM_PORT_UNREACH.to_vec(),
            fixture::TCP_PORT_UNREACH.to_vec(),
            fixture::UDP_OPTIONS_PORT_UNREACH.to_vec(),
            fixture::udp_tos_port_unreach(),
        ] {
            let mut f = f;
            let info = parse_ipv4(&f).unwrap();
            let a = Ipv4Addr::new(192, 168, 1, 10);
            let b = Ipv4Addr::new(8, 8, 4, 4);
            set_inner_src(&mut f, &info, a, 5000);
            set_inner_dst(&mut f, &info, b, 53);
            set_dst(&mut f, &info, a, 0);
            assert_eq!(verify_checksums(&f), Ok(()));
            let inner = inner_of(&f);
            assert_eq!(
                (inner.src, inner.dst, inner.sport, inner.dport),
                (a, b, 5000, 53)
            );
            assert_eq!(parse_ipv4(&f).unwrap().dst, a);
        }
    }

    #[test]
    fn inner_tcp_checksum_beyond_the_quote_is_left_alone() {
        // Cut the quoted TCP header to 16 bytes: its checksum is not quoted.
        let mut f = fixture::TCP_PORT_UNREACH[..14 + 20 + 8 + 20 + 16].to_vec();
        f[16..18].copy_from_slice(&(20u16 + 8 + 20 + 16).to_be_bytes());
        fixture::fix_ip_checksum(&mut f);
        let icmp_sum = |f: &mut Vec<u8>| {
            f[36..38].copy_from_slice(&[0, 0]);
            let c = !fixture::naive_sum(&f[34..]);
            f[36..38].copy_from_slice(&c.to_be_bytes());
        };
        icmp_sum(&mut f);
        let info = parse_ipv4(&f).unwrap();
        assert_eq!(inner_of(&f).l4_len, 16);
        set_inner_src(&mut f, &info, Ipv4Addr::new(1, 1, 1, 1), 7);
        assert_eq!(verify_checksums(&f), Ok(()));
        assert_eq!(inner_of(&f).sport, 7);
    }

    #[test]
    fn inner_rewrite_ignores_non_errors() {
        for mut f in [fixture::UDP.to_vec(), fixture::ICMP_ECHO_REQUEST.to_vec()] {
            let before = f.clone();
            let info = parse_ipv4(&f).unwrap();
            set_inner_src(&mut f, &info, Ipv4Addr::new(1, 1, 1, 1), 7);
            set_inner_dst(&mut f, &info, Ipv4Addr::new(1, 1, 1, 1), 7);
            assert_eq!(f, before);
        }
    }

    #[test]
    fn dscp_keeps_ecn() {
        let mut f = fixture::udp_tos();
        let info = parse_ipv4(&f).unwrap();
        set_dscp(&mut f, &info, 10);
        assert_eq!(parse_ipv4(&f).unwrap().tos, (10 << 2) | 0x02);
        set_dscp(&mut f, &info, 0xff);
        assert_eq!(parse_ipv4(&f).unwrap().tos, 0xfe);
        assert_eq!(verify_checksums(&f), Ok(()));
    }

    #[test]
    fn ttl() {
        let mut f = fixture::TCP_SYN.to_vec();
        let info = parse_ipv4(&f).unwrap();
        dec_ttl(&mut f, &info);
        assert_eq!(parse_ipv4(&f).unwrap().ttl, 63);
        let mut zero = fixture::TCP_SYN.to_vec();
        zero[22] = 0;
        fixture::fix_ip_checksum(&mut zero);
        let before = zero.clone();
        dec_ttl(&mut zero, &info);
        assert_eq!(zero, before);
    }

    #[test]
    fn macs() {
        let mut f = fixture::UDP.to_vec();
        set_macs(&mut f, [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]);
        assert_eq!(f[..12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(f[12..], fixture::UDP[12..]);
        let mut short = [0u8; 11];
        set_macs(&mut short, [1; 6], [2; 6]);
        assert_eq!(short, [0; 11]);
    }

    /// Linux's reply to the echo request fixture, byte for byte, once its
    /// IP id (Linux picks a fresh one; we keep the request's) is carried over.
    #[test]
    fn echo_reply_matches_linux() {
        let mut f = fixture::ICMP_ECHO_REQUEST.to_vec();
        let info = parse_ipv4(&f).unwrap();
        echo_reply_in_place(&mut f, &info, Ipv4Addr::new(10, 0, 0, 2));
        set_macs(&mut f, [2, 0, 0, 0, 0, 0x0a], [2, 0, 0, 0, 0, 0x0b]);
        assert_eq!(verify_checksums(&f), Ok(()));
        let linux = &fixture::ICMP_ECHO_REPLY;
        let (old, new) = (read16(&f, 18).unwrap(), read16(linux, 18).unwrap());
        write16(&mut f, 18, new);
        let c = update16(read16(&f, 24).unwrap(), old, new);
        write16(&mut f, 24, c);
        assert_eq!(f, linux[..]);
    }

    #[test]
    fn echo_reply_ignores_other_packets() {
        for mut f in [fixture::ICMP_ECHO_REPLY.to_vec(), fixture::UDP.to_vec()] {
            let before = f.clone();
            let info = parse_ipv4(&f).unwrap();
            echo_reply_in_place(&mut f, &info, Ipv4Addr::new(9, 9, 9, 9));
            assert_eq!(f, before);
        }
    }

    /// An `info` that does not describe the frame: nothing is written, and
    /// nothing panics.
    #[test]
    fn mismatched_info_writes_nothing() {
        for (name, f) in frames() {
            let info = parse_ipv4(&f).unwrap();
            // Cut before the end of the source address: nothing to write.
            for n in [0, 11, 12, 14, 20, 25] {
                let mut cut = f[..n].to_vec();
                let a = Ipv4Addr::new(1, 2, 3, 4);
                set_src(&mut cut, &info, a, 1);
                set_dst(&mut cut, &info, a, 1);
                set_inner_src(&mut cut, &info, a, 1);
                set_inner_dst(&mut cut, &info, a, 1);
                echo_reply_in_place(&mut cut, &info, a);
                dec_ttl(&mut cut, &info);
                if n < 12 {
                    set_macs(&mut cut, [9; 6], [9; 6]);
                }
                if n < 16 {
                    set_dscp(&mut cut, &info, 1);
                }
                assert_eq!(cut, f[..n], "{name} cut at {n}");
            }
            // Cut inside the transport header, after the ports but before
            // the checksum: the address is not rewritten alone either.
            if let L4::Tcp(_) = info.l4info {
                let mut cut = f[..info.l4 + 10].to_vec();
                set_src(&mut cut, &info, Ipv4Addr::new(1, 2, 3, 4), 1);
                assert_eq!(cut, f[..info.l4 + 10], "{name}");
            }
            let far = Ipv4Info {
                l3: usize::MAX - 3,
                l4: usize::MAX,
                ..info
            };
            let mut g = f.clone();
            set_src(&mut g, &far, Ipv4Addr::new(1, 2, 3, 4), 1);
            set_inner_dst(&mut g, &far, Ipv4Addr::new(1, 2, 3, 4), 1);
            dec_ttl(&mut g, &far);
            set_dscp(&mut g, &far, 3);
            echo_reply_in_place(&mut g, &far, Ipv4Addr::new(1, 2, 3, 4));
            assert_eq!(g, f, "{name}");
        }
    }

    proptest! {
        /// NAT out and back: rewriting an end to new values and then to the
        /// old ones gives back the very bytes we started from.
        #[test]
        fn out_and_back_restores_the_frame(
            which in 0usize..1000,
            addr in any::<u32>(),
            port in any::<u16>(),
        ) {
            let all = frames();
            let (name, f0) = &all[which % all.len()];
            let info = parse_ipv4(f0).unwrap();
            let addr = Ipv4Addr::from(addr);
            let (sport, dport) = ports(f0).unwrap_or((0, 0));
            let mut f = f0.clone();
            set_src(&mut f, &info, addr, port);
            set_src(&mut f, &info, info.src, sport);
            prop_assert_eq!(&f, f0, "{} src", name);
            set_dst(&mut f, &info, addr, port);
            set_dst(&mut f, &info, info.dst, dport);
            prop_assert_eq!(&f, f0, "{} dst", name);
            if let L4::Icmp(IcmpInfo { inner: Some(inner), .. }) = info.l4info {
                set_inner_src(&mut f, &info, addr, port);
                set_inner_dst(&mut f, &info, addr, port);
                set_inner_src(&mut f, &info, inner.src, inner.sport);
                set_inner_dst(&mut f, &info, inner.dst, inner.dport);
                prop_assert_eq!(&f, f0, "{} inner", name);
            }
        }
    }

    proptest! {
        /// After any sequence of rewrites every checksum verifies when
        /// recomputed from scratch, and a fresh parse sees the new values.
        #[test]
        fn rewrites_keep_every_checksum_right(
            which in 0usize..1000,
            src in any::<u32>(),
            dst in any::<u32>(),
            sport in any::<u16>(),
            dport in any::<u16>(),
            dscp in any::<u8>(),
            isrc in any::<u32>(),
            idst in any::<u32>(),
            iport in any::<u16>(),
            ops in proptest::collection::vec(0u8..6, 1..8),
        ) {
            let all = frames();
            let (name, mut f) = all[which % all.len()].clone();
            let info = parse_ipv4(&f).unwrap();
            let (src, dst, isrc, idst) =
                (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(isrc), Ipv4Addr::from(idst));
            for op in ops {
                match op {
                    0 => set_src(&mut f, &info, src, sport),
                    1 => set_dst(&mut f, &info, dst, dport),
                    2 => set_dscp(&mut f, &info, dscp),
                    3 => if parse_ipv4(&f).unwrap().ttl > 1 { dec_ttl(&mut f, &info) },
                    4 => set_inner_src(&mut f, &info, isrc, iport),
                    _ => set_inner_dst(&mut f, &info, idst, iport),
                }
                prop_assert_eq!(verify_checksums(&f), Ok(()), "{}", name);
            }
            let after = parse_ipv4(&f).unwrap();
            prop_assert_eq!(after.tos & 0x03, info.tos & 0x03);
            prop_assert_eq!(after.l4, info.l4);
        }
    }
}
