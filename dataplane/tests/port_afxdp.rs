//! AF_XDP ports against the real kernel: three network namespaces
//! `A — M — B` joined by veth pairs, a Port (or PortGroup) on each of M's
//! veths running a bare MAC-rewriting forwarder, and real UDP traffic between
//! A's and B's kernel stacks proving frames cross it both ways.
//!
//! ```text
//!  ns A               ns M                       ns B
//!  va 10.201.N.1 ── ma  [Port] fwd [Port]  mb ── vb 10.201.N.2
//! ```
//!
//! A and B have static neighbour entries (B's address at `ma`'s MAC, A's at
//! `mb`'s), so no ARP is needed; TX checksum offload is off on `va` and `vb`
//! so UDP leaves them with full checksums. Needs root: without it the tests
//! print `skipping: ...`, or panic under `CI=true`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xdpgw_dataplane::port::testing::{
    attach_foreign_program, attached_programs, leave_program_attached, Leftover,
};
use xdpgw_dataplane::port::{
    enter_netns, wait_any, ForwardVerdict, FrameAccounting, Port, PortConfig, PortError, PortGroup,
    PortMode, QueueStats, RxVerdict, XdpAttach, XdpMode, ZeroCopy,
};
use xdpgw_lab::{host_netns, veth_with_queues, Netns};

// ---------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------

/// True if the test can run; otherwise skips (or panics under CI=true).
fn require_root(test: &str) -> bool {
    // Namespaces, BPF and AF_XDP need root; vm-tests/setup.sh installs the
    // programs.
    xdpgw_lab::require_root(test, &["ip", "ethtool"])
}

// ---------------------------------------------------------------------------
// Topology guard
// ---------------------------------------------------------------------------

