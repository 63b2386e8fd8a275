//! `xdpgw trace` and `xdpgw explain`: the packet match they take (iptables
//! match syntax, or ip6tables' for IPv6 packets, read by the rule parser)
//! and the text of a packet's trace (each table, chain and rule it passed,
//! with the rules as iptables-save or ip6tables-save prints them, its
//! conntrack state and why, the NAT applied, the verdict).

use std::fmt::Write;
use std::net::IpAddr;

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::{CtState, InvalidReason, TcpState};
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::flow::{Tuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use xdpgw_dataplane::rule::{Family, Hook, Rule, RuleSet, Table, Target};
use xdpgw_dataplane::trace::{PacketTrace, TraceEvent};

use crate::error::{RuleError, RuleErrorKind};
use crate::parse::lex::{split_long_options, Token};
use crate::parse::rule::parse_rule_in;

/// The default number of packets `xdpgw trace` follows.
pub const DEFAULT_COUNT: u32 = 10;

/// An error in a trace match: `argument N` is the word's position among the
/// match words (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchError {
    pub argument: u32,
    pub kind: RuleErrorKind,
}

impl std::fmt::Display for MatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "argument {}: {}", self.argument, self.kind)
    }
}

impl std::error::Error for MatchError {}

fn match_error(e: RuleError) -> MatchError {
    MatchError {
        argument: e.column,
        kind: e.kind,
    }
}

/// Reads match words (`-p tcp -s 192.168.10.2 --dport 80`) as the body of
/// an `-A` rule of filter FORWARD, with the rule parser: the same syntax and
/// the same errors as in rule files, placed at the word's position. `words`
/// pairs each word with its position. A target (`-j`, `-g`) is refused.
pub fn parse_match_at(words: &[(u32, String)]) -> Result<Rule, MatchError> {
    parse_match_in(Family::Ipv4, words)
}

/// [`parse_match_at`] as a rule of `family` (ip6tables syntax for IPv6).
pub fn parse_match_in(family: Family, words: &[(u32, String)]) -> Result<Rule, MatchError> {
    let mut toks = Vec::with_capacity(words.len());
    for (pos, w) in words {
        let split = split_long_options(vec![Token {
            text: w.clone(),
            line: 1,
            col: *pos,
        }]);
        toks.extend(split.into_iter().map(|t| Token { col: *pos, ..t }));
    }
    let start = (1, words.first().map_or(1, |w| w.0));
    let parsed =
        parse_rule_in(family, &toks, start, Table::Filter, "FORWARD").map_err(match_error)?;
    if parsed.rule.target != Target::None {
        return Err(MatchError {
            argument: parsed.target_at.1,
            kind: RuleErrorKind::Semantic(
                "a packet match takes no target (-j/-g): it only selects or describes packets"
                    .into(),
            ),
        });
    }
    Ok(parsed.rule)
}

/// [`parse_match_at`] with the words at positions 1, 2, ...
pub fn parse_match(words: &[String]) -> Result<Rule, MatchError> {
    parse_match_at(&positioned(words))
}

fn positioned(words: &[String]) -> Vec<(u32, String)> {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| (i as u32 + 1, w.clone()))
        .collect()
}

/// A packet match for each family it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyMatch {
    /// The match as an iptables rule: IPv4 packets.
    pub v4: Option<Rule>,
    /// The match as an ip6tables rule: IPv6 packets.
    pub v6: Option<Rule>,
}

/// Whether `w` is an IPv6 address or network (`2001:db8::1`, `fe80::/10`).
fn ipv6_word(w: &str) -> bool {
    let w = w.trim_start_matches('!');
    let addr = w.split_once('/').map_or(w, |(a, _)| a);
    w.contains(':') && addr.parse::<std::net::Ipv6Addr>().is_ok()
}

