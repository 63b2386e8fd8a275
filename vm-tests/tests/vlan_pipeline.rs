//! 802.1Q VLAN interfaces in memory: the worker driver over in-memory
//! queues with the VLAN gateway of `memlab::VLAN_CONFIG` (lan0.10 and
//! lan0.20 on the trunk lan0, lan0 itself, wan0). Tags are removed on the
//! way in and written on the way out, for forwarded frames (slow and fast
//! path), generated ones (ARP answers and requests, held packets) and the
//! host path's; rules match `-i lan0.10`/`-o lan0.20`; frames of unknown
//! VLANs and malformed tags are counted and dropped.

use std::net::Ipv4Addr;

use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::log::LogEntry;
use xdpgw_dataplane::port::{MemHost, MemQueue};
use xdpgw_dataplane::rule::{Hook, Log, Table};
use xdpgw_dataplane::worker::{Driver, Worker};
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::memlab::*;

/// Ports.
const TRUNK: usize = 0;
const WAN: usize = 1;
/// Interfaces (and host path devices).
const V10: u8 = 0;
const V20: u8 = 1;
const WAN_IF: u8 = 2;
const MS: u64 = 1_000_000;

/// Routing between VLANs 10 and 20 one way, NAT to the WAN.
const RULES: &str = xdpgw_vm_tests::memlab::VLAN_RULES;

type Logs = Vec<(Option<Log>, LogEntry)>;

struct Lab {
    d: Driver<MemQueue, MemHost>,
    logs: Logs,
    now: u64,
}

impl Lab {
    fn new() -> Lab {
        let gw = vlan_gateway(RULES);
        gw.neigh.learn(WAN_IF, UPSTREAM, UPSTREAM_MAC);
        Lab {
            d: Driver::new(
                Worker::new(gw, 5),
                vec![MemQueue::new(2)],
                Some(MemHost::new(4)),
            ),
            logs: Logs::new(),
            now: 0,
        }
    }

    /// `frames` arrive (port, frame); one round; what was sent.
    fn round(&mut self, frames: &[(usize, Vec<u8>)]) -> Vec<(usize, Vec<u8>)> {
        for (port, f) in frames {
            self.d.queues_mut()[0].arrive(*port, f);
        }
        self.now += MS;
        self.d.round(self.now, &mut self.logs);
        self.d.queues_mut()[0].take_sent()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.d.worker().stats().drop_count(r)
    }
}

fn udp_frame(dst_mac: Mac, src_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    FrameSpec {
        dst_mac,
        src_mac,
        src,
        dst,
        ttl: 64,
        tos: 0,
        id: 1,
        df: true,
        l4: L4Spec::Udp {
            sport,
            dport: 53,
            payload: b"vlan".to_vec(),
        },
    }
    .build()
}

/// The one frame sent: its port, VLAN and untagged bytes.
fn one(sent: Vec<(usize, Vec<u8>)>) -> (usize, Option<u16>, Vec<u8>) {
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (port, f) = &sent[0];
    let (vid, f) = untagged(f);
    (*port, vid, f)
}

/// An ARP answer's sender (MAC, IPv4).
fn arp_sender(f: &[u8], op: u16) -> (Mac, Ipv4Addr) {
    assert_eq!(f[12..14], [0x08, 0x06], "ARP");
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), op);
    (
        f[22..28].try_into().expect("6"),
        Ipv4Addr::new(f[28], f[29], f[30], f[31]),
    )
}

#[test]
fn arp_is_answered_in_each_vlan_and_on_the_trunk_itself() {
    let mut lab = Lab::new();
    for (vid, mac, ip, gw) in [
        (Some(10), V10_MAC, V10_CLIENT, GW_V10),
        (Some(20), V20_MAC, V20_CLIENT, GW_V20),
        (None, CLIENT_MAC, CLIENT, GW_LAN),
    ] {
        let req = arp_request(mac, ip, gw);
        let req = vid.map_or(req.clone(), |v| tagged(&req, v));
        let (port, got_vid, reply) = one(lab.round(&[(TRUNK, req)]));
        assert_eq!((port, got_vid), (TRUNK, vid));
        assert_eq!(arp_sender(&reply, 2), (LAN_MAC, gw));
        assert_eq!(reply[..6], mac);
    }
    // A priority tag (VLAN 0) is the trunk itself, as in Linux.
    let req = tagged(&arp_request(CLIENT_MAC, CLIENT, GW_LAN), 0x6000);
    let (port, vid, reply) = one(lab.round(&[(TRUNK, req)]));
    assert_eq!((port, vid), (TRUNK, None));
    assert_eq!(arp_sender(&reply, 2), (LAN_MAC, GW_LAN));
}

