//! A rule file cut short while being written cannot open the firewall
//! (issue 13): the gateway lab of conf/gateway.toml runs conf/gateway.rules
//! (raw, mangle, nat, then a filter table whose FORWARD chain rejects SMTP
//! to the Internet and drops inbound connections), and is reloaded with
//! that file cut short three ways, the cut file written in place over the
//! configured one as an editor or a configuration tool does:
//!
//! 1. just after the nat table's COMMIT: a valid file without the filter
//!    table. Linux: `iptables-restore FILE` succeeds and leaves the filter
//!    table as it is; xdpgw: SIGHUP, the same.
//! 2. inside the filter table, after a complete line: iptables-restore says
//!    "COMMIT expected at line N" (having committed the tables before it,
//!    unchanged here); xdpgw: `xdpgw reload` refuses it at `FILE:N:1`.
//! 3. in the middle of a rule line (`... --dport 25` without its
//!    `-j REJECT`), as another file: the same, through `xdpgw reload
//!    --rules FILE`, with an error for the missing newline too.
//!
//! After each reload the rules in force are still those of the complete
//! file (the filter table's counters kept), SMTP to the server is still
//! refused and an allowed connection still works; at the end an inbound
//! connection is still dropped. The endpoints' observations through xdpgw
//! must equal those through Linux.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use xdpgw_control::config::Config;
use xdpgw_vm_tests::lab::{Backend, Lab, WorkDir};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_config, workspace_dir, xdpgw_binary};

/// conf/gateway.rules, whole.
fn full_rules() -> String {
    std::fs::read_to_string(workspace_dir().join("conf/gateway.rules")).expect("conf/gateway.rules")
}

/// The end of `find` in `text`; panics if it is not there (conf/gateway.rules
/// changed: adapt the test).
fn end_of(text: &str, from: usize, find: &str) -> usize {
    let at = text[from..]
        .find(find)
        .unwrap_or_else(|| panic!("conf/gateway.rules no longer has '{find}'"));
    from + at + find.len()
}

/// The three cuts of conf/gateway.rules.
struct Cuts {
    after_nat: String,
    mid_table: String,
    mid_line: String,
}

fn cuts() -> Cuts {
    let full = full_rules();
    let nat = end_of(&full, 0, "*nat\n");
    let filter = end_of(&full, nat, "*filter\n");
    Cuts {
        after_nat: full[..end_of(&full, nat, "COMMIT\n")].to_owned(),
        mid_table: full[..end_of(
            &full,
            filter,
            "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        )]
            .to_owned(),
        mid_line: full[..end_of(
            &full,
            filter,
            "-A FORWARD -i lan0 -o wan0 -p tcp --dport 25",
        )]
            .to_owned(),
    }
}

/// conf/gateway.rules in canonical save form: what iptables-save prints
/// after iptables-restore of it (without its `#` lines).
fn canonical_full() -> String {
    let set = xdpgw_control::load_rules_str("gateway.rules", &full_rules())
        .unwrap_or_else(|e| panic!("{e}"));
    xdpgw_control::save::render_with(&set, false)
}

/// The lab with its configuration and rules copied into `dir` (written
/// anew for each lab: the scenario overwrites the rules file).
fn lab_in(dir: &Path, backend: Backend) -> Lab {
    let conf = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("conf/gateway.toml");
    assert!(
        conf.contains("rules = \"gateway.rules\""),
        "conf/gateway.toml no longer names its rules file 'gateway.rules'"
    );
    let config = dir.join("gateway.toml");
    std::fs::write(&config, conf).expect("write the configuration");
    std::fs::write(dir.join("gateway.rules"), full_rules()).expect("write the rules");
    xdpgw_vm_tests::copy_rules6(dir);
    Lab::gateway_lab(&lab_config(backend, &config))
}

/// `xdpgw ARGS... --config CONFIG`, run to its end.
fn xdpgw(lab: &Lab, args: &[&str]) -> Output {
    Command::new(xdpgw_binary())
        .args(args)
        .arg("--config")
        .arg(lab.config_path())
        .output()
        .expect("run xdpgw")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How a reload ended, as both backends can say it.
#[derive(Debug, PartialEq)]
struct Reload {
    accepted: bool,
    /// The line at which COMMIT was expected, if that was the complaint.
    commit_expected_at: Option<u32>,
}

/// What the endpoints and the operator saw after one reload.
#[derive(Debug, PartialEq)]
struct Step {
    reload: Reload,
    /// The rules in force are those of the complete file.
    rules_unchanged: bool,
    /// client -> server:25: the filter table REJECTs it with a reset.
    smtp: String,
    /// client -> server:8080: allowed.
    web: String,
}

#[derive(Debug, PartialEq)]
struct Observed {
    after_nat: Step,
    /// Every filter counter after the first reload is at least what it was
    /// before (and they had counted something).
    filter_counters_kept: bool,
    mid_table: Step,
    mid_line: Step,
    /// server -> client:8080, NEW from wan0: dropped.
    inbound: String,
}

/// Linux: `iptables-restore FILE` in the gateway's namespace.
fn linux_restore(lab: &Lab, file: &Path) -> Reload {
    let out = lab
        .gateway()
        .exec(&["iptables-restore", &file.display().to_string()]);
    let err = text(&out.stderr);
    let commit_expected_at = err
        .lines()
        .find_map(|l| l.split_once("COMMIT expected at line ").map(|(_, n)| n))
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("line number in '{err}'"))
        });
    Reload {
        accepted: out.status.success(),
        commit_expected_at,
    }
}

