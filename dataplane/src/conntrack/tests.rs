//! Conntrack behaviour on simulated time: TCP conversations, UDP, ICMP,
//! confirm/early drop, gc, concurrency, and the /proc format.

use std::net::Ipv4Addr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use proptest::prelude::*;

use super::tcp::flag::{ACK, FIN, PSH, RST, SYN};
use super::*;
use crate::flow::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

const SEC: Nanos = NANOS_PER_SEC;

fn cfg(max_entries: usize, shards: usize) -> ConntrackConfig {
    ConntrackConfig {
        max_entries,
        shards,
        ..ConntrackConfig::for_memory(8 << 30)
    }
}

fn ct(max_entries: usize, shards: usize) -> Conntrack {
    Conntrack::new(cfg(max_entries, shards))
}

fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> Tuple {
    Tuple {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
        sport,
        dport,
        proto,
    }
}

fn seg(flags: u8, seq: u32, ack: u32, window: u16, payload_len: u32) -> TcpSeg {
    TcpSeg {
        flags,
        seq,
        ack,
        window,
        payload_len,
        wscale: None,
        sack_perm: false,
    }
}

fn tcp_pkt(t: Tuple, s: TcpSeg) -> PacketMeta {
    PacketMeta {
        tuple: t,
        len: u16::try_from(40 + s.payload_len).unwrap_or(u16::MAX),
        tcp: Some(s),
        icmp: None,
    }
}

fn udp_pkt(t: Tuple) -> PacketMeta {
    PacketMeta {
        tuple: t,
        len: 60,
        tcp: None,
        icmp: None,
    }
}

fn icmp_pkt(
    src: [u8; 4],
    dst: [u8; 4],
    ty: u8,
    code: u8,
    id: u16,
    inner: Option<Tuple>,
) -> PacketMeta {
    let is_error = matches!(ty, 3 | 4 | 5 | 11 | 12);
    let id = if is_error { 0 } else { id };
    PacketMeta {
        tuple: tuple(src, id, dst, id, IPPROTO_ICMP),
        len: 84,
        tcp: None,
        icmp: Some(IcmpMeta {
            ty,
            code,
            is_query: !is_error,
            is_error,
            inner,
        }),
    }
}

#[track_caller]
fn existing(tr: Track) -> (EntryRef, Dir, CtState, Snapshot) {
    match tr {
        Track::Existing {
            entry,
            dir,
            state,
            snap,
        } => (entry, dir, state, snap),
        other => panic!("expected Existing, got {other:?}"),
    }
}

#[track_caller]
fn pending(tr: Track) -> Pending {
    match tr {
        Track::New(p) => p,
        other => panic!("expected New, got {other:?}"),
    }
}

