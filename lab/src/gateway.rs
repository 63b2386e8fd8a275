//! The gateway lab: two clients on a LAN, the gateway (Linux or `xdpgw
//! run`) and a server, each in a network namespace of its own. `xdpgw
//! demo`, the end-to-end tests (`vm-tests/tests/e2e_*.rs` and others) use
//! it:
//!
//! ```text
//!  client   eth0 192.168.10.2/24 ─┐
//!                                 ├─ lan: bridge br0 ─── lan0 ┐
//!  client2  eth0 192.168.10.3/24 ─┘                           gateway (Linux or xdpgw)
//!                                 server eth0 203.0.113.254/24 ─── wan0 ┘
//!                                        lo   198.51.100.20/32 (a "far" host behind it)
//! ```
//!
//! The clients' default route is 192.168.10.1 (the gateway's lan0); the
//! server is the upstream router the configuration's default route points
//! at, with a route back to 192.168.10.0/24 via 203.0.113.1 so that inbound
//! attempts and un-NATed replies really reach the gateway.
//!
//! Every veth pair is created with both ends directly in their namespaces
//! ([`veth`]), so nothing is ever created in the root namespace: names only
//! have to be unique inside their namespace, labs can run in parallel, and
//! an interrupted test cannot leave a veth behind. This is also how the
//! gateway's ends get exactly the names `lan0` and `wan0` that the
//! configuration and the rules use.
//!
//! A dual-stack lab ([`Lab::dual_stack_lab`]) has IPv6 beside this plan
//! (fd00:10::/64 on the LAN, 2001:db8:113::/64 on the WAN, router
//! advertisements from radvd): see the `ipv6` module.
//!
//! The lab reads no configuration file itself: a [`GatewaySpec`] says what
//! the configuration holds (the control crate makes one from a
//! configuration file, `xdpgw_control::demo::lab_gateway`).

mod ipv6;

pub use ipv6::{
    parse_router_adverts, xdpgw_ipv6_config, xdpgw_ipv6_support, ClientAddressing, Ipv6Spec,
    Ipv6Unsupported, RouterAdvert, RouterAdvertSeen, Slaac, UdpProbe6, CLIENT2_6, CLIENT6, FAR6,
    GATEWAY_LAN6, GATEWAY_WAN6, LAN6, LAN6_PREFIX_LEN, SERVER6, WAN6,
};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xdpgw_dataplane::rule::Ipv4Net;

use crate::netns::{host_netns, veth, veth_with_queues, Netns};
use crate::parse::{packet_counters, parse_ping, Ping};
use crate::process::{Finished, Process};
use crate::workdir::WorkDir;

/// The first client's address (its default route is [`GATEWAY_LAN`]).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
/// The second client's address, on the same LAN as [`CLIENT`].
pub const CLIENT2: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 3);
/// The gateway's address on lan0.
pub const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
/// The gateway's address on wan0: what MASQUERADE gives office traffic.
pub const GATEWAY_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The server: the upstream router the gateway's default route points at.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// A "far" Internet host: an address on the server's loopback.
pub const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// The interface name of the clients and the server.
pub const HOST_IF: &str = "eth0";
/// A second uplink's address on the gateway (interface `wan1`, when the
/// configuration has one): the lab then cables it to the server's
/// [`HOST_IF2`], [`SERVER_WAN1`].
pub const GATEWAY_WAN1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server's address on the second uplink.
pub const SERVER_WAN1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The server's interface on the second uplink.
pub const HOST_IF2: &str = "eth1";

/// How long the gateway may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a lab server may take to print `listening`.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped process may take to exit before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What forwards between the lab's LAN and WAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The Linux kernel: the configuration's addresses and routes on lan0
    /// and wan0, IP forwarding on, its rules loaded with `iptables-restore`.
    /// The oracle.
    Linux,
    /// `xdpgw run --config ...`: lan0 and wan0 up without any kernel IP
    /// configuration, xdpgw answers ARP and ping for its addresses itself.
    Xdpgw,
}

