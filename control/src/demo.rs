//! `xdpgw demo`: a lab with two clients, the gateway and a server
//! ([`xdpgw_lab::Lab`]), real traffic through it, and a short report: what
//! got through and what was refused or dropped, the address the server saw,
//! the DSCP the client received, the gateway's conntrack table and rule
//! counters. A configuration with `rules6` (conf/gateway.toml has
//! conf/gateway.rules6) gets a dual-stack lab ([`Lab::dual_stack_lab`]: the
//! lab crate's IPv6 plan beside the IPv4 one) and IPv6 traffic through it
//! too, reported the same way.
//!
//! The traffic runs in this process: its servers and clients are the lab's
//! traffic functions ([`xdpgw_lab::traffic`]) on threads that open their
//! sockets inside the lab's namespaces; `ping` and `tcpdump` run as
//! programs there.
//!
//! The lab is removed when the demo ends, also on Ctrl-C (SIGINT) or
//! SIGTERM: the handler only sets a flag, every wait of the lab checks it
//! and panics with [`lab::Interrupted`], and unwinding drops the lab. The
//! lab's processes run in process groups of their own, so a Ctrl-C at the
//! terminal reaches only the demo.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use xdpgw_lab::traffic::{self, Server};
use xdpgw_lab::{
    self as lab, check_interrupt, Backend, GatewaySpec, Interface, Ipv6Spec, Lab, LabConfig,
    CLIENT, CLIENT6, GATEWAY_LAN, GATEWAY_LAN6, GATEWAY_WAN, GATEWAY_WAN6, HOST_IF, SERVER,
    SERVER6,
};

use crate::config::Config;
use crate::error::{RuleError, RuleErrorKind, RuleErrors};
use crate::parse::{detect_format, Format};
use xdpgw_dataplane::rule::Family;

/// Which gateway the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoBackend {
    /// `xdpgw run` with the configuration.
    Xdpgw,
    /// The Linux kernel with the same addresses, routes and rules, for
    /// comparison.
    Linux,
}

impl From<DemoBackend> for Backend {
    fn from(b: DemoBackend) -> Backend {
        match b {
            DemoBackend::Xdpgw => Backend::Xdpgw,
            DemoBackend::Linux => Backend::Linux,
        }
    }
}

/// The size of the demo's TCP transfer.
const TRANSFER_BYTES: u64 = 10 * 1024 * 1024;

/// Runs the demo; exit status 0 when every step went as
/// `conf/gateway.rules` says it should, 1 otherwise, 130 when interrupted.
pub fn main(config: Option<&Path>, backend: DemoBackend) -> ExitCode {
    let backend = Backend::from(backend);
    let missing = missing(backend);
    if !missing.is_empty() {
        eprintln!("xdpgw demo: needs {}", missing.join(", "));
        return ExitCode::FAILURE;
    }
    // The example the binary carries, unless a configuration is named or
    // the repository's is at hand.
    let builtin;
    let config = match config {
        Some(c) => c.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            builtin = lab::WorkDir::new("demo-conf");
            match write_builtin_example(builtin.path()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("xdpgw demo: cannot write the example configuration: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let (gateway, rules6) = match Config::load(&config) {
        Ok(c) => match lab_gateway(&c).and_then(|spec| Ok((spec, lab_rules6(&c)?))) {
            Ok(both) => both,
            Err(e) => {
                eprintln!("xdpgw demo: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("xdpgw demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let xdpgw = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xdpgw demo: cannot find its own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&flag)) {
            eprintln!("xdpgw demo: cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    lab::interrupt_on(flag);

    // Lab steps panic when they fail or are interrupted; unwinding removes
    // the lab. Report the panic's message alone, without the hook's noise.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if info.payload().is::<lab::Interrupted>() {
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        eprintln!("xdpgw demo: {msg}");
    }));
    let cfg = LabConfig {
        backend,
        gateway,
        xdpgw,
        // The traffic runs in this process.
        tools: None,
        // Its conntrack table and rule counters, printed when it stops.
        run_args: vec!["--report-on-exit".to_owned()],
        queues: 1,
        mtu: None,
    };
    let v6 = rules6.map(Ipv6Spec::new);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| demo(&cfg, v6.as_ref())));
    std::panic::set_hook(hook);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("\nsome results differ from what the rules say (marked UNEXPECTED)");
            ExitCode::FAILURE
        }
        Err(p) if p.is::<lab::Interrupted>() => {
            eprintln!("xdpgw demo: interrupted; the lab has been removed");
            ExitCode::from(130)
        }
        Err(_) => {
            eprintln!("xdpgw demo: failed; the lab has been removed");
            if backend == Backend::Xdpgw {
                eprintln!("(`xdpgw demo --backend linux` runs the same demo through Linux)");
            }
            ExitCode::FAILURE
        }
    }
}

