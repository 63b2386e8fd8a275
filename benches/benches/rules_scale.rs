//! The price of long rule sets, interleaved (on a shared machine, rows run
//! one after the other are not comparable): the rows
//! `forward_full_traversal_rules_before_accept` and
//! `new_connections_rules_before_accept` of the pipeline bench, with 10,
//! 1,000, 10,000 and 100,000 non-matching filter rules before the
//! accepting one, measured in turns, round after round. Prints each rule
//! count's best and median round (ns per packet) and their ratio to 10
//! rules'.
//!
//! `cargo bench -p xdpgw-benches --bench rules_scale`

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use xdpgw_benches::rules_with_prefix;
use xdpgw_control::load_rules_str;
use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::pipeline::NoEmit;
use xdpgw_dataplane::worker::Worker;
use xdpgw_vm_tests::conf_gateway_config;
use xdpgw_vm_tests::frames::{FrameSpec, L4Spec, Mac};

const LAN_MAC: Mac = [0x02, 0, 0, 0, 1, 1];
const WAN_MAC: Mac = [0x02, 0, 0, 0, 2, 1];
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0x0a, 2];
const SERVER_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 9];
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const COUNTS: [usize; 4] = [10, 1_000, 10_000, 100_000];
const ROUNDS: usize = 21;
/// Batches of 64 per row and round.
const BATCHES: usize = 100;
const BATCH: usize = 64;

fn worker(rules: &str) -> Worker {
    let set = load_rules_str("bench.rules", rules).unwrap_or_else(|e| panic!("{e}"));
    let cfg = conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        ConntrackConfig {
            max_entries: 1 << 20,
            ..ConntrackConfig::default()
        },
    );
    let gw = Arc::new(Gateway::new(cfg, &set).unwrap_or_else(|e| panic!("{e}")));
    for k in 0..=255u8 {
        gw.neigh
            .learn(0, Ipv4Addr::new(192, 168, 10, k), CLIENT_MAC);
    }
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

/// One row: a worker and how it runs a batch.
struct Row {
    w: Worker,
    now: u64,
    /// New connections made so far (the next one's number).
    next: u32,
    established: Vec<u8>,
    new_flows: bool,
    bufs: Vec<Vec<u8>>,
}

impl Row {
    fn new(rules: &str, new_flows: bool) -> Row {
        let mut w = worker(rules);
        let client = Ipv4Addr::new(192, 168, 10, 2);
        let out = udp(client, 40000, SERVER, 5001, true);
        let back = udp(SERVER, 5001, GW_WAN, 40000, false);
        let mut buf = vec![0u8; 2048];
        {
            let mut b = w.batch(NoEmit);
            for (f, iface) in [(&out, 0), (&back, 1)] {
                buf[..f.len()].copy_from_slice(f);
                assert!(matches!(
                    b.process(1, iface, &mut buf, f.len()),
                    Action::Forward { .. }
                ));
            }
        }
        w.set_fast_path(false);
        Row {
            w,
            now: 10,
            next: 0,
            established: out,
            new_flows,
            bufs: vec![vec![0u8; 2048]; BATCH],
        }
    }

    /// Runs `BATCHES` batches; ns per packet.
    fn round(&mut self) -> f64 {
        let frames: Vec<Vec<u8>> = if self.new_flows {
            (0..BATCHES * BATCH)
                .map(|_| {
                    let k = self.next;
                    self.next += 1;
                    let client = Ipv4Addr::new(192, 168, 10, 2 + (k % 250) as u8);
                    let server = Ipv4Addr::from(0xc633_0000 + (k % 65_536));
                    udp(
                        client,
                        1024 + ((k / 250) % 60_000) as u16,
                        server,
                        5001,
                        true,
                    )
                })
                .collect()
        } else {
            vec![self.established.clone(); BATCH]
        };
        let start = Instant::now();
        for batch in 0..BATCHES {
            let mut b = self.w.batch(NoEmit);
            let at = if self.new_flows { batch * BATCH } else { 0 };
            let frames = &frames[at..at + BATCH];
            if self.new_flows {
                for f in frames {
                    b.prefetch(0, f);
                }
            }
            for (f, buf) in frames.iter().zip(self.bufs.iter_mut()) {
                self.now += 100;
                buf[..f.len()].copy_from_slice(f);
                let a = b.process(self.now, 0, buf, f.len());
                assert!(matches!(a, Action::Forward { .. }), "{a:?}");
            }
        }
        start.elapsed().as_nanos() as f64 / (BATCHES * BATCH) as f64
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported.
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/gateway.rules"
    ))
    .expect("conf/gateway.rules");
    for (name, new_flows) in [
        ("forward_full_traversal_rules_before_accept", false),
        ("new_connections_rules_before_accept", true),
    ] {
        let mut rows: Vec<Row> = COUNTS
            .iter()
            .map(|n| Row::new(&rules_with_prefix(&base, *n), new_flows))
            .collect();
        // Warm up: every row once.
        for r in rows.iter_mut() {
            r.round();
        }
        let mut times = vec![Vec::with_capacity(ROUNDS); COUNTS.len()];
        for _ in 0..ROUNDS {
            for (r, t) in rows.iter_mut().zip(times.iter_mut()) {
                t.push(r.round());
            }
        }
        let stats: Vec<(f64, f64)> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                (t[0], t[t.len() / 2])
            })
            .collect();
        for (n, (best, median)) in COUNTS.iter().zip(&stats) {
            println!(
                "{name}/{n}: best {best:.0} ns/packet, median {median:.0} ns ({:.2}x / {:.2}x of 10 rules)",
                best / stats[0].0,
                median / stats[0].1
            );
        }
        for r in &rows {
            assert_eq!(r.w.stats().dropped(), 0, "{:?}", r.w.stats());
        }
    }
}
