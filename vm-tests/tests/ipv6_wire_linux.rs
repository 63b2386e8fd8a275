//! Linux as the receiver of the IPv6 frames `xdpgw_dataplane::wire::ipv6`
//! builds, and as the sender of the ones it parses: a host namespace with
//! Linux's IPv6 (accept_ra=2) on one end of a veth pair; on the other,
//! with IPv6 off in its kernel, a packet socket through which this test
//! plays the router, answering with the wire module's builders only:
//!
//! - a router advertisement: the host autoconfigures its address from the
//!   prefix with the interface identifier `link_local_eui64` derives from
//!   its MAC, a default route via our EUI-64 link-local address, the MTU;
//! - the host's answer to our neighbour solicitation parses as the
//!   advertisement Linux means; its solicitations for our addresses get
//!   our advertisements (without which nothing below would reach us);
//! - its ping gets our echo reply, its TCP SYN our reset (connection
//!   refused), its UDP our port unreachable (connection refused), its
//!   1,300-byte datagram our packet too big (its route takes MTU 1280).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv6Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use xdpgw_dataplane::wire::ipv6::ndp::{
    self, build_na, build_ra, link_local_eui64, Ndp, NdpAddrs, NeighbourAdvert, NeighbourSolicit,
    PrefixInfo, RouterAdvert,
};
use xdpgw_dataplane::wire::ipv6::{
    build_icmpv6_error, build_tcp_rst6, echo_reply_in_place, parse_ipv6, Icmpv6Error, Ipv6Info,
    L4v6, ICMPV6_ECHO_REQUEST, ICMPV6_PORT_UNREACH,
};
use xdpgw_dataplane::wire::set_macs;
use xdpgw_vm_tests::lab::netns::veth;
use xdpgw_vm_tests::lab::process::Process;
use xdpgw_vm_tests::Netns;

const GW_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x06, 0x01];
const PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0);
const GW_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 1);
const FAR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 1);
const WAIT: Duration = Duration::from_secs(10);

/// The packet socket: prints each received IPv6 frame (not its own) as a
/// hex line, sends each hex line it reads.
const RESPONDER: &str = r#"
import os, select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
buf = b""
while True:
    r, _, _ = select.select([s, 0], [], [])
    if s in r:
        f, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            print(f.hex(), flush=True)
    if 0 in r:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            s.send(bytes.fromhex(line.decode()))
"#;

/// A packet socket on an interface of a namespace (the [`RESPONDER`]
/// process): the frames it receives as they come, and frames to send.
struct PacketSocket {
    child: Child,
    stdin: ChildStdin,
    frames: Receiver<Vec<u8>>,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PacketSocket {
    fn start(ns: &Netns, iface: &str) -> PacketSocket {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-u", "-c", RESPONDER])
            .arg(iface)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the packet socket");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let frame = if line == "ready" {
                    Vec::new()
                } else {
                    (0..line.len() / 2)
                        .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap_or(0))
                        .collect()
                };
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let ready = frames
            .recv_timeout(WAIT)
            .expect("the packet socket is ready");
        assert!(ready.is_empty());
        PacketSocket {
            child,
            stdin,
            frames,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(self.stdin, "{hex}").expect("write to the packet socket");
    }

    /// The next frame received within `wait`.
    fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(wait).ok()
    }
}

/// The router's side: a packet socket, our addresses, the host's MAC.
struct Router {
    sock: PacketSocket,
    ll: Ipv6Addr,
    host_mac: [u8; 6],
}

