//! The typed rule set: what the control plane's parser produces and what the
//! classifier compiles. Everything here is validated data: no strings are
//! re-parsed on the packet path (chain and interface names are resolved once,
//! when a rule set is compiled).

use std::net::{Ipv4Addr, Ipv6Addr};

pub use crate::ipset::{CounterOp, DimFlags};

/// An address family: whether a rule set is iptables' (IPv4) or
/// ip6tables' (IPv6). Linux keeps a separate set of tables per family; so
/// does xdpgw: an IPv6 rule set is its own [`RuleSet`] value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

impl Family {
    /// The command that loads rules of this family.
    pub fn command(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }
}

/// A netfilter table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Raw,
    Mangle,
    Nat,
    Filter,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Raw, Table::Mangle, Table::Nat, Table::Filter];

    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The built-in chains of this table, in the order iptables-save prints them.
    pub fn hooks(self) -> &'static [Hook] {
        use Hook::*;
        match self {
            Table::Raw => &[Prerouting, Output],
            Table::Mangle => &[Prerouting, Input, Forward, Output, Postrouting],
            Table::Nat => &[Prerouting, Input, Output, Postrouting],
            Table::Filter => &[Input, Forward, Output],
        }
    }
}

/// A netfilter hook, i.e. a built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of hooks, as a bit mask of [`Hook::bit`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HookSet(pub u8);

impl HookSet {
    pub fn of(hooks: &[Hook]) -> HookSet {
        HookSet(hooks.iter().fold(0, |m, h| m | h.bit()))
    }
    pub fn contains(self, hook: Hook) -> bool {
        self.0 & hook.bit() != 0
    }
    pub fn is_subset_of(self, other: HookSet) -> bool {
        self.0 & !other.0 == 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

/// A built-in chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// Packet and byte counters as carried by iptables-save files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// A value with iptables' `!` negation flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Inv<T> {
    pub value: T,
    pub invert: bool,
}

impl<T> Inv<T> {
    pub fn new(value: T, invert: bool) -> Inv<T> {
        Inv { value, invert }
    }
    pub fn plain(value: T) -> Inv<T> {
        Inv {
            value,
            invert: false,
        }
    }
}

/// An IPv4 address and mask; the address is stored already masked, as the
/// kernel keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    mask: Ipv4Addr,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & u32::from(mask)),
            mask,
        }
    }
    pub fn with_prefix(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        Some(Ipv4Net::new(addr, prefix_to_mask(prefix)?))
    }
    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }
    pub fn mask(self) -> Ipv4Addr {
        self.mask
    }
    /// The prefix length, if the mask is contiguous.
    pub fn prefix_len(self) -> Option<u8> {
        let m = u32::from(self.mask);
        let ones = m.leading_ones();
        (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.addr)
    }
}

/// The mask of a prefix length, `None` above 32.
pub fn prefix_to_mask(prefix: u8) -> Option<Ipv4Addr> {
    match prefix {
        0 => Some(Ipv4Addr::UNSPECIFIED),
        1..=32 => Some(Ipv4Addr::from(u32::MAX << (32 - u32::from(prefix)))),
        _ => None,
    }
}

/// An IPv6 address and mask, the address stored already masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    mask: Ipv6Addr,
}

impl Ipv6Net {
    pub fn new(addr: Ipv6Addr, mask: Ipv6Addr) -> Ipv6Net {
        Ipv6Net {
            addr: Ipv6Addr::from(u128::from(addr) & u128::from(mask)),
            mask,
        }
    }
    pub fn with_prefix(addr: Ipv6Addr, prefix: u8) -> Option<Ipv6Net> {
        Some(Ipv6Net::new(addr, prefix_to_mask6(prefix)?))
    }
    pub fn addr(self) -> Ipv6Addr {
        self.addr
    }
    pub fn mask(self) -> Ipv6Addr {
        self.mask
    }
    /// The prefix length, if the mask is contiguous.
    pub fn prefix_len(self) -> Option<u8> {
        let m = u128::from(self.mask);
        let ones = m.leading_ones();
        (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
    }
    pub fn contains(self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & u128::from(self.mask) == u128::from(self.addr)
    }
}

/// The IPv6 mask of a prefix length, `None` above 128.
pub fn prefix_to_mask6(prefix: u8) -> Option<Ipv6Addr> {
    match prefix {
        0 => Some(Ipv6Addr::UNSPECIFIED),
        1..=128 => Some(Ipv6Addr::from(u128::MAX << (128 - u32::from(prefix)))),
        _ => None,
    }
}

/// An interface name as `-i`/`-o` take it; a trailing `+` matches any name
/// that starts with the part before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfaceMatch {
    pub name: String,
}

impl IfaceMatch {
    pub const MAX_LEN: usize = 15;

    pub fn is_wildcard(&self) -> bool {
        self.name.ends_with('+')
    }
    pub fn matches(&self, iface: &str) -> bool {
        match self.name.strip_suffix('+') {
            Some(prefix) => iface.starts_with(prefix),
            None => iface == self.name,
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 0, hi: 65535 };
    pub fn single(port: u16) -> PortRange {
        PortRange { lo: port, hi: port }
    }
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// An inclusive address range (`-m iprange`, NAT targets): IPv4 unless
/// said otherwise (`AddrRange<Ipv6Addr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrRange<A = Ipv4Addr> {
    pub lo: A,
    pub hi: A,
}

impl<A: Ord + Copy> AddrRange<A> {
    pub fn contains(self, ip: A) -> bool {
        self.lo <= ip && ip <= self.hi
    }
}

/// TCP flag bits as `--tcp-flags` names them.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ALL: u8 = 0x3f;
    /// The names in the order iptables prints them.
    pub const NAMES: [(&str, u8); 6] = [
        ("FIN", FIN),
        ("SYN", SYN),
        ("RST", RST),
        ("PSH", PSH),
        ("ACK", ACK),
        ("URG", URG),
    ];
}

