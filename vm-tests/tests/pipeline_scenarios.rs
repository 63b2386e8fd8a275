//! Whole conversations through the in-memory pipeline of a gateway built
//! from conf/gateway.rules: every rewritten byte, conntrack state and rule
//! counter checked. (The same scenarios run through real interfaces, and
//! against Linux, in the namespace tests.)

use std::net::Ipv4Addr;

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::TcpState;
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::log::{LogEntry, LogSink};
use xdpgw_dataplane::pipeline::Emit;
use xdpgw_dataplane::rule::Log;
use xdpgw_dataplane::rule::{Hook, Table};
use xdpgw_dataplane::worker::{Worker, CREDIT_ROUND};
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::memlab::{self, *};
use xdpgw_vm_tests::{restore_text, workspace_dir, MASQUERADE_WAN0};

const LAN: u8 = 0;
const WAN: u8 = 1;

const SEC: u64 = 1_000_000_000;

#[derive(Default)]
struct Sink(Vec<(u8, Vec<u8>)>);

impl Emit for Sink {
    fn emit(&mut self, iface: u8, frame: &[u8]) {
        self.0.push((iface, frame.to_vec()));
    }
}

struct Lab {
    worker: Worker,
    now: u64,
    sink: Sink,
}

/// What happened to one frame: the action, and the frame as it left (for
/// Forward) decoded.
struct Out {
    action: Action,
    frame: Vec<u8>,
}

impl Out {
    fn seen(&self) -> Seen {
        match self.action {
            Action::Forward { .. } => decode(&self.frame),
            a => panic!("expected a forwarded frame, got {a:?}"),
        }
    }
    fn iface(&self) -> u8 {
        match self.action {
            Action::Forward { iface, .. } => iface,
            a => panic!("expected a forwarded frame, got {a:?}"),
        }
    }
}

impl Lab {
    fn new() -> Lab {
        Lab::with_rules(&memlab::conf_rules())
    }

    fn with_rules(text: &str) -> Lab {
        let gw = memlab::gateway(text);
        let mut lab = Lab {
            worker: Worker::new(gw, 7),
            now: 1000 * SEC,
            sink: Sink::default(),
        };
        // Hosts introduce themselves the usual way: an ARP request for the gateway.
        lab.arp_hello(LAN, CLIENT_MAC, CLIENT, GW_LAN);
        lab.arp_hello(LAN, CLIENT2_MAC, CLIENT2, GW_LAN);
        lab.arp_hello(WAN, SERVER_MAC, SERVER, GW_WAN);
        lab.arp_hello(WAN, UPSTREAM_MAC, UPSTREAM, GW_WAN);
        lab
    }

    fn arp_hello(&mut self, iface: u8, mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) {
        let out = self.send(iface, arp_request(1, mac, ip, target));
        let Action::Forward { iface: back, .. } = out.action else {
            panic!("ARP request not answered: {:?}", out.action)
        };
        assert_eq!(back, iface);
        // The reply: to the asker, from the gateway's MAC, op 2, sender = target.
        let r = &out.frame;
        assert_eq!(&r[0..6], &mac);
        assert_eq!(&r[12..14], &[0x08, 0x06]);
        assert_eq!(&r[20..22], &[0, 2]);
        assert_eq!(&r[28..32], &target.octets());
        assert_eq!(&r[38..42], &ip.octets());
    }

    fn send(&mut self, iface: u8, frame: Vec<u8>) -> Out {
        let mut outs = self.send_batch(iface, vec![frame], false);
        outs.remove(0)
    }

    /// Frames in one batch (a millisecond apart), first shown to the
    /// prefetch pass if `prefetch`, as a port's rx loop does.
    fn send_batch(&mut self, iface: u8, frames: Vec<Vec<u8>>, prefetch: bool) -> Vec<Out> {
        let mut b = self.worker.batch(&mut self.sink);
        if prefetch {
            for f in &frames {
                b.prefetch(iface, f);
            }
        }
        frames
            .into_iter()
            .map(|mut frame| {
                self.now += 1_000_000;
                let len = frame.len();
                frame.resize(2048, 0);
                let action = b.process(self.now, iface, &mut frame, len);
                if let Action::Forward { len, .. } = action {
                    frame.truncate(len);
                }
                Out { action, frame }
            })
            .collect()
    }

    /// The LOG entries so far, with their rule's prefix.
    fn logs(&mut self) -> Vec<(String, LogEntry)> {
        struct Collect(Vec<(String, LogEntry)>);
        impl LogSink for Collect {
            fn log(&mut self, target: Option<&Log>, e: &LogEntry) {
                self.0
                    .push((target.map_or(String::new(), |l| l.prefix.clone()), *e));
            }
        }
        let mut c = Collect(Vec::new());
        self.worker.drain_logs(&mut c);
        c.0
    }

    /// A packet the gateway host sends (an IPv4 packet after the 14 bytes
    /// of `frame`, whose Ethernet header is ignored).
    fn host_sends(&mut self, frame: &[u8]) -> Out {
        self.host_sends_on(LAN, frame)
    }

    /// [`Lab::host_sends`] through interface `dev`'s host path device.
    fn host_sends_on(&mut self, dev: u8, frame: &[u8]) -> Out {
        self.now += 1_000_000;
        let len = frame.len() - 14;
        let mut buf = frame.to_vec();
        buf.resize(2048, 0);
        let action = self
            .worker
            .batch(&mut self.sink)
            .from_host(self.now, dev, &mut buf, len);
        if let Action::Forward { len, .. } = action {
            buf.truncate(len);
        }
        Out { action, frame: buf }
    }

    fn emitted(&mut self) -> Vec<(u8, Vec<u8>)> {
        std::mem::take(&mut self.sink.0)
    }

    fn counter(&self, table: Table, hook: Hook, rule: usize) -> u64 {
        let (rules, st) = self.worker.rules();
        let t = rules.table(table).expect("table");
        let c = t.hook_chain(hook).expect("chain");
        st.counter(c.rules[rule].counter).0
    }

    fn conn(&self, sport: u16) -> xdpgw_dataplane::conntrack::Snapshot {
        let all = self.worker.gateway().conntrack.snapshot();
        *all.iter()
            .find(|s| s.orig.sport == sport)
            .unwrap_or_else(|| panic!("no connection from port {sport}: {all:?}"))
    }
}

/// A broadcast ARP request of hardware type `htype` from `mac`/`ip` for
/// `target`.
fn arp_request(htype: u8, mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, htype, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    FrameSpec {
        dst_mac,
        src_mac,
        src,
        dst,
        ttl: 64,
        tos: 0,
        id: 1,
        df: true,
        l4: L4Spec::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 64240,
            syn_options: flags & TCP_SYN != 0,
            payload: payload.to_vec(),
        },
    }
    .build()
}

fn from_client(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp(
        LAN_MAC, CLIENT_MAC, CLIENT, SERVER, sport, dport, seq, ack, flags, payload,
    )
}

fn from_server(dport: u16, sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp(
        WAN_MAC, SERVER_MAC, SERVER, GW_WAN, sport, dport, seq, ack, flags, payload,
    )
}

#[test]
fn tcp_conversation_through_masquerade() {
    let mut lab = Lab::new();
    let (c0, s0) = (1_000u32, 5_000u32);

    // SYN: leaves wan0 from the gateway's address, port kept, TTL 63, MACs set.
    let out = lab.send(LAN, from_client(40000, 80, c0, 0, TCP_SYN, &[]));
    assert_eq!(out.iface(), WAN);
    let s = out.seen();
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (GW_WAN, 40000, SERVER, 80)
    );
    assert_eq!((s.ttl, s.tcp_flags, s.seq), (63, TCP_SYN, c0));
    assert_eq!((s.dst_mac, s.src_mac), (SERVER_MAC, WAN_MAC));
    let e = lab.conn(40000);
    assert_eq!(e.tcp_state, TcpState::SynSent);
    assert_eq!(e.reply.dst, GW_WAN);
    assert_eq!(e.reply.dport, 40000);
    assert_eq!(
        lab.counter(Table::Nat, Hook::Postrouting, 0),
        1,
        "MASQUERADE once"
    );
    assert_eq!(
        lab.counter(Table::Filter, Hook::Forward, 3),
        1,
        "lan->wan accept"
    );

    // SYN-ACK back to the client.
    let out = lab.send(
        WAN,
        from_server(40000, 80, s0, c0 + 1, TCP_SYN | TCP_ACK, &[]),
    );
    assert_eq!(out.iface(), LAN);
    let s = out.seen();
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (SERVER, 80, CLIENT, 40000)
    );
    assert_eq!((s.dst_mac, s.src_mac, s.ttl), (CLIENT_MAC, LAN_MAC, 63));
    assert_eq!(lab.conn(40000).tcp_state, TcpState::SynRecv);

    // ACK, data both ways.
    let out = lab.send(LAN, from_client(40000, 80, c0 + 1, s0 + 1, TCP_ACK, &[]));
    assert_eq!(out.seen().src, GW_WAN);
    assert_eq!(lab.conn(40000).tcp_state, TcpState::Established);
    let req = b"GET / HTTP/1.0\r\n\r\n";
    let out = lab.send(
        LAN,
        from_client(40000, 80, c0 + 1, s0 + 1, TCP_ACK | TCP_PSH, req),
    );
    assert_eq!(out.seen().payload, req);
    let body = vec![0x5a; 1000];
    let out = lab.send(
        WAN,
        from_server(
            40000,
            80,
            s0 + 1,
            c0 + 1 + req.len() as u32,
            TCP_ACK | TCP_PSH,
            &body,
        ),
    );
    let s = out.seen();
    assert_eq!((s.dst, s.dport, s.payload.len()), (CLIENT, 40000, 1000));
    let e = lab.conn(40000);
    assert_eq!(
        e.status & xdpgw_dataplane::conntrack::status::ASSURED,
        xdpgw_dataplane::conntrack::status::ASSURED
    );
    // ESTABLISHED traffic is accepted by the first FORWARD rule.
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 0), 4);

    // Close: FIN from the client, ACK+FIN from the server, last ACK.
    let cseq = c0 + 1 + req.len() as u32;
    let sseq = s0 + 1 + 1000;
    lab.send(
        LAN,
        from_client(40000, 80, cseq, sseq, TCP_FIN | TCP_ACK, &[]),
    )
    .seen();
    assert_eq!(lab.conn(40000).tcp_state, TcpState::FinWait);
    lab.send(
        WAN,
        from_server(40000, 80, sseq, cseq + 1, TCP_FIN | TCP_ACK, &[]),
    )
    .seen();
    assert_eq!(lab.conn(40000).tcp_state, TcpState::LastAck);
    lab.send(
        LAN,
        from_client(40000, 80, cseq + 1, sseq + 1, TCP_ACK, &[]),
    )
    .seen();
    assert_eq!(lab.conn(40000).tcp_state, TcpState::TimeWait);
    assert_eq!(lab.worker.stats().dropped(), 0);
}

