//! One end of a sync link, as conntrackd runs it (`sync-notrack.c`,
//! `sync-ftfw.c`, `network.c`): sequence numbers, the HELLO handshake,
//! acknowledgements, the resend queue, keep-alives, and the packing of
//! messages into datagrams. Sans I/O and clock: datagrams in
//! ([`Session::receive`]), datagrams out ([`Session::flush`]), time as a
//! parameter ([`Session::tick`]).
//!
//! - **NOTRACK**: messages are sent once; the receiver only counts the
//!   sequence numbers it missed.
//! - **FTFW** (fault-tolerant): the sender keeps what it sent in a bounded
//!   resend queue until the receiver acknowledges it (ACK `from`-`to`,
//!   after every `window` messages received, or at the next keep-alive); a
//!   receiver that sees a gap asks for it again (NACK `from`-`to`) and the
//!   sender sends those messages again, under new sequence numbers. A
//!   message older than the last one received is dropped. Each side flags
//!   its messages HELLO until the other answers HELLO_BACK: a HELLO makes
//!   the receiver accept the sequence number as new (a peer that restarted)
//!   and forget its resend queue (`ftfw_recv`, `digest_hello`).
//! - Both send a keep-alive (ALIVE, or in FTFW an ACK if one is due) after
//!   a second without sending (`ALIVE_INT`), and answer a RESYNC request
//!   with their whole table (here: the caller does, on
//!   [`Received::ResyncRequested`]).

use std::collections::VecDeque;

use super::wire::{self, flag, Body, CtKind, SyncedCt};

/// NOTRACK or FTFW (conntrackd.conf's `Sync { Mode ... }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Notrack,
    Ftfw,
}

/// A session's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub mode: Mode,
    /// The most bytes of messages in one datagram (the link's MTU less
    /// [`wire::UDP_OVERHEAD`]).
    pub payload: usize,
    /// FTFW: messages received between acknowledgements (`WindowSize`,
    /// default 300).
    pub window: u32,
    /// FTFW: messages kept for resending (`ResendQueueSize`, default
    /// 131072; the oldest go first when it is full).
    pub resend_queue: usize,
}

impl SessionConfig {
    pub fn new(mode: Mode, mtu: u32) -> SessionConfig {
        SessionConfig {
            mode,
            payload: (mtu as usize)
                .saturating_sub(wire::UDP_OVERHEAD)
                .max(wire::MAX_CT_LEN),
            window: 300,
            resend_queue: 131_072,
        }
    }
}

/// What a received datagram asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// An entry to put in the external cache (NEW, UPDATE) or take out of
    /// it (DESTROY).
    Ct(CtKind, SyncedCt),
    /// The peer wants the whole table (`conntrackd -n` there).
    ResyncRequested,
}

/// What a session has done (`conntrackd -s`'s "message tracking" and
/// traffic counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    pub datagrams_sent: u64,
    pub messages_sent: u64,
    pub datagrams_received: u64,
    pub messages_received: u64,
    /// Messages refused: framing, version, type, attributes.
    pub malformed: u64,
    /// Sequence numbers skipped by the peer (`msg_rcv_lost`).
    pub lost: u64,
    /// Messages older than the last one (`msg_rcv_before`), FTFW drops them.
    pub before: u64,
    /// FTFW: messages sent again after a NACK.
    pub resent: u64,
    /// FTFW: messages pushed out of a full resend queue before an ACK.
    pub resend_overflow: u64,
    /// Expectation messages (not used).
    pub expectations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hello {
    Init,
    Say,
    Done,
}

/// A message kept for resending: its sequence number and bytes.
#[derive(Debug)]
struct Kept {
    seq: u32,
    msg: Vec<u8>,
}

/// `before` of `include/network.h` (TCP's serial-number order).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `between`: `lo <= x <= hi` in serial-number order.
fn between(x: u32, lo: u32, hi: u32) -> bool {
    hi.wrapping_sub(lo) >= x.wrapping_sub(lo)
}

/// One end of a sync link.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    next_seq: u32,
    hello: Hello,
    say_hello_back: bool,
    /// Datagrams ready to go, and the one being filled.
    ready: Vec<Vec<u8>>,
    cur: Vec<u8>,
    /// When something was last sent (for the keep-alive).
    last_sent: u64,
    resend: VecDeque<Kept>,
    /// The last sequence number received, once there is one.
    last_recv: Option<u32>,
    /// FTFW: the first message not yet acknowledged, and how many more
    /// before the next ACK.
    ack_from: Option<u32>,
    window_left: u32,
    pub counters: SessionCounters,
}

/// A keep-alive is due after this long without sending (`ALIVE_INT`, 1 s).
pub const ALIVE_INTERVAL: u64 = 1_000_000_000;

