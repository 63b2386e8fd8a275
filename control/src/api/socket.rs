//! The control socket's transport: binding it, and serving its clients at
//! the same time, within limits, so that one idle, slow or hostile local
//! client cannot hold up the others nor make the gateway's memory grow.
//!
//! Each connection is served by a thread of its own (its commands run
//! there, and so do the streams of `trace` and `ct-events`), at most
//! [`SocketLimits::max_clients`] of them. A client has
//! [`SocketLimits::idle_timeout`] to send each complete request line, of at
//! most [`SocketLimits::max_request`] bytes; a write to it waits at most
//! [`SocketLimits::write_timeout`] for it to read. Answers that could be
//! long (the conntrack listings) are produced a chunk at a time as the
//! client reads them ([`Control::respond`]).
//!
//! When every place is taken, a new client takes the place of the one that
//! has been waiting longest on its own client (to send a request, or to
//! read its answer): that connection is closed. Streams are not displaced;
//! there are few of them (one trace at a time, at most
//! [`super::events::MAX_LISTENERS`] event listeners). Only if no place can
//! be freed is the newcomer turned away, with an `ERR` line.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::server::Control;
use super::{Request, Response};

/// What one client of the control socket may take.
#[derive(Clone, Debug)]
pub struct SocketLimits {
    /// Connections served at once (a thread each).
    pub max_clients: usize,
    /// How long a client may take to send a complete request, from when it
    /// connected or got its previous answer; then it is told so and
    /// disconnected.
    pub idle_timeout: Duration,
    /// How long a write to a client may wait for it to read; then it is
    /// disconnected.
    pub write_timeout: Duration,
    /// The longest request line, in bytes (without its newline). A longer
    /// one is read to its end, discarded and answered with an `ERR`.
    pub max_request: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            max_clients: 256,
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_request: 64 << 10,
        }
    }
}

/// How long the accept loop rests after a failed accept (out of file
/// descriptors, say) before trying again, rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A request buffer that grew past this is not kept for the next request.
const KEEP_BUFFER: usize = 4096;

/// The bound control socket; removes its file when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    limits: SocketLimits,
    clients: Clients,
}

