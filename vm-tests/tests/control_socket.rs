//! The control socket against a real `xdpgw run` in a namespace lab:
//! client ── lan0 [xdpgw] wan0 ── server, pings through it, and the
//! operator's commands (`reload`, `list`, `save -c`, `zero`, `stats`,
//! `conntrack`) through the socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use xdpgw_control::lab::veth;
use xdpgw_vm_tests::{require_root_with, workspace_dir, xdpgw_binary, Netns};

/// A scratch directory, removed on drop (also while unwinding).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xdpgw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn host(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns
}

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

#[test]
fn control_socket_reload_views_and_conntrack() {
    if !require_root_with("the control socket lab test", &["ping"]) {
        return;
    }
    let dir = TempDir::new("control");
    let rules = dir.0.join("gateway.rules");
    let base = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules");
    std::fs::write(&rules, &base).expect("rules");
    let socket = dir.0.join("xdpgw.sock");
    let config = dir.0.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "rules = \"{}\"\ncontrol_socket = \"{}\"\n\n[[interface]]\nname = \"lan0\"\naddress = \"192.168.10.1/24\"\n\n[[interface]]\nname = \"wan0\"\naddress = \"203.0.113.1/24\"\n\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"203.0.113.254\"\n",
            rules.display(),
            socket.display()
        ),
    )
    .expect("config");

    let client = host("ctl-client");
    let gw = host("ctl-gw");
    let server = host("ctl-server");
    veth(&gw, "lan0", &client, "eth0");
    veth(&gw, "wan0", &server, "eth0");
    client.exec_ok(&["ip", "addr", "add", "192.168.10.2/24", "dev", "eth0"]);
    client.exec_ok(&["ip", "route", "add", "default", "via", "192.168.10.1"]);
    server.exec_ok(&["ip", "addr", "add", "203.0.113.254/24", "dev", "eth0"]);

    let bin = xdpgw_binary().display().to_string();
    let config_arg = config.display().to_string();
    let mut run = gw.spawn(&[&bin, "run", "--config", &config_arg]);
    run.wait_line("`ready` line", Duration::from_secs(30), |l| {
        l.starts_with("ready")
    });

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
    let bad = dir.0.join("bad.rules");
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
    let blocking = dir.0.join("blocking.rules");
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
    assert!(s.starts_with("entries=0 "), "{s}");

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
    let big_file = dir.0.join("big.rules");
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
