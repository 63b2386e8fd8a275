//! `xdpgw-lab`: the traffic tools of the namespace lab as a program, which
//! the end-to-end tests and the packet-rate bench run inside the lab's
//! namespaces (`ip netns exec NS xdpgw-lab tcp-serve 8080`, through
//! [`xdpgw_lab::Lab::tool`]). A test tool: it is not part of the product
//! (`xdpgw demo` runs the same functions, [`xdpgw_lab::traffic`], on threads
//! of its own). The tests build it on demand
//! ([`xdpgw_lab::tools_binary`]).
//!
//! Every tool prints machine-readable lines on stdout (`word key=value...`),
//! each flushed as it is printed. Clients print one result line whose first
//! word is the outcome and exit 0 for `ok`/`connected`, 1 otherwise; a
//! usage error exits 2.
//!
//! ```text
//! tcp-serve PORT [--bind ADDR]          listening port=P, then peer=IP:PORT per accepted
//!                                       connection; serves one request `SEND N\n` with N
//!                                       pattern bytes (`SEND N PACE R\n`: R bytes a
//!                                       second), then closes; runs until killed
//! tcp-get HOST PORT N [--timeout S]     ok bytes=N local=IP:PORT (content verified)
//!                                       | refused | timeout | unreachable | reset | error ...
//! tcp-download HOST PORT N [--pace R] [--timeout S]
//!                                       a download from tcp-serve, R bytes a second:
//!                                       `downloading local=IP:PORT` once the first bytes
//!                                       arrived, then `ok bytes=N local=IP:PORT
//!                                       longest_pause_ms=P` (content verified; P: the
//!                                       longest wait between two reads) | timeout
//!                                       bytes=K ... | reset bytes=K ... | error ...
//! tcp-connect HOST PORT [--timeout S]   connected local=IP:PORT | refused | timeout | ...
//! tcp-many HOST PORT COUNT [--timeout S] [--bytes N]
//!                                       COUNT connections open at once, then each does a
//!                                       SEND N exchange: ok=K failed=F [errors=WORD:N,...]
//! udp-echo PORT [--bind ADDR]           listening port=P, then peer=IP:PORT per datagram,
//!                                       each echoed back; runs until killed
//! udp-req HOST PORT [--timeout S]       sends a datagram (again every second) until its
//!                                       echo comes back: ok local=IP:PORT | timeout | refused
//! ```
//!
//! `--timeout` is in seconds (default 10): the connect timeout, and the
//! longest wait for any one read.
//!
//! HOST is an IPv4 or IPv6 address (`2001:db8:113::254`, brackets
//! allowed) or a name (its IPv4 address). The servers (`tcp-serve`,
//! `udp-echo`, `tcp-echo`, `udp-count`) listen on `0.0.0.0`, or on the
//! address of `--bind ADDR` (`--bind ::`: IPv6, and IPv4 too); a peer is
//! printed as `IP:PORT` or `[IPV6]:PORT`, an IPv4 peer of an IPv6 socket as
//! the IPv4 address it is.
//!
//! Long-running traffic, for tests that change the gateway while it
//! forwards (`vm-tests/tests/reload_under_load.rs`). These stop on SIGTERM
//! or SIGINT (or after `--duration S`), finish cleanly and report:
//!
//! ```text
//! tcp-echo PORT [--bind ADDR]           listening port=P; echoes every connection's bytes,
//!                                       checking they are the pattern from offset 0; when
//!                                       the client closes: closed peer=IP:PORT bytes=N
//!                                       result=ok|mismatch|reset|timeout|error
//! tcp-stream HOST PORT COUNT [--bytes N] [--interval S] [--duration S] [--timeout S] [--progress S]
//!                                       COUNT connections, each writing N pattern bytes
//!                                       (default 1024) every S seconds (default 0.02) and
//!                                       reading their echo back, checking every byte.
//!                                       Prints `streaming connections=K failed=F` once
//!                                       every connection made its first exchange, `stall
//!                                       conn=I ms=T echoed=N at_ms=EPOCH_MS` for every
//!                                       exchange slower than 200 ms (when it completes),
//!                                       with --progress `progress conn=I echoed=N
//!                                       at_ms=EPOCH_MS` every S seconds; when
//!                                       stopped, each half-closes, waits for the server's
//!                                       close, and prints `conn I local=IP:PORT sent=N
//!                                       echoed=N result=ok|reset|timeout|mismatch|...`,
//!                                       then `done connections=N ok=K failed=F sent=S
//!                                       echoed=E`. Exit 0 if all are ok.
//! udp-send HOST PORT [--rate PPS] [--bytes N] [--duration S]
//!                                       datagrams of N bytes (default 64, 20 to 65507)
//!                                       numbered 0, 1, ... at PPS a second (default 2000):
//!                                       `sending local=IP:PORT session=ID rate=PPS`; when
//!                                       stopped, an end marker (five times, 20 ms apart)
//!                                       and `sent packets=N session=ID errors=E`.
//! udp-count PORT [--bind ADDR]          listening port=P; counts numbered datagrams per
//!                                       sender: `receiving session=ID peer=IP:PORT` at a
//!                                       sender's first datagram, `done session=ID
//!                                       peer=IP:PORT expected=N received=R lost=L
//!                                       duplicates=D reordered=O malformed=M` at its end
//!                                       marker, and `final ...` (the same fields) for every
//!                                       sender when stopped; `gap session=ID after=N next=M
//!                                       missing=K ms=T at_ms=EPOCH_MS` when a sender's
//!                                       datagrams resume after more than 100 ms.
//! ```
//!
//! VLAN sub-interfaces in user space (`xdpgw_lab::vlan_bridge`), for a
//! kernel without 802.1Q support; stops on SIGTERM or SIGINT:
//!
//! ```text
//! vlan-bridge TRUNK [--tap VID=NAME]... [--access VID=IF]...
//!                                       moves frames between TRUNK and a TAP device NAME
//!                                       (made, with TRUNK's MAC) or an interface IF per
//!                                       VLAN, untagging and tagging them: `ready
//!                                       trunk=TRUNK vlans=V,...`; when stopped, `stopped
//!                                       in=N out=N unknown_vlan=N errors=N`.
//! ```
//!
//! A numbered datagram is `XGSQ`, the sender's session id (u64, big
//! endian), the sequence number (u64) and padding; the end marker is
//! `XGEN`, the session id and the number of datagrams sent. `lost` counts
//! the numbers below `expected` never received, `reordered` the datagrams
//! that arrived after a higher number.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpgw_lab::traffic::{
    serve_echo, serve_tcp, tcp_connect, tcp_download, tcp_get, tcp_many, tcp_stream, udp_count,
    udp_echo, udp_req, udp_send, StreamSpec, SEQ_HEADER,
};
use xdpgw_lab::vlan_bridge::{EndpointSpec, VlanBridge};

