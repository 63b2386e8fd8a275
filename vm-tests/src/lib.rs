//! Namespace labs for end-to-end tests, with Linux as the oracle.
//!
//! Everything here panics instead of returning `Result`: these helpers run
//! inside tests, and a panic keeps the backtrace of the step that failed.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod frames;
pub mod scenario;
pub mod two_ports;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The namespace guard, the lab and its helpers live in the control crate
/// (`xdpgw demo` builds the same lab); re-exported here for the tests.
pub use xdpgw_control::lab::{self, find_program, Netns};
use xdpgw_control::lab::{effective_uid, Backend, Lab, LabConfig};

/// Checks the preconditions of a namespace test: root, `ip` and
/// `iptables-restore`.
///
/// Returns true when they hold. Otherwise panics if the environment variable
/// `CI` is `true` (a CI run must not skip silently), or prints a
/// `skipping: ...` line naming `what` ([`skip_notice`]) and returns false.
pub fn require_root(what: &str) -> bool {
    require_root_with(what, &[])
}

/// [`require_root`], and the `programs` too (e.g. `tcpdump`, `ping`).
pub fn require_root_with(what: &str, programs: &[&str]) -> bool {
    let mut missing = Vec::new();
    match effective_uid() {
        Some(0) => {}
        Some(uid) => missing.push(format!("root (euid is {uid})")),
        None => missing.push("root (cannot read the euid from /proc/self/status)".to_owned()),
    }
    for program in ["ip", "iptables-restore", "iptables-save"]
        .iter()
        .chain(programs)
    {
        if find_program(program).is_none() {
            missing.push(format!("the `{program}` program"));
        }
    }
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

/// The programs the end-to-end lab tests run, besides those of
/// [`require_root`].
pub const LAB_PROGRAMS: &[&str] = &["ethtool", "tcpdump", "ping", "conntrack", "kill"];

/// The xdpgw binary: `$XDPGW_BIN` if set, else `target/<profile>/xdpgw`,
/// which this builds first (once per test process, with the `cargo` that
/// runs the tests): `cargo test -p xdpgw-vm-tests` alone does not build
/// other packages' binaries, and a stale `xdpgw lab-tool` or `xdpgw run`
/// would make the tests lie.
pub fn xdpgw_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("XDPGW_BIN") {
                return PathBuf::from(p);
            }
            let exe = std::env::current_exe().expect("the test executable's path");
            // target/<profile>/deps/<test>-<hash>
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("the test executable lives in target/<profile>/deps");
            let bin = profile_dir.join("xdpgw");
            if let Some(cargo) = std::env::var_os("CARGO") {
                let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                    Some("debug") | None => "dev",
                    Some(other) => other,
                };
                let target_dir = profile_dir.parent().expect("target/<profile>");
                let out = std::process::Command::new(cargo)
                    .args(["build", "--quiet", "-p", "xdpgw-control", "--bin", "xdpgw"])
                    .args(["--profile", profile, "--target-dir"])
                    .arg(target_dir)
                    .current_dir(workspace_dir())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run cargo build: {e}"));
                assert!(
                    out.status.success(),
                    "cargo build -p xdpgw-control --bin xdpgw failed ({}):\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                bin.is_file(),
                "{} does not exist: build it (`cargo build -p xdpgw-control`) or point \
                 XDPGW_BIN at it",
                bin.display()
            );
            bin
        })
        .clone()
}

/// The gateway lab of conf/gateway.toml with `backend` forwarding (see
/// [`Lab`]); xdpgw runs with `--report-on-exit`, so that stopping it
/// ([`Lab::stop_gateway`]) yields its conntrack table and rule counters.
pub fn gateway_lab(backend: Backend) -> Lab {
    Lab::gateway_lab(&LabConfig {
        backend,
        config: workspace_dir().join("conf/gateway.toml"),
        xdpgw: xdpgw_binary(),
        run_args: vec!["--report-on-exit".to_owned()],
        queues: 1,
    })
}

/// The dataplane gateway of conf/gateway.toml (lan0 192.168.10.1/24, wan0
/// 203.0.113.1/24, default route via 203.0.113.254) for in-memory tests
/// and benchmarks: interface `k` gets `macs[k]` and MTU 1500.
pub fn conf_gateway_config(
    macs: [[u8; 6]; 2],
    conntrack: xdpgw_dataplane::conntrack::ConntrackConfig,
) -> xdpgw_dataplane::gateway::GatewayConfig {
    let path = workspace_dir().join("conf/gateway.toml");
    let cfg = xdpgw_control::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    cfg.gateway_config(
        |k| (macs.get(k).copied().unwrap_or_default(), 1500),
        conntrack,
    )
}

