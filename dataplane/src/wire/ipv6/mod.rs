//! IPv6 on the wire: the header and its extension-header chain, TCP, UDP
//! and ICMPv6 over it, neighbour discovery and router advertisements, as
//! pure functions over caller buffers (nothing here allocates, locks,
//! formats or panics, whatever the bytes).
//!
//! # How the pipeline is meant to use it
//!
//! - **Receive.** Dispatch on [`ethertype`](super::ethertype): 0x86DD
//!   ([`ETHERTYPE_IPV6`]) goes to [`parse_ipv6`], which makes Linux's
//!   `ip6_rcv_core` checks (each failure a [`DropReason`], counted as the
//!   IPv4 ones are) and walks the extension headers as `ipv6_skip_exthdr`
//!   does, once. Its [`Ipv6Info`] has what ip6tables and conntrack read:
//!   the upper-layer protocol and its offset ([`Ipv6Info::proto`],
//!   [`Ipv6Info::l4`]), the transport header ([`L4v6`], with the TCP
//!   fields of [`TcpInfo`] as for IPv4), the extension
//!   headers seen ([`ExtHeaders`]: the `-m ipv6header` mask, the fragment
//!   header for `-m frag` and reassembly, the routing header for `-m rt`,
//!   the router alert), and for an ICMPv6 error the quoted datagram
//!   ([`Inner6Info`]), which conntrack looks up as RELATED and NAT66
//!   rewrites. When it fails with `Ipv6BadOption` or `Ipv6Jumbogram`,
//!   [`hop_by_hop_problem`] tells whether Linux would answer with a
//!   parameter problem, where it points, and gives the parse to build it
//!   from. Frames Linux forwards without looking that we refuse on
//!   purpose: a hop-by-hop header that is not first, an extension header
//!   past the payload, more than [`MAX_EXT_HEADERS`], jumbograms.
//!   ICMPv6 types 133-137 ([`Icmpv6Info::is_ndp`]) go to
//!   [`ndp::parse_ndp`] when they are for the gateway.
//! - **Checksums.** [`checksum::transport_ok6`](super::checksum::transport_ok6)
//!   verifies TCP/UDP/ICMPv6 over the pseudo-header (conntrack's
//!   `nf_ip6_checksum`; a UDP checksum of 0 is wrong on IPv6);
//!   [`checksum::update128`](super::checksum::update128) is the
//!   incremental update for an address change.
//! - **Rewrite** in place, every checksum kept right incrementally (a wrong
//!   one stays wrong): [`set_src`]/[`set_dst`] (NAT66, port or echo id
//!   too), [`set_inner_src`]/[`set_inner_dst`] (the datagram quoted by an
//!   ICMPv6 error, and the error's own checksum), [`dec_hop_limit`],
//!   [`set_hop_limit`], [`set_tclass`]/[`set_dscp`], [`echo_reply_in_place`].
//!   IPv6 has no header checksum: the hop limit and traffic class
//!   rewrites touch no checksum.
//! - **Answer** with the builders, which write whole Ethernet frames into a
//!   caller's buffer and return their length (`None`: too small a buffer,
//!   or Linux would not answer): [`build_icmpv6_error`] (what `icmp6_send`
//!   sends: unreachable, packet too big, time exceeded, parameter problem),
//!   [`build_tcp_rst6`] (`nf_send_reset6`), and in [`ndp`] the neighbour
//!   solicitations and advertisements, router advertisements, and
//!   [`ndp::parse_ndp`] for what arrives (`ndisc_rcv`'s validation).
//! - **Addresses.** [`ndp::link_local_eui64`] (the `fe80::` address Linux
//!   derives from a MAC), [`ndp::solicited_node`], [`ndp::multicast_mac`].
//!
//! Tested against Linux: the builders byte for byte against frames Linux
//! and radvd sent (`fixture`); in `vm-tests/tests/ipv6_wire_linux.rs`, a
//! Linux host autoconfigures from our router advertisement and takes our
//! neighbour advertisements, echo replies, resets and ICMPv6 errors, and a
//! Linux router forwards exactly the malformed frames [`parse_ipv6`] takes
//! (but for the documented exceptions) and answers with our parameter
//! problems.
//!
//! Fragments: [`parse_ipv6`] reports them ([`Ipv6Info::fragment`],
//! [`ExtHeaders::frag`]) and parses the transport header of a first
//! fragment; reassembly (Linux's `nf_defrag_ipv6`) is the caller's, as for
//! IPv4.

use std::net::Ipv6Addr;

