//! What a lab needs of its host: root and a few programs.

use std::path::{Path, PathBuf};

/// Finds an executable in `PATH`, or in the sbin directories that a non-root
/// `PATH` often lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The effective uid of this process, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What this process lacks to run a lab: root, and each of `programs`
/// that is not installed. Empty when nothing is missing.
pub fn missing(programs: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    match effective_uid() {
        Some(0) => {}
        Some(uid) => missing.push(format!("root (euid is {uid})")),
        None => missing.push("root (cannot read the euid from /proc/self/status)".to_owned()),
    }
    for program in programs {
        if find_program(program).is_none() {
            missing.push(missing_program(program));
        }
    }
    missing
}

/// How [`missing`] names an absent program: with the Debian package that
/// installs it when it is one the lab runs (`vm-tests/setup.sh` installs
/// those).
fn missing_program(program: &str) -> String {
    let package = match program {
        "ip" => "iproute2",
        "iptables-restore" | "iptables-save" | "ip6tables-restore" | "ip6tables-save" => "iptables",
        "ping" => "iputils-ping",
        "kill" | "sysctl" => "procps",
        "conntrack" | "conntrackd" | "keepalived" | "tcpdump" | "ethtool" | "python3" | "radvd" => {
            program
        }
        _ => return format!("the `{program}` program"),
    };
    format!("the `{program}` program (Debian package {package})")
}

/// Checks the preconditions of a namespace test: root and `programs`.
///
/// Returns true when they hold. Otherwise panics if the environment variable
/// `CI` is `true` (a CI run must not skip silently), or prints a
/// `skipping: ...` line naming `what` ([`skip_notice`]) and returns false.
pub fn require_root(what: &str, programs: &[&str]) -> bool {
    let missing = missing(programs);
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{what} needs {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true, refusing to skip)");
    }
    skip_notice(&msg);
    false
}

/// Prints `skipping: {what}` where a test run shows it: straight to the
/// standard error stream, which the test harness does not capture (it
/// captures `eprintln!`, and shows that only for failing tests), so that a
/// skipped test is seen as skipped, not only as `ok`.
pub fn skip_notice(what: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipping: {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_readable() {
        assert!(effective_uid().is_some());
    }

    #[test]
    fn find_program_searches_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-xdpgw").is_none());
    }

    #[test]
    fn missing_names_absent_programs() {
        let m = missing(&["sh", "no-such-program-xdpgw"]);
        assert!(
            m.contains(&"the `no-such-program-xdpgw` program".to_owned()),
            "{m:?}"
        );
        assert!(!m.iter().any(|w| w.contains("`sh`")), "{m:?}");
    }

    #[test]
    fn missing_programs_name_their_debian_package() {
        assert_eq!(
            missing_program("kill"),
            "the `kill` program (Debian package procps)"
        );
        assert_eq!(
            missing_program("tcpdump"),
            "the `tcpdump` program (Debian package tcpdump)"
        );
        assert_eq!(
            missing_program("radvd"),
            "the `radvd` program (Debian package radvd)"
        );
        assert_eq!(
            missing_program("ip6tables-restore"),
            "the `ip6tables-restore` program (Debian package iptables)"
        );
    }
}
