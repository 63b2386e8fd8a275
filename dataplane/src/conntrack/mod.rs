//! Connection tracking: the table every worker shares, and the protocol
//! trackers that judge each packet as Linux's `nf_conntrack_in` does.
//!
//! - The table is sharded by [`Tuple::hash64`] with one lock per shard. An
//!   entry is reachable by its original and its reply tuple; it lives in the
//!   shard of its original tuple, and the reply tuple's shard holds a key
//!   pointing to it (see `table.rs`). Looking a packet up takes at most two
//!   short shard locks, one after the other; only [`Conntrack::confirm`]
//!   holds two at once, taken in shard order.
//! - Storage is preallocated per shard (the slab, and a key table of fixed
//!   size that is never reallocated), so tracking packets of existing
//!   connections allocates nothing. A batch can prefetch what its lookups
//!   will touch ([`Conntrack::prefetch`]) so that their cache misses
//!   overlap.
//! - Time is always passed in (`now`, monotonic nanoseconds); nothing here
//!   reads a clock, so tests run on simulated time.
//! - Protocols: TCP (`tcp.rs`: full state table and window tracking), UDP,
//!   ICMP queries and errors, and a generic tracker for the rest.
//!
//! Facts ported from Linux 6.x net/netfilter: nf_conntrack_core.c
//! (`nf_conntrack_in`, `resolve_normal_ct`, `early_drop`, `gc_worker`,
//! `nf_conntrack_init_start`), nf_conntrack_proto_{tcp,udp,icmp}.c and
//! nf_conntrack_standalone.c (the /proc format).

mod config;
mod event;
mod key_table;
mod peek;
mod proc;
mod reason;
mod saved;
mod table;
pub mod tcp;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

pub use config::{
    nf_conntrack_max_for_memory, ConntrackConfig, MemInfo, TableLayout, Timeouts, MAX_ENTRIES,
};
pub use event::{event_line, CtEvent, EventKind};
pub use peek::{frame_tuple, frame_tuple6};
pub use proc::proc_line;
pub use reason::InvalidReason;
pub use saved::{
    Restored, SavedEntry, SavedError, SavedHeader, SavedTable, FORMAT_VERSION, HEADER_LEN,
    RECORD_LEN,
};

use crate::counter::CounterDef;

use crate::flow::{Addr, Dir, Tuple, IPPROTO_TCP, IPPROTO_UDP};
use crate::hint::prefetch::{prefetch_line, prefetch_span};
use key_table::{Key, Lines};
use table::{ShardInner, ShardStats, Slot, TcpLine, Unlink};
use tcp::TcpCt;

/// Monotonic time in nanoseconds, always passed in.
pub type Nanos = u64;

pub const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// What conntrack needs of a packet (the pipeline fills it from its parse).
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta<A: Addr = Ipv4Addr> {
    /// For ICMP queries sport = dport = query id; for ICMP errors and other
    /// protocols without ports, 0.
    pub tuple: Tuple<A>,
    /// IPv4 total length (for byte counters).
    pub len: u16,
    pub tcp: Option<TcpSeg>,
    pub icmp: Option<IcmpMeta<A>>,
}

/// The TCP header fields conntrack reads.
#[derive(Clone, Copy, Debug)]
pub struct TcpSeg {
    /// FIN=1 SYN=2 RST=4 PSH=8 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80
    /// (see [`tcp::flag`]).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload_len: u32,
    /// The window scale option, if present.
    pub wscale: Option<u8>,
    /// The SACK-permitted option is present.
    pub sack_perm: bool,
}

impl From<&crate::wire::TcpInfo> for TcpSeg {
    /// What conntrack reads of a parsed TCP header (either family's).
    #[inline]
    fn from(t: &crate::wire::TcpInfo) -> TcpSeg {
        TcpSeg {
            flags: t.flags,
            seq: t.seq,
            ack: t.ack,
            window: t.window,
            payload_len: t.payload_len as u32,
            wscale: t.wscale,
            sack_perm: t.sack_perm,
        }
    }
}

/// The ICMP header fields conntrack reads.
#[derive(Clone, Copy, Debug)]
pub struct IcmpMeta<A: Addr = Ipv4Addr> {
    pub ty: u8,
    pub code: u8,
    pub is_query: bool,
    pub is_error: bool,
    /// For errors: the quoted datagram's tuple, as quoted.
    pub inner: Option<Tuple<A>>,
}

/// A packet's conntrack state, as `-m conntrack --ctstate` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    /// The bit of this state in `crate::rule::CtStates`.
    pub fn bit(self) -> u8 {
        use crate::rule::CtStates;
        match self {
            CtState::Invalid => CtStates::INVALID,
            CtState::New => CtStates::NEW,
            CtState::Related => CtStates::RELATED,
            CtState::Established => CtStates::ESTABLISHED,
            CtState::Untracked => CtStates::UNTRACKED,
        }
    }
}

/// Entry status bits, with Linux's values (`enum ip_conntrack_status`).
pub mod status {
    pub const SEEN_REPLY: u16 = 1 << 1;
    pub const ASSURED: u16 = 1 << 2;
    pub const CONFIRMED: u16 = 1 << 3;
    pub const SRC_NAT: u16 = 1 << 4;
    pub const DST_NAT: u16 = 1 << 5;
}

/// Linux's TCP conntrack states (`enum tcp_conntrack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name Linux prints (`tcp_conntrack_names`).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    fn from_u8(v: u8) -> TcpState {
        TcpState::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(TcpState::None)
    }
}

/// A copy of an entry, taken under its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot<A: Addr = Ipv4Addr> {
    pub orig: Tuple<A>,
    pub reply: Tuple<A>,
    pub status: u16,
    /// `TcpState::None` for other protocols.
    pub tcp_state: TcpState,
    pub mark: u32,
    /// When the entry expires (absolute, like `now`).
    pub expires: Nanos,
    /// Per direction (`Dir::index`): original, reply.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// ICMP queries: the request's type and code (the reply's type is the
    /// matching reply type). 0 for other protocols.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl<A: Addr> Snapshot<A> {
    /// Whether a listing at `now` shows the entry (`conntrack -L`, a
    /// filtered `-C`): not if it has expired, even if the expiry sweep has
    /// not removed it yet (as Linux's dump skips `nf_ct_is_expired`
    /// entries).
    pub fn listed_at(&self, now: Nanos) -> bool {
        self.expires > now
    }
}

/// A handle to an entry (shard, slot, generation): valid only while the
/// entry lives; afterwards `get`/`remove` answer `None`/`false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryRef {
    shard: u32,
    slot: u32,
    gen: u32,
}

impl EntryRef {
    #[cfg(test)]
    pub(crate) fn new(shard: u32, slot: u32, gen: u32) -> EntryRef {
        EntryRef { shard, slot, gen }
    }
}

/// The result of tracking a packet.
#[derive(Clone, Copy, Debug)]
pub enum Track<A: Addr = Ipv4Addr> {
    /// The packet belongs to a confirmed entry: state Established, New for
    /// original-direction packets before any reply, or Related for ICMP
    /// errors quoting it. `snap` is the entry after this packet.
    Existing {
        entry: EntryRef,
        dir: Dir,
        state: CtState,
        snap: Snapshot<A>,
    },
    /// No entry: a new connection the pipeline may confirm after the rules
    /// (NAT may change `pending.reply` and set NAT status bits before).
    New(Pending<A>),
    /// INVALID, with why, and the TCP state of the entry involved (if any).
    Invalid {
        reason: InvalidReason,
        tcp_state: Option<TcpState>,
    },
}

impl<A: Addr> Track<A> {
    /// The packet's conntrack state.
    pub fn state(&self) -> CtState {
        match self {
            Track::Existing { state, .. } => *state,
            Track::New(_) => CtState::New,
            Track::Invalid { .. } => CtState::Invalid,
        }
    }
}

/// The result of [`Conntrack::track_entry`].
#[derive(Clone, Copy, Debug)]
pub enum EntryTrack<A: Addr = Ipv4Addr> {
    /// ESTABLISHED in the direction asked; the entry's status bits after
    /// this packet.
    Hit { status: u16 },
    /// Tracked, with another result (what `track` would have returned).
    Other(Track<A>),
    /// Not tracked: use [`Conntrack::track`].
    Miss,
}

/// What [`Conntrack::judge`] decided about a packet of an existing entry.
enum Judged {
    /// Accepted; the entry lives on. The packet's state.
    Found(CtState),
    /// Accepted, counted, then the entry deleted. The packet's state; the
    /// freed slot keeps the entry's last values until the lock is released.
    Killed(CtState),
    /// Expired or re-opened: the entry is gone, the packet is a new
    /// connection.
    Gone,
    Invalid(InvalidReason, Option<TcpState>),
}

/// The `Track` for a judged packet (`g`: the home shard, still locked).
fn track_of<A: Addr>(j: Judged, g: &ShardInner<A>, home: usize, key: Key) -> Option<Track<A>> {
    let entry = EntryRef {
        shard: home as u32,
        slot: key.slot,
        gen: key.gen,
    };
    match j {
        Judged::Found(state) | Judged::Killed(state) => Some(Track::Existing {
            entry,
            dir: key.dir,
            state,
            snap: snapshot_of(&g.slab[key.slot as usize]),
        }),
        Judged::Gone => None,
        Judged::Invalid(reason, tcp_state) => Some(Track::Invalid { reason, tcp_state }),
    }
}

