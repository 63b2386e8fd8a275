//! The control socket without a network: a real Unix socket served by
//! `api::server` for a gateway built in memory (no ports), driven by the
//! client of `api`.

use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use xdpgw_control::api::server::{Control, ControlSocket};
use xdpgw_control::api::{Client, Request};
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::pipeline::{Gateway, GatewayConfig, IfaceConfig};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xdpgw-api-{tag}-{}", std::process::id()));
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

const RULES: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
COMMIT
";

fn control(rules_file: PathBuf) -> Control {
    let set = xdpgw_control::load_rules(&rules_file).expect("rules");
    let iface = |name: &str, addr: [u8; 4], mac: u8| IfaceConfig {
        name: name.into(),
        mac: [2, 0, 0, 0, 0, mac],
        addr: Ipv4Addr::from(addr),
        prefix: 24,
        mtu: 1500,
    };
    let gw = Gateway::new(
        GatewayConfig {
            ifaces: vec![
                iface("lan0", [192, 168, 10, 1], 1),
                iface("wan0", [203, 0, 113, 1], 2),
            ],
            routes: vec![],
            conntrack: ConntrackConfig::default(),
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
        now: || 0,
        events: Default::default(),
    }
}

#[test]
fn socket_is_private_replaces_stale_and_refuses_live() {
    let dir = TempDir::new("bind");
    let path = dir.0.join("x.sock");
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
    assert!(e.contains("is in use"), "{e}");
    assert!(path.exists());
    // Not a socket: left alone.
    let file = dir.0.join("plain");
    std::fs::write(&file, "x").expect("file");
    let e = ControlSocket::bind(&file).err().expect("a plain file");
    assert!(e.contains("not a socket"), "{e}");
    drop(sock);
    assert!(!path.exists(), "removed when dropped");
}

#[test]
fn reload_list_zero_and_errors_over_the_socket() {
    let dir = TempDir::new("serve");
    let rules = dir.0.join("gw.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let ctl = control(rules.clone());
    let path = dir.0.join("c.sock");
    let sock = ControlSocket::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| sock.serve(&ctl, &stop));
        let mut c = Client::connect(&path).expect("connect");

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
        let changed = dir.0.join("changed.rules");
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
        let bad = dir.0.join("bad.rules");
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

        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ControlSocket::wake(&path);
    });
}