#[track_caller]
fn invalid(tr: Track) -> (InvalidReason, Option<TcpState>) {
    match tr {
        Track::Invalid { reason, tcp_state } => (reason, tcp_state),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[track_caller]
fn confirm(c: &Conntrack, now: Nanos, p: &Pending) -> EntryRef {
    match c.confirm(now, p) {
        Ok(e) => e,
        Err(e) => panic!("confirm failed: {e}"),
    }
}

/// One step of a TCP conversation and what the entry must look like after.
struct Step {
    dir: Dir,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u32,
    state: TcpState,
    ct_state: CtState,
    timeout_s: u64,
}

const C: [u8; 4] = [10, 0, 0, 1];
const SRV: [u8; 4] = [192, 0, 2, 1];

/// SYN, SYN/ACK, ACK: returns the entry and the conversation's tuple.
fn handshake(c: &Conntrack, now: Nanos, sport: u16) -> (EntryRef, Tuple) {
    let t = tuple(C, sport, SRV, 80, IPPROTO_TCP);
    let p = pending(c.track(now, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    let e = confirm(c, now, &p);
    existing(c.track(
        now,
        &tcp_pkt(t.invert(), seg(SYN | ACK, 5000, 1001, 65160, 0)),
    ));
    let (_, _, _, snap) = existing(c.track(now, &tcp_pkt(t, seg(ACK, 1001, 5001, 502, 0))));
    assert_eq!(snap.tcp_state, TcpState::Established);
    assert_ne!(snap.status & status::ASSURED, 0);
    (e, t)
}

#[test]
fn tcp_full_conversation() {
    let c = ct(1024, 16);
    let t = tuple(C, 40000, SRV, 80, IPPROTO_TCP);
    let mut now = 100 * SEC;

    // SYN: a new connection, SYN_SENT, 120 s once confirmed.
    let syn = TcpSeg {
        wscale: Some(7),
        sack_perm: true,
        ..seg(SYN, 1000, 0, 64240, 0)
    };
    let p = pending(c.track(now, &tcp_pkt(t, syn)));
    assert_eq!(p.orig, t);
    assert_eq!(p.reply, t.invert());
    assert_eq!(p.tcp_state(), Some(TcpState::SynSent));
    assert_eq!(p.timeout(), 120 * SEC);
    assert!(!c.tuple_in_use(&t));
    let e = confirm(&c, now, &p);
    assert!(c.tuple_in_use(&t) && c.tuple_in_use(&t.invert()));
    let s = c.get(e).expect("live");
    assert_eq!(s.status, status::CONFIRMED);
    assert_eq!(s.tcp_state, TcpState::SynSent);
    assert_eq!(s.expires, now + 120 * SEC);
    assert_eq!((s.packets, s.bytes), ([1, 0], [40, 0]));

    // SYN/ACK: reply direction (ESTABLISHED as Linux's ctinfo), SYN_RECV.
    now += SEC / 100;
    let synack = TcpSeg {
        wscale: Some(7),
        sack_perm: true,
        ..seg(SYN | ACK, 5000, 1001, 65160, 0)
    };
    let (e2, dir, st, s) = existing(c.track(now, &tcp_pkt(t.invert(), synack)));
    assert_eq!((e2, dir, st), (e, Dir::Reply, CtState::Established));
    assert_eq!(s.tcp_state, TcpState::SynRecv);
    assert_eq!(s.status, status::CONFIRMED | status::SEEN_REPLY);
    assert_eq!(s.expires, now + 60 * SEC);
    assert_eq!(s.packets, [1, 1]);

    let steps = [
        // Handshake ACK: ESTABLISHED and ASSURED, 5 days.
        Step {
            dir: Dir::Original,
            flags: ACK,
            seq: 1001,
            ack: 5001,
            payload: 0,
            state: TcpState::Established,
            ct_state: CtState::Established,
            timeout_s: 432_000,
        },
        // Data in flight: the unacknowledged timeout (300 s).
        Step {
            dir: Dir::Original,
            flags: PSH | ACK,
            seq: 1001,
            ack: 5001,
            payload: 100,
            state: TcpState::Established,
            ct_state: CtState::Established,
            timeout_s: 300,
        },
        Step {
            dir: Dir::Reply,
            flags: PSH | ACK,
            seq: 5001,
            ack: 1101,
            payload: 200,
            state: TcpState::Established,
            ct_state: CtState::Established,
            timeout_s: 300,
        },
        // All data acknowledged: back to 5 days.
        Step {
            dir: Dir::Original,
            flags: ACK,
            seq: 1101,
            ack: 5201,
            payload: 0,
            state: TcpState::Established,
            ct_state: CtState::Established,
            timeout_s: 432_000,
        },
        // Client closes.
        Step {
            dir: Dir::Original,
            flags: FIN | ACK,
            seq: 1101,
            ack: 5201,
            payload: 0,
            state: TcpState::FinWait,
            ct_state: CtState::Established,
            timeout_s: 120,
        },
        Step {
            dir: Dir::Reply,
            flags: ACK,
            seq: 5201,
            ack: 1102,
            payload: 0,
            state: TcpState::CloseWait,
            ct_state: CtState::Established,
            timeout_s: 60,
        },
        Step {
            dir: Dir::Reply,
            flags: FIN | ACK,
            seq: 5201,
            ack: 1102,
            payload: 0,
            state: TcpState::LastAck,
            ct_state: CtState::Established,
            timeout_s: 30,
        },
        Step {
            dir: Dir::Original,
            flags: ACK,
            seq: 1102,
            ack: 5202,
            payload: 0,
            state: TcpState::TimeWait,
            ct_state: CtState::Established,
            timeout_s: 120,
        },
    ];
    let mut pkts = [1u64, 1];
    for (i, step) in steps.iter().enumerate() {
        now += SEC / 100;
        let pt = if step.dir == Dir::Original {
            t
        } else {
            t.invert()
        };
        let win = if step.dir == Dir::Original { 502 } else { 509 };
        let tr = c.track(
            now,
            &tcp_pkt(pt, seg(step.flags, step.seq, step.ack, win, step.payload)),
        );
        let (e2, dir, st, s) = existing(tr);
        pkts[dir.index()] += 1;
        assert_eq!((e2, dir), (e, step.dir), "step {i}");
        assert_eq!(st, step.ct_state, "step {i}");
        assert_eq!(s.tcp_state, step.state, "step {i}");
        assert_eq!(s.expires, now + step.timeout_s * SEC, "step {i}: timeout");
        assert_eq!(
            s.status,
            status::CONFIRMED | status::SEEN_REPLY | status::ASSURED,
            "step {i}"
        );
        assert_eq!(s.packets, pkts, "step {i}");
    }
    let s = c.get(e).expect("live");
    assert_eq!(s.bytes, [40 * 6 + 100, 40 * 4 + 200]);
    assert_eq!(
        proc_line(&s, now),
        "ipv4     2 tcp      6 120 TIME_WAIT src=10.0.0.1 dst=192.0.2.1 sport=40000 dport=80 \
         src=192.0.2.1 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2"
    );

    // TIME_WAIT runs out: gc removes it.
    assert_eq!(c.gc(now + 119 * SEC, 1 << 20), 0);
    assert_eq!(c.gc(now + 120 * SEC, 1 << 20), 1);
    assert!(c.get(e).is_none());
    assert!(c.is_empty());
    c.check_invariants();
    let st = c.stats();
    assert_eq!((st.insert, st.found, st.expired, st.invalid), (1, 9, 1, 0));
}

#[test]
fn syn_on_time_wait_reopens() {
    let c = ct(1024, 16);
    let now = 10 * SEC;
    let (e, t) = handshake(&c, now, 40001);
    for (pt, s) in [
        (t, seg(FIN | ACK, 1001, 5001, 502, 0)),
        (t.invert(), seg(ACK, 5001, 1002, 509, 0)),
        (t.invert(), seg(FIN | ACK, 5001, 1002, 509, 0)),
        (t, seg(ACK, 1002, 5002, 502, 0)),
    ] {
        existing(c.track(now, &tcp_pkt(pt, s)));
    }
    assert_eq!(c.get(e).map(|s| s.tcp_state), Some(TcpState::TimeWait));

    // A new SYN from the client with the same ports: the old entry goes, the
    // SYN is NEW again.
    let p = pending(c.track(now + SEC, &tcp_pkt(t, seg(SYN, 90_000, 0, 64240, 0))));
    assert_eq!(p.tcp_state(), Some(TcpState::SynSent));
    assert!(c.get(e).is_none());
    assert_eq!(c.len(), 0);
    let e2 = confirm(&c, now + SEC, &p);
    assert_ne!(e2, e);
    assert_eq!(c.stats().deleted, 1);
    c.check_invariants();
}

#[test]
fn seed_incident_syn_with_old_session_in_table() {
    // An old SSH session 172.20.100.120:17045 -> .209:22 is still ESTABLISHED
    // in the table (its end was never seen).
    let c = ct(1024, 16);
    let now = 1000 * SEC;
    let cli = [172, 20, 100, 120];
    let srv = [172, 20, 100, 209];
    let t = tuple(cli, 17045, srv, 22, IPPROTO_TCP);
    let p = pending(c.track(now, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    let e = confirm(&c, now, &p);
    existing(c.track(
        now,
        &tcp_pkt(t.invert(), seg(SYN | ACK, 5000, 1001, 65160, 0)),
    ));
    existing(c.track(now, &tcp_pkt(t, seg(ACK, 1001, 5001, 502, 0))));

    // 1. The server side now opens a connection to the same ports (roles
    //    swapped): a SYN in the entry's reply direction is INVALID, and the
    //    reason says why and in which state.
    let tr = c.track(now + SEC, &tcp_pkt(t.invert(), seg(SYN, 777, 0, 64240, 0)));
    assert_eq!(tr.state(), CtState::Invalid);
    let (reason, state) = invalid(tr);
    assert_eq!(reason, InvalidReason::TcpInvalidTransition);
    assert_eq!(state, Some(TcpState::Established));
    assert_eq!(reason.name(), "tcp_invalid_transition");
    assert!(reason.text().contains("SYN from the responder"));
    assert_eq!(
        c.stats().invalid_count(InvalidReason::TcpInvalidTransition),
        1
    );

    // 2. The client reuses its source port: the SYN hits the old ESTABLISHED
    //    entry and is not NEW either. Linux ignores it (sIG) and lets it pass
    //    as ESTABLISHED, a `--ctstate NEW` rule does not see it.
    let tr = c.track(now + 2 * SEC, &tcp_pkt(t, seg(SYN, 424_242, 0, 64240, 0)));
    let (e2, dir, st, snap) = existing(tr);
    assert_eq!((e2, dir, st), (e, Dir::Original, CtState::Established));
    assert_eq!(snap.tcp_state, TcpState::Established);
    assert_eq!(c.stats().ignored, 1);

    // The server answers that SYN with a SYN/ACK: conntrack resyncs to the
    // new session (SYN_RECV), and the handshake completes.
    let (_, _, _, snap) = existing(c.track(
        now + 2 * SEC,
        &tcp_pkt(t.invert(), seg(SYN | ACK, 9000, 424_243, 65160, 0)),
    ));
    assert_eq!(snap.tcp_state, TcpState::SynRecv);
    let (_, _, _, snap) =
        existing(c.track(now + 2 * SEC, &tcp_pkt(t, seg(ACK, 424_243, 9001, 502, 0))));
    assert_eq!(snap.tcp_state, TcpState::Established);
    c.check_invariants();
}

#[test]
fn rst_closes_and_out_of_window_rst_is_invalid() {
    let c = ct(1024, 16);
    let now = SEC;
    let (e, t) = handshake(&c, now, 40002);

    // RST below what the client already acknowledged: INVALID.
    let tr = c.track(now, &tcp_pkt(t.invert(), seg(RST | ACK, 4000, 1001, 0, 0)));
    assert_eq!(
        invalid(tr),
        (InvalidReason::TcpInvalidRst, Some(TcpState::Established))
    );

    // The exact RST closes the entry: CLOSE, 10 s.
    let (_, dir, st, s) =
        existing(c.track(now, &tcp_pkt(t.invert(), seg(RST | ACK, 5001, 1001, 0, 0))));
    assert_eq!((dir, st), (Dir::Reply, CtState::Established));
    assert_eq!(s.tcp_state, TcpState::Close);
    assert_eq!(s.expires, now + 10 * SEC);
    assert!(c.get(e).is_some());
    assert_eq!(c.gc(now + 10 * SEC, 100), 1);
}

#[test]
fn syn_after_rst_reopens_only_from_the_resetting_side() {
    let c = ct(1024, 16);
    // The client resets, then reconnects with the same port: re-opened.
    let (e, t) = handshake(&c, SEC, 40020);
    let (_, _, _, s) = existing(c.track(SEC, &tcp_pkt(t, seg(RST | ACK, 1001, 5001, 0, 0))));
    assert_eq!(s.tcp_state, TcpState::Close);
    let p = pending(c.track(2 * SEC, &tcp_pkt(t, seg(SYN, 70_000, 0, 64240, 0))));
    assert!(c.get(e).is_none());
    confirm(&c, 2 * SEC, &p);

    // The server reset it: the client's new SYN is ignored on the CLOSE entry
    // (Linux lets it pass as ESTABLISHED) until the entry times out.
    let (e, t) = handshake(&c, SEC, 40021);
    existing(c.track(SEC, &tcp_pkt(t.invert(), seg(RST | ACK, 5001, 1001, 0, 0))));
    let (e2, _, st, s) = existing(c.track(2 * SEC, &tcp_pkt(t, seg(SYN, 70_000, 0, 64240, 0))));
    assert_eq!(
        (e2, st, s.tcp_state),
        (e, CtState::Established, TcpState::Close)
    );
    // The server's SYN/ACK to it resyncs the entry.
    let (_, _, _, s) = existing(c.track(
        2 * SEC,
        &tcp_pkt(t.invert(), seg(SYN | ACK, 8000, 70_001, 65160, 0)),
    ));
    assert_eq!(s.tcp_state, TcpState::SynRecv);
}

#[test]
fn identical_retransmissions_shorten_the_timeout() {
    let c = ct(1024, 16);
    let now = SEC;
    let (_, t) = handshake(&c, now, 40022);
    for (i, want) in [432_000, 432_000, 300].into_iter().enumerate() {
        let (_, _, _, s) = existing(c.track(now, &tcp_pkt(t, seg(ACK, 1001, 5001, 502, 0))));
        assert_eq!(s.expires, now + want * SEC, "retransmission {}", i + 1);
    }
}

#[test]
fn rst_answering_syn_deletes_unreplied_entry() {
    let c = ct(1024, 16);
    let t = tuple(C, 40003, SRV, 81, IPPROTO_TCP);
    let p = pending(c.track(SEC, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    let e = confirm(&c, SEC, &p);
    // Port closed: RST/ACK with seq 0 from the server.
    let (e2, dir, st, s) =
        existing(c.track(SEC, &tcp_pkt(t.invert(), seg(RST | ACK, 0, 1001, 0, 0))));
    assert_eq!((e2, dir, st), (e, Dir::Reply, CtState::Established));
    assert_eq!(s.tcp_state, TcpState::Close);
    assert!(c.get(e).is_none(), "deleted at once");
    assert!(!c.tuple_in_use(&t) && !c.tuple_in_use(&t.invert()));
    assert_eq!(c.len(), 0);
    c.check_invariants();
}

#[test]
fn out_of_window_segments_are_invalid() {
    let c = ct(1024, 16);
    let (_, t) = handshake(&c, SEC, 40004);
    // Data far beyond the server's window.
    let tr = c.track(
        SEC,
        &tcp_pkt(t, seg(PSH | ACK, 1001 + 10_000_000, 5001, 502, 100)),
    );
    assert_eq!(
        invalid(tr),
        (InvalidReason::TcpSeqOverWindow, Some(TcpState::Established))
    );
    // Acknowledging data the server never sent.
    let tr = c.track(SEC, &tcp_pkt(t, seg(ACK, 1001, 5001 + 100_000, 502, 0)));
    assert_eq!(
        invalid(tr),
        (InvalidReason::TcpAckOverWindow, Some(TcpState::Established))
    );
    // An old retransmission below the window is ignored, not invalid.
    let tr = c.track(
        SEC,
        &tcp_pkt(
            t,
            seg(PSH | ACK, 1001u32.wrapping_sub(200_000), 5001, 502, 100),
        ),
    );
    assert_eq!(existing(tr).2, CtState::Established);
    let st = c.stats();
    assert_eq!(st.invalid, 2);
    assert_eq!(st.ignored, 1);

    // With be_liberal only the RST check remains.
    let c = Conntrack::new(ConntrackConfig {
        tcp_be_liberal: true,
        ..cfg(1024, 16)
    });
    let (_, t) = handshake(&c, SEC, 40004);
    let tr = c.track(
        SEC,
        &tcp_pkt(t, seg(PSH | ACK, 1001 + 10_000_000, 5001, 502, 100)),
    );
    existing(tr);
}

#[test]
fn bad_flag_combinations_are_invalid() {
    let c = ct(1024, 16);
    let (e, t) = handshake(&c, SEC, 40005);
    for flags in [
        SYN | FIN,
        SYN | RST,
        FIN,
        0,
        SYN | FIN | ACK | PSH,
        RST | FIN,
    ] {
        let tr = c.track(SEC, &tcp_pkt(t, seg(flags, 1001, 5001, 502, 0)));
        assert_eq!(
            invalid(tr),
            (InvalidReason::TcpBadFlags, None),
            "flags {flags:#x}"
        );
        // Also without an entry.
        let other = tuple(C, 1, SRV, 2, IPPROTO_TCP);
        let tr = c.track(SEC, &tcp_pkt(other, seg(flags, 1, 0, 100, 0)));
        assert_eq!(invalid(tr).0, InvalidReason::TcpBadFlags);
    }
    assert_eq!(c.stats().invalid_count(InvalidReason::TcpBadFlags), 12);
    assert_eq!(c.get(e).map(|s| s.tcp_state), Some(TcpState::Established));

    // Segments that cannot open a connection.
    let other = tuple(C, 3, SRV, 4, IPPROTO_TCP);
    for flags in [SYN | ACK, FIN | ACK, RST, RST | ACK] {
        let tr = c.track(SEC, &tcp_pkt(other, seg(flags, 1, 1, 100, 0)));
        assert_eq!(
            invalid(tr),
            (InvalidReason::TcpNewInvalid, None),
            "flags {flags:#x}"
        );
    }
    // sIV in a state: an ACK from the client before the SYN/ACK.
    let t2 = tuple(C, 40006, SRV, 80, IPPROTO_TCP);
    let p = pending(c.track(SEC, &tcp_pkt(t2, seg(SYN, 1000, 0, 64240, 0))));
    confirm(&c, SEC, &p);
    let tr = c.track(SEC, &tcp_pkt(t2, seg(ACK, 1001, 1, 502, 0)));
    assert_eq!(
        invalid(tr),
        (InvalidReason::TcpInvalidTransition, Some(TcpState::SynSent))
    );
    // A header the pipeline did not pass.
    let tr = c.track(
        SEC,
        &PacketMeta {
            tcp: None,
            ..tcp_pkt(t2, seg(ACK, 0, 0, 0, 0))
        },
    );
    assert_eq!(invalid(tr).0, InvalidReason::MissingHeader);
}

#[test]
fn mid_stream_pickup() {
    let c = ct(1024, 16);
    let t = tuple(
        [172, 20, 100, 209],
        22,
        [172, 20, 100, 120],
        17045,
        IPPROTO_TCP,
    );
    let now = 50 * SEC;
    // An ACK with data, no entry: picked up as ESTABLISHED, 300 s while
    // unanswered (SEED's "296 ESTABLISHED ... [UNREPLIED]" entry).
    let p = pending(c.track(now, &tcp_pkt(t, seg(PSH | ACK, 777_000, 123_000, 1000, 48))));
    assert_eq!(p.tcp_state(), Some(TcpState::Established));
    assert_eq!(p.timeout(), 300 * SEC);
    let e = confirm(&c, now, &p);
    let s = c.get(e).expect("live");
    assert_eq!(
        proc_line(&s, now + 4 * SEC),
        "ipv4     2 tcp      6 296 ESTABLISHED src=172.20.100.209 dst=172.20.100.120 sport=22 dport=17045 \
         [UNREPLIED] src=172.20.100.120 dst=172.20.100.209 sport=17045 dport=22 mark=0 zone=0 use=2"
    );
    // The other side answers: SEEN_REPLY, still 300 s (not yet ASSURED).
    let (_, dir, _, s) = existing(c.track(
        now + SEC,
        &tcp_pkt(t.invert(), seg(ACK, 123_000, 777_048, 500, 0)),
    ));
    assert_eq!(dir, Dir::Reply);
    assert_eq!(
        s.status & (status::SEEN_REPLY | status::ASSURED),
        status::SEEN_REPLY
    );
    // The next valid segment makes it ASSURED with the full timeout.
    let (_, _, st, s) = existing(c.track(
        now + 2 * SEC,
        &tcp_pkt(t, seg(ACK, 777_048, 123_000, 1000, 0)),
    ));
    assert_eq!(st, CtState::Established);
    assert_ne!(s.status & status::ASSURED, 0);
    assert_eq!(s.expires, now + 2 * SEC + 432_000 * SEC);

    // With pickup disabled the same ACK is INVALID.
    let c = Conntrack::new(ConntrackConfig {
        tcp_loose: false,
        ..cfg(1024, 16)
    });
    let tr = c.track(now, &tcp_pkt(t, seg(ACK, 777_000, 123_000, 1000, 0)));
    assert_eq!(invalid(tr), (InvalidReason::TcpNoSynForNew, None));
}

#[test]
fn syn_retransmission_does_not_refresh() {
    let c = ct(1024, 16);
    let t = tuple(C, 40007, SRV, 80, IPPROTO_TCP);
    let p = pending(c.track(0, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    let e = confirm(&c, 0, &p);
    let (_, _, st, s) = existing(c.track(3 * SEC, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    assert_eq!(st, CtState::New);
    assert_eq!(s.expires, 120 * SEC);
    assert_eq!(s.packets, [1, 0]);
    assert_eq!(c.get(e).map(|s| s.tcp_state), Some(TcpState::SynSent));
}

#[test]
fn udp_request_reply_timeouts_and_expiry() {
    let c = ct(1024, 16);
    let t = tuple(C, 5000, SRV, 53, IPPROTO_UDP);
    let now = 7 * SEC;
    let p = pending(c.track(now, &udp_pkt(t)));
    assert_eq!(p.timeout(), 30 * SEC);
    let e = confirm(&c, now, &p);
    let s = c.get(e).expect("live");
    assert_eq!(
        proc_line(&s, now),
        "ipv4     2 udp      17 30 src=10.0.0.1 dst=192.0.2.1 sport=5000 dport=53 [UNREPLIED] \
         src=192.0.2.1 dst=10.0.0.1 sport=53 dport=5000 mark=0 zone=0 use=2"
    );

    // Original direction again before any reply: still NEW.
    let (_, _, st, s) = existing(c.track(now + SEC / 10, &udp_pkt(t)));
    assert_eq!(st, CtState::New);
    assert_eq!(s.expires, now + SEC / 10 + 30 * SEC);

    // The reply: ESTABLISHED, SEEN_REPLY, but 30 s and not ASSURED (a lone
    // request/reply is not a stream).
    let (_, dir, st, s) = existing(c.track(now + SEC / 5, &udp_pkt(t.invert())));
    assert_eq!((dir, st), (Dir::Reply, CtState::Established));
    assert_eq!(s.status, status::CONFIRMED | status::SEEN_REPLY);
    assert_eq!(s.expires, now + SEC / 5 + 30 * SEC);

    // Still talking after 2 s: a stream, 120 s and ASSURED.
    let later = now + 3 * SEC;
    let (_, _, st, s) = existing(c.track(later, &udp_pkt(t)));
    assert_eq!(st, CtState::Established);
    assert_eq!(
        s.status,
        status::CONFIRMED | status::SEEN_REPLY | status::ASSURED
    );
    assert_eq!(s.expires, later + 120 * SEC);
    assert_eq!(s.packets, [3, 1]);

    // An unreplied flow beside it expires after 30 s.
    let u = tuple(C, 5001, SRV, 53, IPPROTO_UDP);
    let pu = pending(c.track(later, &udp_pkt(u)));
    let eu = confirm(&c, later, &pu);
    assert_eq!(c.gc(later + 29 * SEC, 1000), 0);
    assert_eq!(c.gc(later + 30 * SEC, 1000), 1);
    assert!(c.get(eu).is_none());
    assert!(c.get(e).is_some());
    assert_eq!(c.gc(later + 120 * SEC, 1000), 1);
    assert!(c.is_empty());

    // An expired entry met by a lookup is removed there, and the packet is NEW.
    let p = pending(c.track(later, &udp_pkt(u)));
    let eu = confirm(&c, later, &p);
    let p2 = pending(c.track(later + 31 * SEC, &udp_pkt(u)));
    assert!(c.get(eu).is_none());
    assert_eq!(c.len(), 0);
    confirm(&c, later + 31 * SEC, &p2);
    assert_eq!(c.stats().expired, 3);
    c.check_invariants();
}

#[test]
fn icmp_echo_and_reply() {
    let c = ct(1024, 16);
    let now = 5 * SEC;
    let req = icmp_pkt(C, SRV, 8, 0, 0x1234, None);
    let p = pending(c.track(now, &req));
    assert_eq!(p.timeout(), 30 * SEC);
    let e = confirm(&c, now, &p);
    let (_, dir, st, s) = existing(c.track(now + SEC / 100, &icmp_pkt(SRV, C, 0, 0, 0x1234, None)));
    assert_eq!((dir, st), (Dir::Reply, CtState::Established));
    assert_eq!(s.status, status::CONFIRMED | status::SEEN_REPLY);
    // Linux keeps the entry after the reply (duplicates, conntrackd).
    assert!(c.get(e).is_some());
    assert_eq!(
        proc_line(&s, now + 2 * SEC),
        "ipv4     2 icmp     1 28 src=10.0.0.1 dst=192.0.2.1 type=8 code=0 id=4660 \
         src=192.0.2.1 dst=10.0.0.1 type=0 code=0 id=4660 mark=0 zone=0 use=2"
    );
    assert_eq!(c.gc(now + SEC / 100 + 30 * SEC, 1000), 1);

    // An echo reply with no entry, or an unknown type, is INVALID.
    let tr = c.track(now, &icmp_pkt(SRV, C, 0, 0, 0x9999, None));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpNotNew);
    let tr = c.track(now, &icmp_pkt(SRV, C, 42, 0, 1, None));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpBadType);
}

#[test]
fn icmp_errors_are_related_both_ways() {
    let c = ct(1024, 16);
    let now = SEC;
    let t = tuple(C, 5000, SRV, 53, IPPROTO_UDP);
    let p = pending(c.track(now, &udp_pkt(t)));
    let e = confirm(&c, now, &p);
    let before = c.get(e).expect("live");

    // Port unreachable from the server, quoting the client's datagram: in
    // the entry's reply direction.
    let tr = c.track(now, &icmp_pkt(SRV, C, 3, 3, 0, Some(t)));
    let (e2, dir, st, _) = existing(tr);
    assert_eq!((e2, dir, st), (e, Dir::Reply, CtState::Related));

    // Time exceeded from a router towards the server, quoting the server's
    // reply: the original direction.
    let router = [198, 51, 100, 1];
    let tr = c.track(now, &icmp_pkt(router, SRV, 11, 0, 0, Some(t.invert())));
    let (e2, dir, st, _) = existing(tr);
    assert_eq!((e2, dir, st), (e, Dir::Original, CtState::Related));

    // Related packets change neither counters nor timeout.
    assert_eq!(c.get(e), Some(before));

    // Sent to someone else than the quoted endpoint.
    let tr = c.track(now, &icmp_pkt(SRV, [10, 9, 9, 9], 3, 3, 0, Some(t)));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpErrorDaddrMismatch);
    // Quoting nothing we know.
    let other = tuple(C, 6000, SRV, 53, IPPROTO_UDP);
    let tr = c.track(now, &icmp_pkt(SRV, C, 3, 3, 0, Some(other)));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpErrorNoEntry);
    let tr = c.track(now, &icmp_pkt(SRV, C, 3, 3, 0, None));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpErrorNoInner);
    // An expired entry is no entry (and is collected by the lookup).
    let tr = c.track(now + 31 * SEC, &icmp_pkt(SRV, C, 3, 3, 0, Some(t)));
    assert_eq!(invalid(tr).0, InvalidReason::IcmpErrorNoEntry);
    assert!(c.get(e).is_none());
    let p = pending(c.track(now, &udp_pkt(t)));
    confirm(&c, now, &p);

    // Errors about a TCP connection work the same way.
    let (te, tt) = handshake(&c, now, 40008);
    let tr = c.track(now, &icmp_pkt(SRV, C, 3, 4, 0, Some(tt)));
    assert_eq!(existing(tr).0, te);
    assert_eq!(c.stats().related, 3);
}

#[test]
fn generic_protocol() {
    let c = ct(1024, 16);
    let t = tuple(C, 0, SRV, 0, 253);
    let p = pending(c.track(SEC, &udp_pkt(t)));
    assert_eq!(p.timeout(), 600 * SEC);
    let e = confirm(&c, SEC, &p);
    let s = c.get(e).expect("live");
    assert_eq!(
        proc_line(&s, SEC + SEC / 2),
        "ipv4     2 unknown  253 599 src=10.0.0.1 dst=192.0.2.1 [UNREPLIED] \
         src=192.0.2.1 dst=10.0.0.1 mark=0 zone=0 use=2"
    );
    let (_, dir, _, s) = existing(c.track(2 * SEC, &udp_pkt(t.invert())));
    assert_eq!(dir, Dir::Reply);
    assert_eq!(s.status & status::ASSURED, 0);
}

#[test]
fn confirm_clash() {
    let c = ct(1024, 16);
    let t = tuple(C, 40009, SRV, 80, IPPROTO_TCP);
    // Two workers see the same SYN before either confirms.
    let p1 = pending(c.track(SEC, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    let p2 = pending(c.track(SEC, &tcp_pkt(t, seg(SYN, 1000, 0, 64240, 0))));
    confirm(&c, SEC, &p1);
    assert_eq!(c.confirm(SEC, &p2), Err(ConfirmError::Clash));

    // NAT picking a reply tuple that another entry uses.
    let u = tuple(C, 40010, SRV, 80, IPPROTO_TCP);
    let mut p3 = pending(c.track(SEC, &tcp_pkt(u, seg(SYN, 1000, 0, 64240, 0))));
    p3.reply = t.invert();
    assert!(c.tuple_in_use(&p3.reply));
    assert_eq!(c.confirm(SEC, &p3), Err(ConfirmError::Clash));
    p3.reply = tuple(SRV, 80, [203, 0, 113, 5], 61000, IPPROTO_TCP);
    p3.status |= status::SRC_NAT;
    let e = confirm(&c, SEC, &p3);
    let s = c.get(e).expect("live");
    assert_eq!(s.status, status::CONFIRMED | status::SRC_NAT);
    // The reply comes back to the NAT address and finds the entry.
    let tr = c.track(
        SEC,
        &tcp_pkt(p3.reply, seg(SYN | ACK, 5000, 1001, 65160, 0)),
    );
    assert_eq!(existing(tr).1, Dir::Reply);

    let st = c.stats();
    assert_eq!((st.insert, st.insert_failed, st.entries), (2, 2, 2));
    c.check_invariants();
}

#[test]
fn table_full_early_drops_unassured_then_fails() {
    let c = ct(4, 1);
    let now = SEC;
    let flows: Vec<Tuple> = (0..4)
        .map(|i| tuple(C, 7000 + i, SRV, 53, IPPROTO_UDP))
        .collect();
    let mut refs = Vec::new();
    for t in &flows {
        let p = pending(c.track(now, &udp_pkt(*t)));
        refs.push(confirm(&c, now, &p));
    }
    assert_eq!(c.len(), 4);

    // Full: the fifth evicts an unassured entry.
    let t5 = tuple(C, 7100, SRV, 53, IPPROTO_UDP);
    let p5 = pending(c.track(now, &udp_pkt(t5)));
    let e5 = confirm(&c, now, &p5);
    assert_eq!(c.len(), 4);
    assert_eq!(c.stats().early_drop, 1);
    assert_eq!(refs.iter().filter(|e| c.get(**e).is_none()).count(), 1);
    c.remove(e5);

    // Make every entry ASSURED (UDP streams), then nothing can be dropped.
    let mut live = 0;
    for t in &flows {
        if !c.tuple_in_use(t) {
            let p = pending(c.track(now, &udp_pkt(*t)));
            confirm(&c, now, &p);
        }
        existing(c.track(now, &udp_pkt(t.invert())));
        let (_, _, _, s) = existing(c.track(now + 3 * SEC, &udp_pkt(*t)));
        assert_ne!(s.status & status::ASSURED, 0);
        live += 1;
    }
    assert_eq!(live, 4);
    let p6 = pending(c.track(now + 3 * SEC, &udp_pkt(t5)));
    assert_eq!(c.confirm(now + 3 * SEC, &p6), Err(ConfirmError::TableFull));
    assert_eq!(c.len(), 4);
    assert_eq!(c.stats().drop, 1);

    // gc under pressure: above 95% it may evict unassured / closing entries
    // only; these are assured UDP streams, so nothing goes.
    assert_eq!(c.gc(now + 4 * SEC, 100), 0);
    c.check_invariants();
}

#[test]
fn gc_share_sweeps_a_share_of_the_shards_however_empty() {
    // 4,096 slots in 64 shards; 200 entries, all expired at 30 s.
    let c = ct(4096, 64);
    for i in 0..200u16 {
        let t = tuple(C, 9000 + i, SRV, 53, IPPROTO_UDP);
        let p = pending(c.track(0, &udp_pkt(t)));
        confirm(&c, 0, &p);
    }
    // An eighth of the capacity: eight shards, not 512 of them (`gc` with
    // that budget visits every shard of a sparse table).
    let first = c.gc_share(31 * SEC, 512);
    assert!(first > 0 && first < 100, "{first} removed by one share");
    let mut removed = first;
    for _ in 0..7 {
        removed += c.gc_share(31 * SEC, 512);
    }
    assert_eq!(removed, 200, "eight shares sweep the table once");
    assert!(c.is_empty());
    c.check_invariants();
}

#[test]
fn gc_removes_exactly_expired_and_respects_budget() {
    let c = ct(64, 1);
    // Interleave flows created at t=0 (expire at 30 s) and t=20 s (at 50 s).
    let mut early = Vec::new();
    let mut late = Vec::new();
    for i in 0..10u16 {
        let t = tuple(C, 9000 + i, SRV, 53, IPPROTO_UDP);
        let at = if i % 2 == 0 { 0 } else { 20 * SEC };
        let p = pending(c.track(at, &udp_pkt(t)));
        let e = confirm(&c, at, &p);
        if i % 2 == 0 {
            early.push(e);
        } else {
            late.push(e);
        }
    }
    assert_eq!(c.gc(35 * SEC, 0), 0);
    // Budget 3 looks at slots 0, 1, 2: two of them expired.
    assert_eq!(c.gc(35 * SEC, 3), 2);
    assert_eq!(c.len(), 8);
    // The rest, in small steps, picking up where the last call stopped.
    let mut removed = 2;
    for _ in 0..3 {
        let r = c.gc(35 * SEC, 3);
        assert!(r <= 3);
        removed += r;
    }
    assert_eq!(removed, 5);
    assert!(early.iter().all(|e| c.get(*e).is_none()));
    assert!(late.iter().all(|e| c.get(*e).is_some()));
    assert_eq!(c.stats().expired, 5);
    assert_eq!(c.gc(50 * SEC, 1000), 5);
    assert!(c.is_empty());
    c.check_invariants();
}

#[test]
fn remove_and_stale_refs() {
    let c = ct(64, 8);
    let t = tuple(C, 1234, SRV, 80, IPPROTO_UDP);
    let p = pending(c.track(0, &udp_pkt(t)));
    let e = confirm(&c, 0, &p);
    assert!(c.set_mark(e, 7));
    assert_eq!(c.get(e).map(|s| s.mark), Some(7));
    assert_eq!(c.snapshot().len(), 1);
    assert!(c.remove(e));
    assert!(!c.remove(e));
    assert!(c.get(e).is_none());
    assert!(!c.set_mark(e, 1));
    // The slot is reused; the old handle stays dead.
    let p = pending(c.track(0, &udp_pkt(t)));
    let e2 = confirm(&c, 0, &p);
    assert_ne!(e, e2);
    assert!(c.get(e).is_none());
    assert!(c.get(e2).is_some());
    // Same tuple both ways (e.g. a packet to itself): one key.
    let same = tuple(C, 5, C, 5, IPPROTO_UDP);
    let p = pending(c.track(0, &udp_pkt(same)));
    assert_eq!(p.orig, p.reply);
    let es = confirm(&c, 0, &p);
    assert_eq!(existing(c.track(0, &udp_pkt(same))).0, es);
    c.check_invariants();
    assert!(c.remove(es));
    c.check_invariants();
}

#[test]
fn seed_proc_lines() {
    let cli = Ipv4Addr::new(172, 20, 100, 120);
    let srv = Ipv4Addr::new(172, 20, 100, 209);
    let now = 1_000 * SEC;
    let t1 = Tuple {
        src: cli,
        dst: srv,
        sport: 17041,
        dport: 22,
        proto: IPPROTO_TCP,
    };
    let s1 = Snapshot {
        orig: t1,
        reply: t1.invert(),
        status: status::CONFIRMED | status::SEEN_REPLY | status::ASSURED,
        tcp_state: TcpState::Established,
        mark: 0,
        expires: now + 431_996 * SEC + SEC / 2,
        packets: [10, 9],
        bytes: [1000, 2000],
        icmp_type: 0,
        icmp_code: 0,
    };
    let t2 = Tuple {
        src: srv,
        dst: cli,
        sport: 22,
        dport: 17045,
        proto: IPPROTO_TCP,
    };
    let s2 = Snapshot {
        orig: t2,
        reply: t2.invert(),
        status: status::CONFIRMED,
        tcp_state: TcpState::Established,
        expires: now + 296 * SEC,
        ..s1
    };
    let seed = [
        "ipv4 2 tcp 6 431996 ESTABLISHED src=172.20.100.120 dst=172.20.100.209 sport=17041 dport=22 src=172.20.100.209 dst=172.20.100.120 sport=22 dport=17041 [ASSURED] mark=0 zone=0 use=2",
        "ipv4 2 tcp 6 296 ESTABLISHED src=172.20.100.209 dst=172.20.100.120 sport=22 dport=17045 [UNREPLIED] src=172.20.100.120 dst=172.20.100.209 sport=17045 dport=22 mark=0 zone=0 use=2",
    ];
    for (s, want) in [s1, s2].iter().zip(seed) {
        let line = proc_line(s, now);
        // Linux pads the protocol names to 8 columns; the article's copy
        // collapsed the spaces.
        assert!(line.starts_with("ipv4     2 tcp      6 "), "{line}");
        let collapsed: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(collapsed.join(" "), want);
    }
    // Expired but not yet collected: 0, never negative.
    assert!(proc_line(&s2, now + 400 * SEC).starts_with("ipv4     2 tcp      6 0 ESTABLISHED"));
}

#[test]
fn table_is_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Conntrack>();
    send_sync::<Track>();
}

#[test]
fn ct_state_bits_match_rule_bits() {
    use crate::rule::CtStates;
    assert_eq!(CtState::Invalid.bit(), CtStates::INVALID);
    assert_eq!(CtState::New.bit(), 2);
    assert_eq!(CtState::Related.bit(), 4);
    assert_eq!(CtState::Established.bit(), 8);
    assert_eq!(CtState::Untracked.bit(), 16);
    assert_eq!(TcpState::SynSent2.name(), "SYN_SENT2");
}

/// Two workers hammer overlapping flows with track/confirm/gc/remove on a
/// table of few shards (so reply keys often live in another shard); must
/// neither deadlock nor lose entries.
#[test]
fn two_threads_overlapping_flows() {
    let c = Arc::new(ct(4096, 4));
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for w in 0..2u8 {
        let c = Arc::clone(&c);
        let done_tx = done_tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            for round in 0..400u16 {
                let now = Nanos::from(round) * (SEC / 10);
                // A flow only this worker opens: must be found afterwards.
                let own = tuple([10, 1, w, 1], 10_000 + round, SRV, 443, IPPROTO_TCP);
                let p = pending(c.track(now, &tcp_pkt(own, seg(SYN, 1, 0, 1000, 0))));
                let e = match c.confirm(now, &p) {
                    Ok(e) => e,
                    Err(err) => panic!("own flow: {err}"),
                };
                let tr = c.track(now, &tcp_pkt(own.invert(), seg(SYN | ACK, 9, 2, 1000, 0)));
                assert_eq!(existing(tr).0, e);
                mine.push((own, e));

                // Flows both workers open at once: one confirm wins.
                for k in 0..4u16 {
                    let shared = tuple(
                        [10, 2, 0, 1],
                        20_000 + (round % 50) * 4 + k,
                        SRV,
                        53,
                        IPPROTO_UDP,
                    );
                    match c.track(now, &udp_pkt(shared)) {
                        Track::New(p) => match c.confirm(now, &p) {
                            Ok(_) | Err(ConfirmError::Clash) => {}
                            Err(e) => panic!("shared flow: {e}"),
                        },
                        Track::Existing { .. } => {
                            // The other worker may have removed it since.
                            let tr = c.track(now, &udp_pkt(shared.invert()));
                            assert!(!matches!(tr, Track::Invalid { .. }), "{tr:?}");
                        }
                        Track::Invalid { reason, .. } => panic!("shared flow invalid: {reason:?}"),
                    }
                }
                // Remove some shared entries and collect garbage meanwhile.
                if round % 7 == u16::from(w) {
                    let victim = tuple(
                        [10, 2, 0, 1],
                        20_000 + (round % 50) * 4,
                        SRV,
                        53,
                        IPPROTO_UDP,
                    );
                    if let Track::Existing { entry, .. } = c.track(now, &udp_pkt(victim)) {
                        c.remove(entry);
                    }
                }
                c.gc(now, 64);
            }
            done_tx.send(()).ok();
            mine
        }));
    }
    drop(done_tx);
    for _ in 0..2 {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("workers did not finish: deadlock?");
        }
    }
    let mut owned = 0;
    for h in handles {
        let mine = match h.join() {
            Ok(m) => m,
            Err(_) => panic!("worker panicked"),
        };
        for (t, e) in mine {
            // SYN_RECV times out after 60 s; the run lasted 40 s.
            assert!(c.get(e).is_some(), "lost entry {t:?}");
            assert!(c.tuple_in_use(&t) && c.tuple_in_use(&t.invert()));
            owned += 1;
        }
    }
    assert_eq!(owned, 800);
    c.check_invariants();
    let shared = c
        .snapshot()
        .iter()
        .filter(|s| s.orig.proto == IPPROTO_UDP)
        .count();
    assert_eq!(c.len(), owned + shared);
}

#[derive(Clone, Debug)]
enum Op {
    Tcp {
        flow: u8,
        reply: bool,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        flow: u8,
        reply: bool,
    },
    Confirm,
    Gc {
        budget: u8,
    },
    Remove,
    Tick {
        secs: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop::sample::select(vec![
        SYN,
        SYN | ACK,
        ACK,
        FIN | ACK,
        RST,
        RST | ACK,
        PSH | ACK,
        SYN | FIN,
    ]);
    prop_oneof![
        (0..6u8, any::<bool>(), flags, 0..3000u32, 0..3000u32).prop_map(
            |(flow, reply, flags, seq, ack)| Op::Tcp {
                flow,
                reply,
                flags,
                seq,
                ack
            }
        ),
        (0..6u8, any::<bool>()).prop_map(|(flow, reply)| Op::Udp { flow, reply }),
        Just(Op::Confirm),
        (0..20u8).prop_map(|budget| Op::Gc { budget }),
        Just(Op::Remove),
        (0..90u8).prop_map(|secs| Op::Tick { secs }),
    ]
}

proptest! {
    /// Whatever the packets, the table stays consistent: every key points to
    /// its live entry, every entry is reachable both ways, the count is right.
    #[test]
    fn random_traffic_keeps_the_table_consistent(ops in prop::collection::vec(op(), 1..120)) {
        let c = ct(8, 4);
        let mut now: Nanos = 0;
        let mut last: Option<Pending> = None;
        let mut last_entry: Option<EntryRef> = None;
        for op in ops {
            let tr = match op {
                Op::Tcp { flow, reply, flags, seq, ack } => {
                    let t = tuple(C, 100 + u16::from(flow), SRV, 80, IPPROTO_TCP);
                    let t = if reply { t.invert() } else { t };
                    Some(c.track(now, &tcp_pkt(t, seg(flags, seq, ack, 2000, 10))))
                }
                Op::Udp { flow, reply } => {
                    let t = tuple(C, 100 + u16::from(flow), SRV, 53, IPPROTO_UDP);
                    let t = if reply { t.invert() } else { t };
                    Some(c.track(now, &udp_pkt(t)))
                }
                Op::Confirm => {
                    if let Some(p) = last.take() {
                        if let Ok(e) = c.confirm(now, &p) {
                            last_entry = Some(e);
                        }
                    }
                    None
                }
                Op::Gc { budget } => {
                    c.gc(now, usize::from(budget));
                    None
                }
                Op::Remove => {
                    if let Some(e) = last_entry.take() {
                        c.remove(e);
                    }
                    None
                }
                Op::Tick { secs } => {
                    now += Nanos::from(secs) * SEC;
                    None
                }
            };
            match tr {
                Some(Track::New(p)) => last = Some(p),
                Some(Track::Existing { entry, .. }) => last_entry = Some(entry),
                _ => {}
            }
            prop_assert!(c.len() <= 8);
            c.check_invariants();
        }
    }
}

/// `conntrack -E`: nothing is recorded without a listener; with one, a TCP
/// handshake gives NEW, UPDATE (SYN_RECV), UPDATE (ESTABLISHED, ASSURED);
/// a data segment that changes nothing gives no event; a deletion, expiry
/// and a full ring behave as documented.
#[test]
fn events_follow_the_connection_only_while_someone_listens() {
    let t = ct(1024, 4);
    let c = tuple(
        [192, 168, 10, 2],
        40000,
        [203, 0, 113, 254],
        8080,
        IPPROTO_TCP,
    );
    let s = c.invert();
    let mut out = Vec::new();
    // Unsubscribed: nothing recorded.
    let p = pending(t.track(SEC, &tcp_pkt(c, seg(SYN, 100, 0, 1000, 0))));
    t.confirm(SEC, &p).expect("confirm");
    assert_eq!(t.events_drain(&mut out), 0);
    assert!(out.is_empty());
    t.remove_if(|_| true);

    t.events_subscribe();
    let now = 2 * SEC;
    let p = pending(t.track(now, &tcp_pkt(c, seg(SYN, 100, 0, 1000, 0))));
    let mut counted = CtCounters::default();
    t.confirm_counted(now, &p, &mut counted).expect("confirm");
    assert_eq!(counted.insert, 1);
    existing(t.track(now, &tcp_pkt(s, seg(SYN | ACK, 500, 101, 1000, 0))));
    existing(t.track(now, &tcp_pkt(c, seg(ACK, 101, 501, 1000, 0))));
    existing(t.track(now, &tcp_pkt(c, seg(ACK | PSH, 101, 501, 1000, 10))));
    assert_eq!(t.events_drain(&mut out), 0);
    let kinds: Vec<(EventKind, TcpState, bool)> = out
        .iter()
        .map(|e| (e.kind, e.snap.tcp_state, e.protoinfo))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::New, TcpState::SynSent, true),
            (EventKind::Update, TcpState::SynRecv, true),
            (EventKind::Update, TcpState::Established, true),
        ]
    );
    assert_ne!(out[2].snap.status & status::ASSURED, 0);
    assert!(out.iter().all(|e| e.at == Some(now)));
    out.clear();
    assert_eq!(t.remove_if(|_| true).len(), 1);
    t.events_drain(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, EventKind::Destroy);
    assert!(out[0].userspace());
    out.clear();

    // Expiry through gc: DESTROY at the gc's time, with no time left.
    let u = tuple([192, 168, 10, 2], 5000, [203, 0, 113, 254], 53, IPPROTO_UDP);
    let p = pending(t.track(now, &udp_pkt(u)));
    t.confirm(now, &p).expect("confirm");
    t.gc(now + 31 * SEC, 1 << 20);
    t.events_drain(&mut out);
    let kinds: Vec<EventKind> = out.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::New, EventKind::Destroy]);
    assert_eq!(out[1].at, Some(now + 31 * SEC));
    out.clear();

    // A full ring loses events and says how many.
    let mut n = 0u16;
    while n < (EVENT_RING_PER_SHARD as u16) * 4 * 2 {
        let u = tuple([10, 0, 0, 1], 1000 + n, [10, 0, 0, 2], 53, IPPROTO_UDP);
        let p = pending(t.track(now, &udp_pkt(u)));
        t.confirm(now, &p).expect("confirm");
        n += 1;
    }
    let lost = t.events_drain(&mut out);
    assert!(lost > 0, "lost {lost}");
    assert_eq!(out.len() as u64 + lost, u64::from(n));

    // The last listener gone: recording stops.
    t.events_unsubscribe();
    out.clear();
    t.remove_if(|_| true);
    assert_eq!(t.events_drain(&mut out), 0);
    assert!(out.is_empty());
}