#[test]
fn routes_between_vlans_by_their_rules_and_nats_to_the_wan() {
    let mut lab = Lab::new();
    // VLAN 10 to VLAN 20 (allowed by -i lan0.10 -o lan0.20): the next hop
    // is resolved in VLAN 20 (a tagged ARP request, generated), the held
    // datagram leaves tagged 20 once answered.
    let out = udp_frame(LAN_MAC, V10_MAC, V10_CLIENT, V20_CLIENT, 40000);
    let (port, vid, req) = one(lab.round(&[(TRUNK, tagged(&out, 10))]));
    assert_eq!((port, vid), (TRUNK, Some(20)));
    assert_eq!(arp_sender(&req, 1), (LAN_MAC, GW_V20));
    let mut answer = arp_request(V20_MAC, V20_CLIENT, GW_V20);
    answer[..6].copy_from_slice(&LAN_MAC);
    answer[21] = 2;
    answer[32..38].copy_from_slice(&LAN_MAC);
    let (port, vid, f) = one(lab.round(&[(TRUNK, tagged(&answer, 20))]));
    assert_eq!((port, vid), (TRUNK, Some(20)));
    let s = decode(&f);
    assert_eq!(
        (s.src, s.dst, s.dst_mac, s.src_mac, s.ttl),
        (V10_CLIENT, V20_CLIENT, V20_MAC, LAN_MAC, 63)
    );

    // The reply (ESTABLISHED) goes back tagged 10; a new connection from
    // VLAN 20 to VLAN 10 meets FORWARD's policy.
    lab.d
        .worker()
        .gateway()
        .neigh
        .learn(V10, V10_CLIENT, V10_MAC);
    let mut back = udp_frame(LAN_MAC, V20_MAC, V20_CLIENT, V10_CLIENT, 53);
    back[36..38].copy_from_slice(&40000u16.to_be_bytes());
    fix_udp(&mut back);
    let (port, vid, f) = one(lab.round(&[(TRUNK, tagged(&back, 20))]));
    assert_eq!((port, vid), (TRUNK, Some(10)));
    assert_eq!(decode(&f).dst_mac, V10_MAC);
    let new = udp_frame(LAN_MAC, V20_MAC, V20_CLIENT, V10_CLIENT, 40001);
    assert!(lab.round(&[(TRUNK, tagged(&new, 20))]).is_empty());
    assert_eq!(lab.drops(DropReason::PolicyDrop), 1);

    // VLAN 10 to the WAN: MASQUERADEd, untagged on wan0; the replies come
    // back tagged 10, on the fast path after the first.
    let out = udp_frame(LAN_MAC, V10_MAC, V10_CLIENT, FAR, 40002);
    let (port, vid, f) = one(lab.round(&[(TRUNK, tagged(&out, 10))]));
    assert_eq!((port, vid), (WAN, None));
    let s = decode(&f);
    assert_eq!((s.src, s.dst, s.dst_mac), (GW_WAN, FAR, UPSTREAM_MAC));
    let fast_before = lab.d.worker().stats().fast_path;
    for _ in 0..3 {
        let mut reply = udp_frame(WAN_MAC, UPSTREAM_MAC, FAR, GW_WAN, 53);
        reply[36..38].copy_from_slice(&s.sport.to_be_bytes());
        fix_udp(&mut reply);
        let (port, vid, f) = one(lab.round(&[(WAN, reply)]));
        assert_eq!((port, vid), (TRUNK, Some(10)));
        let r = decode(&f);
        assert_eq!(
            (r.src, r.dst, r.dport, r.dst_mac),
            (FAR, V10_CLIENT, 40002, V10_MAC)
        );
    }
    assert!(
        lab.d.worker().stats().fast_path > fast_before,
        "replies took the fast path"
    );
    // The rules' counters: -i lan0.10 -o lan0.20 matched once, -i lan0+
    // -o wan0 once.
    let (rules, st) = lab.d.worker().rules();
    let forward = rules
        .table(Table::Filter)
        .and_then(|t| t.hook_chain(Hook::Forward))
        .expect("FORWARD");
    let count = |k: usize| st.counter(forward.rules[k].counter).0;
    assert_eq!((count(1), count(2)), (1, 1));
}

#[test]
fn host_path_devices_per_vlan() {
    let mut lab = Lab::new();
    lab.d
        .worker()
        .gateway()
        .neigh
        .learn(V20, V20_CLIENT, V20_MAC);
    let q = udp_frame(LAN_MAC, V20_MAC, V20_CLIENT, GW_V20, 40000);
    assert!(lab.round(&[(TRUNK, tagged(&q, 20))]).is_empty());
    let host = lab.d.host_mut().expect("host path");
    let (dev, packet) = host.delivered.remove(0);
    assert_eq!(dev, usize::from(V20), "lan0.20's device");
    assert_eq!(packet[12..16], V20_CLIENT.octets());
    let mut answer = udp_frame([0; 6], [0; 6], GW_V20, V20_CLIENT, 53);
    answer[36..38].copy_from_slice(&40000u16.to_be_bytes());
    fix_udp(&mut answer);
    host.host_sends(usize::from(V20), &answer[14..]);
    let (port, vid, f) = one(lab.round(&[]));
    assert_eq!((port, vid), (TRUNK, Some(20)));
    let s = decode(&f);
    assert_eq!(
        (s.src, s.dst, s.dst_mac, s.src_mac),
        (GW_V20, V20_CLIENT, V20_MAC, LAN_MAC)
    );
}

