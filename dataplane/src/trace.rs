//! Packet tracing (`xdpgw trace`, `xdpgw explain`): for packets matching a
//! filter, every table, chain and rule they pass, their conntrack state and
//! why, the NAT applied and what became of them.
//!
//! Off, it costs the workers one atomic load per batch (`Tracer::version`)
//! and a test per packet of whether a session runs (`WorkerTrace`): the
//! hooks are compiled twice, and the untraced copy records nothing. On, a worker
//! records the steps of each packet that passes the filter's cheap part
//! (addresses, ports, protocol, input interface) into a fixed-size
//! [`PacketTrace`] it owns (no allocation), checks the whole filter at the end
//! (with the packet's conntrack state and output interface known), and copies
//! the record into a bounded channel preallocated when the session starts.
//! The control plane formats records off the packet path.
//!
//! Both families are traced: a record's addresses are [`IpAddr`]s (the
//! family of its packet), and a filter holds a compiled rule for each
//! family it applies to (an IPv4 rule, an IPv6 rule, or both when the match
//! names no address of either).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::ipset::SetTable;

use crate::action::Action;
use crate::classify::{
    compile_family, AddrFamily, CMatch, CRule, CompileError, CompiledRuleSet, EvalObserver,
    MatchCx, PacketView, Verdict, V4, V6,
};
use crate::conntrack::{CtState, InvalidReason, TcpState, Track};
use crate::flow::{Addr, Tuple};
use crate::flow::{Dir, IPPROTO_TCP};
use crate::rule::{Hook, Rule, RuleSet, Table, TableRules, Target};
use crate::stateful::MatchTables;

/// Steps one packet record holds; a packet with more is marked truncated.
pub const MAX_EVENTS: usize = 48;

/// The most packets one session traces.
pub const MAX_COUNT: u32 = 10_000;

/// Records in flight between the workers and the reader.
const CHANNEL: u32 = 256;

/// One step of a packet through the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A rule matched, whatever its target (terminal, jump, LOG, MARK, ...).
    /// `chain` and `rule` index the table's chains and the chain's rules.
    Rule {
        table: Table,
        hook: Hook,
        chain: u16,
        rule: u32,
    },
    /// A user chain ended without a verdict: back to the calling chain.
    ChainEnd {
        table: Table,
        hook: Hook,
        chain: u16,
    },
    /// A built-in chain's policy decided (`drop`: policy DROP).
    Policy {
        table: Table,
        hook: Hook,
        chain: u16,
        drop: bool,
    },
    /// Connection tracking's judgement: the state, for INVALID the reason
    /// and the TCP state of the entry involved, for a known connection its
    /// TCP state after this packet and whether the packet is a reply.
    Conntrack {
        state: CtState,
        reason: Option<InvalidReason>,
        tcp: Option<TcpState>,
        reply: bool,
    },
    /// NAT changed the packet at `hook` (by a rule for a new connection, or
    /// by the connection's translation).
    Nat {
        hook: Hook,
        before: Tuple<IpAddr>,
        after: Tuple<IpAddr>,
    },
    /// The gateway generated a packet in answer (TCP reset, ICMP error,
    /// echo reply): the events up to [`TraceEvent::GeneratedEnd`] are its
    /// way through OUTPUT and POSTROUTING.
    Generated {
        tuple: Tuple<IpAddr>,
        tcp_flags: u8,
        icmp: Option<(u8, u8)>,
    },
    /// The packet waits for the next hop `hop` on `iface` to answer ARP
    /// (IPv6: neighbour discovery); it is sent when it does, dropped if it
    /// does not.
    Held { iface: u8, hop: IpAddr },
    /// What became of the generated packet.
    GeneratedEnd { action: Action },
}

