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

use std::sync::Arc;

use crate::classify::{CompiledRuleSet, EvalState};
use crate::log::LogSink;
use crate::pipeline::{Action, Emit, Gateway, Pipeline, WorkerStats};

pub use driver::{Driver, Round, BATCH};

/// One worker: its pipeline state (counters, fast path, scratch space, hold
/// queue), sharing the gateway with the others.
pub struct Worker {
    p: Pipeline,
}

impl Worker {
    /// A worker of `gw`; `seed` seeds its NAT port choices.
    pub fn new(gw: Arc<Gateway>, seed: u64) -> Worker {
        Worker {
            p: Pipeline::new(gw, seed),
        }
    }

    /// Turns the established-flow fast path on (the default) or off: off,
    /// every packet takes the full traversal (benchmarks and the
    /// differential test compare the two).
    pub fn set_fast_path(&mut self, on: bool) {
        self.p.set_fast_path(on);
    }

    /// This worker's index among the gateway's workers (creation order).
    pub fn index(&self) -> usize {
        self.p.index()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        self.p.gateway()
    }

    /// The rule set this worker evaluates (as of its last batch), and its
    /// rule counters.
    pub fn rules(&self) -> (&Arc<CompiledRuleSet>, &EvalState) {
        self.p.rules()
    }

    /// The worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.p.stats
    }

    /// Begins a batch: picks up a newly installed rule set, neighbour
    /// table and trace session (atomic loads, never blocking), and ends a
    /// credit round that must end. Frames the gateway generates while the
    /// batch runs go to `emit` (a sink, or `&mut` one). The batch ends when
    /// the guard is dropped.
    #[inline]
    pub fn batch<E: Emit>(&mut self, emit: E) -> Batch<'_, E> {
        self.p.begin_batch();
        Batch { w: self, emit }
    }

    /// Housekeeping between batches: held packets whose next hop resolved
    /// go out to `emit`, stale ones are dropped, a credit round older than
    /// [`crate::pipeline::CREDIT_ROUND`] ends, and a bounded slice of
    /// conntrack expiry runs.
    pub fn housekeeping(&mut self, now: u64, emit: &mut impl Emit) {
        self.p.tick(now, emit);
    }

    /// The worker goes idle: the credit round ends, so that conntrack has
    /// every packet the fast path credited (the table is exact whenever
    /// traffic pauses). Also before the worker stops.
    pub fn idle(&mut self) {
        self.p.flush_credits();
    }

    /// Hands the LOG entries of the batches so far to `sink`, in order
    /// (off the packet path: the sink may format and write).
    pub fn drain_logs(&mut self, sink: &mut impl LogSink) {
        let p = &mut self.p;
        while let Some(e) = p.logs.pop() {
            let rules = &p.rules().0;
            sink.log(rules.logs.get(e.log as usize), &e);
        }
    }

    /// Counts a drop that happened outside the pipeline (the host path
    /// refusing a packet the pipeline delivered).
    pub(crate) fn count_drop(&mut self, r: crate::drop::DropReason) {
        self.p.stats.drops[r as usize] += 1;
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
        self.w.p.prefetch(in_iface, frame);
    }

    /// Runs one frame that arrived on `in_iface` at `now` through the
    /// pipeline. `buf` holds the frame in its first `len` bytes and may be
    /// rewritten (and grow into the rest).
    #[inline]
    pub fn process(&mut self, now: u64, in_iface: u8, buf: &mut [u8], len: usize) -> Action {
        self.w.p.process(now, in_iface, buf, len, &mut self.emit)
    }

    /// A packet the gateway host sent (read from the host path): the IPv4
    /// packet is in `buf[ETH_HLEN..ETH_HLEN + len]`; the Ethernet header in
    /// front of it is written here. It takes OUTPUT and POSTROUTING like
    /// everything the gateway originates.
    pub fn from_host(&mut self, now: u64, buf: &mut [u8], len: usize) -> Action {
        self.w.p.output_from_host(now, buf, len, &mut self.emit)
    }

    /// The worker running the batch.
    pub fn worker(&self) -> &Worker {
        self.w
    }

    /// Counts a drop that happened outside the pipeline.
    pub(crate) fn count_drop(&mut self, r: crate::drop::DropReason) {
        self.w.count_drop(r);
    }
}

impl<E: Emit> Drop for Batch<'_, E> {
    #[inline]
    fn drop(&mut self) {
        self.w.p.end_batch();
    }
}