#[test]
fn inbound_new_from_wan_is_logged_and_dropped() {
    let mut lab = Lab::new();
    let f = tcp(
        WAN_MAC,
        SERVER_MAC,
        SERVER,
        CLIENT,
        5555,
        22,
        1,
        0,
        TCP_SYN,
        &[],
    );
    let out = lab.send(WAN, f);
    assert_eq!(out.action, Action::Drop(DropReason::FilterDrop));
    // LOG_DROP's LOG rule saw it (limit allows the first ones).
    let logs = lab.logs();
    let (prefix, e) = logs.first().expect("a LOG entry");
    assert_eq!(prefix, "xdpgw drop: ");
    assert_eq!(e.in_iface, Some(WAN));
    assert!(
        lab.worker.gateway().conntrack.snapshot().is_empty(),
        "a dropped NEW packet leaves no entry"
    );
}

#[test]
fn reject_with_tcp_reset_answers_the_client() {
    let mut lab = Lab::new();
    let out = lab.send(LAN, from_client(40001, 25, 777, 0, TCP_SYN, &[]));
    assert_eq!(out.action, Action::Drop(DropReason::FilterReject));
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1, "one reset");
    let (iface, f) = &sent[0];
    assert_eq!(*iface, LAN);
    let s = decode(f);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (SERVER, 25, CLIENT, 40001)
    );
    assert_eq!(s.tcp_flags, TCP_RST | TCP_ACK);
    assert_eq!((s.seq, s.ack), (0, 778));
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, LAN_MAC));
}

/// REJECT's reset is attached to the refused SYN's connection as Linux
/// attaches it (nf_conntrack_attach): RELATED in OUTPUT and POSTROUTING;
/// nat OUTPUT does not run for it (destination NAT decided at PREROUTING),
/// nat POSTROUTING does (source NAT undecided). Counters measured on Linux
/// 6.18 with these rules: the RELATED rules 1 each, the others 0, nat
/// POSTROUTING's MASQUERADE 0 (the reset leaves on lan0).
#[test]
fn reject_reset_is_related_and_passes_nat_postrouting_as_in_linux() {
    let rules = restore_text(&[
        (
            "nat",
            "-A OUTPUT -p tcp
                -A POSTROUTING -p tcp -m conntrack --ctstate RELATED
                -A POSTROUTING -p tcp -m conntrack --ctstate ESTABLISHED
                -A POSTROUTING -p tcp -m conntrack --ctstate NEW
                -A POSTROUTING -o wan0 -j MASQUERADE",
        ),
        (
            "filter",
            "-A FORWARD -p tcp --dport 25 -j REJECT --reject-with tcp-reset
                -A OUTPUT -p tcp -m conntrack --ctstate RELATED
                -A OUTPUT -p tcp -m conntrack --ctstate ESTABLISHED
                -A OUTPUT -p tcp -m conntrack --ctstate NEW
                -A OUTPUT -p tcp -m conntrack --ctstate INVALID",
        ),
    ]);
    let mut lab = Lab::with_rules(&rules);
    let out = lab.send(LAN, from_client(40001, 25, 777, 0, TCP_SYN, &[]));
    assert_eq!(out.action, Action::Drop(DropReason::FilterReject));
    assert_eq!(lab.emitted().len(), 1, "one reset");
    let nat_output = [lab.counter(Table::Nat, Hook::Output, 0)];
    let nat_post: Vec<u64> = (0..4)
        .map(|r| lab.counter(Table::Nat, Hook::Postrouting, r))
        .collect();
    let filter_output: Vec<u64> = (0..4)
        .map(|r| lab.counter(Table::Filter, Hook::Output, r))
        .collect();
    assert_eq!(nat_output, [0], "nat OUTPUT");
    assert_eq!(nat_post, [1, 0, 0, 0], "nat POSTROUTING");
    assert_eq!(filter_output, [1, 0, 0, 0], "filter OUTPUT");
}

#[test]
fn ping_to_the_gateway_is_answered() {
    let mut lab = Lab::new();
    let f = FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: GW_LAN,
        ttl: 64,
        tos: 0,
        id: 9,
        df: false,
        l4: L4Spec::Icmp {
            ty: 8,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            payload: b"ping".to_vec(),
        },
    }
    .build();
    let out = lab.send(LAN, f);
    assert_eq!(out.iface(), LAN);
    let s = out.seen();
    assert_eq!(
        (s.src, s.dst, s.sport, s.dport),
        (GW_LAN, CLIENT, 0, 0),
        "echo reply"
    );
    assert_eq!(s.icmp_rest, [0x12, 0x34, 0, 1]);
    assert_eq!(s.payload, b"ping");
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, LAN_MAC));
}

/// TTL and TOS targets act where Linux's do (measured on Linux 6.18,
/// iptables 1.8.9): the forwarding decrement comes after PREROUTING and
/// before FORWARD, so `--ttl-set 200` in mangle PREROUTING arrives as 199 and
/// in mangle FORWARD as 200; a TTL-1 packet raised in PREROUTING is
/// forwarded; `-m ttl` in FORWARD sees the decremented TTL; `--set-tos 0x10`
/// (mask 0xff) clears the ECN bits too.
#[test]
fn ttl_and_tos_targets_act_where_linuxs_do() {
    let udp = |dport: u16, ttl: u8, tos: u8| {
        FrameSpec {
            dst_mac: LAN_MAC,
            src_mac: CLIENT_MAC,
            src: CLIENT,
            dst: FAR,
            ttl,
            tos,
            id: 3,
            df: false,
            l4: L4Spec::Udp {
                sport: 40000,
                dport,
                payload: vec![0; 12],
            },
        }
        .build()
    };
    let rules = restore_text(&[(
        "mangle",
        "-A PREROUTING -p udp --dport 1001 -j TTL --ttl-set 200
                -A FORWARD -p udp --dport 1002 -j TTL --ttl-set 200
                -A PREROUTING -p udp --dport 1003 -j TTL --ttl-inc 5
                -A FORWARD -m ttl --ttl-eq 63 -j TOS --set-tos 0x10
                -A POSTROUTING -p udp --dport 1005 -j TOS --xor-tos 0x01",
    )]);
    let mut lab = Lab::with_rules(&rules);
    let s = lab.send(LAN, udp(1001, 64, 0)).seen();
    assert_eq!(s.ttl, 199, "set in PREROUTING, then decremented");
    let s = lab.send(LAN, udp(1002, 64, 0)).seen();
    assert_eq!(s.ttl, 200, "set in FORWARD, after the decrement");
    let s = lab.send(LAN, udp(1003, 1, 0)).seen();
    assert_eq!(s.ttl, 5, "a TTL of 1 raised in PREROUTING is forwarded");
    // TTL 64 is 63 in FORWARD: the TOS byte becomes 0x10, ECN cleared.
    let s = lab.send(LAN, udp(1004, 64, 0x03)).seen();
    assert_eq!((s.ttl, s.tos), (63, 0x10));
    let s = lab.send(LAN, udp(1004, 10, 0x03)).seen();
    assert_eq!((s.ttl, s.tos), (9, 0x03), "TTL 9 in FORWARD: not matched");
    let s = lab.send(LAN, udp(1005, 10, 0xb8)).seen();
    assert_eq!(s.tos, 0xb9, "xor in POSTROUTING");
}

