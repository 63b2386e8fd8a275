//! [`WorkerStats`]: a worker's counters and drop reasons, defined once
//! here: [`WorkerStats::COUNTERS`] is the table `xdpgw stats`, the metrics
//! and the exit report render them from (the drop reasons are
//! [`DropReason::ALL`], the conntrack counters [`CtCounters::COUNTERS`]).

use crate::conntrack::CtCounters;
use crate::counter::CounterDef;
use crate::drop::DropReason;

crate::counter_set! {
    /// Per-worker counters.
    pub struct WorkerStats {
        /// Frames taken from the worker's queues.
        pub rx: u64,
        /// Packets forwarded (ARP answers included).
        pub forwarded: u64,
        /// Of `forwarded`: by the established-flow fast path (a cached
        /// traversal, see `fastpath`).
        pub fast_path: u64,
        /// Delivered to the host (INPUT accepted, not answered by xdpgw).
        pub host: u64,
        /// Packets the host sent through the host path (OUTPUT).
        pub from_host: u64,
        /// Answered by the gateway or held for ARP.
        pub consumed: u64,
        /// Packets the gateway generated.
        pub emitted: u64,
        /// Fragments taken for reassembly (Linux's `ReasmReqds`).
        pub reasm_reqds: u64,
        /// Datagrams reassembled (`ReasmOKs`).
        pub reasm_oks: u64,
        /// Reassemblies given up, and fragments refused for memory
        /// (`ReasmFails`).
        pub reasm_fails: u64,
        /// Datagrams sent on in fragments (`FragOKs`).
        pub frag_oks: u64,
        /// Fragments sent (`FragCreates`).
        pub frag_creates: u64,
        /// Datagrams that needed fragmenting and could not be (`FragFails`).
        pub frag_fails: u64,
        /// Drops, by `DropReason as usize`.
        pub drops: [u64; DropReason::COUNT],
        /// Conntrack counters of the packets this worker tracked.
        pub ct: CtCounters,
    }
}

impl WorkerStats {
    /// The per-worker counters (besides the drop reasons and conntrack's),
    /// in the order every view shows them.
    pub const COUNTERS: [CounterDef<WorkerStats>; 13] = [
        CounterDef {
            key: Some("rx"),
            label: "received",
            metric: Some("worker_received_packets_total"),
            help: "Frames the worker took from its queues.",
            part: false,
            get: |s| s.rx,
        },
        CounterDef {
            key: Some("forwarded"),
            label: "forwarded",
            metric: Some("worker_forwarded_packets_total"),
            help: "Packets the worker forwarded (ARP answers included).",
            part: false,
            get: |s| s.forwarded,
        },
        CounterDef {
            key: Some("fast_path"),
            label: "fast path",
            metric: Some("worker_fast_path_packets_total"),
            help: "Of the forwarded packets, those the established-flow fast path forwarded.",
            part: true,
            get: |s| s.fast_path,
        },
        CounterDef {
            key: Some("host"),
            label: "host",
            metric: Some("worker_host_packets_total"),
            help: "Packets for the gateway's own services (to the host path).",
            part: false,
            get: |s| s.host,
        },
        CounterDef {
            key: Some("from_host"),
            label: "from host",
            metric: Some("worker_from_host_packets_total"),
            help: "Packets the gateway host sent through the host path.",
            part: false,
            get: |s| s.from_host,
        },
        CounterDef {
            key: Some("consumed"),
            label: "answered/held",
            metric: Some("worker_answered_packets_total"),
            help: "Packets the gateway answered or held (ping, ARP, packets waiting for a \
                   neighbour).",
            part: false,
            get: |s| s.consumed,
        },
        CounterDef {
            key: Some("emitted"),
            label: "generated",
            metric: Some("worker_generated_packets_total"),
            help: "Packets the gateway generated (ICMP errors, resets, ARP requests, released \
                   packets).",
            part: false,
            get: |s| s.emitted,
        },
        CounterDef {
            key: Some("reasm_reqds"),
            label: "frags in",
            metric: Some("worker_reassembly_fragments_total"),
            help: "Fragments taken for reassembly (Linux's ReasmReqds).",
            part: false,
            get: |s| s.reasm_reqds,
        },
        CounterDef {
            key: Some("reasm_oks"),
            label: "reassembled",
            metric: Some("worker_reassembled_datagrams_total"),
            help: "Datagrams reassembled from fragments (ReasmOKs).",
            part: false,
            get: |s| s.reasm_oks,
        },
        CounterDef {
            key: Some("reasm_fails"),
            label: "reasm fails",
            metric: Some("worker_reassembly_failures_total"),
            help:
                "Reassemblies given up (timeout, overlap, malformed) and fragments refused while \
                   reassembly memory was full (ReasmFails).",
            part: false,
            get: |s| s.reasm_fails,
        },
        CounterDef {
            key: Some("frag_oks"),
            label: "fragmented",
            metric: Some("worker_fragmented_datagrams_total"),
            help: "Datagrams sent on in fragments (FragOKs).",
            part: false,
            get: |s| s.frag_oks,
        },
        CounterDef {
            key: Some("frag_creates"),
            label: "frags out",
            metric: Some("worker_fragments_sent_total"),
            help: "Fragments sent (FragCreates).",
            part: false,
            get: |s| s.frag_creates,
        },
        CounterDef {
            key: Some("frag_fails"),
            label: "frag fails",
            metric: Some("worker_fragmentation_failures_total"),
            help: "Datagrams over the egress MTU that could not be sent (DF set, or no room) \
                   (FragFails).",
            part: false,
            get: |s| s.frag_fails,
        },
    ];

    /// Every dropped packet.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::CounterSet;

    #[test]
    fn the_table_names_every_counter_once() {
        let mut s = WorkerStats::default();
        // Each scalar counter a distinct value: the table must read each.
        let mut n = 0;
        s.visit_mut(&mut |x| {
            n += 1;
            *x = n;
        });
        let got: Vec<u64> = WorkerStats::COUNTERS.iter().map(|c| (c.get)(&s)).collect();
        assert_eq!(got, (1..=13).collect::<Vec<u64>>(), "in declaration order");
        let mut keys: Vec<_> = WorkerStats::COUNTERS.iter().filter_map(|c| c.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), WorkerStats::COUNTERS.len());
        assert_eq!(
            WorkerStats::WORDS,
            13 + DropReason::COUNT + CtCounters::WORDS
        );
    }
}