#[test]
fn worker_counters_split_invalid_and_error_as_linux() {
    let t = ct(1024, 4);
    let mut c = CtCounters::default();
    let x = tuple(
        [192, 168, 10, 2],
        40000,
        [203, 0, 113, 254],
        8080,
        IPPROTO_TCP,
    );
    // A SYN/ACK with no entry: invalid.
    let tr = t.track(SEC, &tcp_pkt(x, seg(SYN | ACK, 1, 1, 1000, 0)));
    c.count_track(&tr, IPPROTO_TCP);
    // An ICMP error quoting nothing tracked: error.
    let e = icmp_pkt([203, 0, 113, 254], [192, 168, 10, 2], 3, 1, 0, Some(x));
    let tr = t.track(SEC, &e);
    c.count_track(&tr, IPPROTO_ICMP);
    assert_eq!(c.invalid_count(InvalidReason::TcpNewInvalid), 1);
    assert_eq!(c.invalid_count(InvalidReason::IcmpErrorNoEntry), 1);
    assert_eq!((c.invalid(), c.error(), c.invalid_all()), (1, 1, 2));
}

/// A shard whose key table is full refuses new entries as a full table
/// does (counted as `drop`), while the other shards, and the table's
/// count, are unaffected; removing an entry makes room again.
#[test]
fn a_full_shard_refuses_like_a_full_table() {
    // Two shards of 5,000 entries' share and 8 standard deviations more:
    // one fills well below nf_conntrack_max.
    let c = ct(10_000, 2);
    // Entries whose original and reply tuples both hash to shard 0: two
    // keys each there.
    let c_shard = |t: &Tuple| ((c.hash(t) >> 32) & 1) as usize;
    let in_shard = |s: usize| {
        (1..u16::MAX)
            .map(move |p| tuple([10, 0, 0, 1], p, [10, 0, 0, 2], 53, IPPROTO_UDP))
            .filter(move |t| c_shard(t) == s && c_shard(&t.invert()) == s)
    };
    let mut zero = in_shard(0);
    let mut confirmed = Vec::new();
    let refused = loop {
        let t = zero.next().expect("tuples for shard 0");
        let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
            panic!("not new")
        };
        match c.confirm(SEC, &p) {
            Ok(e) => confirmed.push(e),
            Err(e) => break (t, e),
        }
    };
    assert_eq!(refused.1, ConfirmError::TableFull);
    assert!(confirmed.len() < 10_000, "refused below nf_conntrack_max");
    assert_eq!(c.len(), confirmed.len());
    assert_eq!(c.stats().drop, 1);
    // The other shard takes entries.
    let t = in_shard(1).next().expect("a tuple for shard 1");
    let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
        panic!("not new")
    };
    assert!(c.confirm(SEC, &p).is_ok());
    // Room again in shard 0 after a removal.
    assert!(c.remove(confirmed[0]));
    let Track::New(p) = c.track(SEC, &udp_pkt(refused.0)) else {
        panic!("not new")
    };
    assert!(c.confirm(SEC, &p).is_ok());
    c.check_invariants();
}

