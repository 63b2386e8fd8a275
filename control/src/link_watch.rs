//! Link changes while `xdpgw run` runs: the kernel's link and IPv4 address
//! announcements ([`LinkMonitor`]) for the interfaces the gateway drives,
//! applied to the gateway ([`Gateway::link_changed`]: MTU, address, up and
//! carrier) and logged, one line per change; and the addresses the host
//! gives the host path devices (`ip addr add ... dev xg-wan0`, keepalived's
//! virtual addresses), which become addresses of their interfaces, and the
//! link-local multicast groups the host joins on them (`/proc/net/igmp`,
//! read at each poll: no netlink group announces them), which arriving
//! packets to such a group are delivered for.

use xdpgw_dataplane::gateway::{Gateway, LinkApplied, LinkChange};
use xdpgw_dataplane::port::{LinkEvent, LinkMonitor};

use crate::service::{self, level};

/// A kernel interface xdpgw drives (a port) and the gateway interfaces on
/// it: the port's own (untagged) interface, if configured, and its VLAN
/// interfaces.
pub struct WatchedPort {
    pub ifindex: u32,
    pub name: String,
    /// Gateway interfaces on the port, with whether each is the port's own
    /// (the one the kernel's addresses of the port belong to).
    pub ifaces: Vec<(u8, bool)>,
}

/// A host path device (TUN) and the gateway interface it belongs to.
pub struct WatchedHostDevice {
    pub ifindex: u32,
    pub name: String,
    pub iface: u8,
}

/// The gateway's ports as the kernel numbers them, and the monitor.
pub struct LinkWatch {
    monitor: LinkMonitor,
    ifaces: Vec<WatchedPort>,
    hosts: Vec<WatchedHostDevice>,
    /// The largest MTU the dataplane's frames hold.
    cap: u16,
    events: Vec<LinkEvent>,
}

impl LinkWatch {
    /// Watches the ports `ifaces` through `monitor`, opened before their
    /// state was read.
    pub fn new(monitor: LinkMonitor, ifaces: Vec<WatchedPort>, cap: u16) -> LinkWatch {
        LinkWatch {
            monitor,
            ifaces,
            hosts: Vec::new(),
            cap,
            events: Vec::new(),
        }
    }

    /// Also follows the addresses of the host path devices `hosts`, from
    /// now on: what their creation announced (the configured address, set
    /// in steps by SIOCSIFADDR and SIOCSIFNETMASK) is passed over.
    pub fn watch_host_devices(&mut self, gw: &Gateway, hosts: Vec<WatchedHostDevice>) {
        self.poll(gw);
        self.hosts = hosts;
    }

    /// Applies what changed since the last call (never blocks). On a
    /// monitor overflow every link is read again.
    pub fn poll(&mut self, gw: &Gateway) {
        if !self.hosts.is_empty() {
            // Missing only without IPv4 multicast in the kernel: no groups.
            let text = std::fs::read_to_string("/proc/net/igmp").unwrap_or_default();
            let devices: Vec<(&str, u8)> = self
                .hosts
                .iter()
                .map(|h| (h.name.as_str(), h.iface))
                .collect();
            gw.set_host_groups(&link_local_groups(&text, &devices));
        }
        self.events.clear();
        self.monitor.poll(&mut self.events);
        if self.events.contains(&LinkEvent::Lost) {
            service::log(
                level::WARNING,
                "xdpgw: link changes were lost (netlink overflow); links read again",
            );
            for p in &self.ifaces {
                if let Some(e) = LinkMonitor::link(p.ifindex) {
                    self.events.push(e);
                }
            }
        }
        for k in 0..self.events.len() {
            let e = self.events[k];
            self.apply(gw, e);
        }
    }

