//! The xdpgw control plane: the iptables rule language (iptables-save files
//! and `iptables` command scripts), its validation, and canonical printing.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod ipset;
pub mod link_watch;
pub mod nat_log;
pub mod netdb;
pub mod parse;
pub mod run;
pub mod save;
pub mod service;
pub mod state_file;
pub mod sync;
pub mod trace;

use std::path::{Path, PathBuf};

/// The source revision this binary was built from: 12 hex digits of the
/// commit, or `unknown` (`control/build.rs` says where it comes from).
pub const REVISION: &str = env!("XDPGW_REVISION");

/// What `xdpgw --version` prints after the name: the version and the
/// revision, e.g. `0.1.0 (60d39a2ff517)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("XDPGW_REVISION"), ")");

pub use error::{RuleError, RuleErrorKind, RuleErrors};
pub use parse::RuleFile;
use xdpgw_dataplane::ipset::SetTable;
use xdpgw_dataplane::rule::{Family, RuleSet};

/// Loads an ip6tables rule file's text (ip6tables-save form, or a script
/// of which the `ip6tables` lines count): its IPv6 rule set.
pub fn load_rules6_str(name: &str, text: &str) -> Result<RuleSet, RuleErrors> {
    parse::load_str6(text).map_err(|e| e.in_file(name))
}

/// Loads a rule file's text; `name` is what errors call the file.
pub fn load_rules_str(name: &str, text: &str) -> Result<RuleSet, RuleErrors> {
    parse::load_str(text).map_err(|e| e.in_file(name))
}

/// Loads a rule file's text that may hold `ipset` lines: the sets they make
/// (from none) and the rules.
pub fn load_sets_and_rules_str(name: &str, text: &str) -> Result<(SetTable, RuleSet), RuleErrors> {
    let file =
        parse::load_str_with_sets(text, &SetTable::default()).map_err(|e| e.in_file(name))?;
    let mut sets = SetTable::default();
    for l in &file.set_lines {
        ipset::apply(&mut sets, l, 0, &|_| false, &|_| 0).map_err(|e| {
            RuleErrors(vec![RuleError::at(
                l.at.0,
                l.at.1,
                RuleErrorKind::Semantic(e.to_string()),
            )])
            .in_file(name)
        })?;
    }
    Ok((sets, file.set))
}

/// Loads a rule file (iptables-save form or a script of `iptables` lines).
pub fn load_rules(path: &Path) -> Result<RuleSet, RuleErrors> {
    load_rule_file(path).map(|f| f.set)
}

/// Loads a rule file with the tables it names (what a reload replaces).
///
/// The file is read whole, and a file that does not end where a complete
/// one ends is refused ([`parse::ending_errors`], and a restore file whose
/// last table has no `COMMIT`): every command that reads a rule file
/// (`run`, `reload` and SIGHUP, `check`, `save`, `explain`) makes the same
/// checks.
pub fn load_rule_file(path: &Path) -> Result<RuleFile, RuleErrors> {
    load_rule_file_with_sets(path, &SetTable::default())
}

/// [`load_rule_file`] for a gateway whose IP sets are `sets`: the rules may
/// name them, and the file's `ipset` lines are checked against them.
pub fn load_rule_file_with_sets(path: &Path, sets: &SetTable) -> Result<RuleFile, RuleErrors> {
    let name = path.display().to_string();
    read_text(path)
        .and_then(|text| parse::load_file_text_with_sets(&text, sets))
        .map_err(|e| e.in_file(&name))
}

/// Loads a rule file whose restore form is of `family` (an ip6tables-save
/// file for IPv6; a script's lines say their family themselves).
pub fn load_rule_file_family(
    path: &Path,
    sets: &SetTable,
    family: Family,
) -> Result<RuleFile, RuleErrors> {
    let name = path.display().to_string();
    read_text(path)
        .and_then(|text| parse::load_file_text_family(&text, sets, family))
        .map_err(|e| e.in_file(&name))
}

