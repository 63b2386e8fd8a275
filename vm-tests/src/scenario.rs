//! Helpers for end-to-end scenarios that run twice, through Linux (the
//! oracle) and through xdpgw, and compare what they observed.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use crate::lab::{
    parse_tcpdump6_verbose, parse_tcpdump_verbose, skip_notice, CapturedPacket, CapturedPacket6,
    Ipv6Spec,
};
use crate::lab::{Backend, Lab, Process};

use crate::{dual_stack_lab, gateway_lab, require_root_with, LAB6_PROGRAMS, LAB_PROGRAMS};

/// How long a connection attempt that the rules drop is given: a packet
/// that gets through is answered within milliseconds even on a loaded
/// machine.
pub const DROP_WAIT: &str = "4";
/// The tools' timeout where success is expected.
pub const OK_WAIT: &str = "20";
/// The longest any one tool run may take.
pub const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// Runs `scenario` through Linux, checks its observations with `expect`,
/// then (once `xdpgw run` works) through xdpgw, whose observations must
/// equal Linux's.
pub fn on_both_backends<O: Debug + PartialEq>(
    test: &str,
    scenario: impl Fn(&mut Lab) -> O,
    expect: impl Fn(&O),
) {
    on_both_backends_in(test, gateway_lab, scenario, expect);
}

/// [`on_both_backends`] in labs that `lab` builds for a backend (e.g. with
/// another configuration than conf/gateway.toml).
pub fn on_both_backends_in<O: Debug + PartialEq>(
    test: &str,
    lab: impl Fn(Backend) -> Lab,
    scenario: impl Fn(&mut Lab) -> O,
    expect: impl Fn(&O),
) {
    if !require_root_with(test, LAB_PROGRAMS) {
        return;
    }
    let linux = run_on(lab(Backend::Linux), &scenario);
    eprintln!("{test}: Linux observed {linux:?}");
    expect(&linux);
    let xdpgw = run_on(lab(Backend::Xdpgw), &scenario);
    eprintln!("{test}: xdpgw observed {xdpgw:?}");
    assert_eq!(
        xdpgw, linux,
        "{test}: xdpgw (left) and Linux (right) disagree"
    );
    expect(&xdpgw);
}

/// [`on_both_backends`] for a dual-stack scenario: the labs are
/// [`dual_stack_lab`]s of `v6` and the tests also need `programs` (besides
/// [`LAB_PROGRAMS`] and [`LAB6_PROGRAMS`]). A backend that cannot do IPv6
/// yet (xdpgw, until issue 16 lands: `xdpgw_lab::xdpgw_ipv6_support`) is
/// reported with a `skipping:` line naming the test, never passed silently;
/// the Linux run and its expectations still hold.
pub fn on_both_backends6<O: Debug + PartialEq>(
    test: &str,
    programs: &[&str],
    v6: &Ipv6Spec,
    scenario: impl Fn(&mut Lab) -> O,
    expect: impl Fn(&O),
) {
    let mut all = LAB_PROGRAMS.to_vec();
    all.extend(LAB6_PROGRAMS);
    all.extend(programs);
    if !require_root_with(test, &all) {
        return;
    }
    let lab = |backend| dual_stack_lab(backend, v6).unwrap_or_else(|e| panic!("{test}: {e}"));
    let linux = run_on(lab(Backend::Linux), &scenario);
    eprintln!("{test}: Linux observed {linux:?}");
    expect(&linux);
    match dual_stack_lab(Backend::Xdpgw, v6) {
        Err(e) => skip_notice(&format!("{test} through xdpgw (Linux passed): {e}")),
        Ok(lab) => {
            let xdpgw = run_on(lab, &scenario);
            eprintln!("{test}: xdpgw observed {xdpgw:?}");
            assert_eq!(
                xdpgw, linux,
                "{test}: xdpgw (left) and Linux (right) disagree"
            );
            expect(&xdpgw);
        }
    }
}

fn run_on<O>(mut lab: Lab, scenario: &impl Fn(&mut Lab) -> O) -> O {
    let observed = scenario(&mut lab);
    // For xdpgw (unless the scenario read its conntrack table): SIGTERM,
    // and it must exit with status 0.
    lab.stop_gateway();
    observed
}

pub fn ip(a: Ipv4Addr) -> String {
    a.to_string()
}

/// A tool's result line without its `local=` field (an ephemeral port).
pub fn outcome(line: &str) -> String {
    line.split_whitespace()
        .filter(|w| !w.starts_with("local="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `local=IP:PORT` of a tool's result line.
pub fn local(line: &str) -> SocketAddrV4 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("local="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no local=IP:PORT in '{line}'"))
}

/// Stops a lab server and returns every peer it reported, in order.
pub fn peers(server: Process) -> Vec<SocketAddrV4> {
    let done = server.kill();
    done.stdout
        .iter()
        .filter_map(|l| l.strip_prefix("peer="))
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| panic!("bad peer '{p}' ({e}):\n{}", done.report()))
        })
        .collect()
}