#[test]
fn unknown_vlans_and_malformed_tags_are_counted_and_dropped() {
    let mut lab = Lab::new();
    let arp = arp_request(V10_MAC, V10_CLIENT, GW_V10);
    let mut truncated = tagged(&arp, 10);
    truncated.truncate(17);
    let sent = lab.round(&[
        (TRUNK, tagged(&arp, 30)),
        (WAN, tagged(&arp, 10)),
        (TRUNK, truncated),
        (TRUNK, tagged(&tagged(&arp, 10), 10)),
    ]);
    assert!(sent.is_empty(), "{sent:?}");
    // A second tag inside VLAN 10 is an unknown VLAN too (no stacked
    // VLANs).
    assert_eq!(lab.drops(DropReason::VlanUnknown), 3);
    assert_eq!(lab.drops(DropReason::EthTruncated), 1);
    assert_eq!(lab.d.worker().stats().rx, 4);
}

/// A gateway without VLAN interfaces (conf/gateway.toml): a priority tag
/// (VLAN 0) is removed and the frame is the interface's own, as in Linux;
/// other tags are unknown VLANs.
#[test]
fn without_vlan_interfaces_priority_tags_are_removed_and_vlans_unknown() {
    let gw = gateway(&conf_rules());
    let mut d: Driver<MemQueue, MemHost> =
        Driver::new(Worker::new(gw, 1), vec![MemQueue::new(2)], None);
    let mut logs = Logs::new();
    let arp = arp_request(CLIENT_MAC, CLIENT, GW_LAN);
    d.queues_mut()[0].arrive(0, &tagged(&arp, 0x2000));
    d.queues_mut()[0].arrive(0, &tagged(&arp, 10));
    d.queues_mut()[0].arrive(0, &tagged(&tagged(&arp, 0), 0));
    d.round(MS, &mut logs);
    let (port, vid, reply) = one(d.queues_mut()[0].take_sent());
    assert_eq!((port, vid), (0, None));
    assert_eq!(arp_sender(&reply, 2), (LAN_MAC, GW_LAN));
    assert_eq!(d.worker().stats().drop_count(DropReason::VlanUnknown), 2);
}

/// Recomputes the UDP checksum of a frame built by `FrameSpec` after its
/// ports were changed.
fn fix_udp(f: &mut [u8]) {
    f[40] = 0;
    f[41] = 0;
    let mut sum: u32 = 0;
    for c in f[26..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    let len = f.len() - 34;
    sum += 17 + len as u32;
    for c in f[34..].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    f[40..42].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever arrives on the trunk or the WAN, tagged or not: nothing
    /// panics, every frame is counted received once, and whatever leaves
    /// fits a UMEM frame, tagged only on the trunk with its VLANs.
    #[test]
    fn any_frame_is_counted_never_a_panic(
        frames in proptest::collection::vec(
            (0usize..3, proptest::option::of(0u16..0x2000),
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)),
            1..8),
    ) {
        let mut lab = Lab::new();
        let mut arrived = Vec::new();
        for (port, tag, bytes) in &frames {
            let mut f = bytes.clone();
            // Often addressed to the gateway, as an ARP or IPv4 frame.
            if f.len() >= 14 {
                f[..6].copy_from_slice(&LAN_MAC);
                f[12] = 0x08;
                f[13] = if f[13] & 1 == 0 { 0x00 } else { 0x06 };
            }
            let f = match tag {
                Some(t) if f.len() >= 12 => tagged(&f, *t),
                _ => f,
            };
            arrived.push((*port, f));
        }
        let sent = lab.round(&arrived);
        proptest::prop_assert_eq!(lab.d.worker().stats().rx, frames.len() as u64);
        for (port, f) in sent {
            proptest::prop_assert!(f.len() <= xdpgw_dataplane::pipeline::FRAME_SIZE);
            let (vid, _) = untagged(&f);
            match port {
                TRUNK => proptest::prop_assert!(matches!(vid, None | Some(10) | Some(20))),
                WAN => proptest::prop_assert_eq!(vid, None),
                _ => proptest::prop_assert!(false, "sent to port {}", port),
            }
        }
    }
}