/// A connection not yet in the table (Linux's unconfirmed conntrack).
#[derive(Clone, Copy, Debug)]
pub struct Pending<A: Addr = Ipv4Addr> {
    pub orig: Tuple<A>,
    pub reply: Tuple<A>,
    /// Status bits to confirm with (NAT sets SRC_NAT/DST_NAT).
    pub status: u16,
    conn: Conn,
    /// TCP: the window tracking state.
    tcp: Option<TcpCt>,
}

impl<A: Addr> Pending<A> {
    /// The TCP state the first packet put the connection in.
    pub fn tcp_state(&self) -> Option<TcpState> {
        self.conn.tcp_state()
    }

    /// The timeout the entry gets when confirmed.
    pub fn timeout(&self) -> Nanos {
        self.conn.timeout
    }

    /// The mark the entry gets when confirmed (CONNMARK on its first
    /// packet).
    pub fn mark(&self) -> u32 {
        self.conn.mark
    }

    pub fn set_mark(&mut self, mark: u32) {
        self.conn.mark = mark;
    }
}

/// Why one attempt at inserting (`try_insert`) failed.
enum Refused {
    /// A tuple is taken by a live entry.
    Clash,
    /// A shard has no room for a key or a slot.
    ShardFull,
    /// A key points into a third shard and must be checked there first.
    Check(Key),
}

/// Why `confirm` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfirmError {
    /// One of the tuples is taken by another entry (lost a race, or NAT
    /// picked a used tuple). Linux counts this as `insert_failed`.
    Clash,
    /// The table is full and no unassured entry could be dropped early.
    TableFull,
}

impl std::fmt::Display for ConfirmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfirmError::Clash => "conntrack tuple already in use",
            ConfirmError::TableFull => "conntrack table full",
        })
    }
}

impl std::error::Error for ConfirmError {}

/// Counters, summed over shards (Linux's `conntrack -S` plus reasons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Entries in the table now.
    pub entries: usize,
    /// Packets of an existing entry.
    pub found: u64,
    /// ICMP errors related to an entry.
    pub related: u64,
    /// TCP segments accepted without updating state (sIG, out of window but
    /// harmless).
    pub ignored: u64,
    /// INVALID packets, total and per `InvalidReason` (index by `as usize`).
    pub invalid: u64,
    pub invalid_by_reason: [u64; InvalidReason::COUNT],
    /// Entries confirmed.
    pub insert: u64,
    /// Confirms that clashed.
    pub insert_failed: u64,
    /// Confirms refused because the table was full.
    pub drop: u64,
    /// Unassured entries evicted to make room (confirm, or gc under pressure).
    pub early_drop: u64,
    /// Entries removed because they timed out.
    pub expired: u64,
    /// Entries deleted otherwise (`remove`, TCP re-open, RST kill).
    pub deleted: u64,
}

impl CtStats {
    pub fn invalid_count(&self, r: InvalidReason) -> u64 {
        self.invalid_by_reason[r as usize]
    }
}

crate::counter_set! {
    /// One worker's conntrack counters (`conntrack -S`, one line per worker
    /// as Linux prints one per CPU): plain integers the worker alone writes,
    /// counted from what [`Conntrack::track`] and
    /// [`Conntrack::confirm_counted`] tell it. How the views show them:
    /// [`CtCounters::COUNTERS`].
    #[derive(Copy)]
    pub struct CtCounters {
        /// Packets of an existing entry (ICMP errors related to one excluded).
        pub found: u64,
        /// Packets that may open a connection.
        pub new: u64,
        /// ICMP errors related to an entry.
        pub related: u64,
        /// INVALID packets per reason (index by `as usize`); Linux counts the
        /// ICMP error handler's refusals as `error`, the rest as `invalid`
        /// ([`CtCounters::is_error`]).
        pub invalid_by_reason: [u64; InvalidReason::COUNT],
        /// Of those, ICMP packets with a bad checksum (an `error` in Linux).
        pub icmp_bad_checksum: u64,
        pub insert: u64,
        pub insert_failed: u64,
        pub drop: u64,
        pub early_drop: u64,
        /// Confirms tried again after finding a stale key of another shard.
        pub search_restart: u64,
    }
}

impl CtCounters {
    /// The counters as `conntrack -S` (key: its name there, in the
    /// kernel's order) and the metrics show them; the INVALID packets per
    /// reason come on their own ([`InvalidReason::ALL`]).
    pub const COUNTERS: [CounterDef<CtCounters>; 9] = [
        CounterDef {
            key: Some("found"),
            label: "found",
            metric: Some("conntrack_found_total"),
            help: "Packets of an existing connection (conntrack -S found).",
            part: false,
            get: |c| c.found,
        },
        CounterDef {
            key: None,
            label: "new",
            metric: Some("conntrack_new_total"),
            help: "Packets that may open a connection.",
            part: false,
            get: |c| c.new,
        },
        CounterDef {
            key: Some("invalid"),
            label: "invalid",
            metric: None,
            help: "INVALID packets other than those the ICMP error handler refused.",
            part: false,
            get: CtCounters::invalid,
        },
        CounterDef {
            key: Some("insert"),
            label: "insert",
            metric: Some("conntrack_insert_total"),
            help: "Entries confirmed (conntrack -S insert).",
            part: false,
            get: |c| c.insert,
        },
        CounterDef {
            key: Some("insert_failed"),
            label: "insert_failed",
            metric: Some("conntrack_insert_failed_total"),
            help: "Confirms that clashed with an entry (conntrack -S insert_failed).",
            part: false,
            get: |c| c.insert_failed,
        },
        CounterDef {
            key: Some("drop"),
            label: "drop",
            metric: Some("conntrack_drop_total"),
            help: "Confirms refused because the table was full (conntrack -S drop).",
            part: false,
            get: |c| c.drop,
        },
        CounterDef {
            key: Some("early_drop"),
            label: "early_drop",
            metric: Some("conntrack_early_drop_total"),
            help: "Unassured entries evicted to make room (conntrack -S early_drop).",
            part: false,
            get: |c| c.early_drop,
        },
        CounterDef {
            key: Some("error"),
            label: "error",
            metric: Some("conntrack_error_total"),
            help: "ICMP packets the ICMP error handler refused (conntrack -S error).",
            part: false,
            get: CtCounters::error,
        },
        CounterDef {
            key: Some("search_restart"),
            label: "search_restart",
            metric: Some("conntrack_search_restart_total"),
            help: "Confirms retried after a stale key (conntrack -S search_restart).",
            part: false,
            get: |c| c.search_restart,
        },
    ];

    /// Whether Linux counts an INVALID of this reason under `error`
    /// (`nf_conntrack_handle_icmp` failing) rather than `invalid`.
    pub fn is_error(r: InvalidReason) -> bool {
        matches!(
            r,
            InvalidReason::IcmpBadType
                | InvalidReason::IcmpErrorNoInner
                | InvalidReason::IcmpErrorNoEntry
                | InvalidReason::IcmpErrorDaddrMismatch
        )
    }

    /// Counts a packet's tracking result (`proto`: its IP protocol).
    #[inline]
    pub fn count_track<A: Addr>(&mut self, t: &Track<A>, proto: u8) {
        match t {
            Track::Existing {
                state: CtState::Related,
                ..
            } => self.related += 1,
            Track::Existing { .. } => self.found += 1,
            Track::New(_) => self.new += 1,
            Track::Invalid { reason, .. } => {
                self.invalid_by_reason[*reason as usize] += 1;
                if proto == A::ICMP && *reason == InvalidReason::BadChecksum {
                    self.icmp_bad_checksum += 1;
                }
            }
        }
    }

    pub fn invalid_count(&self, r: InvalidReason) -> u64 {
        self.invalid_by_reason[r as usize]
    }

    /// Linux's `invalid`: INVALID packets other than `error`s.
    pub fn invalid(&self) -> u64 {
        self.invalid_all() - self.error()
    }

    /// Every INVALID packet.
    pub fn invalid_all(&self) -> u64 {
        self.invalid_by_reason.iter().sum()
    }

    /// Linux's `error`: packets the ICMP error handler refused.
    pub fn error(&self) -> u64 {
        InvalidReason::ALL
            .iter()
            .filter(|r| Self::is_error(**r))
            .map(|r| self.invalid_count(*r))
            .sum::<u64>()
            + self.icmp_bad_checksum
    }
}

/// Events each shard holds between two drains while someone listens.
pub const EVENT_RING_PER_SHARD: usize = 64;

// ---------------------------------------------------------------------------
// Private entry state.

/// Protocol-specific state of an entry (for TCP only the state: the
/// window tracking lives in the shard's `tcp`, a line of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp(TcpState),
    /// `stream_ts`: two seconds after creation; a reply seen later makes a
    /// stream (120 s, ASSURED).
    Udp {
        stream_ts: Nanos,
    },
    Icmp {
        ty: u8,
        code: u8,
    },
    Generic,
}

/// An entry's mutable state. `timeout` is absolute once confirmed, relative
/// while pending (Linux adds `now` at confirm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Conn {
    status: u16,
    mark: u32,
    timeout: Nanos,
    packets: [u64; 2],
    bytes: [u64; 2],
    proto: Proto,
}

