//! The oracle test: for every rule file, xdpgw's `save` output equals what
//! Linux's `iptables-save` prints after loading the same file, table by
//! table and byte for byte.
//!
//! The corpus is every `conf/*.rules` (iptables-restore files) and
//! `conf/*.sh` (scripts of `iptables ...` lines) of the workspace plus the
//! generated corpus of `xdpgw_vm_tests::corpus`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use xdpgw_vm_tests::{compact_diff, corpus, require_root, split_save, workspace_dir, Netns};

/// How a corpus file is loaded into Linux.
enum Kind {
    /// An iptables-restore file, fed to `iptables-restore` on stdin.
    Restore,
    /// A script of `iptables ...` lines, run with `sh -e`.
    Script,
}

struct Case {
    name: String,
    kind: Kind,
    text: String,
    /// Set for files of `conf/`: xdpgw loads them through `load_rules`.
    path: Option<PathBuf>,
}

/// The `.rules` and `.sh` files of `conf/`, sorted by name. A missing or
/// empty `conf/` yields nothing.
fn conf_cases(conf: &Path) -> Vec<Case> {
    let Ok(dir) = std::fs::read_dir(conf) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .map(|e| e.expect("reading conf/").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("rules") => Kind::Restore,
                Some("sh") => Kind::Script,
                _ => return None,
            };
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = format!(
                "conf/{}",
                path.file_name()
                    .expect("a file has a name")
                    .to_string_lossy()
            );
            Some(Case {
                name,
                kind,
                text,
                path: Some(path),
            })
        })
        .collect()
}

fn generated_cases() -> Vec<Case> {
    corpus::generated()
        .into_iter()
        .map(|(name, text)| Case {
            name: format!("{name}.rules"),
            kind: Kind::Restore,
            text,
            path: None,
        })
        .collect()
}

/// A `PATH` that has the sbin directories, for scripts that call `iptables`.
fn path_with_sbin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("/usr/sbin:/sbin:/usr/bin:/bin:{path}")
}

/// Loads `case` into Linux in a fresh namespace and returns `iptables-save`'s
/// tables. `text` replaces the file's text for restore files.
fn linux_tables(case: &Case, text: &str) -> BTreeMap<String, String> {
    let ns = Netns::new("save");
    match case.kind {
        Kind::Restore => {
            // The sets the generated files' `-m set` rules name.
            ns.exec_stdin_ok(&["ipset", "restore"], corpus::IPSETS);
            ns.exec_stdin_ok(&["iptables-restore"], text);
        }
        Kind::Script => {
            let path = case
                .path
                .as_ref()
                .expect("scripts come from conf/")
                .to_str()
                .expect("the workspace path is UTF-8");
            let env_path = format!("PATH={}", path_with_sbin());
            ns.exec_ok(&["env", &env_path, "sh", "-e", path]);
        }
    }
    split_save(&ns.exec_ok(&["iptables-save"]))
}

/// Why xdpgw produced no tables.
enum Failure {
    /// `load_rules*` returned errors; their text.
    Rejected(String),
    /// A panic or output that is not in iptables-save form.
    Broken(String),
}

/// xdpgw's canonical output for `case` (with `text` as its contents).
fn xdpgw_tables(case: &Case, text: &str) -> Result<BTreeMap<String, String>, Failure> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let set = match &case.path {
            Some(path) if text == case.text => xdpgw_control::load_rules(path),
            _ => xdpgw_control::parse::load_str_with_sets(text, &corpus::ipsets())
                .map(|f| f.set)
                .map_err(|e| e.in_file(&case.name)),
        };
        set.map(|set| xdpgw_control::save::render(&set))
            .map_err(|e| e.to_string())
    }));
    let rendered = match result {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(errors)) => return Err(Failure::Rejected(errors)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(Failure::Broken(format!("xdpgw panicked: {msg}")));
        }
    };
    catch_unwind(|| split_save(&rendered)).map_err(|_| {
        Failure::Broken(format!(
            "xdpgw's output is not in iptables-save form:\n{rendered}"
        ))
    })
}

