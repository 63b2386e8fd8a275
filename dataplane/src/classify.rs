//! The compiled, immutable rule set: chain names resolved to indices,
//! interface names to bit sets of the gateway's interfaces, every rule given
//! a counter slot. Built once per (re)load, away from the workers, and
//! shared by all of them; nothing on the packet path looks at a string.

use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::BitAnd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

mod index;

pub use index::{ChainIndex, IndexKey, INDEX_MIN_RULES};

use crate::connlimit::ConnlimitTable;
use crate::hashlimit::HashlimitTable;
use crate::ipset::{LookupOpts, SetPacket, SetTable};
use crate::recent::RecentTable;
use crate::rule::{
    AddrRange, AddrtypeLimit, AddrtypeMatch, ConnlimitMatch, ConnmarkOp, CounterLayout, CtMatch,
    CtStates, Family, FragMatch, Hook, IcmpType, IfaceMatch, Inv, Ipv6HeaderMatch, Limit, Log,
    Match, MultiportDir, NatRange, Policy, PortNat, PortRange, RecentMatch, RejectWith, RtMatch,
    Rule, RuleSet, Table, Target, TcpmssOp, TosBits, TtlMatch, TtlSet,
};
use crate::stateful::MatchTables;

/// An address family as the classifier sees it: the width of its
/// addresses and the packet fields only it has. The evaluator is generic
/// over it and monomorphised, so the IPv4 evaluator compares `u32`s and
/// carries no IPv6 field (its `Extra` is `()`): its code is what it was
/// before IPv6 existed.
/// The SYN bit of the TCP flags (`--tcp-flags`, `--syn`).
const TCP_FLAG_SYN: u8 = 0x02;

pub trait AddrFamily:
    Copy + Clone + Debug + Default + PartialEq + Eq + Send + Sync + 'static
{
    const FAMILY: Family;
    /// An address as the tests compare it: `u32` or `u128`.
    type Addr: Copy
        + Debug
        + Default
        + PartialEq
        + Eq
        + Ord
        + BitAnd<Output = Self::Addr>
        + IndexKey
        + Send
        + Sync;
    /// An address as NAT targets carry it.
    type Ip: Copy + Debug + PartialEq + Eq + Send + Sync;
    /// The family's own packet fields.
    type Extra: Copy + Debug + Default + PartialEq + Eq + Send + Sync;

    /// A rule's `-s` (`src`) or `-d` test.
    fn addr_match(r: &Rule, src: bool) -> AddrMatch<Self::Addr>;
    fn from_ip(ip: Self::Ip) -> Self::Addr;
    /// An IPv4 (IPv6) address of a rule, if it is of this family.
    fn ip4(ip: Ipv4Addr) -> Option<Self::Ip>;
    fn ip6(ip: Ipv6Addr) -> Option<Self::Ip>;
    /// The IPv6 fields of a packet (`None` for IPv4).
    fn ip6_fields(e: &Self::Extra) -> Option<&Ip6Fields>;
    /// What `-m set` looks up (sets hold IPv4 addresses only).
    fn set_packet(p: &PacketView<Self>) -> Option<SetPacket>;
    /// `-m conntrack`'s address test `i` (`--ctorigsrc`, `--ctorigdst`,
    /// `--ctreplsrc`, `--ctrepldst`), if the match has it.
    fn ct_addr(m: &CtMatch, i: usize) -> Option<AddrMatch<Self::Addr>>;
    /// An IPv4 address as such (`None` for IPv6).
    fn as_v4(a: Self::Addr) -> Option<Ipv4Addr>;
}

/// IPv4: iptables' rule sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4;

/// IPv6: ip6tables' rule sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V6;

impl AddrFamily for V4 {
    const FAMILY: Family = Family::Ipv4;
    type Addr = u32;
    type Ip = Ipv4Addr;
    type Extra = ();

    #[inline]
    fn addr_match(r: &Rule, src: bool) -> AddrMatch<u32> {
        let m = if src { r.src } else { r.dst };
        m.map_or(AddrMatch::default(), |n| AddrMatch {
            net: u32::from(n.value.addr()),
            mask: u32::from(n.value.mask()),
            invert: n.invert,
        })
    }
    #[inline]
    fn from_ip(ip: Ipv4Addr) -> u32 {
        u32::from(ip)
    }
    fn ip4(ip: Ipv4Addr) -> Option<Ipv4Addr> {
        Some(ip)
    }
    fn ip6(_: Ipv6Addr) -> Option<Ipv4Addr> {
        None
    }
    #[inline(always)]
    fn ip6_fields(_: &()) -> Option<&Ip6Fields> {
        None
    }
    #[inline]
    fn as_v4(a: u32) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::from(a))
    }
    fn ct_addr(m: &CtMatch, i: usize) -> Option<AddrMatch<u32>> {
        m.addrs.get(i).copied().flatten().map(|a| AddrMatch {
            net: u32::from(a.value.addr()),
            mask: u32::from(a.value.mask()),
            invert: a.invert,
        })
    }
    #[inline]
    fn set_packet(p: &PacketView<V4>) -> Option<SetPacket> {
        Some(SetPacket {
            src: p.src,
            dst: p.dst,
            proto: p.proto,
            has_ports: p.has_ports,
            sport: p.sport,
            dport: p.dport,
            len: p.len,
        })
    }
}

impl AddrFamily for V6 {
    const FAMILY: Family = Family::Ipv6;
    type Addr = u128;
    type Ip = Ipv6Addr;
    type Extra = Ip6Fields;

    fn addr_match(r: &Rule, src: bool) -> AddrMatch<u128> {
        let m = if src { r.src6 } else { r.dst6 };
        m.map_or(AddrMatch::default(), |n| AddrMatch {
            net: u128::from(n.value.addr()),
            mask: u128::from(n.value.mask()),
            invert: n.invert,
        })
    }
    #[inline]
    fn from_ip(ip: Ipv6Addr) -> u128 {
        u128::from(ip)
    }
    fn ip4(_: Ipv4Addr) -> Option<Ipv6Addr> {
        None
    }
    fn as_v4(_: u128) -> Option<Ipv4Addr> {
        None
    }
    fn ct_addr(m: &CtMatch, i: usize) -> Option<AddrMatch<u128>> {
        m.addrs6.get(i).copied().flatten().map(|a| AddrMatch {
            net: u128::from(a.value.addr()),
            mask: u128::from(a.value.mask()),
            invert: a.invert,
        })
    }
    fn ip6(ip: Ipv6Addr) -> Option<Ipv6Addr> {
        Some(ip)
    }
    #[inline]
    fn ip6_fields(e: &Ip6Fields) -> Option<&Ip6Fields> {
        Some(e)
    }
    fn set_packet(_: &PacketView<V6>) -> Option<SetPacket> {
        None
    }
}

/// The fields of an IPv6 packet that only ip6tables' matches read, found
/// by walking its extension-header chain as the kernel does. The common
/// fields of [`PacketView`] mean for IPv6: `proto` the upper-layer protocol
/// after the extension headers (what `ipv6_find_hdr` returns, what `-p`
/// compares), `ttl` the hop limit, `tos` the traffic class, `len` the
/// payload length plus the 40 bytes of the header (`length_mt6`), `icmp`
/// the ICMPv6 type and code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ip6Fields {
    /// The headers `ipv6header_mt6` finds (bits of [`Ipv6HeaderMatch`]).
    pub headers: u8,
    /// The fragment header, if there is one.
    pub frag: Option<FragFields>,
    /// The (first) routing header, if there is one.
    pub rt: Option<RtFields>,
}

/// A fragment header as `frag_mt6` reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragFields {
    pub id: u32,
    /// The 16-bit offset-and-flags field in host order: offset `>> 3`,
    /// reserved bits `0x6`, M flag `0x1`.
    pub frag_off: u16,
    /// The reserved byte after the next-header byte.
    pub reserved: u8,
}

/// A routing header as `rt_mt6` reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtFields {
    pub rt_type: u8,
    pub segs_left: u8,
    /// The header extension length field (units of 8 bytes beyond the
    /// first 8).
    pub hdrlen: u8,
}

impl FragMatch {
    /// `frag_mt6`, given the packet's fragment header.
    pub fn matches(&self, f: &FragFields) -> bool {
        self.ids.matches(f.id)
            && !(self.res && (f.reserved != 0 || f.frag_off & 0x6 != 0))
            && !(self.first && f.frag_off & !0x7 != 0)
            && !(self.more && f.frag_off & 1 == 0)
            && !(self.last && f.frag_off & 1 != 0)
    }
}

impl RtMatch {
    /// `rt_mt6`, given the packet's routing header; the length compared is
    /// the header's in bytes (`ipv6_optlen`).
    pub fn matches(&self, r: &RtFields) -> bool {
        let len = (u32::from(r.hdrlen) + 1) * 8;
        self.segsleft.matches(u32::from(r.segs_left))
            && self.len.is_none_or(|l| (l.value == len) != l.invert)
            && self
                .rt_type
                .is_none_or(|t| (t.value == r.rt_type) != t.invert)
    }
}

/// At most this many interfaces take part in `-i`/`-o` matching.
pub const MAX_IFACES: usize = 64;

/// A set of the gateway's interfaces, by index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSet(pub u64);

impl IfaceSet {
    pub fn contains(self, iface: u8) -> bool {
        iface < 64 && self.0 & (1 << iface) != 0
    }
}

/// `-s`/`-d`: `addr & mask == net`, possibly inverted; the empty mask
/// (no option) matches everything. `A` is `u32` for IPv4, `u128` for IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrMatch<A = u32> {
    pub net: A,
    pub mask: A,
    pub invert: bool,
}

impl<A: Copy + Eq + BitAnd<Output = A>> AddrMatch<A> {
    #[inline]
    pub fn matches(self, addr: A) -> bool {
        (addr & self.mask == self.net) != self.invert
    }
}

