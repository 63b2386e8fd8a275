//! The worker driver (`worker::Driver`, what `xdpgw run` runs per worker)
//! over in-memory queues and host path, with a gateway built from
//! conf/gateway.rules: forwarding out of the right interface, frames the
//! gateway generates sent after the batch, the host path both ways, LOG
//! entries handed to the sink, and the credit round ended when the worker
//! goes idle.

use std::net::Ipv4Addr;

use xdpgw_dataplane::drop::DropReason;
use xdpgw_dataplane::log::LogEntry;
use xdpgw_dataplane::port::{MemHost, MemQueue, NoHost};
use xdpgw_dataplane::rule::Log;
use xdpgw_dataplane::worker::{Driver, Worker, BATCH};
use xdpgw_vm_tests::frames::*;
use xdpgw_vm_tests::memlab::{self, *};

const LAN: usize = 0;
const WAN: usize = 1;
const MS: u64 = 1_000_000;

type Logs = Vec<(Option<Log>, LogEntry)>;

fn worker() -> Worker {
    let gw = memlab::gateway(&memlab::conf_rules());
    gw.neigh.learn(0, CLIENT, CLIENT_MAC);
    gw.neigh.learn(1, SERVER, UPSTREAM_MAC);
    Worker::new(gw, 3)
}