/// `--tcp-flags MASK COMP`: the flags in `mask` must equal `comp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub mask: u8,
    pub comp: u8,
}

impl TcpFlags {
    /// What `--syn` stands for.
    pub const SYN: TcpFlags = TcpFlags {
        mask: tcp_flag::FIN | tcp_flag::SYN | tcp_flag::RST | tcp_flag::ACK,
        comp: tcp_flag::SYN,
    };
}

/// `-m tcp` / `-m udp` port matches (and `--tcp-flags` for TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub sport: Option<Inv<PortRange>>,
    pub dport: Option<Inv<PortRange>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpMatch {
    pub ports: PortMatch,
    pub flags: Option<Inv<TcpFlags>>,
}

/// `--icmp-type`: a type with a code range, or any ICMP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpType {
    Any,
    Type { ty: u8, code_lo: u8, code_hi: u8 },
}

/// Which ports `-m multiport` looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MultiportDir {
    Source,
    Destination,
    Either,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Multiport {
    pub dir: MultiportDir,
    pub ports: Vec<PortRange>,
    pub invert: bool,
}

impl Multiport {
    /// The kernel's limit: a range takes two of these slots.
    pub const MAX_SLOTS: usize = 15;
}

/// Connection tracking states, as `--ctstate`/`--state` name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtStates(pub u8);

impl CtStates {
    pub const INVALID: u8 = 1 << 0;
    pub const NEW: u8 = 1 << 1;
    pub const RELATED: u8 = 1 << 2;
    pub const ESTABLISHED: u8 = 1 << 3;
    pub const UNTRACKED: u8 = 1 << 4;
    pub const SNAT: u8 = 1 << 5;
    pub const DNAT: u8 = 1 << 6;
    /// The names in the order iptables prints them.
    pub const NAMES: [(&str, u8); 7] = [
        ("INVALID", Self::INVALID),
        ("NEW", Self::NEW),
        ("RELATED", Self::RELATED),
        ("ESTABLISHED", Self::ESTABLISHED),
        ("UNTRACKED", Self::UNTRACKED),
        ("SNAT", Self::SNAT),
        ("DNAT", Self::DNAT),
    ];
    pub fn contains(self, bits: u8) -> bool {
        self.0 & bits != 0
    }
}

/// `-m conntrack` (revision 3): the state, and the connection's protocol,
/// tuples, ports, status and direction (`conntrack_mt`). Options other than
/// the state never match a packet without a connection, even inverted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtMatch {
    pub state: Option<Inv<CtStates>>,
    pub proto: Option<Inv<u8>>,
    /// `--ctorigsrc`, `--ctorigdst`, `--ctreplsrc`, `--ctrepldst`.
    pub addrs: [Option<Inv<Ipv4Net>>; 4],
    /// The same of an ip6tables rule (IPv6 networks).
    pub addrs6: [Option<Inv<Ipv6Net>>; 4],
    /// `--ctorigsrcport`, `--ctorigdstport`, `--ctreplsrcport`,
    /// `--ctrepldstport`.
    pub ports: [Option<Inv<PortRange>>; 4],
    /// `--ctstatus`: bits of [`CtMatch::STATUS_NAMES`].
    pub status: Option<Inv<u16>>,
    /// `--ctdir REPLY` (true) or `ORIGINAL` (false).
    pub dir_reply: Option<bool>,
    /// `--ctexpire min[:max]`: the entry's remaining timeout in seconds.
    pub expires: Option<Inv<(u32, u32)>>,
}

impl CtMatch {
    /// `--ctstatus` names and bits (Linux's `IPS_*`), in iptables' order.
    pub const STATUS_NAMES: [(&'static str, u16); 5] = [
        ("NONE", 0),
        ("EXPECTED", 1),
        ("SEEN_REPLY", 2),
        ("ASSURED", 4),
        ("CONFIRMED", 8),
    ];
    /// The options' names in iptables-save's order, addresses then ports.
    pub const ADDR_OPTS: [&'static str; 4] =
        ["--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst"];
    pub const PORT_OPTS: [&'static str; 4] = [
        "--ctorigsrcport",
        "--ctorigdstport",
        "--ctreplsrcport",
        "--ctrepldstport",
    ];

    /// A match of the state alone (what `-m state` is).
    pub fn state_only(&self) -> Option<Inv<CtStates>> {
        let rest = CtMatch {
            state: None,
            ..*self
        };
        if rest == CtMatch::default() {
            self.state
        } else {
            None
        }
    }
}

/// `-m mark --mark value[/mask]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    pub value: u32,
    pub mask: u32,
}

/// `-m limit`: a token bucket, with the average period in units of
/// 1/10000 s as the kernel's `xt_rateinfo` keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub avg: u32,
    pub burst: u32,
}

