//! The `trace` command of the control socket: a streaming response (see
//! the protocol in [`super`]), served in the connection's own thread while
//! the socket serves other clients; the trace is removed from the gateway
//! when the count is reached, when the client goes away or stops reading
//! (the connection's write timeout), when the gateway stops, and if that
//! thread ends in any other way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::trace::{rules_id, TraceFilter, TraceSession};

use super::server::Control;
use super::{Request, Response, VERSION};
use crate::trace::{format_packet, parse_match_families, TraceNames, DEFAULT_COUNT};

/// The match words of a `trace` request, in order.
pub fn words(req: &Request) -> Vec<String> {
    req.args
        .iter()
        .filter(|(k, _)| k == "word")
        .map(|(_, v)| v.clone())
        .collect()
}

/// Removes the session from the gateway when dropped.
struct Installed {
    gw: Arc<Gateway>,
    session: Arc<TraceSession>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.gw.tracer.stop(&self.session);
    }
}

/// Answers a `trace` request on `conn`: an error response, or `OK` and the
/// stream, until it ends (`stop` ends it without its final `.`).
pub fn serve(control: &Control, req: &Request, mut conn: &UnixStream, stop: &AtomicBool) {
    match install(control, req) {
        Err(e) => {
            let _ = Response::err(e.to_string(), vec![]).write_to(&mut conn);
        }
        Ok((installed, rx, names, count, shown)) => {
            let _ = stream(installed, rx, &names, count, &shown, conn, stop);
        }
    }
}

type Installation = (
    Installed,
    std::sync::mpsc::Receiver<xdpgw_dataplane::trace::PacketTrace>,
    TraceNames,
    u32,
    (&'static str, String),
);

/// Why a trace was not started.
#[derive(Debug, thiserror::Error)]
enum TraceRequestError {
    #[error("bad count '{0}': a number of packets")]
    BadCount(String),
    #[error("trace MATCH {0}")]
    Match(crate::trace::MatchError),
    #[error("trace MATCH: '{name}' is not an interface of this gateway ({known})")]
    NoSuchInterface { name: String, known: String },
    #[error(transparent)]
    Compile(#[from] xdpgw_dataplane::classify::CompileError),
    #[error(transparent)]
    Tracer(#[from] xdpgw_dataplane::trace::TraceError),
}

fn install(control: &Control, req: &Request) -> Result<Installation, TraceRequestError> {
    let words = words(req);
    let count = match req.get("count") {
        None => DEFAULT_COUNT,
        Some(c) => c
            .parse::<u32>()
            .map_err(|_| TraceRequestError::BadCount(c.to_string()))?,
    };
    let m = parse_match_families(&words).map_err(TraceRequestError::Match)?;
    let rule = m.v4.as_ref().or(m.v6.as_ref());
    let ifs = rule.map(|r| [&r.in_iface, &r.out_iface]);
    for i in ifs.into_iter().flatten().flatten() {
        if !i.value.is_wildcard() && !control.names.contains(&i.value.name) {
            return Err(TraceRequestError::NoSuchInterface {
                name: i.value.name.clone(),
                known: control.names.join(", "),
            });
        }
    }
    let ifaces: Vec<&str> = control.names.iter().map(String::as_str).collect();
    let filter = TraceFilter::families(m.v4.as_ref(), m.v6.as_ref(), &ifaces)?;
    // The rule set the workers run, and the one it was compiled from, taken
    // together: a reload installs under the same lock.
    let (rules, id) = {
        let st = control.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.clone(), rules_id(&control.gw.rules()))
    };
    let (rules6, id6) = {
        let st = control.rules6.lock().unwrap_or_else(|e| e.into_inner());
        (st.clone(), rules_id(&control.gw.rules6()))
    };
    let (session, rx) = control.gw.tracer.start(filter, count)?;
    let installed = Installed {
        gw: Arc::clone(&control.gw),
        session,
    };
    let names = TraceNames {
        ifaces: control.names.clone(),
        rules,
        rules_id: id,
        rules6,
        rules6_id: id6,
    };
    let family = match (m.v4.is_some(), m.v6.is_some()) {
        (true, false) => " IPv4",
        (false, true) => " IPv6",
        _ => "",
    };
    let shown = if words.is_empty() {
        "any packet".to_string()
    } else {
        format!("'{}'", words.join(" "))
    };
    Ok((installed, rx, names, count, (family, shown)))
}

/// Whether the client closed the connection (or sent anything: a request
/// to stop).
fn client_gone(mut conn: &UnixStream) -> bool {
    let mut b = [0u8; 64];
    match conn.read(&mut b) {
        // 0: closed; more: the client asks to stop.
        Ok(_n) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn send_line(mut conn: &UnixStream, line: &str) -> std::io::Result<()> {
    let mut out = String::with_capacity(line.len() + 2);
    if line.starts_with('.') {
        out.push('.');
    }
    out.push_str(line);
    out.push('\n');
    conn.write_all(out.as_bytes())
}

/// Streams the trace to the client; `installed` is removed before the
/// final `.`, so that a client that saw the end finds no trace running.
fn stream(
    installed: Installed,
    rx: std::sync::mpsc::Receiver<xdpgw_dataplane::trace::PacketTrace>,
    names: &TraceNames,
    count: u32,
    (family, shown): &(&'static str, String),
    mut conn: &UnixStream,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_millis(1)))?;
    conn.write_all(format!("{VERSION} OK\n").as_bytes())?;
    send_line(
        conn,
        &format!(
            "tracing the next {count}{family} packet{} matching {shown} (arriving on {}); the trace ends when the client closes the connection",
            if count == 1 { "" } else { "s" },
            names.ifaces.join(", ")
        ),
    )?;
    conn.flush()?;
    let mut got = 0u32;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => {
                got += 1;
                send_line(conn, "")?;
                for l in format_packet(got as usize, &t, names) {
                    send_line(conn, &l)?;
                }
                conn.flush()?;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let lost = installed.session.lost();
        if got + lost >= count {
            if lost > 0 {
                send_line(
                    conn,
                    &format!("{lost} more matching packets were not shown: the reader fell behind"),
                )?;
            }
            break;
        }
        if client_gone(conn) || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
    drop(installed);
    conn.write_all(b".\n")?;
    conn.flush()
}
