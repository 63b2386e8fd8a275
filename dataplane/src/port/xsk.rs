//! One AF_XDP socket: its four rings (through xdpilone's batch
//! transactions), what it has lent the kernel, and its counters.
//!
//! An [`Xsk`] never owns frames itself: every operation takes the
//! [`FramePool`] of the UMEM it is registered on, so several sockets can
//! share one pool (a [`PortGroup`](super::PortGroup) queue) and a frame
//! received on one socket can be sent from another.
//!
//! Ring sizes: fill, completion, RX and TX rings each have
//! `ring_size(frames)` entries (a power of two, at least `frames / 2`), and
//! at most `frames / 2` frames are kept on the fill ring, so half of a
//! socket's frames are always left for transmission.

use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

use super::sys::{self, Errno, Mapping};
use super::umem::FramePool;
use super::PortError;

/// Descriptors moved per ring transaction.
pub(crate) const BATCH: usize = 64;

/// Bind attempts while the queue is still held by a socket that is being
/// torn down (a previous process's socket stays bound for ~100 ms after the
/// process exits), and the pause between them.
const BIND_ATTEMPTS: u32 = 100;
const BIND_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The ring size for a socket with `frames` frames.
pub(crate) fn ring_size(frames: u32) -> u32 {
    (frames / 2).max(1).next_power_of_two()
}

/// Our counters for one socket.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub rx: u64,
    pub tx: u64,
    pub tx_completed: u64,
    pub tx_full: u64,
    pub tx_invalid: u64,
    pub rx_invalid: u64,
    pub kick_errors: u64,
}

/// Which (interface, queue) a socket binds to, for [`build`].
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub ifname: String,
    pub ifindex: u32,
    pub queue_id: u32,
}

pub(crate) struct Xsk {
    fcq: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    fd: RawFd,
    pub(crate) ifindex: u32,
    pub(crate) queue_id: u32,
    zero_copy: bool,
    ring: u32,
    fill_target: u32,
    /// Frames on the fill ring or being received into by the kernel.
    in_fill: u32,
    /// Frames on the TX ring or being sent, until their completion is reaped.
    in_tx: u32,
    /// TX descriptors not yet committed to the ring (frames held by us).
    pending: Vec<XdpDesc>,
    pub(crate) counters: Counters,
}

/// The state of the books of one UMEM; see [`FrameAccounting`](super::FrameAccounting).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Books {
    pub kernel: u32,
    pub held: u32,
    pub free: u32,
    pub lost: u32,
    pub total: u32,
}

/// Builds the sockets of one UMEM over `mapping`, one per member, the first
/// one owning the UMEM registration and the others sharing it
/// (XDP_SHARED_UMEM: they must bind with no other flag; the kernel gives
/// them the first socket's copy/zero-copy and need-wakeup mode).
///
/// Retries the whole set while a bind fails with EBUSY.
/// Bind flag: frames may span several UMEM buffers (Linux 6.6+), each
/// descriptor but a frame's last with [`XDP_PKT_CONTD`] in its options.
pub(crate) const XDP_USE_SG: u16 = 1 << 4;
/// Descriptor option: the frame continues in the next descriptor.
pub(crate) const XDP_PKT_CONTD: u32 = 1;

