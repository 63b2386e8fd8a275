//! TCP connection tracking, ported from Linux's
//! net/netfilter/nf_conntrack_proto_tcp.c (6.x): the flag check
//! (`tcp_valid_flags`), the state table (`tcp_conntracks[2][6][10]`), the
//! window tracking of Guido van Rooij's "Real Stateful TCP Packet Filtering
//! in IP Filter" (`tcp_in_window`), and the per-packet logic
//! (`tcp_new`, `nf_conntrack_tcp_packet`: ignored segments, re-opening of
//! closed connections, RST checks, timeouts, ASSURED).
//!
//! Everything here works on one entry's private state under its shard lock;
//! no allocation, no formatting.

use super::{status, InvalidReason, Nanos, Policy, TcpSeg, TcpState, Verdict};

/// TCP header flag bits, as in `TcpSeg::flags` (the wire module's).
pub mod flag {
    pub use crate::wire::{
        TCP_ACK as ACK, TCP_CWR as CWR, TCP_ECE as ECE, TCP_FIN as FIN, TCP_PSH as PSH,
        TCP_RST as RST, TCP_SYN as SYN, TCP_URG as URG,
    };
}

// What a segment is, for the state table (Linux's `enum tcp_bit_set`).
const SYN_SET: u8 = 0;
const SYNACK_SET: u8 = 1;
const FIN_SET: u8 = 2;
const ACK_SET: u8 = 3;
const RST_SET: u8 = 4;
const NONE_SET: u8 = 5;

// Per-direction flags (`IP_CT_TCP_FLAG_*`).
const F_WINDOW_SCALE: u8 = 0x01;
const F_SACK_PERM: u8 = 0x02;
const F_CLOSE_INIT: u8 = 0x04;
const F_BE_LIBERAL: u8 = 0x08;
const F_DATA_UNACKNOWLEDGED: u8 = 0x10;
const F_MAXACK_SET: u8 = 0x20;
// `last_flags` only.
const F_EXP_CHALLENGE_ACK: u8 = 0x40;
const F_SIMULTANEOUS_OPEN: u8 = 0x80;

const TCP_MAX_WSCALE: u8 = 14;
const MAXACKWINCONST: u32 = 66_000;
const ORIGINAL: u8 = 0;
const REPLY: u8 = 1;

// State table values: 0..=9 are `TcpState`s; then Linux's
// TCP_CONNTRACK_MAX (invalid) and TCP_CONNTRACK_IGNORE.
const NO: u8 = TcpState::None as u8;
const SS: u8 = TcpState::SynSent as u8;
const SR: u8 = TcpState::SynRecv as u8;
const ES: u8 = TcpState::Established as u8;
const FW: u8 = TcpState::FinWait as u8;
const CW: u8 = TcpState::CloseWait as u8;
const LA: u8 = TcpState::LastAck as u8;
const TW: u8 = TcpState::TimeWait as u8;
const CL: u8 = TcpState::Close as u8;
const S2: u8 = TcpState::SynSent2 as u8;
const IV: u8 = 10;
const IG: u8 = 11;

