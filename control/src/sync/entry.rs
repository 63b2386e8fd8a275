//! xdpgw's conntrack entries as conntrackd carries them, and back.
//!
//! conntrackd sends the original tuple and the NAT as the reply tuple's
//! differences from the inverted original (`ct2msg`); the receiver rebuilds
//! the reply tuple from them (the kernel does, `nfct_setobjopt
//! NFCT_SOPT_SETUP_REPLY` then the NAT setup of `ctnetlink_create_conntrack`).

#[cfg(test)]
use std::net::Ipv4Addr;
use std::net::{IpAddr, Ipv6Addr};

use xdpgw_dataplane::conntrack::{status, Nanos, SavedEntry, Snapshot, TcpState, NANOS_PER_SEC};
use xdpgw_dataplane::flow::{Addr, Tuple, IPPROTO_TCP, IPPROTO_UDP};

use super::wire::{ips, SyncedCt};

/// An xdpgw entry (an event's or a listing's copy) as conntrackd sends it
/// at `now`: the status with Linux's `IPS_*_NAT_DONE` bits (every
/// confirmed entry of a kernel with NAT has both; conntrackd sends the NAT
/// attributes only with them), the time left in seconds, the mark when set.
pub fn from_snapshot<A: Addr + Into<IpAddr>>(s: &Snapshot<A>, now: Nanos) -> SyncedCt {
    let o = s.orig;
    let r = s.reply;
    let mut st = u32::from(s.status);
    if st & ips::CONFIRMED != 0 {
        st |= ips::SRC_NAT_DONE | ips::DST_NAT_DONE;
    }
    let ported = matches!(o.proto, IPPROTO_TCP | IPPROTO_UDP);
    let mut ct = SyncedCt::new(o.src.into(), o.dst.into(), o.proto);
    ct.status = Some(st);
    ct.timeout =
        Some((s.expires.saturating_sub(now) / NANOS_PER_SEC).min(u64::from(u32::MAX)) as u32);
    ct.mark = (s.mark != 0).then_some(s.mark);
    if ported {
        ct.ports = Some((o.sport, o.dport));
    }
    if o.proto == IPPROTO_TCP && s.tcp_state != TcpState::None {
        ct.tcp_state = Some(s.tcp_state as u8);
    }
    if o.proto == A::ICMP {
        ct.icmp = Some((s.icmp_type, s.icmp_code, o.sport));
    }
    if r.dst != o.src {
        ct.snat = Some(r.dst.into());
    }
    if r.src != o.dst {
        ct.dnat = Some(r.src.into());
    }
    if ported && r.dport != o.sport {
        ct.spat = Some(r.dport);
    }
    if ported && r.sport != o.dport {
        ct.dpat = Some(r.sport);
    }
    ct
}

/// Both tuples of a received IPv4 entry: the original from its addresses
/// and ports (ICMP: the query id as both "ports", as xdpgw keys ICMP), the
/// reply the original inverted, then NATed. `None` for another family.
pub fn tuples_v4(ct: &SyncedCt) -> Option<(Tuple, Tuple)> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (ct.src, ct.dst) else {
        return None;
    };
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    Some(tuples(src, dst, ct, v4(ct.snat), v4(ct.dnat)))
}

/// [`tuples_v4`] for IPv6 entries.
pub fn tuples_v6(ct: &SyncedCt) -> Option<(Tuple<Ipv6Addr>, Tuple<Ipv6Addr>)> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ct.src, ct.dst) else {
        return None;
    };
    let v6 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    Some(tuples(src, dst, ct, v6(ct.snat), v6(ct.dnat)))
}

fn tuples<A: Addr>(
    src: A,
    dst: A,
    ct: &SyncedCt,
    snat: Option<A>,
    dnat: Option<A>,
) -> (Tuple<A>, Tuple<A>) {
    let (sport, dport) = if ct.proto == A::ICMP {
        let id = ct.icmp.map_or(0, |i| i.2);
        (id, id)
    } else {
        ct.ports.unwrap_or((0, 0))
    };
    let orig = Tuple {
        src,
        dst,
        sport,
        dport,
        proto: ct.proto,
    };
    let mut reply = orig.invert();
    if let Some(a) = snat {
        reply.dst = a;
    }
    if let Some(a) = dnat {
        reply.src = a;
    }
    if matches!(ct.proto, IPPROTO_TCP | IPPROTO_UDP) {
        if let Some(p) = ct.spat {
            reply.dport = p;
        }
        if let Some(p) = ct.dpat {
            reply.sport = p;
        }
    }
    (orig, reply)
}