/// What the lab needs of `config` ([`GatewaySpec`]): its files, interfaces
/// and routes, and its rules as `iptables-restore` input (for the Linux
/// backend): an iptables-save file as it is, a script of `iptables` lines
/// in xdpgw's canonical save form, which is Linux's. Errors: the rules file
/// cannot be read or does not load.
pub fn lab_gateway(config: &Config) -> Result<GatewaySpec, RuleErrors> {
    let name = config.rules.display().to_string();
    let text = std::fs::read_to_string(&config.rules).map_err(|e| {
        RuleErrors(vec![RuleError::at(0, 0, RuleErrorKind::Io(e.to_string()))]).in_file(&name)
    })?;
    let sets = match &config.ipsets {
        Some(p) => crate::load_ipsets(p)?,
        None => xdpgw_dataplane::ipset::SetTable::default(),
    };
    let set = crate::parse::load_file_text_with_sets(&text, &sets)
        .map_err(|e| e.in_file(&name))?
        .set;
    let restore = match detect_format(&text) {
        Format::Restore => text,
        Format::Script => crate::save::render_with(&set, false),
    };
    Ok(GatewaySpec {
        config: config.path.clone(),
        rules: config.rules.clone(),
        rules6: config.rules6.clone(),
        restore,
        interfaces: config
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                addr: i.addr,
                prefix: i.prefix,
            })
            .collect(),
        routes: config.routes.clone(),
        ipsets: config.ipsets.clone(),
    })
}

/// The IPv6 rules of `config` (`rules6`) as `ip6tables-restore` input, for
/// the dual-stack lab: an ip6tables-save file as it is, a script in
/// xdpgw's canonical save form; `None` without `rules6`. Errors: the file
/// cannot be read or does not load.
pub fn lab_rules6(config: &Config) -> Result<Option<String>, RuleErrors> {
    let Some(path) = &config.rules6 else {
        return Ok(None);
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuleErrors(vec![RuleError::at(0, 0, RuleErrorKind::Io(e.to_string()))]).in_file(&name)
    })?;
    let set6 = crate::load_rule_file_family(path, &Default::default(), Family::Ipv6)?.set6;
    Ok(Some(match detect_format(&text) {
        Format::Restore => text,
        Format::Script => crate::save::render_family(&set6, Family::Ipv6, false),
    }))
}

/// The configuration `xdpgw demo` runs when none is named: the
/// repository's, when run from its top directory.
pub const DEFAULT_CONFIG: &str = "conf/gateway.toml";

/// Writes the example configuration and rules the binary carries (the
/// repository's `conf/gateway.toml`, `conf/gateway.rules` and
/// `conf/gateway.rules6`) into `dir`; returns the configuration's path.
fn write_builtin_example(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::write(
        dir.join("gateway.rules"),
        include_str!("../../conf/gateway.rules"),
    )?;
    std::fs::write(
        dir.join("gateway.rules6"),
        include_str!("../../conf/gateway.rules6"),
    )?;
    let path = dir.join("gateway.toml");
    std::fs::write(&path, include_str!("../../conf/gateway.toml"))?;
    Ok(path)
}

