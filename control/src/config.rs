//! The appliance configuration file (TOML). Its schema is a public
//! interface: fields are only ever added, as optional ones.
//!
//! ```toml
//! rules = "gateway.rules"            # iptables-save file or iptables script; relative to this file
//! rules6 = "gateway.rules6"          # optional: ip6tables-save file or ip6tables script
//! control_socket = "/run/xdpgw.sock" # optional
//! metrics_listen = "127.0.0.1:9469"  # optional: Prometheus text on GET /metrics
//! state_file = "/var/lib/xdpgw/conntrack.state" # optional: the connection table is saved
//!                                    # here when `xdpgw run` stops and restored when it
//!                                    # starts (relative to this file)
//! nat_log = "/var/log/xdpgw/nat.log" # optional: NATed connections' creation and deletion,
//!                                    # as `conntrack -E -o timestamp` prints them
//!
//! [[interface]]
//! name = "lan0"                      # kernel interface xdpgw takes over; the name -i/-o match
//! address = "192.168.10.1/24"        # the gateway's address there
//!
//! [[route]]                          # optional static routes
//! to = "0.0.0.0/0"
//! via = "203.0.113.254"
//!
//! [dataplane]                        # optional
//! workers = 1                        # default: one per core, up to the interfaces' queues
//! xdp_mode = "auto"                  # auto | native | generic
//! zero_copy = "auto"                 # auto | on | off
//! host_path = true                   # optional: the host's own services get a path (TUN devices)
//! frame_size = 4096                  # optional: UMEM frame bytes, 2048 or 4096 (default: the
//!                                    # smaller that holds every interface's MTU)
//!
//! [icmp]                             # optional: Linux's net.ipv4.icmp_* rate limits
//! ratelimit = 1000                   # ms per ICMP error to one destination (burst of 6)
//! ratemask = 0x1818                  # the ICMP types limited (bit per type)
//! msgs_per_sec = 1000                # all destinations together
//! msgs_burst = 50
//! [conntrack]                        # optional
//! max = 262144                       # nf_conntrack_max (default: Linux's for this machine's memory)
//! buckets = 496640                   # nf_conntrack_buckets (default: from max)
//! udp_timeout = 30                   # any net.netfilter.nf_conntrack_* timeout (seconds) or
//! tcp_loose = true                   # tcp_* knob, by the sysctl's name without the prefix
//! [fragments]                        # optional: Linux's net.ipv4.ipfrag_* sysctls
//! high_thresh = 4194304              # bytes of fragments queued before every new one is dropped
//! high_thresh6 = 4194304             # the same for IPv6 fragments, counted apart (ip6frag_high_thresh)
//! time = 30                          # seconds an incomplete datagram's fragments are kept
//! time6 = 60                         # the same for IPv6 datagrams (ip6frag_time)
//! [sync]                             # optional: conntrack state sync with a peer, as conntrackd
//! mode = "ftfw"                      # (see `sync::conf`; or conntrackd_conf = "PATH")
//! interface = "sync0"
//! address = "10.77.0.1"
//! peer = "10.77.0.2"
//! ```
//!
//! An `[[interface]]` may name its host path device with `host_device`
//! (default `xg-` and the interface's name). An 802.1Q VLAN interface names
//! its VLAN and the trunk it is on (the kernel interface xdpgw opens):
//!
//! ```toml
//! [[interface]]
//! name = "lan0.10"                   # the name -i/-o match
//! vlan = 10
//! parent = "lan0"
//! address = "10.10.0.1/24"
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use xdpgw_dataplane::conntrack::{ConntrackConfig, MemInfo, TableLayout, Timeouts, MAX_ENTRIES};
use xdpgw_dataplane::frag::FragConfig;
use xdpgw_dataplane::icmp_limit::IcmpLimitConfig;
use xdpgw_dataplane::link::Link;
use xdpgw_dataplane::ra::{RaConfig, RaPrefix};
use xdpgw_dataplane::route::{Prefix, RoutePolicy, RouteRule, StaticRoute, MAIN_PRIORITY};
use xdpgw_dataplane::rule::Ipv4Net;
use xdpgw_dataplane::wire::vlan::VID_MAX;

use crate::parse::value;

/// The default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/xdpgw.sock";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rules: Spanned<String>,
    rules6: Option<Spanned<String>>,
    control_socket: Option<String>,
    metrics_listen: Option<Spanned<String>>,
    state_file: Option<Spanned<String>>,
    ipsets: Option<Spanned<String>>,
    nat_log: Option<Spanned<String>>,
    #[serde(rename = "interface", default)]
    interfaces: Vec<RawIface>,
    #[serde(rename = "route", default)]
    routes: Vec<RawRoute>,
    #[serde(rename = "rule", default)]
    route_rules: Vec<RawRule>,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    icmp: RawIcmp,
    #[serde(default)]
    conntrack: RawConntrack,
    #[serde(default)]
    fragments: RawFragments,
    sync: Option<crate::sync::conf::RawSync>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIface {
    name: Spanned<String>,
    /// One address (a string) or several (an array): one IPv4, any IPv6.
    address: Spanned<toml::Value>,
    link_local: Option<Spanned<String>>,
    ra: Option<Spanned<RawRa>>,
    host_device: Option<Spanned<String>>,
    vlan: Option<Spanned<i64>>,
    parent: Option<Spanned<String>>,
}

/// `[interface.ra]`: router advertisements, radvd's options by the
/// RFC 4861 variable names, lower case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRa {
    max_interval: Option<u32>,
    min_interval: Option<u32>,
    router_lifetime: Option<u16>,
    hop_limit: Option<u8>,
    managed: Option<bool>,
    other: Option<bool>,
    mtu: Option<u32>,
    reachable_time: Option<u32>,
    retrans_timer: Option<u32>,
    /// Default: the networks of the interface's IPv6 addresses.
    prefixes: Option<Vec<String>>,
    valid_lifetime: Option<u32>,
    preferred_lifetime: Option<u32>,
    autonomous: Option<bool>,
    on_link: Option<bool>,
    rdnss: Option<Vec<String>>,
    rdnss_lifetime: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: Spanned<String>,
    via: Spanned<String>,
    /// The interface, for a link-local gateway (`ip route ... dev`).
    dev: Option<Spanned<String>>,
    /// `ip route ... table N` (default: main).
    table: Option<Spanned<i64>>,
}

/// `[[rule]]`: `ip rule add [fwmark M[/MASK]] [from NET] [priority P]
/// table T`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    fwmark: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    table: Spanned<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    workers: Option<Spanned<usize>>,
    xdp_mode: Option<Spanned<String>>,
    zero_copy: Option<Spanned<String>>,
    host_path: Option<bool>,
    frame_size: Option<Spanned<i64>>,
}

/// `[icmp]`: Linux's `net.ipv4.icmp_*` rate-limit sysctls, same names and
/// units.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmp {
    ratelimit: Option<u32>,
    ratemask: Option<u32>,
    msgs_per_sec: Option<u32>,
    msgs_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    max: Option<Spanned<i64>>,
    buckets: Option<Spanned<i64>>,
    tcp_loose: Option<bool>,
    tcp_be_liberal: Option<bool>,
    tcp_ignore_invalid_rst: Option<bool>,
    tcp_max_retrans: Option<Spanned<i64>>,
    tcp_timeout_syn_sent: Option<Spanned<i64>>,
    tcp_timeout_syn_recv: Option<Spanned<i64>>,
    tcp_timeout_established: Option<Spanned<i64>>,
    tcp_timeout_fin_wait: Option<Spanned<i64>>,
    tcp_timeout_close_wait: Option<Spanned<i64>>,
    tcp_timeout_last_ack: Option<Spanned<i64>>,
    tcp_timeout_time_wait: Option<Spanned<i64>>,
    tcp_timeout_close: Option<Spanned<i64>>,
    tcp_timeout_max_retrans: Option<Spanned<i64>>,
    tcp_timeout_unacknowledged: Option<Spanned<i64>>,
    udp_timeout: Option<Spanned<i64>>,
    udp_timeout_stream: Option<Spanned<i64>>,
    icmp_timeout: Option<Spanned<i64>>,
    generic_timeout: Option<Spanned<i64>>,
}

/// A conntrack timeout of `[conntrack]`: its key (the suffix of Linux's
/// `net.netfilter.nf_conntrack_` sysctl), where the raw section has it,
/// and the timeout it sets.
struct TimeoutKey {
    name: &'static str,
    raw: fn(&RawConntrack) -> &Option<Spanned<i64>>,
    set: fn(&mut Timeouts) -> &mut u64,
}

