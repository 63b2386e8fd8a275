//! `xdpgw conntrack -E`: the control socket's one streaming command.
//!
//! The dataplane records events in per-shard rings only while someone
//! listens (`Conntrack::events_subscribe`). Listeners are connections of the
//! control socket (at most [`MAX_LISTENERS`]), each served by its own thread; whichever of them polls
//! drains the rings for all of them ([`EventHub`]), so two listeners see the
//! same events. Formatting happens here, in the listener's thread. A
//! listener listens to both families' tables ([`Listening`]): IPv6 events
//! are shown as conntrack-tools shows them (`conntrack -E -f ipv6`), merged
//! with IPv4's in the order they happened.
//!
//! Wire form (see the protocol in [`super`]): the request `XDPGW/1
//! ct-events [proto=P] [src=A] [dst=A] [state=S] [family=F]` is answered `XDPGW/1 STREAM`, then
//! records, one line each, until the client closes the connection or the
//! gateway stops:
//!
//! ```text
//! E <line>     an event, as `conntrack -E` prints it (client: stdout)
//! W <text>     a warning, e.g. events lost (client: stderr)
//! .            the end: the gateway is stopping
//! ```
//!
//! A bad filter is refused before streaming with an ordinary `ERR`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use xdpgw_dataplane::conntrack::{event_line, Conntrack, CtEvent};
use xdpgw_dataplane::flow::Addr;

use super::server::{Control, CtFilter};
use super::{Request, Response, VERSION};

/// How often a listener drains the rings (and notices that its client
/// left or the gateway stops).
const POLL: Duration = Duration::from_millis(20);
/// Events queued for one listener that has not written them yet.
const LISTENER_QUEUE: usize = 65536;
/// Listeners at once: each may queue 65,536 events while its client is
/// slow to read (until the control socket's write timeout).
pub const MAX_LISTENERS: usize = 16;

/// The listeners of one family's conntrack events (IPv4 unless said
/// otherwise) and their queues.
pub struct EventHub<A: Addr = Ipv4Addr> {
    inner: Mutex<HubInner<A>>,
}

impl<A: Addr> Default for EventHub<A> {
    fn default() -> Self {
        EventHub {
            inner: Mutex::new(HubInner {
                next_id: 0,
                listeners: Vec::new(),
                scratch: Vec::new(),
            }),
        }
    }
}

struct HubInner<A: Addr> {
    next_id: u64,
    listeners: Vec<Listener<A>>,
    scratch: Vec<CtEvent<A>>,
}

struct Listener<A: Addr> {
    id: u64,
    queue: VecDeque<CtEvent<A>>,
    lost: u64,
}

impl<A: Addr> EventHub<A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner<A>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a listener; the table records events from now on. `None` if
    /// there are [`MAX_LISTENERS`] already.
    pub fn subscribe(&self, ct: &Conntrack<A>) -> Option<u64> {
        let mut h = self.lock();
        if h.listeners.len() >= MAX_LISTENERS {
            return None;
        }
        h.next_id += 1;
        let id = h.next_id;
        h.listeners.push(Listener {
            id,
            queue: VecDeque::new(),
            lost: 0,
        });
        ct.events_subscribe();
        Some(id)
    }

    pub fn unsubscribe(&self, ct: &Conntrack<A>, id: u64) {
        let mut h = self.lock();
        h.listeners.retain(|l| l.id != id);
        ct.events_unsubscribe();
    }

    /// Drains the table's rings into every listener's queue and takes
    /// listener `id`'s events, in the order they happened, and how many it
    /// lost since the last call. `now`: the workers' clock, placing
    /// deletions from the control plane (which carry no time).
    pub fn poll(&self, ct: &Conntrack<A>, id: u64, now: u64) -> (Vec<CtEvent<A>>, u64) {
        let mut h = self.lock();
        let h = &mut *h;
        h.scratch.clear();
        let ring_lost = ct.events_drain(&mut h.scratch);
        // Each shard's events are in order; merge the shards by time.
        h.scratch.sort_by_key(|e| e.at.unwrap_or(now));
        for l in h.listeners.iter_mut() {
            l.lost += ring_lost;
            for e in &h.scratch {
                if l.queue.len() < LISTENER_QUEUE {
                    l.queue.push_back(*e);
                } else {
                    l.lost += 1;
                }
            }
        }
        match h.listeners.iter_mut().find(|l| l.id == id) {
            Some(l) => (l.queue.drain(..).collect(), std::mem::take(&mut l.lost)),
            None => (Vec::new(), 0),
        }
    }
}

