//! IPv4 fragments through the in-memory pipeline of the gateway of
//! conf/gateway.rules: reassembled before the rules (one packet per
//! datagram for conntrack, NAT and rule counters), sent on in the
//! fragments they arrived in, cut to the MTU when they arrived whole;
//! reassembly memory and its limit as Linux's (nothing evicted). The same
//! cases run against Linux in `e2e_fragments`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::frag::FragConfig;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::pipeline::{Emit, FRAME_SIZE};
use xdpgw_dataplane::rule::{Hook, Table};
use xdpgw_dataplane::worker::Worker;
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::memlab::*;

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

fn gateway(wan_mtu: u16, frag: FragConfig) -> Arc<Gateway> {
    let rules = xdpgw_control::load_rules_str("rules", &conf_rules()).expect("rules");
    let mut cfg = xdpgw_vm_tests::conf_gateway_config(
        [LAN_MAC, WAN_MAC],
        ConntrackConfig {
            max_entries: 4096,
            shards: 16,
            ..ConntrackConfig::default()
        },
    );
    cfg.ifaces[1].mtu = wan_mtu;
    cfg.frag = frag;
    Arc::new(Gateway::new(cfg, &rules).expect("gateway"))
}

impl Lab {
    fn new(wan_mtu: u16, frag: FragConfig) -> Lab {
        let mut lab = Lab {
            worker: Worker::new(gateway(wan_mtu, frag), 3),
            now: 1000 * SEC,
            sink: Sink::default(),
        };
        for (iface, mac, ip, gw) in [
            (LAN, CLIENT_MAC, CLIENT, GW_LAN),
            (WAN, SERVER_MAC, SERVER, GW_WAN),
        ] {
            let a = lab.send(iface, arp_request(mac, ip, gw));
            assert!(matches!(a, Action::Forward { .. }), "{a:?}");
        }
        lab
    }

    fn send(&mut self, iface: u8, mut frame: Vec<u8>) -> Action {
        self.now += 1_000_000;
        let len = frame.len();
        frame.resize(FRAME_SIZE, 0);
        self.worker
            .batch(&mut self.sink)
            .process(self.now, iface, &mut frame, len)
    }

    /// Sends `frames` in order; the actions.
    fn send_all(&mut self, iface: u8, frames: Vec<Vec<u8>>) -> Vec<Action> {
        frames.into_iter().map(|f| self.send(iface, f)).collect()
    }

    fn emitted(&mut self) -> Vec<(u8, Vec<u8>)> {
        std::mem::take(&mut self.sink.0)
    }

    fn counter(&self, table: Table, hook: Hook, rule: usize) -> (u64, u64) {
        let (rules, st) = self.worker.rules();
        let c = rules
            .table(table)
            .expect("table")
            .hook_chain(hook)
            .expect("chain");
        st.counter(c.rules[rule].counter)
    }
}

fn arp_request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    macs: (Mac, Mac),
    ports: (u16, u16),
    id: u16,
    n: usize,
) -> Vec<u8> {
    FrameSpec {
        dst_mac: macs.0,
        src_mac: macs.1,
        src,
        dst,
        ttl: 64,
        tos: 0,
        id,
        df: false,
        l4: L4Spec::Udp {
            sport: ports.0,
            dport: ports.1,
            payload: (0..n).map(|i| (i * 7 + 3) as u8).collect(),
        },
    }
    .build()
}

fn from_client(id: u16, n: usize) -> Vec<u8> {
    udp(CLIENT, SERVER, (LAN_MAC, CLIENT_MAC), (40000, 9000), id, n)
}

fn from_server(id: u16, n: usize) -> Vec<u8> {
    udp(SERVER, GW_WAN, (WAN_MAC, SERVER_MAC), (9000, 40000), id, n)
}

