//! Router advertisements: what the gateway advertises on an interface
//! (RFC 4861 section 6.2.1's variables, with radvd's defaults and names in
//! the comments) and when it sends them (section 6.2.4 and 6.2.6). The
//! message itself is built by the wire layer; time is passed in.

use std::net::Ipv6Addr;

use crate::route::Prefix;

/// Nanoseconds per second.
const SEC: u64 = 1_000_000_000;

/// RFC 4861 10: MAX_INITIAL_RTR_ADVERT_INTERVAL.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: u64 = 16 * SEC;
/// RFC 4861 10: MAX_INITIAL_RTR_ADVERTISEMENTS.
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
/// RFC 4861 10: MIN_DELAY_BETWEEN_RAS (radvd's MinDelayBetweenRAs).
pub const MIN_DELAY_BETWEEN_RAS: u64 = 3 * SEC;
/// RFC 4861 10: MAX_RA_DELAY_TIME, the most a solicited advertisement waits.
pub const MAX_RA_DELAY_TIME: u64 = SEC / 2;

/// One prefix information option (radvd's `prefix ... { }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaPrefix {
    pub prefix: Prefix<Ipv6Addr>,
    /// AdvOnLink (default on).
    pub on_link: bool,
    /// AdvAutonomous: hosts may form addresses from it by SLAAC (default on).
    pub autonomous: bool,
    /// AdvValidLifetime, seconds (default 86400; `u32::MAX`: infinity).
    pub valid_lifetime: u32,
    /// AdvPreferredLifetime, seconds (default 14400).
    pub preferred_lifetime: u32,
}

impl RaPrefix {
    /// A prefix with radvd's defaults.
    pub fn new(prefix: Prefix<Ipv6Addr>) -> RaPrefix {
        RaPrefix {
            prefix,
            on_link: true,
            autonomous: true,
            valid_lifetime: 86_400,
            preferred_lifetime: 14_400,
        }
    }
}

/// What an interface advertises, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaConfig {
    /// MaxRtrAdvInterval, seconds (4 to 1800; default 600).
    pub max_interval: u32,
    /// MinRtrAdvInterval, seconds (3 to 0.75 x max; default 0.33 x max).
    pub min_interval: u32,
    /// AdvDefaultLifetime, seconds (0: not a default router; default 3 x
    /// max, at most 9000).
    pub router_lifetime: u16,
    /// AdvCurHopLimit (default 64).
    pub hop_limit: u8,
    /// AdvManagedFlag, AdvOtherConfigFlag (default off).
    pub managed: bool,
    pub other: bool,
    /// AdvLinkMTU (default: none sent).
    pub mtu: Option<u32>,
    /// AdvReachableTime, AdvRetransTimer, milliseconds (default 0:
    /// unspecified).
    pub reachable_ms: u32,
    pub retrans_ms: u32,
    /// The prefixes; empty: one per IPv6 address of the interface (its
    /// network), with radvd's defaults (radvd's `prefix ::/64`).
    pub prefixes: Vec<RaPrefix>,
    /// Recursive DNS servers (RFC 8106) and their lifetime in seconds
    /// (AdvRDNSSLifetime; default 2 x max).
    pub rdnss: Vec<Ipv6Addr>,
    pub rdnss_lifetime: u32,
}

impl RaConfig {
    /// radvd's defaults for `max_interval`.
    pub fn with_max_interval(max_interval: u32) -> RaConfig {
        RaConfig {
            max_interval,
            min_interval: (max_interval * 33 / 100).max(3),
            router_lifetime: u16::try_from(max_interval.saturating_mul(3).min(9000))
                .unwrap_or(9000),
            hop_limit: 64,
            managed: false,
            other: false,
            mtu: None,
            reachable_ms: 0,
            retrans_ms: 0,
            prefixes: Vec::new(),
            rdnss: Vec::new(),
            rdnss_lifetime: max_interval.saturating_mul(2),
        }
    }

    /// What is wrong with the timers, as RFC 4861 6.2.1 bounds them.
    pub fn check(&self) -> Result<(), String> {
        if !(4..=1800).contains(&self.max_interval) {
            return Err(format!(
                "max_interval {}: 4 to 1800 seconds",
                self.max_interval
            ));
        }
        let min_hi = self.max_interval * 3 / 4;
        if self.min_interval < 3 || self.min_interval > min_hi {
            return Err(format!(
                "min_interval {}: 3 to {min_hi} seconds (0.75 x max_interval)",
                self.min_interval
            ));
        }
        if self.router_lifetime != 0
            && (u32::from(self.router_lifetime) < self.max_interval || self.router_lifetime > 9000)
        {
            return Err(format!(
                "router_lifetime {}: 0, or max_interval ({}) to 9000 seconds",
                self.router_lifetime, self.max_interval
            ));
        }
        for p in &self.prefixes {
            if p.preferred_lifetime > p.valid_lifetime {
                return Err(format!(
                    "prefix {}/{}: preferred lifetime {} above its valid lifetime {}",
                    p.prefix.addr, p.prefix.len, p.preferred_lifetime, p.valid_lifetime
                ));
            }
        }
        if self.mtu.is_some_and(|m| m < 1280) {
            return Err("mtu below 1280, IPv6's minimum".into());
        }
        Ok(())
    }
}