/// The family `words` ask for: `-6`/`--ipv6` (or an IPv6 address among
/// them) IPv6, `-4`/`--ipv4` IPv4, else none in particular.
pub fn family_of(words: &[(u32, String)]) -> Option<Family> {
    if words.iter().any(|(_, w)| w == "-6" || w == "--ipv6") {
        return Some(Family::Ipv6);
    }
    if words.iter().any(|(_, w)| w == "-4" || w == "--ipv4") {
        return Some(Family::Ipv4);
    }
    words
        .iter()
        .any(|(_, w)| ipv6_word(w))
        .then_some(Family::Ipv6)
}

/// Reads a trace's match words for both families: with `-6` (or an IPv6
/// address) as an ip6tables match only, with `-4` as an iptables match
/// only; otherwise as each family's match where it reads as one (`-p tcp
/// --dport 80` traces IPv4 and IPv6 packets, `-s 192.168.10.2` IPv4 ones,
/// `-p ipv6-icmp --icmpv6-type echo-request` IPv6 ones). The error is the
/// IPv4 reading's when neither reads.
pub fn parse_match_families(words: &[String]) -> Result<FamilyMatch, MatchError> {
    let at = positioned(words);
    match family_of(&at) {
        Some(Family::Ipv6) => Ok(FamilyMatch {
            v4: None,
            v6: Some(parse_match_in(Family::Ipv6, &at)?),
        }),
        Some(Family::Ipv4) => Ok(FamilyMatch {
            v4: Some(parse_match_in(Family::Ipv4, &at)?),
            v6: None,
        }),
        None => {
            let v4 = parse_match_in(Family::Ipv4, &at);
            let v6 = parse_match_in(Family::Ipv6, &at).ok();
            match (v4, v6) {
                (Err(_), Some(v6)) => Ok(FamilyMatch {
                    v4: None,
                    v6: Some(v6),
                }),
                (Err(e), None) => Err(e),
                (Ok(v4), v6) => Ok(FamilyMatch { v4: Some(v4), v6 }),
            }
        }
    }
}

/// What a trace's text names: interfaces by index, and the rule set the
/// rule indices refer to.
pub struct TraceNames {
    pub ifaces: Vec<String>,
    pub rules: RuleSet,
    /// [`xdpgw_dataplane::trace::rules_id`] of the compiled set made from
    /// `rules`: a record from another set (a reload in between) gets rule
    /// numbers without their text.
    pub rules_id: usize,
    /// The IPv6 rule set (`rules6`), for IPv6 packets' records.
    pub rules6: RuleSet,
    /// The `rules_id` of the compiled IPv6 set made from `rules6`.
    pub rules6_id: usize,
}

impl TraceNames {
    fn iface(&self, i: u8) -> String {
        self.ifaces
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("interface {i}"))
    }

    fn chain_name(
        &self,
        (current, v6): (bool, bool),
        table: Table,
        hook: Hook,
        chain: u16,
    ) -> String {
        if current {
            if let Some(c) = self
                .set(v6)
                .table(table)
                .and_then(|t| t.chains.get(usize::from(chain)))
            {
                return c.name.clone();
            }
        }
        if chain == 0 {
            hook.name().to_string()
        } else {
            format!("chain {chain}")
        }
    }

    fn rule(
        &self,
        (current, v6): (bool, bool),
        table: Table,
        chain: u16,
        rule: u32,
    ) -> Option<(String, &Rule)> {
        if !current {
            return None;
        }
        let c = self
            .set(v6)
            .table(table)
            .and_then(|t| t.chains.get(usize::from(chain)))?;
        let r = c.rules.get(rule as usize)?;
        let mut text = String::new();
        let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
        crate::save::render_rule_in(&mut text, c, r, false, family);
        Some((text, r))
    }

    /// The rule set of the family (`v6`: IPv6's).
    fn set(&self, v6: bool) -> &RuleSet {
        if v6 {
            &self.rules6
        } else {
            &self.rules
        }
    }
}