#[test]
fn a_fragmented_datagram_is_natted_once_and_leaves_in_its_senders_geometry() {
    let mut lab = Lab::new(1500, FragConfig::default());
    // 3,008 bytes of UDP in fragments of 1,200/400/800/608, last first.
    let whole = from_client(0x4242, 3000);
    let cuts = [(0, 1200), (1200, 400), (1600, 800), (2400, 608)];
    let mut frags = fragments(&whole, &cuts);
    frags.reverse();
    let actions = lab.send_all(LAN, frags);
    assert_eq!(&actions[..3], &[Action::Consumed; 3], "queued");
    assert_eq!(
        actions[3],
        Action::Emitted {
            iface: WAN,
            frames: 4
        }
    );
    let out = lab.emitted();
    assert!(out.iter().all(|(i, _)| *i == WAN));
    let fields: Vec<_> = out.iter().map(|(_, f)| fragment_fields(f)).collect();
    assert_eq!(
        fields,
        [
            (0, true, 0x4242, 63, 1220),
            (1200, true, 0x4242, 63, 420),
            (1600, true, 0x4242, 63, 820),
            (2400, false, 0x4242, 63, 628),
        ],
        "offset order, id kept, TTL decremented once"
    );
    let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
    for f in &frames {
        let s = &f[14..];
        assert_eq!(&s[12..16], &GW_WAN.octets(), "every fragment masqueraded");
        assert_eq!(&f[0..6], &SERVER_MAC);
    }
    let s = decode(&reassemble(&frames));
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (GW_WAN, 40000, SERVER, 9000)
    );
    assert_eq!(
        s.payload,
        decode(&whole).payload,
        "payload and UDP checksum"
    );
    // One packet for the rules.
    assert_eq!(lab.counter(Table::Nat, Hook::Postrouting, 0), (1, 3028));
    assert_eq!(lab.counter(Table::Filter, Hook::Forward, 3), (1, 3028));
    let st = lab.worker.stats();
    assert_eq!(
        (
            st.reasm_reqds,
            st.reasm_oks,
            st.frag_oks,
            st.frag_creates,
            st.forwarded
        ),
        (4, 1, 1, 4, 3),
        "two ARP answers and the datagram forwarded"
    );

    // The reply: 4,000 bytes in fragments of 1,480, back to the client.
    let reply = from_server(0x77, 3992);
    let actions = lab.send_all(WAN, fragments(&reply, &even_cuts(4000, 1480)));
    assert_eq!(
        actions[2],
        Action::Emitted {
            iface: LAN,
            frames: 3
        }
    );
    let frames: Vec<Vec<u8>> = lab.emitted().into_iter().map(|(_, f)| f).collect();
    let lens: Vec<usize> = frames.iter().map(|f| fragment_fields(f).4).collect();
    assert_eq!(lens, [1500, 1500, 1060]);
    let s = decode(&reassemble(&frames));
    assert_eq!((s.src, s.dst, s.dport), (SERVER, CLIENT, 40000));
    assert_eq!(
        lab.counter(Table::Filter, Hook::Forward, 0),
        (1, 4020),
        "ESTABLISHED"
    );
    assert_eq!(lab.worker.gateway().frags.mem(), 0);
}

#[test]
fn a_60000_byte_datagram_leaves_as_the_same_41_fragments() {
    let mut lab = Lab::new(1500, FragConfig::default());
    let whole = from_client(0x1001, 60_000 - 8);
    let cuts = even_cuts(60_000, 1480);
    assert_eq!((cuts.len(), cuts[40].1), (41, 800));
    let actions = lab.send_all(LAN, fragments(&whole, &cuts));
    assert_eq!(
        actions[40],
        Action::Emitted {
            iface: WAN,
            frames: 41
        }
    );
    let frames: Vec<Vec<u8>> = lab.emitted().into_iter().map(|(_, f)| f).collect();
    for (f, (off, len)) in frames.iter().zip(&cuts) {
        let (o, more, id, ttl, total) = fragment_fields(f);
        assert_eq!((o, id, ttl, total), (*off, 0x1001, 63, len + 20));
        assert_eq!(more, off + len < 60_000);
    }
    assert_eq!(decode(&reassemble(&frames)).payload, decode(&whole).payload);
    assert_eq!(lab.counter(Table::Nat, Hook::Postrouting, 0).0, 1);
}

