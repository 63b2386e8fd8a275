//! conntrackd's state-sync protocol on the wire (conntrack-tools 1.4.7:
//! `include/network.h`, `src/build.c`, `src/parse.c`, the receive loop of
//! `src/sync-mode.c`). Sans I/O: bytes in, values out, and back.
//!
//! A UDP datagram holds one or more messages back to back (conntrackd
//! fills a datagram up to the link's MTU less 28 bytes before it sends it:
//! `channel_send`). A message starts with an 8-byte header:
//!
//! ```text
//!  0  version << 4 | type   (u8)  version 1; type 0-2 conntrack NEW/UPD/DEL,
//!                                 3-5 expectation NEW/UPD/DEL, 10 control
//!  1  flags                 (u8)  RESYNC 0x02, NACK 0x04, ACK 0x08,
//!                                 ALIVE 0x10, HELLO 0x20, HELLO_BACK 0x40
//!  2  length                (u16, big-endian) the whole message, header included
//!  4  sequence number       (u32, big-endian)
//! ```
//!
//! (`struct nethdr` declares `type:4, version:4` on little-endian hosts and
//! the reverse on big-endian ones, so that the version is the high nibble
//! either way.) A control message with ACK, NACK or RESYNC is 16 bytes: the
//! header, then `from` and `to` (u32, big-endian), the range of sequence
//! numbers acknowledged or asked for again (`struct nethdr_ack`). A
//! conntrack message's header is followed by attributes, each
//!
//! ```text
//!  0  length (u16, big-endian)  4 + the data's length (padding excluded)
//!  2  type   (u16, big-endian)  NTA_*
//!  4  data, then zeros up to a multiple of 4
//! ```
//!
//! Facts checked against the daemon (Debian's conntrackd 1.4.7 on x86-64,
//! the captures in this module's tests, IPv4 and IPv6):
//!
//! - Addresses (`NTA_IPV4`, `NTA_SNAT_IPV4`, ...) and the original ports
//!   (`NTA_PORT`) are in network order; status, timeout and mark are u32
//!   big-endian.
//! - The NAT ports (`NTA_SPAT_PORT`, `NTA_DPAT_PORT`) and the ICMP id are
//!   *little-endian* from an x86 sender: `ct_build_u16` applies `htons` to
//!   a value libnetfilter_conntrack already keeps in network order, and
//!   `ct_parse_u16` undoes it the same way, so two conntrackd on hosts of
//!   the same byte order agree. This codec writes and reads them
//!   little-endian, as every x86 and arm64 conntrackd does.
//! - A NATed entry carries `NTA_SNAT_IPV4` (the reply's destination) only
//!   when its status has `IPS_SRC_NAT_DONE` (0x80), and `NTA_DNAT_IPV4`
//!   only with `IPS_DST_NAT_DONE` (0x100) (`nfct_getobjopt`
//!   `NFCT_GOPT_IS_SNAT`): a sender must set them.
//! - An ICMP entry carries `NTA_SPAT_PORT` and `NTA_DPAT_PORT` of 0 when
//!   it is NATed (the reply tuple's "ports" differ from the original's).
//! - An IPv6 entry carries `NTA_IPV6` (source then destination, 32 bytes)
//!   instead of `NTA_IPV4`, its NAT66 as `NTA_SNAT_IPV6`/`NTA_DNAT_IPV6`
//!   (16 bytes, under the same status bits), its ports and NAT ports as
//!   IPv4's; an ICMPv6 entry (protocol 58) the ICMP attributes of IPv4's.
//! - Entries the kernel made with `conntrack -I` carry `NTA_SYNPROXY`
//!   (type 31, 12 zero bytes); a receiver skips attributes it does not use.
//! - The receiver refuses a message whose attribute is shorter than 4
//!   bytes, runs past the message, or has the wrong length for its type
//!   (`msg2ct`); trailing bytes of 4 or fewer are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `CONNTRACKD_PROTOCOL_VERSION`.
pub const PROTOCOL_VERSION: u8 = 1;
/// `NETHDR_SIZ`.
pub const HDR_LEN: usize = 8;
/// `NETHDR_ACK_SIZ`.
pub const ACK_HDR_LEN: usize = 16;
/// IPv4 and UDP headers: what a datagram leaves of the link's MTU
/// (`channel_buffer_open`'s `headersiz` for UDP).
pub const UDP_OVERHEAD: usize = 28;