impl Limit {
    pub const SCALE: u32 = 10_000;
    pub const DEFAULT: Limit = Limit {
        avg: Limit::SCALE * 3600 / 3,
        burst: 5,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange<A = Ipv4Addr> {
    pub src: Option<Inv<AddrRange<A>>>,
    pub dst: Option<Inv<AddrRange<A>>>,
}

impl<A> Default for IpRange<A> {
    fn default() -> Self {
        IpRange {
            src: None,
            dst: None,
        }
    }
}

/// `-m ipv6header`: which extension headers the packet has, as
/// `ipv6header_mt6` finds them walking the chain (a mask of the `MASK_*`
/// bits); `--soft` matches when all of `headers` are present, otherwise the
/// set must be exactly `headers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6HeaderMatch {
    pub headers: u8,
    pub invert: bool,
    pub soft: bool,
}

impl Ipv6HeaderMatch {
    pub const HOPOPTS: u8 = 128;
    pub const DSTOPTS: u8 = 64;
    pub const ROUTING: u8 = 32;
    pub const FRAGMENT: u8 = 16;
    pub const AH: u8 = 8;
    pub const ESP: u8 = 4;
    pub const NONE: u8 = 2;
    /// An upper-layer protocol follows the chain (not ESP, not No Next
    /// Header).
    pub const PROTO: u8 = 1;
    /// The names ip6tables-save prints, highest bit first.
    pub const NAMES: [(&'static str, u8); 8] = [
        ("hop-by-hop", Self::HOPOPTS),
        ("ipv6-opts", Self::DSTOPTS),
        ("ipv6-route", Self::ROUTING),
        ("ipv6-frag", Self::FRAGMENT),
        ("ah", Self::AH),
        ("esp", Self::ESP),
        ("ipv6-nonxt", Self::NONE),
        ("protocol", Self::PROTO),
    ];

    /// The end of `ipv6header_mt6`, given the headers found.
    pub fn matches(self, found: u8) -> bool {
        let (want, inv) = (self.headers, if self.invert { self.headers } else { 0 });
        if self.soft {
            (found ^ want ^ inv) & want == 0
        } else if self.invert {
            found != want
        } else {
            found == want
        }
    }
}

/// An inclusive range of 32-bit values with its `!` (`--fragid`,
/// `--rt-segsleft`); `lo` above `hi` matches nothing, as in Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct U32Range {
    pub lo: u32,
    pub hi: u32,
    pub invert: bool,
}

impl U32Range {
    pub const ALL: U32Range = U32Range {
        lo: 0,
        hi: u32::MAX,
        invert: false,
    };
    /// `id_match` / `segsleft_match`.
    pub fn matches(self, v: u32) -> bool {
        (self.lo <= v && v <= self.hi) != self.invert
    }
}

/// `-m frag` (`frag_mt6`): the fragment header's identification, and its
/// flags. `--fraglen` is kept for saving; the kernel does not test it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragMatch {
    pub ids: U32Range,
    pub len: Option<Inv<u32>>,
    /// `--fragres`: the reserved fields must be zero.
    pub res: bool,
    /// `--fragfirst`: the offset must be zero.
    pub first: bool,
    /// `--fragmore`: the M flag must be set.
    pub more: bool,
    /// `--fraglast`: the M flag must be clear.
    pub last: bool,
}

/// `-m rt` (`rt_mt6`): the routing header's type, segments left and length
/// in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RtMatch {
    pub rt_type: Option<Inv<u8>>,
    pub segsleft: U32Range,
    pub len: Option<Inv<u32>>,
}

/// A match extension (`-m NAME ...`), in the order the rule loads them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    Tcp(TcpMatch),
    Udp(PortMatch),
    Icmp(Inv<IcmpType>),
    Multiport(Multiport),
    Conntrack(CtMatch),
    State(Inv<CtStates>),
    Comment(String),
    Dscp(Inv<u8>),
    Mark(Inv<MarkMatch>),
    Limit(Limit),
    IpRange(IpRange),
    /// `-m length --length lo:hi`: the IP total length.
    Length(Inv<LenRange>),
    Ttl(TtlMatch),
    /// `-m tos --tos value/mask`: the whole TOS byte, ECN bits included.
    Tos(Inv<TosBits>),
    /// `-m connmark --mark value[/mask]`: the connection's mark (never
    /// matches a packet without a connection, even inverted).
    Connmark(Inv<MarkMatch>),
    Addrtype(AddrtypeMatch),
    /// `-m set --match-set NAME FLAGS ...` (xt_set revision 4).
    Set(SetMatch),
    /// `-m recent`: a named table of recently seen addresses.
    Recent(RecentMatch),
    /// `-m connlimit`: connections per source (or destination) group.
    Connlimit(ConnlimitMatch),
    /// `-m hashlimit`: token buckets per address/port group, in a named table.
    Hashlimit(HashlimitMatch),
    /// `-m iprange` of an IPv6 rule set.
    IpRange6(IpRange<Ipv6Addr>),
    Ipv6Header(Ipv6HeaderMatch),
    Frag(FragMatch),
    Rt(RtMatch),
}

/// Route types of addresses (`RTN_*`), as `-m addrtype` names them; a
/// match's types are a mask of `1 << type`.
pub struct AddrType;

impl AddrType {
    pub const UNSPEC: u8 = 0;
    pub const UNICAST: u8 = 1;
    pub const LOCAL: u8 = 2;
    pub const BROADCAST: u8 = 3;
    pub const MULTICAST: u8 = 5;
    /// The names in the order iptables prints them (bit `i` is type `i`).
    pub const NAMES: [&'static str; 12] = [
        "UNSPEC",
        "UNICAST",
        "LOCAL",
        "BROADCAST",
        "ANYCAST",
        "MULTICAST",
        "BLACKHOLE",
        "UNREACHABLE",
        "PROHIBIT",
        "THROW",
        "NAT",
        "XRESOLVE",
    ];
}

/// `-m addrtype`: the route types of the source and destination addresses
/// (masks of `1 << AddrType`), each with its `!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrtypeMatch {
    pub src: Option<Inv<u16>>,
    pub dst: Option<Inv<u16>>,
    pub limit: AddrtypeLimit,
}

/// `--limit-iface-in` / `--limit-iface-out`: types as seen from the
/// packet's input or output interface only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrtypeLimit {
    None,
    In,
    Out,
}

