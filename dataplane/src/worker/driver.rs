//! [`Driver`]: a worker's loop over the port queues it owns (RX, prefetch,
//! process, the host path, housekeeping, TX, LOG lines), one round at a
//! time. No clock and no waiting: the caller passes the time of each
//! round, and blocks on its queues' descriptors when a round says the
//! worker is idle.

use std::sync::Arc;

use crate::action::Action;
use crate::drop::DropReason;
use crate::gateway::Gateway;
use crate::link::Links;
use crate::log::LogSink;
use crate::pipeline::{Emit, ETH_HLEN, FRAME_SIZE};
use crate::port::{ForwardVerdict, HostPort, NoHost, PortQueue};

use super::{Batch, Worker};

/// Frames a round takes from each interface of each queue.
pub const BATCH: usize = 64;

/// The host path yields to forwarding: while forwarding fills a worker's
/// rounds, it reads at most this many packets per host device and hands at
/// most `4 *` this many to the host per millisecond (more are dropped,
/// counted as `host_path_full`); otherwise up to a batch per device every
/// 50 µs, and whenever a round found nothing.
const HOST_SATURATED_BUDGET: usize = 16;

/// Housekeeping runs at most this often under load (ns), and whenever a
/// round found nothing: its cost must not be paid per packet when batches
/// are small.
const HOUSEKEEPING_EVERY: u64 = 1_000_000;

/// Rounds that find nothing before the worker counts as idle (its credit
/// round ends, and the caller may block).
const IDLE_AFTER: u32 = 64;

/// Frames generated while the queues are read (ICMP errors, ARP, held
/// packets released): copied here, sent after the batch. Preallocated.
struct Staging {
    frames: Vec<(u8, usize, Box<[u8]>)>,
    used: usize,
    lost: u64,
}

impl Staging {
    fn new(n: usize) -> Staging {
        Staging {
            frames: (0..n)
                .map(|_| (0, 0, vec![0u8; FRAME_SIZE].into_boxed_slice()))
                .collect(),
            used: 0,
            lost: 0,
        }
    }
}

