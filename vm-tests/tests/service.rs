//! `xdpgw run` as conf/xdpgw.service runs it, without systemd (which is
//! not PID 1 here): an unprivileged user (nobody) with exactly the
//! capabilities the unit grants (read from the unit file), readiness sent to
//! a `$NOTIFY_SOCKET` the test listens on, and stderr announced as the
//! journal (`$JOURNAL_STREAM` naming it) so that lines carry sd-daemon's
//! `<N>` level prefixes. Also: without any one of those capabilities it
//! refuses to start, naming what is missing.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use xdpgw_vm_tests::lab::Process;
use xdpgw_vm_tests::two_ports::{TwoPorts, GATEWAY_LAN};
use xdpgw_vm_tests::{require_root_with, workspace_dir, xdpgw_binary};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The capabilities conf/xdpgw.service grants, e.g. `net_admin`, as
/// setpriv names them.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(workspace_dir().join("conf/xdpgw.service"))
        .expect("read conf/xdpgw.service");
    let line = |key: &str| -> Vec<String> {
        let found = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("conf/xdpgw.service has no {key}"));
        found
            .split_whitespace()
            .map(|c| {
                c.strip_prefix("CAP_")
                    .unwrap_or_else(|| panic!("{c}: not a capability"))
                    .to_ascii_lowercase()
            })
            .collect()
    };
    let bounding = line("CapabilityBoundingSet=");
    assert_eq!(
        bounding,
        line("AmbientCapabilities="),
        "the unit's bounding and ambient sets differ"
    );
    bounding
}

/// Starts `xdpgw run` in `t`'s gateway namespace as nobody with `caps`,
/// `$NOTIFY_SOCKET` set to `notify` and `$JOURNAL_STREAM` naming its
/// stderr.
fn start_as_service(t: &TwoPorts, caps: &[String], notify: &str) -> Process {
    let set = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let bin = xdpgw_binary().display().to_string();
    let config = t.config().display().to_string();
    let notify_env = format!("NOTIFY_SOCKET={notify}");
    let inh = format!("--inh-caps={set}");
    let amb = format!("--ambient-caps={set}");
    let bnd = format!("--bounding-set={set}");
    // /dev/net/tun (the host path) is mode 0666 on Debian and most
    // distributions, but 0600 on some machines (this CI's containers): give
    // the service a 0666 node of its own, in a private mount namespace,
    // without touching the machine's.
    let tun = t.dir().join("tun").display().to_string();
    let script = format!(
        "rm -f {tun} && mknod {tun} c 10 200 && chmod 666 {tun} && mount --bind {tun} /dev/net/tun && \
         JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$@\""
    );
    t.gw.spawn(&[
        "env",
        &notify_env,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        // stat's stderr is the shell's: the pipe xdpgw writes to.
        &script,
        "sh",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &inh,
        &amb,
        &bnd,
        "--",
        &bin,
        "run",
        "--config",
        &config,
    ])
}

/// A datagram socket for sd_notify messages, writable by nobody.
fn notify_socket(t: &TwoPorts) -> (UnixDatagram, String) {
    let path = t.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    (sock, path.display().to_string())
}

fn recv(sock: &UnixDatagram, gw: &Process) -> String {
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no sd_notify message ({e}):\n{}", gw.report()),
    }
}