/// What a `-m recent` rule does with its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecentCmd {
    /// `--set`: adds the address (or a timestamp to it); always matches.
    Set,
    /// `--rcheck`: whether the address is in the table.
    Rcheck,
    /// `--update`: `--rcheck`, and a timestamp added when it matches.
    Update,
    /// `--remove`: takes the address out; matches if it was in.
    Remove,
}

/// `-m recent [!] --set|--rcheck|--update|--remove [--seconds N] [--reap]
/// [--hitcount N] [--rttl] --name NAME --mask M --rsource|--rdest`
/// (xt_recent: tables of `ip_list_tot` = 100 addresses, shared by every
/// rule that names them, kept across reloads while a rule names them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecentMatch {
    pub name: String,
    pub cmd: RecentCmd,
    /// 0: any age.
    pub seconds: u32,
    pub reap: bool,
    /// 0: any count.
    pub hitcount: u32,
    pub rttl: bool,
    /// `--rdest`: the destination address (else the source, `--rsource`).
    pub rdest: bool,
    pub mask: Ipv4Addr,
    pub invert: bool,
}

impl RecentMatch {
    /// The table name when none is given.
    pub const DEFAULT_NAME: &'static str = "DEFAULT";
    /// The most timestamps a check may count (`XT_RECENT_MAX_NSTAMPS - 1`).
    pub const MAX_HITCOUNT: u32 = 65535;
}

/// `-m connlimit --connlimit-upto|--connlimit-above N --connlimit-mask L
/// --connlimit-saddr|--connlimit-daddr` (xt_connlimit revision 1): whether
/// more than `limit` connections share the packet's masked address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnlimitMatch {
    pub limit: u32,
    /// The prefix length grouping addresses (32: each address its own).
    pub mask: u8,
    /// `--connlimit-daddr`: group by destination (else by source).
    pub daddr: bool,
    /// `--connlimit-upto` (and `! --connlimit-above`): matches when the
    /// count is at most `limit`; else when it is above.
    pub upto: bool,
}

/// `-m hashlimit` (xt_hashlimit revision 3, packet rates): a token bucket
/// per group of packets (the `mode` fields, addresses masked), in a table
/// shared by every rule naming it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HashlimitMatch {
    pub name: String,
    /// The period in 1/1,000,000 s per packet (`XT_HASHLIMIT_SCALE_v2`).
    pub avg: u64,
    pub burst: u64,
    /// [`HashlimitMatch::SRCIP`] ... bits.
    pub mode: u8,
    pub srcmask: u8,
    pub dstmask: u8,
    /// `--hashlimit-above` (and `! --hashlimit-upto`).
    pub above: bool,
    /// 0: the kernel's choice.
    pub size: u32,
    /// 0: the kernel's choice (8 x size).
    pub max: u32,
    /// Milliseconds.
    pub gc_interval: u32,
    /// Milliseconds an idle group is kept.
    pub expire: u32,
}

impl HashlimitMatch {
    pub const DSTIP: u8 = 1;
    pub const DSTPORT: u8 = 2;
    pub const SRCIP: u8 = 4;
    pub const SRCPORT: u8 = 8;
    /// `XT_HASHLIMIT_SCALE_v2`.
    pub const SCALE: u64 = 1_000_000;
    pub const DEFAULT_BURST: u64 = 5;
    pub const MAX_BURST: u64 = 1_000_000;
    pub const DEFAULT_GC_INTERVAL: u32 = 1000;
    /// `HASHLIMIT_MAX_SIZE`: the most buckets and entries of a table.
    pub const MAX_SIZE: u32 = 1 << 20;
    /// The rate units iptables prints, longest period first.
    pub const RATES: [(&'static str, u64); 4] = [
        ("day", Self::SCALE * 86_400),
        ("hour", Self::SCALE * 3600),
        ("min", Self::SCALE * 60),
        ("sec", Self::SCALE),
    ];

    /// libxt_hashlimit's `print_rate`: the rate as iptables prints it
    /// (`N/unit`), and the unit in milliseconds (the default expiry).
    pub fn rate(&self) -> (String, u64) {
        let period = self.avg.max(1);
        let mut i = 1;
        while i < Self::RATES.len() {
            let m = Self::RATES[i].1;
            if period > m || m / period < m % period {
                break;
            }
            i += 1;
        }
        let (name, m) = Self::RATES[i - 1];
        (format!("{}/{name}", m / period), m / Self::SCALE * 1000)
    }

    /// The mode fields as iptables prints them, joined by `sep`.
    pub fn mode_text(&self, sep: char) -> String {
        let mut v = Vec::new();
        for (bit, name) in [
            (Self::SRCIP, "srcip"),
            (Self::SRCPORT, "srcport"),
            (Self::DSTIP, "dstip"),
            (Self::DSTPORT, "dstport"),
        ] {
            if self.mode & bit != 0 {
                v.push(name);
            }
        }
        v.join(&sep.to_string())
    }
}

/// `-m set [!] --match-set NAME src|dst[,...]` and its options.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetMatch {
    pub name: String,
    pub flags: DimFlags,
    pub invert: bool,
    pub return_nomatch: bool,
    /// `! --update-counters` clears it.
    pub update_counters: bool,
    /// `! --update-subcounters` clears it (list:set members' counters).
    pub update_subcounters: bool,
    pub packets: Option<(CounterOp, u64)>,
    pub bytes: Option<(CounterOp, u64)>,
}

/// `-m length`'s range (`lo` above `hi` matches nothing, as in Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LenRange {
    pub lo: u16,
    pub hi: u16,
}

/// `-m ttl`: `--ttl-eq`, `! --ttl-eq`, `--ttl-lt`, `--ttl-gt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TtlMatch {
    Eq(u8),
    Ne(u8),
    Lt(u8),
    Gt(u8),
}

