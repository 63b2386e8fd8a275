//! ICMP error rate limiting, as Linux's `icmp_send` does it: a global token
//! bucket (`icmp_msgs_per_sec`, `icmp_msgs_burst`: `icmp_global_allow`) and
//! one per destination (`icmp_ratelimit`: `inet_peer_xrlim_allow`), both
//! only for the types in `icmp_ratemask` (by default destination
//! unreachable, source quench, time exceeded and parameter problem; never
//! "fragmentation needed", which path-MTU discovery depends on).
//!
//! Shared by all workers without a lock: each bucket is one `AtomicU64`
//! changed by compare-and-swap, on the slow path that builds an ICMP error.
//! The per-destination buckets live in a fixed table indexed by a hash of
//! the address (memory does not grow with the senders an outsider can
//! spoof); a destination that finds its slot taken by another starts with a
//! full bucket, as a destination Linux has no `inet_peer` for does. The
//! global bucket still bounds the total then.
//!
//! Time comes in as `now` (nanoseconds), as everywhere in the dataplane.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Linux's `icmp_*` sysctls that govern the limits (defaults as Linux's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpLimitConfig {
    /// `net.ipv4.icmp_ratelimit`: milliseconds per message to one
    /// destination (0: no per-destination limit). A destination may take
    /// up to 6 at once (`XRLIM_BURST_FACTOR`).
    pub ratelimit_ms: u32,
    /// `net.ipv4.icmp_ratemask`: bit `t` set limits ICMP type `t`.
    pub ratemask: u32,
    /// `net.ipv4.icmp_msgs_per_sec`: the global rate (0: none at all once
    /// the burst is spent).
    pub msgs_per_sec: u32,
    /// `net.ipv4.icmp_msgs_burst`: the global bucket's size.
    pub msgs_burst: u32,
}

impl Default for IcmpLimitConfig {
    fn default() -> Self {
        IcmpLimitConfig {
            ratelimit_ms: 1000,
            ratemask: 0x1818,
            msgs_per_sec: 1000,
            msgs_burst: 50,
        }
    }
}

/// Why an ICMP error was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// The global bucket is empty (Linux's `IcmpOutRateLimitGlobal`).
    Global,
    /// The destination's bucket is empty (`IcmpOutRateLimitHost`).
    Host,
}

/// `XRLIM_BURST_FACTOR`: a destination's bucket holds six messages.
const BURST_FACTOR: u32 = 6;
/// Per-destination slots (a power of two): 32 KiB.
const PEERS: usize = 4096;
/// `icmp_global_allow` refills no more often than every `HZ / 50`.
const GLOBAL_REFILL_MS: u32 = 20;
const NS_PER_MS: u64 = 1_000_000;

/// The limiter the workers share (see the module documentation).
pub struct IcmpLimiter {
    cfg: IcmpLimitConfig,
    /// Credit (i32, may go below zero as Linux's does) in the high half,
    /// the time of the last refill (ms, wrapping) in the low half.
    global: AtomicU64,
    /// Per destination: its address in the high half, the time its bucket
    /// is empty by (GCRA's "theoretical arrival time", ms, wrapping) in the
    /// low half.
    peers: Box<[AtomicU64]>,
    limited_global: AtomicU64,
    limited_host: AtomicU64,
}

impl std::fmt::Debug for IcmpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpLimiter")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn pack(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

