//! Parsers for option values. Each returns what it expected on failure; the
//! caller turns that into a located error.

use std::net::{Ipv4Addr, Ipv6Addr};

use xdpgw_dataplane::rule::{
    tcp_flag, AddrRange, CtStates, IcmpType, Ipv4Net, Ipv6Net, Limit, NatRange, PortRange,
};

use crate::netdb;

pub type Expected = String;

/// An IPv4 address in dotted form; as iptables does, fewer than four parts
/// are padded with zeros (`10` is 10.0.0.0, `0/0` is everything).
pub fn ipv4(s: &str) -> Result<Ipv4Addr, Expected> {
    let expected = || {
        if s.chars().any(|c| c.is_ascii_alphabetic()) {
            format!("an IPv4 address (host names are not resolved: write '{s}' as an address)")
        } else {
            "an IPv4 address like 192.0.2.1".to_string()
        }
    };
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return Err(expected());
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        octets[i] = p.parse().map_err(|_| expected())?;
    }
    Ok(Ipv4Addr::from(octets))
}

/// `address`, `address/prefix` or `address/dotted.mask`.
pub fn ipv4_net(s: &str) -> Result<Ipv4Net, Expected> {
    if s.contains(',') {
        return Err("one address or network".into());
    }
    let (addr, mask) = match s.split_once('/') {
        None => (s, None),
        Some((a, m)) => (a, Some(m)),
    };
    let addr = ipv4(addr)?;
    match mask {
        None => Ipv4Net::with_prefix(addr, 32).ok_or_else(|| "a prefix".into()),
        Some(m) if m.contains('.') => Ok(Ipv4Net::new(addr, ipv4(m)?)),
        Some(m) => m
            .parse::<u8>()
            .ok()
            .and_then(|p| Ipv4Net::with_prefix(addr, p))
            .ok_or_else(|| format!("a prefix length 0-32 or a dotted mask, not '{m}'")),
    }
}

/// An IPv6 address as `inet_pton` takes it (no brackets, no host names).
pub fn ipv6(s: &str) -> Result<Ipv6Addr, Expected> {
    s.parse::<Ipv6Addr>().map_err(|_| {
        if ipv4(s).is_ok() {
            format!(
                "an IPv6 address: '{s}' is an IPv4 address, which ip6tables refuses (IPv4 \
                 rules go in iptables lines or the `rules` file)"
            )
        } else if s
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit())
        {
            format!("an IPv6 address (host names are not resolved: write '{s}' as an address)")
        } else {
            "an IPv6 address like 2001:db8::1".to_string()
        }
    })
}

/// `address`, `address/prefix` or `address/mask` (a mask written as an
/// IPv6 address), as `xtables_ip6parse_any` takes them.
pub fn ipv6_net(s: &str) -> Result<Ipv6Net, Expected> {
    if s.contains(',') {
        return Err("one address or network".into());
    }
    let (addr, mask) = match s.split_once('/') {
        None => (s, None),
        Some((a, m)) => (a, Some(m)),
    };
    let addr = ipv6(addr)?;
    match mask {
        None => Ipv6Net::with_prefix(addr, 128).ok_or_else(|| "a prefix".into()),
        Some(m) if m.contains(':') => Ok(Ipv6Net::new(addr, ipv6(m)?)),
        Some(m) => m
            .parse::<u8>()
            .ok()
            .and_then(|p| Ipv6Net::with_prefix(addr, p))
            .ok_or_else(|| format!("a prefix length 0-128 or an IPv6 mask, not '{m}'")),
    }
}

/// An IPv6 address range `a-b` (or one address); `allow_reversed` as for
/// [`addr_range`].
pub fn addr_range6(s: &str, allow_reversed: bool) -> Result<AddrRange<Ipv6Addr>, Expected> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let r = AddrRange {
        lo: ipv6(lo)?,
        hi: ipv6(hi)?,
    };
    if r.lo > r.hi && !allow_reversed {
        return Err("a range lo-hi with lo <= hi".into());
    }
    Ok(r)
}

