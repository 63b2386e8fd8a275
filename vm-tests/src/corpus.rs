//! A deterministic corpus of valid iptables-restore files.
//!
//! [`generated`] covers every rule feature that xdpgw's parser accepts, each
//! with and without `!` where iptables allows it, in combinations drawn from a
//! fixed-seed PRNG. Every file must load with Linux's `iptables-restore`
//! (`tests/corpus_loads.rs` checks that), so targets only sit where netfilter
//! allows them.

/// SplitMix64: small, deterministic, good enough to pick combinations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// `"! "` with probability `percent`/100, else `""`.
    fn neg(&mut self, percent: u64) -> &'static str {
        if self.chance(percent) {
            "! "
        } else {
            ""
        }
    }
}

/// Where a rule sits: its table, its chain and the built-in chains (hooks)
/// from which that chain is reached.
#[derive(Clone, Copy)]
struct Ctx {
    table: &'static str,
    chain: &'static str,
    hooks: &'static [&'static str],
}

impl Ctx {
    fn builtin(table: &'static str, chain: &'static str) -> Ctx {
        let hooks: &'static [&'static str] = match chain {
            "PREROUTING" => &["PREROUTING"],
            "INPUT" => &["INPUT"],
            "FORWARD" => &["FORWARD"],
            "OUTPUT" => &["OUTPUT"],
            "POSTROUTING" => &["POSTROUTING"],
            _ => panic!("{chain} is not a built-in chain"),
        };
        Ctx {
            table,
            chain,
            hooks,
        }
    }

    fn user(table: &'static str, chain: &'static str, hooks: &'static [&'static str]) -> Ctx {
        Ctx {
            table,
            chain,
            hooks,
        }
    }

    /// `-i` is meaningless (and refused in built-ins) after routing on output.
    fn in_ok(&self) -> bool {
        !self
            .hooks
            .iter()
            .any(|h| matches!(*h, "OUTPUT" | "POSTROUTING"))
    }

    /// `-o` is unknown before routing.
    fn out_ok(&self) -> bool {
        !self
            .hooks
            .iter()
            .any(|h| matches!(*h, "PREROUTING" | "INPUT"))
    }

    /// All hooks that reach this chain are in `allowed`.
    fn only_from(&self, allowed: &[&str]) -> bool {
        self.hooks.iter().all(|h| allowed.contains(h))
    }
}

const ADDRESSES: &[&str] = &[
    "10.1.2.3",
    "10.1.0.0/16",
    "192.168.7.0/255.255.255.0",
    "10.0.0.0/255.0.255.0",
    "172.16.5.9/12",
    "203.0.113.9/32",
    "198.51.100.0/255.255.255.128",
    "10.20.30.40/255.255.0.255",
    "100.64.0.0/10",
    "192.0.2.77/28",
];

/// Address forms that iptables refuses to negate (they match everything).
const ADDRESSES_ANY: &[&str] = &["0.0.0.0/0", "1.2.3.4/0"];

const INTERFACES: &[&str] = &["eth0", "eth1", "eth+", "veth-lab0", "wg0", "br-lan+", "lo"];

const PORTS: &[&str] = &[
    "22",
    "80",
    "1024:65535",
    ":1023",
    "1024:",
    "ssh",
    "http",
    "https",
    "smtp",
    "domain",
    "0:0",
    "8000:8080",
    "443:443",
    "65535",
];

const ICMP_TYPES: &[&str] = &[
    "echo-request",
    "echo-reply",
    "port-unreachable",
    "time-exceeded",
    "destination-unreachable",
    "host-unreachable",
    "fragmentation-needed",
    "parameter-problem",
    "ttl-zero-during-transit",
    "any",
    "8",
    "0",
    "3/4",
    "11/0",
    "3",
];

const CT_STATES: &[&str] = &[
    "NEW",
    "ESTABLISHED",
    "RELATED",
    "INVALID",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];

const DSCP_CLASSES: &[&str] = &[
    "EF", "BE", "CS0", "CS1", "CS3", "CS7", "AF11", "AF21", "AF33", "AF41", "AF43",
];

const TCP_FLAGS: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];

const LIMIT_UNITS: &[&str] = &[
    "sec", "second", "s", "se", "min", "minute", "m", "minu", "hour", "h", "hou", "day", "d", "da",
];

const LOG_LEVELS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "emerg", "alert", "crit", "error", "warning", "notice",
    "info", "debug",
];

const LOG_PREFIXES: &[&str] = &[
    "drop: ",
    "IN-FWD ",
    "ssh brute",
    "x",
    "fw:reject:",
    "twenty nine chars exactly ok ",
    "nat-out ",
];

const COMMENTS: &[&str] = &[
    "\"allow web\"",
    "ssh",
    "\"lab rule 7: drop - bogons\"",
    "\"x\"",
    "mgmt-in",
];

const REJECT_WITH: &[&str] = &[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
];

fn addr(rng: &mut Rng) -> String {
    (rng.pick(ADDRESSES)).to_owned()
}

/// `-s`/`-d`/`-i`/`-o` options, each present with probability `percent`.
fn generic(rng: &mut Rng, ctx: &Ctx, percent: u64) -> Vec<String> {
    let mut out = Vec::new();
    // Lists (one rule per address, and per pair with the other), which
    // iptables allows only without '!' on either option.
    let lists = rng.chance(10);
    for opt in ["-s", "-d"] {
        if rng.chance(percent) {
            out.push(if lists {
                let n = 2 + rng.below(2);
                let list: Vec<String> = (0..n).map(|_| addr(rng)).collect();
                format!("{opt} {}", list.join(","))
            } else {
                format!("{}{opt} {}", rng.neg(30), addr(rng))
            });
        }
    }
    if ctx.in_ok() && rng.chance(percent) {
        out.push(format!("{}-i {}", rng.neg(30), rng.pick(INTERFACES)));
    }
    if ctx.out_ok() && rng.chance(percent) {
        out.push(format!("{}-o {}", rng.neg(30), rng.pick(INTERFACES)));
    }
    out
}

fn port(rng: &mut Rng) -> String {
    (rng.pick(PORTS)).to_owned()
}

/// A `--sports`/`--dports`/`--ports` list of at most 15 ports, a range
/// counting two.
fn port_list(rng: &mut Rng) -> String {
    let budget = 1 + rng.below(15);
    let mut used = 0;
    let mut items = Vec::new();
    let mut base = 20 + rng.below(40) as u32;
    while used < budget {
        if used + 2 <= budget && rng.chance(30) {
            let hi = base + 1 + rng.below(50) as u32;
            items.push(format!("{base}:{hi}"));
            base = hi + 1 + rng.below(300) as u32;
            used += 2;
        } else {
            items.push(base.to_string());
            base += 1 + rng.below(900) as u32;
            used += 1;
        }
    }
    items.join(",")
}

/// A `--tcp-flags` mask: never `NONE`, which iptables-nft silently drops
/// from the kernel rule (so `! --tcp-flags NONE NONE` would match all TCP).
fn flag_mask(rng: &mut Rng) -> String {
    loop {
        let f = flag_set(rng);
        if f != "NONE" {
            return f;
        }
    }
}

fn flag_set(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "ALL".to_owned(),
        1 => "NONE".to_owned(),
        _ => {
            let picked: Vec<&str> = TCP_FLAGS
                .iter()
                .copied()
                .filter(|_| rng.chance(40))
                .collect();
            if picked.is_empty() {
                "SYN".to_owned()
            } else {
                picked.join(",")
            }
        }
    }
}

fn ct_states(rng: &mut Rng, states: &[&str]) -> String {
    let mut picked: Vec<&str> = states.iter().copied().filter(|_| rng.chance(30)).collect();
    if picked.is_empty() {
        picked.push(rng.pick(states));
    }
    // iptables accepts any order; shuffle a little to exercise that.
    if picked.len() > 1 && rng.chance(50) {
        picked.reverse();
    }
    picked.join(",")
}

fn mark_value(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "0x1".to_owned(),
        1 => "5".to_owned(),
        2 => "0x10/0xf0".to_owned(),
        3 => "1/1".to_owned(),
        _ => "0xdead/0xffff".to_owned(),
    }
}

fn limit(rng: &mut Rng) -> String {
    let n = rng.pick(&[1, 3, 5, 10, 25, 100, 1000]);
    let unit = rng.pick(LIMIT_UNITS);
    if rng.chance(50) {
        let burst = rng.pick(&[1, 5, 10, 20, 100]);
        format!("-m limit --limit {n}/{unit} --limit-burst {burst}")
    } else {
        format!("-m limit --limit {n}/{unit}")
    }
}

fn iprange(rng: &mut Rng) -> String {
    let src = rng.chance(60);
    let dst = !src || rng.chance(40);
    let mut out = "-m iprange".to_owned();
    if src {
        out.push_str(&format!(
            " {}--src-range 10.0.0.{}-10.0.0.{}",
            rng.neg(30),
            1 + rng.below(10),
            20 + rng.below(200)
        ));
    }
    if dst {
        out.push_str(&format!(
            " {}--dst-range 192.168.{}.10-192.168.{}.20",
            rng.neg(30),
            rng.below(5),
            5 + rng.below(5)
        ));
    }
    out
}

/// One protocol-independent match module, chosen at random.
/// `-m length`, `-m ttl` or `-m tos`.
fn header_match(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => {
            let (a, b) = (rng.below(1600), rng.below(1600));
            let range = match rng.below(4) {
                0 => format!("{a}"),
                1 => format!(":{b}"),
                2 => format!("{a}:"),
                _ => format!("{a}:{b}"),
            };
            format!("-m length {}--length {range}", rng.neg(25))
        }
        1 => {
            let v = rng.below(256);
            match rng.below(4) {
                0 => format!("-m ttl --ttl-eq {v}"),
                1 => format!("-m ttl ! --ttl-eq {v}"),
                2 => format!("-m ttl --ttl-lt {v}"),
                _ => format!("-m ttl --ttl-gt {v}"),
            }
        }
        _ => {
            let v = match rng.below(3) {
                0 => format!("0x{:02x}", rng.below(256)),
                1 => format!("0x{:02x}/0x{:02x}", rng.below(256), rng.below(256)),
                _ => rng.pick(TOS_NAMES).to_owned(),
            };
            format!("-m tos {}--tos {v}", rng.neg(25))
        }
    }
}