const TIMEOUT_KEYS: [TimeoutKey; 14] = [
    TimeoutKey {
        name: "tcp_timeout_syn_sent",
        raw: |r| &r.tcp_timeout_syn_sent,
        set: |t| &mut t.tcp_syn_sent,
    },
    TimeoutKey {
        name: "tcp_timeout_syn_recv",
        raw: |r| &r.tcp_timeout_syn_recv,
        set: |t| &mut t.tcp_syn_recv,
    },
    TimeoutKey {
        name: "tcp_timeout_established",
        raw: |r| &r.tcp_timeout_established,
        set: |t| &mut t.tcp_established,
    },
    TimeoutKey {
        name: "tcp_timeout_fin_wait",
        raw: |r| &r.tcp_timeout_fin_wait,
        set: |t| &mut t.tcp_fin_wait,
    },
    TimeoutKey {
        name: "tcp_timeout_close_wait",
        raw: |r| &r.tcp_timeout_close_wait,
        set: |t| &mut t.tcp_close_wait,
    },
    TimeoutKey {
        name: "tcp_timeout_last_ack",
        raw: |r| &r.tcp_timeout_last_ack,
        set: |t| &mut t.tcp_last_ack,
    },
    TimeoutKey {
        name: "tcp_timeout_time_wait",
        raw: |r| &r.tcp_timeout_time_wait,
        set: |t| &mut t.tcp_time_wait,
    },
    TimeoutKey {
        name: "tcp_timeout_close",
        raw: |r| &r.tcp_timeout_close,
        set: |t| &mut t.tcp_close,
    },
    TimeoutKey {
        name: "tcp_timeout_max_retrans",
        raw: |r| &r.tcp_timeout_max_retrans,
        set: |t| &mut t.tcp_max_retrans,
    },
    TimeoutKey {
        name: "tcp_timeout_unacknowledged",
        raw: |r| &r.tcp_timeout_unacknowledged,
        set: |t| &mut t.tcp_unacknowledged,
    },
    TimeoutKey {
        name: "udp_timeout",
        raw: |r| &r.udp_timeout,
        set: |t| &mut t.udp,
    },
    TimeoutKey {
        name: "udp_timeout_stream",
        raw: |r| &r.udp_timeout_stream,
        set: |t| &mut t.udp_stream,
    },
    TimeoutKey {
        name: "icmp_timeout",
        raw: |r| &r.icmp_timeout,
        set: |t| &mut t.icmp,
    },
    TimeoutKey {
        name: "generic_timeout",
        raw: |r| &r.generic_timeout,
        set: |t| &mut t.generic,
    },
];

/// The longest timeout Linux's sysctls take: an int of jiffies at
/// HZ=1000, in seconds.
const MAX_TIMEOUT_SECS: i64 = i32::MAX as i64 / 1000;

/// `[fragments]`: Linux's `net.ipv4.ipfrag_high_thresh`, `ipfrag_time`,
/// `net.ipv6.ip6frag_high_thresh` and `ip6frag_time`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragments {
    high_thresh: Option<Spanned<i64>>,
    high_thresh6: Option<Spanned<i64>>,
    time: Option<Spanned<i64>>,
    time6: Option<Spanned<i64>>,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeConfig {
    Auto,
    Native,
    Generic,
}

/// AF_XDP zero-copy choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopyConfig {
    Auto,
    On,
    Off,
}

/// One interface xdpgw takes over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// IPv6 addresses and prefixes (`address` may list them).
    pub addr6: Vec<(Ipv6Addr, u8)>,
    /// `link_local`; by default derived from the MAC as Linux does.
    pub link_local: Option<Ipv6Addr>,
    /// `[interface.ra]`: router advertisements sent there.
    pub ra: Option<RaConfig>,
    /// The host path's device for this interface (`host_device`, default
    /// `xg-` and the interface's name, cut to 15 bytes).
    pub host_device: String,
    /// An 802.1Q VLAN interface (`vlan` and `parent`): frames tagged with
    /// this VLAN on the parent (trunk) interface. None: the interface is
    /// the kernel interface `name` itself.
    pub vlan: Option<VlanConfig>,
}

/// A VLAN interface's VLAN and the kernel interface it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanConfig {
    /// The VLAN id, 1 to 4094.
    pub id: u16,
    /// The trunk: the kernel interface xdpgw opens for it.
    pub parent: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    pub workers: Option<usize>,
    pub xdp_mode: XdpModeConfig,
    pub zero_copy: ZeroCopyConfig,
    /// Whether the host gets a path to its own services (default: yes).
    pub host_path: bool,
    /// The UMEM frame size, if set (else chosen from the interfaces' MTUs:
    /// [`xdpgw_dataplane::port::frame_size_for`]).
    pub frame_size: Option<u32>,
}

/// A value from the file, with where it was written (for errors found
/// after parsing, such as a table too large for the machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

/// The `[conntrack]` section: the table's size, as Linux's sysctls of the
/// same names set it. Unset values take the defaults of
/// [`xdpgw_dataplane::conntrack::ConntrackConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConntrackFileConfig {
    /// `nf_conntrack_max`: the most entries (1 to
    /// [`MAX_ENTRIES`]).
    pub max: Option<Placed<usize>>,
    /// `nf_conntrack_buckets` (`hashsize`): key-table buckets, at least
    /// `max`.
    pub buckets: Option<Placed<usize>>,
    /// `nf_conntrack_tcp_loose`, `_tcp_be_liberal`,
    /// `_tcp_ignore_invalid_rst`, `_tcp_max_retrans`.
    pub tcp_loose: Option<bool>,
    pub tcp_be_liberal: Option<bool>,
    pub tcp_ignore_invalid_rst: Option<bool>,
    pub tcp_max_retrans: Option<u8>,
    /// Timeouts set (by the sysctl name's suffix, e.g. `udp_timeout`), in seconds.
    pub timeouts: Vec<(&'static str, u64)>,
}

/// A checked configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The rule file, resolved relative to the configuration file.
    pub rules: PathBuf,
    /// The IPv6 rule file (`rules6`: ip6tables-save form or a script of
    /// `ip6tables` lines), resolved relative to the configuration file.
    pub rules6: Option<PathBuf>,
    pub control_socket: PathBuf,
    /// Where `xdpgw run` serves `GET /metrics` (HTTP), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where `xdpgw run` saves its connection table when it stops and
    /// restores it from when it starts (`state_file`, resolved relative to
    /// the configuration file), if anywhere.
    pub state_file: Option<PathBuf>,
    /// Where the NAT event log goes (`nat_log`, resolved relative to the
    /// configuration file), if anywhere.
    pub nat_log: Option<PathBuf>,
    /// An `ipset save` file of the sets the rules may name, loaded before
    /// them (`ipsets`, resolved relative to the configuration file).
    pub ipsets: Option<PathBuf>,
    pub interfaces: Vec<InterfaceConfig>,
    /// Where each interface's `name` stands in the file (line, column), for
    /// errors about an interface found only when the gateway starts.
    pub interface_places: Vec<(usize, usize)>,
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// IPv6 static routes (`[[route]]` with IPv6 addresses).
    pub routes6: Vec<StaticRoute<Ipv6Addr>>,
    /// Routes of other tables and the rules that choose them
    /// (`[[route]] table`, `[[rule]]`).
    pub route_policy: RoutePolicy,
    pub dataplane: DataplaneConfig,
    /// ICMP error rate limits (`[icmp]`; Linux's defaults).
    pub icmp: IcmpLimitConfig,
    pub conntrack: ConntrackFileConfig,
    /// IPv4 reassembly (`[fragments]`; Linux's defaults).
    pub fragments: FragConfig,
    /// Conntrack state sync with a peer (`[sync]`), if any.
    pub sync: Option<crate::sync::conf::SyncConfig>,
}

/// A configuration error at `file:line:column` (line 0: about the whole
/// file, e.g. it cannot be read).
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::error::fmt_at(
            f,
            &self.file,
            self.line as u64,
            self.column as u64,
            &self.message,
        )
    }
}

