//! Wire formats: Ethernet II, ARP, IPv4, TCP, UDP and ICMP, as the packet
//! path needs them; IPv6, ICMPv6 and neighbour discovery in [`ipv6`].
//!
//! - [`parse_ipv4`] validates a frame once and returns an [`Ipv4Info`]: the
//!   offsets and fields the pipeline uses (5-tuple, TCP flags and options, the
//!   datagram quoted by an ICMP error). Failures are
//!   [`DropReason`](crate::drop::DropReason)s.
//! - The `set_*` functions and [`dec_ttl`] rewrite a parsed frame in place
//!   and keep every checksum right by incremental update (RFC 1624), the
//!   quoted datagram of an ICMP error included.
//! - The `build_*` functions write answers (ARP, ICMP errors, TCP resets)
//!   into a caller's buffer as Linux builds them (tested byte for byte
//!   against Linux's own answers, captured: see `fixture`).
//!
//! Nothing here allocates, formats, locks or panics, whatever the bytes: every
//! access to packet data is bounds-checked (`get`, smoltcp's `new_checked`
//! views). The rewrites trust `info` to come from [`parse_ipv4`] of the same
//! frame; given a mismatched one they still cannot panic, and they write
//! nothing when a field they need lies outside the frame.
//!
//! The pipeline sees untagged Ethernet II frames: 802.1Q tags are removed
//! and inserted where frames enter and leave ports ([`vlan`], used by
//! [`crate::link`]). smoltcp's `wire` views do the
//! reading where their validation fits; where it does not (a UDP header in a
//! first fragment, the truncated datagram quoted by an ICMP error) we check
//! lengths ourselves and read through the offsets in `field`.

use std::net::Ipv4Addr;

mod build;
pub mod checksum;
pub mod fast;
mod field;
pub mod ipv6;
mod parse;
mod rewrite;
mod tcpmss;
pub mod vlan;

#[cfg(test)]
pub(crate) mod fixture;

pub use build::{build_arp, build_icmp_error, build_tcp_rst, IcmpError, ICMP_ERROR_MAX_LEN};
pub use ipv6::{parse_ipv6, Ipv6Info, ETHERTYPE_IPV6};
pub use parse::{ethertype, ipv4_options, parse_arp, parse_ipv4, udp_len};
pub use rewrite::{
    dec_ttl, echo_reply_in_place, set_dscp, set_dst, set_inner_dst, set_inner_src, set_macs,
    set_src, set_tos, set_ttl,
};
pub use tcpmss::{clamp_mss, clamp_mss6, MssEdit};

/// Length of an Ethernet II header.
pub const ETH_HDR: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// TCP flags, as in [`TcpInfo::flags`].
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// ICMP types and the codes of destination unreachable and time exceeded.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_SOURCE_QUENCH: u8 = 4;
pub const ICMP_REDIRECT: u8 = 5;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
pub const ICMP_NET_UNREACH: u8 = 0;
pub const ICMP_HOST_UNREACH: u8 = 1;
pub const ICMP_PROT_UNREACH: u8 = 2;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_NET_PROHIBITED: u8 = 9;
pub const ICMP_HOST_PROHIBITED: u8 = 10;
pub const ICMP_ADMIN_PROHIBITED: u8 = 13;
pub const ICMP_EXC_TTL: u8 = 0;
pub const ICMP_EXC_FRAGTIME: u8 = 1;

/// ARP operations ([`ArpInfo::op`]).
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Whether an ICMP type is a query with an identifier: echo (8/0), timestamp
/// (13/14), information (15/16), address mask (17/18).
#[inline]
pub fn icmp_is_query(ty: u8) -> bool {
    matches!(ty, 0 | 8 | 13..=18)
}

/// Whether an ICMP type is an error quoting a datagram: destination
/// unreachable (3), source quench (4), redirect (5), time exceeded (11),
/// parameter problem (12).
#[inline]
pub fn icmp_is_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// What the pipeline needs to know of a frame, found in one pass. Offsets are
/// into the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Offset of the IPv4 header ([`ETH_HDR`]).
    pub l3: usize,
    /// Header length in bytes (20..=60; options allowed).
    pub ihl: usize,
    /// `l3 + ihl`.
    pub l4: usize,
    /// IPv4 total length. The frame may carry Ethernet padding beyond it.
    pub total_len: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    /// The whole DSCP/ECN byte.
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    /// MF set or fragment offset != 0.
    pub fragment: bool,
    /// Fragment offset == 0 (also true of unfragmented datagrams).
    pub first_fragment: bool,
    pub l4info: L4,
}

/// The transport header of a first fragment (or unfragmented datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpInfo),
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp(IcmpInfo),
    /// Other protocols, and non-first fragments.
    Other,
}

/// A TCP header. In a first fragment `payload_len` counts the payload bytes
/// of this fragment only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// FIN=1 SYN=2 RST=4 PSH=8 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80 (the
    /// `TCP_*` constants).
    pub flags: u8,
    pub window: u16,
    /// Data offset in bytes (20..=60).
    pub header_len: usize,
    pub payload_len: usize,
    /// The window-scale option's shift, capped at 14 as Linux caps it
    /// (RFC 7323). Reported on any segment that carries it; it only means
    /// something on a SYN.
    pub wscale: Option<u8>,
    /// The SACK-permitted option is present (likewise meaningful on SYNs).
    pub sack_perm: bool,
}

/// An ICMP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpInfo {
    pub ty: u8,
    pub code: u8,
    /// The query identifier of echo/timestamp/info/address-mask messages
    /// (0 for others).
    pub id: u16,
    /// [`icmp_is_query`].
    pub is_query: bool,
    /// [`icmp_is_error`].
    pub is_error: bool,
    /// For errors: the quoted datagram, when at least its IPv4 header and 8
    /// bytes of its transport header are present, it is IPv4 with a sane
    /// header length, and it is not a non-first fragment (RFC 1122 3.2.2 says
    /// no error is sent about those; its "ports" would be payload bytes).
    pub inner: Option<InnerInfo>,
}

/// The datagram quoted by an ICMP error, partially parsed: its header is not
/// validated beyond version and length (its checksum and total length are
/// those of the original, which was usually cut short).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerInfo {
    /// Offset of the quoted IPv4 header in the frame.
    pub l3: usize,
    pub ihl: usize,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// TCP/UDP ports (they need only the first 8 bytes of L4); the query id
    /// in both for a quoted ICMP query; 0 otherwise.
    pub sport: u16,
    pub dport: u16,
    /// Bytes of quoted L4 present: everything up to the end of the ICMP
    /// message (RFC 4884 extensions, if any, are not told apart).
    pub l4_len: usize,
}

/// An Ethernet/IPv4 ARP request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpInfo {
    /// [`ARP_REQUEST`] or [`ARP_REPLY`].
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}
