//! End-to-end scenarios through a real gateway in a namespace lab
//! (`xdpgw_lab`: two clients on a LAN, the gateway's lan0/wan0, a
//! server 203.0.113.254 with a far host 198.51.100.20 behind it).
//!
//! Every scenario runs twice: through Linux with conf/gateway.rules loaded
//! by iptables-restore (the oracle), and through `xdpgw run --config
//! conf/gateway.toml`. Each returns its observations as a value; the Linux
//! ones are checked against what the rules say, and xdpgw's must equal
//! Linux's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use xdpgw_vm_tests::lab::{
    Lab, Ping, Process, CLIENT, CLIENT2, FAR, GATEWAY_LAN, GATEWAY_WAN, HOST_IF, SERVER,
};
use xdpgw_vm_tests::scenario::*;

// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct PingObs {
    through: Ping,
    /// Source of the echo request as the server saw it.
    server_saw: Ipv4Addr,
    to_gateway: Ping,
    far: Ping,
}

#[test]
fn ping_through_and_to_the_gateway() {
    on_both_backends(
        "ping_through_and_to_the_gateway",
        |lab| {
            let capture = lab.capture(lab.server(), HOST_IF, 1, "icmp[icmptype] = icmp-echo");
            let through = lab.ping(lab.client(), SERVER, 3, &[]);
            let server_saw = captured(capture)[0].src;
            PingObs {
                through,
                server_saw,
                // INPUT allows echo-request at 10/s, burst 5: 3 at 5/s pass.
                to_gateway: lab.ping(lab.client(), GATEWAY_LAN, 3, &[]),
                far: lab.ping(lab.client(), FAR, 2, &[]),
            }
        },
        |o| {
            assert_eq!(o.through.received, 3, "{o:?}");
            // The server answers with TTL 64; the gateway forwards it once.
            assert_eq!(o.through.replies, [(SERVER, 63); 3]);
            assert_eq!(o.server_saw, GATEWAY_WAN, "echo requests are masqueraded");
            assert_eq!(o.to_gateway.received, 3, "{o:?}");
            assert_eq!(o.to_gateway.replies, [(GATEWAY_LAN, 64); 3]);
            assert_eq!(o.far.replies, [(FAR, 63); 2]);
        },
    );
}

#[derive(Debug, PartialEq)]
struct TransferObs {
    result: String,
    server_saw: Vec<Ipv4Addr>,
    /// MASQUERADE keeps the source port when the tuple is free.
    source_port_kept: bool,
}

