//! The xdpgw control plane: the iptables rule language (iptables-save files
//! and `iptables` command scripts), its validation, and canonical printing.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod lab;
pub mod labtool;
pub mod netdb;
pub mod parse;
pub mod run;
pub mod save;
pub mod service;
pub mod trace;

use std::path::Path;

pub use error::{RuleError, RuleErrorKind, RuleErrors};
use xdpgw_dataplane::rule::RuleSet;

/// Loads a rule file's text; `name` is what errors call the file.
pub fn load_rules_str(name: &str, text: &str) -> Result<RuleSet, RuleErrors> {
    parse::load_str(text).map_err(|e| e.in_file(name))
}

/// Loads a rule file (iptables-save form or a script of `iptables` lines).
pub fn load_rules(path: &Path) -> Result<RuleSet, RuleErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_rules_str(&name, &text),
        Err(e) => Err(RuleErrors(vec![RuleError {
            file: name,
            line: 0,
            column: 0,
            kind: RuleErrorKind::Io(e.to_string()),
        }])),
    }
}
