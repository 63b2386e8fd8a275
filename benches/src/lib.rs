//! Shared inputs for the criterion benchmarks in `benches/`.

pub mod conntrack_scale;
pub mod scale_out;
pub mod shapes;

use std::fmt::Write;

/// An iptables-save file of `n` filter rules of mixed shapes spread over a
/// few user chains, the way large generated rule sets look (per-customer
/// chains of address and port rules), plus a small nat table.
pub fn big_rule_file(n: usize) -> String {
    let chains = 16;
    let mut s = String::with_capacity(n * 80);
    s.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in 0..chains {
        let _ = writeln!(s, ":CUST{c:02} - [0:0]");
    }
    s.push_str("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
    for c in 0..chains {
        let _ = writeln!(s, "-A FORWARD -s 10.{c}.0.0/16 -j CUST{c:02}");
    }
    for i in 0..n.saturating_sub(chains + 1) {
        let c = i % chains;
        let a = (i / 250) % 250;
        let b = i % 250;
        let _ = match i % 5 {
            0 => writeln!(s, "-A CUST{c:02} -s 10.{c}.{a}.{b}/32 -p tcp -m tcp --dport {} -j ACCEPT", 1024 + i % 60000),
            1 => writeln!(s, "-A CUST{c:02} -d 192.0.{a}.{b}/32 -p udp -m udp --dport 53 -j ACCEPT"),
            2 => writeln!(s, "-A CUST{c:02} -i lan0 -o wan0 -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT"),
            3 => writeln!(s, "-A CUST{c:02} -s 10.{c}.{a}.0/24 -m comment --comment \"customer {i}\" -j DROP"),
            _ => writeln!(s, "-A CUST{c:02} -p icmp -m icmp --icmp-type 8 -m limit --limit 5/sec -j ACCEPT"),
        };
    }
    s.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    s.push_str("-A POSTROUTING -o wan0 -s 10.0.0.0/8 -j MASQUERADE\nCOMMIT\n");
    s
}

/// `base` (an iptables-save file with a filter table holding the
/// `LOG_DROP` chain, as conf/gateway.rules) with `n` non-matching filter
/// rules at the top of FORWARD: `-s 10.x.y.z/32 -p udp --dport 9 -j DROP`.
pub fn rules_with_prefix(base: &str, n: usize) -> String {
    let mut extra = String::with_capacity(n * 56);
    for i in 0..n {
        let _ = writeln!(
            extra,
            "-A FORWARD -s 10.{}.{}.{}/32 -p udp -m udp --dport 9 -j DROP",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        );
    }
    // Right after the filter table's chain declarations.
    let decl = ":LOG_DROP - [0:0]\n";
    let at = base.find(decl).expect("filter chains") + decl.len();
    format!("{}{}{}", &base[..at], extra, &base[at..])
}

/// [`rules_with_prefix`] for an ip6tables-save file (conf/gateway.rules6):
/// `n` rules `-s fd99::x:y/128 -p udp --dport 9 -j DROP` at the top of
/// FORWARD, matching none of the benches' traffic.
pub fn rules6_with_prefix(base: &str, n: usize) -> String {
    let mut extra = String::with_capacity(n * 60);
    for i in 0..n {
        let _ = writeln!(
            extra,
            "-A FORWARD -s fd99::{:x}:{:x}/128 -p udp -m udp --dport 9 -j DROP",
            (i >> 16) & 0xffff,
            i & 0xffff
        );
    }
    let decl = ":LOG_DROP - [0:0]\n";
    let at = base.find(decl).expect("filter chains") + decl.len();
    format!("{}{}{}", &base[..at], extra, &base[at..])
}
