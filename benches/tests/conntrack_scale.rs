//! The 16 M-entry conntrack bench's scenario (`conntrack_scale`) on a
//! small table with a simulated clock: what it measures holds (the fill
//! reaches its mark, the churn keeps the table nearly full without
//! dropping anything, lookups find live entries, the sweeps remove what
//! they should), so that the figures of the full-size bench are about a
//! working table. No timing is checked.

use xdpgw_benches::conntrack_scale::{run, Clock, ScaleConfig};

#[test]
fn a_small_table_through_the_scale_scenario() {
    for buckets in [None, Some(20_000)] {
        let cfg = ScaleConfig {
            entries: 20_000,
            buckets,
            fill: 0.9,
            churn: 5_000,
            lookups: 2_000,
            // The fill (18,000 connections) takes 18 s of the clock.
            clock: Clock::Simulated {
                ns_per_packet: 1_000_000,
            },
        };
        let r = run(&cfg);
        assert!(r.layout.buckets() >= 20_000);
        assert_eq!(r.filled, 18_000);
        assert_eq!(r.last_tenth.0, 1_800);
        // The churn: entries expire about as fast as new ones come, and the
        // worker's paced sweep removes them; nothing is refused or evicted.
        assert!(r.churn_expired >= 4_000, "{r:?}");
        assert!(r.churn_len.0 >= 16_000 && r.churn_len.1 < 20_000, "{r:?}");
        assert_eq!(
            (r.dropped, r.ct_drop, r.ct_early_drop, r.ct_insert_failed),
            (0, 0, 0, 0),
            "{r:?}"
        );
        assert_eq!(r.inserted, 23_000);
        assert_eq!(r.lookup_hits, 3 * 2_000, "{r:?}");
        assert_eq!(r.sweep_all.0, r.sweep_idle.0 - r.sweep_idle.2);
    }
}
