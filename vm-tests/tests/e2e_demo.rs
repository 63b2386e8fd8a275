//! `xdpgw demo`: its report through Linux, its clean-up on Ctrl-C, and its
//! xdpgw run (or, while `xdpgw run` is not available yet, its clean
//! failure).

use std::process::Command;
use std::time::Duration;

use xdpgw_vm_tests::lab::{Finished, Process};
use xdpgw_vm_tests::{require_root_with, workspace_dir, xdpgw_binary, LAB_PROGRAMS};

/// The lab's namespaces are named `xg-<role>-<pid>-<n>`: those of `pid`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let tag = format!("-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("xg-") && n.contains(&tag))
        .map(str::to_owned)
        .collect()
}

fn start_demo(backend: &str) -> Process {
    let mut cmd = Command::new(xdpgw_binary());
    cmd.args(["demo", "--backend", backend, "--config"])
        .arg(workspace_dir().join("conf/gateway.toml"));
    Process::start(cmd)
}

fn assert_reports(done: &Finished, needles: &[&str]) {
    let out = done.stdout.join("\n");
    for n in needles {
        assert!(
            out.contains(n),
            "no '{n}' in the report:\n{}",
            done.report()
        );
    }
}

#[test]
fn demo_through_linux_reports_and_cleans_up() {
    if !require_root_with("demo_through_linux_reports_and_cleans_up", LAB_PROGRAMS) {
        return;
    }
    let demo = start_demo("linux");
    let pid = demo.pid();
    let done = demo.wait(Duration::from_secs(300));
    assert!(done.status.success(), "{}", done.report());
    assert_reports(
        &done,
        &[
            "got through: 3/3 replies, ttl 63",
            "got through: 10485760 bytes verified; server saw 203.0.113.1:",
            "got through: echo received; server saw 203.0.113.1:",
            "refused: connection reset by the gateway",
            "dropped: no answer",
            "replies carried DSCP 46 (tos 0xb8)",
            "conntrack table (conntrack -L in the gateway):",
            "dport=8080 src=203.0.113.254 dst=203.0.113.1 sport=8080",
            "rule counters",
            "-j MASQUERADE",
            // The IPv6 half of the dual-stack lab (conf/gateway.rules6).
            "got through: 3/3 replies, hop limit 63",
            "got through: 10485760 bytes verified; server saw [2001:db8:113::1]:",
            "got through: echo received; server saw [2001:db8:113::1]:",
            "refused: connection reset by the gateway (rules6 REJECT tcp-reset)",
            "IPv6 conntrack table (conntrack -L -f ipv6 in the gateway):",
            "dport=8080 src=2001:db8:113::254 dst=2001:db8:113::1 sport=8080",
            "IPv6 rule counters",
            "-s fd00:10::/64 -o wan0 -j MASQUERADE",
        ],
    );
    assert!(
        !done.stdout.iter().any(|l| l.contains("UNEXPECTED")),
        "{}",
        done.report()
    );
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn demo_removes_the_lab_on_ctrl_c() {
    if !require_root_with("demo_removes_the_lab_on_ctrl_c", LAB_PROGRAMS) {
        return;
    }
    let mut demo = start_demo("linux");
    let pid = demo.pid();
    // Mid-demo: the lab is up and traffic runs.
    demo.wait_line("the first result", Duration::from_secs(120), |l| {
        l.contains("ping client -> 203.0.113.254")
    });
    assert!(!namespaces_of(pid).is_empty(), "the lab is up");
    demo.signal("INT");
    let done = demo.wait(Duration::from_secs(60));
    assert_eq!(done.status.code(), Some(130), "{}", done.report());
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("interrupted; the lab has been removed")),
        "{}",
        done.report()
    );
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn demo_through_xdpgw_runs_and_cleans_up() {
    if !require_root_with("demo_through_xdpgw_runs_and_cleans_up", LAB_PROGRAMS) {
        return;
    }
    // As a newcomer runs it: outside the repository, no --config (the
    // example built into the binary).
    let mut cmd = Command::new(xdpgw_binary());
    cmd.arg("demo").current_dir("/");
    let demo = Process::start(cmd);
    let pid = demo.pid();
    let done = demo.wait(Duration::from_secs(300));
    assert!(done.status.success(), "{}", done.report());
    assert!(
        !done.stdout.iter().any(|l| l.contains("UNEXPECTED")),
        "{}",
        done.report()
    );
    // The built-in example is dual-stack too: its IPv6 traffic and
    // xdpgw's IPv6 conntrack table and rule counters.
    assert_reports(
        &done,
        &[
            "got through: 10485760 bytes verified; server saw [2001:db8:113::1]:",
            "IPv6 conntrack table (xdpgw, when it stopped):",
            "IPv6 rule counters (xdpgw, rules6 that matched):",
            "-s fd00:10::/64 -o wan0 -j MASQUERADE",
        ],
    );
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}