impl std::error::Error for ConfigError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Checks a configuration's text; `path` names it and anchors `rules`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError {
                file: file.clone(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at(span, e.message().to_string())
        })?;
        if raw.interfaces.is_empty() {
            return Err(at(
                0..0,
                "no [[interface]]: the gateway needs at least one".into(),
            ));
        }
        let mut interfaces = Vec::new();
        let mut interface_places = Vec::new();
        for i in &raw.interfaces {
            let name = i.name.get_ref();
            if name.is_empty() || name.len() > 15 {
                return Err(at(
                    i.name.span(),
                    format!("bad interface name '{name}': 1 to 15 characters"),
                ));
            }
            if interfaces.iter().any(|x: &InterfaceConfig| &x.name == name) {
                return Err(at(
                    i.name.span(),
                    format!("interface '{name}' is listed twice"),
                ));
            }
            let (addr, prefix, addr6) =
                iface_addresses(i.address.get_ref()).map_err(|e| at(i.address.span(), e))?;
            let link_local = match &i.link_local {
                None => None,
                Some(l) => Some(
                    l.get_ref()
                        .parse::<Ipv6Addr>()
                        .ok()
                        .filter(Ipv6Addr::is_unicast_link_local)
                        .ok_or_else(|| {
                            at(
                                l.span(),
                                format!(
                                    "bad link_local '{}': an IPv6 address in fe80::/10",
                                    l.get_ref()
                                ),
                            )
                        })?,
                ),
            };
            let ra = match &i.ra {
                None => None,
                Some(r) => Some(ra_config(r.get_ref(), &addr6).map_err(|e| at(r.span(), e))?),
            };
            let host_device = match &i.host_device {
                Some(d) => {
                    let dev = d.get_ref();
                    if dev.is_empty() || dev.len() > 15 || dev.contains(['/', ' ', '\0']) {
                        return Err(at(
                            d.span(),
                            format!(
                                "bad host_device '{dev}': 1 to 15 characters, no '/' or blanks"
                            ),
                        ));
                    }
                    dev.clone()
                }
                None => default_host_device(name),
            };
            let vlan = match (&i.vlan, &i.parent) {
                (None, None) => None,
                (Some(v), None) => {
                    return Err(at(
                        v.span(),
                        format!(
                            "interface '{name}' has a vlan but no parent (the trunk's name, \
                             parent = \"lan0\")"
                        ),
                    ))
                }
                (None, Some(p)) => {
                    return Err(at(
                        p.span(),
                        format!("interface '{name}' has a parent but no vlan (1 to 4094)"),
                    ))
                }
                (Some(v), Some(p)) => {
                    let id = u16::try_from(*v.get_ref())
                        .ok()
                        .filter(|id| (1..=VID_MAX).contains(id))
                        .ok_or_else(|| {
                            at(
                                v.span(),
                                format!("bad vlan {}: 1 to {VID_MAX}", v.get_ref()),
                            )
                        })?;
                    let parent = p.get_ref();
                    if parent.is_empty() || parent.len() > 15 || parent == name {
                        return Err(at(
                            p.span(),
                            format!(
                                "bad parent '{parent}': another kernel interface, 1 to 15 \
                                 characters"
                            ),
                        ));
                    }
                    Some(VlanConfig {
                        id,
                        parent: parent.clone(),
                    })
                }
            };
            interfaces.push(InterfaceConfig {
                name: name.clone(),
                addr,
                prefix,
                addr6,
                link_local,
                ra,
                host_device,
                vlan,
            });
            interface_places.push(line_col(text, i.name.span().start));
        }
        for (k, i) in interfaces.iter().enumerate() {
            let clash = interfaces
                .iter()
                .enumerate()
                .any(|(j, o)| o.name == i.host_device || (j < k && o.host_device == i.host_device));
            if clash {
                let span = raw.interfaces[k]
                    .host_device
                    .as_ref()
                    .map_or(raw.interfaces[k].name.span(), |d| d.span());
                return Err(at(
                    span,
                    format!(
                        "host device '{}' of interface '{}' clashes with another interface or \
                         host device (set host_device)",
                        i.host_device, i.name
                    ),
                ));
            }
        }
        // VLANs: on a kernel interface that is no VLAN interface itself
        // (no stacked tags), each VLAN of a trunk once.
        for (k, i) in interfaces.iter().enumerate() {
            let Some(v) = &i.vlan else { continue };
            let span = || {
                raw.interfaces[k]
                    .parent
                    .as_ref()
                    .map_or(raw.interfaces[k].name.span(), |p| p.span())
            };
            if interfaces
                .iter()
                .any(|o| o.name == v.parent && o.vlan.is_some())
            {
                return Err(at(
                    span(),
                    format!(
                        "parent '{}' of interface '{}' is a VLAN interface itself (stacked \
                         VLANs are not supported)",
                        v.parent, i.name
                    ),
                ));
            }
            if let Some(o) = interfaces[..k].iter().find(|o| o.vlan.as_ref() == Some(v)) {
                return Err(at(
                    span(),
                    format!(
                        "interfaces '{}' and '{}' are both VLAN {} of '{}'",
                        o.name, i.name, v.id, v.parent
                    ),
                ));
            }
        }
        let mut routes = Vec::new();
        let mut routes6: Vec<StaticRoute<Ipv6Addr>> = Vec::new();
        let mut route_policy = RoutePolicy::default();
        for r in &raw.routes {
            if r.to.get_ref().contains(':') || r.via.get_ref().contains(':') {
                routes6.push(route6(r, &interfaces, &at)?);
                continue;
            }
            if let Some(d) = &r.dev {
                return Err(at(
                    d.span(),
                    "dev is for IPv6 routes via a link-local gateway".into(),
                ));
            }
            let (addr, prefix) = parse_cidr(r.to.get_ref()).map_err(|e| {
                at(
                    r.to.span(),
                    format!("bad route destination '{}': {e}", r.to.get_ref()),
                )
            })?;
            let net = Ipv4Net::with_prefix(addr, prefix)
                .ok_or_else(|| at(r.to.span(), "bad prefix".into()))?;
            let via = value::ipv4(r.via.get_ref()).map_err(|e| {
                at(
                    r.via.span(),
                    format!("bad gateway '{}': {e}", r.via.get_ref()),
                )
            })?;
            if !interfaces
                .iter()
                .any(|i| Ipv4Net::with_prefix(i.addr, i.prefix).is_some_and(|n| n.contains(via)))
            {
                return Err(at(
                    r.via.span(),
                    format!("gateway {via} is not on the network of any [[interface]]"),
                ));
            }
            match &r.table {
                None => routes.push((net, via)),
                Some(t) => {
                    let table = table_id(t, &at)?;
                    route_policy.routes.push((table, net.into(), via));
                }
            }
        }
        // `ip rule add` without a priority takes one less than the lowest
        // rule so far below main's (32765 first).
        let mut next_priority = MAIN_PRIORITY - 1;
        for r in &raw.route_rules {
            let table = table_id(&r.table, &at)?;
            let fwmark = match &r.fwmark {
                None => None,
                Some(m) => Some(parse_fwmark(m.get_ref()).ok_or_else(|| {
                    at(
                        m.span(),
                        format!(
                            "bad fwmark '{}': a mark[/mask], each a 32-bit number (0x.. for hex)",
                            m.get_ref()
                        ),
                    )
                })?),
            };
            let from = match &r.from {
                None => None,
                Some(f) => {
                    let (addr, prefix) = parse_cidr(f.get_ref()).map_err(|e| {
                        at(f.span(), format!("bad rule source '{}': {e}", f.get_ref()))
                    })?;
                    Some(
                        Ipv4Net::with_prefix(addr, prefix)
                            .ok_or_else(|| at(f.span(), "bad prefix".into()))?,
                    )
                }
            };
            let priority = match &r.priority {
                None => next_priority,
                Some(p) => u32::try_from(*p.get_ref())
                    .ok()
                    .filter(|p| *p != 0 && *p != MAIN_PRIORITY)
                    .ok_or_else(|| {
                        at(
                            p.span(),
                            format!(
                                "bad priority {}: 1 to 4294967295, not {MAIN_PRIORITY} (main's)",
                                p.get_ref()
                            ),
                        )
                    })?,
            };
            next_priority = next_priority.min(priority.saturating_sub(1)).max(1);
            route_policy.rules.push(RouteRule {
                priority,
                fwmark,
                from: from.map(Into::into),
                table,
            });
        }
        let xdp_mode = match raw
            .dataplane
            .xdp_mode
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("auto", _)) => XdpModeConfig::Auto,
            Some(("native", _)) => XdpModeConfig::Native,
            Some(("generic", _)) => XdpModeConfig::Generic,
            Some((other, span)) => {
                return Err(at(
                    span,
                    format!("bad xdp_mode '{other}': auto, native or generic"),
                ))
            }
        };
        let zero_copy = match raw
            .dataplane
            .zero_copy
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("auto", _)) => ZeroCopyConfig::Auto,
            Some(("on", _)) => ZeroCopyConfig::On,
            Some(("off", _)) => ZeroCopyConfig::Off,
            Some((other, span)) => {
                return Err(at(
                    span,
                    format!("bad zero_copy '{other}': auto, on or off"),
                ))
            }
        };
        let frame_size = match &raw.dataplane.frame_size {
            None => None,
            Some(f) if matches!(*f.get_ref(), 2048 | 4096) => Some(*f.get_ref() as u32),
            Some(f) => {
                return Err(at(
                    f.span(),
                    format!(
                        "bad frame_size {}: 2048 or 4096 (Linux takes no UMEM frame larger \
                         than a page)",
                        f.get_ref()
                    ),
                ))
            }
        };
        let workers = match &raw.dataplane.workers {
            Some(w) if *w.get_ref() == 0 => {
                return Err(at(w.span(), "workers must be at least 1".into()))
            }
            w => w.as_ref().map(|w| *w.get_ref()),
        };
        let metrics_listen = match &raw.metrics_listen {
            None => None,
            Some(m) => Some(m.get_ref().parse().map_err(|_| {
                at(
                    m.span(),
                    format!(
                        "bad metrics_listen '{}': an address and port, like 127.0.0.1:9469",
                        m.get_ref()
                    ),
                )
            })?),
        };
        let conntrack = check_conntrack(&raw.conntrack, &at, |span| line_col(text, span.start))?;
        let fragments = check_fragments(&raw.fragments, &at)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let state_file = match &raw.state_file {
            None => None,
            Some(f) if f.get_ref().is_empty() || f.get_ref().ends_with('/') => {
                return Err(at(
                    f.span(),
                    format!("bad state_file '{}': the path of a file", f.get_ref()),
                ))
            }
            Some(f) => Some(base.join(f.get_ref())),
        };
        let nat_log = match &raw.nat_log {
            None => None,
            Some(f) if f.get_ref().is_empty() || f.get_ref().ends_with('/') => {
                return Err(at(
                    f.span(),
                    format!("bad nat_log '{}': the path of a file", f.get_ref()),
                ))
            }
            Some(f) => Some(base.join(f.get_ref())),
        };
        let ipsets = match &raw.ipsets {
            None => None,
            Some(f) if f.get_ref().is_empty() || f.get_ref().ends_with('/') => {
                return Err(at(
                    f.span(),
                    format!("bad ipsets '{}': the path of a file", f.get_ref()),
                ))
            }
            Some(f) => Some(base.join(f.get_ref())),
        };
        let sync = match &raw.sync {
            None => None,
            Some(r) => Some(r.check(base, &at)?),
        };
        let rules6 = match &raw.rules6 {
            None => None,
            Some(f) if f.get_ref().is_empty() || f.get_ref().ends_with('/') => {
                return Err(at(
                    f.span(),
                    format!("bad rules6 '{}': the path of a file", f.get_ref()),
                ))
            }
            Some(f) => Some(base.join(f.get_ref())),
        };
        Ok(Config {
            sync,
            path: path.to_path_buf(),
            ipsets,
            rules6,
            rules: base.join(raw.rules.get_ref()),
            control_socket: PathBuf::from(raw.control_socket.as_deref().unwrap_or(DEFAULT_SOCKET)),
            metrics_listen,
            state_file,
            nat_log,
            interfaces,
            interface_places,
            routes,
            routes6,
            route_policy,
            dataplane: DataplaneConfig {
                workers,
                xdp_mode,
                zero_copy,
                host_path: raw.dataplane.host_path.unwrap_or(true),
                frame_size,
            },
            icmp: {
                let d = IcmpLimitConfig::default();
                IcmpLimitConfig {
                    ratelimit_ms: raw.icmp.ratelimit.unwrap_or(d.ratelimit_ms),
                    ratemask: raw.icmp.ratemask.unwrap_or(d.ratemask),
                    msgs_per_sec: raw.icmp.msgs_per_sec.unwrap_or(d.msgs_per_sec),
                    msgs_burst: raw.icmp.msgs_burst.unwrap_or(d.msgs_burst),
                }
            },
            conntrack,
            fragments,
        })
    }

    /// The conntrack table this configuration asks for: the defaults
    /// (sized like Linux's for this machine's memory) with `[conntrack]`'s
    /// settings.
    pub fn conntrack_config(&self) -> ConntrackConfig {
        self.conntrack.apply(ConntrackConfig::default())
    }

    /// Whether the machine has the memory for the configured table at its
    /// maximum (`TableLayout::bytes`: every slot with its TCP line, and the
    /// key tables) available now (`MemAvailable`). Checked only when
    /// `[conntrack]` sets a size (the default is Linux's for this machine's
    /// memory); the error names the setting.
    pub fn check_conntrack_memory(
        &self,
        layout: &TableLayout,
        mem: &MemInfo,
    ) -> Result<(), ConfigError> {
        let Some(at) = self
            .conntrack
            .max
            .as_ref()
            .or(self.conntrack.buckets.as_ref())
        else {
            return Ok(());
        };
        let need = layout.bytes();
        if need <= mem.available {
            return Ok(());
        }
        Err(ConfigError {
            file: self.path.display().to_string(),
            line: at.line,
            column: at.column,
            message: format!(
                "a conntrack table of max {} and {} buckets needs {} at its maximum; this machine \
                 has {} available (MemAvailable; MemTotal {})",
                layout.max_entries,
                layout.buckets(),
                bytes_text(need),
                bytes_text(mem.available),
                bytes_text(mem.total)
            ),
        })
    }
}