impl Default for RaConfig {
    fn default() -> RaConfig {
        RaConfig::with_max_interval(600)
    }
}

/// When an interface's next advertisement goes out: unsolicited ones at a
/// random interval between min and max (the first three at most 16 s
/// apart), solicited ones after a random delay up to 0.5 s, never two
/// multicast advertisements within 3 s (RFC 4861 6.2.4, 6.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaSchedule {
    next: u64,
    last_sent: Option<u64>,
    initial_sent: u32,
}

impl RaSchedule {
    /// The first advertisement goes out at once (`now`).
    pub fn new(now: u64) -> RaSchedule {
        RaSchedule {
            next: now,
            last_sent: None,
            initial_sent: 0,
        }
    }

    /// When the next advertisement is due.
    pub fn due_at(&self) -> u64 {
        self.next
    }

    /// Whether one is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next
    }

    /// Records one sent at `now` and draws the next time; `rand` is a
    /// random 32-bit value.
    pub fn sent(&mut self, now: u64, cfg: &RaConfig, rand: u32) {
        self.last_sent = Some(now);
        self.initial_sent = self.initial_sent.saturating_add(1);
        let min = u64::from(cfg.min_interval) * SEC;
        let max = u64::from(cfg.max_interval) * SEC;
        let span = u128::from(max - min.min(max));
        let mut wait = min + (u128::from(rand) * span / u128::from(u32::MAX)) as u64;
        if self.initial_sent < MAX_INITIAL_RTR_ADVERTISEMENTS {
            wait = wait.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next = now + wait;
    }

    /// A router solicitation arrived at `now`: the next advertisement
    /// moves earlier, to a random delay up to [`MAX_RA_DELAY_TIME`] and no
    /// sooner than [`MIN_DELAY_BETWEEN_RAS`] after the last one; never
    /// later than it was.
    pub fn solicited(&mut self, now: u64, rand: u32) {
        let delay = (u64::from(rand) * MAX_RA_DELAY_TIME) / u64::from(u32::MAX);
        let mut at = now + delay;
        if let Some(last) = self.last_sent {
            at = at.max(last + MIN_DELAY_BETWEEN_RAS);
        }
        self.next = self.next.min(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radvd_defaults_and_bounds() {
        let c = RaConfig::default();
        assert_eq!(
            (
                c.max_interval,
                c.min_interval,
                c.router_lifetime,
                c.hop_limit
            ),
            (600, 198, 1800, 64)
        );
        assert_eq!(c.check(), Ok(()));
        let c = RaConfig::with_max_interval(4);
        assert_eq!((c.min_interval, c.router_lifetime), (3, 12));
        assert_eq!(c.check(), Ok(()));
        assert!(RaConfig::with_max_interval(3).check().is_err());
        let c = RaConfig {
            min_interval: 500,
            ..RaConfig::default()
        };
        assert!(c.check().is_err_and(|e| e.contains("min_interval 500")));
        let mut c = RaConfig {
            router_lifetime: 100,
            ..RaConfig::default()
        };
        assert!(c.check().is_err());
        c.router_lifetime = 0;
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn schedule_initial_then_random_and_solicited() {
        let cfg = RaConfig::default();
        let mut s = RaSchedule::new(0);
        assert!(s.due(0));
        s.sent(0, &cfg, u32::MAX);
        // Initial advertisements at most 16 s apart.
        assert_eq!(s.due_at(), MAX_INITIAL_RTR_ADVERT_INTERVAL);
        s.sent(s.due_at(), &cfg, u32::MAX);
        s.sent(s.due_at(), &cfg, u32::MAX);
        // Then between min and max.
        let last = 3 * MAX_INITIAL_RTR_ADVERT_INTERVAL;
        s.sent(last, &cfg, 0);
        assert_eq!(s.due_at(), last + 198 * SEC);
        s.sent(last, &cfg, u32::MAX);
        assert_eq!(s.due_at(), last + 600 * SEC);
        // A solicitation 1 s after: not before 3 s after the last one.
        s.solicited(last + SEC, 0);
        assert_eq!(s.due_at(), last + MIN_DELAY_BETWEEN_RAS);
        // Long after: within half a second.
        s.sent(last + MIN_DELAY_BETWEEN_RAS, &cfg, u32::MAX);
        let now = last + 100 * SEC;
        s.solicited(now, u32::MAX);
        assert_eq!(s.due_at(), now + MAX_RA_DELAY_TIME);
    }
}
