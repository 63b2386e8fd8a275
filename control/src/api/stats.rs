//! `xdpgw stats`: counters per interface and worker, with rates from two
//! samples the client takes an interval apart (`--watch` keeps sampling).
//!
//! The gateway answers `stats-sample` with one `name value` line per
//! counter (names below), read from what the workers published; the client
//! parses two samples and prints counters and packets per second.
//!
//! ```text
//! time_ns N                     the workers' clock when sampled
//! worker W KEY N                per counter of WorkerStats::COUNTERS (rx, forwarded,
//!                               fast_path, host, from_host, consumed, emitted, reasm_reqds,
//!                               reasm_oks, reasm_fails, frag_oks, frag_creates, frag_fails),
//!                               and sent
//! worker W drop REASON N        per DropReason (non-zero ones)
//! iface NAME rx|tx N            summed over its queues
//! iface NAME drop REASON N      ring losses: kernel_rx_dropped, rx_ring_full, tx_ring_full, tx_invalid
//! refused NAME nat_no_free_port|ct_table_full N   new connections refused on a gateway
//!                               interface: no NAT port (source NAT out of it, destination
//!                               NAT into it), the connection table full (arriving on it)
//! icmp ratelimit_global|ratelimit_host N   ICMP errors not sent (Linux's IcmpOutRateLimit*)
//! conntrack entries|max|insert N the table's entries and maximum, connections inserted
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use xdpgw_dataplane::counter::CounterSet;
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::stats::WorkerStats;

use super::server::{Control, QueueCounters};

/// A worker's counters (or their total) as the human-read views show them:
/// `received R forwarded F (fast path P) host H ... dropped D`, one label
/// and value per counter of [`WorkerStats::COUNTERS`] (a part of the
/// counter before it in parentheses), then the drops.
pub fn counters_line(s: &WorkerStats) -> String {
    let mut line = String::new();
    for c in &WorkerStats::COUNTERS {
        push_counter(&mut line, c.label, &(c.get)(s).to_string(), c.part);
    }
    let _ = write!(line, " dropped {}", s.dropped());
    line
}

/// Appends `label value` to a line, in parentheses for a part of the
/// counter before it.
fn push_counter(line: &mut String, label: &str, value: &str, part: bool) {
    if part {
        let _ = write!(line, " ({label} {value})");
    } else {
        if !line.is_empty() {
            line.push(' ');
        }
        let _ = write!(line, "{label} {value}");
    }
}

/// One sample: counter name (the line without its value) to value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub time_ns: u64,
    pub values: BTreeMap<String, u64>,
}

/// The gateway side: the sample's lines.
pub fn sample_lines(c: &Control) -> Vec<String> {
    let mut out = vec![format!("time_ns {}", (c.now)())];
    for (w, p) in c.workers.iter().enumerate() {
        let st = p.stats.load();
        for d in &WorkerStats::COUNTERS {
            if let Some(k) = d.key {
                out.push(format!("worker {w} {k} {}", (d.get)(&st)));
            }
        }
        let sent: u64 = p.queues.iter().map(|(_, _, q)| q.load().tx).sum();
        out.push(format!("worker {w} sent {sent}"));
        for r in DropReason::ALL {
            let n = st.drop_count(*r);
            if n > 0 {
                out.push(format!("worker {w} drop {} {n}", r.name()));
            }
        }
    }
    for (i, name) in c.ports.iter().enumerate() {
        let mut sum = QueueCounters::zeroed();
        for p in &c.workers {
            sum.add(&p.iface(i));
        }
        for d in &QueueCounters::TRAFFIC {
            let k = d.key.unwrap_or(d.label);
            out.push(format!("iface {name} {k} {}", (d.get)(&sum)));
        }
        for d in &QueueCounters::LOSSES {
            out.push(format!("iface {name} drop {} {}", d.label, (d.get)(&sum)));
        }
    }
    for (i, name) in c.names.iter().enumerate() {
        let f = c.gw.nat_failures(i as u8);
        out.push(format!(
            "refused {name} nat_no_free_port {}",
            f.nat_no_free_port
        ));
        out.push(format!("refused {name} ct_table_full {}", f.ct_table_full));
    }
    let (global, host) = c.gw.icmp_limit.refused();
    out.push(format!("icmp ratelimit_global {global}"));
    out.push(format!("icmp ratelimit_host {host}"));
    let inserted: u64 = c.workers.iter().map(|p| p.stats.load().ct.insert).sum();
    out.push(format!("conntrack entries {}", c.gw.conntrack.len()));
    out.push(format!("conntrack max {}", c.gw.conntrack.max_entries()));
    out.push(format!("conntrack insert {inserted}"));
    let log = &c.nat_log;
    out.push(format!(
        "nat_log written {}",
        log.written.load(std::sync::atomic::Ordering::Relaxed)
    ));
    out.push(format!(
        "nat_log lost {}",
        log.lost.load(std::sync::atomic::Ordering::Relaxed)
    ));
    out
}