fn in_ns(ns: &Netns, args: &[&str]) -> String {
    ns.exec_ok(args)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Three namespaces and two veth pairs, all deleted on drop (also when the
/// test panics): the lab crate's namespace guards, the veths created in
/// their namespaces.
struct Topology {
    n: u32,
    ns_a: Netns,
    ns_m: Netns,
    ns_b: Netns,
    va: String,
    ma: String,
    mb: String,
    vb: String,
}

fn mac(n: u32, host: u8) -> [u8; 6] {
    [0x02, 0x58, 0x50, 0x00, n as u8, host]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Topology {
    const MAC_VA: u8 = 1;
    const MAC_MA: u8 = 2;
    const MAC_MB: u8 = 3;
    const MAC_VB: u8 = 4;

    fn new() -> Topology {
        Topology::with_queues(1)
    }

    /// The topology with `queues` rx/tx queues on every veth.
    fn with_queues(queues: u32) -> Topology {
        // Relaxed: a unique counter, no other memory is published with it.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250;
        let base = format!("xp{}{n}", std::process::id() % 10000);
        let t = Topology {
            n,
            ns_a: host_netns("xp-a"),
            ns_m: host_netns("xp-m"),
            ns_b: host_netns("xp-b"),
            va: format!("{base}va"),
            ma: format!("{base}ma"),
            mb: format!("{base}mb"),
            vb: format!("{base}vb"),
        };
        veth_with_queues(&t.ns_a, &t.va, &t.ns_m, &t.ma, queues);
        veth_with_queues(&t.ns_b, &t.vb, &t.ns_m, &t.mb, queues);
        let (a, m, b) = (&t.ns_a, &t.ns_m, &t.ns_b);
        for (ns, dev, host) in [
            (a, &t.va, Self::MAC_VA),
            (m, &t.ma, Self::MAC_MA),
            (m, &t.mb, Self::MAC_MB),
            (b, &t.vb, Self::MAC_VB),
        ] {
            in_ns(
                ns,
                &["ip", "link", "set", dev, "address", &mac_str(mac(n, host))],
            );
        }
        // Full checksums from the end hosts: through AF_XDP a frame leaves
        // the skb world, so a partial (offloaded) checksum would stay partial.
        in_ns(a, &["ethtool", "-K", &t.va, "tx", "off"]);
        in_ns(b, &["ethtool", "-K", &t.vb, "tx", "off"]);
        let addr_a = format!("{}/24", t.ip_a());
        let addr_b = format!("{}/24", t.ip_b());
        in_ns(a, &["ip", "addr", "add", &addr_a, "dev", &t.va]);
        in_ns(b, &["ip", "addr", "add", &addr_b, "dev", &t.vb]);
        // No ARP: A reaches B (and the reflector address) at ma's MAC, B
        // reaches A at mb's MAC.
        let ma_mac = mac_str(mac(n, Self::MAC_MA));
        let mb_mac = mac_str(mac(n, Self::MAC_MB));
        for (ns, ip, lladdr, dev) in [
            (a, t.ip_b(), &ma_mac, &t.va),
            (a, t.ip_reflect(), &ma_mac, &t.va),
            (b, t.ip_a(), &mb_mac, &t.vb),
        ] {
            in_ns(
                ns,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &ip.to_string(),
                    "lladdr",
                    lladdr,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
        }
        t
    }

    fn ip_a(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 1)
    }

    fn ip_b(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 2)
    }

    /// An address the forwarder answers itself, by reflecting the frame.
    fn ip_reflect(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 9)
    }

    fn mac(&self, host: u8) -> [u8; 6] {
        mac(self.n, host)
    }

    /// Whether `ip -d link show dev` in M shows an XDP program on `dev`.
    fn has_xdp(&self, dev: &str) -> bool {
        in_ns(&self.ns_m, &["ip", "-d", "link", "show", "dev", dev]).contains("prog/xdp")
    }

    /// Whether `dev` has no XDP program, allowing the kernel up to 5 s to
    /// release a closed link (the release of a link whose last reference
    /// goes away can run from a workqueue: there is nothing to wait on).
    fn xdp_gone(&self, dev: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.has_xdp(dev) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

const ETH_IPV4: [u8; 2] = [0x08, 0x00];

fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}

/// If `frame` is IPv4/UDP to `to`, turns it into the answer (swapping MACs,
/// addresses and ports keeps both checksums valid) and returns true.
fn reflect_udp(frame: &mut [u8], len: usize, to: Ipv4Addr) -> bool {
    if len < 42 || frame[12..14] != ETH_IPV4 || frame[23] != 17 || frame[30..34] != to.octets() {
        return false;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if ihl < 20 || len < 14 + ihl + 8 {
        return false;
    }
    let mut tmp = [0u8; 6];
    tmp.copy_from_slice(&frame[0..6]);
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&tmp);
    let mut ip = [0u8; 4];
    ip.copy_from_slice(&frame[26..30]);
    frame.copy_within(30..34, 26);
    frame[30..34].copy_from_slice(&ip);
    let udp = 14 + ihl;
    let mut port = [0u8; 2];
    port.copy_from_slice(&frame[udp..udp + 2]);
    frame.copy_within(udp + 2..udp + 4, udp);
    frame[udp + 2..udp + 4].copy_from_slice(&port);
    true
}

// ---------------------------------------------------------------------------
// Forwarders
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    /// Two Ports; forwarding copies into the other port's queue.
    Copy,
    /// One PortGroup; forwarding moves the descriptor.
    Group,
}

struct Report {
    modes: (PortMode, PortMode),
    accounting: Vec<FrameAccounting>,
    stats: Vec<QueueStats>,
    forwarded: u64,
    reflected: u64,
}

struct Forwarder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Report>>,
}

fn port_config(ifname: &str, xdp: XdpMode, zc: ZeroCopy) -> PortConfig {
    PortConfig {
        ifname: ifname.to_owned(),
        queues: None,
        xdp_mode: xdp,
        zero_copy: zc,
        frame_size: 2048,
        frames: 4096,
        multi_buffer: false,
    }
}

