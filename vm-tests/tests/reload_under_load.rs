//! Proof that a reload loses nothing (issue 5): 100 TCP connections stream
//! and a numbered UDP stream flows through `xdpgw run` (the lab with
//! conf/gateway.toml) while the gateway reloads 100 times between two rule
//! sets that both allow those flows (conf/gateway.rules, and a variant with
//! rules added to several tables and chains and another LOG prefix), with
//! `xdpgw reload --rules FILE` and now and then SIGHUP, and refuses a few
//! files with errors in between. Then:
//!
//! - every TCP connection lived to the end: no reset, no timeout, every
//!   byte echoed back and checked, the server saw each close cleanly with
//!   the same byte count;
//! - no UDP datagram was lost, duplicated or seen from another address;
//! - the conntrack table (`xdpgw conntrack -L`) still held the 100
//!   connections as ESTABLISHED after the last reload, with the clients'
//!   ports;
//! - no packet was lost by the gateway and no rule count was lost by a
//!   reload: the packets the client and the server sent (their kernels'
//!   `Ip: OutRequests`) equal the packets the two accepting FORWARD rules
//!   counted, rules that were in force throughout but were reloaded 100
//!   times (their counters carried over each time), and equal the packets
//!   the two hosts received (`Ip: InDelivers`); the rules that drop counted
//!   nothing, and the gateway dropped nothing.
//!
//! Two of the reloads to the variant load it with 100,000 more FORWARD
//! rules before the accepting ones (a blocklist of sources the traffic
//! does not have): the same proof holds across them, the traffic keeps
//! flowing while they are in force, and the time they took to be in force
//! is printed. (20,000 with a debug build of xdpgw, as `cargo test` makes
//! it: parsing 100,000 rules there takes 1.5 s of a core, and on the
//! 2-core machine the starved UDP sink then overflows its socket buffer;
//! `XDPGW_BIN=target/release/xdpgw` gets the 100,000.)
//!
//! Rates are modest on purpose (100 × 1 KiB every 20 ms echoed back, 2,000
//! datagrams a second; together about 20,000 packets a second through the
//! gateway): the machine has 2 cores, and the proof is about reloads, not
//! about overload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use xdpgw_vm_tests::lab::parse::{field, field_number as num};
use xdpgw_vm_tests::lab::WorkDir as TempDir;

use xdpgw_vm_tests::lab::{Backend, Lab, Process, CLIENT, GATEWAY_WAN, SERVER};
use xdpgw_vm_tests::{gateway_lab, require_root_with, workspace_dir, xdpgw_binary, Netns};

const CONNECTIONS: usize = 100;
const RELOADS: usize = 100;
/// A refused reload (a file with errors) after every this many reloads.
const REFUSED_EVERY: usize = 25;
/// Every this many reloads, one is a SIGHUP to `xdpgw run` rather than
/// `xdpgw reload`.
const SIGHUP_EVERY: usize = 20;
const TCP_PORT: u16 = 5001;
const UDP_PORT: u16 = 7001;
const UDP_RATE: &str = "2000";

/// The accepting FORWARD rules of conf/gateway.rules, in `save` form: every
/// packet of these flows is accepted by one of them.
const ACCEPT_ESTABLISHED: &str = "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT";
const ACCEPT_LAN: &str = "-A FORWARD -s 192.168.10.0/24 -i lan0 -o wan0 -j ACCEPT";
/// A rule only the variant has, matched by the UDP stream: its counter
/// shows which set is in force.
const VARIANT_MARK: &str =
    "-A PREROUTING -i lan0 -p udp -m udp --dport 7001 -j MARK --set-xmark 0x7/0xffffffff";

/// Rules the large variant adds: 100,000, or 20,000 with a debug build of
/// xdpgw (see the top).
fn large_count() -> usize {
    if cfg!(debug_assertions) && std::env::var_os("XDPGW_BIN").is_none() {
        20_000
    } else {
        100_000
    }
}