impl TtlMatch {
    pub fn matches(self, ttl: u8) -> bool {
        match self {
            TtlMatch::Eq(v) => ttl == v,
            TtlMatch::Ne(v) => ttl != v,
            TtlMatch::Lt(v) => ttl < v,
            TtlMatch::Gt(v) => ttl > v,
        }
    }
}

/// A TOS value under a mask (`-m tos --tos`, `-j TOS --set-tos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TosBits {
    pub value: u8,
    pub mask: u8,
}

/// `-j CONNMARK`: what it does with the connection's mark
/// (`connmark_tg_shift`); nothing for a packet without a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnmarkOp {
    /// ctmark = (ctmark & !mask) ^ value.
    Set { value: u32, mask: u32 },
    /// `--save-mark`: ctmark = (ctmark & !ctmask) ^ (mark & nfmask).
    Save { nfmask: u32, ctmask: u32 },
    /// `--restore-mark`: mark = (mark & !nfmask) ^ (ctmark & ctmask).
    Restore { nfmask: u32, ctmask: u32 },
}

/// `-j TCPMSS`: the MSS a SYN is lowered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpmssOp {
    /// `--set-mss N`.
    Set(u16),
    /// `--clamp-mss-to-pmtu`: the smaller of the MTUs of the routes out and
    /// back to the sender, less 40.
    ClampPmtu,
}

/// `-j TTL`: what it does to the TTL (`xt_HL`: increments stop at 255,
/// decrements at 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TtlSet {
    Set(u8),
    Inc(u8),
    Dec(u8),
}

impl TtlSet {
    pub fn apply(self, ttl: u8) -> u8 {
        match self {
            TtlSet::Set(v) => v,
            TtlSet::Inc(v) => ttl.saturating_add(v),
            TtlSet::Dec(v) => ttl.saturating_sub(v),
        }
    }
}

impl Match {
    pub fn name(&self) -> &'static str {
        match self {
            Match::Tcp(_) => "tcp",
            Match::Udp(_) => "udp",
            Match::Icmp(_) => "icmp",
            Match::Multiport(_) => "multiport",
            Match::Conntrack(_) => "conntrack",
            Match::State(_) => "state",
            Match::Comment(_) => "comment",
            Match::Dscp(_) => "dscp",
            Match::Mark(_) => "mark",
            Match::Limit(_) => "limit",
            Match::IpRange(_) => "iprange",
            Match::Length(_) => "length",
            Match::Ttl(_) => "ttl",
            Match::Tos(_) => "tos",
            Match::Connmark(_) => "connmark",
            Match::Addrtype(_) => "addrtype",
            Match::Set(_) => "set",
            Match::Recent(_) => "recent",
            Match::Connlimit(_) => "connlimit",
            Match::Hashlimit(_) => "hashlimit",
            Match::IpRange6(_) => "iprange",
            Match::Ipv6Header(_) => "ipv6header",
            Match::Frag(_) => "frag",
            Match::Rt(_) => "rt",
        }
    }

    /// The name `-m` gives this match in a rule set of `family`: an IPv6
    /// rule set's ICMP match is `icmp6`, its TTL match `hl`.
    pub fn name_in(&self, family: Family) -> &'static str {
        match (self, family) {
            (Match::Icmp(_), Family::Ipv6) => "icmp6",
            (Match::Ttl(_), Family::Ipv6) => "hl",
            _ => self.name(),
        }
    }
}

/// `--reject-with`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    IcmpNetUnreachable,
    IcmpHostUnreachable,
    IcmpPortUnreachable,
    IcmpProtoUnreachable,
    IcmpNetProhibited,
    IcmpHostProhibited,
    TcpReset,
    IcmpAdminProhibited,
    /// ICMPv6 destination unreachable, code 0.
    Icmp6NoRoute,
    /// Code 1.
    Icmp6AdmProhibited,
    /// Code 3.
    Icmp6AddrUnreachable,
    /// Code 4.
    Icmp6PortUnreachable,
    /// Code 5.
    Icmp6PolicyFail,
    /// Code 6.
    Icmp6RejectRoute,
}

impl RejectWith {
    /// Each kind with its iptables name and alias.
    pub const NAMES: [(RejectWith, &str, &str); 8] = [
        (
            RejectWith::IcmpNetUnreachable,
            "icmp-net-unreachable",
            "net-unreach",
        ),
        (
            RejectWith::IcmpHostUnreachable,
            "icmp-host-unreachable",
            "host-unreach",
        ),
        (
            RejectWith::IcmpProtoUnreachable,
            "icmp-proto-unreachable",
            "prot-unreach",
        ),
        (
            RejectWith::IcmpPortUnreachable,
            "icmp-port-unreachable",
            "port-unreach",
        ),
        (
            RejectWith::IcmpNetProhibited,
            "icmp-net-prohibited",
            "net-prohib",
        ),
        (
            RejectWith::IcmpHostProhibited,
            "icmp-host-prohibited",
            "host-prohib",
        ),
        (RejectWith::TcpReset, "tcp-reset", "tcp-rst"),
        (
            RejectWith::IcmpAdminProhibited,
            "icmp-admin-prohibited",
            "admin-prohib",
        ),
    ];

