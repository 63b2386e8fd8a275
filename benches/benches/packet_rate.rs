//! End-to-end packet rate through a namespace lab: xdpgw, the Linux kernel
//! with the same rules, and a bare AF_XDP forwarder (the lab's I/O ceiling).
//!
//! ```text
//!  ns client                 ns gw                          ns server
//!  cl0 192.168.10.2 ── lan0 192.168.10.1 | wan0 203.0.113.1 ── sv0 203.0.113.254
//!  [Port: generator]        (gateway under test)             [Port: sink]
//! ```
//!
//! Run: `cargo bench -p xdpgw-benches --bench packet_rate` (about two
//! minutes). Needs root (namespaces, BPF, AF_XDP), 2 CPUs, `ip`, `ethtool`,
//! `iptables-restore`; otherwise it prints `skipping: ...` and exits 0.
//!
//! - **Generator**: an AF_XDP [`Port`] on the client's veth sends 60-byte
//!   UDP frames (64 on the wire with the FCS) from 192.168.10.2 to
//!   203.0.113.254 port 9 with `tx_copy`, 64 per `flush`, as fast as it can;
//!   1 flow, and 1,024 flows (source ports 1024..2047). The destination MAC
//!   is lan0's, read from sysfs: the generator needs no ARP.
//! - **Sink**: an AF_XDP [`Port`] on the server's veth counts the UDP frames
//!   and answers ARP requests for 203.0.113.254 (its XDP program takes ARP
//!   too, and both gateways resolve the next hop by ARP).
//! - **Placement**: generator and sink in one thread pinned to CPU 0
//!   (send a batch, drain the sink); the gateway on CPU 1. veth runs the
//!   receiving side's NAPI in the softirq of the CPU that transmits: lan0's
//!   receive (XDP redirect into the gateway's socket, or the kernel's
//!   `netif_rx`) runs on CPU 0, and the sink's receive (sv0's XDP, the copy
//!   into the sink's UMEM) runs on the gateway's CPU, inside its `sendto`
//!   (xdpgw, bare) or its forwarding softirq (Linux). This is the best
//!   placement found for every path; pinning sv0's NAPI to CPU 0 instead
//!   (`PACKET_RATE_SINK_NAPI_CPU=0`) lowers all of them (CPU 0 saturates).
//! - **Paths** (rows):
//!   - `xdpgw`: `xdpgw run --config conf/gateway.toml` in the gateway
//!     namespace (lan0/wan0 carry no kernel address; conf/gateway.rules:
//!     MASQUERADE, stateful FORWARD). One worker (the veths have one queue),
//!     which xdpgw pins to the last core, CPU 1. The binary is built by this
//!     bench (`$CARGO build --profile release -p xdpgw-control --bin xdpgw`,
//!     `target/release/xdpgw`); `XDPGW_BIN=path` runs another build instead
//!     (no build then).
//!   - `xdpgw-host`: the same, with a fourth namespace on a third gateway
//!     interface (mgmt0, 192.0.2.1/24) whose host fetches from a TCP
//!     service on the gateway itself (port 443, through the host path) for
//!     the whole row (`xdpgw-lab tcp-serve` and `tcp-get`, the lab's traffic
//!     tools, built like xdpgw; `XDPGW_LAB_BIN` overrides); the notes give
//!     that transfer's rate.
//!   - `linux-rps`, `linux-napi`, `linux`: the kernel forwards with the same
//!     rules (`iptables-restore < conf/gateway.rules`, addresses on
//!     lan0/wan0, ip_forward=1, default route via 203.0.113.254). Without
//!     help its forwarding runs in the softirq of the CPU that transmits into
//!     lan0 — CPU 0, shared with the generator and sink, CPU 1 idle
//!     (`linux`): unfair to Linux. `linux-rps` steers lan0's backlog to CPU 1
//!     (`rps_cpus`), `linux-napi` turns GRO on for lan0 (veth then delivers
//!     through NAPI) and pins its threaded NAPI to CPU 1. The ratio uses the
//!     best of the three.
//!   - `bare`, `bare-group`: a forwarder that only rewrites MACs, on a thread
//!     pinned to CPU 1, over two [`Port`]s with `tx_copy` (the colleague's
//!     former `forwarding_rate` test), or over a [`PortGroup`] moving
//!     descriptors (xdpgw's I/O design). The ratio uses the better one.
//! - **Measure**: after a 1 s warm-up, UDP frames counted by the sink over a
//!   5 s window (also per second: min-max), and frames whose transmission
//!   the generator's socket completed (the offered rate); busy % per CPU,
//!   CPU used by other processes, their forks, and hypervisor steal over the
//!   window: the machine is shared, and a disturbed row shows it. Before
//!   each row the bench waits (up to 20 s) for the machine to be quiet.
//! - **Cleanup**: each row builds a fresh lab of the lab crate's namespace
//!   guards (`xg-pr-*-<pid>-<n>`), deleted on drop, also when a step
//!   panics; xdpgw gets SIGTERM and must exit 0. Namespaces of an earlier
//!   run that was killed (their pid is gone) are removed at start.
//!
//! Knobs (environment): `PACKET_RATE_WINDOW` (seconds, default 5),
//! `PACKET_RATE_PATHS` (comma list of the row names above; default all),
//! `PACKET_RATE_FLOWS` (default `1,1024`), `PACKET_RATE_ROUNDS` (default 1:
//! how many times the whole sequence of rows runs, interleaved; the ratios
//! take each path's best row), `PACKET_RATE_SINK_NAPI_CPU` (threaded NAPI
//! for the sink's veth, pinned there), `PACKET_RATE_RULES` (that many
//! filter rules matching none of the traffic before FORWARD's own, in
//! both gateways; with `PACKET_RATE_UNREPLIED=1` every packet is
//! classified against them), `PACKET_RATE_FAMILY` (`ipv4`, `ipv6` or
//! `ipv4,ipv6`, interleaved within each round; default `ipv4`: see IPv6
//! below), `XDPGW_BIN`, `XDPGW_LAB_BIN`.
//!
//! **IPv6** (`PACKET_RATE_FAMILY=ipv6`): the same rows with 62-byte
//! Ethernet/IPv6/UDP frames (66 on the wire; no payload: the smallest
//! there is) from fd00:10::2 to 2001:db8:113::254 port 9, the lab crate's
//! dual-stack plan (lan0 fd00:10::1/64, wan0 2001:db8:113::1/64). The
//! sink answers neighbour solicitations for its address (an
//! advertisement with its MAC, as `ndisc_send_na` does); the end hosts'
//! kernels have IPv6 off. xdpgw: conf/gateway.toml as for IPv4 (it is
//! dual-stack: those addresses, `::/0` via the sink, `rules6` =
//! conf/gateway.rules6: NAT66 MASQUERADE of fd00:10::/64, stateful
//! FORWARD). Linux: the same addresses
//! (`nodad`), `net.ipv6.conf.all.forwarding=1`, the default route and
//! `ip6tables-restore < conf/gateway.rules6` (and the IPv4 rules, as
//! xdpgw has them too).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use xdpgw_dataplane::port::{
    enter_netns, wait_any, ForwardVerdict, Port, PortConfig, PortGroup, QueueStats, RxVerdict,
};
use xdpgw_lab::{
    host_netns, remove_stale_namespaces, tools_binary, veth, workspace_dir, xdpgw_binary, Netns,
    Process, WorkDir, CLIENT6, GATEWAY_LAN6, GATEWAY_WAN6, LAN6_PREFIX_LEN, LISTEN_TIMEOUT,
    SERVER6, STOP_TIMEOUT,
};
use xdpgw_vm_tests::frames::{FrameSpec, L4Spec};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
const SINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// The IPv6 plan is the lab crate's dual-stack one: the client is
/// [`CLIENT6`] (fd00:10::2), the gateway [`GATEWAY_LAN6`] and
/// [`GATEWAY_WAN6`], the sink [`SERVER6`] (2001:db8:113::254).
const SINK_IP6: Ipv6Addr = SERVER6;
const UDP_DPORT: u16 = 9;
/// Frames the generator queues per `flush`.
const GEN_BATCH: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
/// CPU of the generator + sink thread; the gateway gets the other one.
const TRAFFIC_CPU: usize = 0;
const GATEWAY_CPU: usize = 1;

