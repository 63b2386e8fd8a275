//! The NAT event log (`nat_log`) against Linux's `conntrack -E -o
//! timestamp` on the same gateway: a masqueraded UDP flow's creation and
//! its deletion (`conntrack -D`), each one line in the same form (the
//! wall-clock stamp, the event as conntrack-tools prints it); the same for
//! a NAT66 (MASQUERADE from the ULA prefix) flow in the dual-stack lab.

use std::time::Duration;

use xdpgw_vm_tests::lab::{Backend, Ipv6Spec, Lab, Process, WorkDir, SERVER, SERVER6};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{
    dual_stack_lab_with, lab_with, require_root_with, restore_text, LAB6_PROGRAMS, MASQUERADE_WAN0,
};

/// The flow's family: what the client sends to, and what conntrack-tools
/// is told (`-f ipv6`: it shows and deletes IPv4 entries otherwise).
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn server(self) -> String {
        match self {
            Family::V4 => ip(SERVER),
            Family::V6 => ip6(SERVER6),
        }
    }

    fn conntrack_args(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &[],
            Family::V6 => &["-f", "ipv6"],
        }
    }

    fn client(self) -> &'static str {
        match self {
            Family::V4 => "192.168.10.2",
            Family::V6 => "fd00:10::2",
        }
    }
}

#[derive(Debug, PartialEq)]
struct LogObs {
    /// The flow's lines, the stamp and the client's port taken out.
    lines: Vec<String>,
    /// Every stamp is `[seconds.microseconds]` within a minute of now.
    stamps_now: bool,
}

/// Where the events appear: Linux's `conntrack -E`, or xdpgw's log file.
enum Events {
    Linux(Process),
    Xdpgw(std::path::PathBuf),
}

