//! A chain's rules indexed by the header fields they test, so that a
//! packet's walk through a long chain visits only the rules that can match
//! it. After bpf-iptables' Linear Bit Vector Search (Miano et al., CCR
//! 2019), with each field's bit vectors kept as sorted lists of rule
//! numbers, and, instead of ANDing the fields' vectors, the walk taking
//! the shortest field's list and leaving the other tests to the rules
//! themselves (a lookup per field and no vector as long as the chain).
//!
//! For each indexed field (source and destination address, protocol,
//! input and output interface, source and destination port, conntrack
//! state) the field's values are cut into segments on which the same
//! rules accept the packet: a rule that tests the field appears in the
//! lists of the segments its test accepts, a rule that does not test it
//! (or tests it in a shape the index does not take, such as an address
//! under a non-prefix mask) in the field's `wild` list. The rules that can
//! match a packet are, in each field, those of its segment's list and of
//! `wild`; the walk takes the field whose two lists are shortest for the
//! packet and runs the rules of those lists, in order, through the whole
//! [`CRule::matches`] as the linear walk does. A rule the index leaves out
//! would have failed one of the tests the index looked at, before any
//! match with a side effect (a `limit` bucket, a `recent` table): only the
//! tests before the first match that is not known to be free of side
//! effects are indexed, so the rules that are run, their order, their
//! counters and their side effects are the linear walk's.
//!
//! Every field the index reads is fixed during a traversal (no target
//! changes addresses, ports, interfaces or the conntrack state), so a
//! chain's candidates are looked up once per visit of the chain.

use std::collections::BTreeSet;
use std::fmt::Debug;

use super::{AddrFamily, AddrMatch, CMatch, CRule, IfaceTest, PacketView, PortTest, ProtoTest};
use crate::rule::CtStates;

/// Chains with fewer rules are walked linearly: below this, looking the
/// packet up in the index costs more than the rules it skips (measured,
/// `cargo bench -p xdpgw-benches --bench classify -- short_`: blocklist
/// chains of 8 rules cost 31 ns linearly and 36 ns indexed, of 16 rules 37
/// and 35 ns, of 32 rules 75 and 38 ns, of 64 rules 88 and 30 ns).
pub const INDEX_MIN_RULES: usize = 16;

/// The most list entries one field may have per rule of its chain (plus a
/// constant): a range that holds many others (a /8 over many /32s) is in
/// the lists of all their segments. Beyond this, the rules whose ranges
/// cover the most segments are taken as not testing the field (`wild`)
/// until the rest fit.
const ENTRIES_PER_RULE: usize = 16;
const ENTRIES_CONST: usize = 1 << 12;

/// Segments per block of [`Field::top`].
const STRIDE: usize = 16;

/// A lookup whose candidates are this few is taken without trying the
/// chain's other fields.
const FEW: usize = 8;

/// A key the index cuts into segments: addresses, and the small fields
/// (ports, protocol, interface, conntrack state) as `u32`.
pub trait IndexKey: Copy + Ord + Debug + Default + Send + Sync + 'static {
    const MIN: Self;
    /// The next key, if there is one.
    fn succ(self) -> Option<Self>;
    /// The keys `k` with `k & mask == net`, if they are one range (a
    /// prefix mask, and `net` inside it).
    fn prefix_range(net: Self, mask: Self) -> Option<(Self, Self)>;
    /// Bytes of one key in memory.
    const BYTES: usize;
}

macro_rules! index_key {
    ($t:ty) => {
        impl IndexKey for $t {
            const MIN: $t = 0;
            const BYTES: usize = std::mem::size_of::<$t>();
            fn succ(self) -> Option<$t> {
                self.checked_add(1)
            }
            fn prefix_range(net: $t, mask: $t) -> Option<($t, $t)> {
                let host = !mask;
                // A prefix mask's host part is 2^k - 1.
                (host & host.wrapping_add(1) == 0 && net & host == 0).then_some((net, net | host))
            }
        }
    };
}
index_key!(u32);
index_key!(u128);

