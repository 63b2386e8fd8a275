//! NAT: choosing a connection's translated tuple (MASQUERADE, SNAT, DNAT,
//! REDIRECT) the way Linux's nf_nat_core does, and translating each packet
//! of a NATed connection (and ICMP errors about it) at the hooks where Linux
//! does.
//!
//! A connection's NAT lives entirely in its conntrack tuples: SNAT changes
//! the destination of the reply tuple, DNAT its source. A packet going in
//! direction `dir` is translated to look like the inverse of the other
//! direction's tuple.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conntrack::{status, Conntrack, Pending};
use crate::drop::DropReason;
use crate::flow::{mix, Addr, Dir, Tuple, IPPROTO_TCP, IPPROTO_UDP};
use crate::rule::{AddrRange, PortRange};
use crate::wire::ipv6::{Ipv6Info, L4v6};
use crate::wire::{self, Ipv4Info, L4};

/// Which end of a packet a hook translates: PREROUTING and OUTPUT change
/// destinations, POSTROUTING and INPUT sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manip {
    Src,
    Dst,
}

/// The status bit that says whether a packet in `dir` needs `manip`.
fn needed_bit(manip: Manip, dir: Dir) -> u16 {
    match (manip, dir) {
        (Manip::Src, Dir::Original) | (Manip::Dst, Dir::Reply) => status::SRC_NAT,
        (Manip::Dst, Dir::Original) | (Manip::Src, Dir::Reply) => status::DST_NAT,
    }
}

/// A tracked connection's NAT as one packet of it sees it: the
/// connection's tuples, its NAT status bits (`SRC_NAT`/`DST_NAT`, fixed at
/// confirm) and the direction the packet goes in. The same for every packet
/// of the connection in that direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnNat<A: Addr = Ipv4Addr> {
    pub orig: Tuple<A>,
    pub reply: Tuple<A>,
    pub status: u16,
    pub dir: Dir,
}

impl<A: Addr> ConnNat<A> {
    /// The same connection as a packet going the other way sees it (an
    /// answer the gateway generates: nf_ct_attach's reply direction).
    pub fn reversed(self) -> ConnNat<A> {
        ConnNat {
            dir: self.dir.flip(),
            ..self
        }
    }

    /// The tuple whose inverse the packet is translated to, if the
    /// connection's NAT calls for `manip` in its direction.
    fn other_tuple(&self, manip: Manip) -> Option<&Tuple<A>> {
        if self.status & needed_bit(manip, self.dir) == 0 {
            return None;
        }
        Some(match self.dir {
            Dir::Original => &self.reply,
            Dir::Reply => &self.orig,
        })
    }

    /// The address and port [`ConnNat::translate`] writes for `manip` into
    /// a TCP/UDP packet, if the connection's NAT changes that end.
    pub fn target(&self, manip: Manip) -> Option<(A, u16)> {
        let t = self.other_tuple(manip)?.invert();
        Some(match manip {
            Manip::Src => (t.src, t.sport),
            Manip::Dst => (t.dst, t.dport),
        })
    }
}

impl ConnNat<Ipv4Addr> {
    /// Translates the packet (in `frame`, parsed as `info`, which follows)
    /// for a hook doing `manip`. Returns whether it changed the packet.
    pub fn translate(&self, frame: &mut [u8], info: &mut Ipv4Info, manip: Manip) -> bool {
        let Some(other) = self.other_tuple(manip) else {
            return false;
        };
        let target = other.invert();
        match manip {
            Manip::Src => {
                wire::set_src(frame, info, target.src, target.sport);
                update_info(info, manip, target.src, target.sport);
            }
            Manip::Dst => {
                wire::set_dst(frame, info, target.dst, target.dport);
                update_info(info, manip, target.dst, target.dport);
            }
        }
        true
    }

    /// Translates an ICMP error RELATED to the connection (as Linux's
    /// nf_nat_icmp_reply_translation): the quoted datagram gets the
    /// opposite manip so it looks like what its sender sent, and the outer
    /// header gets the manip of the hook.
    pub fn translate_related(&self, frame: &mut [u8], info: &mut Ipv4Info, manip: Manip) -> bool {
        let Some(other) = self.other_tuple(manip) else {
            return false;
        };
        match manip {
            // The inner packet travelled the other way: undo the opposite manip on it.
            Manip::Src => wire::set_inner_dst(frame, info, other.dst, other.dport),
            Manip::Dst => wire::set_inner_src(frame, info, other.src, other.sport),
        }
        let target = other.invert();
        match manip {
            Manip::Src => {
                wire::set_src(frame, info, target.src, 0);
                info.src = target.src;
            }
            Manip::Dst => {
                wire::set_dst(frame, info, target.dst, 0);
                info.dst = target.dst;
            }
        }
        if let L4::Icmp(i) = &mut info.l4info {
            if let Some(inner) = &mut i.inner {
                match manip {
                    Manip::Src => {
                        inner.dst = other.dst;
                        inner.dport = other.dport;
                    }
                    Manip::Dst => {
                        inner.src = other.src;
                        inner.sport = other.sport;
                    }
                }
            }
        }
        true
    }
}

