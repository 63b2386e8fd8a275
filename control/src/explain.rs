//! `xdpgw explain`: what the gateway would do with a described packet,
//! offline and without root. The packet is described in iptables match
//! syntax (`-i lan0 -p tcp -s 192.168.10.2 -d 203.0.113.254 --dport 80`),
//! built as a frame, and run through the real pipeline of a gateway made
//! from the configuration (interfaces, addresses, routes) and its rules,
//! with the tracer on: the text is the same as `xdpgw trace` prints.
//!
//! `--state ESTABLISHED` (or `INVALID`) first opens the connection through
//! the same gateway, silently: the first packet from the described source,
//! the answer from the destination (to the address the gateway translated
//! to) and, for TCP, the handshake's ACK; the described packet then meets
//! that connection (by default with ACK for ESTABLISHED and SYN for INVALID,
//! the SYN of a port pair still in the table).
//!
//! An IPv6 packet (`-6`, or IPv6 addresses) is described in ip6tables
//! match syntax (`-p ipv6-icmp --icmpv6-type echo-request`) and meets the
//! configuration's `rules6`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::{ConntrackConfig, CtState};
use xdpgw_dataplane::flow::{Tuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::neigh::Mac;
use xdpgw_dataplane::pipeline::Emit;
use xdpgw_dataplane::rule::{CtStates, Family, IcmpType, Match, Rule, RuleSet, Target};
use xdpgw_dataplane::trace::{rules_id, PacketTrace, TraceEvent, TraceFilter};
use xdpgw_dataplane::wire::ipv6::{self as w6, L4v6};
use xdpgw_dataplane::wire::{self, checksum, L4};
use xdpgw_dataplane::worker::Worker;

use crate::config::Config;
use crate::error::RuleErrorKind;
use crate::trace::{ct_name, family_of, format_packet, parse_match_in, MatchError, TraceNames};

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The connection state `--state` asks for.
/// Why `explain` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "--state RELATED is not supported by explain yet (it needs the ICMP error's quoted \
         connection); NEW, ESTABLISHED or INVALID"
    )]
    RelatedState,
    #[error("bad value '{0}' for --state: NEW, ESTABLISHED or INVALID")]
    BadState(String),
    #[error("option --state needs a value")]
    StateNeedsValue,
    /// The packet's description does not parse or describe one packet.
    #[error("explain PACKET {0}")]
    Packet(MatchError),
    #[error("--state {0} and the match's state {1} disagree")]
    StatesDisagree(&'static str, &'static str),
    /// The configuration's gateway cannot be built.
    #[error(transparent)]
    Gateway(#[from] xdpgw_dataplane::gateway::GatewayError),
    /// The configuration's `ipsets` file does not load.
    #[error("{0}")]
    Sets(crate::error::RuleErrors),
    /// The tracer refused the trace.
    #[error("{0}")]
    Trace(String),
    #[error("the packet left no trace (it was neither IPv4 nor IPv6)")]
    NoTrace,
    /// The IPv6 rules do not compile for the gateway.
    #[error("rules6: {0}")]
    Compile6(#[from] xdpgw_dataplane::classify::CompileError),
    #[error(
        "the configuration gives no interface an IPv6 address: the gateway drops IPv6 packets"
    )]
    NoIpv6,
    /// The connection the packet belongs to could not be opened first.
    #[error("cannot prepare {state}: {what}; its trace:\n{trace}")]
    Prepare {
        state: &'static str,
        what: &'static str,
        trace: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepState {
    New,
    Established,
    Invalid,
}

impl PrepState {
    pub fn parse(s: &str) -> Result<PrepState, ExplainError> {
        match s.to_ascii_uppercase().as_str() {
            "NEW" => Ok(PrepState::New),
            "ESTABLISHED" => Ok(PrepState::Established),
            "INVALID" => Ok(PrepState::Invalid),
            "RELATED" => Err(ExplainError::RelatedState),
            _ => Err(ExplainError::BadState(s.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            PrepState::New => "NEW",
            PrepState::Established => "ESTABLISHED",
            PrepState::Invalid => "INVALID",
        }
    }
}

/// A packet to build: addresses (of either family) and ports (ICMP
/// queries: the id in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    pub in_iface: u8,
    pub tuple: Tuple<IpAddr>,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// ICMP type and code (ICMPv6's for an IPv6 packet).
    pub icmp: (u8, u8),
    /// The TOS byte (IPv6: the traffic class).
    pub tos: u8,
}

/// The MAC the gateway's interface `k` gets in an offline gateway.
pub fn iface_mac(k: usize) -> Mac {
    [0x02, 0, 0, 0, 0x01, k as u8 + 1]
}

/// The MAC of every host around an offline gateway.
pub const PEER_MAC: Mac = [0x02, 0, 0, 0, 0xee, 0x01];

/// An Ethernet frame carrying the packet, to interface `to`'s MAC, with
/// valid checksums: an IPv4 or IPv6 packet as its addresses are. A tuple
/// whose addresses are of two families is built as IPv6 (the IPv4 one
/// mapped).
pub fn build_frame(p: &PacketSpec, to: Mac) -> Vec<u8> {
    let t = &p.tuple;
    let (src, dst) = match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => return build_frame4(p, s, d, to),
        (s, d) => (v6_of(s), v6_of(d)),
    };
    let l4 = transport(p, |proto, seg| checksum::l4_v6(src, dst, proto, seg));
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    f.extend_from_slice(&to);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.push(0x60 | (p.tos >> 4));
    f.push(p.tos << 4);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.push(t.proto);
    f.push(64);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&l4);
    f
}

