//! [`Action`]: what becomes of a frame once the pipeline has run it.

use crate::drop::DropReason;

/// What to do with a frame after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame, `len` bytes, out of `iface`.
    Forward { iface: u8, len: usize },
    /// Deliver to the gateway host's own stack (INPUT accepted it): the
    /// IPv4 packet is `frame[ETH_HLEN..len]`, as arrived on `iface`.
    Host { iface: u8, len: usize },
    /// Deliver to the gateway host a datagram reassembled from fragments:
    /// the IPv4 packet is `reassembled[ETH_HLEN..len]`, the worker's
    /// reassembly buffer (`Batch::reassembled`), as arrived on `iface`.
    HostReassembled { iface: u8, len: usize },
    /// Sent out of `iface` through the emit sink as `frames` frames: a
    /// datagram fragmented (or reassembled) on its way out. The frame that
    /// arrived is done with.
    Emitted { iface: u8, frames: u32 },
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Handled: answered through the emit sink, or held for ARP.
    Consumed,
}
