//! The control socket without a network: a real Unix socket served by
//! `api::server` for a gateway built in memory (no ports), driven by the
//! client of `api`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xdpgw_lab::WorkDir as TempDir;

use xdpgw_control::api::server::{Control, ControlSocket, SocketLimits};
use xdpgw_control::api::{Client, Request, Response};
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::gateway::{Gateway, GatewayConfig, IfaceConfig};

const RULES: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
COMMIT
";

/// Serves `ctl` on a socket in `dir` while `f` talks to it through a
/// client, then stops the server.
fn with_client(ctl: &Control, dir: &Path, f: impl FnOnce(&mut Client)) {
    serving(ctl, dir, SocketLimits::default(), |_, path| {
        let mut c = Client::connect(path).expect("connect");
        f(&mut c);
    });
}

/// Serves `ctl` on a socket in `dir` with `limits` while `f` runs, then
/// stops the server (also when `f` fails).
fn serving(ctl: &Control, dir: &Path, limits: SocketLimits, f: impl FnOnce(&ControlSocket, &Path)) {
    let path = dir.join("c.sock");
    let sock = ControlSocket::bind(&path)
        .expect("bind")
        .with_limits(limits);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| sock.serve(ctl, &stop));
        let _stopper = Stopper(&stop, &path);
        f(&sock, &path);
    });
}

struct Stopper<'a>(&'a AtomicBool, &'a Path);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        ControlSocket::wake(self.1);
    }
}

/// A work directory holding [`RULES`] as `gw.rules`, and a [`control`] of it.
fn control_in(tag: &str) -> (TempDir, Control) {
    let dir = TempDir::new(tag);
    let rules = dir.path().join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let ctl = control(rules);
    (dir, ctl)
}

fn control(rules_file: PathBuf) -> Control {
    control_of(rules_file, &[])
}

/// [`control`] with IPv6 addresses (`addr6[k]` for interface k; none: an
/// IPv4-only gateway, without an IPv6 table).
fn control_of(rules_file: PathBuf, addr6: &[&str]) -> Control {
    let set = xdpgw_control::load_rules(&rules_file).expect("rules");
    let iface = |name: &str, addr: [u8; 4], mac: u8| IfaceConfig {
        name: name.into(),
        mac: [2, 0, 0, 0, 0, mac],
        addr: Ipv4Addr::from(addr),
        prefix: 24,
        mtu: 1500,
        link: xdpgw_dataplane::link::Link::port(mac - 1),
        addr6: addr6
            .get(usize::from(mac - 1))
            .map(|a| vec![(a.parse().expect("an IPv6 address"), 64)])
            .unwrap_or_default(),
        link_local: xdpgw_dataplane::gateway::link_local_eui64([2, 0, 0, 0, 0, mac]),
        ra: None,
    };
    let gw = Gateway::new(
        GatewayConfig {
            ifaces: vec![
                iface("lan0", [192, 168, 10, 1], 1),
                iface("wan0", [203, 0, 113, 1], 2),
            ],
            routes: vec![],
            routes6: Vec::new(),
            policy: Default::default(),
            conntrack: ConntrackConfig::default(),
            icmp: Default::default(),
            frag: Default::default(),
        },
        &set,
    )
    .expect("gateway");
    Control {
        gw: Arc::new(gw),
        rules_file,
        state: Mutex::new(set),
        workers: vec![],
        names: vec!["lan0".into(), "wan0".into()],
        ports: vec!["lan0".into(), "wan0".into()],
        now: || 0,
        events: Default::default(),
        events6: Default::default(),
        config_file: None,
        conntrack: Mutex::new(ConntrackConfig::default()),
        nat_log: Default::default(),
        sync: None,
        rules6: Mutex::default(),
        reloads: Default::default(),
    }
}

#[test]
fn socket_is_private_replaces_stale_and_refuses_live() {
    let dir = TempDir::new("bind");
    let path = dir.path().join("x.sock");
    // A stale socket file (its listener is gone) is replaced.
    drop(UnixListener::bind(&path).expect("stale listener"));
    assert!(path.exists());
    let sock = ControlSocket::bind(&path).expect("bind over a stale socket");
    let meta = std::fs::symlink_metadata(&path).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A live one is an error, and stays.
    let e = ControlSocket::bind(&path)
        .err()
        .expect("second bind must fail");
    assert!(e.to_string().contains("is in use"), "{e}");
    assert!(path.exists());
    // Not a socket: left alone.
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").expect("file");
    let e = ControlSocket::bind(&file).err().expect("a plain file");
    assert!(e.to_string().contains("not a socket"), "{e}");
    drop(sock);
    assert!(!path.exists(), "removed when dropped");
}