/// The status bits xdpgw keeps of a received entry: Linux's, less those
/// xdpgw has no use for, with SRC_NAT/DST_NAT as its tuples say.
fn status_of<A: Addr>(ct: &SyncedCt, orig: &Tuple<A>, reply: &Tuple<A>) -> u16 {
    let st = ct.status.unwrap_or(ips::CONFIRMED);
    let mut s = (st & 0xffff) as u16
        & (status::SEEN_REPLY | status::ASSURED | status::SRC_NAT | status::DST_NAT);
    if reply.dst != orig.src || reply.dport != orig.sport {
        s |= status::SRC_NAT;
    }
    if reply.src != orig.dst || reply.sport != orig.dport {
        s |= status::DST_NAT;
    }
    s | status::CONFIRMED
}

/// A received entry with its tuples ([`tuples_v4`], [`tuples_v6`]), `age`
/// after it arrived, as the table of its family takes it (`conntrackd
/// -c`: the time left is the received timeout less the time since, at
/// least 60 s if that ran out, as `cache_ct_commit_step`). `Err`: why it
/// cannot be committed.
pub fn to_saved<A: Addr>(
    ct: &SyncedCt,
    (orig, reply): (Tuple<A>, Tuple<A>),
    age: Nanos,
) -> Result<SavedEntry<A>, &'static str> {
    let st = status_of(ct, &orig, &reply);
    let timeout = u64::from(ct.timeout.unwrap_or(0)) * NANOS_PER_SEC;
    let left = match timeout.checked_sub(age) {
        Some(t) if t > 0 => t,
        _ => 60 * NANOS_PER_SEC,
    };
    let icmp = ct.icmp.map_or((0, 0), |i| (i.0, i.1));
    if orig.proto == IPPROTO_TCP && ct.tcp_state.is_none() {
        return Err("TCP entry without its state");
    }
    if orig.proto == A::ICMP && ct.icmp.is_none() {
        return Err("ICMP entry without its type");
    }
    SavedEntry::synced(
        orig,
        reply,
        st,
        ct.mark.unwrap_or(0),
        left,
        ct.tcp_state.unwrap_or(0),
        icmp,
    )
}

/// A received entry as a listing shows it (`xdpgw sync dump-external`):
/// the /proc/net/nf_conntrack form of its tuples, `age` after it arrived.
pub fn snapshot<A: Addr>(
    ct: &SyncedCt,
    tuples: (Tuple<A>, Tuple<A>),
    now: Nanos,
    age: Nanos,
) -> Snapshot<A> {
    let (orig, reply) = tuples;
    let timeout = u64::from(ct.timeout.unwrap_or(0)) * NANOS_PER_SEC;
    Snapshot {
        orig,
        reply,
        status: status_of(ct, &orig, &reply),
        tcp_state: TcpState::ALL
            .get(usize::from(ct.tcp_state.unwrap_or(0)))
            .copied()
            .unwrap_or(TcpState::None),
        mark: ct.mark.unwrap_or(0),
        expires: now + timeout.saturating_sub(age),
        packets: [0; 2],
        bytes: [0; 2],
        icmp_type: ct.icmp.map_or(0, |i| i.0),
        icmp_code: ct.icmp.map_or(0, |i| i.1),
    }
}

#[cfg(test)]
mod tests {
    use xdpgw_dataplane::flow::IPPROTO_ICMP;

    use super::*;

