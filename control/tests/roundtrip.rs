//! Property: printing a rule set in iptables-save form and parsing it back
//! gives the same rule set (with and without counters).

use std::net::Ipv4Addr;

use proptest::prelude::*;
use xdpgw_control::{load_rules_str, parse::value, save};
use xdpgw_dataplane::rule::*;

fn inv<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Inv<T>> {
    (s, any::<bool>()).prop_map(|(value, invert)| Inv { value, invert })
}

fn net() -> impl Strategy<Value = Ipv4Net> {
    prop_oneof![
        (any::<u32>(), 1u8..=32).prop_map(|(a, p)| Ipv4Net::with_prefix(Ipv4Addr::from(a), p)
            .unwrap_or_else(|| Ipv4Net::new(Ipv4Addr::from(a), Ipv4Addr::BROADCAST))),
        (any::<u32>(), 1u32..)
            .prop_map(|(a, m)| Ipv4Net::new(Ipv4Addr::from(a), Ipv4Addr::from(m))),
    ]
}

fn iface() -> impl Strategy<Value = IfaceMatch> {
    "[a-z][a-z0-9]{0,13}\\+?".prop_map(|name| IfaceMatch { name })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange {
        lo: a.min(b),
        hi: a.max(b),
    })
}

/// A port match as iptables-save can print it (the full range only inverted).
fn port_opt() -> impl Strategy<Value = Option<Inv<PortRange>>> {
    proptest::option::of(inv(port_range()))
        .prop_filter("full range prints as nothing", |p| {
            !matches!(p, Some(Inv { value: PortRange::ALL, invert: false }))
        })
        .prop_filter("'! 0:hi' is stored as 'hi+1:65535'", |p| {
            !matches!(p, Some(Inv { value: PortRange { lo: 0, hi }, invert: true }) if *hi > 0 && *hi < 65535)
        })
}

fn ports() -> impl Strategy<Value = PortMatch> {
    (port_opt(), port_opt()).prop_map(|(sport, dport)| PortMatch { sport, dport })
}

fn states(max_bit: u8) -> impl Strategy<Value = Inv<CtStates>> {
    inv((1u8..(1 << max_bit)).prop_map(CtStates))
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).expect("regex")
}

fn limit() -> impl Strategy<Value = Limit> {
    (
        1u32..1000,
        prop_oneof![Just("sec"), Just("min"), Just("hour"), Just("day")],
        0u32..=10_000,
    )
        .prop_filter_map("rate too fast", |(n, unit, burst)| {
            // The printed rate is rounded (as iptables prints it): start from a
            // rate that prints as itself.
            value::limit_rate(&format!("{n}/{unit}"))
                .and_then(|avg| value::limit_rate(&value::limit_rate_text(avg)))
                .ok()
                .map(|avg| Limit { avg, burst })
        })
}

