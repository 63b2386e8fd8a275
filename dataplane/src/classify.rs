//! The compiled, immutable rule set: chain names resolved to indices,
//! interface names to bit sets of the gateway's interfaces, every rule given
//! a counter slot. Built once per (re)load, away from the workers, and
//! shared by all of them; nothing on the packet path looks at a string.

use std::net::Ipv4Addr;

use crate::rule::{
    AddrRange, Hook, IcmpType, IfaceMatch, Inv, Ipv4Net, Limit, Log, Match, MultiportDir, NatRange,
    Policy, PortNat, PortRange, RejectWith, RuleSet, Table, Target,
};

/// At most this many interfaces take part in `-i`/`-o` matching.
pub const MAX_IFACES: usize = 64;

/// A set of the gateway's interfaces, by index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSet(pub u64);

impl IfaceSet {
    pub fn contains(self, iface: u8) -> bool {
        iface < 64 && self.0 & (1 << iface) != 0
    }
}

/// `-s`/`-d`: `addr & mask == net`, possibly inverted; the empty mask
/// (no option) matches everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrMatch {
    pub net: u32,
    pub mask: u32,
    pub invert: bool,
}

impl AddrMatch {
    fn from(m: Option<Inv<Ipv4Net>>) -> AddrMatch {
        m.map_or(AddrMatch::default(), |n| AddrMatch {
            net: u32::from(n.value.addr()),
            mask: u32::from(n.value.mask()),
            invert: n.invert,
        })
    }

    #[inline]
    pub fn matches(self, addr: u32) -> bool {
        (addr & self.mask == self.net) != self.invert
    }
}

/// `-i`/`-o`: membership in a set of interfaces, possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceTest {
    pub set: IfaceSet,
    pub invert: bool,
    pub any: bool,
}

impl IfaceTest {
    const ANY: IfaceTest = IfaceTest {
        set: IfaceSet(0),
        invert: false,
        any: true,
    };

    /// `iface` is `None` where the hook has no such interface (no input
    /// interface in OUTPUT, say): then only the absent option matches.
    #[inline]
    pub fn matches(self, iface: Option<u8>) -> bool {
        self.any || iface.is_some_and(|i| self.set.contains(i) != self.invert)
    }
}

/// `-p`: the protocol, possibly inverted; `any` for `-p all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoTest {
    pub proto: u8,
    pub invert: bool,
    pub any: bool,
}

impl ProtoTest {
    #[inline]
    pub fn matches(self, proto: u8) -> bool {
        self.any || (proto == self.proto) != self.invert
    }
}

/// A port range test, possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortTest {
    pub lo: u16,
    pub hi: u16,
    pub invert: bool,
}

impl PortTest {
    const ANY: PortTest = PortTest {
        lo: 0,
        hi: 65535,
        invert: false,
    };

    fn from(p: Option<Inv<PortRange>>) -> PortTest {
        p.map_or(PortTest::ANY, |p| PortTest {
            lo: p.value.lo,
            hi: p.value.hi,
            invert: p.invert,
        })
    }

    #[inline]
    pub fn matches(self, port: u16) -> bool {
        (self.lo <= port && port <= self.hi) != self.invert
    }
}

/// An address range test (`-m iprange`), possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeTest {
    pub lo: u32,
    pub hi: u32,
    pub invert: bool,
}

impl RangeTest {
    fn from(r: Option<Inv<AddrRange>>) -> Option<RangeTest> {
        r.map(|r| RangeTest {
            lo: u32::from(r.value.lo),
            hi: u32::from(r.value.hi),
            invert: r.invert,
        })
    }

    #[inline]
    pub fn matches(self, addr: u32) -> bool {
        (self.lo <= addr && addr <= self.hi) != self.invert
    }
}

