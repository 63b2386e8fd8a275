//! Any bytes as a datagram of conntrackd's sync protocol
//! (`xdpgw_vm_tests::fuzz::sync_wire`, which the stable harness
//! `vm-tests/tests/fuzz.rs` runs in `cargo test` too): the parse never
//! panics and keeps within the datagram, an entry it reads builds back to
//! itself, and FTFW and NOTRACK sessions take it and answer with messages
//! that parse.
//!
//! Seed corpus: `fuzz/seeds/sync_wire/`, datagrams captured between two
//! conntrackd 1.4.7 (FTFW, NATed TCP, UDP and ICMP entries, control
//! messages, a resync answer of several messages). Run:
//!
//! ```sh
//! cd fuzz && mkdir -p corpus/sync_wire &&
//!     cargo +nightly fuzz run sync_wire corpus/sync_wire seeds/sync_wire
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdpgw_vm_tests::fuzz::sync_wire;

fuzz_target!(|data: &[u8]| sync_wire::run(data));