/// The record of one packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketTrace {
    /// The worker that handled it.
    pub worker: u32,
    pub in_iface: u8,
    /// The packet as it arrived (its addresses say its family).
    pub tuple: Tuple<IpAddr>,
    pub tcp_flags: u8,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    pub len: u16,
    /// The output interface routing chose, if it got that far.
    pub out_iface: Option<u8>,
    /// Identifies the compiled rule set the rule indices refer to
    /// ([`rules_id`]).
    pub rules: usize,
    pub events: [TraceEvent; MAX_EVENTS],
    pub n: usize,
    /// More steps happened than [`MAX_EVENTS`].
    pub truncated: bool,
    pub action: Action,
    /// The conntrack bits the filter's `--ctstate` sees (arriving packet's).
    ct_bits: u8,
    /// Inside a generated packet's steps: they do not change the above.
    in_generated: bool,
}

impl PacketTrace {
    fn empty() -> PacketTrace {
        let blank = TraceEvent::ChainEnd {
            table: Table::Filter,
            hook: Hook::Input,
            chain: 0,
        };
        let t = Tuple {
            src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            sport: 0,
            dport: 0,
            proto: 0,
        };
        PacketTrace {
            worker: 0,
            in_iface: 0,
            tuple: t,
            tcp_flags: 0,
            icmp: None,
            len: 0,
            out_iface: None,
            rules: 0,
            events: [blank; MAX_EVENTS],
            n: 0,
            truncated: false,
            action: Action::Consumed,
            ct_bits: 0,
            in_generated: false,
        }
    }

    /// A blank record in a box (workers keep one, allocated once).
    pub fn boxed() -> Box<PacketTrace> {
        Box::new(PacketTrace::empty())
    }

    /// The recorded steps.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events[..self.n]
    }

    #[inline]
    pub(crate) fn push(&mut self, e: TraceEvent) {
        match self.events.get_mut(self.n) {
            Some(slot) => {
                *slot = e;
                self.n += 1;
            }
            None => self.truncated = true,
        }
    }

    /// Starts a record for a packet that arrived on `in_iface`.
    pub(crate) fn begin<F: AddrFamily>(
        &mut self,
        worker: u32,
        rules: usize,
        view: &PacketView<F>,
        tuple: Tuple<IpAddr>,
    ) {
        self.worker = worker;
        self.in_iface = view.in_iface.unwrap_or(0);
        self.tuple = tuple;
        self.tcp_flags = if view.has_ports && view.proto == 6 {
            view.tcp_flags
        } else {
            0
        };
        self.icmp = view.icmp;
        self.len = view.len;
        self.out_iface = None;
        self.rules = rules;
        self.n = 0;
        self.truncated = false;
        self.action = Action::Consumed;
        self.ct_bits = 0;
        self.in_generated = false;
    }

    /// Notes the arriving packet's conntrack bits and output interface (not
    /// those of packets generated in answer).
    #[inline]
    pub(crate) fn observe<F: AddrFamily>(&mut self, view: &PacketView<F>) {
        if !self.in_generated {
            self.ct_bits = view.ct_bits;
            if view.out_iface.is_some() {
                self.out_iface = view.out_iface;
            }
        }
    }

    /// Conntrack's judgement of the packet (`proto`: its IP protocol).
    pub(crate) fn conntrack<A: Addr>(&mut self, track: &Track<A>, proto: u8) {
        let tcp = |t: TcpState| (proto == IPPROTO_TCP).then_some(t);
        let e = match *track {
            Track::Existing {
                dir, state, snap, ..
            } => TraceEvent::Conntrack {
                state,
                reason: None,
                tcp: tcp(snap.tcp_state),
                reply: dir == Dir::Reply,
            },
            Track::New(_) => TraceEvent::Conntrack {
                state: CtState::New,
                reason: None,
                tcp: None,
                reply: false,
            },
            Track::Invalid { reason, tcp_state } => TraceEvent::Conntrack {
                state: CtState::Invalid,
                reason: Some(reason),
                tcp: tcp_state,
                reply: false,
            },
        };
        self.push(e);
    }

    /// The packet is not tracked (NOTRACK).
    pub(crate) fn untracked(&mut self) {
        self.push(TraceEvent::Conntrack {
            state: CtState::Untracked,
            reason: None,
            tcp: None,
            reply: false,
        });
    }

    pub(crate) fn generated(
        &mut self,
        tuple: Tuple<IpAddr>,
        tcp_flags: u8,
        icmp: Option<(u8, u8)>,
    ) {
        self.push(TraceEvent::Generated {
            tuple,
            tcp_flags,
            icmp,
        });
        self.in_generated = true;
    }

    pub(crate) fn generated_end(&mut self, action: Action) {
        self.push(TraceEvent::GeneratedEnd { action });
        self.in_generated = false;
    }

    /// The view the filter's whole rule is checked against: the packet as
    /// it arrived, with its conntrack state and output interface.
    fn final_view<F: AddrFamily>(&self, arrival: &PacketView<F>) -> PacketView<F> {
        PacketView {
            ct_bits: self.ct_bits,
            out_iface: self.out_iface,
            ..*arrival
        }
    }
}

