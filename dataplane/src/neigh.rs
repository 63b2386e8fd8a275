//! Neighbours: the address-to-MAC tables (ARP for IPv4, neighbour discovery
//! for IPv6: one table per family), shared by all workers, and each
//! worker's small queue of packets waiting for a next hop to resolve.
//!
//! Reads are on the packet path, writes are rare (an ARP reply, a request
//! from a new host), so the table is an immutable map behind an atomic
//! pointer: a reader loads it without locking, a writer copies, changes and
//! swaps it (under a writers-only lock).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::HashMap;

use crate::drop::DropReason;
use crate::flow::Addr;

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

/// The MAC of IPv4 multicast group `group` (RFC 1112 6.4, `ip_eth_mc_map`):
/// 01:00:5e and the group's low 23 bits.
pub fn ipv4_multicast_mac(group: std::net::Ipv4Addr) -> Mac {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// A neighbour table: (interface, address) -> MAC.
pub type NeighMap<A = Ipv4Addr> = HashMap<(u8, A), Mac>;

/// The shared neighbour table.
#[derive(Debug)]
pub struct Neighbours<A: Addr = Ipv4Addr> {
    map: ArcSwap<NeighMap<A>>,
    writers: Mutex<()>,
}

impl<A: Addr> Default for Neighbours<A> {
    fn default() -> Neighbours<A> {
        Neighbours {
            map: ArcSwap::default(),
            writers: Mutex::new(()),
        }
    }
}

impl<A: Addr> Neighbours<A> {
    #[inline]
    pub fn get(&self, iface: u8, addr: A) -> Option<Mac> {
        self.map.load().get(&(iface, addr)).copied()
    }

    /// Learns or refreshes a neighbour; a no-op (no copy) when nothing changes.
    pub fn learn(&self, iface: u8, addr: A, mac: Mac) {
        if self.get(iface, addr) == Some(mac) {
            return;
        }
        let _w = self.writers.lock();
        let mut next = HashMap::clone(&self.map.load());
        next.insert((iface, addr), mac);
        self.map.store(Arc::new(next));
    }

    /// The current table, to read without touching the shared pointer
    /// again (a worker takes one per batch).
    pub fn snapshot(&self) -> Arc<NeighMap<A>> {
        self.map.load_full()
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All entries (control plane).
    pub fn entries(&self) -> Vec<(u8, A, Mac)> {
        self.map
            .load()
            .iter()
            .map(|(&(i, a), &m)| (i, a, m))
            .collect()
    }
}

/// A packet waiting for its next hop's MAC.
struct Held<A> {
    iface: u8,
    next_hop: A,
    since: u64,
    asked: u64,
    len: usize,
    buf: Box<[u8]>,
}

/// A worker's queue of packets held while their next hop resolves: a few
/// preallocated slots; when full, new packets are dropped (counted).
pub struct HoldQueue<A: Addr = Ipv4Addr> {
    slots: Vec<Held<A>>,
    used: Vec<bool>,
}

/// How long a packet waits for ARP before it is dropped (Linux retries
/// 3 times a second apart).
pub const HOLD_NS: u64 = 3_000_000_000;
/// How often an unanswered ARP request is repeated.
pub const ARP_RETRY_NS: u64 = 1_000_000_000;

impl<A: Addr> HoldQueue<A> {
    pub fn new(slots: usize, frame_size: usize) -> HoldQueue<A> {
        HoldQueue {
            slots: (0..slots)
                .map(|_| Held {
                    iface: 0,
                    next_hop: A::UNSPECIFIED,
                    since: 0,
                    asked: 0,
                    len: 0,
                    buf: vec![0u8; frame_size].into_boxed_slice(),
                })
                .collect(),
            used: vec![false; slots],
        }
    }

    /// Copies a frame in; whether an ARP request should be sent now (the
    /// first packet held for this next hop).
    pub fn hold(
        &mut self,
        now: u64,
        iface: u8,
        next_hop: A,
        frame: &[u8],
    ) -> Result<bool, DropReason> {
        let first = !self
            .slots
            .iter()
            .zip(&self.used)
            .any(|(h, &u)| u && h.iface == iface && h.next_hop == next_hop);
        let Some(i) = self.used.iter().position(|u| !u) else {
            return Err(DropReason::NeighQueueFull);
        };
        let slot = &mut self.slots[i];
        if frame.len() > slot.buf.len() {
            return Err(DropReason::NeighQueueFull);
        }
        slot.buf[..frame.len()].copy_from_slice(frame);
        slot.len = frame.len();
        slot.iface = iface;
        slot.next_hop = next_hop;
        slot.since = now;
        slot.asked = now;
        self.used[i] = true;
        Ok(first)
    }

    pub fn is_empty(&self) -> bool {
        !self.used.iter().any(|u| *u)
    }

    /// Sends what has resolved (`send(iface, mac, frame)`), drops what waited
    /// too long (`dropped` per packet), and asks again (`ask(iface,
    /// next_hop)`) for next hops still unresolved after [`ARP_RETRY_NS`].
    pub fn service(
        &mut self,
        now: u64,
        neigh: &Neighbours<A>,
        mut send: impl FnMut(u8, Mac, &mut [u8]),
        mut dropped: impl FnMut(),
        mut ask: impl FnMut(u8, A),
    ) {
        let mut asked: Option<(u8, A)> = None;
        for (slot, used) in self.slots.iter_mut().zip(self.used.iter_mut()) {
            if !*used {
                continue;
            }
            if let Some(mac) = neigh.get(slot.iface, slot.next_hop) {
                send(slot.iface, mac, &mut slot.buf[..slot.len]);
                *used = false;
            } else if now.saturating_sub(slot.since) >= HOLD_NS {
                dropped();
                *used = false;
            } else if now.saturating_sub(slot.asked) >= ARP_RETRY_NS {
                if asked != Some((slot.iface, slot.next_hop)) {
                    ask(slot.iface, slot.next_hop);
                    asked = Some((slot.iface, slot.next_hop));
                }
                slot.asked = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_macs() {
        use std::net::Ipv4Addr;
        // VRRP's group, and one whose 24th bit is not mapped (RFC 1112 6.4).
        assert_eq!(
            ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 18)),
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]
        );
        assert_eq!(
            ipv4_multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
    }

    #[test]
    fn learn_get_and_hold_until_resolved() {
        let n = Neighbours::default();
        let hop = Ipv4Addr::new(203, 0, 113, 254);
        assert_eq!(n.get(1, hop), None);
        let mut q = HoldQueue::new(2, 64);
        assert_eq!(q.hold(0, 1, hop, &[1, 2, 3]), Ok(true));
        assert_eq!(q.hold(0, 1, hop, &[4, 5]), Ok(false));
        assert_eq!(q.hold(0, 1, hop, &[6]), Err(DropReason::NeighQueueFull));
        let mut sent = Vec::new();
        q.service(10, &n, |_, _, f| sent.push(f.to_vec()), || {}, |_, _| {});
        assert!(sent.is_empty());
        n.learn(1, hop, [2, 0, 0, 0, 0, 9]);
        assert_eq!(n.get(1, hop), Some([2, 0, 0, 0, 0, 9]));
        q.service(20, &n, |_, _, f| sent.push(f.to_vec()), || {}, |_, _| {});
        assert_eq!(sent, vec![vec![1, 2, 3], vec![4, 5]]);
        assert!(q.is_empty());
    }

    #[test]
    fn unresolved_packets_are_retried_then_dropped() {
        let n = Neighbours::default();
        let hop = Ipv4Addr::new(192, 168, 10, 99);
        let mut q = HoldQueue::new(4, 64);
        assert_eq!(q.hold(0, 0, hop, &[1]), Ok(true));
        let (mut asks, mut drops) = (0, 0);
        q.service(
            ARP_RETRY_NS,
            &n,
            |_, _, _| {},
            || drops += 1,
            |_, _| asks += 1,
        );
        assert_eq!((asks, drops), (1, 0));
        q.service(HOLD_NS, &n, |_, _, _| {}, || drops += 1, |_, _| asks += 1);
        assert_eq!(drops, 1);
        assert!(q.is_empty());
    }

    #[test]
    fn the_ipv6_table_is_its_own() {
        use std::net::Ipv6Addr;
        let n: Neighbours<Ipv6Addr> = Neighbours::default();
        let v4: Neighbours = Neighbours::default();
        let hop = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let mut q: HoldQueue<Ipv6Addr> = HoldQueue::new(2, 64);
        assert_eq!(q.hold(0, 1, hop, &[7]), Ok(true));
        n.learn(1, hop, [2, 0, 0, 0, 0, 1]);
        assert!(v4.is_empty());
        let mut sent = Vec::new();
        q.service(
            1,
            &n,
            |i, m, f| sent.push((i, m, f.to_vec())),
            || {},
            |_, _| {},
        );
        assert_eq!(sent, vec![(1, [2, 0, 0, 0, 0, 1], vec![7])]);
    }
}
