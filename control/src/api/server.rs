//! The gateway side of the control socket: the commands, and what they
//! read. The transport (binding, a thread per client, limits) is in
//! [`super::socket`].
//!
//! Everything here runs off the packet path. Workers publish their
//! counters through atomics they alone write ([`WorkerPublished`], the rule
//! counters of `classify::RuleCounters`); the control socket's threads only
//! read them, and serialise their writes (reload, zero) under
//! [`Control::state`].

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xdpgw_dataplane::conntrack::{
    proc_line, Conntrack, ConntrackConfig, CtCounters, InvalidReason, Snapshot, TcpState,
    WalkCursor,
};
use xdpgw_dataplane::counter::{CounterDef, CounterSet, Published};
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::flow::Addr;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::port::QueueStats;
use xdpgw_dataplane::rule::{CounterLayout, CounterSlot, Family, RuleSet, Table};
use xdpgw_dataplane::stats::WorkerStats;

use super::reload::Scope;
pub use super::socket::{ControlSocket, SocketLimits};
use super::view::{list_in, ListFormat};
use super::{OkStream, Request, Response};

/// Conntrack slots a listing or deletion looks at per chunk: one shard
/// lock held for copying them, at most this many lines produced before
/// they are written.
const WALK_SLOTS: usize = 256;

xdpgw_dataplane::counter_set! {
    /// One queue's counters as its worker publishes them (of the socket's
    /// [`QueueStats`]); how the views show them: [`QueueCounters::TRAFFIC`]
    /// and [`QueueCounters::LOSSES`].
    pub struct QueueCounters {
        pub rx: u64,
        pub tx: u64,
        /// Kernel: dropped for other reasons than a full ring.
        pub rx_dropped: u64,
        /// Kernel: dropped because the RX ring was full.
        pub rx_ring_full: u64,
        pub tx_full: u64,
        pub tx_invalid: u64,
    }
}

impl QueueCounters {
    pub fn of(s: &QueueStats) -> QueueCounters {
        QueueCounters {
            rx: s.rx,
            tx: s.tx,
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            tx_full: s.tx_full,
            tx_invalid: s.tx_invalid,
        }
    }

    /// Frames received and sent.
    pub const TRAFFIC: [CounterDef<QueueCounters>; 2] = [
        CounterDef {
            key: Some("rx"),
            label: "received",
            metric: Some("interface_received_packets_total"),
            help: "Frames received on the interface's AF_XDP sockets.",
            part: false,
            get: |q| q.rx,
        },
        CounterDef {
            key: Some("tx"),
            label: "sent",
            metric: Some("interface_sent_packets_total"),
            help: "Frames sent on the interface's AF_XDP sockets.",
            part: false,
            get: |q| q.tx,
        },
    ];

    /// Frames lost in the rings, by reason (the label; all in the metric
    /// `interface_dropped_packets_total`).
    pub const LOSSES: [CounterDef<QueueCounters>; 4] = [
        CounterDef {
            key: Some("kernel_rx_dropped"),
            label: "kernel_rx_dropped",
            metric: None,
            help: "The kernel dropped the frame for another reason than a full ring.",
            part: false,
            get: |q| q.rx_dropped,
        },
        CounterDef {
            key: Some("rx_ring_full"),
            label: "rx_ring_full",
            metric: None,
            help: "The kernel dropped the frame: the RX ring was full.",
            part: false,
            get: |q| q.rx_ring_full,
        },
        CounterDef {
            key: Some("tx_ring_full"),
            label: "tx_ring_full",
            metric: None,
            help: "Not sent: the TX ring or the free frames ran out.",
            part: false,
            get: |q| q.tx_full,
        },
        CounterDef {
            key: Some("tx_invalid"),
            label: "tx_invalid",
            metric: None,
            help: "Not sent: a length of 0 or past the frame.",
            part: false,
            get: |q| q.tx_invalid,
        },
    ];

    /// Every frame lost in the rings.
    pub fn lost(&self) -> u64 {
        Self::LOSSES.iter().map(|d| (d.get)(self)).sum()
    }
}

/// What a worker publishes for the control thread: its counters and those
/// of the queues it owns (one atomic each, the worker their single writer:
/// [`Published`]).
#[derive(Debug)]
pub struct WorkerPublished {
    pub stats: Published<WorkerStats>,
    /// (interface index, queue id, counters) of the queues it owns.
    pub queues: Vec<(u8, u32, Published<QueueCounters>)>,
}

