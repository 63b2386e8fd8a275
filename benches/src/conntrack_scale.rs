//! A conntrack table of millions of entries, measured as a worker uses it:
//! the scenario behind `benches/benches/conntrack_scale.rs` (16,000,000
//! entries) and its small smoke test (`benches/tests/conntrack_scale.rs`).
//!
//! One round, on a gateway built from conf/gateway.rules (MASQUERADE out
//! of wan0, stateful FORWARD) with `[conntrack] max` = `entries`:
//!
//! 1. **Build**: the gateway and its table; the process's resident memory
//!    before and after.
//! 2. **Fill**: new UDP connections from the LAN (each a distinct client
//!    port and server, so MASQUERADE keeps the port) through
//!    `Batch::process` in batches of 64, each batch first shown to the
//!    prefetch pass, housekeeping (`Worker::housekeeping`, with its paced expiry
//!    sweep) every millisecond of the clock, as `xdpgw run`'s loop does,
//!    until the table holds `fill` of `entries`. Rates over the whole fill
//!    and over its last tenth (the table nearly full).
//! 3. **Churn**: `churn` more new connections on a clock that moves, per
//!    packet, the fill's average time per connection, from the moment the
//!    first entry of the fill reaches its timeout (UDP, unreplied: 30 s):
//!    the fill's entries expire one per new connection, in the order they
//!    came, and the worker's paced sweep (one sweep of the table per
//!    second of that clock) removes them. New connections per second with
//!    expiry included, in a steady state of the table's fill.
//! 4. **Lookups**: `Conntrack::track` of live entries picked at random, on
//!    one thread and on two (each a lookup with state update, as a packet
//!    of an established flow that the fast path did not take).
//! 5. **Sweeps**: one sweep of the whole table that finds nothing expired
//!    (`gc_share` of `max` slots: what a worker pays per second at any
//!    fill), then one that removes every entry (the clock an hour on).
//!
//! The clock of the fill is real time (the bench: the sweep paced as on a
//! running gateway) or simulated at a fixed step per packet (the test:
//! deterministic).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::{ConntrackConfig, PacketMeta, TableLayout, Track};
use xdpgw_dataplane::flow::Tuple;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::pipeline::Emit;
use xdpgw_dataplane::worker::Worker;
use xdpgw_vm_tests::conf_gateway_config;
use xdpgw_vm_tests::frames::{FrameSpec, L4Spec, Mac};

const LAN_MAC: Mac = [0x02, 0, 0, 0, 1, 1];
const WAN_MAC: Mac = [0x02, 0, 0, 0, 2, 1];
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0a, 2];
const UPSTREAM_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 9];
const BATCH: usize = 64;
/// Servers the connections go to (198.51.0.0/16, through the default route).
const SERVERS: u32 = 65_536;
const SERVER_PORT: u16 = 5001;
/// Linux's `nf_conntrack_udp_timeout` (an unreplied UDP entry).
const UDP_TIMEOUT: u64 = 30_000_000_000;
/// How often the driver loop runs housekeeping under load (`xdpgw run`).
const TICK: u64 = 1_000_000;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// `nf_conntrack_max`.
    pub entries: usize,
    /// `nf_conntrack_buckets` (`None`: the default for `entries`).
    pub buckets: Option<usize>,
    /// How full the fill leaves the table (0.9: 90 %).
    pub fill: f64,
    /// New connections in the churn phase.
    pub churn: usize,
    /// Lookups per thread.
    pub lookups: usize,
    pub clock: Clock,
}

/// Where `now` comes from.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// Nanoseconds since the round began.
    Real,
    /// A fixed step per packet (and per lookup).
    Simulated { ns_per_packet: u64 },
}

/// What one round measured.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    pub layout: TableLayout,
    pub build: Duration,
    /// Resident memory (VmRSS) before the build, after it, when full, and
    /// after the last sweep; bytes.
    pub rss_before: u64,
    pub rss_built: u64,
    pub rss_full: u64,
    pub rss_after: u64,
    /// Of the process's memory, on transparent huge pages when full.
    pub huge_full: u64,
    pub filled: usize,
    pub fill_time: Duration,
    /// The fill's last tenth (the table from 81 % to 90 % full, for
    /// `fill` 0.9).
    pub last_tenth: (usize, Duration),
    pub churned: usize,
    pub churn_time: Duration,
    /// The table's entries at the churn's lowest and highest.
    pub churn_len: (usize, usize),
    /// Entries the churn's expiry removed.
    pub churn_expired: u64,
    pub lookups_1: (usize, Duration),
    pub lookups_2: (usize, Duration),
    /// Lookups that found their entry (of both runs).
    pub lookup_hits: usize,
    /// One sweep of the table with nothing expired: the entries in the
    /// table, the time, and how many it removed after all (expired ones
    /// not yet swept by the churn's paced expiry).
    pub sweep_idle: (usize, Duration, usize),
    /// One sweep that removed every entry: entries removed, time.
    pub sweep_all: (usize, Duration),
    /// The worker's counters at the end (drops, conntrack insert/drop).
    pub dropped: u64,
    pub ct_drop: u64,
    pub ct_early_drop: u64,
    pub ct_insert_failed: u64,
    pub inserted: u64,
}

