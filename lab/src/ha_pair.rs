//! The two-node failover lab: a gateway pair on keepalived with conntrack
//! state sync, each node Linux (kernel forwarding, iptables, conntrackd) or
//! xdpgw (`xdpgw run` with `[sync]`), a client on the LAN and a server on
//! the WAN, each in a network namespace of its own:
//!
//! ```text
//!                       lan: bridge br0                       wan: bridge br0
//!  client eth0 192.168.10.2 ─┤                                     ├─ server eth0 203.0.113.254
//!    (default via the        ├─ lan0 node a .11 ── wan0 198.18.0.11 ┤
//!     LAN VIP .1)            │       sync0 10.77.0.1                │
//!                            │         │ (dedicated link)           │
//!                            │       sync0 10.77.0.2                │
//!                            └─ lan0 node b .12 ── wan0 198.18.0.12 ┘
//! ```
//!
//! keepalived (Debian's, one per node, in the foreground with its own pid
//! files: `keepalived -n -l -P -f ...`) runs one VRRP instance on the LAN
//! (virtual router 51, priorities 150 for node a and 100 for node b,
//! preempting; node a configured `state MASTER`) with two virtual addresses: [`LAN_VIP`] (the client's
//! default gateway) and [`WAN_VIP`]. A Linux node's instance runs on lan0
//! with the addresses on lan0 and wan0; an xdpgw node's on its host path
//! devices `xg-lan0` and `xg-wan0`, whose addresses become gateway
//! addresses.
//!
//! Both nodes give the client's traffic the WAN VIP ([`Nat`]): either they
//! MASQUERADE out of wan0 with their own WAN addresses in 198.18.0.0/24,
//! another subnet than the server's, so that the WAN VIP is the only
//! address of the master in the server's subnet (Linux's MASQUERADE takes
//! the address `inet_select_addr` chooses for the next hop, the one whose
//! subnet holds it, which is the VIP; the backup, without it, has no route
//! to the server at all); or they SNAT to the VIP with their own WAN
//! addresses 203.0.113.2 and .3 in the server's subnet.
//!
//! The state sync runs over the dedicated link sync0, FTFW over UDP port
//! 3780: conntrackd on a Linux node (in the foreground, its lock file and
//! control socket in the node's directory), `[sync]` on an xdpgw node. The
//! notify script keepalived runs on each transition does what
//! conntrack-tools' `primary-backup.sh` does: on becoming master commit the
//! external cache (`conntrackd -c`; `xdpgw sync commit`), flush the caches
//! (`-f`), resync the internal cache with the kernel's table (`-R`; none on
//! xdpgw) and send it all to the peer (`-B`; `xdpgw sync bulk`); on becoming
//! backup shorten the kernel's timers (`-t`; none on xdpgw) and ask the
//! master for its table (`-n`; `xdpgw sync resync`). Then it writes the
//! state to the node's `state` file, which the lab polls ([`Pair::wait_master`]),
//! and appends `STATE EPOCH_MS` (taken when the script started) to the
//! node's `transitions` file.
//!
//! Failures ([`Pair::power_off`], [`Pair::kill_xdpgw`],
//! [`Pair::stop_keepalived`]) return the time they began, in milliseconds
//! since the Unix epoch, which the traffic tools' time stamps
//! (`at_ms=`) compare with.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{host_netns, veth, Netns};
use crate::process::{send_signal, Process};
use crate::traffic::epoch_ms;
use crate::workdir::WorkDir;

/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
/// The server's address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// The LAN virtual address: the client's default gateway.
pub const LAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
/// The WAN virtual address: what MASQUERADE gives the client's traffic.
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The nodes' own LAN addresses (node a, node b).
pub const NODE_LAN: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 10, 11),
    Ipv4Addr::new(192, 168, 10, 12),
];
/// The nodes' own WAN addresses with [`Nat::Masquerade`], in another
/// subnet than the server's.
pub const NODE_WAN: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 0, 12)];
/// The nodes' own WAN addresses with [`Nat::SnatToVip`], in the server's
/// subnet.
pub const NODE_WAN_SNAT: [Ipv4Addr; 2] =
    [Ipv4Addr::new(203, 0, 113, 2), Ipv4Addr::new(203, 0, 113, 3)];
