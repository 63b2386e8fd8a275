//! The control socket: how `xdpgw reload/list/save/zero/stats/conntrack`
//! talk to a running `xdpgw run`.
//!
//! # Transport
//!
//! A Unix stream socket at the configuration's `control_socket` (default
//! `/run/xdpgw.sock`), mode 0600: only root (the owner) can connect. `xdpgw
//! run` creates it once its ports are open (bound under a temporary name,
//! chmod-ed, then renamed into place, so it is never reachable with looser
//! permissions), before printing `ready`, and removes it when it stops. A
//! socket file left by a killed run (nobody accepts on it) is replaced; one
//! another xdpgw answers on is an error.
//!
//! Clients are served at the same time, each from a thread of its own, within
//! limits ([`socket::SocketLimits`]: clients at once, the time to send a
//! request, the time a write waits for the client to read, the length of a
//! request line). A client that breaks one is sent an `ERR` response where
//! it can still read one (`no complete request within 30 s`, `request line
//! longer than 65536 bytes`, `too many clients`) and disconnected. See
//! [`socket`].
//!
//! # Protocol, version 1
//!
//! Line based, UTF-8, `\n`-terminated. A connection carries any number of
//! request/response exchanges, one at a time.
//!
//! Request: one line,
//!
//! ```text
//! XDPGW/1 <command> [<key>=<value> ...]
//! ```
//!
//! Keys are `[a-z_]+`; values are percent-encoded (`%XX`) for `%`, `=`,
//! space, and control characters, so a value never contains a separator.
//!
//! Response: a status line, body lines, and a line holding only `.`:
//!
//! ```text
//! XDPGW/1 OK
//! <body line>...
//! .
//! ```
//!
//! or `XDPGW/1 ERR <message>` followed by body lines (details, e.g. every
//! `file:line:column` error of a rejected reload) and `.`. A body line that
//! starts with `.` is sent with one more `.` in front (as SMTP does); the
//! reader removes it. For `OK` the client prints the body on stdout and exits
//! 0; for `ERR` it prints the message and body on stderr and exits 1.
//!
//! Commands (server side in [`server`]): `ping`; `reload [file=PATH]
//! [replace_all=1]`;
//! `list [table=T] [chain=C] [verbose=1] [numeric=1] [exact=1]
//! [line_numbers=1]`; `save [counters=1] [table=T]`; `zero [table=T]
//! [chain=C]`; `stats`; `stats-sample` (one `name value` line per
//! counter, [`stats`]); `metrics` (Prometheus text, [`metrics`]);
//! `ct-list`, `ct-delete`, `ct-count` (with `[proto=P] [src=A] [dst=A]
//! [state=S] [family=ipv4|ipv6]`), `ct-flush` (`[family=F]`), `ct-stats`
//! (one `conntrack -S` line per worker); `ct-events [proto=P] [src=A]
//! [dst=A] [state=S] [family=F]` (streaming, below: both families' events
//! unless `family` says one);
//! `sync-commit`, `sync-flush`, `sync-resync`, `sync-bulk`, `sync-stats`,
//! `sync-external` (the state sync, [`crate::sync`]). A server that
//! does not know a command answers `ERR unknown command`; a request of
//! another protocol version gets `ERR unsupported protocol version` and the
//! connection is closed. Versions change only by adding commands and keys;
//! an incompatible change would be `XDPGW/2`.
//!
//! # Streaming responses
//!
//! A command that streams (so far only `ct-events`, `xdpgw conntrack -E`)
//! answers `XDPGW/1 STREAM` instead of `OK`, and the connection then
//! carries only that stream: records of one line each, whose first
//! character says what they are, until the client closes the connection
//! (Ctrl-C) or the gateway stops:
//!
//! ```text
//! XDPGW/1 STREAM
//! E <text>     data (an event line): the client prints it on stdout
//! W <text>     a warning (e.g. events lost): the client prints it on stderr
//! .            the end of the stream: the gateway is stopping
//! ```
//!
//! Records start with a letter, so no dot-stuffing is needed. A request
//! the server refuses before streaming (a bad filter, too many listeners)
//! is answered with an ordinary `ERR` response. The server serves each stream from a thread of
//! its own, so other clients are answered meanwhile; it notices a client
//! that left by reading from the connection (the client sends nothing more)
//! and stops recording when its last listener is gone. See [`events`].
//!
//! # Streaming: `trace`
//!
//! `trace [count=N] [word=W ...]` (the `word`s, in order, are the match in
//! iptables syntax, e.g. `word=-p word=tcp word=--dport word=80`; none:
//! every packet; `count` defaults to 10, at most 10000) answers like any
//! command, but its body arrives over time: the `OK` status line and a first
//! body line saying what is traced come as soon as the trace is installed on
//! the workers, then, for each traced packet, an empty line and the lines of
//! its trace, and the `.` line when `count` packets have been shown. The
//! client ends a trace early by closing the connection (or sending any
//! line); the gateway then removes the trace within 200 ms. When the
//! gateway stops, a trace ends without its `.` line. After a streaming
//! response the connection is closed. Errors (a bad match, with
//! `argument N:` naming the word, an interface the gateway does not have,
//! another trace running) are ordinary `ERR` responses.

