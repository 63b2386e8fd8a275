//! The gateway side of the control socket: binding it safely, serving it
//! from a thread of `xdpgw run`, and the commands.
//!
//! Everything here runs off the packet path. Workers publish their
//! counters through atomics they alone write ([`WorkerPublished`], the rule
//! counters of `classify::RuleCounters`); this thread only reads them, and
//! serialises its own writes (reload, zero) under [`Control::state`].

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xdpgw_dataplane::conntrack::{proc_line, CtCounters, InvalidReason, Snapshot, TcpState};
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::pipeline::{Gateway, WorkerStats};
use xdpgw_dataplane::rule::{RuleSet, Table};

use super::view::{list, ListFormat};
use super::{Request, Response};

/// One queue's counters as its worker last published them.
#[derive(Debug, Default)]
pub struct QueuePublished {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub tx_full: AtomicU64,
    pub tx_invalid: AtomicU64,
    /// Kernel: dropped for other reasons than a full ring.
    pub rx_dropped: AtomicU64,
    /// Kernel: dropped because the RX ring was full.
    pub rx_ring_full: AtomicU64,
}

/// A worker's counters, published for the control thread. Each field has a
/// single writer (its worker, with Relaxed stores after each batch) and is
/// read with Relaxed loads: they are independent statistics, and nothing
/// else is published through them.
#[derive(Debug)]
pub struct WorkerPublished {
    pub rx: AtomicU64,
    pub forwarded: AtomicU64,
    pub host: AtomicU64,
    /// Packets the host sent through the host path.
    pub from_host: AtomicU64,
    /// Of `forwarded`: by the established-flow fast path.
    pub fast_path: AtomicU64,
    pub consumed: AtomicU64,
    pub emitted: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Conntrack counters of the packets it tracked (`conntrack -S`).
    pub ct: CtPublished,
    /// (interface index, queue id, counters) of the queues it owns.
    pub queues: Vec<(u8, u32, QueuePublished)>,
}

/// A worker's [`CtCounters`], published as [`WorkerPublished`] is.
#[derive(Debug, Default)]
pub struct CtPublished {
    pub found: AtomicU64,
    pub new: AtomicU64,
    pub related: AtomicU64,
    pub invalid: [AtomicU64; InvalidReason::COUNT],
    pub icmp_bad_checksum: AtomicU64,
    pub insert: AtomicU64,
    pub insert_failed: AtomicU64,
    pub drop: AtomicU64,
    pub early_drop: AtomicU64,
    pub search_restart: AtomicU64,
}

impl CtPublished {
    fn store(&self, c: &CtCounters) {
        // Relaxed: as `WorkerPublished::publish`.
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        st(&self.found, c.found);
        st(&self.new, c.new);
        st(&self.related, c.related);
        for (a, v) in self.invalid.iter().zip(c.invalid_by_reason.iter()) {
            st(a, *v);
        }
        st(&self.icmp_bad_checksum, c.icmp_bad_checksum);
        st(&self.insert, c.insert);
        st(&self.insert_failed, c.insert_failed);
        st(&self.drop, c.drop);
        st(&self.early_drop, c.early_drop);
        st(&self.search_restart, c.search_restart);
    }

    /// The counters as last published.
    pub fn load(&self) -> CtCounters {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut c = CtCounters {
            found: ld(&self.found),
            new: ld(&self.new),
            related: ld(&self.related),
            icmp_bad_checksum: ld(&self.icmp_bad_checksum),
            insert: ld(&self.insert),
            insert_failed: ld(&self.insert_failed),
            drop: ld(&self.drop),
            early_drop: ld(&self.early_drop),
            search_restart: ld(&self.search_restart),
            ..CtCounters::default()
        };
        for (v, a) in c.invalid_by_reason.iter_mut().zip(self.invalid.iter()) {
            *v = ld(a);
        }
        c
    }
}

impl WorkerPublished {
    pub fn new(queues: Vec<(u8, u32)>) -> WorkerPublished {
        WorkerPublished {
            rx: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            host: AtomicU64::new(0),
            from_host: AtomicU64::new(0),
            fast_path: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            ct: CtPublished::default(),
            queues: queues
                .into_iter()
                .map(|(i, q)| (i, q, QueuePublished::default()))
                .collect(),
        }
    }