// ---------------------------------------------------------------------------
// Preconditions and commands
// ---------------------------------------------------------------------------

/// What is missing to run, if anything.
fn missing(families: &[Family]) -> Option<String> {
    let mut tools = vec!["ip", "ethtool", "iptables-restore"];
    if families.contains(&Family::V6) {
        tools.push("ip6tables-restore");
    }
    let mut missing = xdpgw_lab::missing(&tools);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        missing.push("2 CPUs (generator and sink on one, the gateway on the other)".into());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Runs a command, panics with its stderr unless it succeeds; returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// The lab: three namespaces, two veth pairs; deleted on drop
// ---------------------------------------------------------------------------

/// The client, gateway and server namespaces with their veths (the lab
/// crate's guards, `xg-pr-*`). Dropping it deletes the namespaces (and so
/// the veths, addresses, routes and rules in them), also while unwinding
/// from a panic.
struct Lab {
    client: Netns,
    gw: Netns,
    server: Netns,
    /// The management host of [`Lab::add_mgmt`].
    mgmt: Option<Netns>,
    /// The generator's traffic.
    family: Family,
}

/// `ip ARGS...` in `ns`; its output.
fn ip(ns: &Netns, args: &[&str]) -> String {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    ns.exec_ok(&all)
}

impl Lab {
    const CLIENT_IF: &'static str = "cl0";
    const SERVER_IF: &'static str = "sv0";

    fn new(family: Family) -> Lab {
        let lab = Lab {
            client: host_netns("pr-client"),
            gw: host_netns("pr-gw"),
            server: host_netns("pr-server"),
            mgmt: None,
            family,
        };
        if family == Family::V6 {
            // IPv6 in the gateway's kernel (xdpgw's host path, Linux's
            // forwarding), with duplicate address detection off for the
            // interfaces made from now on: addresses usable at once. The
            // end hosts' kernels stay without IPv6 (no solicitations or
            // reports from them); the sink answers neighbour solicitations.
            for key in ["all", "default"] {
                lab.gw
                    .sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0");
                lab.gw
                    .sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
            }
        }
        // Created inside the namespaces: no name is ever used in the root one.
        veth(&lab.gw, "lan0", &lab.client, Self::CLIENT_IF);
        veth(&lab.gw, "wan0", &lab.server, Self::SERVER_IF);
        // Full checksums from the end hosts' kernels (the frames we send are
        // built whole; this only matters for anything their stacks send).
        for (ns, dev) in [
            (&lab.client, Self::CLIENT_IF),
            (&lab.server, Self::SERVER_IF),
        ] {
            ns.exec_ok(&["ethtool", "-K", dev, "tx", "off"]);
        }
        ip(
            &lab.client,
            &["addr", "add", "192.168.10.2/24", "dev", Self::CLIENT_IF],
        );
        ip(
            &lab.client,
            &["route", "add", "default", "via", "192.168.10.1"],
        );
        ip(
            &lab.server,
            &["addr", "add", "203.0.113.254/24", "dev", Self::SERVER_IF],
        );
        lab
    }

    /// A management namespace on a third gateway interface, mgmt0
    /// (192.0.2.1/24; the host `mg0` is 192.0.2.2), for traffic to the
    /// gateway's own services: [`Lab::mgmt`].
    fn add_mgmt(&mut self) {
        let ns = host_netns("pr-mgmt");
        veth(&self.gw, "mgmt0", &ns, "mg0");
        ip(&ns, &["addr", "add", "192.0.2.2/24", "dev", "mg0"]);
        ns.exec_ok(&["ethtool", "-K", "mg0", "tx", "off"]);
        self.mgmt = Some(ns);
    }

    fn mac(&self, ns: &Netns, dev: &str) -> [u8; 6] {
        let text = ns.exec_ok(&["cat", &format!("/sys/class/net/{dev}/address")]);
        let mut mac = [0u8; 6];
        let parts: Vec<u8> = text
            .trim()
            .split(':')
            .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|e| panic!("{text:?}: {e}")))
            .collect();
        mac.copy_from_slice(&parts);
        mac
    }

    /// The kernel as the gateway: addresses, forwarding, route and rules.
    fn configure_linux(&self, rps_cpu: Option<usize>) {
        let gw = &self.gw;
        ip(gw, &["addr", "add", "192.168.10.1/24", "dev", "lan0"]);
        ip(gw, &["addr", "add", "203.0.113.1/24", "dev", "wan0"]);
        ip(gw, &["route", "add", "default", "via", "203.0.113.254"]);
        gw.sysctl("net.ipv4.ip_forward", "1");
        gw.exec_stdin_ok(&["iptables-restore"], &rules_text(Family::V4));
        if self.family == Family::V6 {
            for (addr, dev) in [(GATEWAY_LAN6, "lan0"), (GATEWAY_WAN6, "wan0")] {
                let addr = format!("{addr}/{LAN6_PREFIX_LEN}");
                ip(gw, &["-6", "addr", "add", &addr, "dev", dev, "nodad"]);
            }
            ip(
                gw,
                &[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &SINK_IP6.to_string(),
                ],
            );
            gw.sysctl("net.ipv6.conf.all.forwarding", "1");
            gw.exec_stdin_ok(&["ip6tables-restore"], &rules_text(Family::V6));
        }
        if let Some(cpu) = rps_cpu {
            let mask = format!("{:x}", 1u64 << cpu);
            gw.exec_ok(&[
                "sh",
                "-c",
                &format!("echo {mask} > /sys/class/net/lan0/queues/rx-0/rps_cpus"),
            ]);
        }
    }
}

// ---------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------

/// Jiffies of one CPU, from /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
struct CpuJiffies {
    /// user, nice, system, irq, softirq.
    busy: u64,
    /// Taken by the hypervisor.
    steal: u64,
    total: u64,
}

fn cpu_times() -> Vec<CpuJiffies> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            CpuJiffies {
                busy: at(0) + at(1) + at(2) + at(5) + at(6),
                steal: at(7),
                total: (0..8).map(at).sum(),
            }
        })
        .collect()
}

