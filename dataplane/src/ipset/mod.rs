//! IP sets with the kernel ipset's semantics (ipset 7.17): the set types
//! operators use (`hash:ip`, `hash:net`, `hash:ip,port`, `hash:net,port`,
//! `bitmap:port`, `list:set`), their elements and options (`timeout`,
//! `counters`, `maxelem`, `nomatch`), the lookups `-m set` makes for a
//! packet, and the table of all sets that the gateway shares with its
//! workers.
//!
//! Storage: a [`SetTable`] is an immutable snapshot of every set, by slot
//! (the set's index, which rules are compiled against, as the kernel's
//! `ip_set_id_t`); each set is an `Arc` so that a change copies only the
//! set it changes (copy on write) and the new table is published with one
//! pointer swap ([`SharedSets`]). Workers take the current table at each
//! batch, as they take the rule set: lookups take no lock and allocate
//! nothing, and `swap` exchanges two slots' contents in one publication.

mod hash;

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use hash::{mask, ElemCounter, ElemValue, Key, PrefixTables};

/// The most sets, as the kernel's default `max_sets`.
pub const MAX_SETS: usize = 256;
/// The longest set name (IPSET_MAXNAMELEN less its NUL).
pub const MAX_NAME: usize = 31;
/// The most dimensions a set match names (IPSET_DIM_MAX).
pub const MAX_DIM: usize = 6;

/// A set type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetType {
    HashIp,
    HashNet,
    HashIpPort,
    HashNetPort,
    BitmapPort,
    ListSet,
}

impl SetType {
    pub const ALL: [SetType; 6] = [
        SetType::HashIp,
        SetType::HashNet,
        SetType::HashIpPort,
        SetType::HashNetPort,
        SetType::BitmapPort,
        SetType::ListSet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashNet => "hash:net",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashNetPort => "hash:net,port",
            SetType::BitmapPort => "bitmap:port",
            SetType::ListSet => "list:set",
        }
    }

    pub fn from_name(name: &str) -> Option<SetType> {
        SetType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The revision `ipset list` shows (the kernel's newest, 6.x).
    pub fn revision(self) -> u8 {
        match self {
            SetType::HashIp => 6,
            SetType::HashNet => 7,
            SetType::HashIpPort => 7,
            SetType::HashNetPort => 8,
            SetType::BitmapPort => 3,
            SetType::ListSet => 3,
        }
    }

    pub fn is_hash(self) -> bool {
        !matches!(self, SetType::BitmapPort | SetType::ListSet)
    }

    /// Whether elements are networks (and may be `nomatch`).
    pub fn has_net(self) -> bool {
        matches!(self, SetType::HashNet | SetType::HashNetPort)
    }

    pub fn has_port(self) -> bool {
        matches!(self, SetType::HashIpPort | SetType::HashNetPort)
    }
}

/// A set's creation options, as `ipset create` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions {
    /// Hash types: the initial hash size (a power of two, at least 64).
    pub hashsize: u32,
    pub maxelem: u32,
    /// The default timeout of new elements, seconds; `Some` also means
    /// the set supports timeouts.
    pub timeout: Option<u32>,
    pub counters: bool,
    pub bucketsize: u8,
    pub initval: u32,
    /// bitmap:port's range.
    pub range: (u16, u16),
    /// list:set's size.
    pub size: u32,
}

impl Default for SetOptions {
    fn default() -> SetOptions {
        SetOptions {
            hashsize: 1024,
            maxelem: 65536,
            timeout: None,
            counters: false,
            bucketsize: 12,
            initval: 0,
            range: (0, 0),
            size: 8,
        }
    }
}

impl SetOptions {
    /// The hash size the kernel uses for a requested one: a power of two,
    /// at least 64 (`htable_bits`, IPSET_MIMINAL_HASHSIZE).
    pub fn round_hashsize(n: u32) -> u32 {
        n.clamp(64, 1 << 31).next_power_of_two()
    }
}

