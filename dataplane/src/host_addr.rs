//! Addresses the host gives the host path devices (`ip addr add
//! 203.0.113.10/24 dev xg-wan0`, keepalived's virtual addresses), which
//! become addresses of the device's interface besides its own
//! ([`HostAddrs`]), and the gratuitous ARPs that announce them on the wire
//! ([`GarpSchedule`]).
//!
//! The set is immutable: the control plane builds a new one for each
//! change and publishes it (the gateway's `ArcSwap`); workers read the one
//! of their batch without locking or allocating.

use std::net::Ipv4Addr;

/// At most this many host addresses per interface; more are refused (and
/// logged by the control plane).
pub const MAX_HOST_ADDRS: usize = 16;

/// One address of a host path device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostAddr {
    pub iface: u8,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// A secondary address (`IFA_F_SECONDARY`: another address of the
    /// interface has its subnet and prefix): never a source address
    /// (`inet_select_addr` skips it).
    pub secondary: bool,
}

impl HostAddr {
    /// Whether `a` is on this address's subnet (`inet_ifa_match`).
    #[inline]
    pub fn covers(&self, a: Ipv4Addr) -> bool {
        let mask = mask(self.prefix);
        u32::from(a) & mask == u32::from(self.addr) & mask
    }

    /// Whether `a` is this address's subnet's broadcast address (prefixes up
    /// to /30, as the kernel adds a broadcast route for them).
    #[inline]
    fn broadcast_is(&self, a: Ipv4Addr) -> bool {
        self.prefix < 31 && self.covers(a) && u32::from(a) | mask(self.prefix) == u32::MAX
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// What adding an address did ([`HostAddrs::with_added`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// New: the set with it.
    New,
    /// Already there; only its secondary flag may have changed (a
    /// secondary promoted to primary).
    Updated,
    /// Already there as it is.
    Unchanged,
    /// The interface holds [`MAX_HOST_ADDRS`] already.
    Full,
}

/// The host path devices' addresses, by interface, each interface's in the
/// kernel's order (`__inet_insert_ifa`: a primary after the interface's
/// last primary, a secondary at the end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAddrs {
    entries: Box<[HostAddr]>,
}

impl HostAddrs {
    /// Whether there are none (the packet path's first check).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every address.
    pub fn all(&self) -> &[HostAddr] {
        &self.entries
    }

    /// The interface holding `a`, if any.
    #[inline]
    pub fn iface_of(&self, a: Ipv4Addr) -> Option<u8> {
        self.entries.iter().find(|h| h.addr == a).map(|h| h.iface)
    }

    /// Whether interface `iface` holds `a`.
    #[inline]
    pub fn holds(&self, iface: u8, a: Ipv4Addr) -> bool {
        self.entries.iter().any(|h| h.iface == iface && h.addr == a)
    }