/// ip6tables' `--to-source` / `--to-destination`: `a[-b]`, or with ports
/// `[a[-b]]:p[-q]` (the brackets keep the address's colons apart from the
/// port's, `parse_to` of libxt_NAT).
pub fn nat_range6(s: &str) -> Result<NatRange<Ipv6Addr>, Expected> {
    let expected = || {
        "an address range and/or a port range, like 2001:db8::1-2001:db8::9 or \
         [2001:db8::1]:1024-2047"
            .to_string()
    };
    let (addrs, ports) = match s.strip_prefix('[') {
        Some(rest) => {
            let (a, after) = rest.split_once(']').ok_or_else(expected)?;
            let ports = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(expected)?),
            };
            (a, ports)
        }
        None if s.starts_with(':') && !s.starts_with("::") => ("", Some(&s[1..])),
        None => (s, None),
    };
    let addrs = if addrs.is_empty() {
        None
    } else {
        Some(addr_range6(addrs, false)?)
    };
    let ports = match ports {
        Some(p) if p.contains(':') => {
            return Err(
                "a port range lo-hi (ip6tables: 'Invalid port:port syntax - use dash')".into(),
            )
        }
        p => p.map(nat_ports).transpose()?,
    };
    if addrs.is_none() && ports.is_none() {
        return Err(expected());
    }
    Ok(NatRange { addrs, ports })
}

/// A port number or a service name of `proto` ("tcp" or "udp").
/// Like iptables, a name of another protocol's service is taken too.
pub fn port(s: &str, proto: &str) -> Result<u16, Expected> {
    if let Ok(p) = s.parse::<u16>() {
        return Ok(p);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return Err("a port 0-65535".into());
    }
    netdb::service_port(s, proto)
        .or_else(|| netdb::service_port_any(s))
        .ok_or_else(|| "a port 0-65535 or a service name from /etc/services".to_string())
}

/// `port`, `lo:hi`, `:hi` or `lo:` (as --sport/--dport take them); with
/// `allow_reversed`, `hi:lo` stays as written (a range that matches nothing).
pub fn port_range(s: &str, proto: &str, allow_reversed: bool) -> Result<PortRange, Expected> {
    let r = match s.split_once(':') {
        None => PortRange::single(port(s, proto)?),
        Some((lo, hi)) => PortRange {
            lo: if lo.is_empty() { 0 } else { port(lo, proto)? },
            hi: if hi.is_empty() {
                65535
            } else {
                port(hi, proto)?
            },
        },
    };
    if r.lo > r.hi && !allow_reversed {
        return Err("a range lo:hi with lo <= hi".into());
    }
    Ok(r)
}

/// A multiport list: `p,q,lo:hi`, at most 15 slots (a range takes two).
pub fn port_list(s: &str, proto: &str) -> Result<Vec<PortRange>, Expected> {
    let mut out = Vec::new();
    let mut slots = 0;
    for item in s.split(',') {
        let r = match item.split_once(':') {
            None => PortRange::single(port(item, proto)?),
            Some((lo, hi)) => PortRange {
                lo: port(lo, proto)?,
                hi: port(hi, proto)?,
            },
        };
        if item.contains(':') && r.lo >= r.hi {
            return Err("ranges lo:hi with lo < hi".into());
        }
        slots += if r.lo == r.hi { 1 } else { 2 };
        out.push(r);
    }
    if slots > xdpgw_dataplane::rule::Multiport::MAX_SLOTS {
        return Err("at most 15 ports (a range counts as two)".into());
    }
    Ok(out)
}

/// A `--to-ports` value: `p` or `lo-hi`.
pub fn nat_ports(s: &str) -> Result<PortRange, Expected> {
    let expected = || "a port or a range lo-hi".to_string();
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let r = PortRange {
        lo: lo.parse().map_err(|_| expected())?,
        hi: hi.parse().map_err(|_| expected())?,
    };
    if r.lo > r.hi {
        return Err(expected());
    }
    Ok(r)
}

/// An address range `a-b` (or one address); with `allow_reversed` (as
/// `-m iprange` takes it, with a warning in iptables) `b < a` stays as
/// written, a range that matches nothing.
pub fn addr_range(s: &str, allow_reversed: bool) -> Result<AddrRange, Expected> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let r = AddrRange {
        lo: ipv4(lo)?,
        hi: ipv4(hi)?,
    };
    if r.lo > r.hi && !allow_reversed {
        return Err("a range lo-hi with lo <= hi".into());
    }
    Ok(r)
}

