//! The established-flow fast path against the full traversal it replaces:
//! random conversations (TCP and UDP flows through conf/gateway.rules'
//! MASQUERADE, both directions, in random batches, with perturbed packets
//! among them; the same conversations in IPv6 through conf/gateway.rules6'
//! NAT66, whose TCPMSS clamp the fast path must see past) go through two
//! gateways, one with the fast path and one without. Every packet must get
//! the same action and leave with the same bytes, the gateways must
//! generate the same frames, and at the end the rule counters and the
//! conntrack tables must be equal.
//!
//! Also: the three readers of a frame's headers (`wire::fast::peek` for the
//! fast path, `wire::parse_ipv4` for the full path, `conntrack::frame_tuple`
//! for prefetching; IPv6's `peek6`, `parse_ipv6`, `frame_tuple6`) agree on
//! what they all read, for random frames.

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use proptest::prelude::*;
use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::{frame_tuple, frame_tuple6, Snapshot};
use xdpgw_dataplane::pipeline::Emit;
use xdpgw_dataplane::wire::{self, L4};
use xdpgw_dataplane::worker::Worker;
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::memlab::{self, *};

const LAN: u8 = 0;
const WAN: u8 = 1;

/// The frames a gateway generates, shared between the batch that emits
/// them and the test that takes them packet by packet.
#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Frames>>);

/// Frames with the interface they went out of.
type Frames = Vec<(u8, Vec<u8>)>;

impl Emit for Sink {
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        self.0.borrow_mut().push((iface, frame.to_vec()));
    }
}

fn gateway(fast_path: bool, ipv6: bool) -> Worker {
    let gw = if ipv6 {
        // Dual-stack, conf/gateway.rules6, the client and the upstream
        // router resolved (neither ARP nor NDP in the conversation).
        xdpgw_vm_tests::fuzz::pipeline::gateway()
    } else {
        let gw = memlab::gateway(&memlab::conf_rules());
        // Both hosts already known: no ARP in the conversation.
        gw.neigh.learn(LAN, CLIENT, CLIENT_MAC);
        gw.neigh
            .learn(WAN, Ipv4Addr::new(203, 0, 113, 254), UPSTREAM_MAC);
        gw
    };
    let mut w = Worker::new(gw, 7);
    w.set_fast_path(fast_path);
    w
}

/// The IPv6 plan of the conversation: the client on lan0's ULA prefix, the
/// far server beyond the upstream router, wan0's address (NAT66's).
fn to_ipv6(a: Ipv4Addr) -> Ipv6Addr {
    if a == CLIENT {
        Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2)
    } else if a == GW_WAN {
        Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1)
    } else {
        Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x20)
    }
}

/// The IPv4 frame `f` (no options) as the same packet in IPv6: addresses
/// by [`to_ipv6`], TOS as the traffic class, TTL as the hop limit, the
/// transport header and payload kept with the checksum computed for IPv6
/// (and left as wrong as it was).
fn ipv6_frame(f: &[u8]) -> Vec<u8> {
    let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
    let (src4, dst4, proto, tos, ttl) = (ip(26), ip(30), f[23], f[15], f[22]);
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let mut seg = f[34..14 + total].to_vec();
    let at = if proto == 6 { 16 } else { 6 };
    let bad = wire::checksum::l4(src4, dst4, proto, &{
        let mut s = seg.clone();
        s[at..at + 2].fill(0);
        s
    }) != u16::from_be_bytes([seg[at], seg[at + 1]]);
    let (src, dst) = (to_ipv6(src4), to_ipv6(dst4));
    seg[at..at + 2].fill(0);
    let mut c = wire::checksum::l4_v6(src, dst, proto, &seg);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    if bad {
        c ^= 0x5a;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    let mut out = f[..12].to_vec();
    out.extend_from_slice(&[0x86, 0xdd]);
    out.extend_from_slice(&(0x6000_0000u32 | u32::from(tos) << 20).to_be_bytes());
    out.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    out.extend_from_slice(&[proto, ttl]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&seg);
    out
}

/// What one packet did: its action, its bytes as they left (forwarded),
/// and the frames the gateway generated meanwhile.
#[derive(Debug, PartialEq)]
struct Outcome {
    action: Action,
    out: Vec<u8>,
    generated: Vec<(u8, Vec<u8>)>,
}

/// The state the two gateways must agree on at the end.
#[derive(Debug, PartialEq)]
struct End {
    counters: Vec<(u64, u64)>,
    counters6: Vec<(u64, u64)>,
    table: Vec<Snapshot>,
    table6: Vec<Snapshot<Ipv6Addr>>,
}

fn run(fast_path: bool, ipv6: bool, batches: &[Vec<(u8, Vec<u8>)>]) -> (Vec<Outcome>, End) {
    let mut w = gateway(fast_path, ipv6);
    let mut sink = Sink::default();
    let mut now = 1_000_000_000u64;
    let mut outcomes = Vec::new();
    for batch in batches {
        let mut b = w.batch(sink.clone());
        for (iface, frame) in batch {
            now += 100_000;
            let mut buf = frame.clone();
            buf.resize(2048, 0);
            let action = b.process(now, *iface, &mut buf, frame.len());
            let out = match action {
                Action::Forward { len, .. } => buf[..len].to_vec(),
                _ => Vec::new(),
            };
            outcomes.push(Outcome {
                action,
                out,
                generated: std::mem::take(&mut *sink.0.borrow_mut()),
            });
        }
        drop(b);
        w.housekeeping(now, &mut sink);
    }
    w.idle();
    let (rules, st) = w.rules();
    let counters = (0..rules.live.totals().len() as u32)
        .map(|slot| st.counter(slot))
        .collect();
    let (rules6, st6) = w.rules6();
    let counters6 = (0..rules6.live.totals().len() as u32)
        .map(|slot| st6.counter(slot))
        .collect();
    let mut table = w.gateway().conntrack.snapshot();
    table.sort_by_key(|s| (s.orig.proto, s.orig.sport, s.orig.dport));
    let mut table6 = w
        .gateway()
        .conntrack6
        .as_ref()
        .map(|ct| ct.snapshot())
        .unwrap_or_default();
    table6.sort_by_key(|s| (s.orig.proto, s.orig.sport, s.orig.dport));
    let end = End {
        counters,
        counters6,
        table,
        table6,
    };
    (outcomes, end)
}

/// A step of a conversation: which flow, what it sends, and what goes
/// wrong with the packet.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// TCP flow `flow`: the next segment of its script (handshake, data
    /// either way, FIN either way), `len` payload bytes where it carries data.
    Tcp {
        flow: u8,
        from_server: bool,
        len: u8,
        bad: Bad,
    },
    /// UDP flow `flow`: a datagram either way.
    Udp {
        flow: u8,
        from_server: bool,
        len: u8,
        bad: Bad,
    },
}

