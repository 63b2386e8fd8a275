//! Property: the indexed walk ([`CompiledRuleSet::eval_observed`] with
//! every chain indexed) does what the linear walk
//! ([`CompiledRuleSet::eval_linear_observed`], itself checked against a
//! restatement of the kernel's matches in `classify_reference`) does, for
//! random rule sets mixing every match the index reads and the ones it
//! leaves to the rules (inverted or not), user chains reached by jumps and
//! gotos from several places, RETURN, policies, non-terminal targets that
//! change what later rules read, and matches with state (`limit` buckets,
//! `recent` tables): the same verdict, the same steps (rules matched,
//! counters bumped, chain ends, policy), the same packet changes and LOG
//! hits, and after all the packets the same counters and the same state
//! in the buckets and tables (what later packets then see).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use xdpgw_dataplane::classify::{
    compile_family, compile_for_gateway, AddrFamily, CompiledRuleSet, EvalObserver, EvalState,
    PacketView, Verdict, V4, V6,
};
use xdpgw_dataplane::ipset::SetTable;
use xdpgw_dataplane::rule::*;
use xdpgw_dataplane::stateful::MatchTables;

const IFACES: [&str; 4] = ["lan0", "lan1", "wan0", "wan1"];
const USER: [&str; 3] = ["U0", "U1", "U2"];
/// Addresses are drawn from `BASE4 + 0..32` (and their IPv6 images), so
/// that rules' prefixes and packets meet at the edges of ranges.
const BASE4: u32 = 0x0a00_0000;
const BASE6: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0000;
/// Ports are drawn from `0..10` and the ends of the port space.
const PORTS: [u16; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65534, 65535];

fn inv<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Inv<T>> {
    (s, prop::bool::weighted(0.25)).prop_map(|(value, invert)| Inv { value, invert })
}

fn port() -> impl Strategy<Value = u16> {
    prop::sample::select(&PORTS[..])
}

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        port().prop_map(PortRange::single),
        (port(), port()).prop_map(|(a, b)| PortRange {
            lo: a.min(b),
            hi: a.max(b)
        }),
        // Reversed: matches nothing (the parser refuses it; the compiled
        // tests must still agree).
        (port(), port()).prop_map(|(a, b)| PortRange { lo: a, hi: b }),
    ]
}

fn ports() -> impl Strategy<Value = PortMatch> {
    (
        proptest::option::of(inv(port_range())),
        proptest::option::of(inv(port_range())),
    )
        .prop_map(|(sport, dport)| PortMatch { sport, dport })
}

fn addr4() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![8 => (0u32..32).prop_map(|l| BASE4 | l), 1 => any::<u32>()]
}

/// A prefix, or now and then a mask that is not one.
fn net4() -> impl Strategy<Value = Ipv4Net> {
    prop_oneof![
        6 => (addr4(), prop::sample::select(&[0u8, 8, 24, 27, 28, 29, 30, 31, 32][..])).prop_map(|(a, p)| {
            Ipv4Net::with_prefix(Ipv4Addr::from(a), p).expect("prefix 0-32")
        }),
        1 => (addr4(), any::<u32>()).prop_map(|(a, m)| Ipv4Net::new(Ipv4Addr::from(a), Ipv4Addr::from(m))),
    ]
}

fn net6() -> impl Strategy<Value = Ipv6Net> {
    prop_oneof![
        6 => (0u128..32, prop::sample::select(&[0u8, 32, 123, 124, 125, 126, 127, 128][..])).prop_map(|(l, p)| {
            Ipv6Net::with_prefix(Ipv6Addr::from(BASE6 | l), p).expect("prefix 0-128")
        }),
        1 => (0u128..32, any::<u128>()).prop_map(|(l, m)| Ipv6Net::new(Ipv6Addr::from(BASE6 | l), Ipv6Addr::from(m))),
    ]
}

fn ct_states() -> impl Strategy<Value = CtStates> {
    (1u8..0x80).prop_map(CtStates)
}

