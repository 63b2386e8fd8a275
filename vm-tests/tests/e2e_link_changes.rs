//! Link changes while the gateway runs (namespace lab, through Linux with
//! conf/gateway.rules and through `xdpgw run --config conf/gateway.toml`,
//! observations compared): an interface's MTU lowered with `ip link set
//! ... mtu 1280` takes effect at once, with no restart.
//!
//! - wan0 to 1280: a 1,400-byte ping with DF set gets ICMP "fragmentation
//!   needed" (mtu 1280) from the gateway, as from Linux (`ip_forward`);
//!   rule counters then equal Linux's.
//! - lan0 to 1280 in the middle of a download (its flow cached by xdpgw's
//!   fast path): the server learns path MTU 1280 from the gateway's ICMP
//!   error and the download completes, content verified.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::Duration;

use xdpgw_vm_tests::lab::{Backend, Lab, Netns, GATEWAY_LAN, GATEWAY_WAN, SERVER};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::xdpgw_binary;

/// How long xdpgw may take to log a link change (it acts within a second).
const LINK_LOG_WAIT: Duration = Duration::from_secs(10);

/// Sets `iface`'s MTU in the gateway's namespace; with xdpgw, waits for the
/// line it logs when it has taken the change up.
fn set_mtu(lab: &mut Lab, iface: &str, mtu: u16) {
    lab.gateway()
        .exec_ok(&["ip", "link", "set", iface, "mtu", &mtu.to_string()]);
    if lab.backend() == Backend::Xdpgw {
        let want = format!("xdpgw: {iface}: MTU ");
        let suffix = format!(" -> {mtu}");
        lab.wait_gateway_stderr("MTU change logged", LINK_LOG_WAIT, |l| {
            l.contains(&want) && l.ends_with(&suffix)
        });
    }
}

/// The `mtu N` of `ns`'s route to `to` (a learned path MTU), if any.
fn path_mtu(ns: &Netns, to: Ipv4Addr) -> String {
    ns.exec_ok(&["ip", "-o", "route", "get", &ip(to)])
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn xdpgw(lab: &Lab, args: &[&str]) -> Output {
    Command::new(xdpgw_binary())
        .args(args)
        .arg("--config")
        .arg(lab.config_path())
        .output()
        .expect("run xdpgw")
}

/// Packet counts of every chain policy and rule (`iptables-save -c` or
/// `xdpgw save -c`), by table and text.
fn rule_counters(lab: &Lab) -> BTreeMap<String, u64> {
    let out = match lab.backend() {
        Backend::Linux => lab.gateway().exec(&["iptables-save", "-c"]),
        Backend::Xdpgw => xdpgw(lab, &["save", "-c"]),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "save -c: {text}");
    let packets = |c: &str| {
        c.trim_start_matches('[')
            .split(':')
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no [packets:bytes] in '{c}'"))
    };
    let mut table = String::new();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        } else if line.starts_with(':') {
            let mut w = line.split_whitespace();
            if let (Some(chain), Some(_), Some(c)) = (w.next(), w.next(), w.next()) {
                counts.insert(format!("{table} {chain}"), packets(c));
            }
        } else if line.starts_with('[') {
            let (c, rule) = line.split_once(' ').expect("[p:b] rule");
            *counts.entry(format!("{table} {rule}")).or_insert(0) += packets(c);
        }
    }
    counts
}

#[derive(Debug, PartialEq)]
struct MtuObs {
    /// A DF ping of 1,400 bytes to the server before the change.
    before: (u32, Vec<(Ipv4Addr, String)>),
    /// The same after wan0's MTU went to 1280: the gateway's ICMP error.
    after: (u32, Vec<(Ipv4Addr, String)>),
    /// The client's route to the server afterwards: its learned path MTU.
    client_route: String,
    /// A ping that fits still passes.
    small: u32,
    /// What the rules counted from the MTU change on (rules and policies
    /// that counted anything).
    counters: BTreeMap<String, u64>,
}

#[test]
fn lowered_mtu_gets_fragmentation_needed() {
    on_both_backends(
        "lowered_mtu_gets_fragmentation_needed",
        |lab| {
            let df = ["-M", "do", "-s", "1372"];
            let p = lab.ping(lab.client(), SERVER, 1, &df);
            let before = (p.received, p.errors);
            set_mtu(lab, "wan0", 1280);
            let counted_before = rule_counters(lab);
            let p = lab.ping(lab.client(), SERVER, 2, &df);
            let after = (p.received, p.errors);
            let client_route = path_mtu(lab.client(), SERVER);
            let small = lab.ping(lab.client(), SERVER, 1, &["-M", "do", "-s", "1000"]);
            MtuObs {
                before,
                after,
                client_route,
                small: small.received,
                counters: rule_counters(lab)
                    .into_iter()
                    .map(|(rule, n)| {
                        let since = n - counted_before.get(&rule).copied().unwrap_or(0);
                        (rule, since)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            }
        },
        |o| {
            assert_eq!(o.before, (1, vec![]), "{o:?}");
            // ping reports the error once per echo request it concerns.
            assert_eq!(o.after.0, 0, "{o:?}");
            assert!(!o.after.1.is_empty(), "{o:?}");
            for (from, what) in &o.after.1 {
                assert_eq!(*from, GATEWAY_LAN, "{o:?}");
                assert_eq!(what, "Frag needed and DF set (mtu = 1280)", "{o:?}");
            }
            assert_eq!(o.client_route, "mtu 1280", "{o:?}");
            assert_eq!(o.small, 1, "{o:?}");
            // The DF ping went through PREROUTING, never FORWARD (the
            // small one's request and reply did).
            assert_eq!(o.counters.get("raw :PREROUTING"), Some(&3), "{o:?}");
            assert_eq!(o.counters.get("mangle :FORWARD"), Some(&2), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct PmtuObs {
    download: String,
    /// The server's route to the gateway's WAN address (the client, after
    /// MASQUERADE) once the download is done: its learned path MTU.
    server_route: String,
}

#[test]
fn download_completes_by_path_mtu_discovery_after_mtu_change() {
    const BYTES: &str = "4000000";
    on_both_backends(
        "download_completes_by_path_mtu_discovery_after_mtu_change",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            // Paced, so that it is under way (xdpgw: its flow in the fast
            // path's cache) when lan0's MTU goes down.
            let mut d = lab.tool(
                lab.client(),
                &[
                    "tcp-download",
                    &ip(SERVER),
                    "8080",
                    BYTES,
                    "--pace",
                    "2000000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            d.wait_line("`downloading` line", Duration::from_secs(30), |l| {
                l.starts_with("downloading ")
            });
            set_mtu(lab, "lan0", 1280);
            let done = d.wait(TOOL_LIMIT);
            let line = done.stdout.last().cloned().unwrap_or_default();
            drop(server);
            PmtuObs {
                download: outcome(&line)
                    .split_whitespace()
                    .filter(|w| !w.starts_with("longest_pause_ms="))
                    .collect::<Vec<_>>()
                    .join(" "),
                server_route: path_mtu(lab.server(), GATEWAY_WAN),
            }
        },
        |o| {
            assert_eq!(o.download, format!("ok bytes={BYTES}"), "{o:?}");
            assert_eq!(o.server_route, "mtu 1280", "{o:?}");
        },
    );
}