/// Records a table's evaluation into a packet's record.
pub(crate) struct Recorder<'a> {
    pub rec: &'a mut PacketTrace,
    pub table: Table,
    pub hook: Hook,
}

impl<F: AddrFamily> EvalObserver<F> for Recorder<'_> {
    fn rule(&mut self, chain: u16, rule: usize) {
        self.rec.push(TraceEvent::Rule {
            table: self.table,
            hook: self.hook,
            chain,
            rule: rule as u32,
        });
    }
    fn chain_end(&mut self, chain: u16) {
        self.rec.push(TraceEvent::ChainEnd {
            table: self.table,
            hook: self.hook,
            chain,
        });
    }
    fn policy(&mut self, chain: u16, verdict: Verdict<F::Ip>) {
        self.rec.push(TraceEvent::Policy {
            table: self.table,
            hook: self.hook,
            chain,
            drop: verdict == Verdict::PolicyDrop,
        });
    }
}

/// The identity of a compiled rule set (of either family), as a
/// [`PacketTrace`] records it.
pub fn rules_id<F: AddrFamily>(rules: &Arc<CompiledRuleSet<F>>) -> usize {
    Arc::as_ptr(rules) as usize
}

/// A tuple with its addresses as [`IpAddr`]s (how a record keeps them).
#[inline]
pub fn ip_tuple<A: Into<IpAddr>>(t: Tuple<A>) -> Tuple<IpAddr> {
    Tuple {
        src: t.src.into(),
        dst: t.dst.into(),
        sport: t.sport,
        dport: t.dport,
        proto: t.proto,
    }
}

/// Which packets a session traces: one rule's matches (its target is
/// ignored) for each family it applies to, compiled for the gateway's
/// interfaces.
#[derive(Debug)]
pub struct TraceFilter {
    v4: Option<FamilyFilter<V4>>,
    v6: Option<FamilyFilter<V6>>,
}

/// A trace filter's rule for one family.
#[derive(Debug)]
pub struct FamilyFilter<F: AddrFamily> {
    /// Compiled as the only rule of filter FORWARD (where both `-i` and `-o`
    /// may stand).
    set: CompiledRuleSet<F>,
    /// The same rule without the matches that need conntrack state, the
    /// output interface or a token bucket: checked when a packet arrives.
    pre: CRule<F>,
}