impl ConntrackFileConfig {
    /// `base` with this section's settings.
    pub fn apply(&self, base: ConntrackConfig) -> ConntrackConfig {
        let mut timeouts = base.timeouts;
        for (name, secs) in &self.timeouts {
            if let Some(k) = TIMEOUT_KEYS.iter().find(|k| k.name == *name) {
                *(k.set)(&mut timeouts) = secs.saturating_mul(1_000_000_000);
            }
        }
        ConntrackConfig {
            max_entries: self.max.map_or(base.max_entries, |m| m.value),
            buckets: self.buckets.map(|b| b.value).or(base.buckets),
            tcp_loose: self.tcp_loose.unwrap_or(base.tcp_loose),
            tcp_be_liberal: self.tcp_be_liberal.unwrap_or(base.tcp_be_liberal),
            tcp_ignore_invalid_rst: self
                .tcp_ignore_invalid_rst
                .unwrap_or(base.tcp_ignore_invalid_rst),
            tcp_max_retrans: self.tcp_max_retrans.unwrap_or(base.tcp_max_retrans),
            timeouts,
            ..base
        }
    }
}

/// What differs between two conntrack configurations' judging knobs (the
/// ones that change while running), as `name old -> new` by sysctl name;
/// and whether their sizes differ (those take a restart).
pub fn conntrack_changes(old: &ConntrackConfig, new: &ConntrackConfig) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut flag = |name: &str, a: bool, b: bool| {
        if a != b {
            out.push(format!("{name} {} -> {}", u8::from(a), u8::from(b)));
        }
    };
    flag("tcp_loose", old.tcp_loose, new.tcp_loose);
    flag("tcp_be_liberal", old.tcp_be_liberal, new.tcp_be_liberal);
    flag(
        "tcp_ignore_invalid_rst",
        old.tcp_ignore_invalid_rst,
        new.tcp_ignore_invalid_rst,
    );
    if old.tcp_max_retrans != new.tcp_max_retrans {
        out.push(format!(
            "tcp_max_retrans {} -> {}",
            old.tcp_max_retrans, new.tcp_max_retrans
        ));
    }
    for k in &TIMEOUT_KEYS {
        let (mut a, mut b) = (old.timeouts, new.timeouts);
        let (a, b) = (*(k.set)(&mut a), *(k.set)(&mut b));
        if a != b {
            out.push(format!(
                "{} {} -> {} s",
                k.name,
                a / 1_000_000_000,
                b / 1_000_000_000
            ));
        }
    }
    let resized = old.max_entries != new.max_entries || old.buckets != new.buckets;
    (out, resized)
}