/// Message types (`enum nethdr_type`).
pub mod msg_type {
    pub const CT_NEW: u8 = 0;
    pub const CT_UPD: u8 = 1;
    pub const CT_DEL: u8 = 2;
    pub const EXP_NEW: u8 = 3;
    pub const EXP_DEL: u8 = 5;
    /// `NET_T_STATE_MAX`.
    pub const STATE_MAX: u8 = EXP_DEL;
    pub const CTL: u8 = 10;
}

/// Header flags (`NET_F_*`).
pub mod flag {
    pub const RESYNC: u8 = 1 << 1;
    pub const NACK: u8 = 1 << 2;
    pub const ACK: u8 = 1 << 3;
    pub const ALIVE: u8 = 1 << 4;
    pub const HELLO: u8 = 1 << 5;
    pub const HELLO_BACK: u8 = 1 << 6;
}

/// Attribute types (`enum nta_attr`, 1.4.7).
pub mod nta {
    pub const IPV4: u16 = 0;
    pub const IPV6: u16 = 1;
    pub const L4PROTO: u16 = 2;
    pub const PORT: u16 = 3;
    pub const TCP_STATE: u16 = 4;
    pub const STATUS: u16 = 5;
    pub const TIMEOUT: u16 = 6;
    pub const MARK: u16 = 7;
    pub const SNAT_IPV4: u16 = 12;
    pub const DNAT_IPV4: u16 = 13;
    pub const SPAT_PORT: u16 = 14;
    pub const DPAT_PORT: u16 = 15;
    pub const ICMP_TYPE: u16 = 22;
    pub const ICMP_CODE: u16 = 23;
    pub const ICMP_ID: u16 = 24;
    pub const SNAT_IPV6: u16 = 29;
    pub const DNAT_IPV6: u16 = 30;
}

/// Linux's `IPS_*` status bits conntrackd carries (`NTA_STATUS`).
pub mod ips {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    pub const DST_NAT_DONE: u32 = 1 << 8;
}

/// Why bytes are not a message (each counted by the receiver, as
/// conntrackd's `msg_rcv_*` counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes left than a header (`msg_rcv_truncated`).
    #[error("truncated message")]
    Truncated,
    /// A length of 0, past the datagram, or short of the header
    /// (`msg_rcv_bad_size`).
    #[error("bad message length {0}")]
    BadSize(u16),
    /// Another protocol version (`msg_rcv_bad_version`).
    #[error("protocol version {0}")]
    BadVersion(u8),
    /// Neither data nor a control message this protocol knows
    /// (`msg_rcv_bad_header`, `msg_rcv_bad_type`).
    #[error("bad message type {ty} with flags {flags:#04x}")]
    BadHeader { ty: u8, flags: u8 },
    /// An attribute is malformed (`msg_rcv_bad_payload`).
    #[error("bad attribute {attr} of {len} bytes")]
    BadAttr { attr: u16, len: u16 },
    /// No address pair, or no layer-4 protocol.
    #[error("entry without {0}")]
    Missing(&'static str),
}

/// A message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub ty: u8,
    pub flags: u8,
    pub len: u16,
    pub seq: u32,
}

impl Header {
    /// `IS_DATA`: a state message, HELLO flags at most.
    pub fn is_data(&self) -> bool {
        self.ty <= msg_type::STATE_MAX && self.flags & !(flag::HELLO | flag::HELLO_BACK) == 0
    }

    fn ctl(&self, f: u8) -> bool {
        self.ty == msg_type::CTL && self.flags & f != 0
    }

    /// Carries a `from`/`to` range (`IS_ACK || IS_NACK || IS_RESYNC`).
    pub fn has_range(&self) -> bool {
        self.ctl(flag::ACK | flag::NACK | flag::RESYNC)
    }
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// A conntrack entry: its kind and attributes (see [`parse_ct`]).
    Ct(CtKind, &'a [u8]),
    /// An expectation (not used by xdpgw).
    Exp,
    /// A control message: ACK/NACK/RESYNC (the flags say which) with their
    /// range, ALIVE without.
    Ctl { range: Option<(u32, u32)> },
}

/// A conntrack message's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtKind {
    New,
    Update,
    Destroy,
}

