//! The packet pipeline: netfilter's hook traversal over one Ethernet frame,
//! in Linux's order, rewriting the frame in place.
//!
//! Arriving packets: raw PREROUTING, conntrack, mangle PREROUTING, nat
//! PREROUTING (first packet of a connection only; later packets get the
//! connection's translation), routing, then either FORWARD (TTL, MTU, mangle,
//! filter) or INPUT (mangle, filter, nat INPUT), then mangle and nat
//! POSTROUTING, conntrack confirm, neighbour resolution. Packets the gateway
//! itself sends (echo replies, ICMP errors, TCP resets from REJECT) take the
//! OUTPUT path: routing, raw, conntrack, mangle, nat and filter OUTPUT, then
//! POSTROUTING.
//!
//! No I/O and no clock: frames come in with their interface and the time,
//! and the result says what to do with each; extra frames the gateway
//! generates go to an [`Emit`] sink.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::classify::{
    compile, CompileError, CompiledRuleSet, EvalState, NatAction, PacketView, Verdict, MAX_IFACES,
};
use crate::conntrack::{
    status, Conntrack, ConntrackConfig, CtState, EntryRef, EntryTrack, IcmpMeta, InvalidReason,
    PacketMeta, Pending, TcpSeg, Track,
};
use crate::drop::DropReason;
use crate::flow::{Dir, Tuple, IPPROTO_TCP};
use crate::flowcache::{Cached, FlowCache, Place};
use crate::icmp_limit::{IcmpLimitConfig, IcmpLimiter};
use crate::log::LogRing;
use crate::nat::{self, Binding, Manip, PortSearch};
use crate::neigh::{HoldQueue, Mac, NeighMap, Neighbours, BROADCAST};
use crate::route::{RouteError, RouteTable};
use crate::rule::{AddrRange, CtStates, Hook, Ipv4Net, RejectWith, RuleSet, Table};
use crate::trace::{rules_id, PacketTrace, Recorder, TraceEvent, TraceSession, Tracer};
use crate::wire::fast::FlowEdit;
use crate::wire::{self, Ipv4Info, L4};

/// One interface the gateway owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    pub name: String,
    pub mac: Mac,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub mtu: u16,
}

/// What a gateway is made of.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub ifaces: Vec<IfaceConfig>,
    /// Static routes: destination and gateway.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    pub conntrack: ConntrackConfig,
    /// How often ICMP errors may go out (Linux's `icmp_*` sysctls).
    pub icmp: IcmpLimitConfig,
}

#[derive(Debug)]
pub enum GatewayError {
    Route(RouteError),
    Compile(CompileError),
    TooManyInterfaces(usize),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Route(e) => write!(f, "{e}"),
            GatewayError::Compile(e) => write!(f, "{e}"),
            GatewayError::TooManyInterfaces(n) => {
                write!(f, "{n} interfaces; at most {MAX_IFACES} are supported")
            }
        }
    }
}

impl std::error::Error for GatewayError {}

/// What all workers share: interfaces, routes, the rule set (swapped
/// atomically on reload), the conntrack table and the neighbour table.
pub struct Gateway {
    pub ifaces: Vec<IfaceConfig>,
    pub routes: RouteTable,
    rules: ArcSwap<CompiledRuleSet>,
    pub conntrack: Conntrack,
    pub neigh: Neighbours,
    /// The ICMP error rate limits all workers share.
    pub icmp_limit: IcmpLimiter,
    /// Indices handed to workers (their rule counter stripe). Relaxed: only
    /// uniqueness matters.
    worker_seq: AtomicUsize,
    /// The running packet trace, if any (`xdpgw trace`).
    pub tracer: Tracer,
}

impl Gateway {
    pub fn new(cfg: GatewayConfig, rules: &RuleSet) -> Result<Gateway, GatewayError> {
        if cfg.ifaces.len() > MAX_IFACES {
            return Err(GatewayError::TooManyInterfaces(cfg.ifaces.len()));
        }
        let connected: Vec<(u8, Ipv4Addr, u8)> = cfg
            .ifaces
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u8, f.addr, f.prefix))
            .collect();
        let routes = RouteTable::new(&connected, &cfg.routes).map_err(GatewayError::Route)?;
        let names: Vec<&str> = cfg.ifaces.iter().map(|f| f.name.as_str()).collect();
        let compiled = compile(rules, &names).map_err(GatewayError::Compile)?;
        Ok(Gateway {
            ifaces: cfg.ifaces,
            routes,
            rules: ArcSwap::from_pointee(compiled),
            conntrack: Conntrack::new(cfg.conntrack),
            neigh: Neighbours::default(),
            icmp_limit: IcmpLimiter::new(cfg.icmp),
            worker_seq: AtomicUsize::new(0),
            tracer: Tracer::default(),
        })
    }

    /// Compiles and installs a new rule set; workers pick it up at their
    /// next batch. Connections and NAT bindings are untouched.
    pub fn install(&self, rules: &RuleSet) -> Result<(), CompileError> {
        let compiled = self.compile(rules)?;
        self.install_compiled(Arc::new(compiled));
        Ok(())
    }

    /// Compiles a rule set for this gateway's interfaces without installing
    /// it (the control plane prepares counters before [`Gateway::install_compiled`]).
    pub fn compile(&self, rules: &RuleSet) -> Result<CompiledRuleSet, CompileError> {
        let names: Vec<&str> = self.ifaces.iter().map(|f| f.name.as_str()).collect();
        compile(rules, &names)
    }

    /// Installs a compiled rule set; returns the one it replaced. Workers
    /// pick it up at their next batch.
    pub fn install_compiled(&self, rules: Arc<CompiledRuleSet>) -> Arc<CompiledRuleSet> {
        self.rules.swap(rules)
    }

    pub fn rules(&self) -> Arc<CompiledRuleSet> {
        self.rules.load_full()
    }

    /// The interface holding `addr`, if it is one of the gateway's.
    #[inline]
    pub fn local_iface(&self, addr: Ipv4Addr) -> Option<u8> {
        self.ifaces
            .iter()
            .position(|f| f.addr == addr)
            .map(|i| i as u8)
    }

    fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr == Ipv4Addr::BROADCAST
            || self.ifaces.iter().any(|f| {
                let host_bits = if f.prefix >= 32 {
                    0
                } else {
                    u32::MAX >> f.prefix
                };
                host_bits != 0
                    && u32::from(addr) & !host_bits == u32::from(f.addr) & !host_bits
                    && u32::from(addr) & host_bits == host_bits
            })
    }
}

/// Where frames the gateway generates go (ARP, ICMP errors, resets, held
/// packets once resolved). The port copies them into a transmit frame.
pub trait Emit {
    fn emit(&mut self, iface: u8, frame: &[u8]);
}

impl<E: Emit + ?Sized> Emit for &mut E {
    #[inline]
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        (**self).emit(iface, frame);
    }
}

/// What to do with a frame after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame, `len` bytes, out of `iface`.
    Forward { iface: u8, len: usize },
    /// Deliver to the gateway host's own stack (INPUT accepted it): the
    /// IPv4 packet is `frame[ETH_HLEN..len]`, as arrived on `iface`.
    Host { iface: u8, len: usize },
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Handled: answered through the emit sink, or held for ARP.
    Consumed,
}

/// The Ethernet header's length: where the IPv4 header starts.
pub const ETH_HLEN: usize = wire::ETH_HDR;
/// An IPv4 header without options.
const IPV4_MIN_HDR: usize = 20;

/// Per-worker counters.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub rx: u64,
    pub forwarded: u64,
    /// Delivered to the host (INPUT accepted, not answered by xdpgw).
    pub host: u64,
    /// Packets the host sent through the host path (OUTPUT).
    pub from_host: u64,
    /// Of `forwarded`: by the established-flow fast path (a cached
    /// traversal, see `flowcache`).
    pub fast_path: u64,
    pub consumed: u64,
    pub emitted: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Conntrack counters of the packets this worker tracked.
    pub ct: crate::conntrack::CtCounters,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            rx: 0,
            forwarded: 0,
            host: 0,
            from_host: 0,
            fast_path: 0,
            consumed: 0,
            emitted: 0,
            drops: [0; DropReason::COUNT],
            ct: crate::conntrack::CtCounters::default(),
        }
    }
}

