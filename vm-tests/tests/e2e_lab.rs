//! The namespace lab itself (`xdpgw_lab`): wired as documented,
//! nothing in the root namespace, labs side by side, everything removed on
//! drop and on panic, and the xdpgw backend's start and stop.

use std::collections::BTreeSet;
use std::panic::catch_unwind;
use std::process::Command;
use std::time::Duration;

use xdpgw_vm_tests::lab::{Backend, Lab, CLIENT, SERVER};
use xdpgw_vm_tests::{gateway_lab, require_root_with, Netns, LAB_PROGRAMS};

fn listed_namespaces() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Interface names, from `ip -o link show` output.
fn link_names(ip_o_link: &str) -> BTreeSet<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

fn links(ns: &Netns) -> BTreeSet<String> {
    link_names(&ns.exec_ok(&["ip", "-o", "link", "show"]))
}

fn root_links() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip -o link show");
    link_names(&String::from_utf8_lossy(&out.stdout))
}

fn names(lab: &Lab) -> Vec<String> {
    [
        lab.client(),
        lab.client2(),
        lab.lan(),
        lab.gateway(),
        lab.server(),
    ]
    .iter()
    .map(|n| n.name().to_owned())
    .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn linux_lab_is_wired_as_documented() {
    if !require_root_with("linux_lab_is_wired_as_documented", LAB_PROGRAMS) {
        return;
    }
    let root_before = root_links();
    let lab = gateway_lab(Backend::Linux);
    assert_eq!(links(lab.gateway()), set(&["lo", "lan0", "wan0"]));
    assert_eq!(links(lab.client()), set(&["lo", "eth0"]));
    assert_eq!(links(lab.client2()), set(&["lo", "eth0"]));
    assert_eq!(links(lab.server()), set(&["lo", "eth0"]));
    assert_eq!(
        links(lab.lan()),
        set(&["lo", "br0", "to-client", "to-client2", "to-gw"])
    );
    assert_eq!(
        root_links(),
        root_before,
        "the lab touched the root namespace"
    );

    let gw_addrs = lab.gateway().exec_ok(&["ip", "-o", "-4", "addr", "show"]);
    assert!(
        gw_addrs.contains("lan0    inet 192.168.10.1/24"),
        "{gw_addrs}"
    );
    assert!(
        gw_addrs.contains("wan0    inet 203.0.113.1/24"),
        "{gw_addrs}"
    );
    let route = lab.gateway().exec_ok(&["ip", "route", "show", "default"]);
    assert!(
        route.starts_with("default via 203.0.113.254 dev wan0"),
        "{route}"
    );
    let fwd = lab
        .gateway()
        .exec_ok(&["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(fwd.trim(), "1");
    let rules = lab.gateway().exec_ok(&["iptables-save", "-t", "nat"]);
    assert!(rules.contains("-o wan0 -j MASQUERADE"), "{rules}");

    let client_route = lab.client().exec_ok(&["ip", "route", "show", "default"]);
    assert!(
        client_route.starts_with("default via 192.168.10.1 dev eth0"),
        "{client_route}"
    );
    let far = lab
        .server()
        .exec_ok(&["ip", "-o", "-4", "addr", "show", "dev", "lo"]);
    assert!(far.contains("198.51.100.20/32"), "{far}");
    for host in [lab.client(), lab.client2(), lab.server()] {
        let k = host.exec_ok(&["ethtool", "-k", "eth0"]);
        assert!(k.contains("tx-checksumming: off"), "{}: {k}", host.name());
    }
}

#[test]
fn lab_is_removed_on_drop_and_on_panic() {
    if !require_root_with("lab_is_removed_on_drop_and_on_panic", LAB_PROGRAMS) {
        return;
    }
    // On drop: namespaces and the processes running in them are gone.
    let lab = gateway_lab(Backend::Linux);
    let ns = names(&lab);
    let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let pid = server.pid();
    // A process the lab does not know of, left running in a namespace.
    let stray = lab.client().spawn(&["sleep", "600"]);
    let stray_pid = stray.pid();
    std::mem::forget(stray);
    assert!(listed_namespaces().is_superset(&ns.iter().cloned().collect()));
    drop(server);
    drop(lab);
    let left = listed_namespaces();
    assert!(
        ns.iter().all(|n| !left.contains(n)),
        "left behind: {left:?}"
    );
    for p in [pid, stray_pid] {
        // Killed and reaped (the stray one by the namespace's guard; as
        // our child it is a zombie until this test process exits).
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!running, "process {p} still runs: {state}");
    }

    // On panic, with a process running.
    let result = catch_unwind(|| {
        let lab = gateway_lab(Backend::Linux);
        let _server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
        let ns = names(&lab);
        panic!("deliberate: {}", ns.join(" "));
    });
    let msg = result.expect_err("the closure panics");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    let ns: Vec<&str> = msg.split_whitespace().skip(1).collect();
    assert_eq!(ns.len(), 5, "{msg}");
    let left = listed_namespaces();
    assert!(
        ns.iter().all(|n| !left.contains(*n)),
        "left behind: {left:?}"
    );
}

#[test]
fn labs_run_side_by_side() {
    if !require_root_with("labs_run_side_by_side", LAB_PROGRAMS) {
        return;
    }
    let labs = [gateway_lab(Backend::Linux), gateway_lab(Backend::Linux)];
    let servers: Vec<_> = labs
        .iter()
        .map(|lab| lab.serve(lab.server(), &["tcp-serve", "8080"]))
        .collect();
    for lab in &labs {
        let got = lab.tool_result(
            lab.client(),
            &["tcp-get", &SERVER.to_string(), "8080", "1000"],
            Duration::from_secs(60),
        );
        assert!(
            got.starts_with(&format!("ok bytes=1000 local={CLIENT}:")),
            "{got}"
        );
    }
    drop(servers);
}

/// The xdpgw backend: once `xdpgw run` works, lan0/wan0 carry no kernel
/// address (the host path's devices have them), the gateway answers ping, and stops with status 0; until then,
/// building the lab fails, naming the reason, and leaves nothing behind.
#[test]
fn xdpgw_lab_starts_answers_ping_and_stops_cleanly() {
    if !require_root_with(
        "xdpgw_lab_starts_answers_ping_and_stops_cleanly",
        LAB_PROGRAMS,
    ) {
        return;
    }
    let mut lab = gateway_lab(Backend::Xdpgw);
    // (The host path's xg-lan0 and xg-wan0 carry the addresses instead.)
    let addrs = lab.gateway().exec_ok(&["ip", "-o", "-4", "addr", "show"]);
    assert!(
        addrs
            .lines()
            .all(|l| !matches!(l.split_whitespace().nth(1), Some("lan0" | "wan0"))),
        "{addrs}"
    );
    let ping = lab.ping(lab.client(), "192.168.10.1".parse().expect("ip"), 1, &[]);
    assert_eq!(ping.received, 1, "{ping:?}");
    let done = lab.stop_gateway().expect("xdpgw was running");
    assert!(done.status.success(), "{}", done.report());
}