/// `-i`/`-o`: membership in a set of interfaces, possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceTest {
    pub set: IfaceSet,
    pub invert: bool,
    pub any: bool,
}

impl IfaceTest {
    const ANY: IfaceTest = IfaceTest {
        set: IfaceSet(0),
        invert: false,
        any: true,
    };

    /// `iface` is `None` where the hook has no such interface (no input
    /// interface in OUTPUT, say): then only the absent option matches.
    #[inline]
    pub fn matches(self, iface: Option<u8>) -> bool {
        self.any || iface.is_some_and(|i| self.set.contains(i) != self.invert)
    }
}

/// `-p`: the protocol, possibly inverted; `any` for `-p all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoTest {
    pub proto: u8,
    pub invert: bool,
    pub any: bool,
}

impl ProtoTest {
    #[inline]
    pub fn matches(self, proto: u8) -> bool {
        self.any || (proto == self.proto) != self.invert
    }
}

/// A port range test, possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortTest {
    pub lo: u16,
    pub hi: u16,
    pub invert: bool,
}

impl PortTest {
    const ANY: PortTest = PortTest {
        lo: 0,
        hi: 65535,
        invert: false,
    };

    fn from(p: Option<Inv<PortRange>>) -> PortTest {
        p.map_or(PortTest::ANY, |p| PortTest {
            lo: p.value.lo,
            hi: p.value.hi,
            invert: p.invert,
        })
    }

    #[inline]
    pub fn matches(self, port: u16) -> bool {
        (self.lo <= port && port <= self.hi) != self.invert
    }
}

/// An address range test (`-m iprange`), possibly inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeTest<A = u32> {
    pub lo: A,
    pub hi: A,
    pub invert: bool,
}

impl<A: Copy + Ord> RangeTest<A> {
    /// The test of a range of `F`'s addresses; `None` for a range of the
    /// other family's.
    fn of<F: AddrFamily<Addr = A>, I: Copy>(
        r: Option<Inv<AddrRange<I>>>,
        conv: impl Fn(I) -> Option<F::Ip>,
    ) -> Result<Option<RangeTest<A>>, CompileError> {
        let Some(r) = r else { return Ok(None) };
        let (Some(lo), Some(hi)) = (conv(r.value.lo), conv(r.value.hi)) else {
            return Err(CompileError::WrongFamily("-m iprange"));
        };
        Ok(Some(RangeTest {
            lo: F::from_ip(lo),
            hi: F::from_ip(hi),
            invert: r.invert,
        }))
    }

    #[inline]
    pub fn matches(self, addr: A) -> bool {
        (self.lo <= addr && addr <= self.hi) != self.invert
    }
}

/// A compiled `-m recent` match: its table and what it does there.
#[derive(Clone, Debug)]
pub struct RecentTest {
    pub table: Arc<RecentTable>,
    pub m: RecentMatch,
}

impl PartialEq for RecentTest {
    fn eq(&self, o: &RecentTest) -> bool {
        Arc::ptr_eq(&self.table, &o.table) && self.m == o.m
    }
}

impl Eq for RecentTest {}

/// A compiled `-m connlimit` match: the rule's own counts.
#[derive(Clone, Debug)]
pub struct ConnlimitTest {
    pub table: Arc<ConnlimitTable>,
    pub m: ConnlimitMatch,
}

impl PartialEq for ConnlimitTest {
    fn eq(&self, o: &ConnlimitTest) -> bool {
        Arc::ptr_eq(&self.table, &o.table) && self.m == o.m
    }
}

impl Eq for ConnlimitTest {}

/// A compiled `-m hashlimit` match: its table (shared by name) and whether
/// it matches above the rate.
#[derive(Clone, Debug)]
pub struct HashlimitTest {
    pub table: Arc<HashlimitTable>,
    pub above: bool,
}

impl PartialEq for HashlimitTest {
    fn eq(&self, o: &HashlimitTest) -> bool {
        Arc::ptr_eq(&self.table, &o.table) && self.above == o.above
    }
}

impl Eq for HashlimitTest {}

/// A compiled match extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CMatch<F: AddrFamily = V4> {
    /// TCP/UDP ports (the protocol itself is checked by the rule's `-p`).
    Ports {
        sport: PortTest,
        dport: PortTest,
    },
    TcpFlags {
        mask: u8,
        comp: u8,
        invert: bool,
    },
    Icmp {
        ty: u8,
        code_lo: u8,
        code_hi: u8,
        any: bool,
        invert: bool,
    },
    Multiport {
        dir: MultiportDir,
        ports: Box<[PortRange]>,
        invert: bool,
    },
    /// `--ctstate`/`--state`: bits of [`crate::rule::CtStates`].
    CtState {
        bits: u8,
        invert: bool,
    },
    Dscp {
        dscp: u8,
        invert: bool,
    },
    Mark {
        value: u32,
        mask: u32,
        invert: bool,
    },
    /// A token bucket; `slot` indexes the rule set's limit states.
    Limit {
        limit: Limit,
        slot: u32,
    },
    IpRange {
        src: Option<RangeTest<F::Addr>>,
        dst: Option<RangeTest<F::Addr>>,
    },
    /// The IP total length in `lo..=hi`.
    Length {
        lo: u16,
        hi: u16,
        invert: bool,
    },
    Ttl(TtlMatch),
    /// The TOS byte under `mask` is `value`.
    Tos {
        value: u8,
        mask: u8,
        invert: bool,
    },
    /// The connection's mark under `mask` is `value`.
    Connmark {
        value: u32,
        mask: u32,
        invert: bool,
    },
    Addrtype(AddrtypeMatch),
    /// `-m conntrack` with more than the state.
    Conntrack(Box<CtMatch>),
    /// `-m set`: set `slot` of the gateway's set table.
    Set {
        slot: u16,
        opts: LookupOpts,
        invert: bool,
    },
    /// `-m recent` over its table (the gateway's, shared by name); boxed:
    /// the other matches are smaller.
    Recent(Box<RecentTest>),
    /// `-m connlimit` over the rule's counts.
    Connlimit(Box<ConnlimitTest>),
    /// `-m hashlimit` over its table (the gateway's, shared by name).
    Hashlimit(Box<HashlimitTest>),
    /// `-m ipv6header` (IPv6).
    Ipv6Header(Ipv6HeaderMatch),
    /// `-m frag` (IPv6): never matches a packet without a fragment header.
    Frag(FragMatch),
    /// `-m rt` (IPv6): never matches a packet without a routing header.
    Rt(RtMatch),
}

/// A compiled target; chains are indices into the table's chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CTarget<F: AddrFamily = V4> {
    /// No target: count and go on.
    Continue,
    Accept,
    Drop,
    Return,
    Jump(u16),
    Goto(u16),
    Reject(RejectWith),
    /// Index into [`CompiledRuleSet::logs`].
    Log(u32),
    Masquerade(PortNat),
    Snat(NatRange<F::Ip>),
    Dnat(NatRange<F::Ip>),
    Redirect(PortNat),
    Dscp(u8),
    Notrack,
    Mark {
        value: u32,
        mask: u32,
    },
    Ttl(TtlSet),
    Tos(TosBits),
    Connmark(ConnmarkOp),
    Tcpmss(TcpmssOp),
}

/// A compiled rule. `counter` indexes per-worker counter arrays (its slot
/// in [`CounterLayout`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CRule<F: AddrFamily = V4> {
    pub src: AddrMatch<F::Addr>,
    pub dst: AddrMatch<F::Addr>,
    pub in_iface: IfaceTest,
    pub out_iface: IfaceTest,
    pub proto: ProtoTest,
    pub matches: Box<[CMatch<F>]>,
    pub target: CTarget<F>,
    pub counter: u32,
    /// Whether evaluating this rule may give another result for the next
    /// packet of the same flow in the same conntrack state (TCP flags,
    /// DSCP, ICMP or limit matches) or must see every packet (LOG): a
    /// traversal that evaluated such a rule is not cached (the fast path's
    /// recording sees it: [`EvalObserver::considered`]).
    pub volatile: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CChain<F: AddrFamily = V4> {
    pub name: String,
    pub policy: Option<Policy>,
    pub rules: Box<[CRule<F>]>,
    /// Counter slot of the policy (built-in chains).
    pub counter: u32,
    /// The rules indexed by the header fields they test (chains of at
    /// least [`INDEX_MIN_RULES`] rules): the walk visits only the rules
    /// that can match.
    pub index: Option<Box<ChainIndex<F>>>,
}