/// The matches, IPv4's own for `!v6`.
fn a_match(v6: bool) -> BoxedStrategy<Match> {
    let common = prop_oneof![
        ports().prop_map(Match::Udp),
        (
            ports(),
            proptest::option::of(inv(
                (0u8..4, 0u8..4).prop_map(|(mask, comp)| TcpFlags { mask, comp })
            ))
        )
            .prop_map(|(ports, flags)| Match::Tcp(TcpMatch { ports, flags })),
        inv(prop_oneof![
            Just(IcmpType::Any),
            (0u8..3, 0u8..2, 0u8..2).prop_map(|(ty, a, b)| IcmpType::Type {
                ty,
                code_lo: a.min(b),
                code_hi: a.max(b)
            }),
        ])
        .prop_map(Match::Icmp),
        (
            prop::sample::select(
                &[
                    MultiportDir::Source,
                    MultiportDir::Destination,
                    MultiportDir::Either
                ][..]
            ),
            proptest::collection::vec(port_range(), 1..3),
            any::<bool>()
        )
            .prop_map(|(dir, ports, invert)| Match::Multiport(Multiport {
                dir,
                ports,
                invert
            })),
        inv(ct_states()).prop_map(Match::State),
        (
            proptest::option::of(inv(ct_states())),
            proptest::option::of(inv(0u16..4))
        )
            .prop_map(|(state, status)| Match::Conntrack(CtMatch {
                state,
                status,
                ..CtMatch::default()
            })),
        inv(0u8..3).prop_map(Match::Dscp),
        inv((0u32..4, 0u32..4).prop_map(|(value, mask)| MarkMatch {
            value: value & mask,
            mask
        }))
        .prop_map(Match::Mark),
        inv((0u32..4, 0u32..4).prop_map(|(value, mask)| MarkMatch {
            value: value & mask,
            mask
        }))
        .prop_map(Match::Connmark),
        // Slow buckets, so that they run dry within a case.
        (1u32..3, 1u32..3).prop_map(|(s, burst)| Match::Limit(Limit {
            avg: s * Limit::SCALE,
            burst
        })),
        inv((0u16..6, 0u16..6).prop_map(|(lo, hi)| LenRange {
            lo: lo.min(hi) * 20,
            hi: lo.max(hi) * 20
        }))
        .prop_map(Match::Length),
        (0u8..4).prop_map(|v| Match::Ttl(TtlMatch::Gt(v))),
        inv((0u8..4, 0u8..4).prop_map(|(value, mask)| TosBits {
            value: value & mask,
            mask
        }))
        .prop_map(Match::Tos),
        Just(Match::Comment("c".into())),
    ];
    if v6 {
        return common.boxed();
    }
    prop_oneof![
        4 => common,
        1 => (
            prop::sample::select(&[RecentCmd::Set, RecentCmd::Rcheck, RecentCmd::Update, RecentCmd::Remove][..]),
            any::<bool>(),
            0u32..3,
            any::<bool>(),
        )
            .prop_map(|(cmd, rdest, hitcount, invert)| Match::Recent(RecentMatch {
                name: if rdest { "D".into() } else { "S".into() },
                cmd,
                seconds: 0,
                reap: false,
                hitcount,
                rttl: false,
                rdest,
                mask: Ipv4Addr::BROADCAST,
                invert,
            })),
        1 => (proptest::option::of(inv((0u32..32, 0u32..32))), any::<bool>()).prop_map(|(r, src)| {
            let r = r.map(|r| {
                Inv::new(
                    AddrRange {
                        lo: Ipv4Addr::from(BASE4 | r.value.0.min(r.value.1)),
                        hi: Ipv4Addr::from(BASE4 | r.value.0.max(r.value.1)),
                    },
                    r.invert,
                )
            });
            Match::IpRange(if src { IpRange { src: r, dst: None } } else { IpRange { src: None, dst: r } })
        }),
    ]
    .boxed()
}