/// Keys name an entry's generation in 16 bits: an entry whose slot was
/// reused more than 65,536 times is still found, and its handle still
/// works.
#[test]
fn generations_past_16_bits() {
    let c = ct(16, 1);
    let t = tuple([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, IPPROTO_UDP);
    for _ in 0..70_000 {
        let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
            panic!("not new")
        };
        let e = c.confirm(SEC, &p).expect("room");
        assert!(c.remove(e));
    }
    let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
        panic!("not new")
    };
    let e = c.confirm(SEC, &p).expect("room");
    assert!(e.gen >= 70_000);
    match c.track(2 * SEC, &udp_pkt(t.invert())) {
        Track::Existing { entry, dir, .. } => {
            assert_eq!(entry, e);
            assert_eq!(dir, Dir::Reply);
        }
        other => panic!("{other:?}"),
    }
    assert!(c.get(e).is_some());
    assert!(c.tuple_in_use(&t) && c.tuple_in_use(&t.invert()));
    c.check_invariants();
}

/// The prefetch hint names the slot the shard's next confirm takes.
#[test]
fn next_slot_hint_follows_the_free_list() {
    let c = ct(64, 1);
    let slot_addr = |i: u32| {
        let g = c.lock(0);
        g.slab.as_ptr() as usize + i as usize * std::mem::size_of::<Slot>()
    };
    let hint = || c.hints[0].next_slot.load(Ordering::Relaxed);
    assert_eq!(hint(), slot_addr(0));
    let mut entries = Vec::new();
    for port in [1000, 1001] {
        let t = tuple([10, 0, 0, 1], port, [10, 0, 0, 2], 53, IPPROTO_UDP);
        let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
            panic!("not new")
        };
        entries.push(c.confirm(SEC, &p).expect("room"));
    }
    assert_eq!(hint(), slot_addr(2));
    assert!(c.remove(entries[0]));
    assert_eq!(hint(), slot_addr(entries[0].slot));
    let t = tuple([10, 0, 0, 1], 1002, [10, 0, 0, 2], 53, IPPROTO_UDP);
    let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
        panic!("not new")
    };
    assert_eq!(c.confirm(SEC, &p).expect("room").slot, entries[0].slot);
    assert_eq!(hint(), slot_addr(2));
}

