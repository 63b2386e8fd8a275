//! In-memory ports for tests, tools and benchmarks: a [`MemQueue`] is queue
//! `q` of every interface of a gateway with its rings as vectors, a
//! [`MemHost`] the host path's devices. The worker driver runs over them as
//! it runs over AF_XDP sockets and TUN devices.

use std::collections::VecDeque;

use super::{ForwardVerdict, HostPort, PortQueue};

/// A frame buffer's size: a UMEM frame's (a rewrite may grow a packet
/// into it).
const FRAME: usize = 2048;

/// Queue `q` of `ports` interfaces, in memory: frames pushed to an
/// interface's receive side come out of [`PortQueue::rx_batch_peeked`] in
/// order, and what is sent on any interface collects in [`MemQueue::sent`].
#[derive(Debug, Default)]
pub struct MemQueue {
    /// What arrives, per interface.
    rx: Vec<VecDeque<Vec<u8>>>,
    /// What was sent, in order: (interface, frame).
    pub sent: Vec<(usize, Vec<u8>)>,
    /// Frames sent to an interface the queue does not span, or longer than
    /// a frame buffer.
    pub tx_invalid: u64,
}

impl MemQueue {
    /// A queue of `ports` interfaces.
    pub fn new(ports: usize) -> MemQueue {
        MemQueue {
            rx: (0..ports).map(|_| VecDeque::new()).collect(),
            sent: Vec::new(),
            tx_invalid: 0,
        }
    }

    /// A frame arrives on interface `port` (one past the last interface is
    /// allowed: a frame on no interface of the gateway); false if `port`
    /// is beyond that.
    pub fn arrive(&mut self, port: usize, frame: &[u8]) -> bool {
        if port > self.rx.len() {
            return false;
        }
        if port == self.rx.len() {
            self.rx.push(VecDeque::new());
        }
        self.rx[port].push_back(frame.to_vec());
        true
    }

    /// Frames waiting to be received.
    pub fn pending(&self) -> usize {
        self.rx.iter().map(VecDeque::len).sum()
    }

    /// Takes what was sent so far.
    pub fn take_sent(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }

    fn send(&mut self, port: usize, frame: &[u8]) -> bool {
        if port >= self.rx.len() || frame.is_empty() || frame.len() > FRAME {
            self.tx_invalid += 1;
            return false;
        }
        self.sent.push((port, frame.to_vec()));
        true
    }
}

impl PortQueue for MemQueue {
    fn ports(&self) -> usize {
        self.rx.len()
    }

    fn rx_batch_peeked<C>(
        &mut self,
        max: usize,
        ctx: &mut C,
        mut peek: impl FnMut(&mut C, usize, &[u8]),
        mut f: impl FnMut(&mut C, usize, &mut [u8], usize) -> ForwardVerdict,
    ) -> usize {
        let mut total = 0;
        for port in 0..self.rx.len() {
            let n = self.rx[port].len().min(max);
            let frames: Vec<Vec<u8>> = self.rx[port].drain(..n).collect();
            for frame in &frames {
                peek(ctx, port, frame);
            }
            for frame in frames {
                let len = frame.len().min(FRAME);
                let mut buf = vec![0u8; FRAME];
                buf[..len].copy_from_slice(&frame[..len]);
                match f(ctx, port, &mut buf, len) {
                    ForwardVerdict::Tx { port: out, len } if len > 0 && len <= FRAME => {
                        self.send(out, &buf[..len]);
                    }
                    ForwardVerdict::Tx { .. } => self.tx_invalid += 1,
                    ForwardVerdict::Drop => {}
                }
            }
            total += n;
        }
        total
    }

    fn tx_copy(&mut self, port: usize, frame: &[u8]) -> bool {
        self.send(port, frame)
    }

    fn flush(&mut self) {}
}

/// The host path in memory: packets delivered to the host collect in
/// [`MemHost::delivered`]; packets pushed with [`MemHost::host_sends`] are
/// what the host sent.
#[derive(Debug, Default)]
pub struct MemHost {
    /// (device, IPv4 packet) delivered to the host, in order.
    pub delivered: Vec<(usize, Vec<u8>)>,
    sent: Vec<VecDeque<Vec<u8>>>,
    /// Delivered packets refused as the device would refuse them (none
    /// unless set: a full device).
    pub refuse: bool,
}

impl MemHost {
    /// The host path of `devices` interfaces.
    pub fn new(devices: usize) -> MemHost {
        MemHost {
            delivered: Vec::new(),
            sent: (0..devices).map(|_| VecDeque::new()).collect(),
            refuse: false,
        }
    }

    /// The host sends the IPv4 packet `packet` through device `dev`.
    pub fn host_sends(&mut self, dev: usize, packet: &[u8]) {
        if let Some(q) = self.sent.get_mut(dev) {
            q.push_back(packet.to_vec());
        }
    }
}

impl HostPort for MemHost {
    fn devices(&self) -> usize {
        self.sent.len()
    }

    fn deliver(&mut self, dev: usize, packet: &[u8]) -> bool {
        if self.refuse || dev >= self.sent.len() {
            return false;
        }
        self.delivered.push((dev, packet.to_vec()));
        true
    }

    fn receive(&mut self, dev: usize, buf: &mut [u8]) -> Option<usize> {
        let p = self.sent.get_mut(dev)?.pop_front()?;
        let n = p.len().min(buf.len());
        buf[..n].copy_from_slice(&p[..n]);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_order_per_port_and_go_where_sent() {
        let mut q = MemQueue::new(2);
        assert!(q.arrive(1, &[1; 60]));
        assert!(q.arrive(0, &[2; 60]));
        assert!(q.arrive(1, &[3; 60]));
        assert!(q.arrive(2, &[4; 60]), "one past the last interface");
        assert!(!q.arrive(4, &[5; 60]));
        let mut peeked = Vec::new();
        let n = q.rx_batch_peeked(
            8,
            &mut peeked,
            |p, port, f| p.push((port, f[0], f.len())),
            |_, port, f, len| match port {
                0 => ForwardVerdict::Tx { port: 1, len },
                1 if f[0] == 1 => {
                    f[0] = 9;
                    ForwardVerdict::Tx {
                        port: 0,
                        len: len + 4,
                    }
                }
                _ => ForwardVerdict::Drop,
            },
        );
        assert_eq!(n, 4);
        assert_eq!(peeked, [(0, 2, 60), (1, 1, 60), (1, 3, 60), (2, 4, 60)]);
        let sent = q.take_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].0, sent[0].1.len(), sent[0].1[0]), (1, 60, 2));
        assert_eq!((sent[1].0, sent[1].1.len(), sent[1].1[0]), (0, 64, 9));
        assert!(q.tx_copy(1, &[0; 10]));
        assert!(!q.tx_copy(3, &[0; 10]));
        assert_eq!(q.tx_invalid, 1);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn the_host_path_in_memory() {
        let mut h = MemHost::new(2);
        assert!(h.deliver(1, &[7; 20]));
        assert_eq!(h.delivered, [(1, vec![7; 20])]);
        h.host_sends(0, &[8; 28]);
        let mut buf = [0u8; 64];
        assert_eq!(h.receive(0, &mut buf), Some(28));
        assert_eq!(h.receive(0, &mut buf), None);
        h.refuse = true;
        assert!(!h.deliver(0, &[1]));
    }
}
