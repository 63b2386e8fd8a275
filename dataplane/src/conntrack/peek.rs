//! The tuple a frame would be looked up by, read straight from its headers
//! without validating them: for prefetching a batch's lookups before the
//! frames are parsed. A wrong answer (a corrupt or fragmented packet) only
//! loads a useless line.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::{Tuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

/// [`frame_tuple`] for an IPv6 packet whose next header is TCP, UDP or an
/// ICMPv6 echo (the id in both ports); `None` for anything else (extension
/// headers among it: their packets are looked up as usual, unprefetched).
pub fn frame_tuple6(frame: &[u8]) -> Option<Tuple<Ipv6Addr>> {
    if frame.get(12..ETH_HLEN)? != ETHERTYPE_IPV6 {
        return None;
    }
    let ip: &[u8; 40] = frame.get(ETH_HLEN..)?.first_chunk()?;
    let l4: &[u8; 8] = frame.get(ETH_HLEN + 40..)?.first_chunk()?;
    let word = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let (sport, dport) = match ip[6] {
        IPPROTO_TCP | IPPROTO_UDP => (word(0), word(2)),
        IPPROTO_ICMPV6 if matches!(l4[0], 128 | 129) => (word(4), word(4)),
        _ => return None,
    };
    let addr = |at: usize| -> Option<Ipv6Addr> {
        let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(b))
    };
    Some(Tuple {
        src: addr(8)?,
        dst: addr(24)?,
        sport,
        dport,
        proto: ip[6],
    })
}

/// The original-direction tuple conntrack would look an Ethernet frame's
/// IPv4 packet up by (for ICMP queries the id in both ports, 0 for
/// protocols without ports); `None` for what is not IPv4, too short to
/// hold its addresses, or an ICMP error (whose lookup is of the quoted
/// packet).
pub fn frame_tuple(frame: &[u8]) -> Option<Tuple> {
    let eth = frame.get(12..ETH_HLEN)?;
    let ip = frame.get(ETH_HLEN..ETH_HLEN + 20)?;
    if eth != ETHERTYPE_IPV4 || ip[0] >> 4 != 4 {
        return None;
    }
    let l4 = frame
        .get(ETH_HLEN + usize::from(ip[0] & 0xf) * 4..)
        .unwrap_or(&[]);
    let word = |i: usize| {
        l4.get(i..i + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (sport, dport) = match ip[9] {
        IPPROTO_TCP | IPPROTO_UDP => (word(0), word(2)),
        IPPROTO_ICMP => match l4.first()? {
            // Queries and their replies (`icmp_valid_new`, `invmap`).
            0 | 8 | 13 | 14 | 15 | 16 | 17 | 18 => (word(4), word(4)),
            _ => return None,
        },
        _ => (0, 0),
    };
    Some(Tuple {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport,
        dport,
        proto: ip[9],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (IHL 5) + UDP 192.168.10.2:40000 -> 203.0.113.9:5001.
    const UDP: [u8; 42] = [
        0x02, 0, 0, 0, 1, 1, 0x02, 0, 0, 0, 0x0a, 2, 0x08, 0x00, // eth
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, // ipv4 ..
        192, 168, 10, 2, 203, 0, 113, 9, // src, dst
        0x9c, 0x40, 0x13, 0x89, 0, 8, 0, 0, // udp
    ];

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = UDP.to_vec();
        f(&mut v);
        v
    }

    #[test]
    fn udp() {
        assert_eq!(
            frame_tuple(&UDP),
            Some(Tuple {
                src: Ipv4Addr::new(192, 168, 10, 2),
                dst: Ipv4Addr::new(203, 0, 113, 9),
                sport: 40000,
                dport: 5001,
                proto: IPPROTO_UDP,
            })
        );
    }

    #[test]
    fn tcp_with_ip_options_reads_ports_after_them() {
        let f = with(|v| {
            v[14] = 0x46; // IHL 6
            v[23] = IPPROTO_TCP;
            v.splice(34..34, [1, 1, 1, 0]); // NOP NOP NOP EOL
        });
        let t = frame_tuple(&f).expect("tuple");
        assert_eq!((t.sport, t.dport, t.proto), (40000, 5001, IPPROTO_TCP));
    }

    #[test]
    fn icmp_queries_carry_their_id_errors_none() {
        let echo = with(|v| {
            v[23] = IPPROTO_ICMP;
            v.truncate(34);
            v.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        });
        let t = frame_tuple(&echo).expect("tuple");
        assert_eq!((t.sport, t.dport, t.proto), (0x1234, 0x1234, IPPROTO_ICMP));
        let unreachable = with(|v| {
            v[23] = IPPROTO_ICMP;
            v[34] = 3;
        });
        assert_eq!(frame_tuple(&unreachable), None);
    }

    #[test]
    fn other_protocols_have_no_ports() {
        let gre = with(|v| v[23] = 47);
        let t = frame_tuple(&gre).expect("tuple");
        assert_eq!((t.sport, t.dport, t.proto), (0, 0, 47));
    }

    #[test]
    fn not_ipv4_or_too_short() {
        assert_eq!(frame_tuple(&with(|v| v[12] = 0x86)), None); // IPv6 ethertype
        assert_eq!(frame_tuple(&with(|v| v[14] = 0x65)), None); // version 6
        assert_eq!(frame_tuple(&UDP[..33]), None);
        assert_eq!(frame_tuple(&[]), None);
        // Addresses but no transport header: ports read as 0, no panic.
        let t = frame_tuple(&UDP[..34]).expect("tuple");
        assert_eq!((t.sport, t.dport), (0, 0));
    }
}