impl<F: AddrFamily> CChain<F> {
    fn indexed(rules: &[CRule<F>], min_rules: usize) -> Option<Box<ChainIndex<F>>> {
        if rules.len() < min_rules.max(1) {
            return None;
        }
        ChainIndex::build(rules).map(Box::new)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CTable<F: AddrFamily = V4> {
    pub table: Table,
    pub chains: Box<[CChain<F>]>,
    /// The built-in chain of each hook, by `Hook as usize`.
    pub hooks: [Option<u16>; 5],
}

impl<F: AddrFamily> CTable<F> {
    pub fn hook_chain(&self, hook: Hook) -> Option<&CChain<F>> {
        self.hooks[hook as usize].map(|i| &self.chains[usize::from(i)])
    }
}

/// The whole compiled rule set of one family (IPv4 unless said otherwise:
/// `CompiledRuleSet<V6>`).
#[derive(Debug)]
pub struct CompiledRuleSet<F: AddrFamily = V4> {
    /// By `Table as usize`; a table the rules do not define is absent (its
    /// hooks accept everything, as an unloaded table does in Linux).
    pub tables: [Option<CTable<F>>; 4],
    /// The interface names, by index, that `-i`/`-o` were resolved against.
    pub ifaces: Box<[String]>,
    pub logs: Box<[Log]>,
    /// Counter slots: one per rule and one per chain (its policy, for a
    /// built-in chain), laid out as [`CounterLayout`] says.
    pub counters: u32,
    /// The live packet and byte counters of those slots: one stripe per
    /// worker, readable by the control plane while the workers count.
    pub live: RuleCounters,
    /// Token buckets of `-m limit`, shared by all workers (one small lock
    /// per rule, as the kernel's xt_limit has).
    pub limits: Box<[LimitBucket]>,
    /// A rule uses `-m addrtype`: the pipeline fills
    /// [`PacketView::addr_types`] before each table runs.
    pub uses_addrtype: bool,
    /// A rule uses `-m conntrack` beyond the state: the pipeline fills
    /// [`PacketView::ct`].
    pub uses_ct_tuple: bool,
    /// A rule uses `--ctexpire`: the pipeline fills [`CtView::expires`].
    pub uses_ct_expire: bool,
}

/// One `-m limit` token bucket, in nanoseconds of credit (the kernel's
/// algorithm: credit grows with elapsed time up to cost * burst; a packet
/// matches when at least `cost` is there, and takes it).
#[derive(Debug, Default)]
pub struct LimitBucket {
    state: Mutex<BucketState>,
}

#[derive(Debug, Default)]
struct BucketState {
    started: bool,
    credit: u64,
    prev: u64,
}

impl LimitBucket {
    /// Takes one packet's cost at time `now` (ns); whether it matched.
    pub fn take(&self, limit: &Limit, now: u64) -> bool {
        // avg is in 1/10000 s = 100 µs.
        let cost = u64::from(limit.avg) * 100_000;
        let cap = cost.saturating_mul(u64::from(limit.burst));
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        if !st.started {
            st.started = true;
            st.credit = cap;
            st.prev = now;
        }
        let elapsed = now.saturating_sub(st.prev);
        st.prev = now.max(st.prev);
        st.credit = st.credit.saturating_add(elapsed).min(cap);
        if st.credit >= cost {
            st.credit -= cost;
            true
        } else {
            false
        }
    }
}

/// One counter slot: packets and bytes.
#[derive(Debug, Default)]
pub struct Counter {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    /// The current values. Relaxed: independent statistics; a reader may
    /// see a packet counted before its bytes, which is harmless.
    pub fn get(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// How many per-worker stripes a rule set's counters have. Worker `w`
/// counts in stripe `w % COUNTER_STRIPES`: with at most this many workers
/// every stripe has a single writer.
pub const COUNTER_STRIPES: usize = 64;

/// The live counters of a compiled rule set, without a lock on the packet
/// path.
///
/// - Each worker counts in its own stripe (an `Arc<[Counter]>`, allocated the
///   first time the worker picks up the rule set, off the packet path) and is
///   that stripe's only writer, so it updates with a Relaxed load and store
///   (no read-modify-write, no `lock` prefix: the same instructions as a
///   plain `u64` add).
/// - `base` belongs to the control plane (its only writer, which must
///   serialise its own calls): counters carried over from the previous rule
///   set on reload, and the wrapping offsets that `zero` subtracts.
/// - A slot's value is `base + sum(stripes)` in wrapping arithmetic, read with
///   Relaxed loads: each counter is an independent statistic, and nothing
///   else is published through them.
#[derive(Debug)]
pub struct RuleCounters {
    len: usize,
    stripes: Box<[OnceLock<Arc<[Counter]>>]>,
    base: Box<[Counter]>,
}

impl RuleCounters {
    pub fn new(len: usize) -> RuleCounters {
        RuleCounters {
            len,
            stripes: (0..COUNTER_STRIPES).map(|_| OnceLock::new()).collect(),
            base: (0..len).map(|_| Counter::default()).collect(),
        }
    }

    fn slots(len: usize) -> Arc<[Counter]> {
        (0..len).map(|_| Counter::default()).collect()
    }

    /// Worker `w`'s stripe (created on first use; not for the packet path).
    pub fn stripe(&self, w: usize) -> Arc<[Counter]> {
        Arc::clone(self.stripes[w % COUNTER_STRIPES].get_or_init(|| Self::slots(self.len)))
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One slot's packets and bytes, summed over the workers.
    pub fn total(&self, slot: usize) -> (u64, u64) {
        let Some(b) = self.base.get(slot) else {
            return (0, 0);
        };
        let (mut p, mut by) = b.get();
        for s in self.stripes.iter().filter_map(OnceLock::get) {
            if let Some(c) = s.get(slot) {
                let (cp, cb) = c.get();
                p = p.wrapping_add(cp);
                by = by.wrapping_add(cb);
            }
        }
        (p, by)
    }

    /// Every slot's packets and bytes, summed over the workers.
    pub fn totals(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self.base.iter().map(Counter::get).collect();
        for s in self.stripes.iter().filter_map(OnceLock::get) {
            for (o, c) in out.iter_mut().zip(s.iter()) {
                let (cp, cb) = c.get();
                o.0 = o.0.wrapping_add(cp);
                o.1 = o.1.wrapping_add(cb);
            }
        }
        out
    }

    /// Adds to a slot's base (control plane only: the single writer of
    /// `base`; calls must not run concurrently).
    pub fn add_base(&self, slot: usize, (packets, bytes): (u64, u64)) {
        if let Some(b) = self.base.get(slot) {
            // Relaxed load + store: the control plane is the only writer.
            b.packets.store(
                b.packets.load(Ordering::Relaxed).wrapping_add(packets),
                Ordering::Relaxed,
            );
            b.bytes.store(
                b.bytes.load(Ordering::Relaxed).wrapping_add(bytes),
                Ordering::Relaxed,
            );
        }
    }

    /// Makes a slot read 0 from now on (packets counted while this runs may
    /// or may not be kept, as with `iptables -Z`). Control plane only, as
    /// [`RuleCounters::add_base`].
    pub fn zero(&self, slot: usize) {
        let (p, b) = self.total(slot);
        self.add_base(slot, (p.wrapping_neg(), b.wrapping_neg()));
    }
}

/// Why a rule set does not compile (the control plane's checks prevent
/// all of these for rule sets it parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    TooManyInterfaces(usize),
    MissingChain {
        table: Table,
        chain: String,
    },
    TooManyChains(Table),
    /// A `-m set` names a set that does not exist.
    MissingSet(String),
    /// A rule of the other family (an IPv6 address in an IPv4 rule set,
    /// a set in an IPv6 one): what is wrong.
    WrongFamily(&'static str),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::TooManyInterfaces(n) => {
                write!(f, "{n} interfaces; at most {MAX_IFACES} are supported")
            }
            CompileError::MissingChain { table, chain } => {
                write!(f, "table {}: jump to missing chain {chain}", table.name())
            }
            CompileError::TooManyChains(t) => write!(f, "table {}: too many chains", t.name()),
            CompileError::MissingSet(name) => write!(f, "Set {name} doesn't exist."),
            CompileError::WrongFamily(what) => {
                write!(f, "{what} of the other address family")
            }
        }
    }
}

impl std::error::Error for CompileError {}

fn iface_test(m: &Option<Inv<IfaceMatch>>, ifaces: &[String]) -> IfaceTest {
    let Some(m) = m else {
        return IfaceTest::ANY;
    };
    let set = ifaces
        .iter()
        .enumerate()
        .filter(|(_, n)| m.value.matches(n))
        .fold(0u64, |s, (i, _)| s | 1 << i);
    IfaceTest {
        set: IfaceSet(set),
        invert: m.invert,
        any: false,
    }
}

fn compile_match<F: AddrFamily>(
    m: &Match,
    limits: &mut u32,
    sets: &SetTable,
    state: &MatchTables,
) -> Result<Option<CMatch<F>>, CompileError> {
    // Sets hold IPv4 addresses; conntrack's tuples are read as IPv4.
    if F::FAMILY == Family::Ipv6 {
        match m {
            Match::Set(_) => return Err(CompileError::WrongFamily("-m set")),
            Match::Recent(_) => return Err(CompileError::WrongFamily("-m recent")),
            Match::Connlimit(_) => return Err(CompileError::WrongFamily("-m connlimit")),
            Match::Hashlimit(_) => return Err(CompileError::WrongFamily("-m hashlimit")),
            Match::Conntrack(c) if c.addrs.iter().any(Option::is_some) => {
                return Err(CompileError::WrongFamily("-m conntrack address"))
            }
            _ => {}
        }
    }
    Ok(Some(match m {
        Match::Tcp(t) => {
            // A tcp match becomes a ports test and, with --tcp-flags, a flags test;
            // the flags test is emitted separately by the caller.
            CMatch::Ports {
                sport: PortTest::from(t.ports.sport),
                dport: PortTest::from(t.ports.dport),
            }
        }
        Match::Udp(u) => CMatch::Ports {
            sport: PortTest::from(u.sport),
            dport: PortTest::from(u.dport),
        },
        Match::Icmp(i) => match i.value {
            IcmpType::Any => CMatch::Icmp {
                ty: 0,
                code_lo: 0,
                code_hi: 0,
                any: true,
                invert: i.invert,
            },
            IcmpType::Type {
                ty,
                code_lo,
                code_hi,
            } => CMatch::Icmp {
                ty,
                code_lo,
                code_hi,
                any: false,
                invert: i.invert,
            },
        },
        Match::Multiport(mp) => CMatch::Multiport {
            dir: mp.dir,
            ports: mp.ports.clone().into_boxed_slice(),
            invert: mp.invert,
        },
        Match::State(s) => CMatch::CtState {
            bits: s.value.0,
            invert: s.invert,
        },
        Match::Conntrack(m) => match (m.state_only(), m.state) {
            (Some(s), _) => CMatch::CtState {
                bits: s.value.0,
                invert: s.invert,
            },
            (None, None) if *m == CtMatch::default() => return Ok(None),
            _ => CMatch::Conntrack(Box::new(*m)),
        },
        Match::Comment(_) => return Ok(None),
        Match::Dscp(d) => CMatch::Dscp {
            dscp: d.value,
            invert: d.invert,
        },
        Match::Mark(m) => CMatch::Mark {
            value: m.value.value,
            mask: m.value.mask,
            invert: m.invert,
        },
        Match::Limit(l) => {
            *limits += 1;
            CMatch::Limit {
                limit: *l,
                slot: *limits - 1,
            }
        }
        Match::IpRange(r) => CMatch::IpRange {
            src: RangeTest::of::<F, _>(r.src, F::ip4)?,
            dst: RangeTest::of::<F, _>(r.dst, F::ip4)?,
        },
        Match::IpRange6(r) => CMatch::IpRange {
            src: RangeTest::of::<F, _>(r.src, F::ip6)?,
            dst: RangeTest::of::<F, _>(r.dst, F::ip6)?,
        },
        Match::Ipv6Header(h) => CMatch::Ipv6Header(*h),
        Match::Frag(f) => CMatch::Frag(*f),
        Match::Rt(r) => CMatch::Rt(*r),

        Match::Length(l) => CMatch::Length {
            lo: l.value.lo,
            hi: l.value.hi,
            invert: l.invert,
        },
        Match::Ttl(t) => CMatch::Ttl(*t),
        Match::Tos(t) => CMatch::Tos {
            value: t.value.value,
            mask: t.value.mask,
            invert: t.invert,
        },
        Match::Connmark(m) => CMatch::Connmark {
            value: m.value.value,
            mask: m.value.mask,
            invert: m.invert,
        },
        Match::Addrtype(a) => CMatch::Addrtype(*a),
        Match::Recent(r) => CMatch::Recent(Box::new(RecentTest {
            table: state.recent.table(&r.name, r.hitcount),
            m: r.clone(),
        })),
        Match::Connlimit(c) => CMatch::Connlimit(Box::new(ConnlimitTest {
            table: Arc::new(state.connlimit_table()),
            m: *c,
        })),
        Match::Hashlimit(h) => CMatch::Hashlimit(Box::new(HashlimitTest {
            table: state.hashlimit.table(h),
            above: h.above,
        })),
        Match::Set(m) => CMatch::Set {
            slot: sets
                .slot(&m.name)
                .ok_or_else(|| CompileError::MissingSet(m.name.clone()))?,
            opts: LookupOpts {
                flags: m.flags,
                return_nomatch: m.return_nomatch,
                update_counters: m.update_counters,
                packets: m.packets,
                bytes: m.bytes,
            },
            invert: m.invert,
        },
    }))
}

/// Compiles a validated rule set for a gateway whose interfaces are `ifaces`
/// (by index: the index a packet's input/output interface carries).
pub fn compile(set: &RuleSet, ifaces: &[&str]) -> Result<CompiledRuleSet, CompileError> {
    compile_with_sets(set, ifaces, &SetTable::default())
}

/// [`compile`] for a gateway whose sets are `sets`: `-m set` matches are
/// resolved to their slots there (as the kernel resolves a set's name to
/// its index when the rule is loaded).
pub fn compile_with_sets(
    set: &RuleSet,
    ifaces: &[&str],
    sets: &SetTable,
) -> Result<CompiledRuleSet, CompileError> {
    compile_family(set, ifaces, sets, &MatchTables::default())
}

/// [`compile_with_sets`] taking the stateful matches' tables from `state`
/// (a gateway's: named tables outlive a reload that still names them, and
/// `-m connlimit` counts in its connection table).
pub fn compile_for_gateway(
    set: &RuleSet,
    ifaces: &[&str],
    sets: &SetTable,
    state: &MatchTables,
) -> Result<CompiledRuleSet, CompileError> {
    compile_family(set, ifaces, sets, state)
}

/// Compiles an IPv6 (ip6tables) rule set.
pub fn compile6(set: &RuleSet, ifaces: &[&str]) -> Result<CompiledRuleSet<V6>, CompileError> {
    compile_family(set, ifaces, &SetTable::default(), &MatchTables::default())
}

/// Compiles a rule set of family `F`: the addresses of `F` in its rules
/// (`Rule::src`/`dst` for IPv4, `src6`/`dst6` for IPv6).
pub fn compile_family<F: AddrFamily>(
    set: &RuleSet,
    ifaces: &[&str],
    sets: &SetTable,
    state: &MatchTables,
) -> Result<CompiledRuleSet<F>, CompileError> {
    if ifaces.len() > MAX_IFACES {
        return Err(CompileError::TooManyInterfaces(ifaces.len()));
    }
    let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
    let mut tables: [Option<CTable<F>>; 4] = Default::default();
    let mut logs = Vec::new();
    let layout = CounterLayout::of(set);
    let mut limits = 0u32;
    for (ti, t) in set.tables.iter().enumerate() {
        if t.chains.len() > usize::from(u16::MAX) {
            return Err(CompileError::TooManyChains(t.table));
        }
        let index = |name: &str| -> Result<u16, CompileError> {
            t.chains
                .iter()
                .position(|c| c.name == name)
                .map(|i| i as u16)
                .ok_or_else(|| CompileError::MissingChain {
                    table: t.table,
                    chain: name.to_string(),
                })
        };
        let mut hooks = [None; 5];
        let mut chains = Vec::with_capacity(t.chains.len());
        for (ci, c) in t.chains.iter().enumerate() {
            if let Some(h) = c.hook {
                hooks[h as usize] = Some(ci as u16);
            }
            let mut rules = Vec::with_capacity(c.rules.len());
            for (ri, r) in c.rules.iter().enumerate() {
                let mut matches = Vec::with_capacity(r.matches.len() + 1);
                for m in &r.matches {
                    if let Some(cm) = compile_match(m, &mut limits, sets, state)? {
                        matches.push(cm);
                    }
                    if let Match::Tcp(tm) = m {
                        if let Some(f) = tm.flags {
                            matches.push(CMatch::TcpFlags {
                                mask: f.value.mask,
                                comp: f.value.comp,
                                invert: f.invert,
                            });
                        }
                    }
                }
                let target = match &r.target {
                    Target::None => CTarget::Continue,
                    Target::Accept => CTarget::Accept,
                    Target::Drop => CTarget::Drop,
                    Target::Return => CTarget::Return,
                    Target::Jump(c) => CTarget::Jump(index(c)?),
                    Target::Goto(c) => CTarget::Goto(index(c)?),
                    Target::Reject(w) => CTarget::Reject(*w),
                    Target::Log(l) => {
                        logs.push(l.clone());
                        CTarget::Log(logs.len() as u32 - 1)
                    }
                    Target::Masquerade(n) => CTarget::Masquerade(*n),
                    Target::Snat(n) => CTarget::Snat(nat_range::<F, _>(n, F::ip4)?),
                    Target::Dnat(n) => CTarget::Dnat(nat_range::<F, _>(n, F::ip4)?),
                    Target::Snat6(n) => CTarget::Snat(nat_range::<F, _>(n, F::ip6)?),
                    Target::Dnat6(n) => CTarget::Dnat(nat_range::<F, _>(n, F::ip6)?),
                    Target::Redirect(n) => CTarget::Redirect(*n),
                    Target::Dscp(d) => CTarget::Dscp(*d),
                    Target::Notrack | Target::CtNotrack => CTarget::Notrack,
                    Target::Mark { value, mask } => CTarget::Mark {
                        value: *value,
                        mask: *mask,
                    },
                    Target::Ttl(t) => CTarget::Ttl(*t),
                    Target::Tos(t) => CTarget::Tos(*t),
                    Target::Connmark(op) => CTarget::Connmark(*op),
                    Target::Tcpmss(op) => CTarget::Tcpmss(*op),
                };
                // What the fast path cannot replay: per-packet fields
                // (flags, TOS, TTL, length, ICMP type), the connection's
                // mark (another packet may change it), sets (they change at
                // run time), limits, LOG, and TTL/TOS/CONNMARK/TCPMSS edits
                // (a cached flow only rewrites the DSCP). Except a rule
                // only SYNs match (`--syn`, the MSS clamp's `--tcp-flags
                // SYN,RST SYN`): the fast path takes no SYN, so for every
                // packet it takes such a rule fails, as it failed for the
                // packet whose traversal was cached — unless a match with
                // a side effect (a limit, `recent`, a count) runs too.
                let syn_only = matches.iter().any(|m| {
                    matches!(m, CMatch::TcpFlags { mask, comp, invert: false }
                        if mask & comp & TCP_FLAG_SYN != 0)
                });
                let side_effect = matches.iter().any(|m| {
                    matches!(
                        m,
                        CMatch::Limit { .. }
                            | CMatch::Recent(_)
                            | CMatch::Connlimit(_)
                            | CMatch::Hashlimit(_)
                    )
                });
                let never_fast = syn_only && !side_effect;
                let volatile = !never_fast
                    && (matches!(
                        target,
                        CTarget::Log(_)
                            | CTarget::Ttl(_)
                            | CTarget::Tos(_)
                            | CTarget::Connmark(_)
                            | CTarget::Tcpmss(_)
                    ) || matches.iter().any(|m| {
                        matches!(
                            m,
                            CMatch::TcpFlags { .. }
                                | CMatch::Dscp { .. }
                                | CMatch::Icmp { .. }
                                | CMatch::Limit { .. }
                                | CMatch::Length { .. }
                                | CMatch::Ttl(_)
                                | CMatch::Tos { .. }
                                | CMatch::Connmark { .. }
                                | CMatch::Set { .. }
                                | CMatch::Recent(_)
                                | CMatch::Connlimit(_)
                                | CMatch::Hashlimit(_)
                                | CMatch::Conntrack(_)
                                | CMatch::Ipv6Header(_)
                                | CMatch::Frag(_)
                                | CMatch::Rt(_)
                        )
                    }));
                rules.push(CRule {
                    volatile,
                    src: F::addr_match(r, true),
                    dst: F::addr_match(r, false),
                    in_iface: iface_test(&r.in_iface, &ifaces),
                    out_iface: iface_test(&r.out_iface, &ifaces),
                    proto: r.protocol.map_or(
                        ProtoTest {
                            proto: 0,
                            invert: false,
                            any: true,
                        },
                        |p| ProtoTest {
                            proto: p.value,
                            invert: p.invert,
                            any: false,
                        },
                    ),
                    matches: matches.into_boxed_slice(),
                    target,
                    counter: layout.rule(ti, ci, ri).unwrap_or(u32::MAX),
                });
            }
            chains.push(CChain {
                name: c.name.clone(),
                policy: c.policy,
                index: CChain::indexed(&rules, INDEX_MIN_RULES),
                rules: rules.into_boxed_slice(),
                counter: layout.chain(ti, ci).unwrap_or(u32::MAX),
            });
        }
        tables[t.table as usize] = Some(CTable {
            table: t.table,
            chains: chains.into_boxed_slice(),
            hooks,
        });
    }
    Ok(CompiledRuleSet {
        tables,
        ifaces: ifaces.into_boxed_slice(),
        logs: logs.into_boxed_slice(),
        counters: layout.len(),
        live: RuleCounters::new(layout.len() as usize),
        limits: (0..limits).map(|_| LimitBucket::default()).collect(),
        uses_ct_tuple: set.tables.iter().any(|t| {
            t.chains.iter().any(|c| {
                c.rules.iter().any(|r| {
                    r.matches.iter().any(|m| match m {
                        Match::Conntrack(c) => c.state_only().is_none(),
                        // connlimit counts the connection's tuple.
                        Match::Connlimit(_) => true,
                        _ => false,
                    })
                })
            })
        }),
        uses_ct_expire: set.tables.iter().any(|t| {
            t.chains.iter().any(|c| {
                c.rules.iter().any(|r| {
                    r.matches
                        .iter()
                        .any(|m| matches!(m, Match::Conntrack(c) if c.expires.is_some()))
                })
            })
        }),
        uses_addrtype: set.tables.iter().any(|t| {
            t.chains.iter().any(|c| {
                c.rules
                    .iter()
                    .any(|r| r.matches.iter().any(|m| matches!(m, Match::Addrtype(_))))
            })
        }),
    })
}

/// A NAT target's range in `F`'s addresses.
fn nat_range<F: AddrFamily, I: Copy>(
    n: &NatRange<I>,
    conv: impl Fn(I) -> Option<F::Ip>,
) -> Result<NatRange<F::Ip>, CompileError> {
    let addrs = match n.addrs {
        None => None,
        Some(r) => match (conv(r.lo), conv(r.hi)) {
            (Some(lo), Some(hi)) => Some(AddrRange { lo, hi }),
            _ => return Err(CompileError::WrongFamily("a NAT address")),
        },
    };
    Ok(NatRange {
        addrs,
        ports: n.ports,
    })
}

impl<F: AddrFamily> CompiledRuleSet<F> {
    pub fn table(&self, table: Table) -> Option<&CTable<F>> {
        self.tables[table as usize].as_ref()
    }

    /// Whether a rule matches against set `slot`.
    pub fn uses_set(&self, slot: u16) -> bool {
        self.tables.iter().flatten().any(|t| {
            t.chains.iter().any(|c| {
                c.rules.iter().any(|r| {
                    r.matches
                        .iter()
                        .any(|m| matches!(m, CMatch::Set { slot: s, .. } if *s == slot))
                })
            })
        })
    }

    /// How many rules match against set `slot` (`References` of `ipset list`).
    pub fn set_refs(&self, slot: u16) -> usize {
        self.tables
            .iter()
            .flatten()
            .flat_map(|t| t.chains.iter())
            .flat_map(|c| c.rules.iter())
            .flat_map(|r| r.matches.iter())
            .filter(|m| matches!(m, CMatch::Set { slot: s, .. } if *s == slot))
            .count()
    }

    /// Indexes the chains of at least `min_rules` rules, and walks the
    /// others rule by rule (`usize::MAX`: none indexed, every walk is the
    /// linear one). Compiling indexes at [`INDEX_MIN_RULES`].
    pub fn set_index_min_rules(&mut self, min_rules: usize) {
        for t in self.tables.iter_mut().flatten() {
            for c in t.chains.iter_mut() {
                c.index = CChain::indexed(&c.rules, min_rules);
            }
        }
    }

    /// The memory the chains' indexes take, in bytes.
    pub fn index_bytes(&self) -> usize {
        self.tables
            .iter()
            .flatten()
            .flat_map(|t| t.chains.iter())
            .filter_map(|c| c.index.as_ref())
            .map(|i| i.bytes())
            .sum()
    }

    /// The index of an interface name, if the rule set was compiled for it.
    pub fn iface_index(&self, name: &str) -> Option<u8> {
        self.ifaces.iter().position(|n| n == name).map(|i| i as u8)
    }
}

/// What rules look at in a packet, filled once by the pipeline. The
/// non-terminal targets (MARK, DSCP, NOTRACK) change it as they run, so that
/// later rules see their effect, and the pipeline applies it afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketView<F: AddrFamily = V4> {
    pub src: F::Addr,
    pub dst: F::Addr,
    pub proto: u8,
    pub in_iface: Option<u8>,
    pub out_iface: Option<u8>,
    /// TCP/UDP ports are present (a first fragment or whole datagram).
    pub has_ports: bool,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags; meaningful with proto 6 and `has_ports`.
    pub tcp_flags: u8,
    /// ICMP type and code, when proto is 1 and the header is present.
    pub icmp: Option<(u8, u8)>,
    /// Bits of [`crate::rule::CtStates`]: the state and the SNAT/DNAT virtual states.
    pub ct_bits: u8,
    /// The TOS byte (DSCP and ECN).
    pub tos: u8,
    pub ttl: u8,
    pub mark: u32,
    /// The connection's mark (0 without a connection).
    pub ctmark: u32,
    /// Set by CONNMARK: the connection's mark must be written back.
    pub ctmark_changed: bool,
    /// Set by TCPMSS: the smallest `--set-mss` of the rules that ran.
    pub mss_set: Option<u16>,
    /// Set by TCPMSS `--clamp-mss-to-pmtu`.
    pub mss_clamp: bool,
    /// The packet's connection as `-m conntrack` sees it: the original and
    /// reply tuples, status and direction; filled only for rule sets that
    /// look at more than the state.
    pub ct: Option<CtView<F::Addr>>,
    /// The route types (`AddrType`) of the source and destination: as any
    /// interface sees them, as the input and as the output interface does
    /// (`[src, dst, src_in, dst_in, src_out, dst_out]`); filled only for
    /// rule sets with `-m addrtype`.
    pub addr_types: [u8; 6],
    pub len: u16,
    /// Set by DSCP and TOS: the packet's TOS byte must be rewritten.
    pub tos_changed: bool,
    /// Set by NOTRACK / CT --notrack.
    pub notrack: bool,
    /// The family's own fields ([`Ip6Fields`] for IPv6; nothing for IPv4).
    pub extra: F::Extra,
}

/// A connection as `-m conntrack` reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtView<A = u32> {
    pub proto: u8,
    /// Original, then reply: (source, destination, source port,
    /// destination port); ports 0 for protocols without them, ICMP's id as
    /// the original source and reply destination "port" (Linux's
    /// `src.u.all`).
    pub tuples: [(A, A, u16, u16); 2],
    /// Linux's `IPS_*` bits: EXPECTED 1, SEEN_REPLY 2, ASSURED 4, CONFIRMED 8.
    pub status: u16,
    pub reply_dir: bool,
    /// Seconds until the entry expires (`nf_ct_expires / HZ`); filled only
    /// for rule sets with `--ctexpire`. 0 for a connection not yet
    /// confirmed (the kernel's relative timeout minus the clock).
    pub expires: u32,
}

