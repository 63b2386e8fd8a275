use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// `hex` as bytes (fixtures are written as the capture printed them).
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
        .collect()
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

// Captured on the sync link between two conntrackd 1.4.7 (Debian, x86-64)
// in FTFW mode, while a host behind the sender made connections through
// `-j SNAT --to-source 203.0.113.1:61000-61010` (and a DNAT of
// 203.0.113.200 to 203.0.113.254 for the TCP one).

/// The first message of a starting daemon: ALIVE with HELLO.
const ALIVE_HELLO: &str = "1a300008 6b116d5a";
/// The peer's answer: ACK of that message, HELLO and HELLO_BACK.
const ACK_HELLO_BACK: &str = "1a680010 6b116d5a 6b116d5a 6b116d5a";
/// An established TCP connection, source and destination NATed (UPDATE,
/// HELLO_BACK).
const TCP_SNAT_DNAT: &str = "11400054 6b116d5b 000c0000 c0a80a02 cb0071c8 00080005 000001be \
     00050002 06000000 00080003 9c401f90 00050004 03000000 00080006 00069780 0008000c cb007101 \
     0008000d cb0071fe 0006000e 4dee0000";
/// A masqueraded UDP flow's NEW.
const UDP_NEW: &str = "10000044 6b116d5c 000c0000 c0a80a02 cb0071fe 00080005 00000198 \
     00050002 11000000 00080003 138814e9 00080006 0000001e 0008000c cb007101 0006000e 4aee0000";
/// A masqueraded ping's UPDATE.
const ICMP_UPD: &str = "1100005c 6b116d5e 000c0000 c0a80a02 cb0071fe 00080005 0000019a \
     00050002 01000000 00050016 08000000 00050017 00000000 00060018 715a0000 00080006 0000001e \
     0008000c cb007101 0006000e 00000000 0006000f 00000000";
/// `conntrackd -n` on the peer: a RESYNC request.
const RESYNC: &str = "1a020010 6b116d5e 00000000 00000000";
/// An ACK of the peer's messages 5b to 5d.
const ACK: &str = "1a080010 6b116d5b 6b116d5b 6b116d5d";
/// An entry made with `conntrack -I ... -m 7` (no NAT status bits, so no
/// NAT attributes even though its reply tuple differs): MARK and a
/// SYNPROXY attribute of zeros (type 31), which a receiver skips.
const TCP_INSERTED: &str = "10200054 6b116d21 000c0000 c0a80a02 cb0071fe 00080005 0000000e \
     00050002 06000000 00080003 9c400050 00050004 03000000 00080006 00000078 00080007 00000007 \
     0010001f 00000000 00000000 00000000";

// Captured on the sync link of a conntrackd 1.4.7 (Debian, x86-64) in
// NOTRACK mode, while a host behind the sender (fd00:10::2) made
// connections to 2001:db8:113::254 through ip6tables' NAT66 `-o wan0 -j
// MASQUERADE --to-ports 61000-61010` (TCP, UDP; ICMPv6 without
// `--to-ports`) to 2001:db8:113::1.

/// An established TCP connection over NAT66 (UPDATE): `NTA_IPV6` (both
/// addresses, 32 bytes), `NTA_SNAT_IPV6` (type 29, 16 bytes), the NAT
/// port little-endian as IPv4's.
const TCP6_NAT66: &str = "11000070 6b11c4d6 00240001 fd000010 00000000 00000000 00000002 \
     20010db8 01130000 00000000 00000254 00080005 0000019e 00050002 06000000 00080003 db141f90 \
     00050004 03000000 00080006 00069780 0014001d 20010db8 01130000 00000000 00000001 0006000e \
     51ee0000";
/// A masqueraded UDP flow's NEW.
const UDP6_NEW: &str = "10000068 6b11c4da 00240001 fd000010 00000000 00000000 00000002 \
     20010db8 01130000 00000000 00000254 00080005 00000198 00050002 11000000 00080003 d8c41e61 \
     00080006 0000001e 0014001d 20010db8 01130000 00000000 00000001 0006000e 4eee0000";