    /// ip6tables' kinds with their names and aliases (`libip6t_REJECT`).
    pub const NAMES6: [(RejectWith, &str, &str); 7] = [
        (RejectWith::Icmp6NoRoute, "icmp6-no-route", "no-route"),
        (
            RejectWith::Icmp6AdmProhibited,
            "icmp6-adm-prohibited",
            "adm-prohibited",
        ),
        (
            RejectWith::Icmp6AddrUnreachable,
            "icmp6-addr-unreachable",
            "addr-unreach",
        ),
        (
            RejectWith::Icmp6PortUnreachable,
            "icmp6-port-unreachable",
            "port-unreach",
        ),
        (RejectWith::TcpReset, "tcp-reset", "tcp-reset"),
        (
            RejectWith::Icmp6PolicyFail,
            "icmp6-policy-fail",
            "policy-fail",
        ),
        (
            RejectWith::Icmp6RejectRoute,
            "icmp6-reject-route",
            "reject-route",
        ),
    ];

    /// The kinds `family`'s REJECT knows.
    pub fn names(family: Family) -> &'static [(RejectWith, &'static str, &'static str)] {
        match family {
            Family::Ipv4 => &Self::NAMES,
            Family::Ipv6 => &Self::NAMES6,
        }
    }

    /// What `-j REJECT` without `--reject-with` sends.
    pub fn default_for(family: Family) -> RejectWith {
        match family {
            Family::Ipv4 => RejectWith::IcmpPortUnreachable,
            Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .chain(Self::NAMES6.iter())
            .find(|(k, _, _)| *k == self)
            .map_or("icmp-port-unreachable", |(_, n, _)| n)
    }

    /// The ICMP (ICMPv6 for the `Icmp6` kinds) destination-unreachable code
    /// sent, `None` for a TCP reset.
    pub fn icmp_code(self) -> Option<u8> {
        match self {
            RejectWith::IcmpNetUnreachable => Some(0),
            RejectWith::IcmpHostUnreachable => Some(1),
            RejectWith::IcmpProtoUnreachable => Some(2),
            RejectWith::IcmpPortUnreachable => Some(3),
            RejectWith::IcmpNetProhibited => Some(9),
            RejectWith::IcmpHostProhibited => Some(10),
            RejectWith::IcmpAdminProhibited => Some(13),
            RejectWith::TcpReset => None,
            RejectWith::Icmp6NoRoute => Some(0),
            RejectWith::Icmp6AdmProhibited => Some(1),
            RejectWith::Icmp6AddrUnreachable => Some(3),
            RejectWith::Icmp6PortUnreachable => Some(4),
            RejectWith::Icmp6PolicyFail => Some(5),
            RejectWith::Icmp6RejectRoute => Some(6),
        }
    }
}

/// `-j LOG`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Log {
    pub level: u8,
    pub prefix: String,
}

impl Log {
    pub const DEFAULT_LEVEL: u8 = 4;
    pub const MAX_PREFIX: usize = 29;
}

/// The address/port range of SNAT and DNAT (`--to-source`,
/// `--to-destination`): IPv4 unless said otherwise (`NatRange<Ipv6Addr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange<A = Ipv4Addr> {
    pub addrs: Option<AddrRange<A>>,
    pub ports: Option<PortRange>,
}

/// MASQUERADE and REDIRECT options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortNat {
    pub ports: Option<PortRange>,
    pub random: bool,
    pub random_fully: bool,
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// No `-j`: the rule only counts.
    None,
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    Reject(RejectWith),
    Log(Log),
    Masquerade(PortNat),
    Snat(NatRange),
    Dnat(NatRange),
    Redirect(PortNat),
    Dscp(u8),
    Notrack,
    CtNotrack,
    /// `--set-xmark value/mask`: mark = (mark & !mask) ^ value.
    Mark {
        value: u32,
        mask: u32,
    },
    Ttl(TtlSet),
    /// `--set-tos value/mask`: tos = (tos & !mask) ^ value, the ECN bits
    /// included (`tos_tg`).
    Tos(TosBits),
    Connmark(ConnmarkOp),
    Tcpmss(TcpmssOp),
    /// SNAT of an IPv6 rule set (NAT66).
    Snat6(NatRange<Ipv6Addr>),
    /// DNAT of an IPv6 rule set.
    Dnat6(NatRange<Ipv6Addr>),
}

impl Target {
    /// Whether netfilter lets this target stand in `table` on a chain reached
    /// from `hooks` (the kernel's `table`/`hooks` checks of each target).
    pub fn allowed(&self, table: Table, hooks: HookSet) -> Result<(), TargetPlacement> {
        use Hook::*;
        let (want_table, want_hooks) = match self {
            Target::Reject(_) => (Some(Table::Filter), HookSet::of(&[Input, Forward, Output])),
            Target::Masquerade(_) => (Some(Table::Nat), HookSet::of(&[Postrouting])),
            Target::Snat(_) | Target::Snat6(_) => {
                (Some(Table::Nat), HookSet::of(&[Postrouting, Input]))
            }
            Target::Dnat(_) | Target::Dnat6(_) | Target::Redirect(_) => {
                (Some(Table::Nat), HookSet::of(&[Prerouting, Output]))
            }
            Target::Dscp(_) | Target::Ttl(_) | Target::Tos(_) => {
                (Some(Table::Mangle), HookSet(0x1f))
            }
            Target::Notrack | Target::CtNotrack => (Some(Table::Raw), HookSet(0x1f)),
            _ => (None, HookSet(0x1f)),
        };
        if let Some(t) = want_table {
            if t != table {
                return Err(TargetPlacement::Table(t));
            }
        }
        if hooks.is_subset_of(want_hooks) {
            Ok(())
        } else {
            Err(TargetPlacement::Hooks(want_hooks))
        }
    }