const USAGE: &str = "\
usage: xdpgw-lab tcp-serve PORT [--bind ADDR]
       xdpgw-lab tcp-get HOST PORT N [--timeout S]
       xdpgw-lab tcp-download HOST PORT N [--pace BYTES_PER_SEC] [--timeout S]
       xdpgw-lab tcp-connect HOST PORT [--timeout S]
       xdpgw-lab tcp-many HOST PORT COUNT [--timeout S] [--bytes N]
       xdpgw-lab udp-echo PORT [--bind ADDR]
       xdpgw-lab udp-req HOST PORT [--timeout S]
       xdpgw-lab tcp-echo PORT [--bind ADDR]
       xdpgw-lab tcp-stream HOST PORT COUNT [--bytes N] [--interval S] [--duration S] [--timeout S] [--progress S]
       xdpgw-lab udp-send HOST PORT [--rate PPS] [--bytes N] [--duration S]
       xdpgw-lab udp-count PORT [--bind ADDR]
       xdpgw-lab vlan-bridge TRUNK [--tap VID=NAME]... [--access VID=IF]...";

/// Runs `xdpgw-lab ARGS...`.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xdpgw-lab: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs a tool; Ok(true) when its outcome is a success.
fn dispatch(args: &[String]) -> Result<bool, String> {
    let Some((tool, rest)) = args.split_first() else {
        return Err("no tool given".into());
    };
    if tool == "vlan-bridge" {
        return vlan_bridge(rest);
    }
    let a = ToolArgs::parse(rest)?;
    match tool.as_str() {
        "tcp-serve" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let listener = TcpListener::bind((a.bind, port))
                .map_err(|e| format!("cannot listen on TCP port {port}: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            say(&format!("listening port={port}"));
            // Until killed.
            serve_tcp(listener, &AtomicBool::new(false), &|line| say(&line));
            Ok(true)
        }
        "tcp-get" => {
            a.positional(3, "HOST PORT N")?;
            let n = a.number(2, "N")?;
            Ok(report(tcp_get(a.addr()?, n, a.timeout)))
        }
        "tcp-download" => {
            a.positional(3, "HOST PORT N")?;
            let n = a.number(2, "N")?;
            Ok(report(tcp_download(
                a.addr()?,
                n,
                a.pace,
                a.timeout,
                &|line| say(&line),
            )))
        }
        "tcp-connect" => {
            a.positional(2, "HOST PORT")?;
            Ok(report(tcp_connect(a.addr()?, a.timeout)))
        }
        "tcp-many" => {
            a.positional(3, "HOST PORT COUNT")?;
            let count = usize::try_from(a.number(2, "COUNT")?).map_err(|e| e.to_string())?;
            Ok(report(tcp_many(
                a.addr()?,
                count,
                a.bytes.unwrap_or(100),
                a.timeout,
            )))
        }
        "udp-echo" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let sock = UdpSocket::bind((a.bind, port))
                .map_err(|e| format!("cannot bind UDP port {port}: {e}"))?;
            let port = sock.local_addr().map_err(|e| e.to_string())?.port();
            say(&format!("listening port={port}"));
            // Until killed.
            udp_echo(&sock, &AtomicBool::new(false), &|line| say(&line))
                .map_err(|e| format!("udp-echo: {e}"))?;
            Ok(true)
        }
        "udp-req" => {
            a.positional(2, "HOST PORT")?;
            Ok(report(udp_req(a.addr()?, a.timeout)))
        }
        "tcp-echo" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let listener = TcpListener::bind((a.bind, port))
                .map_err(|e| format!("cannot listen on TCP port {port}: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            say(&format!("listening port={port}"));
            serve_echo(listener, Arc::new(|line| say(&line)));
            Ok(true)
        }
        "tcp-stream" => {
            a.positional(3, "HOST PORT COUNT")?;
            let count = usize::try_from(a.number(2, "COUNT")?).map_err(|e| e.to_string())?;
            let bytes = a.bytes.unwrap_or(1024);
            let chunk = usize::try_from(bytes)
                .ok()
                .filter(|n| (1..=1 << 20).contains(n))
                .ok_or_else(|| format!("bad --bytes {bytes}: 1 to 1048576 per write"))?;
            let stop = stop_on_signal(a.duration)?;
            let spec = StreamSpec {
                addr: a.addr()?,
                count,
                chunk,
                interval: a.interval,
                timeout: a.timeout,
                progress: a.progress,
            };
            Ok(tcp_stream(&spec, &stop, &|line| say(&line)))
        }
        "udp-send" => {
            a.positional(2, "HOST PORT")?;
            let bytes = a.bytes.unwrap_or(64);
            let size = usize::try_from(bytes)
                .ok()
                .filter(|n| (SEQ_HEADER..=65507).contains(n))
                .ok_or_else(|| format!("bad --bytes {bytes}: {SEQ_HEADER} to 65507"))?;
            let rate = a.rate.unwrap_or(2000);
            let stop = stop_on_signal(a.duration)?;
            Ok(udp_send(a.addr()?, rate, size, &stop, &|line| say(&line)))
        }
        "udp-count" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let sock = UdpSocket::bind((a.bind, port))
                .map_err(|e| format!("cannot bind UDP port {port}: {e}"))?;
            let port = sock.local_addr().map_err(|e| e.to_string())?.port();
            let stop = stop_on_signal(None)?;
            say(&format!("listening port={port}"));
            udp_count(&sock, &stop, &|line| say(&line)).map_err(|e| format!("udp-count: {e}"))?;
            Ok(true)
        }
        other => Err(format!("unknown tool '{other}'")),
    }
}