/// [`peers`], once the server reported at least `n` (or `TOOL_LIMIT`
/// passed): a client's connect can return before the server's accept loop
/// printed its peer.
pub fn peers_after(mut server: Process, n: usize) -> Vec<SocketAddrV4> {
    for _ in 0..n {
        if server
            .try_wait_line(TOOL_LIMIT, |l| l.starts_with("peer="))
            .is_none()
        {
            break;
        }
    }
    peers(server)
}

/// [`peers_after`] for a server of IPv6 peers (`--bind ::`); panics on an
/// IPv4 one.
pub fn peers6_after(mut server: Process, n: usize) -> Vec<SocketAddrV6> {
    for _ in 0..n {
        if server
            .try_wait_line(TOOL_LIMIT, |l| l.starts_with("peer="))
            .is_none()
        {
            break;
        }
    }
    let done = server.kill();
    done.stdout
        .iter()
        .filter_map(|l| l.strip_prefix("peer="))
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| panic!("bad IPv6 peer '{p}' ({e}):\n{}", done.report()))
        })
        .collect()
}

/// The `local=[IP]:PORT` of a tool's result line over IPv6.
pub fn local6(line: &str) -> SocketAddrV6 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("local="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no local=[IP]:PORT in '{line}'"))
}

pub fn ip6(a: Ipv6Addr) -> String {
    a.to_string()
}

pub fn ips6(peers: &[SocketAddrV6]) -> BTreeSet<Ipv6Addr> {
    peers.iter().map(|p| *p.ip()).collect()
}

/// Waits for a capture (`Lab::capture`) to see its IPv6 packets.
pub fn captured6(capture: Process) -> Vec<CapturedPacket6> {
    let done = capture.wait(Duration::from_secs(60));
    let packets = parse_tcpdump6_verbose(&done.stdout);
    assert!(!packets.is_empty(), "nothing captured:\n{}", done.report());
    packets
}

pub fn ips(peers: &[SocketAddrV4]) -> BTreeSet<Ipv4Addr> {
    peers.iter().map(|p| *p.ip()).collect()
}

/// Waits for a capture (`Lab::capture`) to see its packets.
pub fn captured(capture: Process) -> Vec<CapturedPacket> {
    let done = capture.wait(Duration::from_secs(60));
    let packets = parse_tcpdump_verbose(&done.stdout);
    assert!(!packets.is_empty(), "nothing captured:\n{}", done.report());
    packets
}