/// Processes created since boot (/proc/stat `processes`): nothing of ours
/// forks during a window, so a difference counts other activity, also
/// short-lived commands that `process_ticks` never sees.
fn forks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("processes ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Busy and steal % per CPU between two samples.
fn busy_percent(before: &[CpuJiffies], after: &[CpuJiffies]) -> Vec<(f64, f64)> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.total.saturating_sub(b.total).max(1) as f64;
            (
                100.0 * a.busy.saturating_sub(b.busy) as f64 / total,
                100.0 * a.steal.saturating_sub(b.steal) as f64 / total,
            )
        })
        .collect()
}

fn pin(cpu: usize) {
    assert!(
        core_affinity::set_for_current(CoreId { id: cpu }),
        "pinning a thread to CPU {cpu}"
    );
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// The generator's frames: one per flow, 60 bytes (64 with the FCS) for
/// IPv4, [`UDP6_FRAME_LEN`] for IPv6.
fn udp_frames(family: Family, flows: usize, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<Vec<u8>> {
    if family == Family::V6 {
        return (0..flows)
            .map(|i| udp6_frame(dst_mac, src_mac, 1024 + i as u16))
            .collect();
    }
    (0..flows)
        .map(|i| {
            let f = FrameSpec {
                dst_mac,
                src_mac,
                src: CLIENT_IP,
                dst: SINK_IP,
                ttl: 64,
                tos: 0,
                id: 1,
                df: false,
                l4: L4Spec::Udp {
                    sport: 1024 + i as u16,
                    dport: UDP_DPORT,
                    payload: vec![0xab; 18],
                },
            }
            .build();
            assert_eq!(f.len(), 60);
            f
        })
        .collect()
}

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_ARP: [u8; 2] = [0x08, 0x06];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Ethernet, IPv6 and UDP headers, no payload: the smallest IPv6 UDP
/// frame (66 bytes on the wire with the FCS).
const UDP6_FRAME_LEN: usize = 14 + 40 + 8;
/// A neighbour advertisement with the target link-layer address option.
const NA_FRAME_LEN: usize = 14 + 40 + 24 + 8;

/// The internet checksum of an upper-layer packet `l4` over IPv6 (RFC
/// 8200 8.1: the pseudo-header of source, destination, length and next
/// header).
fn checksum6(src: &[u8], dst: &[u8], next: u8, l4: &[u8]) -> u16 {
    let len = (l4.len() as u32).to_be_bytes();
    let mut sum = 0u32;
    for part in [src, dst, &len[..], &[0, 0, 0, next][..], l4] {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv6/UDP frame from [`CLIENT6`] port `sport` to the sink's
/// port 9, with no payload ([`UDP6_FRAME_LEN`] bytes).
fn udp6_frame(dst_mac: [u8; 6], src_mac: [u8; 6], sport: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(UDP6_FRAME_LEN);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_IPV6);
    // Version 6, no traffic class or flow label; payload length, next
    // header, hop limit.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&8u16.to_be_bytes());
    f.extend_from_slice(&[IPPROTO_UDP, 64]);
    f.extend_from_slice(&CLIENT6.octets());
    f.extend_from_slice(&SINK_IP6.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&UDP_DPORT.to_be_bytes());
    f.extend_from_slice(&8u16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let sum = match checksum6(&f[22..38], &f[38..54], IPPROTO_UDP, &f[54..]) {
        0 => 0xffff,
        s => s,
    };
    f[60..62].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(f.len(), UDP6_FRAME_LEN);
    f
}

/// Turns the neighbour solicitation in `frame` (for `ip`) into the sink's
/// advertisement, in place: solicited and override, with the target
/// link-layer address `mac` (what `ndisc_send_na` answers); to the
/// all-nodes address if the solicitation came from the unspecified
/// address (duplicate address detection). Returns its length, or `None`
/// when the frame's buffer cannot hold it.
fn neighbour_advert(frame: &mut [u8], mac: [u8; 6], ip: Ipv6Addr) -> Option<usize> {
    if frame.len() < NA_FRAME_LEN {
        return None;
    }
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[6..12]);
    let mut dst_ip = [0u8; 16];
    dst_ip.copy_from_slice(&frame[22..38]);
    let solicited = dst_ip != [0; 16];
    if !solicited {
        dst_mac = [0x33, 0x33, 0, 0, 0, 1];
        dst_ip = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    }
    let mut na = [0u8; NA_FRAME_LEN];
    na[0..6].copy_from_slice(&dst_mac);
    na[6..12].copy_from_slice(&mac);
    na[12..14].copy_from_slice(&ETH_IPV6);
    na[14] = 0x60;
    na[18..20].copy_from_slice(&((NA_FRAME_LEN - 54) as u16).to_be_bytes());
    na[20] = IPPROTO_ICMPV6;
    na[21] = 255;
    na[22..38].copy_from_slice(&ip.octets());
    na[38..54].copy_from_slice(&dst_ip);
    na[54] = ND_NEIGHBOR_ADVERT;
    // Flags: solicited (0x40) when answering a unicast address, override
    // (0x20).
    na[58] = if solicited { 0x60 } else { 0x20 };
    na[62..78].copy_from_slice(&ip.octets());
    // Option 2 (target link-layer address), 1 unit of 8 bytes.
    na[78] = 2;
    na[79] = 1;
    na[80..86].copy_from_slice(&mac);
    let sum = checksum6(&na[22..38], &na[38..54], IPPROTO_ICMPV6, &na[54..]);
    na[56..58].copy_from_slice(&sum.to_be_bytes());
    frame[..NA_FRAME_LEN].copy_from_slice(&na);
    Some(NA_FRAME_LEN)
}

/// What the sink does with a frame: counts UDP to port 9, turns an ARP
/// request or a neighbour solicitation for its address into the reply
/// (in place).
enum SinkFrame {
    /// UDP to port 9, with its source port (the flow, after the gateway's
    /// NAT).
    Udp(u16),
    /// An ARP reply or a neighbour advertisement of this length.
    NeighbourReply(usize),
    Other,
}

fn sink_frame(frame: &mut [u8], len: usize, mac: [u8; 6], ip: Ipv4Addr) -> SinkFrame {
    if len >= 14 && frame[12..14] == ETH_IPV6 {
        return sink_frame6(frame, len, mac, SINK_IP6);
    }
    if len >= 42 && frame[12..14] == ETH_IPV4 && frame[23] == 17 {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let dport = 14 + ihl + 2;
        if len >= dport + 2 && frame[dport..dport + 2] == UDP_DPORT.to_be_bytes() {
            return SinkFrame::Udp(u16::from_be_bytes([frame[dport - 2], frame[dport - 1]]));
        }
        return SinkFrame::Other;
    }
    // Ethernet/IPv4 ARP request (htype 1, ptype 0x0800, 6, 4, op 1) for `ip`.
    if len >= 42
        && frame[12..14] == ETH_ARP
        && frame[14..22] == [0, 1, 8, 0, 6, 4, 0, 1]
        && frame[38..42] == ip.octets()
    {
        let mut asker = [0u8; 10];
        asker.copy_from_slice(&frame[22..32]); // sender MAC + IP
        frame[0..6].copy_from_slice(&asker[..6]);
        frame[6..12].copy_from_slice(&mac);
        frame[21] = 2;
        frame[22..28].copy_from_slice(&mac);
        frame[28..32].copy_from_slice(&ip.octets());
        frame[32..42].copy_from_slice(&asker);
        return SinkFrame::NeighbourReply(42);
    }
    SinkFrame::Other
}

/// [`sink_frame`] for IPv6 frames (no extension headers: none are sent).
fn sink_frame6(frame: &mut [u8], len: usize, mac: [u8; 6], ip: Ipv6Addr) -> SinkFrame {
    if len >= UDP6_FRAME_LEN && frame[20] == IPPROTO_UDP {
        if frame[56..58] == UDP_DPORT.to_be_bytes() {
            return SinkFrame::Udp(u16::from_be_bytes([frame[54], frame[55]]));
        }
        return SinkFrame::Other;
    }
    if len >= 78
        && frame[20] == IPPROTO_ICMPV6
        && frame[21] == 255
        && frame[54] == ND_NEIGHBOR_SOLICIT
        && frame[62..78] == ip.octets()
    {
        if let Some(n) = neighbour_advert(frame, mac, ip) {
            return SinkFrame::NeighbourReply(n);
        }
    }
    SinkFrame::Other
}

/// Turns a received Ethernet/IPv4/UDP or Ethernet/IPv6/UDP frame into its
/// reply, in place: MACs, addresses and ports swapped. The checksums are
/// sums over the swapped fields, so they stay valid.
fn swap_for_reply(frame: &mut [u8]) {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[0..6]);
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&mac);
    let l4 = if frame[12..14] == ETH_IPV6 {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&frame[22..38]);
        frame.copy_within(38..54, 22);
        frame[38..54].copy_from_slice(&ip);
        54
    } else {
        let mut ip = [0u8; 4];
        ip.copy_from_slice(&frame[26..30]);
        frame.copy_within(30..34, 26);
        frame[30..34].copy_from_slice(&ip);
        14 + usize::from(frame[14] & 0x0f) * 4
    };
    let mut port = [0u8; 2];
    port.copy_from_slice(&frame[l4..l4 + 2]);
    frame.copy_within(l4 + 2..l4 + 4, l4);
    frame[l4 + 2..l4 + 4].copy_from_slice(&port);
}

