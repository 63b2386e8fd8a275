//! Failover of a gateway pair on keepalived with conntrack state sync (the
//! lab of `xdpgw_lab::ha_pair`): a TCP stream (every byte checked, both
//! ways, 400 KB/s) and a numbered UDP stream (500 datagrams/s) from the
//! client to the server run through the master, node a; then node a fails
//! and node b takes over:
//!
//! - the TCP stream goes on without a reset and without a lost byte (half
//!   a second of it through node a, then through node b),
//! - the UDP stream loses only the datagrams of the failover window (no
//!   datagram is lost outside a silence, and datagrams flow again),
//! - node b's table lists the connection with its NAT (to the WAN VIP).
//!
//! Each test prints its figures (`figures: ...`): the time from the
//! failure to node b's notify script (`takeover`), to the first datagram
//! through node b (`first_datagram`), the datagrams lost, and the TCP
//! stream's longest stall. A TCP download and a UDP exchange started right
//! after the failure must succeed (once node b took over); their times are
//! printed too. No assertion is on a time. The README's table
//! ("Failover: a pair on keepalived") has these figures side by side.
//!
//! The pairs: Linux (kernel forwarding, iptables, conntrackd; the
//! reference), xdpgw (`xdpgw run` with `[sync]`, keepalived on its host
//! path devices), and mixed both ways (conntrackd and xdpgw's sync
//! interoperating). The failures: the master's machine dies (keepalived
//! stopped and killed, the sync daemon and the gateway killed, links down);
//! its `xdpgw run` is killed (SIGKILL; its keepalived, left without its
//! devices, goes to FAULT); its keepalived is stopped (a graceful
//! handover). The nodes SNAT to the WAN VIP, with their own WAN addresses
//! in the server's subnet; a Linux pair also MASQUERADEs, with its own WAN
//! addresses in another subnet (an xdpgw node has no route to the server
//! then: it adds none for a VIP's subnet).
//!
//! About a minute for the file: each failover waits for keepalived's
//! master-down interval (3-4 s with `advert_int 1`), each lab for its
//! first master as long.

use std::time::Duration;

use xdpgw_vm_tests::lab::ha_pair::{
    Nat, NodeKind, Pair, PairConfig, CLIENT, LAN_VIP, SERVER, WAN_VIP,
};
use xdpgw_vm_tests::{require_root_with, tools_binary, xdpgw_binary};

/// The longest wait for any one step (a takeover takes 3-4 s).
const WAIT: Duration = Duration::from_secs(30);
const TCP_PORT: &str = "9000";
const UDP_PORT: &str = "9001";
/// The servers of the connections opened during the failover.
const GAP_TCP_PORT: &str = "9002";
const GAP_UDP_PORT: &str = "9003";
/// Half a second of the TCP stream (4096 bytes every 10 ms).
const STREAMED: u64 = 200_000;

/// How node a fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Its machine dies: keepalived, the sync daemon and the gateway killed,
    /// its links down.
    PowerOff,
    /// `xdpgw run` is killed (SIGKILL); keepalived keeps running there.
    KillXdpgw,
    /// keepalived is stopped (SIGTERM); the gateway keeps running.
    StopKeepalived,
}

/// What a failover cost.
#[derive(Debug)]
struct Figures {
    /// From the failure to node b's notify script starting, ms.
    takeover: u64,
    /// From the failure to the first datagram after the silence, ms (None:
    /// no silence over 100 ms).
    first_datagram: Option<u64>,
    sent: u64,
    lost: u64,
    /// The TCP stream's longest exchange, ms (None: none over 200 ms).
    stall: Option<f64>,
    /// Bytes the stream sent and got back, checked.
    bytes: u64,
    /// How long a TCP download and a UDP exchange started right after the
    /// failure took to succeed, ms.
    new_tcp: u64,
    new_udp: u64,
}