pub(crate) fn build(
    mapping: &Arc<Mapping>,
    frame_size: u32,
    frames_per_socket: u32,
    members: &[Member],
    zero_copy: bool,
    multi_buffer: bool,
) -> Result<Vec<Xsk>, PortError> {
    let mut attempt = 0;
    loop {
        match build_once(
            mapping,
            frame_size,
            frames_per_socket,
            members,
            zero_copy,
            multi_buffer,
        ) {
            Err(PortError::Bind {
                errno: libc::EBUSY, ..
            }) if attempt + 1 < BIND_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(BIND_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

fn socket_error(member: &Member, op: &'static str, errno: Errno) -> PortError {
    PortError::Socket {
        ifname: member.ifname.clone(),
        queue: member.queue_id,
        op,
        errno: errno.abs(),
    }
}

fn build_once(
    mapping: &Arc<Mapping>,
    frame_size: u32,
    frames_per_socket: u32,
    members: &[Member],
    zero_copy: bool,
    multi_buffer: bool,
) -> Result<Vec<Xsk>, PortError> {
    let Some(first) = members.first() else {
        return Ok(Vec::new());
    };
    let ring = ring_size(frames_per_socket);
    let config = UmemConfig {
        fill_size: ring,
        complete_size: ring,
        frame_size,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is a whole anonymous mapping, so page-aligned and
    // shorter than isize::MAX; it outlives the UMEM registration because
    // every socket built here is returned to an owner whose frame pool holds
    // an `Arc` of the same mapping, and the kernel pins the pages itself for
    // as long as the registration exists.
    let umem = unsafe { Umem::new(config, mapping.as_non_null_slice()) }.map_err(|e| {
        match e.get_raw().abs() {
            libc::EPERM | libc::EACCES => PortError::Permission {
                what: "creating an AF_XDP socket needs CAP_NET_RAW".into(),
            },
            libc::ENOBUFS => PortError::Permission {
                what: format!(
                    "registering a {} KiB UMEM needs CAP_IPC_LOCK or an RLIMIT_MEMLOCK of at \
                     least that size (ulimit -l)",
                    mapping.len() / 1024
                ),
            },
            errno => socket_error(first, "socket(AF_XDP) + XDP_UMEM_REG", errno),
        }
    })?;

    let mut out = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let mut info = IfInfo::invalid();
        info.from_ifindex(member.ifindex)
            .map_err(|e| socket_error(member, "if_indextoname", e.get_raw()))?;
        info.set_queue(member.queue_id);
        let sock = if i == 0 {
            Socket::with_shared(&info, &umem)
        } else {
            Socket::new(&info)
        }
        .map_err(|e| match e.get_raw().abs() {
            libc::EPERM | libc::EACCES => PortError::Permission {
                what: "creating an AF_XDP socket needs CAP_NET_RAW".into(),
            },
            errno => socket_error(member, "socket(AF_XDP)", errno),
        })?;
        let fd = sock.as_raw_fd();
        // xdpilone creates its sockets without SOCK_CLOEXEC; a child
        // process (`ip`, `ping`) must not keep our queue bound.
        sys::set_cloexec(fd).map_err(|e| socket_error(member, "fcntl(FD_CLOEXEC)", e))?;
        let fcq = umem
            .fq_cq(&sock)
            .map_err(|e| socket_error(member, "XDP_UMEM_FILL_RING/COMPLETION_RING", e.get_raw()))?;
        // The sockets bound to the UMEM after the first take its flags
        // (multi-buffer included: `xsk_bind` sets `xs->sg` from the UMEM).
        let bind_flags = if i == 0 {
            SocketConfig::XDP_BIND_NEED_WAKEUP
                | if zero_copy {
                    SocketConfig::XDP_BIND_ZEROCOPY
                } else {
                    SocketConfig::XDP_BIND_COPY
                }
                | if multi_buffer { XDP_USE_SG } else { 0 }
        } else {
            0
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(ring),
                    tx_size: NonZeroU32::new(ring),
                    bind_flags,
                },
            )
            .map_err(|e| socket_error(member, "XDP_RX_RING/XDP_TX_RING", e.get_raw()))?;
        let rx = user
            .map_rx()
            .map_err(|e| socket_error(member, "mmap(RX ring)", e.get_raw()))?;
        let tx = user
            .map_tx()
            .map_err(|e| socket_error(member, "mmap(TX ring)", e.get_raw()))?;
        umem.bind(&user).map_err(|e| PortError::Bind {
            ifname: member.ifname.clone(),
            queue: member.queue_id,
            zero_copy,
            errno: e.get_raw().abs(),
        })?;
        out.push(Xsk {
            fcq,
            rx,
            tx,
            fd,
            ifindex: member.ifindex,
            queue_id: member.queue_id,
            zero_copy,
            ring,
            fill_target: (frames_per_socket / 2).clamp(1, ring),
            in_fill: 0,
            in_tx: 0,
            pending: Vec::with_capacity(BATCH),
            counters: Counters::default(),
        });
    }
    Ok(out)
}

impl Xsk {
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Frames this socket has lent the kernel, and holds for TX.
    pub(crate) fn lent(&self) -> (u32, u32) {
        (self.in_fill + self.in_tx, self.pending.len() as u32)
    }

    /// Reads up to `out.len()` RX descriptors; their frames are now held by
    /// the caller, who must give each back to the pool or to a TX queue.
    #[inline]
    pub(crate) fn receive(&mut self, out: &mut [XdpDesc]) -> usize {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        // xdpilone reads the kernel's producer head with an Acquire load
        // before any descriptor, pairing with the kernel's Release store.
        let mut reader = self.rx.receive(want);
        let mut n = 0;
        for slot in out.iter_mut() {
            match reader.read() {
                Some(desc) => {
                    *slot = desc;
                    n += 1;
                }
                None => break,
            }
        }
        // One release store hands the ring slots back to the kernel.
        reader.release();
        debug_assert!(
            n as u32 <= self.in_fill,
            "kernel returned more frames than filled"
        );
        self.in_fill = self.in_fill.saturating_sub(n as u32);
        self.counters.rx += n as u64;
        n
    }

    /// Queues a held frame for TX; commits first when the batch is full.
    #[inline]
    pub(crate) fn push_tx(&mut self, desc: XdpDesc, pool: &mut FramePool) {
        if self.pending.len() == self.pending.capacity() {
            self.commit_pending(pool);
        }
        self.pending.push(desc);
    }

    /// Queues the descriptors of one multi-buffer frame for TX, all in one
    /// commit (a frame's descriptors never straddle two).
    pub(crate) fn push_tx_chain(&mut self, descs: &[XdpDesc], pool: &mut FramePool) {
        if self.pending.len() + descs.len() > self.pending.capacity() {
            self.commit_pending(pool);
        }
        if descs.len() > self.pending.capacity() {
            for d in descs {
                pool.push(d.addr);
                self.counters.tx_full += 1;
            }
            return;
        }
        self.pending.extend_from_slice(descs);
    }

    /// Commits the queued TX descriptors to the TX ring (one release store);
    /// when the ring is full, reaps and kicks once, then drops what still
    /// does not fit (counted in `tx_full`). A multi-buffer frame goes on the
    /// ring whole or not at all.
    pub(crate) fn commit_pending(&mut self, pool: &mut FramePool) {
        let mut done = 0;
        for round in 0..2 {
            if done == self.pending.len() {
                break;
            }
            if round == 1 {
                self.kick(pool);
            }
            let mut rest = &self.pending[done..];
            let mut writer = self.tx.transmit(rest.len() as u32);
            let room = writer.capacity() as usize;
            if room < rest.len() {
                // Up to the end of the last whole frame that fits.
                let whole = rest[..room]
                    .iter()
                    .rposition(|d| d.options & XDP_PKT_CONTD == 0)
                    .map_or(0, |i| i + 1);
                rest = &rest[..whole];
            }
            let n = writer.insert(rest.iter().copied()) as usize;
            // xdpilone publishes the descriptors with one Release store of
            // the producer head; the kernel's Acquire load pairs with it.
            writer.commit();
            self.in_tx += n as u32;
            self.counters.tx += n as u64;
            done += n;
        }
        for desc in &self.pending[done..] {
            pool.push(desc.addr);
            self.counters.tx_full += 1;
        }
        self.pending.clear();
    }

    /// Moves completed TX frames back to the pool.
    pub(crate) fn reap(&mut self, pool: &mut FramePool) {
        if self.in_tx == 0 {
            return;
        }
        let mut reader = self.fcq.complete(self.in_tx);
        let mut n = 0u32;
        while let Some(addr) = reader.read() {
            pool.push(addr);
            n += 1;
        }
        // Release store of the consumer head: our reads of the ring come
        // before the kernel may reuse the slots.
        reader.release();
        self.in_tx = self.in_tx.saturating_sub(n);
        self.counters.tx_completed += u64::from(n);
    }

    /// Makes the kernel process the TX ring. In copy mode one `sendto`
    /// transmits a limited batch (32 descriptors), so it kicks, reaping in
    /// between, until the ring is drained or a bound is hit; in zero-copy
    /// mode one wake-up starts the driver.
    pub(crate) fn kick(&mut self, pool: &mut FramePool) {
        let rounds = self.ring / 32 + 4;
        for _ in 0..rounds {
            self.reap(pool);
            if self.tx.pending() == 0 || !self.tx.needs_wakeup() {
                return;
            }
            match sys::kick_tx(self.fd) {
                // EAGAIN: the completion ring or the device queue was full
                // (reaped next round); EBUSY/ENOBUFS: a frame was dropped
                // by the device but completed.
                Ok(()) | Err(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => {}
                Err(_) => {
                    self.counters.kick_errors += 1;
                    return;
                }
            }
            if self.zero_copy {
                self.reap(pool);
                return;
            }
        }
        self.reap(pool);
    }

    /// Tops the fill ring up to its target from the pool.
    pub(crate) fn refill(&mut self, pool: &mut FramePool) {
        let want = self
            .fill_target
            .saturating_sub(self.in_fill)
            .min(pool.free_count());
        if want == 0 {
            return;
        }
        let n = {
            let mut writer = self.fcq.fill(want);
            let cap = writer.capacity() as usize;
            // `take` yields exactly min(cap, free) frames, so the writer
            // consumes every one of them.
            let n = writer.insert(pool.take(cap));
            writer.commit();
            n
        };
        self.in_fill += n;
        if self.fcq.needs_wakeup() {
            // Best effort: a failed wake-up is retried at the next flush.
            let _ = sys::wake_rx(self.fd);
        }
    }

    /// Commit, kick, reap, refill.
    pub(crate) fn flush(&mut self, pool: &mut FramePool) {
        self.commit_pending(pool);
        self.kick(pool);
        self.refill(pool);
    }

    pub(crate) fn kernel_stats(&self) -> sys::XdpStatistics {
        sys::xdp_statistics(self.fd).unwrap_or_default()
    }
}

/// The books of a pool and the sockets registered on it.
pub(crate) fn books<'a>(pool: &FramePool, xsks: impl Iterator<Item = &'a Xsk>) -> Books {
    let mut books = Books {
        free: pool.free_count(),
        lost: pool.lost(),
        total: pool.total(),
        ..Books::default()
    };
    for xsk in xsks {
        let (kernel, held) = xsk.lent();
        books.kernel += kernel;
        books.held += held;
    }
    books
}