/// xdpgw's answer to a refused reload: exit status 1, every error as
/// `FILE:LINE:COLUMN: ...`, the running rules kept; returns the errors as
/// (line, column, message).
fn xdpgw_refused(file: &Path, out: &Output) -> Vec<(u32, u32, String)> {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a refused reload:\n{err}");
    assert!(
        err.contains("the running rules stay in force"),
        "a refused reload:\n{err}"
    );
    let prefix = format!("{}:", file.display());
    let errors: Vec<(u32, u32, String)> = err
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| !l.contains("nothing loaded"))
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, ':').collect();
            match (f.first().map(|n| n.parse()), f.get(1).map(|n| n.parse())) {
                (Some(Ok(line)), Some(Ok(col))) if f.len() == 3 => {
                    (line, col, f[2].trim().to_owned())
                }
                _ => panic!("not FILE:LINE:COLUMN: MESSAGE: '{l}'\n{err}"),
            }
        })
        .collect();
    assert!(!errors.is_empty(), "no FILE:LINE:COLUMN error:\n{err}");
    errors
}

fn commit_expected_at(errors: &[(u32, u32, String)]) -> Option<u32> {
    errors
        .iter()
        .find(|(_, _, m)| m.starts_with("COMMIT expected"))
        .map(|&(line, col, _)| {
            assert_eq!(col, 1, "COMMIT is expected at the start of a line");
            line
        })
}

/// Probes after a reload.
fn step(lab: &Lab, reload: Reload) -> Step {
    let connect = |port: &str| {
        outcome(&lab.tool_result(
            lab.client(),
            &[
                "tcp-connect",
                &ip(xdpgw_vm_tests::lab::SERVER),
                port,
                "--timeout",
                OK_WAIT,
            ],
            TOOL_LIMIT,
        ))
    };
    let in_force = lab.rules_in_force(false, None);
    let rules_unchanged = in_force == canonical_full();
    if !rules_unchanged {
        eprintln!(
            "{:?}: the rules in force are not those of the complete file:\n{in_force}",
            lab.backend()
        );
    }
    Step {
        reload,
        rules_unchanged,
        smtp: connect("25"),
        web: connect("8080"),
    }
}