/// CONNMARK as Linux's xt_CONNMARK: a mark chosen for a connection's
/// first packet and saved is restored on its later packets, both ways; the
/// connection's mark is the entry's (`conntrack -L` shows it); a packet
/// without a connection (NOTRACK) has no connection mark: `-m connmark`
/// does not match it, even inverted, and CONNMARK leaves it alone.
#[test]
fn connmark_saves_and_restores_a_connections_mark() {
    let rules = restore_text(&[
        ("raw", "-A PREROUTING -p udp --dport 5353 -j NOTRACK"),
        (
            "mangle",
            "-A PREROUTING -j CONNMARK --restore-mark
                -A PREROUTING -i lan0 -m mark --mark 0 -j MARK --set-mark 0x7
                -A PREROUTING -j CONNMARK --save-mark --mask 0xff
                -A FORWARD -m connmark --mark 0x7
                -A FORWARD -m connmark ! --mark 0x7
                -A FORWARD -m mark --mark 0x7",
        ),
        MASQUERADE_WAN0,
    ]);
    let mut lab = Lab::with_rules(&rules);
    let fwd = |lab: &Lab| -> Vec<u64> {
        (0..3)
            .map(|r| lab.counter(Table::Mangle, Hook::Forward, r))
            .collect()
    };
    assert_eq!(lab.send(LAN, udp_from_client(41000, b"q")).iface(), WAN);
    assert_eq!(lab.conn(41000).mark, 7, "saved on the first packet");
    assert_eq!(fwd(&lab), [1, 0, 1]);
    // The reply comes from the WAN, where no MARK rule applies: the mark
    // is restored from the connection.
    assert_eq!(lab.send(WAN, udp_from_server(41000)).iface(), LAN);
    assert_eq!(fwd(&lab), [2, 0, 2]);
    // Untracked: neither connmark rule matches, the mark set in
    // PREROUTING stays the packet's own.
    let mut spec = decode_spec_udp(5353);
    spec.id = 9;
    assert_eq!(lab.send(LAN, spec.build()).iface(), WAN);
    assert_eq!(fwd(&lab), [2, 0, 3]);
}

fn decode_spec_udp(dport: u16) -> FrameSpec {
    FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: SERVER,
        ttl: 64,
        tos: 0,
        id: 7,
        df: true,
        l4: L4Spec::Udp {
            sport: 42000,
            dport,
            payload: vec![1; 8],
        },
    }
}

#[test]
fn ttl_one_gets_time_exceeded() {
    let mut lab = Lab::new();
    let mut spec = FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: FAR,
        ttl: 1,
        tos: 0,
        id: 3,
        df: false,
        l4: L4Spec::Udp {
            sport: 33434,
            dport: 33435,
            payload: vec![0; 12],
        },
    };
    let out = lab.send(LAN, spec.build());
    assert_eq!(out.action, Action::Drop(DropReason::TtlExceeded));
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1);
    let s = decode(&sent[0].1);
    assert_eq!((s.src, s.dst, s.sport, s.dport), (GW_LAN, CLIENT, 11, 0));
    let (qs, qd, qsp, qdp) = quoted(&s.payload);
    assert_eq!((qs, qd, qsp, qdp), (CLIENT, FAR, 33434, 33435));
    // With TTL 2 it goes out, via the default route's gateway.
    spec.ttl = 2;
    let out = lab.send(LAN, spec.build());
    let s = out.seen();
    assert_eq!((s.ttl, s.src, s.dst_mac), (1, GW_WAN, UPSTREAM_MAC));
}

#[test]
fn dscp_46_on_https_replies_and_notrack_on_ssh() {
    let mut lab = Lab::new();
    lab.send(LAN, from_client(40100, 443, 10, 0, TCP_SYN, &[]))
        .seen();
    let out = lab.send(WAN, from_server(40100, 443, 50, 11, TCP_SYN | TCP_ACK, &[]));
    let s = out.seen();
    assert_eq!(s.tos, 46 << 2, "DSCP 46, ECN kept");
    // NOTRACK on lan0 port 22: no entry and no NAT.
    let out = lab.send(LAN, from_client(40200, 22, 10, 0, TCP_SYN, &[]));
    let s = out.seen();
    assert_eq!(s.src, CLIENT, "untracked packets are not NATed");
    assert!(lab
        .worker
        .gateway()
        .conntrack
        .snapshot()
        .iter()
        .all(|e| e.orig.sport != 40200));
}

#[test]
fn two_clients_with_the_same_source_port() {
    let mut lab = Lab::new();
    let a = lab
        .send(LAN, from_client(41000, 80, 1, 0, TCP_SYN, &[]))
        .seen();
    let f = tcp(
        LAN_MAC,
        CLIENT2_MAC,
        CLIENT2,
        SERVER,
        41000,
        80,
        1,
        0,
        TCP_SYN,
        &[],
    );
    let b = lab.send(LAN, f).seen();
    assert_eq!((a.src, b.src), (GW_WAN, GW_WAN));
    assert_eq!(a.sport, 41000);
    assert_ne!(b.sport, 41000, "the second gets another port");
    assert!(b.sport >= 1024);
    // Replies reach the right client.
    let r = lab
        .send(WAN, from_server(b.sport, 80, 9, 2, TCP_SYN | TCP_ACK, &[]))
        .seen();
    assert_eq!((r.dst, r.dport, r.dst_mac), (CLIENT2, 41000, CLIENT2_MAC));
    let r = lab
        .send(WAN, from_server(41000, 80, 9, 2, TCP_SYN | TCP_ACK, &[]))
        .seen();
    assert_eq!((r.dst, r.dport, r.dst_mac), (CLIENT, 41000, CLIENT_MAC));
}

#[test]
fn redirect_of_mail_to_the_gateway() {
    let mut lab = Lab::new();
    let relay = Ipv4Addr::new(192, 168, 10, 10);
    let f = tcp(
        LAN_MAC,
        CLIENT_MAC,
        CLIENT,
        relay,
        42000,
        25,
        1,
        0,
        TCP_SYN,
        &[],
    );
    let mut frame = f.clone();
    frame.resize(2048, 0);
    let a = lab
        .worker
        .batch(&mut lab.sink)
        .process(lab.now + 1, LAN, &mut frame, f.len());
    assert_eq!(
        a,
        Action::Host {
            iface: LAN,
            len: f.len()
        },
        "delivered to the host's mail relay"
    );
    let s = decode(&frame[..f.len()]);
    assert_eq!(
        (s.dst, s.dport),
        (GW_LAN, 25),
        "REDIRECT rewrote the destination"
    );
    assert_eq!(lab.counter(Table::Nat, Hook::Prerouting, 0), 1);

    // The relay's SYN-ACK, as the host sends it (from the address REDIRECT
    // chose), leaves with the address the client asked for.
    let reply = tcp(
        [0; 6],
        [0; 6],
        GW_LAN,
        CLIENT,
        25,
        42000,
        500,
        2,
        TCP_SYN | TCP_ACK,
        &[],
    );
    let out = lab.host_sends(&reply);
    assert_eq!(out.iface(), LAN);
    let r = out.seen();
    assert_eq!(
        (r.src, r.sport, r.dst, r.dport, r.dst_mac, r.src_mac, r.ttl),
        (relay, 25, CLIENT, 42000, CLIENT_MAC, LAN_MAC, 64),
        "un-REDIRECTed, to the client's MAC, TTL untouched"
    );
    let c = lab.conn(42000);
    assert_eq!(c.tcp_state, TcpState::SynRecv, "{c:?}");
    assert_eq!(lab.worker.stats().from_host, 1);
}

#[test]
fn the_hosts_own_https_replies_get_dscp_46() {
    let mut lab = Lab::new();
    let syn = tcp(
        LAN_MAC,
        CLIENT_MAC,
        CLIENT,
        GW_LAN,
        44000,
        443,
        1,
        0,
        TCP_SYN,
        &[],
    );
    let a = lab.send(LAN, syn.clone()).action;
    assert_eq!(
        a,
        Action::Host {
            iface: LAN,
            len: syn.len()
        },
        "INPUT accepts 443 from lan0"
    );
    let reply = tcp(
        [0; 6],
        [0; 6],
        GW_LAN,
        CLIENT,
        443,
        44000,
        900,
        2,
        TCP_SYN | TCP_ACK,
        &[],
    );
    let r = lab.host_sends(&reply).seen();
    assert_eq!(
        (r.dst, r.dport, r.tos),
        (CLIENT, 44000, 46 << 2),
        "mangle OUTPUT DSCP 46"
    );
    assert_eq!(lab.counter(Table::Mangle, Hook::Output, 0), 1);
    // From wan0 the same service is refused (INPUT ends in LOG_DROP).
    let syn = tcp(
        WAN_MAC,
        SERVER_MAC,
        SERVER,
        GW_WAN,
        44001,
        443,
        1,
        0,
        TCP_SYN,
        &[],
    );
    assert_eq!(
        lab.send(WAN, syn).action,
        Action::Drop(DropReason::FilterDrop)
    );
}

#[test]
fn connections_the_host_opens_are_tracked_and_answered() {
    let mut lab = Lab::new();
    let syn = tcp(
        [0; 6],
        [0; 6],
        GW_WAN,
        SERVER,
        45000,
        80,
        7,
        0,
        TCP_SYN,
        &[],
    );
    let out = lab.host_sends(&syn);
    assert_eq!(out.iface(), WAN);
    let r = out.seen();
    assert_eq!((r.src, r.sport, r.dst_mac), (GW_WAN, 45000, SERVER_MAC));
    let c = lab.conn(45000);
    assert_eq!(c.tcp_state, TcpState::SynSent, "{c:?}");
    // The server's answer is ESTABLISHED traffic for INPUT: to the host.
    let synack = from_server(45000, 80, 70, 8, TCP_SYN | TCP_ACK, &[]);
    let a = lab.send(WAN, synack.clone()).action;
    assert_eq!(
        a,
        Action::Host {
            iface: WAN,
            len: synack.len()
        }
    );
    assert_eq!(lab.conn(45000).tcp_state, TcpState::SynRecv);
}