impl WorkerStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

/// The connection a packet belongs to, as the pipeline carries it.
#[derive(Clone, Copy, Debug)]
enum Conn {
    Untracked,
    Invalid,
    Existing {
        dir: Dir,
        orig: Tuple,
        reply: Tuple,
        status: u16,
        related: bool,
        /// The entry, when conntrack found it (not for answers we build).
        entry: Option<EntryRef>,
    },
    New(Pending),
}

impl Conn {
    /// The tuples and NAT status used to translate the packet, if any.
    fn nat(&self) -> Option<(Tuple, Tuple, u16, Dir, bool)> {
        match self {
            Conn::Existing {
                dir,
                orig,
                reply,
                status,
                related,
                ..
            } => Some((*orig, *reply, *status, *dir, *related)),
            Conn::New(p) => Some((p.orig, p.reply, p.status, Dir::Original, false)),
            _ => None,
        }
    }

    fn ct_bits(&self, state: CtState) -> u8 {
        ct_bits_of(state, self.nat().map_or(0, |(_, _, st, _, _)| st))
    }
}

/// The conntrack bits rules see (`--ctstate`): the state, and SNAT/DNAT
/// from the connection's status.
#[inline]
fn ct_bits_of(state: CtState, st: u16) -> u8 {
    let mut bits = state.bit();
    if st & status::SRC_NAT != 0 {
        bits |= CtStates::SNAT;
    }
    if st & status::DST_NAT != 0 {
        bits |= CtStates::DNAT;
    }
    bits
}

/// Entries of each worker's established-flow cache (two per bucket).
const FLOW_CACHE_ENTRIES: usize = 8192;
/// Frames the prefetch pass queues for its second step, cached flows and
/// others each: a port's rx batch (more are prefetched at once).
const PEEKED: usize = 64;
/// How many frames ahead of its `process` a frame that is no cached flow
/// starts loading its lookups (2 to 8 measured alike).
const FRESH_AHEAD: usize = 4;
const NO_TUPLE: Tuple = Tuple {
    src: Ipv4Addr::UNSPECIFIED,
    dst: Ipv4Addr::UNSPECIFIED,
    sport: 0,
    dport: 0,
    proto: 0,
};

/// Frames larger than this are not generated or held.
pub const FRAME_SIZE: usize = 2048;

/// A worker's pipeline state: its counters, scratch space and hold queue;
/// shares the gateway. Driven by [`crate::worker::Worker`], whose batch
/// guard calls [`Pipeline::begin_batch`] and [`Pipeline::end_batch`].
pub(crate) struct Pipeline {
    gw: Arc<Gateway>,
    rules: Arc<CompiledRuleSet>,
    eval: EvalState,
    /// This worker's index: its stripe of the rule counters.
    index: usize,
    pub(crate) stats: WorkerStats,
    hold: HoldQueue,
    ports: PortSearch,
    scratch: Box<[u8]>,
    pub(crate) logs: LogRing,
    /// When this worker's last expiry step ran ([`Pipeline::tick`]).
    gc_at: u64,
    /// The neighbour table as of this batch.
    neigh: Arc<NeighMap>,
    /// Packet tracing: the session as of this batch (None: no trace runs),
    /// the tracer version it was loaded at, whether the current packet is
    /// being recorded, its record and its view as it arrived.
    trace: Option<Arc<TraceSession>>,
    trace_version: u64,
    tracing: bool,
    trace_rec: Box<PacketTrace>,
    trace_view: PacketView,
    /// The established-flow fast path ([`crate::flowcache`]): the cache,
    /// the packet being recorded for it (interface and tuple as it
    /// arrived), the entry its traversal produced, and a conntrack result
    /// the fast path already obtained for a packet it hands to the full
    /// path.
    flows: FlowCache,
    fast_path_on: bool,
    /// The prefetch pass's queues for its second step (see `prefetch`):
    /// the cached flows it saw, and the other frames' tuples with the next
    /// one whose lookups are still to be started.
    peeked: [Place; PEEKED],
    npeeked: usize,
    fresh: [Tuple; PEEKED],
    nfresh: usize,
    fresh_next: usize,
    /// `npeeked > 0 || fresh_next < nfresh`, kept as one flag: the test
    /// every `process` makes, a fast-path packet's included.
    hints_queued: bool,
    flow_key: Option<(u8, Tuple)>,
    flow_hit: bool,
    flow_pending: Option<Cached>,
    pre_track: Option<Track>,
    /// Conntrack credits of this round ([`Conntrack::credit`]): packets of
    /// steady UDP streams after the first of each in the round, given to
    /// conntrack together when the round ends (`flush_credits`: at most
    /// [`CREDIT_ROUND`] after its first credit, when the list fills up,
    /// when an entry was deleted, or when the worker goes idle).
    /// `credit_round` numbers rounds (0: never), `credits_since` is when the
    /// round's first credit was made, `removals_seen` conntrack's
    /// deletion count when the round began.
    credits: Vec<Credit>,
    credit_round: u32,
    credits_since: u64,
    removals_seen: u64,
}

/// Packets of one UDP stream in one round, not yet told to conntrack.
#[derive(Clone, Copy, Debug)]
struct Credit {
    entry: EntryRef,
    dir: Dir,
    packets: u64,
    bytes: u64,
    last: u64,
}

/// How long a worker takes to sweep the whole conntrack table for expired
/// entries (ns). Linux's `gc_worker` sweeps the whole table per run and
/// waits between runs according to the entries' timeouts (up to 60 s);
/// this sweeps continuously, one table's capacity per second, however
/// full it is: a lookup never uses an expired entry either way, and
/// listings leave out expired entries not yet swept.
const GC_SWEEP: u64 = 1_000_000_000;
/// The fewest slots a worker's expiry step looks at (fewer wait for more
/// time to pass, up to 10 ms).
const GC_STEP: usize = 64;
/// Flows whose packets one round may credit together (more take the
/// per-packet way until the round ends; a round ends at the next batch
/// once three quarters are taken).
const CREDITS: usize = 2048;
/// The longest a credit round lasts (ns): how late a steady UDP stream's
/// counters and timeout may reach conntrack while traffic flows, and how
/// long its entry goes unchecked (an entry deleted by the operator ends
/// the round at the next batch instead).
pub const CREDIT_ROUND: u64 = 50_000_000;
/// `Cached::credit_idx` of a flow found steady in this round whose credit
/// is not made yet (only its second packet in the round makes one).
const NO_CREDIT: u16 = u16::MAX;

/// A parsed packet on its way through the hooks.
struct Pkt {
    info: Ipv4Info,
    view: PacketView,
    conn: Conn,
    ct_state: CtState,
}

impl Pipeline {
    pub(crate) fn new(gw: Arc<Gateway>, seed: u64) -> Pipeline {
        let rules = gw.rules();
        let index = gw.worker_seq.fetch_add(1, Ordering::Relaxed);
        Pipeline {
            eval: EvalState::for_worker(&rules, index),
            index,
            rules,
            stats: WorkerStats::default(),
            // Linux queues up to unres_qlen_bytes (212,992) per unresolved
            // neighbour: about as many small packets as this.
            hold: HoldQueue::new(128, FRAME_SIZE),
            ports: PortSearch::new(seed),
            scratch: vec![0u8; FRAME_SIZE].into_boxed_slice(),
            logs: LogRing::new(256),
            gc_at: 0,
            neigh: gw.neigh.snapshot(),
            trace: None,
            trace_version: 0,
            tracing: false,
            trace_rec: PacketTrace::boxed(),
            trace_view: PacketView::default(),
            flows: FlowCache::new(FLOW_CACHE_ENTRIES),
            peeked: [Place::default(); PEEKED],
            npeeked: 0,
            fresh: [NO_TUPLE; PEEKED],
            nfresh: 0,
            fresh_next: 0,
            hints_queued: false,
            fast_path_on: true,
            flow_key: None,
            flow_hit: false,
            flow_pending: None,
            pre_track: None,
            credits: Vec::with_capacity(CREDITS),
            credit_round: 1,
            credits_since: 0,
            removals_seen: gw.conntrack.removals(),
            gw,
        }
    }