impl Forwarder {
    /// Starts a forwarder between `ma` and `mb` on a thread in M; returns
    /// once the ports are open (or panics with the open error).
    fn start(t: &Topology, design: Design, xdp: XdpMode, zc: ZeroCopy) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = t.ns_m.path();
        let (ma, mb) = (t.ma.clone(), t.mb.clone());
        let (mac_va, mac_ma, mac_mb, mac_vb) = (
            t.mac(Topology::MAC_VA),
            t.mac(Topology::MAC_MA),
            t.mac(Topology::MAC_MB),
            t.mac(Topology::MAC_VB),
        );
        let reflect = t.ip_reflect();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            if let Err(e) = enter_netns(&path) {
                let _ = ready_tx.send(Err(format!("setns: {e}")));
                panic!("setns {}: {e}", path.display());
            }
            let cfg_a = port_config(&ma, xdp, zc);
            let cfg_b = port_config(&mb, xdp, zc);
            match design {
                Design::Copy => {
                    let opened = Port::open(&cfg_a).and_then(|a| Ok((a, Port::open(&cfg_b)?)));
                    let (mut pa, mut pb) = match opened {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            panic!("open: {e}");
                        }
                    };
                    assert_eq!(pa.mac(), mac_ma);
                    assert_eq!(pb.mac(), mac_mb);
                    let modes = (pa.mode(), pb.mode());
                    let (Some(mut qa), Some(mut qb)) = (pa.queues().pop(), pb.queues().pop())
                    else {
                        panic!("no queues")
                    };
                    let _ = ready_tx.send(Ok(modes));
                    let (mut forwarded, mut reflected) = (0u64, 0u64);
                    let mut idle = false;
                    // Acquire: pairs with the Release store in `finish`.
                    while !flag.load(Ordering::Acquire) {
                        if idle {
                            wait_any(&[&qa, &qb], Duration::from_millis(5));
                        }
                        let mut got = qa.rx_batch(64, |frame, len| {
                            if reflect_udp(frame, len, reflect) {
                                reflected += 1;
                                return RxVerdict::Tx(len);
                            }
                            set_macs(frame, mac_vb, mac_mb);
                            if qb.tx_copy(&frame[..len]) {
                                forwarded += 1;
                            }
                            RxVerdict::Drop
                        });
                        got += qb.rx_batch(64, |frame, len| {
                            set_macs(frame, mac_va, mac_ma);
                            if qa.tx_copy(&frame[..len]) {
                                forwarded += 1;
                            }
                            RxVerdict::Drop
                        });
                        qa.flush();
                        qb.flush();
                        idle = got == 0;
                    }
                    let report = Report {
                        modes,
                        accounting: vec![qa.frame_accounting(), qb.frame_accounting()],
                        stats: vec![qa.stats(), qb.stats()],
                        forwarded,
                        reflected,
                    };
                    drop((qa, qb, pa, pb));
                    report
                }
                Design::Group => {
                    let mut group = match PortGroup::open(&[cfg_a, cfg_b]) {
                        Ok(g) => g,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            panic!("open: {e}");
                        }
                    };
                    let (Some(ma_mode), Some(mb_mode)) = (group.mode(0), group.mode(1)) else {
                        panic!("group of two has no modes")
                    };
                    let modes = (ma_mode, mb_mode);
                    let Some(mut q) = group.queues().into_iter().next() else {
                        panic!("no queues")
                    };
                    let _ = ready_tx.send(Ok(modes));
                    let (mut forwarded, mut reflected) = (0u64, 0u64);
                    let mut idle = false;
                    // Acquire: pairs with the Release store in `finish`.
                    while !flag.load(Ordering::Acquire) {
                        if idle {
                            q.wait(Duration::from_millis(5));
                        }
                        let got = q.rx_batch(64, |port, frame, len| {
                            if port == 0 && reflect_udp(frame, len, reflect) {
                                reflected += 1;
                                return ForwardVerdict::Tx { port: 0, len };
                            }
                            forwarded += 1;
                            if port == 0 {
                                set_macs(frame, mac_vb, mac_mb);
                                ForwardVerdict::Tx { port: 1, len }
                            } else {
                                set_macs(frame, mac_va, mac_ma);
                                ForwardVerdict::Tx { port: 0, len }
                            }
                        });
                        q.flush();
                        idle = got == 0;
                    }
                    let stats = (0..q.ports()).filter_map(|p| q.stats(p)).collect();
                    let report = Report {
                        modes,
                        accounting: vec![q.frame_accounting()],
                        stats,
                        forwarded,
                        reflected,
                    };
                    drop((q, group));
                    report
                }
            }
        });
        match ready_rx.recv() {
            Ok(Ok(_modes)) => Forwarder {
                stop,
                handle: Some(handle),
            },
            Ok(Err(e)) => {
                let _ = handle.join();
                panic!("forwarder did not start: {e}");
            }
            Err(_) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => panic!("forwarder exited before it was ready"),
            },
        }
    }

    /// Stops the forwarder and drops its ports (on its own thread, in M).
    fn finish(mut self) -> Report {
        // Release: everything before the stop is visible to the forwarder.
        self.stop.store(true, Ordering::Release);
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Release: as in `finish` (reached when a test panics).
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

/// Runs a UDP echo server in B and sends `count` datagrams from A to B (and
/// `count` to the reflector address); returns (echoed by B, reflected).
/// Each datagram is retried until answered or the deadline passes.
fn udp_round_trips(t: &Topology, count: usize) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (bound_tx, bound_rx) = mpsc::channel();
    let path_b = t.ns_b.path();
    let ip_b = t.ip_b();
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        enter_netns(&path_b).unwrap_or_else(|e| panic!("setns B: {e}"));
        let sock = UdpSocket::bind(SocketAddrV4::new(ip_b, 7777)).expect("bind in B");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        bound_tx.send(()).expect("signal bound");
        let mut buf = [0u8; 2048];
        // Acquire: pairs with the Release store below.
        while !flag.load(Ordering::Acquire) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    bound_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the echo server in B is bound");
    let (ip_b, ip_r) = (t.ip_b(), t.ip_reflect());
    let result = t.ns_a.run_in(move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind in A");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answered = [0usize; 2];
        for (slot, dst) in [SocketAddrV4::new(ip_b, 7777), SocketAddrV4::new(ip_r, 9999)]
            .into_iter()
            .enumerate()
        {
            for i in 0..count {
                let msg = format!("xdpgw port test {i} to {dst}");
                let mut buf = [0u8; 2048];
                'retry: while Instant::now() < deadline {
                    sock.send_to(msg.as_bytes(), dst).expect("send from A");
                    while let Ok((n, from)) = sock.recv_from(&mut buf) {
                        if from == std::net::SocketAddr::V4(dst) && &buf[..n] == msg.as_bytes() {
                            answered[slot] += 1;
                            break 'retry;
                        }
                    }
                }
            }
        }
        (answered[0], answered[1])
    });
    // Release: pairs with the server's Acquire load.
    stop.store(true, Ordering::Release);
    let _ = server.join();
    result
}

