//! The seed corpus of the pipeline fuzz target (`fuzz/seeds/pipeline/`):
//! valid frames for the gateway that `fuzz/fuzz_targets/pipeline.rs` builds
//! (conf/gateway.rules; lan0 02:00:00:00:01:01 192.168.10.1, wan0
//! 02:00:00:00:02:01 203.0.113.1; the client 192.168.10.2 at
//! 02:00:00:00:0a:02 and the upstream 203.0.113.254 at 02:00:00:00:0b:fe
//! already resolved), so that fuzzing starts from frames that get through
//! parsing and checksums into conntrack, NAT, the rules and the answers:
//! ARP, ping (to the gateway and through it), a TCP conversation from SYN
//! to the last ACK through MASQUERADE, TCP to the REJECTed, REDIRECTed,
//! NOTRACKed and DSCP-marked ports, UDP both ways, ICMP errors quoting TCP
//! and UDP, TTL 1.
//!
//! Each seed is one fuzz input: a byte that selects the interface
//! (`byte % 3`: 0 lan0, 1 wan0) and the time (`byte << 20` ns), then the
//! frame. Checksums are computed from scratch by `xdpgw_vm_tests::frames`.
//! The gateway is the fuzz target's (`xdpgw_vm_tests::fuzz::pipeline`).
//!
//! The test checks that the committed corpus is exactly what this file
//! generates, that each seed has the intended effect when the seeds run in
//! order through one worker, and that each runs as the fuzz target runs
//! it. Regenerate after changing the seeds:
//!
//! ```sh
//! XDPGW_WRITE_SEEDS=1 cargo test -p xdpgw-vm-tests --test fuzz_seeds
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::pipeline::Emit;
use xdpgw_dataplane::worker::Worker;
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::{fuzz, workspace_dir};

const LAN_MAC: Mac = fuzz::pipeline::LAN_MAC;
const WAN_MAC: Mac = fuzz::pipeline::WAN_MAC;
const CLIENT_MAC: Mac = fuzz::pipeline::CLIENT.1;
const UPSTREAM_MAC: Mac = fuzz::pipeline::UPSTREAM.1;
const BROADCAST: Mac = [0xff; 6];

const GW_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
const GW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const CLIENT: Ipv4Addr = fuzz::pipeline::CLIENT.0;
const SERVER: Ipv4Addr = fuzz::pipeline::UPSTREAM.0;
const RELAY: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 10);

/// The interface selector byte of a seed.
const LAN: u8 = 0;
const WAN: u8 = 1;

/// What a seed is meant to do (in order, after the seeds before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Forwarded (or answered in place) out of this interface.
    Out(u8),
    /// Answered through the emit path, or consumed (an ARP reply).
    Consumed,
    /// For the gateway's own stack.
    Host,
    /// Dropped (by a rule, or as INVALID).
    Dropped,
}

struct Seed {
    name: &'static str,
    iface: u8,
    frame: Vec<u8>,
    effect: Effect,
}

fn arp(
    op: u16,
    dst_mac: Mac,
    src_mac: Mac,
    sender: Ipv4Addr,
    target_mac: Mac,
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target.octets());
    f
}

/// A frame from the client on the LAN (to the gateway's lan0 MAC).
fn from_client(dst: Ipv4Addr, l4: L4Spec) -> FrameSpec {
    FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst,
        ttl: 64,
        tos: 0,
        id: 0x1234,
        df: true,
        l4,
    }
}

