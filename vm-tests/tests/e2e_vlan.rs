//! Routing between 802.1Q VLANs on one trunk, and NAT to the WAN, through
//! Linux and through xdpgw, compared:
//!
//! ```text
//!  c10  eth0 10.10.0.2/24 ── to-c10 ┐
//!  c20  eth0 10.20.0.2/24 ── to-c20 ├─ sw: vlan-bridge to-gw (VLANs 10, 20, 30)
//!  c30  eth0 10.30.0.2/24 ── to-c30 ┘      to-gw ── lan0 ┐
//!                                                          gw (Linux or xdpgw)
//!  server eth0 203.0.113.254/24 ──────────────────── wan0 ┘
//! ```
//!
//! The switch (`xdpgw-lab vlan-bridge` with access ports) tags the clients'
//! frames onto the trunk inline. The gateway has lan0.10 10.10.0.1/24 and
//! lan0.20 10.20.0.1/24 on the trunk lan0, and wan0 203.0.113.1/24: for
//! Linux, whose kernel here has no 802.1Q support, `xdpgw-lab vlan-bridge
//! lan0 --tap ...` makes lan0.10 and lan0.20 (TAP devices with lan0's MAC);
//! for xdpgw, `[[interface]]` entries with `vlan` and `parent`. VLAN 30 is
//! on the switch but not on the gateway: its frames are dropped and
//! counted by both. The rules match `-i lan0.10 -o lan0.20` and `-i lan0+
//! -o wan0`; their counters must be equal (`iptables-save -c`, `xdpgw save
//! -c`). A TCP service on the gateway host is reached from VLAN 10 (xdpgw:
//! through lan0.10's own host path device).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use xdpgw_vm_tests::lab::{
    host_netns, parse_ping, veth, Netns, Ping, Process, WorkDir, READY_TIMEOUT, STOP_TIMEOUT,
};
use xdpgw_vm_tests::scenario::{ips, outcome, peers};
use xdpgw_vm_tests::{require_root_with, tools_binary, xdpgw_binary, LAB_PROGRAMS};

/// Routing between VLANs 10 and 20 one way, NAT to the WAN.
const RULES: &str = xdpgw_vm_tests::memlab::VLAN_RULES;

const GW_V10: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
const GW_V20: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
const GW_V30: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 1);
const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const C10: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const C20: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const C30: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Linux,
    Xdpgw,
}

/// The lab; dropping it stops what runs and removes the namespaces.
struct VlanLab {
    backend: Backend,
    tools: String,
    /// The switch's bridge, the Linux gateway's bridge or `xdpgw run`.
    switch: Option<Process>,
    gateway: Option<Process>,
    /// xdpgw's configuration, rules and control socket.
    dir: WorkDir,
    c10: Netns,
    c20: Netns,
    c30: Netns,
    sw: Netns,
    gw: Netns,
    server: Netns,
}

impl VlanLab {
    fn new(backend: Backend) -> VlanLab {
        let tools = tools_binary().display().to_string();
        let mut lab = VlanLab {
            backend,
            tools,
            switch: None,
            gateway: None,
            dir: WorkDir::new("vlan"),
            c10: host_netns("c10"),
            c20: host_netns("c20"),
            c30: host_netns("c30"),
            sw: host_netns("sw"),
            gw: host_netns("vgw"),
            server: host_netns("vsrv"),
        };
        for (host, port, addr, gw) in [
            (&lab.c10, "to-c10", C10, GW_V10),
            (&lab.c20, "to-c20", C20, GW_V20),
            (&lab.c30, "to-c30", C30, GW_V30),
        ] {
            veth(&lab.sw, port, host, "eth0");
            host.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            host.exec_ok(&["ip", "route", "add", "default", "via", &gw.to_string()]);
        }
        veth(&lab.sw, "to-gw", &lab.gw, "lan0");
        veth(&lab.server, "eth0", &lab.gw, "wan0");
        let s = &lab.server;
        s.exec_ok(&["ip", "addr", "add", &format!("{SERVER}/24"), "dev", "eth0"]);
        s.exec_ok(&[
            "ip",
            "route",
            "add",
            "10.0.0.0/8",
            "via",
            &GW_WAN.to_string(),
        ]);
        // Complete checksums from the hosts (AF_XDP never completes a
        // partial one).
        for host in [&lab.c10, &lab.c20, &lab.c30, &lab.server] {
            host.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
        }
        let switch = lab.bridge(
            &lab.sw,
            &[
                "to-gw",
                "--access",
                "10=to-c10",
                "--access",
                "20=to-c20",
                "--access",
                "30=to-c30",
            ],
        );
        lab.switch = Some(switch);
        match backend {
            Backend::Linux => lab.start_linux(),
            Backend::Xdpgw => lab.start_xdpgw(),
        }
        lab
    }

