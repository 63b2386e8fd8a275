//! A worker: frames in batches through the pipeline, with its counters and
//! drop reasons.
//!
//! The batch protocol is in the types. [`Worker::batch`] begins a batch (the
//! worker picks up a newly installed rule set, neighbour table and trace
//! session) and returns a [`Batch`] guard; frames are prefetched and
//! processed only through the guard, and dropping it ends the batch (what
//! the prefetch pass queued is forgotten). Housekeeping
//! ([`Worker::housekeeping`]), the end of a credit round when the worker
//! goes idle ([`Worker::idle`]) and LOG lines ([`Worker::drain_logs`]) take
//! the worker itself, so they cannot run while a batch is open.
//!
//! [`Driver`] runs the whole loop over a worker's port queues: receive,
//! prefetch, process, the host path, housekeeping, transmit, LOG lines.
//! `xdpgw run` drives it over AF_XDP sockets; tests, tools and benchmarks
//! over in-memory queues ([`crate::port::MemQueue`]) or a [`Batch`] directly.

mod driver;
mod prefetch;

use std::sync::Arc;

use crate::action::Action;
use crate::classify::{CompiledRuleSet, EvalState};
use crate::drop::DropReason;
use crate::fastpath::FastPath;
use crate::gateway::Gateway;
use crate::log::LogSink;
use crate::pipeline::{Cx, Emit, Hooks};
use crate::trace::WorkerTrace;

pub use crate::fastpath::CREDIT_ROUND;
pub use crate::stats::WorkerStats;
pub use driver::{Driver, Round, BATCH};
use prefetch::PrefetchQueue;

/// The longest time a worker's expiry step accounts for at once (ns): the
/// pace itself is `Conntrack::sweep_slots`'s (a table of up to
/// `GC_MAX_SLOTS_PER_SEC` entries once a second, a larger one more
/// slowly). Linux's `gc_worker` sweeps the whole table per run and waits
/// between runs according to the entries' timeouts (up to 60 s); this
/// sweeps continuously, however full the table is: a lookup never uses an
/// expired entry either way, and listings leave out expired entries not
/// yet swept.
const GC_SWEEP: u64 = 1_000_000_000;
/// The fewest slots a worker's expiry step looks at (fewer wait for more
/// time to pass, up to 10 ms).
const GC_STEP: usize = 64;

/// One worker, sharing the gateway with the others: the hooks' state (rule
/// set and neighbours as of its batch, hold queue, scratch, LOG ring), its
/// fast path (flow cache, recording, credit round), its batch's prefetch
/// queue, its side of tracing, and its counters.
pub struct Worker {
    gw: Arc<Gateway>,
    hooks: Hooks,
    fast: FastPath,
    prefetch: PrefetchQueue,
    trace: WorkerTrace,
    stats: WorkerStats,
    /// When this worker's last expiry step ran ([`Worker::housekeeping`]).
    gc_at: u64,
    /// The gateway's link epoch as of this worker's last batch: when it
    /// moved, an MTU or address the cached flows assumed may have changed.
    link_epoch: u32,
}

impl Worker {
    /// A worker of `gw`; `seed` seeds its NAT port choices.
    pub fn new(gw: Arc<Gateway>, seed: u64) -> Worker {
        let index = gw.next_worker_index();
        Worker {
            hooks: Hooks::new(Arc::clone(&gw), index, seed),
            fast: FastPath::new(&gw.conntrack),
            prefetch: PrefetchQueue::new(),
            trace: WorkerTrace::new(),
            stats: WorkerStats::default(),
            gc_at: 0,
            link_epoch: gw.link_epoch(),
            gw,
        }
    }