/// `--to-source` / `--to-destination`: `a[-b][:p[-q]]`.
pub fn nat_range(s: &str) -> Result<NatRange, Expected> {
    let (addrs, ports) = match s.split_once(':') {
        None => (s, None),
        Some((a, p)) => (a, Some(p)),
    };
    let addrs = if addrs.is_empty() {
        None
    } else {
        Some(addr_range(addrs, false)?)
    };
    let ports = ports.map(nat_ports).transpose()?;
    if addrs.is_none() && ports.is_none() {
        return Err(
            "an address range and/or a port range, like 192.0.2.1-192.0.2.9:1024-2047".into(),
        );
    }
    Ok(NatRange { addrs, ports })
}

/// `--tcp-flags` lists: comma-separated FIN,SYN,RST,PSH,ACK,URG, ALL or NONE.
pub fn tcp_flags(s: &str) -> Result<u8, Expected> {
    let mut flags = 0;
    for name in s.split(',') {
        flags |= match name.to_ascii_uppercase().as_str() {
            "ALL" => tcp_flag::ALL,
            "NONE" => 0,
            n => tcp_flag::NAMES
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    "flags from FIN,SYN,RST,PSH,ACK,URG,ALL,NONE separated by ','".to_string()
                })?,
        };
    }
    Ok(flags)
}

/// ICMP type names as iptables knows them: (name, type, code range).
pub const ICMP_TYPES: [(&str, u8, u8, u8); 40] = [
    ("any", 0xff, 0, 0xff),
    ("echo-reply", 0, 0, 0xff),
    ("pong", 0, 0, 0xff),
    ("destination-unreachable", 3, 0, 0xff),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xff),
    ("redirect", 5, 0, 0xff),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xff),
    ("ping", 8, 0, 0xff),
    ("router-advertisement", 9, 0, 0xff),
    ("router-solicitation", 10, 0, 0xff),
    ("time-exceeded", 11, 0, 0xff),
    ("ttl-exceeded", 11, 0, 0xff),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xff),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xff),
    ("timestamp-reply", 14, 0, 0xff),
    ("address-mask-request", 17, 0, 0xff),
    ("address-mask-reply", 18, 0, 0xff),
];

/// ICMPv6 type names as ip6tables knows them (`libip6t_icmp6`): (name,
/// type, code range).
pub const ICMP6_TYPES: [(&str, u8, u8, u8); 28] = [
    ("destination-unreachable", 1, 0, 0xff),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 0xff),
    ("time-exceeded", 3, 0, 0xff),
    ("ttl-exceeded", 3, 0, 0xff),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 0xff),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 0xff),
    ("ping", 128, 0, 0xff),
    ("echo-reply", 129, 0, 0xff),
    ("pong", 129, 0, 0xff),
    ("router-solicitation", 133, 0, 0xff),
    ("router-advertisement", 134, 0, 0xff),
    ("neighbour-solicitation", 135, 0, 0xff),
    ("neighbor-solicitation", 135, 0, 0xff),
    ("neighbour-advertisement", 136, 0, 0xff),
    ("neighbor-advertisement", 136, 0, 0xff),
    ("redirect", 137, 0, 0xff),
];

/// `--icmpv6-type`: a name (or an unambiguous start of one), `type` or
/// `type/code`.
pub fn icmp6_type(s: &str) -> Result<IcmpType, Expected> {
    icmp_type_of(s, &ICMP6_TYPES, "ICMPv6")
}

/// `--icmp-type`: a name (or an unambiguous start of one), `type` or `type/code`.
pub fn icmp_type(s: &str) -> Result<IcmpType, Expected> {
    icmp_type_of(s, &ICMP_TYPES, "ICMP")
}