#[test]
fn reload_list_zero_and_errors_over_the_socket() {
    let dir = TempDir::new("serve");
    let rules = dir.path().join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let ctl = control(rules.clone());
    with_client(&ctl, dir.path(), |c| {
        let r = c.call(&Request::new("ping")).expect("ping");
        assert!(r.ok && r.body[0].starts_with("xdpgw "), "{r:?}");

        // Counters carried over a reload for an unchanged rule.
        let live = ctl.gw.rules();
        let slot = live
            .table(xdpgw_dataplane::rule::Table::Filter)
            .and_then(|t| t.hook_chain(xdpgw_dataplane::rule::Hook::Forward))
            .map(|c| c.rules[0].counter as usize)
            .expect("FORWARD rule 0");
        live.live.add_base(slot, (7, 700));
        drop(live);
        let changed = dir.path().join("changed.rules");
        std::fs::write(
            &changed,
            RULES.replace("-i lan0 -o wan0 -j ACCEPT", "-i lan0 -o wan0 -j DROP"),
        )
        .expect("rules");
        let r = c
            .call(&Request::new("reload").arg("file", changed.display().to_string()))
            .expect("reload");
        assert!(r.ok, "{r:?}");
        let r = c
            .call(
                &Request::new("list")
                    .arg("chain", "FORWARD")
                    .flag("verbose", true)
                    .flag("numeric", true)
                    .flag("exact", true),
            )
            .expect("list");
        assert!(r.ok, "{r:?}");
        assert_eq!(r.body[0], "Chain FORWARD (policy DROP 0 packets, 0 bytes)");
        assert!(
            r.body[2].starts_with("       7      700 ACCEPT ")
                && r.body[2].ends_with("ctstate RELATED,ESTABLISHED"),
            "{:?}",
            r.body
        );
        assert!(
            r.body[3].starts_with("       0        0 DROP "),
            "{:?}",
            r.body
        );

        // A bad file: ERR with file:line:column, the running set unchanged.
        let bad = dir.path().join("bad.rules");
        std::fs::write(
            &bad,
            RULES
                .replace("-j DROP", "-j NOPE")
                .replace("-o wan0 -j ACCEPT", "-o wan0 -j NOPE"),
        )
        .expect("rules");
        let r = c
            .call(&Request::new("reload").arg("file", bad.display().to_string()))
            .expect("reload");
        assert!(!r.ok);
        assert_eq!(r.message, "reload failed; the running rules stay in force");
        assert!(
            r.body[0].starts_with(&format!("{}:6:", bad.display())),
            "{:?}",
            r.body
        );
        let r = c.call(&Request::new("save")).expect("save");
        assert!(
            r.body
                .iter()
                .any(|l| l == "-A FORWARD -i lan0 -o wan0 -j DROP"),
            "{r:?}"
        );

        // zero, then save -c shows zeros.
        let r = c.call(&Request::new("zero")).expect("zero");
        assert!(r.ok, "{r:?}");
        let r = c
            .call(&Request::new("save").flag("counters", true))
            .expect("save -c");
        assert!(
            r.body
                .iter()
                .any(|l| l
                    == "[0:0] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            "{r:?}"
        );

        // Unknown things are errors, not crashes.
        let r = c.call(&Request::new("frobnicate")).expect("unknown");
        assert!(!r.ok && r.message.contains("unknown command"));
        let r = c
            .call(&Request::new("list").arg("table", "nope"))
            .expect("bad table");
        assert!(!r.ok && r.message.contains("unknown table"));
        let r = c
            .call(&Request::new("ct-list").arg("src", "300.1.1.1"))
            .expect("bad address");
        assert!(!r.ok && r.message.contains("bad address"));
        let r = c.call(&Request::new("ct-count")).expect("count");
        assert_eq!(r.body, vec!["0".to_string()]);
    });
}

/// A reload replaces the tables the file names and keeps the others, rules
/// and live counters (iptables-restore); `replace_all` empties the others;
/// a file cut short is refused and the running set kept.
#[test]
fn reload_replaces_only_the_tables_the_file_names() {
    let (dir, ctl) = control_in("merge");
    const NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                       :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n";
    with_client(&ctl, dir.path(), |c| {
        let live = ctl.gw.rules();
        let forward = live
            .table(xdpgw_dataplane::rule::Table::Filter)
            .and_then(|t| t.hook_chain(xdpgw_dataplane::rule::Hook::Forward))
            .expect("FORWARD");
        live.live
            .add_base(forward.rules[1].counter as usize, (7, 700));
        live.live.add_base(forward.counter as usize, (3, 300));
        drop(live);
        let save = |c: &mut Client| {
            let r = c
                .call(&Request::new("save").flag("counters", true))
                .expect("save");
            assert!(r.ok, "{r:?}");
            r.body.join("\n")
        };
        let filter_before: String = save(c);

        // A file with only the nat table: filter keeps its rules and counters.
        let nat = dir.path().join("nat.rules");
        std::fs::write(&nat, NAT).expect("nat");
        let r = c
            .call(&Request::new("reload").arg("file", nat.display().to_string()))
            .expect("reload");
        assert!(r.ok, "{r:?}");
        assert!(
            r.body[0].contains(": nat replaced (1 rule); filter untouched (2 rules); "),
            "{r:?}"
        );
        let after = save(c);
        assert!(
            after.starts_with(&filter_before),
            "{after}\n---\n{filter_before}"
        );
        assert!(
            filter_before.contains(":FORWARD DROP [3:300]"),
            "{filter_before}"
        );
        assert!(
            filter_before.contains("[7:700] -A FORWARD -i lan0 -o wan0 -j ACCEPT"),
            "{filter_before}"
        );
        assert!(
            after.contains("[0:0] -A POSTROUTING -o wan0 -j MASQUERADE"),
            "{after}"
        );

        // Cut short (no newline after the last line): refused, nothing changes.
        let cut = dir.path().join("cut.rules");
        std::fs::write(&cut, RULES.trim_end()).expect("cut");
        let r = c
            .call(&Request::new("reload").arg("file", cut.display().to_string()))
            .expect("reload");
        assert!(!r.ok, "{r:?}");
        assert!(
            r.body[0].starts_with(&format!(
                "{}:7:7: the last line has no newline at its end",
                cut.display()
            )),
            "{r:?}"
        );
        assert_eq!(save(c), after);

        // replace_all: the tables the file does not name become empty.
        let r = c
            .call(
                &Request::new("reload")
                    .arg("file", nat.display().to_string())
                    .flag("replace_all", true),
            )
            .expect("reload");
        assert!(r.ok, "{r:?}");
        assert!(
            r.body[0].contains(": nat replaced (1 rule); filter emptied; "),
            "{r:?}"
        );
        let r = c.call(&Request::new("save")).expect("save");
        assert!(
            r.body[0] == "*nat" && !r.body.iter().any(|l| l == "*filter"),
            "{r:?}"
        );
    });
}

/// `ct-events` over a real socket: a bad filter is an ordinary ERR; a
/// stream shows the table's events (filtered) as `conntrack -E` lines while
/// other clients are still answered; a deletion shows as DESTROY from
/// userspace; the stream ends with `.` when the gateway stops.
#[test]
fn conntrack_events_stream_over_the_socket() {
    use std::io::{BufRead, BufReader, Write};
    use xdpgw_dataplane::conntrack::{PacketMeta, Track};
    use xdpgw_dataplane::flow::Tuple;

    let (dir, ctl) = control_in("events");
    let path = dir.path().join("c.sock");
    let sock = ControlSocket::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    let open = |proto: u8, sport: u16| {
        let t = Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 254),
            sport,
            dport: 53,
            proto,
        };
        let meta = PacketMeta {
            tuple: t,
            len: 60,
            tcp: None,
            icmp: None,
        };
        match ctl.gw.conntrack.track(0, &meta) {
            Track::New(p) => {
                ctl.gw.conntrack.confirm(0, &p).expect("confirm");
            }
            other => panic!("{other:?}"),
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| sock.serve(&ctl, &stop));
        let mut c = Client::connect(&path).expect("connect");
        let r = c
            .call(&Request::new("ct-events").arg("src", "nope"))
            .expect("bad filter");
        assert!(!r.ok && r.message.contains("bad address"), "{r:?}");

        let mut stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        stream
            .write_all(b"XDPGW/1 ct-events proto=udp\n")
            .expect("request");
        let mut lines = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        lines.read_line(&mut line).expect("status");
        assert_eq!(line, "XDPGW/1 STREAM\n");

        // Another client is answered while the stream is open.
        let mut other = Client::connect(&path).expect("connect");
        assert!(other.call(&Request::new("ping")).expect("ping").ok);

        open(17, 5353); // shown
        open(47, 0); // filtered out (not UDP)
        line.clear();
        lines.read_line(&mut line).expect("event");
        assert_eq!(
            line,
            "E     [NEW] udp      17 30 src=192.168.10.2 dst=203.0.113.254 sport=5353 dport=53 [UNREPLIED] src=203.0.113.254 dst=192.168.10.2 sport=53 dport=5353\n"
        );
        let r = other.call(&Request::new("ct-flush")).expect("flush");
        assert!(r.ok, "{r:?}");
        line.clear();
        lines.read_line(&mut line).expect("event");
        assert_eq!(
            line,
            format!("E [DESTROY] udp      17 30 src=192.168.10.2 dst=203.0.113.254 sport=5353 dport=53 [UNREPLIED] src=203.0.113.254 dst=192.168.10.2 sport=53 dport=5353 [USERSPACE] portid={} progname={}\n", std::process::id(), std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default())
        );

        stop.store(true, Ordering::Relaxed);
        ControlSocket::wake(&path);
        line.clear();
        lines.read_line(&mut line).expect("end");
        assert_eq!(line, ".\n");
        drop(stream);
    });
    // The last listener gone: nothing is recorded any more.
    let mut out = Vec::new();
    open(17, 5354);
    ctl.gw.conntrack.events_drain(&mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn metrics_over_the_socket_are_prometheus_text() {
    let (_dir, ctl) = control_in("metrics");
    let text = xdpgw_control::api::metrics::render(&ctl);
    assert!(text.contains(
        "# TYPE xdpgw_conntrack_entries gauge\nxdpgw_conntrack_entries{family=\"ipv4\"} 0\n"
    ));
    assert!(text
        .contains("xdpgw_rule_packets_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\",rule=\"2\"} 0\n"));
    assert!(text.contains(
        "xdpgw_chain_policy_packets_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\"} 0\n"
    ));
    // Every sample's metric is declared first.
    let mut declared = Vec::new();
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("# TYPE ") {
            declared.push(r.split(' ').next().unwrap_or("").to_string());
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            assert!(declared.iter().any(|d| d == name), "{l}");
        }
    }
}