impl<F: AddrFamily> PacketView<F> {
    /// Whether the packet has a connection (Linux's `nf_ct_get` is not
    /// NULL): tracked, and neither INVALID nor UNTRACKED.
    #[inline]
    pub fn has_conn(&self) -> bool {
        self.ct_bits & (CtStates::INVALID | CtStates::UNTRACKED) == 0
            && self.ct_bits & (CtStates::NEW | CtStates::RELATED | CtStates::ESTABLISHED) != 0
    }
}

/// `conntrack_mt` (revision 3) of a match with more than the state.
fn ct_matches<F: AddrFamily>(m: &CtMatch, p: &PacketView<F>) -> bool {
    if let Some(s) = m.state {
        if (p.ct_bits & s.value.0 != 0) == s.invert {
            return false;
        }
    }
    let (Some(ct), true) = (p.ct, p.has_conn()) else {
        // No connection: only a state can have matched.
        return m.state.is_some();
    };
    if m.dir_reply.is_some_and(|r| r != ct.reply_dir) {
        return false;
    }
    if m.proto
        .is_some_and(|pr| (ct.proto == pr.value) == pr.invert)
    {
        return false;
    }
    for i in 0..4 {
        if let Some(a) = F::ct_addr(m, i) {
            let (src, dst, _, _) = ct.tuples[i / 2];
            let addr = if i % 2 == 0 { src } else { dst };
            if !a.matches(addr) {
                return false;
            }
        }
    }
    for (i, r) in m.ports.iter().enumerate() {
        if let Some(r) = r {
            let (_, _, sp, dp) = ct.tuples[i / 2];
            let port = if i % 2 == 0 { sp } else { dp };
            if (r.value.lo <= port && port <= r.value.hi) == r.invert {
                return false;
            }
        }
    }
    if m.status
        .is_some_and(|st| (st.value & ct.status != 0) == st.invert)
    {
        return false;
    }
    if let Some(e) = m.expires {
        let (lo, hi) = e.value;
        if (lo <= ct.expires && ct.expires <= hi) == e.invert {
            return false;
        }
    }
    true
}