/// What the lab needs to know of the gateway's configuration (e.g.
/// conf/gateway.toml): its interfaces must be lan0 192.168.10.1/24 and
/// wan0 203.0.113.1/24.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// The configuration file: `xdpgw run` (Backend::Xdpgw) runs a copy of
    /// it ([`run_config_text`]).
    pub config: PathBuf,
    /// The rules file it names, resolved.
    pub rules: PathBuf,
    /// The IPv6 rules file it names (`rules6`), resolved, if any.
    pub rules6: Option<PathBuf>,
    /// The rules as `iptables-restore` input (Backend::Linux loads them).
    pub restore: String,
    /// The interfaces with their addresses (Backend::Linux gives them to
    /// lan0 and wan0).
    pub interfaces: Vec<Interface>,
    /// The static routes: destination, next hop (Backend::Linux adds them).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// The configuration's `ipsets` file (an `ipset save` file), resolved:
    /// Backend::Linux loads it with `ipset restore` before the rules.
    pub ipsets: Option<PathBuf>,
}

/// An interface of the gateway and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// How to build a [`Lab::gateway_lab`].
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub backend: Backend,
    /// The gateway's configuration.
    pub gateway: GatewaySpec,
    /// The xdpgw binary: it runs the gateway (Backend::Xdpgw).
    pub xdpgw: PathBuf,
    /// The `xdpgw-lab` binary ([`crate::tools_binary`]), which runs the
    /// traffic tools of [`Lab::tool`]; None for a lab whose traffic runs
    /// in-process ([`crate::traffic`], as `xdpgw demo` does).
    pub tools: Option<PathBuf>,
    /// More arguments for `xdpgw run` (Backend::Xdpgw), e.g.
    /// `--report-on-exit`.
    pub run_args: Vec<String>,
    /// RX/TX queues of the gateway's veths (lan0, wan0) and their peers
    /// (1 unless a test wants several workers).
    pub queues: u32,
    /// The MTU of every link (all veths and the bridge), set before the
    /// gateway starts; None: the default, 1500.
    pub mtu: Option<u16>,
}

/// The gateway lab: two clients on a LAN, the gateway, a server; see the
/// module documentation for the picture.
///
/// Dropping it stops the gateway (Backend::Xdpgw: SIGTERM, then it must
/// exit with status 0, or the drop panics unless already unwinding), kills
/// whatever still runs in its namespaces and deletes them.
#[derive(Debug)]
pub struct Lab {
    backend: Backend,
    xdpgw: PathBuf,
    /// The traffic tools' binary, if any.
    tools: Option<PathBuf>,
    /// The running `xdpgw run` (Backend::Xdpgw).
    gateway_process: Option<Process>,
    /// Its extra arguments, for a restart.
    run_args: Vec<String>,
    /// The lab's copy of the configuration (Backend::Xdpgw).
    workdir: Option<WorkDir>,
    /// The configuration the gateway runs (Backend::Xdpgw: the lab's copy).
    config: PathBuf,
    /// The IPv6 side of a dual-stack lab ([`Lab::dual_stack_lab`]): its
    /// router advertisement daemon and files.
    ipv6: Option<ipv6::Ipv6Side>,
    // The namespaces come last: fields drop in order, processes first.
    client: Netns,
    client2: Netns,
    lan: Netns,
    gateway: Netns,
    server: Netns,
}

/// A host namespace of the lab: IPv4 only ([`host_netns`]), or dual-stack
/// ([`ipv6::dual_stack_netns`]) for a lab with `v6`.
fn host(v6: Option<&Ipv6Spec>, tag: &str) -> Netns {
    match v6 {
        Some(_) => ipv6::dual_stack_netns(tag),
        None => host_netns(tag),
    }
}