const TOS_NAMES: &[&str] = &[
    "Minimize-Delay",
    "Maximize-Throughput",
    "Maximize-Reliability",
    "Minimize-Cost",
    "Normal-Service",
];

fn other_match(rng: &mut Rng) -> String {
    match rng.below(16) {
        12 => recent(rng),
        13 => connlimit(rng),
        14 => hashlimit(rng),
        15 => {
            let lo = rng.pick(&[0u32, 5, 30, 120, 431999]);
            let range = match rng.below(4) {
                0 => lo.to_string(),
                1 => format!("{lo}:{}", lo + rng.pick(&[0u32, 1, 60, 4000])),
                2 => format!("{lo}:"),
                _ => format!(":{lo}"),
            };
            format!("-m conntrack {}--ctexpire {range}", rng.neg(25))
        }
        9 | 10 => header_match(rng),
        11 => format!("-m connmark {}--mark {}", rng.neg(30), mark_value(rng)),
        0 | 1 => format!(
            "-m conntrack {}--ctstate {}",
            rng.neg(25),
            ct_states(rng, CT_STATES)
        ),
        2 => format!(
            "-m state {}--state {}",
            rng.neg(25),
            ct_states(rng, &CT_STATES[..5])
        ),
        3 => format!("-m comment --comment {}", rng.pick(COMMENTS)),
        4 => {
            if rng.chance(50) {
                format!("-m dscp {}--dscp {}", rng.neg(30), rng.below(64))
            } else {
                format!(
                    "-m dscp {}--dscp-class {}",
                    rng.neg(30),
                    rng.pick(DSCP_CLASSES)
                )
            }
        }
        5 => format!("-m mark {}--mark {}", rng.neg(30), mark_value(rng)),
        6 => limit(rng),
        _ => iprange(rng),
    }
}

/// `-m connlimit`: either limit (each inverted), masks, either side.
fn connlimit(rng: &mut Rng) -> String {
    let mut m = format!(
        "-m connlimit {}{} {}",
        rng.neg(20),
        rng.pick(&["--connlimit-upto", "--connlimit-above"]),
        rng.pick(&[0u32, 1, 3, 100, 4294967295])
    );
    if rng.chance(40) {
        m.push_str(&format!(
            " --connlimit-mask {}",
            rng.pick(&[0u8, 8, 24, 32])
        ));
    }
    if rng.chance(40) {
        m.push_str(rng.pick(&[" --connlimit-saddr", " --connlimit-daddr"]));
    }
    m
}

/// `-m hashlimit`: rates in every unit (and spellings iptables rounds),
/// bursts, modes, masks and table sizes.
fn hashlimit(rng: &mut Rng) -> String {
    let rate = rng.pick(&[
        "1/sec",
        "10/s",
        "3000/second",
        "7",
        "30/m",
        "60/minute",
        "1/hour",
        "100/h",
        "25/day",
        "1000000/sec",
        "3/MIN",
    ]);
    let mut m = format!(
        "-m hashlimit {}{} {rate}",
        rng.neg(20),
        rng.pick(&["--hashlimit-upto", "--hashlimit-above"])
    );
    if rng.chance(50) {
        m.push_str(&format!(
            " --hashlimit-burst {}",
            rng.pick(&["1", "3", "5", "20", "1000000", "2k"])
        ));
    }
    if rng.chance(60) {
        m.push_str(&format!(
            " --hashlimit-mode {}",
            rng.pick(&[
                "srcip",
                "dstip",
                "srcip,dstport",
                "dstport,srcip,srcport",
                "srcport|dstip"
            ])
        ));
    }
    m.push_str(&format!(
        " --hashlimit-name {}",
        rng.pick(&["ssh", "web_in", "h1", "per-source"])
    ));
    for (opt, values) in [
        ("--hashlimit-srcmask", &["0", "16", "24", "32"][..]),
        ("--hashlimit-dstmask", &["8", "24", "32"][..]),
        ("--hashlimit-htable-size", &["16", "1024", "8192"][..]),
        ("--hashlimit-htable-max", &["100", "65536", "2000000"][..]),
        (
            "--hashlimit-htable-gcinterval",
            &["1000", "500", "10000"][..],
        ),
        ("--hashlimit-htable-expire", &["1000", "60000", "3"][..]),
    ] {
        if rng.chance(20) {
            m.push_str(&format!(" {opt} {}", rng.pick(values)));
        }
    }
    m
}

/// `-m recent`: each command with the options it takes, names, masks and
/// sides, '!' on the command.
fn recent(rng: &mut Rng) -> String {
    let mut m = format!("-m recent {}", rng.neg(20));
    let check = rng.chance(60);
    if check {
        m.push_str(rng.pick(&["--rcheck", "--update"]));
        let seconds = rng.chance(70);
        if seconds {
            m.push_str(&format!(" --seconds {}", 1 + rng.below(3600)));
            if rng.chance(40) {
                m.push_str(" --reap");
            }
        }
        if rng.chance(50) {
            m.push_str(&format!(" --hitcount {}", 1 + rng.below(20)));
        }
        if rng.chance(25) {
            m.push_str(" --rttl");
        }
    } else {
        m.push_str(rng.pick(&["--set", "--remove"]));
    }
    if rng.chance(70) {
        m.push_str(&format!(
            " --name {}",
            rng.pick(&["SSH", "DEFAULT", "scan_list", "x1"])
        ));
    }
    if rng.chance(20) {
        m.push_str(&format!(
            " --mask {}",
            rng.pick(&["255.255.255.0", "255.255.0.0", "0.0.0.0"])
        ));
    }
    if rng.chance(40) {
        m.push_str(rng.pick(&[" --rsource", " --rdest"]));
    }
    m
}

/// The protocol a rule is known to match, which decides what else it may use.
#[derive(Clone, Copy, PartialEq)]
enum Proto {
    /// No `-p`, `-p all`, a negated or another protocol.
    Other,
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

/// A random rule body: protocol, its matches and other matches, no target.
fn random_matches(rng: &mut Rng, ctx: &Ctx) -> (Proto, Vec<String>) {
    let mut parts = generic(rng, ctx, 30);
    let proto = match rng.below(10) {
        0..=2 => Proto::Tcp,
        3 | 4 => Proto::Udp,
        5 => Proto::Icmp,
        _ => Proto::Other,
    };
    match proto {
        Proto::Tcp | Proto::Udp => {
            let name = if proto == Proto::Tcp { "tcp" } else { "udp" };
            parts.push(match rng.below(4) {
                0 => format!("-p {}", if proto == Proto::Tcp { "6" } else { "17" }),
                _ => format!("-p {name}"),
            });
            let explicit = rng.chance(40);
            let mut proto_opts = Vec::new();
            if rng.chance(50) {
                proto_opts.push(format!("{}--sport {}", rng.neg(20), port(rng)));
            }
            if rng.chance(60) {
                proto_opts.push(format!("{}--dport {}", rng.neg(20), port(rng)));
            }
            if proto == Proto::Tcp && rng.chance(30) {
                if rng.chance(50) {
                    proto_opts.push(format!("{}--syn", rng.neg(30)));
                } else {
                    proto_opts.push(format!(
                        "{}--tcp-flags {} {}",
                        rng.neg(30),
                        flag_mask(rng),
                        flag_set(rng)
                    ));
                }
            }
            if explicit || (!proto_opts.is_empty() && rng.chance(20)) {
                parts.push(format!("-m {name}"));
            }
            parts.extend(proto_opts);
            if rng.chance(25) {
                let which = rng.pick(&["--sports", "--dports", "--ports"]);
                parts.push(format!(
                    "-m multiport {}{which} {}",
                    rng.neg(25),
                    port_list(rng)
                ));
            }
        }
        Proto::Icmp => {
            parts.push("-p icmp".to_owned());
            if rng.chance(70) {
                let m = if rng.chance(40) { "-m icmp " } else { "" };
                parts.push(format!(
                    "{m}{}--icmp-type {}",
                    rng.neg(25),
                    rng.pick(ICMP_TYPES)
                ));
            }
        }
        Proto::Other => {
            if rng.chance(50) {
                let p = rng.pick(&["all", "47", "gre", "esp", "1", "132"]);
                let neg = if p == "all" { "" } else { rng.neg(30) };
                parts.push(format!("{neg}-p {p}"));
            } else if rng.chance(30) {
                // A negated tcp/udp/icmp allows no protocol options.
                parts.push(format!("! -p {}", rng.pick(&["tcp", "udp", "icmp"])));
            }
        }
    }
    for _ in 0..rng.below(3) {
        parts.push(other_match(rng));
    }
    (proto, parts)
}

/// `-m conntrack`, `-m state`, ... may each appear once per rule in this
/// corpus; drop repeated modules so that no rule uses one twice.
fn dedup_modules(parts: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        if let Some(m) = p.strip_prefix("-m ") {
            let module = m.split(' ').next().unwrap_or_default().to_owned();
            if matches!(module.as_str(), "tcp" | "udp" | "icmp") {
                out.push(p);
                continue;
            }
            if seen.contains(&module) {
                continue;
            }
            seen.push(module);
        }
        out.push(p);
    }
    out
}