/// What the demo lacks to run: root and the programs the lab runs (empty
/// when nothing is missing).
fn missing(backend: Backend) -> Vec<String> {
    let mut programs = vec!["ip", "ethtool", "tcpdump", "ping", "kill", "sysctl"];
    if backend == Backend::Linux {
        programs.extend([
            "iptables-restore",
            "iptables-save",
            "ip6tables-restore",
            "ip6tables-save",
            "conntrack",
        ]);
    }
    lab::missing(&programs)
}

/// One line of the report.
struct Row {
    what: &'static str,
    /// What happened, first word `got through`, `refused` or `dropped`.
    result: String,
    expected: bool,
}

fn print_row(row: &Row) {
    let mark = if row.expected { "" } else { "   <- UNEXPECTED" };
    println!("  {:<44} {}{mark}", row.what, row.result);
}

/// Builds the lab (dual-stack with `v6`), drives the traffic, prints the
/// report; true when every result is the expected one.
fn demo(cfg: &LabConfig, v6: Option<&Ipv6Spec>) -> bool {
    println!(
        "xdpgw demo: gateway {} with {}",
        match cfg.backend {
            Backend::Xdpgw => "xdpgw run",
            Backend::Linux => "Linux (the same rules via iptables-restore)",
        },
        cfg.gateway.config.display()
    );
    println!(
        "lab: client {CLIENT} (and client2) -- lan0 {GATEWAY_LAN} [gateway] wan0 {GATEWAY_WAN} \
         -- server {SERVER}"
    );
    if v6.is_some() {
        println!(
            "lab IPv6: client {CLIENT6} -- lan0 {GATEWAY_LAN6} [gateway] wan0 {GATEWAY_WAN6} \
             -- server {SERVER6}"
        );
    }
    let mut lab = match v6 {
        Some(v6) => Lab::dual_stack_lab(cfg, v6).unwrap_or_else(|e| panic!("{e}")),
        None => Lab::gateway_lab(cfg),
    };
    match lab.backend() {
        Backend::Xdpgw => println!(
            "gateway ready: xdpgw run --config {}",
            lab.config_path().display()
        ),
        Backend::Linux => println!("gateway ready: Linux"),
    }
    println!();
    let steps: [fn(&Lab) -> Row; 7] = [
        ping_through,
        ping_gateway,
        tcp_transfer,
        udp_exchange,
        smtp_rejected,
        inbound_dropped,
        https_dscp,
    ];
    let steps6: [fn(&Lab) -> Row; 4] = [
        ping6_through,
        tcp6_transfer,
        udp6_exchange,
        inbound6_refused,
    ];
    let steps6: &[fn(&Lab) -> Row] = if lab.is_dual_stack() { &steps6 } else { &[] };
    let mut all_expected = true;
    for step in steps.iter().chain(steps6) {
        check_interrupt();
        let row = step(&lab);
        print_row(&row);
        all_expected &= row.expected;
    }
    check_interrupt();
    println!();
    gateway_views(&mut lab);
    all_expected
}

fn ping_through(lab: &Lab) -> Row {
    let p = lab.ping(lab.client(), SERVER, 3, &[]);
    let ttl = p.replies.first().map_or(0, |r| r.1);
    Row {
        what: "ping client -> 203.0.113.254 (through)",
        result: if p.received > 0 {
            format!(
                "got through: {}/{} replies, ttl {ttl}",
                p.received, p.transmitted
            )
        } else {
            format!("dropped: 0/{} replies", p.transmitted)
        },
        expected: p.received == p.transmitted && ttl == 63,
    }
}