    /// Starts `xdpgw-lab vlan-bridge ARGS` in `ns` and waits for `ready`.
    fn bridge(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut all = vec![self.tools.as_str(), "vlan-bridge"];
        all.extend_from_slice(args);
        let mut p = ns.spawn(&all);
        p.wait_line("`ready` line", READY_TIMEOUT, |l| l.starts_with("ready"));
        p
    }

    fn start_linux(&mut self) {
        let bridge = self.bridge(
            &self.gw,
            &["lan0", "--tap", "10=lan0.10", "--tap", "20=lan0.20"],
        );
        self.gateway = Some(bridge);
        let gw = &self.gw;
        for (dev, addr) in [("lan0.10", GW_V10), ("lan0.20", GW_V20), ("wan0", GW_WAN)] {
            gw.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev]);
        }
        gw.sysctl("net.ipv4.ip_forward", "1");
        gw.exec_ok(&["ip", "route", "add", "default", "via", &SERVER.to_string()]);
        gw.exec_stdin_ok(&["iptables-restore"], RULES);
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("xdpgw.sock")
    }

    fn start_xdpgw(&mut self) {
        let rules = self.dir.path().join("vlan.rules");
        std::fs::write(&rules, RULES).expect("rules");
        let config = self.dir.path().join("vlan.toml");
        let text = format!(
            r#"rules = "{}"
control_socket = "{}"

[[interface]]
name = "lan0.10"
vlan = 10
parent = "lan0"
address = "10.10.0.1/24"

[[interface]]
name = "lan0.20"
vlan = 20
parent = "lan0"
address = "10.20.0.1/24"

[[interface]]
name = "wan0"
address = "203.0.113.1/24"

[[route]]
to = "0.0.0.0/0"
via = "203.0.113.254"

[dataplane]
workers = 1
"#,
            rules.display(),
            self.socket().display()
        );
        std::fs::write(&config, text).expect("config");
        let xdpgw = xdpgw_binary().display().to_string();
        let config = config.display().to_string();
        let mut p = self.gw.spawn(&[&xdpgw, "run", "--config", &config]);
        p.wait_line("`ready` line", READY_TIMEOUT, |l| l.starts_with("ready"));
        self.gateway = Some(p);
    }

    /// `xdpgw ARGS --socket` of the lab's gateway (Backend::Xdpgw).
    fn xdpgw(&self, args: &[&str]) -> String {
        let xdpgw = xdpgw_binary().display().to_string();
        let socket = self.socket().display().to_string();
        let mut all = vec![xdpgw.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--socket", &socket]);
        self.gw.exec_ok(&all)
    }

    /// `ping -c COUNT` to `dst`, for at most `count + 3` seconds.
    fn ping(&self, ns: &Netns, dst: Ipv4Addr, count: u32) -> Ping {
        self.ping_for(ns, dst, count, count + 3)
    }

    /// Echo replies to `ping` to `dst` for one second: one that fails.
    fn ping_fails(&self, ns: &Netns, dst: Ipv4Addr) -> u32 {
        self.ping_for(ns, dst, 3, 1).received
    }

    fn ping_for(&self, ns: &Netns, dst: Ipv4Addr, count: u32, secs: u32) -> Ping {
        let (c, deadline, dst) = (count.to_string(), secs.to_string(), dst.to_string());
        let done = ns.run(
            &[
                "ping", "-n", "-c", &c, "-i", "0.2", "-W", "1", "-w", &deadline, &dst,
            ],
            Duration::from_secs(u64::from(count) + 20),
        );
        parse_ping(&done.stdout)
    }

    fn tool(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut all = vec![self.tools.as_str()];
        all.extend_from_slice(args);
        ns.spawn(&all)
    }

    fn serve(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut p = self.tool(ns, args);
        p.wait_line("`listening` line", READY_TIMEOUT, |l| {
            l.starts_with("listening")
        });
        p
    }

    fn result(&self, ns: &Netns, args: &[&str]) -> String {
        self.tool(ns, args)
            .wait(Duration::from_secs(30))
            .first_line()
            .to_owned()
    }

    /// The rule lines with their counters (`[packets:bytes] -A ...`) of
    /// `iptables-save -c` or `xdpgw save -c`.
    fn rule_counters(&self) -> Vec<String> {
        let text = match self.backend {
            Backend::Linux => self.gw.exec_ok(&["iptables-save", "-c"]),
            Backend::Xdpgw => self.xdpgw(&["save", "-c"]),
        };
        text.lines()
            .filter(|l| l.starts_with('['))
            .map(str::to_owned)
            .collect()
    }

    /// Frames of VLANs the gateway does not have, as its side counted them:
    /// the Linux gateway's bridge (`unknown_vlan`), xdpgw's `vlan_unknown`
    /// drops.
    fn unknown_vlan_drops(&mut self) -> u64 {
        match self.backend {
            Backend::Linux => {
                let done = self.gateway.take().expect("bridge").stop(STOP_TIMEOUT);
                let line = done
                    .stdout
                    .iter()
                    .find(|l| l.starts_with("stopped"))
                    .unwrap_or_else(|| panic!("no `stopped` line:\n{}", done.report()));
                xdpgw_vm_tests::lab::parse::field_number(line, "unknown_vlan")
            }
            Backend::Xdpgw => {
                let stats = self.xdpgw(&["stats"]);
                stats
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("dropped vlan_unknown: "))
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            }
        }
    }

    /// The MAC `ns` resolved for `addr` (`ip neigh`).
    fn neighbour(ns: &Netns, addr: Ipv4Addr) -> String {
        let out = ns.exec_ok(&["ip", "neigh", "show", &addr.to_string()]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .unwrap_or_else(|| panic!("no neighbour {addr}: {out}"))
            .to_owned()
    }

    fn stop(mut self) {
        if let Some(p) = self.gateway.take() {
            let done = p.stop(STOP_TIMEOUT);
            assert!(done.status.success(), "{}", done.report());
        }
        if let Some(p) = self.switch.take() {
            p.stop(STOP_TIMEOUT);
        }
    }
}