/// The arguments after the tool's name.
#[derive(Debug)]
struct ToolArgs {
    positional: Vec<String>,
    timeout: Duration,
    /// Bytes per exchange (`tcp-many`, default 100), per write
    /// (`tcp-stream`, default 1024) or per datagram (`udp-send`, default 64).
    bytes: Option<u64>,
    interval: Duration,
    duration: Option<Duration>,
    rate: Option<u32>,
    /// Bytes a second (`tcp-download`).
    pace: Option<u64>,
    /// How often `tcp-stream` reports progress.
    progress: Option<Duration>,
    /// Where a server listens (`--bind`, default 0.0.0.0).
    bind: IpAddr,
}

/// `--timeout 2.5` and the like: positive seconds, less than a day.
fn seconds(option: &str, v: Option<&String>) -> Result<Duration, String> {
    let v = v.ok_or_else(|| format!("{option} needs a value (seconds)"))?;
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad {option} '{v}': seconds, e.g. 2.5"))
}

impl ToolArgs {
    fn parse(args: &[String]) -> Result<ToolArgs, String> {
        let mut a = ToolArgs {
            positional: Vec::new(),
            timeout: Duration::from_secs(10),
            bytes: None,
            interval: Duration::from_millis(20),
            duration: None,
            rate: None,
            pace: None,
            progress: None,
            bind: Ipv4Addr::UNSPECIFIED.into(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => a.timeout = seconds("--timeout", it.next())?,
                "--interval" => a.interval = seconds("--interval", it.next())?,
                "--progress" => a.progress = Some(seconds("--progress", it.next())?),
                "--duration" => a.duration = Some(seconds("--duration", it.next())?),
                "--rate" => {
                    let v = it
                        .next()
                        .ok_or("--rate needs a value (datagrams a second)")?;
                    a.rate = Some(
                        v.parse()
                            .ok()
                            .filter(|r| (1..=1_000_000).contains(r))
                            .ok_or_else(|| {
                                format!("bad --rate '{v}': 1 to 1000000 datagrams a second")
                            })?,
                    );
                }
                "--pace" => {
                    let v = it.next().ok_or("--pace needs a value (bytes a second)")?;
                    a.pace = Some(
                        v.parse()
                            .ok()
                            .filter(|r| *r > 0)
                            .ok_or_else(|| format!("bad --pace '{v}': bytes a second"))?,
                    );
                }
                "--bind" => {
                    let v = it.next().ok_or("--bind needs an address")?;
                    a.bind = v
                        .parse()
                        .map_err(|_| format!("bad --bind '{v}': an IPv4 or IPv6 address"))?;
                }
                "--bytes" => {
                    let v = it.next().ok_or("--bytes needs a value")?;
                    a.bytes = Some(
                        v.parse()
                            .map_err(|_| format!("bad --bytes '{v}': a byte count"))?,
                    );
                }
                s if s.starts_with("--") => return Err(format!("unknown option '{s}'")),
                _ => a.positional.push(arg.clone()),
            }
        }
        Ok(a)
    }

