//! The host path (the gateway's own services) end to end: each scenario runs
//! through Linux with the rules loaded by iptables-restore (the oracle) and
//! through `xdpgw run`, whose host side is a TUN device per interface
//! carrying that interface's address; the observations must be equal.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use xdpgw_vm_tests::lab::{
    Backend, Ipv6Spec, Lab, LabConfig, WorkDir, CLIENT, FAR6, GATEWAY_LAN, GATEWAY_WAN,
    GATEWAY_WAN6, HOST_IF, SERVER,
};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_config, restore_text, workspace_dir};

/// conf/gateway.rules plus a REDIRECT with `--to-ports 2525` for TCP 25 to
/// a forwarded address, 198.51.100.25, and INPUT accepting 2525 from lan0.
fn variant_config(dir: &Path) -> std::path::PathBuf {
    let rules = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules");
    let seed = "-A PREROUTING -i lan0 -d 192.168.10.10 -p tcp --dport 25 -j REDIRECT\n";
    assert!(rules.contains(seed), "conf/gateway.rules changed: {seed}");
    let rules = rules
        .replace(
            seed,
            &format!(
                "{seed}-A PREROUTING -i lan0 -d 198.51.100.25 -p tcp --dport 25 -j REDIRECT \
                 --to-ports 2525\n"
            ),
        )
        .replace("--dports 25,53,443 ", "--dports 25,53,443,2525 ");
    std::fs::write(dir.join("gateway.rules"), rules).expect("write rules");
    let toml = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("conf/gateway.toml");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).expect("write config");
    xdpgw_vm_tests::copy_rules6(dir);
    path
}

fn lab_with(config: &Path) -> impl Fn(Backend) -> Lab + '_ {
    move |backend| {
        Lab::gateway_lab(&LabConfig {
            run_args: vec!["--report-on-exit".to_owned()],
            ..lab_config(backend, config)
        })
    }
}

#[derive(Debug, PartialEq)]
struct ServiceObs {
    /// A client on lan0 fetches from the gateway's HTTPS port.
    from_lan: String,
    /// The TOS byte of the service's first reply, as the client received it.
    reply_tos: u8,
    /// The server on wan0 tries the same port: INPUT drops it.
    from_wan: String,
    /// Who the service saw.
    service_saw: BTreeSet<Ipv4Addr>,
}