/// A compiled match extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CMatch {
    /// TCP/UDP ports (the protocol itself is checked by the rule's `-p`).
    Ports {
        sport: PortTest,
        dport: PortTest,
    },
    TcpFlags {
        mask: u8,
        comp: u8,
        invert: bool,
    },
    Icmp {
        ty: u8,
        code_lo: u8,
        code_hi: u8,
        any: bool,
        invert: bool,
    },
    Multiport {
        dir: MultiportDir,
        ports: Box<[PortRange]>,
        invert: bool,
    },
    /// `--ctstate`/`--state`: bits of [`crate::rule::CtStates`].
    CtState {
        bits: u8,
        invert: bool,
    },
    Dscp {
        dscp: u8,
        invert: bool,
    },
    Mark {
        value: u32,
        mask: u32,
        invert: bool,
    },
    /// A token bucket; `slot` indexes the rule set's limit states.
    Limit {
        limit: Limit,
        slot: u32,
    },
    IpRange {
        src: Option<RangeTest>,
        dst: Option<RangeTest>,
    },
}

/// A compiled target; chains are indices into the table's chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CTarget {
    /// No target: count and go on.
    Continue,
    Accept,
    Drop,
    Return,
    Jump(u16),
    Goto(u16),
    Reject(RejectWith),
    /// Index into [`CompiledRuleSet::logs`].
    Log(u32),
    Masquerade(PortNat),
    Snat(NatRange),
    Dnat(NatRange),
    Redirect(PortNat),
    Dscp(u8),
    Notrack,
    Mark {
        value: u32,
        mask: u32,
    },
}

/// A compiled rule. `counter` indexes per-worker counter arrays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CRule {
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub in_iface: IfaceTest,
    pub out_iface: IfaceTest,
    pub proto: ProtoTest,
    pub matches: Box<[CMatch]>,
    pub target: CTarget,
    pub counter: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CChain {
    pub name: String,
    pub policy: Option<Policy>,
    pub rules: Box<[CRule]>,
    /// Counter slot of the policy (built-in chains).
    pub counter: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CTable {
    pub table: Table,
    pub chains: Box<[CChain]>,
    /// The built-in chain of each hook, by `Hook as usize`.
    pub hooks: [Option<u16>; 5],
}

impl CTable {
    pub fn hook_chain(&self, hook: Hook) -> Option<&CChain> {
        self.hooks[hook as usize].map(|i| &self.chains[usize::from(i)])
    }
}

/// The whole compiled rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRuleSet {
    /// By `Table as usize`; a table the rules do not define is absent (its
    /// hooks accept everything, as an unloaded table does in Linux).
    pub tables: [Option<CTable>; 4],
    /// The interface names, by index, that `-i`/`-o` were resolved against.
    pub ifaces: Box<[String]>,
    pub logs: Box<[Log]>,
    /// Counter slots: one per rule and one per built-in chain policy.
    pub counters: u32,
    /// Token buckets of `-m limit`.
    pub limits: u32,
}

/// Why a rule set does not compile (the control plane's checks prevent
/// all of these for rule sets it parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    TooManyInterfaces(usize),
    MissingChain { table: Table, chain: String },
    TooManyChains(Table),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::TooManyInterfaces(n) => {
                write!(f, "{n} interfaces; at most {MAX_IFACES} are supported")
            }
            CompileError::MissingChain { table, chain } => {
                write!(f, "table {}: jump to missing chain {chain}", table.name())
            }
            CompileError::TooManyChains(t) => write!(f, "table {}: too many chains", t.name()),
        }
    }
}

impl std::error::Error for CompileError {}

fn iface_test(m: &Option<Inv<IfaceMatch>>, ifaces: &[String]) -> IfaceTest {
    let Some(m) = m else {
        return IfaceTest::ANY;
    };
    let set = ifaces
        .iter()
        .enumerate()
        .filter(|(_, n)| m.value.matches(n))
        .fold(0u64, |s, (i, _)| s | 1 << i);
    IfaceTest {
        set: IfaceSet(set),
        invert: m.invert,
        any: false,
    }
}