/// A masqueraded ping6 (UPDATE): ICMPv6 (58) with the ICMP attributes, and
/// port NAT attributes of 0 as IPv4's ICMP.
const ICMP6_UPD: &str = "11000080 6b11c4dc 00240001 fd000010 00000000 00000000 00000002 \
     20010db8 01130000 00000000 00000254 00080005 0000019a 00050002 3a000000 00050016 80000000 \
     00050017 00000000 00060018 cf5a0000 00080006 0000001e 0014001d 20010db8 01130000 00000000 \
     00000001 0006000e 00000000 0006000f 00000000";

fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("an IPv6 address"))
}

/// conntrackd's IPv6 entries: read into the same values as IPv4's, and
/// (TCP, UDP) built back byte for byte; the ping6 back to what parses the
/// same (xdpgw sends no port NAT attributes for ICMP, as for IPv4).
#[test]
fn ipv6_entries_of_the_daemon_parse_and_build_byte_for_byte() {
    let (c, s, w) = (
        ip6("fd00:10::2"),
        ip6("2001:db8:113::254"),
        ip6("2001:db8:113::1"),
    );
    let tcp = SyncedCt {
        ports: Some((56084, 8080)),
        status: Some(0x19e),
        tcp_state: Some(3),
        timeout: Some(432000),
        snat: Some(w),
        spat: Some(61009),
        ..SyncedCt::new(c, s, 6)
    };
    let udp = SyncedCt {
        ports: Some((55492, 7777)),
        status: Some(0x198),
        timeout: Some(30),
        snat: Some(w),
        spat: Some(61006),
        ..SyncedCt::new(c, s, 17)
    };
    for (fixture, kind, ct) in [
        (TCP6_NAT66, CtKind::Update, tcp),
        (UDP6_NEW, CtKind::New, udp),
    ] {
        let b = hex(fixture);
        let m = one(&b);
        let Body::Ct(k, attrs) = m.body else {
            panic!("{m:?}")
        };
        assert_eq!(k, kind);
        assert_eq!(parse_ct(attrs), Ok(ct));
        let mut out = Vec::new();
        build_ct(&mut out, kind, 0, m.hdr.seq, &ct);
        assert_eq!(out, b, "{fixture}");
    }
    let b = hex(ICMP6_UPD);
    let Body::Ct(CtKind::Update, attrs) = one(&b).body else {
        panic!()
    };
    let ping = parse_ct(attrs).expect("icmpv6");
    assert_eq!((ping.src, ping.dst, ping.proto), (c, s, 58));
    assert_eq!(ping.icmp, Some((128, 0, 23247)));
    assert_eq!(
        (ping.snat, ping.spat, ping.dpat),
        (Some(w), Some(0), Some(0))
    );
    let mut out = Vec::new();
    build_ct(&mut out, CtKind::Update, 0, 1, &ping);
    let Body::Ct(_, again) = one(&out).body else {
        panic!()
    };
    assert_eq!(parse_ct(again), Ok(ping));
    // An IPv6 entry with an IPv4 NAT address is refused.
    let mut mixed = Vec::new();
    build_ct(
        &mut mixed,
        CtKind::New,
        0,
        1,
        &SyncedCt {
            snat: Some(ip([203, 0, 113, 1])),
            ..tcp
        },
    );
    let Body::Ct(_, attrs) = one(&mixed).body else {
        panic!()
    };
    assert!(matches!(parse_ct(attrs), Err(WireError::Missing(_))));
}

fn one(bytes: &[u8]) -> Message<'_> {
    let mut it = messages(bytes);
    let m = it.next().expect("a message").expect("well formed");
    assert_eq!(it.next(), None);
    m
}

