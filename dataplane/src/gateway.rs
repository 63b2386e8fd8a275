//! [`Gateway`]: what all workers share (interfaces, routes, the rule set,
//! conntrack, neighbours, ICMP rate limits, the tracer), and what it is
//! made of ([`GatewayConfig`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{
    AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::classify::{
    compile_family, compile_for_gateway, CompileError, CompiledRuleSet, MAX_IFACES, V6,
};
use crate::conntrack::{Conntrack, ConntrackConfig};
use crate::frag::{FragConfig, Reassembly};
use crate::host_addr::{Added, GarpSchedule, HostAddr, HostAddrs};
use crate::icmp_limit::{IcmpLimitConfig, IcmpLimiter};
use crate::ipset::{SetTable, SharedSets};
use crate::link::{Link, LinkError, Links};
use crate::neigh::{Mac, Neighbours};
use crate::ra::{RaConfig, RaSchedule};
use crate::route::{RouteError, RoutePolicy, RouteTable, StaticRoute};
use crate::rule::{Ipv4Net, RuleSet};
use crate::stateful::MatchTables;
use crate::trace::Tracer;

/// One interface the gateway owns, as it starts. Its address and MTU may
/// change while it runs ([`Gateway::link_changed`]): read them with
/// [`Gateway::addr`] and [`Gateway::mtu`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    pub name: String,
    pub mac: Mac,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub mtu: u16,
    /// Where it is on the wire: a port, or a VLAN of a port.
    pub link: Link,
    /// Its IPv6 addresses besides the link-local one, with their prefixes.
    pub addr6: Vec<(Ipv6Addr, u8)>,
    /// Its IPv6 link-local address (by default the EUI-64 one Linux
    /// derives from the MAC: [`link_local_eui64`]).
    pub link_local: Ipv6Addr,
    /// Router advertisements it sends, if any.
    pub ra: Option<RaConfig>,
}

pub use crate::wire::ipv6::ndp::link_local_eui64;

/// What changed on one of the gateway's interfaces (the kernel's
/// RTM_NEWLINK, RTM_NEWADDR, RTM_DELADDR, read by the control plane's link
/// monitor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// The link's MTU (what the gateway uses is capped at `cap`, the
    /// largest the dataplane's frames hold), whether it is up
    /// (administratively, IFF_UP) and has carrier (IFF_LOWER_UP).
    Link {
        mtu: u32,
        cap: u16,
        up: bool,
        carrier: bool,
    },
    /// An IPv4 address was added to the interface.
    AddrAdded { addr: Ipv4Addr, prefix: u8 },
    /// An IPv4 address was removed from the interface.
    AddrRemoved { addr: Ipv4Addr, prefix: u8 },
    /// The host added an IPv4 address to the interface's host path device
    /// (or changed its flags: a secondary promoted to primary).
    HostAddrAdded {
        addr: Ipv4Addr,
        prefix: u8,
        secondary: bool,
    },
    /// The host removed an IPv4 address from the interface's host path
    /// device.
    HostAddrRemoved { addr: Ipv4Addr, prefix: u8 },
}

/// An interface address and its prefix length.
pub type IfaceAddr = (Ipv4Addr, u8);

/// What [`Gateway::link_changed`] did, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkApplied {
    /// The MTU the gateway now uses, if it changed (old, new), and the
    /// link's own when the cap lowered it.
    pub mtu: Option<(u16, u16)>,
    pub mtu_capped: Option<u32>,
    /// Up and carrier, if either changed (new values).
    pub state: Option<(bool, bool)>,
    /// The interface's address, if it changed (old, new; None: none).
    pub addr: Option<(Option<IfaceAddr>, Option<IfaceAddr>)>,
    /// MASQUERADE connections forgotten (their address went away, or the
    /// interface went down).
    pub flushed: usize,
    /// A host path device's address that became the interface's (and is
    /// announced by gratuitous ARP), or stopped being it.
    pub host_added: Option<IfaceAddr>,
    pub host_removed: Option<IfaceAddr>,
    /// A host path device's address refused: the interface holds
    /// [`crate::host_addr::MAX_HOST_ADDRS`] already.
    pub host_refused: Option<IfaceAddr>,
}

impl LinkApplied {
    pub fn is_empty(&self) -> bool {
        *self == LinkApplied::default()
    }
}

