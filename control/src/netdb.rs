//! Protocol and service names, read from /etc/protocols and /etc/services as
//! iptables reads them (so a name means here what it means to iptables on
//! the same machine), with a built-in fallback for the common ones.

use std::sync::OnceLock;

/// Names iptables knows without /etc/protocols (`xtables_chain_protos`).
const BUILTIN_PROTOS: [(&str, u8); 10] = [
    ("tcp", 6),
    ("sctp", 132),
    ("udp", 17),
    ("udplite", 136),
    ("icmp", 1),
    ("icmpv6", 58),
    ("esp", 50),
    ("ah", 51),
    ("mh", 135),
    ("all", 0),
];

struct Protocols {
    /// (name or alias, number); the first entry of a number is its name.
    entries: Vec<(String, u8)>,
}

struct Services {
    /// (name or alias, port, protocol name)
    entries: Vec<(String, u16, String)>,
}

fn read_table(path: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.len() >= 2)
        .collect()
}

fn protocols() -> &'static Protocols {
    static P: OnceLock<Protocols> = OnceLock::new();
    P.get_or_init(|| {
        let mut entries = Vec::new();
        for w in read_table("/etc/protocols") {
            let Ok(num) = w[1].parse::<u8>() else {
                continue;
            };
            entries.push((w[0].clone(), num));
            entries.extend(w[2..].iter().map(|a| (a.clone(), num)));
        }
        Protocols { entries }
    })
}

fn services() -> &'static Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        let mut entries = Vec::new();
        for w in read_table("/etc/services") {
            let Some((port, proto)) = w[1].split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            entries.push((w[0].clone(), port, proto.to_string()));
            entries.extend(w[2..].iter().map(|a| (a.clone(), port, proto.to_string())));
        }
        Services { entries }
    })
}

/// A protocol number from a name (case-insensitive, as iptables lower-cases
/// it) or a number.
pub fn protocol_by_name(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    let lower = name.to_ascii_lowercase();
    protocols()
        .entries
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, p)| *p)
        .or_else(|| {
            BUILTIN_PROTOS
                .iter()
                .find(|(n, _)| *n == lower)
                .map(|(_, p)| *p)
        })
}

/// The name iptables-save prints for a protocol number: /etc/protocols first,
/// then iptables' own list, else the number.
pub fn protocol_name(num: u8) -> String {
    if num != 0 {
        if let Some((n, _)) = protocols().entries.iter().find(|(_, p)| *p == num) {
            return n.clone();
        }
    }
    BUILTIN_PROTOS
        .iter()
        .find(|(_, p)| *p == num)
        .map_or_else(|| num.to_string(), |(n, _)| n.to_string())
}

/// A port from a service name for a protocol ("tcp", "udp").
pub fn service_port(name: &str, proto: &str) -> Option<u16> {
    services()
        .entries
        .iter()
        .find(|(n, _, p)| n == name && p == proto)
        .map(|(_, port, _)| *port)
}

/// A port from a service name of any protocol.
pub fn service_port_any(name: &str) -> Option<u16> {
    services()
        .entries
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, port, _)| *port)
}

/// The service name of a port for a protocol ("tcp", "udp"), as
/// `getservbyport` finds it in /etc/services.
pub fn service_name(port: u16, proto: &str) -> Option<String> {
    services()
        .entries
        .iter()
        .find(|(_, p, pr)| *p == port && pr == proto)
        .map(|(n, _, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        assert_eq!(protocol_by_name("TCP"), Some(6));
        assert_eq!(protocol_by_name("udp"), Some(17));
        assert_eq!(protocol_by_name("47"), Some(47));
        assert_eq!(protocol_by_name("all"), Some(0));
        assert_eq!(protocol_by_name("300"), None);
        assert_eq!(protocol_by_name("nosuchproto"), None);
        assert_eq!(protocol_name(6), "tcp");
        assert_eq!(protocol_name(1), "icmp");
        assert_eq!(protocol_name(0), "all");
    }
}