    /// Turns the established-flow fast path on (the default) or off: off,
    /// every packet takes the full traversal (benchmarks compare the two).
    pub(crate) fn set_fast_path(&mut self, on: bool) {
        self.fast_path_on = on;
    }

    /// This worker's index among the gateway's workers (creation order).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// The rule set this worker evaluates, and its rule counters.
    pub(crate) fn rules(&self) -> (&Arc<CompiledRuleSet>, &EvalState) {
        (&self.rules, &self.eval)
    }

    /// Picks up a newly installed rule set: one atomic load, never blocking.
    pub(crate) fn begin_batch(&mut self) {
        let removals = self.gw.conntrack.removals();
        if removals != self.removals_seen || self.credits.len() >= CREDITS / 4 * 3 {
            self.removals_seen = removals;
            self.flush_credits();
        }
        let neigh = self.gw.neigh.snapshot();
        if !Arc::ptr_eq(&neigh, &self.neigh) {
            self.neigh = neigh;
            self.flows.new_epoch();
        }
        let current = self.gw.rules.load();
        if !Arc::ptr_eq(&current, &self.rules) {
            self.rules = Arc::clone(&current);
            self.eval = EvalState::for_worker(&self.rules, self.index);
            self.flows.new_epoch();
        }
        let v = self.gw.tracer.version();
        if v != self.trace_version {
            self.trace_version = v;
            self.trace = self.gw.tracer.session();
        }
    }

    /// Forgets what the batch's prefetch pass queued.
    pub(crate) fn end_batch(&mut self) {
        self.npeeked = 0;
        self.nfresh = 0;
        self.fresh_next = 0;
        self.hints_queued = false;
    }

    /// Starts loading what processing a frame will touch; call it for every
    /// frame of a batch before processing them (a port's rx loop does), so
    /// that the batch's cache misses overlap. Reads only the frame's
    /// headers and changes nothing but its own queue; frames it cannot read
    /// are left alone.
    ///
    /// A flow the fast path takes needs no conntrack lookup, only its
    /// cached decision and its entry, which that decision names: this call
    /// starts loading the decision and queues the frame; the first
    /// [`Pipeline::process`] after the pass reads the (by then loaded)
    /// decisions and starts loading the entries. Any other frame may open a
    /// connection: it is queued too, and its lookups start loading a few
    /// frames before its own `process` (see `prefetch_queued`).
    #[inline]
    pub(crate) fn prefetch(&mut self, in_iface: u8, frame: &[u8]) {
        let Some(t) = crate::conntrack::frame_tuple(frame) else {
            return;
        };
        if self.fast_path_on {
            if let Some(p) = self.flows.probe(in_iface, &t) {
                match self.peeked.get_mut(self.npeeked) {
                    Some(q) => {
                        *q = p;
                        self.npeeked += 1;
                        self.hints_queued = true;
                    }
                    None => self.prefetch_cached(p),
                }
                return;
            }
        }
        if let Some(q) = self.fresh.get_mut(self.nfresh) {
            *q = t;
            self.nfresh += 1;
            self.hints_queued = true;
        } else {
            self.prefetch_new_conn(&t);
        }
    }

    /// Starts loading what a new connection's lookups touch: its tuple, and
    /// its reply tuple for confirm (and NAT's port choice): the inverse, or
    /// under MASQUERADE keeping the port, the inverse to the outgoing
    /// interface's address.
    #[inline]
    fn prefetch_new_conn(&self, t: &Tuple) {
        let ct = &self.gw.conntrack;
        ct.prefetch_new(t.hash64());
        let r = t.invert();
        ct.prefetch(r.hash64());
        let out = self.gw.routes.lookup(t.dst);
        if let Some(f) = out.and_then(|h| self.gw.ifaces.get(usize::from(h.iface))) {
            ct.prefetch(Tuple { dst: f.addr, ..r }.hash64());
        }
    }

    /// The prefetch pass's second step, run by each [`Pipeline::process`]
    /// while the pass left something queued: the first call starts loading
    /// the conntrack entries of the cached flows and the lookups of the
    /// first [`FRESH_AHEAD`] other frames, each call after that the next
    /// other frame's, so that they start a few frames before their own
    /// `process` (issuing all of a batch's at once measured 5-8 % fewer new
    /// connections per second: a new connection issues five, and a batch's
    /// 300 outrun the misses a core keeps in flight).
    #[inline(never)]
    fn prefetch_queued(&mut self) {
        for i in 0..std::mem::take(&mut self.npeeked) {
            self.prefetch_cached(self.peeked[i]);
        }
        let ahead = if self.fresh_next == 0 { FRESH_AHEAD } else { 1 };
        for _ in 0..ahead {
            if let Some(t) = self.fresh[..self.nfresh].get(self.fresh_next) {
                self.prefetch_new_conn(t);
                self.fresh_next += 1;
            }
        }
        self.hints_queued = self.fresh_next < self.nfresh;
    }

    /// A cached flow's packet reads its conntrack entry, unless the flow is
    /// credited in this round: then its credit.
    #[inline]
    fn prefetch_cached(&self, p: Place) {
        if let Some(c) = self.flows.at(p) {
            if c.credit_round != self.credit_round {
                self.gw.conntrack.prefetch_entry(c.entry);
            } else if let Some(cr) = self.credits.get(usize::from(c.credit_idx)) {
                crate::port::prefetch::prefetch_line(cr as *const Credit as usize);
            }
        }
    }

    /// Ends the credit round: gives conntrack the packets the fast path
    /// credited since it began. The next packet of each flow is tracked
    /// against its entry again. A driver calls it when it goes idle, so
    /// that the table is exact whenever traffic pauses ([`Pipeline::tick`]
    /// ends rounds that last [`CREDIT_ROUND`]).
    pub(crate) fn flush_credits(&mut self) {
        self.credit_round = self.credit_round.wrapping_add(1).max(1);
        for c in self.credits.drain(..) {
            if c.packets > 0 {
                self.gw
                    .conntrack
                    .credit(c.entry, c.dir, c.packets, c.bytes, c.last);
            }
        }
    }

    /// Housekeeping between batches: held packets whose next hop resolved
    /// go out, stale ones are dropped, a credit round older than
    /// [`CREDIT_ROUND`] ends, and a bounded slice of conntrack expiry runs.
    pub(crate) fn tick(&mut self, now: u64, emit: &mut impl Emit) {
        if !self.credits.is_empty() && now.saturating_sub(self.credits_since) >= CREDIT_ROUND {
            self.flush_credits();
        }
        if !self.hold.is_empty() {
            let gw = Arc::clone(&self.gw);
            let mut asks: [(u8, Ipv4Addr); 4] = [(0, Ipv4Addr::UNSPECIFIED); 4];
            let mut nasks = 0;
            let (mut sent, mut dropped) = (0u64, 0u64);
            self.hold.service(
                now,
                &gw.neigh,
                |iface, mac, frame| {
                    if let Some(f) = gw.ifaces.get(usize::from(iface)) {
                        wire::set_macs(frame, mac, f.mac);
                        emit.emit(iface, frame);
                        sent += 1;
                    }
                },
                || dropped += 1,
                |iface, hop| {
                    if nasks < asks.len() {
                        asks[nasks] = (iface, hop);
                        nasks += 1;
                    }
                },
            );
            self.stats.emitted += sent;
            self.stats.drops[DropReason::NeighUnresolved as usize] += dropped;
            for &(iface, hop) in &asks[..nasks] {
                self.arp_request(iface, hop, emit);
            }
        }
        // Expiry at the pace of one sweep of the table per
        // `GC_SWEEP`, in steps of at least `GC_STEP` slots or 10 ms.
        let since = now.saturating_sub(self.gc_at).min(GC_SWEEP);
        let slots = (u128::from(since) * self.gw.conntrack.max_entries() as u128
            / u128::from(GC_SWEEP)) as usize;
        if slots >= GC_STEP || since >= GC_SWEEP / 100 {
            self.gc_at = now;
            self.gw.conntrack.gc_share(now, slots.max(1));
        }
    }

