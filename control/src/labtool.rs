//! `xdpgw lab-tool`: the traffic tools the lab runs inside its namespaces
//! (`ip netns exec NS xdpgw lab-tool ...`), used by `xdpgw demo` and the
//! end-to-end tests. std only.
//!
//! Every tool prints machine-readable lines on stdout (`word key=value...`),
//! each flushed as it is printed. Clients print one result line whose first
//! word is the outcome and exit 0 for `ok`/`connected`, 1 otherwise; a
//! usage error exits 2.
//!
//! ```text
//! tcp-serve PORT                        listening port=P, then peer=IP:PORT per accepted
//!                                       connection; serves one request `SEND N\n` with N
//!                                       pattern bytes, then closes; runs until killed
//! tcp-get HOST PORT N [--timeout S]     ok bytes=N local=IP:PORT (content verified)
//!                                       | refused | timeout | unreachable | reset | error ...
//! tcp-connect HOST PORT [--timeout S]   connected local=IP:PORT | refused | timeout | ...
//! tcp-many HOST PORT COUNT [--timeout S] [--bytes N]
//!                                       COUNT connections open at once, then each does a
//!                                       SEND N exchange: ok=K failed=F [errors=WORD:N,...]
//! udp-echo PORT                         listening port=P, then peer=IP:PORT per datagram,
//!                                       each echoed back; runs until killed
//! udp-req HOST PORT [--timeout S]       sends a datagram (again every second) until its
//!                                       echo comes back: ok local=IP:PORT | timeout | refused
//! ```
//!
//! `--timeout` is in seconds (default 10): the connect timeout, and the
//! longest wait for any one read.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
usage: xdpgw lab-tool tcp-serve PORT
       xdpgw lab-tool tcp-get HOST PORT N [--timeout S]
       xdpgw lab-tool tcp-connect HOST PORT [--timeout S]
       xdpgw lab-tool tcp-many HOST PORT COUNT [--timeout S] [--bytes N]
       xdpgw lab-tool udp-echo PORT
       xdpgw lab-tool udp-req HOST PORT [--timeout S]";

/// How long a server connection may sit idle before it is dropped.
const SERVER_IDLE: Duration = Duration::from_secs(60);
/// Stack size of the per-connection threads (a thousand run at once).
const THREAD_STACK: usize = 128 * 1024;

