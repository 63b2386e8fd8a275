//! Why conntrack judged a packet INVALID: one counted reason per place where
//! Linux's `nf_conntrack_in` (and the protocol trackers it calls) gives up on
//! a packet. Each reason has a snake_case name for counters and a static text
//! for operators; the TCP state the entry was in travels beside it in
//! [`Track::Invalid`](super::Track::Invalid), so nothing is formatted on the
//! packet path.

macro_rules! invalid_reasons {
    ($($(#[$doc:meta])* $name:ident => $snake:literal, $text:literal;)*) => {
        /// A counted reason for an INVALID verdict.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum InvalidReason { $($(#[$doc])* $name,)* }

        impl InvalidReason {
            pub const ALL: &'static [InvalidReason] = &[$(InvalidReason::$name,)*];
            pub const COUNT: usize = InvalidReason::ALL.len();

            /// A short snake_case name for counters and logs.
            pub fn name(self) -> &'static str {
                match self { $(InvalidReason::$name => $snake,)* }
            }

            /// What happened, for an operator (Linux's log message, in words).
            pub fn text(self) -> &'static str {
                match self { $(InvalidReason::$name => $text,)* }
            }
        }
    };
}

invalid_reasons! {
    /// A TCP or ICMP packet came without its header summary (`PacketMeta::tcp`
    /// or `PacketMeta::icmp` is `None`): Linux's "short packet".
    MissingHeader => "missing_header",
        "TCP/ICMP packet without a parsed header (truncated)";
    /// `tcp_error`: the flags are not one of the combinations in
    /// `tcp_valid_flags` (SYN+FIN, SYN+RST, FIN without ACK, no flags, ...).
    TcpBadFlags => "tcp_bad_flags",
        "invalid TCP flag combination (e.g. SYN+FIN, SYN+RST, FIN without ACK, no flags)";
    /// `tcp_new`: no entry, and the segment cannot open one (SYN/ACK, FIN, RST).
    TcpNewInvalid => "tcp_new_invalid",
        "no conntrack entry and the segment cannot open a connection (SYN/ACK, FIN or RST)";
    /// `tcp_new` with `nf_conntrack_tcp_loose=0`: no entry and not a SYN.
    TcpNoSynForNew => "tcp_no_syn_for_new",
        "no conntrack entry, not a SYN, and mid-stream pickup is disabled (tcp_loose=0)";
    /// The state table says sIV for this segment in the entry's state and
    /// direction (e.g. a SYN from the reply side of a live entry, an ACK
    /// before the SYN/ACK, a FIN in SYN_SENT).
    TcpInvalidTransition => "tcp_invalid_transition",
        "segment not allowed in the entry's TCP state (e.g. SYN from the responder of an existing entry, ACK before SYN/ACK)";
    /// `tcp_in_window`: the segment starts beyond the receiver's window.
    TcpSeqOverWindow => "tcp_seq_over_window",
        "SEQ is over the upper bound (beyond the receiver's window)";
    /// `tcp_in_window`: the segment acknowledges data not seen yet.
    TcpAckOverWindow => "tcp_ack_over_window",
        "ACK is over the upper bound (acknowledges data not seen yet)";
    /// A RST whose sequence number is below what the peer already acknowledged.
    TcpInvalidRst => "tcp_invalid_rst",
        "RST with a sequence number below the peer's highest acknowledgement";
    /// ICMP type above 18 (RFC 1122: unknown types are discarded).
    IcmpBadType => "icmp_bad_type",
        "unknown ICMP type (above 18)";
    /// No entry, and the ICMP message is not a request that can open one
    /// (e.g. an echo reply or router advertisement with no entry).
    IcmpNotNew => "icmp_not_new",
        "no conntrack entry and the ICMP message is not a query request (echo, timestamp, info, address mask)";
    /// An ICMP error whose quoted header could not be parsed.
    IcmpErrorNoInner => "icmp_error_no_inner",
        "ICMP error without a parsable quoted header";
    /// An ICMP error quoting a datagram of no tracked connection.
    IcmpErrorNoEntry => "icmp_error_no_entry",
        "ICMP error quoting a datagram that belongs to no tracked connection";
    /// An ICMP error sent to someone who is not the quoted connection's
    /// endpoint in that direction (`outer daddr != inner`).
    IcmpErrorDaddrMismatch => "icmp_error_daddr_mismatch",
        "ICMP error whose destination is not the endpoint of the quoted connection";
    /// `nf_conntrack_checksum`: a TCP, UDP or ICMP checksum that does not
    /// verify, checked on arriving packets (PREROUTING) as Linux does.
    BadChecksum => "bad_checksum",
        "TCP, UDP or ICMP checksum does not verify";
    /// `udp_error`: the UDP length field is below the header's 8 bytes or
    /// beyond the datagram (checked on every hook, before the checksum).
    UdpBadLength => "udp_bad_length",
        "UDP length field below 8 or beyond the datagram (truncated/malformed packet)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_texts_non_empty() {
        let mut names: Vec<_> = InvalidReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), InvalidReason::COUNT);
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(!r.text().is_empty());
        }
    }
}
