//! [`WorkerStats`]: a worker's counters and drop reasons.

use crate::conntrack::CtCounters;
use crate::drop::DropReason;

/// Per-worker counters.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub rx: u64,
    pub forwarded: u64,
    /// Delivered to the host (INPUT accepted, not answered by xdpgw).
    pub host: u64,
    /// Packets the host sent through the host path (OUTPUT).
    pub from_host: u64,
    /// Of `forwarded`: by the established-flow fast path (a cached
    /// traversal, see `fastpath`).
    pub fast_path: u64,
    pub consumed: u64,
    pub emitted: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Conntrack counters of the packets this worker tracked.
    pub ct: CtCounters,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            rx: 0,
            forwarded: 0,
            host: 0,
            from_host: 0,
            fast_path: 0,
            consumed: 0,
            emitted: 0,
            drops: [0; DropReason::COUNT],
            ct: CtCounters::default(),
        }
    }
}

impl WorkerStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}