impl WorkerPublished {
    pub fn new(queues: Vec<(u8, u32)>) -> WorkerPublished {
        WorkerPublished {
            stats: Published::default(),
            queues: queues
                .into_iter()
                .map(|(i, q)| (i, q, Published::default()))
                .collect(),
        }
    }

    /// Publishes the worker's statistics (its worker only).
    pub fn publish(&self, s: &WorkerStats) {
        self.stats.store(s);
    }

    /// Publishes one queue's statistics (its worker only).
    pub fn publish_queue(&self, k: usize, s: &QueueStats) {
        if let Some((_, _, q)) = self.queues.get(k) {
            q.store(&QueueCounters::of(s));
        }
    }

    /// The counters of its queues of interface `iface`, summed.
    pub fn iface(&self, iface: usize) -> QueueCounters {
        let mut sum = QueueCounters::zeroed();
        for (_, _, q) in self
            .queues
            .iter()
            .filter(|(i, _, _)| usize::from(*i) == iface)
        {
            sum.add(&q.load());
        }
        sum
    }
}

/// What the control socket's threads work on.
pub struct Control {
    pub gw: Arc<Gateway>,
    /// The configuration's rule file (SIGHUP and `reload` without a file).
    pub rules_file: PathBuf,
    /// The rule set the running compiled set was made from; its lock also
    /// serialises the commands that write (reload, zero).
    pub state: Mutex<RuleSet>,
    pub workers: Vec<Arc<WorkerPublished>>,
    /// Interface names, by index (what rules, traces and logs name).
    pub names: Vec<String>,
    /// Port names, by index: the kernel interfaces whose queues the
    /// workers own (a VLAN interface's trunk; without VLANs, `names`).
    pub ports: Vec<String>,
    /// The workers' clock (ns): conntrack expiry times are on it.
    pub now: fn() -> u64,
    /// Listeners of `conntrack -E`.
    pub events: super::events::EventHub,
    /// Listeners of the IPv6 connection table's events (the NAT log).
    pub events6: super::events::EventHub<std::net::Ipv6Addr>,
    /// The configuration file, if any: a reload also applies its
    /// `[conntrack]` timeouts and `tcp_*` knobs (the sizes take a restart).
    pub config_file: Option<PathBuf>,
    /// The conntrack configuration in force.
    pub conntrack: Mutex<ConntrackConfig>,
    /// The NAT event log's counters (`nat_log`).
    pub nat_log: crate::nat_log::NatLogCounters,
    /// The IPv6 rule set (the configuration's `rules6`, checked at start
    /// and at each reload): what `save -6` prints. The dataplane does not
    /// forward IPv6 yet: it is not installed.
    pub rules6: Mutex<RuleSet>,
    /// Reloads done and refused (the `xdpgw_reloads_total` metric).
    pub reloads: ReloadCounts,
    /// Conntrack state sync (`[sync]`), if configured.
    pub sync: Option<Arc<crate::sync::SyncShared>>,
}

/// How many reloads (SIGHUP, `xdpgw reload`) succeeded and failed.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub succeeded: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

/// Why a reload was refused (the running rules stay in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file has errors, or was cut short.
    #[error("{}", ReloadError::lines(self).join("\n"))]
    Rules {
        errors: crate::error::RuleErrors,
        file: PathBuf,
    },
    /// The rule set does not compile for this gateway's interfaces.
    #[error("{}: {source}", file.display())]
    Compile {
        file: PathBuf,
        source: xdpgw_dataplane::classify::CompileError,
    },
    /// The configuration file (whose `[conntrack]` a reload applies) has an
    /// error.
    #[error("{0}; nothing reloaded")]
    Config(crate::config::ConfigError),
    /// The file's `ipset` lines no longer apply to the running sets (they
    /// changed since the file was checked).
    #[error("{}: {message}; nothing reloaded", file.display())]
    Sets { file: PathBuf, message: String },
}

impl ReloadError {
    /// The error as lines: each `file:line:column` error, then a summary.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Rules { errors, file } => {
                let mut lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                lines.push(format!(
                    "{}: {} error{}; nothing loaded",
                    file.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ));
                lines
            }
            ReloadError::Compile { .. } | ReloadError::Config(_) | ReloadError::Sets { .. } => {
                vec![self.to_string()]
            }
        }
    }
}