impl CtKind {
    pub fn msg_type(self) -> u8 {
        match self {
            CtKind::New => msg_type::CT_NEW,
            CtKind::Update => msg_type::CT_UPD,
            CtKind::Destroy => msg_type::CT_DEL,
        }
    }
}

/// One message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub hdr: Header,
    pub body: Body<'a>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The messages of a datagram, in order. As conntrackd's receive loop
/// (`channel_handler_routine`), a framing error ends the datagram: the
/// iterator yields it and stops. A message of another version or an
/// unknown type is yielded as an error too, but the next one is read
/// (its length is trusted, as conntrackd trusts it).
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages {
        rest: datagram,
        done: false,
    }
}

/// See [`messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let fail = |s: &mut Self, e| {
            s.done = true;
            Some(Err(e))
        };
        if b.len() < HDR_LEN {
            return fail(self, WireError::Truncated);
        }
        let hdr = Header {
            version: b[0] >> 4,
            ty: b[0] & 0x0f,
            flags: b[1],
            len: be16(b, 2),
            seq: be32(b, 4),
        };
        let len = usize::from(hdr.len);
        if len == 0 || len > b.len() {
            return fail(self, WireError::BadSize(hdr.len));
        }
        if hdr.has_range() {
            if b.len() < ACK_HDR_LEN {
                return fail(self, WireError::Truncated);
            }
            if len < ACK_HDR_LEN {
                return fail(self, WireError::BadSize(hdr.len));
            }
        } else if len < HDR_LEN {
            return fail(self, WireError::BadSize(hdr.len));
        }
        let msg = &b[..len];
        self.rest = &b[len..];
        if hdr.version != PROTOCOL_VERSION {
            return Some(Err(WireError::BadVersion(hdr.version)));
        }
        let body = if hdr.is_data() {
            match hdr.ty {
                msg_type::CT_NEW => Body::Ct(CtKind::New, &msg[HDR_LEN..]),
                msg_type::CT_UPD => Body::Ct(CtKind::Update, &msg[HDR_LEN..]),
                msg_type::CT_DEL => Body::Ct(CtKind::Destroy, &msg[HDR_LEN..]),
                _ => Body::Exp,
            }
        } else if hdr.has_range() {
            Body::Ctl {
                range: Some((be32(msg, 8), be32(msg, 12))),
            }
        } else if hdr.ctl(flag::ALIVE) {
            Body::Ctl { range: None }
        } else {
            return Some(Err(WireError::BadHeader {
                ty: hdr.ty,
                flags: hdr.flags,
            }));
        };
        Some(Ok(Message { hdr, body }))
    }
}

/// A conntrack entry as conntrackd carries it: the original tuple, the
/// state, and the NAT as the reply tuple's differences from the inverted
/// original (`NTA_SNAT_*`: the reply's destination address, `NTA_SPAT_PORT`
/// its destination port; `NTA_DNAT_*`, `NTA_DPAT_PORT`: its source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedCt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP, UDP: the original direction's ports.
    pub ports: Option<(u16, u16)>,
    /// Linux's `IPS_*` bits.
    pub status: Option<u32>,
    /// Linux's `enum tcp_conntrack`.
    pub tcp_state: Option<u8>,
    /// Seconds left.
    pub timeout: Option<u32>,
    pub mark: Option<u32>,
    pub snat: Option<IpAddr>,
    pub dnat: Option<IpAddr>,
    pub spat: Option<u16>,
    pub dpat: Option<u16>,
    /// ICMP: type, code, id.
    pub icmp: Option<(u8, u8, u16)>,
}

impl SyncedCt {
    /// An entry of `proto` between `src` and `dst`, nothing else known.
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8) -> SyncedCt {
        SyncedCt {
            src,
            dst,
            proto,
            ports: None,
            status: None,
            tcp_state: None,
            timeout: None,
            mark: None,
            snat: None,
            dnat: None,
            spat: None,
            dpat: None,
            icmp: None,
        }
    }
}