#[derive(Debug, PartialEq)]
struct Observed {
    /// Each VLAN's client pinging its gateway address (ARP in its VLAN).
    to_gateway: (Ping, Ping),
    /// The gateway's MAC as each client resolved it: lan0's.
    gateway_mac_is_lan0s: (bool, bool),
    /// VLAN 10 to VLAN 20 (allowed) and back (FORWARD's policy).
    v10_to_v20: Ping,
    /// Echo replies (the number of requests a failing ping sends and the
    /// errors it reports depend on timing).
    v20_to_v10: u32,
    /// VLAN 10 to the WAN, masqueraded.
    v10_to_wan: Ping,
    /// The rules' counters after the pings.
    counters: Vec<String>,
    /// TCP from VLAN 10 to VLAN 20: the result and the address the server
    /// saw (not NATed between VLANs).
    tcp_v10_to_v20: (String, Vec<Ipv4Addr>),
    /// TCP from VLAN 20 to VLAN 10: refused by FORWARD's policy.
    tcp_v20_to_v10: String,
    /// UDP from VLAN 20 to the WAN: the result and what the server saw.
    udp_v20_to_wan: (String, Vec<Ipv4Addr>),
    /// TCP from VLAN 10 to a service on the gateway host (xdpgw: through
    /// lan0.10's host path device): the result and what the service saw.
    host_service: (String, Vec<Ipv4Addr>),
    /// VLAN 30, which the gateway does not have.
    /// Echo replies.
    v30_to_gateway: u32,
    v30_dropped: bool,
}

