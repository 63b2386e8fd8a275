//! [`Queue`]: one AF_XDP socket with its own UMEM, the unit a worker owns.

use std::os::fd::RawFd;
use std::time::Duration;

use xdpilone::xdp::XdpDesc;

use super::sys;
use super::umem::FramePool;
use super::xsk::{self, Xsk, BATCH};

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// Transmit the first `len` bytes of the (possibly rewritten) buffer
    /// back out of this queue's interface, without copying.
    Tx(usize),
    /// Return the frame to the pool. Also the verdict after the callback
    /// copied the frame elsewhere (e.g. [`Queue::tx_copy`] on another
    /// interface's queue).
    Drop,
}

/// Counters of one queue: ours, and the kernel's `XDP_STATISTICS`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames received.
    pub rx: u64,
    /// Frames committed to the TX ring.
    pub tx: u64,
    /// Frames whose transmission the kernel completed.
    pub tx_completed: u64,
    /// Frames not sent because the TX ring or the free frames ran out.
    pub tx_full: u64,
    /// Frames not sent because their length was 0 or past the frame.
    pub tx_invalid: u64,
    /// RX descriptors outside our UMEM or past their frame (never expected).
    pub rx_invalid: u64,
    /// `sendto` kicks that failed with an unexpected error.
    pub kick_errors: u64,
    /// Kernel: frames dropped for other reasons than a full ring.
    pub rx_dropped: u64,
    /// Kernel: invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Kernel: invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Kernel: frames dropped because our RX ring was full.
    pub rx_ring_full: u64,
    /// Kernel: times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Kernel: times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

impl QueueStats {
    pub(crate) fn from_parts(c: xsk::Counters, k: sys::XdpStatistics) -> QueueStats {
        QueueStats {
            rx: c.rx,
            tx: c.tx,
            tx_completed: c.tx_completed,
            tx_full: c.tx_full,
            tx_invalid: c.tx_invalid,
            rx_invalid: c.rx_invalid,
            kick_errors: c.kick_errors,
            rx_dropped: k.rx_dropped,
            rx_invalid_descs: k.rx_invalid_descs,
            tx_invalid_descs: k.tx_invalid_descs,
            rx_ring_full: k.rx_ring_full,
            rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: k.tx_ring_empty_descs,
        }
    }
}

/// Where every frame of a UMEM is: `kernel + held + free + lost == total`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameAccounting {
    /// On a fill, RX, TX or completion ring, or in flight between them.
    pub kernel: u32,
    /// Held by us: queued for TX and not yet committed (0 after `flush`).
    pub held: u32,
    /// On the free list.
    pub free: u32,
    /// Returned by the kernel at an address outside the UMEM (never expected).
    pub lost: u32,
    /// Frames in the UMEM.
    pub total: u32,
}

impl FrameAccounting {
    /// Whether every frame is accounted for exactly once.
    pub fn is_balanced(&self) -> bool {
        u64::from(self.kernel) + u64::from(self.held) + u64::from(self.free) + u64::from(self.lost)
            == u64::from(self.total)
    }
}

impl From<xsk::Books> for FrameAccounting {
    fn from(b: xsk::Books) -> Self {
        FrameAccounting {
            kernel: b.kernel,
            held: b.held,
            free: b.free,
            lost: b.lost,
            total: b.total,
        }
    }
}

/// One AF_XDP socket bound to one queue of one interface, with its own UMEM
/// of `frames` frames. Move it into the worker thread that polls it.
///
/// The worker loop is: [`rx_batch`](Queue::rx_batch) (and
/// [`tx_copy`](Queue::tx_copy) of frames for this interface coming from
/// elsewhere), then [`flush`](Queue::flush); [`wait`](Queue::wait) or
/// [`wait_any`](super::wait_any) when idle.
pub struct Queue {
    pub(crate) xsk: Xsk,
    pub(crate) pool: FramePool,
    ifname: String,
}

// Queues are moved into worker threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Queue>();
};

impl Queue {
    pub(crate) fn new(xsk: Xsk, pool: FramePool, ifname: String) -> Queue {
        let mut queue = Queue { xsk, pool, ifname };
        queue.xsk.refill(&mut queue.pool);
        queue
    }