impl<F: AddrFamily> FamilyFilter<F> {
    fn new(rule: &Rule, ifaces: &[&str]) -> Result<FamilyFilter<F>, CompileError> {
        let mut table = TableRules::empty(Table::Filter);
        let mut r = rule.clone();
        r.target = Target::Accept;
        if let Some(c) = table
            .chains
            .iter_mut()
            .find(|c| c.hook == Some(Hook::Forward))
        {
            c.rules.push(r);
        }
        let set = compile_family::<F>(
            &RuleSet {
                tables: vec![table],
            },
            ifaces,
            &SetTable::default(),
            &MatchTables::default(),
        )?;
        let full = set
            .table(Table::Filter)
            .and_then(|t| t.hook_chain(Hook::Forward))
            .and_then(|c| c.rules.first())
            .cloned()
            .ok_or(CompileError::MissingChain {
                table: Table::Filter,
                chain: "FORWARD".into(),
            })?;
        let mut pre = full;
        pre.out_iface = crate::classify::IfaceTest {
            any: true,
            ..pre.out_iface
        };
        pre.matches = pre
            .matches
            .iter()
            .filter(|m| !matches!(m, CMatch::CtState { .. } | CMatch::Limit { .. }))
            .cloned()
            .collect();
        Ok(FamilyFilter { set, pre })
    }

    #[inline]
    fn may_match(&self, arrival: &PacketView<F>, now: u64) -> bool {
        self.pre.matches(
            arrival,
            &MatchCx {
                limits: &self.set.limits,
                sets: &SetTable::EMPTY,
            },
            now,
        )
    }

    fn matches(&self, view: &PacketView<F>, now: u64) -> bool {
        self.set
            .table(Table::Filter)
            .and_then(|t| t.hook_chain(Hook::Forward))
            .and_then(|c| c.rules.first())
            .is_some_and(|r| {
                r.matches(
                    view,
                    &MatchCx {
                        limits: &self.set.limits,
                        sets: &SetTable::EMPTY,
                    },
                    now,
                )
            })
    }
}

/// What a trace filter checks a packet of family `F` against.
pub trait TracedFamily: AddrFamily {
    #[doc(hidden)]
    fn filter(f: &TraceFilter) -> Option<&FamilyFilter<Self>>;
}

impl TracedFamily for V4 {
    fn filter(f: &TraceFilter) -> Option<&FamilyFilter<V4>> {
        f.v4.as_ref()
    }
}

impl TracedFamily for V6 {
    fn filter(f: &TraceFilter) -> Option<&FamilyFilter<V6>> {
        f.v6.as_ref()
    }
}

impl TraceFilter {
    /// An IPv4 filter: `rule`'s matches (an iptables rule) for the
    /// interfaces `ifaces`.
    pub fn new(rule: &Rule, ifaces: &[&str]) -> Result<TraceFilter, CompileError> {
        TraceFilter::families(Some(rule), None, ifaces)
    }

    /// An IPv6 filter: `rule` is an ip6tables rule.
    pub fn new6(rule: &Rule, ifaces: &[&str]) -> Result<TraceFilter, CompileError> {
        TraceFilter::families(None, Some(rule), ifaces)
    }

    /// A filter for IPv4 packets by `v4` (an iptables rule) and IPv6
    /// packets by `v6` (an ip6tables rule); a family without a rule is not
    /// traced.
    pub fn families(
        v4: Option<&Rule>,
        v6: Option<&Rule>,
        ifaces: &[&str],
    ) -> Result<TraceFilter, CompileError> {
        Ok(TraceFilter {
            v4: v4.map(|r| FamilyFilter::new(r, ifaces)).transpose()?,
            v6: v6.map(|r| FamilyFilter::new(r, ifaces)).transpose()?,
        })
    }

    /// Every packet of both families.
    pub fn every_packet() -> Result<TraceFilter, CompileError> {
        let any = Rule::new(Target::None);
        TraceFilter::families(Some(&any), Some(&any), &[])
    }

    /// Whether IPv4 (IPv6) packets are traced.
    pub fn traces(&self) -> (bool, bool) {
        (self.v4.is_some(), self.v6.is_some())
    }

    /// Whether a packet as it arrived may match (no conntrack state or
    /// output interface known yet).
    #[inline]
    pub fn may_match<F: TracedFamily>(&self, arrival: &PacketView<F>, now: u64) -> bool {
        F::filter(self).is_some_and(|f| f.may_match(arrival, now))
    }

