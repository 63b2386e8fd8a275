//! Conntrack state sync between xdpgw and the real conntrackd (Debian's
//! conntrack-tools 1.4.7), both ways, over a dedicated link:
//!
//! ```text
//!  Linux gateway lab (kernel NAT + conntrackd)   xdpgw gateway lab (xdpgw run, [sync])
//!    gateway ns: sync0 10.77.0.1/24  ──────────────  gateway ns: sync0 10.77.0.2/24
//! ```
//!
//! Both gateways are dual-stack (the lab's IPv6 plan beside the IPv4 one)
//! and masquerade to 203.0.113.1 and, NAT66, to 2001:db8:113::1 with ports
//! 61000-61099 (so that the NAT changes ports, not only the address).
//!
//! (a) A TCP stream and a UDP exchange of each family through the Linux
//! gateway: they appear in xdpgw's external cache (`xdpgw sync
//! dump-external`) with the reply tuples Linux's table has, and after
//! `xdpgw sync commit` in `xdpgw conntrack -L` (IPv6 ones in its IPv6
//! table), NAT included.
//! (b) The same through xdpgw: they appear in conntrackd's external cache
//! (`conntrackd -e`), and after `conntrackd -c` in the kernel's tables
//! (`conntrack -L`, `conntrack -L -f ipv6`) as xdpgw's tables have them.
//!
//! A committed entry's listing line equals the other table's but for the
//! seconds left, `use=` and /proc's family prefix.
//!
//! Then each asks the other for its whole table (`conntrackd -n`, `xdpgw
//! sync resync`) and gets it; garbage on xdpgw's sync port is counted.

use std::path::Path;
use std::time::{Duration, Instant};

use xdpgw_vm_tests::lab::{veth, Backend, Ipv6Spec, Lab, Netns, Process, WorkDir, SERVER, SERVER6};
use xdpgw_vm_tests::{
    dual_stack_lab_with_rules, require_root_with, restore_text, xdpgw_binary, LAB6_PROGRAMS,
};

/// IPv4's rules.
const RULES: &[(&str, &str)] = &[(
    "nat",
    "-A POSTROUTING -o wan0 -p tcp -j MASQUERADE --to-ports 61000-61099\n\
     -A POSTROUTING -o wan0 -p udp -j MASQUERADE --to-ports 61000-61099",
)];
/// IPv6's: the same NAT66, and the pings masqueraded too.
const RULES6: &[(&str, &str)] = &[(
    "nat",
    "-A POSTROUTING -o wan0 -p tcp -j MASQUERADE --to-ports 61000-61099\n\
     -A POSTROUTING -o wan0 -p udp -j MASQUERADE --to-ports 61000-61099\n\
     -A POSTROUTING -o wan0 -p ipv6-icmp -j MASQUERADE",
)];
const LINUX_SYNC: &str = "10.77.0.1";
const XDPGW_SYNC: &str = "10.77.0.2";
const WAIT: Duration = Duration::from_secs(20);

/// How the pair talks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Udp,
    Multicast,
}

const GROUP: &str = "225.0.0.50";

/// A conntrackd.conf: `mode` over `channel` on sync0 from `local` to
/// `peer`, the lock file and control socket in `dir`, the sync link's own
/// traffic ignored.
fn conntrackd_conf(
    dir: &Path,
    name: &str,
    mode: &str,
    channel: Channel,
    (local, peer): (&str, &str),
) -> std::path::PathBuf {
    let d = dir.display();
    let chan = match channel {
        Channel::Udp => format!(
            "\tUDP {{\n\t\tIPv4_address {local}\n\t\tIPv4_Destination_Address {peer}\n\t\t\
             Port 3780\n\t\tInterface sync0\n\t\tChecksum on\n\t}}\n"
        ),
        Channel::Multicast => format!(
            "\tMulticast {{\n\t\tIPv4_address {GROUP}\n\t\tGroup 3780\n\t\t\
             IPv4_interface {local}\n\t\tInterface sync0\n\t\tChecksum on\n\t}}\n"
        ),
    };
    let text = format!(
        "Sync {{\n\tMode {mode} {{\n\t}}\n{chan}}}\nGeneral {{\n\tHashSize 1024\n\t\
         HashLimit 8192\n\tLogFile {d}/{name}.log\n\tSyslog off\n\tLockFile {d}/{name}.lock\n\t\
         UNIX {{\n\t\tPath {d}/{name}.ctl\n\t}}\n\tFilter From Userspace {{\n\t\t\
         Address Ignore {{\n\t\t\tIPv4_address 127.0.0.1\n\t\t\tIPv4_address 10.77.0.0/24\n\t\t\
         }}\n\t}}\n}}\n"
    );
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).expect("write conntrackd.conf");
    path
}