// ---------------------------------------------------------------------------
// Generator + sink: one thread on CPU 0
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TrafficReport {
    /// Frames per second the generator's socket completed, over the window.
    sent_pps: f64,
    /// UDP frames per second the sink received, over the window.
    received_pps: f64,
    /// The sink's rate in each second of the window.
    slices: Vec<f64>,
    /// Busy and steal % per CPU over the window.
    cpu_busy: Vec<(f64, f64)>,
    /// CPU time of other processes during the window, in % of one CPU.
    foreign: f64,
    /// Processes other programs started during the window.
    forks: u64,
    neighbour_replies: u64,
    other: u64,
    gen: QueueStats,
    sink: QueueStats,
}

/// Where to put the NAPI contexts of the end hosts' veths (threaded NAPI
/// pinned to a CPU), or `None` to leave them in softirq context.
#[derive(Debug, Clone, Copy, Default)]
struct NapiPlacement {
    sink: Option<usize>,
}

/// Runs the generator and the sink for `WARMUP + window` in one thread
/// pinned to `TRAFFIC_CPU`. `ours` are the pids whose CPU time is not
/// counted as foreign load (this process is always ours).
fn traffic(
    lab: &Lab,
    flows: usize,
    window: Duration,
    napi: NapiPlacement,
    ours: &[u32],
) -> TrafficReport {
    let lan_mac = lab.mac(&lab.gw, "lan0");
    let client_mac = lab.mac(&lab.client, Lab::CLIENT_IF);
    let sink_mac = lab.mac(&lab.server, Lab::SERVER_IF);
    let frames = udp_frames(lab.family, flows, lan_mac, client_mac);
    let (client, server) = (lab.client.path(), lab.server.path());
    let server_ns = lab.server.name().to_owned();
    let mut ours = ours.to_vec();
    ours.push(std::process::id());
    let handle = std::thread::spawn(move || {
        enter_netns(&client).unwrap_or_else(|e| panic!("setns {}: {e}", client.display()));
        let mut gen_port =
            Port::open(&PortConfig::new(Lab::CLIENT_IF)).unwrap_or_else(|e| panic!("{e}"));
        enter_netns(&server).unwrap_or_else(|e| panic!("setns {}: {e}", server.display()));
        let mut sink_port =
            Port::open(&PortConfig::new(Lab::SERVER_IF)).unwrap_or_else(|e| panic!("{e}"));
        let (Some(mut gen), Some(mut sink)) = (gen_port.queues().pop(), sink_port.queues().pop())
        else {
            panic!("no queues")
        };
        if let Some(cpu) = napi.sink {
            // veth has NAPI (and so a thread to pin) only once XDP is attached.
            threaded_napi(&server_ns, Lab::SERVER_IF, cpu);
        }
        pin(TRAFFIC_CPU);
        let (mut received, mut neighbour_replies, mut other) = (0u64, 0u64, 0u64);
        let mut next = 0;
        let start = Instant::now();
        // (when, generator completions, sink frames) at each second.
        let mut marks: Vec<(Instant, u64, u64)> = Vec::new();
        let mut cpu0 = Vec::new();
        let mut foreign0 = HashMap::new();
        let mut forks0 = 0;
        let seconds = window.as_secs().max(1) as usize;
        let mut until_client_drain = 64u32;
        // Flows answered once (by source port).
        let mut answered = vec![0u64; 1024];
        let established = std::env::var_os("PACKET_RATE_UNREPLIED").is_none();
        loop {
            for _ in 0..GEN_BATCH {
                gen.tx_copy(&frames[next]);
                next += 1;
                if next == frames.len() {
                    next = 0;
                }
            }
            gen.flush();
            loop {
                let n = sink.rx_batch(64, |frame, len| {
                    match sink_frame(frame, len, sink_mac, SINK_IP) {
                        SinkFrame::Udp(port) => {
                            received += 1;
                            let bit = 1u64 << (port % 64);
                            let word = &mut answered[usize::from(port / 64)];
                            if established && *word & bit == 0 {
                                // Answer each flow once, so that the gateways
                                // see it ESTABLISHED: the same frame with
                                // MACs, addresses and ports swapped (which
                                // leaves both checksums as they are).
                                *word |= bit;
                                swap_for_reply(frame);
                                return RxVerdict::Tx(len);
                            }
                        }
                        SinkFrame::NeighbourReply(len) => {
                            neighbour_replies += 1;
                            return RxVerdict::Tx(len);
                        }
                        SinkFrame::Other => other += 1,
                    }
                    RxVerdict::Drop
                });
                if n < 64 {
                    break;
                }
            }
            sink.flush();
            until_client_drain -= 1;
            if until_client_drain == 0 {
                until_client_drain = 64;
                // Nothing is expected towards the client; keep its ring empty.
                gen.rx_batch(64, |_, _| RxVerdict::Drop);
            }
            let now = Instant::now();
            let due = start + WARMUP + Duration::from_secs(marks.len() as u64);
            if now >= due {
                if marks.is_empty() {
                    cpu0 = cpu_times();
                    foreign0 = process_ticks(&ours);
                    forks0 = forks();
                }
                marks.push((now, gen.stats().tx_completed, received));
                if marks.len() > seconds {
                    break;
                }
            }
        }
        let cpu1 = cpu_times();
        let foreign1 = process_ticks(&ours);
        let forks1 = forks();
        let (first, last) = (marks[0], marks[marks.len() - 1]);
        let secs = (last.0 - first.0).as_secs_f64();
        let report = TrafficReport {
            sent_pps: (last.1 - first.1) as f64 / secs,
            received_pps: (last.2 - first.2) as f64 / secs,
            slices: marks
                .windows(2)
                .map(|w| (w[1].2 - w[0].2) as f64 / (w[1].0 - w[0].0).as_secs_f64())
                .collect(),
            cpu_busy: busy_percent(&cpu0, &cpu1),
            foreign: foreign_percent(&foreign0, &foreign1, secs),
            forks: forks1.saturating_sub(forks0),
            neighbour_replies,
            other,
            gen: gen.stats(),
            sink: sink.stats(),
        };
        drop((gen, sink, gen_port, sink_port));
        report
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Switches `dev` in `ns` to threaded NAPI and pins its NAPI thread(s) to
/// `cpu`.
fn threaded_napi(ns: &str, dev: &str, cpu: usize) {
    let before = napi_threads(dev);
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{dev}/threaded"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(2);
    let new = loop {
        let new: Vec<u32> = napi_threads(dev)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() || Instant::now() > deadline {
            break new;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!new.is_empty(), "no NAPI thread appeared for {dev}");
    for pid in new {
        run(&["taskset", "-pc", &cpu.to_string(), &pid.to_string()]);
    }
}

/// Pids of the kernel threads named `napi/<dev>-*`.
fn napi_threads(dev: &str) -> Vec<u32> {
    let prefix = format!("napi/{dev}-");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with(&prefix).then_some(pid)
        })
        .collect()
}

/// utime + stime (USER_HZ ticks) of every process but `ours`, kernel
/// threads included (other labs' namespace teardown runs in kworkers) except
/// those that do our traffic's softirq work (ksoftirqd, NAPI threads).
fn process_ticks(ours: &[u32]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ours.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        if comm.starts_with("ksoftirqd/") || comm.starts_with("napi/") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After the command: utime and stime are fields 14 and 15.
        out.insert(pid, num(11) + num(12));
    }
    out
}

/// CPU used by other processes between two `process_ticks`, in % of one CPU.
fn foreign_percent(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>, secs: f64) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / 100.0 / secs.max(0.001) * 100.0
}