/// A frame from the server upstream to the gateway's wan0 address.
fn from_server(l4: L4Spec) -> FrameSpec {
    FrameSpec {
        dst_mac: WAN_MAC,
        src_mac: UPSTREAM_MAC,
        src: SERVER,
        dst: GW_WAN,
        ttl: 64,
        tos: 0,
        id: 0x4321,
        df: true,
        l4,
    }
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> L4Spec {
    L4Spec::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        window: 64240,
        syn_options: flags & TCP_SYN != 0,
        payload: payload.to_vec(),
    }
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4Spec {
    L4Spec::Udp {
        sport,
        dport,
        payload: payload.to_vec(),
    }
}

fn echo(ty: u8, id: u16, seq: u16) -> L4Spec {
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    L4Spec::Icmp {
        ty,
        code: 0,
        rest,
        payload: (0..56u8).collect(),
    }
}

/// An ICMP error from the server quoting `quoted` as it left the gateway
/// (its IP header and first 8 bytes of transport header).
fn icmp_error(ty: u8, code: u8, quoted: &FrameSpec) -> L4Spec {
    let f = quoted.build();
    L4Spec::Icmp {
        ty,
        code,
        rest: [0; 4],
        payload: f[14..14 + 28].to_vec(),
    }
}

/// The seeds, in conversation order.
fn seeds() -> Vec<Seed> {
    const SYN_SEQ: u32 = 1_000_000;
    const SYN_ACK_SEQ: u32 = 5_000_000;
    let request = b"GET / HTTP/1.0\r\n\r\n";
    let response = b"HTTP/1.0 200 OK\r\n\r\nhello";
    let seed = |name, iface, frame: Vec<u8>, effect| Seed {
        name,
        iface,
        frame,
        effect,
    };
    // The client's UDP query as it leaves wan0 (MASQUERADE keeps the port).
    let udp_out = FrameSpec {
        dst_mac: UPSTREAM_MAC,
        src_mac: WAN_MAC,
        src: GW_WAN,
        dst: SERVER,
        ..from_client(SERVER, udp(5353, 53, b"\x12\x34\x01\x00"))
    };
    let https_out = FrameSpec {
        dst_mac: UPSTREAM_MAC,
        src_mac: WAN_MAC,
        src: GW_WAN,
        dst: SERVER,
        ..from_client(SERVER, tcp(40003, 443, 7_000_001, 9_000_001, TCP_ACK, b""))
    };
    let http_out = FrameSpec {
        dst_mac: UPSTREAM_MAC,
        src_mac: WAN_MAC,
        src: GW_WAN,
        dst: SERVER,
        ttl: 1,
        ..from_client(
            SERVER,
            tcp(40000, 80, SYN_SEQ + 1, SYN_ACK_SEQ + 1, TCP_ACK, b""),
        )
    };
    vec![
        seed(
            "arp-request-lan",
            LAN,
            arp(1, BROADCAST, CLIENT_MAC, CLIENT, [0; 6], GW_LAN),
            Effect::Out(LAN),
        ),
        seed(
            "arp-reply-wan",
            WAN,
            arp(2, WAN_MAC, UPSTREAM_MAC, SERVER, WAN_MAC, GW_WAN),
            Effect::Consumed,
        ),
        seed(
            "ping-gateway",
            LAN,
            from_client(GW_LAN, echo(8, 7, 1)).build(),
            Effect::Out(LAN),
        ),
        seed(
            "ping-through",
            LAN,
            from_client(SERVER, echo(8, 8, 1)).build(),
            Effect::Out(WAN),
        ),
        seed(
            "ping-reply",
            WAN,
            from_server(echo(0, 8, 1)).build(),
            Effect::Out(LAN),
        ),
        seed(
            "tcp-syn",
            LAN,
            from_client(SERVER, tcp(40000, 80, SYN_SEQ, 0, TCP_SYN, b"")).build(),
            Effect::Out(WAN),
        ),
        seed(
            "tcp-syn-ack",
            WAN,
            from_server(tcp(
                80,
                40000,
                SYN_ACK_SEQ,
                SYN_SEQ + 1,
                TCP_SYN | TCP_ACK,
                b"",
            ))
            .build(),
            Effect::Out(LAN),
        ),
        seed(
            "tcp-ack",
            LAN,
            from_client(
                SERVER,
                tcp(40000, 80, SYN_SEQ + 1, SYN_ACK_SEQ + 1, TCP_ACK, b""),
            )
            .build(),
            Effect::Out(WAN),
        ),
        seed(
            "tcp-psh-ack",
            LAN,
            from_client(
                SERVER,
                tcp(
                    40000,
                    80,
                    SYN_SEQ + 1,
                    SYN_ACK_SEQ + 1,
                    TCP_PSH | TCP_ACK,
                    request,
                ),
            )
            .build(),
            Effect::Out(WAN),
        ),
        seed(
            "tcp-psh-ack-reply",
            WAN,
            from_server(tcp(
                80,
                40000,
                SYN_ACK_SEQ + 1,
                SYN_SEQ + 1 + request.len() as u32,
                TCP_PSH | TCP_ACK,
                response,
            ))
            .build(),
            Effect::Out(LAN),
        ),
        seed(
            "tcp-fin-ack",
            LAN,
            from_client(
                SERVER,
                tcp(
                    40000,
                    80,
                    SYN_SEQ + 1 + request.len() as u32,
                    SYN_ACK_SEQ + 1 + response.len() as u32,
                    TCP_FIN | TCP_ACK,
                    b"",
                ),
            )
            .build(),
            Effect::Out(WAN),
        ),
        seed(
            "tcp-fin-ack-reply",
            WAN,
            from_server(tcp(
                80,
                40000,
                SYN_ACK_SEQ + 1 + response.len() as u32,
                SYN_SEQ + 2 + request.len() as u32,
                TCP_FIN | TCP_ACK,
                b"",
            ))
            .build(),
            Effect::Out(LAN),
        ),
        seed(
            "tcp-last-ack",
            LAN,
            from_client(
                SERVER,
                tcp(
                    40000,
                    80,
                    SYN_SEQ + 2 + request.len() as u32,
                    SYN_ACK_SEQ + 2 + response.len() as u32,
                    TCP_ACK,
                    b"",
                ),
            )
            .build(),
            Effect::Out(WAN),
        ),
        seed(
            "icmp-time-exceeded-quoting-tcp",
            WAN,
            from_server(icmp_error(11, 0, &http_out)).build(),
            Effect::Out(LAN),
        ),
        seed(
            "tcp-rst-without-connection",
            LAN,
            from_client(SERVER, tcp(40001, 80, 42, 0, TCP_RST, b"")).build(),
            Effect::Dropped,
        ),
        seed(
            "tcp-syn-smtp-rejected",
            LAN,
            from_client(SERVER, tcp(40002, 25, 77, 0, TCP_SYN, b"")).build(),
            Effect::Dropped,
        ),
        seed(
            "tcp-syn-smtp-redirected",
            LAN,
            from_client(RELAY, tcp(40004, 25, 88, 0, TCP_SYN, b"")).build(),
            Effect::Host,
        ),
        seed(
            "tcp-syn-ssh-notrack",
            LAN,
            from_client(GW_LAN, tcp(40005, 22, 99, 0, TCP_SYN, b"")).build(),
            Effect::Host,
        ),
        seed(
            "tcp-syn-https",
            LAN,
            from_client(SERVER, tcp(40003, 443, 7_000_000, 0, TCP_SYN, b"")).build(),
            Effect::Out(WAN),
        ),
        seed(
            "tcp-syn-ack-https-dscp",
            WAN,
            from_server(tcp(
                443,
                40003,
                9_000_000,
                7_000_001,
                TCP_SYN | TCP_ACK,
                b"",
            ))
            .build(),
            Effect::Out(LAN),
        ),
        seed(
            "icmp-host-unreachable-quoting-tcp",
            WAN,
            from_server(icmp_error(3, 1, &https_out)).build(),
            Effect::Out(LAN),
        ),
        seed(
            "udp-dns",
            LAN,
            from_client(SERVER, udp(5353, 53, b"\x12\x34\x01\x00")).build(),
            Effect::Out(WAN),
        ),
        seed(
            "udp-dns-reply",
            WAN,
            from_server(udp(53, 5353, b"\x12\x34\x81\x80")).build(),
            Effect::Out(LAN),
        ),
        seed(
            "icmp-port-unreachable-quoting-udp",
            WAN,
            from_server(icmp_error(3, 3, &udp_out)).build(),
            Effect::Out(LAN),
        ),
        seed(
            "udp-dns-to-gateway",
            LAN,
            from_client(GW_LAN, udp(5354, 53, b"\x12\x35\x01\x00")).build(),
            Effect::Host,
        ),
        seed(
            "udp-ttl-1",
            LAN,
            FrameSpec {
                ttl: 1,
                ..from_client(SERVER, udp(5355, 33434, b"trace"))
            }
            .build(),
            Effect::Dropped,
        ),
        seed(
            "ping-from-wan-to-lan-refused",
            WAN,
            FrameSpec {
                dst: CLIENT,
                ..from_server(echo(8, 9, 1))
            }
            .build(),
            Effect::Dropped,
        ),
    ]
}

/// The fuzz input of a seed: the interface selector, then the frame.
fn input(s: &Seed) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + s.frame.len());
    v.push(s.iface);
    v.extend_from_slice(&s.frame);
    v
}

