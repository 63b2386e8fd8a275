//! Property: the compiled classifier agrees with a linear reference
//! evaluator that reads the rule set as written (rule after rule, the
//! kernel's match functions restated here), for random IPv6 and IPv4 rule
//! sets and packets, `!` included: same verdict, same rules matched in the
//! same order.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use xdpgw_dataplane::classify::{
    compile, compile6, AddrFamily, EvalObserver, EvalState, FragFields, Ip6Fields, PacketView,
    RtFields, Verdict, V4, V6,
};
use xdpgw_dataplane::rule::*;

const IFACES: [&str; 3] = ["lan0", "lan1", "wan0"];
const USER: &str = "U";

/// Prefixes rules and packets draw from, so that they often meet.
const BASES6: [u128; 3] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0000,
    0xfd00_0010_0000_0000_0000_0000_0000_0000,
    0xfe80_0000_0000_0000_0000_0000_0000_0001,
];
const BASES4: [u32; 3] = [0x0a00_0000, 0xc0a8_0a00, 0xcb00_7100];

fn inv<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Inv<T>> {
    (s, any::<bool>()).prop_map(|(value, invert)| Inv { value, invert })
}

fn addr6() -> impl Strategy<Value = u128> {
    (0..BASES6.len(), 0u128..0x400).prop_map(|(b, low)| BASES6[b] | low)
}

fn addr4() -> impl Strategy<Value = u32> {
    (0..BASES4.len(), 0u32..0x400).prop_map(|(b, low)| BASES4[b] | low)
}

fn net6() -> impl Strategy<Value = Ipv6Net> {
    prop_oneof![
        (addr6(), 0u8..=128).prop_map(|(a, p)| {
            Ipv6Net::with_prefix(Ipv6Addr::from(a), p).expect("prefix 0-128")
        }),
        (addr6(), any::<u128>())
            .prop_map(|(a, m)| Ipv6Net::new(Ipv6Addr::from(a), Ipv6Addr::from(m))),
    ]
}

fn net4() -> impl Strategy<Value = Ipv4Net> {
    (addr4(), 0u8..=32)
        .prop_map(|(a, p)| Ipv4Net::with_prefix(Ipv4Addr::from(a), p).expect("prefix 0-32"))
}

fn u32_range() -> impl Strategy<Value = U32Range> {
    (0u32..40, 0u32..40, any::<bool>()).prop_map(|(lo, hi, invert)| U32Range { lo, hi, invert })
}

/// The matches both families have, and the IPv6 ones for `v6`.
fn a_match(v6: bool) -> BoxedStrategy<Match> {
    let common = prop_oneof![
        (
            proptest::option::of(inv((0u16..6, 0u16..6).prop_map(|(a, b)| PortRange {
                lo: a.min(b),
                hi: a.max(b)
            }))),
            proptest::option::of(inv((0u16..6).prop_map(PortRange::single))),
        )
            .prop_map(|(sport, dport)| Match::Udp(PortMatch { sport, dport })),
        inv(prop_oneof![
            Just(IcmpType::Any),
            (0u8..4, 0u8..3, 0u8..3).prop_map(|(ty, a, b)| IcmpType::Type {
                ty,
                code_lo: a.min(b),
                code_hi: a.max(b)
            }),
        ])
        .prop_map(Match::Icmp),
        prop_oneof![
            (0u8..5).prop_map(TtlMatch::Eq),
            (0u8..5).prop_map(TtlMatch::Ne),
            (0u8..5).prop_map(TtlMatch::Lt),
            (0u8..5).prop_map(TtlMatch::Gt),
        ]
        .prop_map(Match::Ttl),
        inv(0u8..4).prop_map(Match::Dscp),
        inv((0u16..100, 0u16..100).prop_map(|(lo, hi)| LenRange { lo, hi }))
            .prop_map(Match::Length),
    ]
    .boxed();
    if !v6 {
        return common;
    }
    prop_oneof![
        common,
        (any::<u8>(), any::<bool>(), any::<bool>()).prop_map(|(headers, invert, soft)| {
            Match::Ipv6Header(Ipv6HeaderMatch {
                headers,
                invert,
                soft,
            })
        }),
        (u32_range(), any::<[bool; 4]>()).prop_map(|(ids, f)| Match::Frag(FragMatch {
            ids,
            len: None,
            res: f[0],
            first: f[1],
            more: f[2],
            last: f[3],
        })),
        (
            proptest::option::of(inv(0u8..3)),
            u32_range(),
            proptest::option::of(inv((1u32..4).prop_map(|n| n * 8)))
        )
            .prop_map(|(rt_type, segsleft, len)| Match::Rt(RtMatch {
                rt_type,
                segsleft,
                len
            })),
        (proptest::option::of(inv((addr6(), addr6()))), any::<bool>()).prop_map(|(r, src)| {
            let r = r.map(|r| {
                Inv::new(
                    AddrRange {
                        lo: Ipv6Addr::from(r.value.0),
                        hi: Ipv6Addr::from(r.value.1),
                    },
                    r.invert,
                )
            });
            Match::IpRange6(if src {
                IpRange { src: r, dst: None }
            } else {
                IpRange { src: None, dst: r }
            })
        }),
    ]
    .boxed()
}