/// Targets of a rule of chain `from` (`None`: the built-in chain): jumps
/// and gotos only to user chains after it (no loops).
fn target(from: Option<usize>) -> BoxedStrategy<Target> {
    let first = from.map_or(0, |c| c + 1);
    let mut t = vec![
        (4, Just(Target::None).boxed()),
        (2, Just(Target::Accept).boxed()),
        (1, Just(Target::Drop).boxed()),
        (2, Just(Target::Return).boxed()),
        (
            1,
            Just(Target::Reject(RejectWith::IcmpPortUnreachable)).boxed(),
        ),
        (
            1,
            Just(Target::Log(Log {
                level: 4,
                prefix: "p".into(),
            }))
            .boxed(),
        ),
        (
            1,
            (0u32..4)
                .prop_map(|value| Target::Mark {
                    value,
                    mask: u32::MAX,
                })
                .boxed(),
        ),
        (1, (0u8..3).prop_map(Target::Dscp).boxed()),
    ];
    if first < USER.len() {
        t.push((
            3,
            (first..USER.len())
                .prop_map(|c| Target::Jump(USER[c].into()))
                .boxed(),
        ));
        t.push((
            1,
            (first..USER.len())
                .prop_map(|c| Target::Goto(USER[c].into()))
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(t).boxed()
}

fn iface() -> impl Strategy<Value = Inv<IfaceMatch>> {
    inv(
        prop::sample::select(&["lan+", "lan0", "wan1", "eth0", "wan+"][..])
            .prop_map(|n| IfaceMatch { name: n.into() }),
    )
}

/// The field most rules of a rule set test (so that the walk takes its
/// lists: each field's are tested), or none.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Mixed,
    Src,
    Dst,
    Proto,
    InIface,
    OutIface,
    Sport,
    Dport,
    CtState,
}

const SHAPES: [Shape; 9] = [
    Shape::Mixed,
    Shape::Src,
    Shape::Dst,
    Shape::Proto,
    Shape::InIface,
    Shape::OutIface,
    Shape::Sport,
    Shape::Dport,
    Shape::CtState,
];

/// What a rule of shape `shape` tests first (after its header fields).
fn shaped_match(shape: Shape) -> BoxedStrategy<Option<Match>> {
    match shape {
        Shape::Sport => (inv(port_range()), any::<bool>())
            .prop_map(|(p, udp)| {
                let ports = PortMatch {
                    sport: Some(p),
                    dport: None,
                };
                Some(if udp {
                    Match::Udp(ports)
                } else {
                    Match::Tcp(TcpMatch { ports, flags: None })
                })
            })
            .boxed(),
        Shape::Dport => inv(port_range())
            .prop_map(|p| {
                Some(Match::Udp(PortMatch {
                    sport: None,
                    dport: Some(p),
                }))
            })
            .boxed(),
        Shape::CtState => inv(ct_states()).prop_map(|s| Some(Match::State(s))).boxed(),
        _ => Just(None).boxed(),
    }
}

fn rule(v6: bool, from: Option<usize>, shape: Shape) -> impl Strategy<Value = Rule> {
    (
        (
            proptest::option::of(inv(net4())),
            proptest::option::of(inv(net4())),
            proptest::option::of(inv(net6())),
            proptest::option::of(inv(net6())),
        ),
        proptest::option::of(iface()),
        proptest::option::of(iface()),
        proptest::option::of(inv(prop::sample::select(&[6u8, 17, 1][..]))),
        (
            proptest::collection::vec(a_match(v6), 0..3),
            shaped_match(shape),
        ),
        target(from),
        // Now and then a rule of another shape.
        prop::bool::weighted(0.9),
        (
            inv(net4()),
            inv(net6()),
            iface(),
            inv(prop::sample::select(&[6u8, 17, 1][..])),
        ),
    )
        .prop_map(
            move |(
                (s4, d4, s6, d6),
                in_iface,
                out_iface,
                protocol,
                (mut matches, first),
                target,
                shaped,
                (n4, n6, i, pr),
            )| {
                let mut r = Rule::new(target);
                if v6 {
                    (r.src6, r.dst6) = (s6, d6);
                } else {
                    (r.src, r.dst) = (s4, d4);
                }
                r.in_iface = in_iface;
                r.out_iface = out_iface;
                r.protocol = protocol;
                if shaped {
                    match shape {
                        Shape::Src if v6 => r.src6 = Some(n6),
                        Shape::Src => r.src = Some(n4),
                        Shape::Dst if v6 => r.dst6 = Some(n6),
                        Shape::Dst => r.dst = Some(n4),
                        Shape::Proto => r.protocol = Some(pr),
                        Shape::InIface => r.in_iface = Some(i),
                        Shape::OutIface => r.out_iface = Some(i),
                        _ => {}
                    }
                    if let Some(m) = first {
                        // Before or after the others (a limit or a recent
                        // table before it is not to be skipped).
                        let at = matches.len() / 2;
                        matches.insert(at, m);
                    }
                }
                r.matches = matches;
                r
            },
        )
}

fn rule_set(v6: bool) -> impl Strategy<Value = RuleSet> {
    prop::sample::select(&SHAPES[..]).prop_flat_map(move |shape| rule_set_of(v6, shape))
}

fn rule_set_of(v6: bool, shape: Shape) -> impl Strategy<Value = RuleSet> {
    (
        proptest::collection::vec(rule(v6, None, shape), 0..48),
        proptest::collection::vec(rule(v6, Some(0), shape), 0..16),
        proptest::collection::vec(rule(v6, Some(1), shape), 0..16),
        proptest::collection::vec(rule(v6, Some(2), shape), 0..16),
        any::<bool>(),
    )
        .prop_map(|(fwd, u0, u1, u2, drop)| {
            let mut t = TableRules::empty(Table::Filter);
            t.chains[1].rules = fwd;
            t.chains[1].policy = Some(if drop { Policy::Drop } else { Policy::Accept });
            for (name, rules) in USER.iter().zip([u0, u1, u2]) {
                t.chains.push(Chain {
                    name: (*name).into(),
                    hook: None,
                    policy: None,
                    counters: Counters::default(),
                    rules,
                });
            }
            RuleSet { tables: vec![t] }
        })
}

/// The conntrack states a packet can have, and now and then others.
fn ct_bits() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => (prop::sample::select(&[0u8, 1, 2, 4, 8, 16][..]), 0u8..4).prop_map(|(s, v)| s | v << 5),
        1 => any::<u8>(),
    ]
}