fn compile_match(m: &Match, limits: &mut u32) -> Option<CMatch> {
    Some(match m {
        Match::Tcp(t) => {
            // A tcp match becomes a ports test and, with --tcp-flags, a flags test;
            // the flags test is emitted separately by the caller.
            CMatch::Ports {
                sport: PortTest::from(t.ports.sport),
                dport: PortTest::from(t.ports.dport),
            }
        }
        Match::Udp(u) => CMatch::Ports {
            sport: PortTest::from(u.sport),
            dport: PortTest::from(u.dport),
        },
        Match::Icmp(i) => match i.value {
            IcmpType::Any => CMatch::Icmp {
                ty: 0,
                code_lo: 0,
                code_hi: 0,
                any: true,
                invert: i.invert,
            },
            IcmpType::Type {
                ty,
                code_lo,
                code_hi,
            } => CMatch::Icmp {
                ty,
                code_lo,
                code_hi,
                any: false,
                invert: i.invert,
            },
        },
        Match::Multiport(mp) => CMatch::Multiport {
            dir: mp.dir,
            ports: mp.ports.clone().into_boxed_slice(),
            invert: mp.invert,
        },
        Match::Conntrack(s) | Match::State(s) => CMatch::CtState {
            bits: s.value.0,
            invert: s.invert,
        },
        Match::Comment(_) => return None,
        Match::Dscp(d) => CMatch::Dscp {
            dscp: d.value,
            invert: d.invert,
        },
        Match::Mark(m) => CMatch::Mark {
            value: m.value.value,
            mask: m.value.mask,
            invert: m.invert,
        },
        Match::Limit(l) => {
            *limits += 1;
            CMatch::Limit {
                limit: *l,
                slot: *limits - 1,
            }
        }
        Match::IpRange(r) => CMatch::IpRange {
            src: RangeTest::from(r.src),
            dst: RangeTest::from(r.dst),
        },
    })
}

/// Compiles a validated rule set for a gateway whose interfaces are `ifaces`
/// (by index: the index a packet's input/output interface carries).
pub fn compile(set: &RuleSet, ifaces: &[&str]) -> Result<CompiledRuleSet, CompileError> {
    if ifaces.len() > MAX_IFACES {
        return Err(CompileError::TooManyInterfaces(ifaces.len()));
    }
    let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
    let mut tables: [Option<CTable>; 4] = Default::default();
    let mut logs = Vec::new();
    let mut counters = 0u32;
    let mut limits = 0u32;
    for t in &set.tables {
        if t.chains.len() > usize::from(u16::MAX) {
            return Err(CompileError::TooManyChains(t.table));
        }
        let index = |name: &str| -> Result<u16, CompileError> {
            t.chains
                .iter()
                .position(|c| c.name == name)
                .map(|i| i as u16)
                .ok_or_else(|| CompileError::MissingChain {
                    table: t.table,
                    chain: name.to_string(),
                })
        };
        let mut hooks = [None; 5];
        let mut chains = Vec::with_capacity(t.chains.len());
        for (ci, c) in t.chains.iter().enumerate() {
            if let Some(h) = c.hook {
                hooks[h as usize] = Some(ci as u16);
            }
            let mut rules = Vec::with_capacity(c.rules.len());
            for r in &c.rules {
                let mut matches = Vec::with_capacity(r.matches.len() + 1);
                for m in &r.matches {
                    if let Some(cm) = compile_match(m, &mut limits) {
                        matches.push(cm);
                    }
                    if let Match::Tcp(tm) = m {
                        if let Some(f) = tm.flags {
                            matches.push(CMatch::TcpFlags {
                                mask: f.value.mask,
                                comp: f.value.comp,
                                invert: f.invert,
                            });
                        }
                    }
                }
                let target = match &r.target {
                    Target::None => CTarget::Continue,
                    Target::Accept => CTarget::Accept,
                    Target::Drop => CTarget::Drop,
                    Target::Return => CTarget::Return,
                    Target::Jump(c) => CTarget::Jump(index(c)?),
                    Target::Goto(c) => CTarget::Goto(index(c)?),
                    Target::Reject(w) => CTarget::Reject(*w),
                    Target::Log(l) => {
                        logs.push(l.clone());
                        CTarget::Log(logs.len() as u32 - 1)
                    }
                    Target::Masquerade(n) => CTarget::Masquerade(*n),
                    Target::Snat(n) => CTarget::Snat(*n),
                    Target::Dnat(n) => CTarget::Dnat(*n),
                    Target::Redirect(n) => CTarget::Redirect(*n),
                    Target::Dscp(d) => CTarget::Dscp(*d),
                    Target::Notrack | Target::CtNotrack => CTarget::Notrack,
                    Target::Mark { value, mask } => CTarget::Mark {
                        value: *value,
                        mask: *mask,
                    },
                };
                rules.push(CRule {
                    src: AddrMatch::from(r.src),
                    dst: AddrMatch::from(r.dst),
                    in_iface: iface_test(&r.in_iface, &ifaces),
                    out_iface: iface_test(&r.out_iface, &ifaces),
                    proto: r.protocol.map_or(
                        ProtoTest {
                            proto: 0,
                            invert: false,
                            any: true,
                        },
                        |p| ProtoTest {
                            proto: p.value,
                            invert: p.invert,
                            any: false,
                        },
                    ),
                    matches: matches.into_boxed_slice(),
                    target,
                    counter: counters,
                });
                counters += 1;
            }
            chains.push(CChain {
                name: c.name.clone(),
                policy: c.policy,
                rules: rules.into_boxed_slice(),
                counter: counters,
            });
            counters += 1;
        }
        tables[t.table as usize] = Some(CTable {
            table: t.table,
            chains: chains.into_boxed_slice(),
            hooks,
        });
    }
    Ok(CompiledRuleSet {
        tables,
        ifaces: ifaces.into_boxed_slice(),
        logs: logs.into_boxed_slice(),
        counters,
        limits,
    })
}

