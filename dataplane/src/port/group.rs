//! [`PortGroup`]: several interfaces on shared UMEMs, for forwarding
//! between them without copying.
//!
//! For each queue index `q`, one UMEM carries the sockets of every
//! interface's queue `q` (the first socket registers it, the others bind
//! with `XDP_SHARED_UMEM` to it: allowed across devices since Linux 5.10,
//! each with its own fill and completion ring). One worker owns that
//! [`GroupQueue`]: a frame received on `lan0` queue `q` can be put on
//! `wan0` queue `q`'s TX ring as it is, since both rings address the same
//! memory, and its completion comes back on `wan0`'s completion ring into the
//! same free list. The free list is not shared between threads, so there is
//! no lock: that is why the unit is "queue index `q` of every interface".
//!
//! In copy mode (veth, or any driver without zero-copy) the kernel still
//! copies between the skb and the UMEM on both sides; what the group saves is
//! the userspace memcpy of [`Queue::tx_copy`](super::Queue::tx_copy).

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use xdpilone::xdp::XdpDesc;

use super::queue::{wait_fds, FrameAccounting, QueueStats};
use super::umem::{FramePool, UmemArea};
use super::xsk::{self, Member, Xsk, BATCH};
use super::{
    attach, bpf, insert, lookup, open_umem, zero_copy_tries, Device, PortConfig, PortError,
    PortMode, PortQueue, XdpAttach,
};

/// What to do with a frame received by a [`GroupQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardVerdict {
    /// Transmit the first `len` bytes of the (possibly rewritten) buffer out
    /// of the group's interface number `port` (any of them, including the
    /// one it came from), without copying.
    Tx {
        /// Index of the interface in the group (order of `PortGroup::open`).
        port: usize,
        /// Bytes to send.
        len: usize,
    },
    /// Return the frame to the pool.
    Drop,
}

/// One interface of a group: its program and what we know of it.
struct GroupPort {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u16,
    xdp: XdpAttach,
}

/// Several interfaces opened together, each queue index on one shared UMEM.
/// Dropping it detaches the programs of all of them.
pub struct PortGroup {
    // Declared first, dropped first: programs before sockets.
    ports: Vec<GroupPort>,
    queues: Vec<GroupQueue>,
    zero_copy: bool,
    queue_count: u32,
}

impl PortGroup {
    /// Opens every interface of `cfgs` (calling thread's namespace). The
    /// group uses the first config's `zero_copy`, `frame_size` and `frames`
    /// (frames per socket), and as many queues as the interface with fewest
    /// (each `queues` setting capping its interface's count).
    pub fn open(cfgs: &[PortConfig]) -> Result<PortGroup, PortError> {
        let Some(first) = cfgs.first() else {
            return Err(PortError::InvalidConfig {
                what: "a port group needs at least one interface".into(),
            });
        };
        struct Opening {
            cfg: PortConfig,
            dev: Device,
            loaded: bpf::Loaded,
        }
        let mut opening: Vec<Opening> = Vec::with_capacity(cfgs.len());
        let mut queue_count = u32::MAX;
        for cfg in cfgs {
            cfg.validate()?;
            if opening.iter().any(|o| o.cfg.ifname == cfg.ifname) {
                return Err(PortError::InvalidConfig {
                    what: format!("{} is twice in the group", cfg.ifname),
                });
            }
            let dev = lookup(cfg)?;
            let loaded = if first.multi_buffer {
                super::check_mtu_multi_buffer(&cfg.ifname, &dev)?;
                bpf::load_frags(dev.queues)?
            } else {
                super::check_mtu(first.frame_size, &cfg.ifname, &dev)?;
                bpf::load(dev.queues)?
            };
            queue_count = queue_count.min(cfg.queues.unwrap_or(dev.queues).min(dev.queues));
            opening.push(Opening {
                cfg: cfg.clone(),
                dev,
                loaded,
            });
        }
        // Sockets first, programs last, as in `Port::open`.
        let mut tries = zero_copy_tries(first.zero_copy);
        let mut queues = Vec::with_capacity(queue_count as usize);
        for queue_id in 0..queue_count {
            let members: Vec<Member> = opening
                .iter()
                .map(|o| Member {
                    ifname: o.cfg.ifname.clone(),
                    ifindex: o.dev.ifindex,
                    queue_id,
                })
                .collect();
            let (mapping, xsks) = open_umem(
                &members,
                first.frame_size,
                first.frames,
                tries,
                first.multi_buffer,
            )?;
            tries = if xsks.first().is_some_and(Xsk::zero_copy) {
                &[true]
            } else {
                &[false]
            };
            for (xsk, o) in xsks.iter().zip(&opening) {
                insert(&o.loaded.map, xsk, &o.cfg.ifname)?;
            }
            queues.push(GroupQueue::new(
                xsks,
                FramePool::new(UmemArea::new(Arc::clone(&mapping), first.frame_size)),
                queue_id,
                first.multi_buffer,
            ));
        }
        let mut ports = Vec::with_capacity(opening.len());
        for o in opening {
            let (link, xdp) = attach(&o.loaded.prog, &o.dev, &o.cfg)?;
            ports.push(GroupPort {
                _link: link,
                _prog: o.loaded.prog,
                _map: o.loaded.map,
                ifname: o.cfg.ifname,
                ifindex: o.dev.ifindex,
                mac: o.dev.mac,
                mtu: o.dev.mtu,
                xdp,
            });
        }
        let zero_copy = queues
            .first()
            .is_some_and(|q| q.xsks.iter().all(Xsk::zero_copy));
        Ok(PortGroup {
            ports,
            queues,
            zero_copy,
            queue_count,
        })
    }