fn ping_gateway(lab: &Lab) -> Row {
    let p = lab.ping(lab.client(), GATEWAY_LAN, 3, &[]);
    Row {
        what: "ping client -> 192.168.10.1 (the gateway)",
        result: if p.received > 0 {
            format!("got through: {}/{} replies", p.received, p.transmitted)
        } else {
            format!("dropped: 0/{} replies", p.transmitted)
        },
        expected: p.received == p.transmitted,
    }
}

/// The first `peer=IP:PORT` a server reported, waiting a few seconds.
fn peer_seen(server: &mut Server) -> Option<String> {
    // The server reports the peer when it accepts, before it serves: the
    // line is on its way by the time the client has its answer.
    server
        .try_wait_line(Duration::from_secs(5), |l| l.starts_with("peer="))
        .map(|l| l["peer=".len()..].to_owned())
}

/// Every `peer=` line of a server, after stopping it.
fn peers_of(server: Server) -> Vec<String> {
    server
        .stop()
        .iter()
        .filter_map(|l| l.strip_prefix("peer=").map(str::to_owned))
        .collect()
}

/// `dst`:`port` of the server's address.
fn at(dst: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((dst, port))
}

fn tcp_transfer(lab: &Lab) -> Row {
    let mut server = Server::tcp(lab.server(), 8080);
    let (ok, got) = lab
        .client()
        .run_in(|| traffic::tcp_get(at(SERVER, 8080), TRANSFER_BYTES, Duration::from_secs(20)));
    let peer = peer_seen(&mut server).unwrap_or_else(|| "nothing".into());
    Row {
        what: "TCP client -> server:8080, 10 MiB",
        result: if ok {
            format!("got through: {TRANSFER_BYTES} bytes verified; server saw {peer}")
        } else {
            format!("failed: {got}")
        },
        expected: ok && peer.starts_with(&format!("{GATEWAY_WAN}:")),
    }
}

fn udp_exchange(lab: &Lab) -> Row {
    let mut server = Server::udp_echo(lab.server(), 7777);
    let (ok, got) = lab
        .client()
        .run_in(|| traffic::udp_req(at(SERVER, 7777), Duration::from_secs(10)));
    let peer = peer_seen(&mut server).unwrap_or_else(|| "nothing".into());
    Row {
        what: "UDP client -> server:7777",
        result: if ok {
            format!("got through: echo received; server saw {peer}")
        } else {
            format!("dropped: {got}")
        },
        expected: ok && peer.starts_with(&format!("{GATEWAY_WAN}:")),
    }
}

fn smtp_rejected(lab: &Lab) -> Row {
    let server = Server::tcp(lab.server(), 25);
    let (_, got) = lab
        .client()
        .run_in(|| traffic::tcp_connect(at(SERVER, 25), Duration::from_secs(5)));
    let peers = peers_of(server);
    let result = match got.as_str() {
        "refused" => "refused: connection reset by the gateway (REJECT tcp-reset)".to_owned(),
        other => format!("{other}; server saw {peers:?}"),
    };
    Row {
        what: "TCP client -> server:25 (mail)",
        result,
        expected: got == "refused" && peers.is_empty(),
    }
}

fn inbound_dropped(lab: &Lab) -> Row {
    let client = Server::tcp(lab.client(), 8080);
    let (_, got) = lab
        .server()
        .run_in(|| traffic::tcp_connect(at(CLIENT, 8080), Duration::from_secs(3)));
    let peers = peers_of(client);
    let result = match got.as_str() {
        "timeout" => "dropped: no answer within 3 s (FORWARD policy)".to_owned(),
        other => format!("{other}; client saw {peers:?}"),
    };
    Row {
        what: "TCP server -> client:8080 (inbound)",
        result,
        expected: got == "timeout" && peers.is_empty(),
    }
}

