//! The lab's IPv6 side (issue 16): a dual-stack gateway lab
//! ([`Lab::dual_stack_lab`]) whose IPv4 plan is the gateway lab's, with
//! IPv6 beside it:
//!
//! ```text
//!  client   eth0 fd00:10::2/64 (static, or SLAAC from the gateway's RA) ─┐
//!  client2  eth0 fd00:10::3/64                                          ├─ br0 ─ lan0 fd00:10::1/64
//!                                                                       gateway
//!  server   eth0 2001:db8:113::254/64 ────────────────────────────── wan0 2001:db8:113::1/64
//!           lo   2001:db8:100::20/128 (the "far" host)
//! ```
//!
//! The LAN is a ULA prefix (what NAT66 is used for), the WAN a
//! documentation prefix whose third group mirrors 203.0.113.0/24. The
//! clients' default route is fd00:10::1 (SLAAC: the gateway's link-local
//! address, from its RA); the gateway's is the server, which routes
//! fd00:10::/64 back to 2001:db8:113::1.
//!
//! Readiness: duplicate address detection is off in the lab's dual-stack
//! namespaces (`accept_dad=0` before any interface exists, `nodad` on the
//! static addresses), so every address is usable at once, link-local ones
//! included; a SLAAC client is ready when the kernel reports its
//! autoconfigured address (`ip -6 monitor address`).
//!
//! Backend::Linux: forwarding on (`net.ipv6.conf.all.forwarding=1`), the
//! rules loaded with `ip6tables-restore`, router advertisements from the
//! real `radvd`; Backend::Xdpgw runs xdpgw with the same plan in its configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use super::{Backend, Lab, LabConfig, HOST_IF};
use crate::netns::Netns;
use crate::parse::{packet_counters, parse_tcpdump6_verbose, Ping, Probe6};
use crate::process::Process;
use crate::workdir::WorkDir;

/// The LAN's prefix (a ULA prefix), [`LAN6_PREFIX_LEN`] long.
pub const LAN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0);
/// The length of the LAN's and the WAN's prefixes.
pub const LAN6_PREFIX_LEN: u8 = 64;
/// The WAN's prefix (documentation, 2001:db8::/32).
pub const WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0);
/// The first client's static address (unless it autoconfigures by SLAAC).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
/// The second client's address.
pub const CLIENT2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 3);
/// The gateway's address on lan0.
pub const GATEWAY_LAN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);
/// The gateway's address on wan0: what NAT66 MASQUERADE gives the LAN.
pub const GATEWAY_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
/// The server, the gateway's default route.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x254);
/// A "far" host: an address on the server's loopback.
pub const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x20);

/// How long a SLAAC client may take to autoconfigure: radvd sends its
/// first advertisement as it starts and then one every 3 to 4 seconds.
pub(super) const SLAAC_TIMEOUT: Duration = Duration::from_secs(30);

/// The udp_probe6 tool ([`Lab::udp_probe6`]).
const UDP_PROBE6: &str = include_str!("udp_probe6.py");

/// What a dual-stack lab adds to a [`LabConfig`].
#[derive(Clone, Debug)]
pub struct Ipv6Spec {
    /// The gateway's IPv6 rules as `ip6tables-restore` input (empty: none,
    /// every chain ACCEPT).
    pub rules6: String,
    /// How the first client gets its address (client2 is always static).
    pub client: ClientAddressing,
    /// Router advertisements on lan0, if any.
    pub router_advert: Option<RouterAdvert>,
}

impl Ipv6Spec {
    /// Static client addresses, no router advertisements, `rules6`.
    pub fn new(rules6: impl Into<String>) -> Ipv6Spec {
        Ipv6Spec {
            rules6: rules6.into(),
            client: ClientAddressing::Static,
            router_advert: None,
        }
    }

    /// This spec with the gateway advertising `ra` on lan0 and the first
    /// client autoconfiguring from it.
    pub fn with_slaac(self, ra: RouterAdvert) -> Ipv6Spec {
        Ipv6Spec {
            client: ClientAddressing::Slaac,
            router_advert: Some(ra),
            ..self
        }
    }
}