fn target(user: bool) -> BoxedStrategy<Target> {
    let mut t = vec![
        Just(Target::None).boxed(),
        Just(Target::Accept).boxed(),
        Just(Target::Drop).boxed(),
        Just(Target::Return).boxed(),
        Just(Target::Reject(RejectWith::Icmp6AdmProhibited)).boxed(),
    ];
    if !user {
        t.push(Just(Target::Jump(USER.into())).boxed());
    }
    proptest::strategy::Union::new(t).boxed()
}

fn iface() -> impl Strategy<Value = IfaceMatch> {
    prop_oneof![Just("lan+"), Just("lan0"), Just("wan0"), Just("eth0")]
        .prop_map(|n| IfaceMatch { name: n.into() })
}

fn rule(v6: bool, user: bool) -> impl Strategy<Value = Rule> {
    (
        (
            proptest::option::of(inv(net6())),
            proptest::option::of(inv(net6())),
        ),
        (
            proptest::option::of(inv(net4())),
            proptest::option::of(inv(net4())),
        ),
        proptest::option::of(inv(iface())),
        proptest::option::of(inv(prop_oneof![Just(17u8), Just(58), Just(1), Just(6)])),
        proptest::collection::vec(a_match(v6), 0..3),
        target(user),
    )
        .prop_map(move |((s6, d6), (s4, d4), i, protocol, matches, target)| {
            let mut r = Rule::new(target);
            if v6 {
                r.src6 = s6;
                r.dst6 = d6;
            } else {
                r.src = s4;
                r.dst = d4;
            }
            r.in_iface = i;
            r.protocol = protocol;
            r.matches = matches;
            r
        })
}

fn rule_set(v6: bool) -> impl Strategy<Value = RuleSet> {
    (
        proptest::collection::vec(rule(v6, false), 0..8),
        proptest::collection::vec(rule(v6, true), 0..4),
        any::<bool>(),
    )
        .prop_map(|(fwd, user, drop)| {
            let mut t = TableRules::empty(Table::Filter);
            t.chains[1].rules = fwd;
            t.chains[1].policy = Some(if drop { Policy::Drop } else { Policy::Accept });
            t.chains.push(Chain {
                name: USER.into(),
                hook: None,
                policy: None,
                counters: Counters::default(),
                rules: user,
            });
            RuleSet { tables: vec![t] }
        })
}

fn packet<F: AddrFamily>(
    addrs: impl Strategy<Value = (F::Addr, F::Addr)>,
    extra: impl Strategy<Value = F::Extra>,
) -> impl Strategy<Value = PacketView<F>> {
    (
        addrs,
        extra,
        prop_oneof![Just(17u8), Just(58), Just(1), Just(6)],
        (0u8..3, any::<bool>(), 0u16..6, 0u16..6),
        proptest::option::of((0u8..4, 0u8..3)),
        (0u8..6, 0u8..16, 0u16..100),
    )
        .prop_map(
            |(
                (src, dst),
                extra,
                proto,
                (iface, has_ports, sport, dport),
                icmp,
                (ttl, tos, len),
            )| {
                PacketView {
                    src,
                    dst,
                    proto,
                    in_iface: Some(iface),
                    has_ports,
                    sport,
                    dport,
                    icmp,
                    ttl,
                    tos,
                    len,
                    extra,
                    ..PacketView::default()
                }
            },
        )
}