#[test]
fn entry_prefetch_points_at_the_entrys_slot() {
    let c = ct(64, 1);
    let t = tuple([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, IPPROTO_UDP);
    let Track::New(p) = c.track(SEC, &udp_pkt(t)) else {
        panic!("not new")
    };
    let e = c.confirm(SEC, &p).expect("room");
    let sh = &c.hints[0];
    let g = c.lock(0);
    assert_eq!(sh.slab_base, g.slab.as_ptr() as usize);
    assert!(sh.slab_cap >= g.slab.len());
    assert!((e.slot as usize) < sh.slab_cap);
    drop(g);
    // A hint: any reference, live, stale or out of range, is harmless.
    c.prefetch_entry(e);
    assert!(c.remove(e));
    c.prefetch_entry(e);
    c.prefetch_entry(EntryRef::new(7, u32::MAX, 0));
    c.prefetch_entry(EntryRef::new(0, u32::MAX, 0));
}

/// The huge-page size (kB) backing the mapping that holds `addr`, from
/// /proc/self/smaps; None if no mapping holds it.
fn anon_huge_kb_at(addr: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("AnonHugePages:") {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn a_large_table_sits_on_huge_pages() {
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.is_empty() || thp.contains("[never]") {
        // Nothing to ask for on this kernel: the advice fails harmlessly.
        eprintln!("transparent huge pages are off here: {thp:?}");
        return;
    }
    let c = ct(1 << 20, 1024);
    let bytes: usize = c.hints.iter().map(Hint::bytes).sum();
    assert!(bytes >= HUGE_PAGES_FROM, "{bytes}");
    // Key tables were written when built: collapsed onto huge pages.
    let (keys, _) = c.hints[c.hints.len() / 2].key_lines.span();
    let kb = anon_huge_kb_at(keys).expect("the key table is mapped");
    assert!(kb >= 2048, "key table mapping has {kb} kB on huge pages");
    // A small table is left alone (and works as before).
    let small = ct(1024, 16);
    assert!(small.hints.iter().map(Hint::bytes).sum::<usize>() < HUGE_PAGES_FROM);
}

/// A walk in small chunks sees every live entry once, with references
/// that delete it, while entries are deleted behind it; it ends with
/// `false` and nothing appended.
#[test]
fn walk_in_chunks_sees_each_entry_once() {
    let t = ct(4096, 8);
    let mut made = Vec::new();
    for k in 0..1000u16 {
        let u = tuple(
            [192, 168, 10, 2],
            10000 + k,
            [203, 0, 113, 254],
            53,
            IPPROTO_UDP,
        );
        let p = pending(t.track(SEC, &udp_pkt(u)));
        t.confirm(SEC, &p).expect("confirm");
        made.push(u);
    }
    let mut cursor = WalkCursor::default();
    let mut chunk = Vec::new();
    let mut seen = Vec::new();
    let mut calls = 0;
    while t.walk(&mut cursor, 7, &mut chunk) {
        calls += 1;
        assert!(chunk.len() <= 7, "{} entries in one chunk", chunk.len());
        for (e, s) in chunk.drain(..) {
            // Every other entry deleted as the walk passes it.
            if s.orig.sport % 2 == 0 {
                assert!(t.remove(e));
            }
            seen.push(s.orig);
        }
    }
    assert!(calls > 1000 / 7);
    assert!(chunk.is_empty());
    assert!(
        !t.walk(&mut cursor, 7, &mut chunk),
        "a finished walk stays finished"
    );
    seen.sort_by_key(|s| s.sport);
    made.sort_by_key(|s| s.sport);
    assert_eq!(seen, made);
    assert_eq!(t.len(), 500);
    assert_eq!(t.listing(SEC).len(), 500);
    assert!(
        t.listing(31 * SEC).is_empty(),
        "UDP entries expire after 30 s"
    );
    t.check_invariants();
}

// ---------------------------------------------------------------------------
// Saving the table across a restart (`saved.rs`).

/// A conversation for the save/restore tests: its tuples (a NAT mapping
/// changes the reply's) and its packets, each with its direction.
struct Script {
    orig: Tuple,
    reply: Tuple,
    nat: u16,
    pkts: Vec<(Dir, PacketMeta)>,
}

impl Script {
    fn packet(&self, i: usize) -> PacketMeta {
        self.pkts[i].1
    }

    /// Plays packets `from..to` on `c` at `now` (the first one opens the
    /// entry, with the NAT mapping); returns what tracking said, the entry
    /// refs left out (they differ between tables).
    fn play(&self, c: &Conntrack, now: Nanos, from: usize, to: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in from..to {
            let (dir, mut pkt) = self.pkts[i];
            pkt.tuple = match dir {
                Dir::Original => self.orig,
                Dir::Reply => self.reply,
            };
            match c.track(now, &pkt) {
                Track::New(mut p) => {
                    assert_eq!(i, 0, "only the first packet opens");
                    p.reply = self.reply;
                    p.status |= self.nat;
                    confirm(c, now, &p);
                    out.push(format!("new {:?}", p.tcp_state()));
                }
                Track::Existing {
                    dir, state, snap, ..
                } => out.push(format!("{dir:?} {state:?} {snap:?}")),
                Track::Invalid { reason, tcp_state } => {
                    out.push(format!("invalid {reason:?} {tcp_state:?}"))
                }
            }
        }
        out
    }
}

const GW: [u8; 4] = [203, 0, 113, 1];

/// A TCP conversation from client port `sport`, masqueraded to GW:`nat`:
/// window scaling and SACK on, data both ways, closed by the client.
fn tcp_script(sport: u16, nat: u16) -> Script {
    let orig = tuple(C, sport, SRV, 443, IPPROTO_TCP);
    let ws = |s: TcpSeg| TcpSeg {
        wscale: Some(7),
        sack_perm: true,
        ..s
    };
    let o = Dir::Original;
    let r = Dir::Reply;
    let pkts = [
        (o, ws(seg(SYN, 1000, 0, 64240, 0))),
        (r, ws(seg(SYN | ACK, 5000, 1001, 65160, 0))),
        (o, seg(ACK, 1001, 5001, 502, 0)),
        (o, seg(PSH | ACK, 1001, 5001, 502, 1400)),
        (r, seg(PSH | ACK, 5001, 2401, 509, 3000)),
        (o, seg(ACK, 2401, 8001, 502, 0)),
        (o, seg(FIN | ACK, 2401, 8001, 502, 0)),
        (r, seg(ACK, 8001, 2402, 509, 0)),
        (r, seg(FIN | ACK, 8001, 2402, 509, 0)),
        (o, seg(ACK, 2402, 8002, 502, 0)),
    ];
    Script {
        orig,
        reply: tuple(SRV, 443, GW, nat, IPPROTO_TCP),
        nat: status::SRC_NAT,
        pkts: pkts.iter().map(|(d, s)| (*d, tcp_pkt(orig, *s))).collect(),
    }
}

#[test]
fn a_restored_table_tracks_exactly_as_the_saved_one() {
    let c1 = ct(1024, 16);
    let now = 500 * SEC;
    let mut scripts = Vec::new();
    // TCP in every state: connection k has seen the first k packets of
    // the conversation (SYN_SENT, SYN_RECV, ESTABLISHED with data in
    // flight and without, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT).
    for k in 1..=10 {
        scripts.push((tcp_script(41000 + k as u16, 61000 + k as u16), k));
    }
    // CLOSE (a reset) and SYN_SENT2 (simultaneous open).
    let mut rst = tcp_script(41100, 61100);
    rst.pkts.truncate(3);
    rst.pkts
        .push((Dir::Reply, tcp_pkt(rst.orig, seg(RST, 5001, 0, 0, 0))));
    scripts.push((rst, 4));
    let mut s2 = tcp_script(41101, 61101);
    s2.pkts.truncate(1);
    s2.pkts
        .push((Dir::Reply, tcp_pkt(s2.orig, seg(SYN, 9000, 0, 65160, 0))));
    s2.pkts.push((
        Dir::Reply,
        tcp_pkt(s2.orig, seg(SYN | ACK, 9000, 1001, 65160, 0)),
    ));
    scripts.push((s2, 2));
    // DNAT: to GW:8080, answered by 10.1.1.5:80.
    let mut dnat = tcp_script(41102, 0);
    dnat.orig = tuple(C, 41102, GW, 8080, IPPROTO_TCP);
    dnat.reply = tuple([10, 1, 1, 5], 80, C, 41102, IPPROTO_TCP);
    dnat.nat = status::DST_NAT;
    scripts.push((dnat, 5));
    // UDP: unreplied; replied once; a stream (ASSURED). ICMP echo. GRE.
    let udp = |sport: u16, n: usize| {
        let orig = tuple(C, sport, SRV, 53, IPPROTO_UDP);
        let pkts = (0..n)
            .map(|i| {
                let d = if i % 2 == 0 {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                (d, udp_pkt(orig))
            })
            .collect();
        Script {
            orig,
            reply: tuple(SRV, 53, GW, sport + 1000, IPPROTO_UDP),
            nat: status::SRC_NAT,
            pkts,
        }
    };
    scripts.push((udp(5000, 4), 1));
    scripts.push((udp(5001, 4), 2));
    let echo = icmp_pkt(C, SRV, 8, 0, 0x77, None);
    let echo_reply = icmp_pkt(SRV, GW, 0, 0, 0x77, None);
    scripts.push((
        Script {
            orig: echo.tuple,
            reply: echo_reply.tuple,
            nat: status::SRC_NAT,
            pkts: vec![(Dir::Original, echo), (Dir::Reply, echo_reply)],
        },
        1,
    ));
    let gre = tuple(C, 0, SRV, 0, 47);
    scripts.push((
        Script {
            orig: gre,
            reply: gre.invert(),
            nat: 0,
            pkts: vec![(Dir::Original, udp_pkt(gre)), (Dir::Reply, udp_pkt(gre))],
        },
        1,
    ));
    for (s, k) in &scripts {
        s.play(&c1, now, 0, *k);
    }
    // The UDP stream: a reply, then more after two seconds (ASSURED).
    let stream = udp(5002, 3);
    stream.play(&c1, now - 3 * SEC, 0, 2);
    stream.play(&c1, now, 2, 3);
    // A mark (CONNMARK).
    let marked = c1
        .snapshot()
        .into_iter()
        .find(|s| s.orig == scripts[2].0.orig)
        .expect("entry");
    let e = c1
        .remove_if(|s| s.orig == marked.orig)
        .pop()
        .expect("removed");
    assert_eq!(e.orig, marked.orig);
    scripts[2].0.play(&c1, now, 0, 3);
    let mut refs = Vec::new();
    for sh in 0..c1.shards.len() {
        let g = c1.lock(sh);
        for (i, s) in g.slab.iter().enumerate() {
            if s.live && s.orig == marked.orig {
                refs.push(EntryRef::new(sh as u32, i as u32, s.gen));
            }
        }
    }
    assert!(c1.set_mark(refs[0], 0x2a));

    let n = c1.len();
    assert_eq!(n, scripts.len() + 1);
    let saved = c1.save(now);
    assert_eq!(saved.len(), n);
    let bytes = SavedTable {
        saved_at: 1,
        entries: saved.clone(),
    }
    .encode();
    let back = SavedTable::decode(&bytes).expect("decodes");
    assert_eq!(back.entries, saved, "every field survives the bytes");

    // Restored at the same moment: the same table.
    let c2 = ct(1024, 4);
    let r = c2.restore(now, &back.entries, 0);
    assert_eq!(
        r,
        Restored {
            restored: n,
            ..Restored::default()
        }
    );
    c2.check_invariants();
    let sorted = |c: &Conntrack| {
        let mut v = c.snapshot();
        v.sort_by_key(|s| s.orig);
        v
    };
    assert_eq!(sorted(&c1), sorted(&c2));
    let states: std::collections::BTreeSet<u8> =
        c2.snapshot().iter().map(|s| s.tcp_state as u8).collect();
    assert_eq!(
        states.len(),
        TcpState::ALL.len(),
        "every TCP state: {states:?}"
    );
    assert!(sorted(&c2).iter().any(|s| s.mark == 0x2a));
    // The window tracking came along: the TCP lines are equal.
    let lines = |c: &Conntrack| {
        let mut v = Vec::new();
        for sh in 0..c.shards.len() {
            let g = c.lock(sh);
            for (i, s) in g.slab.iter().enumerate() {
                if s.live && matches!(s.conn.proto, Proto::Tcp(_)) {
                    v.push((s.orig, g.tcp[i].0));
                }
            }
        }
        v.sort_by_key(|(t, _)| *t);
        v
    };
    assert_eq!(lines(&c1), lines(&c2));
    // The NAT mappings hold their ports.
    for (s, _) in &scripts {
        assert!(c2.tuple_in_use(&s.reply), "{:?}", s.reply);
    }
    // And every conversation goes on exactly as it would have.
    let later = now + SEC;
    for (s, k) in &scripts {
        assert_eq!(
            s.play(&c1, later, *k, s.pkts.len()),
            s.play(&c2, later, *k, s.pkts.len()),
            "{:?} after {k} packets",
            s.orig
        );
    }
    // A segment far outside the window is refused by both: the window
    // data is the saved one, not a picked-up connection's.
    let est = &scripts[4].0;
    let mut wild = est.packet(5);
    wild.tcp = Some(seg(ACK, 900_000_000, 8001, 502, 100));
    wild.tuple = est.orig;
    assert!(matches!(c2.track(later, &wild), Track::Invalid { .. }));
    c2.check_invariants();
}

#[test]
fn restoring_takes_off_the_time_the_restart_took() {
    let c1 = ct(1024, 16);
    let t0 = 1000 * SEC;
    // UDP replied once, 1 s ago: a stream from 1 s from now on.
    let u = tuple(C, 6000, SRV, 53, IPPROTO_UDP);
    let p = pending(c1.track(t0 - SEC, &udp_pkt(u)));
    confirm(&c1, t0 - SEC, &p);
    existing(c1.track(t0 - SEC, &udp_pkt(u.invert())));
    // ICMP with 30 s, TCP established (5 days).
    let e = icmp_pkt(C, SRV, 8, 0, 9, None);
    let p = pending(c1.track(t0 - 25 * SEC, &e));
    confirm(&c1, t0 - 25 * SEC, &p);
    handshake(&c1, t0, 42000);
    // Expired but not collected yet: not saved.
    let gone = tuple(C, 6001, SRV, 53, IPPROTO_UDP);
    let p = pending(c1.track(t0 - 40 * SEC, &udp_pkt(gone)));
    confirm(&c1, t0 - 40 * SEC, &p);
    assert_eq!(c1.len(), 4);
    let saved = c1.save(t0);
    assert_eq!(saved.len(), 3);
    let left = |t: &Tuple| saved.iter().find(|s| s.orig() == *t).map(|s| s.remaining());
    assert_eq!(left(&u), Some(29 * SEC));
    assert_eq!(left(&e.tuple), Some(5 * SEC));

    // The new process's clock starts again near 0; 6 s passed meanwhile.
    let c2 = ct(1024, 16);
    let now = SEC / 2;
    let r = c2.restore(now, &saved, 6 * SEC);
    assert_eq!(
        r,
        Restored {
            restored: 2,
            expired: 1,
            ..Restored::default()
        }
    );
    assert!(!c2.tuple_in_use(&e.tuple), "its 5 s ran out");
    let s = c2
        .listing(now)
        .into_iter()
        .find(|s| s.orig == u)
        .expect("udp");
    assert_eq!(s.expires, now + 23 * SEC);
    // Restored with less elapsed: the UDP stream mark is still 0.5 s ahead.
    let c3 = ct(1024, 16);
    c3.restore(now, &saved, SEC / 2);
    let (_, _, _, s) = existing(c3.track(now + SEC / 4, &udp_pkt(u)));
    assert_eq!(s.status & status::ASSURED, 0, "not a stream yet");
    let (_, _, _, s) = existing(c3.track(now + SEC, &udp_pkt(u)));
    assert_ne!(s.status & status::ASSURED, 0, "a stream now");
    assert_eq!(s.expires, now + SEC + 120 * SEC);
}

#[test]
fn a_smaller_table_keeps_the_assured_entries() {
    let c1 = ct(1024, 16);
    let now = 100 * SEC;
    for i in 0..20 {
        let p = pending(c1.track(now, &udp_pkt(tuple(C, 7000 + i, SRV, 53, IPPROTO_UDP))));
        confirm(&c1, now, &p);
    }
    for i in 0..10 {
        handshake(&c1, now, 43000 + i);
    }
    let saved = c1.save(now);
    assert_eq!(saved.len(), 30);
    let c2 = ct(15, 4);
    let r = c2.restore(now, &saved, 0);
    assert_eq!(
        r,
        Restored {
            restored: 15,
            no_room: 15,
            ..Restored::default()
        }
    );
    assert_eq!(c2.len(), 15);
    let assured = c2
        .snapshot()
        .iter()
        .filter(|s| s.status & status::ASSURED != 0)
        .count();
    assert_eq!(assured, 10);
    c2.check_invariants();
}

#[test]
fn a_restored_entry_whose_tuple_is_taken_is_left_out() {
    let c1 = ct(1024, 16);
    let now = 10 * SEC;
    let (_, t) = handshake(&c1, now, 44000);
    handshake(&c1, now, 44001);
    let saved = c1.save(now);
    let c2 = ct(1024, 16);
    let p = pending(c2.track(SEC, &tcp_pkt(t, seg(SYN, 1, 0, 1000, 0))));
    confirm(&c2, SEC, &p);
    let r = c2.restore(SEC, &saved, 0);
    assert_eq!((r.restored, r.clashed), (1, 1));
    assert_eq!(c2.len(), 2);
    c2.check_invariants();
}

/// The layout sizes shards with 8 standard deviations of slack; the table
/// built is the layout's, byte for byte.
#[test]
fn layout_sizes_shards_slots_and_buckets() {
    let l = cfg(262_144, 1024).layout();
    // 256 entries per shard and 8 standard deviations (8 x 16) more (+4);
    // 2.5 keys per slot, two thirds of each bucket's three.
    assert_eq!(
        (
            l.shards,
            l.slots_per_shard,
            l.keys_per_shard,
            l.buckets_per_shard
        ),
        (1024, 388, 970, 485)
    );
    assert_eq!(l.buckets(), 496_640);
    // 16 M: 16,384 per shard, 8 standard deviations (1,024) more.
    let l = cfg(16_000_000, 1024).layout();
    assert_eq!((l.shards, l.slots_per_shard), (1024, 15_625 + 1_000 + 4));
    assert_eq!(l.buckets_per_shard, (l.slots_per_shard * 5 / 2).div_ceil(2));
    // buckets = max: one bucket per entry, keys at most 90 % of their room.
    let l = ConntrackConfig {
        buckets: Some(16_000_000),
        ..cfg(16_000_000, 1024)
    }
    .layout();
    assert_eq!((l.buckets_per_shard, l.keys_per_shard), (15_625, 41_572));
    assert_eq!(l.buckets(), 16_000_000);
    // Fewer than max are raised to max, and to two keys per slot within
    // 90 % of their room (288 a shard for 388 slots); more are taken
    // (rounded up to whole shards).
    let low = ConntrackConfig {
        buckets: Some(1_000),
        ..cfg(4096, 16)
    };
    assert_eq!(low.layout().buckets(), 16 * 288);
    let high = ConntrackConfig {
        buckets: Some(100_001),
        ..cfg(4096, 16)
    };
    assert_eq!(high.layout().buckets(), 100_016);
    // Shards of a few dozen entries get a few more buckets than their
    // share: two keys per slot within 90 % of their room.
    let small = ConntrackConfig {
        buckets: Some(20_000),
        ..cfg(20_000, 1024)
    }
    .layout();
    assert_eq!((small.slots_per_shard, small.buckets_per_shard), (56, 42));
    assert!(small.keys_per_shard >= 2 * small.slots_per_shard);
    // More shards when a shard's slots would not fit a key's 23 bits.
    let huge = cfg(MAX_ENTRIES, 1024).layout();
    assert_eq!(huge.shards, 1 << 16);
    assert_eq!(cfg(usize::MAX, 1).layout().max_entries, MAX_ENTRIES);
    assert_eq!(cfg(0, 1).layout().max_entries, 1);

    for cfg in [cfg(4096, 16), low, high] {
        let c = Conntrack::new(cfg.clone());
        let l = cfg.layout();
        assert_eq!(c.layout(), &l);
        assert_eq!(c.buckets(), l.buckets());
        let slab: usize = c.hints.iter().map(|h| h.slab_cap).sum();
        let keys: usize = c.hints.iter().map(|h| h.key_lines.span().1).sum();
        assert_eq!(slab, l.slots_per_shard * l.shards);
        assert_eq!(
            (slab * (std::mem::size_of::<Slot>() + std::mem::size_of::<TcpLine>()) + keys) as u64,
            l.bytes()
        );
        assert_eq!(
            (slab * std::mem::size_of::<Slot>() + keys) as u64,
            l.preallocated_bytes()
        );
    }
}

/// With the fewest buckets allowed (as many as entries) a table still
/// fills to its maximum: no shard's key table refuses first.
#[test]
fn the_fewest_buckets_still_hold_a_full_table() {
    for buckets in [None, Some(4096)] {
        let c = Conntrack::new(ConntrackConfig {
            buckets,
            ..cfg(4096, 16)
        });
        for i in 0..4096u32 {
            let t = tuple(
                (0x0a00_0000 + i / 1000).to_be_bytes(),
                1024 + (i % 1000) as u16,
                SRV,
                53,
                IPPROTO_UDP,
            );
            let p = pending(c.track(SEC, &udp_pkt(t)));
            confirm(&c, SEC, &p);
        }
        assert_eq!(c.len(), 4096, "{buckets:?}");
        let st = c.stats();
        assert_eq!(
            (st.drop, st.early_drop, st.insert_failed),
            (0, 0, 0),
            "{buckets:?}"
        );
        c.check_invariants();
    }
}

#[test]
fn sweep_pace_is_a_table_a_second_up_to_a_cap() {
    let small = ct(4096, 64);
    assert_eq!(small.sweep_slots(SEC), 4096);
    assert_eq!(small.sweep_slots(SEC / 4), 1024);
    // Four seconds for the whole of a table four times the cap.
    let big = 4 * GC_MAX_SLOTS_PER_SEC;
    assert_eq!(super::sweep_slots(big, 0, SEC), GC_MAX_SLOTS_PER_SEC);
    assert_eq!(super::sweep_slots(big, big / 2, 4 * SEC), big);
    // Nearly full, the whole table a second.
    assert_eq!(super::sweep_slots(big, big / 10 * 9, SEC), big);
}

/// The table's hash is keyed with a secret of its own: tuples an outsider
/// chose to share a bucket under the public hash spread out in the table.
#[test]
fn the_hash_is_keyed_per_table() {
    let (a, b) = (ct(1024, 4), ct(1024, 4));
    let t = tuple([192, 168, 10, 2], 40000, [203, 0, 113, 9], 80, 6);
    assert_ne!(a.hash(&t), b.hash(&t), "two tables, two keys");
    assert_ne!(a.hash(&t), t.hash64());
    // 64 tuples whose public hashes share their low 10 bits (a bucket in a
    // table of 1,024).
    let crafted: Vec<Tuple> = (0..=u16::MAX)
        .flat_map(|sport| {
            [2, 3].map(|host| tuple([192, 168, 10, host], sport, [203, 0, 113, 9], 80, 6))
        })
        .filter(|t| t.hash64() & 1023 == 0)
        .take(64)
        .collect();
    assert_eq!(crafted.len(), 64);
    let buckets: std::collections::BTreeSet<u64> =
        crafted.iter().map(|t| a.hash(t) & 1023).collect();
    assert!(buckets.len() > 48, "{} buckets", buckets.len());
}

/// Timeouts and the TCP knobs change while the table runs, as Linux's
/// sysctls do: the next packet of an entry gets the new timeout; tcp_loose
/// off refuses to pick up a connection mid-stream.
#[test]
fn policy_changes_apply_to_the_next_packet() {
    let c = ct(1024, 16);
    let t = tuple(C, 5000, SRV, 53, IPPROTO_UDP);
    let now = 7 * SEC;
    let p = pending(c.track(now, &udp_pkt(t)));
    assert_eq!(p.timeout(), 30 * SEC);
    confirm(&c, now, &p);
    let mut cfg = cfg(1024, 16);
    cfg.timeouts.udp = 5 * SEC;
    cfg.tcp_loose = false;
    c.set_policy(&cfg);
    let (_, _, _, s) = existing(c.track(now + SEC, &udp_pkt(t)));
    assert_eq!(s.expires, now + SEC + 5 * SEC, "the new udp_timeout");
    // A mid-stream ACK is not picked up with tcp_loose=0.
    let ack = tcp_pkt(tuple(C, 6000, SRV, 80, IPPROTO_TCP), seg(ACK, 1, 1, 100, 0));
    assert!(matches!(c.track(now, &ack), Track::Invalid { .. }));
}

/// The single timeouts the live policy reads by index are the right ones.
#[test]
fn live_policy_indices_name_their_timeouts() {
    let mut cfg = cfg(1024, 16);
    let t = &mut cfg.timeouts;
    (t.udp, t.udp_stream, t.icmp, t.generic) = (11, 12, 13, 14);
    let live = LivePolicy::new(&Policy::of(&cfg));
    assert_eq!(live.load(), Policy::of(&cfg));
    for (i, want) in [
        (LivePolicy::UDP, 11),
        (LivePolicy::UDP_STREAM, 12),
        (LivePolicy::ICMP, 13),
        (LivePolicy::GENERIC, 14),
    ] {
        assert_eq!(live.timeout(i), want);
    }
}

/// The IPv6 table: the same trackers, ICMPv6's types, the /proc form
/// Linux prints for `ipv6` entries, and one maximum for both families.
mod v6 {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::flow::IPPROTO_ICMPV6;

    const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
    const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x254);

    fn t6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, proto: u8) -> Tuple<Ipv6Addr> {
        Tuple {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }

    fn icmp6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ty: u8,
        id: u16,
        inner: Option<Tuple<Ipv6Addr>>,
    ) -> PacketMeta<Ipv6Addr> {
        let is_error = ty < 128;
        let id = if is_error { 0 } else { id };
        PacketMeta {
            tuple: t6(src, id, dst, id, IPPROTO_ICMPV6),
            len: 104,
            tcp: None,
            icmp: Some(IcmpMeta {
                ty,
                code: 0,
                is_query: !is_error,
                is_error,
                inner,
            }),
        }
    }

    fn pkt6(t: Tuple<Ipv6Addr>, s: Option<TcpSeg>) -> PacketMeta<Ipv6Addr> {
        PacketMeta {
            tuple: t,
            len: 60,
            tcp: s,
            icmp: None,
        }
    }

    fn pending6(tr: Track<Ipv6Addr>) -> Pending<Ipv6Addr> {
        match tr {
            Track::New(p) => p,
            other => panic!("expected New, got {other:?}"),
        }
    }

    fn existing6(tr: Track<Ipv6Addr>) -> (EntryRef, Dir, CtState, Snapshot<Ipv6Addr>) {
        match tr {
            Track::Existing {
                entry,
                dir,
                state,
                snap,
            } => (entry, dir, state, snap),
            other => panic!("expected Existing, got {other:?}"),
        }
    }

    #[test]
    fn tcp_handshake_and_proc_line() {
        let c4 = ct(1024, 16);
        let c = Conntrack::new6(&c4);
        let now = 10 * SEC;
        let t = t6(C6, 40000, S6, 80, IPPROTO_TCP);
        let p = pending6(c.track(now, &pkt6(t, Some(seg(SYN, 1000, 0, 64240, 0)))));
        c.confirm(now, &p).expect("confirm");
        existing6(c.track(
            now,
            &pkt6(t.invert(), Some(seg(SYN | ACK, 5000, 1001, 65160, 0))),
        ));
        let (_, dir, st, s) = existing6(c.track(now, &pkt6(t, Some(seg(ACK, 1001, 5001, 502, 0)))));
        assert_eq!(
            (dir, st, s.tcp_state),
            (Dir::Original, CtState::Established, TcpState::Established)
        );
        // As this kernel prints it (`%pI6`: nothing compressed).
        assert_eq!(
            proc_line(&s, now),
            "ipv6     10 tcp      6 432000 ESTABLISHED \
             src=fd00:0010:0000:0000:0000:0000:0000:0002 dst=2001:0db8:0020:0000:0000:0000:0000:0254 \
             sport=40000 dport=80 \
             src=2001:0db8:0020:0000:0000:0000:0000:0254 dst=fd00:0010:0000:0000:0000:0000:0000:0002 \
             sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2"
        );
        // The IPv4 table does not see it; both count it.
        assert!(c4.snapshot().is_empty());
        assert_eq!((c.len(), c4.len()), (1, 1));
    }

    #[test]
    fn icmpv6_echo_errors_and_not_new() {
        let c4 = ct(1024, 16);
        let c = Conntrack::new6(&c4);
        let now = 5 * SEC;
        let p = pending6(c.track(now, &icmp6(C6, S6, 128, 0x1234, None)));
        assert_eq!(p.timeout(), 30 * SEC);
        let e = c.confirm(now, &p).expect("confirm");
        let (_, dir, st, s) = existing6(c.track(now, &icmp6(S6, C6, 129, 0x1234, None)));
        assert_eq!((dir, st), (Dir::Reply, CtState::Established));
        assert!(proc_line(&s, now + 2 * SEC).starts_with(
            "ipv6     10 icmpv6   58 28 src=fd00:0010:0000:0000:0000:0000:0000:0002 \
             dst=2001:0db8:0020:0000:0000:0000:0000:0254 type=128 code=0 id=4660 \
             src=2001:0db8:0020:0000:0000:0000:0000:0254 dst=fd00:0010:0000:0000:0000:0000:0000:0002 \
             type=129 code=0 id=4660 mark=0"
        ));
        // An echo reply without an entry, and an unknown informational
        // type, cannot start one (`icmpv6_new`'s valid_new).
        for ty in [129, 200] {
            match c.track(now, &icmp6(S6, C6, ty, 0x9999, None)) {
                Track::Invalid { reason, .. } => assert_eq!(reason, InvalidReason::IcmpNotNew),
                other => panic!("type {ty}: {other:?}"),
            }
        }
        // A packet-too-big (2) quoting a UDP datagram of a known flow is
        // RELATED; types above ICMPv4's range are no error of their own.
        let u = t6(C6, 5000, S6, 53, IPPROTO_UDP);
        let ue = c
            .confirm(now, &pending6(c.track(now, &pkt6(u, None))))
            .expect("confirm");
        let router = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);
        let (e2, dir, st, _) = existing6(c.track(now, &icmp6(router, C6, 2, 0, Some(u))));
        assert_eq!((e2, dir, st), (ue, Dir::Reply, CtState::Related));
        assert!(c.get(e).is_some());
    }

    #[test]
    fn one_maximum_for_both_families() {
        let c4 = ct(64, 1);
        let c = Conntrack::new6(&c4);
        let now = SEC;
        // ASSURED entries cannot be early-dropped: fill with assured UDP.
        for i in 0..64u16 {
            let t = tuple(C, 1000 + i, SRV, 53, IPPROTO_UDP);
            let p = pending(c4.track(now, &udp_pkt(t)));
            confirm(&c4, now, &p);
        }
        assert_eq!(c4.len(), 64);
        let p = pending6(c.track(now, &pkt6(t6(C6, 1, S6, 53, IPPROTO_UDP), None)));
        assert_eq!(c.confirm(now, &p), Err(ConfirmError::TableFull));
        assert_eq!(c.max_entries(), 64);
    }
    /// A NAT66 entry and an ICMPv6 query learnt from a peer (state sync),
    /// committed into the IPv6 table: listed with their NAT, the NAT port
    /// held, mid-stream segments of both directions ESTABLISHED, an entry
    /// in the way replaced.
    #[test]
    fn committed_sync_entries6_carry_their_nat66() {
        let c4 = ct(1024, 4);
        let c = Conntrack::new6(&c4);
        let now = 100 * SEC;
        let wan = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1);
        let orig = t6(C6, 40000, S6, 80, IPPROTO_TCP);
        let reply = t6(S6, 80, wan, 61005, IPPROTO_TCP);
        let st = status::SEEN_REPLY | status::ASSURED | status::SRC_NAT;
        let e = SavedEntry::synced(orig, reply, st, 0, 300 * SEC, 3, (0, 0)).expect("tcp");
        let ping_o = t6(C6, 7, S6, 7, IPPROTO_ICMPV6);
        let ping_r = t6(S6, 7, wan, 7, IPPROTO_ICMPV6);
        let ping = SavedEntry::synced(ping_o, ping_r, status::SRC_NAT, 0, 30 * SEC, 0, (128, 0))
            .expect("icmpv6");
        // An entry in the way: another connection holding the reply tuple.
        let other = t6(
            Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 3),
            40001,
            S6,
            80,
            IPPROTO_TCP,
        );
        let mut p = pending6(c.track(now, &pkt6(other, Some(seg(SYN, 1, 0, 1000, 0)))));
        p.reply = reply;
        c.confirm(now, &p).expect("confirm");
        let r = c.commit(now, &[e, ping]);
        assert_eq!((r.restored, r.replaced, r.clashed), (2, 1, 0), "{r:?}");
        let l = c.listing(now);
        assert_eq!(l.len(), 2);
        let tcp = l.iter().find(|s| s.orig == orig).expect("listed");
        assert_eq!(tcp.reply, reply);
        assert_eq!(tcp.status, st | status::CONFIRMED);
        assert_eq!(tcp.tcp_state, TcpState::Established);
        let echo = l.iter().find(|s| s.orig == ping_o).expect("listed");
        assert_eq!((echo.reply, echo.icmp_type), (ping_r, 128));
        assert!(c.tuple_in_use(&reply));
        let t = now + SEC;
        let (_, dir, state, _) = existing6(c.track(
            t,
            &pkt6(reply, Some(seg(ACK | PSH, 77_000, 5_000, 500, 100))),
        ));
        assert_eq!((dir, state), (Dir::Reply, CtState::Established));
        let (_, dir, state, _) =
            existing6(c.track(t, &pkt6(orig, Some(seg(ACK, 5_000, 77_100, 500, 0)))));
        assert_eq!((dir, state), (Dir::Original, CtState::Established));
    }
}

