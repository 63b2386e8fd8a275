//! Conntrack state sync with a peer gateway, wire-compatible with
//! conntrackd (conntrack-tools 1.4.x), so that a pair may be two xdpgw
//! nodes or an xdpgw node and a Linux gateway running conntrackd.
//!
//! - [`wire`]: the protocol's messages; [`session`]: NOTRACK and FTFW as
//!   conntrackd runs them (sans I/O); [`entry`]: xdpgw's entries as
//!   conntrackd carries them; [`cache`]: the external cache;
//!   [`conf`]: `[sync]` or a conntrackd.conf's `Sync` section.
//! - The sync thread ([`serve`]) is one more listener of the conntrack
//!   event rings of both tables, IPv4's and IPv6's, as the NAT log is
//!   (IPv6 entries go as conntrackd sends them: `NTA_IPV6`,
//!   `NTA_SNAT_IPV6`, `NTA_DNAT_IPV6`; the workers record events under the
//!   shard locks they hold anyway and never wait for this thread; a full
//!   ring drops events and counts them). Every [`POLL`] it takes the
//!   events, keeps the last state of each connection (a NEW and its
//!   UPDATEs in one poll go as one NEW; a NEW and its DESTROY as nothing),
//!   and sends them packed into MTU-sized datagrams, so that a storm of new
//!   connections goes as a few datagrams a poll. It receives the peer's
//!   datagrams into the external cache, answers its RESYNC requests with
//!   the whole table, and keeps the session alive.
//! - The control socket's `sync-*` commands (`xdpgw sync ...`, what a
//!   keepalived notify script calls, as it calls `conntrackd -c/-f/-n/-B`):
//!   `commit` puts the external cache in the live tables (each entry in
//!   its family's) with its NAT
//!   ([`xdpgw_dataplane::conntrack::Conntrack::commit`]), `flush` empties
//!   the external cache, `resync` asks the peer for its table, `bulk` sends
//!   this node's, `stats`, `dump-external`.
//!
//! The sync runs over a kernel interface (a dedicated link), with ordinary
//! UDP sockets: it never touches the packet path.

pub mod cache;
pub mod conf;
pub mod entry;
pub mod session;
pub mod wire;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use xdpgw_dataplane::conntrack::{
    proc_line, Conntrack, CtEvent, EntryRef, EventKind, Nanos, Restored, Snapshot, WalkCursor,
};
use xdpgw_dataplane::flow::{Addr, Tuple};

use crate::api::events::Listening;
use crate::api::server::Control;
use cache::ExternalCache;
use conf::{SyncConfig, Transport};
use session::{Mode, Received, Session, SessionConfig, SessionCounters};
use wire::CtKind;

/// How long the thread waits for the peer's datagrams before it looks at
/// the events again.
pub const POLL: Duration = Duration::from_millis(20);
/// Datagrams read in one poll at most.
const RECV_BURST: usize = 256;
/// Entries of a whole-table send (RESYNC answered, `bulk`) per poll: about
/// 860 datagrams, 800,000 entries a second.
const BULK_PER_POLL: usize = 16_384;

/// What the control socket asks of the sync thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Resync,
    Bulk,
}

/// What the sync thread counts besides its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    pub session: SessionCounters,
    /// Events lost before this thread took them (rings or its queue full).
    pub events_lost: u64,
    /// Entry changes sent (after coalescing).
    pub entries_sent: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// Whole tables sent (RESYNC answered, `bulk`).
    pub bulks_sent: u64,
    pub resyncs_requested: u64,
    /// FTFW: messages sent and not acknowledged yet.
    pub unacknowledged: usize,
}

