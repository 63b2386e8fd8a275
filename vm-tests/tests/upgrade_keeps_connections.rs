//! An upgrade without losing connections (issue 13): `xdpgw run` with
//! `state_file` set saves its connection table when it stops and restores
//! it when it starts, so that a restart, also onto another binary, keeps
//! the connections through the gateway.
//!
//! The lab of conf/gateway.toml (MASQUERADE on wan0, FORWARD policy DROP
//! with only lan0 -> wan0 and ESTABLISHED,RELATED accepted). The client
//! downloads from the server, paced, every byte checked: a download,
//! because after a restart that forgot the connection the server's
//! segments come in on wan0 as NEW, addressed to the gateway, and are
//! dropped; the client has nothing to send until it receives, so the
//! connection cannot be picked up mid-stream either.
//!
//! 1. With the state file: mid-download, the gateway restarts onto a copy
//!    of its binary (another file, as an upgrade installs). The download
//!    completes with every byte; after the restart `xdpgw conntrack -L`
//!    shows the connection ESTABLISHED with the same NAT mapping (the
//!    server saw the same address and port), the gateway logged what it
//!    saved and restored, and the state file was set aside (`.loaded`).
//! 2. The control: the same restart, but the new process does not restore
//!    the table (`state_file` gone from the configuration). The server's
//!    next segment is logged as dropped by INPUT, and the download stalls
//!    and times out.
//!
//! The forwarding gap of each restart is measured with a numbered UDP
//! stream from the second client, 2,000 datagrams a second: datagrams
//! lost / rate. Printed, with the client's longest wait between two reads
//! and the time the restart took; nothing is asserted about times.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use xdpgw_vm_tests::lab::parse::field;

use xdpgw_vm_tests::lab::{Backend, Finished, Lab, Process, WorkDir, CLIENT, GATEWAY_WAN, SERVER};
use xdpgw_vm_tests::{lab_config, require_root_with, workspace_dir, xdpgw_binary, LAB_PROGRAMS};

const TCP_PORT: &str = "5001";
const UDP_PORT: &str = "7001";
const UDP_RATE: u64 = 2000;
/// The download: 3 MB at 1 MB/s, so that a restart happens mid-stream.
const BYTES: u64 = 3_000_000;
const PACE: &str = "1000000";

