//! IPv6 end to end (issue 16's acceptance scenarios) in the dual-stack
//! namespace lab (`Lab::dual_stack_lab`: the LAN fd00:10::/64 with the
//! gateway at ::1, the WAN 2001:db8:113::/64 with the server at ::254, a
//! far host 2001:db8:100::20 behind it; the IPv4 plan unchanged beside it).
//!
//! Every scenario takes the backend as a parameter (`on_both_backends6`):
//! it runs through Linux (`ip6tables-restore`, `forwarding=1`, radvd) and
//! its observations are checked against what the rules say; once xdpgw
//! forwards IPv6 (`xdpgw_lab::xdpgw_ipv6_support`) the same scenario runs
//! through xdpgw and its observations must equal Linux's. Until then the
//! xdpgw run is reported as skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use xdpgw_vm_tests::lab::{
    conntrack_entry, Ipv6Spec, Lab, Netns, Ping, Probe6, RouterAdvert, RouterAdvertSeen, Slaac,
    UdpProbe6, CLIENT2_6, CLIENT6, FAR6, GATEWAY_LAN6, GATEWAY_WAN6, HOST_IF, LAN6, SERVER6,
};
use xdpgw_vm_tests::lab::{xdpgw_ipv6_support, Backend, SERVER};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{
    dual_stack_lab, require_root_with, restore_text, LAB6_PROGRAMS, LAB_PROGRAMS,
};

/// The stateful FORWARD of these scenarios: replies and related errors
/// back, the LAN out, `extra` rules, and nothing else (a DROP rule rather
/// than the policy, so that its counter shows what it refused).
fn forward6(extra: &str) -> String {
    format!(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         {extra}\n\
         -A FORWARD -i lan0 -o wan0 -j ACCEPT\n\
         -A FORWARD -j DROP\n"
    )
}

/// NAT66 for the ULA LAN out of wan0.
const MASQUERADE6: &str = "-A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE";
/// The rule texts as ip6tables-save prints them, for counters.
const NEW_OUT: &str = "filter -A FORWARD -i lan0 -o wan0 -j ACCEPT";
const DROP_REST: &str = "filter -A FORWARD -j DROP";

/// How long a probe waits for an answer or an error.
const PROBE_WAIT: Duration = Duration::from_secs(3);

fn spec(tables: &[(&str, &str)]) -> Ipv6Spec {
    Ipv6Spec::new(restore_text(tables))
}

/// The first `dst=`/`src=` values of a conntrack entry's reply direction.
fn reply_tuple(entry: &str) -> (String, String) {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let second = |key: &str| {
        words
            .iter()
            .filter_map(|w| w.strip_prefix(key))
            .nth(1)
            .unwrap_or_else(|| panic!("no second {key} in '{entry}'"))
            .to_owned()
    };
    (second("src="), second("dst="))
}

/// The gateway's IPv6 entries (normalised) for `proto` to port `dport`.
fn entries6(lab: &Lab, proto: &str, dport: u16) -> Vec<String> {
    let port = format!("dport={dport}");
    lab.conntrack_list6()
        .iter()
        .map(|l| conntrack_entry(l))
        .filter(|e| e.starts_with(&format!("{proto} ")) && e.split_whitespace().any(|w| w == port))
        .collect()
}

