//! `xdpgw trace` and `xdpgw explain`: the packet match they take (iptables
//! match syntax, read by the rule parser) and the text of a packet's trace
//! (each table, chain and rule it passed, with the rules as iptables-save
//! prints them, its conntrack state and why, the NAT applied, the verdict).

use std::fmt::Write;
use std::net::Ipv4Addr;

use xdpgw_dataplane::conntrack::{CtState, InvalidReason, TcpState};
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::flow::{Tuple, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use xdpgw_dataplane::pipeline::Action;
use xdpgw_dataplane::rule::{Hook, Rule, RuleSet, Table, Target};
use xdpgw_dataplane::trace::{PacketTrace, TraceEvent};

use crate::error::{RuleError, RuleErrorKind};
use crate::parse::lex::{split_long_options, Token};
use crate::parse::rule::parse_rule;

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
    let parsed = parse_rule(&toks, start, Table::Filter, "FORWARD").map_err(match_error)?;
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
    let at: Vec<(u32, String)> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (i as u32 + 1, w.clone()))
        .collect();
    parse_match_at(&at)
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
}

impl TraceNames {
    fn iface(&self, i: u8) -> String {
        self.ifaces
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("interface {i}"))
    }

    fn chain_name(&self, current: bool, table: Table, hook: Hook, chain: u16) -> String {
        if current {
            if let Some(c) = self
                .rules
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

    fn rule(&self, current: bool, table: Table, chain: u16, rule: u32) -> Option<(String, &Rule)> {
        if !current {
            return None;
        }
        let c = self
            .rules
            .table(table)
            .and_then(|t| t.chains.get(usize::from(chain)))?;
        let r = c.rules.get(rule as usize)?;
        let mut text = String::new();
        crate::save::render_rule(&mut text, c, r, false);
        Some((text, r))
    }
}

/// The name of an ICMP type/code, as iptables names it.
fn icmp_name(ty: u8, code: u8) -> Option<&'static str> {
    let t = &crate::parse::value::ICMP_TYPES;
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

fn endpoint(a: Ipv4Addr, port: u16, proto: u8) -> String {
    if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        format!("{a}:{port}")
    } else {
        a.to_string()
    }
}

/// `tcp 192.168.10.2:40000 > 203.0.113.254:80 [SYN]`.
fn describe(t: &Tuple, tcp: u8, icmp: Option<(u8, u8)>) -> String {
    let proto = match t.proto {
        IPPROTO_TCP => "tcp".to_string(),
        IPPROTO_UDP => "udp".to_string(),
        IPPROTO_ICMP => "icmp".to_string(),
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
        match icmp_name(ty, code) {
            Some(n) => {
                let _ = write!(s, " {n}");
            }
            None => {
                let _ = write!(s, " type {ty} code {code}");
            }
        }
        if matches!(ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
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
        Target::Notrack | Target::CtNotrack => format!("{}: not tracked", r.target.name()),
        t => t.name().to_string(),
    }
}

fn is_nat_target(r: &Rule) -> bool {
    matches!(
        r.target,
        Target::Masquerade(_) | Target::Snat(_) | Target::Dnat(_) | Target::Redirect(_)
    )
}

/// `192.168.10.2:40000 -> 203.0.113.1:40000`: the endpoint NAT changed.
fn nat_change(before: &Tuple, after: &Tuple) -> String {
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

fn action_text(a: Action, names: &TraceNames) -> String {
    match a {
        Action::Forward { iface, .. } => format!("sent out {}", names.iface(iface)),
        Action::Host => "delivered to the gateway host (INPUT accepted)".into(),
        Action::Drop(r) => format!("dropped ({})", r.name()),
        Action::Consumed => {
            "held until the next hop's address resolves (ARP), or answered by the gateway".into()
        }
    }
}

/// The text of one traced packet: a header line and one line per step.
pub fn format_packet(n: usize, t: &PacketTrace, names: &TraceNames) -> Vec<String> {
    let current = t.rules == names.rules_id;
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
    for (i, e) in events.iter().enumerate() {
        match *e {
            TraceEvent::Rule {
                table,
                hook,
                chain,
                rule,
            } => {
                let cname = names.chain_name(current, table, hook, chain);
                let mut line = format!("{indent}{} {cname} rule {}", table.name(), rule + 1);
                match names.rule(current, table, chain, rule) {
                    Some((text, r)) => {
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
                    None => {}
                }
                out.push(line);
            }
            TraceEvent::ChainEnd { table, hook, chain } => {
                let cname = names.chain_name(current, table, hook, chain);
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
                let cname = names.chain_name(current, table, hook, chain);
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
                out.push(format!(
                    "{indent}the gateway answers: {}",
                    describe(&tuple, tcp_flags, icmp)
                ));
                indent = "    ";
                generated_open = true;
            }
            TraceEvent::GeneratedEnd { action } => {
                out.push(format!("{indent}answer {}", action_text(action, names)));
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
        a => action_text(a, names),
    };
    out.push(format!("  verdict: {verdict}"));
    out
}