impl Conn {
    fn tcp_state(&self) -> Option<TcpState> {
        match self.proto {
            Proto::Tcp(state) => Some(state),
            _ => None,
        }
    }

    /// `gc_worker_can_early_drop` (`tcp`: the entry's TCP line).
    fn can_early_drop(&self, tcp: &TcpLine) -> bool {
        self.status & status::ASSURED == 0
            || matches!(self.proto, Proto::Tcp(_)) && tcp.0.is_some_and(|ct| ct.can_early_drop())
    }

    fn account(&mut self, d: usize, len: u16) {
        self.packets[d] += 1;
        self.bytes[d] += u64::from(len);
    }
}

/// What a protocol tracker decided about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Accepted: count it and set the timeout to `now` + this.
    Refresh(Nanos),
    /// Accepted without touching counters or timeout (`ignored`: an sIG or
    /// harmless out-of-window TCP segment).
    Pass {
        ignored: bool,
    },
    /// Accepted and counted, then the entry is deleted.
    Kill,
    /// Delete the entry and track the packet as a new connection.
    Reopen,
    Invalid(InvalidReason),
}

/// The judging knobs of `ConntrackConfig`, as one packet's tracking reads
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Policy {
    tcp_loose: bool,
    tcp_be_liberal: bool,
    tcp_max_retrans: u8,
    tcp_ignore_invalid_rst: bool,
    timeouts: Timeouts,
}

impl Policy {
    fn of(cfg: &ConntrackConfig) -> Policy {
        Policy {
            tcp_loose: cfg.tcp_loose,
            tcp_be_liberal: cfg.tcp_be_liberal,
            tcp_max_retrans: cfg.tcp_max_retrans,
            tcp_ignore_invalid_rst: cfg.tcp_ignore_invalid_rst,
            timeouts: cfg.timeouts,
        }
    }
}

/// The knobs as the table keeps them: changed while it runs
/// ([`Conntrack::set_policy`]), as Linux's sysctls are, and read whole at
/// each use. Relaxed: each value stands alone (a packet judged with a mix
/// of old and new values during a change is judged as Linux may judge it,
/// since sysctls change one at a time).
struct LivePolicy {
    flags: AtomicU8,
    tcp_max_retrans: AtomicU8,
    timeouts: [AtomicU64; Timeouts::COUNT],
}

impl LivePolicy {
    const LOOSE: u8 = 1;
    const LIBERAL: u8 = 2;
    const IGNORE_INVALID_RST: u8 = 4;

    fn new(p: &Policy) -> LivePolicy {
        let live = LivePolicy {
            flags: AtomicU8::new(0),
            tcp_max_retrans: AtomicU8::new(0),
            timeouts: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        live.store(p);
        live
    }

    fn store(&self, p: &Policy) {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        let flags = bit(p.tcp_loose, Self::LOOSE)
            | bit(p.tcp_be_liberal, Self::LIBERAL)
            | bit(p.tcp_ignore_invalid_rst, Self::IGNORE_INVALID_RST);
        self.flags.store(flags, Ordering::Relaxed);
        self.tcp_max_retrans
            .store(p.tcp_max_retrans, Ordering::Relaxed);
        for (a, v) in self.timeouts.iter().zip(p.timeouts.to_array()) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// Indices of single timeouts ([`Timeouts::to_array`]'s order), read
    /// alone where a packet needs only one.
    const UDP: usize = 11;
    const UDP_STREAM: usize = 12;
    const ICMP: usize = 13;
    const GENERIC: usize = 14;

    #[inline]
    fn timeout(&self, i: usize) -> Nanos {
        self.timeouts[i].load(Ordering::Relaxed)
    }

    #[inline]
    fn load(&self) -> Policy {
        let flags = self.flags.load(Ordering::Relaxed);
        Policy {
            tcp_loose: flags & Self::LOOSE != 0,
            tcp_be_liberal: flags & Self::LIBERAL != 0,
            tcp_max_retrans: self.tcp_max_retrans.load(Ordering::Relaxed),
            tcp_ignore_invalid_rst: flags & Self::IGNORE_INVALID_RST != 0,
            timeouts: Timeouts::from_array(std::array::from_fn(|i| {
                self.timeouts[i].load(Ordering::Relaxed)
            })),
        }
    }
}

/// The most slots a worker's paced expiry sweeps per second
/// ([`Conntrack::sweep_slots`]): about 25 ms of a core's time.
pub const GC_MAX_SLOTS_PER_SEC: usize = 1 << 20;

/// [`Conntrack::sweep_slots`] for a table of `max` entries holding `len`:
/// from 90 % full on, the whole table a second whatever its size (as
/// Linux's `gc_worker` runs again at once while it keeps finding expired
/// entries), so that expired entries make room before early drop has to
/// evict live ones.
fn sweep_slots(max: usize, len: usize, since: Nanos) -> usize {
    const SEC: u128 = 1_000_000_000;
    let per_sec = if len >= max / 10 * 9 {
        max
    } else {
        max.min(GC_MAX_SLOTS_PER_SEC)
    } as u128;
    (u128::from(since) * per_sec / SEC) as usize
}

/// How many neighbouring shards `early_drop` looks at (Linux:
/// `NF_CT_EVICTION_RANGE` buckets).
const EVICTION_RANGE: usize = 8;
/// Slots scanned per shard by `early_drop` (Linux scans one bucket, about
/// two entries; a shard holds hundreds, so look at a short window of it).
const EARLY_DROP_SCAN: usize = 16;
/// Stale reply keys `gc` collects under one lock before unlinking them.
const GC_BATCH: usize = 32;

#[repr(align(128))]
struct Shard<A: Addr = Ipv4Addr> {
    inner: spin::mutex::SpinMutex<ShardInner<A>>,
    stats: ShardStats,
}

/// What prefetching needs to know of a shard without its lock, kept apart
/// from the shards (384 bytes each, 384 KiB for 1,024) in 40 bytes, so
/// that the whole array stays cached and a prefetch's address costs no
/// miss of its own.
struct Hint {
    /// Where the shard's key table lies (fixed once built).
    key_lines: Lines,
    /// The address of the slot the shard's next confirm takes (0: none),
    /// kept up to date under the lock. Relaxed: a hint; nothing is read
    /// through it.
    next_slot: AtomicUsize,
    /// Where the shard's slab lay when it was built, and its capacity: for
    /// prefetching a known entry (should the slab ever grow past its
    /// preallocation, the address is stale and the prefetch is wasted,
    /// nothing else).
    slab_base: usize,
    slab_cap: usize,
    /// The size of one slot (it depends on the family).
    slot_size: usize,
}

impl Hint {
    fn slab_bytes(&self) -> usize {
        self.slab_cap * self.slot_size
    }

    /// The memory of its shard's slab and key table.
    fn bytes(&self) -> usize {
        self.slab_bytes() + self.key_lines.span().1
    }
}

/// Tables from this size on ask for huge pages (`hint::hugemem`).
const HUGE_PAGES_FROM: usize = 16 << 20;

#[derive(Default)]
struct GcCursor {
    shard: usize,
    slot: usize,
}

/// Where a walk over the table ([`Conntrack::walk`]) has got to; the
/// default starts at the beginning.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkCursor {
    shard: usize,
    slot: usize,
}

/// The connection-tracking table, shared by all workers (`Arc<Conntrack<A>>`).
pub struct Conntrack<A: Addr = Ipv4Addr> {
    shards: Box<[Shard<A>]>,
    /// One per shard, same index.
    hints: Box<[Hint]>,
    mask: usize,
    max: usize,
    layout: TableLayout,
    /// Entries in the table plus confirms in progress (Linux's `cnet->count`).
    /// Relaxed: a capacity heuristic only; the entries themselves are
    /// published under the shard locks.
    /// Shared by the two families' tables, which have one maximum as
    /// Linux's single table has ([`Conntrack::new6`]).
    count: Arc<AtomicUsize>,
    /// Entries deleted by the control plane so far ([`Conntrack::remove`]).
    /// Workers read it once per batch: a flow whose entry is deleted must
    /// not go on being forwarded on a decision cached from it. Relaxed: it
    /// only tells them to look at the entries again.
    removals: AtomicU64,
    /// Set when a confirm found the table full: gc then evicts unassured and
    /// closing entries while above 95% (Linux's `gc_work.early_drop`).
    /// Relaxed: a hint, no data hangs off it.
    pressure: AtomicBool,
    /// The secret the table's hash is keyed with ([`Conntrack::hash`]),
    /// drawn when the table is made.
    hash_key: [u64; 2],
    gc_cursor: Mutex<GcCursor>,
    /// Event listeners (`events_subscribe`); the shards have event rings
    /// while this is above 0. Control plane only.
    listeners: Mutex<usize>,
    pol: LivePolicy,
}

/// A secret for keying a table's hash: std's `RandomState` draws its keys
/// from the operating system's random source (once per process, then
/// varied per instance).
fn secret() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let draw = |tag: u64| {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(tag);
        h.finish()
    };
    [draw(0), draw(1)]
}

impl Conntrack<Ipv4Addr> {
    /// The IPv4 table.
    pub fn new(cfg: ConntrackConfig) -> Conntrack<Ipv4Addr> {
        Conntrack::build(
            cfg.layout(),
            &Policy::of(&cfg),
            Arc::new(AtomicUsize::new(0)),
        )
    }
}

