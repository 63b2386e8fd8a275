//! IPv4 fragments as Linux handles them on a router with conntrack:
//! reassembly before conntrack and the raw table (`nf_defrag_ipv4`, whose
//! hook runs at priority -400, before raw's -300), so that a fragmented
//! datagram is tracked, filtered and NATed as one packet; and
//! fragmentation on the way out (`ip_fragment` / `ip_do_fragment`).
//!
//! - [`Reassembly`] ([`table`]): the reassembly queues all workers share,
//!   so that the fragments of one datagram reassemble whichever workers
//!   receive them. Sharded by a keyed hash of (source, destination,
//!   protocol, id) with one lock per shard, as the conntrack table is (no
//!   global lock); each shard's storage is allocated up front. Memory is
//!   accounted as Linux's `frag_mem_limit` is, in one counter for the
//!   whole table per family (IPv4's and IPv6's, as Linux's `ipv4.fqdir`
//!   and `ipv6.fqdir`): when IPv4's is above `high_thresh`, every IPv4
//!   fragment is dropped until queues expire (`inet_frag_find`; nothing
//!   is evicted), and IPv6's against `high_thresh6` likewise, so that
//!   fragments of one family cannot starve the other's reassembly.
//! - [`out`]: a datagram cut into fragments, keeping the geometry it
//!   arrived in when each fragment fits the egress MTU (`ip_do_fragment`'s
//!   fast path) or cut to the MTU (its slow path).
//! - `Defrag`: a worker's side: the contiguous buffer a completed
//!   datagram is copied into (up to 65,535 bytes after the link layer)
//!   and its geometry, allocated once.

pub mod out;
pub mod table;

pub use out::{fragment, fragment6, Piece};
pub use table::{
    FragKey, Fragment, Insert, Reassembly, FRAG_TRUESIZE, MAX_HDR, QUEUE_SIZE, SHARDS,
};

use crate::pipeline::ETH_HLEN;

/// The largest IPv4 datagram.
pub const MAX_DATAGRAM: usize = 65_535;

/// Reassembly settings, as Linux's `net.ipv4.ipfrag_*` and
/// `net.ipv6.ip6frag_*` sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragConfig {
    /// `ipfrag_high_thresh`: above this many bytes of queued IPv4
    /// fragments (each charged [`FRAG_TRUESIZE`], each queue
    /// [`QUEUE_SIZE`]), every new IPv4 fragment is dropped. 0 drops every
    /// IPv4 fragment.
    pub high_thresh: usize,
    /// `ip6frag_high_thresh`: the same for IPv6 fragments, counted apart.
    pub high_thresh6: usize,
    /// `ipfrag_time`: an IPv4 queue not complete this long after its
    /// first fragment arrived is dropped (ns).
    pub time: u64,
    /// `ip6frag_time`: the same for IPv6 queues (ns).
    pub time6: u64,
}

impl FragConfig {
    /// Linux's defaults: 4 MiB for each family (`IPV4_FRAG_HIGH_THRESH`
    /// is not a constant in Linux, but 4 MiB is its value;
    /// `IPV6_FRAG_HIGH_THRESH`), 30 s for IPv4 (`IP_FRAG_TIME`) and 60 s
    /// for IPv6 (`IPV6_FRAG_TIMEOUT`).
    pub const DEFAULT: FragConfig = FragConfig {
        high_thresh: 4 * 1024 * 1024,
        high_thresh6: 4 * 1024 * 1024,
        time: 30_000_000_000,
        time6: 60_000_000_000,
    };

    /// How long a queue of the family (IPv6 if `ipv6`) is kept (ns).
    pub fn time_of(&self, ipv6: bool) -> u64 {
        if ipv6 {
            self.time6
        } else {
            self.time
        }
    }
    /// The largest `high_thresh` (and `high_thresh6`) accepted (the
    /// table's storage is allocated up front, about twice their sum).
    pub const MAX_HIGH_THRESH: usize = 256 * 1024 * 1024;
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig::DEFAULT
    }
}

/// A worker's reassembly state: the buffer a completed datagram is
/// copied into (Ethernet header, then the datagram), the fragments it
/// arrived in, and whether the pipeline is running it.
pub(crate) struct Defrag {
    pub buf: Box<[u8]>,
    pub pieces: Vec<Piece>,
    /// The largest fragment received (IPv4 header included): Linux's
    /// `frag_max_size`.
    pub max_size: u16,
    /// The pipeline runs a reassembled datagram (from `buf`).
    pub active: bool,
    /// ... that the gateway host sent (through the host path).
    pub from_host: bool,
}

impl Defrag {
    pub fn new(table: &Reassembly) -> Defrag {
        Defrag {
            buf: vec![0u8; ETH_HLEN + MAX_DATAGRAM].into_boxed_slice(),
            pieces: Vec::with_capacity(table.max_fragments()),
            max_size: 0,
            active: false,
            from_host: false,
        }
    }
}

#[cfg(test)]
mod tests;