/// The sync's state shared by its thread and the control socket.
#[derive(Debug)]
pub struct SyncShared {
    pub cfg: SyncConfig,
    external: Mutex<ExternalCache>,
    asks: Mutex<Vec<Ask>>,
    counters: Mutex<SyncCounters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SyncShared {
    pub fn new(cfg: SyncConfig) -> SyncShared {
        SyncShared {
            external: Mutex::new(ExternalCache::new(cfg.cache_max)),
            cfg,
            asks: Mutex::new(Vec::new()),
            counters: Mutex::new(SyncCounters::default()),
        }
    }

    pub fn counters(&self) -> SyncCounters {
        *lock(&self.counters)
    }

    /// The counters and the external cache's size.
    pub fn snapshot(&self) -> (SyncCounters, usize) {
        (self.counters(), lock(&self.external).len())
    }
}

/// The sync's sockets on the dedicated link.
#[derive(Debug)]
pub struct SyncSockets {
    rx: UdpSocket,
    tx: UdpSocket,
    dest: SocketAddrV4,
    /// The link's MTU.
    mtu: u32,
}

/// Opens the sockets: UDP bound to this node's address and the port,
/// sending to the peer; multicast bound to the group and port, joined on
/// this node's address, sending from that address (which picks the link)
/// with loopback off. The sync thread tries again every second while the
/// address is not there (a link configured after the gateway started).
pub fn open(cfg: &SyncConfig) -> std::io::Result<SyncSockets> {
    let (rx, tx, dest) = match cfg.transport {
        Transport::Udp { peer } => {
            let rx = UdpSocket::bind(SocketAddrV4::new(cfg.address, cfg.port))?;
            let tx = rx.try_clone()?;
            (rx, tx, SocketAddrV4::new(peer, cfg.port))
        }
        Transport::Multicast { group } => {
            let rx = UdpSocket::bind(SocketAddrV4::new(group, cfg.port))?;
            rx.join_multicast_v4(&group, &cfg.address)?;
            let tx = UdpSocket::bind(SocketAddrV4::new(cfg.address, 0))?;
            tx.set_multicast_loop_v4(false)?;
            tx.set_multicast_ttl_v4(1)?;
            (rx, tx, SocketAddrV4::new(group, cfg.port))
        }
    };
    rx.set_read_timeout(Some(POLL))?;
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", cfg.interface))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500);
    Ok(SyncSockets { rx, tx, dest, mtu })
}

/// The last state of each connection among `events`, in order: a NEW
/// followed by UPDATEs is one NEW with the last state, UPDATEs one UPDATE,
/// a NEW and its DESTROY nothing.
pub fn coalesce<A: Addr>(events: &[CtEvent<A>]) -> Vec<(CtKind, Snapshot<A>)> {
    let mut out: Vec<Option<(CtKind, Snapshot<A>)>> = Vec::with_capacity(events.len());
    let mut at: HashMap<Tuple<A>, usize> = HashMap::with_capacity(events.len());
    for e in events {
        let kind = match e.kind {
            EventKind::New => CtKind::New,
            EventKind::Update => CtKind::Update,
            EventKind::Destroy => CtKind::Destroy,
        };
        if let Some(&i) = at.get(&e.snap.orig) {
            match (out[i].map(|o| o.0), kind) {
                (Some(CtKind::New), CtKind::Destroy) => {
                    out[i] = None;
                    at.remove(&e.snap.orig);
                }
                (Some(CtKind::New), _) => out[i] = Some((CtKind::New, e.snap)),
                (Some(CtKind::Update), _) => out[i] = Some((kind, e.snap)),
                // A DESTROY then a NEW (the tuple taken again): both go.
                _ => {
                    at.insert(e.snap.orig, out.len());
                    out.push(Some((kind, e.snap)));
                }
            }
        } else {
            at.insert(e.snap.orig, out.len());
            out.push(Some((kind, e.snap)));
        }
    }
    out.into_iter().flatten().collect()
}

/// Starts listening to the conntrack events of both families (before the
/// gateway says it is ready, so that no connection escapes the sync): the
/// listener's ids for [`serve`]. `None` if there are too many listeners
/// already.
pub fn subscribe(control: &Control) -> Option<Listening> {
    Listening::subscribe(control)
}

/// The changes of one family's events to send: the last state of each
/// connection, less what the control plane put in (a commit of what the
/// peer sent, a restore), as conntrackd does not send the kernel's events
/// for its own commits; deletions from userspace (`conntrack -D`) are
/// sent. How many went.
fn send_events<A: Addr + Into<std::net::IpAddr>>(
    session: &mut Session,
    mut events: Vec<CtEvent<A>>,
    now: Nanos,
) -> u64 {
    events.retain(|e| !(e.userspace() && e.kind != EventKind::Destroy));
    let changes = coalesce(&events);
    for (kind, s) in &changes {
        session.send_ct(*kind, &entry::from_snapshot(s, now));
    }
    changes.len() as u64
}

/// A whole-table send under way (RESYNC answered, `bulk`): the IPv4
/// table, then the IPv6 table.
#[derive(Debug, Default)]
struct Bulk {
    cursor: WalkCursor,
    v6: bool,
}

/// Sends the next entries of `ct` (at most [`BULK_PER_POLL`], a short hold
/// of each shard lock, as `conntrack -L`'s walk) from `cursor`: how many
/// went, and whether the table has more.
fn send_table_slice<A: Addr + Into<std::net::IpAddr>>(
    session: &mut Session,
    ct: &Conntrack<A>,
    cursor: &mut WalkCursor,
    chunk: &mut Vec<(EntryRef, Snapshot<A>)>,
    now: Nanos,
) -> (u64, bool) {
    let mut more = false;
    while chunk.len() < BULK_PER_POLL {
        more = ct.walk(cursor, 512, chunk);
        if !more {
            break;
        }
    }
    let mut sent = 0;
    for (_, s) in chunk.drain(..) {
        if s.listed_at(now) {
            session.send_ct(CtKind::Update, &entry::from_snapshot(&s, now));
            sent += 1;
        }
    }
    (sent, more)
}

/// The wall-clock time in seconds: where conntrackd starts its sequence
/// numbers (`time(NULL)`).
fn first_seq() -> u32 {
    (crate::state_file::wall_now() / 1_000_000_000) as u32
}

/// Runs the sync until `stop` is set (its own thread), for the event
/// listener `id` ([`subscribe`]).
pub fn serve(
    control: &Control,
    shared: &SyncShared,
    id: Listening,
    stop: &AtomicBool,
    report: &dyn Fn(String),
) {
    let ct = &control.gw.conntrack;
    let cfg = &shared.cfg;
    let mut reported = false;
    let socks = loop {
        if stop.load(Ordering::Relaxed) {
            id.unsubscribe(control);
            return;
        }
        match open(cfg) {
            Ok(s) => break s,
            Err(e) => {
                if !reported {
                    report(format!(
                        "sync: {} {}:{}: {e}; trying again every second",
                        cfg.interface, cfg.address, cfg.port
                    ));
                    reported = true;
                }
                // Events meanwhile are dropped (counted as lost).
                let p = id.poll(control, (control.now)());
                lock(&shared.counters).events_lost += p.lost + (p.v4.len() + p.v6.len()) as u64;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    report(format!(
        "sync: {} {}:{} open ({} to {})",
        cfg.interface,
        cfg.address,
        cfg.port,
        match cfg.mode {
            Mode::Ftfw => "FTFW",
            Mode::Notrack => "NOTRACK",
        },
        socks.dest
    ));
    let mut scfg = SessionConfig::new(cfg.mode, socks.mtu);
    scfg.window = cfg.window;
    scfg.resend_queue = cfg.resend_queue;
    let mut session = Session::new(scfg, first_seq(), (control.now)());
    let mut buf = vec![0u8; 65536];
    let mut received = Vec::new();
    let mut failing = false;
    let mut walk: Option<Bulk> = None;
    let mut chunk = Vec::with_capacity(BULK_PER_POLL);
    let mut chunk6 = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Datagrams for at most a poll (then the events get their turn).
        let until = Instant::now() + POLL;
        for _ in 0..RECV_BURST {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || socks.rx.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match socks.rx.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) if *from.ip() != cfg.address => {
                    session.receive(&buf[..n], &mut received)
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => break,
            }
        }
        let now = (control.now)();
        let mut bulk = false;
        if !received.is_empty() {
            let mut ext = lock(&shared.external);
            for r in received.drain(..) {
                match r {
                    Received::Ct(kind, c) => ext.apply(kind, c, now),
                    Received::ResyncRequested => bulk = true,
                }
            }
        }
        let asks = std::mem::take(&mut *lock(&shared.asks));
        for a in asks {
            match a {
                Ask::Resync => {
                    session.request_resync();
                    lock(&shared.counters).resyncs_requested += 1;
                }
                Ask::Bulk => bulk = true,
            }
        }
        let polled = id.poll(control, now);
        let lost = polled.lost;
        let mut sent = send_events(&mut session, polled.v4, now);
        sent += send_events(&mut session, polled.v6, now);
        if bulk {
            // From the start again (a bulk under way starts over).
            walk = Some(Bulk::default());
            lock(&shared.counters).bulks_sent += 1;
        }
        // The whole table goes a slice a poll, so that neither a large
        // table nor the datagrams it makes are held at once.
        if let Some(b) = walk.as_mut() {
            let (n, more) = match (&control.gw.conntrack6, b.v6) {
                (Some(ct6), true) => {
                    send_table_slice(&mut session, ct6, &mut b.cursor, &mut chunk6, now)
                }
                _ => send_table_slice(&mut session, ct, &mut b.cursor, &mut chunk, now),
            };
            sent += n;
            if !more && !b.v6 && control.gw.conntrack6.is_some() {
                *b = Bulk {
                    cursor: WalkCursor::default(),
                    v6: true,
                };
            } else if !more {
                walk = None;
            }
        }
        session.tick(now);
        let mut errors = 0u64;
        for d in session.flush(now) {
            if let Err(e) = socks.tx.send_to(&d, socks.dest) {
                errors += 1;
                if !failing {
                    report(format!("sync: sending to {}: {e}", socks.dest));
                }
            }
        }
        failing = errors > 0;
        let mut c = lock(&shared.counters);
        c.session = session.counters;
        c.unacknowledged = session.unacknowledged();
        c.events_lost += lost;
        c.entries_sent += sent;
        c.send_errors += errors;
    }
    id.unsubscribe(control);
}

/// What `commit` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The IPv4 table's.
    pub table: Restored,
    /// The IPv6 table's.
    pub table6: Restored,
    /// Entries of the external cache no table can take: incomplete (a TCP
    /// entry without its state), or IPv6 where the gateway has no IPv6
    /// (no `rules6`).
    pub left_out: usize,
}

impl Committed {
    /// Both tables' counts.
    pub fn total(&self) -> Restored {
        let (a, b) = (self.table, self.table6);
        Restored {
            restored: a.restored + b.restored,
            expired: a.expired + b.expired,
            clashed: a.clashed + b.clashed,
            no_room: a.no_room + b.no_room,
            replaced: a.replaced + b.replaced,
        }
    }
}

/// Puts the external cache in the live tables (`conntrackd -c`), IPv4
/// entries in the IPv4 table, IPv6 ones in the IPv6 table: each entry
/// with its NAT and the time it had left less the time since it arrived.
/// The cache keeps its entries (`flush` empties it, as `conntrackd -f`).
pub fn commit(control: &Control, shared: &SyncShared) -> Committed {
    let now = (control.now)();
    let cached = lock(&shared.external).entries();
    let mut entries = Vec::with_capacity(cached.len());
    let mut entries6 = Vec::new();
    let mut left_out = 0;
    let v6 = control.gw.conntrack6.is_some();
    for c in &cached {
        let age = now.saturating_sub(c.at);
        let ok = if let Some(t) = entry::tuples_v4(&c.ct) {
            entry::to_saved(&c.ct, t, age).map(|e| entries.push(e))
        } else if let Some(t) = entry::tuples_v6(&c.ct).filter(|_| v6) {
            entry::to_saved(&c.ct, t, age).map(|e| entries6.push(e))
        } else {
            Err("no table of its family")
        };
        if ok.is_err() {
            left_out += 1;
        }
    }
    let table6 = match &control.gw.conntrack6 {
        Some(ct6) if !entries6.is_empty() => ct6.commit(now, &entries6),
        _ => Restored::default(),
    };
    Committed {
        table: control.gw.conntrack.commit(now, &entries),
        table6,
        left_out,
    }
}

/// The control socket's `sync-*` commands: the body of an `OK`, or the
/// message of an `ERR`.
pub fn command(control: &Control, what: &str) -> Result<Vec<String>, String> {
    let Some(shared) = control.sync.as_deref() else {
        return Err("no sync: the configuration has no [sync]".into());
    };
    match what {
        "sync-commit" => {
            let c = commit(control, shared);
            let t = c.total();
            let mut line = format!("committed {} entries", t.restored);
            if t.replaced > 0 {
                line.push_str(&format!(", {} in their way replaced", t.replaced));
            }
            if t.no_room + t.clashed + c.left_out > 0 {
                line.push_str(&format!(
                    "; left out: {} (table full), {} (clash), {} (incomplete, or IPv6 without rules6)",
                    t.no_room, t.clashed, c.left_out
                ));
            }
            Ok(vec![line])
        }
        "sync-flush" => {
            let n = lock(&shared.external).flush();
            Ok(vec![format!("external cache flushed: {n} entries")])
        }
        "sync-resync" => {
            ask(shared, Ask::Resync);
            Ok(vec!["resync requested".into()])
        }
        "sync-bulk" => {
            ask(shared, Ask::Bulk);
            Ok(vec!["bulk update queued".into()])
        }
        "sync-stats" => Ok(stats(shared)),
        "sync-external" => {
            let now = (control.now)();
            let ext = lock(&shared.external).entries();
            let mut out = Vec::with_capacity(ext.len());
            for c in ext {
                let age = now.saturating_sub(c.at);
                if let Some(t) = entry::tuples_v4(&c.ct) {
                    out.push(proc_line(&entry::snapshot(&c.ct, t, now, age), now));
                } else if let Some(t) = entry::tuples_v6(&c.ct) {
                    out.push(proc_line(&entry::snapshot(&c.ct, t, now, age), now));
                }
            }
            Ok(out)
        }
        other => Err(format!("unknown command '{other}'")),
    }
}

/// Queues a request for the sync thread, once (a second of the same kind
/// before the thread took the first is the same request).
fn ask(shared: &SyncShared, a: Ask) {
    let mut asks = lock(&shared.asks);
    if !asks.contains(&a) {
        asks.push(a);
    }
}

/// `xdpgw sync stats`, in the spirit of `conntrackd -s`.
fn stats(shared: &SyncShared) -> Vec<String> {
    let c = shared.counters();
    let e = lock(&shared.external);
    let s = c.session;
    let cfg = &shared.cfg;
    let mode = match cfg.mode {
        Mode::Ftfw => "FTFW",
        Mode::Notrack => "NOTRACK",
    };
    let peer = match cfg.transport {
        Transport::Udp { peer } => format!("udp {peer}:{}", cfg.port),
        Transport::Multicast { group } => format!("multicast {group}:{}", cfg.port),
    };
    vec![
        format!(
            "mode {mode} link {} from {} to {peer}",
            cfg.interface, cfg.address
        ),
        format!(
            "cache external: entries {} created {} updated {} destroyed {} refused-full {}",
            e.len(),
            e.counters.created,
            e.counters.updated,
            e.counters.destroyed,
            e.counters.full
        ),
        format!(
            "sent: entries {} messages {} datagrams {} errors {} bulks {} resync-requests {}",
            c.entries_sent,
            s.messages_sent,
            s.datagrams_sent,
            c.send_errors,
            c.bulks_sent,
            c.resyncs_requested
        ),
        format!(
            "received: datagrams {} messages {} malformed {} lost {} delayed {} expectations {}",
            s.datagrams_received,
            s.messages_received,
            s.malformed,
            s.lost,
            s.before,
            s.expectations
        ),
        format!(
            "ftfw: unacknowledged {} resent {} resend-overflow {} | events lost {}",
            c.unacknowledged, s.resent, s.resend_overflow, c.events_lost
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use xdpgw_dataplane::conntrack::TcpState;

    use super::*;

    fn ev(kind: EventKind, port: u16, state: TcpState) -> CtEvent {
        let orig = Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 254),
            sport: port,
            dport: 80,
            proto: 6,
        };
        CtEvent {
            kind,
            at: Some(1),
            protoinfo: true,
            snap: Snapshot {
                orig,
                reply: orig.invert(),
                status: 8,
                tcp_state: state,
                mark: 0,
                expires: 100,
                packets: [1, 0],
                bytes: [60, 0],
                icmp_type: 0,
                icmp_code: 0,
            },
        }
    }

    #[test]
    fn one_change_per_connection_per_poll() {
        use EventKind::*;
        let events = [
            ev(New, 1, TcpState::SynSent),
            ev(Update, 1, TcpState::SynRecv),
            ev(Update, 1, TcpState::Established),
            ev(New, 2, TcpState::SynSent),
            ev(Destroy, 2, TcpState::SynSent),
            ev(Update, 3, TcpState::FinWait),
            ev(Destroy, 3, TcpState::TimeWait),
            ev(Destroy, 4, TcpState::Close),
            ev(New, 4, TcpState::SynSent),
        ];
        let got: Vec<(CtKind, u16, TcpState)> = coalesce(&events)
            .into_iter()
            .map(|(k, s)| (k, s.orig.sport, s.tcp_state))
            .collect();
        assert_eq!(
            got,
            vec![
                (CtKind::New, 1, TcpState::Established),
                (CtKind::Destroy, 3, TcpState::TimeWait),
                (CtKind::Destroy, 4, TcpState::Close),
                (CtKind::New, 4, TcpState::SynSent),
            ]
        );
    }
}
