//! Packet-path speed on in-memory batches of 64 frames, one core:
//! - an established UDP flow through the conf/gateway.rules pipeline
//!   (conntrack hit, MASQUERADE rewrite, FORWARD accept);
//! - new connections (conntrack insert + NAT port allocation), and the same
//!   with conntrack events recorded (the state sync listening), and the
//!   sync thread's encoding of them;
//! - the established flow with 10, 1,000 and 10,000 filter rules before the
//!   accepting rule (and 100,000 through the full traversal);
//! - new connections with 10 to 100,000 filter rules before the accepting
//!   rule;
//! - conntrack lookups from 2 threads on 1 million entries;
//! - new connections refused for want of a NAT port (one server endpoint
//!   whose 64,512 MASQUERADE ports are all taken);
//! - saving and restoring a full table (`state_file`);
//! - the established flow through the ports' side of the worker driver
//!   (`link::Links`: ports to interfaces and back), without VLANs and from
//!   a VLAN of a trunk (the tag removed).
//! - fragmented datagrams: 3-fragment UDP datagrams of one flow through
//!   MASQUERADE (reassembled, tracked, NATed, fragmented again).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xdpgw_control::load_rules_str;
use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::{Conntrack, ConntrackConfig, PacketMeta, Track};
use xdpgw_dataplane::flow::Tuple;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::link::Links;
use xdpgw_dataplane::pipeline::NoEmit;
use xdpgw_dataplane::route::{Prefix, StaticRoute};
use xdpgw_dataplane::worker::{Batch, Worker};
use xdpgw_vm_tests::conf_gateway_config;
use xdpgw_vm_tests::frames::{checksum, fragments, FrameSpec, L4Spec, Mac};

const LAN_MAC: Mac = [0x02, 0, 0, 0, 1, 1];
const WAN_MAC: Mac = [0x02, 0, 0, 0, 2, 1];
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0a, 2];
const SERVER_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 9];
const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const BATCH: usize = 64;

fn gateway_rules() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/gateway.rules"
    ))
    .expect("conf/gateway.rules")
}

/// conf/gateway.rules with `n` non-matching filter rules at the top of FORWARD.
fn rules_with_prefix(n: usize) -> String {
    xdpgw_benches::rules_with_prefix(&gateway_rules(), n)
}

fn worker(rules: &str, max_entries: usize) -> Worker {
    let set = load_rules_str("bench.rules", rules).unwrap_or_else(|e| panic!("{e}"));
    let cfg = conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        ConntrackConfig {
            max_entries,
            ..ConntrackConfig::default()
        },
    );
    let gw = Arc::new(Gateway::new(cfg, &set).unwrap_or_else(|e| panic!("{e}")));
    gw.neigh
        .learn(0, Ipv4Addr::new(192, 168, 10, 2), CLIENT_MAC);
    gw.neigh.learn(1, SERVER, SERVER_MAC);
    gw.neigh
        .learn(1, Ipv4Addr::new(203, 0, 113, 254), SERVER_MAC);
    Worker::new(gw, 1)
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, from_lan: bool) -> Vec<u8> {
    let (dst_mac, src_mac) = if from_lan {
        (LAN_MAC, CLIENT_MAC)
    } else {
        (WAN_MAC, SERVER_MAC)
    };
    // 64-byte frames on the wire: 14 + 20 + 8 + 18 bytes of payload (+ FCS).
    FrameSpec {
        dst_mac,
        src_mac,
        src,
        dst,
        ttl: 64,
        tos: 0,
        id: 1,
        df: false,
        l4: L4Spec::Udp {
            sport,
            dport,
            payload: vec![0xab; 18],
        },
    }
    .build()
}

/// Runs one frame through the batch, from a template, into `buf`.
#[inline]
fn run(b: &mut Batch<NoEmit>, now: u64, iface: u8, template: &[u8], buf: &mut [u8]) -> Action {
    buf[..template.len()].copy_from_slice(template);
    b.process(now, iface, buf, template.len())
}

/// A frame of at most 64 bytes, padded: copied into a buffer as one fixed
/// block (a port hands over a frame already in its buffer; the copy only
/// undoes the previous packet's rewrite and should not cost a call into
/// `memcpy`).
struct Template<const N: usize = 64> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Template<N> {
    fn new(frame: &[u8]) -> Template<N> {
        let mut bytes = [0u8; N];
        bytes[..frame.len()].copy_from_slice(frame);
        Template {
            bytes,
            len: frame.len(),
        }
    }

    /// Forwards it; returns the output interface and length.
    #[inline]
    fn forward(&self, b: &mut Batch<NoEmit>, now: u64, buf: &mut [u8]) -> (u8, usize) {
        if let Some(first) = buf.first_chunk_mut::<N>() {
            *first = self.bytes;
        }
        match b.process(now, 0, buf, self.len) {
            Action::Forward { iface, len } => (iface, len),
            a => panic!("not forwarded: {a:?}"),
        }
    }
}