/// Runs `xdpgw lab-tool ARGS...`.
pub fn main(args: &[String]) -> ExitCode {
    match dispatch(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xdpgw lab-tool: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs a tool; Ok(true) when its outcome is a success.
fn dispatch(args: &[String]) -> Result<bool, String> {
    let Some((tool, rest)) = args.split_first() else {
        return Err("no tool given".into());
    };
    let a = ToolArgs::parse(rest)?;
    match tool.as_str() {
        "tcp-serve" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| format!("cannot listen on TCP port {port}: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            say(&format!("listening port={port}"));
            serve_tcp(listener, &|line| say(&line));
            Ok(true)
        }
        "tcp-get" => {
            a.positional(3, "HOST PORT N")?;
            let n = a.number(2, "N")?;
            Ok(report(tcp_get(a.addr()?, n, a.timeout)))
        }
        "tcp-connect" => {
            a.positional(2, "HOST PORT")?;
            Ok(report(tcp_connect(a.addr()?, a.timeout)))
        }
        "tcp-many" => {
            a.positional(3, "HOST PORT COUNT")?;
            let count = usize::try_from(a.number(2, "COUNT")?).map_err(|e| e.to_string())?;
            Ok(report(tcp_many(a.addr()?, count, a.bytes, a.timeout)))
        }
        "udp-echo" => {
            a.positional(1, "PORT")?;
            let port = a.port(0)?;
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| format!("cannot bind UDP port {port}: {e}"))?;
            let port = sock.local_addr().map_err(|e| e.to_string())?.port();
            say(&format!("listening port={port}"));
            udp_echo(&sock, &|line| say(&line)).map_err(|e| format!("udp-echo: {e}"))?;
            Ok(true)
        }
        "udp-req" => {
            a.positional(2, "HOST PORT")?;
            Ok(report(udp_req(a.addr()?, a.timeout)))
        }
        other => Err(format!("unknown tool '{other}'")),
    }
}

/// The arguments after the tool's name.
#[derive(Debug)]
struct ToolArgs {
    positional: Vec<String>,
    timeout: Duration,
    bytes: u64,
}

impl ToolArgs {
    fn parse(args: &[String]) -> Result<ToolArgs, String> {
        let mut a = ToolArgs {
            positional: Vec::new(),
            timeout: Duration::from_secs(10),
            bytes: 100,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => {
                    let v = it.next().ok_or("--timeout needs a value (seconds)")?;
                    a.timeout = v
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| format!("bad --timeout '{v}': seconds, e.g. 2.5"))?;
                }
                "--bytes" => {
                    let v = it.next().ok_or("--bytes needs a value")?;
                    a.bytes = v
                        .parse()
                        .map_err(|_| format!("bad --bytes '{v}': a byte count"))?;
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

    /// HOST PORT, the first two positionals.
    fn addr(&self) -> Result<SocketAddr, String> {
        let (host, port) = (&self.positional[0], self.port(1)?);
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("bad host '{host}': {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("host '{host}' has no IPv4 address"))
    }
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

/// The byte at `offset` of every transfer: a hash of the offset, so that a
/// lost, duplicated or reordered segment changes the content.
fn pattern_byte(offset: u64) -> u8 {
    let x = offset.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (x >> 24) as u8
}

/// Fills `buf` with the pattern from `offset` on.
fn fill_pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(offset + i as u64);
    }
}

/// The outcome word of an I/O error.
fn word(e: &io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "reset"
        }
        _ => "error",
    }
}

/// `word`, with the error's text after `error`.
fn describe(e: &io::Error) -> String {
    match word(e) {
        "error" => format!("error {e}"),
        w => w.to_owned(),
    }
}

/// Accepts connections forever, reporting `peer=IP:PORT` for each (before
/// serving it) and serving each in its own thread.
fn serve_tcp(listener: TcpListener, out: &dyn Fn(String)) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                match stream.peer_addr() {
                    Ok(peer) => out(format!("peer={peer}")),
                    Err(e) => out(format!("peer=unknown ({e})")),
                }
                let spawned =
                    std::thread::Builder::new()
                        .stack_size(THREAD_STACK)
                        .spawn(move || {
                            // A client that goes away early is its own business.
                            let _ = serve_connection(stream);
                        });
                if let Err(e) = spawned {
                    eprintln!("tcp-serve: cannot start a connection thread: {e}");
                }
            }
            Err(e) => eprintln!("tcp-serve: accept: {e}"),
        }
    }
}

/// Serves one `SEND N\n` request: N pattern bytes, then FIN; then waits for
/// the client to close.
fn serve_connection(mut s: TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(SERVER_IDLE))?;
    s.set_write_timeout(Some(SERVER_IDLE))?;
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\n") {
        if request.len() > 64 || s.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let request = String::from_utf8_lossy(&request);
    let Some(n) = request
        .trim()
        .strip_prefix("SEND ")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        s.write_all(b"error bad request\n")?;
        return Ok(());
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < n {
        let k = (n - sent).min(buf.len() as u64) as usize;
        fill_pattern(sent, &mut buf[..k]);
        s.write_all(&buf[..k])?;
        sent += k as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 512];
    while s.read(&mut sink)? > 0 {}
    Ok(())
}

/// Sends `SEND n` and reads to the end, checking every byte.
fn exchange(s: &mut TcpStream, n: u64, timeout: Duration) -> Result<(), String> {
    let fail = |e: &io::Error, got: u64| format!("{} bytes={got}", describe(e));
    s.set_read_timeout(Some(timeout)).map_err(|e| fail(&e, 0))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| fail(&e, 0))?;
    s.write_all(format!("SEND {n}\n").as_bytes())
        .map_err(|e| fail(&e, 0))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let k = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(&e, got)),
        };
        if got + k as u64 > n {
            return Err(format!("error too many bytes: more than {n}"));
        }
        fill_pattern(got, &mut want[..k]);
        if let Some(i) = (0..k).find(|&i| buf[i] != want[i]) {
            return Err(format!("error content mismatch at byte {}", got + i as u64));
        }
        got += k as u64;
    }
    if got != n {
        return Err(format!("error short read bytes={got} expected={n}"));
    }
    Ok(())
}