/// One field's segments and their rules.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field<K> {
    /// The first key of each segment, ascending; the first is `K::MIN`.
    starts: Box<[K]>,
    /// Every [`STRIDE`]th of `starts`: a lookup searches these (a few
    /// cache lines, which stay cached), then one block of `starts`,
    /// rather than all of `starts` (a cache miss at every step once it
    /// outgrows the caches).
    top: Box<[K]>,
    /// Each segment's rules: `(offset, len)` in `rules`.
    spans: Box<[(u32, u32)]>,
    rules: Box<[u32]>,
    /// The rules that do not test the field (or not in a shape the index
    /// takes): candidates whatever the packet's value.
    wild: Box<[u32]>,
    /// The most candidates a value of the field can have.
    worst: usize,
    /// The fewest: a packet whose candidates are no more in another field
    /// needs no lookup in this one.
    least: usize,
}

impl<K: IndexKey> Field<K> {
    /// The field of `n` rules whose accepted keys are `ranges` (inclusive,
    /// a rule's ranges disjoint) and which accept every key if they have
    /// none (`wild`); `None` if it would be too large or selects nothing.
    fn build(n: usize, mut ranges: Vec<(K, K, u32)>, mut wild: Vec<u32>) -> Option<Field<K>> {
        let budget = n.saturating_mul(ENTRIES_PER_RULE) + ENTRIES_CONST;
        let mut bounds = Self::bounds(&ranges);
        // The entries each rule's ranges make (one per segment they cover);
        // the widest rules go to `wild` while there are too many.
        let seg = |b: &[K], k: K| b.partition_point(|s| *s <= k);
        let mut cover = vec![0usize; n];
        for &(lo, hi, r) in &ranges {
            if let Some(c) = cover.get_mut(r as usize) {
                *c += seg(&bounds, hi) - seg(&bounds, lo) + 1;
            }
        }
        let mut total: usize = cover.iter().sum();
        if total > budget {
            let mut widest: Vec<u32> = (0..n as u32).filter(|r| cover[*r as usize] > 0).collect();
            widest.sort_unstable_by_key(|r| std::cmp::Reverse(cover[*r as usize]));
            let mut moved = vec![false; n];
            for r in widest {
                if total <= budget {
                    break;
                }
                total -= cover[r as usize];
                moved[r as usize] = true;
                wild.push(r);
            }
            ranges.retain(|x| !moved[x.2 as usize]);
            wild.sort_unstable();
            bounds = Self::bounds(&ranges);
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_unstable_by_key(|r| r.0);
        let mut ends: Vec<(K, u32)> = ranges.iter().map(|r| (r.1, r.2)).collect();
        ends.sort_unstable();
        let (mut starts, mut spans, mut rules) = (Vec::new(), Vec::new(), Vec::new());
        let mut active = BTreeSet::new();
        let (mut a, mut e) = (0, 0);
        let (mut worst, mut least) = (0, usize::MAX);
        for &b in &bounds {
            let mut changed = starts.is_empty();
            // Ranges ended before `b` leave, then those begun by `b` come in
            // (one rule's ranges are disjoint: it is never in twice).
            while e < ends.len() && ends[e].0 < b {
                active.remove(&ends[e].1);
                e += 1;
                changed = true;
            }
            while a < ranges.len() && ranges[a].0 <= b {
                active.insert(ranges[a].2);
                a += 1;
                changed = true;
            }
            if !changed {
                continue;
            }
            starts.push(b);
            spans.push((rules.len() as u32, active.len() as u32));
            rules.extend(active.iter().copied());
            worst = worst.max(active.len());
            least = least.min(active.len());
        }
        let (worst, least) = (worst + wild.len(), least + wild.len());
        if worst >= n {
            return None;
        }
        Some(Field {
            top: starts.iter().step_by(STRIDE).copied().collect(),
            starts: starts.into_boxed_slice(),
            spans: spans.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
            wild: wild.into_boxed_slice(),
            worst,
            least,
        })
    }

    /// Where segments start: `MIN`, every range's start, and the key after
    /// every range's end.
    fn bounds(ranges: &[(K, K, u32)]) -> Vec<K> {
        let mut bounds: Vec<K> = Vec::with_capacity(ranges.len() * 2 + 1);
        bounds.push(K::MIN);
        bounds.extend(ranges.iter().map(|r| r.0));
        bounds.extend(ranges.iter().filter_map(|r| r.1.succ()));
        bounds.sort_unstable();
        bounds.dedup();
        bounds
    }

    #[inline]
    fn get(&self, k: K) -> Lists<'_> {
        // starts[0] is MIN: the segment is the last start <= k, in the
        // block of the last top <= k.
        let lo = self.top.partition_point(|s| *s <= k).saturating_sub(1) * STRIDE;
        let block = self
            .starts
            .get(lo..(lo + STRIDE).min(self.starts.len()))
            .unwrap_or(&[]);
        let i = lo + block.partition_point(|s| *s <= k).saturating_sub(1);
        let (off, len) = self.spans.get(i).copied().unwrap_or((0, 0));
        Lists {
            wild: &self.wild,
            spec: self
                .rules
                .get(off as usize..(off + len) as usize)
                .unwrap_or(&[]),
        }
    }