impl ConnNat<Ipv6Addr> {
    /// [`ConnNat::translate`] for an IPv6 packet (NAT66, as
    /// `nf_nat_ipv6_manip_pkt`).
    pub fn translate(&self, frame: &mut [u8], info: &mut Ipv6Info, manip: Manip) -> bool {
        let Some((addr, port)) = self.target(manip) else {
            return false;
        };
        match manip {
            Manip::Src => wire::ipv6::set_src(frame, info, addr, port),
            Manip::Dst => wire::ipv6::set_dst(frame, info, addr, port),
        }
        update_info6(info, manip, addr, port);
        true
    }

    /// [`ConnNat::translate_related`] for an ICMPv6 error
    /// (`nf_nat_icmpv6_reply_translation`).
    pub fn translate_related(&self, frame: &mut [u8], info: &mut Ipv6Info, manip: Manip) -> bool {
        let Some(other) = self.other_tuple(manip).copied() else {
            return false;
        };
        match manip {
            Manip::Src => wire::ipv6::set_inner_dst(frame, info, other.dst, other.dport),
            Manip::Dst => wire::ipv6::set_inner_src(frame, info, other.src, other.sport),
        }
        let target = other.invert();
        match manip {
            Manip::Src => {
                wire::ipv6::set_src(frame, info, target.src, 0);
                info.src = target.src;
            }
            Manip::Dst => {
                wire::ipv6::set_dst(frame, info, target.dst, 0);
                info.dst = target.dst;
            }
        }
        if let L4v6::Icmp(i) = &mut info.l4info {
            if let Some(inner) = &mut i.inner {
                match manip {
                    Manip::Src => {
                        inner.dst = other.dst;
                        inner.dport = other.dport;
                    }
                    Manip::Dst => {
                        inner.src = other.src;
                        inner.sport = other.sport;
                    }
                }
            }
        }
        true
    }
}

/// [`update_info`] for IPv6.
fn update_info6(info: &mut Ipv6Info, manip: Manip, addr: Ipv6Addr, port: u16) {
    match manip {
        Manip::Src => info.src = addr,
        Manip::Dst => info.dst = addr,
    }
    match &mut info.l4info {
        L4v6::Tcp(t) => match manip {
            Manip::Src => t.sport = port,
            Manip::Dst => t.dport = port,
        },
        L4v6::Udp { sport, dport } => match manip {
            Manip::Src => *sport = port,
            Manip::Dst => *dport = port,
        },
        L4v6::Icmp(i) if i.is_query => i.id = port,
        _ => {}
    }
}

/// Keeps a parse in step with a rewrite of the packet's source or destination.
fn update_info(info: &mut Ipv4Info, manip: Manip, addr: Ipv4Addr, port: u16) {
    match manip {
        Manip::Src => info.src = addr,
        Manip::Dst => info.dst = addr,
    }
    match &mut info.l4info {
        L4::Tcp(t) => match manip {
            Manip::Src => t.sport = port,
            Manip::Dst => t.dport = port,
        },
        L4::Udp { sport, dport } => match manip {
            Manip::Src => *sport = port,
            Manip::Dst => *dport = port,
        },
        L4::Icmp(i) if i.is_query => i.id = port,
        _ => {}
    }
}

/// A small, fast, per-worker random source (xorshift64*), for port offsets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// A NAT decision to apply to a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub manip: Manip,
    pub addrs: AddrRange,
    /// The ports (ids for ICMP) to choose from; `None` keeps the port if it
    /// can, else (for sources) picks one as Linux does.
    pub ports: Option<PortRange>,
    /// `--random-fully`: never try to keep the port first.
    pub random_fully: bool,
}

fn has_ports<A: Addr>(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_UDP) || proto == A::ICMP
}