/// Waits (up to 20 s) until the machine is quiet: both CPUs under 10%
/// busy and other processes under 5% of a CPU over half a second. Returns
/// whether it got quiet.
fn wait_until_quiet() -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let me = [std::process::id()];
    loop {
        let (c0, p0) = (cpu_times(), process_ticks(&me));
        std::thread::sleep(Duration::from_millis(500));
        let (c1, p1) = (cpu_times(), process_ticks(&me));
        let busy = busy_percent(&c0, &c1);
        let quiet =
            busy.iter().all(|(b, st)| b + st < 10.0) && foreign_percent(&p0, &p1, 0.5) < 5.0;
        if quiet {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

// ---------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------

/// Starts `xdpgw run --config CONFIG` in the gateway namespace and waits
/// for its `ready` line; the guard kills it if dropped (SIGTERM it with
/// `Process::stop`).
fn start_xdpgw(lab: &Lab, bin: &Path, config: &Path) -> Process {
    let (bin, config) = (bin.display().to_string(), config.display().to_string());
    let mut proc = lab.gw.spawn(&[&bin, "run", "--config", &config]);
    let ready = proc.wait_line("`ready` line", Duration::from_secs(30), |l| {
        l.starts_with("ready")
    });
    eprintln!("  xdpgw (pid {}): {ready}", proc.pid());
    proc
}

/// The bare forwarder: lan0 → wan0 with the MACs rewritten, two Ports and
/// `tx_copy`, like xdpgw's I/O; on a thread in the gateway namespace.
struct Bare {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(QueueStats, QueueStats, CpuTime)>>,
}

/// User and system CPU time of a thread (system time includes the softirq
/// work the kernel runs in its context: this kernel has no separate IRQ
/// time accounting).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    /// From a `/proc/.../stat` file (utime and stime, in USER_HZ ticks).
    fn read(stat_path: &Path) -> CpuTime {
        let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of the line: 11 and 12 after the command.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        CpuTime {
            user: Duration::from_millis(ticks(11) * 10),
            system: Duration::from_millis(ticks(12) * 10),
        }
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    fn total(self) -> Duration {
        self.user + self.system
    }
}

impl std::fmt::Display for CpuTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total().as_secs_f64().max(0.01);
        write!(
            f,
            "{:.2} s CPU, {:.0}% of it in the kernel",
            self.total().as_secs_f64(),
            100.0 * self.system.as_secs_f64() / total
        )
    }
}

fn thread_cpu() -> CpuTime {
    CpuTime::read(Path::new("/proc/thread-self/stat"))
}

/// Every thread of process `pid` with its CPU time.
fn threads_cpu(pid: u32) -> HashMap<u32, CpuTime> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            Some((tid, CpuTime::read(&e.path().join("stat"))))
        })
        .collect()
}

/// The thread of `pid` that used the most CPU since `before`.
fn busiest_thread(pid: u32, before: &HashMap<u32, CpuTime>) -> CpuTime {
    threads_cpu(pid)
        .into_iter()
        .map(|(tid, now)| now.since(before.get(&tid).copied().unwrap_or_default()))
        .max_by_key(|t| t.total())
        .unwrap_or_default()
}

/// How the bare forwarder moves a frame from lan0 to wan0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    /// Two [`Port`]s: `rx_batch` on lan0, `tx_copy` to wan0 (one memcpy).
    Copy,
    /// One [`PortGroup`] (a UMEM shared by lan0 and wan0): the descriptor
    /// moves to wan0's TX ring, no copy.
    Group,
}