    fn drop(&mut self, r: DropReason) -> Action {
        self.stats.drops[r as usize] += 1;
        Action::Drop(r)
    }

    /// Runs one frame that arrived on `in_iface` through the pipeline. `buf`
    /// holds the frame in its first `len` bytes and may be rewritten.
    pub(crate) fn process(
        &mut self,
        now: u64,
        in_iface: u8,
        buf: &mut [u8],
        len: usize,
        emit: &mut impl Emit,
    ) -> Action {
        self.stats.rx += 1;
        if self.hints_queued {
            self.prefetch_queued();
        }
        let Some(frame) = buf.get_mut(..len) else {
            return self.drop(DropReason::EthTruncated);
        };
        if self.fast_path_on && self.trace.is_none() {
            if let Some(a) = self.fast_path(now, in_iface, frame) {
                self.stats.forwarded += 1;
                self.stats.fast_path += 1;
                return a;
            }
        }
        let et = match wire::ethertype(frame) {
            Ok(e) => e,
            Err(r) => return self.drop(r),
        };
        let Some(iface) = self.gw.ifaces.get(usize::from(in_iface)) else {
            return self.drop(DropReason::NotForUs);
        };
        if et == wire::ETHERTYPE_ARP {
            return self.arp(in_iface, frame);
        }
        if et != wire::ETHERTYPE_IPV4 {
            return self.drop(DropReason::NotIpv4);
        }
        // Frames to another host's MAC are not ours (Linux: PACKET_OTHERHOST,
        // dropped in `ip_rcv_core`); link-layer broadcast and multicast ones
        // go through PREROUTING but are never forwarded (`forward`).
        if !is_group(frame) && frame[..6] != iface.mac {
            return self.drop(DropReason::NotForUs);
        }
        let info = match wire::parse_ipv4(frame) {
            Ok(i) => i,
            Err(r) => return self.drop(r),
        };
        if info.fragment {
            return self.drop(DropReason::Ipv4Fragment);
        }
        if self.trace.is_some() {
            self.trace_begin(now, in_iface, &info);
        }
        let a = self.prerouting(now, in_iface, frame, info, emit);
        if self.tracing {
            self.trace_end(now, a);
        }
        self.end_recording();
        match a {
            Action::Forward { .. } => self.stats.forwarded += 1,
            Action::Host { .. } => self.stats.host += 1,
            Action::Consumed => self.stats.consumed += 1,
            Action::Drop(_) => {}
        }
        a
    }

    /// ARP: answer requests for our address on that interface, learn the
    /// sender of anything addressed to us.
    fn arp(&mut self, in_iface: u8, frame: &mut [u8]) -> Action {
        let arp = match wire::parse_arp(frame) {
            Ok(a) => a,
            Err(r) => return self.drop(r),
        };
        let Some(iface) = self.gw.ifaces.get(usize::from(in_iface)).cloned() else {
            return self.drop(DropReason::NotForUs);
        };
        // `arp_rcv` ignores frames to another host's MAC (PACKET_OTHERHOST).
        if !is_group(frame) && frame.get(..6) != Some(&iface.mac[..]) {
            return self.drop(DropReason::NotForUs);
        }
        if arp.target_ip != iface.addr {
            return self.drop(DropReason::NotForUs);
        }
        if arp.sender_ip != Ipv4Addr::UNSPECIFIED {
            self.gw.neigh.learn(in_iface, arp.sender_ip, arp.sender_mac);
        }
        if arp.op != 1 {
            self.stats.consumed += 1;
            return Action::Consumed;
        }
        match wire::build_arp(
            frame,
            2,
            iface.mac,
            iface.addr,
            arp.sender_mac,
            arp.sender_mac,
            arp.sender_ip,
        ) {
            Some(n) => {
                self.stats.forwarded += 1;
                Action::Forward {
                    iface: in_iface,
                    len: n,
                }
            }
            None => self.drop(DropReason::ArpMalformed),
        }
    }

    fn arp_request(&mut self, iface: u8, hop: Ipv4Addr, emit: &mut impl Emit) {
        let Some(f) = self.gw.ifaces.get(usize::from(iface)) else {
            return;
        };
        let (mac, addr) = (f.mac, f.addr);
        if let Some(n) = wire::build_arp(&mut self.scratch, 1, mac, addr, BROADCAST, [0; 6], hop) {
            emit.emit(iface, &self.scratch[..n]);
            self.stats.emitted += 1;
        }
    }

    /// Evaluates a table at a hook, recording LOG hits.
    fn run(&mut self, now: u64, table: Table, hook: Hook, p: &mut Pkt, frame: &[u8]) -> Verdict {
        self.eval.nlogs = 0;
        let v = if self.tracing {
            self.run_traced(now, table, hook, p)
        } else {
            self.rules
                .eval(table, hook, &mut p.view, &mut self.eval, now)
        };
        for i in 0..self.eval.nlogs {
            self.logs
                .push(self.eval.logs[i], p.view.in_iface, p.view.out_iface, frame);
        }
        v
    }

    /// Conntrack for a packet, as nf_conntrack_in.
    /// `verify`: check the transport checksum first (arriving packets, as
    /// Linux's `nf_conntrack_checksum` does at PREROUTING).
    fn track(&mut self, now: u64, p: &mut Pkt, frame: &[u8], verify: bool) {
        if p.view.notrack {
            p.conn = Conn::Untracked;
            p.ct_state = CtState::Untracked;
            if self.tracing {
                self.trace_rec.untracked();
            }
        } else {
            let meta = meta_of(&p.info);
            let track = if let Some(t) = self.pre_track.take() {
                // The fast path tracked (and counted) it already.
                t
            } else {
                let t = match l4_error(frame, &p.info, verify) {
                    Some(reason) => self.gw.conntrack.protocol_error(&meta.tuple, reason),
                    None => self.gw.conntrack.track(now, &meta),
                };
                self.stats.ct.count_track(&t, meta.tuple.proto);
                t
            };
            if self.tracing {
                self.trace_rec.conntrack(&track, meta.tuple.proto);
            }
            let (conn, state) = match track {
                Track::Existing {
                    entry,
                    dir,
                    state,
                    snap,
                } => (
                    Conn::Existing {
                        dir,
                        orig: snap.orig,
                        reply: snap.reply,
                        status: snap.status,
                        related: state == CtState::Related,
                        entry: Some(entry),
                    },
                    state,
                ),
                Track::New(pending) => (Conn::New(pending), CtState::New),
                Track::Invalid { .. } => (Conn::Invalid, CtState::Invalid),
            };
            p.conn = conn;
            p.ct_state = state;
        }
        p.view.ct_bits = p.conn.ct_bits(p.ct_state);
    }

    /// Applies a connection's translation for a hook's manip.
    #[inline(always)]
    fn translate(frame: &mut [u8], p: &mut Pkt, manip: Manip) {
        if let Some((orig, reply, st, dir, related)) = p.conn.nat() {
            let changed = if related {
                nat::translate_related(frame, &mut p.info, &orig, &reply, st, dir, manip)
            } else {
                nat::translate(frame, &mut p.info, &orig, &reply, st, dir, manip)
            };
            if changed {
                refresh_view(&mut p.view, &p.info);
            }
        }
    }