/// `conntrack -L` and a filtered `-C` leave out entries that have expired
/// but wait for the next expiry sweep (as Linux's dump does); the plain
/// count is the table's, as Linux's `nf_conntrack_count`.
#[test]
fn listings_leave_out_expired_entries_not_yet_swept() {
    use xdpgw_dataplane::conntrack::{PacketMeta, Track};
    use xdpgw_dataplane::flow::Tuple;

    const SEC: u64 = 1_000_000_000;
    let dir = TempDir::new("expired");
    let rules = dir.path().join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let mut ctl = control(rules);
    // UDP entries expire 30 s after their only packet: one at 0 s, one at 20 s.
    for (sport, at) in [(5001u16, 0), (5002, 20 * SEC)] {
        let meta = PacketMeta {
            tuple: Tuple {
                src: Ipv4Addr::new(192, 168, 10, 2),
                dst: Ipv4Addr::new(203, 0, 113, 254),
                sport,
                dport: 53,
                proto: 17,
            },
            len: 60,
            tcp: None,
            icmp: None,
        };
        match ctl.gw.conntrack.track(at, &meta) {
            Track::New(p) => {
                ctl.gw.conntrack.confirm(at, &p).expect("confirm");
            }
            other => panic!("{other:?}"),
        }
    }
    ctl.now = || 40 * SEC;
    with_client(&ctl, dir.path(), |c| {
        let r = c.call(&Request::new("ct-list")).expect("list");
        assert!(r.ok, "{r:?}");
        assert_eq!(r.body.len(), 1, "{:?}", r.body);
        assert!(r.body[0].contains("sport=5002"), "{:?}", r.body);
        let r = c
            .call(&Request::new("ct-count").arg("proto", "udp"))
            .expect("count");
        assert_eq!(r.body, ["1"]);
        let r = c.call(&Request::new("ct-count")).expect("count");
        assert_eq!(r.body, ["2"]);
    });
}

