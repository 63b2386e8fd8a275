//! Every file of the generated corpus loads into Linux with iptables-restore.
//!
//! This keeps the corpus honest: the oracle test compares xdpgw with Linux
//! only on rules that Linux accepts.

use xdpgw_vm_tests::{corpus, require_root, split_save, Netns};

#[test]
fn every_generated_file_loads_with_iptables_restore() {
    if !require_root("corpus_loads") {
        return;
    }
    let files = corpus::generated();
    assert!(!files.is_empty(), "the generated corpus is empty");
    let mut failures = Vec::new();
    for (name, text) in &files {
        let ns = Netns::new("load");
        ns.exec_stdin_ok(&["ipset", "restore"], corpus::IPSETS);
        let out = ns.exec_stdin(&["iptables-restore"], text);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // iptables-restore names the line it failed on; show it.
            let context = error_line(&stderr)
                .and_then(|n| text.lines().nth(n.wrapping_sub(1)))
                .unwrap_or("");
            failures.push(format!(
                "{name}: iptables-restore failed ({}): {}\n    {context}",
                out.status,
                stderr.trim()
            ));
            continue;
        }
        // What was loaded is what the file declared: the same tables, and as
        // many rules as the file has.
        let saved = ns.exec_ok(&["iptables-save"]);
        let tables = split_save(&saved);
        let declared: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix('*')).collect();
        let mut declared_sorted: Vec<&str> = declared.clone();
        declared_sorted.sort_unstable();
        let saved_tables: Vec<&str> = tables.keys().map(String::as_str).collect();
        assert_eq!(
            saved_tables, declared_sorted,
            "{name}: tables after loading"
        );
        let saved_rules: usize = tables.values().map(|b| corpus::rule_count(b)).sum();
        assert_eq!(
            saved_rules,
            corpus::rule_count(text),
            "{name}: rules after loading\n{saved}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} generated files do not load:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The line number in iptables-restore's error message: `line 4: ...` or
/// `Error occurred at line: 44`.
fn error_line(stderr: &str) -> Option<usize> {
    let rest = stderr.split("line").nth(1)?;
    let digits: String = rest
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn the_corpus_has_set_matches_of_every_set() {
    let files = corpus::generated();
    let sets = files
        .iter()
        .find(|(n, _)| n == "gen-filter-sets")
        .map(|(_, t)| t.as_str())
        .expect("gen-filter-sets");
    for name in ["cbl", "csvc", "cnets", "cports", "clist"] {
        assert!(
            sets.contains(&format!("--match-set {name} ")),
            "no rule names {name}"
        );
    }
    for opt in [
        "! --match-set",
        "--return-nomatch",
        "! --update-counters",
        "--packets-",
        "--bytes-",
    ] {
        assert!(sets.contains(opt), "no rule has {opt}");
    }
    assert!(corpus::rule_count(sets) >= 60);
}
