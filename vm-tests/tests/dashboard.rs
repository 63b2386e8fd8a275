//! The Grafana dashboard (conf/grafana-dashboard.json) against a real
//! Prometheus (Debian's `prometheus`): Prometheus scrapes `xdpgw run` in the
//! gateway lab every second while traffic runs through it and a reload
//! happens, and every query of the dashboard (each panel's targets, the
//! template variable's and the reload annotation's) returns series, with
//! Grafana's variables given the values Grafana would give them
//! (`$__rate_interval`: 1m, `$__range`: 5m, `$instance`: all).
//!
//! With `XDPGW_DASHBOARD_PNG=FILE`, it also plots the panels from
//! Prometheus' HTTP API into FILE (`pkg/plot-dashboard.py`, with gnuplot):
//! the picture in the README.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use xdpgw_vm_tests::lab::{Backend, Lab, WorkDir};
use xdpgw_vm_tests::{lab_config, require_root_with, workspace_dir, LAB_PROGRAMS};

const PROMETHEUS: &str = "127.0.0.1:9090";
const METRICS: &str = "127.0.0.1:9469";
const WAIT: Duration = Duration::from_secs(40);

/// `GET path` from `addr` (HTTP/1.0, in the calling thread's namespace):
/// the status code and the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A dashboard query as Grafana sends it to Prometheus.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
}

/// Every PromQL query of the dashboard: (where, expression).
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("panel title");
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("target expr");
            out.push((format!("panel '{title}'"), expr.to_owned()));
        }
    }
    for a in dash["annotations"]["list"].as_array().expect("annotations") {
        out.push((
            format!("annotation '{}'", a["name"].as_str().unwrap_or("?")),
            a["expr"].as_str().expect("annotation expr").to_owned(),
        ));
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        // label_values(METRIC, LABEL): Grafana asks for METRIC's series.
        let def = v["definition"].as_str().expect("variable definition");
        let metric = def
            .strip_prefix("label_values(")
            .and_then(|r| r.split(',').next())
            .expect("a label_values(METRIC, LABEL) variable");
        out.push((format!("variable '{}'", v["name"]), metric.to_owned()));
    }
    out
}

/// The instant query's result vector, once it has series (at most WAIT).
fn query_until_series(lab: &Lab, what: &str, expr: &str) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    let path = format!("/api/v1/query?query={}", encode(&expand(expr)));
    loop {
        let p = path.clone();
        let (code, body) = lab
            .gateway()
            .run_in(move || http_get(PROMETHEUS, &p))
            .unwrap_or_else(|e| panic!("{what}: Prometheus: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: {expr}: not JSON ({e}): {body}"));
        assert_eq!(code, 200, "{what}: {expr}: {body}");
        assert_eq!(v["status"], "success", "{what}: {expr}: {body}");
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if !result.is_empty() {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no series for {}",
            expand(expr)
        );
        // Prometheus scrapes every second: the next sample.
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or("")
}

fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn every_dashboard_query_returns_series_from_prometheus() {
    let mut programs = LAB_PROGRAMS.to_vec();
    programs.push("prometheus");
    if !require_root_with(
        "every_dashboard_query_returns_series_from_prometheus",
        &programs,
    ) {
        return;
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_dir().join("conf/grafana-dashboard.json"))
            .expect("conf/grafana-dashboard.json"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 10, "{queries:?}");

    // conf/gateway.toml with its metrics served.
    let dir = WorkDir::new("dash");
    let conf = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("conf/gateway.toml");
    let conf = conf.replacen(
        "rules = \"gateway.rules\"\n",
        &format!(
            "rules = \"{}\"\nmetrics_listen = \"{METRICS}\"\n",
            workspace_dir().join("conf/gateway.rules").display()
        ),
        1,
    );
    assert!(conf.contains("metrics_listen"), "conf/gateway.toml changed");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, conf).expect("write gateway.toml");
    xdpgw_vm_tests::copy_rules6(dir.path());
    let mut lab = Lab::gateway_lab(&lab_config(Backend::Xdpgw, &config));

    // Prometheus in the gateway's namespace, scraping every second.
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: xdpgw\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prom_args = [
        "prometheus".to_owned(),
        format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ),
        format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
        format!("--web.listen-address={PROMETHEUS}"),
        "--log.level=warn".to_owned(),
    ];
    let prom_args: Vec<&str> = prom_args.iter().map(String::as_str).collect();
    let prometheus = lab.gateway().spawn(&prom_args);
    let deadline = Instant::now() + WAIT;
    while lab
        .gateway()
        .run_in(|| http_get(PROMETHEUS, "/-/ready"))
        .map_or(true, |(code, _)| code != 200)
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready:\n{}",
            prometheus.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Its first scrape (its targets start a few seconds after it is
    // ready): the traffic and the reload below come after it.
    query_until_series(&lab, "first scrape", "up{job=\"xdpgw\"} == 1");

    // Traffic through the gateway: TCP and UDP from the clients to the
    // server (masqueraded on wan0), pings, and a packet the rules drop.
    let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let sink = lab.serve(lab.server(), &["udp-count", "9000"]);
    let udp = lab.tool(
        lab.client(),
        &[
            "udp-send",
            "203.0.113.254",
            "9000",
            "--rate",
            "300",
            "--duration",
            "30",
        ],
    );
    for _ in 0..3 {
        let got = lab.tool_result(
            lab.client2(),
            &["tcp-get", "203.0.113.254", "8080", "2000"],
            Duration::from_secs(20),
        );
        assert!(got.starts_with("ok "), "tcp-get: {got}");
    }
    assert!(
        lab.ping(lab.client(), "203.0.113.254".parse().expect("ip"), 3, &[])
            .received
            > 0
    );
    let reload = lab.sighup_gateway(Duration::from_secs(20));
    assert!(reload.contains("xdpgw: reloaded "), "{reload}");

    for (what, expr) in &queries {
        let series = query_until_series(&lab, what, expr);
        eprintln!("{what}: {} series for {expr}", series.len());
    }

    // What some of them say.
    let build = query_until_series(&lab, "build info", "xdpgw_build_info");
    assert_eq!(label(&build[0], "revision"), xdpgw_control::REVISION);
    assert_eq!(label(&build[0], "version"), env!("CARGO_PKG_VERSION"));
    let max = query_until_series(&lab, "conntrack max", "xdpgw_conntrack_max_entries");
    assert!(value(&max[0]) > 0.0);
    let nat = query_until_series(&lab, "NAT ports", "xdpgw_nat_ports_in_use");
    assert!(
        nat.iter()
            .any(|s| label(s, "address") == "203.0.113.1" && value(s) >= 1.0),
        "{nat:?}"
    );
    let reloads = query_until_series(
        &lab,
        "reloads",
        "xdpgw_reloads_total{result=\"success\"} >= 1",
    );
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    let rx = query_until_series(
        &lab,
        "lan0 packets/s",
        "rate(xdpgw_interface_received_packets_total{interface=\"lan0\"}[1m]) > 0",
    );
    assert_eq!(rx.len(), 1, "{rx:?}");

    if let Some(png) = std::env::var_os("XDPGW_DASHBOARD_PNG") {
        // A relative FILE is relative to the workspace (cargo runs tests
        // in the package's directory).
        let png = workspace_dir().join(png);
        // A minute more of traffic for the picture: a connection every
        // 2 s, UDP at a rate that changes, a reload every 20 s.
        let start = Instant::now();
        let mut n = 0u32;
        let mut next_reload = Duration::from_secs(20);
        while start.elapsed() < Duration::from_secs(60) {
            let rate = (100 + 100 * (n % 4)).to_string();
            let burst = lab.tool(
                lab.client2(),
                &[
                    "udp-send",
                    "203.0.113.254",
                    "9000",
                    "--rate",
                    &rate,
                    "--duration",
                    "2",
                ],
            );
            let got = lab.tool_result(
                lab.client(),
                &["tcp-get", "203.0.113.254", "8080", "20000"],
                Duration::from_secs(20),
            );
            assert!(got.starts_with("ok "), "tcp-get: {got}");
            burst.wait(Duration::from_secs(10));
            n += 1;
            if start.elapsed() >= next_reload {
                next_reload += Duration::from_secs(20);
                lab.sighup_gateway(Duration::from_secs(20));
            }
        }
        let out = lab.gateway().exec(&[
            "python3",
            &workspace_dir()
                .join("pkg/plot-dashboard.py")
                .display()
                .to_string(),
            &format!("http://{PROMETHEUS}"),
            &workspace_dir()
                .join("conf/grafana-dashboard.json")
                .display()
                .to_string(),
            &png.display().to_string(),
            "1.5",
        ]);
        assert!(
            out.status.success(),
            "plot-dashboard.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    drop(udp);
    drop(sink);
    drop(server);
    drop(prometheus);
}