impl ScaleReport {
    /// Per second, for `n` things in `d`.
    pub fn rate(n: usize, d: Duration) -> f64 {
        n as f64 / d.as_secs_f64().max(1e-9)
    }
}

struct NoEmit;
impl Emit for NoEmit {
    fn emit(&mut self, _: u8, _: &[u8]) {}
}

/// Connection `k`: a client on the LAN, a distinct (server, port) pair for
/// every `k` below 16.7 M times `SERVERS`/65,536, so that each reply tuple
/// is free and MASQUERADE keeps the client's port.
fn tuple(k: u64) -> Tuple {
    Tuple {
        src: Ipv4Addr::new(192, 168, 10, 2 + (k % 250) as u8),
        dst: Ipv4Addr::from(0xc633_0000 + (k % u64::from(SERVERS)) as u32),
        sport: 1024 + (k / u64::from(SERVERS)) as u16,
        dport: SERVER_PORT,
        proto: 17,
    }
}

fn frame(k: u64) -> Vec<u8> {
    let t = tuple(k);
    // 64-byte frames on the wire: 14 + 20 + 8 + 18 bytes (+ FCS).
    FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: t.src,
        dst: t.dst,
        ttl: 64,
        tos: 0,
        id: 1,
        df: false,
        l4: L4Spec::Udp {
            sport: t.sport,
            dport: t.dport,
            payload: vec![0xab; 18],
        },
    }
    .build()
}

/// The process's resident memory (VmRSS), bytes.
pub fn rss() -> u64 {
    status_kb("/proc/self/status", "VmRSS:") * 1024
}

/// The process's memory on transparent huge pages, bytes.
pub fn anon_huge() -> u64 {
    status_kb("/proc/self/smaps_rollup", "AnonHugePages:") * 1024
}

