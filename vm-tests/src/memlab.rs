//! The addresses of the in-memory gateway the scenario, differential and
//! driver tests build from conf/gateway.toml (`conf_gateway_config`):
//! its interfaces' MACs and the hosts around it. One place, so that the
//! tests describe the same network.

use std::net::Ipv4Addr;

use crate::frames::Mac;

/// The gateway's MACs: lan0, wan0.
pub const LAN_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x01];
pub const WAN_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
/// Hosts on the LAN and the WAN.
pub const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0a, 0x02];
pub const CLIENT2_MAC: Mac = [0x02, 0, 0, 0, 0x0a, 0x03];
pub const SERVER_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 0x09];
pub const UPSTREAM_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 0xfe];

pub const GW_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
pub const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
pub const CLIENT2: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 3);
/// A server on the WAN's network.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The default route's next hop.
pub const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// A host beyond the upstream router.
pub const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

/// conf/gateway.rules, as text.
pub fn conf_rules() -> String {
    std::fs::read_to_string(crate::workspace_dir().join("conf/gateway.rules"))
        .unwrap_or_else(|e| panic!("conf/gateway.rules: {e}"))
}

/// The in-memory gateway of conf/gateway.toml running `rules` (a rule file's
/// text), with [`LAN_MAC`] and [`WAN_MAC`] and a 4,096-entry conntrack table
/// (no neighbours known yet). A script's `ipset` lines make its sets.
pub fn gateway(rules: &str) -> std::sync::Arc<xdpgw_dataplane::gateway::Gateway> {
    let (sets, rules) =
        xdpgw_control::load_sets_and_rules_str("rules", rules).unwrap_or_else(|e| panic!("{e}"));
    let cfg = crate::conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        xdpgw_dataplane::conntrack::ConntrackConfig {
            max_entries: 4096,
            shards: 16,
            ..xdpgw_dataplane::conntrack::ConntrackConfig::default()
        },
    );
    std::sync::Arc::new(
        xdpgw_dataplane::gateway::Gateway::with_sets(cfg, sets, &rules)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The VLAN gateway's rules: VLAN 10 may reach VLAN 20 (not back), both
/// the WAN through MASQUERADE.
pub const VLAN_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0.10 -o lan0.20 -j ACCEPT
-A FORWARD -i lan0+ -o wan0 -j ACCEPT
COMMIT
";

/// The VLAN gateway: one trunk port (`lan0`, port 0) carrying VLANs 10 and
/// 20 and untagged frames of its own, and wan0 (port 1). Interfaces, in
/// order: lan0.10 10.10.0.1/24, lan0.20 10.20.0.1/24, wan0 203.0.113.1/24
/// (default route via [`UPSTREAM`]), lan0 192.168.10.1/24.
pub const VLAN_CONFIG: &str = r#"
rules = "vlan.rules"

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

[[interface]]
name = "lan0"
address = "192.168.10.1/24"

[[route]]
to = "0.0.0.0/0"
via = "203.0.113.254"
"#;

/// The VLAN gateway's addresses and hosts: the gateway and a client in
/// each VLAN.
pub const GW_V10: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
pub const GW_V20: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
pub const V10_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
pub const V20_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
pub const V10_MAC: Mac = [0x02, 0, 0, 0, 0x10, 0x02];
pub const V20_MAC: Mac = [0x02, 0, 0, 0, 0x20, 0x02];

/// The in-memory gateway of [`VLAN_CONFIG`] running `rules`: the trunk
/// lan0 (port 0) has [`LAN_MAC`], so do its VLAN interfaces; wan0 (port 1)
/// [`WAN_MAC`].
pub fn vlan_gateway(rules: &str) -> std::sync::Arc<xdpgw_dataplane::gateway::Gateway> {
    let rules = xdpgw_control::load_rules_str("rules", rules).unwrap_or_else(|e| panic!("{e}"));
    let cfg = xdpgw_control::config::Config::parse(std::path::Path::new("vlan.toml"), VLAN_CONFIG)
        .unwrap_or_else(|e| panic!("{e}"));
    let macs = [LAN_MAC, WAN_MAC];
    let gw = cfg.gateway_config(
        |p| (macs.get(p).copied().unwrap_or_default(), 1500),
        xdpgw_dataplane::conntrack::ConntrackConfig {
            max_entries: 4096,
            shards: 16,
            ..xdpgw_dataplane::conntrack::ConntrackConfig::default()
        },
    );
    std::sync::Arc::new(
        xdpgw_dataplane::gateway::Gateway::new(gw, &rules).unwrap_or_else(|e| panic!("{e}")),
    )
}
