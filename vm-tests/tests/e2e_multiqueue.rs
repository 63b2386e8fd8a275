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
use xdpgw_vm_tests::{lab_config, require_root_with, workspace_dir, xdpgw_binary, LAB_PROGRAMS};

fn two_queue_lab(backend: Backend) -> Lab {
    Lab::gateway_lab(&LabConfig {
        run_args: vec!["--report-on-exit".to_owned()],
        queues: 2,
        ..lab_config(backend, &workspace_dir().join("conf/gateway.toml"))
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
            let (w, rest) = rest.split_once(": received ")?;
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

/// `conntrack -S` with two workers: one line per worker, each counting the
/// packets it tracked itself, so that the lines add up to what was sent:
/// every connection inserted once by one worker, and every deliberately
/// INVALID segment (SYN+FIN from 16 source ports, spread over the queues)
/// counted once, under `tcp_bad_flags`, by the worker that saw it.
#[test]
fn conntrack_stats_per_worker() {
    let mut programs = LAB_PROGRAMS.to_vec();
    programs.push("python3");
    if !require_root_with("conntrack_stats_per_worker", &programs) {
        return;
    }
    let lab = two_queue_lab(Backend::Xdpgw);
    let _server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
    let result = lab.tool_result(
        lab.client(),
        &["tcp-many", &ip(SERVER), "8080", "100", "--timeout", "30"],
        Duration::from_secs(120),
    );
    assert_eq!(result, "ok=100 failed=0");
    let syn_fin = "
import socket,struct
src,dst='192.168.10.2','203.0.113.254'
r=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP)
for sport in range(41000,41016):
    h=struct.pack('!HHIIBBHHH',sport,8080,1,0,5<<4,0x03,1024,0,0)
    p=socket.inet_aton(src)+socket.inet_aton(dst)+struct.pack('!BBH',0,6,len(h))
    s=sum(struct.unpack('!%dH'%((len(p)+len(h))//2),p+h))
    while s>>16: s=(s&0xffff)+(s>>16)
    r.sendto(h[:16]+struct.pack('!H',(~s)&0xffff)+h[18:],(dst,0))
";
    let out = lab.client().exec(&["python3", "-c", syn_fin]);
    assert!(out.status.success(), "{out:?}");
    let field = |line: &str, key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in '{line}'"))
    };
    // The workers publish their counters within milliseconds.
    let mut stats = String::new();
    for _ in 0..50 {
        let out = std::process::Command::new(xdpgw_binary())
            .args(["conntrack", "-S", "--config"])
            .arg(lab.config_path())
            .output()
            .expect("xdpgw conntrack -S");
        assert!(out.status.success(), "{out:?}");
        stats = String::from_utf8_lossy(&out.stdout).into_owned();
        let bad: u64 = stats
            .lines()
            .filter_map(|l| l.split_once(" invalid tcp_bad_flags="))
            .filter_map(|(_, v)| v.split(' ').next()?.parse::<u64>().ok())
            .sum();
        if bad >= 16 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("conntrack -S with two workers:\n{stats}");
    let cpus: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("cpu=") && l.contains('\t'))
        .collect();
    assert_eq!(cpus.len(), 2, "{stats}");
    assert!(
        cpus[0].starts_with("cpu=0   \t") && cpus[1].starts_with("cpu=1   \t"),
        "{stats}"
    );
    let inserted: u64 = cpus.iter().map(|l| field(l, "insert=")).sum();
    assert_eq!(inserted, 100, "each connection inserted once: {stats}");
    let bad: Vec<u64> = (0..2)
        .map(|w| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cpu={w} invalid tcp_bad_flags=")))
                .and_then(|v| v.split(' ').next()?.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(bad.iter().sum::<u64>(), 16, "{stats}");
    for (w, line) in cpus.iter().enumerate() {
        assert!(
            field(line, "found=") > 0,
            "worker {w} tracked packets: {stats}"
        );
    }
}