fn scenario(lab: &mut Lab) -> Observed {
    let cuts = cuts();
    let rules = Config::load(lab.config_path())
        .unwrap_or_else(|e| panic!("{e}"))
        .rules;
    let _smtp = lab.serve(lab.server(), &["tcp-serve", "25"]);
    let _web = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let _client = lab.serve(lab.client(), &["tcp-serve", "8080"]);
    let client = ip(xdpgw_vm_tests::lab::CLIENT);
    // Traffic for the filter counters to count.
    let first = lab.tool_result(
        lab.client(),
        &[
            "tcp-get",
            &ip(xdpgw_vm_tests::lab::SERVER),
            "8080",
            "10000",
            "--timeout",
            OK_WAIT,
        ],
        TOOL_LIMIT,
    );
    assert_eq!(outcome(&first), "ok bytes=10000");
    let before = lab.packet_counters(Some("filter"));

    // 1. Cut after the nat table's COMMIT, over the configured file.
    std::fs::write(&rules, &cuts.after_nat).expect("write the cut file");
    let reload = match lab.backend() {
        Backend::Linux => linux_restore(lab, &rules),
        Backend::Xdpgw => {
            let line = lab.sighup_gateway(Duration::from_secs(10));
            assert!(
                line.contains(&format!(
                    "xdpgw: reloaded {}: mangle, raw, nat replaced (5 rules); filter untouched",
                    rules.display()
                )),
                "{line}"
            );
            Reload {
                accepted: true,
                commit_expected_at: None,
            }
        }
    };
    let after_nat = step(lab, reload);
    let after = lab.packet_counters(Some("filter"));
    let filter_counters_kept = before.values().sum::<u64>() > 0
        && before.keys().eq(after.keys())
        && before.iter().all(|(k, &b)| after[k] >= b);
    if !filter_counters_kept {
        eprintln!("filter counters before {before:?}\nafter {after:?}");
    }

    // 2. Cut inside the filter table, over the configured file.
    std::fs::write(&rules, &cuts.mid_table).expect("write the cut file");
    let reload = match lab.backend() {
        Backend::Linux => linux_restore(lab, &rules),
        Backend::Xdpgw => {
            let errors = xdpgw_refused(&rules, &xdpgw(lab, &["reload"]));
            assert_eq!(errors.len(), 1, "{errors:?}");
            Reload {
                accepted: false,
                commit_expected_at: commit_expected_at(&errors),
            }
        }
    };
    let mid_table = step(lab, reload);

    // 3. Cut inside a rule line, as another file.
    let cut = rules.with_file_name("cut.rules");
    std::fs::write(&cut, &cuts.mid_line).expect("write the cut file");
    let reload = match lab.backend() {
        Backend::Linux => linux_restore(lab, &cut),
        Backend::Xdpgw => {
            let out = xdpgw(lab, &["reload", "--rules", &cut.display().to_string()]);
            let errors = xdpgw_refused(&cut, &out);
            let last = cuts.mid_line.lines().last().expect("a last line");
            assert!(
                errors.iter().any(|(l, c, m)| {
                    *l as usize == cuts.mid_line.lines().count()
                        && *c as usize == last.len() + 1
                        && m.starts_with("the last line has no newline")
                }),
                "{errors:?}"
            );
            Reload {
                accepted: false,
                commit_expected_at: commit_expected_at(&errors),
            }
        }
    };
    let mid_line = step(lab, reload);

    let inbound = outcome(&lab.tool_result(
        lab.server(),
        &["tcp-connect", &client, "8080", "--timeout", DROP_WAIT],
        TOOL_LIMIT,
    ));
    Observed {
        after_nat,
        filter_counters_kept,
        mid_table,
        mid_line,
        inbound,
    }
}

#[test]
fn a_rule_file_cut_short_does_not_open_the_firewall() {
    let dir = WorkDir::new("cutshort");
    let cuts = cuts();
    // iptables-restore expects COMMIT on the line after the last one.
    let commit_line = |t: &str| Some(t.lines().count() as u32 + 1);
    let (mid_table_at, mid_line_at) = (commit_line(&cuts.mid_table), commit_line(&cuts.mid_line));
    let dir_path: PathBuf = dir.path().to_owned();
    on_both_backends_in(
        "a_rule_file_cut_short_does_not_open_the_firewall",
        |backend| lab_in(&dir_path, backend),
        scenario,
        |o| {
            let kept = |reload: Reload| Step {
                reload,
                rules_unchanged: true,
                smtp: "refused".to_owned(),
                web: "connected".to_owned(),
            };
            assert_eq!(
                o.after_nat,
                kept(Reload {
                    accepted: true,
                    commit_expected_at: None
                })
            );
            assert!(o.filter_counters_kept, "{o:?}");
            assert_eq!(
                o.mid_table,
                kept(Reload {
                    accepted: false,
                    commit_expected_at: mid_table_at
                })
            );
            assert_eq!(
                o.mid_line,
                kept(Reload {
                    accepted: false,
                    commit_expected_at: mid_line_at
                })
            );
            assert_eq!(o.inbound, "timeout");
        },
    );
}
