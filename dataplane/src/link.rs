//! Logical interfaces over physical ports: where each of the gateway's
//! interfaces (the pipeline's `u8` index, what rules' `-i`/`-o` match, what
//! has an address, ARP, a host path device) is on the wire.
//!
//! A port is one kernel interface xdpgw opens (its AF_XDP sockets, index
//! `0..ports()` in a port queue). An interface is either a port itself
//! (untagged frames on it) or an 802.1Q VLAN of a port (`lan0.10`: frames
//! tagged with VLAN 10 on port `lan0`), as Linux's VLAN devices are. This is
//! the one place that maps between the two: [`Links::ingress`] takes a
//! frame as received on a port, removes its tag and says which interface it
//! arrived on; [`Links::egress`] takes a frame the pipeline sends out of an
//! interface, tags it for a VLAN and says which port it leaves by. The
//! worker driver calls them where frames enter and leave its queues; the
//! pipeline sees only untagged frames and interfaces.
//!
//! As Linux's `__netif_receive_skb_core` does: a frame tagged with a VLAN no
//! interface has is dropped (`vlan_unknown`; Linux marks it
//! `PACKET_OTHERHOST` and IP drops it), a priority tag (VLAN 0) is removed
//! and the frame stays with the port itself, and an untagged frame stays
//! with the port itself, dropped (`vlan_untagged`) when the port is only a
//! trunk for VLAN interfaces. A tag is written with priority 0 (a VLAN
//! device's default `egress-qos-map`). Stacked tags (QinQ) are not
//! supported: an 802.1ad (0x88a8) frame is not a VLAN frame here, and a
//! second 802.1Q tag stays in the frame (the pipeline drops it as
//! `vlan_unknown`).
//!
//! Gateways without VLAN interfaces (interface `k` is port `k`) pay one
//! predictable branch per frame: nothing is read or moved. Tagged frames
//! then reach the pipeline as they came, which (off the fast path, whose
//! `peek` takes only untagged IPv4) removes a priority tag and drops other
//! VLANs as `vlan_unknown`.

use crate::drop::DropReason;
use crate::wire::vlan::{self, Tag, VID_MAX};

/// No interface (in the per-port tables).
const NONE: u8 = u8::MAX;

/// Where an interface is: a port, and the VLAN of that port if it is a VLAN
/// interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    /// The port's index (its place in the port queues).
    pub port: u8,
    /// The 802.1Q VLAN id (1 to 4094); None: the port itself (untagged).
    pub vlan: Option<u16>,
}

impl Link {
    /// The port itself.
    pub fn port(port: u8) -> Link {
        Link { port, vlan: None }
    }

    /// VLAN `vid` of `port`.
    pub fn vlan(port: u8, vid: u16) -> Link {
        Link {
            port,
            vlan: Some(vid),
        }
    }
}

/// Why a set of links is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// Two interfaces on the same port and VLAN.
    Duplicate { iface: usize, other: usize },
    /// A VLAN id outside 1..=4094.
    BadVlan { iface: usize, vid: u16 },
    /// More than 255 interfaces or ports.
    TooMany,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Duplicate { iface, other } => write!(
                f,
                "interfaces {other} and {iface} are the same port and VLAN"
            ),
            LinkError::BadVlan { iface, vid } => {
                write!(f, "interface {iface}: VLAN {vid} is not 1 to {VID_MAX}")
            }
            LinkError::TooMany => write!(f, "more than 255 interfaces or ports"),
        }
    }
}

impl std::error::Error for LinkError {}

/// What arrives on one port.
#[derive(Clone, Debug)]
struct PortLinks {
    /// The interface of untagged (and priority-tagged) frames, or NONE.
    untagged: u8,
    /// The interface of each VLAN id, or NONE; None: no VLAN on this port.
    by_vid: Option<Box<[u8; 4096]>>,
}

/// The gateway's interfaces on its ports; see the module documentation.
#[derive(Clone, Debug)]
pub struct Links {
    /// Per interface: (port, VLAN id or 0).
    out: Box<[(u8, u16)]>,
    /// Per port.
    ports: Box<[PortLinks]>,
    /// Some interface is a VLAN (else interface k is port k).
    vlans: bool,
}