/// A target that netfilter allows in `ctx` for a rule matching `proto`.
/// `None` means no `-j` at all.
fn target(rng: &mut Rng, ctx: &Ctx, proto: Proto) -> Option<String> {
    let mut choices: Vec<String> = vec![
        "-j ACCEPT".to_owned(),
        "-j RETURN".to_owned(),
        log_target(rng),
        mark_target(rng),
        connmark_target(rng),
    ];
    if proto == Proto::Tcp {
        // Clamping is refused in the built-in PREROUTING and INPUT chains
        // only (iptables-nft checks no user chain).
        let clamp_ok = !matches!(ctx.chain, "PREROUTING" | "INPUT");
        choices.push(if clamp_ok && rng.chance(50) {
            "-j TCPMSS --clamp-mss-to-pmtu".to_owned()
        } else {
            format!("-j TCPMSS --set-mss {}", 500 + rng.below(1000))
        });
    }
    if ctx.table != "nat" {
        choices.push("-j DROP".to_owned());
        choices.push("-j DROP".to_owned());
    }
    match ctx.table {
        "filter" => {
            choices.push(reject_target(rng, proto));
            choices.push(reject_target(rng, proto));
        }
        "nat" => {
            if ctx.only_from(&["POSTROUTING"]) {
                choices.push(masquerade_target(rng, proto));
                choices.push(masquerade_target(rng, proto));
            }
            if ctx.only_from(&["POSTROUTING", "INPUT"]) {
                choices.push(snat_target(rng, proto));
                choices.push(snat_target(rng, proto));
            }
            if ctx.only_from(&["PREROUTING", "OUTPUT"]) {
                choices.push(dnat_target(rng, proto));
                choices.push(dnat_target(rng, proto));
                choices.push(redirect_target(rng, proto));
            }
        }
        "mangle" => {
            choices.push(dscp_target(rng));
            choices.push(dscp_target(rng));
            choices.push(ttl_tos_target(rng));
        }
        "raw" => {
            choices.push("-j NOTRACK".to_owned());
            choices.push("-j CT --notrack".to_owned());
        }
        t => panic!("unknown table {t}"),
    }
    if rng.chance(8) {
        return None;
    }
    let i = rng.below(choices.len());
    Some(choices.swap_remove(i))
}

fn log_target(rng: &mut Rng) -> String {
    let mut t = "-j LOG".to_owned();
    if rng.chance(70) {
        t.push_str(&format!(" --log-prefix \"{}\"", rng.pick(LOG_PREFIXES)));
    }
    if rng.chance(60) {
        t.push_str(&format!(" --log-level {}", rng.pick(LOG_LEVELS)));
    }
    t
}

fn mark_target(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("-j MARK --set-mark {}", mark_value(rng)),
        1 => "-j MARK --set-xmark 0x2/0xffffffff".to_owned(),
        _ => "-j MARK --set-xmark 0x100/0xff00".to_owned(),
    }
}

fn reject_target(rng: &mut Rng, proto: Proto) -> String {
    if proto == Proto::Tcp && rng.chance(30) {
        return "-j REJECT --reject-with tcp-reset".to_owned();
    }
    if rng.chance(20) {
        return "-j REJECT".to_owned();
    }
    format!("-j REJECT --reject-with {}", rng.pick(REJECT_WITH))
}

fn port_range(rng: &mut Rng) -> String {
    let lo = 1024 + rng.below(30000);
    if rng.chance(50) {
        lo.to_string()
    } else {
        format!("{lo}-{}", lo + 1 + rng.below(1000))
    }
}

fn masquerade_target(rng: &mut Rng, proto: Proto) -> String {
    let mut t = "-j MASQUERADE".to_owned();
    if proto.has_ports() && rng.chance(40) {
        t.push_str(&format!(" --to-ports {}", port_range(rng)));
    }
    match rng.below(4) {
        0 => t.push_str(" --random"),
        1 => t.push_str(" --random-fully"),
        _ => {}
    }
    t
}

fn nat_address(rng: &mut Rng, base: &str, proto: Proto) -> String {
    let lo = 1 + rng.below(100);
    let mut a = format!("{base}.{lo}");
    if rng.chance(40) {
        a.push_str(&format!("-{base}.{}", lo + rng.below(50)));
    }
    if proto.has_ports() && rng.chance(50) {
        a.push_str(&format!(":{}", port_range(rng)));
    }
    a
}

fn snat_target(rng: &mut Rng, proto: Proto) -> String {
    format!(
        "-j SNAT --to-source {}",
        nat_address(rng, "198.51.100", proto)
    )
}

fn dnat_target(rng: &mut Rng, proto: Proto) -> String {
    format!(
        "-j DNAT --to-destination {}",
        nat_address(rng, "10.9.8", proto)
    )
}

fn redirect_target(rng: &mut Rng, proto: Proto) -> String {
    if proto.has_ports() && rng.chance(70) {
        format!("-j REDIRECT --to-ports {}", port_range(rng))
    } else {
        "-j REDIRECT".to_owned()
    }
}

fn dscp_target(rng: &mut Rng) -> String {
    if rng.chance(50) {
        format!("-j DSCP --set-dscp {}", rng.below(64))
    } else {
        format!("-j DSCP --set-dscp-class {}", rng.pick(DSCP_CLASSES))
    }
}

/// Counters before a rule or on a chain line, sometimes.
/// `-j CONNMARK` in each of its forms, masks in any order.
fn connmark_target(rng: &mut Rng) -> String {
    let mask = |rng: &mut Rng| format!("0x{:x}", rng.next() as u32 >> rng.below(32));
    match rng.below(7) {
        0 => format!("-j CONNMARK --set-mark {}", mark_value(rng)),
        1 => format!("-j CONNMARK --set-xmark {}", mark_value(rng)),
        2 => format!(
            "-j CONNMARK --{}-mark {}",
            rng.pick(&["and", "or", "xor"]),
            mask(rng)
        ),
        3 | 4 => {
            let op = rng.pick(&["--save-mark", "--restore-mark"]);
            match rng.below(4) {
                0 => format!("-j CONNMARK {op}"),
                1 => format!("-j CONNMARK {op} --mask {}", mask(rng)),
                2 => format!("-j CONNMARK --nfmask {} {op}", mask(rng)),
                _ => format!(
                    "-j CONNMARK {op} --nfmask {} --ctmask {}",
                    mask(rng),
                    mask(rng)
                ),
            }
        }
        5 => format!(
            "-j CONNMARK --set-mark {} --mask {}",
            rng.below(16),
            mask(rng)
        ),
        _ => format!("-j CONNMARK --ctmask {} --restore-mark", mask(rng)),
    }
}

/// `-j TTL` or `-j TOS` in each of their forms.
fn ttl_tos_target(rng: &mut Rng) -> String {
    let step = 1 + rng.below(255);
    match rng.below(9) {
        0 => format!("-j TTL --ttl-set {}", rng.below(256)),
        1 => format!("-j TTL --ttl-inc {step}"),
        2 => format!("-j TTL --ttl-dec {step}"),
        3 => format!("-j TOS --set-tos 0x{:02x}", rng.below(256)),
        4 => format!(
            "-j TOS --set-tos 0x{:02x}/0x{:02x}",
            rng.below(256),
            rng.below(256)
        ),
        5 => format!("-j TOS --set-tos {}", rng.pick(TOS_NAMES)),
        6 => format!("-j TOS --and-tos 0x{:02x}", rng.below(256)),
        7 => format!("-j TOS --or-tos 0x{:02x}", rng.below(256)),
        _ => format!("-j TOS --xor-tos 0x{:02x}", rng.below(256)),
    }
}

fn counters(rng: &mut Rng) -> Option<String> {
    if rng.chance(10) {
        Some(format!("[{}:{}]", rng.below(1000), rng.below(100_000)))
    } else {
        None
    }
}

/// Joins the parts of a rule into an `-A` line, with counters sometimes.
fn rule_line(rng: &mut Rng, chain: &str, parts: &[String]) -> String {
    let body = parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let line = if body.is_empty() {
        format!("-A {chain}")
    } else {
        format!("-A {chain} {body}")
    };
    match counters(rng) {
        Some(c) => format!("{c} {line}"),
        None => line,
    }
}

/// A complete random rule for `ctx`.
fn random_rule(rng: &mut Rng, ctx: &Ctx) -> String {
    let (proto, parts) = random_matches(rng, ctx);
    let mut parts = dedup_modules(parts);
    if let Some(t) = target(rng, ctx, proto) {
        parts.push(t);
    }
    rule_line(rng, ctx.chain, &parts)
}

/// A rule with random generic options around `core` (which holds the
/// protocol and protocol options, if any) and the target `target`.
fn decorated(rng: &mut Rng, ctx: &Ctx, core: &str, target: &str) -> String {
    let mut parts = generic(rng, ctx, 25);
    if rng.chance(50) {
        parts.insert(0, core.to_owned());
    } else {
        parts.push(core.to_owned());
    }
    parts.push(target.to_owned());
    rule_line(rng, ctx.chain, &parts)
}

fn builtins(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        t => panic!("unknown table {t}"),
    }
}