mod build;
pub mod ndp;
mod parse;
mod rewrite;

#[cfg(test)]
pub(crate) mod fixture;

pub use build::{build_icmpv6_error, build_tcp_rst6, Icmpv6Error, ICMPV6_ERROR_MAX_LEN};
pub use parse::{hop_by_hop_problem, parse_ipv6, OptionProblem, MAX_EXT_HEADERS};
pub use rewrite::{
    dec_hop_limit, echo_reply_in_place, set_dscp, set_dst, set_hop_limit, set_inner_dst,
    set_inner_src, set_src, set_tclass,
};

use super::TcpInfo;
#[cfg(doc)]
use crate::drop::DropReason;

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The IPv6 header's length (RFC 8200 3).
pub const IPV6_HDR: usize = 40;
/// The minimum link MTU of IPv6 (RFC 8200 5), Linux's `IPV6_MIN_MTU`.
pub const IPV6_MIN_MTU: usize = 1280;

/// Next header values (Linux's `NEXTHDR_*`).
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_TCP: u8 = 6;
pub const NEXTHDR_UDP: u8 = 17;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_ESP: u8 = 50;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_ICMPV6: u8 = 58;
pub const NEXTHDR_NONE: u8 = 59;
pub const NEXTHDR_DEST: u8 = 60;

/// The bits of [`ExtHeaders::mask`], in `ip6t_ipv6header`'s order (the
/// `--header` values of `-m ipv6header`).
pub const MASK_HOPOPTS: u8 = 128;
pub const MASK_DSTOPTS: u8 = 64;
pub const MASK_ROUTING: u8 = 32;
pub const MASK_FRAGMENT: u8 = 16;
pub const MASK_AH: u8 = 8;
pub const MASK_ESP: u8 = 4;
pub const MASK_NONE: u8 = 2;
pub const MASK_PROTO: u8 = 1;

/// ICMPv6 types (RFC 4443, RFC 4861) and codes.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;
pub const ICMPV6_PARAMPROB: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const NDISC_ROUTER_SOLICITATION: u8 = 133;
pub const NDISC_ROUTER_ADVERTISEMENT: u8 = 134;
pub const NDISC_NEIGHBOUR_SOLICITATION: u8 = 135;
pub const NDISC_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
pub const NDISC_REDIRECT: u8 = 137;
/// Destination unreachable codes 0-6.
pub const ICMPV6_NOROUTE: u8 = 0;
pub const ICMPV6_ADM_PROHIBITED: u8 = 1;
pub const ICMPV6_NOT_NEIGHBOUR: u8 = 2;
pub const ICMPV6_ADDR_UNREACH: u8 = 3;
pub const ICMPV6_PORT_UNREACH: u8 = 4;
pub const ICMPV6_POLICY_FAIL: u8 = 5;
pub const ICMPV6_REJECT_ROUTE: u8 = 6;
/// Time exceeded codes.
pub const ICMPV6_EXC_HOPLIMIT: u8 = 0;
pub const ICMPV6_EXC_FRAGTIME: u8 = 1;
/// Parameter problem codes.
pub const ICMPV6_HDR_FIELD: u8 = 0;
pub const ICMPV6_UNK_NEXTHDR: u8 = 1;
pub const ICMPV6_UNK_OPTION: u8 = 2;

/// Whether an ICMPv6 type is an error (types below 128, Linux's
/// `ICMPV6_INFOMSG_MASK` test: conntrack takes them as RELATED, and no
/// error is sent about one).
#[inline]
pub fn icmpv6_is_error(ty: u8) -> bool {
    ty < 128
}

/// Whether an ICMPv6 type is a query with an identifier NAT rewrites:
/// echo request and reply (Linux's `icmpv6_manip_pkt` rewrites only those).
#[inline]
pub fn icmpv6_is_query(ty: u8) -> bool {
    matches!(ty, ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY)
}

/// Whether an ICMPv6 type is neighbour discovery (133-137).
#[inline]
pub fn icmpv6_is_ndp(ty: u8) -> bool {
    (NDISC_ROUTER_SOLICITATION..=NDISC_REDIRECT).contains(&ty)
}