/// The nodes' addresses on the sync link.
pub const NODE_SYNC: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)];
/// The VRRP priorities: node a is the master while it lives.
pub const PRIORITY: [u8; 2] = [150, 100];
/// The sync's UDP port (conntrackd's default).
pub const SYNC_PORT: u16 = 3780;
/// The VRRP virtual router id.
pub const VRID: u8 = 51;
/// The interface of the client and of the server.
pub const HOST_IF: &str = "eth0";

/// How long a daemon may take to start, and a node to become master.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped daemon may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Kernel forwarding, iptables MASQUERADE, conntrackd.
    Linux,
    /// `xdpgw run` with `[sync]`; keepalived on its host path devices.
    Xdpgw,
}

/// How the nodes give the client's traffic the WAN VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// `-j MASQUERADE`, the nodes' own WAN addresses ([`NODE_WAN`]) in
    /// another subnet than the server's: the VIP is the master's only
    /// address in the server's subnet, which MASQUERADE (`inet_select_addr`
    /// towards the next hop) takes.
    Masquerade,
    /// `-j SNAT --to-source` the WAN VIP, the nodes' own WAN addresses
    /// ([`NODE_WAN_SNAT`]) in the server's subnet.
    SnatToVip,
}

impl Nat {
    /// Node `i`'s own WAN address.
    pub fn node_wan(self, i: usize) -> Ipv4Addr {
        match self {
            Nat::Masquerade => NODE_WAN[i],
            Nat::SnatToVip => NODE_WAN_SNAT[i],
        }
    }

    /// The nodes' rules (iptables-restore input; xdpgw loads the same):
    /// the NAT, and INPUT dropping TCP segments to the node that belong to
    /// no connection it knows (INVALID, or NEW without SYN). A new master
    /// gets a connection's segments as soon as its gratuitous ARP went out,
    /// maybe before its notify script committed the connection from the
    /// sync; without these rules the node's own stack answers them with a
    /// reset (the VIP is its address), which kills the connection; with
    /// them the segment is dropped and its retransmission finds the
    /// committed entry.
    pub fn rules(self) -> String {
        let target = match self {
            Nat::Masquerade => "MASQUERADE".to_owned(),
            Nat::SnatToVip => format!("SNAT --to-source {WAN_VIP}"),
        };
        format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan0 -j {target}\nCOMMIT\n\
             *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -m conntrack --ctstate INVALID -j DROP\n\
             -A INPUT -p tcp ! --syn -m conntrack --ctstate NEW -j DROP\nCOMMIT\n"
        )
    }
}

/// How to build a [`Pair`].
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// Node a's and node b's kind.
    pub nodes: [NodeKind; 2],
    /// keepalived's `advert_int`, in seconds (below 1: VRRP version 3,
    /// centiseconds).
    pub advert_int: f64,
    /// The NAT to the WAN VIP.
    pub nat: Nat,
    /// The xdpgw binary (for xdpgw nodes and their notify script).
    pub xdpgw: PathBuf,
    /// The `xdpgw-lab` binary: the traffic tools ([`Pair::tool`]).
    pub tools: PathBuf,
}

/// One node of the pair.
#[derive(Debug)]
pub struct Node {
    kind: NodeKind,
    /// Its directory: configurations, notify script, state, logs.
    dir: PathBuf,
    /// `xdpgw run`'s configuration (xdpgw nodes).
    config: PathBuf,
    keepalived: Option<Process>,
    conntrackd: Option<Process>,
    xdpgw: Option<Process>,
    ns: Netns,
}

impl Node {
    /// The node's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// What it runs.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// `xdpgw run`'s configuration (xdpgw nodes).
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The interfaces keepalived's instance and the VIPs are on.
    fn vrrp_interfaces(&self) -> (&'static str, &'static str) {
        match self.kind {
            NodeKind::Linux => ("lan0", "wan0"),
            NodeKind::Xdpgw => ("xg-lan0", "xg-wan0"),
        }
    }