fn scenario(mut lab: VlanLab) -> Observed {
    let lan0_mac = lab.gw.exec_ok(&["cat", "/sys/class/net/lan0/address"]);
    let lan0_mac = lan0_mac.trim().to_owned();
    let to_gateway = (lab.ping(&lab.c10, GW_V10, 2), lab.ping(&lab.c20, GW_V20, 2));
    let gateway_mac_is_lan0s = (
        VlanLab::neighbour(&lab.c10, GW_V10) == lan0_mac,
        VlanLab::neighbour(&lab.c20, GW_V20) == lan0_mac,
    );
    let v10_to_v20 = lab.ping(&lab.c10, C20, 3);
    let v20_to_v10 = lab.ping_fails(&lab.c20, C10);
    let v10_to_wan = lab.ping(&lab.c10, SERVER, 2);
    let counters = lab.rule_counters();

    let server = lab.serve(&lab.c20, &["tcp-serve", "8080"]);
    let tcp = outcome(&lab.result(&lab.c10, &["tcp-get", &C20.to_string(), "8080", "100000"]));
    let saw: Vec<Ipv4Addr> = ips(&peers(server)).into_iter().collect();
    let tcp_v10_to_v20 = (tcp, saw);
    let server = lab.serve(&lab.c10, &["tcp-serve", "8080"]);
    let tcp_v20_to_v10 = outcome(&lab.result(
        &lab.c20,
        &["tcp-connect", &C10.to_string(), "8080", "--timeout", "1"],
    ));
    assert!(peers(server).is_empty(), "nothing reached c10");
    let echo = lab.serve(&lab.server, &["udp-echo", "5353"]);
    let udp = outcome(&lab.result(&lab.c20, &["udp-req", &SERVER.to_string(), "5353"]));
    let saw: Vec<Ipv4Addr> = ips(&peers(echo)).into_iter().collect();
    let udp_v20_to_wan = (udp, saw);
    let service = lab.serve(&lab.gw, &["tcp-serve", "2222"]);
    let tcp = outcome(&lab.result(&lab.c10, &["tcp-get", &GW_V10.to_string(), "2222", "5000"]));
    let saw: Vec<Ipv4Addr> = ips(&peers(service)).into_iter().collect();
    let host_service = (tcp, saw);

    let v30_to_gateway = lab.ping_fails(&lab.c30, GW_V30);
    let v30_dropped = lab.unknown_vlan_drops() > 0;
    if let Some(gw) = lab.gateway.as_mut() {
        // The trunk's MTU is its VLAN interfaces' too: a change of it
        // reaches them (xdpgw's log names each).
        lab.gw
            .exec_ok(&["ip", "link", "set", "lan0", "mtu", "1400"]);
        for vlan in ["lan0.10", "lan0.20"] {
            gw.wait_stderr_line("the VLAN interface's MTU change", READY_TIMEOUT, |l| {
                l.contains(&format!("{vlan}: MTU 1500 -> 1400"))
            });
        }
    }
    let o = Observed {
        to_gateway,
        gateway_mac_is_lan0s,
        v10_to_v20,
        v20_to_v10,
        v10_to_wan,
        counters,
        tcp_v10_to_v20,
        tcp_v20_to_v10,
        udp_v20_to_wan,
        host_service,
        v30_to_gateway,
        v30_dropped,
    };
    lab.stop();
    o
}

#[test]
fn routes_between_vlans_on_one_trunk_like_linux() {
    let test = "routes_between_vlans_on_one_trunk_like_linux";
    if !require_root_with(test, LAB_PROGRAMS) {
        return;
    }
    let linux = scenario(VlanLab::new(Backend::Linux));
    eprintln!("{test}: Linux observed {linux:#?}");
    assert_eq!(linux.to_gateway.0.received, 2, "{linux:?}");
    assert_eq!(linux.to_gateway.1.received, 2, "{linux:?}");
    assert_eq!(linux.gateway_mac_is_lan0s, (true, true));
    assert_eq!(linux.v10_to_v20.replies, [(C20, 63); 3]);
    assert_eq!(linux.v20_to_v10, 0);
    assert_eq!(linux.v10_to_wan.replies, [(SERVER, 63); 2]);
    assert_eq!(linux.tcp_v10_to_v20, ("ok bytes=100000".into(), vec![C10]));
    assert_eq!(linux.tcp_v20_to_v10, "timeout");
    assert_eq!(linux.udp_v20_to_wan, ("ok".into(), vec![GW_WAN]));
    assert_eq!(linux.host_service, ("ok bytes=5000".into(), vec![C10]));
    assert_eq!(linux.v30_to_gateway, 0);
    assert!(linux.v30_dropped);
    // -i lan0.10 -o lan0.20 matched the first echo request; -i lan0+ -o
    // wan0 the first to the server, and MASQUERADE it.
    for want in [
        "-A FORWARD -i lan0.10 -o lan0.20 -j ACCEPT",
        "-A FORWARD -i lan0+ -o wan0 -j ACCEPT",
        "-A POSTROUTING -o wan0 -j MASQUERADE",
    ] {
        assert!(
            linux
                .counters
                .iter()
                .any(|l| l.starts_with("[1:84] ") && l.ends_with(want)),
            "{want}: {:?}",
            linux.counters
        );
    }
    let xdpgw = scenario(VlanLab::new(Backend::Xdpgw));
    eprintln!("{test}: xdpgw observed {xdpgw:#?}");
    assert_eq!(
        xdpgw, linux,
        "{test}: xdpgw (left) and Linux (right) disagree"
    );
}