#[test]
fn tcp_10_mb_through_masquerade() {
    on_both_backends(
        "tcp_10_mb_through_masquerade",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let line = lab.tool_result(
                lab.client(),
                &[
                    "tcp-get",
                    &ip(SERVER),
                    "8080",
                    "10485760",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            let peers = peers(server);
            TransferObs {
                result: outcome(&line),
                server_saw: peers.iter().map(|p| *p.ip()).collect(),
                source_port_kept: line.starts_with("ok ")
                    && peers.first().map(SocketAddrV4::port) == Some(local(&line).port()),
            }
        },
        |o| {
            assert_eq!(o.result, "ok bytes=10485760");
            assert_eq!(o.server_saw, [GATEWAY_WAN]);
            assert!(o.source_port_kept, "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct UdpObs {
    reply: String,
    server_saw: BTreeSet<Ipv4Addr>,
    source_port_kept: bool,
    /// A request to a closed port: the server's ICMP port unreachable comes
    /// back through the NAT (RELATED).
    closed_port: String,
}

#[test]
fn udp_request_and_reply() {
    on_both_backends(
        "udp_request_and_reply",
        |lab| {
            let server = lab.serve(lab.server(), &["udp-echo", "7777"]);
            let line = lab.tool_result(
                lab.client(),
                &["udp-req", &ip(SERVER), "7777", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            let closed_port = lab.tool_result(
                lab.client(),
                &["udp-req", &ip(SERVER), "7778", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            let peers = peers(server);
            UdpObs {
                reply: outcome(&line),
                server_saw: ips(&peers),
                source_port_kept: line.starts_with("ok")
                    && peers.first().map(SocketAddrV4::port) == Some(local(&line).port()),
                closed_port,
            }
        },
        |o| {
            assert_eq!(o.reply, "ok");
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN]));
            assert!(o.source_port_kept, "{o:?}");
            assert_eq!(o.closed_port, "refused");
        },
    );
}

#[derive(Debug, PartialEq)]
struct ManyObs {
    result: String,
    server_accepted: usize,
    server_saw: BTreeSet<Ipv4Addr>,
    /// Conntrack entries for them in the gateway.
    tracked: usize,
}

#[test]
fn thousand_concurrent_connections() {
    on_both_backends(
        "thousand_concurrent_connections",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let result = lab.tool_result(
                lab.client(),
                &[
                    "tcp-many",
                    &ip(SERVER),
                    "8080",
                    "1000",
                    "--timeout",
                    "30",
                    "--bytes",
                    "1000",
                ],
                Duration::from_secs(300),
            );
            let peers = peers(server);
            ManyObs {
                result,
                server_accepted: peers.len(),
                server_saw: ips(&peers),
                tracked: entries_to(&conntrack_table(lab), "tcp", 8080),
            }
        },
        |o| {
            assert_eq!(o.result, "ok=1000 failed=0");
            assert_eq!(o.server_accepted, 1000);
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN]));
            assert_eq!(o.tracked, 1000, "one conntrack entry per connection");
        },
    );
}

#[derive(Debug, PartialEq)]
struct ForwardDropObs {
    /// server -> client:8080, NEW from wan0: FORWARD drops it.
    inbound: String,
    /// client2 -> client:8080 on the LAN: the listener works.
    from_lan: String,
    client_saw: BTreeSet<Ipv4Addr>,
}

#[test]
fn forward_drop_inbound_new_to_the_client_times_out() {
    on_both_backends(
        "forward_drop_inbound_new_to_the_client_times_out",
        |lab| {
            let client = lab.serve(lab.client(), &["tcp-serve", "8080"]);
            let inbound = lab.tool_result(
                lab.server(),
                &["tcp-connect", &ip(CLIENT), "8080", "--timeout", DROP_WAIT],
                TOOL_LIMIT,
            );
            let from_lan = lab.tool_result(
                lab.client2(),
                &["tcp-connect", &ip(CLIENT), "8080", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            // The LAN connection's peer line, if it connected.
            let expected = usize::from(from_lan.starts_with("connected"));
            ForwardDropObs {
                inbound,
                from_lan: outcome(&from_lan),
                client_saw: ips(&peers_after(client, expected)),
            }
        },
        |o| {
            assert_eq!(o.inbound, "timeout");
            assert_eq!(o.from_lan, "connected");
            assert_eq!(o.client_saw, BTreeSet::from([CLIENT2]));
        },
    );
}

#[derive(Debug, PartialEq)]
struct RejectObs {
    /// client -> server:25: FORWARD REJECT --reject-with tcp-reset.
    smtp: String,
    /// The reset as the client received it: from, port, TTL, TOS.
    reset: Option<(Ipv4Addr, Option<u16>, u8, u8)>,
    /// The server's own connection to its port 25: the listener works.
    local: String,
    /// Peers the server saw, other than itself.
    server_saw: BTreeSet<Ipv4Addr>,
    /// The filter rules' counters and nat POSTROUTING's (`iptables-save
    /// -c`, `xdpgw save -c`): the reset passes nat POSTROUTING (its
    /// connection's source NAT is not decided yet), as Linux attaches it.
    /// (Not the PREROUTING chains': they also count the IGMP reports the
    /// lab's hosts send whenever they do.)
    counters: BTreeMap<String, u64>,
}

#[test]
fn reject_smtp_with_tcp_reset() {
    on_both_backends(
        "reject_smtp_with_tcp_reset",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "25"]);
            let capture = lab.capture(lab.client(), HOST_IF, 1, "tcp[tcpflags] & tcp-rst != 0");
            let smtp = lab.tool_result(
                lab.client(),
                &["tcp-connect", &ip(SERVER), "25", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            // No reset to wait for if the connection was not refused.
            let reset = (smtp == "refused").then(|| {
                let rst = captured(capture).remove(0);
                (rst.src, rst.src_port, rst.ttl, rst.tos)
            });
            let local = lab.tool_result(
                lab.server(),
                &["tcp-connect", "127.0.0.1", "25", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            let mut server_saw = ips(&peers(server));
            server_saw.remove(&Ipv4Addr::LOCALHOST);
            RejectObs {
                smtp,
                reset,
                local: outcome(&local),
                server_saw,
                counters: lab
                    .packet_counters(None)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("filter -A") || k == "nat :POSTROUTING")
                    .collect(),
            }
        },
        |o| {
            assert_eq!(o.smtp, "refused");
            // The gateway answers in the server's name, from its own stack.
            assert_eq!(o.reset, Some((SERVER, Some(25), 64, 0)));
            assert_eq!(o.local, "connected");
            assert!(o.server_saw.is_empty(), "{o:?}");
            assert_eq!(o.counters.get("nat :POSTROUTING"), Some(&1), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct DscpObs {
    https: String,
    other: String,
    /// TOS bytes of the server's packets from port 443 at the client.
    tos_443: BTreeSet<u8>,
    /// ... and from port 8080.
    tos_8080: BTreeSet<u8>,
}

#[test]
fn dscp_46_on_replies_from_port_443() {
    on_both_backends(
        "dscp_46_on_replies_from_port_443",
        |lab| {
            let _https = lab.serve(lab.server(), &["tcp-serve", "443"]);
            let _other = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let mut tos = Vec::new();
            let mut results = Vec::new();
            for port in ["443", "8080"] {
                // SYN-ACK and the data: both reach the client before
                // tcp-get returns.
                let capture = lab.capture(
                    lab.client(),
                    HOST_IF,
                    2,
                    &format!("tcp and src port {port}"),
                );
                let line = lab.tool_result(
                    lab.client(),
                    &["tcp-get", &ip(SERVER), port, "100000", "--timeout", OK_WAIT],
                    TOOL_LIMIT,
                );
                results.push(outcome(&line));
                tos.push(captured(capture).iter().map(|p| p.tos).collect());
            }
            DscpObs {
                https: results.remove(0),
                other: results.remove(0),
                tos_443: tos.remove(0),
                tos_8080: tos.remove(0),
            }
        },
        |o| {
            assert_eq!(o.https, "ok bytes=100000");
            assert_eq!(o.other, "ok bytes=100000");
            assert_eq!(o.tos_443, BTreeSet::from([0xb8]), "DSCP 46, ECN 0");
            assert_eq!(o.tos_8080, BTreeSet::from([0]));
        },
    );
}

#[derive(Debug, PartialEq)]
struct NotrackObs {
    /// client -> server:22.
    connect: String,
    /// The source of the SYN as the server saw it.
    syn_src: Ipv4Addr,
    /// Connections the server's listener accepted.
    server_accepted: usize,
    /// Conntrack entries for port 22, and (to show that the table is
    /// read) for a tracked connection to port 8080.
    tracked_22: usize,
    tracked_8080: usize,
}

/// conf/gateway.rules: `raw PREROUTING -i lan0 -p tcp --dport 22 -j
/// NOTRACK`. The client's SYN leaves untracked, so not NATed (the server
/// sees 192.168.10.2) and no conntrack entry is made. The server's SYN-ACK
/// comes back on wan0, where nothing is NOTRACKed: conntrack sees a SYN-ACK
/// without a connection, INVALID, and `FORWARD --ctstate INVALID -j DROP`
/// drops it, so the connection never completes. (That NOTRACK rule is
/// meant for SSH to the gateway itself, which xdpgw does not serve.)
#[test]
fn notrack_port_22_is_not_nated_nor_tracked() {
    on_both_backends(
        "notrack_port_22_is_not_nated_nor_tracked",
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "22"]);
            let _tracked = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let capture = lab.capture(
                lab.server(),
                HOST_IF,
                1,
                "tcp dst port 22 and tcp[tcpflags] & tcp-syn != 0",
            );
            let connect = lab.tool_result(
                lab.client(),
                &["tcp-connect", &ip(SERVER), "22", "--timeout", DROP_WAIT],
                TOOL_LIMIT,
            );
            let syn_src = captured(capture)[0].src;
            let tracked = lab.tool_result(
                lab.client(),
                &["tcp-connect", &ip(SERVER), "8080", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            assert!(tracked.starts_with("connected"), "{tracked}");
            let table = conntrack_table(lab);
            NotrackObs {
                connect,
                syn_src,
                server_accepted: peers(server).len(),
                tracked_22: entries_to(&table, "tcp", 22),
                tracked_8080: entries_to(&table, "tcp", 8080),
            }
        },
        |o| {
            assert_eq!(o.syn_src, CLIENT, "NOTRACKed packets are not NATed");
            assert_eq!(
                o.connect, "timeout",
                "the SYN-ACK is INVALID at the gateway"
            );
            assert_eq!(o.server_accepted, 0);
            assert_eq!(o.tracked_22, 0, "NOTRACK leaves no conntrack entry");
            assert_eq!(o.tracked_8080, 1);
        },
    );
}

#[derive(Debug, PartialEq)]
struct TtlObs {
    ttl_1: Ping,
    normal: Ping,
}

#[test]
fn ttl_1_gets_time_exceeded_from_the_gateway() {
    on_both_backends(
        "ttl_1_gets_time_exceeded_from_the_gateway",
        |lab| TtlObs {
            ttl_1: lab.ping(lab.client(), FAR, 1, &["-t", "1"]),
            normal: lab.ping(lab.client(), FAR, 1, &[]),
        },
        |o| {
            assert_eq!(o.ttl_1.received, 0, "{o:?}");
            assert_eq!(
                o.ttl_1.errors,
                [(GATEWAY_LAN, "Time to live exceeded".to_owned())]
            );
            assert_eq!(o.normal.replies, [(FAR, 63)]);
        },
    );
}

#[derive(Debug, PartialEq)]
struct InboundObs {
    /// server -> client:7777 (UDP), NEW from wan0: FORWARD drops it.
    udp_to_client: String,
    /// server -> 203.0.113.1:8080 and :7777, the gateway itself: INPUT
    /// drops them (no reset, no port unreachable).
    tcp_to_gateway: String,
    udp_to_gateway: String,
    /// The client's own requests: their replies pass.
    udp_out: String,
    tcp_out: String,
    client_saw: BTreeSet<Ipv4Addr>,
}

#[test]
fn inbound_new_from_wan_dropped_while_replies_pass() {
    on_both_backends(
        "inbound_new_from_wan_dropped_while_replies_pass",
        |lab| {
            let client_udp = lab.serve(lab.client(), &["udp-echo", "7777"]);
            let client_tcp = lab.serve(lab.client(), &["tcp-serve", "8080"]);
            let _server_udp = lab.serve(lab.server(), &["udp-echo", "7777"]);
            let _server_tcp = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            // The three inbound attempts at once: each has to time out.
            let attempts = [
                lab.tool(
                    lab.server(),
                    &["udp-req", &ip(CLIENT), "7777", "--timeout", DROP_WAIT],
                ),
                lab.tool(
                    lab.server(),
                    &[
                        "tcp-connect",
                        &ip(GATEWAY_WAN),
                        "8080",
                        "--timeout",
                        DROP_WAIT,
                    ],
                ),
                lab.tool(
                    lab.server(),
                    &["udp-req", &ip(GATEWAY_WAN), "7777", "--timeout", DROP_WAIT],
                ),
            ];
            let [udp_to_client, tcp_to_gateway, udp_to_gateway] =
                attempts.map(|p| p.wait(TOOL_LIMIT).first_line().to_owned());
            let udp_out = lab.tool_result(
                lab.client(),
                &["udp-req", &ip(SERVER), "7777", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            let tcp_out = lab.tool_result(
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
            let mut client_saw = ips(&peers(client_udp));
            client_saw.extend(ips(&peers(client_tcp)));
            InboundObs {
                udp_to_client,
                tcp_to_gateway,
                udp_to_gateway,
                udp_out: outcome(&udp_out),
                tcp_out: outcome(&tcp_out),
                client_saw,
            }
        },
        |o| {
            assert_eq!(o.udp_to_client, "timeout");
            assert_eq!(o.tcp_to_gateway, "timeout");
            assert_eq!(o.udp_to_gateway, "timeout");
            assert_eq!(o.udp_out, "ok");
            assert_eq!(o.tcp_out, "ok bytes=100000");
            assert!(o.client_saw.is_empty(), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct CollisionObs {
    tcp: [String; 2],
    udp: [String; 2],
    /// What the server saw of the first connection (the port kept) ...
    tcp_first: Option<SocketAddrV4>,
    udp_first: Option<SocketAddrV4>,
    /// ... and of the second: the gateway's address, another port.
    tcp_second_ip: Option<Ipv4Addr>,
    tcp_second_port_differs: bool,
    udp_second_ip: Option<Ipv4Addr>,
    udp_second_port_differs: bool,
}

/// Both clients use source port 40000 (their only ephemeral port): the
/// first keeps it through MASQUERADE, the second gets another one, and both
/// complete.
#[test]
fn port_collision_two_clients_same_source_port() {
    on_both_backends(
        "port_collision_two_clients_same_source_port",
        |lab| {
            for c in [lab.client(), lab.client2()] {
                c.sysctl("net.ipv4.ip_local_port_range", "40000 40000");
            }
            let tcp_server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let udp_server = lab.serve(lab.server(), &["udp-echo", "7777"]);
            let mut tcp = Vec::new();
            let mut udp = Vec::new();
            for c in [lab.client(), lab.client2()] {
                tcp.push(lab.tool_result(
                    c,
                    &[
                        "tcp-get",
                        &ip(SERVER),
                        "8080",
                        "100000",
                        "--timeout",
                        OK_WAIT,
                    ],
                    TOOL_LIMIT,
                ));
                udp.push(lab.tool_result(
                    c,
                    &["udp-req", &ip(SERVER), "7777", "--timeout", OK_WAIT],
                    TOOL_LIMIT,
                ));
            }
            let tcp_peers = peers(tcp_server);
            let mut udp_peers = peers(udp_server);
            // udp-req resends every second until answered: one peer each.
            udp_peers.dedup();
            let second = |p: &[SocketAddrV4]| p.get(1).copied();
            CollisionObs {
                tcp_first: tcp_peers.first().copied(),
                udp_first: udp_peers.first().copied(),
                tcp_second_ip: second(&tcp_peers).map(|p| *p.ip()),
                tcp_second_port_differs: second(&tcp_peers).is_some_and(|p| p.port() != 40000),
                udp_second_ip: second(&udp_peers).map(|p| *p.ip()),
                udp_second_port_differs: second(&udp_peers).is_some_and(|p| p.port() != 40000),
                tcp: [tcp.remove(0), tcp.remove(0)],
                udp: [udp.remove(0), udp.remove(0)],
            }
        },
        |o| {
            assert_eq!(
                o.tcp,
                [
                    format!("ok bytes=100000 local={CLIENT}:40000"),
                    format!("ok bytes=100000 local={CLIENT2}:40000")
                ]
            );
            assert_eq!(
                o.udp,
                [
                    format!("ok local={CLIENT}:40000"),
                    format!("ok local={CLIENT2}:40000")
                ]
            );
            let kept = Some(SocketAddrV4::new(GATEWAY_WAN, 40000));
            assert_eq!((o.tcp_first, o.udp_first), (kept, kept));
            assert_eq!(o.tcp_second_ip, Some(GATEWAY_WAN));
            assert_eq!(o.udp_second_ip, Some(GATEWAY_WAN));
            assert!(
                o.tcp_second_port_differs && o.udp_second_port_differs,
                "{o:?}"
            );
        },
    );
}

// ---------------------------------------------------------------------------

/// `conntrack -E -s CLIENT`: conntrack-tools in the gateway's namespace, or
/// `xdpgw conntrack -E` through the control socket; it listens once an
/// event of a ping has shown.
fn event_listener(lab: &Lab) -> Process {
    conntrack_event_listener(lab, &ip(CLIENT), || {
        lab.ping(lab.client(), SERVER, 1, &[]);
    })
}

#[test]
fn conntrack_events_like_conntrack_tools() {
    on_both_backends(
        "conntrack_events_like_conntrack_tools",
        |lab| {
            let mut events = event_listener(lab);
            let _server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let line = lab.tool_result(
                lab.client(),
                &["tcp-get", &ip(SERVER), "8080", "1000", "--timeout", OK_WAIT],
                TOOL_LIMIT,
            );
            assert!(line.starts_with("ok "), "{line}");
            let o = tcp_connection_events(lab, &mut events, false);
            drop(events);
            o
        },
        |o| {
            assert_eq!(
                o.new,
                "    [NEW] tcp      6 120 SYN_SENT src=192.168.10.2 dst=203.0.113.254 sport=EPHEMERAL dport=8080 [UNREPLIED] src=203.0.113.254 dst=203.0.113.1 sport=8080 dport=EPHEMERAL"
            );
            assert!(o.established.ends_with(" [ASSURED]"), "{o:?}");
            assert!(
                o.destroy
                    .starts_with("[DESTROY] tcp      6 SECS TIME_WAIT ")
                    && o.destroy.ends_with("[ASSURED] [USERSPACE] portid=N"),
                "{o:?}"
            );
        },
    );
}

// ---------------------------------------------------------------------------
// IP sets

#[derive(Debug, PartialEq)]
struct BlocklistObs {
    far_listed: Ping,
    server_before: Ping,
    add: (i32, String),
    server_listed: Ping,
    add_again: (i32, String),
    test_listed: i32,
    del: i32,
    server_after: Ping,
    test_unlisted: i32,
    saved: Vec<String>,
    counters: BTreeMap<String, u64>,
}

/// conf/gateway.toml with a FORWARD blocklist first: `-m set` on the
/// destination, its hash:net set from an `ipsets` file, in `dir`.
fn blocklist_config(dir: &std::path::Path) -> std::path::PathBuf {
    let conf = xdpgw_vm_tests::workspace_dir().join("conf");
    let rules = std::fs::read_to_string(conf.join("gateway.rules"))
        .expect("conf/gateway.rules")
        .replacen(
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
            "-A FORWARD -m set --match-set blocklist dst -j DROP\n\
             -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
            1,
        );
    std::fs::write(dir.join("gateway.rules"), rules).expect("rules");
    std::fs::write(
        dir.join("sets.ipset"),
        "create blocklist hash:net family inet hashsize 1024 maxelem 65536\n\
         add blocklist 198.51.100.0/24\n",
    )
    .expect("sets");
    let toml = std::fs::read_to_string(conf.join("gateway.toml"))
        .expect("conf/gateway.toml")
        .replacen(
            "rules = \"gateway.rules\"\n",
            "rules = \"gateway.rules\"\nipsets = \"sets.ipset\"\n",
            1,
        );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).expect("toml");
    xdpgw_vm_tests::copy_rules6(dir);
    path
}

#[test]
fn a_blocklist_set_drops_and_changes_live_as_linux() {
    let dir = xdpgw_vm_tests::lab::WorkDir::new("ipset-lab");
    let config = blocklist_config(dir.path());
    let server = SERVER.to_string();
    on_both_backends_in(
        "a_blocklist_set_drops_and_changes_live_as_linux",
        |backend| Lab::gateway_lab(&xdpgw_vm_tests::lab_config(backend, &config)),
        |lab| {
            // One echo request, a second for its answer (the lab's ping
            // repeats until its deadline otherwise).
            let wait = ["-i", "5", "-w", "1"];
            let far_listed = lab.ping(lab.client(), FAR, 1, &wait);
            let server_before = lab.ping(lab.client(), SERVER, 1, &[]);
            let (add, _, _) = lab.ipset(&["add", "blocklist", &server]);
            let server_listed = lab.ping(lab.client(), SERVER, 1, &wait);
            let (again, _, err) = lab.ipset(&["add", "blocklist", &server]);
            let (test_listed, _, _) = lab.ipset(&["test", "blocklist", &server]);
            let (del, _, _) = lab.ipset(&["del", "blocklist", &server]);
            let server_after = lab.ping(lab.client(), SERVER, 1, &[]);
            let (test_unlisted, _, _) = lab.ipset(&["test", "blocklist", &server]);
            let (_, saved, _) = lab.ipset(&["save", "blocklist"]);
            BlocklistObs {
                far_listed,
                server_before,
                add: (add, String::new()),
                server_listed,
                // The message, without the tool's own prefix.
                add_again: (
                    again,
                    err.trim()
                        .split_once(": ")
                        .map_or("", |(_, m)| m)
                        .to_string(),
                ),
                test_listed,
                del,
                server_after,
                test_unlisted,
                saved: saved
                    .lines()
                    .map(|l| l.split(" initval").next().unwrap_or(l).to_string())
                    .collect(),
                counters: lab.packet_counters(Some("filter")),
            }
        },
        |o| {
            assert_eq!(o.far_listed.received, 0, "{o:?}");
            assert_eq!(o.server_before.received, 1, "{o:?}");
            assert_eq!(o.add.0, 0);
            assert_eq!(o.server_listed.received, 0, "added live: {o:?}");
            assert_eq!(
                o.add_again,
                (
                    1,
                    "Element cannot be added to the set: it's already added".into()
                )
            );
            assert_eq!((o.test_listed, o.del, o.test_unlisted), (0, 0, 1));
            assert_eq!(o.server_after.received, 1, "deleted live: {o:?}");
            assert_eq!(
                o.saved,
                [
                    "create blocklist hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12",
                    "add blocklist 198.51.100.0/24"
                ]
            );
            assert_eq!(
                o.counters
                    .get("filter -A FORWARD -m set --match-set blocklist dst -j DROP"),
                Some(&2),
                "{o:?}"
            );
        },
    );
}