    /// The name `-j` gives this target (the chain's for a jump or goto).
    pub fn name(&self) -> &str {
        match self {
            Target::None => "",
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Jump(c) | Target::Goto(c) => c,
            Target::Reject(_) => "REJECT",
            Target::Log(_) => "LOG",
            Target::Masquerade(_) => "MASQUERADE",
            Target::Snat(_) | Target::Snat6(_) => "SNAT",
            Target::Dnat(_) | Target::Dnat6(_) => "DNAT",
            Target::Redirect(_) => "REDIRECT",
            Target::Dscp(_) => "DSCP",
            Target::Notrack => "NOTRACK",
            Target::CtNotrack => "CT",
            Target::Mark { .. } => "MARK",
            Target::Ttl(_) => "TTL",
            Target::Tos(_) => "TOS",
            Target::Connmark(_) => "CONNMARK",
            Target::Tcpmss(_) => "TCPMSS",
        }
    }

    /// The name `-j` gives this target in a rule set of `family` (an IPv6
    /// rule set's TTL target is `HL`).
    pub fn name_in(&self, family: Family) -> &str {
        match (self, family) {
            (Target::Ttl(_), Family::Ipv6) => "HL",
            _ => self.name(),
        }
    }

    /// The user chain this target passes control to, if any.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Target::Jump(c) | Target::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// Why a target may not stand where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetPlacement {
    /// Only valid in this table.
    Table(Table),
    /// Only valid in chains reached from these hooks.
    Hooks(HookSet),
}

/// One rule: the generic matches, the match extensions in order, and the
/// target. A rule of an IPv4 rule set has its addresses in `src`/`dst`, one
/// of an IPv6 rule set in `src6`/`dst6` (the parser never mixes them). In an
/// IPv6 rule set, `protocol` is the upper-layer protocol after the
/// extension headers (`ipv6_find_hdr`), [`Match::Icmp`] is `-m icmp6`,
/// [`Match::Ttl`] is `-m hl`, [`Target::Ttl`] is `-j HL`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub src: Option<Inv<Ipv4Net>>,
    pub dst: Option<Inv<Ipv4Net>>,
    pub src6: Option<Inv<Ipv6Net>>,
    pub dst6: Option<Inv<Ipv6Net>>,
    pub in_iface: Option<Inv<IfaceMatch>>,
    pub out_iface: Option<Inv<IfaceMatch>>,
    /// IP protocol number; `None` is `-p all`.
    pub protocol: Option<Inv<u8>>,
    pub matches: Vec<Match>,
    pub target: Target,
    pub counters: Counters,
}

impl Rule {
    pub fn new(target: Target) -> Rule {
        Rule {
            src: None,
            dst: None,
            src6: None,
            dst6: None,
            in_iface: None,
            out_iface: None,
            protocol: None,
            matches: Vec::new(),
            target,
            counters: Counters::default(),
        }
    }

    /// Equality as `iptables -D chain rulespec` compares rules: counters aside.
    pub fn same_spec(&self, other: &Rule) -> bool {
        Rule {
            counters: Counters::default(),
            ..self.clone()
        } == Rule {
            counters: Counters::default(),
            ..other.clone()
        }
    }
}

/// A chain: built-in (with a hook and policy) or user-defined.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub policy: Option<Policy>,
    pub counters: Counters,
    pub rules: Vec<Rule>,
}

/// One table's chains: built-ins first in hook order, then user chains
/// sorted by name (the order iptables-save prints them in).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableRules {
    pub table: Table,
    pub chains: Vec<Chain>,
}

impl TableRules {
    /// A table as the kernel creates it: its built-in chains, empty, ACCEPT.
    pub fn empty(table: Table) -> TableRules {
        TableRules {
            table,
            chains: table
                .hooks()
                .iter()
                .map(|h| Chain {
                    name: h.name().to_string(),
                    hook: Some(*h),
                    policy: Some(Policy::Accept),
                    counters: Counters::default(),
                    rules: Vec::new(),
                })
                .collect(),
        }
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// A whole validated rule set: the tables it defines, in the order they were
/// first defined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSet {
    pub tables: Vec<TableRules>,
}

impl RuleSet {
    pub fn table(&self, table: Table) -> Option<&TableRules> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// The rule set with the packet and byte counters `totals` (by counter
    /// slot, [`CounterLayout`]) put back on its rules and chains; 0 for a
    /// slot `totals` does not have.
    pub fn with_counters(&self, totals: &[(u64, u64)]) -> RuleSet {
        let mut set = self.clone();
        for (slot, at) in CounterLayout::of(self).slots() {
            let (packets, bytes) = totals.get(slot as usize).copied().unwrap_or((0, 0));
            let c = Counters { packets, bytes };
            match at {
                CounterSlot::Rule { table, chain, rule } => {
                    set.tables[table].chains[chain].rules[rule].counters = c;
                }
                CounterSlot::Chain { table, chain } => set.tables[table].chains[chain].counters = c,
            }
        }
        set
    }
}

/// What a counter slot counts: a rule, or a chain's policy (by index into
/// [`RuleSet::tables`], [`TableRules::chains`] and [`Chain::rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterSlot {
    Rule {
        table: usize,
        chain: usize,
        rule: usize,
    },
    Chain {
        table: usize,
        chain: usize,
    },
}

/// Where each rule's and chain's packet and byte counters are among a
/// compiled rule set's counter slots: numbered table by table, chain by
/// chain, each chain's rules and then the chain itself (its policy). The
/// compiler numbers them so (`classify::compile`); the views put them back
/// on the rules ([`RuleSet::with_counters`]), `zero` finds a chain's, and a
/// reload carries them over by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterLayout {
    /// Per table, per chain: its first rule's slot and its rule count.
    chains: Vec<Vec<(u32, u32)>>,
    len: u32,
}