    fn positional(&self, n: usize, names: &str) -> Result<(), String> {
        if self.positional.len() == n {
            Ok(())
        } else {
            Err(format!(
                "expected {names}, got {} argument(s): {:?}",
                self.positional.len(),
                self.positional
            ))
        }
    }

    fn port(&self, i: usize) -> Result<u16, String> {
        let v = &self.positional[i];
        v.parse().map_err(|_| format!("bad port '{v}'"))
    }

    fn number(&self, i: usize, name: &str) -> Result<u64, String> {
        let v = &self.positional[i];
        v.parse().map_err(|_| format!("bad {name} '{v}'"))
    }

    /// HOST PORT, the first two positionals: an address (IPv6 with or
    /// without brackets), or a name's IPv4 address.
    fn addr(&self) -> Result<SocketAddr, String> {
        let (host, port) = (&self.positional[0], self.port(1)?);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("bad host '{host}': {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("host '{host}' has no IPv4 address"))
    }
}

/// `vlan-bridge TRUNK [--tap VID=NAME]... [--access VID=IF]...`.
fn vlan_bridge(args: &[String]) -> Result<bool, String> {
    let Some((trunk, rest)) = args.split_first() else {
        return Err("vlan-bridge: no trunk given".into());
    };
    let mut specs = Vec::new();
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        let tap = match opt.as_str() {
            "--tap" => true,
            "--access" => false,
            other => return Err(format!("vlan-bridge: unknown option '{other}'")),
        };
        let v = it.next().ok_or_else(|| format!("{opt} needs VID=NAME"))?;
        specs.push(EndpointSpec::parse(tap, v)?);
    }
    if specs.is_empty() {
        return Err("vlan-bridge: no --tap or --access given".into());
    }
    let stop = stop_on_signal(None)?;
    let mut bridge =
        VlanBridge::open(trunk, &specs).map_err(|e| format!("vlan-bridge {trunk}: {e}"))?;
    let vids: Vec<String> = specs
        .iter()
        .map(|s| match s {
            EndpointSpec::Tap { vid, .. } | EndpointSpec::Access { vid, .. } => vid.to_string(),
        })
        .collect();
    say(&format!("ready trunk={trunk} vlans={}", vids.join(",")));
    let r = bridge.run(&stop);
    let c = bridge.counts;
    say(&format!(
        "stopped in={} out={} unknown_vlan={} errors={}",
        c.inbound, c.outbound, c.unknown_vlan, c.errors
    ));
    r.map(|()| true)
        .map_err(|e| format!("vlan-bridge {trunk}: {e}"))
}

