//! The reassembly table against Linux's rules: random datagrams cut in
//! random geometries, shuffled and duplicated, come back whole; overlaps
//! drop the queue; memory stays bounded and is given back.

use proptest::prelude::*;

use super::*;
use crate::drop::DropReason;
use crate::stats::WorkerStats;
use crate::wire::checksum;

const S: u64 = 1_000_000_000;

/// The IPv4 packet of a fragment of datagram `id` (UDP, 10.0.0.1 ->
/// 10.0.0.2): its data `data` at `offset`.
fn packet(id: u16, offset: usize, more: bool, data: &[u8], tos: u8) -> Vec<u8> {
    let total = 20 + data.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[1] = tos;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    let frag = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let sum = checksum::ipv4_header(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..].copy_from_slice(data);
    p
}

struct Lab {
    table: Reassembly,
    out: Vec<u8>,
    pieces: Vec<Piece>,
    stats: WorkerStats,
}

impl Lab {
    fn new(cfg: FragConfig) -> Lab {
        let table = Reassembly::new(cfg);
        let pieces = Vec::with_capacity(table.max_fragments());
        Lab {
            table,
            out: vec![0; MAX_DATAGRAM],
            pieces,
            stats: WorkerStats::default(),
        }
    }

    fn send(&mut self, now: u64, p: &[u8]) -> Insert {
        let f = Fragment::parse(p).expect("fragment");
        self.table
            .insert(now, &f, &mut self.out, &mut self.pieces, &mut self.stats)
    }

    /// [`Lab::send`] of an Ethernet/IPv6 frame with a fragment header.
    fn send6(&mut self, now: u64, frame: &[u8]) -> Insert {
        let info = crate::wire::ipv6::parse_ipv6(frame).expect("an IPv6 frame");
        let mut hdr = [0u8; MAX_HDR];
        let f = Fragment::parse6(frame, &info, &mut hdr).expect("fragment");
        self.table
            .insert(now, &f, &mut self.out, &mut self.pieces, &mut self.stats)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.stats.drop_count(r)
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn reverse_order_fragments_reassemble_with_their_geometry() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(3008, 7);
    let cuts = [(0, 1200), (1200, 400), (1600, 800), (2400, 608)];
    let mut got = None;
    for &(off, len) in cuts.iter().rev() {
        let more = off + len < d.len();
        got = Some(lab.send(0, &packet(9, off, more, &d[off..off + len], 0)));
        if off != 0 {
            assert_eq!(got, Some(Insert::Queued));
        }
    }
    assert_eq!(
        got,
        Some(Insert::Complete {
            len: 3028,
            max_size: 1220
        })
    );
    assert_eq!(&lab.out[20..3028], &d[..]);
    assert_eq!(u16::from_be_bytes([lab.out[2], lab.out[3]]), 3028);
    assert_eq!(&lab.out[6..8], &[0, 0], "no MF, no offset");
    assert!(checksum::verify(checksum::sum(&lab.out[..20])));
    let geometry: Vec<(u32, u16)> = lab.pieces.iter().map(|p| (p.offset, p.len)).collect();
    assert_eq!(geometry, [(0, 1200), (1200, 400), (1600, 800), (2400, 608)]);
    assert_eq!(lab.table.mem(), 0);
    assert_eq!(lab.table.queues(), 0);
    assert_eq!(
        (
            lab.stats.reasm_reqds,
            lab.stats.reasm_oks,
            lab.stats.reasm_fails
        ),
        (4, 1, 0)
    );
}

#[test]
fn an_overlap_drops_the_whole_queue_and_a_duplicate_only_itself() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(48, 1);
    assert_eq!(
        lab.send(0, &packet(1, 0, true, &d[..16], 0)),
        Insert::Queued
    );
    assert_eq!(
        lab.send(0, &packet(1, 16, true, &d[16..32], 0)),
        Insert::Queued
    );
    // Exactly the same again, and a part of the run [0, 32): duplicates.
    assert_eq!(
        lab.send(0, &packet(1, 0, true, &d[..16], 0)),
        Insert::Dropped(DropReason::FragDuplicate)
    );
    assert_eq!(
        lab.send(0, &packet(1, 8, true, &d[8..24], 0)),
        Insert::Dropped(DropReason::FragDuplicate)
    );
    assert_eq!(lab.table.queues(), 1);
    assert_eq!(lab.stats.reasm_fails, 0, "duplicates are no failure");
    // Overlapping the end of what is there: the queue goes, with both of
    // its fragments and this one (FragmentSmack's fix, `inet_frag_queue_insert`).
    assert_eq!(
        lab.send(0, &packet(1, 24, false, &d[24..48], 0)),
        Insert::Dropped(DropReason::FragOverlap)
    );
    assert_eq!(lab.drops(DropReason::FragOverlap), 3);
    assert_eq!(lab.stats.reasm_fails, 1);
    assert_eq!((lab.table.queues(), lab.table.mem()), (0, 0));
    // What comes later starts a new queue, which lacks the start.
    assert_eq!(
        lab.send(0, &packet(1, 32, false, &d[32..48], 0)),
        Insert::Queued
    );
    assert_eq!(lab.table.queues(), 1);
}