impl CounterLayout {
    pub fn of(set: &RuleSet) -> CounterLayout {
        let mut next = 0u32;
        let chains = set
            .tables
            .iter()
            .map(|t| {
                t.chains
                    .iter()
                    .map(|c| {
                        let first = next;
                        let rules = u32::try_from(c.rules.len()).unwrap_or(u32::MAX);
                        next = next.saturating_add(rules).saturating_add(1);
                        (first, rules)
                    })
                    .collect()
            })
            .collect();
        CounterLayout { chains, len: next }
    }

    /// How many slots.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot of rule `rule` of chain `chain` of table `table`.
    pub fn rule(&self, table: usize, chain: usize, rule: usize) -> Option<u32> {
        let &(first, rules) = self.chains.get(table)?.get(chain)?;
        let rule = u32::try_from(rule).ok().filter(|&r| r < rules)?;
        Some(first + rule)
    }

    /// The slot of chain `chain` of table `table` (its policy's).
    pub fn chain(&self, table: usize, chain: usize) -> Option<u32> {
        let &(first, rules) = self.chains.get(table)?.get(chain)?;
        Some(first + rules)
    }

    /// Every slot, in order, with what it counts.
    pub fn slots(&self) -> impl Iterator<Item = (u32, CounterSlot)> + '_ {
        self.chains.iter().enumerate().flat_map(|(table, chains)| {
            chains
                .iter()
                .enumerate()
                .flat_map(move |(chain, &(first, rules))| {
                    (0..rules)
                        .map(move |rule| {
                            (
                                first + rule,
                                CounterSlot::Rule {
                                    table,
                                    chain,
                                    rule: rule as usize,
                                },
                            )
                        })
                        .chain(std::iter::once((
                            first + rules,
                            CounterSlot::Chain { table, chain },
                        )))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_slots_go_table_by_table_rules_then_chain() {
        let mut filter = TableRules::empty(Table::Filter);
        filter.chains[0].rules.push(Rule::new(Target::Accept));
        filter.chains[0].rules.push(Rule::new(Target::Drop));
        let mut nat = TableRules::empty(Table::Nat);
        nat.chains[1].rules.push(Rule::new(Target::None));
        let set = RuleSet {
            tables: vec![filter, nat],
        };
        let l = CounterLayout::of(&set);
        let filter_chains = set.tables[0].chains.len();
        let nat_chains = set.tables[1].chains.len();
        assert_eq!(l.len() as usize, 3 + filter_chains + nat_chains);
        assert_eq!(l.rule(0, 0, 1), Some(1));
        assert_eq!(l.chain(0, 0), Some(2));
        assert_eq!(l.rule(0, 0, 2), None);
        assert_eq!(l.chain(0, 1), Some(3));
        let slots: Vec<(u32, CounterSlot)> = l.slots().collect();
        assert!(slots.iter().enumerate().all(|(i, (s, _))| *s as usize == i));
        assert_eq!(slots.len() as u32, l.len());
        assert_eq!(
            slots[filter_chains + 2].1,
            CounterSlot::Chain { table: 1, chain: 0 }
        );
        // Counters put back where the slots say.
        let totals: Vec<(u64, u64)> = (0..l.len() as u64).map(|i| (i, 10 * i)).collect();
        let with = set.with_counters(&totals);
        assert_eq!(with.tables[0].chains[0].rules[1].counters.packets, 1);
        assert_eq!(with.tables[0].chains[0].counters.bytes, 20);
        assert_eq!(
            with.tables[1].chains[1].rules[0].counters.packets,
            u64::from(l.rule(1, 1, 0).expect("a rule"))
        );
    }

    #[test]
    fn net_masks_and_prefixes() {
        let n = Ipv4Net::new(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 0, 255, 0));
        assert_eq!(n.addr(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(n.prefix_len(), None);
        let n = Ipv4Net::with_prefix(Ipv4Addr::new(192, 168, 10, 10), 24).expect("prefix");
        assert_eq!(n.prefix_len(), Some(24));
        assert!(n.contains(Ipv4Addr::new(192, 168, 10, 200)));
        assert!(!n.contains(Ipv4Addr::new(192, 168, 11, 1)));
        assert_eq!(
            Ipv4Net::with_prefix(Ipv4Addr::new(1, 2, 3, 4), 0).and_then(|n| n.prefix_len()),
            Some(0)
        );
        assert_eq!(
            Ipv4Net::with_prefix(Ipv4Addr::new(1, 2, 3, 4), 32).and_then(|n| n.prefix_len()),
            Some(32)
        );
        assert!(prefix_to_mask(33).is_none());
    }

    #[test]
    fn iface_wildcard() {
        let m = IfaceMatch {
            name: "eth+".into(),
        };
        assert!(m.matches("eth0") && m.matches("eth") && !m.matches("lan0"));
        let m = IfaceMatch {
            name: "eth0".into(),
        };
        assert!(m.matches("eth0") && !m.matches("eth01"));
    }

    #[test]
    fn target_placement_follows_the_kernel() {
        let post = HookSet::of(&[Hook::Postrouting]);
        let m = Target::Masquerade(PortNat::default());
        assert!(m.allowed(Table::Nat, post).is_ok());
        assert_eq!(
            m.allowed(Table::Nat, HookSet::of(&[Hook::Prerouting])),
            Err(TargetPlacement::Hooks(post))
        );
        assert_eq!(
            Target::Reject(RejectWith::TcpReset).allowed(Table::Nat, post),
            Err(TargetPlacement::Table(Table::Filter))
        );
        // A chain reached from nowhere may hold anything its table allows.
        assert!(Target::Reject(RejectWith::TcpReset)
            .allowed(Table::Filter, HookSet(0))
            .is_ok());
        assert!(Target::Mark { value: 1, mask: 1 }
            .allowed(Table::Filter, HookSet::of(&[Hook::Input]))
            .is_ok());
    }
}