/// One element as a command names it (ranges already expanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub addr: u32,
    /// The prefix length (32 for an address).
    pub cidr: u8,
    pub proto: u8,
    pub port: u16,
    /// list:set: the member set's name.
    pub set: Option<String>,
    pub timeout: Option<u32>,
    pub nomatch: bool,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

impl Elem {
    pub fn addr(addr: u32, cidr: u8) -> Elem {
        Elem {
            addr: addr & mask(cidr),
            cidr,
            proto: 0,
            port: 0,
            set: None,
            timeout: None,
            nomatch: false,
            packets: None,
            bytes: None,
        }
    }
}

/// The errors of set commands, with ipset's messages (ipset 7.17) and its
/// exit status (1 for all of these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetError {
    NoSuchSet,
    Exists,
    AlreadyAdded,
    NotAdded,
    HashFull,
    OutOfRange,
    TypeMismatch,
    InUse,
    NoTimeout,
    NoCounters,
    MemberMissing,
    MemberLoop,
    TooManySets,
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetError::NoSuchSet => "The set with the given name does not exist",
            SetError::Exists => "Set cannot be created: set with the same name already exists",
            SetError::AlreadyAdded => "Element cannot be added to the set: it's already added",
            SetError::NotAdded => "Element cannot be deleted from the set: it's not added",
            SetError::HashFull => "Hash is full, cannot add more elements",
            SetError::OutOfRange => "Element is out of the range of the set",
            SetError::TypeMismatch => "The sets cannot be swapped: their type does not match",
            SetError::InUse => "Set cannot be destroyed: it is in use by a kernel component",
            SetError::NoTimeout => {
                "Timeout cannot be used: set was created without timeout support"
            }
            SetError::NoCounters => {
                "Packet/byte counters cannot be used: set was created without counter support"
            }
            SetError::MemberMissing => "Set to be added/deleted/tested as element does not exist.",
            SetError::MemberLoop => "Sets with list:set type cannot be added to the set.",
            SetError::TooManySets => "Kernel error received: maximal number of sets reached",
        })
    }
}

impl std::error::Error for SetError {}

const NANOS: u64 = 1_000_000_000;

/// One set's contents.
#[derive(Clone, Debug)]
pub struct IpSet {
    pub kind: SetType,
    pub opts: SetOptions,
    elems: PrefixTables,
    /// list:set: the member sets' slots, in order.
    members: Vec<u16>,
}