impl Router {
    fn start(ns: &Netns, iface: &str, host_mac: [u8; 6]) -> Router {
        Router {
            sock: PacketSocket::start(ns, iface),
            ll: link_local_eui64(GW_MAC),
            host_mac,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        self.sock.send(frame);
    }

    /// Serves frames until `done()` holds (checked between frames, at
    /// least every 100 ms), at most [`WAIT`]: answers neighbour
    /// solicitations for our addresses, hands every other parsed frame to
    /// `handle`, and sends what it returns. Panics on timeout.
    fn serve(
        &mut self,
        what: &str,
        mut handle: impl FnMut(&[u8], &Ipv6Info) -> Option<Vec<u8>>,
        mut done: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            let Some(frame) = self.sock.recv(Duration::from_millis(100)) else {
                continue;
            };
            let Ok(info) = parse_ipv6(&frame) else {
                continue;
            };
            let reply = match ndp::parse_ndp(&frame, &info) {
                Ok(Ndp::NeighbourSolicit(ns)) if self.ours(ns.target) => self.advert(&info, &ns),
                _ => handle(&frame, &info),
            };
            if let Some(reply) = reply {
                self.send(&reply);
            }
        }
    }

    fn ours(&self, addr: Ipv6Addr) -> bool {
        addr == self.ll || addr == GW_ADDR
    }

    /// Our advertisement answering `ns`, as Linux's ndisc_recv_ns answers
    /// (solicited, override, router, our MAC).
    fn advert(&self, info: &Ipv6Info, ns: &NeighbourSolicit) -> Option<Vec<u8>> {
        let addrs = NdpAddrs {
            src_mac: GW_MAC,
            dst_mac: ns.source_mac.unwrap_or(self.host_mac),
            src: ns.target,
            dst: info.src,
        };
        let na = NeighbourAdvert {
            target: ns.target,
            router: true,
            solicited: true,
            override_flag: true,
            target_mac: Some(GW_MAC),
        };
        let mut out = [0u8; 128];
        let n = build_na(&mut out, &addrs, &na)?;
        Some(out[..n].to_vec())
    }
}

/// A frame we built, addressed to the host.
fn to_host(mut f: Vec<u8>, host_mac: [u8; 6]) -> Vec<u8> {
    set_macs(&mut f, host_mac, GW_MAC);
    f
}

fn mac_of(ns: &Netns, iface: &str) -> [u8; 6] {
    let text = ns.exec_ok(&["cat", &format!("/sys/class/net/{iface}/address")]);
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *m = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    mac
}

/// `PREFIX` with the interface identifier of `mac`, as SLAAC makes it.
fn slaac(mac: [u8; 6]) -> Ipv6Addr {
    let mut a = PREFIX.octets();
    a[8..].copy_from_slice(&link_local_eui64(mac).octets()[8..]);
    Ipv6Addr::from(a)
}

/// Runs a Python snippet in `ns` in the background.
fn python(ns: &Netns, code: &str) -> Process {
    ns.spawn(&["python3", "-u", "-c", code])
}

/// The first line `p` printed, if any yet.
fn first_line(p: &mut Process) -> Option<String> {
    p.lines().first().cloned()
}