fn https_dscp(lab: &Lab) -> Row {
    let _server = Server::tcp(lab.server(), 443);
    let capture = lab.capture(lab.client(), HOST_IF, 2, "tcp and src port 443");
    let (ok, got) = lab
        .client()
        .run_in(|| traffic::tcp_get(at(SERVER, 443), 100_000, Duration::from_secs(10)));
    let done = capture.wait(Duration::from_secs(30));
    let packets = lab::parse_tcpdump_verbose(&done.stdout);
    let mut tos: Vec<u8> = packets.iter().map(|p| p.tos).collect();
    tos.dedup();
    let result = match tos.as_slice() {
        [t] => format!(
            "got through; replies carried DSCP {} (tos {t:#04x})",
            t >> 2
        ),
        _ => format!("{got}; tos values seen {tos:?}"),
    };
    Row {
        what: "TCP client -> server:443 (HTTPS)",
        result,
        expected: ok && tos == [0xb8],
    }
}

fn ping6_through(lab: &Lab) -> Row {
    let p = lab.ping6(lab.client(), SERVER6, 3, &[]);
    let hops = p.replies.first().map_or(0, |r| r.1);
    Row {
        what: "ping client -> 2001:db8:113::254 (IPv6)",
        result: if p.received > 0 {
            format!(
                "got through: {}/{} replies, hop limit {hops}",
                p.received, p.transmitted
            )
        } else {
            format!("dropped: 0/{} replies", p.transmitted)
        },
        expected: p.received == p.transmitted && hops == 63,
    }
}

/// `[::]`: a lab server's socket for IPv6 (and IPv4).
fn any6() -> std::net::IpAddr {
    std::net::Ipv6Addr::UNSPECIFIED.into()
}

/// Whether a server's `peer=` is the gateway's WAN address (NAT66
/// MASQUERADE of the ULA prefix).
fn is_wan6(peer: &str) -> bool {
    peer.starts_with(&format!("[{GATEWAY_WAN6}]:"))
}

fn tcp6_transfer(lab: &Lab) -> Row {
    let mut server = Server::tcp_on(lab.server(), any6(), 8080);
    let (ok, got) = lab.client().run_in(|| {
        traffic::tcp_get(
            SocketAddr::from((SERVER6, 8080)),
            TRANSFER_BYTES,
            Duration::from_secs(20),
        )
    });
    let peer = peer_seen(&mut server).unwrap_or_else(|| "nothing".into());
    Row {
        what: "TCP client -> [server]:8080, 10 MiB (IPv6)",
        result: if ok {
            format!("got through: {TRANSFER_BYTES} bytes verified; server saw {peer}")
        } else {
            format!("failed: {got}")
        },
        expected: ok && is_wan6(&peer),
    }
}

fn udp6_exchange(lab: &Lab) -> Row {
    let mut server = Server::udp_echo_on(lab.server(), any6(), 7777);
    let (ok, got) = lab
        .client()
        .run_in(|| traffic::udp_req(SocketAddr::from((SERVER6, 7777)), Duration::from_secs(10)));
    let peer = peer_seen(&mut server).unwrap_or_else(|| "nothing".into());
    Row {
        what: "UDP client -> [server]:7777 (IPv6)",
        result: if ok {
            format!("got through: echo received; server saw {peer}")
        } else {
            format!("dropped: {got}")
        },
        expected: ok && is_wan6(&peer),
    }
}

fn inbound6_refused(lab: &Lab) -> Row {
    let client = Server::tcp_on(lab.client(), any6(), 8080);
    let (_, got) = lab
        .server()
        .run_in(|| traffic::tcp_connect(SocketAddr::from((CLIENT6, 8080)), Duration::from_secs(3)));
    let peers = peers_of(client);
    let result = match got.as_str() {
        "refused" => {
            "refused: connection reset by the gateway (rules6 REJECT tcp-reset)".to_owned()
        }
        other => format!("{other}; client saw {peers:?}"),
    };
    Row {
        what: "TCP server -> [client]:8080 (IPv6, inbound)",
        result,
        expected: got == "refused" && peers.is_empty(),
    }
}