impl Session {
    /// A session whose first message has sequence number `first_seq`
    /// (conntrackd starts from the Unix time in seconds), at `now` (ns).
    pub fn new(cfg: SessionConfig, first_seq: u32, now: u64) -> Session {
        Session {
            cfg,
            next_seq: first_seq,
            hello: Hello::Init,
            say_hello_back: false,
            ready: Vec::new(),
            cur: Vec::new(),
            last_sent: now,
            resend: VecDeque::new(),
            last_recv: None,
            ack_from: None,
            window_left: cfg.window,
            counters: SessionCounters::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Messages waiting for an acknowledgement (FTFW).
    pub fn unacknowledged(&self) -> usize {
        self.resend.len()
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = s.wrapping_add(1);
        s
    }

    /// The HELLO flags of the next message (`nethdr_set_hello`; FTFW only).
    fn hello_flags(&mut self) -> u8 {
        if self.cfg.mode != Mode::Ftfw {
            return 0;
        }
        let mut f = 0;
        if self.hello == Hello::Init {
            self.hello = Hello::Say;
        }
        if self.hello == Hello::Say {
            f |= flag::HELLO;
        }
        if self.say_hello_back {
            f |= flag::HELLO_BACK;
            self.say_hello_back = false;
        }
        f
    }

    /// Adds a built message to the datagram being filled, closing it first
    /// if the message does not fit.
    fn push(&mut self, msg: &[u8]) {
        if !self.cur.is_empty() && self.cur.len() + msg.len() > self.cfg.payload {
            self.ready.push(std::mem::take(&mut self.cur));
        }
        self.cur.extend_from_slice(msg);
        self.counters.messages_sent += 1;
    }

    /// Keeps a sent data message for resending (FTFW), the oldest pushed
    /// out when the queue is full (`rs_queue_purge_full`).
    fn keep(&mut self, seq: u32, msg: Vec<u8>) {
        if self.cfg.mode != Mode::Ftfw {
            return;
        }
        if self.resend.len() >= self.cfg.resend_queue {
            self.resend.pop_front();
            self.counters.resend_overflow += 1;
        }
        self.resend.push_back(Kept { seq, msg });
    }

    /// Sends an entry's change.
    pub fn send_ct(&mut self, kind: CtKind, ct: &SyncedCt) {
        let flags = self.hello_flags();
        let seq = self.seq();
        let mut msg = Vec::with_capacity(wire::MAX_CT_LEN);
        wire::build_ct(&mut msg, kind, flags, seq, ct);
        self.push(&msg);
        self.keep(seq, msg);
    }

    fn send_ctl(&mut self, flags: u8, range: Option<(u32, u32)>) {
        let flags = flags | self.hello_flags();
        let seq = self.seq();
        let mut msg = Vec::with_capacity(wire::ACK_HDR_LEN);
        wire::build_ctl(&mut msg, flags, seq, range);
        self.push(&msg);
    }

    /// Asks the peer for its whole table (`conntrackd -n`).
    pub fn request_resync(&mut self) {
        self.send_ctl(flag::RESYNC, Some((0, 0)));
    }

    /// At `now`: a keep-alive if nothing was sent for [`ALIVE_INTERVAL`]
    /// (FTFW: an ACK of what came since the last one, if any,
    /// `do_alive_alarm`).
    pub fn tick(&mut self, now: u64) {
        if !self.cur.is_empty() || !self.ready.is_empty() {
            return;
        }
        if now.saturating_sub(self.last_sent) < ALIVE_INTERVAL {
            return;
        }
        match (self.cfg.mode, self.ack_from, self.last_recv) {
            (Mode::Ftfw, Some(from), Some(last)) => {
                self.ack_from = None;
                self.send_ctl(flag::ACK, Some((from, last)));
            }
            _ => self.send_ctl(flag::ALIVE, None),
        }
    }

    /// The datagrams to send now (the one being filled closed), at `now`.
    pub fn flush(&mut self, now: u64) -> Vec<Vec<u8>> {
        if !self.cur.is_empty() {
            self.ready.push(std::mem::take(&mut self.cur));
        }
        if !self.ready.is_empty() {
            self.last_sent = now;
        }
        self.counters.datagrams_sent += self.ready.len() as u64;
        std::mem::take(&mut self.ready)
    }

    /// Reads a datagram from the peer: what it asks of this side goes to
    /// `out`; acknowledgements and requests to send again are handled here
    /// (their answers go out with the next [`Session::flush`]).
    pub fn receive(&mut self, datagram: &[u8], out: &mut Vec<Received>) {
        self.counters.datagrams_received += 1;
        for m in wire::messages(datagram) {
            let m = match m {
                Ok(m) => m,
                Err(_) => {
                    self.counters.malformed += 1;
                    continue;
                }
            };
            self.counters.messages_received += 1;
            let accept = match self.cfg.mode {
                Mode::Notrack => self.track_notrack(&m),
                Mode::Ftfw => self.track_ftfw(&m),
            };
            if !accept {
                continue;
            }
            match m.body {
                Body::Ct(kind, attrs) => match wire::parse_ct(attrs) {
                    Ok(ct) => out.push(Received::Ct(kind, ct)),
                    Err(_) => self.counters.malformed += 1,
                },
                Body::Exp => self.counters.expectations += 1,
                Body::Ctl { .. } => {
                    if m.hdr.flags & flag::RESYNC != 0 {
                        out.push(Received::ResyncRequested);
                    }
                }
            }
        }
    }

    /// `nethdr_track_seq`: counts the messages skipped.
    fn track_lost(&mut self, seq: u32) {
        if let Some(last) = self.last_recv {
            let want = last.wrapping_add(1);
            if seq != want && !before(seq, want) {
                self.counters.lost += u64::from(seq.wrapping_sub(want));
            } else if before(seq, want) {
                self.counters.before += 1;
            }
        }
    }

    /// `notrack_recv`: every well-formed message is taken.
    fn track_notrack(&mut self, m: &wire::Message<'_>) -> bool {
        self.track_lost(m.hdr.seq);
        self.last_recv = Some(m.hdr.seq);
        true
    }

    /// `ftfw_recv`: whether the message is taken (a delayed one is not).
    fn track_ftfw(&mut self, m: &wire::Message<'_>) -> bool {
        let seq = m.hdr.seq;
        // `digest_hello`.
        let hello = m.hdr.flags & flag::HELLO != 0;
        if hello {
            self.say_hello_back = true;
        }
        if m.hdr.flags & flag::HELLO_BACK != 0 && self.hello == Hello::Say {
            self.hello = Hello::Done;
        }
        let in_sync = match self.last_recv {
            None => true,
            Some(last) => seq == last.wrapping_add(1),
        };
        if hello {
            // The peer (re)started: what it had not acknowledged it never
            // will; its sequence numbers start afresh.
            if self.ack_from.is_some_and(|from| before(seq, from)) {
                self.window_left = self.cfg.window.saturating_sub(1);
                self.ack_from = Some(seq);
            }
            self.resend.clear();
        } else if !in_sync {
            let want = self.last_recv.map_or(seq, |l| l.wrapping_add(1));
            if before(seq, want) {
                self.counters.before += 1;
                return false;
            }
            self.counters.lost += u64::from(seq.wrapping_sub(want));
            self.digest_ctl(m);
            if let Some(from) = self.ack_from.take() {
                self.send_ctl(flag::ACK, Some((from, want.wrapping_sub(1))));
            }
            self.send_ctl(flag::NACK, Some((want, seq.wrapping_sub(1))));
            self.window_left = self.cfg.window.saturating_sub(1);
            self.ack_from = Some(seq);
            self.last_recv = Some(seq);
            return true;
        }
        self.digest_ctl(m);
        if self.ack_from.is_none() {
            self.ack_from = Some(seq);
        }
        self.window_left = self.window_left.saturating_sub(1);
        if self.window_left == 0 {
            let from = self.ack_from.take().unwrap_or(seq);
            self.send_ctl(flag::ACK, Some((from, seq)));
            self.window_left = self.cfg.window;
        }
        self.last_recv = Some(seq);
        true
    }

    /// FTFW's `digest_msg` for ACK and NACK: forget what was acknowledged;
    /// send again what was asked for.
    fn digest_ctl(&mut self, m: &wire::Message<'_>) {
        let Body::Ctl {
            range: Some((from, to)),
        } = m.body
        else {
            return;
        };
        if before(to, from) {
            return;
        }
        if m.hdr.flags & flag::ACK != 0 {
            self.resend.retain(|k| !between(k.seq, from, to));
        } else if m.hdr.flags & flag::NACK != 0 {
            let (again, keep): (Vec<Kept>, Vec<Kept>) = self
                .resend
                .drain(..)
                .partition(|k| between(k.seq, from, to));
            self.resend = keep.into();
            for mut k in again {
                // Under a new sequence number, as conntrackd rebuilds it.
                let seq = self.seq();
                k.msg[4..8].copy_from_slice(&seq.to_be_bytes());
                let hello = self.hello_flags();
                k.msg[1] = (k.msg[1] & !(flag::HELLO | flag::HELLO_BACK)) | hello;
                self.push(&k.msg);
                self.counters.resent += 1;
                self.keep(seq, k.msg);
            }
        }
    }
}

#[cfg(test)]
mod tests;
