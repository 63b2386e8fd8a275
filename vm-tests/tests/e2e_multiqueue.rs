//! Several queues, several workers: the gateway's veths get two RX/TX
//! queues, so `xdpgw run` opens both queues of every interface and runs one
//! worker per queue (two on a 2-core machine). Flows spread over the queues
//! by hash, and a reply may arrive on the other queue than its request: the
//! workers share only the rule set and the conntrack table, and every
//! connection must still work, exactly as through Linux.

use std::collections::BTreeSet;
use std::time::Duration;

use xdpgw_vm_tests::lab::{Backend, Lab, LabConfig, GATEWAY_WAN, SERVER};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{require_root_with, workspace_dir, xdpgw_binary, LAB_PROGRAMS};

fn two_queue_lab(backend: Backend) -> Lab {
    Lab::gateway_lab(&LabConfig {
        backend,
        config: workspace_dir().join("conf/gateway.toml"),
        xdpgw: xdpgw_binary(),
        run_args: vec!["--report-on-exit".to_owned()],
        queues: 2,
    })
}

/// 500 connections with data, and UDP requests, from the LAN.
fn traffic(lab: &mut Lab) -> (String, usize, BTreeSet<std::net::Ipv4Addr>, String) {
    let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let udp = lab.serve(lab.server(), &["udp-echo", "7777"]);
    let result = lab.tool_result(
        lab.client(),
        &[
            "tcp-many",
            &ip(SERVER),
            "8080",
            "500",
            "--timeout",
            "30",
            "--bytes",
            "2000",
        ],
        Duration::from_secs(300),
    );
    let udp_reply = lab.tool_result(
        lab.client(),
        &["udp-req", &ip(SERVER), "7777", "--timeout", OK_WAIT],
        TOOL_LIMIT,
    );
    drop(udp);
    let peers = peers(server);
    (result, peers.len(), ips(&peers), outcome(&udp_reply))
}

#[derive(Debug, PartialEq)]
struct Obs {
    result: String,
    server_accepted: usize,
    server_saw: BTreeSet<std::net::Ipv4Addr>,
    udp: String,
    tracked: usize,
}

#[test]
fn two_queues_same_observations_as_linux() {
    on_both_backends_in(
        "two_queues_same_observations_as_linux",
        two_queue_lab,
        |lab| {
            let (result, server_accepted, server_saw, udp) = traffic(lab);
            Obs {
                result,
                server_accepted,
                server_saw,
                udp,
                tracked: entries_to(&conntrack_table(lab), "tcp", 8080),
            }
        },
        |o| {
            assert_eq!(o.result, "ok=500 failed=0");
            assert_eq!(o.server_accepted, 500);
            assert_eq!(o.server_saw, BTreeSet::from([GATEWAY_WAN]));
            assert_eq!(o.udp, "ok");
            assert_eq!(o.tracked, 500);
        },
    );
}

/// xdpgw opened both queues, ran two workers, and both carried traffic.
#[test]
fn two_queues_two_workers_both_forward() {
    if !require_root_with("two_queues_two_workers_both_forward", LAB_PROGRAMS) {
        return;
    }
    let mut lab = two_queue_lab(Backend::Xdpgw);
    let ready = lab.gateway_output();
    assert!(
        ready
            .iter()
            .any(|l| l.contains("lan0: native xdp, copy, 2 queues")),
        "{ready:?}"
    );
    let (result, _, _, _) = traffic(&mut lab);
    assert_eq!(result, "ok=500 failed=0");
    let done = lab.stop_gateway().expect("xdpgw was running");
    let workers: Vec<(usize, u64)> = done
        .stderr
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("# worker ")?;
            let (w, rest) = rest.split_once(": rx ")?;
            Some((
                w.parse().ok()?,
                rest.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(workers.len(), 2, "two workers:\n{}", done.report());
    for (w, rx) in &workers {
        assert!(
            *rx > 100,
            "worker {w} received only {rx} frames:\n{}",
            done.report()
        );
    }
}