/// How a chain traversal ended (`A`: the family's addresses, in NAT
/// decisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<A = Ipv4Addr> {
    Accept,
    Drop,
    /// Dropped by a chain's policy (counted apart from rule drops).
    PolicyDrop,
    Reject(RejectWith),
    /// A NAT target matched: the connection is to be translated as it says.
    Nat(NatAction<A>),
}

/// The NAT decision of a rule (SNAT/MASQUERADE/DNAT/REDIRECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatAction<A = Ipv4Addr> {
    Masquerade(PortNat),
    Snat(NatRange<A>),
    Dnat(NatRange<A>),
    Redirect(PortNat),
}

/// Per-worker scratch and counters for evaluation: no allocation per packet.
#[derive(Debug)]
pub struct EvalState {
    /// Packets and bytes per counter slot of the rule set it was made for:
    /// this worker's stripe of [`CompiledRuleSet::live`].
    pub counters: Arc<[Counter]>,
    stack: Vec<(u16, u32)>,
    /// LOG targets hit by the last traversal (indices into `logs`), at most
    /// [`EvalState::MAX_LOGS`] per packet.
    pub logs: [u32; EvalState::MAX_LOGS],
    pub nlogs: usize,
    /// The gateway's sets as of this worker's batch (`-m set`).
    pub sets: Arc<SetTable>,
}