/// A perturbation of one packet.
#[derive(Clone, Copy, Debug)]
enum Bad {
    None,
    /// TTL 1: time exceeded instead of forwarding.
    Ttl1,
    /// A transport checksum that does not verify.
    Checksum,
    /// A DSCP/ECN byte the rules do not set.
    Tos(u8),
    /// A TCP segment far outside the window.
    OutOfWindow,
    /// A TCP reset.
    Rst,
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        12 => Just(Bad::None),
        1 => Just(Bad::Ttl1),
        1 => Just(Bad::Checksum),
        1 => any::<u8>().prop_map(Bad::Tos),
        1 => Just(Bad::OutOfWindow),
        1 => Just(Bad::Rst),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, any::<bool>(), 0u8..120, bad()).prop_map(|(flow, from_server, len, bad)| {
            Step::Tcp {
                flow,
                from_server,
                len,
                bad,
            }
        }),
        (0u8..3, any::<bool>(), 0u8..120, bad()).prop_map(|(flow, from_server, len, bad)| {
            Step::Udp {
                flow,
                from_server,
                len,
                bad,
            }
        }),
    ]
}

/// A TCP flow's script position and sequence numbers.
#[derive(Clone, Copy, Default)]
struct TcpFlow {
    /// 0: SYN next; 1: SYN/ACK next; 2: ACK next; 3: established; 4: closed.
    phase: u8,
    client_seq: u32,
    server_seq: u32,
}

fn spec(from_server: bool, l4: L4Spec, tos: u8, ttl: u8) -> FrameSpec {
    FrameSpec {
        dst_mac: if from_server { WAN_MAC } else { LAN_MAC },
        src_mac: if from_server {
            UPSTREAM_MAC
        } else {
            CLIENT_MAC
        },
        src: if from_server { FAR } else { CLIENT },
        dst: if from_server { GW_WAN } else { FAR },
        ttl,
        tos,
        id: 1,
        df: true,
        l4,
    }
}

/// [`frames`], in IPv6 or not.
fn frames_of(steps: &[Step], ipv6: bool) -> Vec<(u8, Vec<u8>)> {
    let mut out = frames(steps);
    if ipv6 {
        for (_, f) in &mut out {
            *f = ipv6_frame(f);
        }
    }
    out
}