/// Checks that `spec` is a configuration the lab's hosts are addressed for.
fn check_spec_fits(spec: &GatewaySpec) {
    let mut want = vec![("lan0", GATEWAY_LAN), ("wan0", GATEWAY_WAN)];
    if spec.interfaces.iter().any(|i| i.name == "wan1") {
        want.push(("wan1", GATEWAY_WAN1));
    }
    for (name, addr) in want {
        let found = spec.interfaces.iter().find(|i| i.name == name);
        match found {
            Some(i) if i.addr == addr && i.prefix == 24 => {}
            _ => panic!(
                "{}: the lab needs interface {name} with address {addr}/24 (its clients are \
                 192.168.10.2-3/24 and its server 203.0.113.254/24); the configuration has {:?}",
                spec.config.display(),
                spec.interfaces
            ),
        }
    }
}

impl Lab {
    /// Builds the gateway lab with `cfg.backend` forwarding; panics (after
    /// removing whatever it had built) if any step fails or the gateway
    /// does not get ready within [`READY_TIMEOUT`].
    pub fn gateway_lab(cfg: &LabConfig) -> Lab {
        Lab::build(cfg, None)
    }

    /// Builds the gateway lab, dual-stack when `v6` is given (the caller,
    /// [`Lab::dual_stack_lab`], has checked that the backend supports it).
    fn build(cfg: &LabConfig, v6: Option<&Ipv6Spec>) -> Lab {
        let spec = &cfg.gateway;
        check_spec_fits(spec);
        let xdpgw = std::fs::canonicalize(&cfg.xdpgw)
            .unwrap_or_else(|e| panic!("the xdpgw binary {}: {e}", cfg.xdpgw.display()));
        let tools = cfg.tools.as_ref().map(|t| {
            std::fs::canonicalize(t)
                .unwrap_or_else(|e| panic!("the lab tools binary {}: {e}", t.display()))
        });
        let mut lab = Lab {
            backend: cfg.backend,
            xdpgw,
            tools,
            gateway_process: None,
            run_args: cfg.run_args.clone(),
            workdir: None,
            config: spec.config.clone(),
            ipv6: None,
            client: host(v6, "client"),
            client2: host(v6, "client2"),
            lan: host_netns("lan"),
            gateway: host(v6, "gw"),
            server: host(v6, "server"),
        };
        lab.wire(cfg.queues, spec.interfaces.iter().any(|i| i.name == "wan1"));
        if let Some(mtu) = cfg.mtu {
            lab.set_mtu(mtu);
        }
        if let Some(v6) = v6 {
            lab.wire6(v6);
        }
        match cfg.backend {
            Backend::Linux => {
                lab.start_linux(spec);
                if let Some(v6) = v6 {
                    lab.start_linux6(v6);
                }
            }
            Backend::Xdpgw => lab.start_xdpgw(spec, &cfg.run_args, v6),
        }
        lab
    }