#[test]
fn runs_as_the_unit_runs_it() {
    if !require_root_with(
        "runs_as_the_unit_runs_it",
        &[
            "setpriv", "stat", "sh", "env", "ping", "ethtool", "bash", "unshare", "mknod",
        ],
    ) {
        return;
    }
    let caps = unit_capabilities();
    assert_eq!(caps, ["net_admin", "net_raw", "bpf", "ipc_lock"]);
    let t = TwoPorts::new("svc");
    // The peer's UDP must leave with a complete checksum (veth).
    t.peer.exec_ok(&["ethtool", "-K", "p0", "tx", "off"]);
    let (sock, path) = notify_socket(&t);
    let mut gw = start_as_service(&t, &caps, &path);

    let ready = gw.wait_line("`ready` line", TIMEOUT, |l| l.starts_with("ready"));
    assert_eq!(
        recv(&sock, &gw),
        format!("READY=1\nSTATUS={ready}"),
        "{}",
        gw.report()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    // nobody, with CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_IPC_LOCK (14)
    // and CAP_BPF (39) and nothing else.
    assert!(field("Uid:").starts_with("65534"), "{status}");
    assert_eq!(field("CapEff:"), "0000008000007000", "{status}");
    assert_eq!(field("CapBnd:"), "0000008000007000", "{status}");

    // It forwards: the gateway answers ping, and a datagram to a port it
    // does not serve is logged by the LOG rule (level 6) and dropped.
    let ping = t.peer.exec(&["ping", "-c", "1", "-W", "5", GATEWAY_LAN]);
    assert!(ping.status.success(), "ping:\n{}", gw.report());
    t.peer.exec_ok(&[
        "bash",
        "-c",
        &format!("echo probe > /dev/udp/{GATEWAY_LAN}/9"),
    ]);
    gw.wait_stderr_line("LOG line with level 6", TIMEOUT, |l| {
        l.starts_with("<6>xdpgw drop: IN=lan0 OUT= MAC=")
            && l.contains(&format!("SRC=192.168.10.2 DST={GATEWAY_LAN} "))
            && l.contains("PROTO=UDP")
    });

    // ExecReload: SIGHUP reloads the rules.
    gw.signal("HUP");
    gw.wait_stderr_line("reload message", TIMEOUT, |l| {
        l.starts_with("<6>xdpgw: reloaded ")
    });
    // ... saying so to the service manager (systemd shows `reloading`
    // until the second READY=1).
    assert_eq!(recv(&sock, &gw), "RELOADING=1");
    assert_eq!(recv(&sock, &gw), "READY=1\nSTATUS=reloaded");

    gw.signal("TERM");
    assert_eq!(recv(&sock, &gw), "STOPPING=1");
    let done = gw.wait(TIMEOUT);
    assert!(done.status.success(), "{}", done.report());
    assert_eq!(
        done.stderr.last().map(String::as_str),
        Some("<6>xdpgw: stopped")
    );
    for ifname in ["lan0", "wan0"] {
        assert_eq!(t.xdp_programs(ifname), Vec::<String>::new(), "{ifname}");
    }
}

#[test]
fn each_capability_of_the_unit_is_needed() {
    if !require_root_with(
        "each_capability_of_the_unit_is_needed",
        &["setpriv", "stat", "sh", "env"],
    ) {
        return;
    }
    let caps = unit_capabilities();
    let t = TwoPorts::new("svcn");
    let (sock, path) = notify_socket(&t);
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let done = start_as_service(&t, &fewer, &path).wait(TIMEOUT);
        assert!(
            !done.status.success(),
            "started without {missing}:\n{}",
            done.report()
        );
        let want = match missing.as_str() {
            "net_admin" | "bpf" => "needs CAP_BPF and CAP_NET_ADMIN",
            "net_raw" => "needs CAP_NET_RAW",
            "ipc_lock" => "needs CAP_IPC_LOCK",
            other => panic!("a capability the test does not know: {other}"),
        };
        assert!(
            done.stderr
                .iter()
                .any(|l| l.starts_with("<3>xdpgw run: permission denied: ") && l.contains(want)),
            "without {missing}:\n{}",
            done.report()
        );
        for ifname in ["lan0", "wan0"] {
            assert_eq!(t.xdp_programs(ifname), Vec::<String>::new(), "{ifname}");
        }
    }
    // It never said it was ready.
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    assert!(sock.recv(&mut buf).is_err(), "an sd_notify message came");
}