/// The length an attribute must have (its data's, without the 4-byte
/// header), `None` for types this codec skips (`parse.c`'s table; skipped
/// types keep their fixed sizes checked where conntrackd checks them).
fn attr_size(attr: u16) -> Option<usize> {
    Some(match attr {
        nta::IPV4 => 8,
        nta::IPV6 => 32,
        nta::L4PROTO | nta::TCP_STATE | nta::ICMP_TYPE | nta::ICMP_CODE => 1,
        nta::PORT | nta::STATUS | nta::TIMEOUT | nta::MARK => 4,
        nta::SNAT_IPV4 | nta::DNAT_IPV4 => 4,
        nta::SPAT_PORT | nta::DPAT_PORT | nta::ICMP_ID => 2,
        nta::SNAT_IPV6 | nta::DNAT_IPV6 => 16,
        // Master tuple, NAT sequence adjustment, SCTP, DCCP, window
        // scales, SYNPROXY: checked, not used.
        8 => 8,
        9 => 32,
        10 | 17 | 20 | 21 | 25 | 26 => 1,
        11 | 18 | 19 => 4,
        16 => 24,
        31 => 12,
        _ => return None,
    })
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// A conntrack message's attributes as an entry (`msg2ct`).
pub fn parse_ct(attrs: &[u8]) -> Result<SyncedCt, WireError> {
    let mut addrs: Option<(IpAddr, IpAddr)> = None;
    let mut proto = None;
    let mut ct = SyncedCt::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        0,
    );
    let mut rest = attrs;
    while rest.len() > 4 {
        let len = be16(rest, 0);
        let attr = be16(rest, 2);
        let bad = WireError::BadAttr { attr, len };
        let l = usize::from(len);
        if l > rest.len() || l < 4 {
            return Err(bad);
        }
        let data = &rest[4..l];
        match attr_size(attr) {
            Some(n) if n != data.len() => return Err(bad),
            _ => {}
        }
        match attr {
            nta::IPV4 => addrs = Some((v4(data).into(), v4(&data[4..]).into())),
            nta::IPV6 => addrs = Some((v6(data).into(), v6(&data[16..]).into())),
            nta::L4PROTO => proto = Some(data[0]),
            nta::PORT => ct.ports = Some((be16(data, 0), be16(data, 2))),
            nta::TCP_STATE => ct.tcp_state = Some(data[0]),
            nta::STATUS => ct.status = Some(be32(data, 0)),
            nta::TIMEOUT => ct.timeout = Some(be32(data, 0)),
            nta::MARK => ct.mark = Some(be32(data, 0)),
            nta::SNAT_IPV4 => ct.snat = Some(v4(data).into()),
            nta::DNAT_IPV4 => ct.dnat = Some(v4(data).into()),
            nta::SNAT_IPV6 => ct.snat = Some(v6(data).into()),
            nta::DNAT_IPV6 => ct.dnat = Some(v6(data).into()),
            nta::SPAT_PORT => ct.spat = Some(u16::from_le_bytes([data[0], data[1]])),
            nta::DPAT_PORT => ct.dpat = Some(u16::from_le_bytes([data[0], data[1]])),
            nta::ICMP_TYPE => ct.icmp.get_or_insert((0, 0, 0)).0 = data[0],
            nta::ICMP_CODE => ct.icmp.get_or_insert((0, 0, 0)).1 = data[0],
            nta::ICMP_ID => {
                ct.icmp.get_or_insert((0, 0, 0)).2 = u16::from_le_bytes([data[0], data[1]])
            }
            _ => {}
        }
        let step = (l + 3) & !3;
        rest = rest.get(step..).unwrap_or(&[]);
    }
    let (src, dst) = addrs.ok_or(WireError::Missing("an address pair"))?;
    ct.src = src;
    ct.dst = dst;
    ct.proto = proto.ok_or(WireError::Missing("a layer-4 protocol"))?;
    if ct.snat.is_some_and(|a| a.is_ipv4() != src.is_ipv4())
        || ct.dnat.is_some_and(|a| a.is_ipv4() != src.is_ipv4())
    {
        return Err(WireError::Missing("NAT addresses of the entry's family"));
    }
    Ok(ct)
}

