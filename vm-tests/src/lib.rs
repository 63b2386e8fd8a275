//! Namespace labs for end-to-end tests, with Linux as the oracle.
//!
//! Everything here panics instead of returning `Result`: these helpers run
//! inside tests, and a panic keeps the backtrace of the step that failed.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod frames;
pub mod fuzz;
pub mod memlab;
pub mod scenario;
pub mod two_ports;

use std::collections::BTreeMap;
use std::path::Path;

/// The namespace lab (its own crate, shared with `xdpgw demo` and the
/// benches), re-exported for the tests.
pub use xdpgw_lab::{self as lab, find_program, skip_notice, Netns};
pub use xdpgw_lab::{tools_binary, workspace_dir, xdpgw_binary};
use xdpgw_lab::{Backend, Ipv6Spec, Ipv6Unsupported, Lab, LabConfig};

/// The programs every namespace test needs: Linux, the oracle, is set up
/// with them.
const ORACLE_PROGRAMS: &[&str] = &["ip", "iptables-restore", "iptables-save"];

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
    let all: Vec<&str> = ORACLE_PROGRAMS.iter().chain(programs).copied().collect();
    lab::require_root(what, &all)
}

/// The programs the end-to-end lab tests run, besides those of
/// [`require_root`].
pub const LAB_PROGRAMS: &[&str] = &["ethtool", "tcpdump", "ping", "conntrack", "kill", "sysctl"];

/// How to build the gateway lab with `backend` forwarding and the
/// configuration `config` (whose rules and interfaces it reads, see
/// [`xdpgw_control::demo::lab_gateway`]): the xdpgw binary of this
/// workspace, the traffic tools ([`tools_binary`]), one queue, no extra
/// `xdpgw run` arguments. Panics if the configuration does not load.
pub fn lab_config(backend: Backend, config: &Path) -> LabConfig {
    let loaded = xdpgw_control::config::Config::load(config).unwrap_or_else(|e| panic!("{e}"));
    LabConfig {
        backend,
        gateway: xdpgw_control::demo::lab_gateway(&loaded).unwrap_or_else(|e| panic!("{e}")),
        xdpgw: xdpgw_binary(),
        tools: Some(tools_binary()),
        run_args: Vec::new(),
        queues: 1,
        mtu: None,
    }
}

/// The gateway lab of conf/gateway.toml with `backend` forwarding (see
/// [`Lab`]); xdpgw runs with `--report-on-exit`, so that stopping it
/// ([`Lab::stop_gateway`]) yields its conntrack table and rule counters.
pub fn gateway_lab(backend: Backend) -> Lab {
    Lab::gateway_lab(&LabConfig {
        run_args: vec!["--report-on-exit".to_owned()],
        ..lab_config(backend, &workspace_dir().join("conf/gateway.toml"))
    })
}

/// The programs an IPv6 lab test runs besides [`LAB_PROGRAMS`]: Linux's
/// IPv6 rules and the probe of `Lab::udp_probe6` (radvd only where a test
/// advertises routes).
pub const LAB6_PROGRAMS: &[&str] = &["ip6tables-restore", "ip6tables-save", "python3"];

/// The dual-stack gateway lab of conf/gateway.toml (IPv4 as
/// [`gateway_lab`], IPv6 as `v6` says; see `Lab::dual_stack_lab`) with
/// `backend` forwarding; Err when the backend cannot do IPv6 yet.
pub fn dual_stack_lab(backend: Backend, v6: &Ipv6Spec) -> Result<Lab, Ipv6Unsupported> {
    Lab::dual_stack_lab(
        &LabConfig {
            run_args: vec!["--report-on-exit".to_owned()],
            ..lab_config(backend, &workspace_dir().join("conf/gateway.toml"))
        },
        v6,
    )
}

