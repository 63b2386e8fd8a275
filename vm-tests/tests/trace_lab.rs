//! `xdpgw trace` against a real `xdpgw run` in a namespace lab:
//! client ── lan0 [xdpgw] wan0 ── server, real TCP and ping through it,
//! traced through the control socket while it flows.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use xdpgw_vm_tests::lab::host_netns as host;
use xdpgw_vm_tests::lab::WorkDir as TempDir;

use xdpgw_vm_tests::lab::{veth, Process};
use xdpgw_vm_tests::{require_root_with, tools_binary, workspace_dir, xdpgw_binary};

const WAIT: Duration = Duration::from_secs(20);

/// `xdpgw trace --socket SOCKET ARGS...`, started; returns once the
/// gateway has installed the trace (its first line).
fn start_trace(socket: &Path, args: &[&str]) -> Process {
    let mut cmd = Command::new(xdpgw_binary());
    cmd.arg("trace").arg("--socket").arg(socket).args(args);
    let mut p = Process::start(cmd);
    p.wait_line("`tracing` line", WAIT, |l| {
        l.starts_with("tracing the next")
    });
    p
}

/// The lines of a finished trace, checked to have ended well.
fn finish(p: Process) -> Vec<String> {
    let done = p.wait(WAIT);
    assert!(done.status.success(), "{}", done.report());
    done.stdout
}

fn find<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{}", lines.join("\n")))
}

