//! The control socket against a real `xdpgw run` in a namespace lab:
//! client ── lan0 [xdpgw] wan0 ── server, pings through it, and the
//! operator's commands (`reload`, `list`, `save -c`, `zero`, `stats`,
//! `conntrack`) through the socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use xdpgw_vm_tests::lab::host_netns as host;
use xdpgw_vm_tests::lab::WorkDir as TempDir;

use xdpgw_vm_tests::lab::{veth, Process};
use xdpgw_vm_tests::{require_root_with, tools_binary, workspace_dir, xdpgw_binary, Netns};

/// `xdpgw ARGS... --socket SOCKET`, run to its end.
fn xdpgw(socket: &Path, args: &[&str]) -> Output {
    let out = Command::new(xdpgw_binary())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run xdpgw");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let out = xdpgw(socket, args);
    assert!(
        out.status.success(),
        "xdpgw {args:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn ping(client: &Netns, count: &str) -> bool {
    client
        .exec(&[
            "ping",
            "-c",
            count,
            "-i",
            "0.2",
            "-W",
            "1",
            "-n",
            "203.0.113.254",
        ])
        .status
        .success()
}

/// The packet count of the FORWARD rule whose line contains `needle`
/// (`xdpgw list -v -x -n FORWARD`).
fn forward_packets(socket: &Path, needle: &str) -> u64 {
    let out = ok(socket, &["list", "-v", "-x", "-n", "FORWARD"]);
    let line = out
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no FORWARD rule with '{needle}' in:\n{out}"));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in '{line}'"))
}

/// client ── lan0 [`xdpgw run` with conf/gateway.rules] wan0 ── server,
/// its configuration carrying `extra` lines; the gateway has said `ready`.
struct CtlLab {
    // Dropped in this order: the gateway stops before its namespaces go.
    run: Process,
    client: Netns,
    gw: Netns,
    server: Netns,
    base: String,
    socket: PathBuf,
    config: PathBuf,
    dir: TempDir,
}

fn ctl_lab(tag: &str, extra: &str) -> CtlLab {
    let dir = TempDir::new(tag);
    let rules = dir.path().join("gateway.rules");
    let base = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules");
    std::fs::write(&rules, &base).expect("rules");
    let socket = dir.path().join("xdpgw.sock");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "rules = \"{}\"\ncontrol_socket = \"{}\"\n{extra}\n[[interface]]\nname = \"lan0\"\naddress = \"192.168.10.1/24\"\n\n[[interface]]\nname = \"wan0\"\naddress = \"203.0.113.1/24\"\n\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"203.0.113.254\"\n",
            rules.display(),
            socket.display()
        ),
    )
    .expect("config");

    let client = host(&format!("{tag}-client"));
    let gw = host(&format!("{tag}-gw"));
    let server = host(&format!("{tag}-server"));
    veth(&gw, "lan0", &client, "eth0");
    veth(&gw, "wan0", &server, "eth0");
    client.exec_ok(&["ip", "addr", "add", "192.168.10.2/24", "dev", "eth0"]);
    client.exec_ok(&["ip", "route", "add", "default", "via", "192.168.10.1"]);
    server.exec_ok(&["ip", "addr", "add", "203.0.113.254/24", "dev", "eth0"]);
    // Checksums complete in software (as the lab does): with offload on,
    // TCP over veth would reach the gateway with partial checksums.
    for h in [&client, &server] {
        h.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
    }

    let bin = xdpgw_binary().display().to_string();
    let config_arg = config.display().to_string();
    let mut run = gw.spawn(&[&bin, "run", "--config", &config_arg]);
    run.wait_line("`ready` line", Duration::from_secs(30), |l| {
        l.starts_with("ready")
    });
    CtlLab {
        run,
        client,
        gw,
        server,
        base,
        socket,
        config,
        dir,
    }
}

