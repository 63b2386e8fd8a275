//! The little rtnetlink the port needs: look an interface up by name (index,
//! MAC, MTU, what XDP programs are attached), detach a legacy
//! (netlink-attached) XDP program, and listen for link and IPv4 address
//! changes ([`LinkMonitor`]). Messages are built and parsed here by hand;
//! the socket I/O goes through [`sys`](super::sys).

use std::os::fd::OwnedFd;

use super::sys::{self, Errno};

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// `nl_groups` bits (the legacy RTMGRP_* masks of RTNLGRP_LINK and
/// RTNLGRP_IPV4_IFADDR).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `ifa_flags`: a secondary address.
const IFA_F_SECONDARY: u8 = 0x01;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// In an NLMSG_ERROR: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_ATTACHED: u16 = 2;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;

/// A netlink failure: the errno and, when the kernel gave one, its
/// extended-ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetlinkError {
    pub errno: Errno,
    pub msg: Option<String>,
}

impl From<Errno> for NetlinkError {
    fn from(errno: Errno) -> Self {
        NetlinkError { errno, msg: None }
    }
}

/// What RTM_GETLINK told us about an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// `ifi_flags` (IFF_UP, IFF_LOWER_UP, ...).
    pub flags: u32,
    /// Program ids attached per XDP mode (0: none).
    pub xdp_drv_prog: u32,
    pub xdp_skb_prog: u32,
    pub xdp_hw_prog: u32,
}