/// A listener of both families' connection tables: its id with the IPv4
/// table's hub ([`Control::events`]) and, where the gateway has an IPv6
/// table, with the IPv6 table's ([`Control::events6`]). What `conntrack
/// -E`, the NAT log and the state sync listen with.
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    v4: u64,
    v6: Option<u64>,
}

/// Both families' events of one poll.
#[derive(Debug, Default)]
pub struct Polled {
    pub v4: Vec<CtEvent>,
    pub v6: Vec<CtEvent<Ipv6Addr>>,
    /// Events lost since the last poll, both families.
    pub lost: u64,
}

impl Listening {
    /// Starts listening to both tables: `None` if either hub has
    /// [`MAX_LISTENERS`] already (then neither listens).
    pub fn subscribe(control: &Control) -> Option<Listening> {
        let v4 = control.events.subscribe(&control.gw.conntrack)?;
        let v6 = match &control.gw.conntrack6 {
            Some(ct6) => match control.events6.subscribe(ct6) {
                Some(id) => Some(id),
                None => {
                    control.events.unsubscribe(&control.gw.conntrack, v4);
                    return None;
                }
            },
            None => None,
        };
        Some(Listening { v4, v6 })
    }

    pub fn unsubscribe(self, control: &Control) {
        control.events.unsubscribe(&control.gw.conntrack, self.v4);
        if let (Some(id), Some(ct6)) = (self.v6, &control.gw.conntrack6) {
            control.events6.unsubscribe(ct6, id);
        }
    }

    /// Both tables' events since the last poll, each family's in the
    /// order they happened ([`EventHub::poll`]).
    pub fn poll(self, control: &Control, now: u64) -> Polled {
        let (v4, mut lost) = control.events.poll(&control.gw.conntrack, self.v4, now);
        let mut v6 = Vec::new();
        if let (Some(id), Some(ct6)) = (self.v6, &control.gw.conntrack6) {
            let (e, l) = control.events6.poll(ct6, id, now);
            v6 = e;
            lost += l;
        }
        Polled { v4, v6, lost }
    }
}

impl Polled {
    /// The events `keep` keeps, both families merged in the order they
    /// happened (each family's order kept; `now` places userspace ones),
    /// each as `line` makes it.
    pub fn lines(
        &self,
        now: u64,
        keep4: impl Fn(&CtEvent) -> bool,
        keep6: impl Fn(&CtEvent<Ipv6Addr>) -> bool,
        mut line4: impl FnMut(&CtEvent) -> String,
        mut line6: impl FnMut(&CtEvent<Ipv6Addr>) -> String,
    ) -> Vec<String> {
        let mut lines: Vec<(u64, String)> = self
            .v4
            .iter()
            .filter(|e| keep4(e))
            .map(|e| (e.at.unwrap_or(now), line4(e)))
            .collect();
        if !self.v6.is_empty() {
            lines.extend(
                self.v6
                    .iter()
                    .filter(|e| keep6(e))
                    .map(|e| (e.at.unwrap_or(now), line6(e))),
            );
            // Stable: each family's order stays.
            lines.sort_by_key(|(at, _)| *at);
        }
        lines.into_iter().map(|(_, l)| l).collect()
    }
}

