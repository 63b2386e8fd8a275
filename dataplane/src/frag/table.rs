//! The reassembly table: queues of fragments by (source, destination,
//! protocol, id), shared by all workers, with Linux's rules
//! (`ip_frag_queue`, `inet_frag_queue_insert`, `ip_frag_reasm`,
//! `ip_expire`, `inet_frag_find`).
//!
//! Sharded by a keyed hash of the key, one spin lock per shard, held for
//! one fragment's insertion (and the copy of a completed datagram out);
//! never two at once. A shard's storage is allocated when the table is
//! built: its queues, a key index with room for all of them, and slots of
//! [`FRAME_SIZE`] bytes for fragments' data, enough for twice the shard's
//! share of `high_thresh` and for at least one 65,535-byte datagram.
//!
//! Memory is accounted in one counter for the table, as Linux's
//! `frag_mem_limit`: a queue is charged [`QUEUE_SIZE`] and each fragment
//! it holds [`FRAG_TRUESIZE`] (what a received frame's buffer costs, as
//! Linux charges an skb's truesize), so that `high_thresh` holds about as
//! many queues as Linux's does. When the counter is above `high_thresh`,
//! every fragment is dropped (`frag_mem_full`) until queues complete or
//! expire: Linux evicts nothing (since 4.17, against fragment floods).
//!
//! Every fragment dropped is counted with its reason in the worker's drop
//! counters; Linux's `ReasmFails` is `reasm_fails` (once per queue given up
//! or fragment refused for memory).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};
use spin::mutex::SpinMutex;

use super::{FragConfig, Piece, MAX_DATAGRAM};
use crate::drop::DropReason;
use crate::pipeline::FRAME_SIZE;
use crate::stats::WorkerStats;
use crate::wire::checksum;

/// The table's shards.
pub const SHARDS: usize = 16;
/// What a queued fragment is charged: its buffer and the socket buffer's
/// bookkeeping (Linux charges `skb->truesize`: a 2 KiB buffer plus
/// `sk_buff` and `skb_shared_info` for a frame of a 1,500-byte link), so
/// that 4 MiB holds about 1,670 single-fragment queues, as Linux's does.
/// The same for a fragment of a jumbo link (Linux charges those more).
pub const FRAG_TRUESIZE: usize = 2048 + 272;
/// What a queue is charged (Linux: `sizeof(struct ipq)`).
pub const QUEUE_SIZE: usize = 192;
/// A fragment's data slot: any frame's (jumbo ones included). The slots
/// are allocated zeroed at start and become resident as they are used.
const SLOT: usize = FRAME_SIZE;
/// The fewest fragment slots a shard has: a 65,535-byte datagram in
/// 1,480-byte fragments is 45.
const MIN_SLOTS: usize = 64;
const NONE: u32 = u32::MAX;

const IP_MF: u16 = 0x2000;
const IP_DF: u16 = 0x4000;
const IP_OFFSET: u16 = 0x1fff;

/// What identifies a datagram's fragments (Linux's `frag_v4_compare_key`
/// and `frag_v6_compare_key` without the defrag user and VRF: one of each
/// here). IPv4 addresses take the first 4 bytes; IPv6 has no protocol in
/// its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub ipv6: bool,
}

/// The longest header kept for a datagram: an IPv4 header with options,
/// or an IPv6 header with the extension headers before its fragment
/// header.
pub const MAX_HDR: usize = 128;

/// An IPv4 address as a key's 16 bytes.
fn key4(a: [u8; 4]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&a);
    k
}