fn ip6_fields() -> impl Strategy<Value = Ip6Fields> {
    (
        any::<u8>(),
        proptest::option::of((0u32..40, any::<u16>(), 0u8..2)),
        proptest::option::of((0u8..3, 0u8..40, 0u8..4)),
    )
        .prop_map(|(headers, frag, rt)| Ip6Fields {
            headers,
            frag: frag.map(|(id, frag_off, reserved)| FragFields {
                id,
                frag_off,
                reserved,
            }),
            rt: rt.map(|(rt_type, segs_left, hdrlen)| RtFields {
                rt_type,
                segs_left,
                hdrlen,
            }),
        })
}

/// What the reference needs of a family's packets.
trait RefPacket {
    fn in_net(r: &Rule, src: bool, p: &Self) -> bool;
    fn in_range(m: &Match, p: &Self) -> bool;
    fn ip6(p: &Self) -> Option<&Ip6Fields>;
    fn base(&self) -> Base;
}

/// The fields every family has.
struct Base {
    proto: u8,
    in_iface: Option<u8>,
    has_ports: bool,
    sport: u16,
    dport: u16,
    icmp: Option<(u8, u8)>,
    ttl: u8,
    tos: u8,
    len: u16,
}

fn base<F: AddrFamily>(p: &PacketView<F>) -> Base {
    Base {
        proto: p.proto,
        in_iface: p.in_iface,
        has_ports: p.has_ports,
        sport: p.sport,
        dport: p.dport,
        icmp: p.icmp,
        ttl: p.ttl,
        tos: p.tos,
        len: p.len,
    }
}

impl RefPacket for PacketView<V6> {
    fn in_net(r: &Rule, src: bool, p: &Self) -> bool {
        let (n, a) = if src {
            (r.src6, p.src)
        } else {
            (r.dst6, p.dst)
        };
        n.is_none_or(|n| n.value.contains(Ipv6Addr::from(a)) != n.invert)
    }
    fn in_range(m: &Match, p: &Self) -> bool {
        let Match::IpRange6(r) = m else { return true };
        let ok = |r: Option<Inv<AddrRange<Ipv6Addr>>>, a: u128| {
            r.is_none_or(|r| r.value.contains(Ipv6Addr::from(a)) != r.invert)
        };
        ok(r.src, p.src) && ok(r.dst, p.dst)
    }
    fn ip6(p: &Self) -> Option<&Ip6Fields> {
        Some(&p.extra)
    }
    fn base(&self) -> Base {
        base(self)
    }
}

impl RefPacket for PacketView<V4> {
    fn in_net(r: &Rule, src: bool, p: &Self) -> bool {
        let (n, a) = if src { (r.src, p.src) } else { (r.dst, p.dst) };
        n.is_none_or(|n| n.value.contains(Ipv4Addr::from(a)) != n.invert)
    }
    fn in_range(_: &Match, _: &Self) -> bool {
        true
    }
    fn ip6(_: &Self) -> Option<&Ip6Fields> {
        None
    }
    fn base(&self) -> Base {
        base(self)
    }
}

