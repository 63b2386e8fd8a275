//! What the hooks tell a packet trace ([`crate::trace`]). The hooks are
//! generic over an [`Observer`]: a traced packet runs them with its
//! [`PacketTrace`], every other one with [`Untraced`], whose calls compile
//! to nothing (so the untraced hooks test no flag either).

use std::net::{IpAddr, Ipv6Addr};

use crate::action::Action;
use crate::classify::{CompiledRuleSet, EvalState, PacketView, Verdict, V6};
use crate::conntrack::Track;
use crate::fastpath::record::Recording;
use crate::flow::{Addr, Tuple};
use crate::rule::{Hook, Table};
use crate::trace::{ip_tuple, PacketTrace, Recorder, TraceEvent};
use crate::wire::ipv6::{Ipv6Info, L4v6};
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

    /// [`Observer::eval`] of the IPv6 rule set.
    fn eval6(
        &mut self,
        rules: &CompiledRuleSet<V6>,
        at: (Table, Hook),
        view: &mut PacketView<V6>,
        st: &mut EvalState,
        now: u64,
        rec: &mut Recording,
    ) -> Verdict<Ipv6Addr>;

    /// Conntrack's judgement of the packet (`proto`: its IP protocol).
    fn conntrack<A: Addr>(&mut self, track: &Track<A>, proto: u8);

    /// The packet is not tracked (NOTRACK).
    fn untracked(&mut self);

    /// NAT at `hook` changed the packet's tuple from `before` to `after`.
    fn nat<A: Addr + Into<IpAddr>>(&mut self, hook: Hook, before: Tuple<A>, after: Tuple<A>);

    /// The packet waits for `hop` on `iface` to answer ARP (IPv6:
    /// neighbour discovery).
    fn held<A: Addr + Into<IpAddr>>(&mut self, iface: u8, hop: A);

    /// The gateway generates a packet in answer (`info`); its steps follow.
    fn generated(&mut self, info: &Ipv4Info);

    /// [`Observer::generated`] for an IPv6 packet.
    fn generated6(&mut self, info: &Ipv6Info);

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
    fn eval6(
        &mut self,
        rules: &CompiledRuleSet<V6>,
        (table, hook): (Table, Hook),
        view: &mut PacketView<V6>,
        st: &mut EvalState,
        now: u64,
        rec: &mut Recording,
    ) -> Verdict<Ipv6Addr> {
        if rec.on {
            // A packet the fast path may cache: its rules recorded.
            rules.eval_observed(table, hook, view, st, now, rec)
        } else {
            rules.eval(table, hook, view, st, now)
        }
    }

    #[inline(always)]
    fn conntrack<A: Addr>(&mut self, _: &Track<A>, _: u8) {}
    #[inline(always)]
    fn untracked(&mut self) {}
    #[inline(always)]
    fn nat<A: Addr + Into<IpAddr>>(&mut self, _: Hook, _: Tuple<A>, _: Tuple<A>) {}
    #[inline(always)]
    fn held<A: Addr + Into<IpAddr>>(&mut self, _: u8, _: A) {}
    #[inline(always)]
    fn generated(&mut self, _: &Ipv4Info) {}
    #[inline(always)]
    fn generated6(&mut self, _: &Ipv6Info) {}
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

    fn eval6(
        &mut self,
        rules: &CompiledRuleSet<V6>,
        (table, hook): (Table, Hook),
        view: &mut PacketView<V6>,
        st: &mut EvalState,
        now: u64,
        _: &mut Recording,
    ) -> Verdict<Ipv6Addr> {
        let mut rec = Recorder {
            rec: self,
            table,
            hook,
        };
        let v = rules.eval_observed(table, hook, view, st, now, &mut rec);
        self.observe(view);
        v
    }

    fn conntrack<A: Addr>(&mut self, track: &Track<A>, proto: u8) {
        PacketTrace::conntrack(self, track, proto);
    }

    fn untracked(&mut self) {
        PacketTrace::untracked(self);
    }

    fn nat<A: Addr + Into<IpAddr>>(&mut self, hook: Hook, before: Tuple<A>, after: Tuple<A>) {
        if before != after {
            self.push(TraceEvent::Nat {
                hook,
                before: ip_tuple(before),
                after: ip_tuple(after),
            });
        }
    }

    fn held<A: Addr + Into<IpAddr>>(&mut self, iface: u8, hop: A) {
        self.push(TraceEvent::Held {
            iface,
            hop: hop.into(),
        });
    }

    fn generated(&mut self, info: &Ipv4Info) {
        let (flags, icmp) = match info.l4info {
            L4::Tcp(t) => (t.flags, None),
            L4::Icmp(i) => (0, Some((i.ty, i.code))),
            _ => (0, None),
        };
        PacketTrace::generated(self, ip_tuple(meta_of(info).tuple), flags, icmp);
    }

    fn generated6(&mut self, info: &Ipv6Info) {
        let (flags, icmp, ports) = match info.l4info {
            L4v6::Tcp(t) => (t.flags, None, (t.sport, t.dport)),
            L4v6::Udp { sport, dport } => (0, None, (sport, dport)),
            L4v6::Icmp(i) => {
                let id = if i.is_query { i.id } else { 0 };
                (0, Some((i.ty, i.code)), (id, id))
            }
            L4v6::Other => (0, None, (0, 0)),
        };
        let tuple = Tuple {
            src: IpAddr::V6(info.src),
            dst: IpAddr::V6(info.dst),
            sport: ports.0,
            dport: ports.1,
            proto: info.proto,
        };
        PacketTrace::generated(self, tuple, flags, icmp);
    }

    fn generated_end(&mut self, action: Action) {
        PacketTrace::generated_end(self, action);
    }
}