    /// Hands out the group's queues (once), one per queue index, each to be
    /// owned by one worker.
    pub fn queues(&mut self) -> Vec<GroupQueue> {
        std::mem::take(&mut self.queues)
    }

    /// How many interfaces the group has.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether the group is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The mode of interface `port`.
    pub fn mode(&self, port: usize) -> Option<PortMode> {
        self.ports.get(port).map(|p| PortMode {
            xdp: p.xdp,
            zero_copy: self.zero_copy,
            queues: self.queue_count,
        })
    }

    /// The name of interface `port`.
    pub fn ifname(&self, port: usize) -> Option<&str> {
        self.ports.get(port).map(|p| p.ifname.as_str())
    }

    /// The MAC address of interface `port`.
    pub fn mac(&self, port: usize) -> Option<[u8; 6]> {
        self.ports.get(port).map(|p| p.mac)
    }

    /// The MTU of interface `port`.
    pub fn mtu(&self, port: usize) -> Option<u16> {
        self.ports.get(port).map(|p| p.mtu)
    }

    /// The index of interface `port`.
    pub fn ifindex(&self, port: usize) -> Option<u32> {
        self.ports.get(port).map(|p| p.ifindex)
    }
}

/// Queue index `q` of every interface of a group, on one UMEM.
pub struct GroupQueue {
    xsks: Vec<Xsk>,
    pool: FramePool,
    queue_id: u32,
    fds: Vec<RawFd>,
    /// Multi-buffer frames ([`PortConfig::multi_buffer`]): per interface,
    /// the frame being gathered. Empty without multi-buffer.
    gather: Vec<Gather>,
}

/// A frame arriving in several UMEM buffers (multi-buffer AF_XDP: each
/// descriptor but the last with XDP_PKT_CONTD), gathered into one
/// contiguous buffer for the pipeline, off the fast path (a 1,500-byte
/// frame is one buffer and never comes here). Its parts may span two
/// receive batches.
struct Gather {
    buf: Box<[u8]>,
    len: usize,
    /// The buffers it came in, returned or reused when it is done with.
    addrs: Vec<u64>,
    /// A part did not fit or lay outside the UMEM: the frame is dropped.
    bad: bool,
}

/// Bytes a gathered frame may have (the largest MTU, its Ethernet header
/// and VLAN tag, and room for a rewrite to grow it).
const GATHER_BYTES: usize = super::MAX_MTU as usize + 18 + 256;
/// The most buffers one frame may take on transmit (Linux's copy mode
/// takes MAX_SKB_FRAGS, 17, plus the head).
const MAX_PARTS: usize = 16;

impl Gather {
    /// A placeholder while a gathered frame is processed (no allocation).
    fn empty() -> Gather {
        Gather {
            buf: Box::default(),
            len: 0,
            addrs: Vec::new(),
            bad: false,
        }
    }