    /// A NAT rule's decision for a new connection.
    fn bind(
        &mut self,
        now: u64,
        p: &mut Pkt,
        action: NatAction,
        in_iface: Option<u8>,
        out_iface: Option<u8>,
    ) -> Result<(), DropReason> {
        let Conn::New(pending) = &mut p.conn else {
            return Ok(());
        };
        let iface_addr = |i: Option<u8>| {
            i.and_then(|i| self.gw.ifaces.get(usize::from(i)))
                .map(|f| f.addr)
        };
        let single = |a: Ipv4Addr| AddrRange { lo: a, hi: a };
        let b = match action {
            NatAction::Masquerade(n) => Binding {
                manip: Manip::Src,
                addrs: single(iface_addr(out_iface).ok_or(DropReason::NoRoute)?),
                ports: n.ports,
                random_fully: n.random_fully,
            },
            NatAction::Snat(r) => Binding {
                manip: Manip::Src,
                addrs: r.addrs.unwrap_or(single(pending.orig.src)),
                ports: r.ports,
                random_fully: false,
            },
            NatAction::Dnat(r) => Binding {
                manip: Manip::Dst,
                addrs: r.addrs.unwrap_or(single(pending.orig.dst)),
                ports: r.ports,
                random_fully: false,
            },
            NatAction::Redirect(n) => Binding {
                manip: Manip::Dst,
                // Locally generated packets are redirected to the loopback address.
                addrs: single(iface_addr(in_iface).unwrap_or(Ipv4Addr::LOCALHOST)),
                ports: n.ports,
                random_fully: false,
            },
        };
        nat::bind(&self.gw.conntrack, pending, &b, &mut self.ports, now)
    }

    /// nat at a hook: for a new connection, the rules decide (once); for
    /// others, the connection's translation applies.
    fn nat_hook(
        &mut self,
        now: u64,
        frame: &mut [u8],
        p: &mut Pkt,
        hook: Hook,
        manip: Manip,
    ) -> Result<(), DropReason> {
        if let Conn::New(_) = p.conn {
            match self.run(now, Table::Nat, hook, p, frame) {
                Verdict::Nat(a) => {
                    let (i, o) = (p.view.in_iface, p.view.out_iface);
                    self.bind(now, p, a, i, o)?;
                    p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                }
                Verdict::Drop | Verdict::Reject(_) => return Err(DropReason::FilterDrop),
                Verdict::PolicyDrop => return Err(DropReason::PolicyDrop),
                Verdict::Accept => {}
            }
        }
        if self.tracing {
            self.translate_traced(frame, p, hook, manip);
        } else {
            Self::translate(frame, p, manip);
        }
        Ok(())
    }

    /// The filter verdict, as an action on the frame (REJECT answers first).
    fn filter(
        &mut self,
        now: u64,
        frame: &mut [u8],
        p: &mut Pkt,
        hook: Hook,
        local: bool,
        emit: &mut impl Emit,
    ) -> Result<(), DropReason> {
        match self.run(now, Table::Filter, hook, p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            Verdict::Drop => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Reject(w) => {
                self.reject(now, frame, p, w, local, emit);
                Err(DropReason::FilterReject)
            }
        }
    }

    /// mangle/filter-style hooks that may only accept or drop.
    fn accept_or_drop(
        &mut self,
        now: u64,
        frame: &[u8],
        p: &mut Pkt,
        table: Table,
        hook: Hook,
    ) -> Result<(), DropReason> {
        match self.run(now, table, hook, p, frame) {
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
        }
    }

    fn confirm(&mut self, now: u64, p: &mut Pkt) -> Result<(), DropReason> {
        if let Conn::New(pending) = &p.conn {
            match self
                .gw
                .conntrack
                .confirm_counted(now, pending, &mut self.stats.ct)
            {
                Ok(_) => {}
                Err(crate::conntrack::ConfirmError::TableFull) => {
                    return Err(DropReason::CtTableFull)
                }
                Err(_) => return Err(DropReason::CtInsertFailed),
            }
        }
        Ok(())
    }

    fn prerouting(
        &mut self,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
        info: Ipv4Info,
        emit: &mut impl Emit,
    ) -> Action {
        if self.gw.local_iface(info.src).is_some()
            || info.src.is_multicast()
            || info.src.is_loopback()
            || info.src == Ipv4Addr::BROADCAST
        {
            return self.drop(DropReason::MartianSource);
        }
        let mut p = Pkt {
            view: view_of(&info, Some(in_iface), None),
            info,
            conn: Conn::Untracked,
            ct_state: CtState::Untracked,
        };
        let r = self
            .accept_or_drop(now, frame, &mut p, Table::Raw, Hook::Prerouting)
            .and_then(|()| {
                self.track(now, &mut p, frame, true);
                self.accept_or_drop(now, frame, &mut p, Table::Mangle, Hook::Prerouting)
            })
            .and_then(|()| self.nat_hook(now, frame, &mut p, Hook::Prerouting, Manip::Dst));
        if let Err(reason) = r {
            return self.drop(reason);
        }
        // Linux routes the packet here (`ip_route_input_noref`), then checks
        // its options (`ip_rcv_options`).
        let dst = p.info.dst;
        if dst.is_multicast() {
            // No multicast routing: `ip_route_input_rcu` refuses groups the
            // gateway has not joined, and it joins none.
            return self.drop(DropReason::MulticastDst);
        }
        if dst.octets()[0] == 0 {
            return self.drop(DropReason::MartianDst);
        }
        if p.info.ihl > IPV4_MIN_HDR {
            if let Err(r) = self.options(now, frame, &p, in_iface, emit) {
                return self.drop(r);
            }
        }
        if self.gw.local_iface(dst).is_some() || self.gw.is_broadcast(dst) {
            return self.input(now, frame, &mut p, emit);
        }
        self.forward(now, in_iface, frame, &mut p, emit)
    }

    /// `ip_rcv_options`: options that do not parse get a parameter problem
    /// pointing at the byte at fault; a source route is refused (Linux's
    /// default `accept_source_route=0`).
    fn options(
        &mut self,
        now: u64,
        frame: &[u8],
        p: &Pkt,
        in_iface: u8,
        emit: &mut impl Emit,
    ) -> Result<(), DropReason> {
        let header = frame
            .get(p.info.l3..p.info.l3 + p.info.ihl)
            .unwrap_or_default();
        match wire::ipv4_options(header) {
            Ok(false) => Ok(()),
            Ok(true) => Err(DropReason::Ipv4SourceRoute),
            Err(pointer) => {
                let rest = u32::from(pointer) << 24;
                self.icmp_error(
                    now,
                    frame,
                    p,
                    wire::ICMP_PARAMETER_PROBLEM,
                    0,
                    rest,
                    in_iface,
                    emit,
                );
                Err(DropReason::Ipv4BadOptions)
            }
        }
    }

    fn forward(
        &mut self,
        now: u64,
        in_iface: u8,
        frame: &mut [u8],
        p: &mut Pkt,
        emit: &mut impl Emit,
    ) -> Action {
        // `ip_forward`: only frames sent to our MAC (PACKET_HOST).
        if is_group(frame) {
            return self.drop(DropReason::LinkBroadcast);
        }
        let Some(hop) = self.gw.routes.lookup(p.info.dst) else {
            self.icmp_error(now, frame, p, 3, 0, 0, in_iface, emit);
            return self.drop(DropReason::NoRoute);
        };
        if p.info.ttl <= 1 {
            self.icmp_error(now, frame, p, 11, 0, 0, in_iface, emit);
            return self.drop(DropReason::TtlExceeded);
        }
        let mtu = self
            .gw
            .ifaces
            .get(usize::from(hop.iface))
            .map_or(1500, |f| f.mtu);
        if p.info.total_len > mtu {
            if p.info.df {
                self.icmp_error(now, frame, p, 3, 4, u32::from(mtu), in_iface, emit);
            }
            return self.drop(DropReason::FragNeeded);
        }
        wire::dec_ttl(frame, &p.info);
        p.info.ttl -= 1;
        p.view.out_iface = Some(hop.iface);
        let r = self
            .accept_or_drop(now, frame, p, Table::Mangle, Hook::Forward)
            .and_then(|()| self.filter(now, frame, p, Hook::Forward, false, emit))
            .and_then(|()| self.postrouting(now, frame, p));
        if let Err(reason) = r {
            return self.drop(reason);
        }
        let a = self.transmit(now, frame, p, hop.iface, hop.addr, emit);
        if self.eval.record {
            if let Action::Forward { .. } = a {
                self.note_flow(p, hop.iface, hop.addr, mtu);
            }
        }
        a
    }