/// An iptables-restore (or ip6tables-restore) file of `tables`: for each, `*TABLE`, its built-in
/// chains with policy ACCEPT, the rule lines given, `COMMIT`.
pub fn restore_text(tables: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (table, rules) in tables {
        let chains: &[&str] = match *table {
            "raw" => &["PREROUTING", "OUTPUT"],
            "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            "filter" => &["INPUT", "FORWARD", "OUTPUT"],
            t => panic!("no table {t}"),
        };
        out.push_str(&format!("*{table}\n"));
        for c in chains {
            out.push_str(&format!(":{c} ACCEPT [0:0]\n"));
        }
        for line in rules.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// nat POSTROUTING's MASQUERADE out of wan0, the rules most lab scenarios
/// share.
pub const MASQUERADE_WAN0: (&str, &str) = ("nat", "-A POSTROUTING -o wan0 -j MASQUERADE");

/// Copies conf/gateway.rules6 into `dir`: what a copy of conf/gateway.toml
/// written there names (`rules6 = "gateway.rules6"`, relative to it).
pub fn copy_rules6(dir: &Path) {
    std::fs::copy(
        workspace_dir().join("conf/gateway.rules6"),
        dir.join("gateway.rules6"),
    )
    .expect("copy conf/gateway.rules6");
}

/// The gateway lab of conf/gateway.toml with its files written to `dir`
/// first: the rules `rules` (conf/gateway.rules when None) and the
/// configuration with `extra` TOML added: its lines before its first
/// section header are top-level keys (they go first), the rest is appended
/// (sections of its own, such as `[conntrack]`). Backend::Linux loads the
/// same rules; what `extra` sets the caller gives Linux itself (its
/// sysctls).
pub fn lab_with(dir: &Path, backend: Backend, rules: Option<&str>, extra: &str) -> Lab {
    Lab::gateway_lab(&lab_config(backend, &config_with(dir, rules, extra)))
}

/// [`dual_stack_lab`] of `v6` whose configuration (written in `dir`, as
/// [`lab_with`] writes it) has the `extra` lines, e.g. `nat_log`.
pub fn dual_stack_lab_with(
    dir: &Path,
    backend: Backend,
    v6: &Ipv6Spec,
    extra: &str,
) -> Result<Lab, Ipv6Unsupported> {
    dual_stack_lab_with_rules(dir, backend, None, v6, extra)
}

/// [`dual_stack_lab_with`] with the IPv4 rules `rules` (default:
/// conf/gateway.rules), as [`lab_with`] takes them.
pub fn dual_stack_lab_with_rules(
    dir: &Path,
    backend: Backend,
    rules: Option<&str>,
    v6: &Ipv6Spec,
    extra: &str,
) -> Result<Lab, Ipv6Unsupported> {
    Lab::dual_stack_lab(
        &LabConfig {
            run_args: vec!["--report-on-exit".to_owned()],
            ..lab_config(backend, &config_with(dir, rules, extra))
        },
        v6,
    )
}

/// conf/gateway.toml with `extra` lines (top-level keys before its
/// tables, tables after), and `rules` (default: conf/gateway.rules), both
/// written in `dir`: the configuration's path.
fn config_with(dir: &Path, rules: Option<&str>, extra: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("conf/gateway.toml");
    assert!(
        base.contains("rules = \"gateway.rules\""),
        "conf/gateway.toml no longer names its rules file 'gateway.rules'"
    );
    copy_rules6(dir);
    let split = extra
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(extra.lines().count());
    let mut conf = String::new();
    for l in extra.lines().take(split) {
        conf.push_str(l);
        conf.push('\n');
    }
    conf.push_str(&base);
    conf.push('\n');
    for l in extra.lines().skip(split) {
        conf.push_str(l);
        conf.push('\n');
    }
    let rules = match rules {
        Some(r) => r.to_owned(),
        None => std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
            .expect("conf/gateway.rules"),
    };
    std::fs::write(dir.join("gateway.rules"), rules).expect("write the rules");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, conf).expect("write the configuration");
    config
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