/// Turns steps into frames, following each flow's script (MASQUERADE keeps
/// the client's port: replies go to it on the gateway's address).
fn frames(steps: &[Step]) -> Vec<(u8, Vec<u8>)> {
    let mut tcp = [TcpFlow::default(); 3];
    for (k, f) in tcp.iter_mut().enumerate() {
        f.client_seq = 1_000 + k as u32 * 7_919;
        f.server_seq = 50_000 + k as u32 * 104_729;
    }
    let mut out = Vec::new();
    for s in steps {
        let (from_server, l4, bad) = match *s {
            Step::Udp {
                flow,
                from_server,
                len,
                bad,
            } => {
                let port = 41_000 + u16::from(flow);
                let (sport, dport) = if from_server { (53, port) } else { (port, 53) };
                let l4 = L4Spec::Udp {
                    sport,
                    dport,
                    payload: vec![0x5a; usize::from(len)],
                };
                (from_server, l4, bad)
            }
            Step::Tcp {
                flow,
                from_server,
                len,
                bad,
            } => {
                let f = &mut tcp[usize::from(flow)];
                let port = 42_000 + u16::from(flow);
                // The script decides who speaks in the handshake.
                let (from_server, flags, len) = match f.phase {
                    0 => (false, TCP_SYN, 0),
                    1 => (true, TCP_SYN | TCP_ACK, 0),
                    2 => (false, TCP_ACK, 0),
                    3 if len > 110 => (from_server, TCP_FIN | TCP_ACK, 0),
                    3 => (from_server, TCP_PSH | TCP_ACK, u32::from(len)),
                    _ => (from_server, TCP_ACK, 0),
                };
                let (seq, ack) = if from_server {
                    (f.server_seq, f.client_seq)
                } else {
                    (f.client_seq, f.server_seq)
                };
                let (flags, seq) = match bad {
                    Bad::Rst => (TCP_RST | TCP_ACK, seq),
                    Bad::OutOfWindow => (flags, seq.wrapping_add(0x4000_0000)),
                    _ => (flags, seq),
                };
                // Only a packet that will count advances the script (a
                // perturbed one is dropped or judged otherwise).
                if matches!(bad, Bad::None | Bad::Tos(_)) {
                    let used = len + u32::from(flags & (TCP_SYN | TCP_FIN) != 0);
                    if from_server {
                        f.server_seq = f.server_seq.wrapping_add(used);
                    } else {
                        f.client_seq = f.client_seq.wrapping_add(used);
                    }
                    f.phase = match f.phase {
                        0..=2 => f.phase + 1,
                        3 if flags & TCP_FIN != 0 => 4,
                        p => p,
                    };
                }
                let (sport, dport) = if from_server { (80, port) } else { (port, 80) };
                let l4 = L4Spec::Tcp {
                    sport,
                    dport,
                    seq,
                    ack,
                    flags,
                    window: 65_535,
                    syn_options: flags & TCP_SYN != 0,
                    payload: vec![0xa5; len as usize],
                };
                (from_server, l4, bad)
            }
        };
        let (tos, ttl) = match bad {
            Bad::Tos(t) => (t, 64),
            Bad::Ttl1 => (0, 1),
            _ => (0, 64),
        };
        let mut frame = spec(from_server, l4, tos, ttl).build();
        if let Bad::Checksum = bad {
            // The transport checksum's low byte (TCP at 50, UDP at 40).
            let at = if frame[23] == 6 { 51 } else { 41 };
            frame[at] ^= 0x5a;
        }
        out.push((if from_server { WAN } else { LAN }, frame));
    }
    out
}

/// Cuts `frames` into batches of the given sizes (the last takes the rest).
fn batched(frames: Vec<(u8, Vec<u8>)>, sizes: &[usize]) -> Vec<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut it = frames.into_iter().peekable();
    let mut sizes = sizes.iter().cycle();
    while it.peek().is_some() {
        let n = *sizes.next().unwrap_or(&1);
        out.push(it.by_ref().take(n.max(1)).collect());
    }
    out
}

fn agree(batches: &[Vec<(u8, Vec<u8>)>], ipv6: bool) -> Result<(), TestCaseError> {
    let (fast, fast_end) = run(true, ipv6, batches);
    let (full, full_end) = run(false, ipv6, batches);
    let frames: Vec<&(u8, Vec<u8>)> = batches.iter().flatten().collect();
    for (i, (a, b)) in fast.iter().zip(&full).enumerate() {
        prop_assert_eq!(
            a,
            b,
            "packet {} (on interface {}: {:02x?}) differs",
            i,
            frames[i].0,
            frames[i].1
        );
    }
    prop_assert_eq!(fast_end, full_end);
    Ok(())
}