    fn new() -> Gather {
        Gather {
            buf: vec![0u8; GATHER_BYTES].into_boxed_slice(),
            len: 0,
            addrs: Vec::with_capacity(MAX_PARTS + 1),
            bad: false,
        }
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<GroupQueue>();
};

impl GroupQueue {
    fn new(
        mut xsks: Vec<Xsk>,
        mut pool: FramePool,
        queue_id: u32,
        multi_buffer: bool,
    ) -> GroupQueue {
        for xsk in &mut xsks {
            xsk.refill(&mut pool);
        }
        let fds = xsks.iter().map(Xsk::fd).collect();
        let gather = if multi_buffer {
            xsks.iter().map(|_| Gather::new()).collect()
        } else {
            Vec::new()
        };
        GroupQueue {
            xsks,
            pool,
            queue_id,
            fds,
            gather,
        }
    }

    /// The queue index.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// How many interfaces (sockets) this queue spans.
    pub fn ports(&self) -> usize {
        self.xsks.len()
    }

    /// Receives up to `max` frames from each interface in turn, calling
    /// `f(port, frame, len)` (see [`Queue::rx_batch`](super::Queue::rx_batch)
    /// for `frame` and `len`); frames `f` sends to a port go on that port's
    /// TX ring as they are. Returns how many frames were received.
    pub fn rx_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(usize, &mut [u8], usize) -> ForwardVerdict,
    ) -> usize {
        self.rx_batch_peeked(
            max,
            &mut (),
            |_, _, _| {},
            |_, port, frame, len| f(port, frame, len),
        )
    }

    /// [`GroupQueue::rx_batch`], showing each batch read off a ring to
    /// `peek(ctx, port, frame)` (the frame's first `len` bytes) before `f`
    /// sees any of its frames: a worker starts loading what their lookups
    /// will touch, so that the batch's cache misses overlap. `ctx` is
    /// handed to both.
    pub fn rx_batch_peeked<C>(
        &mut self,
        max: usize,
        ctx: &mut C,
        mut peek: impl FnMut(&mut C, usize, &[u8]),
        mut f: impl FnMut(&mut C, usize, &mut [u8], usize) -> ForwardVerdict,
    ) -> usize {
        let mut descs = [XdpDesc::default(); BATCH];
        let mut total = 0;
        for port in 0..self.xsks.len() {
            let mut done = 0;
            while done < max {
                let want = (max - done).min(BATCH);
                let n = self.xsks[port].receive(&mut descs[..want]);
                // The kernel wrote the frames on another CPU: their headers'
                // misses overlap when all start before the first is read.
                for desc in &descs[..n] {
                    self.pool.area.prefetch(desc.addr);
                }
                for desc in &descs[..n] {
                    let len = desc.len as usize;
                    // SAFETY: as below; the slice lives only for this call
                    // and nothing else refers to the frame meanwhile.
                    if let Some(frame) = unsafe { self.pool.area.frame_mut(desc.addr, len) } {
                        peek(ctx, port, &frame[..len]);
                    }
                }
                for desc in &descs[..n] {
                    // Part of a multi-buffer frame (never without
                    // multi-buffer: `gather` is empty then).
                    if let Some(g) = self.gather.get(port) {
                        if desc.options & xsk::XDP_PKT_CONTD != 0 || !g.addrs.is_empty() {
                            self.gather_part(port, desc, ctx, &mut f);
                            continue;
                        }
                    }
                    let len = desc.len as usize;
                    // SAFETY: the descriptor was just read off this socket's
                    // RX ring: the kernel handed the frame to us, and nothing
                    // else refers to it until we give it back below.
                    let Some(frame) = (unsafe { self.pool.area.frame_mut(desc.addr, len) }) else {
                        self.xsks[port].counters.rx_invalid += 1;
                        self.pool.push(desc.addr);
                        continue;
                    };
                    let cap = frame.len();
                    match f(ctx, port, frame, len) {
                        ForwardVerdict::Tx { port: out, len } if len > 0 && len <= cap => {
                            match self.xsks.get_mut(out) {
                                Some(xsk) => xsk.push_tx(
                                    XdpDesc {
                                        addr: desc.addr,
                                        len: len as u32,
                                        options: 0,
                                    },
                                    &mut self.pool,
                                ),
                                None => {
                                    self.xsks[port].counters.tx_invalid += 1;
                                    self.pool.push(desc.addr);
                                }
                            }
                        }
                        ForwardVerdict::Tx { .. } => {
                            self.xsks[port].counters.tx_invalid += 1;
                            self.pool.push(desc.addr);
                        }
                        ForwardVerdict::Drop => self.pool.push(desc.addr),
                    }
                }
                done += n;
                if n < want {
                    break;
                }
            }
            total += done;
        }
        for xsk in &mut self.xsks {
            xsk.commit_pending(&mut self.pool);
        }
        self.debug_check();
        total
    }