#[test]
fn control_messages_of_the_daemon() {
    let b = hex(ALIVE_HELLO);
    let m = one(&b);
    assert_eq!(
        m.hdr,
        Header {
            version: 1,
            ty: msg_type::CTL,
            flags: flag::ALIVE | flag::HELLO,
            len: 8,
            seq: 0x6b11_6d5a
        }
    );
    assert_eq!(m.body, Body::Ctl { range: None });
    let b = hex(ACK_HELLO_BACK);
    let m = one(&b);
    assert_eq!(m.hdr.flags, flag::ACK | flag::HELLO | flag::HELLO_BACK);
    assert_eq!(
        m.body,
        Body::Ctl {
            range: Some((0x6b11_6d5a, 0x6b11_6d5a))
        }
    );
    let b = hex(RESYNC);
    let m = one(&b);
    assert_eq!(m.hdr.flags, flag::RESYNC);
    assert_eq!(
        m.body,
        Body::Ctl {
            range: Some((0, 0))
        }
    );
    // Built byte for byte as the daemon builds them.
    let mut out = Vec::new();
    build_ctl(&mut out, flag::ALIVE | flag::HELLO, 0x6b11_6d5a, None);
    assert_eq!(out, hex(ALIVE_HELLO));
    out.clear();
    build_ctl(
        &mut out,
        flag::ACK,
        0x6b11_6d5b,
        Some((0x6b11_6d5b, 0x6b11_6d5d)),
    );
    assert_eq!(out, hex(ACK));
    out.clear();
    build_ctl(&mut out, flag::RESYNC, 0x6b11_6d5e, Some((0, 0)));
    assert_eq!(out, hex(RESYNC));
}

fn tcp_nat() -> SyncedCt {
    SyncedCt {
        ports: Some((40000, 8080)),
        status: Some(0x1be),
        tcp_state: Some(3),
        timeout: Some(432000),
        snat: Some(ip([203, 0, 113, 1])),
        dnat: Some(ip([203, 0, 113, 254])),
        spat: Some(61005),
        ..SyncedCt::new(ip([192, 168, 10, 2]), ip([203, 0, 113, 200]), 6)
    }
}

fn udp_nat() -> SyncedCt {
    SyncedCt {
        ports: Some((5000, 5353)),
        status: Some(0x198),
        timeout: Some(30),
        snat: Some(ip([203, 0, 113, 1])),
        spat: Some(61002),
        ..SyncedCt::new(ip([192, 168, 10, 2]), ip([203, 0, 113, 254]), 17)
    }
}

#[test]
fn nated_entries_parse_and_build_byte_for_byte() {
    for (fixture, kind, flags, ct) in [
        (TCP_SNAT_DNAT, CtKind::Update, flag::HELLO_BACK, tcp_nat()),
        (UDP_NEW, CtKind::New, 0, udp_nat()),
    ] {
        let b = hex(fixture);
        let m = one(&b);
        let Body::Ct(k, attrs) = m.body else {
            panic!("{m:?}")
        };
        assert_eq!(k, kind);
        assert_eq!(m.hdr.flags, flags);
        assert_eq!(parse_ct(attrs), Ok(ct));
        let mut out = Vec::new();
        build_ct(&mut out, kind, flags, m.hdr.seq, &ct);
        assert_eq!(out, b, "{fixture}");
    }
}

#[test]
fn icmp_carries_type_code_and_a_little_endian_id() {
    let b = hex(ICMP_UPD);
    let Body::Ct(CtKind::Update, attrs) = one(&b).body else {
        panic!()
    };
    let ct = parse_ct(attrs).expect("icmp");
    assert_eq!(ct.proto, 1);
    assert_eq!(ct.icmp, Some((8, 0, 23153)));
    assert_eq!(ct.ports, None);
    assert_eq!((ct.spat, ct.dpat), (Some(0), Some(0)));
    let mut out = Vec::new();
    build_ct(&mut out, CtKind::Update, 0, 0x6b11_6d5e, &ct);
    assert_eq!(out, b);
}

