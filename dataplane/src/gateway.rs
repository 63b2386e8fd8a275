//! [`Gateway`]: what all workers share (interfaces, routes, the rule set,
//! conntrack, neighbours, ICMP rate limits, the tracer), and what it is
//! made of ([`GatewayConfig`]).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::classify::{compile_with_sets, CompileError, CompiledRuleSet, MAX_IFACES};
use crate::conntrack::{Conntrack, ConntrackConfig};
use crate::icmp_limit::{IcmpLimitConfig, IcmpLimiter};
use crate::ipset::{SetTable, SharedSets};
use crate::neigh::{Mac, Neighbours};
use crate::route::{RouteError, RouteTable};
use crate::rule::{Ipv4Net, RuleSet};
use crate::trace::Tracer;

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
    /// The IP sets (`-m set`), changed at run time without a reload;
    /// workers load the current table at each batch.
    pub sets: SharedSets,
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
        let routes = RouteTable::new(&connected, &cfg.routes).map_err(GatewayError::Route)?;
        let names: Vec<&str> = cfg.ifaces.iter().map(|f| f.name.as_str()).collect();
        let compiled = compile_with_sets(rules, &names, &sets).map_err(GatewayError::Compile)?;
        Ok(Gateway {
            ifaces: cfg.ifaces,
            routes,
            rules: ArcSwap::from_pointee(compiled),
            conntrack: Conntrack::new(cfg.conntrack),
            neigh: Neighbours::default(),
            icmp_limit: IcmpLimiter::new(cfg.icmp),
            worker_seq: AtomicUsize::new(0),
            tracer: Tracer::default(),
            sets: SharedSets::new(sets),
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
        compile_with_sets(rules, &names, &self.sets.now())
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

    /// The interface holding `addr`, if it is one of the gateway's.
    #[inline]
    pub fn local_iface(&self, addr: Ipv4Addr) -> Option<u8> {
        self.ifaces
            .iter()
            .position(|f| f.addr == addr)
            .map(|i| i as u8)
    }

    /// The next worker's index (its stripe of the rule counters).
    pub(crate) fn next_worker_index(&self) -> usize {
        self.worker_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `addr` is the limited broadcast address or the directed
    /// broadcast address of one of the gateway's networks.
    pub(crate) fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
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