fn local_of(s: &TcpStream) -> String {
    s.local_addr()
        .map_or_else(|e| format!("unknown({e})"), |a| a.to_string())
}

/// `tcp-get`: connects, fetches `n` bytes and checks them.
fn tcp_get(addr: SocketAddr, n: u64, timeout: Duration) -> (bool, String) {
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return (false, describe(&e)),
    };
    let local = local_of(&s);
    match exchange(&mut s, n, timeout) {
        Ok(()) => (true, format!("ok bytes={n} local={local}")),
        Err(e) => (false, e),
    }
}

/// `tcp-connect`: connects and closes.
fn tcp_connect(addr: SocketAddr, timeout: Duration) -> (bool, String) {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => (true, format!("connected local={}", local_of(&s))),
        Err(e) => (false, describe(&e)),
    }
}

/// Holds the connection threads of `tcp-many` until all have connected.
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Called by a connection thread: counts it in, waits for the opening.
    fn arrive_and_wait(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        self.changed.notify_all();
        while !st.1 {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Called by the main thread: waits for `n` arrivals, then opens.
    fn open_after(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.0 < n {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.1 = true;
        self.changed.notify_all();
    }
}

/// `tcp-many`: `count` connections open at once, then each fetches `bytes`.
fn tcp_many(addr: SocketAddr, count: usize, bytes: u64, timeout: Duration) -> (bool, String) {
    let gate = Arc::new(Gate {
        state: Mutex::new((0, false)),
        changed: Condvar::new(),
    });
    let mut threads = Vec::with_capacity(count);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..count {
        let gate = Arc::clone(&gate);
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let conn = TcpStream::connect_timeout(&addr, timeout);
                gate.arrive_and_wait();
                let mut s = conn.map_err(|e| describe(&e))?;
                exchange(&mut s, bytes, timeout)
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => *errors.entry(format!("spawn({e})")).or_default() += 1,
        }
    }
    gate.open_after(threads.len());
    let mut ok = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                let w = e.split_whitespace().next().unwrap_or("error").to_owned();
                *errors.entry(w).or_default() += 1;
            }
            Err(_) => *errors.entry("panic".into()).or_default() += 1,
        }
    }
    let failed = count - ok;
    let mut line = format!("ok={ok} failed={failed}");
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(w, n)| format!("{w}:{n}")).collect();
        line.push_str(&format!(" errors={}", list.join(",")));
    }
    (failed == 0, line)
}

/// Echoes every datagram back, reporting `peer=IP:PORT` for each first.
fn udp_echo(sock: &UdpSocket, out: &dyn Fn(String)) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            // An ICMP error about an earlier echo: not this socket's problem.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out(format!("peer={peer}"));
        // A lost echo is the client's timeout to report.
        let _ = sock.send_to(&buf[..n], peer);
    }
}