/// Prints a line and flushes it; a reader that went away ends the tool.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

/// Prints a client's result line; returns whether it is a success.
fn report((ok, line): (bool, String)) -> bool {
    say(&line);
    ok
}

/// A flag that SIGTERM and SIGINT set (and, with `duration`, a timer once
/// it has passed): the long-running tools finish cleanly and report.
fn stop_on_signal(duration: Option<Duration>) -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    if let Some(d) = duration {
        let timer = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            // Relaxed: the flag carries no data (as the signal handler's store).
            timer.store(true, Ordering::Relaxed);
        });
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdpgw_lab::traffic::TOOL_NAMES;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_usage_names_every_tool() {
        let lines: Vec<&str> = USAGE.lines().collect();
        assert_eq!(lines.len(), TOOL_NAMES.len());
        for (line, tool) in lines.iter().zip(TOOL_NAMES) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = usize::from(words[0] == "usage:");
            assert_eq!(words[at..at + 2], ["xdpgw-lab", tool], "{line}");
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert!(dispatch(&[]).is_err());
        assert!(dispatch(&strings(&["nope"])).is_err());
        assert!(dispatch(&strings(&["tcp-get", "127.0.0.1", "80"])).is_err());
        assert!(dispatch(&strings(&["tcp-get", "127.0.0.1", "99999", "1"])).is_err());
        assert!(dispatch(&strings(&["tcp-connect", "127.0.0.1", "1", "--timeout"])).is_err());
        assert!(dispatch(&strings(&[
            "tcp-connect",
            "127.0.0.1",
            "1",
            "--timeout",
            "-1"
        ]))
        .is_err());
        assert!(dispatch(&strings(&["tcp-connect", "127.0.0.1", "1", "--frob"])).is_err());
        assert!(dispatch(&strings(&[
            "tcp-stream",
            "127.0.0.1",
            "1",
            "2",
            "--bytes",
            "0"
        ]))
        .is_err());
        assert!(dispatch(&strings(&["udp-send", "127.0.0.1", "1", "--bytes", "19"])).is_err());
        assert!(dispatch(&strings(&["udp-send", "127.0.0.1", "1", "--rate", "0"])).is_err());
        assert!(dispatch(&strings(&["udp-send", "127.0.0.1", "1", "--duration", "x"])).is_err());
        assert!(dispatch(&strings(&["udp-count"])).is_err());
        assert!(dispatch(&strings(&["vlan-bridge"])).is_err());
        assert!(dispatch(&strings(&["vlan-bridge", "lo"])).is_err());
        assert!(dispatch(&strings(&["vlan-bridge", "lo", "--tap", "4095=x"])).is_err());
        assert!(dispatch(&strings(&["vlan-bridge", "lo", "--access", "10"])).is_err());
        assert!(dispatch(&strings(&["vlan-bridge", "lo", "--trunk", "10=x"])).is_err());
        assert!(dispatch(&strings(&[
            "tcp-download",
            "127.0.0.1",
            "1",
            "5",
            "--pace",
            "0"
        ]))
        .is_err());
        assert!(dispatch(&strings(&["tcp-serve", "0", "--bind", "nowhere"])).is_err());
        let a = ToolArgs::parse(&strings(&["2001:db8:113::254", "80", "--bind", "::"]))
            .expect("parses");
        assert_eq!(
            a.addr().expect("an address"),
            "[2001:db8:113::254]:80"
                .parse::<SocketAddr>()
                .expect("addr")
        );
        assert_eq!(a.bind, "::".parse::<IpAddr>().expect("ip"));
        let a = ToolArgs::parse(&strings(&["[fd00:10::2]", "8080"])).expect("parses");
        assert_eq!(
            a.addr().expect("an address"),
            "[fd00:10::2]:8080".parse::<SocketAddr>().expect("addr")
        );
        let a = ToolArgs::parse(&strings(&["h", "--timeout", "2.5", "p", "--bytes", "7"]))
            .expect("parses");
        assert_eq!(a.positional, ["h", "p"]);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.bytes, Some(7));
    }
}