#[test]
fn an_overlap_inside_the_runs_drops_the_queue() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(64, 2);
    lab.send(0, &packet(2, 48, false, &d[48..64], 0));
    lab.send(0, &packet(2, 0, true, &d[..16], 0));
    // [8, 24) straddles the end of the run [0, 16).
    assert_eq!(
        lab.send(0, &packet(2, 8, true, &d[8..24], 0)),
        Insert::Dropped(DropReason::FragOverlap)
    );
    assert_eq!(lab.drops(DropReason::FragOverlap), 3);
}

#[test]
fn malformed_fragments_drop_the_queue_as_linux_does() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(64, 3);
    lab.send(0, &packet(3, 32, false, &d[32..64], 0));
    // Another last fragment with another end.
    assert_eq!(
        lab.send(0, &packet(3, 0, false, &d[..16], 0)),
        Insert::Dropped(DropReason::FragMalformed)
    );
    // Data beyond the last fragment's end.
    lab.send(0, &packet(4, 0, false, &d[..16], 0));
    assert_eq!(
        lab.table.queues(),
        0,
        "offset 0 without MF is no fragment, but whole"
    );
    lab.send(0, &packet(5, 16, false, &d[16..32], 0));
    assert_eq!(
        lab.send(0, &packet(5, 32, true, &d[32..48], 0)),
        Insert::Dropped(DropReason::FragMalformed)
    );
    // No data once trimmed to a multiple of 8.
    assert_eq!(
        lab.send(0, &packet(6, 8, true, &d[..7], 0)),
        Insert::Dropped(DropReason::FragMalformed)
    );
    assert_eq!(lab.table.mem(), 0);
}

#[test]
fn a_datagram_over_65535_bytes_is_dropped_at_reassembly() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(1480, 4);
    let last = 65_528 - 8 * 100;
    let mut off = 0;
    while off < last {
        let n = (last - off).min(1480);
        assert_eq!(
            lab.send(0, &packet(7, off, true, &d[..n], 0)),
            Insert::Queued
        );
        off += n;
    }
    assert_eq!(
        lab.send(0, &packet(7, last, false, &d[..1000], 0)),
        Insert::Dropped(DropReason::FragTooBig)
    );
    assert_eq!(lab.table.mem(), 0);
    assert_eq!(lab.stats.reasm_fails, 1);
}

#[test]
fn ecn_not_ect_mixed_with_ect_is_dropped_and_ce_is_kept() {
    let mut lab = Lab::new(FragConfig::default());
    let d = data(32, 5);
    lab.send(0, &packet(8, 0, true, &d[..16], 0));
    assert_eq!(
        lab.send(0, &packet(8, 16, false, &d[16..], 2)),
        Insert::Dropped(DropReason::FragBadEcn)
    );
    lab.send(0, &packet(9, 0, true, &d[..16], 2));
    assert!(matches!(
        lab.send(0, &packet(9, 16, false, &d[16..], 3)),
        Insert::Complete { .. }
    ));
    assert_eq!(lab.out[1] & 3, 3, "CE");
}