    /// The interface this queue belongs to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.xsk.ifindex
    }

    /// The queue index on the interface.
    pub fn queue_id(&self) -> u32 {
        self.xsk.queue_id
    }

    /// Whether the socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.xsk.zero_copy()
    }

    /// The socket's descriptor, to poll it together with other descriptors.
    pub fn as_raw_fd(&self) -> RawFd {
        self.xsk.fd()
    }

    /// Receives up to `max` frames, calling `f(frame, len)` for each: `frame`
    /// is the whole buffer from the packet's first byte to the end of its
    /// UMEM frame (so a rewrite may grow the packet), `len` the received
    /// length. Transmits the frames `f` returns [`RxVerdict::Tx`] for on this
    /// queue's TX ring (committed here; [`flush`](Queue::flush) kicks the
    /// kernel). Returns how many frames were received.
    pub fn rx_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&mut [u8], usize) -> RxVerdict,
    ) -> usize {
        let mut descs = [XdpDesc::default(); BATCH];
        let mut done = 0;
        while done < max {
            let want = (max - done).min(BATCH);
            let n = self.xsk.receive(&mut descs[..want]);
            for desc in &descs[..n] {
                let len = desc.len as usize;
                // SAFETY: the descriptor was just read off our RX ring, so
                // the kernel has handed its frame to us and nothing else
                // refers to it until we give it back below.
                let Some(frame) = (unsafe { self.pool.area.frame_mut(desc.addr, len) }) else {
                    self.xsk.counters.rx_invalid += 1;
                    self.pool.push(desc.addr);
                    continue;
                };
                let cap = frame.len();
                match f(frame, len) {
                    RxVerdict::Tx(out) if out > 0 && out <= cap => {
                        let desc = XdpDesc {
                            addr: desc.addr,
                            len: out as u32,
                            options: 0,
                        };
                        self.xsk.push_tx(desc, &mut self.pool);
                    }
                    RxVerdict::Tx(_) => {
                        self.xsk.counters.tx_invalid += 1;
                        self.pool.push(desc.addr);
                    }
                    RxVerdict::Drop => self.pool.push(desc.addr),
                }
            }
            done += n;
            if n < want {
                break;
            }
        }
        self.xsk.commit_pending(&mut self.pool);
        self.debug_check();
        done
    }

    /// Queues a copy of `frame` for transmission on this queue's interface.
    /// Returns false (counted in `tx_full` / `tx_invalid`) when no frame is
    /// free or `frame` is empty or longer than a UMEM frame. The copy is
    /// committed at the next [`flush`](Queue::flush) (or when a batch fills).
    pub fn tx_copy(&mut self, frame: &[u8]) -> bool {
        let len = frame.len();
        if len == 0 || len > self.pool.area.frame_size() as usize {
            self.xsk.counters.tx_invalid += 1;
            return false;
        }
        let addr = match self.pool.pop() {
            Some(addr) => addr,
            None => {
                self.xsk.reap(&mut self.pool);
                match self.pool.pop() {
                    Some(addr) => addr,
                    None => {
                        self.xsk.counters.tx_full += 1;
                        return false;
                    }
                }
            }
        };
        // SAFETY: `addr` was just taken off the free list: no ring and no
        // other reference holds it.
        match unsafe { self.pool.area.frame_mut(addr, len) } {
            Some(buf) => buf[..len].copy_from_slice(frame),
            None => {
                self.pool.push(addr);
                self.xsk.counters.tx_invalid += 1;
                return false;
            }
        }
        let desc = XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        };
        self.xsk.push_tx(desc, &mut self.pool);
        true
    }

    /// Commits queued TX frames, kicks the kernel until the TX ring drains
    /// (bounded), reaps completions and tops the fill ring up.
    pub fn flush(&mut self) {
        self.xsk.flush(&mut self.pool);
        self.debug_check();
    }

    /// Waits up to `timeout` for frames to arrive; true if some are ready.
    pub fn wait(&self, timeout: Duration) -> bool {
        wait_fds(&[self.xsk.fd()], timeout)
    }

    /// Our counters and the kernel's (one `getsockopt`; not for the packet
    /// path).
    pub fn stats(&self) -> QueueStats {
        QueueStats::from_parts(self.xsk.counters, self.xsk.kernel_stats())
    }

    /// Where this queue's frames are.
    pub fn frame_accounting(&self) -> FrameAccounting {
        xsk::books(&self.pool, std::iter::once(&self.xsk)).into()
    }

    fn debug_check(&self) {
        debug_assert!(
            self.frame_accounting().is_balanced(),
            "frame accounting: {:?}",
            self.frame_accounting()
        );
        // Not cross-checked against the rings' heads: the kernel publishes an
        // RX descriptor before it releases the fill ring's consumer position
        // (`xsk_flush`), and a TX completion before the TX ring's consumer
        // position (released lazily, `xskq_cons_peek_desc`), so a reader in
        // between sees a frame on both sides.
    }
}

pub(crate) fn wait_fds(fds: &[RawFd], timeout: Duration) -> bool {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    sys::poll_readable(fds, ms).unwrap_or(false)
}

/// Waits up to `timeout` until one of `fds` (at most 64: sockets of
/// [`GroupQueue::raw_fds`](super::GroupQueue::raw_fds), host-path queues)
/// is readable; true if one is.
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> bool {
    wait_fds(fds, timeout)
}

/// Waits up to `timeout` until one of `queues` (at most 64) has frames to
/// receive; true if one has.
pub fn wait_any(queues: &[&Queue], timeout: Duration) -> bool {
    let mut fds = [0; 64];
    let n = queues.len().min(fds.len());
    for (slot, q) in fds.iter_mut().zip(queues) {
        *slot = q.as_raw_fd();
    }
    wait_fds(&fds[..n], timeout)
}