impl IcmpLimiter {
    pub fn new(cfg: IcmpLimitConfig) -> IcmpLimiter {
        IcmpLimiter {
            cfg,
            // Empty, last refilled a second before time 0: the first call
            // refills it to the burst, as Linux's first does after boot.
            global: AtomicU64::new(pack(0, 0u32.wrapping_sub(1000))),
            peers: (0..PEERS).map(|_| AtomicU64::new(0)).collect(),
            limited_global: AtomicU64::new(0),
            limited_host: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &IcmpLimitConfig {
        &self.cfg
    }

    /// Whether an ICMP message `ty`/`code` to `dst` may go out at `now`;
    /// takes its tokens if so, counts the refusal if not.
    pub fn allow(&self, now: u64, ty: u8, code: u8, dst: Ipv4Addr) -> Result<(), Limited> {
        if !self.limited(ty, code) {
            return Ok(());
        }
        let now_ms = (now / NS_PER_MS) as u32;
        if !self.global_allow(now_ms) {
            // Relaxed: a statistic.
            self.limited_global.fetch_add(1, Ordering::Relaxed);
            return Err(Limited::Global);
        }
        if !self.peer_allow(now_ms, dst) {
            self.limited_host.fetch_add(1, Ordering::Relaxed);
            return Err(Limited::Host);
        }
        self.global_consume();
        Ok(())
    }

    /// [`IcmpLimiter::allow`] for an ICMPv6 message (`icmpv6_xrlim_allow`):
    /// errors are limited (the default `icmp/ratemask` 0-1,3-127) but
    /// packet too big, which path MTU discovery needs; the global bucket is
    /// shared with IPv4, as `icmp_global_allow` is; the destination's bucket
    /// is keyed by a fold of its address.
    pub fn allow6(&self, now: u64, ty: u8, dst: std::net::Ipv6Addr) -> Result<(), Limited> {
        const PKT_TOOBIG: u8 = 2;
        if ty >= 128 || ty == PKT_TOOBIG {
            return Ok(());
        }
        let now_ms = (now / NS_PER_MS) as u32;
        if !self.global_allow(now_ms) {
            self.limited_global.fetch_add(1, Ordering::Relaxed);
            return Err(Limited::Global);
        }
        let a = u128::from(dst);
        let folded = (a ^ (a >> 32) ^ (a >> 64) ^ (a >> 96)) as u32;
        if !self.peer_allow(now_ms, Ipv4Addr::from(folded)) {
            self.limited_host.fetch_add(1, Ordering::Relaxed);
            return Err(Limited::Host);
        }
        self.global_consume();
        Ok(())
    }

    /// Messages refused by the global bucket and by a destination's.
    pub fn refused(&self) -> (u64, u64) {
        (
            self.limited_global.load(Ordering::Relaxed),
            self.limited_host.load(Ordering::Relaxed),
        )
    }

    /// `icmpv4_mask_allow`, negated: whether the type is rate limited at all.
    fn limited(&self, ty: u8, code: u8) -> bool {
        const NR_ICMP_TYPES: u8 = 18;
        const DEST_UNREACH: u8 = 3;
        const FRAG_NEEDED: u8 = 4;
        if ty > NR_ICMP_TYPES || (ty == DEST_UNREACH && code == FRAG_NEEDED) {
            return false;
        }
        self.cfg.ratemask & (1 << ty) != 0
    }

    /// `icmp_global_allow`: credit left, or a refill of `msgs_per_sec` for
    /// the time since the last one (at most a second's worth, at least
    /// 20 ms apart), capped at the burst.
    fn global_allow(&self, now_ms: u32) -> bool {
        // Relaxed throughout: the bucket is this one word; nothing else is
        // published through it.
        let mut cur = self.global.load(Ordering::Relaxed);
        loop {
            let (credit, stamp) = unpack(cur);
            if (credit as i32) > 0 {
                return true;
            }
            let delta = now_ms.wrapping_sub(stamp).min(1000);
            if delta < GLOBAL_REFILL_MS {
                return false;
            }
            let incr = u64::from(self.cfg.msgs_per_sec) * u64::from(delta) / 1000;
            if incr == 0 {
                return false;
            }
            let burst = i64::from(self.cfg.msgs_burst.min(i32::MAX as u32));
            let credit = (i64::from(credit as i32) + incr as i64).min(burst) as i32;
            match self.global.compare_exchange_weak(
                cur,
                pack(credit as u32, now_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// `icmp_global_consume`: one credit per message sent (Linux takes 0,
    /// 1 or 2 at random, 1 on average, so that the limit cannot be probed).
    fn global_consume(&self) {
        // Relaxed: as `global_allow`.
        let _ = self
            .global
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let (credit, stamp) = unpack(v);
                Some(pack((credit as i32).saturating_sub(1) as u32, stamp))
            });
    }

    /// `inet_peer_xrlim_allow` with `icmp_ratelimit` as the interval T: a
    /// bucket of 6T, one message costs T, it refills at 1 per ms. Kept as
    /// the time the bucket is empty by (`tat`): a message passes when
    /// `tat - now <= 5T`, and moves `tat` on by T.
    fn peer_allow(&self, now_ms: u32, dst: Ipv4Addr) -> bool {
        let t = self.cfg.ratelimit_ms;
        if t == 0 {
            return true;
        }
        let key = u32::from(dst);
        let slot = &self.peers[Self::slot(key)];
        let max_ahead = i64::from(t) * i64::from(BURST_FACTOR);
        // Relaxed: each slot is its own word; nothing else depends on it.
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (owner, tat) = unpack(cur);
            // Ahead of now by this much; anything else (behind, another
            // address's, or a stale value after the ms clock wrapped) is a
            // full bucket.
            let ahead = i64::from(tat.wrapping_sub(now_ms) as i32);
            let ahead = if owner == key && (0..=max_ahead).contains(&ahead) {
                ahead
            } else {
                0
            };
            if ahead > max_ahead - i64::from(t) {
                return false;
            }
            let tat = now_ms.wrapping_add((ahead + i64::from(t)) as u32);
            match slot.compare_exchange_weak(
                cur,
                pack(key, tat),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    fn slot(key: u32) -> usize {
        // Fibonacci hashing: the top bits of the product.
        ((key.wrapping_mul(0x9e37_79b9) >> 20) as usize) & (PEERS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;
    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
    const B: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 3);

    fn sent(l: &IcmpLimiter, now: u64, dst: Ipv4Addr, n: usize) -> usize {
        (0..n).filter(|_| l.allow(now, 11, 0, dst).is_ok()).count()
    }

    #[test]
    fn a_destination_gets_a_burst_of_six_then_one_a_second() {
        let l = IcmpLimiter::new(IcmpLimitConfig::default());
        let t0 = 5_000 * MS;
        assert_eq!(sent(&l, t0, A, 100), 6);
        // Another destination has its own bucket.
        assert_eq!(sent(&l, t0, B, 100), 6);
        assert_eq!(sent(&l, t0 + 999 * MS, A, 10), 0);
        assert_eq!(sent(&l, t0 + 1000 * MS, A, 10), 1);
        assert_eq!(sent(&l, t0 + 2500 * MS, A, 10), 1);
        // Idle for a minute: a full bucket again, not more.
        assert_eq!(sent(&l, t0 + 60_000 * MS, A, 100), 6);
        assert_eq!(l.refused(), (0, 94 + 94 + 10 + 9 + 9 + 94));
    }

    #[test]
    fn types_outside_the_mask_and_frag_needed_pass() {
        let l = IcmpLimiter::new(IcmpLimitConfig::default());
        for _ in 0..100 {
            assert_eq!(l.allow(0, 3, 4, A), Ok(()), "fragmentation needed");
            assert_eq!(l.allow(0, 0, 0, A), Ok(()), "echo reply");
            assert_eq!(l.allow(0, 5, 0, A), Ok(()), "redirect: not in 0x1818");
            assert_eq!(l.allow(0, 40, 0, A), Ok(()), "unknown types");
        }
        assert_eq!(sent(&l, 0, A, 10), 6);
        let all = IcmpLimiter::new(IcmpLimitConfig {
            ratemask: 0,
            ..IcmpLimitConfig::default()
        });
        assert_eq!(sent(&all, 0, A, 100), 100);
    }

    #[test]
    fn the_global_bucket_bounds_all_destinations() {
        let l = IcmpLimiter::new(IcmpLimitConfig::default());
        let t0 = 7_000 * MS;
        // 50 distinct destinations take the burst of 50; then none until a
        // refill, which comes no sooner than 20 ms and brings 1 per ms.
        let dsts = |from: u32, n: u32| (from..from + n).map(|i| Ipv4Addr::from(0x0a00_0000 + i));
        let burst = dsts(0, 100)
            .filter(|d| l.allow(t0, 3, 3, *d).is_ok())
            .count();
        assert_eq!(burst, 50);
        assert_eq!(l.refused().0, 50);
        assert_eq!(
            dsts(100, 10)
                .filter(|d| l.allow(t0 + 19 * MS, 3, 3, *d).is_ok())
                .count(),
            0
        );
        assert_eq!(
            dsts(200, 100)
                .filter(|d| l.allow(t0 + 30 * MS, 3, 3, *d).is_ok())
                .count(),
            30
        );
    }

    #[test]
    fn no_per_destination_limit_with_ratelimit_zero() {
        let l = IcmpLimiter::new(IcmpLimitConfig {
            ratelimit_ms: 0,
            msgs_burst: 1000,
            ..IcmpLimitConfig::default()
        });
        assert_eq!(sent(&l, 0, A, 100), 100);
    }

    #[test]
    fn the_ms_clock_wrapping_forgets_nothing_it_should_keep() {
        let l = IcmpLimiter::new(IcmpLimitConfig::default());
        let wrap = u64::from(u32::MAX) * MS;
        assert_eq!(sent(&l, wrap - 500 * MS, A, 10), 6);
        // Across the wrap: still empty half a second later, one more after
        // a second.
        assert_eq!(sent(&l, wrap + 400 * MS, A, 10), 0);
        assert_eq!(sent(&l, wrap + 600 * MS, A, 10), 1);
    }

    /// The table is fixed: a flood of spoofed destinations changes nothing
    /// about its size, and every one of them is limited.
    #[test]
    fn many_destinations_stay_bounded() {
        let l = IcmpLimiter::new(IcmpLimitConfig {
            msgs_burst: u32::MAX,
            msgs_per_sec: u32::MAX,
            ..IcmpLimitConfig::default()
        });
        let mut ok = 0;
        for i in 0..100_000u32 {
            ok += usize::from(l.allow(0, 11, 0, Ipv4Addr::from(i)).is_ok());
        }
        assert_eq!(ok, 100_000);
        assert_eq!(l.peers.len(), PEERS);
    }
}