    /// Adds one part of a multi-buffer frame received on `port`; at its
    /// last part, hands the gathered frame to `f` and sends or drops it.
    #[cold]
    fn gather_part<C>(
        &mut self,
        port: usize,
        desc: &XdpDesc,
        ctx: &mut C,
        f: &mut impl FnMut(&mut C, usize, &mut [u8], usize) -> ForwardVerdict,
    ) {
        let Some(g) = self.gather.get_mut(port) else {
            self.pool.push(desc.addr);
            return;
        };
        let len = desc.len as usize;
        // SAFETY: the descriptor was just read off this socket's RX ring: the
        // kernel handed the buffer to us; it is only read here and stays ours
        // (in `g.addrs`) until returned or sent.
        match unsafe { self.pool.area.frame_mut(desc.addr, len) } {
            Some(part) if g.len + len <= g.buf.len() && g.addrs.len() < MAX_PARTS => {
                g.buf[g.len..g.len + len].copy_from_slice(&part[..len]);
                g.len += len;
            }
            _ => g.bad = true,
        }
        g.addrs.push(desc.addr);
        if desc.options & xsk::XDP_PKT_CONTD != 0 && g.addrs.len() <= MAX_PARTS {
            return;
        }
        // The last part (or too many): the frame is complete.
        let mut g = std::mem::replace(&mut self.gather[port], Gather::empty());
        let verdict = if g.bad || desc.options & xsk::XDP_PKT_CONTD != 0 {
            self.xsks[port].counters.rx_invalid += 1;
            ForwardVerdict::Drop
        } else {
            let len = g.len;
            f(ctx, port, &mut g.buf, len)
        };
        match verdict {
            ForwardVerdict::Tx { port: out, len } if len > 0 && len <= g.buf.len() => {
                if !self.tx_scatter(out, &g.buf[..len], &g.addrs) {
                    self.xsks[port].counters.tx_invalid += 1;
                }
            }
            ForwardVerdict::Tx { .. } => {
                self.xsks[port].counters.tx_invalid += 1;
                for &a in &g.addrs {
                    self.pool.push(a);
                }
            }
            ForwardVerdict::Drop => {
                for &a in &g.addrs {
                    self.pool.push(a);
                }
            }
        }
        g.addrs.clear();
        g.len = 0;
        g.bad = false;
        self.gather[port] = g;
    }

    /// Sends `data` out of interface `out` in as many UMEM buffers as it
    /// takes (one descriptor each, all but the last with XDP_PKT_CONTD):
    /// the buffers `reuse` (which it now owns, each from its address to its
    /// frame's end) first, then free ones. Buffers left over go back to the
    /// pool. False (everything returned) if `out` is no interface of the
    /// group, buffers ran out or the frame would take too many.
    fn tx_scatter(&mut self, out: usize, data: &[u8], reuse: &[u64]) -> bool {
        let mut descs = [XdpDesc::default(); MAX_PARTS];
        let mut parts = 0;
        let mut written = 0;
        let mut ok = out < self.xsks.len();
        while ok && written < data.len() {
            let addr = match reuse.get(parts) {
                Some(&a) => Some(a),
                None => self.pool.pop(),
            };
            let Some(addr) = addr else {
                ok = false;
                break;
            };
            if parts == MAX_PARTS {
                if parts >= reuse.len() {
                    self.pool.push(addr);
                }
                ok = false;
                break;
            }
            // SAFETY: `addr` is ours: a buffer of the frame being sent (the
            // caller's) or one just taken off the free list; no ring holds it.
            let Some(buf) = (unsafe { self.pool.area.frame_mut(addr, 0) }) else {
                if parts >= reuse.len() {
                    self.pool.push(addr);
                }
                ok = false;
                break;
            };
            let n = buf.len().min(data.len() - written);
            buf[..n].copy_from_slice(&data[written..written + n]);
            descs[parts] = XdpDesc {
                addr,
                len: n as u32,
                options: xsk::XDP_PKT_CONTD,
            };
            parts += 1;
            written += n;
        }
        if !ok || parts == 0 {
            for d in &descs[..parts] {
                self.pool.push(d.addr);
            }
            for &a in reuse.iter().skip(parts) {
                self.pool.push(a);
            }
            return false;
        }
        descs[parts - 1].options = 0;
        for &a in reuse.iter().skip(parts) {
            self.pool.push(a);
        }
        self.xsks[out].push_tx_chain(&descs[..parts], &mut self.pool);
        true
    }