#[test]
fn gateway_service_reachable_from_lan_only_with_dscp_46_replies() {
    on_both_backends(
        "gateway_service_reachable_from_lan_only_with_dscp_46_replies",
        |lab| {
            let service = lab.serve(lab.gateway(), &["tcp-serve", "443"]);
            let capture = lab.capture(lab.client(), HOST_IF, 1, "tcp src port 443");
            let from_lan = lab.tool_result(
                lab.client(),
                &[
                    "tcp-get",
                    &ip(GATEWAY_LAN),
                    "443",
                    "1000000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            let reply_tos = captured(capture)[0].tos;
            let from_wan = lab.tool_result(
                lab.server(),
                &[
                    "tcp-connect",
                    &ip(GATEWAY_WAN),
                    "443",
                    "--timeout",
                    DROP_WAIT,
                ],
                TOOL_LIMIT,
            );
            ServiceObs {
                from_lan: outcome(&from_lan),
                reply_tos,
                from_wan,
                service_saw: ips(&peers(service)),
            }
        },
        |o| {
            assert_eq!(o.from_lan, "ok bytes=1000000");
            assert_eq!(o.reply_tos, 46 << 2, "mangle OUTPUT --sport 443 DSCP 46");
            assert_eq!(o.from_wan, "timeout");
            assert_eq!(o.service_saw, BTreeSet::from([CLIENT]));
        },
    );
}

#[derive(Debug, PartialEq)]
struct RedirectObs {
    /// TCP 25 to 192.168.10.10 (REDIRECT): the relay on the gateway's 25.
    to_25: String,
    relay_25_saw: BTreeSet<Ipv4Addr>,
    /// TCP 25 to the forwarded 198.51.100.25 (REDIRECT --to-ports 2525).
    to_2525: String,
    relay_2525_saw: BTreeSet<Ipv4Addr>,
    /// Nothing reached the server.
    server_saw: BTreeSet<Ipv4Addr>,
}

#[test]
fn smtp_redirected_to_the_gateways_relay() {
    let dir = WorkDir::new("host-path");
    let config = variant_config(dir.path());
    on_both_backends_in(
        "smtp_redirected_to_the_gateways_relay",
        lab_with(&config),
        |lab| {
            // 192.168.10.10 is on the LAN's prefix but nobody's: the client
            // reaches it through the gateway, as the relay address it is.
            lab.client().exec_ok(&[
                "ip",
                "route",
                "add",
                "192.168.10.10/32",
                "via",
                &ip(GATEWAY_LAN),
            ]);
            let relay_25 = lab.serve(lab.gateway(), &["tcp-serve", "25"]);
            let relay_2525 = lab.serve(lab.gateway(), &["tcp-serve", "2525"]);
            let server = lab.serve(lab.server(), &["tcp-serve", "25"]);
            let to_25 = lab.tool_result(
                lab.client(),
                &[
                    "tcp-get",
                    "192.168.10.10",
                    "25",
                    "100000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            let to_2525 = lab.tool_result(
                lab.client(),
                &[
                    "tcp-get",
                    "198.51.100.25",
                    "25",
                    "100000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            RedirectObs {
                to_25: outcome(&to_25),
                relay_25_saw: ips(&peers(relay_25)),
                to_2525: outcome(&to_2525),
                relay_2525_saw: ips(&peers(relay_2525)),
                server_saw: ips(&peers(server)),
            }
        },
        |o| {
            assert_eq!(o.to_25, "ok bytes=100000");
            assert_eq!(o.relay_25_saw, BTreeSet::from([CLIENT]));
            assert_eq!(o.to_2525, "ok bytes=100000");
            assert_eq!(o.relay_2525_saw, BTreeSet::from([CLIENT]));
            assert!(o.server_saw.is_empty(), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct OutboundObs {
    /// The gateway itself fetches from the server.
    fetch: String,
    server_saw: BTreeSet<Ipv4Addr>,
    /// The gateway pings the server.
    ping_received: u32,
    /// Conntrack entries of the gateway's own connections to the server.
    tracked: usize,
}

#[test]
fn connections_the_gateway_opens_work_and_are_tracked() {
    on_both_backends(
        "connections_the_gateway_opens_work_and_are_tracked",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let fetch = lab.tool_result(
                lab.gateway(),
                &[
                    "tcp-get",
                    &ip(SERVER),
                    "8080",
                    "1000000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            let ping = lab.ping(lab.gateway(), SERVER, 2, &[]);
            let server_saw = ips(&peers(server));
            OutboundObs {
                fetch: outcome(&fetch),
                server_saw,
                ping_received: ping.received,
                tracked: entries_to(&conntrack_table(lab), "tcp", 8080),
            }
        },
        |o| {
            assert_eq!(o.fetch, "ok bytes=1000000");
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN]));
            assert_eq!(o.ping_received, 2);
            assert_eq!(o.tracked, 1, "the gateway's own connection is tracked");
        },
    );
}

#[derive(Debug, PartialEq)]
struct Outbound6Obs {
    /// The gateway itself fetches from the far host over IPv6.
    fetch: String,
    server_saw: BTreeSet<Ipv6Addr>,
    /// The gateway pings the far host.
    ping_received: u32,
    /// Conntrack entries of the gateway's own IPv6 connections to the
    /// far host.
    tracked: usize,
}

/// The gateway's IPv6 static route `::/0 via 2001:db8:113::254`
/// (conf/gateway.toml) reaches the host as its route through wan0's host
/// path device, as the IPv4 ones do: the gateway's own IPv6 connections to
/// a host beyond the server (the far host, 2001:db8:100::20: no connected
/// route reaches it) go out, and their replies come back through INPUT's
/// conntrack rule.
#[test]
fn connections_the_gateway_opens_over_ipv6_take_its_default_route() {
    let rules6 = restore_text(&[(
        "filter",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A INPUT -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT\n\
         -A INPUT -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT\n\
         -A INPUT -j DROP\n\
         -A FORWARD -j DROP\n",
    )]);
    on_both_backends6(
        "connections_the_gateway_opens_over_ipv6_take_its_default_route",
        &[],
        &Ipv6Spec::new(rules6),
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let fetch = lab.tool_result(
                lab.gateway(),
                &[
                    "tcp-get",
                    &ip6(FAR6),
                    "8080",
                    "1000000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            let ping = lab.ping6(lab.gateway(), FAR6, 2, &[]);
            let tracked = lab
                .conntrack_list6()
                .iter()
                .filter(|l| l.starts_with("tcp") && l.contains(" dport=8080 "))
                .count();
            Outbound6Obs {
                fetch: outcome(&fetch),
                server_saw: ips6(&peers6_after(server, 1)),
                ping_received: ping.received,
                tracked,
            }
        },
        |o| {
            assert_eq!(o.fetch, "ok bytes=1000000");
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN6]));
            assert_eq!(o.ping_received, 2);
            assert_eq!(o.tracked, 1, "the gateway's own connection is tracked");
        },
    );
}

/// The gateway's kernel never answers ARP or ping on the wire itself: one
/// reply per request, from xdpgw.
#[test]
fn no_duplicate_ping_replies_with_the_host_path() {
    on_both_backends(
        "no_duplicate_ping_replies_with_the_host_path",
        |lab| {
            let p = lab.ping(lab.client(), GATEWAY_LAN, 3, &[]);
            (p.received, p.replies.len(), p.transmitted)
        },
        |o| assert_eq!(*o, (3, 3, 3), "one reply per request, no DUP!"),
    );
}

#[test]
fn the_host_path_goes_away_with_the_gateway() {
    if !xdpgw_vm_tests::require_root_with(
        "the_host_path_goes_away_with_the_gateway",
        xdpgw_vm_tests::LAB_PROGRAMS,
    ) {
        return;
    }
    let mut lab = xdpgw_vm_tests::gateway_lab(Backend::Xdpgw);
    let links = lab.gateway().exec_ok(&["ip", "-o", "addr", "show"]);
    assert!(
        links.contains("xg-lan0") && links.contains("192.168.10.1/24"),
        "{links}"
    );
    assert!(links.contains("xg-wan0") && links.contains("203.0.113.1/24"));
    let routes = lab.gateway().exec_ok(&["ip", "route", "show"]);
    assert!(
        routes.contains("default via 203.0.113.254 dev xg-wan0"),
        "{routes}"
    );
    lab.stop_gateway();
    for dev in ["xg-lan0", "xg-wan0"] {
        let left = lab.gateway().exec(&["ip", "link", "show", "dev", dev]);
        assert!(
            !left.status.success(),
            "host path device {dev} left behind: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
}