/// How the first client gets its IPv6 address and default route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAddressing {
    /// [`CLIENT6`]/64, default route via [`GATEWAY_LAN6`].
    Static,
    /// Nothing configured: `accept_ra=2` (forwarding stays off), the
    /// address and default route come from the gateway's router
    /// advertisements ([`Lab::slaac`]).
    Slaac,
}

/// Router advertisements on lan0: what radvd (Backend::Linux) or xdpgw
/// sends. radvd advertises every 3 to 4 seconds (its shortest
/// intervals), so the router lifetime must be 0 or at least 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterAdvert {
    /// The prefix (on-link, autonomous: SLAAC).
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// Its valid and preferred lifetimes, in seconds.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    /// The router lifetime (seconds; 0: not a default router).
    pub router_lifetime: u16,
    /// The link MTU option, if any.
    pub mtu: Option<u32>,
    /// Recursive DNS servers (RFC 8106), with their lifetime.
    pub rdnss: Vec<Ipv6Addr>,
    pub rdnss_lifetime: u32,
}

impl RouterAdvert {
    /// The lab's LAN prefix, lifetimes 86400/14400 s, router lifetime
    /// 1800 s, no MTU or DNS options.
    pub fn lan() -> RouterAdvert {
        RouterAdvert {
            prefix: LAN6,
            prefix_len: LAN6_PREFIX_LEN,
            valid_lifetime: 86_400,
            preferred_lifetime: 14_400,
            router_lifetime: 1800,
            mtu: None,
            rdnss: Vec::new(),
            rdnss_lifetime: 600,
        }
    }

    /// The radvd configuration that advertises this on `iface`.
    /// The same advertisement as xdpgw's `[interface.ra]` table.
    pub fn xdpgw_table(&self) -> toml::Table {
        let int = |v: u32| toml::Value::Integer(i64::from(v));
        let mut t = toml::Table::new();
        t.insert("min_interval".into(), int(3));
        t.insert("max_interval".into(), int(4));
        t.insert(
            "router_lifetime".into(),
            int(u32::from(self.router_lifetime)),
        );
        t.insert(
            "prefixes".into(),
            toml::Value::Array(vec![toml::Value::String(format!(
                "{}/{}",
                self.prefix, self.prefix_len
            ))]),
        );
        t.insert("valid_lifetime".into(), int(self.valid_lifetime));
        t.insert("preferred_lifetime".into(), int(self.preferred_lifetime));
        if let Some(mtu) = self.mtu {
            t.insert("mtu".into(), int(mtu));
        }
        if !self.rdnss.is_empty() {
            let servers = self
                .rdnss
                .iter()
                .map(|a| toml::Value::String(a.to_string()))
                .collect();
            t.insert("rdnss".into(), toml::Value::Array(servers));
            t.insert("rdnss_lifetime".into(), int(self.rdnss_lifetime));
        }
        t
    }

    pub fn radvd_conf(&self, iface: &str) -> String {
        let mut c = format!(
            "interface {iface} {{\n    AdvSendAdvert on;\n    MinRtrAdvInterval 3;\n    \
             MaxRtrAdvInterval 4;\n    AdvDefaultLifetime {};\n",
            self.router_lifetime
        );
        if let Some(mtu) = self.mtu {
            c.push_str(&format!("    AdvLinkMTU {mtu};\n"));
        }
        c.push_str(&format!(
            "    prefix {}/{} {{\n        AdvOnLink on;\n        AdvAutonomous on;\n        \
             AdvValidLifetime {};\n        AdvPreferredLifetime {};\n    }};\n",
            self.prefix, self.prefix_len, self.valid_lifetime, self.preferred_lifetime
        ));
        if !self.rdnss.is_empty() {
            let servers: Vec<String> = self.rdnss.iter().map(Ipv6Addr::to_string).collect();
            c.push_str(&format!(
                "    RDNSS {} {{\n        AdvRDNSSLifetime {};\n    }};\n",
                servers.join(" "),
                self.rdnss_lifetime
            ));
        }
        c.push_str("};\n");
        c
    }
}

/// One UDP datagram for [`Lab::udp_probe6`]: to `[dst]:port`,
/// `packet_size` bytes of IPv6 packet (headers included, at least 48), hop
/// limit `hop_limit`, traffic class `tclass`, never fragmented locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpProbe6 {
    pub dst: Ipv6Addr,
    pub port: u16,
    pub packet_size: usize,
    pub hop_limit: u8,
    pub tclass: u8,
}