    /// Cables and addresses everything but the gateway's own configuration
    /// (and a second uplink to the server if `wan1`).
    fn wire(&self, queues: u32, wan1: bool) {
        let lan = &self.lan;
        lan.exec_ok(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        lan.exec_ok(&["ip", "link", "set", "br0", "up"]);
        for (port, host, addr) in [
            ("to-client", &self.client, CLIENT),
            ("to-client2", &self.client2, CLIENT2),
        ] {
            veth(lan, port, host, HOST_IF);
            lan.exec_ok(&["ip", "link", "set", port, "master", "br0"]);
            host.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", HOST_IF]);
            host.exec_ok(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &GATEWAY_LAN.to_string(),
            ]);
        }
        veth_with_queues(lan, "to-gw", &self.gateway, "lan0", queues);
        lan.exec_ok(&["ip", "link", "set", "to-gw", "master", "br0"]);

        let server = &self.server;
        veth_with_queues(server, HOST_IF, &self.gateway, "wan0", queues);
        server.exec_ok(&["ip", "addr", "add", &format!("{SERVER}/24"), "dev", HOST_IF]);
        server.exec_ok(&["ip", "addr", "add", &format!("{FAR}/32"), "dev", "lo"]);
        if wan1 {
            veth_with_queues(server, HOST_IF2, &self.gateway, "wan1", queues);
            server.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{SERVER_WAN1}/24"),
                "dev",
                HOST_IF2,
            ]);
        }
        server.exec_ok(&[
            "ip",
            "route",
            "add",
            "192.168.10.0/24",
            "via",
            &GATEWAY_WAN.to_string(),
        ]);

        // Checksums complete in software on the hosts: with offload on, TCP
        // and UDP leave a veth with a partial checksum that only the kernel
        // at the other end would complete, and AF_XDP never does.
        for host in [&self.client, &self.client2, &self.server] {
            host.exec_ok(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        }
        if wan1 {
            server.exec_ok(&["ethtool", "-K", HOST_IF2, "tx", "off"]);
        }
    }

    /// Sets every link's MTU (hosts, bridge and its ports, the gateway's).
    fn set_mtu(&self, mtu: u16) {
        let mtu = mtu.to_string();
        let links: [(&Netns, &[&str]); 5] = [
            (&self.client, &[HOST_IF]),
            (&self.client2, &[HOST_IF]),
            (&self.lan, &["to-client", "to-client2", "to-gw", "br0"]),
            (&self.gateway, &["lan0", "wan0"]),
            (&self.server, &[HOST_IF]),
        ];
        for (ns, names) in links {
            for name in names {
                ns.exec_ok(&["ip", "link", "set", name, "mtu", &mtu]);
            }
        }
    }

    fn start_linux(&self, spec: &GatewaySpec) {
        let gw = &self.gateway;
        for i in &spec.interfaces {
            gw.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/{}", i.addr, i.prefix),
                "dev",
                &i.name,
            ]);
        }
        gw.sysctl("net.ipv4.ip_forward", "1");
        for (to, via) in &spec.routes {
            let prefix = to
                .prefix_len()
                .unwrap_or_else(|| panic!("route to {to:?}: not a prefix"));
            gw.exec_ok(&[
                "ip",
                "route",
                "add",
                &format!("{}/{prefix}", to.addr()),
                "via",
                &via.to_string(),
            ]);
        }
        if let Some(path) = &spec.ipsets {
            let sets = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            gw.exec_stdin_ok(&["ipset", "restore"], &sets);
        }
        gw.exec_stdin_ok(&["iptables-restore"], &spec.restore);
    }

    /// Runs an `ipset` command against the gateway's sets (`ipset` in the
    /// gateway's namespace on Linux, `xdpgw ipset` on xdpgw); its exit
    /// status and what it printed (stdout, then stderr).
    pub fn ipset(&self, args: &[&str]) -> (i32, String, String) {
        let out = match self.backend {
            Backend::Linux => {
                let mut linux = vec!["ipset"];
                linux.extend(args);
                self.gateway.exec(&linux)
            }
            Backend::Xdpgw => std::process::Command::new(&self.xdpgw)
                .arg("ipset")
                .arg("--config")
                .arg(&self.config)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", self.xdpgw.display())),
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    fn start_xdpgw(&mut self, spec: &GatewaySpec, run_args: &[String], v6: Option<&Ipv6Spec>) {
        let workdir = WorkDir::new("lab");
        let path = workdir.path().join("gateway.toml");
        let mut text = run_config_text(spec, workdir.path());
        if let Some(v6) = v6 {
            text = self.xdpgw_config6(&text, v6, workdir.path());
        }
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self.config = path.clone();
        self.workdir = Some(workdir);
        self.run_args = run_args.to_vec();
        let xdpgw = self.xdpgw.clone();
        // A SLAAC client has its address from xdpgw's advertisements when
        // the lab is returned, as from radvd's.
        let slaac =
            v6.is_some_and(|v6| v6.router_advert.is_some() && v6.client == ClientAddressing::Slaac);
        let monitor = slaac.then(|| self.client.spawn(&["ip", "-6", "monitor", "address"]));
        self.spawn_gateway(&xdpgw);
        if let Some(mut m) = monitor {
            m.wait_line("an autoconfigured address", ipv6::SLAAC_TIMEOUT, |l| {
                l.contains(" scope global ") && l.contains("dynamic")
            });
        }
    }

    /// Starts `binary run --config` (the lab's copy) with the lab's run
    /// arguments and waits for its `ready` line.
    fn spawn_gateway(&mut self, binary: &Path) {
        let xdpgw = binary.display().to_string();
        let config_arg = self.config.display().to_string();
        let mut args = vec![xdpgw.as_str(), "run", "--config", &config_arg];
        args.extend(self.run_args.iter().map(String::as_str));
        let mut gw = self.gateway.spawn(&args);
        gw.wait_line("`ready` line", READY_TIMEOUT, |l| l.starts_with("ready"));
        self.gateway_process = Some(gw);
    }

    /// Restarts `xdpgw run` (Backend::Xdpgw) as `systemctl restart` does:
    /// SIGTERM, and once it exited (with status 0, or this panics), `binary`
    /// (another build, say) starts with the same configuration file, as it
    /// is now, and arguments; returns once it printed `ready`.
    pub fn restart_gateway(&mut self, binary: &Path) -> Restart {
        let began = Instant::now();
        let stopped = self
            .stop_gateway()
            .expect("a restart needs a running `xdpgw run` (Backend::Xdpgw)");
        let stop = began.elapsed();
        self.spawn_gateway(binary);
        Restart {
            stopped,
            stop,
            start: began.elapsed() - stop,
        }
    }

    /// Which backend forwards.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configuration the gateway runs: for Backend::Xdpgw the lab's
    /// copy (its own control socket, the rules file by absolute path).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The client 192.168.10.2.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The second client 192.168.10.3, on the same LAN.
    pub fn client2(&self) -> &Netns {
        &self.client2
    }

    /// The LAN switch (bridge br0).
    pub fn lan(&self) -> &Netns {
        &self.lan
    }

    /// The gateway's namespace (lan0, wan0).
    pub fn gateway(&self) -> &Netns {
        &self.gateway
    }

    /// The server 203.0.113.254 (and 198.51.100.20 on its loopback).
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// Starts the traffic tool `xdpgw-lab args...` in `ns`
    /// ([`LabConfig::tools`]; panics for a lab without it).
    pub fn tool(&self, ns: &Netns, args: &[&str]) -> Process {
        let tools = self
            .tools
            .as_ref()
            .expect("this lab has no traffic tools binary (LabConfig::tools)")
            .display()
            .to_string();
        let mut all = vec![tools.as_str()];
        all.extend_from_slice(args);
        ns.spawn(&all)
    }

    /// Starts a traffic tool server (`tcp-serve`, `udp-echo`, ...) in `ns`
    /// and waits for its `listening` line.
    pub fn serve(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut p = self.tool(ns, args);
        p.wait_line("`listening` line", LISTEN_TIMEOUT, |l| {
            l.starts_with("listening")
        });
        p
    }

    /// Runs a traffic tool client in `ns` to its end (at most `timeout`) and
    /// returns its result: the first line it printed.
    pub fn tool_result(&self, ns: &Netns, args: &[&str], timeout: Duration) -> String {
        self.tool(ns, args).wait(timeout).first_line().to_owned()
    }

    /// Starts `tcpdump -n -v` on `iface` in `ns` that exits after `count`
    /// packets matching `filter`, and waits until it captures.
    pub fn capture(&self, ns: &Netns, iface: &str, count: usize, filter: &str) -> Process {
        let count = count.to_string();
        let mut p = ns.spawn(&[
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-v",
            "-l",
            "--immediate-mode",
            "-c",
            &count,
            filter,
        ]);
        p.wait_stderr_line("`listening on` line", LISTEN_TIMEOUT, |l| {
            l.starts_with("tcpdump: listening on")
        });
        p
    }

    /// Runs `ping -n -c COUNT -i 0.2 -W 2 [extra...] DST` in `ns` (bounded
    /// by `-w`) and parses what it printed.
    pub fn ping(&self, ns: &Netns, dst: Ipv4Addr, count: u32, extra: &[&str]) -> Ping {
        self.ping_family(ns, "-4", &dst.to_string(), count, extra)
    }

    /// [`Lab::ping`] of `family` (`-4` or `-6`) to `dst`.
    fn ping_family<A: std::str::FromStr>(
        &self,
        ns: &Netns,
        family: &str,
        dst: &str,
        count: u32,
        extra: &[&str],
    ) -> Ping<A> {
        let count_arg = count.to_string();
        let deadline = (count + 5).to_string();
        let mut args = vec![
            "ping", family, "-n", "-c", &count_arg, "-i", "0.2", "-W", "2",
        ];
        args.extend_from_slice(&["-w", &deadline]);
        args.extend_from_slice(extra);
        args.push(dst);
        let done = ns.run(&args, Duration::from_secs(u64::from(count) + 30));
        let ping = parse_ping(&done.stdout);
        if ping.transmitted == 0 {
            panic!("ping sent nothing:\n{}", done.report());
        }
        ping
    }

    /// What `xdpgw run` printed on stdout so far, from its `ready` line on
    /// (nothing for Backend::Linux).
    pub fn gateway_output(&mut self) -> Vec<String> {
        match &mut self.gateway_process {
            Some(p) => p.lines().to_vec(),
            None => Vec::new(),
        }
    }

    /// Sends SIGHUP to `xdpgw run` (Backend::Xdpgw), which reloads its
    /// rules file, and returns the line it logs when done (`xdpgw: reloaded
    /// ...` or `xdpgw: reload failed; ...`), waiting at most `timeout`.
    /// Panics for Backend::Linux.
    pub fn sighup_gateway(&mut self, timeout: Duration) -> String {
        let p = self
            .gateway_process
            .as_mut()
            .expect("SIGHUP needs a running `xdpgw run` (Backend::Xdpgw)");
        p.signal("HUP");
        p.wait_stderr_line("reload message", timeout, |l| {
            l.contains("xdpgw: reloaded ") || l.contains("xdpgw: reload failed")
        })
    }

    /// Waits at most `timeout` for the next line `xdpgw run` (Backend::Xdpgw)
    /// prints on stderr for which `pred` holds (its log: what it restored,
    /// reloaded, ...), and returns it; panics if none comes.
    pub fn wait_gateway_stderr(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.gateway_process
            .as_mut()
            .expect("a running `xdpgw run` (Backend::Xdpgw)")
            .wait_stderr_line(what, timeout, pred)
    }

    /// The rules in force in save form (`iptables-save` on Linux, `xdpgw
    /// save` on xdpgw), without `#` lines; with counters for `counters`
    /// (else chain lines say `[0:0]`, as iptables-save prints policy
    /// counters even without `-c`); of table `table`, or all.
    pub fn rules_in_force(&self, counters: bool, table: Option<&str>) -> String {
        let mut args = Vec::new();
        if counters {
            args.push("-c");
        }
        if let Some(t) = table {
            args.extend(["-t", t]);
        }
        self.saved_rules("iptables-save", &args)
    }

    /// What `linux_save` (Backend::Linux) or `xdpgw save` (Backend::Xdpgw)
    /// prints with `args` (`-6` is xdpgw's only), without `#` lines; chain
    /// counters `[0:0]` unless `-c` is among `args`.
    fn saved_rules(&self, linux_save: &str, args: &[&str]) -> String {
        let counters = args.contains(&"-c");
        let out = match self.backend {
            Backend::Linux => {
                let mut linux = vec![linux_save];
                linux.extend(args.iter().filter(|a| **a != "-6"));
                self.gateway.exec(&linux)
            }
            Backend::Xdpgw => std::process::Command::new(&self.xdpgw)
                .arg("save")
                .args(args)
                .arg("--config")
                .arg(&self.config)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", self.xdpgw.display())),
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "save {args:?}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.rsplit_once(' ') {
                Some((chain, _)) if l.starts_with(':') && !counters => format!("{chain} [0:0]\n"),
                _ => format!("{l}\n"),
            })
            .collect()
    }

    /// The gateway's connection table as `conntrack -L` prints it (Linux:
    /// `conntrack -L`; xdpgw: `xdpgw conntrack -L`, the same format). In a
    /// dual-stack lab that is both families (conntrack-tools 1.4.7 lists
    /// IPv6 entries without `-f`); [`Lab::conntrack_list6`] has IPv6's.
    pub fn conntrack_list(&self) -> Vec<String> {
        let out = match self.backend {
            Backend::Linux => self.gateway.exec(&["conntrack", "-L"]),
            Backend::Xdpgw => std::process::Command::new(&self.xdpgw)
                .args(["conntrack", "-L", "--config"])
                .arg(&self.config)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", self.xdpgw.display())),
        };
        assert!(
            out.status.success(),
            "conntrack -L: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Packet counters of the rules in force ([`Lab::rules_in_force`] with
    /// counters), of table `table` or all: see [`packet_counters`].
    pub fn packet_counters(&self, table: Option<&str>) -> BTreeMap<String, u64> {
        packet_counters(&self.rules_in_force(true, table))
    }

    /// Stops `xdpgw run` (SIGTERM) and returns what it printed; panics
    /// unless it exits with status 0 within [`STOP_TIMEOUT`]. None for
    /// Backend::Linux, or when already stopped.
    pub fn stop_gateway(&mut self) -> Option<Finished> {
        let p = self.gateway_process.take()?;
        let done = p.stop(STOP_TIMEOUT);
        if !done.status.success() {
            panic!(
                "the gateway did not exit with status 0 on SIGTERM:\n{}",
                done.report()
            );
        }
        Some(done)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(p) = self.gateway_process.take() {
                let done = p.stop(STOP_TIMEOUT);
                if !done.status.success() {
                    eprintln!(
                        "the gateway did not exit with status 0 on SIGTERM:\n{}",
                        done.report()
                    );
                }
            }
        } else {
            self.stop_gateway();
        }
    }
}

/// What [`Lab::restart_gateway`] did.
#[derive(Debug)]
pub struct Restart {
    /// The old process, as it ended.
    pub stopped: Finished,
    /// From SIGTERM until it exited.
    pub stop: Duration,
    /// From then until the new one printed `ready`.
    pub start: Duration,
}

/// The lab's copy of the configuration: the rules files by absolute path and
/// a control socket inside the lab's work directory `workdir`, so that labs
/// running in parallel do not share one.
pub fn run_config_text(spec: &GatewaySpec, workdir: &Path) -> String {
    let text = std::fs::read_to_string(&spec.config)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", spec.config.display()));
    let mut table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", spec.config.display()));
    let rules = std::fs::canonicalize(&spec.rules)
        .unwrap_or_else(|e| panic!("the rules file {}: {e}", spec.rules.display()));
    table.insert(
        "rules".into(),
        toml::Value::String(rules.display().to_string()),
    );
    if let Some(rules6) = &spec.rules6 {
        let rules6 = std::fs::canonicalize(rules6)
            .unwrap_or_else(|e| panic!("the rules6 file {}: {e}", rules6.display()));
        table.insert(
            "rules6".into(),
            toml::Value::String(rules6.display().to_string()),
        );
    }
    if let Some(sets) = &spec.ipsets {
        let sets = std::fs::canonicalize(sets)
            .unwrap_or_else(|e| panic!("the ipsets file {}: {e}", sets.display()));
        table.insert(
            "ipsets".into(),
            toml::Value::String(sets.display().to_string()),
        );
    }
    table.insert(
        "control_socket".into(),
        toml::Value::String(workdir.join("xdpgw.sock").display().to_string()),
    );
    toml::to_string(&table).expect("a TOML table serializes")
}