/// An interface's state that may change while the gateway runs. Relaxed
/// stores and loads: each value is read on its own (a packet sees the old
/// MTU or the new); what must not outlive a change, the fast path's cached
/// flows, follows [`Gateway::link_epoch`].
#[derive(Debug)]
struct LiveIface {
    mtu: AtomicU16,
    /// The address (0: none) and its prefix length.
    addr: AtomicU32,
    prefix: AtomicU8,
    /// `UP` and `CARRIER` bits.
    flags: AtomicU8,
    /// Whether `addr` came from the host path device (the interface had
    /// none when the host added it there), so that its removal there
    /// removes it.
    addr_from_host: AtomicBool,
    /// New connections refused here: no free NAT port (source NAT out of
    /// this interface, destination NAT into it), and the connection table
    /// full (arriving here). Relaxed counters, touched on failures only.
    nat_no_free_port: AtomicU64,
    ct_table_full: AtomicU64,
}

/// Per-interface counts of refused new connections
/// ([`Gateway::nat_failures`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFailures {
    pub nat_no_free_port: u64,
    pub ct_table_full: u64,
}

const UP: u8 = 1;
const CARRIER: u8 = 2;

/// What a gateway is made of.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub ifaces: Vec<IfaceConfig>,
    /// Static routes: destination and gateway.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// IPv6 static routes.
    pub routes6: Vec<StaticRoute<Ipv6Addr>>,
    /// Other routing tables and the rules that choose them (by mark).
    pub policy: RoutePolicy,
    pub conntrack: ConntrackConfig,
    /// How often ICMP errors may go out (Linux's `icmp_*` sysctls).
    pub icmp: IcmpLimitConfig,
    /// IPv4 reassembly (Linux's `ipfrag_*` sysctls).
    pub frag: FragConfig,
}

