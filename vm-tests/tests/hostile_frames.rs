//! Frames a gateway must not forward, and ICMP it must not send too often:
//! link-layer broadcast and multicast, UDP with a bad length field, IPv4
//! options that do not parse, source routes, ARP with hardware type 6, and a
//! burst of TTL-1 packets. Every case runs through Linux (conf/gateway.rules
//! loaded by iptables-restore, the oracle) and through xdpgw; what the server
//! receives and what ICMP the client gets back must be the same.
//!
//! The frames are built here and sent inline from the client with a packet
//! socket (python3, one of the lab's packages); a packet sniffer on the server
//! records what arrives until the closing frame, and the client ends its
//! own collection with an echo to the gateway, whose reply comes after any
//! ICMP error the gateway sent about earlier frames.

use std::net::Ipv4Addr;
use std::time::Duration;

use xdpgw_vm_tests::frames::{checksum, FrameSpec, L4Spec, Mac, TCP_SYN};
use xdpgw_vm_tests::lab::{Backend, Lab, LabConfig, Process, WorkDir, CLIENT, CLIENT2, SERVER};
use xdpgw_vm_tests::scenario::{
    conntrack_table, entries_to, on_both_backends, on_both_backends_in,
};
use xdpgw_vm_tests::{lab_config, workspace_dir, LAB_PROGRAMS};

/// A MAC of all zeros: the sender fills in the gateway's (destination) or
/// its own (source).
const FILL: Mac = [0; 6];
const DPORT: u16 = 9999;

/// The closing frame's tag.
const END: &str = "end";

/// A UDP datagram from `src` to the server's port 9999 whose payload is
/// `tag`, to the gateway's MAC.
fn udp(src: Ipv4Addr, sport: u16, tag: &str, ttl: u8) -> FrameSpec {
    FrameSpec {
        dst_mac: FILL,
        src_mac: FILL,
        src,
        dst: SERVER,
        ttl,
        tos: 0,
        id: sport,
        df: false,
        l4: L4Spec::Udp {
            sport,
            dport: DPORT,
            payload: tag.as_bytes().to_vec(),
        },
    }
}