/// The lines of packet `n` of a trace.
fn packet(lines: &[String], n: usize) -> Vec<String> {
    let head = format!("packet {n}: ");
    let start = lines
        .iter()
        .position(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no packet {n} in:\n{}", lines.join("\n")));
    lines[start..]
        .iter()
        .take_while(|l| !l.is_empty())
        .cloned()
        .collect()
}

#[test]
fn trace_follows_real_packets_through_a_running_gateway() {
    if !require_root_with("the trace lab test", &["ping", "ethtool"]) {
        return;
    }
    let dir = TempDir::new("trace");
    let socket = dir.path().join("xdpgw.sock");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "rules = \"{}\"\ncontrol_socket = \"{}\"\n\n[[interface]]\nname = \"lan0\"\naddress = \"192.168.10.1/24\"\n\n[[interface]]\nname = \"wan0\"\naddress = \"203.0.113.1/24\"\n\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"203.0.113.254\"\n",
            workspace_dir().join("conf/gateway.rules").display(),
            socket.display()
        ),
    )
    .expect("config");

    let client = host("trace-client");
    let gw = host("trace-gw");
    let server = host("trace-server");
    veth(&gw, "lan0", &client, "eth0");
    veth(&gw, "wan0", &server, "eth0");
    client.exec_ok(&["ip", "addr", "add", "192.168.10.2/24", "dev", "eth0"]);
    client.exec_ok(&["ip", "route", "add", "default", "via", "192.168.10.1"]);
    server.exec_ok(&["ip", "addr", "add", "203.0.113.254/24", "dev", "eth0"]);
    // Checksums complete in software on the hosts (as the lab does): with
    // veth's offload they would reach the gateway unfinished, and conntrack
    // judges such segments INVALID as Linux's nf_conntrack_checksum does.
    for h in [&client, &server] {
        h.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
    }

    let bin = xdpgw_binary().display().to_string();
    let config_arg = config.display().to_string();
    let mut run = gw.spawn(&[&bin, "run", "--config", &config_arg]);
    run.wait_line("`ready` line", Duration::from_secs(30), |l| {
        l.starts_with("ready")
    });
    let tools = tools_binary().display().to_string();
    let mut web = server.spawn(&[&tools, "tcp-serve", "80"]);
    web.wait_line("`listening` line", WAIT, |l| l.starts_with("listening"));

    // The gateway learns the server's address first (else the SYN waits for
    // ARP, which the trace would show as such).
    assert!(client
        .exec(&["ping", "-c", "1", "-W", "2", "-n", "203.0.113.254"])
        .status
        .success());

    // A TCP connection through MASQUERADE: its SYN and the SYN/ACK.
    let trace = start_trace(
        &socket,
        &[
            "--count",
            "2",
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--ports",
            "80",
        ],
    );
    let got = client.exec_ok(&[&tools, "tcp-get", "203.0.113.254", "80", "1000"]);
    assert!(got.starts_with("ok "), "{got}");
    let lines = finish(trace);
    assert!(lines[0]
        .starts_with("tracing the next 2 packets matching '-p tcp -m multiport --ports 80'"));
    let syn = packet(&lines, 1);
    let text = syn.join("\n");
    assert!(
        syn[0].starts_with("packet 1: lan0 tcp 192.168.10.2:"),
        "{text}"
    );
    assert!(syn[0].ends_with(" > 203.0.113.254:80 [SYN]"), "{text}");
    assert!(syn.contains(&"  conntrack: NEW".to_string()), "{text}");
    assert!(
        syn.contains(&"  filter FORWARD rule 4 (-A FORWARD -s 192.168.10.0/24 -i lan0 -o wan0 -j ACCEPT): ACCEPT".to_string()),
        "{text}"
    );
    let nat = find(&syn, "  nat POSTROUTING rule 1 (-A POSTROUTING -s 192.168.10.0/24 -o wan0 -j MASQUERADE): MASQUERADE source 192.168.10.2:");
    assert!(nat.contains(" -> 203.0.113.1:"), "{text}");
    assert_eq!(
        syn.last().map(String::as_str),
        Some("  verdict: forwarded out wan0")
    );
    let synack = packet(&lines, 2);
    let text = synack.join("\n");
    assert!(
        synack[0].starts_with("packet 2: wan0 tcp 203.0.113.254:80 > 203.0.113.1:"),
        "{text}"
    );
    assert!(synack[0].ends_with("[SYN,ACK]"), "{text}");
    assert!(
        synack.contains(&"  conntrack: ESTABLISHED (reply direction, TCP SYN_RECV)".to_string()),
        "{text}"
    );
    let denat = find(&synack, "  nat PREROUTING: destination 203.0.113.1:");
    assert!(denat.contains(" -> 192.168.10.2:"), "{text}");
    assert_eq!(
        synack.last().map(String::as_str),
        Some("  verdict: forwarded out lan0")
    );

    // Refused mail: the REJECT, the reset the gateway sends, the drop.
    let trace = start_trace(&socket, &["-p", "tcp", "--dport", "25", "--count", "1"]);
    let out = client.exec(&[
        &tools,
        "tcp-connect",
        "203.0.113.254",
        "25",
        "--timeout",
        "5",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with("refused") || said.starts_with("reset"),
        "{said}"
    );
    let lines = finish(trace);
    let p = packet(&lines, 1);
    let text = p.join("\n");
    assert!(text.contains("  filter FORWARD rule 3 (-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset): REJECT with tcp-reset"), "{text}");
    assert!(
        text.contains("  the gateway answers: tcp 203.0.113.254:25 > 192.168.10.2:"),
        "{text}"
    );
    assert!(text.contains("    answer sent out lan0"), "{text}");
    assert_eq!(
        p.last().map(String::as_str),
        Some("  verdict: dropped (filter_reject in filter FORWARD rule 3)")
    );

    // One trace at a time; a client that goes away (Ctrl-C) ends its trace.
    let mut long = start_trace(&socket, &["-p", "icmp", "--count", "100"]);
    let busy = Command::new(xdpgw_binary())
        .args(["trace", "--socket"])
        .arg(&socket)
        .args(["-p", "udp"])
        .output()
        .expect("second trace");
    assert!(!busy.status.success());
    assert_eq!(
        String::from_utf8_lossy(&busy.stderr),
        "xdpgw: another trace is running; one at a time\n"
    );
    assert!(client
        .exec(&["ping", "-c", "1", "-W", "2", "-n", "203.0.113.254"])
        .status
        .success());
    long.wait_line("packet 1", WAIT, |l| {
        l.starts_with("packet 1: lan0 icmp 192.168.10.2 > 203.0.113.254 echo-request")
    });
    long.signal("INT");
    let done = long.wait(WAIT);
    assert!(
        !done.status.success(),
        "Ctrl-C ends the client: {}",
        done.report()
    );
    // The gateway notices the closed connection and removes the trace: a new
    // one can start (until then it is refused as busy).
    let deadline = Instant::now() + WAIT;
    let next = loop {
        let mut cmd = Command::new(xdpgw_binary());
        cmd.arg("trace")
            .arg("--socket")
            .arg(&socket)
            .args(["-p", "icmp", "--count", "1"]);
        let mut p = Process::start(cmd);
        if p.try_wait_line(WAIT, |l| l.starts_with("tracing the next"))
            .is_some()
        {
            break p;
        }
        let refused = p.wait(WAIT);
        assert!(
            refused
                .stderr
                .iter()
                .any(|l| l.contains("another trace is running")),
            "{}",
            refused.report()
        );
        assert!(
            Instant::now() < deadline,
            "the interrupted trace was never removed"
        );
    };
    assert!(client
        .exec(&["ping", "-c", "1", "-W", "2", "-n", "192.168.10.1"])
        .status
        .success());
    let lines = finish(next);
    let p = packet(&lines, 1);
    assert_eq!(
        p[0],
        "packet 1: lan0 icmp 192.168.10.2 > 192.168.10.1 echo-request id ".to_string()
            + p[0].rsplit(' ').next().unwrap_or("")
    );
    assert!(
        p.contains(&"  verdict: answered: the answer is sent out lan0".to_string()),
        "{}",
        p.join("\n")
    );

    drop(web);
    let done = run.stop(WAIT);
    assert!(done.status.success(), "{}", done.report());
}