impl CompiledRuleSet {
    pub fn table(&self, table: Table) -> Option<&CTable> {
        self.tables[table as usize].as_ref()
    }

    /// The index of an interface name, if the rule set was compiled for it.
    pub fn iface_index(&self, name: &str) -> Option<u8> {
        self.ifaces.iter().position(|n| n == name).map(|i| i as u8)
    }
}

/// An address as the compiled tests take it.
#[inline]
pub fn addr_u32(a: Ipv4Addr) -> u32 {
    u32::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::*;

    fn rule_set() -> RuleSet {
        let mut filter = TableRules::empty(Table::Filter);
        filter.chains.push(Chain {
            name: "LOGDROP".into(),
            hook: None,
            policy: None,
            counters: Counters::default(),
            rules: vec![
                Rule::new(Target::Log(Log {
                    level: 4,
                    prefix: "x".into(),
                })),
                Rule::new(Target::Drop),
            ],
        });
        let mut r = Rule::new(Target::Jump("LOGDROP".into()));
        r.in_iface = Some(Inv::plain(IfaceMatch {
            name: "lan+".into(),
        }));
        r.src = Some(Inv::new(
            Ipv4Net::with_prefix(Ipv4Addr::new(192, 168, 10, 0), 24).expect("net"),
            true,
        ));
        r.matches.push(Match::Comment("hi".into()));
        r.matches.push(Match::Limit(Limit::DEFAULT));
        filter.chains[1].rules.push(r);
        RuleSet {
            tables: vec![filter],
        }
    }

    #[test]
    fn resolves_chains_interfaces_and_slots() {
        let c = compile(&rule_set(), &["wan0", "lan0", "lan1"]).expect("compile");
        let t = c.table(Table::Filter).expect("filter");
        let fwd = t.hook_chain(Hook::Forward).expect("FORWARD");
        let r = &fwd.rules[0];
        assert_eq!(r.target, CTarget::Jump(3));
        assert_eq!(r.in_iface.set, IfaceSet(0b110));
        assert!(r.in_iface.matches(Some(1)) && !r.in_iface.matches(Some(0)));
        assert!(!r.in_iface.matches(None));
        assert!(r.src.matches(u32::from(Ipv4Addr::new(10, 0, 0, 1))));
        assert!(!r.src.matches(u32::from(Ipv4Addr::new(192, 168, 10, 7))));
        // The comment compiles to nothing; the limit gets a bucket.
        assert_eq!(r.matches.len(), 1);
        assert!(matches!(r.matches[0], CMatch::Limit { slot: 0, .. }));
        assert_eq!(c.limits, 1);
        // 3 rules + 4 chain slots.
        assert_eq!(c.counters, 7);
        assert!(c.table(Table::Nat).is_none());
        assert_eq!(c.logs.len(), 1);
    }

    #[test]
    fn missing_chain_is_an_error() {
        let mut set = rule_set();
        set.tables[0].chains[0]
            .rules
            .push(Rule::new(Target::Goto("NOPE".into())));
        assert_eq!(
            compile(&set, &[]),
            Err(CompileError::MissingChain {
                table: Table::Filter,
                chain: "NOPE".into()
            })
        );
    }
}