    /// The established-flow fast path (see [`crate::flowcache`]): a TCP or
    /// UDP packet of a flow whose traversal is cached, conntrack still
    /// ESTABLISHED as then, goes out with the cached decision, its
    /// counters bumped as the traversal bumped them. It reads the frame with
    /// [`wire::fast::peek`] rather than a full parse. None: take the full
    /// path (recording it for the cache when the frame is one the fast path
    /// takes: such a frame always reaches the end of the full path); if
    /// conntrack already ran here, its result is handed over in `pre_track`.
    #[inline(always)]
    fn fast_path(&mut self, now: u64, in_iface: u8, frame: &mut [u8]) -> Option<Action> {
        let iface = self.gw.ifaces.get(usize::from(in_iface))?;
        let pk = wire::fast::peek(frame, &iface.mac)?;
        self.eval.start_recording();
        self.flow_key = Some((in_iface, pk.tuple));
        self.flow_hit = false;
        let c = self.flows.get_mut(in_iface, &pk.tuple)?;
        self.flow_hit = true;
        if pk.ttl <= 1 || pk.total_len > c.mtu || !wire::fast::l4_checksum_ok(frame, &pk) {
            return None;
        }
        // A UDP stream conntrack found steady earlier in this credit round:
        // its tracking is a count and a timeout (`Conntrack::credit`), given
        // to conntrack when the round ends. Anything else is tracked now.
        let credited = c.credit_round == self.credit_round
            && add_credit(
                &mut self.credits,
                &mut self.credits_since,
                c,
                now,
                pk.total_len,
            );
        if !credited {
            let meta = PacketMeta {
                tuple: pk.tuple,
                len: pk.total_len,
                tcp: pk.tcp.map(|t| TcpSeg {
                    flags: t.flags,
                    seq: t.seq,
                    ack: t.ack,
                    window: t.window,
                    payload_len: t.payload_len,
                    wscale: None,
                    sack_perm: false,
                }),
                icmp: None,
            };
            match self.gw.conntrack.track_entry(now, &meta, c.entry, c.dir) {
                EntryTrack::Hit { status } => {
                    let steady = status::ASSURED | status::SEEN_REPLY;
                    if pk.tcp.is_none() && status & steady == steady {
                        // Its next packets in this round get a credit.
                        c.credit_round = self.credit_round;
                        c.credit_idx = NO_CREDIT;
                    }
                }
                EntryTrack::Other(track) => {
                    self.stats.ct.count_track(&track, meta.tuple.proto);
                    self.pre_track = Some(track);
                    return None;
                }
                EntryTrack::Miss => return None,
            }
        }
        self.stats.ct.found += 1;
        self.eval.record = false;
        self.flow_key = None;
        Some(forward_cached(c, &self.eval, frame, &pk))
    }

    /// Notes what the full path decided for a forwarded packet, for the
    /// fast path, if it may be reused (see [`crate::flowcache`]).
    fn note_flow(&mut self, p: &Pkt, out: u8, hop: Ipv4Addr, mtu: u16) {
        if self.flow_key.is_none() {
            return;
        }
        let Conn::Existing {
            dir,
            orig,
            reply,
            status,
            related: false,
            entry: Some(entry),
        } = p.conn
        else {
            return;
        };
        if p.ct_state != CtState::Established {
            return;
        }
        let (Some(&dst_mac), Some(src_mac)) = (
            self.neigh.get(&(out, hop)),
            self.gw.ifaces.get(usize::from(out)).map(|f| f.mac),
        ) else {
            return;
        };
        let rec = self.eval.recorded();
        let mut counters = [0; FlowCache::MAX_COUNTERS];
        counters[..rec.len()].copy_from_slice(rec);
        self.flow_pending = Some(Cached {
            entry,
            dir,
            edit: FlowEdit {
                dst: nat::target(&orig, &reply, status, dir, Manip::Dst),
                src: nat::target(&orig, &reply, status, dir, Manip::Src),
                dscp: p.view.dscp_changed.then_some(p.view.dscp),
            },
            out_iface: out,
            mtu,
            dst_mac,
            src_mac,
            counters,
            ncounters: rec.len() as u8,
            credit_round: 0,
            credit_idx: 0,
        });
    }

    /// After a full traversal: caches what it decided if it may be reused.
    #[inline]
    fn end_recording(&mut self) {
        if !self.eval.record {
            return;
        }
        self.eval.record = false;
        self.pre_track = None;
        let pending = self.flow_pending.take();
        if let Some((in_iface, key)) = self.flow_key.take() {
            match pending {
                Some(c) if !self.eval.volatile => self.flows.insert(in_iface, &key, c),
                // A cached decision that no longer holds.
                _ if self.flow_hit => self.flows.remove(in_iface, &key),
                _ => {}
            }
        }
    }

    fn postrouting(&mut self, now: u64, frame: &mut [u8], p: &mut Pkt) -> Result<(), DropReason> {
        self.accept_or_drop(now, frame, p, Table::Mangle, Hook::Postrouting)?;
        self.nat_hook(now, frame, p, Hook::Postrouting, Manip::Src)?;
        self.confirm(now, p)?;
        if p.view.dscp_changed {
            wire::set_dscp(frame, &p.info, p.view.dscp);
            p.info.tos = (p.view.dscp << 2) | (p.info.tos & 0x03);
        }
        Ok(())
    }

    /// Sets the MACs and sends, or holds the frame while ARP resolves `hop`.
    fn transmit(
        &mut self,
        now: u64,
        frame: &mut [u8],
        p: &Pkt,
        iface: u8,
        hop: Ipv4Addr,
        emit: &mut impl Emit,
    ) -> Action {
        let Some(our_mac) = self.gw.ifaces.get(usize::from(iface)).map(|f| f.mac) else {
            return self.drop(DropReason::NoRoute);
        };
        let len = usize::from(p.info.total_len) + p.info.l3;
        let len = len.min(frame.len());
        let known = self.neigh.get(&(iface, hop)).copied();
        match known.or_else(|| self.gw.neigh.get(iface, hop)) {
            Some(mac) => {
                wire::set_macs(frame, mac, our_mac);
                Action::Forward { iface, len }
            }
            None => match self.hold.hold(now, iface, hop, &frame[..len]) {
                Ok(first) => {
                    if self.tracing {
                        self.trace_rec.push(TraceEvent::Held { iface, hop });
                    }
                    if first {
                        self.arp_request(iface, hop, emit);
                    }
                    Action::Consumed
                }
                Err(r) => self.drop(r),
            },
        }
    }

    fn input(&mut self, now: u64, frame: &mut [u8], p: &mut Pkt, emit: &mut impl Emit) -> Action {
        let r = self
            .accept_or_drop(now, frame, p, Table::Mangle, Hook::Input)
            .and_then(|()| self.filter(now, frame, p, Hook::Input, true, emit))
            .and_then(|()| self.nat_hook(now, frame, p, Hook::Input, Manip::Src))
            .and_then(|()| self.confirm(now, p));
        if let Err(reason) = r {
            return self.drop(reason);
        }
        // The gateway answers ping to its own addresses itself.
        if let L4::Icmp(i) = p.info.l4info {
            if i.ty == 8 && i.code == 0 && self.gw.local_iface(p.info.dst).is_some() {
                let our = p.info.dst;
                wire::echo_reply_in_place(frame, &p.info, our);
                return self.output(now, frame, None, emit);
            }
        }
        let len = (p.info.l3 + usize::from(p.info.total_len)).min(frame.len());
        match p.view.in_iface {
            Some(iface) if p.info.l3 == ETH_HLEN => Action::Host { iface, len },
            _ => self.drop(DropReason::NotForUs),
        }
    }