#[test]
fn unresolved_next_hop_holds_the_packet_until_arp_answers() {
    let mut lab = Lab::new();
    let other = Ipv4Addr::new(203, 0, 113, 77);
    let f = tcp(
        LAN_MAC,
        CLIENT_MAC,
        CLIENT,
        other,
        43000,
        80,
        1,
        0,
        TCP_SYN,
        &[],
    );
    let out = lab.send(LAN, f);
    assert_eq!(out.action, Action::Consumed);
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1, "an ARP request");
    assert_eq!(sent[0].0, WAN);
    assert_eq!(&sent[0].1[12..14], &[0x08, 0x06]);
    assert_eq!(&sent[0].1[38..42], &other.octets());
    // The neighbour answers; housekeeping sends the held packet.
    let mac = [0x02, 0, 0, 0, 0x0b, 0x77];
    let mut reply = mac.to_vec();
    reply.splice(0..0, WAN_MAC);
    reply.truncate(12);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&other.octets());
    reply.extend_from_slice(&WAN_MAC);
    reply.extend_from_slice(&GW_WAN.octets());
    assert_eq!(lab.send(WAN, reply).action, Action::Consumed);
    lab.worker.housekeeping(lab.now, &mut lab.sink);
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1);
    let s = decode(&sent[0].1);
    assert_eq!((s.dst, s.src, s.dst_mac), (other, GW_WAN, mac));
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let mut lab = Lab::new();
    let good = from_client(44000, 80, 1, 0, TCP_SYN, &[]);
    for n in 0..good.len() {
        let out = lab.send(LAN, good[..n].to_vec());
        assert!(
            matches!(out.action, Action::Drop(_)),
            "{n} bytes: {:?}",
            out.action
        );
    }
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff; // IPv4 header checksum
    assert_eq!(
        lab.send(LAN, bad_sum).action,
        Action::Drop(DropReason::Ipv4BadChecksum)
    );
    assert!(lab.worker.stats().drop_count(DropReason::EthTruncated) > 0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn flow_frame(udp: bool, sport: u16, dport: u16, payload: Vec<u8>) -> Vec<u8> {
        let l4 = if udp {
            L4Spec::Udp {
                sport,
                dport,
                payload,
            }
        } else {
            L4Spec::Tcp {
                sport,
                dport,
                seq: 1,
                ack: 0,
                flags: TCP_SYN,
                window: 1000,
                syn_options: true,
                payload,
            }
        };
        FrameSpec {
            dst_mac: LAN_MAC,
            src_mac: CLIENT_MAC,
            src: CLIENT,
            dst: SERVER,
            ttl: 64,
            tos: 0,
            id: 5,
            df: true,
            l4,
        }
        .build()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// NAT out and back: the reply the server sends to what it saw
        /// reaches the client as the exact inverse of what the client sent,
        /// and every checksum verifies after each rewrite.
        #[test]
        fn nat_out_and_back_restores_the_tuple(
            udp in any::<bool>(),
            sport in 1u16..,
            dport in prop_oneof![1u16..22, 23u16..25, 26u16..443, 444u16..],
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut lab = Lab::new();
            let out = lab.send(LAN, flow_frame(udp, sport, dport, payload.clone()));
            let s = out.seen();
            prop_assert_eq!((s.src, s.dst, s.dport), (GW_WAN, SERVER, dport));
            // The server answers what it saw.
            let reply = FrameSpec {
                dst_mac: WAN_MAC,
                src_mac: SERVER_MAC,
                src: SERVER,
                dst: s.src,
                ttl: 64,
                tos: 0,
                id: 6,
                df: true,
                l4: if udp {
                    L4Spec::Udp { sport: dport, dport: s.sport, payload: payload.clone() }
                } else {
                    L4Spec::Tcp { sport: dport, dport: s.sport, seq: 100, ack: 2, flags: TCP_SYN | TCP_ACK, window: 1000, syn_options: true, payload: vec![] }
                },
            }
            .build();
            let back = lab.send(WAN, reply).seen();
            prop_assert_eq!((back.src, back.sport, back.dst, back.dport), (SERVER, dport, CLIENT, sport));
        }

        /// Damaged frames never panic the pipeline, and each is counted.
        #[test]
        fn damaged_frames_never_panic(
            udp in any::<bool>(),
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
            cut in 0usize..100,
            iface in 0u8..3,
        ) {
            let mut lab = Lab::new();
            let mut f = flow_frame(udp, 40000, 80, vec![1, 2, 3, 4]);
            for (at, x) in flips {
                if let Some(b) = f.get_mut(at) {
                    *b ^= x;
                }
            }
            f.truncate(cut.max(1));
            let before = lab.worker.stats().rx;
            let _ = lab.send(iface, f);
            prop_assert_eq!(lab.worker.stats().rx, before + 1);
        }

        /// Random bytes never panic the pipeline.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), iface in 0u8..2) {
            let mut lab = Lab::new();
            let _ = lab.send(iface, bytes);
        }
    }
}

#[test]
fn bad_transport_checksum_is_invalid_and_dropped_with_its_reason() {
    use xdpgw_dataplane::conntrack::InvalidReason;
    let mut lab = Lab::new();
    let mut f = from_client(45000, 80, 1, 0, TCP_SYN, &[]);
    f[14 + 20 + 16] ^= 0x55; // TCP checksum
    assert_eq!(
        lab.send(LAN, f).action,
        Action::Drop(DropReason::FilterDrop)
    );
    let stats = lab.worker.gateway().conntrack.stats();
    assert_eq!(stats.invalid_count(InvalidReason::BadChecksum), 1);
    // FORWARD's "-m conntrack --ctstate INVALID -j DROP" did it.
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 1), 1);
}

/// Puts IPv4 options into `frame` (fixing IHL, total length, checksum).
fn with_ip_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut f = frame[..34].to_vec();
    f.extend_from_slice(options);
    f.extend_from_slice(&frame[34..]);
    f[14] = 0x40 | ((20 + options.len()) / 4) as u8;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = xdpgw_vm_tests::frames::checksum(&f[14..34 + options.len()]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn bad_ip_options_get_a_parameter_problem_and_source_routes_are_refused() {
    let mut lab = Lab::new();
    let plain = udp_from_client(46000, b"opt");
    let bad = with_ip_options(&plain, &[7, 40, 4, 0, 0, 0, 0, 0]);
    assert_eq!(
        lab.send(LAN, bad).action,
        Action::Drop(DropReason::Ipv4BadOptions)
    );
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1, "one parameter problem");
    let s = decode(&sent[0].1);
    assert_eq!((s.src, s.dst, s.dst_mac), (GW_LAN, CLIENT, CLIENT_MAC));
    let icmp = &sent[0].1[34..];
    assert_eq!(
        (icmp[0], icmp[1], icmp[4]),
        (12, 0, 20),
        "type 12, pointer 20"
    );
    let lsrr = with_ip_options(&plain, &[1, 131, 7, 4, 203, 0, 113, 254]);
    assert_eq!(
        lab.send(LAN, lsrr).action,
        Action::Drop(DropReason::Ipv4SourceRoute)
    );
    assert!(
        lab.emitted().is_empty(),
        "a source route is refused silently"
    );
    let nops = with_ip_options(&plain, &[1, 1, 1, 0]);
    assert!(matches!(lab.send(LAN, nops).action, Action::Forward { .. }));
}

#[test]
fn link_broadcast_and_multicast_frames_are_never_forwarded() {
    let mut lab = Lab::new();
    for (mac, sport) in [([0xff; 6], 46100), ([0x01, 0, 0x5e, 1, 2, 3], 46101)] {
        let mut f = udp_from_client(sport, b"group");
        f[..6].copy_from_slice(&mac);
        assert_eq!(
            lab.send(LAN, f).action,
            Action::Drop(DropReason::LinkBroadcast)
        );
    }
    // Another host's MAC is not for us at all.
    let mut f = udp_from_client(46102, b"other");
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    assert_eq!(lab.send(LAN, f).action, Action::Drop(DropReason::NotForUs));
    // Nor is a multicast group or a zero network as destination.
    let mut spec = FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: Ipv4Addr::new(239, 1, 2, 3),
        ttl: 64,
        tos: 0,
        id: 9,
        df: false,
        l4: L4Spec::Udp {
            sport: 46103,
            dport: 9999,
            payload: vec![1],
        },
    };
    assert_eq!(
        lab.send(LAN, spec.build()).action,
        Action::Drop(DropReason::MulticastDst)
    );
    spec.dst = Ipv4Addr::new(0, 1, 2, 3);
    assert_eq!(
        lab.send(LAN, spec.build()).action,
        Action::Drop(DropReason::MartianDst)
    );
    assert!(lab.emitted().is_empty(), "no ICMP about any of them");
    // A broadcast frame to the gateway's own address is still the
    // gateway's (ARP-less hosts, DHCP): it reaches INPUT.
    let mut ping = FrameSpec {
        dst_mac: [0xff; 6],
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: GW_LAN,
        ttl: 64,
        tos: 0,
        id: 10,
        df: false,
        l4: L4Spec::Icmp {
            ty: 8,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            payload: vec![0; 8],
        },
    };
    assert!(matches!(
        lab.send(LAN, ping.build()).action,
        Action::Forward { .. }
    ));
    ping.dst_mac = LAN_MAC;
    assert!(matches!(
        lab.send(LAN, ping.build()).action,
        Action::Forward { .. }
    ));
}

