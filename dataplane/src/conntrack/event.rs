//! Conntrack events, as Linux's ctnetlink sends them to `conntrack -E`:
//! NEW when an entry is confirmed, UPDATE when a packet changed its status
//! (SEEN_REPLY, ASSURED) or its TCP state, DESTROY when it goes (expiry,
//! deletion, early drop, a TCP re-open or reset). One packet makes at most
//! one event, as Linux's event cache delivers the union of a packet's
//! changes once.
//!
//! Recording costs nothing while nobody listens: each shard holds an
//! optional ring ([`EventRing<A>`]), present only between the first
//! [`Conntrack::events_subscribe`](super::Conntrack::events_subscribe) and
//! the last unsubscribe (allocated and freed on the control thread). The
//! packet path writes an event under the shard lock it already holds, into
//! preallocated space, without formatting; a full ring drops the event and
//! counts it. The control thread drains the rings (one shard lock at a
//! time) and formats ([`event_line`]).
//!
//! Facts from Linux 6.x `ctnetlink_conntrack_event` and libnetfilter_conntrack
//! `__snprintf_conntrack_default`, checked against this machine's
//! conntrack-tools 1.4.7 on kernel 6.18:
//!
//! ```text
//! "%9s "          [NEW] | [UPDATE] | [DESTROY]
//! "%-8s %u "      l4 name, l4 number
//! "%u "           seconds until expiry (DESTROY: only when not 0)
//! "%s "           TCP state (NEW and DESTROY of TCP; UPDATE when it changed)
//! tuples          as /proc/net/nf_conntrack, [UNREPLIED] and [ASSURED] too
//! "mark=%u "      only when not 0
//! "[USERSPACE] portid=%u progname=%s "  DESTROY caused by a deletion from
//!                 userspace (progname while the deleting process lives)
//! ```
//!
//! and the last blank removed.

use std::collections::VecDeque;
use std::fmt::Write;

use super::proc::{l4_name, push_tuples, AddrForm};
use super::{Nanos, Snapshot, NANOS_PER_SEC};
use std::net::Ipv4Addr;

use crate::flow::{Addr, IPPROTO_TCP};

/// What happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

impl EventKind {
    /// The tag conntrack-tools prints.
    pub fn tag(self) -> &'static str {
        match self {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        }
    }
}

/// One event: a copy of the entry after the change, taken under its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEvent<A: Addr = Ipv4Addr> {
    pub kind: EventKind,
    /// The `now` of the packet or timer that caused it; `None` for a change
    /// the control plane made: a deletion (`conntrack -D/-F`), an entry put
    /// in by a restore or a sync commit.
    pub at: Option<Nanos>,
    /// The TCP state is part of the event (Linux: `IPCT_PROTOINFO`).
    pub protoinfo: bool,
    pub snap: Snapshot<A>,
}

impl<A: Addr> CtEvent<A> {
    /// Whether the event was caused by the control plane (userspace).
    pub fn userspace(&self) -> bool {
        self.at.is_none()
    }
}

/// A shard's bounded event queue. Its space is reserved when it is made;
/// `push` never allocates.
#[derive(Debug)]
pub(super) struct EventRing<A: Addr = Ipv4Addr> {
    events: VecDeque<CtEvent<A>>,
    cap: usize,
    /// Events dropped because the ring was full.
    lost: u64,
}