/// The name of an ICMP type/code, as iptables names it (`v6`: an ICMPv6
/// type, as ip6tables names it).
fn icmp_name(ty: u8, code: u8, v6: bool) -> Option<&'static str> {
    let t: &[(&str, u8, u8, u8)] = if v6 {
        &crate::parse::value::ICMP6_TYPES
    } else {
        &crate::parse::value::ICMP_TYPES
    };
    t.iter()
        .find(|e| e.1 == ty && e.2 == code && e.3 == code)
        .or_else(|| t.iter().find(|e| e.1 == ty && e.2 == 0 && e.3 == 0xff))
        .map(|e| e.0)
}

/// TCP flags as `SYN,ACK`.
pub fn tcp_flags(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// `192.168.10.2:40000`, `[2001:db8::2]:40000` (as ip6tables writes an
/// IPv6 address with a port), or the address alone for a protocol without
/// ports.
pub fn endpoint(a: IpAddr, port: u16, proto: u8) -> String {
    match (a, proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        (IpAddr::V4(a), true) => format!("{a}:{port}"),
        (IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, false) => a.to_string(),
    }
}

/// `tcp 192.168.10.2:40000 > 203.0.113.254:80 [SYN]`, `icmpv6
/// 2001:db8:10::2 > 2001:db8:20::254 echo-request id 1`.
fn describe(t: &Tuple<IpAddr>, tcp: u8, icmp: Option<(u8, u8)>) -> String {
    let v6 = t.src.is_ipv6();
    let proto = match t.proto {
        IPPROTO_TCP => "tcp".to_string(),
        IPPROTO_UDP => "udp".to_string(),
        IPPROTO_ICMP if !v6 => "icmp".to_string(),
        IPPROTO_ICMPV6 if v6 => "icmpv6".to_string(),
        p => crate::netdb::protocol_name(p),
    };
    let mut s = format!(
        "{proto} {} > {}",
        endpoint(t.src, t.sport, t.proto),
        endpoint(t.dst, t.dport, t.proto)
    );
    if t.proto == IPPROTO_TCP {
        let _ = write!(s, " [{}]", tcp_flags(tcp));
    }
    if let Some((ty, code)) = icmp {
        match icmp_name(ty, code, v6) {
            Some(n) => {
                let _ = write!(s, " {n}");
            }
            None => {
                let _ = write!(s, " type {ty} code {code}");
            }
        }
        let query = if v6 {
            matches!(ty, 128 | 129)
        } else {
            matches!(ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
        };
        if query {
            let _ = write!(s, " id {}", t.sport);
        }
    }
    s
}

/// What a rule's target did, in a word or two.
fn target_text(r: &Rule) -> String {
    match &r.target {
        Target::None => "match (no target), continue".into(),
        Target::Jump(c) => format!("jump to {c}"),
        Target::Goto(c) => format!("goto {c}"),
        Target::Reject(w) => format!("REJECT with {}", w.name()),
        Target::Log(_) => "LOG, continue".into(),
        Target::Dscp(d) => format!("DSCP set 0x{d:02x}, continue"),
        Target::Mark { .. } => "MARK, continue".into(),
        Target::Ttl(_) => "TTL, continue".into(),
        Target::Connmark(_) => "CONNMARK, continue".into(),
        Target::Tcpmss(_) => "TCPMSS, continue".into(),
        Target::Tos(t) => format!("TOS set 0x{:02x}/0x{:02x}, continue", t.value, t.mask),
        Target::Notrack | Target::CtNotrack => format!("{}: not tracked", r.target.name()),
        t => t.name().to_string(),
    }
}

fn is_nat_target(r: &Rule) -> bool {
    matches!(
        r.target,
        Target::Masquerade(_)
            | Target::Snat(_)
            | Target::Dnat(_)
            | Target::Snat6(_)
            | Target::Dnat6(_)
            | Target::Redirect(_)
    )
}

/// `192.168.10.2:40000 -> 203.0.113.1:40000`: the endpoint NAT changed.
fn nat_change(before: &Tuple<IpAddr>, after: &Tuple<IpAddr>) -> String {
    let p = before.proto;
    let mut parts = Vec::new();
    if (before.src, before.sport) != (after.src, after.sport) {
        parts.push(format!(
            "source {} -> {}",
            endpoint(before.src, before.sport, p),
            endpoint(after.src, after.sport, p)
        ));
    }
    if (before.dst, before.dport) != (after.dst, after.dport) {
        parts.push(format!(
            "destination {} -> {}",
            endpoint(before.dst, before.dport, p),
            endpoint(after.dst, after.dport, p)
        ));
    }
    parts.join(", ")
}

/// A conntrack state as `--ctstate` names it.
pub fn ct_name(state: CtState) -> &'static str {
    match state {
        CtState::New => "NEW",
        CtState::Established => "ESTABLISHED",
        CtState::Related => "RELATED",
        CtState::Invalid => "INVALID",
        CtState::Untracked => "UNTRACKED",
    }
}

fn ct_text(
    state: CtState,
    reason: Option<InvalidReason>,
    tcp: Option<TcpState>,
    reply: bool,
    flags: u8,
) -> String {
    let name = ct_name(state);
    match (state, reason) {
        (CtState::Invalid, Some(r)) => match tcp {
            Some(t) if t != TcpState::None => format!(
                "{name} ({}: {} in TCP state {}; {})",
                r.name(),
                tcp_flags(flags),
                t.name(),
                r.text()
            ),
            _ => format!("{name} ({}: {})", r.name(), r.text()),
        },
        (CtState::Untracked, _) => format!("{name} (NOTRACK in raw)"),
        _ => {
            let mut s = name.to_string();
            let mut notes = Vec::new();
            if reply {
                notes.push("reply direction".to_string());
            }
            if let Some(t) = tcp {
                notes.push(format!("TCP {}", t.name()));
            }
            if !notes.is_empty() {
                let _ = write!(s, " ({})", notes.join(", "));
            }
            s
        }
    }
}

fn action_text(a: Action, names: &TraceNames, v6: bool) -> String {
    match a {
        Action::Forward { iface, .. } => format!("sent out {}", names.iface(iface)),
        Action::Host { .. } | Action::HostReassembled { .. } => {
            "delivered to the gateway host (INPUT accepted)".into()
        }
        Action::Emitted { iface, frames } => {
            format!("sent out {} in {frames} fragments", names.iface(iface))
        }
        Action::Drop(r) => format!("dropped ({})", r.name()),
        Action::Consumed => format!(
            "held until the next hop's address resolves ({})",
            resolver(v6)
        ),
    }
}

/// What resolves next hops' addresses in the family.
fn resolver(v6: bool) -> &'static str {
    if v6 {
        "neighbour discovery"
    } else {
        "ARP"
    }
}