/// Appends an attribute (`put_header`, `addattr`).
fn put_attr(out: &mut Vec<u8>, attr: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&attr.to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

fn put_addr(out: &mut Vec<u8>, v4attr: u16, v6attr: u16, a: IpAddr) {
    match a {
        IpAddr::V4(a) => put_attr(out, v4attr, &a.octets()),
        IpAddr::V6(a) => put_attr(out, v6attr, &a.octets()),
    }
}

/// Appends a header (`nethdr_set`): `len` is the whole message's.
fn put_header(out: &mut Vec<u8>, ty: u8, flags: u8, len: u16, seq: u32) {
    out.push(PROTOCOL_VERSION << 4 | ty);
    out.push(flags);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
}

/// Appends a conntrack message, attributes in `ct2msg`'s order.
pub fn build_ct(out: &mut Vec<u8>, kind: CtKind, flags: u8, seq: u32, ct: &SyncedCt) {
    let start = out.len();
    put_header(out, kind.msg_type(), flags, 0, seq);
    match (ct.src, ct.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&s.octets());
            b[4..].copy_from_slice(&d.octets());
            put_attr(out, nta::IPV4, &b);
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let mut b = [0u8; 32];
            b[..16].copy_from_slice(&v6(s).octets());
            b[16..].copy_from_slice(&v6(d).octets());
            put_attr(out, nta::IPV6, &b);
        }
    }
    if let Some(s) = ct.status {
        put_attr(out, nta::STATUS, &s.to_be_bytes());
    }
    put_attr(out, nta::L4PROTO, &[ct.proto]);
    if let Some((sp, dp)) = ct.ports {
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&sp.to_be_bytes());
        b[2..].copy_from_slice(&dp.to_be_bytes());
        put_attr(out, nta::PORT, &b);
    }
    if let Some(s) = ct.tcp_state {
        put_attr(out, nta::TCP_STATE, &[s]);
    }
    if let Some((ty, code, id)) = ct.icmp {
        put_attr(out, nta::ICMP_TYPE, &[ty]);
        put_attr(out, nta::ICMP_CODE, &[code]);
        put_attr(out, nta::ICMP_ID, &id.to_le_bytes());
    }
    if let Some(t) = ct.timeout {
        put_attr(out, nta::TIMEOUT, &t.to_be_bytes());
    }
    if let Some(m) = ct.mark {
        put_attr(out, nta::MARK, &m.to_be_bytes());
    }
    if let Some(a) = ct.snat {
        put_addr(out, nta::SNAT_IPV4, nta::SNAT_IPV6, a);
    }
    if let Some(a) = ct.dnat {
        put_addr(out, nta::DNAT_IPV4, nta::DNAT_IPV6, a);
    }
    if let Some(p) = ct.spat {
        put_attr(out, nta::SPAT_PORT, &p.to_le_bytes());
    }
    if let Some(p) = ct.dpat {
        put_attr(out, nta::DPAT_PORT, &p.to_le_bytes());
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a control message: with a range (ACK, NACK, RESYNC: 16 bytes,
/// `nethdr_set_ack`) or without (ALIVE: 8 bytes, `nethdr_set_ctl`).
pub fn build_ctl(out: &mut Vec<u8>, flags: u8, seq: u32, range: Option<(u32, u32)>) {
    match range {
        Some((from, to)) => {
            put_header(out, msg_type::CTL, flags, ACK_HDR_LEN as u16, seq);
            out.extend_from_slice(&from.to_be_bytes());
            out.extend_from_slice(&to.to_be_bytes());
        }
        None => put_header(out, msg_type::CTL, flags, HDR_LEN as u16, seq),
    }
}

/// The largest conntrack message [`build_ct`] makes (IPv6, every
/// attribute): what a datagram must have room for.
pub const MAX_CT_LEN: usize = HDR_LEN + 36 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 20 + 20 + 8 + 8;

#[cfg(test)]
mod tests;
