//! Printing a rule set in canonical iptables-save form: what Linux's
//! `iptables-save` prints after `iptables-restore` of the same rules (without
//! its `#` header and footer lines).

use std::fmt::Write;

use xdpgw_dataplane::rule::RecentCmd;
use xdpgw_dataplane::rule::{
    tcp_flag, AddrRange, Chain, ConnmarkOp, IcmpType, Inv, Ipv4Net, Match, MultiportDir, NatRange,
    PortRange, Rule, RuleSet, TableRules, Target, TtlMatch, TtlSet,
};
use xdpgw_dataplane::rule::{AddrType, AddrtypeLimit, TcpmssOp};
use xdpgw_dataplane::rule::{CounterOp, DimFlags};
use xdpgw_dataplane::rule::{Family, Ipv6HeaderMatch, Ipv6Net, U32Range};

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::netdb;
use crate::parse::value::limit_rate_text;

/// The whole rule set, table after table.
pub fn render(set: &RuleSet) -> String {
    render_with(set, false)
}

/// As [`render`], with each chain's and rule's counters (`iptables-save -c`).
pub fn render_with(set: &RuleSet, counters: bool) -> String {
    render_family(set, Family::Ipv4, counters)
}

/// A rule set of `family` as its save command prints it (`ip6tables-save`
/// for IPv6), with counters or not.
pub fn render_family(set: &RuleSet, family: Family, counters: bool) -> String {
    let mut out = String::new();
    for t in &set.tables {
        render_table_in(&mut out, t, counters, family);
    }
    out
}

/// One table, from `*table` to `COMMIT`.
pub fn render_table(out: &mut String, t: &TableRules, counters: bool) {
    render_table_in(out, t, counters, Family::Ipv4)
}