/// Starts the traffic tool client `args` in the client's namespace and
/// waits for its result line on a thread of its own; the join handle
/// gives the line and how long it took.
fn timed(pair: &Pair, args: &[&str]) -> std::thread::JoinHandle<(String, Duration)> {
    let began = std::time::Instant::now();
    let mut p = pair.tool(pair.client(), args);
    std::thread::spawn(move || {
        let line = p.wait_line("a result", WAIT, |_| true);
        (line, began.elapsed())
    })
}

/// The value of `key=` in a tool's line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in '{line}'"))
}

fn number<T: std::str::FromStr>(line: &str, key: &str) -> T {
    let v = field(line, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key}={v} in '{line}' is not a number"))
}

/// Polls `list` until a line has all `needles`; that line.
fn wait_for(what: &str, needles: &[&str], list: impl Fn() -> Vec<String>) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lines = list();
        if let Some(l) = lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no line with {needles:?} in {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The MAC address of `dev` in `ns`.
fn mac(pair: &Pair, node: usize, dev: &str) -> String {
    let out = pair
        .node(node)
        .ns()
        .exec_ok(&["cat", &format!("/sys/class/net/{dev}/address")]);
    out.trim().to_owned()
}

/// Waits until `ns`'s neighbour entry for `ip` has `lladdr`.
fn wait_neighbour(ns: &xdpgw_vm_tests::Netns, ip: &str, lladdr: &str) {
    wait_for(&format!("{ip} at {lladdr}"), &[lladdr], || {
        ns.exec_ok(&["ip", "neigh", "show", ip])
            .lines()
            .map(str::to_owned)
            .collect()
    });
}

/// A failover to run.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    /// Names it in the figures.
    label: &'static str,
    nodes: [NodeKind; 2],
    failure: Failure,
    /// keepalived's advertisement interval, s.
    advert_int: f64,
    nat: Nat,
}

