//! A model of N active gateways behind ECMP routers (`docs/scale-out.md`):
//! which connections survive the loss of a node, or the addition of one,
//! under four designs. Deterministic (a fixed seed, no clock); no packets,
//! only the decisions that matter:
//!
//! - which node the inside routers send a connection's packets to (the
//!   forward node), and which node the outside routers send its replies to
//!   (the reply node);
//! - which nodes hold the connection's state (its conntrack entry with its
//!   NAT mapping);
//! - whether a node without the state would pick the same NAT mapping.
//!
//! A connection survives a change if, after it, both its forward node and
//! its reply node hold its state, or can make the same mapping again
//! (and, for TCP, take it mid-stream, as Linux's `tcp_loose` and xdpgw's
//! do).
//!
//! The designs:
//!
//! - [`Design::EcmpNoSync`]: one shared NAT pool, both router sides hash
//!   flows over the nodes (rendezvous hashing: a node's loss moves only its
//!   flows), no sync. Replies hash on the reply tuple, so they reach the
//!   node that made the mapping only by chance.
//! - [`Design::EcmpFullSync`]: the same with every node sending every
//!   entry to every other (a mesh of conntrackd-style syncs).
//! - [`Design::BlocksPairSync`]: each node owns a block of the pool (the
//!   public addresses it announces over BGP; deterministic NAT, RFC 7422 /
//!   DET44: each subscriber has a fixed address and port range in its
//!   node's block) and the inside routers send each subscriber to the node
//!   of its block; each node syncs its entries to one buddy (the next node),
//!   which announces the block with a worse metric and takes it over.
//! - [`Design::BlocksDeterministic`]: blocks as above, no sync at all; the
//!   port of a connection inside the subscriber's range is a hash of the
//!   connection (probing on a collision), so that the buddy that takes
//!   over computes the same port again, except where allocation had to
//!   probe (the result then depended on the connections before).

use std::collections::{HashMap, HashSet};

/// The designs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Design {
    EcmpNoSync,
    EcmpFullSync,
    BlocksPairSync,
    BlocksDeterministic,
}

impl Design {
    pub const ALL: [Design; 4] = [
        Design::EcmpNoSync,
        Design::EcmpFullSync,
        Design::BlocksPairSync,
        Design::BlocksDeterministic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Design::EcmpNoSync => "ECMP, shared pool, no sync",
            Design::EcmpFullSync => "ECMP, shared pool, full-mesh sync",
            Design::BlocksPairSync => "per-node blocks, pair sync",
            Design::BlocksDeterministic => "per-node blocks, deterministic ports, no sync",
        }
    }
}

/// The simulated population.
#[derive(Clone, Copy, Debug)]
pub struct Population {
    /// Active nodes before the change.
    pub nodes: usize,
    pub subscribers: usize,
    /// Connections open per subscriber.
    pub flows_per_subscriber: usize,
    /// Ports each subscriber has in its block (RFC 7422: e.g. 2016 when
    /// 32 subscribers share an address's 64,512 ports).
    pub ports_per_subscriber: u16,
    pub seed: u64,
}

/// What a change did to the connections open before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Open before the change.
    pub connections: usize,
    /// Working before the change (a design whose replies miss the state
    /// breaks connections without any change).
    pub working_before: usize,
    /// Of those, broken by the change.
    pub broken: usize,
    /// Entries each node holds, on average, relative to its own share
    /// (connections / nodes).
    pub entries_per_node: f64,
    /// Sync messages a new connection costs (its NEW; updates and the
    /// deletion cost as many again).
    pub sync_per_connection: usize,
}

impl Outcome {
    /// Broken, as a fraction of the connections that were working.
    pub fn broken_fraction(&self) -> f64 {
        if self.working_before == 0 {
            0.0
        } else {
            self.broken as f64 / self.working_before as f64
        }
    }
}

/// The change applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Node 0 dies.
    Loss,
    /// A node is added, and takes its share at once.
    Addition,
}

/// SplitMix64: a deterministic stream of well-mixed numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous (highest-random-weight) hashing of `key` over `nodes`: a
/// node's loss moves only the keys it had; a new node takes 1/(n+1) of
/// the keys, from every node.
fn rendezvous(key: u64, nodes: &[usize]) -> usize {
    let mut best = (0u64, usize::MAX);
    for &n in nodes {
        let w = mix(key ^ mix(n as u64 + 1));
        if w >= best.0 {
            best = (w, n);
        }
    }
    best.1
}

/// One connection: who it is and the flow's keys.
#[derive(Clone, Copy, Debug)]
struct Conn {
    subscriber: usize,
    /// The original tuple's hash (the inside routers' ECMP key).
    fwd_key: u64,
    /// What the port choice hashes (destination and inside port).
    port_key: u64,
}

