//! Parsers for what `ping -n`, `tcpdump -n -v` and `conntrack -L` print
//! and what the lab's probes report, which the demo and the end-to-end
//! tests read.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// What `ping -n` printed: replies, errors and its summary; addresses of
/// type `A` (`Ipv6Addr` for `ping -6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping<A = Ipv4Addr> {
    pub transmitted: u32,
    pub received: u32,
    /// Each echo reply: who sent it and its TTL (hop limit).
    pub replies: Vec<(A, u8)>,
    /// Each ICMP error reported: who sent it and ping's text for it, e.g.
    /// `Time to live exceeded`; for ICMPv6 `Time exceeded: Hop limit`,
    /// `Packet too big: mtu=1280`, `Destination unreachable: Port
    /// unreachable`.
    pub errors: Vec<(A, String)>,
}

impl<A> Default for Ping<A> {
    fn default() -> Self {
        Ping {
            transmitted: 0,
            received: 0,
            replies: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Parses the output of `ping -n` (iputils), IPv4 or IPv6.
pub fn parse_ping<A: FromStr>(lines: &[String]) -> Ping<A> {
    let mut p = Ping::default();
    for line in lines {
        if let Some((_, rest)) = line.split_once(" bytes from ") {
            // 64 bytes from 203.0.113.254: icmp_seq=1 ttl=63 time=0.1 ms
            let Some((from, fields)) = rest.split_once(": ") else {
                continue;
            };
            let ttl = fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix("ttl="))
                .and_then(|t| t.parse().ok());
            if let (Ok(from), Some(ttl)) = (from.parse(), ttl) {
                p.replies.push((from, ttl));
            }
        } else if let Some(rest) = line.strip_prefix("From ") {
            // From 192.168.10.1 icmp_seq=1 Time to live exceeded
            let mut words = rest.splitn(3, ' ');
            let (Some(from), Some(_seq), Some(message)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            if let Ok(from) = from.trim_end_matches(':').parse() {
                p.errors.push((from, message.to_owned()));
            }
        } else if line.contains(" packets transmitted, ") {
            // 3 packets transmitted, 3 received, 0% packet loss, time 402ms
            let mut fields = line.split(", ");
            let num = |f: Option<&str>| {
                f.and_then(|f| f.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            p.transmitted = num(fields.next());
            p.received = num(fields.next());
        }
    }
    p
}

/// One IPv6 packet from `tcpdump -n -v` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket6 {
    pub src: Ipv6Addr,
    pub src_port: Option<u16>,
    pub dst: Ipv6Addr,
    pub dst_port: Option<u16>,
    /// The traffic class (DSCP << 2 | ECN).
    pub class: u8,
    pub hlim: u8,
    /// What follows the addresses (`UDP, length 5`, `ICMP6, ...`).
    pub summary: String,
}

/// Parses the IPv6 packets of `tcpdump -n -v` output: one line each,
/// `... IP6 (class 0xb8, flowlabel 0x..., hlim 63, next-header UDP (17)
/// payload length: 13) SRC[.PORT] > DST[.PORT]: ...` (no `class` when it
/// is 0). Other lines are skipped.
pub fn parse_tcpdump6_verbose(lines: &[String]) -> Vec<CapturedPacket6> {
    let mut packets = Vec::new();
    for line in lines {
        let Some((_, rest)) = line.split_once(" IP6 (") else {
            continue;
        };
        // The header ends after `payload length: N)`: its fields hold
        // parentheses of their own (`next-header UDP (17)`).
        let Some(end) = rest
            .find("payload length: ")
            .and_then(|at| rest[at..].find(") ").map(|e| at + e))
        else {
            continue;
        };
        let (header, rest) = (&rest[..end], &rest[end + 2..]);
        let mut class = 0;
        let mut hlim = None;
        for field in header.split(", ") {
            if let Some(v) = field.strip_prefix("class 0x") {
                class = u8::from_str_radix(v, 16).unwrap_or(0);
            } else if let Some(v) = field.strip_prefix("hlim ") {
                hlim = v.parse().ok();
            }
        }
        let Some((endpoints, summary)) = rest.split_once(": ") else {
            continue;
        };
        let Some((src, dst)) = endpoints.split_once(" > ") else {
            continue;
        };
        let (Some((src, src_port)), Some((dst, dst_port)), Some(hlim)) =
            (endpoint(src), endpoint(dst), hlim)
        else {
            continue;
        };
        packets.push(CapturedPacket6 {
            src,
            src_port,
            dst,
            dst_port,
            class,
            hlim,
            summary: summary.to_owned(),
        });
    }
    packets
}

/// What `udp_probe6.py` reported for one datagram (`Lab::udp_probe6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe6 {
    /// An answer from `from`, `bytes` long.
    Reply {
        from: Ipv6Addr,
        bytes: usize,
    },
    /// An ICMPv6 error from `from`: type, code and the kernel's `ee_info`
    /// (the MTU of a packet too big).
    Icmp6 {
        from: Ipv6Addr,
        kind: u8,
        code: u8,
        info: u32,
    },
    /// Refused by the sender's own stack.
    Local {
        errno: i32,
        info: u32,
    },
    Timeout,
}

impl Probe6 {
    /// Parses the probe's line; None if it is not one.
    pub fn parse(line: &str) -> Option<Probe6> {
        let get = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        let num = |key: &str| get(key)?.parse::<u64>().ok();
        Some(match line.split_whitespace().next()? {
            "reply" => Probe6::Reply {
                from: get("from")?.parse().ok()?,
                bytes: usize::try_from(num("bytes")?).ok()?,
            },
            "icmp6" => Probe6::Icmp6 {
                from: get("from")?.parse().ok()?,
                kind: u8::try_from(num("type")?).ok()?,
                code: u8::try_from(num("code")?).ok()?,
                info: u32::try_from(num("info")?).ok()?,
            },
            "local" => Probe6::Local {
                errno: i32::try_from(num("errno")?).ok()?,
                info: u32::try_from(num("info")?).ok()?,
            },
            "timeout" => Probe6::Timeout,
            _ => return None,
        })
    }
}

/// A `conntrack -L` entry normalised for comparison: without the
/// remaining timeout (the third word) and the `use=` and `id=` fields,
/// which differ from run to run; e.g. `tcp 6 TIME_WAIT src=fd00:10::2
/// dst=... [ASSURED] mark=0`.
pub fn conntrack_entry(line: &str) -> String {
    line.split_whitespace()
        .enumerate()
        .filter(|(i, w)| *i != 2 && !w.starts_with("use=") && !w.starts_with("id="))
        .map(|(_, w)| w)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One packet from `tcpdump -n -v` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    pub src: Ipv4Addr,
    pub src_port: Option<u16>,
    pub dst: Ipv4Addr,
    pub dst_port: Option<u16>,
    /// The whole TOS byte (DSCP << 2 | ECN).
    pub tos: u8,
    pub ttl: u8,
    /// The rest of the packet's second line (flags, lengths, ...).
    pub summary: String,
}

/// Parses the IPv4 packets of `tcpdump -n -v` output: a header line
/// `... IP (tos 0xb8, ttl 63, ...)` followed by a line
/// `SRC[.PORT] > DST[.PORT]: ...`. Other lines are skipped.
pub fn parse_tcpdump_verbose(lines: &[String]) -> Vec<CapturedPacket> {
    let mut packets = Vec::new();
    let mut header: Option<(u8, u8)> = None;
    for line in lines {
        if let Some(rest) = line.split_once(" IP (").map(|(_, r)| r) {
            header = parse_ip_header(rest);
            continue;
        }
        let Some((tos, ttl)) = header.take() else {
            continue;
        };
        let Some((endpoints, summary)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some((src, dst)) = endpoints.split_once(" > ") else {
            continue;
        };
        let (Some((src, src_port)), Some((dst, dst_port))) = (endpoint(src), endpoint(dst)) else {
            continue;
        };
        packets.push(CapturedPacket {
            src,
            src_port,
            dst,
            dst_port,
            tos,
            ttl,
            summary: summary.to_owned(),
        });
    }
    packets
}

/// `tos 0xb8, ttl 63, id 0, ...` → (0xb8, 63).
fn parse_ip_header(s: &str) -> Option<(u8, u8)> {
    let mut tos = None;
    let mut ttl = None;
    for field in s.split(", ") {
        if let Some(v) = field.strip_prefix("tos 0x") {
            let hex: String = v.chars().take_while(char::is_ascii_hexdigit).collect();
            tos = u8::from_str_radix(&hex, 16).ok();
        } else if let Some(v) = field.strip_prefix("ttl ") {
            ttl = v.parse().ok();
        }
    }
    Some((tos?, ttl?))
}

/// `192.168.10.2.40000` → (192.168.10.2, Some(40000)); `192.168.10.2` →
/// (192.168.10.2, None); the same for IPv6 (`fd00:10::2.40000`).
fn endpoint<A: FromStr>(s: &str) -> Option<(A, Option<u16>)> {
    if let Ok(ip) = s.parse() {
        return Some((ip, None));
    }
    let (ip, port) = s.rsplit_once('.')?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// The value of `key=` in a tool's report line (`key=value` words);
/// panics if absent.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in '{line}'"))
}

/// [`field`] as a number; panics if it is not one.
pub fn field_number(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in '{line}'"))
}

/// Packet counters of a `save -c` text: each chain's policy (by chain
/// name, e.g. `:POSTROUTING`) and each rule (by its text); rules of the
/// same text count together. Panics on a line without counters.
pub fn packet_counters(saved: &str) -> BTreeMap<String, u64> {
    let packets = |c: &str| {
        c.trim_start_matches('[')
            .split(':')
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no [packets:bytes] in '{c}'"))
    };
    let mut out = BTreeMap::new();
    let mut table = "";
    for line in saved.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
        } else if line.starts_with(':') {
            let mut w = line.split_whitespace();
            let (Some(chain), Some(_), Some(c)) = (w.next(), w.next(), w.next()) else {
                panic!("chain line '{line}'");
            };
            out.insert(format!("{table} {chain}"), packets(c));
        } else if line.starts_with('[') {
            let Some((c, rule)) = line.split_once(' ') else {
                panic!("rule line '{line}'");
            };
            *out.entry(format!("{table} {rule}")).or_insert(0) += packets(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{CLIENT, GATEWAY_LAN, SERVER};
    use crate::gateway::{CLIENT6, GATEWAY_LAN6, SERVER6};

    #[test]
    fn parses_tcpdump_ipv6_lines() {
        let out = lines(
            "11:06:05.847407 IP6 (class 0xb8, flowlabel 0xde48f, hlim 63, next-header UDP (17) payload length: 13) fd00:10::2.37897 > 2001:db8:113::254.7777: [bad udp cksum 0x2e51 -> 0xdb64!] UDP, length 5\n\
             11:06:05.880077 IP6 (flowlabel 0x93afb, hlim 64, next-header TCP (6) payload length: 20) 2001:db8:113::254.22 > fd00:10::2.35148: Flags [R.], seq 0, length 0\n\
             11:06:05.9 IP6 (hlim 64, next-header ICMPv6 (58) payload length: 64) fd00:10::1 > fd00:10::2: [icmp6 sum ok] ICMP6, echo reply, id 1, seq 1\n\
             11:06:06.0 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 84)\n",
        );
        let p = parse_tcpdump6_verbose(&out);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!((p[0].src, p[0].src_port), (CLIENT6, Some(37897)));
        assert_eq!((p[0].dst, p[0].dst_port), (SERVER6, Some(7777)));
        assert_eq!((p[0].class, p[0].hlim), (0xb8, 63));
        assert!(p[0].summary.ends_with("UDP, length 5"), "{}", p[0].summary);
        assert_eq!((p[1].class, p[1].hlim), (0, 64));
        assert!(p[1].summary.starts_with("Flags [R.]"), "{}", p[1].summary);
        assert_eq!((p[2].src, p[2].src_port), (GATEWAY_LAN6, None));
    }

    #[test]
    fn parses_ping6_output() {
        let out = lines(
            "PING 2001:db8:113::254(2001:db8:113::254) 1352 data bytes\n\
             64 bytes from 2001:db8:113::254: icmp_seq=1 ttl=63 time=0.128 ms\n\
             From fd00:10::1 icmp_seq=2 Packet too big: mtu=1280\n\
             From fd00:10::1 icmp_seq=3 Time exceeded: Hop limit\n\
             3 packets transmitted, 1 received, +2 errors, 66% packet loss, time 0ms\n",
        );
        let p: Ping<Ipv6Addr> = parse_ping(&out);
        assert_eq!((p.transmitted, p.received), (3, 1));
        assert_eq!(p.replies, [(SERVER6, 63)]);
        assert_eq!(
            p.errors,
            [
                (GATEWAY_LAN6, "Packet too big: mtu=1280".to_owned()),
                (GATEWAY_LAN6, "Time exceeded: Hop limit".to_owned())
            ]
        );
    }

    #[test]
    fn parses_probe_lines() {
        assert_eq!(
            Probe6::parse("icmp6 type=2 code=0 info=1280 from=fd00:10::1"),
            Some(Probe6::Icmp6 {
                from: GATEWAY_LAN6,
                kind: 2,
                code: 0,
                info: 1280
            })
        );
        assert_eq!(
            Probe6::parse("reply from=2001:db8:113::254 bytes=52"),
            Some(Probe6::Reply {
                from: SERVER6,
                bytes: 52
            })
        );
        assert_eq!(
            Probe6::parse("local errno=90 info=1280"),
            Some(Probe6::Local {
                errno: 90,
                info: 1280
            })
        );
        assert_eq!(Probe6::parse("timeout"), Some(Probe6::Timeout));
        assert_eq!(Probe6::parse("icmp6 type=x"), None);
        assert_eq!(Probe6::parse(""), None);
    }

    #[test]
    fn conntrack_entries_lose_what_changes_between_runs() {
        assert_eq!(
            conntrack_entry(
                "tcp      6 117 TIME_WAIT src=fd00:10::2 dst=2001:db8:113::254 sport=44688 dport=80 \
                 src=2001:db8:113::254 dst=2001:db8:113::1 sport=80 dport=44688 [ASSURED] mark=0 use=1"
            ),
            "tcp 6 TIME_WAIT src=fd00:10::2 dst=2001:db8:113::254 sport=44688 dport=80 \
             src=2001:db8:113::254 dst=2001:db8:113::1 sport=80 dport=44688 [ASSURED] mark=0"
        );
    }

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }
    #[test]
    fn parses_tcpdump_verbose_tcp_and_icmp() {
        let out = lines(
            "12:00:00.000001 IP (tos 0xb8, ttl 63, id 0, offset 0, flags [DF], proto TCP (6), length 60)\n\
             \x20   203.0.113.254.443 > 192.168.10.2.40000: Flags [S.], cksum 0x1234 (correct), seq 1, length 0\n\
             12:00:00.000002 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 84)\n\
             \x20   192.168.10.2 > 203.0.113.254: ICMP echo request, id 1, seq 1, length 64\n\
             12:00:00.000003 IP (tos 0x2,ECT(0), ttl 5, id 1, offset 0, flags [DF], proto UDP (17), length 33)\n\
             \x20   192.168.10.2.5000 > 203.0.113.254.7777: UDP, length 5\n",
        );
        let p = parse_tcpdump_verbose(&out);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].src, SERVER);
        assert_eq!(p[0].src_port, Some(443));
        assert_eq!(p[0].dst, CLIENT);
        assert_eq!(p[0].dst_port, Some(40000));
        assert_eq!((p[0].tos, p[0].ttl), (0xb8, 63));
        assert!(p[0].summary.starts_with("Flags [S.]"), "{}", p[0].summary);
        assert_eq!((p[1].src_port, p[1].dst_port), (None, None));
        assert_eq!((p[1].tos, p[1].ttl), (0, 64));
        assert_eq!((p[2].tos, p[2].ttl), (2, 5));
        assert_eq!(p[2].dst_port, Some(7777));
    }

    #[test]
    fn parses_ping_output() {
        let out = lines(
            "PING 203.0.113.254 (203.0.113.254) 56(84) bytes of data.\n\
             64 bytes from 203.0.113.254: icmp_seq=1 ttl=63 time=0.123 ms\n\
             64 bytes from 203.0.113.254: icmp_seq=2 ttl=63 time=0.1 ms\n\
             \n\
             --- 203.0.113.254 ping statistics ---\n\
             3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n",
        );
        let p = parse_ping(&out);
        assert_eq!((p.transmitted, p.received), (3, 2));
        assert_eq!(p.replies, [(SERVER, 63), (SERVER, 63)]);
        assert!(p.errors.is_empty());

        let out = lines(
            "PING 198.51.100.20 (198.51.100.20) 56(84) bytes of data.\n\
             From 192.168.10.1 icmp_seq=1 Time to live exceeded\n\
             \n\
             --- 198.51.100.20 ping statistics ---\n\
             1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms\n",
        );
        let p = parse_ping(&out);
        assert_eq!((p.transmitted, p.received), (1, 0));
        assert_eq!(
            p.errors,
            [(GATEWAY_LAN, "Time to live exceeded".to_owned())]
        );
    }

    #[test]
    fn skips_lines_without_a_header() {
        let out = lines(
            "tcpdump: listening on eth0\n\
             \x20   192.168.10.2 > 203.0.113.254: ICMP echo request\n\
             2 packets captured\n",
        );
        assert!(parse_tcpdump_verbose(&out).is_empty());
    }
}