/// One `*table ... COMMIT` block. Built-in chains get policy `policy` (or a
/// random ACCEPT/DROP for filter when `None`), user chains `-`.
fn block(
    rng: &mut Rng,
    table: &str,
    policy: Option<&str>,
    users: &[&str],
    rules: &[String],
) -> String {
    let mut out = format!("*{table}\n");
    for chain in builtins(table) {
        let policy = match policy {
            Some(p) => p,
            None if table == "filter" && rng.chance(40) => "DROP",
            None => "ACCEPT",
        };
        let c = counters(rng).unwrap_or_else(|| "[0:0]".to_owned());
        out.push_str(&format!(":{chain} {policy} {c}\n"));
    }
    for user in users {
        let c = counters(rng).unwrap_or_else(|| "[0:0]".to_owned());
        out.push_str(&format!(":{user} - {c}\n"));
    }
    for rule in rules {
        out.push_str(rule);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// `-s`, `-d`, `-p`, `-i`, `-o`, each alone, with and without `!`.
fn filter_generic(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    let chains = ["INPUT", "FORWARD", "OUTPUT"];
    for (i, a) in ADDRESSES.iter().enumerate() {
        for (opt, neg) in [("-s", ""), ("-s", "! "), ("-d", ""), ("-d", "! ")] {
            let ctx = Ctx::builtin("filter", chains[i % 3]);
            let t = rng.pick(&["-j ACCEPT", "-j DROP", "-j RETURN", ""]);
            rules.push(rule_line(
                rng,
                ctx.chain,
                &[format!("{neg}{opt} {a}"), t.to_owned()],
            ));
        }
    }
    for a in ADDRESSES_ANY {
        rules.push(format!("-A FORWARD -s {a} -j ACCEPT"));
        rules.push(format!("-A FORWARD -d {a}"));
    }
    for p in [
        "tcp", "udp", "icmp", "all", "6", "17", "1", "47", "gre", "esp", "50", "132",
    ] {
        for neg in ["", "! "] {
            if p == "all" && !neg.is_empty() {
                continue;
            }
            let ctx = Ctx::builtin("filter", rng.pick(&chains));
            rules.push(decorated(rng, &ctx, &format!("{neg}-p {p}"), "-j ACCEPT"));
        }
    }
    for ifname in INTERFACES.iter().chain(&["+"]) {
        for neg in ["", "! "] {
            rules.push(format!("-A INPUT {neg}-i {ifname} -j ACCEPT"));
            rules.push(format!("-A OUTPUT {neg}-o {ifname} -j DROP"));
            rules.push(format!("-A FORWARD {neg}-i {ifname} -o eth9 -j ACCEPT"));
        }
    }
    // Everything at once, in both orders.
    rules.push(
        "-A FORWARD -s 10.0.0.0/8 -d 192.168.0.0/16 -i eth1 -o eth0 -p tcp -j ACCEPT".to_owned(),
    );
    rules.push(
        "-A FORWARD -j ACCEPT -p udp -o eth0 -i eth1 -d 192.168.0.0/16 -s 10.0.0.0/8".to_owned(),
    );
    rules.push(
        "-A FORWARD ! -s 10.0.0.0/8 ! -d 192.168.0.0/16 ! -i eth1 ! -o eth0 ! -p tcp -j DROP"
            .to_owned(),
    );
    block(rng, "filter", None, &[], &rules)
}

/// `--sport`/`--dport` in every form, implicit and with `-m tcp|udp`.
fn filter_ports(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    for proto in ["tcp", "udp"] {
        for p in PORTS {
            for opt in ["--sport", "--dport"] {
                let ctx = Ctx::builtin("filter", rng.pick(&["INPUT", "FORWARD", "OUTPUT"]));
                let m = if rng.chance(50) {
                    format!(" -m {proto}")
                } else {
                    String::new()
                };
                let neg = rng.neg(40);
                let core = format!("-p {proto}{m} {neg}{opt} {p}");
                let t = rng.pick(&["-j ACCEPT", "-j DROP", ""]);
                rules.push(decorated(rng, &ctx, &core, t));
            }
        }
        rules.push(format!("-A INPUT -p {proto} -m {proto} -j ACCEPT"));
        rules.push(format!(
            "-A INPUT -p {proto} --sport 1024: --dport ssh -j ACCEPT"
        ));
        rules.push(format!(
            "-A INPUT -p {proto} -m {proto} ! --sport 53 ! --dport 1:1023 -j DROP"
        ));
        rules.push(format!(
            "-A OUTPUT -p {proto} --dport 53 --sport 1024:65535 -j ACCEPT"
        ));
    }
    // The full range matches every port (never negated: iptables-nft drops a
    // negated full range from the kernel rule, so it would match all).
    rules.push("-A INPUT -p tcp --dport 0:65535 -j ACCEPT".to_owned());
    rules.push("-A INPUT -p udp -m udp --sport 0:65535 --dport 53 -j ACCEPT".to_owned());
    rules.push("-A INPUT -p 6 --dport 22 -j ACCEPT".to_owned());
    rules.push("-A INPUT -p 17 -m udp --sport domain -j ACCEPT".to_owned());
    rules.push("-A INPUT -p tcp -m tcp --dport https -m tcp --sport 1024: -j ACCEPT".to_owned());
    block(rng, "filter", Some("ACCEPT"), &[], &rules)
}

/// `--tcp-flags`, `--syn` and `--icmp-type`.
fn filter_tcp_icmp(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    let fixed = [
        ("SYN,ACK", "SYN"),
        ("ALL", "NONE"),
        ("ALL", "ALL"),
        ("ALL", "FIN,URG,PSH"),
        ("SYN,RST", "SYN,RST"),
        ("FIN,SYN,RST,ACK", "SYN"),
        ("ACK,FIN", "FIN"),
        ("URG,PSH", "NONE"),
    ];
    for (mask, comp) in fixed {
        for neg in ["", "! "] {
            let m = if rng.chance(50) { "-m tcp " } else { "" };
            let ctx = Ctx::builtin("filter", rng.pick(&["INPUT", "FORWARD"]));
            let core = format!("-p tcp {m}{neg}--tcp-flags {mask} {comp}");
            rules.push(decorated(rng, &ctx, &core, "-j DROP"));
        }
    }
    for _ in 0..6 {
        let core = format!(
            "-p tcp {}--tcp-flags {} {}",
            rng.neg(30),
            flag_mask(rng),
            flag_set(rng)
        );
        rules.push(decorated(
            rng,
            &Ctx::builtin("filter", "INPUT"),
            &core,
            "-j DROP",
        ));
    }
    for neg in ["", "! "] {
        rules.push(format!("-A INPUT -p tcp {neg}--syn -j ACCEPT"));
        rules.push(format!(
            "-A INPUT -p tcp -m tcp {neg}--syn --dport 22 -j ACCEPT"
        ));
        rules.push(format!("-A FORWARD -p tcp --dport 80 {neg}--syn -j ACCEPT"));
    }
    for t in ICMP_TYPES {
        for neg in ["", "! "] {
            let m = if rng.chance(50) { "-m icmp " } else { "" };
            let ctx = Ctx::builtin("filter", rng.pick(&["INPUT", "FORWARD", "OUTPUT"]));
            let core = format!("-p icmp {m}{neg}--icmp-type {t}");
            let tgt = rng.pick(&["-j ACCEPT", "-j DROP", ""]);
            rules.push(decorated(rng, &ctx, &core, tgt));
        }
    }
    rules.push("-A INPUT -p 1 --icmp-type echo-request -j ACCEPT".to_owned());
    block(rng, "filter", None, &[], &rules)
}

/// `-m multiport` with `--sports`, `--dports` and `--ports`.
fn filter_multiport(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    for proto in ["tcp", "udp"] {
        for opt in ["--sports", "--dports", "--ports"] {
            for neg in ["", "! "] {
                for _ in 0..3 {
                    let ctx = Ctx::builtin("filter", rng.pick(&["INPUT", "FORWARD", "OUTPUT"]));
                    let core = format!("-p {proto} -m multiport {neg}{opt} {}", port_list(rng));
                    rules.push(decorated(rng, &ctx, &core, "-j ACCEPT"));
                }
            }
        }
    }
    rules.push(
        "-A INPUT -p tcp -m multiport --dports ssh,http,https,smtp,domain -j ACCEPT".to_owned(),
    );
    rules.push("-A INPUT -p tcp -m multiport --dports ssh:http,https -j ACCEPT".to_owned());
    rules.push("-A INPUT -p udp -m multiport ! --sports 0:80,53 -j ACCEPT".to_owned());
    rules.push(
        "-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT"
            .to_owned(),
    );
    rules.push(
        "-A INPUT -p udp -m multiport --ports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15 -j ACCEPT"
            .to_owned(),
    );
    rules.push(
        "-A INPUT -p tcp -m multiport --sports 1024:65535 -m multiport --dports 0:1023 -j ACCEPT"
            .to_owned(),
    );
    rules.push("-A INPUT -p tcp --syn -m multiport --dports 80,443 -j ACCEPT".to_owned());
    block(rng, "filter", Some("DROP"), &[], &rules)
}

/// conntrack, state, comment, dscp, mark, limit, iprange.
fn filter_matches(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    let chains = ["INPUT", "FORWARD", "OUTPUT"];
    // -m addrtype: types, '!', and the interface limits where they may stand.
    for i in 0..9 {
        let chain = chains[i % 3];
        let ctx = Ctx::builtin("filter", chain);
        let types = |rng: &mut Rng| {
            let n = 1 + rng.below(3);
            let mut t: Vec<&str> = (0..n)
                .map(|_| {
                    rng.pick(&[
                        "UNICAST",
                        "LOCAL",
                        "BROADCAST",
                        "MULTICAST",
                        "unspec",
                        "Nat",
                    ])
                })
                .collect();
            t.dedup();
            t.join(",")
        };
        let mut m = "-m addrtype".to_owned();
        if rng.chance(70) {
            m.push_str(&format!(" {}--src-type {}", rng.neg(30), types(rng)));
        }
        if m.len() == 11 || rng.chance(50) {
            m.push_str(&format!(" {}--dst-type {}", rng.neg(30), types(rng)));
        }
        match (chain, i / 3) {
            ("INPUT" | "FORWARD", 0) => m.push_str(" --limit-iface-in"),
            ("OUTPUT" | "FORWARD", 1) => m.push_str(" --limit-iface-out"),
            _ => {}
        }
        rules.push(decorated(rng, &ctx, &m, "-j ACCEPT"));
    }
    for s in CT_STATES {
        for neg in ["", "! "] {
            let ctx = Ctx::builtin("filter", rng.pick(&chains));
            rules.push(decorated(
                rng,
                &ctx,
                &format!("-m conntrack {neg}--ctstate {s}"),
                "-j ACCEPT",
            ));
        }
    }
    rules.push("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_owned());
    rules.push("-A INPUT -m conntrack --ctstate INVALID,UNTRACKED,NEW -j DROP".to_owned());
    rules.push("-A FORWARD -m conntrack ! --ctstate SNAT,DNAT -j ACCEPT".to_owned());
    for s in &CT_STATES[..5] {
        for neg in ["", "! "] {
            let ctx = Ctx::builtin("filter", rng.pick(&chains));
            rules.push(decorated(
                rng,
                &ctx,
                &format!("-m state {neg}--state {s}"),
                "-j ACCEPT",
            ));
        }
    }
    rules.push("-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT".to_owned());
    for c in COMMENTS {
        let ctx = Ctx::builtin("filter", rng.pick(&chains));
        rules.push(decorated(
            rng,
            &ctx,
            &format!("-m comment --comment {c}"),
            "-j ACCEPT",
        ));
    }
    rules.push("-A INPUT -p tcp -m comment --comment \"ssh in\" --dport 22 -j ACCEPT".to_owned());
    rules.push("-A INPUT -p tcp --dport 22 -m comment --comment \"ssh in\" -j ACCEPT".to_owned());
    for d in [0, 10, 46, 63] {
        for neg in ["", "! "] {
            rules.push(format!("-A FORWARD -m dscp {neg}--dscp {d} -j ACCEPT"));
        }
    }
    for c in DSCP_CLASSES {
        let neg = rng.neg(40);
        rules.push(format!("-A OUTPUT -m dscp {neg}--dscp-class {c} -j ACCEPT"));
    }
    for _ in 0..5 {
        for neg in ["", "! "] {
            let ctx = Ctx::builtin("filter", rng.pick(&chains));
            let core = format!("-m mark {neg}--mark {}", mark_value(rng));
            rules.push(decorated(rng, &ctx, &core, "-j DROP"));
        }
    }
    for unit in LIMIT_UNITS {
        let n = rng.pick(&[1, 2, 5, 30, 100, 10000]);
        let burst = if rng.chance(50) {
            format!(" --limit-burst {}", 1 + rng.below(50))
        } else {
            String::new()
        };
        rules.push(format!(
            "-A INPUT -p icmp -m limit --limit {n}/{unit}{burst} -j ACCEPT"
        ));
    }
    rules.push("-A INPUT -m limit --limit-burst 7 -j ACCEPT".to_owned());
    rules.push("-A INPUT -m limit -j ACCEPT".to_owned());
    for neg_s in ["", "! "] {
        for neg_d in ["", "! "] {
            rules.push(format!(
                "-A FORWARD -m iprange {neg_s}--src-range 10.0.0.1-10.0.0.99 {neg_d}--dst-range 192.168.1.1-192.168.1.1 -j ACCEPT"
            ));
        }
        rules.push(format!(
            "-A INPUT -m iprange {neg_s}--src-range 172.16.0.0-172.31.255.255 -j DROP"
        ));
        rules.push(format!(
            "-A OUTPUT -m iprange {neg_s}--dst-range 224.0.0.1-239.255.255.255 -j DROP"
        ));
    }
    for _ in 0..15 {
        let ctx = Ctx::builtin("filter", rng.pick(&chains));
        let mut parts = vec![other_match(rng), other_match(rng), other_match(rng)];
        parts = dedup_modules(parts);
        let core = parts.join(" ");
        rules.push(decorated(rng, &ctx, &core, "-j ACCEPT"));
    }
    block(rng, "filter", None, &[], &rules)
}

/// REJECT, LOG, MARK, user chains, `-j`/`-g`, RETURN, no target, counters.
fn filter_targets(rng: &mut Rng) -> String {
    const ALL: &[&str] = &["INPUT", "FORWARD", "OUTPUT"];
    let users = ["LOG_DROP", "web-in", "Chain_2", "fwd.lan", "EMPTY"];
    let log_drop = Ctx::user("filter", "LOG_DROP", ALL);
    let web_in = Ctx::user("filter", "web-in", &["INPUT"]);
    let chain2 = Ctx::user("filter", "Chain_2", &["FORWARD"]);
    let fwd_lan = Ctx::user("filter", "fwd.lan", &["FORWARD"]);
    let mut rules = vec![
        "-A INPUT -i lo -j ACCEPT".to_owned(),
        "-A INPUT -p tcp --dport 80 -j web-in".to_owned(),
        "-A INPUT -p tcp --dport 8080 -g web-in".to_owned(),
        "-A INPUT -s 10.0.0.0/8 -j LOG_DROP".to_owned(),
        "-A INPUT -j EMPTY".to_owned(),
        "-A FORWARD -i eth1 -o eth0 -j fwd.lan".to_owned(),
        "-A FORWARD -g Chain_2".to_owned(),
        "-A OUTPUT ! -d 10.0.0.0/8 -g LOG_DROP".to_owned(),
        "-A fwd.lan -p udp -j Chain_2".to_owned(),
        "-A fwd.lan -j LOG_DROP".to_owned(),
        "-A fwd.lan -j RETURN".to_owned(),
        "-A web-in -s 192.0.2.0/24 -j RETURN".to_owned(),
        "-A web-in -m conntrack --ctstate NEW -j LOG --log-prefix \"web new: \" --log-level info"
            .to_owned(),
        "-A web-in -j ACCEPT".to_owned(),
        "-A LOG_DROP -j LOG --log-prefix \"drop: \"".to_owned(),
        "-A LOG_DROP -j DROP".to_owned(),
        "-A INPUT -j RETURN".to_owned(),
        "-A INPUT".to_owned(),
        "[5:300] -A INPUT -p tcp -j ACCEPT".to_owned(),
        "[0:0] -A OUTPUT".to_owned(),
        "[123456:7890123] -A FORWARD -s 10.1.1.1 -j DROP".to_owned(),
    ];
    for r in REJECT_WITH {
        let ctx = Ctx::builtin("filter", rng.pick(ALL));
        rules.push(decorated(
            rng,
            &ctx,
            "",
            &format!("-j REJECT --reject-with {r}"),
        ));
    }
    for ctx in [
        Ctx::builtin("filter", "INPUT"),
        Ctx::builtin("filter", "FORWARD"),
        chain2,
    ] {
        rules.push(decorated(
            rng,
            &ctx,
            "-p tcp",
            "-j REJECT --reject-with tcp-reset",
        ));
        rules.push(decorated(
            rng,
            &ctx,
            "-p tcp --dport 113",
            "-j REJECT --reject-with tcp-reset",
        ));
        rules.push(decorated(rng, &ctx, "-p udp", "-j REJECT"));
    }
    for level in LOG_LEVELS {
        let ctx = Ctx::builtin("filter", rng.pick(ALL));
        rules.push(decorated(
            rng,
            &ctx,
            "",
            &format!("-j LOG --log-level {level}"),
        ));
    }
    for prefix in LOG_PREFIXES {
        let ctx = Ctx::builtin("filter", rng.pick(ALL));
        let level = if rng.chance(50) {
            format!(" --log-level {}", rng.pick(LOG_LEVELS))
        } else {
            String::new()
        };
        rules.push(decorated(
            rng,
            &ctx,
            "",
            &format!("-j LOG --log-prefix \"{prefix}\"{level}"),
        ));
    }
    rules.push("-A INPUT -j LOG --log-level 4 --log-prefix \"order \"".to_owned());
    for _ in 0..6 {
        let ctx = Ctx::builtin("filter", rng.pick(ALL));
        let t = mark_target(rng);
        rules.push(decorated(rng, &ctx, "", &t));
    }
    for ctx in [log_drop, web_in, chain2, fwd_lan] {
        for _ in 0..4 {
            rules.push(random_rule(rng, &ctx));
        }
    }
    for _ in 0..10 {
        let ctx = Ctx::builtin("filter", rng.pick(ALL));
        rules.push(random_rule(rng, &ctx));
    }
    block(rng, "filter", None, &users, &rules)
}

/// MASQUERADE, SNAT, DNAT, REDIRECT where nat allows them.
fn nat(rng: &mut Rng) -> String {
    let users = ["DNAT_WEB", "snat-out", "nat.pre"];
    let dnat_web = Ctx::user("nat", "DNAT_WEB", &["PREROUTING", "OUTPUT"]);
    let snat_out = Ctx::user("nat", "snat-out", &["POSTROUTING"]);
    let pre = Ctx::user("nat", "nat.pre", &["PREROUTING"]);
    let mut rules = vec![
        "-A PREROUTING -d 203.0.113.1 -p tcp -j DNAT_WEB".to_owned(),
        "-A OUTPUT -d 203.0.113.1 -j DNAT_WEB".to_owned(),
        "-A PREROUTING -i eth0 -g nat.pre".to_owned(),
        "-A POSTROUTING -o eth0 -j snat-out".to_owned(),
        "-A POSTROUTING -o eth0 -s 192.168.10.10 -j MASQUERADE".to_owned(),
        "-A PREROUTING -d 192.168.10.10 -p tcp --dport 25 -j REDIRECT".to_owned(),
        "-A POSTROUTING -s 192.168.0.0/16 -o eth0 -j MASQUERADE --random".to_owned(),
        "-A POSTROUTING -p tcp -o eth0 -j MASQUERADE --to-ports 20000-30000 --random-fully"
            .to_owned(),
        "-A POSTROUTING -p udp -j MASQUERADE --to-ports 40000".to_owned(),
        "-A POSTROUTING -j SNAT --to-source 198.51.100.1".to_owned(),
        "-A POSTROUTING -j SNAT --to-source 198.51.100.1-198.51.100.9".to_owned(),
        "-A POSTROUTING -p tcp -j SNAT --to-source 198.51.100.1:1024-2048".to_owned(),
        "-A POSTROUTING -p udp -j SNAT --to-source 198.51.100.1-198.51.100.3:5000".to_owned(),
        "-A INPUT -s 10.0.0.0/8 -j SNAT --to-source 10.255.0.1".to_owned(),
        "-A INPUT -p tcp -j SNAT --to-source 10.255.0.1:4000-4100".to_owned(),
        "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.9.8.7".to_owned(),
        "-A PREROUTING -p tcp --dport 443 -j DNAT --to-destination 10.9.8.7:8443".to_owned(),
        "-A PREROUTING -p udp -j DNAT --to-destination 10.9.8.1-10.9.8.4:53-60".to_owned(),
        "-A OUTPUT -d 198.51.100.99 -j DNAT --to-destination 127.0.0.1".to_owned(),
        "-A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 3128".to_owned(),
        "-A PREROUTING -p udp --dport 53 -j REDIRECT --to-ports 5300-5310".to_owned(),
        "-A PREROUTING -j ACCEPT".to_owned(),
        "-A POSTROUTING -j RETURN".to_owned(),
        "-A OUTPUT".to_owned(),
    ];
    for (ctx, n) in [
        (Ctx::builtin("nat", "PREROUTING"), 10),
        (Ctx::builtin("nat", "INPUT"), 6),
        (Ctx::builtin("nat", "OUTPUT"), 8),
        (Ctx::builtin("nat", "POSTROUTING"), 12),
        (dnat_web, 5),
        (snat_out, 5),
        (pre, 5),
    ] {
        for _ in 0..n {
            rules.push(random_rule(rng, &ctx));
        }
    }
    block(rng, "nat", Some("ACCEPT"), &users, &rules)
}

/// mangle (DSCP, MARK) and raw (NOTRACK, CT --notrack) in one file.
fn mangle_raw(rng: &mut Rng) -> String {
    let mut mangle = vec![
        "-A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46".to_owned(),
        "-A POSTROUTING -o eth0 -j DSCP --set-dscp-class AF41".to_owned(),
        "-A PREROUTING -j MARK --set-mark 0x1".to_owned(),
        "-A PREROUTING -j MARK --set-mark 0x10/0xf0".to_owned(),
        "-A FORWARD -j MARK --set-xmark 0x2/0xffffffff".to_owned(),
        "-A INPUT -m dscp --dscp 46 -j DSCP --set-dscp 0".to_owned(),
        "-A PREROUTING -j TTL --ttl-set 64".to_owned(),
        "-A FORWARD -m ttl --ttl-lt 2 -j TTL --ttl-inc 1".to_owned(),
        "-A POSTROUTING -o eth0 -j TOS --set-tos Minimize-Delay".to_owned(),
        "-A OUTPUT -m length --length :128 -j TOS --and-tos 0x0f".to_owned(),
        "-A INPUT -m tos ! --tos 0x10/0x3f -j TTL --ttl-dec 3".to_owned(),
        "-A PREROUTING -j CONNMARK --restore-mark --mask 0xff".to_owned(),
        "-A PREROUTING -j CONNMARK --nfmask 0xf0 --save-mark".to_owned(),
        "-A POSTROUTING -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00".to_owned(),
        "-A FORWARD -m connmark ! --mark 0x1/0xff -j CONNMARK --or-mark 0x100".to_owned(),
        "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu".to_owned(),
        "-A PREROUTING -p tcp --syn -j TCPMSS --set-mss 1360".to_owned(),
        "-A mark-web -j MARK --set-mark 80".to_owned(),
        "-A PREROUTING -p tcp --dport 80 -j mark-web".to_owned(),
    ];
    for class in DSCP_CLASSES {
        let ctx = Ctx::builtin(
            "mangle",
            rng.pick(&["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]),
        );
        mangle.push(decorated(
            rng,
            &ctx,
            "",
            &format!("-j DSCP --set-dscp-class {class}"),
        ));
    }
    for chain in ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"] {
        let ctx = Ctx::builtin("mangle", chain);
        for _ in 0..6 {
            mangle.push(random_rule(rng, &ctx));
        }
    }
    let mut raw = vec![
        "-A PREROUTING -p tcp --dport 22 -j NOTRACK".to_owned(),
        "-A PREROUTING -p udp --dport 53 -j CT --notrack".to_owned(),
        "-A OUTPUT -p udp --sport 53 -j NOTRACK".to_owned(),
        "-A OUTPUT -o lo -j CT --notrack".to_owned(),
        "-A PREROUTING -i lo -j notrack-lo".to_owned(),
        "-A notrack-lo -j NOTRACK".to_owned(),
        "-A PREROUTING -j MARK --set-mark 0x7".to_owned(),
    ];
    for chain in ["PREROUTING", "OUTPUT"] {
        let ctx = Ctx::builtin("raw", chain);
        for _ in 0..8 {
            raw.push(random_rule(rng, &ctx));
        }
    }
    let mut text = block(rng, "mangle", Some("ACCEPT"), &["mark-web"], &mangle);
    text.push_str(&block(rng, "raw", Some("ACCEPT"), &["notrack-lo"], &raw));
    text
}

/// Random rules over all four tables and all their chains.
fn mixed(rng: &mut Rng, rules_per_chain: usize) -> String {
    let mut text = String::new();
    // Tables in an order other than iptables-save's.
    for table in ["raw", "nat", "filter", "mangle"] {
        let mut rules = Vec::new();
        for chain in builtins(table) {
            let ctx = Ctx::builtin(table, chain);
            for _ in 0..rules_per_chain {
                rules.push(random_rule(rng, &ctx));
            }
        }
        let policy = if table == "filter" {
            None
        } else {
            Some("ACCEPT")
        };
        text.push_str(&block(rng, table, policy, &[], &rules));
    }
    text
}

/// A file with several tables and built-in chains left undeclared.
fn sparse() -> String {
    "\
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth0 -s 192.168.10.10 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:zeta - [0:0]
:alpha - [0:0]
-A INPUT -p tcp -s 198.51.100.7 --dport 80 -j DROP
-A INPUT -j zeta
-A INPUT -j alpha
-A zeta -j RETURN
-A alpha -j ACCEPT
COMMIT
*raw
-A PREROUTING -p tcp --dport 22 -j NOTRACK
COMMIT
*mangle
-A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46
COMMIT
"
    .to_owned()
}

/// The generated corpus: `(name, iptables-restore file text)` pairs.
///
/// Deterministic: the same files on every call.
/// The IP sets the generated files' `-m set` rules name, as `ipset save`
/// prints them: loaded with `ipset restore` before the files in Linux, and
/// given to xdpgw's parser ([`ipsets`]).
pub const IPSETS: &str = "\
create cbl hash:net family inet hashsize 1024 maxelem 65536
add cbl 10.0.0.0/8
add cbl 10.1.0.0/16 nomatch
create csvc hash:ip,port family inet hashsize 1024 maxelem 65536 counters
add csvc 192.0.2.1,udp:53
create cnets hash:net,port family inet hashsize 1024 maxelem 65536
create cports bitmap:port range 0-1024
add cports 22
create clist list:set size 8
add clist cbl
";

/// [`IPSETS`] as xdpgw's set table.
pub fn ipsets() -> xdpgw_dataplane::ipset::SetTable {
    xdpgw_control::ipset::restore(&Default::default(), IPSETS, 0)
        .unwrap_or_else(|e| panic!("corpus::IPSETS: {e}"))
        .0
}

/// `-m set` in random forms: every set of [`IPSETS`], flags of 1 to 6
/// dimensions, `!`, and the options in random order and combinations.
fn filter_sets(rng: &mut Rng) -> String {
    let mut rules = Vec::new();
    let chains = ["INPUT", "FORWARD", "OUTPUT"];
    let names = ["cbl", "csvc", "cnets", "cports", "clist"];
    for i in 0..60 {
        let name = names[i % names.len()];
        let dims = 1 + rng.below(6);
        let flags: Vec<&str> = (0..dims).map(|_| rng.pick(&["src", "dst"])).collect();
        let mut opts = vec![format!(
            "-m set {}--match-set {name} {}",
            rng.neg(30),
            flags.join(",")
        )];
        if rng.chance(25) {
            opts.push("--return-nomatch".into());
        }
        if rng.chance(20) {
            opts.push(format!("{}--update-counters", rng.neg(70)));
        }
        if rng.chance(15) {
            opts.push(format!("{}--update-subcounters", rng.neg(70)));
        }
        for what in ["packets", "bytes"] {
            if rng.chance(20) {
                let op = rng.pick(&["eq", "lt", "gt"]);
                let neg = if op == "eq" { rng.neg(40) } else { "" };
                opts.push(format!("{neg}--{what}-{op} {}", rng.below(100_000)));
            }
        }
        // Options in any order after --match-set.
        let mut tail = opts.split_off(1);
        for k in (1..tail.len()).rev() {
            tail.swap(k, rng.below(k + 1));
        }
        opts.extend(tail);
        let ctx = Ctx::builtin("filter", rng.pick(&chains));
        let target = rng.pick(&["-j ACCEPT", "-j DROP", ""]);
        rules.push(decorated(rng, &ctx, &opts.join(" "), target));
    }
    rules.push(
        "-A FORWARD -m set --match-set cbl src -m set ! --match-set csvc dst,dst -j DROP".into(),
    );
    rules.push("-A INPUT -p tcp -m set --match-set cports dst -m tcp --dport 22 -j ACCEPT".into());
    block(rng, "filter", None, &[], &rules)
}

pub fn generated() -> Vec<(String, String)> {
    let mut rng = Rng::new(0x005e_ed0f_1b7a_b1e5);
    let files = vec![
        ("gen-filter-generic", filter_generic(&mut rng)),
        ("gen-filter-ports", filter_ports(&mut rng)),
        ("gen-filter-tcp-icmp", filter_tcp_icmp(&mut rng)),
        ("gen-filter-multiport", filter_multiport(&mut rng)),
        ("gen-filter-matches", filter_matches(&mut rng)),
        ("gen-filter-targets", filter_targets(&mut rng)),
        ("gen-nat", nat(&mut rng)),
        ("gen-mangle-raw", mangle_raw(&mut rng)),
        ("gen-mixed-1", mixed(&mut rng, 4)),
        ("gen-mixed-2", mixed(&mut rng, 6)),
        ("gen-sparse", sparse()),
        ("gen-filter-sets", filter_sets(&mut rng)),
    ];
    files
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text))
        .collect()
}

/// IPv6 address forms, as ip6tables takes them.
const ADDRESSES6: &[&str] = &[
    "2001:db8::1",
    "2001:DB8:0:0::/64",
    "2001:db8:10::/48",
    "fd00::/8",
    "fe80::1/10",
    "::1/128",
    "2001:db8::/ffff:ffff::",
    "2001:db8:1:2::/ffff:0:ffff::",
    "::ffff:10.0.0.1",
    "2001:db8::a:b:c:d/100",
    "fd12:3456:789a:1::/64",
];

/// ICMPv6 types: names, numbers and type/code.
const ICMP6_TYPES: &[&str] = &[
    "echo-request",
    "echo-reply",
    "ping",
    "destination-unreachable",
    "no-route",
    "port-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "unknown-option",
    "neighbour-solicitation",
    "neighbor-advertisement",
    "router-advertisement",
    "redirect",
    "128",
    "1/3",
    "3/1",
    "255",
];

const REJECT_WITH6: &[&str] = &[
    "icmp6-no-route",
    "no-route",
    "icmp6-adm-prohibited",
    "adm-prohibited",
    "icmp6-addr-unreachable",
    "addr-unreach",
    "icmp6-port-unreachable",
    "port-unreach",
    "icmp6-policy-fail",
    "icmp6-reject-route",
];

const IPV6_HEADERS: &[&str] = &[
    "hop",
    "hop-by-hop",
    "dst",
    "ipv6-opts",
    "route",
    "ipv6-route",
    "frag",
    "ipv6-frag",
    "auth",
    "ah",
    "esp",
    "none",
    "ipv6-nonxt",
    "prot",
    "protocol",
];

fn addr6(rng: &mut Rng) -> String {
    (rng.pick(ADDRESSES6)).to_owned()
}

/// ip6tables' `-s`/`-d`/`-i`/`-o` options, each present with probability
/// `percent` (lists without `!`).
fn generic6(rng: &mut Rng, ctx: &Ctx, percent: u64) -> Vec<String> {
    let mut out = Vec::new();
    let lists = rng.chance(10);
    for opt in ["-s", "-d"] {
        if rng.chance(percent) {
            out.push(if lists {
                let list: Vec<String> = (0..2).map(|_| addr6(rng)).collect();
                format!("{opt} {}", list.join(","))
            } else {
                format!("{}{opt} {}", rng.neg(30), addr6(rng))
            });
        }
    }
    if ctx.in_ok() && rng.chance(percent) {
        out.push(format!("{}-i {}", rng.neg(30), rng.pick(INTERFACES)));
    }
    if ctx.out_ok() && rng.chance(percent) {
        out.push(format!("{}-o {}", rng.neg(30), rng.pick(INTERFACES)));
    }
    out
}

fn u32_range6(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("{}", rng.below(100)),
        1 => format!("{}:{}", rng.below(100), 100 + rng.below(1000)),
        2 => format!("{}:", rng.below(100)),
        _ => format!(":{}", rng.below(100)),
    }
}

/// One of the IPv6-only matches (ipv6header, frag, hl, rt) or an
/// IPv6 iprange.
fn ipv6_match(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => {
            let n = 1 + rng.below(3);
            let hs: Vec<&str> = (0..n).map(|_| rng.pick(IPV6_HEADERS)).collect();
            let soft = if rng.chance(40) { " --soft" } else { "" };
            format!(
                "-m ipv6header {}--header {}{soft}",
                rng.neg(30),
                hs.join(",")
            )
        }
        1 => {
            let mut out = "-m frag".to_owned();
            if rng.chance(60) {
                out.push_str(&format!(" {}--fragid {}", rng.neg(30), u32_range6(rng)));
            }
            if rng.chance(30) {
                out.push_str(&format!(" {}--fraglen {}", rng.neg(30), 8 * rng.below(4)));
            }
            for f in ["--fragres", "--fragfirst"] {
                if rng.chance(30) {
                    out.push_str(&format!(" {f}"));
                }
            }
            match rng.below(3) {
                0 => out.push_str(" --fragmore"),
                1 => out.push_str(" --fraglast"),
                _ => {}
            }
            out
        }
        2 => match rng.below(3) {
            0 => format!("-m hl {}--hl-eq {}", rng.neg(40), rng.below(256)),
            1 => format!("-m hl --hl-lt {}", rng.below(256)),
            _ => format!("-m hl --hl-gt {}", rng.below(256)),
        },
        3 => {
            let mut out = "-m rt".to_owned();
            if rng.chance(70) {
                out.push_str(&format!(
                    " {}--rt-type {}",
                    rng.neg(30),
                    rng.pick(&[0, 2, 4])
                ));
            }
            if rng.chance(50) {
                out.push_str(&format!(
                    " {}--rt-segsleft {}",
                    rng.neg(30),
                    u32_range6(rng)
                ));
            }
            if rng.chance(40) {
                out.push_str(&format!(
                    " {}--rt-len {}",
                    rng.neg(30),
                    8 * (1 + rng.below(5))
                ));
            }
            out
        }
        _ => {
            let mut out = "-m iprange".to_owned();
            if rng.chance(60) {
                out.push_str(&format!(
                    " {}--src-range 2001:db8::{:x}-2001:db8::{:x}",
                    rng.neg(30),
                    1 + rng.below(10),
                    0x20 + rng.below(200)
                ));
            } else {
                out.push_str(&format!(
                    " {}--dst-range fd00::{}:0-fd00::{}:ffff",
                    rng.neg(30),
                    rng.below(5),
                    5 + rng.below(5)
                ));
            }
            out
        }
    }
}