    /// Whether the packet matches, with its conntrack state and output
    /// interface.
    pub fn matches<F: TracedFamily>(&self, view: &PacketView<F>, now: u64) -> bool {
        F::filter(self).is_some_and(|f| f.matches(view, now))
    }
}

/// One running trace: its filter, how many packets are still to be traced,
/// and where the records go.
#[derive(Debug)]
pub struct TraceSession {
    pub filter: TraceFilter,
    remaining: AtomicU32,
    lost: AtomicU32,
    tx: SyncSender<PacketTrace>,
}

impl TraceSession {
    /// Takes one of the remaining packets; false when the count is used up.
    fn take(&self) -> bool {
        // Relaxed: only the count matters (each worker takes at most what is
        // left); the record itself travels through the channel.
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Packets still to be traced.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Records that matched but found the channel full (the reader fell
    /// behind): they count against the packet count and are not delivered.
    pub fn lost(&self) -> u32 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Hands a finished record over if the packet matches the whole filter
    /// and the count allows: copied into the channel's preallocated slot.
    pub(crate) fn finish<F: TracedFamily>(
        &self,
        record: &PacketTrace,
        arrival: &PacketView<F>,
        now: u64,
    ) {
        if !self.filter.matches(&record.final_view(arrival), now) || !self.take() {
            return;
        }
        if self.tx.try_send(*record).is_err() {
            // Relaxed: a statistic.
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A worker's side of tracing: the session as of its last batch (None: no
/// trace runs), the tracer version it was loaded at, and the record of the
/// packet being traced with its view as it arrived (of its family).
/// Allocated once.
pub(crate) struct WorkerTrace {
    session: Option<Arc<TraceSession>>,
    version: u64,
    record: Box<PacketTrace>,
    arrival: PacketView,
    arrival6: PacketView<V6>,
    /// The packet being traced is an IPv6 one.
    is6: bool,
}

impl WorkerTrace {
    pub(crate) fn new() -> WorkerTrace {
        WorkerTrace {
            session: None,
            version: 0,
            record: PacketTrace::boxed(),
            arrival: PacketView::default(),
            arrival6: PacketView::default(),
            is6: false,
        }
    }

    /// At a batch's beginning: picks up a session started or stopped (one
    /// atomic load when nothing changed).
    #[inline]
    pub(crate) fn refresh(&mut self, tracer: &Tracer) {
        let v = tracer.version();
        if v != self.version {
            self.version = v;
            self.session = tracer.session();
        }
    }

    /// Whether a trace runs (packets may have to be recorded).
    #[inline(always)]
    pub(crate) fn active(&self) -> bool {
        self.session.is_some()
    }

    /// Starts recording a packet that arrived as `view` (its conntrack
    /// `tuple`), if it may match the session's filter: its record.
    #[cold]
    pub(crate) fn begin(
        &mut self,
        worker: u32,
        rules: usize,
        view: &PacketView,
        tuple: Tuple,
        now: u64,
    ) -> Option<&mut PacketTrace> {
        let s = self.session.as_ref()?;
        if !s.filter.may_match(view, now) {
            return None;
        }
        self.record.begin(worker, rules, view, ip_tuple(tuple));
        self.arrival = *view;
        self.is6 = false;
        Some(&mut self.record)
    }

    /// [`WorkerTrace::begin`] for an IPv6 packet.
    #[cold]
    pub(crate) fn begin6(
        &mut self,
        worker: u32,
        rules: usize,
        view: &PacketView<V6>,
        tuple: Tuple<std::net::Ipv6Addr>,
        now: u64,
    ) -> Option<&mut PacketTrace> {
        let s = self.session.as_ref()?;
        if !s.filter.may_match(view, now) {
            return None;
        }
        self.record.begin(worker, rules, view, ip_tuple(tuple));
        self.arrival6 = *view;
        self.is6 = true;
        Some(&mut self.record)
    }

    /// Ends the record of the packet [`WorkerTrace::begin`] started; the
    /// session keeps it if the whole filter matches.
    #[cold]
    pub(crate) fn end(&mut self, now: u64, action: Action) {
        self.record.action = action;
        if let Some(s) = &self.session {
            if self.is6 {
                s.finish(&self.record, &self.arrival6, now);
            } else {
                s.finish(&self.record, &self.arrival, now);
            }
        }
    }
}

/// The gateway's trace slot: at most one session at a time.
#[derive(Default)]
pub struct Tracer {
    slot: ArcSwapOption<TraceSession>,
    /// Bumped after every change of `slot`: workers load it once per batch
    /// and look at the slot only when it moved.
    version: AtomicU64,
}

/// Why a trace could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// Another trace is running.
    Busy,
    /// The count is 0 or above [`MAX_COUNT`].
    BadCount(u32),
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceError::Busy => write!(f, "another trace is running; one at a time"),
            TraceError::BadCount(n) => write!(f, "bad packet count {n}: 1-{MAX_COUNT}"),
        }
    }
}

impl std::error::Error for TraceError {}

impl Tracer {
    /// Installs a session tracing the next `count` packets that match
    /// `filter`; the records arrive on the receiver. Workers pick it up at
    /// their next batch.
    pub fn start(
        &self,
        filter: TraceFilter,
        count: u32,
    ) -> Result<(Arc<TraceSession>, Receiver<PacketTrace>), TraceError> {
        if count == 0 || count > MAX_COUNT {
            return Err(TraceError::BadCount(count));
        }
        // Preallocated: sending never allocates.
        let (tx, rx) = sync_channel(count.min(CHANNEL) as usize);
        let s = Arc::new(TraceSession {
            filter,
            remaining: AtomicU32::new(count),
            lost: AtomicU32::new(0),
            tx,
        });
        let prev = self
            .slot
            .compare_and_swap(&None::<Arc<TraceSession>>, Some(Arc::clone(&s)));
        if prev.is_some() {
            return Err(TraceError::Busy);
        }
        // Release: a worker that sees the new version (Acquire) then loads
        // the slot and finds the session.
        self.version.fetch_add(1, Ordering::Release);
        Ok((s, rx))
    }

    /// Removes `session` if it is the one installed (workers drop it at
    /// their next batch).
    pub fn stop(&self, session: &Arc<TraceSession>) {
        let prev = self
            .slot
            .compare_and_swap(session, None::<Arc<TraceSession>>);
        if prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, session)) {
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether a trace is running.
    pub fn active(&self) -> bool {
        self.slot.load().is_some()
    }

    /// The version workers compare against (once per batch).
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        // Acquire: pairs with the Release in `start`/`stop`, so the slot
        // load that follows a changed version sees the change.
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn session(&self) -> Option<Arc<TraceSession>> {
        self.slot.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{IfaceMatch, Inv, Match, PortMatch, PortRange, TcpMatch};

    fn dport_80() -> Rule {
        let mut r = Rule::new(Target::None);
        r.protocol = Some(Inv::plain(6));
        r.out_iface = Some(Inv::plain(IfaceMatch {
            name: "wan0".into(),
        }));
        r.matches.push(Match::Tcp(TcpMatch {
            ports: PortMatch {
                sport: None,
                dport: Some(Inv::plain(PortRange::single(80))),
            },
            flags: None,
        }));
        r
    }

    fn view(dport: u16, out: Option<u8>) -> PacketView {
        PacketView {
            proto: 6,
            in_iface: Some(0),
            out_iface: out,
            has_ports: true,
            sport: 40000,
            dport,
            ..PacketView::default()
        }
    }

    #[test]
    fn the_filter_checks_what_is_known_on_arrival_then_everything() {
        let f = TraceFilter::new(&dport_80(), &["lan0", "wan0"]).expect("compiles");
        // On arrival the output interface is not known yet: not held against it.
        assert!(f.may_match(&view(80, None), 0));
        assert!(!f.may_match(&view(81, None), 0));
        assert!(f.matches(&view(80, Some(1)), 0));
        assert!(!f.matches(&view(80, Some(0)), 0));
        assert!(!f.matches(&view(80, None), 0));
    }

    #[test]
    fn a_filter_applies_to_the_families_it_was_made_for() {
        let mut r = dport_80();
        r.out_iface = None;
        let v4 = TraceFilter::new(&r, &["lan0", "wan0"]).expect("compiles");
        let v6 = TraceFilter::new6(&r, &["lan0", "wan0"]).expect("compiles");
        let both = TraceFilter::families(Some(&r), Some(&r), &["lan0", "wan0"]).expect("compiles");
        let p6 = PacketView::<V6> {
            proto: 6,
            in_iface: Some(0),
            has_ports: true,
            sport: 40000,
            dport: 80,
            ..PacketView::default()
        };
        assert_eq!(v4.traces(), (true, false));
        assert!(v4.may_match(&view(80, None), 0) && !v4.may_match(&p6, 0));
        assert!(!v6.may_match(&view(80, None), 0) && v6.may_match(&p6, 0));
        assert!(both.may_match(&view(80, None), 0) && both.matches(&p6, 0));
        assert!(!both.matches(&PacketView::<V6> { dport: 81, ..p6 }, 0));
        // An IPv6 source address: its prefix is what an IPv6 packet meets.
        let mut s6 = r.clone();
        s6.src6 = Some(Inv::plain(
            crate::rule::Ipv6Net::with_prefix("2001:db8:10::".parse().expect("addr"), 64)
                .expect("net"),
        ));
        let f = TraceFilter::new6(&s6, &[]).expect("compiles");
        let inside = u128::from(
            "2001:db8:10::2"
                .parse::<std::net::Ipv6Addr>()
                .expect("addr"),
        );
        assert!(f.may_match(&PacketView::<V6> { src: inside, ..p6 }, 0));
        assert!(!f.may_match(
            &PacketView::<V6> {
                src: inside ^ (1 << 80),
                ..p6
            },
            0
        ));
    }

    #[test]
    fn one_session_at_a_time_with_a_bounded_count() {
        let t = Tracer::default();
        let f = || TraceFilter::new(&Rule::new(Target::None), &[]).expect("compiles");
        assert_eq!(t.start(f(), 0).err(), Some(TraceError::BadCount(0)));
        assert_eq!(
            t.start(f(), MAX_COUNT + 1).err(),
            Some(TraceError::BadCount(MAX_COUNT + 1))
        );
        let v0 = t.version();
        let (s, rx) = t.start(f(), 2).expect("starts");
        assert!(t.active() && t.version() != v0);
        assert_eq!(t.start(f(), 1).err(), Some(TraceError::Busy));
        // Records count down; the third is not taken.
        let rec = PacketTrace::empty();
        for _ in 0..3 {
            s.finish(&rec, &PacketView::<V4>::default(), 0);
        }
        assert_eq!(rx.try_iter().count(), 2);
        assert_eq!((s.remaining(), s.lost()), (0, 0));
        // Stopping another session changes nothing; stopping this one frees
        // the slot.
        let v1 = t.version();
        let other = Arc::new(TraceSession {
            filter: f(),
            remaining: AtomicU32::new(0),
            lost: AtomicU32::new(0),
            tx: sync_channel(1).0,
        });
        t.stop(&other);
        assert!(t.active() && t.version() == v1);
        t.stop(&s);
        assert!(!t.active() && t.version() != v1);
        assert!(t.session().is_none());
    }

    #[test]
    fn a_record_holds_a_bounded_number_of_steps() {
        let mut r = PacketTrace::empty();
        for k in 0..MAX_EVENTS + 5 {
            r.push(TraceEvent::ChainEnd {
                table: Table::Filter,
                hook: Hook::Forward,
                chain: k as u16,
            });
        }
        assert_eq!(r.events().len(), MAX_EVENTS);
        assert!(r.truncated);
    }
}