/// The gateway's conntrack table and rule counters: Linux's own tools for
/// the Linux backend; for xdpgw, the report it prints on stderr when it
/// stops (`xdpgw run --report-on-exit`).
fn gateway_views(lab: &mut Lab) {
    match lab.backend() {
        Backend::Linux => {
            let gw = lab.gateway();
            let conntrack = gw.exec(&["conntrack", "-L"]);
            println!("conntrack table (conntrack -L in the gateway):");
            for l in String::from_utf8_lossy(&conntrack.stdout).lines() {
                println!("  {l}");
            }
            println!("rule counters (iptables-save -c in the gateway, rules that matched):");
            print_counters(gw.exec_ok(&["iptables-save", "-c"]).lines());
            if lab.is_dual_stack() {
                let conntrack = gw.exec(&["conntrack", "-L", "-f", "ipv6"]);
                println!("IPv6 conntrack table (conntrack -L -f ipv6 in the gateway):");
                for l in String::from_utf8_lossy(&conntrack.stdout).lines() {
                    println!("  {l}");
                }
                println!(
                    "IPv6 rule counters (ip6tables-save -c in the gateway, rules that matched):"
                );
                print_counters(gw.exec_ok(&["ip6tables-save", "-c"]).lines());
            }
        }
        Backend::Xdpgw => {
            let report = lab.stop_gateway().map(|d| d.stderr).unwrap_or_default();
            print_xdpgw_report(&report);
        }
    }
}

/// The rules of `iptables-save -c` output that matched, with their table.
fn print_counters<'a>(save: impl Iterator<Item = &'a str>) {
    let mut table = "";
    for l in save {
        if let Some(t) = l.strip_prefix('*') {
            table = t;
        } else if l.starts_with('[') && !l.starts_with("[0:0]") {
            println!("  {table:<7} {l}");
        }
    }
}