/// A protocol part with its options, as an ip6tables rule has it.
fn proto6(rng: &mut Rng) -> (Proto, Vec<String>) {
    let mut parts = Vec::new();
    let proto = match rng.below(6) {
        0 => {
            parts.push(format!("-p {}", rng.pick(&["tcp", "6"])));
            if rng.chance(60) {
                parts.push(format!("{}--dport {}", rng.neg(25), port(rng)));
            }
            if rng.chance(30) {
                parts.push(format!("{}--sport {}", rng.neg(25), port(rng)));
            }
            if rng.chance(25) {
                parts.push(format!("{}--syn", rng.neg(40)));
            }
            Proto::Tcp
        }
        1 => {
            parts.push(format!("-p {}", rng.pick(&["udp", "17"])));
            if rng.chance(60) {
                parts.push(format!("{}--dport {}", rng.neg(25), port(rng)));
            }
            Proto::Udp
        }
        2 => {
            parts.push(format!("-p {}", rng.pick(&["ipv6-icmp", "icmpv6", "58"])));
            if rng.chance(70) {
                let m = if rng.chance(30) { "-m icmp6 " } else { "" };
                parts.push(format!(
                    "{m}{}--icmpv6-type {}",
                    rng.neg(25),
                    rng.pick(ICMP6_TYPES)
                ));
            }
            Proto::Other
        }
        3 => {
            parts.push(format!(
                "{}-p {}",
                rng.neg(20),
                rng.pick(&["esp", "ah", "gre", "47", "sctp", "icmp", "ipv6"])
            ));
            Proto::Other
        }
        _ => Proto::Other,
    };
    (proto, parts)
}