fn status_kb(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

struct Driver {
    worker: Worker,
    clock: Clock,
    start: Instant,
    /// Added to the real clock (the churn's jump).
    offset: u64,
    sim: u64,
    last_tick: u64,
    bufs: Vec<Vec<u8>>,
}

impl Driver {
    fn now(&mut self) -> u64 {
        match self.clock {
            Clock::Real => self.start.elapsed().as_nanos() as u64 + self.offset,
            Clock::Simulated { ns_per_packet } => {
                self.sim += ns_per_packet;
                self.sim + self.offset
            }
        }
    }

    /// Connections `from..from + n` through the worker, in batches as a
    /// port's loop hands them over; returns the time the batches took
    /// (frames are built outside it).
    fn connections(
        &mut self,
        from: u64,
        n: usize,
        mut each_batch: impl FnMut(&Worker),
    ) -> Duration {
        let mut total = Duration::ZERO;
        let mut k = from;
        let end = from + n as u64;
        while k < end {
            let m = (end - k).min(BATCH as u64) as usize;
            let frames: Vec<Vec<u8>> = (0..m as u64).map(|i| frame(k + i)).collect();
            k += m as u64;
            let t0 = Instant::now();
            {
                // `now` as `Driver::now` gives it, without borrowing `self`
                // while the batch holds the worker.
                let (clock, start, offset) = (self.clock, self.start, self.offset);
                let sim = &mut self.sim;
                let mut now = || match clock {
                    Clock::Real => start.elapsed().as_nanos() as u64 + offset,
                    Clock::Simulated { ns_per_packet } => {
                        *sim += ns_per_packet;
                        *sim + offset
                    }
                };
                let mut batch = self.worker.batch(NoEmit);
                for f in &frames {
                    batch.prefetch(0, f);
                }
                for (i, f) in frames.iter().enumerate() {
                    let now = now();
                    let b = &mut self.bufs[i];
                    b[..f.len()].copy_from_slice(f);
                    let a = batch.process(now, 0, b, f.len());
                    debug_assert!(matches!(a, Action::Forward { .. }), "{a:?}");
                    std::hint::black_box(a);
                }
            }
            let now = self.now();
            if now.saturating_sub(self.last_tick) >= TICK {
                self.last_tick = now;
                self.worker.housekeeping(now, &mut NoEmit);
            }
            total += t0.elapsed();
            each_batch(&self.worker);
        }
        total
    }
}

/// Runs one round (see the module's description).
pub fn run(cfg: &ScaleConfig) -> ScaleReport {
    let rules =
        xdpgw_control::load_rules(&xdpgw_vm_tests::workspace_dir().join("conf/gateway.rules"))
            .unwrap_or_else(|e| panic!("{e}"));
    let ct = ConntrackConfig {
        max_entries: cfg.entries,
        buckets: cfg.buckets,
        ..ConntrackConfig::default()
    };
    let layout = ct.layout();
    let rss_before = rss();
    let t0 = Instant::now();
    let gw = Arc::new(
        Gateway::new(conf_gateway_config([LAN_MAC, WAN_MAC], ct), &rules)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let build = t0.elapsed();
    let rss_built = rss();
    gw.neigh
        .learn(0, Ipv4Addr::new(192, 168, 10, 2), CLIENT_MAC);
    gw.neigh
        .learn(1, Ipv4Addr::new(203, 0, 113, 254), UPSTREAM_MAC);
    let mut d = Driver {
        worker: Worker::new(Arc::clone(&gw), 1),
        clock: cfg.clock,
        start: Instant::now(),
        offset: 0,
        sim: 0,
        last_tick: 0,
        bufs: vec![vec![0u8; 2048]; BATCH],
    };
    let ct = &gw.conntrack;

    // Fill, the last tenth timed apart.
    let filled = ((cfg.entries as f64 * cfg.fill) as usize).max(10);
    let first = filled - filled / 10;
    let fill_start = d.now();
    let head = d.connections(0, first, |_| {});
    let tail = d.connections(first as u64, filled - first, |_| {});
    let fill_end = d.now();
    let rss_full = rss();
    let huge_full = anon_huge();
    assert_eq!(
        ct.len(),
        filled,
        "every connection of the fill is in the table"
    );

    // Churn: a clock that moves one fill step per packet, 30 s after the
    // fill began, so that the fill's entries reach their timeout one per
    // new connection, in the order they came: a steady state of the
    // table's fill, with the worker's paced sweep removing them.
    let step = ((fill_end - fill_start) / filled as u64).max(1);
    d.clock = Clock::Simulated {
        ns_per_packet: step,
    };
    d.offset = 0;
    d.sim = fill_start + UDP_TIMEOUT + 1;
    d.last_tick = d.sim;
    let expired_before = ct.stats().expired;
    let mut churn_len = (usize::MAX, 0);
    let churn_time = d.connections(filled as u64, cfg.churn, |w| {
        let n = w.gateway().conntrack.len();
        churn_len = (churn_len.0.min(n), churn_len.1.max(n));
    });
    let churn_expired = ct.stats().expired - expired_before;
    let end = (filled + cfg.churn) as u64;

    // Lookups of live entries: the newest half of the table's (the
    // oldest may have expired; early drops, if any, took others at random).
    let live = (ct.len() as u64 / 2).clamp(1, end);
    let now = d.now();
    let meta = |k: u64| PacketMeta {
        tuple: tuple(k),
        len: 60,
        tcp: None,
        icmp: None,
    };
    let look = |seed: u64, n: usize| {
        let mut x = seed;
        let mut hits = 0;
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let k = end - 1 - (x >> 33) % live;
            if let Track::Existing { .. } = ct.track(now, &meta(k)) {
                hits += 1;
            }
        }
        hits
    };
    let t0 = Instant::now();
    let mut lookup_hits = look(1, cfg.lookups);
    let lookups_1 = (cfg.lookups, t0.elapsed());
    let t0 = Instant::now();
    lookup_hits += std::thread::scope(|s| {
        let a = s.spawn(|| look(2, cfg.lookups));
        let b = look(3, cfg.lookups);
        a.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) + b
    });
    let lookups_2 = (2 * cfg.lookups, t0.elapsed());

    // A sweep of the whole table that finds (next to) nothing to remove:
    // every entry is younger than its timeout, or was refreshed by a
    // lookup; what a worker pays per second at any fill.
    let len = ct.len();
    let t0 = Instant::now();
    let removed = ct.gc(now, usize::MAX);
    let sweep_idle = (len, t0.elapsed(), removed);
    // ... and one that removes everything.
    let len = ct.len();
    let t0 = Instant::now();
    let removed = ct.gc(now + 3_600_000_000_000, usize::MAX);
    let sweep_all = (removed, t0.elapsed());
    assert_eq!((removed, ct.len()), (len, 0));
    let rss_after = rss();

    let s = d.worker.stats();
    ScaleReport {
        layout,
        build,
        rss_before,
        rss_built,
        rss_full,
        rss_after,
        huge_full,
        filled,
        fill_time: head + tail,
        last_tenth: (filled - first, tail),
        churned: cfg.churn,
        churn_time,
        churn_len,
        churn_expired,
        lookups_1,
        lookups_2,
        lookup_hits,
        sweep_idle,
        sweep_all,
        dropped: s.dropped(),
        ct_drop: s.ct.drop,
        ct_early_drop: s.ct.early_drop,
        ct_insert_failed: s.ct.insert_failed,
        inserted: s.ct.insert,
    }
}
