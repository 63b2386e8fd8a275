//! Any text: the rule parser never panics, and whatever it accepts prints in
//! iptables-save form and parses back to the same rule set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdpgw_control::{load_rules_str, save};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(set) = load_rules_str("fuzz", &text) {
        let printed = save::render_with(&set, true);
        match load_rules_str("printed", &printed) {
            Ok(back) => assert_eq!(back, set, "{printed}"),
            Err(e) => panic!("printed form does not parse: {e}\n{printed}"),
        }
    }
});