impl EvalState {
    pub const MAX_LOGS: usize = 8;

    /// Evaluation state counting in stripe 0 (one evaluator per rule set:
    /// tests, tools).
    pub fn new<F: AddrFamily>(rules: &CompiledRuleSet<F>) -> EvalState {
        EvalState::for_worker(rules, 0)
    }

    /// Evaluation state of worker `w`, counting in its own stripe.
    pub fn for_worker<F: AddrFamily>(rules: &CompiledRuleSet<F>, w: usize) -> EvalState {
        let chains = rules
            .tables
            .iter()
            .flatten()
            .map(|t| t.chains.len())
            .max()
            .unwrap_or(0);
        EvalState {
            counters: rules.live.stripe(w),
            stack: Vec::with_capacity(chains + 1),
            logs: [0; EvalState::MAX_LOGS],
            nlogs: 0,
            sets: Arc::default(),
        }
    }

    /// This worker's count for a slot (other workers' are not included:
    /// [`RuleCounters::total`] sums them).
    pub fn counter(&self, slot: u32) -> (u64, u64) {
        self.counters
            .get(slot as usize)
            .map_or((0, 0), Counter::get)
    }

    /// Counts a packet of `len` bytes in `slot` (this worker's stripe).
    #[inline]
    pub fn bump(&self, slot: u32, len: u16) {
        if let Some(c) = self.counters.get(slot as usize) {
            // Relaxed load + store rather than fetch_add: this worker is the
            // stripe's only writer (see `RuleCounters`), so no increment is
            // lost, and no locked instruction is needed. Readers only need
            // each value to be untorn, which atomics guarantee.
            c.packets.store(
                c.packets.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
            c.bytes.store(
                c.bytes.load(Ordering::Relaxed).wrapping_add(u64::from(len)),
                Ordering::Relaxed,
            );
        }
    }
}

impl<F: AddrFamily> CMatch<F> {
    #[inline]
    fn matches(&self, p: &PacketView<F>, cx: &MatchCx<'_>, now: u64) -> bool {
        let limits = cx.limits;
        match self {
            CMatch::Ports { sport, dport } => {
                p.has_ports && sport.matches(p.sport) && dport.matches(p.dport)
            }
            CMatch::TcpFlags { mask, comp, invert } => {
                p.has_ports && ((p.tcp_flags & mask == *comp) != *invert)
            }
            CMatch::Icmp {
                ty,
                code_lo,
                code_hi,
                any,
                invert,
            } => match p.icmp {
                None => false,
                Some((t, c)) => {
                    let hit = *any || (t == *ty && *code_lo <= c && c <= *code_hi);
                    hit != *invert
                }
            },
            CMatch::Multiport { dir, ports, invert } => {
                if !p.has_ports {
                    return false;
                }
                let hit = ports.iter().any(|r| match dir {
                    MultiportDir::Source => r.contains(p.sport),
                    MultiportDir::Destination => r.contains(p.dport),
                    MultiportDir::Either => r.contains(p.sport) || r.contains(p.dport),
                });
                hit != *invert
            }
            CMatch::CtState { bits, invert } => (p.ct_bits & bits != 0) != *invert,
            CMatch::Dscp { dscp, invert } => (p.tos >> 2 == *dscp) != *invert,
            CMatch::Mark {
                value,
                mask,
                invert,
            } => ((p.mark & mask) == *value) != *invert,
            CMatch::Limit { limit, slot } => limits
                .get(*slot as usize)
                .is_some_and(|b| b.take(limit, now)),
            CMatch::IpRange { src, dst } => {
                src.is_none_or(|r| r.matches(p.src)) && dst.is_none_or(|r| r.matches(p.dst))
            }
            CMatch::Length { lo, hi, invert } => (*lo <= p.len && p.len <= *hi) != *invert,
            CMatch::Ttl(t) => t.matches(p.ttl),
            CMatch::Tos {
                value,
                mask,
                invert,
            } => (p.tos & mask == *value) != *invert,
            CMatch::Connmark {
                value,
                mask,
                invert,
            } => p.has_conn() && ((p.ctmark & mask == *value) != *invert),
            CMatch::Conntrack(m) => ct_matches(m, p),
            CMatch::Addrtype(a) => {
                let at = match a.limit {
                    AddrtypeLimit::None => 0,
                    AddrtypeLimit::In => 2,
                    AddrtypeLimit::Out => 4,
                };
                let ok = |m: Option<Inv<u16>>, t: u8| {
                    m.is_none_or(|m| ((m.value >> t) & 1 == 1) != m.invert)
                };
                ok(a.src, p.addr_types[at]) && ok(a.dst, p.addr_types[at + 1])
            }
            CMatch::Set { slot, opts, invert } => match F::set_packet(p) {
                Some(sp) => cx.sets.matches(*slot, &sp, opts, now) != *invert,
                None => false,
            },
            CMatch::Recent(r) => match F::set_packet(p) {
                Some(sp) => {
                    let addr = if r.m.rdest { sp.dst } else { sp.src };
                    // xt_recent reads the TTL as before forwarding.
                    let forwarded = p.in_iface.is_some() && p.out_iface.is_some();
                    let ttl = p.ttl.saturating_add(u8::from(forwarded));
                    r.table.check(&r.m, Ipv4Addr::from(addr), ttl, now)
                }
                None => false,
            },
            CMatch::Connlimit(c) => match F::set_packet(p) {
                Some(sp) => {
                    // connlimit_mt: the key from the packet's header, the
                    // tuple of its connection (or of the packet, untracked).
                    let addr = if c.m.daddr { sp.dst } else { sp.src };
                    let mask = u32::MAX.checked_shl(32 - u32::from(c.m.mask)).unwrap_or(0);
                    let ct_v4 = p.ct.filter(|_| p.has_conn()).and_then(|ct| {
                        let (s, d, sp, dp) = ct.tuples[0];
                        Some((ct.proto, F::as_v4(s)?, F::as_v4(d)?, sp, dp))
                    });
                    let tuple = match ct_v4 {
                        Some((proto, s, d, sp, dp)) => crate::flow::Tuple {
                            src: s,
                            dst: d,
                            sport: sp,
                            dport: dp,
                            proto,
                        },
                        None => crate::flow::Tuple {
                            src: Ipv4Addr::from(sp.src),
                            dst: Ipv4Addr::from(sp.dst),
                            sport: if sp.has_ports { sp.sport } else { 0 },
                            dport: if sp.has_ports { sp.dport } else { 0 },
                            proto: sp.proto,
                        },
                    };
                    match c.table.count(Ipv4Addr::from(addr & mask), &tuple, now) {
                        Some(n) => (n > c.m.limit) != c.m.upto,
                        // A full table: Linux drops the packet (hotdrop);
                        // "above" rules, which refuse, match.
                        None => !c.m.upto,
                    }
                }
                None => false,
            },
            CMatch::Hashlimit(h) => match F::set_packet(p) {
                Some(sp) => {
                    let ports = sp.has_ports.then_some((sp.sport, sp.dport));
                    let key = h.table.key(sp.src, sp.dst, ports);
                    h.table.within(key, now) != h.above
                }
                None => false,
            },
            CMatch::Ipv6Header(h) => F::ip6_fields(&p.extra).is_some_and(|x| h.matches(x.headers)),
            CMatch::Frag(m) => F::ip6_fields(&p.extra)
                .and_then(|x| x.frag.as_ref())
                .is_some_and(|f| m.matches(f)),
            CMatch::Rt(m) => F::ip6_fields(&p.extra)
                .and_then(|x| x.rt.as_ref())
                .is_some_and(|r| m.matches(r)),
        }
    }
}

/// What matches read besides the packet: the rule set's token buckets and
/// the gateway's sets as of this batch.
#[derive(Clone, Copy)]
pub struct MatchCx<'a> {
    pub limits: &'a [LimitBucket],
    pub sets: &'a SetTable,
}

impl<F: AddrFamily> CRule<F> {
    // Always: the evaluator's loop is the hot path, and the trace filter
    // calling it too must not make the compiler outline it there.
    #[inline(always)]
    pub fn matches(&self, p: &PacketView<F>, cx: &MatchCx<'_>, now: u64) -> bool {
        self.src.matches(p.src)
            && self.dst.matches(p.dst)
            && self.proto.matches(p.proto)
            && self.in_iface.matches(p.in_iface)
            && self.out_iface.matches(p.out_iface)
            && self.matches.iter().all(|m| m.matches(p, cx, now))
    }
}