/// Why the control socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {}: a file that is not a socket is in the way", .0.display())]
    InTheWay(PathBuf),
    #[error(
        "control socket {} is in use: another xdpgw is running (stop it, or set \
         control_socket in the configuration)",
        .0.display()
    )]
    InUse(PathBuf),
    #[error("control socket {}: cannot create {}: {source}", path.display(), dir.display())]
    Directory {
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ControlSocket {
    /// Binds the control socket at `path`, mode 0600, with the default
    /// [`SocketLimits`]. A socket file nobody answers on (left by a killed
    /// run) is replaced; a live one is an error, and so is any other kind
    /// of file there.
    pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
        let at = path.to_path_buf();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(SocketError::InTheWay(at));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(at));
            }
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|source| SocketError::Directory {
                path: at.clone(),
                dir: d.to_path_buf(),
                source,
            })?;
        }
        // Bind under a temporary name, restrict it, then move it into place:
        // the socket is never reachable at `path` with looser permissions.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|source| SocketError::Bind {
            path: at.clone(),
            source,
        })?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(source) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(SocketError::Bind { path: at, source });
        }
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            limits: SocketLimits::default(),
            clients: Clients::default(),
        })
    }

    /// The same socket with other limits (before serving it).
    pub fn with_limits(mut self, limits: SocketLimits) -> ControlSocket {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &SocketLimits {
        &self.limits
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections being served now (each has its thread), counting
    /// displaced ones whose thread has not ended yet.
    pub fn clients(&self) -> usize {
        self.clients.lock().taken.len()
    }

    /// Serves clients, each from a thread of its own, until `stop` is set
    /// (call [`ControlSocket::wake`] after setting it); returns when every
    /// client's thread has ended: the connections waiting on their client
    /// are closed, the streams end within their polling interval.
    pub fn serve(&self, control: &Control, stop: &AtomicBool) {
        self.clients.lock().closing = false;
        // `reload` and `zero` from clients run one at a time; what they
        // change is also guarded by `Control::state`, which the reload of
        // SIGHUP takes too.
        let writes = Mutex::new(());
        std::thread::scope(|s| {
            for conn in self.listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let conn = match conn {
                    Ok(c) => Arc::new(c),
                    Err(_) => {
                        std::thread::sleep(ACCEPT_BACKOFF);
                        continue;
                    }
                };
                let Some(seat) = self.clients.admit(&conn, self.limits.max_clients) else {
                    refuse(&conn, self.limits.max_clients);
                    continue;
                };
                let served = Served {
                    control,
                    stop,
                    writes: &writes,
                    limits: &self.limits,
                    seat,
                    conn,
                };
                // Without a thread the connection is dropped, and its seat
                // with it.
                let _ = std::thread::Builder::new()
                    .name("xdpgw-control".into())
                    .spawn_scoped(s, move || served.serve());
            }
            self.clients.close_all();
        });
    }

    /// Unblocks `serve` so that it sees the stop flag.
    pub fn wake(path: &Path) {
        let _ = UnixStream::connect(path);
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Turns away a client for which no place could be freed.
fn refuse(conn: &UnixStream, max: usize) {
    // A new connection's buffer is empty: this line fits, and the bound
    // only guards against the unexpected.
    let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = Response::err(
        format!("too many clients: all {max} places are busy; try again later"),
        vec![],
    )
    .write_to(&mut &*conn);
}

/// The connections being served.
#[derive(Default)]
struct Clients {
    inner: Mutex<Places>,
}

#[derive(Default)]
struct Places {
    next_id: u64,
    taken: Vec<Place>,
    /// The server is stopping: no one else is admitted.
    closing: bool,
}

struct Place {
    id: u64,
    /// The connection, to close it from elsewhere (displacement, stop).
    conn: Arc<UnixStream>,
    /// Since when its thread has been waiting on the client (for a
    /// request, or for it to read); `None` while the thread works.
    waiting_since: Option<Instant>,
    /// Serves a stream: never displaced; ends by itself on stop.
    streaming: bool,
    /// Closed to make room; its thread is on its way out.
    displaced: bool,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, Places> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection; when all `max` are taken, the client
    /// that has waited longest on its peer is closed to make room. `None`
    /// if no room can be made.
    fn admit(&self, conn: &Arc<UnixStream>, max: usize) -> Option<Seat<'_>> {
        let max = max.max(1);
        let mut p = self.lock();
        if p.closing {
            return None;
        }
        let held = p.taken.iter().filter(|c| !c.displaced).count();
        if held >= max {
            // Displaced clients' threads end at once (their reads and
            // writes fail); this bounds the threads even if some do not.
            if p.taken.len() >= 2 * max {
                return None;
            }
            let (_, victim) = p
                .taken
                .iter_mut()
                .filter(|c| !c.displaced && !c.streaming)
                .filter_map(|c| c.waiting_since.map(|t| (t, c)))
                .min_by_key(|(t, _)| *t)?;
            let _ = victim.conn.shutdown(Shutdown::Both);
            victim.displaced = true;
        }
        p.next_id += 1;
        let id = p.next_id;
        p.taken.push(Place {
            id,
            conn: Arc::clone(conn),
            // A new client has yet to send its request.
            waiting_since: Some(Instant::now()),
            streaming: false,
            displaced: false,
        });
        Some(Seat { clients: self, id })
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Place)) {
        if let Some(c) = self.lock().taken.iter_mut().find(|c| c.id == id) {
            f(c);
        }
    }

    /// Closes the connections that wait on their client or run a command;
    /// the streams see the stop flag themselves (and say goodbye).
    fn close_all(&self) {
        let mut p = self.lock();
        p.closing = true;
        for c in p.taken.iter().filter(|c| !c.streaming) {
            let _ = c.conn.shutdown(Shutdown::Both);
        }
    }
}

/// A connection's place among the served; given up when dropped.
struct Seat<'a> {
    clients: &'a Clients,
    id: u64,
}

impl Seat<'_> {
    /// The thread starts (`true`) or stops waiting on its client.
    fn waiting(&self, on: bool) {
        self.clients.update(self.id, |c| {
            c.waiting_since = if on {
                Some(c.waiting_since.unwrap_or_else(Instant::now))
            } else {
                None
            };
        });
    }

    fn streaming(&self) {
        self.clients.update(self.id, |c| {
            c.streaming = true;
            c.waiting_since = None;
        });
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.clients.lock().taken.retain(|c| c.id != self.id);
    }
}

/// One connection and what its thread needs.
struct Served<'a> {
    control: &'a Control,
    stop: &'a AtomicBool,
    writes: &'a Mutex<()>,
    limits: &'a SocketLimits,
    seat: Seat<'a>,
    conn: Arc<UnixStream>,
}

