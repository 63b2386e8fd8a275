//! The Debian package on a clean Debian machine with systemd: the test
//! builds the .deb (`pkg/build-deb.sh`, from the debug binary the tests
//! use), boots a container of this machine's Debian with systemd as PID 1
//! (`vm-tests/systemd-container.sh`: an overlay of the root file system
//! over a tmpfs, so that the install changes nothing here, in the lab's
//! gateway namespace with lan0 and wan0), and there:
//!
//! - `apt-get install ./xdpgw_*.deb`: the files are where Debian wants
//!   them, the conffiles registered, `man xdpgw` and `man xdpgw-run`
//!   render, bash completion offers the subcommands;
//! - `systemctl start xdpgw` with the packaged /etc/xdpgw/gateway.toml
//!   (which names the lab's interfaces): the unit is active once xdpgw said
//!   READY=1 (its status text is the `ready` line), it runs as a dynamic
//!   user with exactly CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK and
//!   CAP_BPF, and it forwards (answers ping);
//! - `systemctl reload xdpgw`: reloaded (status text, metrics, journal);
//! - an upgrade (the same package, a later version): the postinst restarts
//!   the running service, which saves and restores its connections;
//! - `systemctl stop xdpgw`, `apt-get remove` (of a running service; the
//!   conffiles stay) and an install again (the unit is not left masked),
//!   `apt-get purge` (of a running service): each time no XDP program on
//!   the interfaces and no host path device; after the purge nothing of the
//!   package left in the container's file system (the overlay's upper
//!   layer).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use xdpgw_vm_tests::lab::{Process, WorkDir};
use xdpgw_vm_tests::two_ports::{TwoPorts, GATEWAY_LAN};
use xdpgw_vm_tests::{require_root_with, skip_notice, workspace_dir, xdpgw_binary};

