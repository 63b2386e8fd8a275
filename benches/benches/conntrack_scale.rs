//! A 16,000,000-entry conntrack table (`[conntrack] max = 16000000`): its
//! memory, new connections per second while it fills and when it is
//! nearly full (with expiry), lookups per second, and the cost of sweeping
//! it for expired entries. The scenario is
//! `xdpgw_benches::conntrack_scale` (described there).
//!
//! Run: `cargo bench -p xdpgw-benches --bench conntrack_scale` (about a
//! minute a round, 5 GiB of memory). Environment:
//!
//! - `CT_SCALE_ENTRIES` (default 16000000): `nf_conntrack_max`;
//! - `CT_SCALE_BUCKETS`: `nf_conntrack_buckets` (default: from the max);
//! - `CT_SCALE_ROUNDS` (default 3): rounds, each in a new process (a
//!   second table in the same process reuses the first one's memory,
//!   already on huge pages); the machine is shared: compare the rounds;
//! - `CT_SCALE_CHURN` (default a quarter of the entries): new connections
//!   of the churn phase;
//! - `CT_SCALE_LOOKUPS` (default 4000000): lookups per thread.
//!
//! Without `--bench` (`cargo test --benches`) it runs one round on 100,000
//! entries. For comparison: VPP's NAT44-ED creates 0.49 M sessions per
//! second per core at 16.5 M sessions (CSIT's connections-per-second test,
//! 262,144 inside hosts with 63 ports each, packets through real NICs).

use xdpgw_benches::conntrack_scale::{run, Clock, ScaleConfig, ScaleReport};
use xdpgw_dataplane::conntrack::{ConntrackConfig, MemInfo};

fn env(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / f64::from(1u32 << 20))
}

fn mega(r: f64) -> String {
    format!("{:.2} M/s", r / 1e6)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let entries = env("CT_SCALE_ENTRIES").unwrap_or(if bench { 16_000_000 } else { 100_000 });
    let buckets = env("CT_SCALE_BUCKETS");
    let rounds = env("CT_SCALE_ROUNDS").unwrap_or(if bench { 3 } else { 1 });
    let cfg = ScaleConfig {
        entries,
        buckets,
        fill: 0.9,
        churn: env("CT_SCALE_CHURN").unwrap_or(entries / 4),
        lookups: env("CT_SCALE_LOOKUPS").unwrap_or(if bench { 4_000_000 } else { 100_000 }),
        clock: Clock::Real,
    };
    let layout = ConntrackConfig {
        max_entries: entries,
        buckets,
        ..ConntrackConfig::default()
    }
    .layout();
    if let Some(mem) = MemInfo::read() {
        // The table, the frames and the process around them.
        if layout.bytes() + (1 << 30) > mem.available {
            println!(
                "skipping: a table of {entries} entries needs {} at its maximum, {} available",
                mib(layout.bytes()),
                mib(mem.available)
            );
            return;
        }
    }
    println!(
        "conntrack_scale: max {entries}, buckets {} ({} shards, {} slots and {} buckets each), \
         {} at the maximum ({} preallocated); fill {:.0} %, churn {}, lookups {} per thread, \
         {rounds} round(s)",
        layout.buckets(),
        layout.shards,
        layout.slots_per_shard,
        layout.buckets_per_shard,
        mib(layout.bytes()),
        mib(layout.preallocated_bytes()),
        cfg.fill * 100.0,
        cfg.churn,
        cfg.lookups,
    );
    // Each round in a process of its own (this program again, with
    // CT_SCALE_ROUND set), so that each builds its table from scratch.
    if let Ok(round) = std::env::var("CT_SCALE_ROUND") {
        let r = run(&cfg);
        print_round(&round, entries, &r);
        println!(
            "{FIGURES} {} {} {} {} {}",
            ScaleReport::rate(r.filled, r.fill_time),
            ScaleReport::rate(r.last_tenth.0, r.last_tenth.1),
            ScaleReport::rate(r.churned, r.churn_time),
            ScaleReport::rate(r.lookups_1.0, r.lookups_1.1),
            ScaleReport::rate(r.lookups_2.0, r.lookups_2.1),
        );
        return;
    }
    let exe = std::env::current_exe().expect("this bench's path");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut figures: Vec<Vec<f64>> = Vec::new();
    for round in 1..=rounds {
        let out = std::process::Command::new(&exe)
            .args(&args)
            .env("CT_SCALE_ROUND", round.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run a round");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            match line.strip_prefix(FIGURES) {
                Some(f) => figures.push(
                    f.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect(),
                ),
                None if !line.starts_with("conntrack_scale: ") => println!("{line}"),
                None => {}
            }
        }
        assert!(out.status.success(), "round {round} failed: {}", out.status);
    }
    if figures.len() > 1 {
        println!("over {} rounds (lowest..highest):", figures.len());
        let names = [
            "fill",
            "last tenth",
            "churn with expiry",
            "lookups 1 thread",
            "lookups 2 threads",
        ];
        for (k, name) in names.iter().enumerate() {
            let v: Vec<f64> = figures.iter().filter_map(|f| f.get(k).copied()).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            println!("  {name}: {}..{}", mega(lo), mega(hi));
        }
    }
    println!("VPP NAT44-ED (CSIT, 16.5 M sessions): 0.49 M/s new sessions per core");
}