#[test]
fn udp_with_a_bad_length_field_is_invalid() {
    use xdpgw_dataplane::conntrack::InvalidReason;
    let mut lab = Lab::new();
    // Open the flow so that the fast path has it cached.
    open_udp(&mut lab, 46200);
    for len in [0u16, 7, 8 + 4 + 1, 500] {
        let mut f = udp_from_client(46200, b"abcd");
        f[38..40].copy_from_slice(&len.to_be_bytes());
        f[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(
            lab.send(LAN, f).action,
            Action::Drop(DropReason::FilterDrop),
            "length {len}"
        );
    }
    let stats = lab.worker.gateway().conntrack.stats();
    assert_eq!(stats.invalid_count(InvalidReason::UdpBadLength), 4);
    // Shorter than the datagram is fine (the rest is padding to UDP).
    let mut f = udp_from_client(46200, b"abcd");
    f[38..40].copy_from_slice(&10u16.to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    assert!(matches!(lab.send(LAN, f).action, Action::Forward { .. }));
}

#[test]
fn arp_with_hardware_type_6_is_answered() {
    let mut lab = Lab::new();
    let mut f = arp_request(6, CLIENT_MAC, CLIENT, GW_LAN);
    let out = lab.send(LAN, f.clone());
    assert!(matches!(out.action, Action::Forward { iface: LAN, .. }));
    // Linux answers with its own hardware type, Ethernet.
    assert_eq!(&out.frame[14..16], &[0, 1]);
    assert_eq!(&out.frame[20..22], &[0, 2]);
    // To another host's MAC: not ours (Linux: PACKET_OTHERHOST).
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    assert_eq!(lab.send(LAN, f).action, Action::Drop(DropReason::NotForUs));
}

#[test]
fn icmp_errors_to_one_sender_are_rate_limited_as_linux() {
    let mut lab = Lab::new();
    let ttl1 = |sport: u16| {
        FrameSpec {
            dst_mac: LAN_MAC,
            src_mac: CLIENT_MAC,
            src: CLIENT,
            dst: FAR,
            ttl: 1,
            tos: 0,
            id: sport,
            df: false,
            l4: L4Spec::Udp {
                sport,
                dport: 33435,
                payload: vec![0; 4],
            },
        }
        .build()
    };
    // The lab's clock moves 1 ms per frame: 20 frames in 20 ms.
    for i in 0..20 {
        assert_eq!(
            lab.send(LAN, ttl1(47000 + i)).action,
            Action::Drop(DropReason::TtlExceeded)
        );
    }
    assert_eq!(lab.emitted().len(), 6, "a burst of 6 to one sender");
    assert_eq!(lab.worker.gateway().icmp_limit.refused(), (0, 14));
    // A second later, one more.
    lab.now += 1_000_000_000;
    for i in 0..3 {
        lab.send(LAN, ttl1(47100 + i));
    }
    assert_eq!(lab.emitted().len(), 1);
}

/// MASQUERADE from a 64-port range: the 65th connection to the same server
/// port finds none. Every datagram is either granted a port (an entry) or
/// counted as `nat_no_free_port`; once the range has a free port again and
/// the failed search is no longer remembered, the next one gets it.
#[test]
fn port_exhaustion_counts_every_failure() {
    let text = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules")
        .replace(
            "-A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE",
            "-A POSTROUTING -o wan0 -s 192.168.10.0/24 -p udp -j MASQUERADE --to-ports 40000-40063",
        );
    let mut lab = Lab::with_rules(&text);
    let (mut granted, mut failed) = (0u64, 0u64);
    let mut ports = std::collections::BTreeSet::new();
    for sport in 20000..20300u16 {
        let out = lab.send(LAN, udp_from_client(sport, b"x"));
        match out.action {
            Action::Forward { .. } => {
                granted += 1;
                ports.insert(out.seen().sport);
            }
            Action::Drop(DropReason::NatNoFreePort) => failed += 1,
            a => panic!("sport {sport}: {a:?}"),
        }
    }
    assert_eq!(granted, 64);
    assert_eq!(ports, (40000..40064).collect());
    assert_eq!(granted + failed, 300);
    assert_eq!(
        lab.worker.stats().drop_count(DropReason::NatNoFreePort),
        failed
    );
    // Counted for the interface whose address ran out (wan0), not lan0.
    let gw = lab.worker.gateway();
    assert_eq!(gw.nat_failures(1).nat_no_free_port, failed);
    assert_eq!(gw.nat_failures(0), Default::default());
    let ct = &lab.worker.gateway().conntrack;
    assert_eq!(ct.len(), 64);
    // One connection goes away; past the memory of the failed search, the
    // full search finds its port.
    let gone = ct.remove_if(|e| e.orig.sport == 20010);
    assert_eq!(gone.len(), 1);
    lab.now += xdpgw_dataplane::nat::EXHAUSTED_FOR;
    assert!(matches!(
        lab.send(LAN, udp_from_client(21000, b"x")).action,
        Action::Forward { .. }
    ));
}

// ---------------------------------------------------------------------------
// The established-flow fast path (dataplane/src/fastpath/)

fn udp_from_client(sport: u16, payload: &[u8]) -> Vec<u8> {
    FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: SERVER,
        ttl: 64,
        tos: 0,
        id: 7,
        df: true,
        l4: L4Spec::Udp {
            sport,
            dport: 53,
            payload: payload.to_vec(),
        },
    }
    .build()
}

fn udp_from_server(dport: u16) -> Vec<u8> {
    FrameSpec {
        dst_mac: WAN_MAC,
        src_mac: SERVER_MAC,
        src: SERVER,
        dst: GW_WAN,
        ttl: 64,
        tos: 0,
        id: 8,
        df: true,
        l4: L4Spec::Udp {
            sport: 53,
            dport,
            payload: vec![1, 2, 3],
        },
    }
    .build()
}

/// Every rule counter of the worker, in slot order.
fn all_counters(lab: &Lab) -> Vec<(u64, u64)> {
    let (rules, st) = lab.worker.rules();
    (0..rules.live.totals().len() as u32)
        .map(|slot| st.counter(slot))
        .collect()
}

fn delta(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (y.0 - x.0, y.1 - x.1))
        .collect()
}

/// Opens a UDP flow from the client (MASQUERADE) and its reply: the next
/// packets of it are ESTABLISHED.
fn open_udp(lab: &mut Lab, sport: u16) {
    assert_eq!(lab.send(LAN, udp_from_client(sport, b"q")).iface(), WAN);
    assert_eq!(lab.send(WAN, udp_from_server(sport)).iface(), LAN);
}

#[test]
fn fast_path_gives_the_full_paths_bytes_and_counters() {
    let mut lab = Lab::new();
    open_udp(&mut lab, 41000);
    let f = udp_from_client(41000, b"same bytes each time");
    let before = all_counters(&lab);
    // The first ESTABLISHED packet takes the full path and is cached ...
    let full = lab.send(LAN, f.clone());
    assert_eq!(lab.worker.stats().fast_path, 0);
    let mid = all_counters(&lab);
    // ... the next one takes the fast path: same bytes out, same counters.
    let fast = lab.send(LAN, f.clone());
    assert_eq!(lab.worker.stats().fast_path, 1, "cached");
    let after = all_counters(&lab);
    assert_eq!(full.action, fast.action);
    assert_eq!(full.frame, fast.frame, "byte for byte");
    assert_eq!(delta(&before, &mid), delta(&mid, &after), "rule counters");
    assert!(delta(&mid, &after).iter().any(|d| d.0 == 1));
    let s = fast.seen();
    assert_eq!((s.src, s.sport, s.ttl), (GW_WAN, 41000, 63));
    // Conntrack saw every packet: 3 original-direction packets so far.
    let e = lab.conn(41000);
    assert_eq!(e.packets, [3, 1]);
    // Replies take it too (the first reply, already ESTABLISHED, was
    // cached when the flow opened).
    let r1 = lab.send(WAN, udp_from_server(41000));
    let r2 = lab.send(WAN, udp_from_server(41000));
    assert_eq!(r1.frame, r2.frame);
    assert_eq!(lab.worker.stats().fast_path, 3);
    assert_eq!(r2.seen().tos, 0);
    assert_eq!(lab.worker.stats().dropped(), 0);
}

/// The client's SYN (sequence `c0`) and the server's SYN-ACK (`s0`) through
/// the gateway: the next ACK from the client is ESTABLISHED.
fn syn_and_syn_ack(lab: &mut Lab, sport: u16, dport: u16, c0: u32, s0: u32) {
    lab.send(LAN, from_client(sport, dport, c0, 0, TCP_SYN, &[]))
        .seen();
    lab.send(
        WAN,
        from_server(sport, dport, s0, c0 + 1, TCP_SYN | TCP_ACK, &[]),
    )
    .seen();
}