    /// An ESTABLISHED NAT66 TCP entry from fd00:10::2 port `sport` to
    /// [2001:db8:113::254]:8080, masqueraded to 2001:db8:113::1 port
    /// `nat_port`; with those three addresses.
    fn nat66_tcp(sport: u16, nat_port: u16) -> (Snapshot<Ipv6Addr>, [Ipv6Addr; 3]) {
        let a = |t: &str| t.parse::<Ipv6Addr>().expect("address");
        let (c, srv, wan) = (
            a("fd00:10::2"),
            a("2001:db8:113::254"),
            a("2001:db8:113::1"),
        );
        let s4 = snap();
        let s = Snapshot {
            orig: Tuple {
                src: c,
                dst: srv,
                sport,
                dport: 8080,
                proto: IPPROTO_TCP,
            },
            reply: Tuple {
                src: srv,
                dst: wan,
                sport: 8080,
                dport: nat_port,
                proto: IPPROTO_TCP,
            },
            status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED | status::SRC_NAT,
            tcp_state: TcpState::Established,
            mark: 0,
            expires: s4.expires,
            packets: s4.packets,
            bytes: s4.bytes,
            icmp_type: 0,
            icmp_code: 0,
        };
        (s, [c, srv, wan])
    }

    fn snap() -> Snapshot {
        let orig = Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 200),
            sport: 40000,
            dport: 8080,
            proto: IPPROTO_TCP,
        };
        let reply = Tuple {
            src: Ipv4Addr::new(203, 0, 113, 254),
            dst: Ipv4Addr::new(203, 0, 113, 1),
            sport: 8080,
            dport: 61005,
            proto: IPPROTO_TCP,
        };
        Snapshot {
            orig,
            reply,
            status: status::SEEN_REPLY
                | status::ASSURED
                | status::CONFIRMED
                | status::SRC_NAT
                | status::DST_NAT,
            tcp_state: TcpState::Established,
            mark: 0,
            expires: 10 * NANOS_PER_SEC + 432_000 * NANOS_PER_SEC,
            packets: [3, 2],
            bytes: [180, 120],
            icmp_type: 0,
            icmp_code: 0,
        }
    }

    /// The same attributes as conntrackd sent for the same connection on
    /// Linux (the capture in `wire`'s tests: status 0x1be, SNAT, DNAT,
    /// SPAT, no DPAT, no mark).
    #[test]
    fn an_xdpgw_entry_is_sent_as_conntrackd_sends_linuxs() {
        let ct = from_snapshot(&snap(), 10 * NANOS_PER_SEC);
        let mut ours = Vec::new();
        super::super::wire::build_ct(
            &mut ours,
            super::super::wire::CtKind::Update,
            0x40,
            0x6b11_6d5b,
            &ct,
        );
        let theirs = "11400054 6b116d5b 000c0000 c0a80a02 cb0071c8 00080005 000001be \
             00050002 06000000 00080003 9c401f90 00050004 03000000 00080006 00069780 0008000c cb007101 \
             0008000d cb0071fe 0006000e 4dee0000"
            .split_whitespace()
            .collect::<String>();
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, theirs);
    }

    #[test]
    fn received_entries_come_back_with_their_reply_tuple() {
        let s = snap();
        let ct = from_snapshot(&s, 10 * NANOS_PER_SEC);
        assert_eq!(tuples_v4(&ct), Some((s.orig, s.reply)));
        let t = tuples_v4(&ct).expect("v4");
        let e = to_saved(&ct, t, 2 * NANOS_PER_SEC).expect("commits");
        assert_eq!(e.orig(), s.orig);
        assert_eq!(e.reply(), s.reply);
        assert_eq!(e.status(), s.status);
        assert_eq!(e.remaining(), 431_998 * NANOS_PER_SEC);
        assert_eq!(e.tcp_state(), TcpState::Established);
        // Its time ran out meanwhile: a minute, as conntrackd gives it.
        let e = to_saved(&ct, t, 500_000 * NANOS_PER_SEC).expect("commits");
        assert_eq!(e.remaining(), 60 * NANOS_PER_SEC);
        // A NATed ping: the id on both sides, no port NAT.
        let mut ping = SyncedCt::new(
            IpAddr::V4(Ipv4Addr::new(192, 168, 10, 2)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254)),
            IPPROTO_ICMP,
        );
        ping.icmp = Some((8, 0, 23153));
        ping.snat = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)));
        ping.spat = Some(0);
        ping.dpat = Some(0);
        let (o, r) = tuples_v4(&ping).expect("v4");
        assert_eq!(
            (o.sport, o.dport, r.sport, r.dport),
            (23153, 23153, 23153, 23153)
        );
        assert_eq!(r.dst, Ipv4Addr::new(203, 0, 113, 1));
        assert!(to_saved(&ping, (o, r), 0).is_ok());
        assert!(tuples_v6(&ping).is_none());
    }

    /// An xdpgw NAT66 entry goes as conntrackd sent the same connection
    /// NATed by Linux (`wire`'s tests' capture: status 0x19e, SNAT_IPV6,
    /// SPAT).
    #[test]
    fn an_xdpgw_nat66_entry_is_sent_as_conntrackd_sends_linuxs() {
        let (s, _) = nat66_tcp(56084, 61009);
        let mut ours = Vec::new();
        super::super::wire::build_ct(
            &mut ours,
            super::super::wire::CtKind::Update,
            0,
            0x6b11_c4d6,
            &from_snapshot(&s, 10 * NANOS_PER_SEC),
        );
        let theirs = "11000070 6b11c4d6 00240001 fd000010 00000000 00000000 00000002 \
             20010db8 01130000 00000000 00000254 00080005 0000019e 00050002 06000000 00080003 \
             db141f90 00050004 03000000 00080006 00069780 0014001d 20010db8 01130000 00000000 \
             00000001 0006000e 51ee0000"
            .split_whitespace()
            .collect::<String>();
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, theirs);
    }

    /// A NAT66 TCP entry and an ICMPv6 echo: sent with conntrackd's IPv6
    /// attributes (`NTA_IPV6`, `NTA_SNAT_IPV6`, no IPv4 ones), read back
    /// into the same tuples, committed to the IPv6 table's form.
    #[test]
    fn ipv6_entries_go_and_come_back_with_their_nat66() {
        use super::super::wire::{build_ct, messages, nta, parse_ct, Body, CtKind};
        use xdpgw_dataplane::flow::IPPROTO_ICMPV6;
        let (tcp, [c, srv, wan]) = nat66_tcp(40000, 61005);
        let echo_o = Tuple {
            src: c,
            dst: srv,
            sport: 77,
            dport: 77,
            proto: IPPROTO_ICMPV6,
        };
        let echo = Snapshot {
            orig: echo_o,
            reply: Tuple {
                src: srv,
                dst: wan,
                ..echo_o
            },
            status: status::CONFIRMED | status::SRC_NAT,
            tcp_state: TcpState::None,
            icmp_type: 128,
            ..tcp
        };
        let now = 10 * NANOS_PER_SEC;
        let mut out = Vec::new();
        for (i, s) in [tcp, echo].iter().enumerate() {
            build_ct(&mut out, CtKind::New, 0, i as u32, &from_snapshot(s, now));
        }
        for (m, s) in messages(&out).zip([tcp, echo]) {
            let Ok(m) = m else { panic!("{m:?}") };
            let Body::Ct(CtKind::New, attrs) = m.body else {
                panic!("{m:?}")
            };
            // Attribute types present: IPv6 ones, never IPv4's.
            let mut types = Vec::new();
            let mut rest = attrs;
            while rest.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                types.push(u16::from_be_bytes([rest[2], rest[3]]));
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
            assert!(types.contains(&nta::IPV6) && types.contains(&nta::SNAT_IPV6));
            assert!(!types.contains(&nta::IPV4) && !types.contains(&nta::SNAT_IPV4));
            let ct = parse_ct(attrs).expect("parses");
            assert!(tuples_v4(&ct).is_none());
            let t = tuples_v6(&ct).expect("IPv6");
            assert_eq!(t, (s.orig, s.reply));
            let e = to_saved(&ct, t, NANOS_PER_SEC).expect("commits");
            assert_eq!(
                (e.orig(), e.reply(), e.status()),
                (s.orig, s.reply, s.status)
            );
            assert_eq!(e.tcp_state(), s.tcp_state);
        }
    }
}