#[test]
fn unknown_attributes_are_skipped_and_mark_read() {
    let b = hex(TCP_INSERTED);
    let Body::Ct(CtKind::New, attrs) = one(&b).body else {
        panic!()
    };
    let ct = parse_ct(attrs).expect("inserted");
    assert_eq!(ct.mark, Some(7));
    assert_eq!(
        ct.status,
        Some(ips::SEEN_REPLY | ips::ASSURED | ips::CONFIRMED)
    );
    assert_eq!((ct.snat, ct.spat), (None, None));
    assert_eq!(ct.ports, Some((40000, 80)));
}

#[test]
fn a_datagram_of_several_messages_is_read_in_order() {
    // The answer to a RESYNC: the whole cache in one datagram.
    let mut d = hex(ICMP_UPD);
    d.extend(hex(UDP_NEW));
    d.extend(hex(TCP_SNAT_DNAT));
    let kinds: Vec<_> = messages(&d)
        .map(|m| m.map(|m| m.hdr.seq))
        .collect::<Result<_, _>>()
        .expect("three messages");
    assert_eq!(kinds, vec![0x6b11_6d5e, 0x6b11_6d5c, 0x6b11_6d5b]);
}

#[test]
fn framing_errors_end_the_datagram() {
    let good = hex(ALIVE_HELLO);
    let mut d = good.clone();
    d.extend_from_slice(&[0x1a, 0x10, 0, 8]);
    let r: Vec<_> = messages(&d).collect();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1], Err(WireError::Truncated));
    // Length zero, or past the datagram.
    let mut z = good.clone();
    z[3] = 0;
    assert_eq!(
        messages(&z).collect::<Vec<_>>(),
        vec![Err(WireError::BadSize(0))]
    );
    let mut long = good.clone();
    long[3] = 9;
    assert_eq!(
        messages(&long).collect::<Vec<_>>(),
        vec![Err(WireError::BadSize(9))]
    );
    // An ACK shorter than an ACK header.
    let mut ack = hex(ACK);
    ack[3] = 8;
    assert_eq!(messages(&ack[..8]).next(), Some(Err(WireError::Truncated)));
    assert_eq!(messages(&ack).next(), Some(Err(WireError::BadSize(8))));
    // Another version: that message is refused, the next one read.
    let mut v = good.clone();
    v[0] = 0x2a;
    v.extend(&good);
    let r: Vec<_> = messages(&v).collect();
    assert_eq!(r[0], Err(WireError::BadVersion(2)));
    assert!(r[1].is_ok());
    // A conntrack message with an ACK flag: neither data nor control.
    let mut bad = hex(UDP_NEW);
    bad[1] = flag::ALIVE;
    assert_eq!(
        messages(&bad).next(),
        Some(Err(WireError::BadHeader {
            ty: 0,
            flags: flag::ALIVE
        }))
    );
}

#[test]
fn malformed_attributes_are_refused() {
    let b = hex(UDP_NEW);
    let attrs = &b[HDR_LEN..];
    // The address pair's length is not 12.
    let mut a = attrs.to_vec();
    a[1] = 0x0b;
    assert!(matches!(
        parse_ct(&a),
        Err(WireError::BadAttr { attr: 0, len: 11 })
    ));
    // Shorter than its header; past the end.
    let mut a = attrs.to_vec();
    a[1] = 3;
    assert!(matches!(parse_ct(&a), Err(WireError::BadAttr { .. })));
    let mut a = attrs.to_vec();
    let n = a.len();
    a[n - 7] = 0x40;
    assert!(matches!(
        parse_ct(&a),
        Err(WireError::BadAttr { attr: 14, .. })
    ));
    // No addresses, no protocol.
    assert_eq!(
        parse_ct(&attrs[12..]),
        Err(WireError::Missing("an address pair"))
    );
    let mut no_proto = attrs[..20].to_vec();
    no_proto.extend_from_slice(&attrs[28..]);
    assert_eq!(
        parse_ct(&no_proto),
        Err(WireError::Missing("a layer-4 protocol"))
    );
    // Trailing bytes of 4 or fewer are ignored, as msg2ct ignores them.
    let mut t = attrs.to_vec();
    t.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(parse_ct(&t), Ok(udp_nat()));
}

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into())),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(a.into())),
    ]
}