/// A worker with one established UDP flow through MASQUERADE, and the
/// client's frame of that flow.
fn established(rules: &str) -> (Worker, Template) {
    let mut w = worker(rules, 65536);
    let t = open_flow(&mut w);
    (w, t)
}

/// Opens the client's UDP flow through MASQUERADE (a request out, its reply
/// back) on `w`; the client's frame of that flow.
fn open_flow(w: &mut Worker) -> Template {
    let client = Ipv4Addr::new(192, 168, 10, 2);
    let out = udp(client, 40000, SERVER, 5001, true);
    let back = udp(SERVER, 5001, GW_WAN, 40000, false);
    let mut buf = vec![0u8; 2048];
    let mut b = w.batch(NoEmit);
    assert!(matches!(
        run(&mut b, 1, 0, &out, &mut buf),
        Action::Forward { iface: 1, .. }
    ));
    assert!(matches!(
        run(&mut b, 2, 1, &back, &mut buf),
        Action::Forward { iface: 0, .. }
    ));
    drop(b);
    Template::new(&out)
}

fn forward_batches(w: &mut Worker, frame: &Template, bufs: &mut [Vec<u8>], now: &mut u64) {
    let mut b = w.batch(NoEmit);
    for buf in bufs.iter_mut() {
        *now += 100;
        // Consumed as the worker loop does, field by field.
        std::hint::black_box(frame.forward(&mut b, *now, buf));
    }
}

fn established_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let (mut w, frame) = established(&gateway_rules());
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    // Each worker's clock starts where `established` left it: a clock carried
    // over from an earlier benchmark would have expired the flow.
    let mut now = 10;
    g.bench_function("forward_established_masquerade_batch64", |b| {
        b.iter(|| forward_batches(&mut w, &frame, &mut bufs, &mut now))
    });
    assert_eq!(w.stats().dropped(), 0, "{:?}", w.stats());

    for n in [10usize, 1_000, 10_000] {
        let (mut w, frame) = established(&rules_with_prefix(n));
        let mut now = 10;
        g.bench_with_input(
            BenchmarkId::new("forward_rules_before_accept", n),
            &n,
            |b, _| b.iter(|| forward_batches(&mut w, &frame, &mut bufs, &mut now)),
        );
        assert_eq!(w.stats().dropped(), 0);
        // (Unless a filter left the benchmark out: then only the setup ran.)
        assert!(
            w.stats().forwarded < 100 || w.stats().fast_path * 10 > w.stats().forwarded * 9,
            "{n} rules: {} of {} packets on the fast path",
            w.stats().fast_path,
            w.stats().forwarded
        );
    }
    // The same without the established-flow fast path: every packet takes
    // the full traversal (what a flow's first packets, and traffic the
    // cache does not take, cost).
    let (mut w, frame) = established(&gateway_rules());
    let mut now = 10;
    w.set_fast_path(false);
    g.bench_function("forward_full_traversal_masquerade_batch64", |b| {
        b.iter(|| forward_batches(&mut w, &frame, &mut bufs, &mut now))
    });
    assert_eq!(w.stats().fast_path, 0);
    for n in RULE_COUNTS {
        let (mut w, frame) = established(&rules_with_prefix(n));
        let mut now = 10;
        w.set_fast_path(false);
        g.bench_with_input(
            BenchmarkId::new("forward_full_traversal_rules_before_accept", n),
            &n,
            |b, _| b.iter(|| forward_batches(&mut w, &frame, &mut bufs, &mut now)),
        );
        assert_eq!(w.stats().dropped(), 0);
    }
    g.finish();
}

