use super::*;
use proptest::prelude::*;

fn opts() -> SetOptions {
    SetOptions::default()
}

fn lookup_opts(src: u8, dim: u8) -> LookupOpts {
    LookupOpts {
        flags: DimFlags { src, dim },
        return_nomatch: false,
        update_counters: true,
        packets: None,
        bytes: None,
    }
}

fn pkt(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> SetPacket {
    SetPacket {
        src,
        dst,
        proto,
        has_ports: proto == 6 || proto == 17,
        sport,
        dport,
        len: 100,
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

#[test]
fn hash_net_takes_the_most_specific_prefix_and_nomatch_excludes() {
    let mut t = SetTable::default();
    t.create("bl", SetType::HashNet, opts(), false)
        .expect("create");
    let s = t.set_mut("bl").expect("set");
    s.add(&Elem::addr(ip(10, 0, 0, 0), 8), None, false, 0)
        .expect("add");
    let mut no = Elem::addr(ip(10, 1, 0, 0), 16);
    no.nomatch = true;
    s.add(&no, None, false, 0).expect("add");
    s.add(&Elem::addr(ip(10, 1, 2, 3), 32), None, false, 0)
        .expect("add");
    let o = lookup_opts(1, 1);
    let slot = t.slot("bl").expect("slot");
    assert!(t.matches(slot, &pkt(ip(10, 9, 9, 9), 0, 6, 1, 2), &o, 0));
    assert!(!t.matches(slot, &pkt(ip(10, 1, 9, 9), 0, 6, 1, 2), &o, 0));
    assert!(t.matches(slot, &pkt(ip(10, 1, 2, 3), 0, 6, 1, 2), &o, 0));
    assert!(!t.matches(slot, &pkt(ip(11, 1, 2, 3), 0, 6, 1, 2), &o, 0));
    // The destination with "dst".
    assert!(!t.matches(
        slot,
        &pkt(ip(10, 9, 9, 9), 0, 6, 1, 2),
        &lookup_opts(0, 1),
        0
    ));
    // --return-nomatch inverts what was found.
    let rn = LookupOpts {
        return_nomatch: true,
        ..o
    };
    assert!(t.matches(slot, &pkt(ip(10, 1, 9, 9), 0, 6, 1, 2), &rn, 0));
    assert!(!t.matches(slot, &pkt(ip(10, 9, 9, 9), 0, 6, 1, 2), &rn, 0));
    assert!(!t.matches(slot, &pkt(ip(11, 9, 9, 9), 0, 6, 1, 2), &rn, 0));
}

#[test]
fn add_del_exist_and_maxelem_as_ipset() {
    let mut t = SetTable::default();
    let o = SetOptions {
        maxelem: 2,
        ..opts()
    };
    t.create("a", SetType::HashIp, o, false).expect("create");
    assert_eq!(
        t.create("a", SetType::HashIp, opts(), true),
        Err(SetError::Exists)
    );
    assert!(t.create("a", SetType::HashIp, o, true).is_ok());
    let s = t.set_mut("a").expect("set");
    let e = Elem::addr(ip(1, 1, 1, 1), 32);
    s.add(&e, None, false, 0).expect("add");
    assert_eq!(s.add(&e, None, false, 0), Err(SetError::AlreadyAdded));
    assert_eq!(s.add(&e, None, true, 0), Ok(()));
    s.add(&Elem::addr(ip(1, 1, 1, 2), 32), None, false, 0)
        .expect("add");
    assert_eq!(
        s.add(&Elem::addr(ip(1, 1, 1, 3), 32), None, false, 0),
        Err(SetError::HashFull)
    );
    assert_eq!(
        s.del(&Elem::addr(ip(2, 2, 2, 2), 32), None, false, 0),
        Err(SetError::NotAdded)
    );
    assert_eq!(
        s.del(&Elem::addr(ip(2, 2, 2, 2), 32), None, true, 0),
        Ok(())
    );
    assert!(s.test(&e, None, 0));
    s.del(&e, None, false, 0).expect("del");
    assert!(!s.test(&e, None, 0));
    let mut with_timeout = e.clone();
    with_timeout.timeout = Some(5);
    assert_eq!(
        s.add(&with_timeout, None, false, 0),
        Err(SetError::NoTimeout)
    );
}

#[test]
fn timeouts_expire_elements() {
    let mut t = SetTable::default();
    let o = SetOptions {
        timeout: Some(10),
        ..opts()
    };
    t.create("t", SetType::HashIp, o, false).expect("create");
    let s = t.set_mut("t").expect("set");
    s.add(&Elem::addr(ip(1, 1, 1, 1), 32), None, false, 0)
        .expect("add");
    let mut short = Elem::addr(ip(1, 1, 1, 2), 32);
    short.timeout = Some(1);
    s.add(&short, None, false, 0).expect("add");
    let slot = t.slot("t").expect("slot");
    let o = lookup_opts(1, 1);
    let sec = 1_000_000_000;
    assert!(t.matches(slot, &pkt(ip(1, 1, 1, 2), 0, 6, 1, 1), &o, sec / 2));
    assert!(!t.matches(slot, &pkt(ip(1, 1, 1, 2), 0, 6, 1, 1), &o, sec));
    assert!(t.matches(slot, &pkt(ip(1, 1, 1, 1), 0, 6, 1, 1), &o, 9 * sec));
    assert!(!t.matches(slot, &pkt(ip(1, 1, 1, 1), 0, 6, 1, 1), &o, 10 * sec));
    // An expired element may be added again without -exist.
    let s = t.set_mut("t").expect("set");
    assert_eq!(s.add(&short, None, false, 2 * sec), Ok(()));
}

#[test]
fn ports_bitmap_and_lists() {
    let mut t = SetTable::default();
    t.create("p", SetType::HashIpPort, opts(), false)
        .expect("create");
    let mut e = Elem::addr(ip(1, 2, 3, 4), 32);
    e.proto = 17;
    e.port = 53;
    t.set_mut("p")
        .expect("set")
        .add(&e, None, false, 0)
        .expect("add");
    let bp = SetOptions {
        range: (0, 1024),
        ..opts()
    };
    t.create("bp", SetType::BitmapPort, bp, false)
        .expect("create");
    let mut port = Elem::addr(0, 32);
    port.port = 22;
    t.set_mut("bp")
        .expect("set")
        .add(&port, None, false, 0)
        .expect("add");
    port.port = 2000;
    assert_eq!(
        t.set_mut("bp").expect("set").add(&port, None, false, 0),
        Err(SetError::OutOfRange)
    );
    let p = t.slot("p").expect("slot");
    // dst,dst: the destination address and port.
    let dd = lookup_opts(0, 2);
    assert!(t.matches(p, &pkt(9, ip(1, 2, 3, 4), 17, 1000, 53), &dd, 0));
    assert!(!t.matches(p, &pkt(9, ip(1, 2, 3, 4), 6, 1000, 53), &dd, 0));
    // dst,src: the source port.
    assert!(!t.matches(
        p,
        &pkt(9, ip(1, 2, 3, 4), 17, 1000, 53),
        &lookup_opts(0b10, 2),
        0
    ));
    let bps = t.slot("bp").expect("slot");
    assert!(t.matches(bps, &pkt(1, 2, 6, 5000, 22), &lookup_opts(0, 1), 0));
    assert!(!t.matches(bps, &pkt(1, 2, 6, 22, 5000), &lookup_opts(0, 1), 0));
    assert!(t.matches(bps, &pkt(1, 2, 6, 22, 5000), &lookup_opts(1, 1), 0));
    t.create("l", SetType::ListSet, opts(), false)
        .expect("create");
    let m = t.member_slot("bp").expect("member");
    t.set_mut("l")
        .expect("set")
        .add(&Elem::addr(0, 32), Some(m), false, 0)
        .expect("add");
    let l = t.slot("l").expect("slot");
    assert!(t.matches(l, &pkt(1, 2, 6, 5000, 22), &lookup_opts(0, 1), 0));
    assert_eq!(t.destroy("bp", false), Err(SetError::InUse));
    assert_eq!(t.member_slot("l"), Err(SetError::MemberLoop));
}

#[test]
fn swap_exchanges_contents_and_keeps_names() {
    let mut t = SetTable::default();
    t.create("a", SetType::HashIp, opts(), false)
        .expect("create");
    t.create("b", SetType::HashIp, opts(), false)
        .expect("create");
    t.create("n", SetType::HashNet, opts(), false)
        .expect("create");
    t.set_mut("b")
        .expect("set")
        .add(&Elem::addr(7, 32), None, false, 0)
        .expect("add");
    let a = t.slot("a").expect("slot");
    t.swap("a", "b").expect("swap");
    assert_eq!(t.slot("a"), Some(a));
    assert!(t.matches(a, &pkt(7, 0, 6, 1, 1), &lookup_opts(1, 1), 0));
    assert_eq!(t.swap("a", "n"), Err(SetError::TypeMismatch));
}

#[test]
fn counters_count_and_condition() {
    let mut t = SetTable::default();
    let o = SetOptions {
        counters: true,
        ..opts()
    };
    t.create("c", SetType::HashNet, o, false).expect("create");
    t.set_mut("c")
        .expect("set")
        .add(&Elem::addr(ip(10, 0, 0, 0), 8), None, false, 0)
        .expect("add");
    let s = t.slot("c").expect("slot");
    let gt = LookupOpts {
        packets: Some((CounterOp::Gt, 2)),
        ..lookup_opts(1, 1)
    };
    let p = pkt(ip(10, 0, 0, 1), 0, 6, 1, 1);
    // Counted first, compared after: the third packet is the first above 2.
    assert!(!t.matches(s, &p, &gt, 0));
    assert!(!t.matches(s, &p, &gt, 0));
    assert!(t.matches(s, &p, &gt, 0));
    let (_, k, v) = t.get(s).expect("set").set.elements()[0];
    assert_eq!(k.addr(), ip(10, 0, 0, 0));
    assert_eq!(v.counter.as_ref().map(|c| c.get()), Some((3, 300)));
}

/// The plain version of a hash lookup: every live element, the most
/// specific covering one decides.
fn linear(elems: &[(u32, u8, bool)], addr: u32) -> Option<bool> {
    elems
        .iter()
        .filter(|(a, c, _)| addr & mask(*c) == *a)
        .max_by_key(|(_, c, _)| *c)
        .map(|(_, _, nomatch)| *nomatch)
}

proptest! {
    #[test]
    fn hash_net_lookup_agrees_with_a_linear_scan(
        raw in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 0..60),
        probes in proptest::collection::vec(any::<u32>(), 1..40),
        return_nomatch in any::<bool>(),
    ) {
        let mut t = SetTable::default();
        t.create("s", SetType::HashNet, opts(), false).expect("create");
        let mut elems: Vec<(u32, u8, bool)> = Vec::new();
        for (a, c, nm) in raw {
            // ipset refuses /0 in hash:net.
            let c = c.max(1);
            let a = a & mask(c);
            let mut e = Elem::addr(a, c);
            e.nomatch = nm;
            let s = t.set_mut("s").expect("set");
            if s.add(&e, None, true, 0).is_ok() {
                elems.retain(|(x, y, _)| !(*x == a && *y == c));
                elems.push((a, c, nm));
            }
        }
        // Probe near the elements too, not only at random.
        let near: Vec<u32> = elems.iter().map(|(a, _, _)| a ^ 1).collect();
        let slot = t.slot("s").expect("slot");
        let o = LookupOpts { return_nomatch, ..lookup_opts(1, 1) };
        for addr in probes.into_iter().chain(near).chain(elems.iter().map(|e| e.0)) {
            let want = match linear(&elems, addr) {
                Some(nm) if return_nomatch => nm,
                Some(nm) => !nm,
                None => false,
            };
            prop_assert_eq!(t.matches(slot, &pkt(addr, 0, 6, 1, 1), &o, 0), want);
        }
    }
}

#[test]
fn a_change_is_published_whole_and_leaves_older_snapshots_alone() {
    let shared = SharedSets::default();
    shared
        .update(|t| {
            t.create("s", SetType::HashNet, opts(), false)?;
            let s = t.set_mut("s")?;
            for i in 0..1000u32 {
                s.add(&Elem::addr(0x0a00_0000 + (i << 8), 24), None, false, 0)?;
            }
            Ok::<(), SetError>(())
        })
        .expect("fill");
    let before = shared.snapshot();
    let o = lookup_opts(1, 1);
    let p = pkt(ip(11, 0, 0, 1), 0, 6, 1, 1);
    shared
        .update(|t| {
            t.set_mut("s")?
                .add(&Elem::addr(ip(11, 0, 0, 0), 8), None, false, 0)?;
            t.set_mut("s")?
                .del(&Elem::addr(0x0a00_0000, 24), None, false, 0)
        })
        .expect("change");
    let after = shared.snapshot();
    let slot = after.slot("s").expect("slot");
    assert!(after.matches(slot, &p, &o, 0));
    assert!(
        !before.matches(slot, &p, &o, 0),
        "the old snapshot is unchanged"
    );
    assert!(before.matches(slot, &pkt(ip(10, 0, 0, 1), 0, 6, 1, 1), &o, 0));
    assert!(!after.matches(slot, &pkt(ip(10, 0, 0, 1), 0, 6, 1, 1), &o, 0));
    assert_eq!(before.get(slot).map(|s| s.set.len()), Some(1000));
    assert_eq!(after.get(slot).map(|s| s.set.len()), Some(1000));
    // A failed change publishes nothing.
    let r = shared.update(|t| {
        t.set_mut("s")?
            .add(&Elem::addr(ip(12, 0, 0, 0), 8), None, false, 0)?;
        t.set_mut("s")?
            .add(&Elem::addr(ip(12, 0, 0, 0), 8), None, false, 0)
    });
    assert_eq!(r, Err(SetError::AlreadyAdded));
    assert!(Arc::ptr_eq(&after, &shared.snapshot()));
}

/// Six counting rules in OUTPUT and four pings, measured in Linux (ipset
/// 7.17, kernel 6.18): `-m set --match-set s dst` with the options below,
/// s a `counters` hash:net of 10.0.0.0/8 and 10.1.0.0/16 nomatch, h a
/// hash:ip of 10.2.0.1; pings to 10.2.0.1, 10.1.0.1, 11.0.0.1, 10.2.0.1.
/// Linux counted 2, 1, 3, 2, 2, 0 packets, and the elements 8 and 4.
#[test]
fn return_nomatch_and_counters_as_linux_counted_them() {
    let mut t = SetTable::default();
    let c = SetOptions {
        counters: true,
        ..opts()
    };
    t.create("s", SetType::HashNet, c, false).expect("create");
    t.create("h", SetType::HashIp, opts(), false)
        .expect("create");
    let s = t.set_mut("s").expect("s");
    s.add(&Elem::addr(ip(10, 0, 0, 0), 8), None, false, 0)
        .expect("add");
    let mut no = Elem::addr(ip(10, 1, 0, 0), 16);
    no.nomatch = true;
    s.add(&no, None, false, 0).expect("add");
    t.set_mut("h")
        .expect("h")
        .add(&Elem::addr(ip(10, 2, 0, 1), 32), None, false, 0)
        .expect("add");
    let (s, h) = (t.slot("s").expect("s"), t.slot("h").expect("h"));
    let dst = lookup_opts(0, 1);
    let rn = LookupOpts {
        return_nomatch: true,
        ..dst
    };
    // (set, options, inverted)
    let rules = [
        (s, dst, false),
        (s, rn, false),
        (s, rn, true),
        (h, rn, false),
        (
            s,
            LookupOpts {
                packets: Some((CounterOp::Gt, 1)),
                ..dst
            },
            false,
        ),
        (
            s,
            LookupOpts {
                update_counters: false,
                packets: Some((CounterOp::Eq, 2)),
                ..dst
            },
            false,
        ),
    ];
    let mut counted = [0; 6];
    for d in [
        ip(10, 2, 0, 1),
        ip(10, 1, 0, 1),
        ip(11, 0, 0, 1),
        ip(10, 2, 0, 1),
    ] {
        let p = SetPacket {
            proto: 1,
            has_ports: false,
            ..pkt(ip(10, 255, 0, 1), d, 1, 0, 0)
        };
        for (i, (slot, o, inv)) in rules.iter().enumerate() {
            if t.matches(*slot, &p, o, 0) != *inv {
                counted[i] += 1;
            }
        }
    }
    assert_eq!(counted, [2, 1, 3, 2, 2, 0]);
    let packets: Vec<u64> = t
        .get(s)
        .expect("s")
        .set
        .elements()
        .iter()
        .map(|(_, _, v)| v.counter.as_ref().map_or(0, |c| c.get().0))
        .collect();
    assert_eq!(packets, [8, 4]);
}

/// The plain version of a port-set lookup: the most specific live element
/// covering the address with the packet's protocol and port.
fn linear_ports(
    elems: &[(u32, u8, u8, u16, bool)],
    addr: u32,
    proto: u8,
    port: u16,
) -> Option<bool> {
    elems
        .iter()
        .filter(|(a, c, pr, po, _)| addr & mask(*c) == *a && *pr == proto && *po == port)
        .max_by_key(|e| e.1)
        .map(|e| e.4)
}

proptest! {
    #[test]
    fn port_set_lookups_agree_with_a_linear_scan(
        net in any::<bool>(),
        raw in proptest::collection::vec(
            (any::<u32>(), 1u8..=32, any::<bool>(), 0u16..4, any::<bool>()), 0..50),
        probes in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), any::<bool>(), 0u16..4, 0u16..4, 0u8..4), 1..40),
    ) {
        let kind = if net { SetType::HashNetPort } else { SetType::HashIpPort };
        let mut t = SetTable::default();
        t.create("p", kind, opts(), false).expect("create");
        let mut elems: Vec<(u32, u8, u8, u16, bool)> = Vec::new();
        for (a, c, udp, port, nm) in raw {
            let c = if net { c } else { 32 };
            let a = a & mask(c);
            let proto = if udp { 17 } else { 6 };
            let mut e = Elem::addr(a, c);
            e.proto = proto;
            e.port = port;
            e.nomatch = nm && net;
            t.set_mut("p").expect("set").add(&e, None, true, 0).expect("add");
            elems.retain(|x| !(x.0 == a && x.1 == c && x.2 == proto && x.3 == port));
            elems.push((a, c, proto, port, e.nomatch));
        }
        let slot = t.slot("p").expect("slot");
        // Addresses near the elements too.
        let near: Vec<(u32, u32, bool, u16, u16, u8)> =
            elems.iter().map(|e| (e.0 | 1, e.0, e.2 == 17, e.3, e.3, 1)).collect();
        for (src, dst, udp, sport, dport, flags) in probes.into_iter().chain(near) {
            let proto = if udp { 17 } else { 6 };
            let p = pkt(src, dst, proto, sport, dport);
            let o = lookup_opts(flags, 2);
            let addr = if flags & 1 != 0 { src } else { dst };
            let port = if flags & 2 != 0 { sport } else { dport };
            let want = linear_ports(&elems, addr, proto, port) == Some(false);
            prop_assert_eq!(t.matches(slot, &p, &o, 0), want);
            // Not TCP or UDP: no port, no match.
            let icmp = SetPacket { proto: 1, has_ports: false, ..p };
            prop_assert!(!t.matches(slot, &icmp, &o, 0));
        }
    }
}