/// The line numbers named by xdpgw's errors (`file:line:column: message`).
fn error_lines(errors: &str) -> Vec<usize> {
    let mut lines: Vec<usize> = errors
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            fields.windows(2).find_map(|w| {
                let line = w[0].trim().parse::<usize>().ok()?;
                w[1].trim().parse::<usize>().ok().map(|_| line)
            })
        })
        .collect();
    lines.sort_unstable();
    lines.dedup();
    lines
}

/// Differences between Linux's and xdpgw's tables.
fn table_problems(
    name: &str,
    linux: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, block) in ours {
        match linux.get(table) {
            None => problems.push(format!(
                "{name}: xdpgw printed table {table}, which Linux does not have:\n{block}"
            )),
            Some(expected) if expected != block => problems.push(format!(
                "{name}: table {table} differs (- Linux, + xdpgw):\n{}",
                compact_diff(expected, block, 1)
            )),
            Some(_) => {}
        }
    }
    for (table, block) in linux.iter().filter(|(t, _)| !ours.contains_key(*t)) {
        problems.push(format!(
            "{name}: xdpgw did not print table {table}, which Linux has:\n{block}"
        ));
    }
    problems
}

/// Compares one file; returns a description of every difference.
///
/// When xdpgw rejects rules that Linux accepted, that is a problem; the
/// comparison then goes on without the rejected `-A` lines, so one rejected
/// rule does not hide the differences in the rest of the file.
fn compare(case: &Case) -> Vec<String> {
    let linux = linux_tables(case, &case.text);
    assert!(
        !linux.is_empty(),
        "{}: Linux printed no table after loading the file",
        case.name
    );
    let errors = match xdpgw_tables(case, &case.text) {
        Ok(ours) => return table_problems(&case.name, &linux, &ours),
        Err(Failure::Broken(why)) => return vec![format!("{}: {why}", case.name)],
        Err(Failure::Rejected(errors)) => errors,
    };
    let mut problems = vec![format!(
        "{}: xdpgw rejected what Linux accepts:\n{}",
        case.name,
        errors.trim_end()
    )];
    // Retry without the rejected rules, if they are all `-A` lines.
    let rejected = error_lines(&errors);
    let lines: Vec<&str> = case.text.lines().collect();
    let all_rules = !rejected.is_empty()
        && rejected.iter().all(|&n| {
            lines
                .get(n.wrapping_sub(1))
                .is_some_and(|l| corpus::rule_count(l) == 1)
        });
    if !matches!(case.kind, Kind::Restore) || !all_rules {
        return problems;
    }
    let reduced: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(i + 1)))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let linux = linux_tables(case, &reduced);
    let name = format!("{} (without lines {rejected:?})", case.name);
    match xdpgw_tables(case, &reduced) {
        Ok(ours) => problems.extend(table_problems(&name, &linux, &ours)),
        Err(Failure::Broken(why) | Failure::Rejected(why)) => {
            problems.push(format!("{name}: {why}"));
        }
    }
    problems
}

#[test]
fn xdpgw_save_equals_iptables_save() {
    if !require_root("save_matches_iptables") {
        return;
    }
    let mut cases = conf_cases(&workspace_dir().join("conf"));
    let from_conf = cases.len();
    let generated = generated_cases();
    assert!(!generated.is_empty(), "the generated corpus is empty");
    cases.extend(generated);

    let mut problems = Vec::new();
    let mut failed_files = 0;
    for case in &cases {
        let p = compare(case);
        if !p.is_empty() {
            failed_files += 1;
        }
        problems.extend(p);
    }
    assert!(
        problems.is_empty(),
        "{failed_files} of {} files ({from_conf} from conf/) differ between xdpgw and Linux; \
         {} problems:\n\n{}",
        cases.len(),
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn conf_cases_tolerates_missing_directory() {
    assert!(conf_cases(Path::new("/nonexistent/xdpgw/conf")).is_empty());
}

#[test]
fn error_lines_reads_file_line_column() {
    let errors = "a.rules:12:5: bad\nconf/x.rules:3:1: worse: really\na.rules:12:9: again\n";
    assert_eq!(error_lines(errors), vec![3, 12]);
    assert!(error_lines("no position here").is_empty());
}