/// Established flows through the same pipeline, `n` of them taking turns
/// packet by packet (what the packet-rate benchmark's 1,024 flows do to the
/// worker's caches).
fn established_flows(c: &mut Criterion) {
    const FLOWS: u16 = 1024;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut w = worker(&gateway_rules(), 65536);
    let client = Ipv4Addr::new(192, 168, 10, 2);
    let mut buf = vec![0u8; 2048];
    let mut now = 10;
    let mut b = w.batch(NoEmit);
    let frames: Vec<Template> = (0..FLOWS)
        .map(|i| {
            let out = udp(client, 20_000 + i, SERVER, 5001, true);
            let back = udp(SERVER, 5001, GW_WAN, 20_000 + i, false);
            now += 100;
            assert!(matches!(
                run(&mut b, now, 0, &out, &mut buf),
                Action::Forward { iface: 1, .. }
            ));
            assert!(matches!(
                run(&mut b, now, 1, &back, &mut buf),
                Action::Forward { iface: 0, .. }
            ));
            Template::new(&out)
        })
        .collect();
    drop(b);
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    let mut next = 0usize;
    g.bench_function("forward_established_1024_flows_batch64", |b| {
        b.iter(|| {
            let mut b = w.batch(NoEmit);
            // As the worker loop does: the batch is shown to the prefetch
            // pass first.
            for k in 0..BATCH {
                let t = &frames[(next + k) % frames.len()];
                b.prefetch(0, &t.bytes[..t.len]);
            }
            for buf in bufs.iter_mut() {
                now += 100;
                std::hint::black_box(frames[next].forward(&mut b, now, buf));
                next = (next + 1) % frames.len();
            }
        })
    });
    let fast = w.stats().fast_path;
    assert_eq!(w.stats().dropped(), 0);
    g.finish();
    println!(
        "  1,024 flows: {:.1}% of packets took the fast path",
        100.0 * fast as f64 / w.stats().forwarded as f64
    );
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    new_connection_rows(
        &mut g,
        BenchmarkId::from_parameter("new_connections_batch64"),
        &gateway_rules(),
        400_000,
        false,
    );
    // As with the state sync (or the NAT log, or `conntrack -E`) running:
    // the workers record each event; the listener drains them (outside
    // the timing, on another core in a running gateway).
    new_connection_rows(
        &mut g,
        BenchmarkId::from_parameter("new_connections_events_recorded_batch64"),
        &gateway_rules(),
        400_000,
        true,
    );
    // New connections with `n` filter rules before the accepting one (the
    // rules every new connection's first packet is classified against).
    for n in RULE_COUNTS {
        new_connection_rows(
            &mut g,
            BenchmarkId::new("new_connections_rules_before_accept", n),
            &rules_with_prefix(n),
            100_000,
            false,
        );
    }
    g.finish();
}

/// The rule counts of the `*_rules_before_accept` rows.
const RULE_COUNTS: [usize; 4] = [10, 1_000, 10_000, 100_000];

/// New connections through `rules`, in batches, the table emptied by
/// expiry every `round` connections; with `events`, conntrack's events
/// recorded and drained as a listener does.
fn new_connection_rows(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    rules: &str,
    round: u32,
    events: bool,
) {
    // Steady state, as on a running gateway: a table whose memory has been
    // touched, emptied by expiry between rounds (outside the timing).
    let rules = rules.to_string();
    let round_len = round;
    let frame = |k: u32| {
        // Distinct clients, ports and servers (a NAT port space is per server
        // endpoint: one server would run out of ports at 64k).
        let client = Ipv4Addr::new(192, 168, 10, 2 + (k % 250) as u8);
        let server = Ipv4Addr::from(0xc633_0000 + (k % 65_536));
        udp(
            client,
            1024 + ((k / 250) % 60_000) as u16,
            server,
            5001,
            true,
        )
    };
    let mut now = 10u64;
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    let mut n: u32 = 0;
    let expire_all = |w: &mut Worker, now: &mut u64| {
        *now += 3_600 * 1_000_000_000;
        w.gateway().conntrack.gc(*now, usize::MAX);
        assert_eq!(w.gateway().conntrack.len(), 0);
    };
    // Built on first use (so that other benchmarks' profiles do not see it),
    // with the table's memory touched once.
    let mut state: Option<Worker> = None;
    let mut drained = Vec::with_capacity(4096);
    let mut lost = 0u64;
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let w = state.get_or_insert_with(|| {
                let mut w = worker(&rules, 1 << 20);
                let mut b = w.batch(NoEmit);
                for k in 0..round_len {
                    now += 100;
                    let f = frame(k);
                    std::hint::black_box(run(&mut b, now, 0, &f, &mut bufs[0]));
                }
                drop(b);
                expire_all(&mut w, &mut now);
                if events {
                    w.gateway().conntrack.events_subscribe();
                }
                w
            });
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if n + BATCH as u32 > round_len {
                    expire_all(w, &mut now);
                    n = 0;
                }
                let frames: Vec<Vec<u8>> = (0..BATCH as u32).map(|i| frame(n + i)).collect();
                n += BATCH as u32;
                let start = Instant::now();
                let mut b = w.batch(NoEmit);
                // As a port's rx loop does: the batch's lookups start
                // loading before the first frame is processed.
                for f in &frames {
                    b.prefetch(0, f);
                }
                for (f, buf) in frames.iter().zip(bufs.iter_mut()) {
                    now += 100;
                    std::hint::black_box(run(&mut b, now, 0, f, buf));
                }
                drop(b);
                total += start.elapsed();
                if events {
                    lost += w.gateway().conntrack.events_drain(&mut drained);
                    drained.clear();
                }
            }
            total
        })
    });
    if let Some(w) = &state {
        assert_eq!(w.stats().dropped(), 0, "{:?}", w.stats());
    }
    assert_eq!(lost, 0, "events lost");
}

