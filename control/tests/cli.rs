//! Integration tests of the `xdpgw` binary: `check`, `save` and the help
//! texts. They run the built binary from the workspace root, without root.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace root.
fn workspace() -> PathBuf {
    xdpgw_lab::workspace_dir()
}

/// Runs `xdpgw args...` in the workspace root.
fn xdpgw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xdpgw"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run xdpgw {args:?}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything about a run, for failure messages.
fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "xdpgw {}: {}\n--- stdout:\n{}--- stderr:\n{}",
        args.join(" "),
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// A file under the temporary directory, removed when dropped (also when
/// the test panics).
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(suffix: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // Relaxed: the counter only has to hand out distinct numbers.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "xdpgw-cli-test-{}-{n}-{nanos}{suffix}",
            std::process::id()
        ));
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        TempFile { path }
    }

    fn as_str(&self) -> &str {
        self.path.to_str().expect("the temporary path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sorted lines, to compare outputs whose line order does not matter.
fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn check_prints_one_summary_per_table_per_file() {
    let args = ["check", "conf/gateway.rules", "conf/seed-examples.sh"];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    let text = stdout(&out);
    let expected = [
        "conf/gateway.rules: table filter: 4 chains (3 built-in, 1 user), 15 rules",
        "conf/gateway.rules: table mangle: 5 chains (5 built-in, 0 user), 2 rules",
        "conf/gateway.rules: table nat: 4 chains (4 built-in, 0 user), 2 rules",
        "conf/gateway.rules: table raw: 2 chains (2 built-in, 0 user), 1 rule",
        "conf/seed-examples.sh: table filter: 3 chains (3 built-in, 0 user), 1 rule",
        "conf/seed-examples.sh: table mangle: 5 chains (5 built-in, 0 user), 1 rule",
        "conf/seed-examples.sh: table nat: 4 chains (4 built-in, 0 user), 2 rules",
        "conf/seed-examples.sh: table raw: 2 chains (2 built-in, 0 user), 1 rule",
    ];
    assert_eq!(sorted_lines(&text), expected, "{}", describe(&args, &out));
    // The summaries of one file come before those of the next.
    let lines: Vec<&str> = text.lines().collect();
    let last_gateway = lines
        .iter()
        .rposition(|l| l.starts_with("conf/gateway.rules:"));
    let first_seed = lines
        .iter()
        .position(|l| l.starts_with("conf/seed-examples.sh:"));
    assert!(
        last_gateway < first_seed,
        "files' summaries are interleaved:\n{text}"
    );
    assert!(stderr(&out).trim().is_empty(), "{}", describe(&args, &out));
}

/// A restore file with three errors, on lines 4, 6 and 7.
const THREE_ERRORS: &str = "\
# three errors
*filter
:INPUT DROP [0:0]
-A INPUT -p tcp --dport 99999 -j ACCEPT
-A INPUT -s 10.0.0.1 -j ACCEPT
-A INPUT -j NOSUCHTARGET
  -A NOCHAIN -j ACCEPT
COMMIT
";

#[test]
fn check_reports_every_error_with_line_and_column() {
    let file = TempFile::new(".rules", THREE_ERRORS);
    let args = ["check", file.as_str()];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    let err = stderr(&out);
    let name = file.as_str();
    // FILE:LINE:COLUMN: and a word the message must contain.
    let expected = [
        (format!("{name}:4:25: "), "99999"),
        (format!("{name}:6:13: "), "NOSUCHTARGET"),
        (format!("{name}:7:3: "), "NOCHAIN"),
    ];
    for (place, word) in &expected {
        let line = err.lines().find(|l| l.starts_with(place.as_str()));
        match line {
            Some(l) => assert!(
                l.contains(word),
                "the error at {place} does not mention {word:?}: {l}"
            ),
            None => panic!("no error at {place}\n{}", describe(&args, &out)),
        }
    }
    // Exactly those three errors, each as FILE:LINE:COLUMN: message.
    let positioned: Vec<&str> = err
        .lines()
        .filter(|l| {
            let Some(rest) = l.strip_prefix(name).and_then(|r| r.strip_prefix(':')) else {
                return false;
            };
            let mut f = rest.splitn(3, ':');
            let line = f.next().and_then(|s| s.parse::<u32>().ok());
            let col = f.next().and_then(|s| s.parse::<u32>().ok());
            let msg = f.next().unwrap_or("");
            line.is_some() && col.is_some() && msg.starts_with(' ') && msg.len() > 1
        })
        .collect();
    assert_eq!(
        positioned.len(),
        3,
        "expected exactly three FILE:LINE:COLUMN errors:\n{}",
        describe(&args, &out)
    );
    assert!(
        err.contains("3 errors"),
        "no error count:\n{}",
        describe(&args, &out)
    );
    assert!(
        stdout(&out).trim().is_empty(),
        "a failed check printed a summary:\n{}",
        describe(&args, &out)
    );
}

#[test]
fn check_of_missing_file_fails_naming_it() {
    let missing = std::env::temp_dir().join(format!(
        "xdpgw-cli-test-{}-does-not-exist.rules",
        std::process::id()
    ));
    assert!(!missing.exists(), "{} exists", missing.display());
    let name = missing.to_str().expect("the temporary path is UTF-8");
    let args = ["check", name];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert!(
        stderr(&out).contains(name),
        "the error does not name {name}:\n{}",
        describe(&args, &out)
    );
    assert!(stdout(&out).trim().is_empty(), "{}", describe(&args, &out));
}

/// A configuration file is checked as one, with the rule file it names; a
/// file that cannot be read is named without a made-up position.
#[test]
fn check_takes_a_configuration_file_too() {
    let args = ["check", "conf/gateway.toml"];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "conf/gateway.toml: configuration: 2 interfaces, 1 route, rules conf/gateway.rules\n"
        ),
        "{}",
        describe(&args, &out)
    );
    assert!(
        text.contains("conf/gateway.rules: table filter: 4 chains (3 built-in, 1 user), 15 rules"),
        "{}",
        describe(&args, &out)
    );
    let bad = TempFile::new(
        ".toml",
        "rules = \"gateway.rules\"\n[[interface]]\nname = \"lan0\"\naddress = \"10.0.0.1/40\"\n",
    );
    let args = ["check", bad.as_str()];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert!(
        stderr(&out).starts_with(&format!("{}:4:11: bad address '10.0.0.1/40'", bad.as_str())),
        "{}",
        describe(&args, &out)
    );
    let args = [
        "check",
        "/nonexistent/gateway.toml",
        "/nonexistent/gateway.rules",
    ];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/gateway.toml: cannot read: "),
        "{err}"
    );
    assert!(
        err.contains("/nonexistent/gateway.rules: cannot read: "),
        "{err}"
    );
    assert!(!err.contains(":0:0"), "{err}");
}

