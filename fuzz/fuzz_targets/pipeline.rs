//! Any frame on any interface: the pipeline of a gateway built from
//! conf/gateway.rules never panics, and every frame is accounted for.
//!
//! An input is one byte that selects the interface (`byte % 3`: 0 lan0,
//! 1 wan0, 2 none) and the time (`byte << 20` ns), then the frame.
//!
//! Seed corpus: `fuzz/seeds/pipeline/`, 27 valid frames for this gateway
//! (ARP request and reply, ping to the gateway and through it, a TCP
//! conversation through MASQUERADE from SYN to the last ACK, TCP to the
//! REJECTed, REDIRECTed, NOTRACKed and DSCP-marked ports, UDP both ways,
//! ICMP errors quoting TCP and UDP, TTL 1), generated with checksums from
//! scratch by `vm-tests/tests/fuzz_seeds.rs`, which also checks that each
//! has its intended effect (regenerate:
//! `XDPGW_WRITE_SEEDS=1 cargo test -p xdpgw-vm-tests --test fuzz_seeds`;
//! keep its gateway in step with the one here). Run:
//!
//! ```sh
//! cd fuzz && mkdir -p corpus/pipeline &&
//!     cargo +nightly fuzz run pipeline corpus/pipeline seeds/pipeline
//! ```
#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::gateway::{Gateway, GatewayConfig, IfaceConfig};
use xdpgw_dataplane::log::LogEntry;
use xdpgw_dataplane::port::{MemHost, MemQueue};
use xdpgw_dataplane::rule::{Ipv4Net, Log};
use xdpgw_dataplane::worker::{Driver, Worker};

fn gateway() -> Arc<Gateway> {
    static GW: OnceLock<Arc<Gateway>> = OnceLock::new();
    Arc::clone(GW.get_or_init(|| {
        let rules = xdpgw_control::load_rules_str(
            "gateway.rules",
            include_str!("../../conf/gateway.rules"),
        )
        .expect("conf/gateway.rules loads");
        let iface = |name: &str, last: u8, addr: Ipv4Addr| IfaceConfig {
            name: name.into(),
            mac: [2, 0, 0, 0, last, 1],
            addr,
            prefix: 24,
            mtu: 1500,
        };
        let cfg = GatewayConfig {
            ifaces: vec![
                iface("lan0", 1, Ipv4Addr::new(192, 168, 10, 1)),
                iface("wan0", 2, Ipv4Addr::new(203, 0, 113, 1)),
            ],
            routes: vec![(
                Ipv4Net::with_prefix(Ipv4Addr::UNSPECIFIED, 0).expect("net"),
                Ipv4Addr::new(203, 0, 113, 254),
            )],
            conntrack: ConntrackConfig {
                max_entries: 4096,
                shards: 16,
                ..ConntrackConfig::default()
            },
            icmp: Default::default(),
        };
        let gw = Arc::new(Gateway::new(cfg, &rules).expect("gateway"));
        gw.neigh
            .learn(0, Ipv4Addr::new(192, 168, 10, 2), [2, 0, 0, 0, 10, 2]);
        gw.neigh
            .learn(1, Ipv4Addr::new(203, 0, 113, 254), [2, 0, 0, 0, 11, 254]);
        gw
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, frame)) = data.split_first() else {
        return;
    };
    // The worker driver over in-memory queues: the frame arrives on one of
    // the two interfaces or on none; a round then, and another much later.
    let mut driver = Driver::new(
        Worker::new(gateway(), 1),
        vec![MemQueue::new(2)],
        Some(MemHost::new(2)),
    );
    driver.queues_mut()[0].arrive(usize::from(first % 3), frame);
    let mut logs: Vec<(Option<Log>, LogEntry)> = Vec::new();
    driver.round(u64::from(first) << 20, &mut logs);
    driver.round(1 << 40, &mut logs);
    assert_eq!(driver.worker().stats().rx, 1);
    assert!(driver.queues()[0].sent.iter().all(|(_, f)| f.len() <= 2048));
});