/// `xdpgw ARGS... --config CONFIG`, which must succeed; its stdout.
fn xdpgw(config: &Path, args: &[&str]) -> String {
    let out = Command::new(xdpgw_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run xdpgw");
    assert!(
        out.status.success(),
        "xdpgw {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The client's TCP connection from `port` in the gateway's table, as
/// (state, reply tuple `src dst sport dport`), or None.
fn tracked(config: &Path, port: &str) -> Option<(String, String)> {
    let out = xdpgw(
        config,
        &["conntrack", "-L", "-p", "tcp", "-s", &CLIENT.to_string()],
    );
    out.lines().find_map(|l| {
        // ipv4 2 tcp 6 TIMEOUT STATE src= dst= sport= dport= src= dst= sport= dport= ...
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.get(8) != Some(&format!("sport={port}").as_str()) {
            return None;
        }
        Some((w.get(5)?.to_string(), w.get(10..14)?.join(" ")))
    })
}

/// Starts a paced download from the server; returns it once bytes flow,
/// with the client's local port.
fn start_download(lab: &Lab, timeout: &str) -> (Process, String) {
    let mut d = lab.tool(
        lab.client(),
        &[
            "tcp-download",
            &SERVER.to_string(),
            TCP_PORT,
            &BYTES.to_string(),
            "--pace",
            PACE,
            "--timeout",
            timeout,
        ],
    );
    let line = d.wait_line("`downloading` line", Duration::from_secs(30), |l| {
        l.starts_with("downloading ")
    });
    let port = field(&line, "local")
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    (d, port)
}

/// A client's result: its last line.
fn last_line(done: &Finished) -> String {
    done.stdout
        .last()
        .unwrap_or_else(|| panic!("no output:\n{}", done.report()))
        .clone()
}

/// Starts the numbered UDP stream (second client to server).
fn start_udp(lab: &Lab) -> Process {
    let rate = UDP_RATE.to_string();
    let mut s = lab.tool(
        lab.client2(),
        &["udp-send", &SERVER.to_string(), UDP_PORT, "--rate", &rate],
    );
    s.wait_line("`sending` line", Duration::from_secs(30), |l| {
        l.starts_with("sending ")
    });
    s
}

/// Stops the UDP stream; returns the datagrams the counter missed.
fn stop_udp(sender: Process, counter: &mut Process) -> u64 {
    let sent = sender.stop(Duration::from_secs(10));
    let line = sent
        .stdout
        .iter()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("udp-send printed no `sent` line:\n{}", sent.report()));
    let session = field(line, "session").to_owned();
    let done = counter.wait_line("`done` line", Duration::from_secs(10), |l| {
        l.starts_with(&format!("done session={session} "))
    });
    field(&done, "lost").parse().expect("a number")
}

#[test]
fn a_restart_onto_a_new_binary_keeps_a_download_through_masquerade() {
    if !require_root_with(
        "a_restart_onto_a_new_binary_keeps_a_download_through_masquerade",
        LAB_PROGRAMS,
    ) {
        return;
    }
    let work = WorkDir::new("upgrade");
    // conf/gateway.toml with a state file (relative: next to the lab's
    // copy of the configuration, in its work directory).
    let conf = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("read conf/gateway.toml");
    let rules = workspace_dir().join("conf/gateway.rules");
    let conf = conf.replace(
        "rules = \"gateway.rules\"",
        &format!(
            "rules = \"{}\"\nstate_file = \"conntrack.state\"",
            rules.display()
        ),
    );
    assert!(conf.contains("state_file"), "conf/gateway.toml changed");
    let config = work.path().join("gateway.toml");
    std::fs::write(&config, conf).expect("write the configuration");
    xdpgw_vm_tests::copy_rules6(work.path());
    // The "new version": another file with the same build in it.
    let upgraded = work.path().join("xdpgw-upgraded");
    std::fs::copy(xdpgw_binary(), &upgraded).expect("copy the binary");

    let mut lab = Lab::gateway_lab(&lab_config(Backend::Xdpgw, &config));
    let config = lab.config_path().to_path_buf();
    let state = config.with_file_name("conntrack.state");
    let mut server = lab.serve(lab.server(), &["tcp-serve", TCP_PORT]);
    let mut counter = lab.serve(lab.server(), &["udp-count", UDP_PORT]);

    // 1. With the state file.
    let udp = start_udp(&lab);
    let (download, port) = start_download(&lab, "10");
    let peer = server.wait_line("`peer` line", Duration::from_secs(10), |l| {
        l.starts_with("peer=")
    });
    let (state_before, reply_before) = tracked(&config, &port).expect("the download in the table");
    assert_eq!(state_before, "ESTABLISHED");
    // The server sees the masqueraded address and port of the reply tuple.
    assert_eq!(
        peer,
        format!("peer={GATEWAY_WAN}:{}", field(&reply_before, "dport"))
    );
    let restart = lab.restart_gateway(&upgraded);
    let saved = restart
        .stopped
        .stderr
        .iter()
        .find(|l| l.starts_with("xdpgw: saved "))
        .unwrap_or_else(|| panic!("no `saved` line:\n{:?}", restart.stopped.stderr))
        .clone();
    assert!(
        saved.contains(&format!(" connections to {} (", state.display())),
        "{saved}"
    );
    let restored = lab.wait_gateway_stderr("`restored` line", Duration::from_secs(10), |l| {
        l.starts_with("xdpgw: restored ")
    });
    let after = tracked(&config, &port);
    let lost_with_state = stop_udp(udp, &mut counter);
    let done = download.wait(Duration::from_secs(60));
    let result = last_line(&done);
    assert!(
        result.starts_with(&format!("ok bytes={BYTES} ")),
        "the download did not survive the restart: {result}\n{}\ngateway: {saved}\n{restored}",
        done.report()
    );
    assert_eq!(
        after,
        Some(("ESTABLISHED".to_owned(), reply_before.clone())),
        "the connection after the restart (before: {reply_before})"
    );
    assert!(!state.exists(), "the state file is set aside once restored");
    assert!(
        state.with_file_name("conntrack.state.loaded").exists(),
        "{restored}"
    );
    let saved_n: u64 = saved["xdpgw: saved ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{saved}"));
    assert!(
        restored.starts_with(&format!(
            "xdpgw: restored {saved_n} of {saved_n} connections "
        )),
        "every saved connection restored: {restored}"
    );

    // 2. The control: the new process does not restore the table.
    let text = std::fs::read_to_string(&config).expect("read the lab's configuration");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("state_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, without);
    std::fs::write(&config, without).expect("write the lab's configuration");
    let udp = start_udp(&lab);
    let (download, port) = start_download(&lab, "3");
    let (_, reply) = tracked(&config, &port).expect("the download in the table");
    let control = lab.restart_gateway(&upgraded);
    // The server's next segment comes to the gateway's address as a new
    // packet and meets INPUT's LOG_DROP.
    let mapped = field(&reply, "dport").to_owned();
    let dropped = lab.wait_gateway_stderr("LOG line", Duration::from_secs(10), |l| {
        l.contains("xdpgw drop: IN=wan0 ")
            && l.contains(&format!(" SRC={SERVER} DST={GATEWAY_WAN} "))
            && l.contains(&format!(" SPT={TCP_PORT} DPT={mapped} "))
    });
    let lost_without_state = stop_udp(udp, &mut counter);
    let done = download.wait(Duration::from_secs(60));
    let forgotten = last_line(&done);
    assert!(
        forgotten.starts_with("timeout "),
        "without the saved table the download must stall: {forgotten} ({dropped})"
    );
    assert_eq!(tracked(&config, &port), None);

    let first = field(&result, "longest_pause_ms");
    eprintln!(
        "upgrade with state_file: stop {:.0} ms + start {:.0} ms; forwarding gap {:.0} ms \
         ({lost_with_state} of {UDP_RATE}/s datagrams lost); the download's longest pause \
         {first} ms; {saved}; {restored}",
        restart.stop.as_secs_f64() * 1e3,
        restart.start.as_secs_f64() * 1e3,
        lost_with_state as f64 * 1e3 / UDP_RATE as f64,
    );
    eprintln!(
        "restart without restoring: stop {:.0} ms + start {:.0} ms; forwarding gap {:.0} ms \
         ({lost_without_state} datagrams lost); the download: {forgotten}",
        control.stop.as_secs_f64() * 1e3,
        control.start.as_secs_f64() * 1e3,
        lost_without_state as f64 * 1e3 / UDP_RATE as f64,
    );
}