/// Protocol-independent matches of an ip6tables rule.
fn other6(rng: &mut Rng, proto: Proto) -> Vec<String> {
    let mut out = Vec::new();
    let n = rng.below(3);
    for _ in 0..n {
        out.push(match rng.below(10) {
            0 => format!(
                "-m conntrack {}--ctstate {}",
                rng.neg(25),
                ct_states(rng, CT_STATES)
            ),
            1 => format!(
                "-m state {}--state {}",
                rng.neg(25),
                ct_states(rng, &CT_STATES[..5])
            ),
            2 => format!("-m comment --comment {}", rng.pick(COMMENTS)),
            3 => format!(
                "-m dscp {}--dscp-class {}",
                rng.neg(25),
                rng.pick(DSCP_CLASSES)
            ),
            4 => format!("-m mark {}--mark {}", rng.neg(25), mark_value(rng)),
            5 => limit(rng),
            6 => format!(
                "-m length {}--length {}:{}",
                rng.neg(25),
                rng.below(100),
                100 + rng.below(1400)
            ),
            7 => format!("-m connmark {}--mark {}", rng.neg(25), mark_value(rng)),
            8 if matches!(proto, Proto::Tcp | Proto::Udp) => {
                format!("-m multiport {}--dports {}", rng.neg(25), port_list(rng))
            }
            8 => format!("-m tos {}--tos {}", rng.neg(25), rng.pick(TOS_NAMES)),
            9 if rng.chance(30) => format!(
                "-m addrtype {}--dst-type {}",
                rng.neg(25),
                rng.pick(&["LOCAL", "UNICAST", "MULTICAST", "LOCAL,ANYCAST"])
            ),
            _ => ipv6_match(rng),
        });
    }
    out
}