impl<F: AddrFamily> CompiledRuleSet<F> {
    /// Runs the packet through `table`'s chain for `hook` as iptables does:
    /// first match wins, jumps push, goto does not, RETURN and the end of a
    /// user chain pop, the end of a built-in chain (or an empty stack) is
    /// its policy. A table the rule set does not define accepts.
    pub fn eval(
        &self,
        table: Table,
        hook: Hook,
        p: &mut PacketView<F>,
        st: &mut EvalState,
        now: u64,
    ) -> Verdict<F::Ip> {
        self.eval_observed(table, hook, p, st, now, &mut ())
    }

    /// [`CompiledRuleSet::eval`], telling `obs` every rule that matched, every
    /// user chain left at its end and the policy that decided (packet
    /// tracing). With `()` it is `eval`: the calls compile to nothing.
    ///
    /// Chains with an index ([`CChain::index`]) visit only the rules the
    /// index leaves as candidates; what the walk does is the linear walk's
    /// ([`CompiledRuleSet::eval_linear_observed`], its reference): the same
    /// rules matched in the same order, the same counters, the same side
    /// effects. `obs` is told only the candidates as considered.
    pub fn eval_observed<O: EvalObserver<F>>(
        &self,
        table: Table,
        hook: Hook,
        p: &mut PacketView<F>,
        st: &mut EvalState,
        now: u64,
        obs: &mut O,
    ) -> Verdict<F::Ip> {
        self.walk::<O, true>(table, hook, p, st, now, obs)
    }

    /// The linear walk: every rule of every chain visited, in order, as
    /// iptables does (`ipt_do_table`). The reference the indexed walk is
    /// tested against.
    pub fn eval_linear_observed<O: EvalObserver<F>>(
        &self,
        table: Table,
        hook: Hook,
        p: &mut PacketView<F>,
        st: &mut EvalState,
        now: u64,
        obs: &mut O,
    ) -> Verdict<F::Ip> {
        self.walk::<O, false>(table, hook, p, st, now, obs)
    }

    #[inline(always)]
    fn walk<O: EvalObserver<F>, const INDEXED: bool>(
        &self,
        table: Table,
        hook: Hook,
        p: &mut PacketView<F>,
        st: &mut EvalState,
        now: u64,
        obs: &mut O,
    ) -> Verdict<F::Ip> {
        let Some(t) = self.table(table) else {
            return Verdict::Accept;
        };
        let Some(base) = t.hooks[hook as usize] else {
            return Verdict::Accept;
        };
        if t.chains[usize::from(base)].rules.is_empty() {
            // The common case of an unused hook: straight to the policy.
            return self.policy(t, base, p, st, obs);
        }
        st.stack.clear();
        let mut chain = base;
        let mut idx = 0usize;
        // The candidates of the chain being walked, looked up when the walk
        // enters it (or comes back to it).
        let mut enter = INDEXED;
        let mut cursor = None;
        loop {
            let c = &t.chains[usize::from(chain)];
            if INDEXED {
                if enter {
                    enter = false;
                    cursor = c.index.as_ref().and_then(|ix| ix.cursor(p, idx));
                }
                if let Some(cu) = &mut cursor {
                    idx = cu.next_from(idx).unwrap_or(usize::MAX);
                }
            }
            let Some(rule) = c.rules.get(idx) else {
                // End of chain: back to the caller, or the built-in's policy.
                if c.policy.is_none() {
                    obs.chain_end(chain);
                }
                match st.stack.pop() {
                    Some((ch, i)) if c.policy.is_none() => {
                        chain = ch;
                        idx = i as usize;
                        enter = INDEXED;
                        continue;
                    }
                    _ => return self.policy(t, base, p, st, obs),
                }
            };
            idx += 1;
            obs.considered(rule);
            let cx = MatchCx {
                limits: &self.limits,
                sets: &st.sets,
            };
            if !rule.matches(p, &cx, now) {
                continue;
            }
            st.bump(rule.counter, p.len);
            obs.counted(rule.counter);
            obs.rule(chain, idx - 1);
            match &rule.target {
                CTarget::Continue => {}
                CTarget::Accept => return Verdict::Accept,
                CTarget::Drop => return Verdict::Drop,
                CTarget::Reject(w) => return Verdict::Reject(*w),
                CTarget::Return => match st.stack.pop() {
                    Some((ch, i)) => {
                        chain = ch;
                        idx = i as usize;
                        enter = INDEXED;
                    }
                    None => return self.policy(t, base, p, st, obs),
                },
                CTarget::Jump(to) => {
                    if st.stack.len() == st.stack.capacity() {
                        // Deeper than the number of chains: only a loop does that,
                        // and validation refuses loops. Fail closed.
                        return Verdict::Drop;
                    }
                    st.stack.push((chain, idx as u32));
                    chain = *to;
                    idx = 0;
                    enter = INDEXED;
                }
                CTarget::Goto(to) => {
                    chain = *to;
                    idx = 0;
                    enter = INDEXED;
                }
                CTarget::Log(i) => {
                    if st.nlogs < EvalState::MAX_LOGS {
                        st.logs[st.nlogs] = *i;
                        st.nlogs += 1;
                    }
                }
                CTarget::Mark { value, mask } => p.mark = (p.mark & !mask) ^ value,
                CTarget::Dscp(d) => {
                    p.tos = (d << 2) | (p.tos & 0x03);
                    p.tos_changed = true;
                }
                CTarget::Tos(t) => {
                    p.tos = (p.tos & !t.mask) ^ t.value;
                    p.tos_changed = true;
                }
                CTarget::Ttl(t) => p.ttl = t.apply(p.ttl),
                CTarget::Connmark(op) if p.has_conn() => match *op {
                    ConnmarkOp::Set { value, mask } => {
                        p.ctmark = (p.ctmark & !mask) ^ value;
                        p.ctmark_changed = true;
                    }
                    ConnmarkOp::Save { nfmask, ctmask } => {
                        p.ctmark = (p.ctmark & !ctmask) ^ (p.mark & nfmask);
                        p.ctmark_changed = true;
                    }
                    ConnmarkOp::Restore { nfmask, ctmask } => {
                        p.mark = (p.mark & !nfmask) ^ (p.ctmark & ctmask);
                    }
                },
                CTarget::Connmark(_) => {}
                // Each TCPMSS only lowers the MSS: their combined effect is
                // the smallest, applied once (see the pipeline).
                CTarget::Tcpmss(TcpmssOp::Set(v)) => {
                    p.mss_set = Some(p.mss_set.map_or(*v, |m| m.min(*v)));
                }
                CTarget::Tcpmss(TcpmssOp::ClampPmtu) => p.mss_clamp = true,
                CTarget::Notrack => p.notrack = true,
                CTarget::Masquerade(n) => return Verdict::Nat(NatAction::Masquerade(*n)),
                CTarget::Snat(n) => return Verdict::Nat(NatAction::Snat(*n)),
                CTarget::Dnat(n) => return Verdict::Nat(NatAction::Dnat(*n)),
                CTarget::Redirect(n) => return Verdict::Nat(NatAction::Redirect(*n)),
            }
        }
    }

    fn policy<O: EvalObserver<F>>(
        &self,
        t: &CTable<F>,
        base: u16,
        p: &PacketView<F>,
        st: &mut EvalState,
        obs: &mut O,
    ) -> Verdict<F::Ip> {
        let c = &t.chains[usize::from(base)];
        st.bump(c.counter, p.len);
        obs.counted(c.counter);
        let v = match c.policy {
            Some(Policy::Drop) => Verdict::PolicyDrop,
            _ => Verdict::Accept,
        };
        obs.policy(base, v);
        v
    }
}

/// What [`CompiledRuleSet::eval_observed`] reports while it walks the
/// chains; chains are indices into the table's chains, rules into the
/// chain's rules (both as in the [`RuleSet`] the set was compiled from).
/// Every method does nothing unless implemented: packet tracing observes
/// the rules, chain ends and policies; the fast path's recording the rules
/// considered and the counter slots bumped.
pub trait EvalObserver<F: AddrFamily = V4> {
    /// A rule is about to be matched against the packet.
    #[inline(always)]
    fn considered(&mut self, _rule: &CRule<F>) {}
    /// A counter slot was bumped (a rule matched, or a policy decided).
    #[inline(always)]
    fn counted(&mut self, _slot: u32) {}
    /// A rule matched (whatever its target: terminal, jump, LOG, ...).
    #[inline(always)]
    fn rule(&mut self, _chain: u16, _rule: usize) {}
    /// A user chain ended without a verdict: back to its caller.
    #[inline(always)]
    fn chain_end(&mut self, _chain: u16) {}
    /// The built-in chain's policy decided.
    #[inline(always)]
    fn policy(&mut self, _chain: u16, _verdict: Verdict<F::Ip>) {}
}

/// No observer: what plain [`CompiledRuleSet::eval`] uses.
impl<F: AddrFamily> EvalObserver<F> for () {}