/// Whether reload `i` (to the variant) loads the large variant.
fn large_reload(i: usize) -> bool {
    i == 10 || i == 60
}

/// The variant with [`large_count`] DROP rules for sources in 100.64.0.0/10 (the
/// traffic's are in 192.168.10.0/24) before the accepting FORWARD rules.
fn large(variant: &str) -> String {
    let n = large_count();
    let mut block = String::with_capacity(n * 40);
    for k in 0..n as u32 {
        let a = std::net::Ipv4Addr::from(0x6440_0000 + k * 7);
        block.push_str(&format!("-A FORWARD -s {a}/32 -j DROP\n"));
    }
    let at = "-A FORWARD -s 198.51.100.7 -j DROP\n";
    replace(variant, at, &format!("{block}{at}"))
}

/// conf/gateway.rules with `find` replaced by `with`; panics if `find` is
/// not there (conf/gateway.rules changed: adapt the test).
fn replace(text: &str, find: &str, with: &str) -> String {
    assert!(
        text.contains(find),
        "conf/gateway.rules no longer contains '{find}'"
    );
    text.replacen(find, with, 1)
}

/// The variant: the same rules with more rules in raw, mangle, nat and
/// filter (one inserted before the accepting FORWARD rules, so that their
/// counters move to other slots) and another LOG prefix.
fn variant(base: &str) -> String {
    let mut v = base.to_owned();
    v = replace(
        &v,
        "-A PREROUTING -i lan0 -p tcp --dport 22 -j NOTRACK\n",
        "-A PREROUTING -i lan0 -p tcp --dport 22 -j NOTRACK\n\
         -A PREROUTING -i wan0 -p udp --dport 1900 -j NOTRACK\n",
    );
    v = replace(
        &v,
        "-A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46\n",
        "-A PREROUTING -i lan0 -p udp --dport 7001 -j MARK --set-mark 7\n\
         -A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46\n",
    );
    v = replace(
        &v,
        "-A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE\n",
        "-A PREROUTING -i wan0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.10.20:80\n\
         -A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE\n",
    );
    v = replace(
        &v,
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
        "-A FORWARD -s 198.51.100.7 -j DROP\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
    );
    v = replace(
        &v,
        "-A INPUT -j LOG_DROP\n",
        "-A INPUT -i wan0 -p tcp --dport 23 -j DROP\n-A INPUT -j LOG_DROP\n",
    );
    replace(
        &v,
        "--log-prefix \"xdpgw drop: \"",
        "--log-prefix \"xdpgw variant drop: \"",
    )
}

/// A file with two errors, which a reload must refuse.
fn broken(base: &str) -> String {
    let v = replace(base, "--dport 53 -j ACCEPT", "--dport 99999 -j ACCEPT");
    replace(
        &v,
        "-A FORWARD -i lan0 -o wan0 -p tcp --dport 25 -j REJECT",
        "-A FORWARD -i lan0 -o wan0 -p tcp --dport 25 -m frob -j REJECT",
    )
}