/// `udp-req`: sends a datagram every second until its echo comes back.
fn udp_req(addr: SocketAddr, timeout: Duration) -> (bool, String) {
    let attempt = || -> io::Result<(bool, String)> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.connect(addr)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let payload = format!("xdpgw-lab {} {nanos}", std::process::id());
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            sock.send(payload.as_bytes())?;
            let resend = Instant::now() + Duration::from_secs(1);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok((false, "timeout".into()));
                }
                if now >= resend {
                    break;
                }
                let wait = (resend.min(deadline) - now).max(Duration::from_millis(1));
                sock.set_read_timeout(Some(wait))?;
                match sock.recv(&mut buf) {
                    Ok(n) if &buf[..n] == payload.as_bytes() => {
                        let local = sock.local_addr()?;
                        return Ok((true, format!("ok local={local}")));
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    };
    attempt().unwrap_or_else(|e| (false, describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A tcp-serve on loopback in a thread; its report lines go to the
    /// returned channel.
    fn tcp_server() -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let tx = Mutex::new(tx);
            serve_tcp(listener, &|l| {
                let _ = tx.lock().expect("lock").send(l);
            });
        });
        (addr, rx)
    }

    /// A port with nothing listening on it.
    fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    #[test]
    fn pattern_depends_on_the_offset() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        fill_pattern(0, &mut a);
        fill_pattern(1, &mut b);
        assert_eq!(a[1..], b[..4095]);
        assert_ne!(a, b);
        // No short period: a segment moved by any offset up to 4096 differs.
        for shift in 1..2048 {
            assert_ne!(a[..64], a[shift..shift + 64], "period {shift}");
        }
    }

    #[test]
    fn tcp_get_fetches_and_verifies() {
        let (addr, peers) = tcp_server();
        let (ok, line) = tcp_get(addr, 1_000_003, Duration::from_secs(10));
        assert!(ok, "{line}");
        assert!(
            line.starts_with("ok bytes=1000003 local=127.0.0.1:"),
            "{line}"
        );
        let peer = peers
            .recv_timeout(Duration::from_secs(10))
            .expect("peer line");
        assert!(peer.starts_with("peer=127.0.0.1:"), "{peer}");
        let (ok, line) = tcp_get(addr, 0, Duration::from_secs(10));
        assert!(ok, "{line}");
    }

    #[test]
    fn tcp_clients_report_refused() {
        let addr = closed_port();
        assert_eq!(
            tcp_get(addr, 10, Duration::from_secs(5)),
            (false, "refused".into())
        );
        assert_eq!(
            tcp_connect(addr, Duration::from_secs(5)),
            (false, "refused".into())
        );
        let (ok, line) = tcp_many(addr, 3, 10, Duration::from_secs(5));
        assert!(!ok);
        assert_eq!(line, "ok=0 failed=3 errors=refused:3");
    }

    #[test]
    fn tcp_get_detects_wrong_content() {
        // A server that sends zeros instead of the pattern.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut req = [0u8; 16];
                let _ = s.read(&mut req);
                let _ = s.write_all(&[0u8; 100]);
            }
        });
        let (ok, line) = tcp_get(addr, 100, Duration::from_secs(10));
        assert!(!ok);
        assert!(
            line.starts_with("error content mismatch at byte "),
            "{line}"
        );
    }

    #[test]
    fn tcp_many_holds_connections_open_at_once() {
        let (addr, peers) = tcp_server();
        let (ok, line) = tcp_many(addr, 50, 1000, Duration::from_secs(10));
        assert!(ok, "{line}");
        assert_eq!(line, "ok=50 failed=0");
        let seen = (0..50)
            .filter(|_| peers.recv_timeout(Duration::from_secs(10)).is_ok())
            .count();
        assert_eq!(seen, 50);
    }

    #[test]
    fn tcp_connect_connects() {
        let (addr, _peers) = tcp_server();
        let (ok, line) = tcp_connect(addr, Duration::from_secs(5));
        assert!(ok, "{line}");
        assert!(line.starts_with("connected local=127.0.0.1:"), "{line}");
    }

    #[test]
    fn udp_req_gets_its_echo_or_refused() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let tx = Mutex::new(tx);
            let _ = udp_echo(&sock, &|l| {
                let _ = tx.lock().expect("lock").send(l);
            });
        });
        let (ok, line) = udp_req(addr, Duration::from_secs(10));
        assert!(ok, "{line}");
        assert!(line.starts_with("ok local=127.0.0.1:"), "{line}");
        let peer = rx.recv_timeout(Duration::from_secs(10)).expect("peer");
        assert!(peer.starts_with("peer=127.0.0.1:"), "{peer}");

        let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        assert_eq!(
            udp_req(closed_addr, Duration::from_secs(5)),
            (false, "refused".into())
        );
    }

    #[test]
    fn udp_req_times_out() {
        // Bound but never answering.
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        let t = Instant::now();
        assert_eq!(
            udp_req(addr, Duration::from_millis(300)),
            (false, "timeout".into())
        );
        assert!(t.elapsed() < Duration::from_secs(5));
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
        let a = ToolArgs::parse(&strings(&["h", "--timeout", "2.5", "p", "--bytes", "7"]))
            .expect("parses");
        assert_eq!(a.positional, ["h", "p"]);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.bytes, 7);
    }
}
