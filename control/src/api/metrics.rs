//! `xdpgw metrics`: the gateway's counters in the Prometheus text
//! exposition format (version 0.0.4), on the control socket (`metrics`) and,
//! with `metrics_listen` in the configuration, over HTTP/1.1 on `GET
//! /metrics` from a thread of `xdpgw run` (any other path: 404).
//!
//! Every metric has `# HELP` and `# TYPE`, the `xdpgw_` prefix, and labels
//! `interface`, `worker`, `reason`, `table`/`chain`/`rule`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use xdpgw_dataplane::conntrack::InvalidReason;
use xdpgw_dataplane::drop::DropReason;

use super::server::Control;

/// Escapes a label value (`\`, `"`, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP xdpgw_{name} {help}");
        let _ = writeln!(self.0, "# TYPE xdpgw_{name} {kind}");
    }

    fn val(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.0.push_str("xdpgw_");
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, l)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(l));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// The exposition text.
pub fn render(c: &Control) -> String {
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut o = Out(String::with_capacity(16 * 1024));

    // Interfaces: summed over their queues.
    let iface_sum = |i: usize, f: &dyn Fn(&super::server::QueuePublished) -> u64| -> u64 {
        c.workers
            .iter()
            .flat_map(|p| p.queues.iter())
            .filter(|(k, _, _)| usize::from(*k) == i)
            .map(|(_, _, q)| f(q))
            .sum()
    };
    o.head(
        "interface_received_packets_total",
        "counter",
        "Frames received on the interface's AF_XDP sockets.",
    );
    for (i, n) in c.names.iter().enumerate() {
        o.val(
            "interface_received_packets_total",
            &[("interface", n)],
            iface_sum(i, &|q| ld(&q.rx)),
        );
    }
    o.head(
        "interface_sent_packets_total",
        "counter",
        "Frames sent on the interface's AF_XDP sockets.",
    );
    for (i, n) in c.names.iter().enumerate() {
        o.val(
            "interface_sent_packets_total",
            &[("interface", n)],
            iface_sum(i, &|q| ld(&q.tx)),
        );
    }
    o.head(
        "interface_dropped_packets_total",
        "counter",
        "Frames lost in the interface's rings, by reason.",
    );
    for (i, n) in c.names.iter().enumerate() {
        let per: [(&str, u64); 4] = [
            ("kernel_rx_dropped", iface_sum(i, &|q| ld(&q.rx_dropped))),
            ("rx_ring_full", iface_sum(i, &|q| ld(&q.rx_ring_full))),
            ("tx_ring_full", iface_sum(i, &|q| ld(&q.tx_full))),
            ("tx_invalid", iface_sum(i, &|q| ld(&q.tx_invalid))),
        ];
        for (r, v) in per {
            o.val(
                "interface_dropped_packets_total",
                &[("interface", n), ("reason", r)],
                v,
            );
        }
    }

    // Workers.
    let workers: Vec<String> = (0..c.workers.len()).map(|w| w.to_string()).collect();
    type Field = fn(&super::server::WorkerPublished) -> &AtomicU64;
    let fields: [(&str, &str, Field); 7] = [
        (
            "worker_received_packets_total",
            "Frames the worker took from its queues.",
            |p| &p.rx,
        ),
        (
            "worker_forwarded_packets_total",
            "Packets the worker forwarded (ARP answers included).",
            |p| &p.forwarded,
        ),
        (
            "worker_fast_path_packets_total",
            "Of the forwarded packets, those the established-flow fast path forwarded.",
            |p| &p.fast_path,
        ),
        (
            "worker_host_packets_total",
            "Packets for the gateway's own services (to the host path).",
            |p| &p.host,
        ),
        (
            "worker_from_host_packets_total",
            "Packets the gateway host sent through the host path.",
            |p| &p.from_host,
        ),
        (
            "worker_answered_packets_total",
            "Packets the gateway answered or held (ping, ARP, packets waiting for a neighbour).",
            |p| &p.consumed,
        ),
        (
            "worker_generated_packets_total",
            "Packets the gateway generated (ICMP errors, resets, ARP requests, released packets).",
            |p| &p.emitted,
        ),
    ];
    for (name, help, f) in fields {
        o.head(name, "counter", help);
        for (w, p) in c.workers.iter().enumerate() {
            o.val(name, &[("worker", &workers[w])], ld(f(p)));
        }
    }
    o.head(
        "worker_dropped_packets_total",
        "counter",
        "Packets the worker dropped, by reason.",
    );
    for (w, p) in c.workers.iter().enumerate() {
        for (r, d) in DropReason::ALL.iter().zip(p.drops.iter()) {
            o.val(
                "worker_dropped_packets_total",
                &[("worker", &workers[w]), ("reason", r.name())],
                ld(d),
            );
        }
    }

    o.head(
        "icmp_ratelimited_total",
        "counter",
        "ICMP errors not sent because of a rate limit (Linux's IcmpOutRateLimitHost/Global).",
    );
    let (global, host) = c.gw.icmp_limit.refused();
    o.val("icmp_ratelimited_total", &[("limit", "host")], host);
    o.val("icmp_ratelimited_total", &[("limit", "global")], global);

    // Conntrack.
    let ct = &c.gw.conntrack;
    o.head(
        "conntrack_entries",
        "gauge",
        "Entries in the connection tracking table.",
    );
    o.val("conntrack_entries", &[], ct.len() as u64);
    o.head(
        "conntrack_max_entries",
        "gauge",
        "The table's maximum (nf_conntrack_max).",
    );
    o.val("conntrack_max_entries", &[], ct.max_entries() as u64);
    o.head(
        "conntrack_buckets",
        "gauge",
        "The key tables' buckets (nf_conntrack_buckets).",
    );
    o.val("conntrack_buckets", &[], ct.buckets() as u64);
    let per: Vec<_> = c.workers.iter().map(|p| p.ct.load()).collect();
    type CtField = fn(&xdpgw_dataplane::conntrack::CtCounters) -> u64;
    let ct_fields: [(&str, &str, CtField); 8] = [
        (
            "conntrack_found_total",
            "Packets of an existing connection (conntrack -S found).",
            |c| c.found,
        ),
        (
            "conntrack_new_total",
            "Packets that may open a connection.",
            |c| c.new,
        ),
        (
            "conntrack_insert_total",
            "Entries confirmed (conntrack -S insert).",
            |c| c.insert,
        ),
        (
            "conntrack_insert_failed_total",
            "Confirms that clashed with an entry (conntrack -S insert_failed).",
            |c| c.insert_failed,
        ),
        (
            "conntrack_drop_total",
            "Confirms refused because the table was full (conntrack -S drop).",
            |c| c.drop,
        ),
        (
            "conntrack_early_drop_total",
            "Unassured entries evicted to make room (conntrack -S early_drop).",
            |c| c.early_drop,
        ),
        (
            "conntrack_error_total",
            "ICMP packets the ICMP error handler refused (conntrack -S error).",
            |c| c.error(),
        ),
        (
            "conntrack_search_restart_total",
            "Confirms retried after a stale key (conntrack -S search_restart).",
            |c| c.search_restart,
        ),
    ];
    for (name, help, f) in ct_fields {
        o.head(name, "counter", help);
        for (w, p) in per.iter().enumerate() {
            o.val(name, &[("worker", &workers[w])], f(p));
        }
    }
    o.head(
        "conntrack_invalid_total",
        "counter",
        "Packets conntrack judged INVALID, by reason.",
    );
    for (w, p) in per.iter().enumerate() {
        for r in InvalidReason::ALL {
            o.val(
                "conntrack_invalid_total",
                &[("worker", &workers[w]), ("reason", r.name())],
                p.invalid_count(*r),
            );
        }
    }
    let st = ct.stats();
    o.head(
        "conntrack_expired_total",
        "counter",
        "Entries removed because they timed out.",
    );
    o.val("conntrack_expired_total", &[], st.expired);
    o.head(
        "conntrack_deleted_total",
        "counter",
        "Entries deleted otherwise (conntrack -D/-F, TCP re-open, reset).",
    );
    o.val("conntrack_deleted_total", &[], st.deleted);

    // Rules and policies.
    let set = c.with_counters();
    o.head(
        "rule_packets_total",
        "counter",
        "Packets that matched the rule (rule: its number in the chain, as --line-numbers).",
    );
    let mut bytes = Out(String::new());
    bytes.head(
        "rule_bytes_total",
        "counter",
        "Bytes that matched the rule.",
    );
    let mut pol = Out(String::new());
    pol.head(
        "chain_policy_packets_total",
        "counter",
        "Packets that met the built-in chain's policy.",
    );
    for t in &set.tables {
        for ch in &t.chains {
            for (k, r) in ch.rules.iter().enumerate() {
                let n = (k + 1).to_string();
                let l = [
                    ("table", t.table.name()),
                    ("chain", ch.name.as_str()),
                    ("rule", n.as_str()),
                ];
                o.val("rule_packets_total", &l, r.counters.packets);
                bytes.val("rule_bytes_total", &l, r.counters.bytes);
            }
            if ch.hook.is_some() {
                pol.val(
                    "chain_policy_packets_total",
                    &[("table", t.table.name()), ("chain", ch.name.as_str())],
                    ch.counters.packets,
                );
            }
        }
    }
    o.0.push_str(&bytes.0);
    o.0.push_str(&pol.0);
    o.0
}

/// The HTTP endpoint, bound before the gateway says `ready`.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("metrics_listen {addr}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(MetricsServer { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves requests one at a time until `stop` is set (then call
    /// [`MetricsServer::wake`]).
    pub fn serve(&self, control: &Control, stop: &AtomicBool) {
        for conn in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(conn) = conn {
                let _ = answer(control, conn);
            }
        }
    }

    /// Unblocks `serve` so that it sees the stop flag.
    pub fn wake(&self) {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// One HTTP/1.1 exchange; the connection is closed after it.
fn answer(control: &Control, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request = line.trim_end().to_string();
    // The headers: read and ignore, up to the blank line.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    let mut words = request.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(control),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; the metrics are at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if method != "HEAD" {
        out.push_str(&body);
    }
    writer.write_all(out.as_bytes())?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut o = Out(String::new());
        o.head("x_total", "counter", "An x.");
        o.val("x_total", &[("chain", "a\"b\\c\nd"), ("rule", "1")], 7);
        assert_eq!(
            o.0,
            "# HELP xdpgw_x_total An x.\n# TYPE xdpgw_x_total counter\nxdpgw_x_total{chain=\"a\\\"b\\\\c\\nd\",rule=\"1\"} 7\n"
        );
    }
}
