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