pub mod events;
pub mod ipset;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod socket;
pub mod stats;
pub mod trace;
pub mod view;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The protocol version this build speaks.
pub const VERSION: &str = "XDPGW/1";

/// The end of a response body.
const END: &str = ".";

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: String,
    pub args: Vec<(String, String)>,
}

impl Request {
    pub fn new(command: &str) -> Request {
        Request {
            command: command.to_string(),
            args: Vec::new(),
        }
    }

    /// Adds `key=value`.
    pub fn arg(mut self, key: &str, value: impl Into<String>) -> Request {
        self.args.push((key.to_string(), value.into()));
        self
    }

    /// Adds `key=1` when `on`.
    pub fn flag(self, key: &str, on: bool) -> Request {
        if on {
            self.arg(key, "1")
        } else {
            self
        }
    }

    /// Adds `key=value` when there is a value.
    pub fn opt(self, key: &str, value: Option<impl Into<String>>) -> Request {
        match value {
            Some(v) => self.arg(key, v),
            None => self,
        }
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key=1` was given.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key) == Some("1")
    }

    /// The request line, without its newline.
    pub fn encode(&self) -> String {
        let mut out = format!("{VERSION} {}", self.command);
        for (k, v) in &self.args {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(&escape(v));
        }
        out
    }

    /// Parses a request line (without its newline).
    pub fn decode(line: &str) -> Result<Request, RequestError> {
        let mut words = line.split(' ');
        match words.next() {
            Some(VERSION) => {}
            Some(v) if v.starts_with("XDPGW/") => {
                return Err(RequestError::Version(v.to_string()));
            }
            _ => return Err(RequestError::NotARequest),
        }
        let command = match words.next() {
            Some(c) if !c.is_empty() => c.to_string(),
            _ => return Err(RequestError::MissingCommand),
        };
        let mut args = Vec::new();
        for w in words.filter(|w| !w.is_empty()) {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| RequestError::BadArgument(w.to_string()))?;
            args.push((k.to_string(), unescape(v)?));
        }
        Ok(Request { command, args })
    }
}

/// A response: `OK` or `ERR message`, with body lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    pub body: Vec<String>,
}

impl Response {
    pub fn ok(body: Vec<String>) -> Response {
        Response {
            ok: true,
            message: String::new(),
            body,
        }
    }

    pub fn err(message: impl Into<String>, body: Vec<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            body,
        }
    }

    /// Writes the response in the wire format.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut out = String::new();
        if self.ok {
            out.push_str(VERSION);
            out.push_str(" OK\n");
        } else {
            out.push_str(VERSION);
            out.push_str(" ERR ");
            out.push_str(&self.message.replace('\n', " "));
            out.push('\n');
        }
        for l in &self.body {
            push_body_line(&mut out, l);
        }
        out.push_str(END);
        out.push('\n');
        w.write_all(out.as_bytes())?;
        w.flush()
    }

    /// Reads one response.
    pub fn read_from(r: &mut impl BufRead) -> std::io::Result<Response> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(bad(
                "the gateway closed the connection without answering".into()
            ));
        }
        let status = line.trim_end_matches('\n');
        let rest = status
            .strip_prefix(VERSION)
            .and_then(|s| s.strip_prefix(' '))
            .ok_or_else(|| bad(format!("unexpected answer '{status}'")))?;
        let (ok, message) = if rest == "OK" {
            (true, String::new())
        } else if let Some(m) = rest.strip_prefix("ERR ") {
            (false, m.to_string())
        } else {
            return Err(bad(format!("unexpected answer '{status}'")));
        };
        let mut body = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(bad("the answer was cut short".into()));
            }
            let l = line.trim_end_matches('\n');
            if l == END {
                break;
            }
            body.push(l.strip_prefix('.').unwrap_or(l).to_string());
        }
        Ok(Response { ok, message, body })
    }
}

/// Appends a body line in the wire format: dot-stuffed, and split where
/// it holds newlines.
fn push_body_line(out: &mut String, l: &str) {
    for l in l.split('\n') {
        if l.starts_with('.') {
            out.push('.');
        }
        out.push_str(l);
        out.push('\n');
    }
}

/// An `OK` response written while it is produced: the body lines given to
/// [`OkStream::line`] go out at each [`OkStream::send`], so that a long
/// answer (a conntrack listing) is never held whole.
pub struct OkStream<'a, W: Write> {
    w: &'a mut W,
    buf: String,
}

impl<'a, W: Write> OkStream<'a, W> {
    /// Starts the response (the status line goes with the first send).
    pub fn new(w: &'a mut W) -> OkStream<'a, W> {
        OkStream {
            w,
            buf: format!("{VERSION} OK\n"),
        }
    }

    pub fn line(&mut self, l: &str) {
        push_body_line(&mut self.buf, l);
    }

    /// Writes the lines so far.
    pub fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(self.buf.as_bytes())?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the rest and the end of the response.
    pub fn end(mut self) -> std::io::Result<()> {
        self.buf.push_str(END);
        self.buf.push('\n');
        self.send()?;
        self.w.flush()
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c <= ' ' || c == '%' || c == '=' || c == '\u{7f}' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(v: &str) -> Result<String, RequestError> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| RequestError::BadEscape(v.to_string()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RequestError::NotUtf8(v.to_string()))
}

/// Why a request line is not one (the gateway answers it with `ERR` and
/// closes the connection).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unsupported protocol version {0}; this is {VERSION}")]
    Version(String),
    #[error("not an xdpgw request; expected '{VERSION} COMMAND'")]
    NotARequest,
    #[error("not an xdpgw request: not UTF-8 text")]
    NotText,
    #[error("missing command")]
    MissingCommand,
    #[error("bad argument '{0}': expected key=value")]
    BadArgument(String),
    #[error("bad escape in '{0}'")]
    BadEscape(String),
    #[error("'{0}' is not UTF-8")]
    NotUtf8(String),
}

/// Why a client got no answer from the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control socket could not be connected to.
    #[error("cannot reach the gateway at {}: {source} ({})", path.display(), unreachable_hint(source))]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration naming the socket could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Talking over the connection failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("control socket: the gateway closed the connection without answering")]
    Closed,
    #[error("control socket: the gateway ended the stream early")]
    StreamEnded,
    /// The gateway answered with `ERR`: its message, after its body.
    #[error("{}", refusal(message, body))]
    Refused { message: String, body: Vec<String> },
}

fn refusal(message: &str, body: &[String]) -> String {
    let mut text = body.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(message);
    text
}

/// Where a client finds the gateway: `--socket`, else the configuration's
/// `control_socket`, else the default.
pub fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, ClientError> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(c) = config {
        return Ok(crate::config::Config::load(c)?.control_socket);
    }
    Ok(PathBuf::from(crate::config::DEFAULT_SOCKET))
}

/// Connects to the control socket at `path`, or says why not.
pub fn connect_socket(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|source| ClientError::Unreachable {
        path: path.to_path_buf(),
        source,
    })
}

/// The hint that fits a connection error: a permission problem is not a
/// stopped gateway.
fn unreachable_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "the control socket is root's alone (mode 0600): run this as root"
        }
        _ => "is `xdpgw run` running? --socket/--config choose the socket",
    }
}

/// A connection to a running gateway.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = connect_socket(path)?;
        // A generous bound: a reload of a large rule set takes well under a second.
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = req.encode();
        line.push('\n');
        let sent = self.writer.write_all(line.as_bytes());
        // A gateway that closed the connection (it timed out, or turned
        // this client away) may have said why before: read that first.
        match (Response::read_from(&mut self.reader), sent) {
            (Ok(r), _) => Ok(r),
            (Err(e), Ok(())) | (Err(_), Err(e)) => Err(ClientError::Io(e)),
        }
    }
}

impl Client {
    /// Sends a request whose response streams (see "Streaming" above) and
    /// hands each body line to `line` as it arrives, without a read timeout.
    /// An `ERR` answer is [`ClientError::Refused`] with its message and body.
    pub fn stream(&mut self, req: &Request, mut line: impl FnMut(&str)) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(None)?;
        let mut text = req.encode();
        text.push('\n');
        // As in `call`: a gateway that closed the connection may have said
        // why before.
        let sent = self.writer.write_all(text.as_bytes());
        let mut l = String::new();
        match (self.reader.read_line(&mut l), sent) {
            (Ok(n), _) if n > 0 => {}
            (_, Err(e)) | (Err(e), Ok(())) => return Err(ClientError::Io(e)),
            (Ok(_), Ok(())) => return Err(ClientError::Closed),
        }
        let status = l.trim_end_matches('\n').to_string();
        if status != format!("{VERSION} OK") {
            // An error: an ordinary response.
            let mut rest = status.into_bytes();
            rest.push(b'\n');
            let mut r = std::io::Cursor::new(rest).chain(&mut self.reader);
            let mut r = BufReader::new(&mut r);
            let resp = Response::read_from(&mut r)?;
            return Err(ClientError::Refused {
                message: resp.message,
                body: resp.body,
            });
        }
        loop {
            l.clear();
            if self.reader.read_line(&mut l)? == 0 {
                return Err(ClientError::StreamEnded);
            }
            let body = l.trim_end_matches('\n');
            if body == END {
                return Ok(());
            }
            line(body.strip_prefix('.').unwrap_or(body));
        }
    }
}

/// Connects, sends one request, prints the response (body to stdout for
/// `OK`; message and body to stderr for `ERR`) and gives the exit status.
pub fn run_command(socket: &Path, req: &Request) -> std::process::ExitCode {
    let resp = Client::connect(socket).and_then(|mut c| c.call(req));
    match resp {
        Ok(r) if r.ok => {
            let mut out = std::io::stdout().lock();
            for l in &r.body {
                let _ = writeln!(out, "{l}");
            }
            std::process::ExitCode::SUCCESS
        }
        Ok(r) => {
            let mut err = std::io::stderr().lock();
            for l in &r.body {
                let _ = writeln!(err, "{l}");
            }
            let _ = writeln!(err, "xdpgw: {}", r.message);
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xdpgw: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request::new("reload")
            .arg("file", "/tmp/a b%=c\n")
            .flag("verbose", true)
            .flag("numeric", false);
        let line = r.encode();
        assert_eq!(line, "XDPGW/1 reload file=/tmp/a%20b%25%3Dc%0A verbose=1");
        assert_eq!(Request::decode(&line), Ok(r));
        assert_eq!(
            Request::decode("XDPGW/2 ping"),
            Err(RequestError::Version("XDPGW/2".into()))
        );
        assert_eq!(
            Request::decode("GET / HTTP/1.0"),
            Err(RequestError::NotARequest)
        );
        assert_eq!(
            Request::decode("XDPGW/1 list bad"),
            Err(RequestError::BadArgument("bad".into()))
        );
        assert_eq!(
            Request::decode("XDPGW/1 list a=%zz").map_err(|e| e.to_string()),
            Err("bad escape in '%zz'".into())
        );
    }

    #[test]
    fn responses_round_trip_with_dot_lines() {
        let r = Response::err(
            "reload failed",
            vec![".starts with a dot".into(), ".".into(), "x".into()],
        );
        let mut buf = Vec::new();
        r.write_to(&mut buf).expect("write");
        let text = String::from_utf8(buf.clone()).expect("utf8");
        assert_eq!(
            text,
            "XDPGW/1 ERR reload failed\n..starts with a dot\n..\nx\n.\n"
        );
        let back = Response::read_from(&mut &buf[..]).expect("read");
        assert_eq!(back, r);
        let ok = Response::ok(vec![]);
        let mut buf = Vec::new();
        ok.write_to(&mut buf).expect("write");
        assert_eq!(Response::read_from(&mut &buf[..]).expect("read"), ok);
        assert!(Response::read_from(&mut &b"XDPGW/1 OK\nno end\n"[..]).is_err());
    }

    #[test]
    fn unreachable_tells_permission_from_a_stopped_gateway() {
        use std::io::{Error, ErrorKind};
        let at = |kind| ClientError::Unreachable {
            path: PathBuf::from("/run/xdpgw.sock"),
            source: Error::from(kind),
        };
        let denied = at(ErrorKind::PermissionDenied).to_string();
        assert!(denied.contains("run this as root"), "{denied}");
        assert!(!denied.contains("running?"), "{denied}");
        let gone = at(ErrorKind::NotFound).to_string();
        assert!(
            gone.starts_with("cannot reach the gateway at /run/xdpgw.sock: "),
            "{gone}"
        );
        assert!(gone.contains("is `xdpgw run` running?"), "{gone}");
    }
}