/// Sets the UDP length field of `frame` (no options) to `len`, keeping the
/// UDP checksum right for the bytes Linux sums (the whole datagram) or 0.
fn set_udp_len(mut frame: Vec<u8>, len: u16, zero_checksum: bool) -> Vec<u8> {
    frame[38..40].copy_from_slice(&len.to_be_bytes());
    frame[40..42].copy_from_slice(&[0, 0]);
    if !zero_checksum {
        let l4 = &frame[34..];
        let mut pseudo = Vec::with_capacity(12 + l4.len());
        pseudo.extend_from_slice(&frame[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(l4);
        let c = checksum(&pseudo);
        frame[40..42].copy_from_slice(&c.to_be_bytes());
    }
    frame
}

/// Puts IPv4 options (a multiple of 4 bytes) into `frame`, fixing the
/// header length, total length and header checksum.
fn with_options(frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut f = frame[..34].to_vec();
    f.extend_from_slice(options);
    f.extend_from_slice(&frame[34..]);
    let ihl = (20 + options.len()) / 4;
    f[14] = 0x40 | ihl as u8;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&f[14..14 + ihl * 4]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// The frames of [`malformed`], in order, each with its tag; the last one
/// is [`END`], a plain datagram.
fn malformed_frames() -> Vec<Vec<u8>> {
    let plain = |tag: &str, sport: u16| udp(CLIENT, sport, tag, 64);
    let mut bcast = plain("bcast", 40001);
    bcast.dst_mac = [0xff; 6];
    let mut mcast = plain("mcast", 40002);
    mcast.dst_mac = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
    let mut other = plain("otherhost", 40003);
    other.dst_mac = [0x02, 0, 0, 0, 0, 0x99];
    let opt_badlen = plain("opt_badlen", 40007).build();
    let opt_short = plain("opt_short", 40008).build();
    let opt_rr_ptr = plain("opt_rr_ptr", 40009).build();
    let opt_ok = plain("opt_ok", 40010).build();
    let lsrr = plain("lsrr", 40011).build();
    let mut group = plain("mcast_dst", 40013);
    group.dst = Ipv4Addr::new(239, 1, 2, 3);
    vec![
        plain("first", 40000).build(),
        bcast.build(),
        mcast.build(),
        other.build(),
        set_udp_len(plain("udplen0", 40004).build(), 0, false),
        set_udp_len(plain("udplen_big", 40005).build(), 8 + 10 + 100, false),
        set_udp_len(plain("udplen_small", 40006).build(), 8 + 2, true),
        // Record route whose length (40) runs past the 8 option bytes.
        with_options(opt_badlen, &[7, 40, 4, 0, 0, 0, 0, 0]),
        // A timestamp option of length 3 (at least 4).
        with_options(opt_short, &[1, 68, 3, 5]),
        // Record route with pointer 3 (at least 4).
        with_options(opt_rr_ptr, &[7, 7, 3, 0, 0, 0, 0, 0]),
        // NOPs and an end of list: valid.
        with_options(opt_ok, &[1, 1, 1, 0]),
        // Loose source route through the server: refused unless
        // accept_source_route is on.
        with_options(lsrr, &[1, 131, 7, 4, 203, 0, 113, 254]),
        // A multicast group as destination: no multicast routing.
        group.build(),
        plain(END, 40012).build(),
    ]
}

/// Python run in the client namespace: pings the gateway (learning its MAC),
/// sends the frames given in hex (zero MACs filled in), optionally an ARP
/// request with hardware type 6, then pings the gateway twice more and
/// prints every ICMP message from the gateway other than its echo replies
/// that arrived meanwhile (the server's own are no concern here), and ARP
/// replies to the type-6 request.
const CLIENT_PY: &str = r#"
import socket, struct, sys, time, select
frames = [bytes.fromhex(h) for h in sys.argv[2:]]
arp6 = sys.argv[1] == 'arp6'
GW = '192.168.10.1'
FAKE_MAC = bytes.fromhex('020000000066')
FAKE_IP = socket.inet_aton('192.168.10.66')
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
seen = []
def ping(seq):
    p = struct.pack('!BBHHH', 8, 0, 0, 0x7777, seq) + b'xdpgw-sync'
    p = p[:2] + struct.pack('!H', csum(p)) + p[4:]
    icmp.sendto(p, (GW, 0))
    deadline = time.time() + 10
    while time.time() < deadline:
        r, _, _ = select.select([icmp], [], [], max(0, deadline - time.time()))
        if not r: break
        d, a = icmp.recvfrom(65535)
        ihl = (d[0] & 15) * 4
        t, c = d[ihl], d[ihl + 1]
        if t == 0:
            if struct.unpack('!HH', d[ihl + 4:ihl + 8]) == (0x7777, seq): return
            continue
        q = d[ihl + 8:]
        tag = '-'
        if len(q) >= 20:
            qihl = (q[0] & 15) * 4
            tag = q[qihl + 8:].split(b'\0')[0].decode('ascii', 'replace') or '-'
        if a[0] not in (GW, '203.0.113.1'): continue
        seen.append('icmp from=%s type=%d code=%d word=%s tag=%s' % (a[0], t, c, d[ihl + 4:ihl + 8].hex(), tag))
    sys.exit('no echo reply %d from the gateway' % seq)
ping(1)
gw_mac = None
for line in open('/proc/net/arp'):
    w = line.split()
    if w[0] == GW: gw_mac = bytes.fromhex(w[3].replace(':', ''))
if gw_mac is None: sys.exit('no ARP entry for the gateway')
own = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind(('eth0', 0))
arp_rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
arp_rx.bind(('eth0', 0))
for f in frames:
    if f[0:6] == bytes(6): f = gw_mac + f[6:]
    if f[6:12] == bytes(6): f = f[:6] + own + f[12:]
    tx.send(f)
if arp6:
    req = b'\xff' * 6 + FAKE_MAC + b'\x08\x06' + struct.pack('!HHBBH', 6, 0x0800, 6, 4, 1)
    req += FAKE_MAC + FAKE_IP + bytes(6) + socket.inet_aton(GW)
    tx.send(req)
# xdpgw sends what it generates (ICMP errors) after what it forwards or
# answers in place (the echo reply) of the same batch: a second exchange,
# in a later batch, comes after both.
ping(2)
ping(3)
arp_rx.setblocking(False)
while True:
    try: d = arp_rx.recv(65535)
    except BlockingIOError: break
    if d[32:38] != FAKE_MAC: continue
    htype, ptype, hl, pl, op = struct.unpack('!HHBBH', d[14:22])
    seen.append('arp htype=%d op=%d spa=%s from_gateway=%s' % (htype, op, socket.inet_ntoa(d[28:32]), d[22:28] == gw_mac))
for s in seen: print(s)
"#;

/// Python run in the server namespace: prints `ready`, then one line per
/// UDP datagram to port 9999 as it arrives (tag, TTL, UDP length field),
/// until the [`END`] tag.
const SERVER_PY: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(('eth0', 0))
s.settimeout(30)
# A listener, so that the server answers no datagram with port unreachable.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', 9999))
print('ready', flush=True)
while True:
    d = s.recv(65535)
    ip = d[14:]
    if ip[9] != 17: continue
    ihl = (ip[0] & 15) * 4
    u = ip[ihl:]
    if int.from_bytes(u[2:4], 'big') != 9999: continue
    tag = u[8:].split(b'\0')[0].decode('ascii', 'replace')
    print('udp tag=%s ttl=%d len=%d ihl=%d' % (tag, ip[8], int.from_bytes(u[4:6], 'big'), ihl), flush=True)
    if tag == 'end': break
"#;

fn sniff(lab: &Lab) -> Process {
    let mut p = lab.server().spawn(&["python3", "-c", SERVER_PY]);
    p.wait_line("the sniffer's `ready`", Duration::from_secs(20), |l| {
        l == "ready"
    });
    p
}

fn client(lab: &Lab, ns_is_client2: bool, mode: &str, frames: &[Vec<u8>]) -> Vec<String> {
    let ns = if ns_is_client2 {
        lab.client2()
    } else {
        lab.client()
    };
    let mut args = vec!["python3".to_owned(), "-c".to_owned(), CLIENT_PY.to_owned()];
    args.push(mode.to_owned());
    args.extend(frames.iter().map(|f| hex(f)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.exec(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client script failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

fn received(sniffer: Process) -> Vec<String> {
    let done = sniffer.wait(Duration::from_secs(40));
    assert!(done.status.success(), "sniffer: {}", done.report());
    done.stdout
        .iter()
        .filter(|l| *l != "ready")
        .cloned()
        .collect()
}

#[derive(Debug, PartialEq)]
struct Malformed {
    /// What the server received, in order.
    server: Vec<String>,
    /// ICMP errors and ARP replies the client got.
    client: Vec<String>,
}

#[test]
fn malformed_frames_are_not_forwarded_as_linux() {
    if !xdpgw_vm_tests::require_root_with(
        "malformed_frames_are_not_forwarded_as_linux",
        &[LAB_PROGRAMS, &["python3"]].concat(),
    ) {
        return;
    }
    on_both_backends(
        "malformed_frames_are_not_forwarded_as_linux",
        |lab| {
            let sniffer = sniff(lab);
            let client = client(lab, false, "arp6", &malformed_frames());
            let server = received(sniffer);
            if lab.backend() == Backend::Xdpgw {
                assert_drops_counted(lab);
            }
            Malformed { server, client }
        },
        |o| {
            let tags: Vec<&str> = o
                .server
                .iter()
                .filter_map(|l| l.split_whitespace().nth(1))
                .collect();
            assert_eq!(
                tags,
                ["tag=first", "tag=udplen_small", "tag=opt_ok", "tag=end"],
                "{o:?}"
            );
            assert_eq!(
                o.client,
                [
                    "icmp from=192.168.10.1 type=12 code=0 word=14000000 tag=opt_badlen",
                    "icmp from=192.168.10.1 type=12 code=0 word=16000000 tag=opt_short",
                    "icmp from=192.168.10.1 type=12 code=0 word=16000000 tag=opt_rr_ptr",
                    "arp htype=1 op=2 spa=192.168.10.1 from_gateway=True",
                ]
            );
        },
    );
}

/// xdpgw counted every frame it did not forward under its reason (from the
/// report it prints when it stops). At least: the hosts' own multicast
/// (IGMP reports) may add to `multicast_dst`.
fn assert_drops_counted(lab: &mut Lab) {
    let done = lab.stop_gateway().expect("xdpgw was running");
    let report = done.stderr.join("\n");
    let count = |key: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for (key, at_least) in [
        ("drop link_broadcast", 2),
        ("drop not_for_us", 1),
        ("drop multicast_dst", 1),
        ("drop ipv4_bad_options", 3),
        ("drop ipv4_source_route", 1),
        ("conntrack invalid udp_bad_length", 2),
    ] {
        assert!(
            count(key) >= at_least,
            "'{key}' below {at_least} in:\n{report}"
        );
    }
}

#[derive(Debug, PartialEq)]
struct Burst {
    time_exceeded: usize,
    server: Vec<String>,
}

/// 100 TTL-1 datagrams back to back: Linux answers the first 6 (the
/// per-destination bucket of `icmp_ratelimit`, 1 s, holds 6) and no more.
#[test]
fn ttl_1_burst_gets_icmp_as_rate_limited_as_linux() {
    if !xdpgw_vm_tests::require_root_with(
        "ttl_1_burst_gets_icmp_as_rate_limited_as_linux",
        &[LAB_PROGRAMS, &["python3"]].concat(),
    ) {
        return;
    }
    on_both_backends(
        "ttl_1_burst_gets_icmp_as_rate_limited_as_linux",
        |lab| {
            let sniffer = sniff(lab);
            let mut frames: Vec<Vec<u8>> = (0..100)
                .map(|i| udp(CLIENT2, 41000 + i, "ttl1", 1).build())
                .collect();
            frames.push(udp(CLIENT2, 42000, END, 64).build());
            let client = client(lab, true, "-", &frames);
            if lab.backend() == Backend::Xdpgw {
                let done = lab.stop_gateway().expect("xdpgw was running");
                let report = done.stderr.join("\n");
                assert!(
                    report.contains(
                        "# icmp errors not sent (rate limits): per destination 94, global 0"
                    ),
                    "the 94 refused are counted:\n{report}"
                );
            }
            Burst {
                time_exceeded: client
                    .iter()
                    .filter(|l| l.contains("type=11 code=0"))
                    .count(),
                server: received(sniffer),
            }
        },
        |o| {
            assert_eq!(o.time_exceeded, 6, "{o:?}");
            assert_eq!(o.server.len(), 1, "{o:?}");
        },
    );
}

#[derive(Debug, PartialEq)]
struct Exhaustion {
    /// Conntrack entries of the flood (to TCP port 80).
    granted: usize,
    /// Connections refused for want of a port: Linux's `insert_failed`
    /// (`conntrack -S`), xdpgw's `nat_no_free_port`.
    failed: u64,
}

/// MASQUERADE from 64 ports, 300 SYNs from distinct source ports to one
/// server port (which answers nothing): 64 connections get a port, and every
/// other SYN is counted as a failure, on Linux and on xdpgw alike.
#[test]
fn port_exhaustion_counts_every_failure_as_linux() {
    if !xdpgw_vm_tests::require_root_with(
        "port_exhaustion_counts_every_failure_as_linux",
        &[LAB_PROGRAMS, &["python3"]].concat(),
    ) {
        return;
    }
    const SYNS: u16 = 300;
    let dir = WorkDir::new("exhaust");
    let rules = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules");
    let masq = "-A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE\n";
    assert!(rules.contains(masq), "conf/gateway.rules changed: {masq}");
    let rules = rules.replace(
        masq,
        &format!(
            "-A POSTROUTING -o wan0 -s 192.168.10.0/24 -p tcp -j MASQUERADE --to-ports 40000-40063\n{masq}"
        ),
    );
    std::fs::write(dir.path().join("gateway.rules"), rules).expect("write rules");
    let config = dir.path().join("gateway.toml");
    std::fs::copy(workspace_dir().join("conf/gateway.toml"), &config).expect("copy config");
    xdpgw_vm_tests::copy_rules6(dir.path());
    on_both_backends_in(
        "port_exhaustion_counts_every_failure_as_linux",
        |backend| {
            Lab::gateway_lab(&LabConfig {
                run_args: vec!["--report-on-exit".to_owned()],
                ..lab_config(backend, &config)
            })
        },
        |lab| {
            // The server stays silent: its answers would end the flood's
            // connections early.
            lab.server().exec_ok(&[
                "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP",
            ]);
            let syns: Vec<Vec<u8>> = (0..SYNS)
                .map(|i| {
                    FrameSpec {
                        dst_mac: FILL,
                        src_mac: FILL,
                        src: CLIENT,
                        dst: SERVER,
                        ttl: 64,
                        tos: 0,
                        id: i,
                        df: true,
                        l4: L4Spec::Tcp {
                            sport: 30000 + i,
                            dport: 80,
                            seq: 1000,
                            ack: 0,
                            flags: TCP_SYN,
                            window: 64240,
                            syn_options: true,
                            payload: vec![],
                        },
                    }
                    .build()
                })
                .collect();
            client(lab, false, "-", &syns);
            match lab.backend() {
                Backend::Linux => {
                    let table = conntrack_table(lab);
                    let stats = lab.gateway().exec_ok(&["conntrack", "-S"]);
                    let failed = stats
                        .split_whitespace()
                        .filter_map(|w| w.strip_prefix("insert_failed="))
                        .filter_map(|n| n.parse::<u64>().ok())
                        .sum();
                    Exhaustion {
                        granted: entries_to(&table, "tcp", 80),
                        failed,
                    }
                }
                Backend::Xdpgw => {
                    let done = lab.stop_gateway().expect("xdpgw was running");
                    let table: Vec<String> = done
                        .stderr
                        .iter()
                        .filter_map(|l| l.strip_prefix("ipv4"))
                        .filter_map(|l| l.trim_start().split_once(' ').map(|(_, e)| e.trim_start()))
                        .map(str::to_owned)
                        .collect();
                    let failed = done
                        .stderr
                        .iter()
                        .find_map(|l| l.strip_prefix("#   drop nat_no_free_port: "))
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    Exhaustion {
                        granted: entries_to(&table, "tcp", 80),
                        failed,
                    }
                }
            }
        },
        |o| {
            assert_eq!(o.granted, 64, "{o:?}");
            assert_eq!(o.granted as u64 + o.failed, u64::from(SYNS), "{o:?}");
        },
    );
}