#[test]
fn fast_path_tcp_gives_the_full_paths_bytes_and_states() {
    let mut lab = Lab::new();
    let (c0, s0) = (20u32, 7_000u32);
    syn_and_syn_ack(&mut lab, 43080, 80, c0, s0);
    let ack = from_client(43080, 80, c0 + 1, s0 + 1, TCP_ACK, &[]);
    // The handshake's last ACK is the first ESTABLISHED packet: full path,
    // cached; the same segment again (a duplicate ACK) takes the fast path.
    let full = lab.send(LAN, ack.clone());
    let fast_before = lab.worker.stats().fast_path;
    let fast = lab.send(LAN, ack);
    assert_eq!(lab.worker.stats().fast_path, fast_before + 1, "cached");
    assert_eq!(full.action, fast.action);
    assert_eq!(full.frame, fast.frame, "byte for byte");
    let s = fast.seen();
    assert_eq!((s.src, s.sport, s.ttl), (GW_WAN, 43080, 63));

    // Data, then the client's FIN: the FIN goes the fast path too, and
    // conntrack's TCP state machine still sees it.
    let req = b"GET / HTTP/1.0\r\n\r\n";
    let data = from_client(43080, 80, c0 + 1, s0 + 1, TCP_ACK | TCP_PSH, req);
    assert_eq!(lab.send(LAN, data).seen().payload, req.to_vec());
    let cseq = c0 + 1 + req.len() as u32;
    let before = lab.worker.stats().fast_path;
    lab.send(
        LAN,
        from_client(43080, 80, cseq, s0 + 1, TCP_FIN | TCP_ACK, &[]),
    )
    .seen();
    assert_eq!(
        lab.worker.stats().fast_path,
        before + 1,
        "the FIN was cached"
    );
    assert_eq!(lab.conn(43080).tcp_state, TcpState::FinWait);
    assert_eq!(lab.conn(43080).packets[0], 5);

    // A cached flow's frame to another MAC is not ours, cached or not.
    let mut other = from_client(43080, 80, cseq + 1, s0 + 1, TCP_ACK, &[]);
    other[..6].copy_from_slice(&CLIENT2_MAC);
    let before = lab.worker.stats().fast_path;
    assert_eq!(
        lab.send(LAN, other).action,
        Action::Drop(DropReason::NotForUs)
    );
    assert_eq!(lab.worker.stats().fast_path, before);
    assert_eq!(lab.worker.stats().dropped(), 1);
}

#[test]
fn fast_path_credits_a_udp_stream_once_per_round() {
    let mut lab = Lab::new();
    open_udp(&mut lab, 41010);
    // Two seconds on, the next packet makes the stream ASSURED (full path,
    // cached).
    lab.now += 3 * SEC;
    lab.send(LAN, udp_from_client(41010, b"a")).seen();
    let before = lab.conn(41010);
    assert_ne!(before.status & 4, 0, "ASSURED");
    // A credit round over two batches: the first packet is tracked on its
    // own, the other seven are credited together when the round ends.
    let f = udp_from_client(41010, b"bb");
    let len = (f.len() - 14) as u64;
    let (found, fast) = (lab.worker.stats().ct.found, lab.worker.stats().fast_path);
    let outs = lab.send_batch(LAN, vec![f.clone(); 5], false);
    for out in &outs[1..] {
        assert_eq!(out.frame, outs[0].frame, "same bytes out");
    }
    for out in lab.send_batch(LAN, vec![f.clone(); 3], false) {
        out.seen();
    }
    let last_now = lab.now;
    assert_eq!(lab.conn(41010).packets[0], before.packets[0] + 1, "not yet");
    // The worker goes idle: the round ends.
    lab.worker.idle();
    let after = lab.conn(41010);
    assert_eq!(after.packets, [before.packets[0] + 8, before.packets[1]]);
    assert_eq!(after.bytes[0], before.bytes[0] + 8 * len);
    assert_eq!(
        after.expires,
        last_now + 120 * SEC,
        "as the last packet set it"
    );
    assert_eq!(
        lab.worker.stats().ct.found,
        found + 8,
        "conntrack -S counts each"
    );
    assert_eq!(lab.worker.stats().fast_path, fast + 8);
    assert_eq!(lab.worker.stats().dropped(), 0);

    // Under load, housekeeping ends a round CREDIT_ROUND after its first
    // credit, not before.
    lab.send(LAN, f.clone()).seen();
    lab.send(LAN, f.clone()).seen();
    let credited_at = lab.now;
    lab.worker
        .housekeeping(credited_at + CREDIT_ROUND - 1, &mut lab.sink);
    assert_eq!(lab.conn(41010).packets[0], after.packets[0] + 1, "not yet");
    lab.worker
        .housekeeping(credited_at + CREDIT_ROUND, &mut lab.sink);
    assert_eq!(lab.conn(41010).packets[0], after.packets[0] + 2);

    // An entry deleted in the middle of a round: the next batch ends the
    // round, the credit finds nothing, and the next packet is a new
    // connection.
    for out in lab.send_batch(LAN, vec![f.clone(); 2], false) {
        out.seen();
    }
    let removed = lab
        .worker
        .gateway()
        .conntrack
        .remove_if(|s| s.orig.sport == 41010);
    assert_eq!(removed.len(), 1);
    drop(lab.worker.batch(&mut lab.sink));
    assert!(lab.worker.gateway().conntrack.is_empty());
    let out = lab.send(LAN, f);
    assert_eq!(out.iface(), WAN);
    assert_eq!(lab.conn(41010).packets, [1, 0], "NEW again");
}

#[test]
fn fast_path_applies_cached_dscp() {
    let mut lab = Lab::new();
    // An HTTPS connection's replies get DSCP 46 in mangle FORWARD.
    let (c0, s0) = (10u32, 900u32);
    syn_and_syn_ack(&mut lab, 42443, 443, c0, s0);
    lab.send(LAN, from_client(42443, 443, c0 + 1, s0 + 1, TCP_ACK, &[]))
        .seen();
    let fast_before = lab.worker.stats().fast_path;
    for k in 0..3u32 {
        let data = from_server(42443, 443, s0 + 1 + 10 * k, c0 + 1, TCP_ACK, &[7; 10]);
        let s = lab.send(WAN, data).seen();
        assert_eq!(s.tos, 46 << 2, "packet {k}");
    }
    assert!(
        lab.worker.stats().fast_path > fast_before,
        "the replies were cached"
    );
}

#[test]
fn a_reload_ends_cached_decisions() {
    let mut lab = Lab::new();
    open_udp(&mut lab, 41001);
    let f = udp_from_client(41001, b"x");
    lab.send(LAN, f.clone()).seen();
    lab.send(LAN, f.clone()).seen();
    assert_eq!(lab.worker.stats().fast_path, 1);
    // New rules: FORWARD drops everything.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let set = xdpgw_control::load_rules_str("drop", text).expect("rules");
    lab.worker.gateway().install(&set).expect("install");
    let out = lab.send(LAN, f);
    assert_eq!(out.action, Action::Drop(DropReason::PolicyDrop));
    assert_eq!(lab.worker.stats().fast_path, 1);
}

#[test]
fn log_rules_see_every_packet() {
    let text = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
        .expect("conf/gateway.rules")
        .replace(
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
            "-A FORWARD -p udp -j LOG --log-prefix \"udp: \"\n\
             -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
        );
    let mut lab = Lab::with_rules(&text);
    open_udp(&mut lab, 41002);
    lab.logs();
    for _ in 0..5 {
        lab.send(LAN, udp_from_client(41002, b"y")).seen();
    }
    let logged = lab.logs().len();
    assert_eq!(logged, 5, "one LOG line per packet");
    assert_eq!(
        lab.worker.stats().fast_path,
        0,
        "a LOG rule is never cached"
    );
}

#[test]
fn a_deleted_connection_is_new_again() {
    let mut lab = Lab::new();
    open_udp(&mut lab, 41003);
    let f = udp_from_client(41003, b"z");
    lab.send(LAN, f.clone()).seen();
    lab.send(LAN, f.clone()).seen();
    assert_eq!(lab.worker.stats().fast_path, 1);
    let masq = lab.counter(Table::Nat, Hook::Postrouting, 0);
    let ct = &lab.worker.gateway().conntrack;
    let removed = ct.remove_if(|s| s.orig.sport == 41003);
    assert_eq!(removed.len(), 1);
    let s = lab.send(LAN, f).seen();
    assert_eq!((s.src, s.sport), (GW_WAN, 41003));
    assert_eq!(
        lab.counter(Table::Nat, Hook::Postrouting, 0),
        masq + 1,
        "NEW again: MASQUERADE decides again"
    );
    assert_eq!(lab.worker.stats().fast_path, 1);
    let e = lab.conn(41003);
    assert_eq!(e.packets, [1, 0]);
}

/// The prefetch pass a port's rx loop runs over a batch before processing
/// it (`Batch::prefetch`, two steps, queues of 64) is a hint: a batch of
/// cached flows, new connections and junk, more than its queues hold, gets
/// the same actions, bytes, counters and conntrack table with it as
/// without it.
#[test]
fn the_prefetch_pass_changes_nothing() {
    let run = |prefetch: bool| {
        let mut lab = Lab::new();
        for sport in [42000, 42001] {
            open_udp(&mut lab, sport);
            lab.send(LAN, udp_from_client(sport, b"to cache")).seen();
        }
        let mut batch = Vec::new();
        for i in 0..150u16 {
            batch.push(match i % 5 {
                0 | 1 => udp_from_client(42000 + i % 2, b"cached"),
                2 | 3 => udp_from_client(43000 + i, b"new"),
                _ => vec![0xff; usize::from(i % 60)],
            });
        }
        let outs: Vec<(Action, Vec<u8>)> = lab
            .send_batch(LAN, batch, prefetch)
            .into_iter()
            .map(|o| (o.action, o.frame))
            .collect();
        drop(lab.worker.batch(&mut lab.sink));
        let table = lab.worker.gateway().conntrack.len();
        (
            outs,
            all_counters(&lab),
            lab.worker.stats().fast_path,
            table,
        )
    };
    let (with, without) = (run(true), run(false));
    assert!(with.2 >= 50, "cached flows took the fast path: {}", with.2);
    assert_eq!(with.3, 2 + 60, "each new connection confirmed");
    assert_eq!(with, without);
}