/// What a successful reload did.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub file: PathBuf,
    /// The tables the file named, replaced by what it has.
    pub replaced: Vec<Table>,
    /// Rules in the replaced tables.
    pub rules: usize,
    /// Tables the file did not name, kept as they ran.
    pub kept: Vec<Table>,
    /// Rules in the kept tables.
    pub kept_rules: usize,
    /// Tables the file did not name, emptied (`--replace-all`).
    pub emptied: Vec<Table>,
    pub kept_counters: usize,
    /// From the request to the new set installed.
    pub installed: Duration,
    /// From the request to every worker running the new set.
    pub in_force: Duration,
    /// False if a worker still ran the old set after a second (stuck?):
    /// the new set is installed, but the carried-over counters may miss
    /// that worker's last counts.
    pub everywhere: bool,
    /// Conntrack knobs the configuration changed (`name old -> new`), now
    /// in force.
    pub conntrack: Vec<String>,
    /// The configuration changed the conntrack table's size, which takes
    /// a restart.
    pub resize_pending: bool,
}

impl Reloaded {
    /// What happened to the tables: `filter, nat replaced (12 rules);
    /// raw, mangle untouched (3 rules)`.
    fn tables(&self) -> String {
        let names = |ts: &[Table]| ts.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
        let rules = |n: usize| format!("{n} rule{}", if n == 1 { "" } else { "s" });
        let mut s = if self.replaced.is_empty() {
            "no table replaced (the file names none)".to_owned()
        } else {
            format!("{} replaced ({})", names(&self.replaced), rules(self.rules))
        };
        if !self.kept.is_empty() {
            s.push_str(&format!(
                "; {} untouched ({})",
                names(&self.kept),
                rules(self.kept_rules)
            ));
        }
        if !self.emptied.is_empty() {
            s.push_str(&format!("; {} emptied", names(&self.emptied)));
        }
        s
    }

    /// One line saying what happened.
    pub fn summary(&self) -> String {
        let mut s = self.rules_summary();
        if !self.conntrack.is_empty() {
            s.push_str(&format!("; conntrack {}", self.conntrack.join(", ")));
        }
        if self.resize_pending {
            s.push_str("; the conntrack max/buckets changed: they take effect at the next start");
        }
        s
    }

