//! The bodies of the fuzz targets, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`, nightly, coverage-guided) and the stable harness
//! that `cargo test` runs (`vm-tests/tests/fuzz.rs`, seeds mutated for a
//! fixed number of cases): one body per target, so that the two check the
//! same properties of the same entry points.
//!
//! Each body takes one input and panics if a property fails.

/// The packet pipeline: any frame on any interface.
pub mod pipeline {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, OnceLock};

    use xdpgw_dataplane::conntrack::ConntrackConfig;
    use xdpgw_dataplane::gateway::{link_local_eui64, Gateway, GatewayConfig, IfaceConfig};
    use xdpgw_dataplane::link::Link;
    use xdpgw_dataplane::log::LogEntry;
    use xdpgw_dataplane::pipeline::FRAME_SIZE;
    use xdpgw_dataplane::port::{MemHost, MemQueue};
    use xdpgw_dataplane::route::{Prefix, StaticRoute};
    use xdpgw_dataplane::rule::{Ipv4Net, Log};
    use xdpgw_dataplane::worker::{Driver, Worker};

    /// The gateway's MACs: lan0, wan0.
    pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
    /// The neighbours the gateway has already resolved: the client on the
    /// LAN and the upstream router.
    pub const CLIENT: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(192, 168, 10, 2), [2, 0, 0, 0, 10, 2]);
    pub const UPSTREAM: (Ipv4Addr, [u8; 6]) =
        (Ipv4Addr::new(203, 0, 113, 254), [2, 0, 0, 0, 11, 254]);
    /// The same neighbours' IPv6 addresses (the lab's plan).
    pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
    pub const UPSTREAM6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x254);

    /// A new gateway as the fuzz target runs it: conf/gateway.rules on
    /// lan0 (192.168.10.1/24, fd00:10::1/64) and wan0 (203.0.113.1/24,
    /// 2001:db8:113::1/64) with conf/gateway.rules6 for IPv6, a default route
    /// via 2001:db8:113::254 for IPv6, a default route
    /// via 203.0.113.254, a 4,096-entry conntrack table, the client and
    /// the upstream router already resolved. The seed corpus
    /// (`fuzz/seeds/pipeline/`, `vm-tests/tests/fuzz_seeds.rs`) is made of
    /// frames for this gateway.
    pub fn gateway() -> Arc<Gateway> {
        let rules = xdpgw_control::load_rules_str(
            "gateway.rules",
            include_str!("../../conf/gateway.rules"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rules6 = xdpgw_control::load_rules6_str(
            "gateway.rules6",
            include_str!("../../conf/gateway.rules6"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let iface = |port: u8, name: &str, mac: [u8; 6], addr: Ipv4Addr| IfaceConfig {
            name: name.into(),
            mac,
            addr,
            prefix: 24,
            mtu: 1500,
            link: Link::port(port),
            addr6: vec![(
                Ipv6Addr::from(
                    u128::from(if port == 0 { CLIENT6 } else { UPSTREAM6 }) >> 64 << 64 | 1,
                ),
                64,
            )],
            link_local: link_local_eui64(mac),
            ra: None,
        };
        let cfg = GatewayConfig {
            ifaces: vec![
                iface(0, "lan0", LAN_MAC, Ipv4Addr::new(192, 168, 10, 1)),
                iface(1, "wan0", WAN_MAC, Ipv4Addr::new(203, 0, 113, 1)),
            ],
            routes: vec![(
                Ipv4Net::with_prefix(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0"),
                UPSTREAM.0,
            )],
            routes6: vec![StaticRoute {
                to: Prefix::new(Ipv6Addr::UNSPECIFIED, 0).expect("::/0"),
                via: UPSTREAM6,
                dev: None,
            }],
            policy: Default::default(),
            conntrack: ConntrackConfig {
                max_entries: 4096,
                shards: 16,
                ..ConntrackConfig::default()
            },
            icmp: Default::default(),
            frag: Default::default(),
        };
        let gw = Arc::new(Gateway::new(cfg, &rules).unwrap_or_else(|e| panic!("{e}")));
        gw.neigh.learn(0, CLIENT.0, CLIENT.1);
        gw.neigh.learn(1, UPSTREAM.0, UPSTREAM.1);
        gw.install6(&rules6).unwrap_or_else(|e| panic!("{e}"));
        gw.neigh6.learn(0, CLIENT6, CLIENT.1);
        gw.neigh6.learn(1, UPSTREAM6, UPSTREAM.1);
        gw
    }

    /// One gateway for the whole process (the cargo-fuzz target: state
    /// carries over from input to input, as on a running gateway).
    pub fn shared_gateway() -> Arc<Gateway> {
        static GW: OnceLock<Arc<Gateway>> = OnceLock::new();
        Arc::clone(GW.get_or_init(gateway))
    }

    /// One input through `gw`, by the worker driver over in-memory queues:
    /// a byte that selects the interface (`byte % 3`: 0 lan0, 1 wan0, 2
    /// none) and the time (`byte << 20` ns), then the frame (cut to a UMEM
    /// frame); a round then, and another much later. Nothing panics, every
    /// frame is accounted for (counted received once, whatever happens to
    /// it), and every frame sent out (forwarded, answered, emitted) or
    /// delivered to the host fits a UMEM frame.
    pub fn run(gw: &Arc<Gateway>, data: &[u8]) {
        let Some((&first, frame)) = data.split_first() else {
            return;
        };
        let frame = &frame[..frame.len().min(FRAME_SIZE)];
        let mut driver = Driver::new(
            Worker::new(Arc::clone(gw), 1),
            vec![MemQueue::new(2)],
            Some(MemHost::new(2)),
        );
        driver.queues_mut()[0].arrive(usize::from(first % 3), frame);
        let mut logs: Vec<(Option<Log>, LogEntry)> = Vec::new();
        driver.round(u64::from(first) << 20, &mut logs);
        driver.round(1 << 40, &mut logs);
        assert_eq!(driver.worker().stats().rx, 1);
        for (_, f) in &driver.queues()[0].sent {
            assert!(f.len() <= FRAME_SIZE, "sent {} bytes", f.len());
        }
        for (_, p) in driver.host().map_or(&[][..], |h| &h.delivered[..]) {
            assert!(p.len() <= FRAME_SIZE, "delivered {} bytes", p.len());
        }
    }
}

/// The rule language: any text as a rule file.
pub mod rules {
    use xdpgw_control::{load_rules_str, save, RuleError};

    /// What errors call the file.
    pub const FILE: &str = "fuzz";

    /// One input, as text (invalid UTF-8 replaced): the parser never
    /// panics; what it refuses comes with at least one error, each naming
    /// a place in the text (a line of it, a column from 1 to one past the
    /// line's last character); what it accepts prints in iptables-save
    /// form and parses back to the same rule set.
    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        match load_rules_str(FILE, &text) {
            Ok(set) => {
                let printed = save::render_with(&set, true);
                match load_rules_str("printed", &printed) {
                    Ok(back) => assert_eq!(back, set, "{printed}"),
                    Err(e) => panic!("printed form does not parse: {e}\n{printed}"),
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "refused without an error");
                for e in errors.iter() {
                    if let Err(why) = check_place(&text, e) {
                        panic!("{e}: {why}\n{text:?}");
                    }
                }
            }
        }
        // The same text as an ip6tables rule file (an ip6tables-save file,
        // or the `ip6tables` lines of a script).
        match xdpgw_control::load_rules6_str(FILE, &text) {
            Ok(set) => {
                let family = xdpgw_dataplane::rule::Family::Ipv6;
                let printed = save::render_family(&set, family, true);
                match xdpgw_control::load_rules6_str("printed", &printed) {
                    Ok(back) => assert_eq!(back, set, "{printed}"),
                    Err(e) => panic!("printed IPv6 form does not parse: {e}\n{printed}"),
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "refused without an error");
                for e in errors.iter() {
                    if let Err(why) = check_place(&text, e) {
                        panic!("{e}: {why}\n{text:?}");
                    }
                }
            }
        }
    }

    /// Whether an error's place is in `text` (lines as `str::lines`
    /// counts them, columns in characters, as the parser counts them), or
    /// at its end: the start of the line after the last, where an error
    /// about how the file ends (`COMMIT expected`) stands, as
    /// iptables-restore reports it.
    pub fn check_place(text: &str, e: &RuleError) -> Result<(), String> {
        if e.file != FILE {
            return Err(format!("file '{}', not '{FILE}'", e.file));
        }
        let lines: Vec<&str> = text.lines().collect();
        let line = e.line as usize;
        if line == lines.len() + 1 && e.column == 1 {
            return Ok(());
        }
        if line == 0 || line > lines.len().max(1) {
            return Err(format!("line {line} of {}", lines.len()));
        }
        let chars = lines.get(line - 1).map_or(0, |l| l.chars().count());
        let column = e.column as usize;
        if column == 0 || column > chars + 1 {
            return Err(format!("column {column} of a {chars}-character line"));
        }
        Ok(())
    }
}

/// The IPv6 wire functions (`xdpgw_dataplane::wire::ipv6`), which the
/// pipeline does not call yet: any bytes as an Ethernet frame.
pub mod wire6 {
    use std::net::Ipv6Addr;

    use xdpgw_dataplane::wire::checksum::transport_ok6;
    use xdpgw_dataplane::wire::ipv6::{
        self, ndp, Icmpv6Error, Ipv6Info, L4v6, ICMPV6_ERROR_MAX_LEN, IPV6_HDR,
    };
    use xdpgw_dataplane::wire::ETH_HDR;

    const NAT_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const NAT_DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    /// The IPv6 payload of a parsed frame.
    fn payload_end(info: &Ipv6Info) -> usize {
        info.l3 + IPV6_HDR + usize::from(info.payload_len)
    }

    /// Whether the transport checksum of a whole TCP/UDP/ICMPv6 datagram
    /// is right, the addresses read from the frame.
    fn transport_ok(frame: &[u8], info: &Ipv6Info) -> Option<bool> {
        if info.fragment || matches!(info.l4info, L4v6::Other) {
            return None;
        }
        let addr = |at: usize| -> Option<Ipv6Addr> {
            let b: [u8; 16] = frame.get(at..at + 16)?.try_into().ok()?;
            Some(Ipv6Addr::from(b))
        };
        let (src, dst) = (addr(info.l3 + 8)?, addr(info.l3 + 24)?);
        let seg = frame.get(info.l4..payload_end(info))?;
        Some(transport_ok6(src, dst, info.proto, seg))
    }

    /// Parses `data`; nothing panics, and what the parse reports lies
    /// within the frame. Then every rewrite on a copy keeps a right
    /// transport checksum right; every ICMPv6 error and TCP reset built
    /// about it parses, has a right checksum and fits 1,280 bytes; an ND
    /// message is validated, its options read.
    pub fn run(data: &[u8]) {
        if let Some((problem, info)) = ipv6::hop_by_hop_problem(data) {
            let err = Icmpv6Error::parameter_problem(problem.code, problem.pointer);
            let mut out = [0u8; ETH_HDR + ICMPV6_ERROR_MAX_LEN];
            let _ = ipv6::build_icmpv6_error(&mut out, data, &info, err, NAT_SRC);
        }
        let Ok(info) = ipv6::parse_ipv6(data) else {
            return;
        };
        let end = payload_end(&info);
        assert!(end <= data.len(), "payload beyond the frame");
        assert!(info.l4 <= end, "transport header beyond the payload");
        if let L4v6::Icmp(icmp) = info.l4info {
            if let Some(inner) = icmp.inner {
                assert!(inner.l4_len >= 8 && inner.l4 + inner.l4_len <= end);
            }
            if icmp.is_ndp {
                if let Ok(ndp::Ndp::RouterAdvert(ra)) = ndp::parse_ndp(data, &info) {
                    let _ = ra.options.prefixes().count() + ra.options.rdnss().count();
                }
            }
        }

        let right = transport_ok(data, &info) == Some(true);
        let mut g = data.to_vec();
        ipv6::set_src(&mut g, &info, NAT_SRC, 1024);
        ipv6::set_dst(&mut g, &info, NAT_DST, 2048);
        ipv6::set_inner_src(&mut g, &info, NAT_DST, 2048);
        ipv6::set_inner_dst(&mut g, &info, NAT_SRC, 1024);
        ipv6::dec_hop_limit(&mut g, &info);
        ipv6::set_dscp(&mut g, &info, 46);
        ipv6::echo_reply_in_place(&mut g, &info, NAT_SRC);
        assert_eq!(g.len(), data.len());
        if right {
            assert_eq!(
                transport_ok(&g, &info),
                Some(true),
                "a rewrite broke a checksum"
            );
        }

        let mut out = [0u8; ETH_HDR + ICMPV6_ERROR_MAX_LEN];
        for err in [
            Icmpv6Error::unreachable(4),
            Icmpv6Error::packet_too_big(1280),
            Icmpv6Error::hop_limit_exceeded(),
            Icmpv6Error::parameter_problem(0, 6),
        ] {
            if let Some(n) = ipv6::build_icmpv6_error(&mut out, data, &info, err, NAT_SRC) {
                assert!(n <= ETH_HDR + ICMPV6_ERROR_MAX_LEN);
                let got = ipv6::parse_ipv6(&out[..n]).expect("an ICMPv6 error we built parses");
                assert_eq!(transport_ok(&out[..n], &got), Some(true));
            }
        }
        if let Some(n) = ipv6::build_tcp_rst6(&mut out, data, &info) {
            let got = ipv6::parse_ipv6(&out[..n]).expect("a reset we built parses");
            assert_eq!(transport_ok(&out[..n], &got), Some(true));
        }
    }
}

/// Datagrams of conntrackd's sync protocol (`fuzz/fuzz_targets/sync_wire.rs`).
pub mod sync_wire {
    use xdpgw_control::sync::session::{Mode, Received, Session, SessionConfig};
    use xdpgw_control::sync::wire::{build_ct, messages, parse_ct, Body, HDR_LEN};

    /// Reads `data` as a datagram: the messages lie within it, a parsed
    /// entry built again parses to itself; both kinds of session take it
    /// without panicking, and what they answer parses.
    pub fn run(data: &[u8]) {
        let mut total = 0usize;
        for m in messages(data).flatten() {
            total += usize::from(m.hdr.len);
            if let Body::Ct(kind, attrs) = m.body {
                if let Ok(ct) = parse_ct(attrs) {
                    let mut out = Vec::new();
                    build_ct(&mut out, kind, 0, m.hdr.seq, &ct);
                    assert_eq!(parse_ct(&out[HDR_LEN..]), Ok(ct), "built again");
                }
            }
        }
        assert!(total <= data.len(), "messages beyond the datagram");
        for mode in [Mode::Ftfw, Mode::Notrack] {
            let mut s = Session::new(SessionConfig::new(mode, 1500), 1, 0);
            let mut got: Vec<Received> = Vec::new();
            s.receive(data, &mut got);
            s.receive(data, &mut got);
            s.tick(5_000_000_000);
            for d in s.flush(5_000_000_000) {
                assert!(
                    messages(&d).all(|m| m.is_ok()),
                    "an answer that does not parse"
                );
            }
        }
    }
}
