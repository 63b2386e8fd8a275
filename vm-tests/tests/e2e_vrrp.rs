//! keepalived (the Debian package's, unchanged) on an xdpgw host, through
//! the host path: it runs VRRP on `xg-lan0` and puts its virtual addresses
//! on `xg-lan0` and `xg-wan0`. Its advertisements must leave lan0 as a
//! Linux host's do (224.0.0.18, TTL 255, the group's multicast MAC, lan0's
//! MAC as source); once MASTER its virtual addresses are the gateway's
//! (ARP and ping answered, announced by gratuitous ARP, the source of
//! connections SNATed to the WAN one); and a higher-priority speaker on the
//! LAN (keepalived in a plain Linux namespace, client2) makes it BACKUP,
//! which only works if arriving advertisements reach the host through
//! INPUT: the addresses leave and xdpgw stops answering ARP for them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use xdpgw_vm_tests::lab::{Backend, Lab, LabConfig, Process, WorkDir, HOST_IF, SERVER};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_config, require_root_with, Netns, LAB_PROGRAMS};

/// The LAN and WAN virtual addresses.
const VIP_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 254);
const VIP_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// How long keepalived may take to change state (VRRPv3, advert_int 0.5:
/// the master-down interval is about 1.6 s).
const STATE_TIMEOUT: Duration = Duration::from_secs(20);

/// The lab's gateway: INPUT accepts VRRP from lan0 (and drops the rest but
/// ping), the LAN is SNATed to the WAN virtual address, as a keepalived pair
/// does so that connections survive a failover.
const RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -s 192.168.10.0/24 -j SNAT --to-source 203.0.113.10
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lan0 -p 112 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
COMMIT
";

fn lab(dir: &Path) -> Lab {
    std::fs::write(dir.join("vrrp.rules"), RULES).expect("write rules");
    let toml = "rules = \"vrrp.rules\"\ncontrol_socket = \"/run/xdpgw-vrrp.sock\"\n\n\
                [[interface]]\nname = \"lan0\"\naddress = \"192.168.10.1/24\"\n\n\
                [[interface]]\nname = \"wan0\"\naddress = \"203.0.113.1/24\"\n\n\
                [[route]]\nto = \"0.0.0.0/0\"\nvia = \"203.0.113.254\"\n";
    let config = dir.join("gateway.toml");
    std::fs::write(&config, toml).expect("write config");
    Lab::gateway_lab(&LabConfig {
        run_args: vec!["--report-on-exit".to_owned()],
        ..lab_config(Backend::Xdpgw, &config)
    })
}

/// A keepalived instance in `ns`: VRRPv3 on `iface`, router id 51, the two
/// virtual addresses (the WAN one on `wan_dev`); its notify script writes
/// its state to `state-NAME` in `dir`.
struct Keepalived {
    process: Option<Process>,
    state_file: std::path::PathBuf,
}

impl Keepalived {
    fn start(ns: &Netns, dir: &Path, name: &str, iface: &str, wan_dev: &str, prio: u8) -> Self {
        let state_file = dir.join(format!("state-{name}"));
        let notify = dir.join(format!("notify-{name}.sh"));
        std::fs::write(
            &notify,
            format!(
                "#!/bin/sh\necho \"$3\" > {}.new && mv {0}.new {0}\n",
                state_file.display()
            ),
        )
        .expect("write notify script");
        std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod notify script");
        let conf = dir.join(format!("keepalived-{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id {name}\n  script_user root\n  vrrp_version 3\n}}\n\
                 vrrp_instance VI {{\n  state BACKUP\n  interface {iface}\n  \
                 virtual_router_id 51\n  priority {prio}\n  advert_int 0.5\n  \
                 virtual_ipaddress {{\n    {VIP_LAN}/24\n    {VIP_WAN}/24 dev {wan_dev}\n  }}\n  \
                 notify {}\n}}\n",
                notify.display()
            ),
        )
        .expect("write keepalived.conf");
        let pid = |k: &str| dir.join(format!("{name}-{k}.pid")).display().to_string();
        let conf = conf.display().to_string();
        let process = ns.spawn(&[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "-f",
            &conf,
            "-p",
            &pid("main"),
            "-r",
            &pid("vrrp"),
            "-c",
            &pid("checkers"),
        ]);
        Keepalived {
            process: Some(process),
            state_file,
        }
    }

