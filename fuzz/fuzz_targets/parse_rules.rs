//! Any text: the rule parser never panics, its errors name a place in the
//! text, and whatever it accepts prints in iptables-save form and parses
//! back to the same rule set (`xdpgw_vm_tests::fuzz::rules`, which the
//! stable harness `vm-tests/tests/fuzz.rs` runs in `cargo test` too).
//!
//! ```sh
//! cd fuzz && mkdir -p corpus/parse_rules &&
//!     cargo +nightly fuzz run parse_rules corpus/parse_rules seeds/parse_rules
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xdpgw_vm_tests::fuzz::rules::run(data));