impl Conntrack<Ipv6Addr> {
    /// The IPv6 table beside `v4`: the same configuration, and the
    /// maximum shared (`nf_conntrack_max` counts entries of both families;
    /// either table can hold all of them, so each is laid out for it).
    pub fn new6(v4: &Conntrack<Ipv4Addr>) -> Conntrack<Ipv6Addr> {
        Conntrack::build(v4.layout, &v4.pol.load(), v4.count.clone())
    }
}

impl<A: Addr> Conntrack<A> {
    fn build(layout: TableLayout, pol: &Policy, count: Arc<AtomicUsize>) -> Conntrack<A> {
        let nshards = layout.shards;
        let mut hints = Vec::with_capacity(nshards);
        let shards = (0..nshards)
            .map(|i| {
                let inner = ShardInner::new(i, &layout);
                hints.push(Hint {
                    key_lines: inner.key_lines(),
                    next_slot: AtomicUsize::new(inner.next_slot_addr()),
                    slab_base: inner.slab.as_ptr() as usize,
                    slab_cap: inner.slab.capacity(),
                    slot_size: std::mem::size_of::<Slot<A>>(),
                });
                Shard {
                    inner: spin::mutex::SpinMutex::new(inner),
                    stats: ShardStats::default(),
                }
            })
            .collect::<Box<[Shard<A>]>>();
        let hints = hints.into_boxed_slice();
        // A table of millions of entries read at random misses the TLB on
        // nearly every lookup with 4 KiB pages; with 2 MiB pages its whole
        // memory fits the TLB. Below a few MiB it fits anyway.
        let bytes: usize = hints.iter().map(Hint::bytes).sum();
        if bytes >= HUGE_PAGES_FROM {
            for h in hints.iter() {
                let (keys, keys_len) = h.key_lines.span();
                crate::hint::hugemem::advise_huge(keys, keys_len);
                crate::hint::hugemem::advise_huge(h.slab_base, h.slab_bytes());
            }
        }
        Conntrack {
            shards,
            hints,
            mask: nshards - 1,
            max: layout.max_entries,
            layout,
            count,
            removals: AtomicU64::new(0),
            pressure: AtomicBool::new(false),
            hash_key: secret(),
            gc_cursor: Mutex::new(GcCursor::default()),
            listeners: Mutex::new(0),
            pol: LivePolicy::new(pol),
        }
    }

    /// The configured `nf_conntrack_max`.
    pub fn max_entries(&self) -> usize {
        self.max
    }

    /// `nf_conntrack_buckets`: the key tables' buckets in all.
    pub fn buckets(&self) -> usize {
        self.layout.buckets()
    }

    /// How the table is laid out (shards, slots, buckets, bytes).
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    /// A tuple's hash in this table: keyed with the table's secret (see
    /// [`Tuple::hash_keyed`]), so that an outsider cannot choose tuples
    /// that share a bucket or a shard. [`Conntrack::prefetch`] takes it.
    #[inline]
    pub fn hash(&self, t: &Tuple<A>) -> u64 {
        t.hash_keyed(self.hash_key)
    }

    /// Changes how packets are judged from now on: the `tcp_*` knobs and
    /// the timeouts of `cfg` (its sizes stay), as writing Linux's sysctls
    /// does. An entry's timeout changes when its next packet refreshes it.
    pub fn set_policy(&self, cfg: &ConntrackConfig) {
        self.pol.store(&Policy::of(cfg));
    }