struct Sink;

impl Emit for Sink {
    fn emit(&mut self, _: u8, frame: &[u8]) {
        assert!(frame.len() <= 2048);
    }
}

fn corpus_dir() -> PathBuf {
    workspace_dir().join("fuzz/seeds/pipeline")
}

#[test]
fn committed_corpus_is_what_the_seeds_generate() {
    let want: BTreeMap<String, Vec<u8>> = seeds()
        .iter()
        .map(|s| (s.name.to_owned(), input(s)))
        .collect();
    assert_eq!(want.len(), seeds().len(), "seed names must be unique");
    let dir = corpus_dir();
    if std::env::var("XDPGW_WRITE_SEEDS").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (name, bytes) in &want {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
    let mut got = BTreeMap::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it: XDPGW_WRITE_SEEDS=1 cargo test -p xdpgw-vm-tests --test fuzz_seeds",
            dir.display()
        )
    });
    for e in entries {
        let e = e.expect("directory entry");
        let name = e.file_name().to_string_lossy().into_owned();
        got.insert(name, std::fs::read(e.path()).expect("read a seed"));
    }
    assert!(
        got == want,
        "{} is not what vm-tests/tests/fuzz_seeds.rs generates (files {:?}, expected {:?}); \
         regenerate it: XDPGW_WRITE_SEEDS=1 cargo test -p xdpgw-vm-tests --test fuzz_seeds",
        dir.display(),
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
}

#[test]
fn seeds_in_order_have_their_intended_effect() {
    let gw = fuzz::pipeline::gateway();
    let mut worker = Worker::new(Arc::clone(&gw), 1);
    let mut failures = Vec::new();
    for s in seeds() {
        let mut buf = vec![0u8; 2048];
        buf[..s.frame.len()].copy_from_slice(&s.frame);
        let action =
            worker
                .batch(Sink)
                .process(u64::from(s.iface) << 20, s.iface, &mut buf, s.frame.len());
        let effect = match action {
            Action::Forward { iface, .. } | Action::Emitted { iface, .. } => Effect::Out(iface),
            Action::Consumed => Effect::Consumed,
            Action::Host { .. } | Action::HostReassembled { .. } => Effect::Host,
            Action::Drop(_) => Effect::Dropped,
        };
        if effect != s.effect {
            failures.push(format!(
                "{}: expected {:?}, got {action:?}",
                s.name, s.effect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seeds_run_as_the_fuzz_target_runs_them() {
    let gw = fuzz::pipeline::gateway();
    for s in seeds() {
        fuzz::pipeline::run(&gw, &input(&s));
    }
}