/// `tcp_conntracks[dir][segment][old state]` (Linux 6.x). Columns:
/// NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
/// TIME_WAIT, CLOSE, SYN_SENT2.
#[rustfmt::skip]
static TABLE: [[[u8; 10]; 6]; 2] = [
    [
        // ORIGINAL
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    [
        // REPLY
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// One direction's window data (`struct ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Side {
    /// Highest seq + len seen from this side.
    end: u32,
    /// Highest ack + window this side may send up to.
    maxend: u32,
    /// Largest window seen from this side.
    maxwin: u32,
    /// Highest ack seen from this side.
    maxack: u32,
    scale: u8,
    flags: u8,
}

/// The TCP part of an entry (`struct ip_ct_tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TcpCt {
    seen: [Side; 2],
    pub(super) state: TcpState,
    last_dir: u8,
    retrans: u8,
    last_index: u8,
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    last_wscale: u8,
    last_flags: u8,
}

impl TcpCt {
    fn zeroed() -> TcpCt {
        TcpCt {
            seen: [Side::default(); 2],
            state: TcpState::None,
            last_dir: 0,
            retrans: 0,
            last_index: 0,
            last_seq: 0,
            last_ack: 0,
            last_end: 0,
            last_win: 0,
            last_wscale: 0,
            last_flags: 0,
        }
    }

    /// The TCP part of an entry learnt from a peer gateway (state sync): its
    /// state and no window history, both sides liberal, as conntrackd
    /// commits an entry (`nl_create_conntrack`: `IP_CT_TCP_FLAG_SACK_PERM |
    /// IP_CT_TCP_FLAG_BE_LIBERAL`, `td_maxwin` 0 so that the first segment
    /// of each side sets its window, as for a picked-up connection).
    pub(super) fn synced(state: TcpState) -> TcpCt {
        let mut ct = TcpCt::zeroed();
        ct.state = state;
        // (conntrackd's "workaround": TIME_WAIT and later also close-init.)
        let close = if state as u8 >= TcpState::TimeWait as u8 {
            F_CLOSE_INIT
        } else {
            0
        };
        ct.seen[0].flags = F_SACK_PERM | F_BE_LIBERAL | close;
        ct.seen[1].flags = F_SACK_PERM | F_BE_LIBERAL | close;
        ct.last_index = NONE_SET;
        ct
    }

    /// Can gc evict this entry early under pressure (`tcp_can_early_drop`)?
    pub(super) fn can_early_drop(&self) -> bool {
        is_closing(self.state)
    }

    /// The whole state in [`SAVED_LEN`] bytes, little-endian, for a saved
    /// table (`saved.rs`): per side `end`, `maxend`, `maxwin`, `maxack`,
    /// `scale`, `flags`; then `state`, `last_dir`, `retrans`, `last_index`,
    /// `last_seq`, `last_ack`, `last_end`, `last_win`, `last_wscale`,
    /// `last_flags`.
    pub(super) fn save(&self) -> [u8; SAVED_LEN] {
        let mut b = [0u8; SAVED_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        for s in &self.seen {
            put(&s.end.to_le_bytes());
            put(&s.maxend.to_le_bytes());
            put(&s.maxwin.to_le_bytes());
            put(&s.maxack.to_le_bytes());
            put(&[s.scale, s.flags]);
        }
        put(&[
            self.state as u8,
            self.last_dir,
            self.retrans,
            self.last_index,
        ]);
        put(&self.last_seq.to_le_bytes());
        put(&self.last_ack.to_le_bytes());
        put(&self.last_end.to_le_bytes());
        put(&self.last_win.to_le_bytes());
        put(&[self.last_wscale, self.last_flags]);
        b
    }

    /// The state [`TcpCt::save`] wrote; why not, if a field is outside the
    /// values tracking gives it (a state past SYN_SENT2, a window scale
    /// past 14, a direction past 1, a segment kind past "none").
    pub(super) fn load(b: &[u8; SAVED_LEN]) -> Result<TcpCt, &'static str> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let side = |i: usize| Side {
            end: u32_at(i),
            maxend: u32_at(i + 4),
            maxwin: u32_at(i + 8),
            maxack: u32_at(i + 12),
            scale: b[i + 16],
            flags: b[i + 17],
        };
        let ct = TcpCt {
            seen: [side(0), side(18)],
            state: TcpState::ALL
                .get(usize::from(b[36]))
                .copied()
                .ok_or("bad TCP state")?,
            last_dir: b[37],
            retrans: b[38],
            last_index: b[39],
            last_seq: u32_at(40),
            last_ack: u32_at(44),
            last_end: u32_at(48),
            last_win: u16::from_le_bytes([b[52], b[53]]),
            last_wscale: b[54],
            last_flags: b[55],
        };
        if ct.seen.iter().any(|s| s.scale > TCP_MAX_WSCALE) || ct.last_wscale > TCP_MAX_WSCALE {
            return Err("bad TCP window scale");
        }
        if ct.last_dir > REPLY || ct.last_index > NONE_SET {
            return Err("bad TCP last segment");
        }
        Ok(ct)
    }
}

/// The length of [`TcpCt::save`]'s bytes.
pub(super) const SAVED_LEN: usize = 56;