impl Bare {
    fn start(lab: &Lab, design: Design) -> Bare {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = lab.gw.path();
        let client_mac = lab.mac(&lab.client, Lab::CLIENT_IF);
        let sink_mac = lab.mac(&lab.server, Lab::SERVER_IF);
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            enter_netns(&path).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            match design {
                Design::Copy => forward_copy(&flag, &ready_tx, client_mac, sink_mac),
                Design::Group => forward_group(&flag, &ready_tx, client_mac, sink_mac),
            }
        });
        if ready_rx.recv().is_err() {
            match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => panic!("bare forwarder exited before it was ready"),
            }
        }
        Bare {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (QueueStats, QueueStats, CpuTime) {
        // Release: pairs with the forwarder's Acquire load.
        self.stop.store(true, Ordering::Release);
        match self.handle.take().expect("joined once").join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The copy design's loop (see the colleague's port tests): returns the
/// lan0 and wan0 socket counters and the thread's CPU time.
fn forward_copy(
    stop: &AtomicBool,
    ready: &mpsc::Sender<()>,
    client_mac: [u8; 6],
    sink_mac: [u8; 6],
) -> (QueueStats, QueueStats, CpuTime) {
    let mut lan = Port::open(&PortConfig::new("lan0")).unwrap_or_else(|e| panic!("{e}"));
    let mut wan = Port::open(&PortConfig::new("wan0")).unwrap_or_else(|e| panic!("{e}"));
    let (lan_mac, wan_mac) = (lan.mac(), wan.mac());
    let (Some(mut ql), Some(mut qw)) = (lan.queues().pop(), wan.queues().pop()) else {
        panic!("no queues")
    };
    pin(GATEWAY_CPU);
    let _ = ready.send(());
    let cpu_start = thread_cpu();
    let mut idle = false;
    // Acquire: pairs with the Release store in `finish`.
    while !stop.load(Ordering::Acquire) {
        if idle {
            wait_any(&[&ql, &qw], Duration::from_millis(5));
        }
        let mut got = ql.rx_batch(64, |frame, len| {
            frame[0..6].copy_from_slice(&sink_mac);
            frame[6..12].copy_from_slice(&wan_mac);
            qw.tx_copy(&frame[..len]);
            RxVerdict::Drop
        });
        got += qw.rx_batch(64, |frame, len| {
            frame[0..6].copy_from_slice(&client_mac);
            frame[6..12].copy_from_slice(&lan_mac);
            ql.tx_copy(&frame[..len]);
            RxVerdict::Drop
        });
        ql.flush();
        qw.flush();
        idle = got == 0;
    }
    let cpu = thread_cpu().since(cpu_start);
    let stats = (ql.stats(), qw.stats(), cpu);
    drop((ql, qw, lan, wan));
    stats
}

/// The group design's loop: port 0 is lan0, port 1 wan0.
fn forward_group(
    stop: &AtomicBool,
    ready: &mpsc::Sender<()>,
    client_mac: [u8; 6],
    sink_mac: [u8; 6],
) -> (QueueStats, QueueStats, CpuTime) {
    let mut group = PortGroup::open(&[PortConfig::new("lan0"), PortConfig::new("wan0")])
        .unwrap_or_else(|e| panic!("{e}"));
    let (Some(lan_mac), Some(wan_mac)) = (group.mac(0), group.mac(1)) else {
        panic!("a group of two has two MACs")
    };
    let Some(mut q) = group.queues().into_iter().next() else {
        panic!("no queues")
    };
    pin(GATEWAY_CPU);
    let _ = ready.send(());
    let cpu_start = thread_cpu();
    let mut idle = false;
    // Acquire: pairs with the Release store in `finish`.
    while !stop.load(Ordering::Acquire) {
        if idle {
            q.wait(Duration::from_millis(5));
        }
        let got = q.rx_batch(64, |port, frame, len| {
            if port == 0 {
                frame[0..6].copy_from_slice(&sink_mac);
                frame[6..12].copy_from_slice(&wan_mac);
                ForwardVerdict::Tx { port: 1, len }
            } else {
                frame[0..6].copy_from_slice(&client_mac);
                frame[6..12].copy_from_slice(&lan_mac);
                ForwardVerdict::Tx { port: 0, len }
            }
        });
        q.flush();
        idle = got == 0;
    }
    let cpu = thread_cpu().since(cpu_start);
    let stats = (
        q.stats(0).unwrap_or_default(),
        q.stats(1).unwrap_or_default(),
        cpu,
    );
    drop((q, group));
    stats
}

impl Drop for Bare {
    fn drop(&mut self) {
        // Release: as in `finish` (reached when a step panics).
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/// The gateway under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    Xdpgw,
    XdpgwHost,
    LinuxRps,
    LinuxNapi,
    Linux,
    Bare,
    BareGroup,
}

impl Gateway {
    const ALL: [Gateway; 7] = [
        Gateway::Xdpgw,
        Gateway::XdpgwHost,
        Gateway::LinuxRps,
        Gateway::LinuxNapi,
        Gateway::Linux,
        Gateway::Bare,
        Gateway::BareGroup,
    ];

    fn name(self) -> &'static str {
        match self {
            Gateway::Xdpgw => "xdpgw",
            Gateway::XdpgwHost => "xdpgw-host",
            Gateway::LinuxRps => "linux-rps",
            Gateway::LinuxNapi => "linux-napi",
            Gateway::Linux => "linux",
            Gateway::Bare => "bare",
            Gateway::BareGroup => "bare-group",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Gateway::Xdpgw => "xdpgw, gateway.rules, 1 worker",
            Gateway::XdpgwHost => "xdpgw, + host-path TCP transfer",
            Gateway::LinuxRps => "Linux, gateway.rules, RPS",
            Gateway::LinuxNapi => "Linux, gateway.rules, NAPI",
            Gateway::Linux => "Linux, gateway.rules, no RPS",
            Gateway::Bare => "bare forwarder, 2 Ports + copy",
            Gateway::BareGroup => "bare forwarder, PortGroup",
        }
    }

    fn placement(self) -> &'static str {
        match self {
            Gateway::Xdpgw | Gateway::XdpgwHost => "worker CPU1 (xdpgw pins it)",
            Gateway::LinuxRps => "fwd softirq CPU1 (lan0 rps_cpus=2)",
            Gateway::LinuxNapi => "lan0 GRO+threaded NAPI on CPU1",
            Gateway::Linux => "fwd softirq CPU0 (with gen+sink)",
            Gateway::Bare | Gateway::BareGroup => "forwarder thread CPU1",
        }
    }
}

/// The IP version of the generator's traffic (`PACKET_RATE_FAMILY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The rule file of conf/ this family's traffic meets.
    fn rules_file(self) -> &'static str {
        match self {
            Family::V4 => "gateway.rules",
            Family::V6 => "gateway.rules6",
        }
    }
}

struct Row {
    gw: Gateway,
    family: Family,
    flows: usize,
    t: TrafficReport,
    /// Whether the machine was quiet before the run.
    quiet: bool,
    note: String,
}