#[test]
fn control_socket_reload_views_and_conntrack() {
    if !require_root_with("the control socket lab test", &["ping", "ethtool"]) {
        return;
    }
    let CtlLab {
        dir,
        config,
        socket,
        base,
        client,
        gw: _gw,
        server: _server,
        run,
    } = ctl_lab("ctl", "");
    let config_arg = config.display().to_string();

    // The socket is there once `ready` is printed, root's only.
    let meta = std::fs::symlink_metadata(&socket).expect("the control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Clients find it through the configuration too.
    let out = Command::new(xdpgw_binary())
        .args(["stats", "--config", &config_arg])
        .output()
        .expect("xdpgw stats --config");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Traffic through the gateway shows in conntrack and the counters.
    assert!(ping(&client, "3"), "ping through the gateway");
    let ct = ok(
        &socket,
        &["conntrack", "-L", "-p", "icmp", "-s", "192.168.10.2"],
    );
    assert!(
        ct.lines().any(|l| l.starts_with("ipv4     2 icmp     1 ")
            && l.contains("src=192.168.10.2 dst=203.0.113.254 type=8 code=0")
            && l.contains("src=203.0.113.254 dst=203.0.113.1 type=0 code=0")),
        "conntrack -L:\n{ct}"
    );
    assert_eq!(ok(&socket, &["conntrack", "-L", "-s", "10.9.9.9"]), "");
    assert_eq!(ok(&socket, &["conntrack", "-C"]).trim(), "1");
    let est = forward_packets(&socket, "ctstate RELATED,ESTABLISHED");
    let new = forward_packets(&socket, "192.168.10.0/24");
    assert!(
        est >= 5 && new >= 1,
        "FORWARD counters: established {est}, new {new}"
    );
    let stats = ok(&socket, &["stats"]);
    let received: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("total: received "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("stats:\n{stats}"));
    assert!(received >= 6, "stats:\n{stats}");
    let saved = ok(&socket, &["save", "-c", "-t", "filter"]);
    assert!(
        saved.lines().any(|l| l.starts_with(&format!("[{est}:"))
            && l.ends_with("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")),
        "save -c:\n{saved}"
    );

    // A file with errors is refused, with file:line:column; the old rules
    // stay in force.
    let bad = dir.path().join("bad.rules");
    std::fs::write(
        &bad,
        base.replace("--dport 53 -j ACCEPT", "--dport 99999 -j ACCEPT"),
    )
    .expect("bad rules");
    let out = xdpgw(&socket, &["reload", "--rules", &bad.display().to_string()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "reload of a bad file: {err}");
    assert!(
        err.contains(&format!("{}:", bad.display()))
            && err.contains("bad value '99999' for --dport")
            && err.contains("the running rules stay in force"),
        "{err}"
    );
    let line = err.lines().find(|l| l.contains("99999")).unwrap_or("");
    let pos: Vec<&str> = line.splitn(4, ':').collect();
    assert!(
        pos.len() == 4 && pos[1].parse::<u32>().is_ok() && pos[2].parse::<u32>().is_ok(),
        "file:line:column in '{line}'"
    );
    assert!(ping(&client, "1"), "the old rules still forward");

    // A good reload changes behaviour and keeps the unchanged rules' counters.
    let est_before = forward_packets(&socket, "ctstate RELATED,ESTABLISHED");
    let blocking = dir.path().join("blocking.rules");
    std::fs::write(
        &blocking,
        base.replace(
            "-A FORWARD -i lan0 -o wan0 -s 192.168.10.0/24 -j ACCEPT",
            "-A FORWARD -i lan0 -o wan0 -s 192.168.10.0/24 -j DROP",
        ),
    )
    .expect("blocking rules");
    let t = Instant::now();
    let out = ok(
        &socket,
        &["reload", "--rules", &blocking.display().to_string()],
    );
    let took = t.elapsed();
    assert!(out.starts_with("reloaded "), "{out}");
    eprintln!("reload (this build): {took:?}: {out}");
    assert!(
        forward_packets(&socket, "ctstate RELATED,ESTABLISHED") >= est_before,
        "counters of unchanged rules are kept"
    );
    assert_eq!(
        forward_packets(&socket, "DROP       0    --  lan0   wan0"),
        0
    );
    assert!(!ping(&client, "1"), "the new rules drop new pings");
    assert_eq!(
        forward_packets(&socket, "DROP       0    --  lan0   wan0"),
        1
    );
    // Back to the configuration's file (what SIGHUP loads too).
    ok(&socket, &["reload"]);
    assert!(ping(&client, "1"), "forwarding again");

    // zero, conntrack -D/-F.
    ok(&socket, &["zero"]);
    assert_eq!(forward_packets(&socket, "ctstate RELATED,ESTABLISHED"), 0);
    let deleted = ok(&socket, &["conntrack", "-D", "-p", "icmp"]);
    assert!(
        deleted.contains("flow entries have been deleted"),
        "{deleted}"
    );
    assert_eq!(ok(&socket, &["conntrack", "-C"]).trim(), "0");
    let s = ok(&socket, &["conntrack", "-S"]);
    assert!(
        s.starts_with("cpu=0   \tfound=") && s.lines().any(|l| l.starts_with("entries=0 ")),
        "{s}"
    );

    // A 10,000-rule set: from `xdpgw reload` to the set in force.
    let mut big =
        String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..10_000u32 {
        big.push_str(&format!(
            "-A FORWARD -s 10.{}.{}.0/24 -p tcp --dport {} -j DROP\n",
            i / 256,
            i % 256,
            1 + i % 60000
        ));
    }
    big.push_str("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n");
    let big_file = dir.path().join("big.rules");
    std::fs::write(&big_file, big).expect("big rules");
    let t = Instant::now();
    let out = ok(
        &socket,
        &["reload", "--rules", &big_file.display().to_string()],
    );
    eprintln!(
        "reload of 10,000 rules (this build): {:?}: {out}",
        t.elapsed()
    );
    assert!(out.contains("10003 rules"), "{out}");
    assert!(ping(&client, "1"), "forwarding with 10,000 rules");

    // SIGTERM: the gateway stops and removes its socket.
    let done = run.stop(Duration::from_secs(10));
    assert!(done.status.success(), "{}", done.report());
    assert!(!socket.exists(), "the control socket is removed at exit");
}

/// Runs a Python snippet in `ns` and returns its stdout (python3 is one of
/// the lab's packages, `vm-tests/setup.sh`).
fn python(ns: &Netns, code: &str) -> String {
    let out = ns.exec(&["python3", "-c", code]);
    assert!(
        out.status.success(),
        "python3 failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `GET path` over HTTP/1.1 to 127.0.0.1:port inside `ns`: the whole answer.
fn http_get(ns: &Netns, port: u16, path: &str) -> String {
    python(
        ns,
        &format!(
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',{port}),timeout=10)\ns.sendall(b'GET {path} HTTP/1.1\\r\\nHost: gw\\r\\n\\r\\n')\nd=b''\nwhile True:\n  b=s.recv(65536)\n  if not b: break\n  d+=b\nsys.stdout.write(d.decode())"
        ),
    )
}

/// Checks Prometheus text exposition: HELP and TYPE before each metric's
/// samples, names and labels well formed, values numbers. Returns the
/// samples as (name with labels, value).
fn parse_prometheus(body: &str) -> Vec<(String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed = std::collections::BTreeSet::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(name_ok(name), "HELP of a bad name: {l}");
            helped.insert(name.to_string());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut w = rest.split(' ');
            let (name, kind) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            assert!(name_ok(name) && ["counter", "gauge"].contains(&kind), "{l}");
            assert!(helped.contains(name), "TYPE before HELP: {l}");
            typed.insert(name.to_string());
        } else {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            let name = series.split('{').next().unwrap_or("");
            assert!(name_ok(name) && name.starts_with("xdpgw_"), "bad name: {l}");
            assert!(typed.contains(name), "sample before its TYPE: {l}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|x| x.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("bad labels: {l}"));
                    for pair in inner.split("\",") {
                        let (k, v) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label: {l}"));
                        assert!(name_ok(k), "bad label name: {l}");
                        assert!(
                            !v.trim_end_matches('"').contains('"'),
                            "unescaped quote: {l}"
                        );
                    }
                }
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {l}"));
            samples.push((series.to_string(), v));
        }
    }
    samples
}

/// A TCP segment with SYN and FIN set (a valid checksum), from the client
/// to the server through the gateway: conntrack calls it INVALID
/// (`tcp_bad_flags`).
const SYN_FIN: &str = "
import socket,struct
src,dst='192.168.10.2','203.0.113.254'
h=struct.pack('!HHIIBBHHH',40001,8080,1,0,5<<4,0x03,1024,0,0)
p=socket.inet_aton(src)+socket.inet_aton(dst)+struct.pack('!BBH',0,6,len(h))
s=sum(struct.unpack('!%dH'%((len(p)+len(h))//2),p+h))
while s>>16: s=(s&0xffff)+(s>>16)
h=h[:16]+struct.pack('!H',(~s)&0xffff)+h[18:]
r=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP)
r.sendto(h,(dst,0))
";

#[test]
fn operator_views_events_stats_and_metrics() {
    if !require_root_with(
        "the operator views lab test",
        &["ping", "python3", "ethtool"],
    ) {
        return;
    }
    // A table sized in the configuration ([conntrack]): every view shows it.
    let lab = ctl_lab(
        "ops",
        "metrics_listen = \"127.0.0.1:9469\"\n\n[conntrack]\nmax = 65536\nbuckets = 131072\n",
    );
    let socket = &lab.socket;
    let bin = xdpgw_binary();
    let socket_arg = socket.display().to_string();

    // conntrack -E: subscribed once an event of a ping shows.
    let mut cmd = Command::new(&bin);
    cmd.args([
        "conntrack",
        "-E",
        "-s",
        "192.168.10.2",
        "--socket",
        &socket_arg,
    ]);
    let mut events = Process::start(cmd);
    let mut seen = false;
    for _ in 0..10 {
        assert!(ping(&lab.client, "1"), "ping through the gateway");
        if events
            .try_wait_line(Duration::from_secs(2), |l| {
                l.starts_with("    [NEW] icmp     1 30 src=192.168.10.2 ")
            })
            .is_some()
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "no NEW event for a ping:\n{}", events.report());

    // A TCP connection through the gateway: NEW, UPDATEs up to ESTABLISHED
    // and ASSURED, then DESTROY when conntrack -D deletes it.
    let tools = tools_binary().display().to_string();
    let mut tcp_server = lab.server.spawn(&[&tools, "tcp-serve", "8080"]);
    tcp_server.wait_line("`listening` line", Duration::from_secs(10), |l| {
        l.starts_with("listening")
    });
    let got = lab.client.run(
        &[&tools, "tcp-get", "203.0.113.254", "8080", "1000"],
        Duration::from_secs(20),
    );
    assert!(got.first_line().starts_with("ok "), "{}", got.report());
    let new = events.wait_line("[NEW] tcp", Duration::from_secs(10), |l| {
        l.starts_with("    [NEW] tcp")
    });
    assert!(
        new.starts_with(
            "    [NEW] tcp      6 120 SYN_SENT src=192.168.10.2 dst=203.0.113.254 sport="
        ) && new.contains(
            " dport=8080 [UNREPLIED] src=203.0.113.254 dst=203.0.113.1 sport=8080 dport="
        ),
        "{new}"
    );
    let est = events.wait_line("[UPDATE] ESTABLISHED", Duration::from_secs(10), |l| {
        l.starts_with(" [UPDATE] tcp      6 432000 ESTABLISHED src=192.168.10.2 ")
    });
    assert!(est.ends_with("[ASSURED]"), "{est}");
    let deleted = ok(socket, &["conntrack", "-D", "-p", "tcp"]);
    assert!(
        deleted.contains("1 flow entries have been deleted"),
        "{deleted}"
    );
    let destroy = events.wait_line("[DESTROY] tcp", Duration::from_secs(10), |l| {
        l.starts_with("[DESTROY] tcp      6 ")
    });
    assert!(
        destroy.contains(" src=192.168.10.2 dst=203.0.113.254 ")
            && destroy.contains("[ASSURED] [USERSPACE] portid=")
            && destroy.ends_with(" progname=xdpgw"),
        "{destroy}"
    );
    // Ctrl-C ends the stream with conntrack-tools' summary.
    events.signal("INT");
    let done = events.wait(Duration::from_secs(10));
    assert!(done.status.success(), "{}", done.report());
    assert!(
        done.report().contains("flow events have been shown."),
        "{}",
        done.report()
    );
    drop(tcp_server);

    // conntrack -S: a SYN+FIN counted INVALID by worker 0 with its reason.
    python(&lab.client, SYN_FIN);
    let mut stats = String::new();
    for _ in 0..50 {
        stats = ok(socket, &["conntrack", "-S"]);
        if stats
            .lines()
            .any(|l| l.starts_with("cpu=0 invalid tcp_bad_flags=1 "))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("cpu=0 invalid tcp_bad_flags=1 (")),
        "{stats}"
    );
    // The worker's line in conntrack-tools' layout; its invalid= is the
    // sum of the reasons listed for it (none of them an ICMP `error`).
    assert!(
        stats.lines().any(|l| l.starts_with("entries=")
            && l.contains(" max=65536 ")
            && l.ends_with(" buckets=131072")),
        "{stats}"
    );
    let cpu0 = stats.lines().next().unwrap_or("");
    assert!(
        cpu0.starts_with("cpu=0   \tfound=") && cpu0.ends_with(" clash_resolve=0 chaintoolong=0 "),
        "{stats}"
    );
    let field = |line: &str, key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    let by_reason: u64 = stats
        .lines()
        .filter_map(|l| l.strip_prefix("cpu=0 invalid "))
        .filter_map(|r| {
            r.split_once('=')
                .and_then(|(_, v)| v.split(' ').next()?.parse::<u64>().ok())
        })
        .sum();
    assert!(
        field(cpu0, "invalid=") >= 1 && field(cpu0, "invalid=") == by_reason,
        "{stats}"
    );
    assert!(
        field(cpu0, "insert=") >= 2,
        "a ping and a TCP connection: {stats}"
    );

    // Metrics over HTTP: Prometheus text carrying the forwarded packets.
    let answer = http_get(&lab.gw, 9469, "/metrics");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse_prometheus(body);
    let get = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    assert!(
        get("xdpgw_worker_forwarded_packets_total{worker=\"0\"}") >= 10.0,
        "{body}"
    );
    assert!(
        get("xdpgw_interface_received_packets_total{interface=\"lan0\"}") >= 5.0,
        "{body}"
    );
    assert!(get("xdpgw_conntrack_invalid_total{worker=\"0\",reason=\"tcp_bad_flags\"}") >= 1.0);
    assert_eq!(get("xdpgw_conntrack_max_entries"), 65536.0, "{body}");
    assert_eq!(get("xdpgw_conntrack_buckets"), 131072.0, "{body}");
    let rule = get(
        "xdpgw_rule_packets_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\",rule=\"1\"}",
    );
    assert!(rule >= 1.0, "{body}");
    // The same text through the socket.
    let over_socket = ok(socket, &["metrics"]);
    assert!(!parse_prometheus(&over_socket).is_empty());
    let missing = http_get(&lab.gw, 9469, "/other");
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );

    // stats --watch: at least two refreshes, each with rates.
    let mut cmd = Command::new(&bin);
    cmd.args(["stats", "--watch", "0.2", "--socket", &socket_arg]);
    let mut watch = Process::start(cmd);
    for n in 0..2 {
        watch.wait_line(&format!("refresh {n}"), Duration::from_secs(10), |l| {
            l.starts_with("rates over ")
        });
        let total = watch.wait_line("total line", Duration::from_secs(10), |l| {
            l.starts_with("total: received ")
        });
        assert!(!total.contains("received 0 "), "{total}");
    }
    let lines = watch.kill();
    let report = lines.report();
    assert!(report.contains("interface lan0: received "), "{report}");
    assert!(report.contains(" pps) sent "), "{report}");
    let once = ok(socket, &["stats"]);
    eprintln!("conntrack -S:\n{stats}\nstats:\n{once}");
    assert!(once.starts_with("rates over "), "{once}");
    assert!(
        once.lines().any(|l| l.starts_with("worker 0: received ")),
        "{once}"
    );
    assert!(
        once.lines()
            .any(|l| l.starts_with("conntrack: ") && l.contains(" entries of max 65536 (")),
        "{once}"
    );

    let CtlLab { run, .. } = lab;
    let done = run.stop(Duration::from_secs(10));
    assert!(done.status.success(), "{}", done.report());
}
