//! Any bytes as an Ethernet frame through the IPv6 wire functions
//! (`xdpgw_vm_tests::fuzz::wire6`, which the stable harness
//! `vm-tests/tests/fuzz.rs` runs in `cargo test` too): the parse never
//! panics and reports offsets within the frame; rewrites keep right
//! checksums right; the ICMPv6 errors and resets built about it parse and
//! verify.
//!
//! Seed corpus: `fuzz/seeds/wire6/`, frames captured from Linux 6.18 and
//! radvd (the fixtures of `dataplane/src/wire/ipv6/fixture.rs`) and two
//! with extension headers. Run:
//!
//! ```sh
//! cd fuzz && mkdir -p corpus/wire6 &&
//!     cargo +nightly fuzz run wire6 corpus/wire6 seeds/wire6
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdpgw_vm_tests::fuzz::wire6;

fuzz_target!(|data: &[u8]| wire6::run(data));