/// A `stats-sample` line that is not `name value`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unexpected statistics line '{0}'")]
pub struct BadSampleLine(pub String);

impl Sample {
    /// Parses the gateway's lines.
    pub fn parse(lines: &[String]) -> Result<Sample, BadSampleLine> {
        let mut s = Sample::default();
        for l in lines {
            let (k, v) = l
                .rsplit_once(' ')
                .and_then(|(k, v)| Some((k, v.parse::<u64>().ok()?)))
                .ok_or_else(|| BadSampleLine(l.clone()))?;
            if k == "time_ns" {
                s.time_ns = v;
            } else {
                s.values.insert(k.to_string(), v);
            }
        }
        Ok(s)
    }

    fn get(&self, k: &str) -> u64 {
        self.values.get(k).copied().unwrap_or(0)
    }

    /// Names of the workers and interfaces, in order of appearance.
    fn ids(&self, kind: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in self.values.keys() {
            let mut w = k.split(' ');
            if w.next() == Some(kind) {
                if let Some(id) = w.next() {
                    if !out.iter().any(|o| o == id) {
                        out.push(id.to_string());
                    }
                }
            }
        }
        out
    }
}

/// Counters of `now`, with rates since `before` (per second of the
/// gateway's clock).
pub fn render(before: &Sample, now: &Sample) -> String {
    let secs = now.time_ns.saturating_sub(before.time_ns) as f64 / 1e9;
    let rate = |k: &str| -> String {
        if secs <= 0.0 {
            return "-".into();
        }
        let d = now.get(k).saturating_sub(before.get(k));
        format!("{:.0}", d as f64 / secs)
    };
    let mut out = String::new();
    let _ = writeln!(out, "rates over {secs:.1} s");
    let mut ifaces = now.ids("iface");
    ifaces.sort();
    for i in &ifaces {
        let key = |k: &str| format!("iface {i} {k}");
        let drops: u64 = QueueCounters::LOSSES
            .iter()
            .map(|d| now.get(&key(&format!("drop {}", d.label))))
            .sum();
        let _ = writeln!(
            out,
            "interface {i}: received {} ({} pps) sent {} ({} pps) dropped {drops}",
            now.get(&key("rx")),
            rate(&key("rx")),
            now.get(&key("tx")),
            rate(&key("tx")),
        );
        for d in &QueueCounters::LOSSES {
            let k = key(&format!("drop {}", d.label));
            if now.get(&k) > 0 {
                let _ = writeln!(
                    out,
                    "  dropped {}: {} ({}/s)",
                    d.label,
                    now.get(&k),
                    rate(&k)
                );
            }
        }
    }
    let mut refused = now.ids("refused");
    refused.sort();
    for i in &refused {
        for (k, label) in [
            ("nat_no_free_port", "no NAT port"),
            ("ct_table_full", "connection table full"),
        ] {
            let k = format!("refused {i} {k}");
            if now.get(&k) > 0 {
                let _ = writeln!(
                    out,
                    "interface {i}: new connections refused, {label}: {} ({}/s)",
                    now.get(&k),
                    rate(&k)
                );
            }
        }
    }
    let mut workers = now.ids("worker");
    workers.sort_by_key(|w| w.parse::<u64>().unwrap_or(u64::MAX));
    let mut total = String::new();
    let mut totals = [0u64; WorkerStats::COUNTERS.len()];
    let mut total_dropped = 0;
    for w in &workers {
        let key = |k: &str| format!("worker {w} {k}");
        let prefix = format!("worker {w} drop ");
        let drops: Vec<(&str, &String)> = now
            .values
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(|r| (r, k)))
            .collect();
        let dropped: u64 = drops.iter().map(|(_, k)| now.get(k)).sum();
        total_dropped += dropped;
        // Each counter of the table; the frames received and sent with
        // their rates (the worker's sent frames are its queues').
        let mut line = String::new();
        for (d, t) in WorkerStats::COUNTERS.iter().zip(totals.iter_mut()) {
            let k = key(d.key.unwrap_or(d.label));
            *t += now.get(&k);
            push_counter(&mut line, d.label, &now.get(&k).to_string(), d.part);
            if d.key == Some("rx") {
                let _ = write!(
                    line,
                    " ({} pps) sent {} ({} pps)",
                    rate(&k),
                    now.get(&key("sent")),
                    rate(&key("sent"))
                );
            }
        }
        let _ = writeln!(out, "worker {w}: {line} dropped {dropped}");
        for (reason, k) in drops {
            let _ = writeln!(out, "  dropped {reason}: {} ({}/s)", now.get(k), rate(k));
        }
    }
    for (d, t) in WorkerStats::COUNTERS.iter().zip(totals) {
        push_counter(&mut total, d.label, &t.to_string(), d.part);
    }
    let _ = writeln!(out, "total: {total} dropped {total_dropped}");
    let (global, host) = ("icmp ratelimit_global", "icmp ratelimit_host");
    if now.get(global) + now.get(host) > 0 {
        let _ = writeln!(
            out,
            "ICMP errors not sent (rate limits): per destination {} ({}/s), global {} ({}/s)",
            now.get(host),
            rate(host),
            now.get(global),
            rate(global),
        );
    }
    // A gateway older than these lines sends none: no conntrack line.
    if let Some(max) = now.values.get("conntrack max").copied().filter(|m| *m > 0) {
        let entries = now.get("conntrack entries");
        let _ = writeln!(
            out,
            "conntrack: {entries} entries of max {max} ({:.1} % full), new {}/s",
            entries as f64 * 100.0 / max as f64,
            rate("conntrack insert"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_workers_line_shows_every_counter_of_the_table() {
        let mut s = WorkerStats {
            rx: 10,
            forwarded: 8,
            fast_path: 6,
            from_host: 1,
            emitted: 2,
            ..WorkerStats::default()
        };
        s.drops[DropReason::NoRoute as usize] = 2;
        assert_eq!(
            counters_line(&s),
            "received 10 forwarded 8 (fast path 6) host 0 from host 1 answered/held 0 \
             generated 2 frags in 0 reassembled 0 reasm fails 0 fragmented 0 frags out 0 \
             frag fails 0 dropped 2"
        );
    }

    #[test]
    fn rates_come_from_two_samples() {
        let a = Sample::parse(&lines(
            "time_ns 1000000000\nworker 0 rx 100\nworker 0 forwarded 90\nworker 0 host 0\nworker 0 consumed 5\nworker 0 emitted 1\nworker 0 sent 91\nworker 0 drop policy_drop 5\niface lan0 rx 60\niface lan0 tx 40\niface lan0 drop kernel_rx_dropped 0\niface lan0 drop rx_ring_full 0\niface lan0 drop tx_ring_full 0\niface lan0 drop tx_invalid 0",
        ))
        .expect("sample a");
        let b = Sample::parse(&lines(
            "time_ns 3000000000\nworker 0 rx 300\nworker 0 forwarded 280\nworker 0 host 0\nworker 0 consumed 5\nworker 0 emitted 1\nworker 0 sent 281\nworker 0 drop policy_drop 15\niface lan0 rx 160\niface lan0 tx 140\niface lan0 drop kernel_rx_dropped 0\niface lan0 drop rx_ring_full 2\niface lan0 drop tx_ring_full 0\niface lan0 drop tx_invalid 0",
        ))
        .expect("sample b");
        assert_eq!(
            render(&a, &b),
            "rates over 2.0 s\n\
             interface lan0: received 160 (50 pps) sent 140 (50 pps) dropped 2\n  \
             dropped rx_ring_full: 2 (1/s)\n\
             worker 0: received 300 (100 pps) sent 281 (95 pps) forwarded 280 (fast path 0) host 0 from host 0 answered/held 5 generated 1 frags in 0 reassembled 0 reasm fails 0 fragmented 0 frags out 0 frag fails 0 dropped 15\n  \
             dropped policy_drop: 15 (5/s)\n\
             total: received 300 forwarded 280 (fast path 0) host 0 from host 0 answered/held 5 generated 1 frags in 0 reassembled 0 reasm fails 0 fragmented 0 frags out 0 frag fails 0 dropped 15\n"
        );
        let ct = |entries: u64, insert: u64| {
            format!("conntrack entries {entries}\nconntrack max 262144\nconntrack insert {insert}")
        };
        let a = Sample::parse(&lines(&format!("time_ns 1000000000\n{}", ct(10, 40))))
            .expect("sample a");
        let b = Sample::parse(&lines(&format!("time_ns 3000000000\n{}", ct(131_072, 140))))
            .expect("sample b");
        assert!(
            render(&a, &b)
                .ends_with("conntrack: 131072 entries of max 262144 (50.0 % full), new 50/s\n"),
            "{}",
            render(&a, &b)
        );
        assert!(Sample::parse(&lines("worker 0 rx x")).is_err());
    }
}
