//! `xdpgw`: the command-line interface of the xdpgw gateway.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use xdpgw_control::api::{self, Request};
use xdpgw_control::{demo, doctor, run, save};
use xdpgw_dataplane::rule::Family;

mod generate;

/// xdpgw: a userspace IPv4 router/NAT gateway over AF_XDP that runs
/// iptables rule sets (raw, mangle, nat, filter).
///
/// Rule files are iptables-save output (`iptables-save > gateway.rules`) or
/// scripts of `iptables ...` command lines, one per line.
#[derive(Parser)]
#[command(name = "xdpgw", version = xdpgw_control::VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check rule files: print a summary per table, or every error found as
    /// FILE:LINE:COLUMN: MESSAGE (exit status 1). A FILE ending in `.toml` is
    /// checked as a gateway configuration, with the rule file it names.
    Check {
        /// Rule files (iptables-save form or iptables command scripts), or
        /// configuration files (`*.toml`).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// An `ipset save` file of the sets the rules name (a
        /// configuration's own `ipsets` is used for a `*.toml`).
        #[arg(long, value_name = "FILE")]
        ipsets: Option<PathBuf>,
        /// The files are ip6tables rules (ip6tables-save form; a script's
        /// `iptables` and `ip6tables` lines are checked either way).
        #[arg(short = '6', long = "ipv6")]
        ipv6: bool,
    },
    /// Print a rule file in canonical iptables-save form: byte for byte what
    /// Linux's iptables-save prints after iptables-restore of the same rules
    /// (without its '#' header and footer lines).
    ///
    /// Without FILE, prints the running gateway's rules (found with
    /// --config or --socket), with their live counters under -c.
    Save {
        /// The rule file; without it, the running gateway's rules.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print chain and rule counters, as `iptables-save -c` does (from
        /// the file, or live from the running gateway).
        #[arg(short = 'c', long = "counters")]
        counters: bool,
        /// Only this table (running gateway).
        #[arg(short = 't', long = "table", value_name = "TABLE")]
        table: Option<String>,
        /// With FILE: an `ipset save` file of the sets its rules name.
        #[arg(long, value_name = "FILE")]
        ipsets: Option<PathBuf>,
        /// The IPv6 rules, as `ip6tables-save` prints them: FILE is an
        /// ip6tables-save file, or a script whose `ip6tables` lines count.
        #[arg(short = '6', long = "ipv6")]
        ipv6: bool,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Reload the running gateway's rules: parse, check and compile the
    /// file away from the workers, then switch to it at once.
    ///
    /// As with iptables-restore, the tables the file names (its `*table`
    /// blocks; for a script of `iptables` lines, the tables its commands
    /// name) are replaced, and the others keep running as they are, rules
    /// and counters. Connections, NAT bindings and the counters of unchanged
    /// rules are kept. A file with errors, or one that does not end as a
    /// complete file ends (a last table without COMMIT, a last line without
    /// its newline), is refused (each error as FILE:LINE:COLUMN) and the
    /// running rules stay in force: exit status 1.
    Reload {
        /// The rules to load (default: the configuration's `rules` file).
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Replace every table: the tables the file does not name become
        /// empty (their chains accept everything).
        #[arg(long)]
        replace_all: bool,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// List the running gateway's rules in the layout of `iptables -L`, with
    /// live counters under -v (with -6, its IPv6 rules as `ip6tables -L`
    /// lists them).
    List {
        /// The table (default: filter).
        #[arg(
            short = 't',
            long = "table",
            value_name = "TABLE",
            default_value = "filter"
        )]
        table: String,
        /// Show counters, interfaces and policy counters.
        #[arg(short = 'v', long = "verbose")]
        verbose: bool,
        /// Numeric addresses, ports and protocols.
        #[arg(short = 'n', long = "numeric")]
        numeric: bool,
        /// Exact counter values (no K/M/G).
        #[arg(short = 'x', long = "exact")]
        exact: bool,
        /// Number the rules.
        #[arg(long = "line-numbers")]
        line_numbers: bool,
        /// The IPv6 rules (the configuration's `rules6`), in the layout of
        /// `ip6tables -L`.
        #[arg(short = '6', long = "ipv6")]
        ipv6: bool,
        /// Only this chain.
        #[arg(value_name = "CHAIN")]
        chain: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Reset the running gateway's rule and policy counters (every table,
    /// or the one given with -t; every chain, or the one given).
    Zero {
        #[arg(short = 't', long = "table", value_name = "TABLE")]
        table: Option<String>,
        #[arg(value_name = "CHAIN")]
        chain: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Per interface and worker: packets received, sent, and dropped by
    /// reason, with rates (packets per second) from two samples taken an
    /// interval apart (1 s, or SECS with --watch); the conntrack table's
    /// entries of its maximum and new connections per second.
    Stats {
        /// Redraw every SECS seconds (default 1) until interrupted.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// The running gateway's counters in the Prometheus text format (what
    /// `metrics_listen` serves on GET /metrics).
    Metrics {
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// The running gateway's IP sets, as ipset 7.17 changes and prints
    /// them: add, del, test, list, save, flush, swap, create, destroy
    /// (`xdpgw ipset add blocklist 10.0.0.0/8`, `-exist`). Changes take
    /// effect at the workers' next batch, without a reload.
    Ipset {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The ipset command and its arguments.
        #[arg(
            value_name = "COMMAND",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        words: Vec<String>,
    },
    /// The running gateway's connection tracking table: -L lists entries in
    /// the /proc/net/nf_conntrack format, -D deletes the matching ones, -F
    /// flushes, -C counts, -S prints statistics (one line per worker), -E
    /// shows events (NEW, UPDATE, DESTROY) as they happen, until Ctrl-C.
    #[command(group(clap::ArgGroup::new("action").required(true).args(["dump", "delete", "flush", "count", "stats", "event"])))]
    Conntrack {
        /// List entries.
        #[arg(short = 'L', long = "dump")]
        dump: bool,
        /// Delete matching entries.
        #[arg(short = 'D', long = "delete")]
        delete: bool,
        /// Delete every entry.
        #[arg(short = 'F', long = "flush")]
        flush: bool,
        /// Count (matching) entries.
        #[arg(short = 'C', long = "count")]
        count: bool,
        /// Statistics per worker, as `conntrack -S` per CPU, then INVALID
        /// packets per worker and reason, then the table's counters.
        #[arg(short = 'S', long = "stats")]
        stats: bool,
        /// Show events as `conntrack -E` does (with -p/-s/-d/--state as
        /// filters), until Ctrl-C.
        #[arg(short = 'E', long = "event")]
        event: bool,
        /// Protocol (tcp, udp, icmp, a number).
        #[arg(short = 'p', long = "proto", value_name = "PROTO")]
        proto: Option<String>,
        /// Source address of the original direction.
        #[arg(short = 's', long = "src", alias = "orig-src", value_name = "ADDR")]
        src: Option<String>,
        /// Destination address of the original direction.
        #[arg(short = 'd', long = "dst", alias = "orig-dst", value_name = "ADDR")]
        dst: Option<String>,
        /// TCP state (e.g. ESTABLISHED, TIME_WAIT).
        #[arg(long = "state", value_name = "STATE")]
        state: Option<String>,
        /// Only this family's connections (ipv4, ipv6); both by default.
        #[arg(short = 'f', long = "family", value_name = "FAMILY")]
        family: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Conntrack state sync with the peer gateway (`[sync]`): commit, flush,
    /// resync, bulk, stats, dump-external.
    ///
    /// As conntrackd's options do it, for a keepalived notify script:
    /// `commit` (conntrackd -c) puts the entries the peer sent in the live
    /// table with their NAT; `flush` (-f) empties that external cache;
    /// `resync` (-n) asks the peer for its whole table; `bulk` (-B) sends
    /// this gateway's; `stats` (-s); `dump-external` (-e) lists the
    /// external cache in the /proc/net/nf_conntrack format.
    Sync {
        #[arg(value_parser = ["commit", "flush", "resync", "bulk", "stats", "dump-external"])]
        action: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Follow the next packets matching MATCH through the running gateway:
    /// each table, chain and rule they pass (rules as iptables-save prints
    /// them), their conntrack state and why (e.g. INVALID and the reason),
    /// the NAT applied and the verdict. Ends after --count packets or on
    /// Ctrl-C.
    ///
    /// MATCH is iptables match syntax, e.g. `-p tcp -s 192.168.10.2 --dport
    /// 80` or `-i lan0 -o wan0 -m conntrack --ctstate INVALID` (checked on
    /// the packet as it arrived, with its conntrack state and output
    /// interface); none: every packet. With -6 or an IPv6 address it is an
    /// ip6tables match for IPv6 packets (`-p ipv6-icmp --icmpv6-type
    /// echo-request`), with -4 or an IPv4 address an iptables match for
    /// IPv4 ones; a match that reads as both traces both families.
    /// --count, --config and --socket may stand anywhere.
    Trace {
        /// Packets to trace, then stop (1-10000).
        #[arg(long, value_name = "N", default_value_t = xdpgw_control::trace::DEFAULT_COUNT)]
        count: u32,
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The packets to trace, in iptables match syntax.
        #[arg(
            value_name = "MATCH",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        words: Vec<String>,
    },
    /// What the gateway would do with a described packet, offline and
    /// without root: the same text as `xdpgw trace` prints, from the real
    /// pipeline of a gateway built from the configuration (interfaces,
    /// addresses, routes) and its rules (or --rules).
    ///
    /// The packet is described in iptables match syntax: -i IFACE, -s ADDR,
    /// -d ADDR, -p PROTO, for TCP/UDP --dport PORT [--sport PORT] (default
    /// 40000), for TCP [--tcp-flags MASK COMP | --syn] (default SYN, or ACK
    /// for ESTABLISHED), for ICMP [--icmp-type TYPE] (default
    /// echo-request), [-m dscp --dscp N]. --state ESTABLISHED or INVALID
    /// first opens the connection through the same gateway (the first
    /// packet, its answer and for TCP the handshake's ACK) and says so;
    /// NEW (the default) starts from an empty conntrack table. With IPv6
    /// addresses (or -6) the packet is an IPv6 one, described in ip6tables
    /// syntax (-p ipv6-icmp [--icmpv6-type TYPE]) and run against the
    /// configuration's rules6 (or --rules, read as an ip6tables file).
    /// --config, --rules and --state may stand anywhere.
    Explain {
        /// The appliance configuration (TOML): interfaces, addresses,
        /// routes, and the rules unless --rules is given.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The rules to use instead of the configuration's.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// The packet, in iptables match syntax (and --state NEW|ESTABLISHED|INVALID).
        #[arg(
            value_name = "PACKET",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        words: Vec<String>,
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
        /// The configuration to run (lan0 192.168.10.1/24, wan0
        /// 203.0.113.1/24, as the lab is addressed). Default:
        /// conf/gateway.toml when run from the repository, else the same
        /// example built into the binary.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// What forwards: xdpgw, or the Linux kernel with the same
        /// addresses, routes and rules (for comparison).
        #[arg(long, value_enum, default_value = "xdpgw")]
        backend: demo::DemoBackend,
    },
    /// What each interface supports (driver, MTU, queues and channels,
    /// native XDP, AF_XDP zero-copy, offloads, XDP programs already
    /// attached) and what `xdpgw run` would use, as its `ready` line says
    /// it. Attaches the XDP program and binds a socket briefly (needs the
    /// privileges of `xdpgw run`), and leaves nothing attached. Exit status
    /// 1 if an interface cannot be used, with the reason.
    Doctor {
        /// The interfaces, as named by the configuration's interface tables.
        #[arg(required = true, value_name = "IFACE")]
        ifaces: Vec<String>,
        /// The XDP mode the verdict is for (the configuration's xdp_mode).
        #[arg(long, value_enum, default_value = "auto")]
        xdp_mode: doctor::XdpModeArg,
        /// The zero-copy setting the verdict is for (the configuration's
        /// zero_copy).
        #[arg(long, value_enum, default_value = "auto")]
        zero_copy: doctor::ZeroCopyArg,
    },
    /// Write the man pages (xdpgw(8), xdpgw-SUBCOMMAND(8)) and the bash,
    /// zsh and fish completions, all made from this command line's own
    /// definitions, under DIR: DIR/man8/, DIR/completions/. The package
    /// build runs it; hidden from help.
    #[command(hide = true)]
    Generate {
        /// Where to write them (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// How a command finds the running gateway.
#[derive(Args)]
struct GatewayArgs {
    /// The gateway's configuration: its `control_socket` is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The control socket (overrides --config; default /run/xdpgw.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl GatewayArgs {
    fn call(&self, req: &Request) -> ExitCode {
        match api::socket_path(self.socket.as_deref(), self.config.as_deref()) {
            Ok(path) => api::run_command(&path, req),
            Err(e) => {
                eprintln!("xdpgw: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// `conntrack -E`: events until Ctrl-C, then how many were shown (as
    /// conntrack-tools says it).
    fn events(&self, req: &Request) -> ExitCode {
        let path = match api::socket_path(self.socket.as_deref(), self.config.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("xdpgw: {e}");
                return ExitCode::FAILURE;
            }
        };
        let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, std::sync::Arc::clone(&interrupted)) {
                eprintln!("xdpgw: signal handler: {e}");
                return ExitCode::FAILURE;
            }
        }
        match api::events::follow(&path, req, &interrupted) {
            Ok((n, interrupted)) => {
                eprintln!("xdpgw: {n} flow events have been shown.");
                if !interrupted {
                    eprintln!("xdpgw: the gateway stopped");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xdpgw: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// `stats [--watch SECS]`: two samples an interval apart, printed with
    /// rates; with --watch, again every interval until interrupted.
    fn stats(&self, watch: Option<f64>) -> ExitCode {
        let fail = |e: &dyn std::fmt::Display| {
            eprintln!("xdpgw: {e}");
            ExitCode::FAILURE
        };
        let secs = watch.unwrap_or(1.0);
        if !(secs.is_finite() && (0.1..=86400.0).contains(&secs)) {
            return fail(&format!(
                "bad --watch interval {secs}: seconds, 0.1 to 86400"
            ));
        }
        let path = match api::socket_path(self.socket.as_deref(), self.config.as_deref()) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        };
        // A connection per sample: the gateway closes one that sends no
        // request for 30 s, and an interval may be longer.
        let sample = || -> anyhow::Result<api::stats::Sample> {
            let r = api::Client::connect(&path)?.call(&Request::new("stats-sample"))?;
            if !r.ok {
                anyhow::bail!(r.message);
            }
            Ok(api::stats::Sample::parse(&r.body)?)
        };
        let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let mut before = match sample() {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        loop {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            let now = match sample() {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            let text = api::stats::render(&before, &now);
            if watch.is_none() {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            let mut out = std::io::stdout().lock();
            if tty {
                // Home and clear, as watch(1) redraws.
                let _ = write!(out, "\x1b[H\x1b[2J");
            }
            let _ = write!(
                out,
                "xdpgw stats, every {secs} s (Ctrl-C to stop)\n{text}\n"
            );
            let _ = out.flush();
            before = now;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate { dir } => match generate::write_all(Cli::command(), &dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xdpgw generate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check {
            files,
            ipsets,
            ipv6,
        } => check(&files, ipsets.as_deref(), ipv6),
        Command::Run {
            config,
            report_on_exit,
        } => run::main(&config, report_on_exit),
        Command::Demo { config, backend } => demo::main(config.as_deref(), backend),
        Command::Doctor {
            ifaces,
            xdp_mode,
            zero_copy,
        } => doctor::main(&ifaces, xdp_mode, zero_copy),
        Command::Save {
            file: Some(file),
            counters,
            ipsets,
            ipv6,
            ..
        } => match xdpgw_control::load_sets_and_rule_file(ipsets.as_deref(), &file, family(ipv6)) {
            Ok((_, f)) if ipv6 => {
                print!("{}", save::render_family(&f.set6, Family::Ipv6, counters));
                ExitCode::SUCCESS
            }
            Ok((_, f)) => {
                print!("{}", save::render_with(&f.set, counters));
                ExitCode::SUCCESS
            }
            Err((_, errors)) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Save {
            file: None,
            counters,
            table,
            gateway,
            ipv6,
            ..
        } => gateway.call(
            &Request::new("save")
                .flag("counters", counters)
                .flag("ipv6", ipv6)
                .opt("table", table),
        ),
        Command::Reload {
            rules,
            replace_all,
            gateway,
        } => {
            // The gateway runs elsewhere: send it an absolute path.
            let rules = rules.map(|r| std::path::absolute(&r).unwrap_or(r));
            gateway.call(
                &Request::new("reload")
                    .opt("file", rules.map(|r| r.display().to_string()))
                    .flag("replace_all", replace_all),
            )
        }
        Command::List {
            table,
            verbose,
            numeric,
            exact,
            line_numbers,
            ipv6,
            chain,
            gateway,
        } => gateway.call(
            &Request::new("list")
                .arg("table", table)
                .flag("verbose", verbose)
                .flag("numeric", numeric)
                .flag("exact", exact)
                .flag("line_numbers", line_numbers)
                .flag("ipv6", ipv6)
                .opt("chain", chain),
        ),
        Command::Zero {
            table,
            chain,
            gateway,
        } => gateway.call(&Request::new("zero").opt("table", table).opt("chain", chain)),
        Command::Stats { watch, gateway } => gateway.stats(watch),
        Command::Metrics { gateway } => gateway.call(&Request::new("metrics")),
        Command::Ipset { gateway, words } => {
            match api::socket_path(gateway.socket.as_deref(), gateway.config.as_deref()) {
                Ok(path) => api::ipset::run(&path, &api::ipset::request(&words)),
                Err(e) => {
                    eprintln!("xdpgw: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Conntrack {
            event: true,
            proto,
            src,
            dst,
            state,
            family,
            gateway,
            ..
        } => gateway.events(
            &Request::new("ct-events")
                .opt("proto", proto)
                .opt("src", src)
                .opt("dst", dst)
                .opt("state", state)
                .opt("family", family),
        ),
        Command::Sync { action, gateway } => {
            let command = match action.as_str() {
                "dump-external" => "sync-external".to_string(),
                a => format!("sync-{a}"),
            };
            gateway.call(&Request::new(&command))
        }
        Command::Trace {
            count,
            gateway,
            words,
        } => trace(count, gateway, words),
        Command::Explain {
            config,
            rules,
            words,
        } => explain(config, rules, words),
        Command::Conntrack {
            dump: _,
            delete,
            flush,
            count,
            stats,
            event: _,
            proto,
            src,
            dst,
            state,
            family,
            gateway,
        } => {
            let command = if delete {
                "ct-delete"
            } else if flush {
                "ct-flush"
            } else if count {
                "ct-count"
            } else if stats {
                "ct-stats"
            } else {
                "ct-list"
            };
            gateway.call(
                &Request::new(command)
                    .opt("proto", proto)
                    .opt("src", src)
                    .opt("dst", dst)
                    .opt("state", state)
                    .opt("family", family),
            )
        }
    }
}

/// An option of `trace`/`explain` given among the match words, wrong.
#[derive(Debug, thiserror::Error)]
enum OptionError {
    #[error("option {0} needs a value")]
    NeedsValue(&'static str),
    #[error("bad value '{value}' for {name}: {want}")]
    BadValue {
        name: &'static str,
        value: String,
        want: &'static str,
    },
}

/// Takes `--NAME VALUE` (or `--NAME=VALUE`) out of `words`, wherever it
/// stands; the last one counts. `want` says what a value must be.
fn take_option<T: std::str::FromStr>(
    words: &mut Vec<String>,
    name: &'static str,
    want: &'static str,
) -> Result<Option<T>, OptionError> {
    let mut found = None;
    let mut i = 0;
    while i < words.len() {
        if words[i] == name {
            if i + 1 >= words.len() {
                return Err(OptionError::NeedsValue(name));
            }
            found = Some(words.remove(i + 1));
            words.remove(i);
        } else if let Some(v) = words[i].strip_prefix(&format!("{name}=")) {
            found = Some(v.to_string());
            words.remove(i);
        } else {
            i += 1;
        }
    }
    found
        .map(|value| {
            value
                .parse()
                .map_err(|_| OptionError::BadValue { name, value, want })
        })
        .transpose()
}

fn trace(count: u32, mut gateway: GatewayArgs, mut words: Vec<String>) -> ExitCode {
    let taken = (|| -> Result<Option<u32>, OptionError> {
        if let Some(c) = take_option(&mut words, "--config", "a file")? {
            gateway.config = Some(c);
        }
        if let Some(s) = take_option(&mut words, "--socket", "a socket path")? {
            gateway.socket = Some(s);
        }
        take_option(&mut words, "--count", "a number of packets")
    })();
    let count = match taken {
        Ok(c) => c.unwrap_or(count),
        Err(e) => {
            eprintln!("xdpgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    if count == 0 || count > xdpgw_dataplane::trace::MAX_COUNT {
        eprintln!(
            "xdpgw: bad value '{count}' for --count: 1-{}",
            xdpgw_dataplane::trace::MAX_COUNT
        );
        return ExitCode::FAILURE;
    }
    // The same syntax and errors as the gateway will apply: checked here
    // first, without a round trip.
    if let Err(e) = xdpgw_control::trace::parse_match_families(&words) {
        eprintln!("xdpgw: trace MATCH {e}");
        return ExitCode::FAILURE;
    }
    let path = match api::socket_path(gateway.socket.as_deref(), gateway.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xdpgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut req = Request::new("trace").arg("count", count.to_string());
    for w in words {
        req = req.arg("word", w);
    }
    let result = api::Client::connect(&path).and_then(|mut c| {
        c.stream(&req, |line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(api::ClientError::Refused { message, body }) => {
            for l in body {
                eprintln!("{l}");
            }
            eprintln!("xdpgw: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xdpgw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(config: Option<PathBuf>, rules: Option<PathBuf>, mut words: Vec<String>) -> ExitCode {
    let result = (|| -> anyhow::Result<xdpgw_control::explain::Report> {
        let config = match take_option(&mut words, "--config", "a file")? {
            Some(c) => c,
            None => config.ok_or_else(|| {
                anyhow::anyhow!(
                    "explain needs --config FILE.toml: the gateway's interfaces, addresses and \
                     routes"
                )
            })?,
        };
        let rules = take_option(&mut words, "--rules", "a file")?.or(rules);
        let xdpgw_control::explain::ExplainWords { state, words } =
            xdpgw_control::explain::split_state(&words)?;
        let state = state
            .map(|s| xdpgw_control::explain::PrepState::parse(&s))
            .transpose()?;
        let cfg = xdpgw_control::config::Config::load(&config)?;
        if xdpgw_control::explain::packet_family(&words) == Family::Ipv6 {
            // An IPv6 packet meets the IPv6 rules: `rules6`, or --rules
            // read as an ip6tables file.
            let (sets, set) = xdpgw_control::load_sets_and_rules(cfg.ipsets.as_deref(), &cfg.rules)
                .map_err(|(file, e)| anyhow::anyhow!("{e}\n{}: nothing loaded", file.display()))?;
            let set6 = match rules.or_else(|| cfg.rules6.clone()) {
                Some(f) => {
                    xdpgw_control::load_rule_file_family(&f, &Default::default(), Family::Ipv6)
                        .map_err(|e| anyhow::anyhow!("{e}\n{}: nothing loaded", f.display()))?
                        .set6
                }
                None => Default::default(),
            };
            return Ok(xdpgw_control::explain::explain6(
                &cfg,
                sets,
                (set, set6),
                &words,
                state,
            )?);
        }
        let file = rules.unwrap_or_else(|| cfg.rules.clone());
        let (sets, set) = xdpgw_control::load_sets_and_rules(cfg.ipsets.as_deref(), &file)
            .map_err(|(file, e)| {
                anyhow::anyhow!(
                    "{e}\n{}: {} error{}; nothing loaded",
                    file.display(),
                    e.len(),
                    if e.len() == 1 { "" } else { "s" }
                )
            })?;
        Ok(xdpgw_control::explain::explain_with_sets(
            &cfg, sets, set, &words, state,
        )?)
    })();
    match result {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for l in lines {
                if writeln!(out, "{l}").is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpgw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn family(ipv6: bool) -> Family {
    if ipv6 {
        Family::Ipv6
    } else {
        Family::Ipv4
    }
}

/// `check`'s summary of one rule set's tables (`label`: the family's, for
/// the IPv6 tables).
fn summarise(f: &std::path::Path, set: &xdpgw_dataplane::rule::RuleSet, label: &str) {
    for t in &set.tables {
        let user = t.chains.iter().filter(|c| c.hook.is_none()).count();
        println!(
            "{}: {label}table {}: {} chains ({} built-in, {} user), {} rule{}",
            f.display(),
            t.table.name(),
            t.chains.len(),
            t.chains.len() - user,
            user,
            t.rule_count(),
            if t.rule_count() == 1 { "" } else { "s" }
        );
    }
}

fn check(files: &[PathBuf], ipsets: Option<&std::path::Path>, ipv6: bool) -> ExitCode {
    let mut failed = false;
    for f in files {
        let mut sets_file = ipsets.map(std::path::Path::to_path_buf);
        let rules = if f.extension().is_some_and(|e| e == "toml") {
            match xdpgw_control::config::Config::load(f) {
                Ok(c) => {
                    println!(
                        "{}: configuration: {} interface{}, {} route{}, rules {}",
                        f.display(),
                        c.interfaces.len(),
                        if c.interfaces.len() == 1 { "" } else { "s" },
                        c.routes.len(),
                        if c.routes.len() == 1 { "" } else { "s" },
                        c.rules.display()
                    );
                    if c.ipsets.is_some() {
                        sets_file = c.ipsets.clone();
                    }
                    if let Some(r6) = &c.rules6 {
                        match xdpgw_control::load_rule_file_family(
                            r6,
                            &Default::default(),
                            Family::Ipv6,
                        ) {
                            Ok(file) => summarise(r6, &file.set6, "ip6tables "),
                            Err(errors) => {
                                eprintln!("{errors}");
                                failed = true;
                            }
                        }
                    }
                    c.rules
                }
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                    continue;
                }
            }
        } else {
            f.clone()
        };
        let f = &rules;
        match xdpgw_control::load_sets_and_rule_file(sets_file.as_deref(), f, family(ipv6)) {
            Ok((sets, file)) => {
                let set = file.set;
                let n = sets.iter().count();
                if n > 0 {
                    println!(
                        "{}: {n} ip set{}",
                        f.display(),
                        if n == 1 { "" } else { "s" }
                    );
                }
                summarise(f, &set, "");
                summarise(f, &file.set6, "ip6tables ");
                if set.tables.is_empty() && file.set6.tables.is_empty() {
                    println!("{}: no tables", f.display());
                }
            }
            Err((f, errors)) => {
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
