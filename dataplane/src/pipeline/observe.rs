//! What the hooks tell a packet trace ([`crate::trace`]). The hooks are
//! generic over an [`Observer`]: a traced packet runs them with its
//! [`PacketTrace`], every other one with [`Untraced`], whose calls compile
//! to nothing (so the untraced hooks test no flag either).

use std::net::Ipv4Addr;

use crate::action::Action;
use crate::classify::{CompiledRuleSet, EvalState, PacketView, Verdict};
use crate::conntrack::Track;
use crate::fastpath::record::Recording;
use crate::flow::Tuple;
use crate::rule::{Hook, Table};
use crate::trace::{PacketTrace, Recorder, TraceEvent};
use crate::wire::{Ipv4Info, L4};

use super::packet::meta_of;

/// Where the steps of a packet through the hooks are told.
pub(crate) trait Observer {
    /// Whether anything is recorded (callers skip work for nothing).
    const ON: bool;

    /// Evaluates `table` at `hook` for the packet `view`; the fast path's
    /// recording `rec` sees the evaluation while it records.
    fn eval(
        &mut self,
        rules: &CompiledRuleSet,
        at: (Table, Hook),
        view: &mut PacketView,
        st: &mut EvalState,
        now: u64,
        rec: &mut Recording,
    ) -> Verdict;

    /// Conntrack's judgement of the packet (`proto`: its IP protocol).
    fn conntrack(&mut self, track: &Track, proto: u8);

    /// The packet is not tracked (NOTRACK).
    fn untracked(&mut self);

    /// NAT at `hook` changed the packet's tuple from `before` to `after`.
    fn nat(&mut self, hook: Hook, before: Tuple, after: Tuple);

    /// The packet waits for `hop` on `iface` to answer ARP.
    fn held(&mut self, iface: u8, hop: Ipv4Addr);

    /// The gateway generates a packet in answer (`info`); its steps follow.
    fn generated(&mut self, info: &Ipv4Info);

    /// What became of the generated packet.
    fn generated_end(&mut self, action: Action);
}

/// A packet nobody traces.
pub(crate) struct Untraced;

impl Observer for Untraced {
    const ON: bool = false;

    #[inline(always)]
    fn eval(
        &mut self,
        rules: &CompiledRuleSet,
        (table, hook): (Table, Hook),
        view: &mut PacketView,
        st: &mut EvalState,
        now: u64,
        rec: &mut Recording,
    ) -> Verdict {
        if rec.on {
            rules.eval_observed(table, hook, view, st, now, rec)
        } else {
            rules.eval(table, hook, view, st, now)
        }
    }

    #[inline(always)]
    fn conntrack(&mut self, _: &Track, _: u8) {}
    #[inline(always)]
    fn untracked(&mut self) {}
    #[inline(always)]
    fn nat(&mut self, _: Hook, _: Tuple, _: Tuple) {}
    #[inline(always)]
    fn held(&mut self, _: u8, _: Ipv4Addr) {}
    #[inline(always)]
    fn generated(&mut self, _: &Ipv4Info) {}
    #[inline(always)]
    fn generated_end(&mut self, _: Action) {}
}

/// A traced packet: each step goes into its record. (The fast path does
/// not run while a trace does: nothing is recorded for it.)
impl Observer for &mut PacketTrace {
    const ON: bool = true;

    fn eval(
        &mut self,
        rules: &CompiledRuleSet,
        (table, hook): (Table, Hook),
        view: &mut PacketView,
        st: &mut EvalState,
        now: u64,
        _: &mut Recording,
    ) -> Verdict {
        let mut rec = Recorder {
            rec: self,
            table,
            hook,
        };
        let v = rules.eval_observed(table, hook, view, st, now, &mut rec);
        self.observe(view);
        v
    }

    fn conntrack(&mut self, track: &Track, proto: u8) {
        PacketTrace::conntrack(self, track, proto);
    }

    fn untracked(&mut self) {
        PacketTrace::untracked(self);
    }

    fn nat(&mut self, hook: Hook, before: Tuple, after: Tuple) {
        if before != after {
            self.push(TraceEvent::Nat {
                hook,
                before,
                after,
            });
        }
    }

    fn held(&mut self, iface: u8, hop: Ipv4Addr) {
        self.push(TraceEvent::Held { iface, hop });
    }

    fn generated(&mut self, info: &Ipv4Info) {
        let (flags, icmp) = match info.l4info {
            L4::Tcp(t) => (t.flags, None),
            L4::Icmp(i) => (0, Some((i.ty, i.code))),
            _ => (0, None),
        };
        PacketTrace::generated(self, meta_of(info).tuple, flags, icmp);
    }

    fn generated_end(&mut self, action: Action) {
        PacketTrace::generated_end(self, action);
    }
}