/// The state sync's work for a batch of 64 new NATed connections (on its
/// own thread in a running gateway): coalescing the events, encoding the
/// entries as conntrackd's messages and packing them into datagrams.
fn sync_encode(c: &mut Criterion) {
    use xdpgw_control::sync::session::{Mode, Session, SessionConfig};
    use xdpgw_control::sync::{coalesce, entry};
    use xdpgw_dataplane::conntrack::{status, CtEvent, EventKind, Snapshot, TcpState};
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(BATCH as u64));
    let events: Vec<CtEvent> = (0..BATCH as u16)
        .map(|k| {
            let orig = Tuple {
                src: Ipv4Addr::new(192, 168, 10, 2),
                dst: SERVER,
                sport: 20_000 + k,
                dport: 443,
                proto: 6,
            };
            let mut reply = orig.invert();
            reply.dst = GW_WAN;
            reply.dport = 61_000 + k;
            CtEvent {
                kind: EventKind::New,
                at: Some(1),
                protoinfo: true,
                snap: Snapshot {
                    orig,
                    reply,
                    status: status::CONFIRMED | status::SRC_NAT,
                    tcp_state: TcpState::SynSent,
                    mark: 0,
                    expires: 120_000_000_000,
                    packets: [1, 0],
                    bytes: [60, 0],
                    icmp_type: 0,
                    icmp_code: 0,
                },
            }
        })
        .collect();
    for (name, mode) in [
        ("encode_64_new_ftfw", Mode::Ftfw),
        ("encode_64_new_notrack", Mode::Notrack),
    ] {
        let mut cfg = SessionConfig::new(mode, 1500);
        // Acknowledged at once in a real pair; here the queue is emptied
        // by its bound.
        cfg.resend_queue = 4096;
        let mut s = Session::new(cfg, 1, 0);
        g.bench_function(name, |b| {
            b.iter(|| {
                for (kind, snap) in coalesce(&events) {
                    s.send_ct(kind, &entry::from_snapshot(&snap, 0));
                }
                std::hint::black_box(s.flush(0))
            })
        });
    }
    g.finish();
}