fn assert_books(report: &Report) {
    for books in &report.accounting {
        assert!(books.is_balanced(), "frame accounting: {books:?}");
        assert_eq!(books.held, 0, "{books:?}");
        assert!(books.kernel > 0, "fill rings are stocked: {books:?}");
        assert_eq!(books.lost, 0, "{books:?}");
    }
}

fn forward_round_trip(design: Design, xdp: XdpMode, zc: ZeroCopy) -> Report {
    let t = Topology::new();
    let fwd = Forwarder::start(&t, design, xdp, zc);
    assert!(t.has_xdp(&t.ma) && t.has_xdp(&t.mb), "programs attached");
    let (echoed, reflected) = udp_round_trips(&t, 5);
    let report = fwd.finish();
    eprintln!(
        "{design:?} {xdp:?} {zc:?}: {} / {}; forwarded {}, reflected {}; stats {:?}",
        report.modes.0, report.modes.1, report.forwarded, report.reflected, report.stats
    );
    assert_eq!(echoed, 5, "UDP A→B→A through the forwarder");
    assert_eq!(reflected, 5, "UDP A→reflector→A (RxVerdict::Tx)");
    assert!(report.forwarded >= 10, "{}", report.forwarded);
    assert!(report.reflected >= 5, "{}", report.reflected);
    assert_books(&report);
    assert!(
        t.xdp_gone(&t.ma) && t.xdp_gone(&t.mb),
        "dropping the ports detached the programs"
    );
    report
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn opening_a_missing_interface_says_so() {
    // RTM_GETLINK needs no privilege: this runs everywhere.
    match Port::open(&PortConfig::new("xpnosuch0")) {
        Err(PortError::NoSuchInterface { name }) => assert_eq!(name, "xpnosuch0"),
        Err(e) => panic!("expected NoSuchInterface, got {e:?}"),
        Ok(_) => panic!("opened an interface that does not exist"),
    }
    let e = Port::open(&PortConfig {
        frame_size: 3000,
        ..PortConfig::new("lo")
    })
    .err();
    assert!(matches!(e, Some(PortError::InvalidConfig { .. })), "{e:?}");
}

#[test]
fn copy_forwarder_auto_modes() {
    if !require_root("copy_forwarder_auto_modes") {
        return;
    }
    let report = forward_round_trip(Design::Copy, XdpMode::Auto, ZeroCopy::Auto);
    // veth: native XDP since Linux 4.19, no zero-copy.
    assert_eq!(report.modes.0.xdp, XdpAttach::Native, "{}", report.modes.0);
    assert!(!report.modes.0.zero_copy, "{}", report.modes.0);
    assert_eq!(report.modes.0.to_string(), "native xdp, copy, 1 queue");
}

#[test]
fn copy_forwarder_generic_mode() {
    if !require_root("copy_forwarder_generic_mode") {
        return;
    }
    let report = forward_round_trip(Design::Copy, XdpMode::Generic, ZeroCopy::Off);
    assert_eq!(report.modes.0.to_string(), "generic xdp, copy, 1 queue");
}

#[test]
fn group_forwarder_moves_descriptors() {
    if !require_root("group_forwarder_moves_descriptors") {
        return;
    }
    let report = forward_round_trip(Design::Group, XdpMode::Auto, ZeroCopy::Auto);
    assert_eq!(report.accounting.len(), 1, "one shared UMEM");
    assert_eq!(report.accounting[0].total, 2 * 4096);
}

#[test]
fn zero_copy_on_veth_is_refused_and_leaves_nothing() {
    if !require_root("zero_copy_on_veth_is_refused_and_leaves_nothing") {
        return;
    }
    let t = Topology::new();
    let ma = t.ma.clone();
    let result = t.ns_m.run_in(move || {
        Port::open(&port_config(&ma, XdpMode::Native, ZeroCopy::On)).map(|p| p.mode())
    });
    match result {
        Err(PortError::Bind {
            errno, zero_copy, ..
        }) => {
            assert!(zero_copy);
            assert_eq!(errno, libc::EOPNOTSUPP);
        }
        other => panic!("expected a zero-copy bind error, got {other:?}"),
    }
    assert!(t.xdp_gone(&t.ma), "a failed open detaches its program");
}

#[test]
fn every_queue_of_a_multiqueue_veth_gets_a_socket() {
    if !require_root("every_queue_of_a_multiqueue_veth_gets_a_socket") {
        return;
    }
    let t = Topology::with_queues(2);
    let (ma, mb) = (t.ma.clone(), t.mb.clone());
    t.ns_m.run_in(move || {
        let mut port = Port::open(&PortConfig::new(ma.as_str())).expect("open 2-queue veth");
        assert_eq!(port.mode().queues, 2, "{}", port.mode());
        let queues = port.queues();
        assert_eq!(
            queues.iter().map(|q| q.queue_id()).collect::<Vec<_>>(),
            [0, 1]
        );
        for q in &queues {
            let books = q.frame_accounting();
            assert!(books.is_balanced(), "{books:?}");
            assert_eq!(books.total, 4096, "one UMEM per socket");
            assert_eq!(books.kernel, 2048, "half the frames on the fill ring");
        }
        assert!(port.queues().is_empty(), "queues are handed out once");
        drop((queues, port));

        let one = PortConfig {
            queues: Some(1),
            ..PortConfig::new(ma.as_str())
        };
        let port = Port::open(&one).expect("open queue 0 only");
        assert_eq!(port.mode().queues, 1);
        drop(port);

        let mut group =
            PortGroup::open(&[PortConfig::new(ma.as_str()), PortConfig::new(mb.as_str())])
                .expect("open a group");
        let queues = group.queues();
        assert_eq!(queues.len(), 2, "one shared UMEM per queue index");
        for q in &queues {
            assert_eq!(q.ports(), 2);
            let books = q.frame_accounting();
            assert!(books.is_balanced(), "{books:?}");
            assert_eq!(books.total, 2 * 4096);
        }
    });
    assert!(t.xdp_gone(&t.ma) && t.xdp_gone(&t.mb));
}

fn leftover_is_replaced(how: Leftover, mode: XdpAttach) {
    let t = Topology::new();
    let ma = t.ma.clone();
    let (left, during, after) = t.ns_m.run_in(move || {
        let left = leave_program_attached(&ma, mode, how).expect("leave a program attached");
        let before = attached_programs(&ma).expect("query");
        assert!(
            before.0 == left || before.1 == left,
            "leftover {left} attached: {before:?}"
        );
        let port = Port::open(&PortConfig::new(ma.as_str()))
            .unwrap_or_else(|e| panic!("open over a leftover ({how:?}): {e}"));
        let during = attached_programs(&ma).expect("query");
        drop(port);
        // A BPF link is released by a work item after its last descriptor
        // closes (`bpf_link_put`): wait for it, as `xdp_gone` does.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut after = attached_programs(&ma).expect("query");
        while after != (0, 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            after = attached_programs(&ma).expect("query");
        }
        (left, during, after)
    });
    assert_ne!(during.0, left, "native slot still runs the leftover");
    assert_ne!(during.1, left, "generic slot still runs the leftover");
    assert!(
        during.0 != 0 || during.1 != 0,
        "ours is attached: {during:?}"
    );
    assert_eq!(after, (0, 0), "nothing left after drop");
    assert!(t.xdp_gone(&t.ma));
}

#[test]
fn leftover_netlink_program_is_replaced() {
    if !require_root("leftover_netlink_program_is_replaced") {
        return;
    }
    // Generic mode leftover, and Auto opens native: the kernel refuses
    // (EEXIST) until the generic one is gone.
    leftover_is_replaced(Leftover::Netlink, XdpAttach::Generic);
    leftover_is_replaced(Leftover::Netlink, XdpAttach::Native);
}

#[test]
fn leftover_link_is_replaced() {
    if !require_root("leftover_link_is_replaced") {
        return;
    }
    leftover_is_replaced(Leftover::Link, XdpAttach::Native);
    leftover_is_replaced(Leftover::Link, XdpAttach::Generic);
}

#[test]
fn foreign_program_is_left_alone() {
    if !require_root("foreign_program_is_left_alone") {
        return;
    }
    let t = Topology::new();
    let ma = t.ma.clone();
    let (foreign, result, after) = t.ns_m.run_in(move || {
        let foreign = attach_foreign_program(&ma, XdpAttach::Generic, "other_fw")
            .expect("attach a foreign program");
        let result = Port::open(&PortConfig::new(ma.as_str())).map(|p| p.mode());
        (foreign, result, attached_programs(&ma).expect("query"))
    });
    match result {
        Err(PortError::XdpBusy {
            prog_id, prog_name, ..
        }) => {
            assert_eq!(prog_id, foreign);
            assert_eq!(prog_name, "other_fw");
        }
        other => panic!("expected XdpBusy, got {other:?}"),
    }
    assert_eq!(after, (0, foreign), "the foreign program is still attached");
}

#[test]
fn a_live_port_keeps_its_interface() {
    if !require_root("a_live_port_keeps_its_interface") {
        return;
    }
    let t = Topology::new();
    let ma = t.ma.clone();
    let (second, first_prog, still) = t.ns_m.run_in(move || {
        let first = Port::open(&PortConfig::new(ma.as_str())).expect("first open");
        let first_prog = attached_programs(&ma).expect("query");
        let started = Instant::now();
        // The queue stays bound by `first`: the bind retries run out.
        let second = Port::open(&PortConfig::new(ma.as_str())).map(|p| p.mode());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500),
            "retried for {waited:?}"
        );
        let still = attached_programs(&ma).expect("query");
        drop(first);
        (second, first_prog, still)
    });
    match second {
        Err(PortError::Bind { errno, .. }) => assert_eq!(errno, libc::EBUSY),
        other => panic!("expected EBUSY from the second open, got {other:?}"),
    }
    assert_eq!(
        first_prog, still,
        "the first port's program was not replaced"
    );
    assert!(t.xdp_gone(&t.ma));
}