    /// The state the notify script wrote last (`master`, `backup`,
    /// `fault`), or "" before the first.
    pub fn state(&self) -> String {
        std::fs::read_to_string(self.dir.join("state"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// The transitions the notify script saw: the state and when the script
    /// started (ms since the Unix epoch).
    pub fn transitions(&self) -> Vec<(String, u64)> {
        std::fs::read_to_string(self.dir.join("transitions"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (s, t) = l.split_once(' ')?;
                Some((s.to_owned(), t.trim().parse().ok()?))
            })
            .collect()
    }

    /// Whether both VIPs are on the node's interfaces.
    pub fn holds_vips(&self) -> bool {
        let out = self.ns.exec(&["ip", "-o", "-4", "addr", "show"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let (lan, wan) = self.vrrp_interfaces();
        let has = |dev: &str, vip: Ipv4Addr| {
            text.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1) == Some(&dev) && w.get(3) == Some(&format!("{vip}/24").as_str())
            })
        };
        has(lan, LAN_VIP) && has(wan, WAN_VIP)
    }

    /// The node's connection table as `conntrack -L` prints it (Linux:
    /// `conntrack -L`; xdpgw: `xdpgw conntrack -L`).
    pub fn conntrack_list(&self, xdpgw: &Path) -> Vec<String> {
        let out = match self.kind {
            NodeKind::Linux => self.ns.exec(&["conntrack", "-L"]),
            NodeKind::Xdpgw => std::process::Command::new(xdpgw)
                .args(["conntrack", "-L", "--config"])
                .arg(&self.config)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", xdpgw.display())),
        };
        assert!(
            out.status.success(),
            "conntrack -L: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines(&out.stdout)
    }

    /// The entries the node holds from its peer, not yet committed
    /// (Linux: `conntrackd -e`; xdpgw: `xdpgw sync dump-external`).
    pub fn external_cache(&self, xdpgw: &Path) -> Vec<String> {
        let out = match self.kind {
            NodeKind::Linux => {
                let conf = self.dir.join("conntrackd.conf").display().to_string();
                self.ns.exec(&["conntrackd", "-C", &conf, "-e"])
            }
            NodeKind::Xdpgw => std::process::Command::new(xdpgw)
                .args(["sync", "dump-external", "--config"])
                .arg(&self.config)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", xdpgw.display())),
        };
        lines(&out.stdout)
    }

    /// Stops what runs on the node: keepalived first (it removes its VIPs),
    /// then the sync and the gateway.
    fn stop_all(&mut self) {
        for p in [
            self.keepalived.take(),
            self.conntrackd.take(),
            self.xdpgw.take(),
        ]
        .into_iter()
        .flatten()
        {
            p.stop(STOP_TIMEOUT);
        }
    }
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The two-node failover lab; see the module documentation for the
/// picture. Dropping it stops the daemons and deletes the namespaces.
#[derive(Debug)]
pub struct Pair {
    nodes: [Node; 2],
    client: Netns,
    server: Netns,
    lan: Netns,
    wan: Netns,
    xdpgw: PathBuf,
    tools: PathBuf,
    advert_int: f64,
    nat: Nat,
    /// Holds the nodes' directories; removed last.
    _workdir: WorkDir,
}

impl Pair {
    /// Builds the lab, starts both nodes (sync first, then keepalived on
    /// node a, then on node b) and returns once node a is master (its
    /// notify script done, the VIPs on its interfaces) and node b backup.
    pub fn new(cfg: &PairConfig) -> Pair {
        let workdir = WorkDir::new("ha");
        let node = |i: usize| {
            let name = ["a", "b"][i];
            let dir = workdir.path().join(name);
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            Node {
                kind: cfg.nodes[i],
                config: dir.join("gateway.toml"),
                dir,
                keepalived: None,
                conntrackd: None,
                xdpgw: None,
                ns: host_netns(&format!("ha{name}")),
            }
        };
        let mut pair = Pair {
            nodes: [node(0), node(1)],
            client: host_netns("hacl"),
            server: host_netns("hasrv"),
            lan: host_netns("halan"),
            wan: host_netns("hawan"),
            xdpgw: cfg.xdpgw.clone(),
            tools: cfg.tools.clone(),
            advert_int: cfg.advert_int,
            nat: cfg.nat,
            _workdir: workdir,
        };
        pair.wire();
        for i in 0..2 {
            pair.start_node(i);
        }
        for i in 0..2 {
            pair.start_keepalived(i);
        }
        pair.wait_master(0, START_TIMEOUT);
        pair.wait_state(1, "backup", START_TIMEOUT);
        pair
    }

    fn wire(&self) {
        for (sw, host, host_addr) in [
            (&self.lan, &self.client, CLIENT),
            (&self.wan, &self.server, SERVER),
        ] {
            sw.exec_ok(&[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
            ]);
            sw.exec_ok(&["ip", "link", "set", "br0", "up"]);
            veth(sw, "to-host", host, HOST_IF);
            sw.exec_ok(&["ip", "link", "set", "to-host", "master", "br0"]);
            host.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{host_addr}/24"),
                "dev",
                HOST_IF,
            ]);
            // Checksums complete in software: AF_XDP never completes a
            // partial one.
            host.exec_ok(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        }
        self.client
            .exec_ok(&["ip", "route", "add", "default", "via", &LAN_VIP.to_string()]);
        for (i, node) in self.nodes.iter().enumerate() {
            let port = format!("to-{}", ["a", "b"][i]);
            for (sw, dev) in [(&self.lan, "lan0"), (&self.wan, "wan0")] {
                veth(sw, &port, &node.ns, dev);
                sw.exec_ok(&["ip", "link", "set", &port, "master", "br0"]);
                node.ns.exec_ok(&["ethtool", "-K", dev, "tx", "off"]);
            }
        }
        let [a, b] = &self.nodes;
        veth(&a.ns, "sync0", &b.ns, "sync0");
        for (i, node) in self.nodes.iter().enumerate() {
            node.ns.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", NODE_SYNC[i]),
                "dev",
                "sync0",
            ]);
        }
    }

    /// Starts node `i`'s gateway and sync.
    fn start_node(&mut self, i: usize) {
        let peer = NODE_SYNC[1 - i];
        let (wan, rules) = (self.nat.node_wan(i), self.nat.rules());
        let node = &mut self.nodes[i];
        let d = node.dir.display().to_string();
        let notify = match node.kind {
            NodeKind::Linux => {
                let ns = &node.ns;
                for (dev, addr) in [("lan0", NODE_LAN[i]), ("wan0", wan)] {
                    ns.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev]);
                }
                ns.sysctl("net.ipv4.ip_forward", "1");
                ns.exec_stdin_ok(&["iptables-restore"], &rules);
                let conf = node.dir.join("conntrackd.conf");
                write(&conf, &conntrackd_conf(&node.dir, NODE_SYNC[i], peer));
                let mut ctd = ns.spawn(&["conntrackd", "-C", &conf.display().to_string()]);
                ctd.wait_line("conntrackd's start", START_TIMEOUT, |l| {
                    l.contains("initialization completed")
                });
                node.conntrackd = Some(ctd);
                let c = format!("conntrackd -C {d}/conntrackd.conf");
                format!(
                    "  master) {c} -c; {c} -f; {c} -R; {c} -B ;;\n  \
                     backup) {c} -t; {c} -n ;;\n  fault) {c} -t ;;\n"
                )
            }
            NodeKind::Xdpgw => {
                write(&node.dir.join("gateway.rules"), &rules);
                write(&node.config, &xdpgw_conf(&node.dir, i, wan, peer));
                let config = node.config.display().to_string();
                let xdpgw = self.xdpgw.display().to_string();
                let mut gw = node.ns.spawn(&[&xdpgw, "run", "--config", &config]);
                gw.wait_line("`ready` line", START_TIMEOUT, |l| l.starts_with("ready"));
                let open = format!("sync: sync0 {}:{SYNC_PORT} open", NODE_SYNC[i]);
                gw.wait_stderr_line("the sync's `open` line", START_TIMEOUT, |l| {
                    l.contains(&open)
                });
                node.xdpgw = Some(gw);
                let x = format!("{xdpgw} sync --config {config}");
                format!(
                    "  master) {x} commit && {x} flush && {x} bulk ;;\n  \
                     backup) {x} resync ;;\n"
                )
            }
        };
        let script = node.dir.join("notify.sh");
        write(
            &script,
            &format!(
                "#!/bin/sh\n\
                 # keepalived's notify_master/_backup/_fault: conntrack-tools'\n\
                 # primary-backup.sh, then the state for the lab.\n\
                 at=$(date +%s%3N)\n\
                 case \"$1\" in\n{notify}esac\n\
                 echo \"$1 $at\" >> {d}/transitions\n\
                 echo \"$1\" > {d}/state.new && mv {d}/state.new {d}/state\n"
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", script.display()));
    }

    /// Starts keepalived on node `i`.
    fn start_keepalived(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let (lan, wan) = node.vrrp_interfaces();
        let d = node.dir.display().to_string();
        let version = if self.advert_int < 1.0 {
            "\tvrrp_version 3\n"
        } else {
            ""
        };
        let conf = format!(
            "global_defs {{\n\trouter_id ha-{i}\n\tscript_user root\n{version}\
             \tvrrp_garp_master_delay 1\n}}\n\
             vrrp_instance gw {{\n\tstate {}\n\tinterface {lan}\n\t\
             virtual_router_id {VRID}\n\tpriority {}\n\tadvert_int {}\n\t\
             virtual_ipaddress {{\n\t\t{LAN_VIP}/24 dev {lan}\n\t\t{WAN_VIP}/24 dev {wan}\n\t}}\n\t\
             notify_master \"{d}/notify.sh master\"\n\t\
             notify_backup \"{d}/notify.sh backup\"\n\t\
             notify_fault \"{d}/notify.sh fault\"\n}}\n",
            if i == 0 { "MASTER" } else { "BACKUP" },
            PRIORITY[i],
            self.advert_int
        );
        let path = node.dir.join("keepalived.conf");
        write(&path, &conf);
        let p = node.ns.spawn(&[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "--vrrp",
            "--use-file",
            &path.display().to_string(),
            "--pid",
            &format!("{d}/keepalived.pid"),
            "--vrrp_pid",
            &format!("{d}/vrrp.pid"),
        ]);
        node.keepalived = Some(p);
    }

    /// Node `i` (0: a, the first master; 1: b).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The client 192.168.10.2.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The server 203.0.113.254.
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// The xdpgw binary.
    pub fn xdpgw(&self) -> &Path {
        &self.xdpgw
    }

    /// Waits until node `i`'s notify script wrote `state`.
    pub fn wait_state(&mut self, i: usize, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.nodes[i].state() != state {
            if Instant::now() >= deadline {
                panic!(
                    "node {i} did not become {state} within {timeout:?} (state '{}'):\n{}",
                    self.nodes[i].state(),
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `i` is master: its notify script done and both VIPs
    /// on its interfaces.
    pub fn wait_master(&mut self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.wait_state(i, "master", timeout);
        while !self.nodes[i].holds_vips() {
            if Instant::now() >= deadline {
                panic!(
                    "node {i} is master without its VIPs after {timeout:?}:\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the daemons printed so far, for a failure's message.
    pub fn report(&mut self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            for (what, p) in [
                ("keepalived", &mut node.keepalived),
                ("conntrackd", &mut node.conntrackd),
                ("xdpgw", &mut node.xdpgw),
            ] {
                if let Some(p) = p {
                    p.lines();
                    out.push_str(&format!("--- node {i} {what}:\n{}\n", p.report()));
                }
            }
        }
        out
    }

    /// The machine of node `i` dies: keepalived's parent is stopped (so
    /// that it cannot restart its VRRP child) and both are killed, the sync
    /// daemon and the gateway are killed, its links go down (a killed
    /// keepalived leaves its VIPs on the interfaces; a dead machine answers
    /// nothing). Returns when it began (ms since the Unix epoch).
    pub fn power_off(&mut self, i: usize) -> u64 {
        let began = epoch_ms();
        let node = &mut self.nodes[i];
        if let Some(mut k) = node.keepalived.take() {
            k.signal("STOP");
            let child = std::fs::read_to_string(node.dir.join("vrrp.pid")).unwrap_or_default();
            if child.trim().parse::<u32>().is_ok() {
                send_signal(child.trim(), "KILL");
            }
            k.kill();
        }
        for p in [node.conntrackd.take(), node.xdpgw.take()]
            .into_iter()
            .flatten()
        {
            p.kill();
        }
        for dev in ["lan0", "wan0", "sync0"] {
            node.ns.exec(&["ip", "link", "set", dev, "down"]);
        }
        began
    }

    /// Kills node `i`'s `xdpgw run` (SIGKILL); keepalived keeps running
    /// there. Returns when (ms since the Unix epoch).
    pub fn kill_xdpgw(&mut self, i: usize) -> u64 {
        let p = self.nodes[i]
            .xdpgw
            .take()
            .unwrap_or_else(|| panic!("node {i} runs no xdpgw"));
        let began = epoch_ms();
        p.kill();
        began
    }

    /// Stops node `i`'s keepalived (SIGTERM: it gives up mastership with a
    /// priority 0 advertisement and removes its VIPs); the gateway and the
    /// sync keep running. Returns when (ms since the Unix epoch).
    pub fn stop_keepalived(&mut self, i: usize) -> u64 {
        let p = self.nodes[i]
            .keepalived
            .take()
            .unwrap_or_else(|| panic!("node {i} runs no keepalived"));
        let began = epoch_ms();
        let done = p.stop(STOP_TIMEOUT);
        assert!(
            done.status.success(),
            "keepalived did not stop cleanly:\n{}",
            done.report()
        );
        began
    }

    /// Starts the traffic tool `xdpgw-lab args...` in `ns`.
    pub fn tool(&self, ns: &Netns, args: &[&str]) -> Process {
        let tools = self.tools.display().to_string();
        let mut all = vec![tools.as_str()];
        all.extend_from_slice(args);
        ns.spawn(&all)
    }

    /// Starts a traffic tool server in `ns` and waits for its `listening`
    /// line.
    pub fn serve(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut p = self.tool(ns, args);
        p.wait_line("`listening` line", START_TIMEOUT, |l| {
            l.starts_with("listening")
        });
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop_all();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// conntrackd.conf of a Linux node: FTFW over UDP on sync0 from `local` to
/// `peer`; its lock file, control socket and log in `dir`; TCP, UDP and
/// ICMP entries only (not VRRP's), the sync link's own traffic ignored.
fn conntrackd_conf(dir: &Path, local: Ipv4Addr, peer: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "Sync {{\n\tMode FTFW {{\n\t}}\n\tUDP {{\n\t\tIPv4_address {local}\n\t\t\
         IPv4_Destination_Address {peer}\n\t\tPort {SYNC_PORT}\n\t\tInterface sync0\n\t\t\
         Checksum on\n\t}}\n}}\n\
         General {{\n\tHashSize 1024\n\tHashLimit 8192\n\tLogFile {d}/conntrackd.log\n\t\
         Syslog off\n\tLockFile {d}/conntrackd.lock\n\tUNIX {{\n\t\tPath {d}/conntrackd.ctl\n\t}}\n\t\
         Filter From Userspace {{\n\t\tProtocol Accept {{\n\t\t\tTCP\n\t\t\tUDP\n\t\t\tICMP\n\t\t}}\n\t\t\
         Address Ignore {{\n\t\t\tIPv4_address 127.0.0.1\n\t\t\tIPv4_address 10.77.0.0/24\n\t\t}}\n\t}}\n}}\n"
    )
}

/// `xdpgw run`'s configuration of node `i`: its own addresses on lan0 and
/// wan0 (`wan`; the VIPs come from keepalived), the rules beside it, its control
/// socket in its directory, `[sync]` to `peer`.
fn xdpgw_conf(dir: &Path, i: usize, wan: Ipv4Addr, peer: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "rules = \"{d}/gateway.rules\"\ncontrol_socket = \"{d}/xdpgw.sock\"\n\n\
         [[interface]]\nname = \"lan0\"\naddress = \"{}/24\"\n\n\
         [[interface]]\nname = \"wan0\"\naddress = \"{}/24\"\n\n\
         [sync]\nmode = \"ftfw\"\ninterface = \"sync0\"\naddress = \"{}\"\npeer = \"{peer}\"\n\
         port = {SYNC_PORT}\n",
        NODE_LAN[i], wan, NODE_SYNC[i]
    )
}