/// What the pipeline needs to know of an IPv6 frame, found in one pass.
/// Offsets are into the frame. The names mirror
/// [`Ipv4Info`](super::Ipv4Info)'s where the meaning is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Info {
    /// Offset of the IPv6 header ([`ETH_HDR`](super::ETH_HDR)).
    pub l3: usize,
    /// Offset of the upper-layer header, after the extension headers; of
    /// the fragment's data for a non-first fragment; of the ESP header, or
    /// of the end of the last header before "no next header".
    pub l4: usize,
    /// The IPv6 payload length. The frame may carry Ethernet padding
    /// beyond `l3 + 40 + payload_len`.
    pub payload_len: u16,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol as ip6tables' `-p` sees it (Linux's
    /// `ipv6_find_hdr`): the first next-header value that is not an
    /// extension header; for a non-first fragment the fragment header's
    /// next header; [`NEXTHDR_ESP`] when ESP ends the walk,
    /// [`NEXTHDR_NONE`] for "no next header".
    pub proto: u8,
    pub hop_limit: u8,
    /// The traffic class: DSCP (upper 6 bits) and ECN, like IPv4's TOS.
    pub tclass: u8,
    pub flow_label: u32,
    pub ext: ExtHeaders,
    /// There is a fragment header with M set or a non-zero offset (an
    /// "atomic fragment", offset 0 without M, is whole: RFC 6946).
    pub fragment: bool,
    /// No fragment header, or one with offset 0.
    pub first_fragment: bool,
    pub l4info: L4v6,
}

/// The extension headers of a datagram, as far as the walk went (up to the
/// upper-layer header, ESP, "no next header" or a non-first fragment's
/// data). Offsets are into the frame; where a kind occurs twice, the first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtHeaders {
    /// The `-m ipv6header` mask (`MASK_*`): which kinds were present, and
    /// [`MASK_PROTO`] when the walk ended at an upper-layer protocol (not
    /// ESP or "no next header"), as `ipv6header_mt` computes it.
    pub mask: u8,
    /// How many extension headers were walked.
    pub count: u8,
    /// Offset of the hop-by-hop options header.
    pub hop_by_hop: Option<usize>,
    /// Offset of the first destination options header.
    pub dest_opts: Option<usize>,
    pub routing: Option<RoutingHeader>,
    pub frag: Option<FragHeader>,
    /// The value of a hop-by-hop router alert option (RFC 2711: 0 MLD,
    /// 1 RSVP, 2 active networks).
    pub router_alert: Option<u16>,
}

/// A routing header (RFC 8200 4.4), for `-m rt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingHeader {
    /// Offset of the header in the frame.
    pub at: usize,
    /// Its length in bytes (`(hdr ext len + 1) * 8`).
    pub len: usize,
    pub ty: u8,
    pub segments_left: u8,
}

/// A fragment header (RFC 8200 4.5), for `-m frag` and reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragHeader {
    /// Offset of the header in the frame: the unfragmentable part is
    /// everything before it.
    pub at: usize,
    pub next_header: u8,
    /// The fragment offset in 8-byte units (multiply by 8 for bytes).
    pub offset: u16,
    /// The M flag.
    pub more: bool,
    pub id: u32,
    /// The reserved byte after the next header, and the two reserved bits
    /// before M (`-m frag --fragres` wants both zero).
    pub reserved: u8,
    pub reserved_bits: u8,
}

/// The transport header of a first fragment (or whole datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4v6 {
    Tcp(TcpInfo),
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp(Icmpv6Info),
    /// Other protocols, ESP, "no next header", non-first fragments.
    Other,
}

/// An ICMPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Info {
    pub ty: u8,
    pub code: u8,
    /// The echo identifier (0 for other types).
    pub id: u16,
    /// [`icmpv6_is_query`].
    pub is_query: bool,
    /// [`icmpv6_is_error`].
    pub is_error: bool,
    /// [`icmpv6_is_ndp`]: [`ndp::parse_ndp`] validates it.
    pub is_ndp: bool,
    /// For errors: the quoted datagram, when its IPv6 header, its extension
    /// headers and 8 bytes of its transport header are there, and it is
    /// not a non-first fragment.
    pub inner: Option<Inner6Info>,
}

/// The datagram quoted by an ICMPv6 error, partially parsed (its payload
/// length describes the original, usually cut short): what conntrack looks
/// up and NAT66 rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner6Info {
    /// Offset of the quoted IPv6 header in the frame.
    pub l3: usize,
    /// Offset of its transport header, after its extension headers.
    pub l4: usize,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Its upper-layer protocol.
    pub proto: u8,
    /// TCP/UDP ports; the echo id in both for a quoted echo; 0 otherwise.
    pub sport: u16,
    pub dport: u16,
    /// Bytes of quoted transport header and data present (at least 8).
    pub l4_len: usize,
}