/// An address as the compiled tests take it.
#[inline]
pub fn addr_u32(a: Ipv4Addr) -> u32 {
    u32::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::*;

    fn rule_set() -> RuleSet {
        let mut filter = TableRules::empty(Table::Filter);
        filter.chains.push(Chain {
            name: "LOGDROP".into(),
            hook: None,
            policy: None,
            counters: Counters::default(),
            rules: vec![
                Rule::new(Target::Log(Log {
                    level: 4,
                    prefix: "x".into(),
                })),
                Rule::new(Target::Drop),
            ],
        });
        let mut r = Rule::new(Target::Jump("LOGDROP".into()));
        r.in_iface = Some(Inv::plain(IfaceMatch {
            name: "lan+".into(),
        }));
        r.src = Some(Inv::new(
            Ipv4Net::with_prefix(Ipv4Addr::new(192, 168, 10, 0), 24).expect("net"),
            true,
        ));
        r.matches.push(Match::Comment("hi".into()));
        r.matches.push(Match::Limit(Limit::DEFAULT));
        filter.chains[1].rules.push(r);
        RuleSet {
            tables: vec![filter],
        }
    }

    #[test]
    fn resolves_chains_interfaces_and_slots() {
        let c = compile(&rule_set(), &["wan0", "lan0", "lan1"]).expect("compile");
        let t = c.table(Table::Filter).expect("filter");
        let fwd = t.hook_chain(Hook::Forward).expect("FORWARD");
        let r = &fwd.rules[0];
        assert_eq!(r.target, CTarget::Jump(3));
        assert_eq!(r.in_iface.set, IfaceSet(0b110));
        assert!(r.in_iface.matches(Some(1)) && !r.in_iface.matches(Some(0)));
        assert!(!r.in_iface.matches(None));
        assert!(r.src.matches(u32::from(Ipv4Addr::new(10, 0, 0, 1))));
        assert!(!r.src.matches(u32::from(Ipv4Addr::new(192, 168, 10, 7))));
        // The comment compiles to nothing; the limit gets a bucket.
        assert_eq!(r.matches.len(), 1);
        assert!(matches!(r.matches[0], CMatch::Limit { slot: 0, .. }));
        assert_eq!(c.limits.len(), 1);
        // 3 rules + 4 chain slots.
        assert_eq!(c.counters, 7);
        assert!(c.table(Table::Nat).is_none());
        assert_eq!(c.logs.len(), 1);
    }

    fn chain(name: &str, rules: Vec<Rule>) -> Chain {
        Chain {
            name: name.into(),
            hook: None,
            policy: None,
            counters: Counters::default(),
            rules,
        }
    }

    fn tcp_dport(port: u16, target: Target) -> Rule {
        let mut r = Rule::new(target);
        r.protocol = Some(Inv::plain(6));
        r.matches.push(Match::Tcp(TcpMatch {
            ports: PortMatch {
                sport: None,
                dport: Some(Inv::plain(PortRange::single(port))),
            },
            flags: None,
        }));
        r
    }

    fn view(dport: u16) -> PacketView {
        PacketView {
            src: u32::from(Ipv4Addr::new(192, 168, 10, 2)),
            dst: u32::from(Ipv4Addr::new(203, 0, 113, 9)),
            proto: 6,
            in_iface: Some(0),
            out_iface: Some(1),
            has_ports: true,
            sport: 40000,
            dport,
            tcp_flags: 0x02,
            len: 60,
            ..PacketView::default()
        }
    }

    /// FORWARD: -p tcp --dport 22 -j A; -p tcp --dport 23 -g B; -j MARK 7; policy DROP.
    /// A: -p tcp --dport 22 -j RETURN (after a LOG); B: -p tcp --dport 23 -j ACCEPT, else end.
    fn traversal_set() -> CompiledRuleSet {
        let mut filter = TableRules::empty(Table::Filter);
        filter.chains[1].policy = Some(Policy::Drop);
        filter.chains[1].rules = vec![
            tcp_dport(22, Target::Jump("A".into())),
            tcp_dport(24, Target::Goto("B".into())),
            Rule::new(Target::Mark {
                value: 7,
                mask: u32::MAX,
            }),
            tcp_dport(80, Target::Accept),
            tcp_dport(81, Target::Reject(RejectWith::TcpReset)),
        ];
        filter.chains.push(chain(
            "A",
            vec![
                Rule::new(Target::Log(Log {
                    level: 4,
                    prefix: "a".into(),
                })),
                tcp_dport(22, Target::Return),
                Rule::new(Target::Accept),
            ],
        ));
        filter
            .chains
            .push(chain("B", vec![tcp_dport(99, Target::Accept)]));
        compile(
            &RuleSet {
                tables: vec![filter],
            },
            &["lan0", "wan0"],
        )
        .expect("compile")
    }

    #[test]
    fn jump_return_goto_policy_and_counters() {
        let rs = traversal_set();
        let mut st = EvalState::new(&rs);
        let fwd = |p: &mut PacketView, st: &mut EvalState| {
            st.nlogs = 0;
            rs.eval(Table::Filter, Hook::Forward, p, st, 0)
        };
        // 22: into A, LOG, RETURN, then MARK and on to the policy.
        let mut p = view(22);
        assert_eq!(fwd(&mut p, &mut st), Verdict::PolicyDrop);
        assert_eq!(p.mark, 7);
        assert_eq!(st.nlogs, 1);
        // 24: goto B, nothing matches in B, and a goto'd chain's end is the policy.
        let mut p = view(24);
        assert_eq!(fwd(&mut p, &mut st), Verdict::PolicyDrop);
        assert_eq!(p.mark, 0, "goto does not come back");
        let mut p = view(80);
        assert_eq!(fwd(&mut p, &mut st), Verdict::Accept);
        let mut p = view(81);
        assert_eq!(fwd(&mut p, &mut st), Verdict::Reject(RejectWith::TcpReset));
        // A packet without ports never matches a port rule.
        let mut p = view(80);
        p.has_ports = false;
        assert_eq!(fwd(&mut p, &mut st), Verdict::PolicyDrop);
        // Counters: FORWARD rule 0 (22) once, rule 1 (goto) once, MARK for 22/80/81/portless.
        let t = rs.table(Table::Filter).expect("filter");
        let f = t.hook_chain(Hook::Forward).expect("FORWARD");
        let count = |slot: u32| st.counter(slot).0;
        assert_eq!(count(f.rules[0].counter), 1);
        assert_eq!(count(f.rules[1].counter), 1);
        assert_eq!(count(f.rules[2].counter), 4);
        assert_eq!(count(f.counter), 3, "policy hits: 22, 24, portless");
        assert_eq!(st.counter(f.rules[2].counter).1, 240);
        assert_eq!(rs.live.total(f.rules[2].counter as usize), (4, 240));
        rs.live.zero(f.rules[2].counter as usize);
        assert_eq!(rs.live.total(f.rules[2].counter as usize), (0, 0));
        rs.live.add_base(f.rules[2].counter as usize, (2, 3));
        assert_eq!(rs.live.totals()[f.rules[2].counter as usize], (2, 3));
        // Other hooks of the table: INPUT is empty with policy ACCEPT; nat is absent.
        let mut p = view(1);
        assert_eq!(
            rs.eval(Table::Filter, Hook::Input, &mut p, &mut st, 0),
            Verdict::Accept
        );
        assert_eq!(
            rs.eval(Table::Nat, Hook::Prerouting, &mut p, &mut st, 0),
            Verdict::Accept
        );
    }

    /// What an observer saw: `(kind, chain, rule)`.
    #[derive(Default)]
    struct Seen(Vec<(&'static str, u16, usize)>);

    impl EvalObserver for Seen {
        fn rule(&mut self, chain: u16, rule: usize) {
            self.0.push(("rule", chain, rule));
        }
        fn chain_end(&mut self, chain: u16) {
            self.0.push(("end", chain, 0));
        }
        fn policy(&mut self, chain: u16, v: Verdict) {
            let kind = if v == Verdict::PolicyDrop {
                "policy drop"
            } else {
                "policy accept"
            };
            self.0.push((kind, chain, 0));
        }
    }

    #[test]
    fn an_observer_sees_every_matched_rule_chain_end_and_policy() {
        let rs = traversal_set();
        let mut st = EvalState::new(&rs);
        let (fwd, a, b) = (1, 3, 4);
        let mut run = |dport: u16| {
            let mut seen = Seen::default();
            let mut p = view(dport);
            let v = rs.eval_observed(Table::Filter, Hook::Forward, &mut p, &mut st, 0, &mut seen);
            // The same verdict as without an observer.
            let mut q = view(dport);
            assert_eq!(v, rs.eval(Table::Filter, Hook::Forward, &mut q, &mut st, 0));
            (v, seen.0)
        };
        // Jump into A, LOG, RETURN, MARK, the policy.
        assert_eq!(
            run(22),
            (
                Verdict::PolicyDrop,
                vec![
                    ("rule", fwd, 0),
                    ("rule", a, 0),
                    ("rule", a, 1),
                    ("rule", fwd, 2),
                    ("policy drop", fwd, 0)
                ]
            )
        );
        // Goto B, B ends, and the policy decides.
        assert_eq!(
            run(24),
            (
                Verdict::PolicyDrop,
                vec![("rule", fwd, 1), ("end", b, 0), ("policy drop", fwd, 0)]
            )
        );
        assert_eq!(
            run(80),
            (Verdict::Accept, vec![("rule", fwd, 2), ("rule", fwd, 3)])
        );
        // An empty built-in chain: straight to its policy.
        let mut seen = Seen::default();
        let mut p = view(1);
        rs.eval_observed(Table::Filter, Hook::Input, &mut p, &mut st, 0, &mut seen);
        assert_eq!(seen.0, vec![("policy accept", 0, 0)]);
    }

    #[test]
    fn limit_bucket_refills_with_time() {
        let b = LimitBucket::default();
        // 1/sec, burst 2: two at once, then one per second.
        let l = Limit {
            avg: 10_000,
            burst: 2,
        };
        assert!(b.take(&l, 0));
        assert!(b.take(&l, 0));
        assert!(!b.take(&l, 0));
        assert!(!b.take(&l, 999_999_999));
        assert!(b.take(&l, 1_000_000_000));
        assert!(!b.take(&l, 1_000_000_001));
        // Credit never exceeds the burst.
        assert!(b.take(&l, 100_000_000_000));
        assert!(b.take(&l, 100_000_000_000));
        assert!(!b.take(&l, 100_000_000_000));
    }

    #[test]
    fn missing_chain_is_an_error() {
        let mut set = rule_set();
        set.tables[0].chains[0]
            .rules
            .push(Rule::new(Target::Goto("NOPE".into())));
        assert_eq!(
            compile(&set, &[]).err(),
            Some(CompileError::MissingChain {
                table: Table::Filter,
                chain: "NOPE".into()
            })
        );
    }
}
