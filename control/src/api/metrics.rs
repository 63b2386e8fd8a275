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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use xdpgw_dataplane::conntrack::{CtCounters, InvalidReason};
use xdpgw_dataplane::counter::CounterSet;
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::stats::WorkerStats;

use super::server::{Control, QueueCounters};

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
    let mut o = Out(String::with_capacity(16 * 1024));
    build_info(&mut o);
    reloads(&mut o, c);
    nat_ports(&mut o, c);

    // Interfaces: summed over their queues.
    let ifaces: Vec<QueueCounters> = (0..c.ports.len())
        .map(|i| {
            let mut sum = QueueCounters::zeroed();
            for p in &c.workers {
                sum.add(&p.iface(i));
            }
            sum
        })
        .collect();
    for d in &QueueCounters::TRAFFIC {
        let Some(name) = d.metric else { continue };
        o.head(name, "counter", d.help);
        for (n, q) in c.ports.iter().zip(&ifaces) {
            o.val(name, &[("interface", n)], (d.get)(q));
        }
    }
    o.head(
        "interface_dropped_packets_total",
        "counter",
        "Frames lost in the interface's rings, by reason.",
    );
    for (n, q) in c.ports.iter().zip(&ifaces) {
        for d in &QueueCounters::LOSSES {
            o.val(
                "interface_dropped_packets_total",
                &[("interface", n), ("reason", d.label)],
                (d.get)(q),
            );
        }
    }

    o.head(
        "interface_refused_connections_total",
        "counter",
        "New connections refused on a gateway interface: no free NAT port (source NAT out \
         of it, destination NAT into it) or the connection table full (arriving on it).",
    );
    for (i, n) in c.names.iter().enumerate() {
        let f = c.gw.nat_failures(i as u8);
        let refused = "interface_refused_connections_total";
        o.val(
            refused,
            &[("interface", n), ("reason", "nat_no_free_port")],
            f.nat_no_free_port,
        );
        o.val(
            refused,
            &[("interface", n), ("reason", "ct_table_full")],
            f.ct_table_full,
        );
    }

    // Workers.
    let workers: Vec<String> = (0..c.workers.len()).map(|w| w.to_string()).collect();
    let stats: Vec<WorkerStats> = c.workers.iter().map(|p| p.stats.load()).collect();
    for d in &WorkerStats::COUNTERS {
        let Some(name) = d.metric else { continue };
        o.head(name, "counter", d.help);
        for (w, st) in stats.iter().enumerate() {
            o.val(name, &[("worker", &workers[w])], (d.get)(st));
        }
    }
    o.head(
        "worker_dropped_packets_total",
        "counter",
        "Packets the worker dropped, by reason.",
    );
    for (w, st) in stats.iter().enumerate() {
        for r in DropReason::ALL {
            o.val(
                "worker_dropped_packets_total",
                &[("worker", &workers[w]), ("reason", r.name())],
                st.drop_count(*r),
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

    o.head(
        "nat_log_events_total",
        "counter",
        "NAT event log lines written, and events lost (buffers full).",
    );
    let log = &c.nat_log;
    let written = log.written.load(std::sync::atomic::Ordering::Relaxed);
    let lost = log.lost.load(std::sync::atomic::Ordering::Relaxed);
    o.val("nat_log_events_total", &[("result", "written")], written);
    o.val("nat_log_events_total", &[("result", "lost")], lost);

    if let Some(sync) = c.sync.as_deref() {
        let (k, ext) = sync.snapshot();
        let s = k.session;
        o.head(
            "sync_messages_total",
            "counter",
            "State sync messages sent to and received from the peer (conntrackd's protocol).",
        );
        o.val(
            "sync_messages_total",
            &[("direction", "sent")],
            s.messages_sent,
        );
        o.val(
            "sync_messages_total",
            &[("direction", "received")],
            s.messages_received,
        );
        o.head(
            "sync_errors_total",
            "counter",
            "State sync trouble: messages refused (malformed), lost on the way from the peer \
             (sequence gaps), datagrams not sent, events lost before the sync took them.",
        );
        o.val("sync_errors_total", &[("kind", "malformed")], s.malformed);
        o.val("sync_errors_total", &[("kind", "lost")], s.lost);
        o.val("sync_errors_total", &[("kind", "send")], k.send_errors);
        o.val(
            "sync_errors_total",
            &[("kind", "events_lost")],
            k.events_lost,
        );
        o.head(
            "sync_external_entries",
            "gauge",
            "Entries received from the peer, not committed (the external cache).",
        );
        o.val("sync_external_entries", &[], ext as u64);
        o.head(
            "sync_unacknowledged",
            "gauge",
            "FTFW: messages sent that the peer has not acknowledged yet.",
        );
        o.val("sync_unacknowledged", &[], k.unacknowledged as u64);
    }

    // Conntrack.
    let ct = &c.gw.conntrack;
    o.head(
        "conntrack_entries",
        "gauge",
        "Entries in the connection tracking table, by address family (one maximum for both).",
    );
    o.val(
        "conntrack_entries",
        &[("family", "ipv4")],
        ct.family_len() as u64,
    );
    let ct6 = c.gw.conntrack6.as_ref();
    o.val(
        "conntrack_entries",
        &[("family", "ipv6")],
        ct6.map_or(0, |t| t.family_len()) as u64,
    );
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
    let per: Vec<&CtCounters> = stats.iter().map(|s| &s.ct).collect();
    for d in &CtCounters::COUNTERS {
        let Some(name) = d.metric else { continue };
        o.head(name, "counter", d.help);
        for (w, p) in per.iter().enumerate() {
            o.val(name, &[("worker", &workers[w])], (d.get)(p));
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
    let mut st = ct.stats();
    if let Some(t) = ct6 {
        let s6 = t.stats();
        st.expired += s6.expired;
        st.deleted += s6.deleted;
    }
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
    let set6 = c.with_counters6();
    for (family, set) in [("ipv4", &set), ("ipv6", &set6)] {
        for t in &set.tables {
            for ch in &t.chains {
                for (k, r) in ch.rules.iter().enumerate() {
                    let n = (k + 1).to_string();
                    let l = [
                        ("family", family),
                        ("table", t.table.name()),
                        ("chain", ch.name.as_str()),
                        ("rule", n.as_str()),
                    ];
                    o.val("rule_packets_total", &l, r.counters.packets);
                    bytes.val("rule_bytes_total", &l, r.counters.bytes);
                }
                if ch.hook.is_some() {
                    let l = [
                        ("family", family),
                        ("table", t.table.name()),
                        ("chain", ch.name.as_str()),
                    ];
                    pol.val("chain_policy_packets_total", &l, ch.counters.packets);
                }
            }
        }
    }
    o.0.push_str(&bytes.0);
    o.0.push_str(&pol.0);
    o.0
}

/// `xdpgw_build_info{version,revision} 1`: which build runs (the
/// Prometheus convention for a build's identity, e.g. Prometheus' own
/// `prometheus_build_info`).
fn build_info(o: &mut Out) {
    o.head(
        "build_info",
        "gauge",
        "The running build: version and source revision (always 1).",
    );
    o.val(
        "build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", crate::REVISION),
        ],
        1,
    );
}

/// `xdpgw_reloads_total{result}`: rule reloads (SIGHUP, `xdpgw reload`)
/// that succeeded and that were refused.
fn reloads(o: &mut Out, c: &Control) {
    o.head(
        "reloads_total",
        "counter",
        "Rule reloads (SIGHUP, xdpgw reload), by result: success, or failure (the running rules stayed).",
    );
    // Relaxed: statistics.
    let ok = c.reloads.succeeded.load(Ordering::Relaxed);
    let failed = c.reloads.failed.load(Ordering::Relaxed);
    o.val("reloads_total", &[("result", "success")], ok);
    o.val("reloads_total", &[("result", "failure")], failed);
}

/// Most (protocol, address) series of `xdpgw_nat_ports_in_use`; the
/// addresses past it are summed under `address="other"`.
const NAT_SERIES: usize = 64;

/// `xdpgw_nat_ports_in_use{protocol,address}`: the connections whose
/// source is translated (SNAT, MASQUERADE), by protocol and translated
/// address. Each holds one port (ICMP: query id) of that address towards
/// its destination, so the series is the address's port use (at most 64512
/// ports per destination for TCP and UDP above 1023). Counted by walking
/// the table a chunk at a time, as `conntrack -L` does.
fn nat_ports(o: &mut Out, c: &Control) {
    use std::collections::BTreeMap;
    use xdpgw_dataplane::conntrack::{status, WalkCursor};
    let ct = &c.gw.conntrack;
    let mut cursor = WalkCursor::default();
    let mut chunk = Vec::with_capacity(256);
    let mut used: BTreeMap<(u8, String), u64> = BTreeMap::new();
    while ct.walk(&mut cursor, 256, &mut chunk) {
        for (_, s) in chunk.drain(..) {
            if s.status & status::SRC_NAT == 0 {
                continue;
            }
            // The reply goes to the translated source.
            let mut key = (s.reply.proto, s.reply.dst.to_string());
            if used.len() >= NAT_SERIES && !used.contains_key(&key) {
                key.1 = "other".to_owned();
            }
            *used.entry(key).or_default() += 1;
        }
    }
    o.head(
        "nat_ports_in_use",
        "gauge",
        "Source-NAT connections by protocol and translated address: the ports (ICMP: ids) of the address in use.",
    );
    for ((proto, addr), n) in &used {
        let proto = match *proto {
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            p => p.to_string(),
        };
        o.val(
            "nat_ports_in_use",
            &[("protocol", &proto), ("address", addr)],
            *n,
        );
    }
}

/// `metrics_listen` could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("metrics_listen {addr}: {source}")]
pub struct MetricsBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The HTTP endpoint, bound before the gateway says `ready`.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsBindError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsBindError { addr, source })?;
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
    fn build_info_names_version_and_revision() {
        let mut o = Out(String::new());
        build_info(&mut o);
        let line = o.0.lines().last().unwrap_or_default().to_owned();
        assert_eq!(
            line,
            format!(
                "xdpgw_build_info{{version=\"{}\",revision=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                crate::REVISION
            )
        );
        assert!(crate::VERSION.contains(crate::REVISION));
    }

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