const SYSTEMD: &str = "/lib/systemd/systemd";
const WAIT: Duration = Duration::from_secs(60);
const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup` or, on a
/// hybrid machine, `/sys/fs/cgroup/unified`).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// The container: systemd as PID 1 of its own namespaces. Dropping it
/// kills it (and so everything in it), waits for it and removes its
/// cgroup.
struct Container {
    /// `unshare`, whose child is the container's PID 1.
    process: Option<Process>,
    /// systemd's PID here.
    pid: u32,
    cgroup: PathBuf,
    work: PathBuf,
}

impl Container {
    fn start(netns: &str, work: &Path, cgroup: PathBuf) -> Container {
        std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
        let mut cmd = Command::new(workspace_dir().join("vm-tests/systemd-container.sh"));
        cmd.arg(netns).arg(work).arg(&cgroup);
        let process = Process::start(cmd);
        let mut c = Container {
            process: Some(process),
            pid: 0,
            cgroup,
            work: work.to_path_buf(),
        };
        // systemd puts itself in init.scope; then it is up when
        // is-system-running says so.
        let deadline = Instant::now() + WAIT;
        let procs = c.cgroup.join("init.scope/cgroup.procs");
        loop {
            if let Some(pid) = std::fs::read_to_string(&procs)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                c.pid = pid;
                let state = c.run(&["systemctl", "is-system-running"]);
                let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
                if state == "running" || state == "degraded" {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the container's systemd did not come up:\n{}",
                c.process.as_ref().map(Process::report).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Runs `args` in the container (its root, mounts and PIDs), as root,
    /// with a clean environment.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-r", "-w", "--"])
            .args([
                "env",
                "-i",
                PATH,
                "DEBIAN_FRONTEND=noninteractive",
                "LANG=C.UTF-8",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"))
    }

    /// [`Container::run`] that must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "in the container: {args:?}: {}\n{}{}\njournal:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        let out = self.run(&["journalctl", "--no-pager", "-n", "40", "-u", "xdpgw"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p NAME --value xdpgw`.
    fn unit(&self, property: &str) -> String {
        self.ok(&["systemctl", "show", "-p", property, "--value", "xdpgw"])
            .trim()
            .to_owned()
    }

    /// Where the container's `/` is, seen from here.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// Every path the container added or changed (its overlay's upper
    /// layer), relative to its root.
    fn changed_paths(&self) -> Vec<String> {
        let upper = self.work.join("layers/upper");
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "--", "find"])
            .arg(&upper)
            .output()
            .unwrap_or_else(|e| panic!("nsenter find: {e}"));
        assert!(out.status.success(), "find: {out:?}");
        let prefix = upper.display().to_string();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.pid != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        if let Some(p) = self.process.take() {
            let _ = p.wait(WAIT);
        }
        // The cgroup tree systemd made, deepest first (empty now).
        let out = Command::new("find")
            .arg(&self.cgroup)
            .args(["-depth", "-type", "d"])
            .output();
        if let Ok(out) = out {
            for dir in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Builds the package (the debug binary, gzip: seconds, where a release
/// build and xz take minutes) with `version`; its path.
fn build_deb(out: &Path, version: &str) -> PathBuf {
    let bin = xdpgw_binary();
    let o = Command::new(workspace_dir().join("pkg/build-deb.sh"))
        .arg("--binary")
        .arg(&bin)
        .arg("--out")
        .arg(out)
        .args(["--version", version, "--fast"])
        .output()
        .expect("run pkg/build-deb.sh");
    assert!(
        o.status.success(),
        "pkg/build-deb.sh: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

fn links(t: &TwoPorts) -> Vec<String> {
    t.gw.exec_ok(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

#[test]
fn package_installs_runs_reloads_upgrades_and_purges_under_systemd() {
    let what = "package_installs_runs_reloads_upgrades_and_purges_under_systemd";
    if !require_root_with(
        what,
        &[
            "unshare",
            "nsenter",
            "setpriv",
            "chroot",
            "mount",
            "mknod",
            "find",
            "kill",
            "ping",
            "dpkg-deb",
            "dpkg-shlibdeps",
            "strip",
            "apt-get",
            "man",
        ],
    ) {
        return;
    }
    let cgroups = cgroup2_root();
    let missing = match (&cgroups, Path::new(SYSTEMD).exists()) {
        (None, _) => Some("a cgroup v2 hierarchy (cgroup2 in /proc/self/mounts)"),
        (_, false) => Some("systemd (/lib/systemd/systemd, Debian package systemd)"),
        _ => None,
    };
    if let Some(m) = missing {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} needs {m} (CI=true, refusing to skip)");
        }
        skip_notice(&format!("{what} needs {m}"));
        return;
    }
    let cgroups = cgroups.expect("checked");

    let dir = WorkDir::new("pkg");
    let version = env!("CARGO_PKG_VERSION");
    let upgrade = format!("{version}+test1");
    let deb = build_deb(dir.path(), version);
    let deb2 = build_deb(dir.path(), &upgrade);

    let t = TwoPorts::new("pkg");
    let c = Container::start(
        t.gw.name(),
        &dir.path().join("container"),
        cgroups.join(format!("xdpgw-pkg-test-{}", std::process::id())),
    );
    // A clean machine: no xdpgw.
    assert!(!c.run(&["dpkg-query", "-W", "xdpgw"]).status.success());
    for d in [&deb, &deb2] {
        let name = d.file_name().expect("a file");
        std::fs::copy(d, c.root().join("root").join(name)).expect("copy the .deb in");
    }
    // The journal (for the assertions on the log below); man-db's index
    // not rebuilt at each install (what Debian's container images do).
    c.ok(&["systemctl", "start", "systemd-journald.socket"]);
    c.ok(&["rm", "-f", "/var/lib/man-db/auto-update"]);

    // Install.
    let deb_name = format!("./{}", deb.file_name().expect("name").to_string_lossy());
    c.ok(&[
        "sh",
        "-c",
        &format!("cd /root && apt-get install -y --no-install-recommends {deb_name}"),
    ]);
    let files = c.ok(&["dpkg-query", "-L", "xdpgw"]);
    for f in [
        "/usr/bin/xdpgw",
        "/lib/systemd/system/xdpgw.service",
        "/etc/xdpgw/gateway.toml",
        "/etc/xdpgw/gateway.rules",
        "/etc/xdpgw/gateway.rules6",
        "/usr/share/man/man8/xdpgw.8.gz",
        "/usr/share/man/man8/xdpgw-run.8.gz",
        "/usr/share/bash-completion/completions/xdpgw",
        "/usr/share/zsh/vendor-completions/_xdpgw",
        "/usr/share/fish/vendor_completions.d/xdpgw.fish",
        "/usr/share/doc/xdpgw/examples/gateway.toml",
        "/usr/share/doc/xdpgw/examples/gateway.rules",
        "/usr/share/doc/xdpgw/examples/gateway.rules6",
        "/usr/share/xdpgw/grafana-dashboard.json",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    let conffiles = c.ok(&["dpkg-query", "-W", "-f=${Conffiles}", "xdpgw"]);
    assert!(
        conffiles.contains("/etc/xdpgw/gateway.toml "),
        "{conffiles}"
    );
    for f in ["/etc/xdpgw/gateway.rules ", "/etc/xdpgw/gateway.rules6 "] {
        assert!(conffiles.contains(f), "{conffiles}");
    }
    let v = c.ok(&["xdpgw", "--version"]);
    assert_eq!(v.trim(), format!("xdpgw {}", xdpgw_control::VERSION));

    // Man pages and completions.
    let man = c.ok(&["env", "MANPAGER=cat", "MANWIDTH=100", "man", "xdpgw"]);
    assert!(
        man.contains("xdpgw-run(8)") && man.contains("SUBCOMMANDS"),
        "{man}"
    );
    let man = c.ok(&["env", "MANPAGER=cat", "MANWIDTH=100", "man", "xdpgw-run"]);
    assert!(man.contains("--config") && man.contains("SIGHUP"), "{man}");
    let words = c.ok(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/xdpgw; COMP_WORDS=(xdpgw ''); \
         COMP_CWORD=1; _xdpgw xdpgw '' xdpgw; echo \"${COMPREPLY[*]}\"",
    ]);
    let words: Vec<&str> = words.split_whitespace().collect();
    for sub in ["run", "reload", "list", "conntrack", "metrics", "doctor"] {
        assert!(
            words.contains(&sub),
            "bash completion lacks {sub}: {words:?}"
        );
    }
    assert!(!words.contains(&"generate"), "{words:?}");

    // Start: `systemctl start` of a Type=notify unit returns once xdpgw
    // sent READY=1, whose STATUS= is the `ready` line.
    c.ok(&["systemctl", "start", "xdpgw"]);
    assert_eq!(c.unit("ActiveState"), "active");
    let status = c.unit("StatusText");
    assert!(
        status.starts_with("ready lan0: ") && status.contains("wan0: "),
        "{status}"
    );
    let pid = c.unit("MainPID");
    let proc_status = c.ok(&["cat", &format!("/proc/{pid}/status")]);
    let field = |k: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    // A dynamic user with CAP_NET_ADMIN (12), CAP_NET_RAW (13),
    // CAP_IPC_LOCK (14), CAP_BPF (39) and nothing else.
    assert!(!field("Uid:").starts_with("0\t"), "{proc_status}");
    assert_eq!(field("CapEff:"), "0000008000007000", "{proc_status}");
    assert_eq!(field("CapBnd:"), "0000008000007000", "{proc_status}");
    let ping = t.peer.exec(&["ping", "-c", "1", "-W", "5", GATEWAY_LAN]);
    assert!(ping.status.success(), "ping:\n{}", c.journal());
    assert!(!t.xdp_programs("lan0").is_empty());
    let l = links(&t);
    assert!(
        l.contains(&"xg-lan0".to_owned()) && l.contains(&"xg-wan0".to_owned()),
        "{l:?}"
    );

    // Reload.
    c.ok(&["systemctl", "reload", "xdpgw"]);
    assert_eq!(c.unit("ActiveState"), "active");
    assert_eq!(c.unit("StatusText"), "reloaded");
    let metrics = c.ok(&["xdpgw", "metrics", "--config", "/etc/xdpgw/gateway.toml"]);
    assert!(
        metrics.contains("xdpgw_reloads_total{result=\"success\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("revision=\"{}\"", xdpgw_control::REVISION)),
        "{metrics}"
    );
    assert!(c.journal().contains("xdpgw: reloaded "), "{}", c.journal());

    // Upgrade: the running service is restarted, and its connections (the
    // ping's) saved and restored through /var/lib/xdpgw.
    let deb2_name = format!("./{}", deb2.file_name().expect("name").to_string_lossy());
    c.ok(&[
        "sh",
        "-c",
        &format!("cd /root && apt-get install -y --no-install-recommends {deb2_name}"),
    ]);
    assert_eq!(
        c.ok(&["dpkg-query", "-W", "-f=${Version}", "xdpgw"]),
        upgrade
    );
    assert_eq!(c.unit("ActiveState"), "active");
    assert_ne!(c.unit("MainPID"), pid, "not restarted");
    assert!(c.unit("StatusText").starts_with("ready "));
    let journal = c.journal();
    assert!(
        journal.contains("xdpgw: saved ")
            && journal.contains(" connections to /var/lib/xdpgw/conntrack.state")
            && !journal.contains("xdpgw: saved 0 "),
        "{journal}"
    );
    assert!(
        journal.contains("xdpgw: restored ") && !journal.contains("xdpgw: restored 0 "),
        "{journal}"
    );
    let ping = t.peer.exec(&["ping", "-c", "1", "-W", "5", GATEWAY_LAN]);
    assert!(
        ping.status.success(),
        "ping after the upgrade:\n{}",
        c.journal()
    );

    // Stop: nothing of it stays on the interfaces.
    let gone = |when: &str| {
        for ifname in ["lan0", "wan0"] {
            assert_eq!(
                t.xdp_programs(ifname),
                Vec::<String>::new(),
                "{ifname} {when}"
            );
        }
        assert_eq!(links(&t), ["lo", "lan0", "wan0"], "{when}");
    };
    c.ok(&["systemctl", "stop", "xdpgw"]);
    assert_eq!(c.unit("ActiveState"), "inactive");
    gone("after systemctl stop");

    // Remove (not purge) while it runs: the prerm stops it, the conffiles
    // stay; installed again, it starts (the unit the postrm masked is
    // unmasked).
    c.ok(&["systemctl", "start", "xdpgw"]);
    c.ok(&["apt-get", "remove", "-y", "xdpgw"]);
    gone("after apt-get remove");
    assert!(c.root().join("etc/xdpgw/gateway.toml").exists());
    c.ok(&[
        "sh",
        "-c",
        &format!("cd /root && apt-get install -y --no-install-recommends {deb2_name}"),
    ]);
    c.ok(&["systemctl", "start", "xdpgw"]);
    assert_eq!(c.unit("ActiveState"), "active");

    // Purge while it runs.
    c.ok(&["apt-get", "purge", "-y", "xdpgw"]);
    gone("after apt-get purge");
    assert!(!c
        .run(&["dpkg-query", "-W", "-f=${Status}", "xdpgw"])
        .stdout
        .starts_with(b"install"));
    let left: Vec<String> = c
        .changed_paths()
        .into_iter()
        .filter(|p| p.contains("xdpgw"))
        .filter(|p| {
            // What the test itself put there, and the logs of apt and dpkg.
            !(p.starts_with("/root/xdpgw_")
                || p == "/etc/systemd/system/xdpgw-test.target"
                || p.starts_with("/var/log/"))
        })
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left after the purge");
    for p in [
        "/etc/xdpgw",
        "/var/lib/xdpgw",
        "/var/lib/private/xdpgw",
        "/run/xdpgw",
    ] {
        assert!(!c.root().join(&p[1..]).exists(), "{p} left after the purge");
    }
    drop(c);
}