    /// A packet the gateway host sent (read from the host path): the IPv4
    /// packet is in `buf[ETH_HLEN..ETH_HLEN + len]`; the Ethernet header in
    /// front of it is written here. It takes OUTPUT and POSTROUTING like
    /// everything the gateway originates.
    pub(crate) fn output_from_host(
        &mut self,
        now: u64,
        buf: &mut [u8],
        len: usize,
        emit: &mut impl Emit,
    ) -> Action {
        self.stats.from_host += 1;
        let Some(frame) = buf.get_mut(..ETH_HLEN + len) else {
            return self.drop(DropReason::EthTruncated);
        };
        frame[..12].fill(0);
        frame[12..ETH_HLEN].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
        let a = self.output(now, frame, None, emit);
        if let Action::Forward { .. } = a {
            self.stats.forwarded += 1;
        }
        a
    }

    /// The OUTPUT path for a packet the gateway itself sends, in `frame`
    /// (an Ethernet frame whose MACs the path sets). `attached` ties a
    /// generated answer (reset, ICMP error) to the connection of the packet
    /// it answers, as the kernel's nf_ct_attach does.
    fn output(
        &mut self,
        now: u64,
        frame: &mut [u8],
        attached: Option<Conn>,
        emit: &mut impl Emit,
    ) -> Action {
        let info = match wire::parse_ipv4(frame) {
            Ok(i) => i,
            Err(r) => return self.drop(r),
        };
        if self.tracing {
            self.trace_generated(&info);
        }
        let Some(hop) = self.gw.routes.lookup(info.dst) else {
            return self.drop(DropReason::NoRoute);
        };
        let mut p = Pkt {
            view: view_of(&info, None, Some(hop.iface)),
            info,
            conn: Conn::Untracked,
            ct_state: CtState::Untracked,
        };
        let r = self
            .accept_or_drop(now, frame, &mut p, Table::Raw, Hook::Output)
            .and_then(|()| {
                match attached {
                    Some(c) if !p.view.notrack => {
                        p.ct_state = match c {
                            Conn::Existing { related: true, .. } => CtState::Related,
                            _ => CtState::Established,
                        };
                        p.conn = c;
                        p.view.ct_bits = p.conn.ct_bits(p.ct_state);
                    }
                    _ => self.track(now, &mut p, frame, false),
                }
                self.accept_or_drop(now, frame, &mut p, Table::Mangle, Hook::Output)
            });
        if let Err(reason) = r {
            return self.drop(reason);
        }
        if let Err(reason) = self.nat_hook(now, frame, &mut p, Hook::Output, Manip::Dst) {
            return self.drop(reason);
        }
        // DNAT in OUTPUT re-routes.
        let Some(hop) = self.gw.routes.lookup(p.info.dst) else {
            return self.drop(DropReason::NoRoute);
        };
        p.view.out_iface = Some(hop.iface);
        let r = match self.run(now, Table::Filter, Hook::Output, &mut p, frame) {
            Verdict::Accept | Verdict::Nat(_) => Ok(()),
            // A REJECT of our own packet is not answered again.
            Verdict::Drop | Verdict::Reject(_) => Err(DropReason::FilterDrop),
            Verdict::PolicyDrop => Err(DropReason::PolicyDrop),
        }
        .and_then(|()| self.postrouting(now, frame, &mut p));
        if let Err(reason) = r {
            return self.drop(reason);
        }
        self.transmit(now, frame, &p, hop.iface, hop.addr, emit)
    }