/// The end of the reply tuple a manip changes: SNAT changes where replies
/// go (its destination), DNAT where they come from (its source).
fn set_end<A: Addr>(t: &mut Tuple<A>, manip: Manip, addr: A) {
    match manip {
        Manip::Src => t.dst = addr,
        Manip::Dst => t.src = addr,
    }
}

fn port_of<A: Addr>(t: &Tuple<A>, manip: Manip) -> u16 {
    match manip {
        Manip::Src => t.dport,
        Manip::Dst => t.sport,
    }
}

fn set_port<A: Addr>(t: &mut Tuple<A>, manip: Manip, port: u16) {
    if t.proto == A::ICMP {
        // The query id stands in both port fields.
        t.sport = port;
        t.dport = port;
        return;
    }
    match manip {
        Manip::Src => t.dport = port,
        Manip::Dst => t.sport = port,
    }
}

/// A worker's port searches: its random source, and the destinations
/// whose last search found no free port.
///
/// Linux's search (`nf_nat_l4proto_unique_tuple`) tries up to 128 ports,
/// then halving rounds: about 240 conntrack lookups before it gives up. Under
/// exhaustion every new connection to the same destination pays that again,
/// and a flood of SYNs then costs a worker ~10 µs each, more than the
/// receive ring can wait for. So a search that failed is remembered for
/// [`EXHAUSTED_FOR`]: searches for the same translated destination (protocol,
/// address chosen, remote address and port, port range) in that time try
/// [`EXHAUSTED_TRIES`] random ports, one round, and fail fast when those are
/// taken too. A port that frees up meanwhile is still found with the
/// probability a random probe has; after the window the full search runs
/// again. Fixed memory: `EXHAUSTED_SLOTS` (256) slots, a newer failure replaces
/// an older one in its slot.
#[derive(Clone, Debug)]
pub struct PortSearch {
    rng: Rng,
    /// (key, until): the hashed destination, and when its memory ends.
    exhausted: Box<[(u64, u64)]>,
}

/// How long a failed search is remembered (nanoseconds).
pub const EXHAUSTED_FOR: u64 = 10_000_000;
/// Ports tried while a destination is remembered as exhausted.
pub const EXHAUSTED_TRIES: u32 = 8;
const EXHAUSTED_SLOTS: usize = 256;

impl PortSearch {
    /// Its random numbers (for other random choices of the worker).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub fn new(seed: u64) -> PortSearch {
        PortSearch {
            rng: Rng::new(seed),
            exhausted: vec![(0, 0); EXHAUSTED_SLOTS].into_boxed_slice(),
        }
    }

    fn slot(key: u64) -> usize {
        (mix(key) as usize) % EXHAUSTED_SLOTS
    }

    /// How many tries the first round of a search for `key` gets.
    fn first_round(&self, key: u64, now: u64, size: u32) -> u32 {
        let (k, until) = self.exhausted[Self::slot(key)];
        if k == key && now < until {
            size.min(EXHAUSTED_TRIES)
        } else {
            size.min(128)
        }
    }

    fn failed(&mut self, key: u64, now: u64) {
        self.exhausted[Self::slot(key)] = (key, now.saturating_add(EXHAUSTED_FOR));
    }
}

/// Chooses the translated tuple of a new connection, unique in `ct`
/// (Linux's get_unique_tuple): the address from the range by a hash of the
/// connection's addresses; the port kept when it is in range and free
/// (unless `--random-fully`), else searched from a random offset in the
/// range, at most 128 tries and then halving rounds, as the kernel does
/// (fewer after a recent failure: see [`PortSearch`]).
pub fn bind(
    ct: &Conntrack,
    p: &mut Pending,
    b: &Binding,
    search: &mut PortSearch,
    now: u64,
) -> Result<(), DropReason> {
    let lo = u32::from(b.addrs.lo);
    let hi = u32::from(b.addrs.hi).max(lo);
    let span = u64::from(hi - lo) + 1;
    let key = (u64::from(u32::from(p.orig.src)) << 32) | u64::from(u32::from(p.orig.dst));
    let addr = Ipv4Addr::from(lo + (mix(key) % span) as u32);
    bind_to(ct, p, addr, b, search, now)
}