/// The gateway's IPv6 entries of `protos`, normalised
/// ([`conntrack_entry`], which also drops ICMPv6's `id=`) with ephemeral
/// ports (32768 and up, Linux's range) as `*`, sorted.
fn listing(lab: &Lab, protos: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = lab
        .conntrack_list6()
        .iter()
        .map(|l| conntrack_entry(l))
        .filter(|e| protos.iter().any(|p| e.starts_with(&format!("{p} "))))
        .map(|e| {
            e.split_whitespace()
                .map(|w| match w.split_once('=') {
                    Some((k @ ("sport" | "dport"), v))
                        if v.parse::<u16>().is_ok_and(|p| p >= 32768) =>
                    {
                        format!("{k}=*")
                    }
                    _ => w.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The counters of `rules` in `counters` (0 for a rule not listed).
fn counts(counters: &BTreeMap<String, u64>, rules: &[&str]) -> Vec<(String, u64)> {
    rules
        .iter()
        .map(|r| ((*r).to_owned(), counters.get(*r).copied().unwrap_or(0)))
        .collect()
}

/// `ip -6 -o route get TO` in `ns`: its `mtu N`, if the route has one.
fn path_mtu6(ns: &Netns, to: Ipv6Addr) -> String {
    ns.exec_ok(&["ip", "-6", "-o", "route", "get", &ip6(to)])
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn tool(lab: &Lab, ns: &Netns, args: &[&str]) -> String {
    lab.tool_result(ns, args, TOOL_LIMIT)
}

// ---------------------------------------------------------------------------

#[test]
fn dual_stack_lab_is_wired_as_documented() {
    let mut programs = LAB6_PROGRAMS.to_vec();
    programs.extend(LAB_PROGRAMS);
    if !require_root_with("dual_stack_lab_is_wired_as_documented", &programs) {
        return;
    }
    let v6 = spec(&[("filter", &forward6(""))]);
    if let Err(e) = xdpgw_ipv6_support(&v6) {
        // Refused, with the reason, before anything is built.
        let refused = dual_stack_lab(Backend::Xdpgw, &v6).expect_err("refused");
        assert_eq!(refused, e);
    }
    let lab = dual_stack_lab(Backend::Linux, &v6).expect("a Linux dual-stack lab");
    assert!(lab.is_dual_stack());
    let global = |ns: &Netns, dev: &str| -> Vec<String> {
        ns.exec_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
        ])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect()
    };
    assert_eq!(global(lab.client(), HOST_IF), ["fd00:10::2/64"]);
    assert_eq!(global(lab.client2(), HOST_IF), ["fd00:10::3/64"]);
    assert_eq!(global(lab.gateway(), "lan0"), ["fd00:10::1/64"]);
    assert_eq!(global(lab.gateway(), "wan0"), ["2001:db8:113::1/64"]);
    assert_eq!(global(lab.server(), HOST_IF), ["2001:db8:113::254/64"]);
    assert_eq!(global(lab.server(), "lo"), ["2001:db8:100::20/128"]);
    // Usable at once: nothing waits for duplicate address detection.
    for ns in [lab.client(), lab.client2(), lab.gateway(), lab.server()] {
        let tentative = ns.exec_ok(&["ip", "-6", "addr", "show", "tentative"]);
        assert!(tentative.trim().is_empty(), "{}: {tentative}", ns.name());
    }
    let forwarding = lab
        .gateway()
        .exec_ok(&["sysctl", "-n", "net.ipv6.conf.all.forwarding"]);
    assert_eq!(forwarding.trim(), "1");
    // Both families forward side by side.
    assert_eq!(
        lab.ping(lab.client(), SERVER, 1, &[]).replies,
        [(SERVER, 63)]
    );
    assert_eq!(lab.ping6(lab.client2(), FAR6, 1, &[]).replies, [(FAR6, 63)]);
}

#[derive(Debug, PartialEq)]
struct ForwardObs {
    tcp: String,
    udp: String,
    ping: Ping<Ipv6Addr>,
    far: Ping<Ipv6Addr>,
    /// Without NAT the server sees the client's own address.
    server_saw: BTreeSet<Ipv6Addr>,
    /// New from the WAN: a datagram, dropped.
    inbound_udp: Probe6,
    /// Conntrack entries of the forwarded TCP and UDP flows.
    tracked: (usize, usize),
    /// The FORWARD rules' packet counters: the LAN's new flows and what
    /// the last rule dropped.
    counters: Vec<(String, u64)>,
    /// Those two rules as `ip6tables -L -v -x -n FORWARD` lists them
    /// (`xdpgw list -6 ...` through the control socket), with the packet
    /// counters (words joined by one space, bytes as `*`).
    listed: Vec<String>,
}

#[test]
fn ipv6_forwarded_and_filtered_by_a_stateful_forward() {
    on_both_backends6(
        "ipv6_forwarded_and_filtered_by_a_stateful_forward",
        &[],
        &spec(&[("filter", &forward6(""))]),
        |lab| {
            let tcp_server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let udp_server = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let tcp = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "1000000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            let udp = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "7777", "--timeout", OK_WAIT],
            );
            let ping = lab.ping6(lab.client(), SERVER6, 3, &[]);
            let far = lab.ping6(lab.client(), FAR6, 2, &[]);
            let mut seen = peers6_after(tcp_server, 1);
            seen.extend(peers6_after(udp_server, 1));
            let _listener = lab.serve(lab.client(), &["udp-echo", "9000", "--bind", "::"]);
            let inbound_udp =
                lab.udp_probe6(lab.server(), &UdpProbe6::to(CLIENT6, 9000), PROBE_WAIT);
            ForwardObs {
                tcp: outcome(&tcp),
                udp: outcome(&udp),
                ping,
                far,
                server_saw: ips6(&seen),
                inbound_udp,
                tracked: (
                    entries6(lab, "tcp", 8080).len(),
                    entries6(lab, "udp", 7777).len(),
                ),
                counters: counts(&lab.packet_counters6(Some("filter")), &[NEW_OUT, DROP_REST]),
                // The bytes column out: the UDP tool's request differs in
                // length from run to run.
                listed: last_lines(&lab.list6(&["FORWARD", "-v", "-x", "-n"]), 2)
                    .iter()
                    .map(|l| {
                        let mut w: Vec<&str> = l.split_whitespace().collect();
                        if w.len() > 1 {
                            w[1] = "*";
                        }
                        w.join(" ")
                    })
                    .collect(),
            }
        },
        |o| {
            assert_eq!(o.tcp, "ok bytes=1000000", "{o:?}");
            assert_eq!(o.udp, "ok", "{o:?}");
            assert_eq!(o.ping.received, 3, "{o:?}");
            // The server answers with hop limit 64; the gateway forwards once.
            assert_eq!(o.ping.replies, [(SERVER6, 63); 3]);
            assert_eq!(o.far.replies, [(FAR6, 63); 2]);
            assert_eq!(o.server_saw, BTreeSet::from([CLIENT6]));
            assert_eq!(o.inbound_udp, Probe6::Timeout, "{o:?}");
            assert_eq!(o.tracked, (1, 1), "{o:?}");
            // New from the LAN: the TCP SYN, the first datagram, the first
            // echo request of each ping (one id, one connection). Dropped:
            // the inbound datagram.
            assert_eq!(
                o.counters,
                [(NEW_OUT.to_owned(), 4), (DROP_REST.to_owned(), 1)],
                "{o:?}"
            );
            let packets: Vec<&str> = o
                .listed
                .iter()
                .map(|l| l.split_whitespace().next().unwrap_or(""))
                .collect();
            assert_eq!(packets, ["4", "1"], "{o:?}");
            assert!(o.listed[0].contains(" lan0 wan0 "), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct Nat66Obs {
    tcp: String,
    udp: String,
    /// UDP to a closed port: the server's port unreachable, RELATED,
    /// translated back to the client.
    closed_port: String,
    server_saw: BTreeSet<Ipv6Addr>,
    source_port_kept: bool,
    /// Source of the echo request as the server saw it, and the replies.
    echo_from: Ipv6Addr,
    ping: Ping<Ipv6Addr>,
    /// The TCP entry's reply tuple (src, dst): to the gateway's WAN address.
    reply: (String, String),
    /// The UDP and ICMPv6 entries, normalised.
    listing: Vec<String>,
    masqueraded: Vec<(String, u64)>,
}

#[test]
fn ipv6_nat66_masquerade_from_the_ula_prefix() {
    on_both_backends6(
        "ipv6_nat66_masquerade_from_the_ula_prefix",
        &[],
        &spec(&[("nat", MASQUERADE6), ("filter", &forward6(""))]),
        |lab| {
            let tcp_server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let udp_server = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let tcp = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "100000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            let udp = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "7777", "--timeout", OK_WAIT],
            );
            let closed_port = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "7778", "--timeout", OK_WAIT],
            );
            let capture = lab.capture(lab.server(), HOST_IF, 1, "icmp6 and ip6[40] == 128");
            let ping = lab.ping6(lab.client(), SERVER6, 2, &[]);
            let echo_from = captured6(capture)[0].src;
            let tcp_peers = peers6_after(tcp_server, 1);
            let mut seen = tcp_peers.clone();
            seen.extend(peers6_after(udp_server, 1));
            let entries = entries6(lab, "tcp", 8080);
            assert_eq!(entries.len(), 1, "{entries:?}");
            Nat66Obs {
                tcp: outcome(&tcp),
                udp: outcome(&udp),
                closed_port,
                server_saw: ips6(&seen),
                source_port_kept: tcp.starts_with("ok ")
                    && tcp_peers.first().map(SocketAddrV6::port) == Some(local6(&tcp).port()),
                echo_from,
                ping,
                reply: reply_tuple(&entries[0]),
                listing: listing(lab, &["udp", "icmpv6"]),
                masqueraded: counts(
                    &lab.packet_counters6(Some("nat")),
                    &[&format!("nat {MASQUERADE6}")],
                ),
            }
        },
        |o| {
            assert_eq!(o.tcp, "ok bytes=100000", "{o:?}");
            assert_eq!(o.udp, "ok", "{o:?}");
            assert_eq!(o.closed_port, "refused", "{o:?}");
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN6]), "{o:?}");
            assert!(o.source_port_kept, "{o:?}");
            assert_eq!(o.echo_from, GATEWAY_WAN6, "{o:?}");
            assert_eq!(o.ping.replies, [(SERVER6, 63); 2], "{o:?}");
            assert_eq!(o.reply, (ip6(SERVER6), ip6(GATEWAY_WAN6)), "{o:?}");
            let (c, s, g) = (ip6(CLIENT6), ip6(SERVER6), ip6(GATEWAY_WAN6));
            assert_eq!(
                o.listing,
                [
                    format!(
                        "icmpv6 58 src={c} dst={s} type=128 code=0 src={s} dst={g} type=129 \
                         code=0 mark=0"
                    ),
                    format!(
                        "udp 17 src={c} dst={s} sport=* dport=7777 src={s} dst={g} sport=7777 \
                         dport=* mark=0"
                    ),
                    // The port unreachable that answered it is RELATED: the
                    // entry stays unreplied.
                    format!(
                        "udp 17 src={c} dst={s} sport=* dport=7778 [UNREPLIED] src={s} dst={g} \
                         sport=7778 dport=* mark=0"
                    ),
                ],
                "{o:?}"
            );
            // One per connection: TCP, the two UDP flows, the echo id.
            assert_eq!(o.masqueraded[0].1, 4, "{o:?}");
        },
    );
}

/// `xdpgw conntrack -E` shows IPv6 events as `conntrack -E -f ipv6` does:
/// a masqueraded TCP connection from its NEW to its DESTROY (`conntrack
/// -D`), the NAT66 reply tuple included.
#[test]
fn conntrack_events6_like_conntrack_tools() {
    on_both_backends6(
        "conntrack_events6_like_conntrack_tools",
        &[],
        &spec(&[("nat", MASQUERADE6), ("filter", &forward6(""))]),
        |lab| {
            let mut events = conntrack_event_listener(lab, &ip6(CLIENT6), || {
                lab.ping6(lab.client(), SERVER6, 1, &[]);
            });
            let _server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let got = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "1000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            assert!(got.starts_with("ok "), "{got}");
            let o = tcp_connection_events(lab, &mut events, true);
            drop(events);
            o
        },
        |o| {
            let (c, s, g) = (ip6(CLIENT6), ip6(SERVER6), ip6(GATEWAY_WAN6));
            assert_eq!(
                o.new,
                format!(
                    "    [NEW] tcp      6 120 SYN_SENT src={c} dst={s} sport=EPHEMERAL \
                     dport=8080 [UNREPLIED] src={s} dst={g} sport=8080 dport=EPHEMERAL"
                )
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

#[derive(Debug, PartialEq)]
struct DnatObs {
    forwarded: String,
    /// The client's server saw the server's own address (no SNAT).
    client_saw: BTreeSet<Ipv6Addr>,
    /// A port of the gateway's WAN address that is not forwarded: its own
    /// stack refuses it.
    not_forwarded: String,
    /// The DNAT rule as the gateway lists it.
    saved: Vec<String>,
}

#[test]
fn ipv6_dnat_port_forward() {
    let dnat =
        "-A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:10::2]:80";
    let accept = "-A FORWARD -d fd00:10::2/128 -i wan0 -o lan0 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT";
    on_both_backends6(
        "ipv6_dnat_port_forward",
        &[],
        &spec(&[("nat", dnat), ("filter", &forward6(accept))]),
        |lab| {
            let web = lab.serve(lab.client(), &["tcp-serve", "80", "--bind", "::"]);
            let forwarded = tool(
                lab,
                lab.server(),
                &[
                    "tcp-get",
                    &ip6(GATEWAY_WAN6),
                    "8080",
                    "100000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            let not_forwarded = tool(
                lab,
                lab.server(),
                &[
                    "tcp-connect",
                    &ip6(GATEWAY_WAN6),
                    "8081",
                    "--timeout",
                    DROP_WAIT,
                ],
            );
            DnatObs {
                forwarded: outcome(&forwarded),
                client_saw: ips6(&peers6_after(web, 1)),
                not_forwarded,
                saved: lab
                    .rules6_in_force(false, Some("nat"))
                    .lines()
                    .filter(|l| l.contains("DNAT"))
                    .map(str::to_owned)
                    .collect(),
            }
        },
        |o| {
            assert_eq!(o.forwarded, "ok bytes=100000", "{o:?}");
            assert_eq!(o.client_saw, BTreeSet::from([SERVER6]), "{o:?}");
            assert_eq!(o.not_forwarded, "refused", "{o:?}");
            assert_eq!(o.saved, [dnat], "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct RedirectObs {
    result: String,
    /// The gateway's own listener saw the client.
    proxy_saw: BTreeSet<Ipv6Addr>,
    /// The connection's reply comes from the gateway's LAN address.
    reply: (String, String),
}

#[test]
fn ipv6_redirect_to_a_local_listener() {
    let redirect = "-A PREROUTING -i lan0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128";
    on_both_backends6(
        "ipv6_redirect_to_a_local_listener",
        &[],
        &spec(&[("nat", redirect), ("filter", &forward6(""))]),
        |lab| {
            let proxy = lab.serve(lab.gateway(), &["tcp-serve", "3128", "--bind", "::"]);
            let result = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "80",
                    "50000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            let entries = entries6(lab, "tcp", 80);
            assert_eq!(entries.len(), 1, "{entries:?}");
            RedirectObs {
                result: outcome(&result),
                proxy_saw: ips6(&peers6_after(proxy, 1)),
                reply: reply_tuple(&entries[0]),
            }
        },
        |o| {
            assert_eq!(o.result, "ok bytes=50000", "{o:?}");
            assert_eq!(o.proxy_saw, BTreeSet::from([CLIENT6]), "{o:?}");
            // REDIRECT: to the incoming interface's address (nf_nat_redirect_ipv6).
            assert_eq!(o.reply, (ip6(GATEWAY_LAN6), ip6(CLIENT6)), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct RejectObs {
    /// TCP connects to ports 81 (icmp6-port-unreachable), 82
    /// (icmp6-adm-prohibited), 83 (tcp-reset).
    tcp: Vec<String>,
    /// Who sent the reset of port 83, as the client saw it.
    reset_from: Ipv6Addr,
    /// UDP probes to 84 (REJECT's default), 85 (adm-prohibited), 86
    /// (no-route), 87 (addr-unreachable).
    udp: Vec<Probe6>,
}

#[test]
fn ipv6_reject_variants_as_the_client_sees_them() {
    let rejects = "\
        -A FORWARD -i lan0 -p tcp -m tcp --dport 81 -j REJECT --reject-with icmp6-port-unreachable\n\
        -A FORWARD -i lan0 -p tcp -m tcp --dport 82 -j REJECT --reject-with icmp6-adm-prohibited\n\
        -A FORWARD -i lan0 -p tcp -m tcp --dport 83 -j REJECT --reject-with tcp-reset\n\
        -A FORWARD -i lan0 -p udp -m udp --dport 84 -j REJECT\n\
        -A FORWARD -i lan0 -p udp -m udp --dport 85 -j REJECT --reject-with icmp6-adm-prohibited\n\
        -A FORWARD -i lan0 -p udp -m udp --dport 86 -j REJECT --reject-with icmp6-no-route\n\
        -A FORWARD -i lan0 -p udp -m udp --dport 87 -j REJECT --reject-with icmp6-addr-unreachable";
    on_both_backends6(
        "ipv6_reject_variants_as_the_client_sees_them",
        &[],
        &spec(&[("filter", &forward6(rejects))]),
        |lab| {
            let capture = lab.capture(lab.client(), HOST_IF, 1, "ip6 and tcp src port 83");
            let tcp = ["81", "82", "83"]
                .iter()
                .map(|p| {
                    tool(
                        lab,
                        lab.client(),
                        &["tcp-connect", &ip6(SERVER6), p, "--timeout", OK_WAIT],
                    )
                })
                .collect();
            let reset_from = captured6(capture)[0].src;
            let udp = [84, 85, 86, 87]
                .iter()
                .map(|p| lab.udp_probe6(lab.client(), &UdpProbe6::to(SERVER6, *p), PROBE_WAIT))
                .collect();
            RejectObs {
                tcp,
                reset_from,
                udp,
            }
        },
        |o| {
            assert_eq!(o.tcp, ["refused", "prohibited", "refused"], "{o:?}");
            // tcp-reset: a RST in the server's name (nf_send_reset6).
            assert_eq!(o.reset_from, SERVER6, "{o:?}");
            let icmp = |code| Probe6::Icmp6 {
                from: GATEWAY_LAN6,
                kind: 1,
                code,
                info: 0,
            };
            assert_eq!(o.udp, [icmp(4), icmp(1), icmp(0), icmp(3)], "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct HopLimitObs {
    hop_limit_1: Probe6,
    hop_limit_2: Probe6,
    ping: Ping<Ipv6Addr>,
    /// Hop limit 1 to the gateway itself: delivered, answered.
    to_gateway: u32,
}

#[test]
fn ipv6_hop_limit_1_gets_time_exceeded() {
    on_both_backends6(
        "ipv6_hop_limit_1_gets_time_exceeded",
        &[],
        &spec(&[("filter", &forward6(""))]),
        |lab| {
            let _echo = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let probe = |hops| {
                let p = UdpProbe6 {
                    hop_limit: hops,
                    ..UdpProbe6::to(SERVER6, 7777)
                };
                lab.udp_probe6(lab.client(), &p, PROBE_WAIT)
            };
            HopLimitObs {
                hop_limit_1: probe(1),
                hop_limit_2: probe(2),
                ping: lab.ping6(lab.client(), SERVER6, 1, &["-t", "1"]),
                to_gateway: lab
                    .ping6(lab.client(), GATEWAY_LAN6, 1, &["-t", "1"])
                    .received,
            }
        },
        |o| {
            assert_eq!(
                o.hop_limit_1,
                Probe6::Icmp6 {
                    from: GATEWAY_LAN6,
                    kind: 3,
                    code: 0,
                    info: 0
                },
                "{o:?}"
            );
            assert_eq!(
                o.hop_limit_2,
                Probe6::Reply {
                    from: SERVER6,
                    bytes: 52
                },
                "{o:?}"
            );
            assert_eq!(o.ping.received, 0, "{o:?}");
            assert_eq!(
                o.ping.errors,
                [(GATEWAY_LAN6, "Time exceeded: Hop limit".to_owned())],
                "{o:?}"
            );
            assert_eq!(o.to_gateway, 1, "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct PmtuObs {
    /// With wan0 at 1280: a 1,400-byte packet, and one of 1,280.
    too_big: Probe6,
    fits: Probe6,
    /// The client's learned path MTU to the server.
    client_route: String,
    /// With lan0 at 1280 (wan0 back at 1500): a download by client2.
    download: String,
    /// The server's learned path MTU to client2.
    server_route: String,
}

#[test]
fn ipv6_packet_too_big_and_a_download_by_path_mtu_discovery() {
    on_both_backends6(
        "ipv6_packet_too_big_and_a_download_by_path_mtu_discovery",
        &[],
        &spec(&[("filter", &forward6(""))]),
        |lab| {
            let _echo = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let mtu = |iface: &str, mtu: &str| {
                lab.gateway()
                    .exec_ok(&["ip", "link", "set", iface, "mtu", mtu]);
            };
            // A veth drops what exceeds its peer's MTU: the 1,280 link is
            // the gateway's way out, never its way in.
            mtu("wan0", "1280");
            let probe = |size| {
                let p = UdpProbe6 {
                    packet_size: size,
                    ..UdpProbe6::to(SERVER6, 7777)
                };
                lab.udp_probe6(lab.client(), &p, PROBE_WAIT)
            };
            let too_big = probe(1400);
            let fits = probe(1280);
            let client_route = path_mtu6(lab.client(), SERVER6);
            mtu("wan0", "1500");
            mtu("lan0", "1280");
            let download = tool(
                lab,
                lab.client2(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "2000000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            drop(server);
            PmtuObs {
                too_big,
                fits,
                client_route,
                download: outcome(&download),
                server_route: path_mtu6(lab.server(), CLIENT2_6),
            }
        },
        |o| {
            assert_eq!(
                o.too_big,
                Probe6::Icmp6 {
                    from: GATEWAY_LAN6,
                    kind: 2,
                    code: 0,
                    info: 1280
                },
                "{o:?}"
            );
            assert_eq!(
                o.fits,
                Probe6::Reply {
                    from: SERVER6,
                    bytes: 1232
                },
                "{o:?}"
            );
            assert_eq!(o.client_route, "mtu 1280", "{o:?}");
            assert_eq!(o.download, "ok bytes=2000000", "{o:?}");
            assert_eq!(o.server_route, "mtu 1280", "{o:?}");
        },
    );
}

#[test]
fn ipv6_dscp_set_in_the_traffic_class() {
    let dscp = "-A FORWARD -o wan0 -p udp -m udp --dport 7777 -j DSCP --set-dscp 0x2e";
    on_both_backends6(
        "ipv6_dscp_set_in_the_traffic_class",
        &[],
        &spec(&[("mangle", dscp), ("filter", &forward6(""))]),
        |lab| {
            let _echo = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let capture = lab.capture(
                lab.server(),
                HOST_IF,
                3,
                &format!("ip6 and udp and dst host {SERVER6}"),
            );
            // Traffic class 0, ECT(1) alone, and 0x20 to an unmarked port.
            for (port, tclass) in [(7777, 0), (7777, 1), (7778, 0x20)] {
                let p = UdpProbe6 {
                    tclass,
                    ..UdpProbe6::to(SERVER6, port)
                };
                lab.udp_probe6(lab.client(), &p, PROBE_WAIT);
            }
            captured6(capture)
                .iter()
                .map(|p| (p.dst_port, p.class, p.hlim))
                .collect::<Vec<_>>()
        },
        |o| {
            // DSCP EF (46) in the upper six bits; the ECN bits kept.
            assert_eq!(
                o,
                &[
                    (Some(7777), 0xb8, 63),
                    (Some(7777), 0xb9, 63),
                    (Some(7778), 0x20, 63)
                ]
            );
        },
    );
}

#[derive(Debug, PartialEq)]
struct NotrackObs {
    /// UDP to 9100 is not tracked: not NATed either (the server sees the
    /// ULA source), and its answer is new from the WAN: dropped.
    untracked: String,
    untracked_seen_from: BTreeSet<Ipv6Addr>,
    /// UDP to 7777: tracked and masqueraded.
    tracked: String,
    tracked_seen_from: BTreeSet<Ipv6Addr>,
    entries: (usize, usize),
}

#[test]
fn ipv6_notrack() {
    let notrack = "-A PREROUTING -i lan0 -p udp -m udp --dport 9100 -j NOTRACK";
    on_both_backends6(
        "ipv6_notrack",
        &[],
        &spec(&[
            ("raw", notrack),
            ("nat", MASQUERADE6),
            ("filter", &forward6("")),
        ]),
        |lab| {
            let untracked_server = lab.serve(lab.server(), &["udp-echo", "9100", "--bind", "::"]);
            let tracked_server = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let untracked = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "9100", "--timeout", DROP_WAIT],
            );
            let tracked = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "7777", "--timeout", OK_WAIT],
            );
            let entries = (
                entries6(lab, "udp", 9100).len(),
                entries6(lab, "udp", 7777).len(),
            );
            NotrackObs {
                untracked,
                untracked_seen_from: ips6(&peers6_after(untracked_server, 1)),
                tracked: outcome(&tracked),
                tracked_seen_from: ips6(&peers6_after(tracked_server, 1)),
                entries,
            }
        },
        |o| {
            assert_eq!(o.untracked, "timeout", "{o:?}");
            assert_eq!(o.untracked_seen_from, BTreeSet::from([CLIENT6]), "{o:?}");
            assert_eq!(o.tracked, "ok", "{o:?}");
            assert_eq!(o.tracked_seen_from, BTreeSet::from([GATEWAY_WAN6]), "{o:?}");
            assert_eq!(o.entries, (0, 1), "{o:?}");
        },
    );
}

/// What a SLAAC client got, in terms that hold whatever MAC addresses a
/// lab's interfaces have.
#[derive(Debug, PartialEq)]
struct SlaacObs {
    /// The address is the prefix and the client's modified EUI-64.
    eui64: bool,
    prefix_len: u8,
    flags: String,
    /// Its lifetimes are the RA's, counted down by less than a minute.
    fresh_lifetimes: bool,
    /// The default route is via the gateway's link-local address, from
    /// the RA.
    via_gateway: bool,
    default_proto: String,
    mtu: u32,
    /// The advertisement on the wire, from the gateway's link-local
    /// address (its `from` cleared).
    advert_from_gateway: bool,
    advert: RouterAdvertSeen,
    reaches_server: String,
    server_saw: BTreeSet<Ipv6Addr>,
}

/// The SLAAC address Linux forms (addr_gen_mode eui64) from `prefix` and
/// the MAC of `iface` in `ns`.
fn eui64(ns: &Netns, iface: &str, prefix: Ipv6Addr) -> Ipv6Addr {
    let out = ns.exec_ok(&["cat", &format!("/sys/class/net/{iface}/address")]);
    let mac: Vec<u8> = out
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("a MAC"))
        .collect();
    let p = prefix.octets();
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&p[..8]);
    a[8..].copy_from_slice(&[
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Ipv6Addr::from(a)
}

#[test]
fn ipv6_slaac_from_the_gateways_router_advertisements() {
    let ra = RouterAdvert {
        mtu: Some(1400),
        rdnss: vec![Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x53)],
        ..RouterAdvert::lan()
    };
    let v6 = spec(&[("nat", MASQUERADE6), ("filter", &forward6(""))]).with_slaac(ra);
    on_both_backends6(
        "ipv6_slaac_from_the_gateways_router_advertisements",
        &["radvd"],
        &v6,
        |lab| {
            let slaac: Slaac = lab.slaac();
            let gateway = lab.link_local(lab.gateway(), "lan0");
            let mut advert = lab
                .router_adverts(1, Duration::from_secs(20))
                .pop()
                .expect("a router advertisement");
            let advert_from_gateway = advert.from == gateway;
            advert.from = Ipv6Addr::UNSPECIFIED;
            let server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            let reaches_server = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "100000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            SlaacObs {
                eui64: slaac.address == eui64(lab.client(), HOST_IF, LAN6),
                prefix_len: slaac.prefix_len,
                flags: slaac.flags.clone(),
                fresh_lifetimes: (86_340..=86_400).contains(&slaac.valid_lft)
                    && (14_340..=14_400).contains(&slaac.preferred_lft),
                via_gateway: slaac.default_via == gateway,
                default_proto: slaac.default_proto.clone(),
                mtu: slaac.mtu,
                advert_from_gateway,
                advert,
                reaches_server: outcome(&reaches_server),
                server_saw: ips6(&peers6_after(server, 1)),
            }
        },
        |o| {
            assert!(o.eui64, "{o:?}");
            assert_eq!(o.prefix_len, 64, "{o:?}");
            assert_eq!(o.flags, "dynamic mngtmpaddr", "{o:?}");
            assert!(o.fresh_lifetimes, "{o:?}");
            assert!(o.via_gateway, "{o:?}");
            assert_eq!(o.default_proto, "ra", "{o:?}");
            assert_eq!(o.mtu, 1400, "the RA's MTU option: {o:?}");
            assert!(o.advert_from_gateway, "{o:?}");
            assert_eq!(
                o.advert,
                RouterAdvertSeen {
                    from: Ipv6Addr::UNSPECIFIED,
                    router_lifetime: 1800,
                    prefixes: vec![("fd00:10::/64".into(), "onlink, auto".into(), 86_400, 14_400)],
                    mtu: Some(1400),
                    rdnss: vec![(600, vec![Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x53)])],
                },
                "{o:?}"
            );
            assert_eq!(o.reaches_server, "ok bytes=100000", "{o:?}");
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN6]), "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct NatPmtuObs {
    download: String,
    /// The server's learned path MTU to the gateway's WAN address: the
    /// packet too big quoted the packet as the server sent it (NAT66
    /// translated the quoted header back).
    server_route: String,
}

#[test]
fn ipv6_download_through_nat66_completes_by_path_mtu_discovery() {
    on_both_backends6(
        "ipv6_download_through_nat66_completes_by_path_mtu_discovery",
        &[],
        &spec(&[("nat", MASQUERADE6), ("filter", &forward6(""))]),
        |lab| {
            let server = lab.serve(lab.server(), &["tcp-serve", "8080", "--bind", "::"]);
            lab.gateway()
                .exec_ok(&["ip", "link", "set", "lan0", "mtu", "1280"]);
            let download = tool(
                lab,
                lab.client(),
                &[
                    "tcp-get",
                    &ip6(SERVER6),
                    "8080",
                    "2000000",
                    "--timeout",
                    OK_WAIT,
                ],
            );
            drop(server);
            NatPmtuObs {
                download: outcome(&download),
                server_route: path_mtu6(lab.server(), GATEWAY_WAN6),
            }
        },
        |o| {
            assert_eq!(o.download, "ok bytes=2000000", "{o:?}");
            assert_eq!(o.server_route, "mtu 1280", "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct FragmentsObs {
    /// 3,000-byte pings (fragmented by the client's stack, replies by the
    /// server's): through NAT66 to the server, and to the gateway.
    through: Ping<Ipv6Addr>,
    to_gateway: Ping<Ipv6Addr>,
    /// Echo requests the server saw, as fragments on its link.
    server_fragments: usize,
    /// The ICMPv6 entries of the pings, normalised.
    listing: Vec<String>,
}

#[test]
fn ipv6_fragments_reassembled_tracked_natted_and_sent_on() {
    let filter = format!(
        "{}-A INPUT -p ipv6-icmp -j ACCEPT\n",
        forward6("-A FORWARD -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT")
    );
    on_both_backends6(
        "ipv6_fragments_reassembled_tracked_natted_and_sent_on",
        &[],
        &spec(&[("filter", &filter), ("nat", MASQUERADE6)]),
        |lab| {
            // Fragments of echo requests (next header 44, then ICMPv6).
            let capture = lab.capture(lab.server(), HOST_IF, 6, "ip6[6] == 44");
            let through = lab.ping6(lab.client(), SERVER6, 2, &["-s", "3000"]);
            let server_fragments = capture
                .wait(PROBE_WAIT)
                .stdout
                .iter()
                .filter(|l| l.contains("frag ("))
                .count();
            let to_gateway = lab.ping6(lab.client(), GATEWAY_LAN6, 2, &["-s", "3000"]);
            FragmentsObs {
                through,
                to_gateway,
                server_fragments,
                listing: listing(lab, &["icmpv6"]),
            }
        },
        |o| {
            assert_eq!(o.through.received, 2, "{o:?}");
            assert_eq!(o.through.replies, [(SERVER6, 63); 2], "{o:?}");
            assert_eq!(o.to_gateway.received, 2, "{o:?}");
            // 3,048 bytes of ICMPv6 in 1,500-byte packets: 3 fragments each,
            // requests and replies.
            assert_eq!(o.server_fragments, 6, "{o:?}");
            // The pings through and to the gateway.
            assert_eq!(o.listing.len(), 2, "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct NdOutputObs {
    /// Pings to the gateway while its neighbour advertisements are dropped
    /// in filter OUTPUT.
    ping: Ping<Ipv6Addr>,
    /// The OUTPUT rule counted some.
    dropped_some: bool,
}

#[test]
fn ipv6_neighbour_advertisements_take_filter_output() {
    const DROP_NA: &str = "-A OUTPUT -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j DROP";
    on_both_backends6(
        "ipv6_neighbour_advertisements_take_filter_output",
        &[],
        &spec(&[("filter", &format!("{}{DROP_NA}\n", forward6("")))]),
        |lab| {
            let ping = lab.ping6(lab.client(), GATEWAY_LAN6, 2, &[]);
            let counters = lab.packet_counters6(Some("filter"));
            NdOutputObs {
                ping,
                dropped_some: counters
                    .get(&format!("filter {DROP_NA}"))
                    .is_some_and(|&n| n > 0),
            }
        },
        |o| {
            // ndisc_send_skb takes OUTPUT: the client never learns the
            // gateway's MAC.
            assert_eq!(o.ping.received, 0, "{o:?}");
            assert!(o.dropped_some, "{o:?}");
        },
    );
}

/// `-m conntrack` beyond the state on IPv6 connections: the original and
/// reply addresses and ports, the protocol, the direction, the status and
/// `--ctexpire`, counted by rules without a target before the stateful
/// FORWARD.
const CT_TUPLE6: &[&str] = &[
    "-A FORWARD -p ipv6-icmp -m conntrack --ctorigsrc fd00:10::/64 --ctdir ORIGINAL",
    "-A FORWARD -p ipv6-icmp -m conntrack --ctorigsrc fd00:10::/64 --ctdir REPLY",
    "-A FORWARD -p ipv6-icmp -m conntrack --ctproto 58 --ctrepldst 2001:db8:113::1",
    "-A FORWARD -p ipv6-icmp -m conntrack ! --ctreplsrc 2001:db8:113::/64",
    "-A FORWARD -p ipv6-icmp -m conntrack --ctstate NEW --ctorigdst 2001:db8:113::254",
    "-A FORWARD -p ipv6-icmp -m conntrack --ctstatus SEEN_REPLY",
    "-A FORWARD -p ipv6-icmp -m conntrack --ctexpire 1:30",
    "-A FORWARD -p udp -m conntrack --ctorigdstport 7777 --ctreplsrcport 7777",
    "-A FORWARD -p udp -m conntrack ! --ctorigsrcport 7777",
];

#[test]
fn ipv6_conntrack_tuples_status_and_expiry_as_linux() {
    let rules = format!("{}\n{}", CT_TUPLE6.join("\n"), forward6(""));
    on_both_backends6(
        "ipv6_conntrack_tuples_status_and_expiry_as_linux",
        &[],
        &spec(&[("nat", MASQUERADE6), ("filter", &rules)]),
        |lab| {
            let _udp_server = lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]);
            let ping = lab.ping6(lab.client(), SERVER6, 2, &[]);
            let udp = tool(
                lab,
                lab.client(),
                &["udp-req", &ip6(SERVER6), "7777", "--timeout", OK_WAIT],
            );
            let texts: Vec<String> = CT_TUPLE6.iter().map(|r| format!("filter {r}")).collect();
            let names: Vec<&str> = texts.iter().map(String::as_str).collect();
            (
                ping.replies.len(),
                outcome(&udp),
                counts(&lab.packet_counters6(Some("filter")), &names),
            )
        },
        |(replies, udp, counters)| {
            assert_eq!((*replies, udp.as_str()), (2, "ok"));
            let c: Vec<u64> = counters.iter().map(|(_, n)| *n).collect();
            // Two echo requests and their replies, one UDP request and its
            // reply. MASQUERADE decides in POSTROUTING: the first request's
            // reply tuple is not translated yet in FORWARD, nor has its
            // entry seen a reply or been confirmed (its timeout is not
            // running: --ctexpire 0).
            assert_eq!(c, [2, 2, 3, 0, 1, 3, 3, 2, 2], "{counters:?}");
        },
    );
}
