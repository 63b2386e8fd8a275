//! `ipset` commands, as script lines (`ipset create ...`), as the lines of
//! an `ipset save` / `ipset restore` file (`create ...`, `add ...`) and as
//! `xdpgw ipset` takes them: the syntax of ipset 7.17 for the set types
//! xdpgw has (`dataplane::ipset`).

use std::net::Ipv4Addr;

use xdpgw_dataplane::ipset::{mask, Elem, SetOptions, SetType, MAX_NAME};

use super::lex::Token;
use crate::error::{RuleError, RuleErrorKind};

/// An element as a command gives it: addresses and ports may be ranges
/// (`10.0.0.0/30`, `1.1.1.1-1.1.1.9`, `80-90`), expanded when applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElemSpec {
    /// The address range; for hash:net types, the networks covering it.
    pub lo: u32,
    pub hi: u32,
    /// hash:net types: the prefix length given (32 when a range was).
    pub cidr: u8,
    pub proto: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    /// list:set: the member set.
    pub member: Option<String>,
    pub timeout: Option<u32>,
    pub nomatch: bool,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

impl ElemSpec {
    /// Every element the spec names, in order, until `f` says stop: for
    /// hash:ip each address, for hash:net the largest networks that cover
    /// a range exactly (ipset's `ip_set_range_to_cidr`), each port.
    pub fn for_each<E>(
        &self,
        kind: SetType,
        mut f: impl FnMut(Elem) -> Result<(), E>,
    ) -> Result<(), E> {
        let base = |addr: u32, cidr: u8| Elem {
            addr: addr & mask(cidr),
            cidr,
            proto: self.proto,
            port: 0,
            set: self.member.clone(),
            timeout: self.timeout,
            nomatch: self.nomatch,
            packets: self.packets,
            bytes: self.bytes,
        };
        let mut nets: Vec<(u32, u8)> = Vec::new();
        match kind {
            SetType::HashNet | SetType::HashNetPort if self.lo == self.hi => {
                nets.push((self.lo, self.cidr))
            }
            SetType::HashNet | SetType::HashNetPort => {
                let mut a = u64::from(self.lo);
                let hi = u64::from(self.hi);
                while a <= hi {
                    let mut c = 32u8;
                    while c > 1 {
                        let size = 1u64 << (33 - u32::from(c));
                        if a % size != 0 || a + size - 1 > hi {
                            break;
                        }
                        c -= 1;
                    }
                    nets.push((a as u32, c));
                    a += 1u64 << (32 - u32::from(c));
                }
            }
            _ => {}
        }
        let ports = u32::from(self.port_lo)..=u32::from(self.port_hi);
        match kind {
            SetType::ListSet => f(base(0, 32)),
            SetType::BitmapPort => {
                for p in ports {
                    f(Elem {
                        port: p as u16,
                        ..base(0, 32)
                    })?;
                }
                Ok(())
            }
            SetType::HashIp | SetType::HashIpPort => {
                for a in u64::from(self.lo)..=u64::from(self.hi) {
                    for p in ports.clone() {
                        f(Elem {
                            port: p as u16,
                            ..base(a as u32, 32)
                        })?;
                    }
                }
                Ok(())
            }
            SetType::HashNet | SetType::HashNetPort => {
                for (a, c) in nets {
                    for p in ports.clone() {
                        f(Elem {
                            port: p as u16,
                            ..base(a, c)
                        })?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// One ipset command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetCommand {
    Create {
        name: String,
        kind: SetType,
        opts: SetOptions,
    },
    Add {
        name: String,
        elem: ElemSpec,
    },
    Del {
        name: String,
        elem: ElemSpec,
    },
    Test {
        name: String,
        elem: ElemSpec,
        /// The element as typed, for ipset's answer.
        text: String,
    },
    Flush(Option<String>),
    Destroy(Option<String>),
    Swap(String, String),
    List(Option<String>),
    Save(Option<String>),
}

/// A command and its global options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetLine {
    pub cmd: SetCommand,
    /// `-exist` / `-!`.
    pub exist: bool,
    /// Where the set name stands (errors of applying the command).
    pub at: (u32, u32),
}

fn syntax(t: &Token, msg: impl Into<String>) -> RuleError {
    RuleError::at(t.line, t.col, RuleErrorKind::Syntax(msg.into()))
}

fn bad(t: &Token, what: &str, expected: &str) -> RuleError {
    RuleError::at(
        t.line,
        t.col,
        RuleErrorKind::BadValue {
            option: what.to_string(),
            value: t.text.clone(),
            expected: expected.to_string(),
        },
    )
}

/// Looks up a set's type: `name -> kind` of the sets that exist when the
/// command runs (elements are parsed by their set's type).
pub trait SetKinds {
    fn kind_of(&self, name: &str) -> Option<SetType>;
}

impl SetKinds for xdpgw_dataplane::ipset::SetTable {
    fn kind_of(&self, name: &str) -> Option<SetType> {
        self.by_name(name).map(|s| s.set.kind)
    }
}

fn set_name(t: &Token) -> Result<String, RuleError> {
    if t.text.is_empty() || t.text.len() > MAX_NAME {
        return Err(bad(t, "set name", "a name of 1-31 characters"));
    }
    Ok(t.text.clone())
}

/// Parses the words of an ipset command (without `ipset` itself), as a
/// script line or an `ipset restore` line; `kinds` gives the type of
/// existing sets, which their elements are parsed by.
pub fn parse_set_command(words: &[Token], kinds: &dyn SetKinds) -> Result<SetLine, RuleError> {
    let mut exist = false;
    let mut rest: Vec<&Token> = Vec::new();
    for w in words {
        match w.text.as_str() {
            "-exist" | "-!" | "--exist" => exist = true,
            "-q" | "-quiet" | "--quiet" => {}
            _ => rest.push(w),
        }
    }
    let Some(&first) = rest.first() else {
        return Err(match words.first() {
            Some(t) => syntax(t, "an ipset command needs a command such as create or add"),
            None => RuleError::at(0, 0, RuleErrorKind::Syntax("empty ipset command".into())),
        });
    };
    let args = &rest[1..];
    let name_at = |i: usize| -> Result<&Token, RuleError> {
        args.get(i)
            .copied()
            .ok_or_else(|| syntax(first, format!("'{}' needs a set name", first.text)))
    };
    let opt_name = |i: usize| -> Result<Option<String>, RuleError> {
        args.get(i).map(|t| set_name(t)).transpose()
    };
    let at = args
        .first()
        .map_or((first.line, first.col), |t| (t.line, t.col));
    let no_more = |from: usize| -> Result<(), RuleError> {
        match args.get(from) {
            Some(t) => Err(syntax(t, format!("unexpected '{}'", t.text))),
            None => Ok(()),
        }
    };
    let cmd = match first.text.as_str() {
        "create" | "n" | "-N" | "--create" => {
            let name = set_name(name_at(0)?)?;
            let tt = args
                .get(1)
                .copied()
                .ok_or_else(|| syntax(first, "create needs a set name and a type"))?;
            let kind = SetType::from_name(&tt.text).ok_or_else(|| {
                bad(
                    tt,
                    "set type",
                    "hash:ip, hash:net, hash:ip,port, hash:net,port, bitmap:port or list:set",
                )
            })?;
            let opts = parse_create_options(kind, &args[2..], tt)?;
            SetCommand::Create { name, kind, opts }
        }
        "add" | "a" | "-A" | "--add" | "del" | "d" | "-D" | "--del" | "test" | "t" | "-T"
        | "--test" => {
            let nt = name_at(0)?;
            let name = set_name(nt)?;
            let et = args
                .get(1)
                .copied()
                .ok_or_else(|| syntax(first, format!("'{}' needs an element", first.text)))?;
            let kind = kinds.kind_of(&name).ok_or_else(|| {
                RuleError::at(
                    nt.line,
                    nt.col,
                    RuleErrorKind::Semantic("The set with the given name does not exist".into()),
                )
            })?;
            let elem = parse_elem(kind, et, &args[2..])?;
            match first.text.as_str() {
                "add" | "a" | "-A" | "--add" => SetCommand::Add { name, elem },
                "del" | "d" | "-D" | "--del" => SetCommand::Del { name, elem },
                _ => SetCommand::Test {
                    name,
                    elem,
                    text: et.text.clone(),
                },
            }
        }
        "flush" | "f" | "-F" | "--flush" => {
            no_more(1)?;
            SetCommand::Flush(opt_name(0)?)
        }
        "destroy" | "x" | "-X" | "--destroy" => {
            no_more(1)?;
            SetCommand::Destroy(opt_name(0)?)
        }
        "swap" | "w" | "-W" | "--swap" => {
            let a = set_name(name_at(0)?)?;
            let b = set_name(name_at(1)?)?;
            no_more(2)?;
            SetCommand::Swap(a, b)
        }
        "list" | "l" | "-L" | "--list" => {
            no_more(1)?;
            SetCommand::List(opt_name(0)?)
        }
        "save" | "s" | "-S" | "--save" => {
            no_more(1)?;
            SetCommand::Save(opt_name(0)?)
        }
        "rename" | "e" | "-E" | "restore" | "-R" | "version" | "help" => {
            return Err(syntax(
                first,
                format!("ipset {} is not supported here", first.text),
            ))
        }
        _ => {
            return Err(syntax(
                first,
                format!("No command specified: unknown argument {}", first.text),
            ))
        }
    };
    Ok(SetLine { cmd, exist, at })
}

fn number<T: std::str::FromStr>(
    t: Option<&&Token>,
    opt: &Token,
    what: &str,
) -> Result<T, RuleError> {
    let t = t.ok_or_else(|| {
        RuleError::at(
            opt.line,
            opt.col,
            RuleErrorKind::MissingValue {
                option: opt.text.clone(),
            },
        )
    })?;
    t.text.parse().map_err(|_| bad(t, &opt.text, what))
}

fn parse_create_options(
    kind: SetType,
    args: &[&Token],
    type_tok: &Token,
) -> Result<SetOptions, RuleError> {
    let mut o = SetOptions::default();
    let mut range = None;
    let mut i = 0;
    while i < args.len() {
        let t = args[i];
        let v = args.get(i + 1);
        let hash_only = |t: &Token| -> Result<(), RuleError> {
            if kind.is_hash() {
                Ok(())
            } else {
                Err(syntax(
                    t,
                    format!(
                        "Unknown argument: `{}' (not an option of {})",
                        t.text,
                        kind.name()
                    ),
                ))
            }
        };
        match t.text.as_str() {
            "family" => {
                hash_only(t)?;
                let f = v.ok_or_else(|| syntax(t, "family needs inet"))?;
                match f.text.as_str() {
                    "inet" | "ipv4" => {}
                    "inet6" | "ipv6" => {
                        return Err(syntax(
                            f,
                            "family inet6: IPv6 sets are not supported (xdpgw is IPv4 only)",
                        ))
                    }
                    _ => return Err(bad(f, "family", "inet")),
                }
                i += 2;
            }
            "hashsize" => {
                hash_only(t)?;
                let n: u32 = number(v, t, "a hash size")?;
                o.hashsize = SetOptions::round_hashsize(n);
                i += 2;
            }
            "maxelem" => {
                hash_only(t)?;
                o.maxelem = number(v, t, "a number of elements")?;
                i += 2;
            }
            "bucketsize" => {
                hash_only(t)?;
                let n: u8 = number(v, t, "a bucket size 2-12")?;
                // The kernel rounds it up to even and caps it at 12.
                o.bucketsize = n.clamp(2, 12).next_multiple_of(2);
                i += 2;
            }
            "initval" => {
                hash_only(t)?;
                let tv = v.ok_or_else(|| syntax(t, "initval needs a value"))?;
                let s = tv.text.as_str();
                let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                };
                o.initval = parsed.ok_or_else(|| bad(tv, "initval", "a 32-bit number"))?;
                i += 2;
            }
            "timeout" => {
                o.timeout = Some(number(v, t, "a timeout in seconds")?);
                i += 2;
            }
            "counters" => {
                o.counters = true;
                i += 1;
            }
            "range" if kind == SetType::BitmapPort => {
                let tv = v.ok_or_else(|| syntax(t, "range needs FROM-TO"))?;
                let (lo, hi) =
                    port_range(&tv.text).ok_or_else(|| bad(tv, "range", "FROM-TO ports"))?;
                range = Some((lo, hi));
                i += 2;
            }
            "size" if kind == SetType::ListSet => {
                o.size = number::<u32>(v, t, "a list size")?.max(4);
                i += 2;
            }
            "comment" | "skbinfo" | "forceadd" | "netmask" | "bitmask" | "markmask" => {
                return Err(syntax(
                    t,
                    format!("the create option '{}' is not supported yet", t.text),
                ))
            }
            _ => {
                return Err(syntax(t, format!("Unknown argument: `{}'", t.text)));
            }
        }
    }
    if kind == SetType::BitmapPort {
        o.range = range.ok_or_else(|| {
            syntax(
                type_tok,
                "Syntax error: mandatory option 'range' is missing",
            )
        })?;
    }
    Ok(o)
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    Some((a.min(b), a.max(b)))
}

fn ipv4(s: &str) -> Option<u32> {
    s.parse::<Ipv4Addr>().ok().map(u32::from)
}

/// `[proto:]port[-port]`: tcp and udp (a plain port is tcp, as ipset).
fn proto_port(t: &Token, s: &str) -> Result<(u8, u16, u16), RuleError> {
    let (proto, ports) = match s.split_once(':') {
        Some(("tcp", p)) => (6, p),
        Some(("udp", p)) => (17, p),
        Some((other, _)) => {
            return Err(syntax(
                t,
                format!(
                    "protocol '{other}' in a set element is not supported yet; supported: tcp, udp"
                ),
            ))
        }
        None => (6, s),
    };
    let (lo, hi) = port_range(ports).ok_or_else(|| bad(t, "element", "[tcp:|udp:]PORT[-PORT]"))?;
    Ok((proto, lo, hi))
}

/// An address, `addr/cidr` or `from-to`: the range and the prefix length.
fn addr_spec(t: &Token, s: &str, net: bool) -> Result<(u32, u32, u8), RuleError> {
    if let Some((a, c)) = s.split_once('/') {
        let a = ipv4(a).ok_or_else(|| bad(t, "element", "an IPv4 address"))?;
        let c: u8 = c
            .parse()
            .ok()
            .filter(|c| *c <= 32)
            .ok_or_else(|| syntax(t, format!("Syntax error: '{c}' is out of range 0-32")))?;
        if c == 0 {
            return Err(syntax(
                t,
                "The value of the CIDR parameter of the IP address is invalid",
            ));
        }
        let lo = a & mask(c);
        return Ok(if net {
            (lo, lo, c)
        } else {
            (lo, lo | !mask(c), 32)
        });
    }
    if let Some((a, b)) = s.split_once('-') {
        let lo = ipv4(a).ok_or_else(|| bad(t, "element", "an IPv4 address"))?;
        let hi = ipv4(b).ok_or_else(|| bad(t, "element", "an IPv4 address"))?;
        return Ok((lo.min(hi), lo.max(hi), 32));
    }
    let a = ipv4(s).ok_or_else(|| bad(t, "element", "an IPv4 address"))?;
    Ok((a, a, 32))
}

/// An element of a set of type `kind` and its options (`timeout N`,
/// `nomatch`, `packets N`, `bytes N`).
pub fn parse_elem(kind: SetType, et: &Token, opts: &[&Token]) -> Result<ElemSpec, RuleError> {
    let mut e = ElemSpec {
        lo: 0,
        hi: 0,
        cidr: 32,
        proto: 0,
        port_lo: 0,
        port_hi: 0,
        member: None,
        timeout: None,
        nomatch: false,
        packets: None,
        bytes: None,
    };
    let s = et.text.as_str();
    match kind {
        SetType::HashIp | SetType::HashNet => {
            (e.lo, e.hi, e.cidr) = addr_spec(et, s, kind == SetType::HashNet)?;
        }
        SetType::HashIpPort | SetType::HashNetPort => {
            let (a, p) = s
                .split_once(',')
                .ok_or_else(|| bad(et, "element", "ADDRESS,[PROTO:]PORT"))?;
            (e.lo, e.hi, e.cidr) = addr_spec(et, a, kind == SetType::HashNetPort)?;
            (e.proto, e.port_lo, e.port_hi) = proto_port(et, p)?;
        }
        SetType::BitmapPort => {
            let p = s
                .strip_prefix("tcp:")
                .or_else(|| s.strip_prefix("udp:"))
                .unwrap_or(s);
            (e.port_lo, e.port_hi) =
                port_range(p).ok_or_else(|| bad(et, "element", "PORT[-PORT]"))?;
        }
        SetType::ListSet => e.member = Some(set_name(et)?),
    }
    if kind.is_hash() && e.lo == 0 && e.hi == 0 && (!kind.has_net() || e.cidr == 32) {
        return Err(syntax(
            et,
            "Null-valued element, cannot be stored in a hash type of set",
        ));
    }
    let mut i = 0;
    while i < opts.len() {
        let t = opts[i];
        match t.text.as_str() {
            "timeout" => {
                e.timeout = Some(number(opts.get(i + 1), t, "a timeout in seconds")?);
                i += 2;
            }
            "packets" => {
                e.packets = Some(number(opts.get(i + 1), t, "a packet count")?);
                i += 2;
            }
            "bytes" => {
                e.bytes = Some(number(opts.get(i + 1), t, "a byte count")?);
                i += 2;
            }
            "nomatch" if kind.has_net() => {
                e.nomatch = true;
                i += 1;
            }
            "before" | "after" if kind == SetType::ListSet => {
                return Err(syntax(
                    t,
                    format!("list:set '{}' is not supported yet", t.text),
                ))
            }
            _ => return Err(syntax(t, format!("Unknown argument: `{}'", t.text))),
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdpgw_dataplane::ipset::SetTable;

    fn toks(s: &str) -> Vec<Token> {
        s.split_whitespace()
            .enumerate()
            .map(|(i, w)| Token {
                text: w.to_string(),
                line: 1,
                col: i as u32 + 1,
            })
            .collect()
    }

    #[test]
    fn ranges_become_the_networks_ipset_makes() {
        let mut t = SetTable::default();
        t.create("n", SetType::HashNet, SetOptions::default(), false)
            .expect("create");
        let l = parse_set_command(&toks("add n 10.2.0.0-10.2.1.255"), &t).expect("parse");
        let SetCommand::Add { elem, .. } = l.cmd else {
            panic!("not an add: {l:?}");
        };
        let mut nets = Vec::new();
        elem.for_each(SetType::HashNet, |e| {
            nets.push((Ipv4Addr::from(e.addr), e.cidr));
            Ok::<(), ()>(())
        })
        .expect("each");
        assert_eq!(nets, vec![(Ipv4Addr::new(10, 2, 0, 0), 23)]);
    }

    #[test]
    fn errors_as_ipset_says_them() {
        let t = SetTable::default();
        let e = parse_set_command(&toks("add nope 1.2.3.4"), &t).expect_err("no set");
        assert_eq!((e.line, e.column), (1, 2));
        assert_eq!(
            e.kind.to_string(),
            "The set with the given name does not exist"
        );
        let e = parse_set_command(&toks("create v6 hash:net family inet6"), &t).expect_err("v6");
        assert!(e.to_string().contains("inet6"), "{e}");
        let l = parse_set_command(&toks("-exist create b bitmap:port range 0-1024"), &t)
            .expect("bitmap");
        assert!(l.exist);
    }
}