    fn bytes(&self) -> usize {
        (self.starts.len() + self.top.len()) * K::BYTES
            + self.spans.len() * 8
            + (self.rules.len() + self.wild.len()) * 4
    }
}

/// The small fields, as the packet gives their key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Small {
    Proto,
    InIface,
    OutIface,
    Sport,
    Dport,
    CtState,
}

/// A port key of a packet without ports: no port range holds it.
const NO_PORTS: u32 = 1 << 16;
/// An interface key of a hook without that interface: no rule's set holds it.
const NO_IFACE: u32 = 64;

/// The conntrack states a packet has: one of the states (or none), and
/// the virtual SNAT/DNAT bits. Only these are indexed; a packet with
/// another combination is looked up in the other fields.
fn ct_keys() -> impl Iterator<Item = u8> {
    [
        0,
        CtStates::INVALID,
        CtStates::NEW,
        CtStates::RELATED,
        CtStates::ESTABLISHED,
        CtStates::UNTRACKED,
    ]
    .into_iter()
    .flat_map(|s| (0..4u8).map(move |v| s | v << 5))
}

impl Small {
    #[inline]
    fn key<F: AddrFamily>(self, p: &PacketView<F>) -> Option<u32> {
        let iface = |i: Option<u8>| match i {
            None => Some(NO_IFACE),
            Some(i) if u32::from(i) < NO_IFACE => Some(u32::from(i)),
            // An interface the rules' sets cannot name: not indexed.
            Some(_) => None,
        };
        let port = |v: u16| Some(if p.has_ports { u32::from(v) } else { NO_PORTS });
        match self {
            Small::Proto => Some(u32::from(p.proto)),
            Small::InIface => iface(p.in_iface),
            Small::OutIface => iface(p.out_iface),
            Small::Sport => port(p.sport),
            Small::Dport => port(p.dport),
            Small::CtState => {
                let b = p.ct_bits;
                let primary = b & 0x1f;
                (b & 0x80 == 0 && primary & primary.wrapping_sub(1) == 0).then_some(u32::from(b))
            }
        }
    }
}

/// The candidates of one field for a packet: two ascending lists.
#[derive(Clone, Copy, Debug)]
struct Lists<'a> {
    wild: &'a [u32],
    spec: &'a [u32],
}

impl Lists<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.wild.len() + self.spec.len()
    }
}

/// A chain's index (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainIndex<F: AddrFamily> {
    /// Source (`true`) and destination address fields, best first.
    addrs: Box<[(bool, Field<F::Addr>)]>,
    /// The small fields, best first.
    small: Box<[(Small, Field<u32>)]>,
}

/// Whether a match is known to have no side effect and to read only the
/// packet: the tests before the first match that is not may be decided by
/// the index. Every other match (a token bucket, a `recent` table, a set
/// whose counters are updated, a match added later) ends the indexed part
/// of its rule.
fn pure<F: AddrFamily>(m: &CMatch<F>) -> bool {
    matches!(
        m,
        CMatch::Ports { .. }
            | CMatch::TcpFlags { .. }
            | CMatch::Icmp { .. }
            | CMatch::Multiport { .. }
            | CMatch::CtState { .. }
            | CMatch::Dscp { .. }
            | CMatch::Mark { .. }
            | CMatch::IpRange { .. }
            | CMatch::Length { .. }
            | CMatch::Ttl(_)
            | CMatch::Tos { .. }
            | CMatch::Connmark { .. }
            | CMatch::Addrtype(_)
            | CMatch::Ipv6Header(_)
            | CMatch::Frag(_)
            | CMatch::Rt(_)
    )
}