#[test]
fn linux_takes_our_ipv6_frames() {
    if !xdpgw_vm_tests::require_root_with(
        "ipv6_wire_linux",
        &["python3", "ethtool", "ping", "sysctl"],
    ) {
        return;
    }
    let host = Netns::new("v6host");
    let gw = Netns::new("v6gw");
    for (k, v) in [("accept_ra", "2"), ("accept_dad", "0"), ("autoconf", "1")] {
        host.exec_ok(&["sysctl", "-qw", &format!("net.ipv6.conf.default.{k}={v}")]);
    }
    gw.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    veth(&host, "h0", &gw, "g0");
    gw.exec_ok(&["ip", "link", "set", "g0", "address", "02:00:00:00:06:01"]);
    // Final checksums on the wire: build_tcp_rst6 checks the SYN's.
    host.exec_ok(&["ethtool", "-K", "h0", "tx", "off"]);
    let host_mac = mac_of(&host, "h0");
    let host_addr = slaac(host_mac);
    let mut r = Router::start(&gw, "g0", host_mac);

    // SLAAC from our router advertisement (to all nodes, unsolicited).
    let prefixes = [PrefixInfo {
        prefix: PREFIX,
        len: 64,
        on_link: true,
        autonomous: true,
        valid_lifetime: 86400,
        preferred_lifetime: 14400,
    }];
    let dns = [GW_ADDR];
    let ra = RouterAdvert {
        cur_hop_limit: 64,
        managed: false,
        other: false,
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_timer: 0,
        source_mac: Some(GW_MAC),
        mtu: Some(1400),
        prefixes: &prefixes,
        rdnss: &dns,
        rdnss_lifetime: 600,
    };
    let addrs = NdpAddrs {
        src_mac: GW_MAC,
        dst_mac: ndp::multicast_mac(ndp::ALL_NODES),
        src: r.ll,
        dst: ndp::ALL_NODES,
    };
    let mut out = [0u8; 1600];
    let n = build_ra(&mut out, &addrs, &ra).expect("an RA");
    r.send(&out[..n]);
    let want = host_addr.to_string();
    r.serve(
        "SLAAC address from our RA",
        |_, _| None,
        || {
            host.exec_ok(&["ip", "-6", "-o", "addr", "show", "dev", "h0"])
                .contains(&format!("{want}/64"))
        },
    );
    let route = host.exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(route.contains(&format!("via {} dev h0", r.ll)), "{route}");
    let mtu = host.exec_ok(&["cat", "/proc/sys/net/ipv6/conf/h0/mtu"]);
    assert_eq!(mtu.trim(), "1400");
    let ll = host.exec_ok(&[
        "ip", "-6", "-o", "addr", "show", "dev", "h0", "scope", "link",
    ]);
    assert!(
        ll.contains(&format!("{}/64", link_local_eui64(host_mac))),
        "{ll}"
    );

    // Our solicitation; Linux's advertisement.
    let ns = NeighbourSolicit {
        target: host_addr,
        source_mac: Some(GW_MAC),
        nonce: None,
    };
    let n = ndp::build_ns(&mut out, GW_MAC, GW_ADDR, &ns, None).expect("an NS");
    r.send(&out[..n]);
    let na = std::cell::Cell::new(None);
    r.serve(
        "the host's NA",
        |f, info| {
            if let Ok(Ndp::NeighbourAdvert(a)) = ndp::parse_ndp(f, info) {
                na.set(Some((a, info.dst)));
            }
            None
        },
        || na.get().is_some(),
    );
    let (advert, dst) = na.get().expect("an NA");
    assert_eq!(dst, GW_ADDR);
    assert_eq!(
        advert,
        NeighbourAdvert {
            target: host_addr,
            router: false,
            solicited: true,
            override_flag: true,
            target_mac: Some(host_mac),
        }
    );

    // Echo: the host pings our address and gets our reply.
    let mut ping = host.spawn(&["ping", "-c1", "-W5", &GW_ADDR.to_string()]);
    r.serve(
        "the echo reply reaching ping",
        |f, info| match info.l4info {
            L4v6::Icmp(i) if i.ty == ICMPV6_ECHO_REQUEST && info.dst == GW_ADDR => {
                let mut g = f.to_vec();
                echo_reply_in_place(&mut g, info, GW_ADDR);
                Some(to_host(g, host_mac))
            }
            _ => None,
        },
        || ping.lines().iter().any(|l| l.contains(" 1 received")),
    );

    // TCP to a closed port: our reset refuses the connection.
    let mut tcp = python(
        &host,
        &format!(
            "import socket\n\
             try:\n    socket.create_connection(('{GW_ADDR}', 80), timeout=5); print('connected')\n\
             except ConnectionRefusedError: print('refused')\n\
             except OSError as e: print('error', e)"
        ),
    );
    r.serve(
        "the TCP connection refused",
        |f, info| {
            let mut out = [0u8; 128];
            let n = build_tcp_rst6(&mut out, f, info)?;
            Some(to_host(out[..n].to_vec(), host_mac))
        },
        || first_line(&mut tcp).is_some(),
    );
    assert_eq!(first_line(&mut tcp).as_deref(), Some("refused"));

    // UDP to a closed port: our port unreachable reaches the socket.
    let mut udp = python(
        &host,
        &format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(5)\n\
             s.connect(('{GW_ADDR}', 9)); s.send(b'hello')\n\
             try:\n    s.recv(100); print('answered')\n\
             except ConnectionRefusedError: print('refused')\n\
             except OSError as e: print('error', e)"
        ),
    );
    r.serve(
        "the UDP port unreachable",
        |f, info| {
            if !matches!(info.l4info, L4v6::Udp { .. }) {
                return None;
            }
            let err = Icmpv6Error::unreachable(ICMPV6_PORT_UNREACH);
            let mut out = [0u8; 1600];
            let n = build_icmpv6_error(&mut out, f, info, err, GW_ADDR)?;
            Some(to_host(out[..n].to_vec(), host_mac))
        },
        || first_line(&mut udp).is_some(),
    );
    assert_eq!(first_line(&mut udp).as_deref(), Some("refused"));

    // A 1,300-byte datagram to a far address: our packet too big lowers
    // the host's path MTU to 1280.
    let mut big = python(
        &host,
        &format!(
            "import socket, time\n\
             IPV6_MTU = 24\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.connect(('{FAR}', 9)); s.send(b'x' * 1300)\n\
             mtu = lambda: s.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)\n\
             end = time.time() + 5\n\
             while time.time() < end and mtu() != 1280:\n    time.sleep(0.05)\n\
             print('mtu', mtu())"
        ),
    );
    r.serve(
        "the path MTU lowered",
        |f, info| {
            if info.dst != FAR {
                return None;
            }
            assert_eq!(f.len(), 14 + 40 + 8 + 1300);
            let mut out = [0u8; 1600];
            let n = build_icmpv6_error(
                &mut out,
                f,
                info,
                Icmpv6Error::packet_too_big(1280),
                GW_ADDR,
            )?;
            Some(to_host(out[..n].to_vec(), host_mac))
        },
        || first_line(&mut big).is_some(),
    );
    assert_eq!(first_line(&mut big).as_deref(), Some("mtu 1280"));
}