/// Serves a `ct-events` request on its connection until the client leaves,
/// stops reading (the connection's write timeout) or `stop` is set. Runs
/// in the connection's thread.
pub fn stream(
    control: &Control,
    req: &Request,
    mut reader: BufReader<&UnixStream>,
    mut writer: &UnixStream,
    stop: &AtomicBool,
) {
    let filter = match CtFilter::from_request(req) {
        Ok(f) => f,
        Err(e) => {
            let _ = Response::err(e.to_string(), vec![]).write_to(&mut writer);
            return;
        }
    };
    // Subscribed before the status line: whatever happens after the client
    // read it is shown. Both families' tables, as `conntrack -E` shows
    // IPv4 and IPv6 events (`-f` unset).
    let Some(id) = Listening::subscribe(control) else {
        let _ = Response::err(
            format!("too many conntrack event listeners ({MAX_LISTENERS}); try again later"),
            vec![],
        )
        .write_to(&mut writer);
        return;
    };
    if writeln!(writer, "{VERSION} STREAM")
        .and_then(|()| writer.flush())
        .is_err()
    {
        id.unsubscribe(control);
        return;
    }
    let _ = reader.get_ref().set_read_timeout(Some(POLL));
    // Deletions are made by this process on its clients' behalf.
    let portid = std::process::id();
    let progname = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "xdpgw".into());
    let mut out = String::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = writer.write_all(b".\n");
            break;
        }
        // The client sends nothing more; reading tells when it is gone and
        // paces the loop.
        let gone = match reader.fill_buf() {
            Ok([]) => true,
            Ok(b) => {
                let n = b.len();
                reader.consume(n);
                false
            }
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        if gone {
            break;
        }
        let now = (control.now)();
        let polled = id.poll(control, now);
        out.clear();
        if polled.lost > 0 {
            out.push_str(&format!(
                "W WARNING: {} events lost (the gateway's event buffers were full)\n",
                polled.lost
            ));
        }
        let deleter = (portid, progname.as_str());
        for l in polled.lines(
            now,
            |e| filter.matches(&e.snap),
            |e| filter.matches6(&e.snap),
            |e| event_line(e, now, deleter),
            |e| event_line(e, now, deleter),
        ) {
            out.push_str("E ");
            out.push_str(&l);
            out.push('\n');
        }
        if !out.is_empty() && writer.write_all(out.as_bytes()).is_err() {
            break;
        }
    }
    id.unsubscribe(control);
}

/// The client side: sends `req`, prints events on stdout and warnings on
/// stderr until `interrupted` is set (Ctrl-C) or the gateway ends the
/// stream. Returns how many events were shown, or an error.
pub fn follow(
    socket: &std::path::Path,
    req: &Request,
    interrupted: &AtomicBool,
) -> Result<(u64, bool), super::ClientError> {
    use super::ClientError;
    let s = super::connect_socket(socket)?;
    let mut writer = s.try_clone()?;
    let mut reader = BufReader::new(s);
    let mut line = req.encode();
    line.push('\n');
    // A gateway that closed the connection (too many clients) may have
    // said why before: read that first.
    let sent = writer.write_all(line.as_bytes());
    let mut status = String::new();
    match (reader.read_line(&mut status), sent) {
        (Ok(n), _) if n > 0 => {}
        (Err(e), _) | (_, Err(e)) => return Err(ClientError::Io(e)),
        (Ok(_), Ok(())) => return Err(ClientError::Closed),
    }
    let status = status.trim_end_matches('\n');
    if status != format!("{VERSION} STREAM") {
        // An ordinary response: an error (or an old gateway).
        let mut whole = format!("{status}\n").into_bytes();
        reader.read_to_end(&mut whole)?;
        let r = Response::read_from(&mut &whole[..])?;
        return Err(ClientError::Refused {
            message: r.message,
            body: r.body,
        });
    }
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut shown = 0u64;
    let mut stdout = std::io::stdout();
    let mut rec = Vec::new();
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return Ok((shown, true));
        }
        match reader.read_until(b'\n', &mut rec) {
            Ok(0) => return Err(ClientError::StreamEnded),
            Ok(_) if rec.ends_with(b"\n") => {}
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(ClientError::Io(e)),
        }
        let text = String::from_utf8_lossy(&rec).into_owned();
        rec.clear();
        let text = text.trim_end_matches('\n');
        if text == "." {
            return Ok((shown, false));
        }
        if let Some(ev) = text.strip_prefix("E ") {
            shown += 1;
            let _ = writeln!(stdout, "{ev}");
            let _ = stdout.flush();
        } else if let Some(w) = text.strip_prefix("W ") {
            eprintln!("{w}");
        }
    }
}