/// The scenario of the module's documentation.
fn failover(sc: Scenario) {
    let Scenario {
        label,
        nodes,
        failure,
        advert_int,
        nat,
    } = sc;
    if !require_root_with(
        label,
        &["keepalived", "conntrackd", "conntrack", "ethtool", "date"],
    ) {
        return;
    }
    let xdpgw = xdpgw_binary();
    let mut pair = Pair::new(&PairConfig {
        nodes,
        advert_int,
        nat,
        xdpgw: xdpgw.clone(),
        tools: tools_binary(),
    });
    let server = SERVER.to_string();
    let mut echo = pair.serve(pair.server(), &["tcp-echo", TCP_PORT]);
    let mut count = pair.serve(pair.server(), &["udp-count", UDP_PORT]);
    let _gap_servers = [
        pair.serve(pair.server(), &["tcp-serve", GAP_TCP_PORT]),
        pair.serve(pair.server(), &["udp-echo", GAP_UDP_PORT]),
    ];
    let mut stream = pair.tool(
        pair.client(),
        &[
            "tcp-stream",
            &server,
            TCP_PORT,
            "1",
            "--bytes",
            "4096",
            "--interval",
            "0.01",
            "--timeout",
            "30",
            "--progress",
            "0.25",
        ],
    );
    stream.wait_line("`streaming` line", WAIT, |l| {
        l.starts_with("streaming connections=1 ")
    });
    let mut send = pair.tool(
        pair.client(),
        &["udp-send", &server, UDP_PORT, "--rate", "500"],
    );
    let sending = send.wait_line("`sending` line", WAIT, |l| l.starts_with("sending"));
    let udp_sport = field(&sending, "local")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    count.wait_line("`receiving` line", WAIT, |l| l.starts_with("receiving"));

    // Half a second of the stream through node a.
    stream.wait_line("the stream's progress", WAIT, |l| {
        l.starts_with("progress ") && number::<u64>(l, "echoed") >= STREAMED
    });

    // Both connections are in node a's table, and node b has them from the
    // sync.
    let tcp_a = wait_for(
        "node a's table",
        &[&format!("dst={SERVER} "), &format!("dport={TCP_PORT} ")],
        || pair.node(0).conntrack_list(&xdpgw),
    );
    let tcp_sport = field(&tcp_a, "sport").to_owned();
    let tcp_orig = format!("src={CLIENT} dst={SERVER} sport={tcp_sport} dport={TCP_PORT} ");
    let udp_orig = format!("src={CLIENT} dst={SERVER} sport={udp_sport} dport={UDP_PORT} ");
    wait_for(
        "node b's external cache",
        &[&tcp_orig, "ESTABLISHED"],
        || pair.node(1).external_cache(&xdpgw),
    );
    wait_for("node b's external cache", &[&udp_orig], || {
        pair.node(1).external_cache(&xdpgw)
    });

    let (lan_mac, wan_mac) = (mac(&pair, 1, "lan0"), mac(&pair, 1, "wan0"));
    let failed = match failure {
        Failure::PowerOff => pair.power_off(0),
        Failure::KillXdpgw => pair.kill_xdpgw(0),
        Failure::StopKeepalived => pair.stop_keepalived(0),
    };
    // Connections opened during the failover.
    let new_tcp = timed(
        &pair,
        &[
            "tcp-get",
            &server,
            GAP_TCP_PORT,
            "100000",
            "--timeout",
            "25",
        ],
    );
    let new_udp = timed(
        &pair,
        &["udp-req", &server, GAP_UDP_PORT, "--timeout", "25"],
    );
    pair.wait_master(1, WAIT);
    if failure == Failure::KillXdpgw {
        // Its host path devices went with it: keepalived there is in FAULT.
        pair.wait_state(0, "fault", WAIT);
    }
    let takeover = pair
        .node(1)
        .transitions()
        .iter()
        .rev()
        .find(|(s, _)| s == "master")
        .map(|(_, t)| t.saturating_sub(failed))
        .expect("node b's notify script ran for master");
    // The client and the server send to node b (its gratuitous ARP).
    wait_neighbour(pair.client(), &LAN_VIP.to_string(), &lan_mac);
    wait_neighbour(pair.server(), &WAN_VIP.to_string(), &wan_mac);
    // Datagrams flow through node b: the first after the silence (a
    // graceful handover may have none).
    if failure != Failure::StopKeepalived {
        count.wait_line("UDP through node b", WAIT, |l| {
            l.starts_with("gap ") && number::<u64>(l, "at_ms") > failed
        });
    }
    // The TCP stream goes on through node b (its stall after the failure
    // is over: the first exchange that completed after it).
    let resumed = if failure == Failure::StopKeepalived {
        0
    } else {
        let stall = stream.wait_line("TCP through node b", WAIT, |l| {
            l.starts_with("stall ") && number::<u64>(l, "at_ms") > failed
        });
        number::<u64>(&stall, "echoed")
    };
    // Half a second of the stream through node b.
    stream.wait_line("the stream's progress through node b", WAIT, |l| {
        l.starts_with("progress ")
            && number::<u64>(l, "at_ms") > failed
            && number::<u64>(l, "echoed") >= resumed + STREAMED
    });

    // Node b's table has both connections, with their NAT to the WAN VIP.
    let table = pair.node(1).conntrack_list(&xdpgw);
    for (orig, port) in [(&tcp_orig, TCP_PORT), (&udp_orig, UDP_PORT)] {
        let line = table
            .iter()
            .find(|l| l.contains(orig.as_str()))
            .unwrap_or_else(|| panic!("node b's table has no {orig}: {table:#?}"));
        let reply = format!("src={SERVER} dst={WAN_VIP} sport={port} dport=");
        assert!(line.contains(&reply), "not NATed to {WAN_VIP}: {line}");
        eprintln!("{label}: node b: {line}");
    }

    send.signal("TERM");
    let sent_line = send.wait_line("`sent` line", WAIT, |l| l.starts_with("sent "));
    let done = count.wait_line("`done` line", WAIT, |l| l.starts_with("done "));
    let gaps: Vec<String> = count
        .lines()
        .iter()
        .filter(|l| l.starts_with("gap "))
        .cloned()
        .collect();
    stream.signal("TERM");
    // The server's side first: a connection it saw reset leaves the
    // client waiting for its echo.
    let closed = echo.wait_line("`closed` line", WAIT, |l| l.starts_with("closed "));
    assert_eq!(
        field(&closed, "result"),
        "ok",
        "{closed}\n{}",
        stream.report()
    );
    let finished = stream.wait(WAIT);
    drop((echo, count));

    // TCP: no reset, every byte back, the server saw them all in order.
    let summary = finished
        .stdout
        .iter()
        .find(|l| l.starts_with("done "))
        .unwrap_or_else(|| panic!("no summary:\n{}", finished.report()));
    let conn = finished
        .stdout
        .iter()
        .find(|l| l.starts_with("conn 0 "))
        .unwrap_or_else(|| panic!("no connection line:\n{}", finished.report()));
    assert_eq!(field(conn, "result"), "ok", "{}", finished.report());
    let bytes: u64 = number(conn, "sent");
    assert_eq!(number::<u64>(conn, "echoed"), bytes, "{conn}");
    assert_eq!(field(summary, "ok"), "1", "{summary}");
    assert_eq!(number::<u64>(&closed, "bytes"), bytes, "{closed}");
    let first_datagram = gaps
        .iter()
        .map(|g| number::<u64>(g, "at_ms"))
        .find(|t| *t > failed)
        .map(|t| t - failed);
    let stall = finished
        .stdout
        .iter()
        .filter(|l| l.starts_with("stall "))
        .map(|l| number::<f64>(l, "ms"))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));

    // UDP: every datagram lost was in a silence, none duplicated; a
    // stream that never came back would have lost its tail without a gap
    // line.
    let sent: u64 = number(&sent_line, "packets");
    assert_eq!(number::<u64>(&done, "expected"), sent, "{done}");
    let lost: u64 = number(&done, "lost");
    // (Datagrams of a silence may still come, late: queued while the
    // client resolved the LAN VIP again.)
    let in_gaps: u64 = gaps.iter().map(|g| number::<u64>(g, "missing")).sum();
    assert!(
        lost <= in_gaps,
        "datagrams lost outside a silence: {done}\n{gaps:#?}"
    );
    assert_eq!(number::<u64>(&done, "duplicates"), 0, "{done}");

    // The connections opened during the failover succeed once node b
    // took over.
    let (tcp_line, new_tcp) = new_tcp.join().expect("the TCP download's waiter");
    assert!(tcp_line.starts_with("ok bytes=100000 "), "{tcp_line}");
    let (udp_line, new_udp) = new_udp.join().expect("the UDP exchange's waiter");
    assert!(udp_line.starts_with("ok "), "{udp_line}");

    let f = Figures {
        takeover,
        first_datagram,
        sent,
        lost,
        stall,
        bytes,
        new_tcp: new_tcp.as_millis() as u64,
        new_udp: new_udp.as_millis() as u64,
    };
    report(&sc, &f);
}