/// `xdpgw ARGS --config CONFIG`: its stdout lines (it must succeed).
fn xdpgw(lab: &Lab, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(xdpgw_binary())
        .args(args)
        .arg("--config")
        .arg(lab.config_path())
        .output()
        .expect("run xdpgw");
    assert!(
        out.status.success(),
        "xdpgw {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `conntrackd -C CONF ARGS` in `ns`: its stdout lines.
fn conntrackd(ns: &Netns, conf: &Path, args: &[&str]) -> Vec<String> {
    let conf = conf.display().to_string();
    let mut all = vec!["conntrackd", "-C", conf.as_str()];
    all.extend_from_slice(args);
    ns.exec_ok(&all).lines().map(str::to_owned).collect()
}

/// Polls `list` until some line has every one of `needles`; that line.
fn wait_for(what: &str, needles: &[&str], list: impl Fn() -> Vec<String>) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = list();
        if let Some(l) = lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no line with {needles:?} in {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The reply tuple of a listing line: the second `src=... dport=...`,
/// addresses as `inet_ntop` writes them (xdpgw's listing writes IPv6
/// addresses in full, as the kernel's /proc/net/nf_conntrack does).
fn reply_tuple(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let starts: Vec<usize> = words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.starts_with("src="))
        .map(|(i, _)| i)
        .collect();
    assert!(starts.len() >= 2, "no reply tuple in {line}");
    words[starts[1]..starts[1] + 4]
        .iter()
        .map(|w| ntop_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A listing's `src=`/`dst=` word with its address as `inet_ntop` writes
/// it (the kernel's /proc form writes IPv6 addresses in full); others as
/// they are.
fn ntop_word(w: &str) -> String {
    match w.split_once('=') {
        Some((k @ ("src" | "dst"), a)) => match a.parse::<std::net::IpAddr>() {
            Ok(a) => format!("{k}={a}"),
            Err(_) => w.to_owned(),
        },
        _ => w.to_owned(),
    }
}

/// A listing line without what two tables of the same connections differ
/// in: the family prefix of /proc's form (`ipv6     10`), the seconds
/// left, `use=` and `zone=`; addresses as `inet_ntop` writes them.
fn normalised(line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if matches!(words.first(), Some(&"ipv4" | &"ipv6")) {
        words.drain(..2);
    }
    // "tcp 6 SECS ..." / "udp 17 SECS ...": the seconds left go.
    if words.len() > 2 && words[2].parse::<u64>().is_ok() {
        words.remove(2);
    }
    words
        .iter()
        .filter(|w| !w.starts_with("use=") && !w.starts_with("zone="))
        .map(|w| ntop_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The family of a scenario's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn server(self) -> String {
        match self {
            Family::V4 => SERVER.to_string(),
            Family::V6 => SERVER6.to_string(),
        }
    }

    /// The gateway's table of this family, as `conntrack -L [-f ipv6]`.
    fn list(self, lab: &Lab) -> Vec<String> {
        match self {
            Family::V4 => lab.conntrack_list(),
            Family::V6 => lab.conntrack_list6(),
        }
    }
}

/// A TCP stream that stays open and a UDP exchange of `family` from the
/// client through `lab`: the client's ports (TCP, UDP) and the processes
/// to keep.
fn traffic(lab: &Lab, family: Family, tcp_port: u16, udp_port: u16) -> (u16, u16, Vec<Process>) {
    let tp = tcp_port.to_string();
    let up = udp_port.to_string();
    let echo = lab.serve(lab.server(), &["tcp-echo", &tp, "--bind", "::"]);
    let uecho = lab.serve(lab.server(), &["udp-echo", &up, "--bind", "::"]);
    let server = family.server();
    let mut stream = lab.tool(
        lab.client(),
        &["tcp-stream", &server, &tp, "1", "--interval", "0.2"],
    );
    stream.wait_line("`streaming` line", WAIT, |l| l.starts_with("streaming"));
    let udp = lab.tool_result(lab.client(), &["udp-req", &server, &up], WAIT);
    assert!(udp.starts_with("ok local="), "{udp}");
    let udp_sport: u16 = udp
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("udp-req's local port");
    // The TCP client's port, from the gateway's table.
    let tcp_line = wait_for("the TCP entry", &[&format!("dport={tcp_port} ")], || {
        family.list(lab)
    });
    let sport = tcp_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sport="))
        .and_then(|p| p.parse().ok())
        .expect("a source port");
    (sport, udp_sport, vec![stream, echo, uecho])
}

/// The scenario of the module's documentation. xdpgw reads its side from
/// `[sync]`, or (`xdpgw_conf`) from a conntrackd.conf of its own.
fn sync_both_ways(mode: &str, channel: Channel, xdpgw_conf: bool) {
    let test = format!("sync_conntrackd_{mode}_{channel:?}");
    let mut programs = vec!["conntrackd", "conntrack", "iptables-restore"];
    programs.extend(LAB6_PROGRAMS);
    if !require_root_with(&test, &programs) {
        return;
    }
    let dir = WorkDir::new(&format!("sync-{}", mode.to_lowercase()));
    let (ldir, xdir) = (dir.path().join("linux"), dir.path().join("xdpgw"));
    std::fs::create_dir_all(&ldir).expect("mkdir");
    std::fs::create_dir_all(&xdir).expect("mkdir");
    let rules = restore_text(RULES);
    let sync = if xdpgw_conf {
        let own = conntrackd_conf(&xdir, "xdpgw-side", mode, channel, (XDPGW_SYNC, LINUX_SYNC));
        format!("[sync]\nconntrackd_conf = \"{}\"\n", own.display())
    } else {
        let to = match channel {
            Channel::Udp => format!("peer = \"{LINUX_SYNC}\""),
            Channel::Multicast => format!("multicast_group = \"{GROUP}\""),
        };
        format!(
            "[sync]\nmode = \"{}\"\ninterface = \"sync0\"\naddress = \"{XDPGW_SYNC}\"\n{to}\n\
             port = 3780\n",
            mode.to_lowercase()
        )
    };
    let v6 = Ipv6Spec::new(restore_text(RULES6));
    let lab = |dir: &Path, backend, extra: &str| {
        dual_stack_lab_with_rules(dir, backend, Some(&rules), &v6, extra)
            .unwrap_or_else(|e| panic!("{test}: {e}"))
    };
    let linux = lab(&ldir, Backend::Linux, "");
    let mut x = lab(&xdir, Backend::Xdpgw, &sync);
    veth(linux.gateway(), "sync0", x.gateway(), "sync0");
    for (ns, addr) in [(linux.gateway(), LINUX_SYNC), (x.gateway(), XDPGW_SYNC)] {
        ns.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "sync0"]);
        ns.exec_ok(&["ip", "link", "set", "sync0", "up"]);
    }
    // xdpgw opens its sync socket once the address is there.
    x.wait_gateway_stderr("the sync's `open` line", WAIT, |l| {
        l.contains("sync: sync0 10.77.0.2:3780 open")
    });
    let conf = conntrackd_conf(&ldir, "conntrackd", mode, channel, (LINUX_SYNC, XDPGW_SYNC));
    let ctd_conf = conf.display().to_string();
    let mut ctd = linux
        .gateway()
        .spawn(&["conntrackd", "-C", ctd_conf.as_str()]);
    ctd.wait_line("conntrackd's start", WAIT, |l| {
        l.contains("initialization completed")
    });

    let find = |lines: &[String], needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no '{needle}' in {lines:#?}"))
    };
    // The gateway's outside address of each family, as replies go to it.
    let outside = |f: Family| match f {
        Family::V4 => "src={s} dst=203.0.113.1 sport={p} dport=610",
        Family::V6 => "src={s} dst=2001:db8:113::1 sport={p} dport=610",
    };
    let families = [(Family::V4, 0), (Family::V6, 10)];
    // A ping6 from the client through `lab`: its entry in the gateway's
    // IPv6 table (not the echo with id `other`, which a commit put there)
    // and its `id=`.
    let echo6 = |lab: &Lab, other: &str| {
        let ping = lab.ping6(lab.client(), SERVER6, 1, &[]);
        assert_eq!(ping.replies.len(), 1, "{ping:?}");
        let table = Family::V6.list(lab);
        let line = table
            .iter()
            .find(|l| l.contains("type=128 ") && !l.contains(&format!("{other} ")))
            .cloned()
            .unwrap_or_else(|| panic!("no echo in {table:#?}"));
        let id = line
            .split_whitespace()
            .find(|w| w.starts_with("id="))
            .expect("an id")
            .to_owned();
        (line, id)
    };

    // (a) Through Linux: into xdpgw's external cache, then its tables.
    let mut keep = Vec::new();
    let mut flows = Vec::new();
    for (f, off) in families {
        let (tp, up) = (8400 + off, 8401 + off);
        let (tcp_sport, udp_sport, k) = traffic(&linux, f, tp, up);
        keep.extend(k);
        let kernel = f.list(&linux);
        let tcp_k = find(&kernel, &format!("sport={tcp_sport} dport={tp} "));
        let udp_k = find(&kernel, &format!("sport={udp_sport} dport={up} "));
        let want = outside(f)
            .replace("{s}", &f.server())
            .replace("{p}", &tp.to_string());
        assert!(reply_tuple(&tcp_k).starts_with(&want), "{tcp_k}");
        let tcp_x = wait_for(
            "xdpgw's external cache",
            &[&format!("sport={tcp_sport} dport={tp} "), "ESTABLISHED"],
            || xdpgw(&x, &["sync", "dump-external"]),
        );
        let udp_x = wait_for(
            "xdpgw's external cache",
            &[&format!("sport={udp_sport} dport={up} ")],
            || xdpgw(&x, &["sync", "dump-external"]),
        );
        assert_eq!(reply_tuple(&tcp_x), reply_tuple(&tcp_k), "{tcp_x}\n{tcp_k}");
        assert_eq!(reply_tuple(&udp_x), reply_tuple(&udp_k), "{udp_x}\n{udp_k}");
        eprintln!("(a) {f:?} Linux:    {tcp_k}\n    {udp_k}\n(a) external: {tcp_x}\n    {udp_x}");
        flows.push((f, tp, up, tcp_sport, udp_sport, tcp_k, udp_k));
    }
    let (echo_k, echo_id) = echo6(&linux, "-");
    wait_for(
        "xdpgw's external cache",
        &["icmpv6", "type=128 ", &format!("{echo_id} ")],
        || xdpgw(&x, &["sync", "dump-external"]),
    );
    let committed = xdpgw(&x, &["sync", "commit"]);
    assert!(committed[0].starts_with("committed "), "{committed:?}");
    let echo_t = wait_for(
        "the committed echo",
        &["type=128 ", &format!("{echo_id} ")],
        || Family::V6.list(&x),
    );
    assert_eq!(
        normalised(&echo_t),
        normalised(&echo_k),
        "{echo_t}\n{echo_k}"
    );
    for (f, tp, up, tcp_sport, udp_sport, tcp_k, udp_k) in &flows {
        let table = f.list(&x);
        let tcp_t = find(&table, &format!("sport={tcp_sport} dport={tp} "));
        let udp_t = find(&table, &format!("sport={udp_sport} dport={up} "));
        eprintln!("(a) {f:?} xdpgw:    {tcp_t}\n    {udp_t}");
        assert!(
            tcp_t.contains("ESTABLISHED") && tcp_t.contains("[ASSURED]"),
            "{tcp_t}"
        );
        assert_eq!(normalised(&tcp_t), normalised(tcp_k), "{tcp_t}\n{tcp_k}");
        assert_eq!(normalised(&udp_t), normalised(udp_k), "{udp_t}\n{udp_k}");
    }

    // (b) Through xdpgw: into conntrackd's external cache, then the kernel's.
    let mut flows = Vec::new();
    for (f, off) in families {
        let (tp, up) = (8500 + off, 8501 + off);
        let (tcp_sport, udp_sport, k) = traffic(&x, f, tp, up);
        keep.extend(k);
        let table = f.list(&x);
        let tcp_x = find(&table, &format!("sport={tcp_sport} dport={tp} "));
        let udp_x = find(&table, &format!("sport={udp_sport} dport={up} "));
        wait_for(
            "conntrackd's external cache",
            &[&format!("sport={tcp_sport} dport={tp} "), "ESTABLISHED"],
            || conntrackd(linux.gateway(), &conf, &["-e"]),
        );
        wait_for(
            "conntrackd's external cache",
            &[&format!("sport={udp_sport} dport={up} ")],
            || conntrackd(linux.gateway(), &conf, &["-e"]),
        );
        flows.push((f, tp, up, tcp_sport, udp_sport, tcp_x, udp_x));
    }
    let (echo_x, echo_id) = echo6(&x, &echo_id);
    wait_for(
        "conntrackd's external cache",
        &["type=128 ", &format!("{echo_id} ")],
        || conntrackd(linux.gateway(), &conf, &["-e"]),
    );
    // What xdpgw committed from conntrackd in (a) is not sent back.
    let ext = conntrackd(linux.gateway(), &conf, &["-e"]);
    assert!(
        !ext.iter()
            .any(|l| l.contains("dport=8400 ") || l.contains("dport=8410 ")),
        "{ext:#?}"
    );
    conntrackd(linux.gateway(), &conf, &["-c"]);
    for (f, tp, up, tcp_sport, udp_sport, tcp_x, udp_x) in &flows {
        let kernel = f.list(&linux);
        let tcp_k = find(&kernel, &format!("sport={tcp_sport} dport={tp} "));
        let udp_k = find(&kernel, &format!("sport={udp_sport} dport={up} "));
        eprintln!("(b) {f:?} xdpgw:    {tcp_x}\n    {udp_x}\n(b) Linux:    {tcp_k}\n    {udp_k}");
        assert!(tcp_k.contains("ESTABLISHED"), "{tcp_k}");
        assert_eq!(normalised(&tcp_k), normalised(tcp_x), "{tcp_k}\n{tcp_x}");
        assert_eq!(normalised(&udp_k), normalised(udp_x), "{udp_k}\n{udp_x}");
        let want = outside(*f)
            .replace("{s}", &f.server())
            .replace("{p}", &tp.to_string());
        assert!(reply_tuple(&tcp_k).starts_with(&want), "{tcp_k}");
    }
    let echo_k = find(
        &Family::V6.list(&linux),
        &format!("type=128 code=0 {echo_id} "),
    );
    eprintln!("(b) ICMPv6 xdpgw: {echo_x}\n(b) Linux:    {echo_k}");
    assert_eq!(
        normalised(&echo_k),
        normalised(&echo_x),
        "{echo_k}\n{echo_x}"
    );
    let (tcp_sport, tcp_sport6) = (flows[0].3, flows[1].3);

    // conntrackd asks xdpgw for its table (`conntrackd -n`): xdpgw answers
    // with the whole table (its bulk counter), which conntrackd takes.
    conntrackd(linux.gateway(), &conf, &["-n"]);
    wait_for("xdpgw's answer to a resync", &["bulks 1 "], || {
        xdpgw(&x, &["sync", "stats"])
    });
    for (sport, dport) in [(tcp_sport, 8500), (tcp_sport6, 8510)] {
        wait_for(
            "the answer in conntrackd's cache",
            &[&format!("sport={sport} dport={dport} ")],
            || conntrackd(linux.gateway(), &conf, &["-e"]),
        );
    }

    // A resync request: conntrackd answers with its table (the TCP
    // entries of (a) again, both families).
    xdpgw(&x, &["sync", "flush"]);
    assert!(xdpgw(&x, &["sync", "dump-external"]).is_empty());
    xdpgw(&x, &["sync", "resync"]);
    for dport in ["dport=8400 ", "dport=8410 "] {
        wait_for("the resync's answer", &[dport], || {
            xdpgw(&x, &["sync", "dump-external"])
        });
    }
    let metrics = xdpgw(&x, &["metrics"]);
    let received = metrics
        .iter()
        .find_map(|l| l.strip_prefix("xdpgw_sync_messages_total{direction=\"received\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the sync's metrics");
    assert!(received > 0, "{metrics:?}");
    let stats = xdpgw(&x, &["sync", "stats"]).join("\n");
    eprintln!("{stats}");
    assert!(stats.contains("malformed 0 "), "{stats}");
    // Garbage on the sync port (a message of another protocol version) is
    // counted, and changes nothing.
    let to = match channel {
        Channel::Udp => XDPGW_SYNC,
        Channel::Multicast => GROUP,
    };
    let garbage = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('{LINUX_SYNC}')); \
         s.sendto(b'\\x2a\\x00\\x00\\x08' + b'\\xff' * 4, ('{to}', 3780))"
    );
    linux.gateway().exec_ok(&["python3", "-c", &garbage]);
    wait_for("the garbage counted", &["malformed 1 "], || {
        xdpgw(&x, &["sync", "stats"])
    });
    if mode == "FTFW" {
        // conntrackd acknowledges what xdpgw sent (at its next keep-alive).
        wait_for(
            "conntrackd's acknowledgements",
            &["unacknowledged 0 "],
            || xdpgw(&x, &["sync", "stats"]),
        );
    }
    drop(ctd);
}

#[test]
fn sync_with_conntrackd_ftfw() {
    sync_both_ways("FTFW", Channel::Udp, false);
}

/// xdpgw's side from a conntrackd.conf ([sync] conntrackd_conf).
#[test]
fn sync_with_conntrackd_notrack_from_its_conf() {
    sync_both_ways("NOTRACK", Channel::Udp, true);
}

#[test]
fn sync_with_conntrackd_ftfw_multicast() {
    sync_both_ways("FTFW", Channel::Multicast, false);
}