/// A target for an ip6tables rule at `ctx`.
fn target6(rng: &mut Rng, ctx: &Ctx, proto: Proto) -> Option<String> {
    let l4 = matches!(proto, Proto::Tcp | Proto::Udp);
    Some(match (ctx.table, rng.below(8)) {
        ("filter", 0) if ctx.only_from(&["INPUT", "FORWARD", "OUTPUT"]) => {
            if matches!(proto, Proto::Tcp) && rng.chance(30) {
                "-j REJECT --reject-with tcp-reset".to_owned()
            } else if rng.chance(20) {
                "-j REJECT".to_owned()
            } else {
                format!("-j REJECT --reject-with {}", rng.pick(REJECT_WITH6))
            }
        }
        (_, 1) => log_target(rng),
        (_, 2) => mark_target(rng),
        (_, 3) => connmark_target(rng),
        ("mangle", 4) => match rng.below(6) {
            0 => format!("-j HL --hl-set {}", rng.below(256)),
            1 => format!("-j HL --hl-inc {}", 1 + rng.below(10)),
            2 => format!("-j HL --hl-dec {}", 1 + rng.below(10)),
            3 => format!(
                "-j TOS --set-tos 0x{:02x}/0x{:02x}",
                rng.below(256),
                rng.below(256)
            ),
            4 if matches!(proto, Proto::Tcp) => {
                format!("-j TCPMSS --set-mss {}", 500 + rng.below(1000))
            }
            _ => dscp_target(rng),
        },
        ("filter", 5) if ctx.table == "filter" && rng.chance(50) => {
            format!("-j {}", rng.pick(&["J6", "K6"]))
        }
        ("filter", 6) if rng.chance(40) => format!("-g {}", rng.pick(&["J6", "K6"])),
        ("raw", 4) => rng.pick(&["-j NOTRACK", "-j CT --notrack"]).to_owned(),
        ("nat", 4 | 5) if ctx.only_from(&["POSTROUTING"]) => match rng.below(3) {
            0 if l4 => "-j MASQUERADE --to-ports 1024-2047 --random".to_owned(),
            0 | 1 => "-j MASQUERADE".to_owned(),
            _ if l4 => format!(
                "-j SNAT --to-source [2001:db8::{:x}-2001:db8::{:x}]:{}-{}",
                1 + rng.below(5),
                10 + rng.below(5),
                1024 + rng.below(100),
                2000 + rng.below(100)
            ),
            _ => format!("-j SNAT --to-source 2001:db8::{:x}", 1 + rng.below(50)),
        },
        ("nat", 4 | 5) if ctx.only_from(&["PREROUTING", "OUTPUT"]) => match rng.below(4) {
            0 if l4 => "-j REDIRECT --to-ports 8080".to_owned(),
            1 if l4 => format!(
                "-j DNAT --to-destination [fd00::{:x}]:8080",
                1 + rng.below(50)
            ),
            2 if l4 => "-j DNAT --to-destination [fd00::5-fd00::9]:100-200".to_owned(),
            3 => "-j DNAT --to-destination [fd00::7]".to_owned(),
            _ => "-j DNAT --to-destination fd00::5-fd00::9".to_owned(),
        },
        ("nat", _) => rng.pick(&["-j ACCEPT", "-j RETURN"]).to_owned(),
        _ => rng.pick(&["-j ACCEPT", "-j DROP", "-j RETURN"]).to_owned(),
    })
}

