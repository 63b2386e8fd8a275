//! Any frame on any interface: the pipeline of a gateway built from
//! conf/gateway.rules never panics, and every frame is accounted for
//! (`xdpgw_vm_tests::fuzz::pipeline`, which the stable harness
//! `vm-tests/tests/fuzz.rs` runs in `cargo test` too; the gateway here is
//! one for the whole run, so state carries over between inputs).
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
//! `XDPGW_WRITE_SEEDS=1 cargo test -p xdpgw-vm-tests --test fuzz_seeds`).
//! Run:
//!
//! ```sh
//! cd fuzz && mkdir -p corpus/pipeline &&
//!     cargo +nightly fuzz run pipeline corpus/pipeline seeds/pipeline
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdpgw_vm_tests::fuzz::pipeline;

fuzz_target!(|data: &[u8]| pipeline::run(&pipeline::shared_gateway(), data));
