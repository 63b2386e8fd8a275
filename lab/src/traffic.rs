//! The lab's traffic tools as functions: servers and clients that check
//! every byte and report what they saw in machine-readable lines
//! (`word key=value...`). std only.
//!
//! Two callers: `xdpgw demo` runs them on threads of its own whose sockets
//! it opens inside the lab's namespaces ([`Server`], [`Netns::run_in`]);
//! the tests and benches run them as processes through the `xdpgw-lab`
//! binary, whose usage documents each tool and its lines. Clients return
//! `(ok, result line)`; servers and long-running tools hand each line to
//! `out` as it happens.
//!
//! A download (`tcp_get`, `tcp_download`, `tcp_many`) asks a
//! [`serve_tcp`] server for `SEND N\n` (or `SEND N PACE R\n`: R bytes a
//! second) and gets N bytes of a pattern whose every byte depends on its
//! offset, so that a lost, duplicated or reordered segment shows.
//!
//! A numbered datagram ([`udp_send`], [`udp_count`]) is `XGSQ`, the
//! sender's session id (u64, big endian), the sequence number (u64) and
//! padding; the end marker is `XGEN`, the session id and the number of
//! datagrams sent. `lost` counts the numbers below `expected` never
//! received, `reordered` the datagrams that arrived after a higher number.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns::Netns;
use crate::process::check_interrupt;

/// The command words of the `xdpgw-lab` binary, one per tool: test
/// tools, which the product binary must not carry (`control/tests/cli.rs`
/// checks that it does not).
pub const TOOL_NAMES: &[&str] = &[
    "tcp-serve",
    "tcp-get",
    "tcp-download",
    "tcp-connect",
    "tcp-many",
    "udp-echo",
    "udp-req",
    "tcp-echo",
    "tcp-stream",
    "udp-send",
    "udp-count",
    "vlan-bridge",
];

/// How long a server connection may sit idle before it is dropped.
const SERVER_IDLE: Duration = Duration::from_secs(60);
/// Stack size of the per-connection threads (a thousand run at once).
const THREAD_STACK: usize = 128 * 1024;
/// How often a server waiting for datagrams checks its stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(100);

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
        // EACCES: an ICMPv6 "administratively prohibited" (icmpv6_err_convert).
        ErrorKind::PermissionDenied => "prohibited",
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

/// Accepts connections until `stop` is set, reporting `peer=IP:PORT` for
/// each (before serving it) and serving each in its own thread. A blocked
/// accept sees `stop` once it returns: [`Server::stop`] shuts the listening
/// socket down, which ends it.
pub fn serve_tcp(listener: TcpListener, stop: &AtomicBool, out: &dyn Fn(String)) {
    for conn in listener.incoming() {
        if stopped(stop) {
            return;
        }
        match conn {
            Ok(stream) => {
                match stream.peer_addr() {
                    Ok(peer) => out(format!("peer={}", canonical(peer))),
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
                    eprintln!("TCP server: cannot start a connection thread: {e}");
                }
            }
            // EINVAL: the socket no longer listens (shut down).
            Err(e) if e.kind() == ErrorKind::InvalidInput => return,
            Err(e) => eprintln!("TCP server: accept: {e}"),
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
    let Some((n, pace)) = parse_send(&request) else {
        s.write_all(b"error bad request\n")?;
        return Ok(());
    };
    // Paced: a hundredth of a second's worth at a time, on a schedule
    // (after a stall the sender catches up).
    let chunk = pace.map_or(64 * 1024, |r| (r / 100).clamp(1, 64 * 1024));
    let mut buf = vec![0u8; chunk as usize];
    let mut sent = 0u64;
    let start = Instant::now();
    while sent < n {
        let mut k = (n - sent).min(chunk);
        if let Some(r) = pace {
            let due = (r as f64 * start.elapsed().as_secs_f64()) as u64 + chunk;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            k = k.min(due - sent);
        }
        let k = k as usize;
        fill_pattern(sent, &mut buf[..k]);
        s.write_all(&buf[..k])?;
        sent += k as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 512];
    while s.read(&mut sink)? > 0 {}
    Ok(())
}

/// A request `SEND N` or `SEND N PACE R`: N, and R if given.
fn parse_send(request: &str) -> Option<(u64, Option<u64>)> {
    let mut w = request.trim().strip_prefix("SEND ")?.split(' ');
    let n = w.next()?.parse().ok()?;
    let pace = match (w.next(), w.next(), w.next()) {
        (None, _, _) => None,
        (Some("PACE"), Some(r), None) => Some(r.parse().ok().filter(|r| *r > 0)?),
        _ => return None,
    };
    Some((n, pace))
}

/// Sends `SEND n` and reads to the end, checking every byte.
fn exchange(s: &mut TcpStream, n: u64, timeout: Duration) -> Result<(), String> {
    download(s, n, None, timeout, &|| {}).map(|_| ())
}

/// Sends `SEND n` (`SEND n PACE r`) and reads to the end, checking every
/// byte; calls `first` when the first bytes arrived. Returns the longest
/// wait between two reads.
fn download(
    s: &mut TcpStream,
    n: u64,
    pace: Option<u64>,
    timeout: Duration,
    first: &dyn Fn(),
) -> Result<Duration, String> {
    let fail = |e: &io::Error, got: u64| format!("{} bytes={got}", describe(e));
    s.set_read_timeout(Some(timeout)).map_err(|e| fail(&e, 0))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| fail(&e, 0))?;
    let request = match pace {
        Some(r) => format!("SEND {n} PACE {r}\n"),
        None => format!("SEND {n}\n"),
    };
    s.write_all(request.as_bytes()).map_err(|e| fail(&e, 0))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut longest = Duration::ZERO;
    let mut last: Option<Instant> = None;
    loop {
        let k = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(&e, got)),
        };
        let at = Instant::now();
        match last {
            Some(l) => longest = longest.max(at - l),
            None => first(),
        }
        last = Some(at);
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
    Ok(longest)
}