impl UdpProbe6 {
    /// A 100-byte packet to `[dst]:port`, hop limit 64, traffic class 0.
    pub fn to(dst: Ipv6Addr, port: u16) -> UdpProbe6 {
        UdpProbe6 {
            dst,
            port,
            packet_size: 100,
            hop_limit: 64,
            tclass: 0,
        }
    }
}

/// Why a dual-stack lab cannot be built with a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Unsupported {
    pub backend: Backend,
    pub reason: &'static str,
}

impl fmt::Display for Ipv6Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 is not supported by the {:?} backend yet: {}",
            self.backend, self.reason
        )
    }
}

/// Whether `xdpgw run` can be the gateway of a dual-stack lab with `v6`:
/// it can (the one switch the IPv6 scenarios' xdpgw halves go through).
pub fn xdpgw_ipv6_support(_v6: &Ipv6Spec) -> Result<(), Ipv6Unsupported> {
    Ok(())
}

/// The hook that gives `xdpgw run` the lab's IPv6 side: adds to the
/// configuration `table` each interface's IPv6 address (`address` becomes
/// a list, as issue 16 proposes: `["192.168.10.1/24", "fd00:10::1/64"]`),
/// a default route `::/0` via [`SERVER6`], and `rules6` naming `rules6`, an
/// ip6tables-save file, and on lan0 the router advertisements `ra` asks
/// for (`[interface.ra]`, with radvd's intervals of [`RouterAdvert::radvd_conf`]).
/// An address or a `::/0` route the configuration has already (a
/// dual-stack one, as conf/gateway.toml) is not added twice.
pub fn xdpgw_ipv6_config(table: &mut toml::Table, rules6: &Path, ra: Option<&RouterAdvert>) {
    let plan = [("lan0", GATEWAY_LAN6), ("wan0", GATEWAY_WAN6)];
    if let Some(toml::Value::Array(interfaces)) = table.get_mut("interface") {
        for iface in interfaces.iter_mut().filter_map(toml::Value::as_table_mut) {
            let name = iface.get("name").and_then(toml::Value::as_str);
            let Some((plan_name, addr)) = plan.iter().find(|(n, _)| Some(*n) == name) else {
                continue;
            };
            let v6 = toml::Value::String(format!("{addr}/{LAN6_PREFIX_LEN}"));
            let list = match iface.remove("address") {
                Some(toml::Value::Array(mut list)) => {
                    if !list.contains(&v6) {
                        list.push(v6);
                    }
                    list
                }
                Some(v4) => vec![v4, v6],
                None => vec![v6],
            };
            iface.insert("address".into(), toml::Value::Array(list));
            if let (Some(ra), "lan0") = (ra, *plan_name) {
                iface.insert("ra".into(), toml::Value::Table(ra.xdpgw_table()));
            }
        }
    }
    let mut route = toml::Table::new();
    route.insert("to".into(), toml::Value::String("::/0".into()));
    route.insert("via".into(), toml::Value::String(SERVER6.to_string()));
    match table.get_mut("route") {
        Some(toml::Value::Array(routes)) => {
            let default6 =
                |r: &toml::Value| r.get("to").and_then(toml::Value::as_str) == Some("::/0");
            if !routes.iter().any(default6) {
                routes.push(toml::Value::Table(route));
            }
        }
        _ => {
            table.insert(
                "route".into(),
                toml::Value::Array(vec![toml::Value::Table(route)]),
            );
        }
    }
    table.insert(
        "rules6".into(),
        toml::Value::String(rules6.display().to_string()),
    );
}

/// A namespace of a dual-stack lab: IPv6 on, duplicate address detection
/// off for every interface made in it from now on (so that addresses,
/// link-local ones too, are usable at once), loopback up.
pub(super) fn dual_stack_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    for key in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0");
        ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
    }
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns
}

/// The IPv6 side of a running dual-stack lab.
#[derive(Debug)]
pub(super) struct Ipv6Side {
    /// radvd on lan0 (Backend::Linux with a router advertisement).
    radvd: Option<Process>,
    client: ClientAddressing,
    /// radvd's configuration and pid file.
    workdir: WorkDir,
}