fn is_closing(s: TcpState) -> bool {
    matches!(
        s,
        TcpState::FinWait
            | TcpState::LastAck
            | TcpState::TimeWait
            | TcpState::Close
            | TcpState::CloseWait
    )
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `tcp_valid_flags`: PSH, ECE and CWR are always allowed.
pub(super) fn valid_flags(flags: u8) -> bool {
    use flag::*;
    let f = flags & !(ECE | CWR | PSH);
    const VALID: [u8; 9] = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    VALID.contains(&f)
}

/// `get_conntrack_index`.
fn segment_index(flags: u8) -> u8 {
    if flags & flag::RST != 0 {
        RST_SET
    } else if flags & flag::SYN != 0 {
        if flags & flag::ACK != 0 {
            SYNACK_SET
        } else {
            SYN_SET
        }
    } else if flags & flag::FIN != 0 {
        FIN_SET
    } else if flags & flag::ACK != 0 {
        ACK_SET
    } else {
        NONE_SET
    }
}

/// `segment_seq_plus_len`: the sequence number after this segment.
fn segment_end(seg: &TcpSeg) -> u32 {
    seg.seq
        .wrapping_add(seg.payload_len)
        .wrapping_add(u32::from(seg.flags & flag::SYN != 0))
        .wrapping_add(u32::from(seg.flags & flag::FIN != 0))
}

fn maxackwindow(sender: &Side) -> u32 {
    sender.maxwin.max(MAXACKWINCONST)
}

/// `tcp_options`: the window scale and SACK-permitted options of a SYN.
fn take_options(seg: &TcpSeg, side: &mut Side) {
    side.scale = 0;
    side.flags &= F_BE_LIBERAL;
    if seg.sack_perm {
        side.flags |= F_SACK_PERM;
    }
    if let Some(ws) = seg.wscale {
        side.scale = ws.min(TCP_MAX_WSCALE);
        side.flags |= F_WINDOW_SCALE;
    }
}

/// `tcp_init_sender`: a SYN-ACK answering a SYN, or a SYN from the reply
/// side in a simultaneous open.
fn init_sender(sender: &mut Side, receiver: &mut Side, seg: &TcpSeg, end: u32, dir: u8) {
    sender.end = end;
    sender.maxend = end;
    sender.maxwin = u32::from(seg.window).max(1);
    take_options(seg, sender);
    // RFC 1323: both sides must send the option for scaling to apply.
    if dir == REPLY && !(sender.flags & F_WINDOW_SCALE != 0 && receiver.flags & F_WINDOW_SCALE != 0)
    {
        sender.scale = 0;
        receiver.scale = 0;
    }
}

/// `nf_ct_tcp_state_reset`.
fn reset_side(s: &mut Side) {
    s.end = 0;
    s.maxend = 0;
    s.maxwin = 0;
    s.maxack = 0;
    s.scale = 0;
    s.flags &= F_BE_LIBERAL;
}

/// `tcp_new`: the TCP state of a connection this segment opens, or why it
/// cannot open one.
pub(super) fn new(seg: &TcpSeg, pol: &Policy) -> Result<TcpCt, InvalidReason> {
    let index = segment_index(seg.flags);
    let new_state = TABLE[0][usize::from(index)][usize::from(NO)];
    if new_state >= IV {
        return Err(InvalidReason::TcpNewInvalid);
    }
    let mut ct = TcpCt::zeroed();
    let end = segment_end(seg);
    let s0 = &mut ct.seen[0];
    if new_state == SS {
        s0.end = end;
        s0.maxwin = u32::from(seg.window).max(1);
        s0.maxend = end;
        take_options(seg, s0);
    } else if !pol.tcp_loose {
        return Err(InvalidReason::TcpNoSynForNew);
    } else {
        // Mid-stream pickup: the history is lost, use what the packet says
        // and be liberal (window scaling is unknown).
        s0.end = end;
        s0.maxwin = u32::from(seg.window).max(1);
        s0.maxend = end.wrapping_add(s0.maxwin);
        ct.seen[0].flags = F_SACK_PERM | F_BE_LIBERAL;
        ct.seen[1].flags = F_SACK_PERM | F_BE_LIBERAL;
    }
    ct.last_index = NONE_SET;
    Ok(ct)
}

/// What `tcp_in_window` decided.
enum Window {
    Accept,
    Ignore,
    Invalid(InvalidReason),
}

/// `nf_tcp_log_invalid`: a liberal sender (picked-up connection, or the
/// sysctl) gets everything accepted.
fn liberal_or(sender: &Side, pol: &Policy, w: Window) -> Window {
    if sender.flags & F_BE_LIBERAL != 0 || pol.tcp_be_liberal {
        Window::Accept
    } else {
        w
    }
}

/// `tcp_in_window`. SACK blocks are not available (the pipeline passes no
/// SACK edges), so `sack == ack` as for a segment without the option.
fn in_window(ct: &mut TcpCt, dir: u8, index: u8, seg: &TcpSeg, pol: &Policy) -> Window {
    let old_state = ct.state;
    let (sender, receiver) = {
        let [s0, s1] = &mut ct.seen;
        if dir == ORIGINAL {
            (s0, s1)
        } else {
            (s1, s0)
        }
    };
    let syn = seg.flags & flag::SYN != 0;
    let ack_flag = seg.flags & flag::ACK != 0;
    let rst = seg.flags & flag::RST != 0;
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut sack = ack;
    let win_raw = seg.window;
    let mut win = u32::from(win_raw);
    let mut end = segment_end(seg);

    if sender.maxwin == 0 {
        // First segment seen from this side.
        if syn {
            init_sender(sender, receiver, seg, end, dir);
            if !ack_flag {
                // Simultaneous open.
                return Window::Accept;
            }
        } else {
            // Mid-connection: use the data from the packet.
            sender.end = end;
            let swin = win << sender.scale;
            sender.maxwin = swin.max(1);
            sender.maxend = end.wrapping_add(sender.maxwin);
            if receiver.maxwin == 0 {
                // No traffic the other way yet: let III and IV pass.
                receiver.end = sack;
                receiver.maxend = sack;
            } else if sack == receiver.end.wrapping_add(1) {
                // Likely a reply to a keepalive.
                receiver.end = receiver.end.wrapping_add(1);
            }
        }
    } else if syn
        && after(end, sender.end)
        && matches!(old_state, TcpState::SynSent | TcpState::SynRecv)
    {
        // RFC 793: a re-initialised TCP uses larger sequence numbers;
        // re-init this direction as for the first SYN(-ACK).
        init_sender(sender, receiver, seg, end, dir);
        if dir == REPLY && !ack_flag {
            return Window::Accept;
        }
    }

    if !ack_flag {
        // No ACK: pretend it was set and fine.
        ack = receiver.end;
        sack = receiver.end;
    } else if seg.flags & (flag::ACK | flag::RST) == (flag::ACK | flag::RST) && ack == 0 {
        // Broken stacks set ACK in RSTs with a zero ack.
        ack = receiver.end;
        sack = receiver.end;
    }

    if rst && seq == 0 && old_state == TcpState::SynSent {
        // RST answering a SYN.
        seq = sender.end;
        end = sender.end;
    }

    let seq_ok = before(seq, sender.maxend.wrapping_add(1));
    if !seq_ok {
        let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
        let ack_ok = after(
            sack,
            receiver
                .end
                .wrapping_sub(maxackwindow(sender))
                .wrapping_sub(1),
        );
        let in_recv_win = receiver.maxwin != 0
            && after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            );
        if in_recv_win
            && ack_ok
            && overshot <= receiver.maxwin
            && before(sack, receiver.end.wrapping_add(1))
        {
            // A TCP sending more than the window allows: keep td_end so a
            // later ACK of this data still passes.
            sender.end = end;
            sender.flags |= F_DATA_UNACKNOWLEDGED;
            return liberal_or(sender, pol, Window::Ignore);
        }
        return liberal_or(
            sender,
            pol,
            Window::Invalid(InvalidReason::TcpSeqOverWindow),
        );
    }

    if !before(sack, receiver.end.wrapping_add(1)) {
        return liberal_or(
            sender,
            pol,
            Window::Invalid(InvalidReason::TcpAckOverWindow),
        );
    }

    // Is the end of the segment in the receive window (if known)?
    let in_recv_win = receiver.maxwin == 0
        || after(
            end,
            sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
        );
    if !in_recv_win {
        // SEQ under the lower bound: already ACKed data retransmitted.
        return liberal_or(sender, pol, Window::Ignore);
    }
    if !after(
        sack,
        receiver
            .end
            .wrapping_sub(maxackwindow(sender))
            .wrapping_sub(1),
    ) {
        // ACK under the lower bound: possibly overly delayed.
        return liberal_or(sender, pol, Window::Ignore);
    }

    // Window scaling (RFC 1323) does not apply to SYNs.
    if !syn {
        win <<= sender.scale;
    }

    // Update the sender.
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if sender.maxwin < swin {
        sender.maxwin = swin;
    }
    if after(end, sender.end) {
        sender.end = end;
        sender.flags |= F_DATA_UNACKNOWLEDGED;
    }
    if ack_flag {
        if sender.flags & F_MAXACK_SET == 0 {
            sender.maxack = ack;
            sender.flags |= F_MAXACK_SET;
        } else if after(ack, sender.maxack) {
            sender.maxack = ack;
        }
    }

    // Update the receiver.
    if receiver.maxwin != 0 && after(end, sender.maxend) {
        receiver.maxwin = receiver
            .maxwin
            .wrapping_add(end.wrapping_sub(sender.maxend));
    }
    if after(sack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
        receiver.maxend = sack.wrapping_add(win);
        if win == 0 {
            receiver.maxend = receiver.maxend.wrapping_add(1);
        }
    }
    if ack == receiver.end {
        receiver.flags &= !F_DATA_UNACKNOWLEDGED;
    }

    // Count retransmissions.
    if index == ACK_SET {
        if ct.last_dir == dir
            && ct.last_seq == seq
            && ct.last_ack == ack
            && ct.last_end == end
            && ct.last_win == win_raw
        {
            ct.retrans = ct.retrans.wrapping_add(1);
        } else {
            ct.last_dir = dir;
            ct.last_seq = seq;
            ct.last_ack = ack;
            ct.last_end = end;
            ct.last_win = win_raw;
            ct.retrans = 0;
        }
    }
    Window::Accept
}