impl IpSet {
    pub fn new(kind: SetType, opts: SetOptions) -> IpSet {
        IpSet {
            kind,
            opts,
            elems: PrefixTables::new(),
            members: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        if self.kind == SetType::ListSet {
            self.members.len()
        } else {
            self.elems.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn members(&self) -> &[u16] {
        &self.members
    }

    pub fn elements(&self) -> Vec<(u8, Key, &ElemValue)> {
        self.elems.elements()
    }

    fn key(&self, e: &Elem) -> (u8, Key) {
        match self.kind {
            SetType::BitmapPort => (32, Key::new(0, 0, e.port)),
            SetType::HashIp | SetType::HashNet => (e.cidr, Key::new(e.addr & mask(e.cidr), 0, 0)),
            _ => (e.cidr, Key::new(e.addr & mask(e.cidr), e.proto, e.port)),
        }
    }

    fn check_elem(&self, e: &Elem) -> Result<(), SetError> {
        if e.timeout.is_some() && self.opts.timeout.is_none() {
            return Err(SetError::NoTimeout);
        }
        if (e.packets.is_some() || e.bytes.is_some()) && !self.opts.counters {
            return Err(SetError::NoCounters);
        }
        if self.kind == SetType::BitmapPort
            && !(self.opts.range.0 <= e.port && e.port <= self.opts.range.1)
        {
            return Err(SetError::OutOfRange);
        }
        Ok(())
    }

    /// Adds an element (`ipset add`); with `exist`, an element already
    /// there is updated (its timeout, nomatch and counters) instead of
    /// refused. `member` is the slot of a list:set member.
    pub fn add(
        &mut self,
        e: &Elem,
        member: Option<u16>,
        exist: bool,
        now: u64,
    ) -> Result<(), SetError> {
        if self.kind == SetType::ListSet {
            let m = member.ok_or(SetError::MemberMissing)?;
            if self.members.contains(&m) {
                return if exist {
                    Ok(())
                } else {
                    Err(SetError::AlreadyAdded)
                };
            }
            // `size` does not limit the members (list:set has been a
            // linked list since Linux 4.x: a `size 4` set took a fifth
            // member when measured); the number of sets bounds it.
            self.members.push(m);
            return Ok(());
        }
        self.check_elem(e)?;
        let (cidr, key) = self.key(e);
        let timeout = e.timeout.or(self.opts.timeout);
        let expires = match timeout {
            Some(0) | None => u64::MAX,
            Some(s) => now.saturating_add(u64::from(s) * NANOS),
        };
        let counter = self.opts.counters.then(|| {
            let c = ElemCounter::default();
            c.packets
                .store(e.packets.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
            c.bytes
                .store(e.bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
            Arc::new(c)
        });
        if let Some(old) = self.elems.get_mut(cidr, key) {
            if old.live(now) && !exist {
                return Err(SetError::AlreadyAdded);
            }
            let was_live = old.live(now);
            old.nomatch = e.nomatch;
            old.expires = expires;
            // `-exist` keeps the counters unless the command gives them
            // (`mtype_add` with IPSET_FLAG_EXIST and ip_set_init_counter).
            if !was_live || e.packets.is_some() || e.bytes.is_some() || old.counter.is_none() {
                old.counter = counter;
            }
            return Ok(());
        }
        if self.elems.len() >= self.opts.maxelem as usize {
            self.elems.expire(now);
            if self.elems.len() >= self.opts.maxelem as usize {
                return Err(SetError::HashFull);
            }
        }
        self.elems.insert(
            cidr,
            key,
            ElemValue {
                nomatch: e.nomatch,
                expires,
                counter,
            },
        );
        Ok(())
    }

    /// Deletes an element (`ipset del`); with `exist`, a missing one is
    /// not an error.
    pub fn del(
        &mut self,
        e: &Elem,
        member: Option<u16>,
        exist: bool,
        now: u64,
    ) -> Result<(), SetError> {
        let found = if self.kind == SetType::ListSet {
            let m = member.ok_or(SetError::MemberMissing)?;
            let before = self.members.len();
            self.members.retain(|&x| x != m);
            before != self.members.len()
        } else {
            if self.kind == SetType::BitmapPort {
                self.check_elem(e)?;
            }
            let (cidr, key) = self.key(e);
            self.elems.remove(cidr, key).is_some_and(|v| v.live(now))
        };
        if found || exist {
            Ok(())
        } else {
            Err(SetError::NotAdded)
        }
    }

    /// `ipset test`: whether the element itself is in the set (a network
    /// is looked up as given; an address in a hash:net set as a packet's
    /// address is, through every prefix; a `nomatch` element answers no).
    pub fn test(&self, e: &Elem, member: Option<u16>, now: u64) -> bool {
        match self.kind {
            SetType::ListSet => member.is_some_and(|m| self.members.contains(&m)),
            _ if self.kind.has_net() && e.cidr == 32 => self
                .elems
                .lookup(e.addr, e.proto, e.port, now, |_| true)
                .is_some_and(|v| !v.nomatch),
            _ => {
                let (cidr, key) = self.key(e);
                self.elems
                    .get(cidr, key)
                    .is_some_and(|v| v.live(now) && !v.nomatch)
            }
        }
    }

    pub fn flush(&mut self) {
        self.elems.clear();
        self.members.clear();
    }

    /// Drops expired elements.
    pub fn expire(&mut self, now: u64) -> usize {
        self.elems.expire(now)
    }

    /// Forgets a member set (list:set, when that set is destroyed).
    pub fn drop_member(&mut self, slot: u16) {
        self.members.retain(|&m| m != slot);
    }
}

/// How a `-m set` match looks at the packet: per dimension, source or
/// destination (bit `i` set: dimension `i` is the source), and how many
/// dimensions the rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DimFlags {
    pub src: u8,
    pub dim: u8,
}

impl DimFlags {
    #[inline]
    pub fn is_src(self, i: u8) -> bool {
        self.src & (1 << i) != 0
    }
}

/// What a set lookup sees of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetPacket {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub has_ports: bool,
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
}

/// The counter conditions of a set match (`--packets-*`, `--bytes-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterOp {
    Eq,
    Ne,
    Lt,
    Gt,
}

impl CounterOp {
    #[inline]
    pub fn holds(self, value: u64, bound: u64) -> bool {
        match self {
            CounterOp::Eq => value == bound,
            CounterOp::Ne => value != bound,
            CounterOp::Lt => value < bound,
            CounterOp::Gt => value > bound,
        }
    }
}

/// The per-packet options of a set match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LookupOpts {
    pub flags: DimFlags,
    pub return_nomatch: bool,
    pub update_counters: bool,
    pub packets: Option<(CounterOp, u64)>,
    pub bytes: Option<(CounterOp, u64)>,
}

/// A slot of the set table: a name and its set.
#[derive(Clone, Debug)]
pub struct SetSlot {
    pub name: String,
    pub set: Arc<IpSet>,
}

/// Every set, by slot: an immutable snapshot.
#[derive(Clone, Debug, Default)]
pub struct SetTable {
    slots: Vec<Option<SetSlot>>,
}

impl SetTable {
    /// No sets (trace filters, which name none).
    pub const EMPTY: SetTable = SetTable { slots: Vec::new() };