fn random_rule6(rng: &mut Rng, ctx: &Ctx) -> String {
    let mut parts = generic6(rng, ctx, 40);
    let (proto, p) = proto6(rng);
    parts.extend(p);
    parts.extend(other6(rng, proto));
    let mut parts = dedup_modules(parts);
    if let Some(t) = target6(rng, ctx, proto) {
        parts.push(t);
    }
    rule_line(rng, ctx.chain, &parts)
}

/// An ip6tables-restore file of every table, `per_chain` random rules in
/// each built-in chain.
fn ipv6_file(rng: &mut Rng, per_chain: usize) -> String {
    let mut out = String::new();
    for table in ["filter", "nat", "mangle", "raw"] {
        let mut rules = Vec::new();
        for chain in builtins(table) {
            let ctx = Ctx::builtin(table, chain);
            for _ in 0..per_chain {
                rules.push(random_rule6(rng, &ctx));
            }
        }
        let users: &[&str] = if table == "filter" {
            // User chains reached from every filter hook (no jumps out of
            // them, so no loops).
            let ctx = Ctx::user("filter", "J6", &["INPUT", "FORWARD", "OUTPUT"]);
            for chain in ["J6", "K6"] {
                for _ in 0..per_chain {
                    let mut r = random_rule6(rng, &Ctx { chain, ..ctx });
                    if r.contains(" -j J6") || r.contains(" -j K6") || r.contains(" -g ") {
                        r = rule_line(rng, chain, &["-j RETURN".to_owned()]);
                    }
                    rules.push(r);
                }
            }
            &["J6", "K6"]
        } else {
            &[]
        };
        out.push_str(&block(rng, table, None, users, &rules));
    }
    out
}

/// The IPv6 corpus: ip6tables-restore files (`generated` for ip6tables),
/// each loadable with Linux's `ip6tables-restore`.
pub fn generated6() -> Vec<(String, String)> {
    let mut rng = Rng::new(0x0006_0006_1b7a_b1e5);
    (1..=6)
        .map(|i| (format!("gen6-{i}"), ipv6_file(&mut rng, 2 + i)))
        .collect()
}

/// The number of `-A` rules in an iptables-restore file.
pub fn rule_count(text: &str) -> usize {
    text.lines()
        .map(|l| {
            let l = l.trim_start();
            let l = if l.starts_with('[') {
                l.split_once(']').map_or(l, |(_, rest)| rest.trim_start())
            } else {
                l
            };
            if !l.starts_with("-A ") {
                return 0;
            }
            // `-s a,b -d c,d`: one rule per source and destination pair.
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(2)
                .filter(|w| w[0] == "-s" || w[0] == "-d")
                .map(|w| w[1].split(',').count())
                .product::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic() {
        assert_eq!(generated(), generated());
    }

    #[test]
    fn corpus_has_a_few_hundred_rules() {
        let files = generated();
        assert!((6..=12).contains(&files.len()), "{} files", files.len());
        let total: usize = files.iter().map(|(_, t)| rule_count(t)).sum();
        assert!((200..=1500).contains(&total), "{total} rules");
    }

    #[test]
    fn corpus_covers_every_feature() {
        let all: String = generated().into_iter().map(|(_, t)| t).collect();
        let must = [
            "! -s ",
            "! -d ",
            "-s 10.0.0.0/255.0.255.0",
            "! -p ",
            "-p 47",
            "-p gre",
            "-p all",
            "! -i ",
            "! -o ",
            "-i eth+",
            "-o eth+",
            "-g ",
            "-j RETURN",
            "! --sport ",
            "! --dport ",
            "--dport :1023",
            "--dport 1024:",
            "--sport ssh",
            "-m tcp",
            "-m udp",
            "! --tcp-flags",
            "--tcp-flags ALL NONE",
            "! --syn",
            " --syn",
            "-m icmp",
            "! --icmp-type",
            "--icmp-type 3/4",
            "--icmp-type any",
            "--sports",
            "--dports",
            "--ports",
            "! --dports",
            "! --ctstate",
            "--ctstate SNAT",
            "! --state",
            "--comment \"",
            "! --dscp ",
            "--dscp-class",
            "! --mark",
            "--limit-burst",
            "/second",
            "/minute",
            "/day",
            "! --src-range",
            "! --dst-range",
            "--reject-with tcp-reset",
            "--reject-with icmp-admin-prohibited",
            "--log-prefix",
            "--log-level debug",
            "--log-level 7",
            "-j MASQUERADE --to-ports",
            "--random-fully",
            "--random\n",
            "--to-source 198.51.100.1:",
            "--to-destination 10.9.8.7:",
            "-j REDIRECT --to-ports",
            "--set-dscp-class",
            "--set-dscp ",
            "-j NOTRACK",
            "-j CT --notrack",
            "--set-xmark",
            "--set-mark 0x10/0xf0",
            "[5:300] -A",
            "-A INPUT\n",
            "-m length ! --length",
            "--length :",
            "-m ttl ! --ttl-eq",
            "--ttl-gt",
            "-m tos ! --tos",
            "-j TTL --ttl-inc",
            "-j TOS --xor-tos",
            "-j TOS --set-tos Minimize-",
            "-m connmark ! --mark",
            "-j CONNMARK --save-mark --nfmask",
            "-j CONNMARK --restore-mark --mask",
            "-j CONNMARK --nfmask",
            "-j CONNMARK --or-mark",
            "-j TCPMSS --clamp-mss-to-pmtu",
            "-j TCPMSS --set-mss ",
            "-m addrtype ! --src-type",
            "-m recent ! --",
            "-m connlimit ! --connlimit-upto",
            "--connlimit-daddr",
            "--connlimit-mask 8",
            "-m hashlimit ! --hashlimit-",
            "--hashlimit-mode srcip,dstport",
            "--hashlimit-htable-expire",
            "--hashlimit-srcmask",
            "! --ctexpire",
            "--reap",
            "--rttl",
            "--rdest",
            "--limit-iface-in",
            "--limit-iface-out",
        ];
        for m in must {
            assert!(all.contains(m), "the corpus lacks {m:?}");
        }
    }

    #[test]
    fn corpus_stays_inside_netfilter_rules() {
        for (name, text) in generated() {
            let mut table = "";
            for line in text.lines() {
                if let Some(t) = line.strip_prefix('*') {
                    table = t;
                }
                let Some((_, rule)) = line.split_once("-A ") else {
                    continue;
                };
                let chain = rule.split(' ').next().unwrap_or_default();
                let padded = format!(" {rule} ");
                if matches!(chain, "INPUT" | "PREROUTING") {
                    assert!(!padded.contains(" -o "), "{name}: {line}");
                }
                if matches!(chain, "OUTPUT" | "POSTROUTING") {
                    assert!(!padded.contains(" -i "), "{name}: {line}");
                }
                let only_in = [
                    ("-j MASQUERADE", "nat"),
                    ("-j SNAT", "nat"),
                    ("-j DNAT", "nat"),
                    ("-j REDIRECT", "nat"),
                    ("-j REJECT", "filter"),
                    ("-j DSCP", "mangle"),
                    ("-j TTL", "mangle"),
                    ("-j TOS", "mangle"),
                    ("-j NOTRACK", "raw"),
                    ("-j CT", "raw"),
                ];
                for (target, home) in only_in {
                    if padded.contains(&format!(" {target} ")) {
                        assert_eq!(table, home, "{name}: {line}");
                    }
                }
                // Forms that iptables-nft saves with another meaning.
                assert!(!padded.contains("--tcp-flags NONE"), "{name}: {line}");
                assert!(!padded.contains("! --dport 0:65535"), "{name}: {line}");
                assert!(!padded.contains("! --sport 0:65535"), "{name}: {line}");
            }
        }
    }
}