impl Links {
    /// The links of interfaces `0..links.len()`; ports are numbered
    /// `0..=max(port)`.
    pub fn new(links: &[Link]) -> Result<Links, LinkError> {
        if links.len() >= usize::from(NONE) {
            return Err(LinkError::TooMany);
        }
        let nports = links
            .iter()
            .map(|l| usize::from(l.port) + 1)
            .max()
            .unwrap_or(0);
        let mut ports: Vec<PortLinks> = (0..nports)
            .map(|_| PortLinks {
                untagged: NONE,
                by_vid: None,
            })
            .collect();
        for (k, l) in links.iter().enumerate() {
            let p = &mut ports[usize::from(l.port)];
            let slot = match l.vlan {
                None => &mut p.untagged,
                Some(vid) => {
                    if vid == 0 || vid > VID_MAX {
                        return Err(LinkError::BadVlan { iface: k, vid });
                    }
                    let table = p.by_vid.get_or_insert_with(|| Box::new([NONE; 4096]));
                    &mut table[usize::from(vid)]
                }
            };
            if *slot != NONE {
                return Err(LinkError::Duplicate {
                    iface: k,
                    other: usize::from(*slot),
                });
            }
            *slot = k as u8;
        }
        let vlans = links.iter().any(|l| l.vlan.is_some());
        // Without VLANs interface k must be port k for the identity to hold.
        let identity = links
            .iter()
            .enumerate()
            .all(|(k, l)| usize::from(l.port) == k);
        Ok(Links {
            out: links
                .iter()
                .map(|l| (l.port, l.vlan.unwrap_or(0)))
                .collect(),
            ports: ports.into_boxed_slice(),
            vlans: vlans || !identity,
        })
    }

    /// `n` interfaces, each a port of its own (interface k is port k).
    pub fn identity(n: usize) -> Links {
        let links: Vec<Link> = (0..n.min(254)).map(|k| Link::port(k as u8)).collect();
        match Links::new(&links) {
            Ok(l) => l,
            Err(_) => unreachable!("distinct untagged ports"),
        }
    }

    /// How many ports.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// Where interface `iface` is.
    pub fn link(&self, iface: u8) -> Option<Link> {
        self.out.get(usize::from(iface)).map(|&(port, vid)| Link {
            port,
            vlan: (vid != 0).then_some(vid),
        })
    }

    /// Whether frames are mapped at all (some interface is a VLAN, or not
    /// port k).
    pub fn mapped(&self) -> bool {
        self.vlans
    }