/// The text of one traced packet: a header line and one line per step.
pub fn format_packet(n: usize, t: &PacketTrace, names: &TraceNames) -> Vec<String> {
    let v6 = t.tuple.src.is_ipv6();
    let current = if v6 {
        t.rules == names.rules6_id
    } else {
        t.rules == names.rules_id
    };
    let set = (current, v6);
    let mut out = vec![format!(
        "packet {n}: {} {}",
        names.iface(t.in_iface),
        describe(&t.tuple, t.tcp_flags, t.icmp)
    )];
    if !current {
        out.push("  (the rules were reloaded since the trace started: rule text not shown)".into());
    }
    let events = t.events();
    let mut indent = "  ";
    // The flags of the packet whose steps are being shown (for INVALID).
    let mut flags = t.tcp_flags;
    // The last rule or policy that dropped, for the verdict line.
    let mut last_drop: Option<String> = None;
    let mut consumed_nat = vec![false; events.len()];
    let mut generated_open = false;
    // The generated packet is a neighbour solicitation (IPv6's ARP
    // request): sent, not an answer.
    let mut solicitation = false;
    let mut held = None;
    for (i, e) in events.iter().enumerate() {
        match *e {
            TraceEvent::Rule {
                table,
                hook,
                chain,
                rule,
            } => {
                let cname = names.chain_name(set, table, hook, chain);
                let mut line = format!("{indent}{} {cname} rule {}", table.name(), rule + 1);
                if let Some((text, r)) = names.rule(set, table, chain, rule) {
                    let _ = write!(line, " ({text}): {}", target_text(r));
                    if is_nat_target(r) {
                        // The translation this rule decided, applied at this hook.
                        let nat = events.iter().enumerate().skip(i + 1).find(
                            |(_, e)| matches!(e, TraceEvent::Nat { hook: h, .. } if *h == hook),
                        );
                        if let Some((k, TraceEvent::Nat { before, after, .. })) = nat {
                            consumed_nat[k] = true;
                            let _ = write!(line, " {}", nat_change(before, after));
                        }
                    }
                    if matches!(r.target, Target::Drop | Target::Reject(_)) {
                        last_drop = Some(format!("{} {cname} rule {}", table.name(), rule + 1));
                    }
                }
                out.push(line);
            }
            TraceEvent::ChainEnd { table, hook, chain } => {
                let cname = names.chain_name(set, table, hook, chain);
                out.push(format!(
                    "{indent}{} {cname}: end of chain, back to the calling chain",
                    table.name()
                ));
            }
            TraceEvent::Policy {
                table,
                hook,
                chain,
                drop,
            } => {
                let cname = names.chain_name(set, table, hook, chain);
                let p = if drop { "DROP" } else { "ACCEPT" };
                out.push(format!("{indent}{} {cname}: policy {p}", table.name()));
                if drop {
                    last_drop = Some(format!("{} {cname}", table.name()));
                }
            }
            TraceEvent::Conntrack {
                state,
                reason,
                tcp,
                reply,
            } => out.push(format!(
                "{indent}conntrack: {}",
                ct_text(state, reason, tcp, reply, flags)
            )),
            TraceEvent::Nat {
                hook,
                before,
                after,
            } => {
                if !consumed_nat[i] {
                    out.push(format!(
                        "{indent}nat {}: {} (the connection's translation)",
                        hook.name(),
                        nat_change(&before, &after)
                    ));
                }
            }
            TraceEvent::Generated {
                tuple,
                tcp_flags,
                icmp,
            } => {
                flags = tcp_flags;
                solicitation = tuple.src.is_ipv6()
                    && tuple.proto == IPPROTO_ICMPV6
                    && icmp.is_some_and(|(ty, _)| ty == 135);
                let what = if solicitation { "sends" } else { "answers" };
                out.push(format!(
                    "{indent}the gateway {what}: {}",
                    describe(&tuple, tcp_flags, icmp)
                ));
                indent = "    ";
                generated_open = true;
            }
            TraceEvent::Held { iface, hop } => {
                held = Some((iface, hop));
                out.push(format!(
                    "{indent}neighbour: {hop} on {} not resolved yet: held while {} asks for it",
                    names.iface(iface),
                    resolver(v6)
                ));
            }
            TraceEvent::GeneratedEnd { action } => {
                let what = if solicitation {
                    "solicitation"
                } else {
                    "answer"
                };
                out.push(format!("{indent}{what} {}", action_text(action, names, v6)));
                indent = "  ";
                flags = t.tcp_flags;
                generated_open = false;
            }
        }
    }
    if t.truncated {
        out.push(format!(
            "{indent}... (more steps than a trace record holds)"
        ));
    }
    let verdict = match t.action {
        Action::Forward { iface, .. } if generated_open => {
            format!("answered: the answer is sent out {}", names.iface(iface))
        }
        Action::Forward { iface, .. } => format!("forwarded out {}", names.iface(iface)),
        Action::Drop(
            r @ (DropReason::FilterDrop | DropReason::PolicyDrop | DropReason::FilterReject),
        ) => match &last_drop {
            Some(by) => format!("dropped ({} in {by})", r.name()),
            None => format!("dropped ({})", r.name()),
        },
        Action::Consumed => match held {
            Some((iface, _)) => format!(
                "held for {}; sent out {} once its next hop answers (dropped as neigh_unresolved if it does not)",
                resolver(v6),
                names.iface(iface)
            ),
            None => action_text(Action::Consumed, names, v6),
        },
        a => action_text(a, names, v6),
    };
    out.push(format!("  verdict: {verdict}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::explain::{OfflineGateway, PacketSpec};
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use xdpgw_dataplane::trace::TraceFilter;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
    const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const LAN: u8 = 0;
    const WAN: u8 = 1;

    fn conf(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("conf")
            .join(name)
    }

    /// A gateway of conf/gateway.toml with `rules` (default: its own).
    fn gateway(rules: Option<&str>) -> OfflineGateway {
        let cfg = Config::load(&conf("gateway.toml")).expect("conf/gateway.toml loads");
        let set = match rules {
            None => crate::load_rules(&cfg.rules).expect("conf/gateway.rules loads"),
            Some(text) => crate::load_rules_str("test.rules", text).expect("test rules load"),
        };
        let gw = OfflineGateway::new(&cfg, set).expect("gateway");
        gw.know(CLIENT);
        gw.know(SERVER);
        gw
    }

    fn tcp(
        in_iface: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        flags: u8,
    ) -> PacketSpec {
        PacketSpec {
            in_iface,
            tuple: Tuple {
                src: src.into(),
                dst: dst.into(),
                sport,
                dport,
                proto: IPPROTO_TCP,
            },
            tcp_flags: flags,
            seq: 1000,
            ack: if flags & 0x10 != 0 { 5001 } else { 0 },
            icmp: (0, 0),
            tos: 0,
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn filter(gw: &OfflineGateway, m: &str) -> TraceFilter {
        let rule = parse_match(&words(m)).expect("match parses");
        let names: Vec<&str> = gw.names.ifaces.iter().map(String::as_str).collect();
        TraceFilter::new(&rule, &names).expect("filter compiles")
    }

    #[test]
    fn forwarded_new_syn_shows_the_forward_accept_and_the_masquerade() {
        let mut gw = gateway(None);
        let (session, rx) = gw
            .gw
            .tracer
            .start(filter(&gw, "-p tcp -s 192.168.10.2 --dport 80"), 1)
            .expect("trace starts");
        // Not matching (port 443): not recorded, the count stays.
        let (a, _) = gw.send(&tcp(LAN, CLIENT, SERVER, 40001, 443, 0x02));
        assert!(matches!(a, Action::Forward { iface: WAN, .. }), "{a:?}");
        assert!(rx.try_recv().is_err());
        assert_eq!(session.remaining(), 1);
        let (a, _) = gw.send(&tcp(LAN, CLIENT, SERVER, 40000, 80, 0x02));
        assert!(matches!(a, Action::Forward { iface: WAN, .. }), "{a:?}");
        let t = rx.try_recv().expect("the SYN is traced");
        assert_eq!(session.remaining(), 0);
        assert_eq!(t.action, a);
        let ev = t.events();
        assert!(ev.contains(&TraceEvent::Rule {
            table: Table::Filter,
            hook: Hook::Forward,
            chain: 1,
            rule: 3
        }));
        assert!(ev.iter().any(|e| matches!(e,
            TraceEvent::Nat { hook: Hook::Postrouting, before, after }
                if before.src == CLIENT && after.src == GW_WAN && after.sport == 40000)));
        assert!(ev.iter().any(|e| matches!(
            e,
            TraceEvent::Conntrack {
                state: CtState::New,
                ..
            }
        )));
        let text = format_packet(1, &t, &gw.names);
        let expected = [
            "packet 1: lan0 tcp 192.168.10.2:40000 > 203.0.113.254:80 [SYN]",
            "  raw PREROUTING: policy ACCEPT",
            "  conntrack: NEW",
            "  mangle PREROUTING: policy ACCEPT",
            "  nat PREROUTING: policy ACCEPT",
            "  mangle FORWARD: policy ACCEPT",
            "  filter FORWARD rule 4 (-A FORWARD -s 192.168.10.0/24 -i lan0 -o wan0 -j ACCEPT): ACCEPT",
            "  mangle POSTROUTING: policy ACCEPT",
            "  nat POSTROUTING rule 1 (-A POSTROUTING -s 192.168.10.0/24 -o wan0 -j MASQUERADE): MASQUERADE source 192.168.10.2:40000 -> 203.0.113.1:40000",
            "  verdict: forwarded out wan0",
        ];
        assert_eq!(text, expected);
        // The count is used up: nothing more is recorded.
        gw.send(&tcp(LAN, CLIENT, SERVER, 40002, 80, 0x02));
        assert!(rx.try_recv().is_err());
        gw.gw.tracer.stop(&session);
        assert!(!gw.gw.tracer.active());
    }

    #[test]
    fn a_dropped_port_shows_log_drop_and_the_drop() {
        let mut gw = gateway(None);
        let (a, _, t) = gw
            .trace(&tcp(WAN, SERVER, GW_WAN, 40000, 23, 0x02))
            .expect("traced");
        assert_eq!(a, Action::Drop(DropReason::FilterDrop));
        let text = format_packet(1, &t, &gw.names).join("\n");
        for want in [
            "  raw PREROUTING: policy ACCEPT",
            "  filter INPUT rule 8 (-A INPUT -j LOG_DROP): jump to LOG_DROP",
            "  filter LOG_DROP rule 1 (-A LOG_DROP -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"xdpgw drop: \" --log-level 6): LOG, continue",
            "  filter LOG_DROP rule 2 (-A LOG_DROP -j DROP): DROP",
            "  verdict: dropped (filter_drop in filter LOG_DROP rule 2)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_policy_drop_names_the_policy_and_a_user_chain_return_is_shown() {
        let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:CHECK - [0:0]\n-A FORWARD -j CHECK\n-A CHECK -p udp -j ACCEPT\nCOMMIT\n";
        let mut gw = gateway(Some(rules));
        let (a, _, t) = gw
            .trace(&tcp(LAN, CLIENT, SERVER, 40000, 80, 0x02))
            .expect("traced");
        assert_eq!(a, Action::Drop(DropReason::PolicyDrop));
        let text = format_packet(1, &t, &gw.names);
        assert_eq!(
            &text[1..],
            [
                "  conntrack: NEW",
                "  filter FORWARD rule 1 (-A FORWARD -j CHECK): jump to CHECK",
                "  filter CHECK: end of chain, back to the calling chain",
                "  filter FORWARD: policy DROP",
                "  verdict: dropped (policy_drop in filter FORWARD)",
            ]
        );
    }

    #[test]
    fn an_invalid_packet_shows_its_reason() {
        let mut gw = gateway(None);
        // No entry: a SYN/ACK cannot open one.
        let (a, _, t) = gw
            .trace(&tcp(LAN, CLIENT, SERVER, 40000, 80, 0x12))
            .expect("traced");
        assert_eq!(a, Action::Drop(DropReason::FilterDrop));
        let text = format_packet(1, &t, &gw.names).join("\n");
        assert!(
            text.contains("  conntrack: INVALID (tcp_new_invalid: no conntrack entry and the segment cannot open a connection (SYN/ACK, FIN or RST))"),
            "{text}"
        );
        assert!(text.contains(
            "  filter FORWARD rule 2 (-A FORWARD -m conntrack --ctstate INVALID -j DROP): DROP"
        ));
        // An established connection, then a SYN from the server's side.
        gw.send(&tcp(LAN, CLIENT, SERVER, 40000, 80, 0x02));
        let mut synack = tcp(WAN, SERVER, GW_WAN, 80, 40000, 0x12);
        synack.seq = 5000;
        synack.ack = 1001;
        assert!(matches!(
            gw.send(&synack).0,
            Action::Forward { iface: LAN, .. }
        ));
        let mut ack = tcp(LAN, CLIENT, SERVER, 40000, 80, 0x10);
        ack.seq = 1001;
        assert!(matches!(
            gw.send(&ack).0,
            Action::Forward { iface: WAN, .. }
        ));
        let (_, _, t) = gw
            .trace(&tcp(WAN, SERVER, GW_WAN, 80, 40000, 0x02))
            .expect("traced");
        assert!(t.events().iter().any(|e| matches!(
            e,
            TraceEvent::Conntrack {
                state: CtState::Invalid,
                reason: Some(InvalidReason::TcpInvalidTransition),
                tcp: Some(TcpState::Established),
                ..
            }
        )));
        let text = format_packet(1, &t, &gw.names).join("\n");
        assert!(
            text.contains("  conntrack: INVALID (tcp_invalid_transition: SYN in TCP state ESTABLISHED; segment not allowed"),
            "{text}"
        );
    }

    #[test]
    fn the_filter_sees_the_conntrack_state_and_the_output_interface() {
        let mut gw = gateway(None);
        let (_session, rx) = gw
            .gw
            .tracer
            .start(filter(&gw, "-o wan0 -m conntrack --ctstate INVALID"), 5)
            .expect("trace starts");
        gw.send(&tcp(LAN, CLIENT, SERVER, 40000, 80, 0x02)); // NEW: not traced
        gw.send(&tcp(WAN, SERVER, GW_WAN, 80, 1, 0x12)); // INVALID, to the gateway: no -o wan0
        assert!(rx.try_recv().is_err());
        gw.send(&tcp(LAN, CLIENT, SERVER, 40009, 80, 0x12)); // INVALID, routed out of wan0
        let t = rx.try_recv().expect("traced");
        assert_eq!(t.tuple.sport, 40009);
        assert_eq!(t.out_iface, Some(WAN));
    }

    #[test]
    fn a_reject_shows_the_answer_and_its_way_out() {
        let mut gw = gateway(None);
        let (a, _, t) = gw
            .trace(&tcp(LAN, CLIENT, SERVER, 40000, 25, 0x02))
            .expect("traced");
        assert_eq!(a, Action::Drop(DropReason::FilterReject));
        let text = format_packet(1, &t, &gw.names).join("\n");
        for want in [
            "REJECT with tcp-reset",
            "  the gateway answers: tcp 203.0.113.254:25 > 192.168.10.2:40000 [RST,ACK]",
            "    filter OUTPUT: policy ACCEPT",
            "    answer sent out lan0",
            "  verdict: dropped (filter_reject in filter FORWARD rule 3)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_packet_waiting_for_arp_says_so() {
        let mut gw = gateway(None);
        let unknown = Ipv4Addr::new(203, 0, 113, 77);
        let (a, _, t) = gw
            .trace(&tcp(LAN, CLIENT, unknown, 40000, 80, 0x02))
            .expect("traced");
        assert_eq!(a, Action::Consumed);
        assert!(t.events().contains(&TraceEvent::Held {
            iface: WAN,
            hop: unknown.into()
        }));
        let text = format_packet(1, &t, &gw.names);
        assert_eq!(
            text[text.len() - 2..],
            [
                "  neighbour: 203.0.113.77 on wan0 not resolved yet: held while ARP asks for it",
                "  verdict: held for ARP; sent out wan0 once its next hop answers (dropped as neigh_unresolved if it does not)",
            ]
        );
    }

    #[test]
    fn match_errors_name_the_argument_as_rule_errors_do() {
        let e = parse_match(&words("-p tcp --dport 99999")).expect_err("bad port");
        assert_eq!(
            e.to_string(),
            "argument 4: bad value '99999' for --dport: a port 0-65535"
        );
        let e = parse_match(&words("-p tcp -m foo")).expect_err("bad match");
        assert!(
            e.to_string().starts_with("argument 4: unknown match 'foo'"),
            "{e}"
        );
        let e = parse_match(&words("--dport 80")).expect_err("no -p");
        assert!(e.to_string().contains("--dport"), "{e}");
        let e = parse_match(&words("-p tcp -j DROP")).expect_err("a target");
        assert_eq!(e.argument, 4);
        assert!(e.to_string().contains("no target"), "{e}");
        // --opt=value is split as getopt does, both halves at its position.
        let r = parse_match(&words("-p tcp --dport=80")).expect("parses");
        assert_eq!(r.matches.len(), 1);
        assert!(parse_match(&[]).is_ok(), "no words: every packet");
    }
}