/// [`bind`] with the address already chosen from the range (`b.addrs` is
/// not read): the port search, for either family.
pub fn bind_to<A: Addr>(
    ct: &Conntrack<A>,
    p: &mut Pending<A>,
    addr: A,
    b: &Binding,
    search: &mut PortSearch,
    now: u64,
) -> Result<(), DropReason> {
    let mut r = p.reply;
    set_end(&mut r, b.manip, addr);
    let proto = r.proto;
    let commit = |p: &mut Pending<A>, r: Tuple<A>| {
        p.reply = r;
        p.status |= match b.manip {
            Manip::Src => status::SRC_NAT,
            Manip::Dst => status::DST_NAT,
        };
    };
    if !has_ports::<A>(proto) {
        commit(p, r);
        return Ok(());
    }
    let cur = port_of(&r, b.manip);
    if !b.random_fully && b.ports.is_none_or(|pr| pr.contains(cur)) && !ct.tuple_in_use(&r) {
        commit(p, r);
        return Ok(());
    }
    if b.manip == Manip::Dst && b.ports.is_none() {
        // A destination's port is never changed unasked; confirm decides on a clash.
        commit(p, r);
        return Ok(());
    }
    let (min, size): (u32, u32) = match b.ports {
        Some(pr) => (u32::from(pr.lo), u32::from(pr.hi.max(pr.lo) - pr.lo) + 1),
        None if proto == A::ICMP => (0, 65536),
        None if cur < 512 => (1, 511),
        None if cur < 1024 => (600, 424),
        None => (1024, 65536 - 1024),
    };
    // The destination as the search sees it: the reply tuple without the
    // port being chosen, and the range.
    let key = {
        let mut k = r;
        set_port(&mut k, b.manip, 0);
        mix(k.hash64() ^ (u64::from(min) << 32 | u64::from(size)))
    };
    let mut attempts = search.first_round(key, now, size);
    let mut off = if b.manip == Manip::Src {
        search.rng.next_u32()
    } else {
        0
    };
    loop {
        for i in 0..attempts {
            let port = min + off.wrapping_add(i) % size;
            set_port(&mut r, b.manip, port as u16);
            if !ct.tuple_in_use(&r) {
                commit(p, r);
                return Ok(());
            }
        }
        if attempts >= size || attempts < 16 {
            search.failed(key, now);
            return Err(DropReason::NatNoFreePort);
        }
        attempts /= 2;
        off = search.rng.next_u32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_spreads() {
        let mut r = Rng::new(1);
        let a: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }

    /// NAT66: the same port search over the IPv6 table; a source port
    /// kept while free, another one found when the translated tuple is
    /// taken.
    #[test]
    fn masquerade_over_the_ipv6_table() {
        use crate::conntrack::{ConntrackConfig, PacketMeta, Track};
        use std::net::Ipv6Addr;
        let v4 = Conntrack::new(ConntrackConfig {
            max_entries: 1024,
            shards: 4,
            ..ConntrackConfig::for_memory(8 << 30)
        });
        let ct = Conntrack::new6(&v4);
        let wan = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1);
        let b = Binding {
            manip: Manip::Src,
            addrs: AddrRange {
                lo: Ipv4Addr::UNSPECIFIED,
                hi: Ipv4Addr::UNSPECIFIED,
            },
            ports: None,
            random_fully: false,
        };
        let mut search = PortSearch::new(7);
        let mut bound = Vec::new();
        for host in [2u16, 3] {
            let t = Tuple {
                src: Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, host),
                dst: Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x254),
                sport: 40000,
                dport: 53,
                proto: IPPROTO_UDP,
            };
            let pkt = PacketMeta {
                tuple: t,
                len: 60,
                tcp: None,
                icmp: None,
            };
            let Track::New(mut p) = ct.track(1, &pkt) else {
                panic!("new connection expected");
            };
            bind_to(&ct, &mut p, wan, &b, &mut search, 1).expect("bound");
            assert_eq!(p.reply.dst, wan);
            assert_ne!(p.status & status::SRC_NAT, 0);
            ct.confirm(1, &p).expect("confirm");
            bound.push(p.reply.dport);
        }
        // The first keeps its port; the second, same port from another
        // host, gets another one (above 1023, as the port was).
        assert_eq!(bound[0], 40000);
        assert!(bound[1] != 40000 && bound[1] >= 1024, "{bound:?}");
    }

    #[test]
    fn status_bit_per_hook_and_direction() {
        assert_eq!(needed_bit(Manip::Src, Dir::Original), status::SRC_NAT);
        assert_eq!(needed_bit(Manip::Dst, Dir::Reply), status::SRC_NAT);
        assert_eq!(needed_bit(Manip::Dst, Dir::Original), status::DST_NAT);
        assert_eq!(needed_bit(Manip::Src, Dir::Reply), status::DST_NAT);
    }
}