fn icmp_type_of(s: &str, names: &[(&str, u8, u8, u8)], what: &str) -> Result<IcmpType, Expected> {
    let from = |ty: u8, lo: u8, hi: u8| {
        if ty == 0xff && what == "ICMP" {
            IcmpType::Any
        } else {
            IcmpType::Type {
                ty,
                code_lo: lo,
                code_hi: hi,
            }
        }
    };
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let bad = || "a type 0-255, type/code, or a name like echo-request".to_string();
        let (ty, code) = match s.split_once('/') {
            None => (s.parse::<u8>().map_err(|_| bad())?, None),
            Some((t, c)) => (
                t.parse::<u8>().map_err(|_| bad())?,
                Some(c.parse::<u8>().map_err(|_| bad())?),
            ),
        };
        return Ok(match code {
            None => from(ty, 0, 0xff),
            Some(c) => from(ty, c, c),
        });
    }
    if let Some((_, t, lo, hi)) = names.iter().find(|e| e.0.eq_ignore_ascii_case(s)) {
        return Ok(from(*t, *lo, *hi));
    }
    let starts: Vec<_> = names
        .iter()
        .filter(|e| e.0.len() >= s.len() && e.0[..s.len()].eq_ignore_ascii_case(s))
        .collect();
    match starts.as_slice() {
        [(_, t, lo, hi)] => Ok(from(*t, *lo, *hi)),
        [] => Err(format!(
            "an {what} type number or name ({})",
            names.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")
        )),
        many => Err(format!(
            "an unambiguous {what} type name ('{s}' could be {})",
            many.iter().map(|e| e.0).collect::<Vec<_>>().join(" or ")
        )),
    }
}

/// A comma-separated list of connection states; `allowed` says which of
/// [`CtStates::NAMES`] the option takes.
pub fn ct_states(s: &str, allowed: u8) -> Result<CtStates, Expected> {
    let mut bits = 0;
    for name in s.split(',') {
        let b = CtStates::NAMES
            .iter()
            .find(|(n, b)| n.eq_ignore_ascii_case(name) && allowed & b != 0)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                let names: Vec<_> = CtStates::NAMES
                    .iter()
                    .filter(|(_, b)| allowed & b != 0)
                    .map(|(n, _)| *n)
                    .collect();
                format!("states from {} separated by ','", names.join(","))
            })?;
        bits |= b;
    }
    Ok(CtStates(bits))
}

/// An unsigned number as C's strtoul with base 0 reads it: `0x` hex, a
/// leading `0` octal, else decimal.
pub fn c_number(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// `value[/mask]` for marks; the mask defaults to all ones.
pub fn mark(s: &str) -> Result<(u32, Option<u32>), Expected> {
    let bad = || "a value[/mask], each a 32-bit number (0x.. for hex)".to_string();
    match s.split_once('/') {
        None => Ok((c_number(s).ok_or_else(bad)?, None)),
        Some((v, m)) => Ok((
            c_number(v).ok_or_else(bad)?,
            Some(c_number(m).ok_or_else(bad)?),
        )),
    }
}

/// The TOS names iptables knows (`tos_parse_symbolic`); a name sets the
/// mask 0x3f.
const TOS_NAMES: [(&str, u8); 5] = [
    ("Minimize-Delay", 0x10),
    ("Maximize-Throughput", 0x08),
    ("Maximize-Reliability", 0x04),
    ("Minimize-Cost", 0x02),
    ("Normal-Service", 0x00),
];

/// `-m tos --tos` and `-j TOS --set-tos`: `value[/mask]` (numbers 0-255, the
/// mask 0xff when absent) or a TOS name (mask 0x3f).
pub fn tos(s: &str) -> Result<(u8, u8), Expected> {
    let expected = || {
        format!(
            "value[/mask] (numbers 0-255) or one of {}",
            TOS_NAMES.map(|n| n.0).join(", ")
        )
    };
    let byte = |t: &str| c_number(t).and_then(|v| u8::try_from(v).ok());
    if let Some((_, v)) = TOS_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok((*v, 0x3f));
    }
    match s.split_once('/') {
        None => Ok((byte(s).ok_or_else(expected)?, 0xff)),
        Some((v, m)) => Ok((byte(v).ok_or_else(expected)?, byte(m).ok_or_else(expected)?)),
    }
}

/// A number 0-255 (a TTL), or from `min` for the TTL target's steps.
pub fn ttl(s: &str, min: u8) -> Result<u8, Expected> {
    s.parse::<u8>()
        .ok()
        .filter(|v| *v >= min)
        .ok_or_else(|| format!("a number {min}-255"))
}