    fn apply(&self, gw: &Gateway, e: LinkEvent) {
        let ifindex = match e {
            LinkEvent::Link { ifindex, .. }
            | LinkEvent::Removed { ifindex }
            | LinkEvent::Addr { ifindex, .. } => ifindex,
            LinkEvent::Lost => return,
        };
        if let Some(h) = self.hosts.iter().find(|h| h.ifindex == ifindex) {
            if let LinkEvent::Addr {
                added,
                addr,
                prefix,
                secondary,
                ..
            } = e
            {
                let change = if added {
                    LinkChange::HostAddrAdded {
                        addr,
                        prefix,
                        secondary,
                    }
                } else {
                    LinkChange::HostAddrRemoved { addr, prefix }
                };
                let done = gw.link_changed(h.iface, change);
                let shown = gw.iface_name(h.iface).unwrap_or(&h.name);
                for (lvl, line) in describe_host(shown, &h.name, &done) {
                    service::log(lvl, &line);
                }
            }
            return;
        }
        let Some(port) = self.ifaces.iter().find(|p| p.ifindex == ifindex) else {
            return;
        };
        let name = &port.name;
        // The port's MTU and state are its VLAN interfaces' too; its
        // addresses are its own interface's only.
        let (change, own_only) = match e {
            LinkEvent::Link {
                mtu, up, carrier, ..
            } => (
                LinkChange::Link {
                    mtu,
                    cap: self.cap,
                    up,
                    carrier,
                },
                false,
            ),
            LinkEvent::Addr {
                added: true,
                addr,
                prefix,
                ..
            } => (LinkChange::AddrAdded { addr, prefix }, true),
            LinkEvent::Addr { addr, prefix, .. } => {
                (LinkChange::AddrRemoved { addr, prefix }, true)
            }
            LinkEvent::Removed { .. } => {
                service::log(
                    level::ERR,
                    &format!(
                        "xdpgw: {name}: the interface was removed; nothing is forwarded through \
                         it until xdpgw is restarted"
                    ),
                );
                return;
            }
            LinkEvent::Lost => return,
        };
        for &(iface, own) in &port.ifaces {
            if own_only && !own {
                continue;
            }
            let done = gw.link_changed(iface, change);
            let shown = gw.iface_name(iface).unwrap_or(name);
            for (lvl, line) in describe(shown, &done) {
                service::log(lvl, &line);
            }
        }
    }
}

/// The log lines for what [`Gateway::link_changed`] did on `name`.
fn describe(name: &str, done: &LinkApplied) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    if let Some((old, new)) = done.mtu {
        match done.mtu_capped {
            Some(link) => out.push((
                level::WARNING,
                format!(
                    "xdpgw: {name}: MTU {link}, more than the dataplane's frames hold: \
                     forwarding with MTU {new} (was {old})"
                ),
            )),
            None => out.push((level::INFO, format!("xdpgw: {name}: MTU {old} -> {new}"))),
        }
    }
    if let Some((up, carrier)) = done.state {
        let (lvl, what) = match (up, carrier) {
            (true, true) => (level::INFO, "up, carrier"),
            (true, false) => (level::WARNING, "up, no carrier"),
            (false, _) => (level::WARNING, "down"),
        };
        out.push((lvl, format!("xdpgw: {name}: link {what}")));
    }
    if let Some((old, new)) = done.addr {
        let show = |a: Option<(std::net::Ipv4Addr, u8)>| {
            a.map_or("none".to_string(), |(a, p)| format!("{a}/{p}"))
        };
        let lvl = if new.is_some() {
            level::INFO
        } else {
            level::WARNING
        };
        out.push((
            lvl,
            format!("xdpgw: {name}: address {} -> {}", show(old), show(new)),
        ));
    }
    if done.flushed > 0 {
        out.push((
            level::INFO,
            format!(
                "xdpgw: {name}: {} masqueraded connections forgotten",
                done.flushed
            ),
        ));
    }
    out
}

/// The link-local groups (224.0.0.0/24) `/proc/net/igmp` (`text`) lists on
/// the `devices` (name, interface), as `(interface, group)`. The file gives
/// each device's line (`Idx Device : Count Querier`), then one line per
/// group whose first field is the group as the kernel's `%08X` of its
/// network-order word (native byte order: 010000E0 is 224.0.0.1 here).
fn link_local_groups(text: &str, devices: &[(&str, u8)]) -> Vec<(u8, std::net::Ipv4Addr)> {
    let mut out = Vec::new();
    let mut on = None;
    for line in text.lines().skip(1) {
        if !line.starts_with(char::is_whitespace) {
            let name = line.split_whitespace().nth(1).unwrap_or("");
            on = devices.iter().find(|(d, _)| *d == name).map(|&(_, i)| i);
            continue;
        }
        let (Some(iface), Some(word)) = (on, line.split_whitespace().next()) else {
            continue;
        };
        let Ok(word) = u32::from_str_radix(word, 16) else {
            continue;
        };
        let group = std::net::Ipv4Addr::from(word.to_ne_bytes());
        if group.octets()[..3] == [224, 0, 0] {
            out.push((iface, group));
        }
    }
    out
}