    /// Publishes the worker's statistics (its worker only).
    pub fn publish(&self, s: &WorkerStats) {
        // Relaxed: single writer, independent statistics (see the type).
        self.rx.store(s.rx, Ordering::Relaxed);
        self.forwarded.store(s.forwarded, Ordering::Relaxed);
        self.host.store(s.host, Ordering::Relaxed);
        self.from_host.store(s.from_host, Ordering::Relaxed);
        self.fast_path.store(s.fast_path, Ordering::Relaxed);
        self.consumed.store(s.consumed, Ordering::Relaxed);
        self.emitted.store(s.emitted, Ordering::Relaxed);
        for (p, v) in self.drops.iter().zip(s.drops.iter()) {
            p.store(*v, Ordering::Relaxed);
        }
        self.ct.store(&s.ct);
    }

    /// Publishes one queue's statistics (its worker only).
    pub fn publish_queue(&self, k: usize, s: &xdpgw_dataplane::port::QueueStats) {
        if let Some((_, _, q)) = self.queues.get(k) {
            // Relaxed: as `publish`.
            q.rx.store(s.rx, Ordering::Relaxed);
            q.tx.store(s.tx, Ordering::Relaxed);
            q.tx_full.store(s.tx_full, Ordering::Relaxed);
            q.tx_invalid.store(s.tx_invalid, Ordering::Relaxed);
            q.rx_dropped.store(s.rx_dropped, Ordering::Relaxed);
            q.rx_ring_full.store(s.rx_ring_full, Ordering::Relaxed);
        }
    }
}

/// What the control thread works on.
pub struct Control {
    pub gw: Arc<Gateway>,
    /// The configuration's rule file (SIGHUP and `reload` without a file).
    pub rules_file: PathBuf,
    /// The rule set the running compiled set was made from; its lock also
    /// serialises the commands that write (reload, zero).
    pub state: Mutex<RuleSet>,
    pub workers: Vec<Arc<WorkerPublished>>,
    /// Interface names, by index.
    pub names: Vec<String>,
    /// The workers' clock (ns): conntrack expiry times are on it.
    pub now: fn() -> u64,
    /// Listeners of `conntrack -E`.
    pub events: super::events::EventHub,
}

/// What a successful reload did.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub file: PathBuf,
    pub rules: usize,
    pub kept_counters: usize,
    /// From the request to the new set installed.
    pub installed: Duration,
    /// From the request to every worker running the new set.
    pub in_force: Duration,
    /// False if a worker still ran the old set after a second (stuck?):
    /// the new set is installed, but the carried-over counters may miss
    /// that worker's last counts.
    pub everywhere: bool,
}