/// `-m length --length`: `n`, `lo:hi`, `:hi` (from 0) or `lo:` (to 65535).
pub fn length(s: &str) -> Result<(u16, u16), Expected> {
    let expected = || "a length or range of lengths 0-65535 (n, lo:hi, :hi, lo:)".to_string();
    let num = |t: &str, empty: u16| {
        if t.is_empty() {
            Some(empty)
        } else {
            t.parse::<u16>().ok()
        }
    };
    let mut parts = s.split(':');
    let (Some(lo), hi, None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(expected());
    };
    match hi {
        None => {
            let n = lo.parse::<u16>().map_err(|_| expected())?;
            Ok((n, n))
        }
        Some(hi) => Ok((
            num(lo, 0).ok_or_else(expected)?,
            num(hi, u16::MAX).ok_or_else(expected)?,
        )),
    }
}

/// A DSCP value 0-63.
pub fn dscp(s: &str) -> Result<u8, Expected> {
    c_number(s)
        .filter(|v| *v <= 63)
        .map(|v| v as u8)
        .ok_or_else(|| "a DSCP value 0-63 (decimal or 0x hex)".into())
}

const DSCP_CLASSES: [(&str, u8); 22] = [
    ("CS0", 0x00),
    ("CS1", 0x08),
    ("CS2", 0x10),
    ("CS3", 0x18),
    ("CS4", 0x20),
    ("CS5", 0x28),
    ("CS6", 0x30),
    ("CS7", 0x38),
    ("BE", 0x00),
    ("AF11", 0x0a),
    ("AF12", 0x0c),
    ("AF13", 0x0e),
    ("AF21", 0x12),
    ("AF22", 0x14),
    ("AF23", 0x16),
    ("AF31", 0x1a),
    ("AF32", 0x1c),
    ("AF33", 0x1e),
    ("AF41", 0x22),
    ("AF42", 0x24),
    ("AF43", 0x26),
    ("EF", 0x2e),
];

/// A DiffServ class name (CS0-CS7, BE, AFxy, EF).
pub fn dscp_class(s: &str) -> Result<u8, Expected> {
    DSCP_CLASSES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            format!(
                "a DiffServ class ({})",
                DSCP_CLASSES.map(|c| c.0).join(", ")
            )
        })
}

/// `--limit N[/second|/minute|/hour|/day]` (any start of the unit name) as
/// the kernel's average period in 1/10000 s.
pub fn limit_rate(s: &str) -> Result<u32, Expected> {
    let bad = || "a rate N/sec, N/min, N/hour or N/day".to_string();
    let (num, unit) = s.split_once('/').unwrap_or((s, "second"));
    let mult: u32 = match unit.to_ascii_lowercase() {
        u if u.is_empty() => return Err(bad()),
        u if "second".starts_with(&u) => 1,
        u if "minute".starts_with(&u) => 60,
        u if "hour".starts_with(&u) => 3600,
        u if "day".starts_with(&u) => 86400,
        _ => return Err(bad()),
    };
    let r: u32 = num.parse().ok().filter(|r| *r > 0).ok_or_else(bad)?;
    let avg = Limit::SCALE * mult / r;
    if avg == 0 {
        return Err("a rate of at most 10000/sec".into());
    }
    Ok(avg)
}

/// The `--limit` text iptables-save prints for an average period.
pub fn limit_rate_text(avg: u32) -> String {
    const RATES: [(&str, u32); 4] = [
        ("day", Limit::SCALE * 86400),
        ("hour", Limit::SCALE * 3600),
        ("min", Limit::SCALE * 60),
        ("sec", Limit::SCALE),
    ];
    if avg == 0 {
        return "inf".into();
    }
    let mut i = 1;
    while i < RATES.len() {
        let m = RATES[i].1;
        if avg > m || m / avg < m % avg {
            break;
        }
        i += 1;
    }
    format!("{}/{}", RATES[i - 1].1 / avg, RATES[i - 1].0)
}

/// A log level: 0-7 or a syslog level name.
pub fn log_level(s: &str) -> Result<u8, Expected> {
    const NAMES: [(&str, u8); 9] = [
        ("alert", 1),
        ("crit", 2),
        ("debug", 7),
        ("emerg", 0),
        ("error", 3),
        ("info", 6),
        ("notice", 5),
        ("panic", 0),
        ("warning", 4),
    ];
    if let Ok(n) = s.parse::<u8>() {
        if n <= 7 {
            return Ok(n);
        }
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, l)| *l)
        .ok_or_else(|| {
            "a level 0-7 or emerg, alert, crit, error, warning, notice, info, debug".into()
        })
}