/// A fixed conversation: each flow's handshake, data both ways with the
/// fast path taking the established packets, a TOS change, a TTL-1 packet,
/// a bad checksum, the FINs.
fn a_conversation(ipv6: bool) {
    let tcp = |from_server: bool, len: u8, bad: Bad| Step::Tcp {
        flow: 0,
        from_server,
        len,
        bad,
    };
    let udp = |from_server: bool, len: u8, bad: Bad| Step::Udp {
        flow: 1,
        from_server,
        len,
        bad,
    };
    let mut steps = vec![tcp(false, 0, Bad::None); 3];
    for i in 0..40u8 {
        steps.push(tcp(i % 3 == 0, 10 + i, Bad::None));
        steps.push(udp(i % 2 == 1, i, Bad::None));
    }
    steps.extend([
        tcp(false, 20, Bad::Tos(0xb8)),
        tcp(false, 20, Bad::Ttl1),
        udp(false, 20, Bad::Checksum),
        udp(true, 20, Bad::Tos(0x01)),
        tcp(false, 115, Bad::None),
        tcp(true, 115, Bad::None),
        tcp(false, 0, Bad::None),
    ]);
    let all = frames_of(&steps, ipv6);
    let n = all.len();
    agree(&batched(all, &[64]), ipv6).unwrap_or_else(|e| panic!("{e}"));
    // The fast path really took part: it must have forwarded most of them.
    let mut w = gateway(true, ipv6);
    let mut b = w.batch(Sink::default());
    for (k, (iface, f)) in frames_of(&steps, ipv6).into_iter().enumerate() {
        let mut buf = f.clone();
        buf.resize(2048, 0);
        b.process(1_000_000_000 + k as u64 * 1000, iface, &mut buf, f.len());
    }
    drop(b);
    assert!(
        w.stats().fast_path > n as u64 / 2,
        "fast path took {} of {n}",
        w.stats().fast_path
    );
}

#[test]
fn a_conversation_is_the_same_with_and_without_the_fast_path() {
    a_conversation(false);
}

#[test]
fn an_ipv6_conversation_is_the_same_with_and_without_the_fast_path() {
    a_conversation(true);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_conversations_are_the_same_with_and_without_the_fast_path(
        steps in proptest::collection::vec(step(), 1..160),
        sizes in proptest::collection::vec(1usize..12, 1..8),
        ipv6 in any::<bool>(),
    ) {
        agree(&batched(frames_of(&steps, ipv6), &sizes), ipv6)?;
    }

    /// Where the fast path's peek takes a frame, the full parse reads the
    /// same tuple, length and TTL, and the prefetch reader the same tuple;
    /// for IPv6 frames, `peek6` and `parse_ipv6` the same (a frame `peek6`
    /// takes is whole, TCP or UDP).
    #[test]
    fn the_header_readers_agree(
        steps in proptest::collection::vec(step(), 1..8),
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
        cut in 0usize..100,
        ipv6 in any::<bool>(),
    ) {
        for (_, mut f) in frames_of(&steps, ipv6) {
            for (at, x) in &flips {
                if let Some(b) = f.get_mut(*at) {
                    *b ^= x;
                }
            }
            if cut < 20 {
                f.truncate(f.len().saturating_sub(cut));
            }
            let mac: [u8; 6] = f[..6].try_into().unwrap_or_default();
            if ipv6 {
                let Some(p) = wire::fast::peek6(&f, &mac) else { continue };
                let info = wire::ipv6::parse_ipv6(&f);
                prop_assert!(info.is_ok(), "peek6 took a frame parse refuses: {:?}", info);
                let Ok(info) = info else { continue };
                prop_assert!(!info.fragment);
                let (sport, dport) = match info.l4info {
                    wire::ipv6::L4v6::Tcp(t) => (t.sport, t.dport),
                    wire::ipv6::L4v6::Udp { sport, dport } => (sport, dport),
                    other => return Err(TestCaseError::fail(format!("peek6 took {other:?}"))),
                };
                prop_assert_eq!(
                    (p.tuple.src, p.tuple.dst, p.tuple.sport, p.tuple.dport, p.tuple.proto),
                    (info.src, info.dst, sport, dport, info.proto)
                );
                prop_assert_eq!(
                    (p.total_len, p.ttl),
                    (info.payload_len + 40, info.hop_limit)
                );
                prop_assert_eq!(frame_tuple6(&f), Some(p.tuple));
                continue;
            }
            let Some(p) = wire::fast::peek(&f, &mac) else { continue };
            let info = wire::parse_ipv4(&f);
            prop_assert!(info.is_ok(), "peek took a frame parse refuses: {:?}", info);
            let Ok(info) = info else { continue };
            let (sport, dport) = match info.l4info {
                L4::Tcp(t) => (t.sport, t.dport),
                L4::Udp { sport, dport } => (sport, dport),
                other => return Err(TestCaseError::fail(format!("peek took {other:?}"))),
            };
            prop_assert_eq!(
                (p.tuple.src, p.tuple.dst, p.tuple.sport, p.tuple.dport, p.tuple.proto),
                (info.src, info.dst, sport, dport, info.proto)
            );
            prop_assert_eq!((p.total_len, p.ttl), (info.total_len, info.ttl));
            prop_assert_eq!(frame_tuple(&f), Some(p.tuple));
        }
    }
}