/// `ADDR/LEN` of an `ip -o addr` line's `inet6 ADDR/LEN` words.
fn inet6(line: &str) -> Option<(Ipv6Addr, u8)> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "inet6")?;
    let (addr, len) = words.next()?.split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok()?))
}

/// The number after `key` in a line of words (`valid_lft 86400sec`).
fn after(line: &str, key: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next().map(str::to_owned)
}

/// A SLAAC client's configuration as the kernel holds it ([`Lab::slaac`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slaac {
    /// The autoconfigured global address and its prefix length.
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// Its flags as `ip addr` prints them (`dynamic mngtmpaddr`).
    pub flags: String,
    /// Its remaining lifetimes in seconds (counting down from the RA's).
    pub valid_lft: u32,
    pub preferred_lft: u32,
    /// The default route's next hop (the router's link-local address) and
    /// protocol (`ra`).
    pub default_via: Ipv6Addr,
    pub default_proto: String,
    /// The IPv6 MTU of the client's interface (an RA's MTU option sets it).
    pub mtu: u32,
}

/// A router advertisement as `tcpdump -v` printed it ([`Lab::router_adverts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterAdvertSeen {
    /// Its source (the router's link-local address).
    pub from: Ipv6Addr,
    /// `router lifetime Ns`.
    pub router_lifetime: u32,
    /// Prefix information options: `PREFIX/LEN`, flags (`onlink, auto`),
    /// valid and preferred lifetimes.
    pub prefixes: Vec<(String, String, u32, u32)>,
    pub mtu: Option<u32>,
    /// RDNSS options: lifetime and the servers.
    pub rdnss: Vec<(u32, Vec<Ipv6Addr>)>,
}

/// Parses the router advertisements of `tcpdump -n -v` output (a `router
/// advertisement` line, then its option lines).
pub fn parse_router_adverts(lines: &[String]) -> Vec<RouterAdvertSeen> {
    let mut out: Vec<RouterAdvertSeen> = Vec::new();
    let secs = |s: &str| s.trim().trim_end_matches('s').parse::<u32>().ok();
    for line in lines {
        if line.contains("ICMP6, router advertisement") {
            let from = parse_tcpdump6_verbose(std::slice::from_ref(line))
                .first()
                .map_or(Ipv6Addr::UNSPECIFIED, |p| p.src);
            out.push(RouterAdvertSeen {
                from,
                router_lifetime: 0,
                prefixes: Vec::new(),
                mtu: None,
                rdnss: Vec::new(),
            });
            continue;
        }
        let Some(ra) = out.last_mut() else { continue };
        let l = line.trim();
        if let Some(rest) = l.split_once("router lifetime ").map(|(_, r)| r) {
            ra.router_lifetime = rest.split(',').next().and_then(secs).unwrap_or(0);
        } else if l.starts_with("prefix info option") {
            // prefix info option (3), length 32 (4): fd00:10::/64, Flags
            // [onlink, auto], valid time 86400s, pref. time 14400s
            let Some((_, body)) = l.split_once("): ") else {
                continue;
            };
            let prefix = body.split(',').next().unwrap_or("").to_owned();
            let flags = body
                .split_once("Flags [")
                .and_then(|(_, r)| r.split_once(']'))
                .map_or("", |(f, _)| f)
                .to_owned();
            let valid = body
                .split_once("valid time ")
                .and_then(|(_, r)| secs(r.split(',').next().unwrap_or("")));
            let pref = body
                .split_once("pref. time ")
                .and_then(|(_, r)| secs(r.split(',').next().unwrap_or("")));
            ra.prefixes
                .push((prefix, flags, valid.unwrap_or(0), pref.unwrap_or(0)));
        } else if l.starts_with("mtu option") {
            ra.mtu = l.rsplit(' ').next().and_then(|m| m.parse().ok());
        } else if l.starts_with("rdnss option") {
            // rdnss option (25), length 24 (3):  lifetime 600s, addr: fd00:10::53
            let lifetime = l
                .split_once("lifetime ")
                .and_then(|(_, r)| secs(r.split(',').next().unwrap_or("")))
                .unwrap_or(0);
            let addrs = l
                .split("addr: ")
                .skip(1)
                .filter_map(|a| a.split(|c: char| c == ',' || c.is_whitespace()).next())
                .filter_map(|a| a.parse().ok())
                .collect();
            ra.rdnss.push((lifetime, addrs));
        }
    }
    out
}