/// Nonzero veth counters about drops (`ethtool -S`), for the notes.
fn veth_drops(ns: &str, dev: &str) -> String {
    let text = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-S", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            let v: u64 = v.trim().parse().ok()?;
            (v > 0 && k.contains("drop")).then(|| format!("{dev} {k} {v}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn measure(
    gw: Gateway,
    family: Family,
    flows: usize,
    window: Duration,
    napi: NapiPlacement,
    bins: Option<&Binaries>,
) -> Row {
    let quiet = wait_until_quiet();
    let mut lab = Lab::new(family);
    let (t, note) = match gw {
        Gateway::Xdpgw | Gateway::XdpgwHost => {
            let bins = bins.expect("the xdpgw and xdpgw-lab binaries");
            let workdir = WorkDir::new("packet-rate-conf");
            let config = if gw == Gateway::XdpgwHost {
                lab.add_mgmt();
                write_config(workdir.path(), true)
            } else if extra_rules() > 0 {
                write_config(workdir.path(), false)
            } else {
                workspace_dir().join("conf/gateway.toml")
            };
            let proc = start_xdpgw(&lab, &bins.xdpgw, &config);
            let load = lab
                .mgmt
                .as_ref()
                .map(|mgmt| HostLoad::start(&lab, mgmt, &bins.tools));
            let before = threads_cpu(proc.pid());
            let mut ours = vec![proc.pid()];
            ours.extend(load.iter().flat_map(HostLoad::pids));
            let t = traffic(&lab, flows, window, napi, &ours);
            let worker = busiest_thread(proc.pid(), &before);
            let drops = veth_drops(lab.gw.name(), "lan0");
            let host_note = load.map(|l| l.finish(&lab)).unwrap_or_default();
            let note = format!(
                "worker thread: {worker}{}{drops}{host_note}",
                if drops.is_empty() { "" } else { "; " }
            );
            let done = proc.stop(STOP_TIMEOUT);
            assert!(
                done.status.success(),
                "xdpgw exited with {} on SIGTERM:\n{}",
                done.status,
                done.report()
            );
            (t, note)
        }
        Gateway::LinuxRps | Gateway::Linux | Gateway::LinuxNapi => {
            lab.configure_linux((gw == Gateway::LinuxRps).then_some(GATEWAY_CPU));
            if gw == Gateway::LinuxNapi {
                // GRO on makes veth deliver through NAPI (not the backlog),
                // and threaded NAPI lets us place that work on CPU 1.
                lab.gw.exec_ok(&["ethtool", "-K", "lan0", "gro", "on"]);
                threaded_napi(lab.gw.name(), "lan0", GATEWAY_CPU);
            }
            let t = traffic(&lab, flows, window, napi, &[]);
            let note = veth_drops(lab.gw.name(), "lan0");
            (t, note)
        }
        Gateway::Bare | Gateway::BareGroup => {
            let design = if gw == Gateway::Bare {
                Design::Copy
            } else {
                Design::Group
            };
            let bare = Bare::start(&lab, design);
            let t = traffic(&lab, flows, window, napi, &[]);
            let (lan, wan, cpu) = bare.finish();
            let note = format!(
                "lan0 socket: rx ring full {}, fill ring empty {}; wan0 tx_full {}; \
                 forwarder thread: {}",
                lan.rx_ring_full, lan.rx_fill_ring_empty_descs, wan.tx_full, cpu
            );
            (t, note)
        }
    };
    Row {
        gw,
        family,
        flows,
        t,
        quiet,
        note,
    }
}

/// `PACKET_RATE_RULES`: how many non-matching filter rules both gateways
/// get at the top of FORWARD (0 unless set).
fn extra_rules() -> usize {
    env_number("PACKET_RATE_RULES").unwrap_or(0) as usize
}

/// conf/gateway.rules (conf/gateway.rules6 for IPv6), with
/// [`extra_rules`] rules that match none of the traffic before FORWARD's
/// own (`xdpgw_benches::rules_with_prefix`, `rules6_with_prefix`).
fn rules_text(family: Family) -> String {
    let rules = workspace_dir().join("conf").join(family.rules_file());
    let text =
        std::fs::read_to_string(&rules).unwrap_or_else(|e| panic!("{}: {e}", rules.display()));
    match (extra_rules(), family) {
        (0, _) => text,
        (n, Family::V4) => xdpgw_benches::rules_with_prefix(&text, n),
        (n, Family::V6) => xdpgw_benches::rules6_with_prefix(&text, n),
    }
}

/// conf/gateway.toml (dual-stack: the lab's IPv6 addresses on lan0 and
/// wan0, `::/0` via the sink) with [`rules_text`] as its rules (both
/// families'), written to `dir`; the configuration's path. With `host_load`,
/// a third interface, mgmt0 (192.0.2.1/24), whose hosts may reach the
/// gateway's TCP 443 ([`HostLoad`]).
fn write_config(dir: &Path, host_load: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut rules = rules_text(Family::V4);
    if host_load {
        let anchor = "-A INPUT -m conntrack --ctstate INVALID -j DROP\n";
        assert!(rules.contains(anchor), "conf/gateway.rules changed");
        rules = rules.replace(
            anchor,
            &format!("{anchor}-A INPUT -i mgmt0 -p tcp --dport 443 -j ACCEPT\n"),
        );
    }
    std::fs::write(dir.join("gateway.rules"), rules).expect("write rules");
    std::fs::write(dir.join("gateway.rules6"), rules_text(Family::V6)).expect("write rules6");
    let toml = std::fs::read_to_string(workspace_dir().join("conf/gateway.toml"))
        .expect("conf/gateway.toml")
        .replace("control_socket = \"/run/xdpgw.sock\"", "");
    assert!(
        toml.contains("rules6 = \"gateway.rules6\"") && toml.contains(&GATEWAY_WAN6.to_string()),
        "conf/gateway.toml is no longer dual-stack"
    );
    let toml = if host_load {
        toml + "\n[[interface]]\nname = \"mgmt0\"\naddress = \"192.0.2.1/24\"\n"
    } else {
        toml
    };
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// A TCP transfer through the host path during a row: `xdpgw-lab
/// tcp-serve 443` on the gateway host, a client in the management
/// namespace fetching from it for as long as the row runs.
struct HostLoad {
    service: Process,
    client: Process,
    started: Instant,
    tx_bytes_at_start: u64,
}

impl HostLoad {
    fn start(lab: &Lab, mgmt: &Netns, tools: &Path) -> HostLoad {
        let tools = tools.display().to_string();
        // Its peer lines are read as it prints them: it never blocks on a
        // full pipe.
        let mut service = lab.gw.spawn(&[&tools, "tcp-serve", "443"]);
        service.wait_line("`listening` line", LISTEN_TIMEOUT, |l| {
            l.starts_with("listening")
        });
        let client = mgmt.spawn(&[
            &tools,
            "tcp-get",
            "192.0.2.1",
            "443",
            "1000000000000",
            "--timeout",
            "600",
        ]);
        HostLoad {
            service,
            client,
            started: Instant::now(),
            tx_bytes_at_start: Self::host_tx_bytes(lab),
        }
    }

    fn pids(&self) -> [u32; 2] {
        [self.service.pid(), self.client.pid()]
    }

    /// Bytes the host sent into its mgmt0 device (the service's data).
    fn host_tx_bytes(lab: &Lab) -> u64 {
        lab.gw
            .exec_ok(&["cat", "/sys/class/net/xg-mgmt0/statistics/tx_bytes"])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Stops the transfer; its rate over the row, for the notes.
    fn finish(self, lab: &Lab) -> String {
        let bytes = Self::host_tx_bytes(lab).saturating_sub(self.tx_bytes_at_start);
        let secs = self.started.elapsed().as_secs_f64();
        self.client.kill();
        self.service.kill();
        format!(
            "; host path during the row: {:.0} Mbit/s TCP from the gateway's service to mgmt0",
            bytes as f64 * 8.0 / secs / 1e6
        )
    }
}

/// The binaries the xdpgw rows run: the gateway, and the lab's traffic
/// tools (for the host path's load), both release builds that this bench
/// makes with the cargo running it (`XDPGW_BIN`, `XDPGW_LAB_BIN` run
/// others instead).
struct Binaries {
    xdpgw: PathBuf,
    tools: PathBuf,
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

fn print_table(rows: &[Row], window: Duration, napi: NapiPlacement) {
    println!();
    println!(
        "packet_rate: UDP frames of 60 bytes for IPv4 (64 on the wire), {UDP6_FRAME_LEN} \
         for IPv6 ({} on the wire), client -> gateway -> sink; {} s warm-up, {} s window",
        UDP6_FRAME_LEN + 4,
        WARMUP.as_secs(),
        window.as_secs()
    );
    println!(
        "generator + sink: one thread on CPU {TRAFFIC_CPU} (AF_XDP copy mode, {GEN_BATCH} \
         tx_copy per flush, then drain the sink); sink veth NAPI: {}",
        match napi.sink {
            Some(cpu) => format!("threaded, pinned to CPU {cpu}"),
            None => "softirq of the CPU that transmits to it (the gateway's)".into(),
        }
    );
    println!();
    let header = [
        "flows",
        "IP",
        "path",
        "gateway placement",
        "sent",
        "sink",
        "sink 1s min-max",
        "lost",
        "CPU0",
        "CPU1",
        "other",
        "steal",
    ];
    let units = [
        "", "", "", "", "Mpps", "Mpps", "Mpps", "%", "%", "%", "%CPU", "%",
    ];
    for h in [header, units] {
        println!(
            "{:>5}  {:<4}  {:<31}  {:<34}  {:>5}  {:>5}  {:>15}  {:>4}  {:>4}  {:>4}  {:>5}  {:>5}",
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]
        );
    }
    for r in rows {
        let lost = if r.t.sent_pps > 0.0 {
            (100.0 * (1.0 - r.t.received_pps / r.t.sent_pps)).max(0.0)
        } else {
            0.0
        };
        let min = r.t.slices.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.t.slices.iter().copied().fold(0.0, f64::max);
        let busy = |cpu: usize| r.t.cpu_busy.get(cpu).map_or(0.0, |c| c.0);
        let steal =
            r.t.cpu_busy.iter().map(|c| c.1).sum::<f64>() / r.t.cpu_busy.len().max(1) as f64;
        println!(
            "{:>5}  {:<4}  {:<31}  {:<34}  {:>5.3}  {:>5.3}  {:>15}  {:>4.0}  {:>4.0}  {:>4.0}  {:>5.0}  {:>5}  {:>5.1}{}",
            r.flows,
            match r.family {
                Family::V4 => "v4",
                Family::V6 => "v6",
            },
            match r.family {
                Family::V4 => r.gw.label().to_owned(),
                Family::V6 => r.gw.label().replace("gateway.rules", "gateway.rules6"),
            },
            r.gw.placement(),
            r.t.sent_pps / 1e6,
            r.t.received_pps / 1e6,
            format!("{:.3}-{:.3}", min / 1e6, max / 1e6),
            lost,
            busy(0),
            busy(1),
            r.t.foreign,
            r.t.forks,
            steal,
            if r.quiet {
                ""
            } else {
                "  (machine busy before)"
            },
        );
    }
    println!();
    // Each path at its best placement / design.
    let mut runs: Vec<(Family, usize)> = rows.iter().map(|r| (r.family, r.flows)).collect();
    runs.dedup();
    runs.sort_by_key(|&(family, flows)| (family.name(), flows));
    runs.dedup();
    for (ip, f) in runs {
        let best = |paths: &[Gateway], flows: usize| {
            rows.iter()
                .filter(|r| paths.contains(&r.gw) && r.flows == flows && r.family == ip)
                .max_by(|a, b| a.t.received_pps.total_cmp(&b.t.received_pps))
        };
        let f_ip = format!("{f:>5} flow(s), {}", ip.name());
        if let (Some(x), Some(h)) = (best(&[Gateway::Xdpgw], f), best(&[Gateway::XdpgwHost], f)) {
            println!(
                "{f_ip}: xdpgw forwarding with a host-path transfer running: {:.2}x of \
                 without",
                h.t.received_pps / x.t.received_pps
            );
        }
        let Some(x) = best(&[Gateway::Xdpgw], f) else {
            continue;
        };
        let x = x.t.received_pps;
        let mut parts = Vec::new();
        if let Some(k) = best(&[Gateway::LinuxRps, Gateway::LinuxNapi, Gateway::Linux], f) {
            let q = x / k.t.received_pps;
            parts.push(format!(
                "xdpgw / Linux ({}) {q:.2}x [target >= 1.25x: {}]",
                k.gw.name(),
                if q >= 1.25 { "met" } else { "NOT met" }
            ));
        }
        if let Some(b) = best(&[Gateway::Bare, Gateway::BareGroup], f) {
            let q = x / b.t.received_pps;
            parts.push(format!(
                "xdpgw / bare ({}) {q:.2}x [target >= 0.90x: {}]",
                b.gw.name(),
                if q >= 0.9 { "met" } else { "NOT met" }
            ));
        }
        println!("{f_ip}: {}", parts.join("; "));
    }
    println!(
        "(each ratio: the best row of each path in this run, over its placements / designs and \
         rounds)"
    );
    println!();
    println!(
        "other: CPU time of other processes and kernel threads (not ksoftirqd/NAPI) during \
         the window, in % of one CPU; forks: processes others started in the window; steal: \
         hypervisor steal, % of the CPUs. A row with other, forks or steal well above 0 was \
         disturbed: rerun it."
    );
    println!("notes:");
    for r in rows {
        println!(
            "{:>5} {} {:<10}  sink: {} ARP/NA replies, {} other frames, rx ring full {}, fill \
             ring empty {}; generator tx_full {}{}{}",
            r.flows,
            r.family.name(),
            r.gw.name(),
            r.t.neighbour_replies,
            r.t.other,
            r.t.sink.rx_ring_full,
            r.t.sink.rx_fill_ring_empty_descs,
            r.t.gen.tx_full,
            if r.note.is_empty() { "" } else { "; " },
            r.note
        );
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this is a
    // measurement of minutes, not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "packet_rate: a benchmark; run it with `cargo bench -p xdpgw-benches --bench packet_rate`"
        );
        return;
    }
    let families: Vec<Family> = match env_list("PACKET_RATE_FAMILY") {
        Some(names) => [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| names.iter().any(|n| n == f.name()))
            .collect(),
        None => vec![Family::V4],
    };
    if let Some(what) = missing(&families) {
        println!("skipping: packet_rate needs {what}");
        return;
    }
    // Labs of an earlier run that was killed (their pid is gone).
    remove_stale_namespaces();
    let window = Duration::from_secs(env_number("PACKET_RATE_WINDOW").unwrap_or(5).max(1));
    let napi = NapiPlacement {
        sink: env_number("PACKET_RATE_SINK_NAPI_CPU").map(|c| c as usize),
    };
    let gateways: Vec<Gateway> = match env_list("PACKET_RATE_PATHS") {
        Some(names) => Gateway::ALL
            .into_iter()
            .filter(|g| names.iter().any(|n| n == g.name()))
            .collect(),
        None => Gateway::ALL.to_vec(),
    };
    let flow_counts: Vec<usize> = env_list("PACKET_RATE_FLOWS")
        .map(|v| v.iter().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 1024]);
    let bins = gateways
        .iter()
        .any(|g| matches!(g, Gateway::Xdpgw | Gateway::XdpgwHost))
        .then(|| Binaries {
            xdpgw: xdpgw_binary(),
            tools: tools_binary(),
        });
    // Rounds interleave the rows (xdpgw, Linux, bare, xdpgw, ...), so that
    // a disturbance of the shared machine hits one round, not one path.
    let rounds = env_number("PACKET_RATE_ROUNDS").unwrap_or(1).max(1);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for &flows in &flow_counts {
            for &family in &families {
                for &gw in &gateways {
                    eprintln!(
                        "packet_rate: {} {} with {flows} flow(s), round {round}/{rounds}",
                        gw.name(),
                        family.name()
                    );
                    rows.push(measure(gw, family, flows, window, napi, bins.as_ref()));
                }
            }
        }
    }
    print_table(&rows, window, napi);
}