/// The log lines for a host path device's address change on `name`
/// (device `dev`).
fn describe_host(name: &str, dev: &str, done: &LinkApplied) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    if let Some((a, p)) = done.host_added {
        out.push((
            level::INFO,
            format!("xdpgw: {name}: address {a}/{p} added (on {dev}); announced by gratuitous ARP"),
        ));
    }
    if let Some((a, p)) = done.host_removed {
        out.push((
            level::INFO,
            format!("xdpgw: {name}: address {a}/{p} removed (from {dev})"),
        ));
    }
    if let Some((a, p)) = done.host_refused {
        out.push((
            level::WARNING,
            format!(
                "xdpgw: {name}: address {a}/{p} on {dev} ignored: an interface holds at most {} \
                 addresses besides its own",
                xdpgw_dataplane::host_addr::MAX_HOST_ADDRS
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn reads_the_joined_groups() {
        let word = |g: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(g));
        let text = format!(
            "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
             1\tlo        :     1      V3\n\t\t\t\t{}     1 0:00000000\t\t0\n\
             4\txg-lan0   :     3      V3\n\t\t\t\t{}     1 0:00000000\t\t0\n\
             \t\t\t\t{}     1 0:00000000\t\t0\n\t\t\t\t{}     1 0:00000000\t\t0\n\
             5\txg-wan0   :     1      V3\n\t\t\t\t{}     1 0:00000000\t\t0\n",
            word([224, 0, 0, 1]),
            word([224, 0, 0, 18]),
            word([239, 1, 2, 3]),
            word([224, 0, 0, 1]),
            word([224, 0, 0, 1]),
        );
        let groups = link_local_groups(&text, &[("xg-lan0", 0), ("xg-wan0", 1)]);
        assert_eq!(
            groups,
            [
                (0, Ipv4Addr::new(224, 0, 0, 18)),
                (0, Ipv4Addr::new(224, 0, 0, 1)),
                (1, Ipv4Addr::new(224, 0, 0, 1)),
            ]
        );
        assert!(link_local_groups("garbage\n\tzz\n", &[("xg-lan0", 0)]).is_empty());
    }

    #[test]
    fn describes_each_change() {
        let done = LinkApplied {
            mtu: Some((1500, 1280)),
            mtu_capped: None,
            state: Some((true, false)),
            addr: Some((Some((Ipv4Addr::new(203, 0, 113, 1), 24)), None)),
            flushed: 3,
            ..LinkApplied::default()
        };
        let lines: Vec<String> = describe("wan0", &done).into_iter().map(|l| l.1).collect();
        assert_eq!(
            lines,
            [
                "xdpgw: wan0: MTU 1500 -> 1280",
                "xdpgw: wan0: link up, no carrier",
                "xdpgw: wan0: address 203.0.113.1/24 -> none",
                "xdpgw: wan0: 3 masqueraded connections forgotten",
            ]
        );
        let capped = LinkApplied {
            mtu: Some((1500, 1774)),
            mtu_capped: Some(9000),
            ..LinkApplied::default()
        };
        assert_eq!(
            describe("lan0", &capped)[0].1,
            "xdpgw: lan0: MTU 9000, more than the dataplane's frames hold: forwarding with MTU \
             1774 (was 1500)"
        );
        assert!(describe("lan0", &LinkApplied::default()).is_empty());
        let host = LinkApplied {
            host_added: Some((Ipv4Addr::new(203, 0, 113, 10), 24)),
            host_refused: Some((Ipv4Addr::new(203, 0, 113, 99), 32)),
            ..LinkApplied::default()
        };
        let lines: Vec<String> = describe_host("wan0", "xg-wan0", &host)
            .into_iter()
            .map(|l| l.1)
            .collect();
        assert_eq!(
            lines,
            [
                "xdpgw: wan0: address 203.0.113.10/24 added (on xg-wan0); announced by gratuitous \
                 ARP",
                "xdpgw: wan0: address 203.0.113.99/32 on xg-wan0 ignored: an interface holds at \
                 most 16 addresses besides its own",
            ]
        );
    }
}