/// Prints the figures where `cargo test` shows them (stderr, uncaptured).
fn report(sc: &Scenario, f: &Figures) {
    use std::io::Write as _;
    let first = f.first_datagram.map_or_else(
        || "- (no silence over 100 ms)".to_owned(),
        |t| format!("{t} ms"),
    );
    let stall = f
        .stall
        .map_or_else(|| "<200 ms".to_owned(), |s| format!("{s:.0} ms"));
    let _ = writeln!(
        std::io::stderr(),
        "figures: {} (advert_int {}, {:?}): takeover {} ms, first datagram {first}, \
         UDP lost {} of {} ({:.2} s at 500/s), TCP longest stall {stall}, {} bytes checked, \
         no reset; opened during the failover: TCP after {} ms, UDP after {} ms",
        sc.label,
        sc.advert_int,
        sc.nat,
        f.takeover,
        f.lost,
        f.sent,
        f.lost as f64 / 500.0,
        f.bytes,
        f.new_tcp,
        f.new_udp
    );
}

#[test]
fn linux_pair_master_powered_off() {
    failover(Scenario {
        label: "linux_pair_master_powered_off",
        nodes: [NodeKind::Linux, NodeKind::Linux],
        failure: Failure::PowerOff,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}

#[test]
fn linux_pair_master_keepalived_stopped() {
    failover(Scenario {
        label: "linux_pair_master_keepalived_stopped",
        nodes: [NodeKind::Linux, NodeKind::Linux],
        failure: Failure::StopKeepalived,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}

/// The same with MASQUERADE: the nodes' own WAN addresses in another
/// subnet than the VIP's, which MASQUERADE then takes.
#[test]
fn linux_pair_masquerade_master_powered_off() {
    failover(Scenario {
        label: "linux_pair_masquerade_master_powered_off",
        nodes: [NodeKind::Linux, NodeKind::Linux],
        failure: Failure::PowerOff,
        advert_int: 1.0,
        nat: Nat::Masquerade,
    });
}

/// With MASQUERADE a Linux master drops the connections it masqueraded
/// to the VIP when keepalived removes it (`masq_inet_event`).
#[test]
fn linux_pair_masquerade_master_keepalived_stopped() {
    failover(Scenario {
        label: "linux_pair_masquerade_master_keepalived_stopped",
        nodes: [NodeKind::Linux, NodeKind::Linux],
        failure: Failure::StopKeepalived,
        advert_int: 1.0,
        nat: Nat::Masquerade,
    });
}

#[test]
fn xdpgw_pair_master_xdpgw_killed() {
    failover(Scenario {
        label: "xdpgw_pair_master_xdpgw_killed",
        nodes: [NodeKind::Xdpgw, NodeKind::Xdpgw],
        failure: Failure::KillXdpgw,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}

#[test]
fn xdpgw_pair_master_keepalived_stopped() {
    failover(Scenario {
        label: "xdpgw_pair_master_keepalived_stopped",
        nodes: [NodeKind::Xdpgw, NodeKind::Xdpgw],
        failure: Failure::StopKeepalived,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}

/// The same with keepalived advertising every 0.3 s (VRRP version 3): the
/// master is declared down after about 1 s.
#[test]
fn xdpgw_pair_master_xdpgw_killed_fast_adverts() {
    failover(Scenario {
        label: "xdpgw_pair_master_xdpgw_killed_fast_adverts",
        nodes: [NodeKind::Xdpgw, NodeKind::Xdpgw],
        failure: Failure::KillXdpgw,
        advert_int: 0.3,
        nat: Nat::SnatToVip,
    });
}

/// A mixed pair: a Linux master (kernel and conntrackd) fails over to an
/// xdpgw backup, which takes the connections from conntrackd's sync.
#[test]
fn mixed_pair_linux_master_powered_off() {
    failover(Scenario {
        label: "mixed_pair_linux_master_powered_off",
        nodes: [NodeKind::Linux, NodeKind::Xdpgw],
        failure: Failure::PowerOff,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}

/// The roles reversed: an xdpgw master fails over to a Linux backup, which
/// commits xdpgw's sync into the kernel's table (`conntrackd -c`).
#[test]
fn mixed_pair_xdpgw_master_xdpgw_killed() {
    failover(Scenario {
        label: "mixed_pair_xdpgw_master_xdpgw_killed",
        nodes: [NodeKind::Xdpgw, NodeKind::Linux],
        failure: Failure::KillXdpgw,
        advert_int: 1.0,
        nat: Nat::SnatToVip,
    });
}