/// The ranges of keys a rule's field accepts; `None` when it accepts all
/// (or the index does not take its shape).
type Accepts<K> = Option<Vec<(K, K)>>;

fn addr_accepts<K: IndexKey>(m: AddrMatch<K>) -> Accepts<K> {
    if m.invert {
        return None;
    }
    K::prefix_range(m.net, m.mask)
        .filter(|&(lo, hi)| !(lo == K::MIN && hi.succ().is_none()))
        .map(|r| vec![r])
}

fn proto_accepts(t: ProtoTest) -> Accepts<u32> {
    (!t.any && !t.invert).then(|| vec![(u32::from(t.proto), u32::from(t.proto))])
}

/// The bits set in `set` as ranges of consecutive bits.
fn bit_runs(set: u64) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for i in 0..64u32 {
        if set >> i & 1 == 1 {
            match out.last_mut() {
                Some(r) if r.1 + 1 == i => r.1 = i,
                _ => out.push((i, i)),
            }
        }
    }
    out
}

fn iface_accepts(t: IfaceTest) -> Accepts<u32> {
    if t.any {
        return None;
    }
    // An interface at index 64 or above never reaches the index.
    Some(bit_runs(if t.invert { !t.set.0 } else { t.set.0 }))
}

fn port_accepts(t: PortTest) -> Vec<(u32, u32)> {
    let (lo, hi) = (u32::from(t.lo), u32::from(t.hi));
    if !t.invert {
        return if lo <= hi { vec![(lo, hi)] } else { Vec::new() };
    }
    if lo > hi {
        return vec![(0, 0xffff)];
    }
    let mut out = Vec::new();
    if lo > 0 {
        out.push((0, lo - 1));
    }
    if hi < 0xffff {
        out.push((hi + 1, 0xffff));
    }
    out
}

fn ct_accepts(bits: u8, invert: bool) -> Vec<(u32, u32)> {
    let mut keys: Vec<u32> = ct_keys()
        .filter(|k| (k & bits != 0) != invert)
        .map(u32::from)
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| (k, k)).collect()
}

/// Collects, field by field, the ranges of the rules and the wild rules.
struct Collect<K> {
    ranges: Vec<(K, K, u32)>,
    wild: Vec<u32>,
}

impl<K: IndexKey> Collect<K> {
    fn new() -> Collect<K> {
        Collect {
            ranges: Vec::new(),
            wild: Vec::new(),
        }
    }

    fn add(&mut self, rule: u32, a: Accepts<K>) {
        match a {
            Some(rs) => self
                .ranges
                .extend(rs.into_iter().map(|(lo, hi)| (lo, hi, rule))),
            None => self.wild.push(rule),
        }
    }

    fn build(self, n: usize) -> Option<Field<K>> {
        Field::build(n, self.ranges, self.wild)
    }
}