prop_compose! {
    fn arb_ct()(v6 in any::<bool>(), a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
                n in any::<[u8; 16]>(), proto in any::<u8>(),
                ports in proptest::option::of(any::<(u16, u16)>()),
                status in proptest::option::of(any::<u32>()),
                tcp_state in proptest::option::of(any::<u8>()),
                timeout in proptest::option::of(any::<u32>()),
                mark in proptest::option::of(any::<u32>()),
                snat in any::<bool>(), dnat in any::<bool>(),
                spat in proptest::option::of(any::<u16>()),
                dpat in proptest::option::of(any::<u16>()),
                icmp in proptest::option::of(any::<(u8, u8, u16)>())) -> SyncedCt {
        let addr = |x: [u8; 16]| if v6 {
            IpAddr::V6(x.into())
        } else {
            IpAddr::V4(Ipv4Addr::new(x[0], x[1], x[2], x[3]))
        };
        SyncedCt {
            src: addr(a), dst: addr(b), proto, ports, status, tcp_state, timeout, mark,
            snat: snat.then(|| addr(n)), dnat: dnat.then(|| addr(n)), spat, dpat, icmp,
        }
    }
}

proptest! {
    /// Whatever is built parses back to itself.
    #[test]
    fn build_then_parse_round_trips(ct in arb_ct(), kind in 0u8..3, seq in any::<u32>()) {
        let kind = [CtKind::New, CtKind::Update, CtKind::Destroy][usize::from(kind)];
        let mut out = Vec::new();
        build_ct(&mut out, kind, 0, seq, &ct);
        prop_assert!(out.len() <= MAX_CT_LEN);
        let m = one(&out);
        prop_assert_eq!(m.hdr.seq, seq);
        prop_assert_eq!(m.body, Body::Ct(kind, &out[HDR_LEN..]));
        prop_assert_eq!(parse_ct(&out[HDR_LEN..]), Ok(ct));
    }

    /// Any bytes: the parser answers (a value or an error), never panics,
    /// and every message it yields lies inside the datagram.
    #[test]
    fn parsing_any_bytes_never_panics(d in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut total = 0usize;
        for m in messages(&d).flatten() {
            total += usize::from(m.hdr.len);
            if let Body::Ct(_, attrs) = m.body {
                let _ = parse_ct(attrs);
            }
        }
        prop_assert!(total <= d.len());
        let _ = parse_ct(&d);
    }

    /// Real messages with one byte changed: still no panic.
    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..4, at in any::<usize>(), v in any::<u8>(),
                                    cut in any::<usize>()) {
        let mut b = hex([TCP_SNAT_DNAT, UDP_NEW, ICMP_UPD, TCP_INSERTED][which]);
        let i = at % b.len();
        b[i] = v;
        b.truncate(cut % (b.len() + 1));
        for m in messages(&b).flatten() {
            if let Body::Ct(_, attrs) = m.body {
                let _ = parse_ct(attrs);
            }
        }
    }

    #[test]
    fn addresses_of_either_family_round_trip(a in arb_addr()) {
        let ct = SyncedCt::new(a, a, 17);
        let mut out = Vec::new();
        build_ct(&mut out, CtKind::New, 0, 1, &ct);
        prop_assert_eq!(parse_ct(&out[HDR_LEN..]), Ok(ct));
    }
}