/// Simulates `design` under `change` for `pop`.
pub fn simulate(design: Design, change: Change, pop: &Population) -> Outcome {
    let n = pop.nodes;
    let before: Vec<usize> = (0..n).collect();
    let after: Vec<usize> = match change {
        Change::Loss => (1..n).collect(),
        Change::Addition => (0..=n).collect(),
    };
    let conns: Vec<Conn> = (0..pop.subscribers * pop.flows_per_subscriber)
        .map(|i| {
            let r = mix(pop.seed ^ (i as u64));
            Conn {
                subscriber: i / pop.flows_per_subscriber,
                fwd_key: r,
                port_key: mix(r),
            }
        })
        .collect();
    // The subscriber's home node under a node set (blocks): rendezvous
    // hashing of subscriber slices; on a loss, the dead node's slices go
    // to its buddy (the next live node), which announces its block.
    let home = |s: usize, nodes: &[usize], lost: Option<usize>| -> usize {
        let h = rendezvous(mix(s as u64 ^ 0x5151), &before);
        match lost {
            Some(dead) if h == dead => buddy(dead, n, nodes),
            _ if nodes.len() > before.len() => rendezvous(mix(s as u64 ^ 0x5151), nodes),
            _ => h,
        }
    };
    let lost = (change == Change::Loss).then_some(0usize);
    let total = conns.len();
    match design {
        Design::EcmpNoSync | Design::EcmpFullSync => {
            let full = design == Design::EcmpFullSync;
            let mut working_before = 0;
            let mut broken = 0;
            for c in &conns {
                // The node that made the entry; replies hash on the reply
                // tuple (the NATed one): another key.
                let made = rendezvous(c.fwd_key, &before);
                let reply_before = rendezvous(mix(c.fwd_key ^ 0xa11ce), &before);
                let holds = |node: usize| full || node == made;
                if !(holds(reply_before)) {
                    continue;
                }
                working_before += 1;
                let fwd_after = rendezvous(c.fwd_key, &after);
                let reply_after = rendezvous(mix(c.fwd_key ^ 0xa11ce), &after);
                // A node that died takes its entries with it; with full
                // sync the others have them.
                let has =
                    |node: usize| full && Some(node) != lost || node == made && Some(made) != lost;
                if !(has(fwd_after) && has(reply_after)) {
                    broken += 1;
                }
            }
            Outcome {
                connections: total,
                working_before,
                broken,
                entries_per_node: if full { n as f64 } else { 1.0 },
                sync_per_connection: if full { n - 1 } else { 0 },
            }
        }
        Design::BlocksPairSync => {
            let mut broken = 0;
            for c in &conns {
                let was = home(c.subscriber, &before, None);
                let now = home(c.subscriber, &after, lost);
                // Its entry is on `was` and on `was`'s buddy.
                let held = now == was || now == buddy(was, n, &before);
                if !held {
                    broken += 1;
                }
            }
            Outcome {
                connections: total,
                working_before: total,
                broken,
                entries_per_node: 2.0,
                sync_per_connection: 1,
            }
        }
        Design::BlocksDeterministic => {
            // Allocate each subscriber's ports in connection order: the
            // hash of the connection in its range, probing upwards on a
            // collision. A connection whose port came from probing cannot
            // be recomputed by a node without the state.
            let mut taken: HashMap<usize, HashSet<u16>> = HashMap::new();
            let mut probed = vec![false; conns.len()];
            for (i, c) in conns.iter().enumerate() {
                let range = pop.ports_per_subscriber.max(1);
                let used = taken.entry(c.subscriber).or_default();
                let first = (c.port_key % u64::from(range)) as u16;
                let mut p = first;
                while used.contains(&p) {
                    p = (p + 1) % range;
                    probed[i] = true;
                    if p == first {
                        break;
                    }
                }
                used.insert(p);
            }
            let mut broken = 0;
            for (i, c) in conns.iter().enumerate() {
                let was = home(c.subscriber, &before, None);
                let now = home(c.subscriber, &after, lost);
                if now != was && probed[i] {
                    broken += 1;
                }
            }
            Outcome {
                connections: total,
                working_before: total,
                broken,
                entries_per_node: 1.0,
                sync_per_connection: 0,
            }
        }
    }
}

/// The buddy of node `k` among `nodes`: the next live node after it (its
/// pair sync partner, which announces its block with a worse metric).
fn buddy(k: usize, n: usize, nodes: &[usize]) -> usize {
    (1..=n)
        .map(|d| (k + d) % n)
        .find(|b| nodes.contains(b))
        .unwrap_or(k)
}
