//! Routes: connected routes from the interfaces' addresses plus static
//! routes, longest prefix first. A gateway has a handful, so a sorted list
//! scanned in order is as fast as a trie and simpler. One table per family
//! (`RouteTable` for IPv4, `RouteTable<Ipv6Addr>`), as Linux keeps them.

use std::net::Ipv4Addr;

use crate::flow::Addr;
use crate::rule::Ipv4Net;

/// A destination prefix: an address with all but its first `len` bits
/// clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix<A> {
    pub addr: A,
    pub len: u8,
}

impl<A: Addr> Prefix<A> {
    /// `addr/len`, the host bits cleared; `None` if `len` is too long.
    pub fn new(addr: A, len: u8) -> Option<Prefix<A>> {
        (len <= A::BITS).then(|| Prefix {
            addr: addr.masked(len),
            len,
        })
    }

    #[inline]
    pub fn contains(&self, a: A) -> bool {
        a.masked(self.len) == self.addr
    }
}

/// A static route: to `to` via `via`, out of `dev` if given (a
/// link-local gateway is on every link: `ip route ... via fe80::1 dev
/// wan0`), else out of the interface whose network holds `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticRoute<A> {
    pub to: Prefix<A>,
    pub via: A,
    pub dev: Option<u8>,
}

impl From<Ipv4Net> for Prefix<Ipv4Addr> {
    /// A non-contiguous mask (which routes never have) counts its bits.
    fn from(n: Ipv4Net) -> Prefix<Ipv4Addr> {
        let len = n
            .prefix_len()
            .unwrap_or(u32::from(n.mask()).count_ones() as u8);
        Prefix {
            addr: n.addr().masked(len),
            len,
        }
    }
}

/// A route: packets to `net` leave through `iface`, to `via` or (connected)
/// straight to their destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<A = Ipv4Addr> {
    pub net: Prefix<A>,
    pub iface: u8,
    pub via: Option<A>,
}

/// Where a packet goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop<A = Ipv4Addr> {
    pub iface: u8,
    /// The address whose MAC the frame is sent to.
    pub addr: A,
}

/// The main routing table's id (`ip route ... table main`).
pub const MAIN_TABLE: u32 = 254;
/// The priority of Linux's rule that looks up the main table: rules with a
/// lower number come first.
pub const MAIN_PRIORITY: u32 = 32766;

/// A routing policy rule (`ip rule add [fwmark M[/MASK]] [from NET]
/// [priority P] table T`): packets it selects look up `table` first; when
/// that table has no route for them, the next rule is tried, and last the
/// main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRule<A = Ipv4Addr> {
    pub priority: u32,
    /// `(value, mask)`: the packet's mark under `mask` must be `value`.
    pub fwmark: Option<(u32, u32)>,
    pub from: Option<Prefix<A>>,
    pub table: u32,
}

impl<A: Addr> RouteRule<A> {
    #[inline]
    fn selects(&self, src: A, mark: u32) -> bool {
        self.fwmark.is_none_or(|(v, m)| mark & m == v) && self.from.is_none_or(|n| n.contains(src))
    }
}

/// Routing tables besides main and the rules that choose them (multi-WAN by
/// mark, as `ip rule` / `ip route ... table` set it up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy<A = Ipv4Addr> {
    /// Static routes `(table, destination, gateway)` of tables other than
    /// main; they leave through the interface whose network holds the
    /// gateway, as main's do.
    pub routes: Vec<(u32, Prefix<A>, A)>,
    pub rules: Vec<RouteRule<A>>,
}