/// One rule, as the kernel's match functions read it.
fn ref_matches<P: RefPacket>(r: &Rule, p: &P) -> bool {
    let b = p.base();
    let iface_ok = r.in_iface.as_ref().is_none_or(|m| {
        b.in_iface
            .is_some_and(|i| m.value.matches(IFACES[usize::from(i)]) != m.invert)
    });
    if !(P::in_net(r, true, p)
        && P::in_net(r, false, p)
        && iface_ok
        && r.protocol
            .is_none_or(|pr| (pr.value == b.proto) != pr.invert))
    {
        return false;
    }
    r.matches.iter().all(|m| match m {
        Match::Udp(u) => {
            let ok = |t: Option<Inv<PortRange>>, v: u16| {
                t.is_none_or(|t| (t.value.lo <= v && v <= t.value.hi) != t.invert)
            };
            b.has_ports && ok(u.sport, b.sport) && ok(u.dport, b.dport)
        }
        Match::Icmp(i) => b.icmp.is_some_and(|(t, c)| {
            let hit = match i.value {
                IcmpType::Any => true,
                IcmpType::Type {
                    ty,
                    code_lo,
                    code_hi,
                } => t == ty && code_lo <= c && c <= code_hi,
            };
            hit != i.invert
        }),
        Match::Ttl(t) => match *t {
            TtlMatch::Eq(v) => b.ttl == v,
            TtlMatch::Ne(v) => b.ttl != v,
            TtlMatch::Lt(v) => b.ttl < v,
            TtlMatch::Gt(v) => b.ttl > v,
        },
        Match::Dscp(d) => (b.tos >> 2 == d.value) != d.invert,
        Match::Length(l) => (l.value.lo <= b.len && b.len <= l.value.hi) != l.invert,
        Match::IpRange6(_) => P::in_range(m, p),
        // ipv6header_mt6's end (invflags 0xff when inverted).
        Match::Ipv6Header(h) => P::ip6(p).is_some_and(|x| {
            let inv = if h.invert { 0xff } else { 0 };
            if h.soft {
                (x.headers ^ h.headers ^ inv) & h.headers == 0
            } else if h.invert {
                x.headers != h.headers
            } else {
                x.headers == h.headers
            }
        }),
        // frag_mt6.
        Match::Frag(f) => P::ip6(p).and_then(|x| x.frag).is_some_and(|fh| {
            let off = fh.frag_off;
            ((f.ids.lo <= fh.id && fh.id <= f.ids.hi) ^ f.ids.invert)
                && !(f.res && (fh.reserved != 0 || off & 0x6 != 0))
                && !(f.first && off & !0x7 != 0)
                && !(f.more && off & 0x1 == 0)
                && !(f.last && off & 0x1 != 0)
        }),
        // rt_mt6.
        Match::Rt(m) => P::ip6(p).and_then(|x| x.rt).is_some_and(|rh| {
            let len = (u32::from(rh.hdrlen) + 1) << 3;
            let sl = u32::from(rh.segs_left);
            ((m.segsleft.lo <= sl && sl <= m.segsleft.hi) ^ m.segsleft.invert)
                && m.len.is_none_or(|l| (l.value == len) ^ l.invert)
                && m.rt_type.is_none_or(|t| (t.value == rh.rt_type) ^ t.invert)
        }),
        other => panic!("the reference does not know {other:?}"),
    })
}

/// How a traversal ended, family aside.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Accept,
    Drop,
    PolicyDrop,
    Reject,
}

/// The reference traversal of FORWARD: (how it ended, rules matched as
/// (chain, rule) in order).
fn reference<P: RefPacket>(set: &RuleSet, p: &P) -> (End, Vec<(u16, usize)>) {
    let t = &set.tables[0];
    let fwd = t
        .chains
        .iter()
        .position(|c| c.name == "FORWARD")
        .expect("FORWARD");
    let user = t.chains.iter().position(|c| c.name == USER).expect("U");
    let policy = || match t.chains[fwd].policy {
        Some(Policy::Drop) => End::PolicyDrop,
        _ => End::Accept,
    };
    let mut seen = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let (mut chain, mut i) = (fwd, 0);
    loop {
        let Some(r) = t.chains[chain].rules.get(i) else {
            match stack.pop() {
                Some((c, j)) if chain != fwd => (chain, i) = (c, j),
                _ => return (policy(), seen),
            }
            continue;
        };
        i += 1;
        if !ref_matches(r, p) {
            continue;
        }
        seen.push((chain as u16, i - 1));
        match &r.target {
            Target::None => {}
            Target::Accept => return (End::Accept, seen),
            Target::Drop => return (End::Drop, seen),
            Target::Reject(_) => return (End::Reject, seen),
            Target::Return => match stack.pop() {
                Some((c, j)) => (chain, i) = (c, j),
                None => return (policy(), seen),
            },
            Target::Jump(_) => {
                stack.push((chain, i));
                (chain, i) = (user, 0);
            }
            other => panic!("the reference does not know {other:?}"),
        }
    }
}

