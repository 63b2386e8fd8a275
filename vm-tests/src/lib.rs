//! Namespace labs for end-to-end tests, with Linux as the oracle.
//!
//! Everything here panics instead of returning `Result`: these helpers run
//! inside tests, and a panic keeps the backtrace of the step that failed.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod frames;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Numbers the namespaces of this process so that names stay unique.
static NETNS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// An RAII guard for a Linux network namespace.
///
/// [`Netns::new`] runs `ip netns add`; dropping the guard runs `ip netns del`,
/// also while unwinding from a panic. Commands run in the namespace through
/// `ip netns exec`, so the guard never changes the namespace of the calling
/// thread.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `xg-<tag>-<pid>-<counter>`.
    ///
    /// Panics if `ip netns add` fails.
    pub fn new(tag: &str) -> Netns {
        // Relaxed: the counter only has to hand out distinct numbers.
        let n = NETNS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("xg-{tag}-{}-{n}", std::process::id());
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        if !out.status.success() {
            panic!(
                "`ip netns add {name}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Netns { name }
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec NAME args...` and returns its output, whatever the
    /// exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Like [`Netns::exec`], but panics with the command, its exit status and
    /// its stderr unless it succeeds; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        self.check(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Netns::exec`], with `stdin` written to the command's standard
    /// input.
    pub fn exec_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{}`: {e}", self.display(args)));
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // Write from another thread so that a command that fills its stdout
        // before reading all its input cannot deadlock us.
        let input = stdin.to_owned();
        let writer = std::thread::spawn(move || {
            // A command may exit without reading its input: ignore EPIPE.
            let _ = pipe.write_all(input.as_bytes());
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for `{}`: {e}", self.display(args)));
        writer.join().expect("stdin writer panicked");
        out
    }

    /// Like [`Netns::exec_stdin`], but panics unless the command succeeds;
    /// returns stdout.
    pub fn exec_stdin_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.exec_stdin(args, stdin);
        self.check(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    fn display(&self, args: &[&str]) -> String {
        format!("ip netns exec {} {}", self.name, args.join(" "))
    }

    fn check(&self, args: &[&str], out: &Output) {
        if !out.status.success() {
            panic!(
                "`{}` failed ({}):\nstderr: {}\nstdout: {}",
                self.display(args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let failed = match &out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            // Panicking in drop while unwinding would abort: only report.
            if std::thread::panicking() {
                eprintln!("`ip netns del {}` failed: {why}", self.name);
            } else {
                panic!("`ip netns del {}` failed: {why}", self.name);
            }
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

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
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Checks the preconditions of a namespace test: root, `ip` and
/// `iptables-restore`.
///
/// Returns true when they hold. Otherwise panics if the environment variable
/// `CI` is `true` (a CI run must not skip silently), or prints a
/// `skipping: ...` line naming `what` and returns false.
pub fn require_root(what: &str) -> bool {
    let mut missing = Vec::new();
    match effective_uid() {
        Some(0) => {}
        Some(uid) => missing.push(format!("root (euid is {uid})")),
        None => missing.push("root (cannot read the euid from /proc/self/status)".to_owned()),
    }
    for program in ["ip", "iptables-restore", "iptables-save"] {
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
    eprintln!("skipping: {msg}");
    false
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
