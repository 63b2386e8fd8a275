use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::sync::wire::{messages, msg_type};

const S: u64 = 1_000_000_000;

fn entry(n: u16) -> SyncedCt {
    SyncedCt {
        ports: Some((10_000 + n, 80)),
        status: Some(0x19e),
        tcp_state: Some(3),
        timeout: Some(300),
        snat: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))),
        spat: Some(61_000 + n),
        ..SyncedCt::new(
            IpAddr::V4(Ipv4Addr::new(192, 168, 10, 2)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254)),
            6,
        )
    }
}

fn pair(mode: Mode) -> (Session, Session) {
    let cfg = SessionConfig::new(mode, 1500);
    (Session::new(cfg, 1000, 0), Session::new(cfg, 5000, 0))
}

/// Delivers `from`'s datagrams to `to` (those `drop` selects are lost);
/// what `to` received.
fn deliver(
    from: &mut Session,
    to: &mut Session,
    now: u64,
    drop: impl Fn(usize) -> bool,
) -> Vec<Received> {
    let mut got = Vec::new();
    for (i, d) in from.flush(now).iter().enumerate() {
        if !drop(i) {
            to.receive(d, &mut got);
        }
    }
    got
}

fn ports(r: &[Received]) -> Vec<u16> {
    r.iter()
        .filter_map(|r| match r {
            Received::Ct(_, ct) => ct.ports.map(|p| p.0 - 10_000),
            Received::ResyncRequested => None,
        })
        .collect()
}

#[test]
fn a_storm_of_entries_goes_in_few_full_datagrams() {
    let (mut a, _) = pair(Mode::Notrack);
    for n in 0..1000 {
        a.send_ct(CtKind::New, &entry(n));
    }
    let ds = a.flush(0);
    // 76 bytes a message, 1472 a datagram: 19 a datagram.
    assert_eq!(ds.len(), 1000usize.div_ceil(1472 / 76));
    assert!(ds.iter().all(|d| d.len() <= 1472));
    let n: usize = ds.iter().map(|d| messages(d).count()).sum();
    assert_eq!(n, 1000);
    assert_eq!(a.counters.datagrams_sent, ds.len() as u64);
}

/// The HELLO handshake both ways (keep-alives): until a side has its
/// HELLO_BACK, the other takes each of its messages as a fresh start and
/// sees no gaps.
fn handshake(a: &mut Session, b: &mut Session) -> u32 {
    let mut none = Vec::new();
    for k in 1..=3 {
        a.tick(2 * k * S);
        for d in a.flush(2 * k * S) {
            b.receive(&d, &mut none);
        }
        b.tick(2 * k * S);
        for d in b.flush(2 * k * S) {
            a.receive(&d, &mut none);
        }
    }
    assert!(none.is_empty());
    a.next_seq
}