/// `xdpgw run` with an interface this machine does not have names the
/// configuration's line for it.
#[test]
fn run_names_the_config_line_of_a_missing_interface() {
    let rules = std::fs::canonicalize(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/gateway.rules"
    ))
    .expect("conf/gateway.rules");
    let config = TempFile::new(
        ".toml",
        &format!(
            "rules = \"{}\"\ncontrol_socket = \"/nonexistent-dir/x.sock\"\n\n[[interface]]\nname = \"xgnosuch0\"\naddress = \"192.168.10.1/24\"\n",
            rules.display()
        ),
    );
    let args = ["run", "--config", config.as_str()];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    let want = format!(
        "{}:5:8: no interface named 'xgnosuch0' on this machine",
        config.as_str()
    );
    assert!(stderr(&out).contains(&want), "{}", describe(&args, &out));
}

/// `check` (like `run`, `reload` and SIGHUP) refuses a file cut short while
/// being written: a last table without COMMIT, a last line without its
/// newline, even where the lines read are valid rules.
#[test]
fn check_refuses_a_file_cut_short() {
    let full = std::fs::read_to_string(workspace().join("conf/gateway.rules")).expect("rules");
    let filter = full.find("*filter\n").expect("filter table");
    let rule = "-A FORWARD -i lan0 -o wan0 -s 192.168.10.0/24 -j ACCEPT\n";
    let at = full.find(rule).expect("the rule");
    let cases = [
        // Inside the filter table, after a complete line.
        (full[..at].to_owned(), "COMMIT expected"),
        // Inside a rule line: `-j ACC` is not even a target.
        (full[..at + rule.len() - 5].to_owned(), "no newline"),
        // After the filter table's COMMIT but before its newline.
        (full.trim_end().to_owned(), "no newline"),
    ];
    let filter_line = full[..filter].lines().count() + 1;
    for (text, what) in cases {
        let file = TempFile::new(".rules", &text);
        let args = ["check", file.as_str()];
        let out = xdpgw(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
        let line = err
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no '{what}' error:\n{}", describe(&args, &out)));
        let pos: Vec<&str> = line[file.as_str().len()..].splitn(4, ':').collect();
        assert!(
            pos.len() == 4 && pos[1].parse::<u32>().is_ok() && pos[2].parse::<u32>().is_ok(),
            "not FILE:LINE:COLUMN: {line}"
        );
        if what == "COMMIT expected" {
            assert!(
                line.contains(&format!("table 'filter' (line {filter_line})")),
                "{line}"
            );
        }
        assert!(err.contains("nothing loaded"), "{}", describe(&args, &out));
    }
}

/// What Linux's `iptables-save` (iptables 1.8.9, nf_tables) prints after
/// `sh -e conf/seed-examples.sh` in a fresh network namespace, without its
/// `#` header and footer lines. iptables-nft prints the tables in a fixed
/// order: mangle, raw, filter, nat.
const SEED_SAVE: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp -m tcp --sport 443 -j DSCP --set-dscp 0x2e
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 22 -j NOTRACK
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 80 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 192.168.10.10/32 -p tcp -m tcp --dport 25 -j REDIRECT
-A POSTROUTING -s 192.168.10.10/32 -o eth0 -j MASQUERADE
COMMIT
";

/// The `*table` ... `COMMIT` blocks of save output, sorted.
fn sorted_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line == "COMMIT" {
            blocks.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    blocks.sort();
    blocks
}

#[test]
fn save_prints_what_iptables_save_prints() {
    let args = ["save", "conf/seed-examples.sh"];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    let got = stdout(&out);
    if got != SEED_SAVE {
        let hint = if sorted_blocks(&got) == sorted_blocks(SEED_SAVE) {
            "the same tables, byte for byte, but in another table order"
        } else {
            "the tables differ"
        };
        panic!(
            "xdpgw save differs from Linux's iptables-save ({hint}).\n\
             --- Linux (expected):\n{SEED_SAVE}--- xdpgw:\n{got}"
        );
    }
    assert!(stderr(&out).trim().is_empty(), "{}", describe(&args, &out));
}

#[test]
fn help_texts_mention_their_arguments() {
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--help"], &["Usage: xdpgw", "check", "save"]),
        (&["check", "--help"], &["Usage: xdpgw check", "<FILE>..."]),
        (
            &["save", "--help"],
            &["Usage: xdpgw save", "<FILE>", "--counters"],
        ),
    ];
    for (args, words) in cases {
        let out = xdpgw(args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(args, &out));
        let text = stdout(&out);
        for word in words {
            assert!(
                text.contains(word),
                "`xdpgw {}` does not mention {word:?}:\n{text}",
                args.join(" ")
            );
        }
    }
}

/// The shipped binary has no test commands: the lab's traffic tools are a
/// test binary of their own (`xdpgw-lab`), and `xdpgw demo` runs them as
/// functions on threads of its own.
#[test]
fn the_product_carries_no_lab_tool_commands() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_xdpgw")).expect("read the xdpgw binary");
    let words: Vec<&str> = xdpgw_lab::traffic::TOOL_NAMES
        .iter()
        .chain(&["lab-tool"])
        .copied()
        .collect();
    // Every run of letters and hyphens in the binary (as `strings` would
    // show them): none may contain a command word.
    for run in bin.split(|b| !(b.is_ascii_lowercase() || *b == b'-')) {
        if run.len() >= 7 {
            let run = String::from_utf8_lossy(run);
            if let Some(word) = words.iter().find(|w| run.contains(*w)) {
                panic!("the xdpgw binary contains `{word}` (in `{run}`)");
            }
        }
    }
    let args = ["lab-tool", "tcp-serve", "0"];
    let out = xdpgw(&args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
    assert!(
        stderr(&out).contains("unrecognized subcommand 'lab-tool'"),
        "{}",
        describe(&args, &out)
    );
}