/// Checks `[fragments]`: `high_thresh` and `high_thresh6` from 0 (every
/// fragment of that family dropped) to [`FragConfig::MAX_HIGH_THRESH`]
/// bytes, `time` and `time6` from 1 to 3,600 seconds.
fn check_fragments(
    raw: &RawFragments,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<FragConfig, ConfigError> {
    let d = FragConfig::default();
    let thresh = |key: &str, raw: &Option<Spanned<i64>>, default: usize| match raw {
        None => Ok(default),
        Some(h) => match usize::try_from(*h.get_ref()) {
            Ok(v) if v <= FragConfig::MAX_HIGH_THRESH => Ok(v),
            _ => Err(at(
                h.span(),
                format!(
                    "fragments {key} {} is out of range: 0 to {} bytes (the reassembly \
                     memory is allocated at start)",
                    h.get_ref(),
                    FragConfig::MAX_HIGH_THRESH
                ),
            )),
        },
    };
    let high_thresh = thresh("high_thresh", &raw.high_thresh, d.high_thresh)?;
    let high_thresh6 = thresh("high_thresh6", &raw.high_thresh6, d.high_thresh6)?;
    let secs = |key: &str, raw: &Option<Spanned<i64>>, default: u64| match raw {
        None => Ok(default),
        Some(t) => match u64::try_from(*t.get_ref()) {
            Ok(v) if (1..=3600).contains(&v) => Ok(v * 1_000_000_000),
            _ => Err(at(
                t.span(),
                format!(
                    "fragments {key} {} is out of range: 1 to 3600 seconds",
                    t.get_ref()
                ),
            )),
        },
    };
    Ok(FragConfig {
        high_thresh,
        high_thresh6,
        time: secs("time", &raw.time, d.time)?,
        time6: secs("time6", &raw.time6, d.time6)?,
    })
}

/// Checks `[conntrack]`: `max` from 1 to `MAX_ENTRIES`, `buckets` from
/// `max` (or the default maximum) to `MAX_ENTRIES`.
fn check_conntrack(
    raw: &RawConntrack,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    place: impl Fn(std::ops::Range<usize>) -> (usize, usize),
) -> Result<ConntrackFileConfig, ConfigError> {
    // Negative numbers are below the minimum, as 0 is.
    let placed = |s: &Spanned<i64>| {
        let (line, column) = place(s.span());
        Placed {
            value: usize::try_from(*s.get_ref()).unwrap_or(0),
            line,
            column,
        }
    };
    let max = raw.max.as_ref().map(|m| (placed(m), m.span()));
    if let Some((m, span)) = &max {
        if m.value == 0 {
            return Err(at(
                span.clone(),
                "conntrack max must be at least 1 (the table is allocated at start: there is \
                 no unlimited one)"
                    .into(),
            ));
        }
        if m.value > MAX_ENTRIES {
            return Err(at(
                span.clone(),
                format!(
                    "conntrack max {} is too large: at most {MAX_ENTRIES}",
                    m.value
                ),
            ));
        }
    }
    let buckets = raw.buckets.as_ref().map(|b| (placed(b), b.span()));
    if let Some((b, span)) = &buckets {
        let (max_value, whose) = match &max {
            Some((m, _)) => (m.value, "max"),
            None => (
                ConntrackConfig::default().max_entries,
                "the default max here",
            ),
        };
        if b.value < max_value {
            return Err(at(
                span.clone(),
                format!(
                    "conntrack buckets {} is fewer than {whose} ({max_value}): at least one \
                     bucket per entry (a bucket holds three tuples, an entry has two)",
                    raw.buckets.as_ref().map_or(0, |b| *b.get_ref())
                ),
            ));
        }
        if b.value > MAX_ENTRIES {
            return Err(at(
                span.clone(),
                format!(
                    "conntrack buckets {} is too large: at most {MAX_ENTRIES}",
                    b.value
                ),
            ));
        }
    }
    let mut timeouts = Vec::new();
    for k in &TIMEOUT_KEYS {
        if let Some(v) = (k.raw)(raw) {
            let secs = *v.get_ref();
            if !(0..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(at(
                    v.span(),
                    format!(
                        "conntrack {} {secs} is out of range: seconds, 0 to {MAX_TIMEOUT_SECS}",
                        k.name
                    ),
                ));
            }
            timeouts.push((k.name, secs as u64));
        }
    }
    let tcp_max_retrans = match &raw.tcp_max_retrans {
        None => None,
        Some(v) => Some(u8::try_from(*v.get_ref()).map_err(|_| {
            at(
                v.span(),
                format!(
                    "conntrack tcp_max_retrans {} is out of range: 0 to 255",
                    v.get_ref()
                ),
            )
        })?),
    };
    Ok(ConntrackFileConfig {
        max: max.map(|(m, _)| m),
        buckets: buckets.map(|(b, _)| b),
        tcp_loose: raw.tcp_loose,
        tcp_be_liberal: raw.tcp_be_liberal,
        tcp_ignore_invalid_rst: raw.tcp_ignore_invalid_rst,
        tcp_max_retrans,
        timeouts,
    })
}

/// A routing table's id: 1 to 4294967295, not 255 (local) or 0.
fn table_id(
    t: &Spanned<i64>,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<u32, ConfigError> {
    u32::try_from(*t.get_ref())
        .ok()
        .filter(|t| *t != 0 && *t != 255)
        .ok_or_else(|| {
            at(
                t.span(),
                format!(
                    "bad table {}: 1 to 4294967295 (254 is main; 255, local, cannot be changed)",
                    t.get_ref()
                ),
            )
        })
}

/// `mark` or `mark/mask` (numbers as C's strtoul reads them).
fn parse_fwmark(s: &str) -> Option<(u32, u32)> {
    let num = |t: &str| -> Option<u32> {
        match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => t.parse().ok(),
        }
    };
    match s.split_once('/') {
        None => Some((num(s)?, u32::MAX)),
        Some((v, m)) => {
            let (v, m) = (num(v)?, num(m)?);
            Some((v & m, m))
        }
    }
}

/// `n` bytes in GiB or MiB, for messages.
fn bytes_text(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    }
}

impl InterfaceConfig {
    /// The kernel interface (port) it is on: its own name, or a VLAN's
    /// parent.
    pub fn port_name(&self) -> &str {
        self.vlan.as_ref().map_or(&self.name, |v| &v.parent)
    }
}

impl Config {
    /// The kernel interfaces xdpgw opens (its ports): each interface's own,
    /// or its VLAN's parent, once, in the order the file first names them.
    pub fn ports(&self) -> Vec<String> {
        let mut ports: Vec<String> = Vec::new();
        for i in &self.interfaces {
            if !ports.iter().any(|p| p == i.port_name()) {
                ports.push(i.port_name().to_string());
            }
        }
        ports
    }

    /// Where each interface is: its port (an index into [`Config::ports`])
    /// and VLAN.
    pub fn links(&self) -> Vec<Link> {
        let ports = self.ports();
        self.interfaces
            .iter()
            .map(|i| {
                let port = ports.iter().position(|p| p == i.port_name()).unwrap_or(0) as u8;
                Link {
                    port,
                    vlan: i.vlan.as_ref().map(|v| v.id),
                }
            })
            .collect()
    }

    /// Where the file names port `name` first (an interface's `name` or
    /// `parent`), for errors about it found when the gateway starts.
    pub fn port_place(&self, name: &str) -> Option<(usize, usize)> {
        let k = self.interfaces.iter().position(|i| i.port_name() == name)?;
        self.interface_places.get(k).copied()
    }

    /// The gateway the dataplane builds from this configuration: its
    /// interfaces with the MAC and MTU `link(p)` gives for the port `p`
    /// they are on (a VLAN interface has its trunk's, as Linux's VLAN
    /// devices do), its routes, and `conntrack`.
    pub fn gateway_config(
        &self,
        link: impl Fn(usize) -> ([u8; 6], u16),
        conntrack: ConntrackConfig,
    ) -> xdpgw_dataplane::gateway::GatewayConfig {
        xdpgw_dataplane::gateway::GatewayConfig {
            ifaces: self
                .interfaces
                .iter()
                .zip(self.links())
                .map(|(i, l)| {
                    let (mac, mtu) = link(usize::from(l.port));
                    xdpgw_dataplane::gateway::IfaceConfig {
                        name: i.name.clone(),
                        mac,
                        addr: i.addr,
                        prefix: i.prefix,
                        mtu,
                        link: l,
                        addr6: i.addr6.clone(),
                        link_local: i
                            .link_local
                            .unwrap_or_else(|| xdpgw_dataplane::gateway::link_local_eui64(mac)),
                        ra: i.ra.clone(),
                    }
                })
                .collect(),
            routes: self.routes.clone(),
            routes6: self.routes6.clone(),
            policy: self.route_policy.clone(),
            conntrack,
            icmp: self.icmp,
            frag: self.fragments,
        }
    }
}

/// The host path device's default name for interface `name`.
pub fn default_host_device(name: &str) -> String {
    let mut d = format!("xg-{name}");
    while d.len() > 15 {
        d.pop();
    }
    d
}

/// Most IPv6 addresses an interface takes.
const MAX_ADDR6: usize = 16;

/// An interface's IPv4 address and prefix, and its IPv6 ones.
type IfaceAddresses = (Ipv4Addr, u8, Vec<(Ipv6Addr, u8)>);

/// An `address` value: one string or an array of them, exactly one of
/// them IPv4 (every interface has one today), any IPv6 ones (not
/// link-local: that is `link_local`).
fn iface_addresses(v: &toml::Value) -> Result<IfaceAddresses, String> {
    let list: Vec<&str> = match v {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| format!("bad address {x}: a string, like \"192.0.2.1/24\""))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "bad address {other}: \"addr/prefix\" or a list of them"
            ))
        }
    };
    let mut v4 = None;
    let mut v6: Vec<(Ipv6Addr, u8)> = Vec::new();
    for a in list {
        if a.contains(':') {
            let (addr, prefix) = parse_cidr6(a).map_err(|e| format!("bad address '{a}': {e}"))?;
            if addr.is_unicast_link_local() {
                return Err(format!(
                    "bad address '{a}': a link-local address is set with link_local"
                ));
            }
            if v6.iter().any(|(x, _)| *x == addr) {
                return Err(format!("address '{a}' is listed twice"));
            }
            v6.push((addr, prefix));
        } else {
            let (addr, prefix) = parse_cidr(a).map_err(|e| format!("bad address '{a}': {e}"))?;
            if v4.replace((addr, prefix)).is_some() {
                return Err(format!("bad address '{a}': one IPv4 address per interface"));
            }
        }
    }
    if v6.len() > MAX_ADDR6 {
        return Err(format!("more than {MAX_ADDR6} IPv6 addresses"));
    }
    let (addr, prefix) = v4.ok_or(
        "no IPv4 address: every interface needs one (IPv6-only interfaces are not supported yet)",
    )?;
    Ok((addr, prefix, v6))
}

/// `addr/len` for IPv6; else what is expected there.
fn parse_cidr6(s: &str) -> Result<(Ipv6Addr, u8), &'static str> {
    let (a, p) = s
        .split_once('/')
        .ok_or("expected address/prefix, like 2001:db8::1/64")?;
    let addr: Ipv6Addr = a.parse().map_err(|_| "not an IPv6 address")?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 128)
        .ok_or("the prefix length must be 0-128")?;
    Ok((addr, prefix))
}