#[test]
fn a_non_df_datagram_over_the_mtu_is_fragmented_as_ip_fragment_does() {
    let mut lab = Lab::new(1280, FragConfig::default());
    let whole = from_client(0x5151, 1372);
    assert_eq!(
        lab.send(LAN, whole.clone()),
        Action::Emitted {
            iface: WAN,
            frames: 2
        }
    );
    let frames: Vec<Vec<u8>> = lab.emitted().into_iter().map(|(_, f)| f).collect();
    let fields: Vec<_> = frames.iter().map(|f| fragment_fields(f)).collect();
    assert_eq!(
        fields,
        [(0, true, 0x5151, 63, 1276), (1256, false, 0x5151, 63, 144)]
    );
    assert_eq!(decode(&reassemble(&frames)).src, GW_WAN);
    // With DF: refused, "fragmentation needed" to the sender.
    let mut df = from_client(0x5152, 1372);
    df[20] |= 0x40;
    df[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&df[14..34]);
    df[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(lab.send(LAN, df), Action::Drop(DropReason::FragNeeded));
    assert_eq!(lab.worker.stats().frag_fails, 1);
}

#[test]
fn overlapping_and_duplicated_fragments_are_handled_as_linux_does() {
    let mut lab = Lab::new(1500, FragConfig::default());
    let whole = from_client(0x0a0a, 2992);
    // Duplicates of the first and last fragment: the datagram passes once.
    let cuts = [
        (0, 1000),
        (2000, 1000),
        (0, 1000),
        (1000, 1000),
        (2000, 1000),
    ];
    let actions = lab.send_all(LAN, fragments(&whole, &cuts));
    assert_eq!(actions[2], Action::Drop(DropReason::FragDuplicate));
    assert_eq!(
        actions[3],
        Action::Emitted {
            iface: WAN,
            frames: 3
        }
    );
    // The late duplicate starts a queue of its own, which never completes.
    assert_eq!(actions[4], Action::Consumed);
    assert_eq!(lab.emitted().len(), 3);
    // Overlapping fragments: the datagram is dropped whole.
    let whole = from_client(0x0b0b, 2992);
    let cuts = [(0, 1000), (992, 1008), (2000, 1000)];
    let actions = lab.send_all(LAN, fragments(&whole, &cuts));
    assert_eq!(actions[1], Action::Drop(DropReason::FragOverlap));
    assert_eq!(lab.emitted().len(), 0);
    let st = lab.worker.stats();
    assert_eq!(st.drop_count(DropReason::FragOverlap), 2);
    assert_eq!(lab.counter(Table::Nat, Hook::Postrouting, 0).0, 1);
}

#[test]
fn a_fragment_flood_fills_memory_and_nothing_passes_until_queues_expire() {
    let time = 2 * SEC;
    let mut lab = Lab::new(
        1500,
        FragConfig {
            time,
            ..FragConfig::default()
        },
    );
    // First fragments only, from the WAN, each its own datagram.
    let mut refused = 0;
    for id in 0..2000u16 {
        let f = fragments(&from_server(id, 3000), &[(0, 1480)]).remove(0);
        if lab.send(WAN, f) == Action::Drop(DropReason::FragMemFull) {
            refused += 1;
        }
    }
    let gw = Arc::clone(lab.worker.gateway());
    assert!(gw.frags.mem() <= FragConfig::DEFAULT.high_thresh + 3000);
    assert!((300..=400).contains(&refused), "{refused} refused");
    // A normal fragmented datagram right after does not pass ...
    let whole = from_client(0x3333, 2992);
    let actions = lab.send_all(LAN, fragments(&whole, &even_cuts(3000, 1480)));
    assert!(actions
        .iter()
        .all(|a| *a == Action::Drop(DropReason::FragMemFull)));
    // ... unfragmented traffic does ...
    assert!(matches!(
        lab.send(LAN, from_client(0x3334, 100)),
        Action::Forward { .. }
    ));
    // ... and once the queues expire, the datagram passes.
    lab.now += time;
    lab.worker.housekeeping(lab.now, &mut Sink::default());
    assert_eq!(gw.frags.mem(), 0);
    let actions = lab.send_all(LAN, fragments(&whole, &even_cuts(3000, 1480)));
    assert_eq!(
        actions[2],
        Action::Emitted {
            iface: WAN,
            frames: 3
        }
    );
    let st = lab.worker.stats();
    assert_eq!(st.drop_count(DropReason::FragTimeout), 2000 - refused);
    assert_eq!(st.reasm_fails, 2000 + 3);
}

#[test]
fn fragments_to_the_gateway_itself_are_reassembled_for_it() {
    let mut lab = Lab::new(1500, FragConfig::default());
    // A 4,000-byte ping: answered with a reply cut to the MTU.
    let ping = FrameSpec {
        dst_mac: LAN_MAC,
        src_mac: CLIENT_MAC,
        src: CLIENT,
        dst: GW_LAN,
        ttl: 64,
        tos: 0,
        id: 0x0909,
        df: false,
        l4: L4Spec::Icmp {
            ty: 8,
            code: 0,
            rest: [0, 1, 0, 1],
            payload: vec![0x5a; 3992],
        },
    }
    .build();
    let actions = lab.send_all(LAN, fragments(&ping, &even_cuts(4000, 1480)));
    assert_eq!(
        actions[2],
        Action::Emitted {
            iface: LAN,
            frames: 3
        }
    );
    let frames: Vec<Vec<u8>> = lab.emitted().into_iter().map(|(_, f)| f).collect();
    let s = decode(&reassemble(&frames));
    assert_eq!(
        (s.src, s.dst, s.sport),
        (GW_LAN, CLIENT, 0),
        "an echo reply"
    );
    assert_eq!(s.payload.len(), 3992);
    // DNS to the gateway (INPUT accepts udp 53): the whole datagram for
    // the host path.
    let dns = udp(
        CLIENT,
        GW_LAN,
        (LAN_MAC, CLIENT_MAC),
        (5353, 53),
        0x0808,
        2992,
    );
    let actions = lab.send_all(LAN, fragments(&dns, &even_cuts(3000, 1480)));
    assert_eq!(
        actions[2],
        Action::HostReassembled {
            iface: LAN,
            len: 14 + 3020
        }
    );
}

#[test]
fn fragments_the_gateway_host_sends_take_output_as_one_datagram() {
    let mut lab = Lab::new(1500, FragConfig::default());
    // The host's stack cut a 4,000-byte datagram to its device's MTU.
    let whole = udp(GW_WAN, SERVER, ([0; 6], [0; 6]), (5300, 9000), 0x0c0c, 3992);
    let cuts = even_cuts(4000, 1480);
    let mut actions = Vec::new();
    for f in fragments(&whole, &cuts) {
        lab.now += 1_000_000;
        let len = f.len() - 14;
        let mut buf = f;
        buf.resize(FRAME_SIZE, 0);
        actions.push(
            lab.worker
                .batch(&mut lab.sink)
                .from_host(lab.now, 1, &mut buf, len),
        );
    }
    assert_eq!(&actions[..2], &[Action::Consumed; 2]);
    assert_eq!(
        actions[2],
        Action::Emitted {
            iface: WAN,
            frames: 3
        }
    );
    let frames: Vec<Vec<u8>> = lab.emitted().into_iter().map(|(_, f)| f).collect();
    let fields: Vec<_> = frames.iter().map(|f| fragment_fields(f)).collect();
    assert_eq!(
        fields,
        [
            (0, true, 0x0c0c, 64, 1500),
            (1480, true, 0x0c0c, 64, 1500),
            (2960, false, 0x0c0c, 64, 1060)
        ]
    );
    assert_eq!(decode(&reassemble(&frames)).payload, decode(&whole).payload);
    // Tracked as one connection.
    let conns = lab.worker.gateway().conntrack.snapshot();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!((conns[0].orig.sport, conns[0].orig.dport), (5300, 9000));
}