    /// A frame received on `port` in `buf[..len]`: its tag, if any, is
    /// removed in place; returns the interface it arrived on and its length
    /// now. A frame for no interface is a counted drop.
    #[inline]
    pub fn ingress(
        &self,
        port: usize,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(u8, usize), DropReason> {
        if !self.vlans {
            return Ok((port as u8, len));
        }
        self.ingress_mapped(port, buf, len)
    }

    #[inline(never)]
    fn ingress_mapped(
        &self,
        port: usize,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(u8, usize), DropReason> {
        let Some(p) = self.ports.get(port) else {
            return Err(DropReason::VlanUntagged);
        };
        let frame = buf.get(..len).ok_or(DropReason::EthTruncated)?;
        let (iface, len) = match vlan::read_tag(frame) {
            Tag::Untagged => (p.untagged, len),
            Tag::Truncated => return Err(DropReason::EthTruncated),
            Tag::Vlan(vid) => {
                let iface = if vid == 0 {
                    p.untagged
                } else {
                    match &p.by_vid {
                        Some(t) => t[usize::from(vid)],
                        None => NONE,
                    }
                };
                if iface == NONE && vid != 0 {
                    return Err(DropReason::VlanUnknown);
                }
                let len = vlan::untag(buf, len).ok_or(DropReason::EthTruncated)?;
                (iface, len)
            }
        };
        if iface == NONE {
            return Err(DropReason::VlanUntagged);
        }
        Ok((iface, len))
    }

    /// The interface a frame received on `port` would arrive on, without
    /// changing it: for the prefetch pass, which reads untagged frames only
    /// (None for a tagged one, or no interface).
    #[inline]
    pub fn peek(&self, port: usize, frame: &[u8]) -> Option<u8> {
        if !self.vlans {
            return Some(port as u8);
        }
        let p = self.ports.get(port)?;
        match vlan::read_tag(frame) {
            Tag::Untagged if p.untagged != NONE => Some(p.untagged),
            _ => None,
        }
    }

    /// A frame the pipeline sends out of `iface` in `buf[..len]`: tagged in
    /// place for a VLAN interface (it grows into `buf`'s room); returns the
    /// port it leaves by and its length now. None: no such interface, or no
    /// room for the tag (the caller counts it as the port's loss).
    #[inline]
    pub fn egress(&self, iface: u8, buf: &mut [u8], len: usize) -> Option<(usize, usize)> {
        if !self.vlans {
            return Some((usize::from(iface), len));
        }
        let &(port, vid) = self.out.get(usize::from(iface))?;
        if vid == 0 {
            return Some((usize::from(port), len));
        }
        Some((usize::from(port), vlan::tag(buf, len, vid)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(tag: Option<u16>) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if let Some(t) = tag {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45; 30]);
        f.resize(f.len() + 8, 0);
        f
    }

    /// lan0 (port 0, untagged), lan0.10, lan0.20, wan0 (port 1); port 2 a
    /// trunk only (VLAN 30).
    fn links() -> Links {
        Links::new(&[
            Link::port(0),
            Link::vlan(0, 10),
            Link::vlan(0, 20),
            Link::port(1),
            Link::vlan(2, 30),
        ])
        .expect("links")
    }

    #[test]
    fn ingress_and_egress() {
        let l = links();
        assert_eq!(l.ports(), 3);
        assert!(l.mapped());
        let untagged = frame(None);
        let n = untagged.len() - 8;
        for (port, tag, want) in [
            (0, None, Ok(0)),
            (0, Some(10), Ok(1)),
            (0, Some(0x2014), Ok(2)), // priority 1, VLAN 20
            (0, Some(0), Ok(0)),      // a priority tag: the port itself
            (0, Some(11), Err(DropReason::VlanUnknown)),
            (1, None, Ok(3)),
            (1, Some(10), Err(DropReason::VlanUnknown)),
            (2, None, Err(DropReason::VlanUntagged)),
            (2, Some(0), Err(DropReason::VlanUntagged)),
            (2, Some(30), Ok(4)),
            (3, None, Err(DropReason::VlanUntagged)),
        ] {
            let mut buf = frame(tag);
            let len = buf.len() - 8;
            let got = l.ingress(port, &mut buf, len);
            assert_eq!(got.map(|g| g.0), want, "port {port} tag {tag:?}");
            if let Ok((iface, len)) = got {
                assert_eq!(&buf[..len], &untagged[..n]);
                let (out_port, out_len) = l.egress(iface, &mut buf, len).expect("room");
                assert_eq!(out_port, port);
                let vid = tag.map(|t| t & 0xfff).filter(|&v| v != 0);
                assert_eq!(&buf[..out_len], &frame(vid)[..out_len]);
            }
        }
        assert_eq!(l.egress(9, &mut frame(None), n), None);
        // No room for the tag.
        let mut full = untagged[..n].to_vec();
        assert_eq!(l.egress(1, &mut full, n), None);
        assert_eq!(l.peek(0, &untagged), Some(0));
        assert_eq!(l.peek(0, &frame(Some(10))), None);
        assert_eq!(l.peek(2, &untagged), None);
        let mut short = frame(Some(10));
        assert_eq!(l.ingress(0, &mut short, 16), Err(DropReason::EthTruncated));
        assert_eq!(
            l.ingress(0, &mut short, 1000),
            Err(DropReason::EthTruncated)
        );
    }

    #[test]
    fn identity_changes_nothing() {
        let l = Links::identity(2);
        assert!(!l.mapped());
        let mut f = frame(Some(10));
        let len = f.len();
        assert_eq!(l.ingress(1, &mut f, len), Ok((1, len)));
        assert_eq!(l.egress(1, &mut f, len), Some((1, len)));
        assert_eq!(f, frame(Some(10)));
        assert_eq!(l.link(1), Some(Link::port(1)));
    }

    #[test]
    fn invalid_links() {
        assert_eq!(
            Links::new(&[Link::vlan(0, 10), Link::vlan(0, 10)]).err(),
            Some(LinkError::Duplicate { iface: 1, other: 0 })
        );
        assert_eq!(
            Links::new(&[Link::port(0), Link::port(0)]).err(),
            Some(LinkError::Duplicate { iface: 1, other: 0 })
        );
        for vid in [0, 4095, 9999] {
            assert_eq!(
                Links::new(&[Link::vlan(0, vid)]).err(),
                Some(LinkError::BadVlan { iface: 0, vid })
            );
        }
        // Untagged interfaces on ports out of order are mapped too.
        let swapped = Links::new(&[Link::port(1), Link::port(0)]).expect("links");
        assert!(swapped.mapped());
        let mut f = frame(None);
        let len = f.len();
        assert_eq!(swapped.ingress(0, &mut f, len), Ok((1, len)));
        assert_eq!(swapped.egress(1, &mut f, len), Some((0, len)));
    }

    proptest! {
        /// Whatever arrives, ingress neither panics nor returns a length
        /// beyond the frame, and what it accepts egress puts back as it was
        /// (but for the priority bits and a priority tag).
        #[test]
        fn ingress_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                            port in 0usize..4, room in 0usize..8, tagged in any::<bool>(),
                            vid in prop_oneof![Just(0u16), Just(10), Just(20), Just(30), any::<u16>()]) {
            let l = links();
            let mut buf = bytes.clone();
            if tagged && buf.len() >= 16 {
                buf[12] = 0x81;
                buf[13] = 0x00;
                buf[14..16].copy_from_slice(&vid.to_be_bytes());
            }
            let len = buf.len();
            buf.resize(len + room, 0);
            if let Ok((iface, n)) = l.ingress(port, &mut buf, len) {
                prop_assert!(n <= len);
                prop_assert!(usize::from(iface) < 5);
                if let Some((p, m)) = l.egress(iface, &mut buf, n) {
                    prop_assert_eq!(p, port);
                    prop_assert!(m <= buf.len());
                }
            }
        }
    }
}