/// Matches that make sense for protocol `proto`.
fn matches(proto: Option<u8>) -> impl Strategy<Value = Vec<Match>> {
    let common = prop_oneof![
        (
            states(7),
            proptest::option::of(inv(0u8..=255)),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(s, proto, dir_reply)| Match::Conntrack(CtMatch {
                state: Some(s),
                proto,
                dir_reply,
                ..CtMatch::default()
            })),
        states(5).prop_map(Match::State),
        text(60).prop_map(Match::Comment),
        inv(0u8..64).prop_map(Match::Dscp),
        inv((any::<u32>(), any::<u32>()).prop_map(|(value, mask)| MarkMatch { value, mask }))
            .prop_map(Match::Mark),
        limit().prop_map(Match::Limit),
        (
            proptest::option::of(inv((any::<u32>(), any::<u32>()))),
            proptest::option::of(inv((any::<u32>(), any::<u32>())))
        )
            .prop_filter("iprange needs a range", |(s, d)| s.is_some() || d.is_some())
            .prop_map(|(s, d)| {
                let r = |i: Inv<(u32, u32)>| Inv {
                    value: AddrRange {
                        lo: Ipv4Addr::from(i.value.0.min(i.value.1)),
                        hi: Ipv4Addr::from(i.value.0.max(i.value.1)),
                    },
                    invert: i.invert,
                };
                Match::IpRange(IpRange {
                    src: s.map(r),
                    dst: d.map(r),
                })
            }),
    ];
    let proto_match: BoxedStrategy<Vec<Match>> = match proto {
        Some(6) => prop_oneof![
            Just(vec![]),
            (
                ports(),
                proptest::option::of(inv(
                    (0u8..64, 0u8..64).prop_map(|(m, c)| TcpFlags { mask: m, comp: c })
                ))
            )
                .prop_map(|(ports, flags)| vec![Match::Tcp(TcpMatch { ports, flags })]),
            multiport().prop_map(|m| vec![Match::Multiport(m)]),
        ]
        .boxed(),
        Some(17) => prop_oneof![
            Just(vec![]),
            ports().prop_map(|p| vec![Match::Udp(p)]),
            multiport().prop_map(|m| vec![Match::Multiport(m)]),
        ]
        .boxed(),
        Some(1) => prop_oneof![
            Just(vec![]),
            inv(prop_oneof![
                Just(IcmpType::Any),
                (0u8..255, any::<u8>()).prop_map(|(ty, c)| IcmpType::Type {
                    ty,
                    code_lo: c,
                    code_hi: c
                }),
                (0u8..255).prop_map(|ty| IcmpType::Type {
                    ty,
                    code_lo: 0,
                    code_hi: 255
                }),
            ])
            .prop_map(|i| vec![Match::Icmp(i)]),
        ]
        .boxed(),
        _ => Just(vec![]).boxed(),
    };
    (proto_match, proptest::collection::vec(common, 0..3)).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

fn multiport() -> impl Strategy<Value = Multiport> {
    (
        prop_oneof![
            Just(MultiportDir::Source),
            Just(MultiportDir::Destination),
            Just(MultiportDir::Either)
        ],
        proptest::collection::vec(port_range(), 1..7),
        any::<bool>(),
    )
        .prop_map(|(dir, ports, invert)| Multiport { dir, ports, invert })
}

/// Targets valid in `table` on a chain reached from `hook`.
fn target(table: Table, hook: Hook, proto: Option<u8>) -> BoxedStrategy<Target> {
    let l4 = matches!(proto, Some(6 | 17));
    let port_nat = (
        proptest::option::of(port_range().prop_map(|p| PortRange {
            lo: p.lo.max(1),
            hi: p.hi.max(1),
        })),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(ports, random, random_fully)| PortNat {
            ports: if l4 { ports } else { None },
            random,
            random_fully,
        })
        .boxed();
    let nat_range = (
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::option::of(port_range()),
    )
        .prop_filter("a range", |(a, p)| a.is_some() || p.is_some())
        .prop_filter_map("ports need tcp/udp", move |(a, p)| {
            if p.is_some() && !l4 {
                return None;
            }
            Some(NatRange {
                addrs: a.map(|(x, y)| AddrRange {
                    lo: Ipv4Addr::from(x.min(y)),
                    hi: Ipv4Addr::from(x.max(y)),
                }),
                ports: p,
            })
        })
        .boxed();
    let mut options: Vec<BoxedStrategy<Target>> = vec![
        Just(Target::Accept).boxed(),
        // iptables refuses DROP in the nat table.
        Just(if table == Table::Nat {
            Target::Accept
        } else {
            Target::Drop
        })
        .boxed(),
        Just(Target::Return).boxed(),
        Just(Target::None).boxed(),
        (0u8..8, "[a-zA-Z0-9 :_-]{0,29}")
            .prop_map(|(level, prefix)| Target::Log(Log { level, prefix }))
            .boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(value, mask)| Target::Mark { value, mask })
            .boxed(),
    ];
    match table {
        Table::Filter if hook != Hook::Prerouting && hook != Hook::Postrouting => {
            let mut names: Vec<RejectWith> = RejectWith::NAMES.iter().map(|n| n.0).collect();
            if proto != Some(6) {
                names.retain(|n| *n != RejectWith::TcpReset);
            }
            options.push(
                proptest::sample::select(names)
                    .prop_map(Target::Reject)
                    .boxed(),
            );
        }
        Table::Nat => match hook {
            Hook::Postrouting => {
                options.push(port_nat.clone().prop_map(Target::Masquerade).boxed());
                options.push(nat_range.clone().prop_map(Target::Snat).boxed());
            }
            Hook::Input => options.push(nat_range.prop_map(Target::Snat).boxed()),
            Hook::Prerouting | Hook::Output => {
                options.push(
                    port_nat
                        .prop_map(|p| {
                            Target::Redirect(PortNat {
                                random_fully: false,
                                ..p
                            })
                        })
                        .boxed(),
                );
                options.push(nat_range.prop_map(Target::Dnat).boxed());
            }
            Hook::Forward => {}
        },
        Table::Mangle => options.push((0u8..64).prop_map(Target::Dscp).boxed()),
        Table::Raw => {
            options.push(Just(Target::Notrack).boxed());
            options.push(Just(Target::CtNotrack).boxed());
        }
        Table::Filter => {}
    }
    proptest::strategy::Union::new(options).boxed()
}

