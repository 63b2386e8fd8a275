//! The rule specification: the options after `-A CHAIN`, parsed the way
//! iptables parses them (implicit protocol matches, `!` before the option it
//! inverts, options belonging to the matches and target loaded before them).

use xdpgw_dataplane::rule::{AddrType, AddrtypeLimit, AddrtypeMatch};
use xdpgw_dataplane::rule::{ConnlimitMatch, HashlimitMatch};
use xdpgw_dataplane::rule::{
    ConnmarkOp, CtMatch, CtStates, IcmpType, IfaceMatch, Inv, IpRange, Ipv4Net, LenRange, Limit,
    Log, MarkMatch, Match, Multiport, MultiportDir, NatRange, PortMatch, PortNat, PortRange,
    RejectWith, Rule, Table, Target, TcpFlags, TcpMatch, TcpmssOp, TosBits, TtlMatch, TtlSet,
};
use xdpgw_dataplane::rule::{CounterOp, DimFlags, RecentCmd, RecentMatch, SetMatch};
use xdpgw_dataplane::rule::{
    Family, FragMatch, IpRange as IpRangeOf, Ipv6HeaderMatch, Ipv6Net, RtMatch, U32Range,
};

use super::lex::Token;
use super::value;
use crate::error::{RuleError, RuleErrorKind};
use crate::netdb;

pub const SUPPORTED_MATCHES: [&str; 20] = [
    "tcp",
    "udp",
    "icmp",
    "multiport",
    "conntrack",
    "state",
    "comment",
    "dscp",
    "mark",
    "limit",
    "iprange",
    "length",
    "ttl",
    "tos",
    "connmark",
    "addrtype",
    "set",
    "recent",
    "connlimit",
    "hashlimit",
];

/// What ip6tables rules may use (`-m set` is IPv4-only in xdpgw).
pub const SUPPORTED_MATCHES6: [&str; 19] = [
    "tcp",
    "udp",
    "icmp6",
    "multiport",
    "conntrack",
    "state",
    "comment",
    "dscp",
    "mark",
    "limit",
    "iprange",
    "length",
    "hl",
    "tos",
    "connmark",
    "addrtype",
    "ipv6header",
    "frag",
    "rt",
];

pub const SUPPORTED_TARGETS6: [&str; 17] = [
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "DSCP",
    "NOTRACK",
    "CT",
    "MARK",
    "HL",
    "TOS",
    "CONNMARK",
    "TCPMSS",
];

pub const SUPPORTED_TARGETS: [&str; 17] = [
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "DSCP",
    "NOTRACK",
    "CT",
    "MARK",
    "TTL",
    "TOS",
    "CONNMARK",
    "TCPMSS",
];

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// A parsed rule and where its parts stand, for the checks that need the
/// whole rule set (jumps, loops, where targets may stand).
#[derive(Clone, Debug)]
pub struct ParsedRule {
    pub rule: Rule,
    /// The table the rule was parsed for.
    pub table: Table,
    /// Where the target is named (or the rule starts, when it has none).
    pub target_at: (u32, u32),
    /// `-s`/`-d` given as lists of addresses (`-s a,b`).
    pub lists: AddrLists,
    /// The sets `-m set` names, and where each name stands.
    pub set_names: Vec<(String, (u32, u32))>,
}

/// The addresses of `-s` and `-d` when given as lists (`-s a,b,c`): iptables
/// makes one rule of each source and destination pair, sources outer
/// (`add_entry`). Empty: the option was not a list.
#[derive(Clone, Debug, Default)]
pub struct AddrLists {
    pub src: Vec<Option<Inv<Ipv4Net>>>,
    pub dst: Vec<Option<Inv<Ipv4Net>>>,
    /// The same, for an ip6tables rule.
    pub src6: Vec<Option<Inv<Ipv6Net>>>,
    pub dst6: Vec<Option<Inv<Ipv6Net>>>,
}

impl ParsedRule {
    /// How many rules this one stands for: one per source and destination
    /// pair of its address lists.
    pub fn count(&self) -> usize {
        let l = &self.lists;
        l.src.len().max(l.src6.len()).max(1) * l.dst.len().max(l.dst6.len()).max(1)
    }

    /// The rules this one stands for, in iptables' order: for each source,
    /// each destination.
    pub fn expand(self) -> Vec<ParsedRule> {
        fn one<T: Clone>(a: &[T], b: T) -> Vec<T> {
            if a.is_empty() {
                vec![b]
            } else {
                a.to_vec()
            }
        }
        let srcs = one(&self.lists.src, self.rule.src);
        let dsts = one(&self.lists.dst, self.rule.dst);
        let srcs6 = one(&self.lists.src6, self.rule.src6);
        let dsts6 = one(&self.lists.dst6, self.rule.dst6);
        // One family's lists are empty: its part of the product is one.
        let pairs: Vec<(usize, usize)> = (0..srcs.len().max(srcs6.len()))
            .flat_map(|i| (0..dsts.len().max(dsts6.len())).map(move |j| (i, j)))
            .collect();
        let mut out = Vec::with_capacity(pairs.len());
        for (i, j) in pairs {
            {
                let mut r = self.rule.clone();
                r.src = srcs.get(i).copied().unwrap_or(self.rule.src);
                r.dst = dsts.get(j).copied().unwrap_or(self.rule.dst);
                r.src6 = srcs6.get(i).copied().unwrap_or(self.rule.src6);
                r.dst6 = dsts6.get(j).copied().unwrap_or(self.rule.dst6);
                out.push(ParsedRule {
                    rule: r,
                    table: self.table,
                    target_at: self.target_at,
                    lists: AddrLists::default(),
                    set_names: self.set_names.clone(),
                });
            }
        }
        out
    }
}

/// A match being filled in, with the options it has seen.
struct Loaded {
    m: Match,
    seen: u32,
    at: (u32, u32),
}

struct LoadedTarget {
    t: Target,
    seen: u32,
    name: String,
    at: (u32, u32),
}

struct Parser<'a> {
    family: Family,
    toks: &'a [Token],
    pos: usize,
    chain: &'a str,
    rule: Rule,
    seen_generic: u32,
    matches: Vec<Loaded>,
    target: Option<LoadedTarget>,
    start: (u32, u32),
    lists: AddrLists,
    /// Where the first address list stands.
    list_at: Option<(u32, u32)>,
    /// The sets `-m set` names, and where.
    set_names: Vec<(String, (u32, u32))>,
}

fn err(t: &Token, kind: RuleErrorKind) -> RuleError {
    RuleError::at(t.line, t.col, kind)
}

/// What `-s`/`-d` gave: one network (`None` for the whole address space,
/// which matches everything and is not kept) or a list of them, one rule
/// each as iptables expands it.
enum AddrArg<N> {
    One(Option<Inv<N>>),
    List(Vec<Option<Inv<N>>>),
}

impl<N> AddrArg<N> {
    /// Into the rule's `one` or the list to expand `list`; whether it was
    /// a list.
    fn put(self, list: &mut Vec<Option<Inv<N>>>, one: &mut Option<Inv<N>>) -> bool {
        match self {
            AddrArg::One(net) => {
                *one = net;
                false
            }
            AddrArg::List(l) => {
                *list = l;
                true
            }
        }
    }
}