    fn rules_summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if self.everywhere {
            format!(
                "reloaded {}: {}; in force on every worker after {:.1} ms (installed after \
                 {:.1} ms); counters kept for {} rules and chains",
                self.file.display(),
                self.tables(),
                ms(self.in_force),
                ms(self.installed),
                self.kept_counters
            )
        } else {
            format!(
                "reloaded {}: {}; installed after {:.1} ms but NOT yet in force on every \
                 worker after {:.0} ms (a worker is not picking it up); counters kept for {} \
                 rules and chains may miss that worker's last counts",
                self.file.display(),
                self.tables(),
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

    /// Parses and validates `file` (default: the configuration's rule
    /// file) here, off the workers; replaces the tables it names (or, with
    /// [`Scope::All`], every table) in the running set and compiles the
    /// result; installs it, waits until every worker runs it (at most a
    /// second) and carries over the counters of unchanged rules, and so of
    /// every kept table ([`super::reload`]). On any error the running set
    /// stays in force; the error lines name `file:line:column`. Counted
    /// in [`Control::reloads`].
    pub fn reload(&self, file: Option<&Path>, scope: Scope) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload(file, scope);
        let count = match result {
            Ok(_) => &self.reloads.succeeded,
            Err(_) => &self.reloads.failed,
        };
        // Relaxed: a statistic, read on its own by the metrics.
        count.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_reload(&self, file: Option<&Path>, scope: Scope) -> Result<Reloaded, ReloadError> {
        let t0 = Instant::now();
        // The configuration's conntrack knobs, checked before anything
        // changes.
        let config = match &self.config_file {
            Some(path) => Some(crate::config::Config::load(path).map_err(ReloadError::Config)?),
            None => None,
        };
        let conntrack = config.as_ref().map(|c| c.conntrack_config());
        // The configuration's IPv6 rules (`rules6`) are checked as the IPv4
        // ones: a reload with an error in them is refused.
        let rules6 = match config.as_ref().and_then(|c| c.rules6.as_ref()) {
            Some(r6) => Some(
                crate::load_rule_file_family(
                    r6,
                    &Default::default(),
                    xdpgw_dataplane::rule::Family::Ipv6,
                )
                .map_err(|errors| ReloadError::Rules {
                    errors,
                    file: r6.clone(),
                })?
                .set6,
            ),
            None => None,
        };
        let compiled6 = match &rules6 {
            Some(set6) => Some(self.gw.compile6(set6).map_err(|source| {
                ReloadError::Compile {
                    file: config
                        .as_ref()
                        .and_then(|c| c.rules6.clone())
                        .unwrap_or_default(),
                    source,
                }
            })?),
            None => None,
        };
        let file = file.unwrap_or(&self.rules_file).to_path_buf();
        // The sets are kept, as Linux keeps ipsets across iptables-restore;
        // a script's `ipset` lines change them as running it again would.
        let sets_before = self.gw.sets.snapshot();
        let loaded = crate::load_rule_file_with_sets(&file, &sets_before).map_err(|errors| {
            ReloadError::Rules {
                errors,
                file: file.clone(),
            }
        })?;
        let set_lines = loaded.set_lines.clone();
        // Under the lock from here: the merge starts from the set that runs,
        // and reloads do not interleave.
        let mut current = self.lock();
        let merged = super::reload::merge(&current, loaded, scope);
        let set = merged.set;
        let compile_error = |source| ReloadError::Compile {
            file: file.clone(),
            source,
        };
        let compiled = if set_lines.is_empty() {
            self.gw.compile(&set).map_err(compile_error)?
        } else {
            // The new sets first (all of them or none), then the rules
            // compiled against them.
            let now = (self.now)();
            let rules = self.gw.rules();
            self.gw
                .sets
                .update(|t| {
                    for l in &set_lines {
                        crate::ipset::apply(t, l, now, &|s| rules.uses_set(s), &|_| 0)?;
                    }
                    Ok(())
                })
                .map_err(|e: crate::ipset::SetCommandError| ReloadError::Sets {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
            match self.gw.compile(&set) {
                Ok(c) => c,
                Err(e) => {
                    self.gw
                        .sets
                        .update(|t| {
                            *t = (*sets_before).clone();
                            Ok::<(), ()>(())
                        })
                        .ok();
                    return Err(compile_error(e));
                }
            }
        };
        let carried = super::reload::carried(&current, &set);
        let new = Arc::new(compiled);
        let old = self.gw.install_compiled(Arc::clone(&new));
        if let Some(c6) = compiled6 {
            self.gw.install_compiled6(Arc::new(c6));
        }
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
        let rules_in = |tables: &[Table]| {
            set.tables
                .iter()
                .filter(|t| tables.contains(&t.table))
                .map(|t| t.rule_count())
                .sum()
        };
        let rules = rules_in(&merged.replaced);
        let kept_rules = rules_in(&merged.kept);
        *current = set;
        if let Some(set6) = rules6 {
            *self.rules6.lock().unwrap_or_else(|e| e.into_inner()) = set6;
        }
        let (changes, resize_pending) = match conntrack {
            Some(new) => {
                let mut in_force = self.conntrack.lock().unwrap_or_else(|e| e.into_inner());
                let (changes, resized) = crate::config::conntrack_changes(&in_force, &new);
                if !changes.is_empty() {
                    self.gw.conntrack.set_policy(&new);
                    if let Some(ct6) = &self.gw.conntrack6 {
                        ct6.set_policy(&new);
                    }
                }
                // The sizes stay as the table was made.
                *in_force = ConntrackConfig {
                    max_entries: in_force.max_entries,
                    buckets: in_force.buckets,
                    ..new
                };
                (changes, resized)
            }
            None => (Vec::new(), false),
        };
        Ok(Reloaded {
            file,
            replaced: merged.replaced,
            rules,
            kept: merged.kept,
            kept_rules,
            emptied: merged.emptied,
            kept_counters: carried.len(),
            installed,
            in_force,
            everywhere,
            conntrack: changes,
            resize_pending,
        })
    }

    /// The running rule set with its live counters.
    pub fn with_counters(&self) -> RuleSet {
        let set = self.lock();
        let totals = self.gw.rules().live.totals();
        set.with_counters(&totals)
    }

    /// The IPv6 rule set (`rules6`) with the live counters of the rules6
    /// the workers run.
    pub fn with_counters6(&self) -> RuleSet {
        let set = self.rules6.lock().unwrap_or_else(|e| e.into_inner());
        let totals = self.gw.rules6().live.totals();
        set.with_counters(&totals)
    }

    /// Answers one request on `w` in the wire format: as
    /// [`Control::handle`], but the conntrack commands go out a chunk at a
    /// time while the table is walked, so that neither a large table nor a
    /// client that reads slowly makes the answer be held whole.
    pub fn respond(&self, req: &Request, w: &mut impl Write) -> std::io::Result<()> {
        match req.command.as_str() {
            "ct-list" | "ct-delete" | "ct-count" | "ct-flush" => self.conntrack(req, w),
            _ => self.handle(req).write_to(w),
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        match req.command.as_str() {
            "ping" => Response::ok(vec![format!(
                "xdpgw {} pid {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            )]),
            "reload" => match self.reload(
                req.get("file").map(Path::new),
                if req.is_set("replace_all") {
                    Scope::All
                } else {
                    Scope::FileTables
                },
            ) {
                Ok(r) => Response::ok(vec![r.summary()]),
                Err(e) => {
                    Response::err("reload failed; the running rules stay in force", e.lines())
                }
            },
            "list" => self.list(req),
            "save" if req.is_set("ipv6") => {
                let set = if req.is_set("counters") {
                    self.with_counters6()
                } else {
                    self.rules6
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                };
                let mut out = String::new();
                for t in &set.tables {
                    if req.get("table").is_none_or(|n| n == t.table.name()) {
                        crate::save::render_table_in(
                            &mut out,
                            t,
                            req.is_set("counters"),
                            xdpgw_dataplane::rule::Family::Ipv6,
                        );
                    }
                }
                Response::ok(out.lines().map(str::to_string).collect())
            }
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
            "ipset" => self.ipset(req),
            "stats" => Response::ok(self.stats()),
            "stats-sample" => Response::ok(super::stats::sample_lines(self)),
            "metrics" => Response::ok(
                super::metrics::render(self)
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            "ct-list" | "ct-delete" | "ct-count" | "ct-flush" => {
                // Whole, in memory: the control socket streams these
                // (`respond`).
                let mut wire = Vec::new();
                self.conntrack(req, &mut wire)
                    .and_then(|()| Response::read_from(&mut &wire[..]))
                    .unwrap_or_else(|e| Response::err(e.to_string(), vec![]))
            }
            "ct-stats" => Response::ok(self.ct_stats()),
            c if c.starts_with("sync-") => match crate::sync::command(self, c) {
                Ok(body) => Response::ok(body),
                Err(e) => Response::err(e, vec![]),
            },
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
        // `list -6`: the IPv6 rules, as `ip6tables -L` lists them.
        let (set, family) = if req.is_set("ipv6") {
            (self.with_counters6(), Family::Ipv6)
        } else {
            (self.with_counters(), Family::Ipv4)
        };
        let f = ListFormat {
            verbose: req.is_set("verbose"),
            numeric: req.is_set("numeric"),
            exact: req.is_set("exact"),
            line_numbers: req.is_set("line_numbers"),
        };
        let Some(t) = set.tables.iter().find(|t| t.table == table) else {
            let what = match family {
                Family::Ipv4 => "",
                Family::Ipv6 => "IPv6 ",
            };
            return Response::err(
                format!("{what}table '{}' is not loaded", table.name()),
                vec![],
            );
        };
        match list_in(t, req.get("chain"), f, family) {
            Ok(text) => Response::ok(text.lines().map(str::to_string).collect()),
            Err(e) => Response::err(e.to_string(), vec![]),
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
        let mut zeroed = 0usize;
        let mut found = chain.is_none();
        for (slot, at) in CounterLayout::of(&set).slots() {
            let (CounterSlot::Rule {
                table, chain: c, ..
            }
            | CounterSlot::Chain { table, chain: c }) = at;
            let (t, c) = (&set.tables[table], &set.tables[table].chains[c]);
            let hit = only.is_none_or(|o| o == t.table) && chain.is_none_or(|n| n == c.name);
            found |= hit;
            if hit {
                live.live.zero(slot as usize);
                zeroed += 1;
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
        let mut out = Vec::new();
        let mut total = WorkerStats::zeroed();
        for (w, p) in self.workers.iter().enumerate() {
            let st = p.stats.load();
            out.push(format!("worker {w}: {}", super::stats::counters_line(&st)));
            for r in DropReason::ALL {
                let n = st.drop_count(*r);
                if n > 0 {
                    out.push(format!("  dropped {}: {n}", r.name()));
                }
            }
            total.add(&st);
            for (port, q, s) in &p.queues {
                let name = self
                    .ports
                    .get(usize::from(*port))
                    .map_or("?", String::as_str);
                let s = s.load();
                let mut line = format!("  {name} queue {q}:");
                for d in QueueCounters::TRAFFIC.iter().chain(&QueueCounters::LOSSES) {
                    line.push_str(&format!(" {} {}", d.label, (d.get)(&s)));
                }
                out.push(line);
            }
        }
        for (i, name) in self.ports.iter().enumerate() {
            let mut sum = QueueCounters::zeroed();
            for p in &self.workers {
                sum.add(&p.iface(i));
            }
            out.push(format!(
                "interface {name}: received {} sent {} lost in rings {}",
                sum.rx,
                sum.tx,
                sum.lost()
            ));
        }
        out.push(format!("total: {}", super::stats::counters_line(&total)));
        for r in DropReason::ALL {
            let n = total.drop_count(*r);
            if n > 0 {
                out.push(format!("  dropped {}: {n}", r.name()));
            }
        }
        out
    }

    /// `conntrack -L/-D/-C/-F`, written to `w` as the table is walked
    /// ([`Conntrack::walk`](xdpgw_dataplane::conntrack::Conntrack::walk)):
    /// a shard lock is held only while a chunk is copied, never while
    /// writing. Lines come in the table's order (as Linux's dump, by
    /// bucket). A deletion deletes a chunk, then writes it: a client that
    /// leaves halfway leaves the entries not reached yet in place (as a
    /// `conntrack -D` killed halfway does on Linux).
    fn conntrack(&self, req: &Request, w: &mut impl Write) -> std::io::Result<()> {
        let filter = match CtFilter::from_request(req) {
            Ok(f) => f,
            Err(e) => return Response::err(e.to_string(), vec![]).write_to(w),
        };
        let now = (self.now)();
        let (ct, ct6) = (&self.gw.conntrack, self.gw.conntrack6.as_ref());
        let f4 = |s: &Snapshot| filter.matches(s);
        let f6 = |s: &Snapshot<Ipv6Addr>| filter.matches6(s);
        match req.command.as_str() {
            "ct-count" => {
                let n = if filter.is_empty() {
                    // Both families: the tables share one count (as
                    // `nf_conntrack_count` counts both).
                    ct.len()
                } else {
                    ct_count(ct, now, f4) + ct6.map_or(0, |c| ct_count(c, now, f6))
                };
                Response::ok(vec![n.to_string()]).write_to(w)
            }
            "ct-flush" => {
                let none = || None::<(&mut OkStream<Vec<u8>>, u64)>;
                let mut n = 0;
                if !filter.skips(false) {
                    n += ct_remove(ct, |_| true, none())?;
                }
                if let Some(c) = ct6.filter(|_| !filter.skips(true)) {
                    n += ct_remove(c, |_| true, none())?;
                }
                Response::ok(vec![format!(
                    "connection tracking table has been emptied ({n} entries deleted)"
                )])
                .write_to(w)
            }
            "ct-delete" => {
                let mut out = OkStream::new(w);
                let mut n = ct_remove(ct, f4, Some((&mut out, now)))?;
                if let Some(c) = ct6 {
                    n += ct_remove(c, f6, Some((&mut out, now)))?;
                }
                out.line(&format!("xdpgw: {n} flow entries have been deleted."));
                out.end()
            }
            _ => {
                let mut out = OkStream::new(w);
                ct_list(ct, now, f4, &mut out)?;
                if let Some(c) = ct6 {
                    ct_list(c, now, f6, &mut out)?;
                }
                out.end()
            }
        }
    }

    /// `conntrack -S`: one line per worker in conntrack-tools' layout
    /// (`cpu=` is the worker), then each worker's INVALID packets per
    /// reason, then the table's own counters.
    fn ct_stats(&self) -> Vec<String> {
        let per: Vec<CtCounters> = self.workers.iter().map(|w| w.stats.load().ct).collect();
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
/// (`"cpu=%-4u\t"`, then `"%s=%u "` per counter, in the kernel's order:
/// [`CtCounters::COUNTERS`]). xdpgw resolves no clashes and has no hash
/// chains: those two are 0.
pub fn ct_stats_line(worker: usize, c: &CtCounters) -> String {
    let mut line = format!("cpu={worker:<4}\t");
    for d in &CtCounters::COUNTERS {
        if let Some(key) = d.key {
            line.push_str(&format!("{key}={} ", (d.get)(c)));
        }
    }
    line.push_str("clash_resolve=0 chaintoolong=0 ");
    line
}

/// The selection of `conntrack -L/-D/-C`: every given condition must hold,
/// on the original tuple (as conntrack(8)'s `-s`/`-d`/`-p`), `state` on the
/// A conntrack filter that does not parse.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CtFilterError {
    #[error("bad address '{value}' for {key}: an IPv4 or IPv6 address")]
    Address { key: String, value: String },
    #[error("unknown protocol '{0}'")]
    Protocol(String),
    #[error("unknown state '{0}'; TCP states: {names}", names = tcp_state_names())]
    State(String),
    #[error("unknown family '{0}': ipv4 or ipv6")]
    Family(String),
}

fn tcp_state_names() -> String {
    let names: Vec<&str> = TcpState::ALL.iter().map(|t| t.name()).collect();
    names.join(", ")
}

/// TCP state.
/// The entries of `ct` listed at `now` that `keep` keeps.
fn ct_count<A: Addr>(ct: &Conntrack<A>, now: u64, keep: impl Fn(&Snapshot<A>) -> bool) -> usize {
    let (mut cursor, mut chunk) = (WalkCursor::default(), Vec::with_capacity(WALK_SLOTS));
    let mut n = 0;
    while ct.walk(&mut cursor, WALK_SLOTS, &mut chunk) {
        n += chunk
            .drain(..)
            .filter(|(_, s)| s.listed_at(now) && keep(s))
            .count();
    }
    n
}

/// Lists the entries of `ct` listed at `now` that `keep` keeps, a chunk
/// at a time.
fn ct_list<A: Addr, W: Write>(
    ct: &Conntrack<A>,
    now: u64,
    keep: impl Fn(&Snapshot<A>) -> bool,
    out: &mut OkStream<W>,
) -> std::io::Result<()> {
    let (mut cursor, mut chunk) = (WalkCursor::default(), Vec::with_capacity(WALK_SLOTS));
    while ct.walk(&mut cursor, WALK_SLOTS, &mut chunk) {
        for (_, s) in chunk.drain(..) {
            if s.listed_at(now) && keep(&s) {
                out.line(&proc_line(&s, now));
            }
        }
        out.send()?;
    }
    Ok(())
}

/// Removes the entries of `ct` that `keep` picks; with `out`, lists each
/// removed one there. How many went.
fn ct_remove<A: Addr, W: Write>(
    ct: &Conntrack<A>,
    pick: impl Fn(&Snapshot<A>) -> bool,
    mut out: Option<(&mut OkStream<W>, u64)>,
) -> std::io::Result<usize> {
    let (mut cursor, mut chunk) = (WalkCursor::default(), Vec::with_capacity(WALK_SLOTS));
    let mut n = 0;
    while ct.walk(&mut cursor, WALK_SLOTS, &mut chunk) {
        for (e, s) in chunk.drain(..) {
            if pick(&s) && ct.remove(e) {
                n += 1;
                if let Some((o, now)) = &mut out {
                    o.line(&proc_line(&s, *now));
                }
            }
        }
        if let Some((o, _)) = &mut out {
            o.send()?;
        }
    }
    Ok(n)
}

#[derive(Debug, Default)]
pub(crate) struct CtFilter {
    proto: Option<u8>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    state: Option<TcpState>,
    /// `-f`: IPv6 (true) or IPv4 (false) only.
    ipv6: Option<bool>,
}

impl CtFilter {
    pub(crate) fn from_request(req: &Request) -> Result<CtFilter, CtFilterError> {
        let addr = |k: &str| -> Result<Option<IpAddr>, CtFilterError> {
            req.get(k)
                .map(|v| {
                    v.parse().map_err(|_| CtFilterError::Address {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let proto = req
            .get("proto")
            .map(|p| {
                crate::netdb::protocol_by_name(p)
                    .ok_or_else(|| CtFilterError::Protocol(p.to_string()))
            })
            .transpose()?;
        let state = req
            .get("state")
            .map(|s| {
                TcpState::ALL
                    .iter()
                    .find(|t| t.name().eq_ignore_ascii_case(s))
                    .copied()
                    .ok_or_else(|| CtFilterError::State(s.to_string()))
            })
            .transpose()?;
        // conntrack-tools' `-f` names (`ipv4`, `ipv6`).
        let ipv6 = req
            .get("family")
            .map(|f| match f.to_ascii_lowercase().as_str() {
                "ipv4" | "inet" => Ok(false),
                "ipv6" | "inet6" => Ok(true),
                _ => Err(CtFilterError::Family(f.to_string())),
            })
            .transpose()?;
        Ok(CtFilter {
            proto,
            src: addr("src")?,
            dst: addr("dst")?,
            state,
            ipv6,
        })
    }

    fn is_empty(&self) -> bool {
        self.proto.is_none()
            && self.src.is_none()
            && self.dst.is_none()
            && self.state.is_none()
            && self.ipv6.is_none()
    }

    /// Whether the filter leaves the family's table out whole (`-f`).
    fn skips(&self, ipv6: bool) -> bool {
        self.ipv6.is_some_and(|f| f != ipv6)
    }

    /// An IPv6 entry: an address filter of the other family matches none.
    pub(crate) fn matches6(&self, s: &Snapshot<Ipv6Addr>) -> bool {
        !self.skips(true)
            && self.proto.is_none_or(|p| p == s.orig.proto)
            && self.src.is_none_or(|a| a == s.orig.src)
            && self.dst.is_none_or(|a| a == s.orig.dst)
            && self.state.is_none_or(|t| t == s.tcp_state)
    }

    pub(crate) fn matches(&self, s: &Snapshot) -> bool {
        !self.skips(false)
            && self.proto.is_none_or(|p| p == s.orig.proto)
            && self.src.is_none_or(|a| a == s.orig.src)
            && self.dst.is_none_or(|a| a == s.orig.dst)
            && self.state.is_none_or(|t| t == s.tcp_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_s_lines_are_conntrack_tools_lines() {
        let c = CtCounters {
            found: 1,
            new: 2,
            invalid_by_reason: {
                let mut v = [0; InvalidReason::COUNT];
                v[InvalidReason::TcpBadFlags as usize] = 3;
                v[InvalidReason::IcmpErrorNoEntry as usize] = 4;
                v
            },
            insert: 5,
            insert_failed: 6,
            drop: 7,
            early_drop: 8,
            search_restart: 9,
            ..CtCounters::default()
        };
        assert_eq!(
            ct_stats_line(1, &c),
            "cpu=1   \tfound=1 invalid=3 insert=5 insert_failed=6 drop=7 early_drop=8 error=4 \
             search_restart=9 clash_resolve=0 chaintoolong=0 "
        );
    }

    #[test]
    fn published_counters_read_back_summed_per_interface() {
        let p = WorkerPublished::new(vec![(0, 0), (1, 0), (0, 1)]);
        let q = |rx, tx| QueueStats {
            rx,
            tx,
            tx_full: 1,
            ..QueueStats::default()
        };
        p.publish_queue(0, &q(10, 1));
        p.publish_queue(1, &q(20, 2));
        p.publish_queue(2, &q(30, 3));
        let lan = p.iface(0);
        assert_eq!((lan.rx, lan.tx, lan.tx_full, lan.lost()), (40, 4, 2, 2));
        let mut s = WorkerStats {
            rx: 7,
            ..WorkerStats::default()
        };
        s.ct.insert = 3;
        s.drops[DropReason::PolicyDrop as usize] = 2;
        p.publish(&s);
        assert_eq!(p.stats.load(), s);
    }

    #[test]
    fn conntrack_filters_take_either_family() {
        use xdpgw_dataplane::flow::Tuple;
        let snap = |src: Ipv6Addr, proto: u8| Snapshot {
            orig: Tuple {
                src,
                dst: Ipv6Addr::LOCALHOST,
                sport: 1,
                dport: 2,
                proto,
            },
            reply: Tuple {
                src: Ipv6Addr::LOCALHOST,
                dst: src,
                sport: 2,
                dport: 1,
                proto,
            },
            status: 0,
            tcp_state: TcpState::None,
            mark: 0,
            expires: 1,
            packets: [0; 2],
            bytes: [0; 2],
            icmp_type: 0,
            icmp_code: 0,
        };
        let client: Ipv6Addr = "fd00:10::2".parse().expect("v6");
        let filter = |k: &str, v: &str| {
            CtFilter::from_request(
                &Request::new("ct-list")
                    .opt("src", Some(v))
                    .opt("proto", (k == "udp").then_some("udp")),
            )
            .expect("filter")
        };
        assert!(filter("", "fd00:10::2").matches6(&snap(client, 17)));
        assert!(filter("udp", "fd00:10::2").matches6(&snap(client, 17)));
        assert!(!filter("udp", "fd00:10::2").matches6(&snap(client, 6)));
        assert!(!filter("", "fd00:10::3").matches6(&snap(client, 17)));
        // An IPv4 address matches no IPv6 entry.
        assert!(!filter("", "192.168.10.2").matches6(&snap(client, 17)));
    }
}