#[derive(Debug)]
pub enum GatewayError {
    Route(RouteError),
    Compile(CompileError),
    TooManyInterfaces(usize),
    Link(LinkError),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Route(e) => write!(f, "{e}"),
            GatewayError::Compile(e) => write!(f, "{e}"),
            GatewayError::TooManyInterfaces(n) => {
                write!(f, "{n} interfaces; at most {MAX_IFACES} are supported")
            }
            GatewayError::Link(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GatewayError {}

/// What all workers share: interfaces, routes, the rule set (swapped
/// atomically on reload), the conntrack table and the neighbour table.
pub struct Gateway {
    pub ifaces: Vec<IfaceConfig>,
    /// The interfaces on the ports (the one map between the two).
    pub links: Links,
    pub routes: RouteTable,
    /// The IPv6 routes: connected (link-local and configured prefixes) and
    /// static.
    pub routes6: RouteTable<Ipv6Addr>,
    rules: ArcSwap<CompiledRuleSet>,
    /// The IPv6 rule set (`rules6`), swapped as `rules` is.
    rules6: ArcSwap<CompiledRuleSet<V6>>,
    /// Shared with `-m connlimit`'s tables, which look connections up.
    pub conntrack: Arc<Conntrack>,
    /// The IPv6 connections, when IPv6 is on (an interface has an IPv6
    /// address): one maximum with `conntrack`.
    pub conntrack6: Option<Conntrack<Ipv6Addr>>,
    pub neigh: Neighbours,
    pub neigh6: Neighbours<Ipv6Addr>,
    /// The ICMP error rate limits all workers share.
    pub icmp_limit: IcmpLimiter,
    /// The IPv4 reassembly queues all workers share.
    pub frags: Reassembly,
    /// Indices handed to workers (their rule counter stripe). Relaxed: only
    /// uniqueness matters.
    worker_seq: AtomicUsize,
    /// The running packet trace, if any (`xdpgw trace`).
    pub tracer: Tracer,
    /// Per interface: MTU, address and link state as they are now.
    live: Box<[LiveIface]>,
    /// Bumped after every change of `live` (Release; workers load it with
    /// Acquire at each batch and end their cached flows when it moved).
    link_epoch: AtomicU32,
    /// The IP sets (`-m set`), changed at run time without a reload;
    /// workers load the current table at each batch.
    pub sets: SharedSets,
    /// The stateful matches' tables: `-m recent`'s and `-m hashlimit`'s by
    /// name (held by the rule sets that name them), and the connection
    /// table `-m connlimit` counts in.
    pub match_tables: MatchTables,
    /// When each interface's next router advertisement is due (those with
    /// `[interface.ra]`); taken by whichever worker's housekeeping finds
    /// one due, never on the packet path.
    ra: Box<[std::sync::Mutex<RaSchedule>]>,
    /// The link-local multicast groups the host joined on each interface's
    /// host path device (`(interface, group)`, from `/proc/net/igmp`): what
    /// arrives for them (VRRP, OSPF hellos) is delivered to it.
    host_groups: ArcSwap<Box<[(u8, Ipv4Addr)]>>,
    /// The addresses the host gave the host path devices besides each
    /// interface's own (keepalived's virtual addresses): replaced whole by
    /// the control plane, then `link_epoch` moves; workers take the current
    /// set when it moved.
    host_addrs: ArcSwap<HostAddrs>,
    /// Whether `host_addrs` holds any: the packet path's check before it
    /// loads the set (an `ArcSwap` load costs what a forwarded packet's
    /// lookup does: measured, 8% of IPv4's new connections).
    host_addrs_any: AtomicBool,
    /// Gratuitous ARPs due for new host addresses; `garp_pending` (Relaxed:
    /// a hint read at each housekeeping, the lock decides) says whether any
    /// are, so that idle housekeeping takes no lock.
    garp: std::sync::Mutex<GarpSchedule>,
    garp_pending: AtomicUsize,
}

impl Gateway {
    pub fn new(cfg: GatewayConfig, rules: &RuleSet) -> Result<Gateway, GatewayError> {
        Gateway::with_sets(cfg, SetTable::default(), rules)
    }

    /// A gateway whose IP sets are `sets` (loaded before the rules, which
    /// may name them).
    pub fn with_sets(
        cfg: GatewayConfig,
        sets: SetTable,
        rules: &RuleSet,
    ) -> Result<Gateway, GatewayError> {
        if cfg.ifaces.len() > MAX_IFACES {
            return Err(GatewayError::TooManyInterfaces(cfg.ifaces.len()));
        }
        let connected: Vec<(u8, Ipv4Addr, u8)> = cfg
            .ifaces
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u8, f.addr, f.prefix))
            .collect();
        let routes = RouteTable::new(&connected, &cfg.routes)
            .and_then(|t| t.with_policy(&cfg.policy))
            .map_err(GatewayError::Route)?;
        let mut connected6: Vec<(u8, Ipv6Addr, u8)> = Vec::new();
        for (i, f) in cfg.ifaces.iter().enumerate() {
            connected6.push((i as u8, f.link_local, 64));
            connected6.extend(f.addr6.iter().map(|&(a, p)| (i as u8, a, p)));
        }
        let routes6 = RouteTable::build(&connected6, &cfg.routes6).map_err(GatewayError::Route)?;
        let links: Vec<Link> = cfg.ifaces.iter().map(|f| f.link).collect();
        let links = Links::new(&links).map_err(GatewayError::Link)?;
        let names: Vec<&str> = cfg.ifaces.iter().map(|f| f.name.as_str()).collect();
        let conntrack = Arc::new(Conntrack::new(cfg.conntrack));
        let match_tables = MatchTables::new(Arc::clone(&conntrack));
        let compiled = compile_for_gateway(rules, &names, &sets, &match_tables)
            .map_err(GatewayError::Compile)?;
        // No IPv6 rules until `install6`: every hook accepts.
        let compiled6 = compile_family(&RuleSet::default(), &names, &sets, &match_tables)
            .map_err(GatewayError::Compile)?;
        let live = cfg
            .ifaces
            .iter()
            .map(|f| LiveIface {
                mtu: AtomicU16::new(f.mtu),
                addr: AtomicU32::new(u32::from(f.addr)),
                prefix: AtomicU8::new(f.prefix),
                flags: AtomicU8::new(UP | CARRIER),
                addr_from_host: AtomicBool::new(false),
                nat_no_free_port: AtomicU64::new(0),
                ct_table_full: AtomicU64::new(0),
            })
            .collect();
        let ipv6 = cfg.ifaces.iter().any(|f| !f.addr6.is_empty());
        let ra = cfg
            .ifaces
            .iter()
            .map(|_| std::sync::Mutex::new(RaSchedule::new(0)))
            .collect();
        Ok(Gateway {
            ifaces: cfg.ifaces,
            links,
            routes,
            routes6,
            rules: ArcSwap::from_pointee(compiled),
            rules6: ArcSwap::from_pointee(compiled6),
            conntrack6: ipv6.then(|| Conntrack::new6(&conntrack)),
            conntrack,
            neigh: Neighbours::default(),
            neigh6: Neighbours::default(),
            icmp_limit: IcmpLimiter::new(cfg.icmp),
            frags: Reassembly::new(cfg.frag),
            worker_seq: AtomicUsize::new(0),
            tracer: Tracer::default(),
            live,
            link_epoch: AtomicU32::new(0),
            sets: SharedSets::new(sets),
            match_tables,
            ra,
            host_groups: ArcSwap::from_pointee(Box::default()),
            host_addrs: ArcSwap::from_pointee(HostAddrs::default()),
            host_addrs_any: AtomicBool::new(false),
            garp: std::sync::Mutex::new(GarpSchedule::default()),
            garp_pending: AtomicUsize::new(0),
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
        compile_for_gateway(rules, &names, &self.sets.now(), &self.match_tables)
    }

    /// Whether the installed rules name set `slot` (a set in use cannot
    /// be destroyed, as the kernel's reference count refuses it).
    pub fn set_in_use(&self, slot: u16) -> bool {
        self.rules.load().uses_set(slot)
    }

    /// Installs a compiled rule set; returns the one it replaced. Workers
    /// pick it up at their next batch.
    pub fn install_compiled(&self, rules: Arc<CompiledRuleSet>) -> Arc<CompiledRuleSet> {
        self.rules.swap(rules)
    }

    pub fn rules(&self) -> Arc<CompiledRuleSet> {
        self.rules.load_full()
    }

    /// The installed rule set without taking a reference (a worker's check
    /// at each batch: one atomic load).
    #[inline]
    pub(crate) fn rules_now(&self) -> arc_swap::Guard<Arc<CompiledRuleSet>> {
        self.rules.load()
    }

    /// Compiles and installs a new IPv6 rule set (`rules6`), as
    /// [`Gateway::install`] does the IPv4 one.
    pub fn install6(&self, rules: &RuleSet) -> Result<(), CompileError> {
        let compiled = self.compile6(rules)?;
        self.install_compiled6(Arc::new(compiled));
        Ok(())
    }

    /// Compiles an IPv6 rule set for this gateway's interfaces.
    pub fn compile6(&self, rules: &RuleSet) -> Result<CompiledRuleSet<V6>, CompileError> {
        let names: Vec<&str> = self.ifaces.iter().map(|f| f.name.as_str()).collect();
        compile_family(rules, &names, &self.sets.now(), &self.match_tables)
    }

    /// Installs a compiled IPv6 rule set; returns the one it replaced.
    pub fn install_compiled6(&self, rules: Arc<CompiledRuleSet<V6>>) -> Arc<CompiledRuleSet<V6>> {
        self.rules6.swap(rules)
    }

    pub fn rules6(&self) -> Arc<CompiledRuleSet<V6>> {
        self.rules6.load_full()
    }

    #[inline]
    pub(crate) fn rules6_now(&self) -> arc_swap::Guard<Arc<CompiledRuleSet<V6>>> {
        self.rules6.load()
    }

    /// Whether `addr` is one of interface `iface`'s IPv6 addresses (its
    /// link-local one included).
    #[inline]
    pub fn is_local6_on(&self, iface: u8, addr: Ipv6Addr) -> bool {
        self.ifaces
            .get(usize::from(iface))
            .is_some_and(|f| f.link_local == addr || f.addr6.iter().any(|&(a, _)| a == addr))
    }

    /// The interface holding the global IPv6 address `addr`, if it is one
    /// of the gateway's (link-local addresses are an interface's own: see
    /// [`Gateway::is_local6_on`]).
    #[inline]
    pub fn local6(&self, addr: Ipv6Addr) -> Option<u8> {
        self.ifaces
            .iter()
            .position(|f| f.addr6.iter().any(|&(a, _)| a == addr))
            .map(|i| i as u8)
    }

    /// The source address the gateway sends from on `iface` towards `dst`
    /// (`ipv6_dev_get_saddr`, simplified): the link-local address for a
    /// link-local or multicast link-scope destination, else the interface's
    /// global address on `dst`'s prefix, else its first global one, else
    /// its link-local one.
    pub fn source6(&self, iface: u8, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let f = self.ifaces.get(usize::from(iface))?;
        let link_scope =
            dst.is_unicast_link_local() || (dst.is_multicast() && dst.segments()[0] & 0x000f <= 2);
        if link_scope {
            return Some(f.link_local);
        }
        let on_prefix = f.addr6.iter().find(|&&(a, p)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
            u128::from(a) & mask == u128::from(dst) & mask
        });
        Some(
            on_prefix
                .or(f.addr6.first())
                .map_or(f.link_local, |&(a, _)| a),
        )
    }

    /// Whether interface `iface`'s router advertisement is due at `now`;
    /// if so it counts as sent (the caller sends it) and the next one is
    /// drawn with `rand`. False while another worker holds the schedule.
    pub fn router_advert_due(&self, iface: u8, now: u64, cfg: &RaConfig, rand: u32) -> bool {
        let Some(Ok(mut s)) = self.ra.get(usize::from(iface)).map(|m| m.try_lock()) else {
            return false;
        };
        if !s.due(now) {
            return false;
        }
        s.sent(now, cfg, rand);
        true
    }

    /// A router solicitation arrived on `iface` at `now`: its next
    /// advertisement moves earlier (RFC 4861 6.2.6).
    pub fn router_solicited(&self, iface: u8, now: u64, rand: u32) {
        let has_ra = self
            .ifaces
            .get(usize::from(iface))
            .is_some_and(|f| f.ra.is_some());
        if let (true, Some(Ok(mut s))) = (
            has_ra,
            self.ra.get(usize::from(iface)).map(|m| m.try_lock()),
        ) {
            s.solicited(now, rand);
        }
    }

    /// The name of interface `iface`.
    pub fn iface_name(&self, iface: u8) -> Option<&str> {
        self.ifaces.get(usize::from(iface)).map(|f| f.name.as_str())
    }

    /// The interface holding `addr` as its own address (not counting the
    /// host path devices' addresses: see [`Gateway::local_iface`]).
    #[inline]
    pub fn own_iface(&self, addr: Ipv4Addr) -> Option<u8> {
        let a = u32::from(addr);
        if a == 0 {
            return None;
        }
        self.live
            .iter()
            .position(|f| f.addr.load(Ordering::Relaxed) == a)
            .map(|i| i as u8)
    }

    /// The interface holding `addr`, if it is one of the gateway's (its own
    /// address, or one the host gave its host path device).
    #[inline]
    pub fn local_iface(&self, addr: Ipv4Addr) -> Option<u8> {
        self.own_iface(addr).or_else(|| {
            if !self.host_addrs_any.load(Ordering::Relaxed) {
                return None;
            }
            self.host_addrs.load().iface_of(addr)
        })
    }

    /// Whether the host joined multicast group `group` on interface
    /// `iface`'s host path device (`ip_check_mc_rcu`).
    #[inline]
    pub fn host_joined(&self, iface: u8, group: Ipv4Addr) -> bool {
        self.host_groups
            .load()
            .iter()
            .any(|&(i, g)| i == iface && g == group)
    }

    /// The groups the host joined on the host path devices now, as
    /// `(interface, group)`; returns whether they changed.
    pub fn set_host_groups(&self, groups: &[(u8, Ipv4Addr)]) -> bool {
        if self.host_groups.load()[..] == *groups {
            return false;
        }
        self.host_groups.store(std::sync::Arc::new(groups.into()));
        true
    }

    /// Publishes the host path devices' addresses.
    fn set_host_addrs(&self, set: HostAddrs) {
        self.host_addrs_any
            .store(!set.is_empty(), Ordering::Relaxed);
        self.host_addrs.store(Arc::new(set));
    }

    /// The host path devices' addresses now (one atomic load; a worker
    /// keeps the set of its batch instead).
    pub fn host_addrs(&self) -> Arc<HostAddrs> {
        self.host_addrs.load_full()
    }

    /// The source address for a packet out of `iface` to next hop `hop`, as
    /// Linux's `inet_select_addr` picks it (MASQUERADE): the first primary
    /// address of the interface whose subnet holds `hop`, else its first
    /// primary address. The interface's own address comes first; the host
    /// path device's secondary addresses are never chosen.
    pub fn select_src(&self, iface: u8, hop: impl FnOnce() -> Ipv4Addr) -> Option<Ipv4Addr> {
        let own = self.addr_prefix(iface);
        if !self.host_addrs_any.load(Ordering::Relaxed) {
            return own.map(|(a, _)| a);
        }
        let host = self.host_addrs.load();
        let mut primaries = host.on(iface).filter(|h| !h.secondary).peekable();
        if primaries.peek().is_none() {
            return own.map(|(a, _)| a);
        }
        let hop = hop();
        let own = own.map(|(addr, prefix)| HostAddr {
            iface,
            addr,
            prefix,
            secondary: false,
        });
        let mut first = None;
        for h in own.iter().chain(primaries) {
            if h.covers(hop) {
                return Some(h.addr);
            }
            first = first.or(Some(h.addr));
        }
        first
    }

    /// Takes the gratuitous ARPs due at `now` into `out` (as many as fit);
    /// how many. Never waits: nothing while another worker holds the
    /// schedule.
    pub fn garps_due(&self, now: u64, out: &mut [(u8, Ipv4Addr)]) -> usize {
        if self.garp_pending.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let Ok(mut s) = self.garp.try_lock() else {
            return 0;
        };
        let n = s.take_due(now, out);
        self.garp_pending.store(s.len(), Ordering::Relaxed);
        n
    }

    fn garp_schedule(&self, f: impl FnOnce(&mut GarpSchedule)) {
        let mut s = match self.garp.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        f(&mut s);
        self.garp_pending.store(s.len(), Ordering::Relaxed);
    }

    /// The MTU of interface `iface` now (1500 for an interface the gateway
    /// does not have).
    #[inline]
    pub fn mtu(&self, iface: u8) -> u16 {
        self.live
            .get(usize::from(iface))
            .map_or(1500, |f| f.mtu.load(Ordering::Relaxed))
    }

    /// The address of interface `iface` now, if it has one: its own, or
    /// without one the first its host path device holds (the first of
    /// `ifa_list`, what REDIRECT and ICMP errors take).
    #[inline]
    pub fn addr(&self, iface: u8) -> Option<Ipv4Addr> {
        let a = self
            .live
            .get(usize::from(iface))?
            .addr
            .load(Ordering::Relaxed);
        if a != 0 {
            return Some(Ipv4Addr::from(a));
        }
        self.host_addrs.load().on(iface).next().map(|h| h.addr)
    }

    /// The address of interface `iface` and its prefix length, if it has
    /// one.
    pub fn addr_prefix(&self, iface: u8) -> Option<IfaceAddr> {
        let f = self.live.get(usize::from(iface))?;
        let a = f.addr.load(Ordering::Relaxed);
        (a != 0).then(|| (Ipv4Addr::from(a), f.prefix.load(Ordering::Relaxed)))
    }

    /// Counts a new connection refused for want of a NAT port on `iface`
    /// (the interface whose address ran out: source NAT's outgoing one,
    /// destination NAT's incoming one).
    pub fn count_nat_no_free_port(&self, iface: u8) {
        if let Some(l) = self.live.get(usize::from(iface)) {
            l.nat_no_free_port.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a new connection that arrived on `iface` refused because the
    /// connection table is full.
    pub fn count_ct_table_full(&self, iface: u8) {
        if let Some(l) = self.live.get(usize::from(iface)) {
            l.ct_table_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The refused new connections of interface `iface` so far.
    pub fn nat_failures(&self, iface: u8) -> NatFailures {
        self.live
            .get(usize::from(iface))
            .map(|l| NatFailures {
                nat_no_free_port: l.nat_no_free_port.load(Ordering::Relaxed),
                ct_table_full: l.ct_table_full.load(Ordering::Relaxed),
            })
            .unwrap_or_default()
    }

    /// Whether interface `iface` is up and has carrier.
    pub fn link_up(&self, iface: u8) -> bool {
        self.live
            .get(usize::from(iface))
            .is_some_and(|f| f.flags.load(Ordering::Relaxed) == UP | CARRIER)
    }

    /// Moves after every change an interface's MTU, address or link state
    /// went through (a worker's cached flows end when it moved).
    #[inline]
    pub fn link_epoch(&self) -> u32 {
        // Acquire: pairs with the Release in `link_changed`, so that a
        // worker that sees the new epoch reads the new values.
        self.link_epoch.load(Ordering::Acquire)
    }

    /// Applies what the kernel reported of interface `iface`:
    ///
    /// - MTU: the FORWARD check (`ip_forward`'s `ip_exceeds_mtu`) and the
    ///   fast path use the new one from the workers' next batch.
    /// - Address added: it becomes the interface's address (ARP answers,
    ///   local delivery, MASQUERADE's source for new connections), as
    ///   `inet_select_addr` picks an interface's primary address.
    /// - Address removed: if it was the interface's, the interface has no
    ///   address, and the MASQUERADE connections bound to it are forgotten
    ///   (`masq_inet_event` -> `nf_ct_iterate_cleanup_net(inet_cmp)`).
    /// - Down (IFF_UP cleared): its MASQUERADE connections are forgotten
    ///   (`masq_device_event` on NETDEV_DOWN). Carrier loss alone changes
    ///   nothing but the log, as in Linux.
    /// - Host address added or removed (on the interface's host path
    ///   device): one of the interface's addresses besides its own, at most
    ///   [`crate::host_addr::MAX_HOST_ADDRS`], announced by gratuitous ARP
    ///   (see `host_addr_added`).
    pub fn link_changed(&self, iface: u8, change: LinkChange) -> LinkApplied {
        let mut done = LinkApplied::default();
        let Some(f) = self.live.get(usize::from(iface)) else {
            return done;
        };
        match change {
            LinkChange::Link {
                mtu,
                cap,
                up,
                carrier,
            } => {
                let used = u16::try_from(mtu).unwrap_or(u16::MAX).min(cap);
                let old = f.mtu.swap(used, Ordering::Relaxed);
                if old != used {
                    done.mtu = Some((old, used));
                    if u32::from(used) < mtu {
                        done.mtu_capped = Some(mtu);
                    }
                }
                let flags = if up { UP } else { 0 } | if carrier { CARRIER } else { 0 };
                let was = f.flags.swap(flags, Ordering::Relaxed);
                if was != flags {
                    done.state = Some((up, carrier));
                    if was & UP != 0 && !up {
                        if let Some(a) = self.addr(iface) {
                            done.flushed = self.forget_masquerade(a);
                        }
                    }
                }
            }
            LinkChange::AddrAdded { addr, prefix } => {
                let old = self.addr_prefix(iface);
                if old != Some((addr, prefix)) {
                    f.addr_from_host.store(false, Ordering::Relaxed);
                    f.prefix.store(prefix, Ordering::Relaxed);
                    f.addr.store(u32::from(addr), Ordering::Relaxed);
                    done.addr = Some((old, Some((addr, prefix))));
                }
            }
            LinkChange::AddrRemoved { addr, .. } => {
                let old = self.addr_prefix(iface);
                if old.is_some_and(|(a, _)| a == addr) {
                    f.addr.store(0, Ordering::Relaxed);
                    done.addr = Some((old, None));
                    done.flushed = self.forget_masquerade(addr);
                }
            }
            LinkChange::HostAddrAdded {
                addr,
                prefix,
                secondary,
            } => self.host_addr_added(iface, f, addr, prefix, secondary, &mut done),
            LinkChange::HostAddrRemoved { addr, prefix } => {
                let own = self.addr_prefix(iface);
                if own == Some((addr, prefix)) {
                    // The interface's own address left its device: it goes
                    // only if it came from there; the configured (or the
                    // port's) address stays the interface's.
                    if f.addr_from_host.swap(false, Ordering::Relaxed) {
                        f.addr.store(0, Ordering::Relaxed);
                        done.host_removed = Some((addr, prefix));
                        self.garp_schedule(|s| s.remove(iface, addr));
                    }
                } else if let Some(set) = self.host_addrs.load().without(iface, addr, prefix) {
                    self.set_host_addrs(set);
                    done.host_removed = Some((addr, prefix));
                    self.garp_schedule(|s| s.remove(iface, addr));
                }
            }
        }
        if !done.is_empty() {
            // Release: the values above are visible to a worker that sees
            // the new epoch.
            self.link_epoch.fetch_add(1, Ordering::Release);
        }
        done
    }

    /// An address the host added to interface `iface`'s host path device:
    /// it becomes one of the interface's (the interface's own when it had
    /// none), announced by gratuitous ARP. Connections translated to a host
    /// address are kept when it leaves (the pair's state sync carries them
    /// to the new master): Linux forgets MASQUERADE's (`masq_inet_event`)
    /// and keeps SNAT's, which xdpgw cannot tell apart.
    fn host_addr_added(
        &self,
        iface: u8,
        f: &LiveIface,
        addr: Ipv4Addr,
        prefix: u8,
        secondary: bool,
        done: &mut LinkApplied,
    ) {
        let own = self.addr_prefix(iface);
        if own == Some((addr, prefix)) {
            // The configured address xdpgw gave the device, or its own again.
            return;
        }
        if own.is_none() && self.local_iface(addr).is_none() {
            f.prefix.store(prefix, Ordering::Relaxed);
            f.addr.store(u32::from(addr), Ordering::Relaxed);
            f.addr_from_host.store(true, Ordering::Relaxed);
        } else {
            let h = HostAddr {
                iface,
                addr,
                prefix,
                secondary,
            };
            let (set, added) = self.host_addrs.load().with_added(h);
            match added {
                Added::Full => {
                    done.host_refused = Some((addr, prefix));
                    return;
                }
                Added::Unchanged => return,
                Added::Updated => {
                    // Only its flag changed (a secondary promoted): the
                    // epoch moves, nothing is logged or announced.
                    self.set_host_addrs(set);
                    self.link_epoch.fetch_add(1, Ordering::Release);
                    return;
                }
                Added::New => self.set_host_addrs(set),
            }
        }
        done.host_added = Some((addr, prefix));
        self.garp_schedule(|s| s.add(iface, addr));
    }

    /// Forgets the source-NATed connections whose replies come back to
    /// `addr` from elsewhere (MASQUERADE's, `inet_cmp`: the reply tuple's
    /// destination is the address). Linux tells MASQUERADE's from SNAT's
    /// by the interface it recorded (`masq_index`); xdpgw records none, so
    /// an SNAT to the same address is forgotten as well.
    fn forget_masquerade(&self, addr: Ipv4Addr) -> usize {
        self.conntrack
            .remove_if(|s| {
                s.status & crate::conntrack::status::SRC_NAT != 0
                    && s.reply.dst == addr
                    && s.orig.src != addr
            })
            .len()
    }

    /// The next worker's index (its stripe of the rule counters).
    pub(crate) fn next_worker_index(&self) -> usize {
        self.worker_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The route type of `addr` as Linux's `inet_dev_addr_type` gives it
    /// (`RTN_*`, see [`crate::rule::AddrType`]), from the gateway's own
    /// addresses (its local table): 0.0.0.0/8 and 255.255.255.255 are
    /// BROADCAST, 224.0.0.0/4 MULTICAST, the interfaces' addresses and
    /// 127.0.0.0/8 LOCAL, their networks' broadcast addresses (prefixes up
    /// to /30) and 127.255.255.255 BROADCAST, anything else UNICAST. With
    /// `dev` (`--limit-iface-in/out`), a LOCAL or BROADCAST address of
    /// another interface is UNICAST.
    pub fn addr_type(&self, addr: Ipv4Addr, dev: Option<u8>) -> u8 {
        use crate::rule::AddrType;
        let a = u32::from(addr);
        if addr.octets()[0] == 0 || addr == Ipv4Addr::BROADCAST {
            return AddrType::BROADCAST;
        }
        if addr.is_multicast() {
            return AddrType::MULTICAST;
        }
        if addr.is_loopback() {
            // The loopback device's routes: never the packet's interface.
            return match (dev, a & 0x00ff_ffff == 0x00ff_ffff) {
                (Some(_), _) => AddrType::UNICAST,
                (None, true) => AddrType::BROADCAST,
                (None, false) => AddrType::LOCAL,
            };
        }
        for i in 0..self.live.len() {
            let Some((own, prefix)) = self.addr_prefix(i as u8) else {
                continue;
            };
            let on_dev = dev.is_none_or(|d| usize::from(d) == i);
            let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let t = if own == addr {
                AddrType::LOCAL
            } else if prefix < 31
                && a & !host_bits == u32::from(own) & !host_bits
                && a & host_bits == host_bits
            {
                AddrType::BROADCAST
            } else {
                continue;
            };
            if on_dev {
                return t;
            }
        }
        let host = self.host_addrs.load();
        for h in host.all() {
            let on_dev = dev.is_none_or(|d| d == h.iface);
            if h.addr == addr && on_dev {
                return AddrType::LOCAL;
            }
            if host.is_broadcast(addr, Some(h.iface)) && on_dev {
                return AddrType::BROADCAST;
            }
        }
        AddrType::UNICAST
    }

    /// Whether `addr` is the limited broadcast address or the directed
    /// broadcast address of one of the gateway's networks.
    pub(crate) fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr == Ipv4Addr::BROADCAST
            || self.live.iter().any(|f| {
                let (a, prefix) = (
                    f.addr.load(Ordering::Relaxed),
                    f.prefix.load(Ordering::Relaxed),
                );
                let host_bits = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
                a != 0
                    && host_bits != 0
                    && u32::from(addr) & !host_bits == a & !host_bits
                    && u32::from(addr) & host_bits == host_bits
            })
    }
}