    /// Bits 32.. pick the shard: the key table uses the low 32 bits for
    /// the bucket, so the two stay independent.
    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        ((hash >> 32) as usize) & self.mask
    }

    /// Takes shard `i`'s lock. A spin lock, as the kernel's conntrack
    /// locks are: held for a few hundred nanoseconds at most, and its
    /// release is a plain store where a futex mutex's is a locked
    /// exchange (a new connection takes four locks: measured +6 %). A
    /// waiter that spins long (the holder was preempted: the control
    /// thread listing the table, say) yields its CPU between looks.
    #[inline]
    fn lock(&self, i: usize) -> spin::mutex::SpinMutexGuard<'_, ShardInner<A>> {
        let m = &self.shards[i].inner;
        let mut spins = 0u32;
        loop {
            if let Some(g) = m.try_lock() {
                return g;
            }
            // Read until it looks free: no writes to the line meanwhile.
            while m.is_locked() {
                spins = spins.saturating_add(1);
                if spins < 256 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    fn stats_of(&self, i: usize) -> &ShardStats {
        &self.shards[i].stats
    }

    /// Starts loading what a lookup of a tuple with this hash
    /// ([`Tuple::hash64`]) will touch first: its home bucket (the shards'
    /// locks, a few hundred kilobytes together, stay cached). Reads nothing
    /// and takes no lock: call it for every packet of a batch before
    /// processing them, so that their cache misses overlap.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.hints[self.shard_of(hash)].key_lines.prefetch(hash);
    }

    /// [`Conntrack::prefetch`] for a packet that may open a connection:
    /// also the slot its confirm would take.
    #[inline]
    pub fn prefetch_new(&self, hash: u64) {
        let h = &self.hints[self.shard_of(hash)];
        h.key_lines.prefetch(hash);
        // Relaxed: see `next_slot`.
        let at = h.next_slot.load(Ordering::Relaxed);
        if at != 0 {
            prefetch_span(at, std::mem::size_of::<Slot<A>>());
        }
    }

    /// Starts loading what tracking a packet of the known entry `e` touches
    /// ([`Conntrack::track_entry`]): its shard's lock and its slot. Reads
    /// nothing and takes no lock.
    #[inline]
    pub fn prefetch_entry(&self, e: EntryRef) {
        let (Some(sh), Some(h)) = (
            self.shards.get(e.shard as usize),
            self.hints.get(e.shard as usize),
        ) else {
            return;
        };
        prefetch_line(sh as *const Shard<A> as usize);
        let slot = e.slot as usize;
        if slot < h.slab_cap {
            let size = std::mem::size_of::<Slot<A>>();
            prefetch_span(h.slab_base + slot * size, size);
        }
    }

    /// A packet Linux's protocol error handlers refuse (`udp_error`,
    /// `tcp_error`, `icmp_error`: a bad length, a transport checksum that
    /// does not verify at PREROUTING): INVALID for `reason`, before any
    /// lookup.
    pub fn protocol_error(&self, t: &Tuple<A>, reason: InvalidReason) -> Track<A> {
        self.invalid(self.shard_of(self.hash(t)), reason, None)
    }

    fn invalid(
        &self,
        shard: usize,
        reason: InvalidReason,
        tcp_state: Option<TcpState>,
    ) -> Track<A> {
        ShardStats::inc(&self.stats_of(shard).invalid[reason as usize]);
        Track::Invalid { reason, tcp_state }
    }

    /// Frees a slot under its home shard's lock, with a DESTROY event when
    /// someone listens (`at`: the caller's `now`; `None` from the control
    /// plane).
    fn free_locked(
        &self,
        g: &mut ShardInner<A>,
        slot: u32,
        at: Option<Nanos>,
    ) -> Option<Unlink<A>> {
        // Relaxed: see `count`.
        self.count.fetch_sub(1, Ordering::Relaxed);
        if g.events.is_some() {
            record(g, EventKind::Destroy, slot, at, true);
        }
        let unlink = g.free(slot, |t| {
            let h = self.hash(t);
            (h, self.shard_of(h))
        });
        self.note_next_slot(g);
        unlink
    }

    /// Publishes where `g`'s next confirm puts its entry (see `next_slot`).
    #[inline]
    fn note_next_slot(&self, g: &ShardInner<A>) {
        if let Some(h) = self.hints.get(g.idx()) {
            h.next_slot.store(g.next_slot_addr(), Ordering::Relaxed);
        }
    }

    /// Starts recording events for one more listener: the first gives every
    /// shard its ring (allocated here, on the caller's thread).
    pub fn events_subscribe(&self) {
        let mut n = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *n += 1;
        if *n == 1 {
            for i in 0..self.shards.len() {
                let ring = Box::new(event::EventRing::new(EVENT_RING_PER_SHARD));
                self.lock(i).events = Some(ring);
            }
        }
    }

    /// One listener less: the last one's leaving stops recording and frees
    /// the rings.
    pub fn events_unsubscribe(&self) {
        let mut n = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            for i in 0..self.shards.len() {
                let ring = self.lock(i).events.take();
                drop(ring);
            }
        }
    }

    /// Moves the recorded events to `out` (one shard lock at a time, in
    /// shard order; within a shard, and so for any one entry, in the order
    /// they happened) and returns how many were lost to full rings.
    pub fn events_drain(&self, out: &mut Vec<CtEvent<A>>) -> u64 {
        let mut lost = 0;
        for i in 0..self.shards.len() {
            let mut g = self.lock(i);
            if let Some(r) = g.events.as_deref_mut() {
                lost += r.drain_into(out);
            }
        }
        lost
    }

    /// Removes a freed entry's reply key from its shard (second lock, taken
    /// after the home lock was released).
    fn unlink(&self, u: Unlink<A>) {
        let mut g = self.lock(u.shard);
        g.remove_key(u.hash, &u.tuple, u.key);
    }

    /// Finds `t`'s entry and runs `f` on it under its home shard's lock
    /// (taking the tuple's shard lock first if the entry lives elsewhere,
    /// never both at once). `f` may free the entry and hand back the reply
    /// key to unlink. `None` if absent (or only a stale key is left).
    /// `miss` runs (under the tuple's shard lock) when there is no key.
    fn with_entry<R>(
        &self,
        hash: u64,
        t: &Tuple<A>,
        f: impl FnOnce(&mut ShardInner<A>, usize, Key) -> (R, Option<Unlink<A>>),
        miss: impl FnOnce(&ShardInner<A>),
    ) -> Option<R> {
        let s = self.shard_of(hash);
        let mut g = self.lock(s);
        let Some(key) = g.find(hash, t) else {
            miss(&g);
            return None;
        };
        let home = key.home as usize;
        if home != s {
            drop(g);
            g = self.lock(home);
        }
        let key = g.resolve(key)?;
        let (r, unlink) = f(&mut g, home, key);
        drop(g);
        if let Some(u) = unlink {
            self.unlink(u);
        }
        Some(r)
    }

    /// Looks the packet up and runs its protocol's state machine, as Linux's
    /// `nf_conntrack_in`: updates counters, timeout, SEEN_REPLY and ASSURED.
    /// ICMP errors quoting an entry (either direction) are `Existing` with
    /// state Related. A SYN that re-opens a closed TCP connection deletes the
    /// old entry and is `New`. Expired entries found here are removed and
    /// treated as absent.
    pub fn track(&self, now: Nanos, pkt: &PacketMeta<A>) -> Track<A> {
        let t = &pkt.tuple;
        let hash = self.hash(t);
        let s = self.shard_of(hash);
        match t.proto {
            IPPROTO_TCP => match &pkt.tcp {
                None => return self.invalid(s, InvalidReason::MissingHeader, None),
                Some(seg) if !tcp::valid_flags(seg.flags) => {
                    return self.invalid(s, InvalidReason::TcpBadFlags, None)
                }
                Some(_) => {}
            },
            p if p == A::ICMP => match &pkt.icmp {
                None => return self.invalid(s, InvalidReason::MissingHeader, None),
                Some(ic) if ic.ty > A::ICMP_MAX_TYPE => {
                    return self.invalid(s, InvalidReason::IcmpBadType, None)
                }
                Some(ic) if A::icmp_is_error(ic.ty) => {
                    return self.track_icmp_error(now, s, pkt, ic)
                }
                Some(_) => {}
            },
            _ => {}
        }
        // On a miss, the slot a confirm would take starts loading while the
        // rules run.
        let found = self.with_entry(
            hash,
            t,
            |g, home, key| self.process(now, pkt, g, home, key),
            |g| g.prefetch_alloc(t.proto == IPPROTO_TCP),
        );
        match found {
            Some(Some(track)) => track,
            // Absent, expired, or a TCP re-open (the old entry is gone).
            Some(None) | None => self.new_conn(now, pkt, s),
        }
    }

    /// A packet of an existing entry, under its home lock. `None`: the entry
    /// was removed (expired or re-opened) and the packet is a new connection.
    fn process(
        &self,
        now: Nanos,
        pkt: &PacketMeta<A>,
        g: &mut ShardInner<A>,
        home: usize,
        key: Key,
    ) -> (Option<Track<A>>, Option<Unlink<A>>) {
        let (judged, unlink) = self.judge(now, pkt, g, home, key);
        (track_of(judged, g, home, key), unlink)
    }

    /// Tracks a packet of the entry `e` (the one it belonged to before, in
    /// direction `dir`), skipping the lookup: the established-flow fast path.
    /// Changes the entry exactly as [`Conntrack::track`] would. `Miss`: the
    /// entry is gone or expired, or the packet needs a check the lookup
    /// makes; nothing was changed or counted, call `track`.
    #[inline]
    pub fn track_entry(
        &self,
        now: Nanos,
        pkt: &PacketMeta<A>,
        e: EntryRef,
        dir: Dir,
    ) -> EntryTrack<A> {
        if pkt.tcp.is_some_and(|seg| !tcp::valid_flags(seg.flags)) {
            return EntryTrack::Miss;
        }
        let home = e.shard as usize;
        if home >= self.shards.len() {
            return EntryTrack::Miss;
        }
        let mut g = self.lock(home);
        match g.slab.get(e.slot as usize) {
            Some(s) if s.live && s.gen == e.gen && s.conn.timeout > now => {}
            _ => return EntryTrack::Miss,
        }
        let key = Key {
            home: e.shard,
            slot: e.slot,
            gen: e.gen,
            dir,
        };
        let (judged, unlink) = self.judge(now, pkt, &mut g, home, key);
        let r = match judged {
            Judged::Found(CtState::Established) => EntryTrack::Hit {
                status: g.slab[e.slot as usize].conn.status,
            },
            j => match track_of(j, &g, home, key) {
                Some(t) => EntryTrack::Other(t),
                None => EntryTrack::Miss,
            },
        };
        drop(g);
        if let Some(u) = unlink {
            self.unlink(u);
        }
        r
    }

    /// Credits `packets` more packets (`bytes` bytes, the last at `last`)
    /// in direction `dir` to the UDP entry `e`, which [`Conntrack::track_entry`]
    /// found ASSURED with a reply seen before the first of them: for such an
    /// entry each packet's tracking only counts it and sets the timeout to
    /// its time plus the stream timeout, so crediting them together leaves
    /// the entry as tracking them one by one would have (the fast path does
    /// this once per batch for the packets of a flow after its first).
    /// Nothing if the entry has gone meanwhile.
    pub fn credit(&self, e: EntryRef, dir: Dir, packets: u64, bytes: u64, last: Nanos) {
        let home = e.shard as usize;
        if home >= self.shards.len() {
            return;
        }
        let mut g = self.lock(home);
        let Some(slot) = g.slab.get_mut(e.slot as usize) else {
            return;
        };
        let steady = status::ASSURED | status::SEEN_REPLY;
        if !slot.live
            || slot.gen != e.gen
            || !matches!(slot.conn.proto, Proto::Udp { .. })
            || slot.conn.status & steady != steady
        {
            return;
        }
        let c = &mut slot.conn;
        let d = dir.index();
        c.packets[d] += packets;
        c.bytes[d] += bytes;
        c.timeout = c
            .timeout
            .max(last.saturating_add(self.pol.timeout(LivePolicy::UDP_STREAM)));
        ShardStats::add_locked(&self.stats_of(home).found, packets);
    }

    /// Runs the packet through its entry's protocol tracker, under its home
    /// lock (`nf_conntrack_in` after the lookup).
    #[inline(always)]
    fn judge(
        &self,
        now: Nanos,
        pkt: &PacketMeta<A>,
        g: &mut ShardInner<A>,
        home: usize,
        key: Key,
    ) -> (Judged, Option<Unlink<A>>) {
        let stats = self.stats_of(home);
        let watch = g.events.is_some();
        let slot = &mut g.slab[key.slot as usize];
        if slot.conn.timeout <= now {
            ShardStats::inc(&stats.expired);
            return (Judged::Gone, self.free_locked(g, key.slot, Some(now)));
        }
        // For an UPDATE event: what the packet may change.
        let before = if watch {
            (slot.conn.status, slot.conn.tcp_state())
        } else {
            (0, None)
        };
        let dir = key.dir;
        let d = dir.index();
        let conn = &mut slot.conn;
        // `resolve_normal_ct`: the reply direction is always ESTABLISHED; the
        // original one is NEW until a reply was seen.
        let state = if dir == Dir::Reply || conn.status & status::SEEN_REPLY != 0 {
            CtState::Established
        } else {
            CtState::New
        };
        let verdict = match &mut conn.proto {
            // Only TCP touches the entry's TCP line.
            Proto::Tcp(tcp_state) => match (&pkt.tcp, g.tcp.get_mut(key.slot as usize)) {
                (Some(seg), Some(TcpLine(Some(ct)))) => {
                    let v = tcp::packet(
                        ct,
                        &mut conn.status,
                        d as u8,
                        seg,
                        now,
                        &mut conn.timeout,
                        &self.pol.load(),
                    );
                    *tcp_state = ct.state;
                    v
                }
                // (A TCP entry always has its line.)
                _ => Verdict::Invalid(InvalidReason::MissingHeader),
            },
            Proto::Udp { stream_ts } => udp_packet(&mut conn.status, *stream_ts, now, &self.pol),
            Proto::Icmp { .. } => Verdict::Refresh(self.pol.timeout(LivePolicy::ICMP)),
            Proto::Generic => Verdict::Refresh(self.pol.timeout(LivePolicy::GENERIC)),
        };
        let accepted = |conn: &mut Conn| {
            if dir == Dir::Reply {
                conn.status |= status::SEEN_REPLY;
            }
        };
        match verdict {
            Verdict::Refresh(t) => {
                conn.timeout = now.saturating_add(t);
                conn.account(d, pkt.len);
                accepted(conn);
            }
            Verdict::Pass { ignored } => {
                if ignored {
                    ShardStats::inc_locked(&stats.ignored);
                }
                accepted(conn);
            }
            Verdict::Kill => {
                conn.account(d, pkt.len);
                accepted(conn);
                ShardStats::inc_locked(&stats.found);
                ShardStats::inc(&stats.deleted);
                let unlink = self.free_locked(g, key.slot, Some(now));
                return (Judged::Killed(state), unlink);
            }
            Verdict::Reopen => {
                ShardStats::inc(&stats.deleted);
                return (Judged::Gone, self.free_locked(g, key.slot, Some(now)));
            }
            Verdict::Invalid(reason) => {
                let tcp_state = conn.tcp_state();
                ShardStats::inc(&stats.invalid[reason as usize]);
                return (Judged::Invalid(reason, tcp_state), None);
            }
        }
        let changed = watch && (conn.status, conn.tcp_state()) != before;
        let state_changed = watch && conn.tcp_state() != before.1;
        ShardStats::inc_locked(&stats.found);
        if changed {
            record(g, EventKind::Update, key.slot, Some(now), state_changed);
        }
        (Judged::Found(state), None)
    }

    /// `nf_conntrack_icmpv4_error` + `nf_conntrack_inet_error`: an ICMP error
    /// is RELATED to the entry its quoted datagram belongs to, provided it
    /// goes to that entry's endpoint. No counters or timeouts change.
    fn track_icmp_error(
        &self,
        now: Nanos,
        s: usize,
        pkt: &PacketMeta<A>,
        ic: &IcmpMeta<A>,
    ) -> Track<A> {
        let Some(inner) = ic.inner else {
            return self.invalid(s, InvalidReason::IcmpErrorNoInner, None);
        };
        // The quoted datagram went the other way: look up its inverse.
        let q = inner.invert();
        let outer_dst = pkt.tuple.dst;
        let r = self.with_entry(
            self.hash(&q),
            &q,
            |g, home, key| {
                let slot = &g.slab[key.slot as usize];
                if slot.conn.timeout <= now {
                    // The lookup skips (and collects) expired entries.
                    ShardStats::inc(&self.stats_of(home).expired);
                    return (Err(None), self.free_locked(g, key.slot, Some(now)));
                }
                let ct_dst = match key.dir {
                    Dir::Original => slot.orig.dst,
                    Dir::Reply => slot.reply.dst,
                };
                if ct_dst != outer_dst {
                    return (Err(Some(slot.conn.tcp_state())), None);
                }
                let snap = snapshot_of(slot);
                let entry = EntryRef {
                    shard: home as u32,
                    slot: key.slot,
                    gen: key.gen,
                };
                (
                    Ok(Track::Existing {
                        entry,
                        dir: key.dir,
                        state: CtState::Related,
                        snap,
                    }),
                    None,
                )
            },
            |_| {},
        );
        match r {
            Some(Ok(track)) => {
                ShardStats::inc(&self.stats_of(s).related);
                track
            }
            Some(Err(Some(tcp_state))) => {
                self.invalid(s, InvalidReason::IcmpErrorDaddrMismatch, tcp_state)
            }
            Some(Err(None)) | None => self.invalid(s, InvalidReason::IcmpErrorNoEntry, None),
        }
    }

    /// `init_conntrack` + the protocol's first-packet handling.
    fn new_conn(&self, now: Nanos, pkt: &PacketMeta<A>, s: usize) -> Track<A> {
        let t = pkt.tuple;
        let mut tcp_ct = None;
        let mut conn = Conn {
            status: 0,
            mark: 0,
            timeout: 0,
            packets: [0; 2],
            bytes: [0; 2],
            proto: Proto::Generic,
        };
        let verdict = match t.proto {
            IPPROTO_TCP => {
                let Some(seg) = &pkt.tcp else {
                    return self.invalid(s, InvalidReason::MissingHeader, None);
                };
                let mut ct = match tcp::new(seg, &self.pol.load()) {
                    Ok(ct) => ct,
                    Err(reason) => return self.invalid(s, reason, None),
                };
                let mut expires = 0;
                let v = tcp::packet(
                    &mut ct,
                    &mut conn.status,
                    0,
                    seg,
                    now,
                    &mut expires,
                    &self.pol.load(),
                );
                conn.proto = Proto::Tcp(ct.state);
                tcp_ct = Some(ct);
                v
            }
            IPPROTO_UDP => {
                conn.proto = Proto::Udp {
                    stream_ts: now.saturating_add(2 * NANOS_PER_SEC),
                };
                Verdict::Refresh(self.pol.timeout(LivePolicy::UDP))
            }
            p if p == A::ICMP => {
                let Some(ic) = &pkt.icmp else {
                    return self.invalid(s, InvalidReason::MissingHeader, None);
                };
                if !A::icmp_valid_new(ic.ty) {
                    return self.invalid(s, InvalidReason::IcmpNotNew, None);
                }
                conn.proto = Proto::Icmp {
                    ty: ic.ty,
                    code: ic.code,
                };
                Verdict::Refresh(self.pol.timeout(LivePolicy::ICMP))
            }
            _ => Verdict::Refresh(self.pol.timeout(LivePolicy::GENERIC)),
        };
        match verdict {
            Verdict::Refresh(timeout) => {
                conn.timeout = timeout;
                conn.account(0, pkt.len);
            }
            // Not reachable from state NONE; like Linux, an unrefreshed
            // unconfirmed entry would get timeout 0.
            Verdict::Pass { .. } | Verdict::Kill | Verdict::Reopen => {}
            Verdict::Invalid(reason) => return self.invalid(s, reason, None),
        }
        // Counted by the caller (`CtCounters::count_track`): a table-wide
        // atomic here would cost every new connection a locked add.
        Track::New(Pending {
            orig: t,
            reply: t.invert(),
            status: 0,
            conn,
            tcp: tcp_ct,
        })
    }

    /// Inserts a pending entry after the rules accepted its packet (Linux's
    /// confirm). Both tuples must be free. If the table is full, first drops
    /// an unassured entry near the new entry's shard (Linux's `early_drop`),
    /// else fails with `TableFull`.
    pub fn confirm(&self, now: Nanos, p: &Pending<A>) -> Result<EntryRef, ConfirmError> {
        self.confirm_counted(now, p, &mut CtCounters::default())
    }

    /// [`Conntrack::confirm`], counting into a worker's counters: insert,
    /// insert_failed, drop, early_drop, search_restart.
    pub fn confirm_counted(
        &self,
        now: Nanos,
        p: &Pending<A>,
        counted: &mut CtCounters,
    ) -> Result<EntryRef, ConfirmError> {
        let oh = self.hash(&p.orig);
        let os = self.shard_of(oh);
        // Reserve a place first, as `__nf_conntrack_alloc` does. Relaxed:
        // see `count`.
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max && !self.early_drop(now, oh, os, counted) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.pressure.store(true, Ordering::Relaxed);
            ShardStats::inc(&self.stats_of(os).drop);
            counted.drop += 1;
            return Err(ConfirmError::TableFull);
        }
        self.insert_reserved(now, p, (oh, os), counted, Some(now))
    }

    /// Takes a place in the table (`count`) unless it is full.
    fn reserve(&self) -> bool {
        // Relaxed: see `count`.
        if self.count.fetch_add(1, Ordering::Relaxed) < self.max {
            return true;
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Inserts `p` (its original tuple's hash and shard: `oh`, `os`) into a
    /// place taken in `count` beforehand, which a failure gives back. `at`
    /// is its NEW event's time: `None` for an entry the control plane puts
    /// in (a restore, a sync commit), as Linux marks the events a netlink
    /// request caused.
    fn insert_reserved(
        &self,
        now: Nanos,
        p: &Pending<A>,
        (oh, os): (u64, usize),
        counted: &mut CtCounters,
        at: Option<Nanos>,
    ) -> Result<EntryRef, ConfirmError> {
        let rh = self.hash(&p.reply);
        let rs = self.shard_of(rh);
        // Keys found pointing to an entry in a shard we do not hold must be
        // checked with that shard's lock alone; a key found stale once stays
        // stale (generations only grow), so the next attempt removes it.
        let mut stale: [Option<Key>; 2] = [None; 2];
        for _ in 0..4 {
            match self.try_insert(now, p, (oh, os), (rh, rs), &stale, at) {
                Ok(e) => {
                    counted.insert += 1;
                    return Ok(e);
                }
                Err(Refused::Clash) => break,
                Err(Refused::ShardFull) => {
                    // Only a hash spread no real traffic makes fills one
                    // shard while the table has room.
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    ShardStats::inc(&self.stats_of(os).drop);
                    counted.drop += 1;
                    return Err(ConfirmError::TableFull);
                }
                Err(Refused::Check(key)) => {
                    counted.search_restart += 1;
                    let g = self.lock(key.home as usize);
                    if g.is_live(key.slot, key.gen) {
                        break;
                    }
                    drop(g);
                    if stale[0].is_none() {
                        stale[0] = Some(key);
                    } else {
                        stale[1] = Some(key);
                    }
                }
            }
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        ShardStats::inc(&self.stats_of(os).insert_failed);
        counted.insert_failed += 1;
        Err(ConfirmError::Clash)
    }

    /// One attempt at inserting, with both shard locks held (lower index
    /// first).
    fn try_insert(
        &self,
        now: Nanos,
        p: &Pending<A>,
        (oh, os): (u64, usize),
        (rh, rs): (u64, usize),
        stale: &[Option<Key>; 2],
        at: Option<Nanos>,
    ) -> Result<EntryRef, Refused> {
        let (mut go, mut gr) = if os == rs {
            (self.lock(os), None)
        } else if os < rs {
            let a = self.lock(os);
            let b = self.lock(rs);
            (a, Some(b))
        } else {
            let b = self.lock(rs);
            let a = self.lock(os);
            (a, Some(b))
        };
        let same = p.orig == p.reply;
        let checks: [(u64, &Tuple<A>, bool); 2] = [(oh, &p.orig, false), (rh, &p.reply, true)];
        for (hash, t, in_reply_shard) in checks {
            if in_reply_shard && same {
                continue;
            }
            let found = match (in_reply_shard, gr.as_deref()) {
                (true, Some(r)) => r.find(hash, t),
                _ => go.find(hash, t),
            };
            let Some(key) = found else { continue };
            let home = key.home as usize;
            let live = if stale.contains(&Some(key)) {
                false
            } else if home == os {
                go.is_live(key.slot, key.gen)
            } else if home == rs {
                gr.as_deref().is_some_and(|r| r.is_live(key.slot, key.gen))
            } else {
                return Err(Refused::Check(key));
            };
            if live {
                return Err(Refused::Clash);
            }
            // A stale key left by a remover that has not unlinked it yet.
            match (in_reply_shard, gr.as_deref_mut()) {
                (true, Some(r)) => r.remove_key(hash, t, key),
                _ => go.remove_key(hash, t, key),
            };
        }
        let room = match (same, gr.as_deref()) {
            (true, _) => go.has_key_room(1),
            (false, None) => go.has_key_room(2),
            (false, Some(r)) => go.has_key_room(1) && r.has_key_room(1),
        };
        if !room {
            return Err(Refused::ShardFull);
        }
        let mut conn = p.conn;
        conn.status = p.status | status::CONFIRMED;
        conn.timeout = now.saturating_add(p.conn.timeout);
        let Some((slot, gen)) = go.alloc(p.orig, p.reply, conn, p.tcp) else {
            return Err(Refused::ShardFull);
        };
        self.note_next_slot(&go);
        if go.events.is_some() {
            record(&mut go, EventKind::New, slot, at, true);
        }
        let home = os as u32;
        let okey = Key {
            home,
            slot,
            gen,
            dir: Dir::Original,
        };
        // Room was checked above.
        let inserted = go.insert_key(oh, p.orig, okey);
        debug_assert!(inserted);
        if !same {
            let rkey = Key {
                dir: Dir::Reply,
                ..okey
            };
            let inserted = match gr.as_deref_mut() {
                Some(r) => r.insert_key(rh, p.reply, rkey),
                None => go.insert_key(rh, p.reply, rkey),
            };
            debug_assert!(inserted);
        }
        // Counted here, under the home shard's lock.
        ShardStats::inc_locked(&self.stats_of(os).insert);
        Ok(EntryRef {
            shard: home,
            slot,
            gen,
        })
    }

    /// Linux's `early_drop`: look at the new entry's shard and its
    /// neighbours (one lock at a time) for an entry that is not ASSURED, and
    /// drop it; expired entries met on the way are removed too. Returns
    /// whether room was made.
    fn early_drop(&self, now: Nanos, hash: u64, home: usize, counted: &mut CtCounters) -> bool {
        for i in 0..EVICTION_RANGE.min(self.shards.len()) {
            let s = (home + i) & self.mask;
            let mut unlinks: [Option<Unlink<A>>; EARLY_DROP_SCAN] = [None; EARLY_DROP_SCAN];
            let mut made_room = false;
            {
                let mut g = self.lock(s);
                let len = g.slab.len();
                if len == 0 {
                    continue;
                }
                let start = (hash as usize) % len;
                for (k, u) in unlinks
                    .iter_mut()
                    .enumerate()
                    .take(len.min(EARLY_DROP_SCAN))
                {
                    let slot = ((start + k) % len) as u32;
                    let e = &g.slab[slot as usize];
                    if !e.live {
                        continue;
                    }
                    if e.conn.timeout <= now {
                        ShardStats::inc(&self.stats_of(s).expired);
                        *u = self.free_locked(&mut g, slot, Some(now));
                        made_room = true;
                        continue;
                    }
                    if e.conn.status & status::ASSURED != 0 {
                        continue;
                    }
                    ShardStats::inc(&self.stats_of(s).early_drop);
                    counted.early_drop += 1;
                    *u = self.free_locked(&mut g, slot, Some(now));
                    made_room = true;
                    break;
                }
            }
            for u in unlinks.into_iter().flatten() {
                self.unlink(u);
            }
            if made_room {
                return true;
            }
        }
        false
    }

    /// Whether a tuple is taken by any entry, in either direction (for NAT
    /// port selection). Expired entries not yet collected count as taken.
    pub fn tuple_in_use(&self, t: &Tuple<A>) -> bool {
        self.with_entry(self.hash(t), t, |_, _, _| ((), None), |_| {})
            .is_some()
    }

    /// Expiry: scans at most `budget` slab slots from where the last call
    /// stopped (round-robin over shards, one shard lock at a time) and
    /// removes expired entries; returns how many it removed. Under table
    /// pressure (a confirm found the table full and it is still above 95%)
    /// it also evicts unassured and closing TCP entries, as Linux's
    /// `gc_worker` does. A call while another is running returns 0 at once.
    pub fn gc(&self, now: Nanos, budget: usize) -> usize {
        self.sweep(now, budget, budget)
    }

    /// How many slots a worker's expiry step sweeps after `since`
    /// nanoseconds: the table once per second, but while it is less than
    /// 90 % full never more than [`GC_MAX_SLOTS_PER_SEC`] a second, so
    /// that a large table is swept
    /// over a longer period (16 s at 16 M entries) instead of costing each
    /// worker a third of its time (a sweep that finds nothing reads about
    /// 24 ns a slot). An expired entry waiting for the sweep is invisible to
    /// lookups and listings, and `early_drop` reaps the expired entries it
    /// meets when the table is full, as Linux's does; Linux's `gc_worker`
    /// too spreads its scans of a large table over many seconds.
    pub fn sweep_slots(&self, since: Nanos) -> usize {
        sweep_slots(self.max, self.len(), since)
    }

    /// [`Conntrack::gc`] over a `slots / max_entries` share of the table:
    /// up to `slots` slots, in as many shards as hold that share of the
    /// table's capacity however full they are (at least one). A worker
    /// paces expiry with it: `max_entries` slots per second sweep the table
    /// once a second, whether it is full or nearly empty (with `gc`, a
    /// sparse table's sweep would visit `budget` shards per call).
    pub fn gc_share(&self, now: Nanos, slots: usize) -> usize {
        let shards = slots
            .saturating_mul(self.shards.len())
            .div_ceil(self.max)
            .max(1);
        self.sweep(now, slots, shards)
    }

    /// Expiry over at most `budget` slots in at most `max_hops` shards,
    /// from where the last sweep stopped.
    fn sweep(&self, now: Nanos, budget: usize, max_hops: usize) -> usize {
        let mut cur = match self.gc_cursor.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return 0,
        };
        let max95 = self.max / 100 * 95;
        // Relaxed: see `pressure` and `count`.
        let evict =
            self.pressure.load(Ordering::Relaxed) && self.count.load(Ordering::Relaxed) >= max95;
        if !evict {
            self.pressure.store(false, Ordering::Relaxed);
        }
        let nshards = self.shards.len();
        let mut left = budget;
        let mut removed = 0;
        let mut hops = 0;
        // Empty shards cost a lock but no budget: visit at most `max_hops`
        // of them per call too, so that a sparse table is not swept whole.
        let max_hops = nshards.min(max_hops);
        while left > 0 && hops < max_hops {
            let s = cur.shard;
            let mut unlinks: [Option<Unlink<A>>; GC_BATCH] = [None; GC_BATCH];
            let mut nunlinks = 0;
            let mut i = cur.slot;
            let len;
            {
                let mut g = self.lock(s);
                len = g.slab.len();
                while i < len && left > 0 && nunlinks < GC_BATCH {
                    left -= 1;
                    let slot = i as u32;
                    i += 1;
                    let e = &g.slab[slot as usize];
                    if !e.live {
                        continue;
                    }
                    let stats = self.stats_of(s);
                    if e.conn.timeout <= now {
                        ShardStats::inc(&stats.expired);
                    } else if evict
                        && e.conn.can_early_drop(&g.tcp[slot as usize])
                        && self.count.load(Ordering::Relaxed) >= max95
                    {
                        ShardStats::inc(&stats.early_drop);
                    } else {
                        continue;
                    }
                    if let Some(u) = self.free_locked(&mut g, slot, Some(now)) {
                        unlinks[nunlinks] = Some(u);
                        nunlinks += 1;
                    }
                    removed += 1;
                }
            }
            for u in unlinks[..nunlinks].iter_mut().filter_map(Option::take) {
                self.unlink(u);
            }
            if i >= len {
                cur.shard = (s + 1) & self.mask;
                cur.slot = 0;
                hops += 1;
            } else {
                cur.slot = i;
            }
        }
        removed
    }

    /// Entries in this table and its other family's (plus confirms in
    /// flight): Linux's `nf_conntrack_count`.
    pub fn len(&self) -> usize {
        // Relaxed: see `count`.
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in this table alone (each shard's lock taken in turn: for
    /// the control plane, not the packet path).
    pub fn family_len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).live).sum()
    }

    /// How many entries the control plane has deleted so far (changes
    /// whenever [`Conntrack::remove`] deletes one).
    #[inline]
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Relaxed)
    }

    /// A copy of the live entry `t` is a tuple of, if it has not expired
    /// at `now` (`nf_conntrack_find_get`, which skips expired entries).
    pub fn lookup(&self, t: &Tuple<A>, now: Nanos) -> Option<Snapshot<A>> {
        let hash = self.hash(t);
        self.with_entry(
            hash,
            t,
            |g, _, key| (snapshot_of(&g.slab[key.slot as usize]), None),
            |_| {},
        )
        .filter(|s| s.expires > now)
    }

    /// A copy of a live entry.
    pub fn get(&self, e: EntryRef) -> Option<Snapshot<A>> {
        let g = self.lock(e.shard as usize);
        g.is_live(e.slot, e.gen)
            .then(|| snapshot_of(&g.slab[e.slot as usize]))
    }

    /// Deletes a live entry; `false` if it was already gone.
    pub fn remove(&self, e: EntryRef) -> bool {
        let shard = e.shard as usize;
        let mut g = self.lock(shard);
        if !g.is_live(e.slot, e.gen) {
            return false;
        }
        ShardStats::inc(&self.stats_of(shard).deleted);
        let unlink = self.free_locked(&mut g, e.slot, None);
        drop(g);
        self.removals.fetch_add(1, Ordering::Relaxed);
        if let Some(u) = unlink {
            self.unlink(u);
        }
        true
    }

    /// Sets an entry's mark (CONNMARK); `false` if it is gone.
    pub fn set_mark(&self, e: EntryRef, mark: u32) -> bool {
        let mut g = self.lock(e.shard as usize);
        if !g.is_live(e.slot, e.gen) {
            return false;
        }
        g.slab[e.slot as usize].conn.mark = mark;
        true
    }

    /// All live entries (control plane; one shard lock at a time).
    pub fn snapshot(&self) -> Vec<Snapshot<A>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.shards.len() {
            let g = self.lock(i);
            out.extend(g.slab.iter().filter(|s| s.live).map(snapshot_of));
        }
        out
    }

    /// The entries a listing shows at `now` (`conntrack -L`, a filtered
    /// `-C`): the live ones that have not expired. An expired entry waits
    /// for the next expiry sweep; like Linux's dump, a listing leaves it
    /// out.
    pub fn listing(&self, now: Nanos) -> Vec<Snapshot<A>> {
        let mut out = self.snapshot();
        out.retain(|s| s.listed_at(now));
        out
    }

    /// The next live entries of a walk over the table, with their
    /// references (control plane: listings and deletions that go out a
    /// chunk at a time). Looks at up to `slots` slots of one shard from
    /// `cursor` on, under that shard's lock, held only while copying them;
    /// appends the live ones to `out` and moves `cursor` past them. False
    /// (and nothing appended) once the walk has passed the last shard.
    ///
    /// Like Linux's dump (`ctnetlink_dump_table`, which resumes at the
    /// bucket it stopped at), a walk is not a snapshot of the whole table:
    /// an entry created or deleted meanwhile may or may not be seen. An
    /// entry never moves between slots, so none is seen twice.
    pub fn walk(
        &self,
        cursor: &mut WalkCursor,
        slots: usize,
        out: &mut Vec<(EntryRef, Snapshot<A>)>,
    ) -> bool {
        let slots = slots.max(1);
        let before = out.len();
        while cursor.shard < self.shards.len() {
            let shard = cursor.shard;
            let g = self.lock(shard);
            let start = cursor.slot.min(g.slab.len());
            let end = start.saturating_add(slots).min(g.slab.len());
            out.extend(
                g.slab[start..end]
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.live)
                    .map(|(k, s)| {
                        (
                            EntryRef {
                                shard: shard as u32,
                                slot: (start + k) as u32,
                                gen: s.gen,
                            },
                            snapshot_of(s),
                        )
                    }),
            );
            let shard_done = end >= g.slab.len();
            drop(g);
            if shard_done {
                cursor.shard += 1;
                cursor.slot = 0;
            } else {
                cursor.slot = end;
            }
            // An empty stretch (a sparse table's shards) costs a lock, not a
            // round trip to the caller.
            if out.len() > before || !shard_done {
                return true;
            }
        }
        false
    }

    /// Deletes every live entry `pred` selects (control plane: `conntrack
    /// -D`/`-F`; one shard lock at a time); returns the deleted entries.
    pub fn remove_if(&self, mut pred: impl FnMut(&Snapshot<A>) -> bool) -> Vec<Snapshot<A>> {
        let mut out = Vec::new();
        for shard in 0..self.shards.len() {
            let refs: Vec<(EntryRef, Snapshot<A>)> = {
                let g = self.lock(shard);
                g.slab
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.live)
                    .map(|(i, s)| {
                        (
                            EntryRef {
                                shard: shard as u32,
                                slot: i as u32,
                                gen: s.gen,
                            },
                            snapshot_of(s),
                        )
                    })
                    .filter(|(_, snap)| pred(snap))
                    .collect()
            };
            for (e, snap) in refs {
                if self.remove(e) {
                    out.push(snap);
                }
            }
        }
        out
    }

    /// Counters summed over shards.
    pub fn stats(&self) -> CtStats {
        // Relaxed: independent statistics (see `ShardStats`).
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut st = CtStats {
            entries: self.len(),
            ..CtStats::default()
        };
        for sh in self.shards.iter() {
            let s = &sh.stats;
            st.found += ld(&s.found);
            st.related += ld(&s.related);
            st.ignored += ld(&s.ignored);
            for (acc, c) in st.invalid_by_reason.iter_mut().zip(s.invalid.iter()) {
                *acc += ld(c);
            }
            st.insert += ld(&s.insert);
            st.insert_failed += ld(&s.insert_failed);
            st.drop += ld(&s.drop);
            st.early_drop += ld(&s.early_drop);
            st.expired += ld(&s.expired);
            st.deleted += ld(&s.deleted);
        }
        st.invalid = st.invalid_by_reason.iter().sum();
        st
    }

    /// Checks the table's internal consistency (tests; needs quiescence).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut live = 0;
        for i in 0..self.shards.len() {
            let g = self.lock(i);
            live += g.slab.iter().filter(|s| s.live).count();
            assert_eq!(g.live, g.slab.iter().filter(|s| s.live).count());
            for (t, key) in g.keys() {
                assert_eq!(self.shard_of(self.hash(&t)), i, "key in the wrong shard");
                let home = key.home as usize;
                let (slot_tuple, slot_ok) = if home == i {
                    let s = &g.slab[key.slot as usize];
                    (
                        if key.dir == Dir::Original {
                            s.orig
                        } else {
                            s.reply
                        },
                        s.live && key_table::same_gen(s.gen, key.gen),
                    )
                } else {
                    let h = self.lock(home);
                    let s = &h.slab[key.slot as usize];
                    (
                        if key.dir == Dir::Original {
                            s.orig
                        } else {
                            s.reply
                        },
                        s.live && key_table::same_gen(s.gen, key.gen),
                    )
                };
                assert!(slot_ok, "stale key {t:?} -> {key:?}");
                assert_eq!(slot_tuple, t);
            }
        }
        assert_eq!(live, self.len(), "count disagrees with live slots");
        for i in 0..self.shards.len() {
            let entries: Vec<Slot<A>> = self
                .lock(i)
                .slab
                .iter()
                .filter(|s| s.live)
                .copied()
                .collect();
            for e in entries {
                assert!(self.tuple_in_use(&e.orig));
                assert!(self.tuple_in_use(&e.reply));
            }
        }
    }
}