#[test]
fn queues_expire_after_ipfrag_time_from_their_first_fragment() {
    let cfg = FragConfig {
        time: 2 * S,
        ..FragConfig::default()
    };
    let mut lab = Lab::new(cfg);
    let d = data(32, 6);
    lab.send(0, &packet(10, 0, true, &d[..16], 0));
    lab.send(S, &packet(11, 0, true, &d[..16], 0));
    // A later fragment does not push the first queue's time back.
    lab.send(S, &packet(10, 24, true, &d[..8], 0));
    lab.table.expire(2 * S - 1, &mut lab.stats);
    assert_eq!(lab.table.queues(), 2);
    lab.table.expire(2 * S, &mut lab.stats);
    assert_eq!(lab.table.queues(), 1);
    assert_eq!(lab.drops(DropReason::FragTimeout), 2);
    // The rest of datagram 10 now starts a new queue.
    assert_eq!(
        lab.send(2 * S, &packet(10, 16, false, &d[16..], 0)),
        Insert::Queued
    );
    // A queue found expired before the sweep is given up too.
    assert_eq!(
        lab.send(3 * S, &packet(11, 16, false, &d[16..], 0)),
        Insert::Queued
    );
    assert_eq!(lab.drops(DropReason::FragTimeout), 3);
    lab.table.expire(10 * S, &mut lab.stats);
    assert_eq!((lab.table.queues(), lab.table.mem()), (0, 0));
    assert_eq!(lab.stats.reasm_fails, 4);
}

/// IPv6 queues live `time6` (Linux's `ip6frag_time`), IPv4's `time`
/// (`ipfrag_time`): each family's own.
#[test]
fn ipv6_queues_expire_after_ip6frag_time() {
    let mut lab = Lab::new(FragConfig {
        time: 2 * S,
        time6: 5 * S,
        ..FragConfig::default()
    });
    let d = data(32, 7);
    lab.send(0, &packet(10, 0, true, &d[..16], 0));
    lab.send6(0, &packet6(10, 0, true, &d[..16]));
    lab.table.expire(2 * S, &mut lab.stats);
    // IPv4's queue is gone, IPv6's kept.
    assert_eq!(lab.table.queues(), 1);
    assert_eq!(lab.table.mem_of(false), 0);
    assert!(lab.table.mem_of(true) > 0);
    lab.table.expire(5 * S - 1, &mut lab.stats);
    assert_eq!(lab.table.queues(), 1);
    lab.table.expire(5 * S, &mut lab.stats);
    assert_eq!(lab.table.queues(), 0);
    assert_eq!(lab.drops(DropReason::FragTimeout), 2);
    // Linux's defaults: 30 s and 60 s.
    let d = FragConfig::default();
    assert_eq!((d.time_of(false), d.time_of(true)), (30 * S, 60 * S));
}

#[test]
fn memory_full_refuses_every_fragment_until_queues_expire() {
    // Linux's default: about 1,670 queues of one 1,480-byte fragment.
    let mut lab = Lab::new(FragConfig::default());
    let d = data(1480, 8);
    let mut accepted = 0;
    for id in 0..3000u16 {
        match lab.send(0, &packet(id, 0, true, &d, 0)) {
            Insert::Queued => accepted += 1,
            Insert::Dropped(DropReason::FragMemFull) => {}
            other => panic!("{id}: {other:?}"),
        }
        assert!(lab.table.mem() <= FragConfig::DEFAULT.high_thresh + QUEUE_SIZE + FRAG_TRUESIZE);
    }
    assert!((1600..=1700).contains(&accepted), "{accepted} queues");
    assert_eq!(lab.drops(DropReason::FragMemFull), 3000 - accepted);
    // A datagram whose first part was queued does not complete either:
    // nothing is evicted, and its last fragment is refused.
    assert_eq!(
        lab.send(0, &packet(0, 1480, false, &d[..8], 0)),
        Insert::Dropped(DropReason::FragMemFull)
    );
    lab.table.expire(30 * S, &mut lab.stats);
    assert_eq!(lab.table.mem(), 0);
    lab.send(30 * S, &packet(0, 0, true, &d, 0));
    assert!(matches!(
        lab.send(30 * S, &packet(0, 1480, false, &d[..8], 0)),
        Insert::Complete { len: 1508, .. }
    ));
}