/// IPv6 through the same kind of lab, the gateway dual-stack with
/// conf/gateway.rules6: an echo request through NAT66, a TCP connection's
/// SYN and SYN/ACK (`-6`), and a REJECT's reset, each traced as its steps
/// through ip6tables' tables happened.
#[test]
fn trace_follows_real_ipv6_packets_through_a_running_gateway() {
    if !require_root_with("the IPv6 trace lab test", &["ping", "ethtool"]) {
        return;
    }
    let dir = TempDir::new("trace6");
    let socket = dir.path().join("xdpgw.sock");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "rules = \"{}\"\nrules6 = \"{}\"\ncontrol_socket = \"{}\"\n\n\
             [[interface]]\nname = \"lan0\"\naddress = [\"192.168.10.1/24\", \"fd00:10::1/64\"]\n\n\
             [[interface]]\nname = \"wan0\"\naddress = [\"203.0.113.1/24\", \"2001:db8:113::1/64\"]\n\n\
             [[route]]\nto = \"0.0.0.0/0\"\nvia = \"203.0.113.254\"\n",
            workspace_dir().join("conf/gateway.rules").display(),
            workspace_dir().join("conf/gateway.rules6").display(),
            socket.display()
        ),
    )
    .expect("config");

    // IPv6 on, duplicate address detection off (addresses usable at once).
    let dual = |tag: &str| {
        let ns = host(tag);
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0");
            ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
        }
        ns
    };
    let client = dual("trace6-client");
    let gw = dual("trace6-gw");
    let server = dual("trace6-server");
    veth(&gw, "lan0", &client, "eth0");
    veth(&gw, "wan0", &server, "eth0");
    client.exec_ok(&["ip", "addr", "add", "fd00:10::2/64", "dev", "eth0", "nodad"]);
    client.exec_ok(&["ip", "-6", "route", "add", "default", "via", "fd00:10::1"]);
    server.exec_ok(&[
        "ip",
        "addr",
        "add",
        "2001:db8:113::254/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    server.exec_ok(&[
        "ip",
        "-6",
        "route",
        "add",
        "fd00:10::/64",
        "via",
        "2001:db8:113::1",
    ]);
    for h in [&client, &server] {
        h.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
    }

    let bin = xdpgw_binary().display().to_string();
    let config_arg = config.display().to_string();
    let mut run = gw.spawn(&[&bin, "run", "--config", &config_arg]);
    run.wait_line("`ready` line", Duration::from_secs(30), |l| {
        l.starts_with("ready")
    });
    let tools = tools_binary().display().to_string();
    let mut web = server.spawn(&[&tools, "tcp-serve", "80", "--bind", "::"]);
    web.wait_line("`listening` line", WAIT, |l| l.starts_with("listening"));

    // Neighbour discovery done first on both sides (else the first packet
    // waits for it, which the trace would show as such).
    let ping = |count: &str| {
        client
            .exec(&[
                "ping",
                "-6",
                "-c",
                count,
                "-W",
                "2",
                "-n",
                "2001:db8:113::254",
            ])
            .status
            .success()
    };
    assert!(ping("1"));

    // An echo request through NAT66: IPv6 only, by its ICMPv6 type.
    let trace = start_trace(
        &socket,
        &[
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "echo-request",
            "--count",
            "1",
        ],
    );
    assert!(ping("1"));
    let lines = finish(trace);
    assert!(
        lines[0].starts_with(
            "tracing the next 1 IPv6 packet matching '-p ipv6-icmp --icmpv6-type echo-request'"
        ),
        "{}",
        lines[0]
    );
    let echo = packet(&lines, 1);
    let text = echo.join("\n");
    assert!(
        echo[0]
            .starts_with("packet 1: lan0 icmpv6 fd00:10::2 > 2001:db8:113::254 echo-request id "),
        "{text}"
    );
    let id = echo[0].rsplit(' ').next().unwrap_or_default().to_string();
    assert_eq!(
        echo[1..],
        [
            "  raw PREROUTING: policy ACCEPT",
            "  conntrack: NEW",
            "  mangle PREROUTING: policy ACCEPT",
            "  nat PREROUTING: policy ACCEPT",
            "  mangle FORWARD: policy ACCEPT",
            "  filter FORWARD rule 3 (-A FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT): ACCEPT",
            "  mangle POSTROUTING: policy ACCEPT",
            "  nat POSTROUTING rule 1 (-A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE): MASQUERADE source fd00:10::2 -> 2001:db8:113::1",
            "  verdict: forwarded out wan0",
        ],
        "{text}"
    );
    assert!(!id.is_empty());

    // A TCP connection: its SYN and the SYN/ACK (`-6`: IPv6 only).
    let trace = start_trace(
        &socket,
        &[
            "-6",
            "--count",
            "2",
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--ports",
            "80",
        ],
    );
    let got = client.exec_ok(&[&tools, "tcp-get", "2001:db8:113::254", "80", "1000"]);
    assert!(got.starts_with("ok "), "{got}");
    let lines = finish(trace);
    assert!(lines[0].starts_with(
        "tracing the next 2 IPv6 packets matching '-6 -p tcp -m multiport --ports 80'"
    ));
    let syn = packet(&lines, 1);
    let text = syn.join("\n");
    assert!(
        syn[0].starts_with("packet 1: lan0 tcp [fd00:10::2]:"),
        "{text}"
    );
    assert!(
        syn[0].ends_with(" > [2001:db8:113::254]:80 [SYN]"),
        "{text}"
    );
    assert!(syn.contains(&"  conntrack: NEW".to_string()), "{text}");
    assert!(
        syn.contains(&"  mangle FORWARD rule 2 (-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu): TCPMSS, continue".to_string()),
        "{text}"
    );
    assert!(
        syn.contains(&"  filter FORWARD rule 4 (-A FORWARD -s fd00:10::/64 -i lan0 -o wan0 -j ACCEPT): ACCEPT".to_string()),
        "{text}"
    );
    let nat = find(&syn, "  nat POSTROUTING rule 1 (-A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE): MASQUERADE source [fd00:10::2]:");
    assert!(nat.contains(" -> [2001:db8:113::1]:"), "{text}");
    assert_eq!(
        syn.last().map(String::as_str),
        Some("  verdict: forwarded out wan0")
    );
    let synack = packet(&lines, 2);
    let text = synack.join("\n");
    assert!(
        synack[0].starts_with("packet 2: wan0 tcp [2001:db8:113::254]:80 > [2001:db8:113::1]:"),
        "{text}"
    );
    assert!(synack[0].ends_with("[SYN,ACK]"), "{text}");
    assert!(
        synack.contains(&"  conntrack: ESTABLISHED (reply direction, TCP SYN_RECV)".to_string()),
        "{text}"
    );
    let denat = find(&synack, "  nat PREROUTING: destination [2001:db8:113::1]:");
    assert!(denat.contains(" -> [fd00:10::2]:"), "{text}");
    assert!(
        synack.contains(&"  filter FORWARD rule 1 (-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT): ACCEPT".to_string()),
        "{text}"
    );
    assert_eq!(
        synack.last().map(String::as_str),
        Some("  verdict: forwarded out lan0")
    );

    // From the WAN to the LAN: the REJECT, the reset the gateway sends, the
    // drop. The match names no family: IPv4 and IPv6 packets are traced.
    let trace = start_trace(&socket, &["-p", "tcp", "--dport", "25", "--count", "1"]);
    let out = server.exec(&[&tools, "tcp-connect", "fd00:10::2", "25", "--timeout", "5"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with("refused") || said.starts_with("reset"),
        "{said}"
    );
    let lines = finish(trace);
    assert!(lines[0].starts_with("tracing the next 1 packet matching '-p tcp --dport 25'"));
    let p = packet(&lines, 1);
    let text = p.join("\n");
    assert!(
        p[0].starts_with("packet 1: wan0 tcp [2001:db8:113::254]:"),
        "{text}"
    );
    assert!(text.contains("  filter FORWARD rule 7 (-A FORWARD -i wan0 -p tcp -j REJECT --reject-with tcp-reset): REJECT with tcp-reset"), "{text}");
    assert!(
        text.contains("  the gateway answers: tcp [fd00:10::2]:25 > [2001:db8:113::254]:"),
        "{text}"
    );
    assert!(text.contains("    answer sent out wan0"), "{text}");
    assert_eq!(
        p.last().map(String::as_str),
        Some("  verdict: dropped (filter_reject in filter FORWARD rule 7)")
    );

    drop(web);
    let done = run.stop(WAIT);
    assert!(done.status.success(), "{}", done.report());
}