/// A connection from the client's port `sport` to the server's port 80,
/// established (SYN, SYN-ACK, ACK), its flow's decisions cached; returns
/// the next sequence numbers (client, server).
fn establish(lab: &mut Lab, sport: u16) -> (u32, u32) {
    let (c0, s0) = (1_000u32, 5_000u32);
    lab.send(LAN, from_client(sport, 80, c0, 0, TCP_SYN, &[]))
        .seen();
    lab.send(
        WAN,
        from_server(sport, 80, s0, c0 + 1, TCP_SYN | TCP_ACK, &[]),
    )
    .seen();
    lab.send(LAN, from_client(sport, 80, c0 + 1, s0 + 1, TCP_ACK, &[]))
        .seen();
    (c0 + 1, s0 + 1)
}

#[test]
fn lowered_mtu_ends_cached_flows_and_gets_fragmentation_needed() {
    use xdpgw_dataplane::gateway::LinkChange;
    let mut lab = Lab::new();
    let (c, s) = establish(&mut lab, 41000);
    // 1,400-byte packets of the established flow pass (twice: the second
    // through the fast path's cached decision).
    let data = vec![0x33; 1360];
    for k in 0..2u32 {
        let out = lab.send(LAN, from_client(41000, 80, c + k * 1360, s, TCP_ACK, &data));
        assert_eq!(out.seen().payload.len(), 1360);
    }
    let done = lab.worker.gateway().link_changed(
        WAN,
        LinkChange::Link {
            mtu: 1280,
            cap: 1774,
            up: true,
            carrier: true,
        },
    );
    assert_eq!(done.mtu, Some((1500, 1280)));
    assert_eq!(lab.worker.gateway().mtu(WAN), 1280);
    // The next one is too big for wan0 now: dropped, and the client told
    // (`ip_forward`: ICMP 3/4 with the new MTU, from lan0's address).
    let out = lab.send(LAN, from_client(41000, 80, c + 2 * 1360, s, TCP_ACK, &data));
    assert_eq!(out.action, Action::Drop(DropReason::FragNeeded));
    let sent = lab.emitted();
    assert_eq!(sent.len(), 1, "one ICMP error");
    let (iface, err) = &sent[0];
    assert_eq!(*iface, LAN);
    let e = decode(err);
    assert_eq!((e.src, e.dst), (GW_LAN, CLIENT));
    // ICMP type 3 code 4, the next-hop MTU in bytes 6..8 of the ICMP header.
    let icmp = &err[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1280);
    // What fits still passes.
    let small = vec![0x33; 1000];
    let out = lab.send(
        LAN,
        from_client(41000, 80, c + 2 * 1360, s, TCP_ACK, &small),
    );
    assert_eq!(out.seen().payload.len(), 1000);
}

#[test]
fn address_change_follows_linux() {
    use xdpgw_dataplane::gateway::LinkChange;
    const NEW_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    let mut lab = Lab::new();
    establish(&mut lab, 42000);
    assert_eq!(lab.conn(42000).reply.dst, GW_WAN);
    let gw = std::sync::Arc::clone(lab.worker.gateway());
    // A second address: it becomes wan0's.
    let done = gw.link_changed(
        WAN,
        LinkChange::AddrAdded {
            addr: NEW_WAN,
            prefix: 24,
        },
    );
    assert_eq!(done.addr, Some((Some((GW_WAN, 24)), Some((NEW_WAN, 24)))));
    assert_eq!(done.flushed, 0);
    // The old one goes: not wan0's any more, nothing to forget.
    let done = gw.link_changed(
        WAN,
        LinkChange::AddrRemoved {
            addr: GW_WAN,
            prefix: 24,
        },
    );
    assert_eq!(done.addr, None, "not the interface's address");
    // Linux (`masq_inet_event`) forgets connections masqueraded to an
    // address that goes away: put the old one back, then remove it.
    gw.link_changed(
        WAN,
        LinkChange::AddrAdded {
            addr: GW_WAN,
            prefix: 24,
        },
    );
    let done = gw.link_changed(
        WAN,
        LinkChange::AddrRemoved {
            addr: GW_WAN,
            prefix: 24,
        },
    );
    assert_eq!(done.addr, Some((Some((GW_WAN, 24)), None)));
    assert_eq!(done.flushed, 1);
    assert!(gw.conntrack.snapshot().is_empty());
    // Without an address MASQUERADE has nothing to give (Linux: "ate my
    // IP address", dropped).
    let out = lab.send(LAN, from_client(42001, 80, 1, 0, TCP_SYN, &[]));
    assert!(matches!(out.action, Action::Drop(_)), "{:?}", out.action);
    // With the new address: ARP answered for it, not for the old one, and
    // new connections masqueraded to it.
    gw.link_changed(
        WAN,
        LinkChange::AddrAdded {
            addr: NEW_WAN,
            prefix: 24,
        },
    );
    lab.arp_hello(WAN, SERVER_MAC, SERVER, NEW_WAN);
    let out = lab.send(WAN, arp_request(1, SERVER_MAC, SERVER, GW_WAN));
    assert_eq!(out.action, Action::Drop(DropReason::NotForUs));
    let out = lab.send(LAN, from_client(42002, 80, 1, 0, TCP_SYN, &[]));
    assert_eq!(out.seen().src, NEW_WAN);
    assert_eq!(lab.conn(42002).reply.dst, NEW_WAN);
    // Down: masqueraded connections forgotten (`masq_device_event`).
    let done = gw.link_changed(
        WAN,
        LinkChange::Link {
            mtu: 1500,
            cap: 1774,
            up: false,
            carrier: false,
        },
    );
    assert_eq!((done.state, done.flushed), (Some((false, false)), 1));
}

// ---------------------------------------------------------------------------
// IP sets (-m set)

const SET_RULES: &str = "\
ipset create blocklist hash:net counters
ipset add blocklist 198.51.100.0/24
iptables -P FORWARD DROP
iptables -A FORWARD -m set --match-set blocklist dst -j DROP
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i lan0 -o wan0 -j ACCEPT
iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
";

/// Runs an `ipset` command against the lab's gateway, as `xdpgw ipset`
/// does (a copy published whole).
fn ipset(lab: &Lab, cmd: &str) -> Result<String, String> {
    let words: Vec<xdpgw_control::parse::lex::Token> = cmd
        .split_whitespace()
        .map(|w| xdpgw_control::parse::lex::Token {
            text: w.into(),
            line: 1,
            col: 1,
        })
        .collect();
    let gw = lab.worker.gateway();
    let l = xdpgw_control::parse::ipset::parse_set_command(&words, &**gw.sets.now())
        .map_err(|e| e.to_string())?;
    gw.sets
        .update(|t| xdpgw_control::ipset::apply(t, &l, lab.now, &|_| true, &|_| 0))
        .map_err(|e| e.to_string())
}

fn udp_to(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst,
        ttl: 64,
        tos: 0,
        id: 9,
        df: true,
        l4: L4Spec::Udp {
            sport,
            dport: 53,
            payload: b"s".to_vec(),
        },
    }
    .build()
}

#[test]
fn a_blocklist_set_drops_and_changes_live() {
    let mut lab = Lab::with_rules(SET_RULES);
    // Listed network: dropped by the set rule; others forwarded.
    assert_eq!(
        lab.send(LAN, udp_to(FAR, 42000)).action,
        Action::Drop(DropReason::FilterDrop)
    );
    open_udp(&mut lab, 42001);
    for _ in 0..3 {
        lab.send(LAN, udp_from_client(42001, b"ok")).seen();
    }
    // The flow evaluated the set rule: never cached.
    assert_eq!(lab.worker.stats().fast_path, 0);
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 0), 1);
    // Added without a reload: the established flow's next packet is dropped.
    ipset(&lab, "add blocklist 203.0.113.9").expect("add");
    assert_eq!(
        ipset(&lab, "add blocklist 203.0.113.9"),
        Err("Element cannot be added to the set: it's already added".into())
    );
    assert_eq!(
        lab.send(LAN, udp_from_client(42001, b"no")).action,
        Action::Drop(DropReason::FilterDrop)
    );
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 0), 2);
    // A nomatch element carves the server out of a listed network.
    ipset(&lab, "del blocklist 203.0.113.9").expect("del");
    lab.send(LAN, udp_from_client(42001, b"ok")).seen();
    ipset(&lab, "add blocklist 203.0.113.0/24").expect("add");
    ipset(&lab, "add blocklist 203.0.113.8/29 nomatch").expect("add");
    lab.send(LAN, udp_from_client(42001, b"ok")).seen();
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 0), 2);
    // The element's counters count the packets the rule saw there.
    let saved = ipset(&lab, "save blocklist").expect("save");
    assert!(
        saved.contains("add blocklist 198.51.100.0/24 packets 1 bytes "),
        "{saved}"
    );
    // swap: the rule now sees the other set's elements.
    ipset(&lab, "create empty hash:net counters").expect("create");
    ipset(&lab, "swap blocklist empty").expect("swap");
    lab.send(LAN, udp_to(FAR, 42002)).seen();
}