    /// Turns the established-flow fast path on (the default) or off: off,
    /// every packet takes the full traversal (benchmarks and the
    /// differential test compare the two).
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast.on = on;
    }

    /// This worker's index among the gateway's workers (creation order).
    pub fn index(&self) -> usize {
        self.hooks.index()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// The rule set this worker evaluates (as of its last batch), and its
    /// rule counters.
    pub fn rules(&self) -> (&Arc<CompiledRuleSet>, &EvalState) {
        self.hooks.rules()
    }

    /// The worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Begins a batch: picks up a newly installed rule set, neighbour
    /// table, link change (MTU, address) and trace session (atomic loads,
    /// never blocking), and ends a
    /// credit round that must end. Frames the gateway generates while the
    /// batch runs go to `emit` (a sink, or `&mut` one). The batch ends when
    /// the guard is dropped.
    #[inline]
    pub fn batch<E: Emit>(&mut self, emit: E) -> Batch<'_, E> {
        self.fast.begin_batch(&self.gw.conntrack);
        let links = self.gw.link_epoch();
        if self.hooks.refresh() | (links != self.link_epoch) {
            self.link_epoch = links;
            self.fast.new_epoch();
        }
        self.trace.refresh(&self.gw.tracer);
        Batch { w: self, emit }
    }

    /// Housekeeping between batches: a credit round older than
    /// [`CREDIT_ROUND`] ends, held packets whose next hop resolved go out
    /// to `emit`, stale ones are dropped, and a bounded slice of conntrack
    /// expiry runs.
    pub fn housekeeping(&mut self, now: u64, emit: &mut impl Emit) {
        self.fast.end_old_round(now, &self.gw.conntrack);
        self.hooks
            .release_held(now, &mut self.stats, &mut self.fast, emit);
        self.gw.frags.expire(now, &mut self.stats);
        // Expiry at the pace `Conntrack::sweep_slots` sets (the table once
        // a second, large ones more slowly), in steps of at least `GC_STEP`
        // slots or 10 ms.
        let since = now.saturating_sub(self.gc_at).min(GC_SWEEP);
        let slots = self.gw.conntrack.sweep_slots(since);
        if slots >= GC_STEP || since >= GC_SWEEP / 100 {
            self.gc_at = now;
            self.gw.conntrack.gc_share(now, slots.max(1));
            if let Some(ct6) = &self.gw.conntrack6 {
                ct6.gc_share(now, ct6.sweep_slots(since).max(1));
            }
        }
    }

    /// The worker goes idle: the credit round ends, so that conntrack has
    /// every packet the fast path credited (the table is exact whenever
    /// traffic pauses). Also before the worker stops.
    pub fn idle(&mut self) {
        self.fast.end_round(&self.gw.conntrack);
    }

    /// Hands the LOG entries of the batches so far to `sink`, in order
    /// (off the packet path: the sink may format and write).
    pub fn drain_logs(&mut self, sink: &mut impl LogSink) {
        let (ring, rules, rules6) = self.hooks.logs();
        while let Some(e) = ring.pop() {
            let logs = if e.ipv6 { &rules6.logs } else { &rules.logs };
            sink.log(logs.get(e.log as usize), &e);
        }
    }

    /// Runs one frame through the fast path or the hooks.
    fn process<E: Emit>(
        &mut self,
        now: u64,
        in_iface: u8,
        buf: &mut [u8],
        len: usize,
        emit: &mut E,
    ) -> Action {
        self.stats.rx += 1;
        if self.prefetch.queued() {
            self.prefetch.issue(&self.fast, &self.gw);
        }
        let Some(frame) = buf.get_mut(..len) else {
            return self.count_drop(DropReason::EthTruncated);
        };
        if self.fast.on && !self.trace.active() {
            let eval = self.hooks.rules().1;
            if let Some(a) =
                self.fast
                    .forward(&self.gw, eval, &mut self.stats.ct, now, in_iface, frame)
            {
                self.stats.forwarded += 1;
                self.stats.fast_path += 1;
                return a;
            }
        }
        let mut cx = Cx::new(now, emit, &mut self.stats, &mut self.fast);
        self.hooks
            .receive(&mut cx, &mut self.trace, in_iface, frame)
    }

    /// Counts a drop that happened outside the pipeline (the host path
    /// refusing a packet the pipeline delivered).
    pub(crate) fn count_drop(&mut self, r: DropReason) -> Action {
        self.stats.drops[r as usize] += 1;
        Action::Drop(r)
    }
}

/// A batch of frames in progress on a [`Worker`]: the only way to prefetch
/// and process frames. Dropping it ends the batch.
#[must_use = "a batch ends when dropped: process frames through it"]
pub struct Batch<'w, E: Emit> {
    w: &'w mut Worker,
    emit: E,
}

impl<E: Emit> Batch<'_, E> {
    /// Starts loading what processing a frame that arrived on `in_iface`
    /// will touch. A port's receive loop shows it each batch it reads off a
    /// ring before processing any of its frames, so that their cache misses
    /// overlap; it is a hint (it reads only the headers, changes nothing
    /// but the batch's prefetch queue, and frames it cannot read are left
    /// alone).
    ///
    /// A flow the fast path takes needs no conntrack lookup, only its
    /// cached decision and its entry: this starts loading the decision, and
    /// the next [`Batch::process`] the entries. Any other frame may open a
    /// connection: its lookups start loading a few frames before its own
    /// `process`.
    #[inline]
    pub fn prefetch(&mut self, in_iface: u8, frame: &[u8]) {
        let w = &mut *self.w;
        w.prefetch.add(&w.fast, &w.gw, in_iface, frame);
    }

    /// Runs one frame that arrived on `in_iface` at `now` through the
    /// pipeline. `buf` holds the frame in its first `len` bytes and may be
    /// rewritten (and grow into the rest).
    #[inline]
    pub fn process(&mut self, now: u64, in_iface: u8, buf: &mut [u8], len: usize) -> Action {
        self.w.process(now, in_iface, buf, len, &mut self.emit)
    }

    /// A packet the gateway host sent (read from the host path): the IPv4
    /// packet is in `buf[ETH_HLEN..ETH_HLEN + len]`; the Ethernet header in
    /// front of it is written here. It takes OUTPUT and POSTROUTING like
    /// everything the gateway originates.
    /// `dev` is the interface whose host path device it was read from: a
    /// multicast packet (VRRP, IGMP) leaves through that interface.
    pub fn from_host(&mut self, now: u64, dev: u8, buf: &mut [u8], len: usize) -> Action {
        let w = &mut *self.w;
        let mut cx = Cx::new(now, &mut self.emit, &mut w.stats, &mut w.fast);
        w.hooks.output_from_host(&mut cx, dev, buf, len)
    }

    /// The worker's reassembly buffer: after an
    /// [`Action::HostReassembled`], the frame (Ethernet header, then the
    /// datagram) to deliver.
    pub fn reassembled(&self) -> &[u8] {
        self.w.hooks.reassembled()
    }

    /// The worker running the batch.
    pub fn worker(&self) -> &Worker {
        self.w
    }

    /// Counts a drop that happened outside the pipeline.
    pub(crate) fn count_drop(&mut self, r: DropReason) {
        self.w.count_drop(r);
    }

    /// Counts a frame received and dropped before the pipeline (for no
    /// interface: `Links::ingress`).
    pub(crate) fn count_rx_drop(&mut self, r: DropReason) {
        self.w.stats.rx += 1;
        self.w.count_drop(r);
    }
}

impl<E: Emit> Drop for Batch<'_, E> {
    #[inline]
    fn drop(&mut self) {
        self.w.prefetch.clear();
    }
}