    /// Waits until its notify script reported `state`.
    fn wait_state(&mut self, state: &str) {
        let began = Instant::now();
        loop {
            let now = std::fs::read_to_string(&self.state_file).unwrap_or_default();
            if now.trim() == state {
                return;
            }
            if began.elapsed() > STATE_TIMEOUT {
                let done = self.process.take().map(|p| p.stop(Duration::from_secs(5)));
                panic!(
                    "keepalived did not become {state} (it is '{}'):\n{}",
                    now.trim(),
                    done.map(|d| d.report()).unwrap_or_default()
                );
            }
            // Polling the file the notify script writes.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

/// `tcpdump -e -n -v -c COUNT FILTER` on `iface` in `ns`, capturing once it
/// returns.
fn capture(ns: &Netns, iface: &str, count: usize, filter: &str) -> Process {
    let count = count.to_string();
    let mut p = ns.spawn(&[
        "tcpdump",
        "-i",
        iface,
        "-e",
        "-n",
        "-v",
        "-l",
        "--immediate-mode",
        "-c",
        &count,
        filter,
    ]);
    p.wait_stderr_line("`listening on` line", Duration::from_secs(30), |l| {
        l.starts_with("tcpdump: listening on")
    });
    p
}

/// What a capture printed, one string per packet (tcpdump -v folds a
/// packet's lines; they are joined here).
fn packets(p: Process) -> Vec<String> {
    let done = p.wait(Duration::from_secs(30));
    let mut out: Vec<String> = Vec::new();
    for l in &done.stdout {
        if l.starts_with(' ') || l.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(l.trim());
            }
        } else {
            out.push(l.clone());
        }
    }
    out
}

fn mac_of(ns: &Netns, iface: &str) -> String {
    let out = ns.exec_ok(&["cat", &format!("/sys/class/net/{iface}/address")]);
    out.trim().to_owned()
}

#[test]
fn keepalived_runs_through_the_host_path() {
    let test = "keepalived_runs_through_the_host_path";
    let mut programs = LAB_PROGRAMS.to_vec();
    programs.push("keepalived");
    if !require_root_with(test, &programs) {
        return;
    }
    let dir = WorkDir::new("vrrp");
    let mut lab = lab(dir.path());
    let lan_mac = mac_of(lab.gateway(), "lan0");
    let wan_mac = mac_of(lab.gateway(), "wan0");

    // keepalived on the gateway host, on its host path devices. The
    // gratuitous ARPs of its takeover are watched for from the start.
    let garp = capture(lab.server(), HOST_IF, 1, &format!("arp and host {VIP_WAN}"));
    let mut ours = Keepalived::start(lab.gateway(), dir.path(), "xg", "xg-lan0", "xg-wan0", 100);
    ours.wait_state("MASTER");
    let added = |vip: Ipv4Addr| format!("address {vip}/24 added");
    let first = lab.wait_gateway_stderr("an address added", STATE_TIMEOUT, |l| {
        l.contains(&added(VIP_LAN)) || l.contains(&added(VIP_WAN))
    });
    let other = if first.contains(&added(VIP_LAN)) {
        VIP_WAN
    } else {
        VIP_LAN
    };
    lab.wait_gateway_stderr("the other address added", STATE_TIMEOUT, |l| {
        l.contains(&added(other))
    });

    // (a) Its advertisements on the LAN: VRRP to 224.0.0.18, TTL 255, from
    // lan0's MAC to the group's.
    let advert = capture(lab.client(), HOST_IF, 1, "ip proto 112");
    let adverts = packets(advert);
    let a = &adverts[0];
    assert!(
        a.contains(&format!("{lan_mac} > 01:00:5e:00:00:12")),
        "the group's MAC, from lan0's ({lan_mac}): {a}"
    );
    assert!(
        a.contains("ttl 255") && a.contains("proto VRRP (112)"),
        "{a}"
    );
    assert!(a.contains("192.168.10.1 > 224.0.0.18"), "{a}");

    // (b) The gratuitous ARP for the WAN address, from wan0's MAC.
    let g = &packets(garp)[0];
    assert!(g.contains(&format!("{wan_mac} > ff:ff:ff:ff:ff:ff")), "{g}");
    assert!(
        g.contains(&format!("Request who-has {VIP_WAN}")) && g.contains(&format!("tell {VIP_WAN}")),
        "{g}"
    );
    // ARP and ping answered for both virtual addresses.
    let ping = lab.ping(lab.client(), VIP_LAN, 2, &[]);
    assert_eq!(ping.received, 2, "ping to the LAN virtual address");
    let neigh = lab
        .client()
        .exec_ok(&["ip", "neigh", "show", &VIP_LAN.to_string()]);
    assert!(
        neigh.contains(&lan_mac),
        "ARP answered with lan0's MAC: {neigh}"
    );
    let ping = lab.ping(lab.server(), VIP_WAN, 2, &[]);
    assert_eq!(ping.received, 2, "ping to the WAN virtual address");
    // A connection from the LAN leaves with the WAN virtual address, and
    // its replies (to that address, resolved by ARP) come back.
    let service = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let got = lab.tool_result(
        lab.client(),
        &[
            "tcp-get",
            &ip(SERVER),
            "8080",
            "100000",
            "--timeout",
            OK_WAIT,
        ],
        TOOL_LIMIT,
    );
    assert_eq!(outcome(&got), "ok bytes=100000");
    assert_eq!(
        ips(&peers(service)),
        std::collections::BTreeSet::from([VIP_WAN])
    );

    // (c) A higher-priority speaker on the LAN: ours hears it (through
    // INPUT) and becomes BACKUP; the addresses leave the devices and xdpgw.
    let mut peer = Keepalived::start(lab.client2(), dir.path(), "peer", HOST_IF, HOST_IF, 200);
    peer.wait_state("MASTER");
    ours.wait_state("BACKUP");
    lab.wait_gateway_stderr("the WAN address removed", STATE_TIMEOUT, |l| {
        l.contains(&format!("wan0: address {VIP_WAN}/24 removed"))
    });
    let devices = lab.gateway().exec_ok(&["ip", "-4", "addr", "show"]);
    assert!(
        !devices.contains(&VIP_WAN.to_string()) && !devices.contains(&VIP_LAN.to_string()),
        "{devices}"
    );
    // Nobody answers ARP for the WAN address now (the peer is on the LAN).
    lab.server()
        .exec_ok(&["ip", "neigh", "flush", "dev", HOST_IF]);
    let ping = lab.ping(lab.server(), VIP_WAN, 1, &[]);
    assert_eq!(ping.received, 0, "xdpgw answered for an address it gave up");
    let neigh = lab
        .server()
        .exec_ok(&["ip", "neigh", "show", &VIP_WAN.to_string()]);
    assert!(!neigh.contains(&wan_mac), "{neigh}");
    // The advertisements went through filter INPUT.
    let counters = lab.packet_counters(Some("filter"));
    let vrrp = counters
        .iter()
        .find(|(rule, _)| rule.contains("-p 112") || rule.contains("-p vrrp"))
        .map(|(_, &n)| n);
    assert!(vrrp.is_some_and(|n| n > 0), "{counters:?}");
    drop(peer);
    drop(ours);
}