/// `[interface.ra]` with radvd's defaults; its prefixes default to the
/// networks of the interface's IPv6 addresses (`addr6`).
fn ra_config(r: &RawRa, addr6: &[(Ipv6Addr, u8)]) -> Result<RaConfig, String> {
    let mut c = RaConfig::with_max_interval(r.max_interval.unwrap_or(600));
    if let Some(v) = r.min_interval {
        c.min_interval = v;
    }
    if let Some(v) = r.router_lifetime {
        c.router_lifetime = v;
    }
    if let Some(v) = r.hop_limit {
        c.hop_limit = v;
    }
    c.managed = r.managed.unwrap_or(false);
    c.other = r.other.unwrap_or(false);
    c.mtu = r.mtu;
    c.reachable_ms = r.reachable_time.unwrap_or(0);
    c.retrans_ms = r.retrans_timer.unwrap_or(0);
    if let Some(v) = r.rdnss_lifetime {
        c.rdnss_lifetime = v;
    }
    let nets: Vec<Prefix<Ipv6Addr>> = match &r.prefixes {
        None => addr6
            .iter()
            .filter_map(|&(a, l)| Prefix::new(a, l))
            .collect(),
        Some(list) => list
            .iter()
            .map(|p| {
                let (a, l) = parse_cidr6(p).map_err(|e| format!("bad prefix '{p}': {e}"))?;
                Prefix::new(a, l).ok_or_else(|| format!("bad prefix '{p}'"))
            })
            .collect::<Result<_, String>>()?,
    };
    if nets.is_empty() {
        return Err(
            "router advertisements without a prefix: give the interface an IPv6 \
                    address or list prefixes"
                .into(),
        );
    }
    for n in nets {
        let mut p = RaPrefix::new(n);
        if let Some(v) = r.valid_lifetime {
            p.valid_lifetime = v;
        }
        if let Some(v) = r.preferred_lifetime {
            p.preferred_lifetime = v;
        }
        p.autonomous = r.autonomous.unwrap_or(true);
        p.on_link = r.on_link.unwrap_or(true);
        if p.autonomous && n.len != 64 {
            return Err(format!(
                "prefix {}/{}: SLAAC needs a /64 (set autonomous = false)",
                n.addr, n.len
            ));
        }
        c.prefixes.push(p);
    }
    for d in r.rdnss.iter().flatten() {
        c.rdnss.push(
            d.parse::<Ipv6Addr>()
                .map_err(|_| format!("bad rdnss '{d}': an IPv6 address"))?,
        );
    }
    c.check()?;
    Ok(c)
}