/// UDP (`nf_conntrack_udp_packet`): 30 s until a reply was seen; once it
/// was, and the flow is still active two seconds after it started, 120 s and
/// ASSURED. `status` is read before this packet sets SEEN_REPLY, so a single
/// request/reply exchange (DNS) stays unassured with 30 s, as in Linux.
fn udp_packet(status: &mut u16, stream_ts: Nanos, now: Nanos, pol: &LivePolicy) -> Verdict {
    if *status & status::SEEN_REPLY != 0 && now > stream_ts {
        *status |= status::ASSURED;
        Verdict::Refresh(pol.timeout(LivePolicy::UDP_STREAM))
    } else {
        Verdict::Refresh(pol.timeout(LivePolicy::UDP))
    }
}

/// Records an event about `slot` in its shard's ring, if it has one (under
/// the shard's lock; no allocation: the ring's space is reserved).
#[inline]
fn record<A: Addr>(
    g: &mut ShardInner<A>,
    kind: EventKind,
    slot: u32,
    at: Option<Nanos>,
    protoinfo: bool,
) {
    let Some(snap) = g.slab.get(slot as usize).map(snapshot_of) else {
        return;
    };
    if let Some(r) = g.events.as_deref_mut() {
        r.push(CtEvent {
            kind,
            at,
            protoinfo,
            snap,
        });
    }
}

fn snapshot_of<A: Addr>(s: &Slot<A>) -> Snapshot<A> {
    let c = &s.conn;
    let (icmp_type, icmp_code) = match c.proto {
        Proto::Icmp { ty, code } => (ty, code),
        _ => (0, 0),
    };
    Snapshot {
        orig: s.orig,
        reply: s.reply,
        status: c.status,
        tcp_state: c.tcp_state().unwrap_or(TcpState::None),
        mark: c.mark,
        expires: c.timeout,
        packets: c.packets,
        bytes: c.bytes,
        icmp_type,
        icmp_code,
    }
}