impl Reloaded {
    /// One line saying what happened.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if self.everywhere {
            format!(
                "reloaded {}: {} rules; in force on every worker after {:.1} ms (installed after \
                 {:.1} ms); counters kept for {} rules and chains",
                self.file.display(),
                self.rules,
                ms(self.in_force),
                ms(self.installed),
                self.kept_counters
            )
        } else {
            format!(
                "reloaded {}: {} rules; installed after {:.1} ms but NOT yet in force on every \
                 worker after {:.0} ms (a worker is not picking it up); counters kept for {} \
                 rules and chains may miss that worker's last counts",
                self.file.display(),
                self.rules,
                ms(self.installed),
                ms(self.in_force),
                self.kept_counters
            )
        }
    }
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, RuleSet> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses, validates and compiles `file` (default: the configuration's
    /// rule file) here, off the workers, installs it, waits until every
    /// worker runs it (at most a second) and carries over the counters of
    /// unchanged rules ([`super::reload`]). On any error the running set
    /// stays in force; the error lines name `file:line:column`.
    pub fn reload(&self, file: Option<&Path>) -> Result<Reloaded, Vec<String>> {
        let t0 = Instant::now();
        let file = file.unwrap_or(&self.rules_file).to_path_buf();
        let set = crate::load_rules(&file).map_err(|e| {
            let mut lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            lines.push(format!(
                "{}: {} error{}; nothing loaded",
                file.display(),
                e.len(),
                if e.len() == 1 { "" } else { "s" }
            ));
            lines
        })?;
        let compiled = self
            .gw
            .compile(&set)
            .map_err(|e| vec![format!("{}: {e}", file.display())])?;
        let mut current = self.lock();
        let carried = super::reload::carried(&current, &set);
        let new = Arc::new(compiled);
        let old = self.gw.install_compiled(Arc::clone(&new));
        let installed = t0.elapsed();
        // Workers drop their reference at their next batch (an idle one
        // wakes within 10 ms). After that nobody counts in `old` any more.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        let everywhere = Arc::strong_count(&old) == 1;
        // Acquire: pairs with the Release decrement of the worker that
        // dropped `old` last (read by `strong_count`'s load), so that its
        // last counts in `old` are visible to `totals` below.
        std::sync::atomic::fence(Ordering::Acquire);
        let in_force = t0.elapsed();
        let totals = old.live.totals();
        for &(n, o) in &carried {
            if let Some(&c) = totals.get(o) {
                new.live.add_base(n, c);
            }
        }
        let rules = set.tables.iter().map(|t| t.rule_count()).sum();
        *current = set;
        Ok(Reloaded {
            file,
            rules,
            kept_counters: carried.len(),
            installed,
            in_force,
            everywhere,
        })
    }

    /// The running rule set with its live counters.
    pub fn with_counters(&self) -> RuleSet {
        let set = self.lock();
        let totals = self.gw.rules().live.totals();
        crate::run::with_counters(&set, &totals)
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        match req.command.as_str() {
            "ping" => Response::ok(vec![format!(
                "xdpgw {} pid {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            )]),
            "reload" => match self.reload(req.get("file").map(Path::new)) {
                Ok(r) => Response::ok(vec![r.summary()]),
                Err(lines) => {
                    Response::err("reload failed; the running rules stay in force", lines)
                }
            },
            "list" => self.list(req),
            "save" => {
                let set = if req.is_set("counters") {
                    self.with_counters()
                } else {
                    self.lock().clone()
                };
                let mut out = String::new();
                for t in &set.tables {
                    if req.get("table").is_none_or(|n| n == t.table.name()) {
                        crate::save::render_table(&mut out, t, req.is_set("counters"));
                    }
                }
                Response::ok(out.lines().map(str::to_string).collect())
            }
            "zero" => self.zero(req),
            "stats" => Response::ok(self.stats()),
            "stats-sample" => Response::ok(super::stats::sample_lines(self)),
            "metrics" => Response::ok(
                super::metrics::render(self)
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            "ct-list" | "ct-delete" | "ct-count" => self.conntrack(req),
            "ct-flush" => {
                let n = self.gw.conntrack.remove_if(|_| true).len();
                Response::ok(vec![format!(
                    "connection tracking table has been emptied ({n} entries deleted)"
                )])
            }
            "ct-stats" => Response::ok(self.ct_stats()),
            other => Response::err(format!("unknown command '{other}'"), vec![]),
        }
    }

    fn table(req: &Request) -> Result<Table, Response> {
        let name = req.get("table").unwrap_or("filter");
        Table::from_name(name).ok_or_else(|| {
            Response::err(
                format!("unknown table '{name}'; tables: raw, mangle, nat, filter"),
                vec![],
            )
        })
    }

    fn list(&self, req: &Request) -> Response {
        let table = match Self::table(req) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let set = self.with_counters();
        let f = ListFormat {
            verbose: req.is_set("verbose"),
            numeric: req.is_set("numeric"),
            exact: req.is_set("exact"),
            line_numbers: req.is_set("line_numbers"),
        };
        let Some(t) = set.tables.iter().find(|t| t.table == table) else {
            return Response::err(format!("table '{}' is not loaded", table.name()), vec![]);
        };
        match list(t, req.get("chain"), f) {
            Ok(text) => Response::ok(text.lines().map(str::to_string).collect()),
            Err(e) => Response::err(e, vec![]),
        }
    }

    fn zero(&self, req: &Request) -> Response {
        let only = match req.get("table") {
            None => None,
            Some(_) => match Self::table(req) {
                Ok(t) => Some(t),
                Err(r) => return r,
            },
        };
        let chain = req.get("chain");
        let set = self.lock();
        let live = self.gw.rules();
        let mut slot = 0usize;
        let mut zeroed = 0usize;
        let mut found = chain.is_none();
        for t in &set.tables {
            for c in &t.chains {
                let hit = only.is_none_or(|o| o == t.table) && chain.is_none_or(|n| n == c.name);
                found |= hit;
                for _ in 0..=c.rules.len() {
                    if hit {
                        live.live.zero(slot);
                        zeroed += 1;
                    }
                    slot += 1;
                }
            }
        }
        if !found {
            return Response::err(
                format!("chain '{}' does not exist", chain.unwrap_or("")),
                vec![],
            );
        }
        Response::ok(vec![format!("{zeroed} counters zeroed")])
    }

    fn stats(&self) -> Vec<String> {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = Vec::new();
        let mut total = WorkerStats::default();
        for (w, p) in self.workers.iter().enumerate() {
            let drops: u64 = p.drops.iter().map(ld).sum();
            out.push(format!(
                "worker {w}: received {} forwarded {} host {} answered/held {} generated {} dropped {drops}",
                ld(&p.rx),
                ld(&p.forwarded),
                ld(&p.host),
                ld(&p.consumed),
                ld(&p.emitted)
            ));
            total.rx += ld(&p.rx);
            total.forwarded += ld(&p.forwarded);
            total.host += ld(&p.host);
            total.consumed += ld(&p.consumed);
            total.emitted += ld(&p.emitted);
            for (r, d) in DropReason::ALL.iter().zip(p.drops.iter()) {
                let n = ld(d);
                total.drops[*r as usize] += n;
                if n > 0 {
                    out.push(format!("  dropped {}: {n}", r.name()));
                }
            }
            for (iface, q, s) in &p.queues {
                let name = self
                    .names
                    .get(usize::from(*iface))
                    .map_or("?", String::as_str);
                out.push(format!(
                    "  {name} queue {q}: received {} sent {} tx_full {} tx_invalid {} kernel_rx_dropped {} kernel_rx_ring_full {}",
                    ld(&s.rx),
                    ld(&s.tx),
                    ld(&s.tx_full),
                    ld(&s.tx_invalid),
                    ld(&s.rx_dropped),
                    ld(&s.rx_ring_full)
                ));
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            let qs = self
                .workers
                .iter()
                .flat_map(|p| p.queues.iter())
                .filter(|(f, _, _)| usize::from(*f) == i);
            let (mut rx, mut tx, mut lost) = (0, 0, 0);
            for (_, _, s) in qs {
                rx += ld(&s.rx);
                tx += ld(&s.tx);
                lost +=
                    ld(&s.tx_full) + ld(&s.tx_invalid) + ld(&s.rx_dropped) + ld(&s.rx_ring_full);
            }
            out.push(format!(
                "interface {name}: received {rx} sent {tx} lost in rings {lost}"
            ));
        }
        out.push(format!(
            "total: received {} forwarded {} host {} answered/held {} generated {} dropped {}",
            total.rx,
            total.forwarded,
            total.host,
            total.consumed,
            total.emitted,
            total.dropped()
        ));
        for r in DropReason::ALL {
            let n = total.drop_count(*r);
            if n > 0 {
                out.push(format!("  dropped {}: {n}", r.name()));
            }
        }
        out
    }

    fn conntrack(&self, req: &Request) -> Response {
        let filter = match CtFilter::from_request(req) {
            Ok(f) => f,
            Err(e) => return Response::err(e, vec![]),
        };
        let now = (self.now)();
        match req.command.as_str() {
            "ct-delete" => {
                let gone = self.gw.conntrack.remove_if(|s| filter.matches(s));
                let mut out: Vec<String> = gone.iter().map(|s| proc_line(s, now)).collect();
                out.push(format!(
                    "xdpgw: {} flow entries have been deleted.",
                    gone.len()
                ));
                Response::ok(out)
            }
            "ct-count" => {
                let n = if filter.is_empty() {
                    self.gw.conntrack.len()
                } else {
                    self.gw
                        .conntrack
                        .listing(now)
                        .iter()
                        .filter(|s| filter.matches(s))
                        .count()
                };
                Response::ok(vec![n.to_string()])
            }
            _ => {
                let mut out: Vec<String> = self
                    .gw
                    .conntrack
                    .listing(now)
                    .iter()
                    .filter(|s| filter.matches(s))
                    .map(|s| proc_line(s, now))
                    .collect();
                out.sort_unstable();
                Response::ok(out)
            }
        }
    }

    /// `conntrack -S`: one line per worker in conntrack-tools' layout
    /// (`cpu=` is the worker), then each worker's INVALID packets per
    /// reason, then the table's own counters.
    fn ct_stats(&self) -> Vec<String> {
        let per: Vec<CtCounters> = self.workers.iter().map(|w| w.ct.load()).collect();
        let mut out: Vec<String> = per
            .iter()
            .enumerate()
            .map(|(w, c)| ct_stats_line(w, c))
            .collect();
        for (w, c) in per.iter().enumerate() {
            for r in InvalidReason::ALL {
                let n = c.invalid_count(*r);
                if n > 0 {
                    out.push(format!("cpu={w} invalid {}={n} ({})", r.name(), r.text()));
                }
            }
        }
        let s = self.gw.conntrack.stats();
        out.push(format!(
            "entries={} max={} expired={} deleted={} early_drop={} buckets={}",
            s.entries,
            self.gw.conntrack.max_entries(),
            s.expired,
            s.deleted,
            s.early_drop,
            self.gw.conntrack.buckets()
        ));
        out
    }
}

/// A worker's line of `conntrack -S`, as conntrack-tools prints a CPU's
/// (`"cpu=%-4u\t"`, then `"%s=%u "` per counter, in the kernel's order).
/// xdpgw resolves no clashes and has no hash chains: those two are 0.
pub fn ct_stats_line(worker: usize, c: &CtCounters) -> String {
    format!(
        "cpu={worker:<4}\tfound={} invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart={} clash_resolve=0 chaintoolong=0 ",
        c.found,
        c.invalid(),
        c.insert,
        c.insert_failed,
        c.drop,
        c.early_drop,
        c.error(),
        c.search_restart
    )
}

/// The selection of `conntrack -L/-D/-C`: every given condition must hold,
/// on the original tuple (as conntrack(8)'s `-s`/`-d`/`-p`), `state` on the
/// TCP state.
#[derive(Debug, Default)]
pub(crate) struct CtFilter {
    proto: Option<u8>,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    state: Option<TcpState>,
}

impl CtFilter {
    pub(crate) fn from_request(req: &Request) -> Result<CtFilter, String> {
        let addr = |k: &str| -> Result<Option<Ipv4Addr>, String> {
            req.get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("bad address '{v}' for {k}: an IPv4 address"))
                })
                .transpose()
        };
        let proto = req
            .get("proto")
            .map(|p| {
                crate::netdb::protocol_by_name(p).ok_or_else(|| format!("unknown protocol '{p}'"))
            })
            .transpose()?;
        let state = req
            .get("state")
            .map(|s| {
                TcpState::ALL
                    .iter()
                    .find(|t| t.name().eq_ignore_ascii_case(s))
                    .copied()
                    .ok_or_else(|| {
                        let names: Vec<&str> = TcpState::ALL.iter().map(|t| t.name()).collect();
                        format!("unknown state '{s}'; TCP states: {}", names.join(", "))
                    })
            })
            .transpose()?;
        Ok(CtFilter {
            proto,
            src: addr("src")?,
            dst: addr("dst")?,
            state,
        })
    }

    fn is_empty(&self) -> bool {
        self.proto.is_none() && self.src.is_none() && self.dst.is_none() && self.state.is_none()
    }

    pub(crate) fn matches(&self, s: &Snapshot) -> bool {
        self.proto.is_none_or(|p| p == s.orig.proto)
            && self.src.is_none_or(|a| a == s.orig.src)
            && self.dst.is_none_or(|a| a == s.orig.dst)
            && self.state.is_none_or(|t| t == s.tcp_state)
    }
}

/// The bound control socket; removes its file when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds the control socket at `path`, mode 0600. A socket file nobody
    /// answers on (left by a killed run) is replaced; a live one is an error,
    /// and so is any other kind of file there.
    pub fn bind(path: &Path) -> Result<ControlSocket, String> {
        let shown = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "control socket {shown}: a file that is not a socket is in the way"
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "control socket {shown} is in use: another xdpgw is running (stop it, or set control_socket in the configuration)"
                ));
            }
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|e| {
                format!("control socket {shown}: cannot create {}: {e}", d.display())
            })?;
        }
        // Bind under a temporary name, restrict it, then move it into place:
        // the socket is never reachable at `path` with looser permissions.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener =
            UnixListener::bind(&tmp).map_err(|e| format!("control socket {shown}: {e}"))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("control socket {shown}: {e}"));
        }
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections one at a time until `stop` is set (call
    /// [`ControlSocket::wake`] after setting it); a connection that asks for
    /// a stream (`ct-events`) goes on in a thread of its own, which ends
    /// when its client leaves or `stop` is set.
    pub fn serve(&self, control: &Control, stop: &AtomicBool) {
        std::thread::scope(|s| {
            for conn in self.listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Some((req, reader, writer)) = serve_connection(control, conn) {
                    s.spawn(move || super::events::stream(control, &req, reader, writer, stop));
                }
            }
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

/// Answers requests until the client leaves; a streaming request ends the
/// exchange and is handed back with the connection.
fn serve_connection(
    control: &Control,
    conn: UnixStream,
) -> Option<(Request, BufReader<UnixStream>, UnixStream)> {
    // A client that stops talking does not hold the socket forever.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return None;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if let Ok(req) = Request::decode(text) {
            if req.command == "trace" {
                // A streaming response: the connection is the trace's now.
                super::trace::serve(control, &req, writer);
                return None;
            }
        }
        let (resp, fatal) = match Request::decode(text) {
            Ok(req) if req.command == "ct-events" => return Some((req, reader, writer)),
            Ok(req) => (control.handle(&req), false),
            Err(e) => (Response::err(e, vec![]), true),
        };
        if resp.write_to(&mut writer).is_err() || fatal {
            return None;
        }
    }
}