/// libxt_hashlimit's `parse_rate`: `N[/second|/minute|/hour|/day]` (any
/// start of the unit, any case; the number is read as `atoll` reads it) as
/// the period in 1/1,000,000 s, and the unit in milliseconds (the default
/// `--hashlimit-htable-expire`). Byte rates (`N[kb|mb]/s`) are refused.
pub fn hashlimit_rate(s: &str) -> Result<(u64, u32), Expected> {
    let bad = || "a rate N/sec, N/min, N/hour or N/day".to_string();
    if s.find("b/s").is_some_and(|at| at > 0) {
        return Err(
            "a packet rate N/sec, N/min, N/hour or N/day (byte rates are not \
                    supported yet)"
                .into(),
        );
    }
    let mult: u64 = match s.split_once('/') {
        None => 1,
        Some((_, unit)) => match unit.to_ascii_lowercase() {
            u if u.is_empty() => return Err(bad()),
            u if "second".starts_with(&u) => 1,
            u if "minute".starts_with(&u) => 60,
            u if "hour".starts_with(&u) => 3600,
            u if "day".starts_with(&u) => 86400,
            _ => return Err(bad()),
        },
    };
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let r: u64 = s[..digits]
        .parse()
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(bad)?;
    let avg = 1_000_000 * mult / r;
    if avg == 0 {
        return Err("a rate of at most 1000000/sec".into());
    }
    Ok((avg, (mult * 1000) as u32))
}

/// libxt_hashlimit's `parse_burst` for packet rates: `N` (1-1000000), or
/// `Nk`/`Nm` times 1024/1048576 (still at most 1000000).
pub fn hashlimit_burst(s: &str) -> Option<u64> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let v: u64 = s[..digits].parse().ok().filter(|v| *v >= 1)?;
    let factor = match s[digits..].chars().next() {
        None => 1,
        Some('k') => 1024,
        Some('m') => 1024 * 1024,
        Some(_) => 1,
    };
    Some(v * factor).filter(|v| *v <= 1_000_000)
}

/// `--connlimit-mask`: a prefix length (iptables takes any number and
/// keeps a mask of all ones beyond 32) or a contiguous dotted netmask.
pub fn connlimit_mask(s: &str) -> Option<u8> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u32>().ok().map(|n| n.min(32) as u8);
    }
    let m = u32::from(s.parse::<Ipv4Addr>().ok()?);
    (m.leading_ones() + m.trailing_zeros() == 32).then(|| m.leading_ones() as u8)
}