impl<F: AddrFamily> ChainIndex<F> {
    /// The index of a chain's rules; `None` if no field would narrow them.
    pub fn build(rules: &[CRule<F>]) -> Option<ChainIndex<F>> {
        let n = rules.len();
        let mut src = Collect::<F::Addr>::new();
        let mut dst = Collect::<F::Addr>::new();
        let small = [
            Small::Proto,
            Small::InIface,
            Small::OutIface,
            Small::Sport,
            Small::Dport,
            Small::CtState,
        ];
        let mut cols: Vec<Collect<u32>> = small.iter().map(|_| Collect::new()).collect();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            src.add(i, addr_accepts(r.src));
            dst.add(i, addr_accepts(r.dst));
            cols[0].add(i, proto_accepts(r.proto));
            cols[1].add(i, iface_accepts(r.in_iface));
            cols[2].add(i, iface_accepts(r.out_iface));
            let (mut sport, mut dport, mut ct) = (None, None, None);
            for m in r.matches.iter().take_while(|m| pure(*m)) {
                match m {
                    CMatch::Ports { sport: s, dport: d } if sport.is_none() => {
                        sport = Some(port_accepts(*s));
                        dport = Some(port_accepts(*d));
                    }
                    CMatch::CtState { bits, invert } if ct.is_none() => {
                        ct = Some(ct_accepts(*bits, *invert));
                    }
                    _ => {}
                }
            }
            cols[3].add(i, sport);
            cols[4].add(i, dport);
            cols[5].add(i, ct);
        }
        let mut addrs: Vec<(bool, Field<F::Addr>)> = [(true, src), (false, dst)]
            .into_iter()
            .filter_map(|(s, c)| c.build(n).map(|f| (s, f)))
            .collect();
        let mut small: Vec<(Small, Field<u32>)> = small
            .into_iter()
            .zip(cols)
            .filter_map(|(s, c)| c.build(n).map(|f| (s, f)))
            .collect();
        if addrs.is_empty() && small.is_empty() {
            return None;
        }
        addrs.sort_by_key(|f| f.1.worst);
        small.sort_by_key(|f| f.1.worst);
        Some(ChainIndex {
            addrs: addrs.into_boxed_slice(),
            small: small.into_boxed_slice(),
        })
    }

    /// The candidates of a packet: the shortest lists of its fields;
    /// `None` if no field has a key for it.
    #[inline]
    fn lookup(&self, p: &PacketView<F>) -> Option<Lists<'_>> {
        let mut best: Option<Lists<'_>> = None;
        let needless = |best: &Option<Lists<'_>>, f: usize| best.is_some_and(|b| b.len() <= f);
        for (src, f) in self.addrs.iter() {
            if needless(&best, f.least) {
                continue;
            }
            let l = f.get(if *src { p.src } else { p.dst });
            if l.len() <= FEW {
                return Some(l);
            }
            if best.is_none_or(|b| l.len() < b.len()) {
                best = Some(l);
            }
        }
        for (s, f) in self.small.iter() {
            if needless(&best, f.least) {
                continue;
            }
            let Some(k) = s.key(p) else { continue };
            let l = f.get(k);
            if l.len() <= FEW {
                return Some(l);
            }
            if best.is_none_or(|b| l.len() < b.len()) {
                best = Some(l);
            }
        }
        best
    }

    /// A walk of the chain's candidates for `p`, from rule `from` on;
    /// `None` if no field of the index has a key for the packet (then the
    /// chain is walked rule by rule).
    #[inline]
    pub fn cursor(&self, p: &PacketView<F>, from: usize) -> Option<Cursor<'_>> {
        let l = self.lookup(p)?;
        let from = from as u32;
        Some(Cursor {
            wild: &l.wild[l.wild.partition_point(|r| *r < from)..],
            spec: &l.spec[l.spec.partition_point(|r| *r < from)..],
        })
    }

    /// Memory the index takes.
    pub fn bytes(&self) -> usize {
        self.addrs.iter().map(|f| f.1.bytes()).sum::<usize>()
            + self.small.iter().map(|f| f.1.bytes()).sum::<usize>()
    }
}

/// The candidates of a chain for a packet, ascending.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    wild: &'a [u32],
    spec: &'a [u32],
}