    /// Runs a generated frame (built in the scratch buffer) through OUTPUT
    /// and emits it.
    fn send_generated(
        &mut self,
        now: u64,
        len: usize,
        attached: Option<Conn>,
        emit: &mut impl Emit,
    ) {
        let mut buf = std::mem::take(&mut self.scratch);
        if let Some(frame) = buf.get_mut(..len) {
            // The scratch buffer is taken: an ARP request can only be built
            // after `output` (below), so it gets a sink that drops.
            let action = self.output(now, frame, attached, &mut NoEmit);
            if self.tracing {
                self.trace_rec.generated_end(action);
            }
            match action {
                Action::Forward { iface, len } => {
                    if let Some(f) = frame.get(..len) {
                        emit.emit(iface, f);
                        self.stats.emitted += 1;
                    }
                }
                Action::Consumed => {
                    // Held for ARP inside output: the hold queue took a copy; the ARP
                    // request goes out now.
                    if let Ok(info) = wire::parse_ipv4(frame) {
                        if let Some(hop) = self.gw.routes.lookup(info.dst) {
                            self.scratch = buf;
                            self.arp_request(hop.iface, hop.addr, emit);
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
        self.scratch = buf;
    }

    /// The connection an answer to `p` belongs to: the reply direction of
    /// p's connection (pending ones included, as nf_ct_attach does).
    fn answer_conn(p: &Pkt, related: bool) -> Option<Conn> {
        let (orig, reply, st, dir, _) = p.conn.nat()?;
        Some(Conn::Existing {
            dir: dir.flip(),
            orig,
            reply,
            status: st,
            related,
            entry: None,
        })
    }

    /// An ICMP error about `p` (its current bytes in `frame`), sent from our
    /// address on the interface it came in on.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        now: u64,
        frame: &[u8],
        p: &Pkt,
        ty: u8,
        code: u8,
        rest: u32,
        in_iface: u8,
        emit: &mut impl Emit,
    ) {
        let Some(src) = self.gw.ifaces.get(usize::from(in_iface)).map(|f| f.addr) else {
            return;
        };
        self.icmp_error_from(now, frame, p, ty, code, rest, src, emit);
    }

    #[allow(clippy::too_many_arguments)]
    fn icmp_error_from(
        &mut self,
        now: u64,
        frame: &[u8],
        p: &Pkt,
        ty: u8,
        code: u8,
        rest: u32,
        src: Ipv4Addr,
        emit: &mut impl Emit,
    ) {
        if let Some(n) =
            wire::build_icmp_error(&mut self.scratch, frame, &p.info, ty, code, rest, src)
        {
            // Linux limits after the checks the builder made (no error about
            // an error, a fragment, a broadcast), towards the sender.
            if self.gw.icmp_limit.allow(now, ty, code, p.info.src).is_err() {
                return;
            }
            let conn = Self::answer_conn(p, true);
            self.send_generated(now, n, conn, emit);
        }
    }

    /// REJECT: the ICMP error or TCP reset Linux sends.
    fn reject(
        &mut self,
        now: u64,
        frame: &[u8],
        p: &Pkt,
        w: RejectWith,
        local: bool,
        emit: &mut impl Emit,
    ) {
        match w.icmp_code() {
            None => {
                if p.info.proto == IPPROTO_TCP {
                    if let Some(n) = wire::build_tcp_rst(&mut self.scratch, frame, &p.info) {
                        let conn = Self::answer_conn(p, false);
                        self.send_generated(now, n, conn, emit);
                    }
                }
            }
            Some(code) => {
                // To a local address the error comes from that address; else from
                // ours towards the sender.
                let src = if local {
                    Some(p.info.dst)
                } else {
                    self.gw
                        .routes
                        .lookup(p.info.src)
                        .and_then(|h| self.gw.ifaces.get(usize::from(h.iface)))
                        .map(|f| f.addr)
                };
                if let Some(src) = src {
                    self.icmp_error_from(now, frame, p, 3, code, 0, src, emit);
                }
            }
        }
    }
}

/// Packet tracing (see [`crate::trace`]): only reached while a trace runs.
impl Pipeline {
    /// Starts recording a packet that may match the trace filter.
    #[cold]
    fn trace_begin(&mut self, now: u64, in_iface: u8, info: &Ipv4Info) {
        let Some(s) = &self.trace else { return };
        let view = view_of(info, Some(in_iface), None);
        if !s.filter.may_match(&view, now) {
            return;
        }
        let id = rules_id(&self.rules);
        self.trace_rec
            .begin(self.index as u32, id, &view, meta_of(info).tuple);
        self.trace_view = view;
        self.tracing = true;
    }

    /// Ends the record; the session keeps it if the whole filter matches.
    #[cold]
    fn trace_end(&mut self, now: u64, action: Action) {
        self.tracing = false;
        self.trace_rec.action = action;
        if let Some(s) = &self.trace {
            s.finish(&self.trace_rec, &self.trace_view, now);
        }
    }

    /// Notes a packet the gateway generates in answer.
    #[cold]
    fn trace_generated(&mut self, info: &Ipv4Info) {
        let (flags, icmp) = match info.l4info {
            L4::Tcp(t) => (t.flags, None),
            L4::Icmp(i) => (0, Some((i.ty, i.code))),
            _ => (0, None),
        };
        self.trace_rec.generated(meta_of(info).tuple, flags, icmp);
    }

    /// [`Pipeline::run`]'s evaluation, recording each rule, chain end and
    /// policy.
    #[cold]
    fn run_traced(&mut self, now: u64, table: Table, hook: Hook, p: &mut Pkt) -> Verdict {
        let mut rec = Recorder {
            rec: &mut self.trace_rec,
            table,
            hook,
        };
        let v = self
            .rules
            .eval_observed(table, hook, &mut p.view, &mut self.eval, now, &mut rec);
        self.trace_rec.observe(&p.view);
        v
    }

    /// [`Pipeline::translate`], recording a change.
    #[cold]
    fn translate_traced(&mut self, frame: &mut [u8], p: &mut Pkt, hook: Hook, manip: Manip) {
        let before = meta_of(&p.info).tuple;
        Self::translate(frame, p, manip);
        let after = meta_of(&p.info).tuple;
        if before != after {
            self.trace_rec.push(TraceEvent::Nat {
                hook,
                before,
                after,
            });
        }
    }
}

/// An emit sink that drops everything (where nothing may be emitted, and
/// benchmarks).
pub struct NoEmit;

impl Emit for NoEmit {
    fn emit(&mut self, _: u8, _: &[u8]) {}
}

fn view_of(info: &Ipv4Info, in_iface: Option<u8>, out_iface: Option<u8>) -> PacketView {
    let mut v = PacketView {
        proto: info.proto,
        in_iface,
        out_iface,
        dscp: info.tos >> 2,
        len: info.total_len,
        ..PacketView::default()
    };
    refresh_view(&mut v, info);
    v
}

/// Brings the addresses and ports of a view in line with the packet.
fn refresh_view(v: &mut PacketView, info: &Ipv4Info) {
    v.src = u32::from(info.src);
    v.dst = u32::from(info.dst);
    match info.l4info {
        L4::Tcp(t) => {
            v.has_ports = true;
            v.sport = t.sport;
            v.dport = t.dport;
            v.tcp_flags = t.flags;
        }
        L4::Udp { sport, dport } => {
            v.has_ports = true;
            v.sport = sport;
            v.dport = dport;
        }
        L4::Icmp(i) => v.icmp = Some((i.ty, i.code)),
        L4::Other => {}
    }
}

/// Whether a frame went to a link-layer group (broadcast or multicast)
/// address: the I/G bit of its destination MAC.
#[inline]
fn is_group(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 != 0)
}

/// Why Linux's protocol error handlers would judge the packet INVALID, if
/// they would: a UDP length field below 8 or beyond the datagram
/// (`udp_error`, on every hook), then, with `verify` (arriving packets,
/// `nf_conntrack_checksum` at PREROUTING), a TCP, UDP (unless 0) or ICMP
/// checksum that does not verify.
fn l4_error(frame: &[u8], info: &Ipv4Info, verify: bool) -> Option<InvalidReason> {
    let end = info.l3 + usize::from(info.total_len);
    let Some(seg) = frame.get(info.l4..end) else {
        return verify.then_some(InvalidReason::BadChecksum);
    };
    if let L4::Udp { .. } = info.l4info {
        let udp_len = wire::udp_len(seg).map_or(0, usize::from);
        if udp_len < 8 || udp_len > seg.len() {
            return Some(InvalidReason::UdpBadLength);
        }
    }
    let ok = !verify
        || match info.l4info {
            L4::Tcp(_) => wire::checksum::transport_ok(info.src, info.dst, 6, seg),
            L4::Udp { .. } => wire::checksum::transport_ok(info.src, info.dst, 17, seg),
            L4::Icmp(_) => wire::checksum::verify(wire::checksum::sum(seg)),
            L4::Other => true,
        };
    (!ok).then_some(InvalidReason::BadChecksum)
}

/// Counts a packet of `len` bytes at `now` into the round's credit of the
/// cached flow `c` (making it on the flow's second packet in the round,
/// and noting when the round's first credit was made in `since`); false if
/// the round has no room for another credit.
#[inline]
fn add_credit(
    credits: &mut Vec<Credit>,
    since: &mut u64,
    c: &mut Cached,
    now: u64,
    len: u16,
) -> bool {
    if c.credit_idx == NO_CREDIT {
        if credits.len() >= CREDITS {
            return false;
        }
        if credits.is_empty() {
            *since = now;
        }
        c.credit_idx = credits.len() as u16;
        credits.push(Credit {
            entry: c.entry,
            dir: c.dir,
            packets: 0,
            bytes: 0,
            last: now,
        });
    }
    let Some(cr) = credits.get_mut(usize::from(c.credit_idx)) else {
        return false;
    };
    cr.packets += 1;
    cr.bytes += u64::from(len);
    cr.last = now;
    true
}

/// The fast path's decision for a packet of a cached flow, once conntrack
/// agreed: the cached rewrite, counters and next hop.
#[inline(always)]
fn forward_cached(c: &Cached, eval: &EvalState, frame: &mut [u8], pk: &wire::fast::Peek) -> Action {
    c.edit.apply(frame, pk.tuple.proto);
    for &slot in &c.counters[..usize::from(c.ncounters)] {
        eval.bump(slot, pk.total_len);
    }
    wire::set_macs(frame, c.dst_mac, c.src_mac);
    Action::Forward {
        iface: c.out_iface,
        len: (wire::ETH_HDR + usize::from(pk.total_len)).min(frame.len()),
    }
}

/// What conntrack needs of a packet.
fn meta_of(info: &Ipv4Info) -> PacketMeta {
    let (sport, dport, tcp, icmp) = match info.l4info {
        L4::Tcp(t) => (
            t.sport,
            t.dport,
            Some(TcpSeg {
                flags: t.flags,
                seq: t.seq,
                ack: t.ack,
                window: t.window,
                payload_len: t.payload_len as u32,
                wscale: t.wscale,
                sack_perm: t.sack_perm,
            }),
            None,
        ),
        L4::Udp { sport, dport } => (sport, dport, None, None),
        L4::Icmp(i) => {
            let id = if i.is_query { i.id } else { 0 };
            let inner = i.inner.map(|n| Tuple {
                src: n.src,
                dst: n.dst,
                sport: n.sport,
                dport: n.dport,
                proto: n.proto,
            });
            (
                id,
                id,
                None,
                Some(IcmpMeta {
                    ty: i.ty,
                    code: i.code,
                    is_query: i.is_query,
                    is_error: i.is_error,
                    inner,
                }),
            )
        }
        L4::Other => (0, 0, None, None),
    };
    PacketMeta {
        tuple: Tuple {
            src: info.src,
            dst: info.dst,
            sport,
            dport,
            proto: info.proto,
        },
        len: info.total_len,
        tcp,
        icmp,
    }
}
