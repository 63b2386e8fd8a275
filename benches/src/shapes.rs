//! Rule sets of the shapes large generated rule sets have, and packets for
//! them: a blocklist of /32s and prefixes, a ClassBench-style 5-tuple
//! filter, per-customer port forwards. Deterministic (a fixed-seed
//! generator), so runs compare.

use std::fmt::Write;
use std::net::Ipv4Addr;

use xdpgw_dataplane::classify::PacketView;
use xdpgw_dataplane::rule::{CtStates, Hook, Table};

/// The interfaces the rule sets name, by index.
pub const IFACES: [&str; 2] = ["lan0", "wan0"];

/// A small fixed-seed generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A rule set's text, where its packets are classified, and packets.
pub struct Shape {
    pub name: &'static str,
    pub rules: String,
    pub at: (Table, Hook),
    pub packets: Vec<PacketView>,
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn packet(src: u32, dst: u32, proto: u8, sport: u16, dport: u16, ct: u8) -> PacketView {
    PacketView {
        src,
        dst,
        proto,
        in_iface: Some(1),
        out_iface: Some(0),
        has_ports: proto == 6 || proto == 17,
        sport,
        dport,
        ct_bits: ct,
        ttl: 64,
        len: 60,
        ..PacketView::default()
    }
}

const FILTER_HEAD: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";

/// `n` blocked sources in FORWARD (nine in ten /32s, the rest /16 to /24
/// prefixes), then the usual stateful accepts; packets from unlisted
/// sources (the common case: they pass every rule) and one in eight from a
/// listed one.
pub fn blocklist(n: usize) -> Shape {
    let mut r = Rng::new(7);
    let mut s = String::with_capacity(n * 48);
    s.push_str(FILTER_HEAD);
    let mut listed = Vec::with_capacity(n);
    for i in 0..n {
        // Addresses of 100.64.0.0/10 and above; the packets' own
        // sources are in 198.18.0.0/15, which the list leaves out.
        let a = 0x6440_0000 + r.below(0x3000_0000) as u32;
        if i % 10 == 9 {
            let len = 16 + r.below(9) as u32;
            let net = a & (u32::MAX << (32 - len));
            let _ = writeln!(s, "-A FORWARD -s {}/{len} -j DROP", ip(net));
        } else {
            let _ = writeln!(s, "-A FORWARD -s {}/32 -j DROP", ip(a));
            listed.push(a);
        }
    }
    s.push_str("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
    s.push_str("-A FORWARD -i wan0 -o lan0 -p tcp -m tcp --dport 443 -j ACCEPT\n");
    s.push_str("COMMIT\n");
    let packets = (0..4096)
        .map(|k| {
            let src = if k % 8 == 0 && !listed.is_empty() {
                listed[r.below(listed.len() as u64) as usize]
            } else {
                0xc612_0000 + r.below(0x2_0000) as u32
            };
            let ct = if k % 2 == 0 {
                CtStates::NEW
            } else {
                CtStates::ESTABLISHED
            };
            packet(src, 0xc0a8_0a02, 6, 1024 + k as u16, 443, ct)
        })
        .collect();
    Shape {
        name: "blocklist",
        rules: s,
        at: (Table::Filter, Hook::Forward),
        packets,
    }
}

/// A ClassBench-style ACL of `n` 5-tuple rules (Taylor and Turner's
/// generator's shapes: source and destination prefixes whose lengths
/// cluster at 0, 8-16, 24 and 32, protocol TCP/UDP/any, source ports
/// mostly any, destination ports exact, well-known ranges or any), ending
/// in a DROP; packets made as its trace generator makes them: headers
/// inside a randomly chosen rule's ranges.
pub fn classbench(n: usize) -> Shape {
    let mut r = Rng::new(11);
    let mut s = String::with_capacity(n * 96);
    s.push_str(FILTER_HEAD);
    struct R {
        src: (u32, u32),
        dst: (u32, u32),
        proto: u8,
        sport: (u16, u16),
        dport: (u16, u16),
    }
    let mut rules = Vec::with_capacity(n);
    let prefix = |r: &mut Rng| -> (u32, u32) {
        let len = match r.below(10) {
            0 => 0,
            1..=2 => 8 + r.below(9) as u32,
            3..=5 => 24,
            _ => 32,
        };
        // A few hundred /16s as the address space, as real ACLs cluster.
        let a = (0x0a00_0000 + (r.below(400) as u32) * 0x1_0000) | r.below(0x1_0000) as u32;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (a & mask, len)
    };
    for _ in 0..n {
        let src = prefix(&mut r);
        let dst = prefix(&mut r);
        let proto = match r.below(10) {
            0..=5 => 6,
            6..=8 => 17,
            _ => 0,
        };
        let sport = match r.below(10) {
            0..=7 => (0, 65535),
            8 => (1024, 65535),
            _ => {
                let p = r.below(65535) as u16;
                (p, p)
            }
        };
        let dport = match r.below(10) {
            0..=4 => {
                let p = [22u16, 25, 53, 80, 110, 123, 143, 443, 993, 3306][r.below(10) as usize];
                (p, p)
            }
            5..=6 => {
                let lo = r.below(60000) as u16;
                (lo, lo + r.below(1000) as u16)
            }
            7 => (1024, 65535),
            _ => (0, 65535),
        };
        let mut line = String::from("-A FORWARD");
        if src.1 > 0 {
            let _ = write!(line, " -s {}/{}", ip(src.0), src.1);
        }
        if dst.1 > 0 {
            let _ = write!(line, " -d {}/{}", ip(dst.0), dst.1);
        }
        if proto != 0 {
            let name = if proto == 6 { "tcp" } else { "udp" };
            let _ = write!(line, " -p {name} -m {name}");
            if sport != (0, 65535) {
                let _ = write!(line, " --sport {}:{}", sport.0, sport.1);
            }
            if dport != (0, 65535) {
                let _ = write!(line, " --dport {}:{}", dport.0, dport.1);
            }
        }
        let target = if r.below(2) == 0 { "ACCEPT" } else { "DROP" };
        let _ = writeln!(s, "{line} -j {target}");
        rules.push(R {
            src,
            dst,
            proto,
            sport,
            dport,
        });
    }
    s.push_str("-A FORWARD -j DROP\nCOMMIT\n");
    let within = |r: &mut Rng, (net, len): (u32, u32)| {
        if len == 0 {
            r.next_u64() as u32
        } else {
            net | (r.next_u64() as u32 & !(u32::MAX << (32 - len)))
        }
    };
    let packets = (0..4096)
        .map(|_| {
            let x = &rules[r.below(rules.len() as u64) as usize];
            let port =
                |r: &mut Rng, (lo, hi): (u16, u16)| lo + r.below(u64::from(hi - lo) + 1) as u16;
            let proto = if x.proto == 0 { 17 } else { x.proto };
            packet(
                within(&mut r, x.src),
                within(&mut r, x.dst),
                proto,
                port(&mut r, x.sport),
                port(&mut r, x.dport),
                CtStates::NEW,
            )
        })
        .collect();
    Shape {
        name: "classbench",
        rules: s,
        at: (Table::Filter, Hook::Forward),
        packets,
    }
}

/// Port forwards of `n / 4` customers, four each: `-i wan0 -d <their
/// address> -p tcp --dport <port> -j DNAT` in nat PREROUTING; packets to
/// the customers' forwarded ports and to others.
pub fn port_forwards(n: usize) -> Shape {
    let mut r = Rng::new(13);
    let mut s = String::with_capacity(n * 96);
    s.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    let customers = (n / 4).max(1) as u32;
    for c in 0..customers {
        let public = 0x6440_0000 + c;
        for (k, port) in [22u16, 80, 443, 3389].into_iter().enumerate() {
            let inner = 0x0a00_0000 + c * 4 + k as u32;
            let _ = writeln!(
                s,
                "-A PREROUTING -i wan0 -d {} -p tcp -m tcp --dport {} -j DNAT --to-destination {}:{}",
                ip(public),
                1000 + port,
                ip(inner),
                port
            );
        }
    }
    s.push_str("-A POSTROUTING -o wan0 -s 10.0.0.0/8 -j MASQUERADE\nCOMMIT\n");
    let packets = (0..4096)
        .map(|k| {
            let c = r.below(u64::from(customers)) as u32;
            let dport = if k % 2 == 0 {
                1000 + [22u16, 80, 443, 3389][r.below(4) as usize]
            } else {
                r.below(65535) as u16
            };
            let mut p = packet(
                0xc612_0000 + r.below(0x2_0000) as u32,
                0x6440_0000 + c,
                6,
                1024 + (k as u16 % 60000),
                dport,
                CtStates::NEW,
            );
            p.out_iface = None;
            p
        })
        .collect();
    Shape {
        name: "port_forwards",
        rules: s,
        at: (Table::Nat, Hook::Prerouting),
        packets,
    }
}