const A_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2);
const R_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const B_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2);

/// An Ethernet/IPv6 frame from A to B through R: extension headers `ext`
/// after next header `nh`, then UDP from port 40000 + `tag` to 9 with the
/// payload `t` and `tag` (so the last byte names the case).
fn case(macs: ([u8; 6], [u8; 6]), src: Ipv6Addr, nh: u8, ext: &[u8], tag: u8) -> Vec<u8> {
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&(40000 + u16::from(tag)).to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&10u16.to_be_bytes());
    udp.extend_from_slice(&[b't', tag]);
    let c = xdpgw_dataplane::wire::checksum::l4_v6(src, B_ADDR, 17, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&((ext.len() + udp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[nh, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&B_ADDR.octets());
    f.extend_from_slice(ext);
    f.extend_from_slice(&udp);
    f
}

/// Malformed and unusual IPv6 frames through a Linux router: it forwards
/// exactly those `parse_ipv6` takes, but for the cases where we refuse on
/// purpose what Linux forwards without looking (RFC 8200's hop-by-hop
/// placement, a header past the payload, more than 16 headers); where
/// Linux answers with a parameter problem, `hop_by_hop_problem` and
/// `build_icmpv6_error` make the same error, byte for byte but for the
/// flow label.
#[test]
fn linux_forwards_what_parse_ipv6_takes() {
    if !xdpgw_vm_tests::require_root_with("ipv6_wire_linux", &["python3", "sysctl"]) {
        return;
    }
    let a = Netns::new("v6a");
    let r = Netns::new("v6r");
    let b = Netns::new("v6b");
    for ns in [&a, &r, &b] {
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.icmp.ratelimit=0"]);
    }
    r.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    veth(&a, "a0", &r, "r0");
    veth(&r, "r1", &b, "b0");
    a.exec_ok(&["ip", "addr", "add", "2001:db8:a::2/64", "dev", "a0"]);
    r.exec_ok(&["ip", "addr", "add", "2001:db8:a::1/64", "dev", "r0"]);
    r.exec_ok(&["ip", "addr", "add", "2001:db8:b::1/64", "dev", "r1"]);
    b.exec_ok(&["ip", "addr", "add", "2001:db8:b::2/64", "dev", "b0"]);
    let (a_mac, r0_mac, b_mac) = (mac_of(&a, "a0"), mac_of(&r, "r0"), mac_of(&b, "b0"));
    let neigh = |addr: &str, mac: [u8; 6], dev: &str| {
        let mac: Vec<String> = mac.iter().map(|m| format!("{m:02x}")).collect();
        r.exec_ok(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac.join(":"),
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    };
    neigh("2001:db8:a::2", a_mac, "r0");
    neigh("2001:db8:b::2", b_mac, "r1");
    let mut from_a = PacketSocket::start(&a, "a0");
    let at_b = PacketSocket::start(&b, "b0");
    let macs = (r0_mac, a_mac);

    let hbh = |opts: &[u8], tag| {
        case(
            macs,
            A_ADDR,
            0,
            &[&[17, (opts.len() as u8 + 2) / 8 - 1], opts].concat(),
            tag,
        )
    };
    let mut cases: Vec<(u8, &str, Vec<u8>)> = vec![
        (1, "plain UDP", case(macs, A_ADDR, 17, &[], 1)),
        (
            3,
            "loopback source",
            case(macs, Ipv6Addr::LOCALHOST, 17, &[], 3),
        ),
        (
            4,
            "multicast source",
            case(macs, ndp::ALL_NODES, 17, &[], 4),
        ),
        (7, "PadN not zero", hbh(&[1, 4, 0, 0, 1, 0], 7)),
        (8, "padding over 7 bytes", hbh(&[0; 14], 8)),
        (9, "unknown option, skip", hbh(&[0x1e, 4, 0, 0, 0, 0], 9)),
        (
            10,
            "unknown option, discard",
            hbh(&[0x5e, 4, 0, 0, 0, 0], 10),
        ),
        (
            11,
            "unknown option, discard and answer",
            hbh(&[0x9e, 4, 0, 0, 0, 0], 11),
        ),
        (
            12,
            "unknown option, answer unless multicast",
            hbh(&[0xde, 4, 0, 0, 0, 0], 12),
        ),
        (13, "router alert", hbh(&[5, 2, 0, 0, 1, 0], 13)),
        (14, "router alert of length 3", hbh(&[5, 3, 0, 0, 0, 0], 14)),
        (
            15,
            "nine options",
            hbh(&[[0x1e, 0].repeat(9), vec![1, 2, 0, 0]].concat(), 15),
        ),
        (16, "CALIPSO", hbh(&[7, 4, 0, 0, 0, 0], 16)),
        (17, "IOAM, aligned", hbh(&[1, 0, 0x31, 2, 0, 0], 17)),
        (18, "IOAM, not aligned", hbh(&[0x31, 2, 0, 0, 1, 0], 18)),
        (19, "jumbo payload option", hbh(&[0xc2, 4, 0, 1, 0, 0], 19)),
        (
            20,
            "hop-by-hop after destination options",
            case(
                macs,
                A_ADDR,
                60,
                &[0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0],
                20,
            ),
        ),
        (
            21,
            "destination options, unknown discard option",
            case(macs, A_ADDR, 60, &[17, 0, 0x5e, 4, 0, 0, 0, 0], 21),
        ),
        (
            22,
            "routing header type 0",
            case(
                macs,
                A_ADDR,
                43,
                &[
                    17, 2, 0, 1, 0, 0, 0, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
                ],
                22,
            ),
        ),
        (
            23,
            "routing header past the payload",
            case(macs, A_ADDR, 43, &[17, 3, 0, 0, 0, 0, 0, 0], 23),
        ),
        (
            24,
            "17 destination options headers",
            case(
                macs,
                A_ADDR,
                60,
                &[
                    [60, 0, 1, 4, 0, 0, 0, 0].repeat(16),
                    vec![17, 0, 1, 4, 0, 0, 0, 0],
                ]
                .concat(),
                24,
            ),
        ),
        (
            25,
            "non-first fragment",
            case(macs, A_ADDR, 44, &[17, 0, 0, 8, 0, 0, 0, 1], 25),
        ),
        (26, "no next header", case(macs, A_ADDR, 59, &[], 26)),
    ];
    let mut bad_version = case(macs, A_ADDR, 17, &[], 2);
    bad_version[14] = 0x40;
    cases.push((2, "version 4", bad_version));
    let mut long = case(macs, A_ADDR, 17, &[], 5);
    long[19] += 8;
    cases.push((5, "payload length past the frame", long));
    let mut padded = case(macs, A_ADDR, 17, &[], 6);
    padded[19] -= 1; // the tag becomes padding: B sees 't' last
    padded.extend_from_slice(&[6; 8]);
    cases.push((6, "Ethernet padding", padded));
    // Where we refuse on purpose what Linux forwards.
    let divergent = [20, 23, 24];

    for (_, _, f) in &cases {
        from_a.send(f);
    }
    from_a.send(&case(macs, A_ADDR, 17, &[], 99));
    let mut forwarded = Vec::new();
    while !forwarded.contains(&99) {
        let f = at_b.recv(WAIT).expect("the last frame through Linux");
        let Some(&last) = f.last() else { continue };
        if f.get(12..14) == Some(&[0x86, 0xdd]) && f.get(22..38) != Some(&B_ADDR.octets()) {
            forwarded.push(if last == b't' { 6 } else { last });
        }
    }
    let mut errors = Vec::new();
    while let Some(f) = from_a.recv(Duration::from_millis(300)) {
        if let Ok(info) = parse_ipv6(&f) {
            if let L4v6::Icmp(i) = info.l4info {
                if i.ty == 4 {
                    errors.push(f);
                }
            }
        }
    }
    for (tag, what, f) in &cases {
        let linux = forwarded.contains(tag);
        let ours = parse_ipv6(f);
        if divergent.contains(tag) {
            assert!(linux && ours.is_err(), "{what}: Linux {linux}, we {ours:?}");
        } else {
            assert_eq!(
                linux,
                ours.is_ok(),
                "{what}: Linux forwards: {linux}, we: {ours:?}"
            );
        }
        // Linux's parameter problem, if any, is ours.
        let theirs = errors
            .iter()
            .find(|e| e.len() > 70 && e.last() == Some(tag));
        let mine = ndp_free_problem(f, (a_mac, r0_mac));
        match (theirs, mine) {
            (None, None) => {}
            (Some(t), Some(mut m)) => {
                m[15..18].copy_from_slice(&t[15..18]);
                assert_eq!(&m, t, "{what}");
            }
            (t, m) => panic!("{what}: Linux's error {t:02x?}, ours {m:02x?}"),
        }
    }
}

/// The parameter problem we would answer `f` with (from R), addressed as
/// Linux addresses its own.
fn ndp_free_problem(f: &[u8], macs: ([u8; 6], [u8; 6])) -> Option<Vec<u8>> {
    let (p, info) = xdpgw_dataplane::wire::ipv6::hop_by_hop_problem(f)?;
    let mut out = [0u8; 1600];
    let err = Icmpv6Error::parameter_problem(p.code, p.pointer);
    let n = build_icmpv6_error(&mut out, f, &info, err, R_ADDR)?;
    let mut e = out[..n].to_vec();
    set_macs(&mut e, macs.0, macs.1);
    Some(e)
}