impl Cursor<'_> {
    /// The first candidate at or after rule `from`.
    #[inline]
    pub fn next_from(&mut self, from: usize) -> Option<usize> {
        let from = from as u32;
        while self.wild.first().is_some_and(|r| *r < from) {
            self.wild = &self.wild[1..];
        }
        while self.spec.first().is_some_and(|r| *r < from) {
            self.spec = &self.spec[1..];
        }
        match (self.wild.first(), self.spec.first()) {
            (Some(w), Some(s)) => Some(*w.min(s) as usize),
            (Some(r), None) | (None, Some(r)) => Some(*r as usize),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(
            u32::prefix_range(0x0a00_0000, 0xff00_0000),
            Some((0x0a00_0000, 0x0aff_ffff))
        );
        assert_eq!(
            u32::prefix_range(0x0a00_0001, 0xffff_ffff),
            Some((0x0a00_0001, 0x0a00_0001))
        );
        assert_eq!(u32::prefix_range(0, 0), Some((0, u32::MAX)));
        // Not a prefix, or a net outside its mask.
        assert_eq!(u32::prefix_range(0, 0xff00_ff00), None);
        assert_eq!(u32::prefix_range(0x0a00_0001, 0xff00_0000), None);
    }

    #[test]
    fn segments_hold_the_rules_whose_ranges_cover_them() {
        // Rule 0: 10..=20, rule 1: 15..=30, rule 2: wild, rule 3: 21..=21.
        let f = Field::<u32>::build(8, vec![(10, 20, 0), (15, 30, 1), (21, 21, 3)], vec![2])
            .expect("field");
        let spec = |k: u32| f.get(k).spec.to_vec();
        assert_eq!(spec(0), Vec::<u32>::new());
        assert_eq!(spec(9), Vec::<u32>::new());
        assert_eq!(spec(10), vec![0]);
        assert_eq!(spec(14), vec![0]);
        assert_eq!(spec(15), vec![0, 1]);
        assert_eq!(spec(20), vec![0, 1]);
        assert_eq!(spec(21), vec![1, 3]);
        assert_eq!(spec(22), vec![1]);
        assert_eq!(spec(30), vec![1]);
        assert_eq!(spec(31), Vec::<u32>::new());
        assert_eq!(spec(u32::MAX), Vec::<u32>::new());
        assert_eq!(f.get(5).wild, &[2]);
        assert_eq!(f.worst, 3);
    }

    #[test]
    fn the_widest_ranges_go_wild_when_the_lists_would_be_too_long() {
        // 10,000 /32s under one /8 (rule 0): the /8 would be in 20,001
        // segments' lists; more than the budget of 16 per rule allows with
        // many such /8s.
        let n = 10_000u32;
        let mut ranges: Vec<(u32, u32, u32)> =
            (0..20).map(|r| (0x0a00_0000, 0x0aff_ffff, r)).collect();
        ranges.extend((20..n).map(|r| (0x0a00_0000 + r * 2, 0x0a00_0000 + r * 2, r)));
        let f = Field::<u32>::build(n as usize, ranges, Vec::new()).expect("field");
        // Some of the /8s went wild (the first ones: all are as wide), not
        // a /32; every /8 is still a candidate inside it.
        assert!(
            !f.wild.is_empty() && f.wild.iter().all(|r| *r < 20),
            "{:?}",
            f.wild
        );
        assert!(f.rules.len() <= n as usize * ENTRIES_PER_RULE + ENTRIES_CONST);
        for k in [0x0a00_0000 + 40, 0x0a00_0000 + 41, 0x0aff_ffff] {
            let l = f.get(k);
            let mut all: Vec<u32> = l.wild.iter().chain(l.spec).copied().collect();
            all.sort_unstable();
            let mut want: Vec<u32> = (0..20).collect();
            if k == 0x0a00_0000 + 40 {
                want.push(20);
            }
            assert_eq!(all, want, "key {k:#x}");
        }
        assert!(f.get(0x0b00_0000).spec.is_empty());
    }

    #[test]
    fn lookups_across_blocks() {
        // 100 rules at keys 3i (rule i): 200 segments, 13 blocks.
        let f = Field::<u32>::build(200, (0..100).map(|i| (3 * i, 3 * i, i)).collect(), vec![])
            .expect("field");
        assert!(f.top.len() > 10);
        for k in 0..400u32 {
            let want: Vec<u32> = if k % 3 == 0 && k < 300 {
                vec![k / 3]
            } else {
                vec![]
            };
            assert_eq!(f.get(k).spec.to_vec(), want, "key {k}");
        }
        assert_eq!(f.get(u32::MAX).spec, &[] as &[u32]);
    }

    #[test]
    fn a_range_to_the_last_key_ends_there() {
        let f = Field::<u32>::build(4, vec![(7, u32::MAX, 0)], vec![1]).expect("field");
        assert_eq!(f.get(u32::MAX).spec, &[0]);
        assert_eq!(f.get(6).spec, &[] as &[u32]);
    }

    #[test]
    fn inverted_ports_and_interfaces() {
        let t = PortTest {
            lo: 10,
            hi: 20,
            invert: true,
        };
        assert_eq!(port_accepts(t), vec![(0, 9), (21, 0xffff)]);
        let t = PortTest {
            lo: 0,
            hi: 0xffff,
            invert: true,
        };
        assert_eq!(port_accepts(t), Vec::<(u32, u32)>::new());
        assert_eq!(bit_runs(0b1101), vec![(0, 0), (2, 3)]);
    }

    #[test]
    fn the_cursor_merges_in_order() {
        let mut c = Cursor {
            wild: &[0, 5, 9],
            spec: &[2, 5, 7],
        };
        let mut seen = Vec::new();
        let mut i = 0;
        while let Some(r) = c.next_from(i) {
            seen.push(r);
            i = r + 1;
        }
        assert_eq!(seen, vec![0, 2, 5, 7, 9]);
    }
}