fn v6_of(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The transport header of the packet, its checksum made by `csum`
/// (protocol, segment with a zero checksum).
fn transport(p: &PacketSpec, csum: impl Fn(u8, &[u8]) -> u16) -> Vec<u8> {
    let t = &p.tuple;
    match t.proto {
        IPPROTO_TCP => {
            let mut s = Vec::with_capacity(20);
            s.extend_from_slice(&t.sport.to_be_bytes());
            s.extend_from_slice(&t.dport.to_be_bytes());
            s.extend_from_slice(&p.seq.to_be_bytes());
            s.extend_from_slice(&p.ack.to_be_bytes());
            s.push(5 << 4);
            s.push(p.tcp_flags);
            s.extend_from_slice(&64240u16.to_be_bytes());
            s.extend_from_slice(&[0, 0, 0, 0]);
            let c = csum(IPPROTO_TCP, &s);
            s[16..18].copy_from_slice(&c.to_be_bytes());
            s
        }
        IPPROTO_UDP => {
            let mut s = Vec::with_capacity(8);
            s.extend_from_slice(&t.sport.to_be_bytes());
            s.extend_from_slice(&t.dport.to_be_bytes());
            s.extend_from_slice(&8u16.to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            let c = csum(IPPROTO_UDP, &s);
            let c = if c == 0 { 0xffff } else { c };
            s[6..8].copy_from_slice(&c.to_be_bytes());
            s
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let mut s = vec![p.icmp.0, p.icmp.1, 0, 0];
            s.extend_from_slice(&t.sport.to_be_bytes());
            s.extend_from_slice(&1u16.to_be_bytes());
            s.extend_from_slice(b"xdpgw explain");
            let c = if t.proto == IPPROTO_ICMP {
                checksum::finish(checksum::sum(&s))
            } else {
                csum(IPPROTO_ICMPV6, &s)
            };
            s[2..4].copy_from_slice(&c.to_be_bytes());
            s
        }
        _ => Vec::new(),
    }
}

fn build_frame4(p: &PacketSpec, src: Ipv4Addr, dst: Ipv4Addr, to: Mac) -> Vec<u8> {
    let t = &p.tuple;
    let l4 = transport(p, |proto, seg| checksum::l4(src, dst, proto, seg));
    let total = 20 + l4.len();
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&to);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = p.tos;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&1u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = t.proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::ipv4_header(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// A gateway made from a configuration and rules, with made-up MACs, its
/// hosts' MACs known, and one worker.
pub struct OfflineGateway {
    pub gw: Arc<Gateway>,
    pub worker: Worker,
    pub names: TraceNames,
    now: u64,
    sink: Collect,
}

/// Frames the gateway generates (ARP, answers).
#[derive(Default)]
struct Collect(Vec<(u8, Vec<u8>)>);

impl Emit for Collect {
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        self.0.push((iface, frame.to_vec()));
    }
}

impl OfflineGateway {
    /// The gateway of `cfg` with its `ipsets` file's sets and `rules`.
    pub fn new(cfg: &Config, rules: RuleSet) -> Result<OfflineGateway, ExplainError> {
        let sets = match &cfg.ipsets {
            Some(p) => crate::load_ipsets(p).map_err(ExplainError::Sets)?,
            None => Default::default(),
        };
        OfflineGateway::with_sets(cfg, sets, rules)
    }

    /// The gateway of `cfg` with the IP sets `sets` and `rules`.
    pub fn with_sets(
        cfg: &Config,
        sets: xdpgw_dataplane::ipset::SetTable,
        rules: RuleSet,
    ) -> Result<OfflineGateway, ExplainError> {
        let gcfg = cfg.gateway_config(
            |k| (iface_mac(k), 1500),
            ConntrackConfig {
                max_entries: 4096,
                shards: 16,
                ..ConntrackConfig::for_memory(8 << 30)
            },
        );
        let gw = Arc::new(Gateway::with_sets(gcfg, sets, &rules)?);
        let worker = Worker::new(Arc::clone(&gw), 1);
        let names = TraceNames {
            ifaces: cfg.interfaces.iter().map(|i| i.name.clone()).collect(),
            rules_id: rules_id(&gw.rules()),
            rules,
            rules6_id: rules_id(&gw.rules6()),
            rules6: RuleSet::default(),
        };
        Ok(OfflineGateway {
            gw,
            worker,
            names,
            now: 1_000_000_000,
            sink: Collect::default(),
        })
    }

    /// Installs the IPv6 rule set `rules6` (ip6tables rules).
    pub fn install6(&mut self, rules6: RuleSet) -> Result<(), ExplainError> {
        self.gw.install6(&rules6)?;
        self.names.rules6_id = rules_id(&self.gw.rules6());
        self.names.rules6 = rules6;
        Ok(())
    }

    /// Makes the next hop towards `addr` (and the host itself, on a
    /// connected network) known with [`PEER_MAC`], so that nothing waits for
    /// ARP or neighbour discovery.
    pub fn know(&self, addr: impl Into<IpAddr>) {
        match addr.into() {
            IpAddr::V4(addr) => {
                if let Some(hop) = self.gw.routes.lookup(addr) {
                    self.gw.neigh.learn(hop.iface, hop.addr, PEER_MAC);
                    self.gw.neigh.learn(hop.iface, addr, PEER_MAC);
                }
            }
            IpAddr::V6(addr) => {
                if let Some(hop) = self.gw.routes6.lookup(addr) {
                    self.gw.neigh6.learn(hop.iface, hop.addr, PEER_MAC);
                    self.gw.neigh6.learn(hop.iface, addr, PEER_MAC);
                }
            }
        }
    }

    /// Runs one packet through the pipeline; gives its action and the frame
    /// as it left (for a forwarded one).
    pub fn send(&mut self, p: &PacketSpec) -> (Action, Vec<u8>) {
        let to = iface_mac(usize::from(p.in_iface));
        let mut buf = build_frame(p, to);
        let len = buf.len();
        buf.resize(xdpgw_dataplane::pipeline::FRAME_SIZE, 0);
        self.now += 1_000_000;
        let a = self
            .worker
            .batch(&mut self.sink)
            .process(self.now, p.in_iface, &mut buf, len);
        self.sink.0.clear();
        let out = match a {
            Action::Forward { len, .. } => buf[..len.min(buf.len())].to_vec(),
            _ => Vec::new(),
        };
        (a, out)
    }

    /// Runs one packet with the tracer on; gives its trace.
    pub fn trace(
        &mut self,
        p: &PacketSpec,
    ) -> Result<(Action, Vec<u8>, PacketTrace), ExplainError> {
        let filter = TraceFilter::every_packet().map_err(|e| ExplainError::Trace(e.to_string()))?;
        let (session, rx) = self
            .gw
            .tracer
            .start(filter, 1)
            .map_err(|e| ExplainError::Trace(e.to_string()))?;
        let (a, out) = self.send(p);
        self.gw.tracer.stop(&session);
        // A batch picks the stop up: the worker lets go of the session.
        drop(self.worker.batch(&mut self.sink));
        let t = rx.try_recv().map_err(|_| ExplainError::NoTrace)?;
        Ok((a, out, t))
    }
}

/// The tuple of a frame the gateway sent (after its NAT), and its
/// interface.
fn sent_tuple(frame: &[u8]) -> Option<Tuple<IpAddr>> {
    if frame.get(12..14) == Some(&[0x86, 0xdd][..]) {
        let info = w6::parse_ipv6(frame).ok()?;
        let (sport, dport) = match info.l4info {
            L4v6::Tcp(t) => (t.sport, t.dport),
            L4v6::Udp { sport, dport } => (sport, dport),
            L4v6::Icmp(i) => (i.id, i.id),
            L4v6::Other => (0, 0),
        };
        return Some(Tuple {
            src: info.src.into(),
            dst: info.dst.into(),
            sport,
            dport,
            proto: info.proto,
        });
    }
    let info = wire::parse_ipv4(frame).ok()?;
    let (sport, dport) = match info.l4info {
        L4::Tcp(t) => (t.sport, t.dport),
        L4::Udp { sport, dport } => (sport, dport),
        L4::Icmp(i) => (i.id, i.id),
        L4::Other => (0, 0),
    };
    Some(Tuple {
        src: info.src.into(),
        dst: info.dst.into(),
        sport,
        dport,
        proto: info.proto,
    })
}

fn bad(argument: u32, msg: impl Into<String>) -> MatchError {
    MatchError {
        argument,
        kind: RuleErrorKind::Semantic(msg.into()),
    }
}

/// The packet a match describes. `ifaces` are the gateway's interfaces.
/// Every part must say one value: `-i`, `-s` and `-d` (single addresses),
/// `-p`, and for TCP/UDP `--dport` (`--sport` defaults to 40000); TCP flags
/// come from `--tcp-flags`/`--syn`, else from the state; ICMP is an echo
/// request unless `--icmp-type` says otherwise. Also gives a state named by
/// `-m state`/`-m conntrack`. `family`: the rule's (an ip6tables rule
/// describes an IPv6 packet: `-p ipv6-icmp`, `--icmpv6-type`).
pub fn packet_of(
    rule: &Rule,
    family: Family,
    ifaces: &[String],
    words: &[(u32, String)],
) -> Result<(PacketSpec, Option<u8>, Option<PrepState>), MatchError> {
    let v6 = family == Family::Ipv6;
    // Where an option stands among the words (errors point at it).
    let at = |names: &[&str]| -> u32 {
        words
            .iter()
            .find(|(_, w)| {
                names
                    .iter()
                    .any(|n| w == n || w.starts_with(&format!("{n}=")))
            })
            .or(words.first())
            .map_or(1, |w| w.0)
    };
    let whole = at(&[]);
    let in_iface = match &rule.in_iface {
        Some(i) if !i.invert && !i.value.is_wildcard() => ifaces
            .iter()
            .position(|n| *n == i.value.name)
            .ok_or_else(|| {
                bad(
                    at(&["-i", "--in-interface"]),
                    format!(
                        "-i {}: not an interface of this gateway ({})",
                        i.value.name,
                        ifaces.join(", ")
                    ),
                )
            })?,
        Some(_) => {
            return Err(bad(
                at(&["-i", "--in-interface"]),
                "-i must name one interface (no '!', no '+') to describe a packet",
            ))
        }
        None => {
            return Err(bad(
                whole,
                "explain needs -i IFACE: the interface the packet arrives on",
            ))
        }
    };
    if rule.out_iface.is_some() {
        return Err(bad(
            at(&["-o", "--out-interface"]),
            "-o is decided by routing: leave it out of a described packet",
        ));
    }
    let one = |n: Option<(IpAddr, bool)>, opt: &str, long: &str| -> Result<IpAddr, MatchError> {
        match n {
            Some((a, true)) => Ok(a),
            Some(_) => Err(bad(
                at(&[opt, long]),
                format!("{opt} must be one address (no '!', no network) to describe a packet"),
            )),
            None => Err(bad(whole, format!("explain needs {opt} ADDRESS"))),
        }
    };
    let host4 = |n: &Option<xdpgw_dataplane::rule::Inv<xdpgw_dataplane::rule::Ipv4Net>>| {
        n.map(|a| {
            let single = !a.invert && a.value.prefix_len() == Some(32);
            (IpAddr::V4(a.value.addr()), single)
        })
    };
    let host6 = |n: &Option<xdpgw_dataplane::rule::Inv<xdpgw_dataplane::rule::Ipv6Net>>| {
        n.map(|a| {
            let single = !a.invert && a.value.mask() == Ipv6Addr::from(u128::MAX);
            (IpAddr::V6(a.value.addr()), single)
        })
    };
    let (src, dst) = if v6 {
        (host6(&rule.src6), host6(&rule.dst6))
    } else {
        (host4(&rule.src), host4(&rule.dst))
    };
    let src = one(src, "-s", "--source")?;
    let dst = one(dst, "-d", "--destination")?;
    let proto = match rule.protocol {
        Some(p) if !p.invert => p.value,
        Some(_) => {
            return Err(bad(
                at(&["-p", "--protocol"]),
                "-p must name one protocol (no '!')",
            ))
        }
        None => {
            return Err(bad(
                whole,
                if v6 {
                    "explain needs -p PROTOCOL (tcp, udp, ipv6-icmp, ...)"
                } else {
                    "explain needs -p PROTOCOL (tcp, udp, icmp, ...)"
                },
            ))
        }
    };
    let mut sport = None;
    let mut dport = None;
    let mut flags = None;
    // An echo request unless said otherwise.
    let mut icmp = if v6 { (128u8, 0u8) } else { (8u8, 0u8) };
    let mut tos = 0u8;
    let mut state = None;
    let single = |r: &Option<xdpgw_dataplane::rule::Inv<xdpgw_dataplane::rule::PortRange>>,
                  opt: &str|
     -> Result<Option<u16>, MatchError> {
        match r {
            None => Ok(None),
            Some(p) if !p.invert && p.value.lo == p.value.hi => Ok(Some(p.value.lo)),
            Some(_) => Err(bad(
                at(&[
                    opt,
                    if opt == "--sport" {
                        "--source-port"
                    } else {
                        "--destination-port"
                    },
                ]),
                format!("{opt} must be one port (no '!', no range) to describe a packet"),
            )),
        }
    };
    for m in &rule.matches {
        match m {
            Match::Tcp(t) => {
                sport = single(&t.ports.sport, "--sport")?;
                dport = single(&t.ports.dport, "--dport")?;
                if let Some(f) = t.flags {
                    if f.invert {
                        return Err(bad(whole, "--tcp-flags with '!' says no flags"));
                    }
                    flags = Some(f.value.comp);
                }
            }
            Match::Udp(u) => {
                sport = single(&u.sport, "--sport")?;
                dport = single(&u.dport, "--dport")?;
            }
            Match::Icmp(i) => match i.value {
                IcmpType::Type { ty, code_lo, .. } if !i.invert => icmp = (ty, code_lo),
                _ => {
                    return Err(bad(
                        whole,
                        if v6 {
                            "--icmpv6-type must name one type (no '!')"
                        } else {
                            "--icmp-type must name one type (no '!', not 'any')"
                        },
                    ))
                }
            },
            Match::Conntrack(c) if c.state_only().is_none() => {
                return Err(bad(
                    whole,
                    "-m conntrack describes a packet only by --ctstate",
                ))
            }
            Match::Conntrack(xdpgw_dataplane::rule::CtMatch { state: Some(s), .. })
            | Match::State(s) => {
                let one = [
                    (CtStates::NEW, PrepState::New),
                    (CtStates::ESTABLISHED, PrepState::Established),
                    (CtStates::INVALID, PrepState::Invalid),
                ]
                .into_iter()
                .find(|(b, _)| s.value.0 == *b);
                match one {
                    Some((_, st)) if !s.invert => state = Some(st),
                    _ => {
                        return Err(bad(
                            whole,
                            "the state must be one of NEW, ESTABLISHED, INVALID (no '!')",
                        ))
                    }
                }
            }
            Match::Dscp(d) if !d.invert => tos = d.value << 2,
            Match::Comment(_) => {}
            other => {
                return Err(bad(
                    whole,
                    format!(
                        "-m {} does not describe a packet; explain takes -i, -s, -d, -p, --sport, --dport, --tcp-flags/--syn, {}, --state, --dscp",
                        other.name(),
                        if v6 { "--icmpv6-type" } else { "--icmp-type" }
                    ),
                ))
            }
        }
    }
    let ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;
    let (sport, dport) = if ports {
        match dport {
            Some(d) => (sport.unwrap_or(40000), d),
            None => return Err(bad(whole, "explain needs --dport PORT")),
        }
    } else if proto == icmp_proto(v6) {
        (1, 1)
    } else {
        (0, 0)
    };
    let spec = PacketSpec {
        in_iface: in_iface as u8,
        tuple: Tuple {
            src,
            dst,
            sport,
            dport,
            proto,
        },
        tcp_flags: 0,
        seq: 1000,
        ack: 0,
        icmp,
        tos,
    };
    Ok((spec, flags, state))
}

/// The ICMP protocol of the family.
fn icmp_proto(v6: bool) -> u8 {
    if v6 {
        IPPROTO_ICMPV6
    } else {
        IPPROTO_ICMP
    }
}

/// What `explain` prints, one line each: the preparation (if any) and the
/// packet's trace.
pub type Report = Vec<String>;

/// What `explain` prints: the preparation (if any) and the packet's trace.
pub fn explain(
    cfg: &Config,
    rules: RuleSet,
    words: &[(u32, String)],
    state: Option<PrepState>,
) -> Result<Report, ExplainError> {
    explain_with_sets(cfg, Default::default(), rules, words, state)
}

/// The family of the packet `words` describe: IPv6 with `-6` or IPv6
/// addresses, else IPv4.
pub fn packet_family(words: &[(u32, String)]) -> Family {
    family_of(words).unwrap_or(Family::Ipv4)
}

/// [`explain`] of an IPv6 packet against the IPv6 rule set `rules6` (the
/// gateway's IPv4 rules are `rules`, its IP sets `sets`).
pub fn explain6(
    cfg: &Config,
    sets: xdpgw_dataplane::ipset::SetTable,
    (rules, rules6): (RuleSet, RuleSet),
    words: &[(u32, String)],
    state: Option<PrepState>,
) -> Result<Report, ExplainError> {
    let rule = parse_match_in(Family::Ipv6, words).map_err(ExplainError::Packet)?;
    let mut gw = OfflineGateway::with_sets(cfg, sets, rules)?;
    if gw.gw.conntrack6.is_none() {
        return Err(ExplainError::NoIpv6);
    }
    gw.install6(rules6)?;
    explain_in(gw, &rule, Family::Ipv6, words, state)
}

/// [`explain`] with the IP sets `sets` (the configuration's `ipsets` and
/// the rule file's `ipset` lines).
pub fn explain_with_sets(
    cfg: &Config,
    sets: xdpgw_dataplane::ipset::SetTable,
    rules: RuleSet,
    words: &[(u32, String)],
    state: Option<PrepState>,
) -> Result<Report, ExplainError> {
    let rule = parse_match_in(Family::Ipv4, words).map_err(ExplainError::Packet)?;
    explain_in(
        OfflineGateway::with_sets(cfg, sets, rules)?,
        &rule,
        Family::Ipv4,
        words,
        state,
    )
}

fn explain_in(
    mut gw: OfflineGateway,
    rule: &Rule,
    family: Family,
    words: &[(u32, String)],
    state: Option<PrepState>,
) -> Result<Report, ExplainError> {
    let (mut spec, flags, named) =
        packet_of(rule, family, &gw.names.ifaces, words).map_err(ExplainError::Packet)?;
    let state = match (state, named) {
        (Some(a), Some(b)) if a != b => {
            return Err(ExplainError::StatesDisagree(a.name(), b.name()))
        }
        (a, b) => a.or(b).unwrap_or(PrepState::New),
    };
    spec.tcp_flags = flags.unwrap_or(match state {
        PrepState::Established => ACK,
        PrepState::New => SYN,
        // Not allowed from the opening side of an established connection.
        PrepState::Invalid => SYN | ACK,
    });
    gw.know(spec.tuple.src);
    gw.know(spec.tuple.dst);
    for a in dnat_targets(&gw.names.rules)
        .into_iter()
        .chain(dnat_targets(&gw.names.rules6))
    {
        gw.know(a);
    }
    let mut out = Vec::new();
    if state != PrepState::New {
        out.extend(prepare(&mut gw, &mut spec, state)?);
    }
    let (_, _, t) = gw.trace(&spec)?;
    out.extend(format_packet(1, &t, &gw.names));
    let judged = t.events().iter().find_map(|e| match e {
        TraceEvent::Conntrack { state, .. } => Some(*state),
        _ => None,
    });
    let wanted = match state {
        PrepState::New => CtState::New,
        PrepState::Established => CtState::Established,
        PrepState::Invalid => CtState::Invalid,
    };
    if let Some(j) = judged.filter(|j| *j != wanted) {
        out.push(format!(
            "note: asked for {}, but conntrack judged this packet {}",
            state.name(),
            ct_name(j)
        ));
    }
    Ok(out)
}

/// The addresses DNAT sends to: their next hops are made known too.
fn dnat_targets(set: &RuleSet) -> Vec<IpAddr> {
    set.tables
        .iter()
        .flat_map(|t| t.chains.iter())
        .flat_map(|c| c.rules.iter())
        .filter_map(|r| match &r.target {
            Target::Dnat(n) => n.addrs.map(|a| a.lo.into()),
            Target::Dnat6(n) => n.addrs.map(|a| a.lo.into()),
            _ => None,
        })
        .collect()
}

/// Opens the connection the described packet belongs to (see the module).
fn prepare(
    gw: &mut OfflineGateway,
    spec: &mut PacketSpec,
    state: PrepState,
) -> Result<Report, ExplainError> {
    let t = spec.tuple;
    let v6 = t.src.is_ipv6();
    let tcp = t.proto == IPPROTO_TCP;
    let icmp = t.proto == icmp_proto(v6);
    let opener = PacketSpec {
        tcp_flags: if tcp { SYN } else { 0 },
        seq: 1000,
        ack: 0,
        icmp: match (icmp, v6) {
            (true, false) => (8, 0),
            (true, true) => (128, 0),
            (false, _) => spec.icmp,
        },
        ..*spec
    };
    let (a, out, trace) = gw.trace(&opener)?;
    let failed =
        |what: &'static str, trace: &PacketTrace, gw: &OfflineGateway| ExplainError::Prepare {
            state: state.name(),
            what,
            trace: format_packet(1, trace, &gw.names).join("\n"),
        };
    let Action::Forward { iface, .. } = a else {
        return Err(failed(
            "the connection's first packet is not forwarded",
            &trace,
            gw,
        ));
    };
    let Some(sent) = sent_tuple(&out) else {
        return Err(failed("the first packet left unreadable", &trace, gw));
    };
    let mut steps = vec![if tcp {
        "SYN".to_string()
    } else {
        "a first packet".into()
    }];
    // The answer, from where the packet went, to the address it came from.
    let back = Tuple {
        src: sent.dst,
        dst: sent.src,
        sport: sent.dport,
        dport: sent.sport,
        proto: sent.proto,
    };
    let reply = PacketSpec {
        in_iface: iface,
        tuple: back,
        tcp_flags: if tcp { SYN | ACK } else { 0 },
        seq: 5000,
        ack: 1001,
        // An echo reply.
        icmp: if v6 { (129, 0) } else { (0, 0) },
        tos: 0,
    };
    let local = match t.dst {
        IpAddr::V4(d) => gw.gw.local_iface(d).is_some(),
        IpAddr::V6(d) => gw.gw.local6(d).is_some(),
    };
    let from_gateway = local && icmp;
    if !from_gateway {
        gw.know(back.src);
        let (ra, _, rtrace) = gw.trace(&reply)?;
        if !matches!(ra, Action::Forward { .. }) {
            return Err(failed("the answer does not get back", &rtrace, gw));
        }
        steps.push(if tcp {
            "SYN,ACK".into()
        } else {
            "its answer".into()
        });
    } else {
        steps.push("the gateway's echo reply".into());
    }
    if tcp {
        let third = PacketSpec {
            tcp_flags: ACK,
            seq: 1001,
            ack: 5001,
            ..*spec
        };
        let (ta, _, ttrace) = gw.trace(&third)?;
        if !matches!(ta, Action::Forward { .. }) {
            return Err(failed(
                "the handshake's ACK does not get through",
                &ttrace,
                gw,
            ));
        }
        steps.push("ACK".into());
        spec.seq = 1001;
        spec.ack = if spec.tcp_flags & ACK != 0 { 5001 } else { 0 };
        if spec.tcp_flags & SYN != 0 && spec.tcp_flags & ACK == 0 {
            spec.seq = 2000;
        }
        if spec.tcp_flags & RST != 0 && spec.tcp_flags & ACK == 0 {
            spec.ack = 0;
        }
    }
    Ok(vec![format!(
        "conntrack prepared for {}: {} {} > {} opened through this gateway first ({}); then the described packet:",
        state.name(),
        describe_proto(t.proto),
        endpoint_text(&t, true),
        endpoint_text(&t, false),
        steps.join(", "),
    )])
}

fn describe_proto(p: u8) -> String {
    crate::netdb::protocol_name(p)
}

fn endpoint_text(t: &Tuple<IpAddr>, src: bool) -> String {
    let (a, p) = if src {
        (t.src, t.sport)
    } else {
        (t.dst, t.dport)
    };
    crate::trace::endpoint(a, p, t.proto)
}

/// Words with their positions (1-based) among the words given.
pub type Positioned = Vec<(u32, String)>;

/// `explain`'s words, split: its own `--state VALUE` and the match words.
#[derive(Debug, PartialEq, Eq)]
pub struct ExplainWords {
    /// The value of explain's own `--state`, if given.
    pub state: Option<String>,
    /// The match words, each with its position among the words given.
    pub words: Positioned,
}

/// Splits `explain`'s words into its own `--state VALUE` (unless the words
/// load `-m state`, whose `--state` it is) and the match words, each with
/// its position (1-based) among the words given.
pub fn split_state(words: &[String]) -> Result<ExplainWords, ExplainError> {
    let has_state_match = words
        .windows(2)
        .any(|w| (w[0] == "-m" || w[0] == "--match") && w[1] == "state");
    let mut state = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if !has_state_match && (w == "--state" || w.starts_with("--state=")) {
            let v = match w.strip_prefix("--state=") {
                Some(v) => v.to_string(),
                None => {
                    i += 1;
                    words.get(i).cloned().ok_or(ExplainError::StateNeedsValue)?
                }
            };
            state = Some(v);
        } else {
            rest.push((i as u32 + 1, w.clone()));
        }
        i += 1;
    }
    Ok(ExplainWords { state, words: rest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::parse_match_families;
    use std::path::PathBuf;

    /// conf/gateway.toml's gateway made dual-stack: conf/gateway.rules6's
    /// addressing (lan0 fd00:10::/64 and 2001:db8:10::/64, wan0
    /// 2001:db8:113::1/64, the default route via 2001:db8:113::254).
    const DUAL_STACK: &str = r#"
rules = "gateway.rules"
rules6 = "gateway.rules6"

[[interface]]
name = "lan0"
address = ["192.168.10.1/24", "fd00:10::1/64", "2001:db8:10::1/64"]

[[interface]]
name = "wan0"
address = ["203.0.113.1/24", "2001:db8:113::1/64"]

[[route]]
to = "0.0.0.0/0"
via = "203.0.113.254"

[[route]]
to = "::/0"
via = "2001:db8:113::254"
"#;

    fn conf_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("conf")
    }

    fn words(s: &str) -> Vec<(u32, String)> {
        s.split_whitespace()
            .enumerate()
            .map(|(i, w)| (i as u32 + 1, w.to_string()))
            .collect()
    }

    /// `xdpgw explain` of an IPv6 packet against conf/gateway.rules6.
    fn explain6_of(packet: &str, state: Option<PrepState>) -> Result<Report, ExplainError> {
        let cfg =
            Config::parse(&conf_dir().join("dual.toml"), DUAL_STACK).expect("the config parses");
        let rules = crate::load_rules(&cfg.rules).expect("conf/gateway.rules loads");
        let r6 = cfg.rules6.clone().expect("rules6");
        let rules6 = crate::load_rule_file_family(&r6, &Default::default(), Family::Ipv6)
            .expect("conf/gateway.rules6 loads")
            .set6;
        let w = words(packet);
        assert_eq!(packet_family(&w), Family::Ipv6);
        explain6(&cfg, Default::default(), (rules, rules6), &w, state)
    }

    #[test]
    fn an_ipv6_syn_from_the_ula_prefix_is_masqueraded_out_of_wan0() {
        let out = explain6_of(
            "-i lan0 -p tcp -s fd00:10::2 -d 2001:db8:20::254 --dport 80",
            None,
        )
        .expect("explained");
        assert_eq!(
            out,
            [
                "packet 1: lan0 tcp [fd00:10::2]:40000 > [2001:db8:20::254]:80 [SYN]",
                "  raw PREROUTING: policy ACCEPT",
                "  conntrack: NEW",
                "  mangle PREROUTING: policy ACCEPT",
                "  nat PREROUTING: policy ACCEPT",
                "  mangle FORWARD rule 2 (-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu): TCPMSS, continue",
                "  mangle FORWARD: policy ACCEPT",
                "  filter FORWARD rule 4 (-A FORWARD -s fd00:10::/64 -i lan0 -o wan0 -j ACCEPT): ACCEPT",
                "  mangle POSTROUTING: policy ACCEPT",
                "  nat POSTROUTING rule 1 (-A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE): MASQUERADE source [fd00:10::2]:40000 -> [2001:db8:113::1]:40000",
                "  verdict: forwarded out wan0",
            ]
        );
    }

    #[test]
    fn an_ipv6_echo_to_the_gateway_is_answered_and_the_answer_traced() {
        let out = explain6_of(
            "-6 -i lan0 -p ipv6-icmp -s 2001:db8:10::2 -d 2001:db8:10::1",
            None,
        )
        .expect("explained")
        .join("\n");
        for want in [
            "packet 1: lan0 icmpv6 2001:db8:10::2 > 2001:db8:10::1 echo-request id 1",
            "  filter INPUT rule 7 (-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m limit --limit 10/sec -j ACCEPT): ACCEPT",
            "  the gateway answers: icmpv6 2001:db8:10::1 > 2001:db8:10::2 echo-reply id 1",
            "    filter OUTPUT: policy ACCEPT",
            "  verdict: answered: the answer is sent out lan0",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn an_ipv6_reject_shows_the_reset_and_established_dnat_is_prepared() {
        let out = explain6_of(
            "-i wan0 -p tcp -s 2001:db8:20::9 -d fd00:10::2 --dport 25",
            None,
        )
        .expect("explained")
        .join("\n");
        for want in [
            "  filter FORWARD rule 7 (-A FORWARD -i wan0 -p tcp -j REJECT --reject-with tcp-reset): REJECT with tcp-reset",
            "  the gateway answers: tcp [fd00:10::2]:25 > [2001:db8:20::9]:40000 [RST,ACK]",
            "    answer sent out wan0",
            "  verdict: dropped (filter_reject in filter FORWARD rule 7)",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        // The port forward, its connection opened first.
        let out = explain6_of(
            "-i wan0 -p tcp -s 2001:db8:20::9 -d 2001:db8:113::1 --dport 8080",
            Some(PrepState::Established),
        )
        .expect("explained")
        .join("\n");
        for want in [
            "conntrack prepared for ESTABLISHED: tcp [2001:db8:20::9]:40000 > [2001:db8:113::1]:8080 opened through this gateway first (SYN, SYN,ACK, ACK); then the described packet:",
            "packet 1: wan0 tcp [2001:db8:20::9]:40000 > [2001:db8:113::1]:8080 [ACK]",
            "  conntrack: ESTABLISHED (TCP ESTABLISHED)",
            "  nat PREROUTING: destination [2001:db8:113::1]:8080 -> [fd00:10::80]:80 (the connection's translation)",
            "  filter FORWARD rule 1 (-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT): ACCEPT",
            "  verdict: forwarded out lan0",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn ipv6_packet_descriptions_are_checked_as_ip6tables_matches() {
        let e = explain6_of(
            "-i lan0 -p tcp -s fd00:10::/64 -d 2001:db8:20::254 --dport 80",
            None,
        )
        .expect_err("a network");
        assert!(e.to_string().contains("-s must be one address"), "{e}");
        let e = explain6_of(
            "-i lan0 -p ipv6-icmp --icmp-type 8 -s fd00:10::2 -d 2001:db8:20::254",
            None,
        )
        .expect_err("--icmp-type in IPv6");
        assert!(e.to_string().contains("--icmpv6-type"), "{e}");
    }

    #[test]
    fn trace_matches_name_their_family() {
        let w = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let both = parse_match_families(&w("-p tcp --dport 80")).expect("parses");
        assert!(both.v4.is_some() && both.v6.is_some());
        let v6 = parse_match_families(&w("-s 2001:db8:10::2 -p tcp")).expect("parses");
        assert!(v6.v4.is_none() && v6.v6.is_some());
        let v6 =
            parse_match_families(&w("-p ipv6-icmp --icmpv6-type echo-request")).expect("parses");
        assert!(v6.v4.is_none() && v6.v6.is_some());
        let v6 = parse_match_families(&w("-6 -p tcp")).expect("parses");
        assert!(v6.v4.is_none() && v6.v6.is_some());
        let v4 = parse_match_families(&w("-s 192.168.10.2 -p tcp")).expect("parses");
        assert!(v4.v4.is_some() && v4.v6.is_none());
        let v4 = parse_match_families(&w("-p icmp --icmp-type echo-request")).expect("parses");
        assert!(v4.v4.is_some() && v4.v6.is_none());
        // -6 with an IPv4 address: ip6tables' error.
        let e = parse_match_families(&w("-6 -s 192.168.10.2")).expect_err("IPv4 in -6");
        assert_eq!(e.argument, 3, "{e}");
    }

    /// The dual-stack gateway with conf/gateway.rules6 installed.
    fn dual_stack_gateway() -> OfflineGateway {
        let cfg =
            Config::parse(&conf_dir().join("dual.toml"), DUAL_STACK).expect("the config parses");
        let rules = crate::load_rules(&cfg.rules).expect("conf/gateway.rules loads");
        let r6 = cfg.rules6.clone().expect("rules6");
        let rules6 = crate::load_rule_file_family(&r6, &Default::default(), Family::Ipv6)
            .expect("conf/gateway.rules6 loads")
            .set6;
        let mut gw = OfflineGateway::new(&cfg, rules).expect("gateway");
        gw.install6(rules6).expect("rules6 install");
        gw
    }

    #[test]
    fn an_ipv6_packet_waiting_for_neighbour_discovery_says_so() {
        let mut gw = dual_stack_gateway();
        let client: Ipv6Addr = "fd00:10::2".parse().expect("addr");
        gw.know(client);
        let spec = PacketSpec {
            in_iface: 0,
            tuple: Tuple {
                src: client.into(),
                dst: "2001:db8:20::254".parse::<Ipv6Addr>().expect("addr").into(),
                sport: 40000,
                dport: 80,
                proto: IPPROTO_TCP,
            },
            tcp_flags: SYN,
            seq: 1000,
            ack: 0,
            icmp: (0, 0),
            tos: 0,
        };
        let (a, _, t) = gw.trace(&spec).expect("traced");
        assert_eq!(a, Action::Consumed);
        assert!(t.events().contains(&TraceEvent::Held {
            iface: 1,
            hop: "2001:db8:113::254"
                .parse::<Ipv6Addr>()
                .expect("addr")
                .into()
        }));
        let text = format_packet(1, &t, &gw.names);
        assert_eq!(
            text[text.len() - 8..],
            [
                "  neighbour: 2001:db8:113::254 on wan0 not resolved yet: held while neighbour discovery asks for it",
                "  the gateway sends: icmpv6 2001:db8:113::1 > ff02::1:ff00:254 neighbour-solicitation",
                "    raw OUTPUT: policy ACCEPT",
                "    mangle OUTPUT: policy ACCEPT",
                "    filter OUTPUT: policy ACCEPT",
                "    mangle POSTROUTING: policy ACCEPT",
                "    solicitation sent out wan0",
                "  verdict: held for neighbour discovery; sent out wan0 once its next hop answers (dropped as neigh_unresolved if it does not)",
            ]
        );
    }
}