/// `n` UDP entries, from two clients (even `k` from .2, odd from .3).
fn fill(ctl: &Control, n: u16) {
    use xdpgw_dataplane::conntrack::{PacketMeta, Track};
    use xdpgw_dataplane::flow::Tuple;
    for k in 0..n {
        let meta = PacketMeta {
            tuple: Tuple {
                src: Ipv4Addr::new(192, 168, 10, 2 + (k % 2) as u8),
                dst: Ipv4Addr::new(203, 0, 113, 254),
                sport: 10000 + k,
                dport: 53,
                proto: 17,
            },
            len: 60,
            tcp: None,
            icmp: None,
        };
        match ctl.gw.conntrack.track(0, &meta) {
            Track::New(p) => {
                ctl.gw.conntrack.confirm(0, &p).expect("confirm");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Waits (at most 10 s) until `f` holds: for states the server shows no
/// signal of, such as how many clients it serves.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a request on a raw connection and reads its response.
fn raw_call(s: &UnixStream, line: &str) -> std::io::Result<Response> {
    (&mut &*s).write_all(format!("{line}\n").as_bytes())?;
    Response::read_from(&mut BufReader::new(s))
}

/// Asks for the whole conntrack table and reads only the status line.
fn stalled_listing(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(b"XDPGW/1 ct-list\n").expect("request");
    let mut status = [0u8; 11];
    s.read_exact(&mut status).expect("status");
    assert_eq!(&status, b"XDPGW/1 OK\n");
    s
}

/// 200 clients that send nothing and one that asked for a 30,000-entry
/// listing and reads none of it hold up nobody: a new client's `stats`,
/// `ping` and `list` are answered meanwhile. The listing, read at last,
/// is whole; a streamed `conntrack -D` deletes what it shows.
#[test]
fn idle_clients_and_a_stalled_listing_hold_up_no_one() {
    const ENTRIES: u16 = 30_000;
    let (dir, ctl) = control_in("crowd");
    fill(&ctl, ENTRIES);
    serving(&ctl, dir.path(), SocketLimits::default(), |sock, path| {
        let idle: Vec<UnixStream> = (0..200)
            .map(|_| UnixStream::connect(path).expect("connect"))
            .collect();
        wait_until("200 clients are served", || sock.clients() == 200);
        // About 4 MB of lines: far more than the socket buffers hold.
        let mut lister = stalled_listing(path);

        let t0 = Instant::now();
        let mut c = Client::connect(path).expect("connect");
        let stats = c.call(&Request::new("stats")).expect("stats");
        let stats_took = t0.elapsed();
        assert!(stats.ok, "{stats:?}");
        assert!(
            stats.body.iter().any(|l| l.starts_with("total: ")),
            "{stats:?}"
        );
        let ping = c.call(&Request::new("ping")).expect("ping");
        assert!(ping.ok, "{ping:?}");
        let list = c.call(&Request::new("list")).expect("list");
        assert!(
            list.ok && list.body[0].starts_with("Chain INPUT"),
            "{list:?}"
        );
        eprintln!(
            "with 200 idle clients and a stalled 30,000-entry listing: stats answered in {stats_took:?}, stats+ping+list in {:?}",
            t0.elapsed()
        );
        assert_eq!(sock.clients(), 202, "everyone is still connected");

        // The rest of the listing, up to its end.
        let mut entries = Vec::new();
        for l in BufReader::new(&mut lister).lines() {
            let l = l.expect("the rest of the listing");
            if l == "." {
                break;
            }
            entries.push(l);
        }
        assert_eq!(entries.len(), usize::from(ENTRIES));
        assert!(
            entries.iter().all(|l| l.starts_with("ipv4     2 udp ")),
            "{}",
            entries[0]
        );
        entries.sort_unstable();
        entries.dedup();
        assert_eq!(entries.len(), usize::from(ENTRIES), "each entry once");
        drop(idle);

        let r = c
            .call(&Request::new("ct-delete").arg("src", "192.168.10.3"))
            .expect("delete");
        assert!(r.ok, "{}", r.message);
        assert_eq!(r.body.len(), usize::from(ENTRIES / 2) + 1);
        assert!(r.body[..r.body.len() - 1]
            .iter()
            .all(|l| l.contains(" src=192.168.10.3 ")));
        assert_eq!(
            r.body.last().map(String::as_str),
            Some("xdpgw: 15000 flow entries have been deleted.")
        );
        let r = c.call(&Request::new("ct-count")).expect("count");
        assert_eq!(r.body, ["15000"]);
        let r = c
            .call(&Request::new("ct-count").arg("src", "192.168.10.3"))
            .expect("count");
        assert_eq!(r.body, ["0"]);
    });
}

/// A client that sends no complete request within the idle timeout (none
/// at all, or part of a line) is told so and disconnected; a client that
/// calls on such a connection shows that reason.
#[test]
fn an_idle_client_is_disconnected_with_a_reason() {
    let (dir, ctl) = control_in("idle");
    let limits = SocketLimits {
        idle_timeout: Duration::from_millis(200),
        ..SocketLimits::default()
    };
    serving(&ctl, dir.path(), limits, |sock, path| {
        let said = "XDPGW/1 ERR no complete request within 0.2 s; connection closed\n.\n";
        let mut silent = UnixStream::connect(path).expect("connect");
        let mut text = String::new();
        silent.read_to_string(&mut text).expect("read to the end");
        assert_eq!(text, said);

        let mut partial = UnixStream::connect(path).expect("connect");
        partial.write_all(b"XDPGW/1 pi").expect("part of a request");
        text.clear();
        partial.read_to_string(&mut text).expect("read to the end");
        assert_eq!(text, said);

        let mut late = Client::connect(path).expect("connect");
        wait_until("the late client is served", || sock.clients() == 1);
        wait_until("the late client is gone", || sock.clients() == 0);
        let r = late.call(&Request::new("ping")).expect("the reason");
        assert!(!r.ok);
        assert_eq!(
            r.message,
            "no complete request within 0.2 s; connection closed"
        );

        // Requests in time keep a connection.
        let mut busy = Client::connect(path).expect("connect");
        for _ in 0..3 {
            assert!(busy.call(&Request::new("ping")).expect("ping").ok);
        }
    });
}

/// A client that stops reading its answer is disconnected after the write
/// timeout: its listing ends without the final `.`, and the others are
/// served.
#[test]
fn a_client_that_does_not_read_is_disconnected() {
    let (dir, ctl) = control_in("stall");
    fill(&ctl, 30_000);
    let limits = SocketLimits {
        write_timeout: Duration::from_millis(200),
        ..SocketLimits::default()
    };
    serving(&ctl, dir.path(), limits, |sock, path| {
        let mut lister = stalled_listing(path);
        wait_until("the server gives up on the listing", || sock.clients() == 0);
        let mut rest = String::new();
        lister.read_to_string(&mut rest).expect("what was sent");
        assert!(!rest.is_empty() && !rest.ends_with("\n.\n"), "cut short");
        assert!(rest.lines().count() < 30_000);
        let mut c = Client::connect(path).expect("connect");
        assert!(c.call(&Request::new("ping")).expect("ping").ok);
    });
}

/// With every place taken, a new client takes the place of the one that
/// has waited longest on its peer (idle, or not reading its answer); only
/// when none can be freed (all streams) is it turned away, with a reason.
#[test]
fn a_full_socket_makes_room_for_a_new_client() {
    let (dir, ctl) = control_in("full");
    fill(&ctl, 10_000);
    let limits = SocketLimits {
        max_clients: 4,
        ..SocketLimits::default()
    };
    serving(&ctl, dir.path(), limits, |sock, path| {
        // Four idle clients, the first the longest idle.
        let mut first = UnixStream::connect(path).expect("connect");
        wait_until("the first client is served", || sock.clients() == 1);
        let idle: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(path).expect("connect"))
            .collect();
        wait_until("four clients are served", || sock.clients() == 4);
        let mut c = Client::connect(path).expect("connect");
        assert!(c.call(&Request::new("stats")).expect("stats").ok);
        let mut gone = Vec::new();
        first.read_to_end(&mut gone).expect("closed");
        assert!(gone.is_empty(), "closed without a word");
        for s in &idle {
            assert!(raw_call(s, "XDPGW/1 ping").expect("still served").ok);
        }
        drop((idle, c));
        wait_until("everyone left", || sock.clients() == 0);

        // Three event streams and a client that does not read its listing:
        // the listing's place is taken.
        let streams: Vec<UnixStream> = (0..3)
            .map(|_| {
                let s = UnixStream::connect(path).expect("connect");
                (&s).write_all(b"XDPGW/1 ct-events\n").expect("request");
                let mut status = [0u8; 15];
                (&s).read_exact(&mut status).expect("status");
                assert_eq!(&status, b"XDPGW/1 STREAM\n");
                s
            })
            .collect();
        let mut lister = stalled_listing(path);
        // Its thread counts as waiting on the client once it is stuck in a
        // write; until then a newcomer finds no room.
        let mut c = None;
        wait_until("a newcomer gets the listing's place", || {
            let mut n = Client::connect(path).expect("connect");
            let r = n.call(&Request::new("ping")).expect("an answer");
            if r.ok {
                c = Some(n);
                return true;
            }
            assert!(r.message.starts_with("too many clients"), "{r:?}");
            false
        });
        let mut rest = String::new();
        lister.read_to_string(&mut rest).expect("what was sent");
        assert!(!rest.ends_with("\n.\n"), "the listing was cut short");

        // Four streams: no place can be freed.
        drop(c);
        wait_until("three streams are left", || sock.clients() == 3);
        let fourth = UnixStream::connect(path).expect("connect");
        (&fourth)
            .write_all(b"XDPGW/1 ct-events\n")
            .expect("request");
        let mut status = [0u8; 15];
        (&fourth).read_exact(&mut status).expect("status");
        let mut n = Client::connect(path).expect("connect");
        let r = n.call(&Request::new("ping")).expect("the reason");
        assert!(!r.ok);
        assert_eq!(
            r.message,
            "too many clients: all 4 places are busy; try again later"
        );
        drop((streams, fourth));
    });
}

/// At most 16 `conntrack -E` listeners at once; the next is told so.
#[test]
fn event_listeners_are_bounded() {
    let (dir, ctl) = control_in("listeners");
    serving(&ctl, dir.path(), SocketLimits::default(), |_, path| {
        let mut streams = Vec::new();
        for _ in 0..16 {
            let s = UnixStream::connect(path).expect("connect");
            (&s).write_all(b"XDPGW/1 ct-events\n").expect("request");
            let mut status = [0u8; 15];
            (&s).read_exact(&mut status).expect("status");
            assert_eq!(&status, b"XDPGW/1 STREAM\n");
            streams.push(s);
        }
        let s = UnixStream::connect(path).expect("connect");
        let r = raw_call(&s, "XDPGW/1 ct-events").expect("answer");
        assert!(!r.ok);
        assert_eq!(
            r.message,
            "too many conntrack event listeners (16); try again later"
        );
        drop(streams);
    });
}

/// `xdpgw ipset ...` as a request.
fn ipset_req(cmd: &str) -> Request {
    let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    xdpgw_control::api::ipset::request(&words)
}

#[test]
fn ipset_commands_change_the_running_sets_and_a_reload_keeps_them() {
    let dir = TempDir::new("ipset");
    let rules = dir.path().join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let ctl = control(rules.clone());
    with_client(&ctl, dir.path(), |c| {
        let mut call = |cmd: &str| c.call(&ipset_req(cmd)).expect("call");
        assert!(call("create bl hash:net").ok);
        let r = call("create bl hash:net");
        assert_eq!(
            (r.ok, r.message.as_str()),
            (
                false,
                "Set cannot be created: set with the same name already exists"
            )
        );
        assert!(call("-exist create bl hash:net").ok);
        assert!(call("add bl 10.0.0.0/8").ok);
        let r = call("add bl 10.0.0.0/8");
        assert_eq!(
            r.message,
            "Element cannot be added to the set: it's already added"
        );
        assert!(call("add bl 10.0.0.0/8 -exist").ok);
        let r = call("test bl 10.1.2.3");
        assert_eq!(
            (r.ok, r.body.clone()),
            (true, vec!["10.1.2.3 is in set bl.".into()])
        );
        let r = call("test bl 11.1.2.3");
        assert_eq!(
            (r.ok, r.message.as_str()),
            (false, "11.1.2.3 is NOT in set bl.")
        );
        // A command ipset cannot parse: status 2, as ipset's.
        let r = call("add bl 10.0.0.0/8 frobnicate");
        assert!(!r.ok && r.body == ["status 2"], "{r:?}");
        let r = call("del bl 12.0.0.0/8");
        assert_eq!(
            r.message,
            "Element cannot be deleted from the set: it's not added"
        );
        let r = call("save");
        assert!(r.ok);
        assert_eq!(r.body.len(), 2, "{:?}", r.body);
        assert!(
            r.body[0].starts_with(
                "create bl hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x"
            ),
            "{:?}",
            r.body
        );
        assert_eq!(r.body[1], "add bl 10.0.0.0/8");
    });
    // A reload whose rules name the set is accepted, and keeps its
    // elements; one naming a set that does not exist is refused.
    std::fs::write(
        &rules,
        "iptables -A FORWARD -m set --match-set bl src -j DROP\n",
    )
    .expect("rules");
    ctl.reload(None, xdpgw_control::api::reload::Scope::FileTables)
        .expect("reload");
    assert_eq!(
        ctl.gw.sets.now().by_name("bl").map(|s| s.set.len()),
        Some(1)
    );
    std::fs::write(
        &rules,
        "iptables -A FORWARD -m set --match-set nope src -j DROP\n",
    )
    .expect("rules");
    let e = ctl
        .reload(None, xdpgw_control::api::reload::Scope::FileTables)
        .expect_err("missing set");
    assert!(
        e.to_string()
            .contains("gw.rules:1:40: Set nope doesn't exist."),
        "{e}"
    );
    // In use by a rule: not destroyed.
    let r = ctl.handle(&ipset_req("destroy bl"));
    assert_eq!(
        r.message,
        "Set cannot be destroyed: it is in use by a kernel component"
    );
    let r = ctl.handle(&ipset_req("list bl"));
    assert!(
        r.body.contains(&"References: 1".to_string()),
        "{:?}",
        r.body
    );
}

/// A reload checks the configuration's `rules6` as it checks `rules`: an
/// error in it refuses the reload at its `file:line:column`, and the running
/// rules stay.
#[test]
fn a_reload_checks_the_ipv6_rules_of_the_configuration() {
    let (dir, mut ctl) = control_in("reload6");
    let rules6 = dir.path().join("gw.rules6");
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "rules = \"gw.rules\"\nrules6 = \"gw.rules6\"\n\n[[interface]]\nname = \"lan0\"\naddress = \"192.168.10.1/24\"\n",
    )
    .expect("config");
    ctl.config_file = Some(config);
    std::fs::write(
        &rules6,
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1 -j DROP\nCOMMIT\n",
    )
    .expect("rules6");
    let before = ctl.state.lock().expect("state").clone();
    let e = ctl
        .reload(None, xdpgw_control::api::reload::Scope::FileTables)
        .expect_err("an IPv4 address in the IPv6 rules");
    let lines = e.lines();
    assert!(
        lines[0].starts_with(&format!("{}:3:13: ", rules6.display())),
        "{lines:?}"
    );
    assert_eq!(*ctl.state.lock().expect("state"), before);
    std::fs::write(
        &rules6,
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 2001:db8::1 -j DROP\nCOMMIT\n",
    )
    .expect("rules6");
    ctl.reload(None, xdpgw_control::api::reload::Scope::FileTables)
        .expect("valid IPv6 rules");
    // `save -6` prints them, as ip6tables-save would.
    let r = ctl.handle(&Request::new("save").flag("ipv6", true));
    assert!(r.ok, "{}", r.message);
    assert!(
        r.body
            .iter()
            .any(|l| l == "-A INPUT -s 2001:db8::1/128 -j DROP"),
        "{:?}",
        r.body
    );
}

/// A node of [`two_xdpgw_nodes_sync_ipv6_and_ipv4_connections`]: a
/// dual-stack gateway (so it has an IPv6 table) with `[sync]` FTFW over
/// loopback from `address` to `peer`.
fn sync_node(
    address: Ipv4Addr,
    peer: Ipv4Addr,
    port: u16,
) -> (TempDir, Control, Arc<xdpgw_control::sync::SyncShared>) {
    use xdpgw_control::sync::conf::{SyncConfig, Transport};
    use xdpgw_control::sync::session::Mode;
    let dir = TempDir::new("sync-node");
    let rules = dir.path().join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let mut ctl = control_of(rules, &["fd00:10::1", "2001:db8:113::1"]);
    assert!(ctl.gw.conntrack6.is_some());
    let shared = Arc::new(xdpgw_control::sync::SyncShared::new(SyncConfig {
        mode: Mode::Ftfw,
        interface: "lo".into(),
        address,
        transport: Transport::Udp { peer },
        port,
        window: 300,
        resend_queue: 1024,
        cache_max: 1024,
        from_file: None,
    }));
    ctl.sync = Some(Arc::clone(&shared));
    (dir, ctl, shared)
}

/// Two xdpgw nodes' state sync (FTFW, real UDP sockets on loopback): a
/// NAT66 TCP connection, an ICMPv6 echo and a NATed IPv4 UDP flow
/// confirmed on node a reach node b's external cache (`sync-external`),
/// and `sync-commit` puts them in b's tables with their NAT; then b's
/// `sync-bulk` sends its whole table, both families, back to a.
#[test]
fn two_xdpgw_nodes_sync_ipv6_and_ipv4_connections() {
    use std::net::Ipv6Addr;
    use xdpgw_control::sync;
    use xdpgw_dataplane::conntrack::{status, IcmpMeta, PacketMeta, TcpSeg, Track};
    use xdpgw_dataplane::flow::{Tuple, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

    // A port of this test's own (both nodes bind it, on their addresses).
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let (a_ip, b_ip) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    let (_da, a, a_sync) = sync_node(a_ip, b_ip, port);
    let (_db, b, b_sync) = sync_node(b_ip, a_ip, port);
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("address");
    let (c6, s6, w6) = (
        v6("fd00:10::2"),
        v6("2001:db8:113::254"),
        v6("2001:db8:113::1"),
    );
    let tcp6 = Tuple {
        src: c6,
        dst: s6,
        sport: 40000,
        dport: 443,
        proto: IPPROTO_TCP,
    };
    let tcp6_reply = Tuple {
        src: s6,
        dst: w6,
        sport: 443,
        dport: 61005,
        proto: IPPROTO_TCP,
    };
    let echo6 = Tuple {
        src: c6,
        dst: s6,
        sport: 7,
        dport: 7,
        proto: IPPROTO_ICMPV6,
    };
    let udp4 = Tuple {
        src: Ipv4Addr::new(192, 168, 10, 2),
        dst: Ipv4Addr::new(203, 0, 113, 254),
        sport: 5000,
        dport: 53,
        proto: IPPROTO_UDP,
    };
    /// Stops the sync threads however the scope ends (a failed assertion
    /// too, which would otherwise wait for them forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for (ctl, shared) in [(&a, &a_sync), (&b, &b_sync)] {
            let id = sync::subscribe(ctl).expect("a listener");
            let stop = &stop;
            s.spawn(move || sync::serve(ctl, shared, id, stop, &|m| eprintln!("{m}")));
        }
        // Node a's connections, NATed as its POSTROUTING would.
        let ct6 = a.gw.conntrack6.as_ref().expect("IPv6 table");
        let syn = TcpSeg {
            flags: 2,
            seq: 1000,
            ack: 0,
            window: 64240,
            payload_len: 0,
            wscale: None,
            sack_perm: false,
        };
        let meta = |tuple, tcp, icmp| PacketMeta {
            tuple,
            len: 60,
            tcp,
            icmp,
        };
        let Track::New(mut p) = ct6.track(0, &meta(tcp6, Some(syn), None)) else {
            panic!("a new TCP connection")
        };
        p.reply = tcp6_reply;
        p.status |= status::SRC_NAT;
        ct6.confirm(0, &p).expect("confirm");
        let echo = IcmpMeta {
            ty: 128,
            code: 0,
            is_query: true,
            is_error: false,
            inner: None,
        };
        let Track::New(mut p) = ct6.track(0, &meta(echo6, None, Some(echo))) else {
            panic!("a new echo")
        };
        p.reply.dst = w6;
        p.status |= status::SRC_NAT;
        ct6.confirm(0, &p).expect("confirm");
        let Track::New(mut p) = a.gw.conntrack.track(
            0,
            &PacketMeta {
                tuple: udp4,
                len: 60,
                tcp: None,
                icmp: None,
            },
        ) else {
            panic!("a new UDP flow")
        };
        p.reply.dst = Ipv4Addr::new(203, 0, 113, 1);
        p.reply.dport = 61002;
        p.status |= status::SRC_NAT;
        a.gw.conntrack.confirm(0, &p).expect("confirm");

        // Node b's external cache gets all three, in the /proc form.
        let deadline = Instant::now() + Duration::from_secs(10);
        let external = loop {
            let ext = sync::command(&b, "sync-external").expect("sync-external");
            if ext.len() == 3 {
                break ext;
            }
            assert!(Instant::now() < deadline, "b's external cache: {ext:#?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            external
                .iter()
                .any(|l| l.starts_with("ipv6     10 tcp      6 ")
                    && l.contains(" SYN_SENT ")
                    && l.contains(
                        "src=2001:0db8:0113:0000:0000:0000:0000:0254 \
                     dst=2001:0db8:0113:0000:0000:0000:0000:0001 sport=443 dport=61005 "
                    )),
            "{external:#?}"
        );
        let committed = sync::command(&b, "sync-commit").expect("commit");
        assert_eq!(committed, ["committed 3 entries"]);
        let b6 = b.gw.conntrack6.as_ref().expect("IPv6 table").listing(0);
        let t = b6.iter().find(|e| e.orig == tcp6).expect("the TCP entry");
        assert_eq!(t.reply, tcp6_reply);
        assert_eq!(t.status & status::SRC_NAT, status::SRC_NAT);
        let e = b6.iter().find(|e| e.orig == echo6).expect("the echo");
        assert_eq!((e.reply.dst, e.icmp_type), (w6, 128));
        assert!(b
            .gw
            .conntrack6
            .as_ref()
            .expect("v6")
            .tuple_in_use(&tcp6_reply));
        let b4 = b.gw.conntrack.listing(0);
        let u = b4.iter().find(|e| e.orig == udp4).expect("the UDP flow");
        assert_eq!(
            (u.reply.dst, u.reply.dport),
            (Ipv4Addr::new(203, 0, 113, 1), 61002)
        );
        // `conntrack -C/-L -f FAMILY`: one family's table.
        let with = |cmd: &str, f: &str| b.handle(&Request::new(cmd).arg("family", f));
        assert_eq!(b.handle(&Request::new("ct-count")).body, ["3"]);
        assert_eq!(with("ct-count", "ipv6").body, ["2"]);
        assert_eq!(with("ct-count", "ipv4").body, ["1"]);
        // The metric counts each family's own entries (the tables share
        // the one count `ct-count` gives).
        let text = xdpgw_control::api::metrics::render(&b);
        assert!(
            text.contains("xdpgw_conntrack_entries{family=\"ipv4\"} 1\n")
                && text.contains("xdpgw_conntrack_entries{family=\"ipv6\"} 2\n"),
            "{text}"
        );
        let l = with("ct-list", "ipv6").body;
        assert!(
            l.len() == 2 && l.iter().all(|l| l.starts_with("ipv6 ")),
            "{l:?}"
        );
        let r = with("ct-list", "ipx");
        assert!(!r.ok && r.message.contains("unknown family 'ipx'"), "{r:?}");

        // b's whole table back to a (what a new master sends its backup).
        sync::command(&b, "sync-bulk").expect("bulk");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ext = sync::command(&a, "sync-external").expect("sync-external");
            if ext.len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "a's external cache: {ext:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}