#[test]
fn ftfw_asks_again_for_what_was_lost_and_gets_it() {
    let (mut a, mut b) = pair(Mode::Ftfw);
    let first = handshake(&mut a, &mut b);
    for n in 0..3 {
        a.send_ct(CtKind::New, &entry(n));
        let got = deliver(&mut a, &mut b, 0, |_| false);
        assert_eq!(ports(&got), vec![n]);
    }
    // The fourth is lost; the fifth shows the gap.
    a.send_ct(CtKind::New, &entry(3));
    assert!(deliver(&mut a, &mut b, 0, |_| true).is_empty());
    a.send_ct(CtKind::New, &entry(4));
    assert_eq!(ports(&deliver(&mut a, &mut b, 0, |_| false)), vec![4]);
    assert_eq!(b.counters.lost, 1);
    // b answers: ACK of 1000-1002, NACK of 1003.
    let answer = b.flush(0);
    let ctl: Vec<(u8, Option<(u32, u32)>)> = answer
        .iter()
        .flat_map(|d| messages(d).flatten().collect::<Vec<_>>())
        .map(|m| match m.body {
            Body::Ctl { range } => (m.hdr.flags & !(flag::HELLO | flag::HELLO_BACK), range),
            _ => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        ctl,
        vec![
            (flag::ACK, Some((first, first + 2))),
            (flag::NACK, Some((first + 3, first + 3)))
        ]
    );
    let mut got = Vec::new();
    for d in &answer {
        a.receive(d, &mut got);
    }
    assert!(got.is_empty());
    // The ACK emptied a's queue of the first three; the NACK resent the
    // fourth (under a new number).
    assert_eq!(a.counters.resent, 1);
    assert_eq!(ports(&deliver(&mut a, &mut b, 0, |_| false)), vec![3]);
    // At the next keep-alive b acknowledges the rest.
    b.tick(20 * S);
    let mut none = Vec::new();
    for d in b.flush(20 * S) {
        a.receive(&d, &mut none);
    }
    assert_eq!(a.unacknowledged(), 0);
}

#[test]
fn a_full_window_is_acknowledged_at_once() {
    let (mut a, mut b) = pair(Mode::Ftfw);
    for n in 0..300 {
        a.send_ct(CtKind::Update, &entry(n));
    }
    assert_eq!(deliver(&mut a, &mut b, 0, |_| false).len(), 300);
    let ack = b.flush(0);
    assert_eq!(ack.len(), 1);
    let m = messages(&ack[0]).next().expect("ack").expect("ok");
    assert_eq!(m.hdr.ty, msg_type::CTL);
    assert_eq!(
        m.body,
        Body::Ctl {
            range: Some((1000, 1299))
        }
    );
    let mut none = Vec::new();
    a.receive(&ack[0], &mut none);
    assert_eq!(a.unacknowledged(), 0);
}

#[test]
fn hello_until_hello_back_and_a_restarted_peer_is_accepted() {
    let (mut a, mut b) = pair(Mode::Ftfw);
    a.tick(2 * S);
    let d = a.flush(2 * S);
    let m = messages(&d[0]).next().expect("alive").expect("ok");
    assert_eq!(m.hdr.flags, flag::ALIVE | flag::HELLO);
    let mut got = Vec::new();
    b.receive(&d[0], &mut got);
    b.tick(4 * S);
    let back = b.flush(4 * S);
    let m = messages(&back[0]).next().expect("ack").expect("ok");
    // b acknowledges a's message and says hello back (and hello itself).
    assert_eq!(m.hdr.flags, flag::ACK | flag::HELLO | flag::HELLO_BACK);
    a.receive(&back[0], &mut got);
    a.send_ct(CtKind::New, &entry(0));
    let d = a.flush(4 * S);
    let m = messages(&d[0]).next().expect("data").expect("ok");
    assert_eq!(m.hdr.flags, flag::HELLO_BACK, "a's hello is done");
    b.receive(&d[0], &mut got);
    assert_eq!(ports(&got), vec![0]);
    // a restarts with an older sequence number: accepted for its HELLO.
    let mut a2 = Session::new(SessionConfig::new(Mode::Ftfw, 1500), 10, 0);
    a2.send_ct(CtKind::New, &entry(1));
    got.clear();
    for d in a2.flush(5 * S) {
        b.receive(&d, &mut got);
    }
    assert_eq!(ports(&got), vec![1]);
    // Without HELLO an older one is dropped.
    let mut old = Vec::new();
    wire::build_ct(&mut old, CtKind::New, 0, 5, &entry(2));
    got.clear();
    b.receive(&old, &mut got);
    assert!(got.is_empty());
    assert_eq!(b.counters.before, 1);
}

#[test]
fn the_daemons_first_messages_are_understood() {
    // conntrackd's ALIVE|HELLO, then a NATed UDP NEW (captured).
    let mut b = Session::new(SessionConfig::new(Mode::Ftfw, 1500), 7, 0);
    let alive = [0x1a, 0x30, 0, 8, 0x6b, 0x11, 0x6d, 0x5a];
    let mut got = Vec::new();
    b.receive(&alive, &mut got);
    assert!(got.is_empty());
    b.request_resync();
    let d = b.flush(0);
    let m = messages(&d[0]).next().expect("resync").expect("ok");
    assert_eq!(m.hdr.flags, flag::RESYNC | flag::HELLO | flag::HELLO_BACK);
    assert_eq!(
        m.body,
        Body::Ctl {
            range: Some((0, 0))
        }
    );
    let mut resync = Vec::new();
    let mut a = Session::new(SessionConfig::new(Mode::Notrack, 1500), 7, 0);
    a.receive(&d[0], &mut resync);
    assert_eq!(resync, vec![Received::ResyncRequested]);
}

#[test]
fn notrack_counts_losses_and_takes_everything() {
    let (mut a, mut b) = pair(Mode::Notrack);
    for n in 0..4 {
        a.send_ct(CtKind::New, &entry(n));
        let got = deliver(&mut a, &mut b, 0, |_| n == 1);
        assert_eq!(got.len(), usize::from(n != 1));
    }
    assert_eq!(b.counters.lost, 1);
    assert!(b.flush(0).is_empty(), "NOTRACK sends no acknowledgements");
    assert_eq!(a.unacknowledged(), 0);
}

#[test]
fn garbage_is_counted_not_taken() {
    let (_, mut b) = pair(Mode::Ftfw);
    let mut got = Vec::new();
    b.receive(&[0x10, 0, 0, 12, 0, 0, 0, 1, 0, 3, 0, 0], &mut got);
    b.receive(&[1, 2, 3], &mut got);
    assert!(got.is_empty());
    assert_eq!(b.counters.malformed, 2);
}