impl<A> Default for RoutePolicy<A> {
    fn default() -> RoutePolicy<A> {
        RoutePolicy {
            routes: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RouteTable<A = Ipv4Addr> {
    /// The main table: connected and static routes.
    routes: Vec<Route<A>>,
    /// Other tables, by id.
    tables: Vec<(u32, Vec<Route<A>>)>,
    /// Policy rules by priority (main's own at [`MAIN_PRIORITY`] is
    /// implicit).
    rules: Vec<RouteRule<A>>,
}

impl<A> Default for RouteTable<A> {
    fn default() -> RouteTable<A> {
        RouteTable {
            routes: Vec::new(),
            tables: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Why a route table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// A static route's gateway is not on any connected network.
    Unreachable { to: String, via: String },
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::Unreachable { to, via } => write!(
                f,
                "route to {to}: gateway {via} is not on a connected network"
            ),
        }
    }
}

impl std::error::Error for RouteError {}

impl RouteTable<Ipv4Addr> {
    /// Connected routes for `(iface index, address, prefix)` and static
    /// routes `(destination, gateway)`; each static route leaves through the
    /// interface whose network holds its gateway.
    pub fn new(
        connected: &[(u8, Ipv4Addr, u8)],
        statics: &[(Ipv4Net, Ipv4Addr)],
    ) -> Result<RouteTable, RouteError> {
        let statics: Vec<StaticRoute<Ipv4Addr>> = statics
            .iter()
            .map(|&(n, via)| StaticRoute {
                to: n.into(),
                via,
                dev: None,
            })
            .collect();
        RouteTable::build(connected, &statics)
    }
}

impl<A: Addr> RouteTable<A> {
    /// [`RouteTable::new`] for either family.
    pub fn build(
        connected: &[(u8, A, u8)],
        statics: &[StaticRoute<A>],
    ) -> Result<RouteTable<A>, RouteError> {
        let mut routes: Vec<Route<A>> = connected
            .iter()
            .filter_map(|&(iface, addr, prefix)| {
                Some(Route {
                    net: Prefix::new(addr, prefix)?,
                    iface,
                    via: None,
                })
            })
            .collect();
        let connected_routes = routes.clone();
        for s in statics {
            let route = match s.dev {
                Some(iface) => Route {
                    net: s.to,
                    iface,
                    via: Some(s.via),
                },
                None => static_route(&connected_routes, s.to, s.via)?,
            };
            routes.push(route);
        }
        sort(&mut routes);
        Ok(RouteTable {
            routes,
            tables: Vec::new(),
            rules: Vec::new(),
        })
    }

    /// Adds the tables and rules of `policy` (routes of main stay).
    pub fn with_policy(mut self, policy: &RoutePolicy<A>) -> Result<RouteTable<A>, RouteError> {
        let connected_routes: Vec<Route<A>> = self
            .routes
            .iter()
            .filter(|r| r.via.is_none())
            .copied()
            .collect();
        for &(table, to, via) in &policy.routes {
            let route = static_route(&connected_routes, to, via)?;
            if table == MAIN_TABLE {
                self.routes.push(route);
                sort(&mut self.routes);
                continue;
            }
            match self.tables.iter_mut().find(|(t, _)| *t == table) {
                Some((_, routes)) => {
                    routes.push(route);
                    sort(routes);
                }
                None => self.tables.push((table, vec![route])),
            }
        }
        self.rules = policy.rules.clone();
        self.rules.sort_by_key(|r| r.priority);
        Ok(self)
    }

    /// The main table's route for `dst`.
    #[inline]
    pub fn lookup(&self, dst: A) -> Option<NextHop<A>> {
        first(&self.routes, dst)
    }

    /// The route for a packet from `src` to `dst` with mark `mark`, after
    /// the policy rules (`fib_rules_lookup`): each rule that selects it in
    /// priority order looks up its table, the first route found wins; then
    /// the main table.
    #[inline]
    pub fn lookup_from(&self, dst: A, src: A, mark: u32) -> Option<NextHop<A>> {
        for r in &self.rules {
            if r.priority >= MAIN_PRIORITY {
                break;
            }
            if !r.selects(src, mark) {
                continue;
            }
            let found = if r.table == MAIN_TABLE {
                first(&self.routes, dst)
            } else {
                self.tables
                    .iter()
                    .find(|(t, _)| *t == r.table)
                    .and_then(|(_, routes)| first(routes, dst))
            };
            if found.is_some() {
                return found;
            }
        }
        let main = first(&self.routes, dst);
        if main.is_some() {
            return main;
        }
        // Rules after main's (priority above 32766).
        self.rules
            .iter()
            .filter(|r| r.priority > MAIN_PRIORITY && r.selects(src, mark))
            .find_map(|r| {
                self.tables
                    .iter()
                    .find(|(t, _)| *t == r.table)
                    .and_then(|(_, routes)| first(routes, dst))
            })
    }

    pub fn routes(&self) -> &[Route<A>] {
        &self.routes
    }
}

/// A static route to `to` via `via`, through the interface whose connected
/// network holds `via` (the longest such prefix).
fn static_route<A: Addr>(
    connected: &[Route<A>],
    to: Prefix<A>,
    via: A,
) -> Result<Route<A>, RouteError> {
    let hop = connected
        .iter()
        .filter(|r| r.net.contains(via))
        .max_by_key(|r| r.net.len)
        .ok_or_else(|| RouteError::Unreachable {
            to: format!("{}/{}", to.addr, to.len),
            via: via.to_string(),
        })?;
    Ok(Route {
        net: to,
        iface: hop.iface,
        via: Some(via),
    })
}

/// Longest prefix first; connected before static at equal length.
fn sort<A>(routes: &mut [Route<A>]) {
    routes.sort_by(|a, b| {
        b.net
            .len
            .cmp(&a.net.len)
            .then(a.via.is_some().cmp(&b.via.is_some()))
    });
}

#[inline]
fn first<A: Addr>(routes: &[Route<A>], dst: A) -> Option<NextHop<A>> {
    routes
        .iter()
        .find(|r| r.net.contains(dst))
        .map(|r| NextHop {
            iface: r.iface,
            addr: r.via.unwrap_or(dst),
        })
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

    /// Two uplinks: main's default via wan0, table 100's via wan1; mark 1
    /// selects table 100, as `ip rule add fwmark 1 table 100` does; a table
    /// without a route for the destination falls through to main.
    #[test]
    fn marks_choose_tables_as_ip_rule() {
        let a = Ipv4Addr::new;
        let any = Ipv4Net::with_prefix(Ipv4Addr::UNSPECIFIED, 0).expect("net");
        let rt = RouteTable::new(
            &[
                (0, a(192, 168, 10, 1), 24),
                (1, a(203, 0, 113, 1), 24),
                (2, a(192, 0, 2, 1), 24),
            ],
            &[(any, a(203, 0, 113, 254))],
        )
        .and_then(|t| {
            t.with_policy(&RoutePolicy {
                routes: vec![(100, any.into(), a(192, 0, 2, 254))],
                rules: vec![
                    RouteRule {
                        priority: 100,
                        fwmark: Some((1, 0xff)),
                        from: None,
                        table: 100,
                    },
                    RouteRule {
                        priority: 200,
                        fwmark: None,
                        from: Some(
                            Ipv4Net::with_prefix(a(192, 168, 10, 64), 26)
                                .expect("net")
                                .into(),
                        ),
                        table: 100,
                    },
                ],
            })
        })
        .expect("routes");
        let client = a(192, 168, 10, 2);
        let out = |dst, src, mark| rt.lookup_from(dst, src, mark).map(|h| (h.iface, h.addr));
        let far = a(198, 51, 100, 20);
        assert_eq!(out(far, client, 0), Some((1, a(203, 0, 113, 254))));
        assert_eq!(out(far, client, 1), Some((2, a(192, 0, 2, 254))));
        assert_eq!(
            out(far, client, 0x101),
            Some((2, a(192, 0, 2, 254))),
            "under the mask"
        );
        assert_eq!(out(far, client, 2), Some((1, a(203, 0, 113, 254))));
        assert_eq!(
            out(far, a(192, 168, 10, 70), 0),
            Some((2, a(192, 0, 2, 254))),
            "from"
        );
        // Table 100 holds only its default: the LAN is reached by it too, as
        // in Linux (operators add a rule for main before it).
        assert_eq!(out(client, client, 1), Some((2, a(192, 0, 2, 254))));
        // Main alone is what `lookup` sees.
        assert_eq!(rt.lookup(far).map(|h| h.iface), Some(1));
    }

    #[test]
    fn ipv6_longest_prefix() {
        use std::net::Ipv6Addr;
        let lan = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);
        let wan = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1);
        let up = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x254);
        let any = Prefix::new(Ipv6Addr::UNSPECIFIED, 0).expect("prefix");
        let via = |via, dev| StaticRoute { to: any, via, dev };
        let rt = RouteTable::build(&[(0, lan, 64), (1, wan, 64)], &[via(up, None)]).expect("rt");
        let client = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
        assert_eq!(
            rt.lookup(client),
            Some(NextHop {
                iface: 0,
                addr: client
            })
        );
        let far = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 9);
        assert_eq!(rt.lookup(far), Some(NextHop { iface: 1, addr: up }));
        assert_eq!(Prefix::new(lan, 129), None);
        assert!(Prefix::new(lan, 128).is_some_and(|p| p.contains(lan) && !p.contains(client)));
        // A gateway on no connected network is refused.
        let off = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 1);
        assert!(RouteTable::build(&[(0, lan, 64)], &[via(off, None)]).is_err());
        // A link-local gateway with its device.
        let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let rt = RouteTable::build(&[(0, lan, 64)], &[via(ll, Some(1))]).expect("rt");
        assert_eq!(rt.lookup(far), Some(NextHop { iface: 1, addr: ll }));
    }
}