#[test]
fn the_tables_storage_never_grows() {
    let mut lab = Lab::new(FragConfig {
        high_thresh: 64 * 1024,
        time: S,
        ..FragConfig::DEFAULT
    });
    let before = lab.table.index_capacity();
    let d = data(1480, 1);
    // Full shards, queues completing, expiring and refused, over and over.
    for round in 0..20u64 {
        for id in 0..2000u16 {
            let _ = lab.send(round * S, &packet(id, 0, true, &d, 0));
            if id % 3 == 0 {
                let _ = lab.send(round * S, &packet(id, 1480, false, &d[..8], 0));
            }
        }
        lab.table.expire(round * S + S, &mut lab.stats);
    }
    assert_eq!(lab.table.index_capacity(), before);
    assert!(lab.stats.reasm_oks > 0 && lab.drops(DropReason::FragMemFull) > 0);
}

/// The Ethernet frame of an IPv6 fragment of datagram `id` (UDP,
/// fd00::1 -> fd00::2): its data `data` at `offset`.
fn packet6(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    // Next header: fragment (44); hop limit.
    f.extend_from_slice(&[44, 64]);
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    let mut dst = src;
    src[15] = 1;
    dst[15] = 2;
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let frag = (offset as u16) | u16::from(more);
    f.extend_from_slice(&[17, 0]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// IPv4 and IPv6 fragments are charged to counters of their own, each
/// against its limit, as Linux's `ipfrag_high_thresh` and
/// `ip6frag_high_thresh` (one `fqdir` per family): IPv4 fragments filling
/// their memory do not stop IPv6 reassembly, nor the other way round.
#[test]
fn each_family_has_its_own_memory_limit() {
    let cfg = FragConfig {
        high_thresh: 64 * 1024,
        high_thresh6: 128 * 1024,
        ..FragConfig::DEFAULT
    };
    let mut lab = Lab::new(cfg);
    let d = data(1480, 5);
    let mut v4 = 0;
    for id in 0..400u16 {
        match lab.send(0, &packet(id, 0, true, &d, 0)) {
            Insert::Queued => v4 += 1,
            Insert::Dropped(DropReason::FragMemFull) => {}
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(lab.drops(DropReason::FragMemFull) > 0, "IPv4 is full");
    let mem4 = lab.table.mem_of(false);
    assert!(mem4 <= cfg.high_thresh + QUEUE_SIZE + FRAG_TRUESIZE);
    assert_eq!(lab.table.mem_of(true), 0);
    // IPv6 still reassembles.
    assert_eq!(lab.send6(0, &packet6(7, 0, true, &d)), Insert::Queued);
    assert!(matches!(
        lab.send6(0, &packet6(7, 1480, false, &d[..8])),
        Insert::Complete { .. }
    ));
    assert_eq!(lab.table.mem_of(true), 0);
    // Up to its own limit, twice IPv4's here.
    let mut v6 = 0;
    for id in 0..800u32 {
        match lab.send6(0, &packet6(id, 0, true, &d)) {
            Insert::Queued => v6 += 1,
            Insert::Dropped(DropReason::FragMemFull) => {}
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(lab.table.mem_of(true) <= cfg.high_thresh6 + QUEUE_SIZE + FRAG_TRUESIZE);
    assert!(
        (2 * v4 - 2..=2 * v4 + 2).contains(&v6),
        "{v4} IPv4 queues, {v6} IPv6"
    );
    // None of it charged to IPv4.
    assert_eq!(lab.table.mem_of(false), mem4);
    // IPv4's queues expire after `time`, IPv6's after `time6`.
    lab.table.expire(30 * S, &mut lab.stats);
    assert_eq!(lab.table.mem_of(false), 0);
    lab.table.expire(60 * S, &mut lab.stats);
    assert_eq!((lab.table.mem_of(false), lab.table.mem_of(true)), (0, 0));
}

#[test]
fn high_thresh_zero_drops_every_fragment() {
    let mut lab = Lab::new(FragConfig {
        high_thresh: 0,
        ..FragConfig::default()
    });
    let d = data(16, 9);
    assert_eq!(
        lab.send(0, &packet(1, 0, true, &d, 0)),
        Insert::Dropped(DropReason::FragMemFull)
    );
}

/// A datagram cut at multiples of 8 (`cuts`: fractions of it).
fn geometry(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| (c % len) & !7)
        .filter(|&p| p > 0)
        .collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn shuffled_and_duplicated_fragments_reassemble_the_original(
        len in 9usize..6000,
        cuts in proptest::collection::vec(0usize..6000, 1..12),
        order in proptest::collection::vec(any::<u32>(), 40),
        dups in proptest::collection::vec(any::<bool>(), 40),
        seed in any::<u8>(),
    ) {
        let d = data(len, seed);
        let mut frags: Vec<(usize, usize)> = geometry(len, &cuts);
        // Only fragments of at most 2,000 bytes (one frame).
        prop_assume!(frags.iter().all(|&(_, n)| n <= 2000) && frags.len() > 1);
        let expect = frags.clone();
        // Duplicates, then a shuffle (by random keys).
        let n = frags.len();
        for (i, &dup) in dups.iter().enumerate().take(n) {
            if dup {
                frags.push(frags[i]);
            }
        }
        let mut keyed: Vec<(u32, (usize, usize))> =
            frags.into_iter().enumerate().map(|(i, f)| (order[i % order.len()].wrapping_add(i as u32), f)).collect();
        keyed.sort_by_key(|k| k.0);
        let mut lab = Lab::new(FragConfig::default());
        let mut complete = 0;
        for (_, (off, n)) in keyed {
            let more = off + n < len;
            match lab.send(0, &packet(77, off, more, &d[off..off + n], 0)) {
                Insert::Complete { len: l, .. } => {
                    complete += 1;
                    prop_assert_eq!(l, 20 + len);
                    prop_assert_eq!(&lab.out[20..20 + len], &d[..]);
                    let got: Vec<(usize, usize)> =
                        lab.pieces.iter().map(|p| (p.offset as usize, usize::from(p.len))).collect();
                    prop_assert_eq!(&got, &expect);
                    prop_assert_eq!(lab.table.mem(), 0);
                }
                Insert::Queued => {}
                // A duplicate arriving after completion starts a new
                // queue; one before it is dropped as a duplicate.
                Insert::Dropped(r) => prop_assert_eq!(r, DropReason::FragDuplicate),
            }
        }
        prop_assert!(complete >= 1);
        prop_assert_eq!(lab.stats.reasm_fails, 0);
    }

    #[test]
    fn overlapping_fragments_never_reassemble(
        len in 64usize..3000,
        a in 0usize..3000,
        b in 0usize..3000,
        shift in 1usize..8,
    ) {
        // Two fragments that share bytes without one holding the other.
        let d = data(len, 1);
        let a = (a % (len - 16)) & !7;
        let first_end = (a + 8 + (b % 64) * 8).min(len - 8) & !7;
        prop_assume!(first_end > a + 8);
        let second = a + shift * 8 % (first_end - a);
        prop_assume!(second > a && second < first_end);
        let mut lab = Lab::new(FragConfig::default());
        prop_assert_eq!(lab.send(0, &packet(5, a, true, &d[a..first_end], 0)), Insert::Queued);
        let end = (first_end + 8).min(len);
        let more = end < len;
        prop_assert_eq!(
            lab.send(0, &packet(5, second, more, &d[second..end], 0)),
            Insert::Dropped(DropReason::FragOverlap)
        );
        prop_assert_eq!(lab.table.mem(), 0);
    }

    #[test]
    fn memory_never_exceeds_the_limit(
        ops in proptest::collection::vec((0u16..64, 0usize..8, any::<bool>(), 0u64..4), 1..400),
        thresh in 20_000usize..200_000,
    ) {
        let mut lab = Lab::new(FragConfig {
            high_thresh: thresh,
            time: 2 * S,
            ..FragConfig::DEFAULT
        });
        let d = data(1480, 3);
        let mut now = 0;
        for (id, slot, more, dt) in ops {
            now += dt * S / 4;
            lab.table.expire(now, &mut lab.stats);
            let off = slot * 1480;
            let _ = lab.send(now, &packet(id, off, more || slot == 0, &d, 0));
            prop_assert!(lab.table.mem() <= thresh + QUEUE_SIZE + FRAG_TRUESIZE);
        }
        lab.table.expire(now + 2 * S, &mut lab.stats);
        prop_assert_eq!(lab.table.mem(), 0);
        prop_assert_eq!(lab.table.queues(), 0);
    }
}

/// An IPv6 UDP datagram fd00::1 -> fd00::2 (with an 8-byte hop-by-hop
/// header if `hbh`) carrying `payload`, in an Ethernet frame.
fn datagram6(payload: &[u8], hbh: bool) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ext = if hbh { 8 } else { 0 };
    let plen = (ext + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[if hbh { 0 } else { 17 }, 64]);
    let src: std::net::Ipv6Addr = "fd00::1".parse().expect("v6");
    let dst: std::net::Ipv6Addr = "fd00::2".parse().expect("v6");
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    if hbh {
        // Next header UDP, length 0, a PadN option of 4 bytes.
        f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    }
    let ulen = (8 + payload.len()) as u16;
    let mut udp = vec![0x9c, 0x40, 0, 53];
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let c = checksum::l4_v6(src, dst, 17, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `fragment6` cuts an IPv6 datagram (with or without a hop-by-hop
    /// header in front) into fragments that parse as Linux sends them and
    /// that the table, in any order, reassembles into the same datagram,
    /// in the same geometry.
    #[test]
    fn ipv6_fragments_cut_and_reassembled_are_the_datagram(
        len in 1usize..6000,
        hbh in any::<bool>(),
        mtu in 1280u16..1600,
        id in any::<u32>(),
        seed in any::<u8>(),
        reverse in any::<bool>(),
    ) {
        let frame = datagram6(&data(len, seed), hbh);
        let total = frame.len() - 14;
        let (hlen, nh_at) = if hbh { (48, 40) } else { (40, 6) };
        let mut out = [0u8; crate::pipeline::FRAME_SIZE];
        let mut frags: Vec<Vec<u8>> = Vec::new();
        let n = fragment6(&frame, hlen, nh_at, total, &[], 0, mtu, id, &mut out, |f| {
            frags.push(f.to_vec())
        });
        let n = n.expect("room for data");
        prop_assert_eq!(n, frags.len());
        if reverse {
            frags.reverse();
        }
        let mut lab = Lab::new(FragConfig::DEFAULT);
        let mut done = None;
        for f in &frags {
            prop_assert!(f.len() <= 14 + usize::from(mtu));
            let info = crate::wire::ipv6::parse_ipv6(f).expect("a fragment parses");
            prop_assert!(info.fragment || n == 1);
            prop_assert_eq!(info.ext.frag.map(|h| h.id), Some(id));
            let mut hdr = [0u8; MAX_HDR];
            let frag = Fragment::parse6(f, &info, &mut hdr).expect("fragment");
            let r = lab
                .table
                .insert(S, &frag, &mut lab.out, &mut lab.pieces, &mut lab.stats);
            if let Insert::Complete { len, .. } = r {
                done = Some(len);
            }
        }
        prop_assert_eq!(done, Some(total));
        prop_assert_eq!(&lab.out[..total], &frame[14..]);
        prop_assert_eq!(lab.pieces.len(), n);
        // Sent on in the geometry it came in: the same fragments.
        let mut again = Vec::new();
        let mut dgram = frame[..14].to_vec();
        dgram.extend_from_slice(&lab.out[..total]);
        fragment6(&dgram, hlen, nh_at, total, &lab.pieces, 0, mtu, id, &mut out, |f| {
            again.push(f.to_vec())
        });
        frags.sort();
        again.sort();
        prop_assert_eq!(again, frags);
    }
}