fn rule(table: Table, hook: Hook) -> impl Strategy<Value = Rule> {
    (
        proptest::option::of(prop_oneof![
            Just(6u8),
            Just(17),
            Just(1),
            Just(47),
            Just(132)
        ]),
        any::<bool>(),
    )
        .prop_flat_map(move |(proto, proto_inv)| {
            // Protocol matches need the protocol itself, not its negation.
            let proto_for_matches = if proto_inv { None } else { proto };
            (
                proptest::option::of(inv(net())),
                proptest::option::of(inv(net())),
                proptest::option::of(inv(iface())),
                proptest::option::of(inv(iface())),
                matches(proto_for_matches),
                target(table, hook, proto_for_matches),
                Just(proto.map(|p| Inv {
                    value: p,
                    invert: proto_inv,
                })),
                (any::<u32>(), any::<u32>()),
            )
        })
        .prop_map(
            move |(src, dst, i, o, matches, target, protocol, (p, b))| Rule {
                src,
                dst,
                src6: None,
                dst6: None,
                in_iface: if matches!(hook, Hook::Output | Hook::Postrouting) {
                    None
                } else {
                    i
                },
                out_iface: if matches!(hook, Hook::Input | Hook::Prerouting) {
                    None
                } else {
                    o
                },
                protocol,
                matches,
                target,
                counters: Counters {
                    packets: u64::from(p),
                    bytes: u64::from(b),
                },
            },
        )
}

fn table_rules(table: Table) -> impl Strategy<Value = TableRules> {
    let chains: Vec<BoxedStrategy<Chain>> = table
        .hooks()
        .iter()
        .map(|&h| {
            (
                proptest::collection::vec(rule(table, h), 0..4),
                any::<bool>(),
                (any::<u32>(), any::<u32>()),
            )
                .prop_map(move |(rules, drop, (p, b))| Chain {
                    name: h.name().to_string(),
                    hook: Some(h),
                    policy: Some(if drop { Policy::Drop } else { Policy::Accept }),
                    counters: Counters {
                        packets: u64::from(p),
                        bytes: u64::from(b),
                    },
                    rules,
                })
                .boxed()
        })
        .collect();
    chains.prop_map(move |chains| TableRules { table, chains })
}

fn rule_set() -> impl Strategy<Value = RuleSet> {
    // In the order iptables-save prints them.
    let order = vec![Table::Mangle, Table::Raw, Table::Filter, Table::Nat];
    proptest::sample::subsequence(order, 1..=4)
        .prop_flat_map(|tables| tables.into_iter().map(table_rules).collect::<Vec<_>>())
        .prop_map(|tables| RuleSet { tables })
}

/// Forgets what iptables-save without -c does not print.
fn without_counters(mut set: RuleSet) -> RuleSet {
    for t in &mut set.tables {
        for c in &mut t.chains {
            c.counters = Counters::default();
            for r in &mut c.rules {
                r.counters = Counters::default();
            }
        }
    }
    set
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parse_of_save_is_identity(set in rule_set()) {
        let text = save::render_with(&set, true);
        let back = load_rules_str("generated", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &set, "{}", text);

        let text = save::render(&set);
        let back = load_rules_str("generated", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, without_counters(set), "{}", text);
    }
}