/// `xdpgw ARGS... --config CONFIG`, run to its end.
fn xdpgw(config: &Path, args: &[&str]) -> Output {
    Command::new(xdpgw_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run xdpgw")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `xdpgw ARGS...` that must succeed; its stdout.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = xdpgw(config, args);
    assert!(
        out.status.success(),
        "xdpgw {args:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The `[packets:bytes]` packet count of the rule `spec` in `save -c`
/// output; panics if the rule is not there.
fn packets(saved: &str, spec: &str) -> u64 {
    saved
        .lines()
        .find_map(|l| {
            let (counters, rule) = l.split_once("] ")?;
            (rule == spec).then_some(counters)
        })
        .and_then(|c| c.trim_start_matches('[').split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no rule '{spec}' with counters in:\n{saved}"))
}

/// Every rule of `save -c` output with its packet count.
fn rule_packets(saved: &str) -> Vec<(String, u64)> {
    saved
        .lines()
        .filter_map(|l| {
            let (counters, rule) = l.split_once("] ")?;
            let p = counters
                .trim_start_matches('[')
                .split(':')
                .next()?
                .parse()
                .ok()?;
            Some((rule.to_owned(), p))
        })
        .collect()
}

/// A namespace's IPv4 statistics (`/proc/net/snmp`), keyed `Ip:OutRequests`.
fn snmp(ns: &Netns) -> BTreeMap<String, u64> {
    let out = ns.exec_ok(&["cat", "/proc/net/snmp"]);
    let lines: Vec<&str> = out.lines().collect();
    let mut m = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse() {
                m.insert(format!("{group}:{n}"), v);
            }
        }
    }
    m
}

/// What the hosts' kernels counted for the traffic.
#[derive(Debug)]
struct HostCounts {
    sent: u64,
    received: u64,
    client: BTreeMap<String, u64>,
    server: BTreeMap<String, u64>,
}

fn host_counts(lab: &Lab) -> HostCounts {
    let client = snmp(lab.client());
    let server = snmp(lab.server());
    let get = |m: &BTreeMap<String, u64>, k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no {k} in /proc/net/snmp: {m:?}"))
    };
    HostCounts {
        sent: get(&client, "Ip:OutRequests") + get(&server, "Ip:OutRequests"),
        // Delivered, not InReceives: that one also counts frames for other
        // hosts, such as the LAN bridge's own IGMP report.
        received: get(&client, "Ip:InDelivers") + get(&server, "Ip:InDelivers"),
        client,
        server,
    }
}

/// Everything worth seeing when the accounting does not add up.
fn diagnostics(lab: &Lab) -> String {
    let config = lab.config_path();
    let c = host_counts(lab);
    let pick = |m: &BTreeMap<String, u64>| -> String {
        m.iter()
            .filter(|(k, v)| {
                **v != 0 && (k.starts_with("Ip:") || k.starts_with("Udp:") || k.starts_with("Tcp:"))
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "client /proc/net/snmp: {}\nserver /proc/net/snmp: {}\nxdpgw stats:\n{}\nxdpgw save -c:\n{}\nxdpgw conntrack -S:\n{}",
        pick(&c.client),
        pick(&c.server),
        text(&xdpgw(config, &["stats"]).stdout),
        text(&xdpgw(config, &["save", "-c"]).stdout),
        text(&xdpgw(config, &["conntrack", "-S"]).stdout),
    )
}

/// The TCP connections to the echo server in the conntrack table, as
/// (state, client port).
fn tracked_connections(config: &Path) -> Vec<(String, u16)> {
    let out = ok(
        config,
        &["conntrack", "-L", "-p", "tcp", "-s", &CLIENT.to_string()],
    );
    out.lines()
        .filter(|l| l.contains(&format!(" dport={TCP_PORT} ")))
        .map(|l| {
            // ipv4 2 tcp 6 TIMEOUT STATE src=... dst=... sport=P dport=...
            let state = l.split_whitespace().nth(5).unwrap_or("?").to_owned();
            let sport = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("sport="))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no sport= in '{l}'"));
            (state, sport)
        })
        .collect()
}

/// Whether the variant is the set in force (its MARK rule is in the
/// running mangle table).
fn variant_in_force(config: &Path) -> bool {
    ok(config, &["save", "-t", "mangle"])
        .lines()
        .any(|l| l == VARIANT_MARK)
}

/// Reloads `file`; checks the exit status and that the output says the set
/// is in force on every worker; returns the milliseconds it reported.
fn reload(config: &Path, file: &Path) -> f64 {
    let out = ok(config, &["reload", "--rules", &file.display().to_string()]);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("reloaded {}: ", file.display())),
        "reload output: {line}"
    );
    let (_, after) = line
        .split_once("in force on every worker after ")
        .unwrap_or_else(|| panic!("reload output does not say it is in force: {line}"));
    after
        .split_whitespace()
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no time in '{line}'"))
}