impl Events {
    fn lines(&mut self) -> Vec<String> {
        match self {
            Events::Linux(p) => p.lines().to_vec(),
            Events::Xdpgw(path) => std::fs::read_to_string(&*path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Waits for a line with `needle` (the log is written every 20 ms).
    fn wait(&mut self, needle: &str, also: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines();
            if lines.iter().any(|l| l.contains(needle) && l.contains(also)) {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no event line with '{needle}' in {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn udp_from_client(lab: &Lab, family: Family) -> u16 {
    let line = lab.tool_result(
        lab.client(),
        &["udp-req", &family.server(), "7777", "--timeout", OK_WAIT],
        TOOL_LIMIT,
    );
    assert!(line.starts_with("ok"), "{line}");
    match family {
        Family::V4 => local(&line).port(),
        Family::V6 => local6(&line).port(),
    }
}

fn scenario(lab: &mut Lab, dir: &std::path::Path, family: Family) -> LogObs {
    let _server = match family {
        Family::V4 => lab.serve(lab.server(), &["udp-echo", "7777"]),
        Family::V6 => lab.serve(lab.server(), &["udp-echo", "7777", "--bind", "::"]),
    };
    let mut events = match lab.backend() {
        Backend::Linux => {
            let mut args = vec![
                "conntrack",
                "-E",
                "-o",
                "timestamp",
                "-e",
                "NEW,DESTROY",
                "-p",
                "udp",
            ];
            args.extend(family.conntrack_args());
            let mut p = lab.gateway().spawn(&args);
            // Subscribed once a flow's event shows (each try a new flow).
            let mut seen = false;
            for _ in 0..40 {
                let port = udp_from_client(lab, family);
                let needle = format!("sport={port} ");
                if p.try_wait_line(Duration::from_millis(500), |l| l.contains(&needle))
                    .is_some()
                {
                    seen = true;
                    break;
                }
            }
            assert!(seen, "conntrack -E shows no events");
            Events::Linux(p)
        }
        // Subscribed before xdpgw said it was ready.
        Backend::Xdpgw => Events::Xdpgw(dir.join("nat.log")),
    };
    let port = udp_from_client(lab, family);
    let sport = format!("sport={port} ");
    events.wait(
        &format!(
            "[NEW] udp      17 30 src={} dst={} {sport}",
            family.client(),
            family.server()
        ),
        "",
    );
    match lab.backend() {
        Backend::Linux => {
            let mut args = vec!["conntrack", "-D", "-p", "udp"];
            args.extend(family.conntrack_args());
            lab.gateway().exec_ok(&args);
        }
        Backend::Xdpgw => {
            let out = std::process::Command::new(xdpgw_vm_tests::xdpgw_binary())
                .args(["conntrack", "-D", "-p", "udp"])
                .arg("--config")
                .arg(lab.config_path())
                .output()
                .expect("xdpgw conntrack -D");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let lines = events.wait("[DESTROY] udp      17 ", &sport);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut stamps_now = true;
    let flow: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(&sport))
        .map(|l| {
            let (stamp, event) = l.split_once('\t').unwrap_or(("", l));
            let secs = stamp
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.split_once('.'))
                .filter(|(_, us)| us.len() == 6 && us.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(s, _)| s.parse::<u64>().ok());
            stamps_now &= secs.is_some_and(|s| s.abs_diff(wall) < 60);
            // The remaining timeout of a deletion varies by a second; the
            // deleting process is another one.
            event
                .replace(&port.to_string(), "PORT")
                .split(" [USERSPACE]")
                .next()
                .unwrap_or_default()
                .replace("17 30 ", "17 T ")
                .replace("17 29 ", "17 T ")
        })
        .collect();
    LogObs {
        lines: flow,
        stamps_now,
    }
}

#[test]
fn nat_log_shows_what_conntrack_timestamp_events_show() {
    let dir = WorkDir::new("nat-log");
    let path = dir.path().to_owned();
    let rules = restore_text(&[MASQUERADE_WAN0]);
    // Absolute: the lab runs a copy of the configuration elsewhere.
    let log = format!("nat_log = \"{}\"", path.join("nat.log").display());
    on_both_backends_in(
        "nat_log_shows_what_conntrack_timestamp_events_show",
        |backend| lab_with(&path, backend, Some(&rules), &log),
        |lab| scenario(lab, &path, Family::V4),
        |o| {
            assert!(o.stamps_now, "{o:?}");
            assert_eq!(o.lines.len(), 2, "{o:?}");
            assert!(
                o.lines[0].starts_with("    [NEW] udp      17 T src=192.168.10.2"),
                "{o:?}"
            );
            assert!(
                o.lines[0].ends_with("src=203.0.113.254 dst=203.0.113.1 sport=7777 dport=PORT"),
                "{o:?}"
            );
            assert!(
                o.lines[1].starts_with("[DESTROY] udp      17 T src=192.168.10.2"),
                "{o:?}"
            );
        },
    );
}

#[test]
fn nat66_log_shows_what_conntrack_timestamp_events_show() {
    let test = "nat66_log_shows_what_conntrack_timestamp_events_show";
    if !require_root_with(test, LAB6_PROGRAMS) {
        return;
    }
    let dir = WorkDir::new("nat66-log");
    let path = dir.path().to_owned();
    let v6 = Ipv6Spec::new(restore_text(&[(
        "nat",
        "-A POSTROUTING -s fd00:10::/64 -o wan0 -j MASQUERADE",
    )]));
    let log = format!("nat_log = \"{}\"", path.join("nat.log").display());
    on_both_backends_in(
        test,
        |backend| {
            dual_stack_lab_with(&path, backend, &v6, &log).unwrap_or_else(|e| panic!("{test}: {e}"))
        },
        |lab| scenario(lab, &path, Family::V6),
        |o| {
            assert!(o.stamps_now, "{o:?}");
            assert_eq!(
                o.lines,
                [
                    "    [NEW] udp      17 T src=fd00:10::2 dst=2001:db8:113::254 sport=PORT \
                     dport=7777 [UNREPLIED] src=2001:db8:113::254 dst=2001:db8:113::1 \
                     sport=7777 dport=PORT",
                    "[DESTROY] udp      17 T src=fd00:10::2 dst=2001:db8:113::254 sport=PORT \
                     dport=7777 src=2001:db8:113::254 dst=2001:db8:113::1 sport=7777 dport=PORT",
                ],
                "{o:?}"
            );
        },
    );
}