/// Run as a child process by `a_killed_run_is_replaced`: opens the port
/// named by XP_HOLD_IF in namespace XP_HOLD_NS, says so, and waits to be
/// killed.
#[test]
fn helper_hold_port() {
    let (Ok(ifname), Ok(ns)) = (std::env::var("XP_HOLD_IF"), std::env::var("XP_HOLD_NS")) else {
        return;
    };
    enter_netns(&Path::new("/var/run/netns").join(ns)).expect("setns");
    let port = Port::open(&PortConfig::new(ifname.as_str())).expect("open in helper");
    println!("XP_READY {}", port.mode());
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_run_is_replaced() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !require_root("a_killed_run_is_replaced") {
        return;
    }
    let t = Topology::new();
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", "helper_hold_port", "--nocapture"])
        .env("XP_HOLD_IF", &t.ma)
        .env("XP_HOLD_NS", t.ns_m.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the helper");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let mut child = Reap(child);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("XP_READY"));
    assert!(ready, "the helper opened the port");
    assert!(t.has_xdp(&t.ma), "the helper's program is attached");
    // SIGKILL: no destructor runs in the helper; the kernel cleans up.
    child.0.kill().expect("kill the helper");
    let _ = child.0.wait();
    let ma = t.ma.clone();
    let mode = t.ns_m.run_in(move || {
        // Right away: the killed helper's socket may still be bound for a
        // moment; the bind retries cover it.
        Port::open(&PortConfig::new(ma.as_str()))
            .map(|p| p.mode())
            .unwrap_or_else(|e| panic!("open after a killed run: {e}"))
    });
    assert_eq!(mode.queues, 1);
    assert!(t.xdp_gone(&t.ma));
}

// ---------------------------------------------------------------------------
// 802.1Q tags
// ---------------------------------------------------------------------------

/// A frame tagged with VLAN 10 sent through a packet socket on `va`, as
/// `xdpgw-lab vlan-bridge` sends it (the tag in the frame): what an AF_XDP
/// socket on its peer `ma` receives in mode `xdp`, and the mode it got.
fn tagged_frame_at_af_xdp(test: &str, xdp: XdpMode) -> (XdpAttach, Vec<u8>) {
    const SRC: [u8; 6] = [0x02, 0x58, 0x50, 0x10, 0x00, 0x01];
    let a = host_netns(&format!("{test}-a"));
    let m = host_netns(&format!("{test}-m"));
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250;
    let base = format!("xt{}{n}", std::process::id() % 10000);
    let (va, ma) = (format!("{base}va"), format!("{base}ma"));
    veth_with_queues(&a, &va, &m, &ma, 1);
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&SRC);
    frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
    frame.extend_from_slice(&[0x45; 46]);

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = m.path();
    let receiver_stop = Arc::clone(&stop);
    let receiver = std::thread::spawn(move || {
        enter_netns(&path).expect("enter M");
        let mut port = Port::open(&port_config(&ma, xdp, ZeroCopy::Off)).expect("open ma");
        let mode = port.mode().xdp;
        let mut q = port.queues().remove(0);
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            q.rx_batch(64, |f, len| {
                if seen.is_none() && f.get(6..12) == Some(&SRC[..]) {
                    seen = f.get(..len).map(<[u8]>::to_vec);
                }
                RxVerdict::Drop
            });
            q.flush();
            q.wait(Duration::from_millis(10));
        }
        receiver_stop.store(true, Ordering::Relaxed);
        (mode, seen)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the port opened");
    a.run_in(move || {
        let s = xdpgw_dataplane::port::raw::PacketSocket::bind(&va).expect("packet socket");
        // Again every 20 ms until the receiver has it (or gives up).
        while !stop.load(Ordering::Relaxed) {
            s.send(&frame).expect("send");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (mode, seen) = receiver.join().expect("receiver");
    (
        mode,
        seen.expect("the tagged frame reached the AF_XDP socket"),
    )
}

#[test]
fn a_tag_in_the_frame_reaches_af_xdp_in_the_frame_native_and_generic() {
    let test = "a_tag_in_the_frame_reaches_af_xdp_in_the_frame_native_and_generic";
    if !require_root(test) {
        return;
    }
    for (xdp, want) in [
        (XdpMode::Native, XdpAttach::Native),
        (XdpMode::Generic, XdpAttach::Generic),
    ] {
        let (mode, frame) = tagged_frame_at_af_xdp("vtag", xdp);
        assert_eq!(mode, want);
        assert_eq!(frame.len(), 64, "{frame:02x?}");
        assert_eq!(
            frame[12..18],
            [0x81, 0x00, 0x00, 0x0a, 0x08, 0x00],
            "{xdp:?}: {frame:02x?}"
        );
    }
}
