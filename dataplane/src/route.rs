//! Routes: connected routes from the interfaces' addresses plus static
//! routes, longest prefix first. A gateway has a handful, so a sorted list
//! scanned in order is as fast as a trie and simpler.

use std::net::Ipv4Addr;

use crate::rule::{prefix_to_mask, Ipv4Net};

/// A route: packets to `net` leave through `iface`, to `via` or (connected)
/// straight to their destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub net: Ipv4Net,
    pub prefix: u8,
    pub iface: u8,
    pub via: Option<Ipv4Addr>,
}

/// Where a packet goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub iface: u8,
    /// The address whose MAC the frame is sent to.
    pub addr: Ipv4Addr,
}

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why a route table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// A static route's gateway is not on any connected network.
    Unreachable { to: Ipv4Net, via: Ipv4Addr },
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::Unreachable { to, via } => write!(
                f,
                "route to {}/{}: gateway {via} is not on a connected network",
                to.addr(),
                to.prefix_len().unwrap_or(0)
            ),
        }
    }
}

impl std::error::Error for RouteError {}

impl RouteTable {
    /// Connected routes for `(iface index, address, prefix)` and static
    /// routes `(destination, gateway)`; each static route leaves through the
    /// interface whose network holds its gateway.
    pub fn new(
        connected: &[(u8, Ipv4Addr, u8)],
        statics: &[(Ipv4Net, Ipv4Addr)],
    ) -> Result<RouteTable, RouteError> {
        let mut routes: Vec<Route> = connected
            .iter()
            .filter_map(|&(iface, addr, prefix)| {
                Some(Route {
                    net: Ipv4Net::new(addr, prefix_to_mask(prefix)?),
                    prefix,
                    iface,
                    via: None,
                })
            })
            .collect();
        let connected_routes = routes.clone();
        for &(to, via) in statics {
            let hop = connected_routes
                .iter()
                .filter(|r| r.net.contains(via))
                .max_by_key(|r| r.prefix)
                .ok_or(RouteError::Unreachable { to, via })?;
            routes.push(Route {
                net: to,
                prefix: to.prefix_len().unwrap_or(0),
                iface: hop.iface,
                via: Some(via),
            });
        }
        // Longest prefix first; connected before static at equal length.
        routes.sort_by(|a, b| {
            b.prefix
                .cmp(&a.prefix)
                .then(a.via.is_some().cmp(&b.via.is_some()))
        });
        Ok(RouteTable { routes })
    }

    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| r.net.contains(dst))
            .map(|r| NextHop {
                iface: r.iface,
                addr: r.via.unwrap_or(dst),
            })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_default_goes_via_gateway() {
        let rt = RouteTable::new(
            &[
                (0, Ipv4Addr::new(192, 168, 10, 1), 24),
                (1, Ipv4Addr::new(203, 0, 113, 1), 24),
            ],
            &[
                (
                    Ipv4Net::with_prefix(Ipv4Addr::UNSPECIFIED, 0).expect("net"),
                    Ipv4Addr::new(203, 0, 113, 254),
                ),
                (
                    Ipv4Net::with_prefix(Ipv4Addr::new(10, 0, 0, 0), 8).expect("net"),
                    Ipv4Addr::new(192, 168, 10, 9),
                ),
            ],
        )
        .expect("routes");
        assert_eq!(
            rt.lookup(Ipv4Addr::new(192, 168, 10, 7)),
            Some(NextHop {
                iface: 0,
                addr: Ipv4Addr::new(192, 168, 10, 7)
            })
        );
        assert_eq!(
            rt.lookup(Ipv4Addr::new(10, 1, 2, 3)),
            Some(NextHop {
                iface: 0,
                addr: Ipv4Addr::new(192, 168, 10, 9)
            })
        );
        assert_eq!(
            rt.lookup(Ipv4Addr::new(8, 8, 8, 8)),
            Some(NextHop {
                iface: 1,
                addr: Ipv4Addr::new(203, 0, 113, 254)
            })
        );
        let e = RouteTable::new(
            &[(0, Ipv4Addr::new(192, 168, 10, 1), 24)],
            &[(
                Ipv4Net::with_prefix(Ipv4Addr::UNSPECIFIED, 0).expect("net"),
                Ipv4Addr::new(1, 1, 1, 1),
            )],
        );
        assert!(e.is_err());
        let none = RouteTable::new(&[(0, Ipv4Addr::new(192, 168, 10, 1), 24)], &[]).expect("rt");
        assert_eq!(none.lookup(Ipv4Addr::new(8, 8, 8, 8)), None);
    }
}