/// `nf_tcp_handle_invalid`: an out-of-window FIN/RST answering the other
/// side's FIN/RST on an assured entry shortens its timeout, so dead
/// connections do not linger in ESTABLISHED for days.
fn handle_invalid(
    ct: &mut TcpCt,
    dir: u8,
    index: u8,
    status: u16,
    now: Nanos,
    expires: &mut Nanos,
    pol: &Policy,
) {
    if status & status::ASSURED == 0 {
        return;
    }
    if index != RST_SET && index != FIN_SET {
        return;
    }
    if ct.last_dir != dir && (ct.last_index == FIN_SET || ct.last_index == RST_SET) {
        let remaining = expires.saturating_sub(now);
        if remaining < 120 * 1_000_000_000 {
            return;
        }
        let unack = pol.timeouts.tcp_unacknowledged;
        if remaining > unack {
            *expires = now + unack;
        }
    } else {
        ct.last_index = index;
        ct.last_dir = dir;
    }
}

/// `nf_conntrack_tcp_established`.
fn established(ct: &TcpCt, status: u16) -> bool {
    ct.state == TcpState::Established && status & status::ASSURED != 0
}

/// `nf_conntrack_tcp_packet` for a segment of a connection in direction
/// `dir` (0 original, 1 reply): runs the state table and the window checks,
/// updates `ct` and (ASSURED) `status`, and may shorten `expires` (absolute)
/// for an invalid segment. `status` is the entry's status *before* this
/// packet (SEEN_REPLY is set by the caller afterwards, as Linux does).
pub(super) fn packet(
    ct: &mut TcpCt,
    status: &mut u16,
    dir: u8,
    seg: &TcpSeg,
    now: Nanos,
    expires: &mut Nanos,
    pol: &Policy,
) -> Verdict {
    let index = segment_index(seg.flags);
    let mut old_state = ct.state;
    let mut new_state = TABLE[usize::from(dir)][usize::from(index)][old_state as usize];
    let other = 1 - dir;
    let mut check_window = true;

    let mut ignore = new_state == IG;
    if new_state == SS && old_state as u8 >= TW {
        // RFC 1122: a SYN may re-open a connection in TIME_WAIT; also a
        // client aborting and starting again. Delete and start afresh.
        if (ct.seen[usize::from(dir)].flags | ct.seen[usize::from(other)].flags) & F_CLOSE_INIT != 0
            || (ct.last_dir == dir && ct.last_index == RST_SET)
        {
            return Verdict::Reopen;
        }
        ignore = true;
    }

    if ignore {
        if index == SYNACK_SET
            && ct.last_index == SYN_SET
            && ct.last_dir != dir
            && seg.ack == ct.last_end
        {
            // b) This SYN/ACK acknowledges a SYN we ignored: client and
            // server are in sync, we are not. Resync from what we noted.
            old_state = TcpState::SynSent;
            new_state = SR;
            let ld = usize::from(ct.last_dir);
            let (last_end, last_win, last_wscale) = (ct.last_end, ct.last_win, ct.last_wscale);
            ct.last_flags &= !F_EXP_CHALLENGE_ACK;
            let last_flags = ct.last_flags;
            let s = &mut ct.seen[ld];
            s.end = last_end;
            s.maxend = last_end;
            s.maxwin = u32::from(last_win).max(1);
            s.scale = last_wscale;
            s.flags = last_flags;
            reset_side(&mut ct.seen[usize::from(dir)]);
        } else {
            ct.last_index = index;
            ct.last_dir = dir;
            ct.last_seq = seg.seq;
            ct.last_end = segment_end(seg);
            ct.last_win = seg.window;
            // a) A SYN in ORIGINAL: note its options; if the server answers
            // with a SYN/ACK we get back in sync.
            if index == SYN_SET && dir == ORIGINAL {
                ct.last_flags = 0;
                ct.last_wscale = 0;
                if let Some(ws) = seg.wscale {
                    ct.last_flags |= F_WINDOW_SCALE;
                    ct.last_wscale = ws.min(TCP_MAX_WSCALE);
                }
                if seg.sack_perm {
                    ct.last_flags |= F_SACK_PERM;
                }
                // An RFC 5961 challenge ACK may follow, which must not be
                // taken as the ACK of the last FIN.
                if old_state == TcpState::LastAck {
                    ct.last_flags |= F_EXP_CHALLENGE_ACK;
                }
            }
            // c) Possible challenge ACK answering a SYN.
            if old_state == TcpState::SynSent && index == ACK_SET && dir == REPLY {
                ct.last_ack = seg.ack;
            }
            return Verdict::Pass { ignored: true };
        }
    } else {
        match new_state {
            IV => return Verdict::Invalid(InvalidReason::TcpInvalidTransition),
            TW if old_state == TcpState::LastAck
                && index == ACK_SET
                && ct.last_dir != dir
                && ct.last_index == SYN_SET
                && ct.last_flags & F_EXP_CHALLENGE_ACK != 0 =>
            {
                // RFC 5961 challenge ACK: not the ACK of our last FIN.
                ct.last_flags &= !F_EXP_CHALLENGE_ACK;
                return Verdict::Pass { ignored: true };
            }
            S2 => {
                // The table cannot express simultaneous open alone.
                ct.last_flags |= F_SIMULTANEOUS_OPEN;
            }
            SR if dir == REPLY && index == ACK_SET && ct.last_flags & F_SIMULTANEOUS_OPEN != 0 => {
                new_state = ES;
            }
            CL if index == RST_SET => {
                if is_closing(ct.state) {
                    // Closing: the tuple may be re-used already and the
                    // window data outdated; skip the checks.
                    check_window = false;
                } else {
                    'rst: {
                        let peer = ct.seen[usize::from(other)];
                        if peer.flags & F_MAXACK_SET != 0 && ct.last_index != SYN_SET {
                            let seq = seg.seq;
                            // Likely the answer to a SYN we let through.
                            if seq == 0 && !established(ct, *status) {
                                break 'rst;
                            }
                            if before(seq, peer.maxack) && !pol.tcp_ignore_invalid_rst {
                                return Verdict::Invalid(InvalidReason::TcpInvalidRst);
                            }
                            if !established(ct, *status) || seq == peer.maxack {
                                break 'rst;
                            }
                            // Part of a train: data then RST at its end.
                            if ct.last_index == ACK_SET && ct.last_dir == dir && seq == ct.last_end
                            {
                                break 'rst;
                            }
                            // Inexact RST: stay, to allow a challenge ACK.
                            new_state = old_state as u8;
                        }
                        let seen_reply = *status & status::SEEN_REPLY != 0;
                        let assured = *status & status::ASSURED != 0;
                        if ((seen_reply && ct.last_index == SYN_SET)
                            || (!assured && ct.last_index == ACK_SET))
                            && seg.ack == ct.last_end
                        {
                            // RST answering a SYN (a) or ACK (c) we let
                            // through: it may ACK data we ignored.
                            check_window = false;
                            break 'rst;
                        }
                        if old_state == TcpState::SynSent
                            && ct.last_index == ACK_SET
                            && ct.last_dir == REPLY
                            && seg.seq == ct.last_ack
                        {
                            // RST answering a challenge ACK we let through.
                            check_window = false;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    if check_window {
        match in_window(ct, dir, index, seg, pol) {
            Window::Accept => {}
            Window::Ignore => return Verdict::Pass { ignored: true },
            Window::Invalid(reason) => {
                handle_invalid(ct, dir, index, *status, now, expires, pol);
                return Verdict::Invalid(reason);
            }
        }
    }

    // In-window from here on.
    let new_state = TcpState::from_u8(new_state);
    ct.last_index = index;
    ct.last_dir = dir;
    ct.state = new_state;
    if old_state != new_state && new_state == TcpState::FinWait {
        ct.seen[usize::from(dir)].flags |= F_CLOSE_INIT;
    }

    let t = &pol.timeouts;
    let state_timeout = t.tcp(new_state);
    let mut timeout = if ct.retrans >= pol.tcp_max_retrans && state_timeout > t.tcp_max_retrans {
        t.tcp_max_retrans
    } else if index == RST_SET {
        t.tcp_close
    } else if (ct.seen[0].flags | ct.seen[1].flags) & F_DATA_UNACKNOWLEDGED != 0
        && state_timeout > t.tcp_unacknowledged
    {
        t.tcp_unacknowledged
    } else if ct.last_win == 0 && state_timeout > t.tcp_max_retrans {
        t.tcp_max_retrans
    } else {
        state_timeout
    };

    if *status & status::SEEN_REPLY == 0 {
        if seg.flags & flag::RST != 0 {
            // The only reply is a RST: no connection, delete at once.
            return Verdict::Kill;
        }
        if index == SYN_SET && old_state == TcpState::SynSent {
            // A SYN retransmission does not renew the timeout, else port
            // re-use could keep the entry alive forever.
            return Verdict::Pass { ignored: false };
        }
        // Picked up mid-stream and unanswered: no 5-day timeout.
        if new_state == TcpState::Established && timeout > t.tcp_unacknowledged {
            timeout = t.tcp_unacknowledged;
        }
    } else if *status & status::ASSURED == 0
        && matches!(old_state, TcpState::SynRecv | TcpState::Established)
        && new_state == TcpState::Established
    {
        // A valid ACK after SYN_RECV, or an answer to a picked-up connection.
        *status |= status::ASSURED;
    }
    Verdict::Refresh(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_flag_table() {
        use flag::*;
        for f in [
            SYN,
            SYN | ACK,
            ACK,
            FIN | ACK,
            RST,
            RST | ACK,
            ACK | PSH,
            SYN | ECE | CWR,
        ] {
            assert!(valid_flags(f), "{f:#x} should be valid");
        }
        for f in [
            0,
            FIN,
            SYN | FIN,
            SYN | RST,
            SYN | FIN | ACK,
            FIN | PSH | URG,
            RST | FIN,
        ] {
            assert!(!valid_flags(f), "{f:#x} should be invalid");
        }
    }

    #[test]
    fn table_matches_linux_spot_checks() {
        let t = |dir: usize, idx: u8, s: TcpState| TABLE[dir][usize::from(idx)][s as usize];
        assert_eq!(t(0, SYN_SET, TcpState::None), SS);
        assert_eq!(t(0, SYN_SET, TcpState::TimeWait), SS);
        assert_eq!(t(0, SYN_SET, TcpState::Established), IG);
        assert_eq!(t(1, SYN_SET, TcpState::Established), IV);
        assert_eq!(t(1, SYN_SET, TcpState::TimeWait), SS);
        assert_eq!(t(1, SYNACK_SET, TcpState::SynSent), SR);
        assert_eq!(t(0, ACK_SET, TcpState::SynRecv), ES);
        assert_eq!(t(0, ACK_SET, TcpState::SynSent), IV);
        assert_eq!(t(1, ACK_SET, TcpState::SynSent), IG);
        assert_eq!(t(0, FIN_SET, TcpState::Established), FW);
        assert_eq!(t(1, ACK_SET, TcpState::FinWait), CW);
        assert_eq!(t(1, FIN_SET, TcpState::CloseWait), LA);
        assert_eq!(t(0, ACK_SET, TcpState::LastAck), TW);
        assert_eq!(t(0, RST_SET, TcpState::None), IV);
        assert_eq!(t(1, NONE_SET, TcpState::Established), IV);
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(before(0xffff_fff0, 0x10));
        assert!(after(0x10, 0xffff_fff0));
        assert!(!before(5, 5));
    }
}