impl<A: Addr> EventRing<A> {
    pub fn new(cap: usize) -> EventRing<A> {
        let cap = cap.max(1);
        EventRing {
            events: VecDeque::with_capacity(cap),
            cap,
            lost: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, e: CtEvent<A>) {
        if self.events.len() < self.cap {
            self.events.push_back(e);
        } else {
            self.lost += 1;
        }
    }

    /// Moves the events to `out`; returns (and resets) the lost count.
    pub fn drain_into(&mut self, out: &mut Vec<CtEvent<A>>) -> u64 {
        out.extend(self.events.drain(..));
        std::mem::take(&mut self.lost)
    }
}

/// The line `conntrack -E` prints for an event (without newline). `now`
/// is the formatter's clock, used for deletions from userspace (they carry
/// no time of their own); `deleter` (an id and a program name) is printed
/// for those as conntrack-tools prints the deleting netlink socket's portid
/// and the name of the process that holds it.
pub fn event_line<A: Addr>(e: &CtEvent<A>, now: Nanos, deleter: (u32, &str)) -> String {
    let s = &e.snap;
    let mut out = String::with_capacity(224);
    let proto = s.orig.proto;
    let _ = write!(out, "{:>9} {:<8} {} ", e.kind.tag(), l4_name(proto), proto);
    let secs = s.expires.saturating_sub(e.at.unwrap_or(now)) / NANOS_PER_SEC;
    if e.kind != EventKind::Destroy || secs != 0 {
        let _ = write!(out, "{secs} ");
    }
    if proto == IPPROTO_TCP && (e.protoinfo || e.kind != EventKind::Update) {
        let _ = write!(out, "{} ", s.tcp_state.name());
    }
    // conntrack-tools writes addresses with `inet_ntop` (IPv6 compressed).
    push_tuples(&mut out, s, AddrForm::Ntop);
    if s.mark != 0 {
        let _ = write!(out, "mark={} ", s.mark);
    }
    if e.userspace() {
        let _ = write!(
            out,
            "[USERSPACE] portid={} progname={} ",
            deleter.0, deleter.1
        );
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{status, TcpState};
    use crate::flow::{Tuple, IPPROTO_ICMP, IPPROTO_UDP};
    use std::net::Ipv4Addr;

    fn tuple(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            sport,
            dport,
            proto,
        }
    }

    fn snap(proto: u8, status: u16, state: TcpState, expires: Nanos) -> Snapshot {
        let orig = tuple(proto, [127, 0, 0, 1], [127, 0, 0, 1], 39774, 8080);
        Snapshot {
            orig,
            reply: orig.invert(),
            status,
            tcp_state: state,
            mark: 0,
            expires,
            packets: [1, 0],
            bytes: [60, 0],
            icmp_type: 0,
            icmp_code: 0,
        }
    }

    const S: Nanos = NANOS_PER_SEC;

    /// Lines captured from conntrack-tools 1.4.7 (`conntrack -E`) on Linux
    /// 6.18 for a loopback TCP connection, a UDP datagram and a deletion
    /// (by a `conntrack -D` still running when the event was printed).
    #[test]
    fn lines_match_conntrack_tools() {
        let at = 1000 * S;
        let ev = |kind, protoinfo, snap| CtEvent {
            kind,
            at: Some(at),
            protoinfo,
            snap,
        };
        let new = ev(
            EventKind::New,
            true,
            snap(IPPROTO_TCP, 0, TcpState::SynSent, at + 120 * S),
        );
        assert_eq!(
            event_line(&new, 0, (0, "")),
            "    [NEW] tcp      6 120 SYN_SENT src=127.0.0.1 dst=127.0.0.1 sport=39774 dport=8080 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=39774"
        );
        let recv = ev(
            EventKind::Update,
            true,
            snap(
                IPPROTO_TCP,
                status::SEEN_REPLY,
                TcpState::SynRecv,
                at + 60 * S,
            ),
        );
        assert_eq!(
            event_line(&recv, 0, (0, "")),
            " [UPDATE] tcp      6 60 SYN_RECV src=127.0.0.1 dst=127.0.0.1 sport=39774 dport=8080 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=39774"
        );
        let est = ev(
            EventKind::Update,
            true,
            snap(
                IPPROTO_TCP,
                status::SEEN_REPLY | status::ASSURED,
                TcpState::Established,
                at + 432000 * S,
            ),
        );
        assert_eq!(
            event_line(&est, 0, (0, "")),
            " [UPDATE] tcp      6 432000 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=39774 dport=8080 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=39774 [ASSURED]"
        );
        let mut udp = snap(IPPROTO_UDP, 0, TcpState::None, at + 30 * S);
        udp.orig.sport = 60682;
        udp.orig.dport = 9999;
        udp.reply = udp.orig.invert();
        assert_eq!(
            event_line(&ev(EventKind::New, false, udp), 0, (0, "")),
            "    [NEW] udp      17 30 src=127.0.0.1 dst=127.0.0.1 sport=60682 dport=9999 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=9999 dport=60682"
        );
        // A deletion from userspace: the remaining time and the state.
        let del = CtEvent {
            kind: EventKind::Destroy,
            at: None,
            protoinfo: true,
            snap: snap(
                IPPROTO_TCP,
                status::SEEN_REPLY | status::ASSURED,
                TcpState::Established,
                at + 432000 * S,
            ),
        };
        assert_eq!(
            event_line(&del, at + S / 2, (2282793036, "conntrack")),
            "[DESTROY] tcp      6 431999 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=39774 dport=8080 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=39774 [ASSURED] [USERSPACE] portid=2282793036 progname=conntrack"
        );
    }

    #[test]
    fn expiry_omits_the_timeout_and_updates_without_state_change_omit_it() {
        let at = 50 * S;
        let gone = CtEvent {
            kind: EventKind::Destroy,
            at: Some(at),
            protoinfo: true,
            snap: snap(
                IPPROTO_TCP,
                status::SEEN_REPLY | status::ASSURED,
                TcpState::TimeWait,
                at,
            ),
        };
        assert_eq!(
            event_line(&gone, 0, (0, "")),
            "[DESTROY] tcp      6 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=39774 dport=8080 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=39774 [ASSURED]"
        );
        let mut s = snap(IPPROTO_TCP, status::SEEN_REPLY, TcpState::SynRecv, at + S);
        s.mark = 7;
        let upd = CtEvent {
            kind: EventKind::Update,
            at: Some(at),
            protoinfo: false,
            snap: s,
        };
        assert!(event_line(&upd, 0, (0, "")).starts_with(" [UPDATE] tcp      6 1 src="));
        assert!(event_line(&upd, 0, (0, "")).ends_with("dport=39774 mark=7"));
        let mut ping = snap(IPPROTO_ICMP, 0, TcpState::None, at + 30 * S);
        ping.orig = tuple(IPPROTO_ICMP, [192, 168, 10, 2], [203, 0, 113, 254], 7, 7);
        ping.reply = tuple(IPPROTO_ICMP, [203, 0, 113, 254], [203, 0, 113, 1], 7, 7);
        ping.icmp_type = 8;
        let new = CtEvent {
            kind: EventKind::New,
            at: Some(at),
            protoinfo: false,
            snap: ping,
        };
        assert_eq!(
            event_line(&new, 0, (0, "")),
            "    [NEW] icmp     1 30 src=192.168.10.2 dst=203.0.113.254 type=8 code=0 id=7 [UNREPLIED] src=203.0.113.254 dst=203.0.113.1 type=0 code=0 id=7"
        );
    }

    #[test]
    fn a_full_ring_counts_what_it_drops() {
        let mut r = EventRing::new(2);
        let e = CtEvent {
            kind: EventKind::New,
            at: Some(0),
            protoinfo: false,
            snap: snap(IPPROTO_UDP, 0, TcpState::None, 0),
        };
        for _ in 0..5 {
            r.push(e);
        }
        let mut out = Vec::new();
        assert_eq!(r.drain_into(&mut out), 3);
        assert_eq!(out.len(), 2);
        assert_eq!(r.drain_into(&mut out), 0);
        assert_eq!(out.len(), 2);
    }
}