/// `N`, `N:`, `:M` or `N:M` of unsigned 32-bit numbers (`--ctexpire`), the
/// missing ends 0 and 4294967295.
pub fn u32_range(s: &str) -> Option<(u32, u32)> {
    let num = |t: &str, dflt: u32| {
        if t.is_empty() {
            Some(dflt)
        } else {
            t.parse::<u32>().ok()
        }
    };
    match s.split_once(':') {
        None => s.parse::<u32>().ok().map(|n| (n, n)),
        Some((a, b)) if !(a.is_empty() && b.is_empty()) => Some((num(a, 0)?, num(b, u32::MAX)?)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ipv4("192.0.2.1"), Ok(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(ipv4("10"), Ok(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(ipv4("256.0.0.1").is_err());
        assert!(ipv4("1.2.3.4.5").is_err());
        assert!(ipv4("gateway").expect_err("name").contains("not resolved"));
        let n = ipv4_net("10.1.2.3/255.0.255.0").expect("net");
        assert_eq!(n.addr(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(ipv4_net("0/0").expect("any").prefix_len(), Some(0));
        assert!(ipv4_net("1.2.3.4/33").is_err());
        assert!(ipv4_net("1.2.3.4,5.6.7.8").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(port_range("22", "tcp", false), Ok(PortRange::single(22)));
        assert_eq!(
            port_range(":100", "tcp", false),
            Ok(PortRange { lo: 0, hi: 100 })
        );
        assert_eq!(
            port_range("100:", "tcp", false),
            Ok(PortRange { lo: 100, hi: 65535 })
        );
        assert!(port_range("5:4", "tcp", false).is_err());
        assert!(port_range("99999", "tcp", false).is_err());
        assert_eq!(port_list("80,443,8000:8080", "tcp").map(|l| l.len()), Ok(3));
        assert!(port_list("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:16", "tcp").is_err());
        assert_eq!(nat_ports("1024-2000"), Ok(PortRange { lo: 1024, hi: 2000 }));
    }

    #[test]
    fn icmp_names() {
        assert_eq!(
            icmp_type("echo-request"),
            Ok(IcmpType::Type {
                ty: 8,
                code_lo: 0,
                code_hi: 0xff
            })
        );
        assert_eq!(
            icmp_type("3/4"),
            Ok(IcmpType::Type {
                ty: 3,
                code_lo: 4,
                code_hi: 4
            })
        );
        assert_eq!(icmp_type("any"), Ok(IcmpType::Any));
        assert_eq!(icmp_type("port-unr").ok(), icmp_type("3/3").ok());
        assert!(icmp_type("echo")
            .expect_err("ambiguous")
            .contains("echo-reply"));
    }

    #[test]
    fn limits_print_like_iptables() {
        for (input, shown) in [
            ("5/min", "5/min"),
            ("60/minute", "1/sec"),
            ("100/second", "100/sec"),
            ("3/hour", "3/hour"),
            ("2/day", "2/day"),
            ("7/m", "7/min"),
            ("13/s", "13/sec"),
        ] {
            assert_eq!(
                limit_rate(input).map(limit_rate_text).as_deref(),
                Ok(shown),
                "{input}"
            );
        }
        assert!(limit_rate("10001/sec").is_err());
        assert!(limit_rate("0/sec").is_err());
    }

    #[test]
    fn numbers_dscp_levels() {
        assert_eq!(c_number("0x10"), Some(16));
        assert_eq!(c_number("010"), Some(8));
        assert_eq!(c_number("0"), Some(0));
        assert_eq!(dscp("46"), Ok(46));
        assert!(dscp("64").is_err());
        assert_eq!(dscp_class("ef"), Ok(46));
        assert_eq!(log_level("warning"), Ok(4));
        assert!(log_level("8").is_err());
        assert_eq!(tcp_flags("ALL"), Ok(0x3f));
        assert!(tcp_flags("SYN,ECE").is_err());
    }

    #[test]
    fn hashlimit_values_as_libxt_hashlimit_reads_them() {
        assert_eq!(hashlimit_rate("10/sec"), Ok((100_000, 1000)));
        assert_eq!(hashlimit_rate("3/MIN"), Ok((20_000_000, 60_000)));
        assert_eq!(hashlimit_rate("5x/se"), Ok((200_000, 1000)));
        assert_eq!(hashlimit_rate("7"), Ok((142_857, 1000)));
        assert_eq!(hashlimit_rate("1/d"), Ok((86_400_000_000, 86_400_000)));
        assert!(hashlimit_rate("0/sec").is_err());
        assert!(hashlimit_rate("5/").is_err());
        assert!(hashlimit_rate("5/fortnight").is_err());
        assert!(hashlimit_rate("2000000/sec").is_err());
        assert!(hashlimit_rate("100kb/s").is_err());
        assert_eq!(hashlimit_burst("5"), Some(5));
        assert_eq!(hashlimit_burst("2k"), Some(2048));
        assert_eq!(hashlimit_burst("1000001"), None);
        assert_eq!(hashlimit_burst("1m"), None);
        assert_eq!(hashlimit_burst("0"), None);
        assert_eq!(u32_range("5"), Some((5, 5)));
        assert_eq!(u32_range("5:"), Some((5, u32::MAX)));
        assert_eq!(u32_range(":5"), Some((0, 5)));
        assert_eq!(u32_range("20:10"), Some((20, 10)));
        assert_eq!(u32_range(":"), None);
        assert_eq!(connlimit_mask("24"), Some(24));
        assert_eq!(connlimit_mask("129"), Some(32));
        assert_eq!(connlimit_mask("255.255.255.0"), Some(24));
        assert_eq!(connlimit_mask("0.0.0.0"), Some(0));
        assert_eq!(connlimit_mask("255.0.255.0"), None);
        assert_eq!(connlimit_mask("-1"), None);
        assert_eq!(u32_range("4294967296"), None);
    }
}