/// `-s`/`-d`'s value `v` (`name`) for `command` (iptables or ip6tables),
/// whose whole address space is `any`: `parse` reads one network,
/// `is_any` tells the whole space.
fn address_arg<N: Copy>(
    v: &Token,
    name: &str,
    inv: bool,
    command: &str,
    any: &str,
    parse: impl Fn(&str) -> Result<N, value::Expected>,
    is_any: impl Fn(&N) -> bool,
) -> Result<AddrArg<N>, RuleError> {
    let as_rule = |net: N, inv| (!is_any(&net)).then_some(Inv::new(net, inv));
    if !v.text.contains(',') {
        let net = parse(&v.text).map_err(|e| bad(v, name, e))?;
        if inv && is_any(&net) {
            return Err(bad(
                v,
                name,
                format!("a network other than {any} after '!' (it would never match)"),
            ));
        }
        return Ok(AddrArg::One(as_rule(net, inv)));
    }
    if inv {
        return Err(bad(
            v,
            name,
            format!("one address or network after '!' ({command} does not allow '!' with a list)"),
        ));
    }
    v.text
        .split(',')
        .map(|a| {
            if a.is_empty() {
                return Err(bad(
                    v,
                    name,
                    "addresses or networks separated by single commas, without an empty one".into(),
                ));
            }
            parse(a)
                .map(|n| as_rule(n, false))
                .map_err(|e| bad(v, name, e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AddrArg::List)
}

fn bad(t: &Token, option: &str, expected: String) -> RuleError {
    err(
        t,
        RuleErrorKind::BadValue {
            option: option.to_string(),
            value: t.text.clone(),
            expected,
        },
    )
}

fn semantic(at: (u32, u32), msg: impl Into<String>) -> RuleError {
    RuleError::at(at.0, at.1, RuleErrorKind::Semantic(msg.into()))
}

/// Parses a rule specification. `start` is where the command stands (for
/// errors about the rule as a whole); `table` and `chain` are where the rule
/// goes (for the checks iptables makes against them).
pub fn parse_rule(
    toks: &[Token],
    start: (u32, u32),
    table: Table,
    chain: &str,
) -> Result<ParsedRule, RuleError> {
    parse_rule_in(Family::Ipv4, toks, start, table, chain)
}

/// [`parse_rule`] for a rule of `family`: an ip6tables rule for IPv6.
pub fn parse_rule_in(
    family: Family,
    toks: &[Token],
    start: (u32, u32),
    table: Table,
    chain: &str,
) -> Result<ParsedRule, RuleError> {
    let mut p = Parser {
        family,
        toks,
        pos: 0,
        chain,
        rule: Rule::new(Target::None),
        seen_generic: 0,
        matches: Vec::new(),
        target: None,
        start,
        lists: AddrLists::default(),
        list_at: None,
        set_names: Vec::new(),
    };
    p.run()?;
    p.finish(table)
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.pos)?;
        self.pos += 1;
        Some(t)
    }

    fn value(&mut self, opt: &Token) -> Result<&'a Token, RuleError> {
        self.next().ok_or_else(|| {
            err(
                opt,
                RuleErrorKind::MissingValue {
                    option: opt.text.clone(),
                },
            )
        })
    }

    fn run(&mut self) -> Result<(), RuleError> {
        let mut invert: Option<&Token> = None;
        while let Some(t) = self.next() {
            if t.is("!") {
                if invert.is_some() {
                    return Err(err(
                        t,
                        RuleErrorKind::Syntax("multiple '!' flags not allowed".into()),
                    ));
                }
                invert = Some(t);
                continue;
            }
            if !t.text.starts_with('-') || t.text == "-" {
                return Err(err(
                    t,
                    RuleErrorKind::Syntax(format!(
                        "unexpected argument '{}': expected an option",
                        t.text
                    )),
                ));
            }
            let inv = invert.take().is_some();
            self.option(t, inv)?;
        }
        if let Some(t) = invert {
            return Err(err(
                t,
                RuleErrorKind::Syntax("'!' at the end of the rule, before no option".into()),
            ));
        }
        Ok(())
    }

    fn generic_once(&mut self, t: &Token, bit: u32, name: &str) -> Result<(), RuleError> {
        if self.seen_generic & bit != 0 {
            return Err(err(
                t,
                RuleErrorKind::Syntax(format!("multiple {name} flags not allowed")),
            ));
        }
        self.seen_generic |= bit;
        Ok(())
    }

    fn no_invert(t: &Token, inv: bool) -> Result<(), RuleError> {
        if inv {
            return Err(err(
                t,
                RuleErrorKind::CannotInvert {
                    option: t.text.clone(),
                },
            ));
        }
        Ok(())
    }

    fn option(&mut self, t: &'a Token, inv: bool) -> Result<(), RuleError> {
        match t.text.as_str() {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let is_src = matches!(t.text.as_str(), "-s" | "--source" | "--src");
                let (bit, name) = if is_src { (1, "-s") } else { (2, "-d") };
                self.generic_once(t, bit, name)?;
                let v = self.value(t)?;
                let listed = if self.family == Family::Ipv6 {
                    let arg = address_arg(v, name, inv, "ip6tables", "::/0", value::ipv6_net, |n| {
                        n.prefix_len() == Some(0)
                    })?;
                    if is_src {
                        arg.put(&mut self.lists.src6, &mut self.rule.src6)
                    } else {
                        arg.put(&mut self.lists.dst6, &mut self.rule.dst6)
                    }
                } else {
                    let arg =
                        address_arg(v, name, inv, "iptables", "0.0.0.0/0", value::ipv4_net, |n| {
                            n.prefix_len() == Some(0)
                        })?;
                    if is_src {
                        arg.put(&mut self.lists.src, &mut self.rule.src)
                    } else {
                        arg.put(&mut self.lists.dst, &mut self.rule.dst)
                    }
                };
                if listed {
                    self.list_at.get_or_insert((v.line, v.col));
                }
            }
            "-p" | "--protocol" => {
                self.generic_once(t, 4, "-p")?;
                let v = self.value(t)?;
                let num = netdb::protocol_by_name(&v.text).ok_or_else(|| {
                    bad(
                        v,
                        "-p",
                        "a protocol: tcp, udp, icmp, all, a number 0-255 or a name from /etc/protocols"
                            .into(),
                    )
                })?;
                if num == 0 && inv {
                    return Err(bad(v, "-p", "a protocol other than 'all' after '!'".into()));
                }
                self.rule.protocol = (num != 0).then_some(Inv::new(num, inv));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let is_in = matches!(t.text.as_str(), "-i" | "--in-interface");
                let (bit, name) = if is_in { (8, "-i") } else { (16, "-o") };
                self.generic_once(t, bit, name)?;
                let banned = if is_in {
                    ["OUTPUT", "POSTROUTING"]
                } else {
                    ["INPUT", "PREROUTING"]
                };
                if banned.contains(&self.chain) {
                    return Err(err(
                        t,
                        RuleErrorKind::Semantic(format!(
                            "can't use {name} with {}: {} packets have no {} interface",
                            self.chain,
                            self.chain,
                            if is_in { "input" } else { "output" }
                        )),
                    ));
                }
                let v = self.value(t)?;
                if v.text.is_empty()
                    || v.text.len() > IfaceMatch::MAX_LEN
                    || v.text.contains(['/', ' '])
                {
                    return Err(bad(
                        v,
                        name,
                        "an interface name of 1-15 characters, '+' at the end for a prefix".into(),
                    ));
                }
                // A bare '+' matches every interface: iptables drops it.
                let m = (v.text != "+" || inv).then(|| {
                    Inv::new(
                        IfaceMatch {
                            name: v.text.clone(),
                        },
                        inv,
                    )
                });
                if is_in {
                    self.rule.in_iface = m;
                } else {
                    self.rule.out_iface = m;
                }
            }
            "-m" | "--match" => {
                Self::no_invert(t, inv)?;
                let v = self.value(t)?;
                self.load_match(v)?;
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                Self::no_invert(t, inv)?;
                self.generic_once(t, 32, "-j")?;
                let v = self.value(t)?;
                let goto = matches!(t.text.as_str(), "-g" | "--goto");
                self.load_target(t, v, goto)?;
            }
            "-c" | "--set-counters" => {
                Self::no_invert(t, inv)?;
                let p = self.value(t)?;
                let b = self.value(t)?;
                self.rule.counters.packets = p
                    .text
                    .parse()
                    .map_err(|_| bad(p, "-c", "a packet count".into()))?;
                self.rule.counters.bytes = b
                    .text
                    .parse()
                    .map_err(|_| bad(b, "-c", "a byte count".into()))?;
            }
            "-f" | "--fragment" if self.family == Family::Ipv6 => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(
                        "-f is not supported in IPv6, use -m frag instead (ip6tables refuses it)"
                            .into(),
                    ),
                ))
            }
            "-f" | "--fragment" => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(
                        "-f (fragment) matches are not supported: xdpgw reassembles fragments \
                         before any table sees them, as Linux does once conntrack is in use, so \
                         such a rule would never match"
                            .into(),
                    ),
                ))
            }
            "-t" | "--table" => {
                return Err(err(
                    t,
                    RuleErrorKind::Syntax(
                        "-t cannot be used here: in an iptables-restore file the '*table' line chooses the table; on a command line -t goes before the command"
                            .into(),
                    ),
                ))
            }
            "-4" | "--ipv4" if self.family == Family::Ipv4 => {}
            "-6" | "--ipv6" if self.family == Family::Ipv6 => {}
            "-4" | "--ipv4" => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(
                        "-4 in an ip6tables rule: write IPv4 rules as iptables lines".into(),
                    ),
                ))
            }
            "-6" | "--ipv6" => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(
                        "-6 in an iptables rule: write IPv6 rules as ip6tables lines or in an \
                         ip6tables-save file (rules6)"
                            .into(),
                    ),
                ))
            }
            _ => self.extension_option(t, inv)?,
        }
        Ok(())
    }

    fn load_match(&mut self, v: &Token) -> Result<(), RuleError> {
        let v6 = self.family == Family::Ipv6;
        let m = match v.text.as_str() {
            "icmp6" if v6 => Match::Icmp(Inv::plain(IcmpType::Any)),
            "hl" if v6 => Match::Ttl(TtlMatch::Eq(0)),
            "iprange" if v6 => Match::IpRange6(IpRangeOf::default()),
            "ipv6header" if v6 => Match::Ipv6Header(Ipv6HeaderMatch {
                headers: 0,
                invert: false,
                soft: false,
            }),
            "frag" if v6 => Match::Frag(FragMatch {
                ids: U32Range::ALL,
                len: None,
                res: false,
                first: false,
                more: false,
                last: false,
            }),
            "rt" if v6 => Match::Rt(RtMatch {
                rt_type: None,
                segsleft: U32Range::ALL,
                len: None,
            }),
            "set" if v6 => {
                return Err(err(
                    v,
                    RuleErrorKind::Semantic(
                        "-m set in an ip6tables rule: xdpgw's ipset sets hold IPv4 addresses \
                         only (family inet)"
                            .into(),
                    ),
                ))
            }
            "icmp" | "ttl" if v6 => {
                return Err(err(
                    v,
                    RuleErrorKind::UnknownMatch {
                        name: v.text.clone(),
                        supported: &SUPPORTED_MATCHES6,
                    },
                ))
            }
            "tcp" => Match::Tcp(TcpMatch::default()),
            "udp" => Match::Udp(PortMatch::default()),
            "icmp" => Match::Icmp(Inv::plain(IcmpType::Any)),
            "multiport" => Match::Multiport(Multiport {
                dir: MultiportDir::Either,
                ports: Vec::new(),
                invert: false,
            }),
            "conntrack" => Match::Conntrack(CtMatch::default()),
            "state" => Match::State(Inv::plain(CtStates(0))),
            "comment" => Match::Comment(String::new()),
            "dscp" => Match::Dscp(Inv::plain(0)),
            "mark" => Match::Mark(Inv::plain(MarkMatch {
                value: 0,
                mask: u32::MAX,
            })),
            "limit" => Match::Limit(Limit::DEFAULT),
            "iprange" => Match::IpRange(IpRange::default()),
            "length" => Match::Length(Inv::plain(LenRange { lo: 0, hi: 0 })),
            "ttl" => Match::Ttl(TtlMatch::Eq(0)),
            "tos" => Match::Tos(Inv::plain(TosBits { value: 0, mask: 0 })),
            "connmark" => Match::Connmark(Inv::plain(MarkMatch {
                value: 0,
                mask: u32::MAX,
            })),
            "addrtype" => Match::Addrtype(AddrtypeMatch {
                src: None,
                dst: None,
                limit: AddrtypeLimit::None,
            }),
            "recent" if !v6 => Match::Recent(RecentMatch {
                name: RecentMatch::DEFAULT_NAME.into(),
                cmd: RecentCmd::Set,
                seconds: 0,
                reap: false,
                hitcount: 0,
                rttl: false,
                rdest: false,
                mask: std::net::Ipv4Addr::BROADCAST,
                invert: false,
            }),
            "connlimit" if !v6 => Match::Connlimit(ConnlimitMatch {
                limit: 0,
                mask: 32,
                daddr: false,
                upto: false,
            }),
            "hashlimit" if !v6 => Match::Hashlimit(HashlimitMatch {
                name: String::new(),
                avg: 0,
                burst: HashlimitMatch::DEFAULT_BURST,
                mode: 0,
                srcmask: 32,
                dstmask: 32,
                above: false,
                size: 0,
                max: 0,
                gc_interval: HashlimitMatch::DEFAULT_GC_INTERVAL,
                expire: 0,
            }),
            "set" => Match::Set(SetMatch {
                name: String::new(),
                flags: DimFlags { src: 0, dim: 0 },
                invert: false,
                return_nomatch: false,
                update_counters: true,
                update_subcounters: true,
                packets: None,
                bytes: None,
            }),
            _ => {
                return Err(err(
                    v,
                    RuleErrorKind::UnknownMatch {
                        name: v.text.clone(),
                        supported: if v6 {
                            &SUPPORTED_MATCHES6
                        } else {
                            &SUPPORTED_MATCHES
                        },
                    },
                ))
            }
        };
        self.matches.push(Loaded {
            m,
            seen: 0,
            at: (v.line, v.col),
        });
        Ok(())
    }

    fn load_target(&mut self, opt: &Token, v: &Token, goto: bool) -> Result<(), RuleError> {
        let at = (v.line, v.col);
        let name = v.text.clone();
        let v6 = self.family == Family::Ipv6;
        let t = if goto {
            Target::Goto(name.clone())
        } else {
            match name.as_str() {
                "REJECT" if v6 => Target::Reject(RejectWith::Icmp6PortUnreachable),
                "SNAT" if v6 => Target::Snat6(NatRange {
                    addrs: None,
                    ports: None,
                }),
                "DNAT" if v6 => Target::Dnat6(NatRange {
                    addrs: None,
                    ports: None,
                }),
                "HL" if v6 => Target::Ttl(TtlSet::Set(0)),
                "TTL" if v6 => {
                    return Err(err(
                        v,
                        RuleErrorKind::UnsupportedTarget {
                            name: name.clone(),
                            supported: &SUPPORTED_TARGETS6,
                        },
                    ))
                }
                "ACCEPT" => Target::Accept,
                "DROP" => Target::Drop,
                "RETURN" => Target::Return,
                "REJECT" => Target::Reject(RejectWith::IcmpPortUnreachable),
                "LOG" => Target::Log(Log {
                    level: Log::DEFAULT_LEVEL,
                    prefix: String::new(),
                }),
                "MASQUERADE" => Target::Masquerade(PortNat::default()),
                "SNAT" => Target::Snat(NatRange {
                    addrs: None,
                    ports: None,
                }),
                "DNAT" => Target::Dnat(NatRange {
                    addrs: None,
                    ports: None,
                }),
                "REDIRECT" => Target::Redirect(PortNat::default()),
                "DSCP" => Target::Dscp(0),
                "NOTRACK" => Target::Notrack,
                "CT" => Target::CtNotrack,
                "MARK" => Target::Mark { value: 0, mask: 0 },
                "TTL" => Target::Ttl(TtlSet::Set(0)),
                "TOS" => Target::Tos(TosBits { value: 0, mask: 0 }),
                "TCPMSS" => Target::Tcpmss(TcpmssOp::ClampPmtu),
                // The operation comes with its option; masks may come first.
                "CONNMARK" => Target::Connmark(ConnmarkOp::Save {
                    nfmask: u32::MAX,
                    ctmask: u32::MAX,
                }),
                "QUEUE" | "NFQUEUE" | "TRACE" | "TPROXY" | "NETMAP" | "CLASSIFY" | "SET"
                | "AUDIT" | "NFLOG" | "ULOG" => {
                    return Err(err(
                        v,
                        RuleErrorKind::UnsupportedTarget {
                            name: name.clone(),
                            supported: &SUPPORTED_TARGETS,
                        },
                    ))
                }
                _ => Target::Jump(name.clone()),
            }
        };
        if let Target::Jump(c) | Target::Goto(c) = &t {
            check_chain_name(v, c)?;
            if goto && SUPPORTED_TARGETS.contains(&c.as_str()) {
                return Err(err(
                    opt,
                    RuleErrorKind::Semantic(format!("-g needs a user chain, not the target {c}")),
                ));
            }
        }
        self.target = Some(LoadedTarget {
            t,
            seen: 0,
            name,
            at,
        });
        Ok(())
    }

    /// An option that belongs to a match or the target: the most recently
    /// loaded extension that knows it (iptables puts a new extension's
    /// options before the others', so `-m recent ... -j CONNMARK --mask M`
    /// is CONNMARK's), else the match of the rule's protocol, loaded
    /// implicitly as iptables does.
    fn extension_option(&mut self, t: &'a Token, inv: bool) -> Result<(), RuleError> {
        let target_at = self.target.as_ref().map(|lt| lt.at);
        let after_target = |at: (u32, u32)| target_at.is_none_or(|ta| at > ta);
        for i in (0..self.matches.len()).rev() {
            if after_target(self.matches[i].at) && self.match_option(i, t, inv)? {
                return Ok(());
            }
        }
        if self.target.is_some() && self.target_option(t, inv)? {
            return Ok(());
        }
        for i in (0..self.matches.len()).rev() {
            if !after_target(self.matches[i].at) && self.match_option(i, t, inv)? {
                return Ok(());
            }
        }
        let icmp = match self.family {
            Family::Ipv4 => IPPROTO_ICMP,
            Family::Ipv6 => IPPROTO_ICMPV6,
        };
        let implicit = match self.rule.protocol.map(|p| p.value) {
            Some(IPPROTO_TCP) => Some(Match::Tcp(TcpMatch::default())),
            Some(IPPROTO_UDP) => Some(Match::Udp(PortMatch::default())),
            Some(p) if p == icmp => Some(Match::Icmp(Inv::plain(IcmpType::Any))),
            _ => None,
        };
        if let Some(m) = implicit {
            if !self.matches.iter().any(|l| l.m.name() == m.name()) {
                self.matches.push(Loaded {
                    m,
                    seen: 0,
                    at: (t.line, t.col),
                });
                let i = self.matches.len() - 1;
                if self.match_option(i, t, inv)? {
                    return Ok(());
                }
                self.matches.pop();
            }
        }
        let hint = match (self.family, t.text.as_str()) {
            (Family::Ipv6, "--icmp-type") => {
                "; ip6tables has no ICMP match: -p ipv6-icmp --icmpv6-type TYPE".to_string()
            }
            (Family::Ipv6, o) if o.starts_with("--ttl-") => {
                "; ip6tables has no TTL: -m hl --hl-eq/--hl-lt/--hl-gt".to_string()
            }
            _ => option_hint(&t.text),
        };
        Err(err(
            t,
            RuleErrorKind::UnknownOption {
                option: t.text.clone(),
                hint,
            },
        ))
    }

    fn once(l: &mut Loaded, t: &Token, bit: u32) -> Result<(), RuleError> {
        if l.seen & bit != 0 {
            return Err(err(
                t,
                RuleErrorKind::Duplicate {
                    option: t.text.clone(),
                },
            ));
        }
        l.seen |= bit;
        Ok(())
    }

    /// Offers option `t` to loaded match `i`; false if it is not the match's.
    fn match_option(&mut self, i: usize, t: &'a Token, inv: bool) -> Result<bool, RuleError> {
        let opt = t.text.as_str();
        let proto_name = match self.rule.protocol.map(|p| p.value) {
            Some(IPPROTO_UDP) => "udp",
            _ => "tcp",
        };
        let v6 = self.family == Family::Ipv6;
        // Which option of which match, and the bit that marks it seen.
        let bit = match (&self.matches[i].m, opt) {
            (Match::Icmp(_), "--icmp-type") if v6 => return Ok(false),
            (Match::Icmp(_), "--icmpv6-type") if v6 => 1,
            (Match::Ttl(_), "--ttl-eq" | "--ttl-lt" | "--ttl-gt") if v6 => return Ok(false),
            (Match::Ttl(_), "--hl-eq" | "--hl-lt" | "--hl-gt") if v6 => 1,
            (Match::IpRange6(_), "--src-range") => 1,
            (Match::IpRange6(_), "--dst-range") => 2,
            (Match::Ipv6Header(_), "--header") => 1,
            (Match::Ipv6Header(_), "--soft") => 2,
            (Match::Frag(_), "--fragid") => 1,
            (Match::Frag(_), "--fraglen") => 2,
            (Match::Frag(_), "--fragres") => 4,
            (Match::Frag(_), "--fragfirst") => 8,
            (Match::Frag(_), "--fragmore") => 16,
            (Match::Frag(_), "--fraglast") => 32,
            (Match::Rt(_), "--rt-type") => 1,
            (Match::Rt(_), "--rt-segsleft") => 2,
            (Match::Rt(_), "--rt-len") => 4,
            (Match::Rt(_), "--rt-0-res" | "--rt-0-addrs" | "--rt-0-not-strict") => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(format!("{opt} is not supported yet")),
                ))
            }
            (Match::Tcp(_) | Match::Udp(_), "--sport" | "--source-port") => 1,
            (Match::Tcp(_) | Match::Udp(_), "--dport" | "--destination-port") => 2,
            (Match::Tcp(_), "--tcp-flags" | "--syn") => 4,
            (Match::Icmp(_), "--icmp-type") => 1,
            (Match::Multiport(_), "--sports" | "--source-ports") => 1,
            (Match::Multiport(_), "--dports" | "--destination-ports") => 1,
            (Match::Multiport(_), "--ports") => 1,
            (Match::Conntrack(_), "--ctstate") => 1,
            (Match::State(_), "--state") => 1,
            (Match::Comment(_), "--comment") => 1,
            (Match::Dscp(_), "--dscp" | "--dscp-class") => 1,
            (Match::Mark(_), "--mark") => 1,
            (Match::Limit(_), "--limit") => 1,
            (Match::Limit(_), "--limit-burst") => 2,
            (Match::IpRange(_), "--src-range") => 1,
            (Match::IpRange(_), "--dst-range") => 2,
            (Match::Length(_), "--length") => 1,
            (Match::Ttl(_), "--ttl-eq" | "--ttl-lt" | "--ttl-gt") => 1,
            (Match::Tos(_), "--tos") => 1,
            (Match::Connmark(_), "--mark") => 1,
            (Match::Addrtype(_), "--src-type") => 1,
            (Match::Addrtype(_), "--dst-type") => 2,
            (Match::Addrtype(_), "--limit-iface-in") => 4,
            (Match::Addrtype(_), "--limit-iface-out") => 8,
            (Match::Recent(_), "--set" | "--rcheck" | "--update" | "--remove") => 1,
            (Match::Recent(_), "--seconds") => 2,
            (Match::Recent(_), "--reap") => 4,
            (Match::Recent(_), "--hitcount") => 8,
            (Match::Recent(_), "--rttl") => 16,
            (Match::Recent(_), "--name") => 32,
            (Match::Recent(_), "--rsource" | "--rdest") => 64,
            (Match::Recent(_), "--mask") => 128,
            (Match::Set(_), "--match-set" | "--set") => 1,
            (Match::Set(_), "--return-nomatch") => 2,
            (Match::Set(_), "--update-counters") => 4,
            (Match::Set(_), "--update-subcounters") => 8,
            (Match::Set(_), "--packets-eq" | "--packets-lt" | "--packets-gt") => 16,
            (Match::Set(_), "--bytes-eq" | "--bytes-lt" | "--bytes-gt") => 32,
            (Match::Conntrack(_), "--ctproto") => 2,
            (Match::Conntrack(_), "--ctorigsrc") => 4,
            (Match::Conntrack(_), "--ctorigdst") => 8,
            (Match::Conntrack(_), "--ctreplsrc") => 16,
            (Match::Conntrack(_), "--ctrepldst") => 32,
            (Match::Conntrack(_), "--ctorigsrcport") => 64,
            (Match::Conntrack(_), "--ctorigdstport") => 128,
            (Match::Conntrack(_), "--ctreplsrcport") => 256,
            (Match::Conntrack(_), "--ctrepldstport") => 512,
            (Match::Conntrack(_), "--ctstatus") => 1024,
            (Match::Conntrack(_), "--ctdir") => 2048,
            (Match::Conntrack(_), "--ctexpire") => 4096,
            (Match::Connlimit(_), "--connlimit-upto" | "--connlimit-above") => 1,
            (Match::Connlimit(_), "--connlimit-mask") => 2,
            (Match::Connlimit(_), "--connlimit-saddr" | "--connlimit-daddr") => 4,
            (Match::Hashlimit(_), "--hashlimit-upto" | "--hashlimit-above" | "--hashlimit") => 1,
            (Match::Hashlimit(_), "--hashlimit-burst") => 2,
            (Match::Hashlimit(_), "--hashlimit-mode") => 4,
            (Match::Hashlimit(_), "--hashlimit-name") => 8,
            (Match::Hashlimit(_), "--hashlimit-srcmask") => 16,
            (Match::Hashlimit(_), "--hashlimit-dstmask") => 32,
            (Match::Hashlimit(_), "--hashlimit-htable-size") => 64,
            (Match::Hashlimit(_), "--hashlimit-htable-max") => 128,
            (Match::Hashlimit(_), "--hashlimit-htable-gcinterval") => 256,
            (Match::Hashlimit(_), "--hashlimit-htable-expire") => 512,
            (Match::Hashlimit(_), "--hashlimit-rate-match" | "--hashlimit-rate-interval")
            | (Match::Tcp(_), "--tcp-option") => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(format!("{opt} is not supported yet")),
                ))
            }
            _ => return Ok(false),
        };
        let l = &mut self.matches[i];
        // The options seen before this one.
        let seen = l.seen;
        Self::once(l, t, bit)?;
        let no_inv = |inv: bool| Self::no_invert(t, inv);
        // Values are taken from the token stream after the option.
        let toks = self.toks;
        let mut pos = self.pos;
        let mut take = || -> Result<&'a Token, RuleError> {
            let v = toks.get(pos).ok_or_else(|| {
                err(
                    t,
                    RuleErrorKind::MissingValue {
                        option: opt.to_string(),
                    },
                )
            })?;
            pos += 1;
            Ok(v)
        };
        let mut named_set = None;
        match &mut l.m {
            Match::Tcp(TcpMatch { ports, flags }) => {
                if bit == 4 {
                    *flags = Some(Inv::new(
                        if opt == "--syn" {
                            TcpFlags::SYN
                        } else {
                            let mv = take()?;
                            let cv = take()?;
                            TcpFlags {
                                mask: value::tcp_flags(&mv.text).map_err(|e| bad(mv, opt, e))?,
                                comp: value::tcp_flags(&cv.text).map_err(|e| bad(cv, opt, e))?,
                            }
                        },
                        inv,
                    ));
                } else {
                    set_ports(ports, bit, "tcp", take()?, opt, inv)?;
                }
            }
            Match::Udp(ports) => set_ports(ports, bit, "udp", take()?, opt, inv)?,
            Match::Icmp(m) => {
                let v = take()?;
                let ty = if v6 {
                    value::icmp6_type(&v.text)
                } else {
                    value::icmp_type(&v.text)
                };
                *m = Inv::new(ty.map_err(|e| bad(v, opt, e))?, inv);
            }
            Match::Multiport(m) => {
                let v = take()?;
                m.dir = match opt {
                    "--sports" | "--source-ports" => MultiportDir::Source,
                    "--dports" | "--destination-ports" => MultiportDir::Destination,
                    _ => MultiportDir::Either,
                };
                m.ports = value::port_list(&v.text, proto_name).map_err(|e| bad(v, opt, e))?;
                m.invert = inv;
            }
            Match::State(m) => {
                let v = take()?;
                *m = Inv::new(
                    value::ct_states(&v.text, 0x1f).map_err(|e| bad(v, opt, e))?,
                    inv,
                );
            }
            Match::Conntrack(m) => {
                let v = take()?;
                let at = |opts: &[&str]| opts.iter().position(|o| *o == opt).unwrap_or(0);
                match bit {
                    4096 => {
                        let r = value::u32_range(&v.text).ok_or_else(|| {
                            bad(v, opt, "seconds, or a range min:max, 0-4294967295".into())
                        })?;
                        m.expires = Some(Inv::new(r, inv));
                    }
                    1 => {
                        m.state = Some(Inv::new(
                            value::ct_states(&v.text, 0x7f).map_err(|e| bad(v, opt, e))?,
                            inv,
                        ))
                    }
                    2 => {
                        let p = netdb::protocol_by_name(&v.text).ok_or_else(|| {
                            bad(
                                v,
                                opt,
                                "a protocol: a name from /etc/protocols or a number".into(),
                            )
                        })?;
                        m.proto = Some(Inv::new(p, inv));
                    }
                    4..=32 if self.family == Family::Ipv6 => {
                        let net = value::ipv6_net(&v.text).map_err(|e| bad(v, opt, e))?;
                        m.addrs6[at(&CtMatch::ADDR_OPTS)] = Some(Inv::new(net, inv));
                    }
                    4..=32 => {
                        let net = value::ipv4_net(&v.text).map_err(|e| bad(v, opt, e))?;
                        m.addrs[at(&CtMatch::ADDR_OPTS)] = Some(Inv::new(net, inv));
                    }
                    64..=512 => {
                        let r = value::port_range(&v.text, "", true).map_err(|e| bad(v, opt, e))?;
                        m.ports[at(&CtMatch::PORT_OPTS)] = Some(Inv::new(r, inv));
                    }
                    1024 => {
                        let mut bits = 0;
                        for name in v.text.split(',') {
                            let (_, b) = CtMatch::STATUS_NAMES
                                .iter()
                                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                                .ok_or_else(|| {
                                    bad(
                                        v,
                                        opt,
                                        "statuses separated by commas: NONE, EXPECTED, \
                                         SEEN_REPLY, ASSURED, CONFIRMED"
                                            .into(),
                                    )
                                })?;
                            bits |= b;
                        }
                        m.status = Some(Inv::new(bits, inv));
                    }
                    _ => {
                        no_inv(inv)?;
                        m.dir_reply = Some(match v.text.to_ascii_uppercase().as_str() {
                            "ORIGINAL" => false,
                            "REPLY" => true,
                            _ => return Err(bad(v, opt, "ORIGINAL or REPLY".into())),
                        });
                    }
                }
            }
            Match::Comment(c) => {
                no_inv(inv)?;
                let v = take()?;
                if v.text.len() > 255 {
                    return Err(bad(v, opt, "a comment of at most 255 characters".into()));
                }
                *c = v.text.clone();
            }
            Match::Dscp(d) => {
                let v = take()?;
                let val = if opt == "--dscp" {
                    value::dscp(&v.text)
                } else {
                    value::dscp_class(&v.text)
                };
                *d = Inv::new(val.map_err(|e| bad(v, opt, e))?, inv);
            }
            Match::Mark(m) | Match::Connmark(m) => {
                let v = take()?;
                let (value, mask) = value::mark(&v.text).map_err(|e| bad(v, opt, e))?;
                *m = Inv::new(
                    MarkMatch {
                        value,
                        mask: mask.unwrap_or(u32::MAX),
                    },
                    inv,
                );
            }
            Match::Limit(lim) => {
                no_inv(inv)?;
                let v = take()?;
                if bit == 1 {
                    lim.avg = value::limit_rate(&v.text).map_err(|e| bad(v, opt, e))?;
                } else {
                    lim.burst = v
                        .text
                        .parse()
                        .ok()
                        .filter(|b| *b <= 10_000)
                        .ok_or_else(|| bad(v, opt, "a burst 0-10000".into()))?;
                }
            }
            Match::IpRange(r) => {
                let v = take()?;
                let range = Inv::new(
                    value::addr_range(&v.text, true).map_err(|e| bad(v, opt, e))?,
                    inv,
                );
                if bit == 1 {
                    r.src = Some(range);
                } else {
                    r.dst = Some(range);
                }
            }
            Match::Addrtype(a) => {
                if bit >= 4 {
                    no_inv(inv)?;
                    let other = if bit == 4 { 8 } else { 4 };
                    if l.seen & other != 0 {
                        return Err(semantic(
                            (t.line, t.col),
                            "--limit-iface-in and --limit-iface-out cannot be used together",
                        ));
                    }
                    a.limit = if bit == 4 {
                        AddrtypeLimit::In
                    } else {
                        AddrtypeLimit::Out
                    };
                } else {
                    let v = take()?;
                    let mut mask = 0u16;
                    for name in v.text.split(',') {
                        let i = AddrType::NAMES
                            .iter()
                            .position(|n| n.eq_ignore_ascii_case(name))
                            .ok_or_else(|| {
                                bad(
                                    v,
                                    opt,
                                    format!(
                                        "address types separated by commas: {}",
                                        AddrType::NAMES.join(", ")
                                    ),
                                )
                            })?;
                        mask |= 1 << i;
                    }
                    let m = Some(Inv::new(mask, inv));
                    if bit == 1 {
                        a.src = m;
                    } else {
                        a.dst = m;
                    }
                }
            }
            Match::Length(l) => {
                let v = take()?;
                let (lo, hi) = value::length(&v.text).map_err(|e| bad(v, opt, e))?;
                *l = Inv::new(LenRange { lo, hi }, inv);
            }
            Match::Ttl(m) => {
                let kind = &opt[opt.len() - 2..];
                if kind != "eq" {
                    no_inv(inv)?;
                }
                let v = take()?;
                let n = value::ttl(&v.text, 0).map_err(|e| bad(v, opt, e))?;
                *m = match kind {
                    "eq" if inv => TtlMatch::Ne(n),
                    "eq" => TtlMatch::Eq(n),
                    "lt" => TtlMatch::Lt(n),
                    _ => TtlMatch::Gt(n),
                };
            }
            Match::IpRange6(r) => {
                let v = take()?;
                let range = Inv::new(
                    value::addr_range6(&v.text, true).map_err(|e| bad(v, opt, e))?,
                    inv,
                );
                if bit == 1 {
                    r.src = Some(range);
                } else {
                    r.dst = Some(range);
                }
            }
            Match::Ipv6Header(h) => {
                if bit == 2 {
                    no_inv(inv)?;
                    h.soft = true;
                } else {
                    let v = take()?;
                    h.headers = ipv6_headers(&v.text).map_err(|e| bad(v, opt, e))?;
                    h.invert = inv;
                }
            }
            Match::Frag(f) => match bit {
                1 => {
                    let v = take()?;
                    let (lo, hi) = u32_range(&v.text).map_err(|e| bad(v, opt, e))?;
                    f.ids = U32Range {
                        lo,
                        hi,
                        invert: inv,
                    };
                }
                2 => {
                    let v = take()?;
                    let n = v
                        .text
                        .parse::<u32>()
                        .map_err(|_| bad(v, opt, "a length 0-4294967295".into()))?;
                    f.len = Some(Inv::new(n, inv));
                }
                _ => {
                    no_inv(inv)?;
                    match bit {
                        4 => f.res = true,
                        8 => f.first = true,
                        16 => f.more = true,
                        _ => f.last = true,
                    }
                }
            },
            Match::Rt(r) => {
                let v = take()?;
                match bit {
                    1 => {
                        let n = v
                            .text
                            .parse::<u8>()
                            .map_err(|_| bad(v, opt, "a routing header type 0-255".into()))?;
                        r.rt_type = Some(Inv::new(n, inv));
                    }
                    2 => {
                        let (lo, hi) = u32_range(&v.text).map_err(|e| bad(v, opt, e))?;
                        r.segsleft = U32Range {
                            lo,
                            hi,
                            invert: inv,
                        };
                    }
                    _ => {
                        let n = v
                            .text
                            .parse::<u32>()
                            .map_err(|_| bad(v, opt, "a length in bytes".into()))?;
                        r.len = Some(Inv::new(n, inv));
                    }
                }
            }
            Match::Tos(m) => {
                let v = take()?;
                let (value, mask) = value::tos(&v.text).map_err(|e| bad(v, opt, e))?;
                *m = Inv::new(TosBits { value, mask }, inv);
            }
            Match::Connlimit(c) => {
                if bit != 1 {
                    no_inv(inv)?;
                }
                match bit {
                    1 => {
                        let v = take()?;
                        c.limit = v
                            .text
                            .parse::<u32>()
                            .map_err(|_| bad(v, opt, "a count, 0-4294967295".into()))?;
                        // `! --connlimit-above` is `--connlimit-upto`.
                        c.upto = (opt == "--connlimit-upto") != inv;
                    }
                    2 => {
                        let v = take()?;
                        c.mask = value::connlimit_mask(&v.text).ok_or_else(|| {
                            bad(
                                v,
                                opt,
                                "a prefix length (0-32) or a contiguous netmask".into(),
                            )
                        })?;
                    }
                    _ => c.daddr = opt == "--connlimit-daddr",
                }
            }
            Match::Hashlimit(h) => {
                if bit != 1 {
                    no_inv(inv)?;
                }
                let v = take()?;
                let u32_of = |what: &str| {
                    v.text
                        .parse::<u32>()
                        .map_err(|_| bad(v, opt, format!("{what}, 0-4294967295")))
                };
                match bit {
                    1 => {
                        let (avg, unit_ms) =
                            value::hashlimit_rate(&v.text).map_err(|e| bad(v, opt, e))?;
                        h.avg = avg;
                        // libxt_hashlimit's default expiry: the rate's unit.
                        if seen & 512 == 0 {
                            h.expire = unit_ms;
                        }
                        h.above = (opt == "--hashlimit-above") != inv;
                    }
                    2 => {
                        h.burst = value::hashlimit_burst(&v.text)
                            .ok_or_else(|| bad(v, opt, "a burst, 1-1000000".into()))?;
                    }
                    4 => {
                        let mut mode = 0;
                        for name in v.text.split([',', '|']).filter(|n| !n.is_empty()) {
                            mode |= match name {
                                "srcip" => HashlimitMatch::SRCIP,
                                "srcport" => HashlimitMatch::SRCPORT,
                                "dstip" => HashlimitMatch::DSTIP,
                                "dstport" => HashlimitMatch::DSTPORT,
                                _ => {
                                    return Err(bad(
                                        v,
                                        opt,
                                        "srcip, srcport, dstip, dstport separated by commas".into(),
                                    ))
                                }
                            };
                        }
                        if mode == 0 {
                            return Err(bad(
                                v,
                                opt,
                                "srcip, srcport, dstip, dstport separated by commas".into(),
                            ));
                        }
                        h.mode = mode;
                    }
                    8 => {
                        // xt_check_proc_name.
                        let n = &v.text;
                        if n.is_empty() || n.len() > 254 || n.contains('/') || n == "." || n == ".."
                        {
                            return Err(bad(
                                v,
                                opt,
                                "a table name of 1-254 characters, no '/'".into(),
                            ));
                        }
                        h.name = n.clone();
                    }
                    16 | 32 => {
                        let len = v
                            .text
                            .parse::<u8>()
                            .ok()
                            .filter(|n| *n <= 32)
                            .ok_or_else(|| bad(v, opt, "a prefix length, 0-32".into()))?;
                        if bit == 16 {
                            h.srcmask = len;
                        } else {
                            h.dstmask = len;
                        }
                    }
                    // The kernel truncates sizes to HASHLIMIT_MAX_SIZE.
                    64 => h.size = u32_of("a bucket count")?.min(HashlimitMatch::MAX_SIZE),
                    128 => h.max = u32_of("an entry count")?.min(HashlimitMatch::MAX_SIZE),
                    256 | 512 => {
                        let ms = u32_of("milliseconds")?;
                        if ms == 0 {
                            // The kernel refuses it (EINVAL).
                            return Err(bad(v, opt, "milliseconds, 1-4294967295".into()));
                        }
                        if bit == 256 {
                            h.gc_interval = ms;
                        } else {
                            h.expire = ms;
                        }
                    }
                    _ => {}
                }
            }
            Match::Recent(r) => {
                if bit != 1 {
                    no_inv(inv)?;
                }
                match bit {
                    1 => {
                        r.cmd = match opt {
                            "--set" => RecentCmd::Set,
                            "--rcheck" => RecentCmd::Rcheck,
                            "--update" => RecentCmd::Update,
                            _ => RecentCmd::Remove,
                        };
                        r.invert = inv;
                    }
                    2 | 8 => {
                        let v = take()?;
                        let (hi, what) = if bit == 2 {
                            (u32::MAX, "seconds, 1-4294967295")
                        } else {
                            (RecentMatch::MAX_HITCOUNT, "a count, 1-65535")
                        };
                        let n = v
                            .text
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=hi).contains(n))
                            .ok_or_else(|| bad(v, opt, what.into()))?;
                        if bit == 2 {
                            r.seconds = n;
                        } else {
                            r.hitcount = n;
                        }
                    }
                    4 => r.reap = true,
                    16 => r.rttl = true,
                    32 => {
                        let v = take()?;
                        if v.text.is_empty() || v.text.len() > 199 || v.text.contains('/') {
                            return Err(bad(
                                v,
                                opt,
                                "a table name of 1-199 characters, no '/'".into(),
                            ));
                        }
                        r.name = v.text.clone();
                    }
                    64 => r.rdest = opt == "--rdest",
                    _ => {
                        let v = take()?;
                        r.mask = value::ipv4(&v.text).map_err(|e| bad(v, opt, e))?;
                    }
                }
            }
            Match::Set(m) => match bit {
                1 => {
                    let name = take()?;
                    let flags = take().map_err(|_| {
                        semantic((t.line, t.col), format!("{opt} requires two args"))
                    })?;
                    if name.text.is_empty() || name.text.len() > 31 {
                        return Err(bad(name, opt, "a set name of 1-31 characters".into()));
                    }
                    m.name = name.text.clone();
                    m.flags = set_flags(flags, opt)?;
                    m.invert = inv;
                    named_set = Some((name.text.clone(), (name.line, name.col)));
                }
                2 => {
                    no_inv(inv)?;
                    m.return_nomatch = true;
                }
                4 => m.update_counters = !inv,
                8 => m.update_subcounters = !inv,
                _ => {
                    if inv && !opt.ends_with("-eq") {
                        return Err(err(
                            t,
                            RuleErrorKind::CannotInvert {
                                option: opt.to_string(),
                            },
                        ));
                    }
                    let v = take()?;
                    let n: u64 = v
                        .text
                        .parse()
                        .map_err(|_| bad(v, opt, "a number 0-18446744073709551615".into()))?;
                    let op = match &opt[opt.len() - 2..] {
                        "eq" if inv => CounterOp::Ne,
                        "eq" => CounterOp::Eq,
                        "lt" => CounterOp::Lt,
                        _ => CounterOp::Gt,
                    };
                    if bit == 16 {
                        m.packets = Some((op, n));
                    } else {
                        m.bytes = Some((op, n));
                    }
                }
            },
        }
        if let Some(n) = named_set {
            self.set_names.push(n);
        }
        self.pos = pos;
        Ok(true)
    }

    /// Offers option `t` to the loaded target; false if it is not the target's.
    fn target_option(&mut self, t: &'a Token, inv: bool) -> Result<bool, RuleError> {
        let opt = t.text.as_str();
        let Some(lt) = self.target.as_mut() else {
            return Ok(false);
        };
        let v6 = self.family == Family::Ipv6;
        let bit = match (&lt.t, opt) {
            (Target::Ttl(_), "--ttl-set" | "--ttl-inc" | "--ttl-dec") if v6 => return Ok(false),
            (Target::Ttl(_), "--hl-set" | "--hl-inc" | "--hl-dec") if v6 => 1,
            (Target::Snat6(_), "--to-source") => 1,
            (Target::Dnat6(_), "--to-destination") => 1,
            (
                Target::Snat6(_) | Target::Dnat6(_),
                "--random" | "--random-fully" | "--persistent",
            ) => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(format!(
                        "{opt} of -j {} is not supported yet",
                        lt.name
                    )),
                ))
            }
            (Target::Reject(_), "--reject-with") => 1,
            (Target::Log(_), "--log-prefix") => 1,
            (Target::Log(_), "--log-level") => 2,
            (Target::Masquerade(_) | Target::Redirect(_), "--to-ports") => 1,
            (Target::Masquerade(_) | Target::Redirect(_), "--random") => 2,
            (Target::Masquerade(_), "--random-fully") => 4,
            (Target::Snat(_), "--to-source") => 1,
            (Target::Dnat(_), "--to-destination") => 1,
            (Target::Dscp(_), "--set-dscp" | "--set-dscp-class") => 1,
            (Target::CtNotrack, "--notrack") => 1,
            (Target::Mark { .. }, "--set-mark" | "--set-xmark")
            | (Target::Mark { .. }, "--and-mark" | "--or-mark" | "--xor-mark") => 1,
            (Target::Ttl(_), "--ttl-set" | "--ttl-inc" | "--ttl-dec") => 1,
            (Target::Tos(_), "--set-tos" | "--and-tos" | "--or-tos" | "--xor-tos") => 1,
            (
                Target::Connmark(_),
                "--set-mark" | "--set-xmark" | "--and-mark" | "--or-mark" | "--xor-mark"
                | "--save-mark" | "--restore-mark",
            ) => 1,
            (Target::Tcpmss(_), "--set-mss") => 1,
            (Target::Tcpmss(_), "--clamp-mss-to-pmtu") => 2,
            (Target::Connmark(_), "--mask") => 2,
            (Target::Connmark(_), "--nfmask") => 4,
            (Target::Connmark(_), "--ctmask") => 8,
            (
                Target::Log(_),
                "--log-tcp-sequence" | "--log-tcp-options" | "--log-ip-options" | "--log-uid"
                | "--log-macdecode",
            )
            | (Target::Snat(_) | Target::Dnat(_), "--random" | "--random-fully" | "--persistent")
            | (
                Target::CtNotrack,
                "--helper" | "--ctevents" | "--expevents" | "--zone" | "--zone-orig"
                | "--zone-reply" | "--timeout" | "--notrack-",
            ) => {
                return Err(err(
                    t,
                    RuleErrorKind::Semantic(format!(
                        "{opt} of -j {} is not supported yet",
                        lt.name
                    )),
                ))
            }
            _ => return Ok(false),
        };
        Self::no_invert(t, inv)?;
        if lt.seen & bit != 0 {
            return Err(err(
                t,
                RuleErrorKind::Duplicate {
                    option: opt.to_string(),
                },
            ));
        }
        lt.seen |= bit;
        let masks = lt.seen & 0b1110;
        if matches!(lt.t, Target::Connmark(_)) && masks & 2 != 0 && masks & 0b1100 != 0 {
            return Err(err(
                t,
                RuleErrorKind::Semantic(
                    "--mask cannot be used together with --nfmask or --ctmask".into(),
                ),
            ));
        }
        let needs_value = !matches!(
            opt,
            "--random"
                | "--random-fully"
                | "--notrack"
                | "--save-mark"
                | "--restore-mark"
                | "--clamp-mss-to-pmtu"
        );
        let v = if needs_value {
            let v = self.toks.get(self.pos).ok_or_else(|| {
                err(
                    t,
                    RuleErrorKind::MissingValue {
                        option: opt.to_string(),
                    },
                )
            })?;
            self.pos += 1;
            Some(v)
        } else {
            None
        };
        let text = v.map_or("", |v| v.text.as_str());
        let bad_v = |e: String| match v {
            Some(v) => bad(v, opt, e),
            None => bad(t, opt, e),
        };
        match &mut lt.t {
            Target::Reject(w) => {
                let names = RejectWith::names(self.family);
                *w = names
                    .iter()
                    .find(|(_, n, a)| *n == text || *a == text)
                    .map(|(k, _, _)| *k)
                    .ok_or_else(|| {
                        bad_v(format!(
                            "one of {}",
                            names.iter().map(|n| n.1).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
            }
            Target::Snat6(r) | Target::Dnat6(r) => *r = value::nat_range6(text).map_err(bad_v)?,
            Target::Log(l) if bit == 1 => {
                if text.len() > Log::MAX_PREFIX {
                    return Err(bad_v("a prefix of at most 29 characters".into()));
                }
                if text.is_empty() {
                    return Err(bad_v("a non-empty prefix".into()));
                }
                if text.contains('\n') {
                    return Err(bad_v("a prefix without newlines".into()));
                }
                l.prefix = text.to_string();
            }
            Target::Log(l) => l.level = value::log_level(text).map_err(bad_v)?,
            Target::Masquerade(n) | Target::Redirect(n) => match opt {
                "--to-ports" => n.ports = Some(value::nat_ports(text).map_err(bad_v)?),
                "--random" => n.random = true,
                _ => n.random_fully = true,
            },
            Target::Snat(r) | Target::Dnat(r) => *r = value::nat_range(text).map_err(bad_v)?,
            Target::Dscp(d) => {
                *d = if opt == "--set-dscp" {
                    value::dscp(text)
                } else {
                    value::dscp_class(text)
                }
                .map_err(bad_v)?
            }
            Target::Mark { value: mv, mask } => {
                let (v, m) = value::mark(text).map_err(bad_v)?;
                (*mv, *mask) = match opt {
                    "--set-xmark" => (v, m.unwrap_or(u32::MAX)),
                    "--set-mark" => (v, v | m.unwrap_or(u32::MAX)),
                    "--and-mark" => (0, !v),
                    "--or-mark" => (v, v),
                    _ => (v, 0),
                };
            }
            Target::Ttl(t) => {
                *t = match &opt[opt.len() - 3..] {
                    "set" => TtlSet::Set(value::ttl(text, 0).map_err(bad_v)?),
                    "inc" => TtlSet::Inc(value::ttl(text, 1).map_err(bad_v)?),
                    _ => TtlSet::Dec(value::ttl(text, 1).map_err(bad_v)?),
                };
            }
            // The last of --set-mss and --clamp-mss-to-pmtu counts.
            Target::Tcpmss(op) => {
                *op = if opt == "--set-mss" {
                    TcpmssOp::Set(
                        text.parse::<u16>()
                            .ok()
                            .filter(|v| *v <= 65515)
                            .ok_or_else(|| bad_v("an MSS 0-65515".into()))?,
                    )
                } else {
                    TcpmssOp::ClampPmtu
                };
            }
            Target::Connmark(op) => {
                // libxt_CONNMARK (v2): options act in order; the masks start
                // at 0xffffffff and the operation keeps the ones given.
                let (nfmask, ctmask) = match *op {
                    ConnmarkOp::Save { nfmask, ctmask }
                    | ConnmarkOp::Restore { nfmask, ctmask } => (nfmask, ctmask),
                    ConnmarkOp::Set { mask, .. } => (u32::MAX, mask),
                };
                let number = |text: &str| value::mark(text).map(|(v, _)| v);
                *op = match opt {
                    "--save-mark" => ConnmarkOp::Save { nfmask, ctmask },
                    "--restore-mark" => ConnmarkOp::Restore { nfmask, ctmask },
                    "--mask" | "--nfmask" | "--ctmask" => {
                        let m = number(text).map_err(bad_v)?;
                        let nf = if opt == "--ctmask" { nfmask } else { m };
                        let ct = if opt == "--nfmask" { ctmask } else { m };
                        match *op {
                            ConnmarkOp::Set { value, .. } => ConnmarkOp::Set { value, mask: ct },
                            ConnmarkOp::Save { .. } => ConnmarkOp::Save {
                                nfmask: nf,
                                ctmask: ct,
                            },
                            ConnmarkOp::Restore { .. } => ConnmarkOp::Restore {
                                nfmask: nf,
                                ctmask: ct,
                            },
                        }
                    }
                    _ => {
                        let (v, m) = value::mark(text).map_err(bad_v)?;
                        let (value, mask) = match opt {
                            "--set-xmark" => (v, m.unwrap_or(u32::MAX)),
                            "--set-mark" => (v, v | m.unwrap_or(u32::MAX)),
                            "--and-mark" => (0, !v),
                            "--or-mark" => (v, v),
                            _ => (v, 0),
                        };
                        ConnmarkOp::Set { value, mask }
                    }
                };
            }
            Target::Tos(t) => {
                let (v, m) = if opt == "--set-tos" {
                    value::tos(text).map_err(bad_v)?
                } else {
                    let bits = value::tos(text)
                        .ok()
                        .filter(|(_, m)| *m == 0xff)
                        .map(|(v, _)| v)
                        .ok_or_else(|| bad_v("a number 0-255".into()))?;
                    match opt {
                        "--and-tos" => (0, !bits),
                        "--or-tos" => (bits, bits),
                        _ => (bits, 0),
                    }
                };
                *t = TosBits { value: v, mask: m };
            }
            _ => {}
        }
        Ok(true)
    }

    fn finish(mut self, table: Table) -> Result<ParsedRule, RuleError> {
        if let Some(at) = self.list_at {
            let inverted = |a: Option<Inv<Ipv4Net>>| a.is_some_and(|a| a.invert);
            let inverted6 = |a: Option<Inv<Ipv6Net>>| a.is_some_and(|a| a.invert);
            if inverted(self.rule.src)
                || inverted(self.rule.dst)
                || inverted6(self.rule.src6)
                || inverted6(self.rule.dst6)
            {
                return Err(semantic(
                    at,
                    "'!' is not allowed with lists of source or destination addresses",
                ));
            }
        }
        merge_port_matches(&mut self.matches);
        let v6 = self.family == Family::Ipv6;
        let proto = self.rule.protocol;
        let is_proto = |p: u8| proto.is_some_and(|x| x.value == p && !x.invert);
        let mut rule = self.rule;
        for l in self.matches {
            let needs = |what: &str| semantic(l.at, format!("-m {} needs {what}", l.m.name()));
            match &l.m {
                Match::Tcp(_) if !is_proto(IPPROTO_TCP) => {
                    return Err(semantic(l.at, "the tcp match requires '-p tcp'"))
                }
                Match::Udp(_) if !is_proto(IPPROTO_UDP) => {
                    return Err(semantic(l.at, "the udp match requires '-p udp'"))
                }
                Match::Icmp(_) if v6 && !is_proto(IPPROTO_ICMPV6) => {
                    return Err(semantic(
                        l.at,
                        "the icmp6 match requires '-p ipv6-icmp' (the kernel refuses it \
                         otherwise)",
                    ))
                }
                Match::Icmp(_) if v6 && l.seen == 0 => return Err(needs("--icmpv6-type")),
                Match::Ttl(_) if v6 && l.seen == 0 => {
                    return Err(needs("--hl-eq, --hl-lt or --hl-gt"))
                }
                Match::Ipv6Header(_) if l.seen & 1 == 0 => return Err(needs("--header")),
                Match::IpRange6(_) if l.seen == 0 => {
                    return Err(needs("--src-range or --dst-range"))
                }
                Match::Icmp(_) if !v6 && !is_proto(IPPROTO_ICMP) => {
                    return Err(semantic(l.at, "the icmp match requires '-p icmp'"))
                }
                Match::Icmp(_) if l.seen == 0 => return Err(needs("--icmp-type")),
                Match::Multiport(_) if !is_proto(IPPROTO_TCP) && !is_proto(IPPROTO_UDP) => {
                    return Err(semantic(l.at, "multiport needs '-p tcp' or '-p udp'"))
                }
                Match::Multiport(_) if l.seen == 0 => {
                    return Err(needs("--sports, --dports or --ports"))
                }
                Match::Conntrack(_) if l.seen == 0 => {
                    return Err(needs("an option (--ctstate, --ctproto, --ctorigsrc, ...)"))
                }
                Match::State(_) if l.seen == 0 => return Err(needs("--state")),
                Match::Comment(_) if l.seen == 0 => return Err(needs("--comment")),
                Match::Dscp(_) if l.seen == 0 => return Err(needs("--dscp or --dscp-class")),
                Match::Mark(_) if l.seen == 0 => return Err(needs("--mark")),
                Match::IpRange(_) if l.seen == 0 => {
                    return Err(needs("--src-range or --dst-range"))
                }
                Match::Length(_) if l.seen == 0 => return Err(needs("--length")),
                Match::Ttl(_) if l.seen == 0 => {
                    return Err(needs("--ttl-eq, --ttl-lt or --ttl-gt"))
                }
                Match::Tos(_) if l.seen == 0 => return Err(needs("--tos")),
                Match::Connmark(_) if l.seen == 0 => return Err(needs("--mark")),
                Match::Addrtype(_) if l.seen & 3 == 0 => {
                    return Err(needs("--src-type or --dst-type"))
                }
                // addrtype_mt_checkentry_v1, for the built-in chains (the
                // ones iptables-nft gives hooks).
                Match::Addrtype(a)
                    if a.limit == AddrtypeLimit::In
                        && matches!(self.chain, "OUTPUT" | "POSTROUTING") =>
                {
                    return Err(semantic(
                        l.at,
                        "--limit-iface-in is not valid in OUTPUT or POSTROUTING",
                    ))
                }
                Match::Addrtype(a)
                    if a.limit == AddrtypeLimit::Out
                        && matches!(self.chain, "PREROUTING" | "INPUT") =>
                {
                    return Err(semantic(
                        l.at,
                        "--limit-iface-out is not valid in PREROUTING or INPUT",
                    ))
                }
                Match::Recent(_) if l.seen & 1 == 0 => {
                    return Err(semantic(
                        l.at,
                        "-m recent needs one of --set, --rcheck, --update or --remove",
                    ))
                }
                Match::Recent(r)
                    if matches!(r.cmd, RecentCmd::Set | RecentCmd::Remove)
                        && (r.seconds != 0 || r.hitcount != 0 || r.rttl || r.reap) =>
                {
                    return Err(semantic(
                        l.at,
                        "--seconds, --hitcount, --rttl and --reap go with --rcheck or --update",
                    ))
                }
                Match::Recent(r) if r.reap && r.seconds == 0 => {
                    return Err(semantic(l.at, "-m recent --reap needs --seconds"))
                }
                Match::Connlimit(_) if l.seen & 1 == 0 => {
                    return Err(semantic(
                        l.at,
                        "-m connlimit needs --connlimit-above or --connlimit-upto",
                    ))
                }
                Match::Hashlimit(_) if l.seen & 8 == 0 => {
                    return Err(semantic(l.at, "-m hashlimit needs --hashlimit-name"))
                }
                Match::Hashlimit(_) if l.seen & 1 == 0 => {
                    return Err(semantic(
                        l.at,
                        "-m hashlimit needs --hashlimit-upto or --hashlimit-above",
                    ))
                }
                Match::Hashlimit(h) if xdpgw_dataplane::hashlimit::overflows(h.avg, h.burst) => {
                    // hashlimit_mt_check_common: ERANGE.
                    return Err(semantic(
                        l.at,
                        "-m hashlimit: the rate times the burst overflows the kernel's \
                         credits; try a faster rate or another burst",
                    ));
                }
                Match::Set(_) if l.seen & 1 == 0 => {
                    return Err(semantic(
                        l.at,
                        "-m set needs --match-set NAME src|dst[,src|dst...]",
                    ))
                }
                _ => {}
            }
            rule.matches.push(l.m);
        }
        let target_at = match self.target {
            None => self.start,
            Some(lt) => {
                let need = |what: &str| semantic(lt.at, format!("-j {} needs {what}", lt.name));
                let ports_need_proto = || {
                    semantic(
                        lt.at,
                        format!("-j {} with ports needs '-p tcp' or '-p udp'", lt.name),
                    )
                };
                let l4 = is_proto(IPPROTO_TCP) || is_proto(IPPROTO_UDP);
                match &lt.t {
                    Target::Reject(RejectWith::TcpReset) if !is_proto(IPPROTO_TCP) => {
                        return Err(semantic(lt.at, "--reject-with tcp-reset needs '-p tcp'"))
                    }
                    Target::Masquerade(n) | Target::Redirect(n) if n.ports.is_some() && !l4 => {
                        return Err(ports_need_proto())
                    }
                    Target::Snat(r) | Target::Dnat(r) if r.ports.is_some() && !l4 => {
                        return Err(ports_need_proto())
                    }
                    Target::Snat6(r) | Target::Dnat6(r) if r.ports.is_some() && !l4 => {
                        return Err(ports_need_proto())
                    }
                    Target::Snat(_) | Target::Snat6(_) if lt.seen == 0 => {
                        return Err(need("--to-source"))
                    }
                    Target::Dnat(_) | Target::Dnat6(_) if lt.seen == 0 => {
                        return Err(need("--to-destination"))
                    }
                    Target::Ttl(_) if v6 && lt.seen == 0 => {
                        return Err(need("--hl-set, --hl-inc or --hl-dec"))
                    }
                    Target::Dscp(_) if lt.seen == 0 => {
                        return Err(need("--set-dscp or --set-dscp-class"))
                    }
                    Target::CtNotrack if lt.seen == 0 => {
                        return Err(need("--notrack (the only CT option supported)"))
                    }
                    Target::Mark { .. } if lt.seen == 0 => {
                        return Err(need("--set-mark or --set-xmark"))
                    }
                    Target::Ttl(_) if lt.seen == 0 => {
                        return Err(need("--ttl-set, --ttl-inc or --ttl-dec"))
                    }
                    Target::Tcpmss(_) if lt.seen == 0 => {
                        return Err(need("--set-mss or --clamp-mss-to-pmtu"))
                    }
                    Target::Tcpmss(_) if !is_proto(IPPROTO_TCP) => {
                        return Err(semantic(lt.at, "-j TCPMSS needs '-p tcp'"))
                    }
                    // tcpmss_tg4_check; chains of the user are not checked
                    // (iptables-nft gives them no hooks).
                    Target::Tcpmss(TcpmssOp::ClampPmtu)
                        if matches!(self.chain, "PREROUTING" | "INPUT") =>
                    {
                        return Err(semantic(
                            lt.at,
                            "--clamp-mss-to-pmtu is only valid in FORWARD, OUTPUT and POSTROUTING",
                        ))
                    }
                    Target::Connmark(_) if lt.seen & 1 == 0 => {
                        return Err(need(
                            "an operation: --set-mark, --set-xmark, --and-mark, --or-mark, \
                             --xor-mark, --save-mark or --restore-mark",
                        ))
                    }
                    Target::Tos(_) if lt.seen == 0 => {
                        return Err(need("--set-tos, --and-tos, --or-tos or --xor-tos"))
                    }
                    t => {
                        if let Err(xdpgw_dataplane::rule::TargetPlacement::Table(want)) =
                            t.allowed(table, xdpgw_dataplane::rule::HookSet(0))
                        {
                            return Err(semantic(
                                lt.at,
                                format!(
                                    "-j {} is only valid in the {} table, not in {}",
                                    lt.name,
                                    want.name(),
                                    table.name()
                                ),
                            ));
                        }
                    }
                }
                if table == Table::Nat && lt.t == Target::Drop {
                    return Err(semantic(
                        lt.at,
                        "the nat table is not intended for filtering: iptables refuses -j DROP there",
                    ));
                }
                rule.target = lt.t;
                lt.at
            }
        };
        Ok(ParsedRule {
            rule,
            table,
            target_at,
            lists: self.lists,
            set_names: self.set_names,
        })
    }
}

/// `--header`'s list: names (short, long, or protocol numbers) separated by
/// commas (`parse_header` of libip6t_ipv6header).
fn ipv6_headers(s: &str) -> Result<u8, String> {
    let mut mask = 0;
    for name in s.split(',') {
        let bit = match name.to_ascii_lowercase().as_str() {
            "hop" | "hop-by-hop" | "0" => Ipv6HeaderMatch::HOPOPTS,
            "dst" | "ipv6-opts" | "60" => Ipv6HeaderMatch::DSTOPTS,
            "route" | "ipv6-route" | "43" => Ipv6HeaderMatch::ROUTING,
            "frag" | "ipv6-frag" | "44" => Ipv6HeaderMatch::FRAGMENT,
            "auth" | "ah" | "51" => Ipv6HeaderMatch::AH,
            "esp" | "50" => Ipv6HeaderMatch::ESP,
            "none" | "ipv6-nonxt" | "59" => Ipv6HeaderMatch::NONE,
            "prot" | "protocol" | "255" => Ipv6HeaderMatch::PROTO,
            _ => {
                return Err(format!(
                    "headers separated by commas: hop, dst, route, frag, auth, esp, none, prot \
                     (or {}), not '{name}'",
                    Ipv6HeaderMatch::NAMES.map(|n| n.0).join(", ")
                ))
            }
        };
        mask |= bit;
    }
    Ok(mask)
}

/// `n`, `lo:hi`, `lo:` or `:hi` of 32-bit values (`--fragid`,
/// `--rt-segsleft`); `lo` may exceed `hi` (it then matches nothing).
fn u32_range(s: &str) -> Result<(u32, u32), String> {
    let bad = || "a number or a range lo:hi of numbers 0-4294967295".to_string();
    let num = |t: &str, dflt: u32| {
        if t.is_empty() {
            Ok(dflt)
        } else {
            t.parse::<u32>().map_err(|_| bad())
        }
    };
    match s.split_once(':') {
        None => {
            let n = num(s, 0)?;
            if s.is_empty() {
                return Err(bad());
            }
            Ok((n, n))
        }
        Some((a, b)) => Ok((num(a, 0)?, num(b, u32::MAX)?)),
    }
}

/// `src,dst,...`: bit `i` set when dimension `i` is the source
/// (libxt_set's `parse_dirs`).
fn set_flags(t: &Token, opt: &str) -> Result<DimFlags, RuleError> {
    let parts: Vec<&str> = t.text.split(',').collect();
    if parts.len() > xdpgw_dataplane::ipset::MAX_DIM {
        return Err(bad(
            t,
            opt,
            "at most 6 src/dst options (the kernel's IPSET_DIM_MAX)".into(),
        ));
    }
    let mut f = DimFlags {
        src: 0,
        dim: parts.len() as u8,
    };
    for (i, p) in parts.iter().enumerate() {
        match *p {
            "src" => f.src |= 1 << i,
            "dst" => {}
            _ => {
                return Err(bad(
                    t,
                    opt,
                    "a comma-separated list of 'src' or 'dst' (one per dimension of the set)"
                        .into(),
                ))
            }
        }
    }
    Ok(f)
}

/// Folds the options of every tcp (udp) match into the first one that has
/// options, later ones overriding, as iptables-nft stores them; tcp (udp)
/// matches without options stay where they are.
fn merge_port_matches(matches: &mut Vec<Loaded>) {
    let mut i = 0;
    while i < matches.len() {
        let first = matches[..i]
            .iter()
            .position(|l| l.seen != 0 && same_port_kind(&l.m, &matches[i].m));
        match first {
            Some(f) if matches[i].seen != 0 => {
                let later = matches.remove(i);
                let into = &mut matches[f];
                into.seen |= later.seen;
                match (&mut into.m, later.m) {
                    (Match::Tcp(a), Match::Tcp(b)) => {
                        a.ports.sport = b.ports.sport.or(a.ports.sport);
                        a.ports.dport = b.ports.dport.or(a.ports.dport);
                        a.flags = b.flags.or(a.flags);
                    }
                    (Match::Udp(a), Match::Udp(b)) => {
                        a.sport = b.sport.or(a.sport);
                        a.dport = b.dport.or(a.dport);
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
}

fn same_port_kind(a: &Match, b: &Match) -> bool {
    matches!(
        (a, b),
        (Match::Tcp(_), Match::Tcp(_)) | (Match::Udp(_), Match::Udp(_))
    )
}

fn set_ports(
    ports: &mut PortMatch,
    bit: u32,
    proto: &str,
    v: &Token,
    opt: &str,
    inv: bool,
) -> Result<(), RuleError> {
    // iptables checks lo <= hi for tcp only; a reversed udp range never matches.
    let r = value::port_range(&v.text, proto, proto == "udp").map_err(|e| bad(v, opt, e))?;
    let slot = if bit == 1 {
        &mut ports.sport
    } else {
        &mut ports.dport
    };
    // '! lo:hi' from port 0 is the range above it, and iptables-nft stores it so.
    *slot = Some(if inv && r.lo == 0 && r.lo < r.hi && r.hi < 65535 {
        Inv::plain(PortRange {
            lo: r.hi + 1,
            hi: 65535,
        })
    } else {
        Inv::new(r, inv)
    });
    Ok(())
}

/// Checks a user chain name as iptables does.
pub fn check_chain_name(t: &Token, name: &str) -> Result<(), RuleError> {
    let problem = if name.is_empty() {
        Some("a chain name must not be empty")
    } else if name.len() > 28 {
        Some("a chain name is at most 28 characters")
    } else if name.starts_with(['-', '!']) {
        Some("a chain name must not start with '-' or '!'")
    } else if name.contains(char::is_whitespace) {
        Some("a chain name must not contain white space")
    } else {
        None
    };
    match problem {
        Some(p) => Err(err(t, RuleErrorKind::Semantic(p.into()))),
        None => Ok(()),
    }
}

/// Where an unknown option would have been valid.
fn option_hint(opt: &str) -> String {
    let owner = match opt {
        "--sport" | "--dport" | "--source-port" | "--destination-port" => {
            "it needs '-p tcp' or '-p udp' before it"
        }
        "--tcp-flags" | "--syn" => "it needs '-p tcp' before it",
        "--icmp-type" => "it needs '-p icmp' before it",
        "--sports" | "--dports" | "--ports" => "it belongs to -m multiport",
        "--ctstate" => "it belongs to -m conntrack",
        "--state" => "it belongs to -m state",
        "--comment" => "it belongs to -m comment",
        "--dscp" | "--dscp-class" => "it belongs to -m dscp",
        "--mark" => "it belongs to -m mark",
        "--limit" | "--limit-burst" => "it belongs to -m limit",
        "--src-range" | "--dst-range" => "it belongs to -m iprange",
        "--reject-with" => "it belongs to -j REJECT, after it",
        "--log-prefix" | "--log-level" => "it belongs to -j LOG, after it",
        "--to-ports" => "it belongs to -j MASQUERADE or -j REDIRECT, after it",
        "--random" | "--random-fully" => "it belongs to -j MASQUERADE, after it",
        "--to-source" => "it belongs to -j SNAT, after it",
        "--to-destination" => "it belongs to -j DNAT, after it",
        "--set-dscp" | "--set-dscp-class" => "it belongs to -j DSCP, after it",
        "--notrack" => "it belongs to -j CT, after it",
        "--set-mark" | "--set-xmark" | "--and-mark" | "--or-mark" | "--xor-mark" => {
            "it belongs to -j MARK, after it"
        }
        _ => "",
    };
    if owner.is_empty() {
        String::new()
    } else {
        format!("; {owner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::lex::restore_words;

    fn parse(s: &str, table: Table, chain: &str) -> Result<Rule, RuleError> {
        let toks = restore_words(s, 1).expect("lex");
        parse_rule(&toks, (1, 1), table, chain).map(|p| p.rule)
    }

    #[test]
    fn implicit_protocol_match_goes_where_its_first_option_stands() {
        let r = parse(
            "-m comment --comment x -p tcp --dport 5 -m mark --mark 1 -j ACCEPT",
            Table::Filter,
            "INPUT",
        )
        .expect("parse");
        let names: Vec<_> = r.matches.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["comment", "tcp", "mark"]);
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("-p tcp --dport 99999 -j ACCEPT", Table::Filter, "INPUT").expect_err("bad");
        assert_eq!(e.column, 16);
        assert!(e.kind.to_string().contains("0-65535"), "{}", e.kind);
        let e = parse("-m foo -j ACCEPT", Table::Filter, "INPUT").expect_err("bad");
        assert_eq!(e.column, 4);
        assert!(e.kind.to_string().contains("supported: tcp, udp"));
        let e = parse("--dport 80 -j ACCEPT", Table::Filter, "INPUT").expect_err("bad");
        assert!(e.kind.to_string().contains("-p tcp"), "{}", e.kind);
        let e = parse("-o eth0 -j ACCEPT", Table::Filter, "INPUT").expect_err("bad");
        assert!(e.kind.to_string().contains("can't use -o with INPUT"));
        let e = parse("-j MASQUERADE", Table::Filter, "FORWARD").expect_err("bad");
        assert!(e.kind.to_string().contains("only valid in the nat table"));
        let e = parse("! -m tcp", Table::Filter, "INPUT").expect_err("bad");
        assert!(matches!(e.kind, RuleErrorKind::CannotInvert { .. }));
        let e = parse("-j ACCEPT -j DROP", Table::Filter, "INPUT").expect_err("bad");
        assert!(e.kind.to_string().contains("multiple -j"));
    }

    #[test]
    fn mark_forms_become_xmark() {
        for (s, v, m) in [
            ("--set-mark 5", 5, u32::MAX),
            ("--set-mark 0x5/0xf0", 5, 0xf5),
            ("--set-xmark 0x5/0xff", 5, 0xff),
            ("--and-mark 0xf", 0, !0xf),
            ("--or-mark 0x3", 3, 3),
            ("--xor-mark 0x3", 3, 0),
        ] {
            let r = parse(&format!("-j MARK {s}"), Table::Mangle, "PREROUTING").expect(s);
            assert_eq!(r.target, Target::Mark { value: v, mask: m }, "{s}");
        }
    }
}