/// Tries to reload `file` (with errors): exit status 1, every error as
/// FILE:LINE:COLUMN, and the running set unchanged.
fn refused_reload(config: &Path, file: &Path, variant_expected: bool) {
    let out = xdpgw(config, &["reload", "--rules", &file.display().to_string()]);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a reload of a file with errors must fail with status 1:\n{}{err}",
        text(&out.stdout)
    );
    let prefix = format!("{}:", file.display());
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&prefix) && !l.contains("nothing loaded"))
        .collect();
    assert_eq!(errors.len(), 2, "two errors expected:\n{err}");
    for (e, what) in errors.iter().zip(["99999", "frob"]) {
        let pos: Vec<&str> = e[prefix.len()..].splitn(3, ':').collect();
        assert!(
            pos.len() == 3
                && pos[0].parse::<u32>().is_ok()
                && pos[1].parse::<u32>().is_ok()
                && e.contains(what),
            "not FILE:LINE:COLUMN: ... '{what}': '{e}'\n{err}"
        );
    }
    assert!(
        err.contains("the running rules stay in force"),
        "stderr of the refused reload:\n{err}"
    );
    assert_eq!(
        variant_in_force(config),
        variant_expected,
        "a refused reload changed the rules in force"
    );
}

/// Sends SIGHUP to `xdpgw run`: the only process in the gateway's namespace.
fn sighup_gateway(lab: &Lab) {
    let out = Command::new("ip")
        .args(["netns", "pids", lab.gateway().name()])
        .output()
        .expect("ip netns pids");
    let pids: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "processes in the gateway's namespace (only `xdpgw run` expected): {pids:?}"
    );
    let kill = Command::new("kill")
        .args(["-s", "HUP", &pids[0]])
        .status()
        .expect("kill");
    assert!(kill.success(), "kill -s HUP {}: {kill}", pids[0]);
}

/// Packets between two reloads that the ESTABLISHED rule must count: about
/// 25 ms of the traffic.
const BETWEEN_RELOADS: u64 = 500;

/// The running ESTABLISHED rule's packet count.
fn established_packets(config: &Path) -> u64 {
    packets(
        &ok(config, &["save", "-c", "-t", "filter"]),
        ACCEPT_ESTABLISHED,
    )
}

/// Waits (at most 10 s) until the ESTABLISHED rule counted at least
/// [`BETWEEN_RELOADS`] packets more than `last`; panics if its counter ever
/// reads less than `last` (a reload lost it). Returns the count.
fn wait_for_traffic(config: &Path, last: u64, reloads: usize) -> u64 {
    let start = Instant::now();
    loop {
        let now = established_packets(config);
        assert!(
            now >= last,
            "after {reloads} reloads the ESTABLISHED rule counted {now} packets, {last} before: \
             a reload lost its counter"
        );
        if now >= last + BETWEEN_RELOADS {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "after {reloads} reloads the traffic stopped: the ESTABLISHED rule counted {} \
             packets in 10 s",
            now - last
        );
    }
}

/// Waits for and checks the `closed` lines of the echo server: one per
/// connection, each `ok`; returns the bytes the server echoed.
fn server_closes(echo: &mut Process) -> u64 {
    let mut bytes = 0;
    for i in 0..CONNECTIONS {
        let l = echo.wait_line(
            &format!("`closed` line {}", i + 1),
            Duration::from_secs(30),
            |l| l.starts_with("closed "),
        );
        assert_eq!(field(&l, "result"), "ok", "the echo server: {l}");
        bytes += num(&l, "bytes");
    }
    bytes
}