impl Served<'_> {
    /// Answers requests, one at a time, until the client leaves, breaks
    /// the protocol or times out; a streaming request ends the exchange.
    fn serve(self) {
        let conn: &UnixStream = &self.conn;
        // A client that stops reading does not hold this thread for long.
        let _ = conn.set_write_timeout(Some(self.limits.write_timeout));
        let mut reader = BufReader::new(conn);
        let mut line = Vec::new();
        loop {
            self.seat.waiting(true);
            let got = read_request(&mut reader, &mut line, self.limits);
            self.seat.waiting(false);
            let mut out = ToClient {
                conn,
                seat: &self.seat,
            };
            let text = match got {
                Got::Line => std::str::from_utf8(&line),
                Got::Closed | Got::Failed => return,
                Got::TimedOut => {
                    let _ = Response::err(
                        format!(
                            "no complete request within {} s; connection closed",
                            self.limits.idle_timeout.as_secs_f64()
                        ),
                        vec![],
                    )
                    .write_to(&mut out);
                    return;
                }
                Got::TooLong => {
                    let _ = Response::err(
                        format!(
                            "request line longer than {} bytes; connection closed",
                            self.limits.max_request
                        ),
                        vec![],
                    )
                    .write_to(&mut out);
                    return;
                }
            };
            let req = text
                .map_err(|_| super::RequestError::NotText)
                .and_then(|t| Request::decode(t.trim_end_matches('\r')));
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    // Not the protocol: answered, then closed.
                    let _ = Response::err(e.to_string(), vec![]).write_to(&mut out);
                    return;
                }
            };
            let sent = match req.command.as_str() {
                "trace" => {
                    self.seat.streaming();
                    super::trace::serve(self.control, &req, conn, self.stop);
                    return;
                }
                "ct-events" => {
                    self.seat.streaming();
                    super::events::stream(self.control, &req, reader, conn, self.stop);
                    return;
                }
                "reload" | "zero" => {
                    let resp = {
                        let _one = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
                        self.control.handle(&req)
                    };
                    resp.write_to(&mut out)
                }
                _ => self.control.respond(&req, &mut out),
            };
            if sent.is_err() {
                return;
            }
            if line.capacity() > KEEP_BUFFER {
                line = Vec::new();
            }
        }
    }
}

/// Writes to the client, its thread counted as waiting on the client
/// meanwhile (so that a client that does not read can be displaced).
struct ToClient<'a> {
    conn: &'a UnixStream,
    seat: &'a Seat<'a>,
}

impl Write for ToClient<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.seat.waiting(true);
        let r = (&mut &*self.conn).write(b);
        self.seat.waiting(false);
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How reading a request ended.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    /// A line (without its newline) is in the buffer.
    Line,
    /// The client closed the connection between requests.
    Closed,
    /// No complete line within the idle timeout.
    TimedOut,
    /// The line was longer than allowed (it has been read and discarded).
    TooLong,
    /// The connection failed.
    Failed,
}

/// Reads one request line into `line`, within the idle timeout (for the
/// whole line: a client trickling bytes gets no longer than an idle one)
/// and holding at most `max_request` bytes of it.
fn read_request(r: &mut BufReader<&UnixStream>, line: &mut Vec<u8>, limits: &SocketLimits) -> Got {
    line.clear();
    let deadline = Instant::now() + limits.idle_timeout;
    let mut too_long = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Got::TimedOut;
        }
        if r.get_ref().set_read_timeout(Some(left)).is_err() {
            return Got::Failed;
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) => match e.kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock | ErrorKind::TimedOut => return Got::TimedOut,
                _ => return Got::Failed,
            },
        };
        if buf.is_empty() {
            // The client closed its side; a last line without its newline
            // still counts.
            return if too_long {
                Got::TooLong
            } else if line.is_empty() {
                Got::Closed
            } else {
                Got::Line
            };
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(buf.len());
        if !too_long {
            if line.len() + take > limits.max_request {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&buf[..take]);
            }
        }
        r.consume(take + usize::from(newline.is_some()));
        if newline.is_some() {
            return if too_long { Got::TooLong } else { Got::Line };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_request: usize) -> SocketLimits {
        SocketLimits {
            max_request,
            idle_timeout: Duration::from_secs(10),
            ..SocketLimits::default()
        }
    }

    #[test]
    fn request_lines_are_bounded_and_a_long_one_is_skipped_whole() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(b"XDPGW/1 ping\nXDPGW/1 ").expect("write");
        a.write_all(&[b'x'; 100]).expect("write");
        a.write_all(b"\nXDPGW/1 stats\r\nlast").expect("write");
        a.shutdown(Shutdown::Write).expect("shutdown");
        let mut r = BufReader::with_capacity(16, &b);
        let mut line = Vec::new();
        let l = limits(20);
        assert_eq!(read_request(&mut r, &mut line, &l), Got::Line);
        assert_eq!(line, b"XDPGW/1 ping");
        assert_eq!(read_request(&mut r, &mut line, &l), Got::TooLong);
        assert!(line.capacity() <= 64, "held {} bytes", line.capacity());
        assert_eq!(read_request(&mut r, &mut line, &l), Got::Line);
        assert_eq!(line, b"XDPGW/1 stats\r");
        assert_eq!(read_request(&mut r, &mut line, &l), Got::Line);
        assert_eq!(line, b"last");
        assert_eq!(read_request(&mut r, &mut line, &l), Got::Closed);
    }

    #[test]
    fn a_partial_line_times_out() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(b"XDPGW/1 pi").expect("write");
        let mut r = BufReader::new(&b);
        let mut line = Vec::new();
        let l = SocketLimits {
            idle_timeout: Duration::from_millis(50),
            ..SocketLimits::default()
        };
        assert_eq!(read_request(&mut r, &mut line, &l), Got::TimedOut);
        drop(a);
    }
}