/// A received fragment, read off its IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    pub key: FragKey,
    /// Its IPv4 header, options included.
    pub header: &'a [u8],
    /// Where its data goes in the datagram (bytes).
    pub offset: u32,
    /// More fragments follow (MF).
    pub more: bool,
    pub df: bool,
    /// The DSCP/ECN byte.
    pub tos: u8,
    /// Its data: the packet after the header, up to the total length.
    pub data: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Reads the fragment in an IPv4 packet `ip` whose header has been
    /// validated (version, header length, checksum, total length within
    /// `ip`); None if it does not hold together.
    pub fn parse(ip: &'a [u8]) -> Option<Fragment<'a>> {
        let ihl = usize::from(*ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let header = ip.get(..ihl)?;
        let data = ip.get(ihl..total)?;
        let frag = u16::from_be_bytes([header[6], header[7]]);
        let addr = |at: usize| key4([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        Some(Fragment {
            key: FragKey {
                src: addr(12),
                dst: addr(16),
                id: u32::from(u16::from_be_bytes([header[4], header[5]])),
                proto: header[9],
                ipv6: false,
            },
            header,
            offset: u32::from(frag & IP_OFFSET) * 8,
            more: frag & IP_MF != 0,
            df: frag & IP_DF != 0,
            tos: header[1],
            data,
        })
    }
}

impl<'a> Fragment<'a> {
    /// Reads the fragment of the IPv6 frame `frame` (`info` its parse,
    /// which found a fragment header): its unfragmentable part (the IPv6
    /// header and the extension headers before the fragment header) is
    /// copied to `hdr`, with the next header that named the fragment header
    /// naming what it carries, as the reassembled datagram has it
    /// (`ip6_frag_reasm`). None if it does not hold together: no fragment
    /// header, a part longer than [`MAX_HDR`], a fragment that is not the
    /// last with a length not a multiple of 8 (RFC 8200 4.5).
    pub fn parse6(
        frame: &'a [u8],
        info: &crate::wire::ipv6::Ipv6Info,
        hdr: &'a mut [u8; MAX_HDR],
    ) -> Option<Fragment<'a>> {
        let fh = info.ext.frag?;
        let unfrag = frame.get(info.l3..fh.at)?;
        let end = info.l3 + 40 + usize::from(info.payload_len);
        let data = frame.get(fh.at + 8..end)?;
        if unfrag.len() > MAX_HDR || (fh.more && data.len() % 8 != 0) {
            return None;
        }
        // The next-header byte that names the fragment header: the IPv6
        // header's, or that of the extension header right before it.
        let e = &info.ext;
        let before = [e.hop_by_hop, e.dest_opts, e.routing.map(|r| r.at)]
            .into_iter()
            .flatten()
            .filter(|&at| at < fh.at)
            .max();
        let nh_at = before.map_or(6, |at| at - info.l3);
        let hdr = &mut hdr[..unfrag.len()];
        hdr.copy_from_slice(unfrag);
        *hdr.get_mut(nh_at)? = fh.next_header;
        let mut src = [0u8; 16];
        src.copy_from_slice(hdr.get(8..24)?);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(hdr.get(24..40)?);
        let word = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        Some(Fragment {
            key: FragKey {
                src,
                dst,
                id: fh.id,
                proto: 0,
                ipv6: true,
            },
            header: hdr,
            offset: u32::from(fh.offset) * 8,
            more: fh.more,
            df: false,
            tos: (word >> 20) as u8,
            data,
        })
    }
}

/// What became of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Queued: its datagram is not complete yet.
    Queued,
    /// Its datagram is complete: `len` bytes (the IPv4 datagram) were
    /// written to the caller's buffer, its fragments to the caller's
    /// pieces.
    Complete { len: usize, max_size: u16 },
    /// Dropped (counted), for this reason.
    Dropped(DropReason),
}

/// One fragment held: where its data lies in its datagram, and the run of
/// contiguous fragments it belongs to (`inet_frag_queue_insert`'s runs).
#[derive(Clone, Copy, Debug)]
struct Frag {
    offset: u32,
    len: u16,
    /// The next fragment by offset (`NONE`: the last).
    next: u32,
    /// Whether it begins a run, and if so where the run ends.
    run_head: bool,
    run_end: u32,
}

/// A datagram being reassembled (Linux's `struct ipq`).
#[derive(Clone, Copy, Debug)]
struct Queue {
    key: FragKey,
    /// When it is given up (`ipfrag_time` after it was created: Linux's
    /// timer is not pushed back by later fragments).
    expires: u64,
    /// The end of the data so far; the datagram's data length once the
    /// last fragment is in.
    len: u32,
    /// Bytes of data received.
    meat: u32,
    first_in: bool,
    last_in: bool,
    /// Fragments by offset: the first, and the one with the highest end
    /// (Linux's `fragments_tail`) with the head of its run.
    head: u32,
    tail: u32,
    tail_run: u32,
    nfrags: u32,
    max_size: u16,
    max_df_size: u16,
    /// The ECN codepoints seen (`IPFRAG_ECN_*` bits).
    ecn: u8,
    /// The first fragment's header.
    hlen: u8,
    hdr: [u8; MAX_HDR],
}

impl Queue {
    fn new(key: FragKey, expires: u64) -> Queue {
        Queue {
            key,
            expires,
            len: 0,
            meat: 0,
            first_in: false,
            last_in: false,
            head: NONE,
            tail: NONE,
            tail_run: NONE,
            nfrags: 0,
            max_size: 0,
            max_df_size: 0,
            ecn: 0,
            hlen: 0,
            hdr: [0; MAX_HDR],
        }
    }
}

/// `ip_frag_ecn_table`: the ECN of the reassembled datagram from the
/// codepoints of its fragments; 0xff: an invalid mix, dropped.
const ECN_TABLE: [u8; 16] = {
    let mut t = [0u8; 16];
    // CE with ECT(0) and/or ECT(1): CE.
    t[0b1100] = 3;
    t[0b1010] = 3;
    t[0b1110] = 3;
    // Not-ECT mixed with any ECN-capable codepoint: invalid.
    let mut i = 0;
    while i < 16 {
        if i & 1 != 0 && i & 0b1110 != 0 {
            t[i] = 0xff;
        }
        i += 1;
    }
    t
};

/// Where a fragment goes among the runs (`inet_frag_queue_insert`).
enum Place {
    /// Appended to the tail's run.
    AppendTail,
    /// A run of its own after the tail.
    NewTail,
    /// A run of its own after this fragment (`NONE`: first).
    After(u32),
    Dup,
    Overlap,
}

/// One shard: its queues, their key index, and the fragment slots.
struct ShardInner {
    index: HashMap<FragKey, u32>,
    queues: Vec<Queue>,
    live: Vec<bool>,
    free_queues: Vec<u32>,
    frags: Vec<Frag>,
    free_frags: Vec<u32>,
    data: Box<[u8]>,
    /// No live queue expires before this.
    next_expiry: u64,
}

impl ShardInner {
    fn new(slots: usize) -> ShardInner {
        let frag = Frag {
            offset: 0,
            len: 0,
            next: NONE,
            run_head: false,
            run_end: 0,
        };
        let key = FragKey {
            src: [0; 16],
            dst: [0; 16],
            id: 0,
            proto: 0,
            ipv6: false,
        };
        ShardInner {
            // Room for twice the queues there can be: a table at most half
            // full is rehashed in place when deletions pile up, never grown
            // (no allocation on the packet path).
            index: HashMap::with_capacity(2 * slots),
            queues: vec![Queue::new(key, 0); slots],
            live: vec![false; slots],
            free_queues: (0..slots as u32).rev().collect(),
            frags: vec![frag; slots],
            free_frags: (0..slots as u32).rev().collect(),
            data: vec![0u8; slots * SLOT].into_boxed_slice(),
            next_expiry: u64::MAX,
        }
    }

    /// Frees queue `qi` and its fragments (uncharged from its family's
    /// counter in `mems`); how many fragments it held.
    fn kill(&mut self, qi: u32, mems: &[AtomicUsize; 2]) -> u64 {
        let q = &self.queues[qi as usize];
        let mem = &mems[usize::from(q.key.ipv6)];
        let (n, mut f) = (q.nfrags, q.head);
        self.index.remove(&q.key);
        while f != NONE {
            self.free_frags.push(f);
            f = self.frags[f as usize].next;
        }
        self.live[qi as usize] = false;
        self.free_queues.push(qi);
        // Relaxed: an independent statistic compared against a threshold,
        // publishing nothing else (as Linux's percpu `frag_mem_limit`).
        mem.fetch_sub(QUEUE_SIZE + n as usize * FRAG_TRUESIZE, Ordering::Relaxed);
        u64::from(n)
    }

    /// Where a fragment `[offset, end)` goes in queue `q`.
    fn place(&self, q: &Queue, offset: u32, end: u32) -> Place {
        if q.tail == NONE {
            return Place::NewTail;
        }
        let last = &self.frags[q.tail as usize];
        let last_end = last.offset + u32::from(last.len);
        if last_end < end {
            // The common case: it goes at the end.
            if offset < last_end {
                return Place::Overlap;
            }
            return if offset == last_end {
                Place::AppendTail
            } else {
                Place::NewTail
            };
        }
        // Among the runs (Linux searches a tree of them; runs are disjoint
        // and in order here).
        let (mut prev, mut f) = (NONE, q.head);
        while f != NONE {
            let fr = &self.frags[f as usize];
            if fr.run_head {
                let (start, run_end) = (fr.offset, fr.run_end);
                if end <= start {
                    break;
                } else if offset >= run_end {
                    // Right of this run.
                } else if offset >= start && end <= run_end {
                    return Place::Dup;
                } else {
                    return Place::Overlap;
                }
            }
            prev = f;
            f = fr.next;
        }
        Place::After(prev)
    }
}

/// The reassembly queues all workers share (see the module).
pub struct Reassembly {
    cfg: FragConfig,
    shards: Box<[SpinMutex<ShardInner>]>,
    hasher: DefaultHashBuilder,
    /// Bytes charged for queues and fragments (Linux's `frag_mem_limit`),
    /// IPv4's then IPv6's (indexed by `FragKey::ipv6`). Relaxed
    /// everywhere: see `ShardInner::kill`.
    mem: [AtomicUsize; 2],
    slots: usize,
}

impl Reassembly {
    pub fn new(cfg: FragConfig) -> Reassembly {
        let limit = cfg.high_thresh.min(FragConfig::MAX_HIGH_THRESH)
            + cfg.high_thresh6.min(FragConfig::MAX_HIGH_THRESH);
        let share = limit / SHARDS;
        let slots = (2 * share.div_ceil(FRAG_TRUESIZE)).max(MIN_SLOTS);
        Reassembly {
            cfg,
            shards: (0..SHARDS)
                .map(|_| SpinMutex::new(ShardInner::new(slots)))
                .collect(),
            hasher: DefaultHashBuilder::default(),
            mem: [AtomicUsize::new(0), AtomicUsize::new(0)],
            slots,
        }
    }

    pub fn config(&self) -> FragConfig {
        self.cfg
    }

    /// Bytes charged now for queued fragments and their queues, both
    /// families.
    pub fn mem(&self) -> usize {
        self.mem_of(false) + self.mem_of(true)
    }

    /// Bytes charged now for one family's fragments and queues (IPv6's if
    /// `ipv6`).
    pub fn mem_of(&self, ipv6: bool) -> usize {
        self.mem[usize::from(ipv6)].load(Ordering::Relaxed)
    }

    /// The most fragments one datagram can be reassembled from (a shard's
    /// slots).
    pub fn max_fragments(&self) -> usize {
        self.slots
    }

    /// The bytes of storage allocated for the table.
    pub fn allocated(&self) -> usize {
        SHARDS * self.slots * (SLOT + std::mem::size_of::<Frag>() + std::mem::size_of::<Queue>())
    }

    /// Queues live now (for tests and listings; takes every shard's lock
    /// in turn).
    pub fn queues(&self) -> usize {
        self.shards.iter().map(|s| s.lock().index.len()).sum()
    }

    /// The key indexes' capacities (tests: they never grow).
    #[cfg(test)]
    pub(super) fn index_capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().index.capacity()).sum()
    }

    fn shard_of(&self, key: &FragKey) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Takes fragment `f` at `now` (`ip_defrag` -> `ip_frag_queue`). When
    /// it completes its datagram, the datagram is written to `out` (the
    /// reassembled IPv4 header, then the data) and its fragments to
    /// `pieces` (cleared first), and the queue is freed. Counts in `stats`:
    /// `reasm_reqds`, `reasm_oks`, `reasm_fails`, and every fragment
    /// dropped under its reason.
    pub fn insert(
        &self,
        now: u64,
        f: &Fragment<'_>,
        out: &mut [u8],
        pieces: &mut Vec<Piece>,
        stats: &mut WorkerStats,
    ) -> Insert {
        stats.reasm_reqds += 1;
        // Each family against its own limit (Linux: `ipv4.fqdir` with
        // `ipfrag_high_thresh`, `ipv6.fqdir` with `ip6frag_high_thresh`).
        let ipv6 = f.key.ipv6;
        let thresh = if ipv6 {
            self.cfg.high_thresh6
        } else {
            self.cfg.high_thresh
        };
        if thresh == 0 || self.mem_of(ipv6) > thresh {
            // `inet_frag_find`: no queue while memory is over the limit.
            return fail(stats, DropReason::FragMemFull, 1);
        }
        if f.data.len() > SLOT || f.header.len() > MAX_HDR {
            return fail(stats, DropReason::FragMalformed, 1);
        }
        let mut g = self.shards[self.shard_of(&f.key)].lock();
        let g = &mut *g;
        let qi = match g.index.get(&f.key).copied() {
            Some(qi) if now < g.queues[qi as usize].expires => qi,
            found => {
                if let Some(qi) = found {
                    // Expired, not swept yet: `ip_expire` would have run.
                    let n = g.kill(qi, &self.mem);
                    count(stats, DropReason::FragTimeout, n);
                    stats.reasm_fails += 1;
                }
                let Some(qi) = g.free_queues.pop() else {
                    return fail(stats, DropReason::FragTableFull, 1);
                };
                // `ipfrag_time` or `ip6frag_time` (`ip_frag_queue`'s
                // and `ip6_frag_queue`'s fqdir timeout).
                let expires = now.saturating_add(self.cfg.time_of(ipv6));
                g.queues[qi as usize] = Queue::new(f.key, expires);
                g.live[qi as usize] = true;
                g.index.insert(f.key, qi);
                g.next_expiry = g.next_expiry.min(expires);
                self.mem[usize::from(ipv6)].fetch_add(QUEUE_SIZE, Ordering::Relaxed);
                qi
            }
        };
        let mut q = g.queues[qi as usize];
        let r = self.queue(g, &mut q, f, out, pieces, stats);
        match r {
            Ok(Insert::Complete { .. }) | Err(_) => {
                g.queues[qi as usize] = q;
                let n = g.kill(qi, &self.mem);
                if let Err(reason) = r {
                    // `ip_frag_queue`'s discard_qp, `ip_frag_reasm`'s
                    // out_fail: the queue and this fragment.
                    count(stats, reason, n + 1);
                    stats.reasm_fails += 1;
                    return Insert::Dropped(reason);
                }
                stats.reasm_oks += 1;
            }
            Ok(Insert::Dropped(reason)) => count(stats, reason, 1),
            Ok(Insert::Queued) => g.queues[qi as usize] = q,
        }
        r.unwrap_or(Insert::Queued)
    }

    /// `ip_frag_queue` for queue `q` (a copy, written back by the caller);
    /// `Err`: the queue is given up, with this fragment.
    fn queue(
        &self,
        g: &mut ShardInner,
        q: &mut Queue,
        f: &Fragment<'_>,
        out: &mut [u8],
        pieces: &mut Vec<Piece>,
        stats: &mut WorkerStats,
    ) -> Result<Insert, DropReason> {
        let offset = f.offset;
        let mut end = offset + f.data.len() as u32;
        if !f.more {
            // The last fragment: nothing may lie beyond it, nor may
            // another last fragment disagree.
            if end < q.len || (q.last_in && end != q.len) {
                return Err(DropReason::FragMalformed);
            }
            q.last_in = true;
            q.len = end;
        } else {
            // Data beyond a multiple of 8 in a fragment that is not the
            // last is trimmed.
            end &= !7;
            if end > q.len {
                if q.last_in {
                    return Err(DropReason::FragMalformed);
                }
                q.len = end;
            }
        }
        if end <= offset {
            return Err(DropReason::FragMalformed);
        }
        let len = (end - offset) as u16;
        let place = g.place(q, offset, end);
        let at = match place {
            Place::Dup => return Ok(Insert::Dropped(DropReason::FragDuplicate)),
            Place::Overlap => return Err(DropReason::FragOverlap),
            _ => match g.free_frags.pop() {
                Some(s) => s,
                None => {
                    stats.reasm_fails += 1;
                    return Ok(Insert::Dropped(DropReason::FragTableFull));
                }
            },
        };
        let slot = &mut g.data[at as usize * SLOT..][..usize::from(len)];
        slot.copy_from_slice(&f.data[..usize::from(len)]);
        g.frags[at as usize] = Frag {
            offset,
            len,
            next: NONE,
            run_head: true,
            run_end: end,
        };
        match place {
            Place::AppendTail => {
                g.frags[at as usize].run_head = false;
                g.frags[q.tail_run as usize].run_end = end;
                g.frags[q.tail as usize].next = at;
                q.tail = at;
            }
            Place::NewTail => {
                if q.tail == NONE {
                    q.head = at;
                } else {
                    g.frags[q.tail as usize].next = at;
                }
                q.tail = at;
                q.tail_run = at;
            }
            Place::After(prev) => {
                if prev == NONE {
                    g.frags[at as usize].next = q.head;
                    q.head = at;
                } else {
                    g.frags[at as usize].next = g.frags[prev as usize].next;
                    g.frags[prev as usize].next = at;
                }
            }
            Place::Dup | Place::Overlap => {}
        }
        q.nfrags += 1;
        q.meat += u32::from(len);
        q.ecn |= 1 << (f.tos & 3);
        self.mem[usize::from(q.key.ipv6)].fetch_add(FRAG_TRUESIZE, Ordering::Relaxed);
        if offset == 0 {
            q.first_in = true;
            q.hlen = f.header.len() as u8;
            q.hdr[..f.header.len()].copy_from_slice(f.header);
        }
        let size = (usize::from(len) + f.header.len()) as u16;
        q.max_size = q.max_size.max(size);
        if f.df {
            q.max_df_size = q.max_df_size.max(size);
        }
        if q.first_in && q.last_in && q.meat == q.len {
            return Self::reassemble(g, q, out, pieces);
        }
        Ok(Insert::Queued)
    }

    /// `ip_frag_reasm`: the datagram into `out`, its fragments into
    /// `pieces`.
    fn reassemble(
        g: &ShardInner,
        q: &Queue,
        out: &mut [u8],
        pieces: &mut Vec<Piece>,
    ) -> Result<Insert, DropReason> {
        let ecn = ECN_TABLE[usize::from(q.ecn & 0x0f)];
        if ecn == 0xff {
            return Err(DropReason::FragBadEcn);
        }
        let hlen = usize::from(q.hlen);
        let len = hlen + q.len as usize;
        if len > MAX_DATAGRAM || len > out.len() {
            return Err(DropReason::FragTooBig);
        }
        let hdr = &mut out[..hlen];
        hdr.copy_from_slice(&q.hdr[..hlen]);
        if q.key.ipv6 {
            // `ip6_frag_reasm`: the payload length; the ECN in the traffic
            // class (bits 4-5 of the second byte).
            let plen = (len - 40) as u16;
            hdr[4..6].copy_from_slice(&plen.to_be_bytes());
            hdr[1] |= ecn << 4;
            return Ok(Self::copy_data(g, q, out, pieces, len));
        }
        hdr[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        hdr[1] |= ecn;
        // DF only if the largest fragment had it (so that the datagram is
        // never sent on in pieces larger than its sender's).
        let frag_off = if q.max_df_size == q.max_size {
            IP_DF
        } else {
            0
        };
        hdr[6..8].copy_from_slice(&frag_off.to_be_bytes());
        let sum = checksum::ipv4_header(hdr);
        hdr[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(Self::copy_data(g, q, out, pieces, len))
    }

    /// The fragments' data after the datagram's header in `out`, their
    /// geometry into `pieces`.
    fn copy_data(
        g: &ShardInner,
        q: &Queue,
        out: &mut [u8],
        pieces: &mut Vec<Piece>,
        len: usize,
    ) -> Insert {
        let hlen = usize::from(q.hlen);
        pieces.clear();
        let mut f = q.head;
        while f != NONE {
            let fr = &g.frags[f as usize];
            let n = usize::from(fr.len);
            let at = hlen + fr.offset as usize;
            out[at..at + n].copy_from_slice(&g.data[f as usize * SLOT..][..n]);
            if pieces.len() < pieces.capacity() {
                pieces.push(Piece {
                    offset: fr.offset,
                    len: fr.len,
                });
            }
            f = fr.next;
        }
        Insert::Complete {
            len,
            max_size: q.max_size.max(q.max_df_size),
        }
    }

    /// Gives up the queues whose time is up (`ip_expire`), in the shards
    /// not locked by another worker now; their fragments are counted as
    /// dropped (`frag_timeout`), each queue in `reasm_fails`. Cheap when
    /// nothing is queued or due.
    pub fn expire(&self, now: u64, stats: &mut WorkerStats) {
        if self.mem() == 0 {
            return;
        }
        for shard in self.shards.iter() {
            let Some(mut g) = shard.try_lock() else {
                continue;
            };
            if now < g.next_expiry {
                continue;
            }
            let mut next = u64::MAX;
            for qi in 0..g.queues.len() {
                if !g.live[qi] {
                    continue;
                }
                let expires = g.queues[qi].expires;
                if now >= expires {
                    let n = g.kill(qi as u32, &self.mem);
                    count(stats, DropReason::FragTimeout, n);
                    stats.reasm_fails += 1;
                } else {
                    next = next.min(expires);
                }
            }
            g.next_expiry = next;
        }
    }
}

fn count(stats: &mut WorkerStats, reason: DropReason, n: u64) {
    stats.drops[reason as usize] += n;
}

fn fail(stats: &mut WorkerStats, reason: DropReason, n: u64) -> Insert {
    count(stats, reason, n);
    stats.reasm_fails += 1;
    Insert::Dropped(reason)
}