#[test]
fn reload_under_load_loses_nothing() {
    if !require_root_with(
        "the reload-under-load lab test",
        &["ethtool", "ping", "kill"],
    ) {
        return;
    }
    let dir = TempDir::new("reloadproof");
    let rules_a = workspace_dir().join("conf/gateway.rules");
    let base = std::fs::read_to_string(&rules_a).expect("conf/gateway.rules");
    let rules_b = dir.path().join("variant.rules");
    std::fs::write(&rules_b, variant(&base)).expect("variant rules");
    let rules_large = dir.path().join("large.rules");
    std::fs::write(&rules_large, large(&variant(&base))).expect("large rules");
    let bad = dir.path().join("broken.rules");
    std::fs::write(&bad, broken(&base)).expect("broken rules");

    let mut lab = gateway_lab(Backend::Xdpgw);
    let config = lab.config_path().to_path_buf();
    let server_ip = SERVER.to_string();
    // One ping first, so that the gateway knows both hosts' MAC addresses:
    // the proof is about reloads, not about the burst of 100 SYNs waiting
    // for ARP (a worker holds at most 16 packets while next hops resolve;
    // the rest are dropped as neigh_queue_full and retransmitted). When it
    // is answered, nothing is in flight: the counts start here.
    let warm = lab.ping(lab.client(), SERVER, 1, &[]);
    assert_eq!(warm.received, 1, "ping through the gateway: {warm:?}");
    let before = host_counts(&lab);
    let saved = ok(&config, &["save", "-c", "-t", "filter"]);
    let accepted_before = packets(&saved, ACCEPT_ESTABLISHED) + packets(&saved, ACCEPT_LAN);

    let mut echo = lab.serve(lab.server(), &["tcp-echo", &TCP_PORT.to_string()]);
    let mut counter = lab.serve(lab.server(), &["udp-count", &UDP_PORT.to_string()]);
    let mut stream = lab.tool(
        lab.client(),
        &[
            "tcp-stream",
            &server_ip,
            &TCP_PORT.to_string(),
            &CONNECTIONS.to_string(),
            "--bytes",
            "1024",
            "--interval",
            "0.02",
            "--timeout",
            "10",
        ],
    );
    let ready = stream.wait_line("`streaming` line", Duration::from_secs(60), |l| {
        l.starts_with("streaming ")
    });
    assert_eq!(
        ready,
        format!("streaming connections={CONNECTIONS} failed=0"),
        "the TCP connections through the gateway"
    );
    let mut sender = lab.tool(
        lab.client(),
        &[
            "udp-send",
            &server_ip,
            &UDP_PORT.to_string(),
            "--rate",
            UDP_RATE,
        ],
    );
    let sending = sender.wait_line("`sending` line", Duration::from_secs(30), |l| {
        l.starts_with("sending ")
    });
    let session = field(&sending, "session").to_owned();
    let receiving = counter.wait_line("`receiving` line", Duration::from_secs(30), |l| {
        l.starts_with(&format!("receiving session={session} "))
    });
    // MASQUERADE: the server sees the gateway's address.
    assert!(
        field(&receiving, "peer").starts_with(&format!("{GATEWAY_WAN}:")),
        "{receiving}"
    );
    let tracked = tracked_connections(&config);
    assert_eq!(
        tracked.iter().filter(|(s, _)| s == "ESTABLISHED").count(),
        CONNECTIONS,
        "ESTABLISHED before the reloads: {tracked:?}"
    );

    // The reloads, alternating the variant and the original, with a refused
    // one now and then. Before each, the traffic must have moved on: the
    // ESTABLISHED rule (in both sets, so its counter is carried over by
    // every reload) counted at least BETWEEN_RELOADS more packets. Its
    // counter may never go back.
    let mut established = established_packets(&config);
    let mut took = Vec::with_capacity(RELOADS);
    let mut took_large = Vec::new();
    let mut refused = 0;
    let mut hups = 0;
    for i in 0..RELOADS {
        established = wait_for_traffic(&config, established, i);
        let to_variant = i % 2 == 0;
        let file = match (to_variant, large_reload(i)) {
            (true, true) => &rules_large,
            (true, false) => &rules_b,
            (false, _) => &rules_a,
        };
        if !to_variant && (i + 1) % SIGHUP_EVERY == 0 {
            // SIGHUP reloads the configuration's file: conf/gateway.rules.
            sighup_gateway(&lab);
            let start = Instant::now();
            while variant_in_force(&config) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "SIGHUP (reload {}) did not bring back conf/gateway.rules within 10 s",
                    i + 1
                );
            }
            hups += 1;
        } else if file == &rules_large {
            took_large.push(reload(&config, file));
        } else {
            took.push(reload(&config, file));
        }
        if (i + 1) % REFUSED_EVERY == 0 {
            refused_reload(&config, &bad, to_variant);
            refused += 1;
        }
        if (i + 1) % 10 == 0 {
            assert_eq!(
                variant_in_force(&config),
                to_variant,
                "after reload {}",
                i + 1
            );
        }
    }
    wait_for_traffic(&config, established, RELOADS);
    // The variant's MARK rule counted the UDP stream while in force.
    assert_eq!(RELOADS % 2, 0, "the last reload loads conf/gateway.rules");
    ok(
        &config,
        &["reload", "--rules", &rules_b.display().to_string()],
    );
    let marked =
        |config: &Path| packets(&ok(config, &["save", "-c", "-t", "mangle"]), VARIANT_MARK);
    let start = Instant::now();
    while marked(&config) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the variant's MARK rule never counted the UDP stream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    reload(&config, &rules_a);

    // Still there, still ESTABLISHED, after every reload.
    let tracked = tracked_connections(&config);
    let established_ports: BTreeSet<u16> = tracked
        .iter()
        .filter(|(s, _)| s == "ESTABLISHED")
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(
        established_ports.len(),
        CONNECTIONS,
        "ESTABLISHED after {RELOADS} reloads: {tracked:?}"
    );

    // Stop the traffic; every connection closes cleanly.
    let streamed = stream.stop(Duration::from_secs(60));
    let results: Vec<&String> = streamed
        .stdout
        .iter()
        .filter(|l| l.starts_with("conn "))
        .collect();
    assert_eq!(results.len(), CONNECTIONS, "{}", streamed.report());
    let failed: Vec<&&String> = results
        .iter()
        .filter(|l| field(l, "result") != "ok")
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CONNECTIONS} connections did not survive the reloads:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut client_ports = BTreeSet::new();
    let mut sent_total = 0;
    for l in &results {
        assert_eq!(num(l, "sent"), num(l, "echoed"), "{l}");
        assert!(num(l, "sent") > 0, "{l}");
        sent_total += num(l, "sent");
        let port = field(l, "local")
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no local port in '{l}'"));
        client_ports.insert(port);
    }
    assert!(streamed.status.success(), "{}", streamed.report());
    assert_eq!(
        established_ports, client_ports,
        "the conntrack entries are not the client's connections"
    );
    let echoed_total = server_closes(&mut echo);
    assert_eq!(
        echoed_total, sent_total,
        "the echo server saw a different number of bytes than the clients sent"
    );

    let sent = sender.stop(Duration::from_secs(30));
    assert!(sent.status.success(), "{}", sent.report());
    let sent_line = sent
        .stdout
        .iter()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("no `sent` line:\n{}", sent.report()));
    let datagrams = num(sent_line, "packets");
    assert_eq!(field(sent_line, "errors"), "0", "{sent_line}");
    let done = counter.wait_line("`done` line", Duration::from_secs(30), |l| {
        l.starts_with(&format!("done session={session} "))
    });
    let udp_ok = num(&done, "lost") == 0
        && num(&done, "received") == datagrams
        && num(&done, "duplicates") == 0
        && num(&done, "moved") == 0
        && num(&done, "malformed") == 0
        && num(&done, "expected") == datagrams;
    if !udp_ok {
        // Where: the gateway's rings and drops are in `xdpgw stats`; the
        // receiving socket's overflows in the server's Udp:RcvbufErrors.
        let overflowed =
            |m: &BTreeMap<String, u64>| m.get("Udp:RcvbufErrors").copied().unwrap_or(0);
        let sink = overflowed(&host_counts(&lab).server) - overflowed(&before.server);
        panic!(
            "UDP: {datagrams} datagrams sent; the receiver: {done}\n{sink} of them overflowed the \
             receiving socket's buffer (Udp:RcvbufErrors: lost by the sink, not the gateway)\n{}",
            diagnostics(&lab)
        );
    }

    // Every packet the hosts sent was counted by an accepting FORWARD rule
    // (whose counters went through every reload) and arrived: wait for the
    // last ones (FIN/ACK exchanges) to pass the gateway.
    let start = Instant::now();
    let (hosts, accepted) = loop {
        let hosts = host_counts(&lab);
        let saved = ok(&config, &["save", "-c", "-t", "filter"]);
        let accepted = packets(&saved, ACCEPT_ESTABLISHED) + packets(&saved, ACCEPT_LAN);
        let settled = hosts.sent - before.sent == accepted - accepted_before
            && hosts.received - before.received == accepted - accepted_before;
        if settled || start.elapsed() > Duration::from_secs(10) {
            break (hosts, accepted);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (sent, received, counted) = (
        hosts.sent - before.sent,
        hosts.received - before.received,
        accepted - accepted_before,
    );
    assert!(
        sent == counted && received == counted,
        "the client and server sent {sent} IP packets and received {received}, but the accepting \
         FORWARD rules counted {counted} (waited {:?}): {}\n{}",
        start.elapsed(),
        if sent > counted {
            "packets were lost before the gateway counted them, or a reload lost counts"
        } else if received < counted {
            "packets were lost after the gateway counted them"
        } else {
            "the rules counted packets nobody sent"
        },
        diagnostics(&lab)
    );
    eprintln!(
        "{RELOADS} reloads ({hups} by SIGHUP) and {refused} refused ones under {CONNECTIONS} TCP \
         connections and {UDP_RATE} datagrams/s: {sent_total} bytes echoed, {datagrams} datagrams, {} packets \
         forwarded, none lost; in force after {:.1}-{:.1} ms (median {:.1} ms)",
        accepted - accepted_before,
        took.iter().copied().fold(f64::INFINITY, f64::min),
        took.iter().copied().fold(0.0, f64::max),
        {
            let mut t = took.clone();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        }
    );
    assert_eq!(took_large.len(), 2, "the large variant was loaded twice");
    eprintln!(
        "the variant with {} more rules: in force after {:?} ms",
        large_count(),
        took_large
    );

    // The rules that drop counted nothing; the gateway's exit report agrees.
    let done = lab.stop_gateway().expect("the gateway ran");
    let report = done.stderr.join("\n");
    let final_rules = rule_packets(&report);
    let counted = |spec: &str| {
        final_rules
            .iter()
            .find(|(r, _)| r == spec)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no '{spec}' in the exit report:\n{report}"))
    };
    assert_eq!(
        counted(ACCEPT_ESTABLISHED) + counted(ACCEPT_LAN),
        accepted,
        "exit report:\n{report}"
    );
    for (rule, p) in &final_rules {
        if rule.starts_with("-A FORWARD") && rule.contains("-j DROP")
            || rule.starts_with("-A LOG_DROP")
        {
            assert_eq!(*p, 0, "'{rule}' counted {p} packets:\n{report}");
        }
    }
    // The only frames the gateway may have dropped are those for other
    // hosts and multicast groups (the LAN bridge floods its IGMP report to
    // every port).
    let drops: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.starts_with("#   drop ")
                && !l.starts_with("#   drop not_for_us:")
                && !l.starts_with("#   drop multicast_dst:")
        })
        .collect();
    assert!(drops.is_empty(), "the gateway dropped packets:\n{report}");
}
