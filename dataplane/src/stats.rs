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
        /// Drops, by `DropReason as usize`.
        pub drops: [u64; DropReason::COUNT],
        /// Conntrack counters of the packets this worker tracked.
        pub ct: CtCounters,
    }
}

impl WorkerStats {
    /// The per-worker counters (besides the drop reasons and conntrack's),
    /// in the order every view shows them.
    pub const COUNTERS: [CounterDef<WorkerStats>; 7] = [
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
        assert_eq!(got, (1..=7).collect::<Vec<u64>>(), "in declaration order");
        let mut keys: Vec<_> = WorkerStats::COUNTERS.iter().filter_map(|c| c.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), WorkerStats::COUNTERS.len());
        assert_eq!(
            WorkerStats::WORDS,
            7 + DropReason::COUNT + CtCounters::WORDS
        );
    }
}