/// Splits `iptables-save` output into per-table blocks keyed by table name.
///
/// Each block runs from the `*table` line through `COMMIT` inclusive, with
/// every line that starts with `#` dropped; its lines are joined with `'\n'`
/// and it ends in `'\n'`. Lines outside a block are ignored. Panics on a
/// `*table` line inside a block, on a table that appears twice and on a
/// block without `COMMIT`.
pub fn split_save(text: &str) -> BTreeMap<String, String> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(table) = line.strip_prefix('*') {
            if let Some((open, _)) = &current {
                panic!("`*{table}` inside the block of table {open} (no COMMIT):\n{text}");
            }
            current = Some((table.to_owned(), String::new()));
        }
        let Some((table, block)) = current.as_mut() else {
            continue;
        };
        block.push_str(line);
        block.push('\n');
        if line == "COMMIT" {
            let (table, block) = (std::mem::take(table), std::mem::take(block));
            current = None;
            if tables.insert(table.clone(), block).is_some() {
                panic!("table {table} appears twice:\n{text}");
            }
        }
    }
    if let Some((table, _)) = current {
        panic!("table {table} has no COMMIT:\n{text}");
    }
    tables
}

/// A line diff of `expected` and `got`: lines only in `expected` start with
/// `-`, lines only in `got` with `+`, common lines with two spaces.
pub fn line_diff(expected: &str, got: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // Longest common subsequence table, suffix form.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// [`line_diff`] reduced to its changed lines and `context` unchanged lines
/// around each change; `  ...` marks what was left out. Empty when the texts
/// have the same lines.
pub fn compact_diff(expected: &str, got: &str, context: usize) -> String {
    let full = line_diff(expected, got);
    let lines: Vec<&str> = full.lines().collect();
    let changed: Vec<bool> = lines.iter().map(|l| !l.starts_with("  ")).collect();
    let keep: Vec<bool> = (0..lines.len())
        .map(|i| {
            let lo = i.saturating_sub(context);
            let hi = (i + context).min(lines.len().saturating_sub(1));
            changed[lo..=hi].iter().any(|c| *c)
        })
        .collect();
    let mut out = String::new();
    let mut skipped = false;
    for (i, line) in lines.iter().enumerate() {
        if keep[i] {
            if skipped {
                out.push_str("  ...\n");
            }
            skipped = false;
            out.push_str(line);
            out.push('\n');
        } else {
            skipped = true;
        }
    }
    if !changed.iter().any(|c| *c) {
        return String::new();
    }
    if skipped {
        out.push_str("  ...\n");
    }
    out
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vm-tests lives inside the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 10:40:54 2026
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
# Completed on Wed Nov 25 10:40:54 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 10:40:54 2026
*nat
:PREROUTING ACCEPT [0:0]
COMMIT
# Completed on Wed Nov 25 10:40:54 2026
";

    #[test]
    fn split_save_drops_comments_and_keys_by_table() {
        let t = split_save(SAVE);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t["filter"],
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(t["nat"], "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n");
    }

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
    fn split_save_of_nothing_is_empty() {
        assert!(split_save("").is_empty());
        assert!(split_save("# only a comment\n").is_empty());
    }

    #[test]
    #[should_panic(expected = "no COMMIT")]
    fn split_save_rejects_unterminated_block() {
        split_save("*filter\n:INPUT ACCEPT [0:0]\n");
    }

    #[test]
    fn line_diff_marks_changes() {
        let d = line_diff("a\nb\nc\n", "a\nx\nc\n");
        assert_eq!(d, "  a\n- b\n+ x\n  c\n");
        assert_eq!(line_diff("a\n", "a\n"), "  a\n");
        assert_eq!(line_diff("a\n", ""), "- a\n");
        assert_eq!(line_diff("", "a\n"), "+ a\n");
    }

    #[test]
    fn compact_diff_keeps_changes_and_context() {
        let expected = "1\n2\n3\n4\n5\n6\n7\n";
        let got = "1\n2\n3\nfour\n5\n6\n7\n";
        assert_eq!(
            compact_diff(expected, got, 1),
            "  ...\n  3\n- 4\n+ four\n  5\n  ...\n"
        );
        assert_eq!(compact_diff(expected, expected, 1), "");
    }
}