fn conntrack_two_threads(c: &mut Criterion) {
    const ENTRIES: usize = 1_000_000;
    let ct = Conntrack::new(ConntrackConfig {
        max_entries: ENTRIES * 2,
        ..ConntrackConfig::default()
    });
    let tuple = |i: usize| Tuple {
        src: Ipv4Addr::from(0x0a00_0000 + (i as u32 / 50_000)),
        dst: SERVER,
        sport: 1024 + (i % 50_000) as u16,
        dport: 53,
        proto: 17,
    };
    let meta = |t: Tuple| PacketMeta {
        tuple: t,
        len: 64,
        tcp: None,
        icmp: None,
    };
    let filled = std::sync::Once::new();
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(2));
    g.bench_function("lookup_2_threads_1m_entries", |b| {
        b.iter_custom(|iters| {
            // Filled on first use, so that other benchmarks' profiles do not see it.
            filled.call_once(|| {
                for i in 0..ENTRIES {
                    if let Track::New(p) = ct.track(1, &meta(tuple(i))) {
                        ct.confirm(1, &p).expect("room");
                    }
                }
                assert_eq!(ct.len(), ENTRIES);
            });
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2usize {
                    let ct = &ct;
                    s.spawn(move || {
                        // A 64-bit LCG's high bits: every entry in turn (a
                        // 32-bit LCG taken modulo 10^6 cycled through 64).
                        let mut x = (t as u64 + 1) * 7919;
                        for _ in 0..iters {
                            x = x
                                .wrapping_mul(6_364_136_223_846_793_005)
                                .wrapping_add(1_442_695_040_888_963_407);
                            let i = (x >> 33) as usize % ENTRIES;
                            std::hint::black_box(ct.track(2, &meta(tuple(i))));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

/// A flood of new connections to a server endpoint whose MASQUERADE port
/// range (1024-65535) is exhausted: each one is refused (`nat_no_free_port`).
fn nat_exhausted(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let rules = gateway_rules();
    let mut w = worker(&rules, 1 << 17);
    let mut now = 10u64;
    let mut buf = vec![0u8; 2048];
    // 64,512 connections from one client keep their source ports: the range
    // is full.
    let mut b = w.batch(NoEmit);
    for sport in 1024..=65535u16 {
        now += 100;
        let f = udp(Ipv4Addr::new(192, 168, 10, 2), sport, SERVER, 5001, true);
        assert!(matches!(
            run(&mut b, now, 0, &f, &mut buf),
            Action::Forward { .. }
        ));
    }
    drop(b);
    let frames: Vec<Template> = (0..BATCH as u16)
        .map(|i| {
            Template::new(&udp(
                Ipv4Addr::new(192, 168, 10, 3),
                2000 + i,
                SERVER,
                5001,
                true,
            ))
        })
        .collect();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    g.bench_function("nat_exhausted_batch64", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut b = w.batch(NoEmit);
                for (f, buf) in frames.iter().zip(bufs.iter_mut()) {
                    now += 100;
                    buf[..64].copy_from_slice(&f.bytes);
                    let a = b.process(now, 0, buf, f.len);
                    debug_assert!(matches!(a, Action::Drop(_)));
                    std::hint::black_box(a);
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

/// What a restart with `state_file` adds to the forwarding gap per table
/// size: saving a full default-size table (262,144 entries, Linux's
/// `nf_conntrack_max` above 4 GiB) into bytes, and restoring it from bytes
/// into an empty table (the file's write and read come on top).
fn conntrack_save_restore(c: &mut Criterion) {
    use xdpgw_dataplane::conntrack::SavedTable;
    const ENTRIES: usize = 262_144;
    let cfg = ConntrackConfig {
        max_entries: ENTRIES,
        ..ConntrackConfig::default()
    };
    let ct = Conntrack::new(cfg.clone());
    for i in 0..ENTRIES {
        let t = Tuple {
            src: Ipv4Addr::from(0x0a00_0000 + (i as u32 / 50_000)),
            dst: SERVER,
            sport: 1024 + (i % 50_000) as u16,
            dport: 53,
            proto: 17,
        };
        let pkt = PacketMeta {
            tuple: t,
            len: 64,
            tcp: None,
            icmp: None,
        };
        if let Track::New(p) = ct.track(1, &pkt) {
            ct.confirm(1, &p).expect("room");
        }
    }
    assert_eq!(ct.len(), ENTRIES);
    let mut g = c.benchmark_group("conntrack_state_file");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.bench_function("save_262144_entries", |b| {
        b.iter(|| {
            SavedTable {
                saved_at: 0,
                entries: ct.save(2),
            }
            .encode()
        })
    });
    let bytes = SavedTable {
        saved_at: 0,
        entries: ct.save(2),
    }
    .encode();
    g.bench_function("restore_262144_entries", |b| {
        b.iter_batched(
            || Conntrack::new(cfg.clone()),
            |fresh| {
                let table = SavedTable::decode(&bytes).expect("decodes");
                let r = fresh.restore(2, &table.entries, 0);
                assert_eq!(r.restored, ENTRIES);
                fresh
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// As the worker driver does: a frame received on `port` through
/// `links.ingress`, the pipeline and `links.egress`; the port it leaves by
/// and its length.
#[inline]
fn forward_linked(
    b: &mut Batch<NoEmit>,
    links: &Links,
    now: u64,
    port: usize,
    buf: &mut [u8],
    len: usize,
) -> (usize, usize) {
    let Ok((iface, len)) = links.ingress(port, buf, len) else {
        panic!("no interface");
    };
    match b.process(now, iface, buf, len) {
        Action::Forward { iface, len } => links.egress(iface, buf, len).expect("room for a tag"),
        a => panic!("not forwarded: {a:?}"),
    }
}

fn established_flow_links(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut bufs = vec![vec![0u8; 2048]; BATCH];

    // No VLANs: interface k is port k (the identity: one branch).
    let (mut w, frame) = established(&gateway_rules());
    let gw = Arc::clone(w.gateway());
    let mut now = 10;
    g.bench_function("forward_established_masquerade_links_batch64", |b| {
        b.iter(|| {
            let mut b = w.batch(NoEmit);
            for buf in bufs.iter_mut() {
                now += 100;
                if let Some(first) = buf.first_chunk_mut::<64>() {
                    *first = frame.bytes;
                }
                std::hint::black_box(forward_linked(&mut b, &gw.links, now, 0, buf, frame.len));
            }
        })
    });
    assert_eq!(w.stats().dropped(), 0);

    // From VLAN 10 of the trunk lan0 to wan0: the tag removed (MASQUERADE
    // as above).
    let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n\
                 *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                 -A FORWARD -i lan0.10 -o wan0 -j ACCEPT\nCOMMIT\n";
    let gw = xdpgw_vm_tests::memlab::vlan_gateway(rules);
    gw.neigh.learn(0, Ipv4Addr::new(10, 10, 0, 2), CLIENT_MAC);
    gw.neigh.learn(2, SERVER, SERVER_MAC);
    let mut w = Worker::new(Arc::clone(&gw), 1);
    let mut out = udp(Ipv4Addr::new(10, 10, 0, 2), 40000, SERVER, 5001, true);
    out[..6].copy_from_slice(&xdpgw_vm_tests::memlab::LAN_MAC);
    let tagged = xdpgw_vm_tests::frames::tagged(&out, 10);
    // 60 bytes and the tag.
    let mut template = [0u8; 64];
    template.copy_from_slice(&tagged);
    let mut now = 10;
    {
        let mut b = w.batch(NoEmit);
        let mut buf = vec![0u8; 2048];
        buf[..64].copy_from_slice(&template);
        assert_eq!(
            forward_linked(&mut b, &gw.links, 1, 0, &mut buf, 64),
            (1, 60)
        );
        // The reply: back to VLAN 10, tagged.
        let back = udp(SERVER, 5001, GW_WAN, 40000, false);
        buf[..back.len()].copy_from_slice(&back);
        assert_eq!(
            forward_linked(&mut b, &gw.links, 2, 1, &mut buf, back.len()),
            (0, 64)
        );
    }
    g.bench_function("forward_established_vlan_masquerade_links_batch64", |b| {
        b.iter(|| {
            let mut b = w.batch(NoEmit);
            for buf in bufs.iter_mut() {
                now += 100;
                if let Some(first) = buf.first_chunk_mut::<64>() {
                    *first = template;
                }
                std::hint::black_box(forward_linked(&mut b, &gw.links, now, 0, buf, 64));
            }
        })
    });
    assert_eq!(w.stats().dropped(), 0);
    // (Unless a filter left the benchmark out: then only the setup ran.)
    assert!(w.stats().forwarded < 100 || w.stats().fast_path * 10 > w.stats().forwarded * 9);
    g.finish();
}

/// UDP datagrams of 3,008 bytes of data (fragments of 1,480, 1,480 and 48
/// bytes, in order, a new IP id each) of one flow through MASQUERADE: each
/// reassembled in the shared table, tracked and NATed as one packet, and
/// sent on in its 3 fragments (built, then handed to a sink that drops
/// them: the same `Emit` type as the other benchmarks, so that the worker
/// is compiled once, as in `xdpgw run`).
fn reassembly(c: &mut Criterion) {
    const DATAGRAMS: usize = 21;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(DATAGRAMS as u64));
    let mut w = worker(&gateway_rules(), 65536);
    let whole = FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: Ipv4Addr::new(192, 168, 10, 2),
        dst: SERVER,
        ttl: 64,
        tos: 0,
        id: 1,
        df: false,
        l4: L4Spec::Udp {
            sport: 40000,
            dport: 5001,
            payload: vec![0xab; 3000],
        },
    }
    .build();
    let frags = fragments(&whole, &[(0, 1480), (1480, 1480), (2960, 48)]);
    let mut buf = vec![0u8; 2048];
    let (mut now, mut id) = (10u64, 0u16);
    g.bench_function("reassemble_3_fragment_udp_masquerade", |b| {
        b.iter(|| {
            let mut batch = w.batch(NoEmit);
            for _ in 0..DATAGRAMS {
                id = id.wrapping_add(1);
                for f in &frags {
                    now += 100;
                    buf[..f.len()].copy_from_slice(f);
                    buf[18..20].copy_from_slice(&id.to_be_bytes());
                    buf[24..26].copy_from_slice(&[0, 0]);
                    let sum = checksum(&buf[14..34]);
                    buf[24..26].copy_from_slice(&sum.to_be_bytes());
                    std::hint::black_box(batch.process(now, 0, &mut buf, f.len()));
                }
            }
        })
    });
    let st = w.stats();
    assert_eq!(st.dropped(), 0, "{st:?}");
    assert_eq!(st.frag_creates, 3 * st.reasm_oks);
    assert_eq!(w.gateway().frags.mem(), 0);
    g.finish();
}

/// A worker running conf/gateway.rules with a blocklist rule first in
/// FORWARD (`-m set --match-set bl src -j DROP`) whose hash:net set holds
/// `n` elements, half /24 networks and half /32 addresses, none of them the
/// client's: every packet takes the full traversal (a rule with a set is
/// never cached) and probes the set's two prefix lengths.
fn set_worker(n: u32) -> (Worker, Template) {
    use xdpgw_dataplane::ipset::{Elem, SetOptions, SetTable, SetType};
    let mut sets = SetTable::default();
    let opts = SetOptions {
        maxelem: 2_000_000,
        ..SetOptions::default()
    };
    sets.create("bl", SetType::HashNet, opts, false)
        .expect("create");
    let set = sets.set_mut("bl").expect("set");
    for i in 0..n {
        // 10.0.0.0/8 upwards: never 192.168.10.2.
        let base = 0x0a00_0000u32 + (i << 8);
        let e = if i % 2 == 0 {
            Elem::addr(base, 24)
        } else {
            Elem::addr(base | 7, 32)
        };
        set.add(&e, None, false, 0).expect("add");
    }
    let rules = gateway_rules().replacen(
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
        "-A FORWARD -m set --match-set bl src -j DROP\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
        1,
    );
    let file =
        xdpgw_control::parse::load_str_with_sets(&rules, &sets).unwrap_or_else(|e| panic!("{e}"));
    let cfg = conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        ConntrackConfig {
            max_entries: 65536,
            ..ConntrackConfig::default()
        },
    );
    let gw = Arc::new(Gateway::with_sets(cfg, sets, &file.set).unwrap_or_else(|e| panic!("{e}")));
    gw.neigh
        .learn(0, Ipv4Addr::new(192, 168, 10, 2), CLIENT_MAC);
    gw.neigh.learn(1, SERVER, SERVER_MAC);
    let mut w = Worker::new(gw, 1);
    let t = open_flow(&mut w);
    (w, t)
}

/// The per-packet cost of a FORWARD rule matching against a hash:net set
/// of 10 and of 1,000,000 elements (the kernel's hash:net design: one hash
/// per prefix length present, so the same cost for both), and the cost of
/// changing the large set at run time (`xdpgw ipset add`: the set is copied
/// and the copy published).
fn set_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    for n in [10u32, 1_000_000] {
        let (mut w, frame) = set_worker(n);
        let mut now = 10;
        g.bench_with_input(BenchmarkId::new("forward_set_hash_net", n), &n, |b, _| {
            b.iter(|| forward_batches(&mut w, &frame, &mut bufs, &mut now))
        });
        assert_eq!(w.stats().dropped(), 0);
        assert_eq!(w.stats().fast_path, 0, "a rule with a set is never cached");
    }
    g.finish();
    // The lookup alone, for 4,096 different sources in turn (10.0.0.0/8,
    // where the large set's elements are: its probes miss the caches).
    let mut g = c.benchmark_group("ipset");
    for n in [10u32, 1_000_000] {
        let (w, _) = set_worker(n);
        let sets = w.gateway().sets.snapshot();
        let slot = sets.slot("bl").expect("set");
        let opts = xdpgw_dataplane::ipset::LookupOpts {
            flags: xdpgw_dataplane::ipset::DimFlags { src: 1, dim: 1 },
            return_nomatch: false,
            update_counters: true,
            packets: None,
            bytes: None,
        };
        let packets: Vec<xdpgw_dataplane::ipset::SetPacket> = (0..4096u32)
            .map(|i| xdpgw_dataplane::ipset::SetPacket {
                src: 0x0a00_0000 + i.wrapping_mul(0x9e37_79b9) % 0x00ff_ffff,
                dst: 0xcb00_7109,
                proto: 17,
                has_ports: true,
                sport: 40000,
                dport: 5001,
                len: 64,
            })
            .collect();
        g.throughput(Throughput::Elements(packets.len() as u64));
        g.bench_with_input(BenchmarkId::new("lookup_4096_sources", n), &n, |b, _| {
            b.iter(|| {
                packets
                    .iter()
                    .filter(|p| sets.matches(slot, p, &opts, 0))
                    .count()
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("ipset");
    g.sample_size(10);
    let (w, _) = set_worker(1_000_000);
    let gw = w.gateway();
    let mut i = 0u32;
    g.bench_function("add_to_1m_element_set", |b| {
        b.iter(|| {
            i += 1;
            gw.sets
                .update(|t| {
                    let e = xdpgw_dataplane::ipset::Elem::addr(0x0b00_0000 + i, 32);
                    t.set_mut("bl").and_then(|s| s.add(&e, None, true, 0))
                })
                .expect("add")
        })
    });
    g.finish();
}

/// The IPv6 plan of the lab: the client and server, the gateway's wan0.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 9);
const GW_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);

/// A dual-stack worker: conf/gateway.toml's interfaces with fd00:10::1/64
/// and 2001:db8:113::1/64, a default route via 2001:db8:113::254,
/// conf/gateway.rules and conf/gateway.rules6, the neighbours resolved.
fn worker6(max_entries: usize) -> Worker {
    let set = load_rules_str("bench.rules", &gateway_rules()).unwrap_or_else(|e| panic!("{e}"));
    let rules6 =
        xdpgw_control::load_rules6_str("gateway.rules6", include_str!("../../conf/gateway.rules6"))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        ConntrackConfig {
            max_entries,
            ..ConntrackConfig::default()
        },
    );
    let v6 = |a: [u16; 3]| (Ipv6Addr::new(a[0], a[1], a[2], 0, 0, 0, 0, 1), 64);
    cfg.ifaces[0].addr6 = vec![v6([0xfd00, 0x10, 0])];
    cfg.ifaces[1].addr6 = vec![v6([0x2001, 0xdb8, 0x113])];
    let up = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x254);
    cfg.routes6 = vec![StaticRoute {
        to: Prefix::new(Ipv6Addr::UNSPECIFIED, 0).expect("::/0"),
        via: up,
        dev: None,
    }];
    let gw = Arc::new(Gateway::new(cfg, &set).unwrap_or_else(|e| panic!("{e}")));
    gw.install6(&rules6).unwrap_or_else(|e| panic!("{e}"));
    gw.neigh6.learn(0, CLIENT6, CLIENT_MAC);
    gw.neigh6.learn(1, SERVER6, SERVER_MAC);
    gw.neigh6.learn(1, up, SERVER_MAC);
    Worker::new(gw, 1)
}

/// An IPv6 UDP frame with 18 bytes of payload (80 bytes on the wire).
fn udp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, from_lan: bool) -> Vec<u8> {
    let (dst_mac, src_mac) = if from_lan {
        (LAN_MAC, CLIENT_MAC)
    } else {
        (WAN_MAC, SERVER_MAC)
    };
    let mut udp = Vec::with_capacity(26);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&26u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0xab; 18]);
    let c = xdpgw_dataplane::wire::checksum::l4_v6(src, dst, 17, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + 26);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&26u16.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&udp);
    f
}

/// The established-flow and new-connection rows for IPv6 (NAT66
/// MASQUERADE from the ULA prefix, conf/gateway.rules6).
fn ipv6(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut w = worker6(65536);
    let out = udp6(CLIENT6, 40000, SERVER6, 5001, true);
    let back = udp6(SERVER6, 5001, GW_WAN6, 40000, false);
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    {
        let mut b = w.batch(NoEmit);
        assert!(matches!(
            run(&mut b, 1, 0, &out, &mut bufs[0]),
            Action::Forward { iface: 1, .. }
        ));
        assert!(matches!(
            run(&mut b, 2, 1, &back, &mut bufs[0]),
            Action::Forward { iface: 0, .. }
        ));
    }
    let mut now = 10;
    // Copied into the frame as IPv4's 64-byte template is (80 bytes).
    let template = Template::<80>::new(&out);
    g.bench_function("forward_established_masquerade_ipv6_batch64", |b| {
        b.iter(|| {
            let mut batch = w.batch(NoEmit);
            for buf in bufs.iter_mut() {
                now += 100;
                std::hint::black_box(template.forward(&mut batch, now, buf));
            }
        })
    });
    assert_eq!(w.stats().dropped(), 0, "{:?}", w.stats());
    assert!(
        w.stats().forwarded < 100 || w.stats().fast_path * 10 > w.stats().forwarded * 9,
        "{} of {} IPv6 packets on the fast path",
        w.stats().fast_path,
        w.stats().forwarded
    );

    const ROUND: u32 = 400_000;
    let frame = |k: u32| {
        let client = Ipv6Addr::from(u128::from(CLIENT6) + u128::from(k % 250));
        // Off-link servers (by the default route), as the IPv4 row's.
        let far = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0);
        let server = Ipv6Addr::from(u128::from(far) + u128::from(k % 65_536));
        udp6(
            client,
            1024 + ((k / 250) % 60_000) as u16,
            server,
            5001,
            true,
        )
    };
    let mut w = worker6(1 << 20);
    let mut n: u32 = 0;
    let expire_all = |w: &mut Worker, now: &mut u64| {
        *now += 3_600 * 1_000_000_000;
        if let Some(ct) = &w.gateway().conntrack6 {
            ct.gc(*now, usize::MAX);
            assert_eq!(ct.len(), 0);
        }
    };
    g.bench_function("new_connections_ipv6_batch64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if n + BATCH as u32 > ROUND {
                    expire_all(&mut w, &mut now);
                    n = 0;
                }
                let frames: Vec<Vec<u8>> = (0..BATCH as u32).map(|i| frame(n + i)).collect();
                n += BATCH as u32;
                let start = Instant::now();
                let mut b = w.batch(NoEmit);
                // The prefetch pass, as IPv4's row and a port's rx loop.
                for f in &frames {
                    b.prefetch(0, f);
                }
                for (f, buf) in frames.iter().zip(bufs.iter_mut()) {
                    now += 100;
                    std::hint::black_box(run(&mut b, now, 0, f, buf));
                }
                drop(b);
                total += start.elapsed();
            }
            total
        })
    });
    assert_eq!(w.stats().dropped(), 0, "{:?}", w.stats());
    g.finish();
}

criterion_group!(
    benches,
    ipv6,
    set_match,
    established_flow,
    established_flow_links,
    established_flows,
    new_connections,
    sync_encode,
    conntrack_two_threads,
    nat_exhausted,
    conntrack_save_restore,
    reassembly
);
criterion_main!(benches);