/// An entry learnt from a peer (state sync) and committed: listed with its
/// NAT, its NAT port held, and the next segments of both directions
/// (mid-stream, any window: both sides liberal) are ESTABLISHED.
#[test]
fn committed_sync_entries_carry_their_nat_and_take_traffic() {
    let c = ct(1024, 4);
    let now = 100 * SEC;
    let orig = tuple(
        [192, 168, 10, 2],
        40000,
        [203, 0, 113, 254],
        80,
        IPPROTO_TCP,
    );
    let reply = tuple([203, 0, 113, 254], 80, [203, 0, 113, 1], 61005, IPPROTO_TCP);
    let st = status::SEEN_REPLY | status::ASSURED | status::SRC_NAT;
    let e = SavedEntry::synced(orig, reply, st | 0x180, 0, 300 * SEC, 3, (0, 0)).expect("tcp");
    let udp_o = tuple([192, 168, 10, 2], 5000, [203, 0, 113, 254], 53, IPPROTO_UDP);
    let udp_r = tuple([203, 0, 113, 254], 53, [203, 0, 113, 1], 61002, IPPROTO_UDP);
    let u = SavedEntry::synced(udp_o, udp_r, status::SRC_NAT, 0, 30 * SEC, 0, (0, 0)).expect("udp");
    assert!(SavedEntry::synced(orig, reply, st, 0, SEC, 10, (0, 0)).is_err());
    // An entry in the way (the reply tuple of another connection).
    let other = tuple(
        [192, 168, 10, 3],
        40001,
        [203, 0, 113, 254],
        80,
        IPPROTO_TCP,
    );
    let p = pending(c.track(now, &tcp_pkt(other, seg(SYN, 1, 0, 1000, 0))));
    let mut p2 = p;
    p2.reply = reply;
    confirm(&c, now, &p2);
    c.events_subscribe();
    let r = c.commit(now, &[e, u]);
    assert_eq!((r.restored, r.replaced, r.clashed), (2, 1, 0), "{r:?}");
    // The replaced entry's DESTROY and the committed entries' NEW, all
    // from userspace (what the sync does not send back to the peer).
    let mut ev = Vec::new();
    assert_eq!(c.events_drain(&mut ev), 0);
    let mut kinds: Vec<(EventKind, bool)> = ev.iter().map(|e| (e.kind, e.userspace())).collect();
    kinds.sort_by_key(|k| k.0 != EventKind::Destroy);
    assert_eq!(
        kinds,
        vec![
            (EventKind::Destroy, true),
            (EventKind::New, true),
            (EventKind::New, true)
        ]
    );
    c.events_unsubscribe();
    let l = c.listing(now);
    assert_eq!(l.len(), 2);
    let tcp = l.iter().find(|s| s.orig == orig).expect("listed");
    assert_eq!(tcp.reply, reply);
    assert_eq!(tcp.status, st | status::CONFIRMED);
    assert_eq!(tcp.tcp_state, TcpState::Established);
    assert_eq!(tcp.expires, now + 300 * SEC);
    assert!(c.tuple_in_use(&reply));
    assert!(c.tuple_in_use(&udp_r));
    // Mid-stream segments both ways, with sequence numbers never seen.
    let t = now + SEC;
    let (_, dir, state, _) =
        existing(c.track(t, &tcp_pkt(reply, seg(ACK | PSH, 77_000, 5_000, 500, 100))));
    assert_eq!((dir, state), (Dir::Reply, CtState::Established));
    let (_, dir, state, _) = existing(c.track(t, &tcp_pkt(orig, seg(ACK, 5_000, 77_100, 500, 0))));
    assert_eq!((dir, state), (Dir::Original, CtState::Established));
    let (_, dir, state, _) = existing(c.track(t, &udp_pkt(udp_r)));
    assert_eq!((dir, state), (Dir::Reply, CtState::Established));
    c.check_invariants();
}
