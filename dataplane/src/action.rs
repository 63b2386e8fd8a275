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
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Handled: answered through the emit sink, or held for ARP.
    Consumed,
}