fn packet<F: AddrFamily>(
    addr: impl Strategy<Value = F::Addr> + Clone,
) -> impl Strategy<Value = PacketView<F>> {
    (
        (addr.clone(), addr),
        prop::sample::select(&[6u8, 17, 1, 58][..]),
        (
            proptest::option::of(0u8..4),
            proptest::option::of(0u8..4),
            ct_bits(),
        ),
        (any::<bool>(), port(), port(), 0u8..4),
        proptest::option::of((0u8..3, 0u8..2)),
        (0u8..4, 0u8..16, 0u16..120, 0u32..4, 0u32..4),
    )
        .prop_map(
            |(
                (src, dst),
                proto,
                (in_iface, out_iface, ct_bits),
                (has_ports, sport, dport, tcp_flags),
                icmp,
                (ttl, tos, len, mark, ctmark),
            )| PacketView {
                src,
                dst,
                proto,
                in_iface,
                out_iface,
                ct_bits,
                has_ports,
                sport,
                dport,
                tcp_flags,
                icmp,
                ttl,
                tos,
                len,
                mark,
                ctmark,
                ..PacketView::default()
            },
        )
}

/// Every step a walk reports.
#[derive(Debug, Default, PartialEq, Eq)]
struct Steps(Vec<(&'static str, u32, usize)>);

impl<F: AddrFamily> EvalObserver<F> for Steps {
    fn counted(&mut self, slot: u32) {
        self.0.push(("counted", slot, 0));
    }
    fn rule(&mut self, chain: u16, rule: usize) {
        self.0.push(("rule", u32::from(chain), rule));
    }
    fn chain_end(&mut self, chain: u16) {
        self.0.push(("end", u32::from(chain), 0));
    }
    fn policy(&mut self, chain: u16, v: Verdict<F::Ip>) {
        let kind = if v == Verdict::PolicyDrop {
            "drop"
        } else {
            "accept"
        };
        self.0.push((kind, u32::from(chain), 0));
    }
}

/// The rule set compiled twice (their buckets and tables apart): every
/// chain indexed, and none.
fn both<F: AddrFamily>(set: &RuleSet) -> [(CompiledRuleSet<F>, MatchTables); 2] {
    [1, usize::MAX].map(|min| {
        let recent = MatchTables::default();
        let mut c =
            compile_family::<F>(set, &IFACES, &SetTable::default(), &recent).expect("compiles");
        c.set_index_min_rules(min);
        (c, recent)
    })
}

fn agree<F: AddrFamily>(set: &RuleSet, packets: Vec<PacketView<F>>) -> Result<(), TestCaseError> {
    let [(ix, ix_recent), (lin, lin_recent)] = both::<F>(set);
    let (mut ist, mut lst) = (EvalState::new(&ix), EvalState::new(&lin));
    let mut now = 0u64;
    for (i, p) in packets.into_iter().enumerate() {
        // A few hundred ms apart: the buckets refill now and then.
        now += 300_000_000 * (i as u64 % 3);
        let (mut a, mut b) = (p, p);
        let (mut sa, mut sb) = (Steps::default(), Steps::default());
        ist.nlogs = 0;
        lst.nlogs = 0;
        let va = ix.eval_observed(Table::Filter, Hook::Forward, &mut a, &mut ist, now, &mut sa);
        let vb =
            lin.eval_linear_observed(Table::Filter, Hook::Forward, &mut b, &mut lst, now, &mut sb);
        prop_assert_eq!(va, vb, "packet {:?}", p);
        prop_assert_eq!(sa, sb, "packet {:?}", p);
        prop_assert_eq!(a, b, "packet {:?}", p);
        prop_assert_eq!(&ist.logs[..ist.nlogs], &lst.logs[..lst.nlogs]);
    }
    prop_assert_eq!(ix.live.totals(), lin.live.totals());
    for name in ["S", "D"] {
        prop_assert_eq!(
            ix_recent.recent.get(name).map(|t| t.addresses()),
            lin_recent.recent.get(name).map(|t| t.addresses())
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_indexed_ipv4_walk_is_the_linear_walk(
        set in rule_set(false),
        packets in proptest::collection::vec(packet::<V4>(addr4()), 1..40),
    ) {
        agree(&set, packets)?;
    }

    #[test]
    fn the_indexed_ipv6_walk_is_the_linear_walk(
        set in rule_set(true),
        packets in proptest::collection::vec(
            packet::<V6>(prop_oneof![8 => (0u128..32).prop_map(|l| BASE6 | l), 1 => any::<u128>()]),
            1..40,
        ),
    ) {
        agree(&set, packets)?;
    }
}

/// Long chains of the shapes the index is for: each rule one field's
/// value or range (a /32, a prefix, a port, a port range), packets at
/// every edge; and an index is built for them.
#[test]
fn long_chains_of_one_field_each() {
    let mut t = TableRules::empty(Table::Filter);
    let mut rules = Vec::new();
    for i in 0..200u32 {
        let mut r = Rule::new(if i % 7 == 0 {
            Target::None
        } else {
            Target::Drop
        });
        match i % 4 {
            0 => r.src = Ipv4Net::with_prefix(Ipv4Addr::from(BASE4 + i * 4), 32).map(Inv::plain),
            1 => r.dst = Ipv4Net::with_prefix(Ipv4Addr::from(BASE4 + i * 4), 30).map(Inv::plain),
            2 => {
                r.protocol = Some(Inv::plain(17));
                r.matches.push(Match::Udp(PortMatch {
                    sport: None,
                    dport: Some(Inv::plain(PortRange {
                        lo: i as u16 * 3,
                        hi: i as u16 * 3 + 2,
                    })),
                }));
            }
            _ => {
                r.protocol = Some(Inv::plain(6));
                r.matches.push(Match::Tcp(TcpMatch {
                    ports: PortMatch {
                        sport: Some(Inv::plain(PortRange::single(i as u16))),
                        dport: None,
                    },
                    flags: None,
                }));
            }
        }
        rules.push(r);
    }
    t.chains[1].rules = rules;
    let set = RuleSet { tables: vec![t] };
    let c = compile_for_gateway(&set, &IFACES, &SetTable::default(), &MatchTables::default())
        .expect("compiles");
    assert!(c.index_bytes() > 0, "a 200-rule chain is indexed");
    let packets = (0..900u32).flat_map(|k| {
        [6u8, 17].map(|proto| PacketView::<V4> {
            src: BASE4 + k,
            dst: BASE4 + (k * 7) % 900,
            proto,
            has_ports: true,
            sport: (k % 250) as u16,
            dport: k as u16,
            in_iface: Some(0),
            out_iface: Some(2),
            len: 60,
            ..PacketView::default()
        })
    });
    agree(&set, packets.collect()).expect("agree");
}
