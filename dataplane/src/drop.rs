//! Why a packet was dropped: one counted reason per cause, shown by
//! `xdpgw stats`. Small and `Copy`, so the packet path can return it without
//! allocating or formatting.

macro_rules! reasons {
    ($($name:ident => $text:literal,)*) => {
        /// A counted reason for dropping a packet.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($name,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            pub const COUNT: usize = DropReason::ALL.len();
            /// A short snake_case name for counters and logs.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

reasons! {
    // Wire parsing.
    EthTruncated => "eth_truncated",
    NotIpv4 => "not_ipv4",
    ArpMalformed => "arp_malformed",
    Ipv4Truncated => "ipv4_truncated",
    Ipv4BadVersion => "ipv4_bad_version",
    Ipv4BadHeaderLen => "ipv4_bad_header_len",
    Ipv4BadTotalLen => "ipv4_bad_total_len",
    Ipv4BadChecksum => "ipv4_bad_checksum",
    Ipv4BadOptions => "ipv4_bad_options",
    Ipv4SourceRoute => "ipv4_source_route",
    L4Truncated => "l4_truncated",
    TcpBadHeaderLen => "tcp_bad_header_len",
    IcmpTruncated => "icmp_truncated",
    // IPv6 (`wire::ipv6`): Linux's ip6_rcv_core checks, the extension
    // headers, neighbour discovery (ndisc_rcv).
    NotIpv6 => "not_ipv6",
    Ipv6Truncated => "ipv6_truncated",
    Ipv6BadVersion => "ipv6_bad_version",
    Ipv6Jumbogram => "ipv6_jumbogram",
    Ipv6BadExtHeader => "ipv6_bad_ext_header",
    Ipv6HopByHopNotFirst => "ipv6_hop_by_hop_not_first",
    Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
    Ipv6BadOption => "ipv6_bad_option",
    Icmpv6BadChecksum => "icmpv6_bad_checksum",
    NdiscHopLimit => "ndisc_hop_limit",
    NdiscBadCode => "ndisc_bad_code",
    NdiscBadOptions => "ndisc_bad_options",
    NdiscMalformed => "ndisc_malformed",
    // No interface has an IPv6 address: IPv6 is off.
    Ipv6Off => "ipv6_off",
    // Reassembly (`frag`): fragments dropped, each counted.
    FragMemFull => "frag_mem_full",
    FragTableFull => "frag_table_full",
    FragOverlap => "frag_overlap",
    FragDuplicate => "frag_duplicate",
    FragMalformed => "frag_malformed",
    FragTimeout => "frag_timeout",
    FragTooBig => "frag_too_big",
    FragBadEcn => "frag_bad_ecn",
    // Connection tracking.
    CtInvalid => "ct_invalid",
    CtTableFull => "ct_table_full",
    CtInsertFailed => "ct_insert_failed",
    NatNoFreePort => "nat_no_free_port",
    // Rules.
    FilterDrop => "filter_drop",
    FilterReject => "filter_reject",
    PolicyDrop => "policy_drop",
    // Routing and neighbours.
    NoRoute => "no_route",
    TtlExceeded => "ttl_exceeded",
    FragNeeded => "frag_needed",
    NeighUnresolved => "neigh_unresolved",
    NeighQueueFull => "neigh_queue_full",
    NotForUs => "not_for_us",
    LinkBroadcast => "link_broadcast",
    MulticastDst => "multicast_dst",
    MartianDst => "martian_destination",
    MartianSource => "martian_source",
    HostUnsupported => "host_unsupported",
    HostPathFull => "host_path_full",
    // Links (802.1Q VLANs, `link`).
    VlanUnknown => "vlan_unknown",
    VlanUntagged => "vlan_untagged",
}

impl DropReason {
    /// A transport header that does not parse (what a first fragment too
    /// short for it would get).
    pub fn is_transport(self) -> bool {
        matches!(
            self,
            DropReason::L4Truncated | DropReason::TcpBadHeaderLen | DropReason::IcmpTruncated
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(
            DropReason::ALL[DropReason::CtInvalid as usize],
            DropReason::CtInvalid
        );
    }
}