    pub fn slot(&self, name: &str) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.name == name))
            .map(|i| i as u16)
    }

    pub fn get(&self, slot: u16) -> Option<&SetSlot> {
        self.slots.get(usize::from(slot))?.as_ref()
    }

    pub fn by_name(&self, name: &str) -> Option<&SetSlot> {
        self.slot(name).and_then(|s| self.get(s))
    }

    /// The sets in slot order (the order `ipset list` and `save` print).
    pub fn iter(&self) -> impl Iterator<Item = (u16, &SetSlot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u16, s)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn name_of(&self, slot: u16) -> Option<&str> {
        self.get(slot).map(|s| s.name.as_str())
    }

    /// Creates a set (`ipset create`); with `exist`, a set of the same
    /// name, type and options is not an error.
    pub fn create(
        &mut self,
        name: &str,
        kind: SetType,
        opts: SetOptions,
        exist: bool,
    ) -> Result<u16, SetError> {
        if let Some(s) = self.slot(name) {
            let same = self
                .get(s)
                .is_some_and(|x| x.set.kind == kind && same_options(&x.set.opts, &opts));
            return if exist && same {
                Ok(s)
            } else {
                Err(SetError::Exists)
            };
        }
        let slot = SetSlot {
            name: name.to_string(),
            set: Arc::new(IpSet::new(kind, opts)),
        };
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(slot);
            return Ok(i as u16);
        }
        if self.slots.len() >= MAX_SETS {
            return Err(SetError::TooManySets);
        }
        self.slots.push(Some(slot));
        Ok(self.slots.len() as u16 - 1)
    }

    /// The set named `name`, to change (copied if a snapshot shares it).
    pub fn set_mut(&mut self, name: &str) -> Result<&mut IpSet, SetError> {
        let s = self.slot(name).ok_or(SetError::NoSuchSet)?;
        match self.slots.get_mut(usize::from(s)).and_then(Option::as_mut) {
            Some(slot) => Ok(Arc::make_mut(&mut slot.set)),
            None => Err(SetError::NoSuchSet),
        }
    }

    /// Whether list:set `set` may take `member` (no list:set in a list).
    pub fn member_slot(&self, member: &str) -> Result<u16, SetError> {
        let m = self.slot(member).ok_or(SetError::MemberMissing)?;
        if self.get(m).is_some_and(|s| s.set.kind == SetType::ListSet) {
            return Err(SetError::MemberLoop);
        }
        Ok(m)
    }

    /// How many list:set sets hold `slot`.
    pub fn list_refs(&self, slot: u16) -> usize {
        self.iter()
            .filter(|(_, s)| s.set.members.contains(&slot))
            .count()
    }

    /// Destroys a set (`ipset destroy`); `in_use` tells whether rules
    /// reference it.
    pub fn destroy(&mut self, name: &str, in_use: bool) -> Result<(), SetError> {
        let s = self.slot(name).ok_or(SetError::NoSuchSet)?;
        if in_use || self.list_refs(s) > 0 {
            return Err(SetError::InUse);
        }
        self.slots[usize::from(s)] = None;
        Ok(())
    }

    /// Destroys every set no rule and no list references (`ipset destroy`
    /// without a name); the first refusal, if any.
    pub fn destroy_all(&mut self, in_use: impl Fn(u16) -> bool) -> Result<(), SetError> {
        let names: Vec<String> = self.iter().map(|(_, s)| s.name.clone()).collect();
        // Lists first, so that their members are free.
        for n in &names {
            if self
                .by_name(n)
                .is_some_and(|s| s.set.kind == SetType::ListSet)
            {
                let s = self.slot(n).unwrap_or(0);
                self.destroy(n, in_use(s))?;
            }
        }
        for n in &names {
            if let Some(s) = self.slot(n) {
                self.destroy(n, in_use(s))?;
            }
        }
        Ok(())
    }

    /// Exchanges the contents of two sets, names staying in place
    /// (`ip_set_swap`: rules naming either now see the other's elements).
    pub fn swap(&mut self, a: &str, b: &str) -> Result<(), SetError> {
        let i = self.slot(a).ok_or(SetError::NoSuchSet)?;
        let j = self.slot(b).ok_or(SetError::NoSuchSet)?;
        let (ka, kb) = match (self.get(i), self.get(j)) {
            (Some(x), Some(y)) => (x.set.kind, y.set.kind),
            _ => return Err(SetError::NoSuchSet),
        };
        if ka != kb {
            return Err(SetError::TypeMismatch);
        }
        if i == j {
            return Ok(());
        }
        let (i, j) = (usize::from(i), usize::from(j));
        let sa = self.slots[i].as_ref().map(|s| Arc::clone(&s.set));
        let sb = self.slots[j].as_ref().map(|s| Arc::clone(&s.set));
        if let (Some(sa), Some(sb)) = (sa, sb) {
            if let Some(x) = self.slots[i].as_mut() {
                x.set = sb;
            }
            if let Some(y) = self.slots[j].as_mut() {
                y.set = sa;
            }
        }
        Ok(())
    }

    /// Drops expired elements from every set.
    pub fn expire(&mut self, now: u64) {
        for s in self.slots.iter_mut().flatten() {
            if s.set.opts.timeout.is_some() && !s.set.is_empty() {
                Arc::make_mut(&mut s.set).expire(now);
            }
        }
    }

    /// The `-m set` test of set `slot` for a packet (`ip_set_test` and
    /// `mtype_test_cidrs`): whether the rule's match holds before its `!`.
    #[inline]
    pub fn matches(&self, slot: u16, p: &SetPacket, o: &LookupOpts, now: u64) -> bool {
        let Some(s) = self.get(slot) else {
            return false;
        };
        let set = &s.set;
        if set.kind == SetType::ListSet {
            // The first member set that matches decides (`list_set_ktest`).
            return set
                .members
                .iter()
                .any(|&m| m != slot && self.member_matches(m, p, o, now));
        }
        match lookup(set, p, o, now) {
            // --return-nomatch: a nomatch element matches and an element
            // does not ("invert matched element" in ip_set_test).
            Some(nomatch) if o.return_nomatch && set.kind.has_net() => nomatch,
            Some(nomatch) => !nomatch,
            None => false,
        }
    }

    fn member_matches(&self, slot: u16, p: &SetPacket, o: &LookupOpts, now: u64) -> bool {
        match self.get(slot) {
            Some(s) if s.set.kind != SetType::ListSet => self.matches(slot, p, o, now),
            _ => false,
        }
    }
}