    /// Interface `iface`'s addresses, in order.
    #[inline]
    pub fn on(&self, iface: u8) -> impl Iterator<Item = &HostAddr> + '_ {
        self.entries.iter().filter(move |h| h.iface == iface)
    }

    /// Whether `a` is the broadcast address of a primary address's subnet
    /// (on `dev` only, if given).
    #[inline]
    pub fn is_broadcast(&self, a: Ipv4Addr, dev: Option<u8>) -> bool {
        self.entries
            .iter()
            .any(|h| !h.secondary && dev.is_none_or(|d| d == h.iface) && h.broadcast_is(a))
    }

    /// The set with `h` added (or its flag updated), and what happened.
    pub fn with_added(&self, h: HostAddr) -> (HostAddrs, Added) {
        let mut v = self.entries.to_vec();
        if let Some(e) = v
            .iter_mut()
            .find(|e| e.iface == h.iface && e.addr == h.addr && e.prefix == h.prefix)
        {
            if e.secondary == h.secondary {
                return (self.clone(), Added::Unchanged);
            }
            e.secondary = h.secondary;
            return (HostAddrs { entries: v.into() }, Added::Updated);
        }
        if self.on(h.iface).count() >= MAX_HOST_ADDRS {
            return (self.clone(), Added::Full);
        }
        // After the interface's last primary, or its last address for a
        // secondary (or its first place, when it has none).
        let mine = |e: &HostAddr| e.iface == h.iface;
        let after = if h.secondary {
            v.iter().rposition(mine)
        } else {
            v.iter().rposition(|e| mine(e) && !e.secondary)
        };
        let at = match after {
            Some(i) => i + 1,
            None => v.iter().position(|e| e.iface >= h.iface).unwrap_or(v.len()),
        };
        v.insert(at, h);
        (HostAddrs { entries: v.into() }, Added::New)
    }

    /// The set without `addr/prefix` on `iface`; None if it was not there.
    pub fn without(&self, iface: u8, addr: Ipv4Addr, prefix: u8) -> Option<HostAddrs> {
        let at = self
            .entries
            .iter()
            .position(|e| e.iface == iface && e.addr == addr && e.prefix == prefix)?;
        let mut v = self.entries.to_vec();
        v.remove(at);
        Some(HostAddrs { entries: v.into() })
    }
}

/// keepalived's defaults for a new master: `vrrp_garp_master_repeat` 5
/// gratuitous ARPs at once, and again `vrrp_garp_master_delay` 5 s later.
pub const GARP_REPEAT: usize = 5;
/// The second burst's delay, in nanoseconds.
pub const GARP_DELAY_NS: u64 = 5_000_000_000;
const GARP_BURSTS: u8 = 2;
/// Announcements pending at most (every interface's every host address).
const GARP_MAX: usize = crate::classify::MAX_IFACES * MAX_HOST_ADDRS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Garp {
    iface: u8,
    addr: Ipv4Addr,
    bursts_left: u8,
    /// When the next burst is due (0: at once).
    due: u64,
}

/// The gratuitous ARP bursts due for new host addresses. The control plane
/// adds (and removes) addresses; a worker's housekeeping takes what is due.
#[derive(Debug)]
pub struct GarpSchedule {
    pending: Vec<Garp>,
}

impl Default for GarpSchedule {
    fn default() -> Self {
        GarpSchedule {
            pending: Vec::with_capacity(GARP_MAX),
        }
    }
}

impl GarpSchedule {
    /// Announces `addr` on `iface`: a burst at once, another after
    /// [`GARP_DELAY_NS`] (starting over if it was pending).
    pub fn add(&mut self, iface: u8, addr: Ipv4Addr) {
        self.remove(iface, addr);
        if self.pending.len() < GARP_MAX {
            self.pending.push(Garp {
                iface,
                addr,
                bursts_left: GARP_BURSTS,
                due: 0,
            });
        }
    }

    /// `addr` left `iface`: nothing more is announced for it.
    pub fn remove(&mut self, iface: u8, addr: Ipv4Addr) {
        self.pending
            .retain(|g| !(g.iface == iface && g.addr == addr));
    }