fn frame(dst_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, l4: L4Spec) -> Vec<u8> {
    FrameSpec {
        dst_mac,
        src_mac: if dst_mac == LAN_MAC {
            CLIENT_MAC
        } else {
            UPSTREAM_MAC
        },
        src,
        dst,
        ttl,
        tos: 0,
        id: 7,
        df: false,
        l4,
    }
    .build()
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4Spec {
    L4Spec::Udp {
        sport,
        dport,
        payload: payload.to_vec(),
    }
}

fn syn(sport: u16, dport: u16) -> L4Spec {
    L4Spec::Tcp {
        sport,
        dport,
        seq: 100,
        ack: 0,
        flags: TCP_SYN,
        window: 64240,
        syn_options: false,
        payload: Vec::new(),
    }
}

#[test]
fn a_round_forwards_generates_and_reaches_the_host() {
    let mut d = Driver::new(worker(), vec![MemQueue::new(2)], Some(MemHost::new(2)));
    let mut logs = Logs::new();
    fn q(d: &mut Driver<MemQueue, MemHost>) -> &mut MemQueue {
        &mut d.queues_mut()[0]
    }

    // A UDP datagram out (MASQUERADE), the reply back, and a datagram with
    // TTL 1 (answered with time exceeded): one round.
    q(&mut d).arrive(
        LAN,
        &frame(LAN_MAC, CLIENT, SERVER, 64, udp(41000, 53, b"q")),
    );
    q(&mut d).arrive(
        LAN,
        &frame(LAN_MAC, CLIENT, SERVER, 1, udp(41001, 53, b"t")),
    );
    q(&mut d).arrive(
        WAN,
        &frame(WAN_MAC, SERVER, GW_WAN, 64, udp(53, 41000, b"a")),
    );
    let r = d.round(10 * MS, &mut logs);
    assert_eq!(r.received, 3);
    assert!(!r.idle);
    let sent = q(&mut d).take_sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    // Forwarded frames first (the batch), the generated one after it.
    let out = decode(&sent[0].1);
    assert_eq!(sent[0].0, WAN);
    assert_eq!((out.src, out.sport, out.dst), (GW_WAN, 41000, SERVER));
    let back = decode(&sent[1].1);
    assert_eq!(sent[1].0, LAN);
    assert_eq!(
        (back.dst, back.dport, back.dst_mac),
        (CLIENT, 41000, CLIENT_MAC)
    );
    let err = decode(&sent[2].1);
    assert_eq!(sent[2].0, LAN);
    assert_eq!(
        (err.proto, err.sport, err.dst),
        (1, 11, CLIENT),
        "time exceeded"
    );
    assert_eq!(d.worker().stats().forwarded, 2);
    assert_eq!(d.worker().stats().emitted, 1);

    // SSH to the gateway is the host's: delivered through the host path;
    // the host's answer goes out of lan0.
    q(&mut d).arrive(LAN, &frame(LAN_MAC, CLIENT, GW_LAN, 64, syn(42000, 22)));
    d.round(11 * MS, &mut logs);
    let host = d.host_mut().expect("a host path");
    assert_eq!(host.delivered.len(), 1);
    let (dev, packet) = host.delivered.remove(0);
    assert_eq!(dev, LAN);
    assert_eq!(
        &packet[12..16],
        &CLIENT.octets(),
        "the IPv4 packet, as it arrived"
    );
    let answer = FrameSpec {
        dst_mac: [0; 6],
        src_mac: [0; 6],
        src: GW_LAN,
        dst: CLIENT,
        ttl: 64,
        tos: 0,
        id: 1,
        df: true,
        l4: L4Spec::Tcp {
            sport: 22,
            dport: 42000,
            seq: 9,
            ack: 101,
            flags: TCP_SYN | TCP_ACK,
            window: 64240,
            syn_options: false,
            payload: Vec::new(),
        },
    }
    .build();
    host.host_sends(LAN, &answer[14..]);
    let r = d.round(12 * MS, &mut logs);
    assert_eq!(r.received, 1, "the host's packet");
    let sent = q(&mut d).take_sent();
    assert_eq!(sent.len(), 1);
    let s = decode(&sent[0].1);
    assert_eq!(
        (sent[0].0, s.src, s.dst, s.dst_mac, s.src_mac),
        (LAN, GW_LAN, CLIENT, CLIENT_MAC, LAN_MAC)
    );
    assert_eq!(d.worker().stats().from_host, 1);
    assert_eq!(d.worker().stats().host, 1);

    // A new connection from outside: logged (the sink gets the entry with
    // its rule's prefix) and dropped.
    q(&mut d).arrive(WAN, &frame(WAN_MAC, SERVER, CLIENT, 64, syn(5555, 23)));
    d.round(13 * MS, &mut logs);
    assert_eq!(logs.len(), 1);
    let (target, e) = &logs[0];
    assert_eq!(
        target.as_ref().map(|l| l.prefix.as_str()),
        Some("xdpgw drop: ")
    );
    assert_eq!(e.in_iface, Some(WAN as u8));
    assert_eq!(d.worker().stats().drop_count(DropReason::FilterDrop), 1);
    assert!(q(&mut d).take_sent().is_empty());
    assert_eq!(d.worker().stats().rx, 5, "frames from the queues");
}

#[test]
fn a_round_takes_a_batch_per_interface_and_the_rest_next_round() {
    let mut d: Driver<MemQueue, NoHost> = Driver::new(worker(), vec![MemQueue::new(2)], None);
    let mut logs = Logs::new();
    let f = frame(LAN_MAC, CLIENT, SERVER, 64, udp(41000, 53, b"x"));
    for _ in 0..BATCH + 10 {
        d.queues_mut()[0].arrive(LAN, &f);
    }
    assert_eq!(d.round(MS, &mut logs).received, BATCH);
    assert_eq!(d.round(2 * MS, &mut logs).received, 10);
    assert_eq!(d.queues_mut()[0].take_sent().len(), BATCH + 10);
    // Without a host path, what INPUT accepts for the host is dropped.
    d.queues_mut()[0].arrive(LAN, &frame(LAN_MAC, CLIENT, GW_LAN, 64, syn(42000, 22)));
    d.round(3 * MS, &mut logs);
    assert_eq!(
        d.worker().stats().drop_count(DropReason::HostUnsupported),
        1
    );
}

/// A steady UDP stream's packets are credited to conntrack in rounds: the
/// table catches up when the worker goes idle, not before.
#[test]
fn going_idle_ends_the_credit_round() {
    let mut d = Driver::new(worker(), vec![MemQueue::new(2)], None::<NoHost>);
    let mut logs = Logs::new();
    let send = |d: &mut Driver<MemQueue>, logs: &mut Logs, f: &[u8], iface: usize, now: u64| {
        d.queues_mut()[0].arrive(iface, f);
        d.round(now, logs);
    };
    let out = frame(LAN_MAC, CLIENT, SERVER, 64, udp(41010, 5001, b"a"));
    let back = frame(WAN_MAC, SERVER, GW_WAN, 64, udp(5001, 41010, b"b"));
    send(&mut d, &mut logs, &out, LAN, 100 * MS);
    send(&mut d, &mut logs, &back, WAN, 200 * MS);
    // Seconds on, a packet makes the stream ASSURED; the next ones take
    // the fast path, the second and third credited.
    send(&mut d, &mut logs, &out, LAN, 3_300 * MS);
    for _ in 0..3 {
        d.queues_mut()[0].arrive(LAN, &out);
    }
    let last = 3_400 * MS;
    d.round(last, &mut logs);
    let packets = |d: &Driver<MemQueue>| d.worker().gateway().conntrack.snapshot()[0].packets[0];
    assert_eq!(packets(&d), 3, "two credited, not yet counted");
    let mut rounds = 0;
    loop {
        rounds += 1;
        if d.round(last, &mut logs).idle {
            break;
        }
        assert!(rounds < 1000, "never idle");
    }
    assert!(rounds > 1, "idle only after empty rounds");
    assert_eq!(packets(&d), 5, "the credits reached conntrack");
    assert_eq!(d.worker().stats().fast_path, 3);
}