fn same_options(a: &SetOptions, b: &SetOptions) -> bool {
    SetOptions { initval: 0, ..*a } == SetOptions { initval: 0, ..*b }
}

/// The element of `set` the packet falls in, if any: whether it is a
/// `nomatch` one. Updates its counters as the match asks.
#[inline]
fn lookup(set: &IpSet, p: &SetPacket, o: &LookupOpts, now: u64) -> Option<bool> {
    let f = o.flags;
    let addr = if f.is_src(0) { p.src } else { p.dst };
    let port_of = |dim: u8| if f.is_src(dim) { p.sport } else { p.dport };
    let (addr, proto, port) = match set.kind {
        SetType::HashIp | SetType::HashNet => (addr, 0, 0),
        SetType::HashIpPort | SetType::HashNetPort => {
            // `ip_set_get_ip4_port`: ports of TCP and UDP only here (other
            // protocols' elements are refused when added).
            if !p.has_ports || !(p.proto == 6 || p.proto == 17) {
                return None;
            }
            (addr, p.proto, port_of(1))
        }
        SetType::BitmapPort => {
            if !p.has_ports || !(p.proto == 6 || p.proto == 17) {
                return None;
            }
            (0, 0, port_of(0))
        }
        SetType::ListSet => return None,
    };
    let v = set.elems.lookup(addr, proto, port, now, |v| {
        // ip_set_match_extensions: counters are updated first, then
        // compared; a set without counters ignores the conditions.
        let Some(c) = &v.counter else {
            return true;
        };
        if o.update_counters {
            // Relaxed: statistics shared by all workers.
            c.packets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.bytes
                .fetch_add(u64::from(p.len), std::sync::atomic::Ordering::Relaxed);
        }
        let (packets, bytes) = c.get();
        o.packets.is_none_or(|(op, n)| op.holds(packets, n))
            && o.bytes.is_none_or(|(op, n)| op.holds(bytes, n))
    })?;
    Some(v.nomatch)
}