/// Loads an `ipset save` file (`ipsets` in the configuration) into a set
/// table, as `ipset restore` does, refusing all of it on any error.
pub fn load_ipsets(path: &Path) -> Result<SetTable, RuleErrors> {
    let name = path.display().to_string();
    read_text(path)
        .and_then(|text| ipset::restore(&SetTable::default(), &text, 0).map(|(t, _)| t))
        .map_err(|e| e.in_file(&name))
}

/// The sets of a configuration's `ipsets` file, then its rule file's
/// `ipset` lines applied to them, and its rules (`xdpgw run`).
pub fn load_sets_and_rules(
    ipsets: Option<&Path>,
    rules: &Path,
) -> Result<(SetTable, RuleSet), (PathBuf, RuleErrors)> {
    load_sets_and_rule_file(ipsets, rules, Family::Ipv4).map(|(sets, f)| (sets, f.set))
}

/// [`load_sets_and_rules`] with the whole rule file (its IPv6 rules too),
/// read as a file of `family`'s restore form.
pub fn load_sets_and_rule_file(
    ipsets: Option<&Path>,
    rules: &Path,
    family: Family,
) -> Result<(SetTable, RuleFile), (PathBuf, RuleErrors)> {
    let mut sets = match ipsets {
        Some(p) => load_ipsets(p).map_err(|e| (p.to_path_buf(), e))?,
        None => SetTable::default(),
    };
    let file = load_rule_file_family(rules, &sets, family).map_err(|e| (rules.to_path_buf(), e))?;
    for l in &file.set_lines {
        // Checked by the parse against the same sets: cannot fail.
        if let Err(e) = ipset::apply(&mut sets, l, 0, &|_| false, &|_| 0) {
            let err = RuleError::at(l.at.0, l.at.1, RuleErrorKind::Semantic(e.to_string()));
            return Err((
                rules.to_path_buf(),
                RuleErrors(vec![err]).in_file(&rules.display().to_string()),
            ));
        }
    }
    Ok((sets, file))
}

fn read_text(path: &Path) -> Result<String, RuleErrors> {
    let error = |line, column, kind| RuleErrors(vec![RuleError::at(line, column, kind)]);
    let text = std::fs::read(path)
        .map_err(|e| error(0, 0, RuleErrorKind::Io(e.to_string())))
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                // Where the text stops being UTF-8 (a write cut inside a
                // multi-byte character of a comment, say).
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let valid = std::str::from_utf8(valid).unwrap_or_default();
                let line = valid.matches('\n').count() as u32 + 1;
                let column = valid.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
                error(
                    line,
                    column,
                    RuleErrorKind::Syntax(
                        "not UTF-8 text: this is not a rule file, or it was not completely \
                         written"
                            .into(),
                    ),
                )
            })
        });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_file_is_read_whole_and_must_be_complete() {
        let dir = xdpgw_lab::WorkDir::new("loadfile");
        let path = dir.path().join("r.rules");
        let name = path.display().to_string();
        let write = |bytes: &[u8]| std::fs::write(&path, bytes).expect("write");
        write(b"*filter\n:FORWARD DROP [0:0]\nCOMMIT\n");
        let f = load_rule_file(&path).expect("complete");
        assert_eq!(f.tables, [xdpgw_dataplane::rule::Table::Filter]);
        // Cut without its last newline: refused, naming file:line:column.
        write(b"*filter\n:FORWARD DROP [0:0]\nCOMMIT");
        let e = load_rules(&path).expect_err("cut").to_string();
        assert!(
            e.starts_with(&format!("{name}:3:7: the last line has no newline")),
            "{e}"
        );
        // Cut inside a multi-byte character of a comment.
        write(&b"*filter\n# caf\xc3"[..]);
        let e = load_rules(&path).expect_err("not UTF-8").to_string();
        assert_eq!(
            e,
            format!(
                "{name}:2:6: not UTF-8 text: this is not a rule file, or it was not completely \
                 written"
            )
        );
        // A file that is not there: the I/O error, at 0:0.
        let e = load_rules(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(e.0[0].kind, RuleErrorKind::Io(_)), "{e}");
    }
}