/// Marks a round's figures for the parent process.
const FIGURES: &str = "CT_SCALE_FIGURES";

fn print_round(round: &str, entries: usize, r: &ScaleReport) {
    let per = |d: std::time::Duration, n: usize| d.as_nanos() as f64 / n.max(1) as f64;
    let pct = |n: usize| n as f64 * 100.0 / entries as f64;
    println!("round {round}:");
    println!(
        "  build: {:.2} s; resident {} before, {} built (+{}), {} full (+{}, {} on huge pages), \
         {} after the last sweep",
        r.build.as_secs_f64(),
        mib(r.rss_before),
        mib(r.rss_built),
        mib(r.rss_built.saturating_sub(r.rss_before)),
        mib(r.rss_full),
        mib(r.rss_full.saturating_sub(r.rss_before)),
        mib(r.huge_full),
        mib(r.rss_after),
    );
    println!(
        "  fill to {}: {} new connections ({:.2} s); last tenth ({} connections, {:.0}-{:.0} % \
         full): {}",
        r.filled,
        mega(ScaleReport::rate(r.filled, r.fill_time)),
        r.fill_time.as_secs_f64(),
        r.last_tenth.0,
        pct(r.filled - r.last_tenth.0),
        pct(r.filled),
        mega(ScaleReport::rate(r.last_tenth.0, r.last_tenth.1)),
    );
    println!(
        "  churn: {} new connections with expiry ({} connections, {} expired, table {:.1}-{:.1} % \
         full)",
        mega(ScaleReport::rate(r.churned, r.churn_time)),
        r.churned,
        r.churn_expired,
        pct(r.churn_len.0),
        pct(r.churn_len.1),
    );
    println!(
        "  lookups: {} on 1 thread ({:.0} ns each), {} on 2 threads together; {:.1} % found",
        mega(ScaleReport::rate(r.lookups_1.0, r.lookups_1.1)),
        per(r.lookups_1.1, r.lookups_1.0),
        mega(ScaleReport::rate(r.lookups_2.0, r.lookups_2.1)),
        r.lookup_hits as f64 * 100.0 / (r.lookups_1.0 + r.lookups_2.0) as f64,
    );
    println!(
        "  sweep of the whole table with nothing to expire: {:.0} ms for {} entries ({:.1} ns per \
         entry, {} removed); sweep removing all {}: {:.0} ms ({:.0} ns per entry)",
        r.sweep_idle.1.as_secs_f64() * 1e3,
        r.sweep_idle.0,
        per(r.sweep_idle.1, r.sweep_idle.0),
        r.sweep_idle.2,
        r.sweep_all.0,
        r.sweep_all.1.as_secs_f64() * 1e3,
        per(r.sweep_all.1, r.sweep_all.0),
    );
    println!(
        "  worker: {} inserted, dropped {}, conntrack drop {} early_drop {} insert_failed {}",
        r.inserted, r.dropped, r.ct_drop, r.ct_early_drop, r.ct_insert_failed
    );
}