/// An IPv6 `[[route]]`: `to` and `via` IPv6; a link-local `via` needs
/// `dev`, an interface of the configuration; a global one must be on the
/// network of one of the interfaces' IPv6 addresses.
fn route6(
    r: &RawRoute,
    interfaces: &[InterfaceConfig],
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<StaticRoute<Ipv6Addr>, ConfigError> {
    let (addr, len) = parse_cidr6(r.to.get_ref()).map_err(|e| {
        at(
            r.to.span(),
            format!("bad route destination '{}': {e}", r.to.get_ref()),
        )
    })?;
    let to = Prefix::new(addr, len).ok_or_else(|| at(r.to.span(), "bad prefix".into()))?;
    let via: Ipv6Addr = r.via.get_ref().parse().map_err(|_| {
        at(
            r.via.span(),
            format!(
                "bad gateway '{}': an IPv6 address (the destination is IPv6)",
                r.via.get_ref()
            ),
        )
    })?;
    if let Some(t) = &r.table {
        return Err(at(
            t.span(),
            "IPv6 routes in other tables (policy routing) are not supported yet".into(),
        ));
    }
    let dev = match &r.dev {
        None => None,
        Some(d) => Some(
            interfaces
                .iter()
                .position(|i| &i.name == d.get_ref())
                .and_then(|k| u8::try_from(k).ok())
                .ok_or_else(|| {
                    at(
                        d.span(),
                        format!("dev '{}' is no [[interface]]", d.get_ref()),
                    )
                })?,
        ),
    };
    if dev.is_none() {
        if via.is_unicast_link_local() {
            return Err(at(
                r.via.span(),
                format!("gateway {via} is link-local: name its interface with dev"),
            ));
        }
        let on_link = interfaces.iter().any(|i| {
            i.addr6
                .iter()
                .any(|&(a, l)| Prefix::new(a, l).is_some_and(|n| n.contains(via)))
        });
        if !on_link {
            return Err(at(
                r.via.span(),
                format!("gateway {via} is not on the network of any [[interface]]"),
            ));
        }
    }
    Ok(StaticRoute { to, via, dev })
}

/// `a.b.c.d/len`; else what is expected there.
fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), value::Expected> {
    let (a, p) = s
        .split_once('/')
        .ok_or("expected address/prefix, like 192.0.2.1/24")?;
    let addr = value::ipv4(a)?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or("the prefix length must be 0-32")?;
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
rules = "gateway.rules"
control_socket = "/run/xdpgw-test.sock"

[[interface]]
name = "lan0"
address = "192.168.10.1/24"

[[interface]]
name = "wan0"
address = "203.0.113.1/24"

[[route]]
to = "0.0.0.0/0"
via = "203.0.113.254"

[dataplane]
workers = 1
xdp_mode = "generic"
zero_copy = "off"
"#;

    #[test]
    fn the_documented_schema_loads() {
        let c = Config::parse(Path::new("/etc/xdpgw/gateway.toml"), EXAMPLE).expect("config");
        assert_eq!(c.rules, PathBuf::from("/etc/xdpgw/gateway.rules"));
        assert_eq!(c.control_socket, PathBuf::from("/run/xdpgw-test.sock"));
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[1].addr, Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.dataplane.workers, Some(1));
        assert_eq!(c.dataplane.xdp_mode, XdpModeConfig::Generic);
        assert_eq!(c.dataplane.zero_copy, ZeroCopyConfig::Off);
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn rules6_is_optional_relative_and_checked() {
        let c = Config::parse(Path::new("/etc/xdpgw/gateway.toml"), EXAMPLE).expect("config");
        assert_eq!(c.rules6, None);
        let with = EXAMPLE.replace(
            "rules = \"gateway.rules\"",
            "rules = \"gateway.rules\"\nrules6 = \"gateway.rules6\"",
        );
        let c = Config::parse(Path::new("/etc/xdpgw/gateway.toml"), &with).expect("config");
        assert_eq!(c.rules6, Some(PathBuf::from("/etc/xdpgw/gateway.rules6")));
        let bad = with.replace("\"gateway.rules6\"", "\"\"");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("empty");
        assert!(e.to_string().starts_with("g.toml:3:10: bad rules6"), "{e}");
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        let with = EXAMPLE.replace(
            "control_socket = \"/run/xdpgw-test.sock\"",
            "control_socket = \"/run/xdpgw-test.sock\"\nmetrics_listen = \"127.0.0.1:9469\"",
        );
        let c = Config::parse(Path::new("g.toml"), &with).expect("config");
        assert_eq!(c.metrics_listen, Some(([127, 0, 0, 1], 9469).into()));
        let bad = with.replace("127.0.0.1:9469", "127.0.0.1");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("no port");
        assert_eq!((e.line, e.column), (4, 18), "{e}");
        assert!(
            e.to_string()
                .starts_with("g.toml:4:18: bad metrics_listen '127.0.0.1'"),
            "{e}"
        );
    }

    #[test]
    fn state_file_is_optional_and_relative_to_the_configuration() {
        let c = Config::parse(Path::new("/etc/xdpgw/g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.state_file, None);
        let with = |v: &str| format!("state_file = \"{v}\"\n{EXAMPLE}");
        let c = Config::parse(Path::new("/etc/xdpgw/g.toml"), &with("ct.state")).expect("config");
        assert_eq!(c.state_file, Some(PathBuf::from("/etc/xdpgw/ct.state")));
        let c = Config::parse(
            Path::new("/etc/xdpgw/g.toml"),
            &with("/var/lib/xdpgw/conntrack.state"),
        )
        .expect("config");
        assert_eq!(
            c.state_file,
            Some(PathBuf::from("/var/lib/xdpgw/conntrack.state"))
        );
        for bad in ["", "/var/lib/xdpgw/"] {
            let e = Config::parse(Path::new("g.toml"), &with(bad)).expect_err("bad");
            assert!(
                e.to_string().starts_with("g.toml:1:14: bad state_file"),
                "{e}"
            );
        }
    }

    #[test]
    fn frame_size_is_2048_or_4096() {
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.dataplane.frame_size, None);
        let with = |v: &str| format!("{EXAMPLE}frame_size = {v}\n");
        let c = Config::parse(Path::new("g.toml"), &with("4096")).expect("config");
        assert_eq!(c.dataplane.frame_size, Some(4096));
        for bad in ["9216", "0", "3000"] {
            let e = Config::parse(Path::new("g.toml"), &with(bad)).expect_err("bad");
            assert!(
                e.to_string()
                    .starts_with(&format!("g.toml:21:14: bad frame_size {bad}: 2048 or 4096")),
                "{e}"
            );
        }
    }

    #[test]
    fn host_path_devices() {
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert!(c.dataplane.host_path);
        assert_eq!(c.interfaces[0].host_device, "xg-lan0");
        assert_eq!(default_host_device("averyverylongname"), "xg-averyverylon");
        let named = EXAMPLE.replacen(
            "address = \"192.168.10.1/24\"",
            "address = \"192.168.10.1/24\"\nhost_device = \"office\"",
            1,
        );
        let c = Config::parse(Path::new("g.toml"), &named).expect("config");
        assert_eq!(c.interfaces[0].host_device, "office");
        let clash = EXAMPLE.replacen(
            "address = \"192.168.10.1/24\"",
            "address = \"192.168.10.1/24\"\nhost_device = \"wan0\"",
            1,
        );
        let e = Config::parse(Path::new("g.toml"), &clash).expect_err("clash");
        assert!(
            e.to_string().starts_with("g.toml:8:15: host device 'wan0'"),
            "{e}"
        );
        let off = EXAMPLE.replace(
            "zero_copy = \"off\"",
            "zero_copy = \"off\"\nhost_path = false",
        );
        let c = Config::parse(Path::new("g.toml"), &off).expect("config");
        assert!(!c.dataplane.host_path);
    }

    #[test]
    fn icmp_rate_limits_default_to_linux_and_are_checked() {
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.icmp, IcmpLimitConfig::default());
        let set =
            format!("{EXAMPLE}\n[icmp]\nratelimit = 250\nratemask = 0x0800\nmsgs_burst = 10\n");
        let c = Config::parse(Path::new("g.toml"), &set).expect("config");
        assert_eq!(
            c.icmp,
            IcmpLimitConfig {
                ratelimit_ms: 250,
                ratemask: 0x800,
                msgs_per_sec: 1000,
                msgs_burst: 10,
            }
        );
        let bad = format!("{EXAMPLE}\n[icmp]\nratelimit = -1\n");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("negative");
        assert_eq!((e.line, e.column), (23, 13), "{e}");
        let bad = format!("{EXAMPLE}\n[icmp]\nrate_limit = 1\n");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("unknown key");
        assert!(e.message.contains("rate_limit"), "{e}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = EXAMPLE.replace("203.0.113.1/24", "203.0.113.1/33");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("bad prefix");
        assert_eq!((e.line, e.column), (11, 11), "{e}");
        assert!(
            e.to_string().starts_with("g.toml:11:11: bad address"),
            "{e}"
        );
        let bad = EXAMPLE.replace("xdp_mode", "xdp_mod");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("unknown key");
        assert!(e.to_string().contains("xdp_mod"), "{e}");
        let bad = EXAMPLE.replace("203.0.113.254", "10.9.9.9");
        let e = Config::parse(Path::new("g.toml"), &bad).expect_err("unreachable via");
        assert!(e.message.contains("not on the network"), "{e}");
    }

    /// lan0 untagged and its VLANs 10 and 20, wan0.
    const VLANS: &str = r#"
rules = "gateway.rules"

[[interface]]
name = "lan0.10"
vlan = 10
parent = "lan0"
address = "10.10.0.1/24"

[[interface]]
name = "wan0"
address = "203.0.113.1/24"

[[interface]]
name = "lan0.20"
vlan = 20
parent = "lan0"
address = "10.20.0.1/24"

[[interface]]
name = "lan0"
address = "192.168.10.1/24"
"#;

    #[test]
    fn vlan_interfaces_are_on_their_parent_port() {
        let c = Config::parse(Path::new("g.toml"), VLANS).expect("config");
        assert_eq!(c.ports(), ["lan0", "wan0"]);
        assert_eq!(
            c.links(),
            [
                Link::vlan(0, 10),
                Link::port(1),
                Link::vlan(0, 20),
                Link::port(0)
            ]
        );
        assert_eq!(c.interfaces[0].host_device, "xg-lan0.10");
        assert_eq!(c.port_place("lan0"), Some((5, 8)));
        let gw = c.gateway_config(
            |p| ([2, 0, 0, 0, 0, p as u8], 1400 + p as u16),
            Default::default(),
        );
        assert_eq!(gw.ifaces[2].mac, [2, 0, 0, 0, 0, 0]);
        assert_eq!(gw.ifaces[1].mtu, 1401);
        assert_eq!(gw.ifaces[2].link, Link::vlan(0, 20));
        // No VLAN: the ports are the interfaces.
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.ports(), ["lan0", "wan0"]);
        assert_eq!(c.links(), [Link::port(0), Link::port(1)]);
    }

    const DUAL_STACK: &str = r#"
rules = "gateway.rules"

[[interface]]
name = "lan0"
address = ["192.168.10.1/24", "fd00:10::1/64"]

[interface.ra]
max_interval = 30
rdnss = ["fd00:10::1"]

[[interface]]
name = "wan0"
address = ["203.0.113.1/24", "2001:db8:20::1/64"]
link_local = "fe80::1"

[[route]]
to = "::/0"
via = "2001:db8:20::254"

[[route]]
to = "2001:db8:99::/48"
via = "fe80::99"
dev = "wan0"
"#;

    #[test]
    fn dual_stack_interfaces_routes_and_router_advertisements() {
        let c = Config::parse(Path::new("g.toml"), DUAL_STACK).expect("config");
        let lan = &c.interfaces[0];
        assert_eq!(lan.addr, Ipv4Addr::new(192, 168, 10, 1));
        let ula: Ipv6Addr = "fd00:10::1".parse().expect("addr");
        assert_eq!(lan.addr6, [(ula, 64)]);
        let ra = lan.ra.as_ref().expect("ra");
        assert_eq!(
            (ra.max_interval, ra.min_interval, ra.router_lifetime),
            (30, 9, 90)
        );
        assert_eq!(ra.prefixes.len(), 1);
        assert_eq!(ra.prefixes[0].prefix, Prefix::new(ula, 64).expect("prefix"));
        assert_eq!(ra.rdnss, [ula]);
        assert!(c.interfaces[1].ra.is_none());
        assert_eq!(c.routes6.len(), 2);
        assert_eq!(c.routes6[1].dev, Some(1));
        let gw = c.gateway_config(|p| ([2, 0, 0, 0, 0, p as u8], 1500), Default::default());
        // The link-local address as Linux derives it, unless configured.
        assert_eq!(
            gw.ifaces[0].link_local,
            "fe80::ff:fe00:0".parse::<Ipv6Addr>().expect("addr")
        );
        assert_eq!(
            gw.ifaces[1].link_local,
            "fe80::1".parse::<Ipv6Addr>().expect("addr")
        );
        // The IPv4-only example is unchanged: one string.
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert!(c.interfaces[0].addr6.is_empty() && c.routes6.is_empty());
    }

    #[test]
    fn dual_stack_mistakes_name_line_and_column() {
        for (from, to, at, says) in [
            (
                "\"fd00:10::1/64\"]",
                "\"fd00:10::1/129\"]",
                (6, 11),
                "the prefix length must be 0-128",
            ),
            (
                "\"fd00:10::1/64\"]",
                "\"fe80::1/64\"]",
                (6, 11),
                "link-local address is set with link_local",
            ),
            (
                "[\"192.168.10.1/24\", \"fd00:10::1/64\"]",
                "\"fd00:10::1/64\"",
                (6, 11),
                "no IPv4 address",
            ),
            (
                "link_local = \"fe80::1\"",
                "link_local = \"fd00::1\"",
                (15, 14),
                "bad link_local",
            ),
            (
                "max_interval = 30",
                "max_interval = 3",
                (8, 1),
                "max_interval 3",
            ),
            (
                "via = \"2001:db8:20::254\"",
                "via = \"2001:db8:21::254\"",
                (19, 7),
                "not on the network",
            ),
            (
                "dev = \"wan0\"\n",
                "",
                (23, 7),
                "name its interface with dev",
            ),
            (
                "dev = \"wan0\"",
                "dev = \"wan9\"",
                (24, 7),
                "dev 'wan9' is no [[interface]]",
            ),
        ] {
            let bad = DUAL_STACK.replace(from, to);
            assert_ne!(bad, DUAL_STACK, "{from}");
            let e = Config::parse(Path::new("g.toml"), &bad).expect_err(to);
            assert_eq!((e.line, e.column), at, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn vlan_mistakes_name_line_and_column() {
        for (from, to, at, says) in [
            (
                "vlan = 20",
                "vlan = 4095",
                (16, 8),
                "bad vlan 4095: 1 to 4094",
            ),
            ("vlan = 20", "vlan = 0", (16, 8), "bad vlan 0"),
            (
                "vlan = 20",
                "vlan = 10",
                (17, 10),
                "interfaces 'lan0.10' and 'lan0.20' are both VLAN 10 of 'lan0'",
            ),
            ("vlan = 20\n", "", (16, 10), "has a parent but no vlan"),
            (
                "parent = \"lan0\"\naddress = \"10.20",
                "address = \"10.20",
                (16, 8),
                "has a vlan but no parent",
            ),
            (
                "parent = \"lan0\"\naddress = \"10.20",
                "parent = \"lan0.10\"\naddress = \"10.20",
                (17, 10),
                "is a VLAN interface itself",
            ),
            (
                "parent = \"lan0\"\naddress = \"10.20",
                "parent = \"lan0.20\"\naddress = \"10.20",
                (17, 10),
                "bad parent 'lan0.20'",
            ),
        ] {
            let bad = VLANS.replace(from, to);
            let e = Config::parse(Path::new("g.toml"), &bad).expect_err(to);
            assert_eq!((e.line, e.column), at, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn fragments_default_to_linux_and_are_checked_where_written() {
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.fragments, FragConfig::default());
        assert_eq!(c.fragments.high_thresh, 4 * 1024 * 1024);
        assert_eq!(c.fragments.high_thresh6, 4 * 1024 * 1024);
        assert_eq!(c.fragments.time, 30_000_000_000);
        // IPv6's own time, Linux's ip6frag_time: 60 s.
        assert_eq!(c.fragments.time6, 60_000_000_000);
        let text = format!("{EXAMPLE}\n[fragments]\nhigh_thresh = 262144\ntime = 2\n");
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        assert_eq!(
            c.fragments,
            FragConfig {
                high_thresh: 262_144,
                high_thresh6: 4 * 1024 * 1024,
                time: 2_000_000_000,
                time6: 60_000_000_000,
            }
        );
        // Each family's time set on its own.
        let text = format!("{EXAMPLE}\n[fragments]\ntime6 = 5\n");
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        assert_eq!(
            (c.fragments.time, c.fragments.time6),
            (30_000_000_000, 5_000_000_000)
        );
        // IPv6's limit set on its own, IPv4's left at its default.
        let text = format!("{EXAMPLE}\n[fragments]\nhigh_thresh6 = 1048576\n");
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        assert_eq!(
            (c.fragments.high_thresh, c.fragments.high_thresh6),
            (4 * 1024 * 1024, 1024 * 1024)
        );
        assert_eq!(
            c.gateway_config(|_| ([0; 6], 1500), ConntrackConfig::default())
                .frag,
            c.fragments
        );
        for (section, want) in [
            (
                "time = 0\n",
                "g.toml:23:8: fragments time 0 is out of range: 1 to 3600 seconds",
            ),
            (
                "time6 = 3601\n",
                "g.toml:23:9: fragments time6 3601 is out of range: 1 to 3600 seconds",
            ),
            (
                "high_thresh = -1\n",
                "g.toml:23:15: fragments high_thresh -1 is out of range",
            ),
            (
                "high_thresh6 = 268435457\n",
                "g.toml:23:16: fragments high_thresh6 268435457 is out of range",
            ),
            (
                "low_thresh = 1\n",
                "g.toml:23:1: unknown field `low_thresh`",
            ),
        ] {
            let text = format!("{EXAMPLE}\n[fragments]\n{section}");
            let e = Config::parse(Path::new("g.toml"), &text).expect_err(section);
            assert!(e.to_string().starts_with(want), "{section}: {e}");
        }
    }

    fn with_conntrack(section: &str) -> String {
        format!("{EXAMPLE}\n[conntrack]\n{section}")
    }

    #[test]
    fn route_tables_and_rules() {
        let text = format!(
            "{EXAMPLE}\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"192.168.10.254\"\ntable = 100\n\n\
             [[rule]]\nfwmark = \"0x2/0xff\"\ntable = 100\n\n[[rule]]\nfrom = \"192.168.10.0/25\"\n\
             table = 254\npriority = 10\n"
        );
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        let p = &c.route_policy;
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.routes[0].0, 100);
        assert_eq!(
            p.rules
                .iter()
                .map(|r| (r.priority, r.fwmark, r.table))
                .collect::<Vec<_>>(),
            [(32765, Some((2, 0xff)), 100), (10, None, 254)]
        );
        for (bad, want) in [
            ("[[rule]]\ntable = 255\n", "bad table 255"),
            ("[[rule]]\nfwmark = \"x\"\ntable = 100\n", "bad fwmark 'x'"),
            (
                "[[rule]]\ntable = 100\npriority = 32766\n",
                "bad priority 32766",
            ),
            ("[[rule]]\nfwmark = \"1\"\n", "missing field `table`"),
        ] {
            let e =
                Config::parse(Path::new("g.toml"), &format!("{EXAMPLE}\n{bad}")).expect_err(bad);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn conntrack_knobs_by_their_sysctl_names() {
        let text = with_conntrack(
            "udp_timeout = 5\ntcp_timeout_established = 7200\ntcp_loose = false\n\
             tcp_max_retrans = 5\n",
        );
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        let ct = c.conntrack_config();
        let d = ConntrackConfig::default();
        assert_eq!(ct.timeouts.udp, 5_000_000_000);
        assert_eq!(ct.timeouts.tcp_established, 7_200_000_000_000);
        assert_eq!(ct.timeouts.icmp, d.timeouts.icmp);
        assert!(!ct.tcp_loose);
        assert_eq!(ct.tcp_max_retrans, 5);
        let (changes, resized) = conntrack_changes(&d, &ct);
        assert_eq!(
            changes,
            [
                "tcp_loose 1 -> 0",
                "tcp_max_retrans 3 -> 5",
                "tcp_timeout_established 432000 -> 7200 s",
                "udp_timeout 30 -> 5 s"
            ]
        );
        assert!(!resized);
        for (bad, want) in [
            (
                "udp_timeout = -1",
                "conntrack udp_timeout -1 is out of range",
            ),
            (
                "tcp_max_retrans = 256",
                "conntrack tcp_max_retrans 256 is out of range",
            ),
            ("udp_timeout_streams = 5", "udp_timeout_streams"),
        ] {
            let e = Config::parse(Path::new("g.toml"), &with_conntrack(bad)).expect_err(bad);
            assert!(e.to_string().contains(want), "{e}");
            assert_eq!(e.line, 23, "{e}");
        }
    }

    #[test]
    fn conntrack_size_is_optional_and_applied() {
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        assert_eq!(c.conntrack, ConntrackFileConfig::default());
        assert_eq!(c.conntrack_config(), ConntrackConfig::default());
        let text = with_conntrack("max = 16000000\nbuckets = 16000000\n");
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        let max = c.conntrack.max.expect("max");
        assert_eq!((max.value, max.line, max.column), (16_000_000, 23, 7));
        let ct = c.conntrack_config();
        assert_eq!((ct.max_entries, ct.buckets), (16_000_000, Some(16_000_000)));
        assert_eq!(ct.layout().buckets(), 16_000_000);
        // Only max: buckets follow it.
        let c =
            Config::parse(Path::new("g.toml"), &with_conntrack("max = 1000000\n")).expect("config");
        let ct = c.conntrack_config();
        assert_eq!((ct.max_entries, ct.buckets), (1_000_000, None));
        assert!(ct.layout().buckets() > 1_000_000);
    }

    #[test]
    fn conntrack_sizes_are_checked_where_written() {
        let cases = [
            ("max = 0\n", "g.toml:23:7: conntrack max must be at least 1"),
            (
                "max = 274877906945\n",
                "g.toml:23:7: conntrack max 274877906945 is too large: at most 274877906944",
            ),
            ("max = -5\n", "g.toml:23:7: conntrack max must be at least 1"),
            ("max = \"lots\"\n", "g.toml:23:7: invalid type: string \"lots\""),
            (
                "max = 1000\nbuckets = -1\n",
                "g.toml:24:11: conntrack buckets -1 is fewer than max (1000)",
            ),
            (
                "max = 1000\nbuckets = 999\n",
                "g.toml:24:11: conntrack buckets 999 is fewer than max (1000): at least one bucket per entry",
            ),
            (
                "max = 1000\nbuckets = 274877906945\n",
                "g.toml:24:11: conntrack buckets 274877906945 is too large",
            ),
            ("buckets = 0\n", "g.toml:23:11: conntrack buckets 0 is fewer than the default max here"),
            ("hashsize = 1000\n", "g.toml:23:1: unknown field `hashsize`"),
        ];
        for (section, want) in cases {
            let e =
                Config::parse(Path::new("g.toml"), &with_conntrack(section)).expect_err(section);
            assert!(e.to_string().starts_with(want), "{section}: {e}");
        }
    }

    #[test]
    fn a_table_larger_than_the_available_memory_is_refused() {
        let text = with_conntrack("max = 16000000\n");
        let c = Config::parse(Path::new("g.toml"), &text).expect("config");
        let layout = c.conntrack_config().layout();
        let need = layout.bytes();
        // 16 M entries: about 4.5 GiB at the maximum.
        assert!((4 << 30..5 << 30).contains(&need), "{need}");
        let enough = MemInfo {
            total: 24 << 30,
            available: need,
        };
        assert!(c.check_conntrack_memory(&layout, &enough).is_ok());
        let short = MemInfo {
            total: 8 << 30,
            available: need - 1,
        };
        let e = c
            .check_conntrack_memory(&layout, &short)
            .expect_err("too large");
        assert!(
            e.to_string().starts_with(&format!(
                "g.toml:23:7: a conntrack table of max 16000000 and {} buckets needs 4.",
                layout.buckets()
            )),
            "{e}"
        );
        assert!(
            e.message.ends_with("(MemAvailable; MemTotal 8.0 GiB)"),
            "{e}"
        );
        // Without a size in the file, the default (Linux's for this
        // memory) is not second-guessed.
        let c = Config::parse(Path::new("g.toml"), EXAMPLE).expect("config");
        let tiny = MemInfo {
            total: 1 << 20,
            available: 1 << 20,
        };
        assert!(c.check_conntrack_memory(&layout, &tiny).is_ok());
    }
}