#[derive(Default)]
struct Seen(Vec<(u16, usize)>);

impl<F: AddrFamily> EvalObserver<F> for Seen {
    fn rule(&mut self, chain: u16, rule: usize) {
        self.0.push((chain, rule));
    }
}

fn end<A>(v: Verdict<A>) -> End {
    match v {
        Verdict::Accept => End::Accept,
        Verdict::Drop => End::Drop,
        Verdict::PolicyDrop => End::PolicyDrop,
        Verdict::Reject(_) => End::Reject,
        Verdict::Nat(_) => panic!("no NAT targets here"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn compiled_ipv6_agrees_with_the_reference(
        set in rule_set(true),
        packets in proptest::collection::vec(
            packet::<V6>((addr6(), addr6()), ip6_fields()), 1..16),
    ) {
        let c = compile6(&set, &IFACES).expect("compiles");
        let mut st = EvalState::new(&c);
        for mut p in packets {
            let want = reference(&set, &p);
            let mut seen = Seen::default();
            let got = c.eval_observed(Table::Filter, Hook::Forward, &mut p, &mut st, 0, &mut seen);
            prop_assert_eq!((end(got), seen.0), want, "packet {:?}", p);
        }
    }

    #[test]
    fn compiled_ipv4_agrees_with_the_reference(
        set in rule_set(false),
        packets in proptest::collection::vec(packet::<V4>((addr4(), addr4()), Just(())), 1..16),
    ) {
        let c = compile(&set, &IFACES).expect("compiles");
        let mut st = EvalState::new(&c);
        for mut p in packets {
            let want = reference(&set, &p);
            let mut seen = Seen::default();
            let got = c.eval_observed(Table::Filter, Hook::Forward, &mut p, &mut st, 0, &mut seen);
            prop_assert_eq!((end(got), seen.0), want, "packet {:?}", p);
        }
    }
}

/// The IPv6 compile refuses the other family's rules (the parser never
/// makes them; a hand-made rule set could).
#[test]
fn a_rule_of_the_other_family_does_not_compile() {
    let mut t = TableRules::empty(Table::Nat);
    t.chains[3].rules.push(Rule::new(Target::Snat(NatRange {
        addrs: Some(AddrRange {
            lo: Ipv4Addr::new(192, 0, 2, 1),
            hi: Ipv4Addr::new(192, 0, 2, 1),
        }),
        ports: None,
    })));
    let set = RuleSet { tables: vec![t] };
    assert!(compile6(&set, &IFACES).is_err());
    assert!(compile(&set, &IFACES).is_ok());
}

/// A NAT66 verdict carries IPv6 addresses.
#[test]
fn nat66_verdicts() {
    let to = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x80);
    let mut t = TableRules::empty(Table::Nat);
    t.chains[0].rules.push(Rule::new(Target::Dnat6(NatRange {
        addrs: Some(AddrRange { lo: to, hi: to }),
        ports: Some(PortRange::single(80)),
    })));
    let c = compile6(&RuleSet { tables: vec![t] }, &IFACES).expect("compiles");
    let mut st = EvalState::new(&c);
    let mut p = PacketView::<V6>::default();
    match c.eval(Table::Nat, Hook::Prerouting, &mut p, &mut st, 0) {
        Verdict::Nat(xdpgw_dataplane::classify::NatAction::Dnat(r)) => {
            assert_eq!(r.addrs.map(|a| a.lo), Some(to));
            assert_eq!(r.ports, Some(PortRange::single(80)));
        }
        v => panic!("expected DNAT, got {v:?}"),
    }
}