/// The gateway's conntrack table, one entry per line in `conntrack -L`
/// form (`tcp 6 117 TIME_WAIT src=... dport=...`): Linux's from
/// `conntrack -L`; xdpgw's from `xdpgw conntrack -L` (its
/// `/proc/net/nf_conntrack` lines).
pub fn conntrack_table(lab: &mut Lab) -> Vec<String> {
    match lab.backend() {
        Backend::Linux => {
            let out = lab.gateway().exec(&["conntrack", "-L"]);
            assert!(
                out.status.success(),
                "conntrack -L failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        }
        // Read at once, as Linux's is (not from the report when it
        // stops: entries in short-lived states, CLOSE after a reset, could
        // expire meanwhile on a loaded machine).
        Backend::Xdpgw => lab
            .conntrack_list()
            .iter()
            // "ipv4     2 tcp      6 ..." -> "tcp      6 ..."
            .filter_map(|l| l.strip_prefix("ipv4"))
            .filter_map(|l| l.trim_start().split_once(' ').map(|(_, e)| e.trim_start()))
            .map(str::to_owned)
            .collect(),
    }
}

/// Entries of `table` for protocol `proto` whose original direction goes
/// to port `dport`.
pub fn entries_to(table: &[String], proto: &str, dport: u16) -> usize {
    let dport = dport.to_string();
    table
        .iter()
        .filter(|e| {
            let mut words = e.split_whitespace();
            words.next() == Some(proto)
                && words.find_map(|w| w.strip_prefix("dport=")) == Some(dport.as_str())
        })
        .count()
}

/// `conntrack -E -s SRC` (`-f ipv6` too for an IPv6 source): conntrack-tools
/// in the gateway's namespace, or `xdpgw conntrack -E` through the control
/// socket. It listens once an event of the ping `ping` sends has shown.
pub fn conntrack_event_listener(lab: &Lab, src: &str, ping: impl Fn()) -> Process {
    let v6 = src.contains(':');
    let mut p = match lab.backend() {
        Backend::Linux => {
            let mut args = vec!["conntrack", "-E", "-s", src];
            if v6 {
                args.extend(["-f", "ipv6"]);
            }
            lab.gateway().spawn(&args)
        }
        Backend::Xdpgw => {
            let mut cmd = std::process::Command::new(crate::xdpgw_binary());
            cmd.args(["conntrack", "-E", "-s", src, "--config"])
                .arg(lab.config_path());
            Process::start(cmd)
        }
    };
    let first = if v6 {
        format!("    [NEW] icmpv6   58 30 src={src} ")
    } else {
        format!("    [NEW] icmp     1 30 src={src} ")
    };
    for _ in 0..10 {
        ping();
        if p.try_wait_line(Duration::from_secs(2), |l| l.starts_with(&first))
            .is_some()
        {
            return p;
        }
    }
    panic!("no event for a ping:\n{}", p.report());
}

/// A TCP connection's events (`conntrack -E`) with the ephemeral port,
/// the deleter's portid and the seconds left at deletion masked.
#[derive(Debug, PartialEq)]
pub struct TcpEvents {
    pub new: String,
    pub syn_recv: String,
    pub established: String,
    pub time_wait: String,
    pub destroy: String,
}

/// The events `events` (a [`conntrack_event_listener`]) shows for a TCP
/// connection that has just run to its end: NEW, SYN_RECV, ESTABLISHED
/// and TIME_WAIT with Linux's default timeouts, then DESTROY after
/// `conntrack -D -p tcp` (`-f ipv6` with `v6`) or its xdpgw equivalent.
pub fn tcp_connection_events(lab: &Lab, events: &mut Process, v6: bool) -> TcpEvents {
    let wait = Duration::from_secs(10);
    let mut next = |what: &str, tag: &'static str, state: &'static str, secs: u64| {
        let line = events.wait_line(what, wait, |l| {
            l.starts_with(tag) && l.contains(" tcp ") && l.contains(state)
        });
        mask_event(&line, Some(secs))
    };
    let new = next("NEW", "    [NEW]", " SYN_SENT ", 120);
    let syn_recv = next("SYN_RECV", " [UPDATE]", " SYN_RECV ", 60);
    let established = next("ESTABLISHED", " [UPDATE]", " ESTABLISHED ", 432000);
    let time_wait = next("TIME_WAIT", " [UPDATE]", " TIME_WAIT ", 120);
    match lab.backend() {
        Backend::Linux => {
            let family: &[&str] = if v6 { &["-f", "ipv6"] } else { &[] };
            let mut args = vec!["conntrack", "-D"];
            args.extend(family);
            args.extend(["-p", "tcp"]);
            lab.gateway().exec_ok(&args);
        }
        Backend::Xdpgw => {
            let out = std::process::Command::new(crate::xdpgw_binary())
                .args(["conntrack", "-D", "-p", "tcp", "--config"])
                .arg(lab.config_path())
                .output()
                .expect("xdpgw conntrack -D");
            assert!(out.status.success(), "{out:?}");
        }
    }
    let destroy = mask_event(
        &events.wait_line("DESTROY", wait, |l| l.starts_with("[DESTROY] tcp ")),
        None,
    );
    TcpEvents {
        new,
        syn_recv,
        established,
        time_wait,
        destroy,
    }
}

/// `line` with its ephemeral ports and portid masked, and its seconds
/// left: checked to be `secs` or one less (the kernel reads its clock a
/// jiffy after setting the timeout now and then) and shown as `secs`; for
/// None (a deletion some time after the last packet), shown as SECS.
pub fn mask_event(line: &str, secs: Option<u64>) -> String {
    let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
    let mut after_proto = false;
    for w in words.iter_mut() {
        if after_proto && !w.is_empty() {
            if let Ok(n) = w.parse::<u64>() {
                *w = match secs {
                    Some(s) => {
                        assert!(n == s || n + 1 == s, "{s} seconds expected: {line}");
                        s.to_string()
                    }
                    None => "SECS".into(),
                };
            }
            after_proto = false;
        }
        if w == "6" {
            after_proto = true;
        }
        for key in ["sport=", "dport="] {
            if w.starts_with(key) && w != &format!("{key}8080") {
                *w = format!("{key}EPHEMERAL");
            }
        }
        if w.starts_with("portid=") {
            *w = "portid=N".into();
        }
    }
    // conntrack-tools names the deleting process only while it still runs
    // (`conntrack -D` may have exited by then); xdpgw always does.
    words.retain(|w| !w.starts_with("progname="));
    words.join(" ")
}