    /// How many announcements are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Fills `out` with the bursts due at `now` (as many as fit; the rest
    /// stay due) and returns how many; each counts as sent. Allocates
    /// nothing.
    pub fn take_due(&mut self, now: u64, out: &mut [(u8, Ipv4Addr)]) -> usize {
        let mut n = 0;
        for g in self.pending.iter_mut() {
            if n == out.len() {
                break;
            }
            if g.due <= now && g.bursts_left > 0 {
                out[n] = (g.iface, g.addr);
                n += 1;
                g.bursts_left -= 1;
                g.due = now.saturating_add(GARP_DELAY_NS);
            }
        }
        self.pending.retain(|g| g.bursts_left > 0);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(iface: u8, a: [u8; 4], prefix: u8, secondary: bool) -> HostAddr {
        HostAddr {
            iface,
            addr: Ipv4Addr::from(a),
            prefix,
            secondary,
        }
    }

    #[test]
    fn kernel_order_and_lookups() {
        let s = HostAddrs::default();
        let (s, r) = s.with_added(h(1, [203, 0, 113, 10], 24, true));
        assert_eq!(r, Added::New);
        let (s, _) = s.with_added(h(0, [192, 168, 10, 254], 24, true));
        // A primary goes before the secondaries (after the last primary).
        let (s, _) = s.with_added(h(1, [198, 51, 100, 1], 32, false));
        let (s, _) = s.with_added(h(1, [203, 0, 113, 11], 24, true));
        let order: Vec<_> = s
            .all()
            .iter()
            .map(|e| (e.iface, e.addr.octets()[3]))
            .collect();
        assert_eq!(order, [(0, 254), (1, 1), (1, 10), (1, 11)]);
        assert_eq!(s.iface_of(Ipv4Addr::new(203, 0, 113, 11)), Some(1));
        assert_eq!(s.iface_of(Ipv4Addr::new(203, 0, 113, 12)), None);
        assert!(s.holds(0, Ipv4Addr::new(192, 168, 10, 254)));
        assert!(!s.holds(1, Ipv4Addr::new(192, 168, 10, 254)));
        assert_eq!(
            s.with_added(h(1, [203, 0, 113, 10], 24, true)).1,
            Added::Unchanged
        );
        // Promoted (promote_secondaries): the flag follows the kernel's.
        let (p, r) = s.with_added(h(1, [203, 0, 113, 10], 24, false));
        assert_eq!(r, Added::Updated);
        assert!(!p.on(1).nth(1).expect("two").secondary);
        let s = s
            .without(1, Ipv4Addr::new(203, 0, 113, 10), 24)
            .expect("was there");
        assert_eq!(s.on(1).count(), 2);
        assert!(s.without(1, Ipv4Addr::new(203, 0, 113, 10), 24).is_none());
        // A /32 has no broadcast; a primary /24 has.
        assert!(!s.is_broadcast(Ipv4Addr::new(198, 51, 100, 1), None));
        let (b, _) = s.with_added(h(2, [10, 9, 0, 1], 24, false));
        assert!(b.is_broadcast(Ipv4Addr::new(10, 9, 0, 255), None));
        assert!(b.is_broadcast(Ipv4Addr::new(10, 9, 0, 255), Some(2)));
        assert!(!b.is_broadcast(Ipv4Addr::new(10, 9, 0, 255), Some(1)));
    }

    #[test]
    fn bounded_per_interface() {
        let mut s = HostAddrs::default();
        for k in 0..MAX_HOST_ADDRS as u8 {
            let (n, r) = s.with_added(h(0, [10, 0, 0, k + 1], 32, false));
            assert_eq!(r, Added::New);
            s = n;
        }
        assert_eq!(s.with_added(h(0, [10, 0, 0, 99], 32, false)).1, Added::Full);
        assert_eq!(s.with_added(h(1, [10, 0, 1, 99], 32, false)).1, Added::New);
    }

    #[test]
    fn garp_bursts() {
        let mut g = GarpSchedule::default();
        let a = Ipv4Addr::new(203, 0, 113, 10);
        g.add(1, a);
        let mut out = [(0, Ipv4Addr::UNSPECIFIED); 4];
        assert_eq!(g.take_due(100, &mut out), 1);
        assert_eq!(out[0], (1, a));
        assert_eq!(g.take_due(200, &mut out), 0, "the second burst waits");
        assert_eq!(g.take_due(100 + GARP_DELAY_NS, &mut out), 1);
        assert!(g.is_empty(), "two bursts, then done");
        g.add(1, a);
        g.remove(1, a);
        assert_eq!(g.take_due(0, &mut out), 0);
        // More due than fit: the rest next time.
        for k in 0..6 {
            g.add(0, Ipv4Addr::new(10, 0, 0, k));
        }
        assert_eq!(g.take_due(0, &mut out), 4);
        assert_eq!(g.take_due(0, &mut out), 2);
    }
}