fn local_of(s: &TcpStream) -> String {
    s.local_addr()
        .map_or_else(|e| format!("unknown({e})"), |a| a.to_string())
}

/// `tcp-get`: connects, fetches `n` bytes and checks them.
pub fn tcp_get(addr: SocketAddr, n: u64, timeout: Duration) -> (bool, String) {
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

/// `tcp-download`: connects, fetches `n` bytes at `pace` bytes a second and
/// checks them; `out` gets the `downloading` line once bytes flow.
pub fn tcp_download(
    addr: SocketAddr,
    n: u64,
    pace: Option<u64>,
    timeout: Duration,
    out: &dyn Fn(String),
) -> (bool, String) {
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return (false, describe(&e)),
    };
    let local = local_of(&s);
    let first = || out(format!("downloading local={local}"));
    match download(&mut s, n, pace, timeout, &first) {
        Ok(longest) => (
            true,
            format!(
                "ok bytes={n} local={local} longest_pause_ms={:.1}",
                longest.as_secs_f64() * 1e3
            ),
        ),
        Err(e) => (false, format!("{e} local={local}")),
    }
}

/// `tcp-connect`: connects and closes.
pub fn tcp_connect(addr: SocketAddr, timeout: Duration) -> (bool, String) {
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
pub fn tcp_many(addr: SocketAddr, count: usize, bytes: u64, timeout: Duration) -> (bool, String) {
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

/// The next datagram on `sock`, or `None` when there is none yet (its read
/// timeout passed) or the socket reports an ICMP error about an earlier
/// datagram it sent (not this receiver's problem).
fn recv_datagram(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, std::net::SocketAddr)>> {
    match sock.recv_from(buf) {
        Ok(x) => Ok(Some(x)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock
                    | ErrorKind::TimedOut
                    | ErrorKind::Interrupted
                    | ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Echoes every datagram back, reporting `peer=IP:PORT` for each first,
/// until `stop` is set (seen within [`STOP_POLL`]).
pub fn udp_echo(sock: &UdpSocket, stop: &AtomicBool, out: &dyn Fn(String)) -> io::Result<()> {
    sock.set_read_timeout(Some(STOP_POLL))?;
    let mut buf = vec![0u8; 65536];
    while !stopped(stop) {
        let Some((n, peer)) = recv_datagram(sock, &mut buf)? else {
            continue;
        };
        out(format!("peer={}", canonical(peer)));
        // A lost echo is the client's timeout to report.
        let _ = sock.send_to(&buf[..n], peer);
    }
    Ok(())
}

/// `udp-req`: sends a datagram every second until its echo comes back.
pub fn udp_req(addr: SocketAddr, timeout: Duration) -> (bool, String) {
    let attempt = || -> io::Result<(bool, String)> {
        let sock = UdpSocket::bind((any_of(addr), 0))?;
        sock.connect(addr)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let payload = format!("xdpgw probe {} {nanos}", std::process::id());
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

/// The unspecified address of `addr`'s family: where a client socket for
/// `addr` binds.
fn any_of(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// `peer` as a server reports it: an IPv4 client of a socket bound to
/// `::` as the IPv4 address it is, not `[::ffff:a.b.c.d]`.
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Whether `stop` is set.
fn stopped(stop: &AtomicBool) -> bool {
    // Relaxed: the flag carries no data; a late observation only delays the
    // stop by one round.
    stop.load(Ordering::Relaxed)
}

/// `tcp-echo`: accepts connections forever, echoing each in its own thread
/// and reporting `closed peer=... bytes=N result=...` when it ends.
pub fn serve_echo(listener: TcpListener, out: Arc<dyn Fn(String) + Send + Sync>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let out = Arc::clone(&out);
                let spawned =
                    std::thread::Builder::new()
                        .stack_size(THREAD_STACK)
                        .spawn(move || {
                            let peer = stream.peer_addr().map_or_else(
                                |e| format!("unknown({e})"),
                                |a| canonical(a).to_string(),
                            );
                            let (bytes, result) = echo_connection(stream);
                            out(format!("closed peer={peer} bytes={bytes} result={result}"));
                        });
                if let Err(e) = spawned {
                    eprintln!("echo server: cannot start a connection thread: {e}");
                }
            }
            Err(e) => eprintln!("echo server: accept: {e}"),
        }
    }
}

/// Echoes everything the client sends, checking it is the pattern from
/// offset 0, until the client's FIN; then closes. Returns the bytes echoed
/// and the outcome (`ok`, `mismatch offset=N`, or an error's word).
fn echo_connection(mut s: TcpStream) -> (u64, String) {
    let mut got = 0u64;
    let mut run = || -> io::Result<String> {
        s.set_read_timeout(Some(SERVER_IDLE))?;
        s.set_write_timeout(Some(SERVER_IDLE))?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        loop {
            let k = match s.read(&mut buf) {
                Ok(0) => return Ok("ok".into()),
                Ok(k) => k,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            fill_pattern(got, &mut want[..k]);
            if let Some(i) = (0..k).find(|&i| buf[i] != want[i]) {
                return Ok(format!("mismatch offset={}", got + i as u64));
            }
            s.write_all(&buf[..k])?;
            got += k as u64;
        }
    };
    let result = run().unwrap_or_else(|e| describe(&e));
    (got, result)
}

/// What `tcp-stream` does.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    pub addr: SocketAddr,
    pub count: usize,
    /// Bytes per write.
    pub chunk: usize,
    /// From one write to the next.
    pub interval: Duration,
    /// Connect timeout and the longest wait for any one read or write.
    pub timeout: Duration,
    /// How often each connection reports its progress (`progress` lines);
    /// None: never.
    pub progress: Option<Duration>,
}

/// How one `tcp-stream` connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StreamResult {
    local: String,
    sent: u64,
    echoed: u64,
    /// `ok`, or what went wrong (`reset`, `timeout`, `mismatch offset=N`, ...).
    outcome: String,
}

/// `tcp-stream`: `spec.count` connections streaming until `stop`; prints
/// the readiness line, one line per connection and a summary; true if
/// every connection ended `ok`.
pub fn tcp_stream(spec: &StreamSpec, stop: &AtomicBool, out: &dyn Fn(String)) -> bool {
    let (tx, rx) = mpsc::channel::<StreamEvent>();
    let mut spawn_errors = 0usize;
    let results: Vec<StreamResult> = std::thread::scope(|sc| {
        let mut handles = Vec::with_capacity(spec.count);
        for i in 0..spec.count {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn_scoped(sc, move || stream_connection(i, spec, stop, &tx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    eprintln!("stream client: cannot start a connection thread: {e}");
                    spawn_errors += 1;
                }
            }
        }
        drop(tx);
        let (mut streaming, mut failed) = (0usize, spawn_errors);
        let mut announced = handles.is_empty();
        if announced {
            out(format!("streaming connections=0 failed={failed}"));
        }
        // Until every connection's thread has ended (and dropped its sender).
        while let Ok(event) = rx.recv() {
            match event {
                StreamEvent::Ready(true) => streaming += 1,
                StreamEvent::Ready(false) => failed += 1,
                StreamEvent::Line(line) => out(line),
            }
            if !announced && streaming + failed == spec.count {
                announced = true;
                out(format!("streaming connections={streaming} failed={failed}"));
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| StreamResult {
                    local: "-".into(),
                    sent: 0,
                    echoed: 0,
                    outcome: "error panic".into(),
                })
            })
            .collect()
    });
    let (mut ok, mut sent, mut echoed) = (0usize, 0u64, 0u64);
    for (i, r) in results.iter().enumerate() {
        out(format!(
            "conn {i} local={} sent={} echoed={} result={}",
            r.local, r.sent, r.echoed, r.outcome
        ));
        ok += usize::from(r.outcome == "ok");
        sent += r.sent;
        echoed += r.echoed;
    }
    let failed = spec.count - ok;
    out(format!(
        "done connections={} ok={ok} failed={failed} sent={sent} echoed={echoed}",
        spec.count
    ));
    failed == 0
}

/// What a `tcp-stream` connection tells the thread that prints.
#[derive(Debug)]
enum StreamEvent {
    /// Once: true after the first exchange, false if it never got that far.
    Ready(bool),
    /// A `stall ...` or `progress ...` line.
    Line(String),
}

/// An exchange of `tcp-stream` (a write and its echo) that takes longer
/// than this is reported as a `stall` line when it completes.
pub const STALL_REPORT: Duration = Duration::from_millis(200);

/// Milliseconds since the Unix epoch: a time stamp that other processes of
/// the machine can compare with theirs.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One `tcp-stream` connection (number `index`): connects, then writes a
/// chunk and reads its echo back (checking every byte) every
/// `spec.interval` until `stop`; then half-closes and waits for the server
/// to close. Sends [`StreamEvent::Ready`] once, a `stall` line for every
/// exchange slower than [`STALL_REPORT`] and a `progress` line every
/// `spec.progress`.
fn stream_connection(
    index: usize,
    spec: &StreamSpec,
    stop: &AtomicBool,
    events: &mpsc::Sender<StreamEvent>,
) -> StreamResult {
    let ready = |ok: bool| {
        let _ = events.send(StreamEvent::Ready(ok));
    };
    let mut r = StreamResult {
        local: "-".into(),
        sent: 0,
        echoed: 0,
        outcome: String::new(),
    };
    let mut s = match TcpStream::connect_timeout(&spec.addr, spec.timeout) {
        Ok(s) => s,
        Err(e) => {
            ready(false);
            r.outcome = describe(&e);
            return r;
        }
    };
    r.local = local_of(&s);
    let mut announced = false;
    let mut run = || -> Result<(), String> {
        let io = |e: io::Error| describe(&e);
        s.set_read_timeout(Some(spec.timeout)).map_err(io)?;
        s.set_write_timeout(Some(spec.timeout)).map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        let mut wbuf = vec![0u8; spec.chunk];
        let mut rbuf = vec![0u8; spec.chunk];
        let mut want = vec![0u8; spec.chunk];
        let mut next = Instant::now();
        let mut reported = next;
        loop {
            let began = Instant::now();
            fill_pattern(r.sent, &mut wbuf);
            s.write_all(&wbuf).map_err(io)?;
            r.sent += wbuf.len() as u64;
            while r.echoed < r.sent {
                let room =
                    usize::try_from(r.sent - r.echoed).map_or(rbuf.len(), |n| n.min(rbuf.len()));
                let k = match s.read(&mut rbuf[..room]) {
                    Ok(0) => return Err(format!("closed by the server after {} bytes", r.echoed)),
                    Ok(k) => k,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(describe(&e)),
                };
                fill_pattern(r.echoed, &mut want[..k]);
                if let Some(i) = (0..k).find(|&i| rbuf[i] != want[i]) {
                    return Err(format!("mismatch offset={}", r.echoed + i as u64));
                }
                r.echoed += k as u64;
            }
            let took = began.elapsed();
            if took > STALL_REPORT {
                let _ = events.send(StreamEvent::Line(format!(
                    "stall conn={index} ms={:.1} echoed={} at_ms={}",
                    took.as_secs_f64() * 1000.0,
                    r.echoed,
                    epoch_ms()
                )));
            }
            if spec.progress.is_some_and(|p| reported.elapsed() >= p) {
                reported = Instant::now();
                let _ = events.send(StreamEvent::Line(format!(
                    "progress conn={index} echoed={} at_ms={}",
                    r.echoed,
                    epoch_ms()
                )));
            }
            if !announced {
                announced = true;
                ready(true);
            }
            if stopped(stop) {
                break;
            }
            next += spec.interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                // Behind (descheduled): carry on from now, without a burst.
                next = now;
            }
            if stopped(stop) {
                break;
            }
        }
        s.shutdown(Shutdown::Write).map_err(io)?;
        // The server closes once it has echoed everything: nothing more
        // may arrive.
        let mut rest = [0u8; 1024];
        loop {
            match s.read(&mut rest) {
                Ok(0) => return Ok(()),
                Ok(k) => return Err(format!("error {k} unexpected bytes after the echo")),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    };
    let outcome = run();
    if !announced {
        ready(false);
    }
    r.outcome = match outcome {
        Ok(()) => "ok".into(),
        Err(e) => e,
    };
    r
}

/// Length of a numbered datagram's header: magic, session id, number.
pub const SEQ_HEADER: usize = 20;
/// A numbered datagram of `udp-send`.
const SEQ_MAGIC: &[u8; 4] = b"XGSQ";
/// The end marker of `udp-send`: the number of datagrams sent follows.
const END_MAGIC: &[u8; 4] = b"XGEN";
/// The highest datagram number `udp-count` keeps track of (a 16 MiB bitmap
/// at most); higher ones count as malformed.
const MAX_SEQ: u64 = 1 << 27;

/// A big-endian u64 from the first 8 bytes of `b` (callers check the length).
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// `udp-send`: numbered datagrams at `rate` a second until `stop`, then the
/// end marker; true if every send succeeded.
pub fn udp_send(
    addr: SocketAddr,
    rate: u32,
    size: usize,
    stop: &AtomicBool,
    out: &dyn Fn(String),
) -> bool {
    let run = || -> io::Result<(u64, u64, u64)> {
        let sock = UdpSocket::bind((any_of(addr), 0))?;
        sock.connect(addr)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let session = (u64::from(std::process::id()) << 32) ^ nanos;
        out(format!(
            "sending local={} session={session} rate={rate}",
            sock.local_addr()?
        ));
        let interval_ns = 1_000_000_000 / u64::from(rate.max(1));
        let mut buf = vec![0u8; size.max(SEQ_HEADER)];
        buf[..4].copy_from_slice(SEQ_MAGIC);
        buf[4..12].copy_from_slice(&session.to_be_bytes());
        let (mut anchor, mut since_anchor) = (Instant::now(), 0u64);
        let (mut seq, mut errors) = (0u64, 0u64);
        while !stopped(stop) {
            let due = anchor + Duration::from_nanos(interval_ns.saturating_mul(since_anchor));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
            if now - due > Duration::from_millis(100) {
                // Descheduled for a while: go on from now rather than catch
                // up with a burst.
                (anchor, since_anchor) = (now, 0);
            }
            buf[12..20].copy_from_slice(&seq.to_be_bytes());
            match sock.send(&buf) {
                Ok(_) => seq += 1,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    errors += 1;
                    eprintln!("datagram sender: datagram {seq}: {e}");
                }
            }
            since_anchor += 1;
        }
        let mut end = [0u8; SEQ_HEADER];
        end[..4].copy_from_slice(END_MAGIC);
        end[4..12].copy_from_slice(&session.to_be_bytes());
        end[12..20].copy_from_slice(&seq.to_be_bytes());
        for i in 0..5 {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(e) = sock.send(&end) {
                errors += 1;
                eprintln!("datagram sender: end marker: {e}");
            }
        }
        Ok((session, seq, errors))
    };
    match run() {
        Ok((session, sent, errors)) => {
            out(format!(
                "sent packets={sent} session={session} errors={errors}"
            ));
            errors == 0
        }
        Err(e) => {
            out(describe(&e));
            false
        }
    }
}

/// One sender's datagrams, as `udp-count` saw them.
#[derive(Debug)]
struct Session {
    peer: SocketAddr,
    /// Bit n: datagram n arrived.
    seen: Vec<u64>,
    received: u64,
    distinct: u64,
    duplicates: u64,
    reordered: u64,
    /// Datagrams from another address than the first one's (a NAT binding
    /// that changed under the flow).
    moved: u64,
    highest: Option<u64>,
    /// The count the end marker announced.
    expected: Option<u64>,
    /// When the last datagram came, and its number.
    last: Option<(Instant, u64)>,
}

impl Session {
    fn new(peer: SocketAddr) -> Session {
        Session {
            peer,
            seen: Vec::new(),
            received: 0,
            distinct: 0,
            duplicates: 0,
            reordered: 0,
            moved: 0,
            highest: None,
            expected: None,
            last: None,
        }
    }

    /// Notes datagram `seq` arriving `now`; a `gap ...` line if the last
    /// one came more than [`GAP_REPORT`] before.
    fn gap(&mut self, id: u64, seq: u64, now: Instant) -> Option<String> {
        let line = self.last.and_then(|(at, prev)| {
            let silent = now.duration_since(at);
            (silent > GAP_REPORT).then(|| {
                format!(
                    "gap session={id} after={prev} next={seq} missing={} ms={:.1} at_ms={}",
                    seq.saturating_sub(prev).saturating_sub(1),
                    silent.as_secs_f64() * 1000.0,
                    epoch_ms()
                )
            })
        });
        self.last = Some((now, seq));
        line
    }

    fn record(&mut self, seq: u64, peer: SocketAddr) {
        self.received += 1;
        self.moved += u64::from(peer != self.peer);
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        if self.highest.is_some_and(|h| seq < h) {
            self.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
    }

    /// Distinct datagrams numbered below `n`.
    fn distinct_below(&self, n: u64) -> u64 {
        let full = (n / 64) as usize;
        let mut c: u64 = self
            .seen
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if let Some(w) = self.seen.get(full) {
            let mask = (1u64 << (n % 64)) - 1;
            c += u64::from((w & mask).count_ones());
        }
        c
    }

    /// Numbers never received: below the announced count, or (before the
    /// end marker) below the highest received.
    fn lost(&self) -> u64 {
        match (self.expected, self.highest) {
            (Some(n), _) => n - self.distinct_below(n),
            (None, Some(h)) => h + 1 - self.distinct_below(h + 1),
            (None, None) => 0,
        }
    }

    fn line(&self, word: &str, id: u64, malformed: u64) -> String {
        let expected = self
            .expected
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!(
            "{word} session={id} peer={} expected={expected} received={} lost={} duplicates={} reordered={} moved={} malformed={malformed}",
            self.peer,
            self.received,
            self.lost(),
            self.duplicates,
            self.reordered,
            self.moved
        )
    }
}

/// A silence of a sender longer than this is reported as a `gap` line
/// when its next datagram comes.
pub const GAP_REPORT: Duration = Duration::from_millis(100);

/// `udp-count`: counts numbered datagrams per sender until `stop`; a `gap`
/// line whenever a sender's datagrams resume after more than
/// [`GAP_REPORT`].
pub fn udp_count(sock: &UdpSocket, stop: &AtomicBool, out: &dyn Fn(String)) -> io::Result<()> {
    sock.set_read_timeout(Some(STOP_POLL))?;
    let mut sessions: BTreeMap<u64, Session> = BTreeMap::new();
    let mut malformed = 0u64;
    let mut buf = vec![0u8; 65536];
    while !stopped(stop) {
        let Some((n, peer)) = recv_datagram(sock, &mut buf)? else {
            continue;
        };
        let peer = canonical(peer);
        let d = &buf[..n];
        if n < SEQ_HEADER {
            malformed += 1;
            continue;
        }
        let (id, value) = (be64(&d[4..12]), be64(&d[12..20]));
        let is_seq = &d[..4] == SEQ_MAGIC && value < MAX_SEQ;
        let is_end = &d[..4] == END_MAGIC && value <= MAX_SEQ;
        if !is_seq && !is_end {
            malformed += 1;
            continue;
        }
        let s = sessions.entry(id).or_insert_with(|| {
            out(format!("receiving session={id} peer={peer}"));
            Session::new(peer)
        });
        if is_seq {
            s.record(value, peer);
            if let Some(line) = s.gap(id, value, Instant::now()) {
                out(line);
            }
        } else if s.expected.is_none() {
            s.expected = Some(value);
            out(s.line("done", id, malformed));
        }
    }
    for (id, s) in &sessions {
        out(s.line("final", *id, malformed));
    }
    Ok(())
}

/// A lab server on a thread of this process, its socket opened inside a
/// namespace (which the socket keeps, whatever thread uses it): what
/// `xdpgw demo` runs where the tests run `xdpgw-lab tcp-serve` or
/// `udp-echo` in a namespace. Its report lines are collected as it prints
/// them; dropping it stops it.
#[derive(Debug)]
pub struct Server {
    what: String,
    port: u16,
    stop: Arc<AtomicBool>,
    /// A TCP server's listening socket, as a stream (std offers `shutdown`
    /// only there): shutting it down ends a blocked accept.
    listener: Option<TcpStream>,
    events: mpsc::Receiver<String>,
    lines: Vec<String>,
    /// Lines already examined by [`Server::try_wait_line`].
    seen: usize,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A [`serve_tcp`] server on `port` of `ns` (0: any free port, see
    /// [`Server::port`]): `peer=IP:PORT` for each connection.
    pub fn tcp(ns: &Netns, port: u16) -> Server {
        Server::tcp_on(ns, Ipv4Addr::UNSPECIFIED.into(), port)
    }

    /// [`Server::tcp`] bound to `addr` (`::` takes IPv6 and IPv4).
    pub fn tcp_on(ns: &Netns, addr: IpAddr, port: u16) -> Server {
        let listener = ns
            .run_in(move || TcpListener::bind((addr, port)))
            .unwrap_or_else(|e| panic!("cannot listen on TCP port {port} in {}: {e}", ns.name()));
        let local = listener.local_addr().map_or(port, |a| a.port());
        let handle = listener
            .try_clone()
            .map(|l| TcpStream::from(OwnedFd::from(l)))
            .unwrap_or_else(|e| panic!("cannot duplicate a listening socket: {e}"));
        Server::start(
            format!("TCP server on port {local} in {}", ns.name()),
            local,
            Some(handle),
            move |stop, out| serve_tcp(listener, stop, out),
        )
    }

    /// A [`udp_echo`] server on `port` of `ns`: `peer=IP:PORT` for each
    /// datagram, echoed.
    pub fn udp_echo(ns: &Netns, port: u16) -> Server {
        Server::udp_echo_on(ns, Ipv4Addr::UNSPECIFIED.into(), port)
    }

    /// [`Server::udp_echo`] bound to `addr`.
    pub fn udp_echo_on(ns: &Netns, addr: IpAddr, port: u16) -> Server {
        let sock = ns
            .run_in(move || UdpSocket::bind((addr, port)))
            .unwrap_or_else(|e| panic!("cannot bind UDP port {port} in {}: {e}", ns.name()));
        let local = sock.local_addr().map_or(port, |a| a.port());
        Server::start(
            format!("UDP echo server on port {local} in {}", ns.name()),
            local,
            None,
            move |stop, out| {
                if let Err(e) = udp_echo(&sock, stop, out) {
                    out(format!("error {e}"));
                }
            },
        )
    }

    fn start(
        what: String,
        port: u16,
        listener: Option<TcpStream>,
        serve: impl FnOnce(&AtomicBool, &dyn Fn(String)) + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("lab server {port}"))
            .spawn(move || {
                serve(&flag, &|line| {
                    // The guard may be gone while a line is reported.
                    let _ = tx.send(line);
                })
            })
            .unwrap_or_else(|e| panic!("cannot start the {what}: {e}"));
        Server {
            what,
            port,
            stop,
            listener,
            events,
            lines: Vec::new(),
            seen: 0,
            thread: Some(thread),
        }
    }

    /// What it is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The port it serves.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits at most `timeout` for the next line the server reports for
    /// which `pred` holds (lines examined by earlier waits are not examined
    /// again), and returns it; None if none comes. Checks the interrupt
    /// flag ([`crate::check_interrupt`]) while it waits.
    pub fn try_wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.lines[self.seen..].iter().position(|l| pred(l)) {
                let at = self.seen + i;
                self.seen = at + 1;
                return Some(self.lines[at].clone());
            }
            self.seen = self.lines.len();
            check_interrupt();
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self
                .events
                .recv_timeout((deadline - now).min(Duration::from_millis(100)))
            {
                Ok(line) => self.lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Stops the server and returns every line it reported.
    pub fn stop(mut self) -> Vec<String> {
        self.halt();
        let mut lines = std::mem::take(&mut self.lines);
        lines.extend(self.events.try_iter());
        lines
    }

    fn halt(&mut self) {
        // Relaxed: the flag carries no data; the thread is joined below.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(listener) = &self.listener {
            // SHUT_RD of a listening socket disconnects it, and a blocked
            // accept returns EINVAL (Linux's inet_shutdown() calls
            // tcp_disconnect() for a TCP_LISTEN socket and wakes its
            // waiters).
            let _ = listener.shutdown(Shutdown::Read);
        }
        if let Some(thread) = self.thread.take() {
            // A panic of the server thread was printed where it happened.
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A tcp-serve on loopback in a thread; its report lines go to the
    /// returned channel.
    fn tcp_server() -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let tx = Mutex::new(tx);
            serve_tcp(listener, &AtomicBool::new(false), &|l| {
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
    fn tcp_download_is_paced_and_verified() {
        let (addr, _peers) = tcp_server();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let began = Instant::now();
        let (ok, line) = tcp_download(
            addr,
            200_000,
            Some(1_000_000),
            Duration::from_secs(10),
            &|l| {
                let _ = tx.lock().expect("lock").send(l);
            },
        );
        assert!(ok, "{line}");
        // 200 kB at 1 MB/s: about 0.2 s, however fast loopback is.
        assert!(began.elapsed() >= Duration::from_millis(150), "not paced");
        assert!(
            line.starts_with("ok bytes=200000 local=127.0.0.1:")
                && line.contains(" longest_pause_ms="),
            "{line}"
        );
        let first = rx.try_recv().expect("downloading line");
        assert!(first.starts_with("downloading local=127.0.0.1:"), "{first}");
        assert_eq!(parse_send("SEND 5 PACE 7\n"), Some((5, Some(7))));
        assert_eq!(parse_send("SEND 5"), Some((5, None)));
        for bad in [
            "SEND 5 PACE 0",
            "SEND 5 PACE",
            "SEND 5 FAST 7",
            "SEND x",
            "SEND 5 PACE 7 8",
        ] {
            assert_eq!(parse_send(bad), None, "{bad}");
        }
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
            let _ = udp_echo(&sock, &AtomicBool::new(false), &|l| {
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

    /// A tcp-echo on loopback in a thread; its report lines go to the
    /// returned channel.
    fn echo_server() -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        std::thread::spawn(move || {
            serve_echo(
                listener,
                Arc::new(move |l| {
                    let _ = tx.lock().expect("lock").send(l);
                }),
            );
        });
        (addr, rx)
    }

    use crate::parse::{field, field_number as num};

    /// Runs `tcp_stream` in a thread; its lines go to the returned channel.
    fn stream_in_thread(
        spec: StreamSpec,
        stop: Arc<AtomicBool>,
    ) -> (std::thread::JoinHandle<bool>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let h = std::thread::spawn(move || {
            tcp_stream(&spec, &stop, &|l| {
                let _ = tx.send(l);
            })
        });
        (h, rx)
    }

    #[test]
    fn tcp_stream_streams_until_stopped_and_accounts_every_byte() {
        let (addr, closed) = echo_server();
        let stop = Arc::new(AtomicBool::new(false));
        let spec = StreamSpec {
            addr,
            count: 5,
            chunk: 1000,
            interval: Duration::from_millis(2),
            timeout: Duration::from_secs(10),
            progress: None,
        };
        let (h, lines) = stream_in_thread(spec, Arc::clone(&stop));
        let first = lines.recv_timeout(Duration::from_secs(10)).expect("ready");
        assert_eq!(first, "streaming connections=5 failed=0");
        // Let a few exchanges happen on every connection.
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        assert!(h.join().expect("join"));
        let out: Vec<String> = lines.try_iter().collect();
        assert_eq!(out.len(), 6, "{out:?}");
        let mut total = 0;
        for (i, l) in out[..5].iter().enumerate() {
            assert!(l.starts_with(&format!("conn {i} local=127.0.0.1:")), "{l}");
            assert_eq!(field(l, "result"), "ok", "{l}");
            assert_eq!(num(l, "sent"), num(l, "echoed"), "{l}");
            assert!(num(l, "sent") >= 1000, "{l}");
            assert_eq!(num(l, "sent") % 1000, 0, "whole writes only: {l}");
            total += num(l, "sent");
        }
        assert_eq!(
            out[5],
            format!("done connections=5 ok=5 failed=0 sent={total} echoed={total}")
        );
        // The server saw every connection end cleanly, with the same bytes.
        let mut server_total = 0;
        for _ in 0..5 {
            let l = closed
                .recv_timeout(Duration::from_secs(10))
                .expect("closed");
            assert!(l.starts_with("closed peer=127.0.0.1:"), "{l}");
            assert_eq!(field(&l, "result"), "ok", "{l}");
            server_total += num(&l, "bytes");
        }
        assert_eq!(server_total, total);
    }

    #[test]
    fn tcp_stream_reports_connections_that_fail() {
        let stop = Arc::new(AtomicBool::new(true));
        let spec = StreamSpec {
            addr: closed_port(),
            count: 3,
            chunk: 10,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
            progress: None,
        };
        let (h, lines) = stream_in_thread(spec, stop);
        assert!(!h.join().expect("join"));
        let out: Vec<String> = lines.try_iter().collect();
        assert_eq!(out[0], "streaming connections=0 failed=3");
        assert_eq!(out[1], "conn 0 local=- sent=0 echoed=0 result=refused");
        assert_eq!(out[4], "done connections=3 ok=0 failed=3 sent=0 echoed=0");
    }

    #[test]
    fn tcp_stream_detects_a_garbled_echo() {
        // Echoes in 500-byte pieces with byte 1200 changed.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 500];
                for piece in 0..3 {
                    if s.read_exact(&mut buf).is_err() {
                        break;
                    }
                    if piece == 2 {
                        buf[200] ^= 1;
                    }
                    let _ = s.write_all(&buf);
                }
            }
        });
        let spec = StreamSpec {
            addr,
            count: 1,
            chunk: 500,
            interval: Duration::from_millis(1),
            timeout: Duration::from_secs(10),
            progress: None,
        };
        let (h, lines) = stream_in_thread(spec, Arc::new(AtomicBool::new(false)));
        assert!(!h.join().expect("join"));
        let out: Vec<String> = lines.try_iter().collect();
        assert_eq!(out[0], "streaming connections=1 failed=0");
        assert!(
            out[1].ends_with("result=mismatch offset=1200"),
            "{}",
            out[1]
        );
    }

    #[test]
    fn echo_server_reports_content_that_is_not_the_pattern() {
        let (addr, closed) = echo_server();
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut data = vec![0u8; 300];
        fill_pattern(0, &mut data);
        data[250] ^= 0xff;
        s.write_all(&data).expect("write");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let l = closed
            .recv_timeout(Duration::from_secs(10))
            .expect("closed");
        assert!(l.ends_with("bytes=0 result=mismatch offset=250"), "{l}");
    }

    /// A udp-count on loopback in a thread, stopped by the returned flag.
    fn counter() -> (
        SocketAddr,
        Arc<AtomicBool>,
        std::thread::JoinHandle<()>,
        mpsc::Receiver<String>,
    ) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let h = std::thread::spawn(move || {
            udp_count(&sock, &flag, &|l| {
                let _ = tx.send(l);
            })
            .expect("udp_count");
        });
        (addr, stop, h, rx)
    }

    #[test]
    fn udp_send_and_count_agree() {
        let (addr, stop_count, counting, lines) = counter();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, sent) = mpsc::channel();
        let flag = Arc::clone(&stop);
        // 1,000 a second: what 100 ms send fits in the receiver's socket
        // buffer even while a loaded machine keeps it from running (at
        // 5,000 it lost datagrams at a load average of 12 on 2 cores).
        let sender = std::thread::spawn(move || {
            udp_send(addr, 1000, 100, &flag, &|l| {
                let _ = tx.send(l);
            })
        });
        let sending = sent.recv_timeout(Duration::from_secs(10)).expect("sending");
        assert!(sending.starts_with("sending local=127.0.0.1:"), "{sending}");
        assert_eq!(field(&sending, "rate"), "1000");
        let session = field(&sending, "session").to_owned();
        let receiving = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("receiving");
        assert_eq!(field(&receiving, "session"), session);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        assert!(sender.join().expect("join"));
        let result = sent.recv_timeout(Duration::from_secs(10)).expect("sent");
        let n = num(&result, "packets");
        assert!(n > 0, "{result}");
        assert_eq!(
            result,
            format!("sent packets={n} session={session} errors=0")
        );
        let done = lines.recv_timeout(Duration::from_secs(10)).expect("done");
        assert_eq!(
            done,
            format!(
                "done session={session} peer={} expected={n} received={n} lost=0 duplicates=0 reordered=0 moved=0 malformed=0",
                field(&receiving, "peer")
            )
        );
        stop_count.store(true, Ordering::Relaxed);
        counting.join().expect("join");
        let last = lines.recv_timeout(Duration::from_secs(10)).expect("final");
        assert!(
            last.starts_with(&format!("final session={session} ")),
            "{last}"
        );
    }

    #[test]
    fn udp_count_finds_gaps_duplicates_reordering_and_garbage() {
        let (addr, stop, counting, lines) = counter();
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let datagram = |magic: &[u8; 4], v: u64| {
            let mut d = [0u8; SEQ_HEADER];
            d[..4].copy_from_slice(magic);
            d[4..12].copy_from_slice(&7u64.to_be_bytes());
            d[12..20].copy_from_slice(&v.to_be_bytes());
            d
        };
        for seq in [0u64, 1, 3, 2, 2, 6] {
            sock.send_to(&datagram(SEQ_MAGIC, seq), addr).expect("send");
        }
        other.send_to(&datagram(SEQ_MAGIC, 7), addr).expect("send");
        sock.send_to(b"short", addr).expect("send");
        sock.send_to(&datagram(b"XXXX", 1), addr).expect("send");
        sock.send_to(&datagram(SEQ_MAGIC, MAX_SEQ), addr)
            .expect("send");
        sock.send_to(&datagram(END_MAGIC, 9), addr).expect("send");
        sock.send_to(&datagram(END_MAGIC, 9), addr).expect("send");
        let receiving = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("receiving");
        let peer = field(&receiving, "peer").to_owned();
        assert_eq!(peer, sock.local_addr().expect("addr").to_string());
        let done = lines.recv_timeout(Duration::from_secs(10)).expect("done");
        // 0..9 expected; 4, 5 and 8 never came; 2 twice; 2 after 3; 7 from
        // another address.
        assert_eq!(
            done,
            format!("done session=7 peer={peer} expected=9 received=7 lost=3 duplicates=1 reordered=1 moved=1 malformed=3")
        );
        stop.store(true, Ordering::Relaxed);
        counting.join().expect("join");
        let last = lines.recv_timeout(Duration::from_secs(10)).expect("final");
        assert_eq!(last, done.replacen("done", "final", 1));
    }

    #[test]
    fn session_counts_losses_before_the_end_marker() {
        let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let mut s = Session::new(peer);
        assert_eq!(s.lost(), 0);
        for seq in [0u64, 2, 64, 130] {
            s.record(seq, peer);
        }
        assert_eq!(s.lost(), 131 - 4);
        s.expected = Some(64);
        assert_eq!(s.lost(), 64 - 2);
        s.expected = Some(200);
        assert_eq!(s.lost(), 200 - 4);
    }

    /// A namespace for the in-process servers, or None (skipped) without
    /// root and `ip`.
    fn netns(what: &str) -> Option<Netns> {
        crate::require_root(what, &["ip"]).then(|| crate::host_netns("traffic"))
    }

    #[test]
    fn in_process_tcp_server_serves_inside_its_namespace() {
        let Some(ns) = netns("in_process_tcp_server_serves_inside_its_namespace") else {
            return;
        };
        let mut server = Server::tcp(&ns, 0);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        let (ok, line) = ns.run_in(move || tcp_get(addr, 100_000, Duration::from_secs(10)));
        assert!(ok, "{line}");
        let peer = server
            .try_wait_line(Duration::from_secs(10), |l| l.starts_with("peer="))
            .expect("a peer line");
        assert!(peer.starts_with("peer=127.0.0.1:"), "{peer}");
        // The socket is the namespace's: this namespace's loopback has
        // nothing on that port.
        let here = tcp_connect(addr, Duration::from_secs(5));
        assert_eq!(here, (false, "refused".to_owned()));
        let lines = server.stop();
        assert_eq!(lines, [peer]);
    }

    #[test]
    fn in_process_udp_echo_answers_and_stops() {
        let Some(ns) = netns("in_process_udp_echo_answers_and_stops") else {
            return;
        };
        let mut server = Server::udp_echo(&ns, 0);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        let (ok, line) = ns.run_in(move || udp_req(addr, Duration::from_secs(10)));
        assert!(ok, "{line}");
        assert!(server
            .try_wait_line(Duration::from_secs(10), |l| l
                .starts_with("peer=127.0.0.1:"))
            .is_some());
        let lines = server.stop();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.starts_with("peer=")),
            "{lines:?}"
        );
    }

    #[test]
    fn tools_work_over_ipv6_and_report_ipv4_peers_of_a_dual_stack_socket_as_ipv4() {
        let what = "tools_work_over_ipv6_and_report_ipv4_peers_of_a_dual_stack_socket_as_ipv4";
        if !crate::require_root(what, &["ip"]) {
            return;
        }
        let ns = Netns::new("traffic6");
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "0");
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let lines = ns.run_in(|| {
            let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind [::]");
            let port = listener.local_addr().expect("addr").port();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let tx = Mutex::new(tx);
                serve_tcp(listener, &AtomicBool::new(false), &|l| {
                    let _ = tx.lock().expect("lock").send(l);
                });
            });
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let got6 = tcp_get(v6, 1000, Duration::from_secs(10));
            let got4 = tcp_get(v4, 1000, Duration::from_secs(10));
            let sock = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind udp [::]");
            let udp = SocketAddr::from((Ipv6Addr::LOCALHOST, sock.local_addr().expect("a").port()));
            let (utx, urx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = udp_echo(&sock, &AtomicBool::new(false), &|l| {
                    let _ = utx.send(l);
                });
            });
            let req = udp_req(udp, Duration::from_secs(10));
            let peers: Vec<String> = (0..2)
                .filter_map(|_| rx.recv_timeout(Duration::from_secs(10)).ok())
                .collect();
            let upeer = urx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_default();
            (got6, got4, req, peers, upeer)
        });
        let (got6, got4, req, peers, upeer) = lines;
        assert!(
            got6.0 && got6.1.starts_with("ok bytes=1000 local=[::1]:"),
            "{got6:?}"
        );
        assert!(
            got4.0 && got4.1.starts_with("ok bytes=1000 local=127.0.0.1:"),
            "{got4:?}"
        );
        assert!(req.0 && req.1.starts_with("ok local=[::1]:"), "{req:?}");
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert!(peers[0].starts_with("peer=[::1]:"), "{peers:?}");
        // Not [::ffff:127.0.0.1]:
        assert!(peers[1].starts_with("peer=127.0.0.1:"), "{peers:?}");
        assert!(upeer.starts_with("peer=[::1]:"), "{upeer}");
    }

    #[test]
    fn a_panic_in_the_namespace_thread_reaches_the_caller() {
        let Some(ns) = netns("a_panic_in_the_namespace_thread_reaches_the_caller") else {
            return;
        };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ns.run_in(|| -> () { panic!("inside") })
        }));
        let payload = caught.expect_err("the panic is resumed");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
    }
}
