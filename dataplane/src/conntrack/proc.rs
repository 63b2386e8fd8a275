//! `/proc/net/nf_conntrack` lines (control plane: allocation is fine here).
//!
//! Format of Linux's `ct_seq_show` (net/netfilter/nf_conntrack_standalone.c),
//! checked against this machine's kernel (6.18) with accounting off (the
//! `nf_conntrack_acct` default) and the default zone:
//!
//! ```text
//! "%-8s %u %-8s %u " l3 name, l3 number, l4 name, l4 number
//! "%ld "             seconds until expiry (never negative)
//! "%s "              TCP state name (TCP only)
//! "src=%pI4 dst=%pI4 " + "sport=%hu dport=%hu " (TCP/UDP)
//!                    | "type=%u code=%u id=%u " (ICMP)   original tuple
//! "[UNREPLIED] "     unless SEEN_REPLY
//! ...                reply tuple, same shape
//! "[ASSURED] "       if ASSURED
//! "mark=%u zone=%u use=%u"
//! ```

use std::fmt::Write;

use super::{status, Nanos, Snapshot, NANOS_PER_SEC};
use crate::flow::{Addr, Tuple, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// Linux's `l4proto_name`.
pub(super) fn l4_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_ICMP => "icmp",
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        33 => "dccp",
        47 => "gre",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        _ => "unknown",
    }
}

/// How addresses are written: as `/proc/net/nf_conntrack` writes them, or
/// as conntrack-tools does (`conntrack -E`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AddrForm {
    Proc,
    Ntop,
}

fn push_addr<A: Addr>(out: &mut String, a: A, form: AddrForm) {
    match form {
        AddrForm::Proc => a.push_proc(out),
        AddrForm::Ntop => a.push_ntop(out),
    }
}

pub(super) fn push_tuple<A: Addr>(
    out: &mut String,
    t: &Tuple<A>,
    (icmp_type, icmp_code): (u8, u8),
    form: AddrForm,
) {
    out.push_str("src=");
    push_addr(out, t.src, form);
    out.push_str(" dst=");
    push_addr(out, t.dst, form);
    out.push(' ');
    match t.proto {
        IPPROTO_TCP | IPPROTO_UDP | 33 | 132 | 136 => {
            let _ = write!(out, "sport={} dport={} ", t.sport, t.dport);
        }
        p if p == A::ICMP => {
            let _ = write!(out, "type={icmp_type} code={icmp_code} id={} ", t.sport);
        }
        _ => {}
    }
}

/// The `/proc/net/nf_conntrack` line of an entry at time `now`, without the
/// trailing newline. `use=` is 2, as Linux shows for an entry held by the
/// table and by the reader printing it.
/// Both directions as conntrack-tools prints them: the original tuple,
/// `[UNREPLIED]` until a reply, the reply tuple, `[ASSURED]`.
pub(super) fn push_tuples<A: Addr>(out: &mut String, s: &Snapshot<A>, form: AddrForm) {
    push_tuple(out, &s.orig, (s.icmp_type, s.icmp_code), form);
    if s.status & status::SEEN_REPLY == 0 {
        out.push_str("[UNREPLIED] ");
    }
    let reply_icmp = (A::icmp_reply_type(s.icmp_type), s.icmp_code);
    push_tuple(out, &s.reply, reply_icmp, form);
    if s.status & status::ASSURED != 0 {
        out.push_str("[ASSURED] ");
    }
}

pub fn proc_line<A: Addr>(s: &Snapshot<A>, now: Nanos) -> String {
    let mut out = String::with_capacity(224);
    let proto = s.orig.proto;
    let _ = write!(
        out,
        "{:<8} {} {:<8} {} ",
        A::L3.0,
        A::L3.1,
        l4_name(proto),
        proto
    );
    let _ = write!(out, "{} ", s.expires.saturating_sub(now) / NANOS_PER_SEC);
    if proto == IPPROTO_TCP {
        let _ = write!(out, "{} ", s.tcp_state.name());
    }
    push_tuples(&mut out, s, AddrForm::Proc);
    let _ = write!(out, "mark={} zone=0 use=2", s.mark);
    out
}