    /// Queues a copy of `frame` for transmission on interface `port`; see
    /// [`Queue::tx_copy`](super::Queue::tx_copy). With multi-buffer, a frame
    /// larger than a UMEM frame goes out in several.
    pub fn tx_copy(&mut self, port: usize, frame: &[u8]) -> bool {
        let len = frame.len();
        if !self.gather.is_empty() && len > self.pool.area.frame_size() as usize {
            let sent = self.tx_scatter(port, frame, &[]);
            if !sent {
                if let Some(xsk) = self.xsks.get_mut(port) {
                    xsk.counters.tx_full += 1;
                }
            }
            return sent;
        }
        let Some(xsk) = self.xsks.get_mut(port) else {
            return false;
        };
        if len == 0 || len > self.pool.area.frame_size() as usize {
            xsk.counters.tx_invalid += 1;
            return false;
        }
        let addr = match self.pool.pop() {
            Some(addr) => addr,
            None => {
                xsk.reap(&mut self.pool);
                match self.pool.pop() {
                    Some(addr) => addr,
                    None => {
                        xsk.counters.tx_full += 1;
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
                xsk.counters.tx_invalid += 1;
                return false;
            }
        }
        let desc = XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        };
        xsk.push_tx(desc, &mut self.pool);
        true
    }

    /// Commits, kicks, reaps and refills every socket of the queue. Reaps
    /// all sockets before refilling any, so frames sent on one interface
    /// can refill another's fill ring in the same call.
    pub fn flush(&mut self) {
        for xsk in &mut self.xsks {
            xsk.commit_pending(&mut self.pool);
            xsk.kick(&mut self.pool);
        }
        for xsk in &mut self.xsks {
            xsk.refill(&mut self.pool);
        }
        self.debug_check();
    }

    /// Waits up to `timeout` for frames on any of the queue's sockets.
    pub fn wait(&self, timeout: Duration) -> bool {
        wait_fds(&self.fds, timeout)
    }

    /// The sockets' descriptors (for poll(2) together with other
    /// descriptors: [`wait_readable`](super::wait_readable)).
    pub fn raw_fds(&self) -> &[RawFd] {
        &self.fds
    }

    /// The counters of interface `port`'s socket.
    pub fn stats(&self, port: usize) -> Option<QueueStats> {
        self.xsks
            .get(port)
            .map(|x| QueueStats::from_parts(x.counters, x.kernel_stats()))
    }

    /// Where the shared UMEM's frames are (those of a multi-buffer frame
    /// being gathered count as held).
    pub fn frame_accounting(&self) -> FrameAccounting {
        let mut books = xsk::books(&self.pool, self.xsks.iter());
        books.held += self
            .gather
            .iter()
            .map(|g| g.addrs.len() as u32)
            .sum::<u32>();
        books.into()
    }

    fn debug_check(&self) {
        debug_assert!(
            self.frame_accounting().is_balanced(),
            "frame accounting: {:?}",
            self.frame_accounting()
        );
        // Not the rings' heads: see `Queue::debug_check`.
    }
}

impl PortQueue for GroupQueue {
    fn ports(&self) -> usize {
        GroupQueue::ports(self)
    }
    #[inline]
    fn rx_batch_peeked<C>(
        &mut self,
        max: usize,
        ctx: &mut C,
        peek: impl FnMut(&mut C, usize, &[u8]),
        f: impl FnMut(&mut C, usize, &mut [u8], usize) -> ForwardVerdict,
    ) -> usize {
        GroupQueue::rx_batch_peeked(self, max, ctx, peek, f)
    }
    fn tx_copy(&mut self, port: usize, frame: &[u8]) -> bool {
        GroupQueue::tx_copy(self, port, frame)
    }
    fn flush(&mut self) {
        GroupQueue::flush(self)
    }
}