/// The sets the gateway and its workers share: the current [`SetTable`],
/// replaced as a whole by each change (workers load it at each batch),
/// and a lock that serialises the control plane's changes (the packet
/// path never takes it).
#[derive(Debug, Default)]
pub struct SharedSets {
    table: ArcSwap<SetTable>,
    writer: Mutex<()>,
}

impl SharedSets {
    pub fn new(table: SetTable) -> SharedSets {
        SharedSets {
            table: ArcSwap::from_pointee(table),
            writer: Mutex::new(()),
        }
    }

    /// The current table.
    #[inline]
    pub fn snapshot(&self) -> Arc<SetTable> {
        self.table.load_full()
    }

    /// The current table without taking a reference (one atomic load).
    #[inline]
    pub fn now(&self) -> arc_swap::Guard<Arc<SetTable>> {
        self.table.load()
    }

    /// Applies `change` to a copy of the table and publishes it if it
    /// succeeds: all of a change or none of it, seen by workers at their
    /// next batch. Only the sets `change` touches are copied.
    pub fn update<R, E>(&self, change: impl FnOnce(&mut SetTable) -> Result<R, E>) -> Result<R, E> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = SetTable::clone(&self.table.load());
        let r = change(&mut next)?;
        self.table.store(Arc::new(next));
        Ok(r)
    }
}

#[cfg(test)]
mod tests;