// ---------------------------------------------------------------------------
// VRRP and virtual addresses through the host path (keepalived on the host)

/// INPUT takes VRRP from lan0 and ping; MASQUERADE out of wan0.
const VRRP_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lan0 -p 112 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
COMMIT
";

/// An IPv4 packet of protocol `proto` from `src` to `dst` with TTL `ttl`,
/// header options `options` and payload `payload`, behind an Ethernet
/// header (MACs `dst_mac`, `src_mac`).
fn ip_frame(
    (dst_mac, src_mac): (Mac, Mac),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: u8,
    ttl: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 20 + options.len();
    let total = (ihl + payload.len()) as u16;
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0xc0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, ttl, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(options);
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// keepalived's VRRPv2 advertisement for router 51, priority 100, of
/// 192.168.10.254 (the bytes after the IPv4 header it wrote into xg-lan0).
const VRRP_ADVERT: [u8; 20] = [
    0x21, 0x33, 0x64, 0x01, 0x00, 0x01, 0xaf, 0x23, 0xc0, 0xa8, 0x0a, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0,
];
const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VRRP_MAC: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];

#[test]
fn vrrp_from_the_host_leaves_by_its_device_with_the_group_mac() {
    let mut lab = Lab::with_rules(VRRP_RULES);
    lab.emitted();
    for dev in [LAN, WAN] {
        let src = if dev == LAN { GW_LAN } else { GW_WAN };
        let advert = ip_frame(
            ([0; 6], [0; 6]),
            (src, VRRP_GROUP),
            112,
            255,
            &[],
            &VRRP_ADVERT,
        );
        let out = lab.host_sends_on(dev, &advert);
        assert_eq!(
            out.iface(),
            dev,
            "out of the device's interface, not routed"
        );
        let seen = out.seen();
        let mac = if dev == LAN { LAN_MAC } else { WAN_MAC };
        assert_eq!((seen.dst_mac, seen.src_mac), (VRRP_MAC, mac));
        assert_eq!((seen.ttl, seen.proto, seen.dst), (255, 112, VRRP_GROUP));
        assert_eq!(
            &out.frame[34..54],
            &VRRP_ADVERT,
            "the advertisement as sent"
        );
    }
    // The IGMPv3 report of its group join (TTL 1, Router Alert) goes the
    // same way, to 224.0.0.22's MAC.
    let report = [0x22, 0, 0xf9, 0xeb, 0, 0, 0, 1, 4, 0, 0, 0, 224, 0, 0, 18];
    let igmp = ip_frame(
        ([0; 6], [0; 6]),
        (GW_LAN, Ipv4Addr::new(224, 0, 0, 22)),
        2,
        1,
        &[0x94, 0x04, 0, 0],
        &report,
    );
    let out = lab.host_sends_on(LAN, &igmp);
    assert_eq!(out.iface(), LAN);
    assert_eq!(out.seen().dst_mac, [0x01, 0x00, 0x5e, 0, 0, 0x16]);
    assert!(lab.emitted().is_empty(), "nothing resolved by ARP");
}

#[test]
fn vrrp_arriving_goes_to_the_host_through_input() {
    let advert = || {
        ip_frame(
            (VRRP_MAC, CLIENT2_MAC),
            (CLIENT2, VRRP_GROUP),
            112,
            255,
            &[],
            &VRRP_ADVERT,
        )
    };
    let mut lab = Lab::with_rules(VRRP_RULES);
    // Until the host joined the group on xg-lan0 (as keepalived does on
    // its interface) it is nobody's.
    assert_eq!(
        lab.send(LAN, advert()).action,
        Action::Drop(DropReason::MulticastDst)
    );
    let gw = lab.worker.gateway();
    assert!(gw.set_host_groups(&[(LAN, Ipv4Addr::new(224, 0, 0, 1)), (LAN, VRRP_GROUP)]));
    assert!(!gw.set_host_groups(&[(LAN, Ipv4Addr::new(224, 0, 0, 1)), (LAN, VRRP_GROUP)]));
    let out = lab.send(LAN, advert());
    assert!(
        matches!(out.action, Action::Host { iface: LAN, .. }),
        "{:?}",
        out.action
    );
    assert_eq!(
        lab.counter(Table::Filter, Hook::Input, 0),
        1,
        "through INPUT"
    );
    // Joined on wan0 too: INPUT decides, and from wan0 its policy drops
    // it.
    lab.worker
        .gateway()
        .set_host_groups(&[(LAN, VRRP_GROUP), (WAN, VRRP_GROUP)]);
    let mut from_wan = advert();
    from_wan[6..12].copy_from_slice(&SERVER_MAC);
    assert_eq!(
        lab.send(WAN, from_wan).action,
        Action::Drop(DropReason::PolicyDrop)
    );
    // Other groups are still not routed.
    let other = ip_frame(
        ([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03], CLIENT2_MAC),
        (CLIENT2, Ipv4Addr::new(239, 1, 2, 3)),
        112,
        255,
        &[],
        &VRRP_ADVERT,
    );
    assert_eq!(
        lab.send(LAN, other).action,
        Action::Drop(DropReason::MulticastDst)
    );
}

#[test]
fn host_device_addresses_are_the_gateways() {
    use xdpgw_dataplane::gateway::LinkChange;
    let vip = Ipv4Addr::new(203, 0, 113, 10);
    let mut lab = Lab::with_rules(VRRP_RULES);
    lab.emitted();
    let gw = std::sync::Arc::clone(lab.worker.gateway());
    // keepalived adds its virtual address to xg-wan0: a secondary of
    // 203.0.113.1/24.
    let done = gw.link_changed(
        WAN,
        LinkChange::HostAddrAdded {
            addr: vip,
            prefix: 24,
            secondary: true,
        },
    );
    assert_eq!(done.host_added, Some((vip, 24)));
    // ARP and ping answered for it, from it.
    lab.arp_hello(WAN, SERVER_MAC, SERVER, vip);
    let ping = FrameSpec {
        dst_mac: WAN_MAC,
        src_mac: SERVER_MAC,
        src: SERVER,
        dst: vip,
        ttl: 64,
        tos: 0,
        id: 7,
        df: false,
        l4: L4Spec::Icmp {
            ty: 8,
            code: 0,
            rest: [0, 1, 0, 1],
            payload: vec![9; 8],
        },
    }
    .build();
    let out = lab.send(WAN, ping);
    let seen = out.seen();
    assert_eq!(
        (seen.src, seen.dst, seen.sport),
        (vip, SERVER, 0),
        "echo reply"
    );
    // Announced: a burst of gratuitous ARPs (request, from and for it,
    // target MAC broadcast) out of wan0 at the next housekeeping.
    lab.worker.housekeeping(lab.now, &mut lab.sink);
    let garps = lab.emitted();
    assert_eq!(garps.len(), xdpgw_dataplane::host_addr::GARP_REPEAT);
    for (iface, f) in &garps {
        assert_eq!(*iface, WAN);
        assert_eq!(&f[..12], &[[0xff; 6], WAN_MAC].concat()[..]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &WAN_MAC);
        assert_eq!(&f[28..32], &vip.octets());
        assert_eq!(&f[32..38], &[0xff; 6]);
        assert_eq!(&f[38..42], &vip.octets());
    }
    // The second burst comes 5 s later, as keepalived's
    // vrrp_garp_master_delay.
    lab.worker.housekeeping(lab.now + SEC, &mut lab.sink);
    assert!(lab.emitted().is_empty());
    lab.worker
        .housekeeping(lab.now + 5 * SEC + 1, &mut lab.sink);
    assert_eq!(lab.emitted().len(), xdpgw_dataplane::host_addr::GARP_REPEAT);
    // MASQUERADE picks as `inet_select_addr`: never a secondary, so the
    // interface's own address; a primary one in the next hop's subnet first.
    let out = lab.send(LAN, from_client(43000, 80, 1, 0, TCP_SYN, &[]));
    assert_eq!(out.seen().src, GW_WAN);
    let other = Ipv4Addr::new(198, 18, 0, 1);
    gw.link_changed(
        WAN,
        LinkChange::HostAddrAdded {
            addr: other,
            prefix: 24,
            secondary: false,
        },
    );
    assert_eq!(gw.select_src(WAN, || UPSTREAM), Some(GW_WAN));
    assert_eq!(
        gw.select_src(WAN, || Ipv4Addr::new(198, 18, 0, 254)),
        Some(other)
    );
    assert_eq!(
        gw.select_src(WAN, || FAR),
        Some(GW_WAN),
        "the first primary"
    );
    // Removed (keepalived became backup): no more ARP answers for it.
    let done = gw.link_changed(
        WAN,
        LinkChange::HostAddrRemoved {
            addr: vip,
            prefix: 24,
        },
    );
    assert_eq!(done.host_removed, Some((vip, 24)));
    let out = lab.send(WAN, arp_request(1, SERVER_MAC, SERVER, vip));
    assert_eq!(out.action, Action::Drop(DropReason::NotForUs));
    // The configured address xdpgw gave the device is not a second one.
    let done = gw.link_changed(
        WAN,
        LinkChange::HostAddrAdded {
            addr: GW_WAN,
            prefix: 24,
            secondary: false,
        },
    );
    assert!(done.is_empty());
}