impl Emit for Staging {
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        match self.frames.get_mut(self.used) {
            Some(slot) if frame.len() <= slot.2.len() => {
                slot.0 = iface;
                slot.1 = frame.len();
                slot.2[..frame.len()].copy_from_slice(frame);
                self.used += 1;
            }
            _ => self.lost += 1,
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    /// Frames received from the queues and packets read from the host path.
    pub received: usize,
    /// The worker is idle (rounds have found nothing for a while): the
    /// caller may block until one of its queues is readable, for at most
    /// as long as its timers allow (10 ms in `xdpgw run`).
    pub idle: bool,
}

/// A worker with the queues it owns and its host path queue, if any.
pub struct Driver<Q: PortQueue, H: HostPort = NoHost> {
    worker: Worker,
    /// The worker's gateway, for its links (borrowed beside the worker's
    /// open batch).
    gw: Arc<Gateway>,
    queues: Vec<Q>,
    host: Option<H>,
    staging: Staging,
    host_buf: Box<[u8]>,
    host_budget: usize,
    last_host: u64,
    last_housekeeping: u64,
    idle_rounds: u32,
}

impl<Q: PortQueue, H: HostPort> Driver<Q, H> {
    /// `worker` over `queues` (each spanning the gateway's interfaces, in
    /// its interface order), with the host path's queue `host`.
    pub fn new(worker: Worker, queues: Vec<Q>, host: Option<H>) -> Driver<Q, H> {
        Driver {
            gw: Arc::clone(worker.gateway()),
            worker,
            queues,
            host,
            // Room for a batch's datagrams fragmented on the way out.
            staging: Staging::new(BATCH * 4),
            host_buf: vec![0u8; FRAME_SIZE].into_boxed_slice(),
            host_budget: usize::MAX,
            last_host: 0,
            last_housekeeping: 0,
            idle_rounds: 0,
        }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub fn worker_mut(&mut self) -> &mut Worker {
        &mut self.worker
    }

    pub fn queues(&self) -> &[Q] {
        &self.queues
    }

    pub fn queues_mut(&mut self) -> &mut [Q] {
        &mut self.queues
    }

    pub fn host(&self) -> Option<&H> {
        self.host.as_ref()
    }

    pub fn host_mut(&mut self) -> Option<&mut H> {
        self.host.as_mut()
    }

    /// One round at `now`: a batch of up to [`BATCH`] frames from each
    /// interface of each queue, each batch read off a ring shown to the
    /// prefetch pass before its frames are processed; forwarded frames go
    /// out as they are (a descriptor, no copy, on AF_XDP), packets for the
    /// host to the host path; what the host sent is read (see
    /// `HOST_SATURATED_BUDGET`); housekeeping; the generated frames are
    /// sent; the queues flushed; the LOG entries handed to `logs`.
    pub fn round(&mut self, now: u64, logs: &mut impl LogSink) -> Round {
        let mut got = 0;
        {
            // Ports to interfaces and back (802.1Q tags): `Links`, here
            // where frames enter and leave the queues, and nowhere else.
            let links = &self.gw.links;
            let mut batch = self.worker.batch(&mut self.staging);
            let mut host = self.host.as_mut();
            let budget = &mut self.host_budget;
            for q in self.queues.iter_mut() {
                got += q.rx_batch_peeked(
                    BATCH,
                    &mut batch,
                    |b, port, frame| {
                        if let Some(iface) = links.peek(port, frame) {
                            b.prefetch(iface, frame);
                        }
                    },
                    |b, port, frame, len| {
                        let (in_iface, len) = match links.ingress(port, frame, len) {
                            Ok(x) => x,
                            Err(r) => {
                                b.count_rx_drop(r);
                                return ForwardVerdict::Drop;
                            }
                        };
                        match b.process(now, in_iface, frame, len) {
                            // To any interface of the queue, as a descriptor: no copy.
                            Action::Forward { iface, len } => match links.egress(iface, frame, len)
                            {
                                Some((port, len)) => ForwardVerdict::Tx { port, len },
                                // No room for a tag: a frame within 4 bytes
                                // of the end of its buffer, which no MTU
                                // xdpgw accepts makes.
                                None => {
                                    b.count_drop(DropReason::EthTruncated);
                                    ForwardVerdict::Drop
                                }
                            },
                            Action::Host { iface, len } => {
                                let packet = frame.get(ETH_HLEN..len);
                                if let Err(r) = to_host(host.as_deref_mut(), budget, iface, packet)
                                {
                                    b.count_drop(r);
                                }
                                ForwardVerdict::Drop
                            }
                            Action::HostReassembled { iface, len } => {
                                let packet = b.reassembled().get(ETH_HLEN..len);
                                let r = to_host(host.as_deref_mut(), budget, iface, packet);
                                if let Err(r) = r {
                                    b.count_drop(r);
                                }
                                ForwardVerdict::Drop
                            }
                            Action::Drop(_) | Action::Consumed | Action::Emitted { .. } => {
                                ForwardVerdict::Drop
                            }
                        }
                    },
                );
            }
            // What the host sent: read when the round found nothing, else
            // at most every 50 µs (a system call per device that usually
            // finds nothing must not be paid per batch under load), and
            // while forwarding saturates this worker, a little every
            // millisecond.
            let saturated = got >= BATCH;
            if let (Some(h), Some(q)) = (host, self.queues.first_mut()) {
                let (interval, budget) = if saturated {
                    (1_000_000, HOST_SATURATED_BUDGET)
                } else {
                    (50_000, BATCH)
                };
                if got == 0 || now.saturating_sub(self.last_host) >= interval {
                    self.last_host = now;
                    self.host_budget = if saturated {
                        4 * HOST_SATURATED_BUDGET
                    } else {
                        usize::MAX
                    };
                    got += from_host(&mut batch, h, q, links, now, &mut self.host_buf, budget);
                }
            }
        }
        if got == 0 || now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_EVERY {
            self.last_housekeeping = now;
            self.worker.housekeeping(now, &mut self.staging);
        }
        if let Some(q) = self.queues.first_mut() {
            for (out, len, buf) in &mut self.staging.frames[..self.staging.used] {
                match self.gw.links.egress(*out, buf, *len) {
                    Some((port, len)) => {
                        q.tx_copy(port, &buf[..len]);
                    }
                    None => self.staging.lost += 1,
                }
            }
        }
        self.staging.used = 0;
        for q in self.queues.iter_mut() {
            q.flush();
        }
        self.worker.drain_logs(logs);
        let mut idle = false;
        if got == 0 {
            self.idle_rounds = self.idle_rounds.saturating_add(1);
            if self.idle_rounds > IDLE_AFTER {
                // Conntrack gets what the fast path credited: the table is
                // exact while traffic pauses.
                self.worker.idle();
                idle = true;
            }
        } else {
            self.idle_rounds = 0;
        }
        Round {
            received: got,
            idle,
        }
    }

    /// Ends the driver: the worker's credit round ends (conntrack gets
    /// everything), and the worker, its queues and host queue are handed
    /// back.
    pub fn finish(mut self) -> (Worker, Vec<Q>, Option<H>) {
        self.worker.idle();
        (self.worker, self.queues, self.host)
    }
}

/// Hands a packet INPUT accepted to the host, through the device of the
/// interface it arrived on, if the host path exists and its budget allows.
fn to_host(
    host: Option<&mut impl HostPort>,
    budget: &mut usize,
    iface: u8,
    packet: Option<&[u8]>,
) -> Result<(), DropReason> {
    let host = host.ok_or(DropReason::HostUnsupported)?;
    match packet {
        Some(p) if *budget > 0 => {
            *budget -= 1;
            if host.deliver(usize::from(iface), p) {
                Ok(())
            } else {
                Err(DropReason::HostPathFull)
            }
        }
        _ => Err(DropReason::HostPathFull),
    }
}

/// Sends what the host wrote into its devices (up to `budget` packets per
/// device) through OUTPUT; returns how many packets were read.
fn from_host<E: Emit>(
    batch: &mut Batch<'_, E>,
    host: &mut impl HostPort,
    q: &mut impl PortQueue,
    links: &Links,
    now: u64,
    buf: &mut [u8],
    budget: usize,
) -> usize {
    let mut n = 0;
    for dev in 0..host.devices() {
        for _ in 0..budget {
            let Some(len) = buf.get_mut(ETH_HLEN..).and_then(|b| host.receive(dev, b)) else {
                break;
            };
            n += 1;
            let dev = u8::try_from(dev).unwrap_or(u8::MAX);
            if let Action::Forward { iface, len } = batch.from_host(now, dev, buf, len) {
                if let Some((port, len)) = links.egress(iface, buf, len) {
                    if let Some(frame) = buf.get(..len) {
                        q.tx_copy(port, frame);
                    }
                }
            }
        }
    }
    n
}
