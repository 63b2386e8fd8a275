//! Conntrack tunables from the configuration take effect as Linux's sysctls
//! do (issue 17): the gateway lab of conf/gateway.toml with `udp_timeout = 3`
//! in `[conntrack]` (xdpgw) or `net.netfilter.nf_conntrack_udp_timeout=3` in
//! the gateway's namespace (Linux). A UDP request and its reply make an
//! entry that expires after 3 s instead of Linux's default 30 s; the timeout
//! then raised to 60 s while the gateway runs (the configuration changed and
//! SIGHUP for xdpgw, `sysctl -w` for Linux) keeps the next entry past 3 s.

use std::path::Path;
use std::time::{Duration, Instant};

use xdpgw_vm_tests::lab::SERVER;
use xdpgw_vm_tests::lab::{Backend, Lab, WorkDir};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_with, xdpgw_binary};

const PORT: &str = "7777";

/// The lab with conf/gateway.toml plus `[conntrack] udp_timeout = 3`
/// written to `dir` (xdpgw), or Linux with the same timeout as a sysctl.
fn lab_in(dir: &Path, backend: Backend) -> Lab {
    let lab = lab_with(dir, backend, None, "[conntrack]\nudp_timeout = 3\n");
    if backend == Backend::Linux {
        set_linux_udp_timeout(&lab, 3);
    }
    lab
}

fn set_linux_udp_timeout(lab: &Lab, secs: u32) {
    let out = lab.gateway().exec(&[
        "sysctl",
        "-w",
        &format!("net.netfilter.nf_conntrack_udp_timeout={secs}"),
    ]);
    assert!(
        out.status.success(),
        "sysctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The gateway's conntrack entries to the echo port, as `conntrack -L`
/// lines (Linux) or `xdpgw conntrack -L` lines (xdpgw).
fn entries(lab: &Lab) -> Vec<String> {
    let out = match lab.backend() {
        Backend::Linux => lab.gateway().exec(&["conntrack", "-L", "-p", "udp"]),
        Backend::Xdpgw => std::process::Command::new(xdpgw_binary())
            .args(["conntrack", "-L", "--config"])
            .arg(lab.config_path())
            .output()
            .expect("run xdpgw conntrack"),
    };
    assert!(
        out.status.success(),
        "conntrack -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dport={PORT} ")))
        .map(str::to_owned)
        .collect()
}

/// Whether the entries to the echo port are all gone within `within`
/// (checked every 200 ms).
fn gone_within(lab: &Lab, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if entries(lab).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Debug, PartialEq)]
struct Observed {
    reply: String,
    /// An entry right after the reply.
    tracked: bool,
    /// ... gone within 10 s (the default 30 s would keep it).
    expired_early: bool,
    /// After raising the timeout to 60 s while running: the next entry is
    /// still there after 5 s.
    raised_kept: bool,
}

fn scenario(lab: &mut Lab) -> Observed {
    let _server = lab.serve(lab.server(), &["udp-echo", PORT]);
    let request = |lab: &Lab| {
        outcome(&lab.tool_result(
            lab.client(),
            &["udp-req", &ip(SERVER), PORT, "--timeout", OK_WAIT],
            TOOL_LIMIT,
        ))
    };
    let reply = request(lab);
    let tracked = !entries(lab).is_empty();
    let expired_early = gone_within(lab, Duration::from_secs(10));
    match lab.backend() {
        Backend::Linux => set_linux_udp_timeout(lab, 60),
        Backend::Xdpgw => {
            let path = lab.config_path().to_owned();
            let text = std::fs::read_to_string(&path).expect("the lab's configuration");
            assert!(text.contains("udp_timeout = 3"), "{text}");
            std::fs::write(&path, text.replace("udp_timeout = 3", "udp_timeout = 60"))
                .expect("rewrite the configuration");
            let line = lab.sighup_gateway(Duration::from_secs(10));
            assert!(
                line.contains("conntrack udp_timeout 3 -> 60 s"),
                "reload line: {line}"
            );
        }
    }
    let again = request(lab);
    assert_eq!(again, reply);
    std::thread::sleep(Duration::from_secs(5));
    let raised_kept = !entries(lab).is_empty();
    Observed {
        reply,
        tracked,
        expired_early,
        raised_kept,
    }
}

#[test]
fn conntrack_timeouts_from_the_configuration_act_as_linuxs_sysctls() {
    let dir = WorkDir::new("cttune");
    let path = dir.path().to_owned();
    on_both_backends_in(
        "conntrack_timeouts_from_the_configuration_act_as_linuxs_sysctls",
        |backend| lab_in(&path, backend),
        scenario,
        |o| {
            assert_eq!(o.reply, "ok");
            assert!(o.tracked, "{o:?}");
            assert!(o.expired_early, "{o:?}");
            assert!(o.raised_kept, "{o:?}");
        },
    );
}