/// A request under construction: header, ifinfomsg, attributes.
struct Request {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Request {
    fn new(msg_type: u16, flags: u16, ifindex: u32) -> Request {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
                                                    // struct ifinfomsg
        buf.push(libc::AF_UNSPEC as u8);
        buf.push(0);
        buf.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
        buf.extend_from_slice(&ifindex.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
        buf.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
        Request {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.buf
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn begin_nest(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes)
}

/// Iterates the netlink attributes in `b`: `(type without flags, payload)`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// Iterates the messages in one datagram: `(type, flags, body)`.
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::try_from(u32_at(b, 0)?).ok()?;
        let kind = u16_at(b, 4)?;
        let flags = u16_at(b, 6)?;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        let body = &b[NLMSG_HDRLEN..len];
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
        Some((kind, flags, body))
    })
}

/// Decodes an NLMSG_ERROR body: `Ok(())` for an ack, else the error.
fn decode_error(flags: u16, body: &[u8]) -> Result<(), NetlinkError> {
    let code = u32_at(body, 0).map(|c| c as i32).unwrap_or(-libc::EIO);
    if code == 0 {
        return Ok(());
    }
    // With NETLINK_CAP_ACK the echoed request is only its header.
    let mut msg = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let tlvs = body.get(4 + NLMSG_HDRLEN..).unwrap_or(&[]);
        for (kind, payload) in attrs(tlvs) {
            if kind == NLMSGERR_ATTR_MSG {
                let text = payload.split(|&c| c == 0).next().unwrap_or(&[]);
                msg = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    Err(NetlinkError {
        errno: code.checked_neg().unwrap_or(libc::EIO),
        msg,
    })
}

fn parse_link(body: &[u8]) -> LinkState {
    let mut state = LinkState {
        ifindex: u32_at(body, 4).unwrap_or(0),
        flags: u32_at(body, 8).unwrap_or(0),
        ..LinkState::default()
    };
    for (kind, payload) in attrs(body.get(IFINFOMSG_LEN..).unwrap_or(&[])) {
        match kind {
            IFLA_ADDRESS => {
                if let Ok(mac) = <[u8; 6]>::try_from(payload) {
                    state.mac = mac;
                }
            }
            IFLA_MTU => state.mtu = u32_at(payload, 0).unwrap_or(0),
            IFLA_XDP => {
                let mut attached = 0u8;
                let mut prog_id = 0u32;
                for (kind, payload) in attrs(payload) {
                    let id = u32_at(payload, 0).unwrap_or(0);
                    match kind {
                        IFLA_XDP_ATTACHED => attached = payload.first().copied().unwrap_or(0),
                        IFLA_XDP_PROG_ID => prog_id = id,
                        IFLA_XDP_DRV_PROG_ID => state.xdp_drv_prog = id,
                        IFLA_XDP_SKB_PROG_ID => state.xdp_skb_prog = id,
                        IFLA_XDP_HW_PROG_ID => state.xdp_hw_prog = id,
                        _ => {}
                    }
                }
                // With one program attached the kernel reports only
                // IFLA_XDP_PROG_ID and the mode in IFLA_XDP_ATTACHED.
                match attached {
                    XDP_ATTACHED_DRV if state.xdp_drv_prog == 0 => state.xdp_drv_prog = prog_id,
                    XDP_ATTACHED_SKB if state.xdp_skb_prog == 0 => state.xdp_skb_prog = prog_id,
                    XDP_ATTACHED_HW if state.xdp_hw_prog == 0 => state.xdp_hw_prog = prog_id,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    state
}

/// Sends `req` and reads replies until an ack/error; returns the last
/// RTM_NEWLINK seen (for GETLINK).
fn transact(
    sock: &OwnedFd,
    req: Vec<u8>,
    want_ack: bool,
) -> Result<Option<LinkState>, NetlinkError> {
    sys::send(sock, &req)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut link = None;
    // A GETLINK without ACK ends with its RTM_NEWLINK; anything else with
    // the ack. Bounded: the kernel answers one request with a few messages.
    for _ in 0..16 {
        let n = sys::recv(sock, &mut buf)?;
        for (kind, flags, body) in messages(&buf[..n]) {
            match kind {
                NLMSG_ERROR => {
                    decode_error(flags, body)?;
                    return Ok(link);
                }
                NLMSG_DONE => return Ok(link),
                RTM_NEWLINK => {
                    link = Some(parse_link(body));
                    if !want_ack {
                        return Ok(link);
                    }
                }
                _ => {}
            }
        }
    }
    Err(NetlinkError::from(libc::EPROTO))
}

/// RTM_GETLINK by name, in the calling thread's network namespace.
/// `ENODEV` means there is no such interface.
pub(crate) fn link_by_name(name: &str) -> Result<LinkState, NetlinkError> {
    let sock = sys::netlink_route_socket()?;
    let mut req = Request::new(RTM_GETLINK, 0, 0);
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    req.attr(IFLA_IFNAME, &cname);
    transact(&sock, req.finish(), false)?.ok_or(NetlinkError::from(libc::ENODEV))
}

/// RTM_GETLINK by index.
pub(crate) fn link_by_index(ifindex: u32) -> Result<LinkState, NetlinkError> {
    let sock = sys::netlink_route_socket()?;
    let req = Request::new(RTM_GETLINK, 0, ifindex);
    transact(&sock, req.finish(), false)?.ok_or(NetlinkError::from(libc::ENODEV))
}

/// Sets (`fd >= 0`) or removes (`fd == -1`) a legacy XDP program in the
/// mode `flags` names (XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE).
pub(crate) fn set_xdp_fd(ifindex: u32, fd: i32, flags: u32) -> Result<(), NetlinkError> {
    let sock = sys::netlink_route_socket()?;
    let mut req = Request::new(RTM_SETLINK, NLM_F_ACK, ifindex);
    req.begin_nest(IFLA_XDP)
        .attr(IFLA_XDP_FD, &fd.to_ne_bytes())
        .attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes())
        .end_nest();
    transact(&sock, req.finish(), true).map(drop)
}

/// A change the kernel announced on one interface ([`LinkMonitor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link as it is now.
    Link {
        ifindex: u32,
        mtu: u32,
        /// IFF_UP: administratively up.
        up: bool,
        /// IFF_LOWER_UP: it has carrier.
        carrier: bool,
    },
    /// RTM_DELLINK: the interface is gone.
    Removed { ifindex: u32 },
    /// RTM_NEWADDR / RTM_DELADDR of an IPv4 address.
    Addr {
        ifindex: u32,
        added: bool,
        addr: std::net::Ipv4Addr,
        prefix: u8,
        /// IFA_F_SECONDARY: another address of the interface has its
        /// subnet and prefix.
        secondary: bool,
    },
    /// The socket's buffer overflowed (ENOBUFS): events were lost; read
    /// the links again ([`LinkMonitor::link`]).
    Lost,
}

/// Listens for link changes (RTNLGRP_LINK: MTU, up, carrier) and IPv4
/// address changes (RTNLGRP_IPV4_IFADDR) in the network namespace it was
/// opened in; [`LinkMonitor::poll`] never blocks.
pub struct LinkMonitor {
    sock: OwnedFd,
    buf: Vec<u8>,
}

impl LinkMonitor {
    /// Subscribes, in the calling thread's network namespace. Open it
    /// before reading the links' state, so that no change in between is
    /// missed.
    pub fn open() -> Result<LinkMonitor, super::PortError> {
        let sock =
            sys::netlink_route_listener(RTMGRP_LINK | RTMGRP_IPV4_IFADDR).map_err(|errno| {
                super::PortError::Netlink {
                    op: "subscribing to link changes",
                    errno,
                    msg: None,
                }
            })?;
        Ok(LinkMonitor {
            sock,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// The descriptor, to wait on with poll(2).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.sock)
    }

    /// Appends what the kernel announced since the last call to `out`
    /// (nothing if nothing: never blocks).
    pub fn poll(&mut self, out: &mut Vec<LinkEvent>) {
        // Bounded: a burst of changes is read over several calls.
        for _ in 0..64 {
            match sys::recv_nonblocking(&self.sock, &mut self.buf) {
                Ok(n) => parse_events(&self.buf[..n], out),
                Err(e) if e == libc::ENOBUFS => out.push(LinkEvent::Lost),
                Err(_) => return,
            }
        }
    }

    /// The link `ifindex` as it is now (after [`LinkEvent::Lost`]).
    pub fn link(ifindex: u32) -> Option<LinkEvent> {
        let l = link_by_index(ifindex).ok()?;
        Some(LinkEvent::Link {
            ifindex,
            mtu: l.mtu,
            up: l.flags & IFF_UP != 0,
            carrier: l.flags & IFF_LOWER_UP != 0,
        })
    }
}

/// The link and address events in one datagram.
fn parse_events(b: &[u8], out: &mut Vec<LinkEvent>) {
    for (kind, _, body) in messages(b) {
        match kind {
            RTM_NEWLINK => {
                let l = parse_link(body);
                out.push(LinkEvent::Link {
                    ifindex: l.ifindex,
                    mtu: l.mtu,
                    up: l.flags & IFF_UP != 0,
                    carrier: l.flags & IFF_LOWER_UP != 0,
                });
            }
            RTM_DELLINK => out.push(LinkEvent::Removed {
                ifindex: u32_at(body, 4).unwrap_or(0),
            }),
            RTM_NEWADDR | RTM_DELADDR => {
                // struct ifaddrmsg: family, prefixlen, flags, scope, index.
                if body.first() != Some(&(libc::AF_INET as u8)) {
                    continue;
                }
                let prefix = body.get(1).copied().unwrap_or(0);
                let secondary = body.get(2).is_some_and(|f| f & IFA_F_SECONDARY != 0);
                let ifindex = u32_at(body, 4).unwrap_or(0);
                // IFA_LOCAL is the address itself; IFA_ADDRESS is the
                // peer's on point-to-point links, else the same.
                let (mut local, mut address) = (None, None);
                for (kind, payload) in attrs(body.get(IFADDRMSG_LEN..).unwrap_or(&[])) {
                    let a = <[u8; 4]>::try_from(payload)
                        .ok()
                        .map(std::net::Ipv4Addr::from);
                    match kind {
                        IFA_LOCAL => local = a,
                        IFA_ADDRESS => address = a,
                        _ => {}
                    }
                }
                if let Some(addr) = local.or(address) {
                    out.push(LinkEvent::Addr {
                        ifindex,
                        added: kind == RTM_NEWADDR,
                        addr,
                        prefix,
                        secondary,
                    });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let mut req = Request::new(RTM_SETLINK, NLM_F_ACK, 7);
        req.begin_nest(IFLA_XDP)
            .attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes())
            .attr(IFLA_XDP_FLAGS, &2u32.to_ne_bytes())
            .end_nest();
        let b = req.finish();
        assert_eq!(b.len(), 16 + 16 + 4 + 8 + 8);
        assert_eq!(u32_at(&b, 0), Some(b.len() as u32));
        assert_eq!(u16_at(&b, 4), Some(RTM_SETLINK));
        assert_eq!(u16_at(&b, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&b, 20), Some(7));
        let nested: Vec<_> = attrs(&b[32..]).collect();
        assert_eq!(nested.len(), 1);
        assert_eq!(nested[0].0, IFLA_XDP);
        let inner: Vec<_> = attrs(nested[0].1).collect();
        assert_eq!(inner[0], (IFLA_XDP_FD, &(-1i32).to_ne_bytes()[..]));
        assert_eq!(inner[1], (IFLA_XDP_FLAGS, &2u32.to_ne_bytes()[..]));
    }

    #[test]
    fn parses_link_with_one_generic_program() {
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&9u32.to_ne_bytes());
        let push = |kind: u16, payload: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(payload);
            while out.len() & 3 != 0 {
                out.push(0);
            }
        };
        push(IFLA_MTU, &1500u32.to_ne_bytes(), &mut body);
        push(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1], &mut body);
        let mut xdp = Vec::new();
        push(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB], &mut xdp);
        push(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes(), &mut xdp);
        push(IFLA_XDP | NLA_F_NESTED, &xdp, &mut body);
        let link = parse_link(&body);
        assert_eq!(link.ifindex, 9);
        assert_eq!(link.mtu, 1500);
        assert_eq!(link.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(link.xdp_skb_prog, 42);
        assert_eq!(link.xdp_drv_prog, 0);
    }

    #[test]
    fn parses_link_and_address_events() {
        let push = |kind: u16, payload: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(payload);
            while out.len() & 3 != 0 {
                out.push(0);
            }
        };
        let msg = |kind: u16, body: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&[0u8; 10]);
            out.extend_from_slice(body);
        };
        let mut link = vec![0u8; 16];
        link[4..8].copy_from_slice(&7u32.to_ne_bytes());
        link[8..12].copy_from_slice(&(IFF_UP | 0x40).to_ne_bytes());
        push(IFLA_MTU, &1280u32.to_ne_bytes(), &mut link);
        let mut addr = vec![libc::AF_INET as u8, 24, IFA_F_SECONDARY, 0];
        addr.extend_from_slice(&7u32.to_ne_bytes());
        push(IFA_ADDRESS, &[203, 0, 113, 9], &mut addr);
        push(IFA_LOCAL, &[203, 0, 113, 9], &mut addr);
        let mut v6 = vec![libc::AF_INET6 as u8, 64, 0, 0];
        v6.extend_from_slice(&7u32.to_ne_bytes());
        let mut b = Vec::new();
        msg(RTM_NEWLINK, &link, &mut b);
        msg(RTM_DELADDR, &addr, &mut b);
        msg(RTM_NEWADDR, &v6, &mut b);
        let mut out = Vec::new();
        parse_events(&b, &mut out);
        assert_eq!(
            out,
            [
                LinkEvent::Link {
                    ifindex: 7,
                    mtu: 1280,
                    up: true,
                    carrier: false
                },
                LinkEvent::Addr {
                    ifindex: 7,
                    added: false,
                    addr: std::net::Ipv4Addr::new(203, 0, 113, 9),
                    prefix: 24,
                    secondary: true,
                }
            ]
        );
    }

    #[test]
    fn decodes_extended_ack() {
        let mut body = Vec::new();
        body.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        body.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let msg = b"Can't replace active BPF XDP link\0";
        body.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        body.extend_from_slice(msg);
        let err = decode_error(NLM_F_ACK_TLVS, &body).expect_err("an error");
        assert_eq!(err.errno, libc::EBUSY);
        assert_eq!(
            err.msg.as_deref(),
            Some("Can't replace active BPF XDP link")
        );
        assert_eq!(decode_error(0, &0i32.to_ne_bytes()), Ok(()));
    }
}