/// Prints the report of `xdpgw run --report-on-exit`: its drop reasons,
/// conntrack table (`/proc/net/nf_conntrack` lines), rule counters
/// (`iptables-save -c` form) and the lines its LOG rules wrote; "not
/// available yet" for a part it did not print.
fn print_xdpgw_report(report: &[String]) {
    let workers: Vec<&String> = report
        .iter()
        .filter(|l| l.starts_with("# worker") || l.starts_with("#   "))
        .collect();
    let conntrack: Vec<&String> = report.iter().filter(|l| l.starts_with("ipv4 ")).collect();
    let conntrack6: Vec<&String> = report.iter().filter(|l| l.starts_with("ipv6 ")).collect();
    let logged: Vec<&String> = report.iter().filter(|l| l.contains(" IN=")).collect();
    let counters_at = report
        .iter()
        .position(|l| l.starts_with("# rules with counters"));
    let counters6_at = report
        .iter()
        .position(|l| l.starts_with("# rules6 with counters"));
    if workers.is_empty() {
        println!("drop reasons: not available yet");
    } else {
        println!("packets and drop reasons (xdpgw):");
        for l in workers {
            println!("  {}", l.trim_start_matches("# "));
        }
    }
    if report.iter().any(|l| l.starts_with("# conntrack")) {
        println!("conntrack table (xdpgw, when it stopped):");
        for l in conntrack {
            println!("  {l}");
        }
    } else {
        println!("conntrack table: not available yet");
    }
    if report.iter().any(|l| l.starts_with("# conntrack6")) {
        println!("IPv6 conntrack table (xdpgw, when it stopped):");
        for l in conntrack6 {
            println!("  {l}");
        }
    }
    match counters_at {
        Some(at) => {
            println!("rule counters (xdpgw, rules that matched):");
            let end = counters6_at.filter(|&e| e > at).unwrap_or(report.len());
            print_counters(report[at + 1..end].iter().map(String::as_str));
        }
        None => println!("rule counters: not available yet"),
    }
    if let Some(at) = counters6_at {
        println!("IPv6 rule counters (xdpgw, rules6 that matched):");
        print_counters(report[at + 1..].iter().map(String::as_str));
    }
    if !logged.is_empty() {
        println!("logged by -j LOG (xdpgw):");
        for l in logged {
            println!("  {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_map() {
        assert_eq!(Backend::from(DemoBackend::Linux), Backend::Linux);
        assert_eq!(Backend::from(DemoBackend::Xdpgw), Backend::Xdpgw);
    }

    fn conf_gateway() -> Config {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/gateway.toml");
        Config::load(&conf).expect("conf/gateway.toml loads")
    }

    #[test]
    fn the_lab_runs_a_copy_with_absolute_rules_and_its_own_socket() {
        let config = conf_gateway();
        let spec = lab_gateway(&config).expect("its rules load");
        assert_eq!(
            spec.interfaces
                .iter()
                .map(|i| (i.name.as_str(), i.addr, i.prefix))
                .collect::<Vec<_>>(),
            [("lan0", GATEWAY_LAN, 24), ("wan0", GATEWAY_WAN, 24)]
        );
        let dir = lab::WorkDir::new("labtest");
        let text = xdpgw_lab::gateway::run_config_text(&spec, dir.path());
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &text).expect("write");
        let copy = Config::load(&path).expect("the copy loads");
        assert!(copy.rules.is_absolute(), "{text}");
        // conf/gateway.toml names its IPv6 rules too: absolute in the copy.
        let rules6 = copy.rules6.as_ref().expect("rules6 in the copy");
        assert!(
            rules6.is_absolute() && rules6.ends_with("gateway.rules6"),
            "{text}"
        );
        assert_eq!(copy.routes6, config.routes6);
        assert_eq!(copy.control_socket, dir.path().join("xdpgw.sock"));
        assert_eq!(copy.interfaces, config.interfaces);
        assert_eq!(copy.routes, config.routes);
        let removed = dir.path().to_path_buf();
        drop(dir);
        assert!(!removed.exists());
    }

    #[test]
    fn linux_gets_a_restore_file_as_it_is_and_a_script_in_save_form() {
        let config = conf_gateway();
        let spec = lab_gateway(&config).expect("its rules load");
        let file = std::fs::read_to_string(&config.rules).expect("read the rules");
        assert_eq!(spec.restore, file);

        let dir = lab::WorkDir::new("labscript");
        let script = dir.path().join("r.sh");
        std::fs::write(&script, "iptables -P FORWARD DROP\n").expect("write");
        let mut config = config;
        config.rules = script;
        let spec = lab_gateway(&config).expect("the script loads");
        assert!(spec.restore.starts_with("*filter\n"), "{}", spec.restore);
        assert!(spec.restore.contains(":FORWARD DROP"), "{}", spec.restore);

        config.rules = dir.path().join("missing.rules");
        let e = lab_gateway(&config).expect_err("no such file").to_string();
        assert!(e.contains("missing.rules"), "{e}");
    }

    #[test]
    fn linux_gets_the_rules6_as_ip6tables_restore_input() {
        let mut config = conf_gateway();
        let rules6 = config.rules6.clone().expect("conf/gateway.toml has rules6");
        let file = std::fs::read_to_string(&rules6).expect("read the rules6");
        assert_eq!(lab_rules6(&config).expect("they load"), Some(file));

        let dir = lab::WorkDir::new("labscript6");
        let script = dir.path().join("r6.sh");
        std::fs::write(&script, "ip6tables -P FORWARD DROP\n").expect("write");
        config.rules6 = Some(script);
        let restore = lab_rules6(&config)
            .expect("the script loads")
            .expect("some");
        assert!(restore.contains(":FORWARD DROP"), "{restore}");

        config.rules6 = Some(dir.path().join("missing.rules6"));
        let e = lab_rules6(&config).expect_err("no such file").to_string();
        assert!(e.contains("missing.rules6"), "{e}");
        config.rules6 = None;
        assert_eq!(lab_rules6(&config).expect("none"), None);
    }
}