/// [`render_table`] of a table of `family`.
pub fn render_table_in(out: &mut String, t: &TableRules, counters: bool, family: Family) {
    let _ = writeln!(out, "*{}", t.table.name());
    for c in &t.chains {
        let policy = c.policy.map_or("-", |p| p.name());
        let (p, b) = if counters {
            (c.counters.packets, c.counters.bytes)
        } else {
            (0, 0)
        };
        let _ = writeln!(out, ":{} {policy} [{p}:{b}]", c.name);
    }
    for c in &t.chains {
        for r in &c.rules {
            render_rule_in(out, c, r, counters, family);
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
}

/// One rule as `-A CHAIN ...` (no newline).
pub fn render_rule(out: &mut String, chain: &Chain, r: &Rule, counters: bool) {
    render_rule_in(out, chain, r, counters, Family::Ipv4)
}

/// [`render_rule`] of a rule of `family`.
pub fn render_rule_in(out: &mut String, chain: &Chain, r: &Rule, counters: bool, family: Family) {
    if counters {
        let _ = write!(out, "[{}:{}] ", r.counters.packets, r.counters.bytes);
    }
    let _ = write!(out, "-A {}", chain.name);
    rule_spec_in(out, r, family);
}

/// The rule's options after the chain name, each with a leading space.
pub fn rule_spec(out: &mut String, r: &Rule) {
    rule_spec_in(out, r, Family::Ipv4)
}

/// [`rule_spec`] of a rule of `family`.
pub fn rule_spec_in(out: &mut String, r: &Rule, family: Family) {
    if let Some(s) = r.src {
        net(out, "-s", s);
    }
    if let Some(d) = r.dst {
        net(out, "-d", d);
    }
    if let Some(s) = r.src6 {
        net6(out, "-s", s);
    }
    if let Some(d) = r.dst6 {
        net6(out, "-d", d);
    }
    if let Some(i) = &r.in_iface {
        inv(out, i.invert);
        let _ = write!(out, " -i {}", i.value.name);
    }
    if let Some(o) = &r.out_iface {
        inv(out, o.invert);
        let _ = write!(out, " -o {}", o.value.name);
    }
    if let Some(p) = r.protocol {
        inv(out, p.invert);
        let _ = write!(out, " -p {}", netdb::protocol_name(p.value));
    }
    for m in &r.matches {
        let _ = write!(out, " -m {}", m.name_in(family));
        match_spec(out, m, family);
    }
    target(out, &r.target, family);
}

fn inv(out: &mut String, invert: bool) {
    if invert {
        out.push_str(" !");
    }
}

fn net(out: &mut String, opt: &str, n: Inv<Ipv4Net>) {
    inv(out, n.invert);
    let _ = match n.value.prefix_len() {
        Some(p) => write!(out, " {opt} {}/{p}", n.value.addr()),
        None => write!(out, " {opt} {}/{}", n.value.addr(), n.value.mask()),
    };
}

/// An IPv6 address as `inet_ntop` (glibc) writes it, which ip6tables-save
/// uses: Rust's form, except that an address of 96 zero bits and then a
/// non-zero word is written with a dotted IPv4 tail (`::10.0.0.1`).
pub fn ntop6(a: Ipv6Addr) -> String {
    let w = a.segments();
    if w[..6] == [0; 6] && w[6] != 0 {
        let v4 = Ipv4Addr::from((u32::from(w[6]) << 16) | u32::from(w[7]));
        return format!("::{v4}");
    }
    a.to_string()
}

fn net6(out: &mut String, opt: &str, n: Inv<Ipv6Net>) {
    inv(out, n.invert);
    let _ = match n.value.prefix_len() {
        Some(p) => write!(out, " {opt} {}/{p}", ntop6(n.value.addr())),
        None => write!(
            out,
            " {opt} {}/{}",
            ntop6(n.value.addr()),
            ntop6(n.value.mask())
        ),
    };
}

/// `--fragid` / `--rt-segsleft`: nothing for the whole range, else `n` or
/// `lo:hi` (`frag_save`, `rt_save`).
fn u32_range(out: &mut String, opt: &str, r: U32Range) {
    if r.lo == 0 && r.hi == u32::MAX {
        return;
    }
    inv(out, r.invert);
    let _ = if r.lo == r.hi {
        write!(out, " {opt} {}", r.lo)
    } else {
        write!(out, " {opt} {}:{}", r.lo, r.hi)
    };
}

fn ports(out: &mut String, opt: &str, p: Option<Inv<PortRange>>) {
    let Some(p) = p else { return };
    if p.value == PortRange::ALL && !p.invert {
        return;
    }
    inv(out, p.invert);
    let _ = if p.value.lo == p.value.hi {
        write!(out, " {opt} {}", p.value.lo)
    } else {
        write!(out, " {opt} {}:{}", p.value.lo, p.value.hi)
    };
}

fn tcp_flags(out: &mut String, flags: u8) {
    if flags == 0 {
        out.push_str("NONE");
        return;
    }
    let mut first = true;
    for (name, bit) in tcp_flag::NAMES {
        if flags & bit != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

/// A string as xtables_save_string prints it: bare when it is only letters,
/// digits, `_` and `-`; otherwise in double quotes with `"`, `\` and `'`
/// escaped.
pub fn save_string(out: &mut String, s: &str) {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    out.push(' ');
    if bare {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn states(out: &mut String, opt: &str, s: Inv<xdpgw_dataplane::rule::CtStates>) {
    inv(out, s.invert);
    let _ = write!(out, " {opt} ");
    let names: Vec<&str> = xdpgw_dataplane::rule::CtStates::NAMES
        .iter()
        .filter(|(_, b)| s.value.contains(*b))
        .map(|(n, _)| *n)
        .collect();
    out.push_str(&names.join(","));
}

/// `-m conntrack`'s options in iptables-save's order (`conntrack_dump`):
/// addresses without `/32`, ports as `lo:hi` unless one, the protocol as a
/// number.
fn ct_match(out: &mut String, m: &xdpgw_dataplane::rule::CtMatch) {
    use xdpgw_dataplane::rule::CtMatch;
    if let Some(s) = m.state {
        states(out, "--ctstate", s);
    }
    if let Some(p) = m.proto {
        inv(out, p.invert);
        let _ = write!(out, " --ctproto {}", p.value);
    }
    for (i, opt) in CtMatch::ADDR_OPTS.iter().enumerate() {
        if let Some((invert, a)) = ct_addr_at(m, i) {
            inv(out, invert);
            let _ = write!(out, " {opt} {a}");
        }
    }
    for (opt, r) in CtMatch::PORT_OPTS.iter().zip(m.ports) {
        if let Some(r) = r {
            inv(out, r.invert);
            let _ = write!(out, " {opt} {}", ct_ports(r.value));
        }
    }
    if let Some(st) = m.status {
        inv(out, st.invert);
        let _ = write!(out, " --ctstatus {}", ct_status(st.value));
    }
    if let Some(e) = m.expires {
        inv(out, e.invert);
        let _ = write!(out, " --ctexpire {}", ct_expire(e.value));
    }
    if let Some(reply) = m.dir_reply {
        out.push_str(if reply {
            " --ctdir REPLY"
        } else {
            " --ctdir ORIGINAL"
        });
    }
}

/// `-m conntrack`'s address option `i` (of [`CtMatch::ADDR_OPTS`]), of
/// whichever family the rule is: whether it is inverted, and its text.
///
/// [`CtMatch::ADDR_OPTS`]: xdpgw_dataplane::rule::CtMatch::ADDR_OPTS
pub(crate) fn ct_addr_at(m: &xdpgw_dataplane::rule::CtMatch, i: usize) -> Option<(bool, String)> {
    if let Some(a) = m.addrs.get(i).copied().flatten() {
        return Some((a.invert, ct_addr(a.value)));
    }
    let a = m.addrs6.get(i).copied().flatten()?;
    Some((a.invert, ct_addr6(a.value)))
}

/// An IPv6 address of `-m conntrack` as ip6tables-save prints it
/// (`conntrack_dump_addr`): the address for a host, else `/prefix`, or
/// `/mask` for a mask that is not a prefix.
pub(crate) fn ct_addr6(n: Ipv6Net) -> String {
    match n.prefix_len() {
        Some(128) => ntop6(n.addr()),
        Some(p) => format!("{}/{p}", ntop6(n.addr())),
        None => format!("{}/{}", ntop6(n.addr()), ntop6(n.mask())),
    }
}

/// An address of `-m conntrack`: `a.b.c.d` for a host, else `/prefix`.
pub(crate) fn ct_addr(n: Ipv4Net) -> String {
    match n.prefix_len() {
        Some(32) | None => n.addr().to_string(),
        Some(p) => format!("{}/{p}", n.addr()),
    }
}

/// A port range of `-m conntrack`: `p` or `lo:hi`.
pub(crate) fn ct_ports(r: PortRange) -> String {
    if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}:{}", r.lo, r.hi)
    }
}

/// `--ctexpire`'s range: `N` when both ends are equal.
pub(crate) fn ct_expire((lo, hi): (u32, u32)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

/// `-m hashlimit`'s options after the rate and burst, as libxt_hashlimit's
/// `hashlimit_mt_save` (`pre` "--hashlimit-") and `hashlimit_mt_print`
/// (`pre` "") write them; `quantum` is the rate's unit in milliseconds.
pub(crate) fn hashlimit_rest(
    out: &mut String,
    h: &xdpgw_dataplane::rule::HashlimitMatch,
    quantum: u64,
    pre: &str,
    save: bool,
) {
    if h.mode != 0 {
        let sep = if save { ',' } else { '-' };
        let _ = write!(out, " {pre}mode {}", h.mode_text(sep));
    }
    if save {
        let _ = write!(out, " {pre}name {}", h.name);
    }
    if h.size != 0 {
        let _ = write!(out, " {pre}htable-size {}", h.size);
    }
    if h.max != 0 {
        let _ = write!(out, " {pre}htable-max {}", h.max);
    }
    if h.gc_interval != xdpgw_dataplane::rule::HashlimitMatch::DEFAULT_GC_INTERVAL {
        let _ = write!(out, " {pre}htable-gcinterval {}", h.gc_interval);
    }
    if u64::from(h.expire) != quantum {
        let _ = write!(out, " {pre}htable-expire {}", h.expire);
    }
    if h.srcmask != 32 {
        let _ = write!(out, " {pre}srcmask {}", h.srcmask);
    }
    if h.dstmask != 32 {
        let _ = write!(out, " {pre}dstmask {}", h.dstmask);
    }
}

/// `--ctstatus` names: NONE alone, else the bits' names in order.
pub(crate) fn ct_status(bits: u16) -> String {
    use xdpgw_dataplane::rule::CtMatch;
    if bits == 0 {
        return "NONE".into();
    }
    CtMatch::STATUS_NAMES
        .iter()
        .filter(|(_, b)| *b != 0 && bits & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn addr_range(out: &mut String, opt: &str, r: Option<Inv<AddrRange>>) {
    if let Some(r) = r {
        inv(out, r.invert);
        let _ = write!(out, " {opt} {}-{}", r.value.lo, r.value.hi);
    }
}

/// An ip6tables NAT range as the save form writes it.
pub(crate) fn nat_range6_text(r: &NatRange<Ipv6Addr>) -> String {
    let mut out = String::new();
    nat_range6(&mut out, "", r);
    out.trim_start().to_string()
}

fn match_spec(out: &mut String, m: &Match, family: Family) {
    let v6 = family == Family::Ipv6;
    match m {
        Match::Tcp(t) => {
            ports(out, "--sport", t.ports.sport);
            ports(out, "--dport", t.ports.dport);
            if let Some(f) = t.flags {
                inv(out, f.invert);
                out.push_str(" --tcp-flags ");
                tcp_flags(out, f.value.mask);
                out.push(' ');
                tcp_flags(out, f.value.comp);
            }
        }
        Match::Udp(u) => {
            ports(out, "--sport", u.sport);
            ports(out, "--dport", u.dport);
        }
        Match::Icmp(i) => {
            inv(out, i.invert);
            let opt = if v6 { "--icmpv6-type" } else { "--icmp-type" };
            let _ = match i.value {
                IcmpType::Any => write!(out, " {opt} any"),
                IcmpType::Type {
                    ty,
                    code_lo,
                    code_hi,
                } => {
                    if code_lo != 0 || code_hi != 0xff {
                        write!(out, " {opt} {ty}/{code_lo}")
                    } else {
                        write!(out, " {opt} {ty}")
                    }
                }
            };
        }
        Match::IpRange6(r) => {
            for (opt, r) in [("--src-range", r.src), ("--dst-range", r.dst)] {
                if let Some(r) = r {
                    inv(out, r.invert);
                    let _ = write!(out, " {opt} {}-{}", ntop6(r.value.lo), ntop6(r.value.hi));
                }
            }
        }
        Match::Ipv6Header(h) => {
            // ipv6header_save: the names of the bits, highest first.
            inv(out, h.invert);
            let names: Vec<&str> = Ipv6HeaderMatch::NAMES
                .iter()
                .filter(|(_, b)| h.headers & b != 0)
                .map(|(n, _)| *n)
                .collect();
            let _ = write!(out, " --header {}", names.join(","));
            if h.soft {
                out.push_str(" --soft");
            }
        }
        Match::Frag(f) => {
            u32_range(out, "--fragid", f.ids);
            if let Some(l) = f.len {
                inv(out, l.invert);
                let _ = write!(out, " --fraglen {}", l.value);
            }
            for (on, opt) in [
                (f.res, " --fragres"),
                (f.first, " --fragfirst"),
                (f.more, " --fragmore"),
                (f.last, " --fraglast"),
            ] {
                if on {
                    out.push_str(opt);
                }
            }
        }
        Match::Rt(r) => {
            if let Some(t) = r.rt_type {
                inv(out, t.invert);
                let _ = write!(out, " --rt-type {}", t.value);
            }
            u32_range(out, "--rt-segsleft", r.segsleft);
            if let Some(l) = r.len {
                inv(out, l.invert);
                let _ = write!(out, " --rt-len {}", l.value);
            }
        }
        Match::Multiport(mp) => {
            inv(out, mp.invert);
            out.push_str(match mp.dir {
                MultiportDir::Source => " --sports ",
                MultiportDir::Destination => " --dports ",
                MultiportDir::Either => " --ports ",
            });
            for (i, p) in mp.ports.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = if p.lo == p.hi {
                    write!(out, "{}", p.lo)
                } else {
                    write!(out, "{}:{}", p.lo, p.hi)
                };
            }
        }
        Match::Conntrack(m) => ct_match(out, m),
        Match::State(s) => states(out, "--state", *s),
        Match::Comment(c) => {
            out.push_str(" --comment");
            save_string(out, c);
        }
        Match::Dscp(d) => {
            inv(out, d.invert);
            let _ = write!(out, " --dscp 0x{:02x}", d.value);
        }
        Match::Mark(m) => {
            inv(out, m.invert);
            let _ = if m.value.mask == u32::MAX {
                write!(out, " --mark 0x{:x}", m.value.value)
            } else {
                write!(out, " --mark 0x{:x}/0x{:x}", m.value.value, m.value.mask)
            };
        }
        Match::Limit(l) => {
            let _ = write!(out, " --limit {}", limit_rate_text(l.avg));
            if l.burst != 5 {
                let _ = write!(out, " --limit-burst {}", l.burst);
            }
        }
        Match::IpRange(r) => {
            addr_range(out, "--src-range", r.src);
            addr_range(out, "--dst-range", r.dst);
        }
        Match::Length(l) => {
            inv(out, l.invert);
            let (lo, hi) = (l.value.lo, l.value.hi);
            let _ = if lo == hi {
                write!(out, " --length {lo}")
            } else {
                write!(out, " --length {lo}:{hi}")
            };
        }
        Match::Ttl(t) => {
            let w = if v6 { "hl" } else { "ttl" };
            let _ = match *t {
                TtlMatch::Eq(v) => write!(out, " --{w}-eq {v}"),
                TtlMatch::Ne(v) => write!(out, " ! --{w}-eq {v}"),
                TtlMatch::Lt(v) => write!(out, " --{w}-lt {v}"),
                TtlMatch::Gt(v) => write!(out, " --{w}-gt {v}"),
            };
        }
        Match::Tos(t) => {
            inv(out, t.invert);
            let _ = write!(out, " --tos 0x{:02x}/0x{:02x}", t.value.value, t.value.mask);
        }
        Match::Addrtype(a) => {
            for (opt, m) in [("--src-type", a.src), ("--dst-type", a.dst)] {
                if let Some(m) = m {
                    inv(out, m.invert);
                    let _ = write!(out, " {opt} {}", addr_types(m.value));
                }
            }
            match a.limit {
                AddrtypeLimit::None => {}
                AddrtypeLimit::In => out.push_str(" --limit-iface-in"),
                AddrtypeLimit::Out => out.push_str(" --limit-iface-out"),
            }
        }
        Match::Connmark(m) => {
            inv(out, m.invert);
            let _ = if m.value.mask == u32::MAX {
                write!(out, " --mark 0x{:x}", m.value.value)
            } else {
                write!(out, " --mark 0x{:x}/0x{:x}", m.value.value, m.value.mask)
            };
        }
        Match::Connlimit(c) => {
            // libxt_connlimit's connlimit_save4.
            let _ = write!(
                out,
                " --connlimit-{} {} --connlimit-mask {} --connlimit-{}",
                if c.upto { "upto" } else { "above" },
                c.limit,
                c.mask,
                if c.daddr { "daddr" } else { "saddr" }
            );
        }
        Match::Hashlimit(h) => {
            // libxt_hashlimit's hashlimit_mt_save (revision 3).
            let (rate, quantum) = h.rate();
            let _ = write!(
                out,
                " --hashlimit-{} {rate} --hashlimit-burst {}",
                if h.above { "above" } else { "upto" },
                h.burst
            );
            hashlimit_rest(out, h, quantum, "--hashlimit-", true);
        }
        Match::Recent(r) => {
            // libxt_recent's recent_save: the command (after '!'), then
            // --seconds, --reap, --hitcount, --rttl, the name, the mask
            // and the side, always.
            inv(out, r.invert);
            out.push_str(match r.cmd {
                RecentCmd::Set => " --set",
                RecentCmd::Rcheck => " --rcheck",
                RecentCmd::Update => " --update",
                RecentCmd::Remove => " --remove",
            });
            if r.seconds != 0 {
                let _ = write!(out, " --seconds {}", r.seconds);
            }
            if r.reap {
                out.push_str(" --reap");
            }
            if r.hitcount != 0 {
                let _ = write!(out, " --hitcount {}", r.hitcount);
            }
            if r.rttl {
                out.push_str(" --rttl");
            }
            let side = if r.rdest { "--rdest" } else { "--rsource" };
            let _ = write!(out, " --name {} --mask {} {side}", r.name, r.mask);
        }
        Match::Set(m) => {
            // libxt_set's set_save_v4: the name and flags, then the options
            // in this order; counter conditions packets before bytes.
            inv(out, m.invert);
            let _ = write!(out, " --match-set {} {}", m.name, set_flags_text(m.flags));
            if m.return_nomatch {
                out.push_str(" --return-nomatch");
            }
            if !m.update_counters {
                out.push_str(" ! --update-counters");
            }
            if !m.update_subcounters {
                out.push_str(" ! --update-subcounters");
            }
            for (what, c) in [("packets", m.packets), ("bytes", m.bytes)] {
                let _ = match c {
                    Some((CounterOp::Eq, n)) => write!(out, " --{what}-eq {n}"),
                    Some((CounterOp::Ne, n)) => write!(out, " ! --{what}-eq {n}"),
                    Some((CounterOp::Lt, n)) => write!(out, " --{what}-lt {n}"),
                    Some((CounterOp::Gt, n)) => write!(out, " --{what}-gt {n}"),
                    None => Ok(()),
                };
            }
        }
    }
}

/// The names of the address types of `mask`, in iptables' order.
pub(crate) fn addr_types(mask: u16) -> String {
    AddrType::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask >> i & 1 == 1)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// `src,dst,...` of a set match.
pub(crate) fn set_flags_text(f: DimFlags) -> String {
    (0..f.dim)
        .map(|i| if f.is_src(i) { "src" } else { "dst" })
        .collect::<Vec<_>>()
        .join(",")
}

fn nat_range(out: &mut String, opt: &str, r: &NatRange) {
    let _ = write!(out, " {opt} ");
    nat_range_text(out, r);
}

/// A NAT range as iptables prints it: `a[-b][:p[-q]]`.
pub(crate) fn nat_range_text(out: &mut String, r: &NatRange) {
    if let Some(a) = r.addrs {
        let _ = write!(out, "{}", a.lo);
        if a.hi != a.lo {
            let _ = write!(out, "-{}", a.hi);
        }
    }
    if let Some(p) = r.ports {
        let _ = write!(out, ":{}", p.lo);
        if p.hi != p.lo {
            let _ = write!(out, "-{}", p.hi);
        }
    }
}

/// An ip6tables NAT range: `a[-b]` alone, `[a[-b]]:p[-q]` with ports
/// (libxt_NAT's `print_range` for IPv6).
fn nat_range6(out: &mut String, opt: &str, r: &NatRange<Ipv6Addr>) {
    let _ = write!(out, " {opt} ");
    let ports = r.ports.is_some();
    if let Some(a) = r.addrs {
        if ports {
            out.push('[');
        }
        out.push_str(&ntop6(a.lo));
        if a.hi != a.lo {
            let _ = write!(out, "-{}", ntop6(a.hi));
        }
        if ports {
            out.push(']');
        }
    }
    if let Some(p) = r.ports {
        let _ = write!(out, ":{}", p.lo);
        if p.hi != p.lo {
            let _ = write!(out, "-{}", p.hi);
        }
    }
}

fn to_ports(out: &mut String, p: Option<PortRange>) {
    if let Some(p) = p {
        let _ = write!(out, " --to-ports {}", p.lo);
        if p.hi != p.lo {
            let _ = write!(out, "-{}", p.hi);
        }
    }
}

fn target(out: &mut String, t: &Target, family: Family) {
    let hl = family == Family::Ipv6;
    let _ = match t {
        Target::Snat6(r) => {
            out.push_str(" -j SNAT");
            nat_range6(out, "--to-source", r);
            Ok(())
        }
        Target::Dnat6(r) => {
            out.push_str(" -j DNAT");
            nat_range6(out, "--to-destination", r);
            Ok(())
        }
        Target::Ttl(t) if hl => match *t {
            TtlSet::Set(v) => write!(out, " -j HL --hl-set {v}"),
            TtlSet::Inc(v) => write!(out, " -j HL --hl-inc {v}"),
            TtlSet::Dec(v) => write!(out, " -j HL --hl-dec {v}"),
        },
        Target::None => Ok(()),
        Target::Accept => write!(out, " -j ACCEPT"),
        Target::Drop => write!(out, " -j DROP"),
        Target::Return => write!(out, " -j RETURN"),
        Target::Jump(c) => write!(out, " -j {c}"),
        Target::Goto(c) => write!(out, " -g {c}"),
        Target::Reject(w) => write!(out, " -j REJECT --reject-with {}", w.name()),
        Target::Log(l) => {
            out.push_str(" -j LOG");
            if !l.prefix.is_empty() {
                out.push_str(" --log-prefix");
                save_string(out, &l.prefix);
            }
            if l.level != xdpgw_dataplane::rule::Log::DEFAULT_LEVEL {
                let _ = write!(out, " --log-level {}", l.level);
            }
            Ok(())
        }
        Target::Masquerade(n) | Target::Redirect(n) => {
            out.push_str(if matches!(t, Target::Masquerade(_)) {
                " -j MASQUERADE"
            } else {
                " -j REDIRECT"
            });
            to_ports(out, n.ports);
            if n.random {
                out.push_str(" --random");
            }
            if n.random_fully {
                out.push_str(" --random-fully");
            }
            Ok(())
        }
        Target::Snat(r) => {
            out.push_str(" -j SNAT");
            nat_range(out, "--to-source", r);
            Ok(())
        }
        Target::Dnat(r) => {
            out.push_str(" -j DNAT");
            nat_range(out, "--to-destination", r);
            Ok(())
        }
        Target::Dscp(d) => write!(out, " -j DSCP --set-dscp 0x{d:02x}"),
        Target::Notrack => write!(out, " -j NOTRACK"),
        Target::CtNotrack => write!(out, " -j CT --notrack"),
        Target::Mark { value, mask } => write!(out, " -j MARK --set-xmark 0x{value:x}/0x{mask:x}"),
        Target::Ttl(t) => match *t {
            TtlSet::Set(v) => write!(out, " -j TTL --ttl-set {v}"),
            TtlSet::Inc(v) => write!(out, " -j TTL --ttl-inc {v}"),
            TtlSet::Dec(v) => write!(out, " -j TTL --ttl-dec {v}"),
        },
        Target::Tos(t) => write!(out, " -j TOS --set-tos 0x{:02x}/0x{:02x}", t.value, t.mask),
        Target::Tcpmss(TcpmssOp::Set(v)) => write!(out, " -j TCPMSS --set-mss {v}"),
        Target::Tcpmss(TcpmssOp::ClampPmtu) => write!(out, " -j TCPMSS --clamp-mss-to-pmtu"),
        Target::Connmark(op) => match *op {
            ConnmarkOp::Set { value, mask } => {
                write!(out, " -j CONNMARK --set-xmark 0x{value:x}/0x{mask:x}")
            }
            ConnmarkOp::Save { nfmask, ctmask } => write!(
                out,
                " -j CONNMARK --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
            ),
            ConnmarkOp::Restore { nfmask, ctmask } => write!(
                out,
                " -j CONNMARK --restore-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
            ),
        },
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::load_str;

    /// Rules and what Linux's iptables-save (1.8.9) printed for them.
    const CASES: &[(&str, &str)] = &[
        (
            "-A INPUT -p tcp -s 198.51.100.7 --dport 80 -j DROP",
            "-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 80 -j DROP",
        ),
        (
            "-A INPUT -s 10.0.0.0/255.0.0.0 -d 10.1.2.3/255.0.255.0 -j ACCEPT",
            "-A INPUT -s 10.0.0.0/8 -d 10.0.2.0/255.0.255.0 -j ACCEPT",
        ),
        (
            "-A INPUT ! -s 10.0.0.0/8 ! -d 1.2.3.4 ! -i eth+ -p udp ! --sport 53 --dport 1000:2000 -j ACCEPT",
            "-A INPUT ! -s 10.0.0.0/8 ! -d 1.2.3.4/32 ! -i eth+ -p udp -m udp ! --sport 53 --dport 1000:2000 -j ACCEPT",
        ),
        (
            "-A INPUT -p tcp ! --syn -j ACCEPT",
            "-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        ),
        (
            "-A INPUT -p tcp ! --tcp-flags ALL FIN,URG,PSH -j ACCEPT",
            "-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,PSH,ACK,URG FIN,PSH,URG -j ACCEPT",
        ),
        (
            "-A INPUT -p tcp --tcp-flags ALL NONE -j ACCEPT",
            "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE -j ACCEPT",
        ),
        (
            "-A INPUT -p icmp --icmp-type port-unreachable -j ACCEPT",
            "-A INPUT -p icmp -m icmp --icmp-type 3/3 -j ACCEPT",
        ),
        (
            "-A INPUT -p icmp ! --icmp-type any -j ACCEPT",
            "-A INPUT -p icmp -m icmp ! --icmp-type any -j ACCEPT",
        ),
        (
            "-A INPUT -p tcp -m multiport --dports 80 --syn -j ACCEPT",
            "-A INPUT -p tcp -m multiport --dports 80 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        ),
        (
            "-A INPUT -m conntrack --ctstate DNAT,SNAT,UNTRACKED,INVALID,ESTABLISHED,RELATED,NEW -j ACCEPT",
            "-A INPUT -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT -j ACCEPT",
        ),
        (
            "-A INPUT -m state ! --state NEW,INVALID,UNTRACKED -j ACCEPT",
            "-A INPUT -m state ! --state INVALID,NEW,UNTRACKED -j ACCEPT",
        ),
        (
            "-A INPUT -m comment --comment \"allow ssh\" -j ACCEPT",
            "-A INPUT -m comment --comment \"allow ssh\" -j ACCEPT",
        ),
        (
            "-A INPUT -m comment --comment ''",
            "-A INPUT -m comment --comment \"\\'\\'\"",
        ),
        (
            "-A INPUT -m dscp ! --dscp-class EF -m mark ! --mark 0x10/0xf0 -j ACCEPT",
            "-A INPUT -m dscp ! --dscp 0x2e -m mark ! --mark 0x10/0xf0 -j ACCEPT",
        ),
        (
            "-A INPUT -m limit -j ACCEPT",
            "-A INPUT -m limit --limit 3/hour -j ACCEPT",
        ),
        (
            "-A INPUT -m limit --limit 5/min --limit-burst 10 -j ACCEPT",
            "-A INPUT -m limit --limit 5/min --limit-burst 10 -j ACCEPT",
        ),
        (
            "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.0.1.1-10.0.1.5 -j ACCEPT",
            "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.0.1.1-10.0.1.5 -j ACCEPT",
        ),
        ("-A INPUT -p 47 -j ACCEPT", "-A INPUT -p gre -j ACCEPT"),
        ("-A INPUT -p all -s 0/0 -j ACCEPT", "-A INPUT -j ACCEPT"),
        (
            "-A INPUT -j REJECT",
            "-A INPUT -j REJECT --reject-with icmp-port-unreachable",
        ),
        (
            "-A INPUT -j LOG --log-level debug --log-prefix x",
            "-A INPUT -j LOG --log-prefix x --log-level 7",
        ),
        (
            "-A INPUT -j LOG --log-prefix \"fw: \" --log-level warning",
            "-A INPUT -j LOG --log-prefix \"fw: \"",
        ),
        (
            "-A INPUT -j MARK --set-mark 5",
            "-A INPUT -j MARK --set-xmark 0x5/0xffffffff",
        ),
        ("-A INPUT", "-A INPUT"),
        (
            "-A INPUT -p tcp --dport :100 --sport 100: -j ACCEPT",
            "-A INPUT -p tcp -m tcp --sport 100:65535 --dport 0:100 -j ACCEPT",
        ),
        (
            "-A INPUT -p tcp --sport 0:65535 -j ACCEPT",
            "-A INPUT -p tcp -m tcp -j ACCEPT",
        ),
    ];

    /// ip6tables rules and what Linux's ip6tables-save (1.8.9, nf_tables)
    /// printed for them.
    const CASES6: &[(&str, &str)] = &[
        (
            "-A INPUT -s 2001:db8::1 -d fe80::/10 -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT",
            "-A INPUT -s 2001:db8::1/128 -d fe80::/10 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT",
        ),
        (
            "-A INPUT -s 2001:DB8:0:0::/64 -p icmpv6 --icmpv6-type 1/3 -j ACCEPT",
            "-A INPUT -s 2001:db8::/64 -p ipv6-icmp -m icmp6 --icmpv6-type 1/3 -j ACCEPT",
        ),
        (
            "-A INPUT -p icmpv6 ! --icmpv6-type neighbour-solicitation -j ACCEPT",
            "-A INPUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 135 -j ACCEPT",
        ),
        (
            "-A INPUT -p ipv6-icmp --icmpv6-type no-route -j DROP",
            "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1/0 -j DROP",
        ),
        ("-A INPUT -s 2001:db8::/ffff:ffff:: -j DROP", "-A INPUT -s 2001:db8::/32 -j DROP"),
        (
            "-A INPUT -s 2001:db8::/ffff:0:ffff:: -j DROP",
            "-A INPUT -s 2001::/ffff:0:ffff:: -j DROP",
        ),
        ("-A INPUT ! -d ::1/128 -i lo -j DROP", "-A INPUT ! -d ::1/128 -i lo -j DROP"),
        ("-A INPUT -s ::/0 -p 0 -j DROP", "-A INPUT -j DROP"),
        (
            "-A INPUT -s ::ffff:10.0.0.1 -j DROP",
            "-A INPUT -s ::ffff:10.0.0.1/128 -j DROP",
        ),
        (
            "-A INPUT -m ipv6header --header hop-by-hop,frag --soft -j DROP",
            "-A INPUT -m ipv6header --header hop-by-hop,ipv6-frag --soft -j DROP",
        ),
        (
            "-A INPUT -m ipv6header ! --header ipv6-route,dst,ah,esp,none,prot -j DROP",
            "-A INPUT -m ipv6header ! --header ipv6-opts,ipv6-route,ah,esp,ipv6-nonxt,protocol -j DROP",
        ),
        (
            "-A INPUT -m frag --fragid 5:10 --fraglen 8 --fragres --fragfirst --fragmore -j DROP",
            "-A INPUT -m frag --fragid 5:10 --fraglen 8 --fragres --fragfirst --fragmore -j DROP",
        ),
        (
            "-A INPUT -m frag ! --fragid 7 --fraglast -j DROP",
            "-A INPUT -m frag ! --fragid 7 --fraglast -j DROP",
        ),
        ("-A INPUT -m hl ! --hl-eq 5 -j DROP", "-A INPUT -m hl ! --hl-eq 5 -j DROP"),
        (
            "-A INPUT -m rt ! --rt-type 2 ! --rt-segsleft 3 -j DROP",
            "-A INPUT -m rt ! --rt-type 2 ! --rt-segsleft 3 -j DROP",
        ),
        (
            "-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::ff -j DROP",
            "-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::ff -j DROP",
        ),
        (
            "-A INPUT -j REJECT",
            "-A INPUT -j REJECT --reject-with icmp6-port-unreachable",
        ),
        (
            "-A INPUT -j REJECT --reject-with adm-prohibited",
            "-A INPUT -j REJECT --reject-with icmp6-adm-prohibited",
        ),
    ];

    #[test]
    fn ipv6_rules_print_as_ip6tables_save_prints_them() {
        for (input, want) in CASES6 {
            let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{input}\nCOMMIT\n");
            let set = crate::parse::load_str6(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
            let got = render_family(&set, Family::Ipv6, false);
            let rule = got.lines().find(|l| l.starts_with("-A")).unwrap_or("");
            assert_eq!(rule, *want, "for {input}");
        }
        let nat = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
            -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination [2001:db8::5]:8080\n\
            -A PREROUTING -p tcp --dport 84 -j DNAT --to-destination [2001:db8::5]\n\
            -A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::5-2001:db8::9]:100-200\n\
            -A POSTROUTING -p udp -s fd02::/16 -j SNAT --to-source [2001:db8::1]:1000-2000\n\
            COMMIT\n";
        let set = crate::parse::load_str6(nat).unwrap_or_else(|e| panic!("{e}"));
        let got = render_family(&set, Family::Ipv6, false);
        let rules: Vec<&str> = got.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(
            rules,
            [
                "-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination [2001:db8::5]:8080",
                "-A PREROUTING -p tcp -m tcp --dport 84 -j DNAT --to-destination 2001:db8::5",
                "-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::5-2001:db8::9]:100-200",
                "-A POSTROUTING -s fd02::/16 -p udp -j SNAT --to-source [2001:db8::1]:1000-2000",
            ]
        );
    }

    #[test]
    fn ntop6_writes_what_inet_ntop_writes() {
        for (a, want) in [
            ("::", "::"),
            ("::1", "::1"),
            ("::10.0.0.1", "::10.0.0.1"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ] {
            let addr: Ipv6Addr = a.parse().expect("an address");
            assert_eq!(ntop6(addr), want);
        }
    }

    #[test]
    fn rules_print_as_iptables_save_prints_them() {
        for (input, want) in CASES {
            let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{input}\nCOMMIT\n");
            let set = load_str(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
            let got = render(&set);
            let rule = got.lines().find(|l| l.starts_with("-A")).unwrap_or("");
            assert_eq!(rule, *want, "for {input}");
        }
    }

    #[test]
    fn nat_mangle_raw_targets() {
        let text = "\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 192.168.10.10 -p tcp --dport 25 -j REDIRECT
-A PREROUTING -p tcp -j REDIRECT --to-ports 2525-2530 --random
-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.5:80-90
-A POSTROUTING -o eth0 -s 192.168.10.10 -j MASQUERADE
-A POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-2000 --random
-A POSTROUTING -j MASQUERADE --random-fully
-A POSTROUTING -j SNAT --to-source 1.2.3.4
COMMIT
*mangle
-A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46
-A OUTPUT -j DSCP --set-dscp-class AF41
COMMIT
*raw
-A PREROUTING -p tcp --dport 22 -j NOTRACK
-A PREROUTING -p tcp --dport 23 -j CT --notrack
COMMIT
";
        let set = load_str(text).unwrap_or_else(|e| panic!("{e}"));
        let want = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp -m tcp --sport 443 -j DSCP --set-dscp 0x2e
-A OUTPUT -j DSCP --set-dscp 0x22
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 22 -j NOTRACK
-A PREROUTING -p tcp -m tcp --dport 23 -j CT --notrack
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 192.168.10.10/32 -p tcp -m tcp --dport 25 -j REDIRECT
-A PREROUTING -p tcp -j REDIRECT --to-ports 2525-2530 --random
-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.5:80-90
-A POSTROUTING -s 192.168.10.10/32 -o eth0 -j MASQUERADE
-A POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-2000 --random
-A POSTROUTING -j MASQUERADE --random-fully
-A POSTROUTING -j SNAT --to-source 1.2.3.4
COMMIT
";
        assert_eq!(render(&set), want);
    }
}