fn net6() -> impl Strategy<Value = Ipv6Net> {
    prop_oneof![
        (any::<u128>(), 1u8..=128).prop_map(|(a, p)| {
            Ipv6Net::with_prefix(std::net::Ipv6Addr::from(a), p).expect("prefix 1-128")
        }),
        (any::<u128>(), 1u128..).prop_map(|(a, m)| Ipv6Net::new(
            std::net::Ipv6Addr::from(a),
            std::net::Ipv6Addr::from(m)
        )),
    ]
}

fn u32_range() -> impl Strategy<Value = U32Range> {
    (any::<u32>(), any::<u32>(), any::<bool>())
        .prop_map(|(lo, hi, invert)| U32Range { lo, hi, invert })
        .prop_filter("the whole range prints as nothing", |r| {
            !(r.lo == 0 && r.hi == u32::MAX)
        })
}

/// The IPv6-only matches, as ip6tables-save can print them.
fn match6() -> impl Strategy<Value = Match> {
    prop_oneof![
        (1u8.., any::<bool>(), any::<bool>()).prop_map(|(headers, invert, soft)| {
            Match::Ipv6Header(Ipv6HeaderMatch {
                headers,
                invert,
                soft,
            })
        }),
        (
            u32_range(),
            proptest::option::of(inv(any::<u32>())),
            any::<[bool; 4]>()
        )
            .prop_map(|(ids, len, f)| Match::Frag(FragMatch {
                ids,
                len,
                res: f[0],
                first: f[1],
                more: f[2],
                last: f[3],
            })),
        (
            proptest::option::of(inv(any::<u8>())),
            u32_range(),
            proptest::option::of(inv(any::<u32>()))
        )
            .prop_map(|(rt_type, segsleft, len)| Match::Rt(RtMatch {
                rt_type,
                segsleft,
                len
            })),
        prop_oneof![
            any::<u8>().prop_map(TtlMatch::Eq),
            any::<u8>().prop_map(TtlMatch::Ne),
            any::<u8>().prop_map(TtlMatch::Lt),
            any::<u8>().prop_map(TtlMatch::Gt),
        ]
        .prop_map(Match::Ttl),
        (any::<u128>(), any::<u128>(), any::<bool>()).prop_map(|(a, b, invert)| {
            Match::IpRange6(IpRange {
                src: Some(Inv {
                    value: AddrRange {
                        lo: std::net::Ipv6Addr::from(a),
                        hi: std::net::Ipv6Addr::from(b),
                    },
                    invert,
                }),
                dst: None,
            })
        }),
    ]
}

fn target6() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Accept),
        Just(Target::Drop),
        proptest::sample::select(RejectWith::NAMES6.to_vec())
            .prop_filter("tcp-reset needs -p tcp", |(k, _, _)| *k
                != RejectWith::TcpReset)
            .prop_map(|(k, _, _)| Target::Reject(k)),
    ]
}

/// IPv6 filter INPUT rules: addresses, the ICMPv6 match, the IPv6 matches.
fn rule_set6() -> impl Strategy<Value = RuleSet> {
    let rule = (
        proptest::option::of(inv(net6())),
        proptest::option::of(inv(net6())),
        proptest::option::of(inv(prop_oneof![
            Just(IcmpType::Any),
            (any::<u8>(), any::<u8>()).prop_map(|(ty, c)| IcmpType::Type {
                ty,
                code_lo: c,
                code_hi: c
            }),
            any::<u8>().prop_map(|ty| IcmpType::Type {
                ty,
                code_lo: 0,
                code_hi: 0xff
            }),
        ])),
        proptest::collection::vec(match6(), 0..3),
        target6(),
    )
        .prop_map(|(src6, dst6, icmp, matches, target)| {
            let mut r = Rule::new(target);
            r.src6 = src6;
            r.dst6 = dst6;
            if let Some(i) = icmp.filter(|i| i.value != IcmpType::Any) {
                r.protocol = Some(Inv::plain(58));
                r.matches.push(Match::Icmp(i));
            }
            r.matches.extend(matches);
            r
        });
    proptest::collection::vec(rule, 0..6).prop_map(|rules| {
        let mut t = TableRules::empty(Table::Filter);
        t.chains[0].rules = rules;
        RuleSet { tables: vec![t] }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parse_of_save6_is_identity(set in rule_set6()) {
        let text = save::render_family(&set, Family::Ipv6, false);
        let back = xdpgw_control::load_rules6_str("generated", &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, set, "{}", text);
    }
}
