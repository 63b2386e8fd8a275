//! `xdpgw`: the command-line interface of the xdpgw gateway.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xdpgw_control::{demo, labtool, load_rules, run, save};

/// xdpgw: a userspace IPv4 router/NAT gateway over AF_XDP that runs
/// iptables rule sets (raw, mangle, nat, filter).
///
/// Rule files are iptables-save output (`iptables-save > gateway.rules`) or
/// scripts of `iptables ...` command lines, one per line.
#[derive(Parser)]
#[command(name = "xdpgw", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check rule files: print a summary per table, or every error found as
    /// FILE:LINE:COLUMN: MESSAGE (exit status 1).
    Check {
        /// Rule files (iptables-save form or iptables command scripts).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print a rule file in canonical iptables-save form: byte for byte what
    /// Linux's iptables-save prints after iptables-restore of the same rules
    /// (without its '#' header and footer lines).
    Save {
        /// The rule file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print chain and rule counters, as `iptables-save -c` does (from
        /// the file; live counters come with a running gateway).
        #[arg(short = 'c', long = "counters")]
        counters: bool,
    },
    /// Run the gateway: take over the configuration's interfaces with
    /// AF_XDP, load its rules, forward. Prints a line starting with `ready`
    /// when every interface forwards; SIGINT/SIGTERM stop it (detaching its
    /// XDP programs), SIGHUP reloads the rules.
    Run {
        /// The appliance configuration (TOML), e.g. conf/gateway.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// When stopping, print to stderr what the gateway did: per-worker
        /// counters and drop reasons, the conntrack table (in the
        /// /proc/net/nf_conntrack format) and the rules with their counters
        /// (in `iptables-save -c` form).
        #[arg(long)]
        report_on_exit: bool,
    },
    /// Build a throw-away lab (client, gateway, server in network
    /// namespaces), run the gateway with conf/gateway.toml, drive real
    /// traffic through it and report what happened; cleans up, also on
    /// Ctrl-C. Needs root.
    Demo {
        /// The configuration to run (its rules file is next to it).
        #[arg(long, value_name = "FILE", default_value = "conf/gateway.toml")]
        config: PathBuf,
    },
    /// Traffic tools the lab runs inside its namespaces (servers and
    /// clients that report what they saw). Used by `xdpgw demo` and the tests.
    #[command(hide = true)]
    LabTool {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Run {
            config,
            report_on_exit,
        } => run::main(&config, report_on_exit),
        Command::Demo { config } => demo::main(&config),
        Command::LabTool { args } => labtool::main(&args),
        Command::Save { file, counters } => match load_rules(&file) {
            Ok(set) => {
                print!("{}", save::render_with(&set, counters));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        match load_rules(f) {
            Ok(set) => {
                for t in &set.tables {
                    let user = t.chains.iter().filter(|c| c.hook.is_none()).count();
                    println!(
                        "{}: table {}: {} chains ({} built-in, {} user), {} rule{}",
                        f.display(),
                        t.table.name(),
                        t.chains.len(),
                        t.chains.len() - user,
                        user,
                        t.rule_count(),
                        if t.rule_count() == 1 { "" } else { "s" }
                    );
                }
                if set.tables.is_empty() {
                    println!("{}: no tables", f.display());
                }
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: {} error{}; nothing loaded",
                    f.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