impl Lab {
    /// Builds the gateway lab of `cfg` dual-stack: the IPv4 lab of
    /// [`Lab::gateway_lab`] unchanged, with the IPv6 plan of this module
    /// beside it, the gateway's IPv6 rules and router advertisements as
    /// `v6` says; a SLAAC client has its address when this returns.
    /// Err for a backend that cannot do IPv6 yet ([`xdpgw_ipv6_support`]),
    /// before anything is built.
    pub fn dual_stack_lab(cfg: &LabConfig, v6: &Ipv6Spec) -> Result<Lab, Ipv6Unsupported> {
        if cfg.backend == Backend::Xdpgw {
            xdpgw_ipv6_support(v6)?;
        }
        Ok(Lab::build(cfg, Some(v6)))
    }

    /// Whether this lab is dual-stack.
    pub fn is_dual_stack(&self) -> bool {
        self.ipv6.is_some()
    }

    /// Addresses and routes of the IPv6 plan on the hosts (the gateway's
    /// own are the backend's).
    pub(super) fn wire6(&mut self, v6: &Ipv6Spec) {
        // Multicast snooping off: the bridge floods neighbour discovery
        // whatever MLD reports it saw (or missed).
        self.lan.exec_ok(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        let static_client = |host: &Netns, addr: Ipv6Addr| {
            host.exec_ok(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{addr}/{LAN6_PREFIX_LEN}"),
                "dev",
                HOST_IF,
                "nodad",
            ]);
            host.exec_ok(&[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &GATEWAY_LAN6.to_string(),
            ]);
        };
        match v6.client {
            ClientAddressing::Static => static_client(&self.client, CLIENT6),
            ClientAddressing::Slaac => {
                // Hosts accept RAs unless forwarding; 2 says so explicitly.
                self.client
                    .sysctl(&format!("net.ipv6.conf.{HOST_IF}.accept_ra"), "2");
            }
        }
        static_client(&self.client2, CLIENT2_6);
        let server = &self.server;
        server.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{SERVER6}/{LAN6_PREFIX_LEN}"),
            "dev",
            HOST_IF,
            "nodad",
        ]);
        server.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{FAR6}/128"),
            "dev",
            "lo",
        ]);
        server.exec_ok(&[
            "ip",
            "-6",
            "route",
            "add",
            &format!("{LAN6}/{LAN6_PREFIX_LEN}"),
            "via",
            &GATEWAY_WAN6.to_string(),
        ]);
        self.ipv6 = Some(Ipv6Side {
            radvd: None,
            client: v6.client,
            workdir: WorkDir::new("ipv6"),
        });
    }

    /// The lab's copy of xdpgw's configuration `text` with the IPv6 plan
    /// and `v6`'s rules (written to `dir`/gateway.rules6); lan0 and wan0
    /// without kernel IPv6, so that xdpgw alone answers for its addresses.
    pub(super) fn xdpgw_config6(&self, text: &str, v6: &Ipv6Spec, dir: &Path) -> String {
        for dev in ["lan0", "wan0"] {
            self.gateway
                .sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6"), "1");
        }
        let rules6 = dir.join("gateway.rules6");
        std::fs::write(&rules6, &v6.rules6)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", rules6.display()));
        let mut table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("the lab's configuration: {e}"));
        xdpgw_ipv6_config(&mut table, &rules6, v6.router_advert.as_ref());
        toml::to_string(&table).expect("a TOML table serializes")
    }

    /// The Linux gateway's IPv6: addresses, forwarding, default route via
    /// the server, `ip6tables-restore` of the rules, radvd.
    pub(super) fn start_linux6(&mut self, v6: &Ipv6Spec) {
        let gw = &self.gateway;
        for (dev, addr) in [("lan0", GATEWAY_LAN6), ("wan0", GATEWAY_WAN6)] {
            gw.exec_ok(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{addr}/{LAN6_PREFIX_LEN}"),
                "dev",
                dev,
                "nodad",
            ]);
        }
        gw.sysctl("net.ipv6.conf.all.forwarding", "1");
        gw.exec_ok(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            &SERVER6.to_string(),
        ]);
        if !v6.rules6.trim().is_empty() {
            gw.exec_stdin_ok(&["ip6tables-restore"], &v6.rules6);
        }
        let Some(ra) = &v6.router_advert else {
            return;
        };
        let side = self.ipv6.as_mut().expect("wire6 ran");
        let conf = side.workdir.path().join("radvd.conf");
        std::fs::write(&conf, ra.radvd_conf("lan0"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let pid = side.workdir.path().join("radvd.pid");
        // Subscribed before radvd starts; a first advertisement it misses
        // is repeated within 4 s, and every one refreshes the address.
        let monitor = (side.client == ClientAddressing::Slaac)
            .then(|| self.client.spawn(&["ip", "-6", "monitor", "address"]));
        let (conf, pid) = (conf.display().to_string(), pid.display().to_string());
        side.radvd = Some(
            self.gateway
                .spawn(&["radvd", "-n", "-C", &conf, "-p", &pid, "-m", "stderr"]),
        );
        if let Some(mut m) = monitor {
            m.wait_line("an autoconfigured address", SLAAC_TIMEOUT, |l| {
                l.contains(" scope global ") && l.contains("dynamic")
            });
        }
    }

    /// The first client's SLAAC configuration: its autoconfigured address
    /// (panics if it has none), default route and IPv6 MTU.
    pub fn slaac(&self) -> Slaac {
        let c = &self.client;
        let addrs = c.exec_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", HOST_IF, "scope", "global",
        ]);
        let line = addrs
            .lines()
            .find(|l| l.contains("dynamic"))
            .unwrap_or_else(|| panic!("the client has no autoconfigured address:\n{addrs}"));
        let (address, prefix_len) =
            inet6(line).unwrap_or_else(|| panic!("no inet6 ADDR/LEN in '{line}'"));
        let flags = line
            .split_once(" scope global ")
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .take_while(|w| !w.starts_with('\\') && !w.ends_with("_lft"))
            .collect::<Vec<_>>()
            .join(" ");
        let lft = |key: &str| {
            after(line, key)
                .and_then(|v| v.trim_end_matches("sec").parse().ok())
                .unwrap_or_else(|| panic!("no {key} in '{line}'"))
        };
        let route = c.exec_ok(&["ip", "-6", "route", "show", "default", "dev", HOST_IF]);
        let route = route.lines().next().unwrap_or_default().to_owned();
        let default_via = after(&route, "via")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no default route via a router: '{route}'"));
        let mtu = c.exec_ok(&["cat", &format!("/proc/sys/net/ipv6/conf/{HOST_IF}/mtu")]);
        Slaac {
            address,
            prefix_len,
            flags,
            valid_lft: lft("valid_lft"),
            preferred_lft: lft("preferred_lft"),
            default_via,
            default_proto: after(&route, "proto").unwrap_or_default(),
            mtu: mtu
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("IPv6 MTU '{mtu}'")),
        }
    }

    /// The link-local address of `iface` in `ns`: the kernel's, or, for
    /// an interface xdpgw runs (the kernel's IPv6 off on it), the one xdpgw
    /// derives from its MAC as Linux does (EUI-64).
    pub fn link_local(&self, ns: &Netns, iface: &str) -> Ipv6Addr {
        let out = ns.exec_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", iface, "scope", "link",
        ]);
        if let Some((a, _)) = out.lines().find_map(inet6) {
            return a;
        }
        let mac = ns.exec_ok(&["cat", &format!("/sys/class/net/{iface}/address")]);
        let octets: Vec<u8> = mac
            .trim()
            .split(':')
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        match <[u8; 6]>::try_from(octets) {
            Ok(m) if self.backend == Backend::Xdpgw => {
                xdpgw_dataplane::wire::ipv6::ndp::link_local_eui64(m)
            }
            _ => panic!("{iface} has no link-local address:\n{out}"),
        }
    }

    /// The next `count` router advertisements on the first client's
    /// interface, as tcpdump decodes them (at most `timeout`; radvd
    /// advertises every 3 to 4 seconds).
    pub fn router_adverts(&self, count: usize, timeout: Duration) -> Vec<RouterAdvertSeen> {
        let capture = self.capture(&self.client, HOST_IF, count, "icmp6 and ip6[40] == 134");
        let done = capture.wait(timeout);
        parse_router_adverts(&done.stdout)
    }

    /// Runs `ping -6 -n -c COUNT -i 0.2 -W 2 [extra...] DST` in `ns` (`-t
    /// N` sets the hop limit, `-s N -M do` a size that must not be
    /// fragmented) and parses what it printed.
    pub fn ping6(&self, ns: &Netns, dst: Ipv6Addr, count: u32, extra: &[&str]) -> Ping<Ipv6Addr> {
        self.ping_family(ns, "-6", &dst.to_string(), count, extra)
    }

    /// Sends `probe` from `ns` and returns the answer or the ICMPv6 error
    /// it got within `timeout` (see `udp_probe6.py`).
    pub fn udp_probe6(&self, ns: &Netns, probe: &UdpProbe6, timeout: Duration) -> Probe6 {
        let args = [
            probe.dst.to_string(),
            probe.port.to_string(),
            probe.packet_size.to_string(),
            probe.hop_limit.to_string(),
            probe.tclass.to_string(),
            format!("{}", timeout.as_secs_f64()),
        ];
        let mut all = vec!["python3", "-c", UDP_PROBE6];
        all.extend(args.iter().map(String::as_str));
        let done = ns.run(&all, timeout + Duration::from_secs(30));
        Probe6::parse(done.first_line()).unwrap_or_else(|| panic!("udp_probe6:\n{}", done.report()))
    }

    /// The IPv6 rules in force in save form (`ip6tables-save` on Linux,
    /// `xdpgw save -6` on xdpgw), as [`Lab::rules_in_force`] gives IPv4's.
    pub fn rules6_in_force(&self, counters: bool, table: Option<&str>) -> String {
        let mut args = vec!["-6"];
        if counters {
            args.push("-c");
        }
        if let Some(t) = table {
            args.extend(["-t", t]);
        }
        self.saved_rules("ip6tables-save", &args)
    }

    /// The IPv6 rules in force as `ip6tables -L ARGS` lists them (xdpgw:
    /// `xdpgw list -6 ARGS` through the control socket).
    pub fn list6(&self, args: &[&str]) -> String {
        let out = match self.backend {
            Backend::Linux => {
                let mut linux = vec!["ip6tables", "-L"];
                linux.extend(args);
                self.gateway.exec(&linux)
            }
            Backend::Xdpgw => std::process::Command::new(&self.xdpgw)
                .args(["list", "-6"])
                .args(args)
                .arg("--config")
                .arg(&self.config)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", self.xdpgw.display())),
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "list -6 {args:?}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Packet counters of the IPv6 rules in force (`ip6tables-save -c`),
    /// as [`Lab::packet_counters`] reads IPv4's.
    pub fn packet_counters6(&self, table: Option<&str>) -> BTreeMap<String, u64> {
        packet_counters(&self.rules6_in_force(true, table))
    }

    /// The gateway's IPv6 connections, one per line as `conntrack -L -f
    /// ipv6` prints them (xdpgw: the IPv6 lines of `xdpgw conntrack -L`).
    pub fn conntrack_list6(&self) -> Vec<String> {
        let lines: Vec<String> = match self.backend {
            Backend::Linux => {
                let out = self.gateway.exec(&["conntrack", "-L", "-f", "ipv6"]);
                assert!(
                    out.status.success(),
                    "conntrack -L -f ipv6: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            }
            // /proc's form as conntrack-tools prints it: "ipv6     10 tcp
            // 6 ..." -> "tcp      6 ...", addresses compressed (`%pI6`
            // -> inet_ntop), no `zone=0`.
            Backend::Xdpgw => self
                .conntrack_list()
                .iter()
                .filter_map(|l| l.strip_prefix("ipv6"))
                .filter_map(|l| l.trim_start().split_once(' ').map(|(_, e)| e.trim_start()))
                .map(|e| {
                    e.split(' ')
                        .filter(|w| *w != "zone=0")
                        .map(|w| match w.split_once('=') {
                            Some((k @ ("src" | "dst"), a)) => match a.parse::<Ipv6Addr>() {
                                Ok(a) => format!("{k}={a}"),
                                Err(_) => w.to_owned(),
                            },
                            _ => w.to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        };
        lines
            .into_iter()
            .filter(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("src="))
                    .is_some_and(|a| a.contains(':'))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_mirrors_the_ipv4_plan() {
        assert_eq!(GATEWAY_LAN6.to_string(), "fd00:10::1");
        assert_eq!(CLIENT6.to_string(), "fd00:10::2");
        assert_eq!(CLIENT2_6.to_string(), "fd00:10::3");
        assert_eq!(GATEWAY_WAN6.to_string(), "2001:db8:113::1");
        assert_eq!(SERVER6.to_string(), "2001:db8:113::254");
        assert_eq!(FAR6.to_string(), "2001:db8:100::20");
        assert_eq!(format!("{LAN6}/{LAN6_PREFIX_LEN}"), "fd00:10::/64");
        assert_eq!(WAN6.to_string(), "2001:db8:113::");
    }

    #[test]
    fn radvd_conf_has_every_option() {
        let ra = RouterAdvert {
            mtu: Some(1400),
            rdnss: vec![Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x53)],
            ..RouterAdvert::lan()
        };
        let c = ra.radvd_conf("lan0");
        for want in [
            "interface lan0 {",
            "AdvDefaultLifetime 1800;",
            "AdvLinkMTU 1400;",
            "prefix fd00:10::/64 {",
            "AdvValidLifetime 86400;",
            "AdvPreferredLifetime 14400;",
            "RDNSS fd00:10::53 {",
            "AdvRDNSSLifetime 600;",
        ] {
            assert!(c.contains(want), "{want} missing:\n{c}");
        }
        assert!(!RouterAdvert::lan().radvd_conf("lan0").contains("MTU"));
    }

    #[test]
    fn xdpgw_config_gets_the_ipv6_plan() {
        let mut t: toml::Table = "rules = \"r\"\n[[interface]]\nname = \"lan0\"\naddress = \
                                  \"192.168.10.1/24\"\n[[interface]]\nname = \"wan0\"\naddress \
                                  = \"203.0.113.1/24\"\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \
                                  \"203.0.113.254\"\n"
            .parse()
            .expect("toml");
        xdpgw_ipv6_config(&mut t, Path::new("/x/gateway.rules6"), None);
        let text = toml::to_string(&t).expect("serializes");
        assert!(
            text.contains("address = [\"192.168.10.1/24\", \"fd00:10::1/64\"]"),
            "{text}"
        );
        assert!(
            text.contains("address = [\"203.0.113.1/24\", \"2001:db8:113::1/64\"]"),
            "{text}"
        );
        assert!(text.contains("to = \"::/0\""), "{text}");
        assert!(text.contains("via = \"2001:db8:113::254\""), "{text}");
        assert!(text.contains("rules6 = \"/x/gateway.rules6\""), "{text}");
        assert!(xdpgw_ipv6_support(&Ipv6Spec::new("")).is_ok());
    }

    #[test]
    fn parses_router_adverts_from_tcpdump() {
        let out: Vec<String> = "\
11:06:14.695965 IP6 (flowlabel 0x444e5, hlim 255, next-header ICMPv6 (58) payload length: 88) fe80::4c2e:67ff:fea9:4155 > ff02::1: [icmp6 sum ok] ICMP6, router advertisement, length 88
\thop limit 64, Flags [none], pref medium, router lifetime 1800s, reachable time 0ms, retrans timer 0ms
\t  prefix info option (3), length 32 (4): fd00:10::/64, Flags [onlink, auto], valid time 86400s, pref. time 14400s
\t  rdnss option (25), length 24 (3):  lifetime 600s, addr: fd00:10::53
\t  mtu option (5), length 8 (1):  1400
\t  source link-address option (1), length 8 (1): 4e:2e:67:a9:41:55
1 packet captured"
            .lines()
            .map(str::to_owned)
            .collect();
        let ra = parse_router_adverts(&out);
        assert_eq!(
            ra,
            [RouterAdvertSeen {
                from: "fe80::4c2e:67ff:fea9:4155".parse().expect("addr"),
                router_lifetime: 1800,
                prefixes: vec![("fd00:10::/64".into(), "onlink, auto".into(), 86400, 14400)],
                mtu: Some(1400),
                rdnss: vec![(600, vec![Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x53)])],
            }]
        );
    }
}
