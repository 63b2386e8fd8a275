//! Byte offsets of the header fields we read and rewrite, and checked
//! big-endian accessors over untrusted buffers.
//!
//! Offsets are relative to the start of their header. The accessors return
//! `None` instead of panicking when a field lies (even partly) outside the
//! buffer, whatever the offset (no arithmetic overflow either).

pub(super) mod eth {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
}

pub(super) mod ipv4 {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;

    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const FRAG_OFFSET: u16 = 0x1fff;
}

pub(super) mod ipv6 {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861) messages.
pub(super) mod icmpv6 {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Echo identifier; MTU of packet too big; pointer of parameter
    /// problem; flags of a neighbour advertisement.
    pub const REST: usize = 4;
    pub const ID: usize = 4;
    pub const LEN: usize = 8;
    /// The target address of neighbour solicitations and advertisements.
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
    /// Router advertisement: current hop limit, flags, router lifetime,
    /// reachable time, retransmission timer, options.
    pub const RA_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const RA_LIFETIME: usize = 6;
    pub const RA_REACHABLE: usize = 8;
    pub const RA_RETRANS: usize = 12;
    pub const RA_OPTIONS: usize = 16;
    /// Router solicitation: options after 4 reserved bytes.
    pub const RS_OPTIONS: usize = 8;
}

pub(super) mod tcp {
    pub const SPORT: usize = 0;
    pub const DPORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const MIN_LEN: usize = 20;
}

pub(super) mod udp {
    pub const SPORT: usize = 0;
    pub const DPORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const LEN: usize = 8;
}

pub(super) mod icmp {
    pub const TYPE: usize = 0;
    pub const CHECKSUM: usize = 2;
    /// The query identifier (echo, timestamp, information, address mask).
    pub const ID: usize = 4;
    /// The 4 bytes after the checksum ("rest of header").
    pub const REST: usize = 4;
    pub const LEN: usize = 8;
}

pub(super) mod arp {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const OPER: usize = 6;
    /// Sender and target addresses, for Ethernet/IPv4 (6- and 4-byte ones).
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const LEN: usize = 28;

    pub const HTYPE_ETHERNET: u16 = 1;
}

#[inline]
pub(super) fn read8(buf: &[u8], off: usize) -> Option<u8> {
    buf.get(off).copied()
}

#[inline]
pub(super) fn read16(buf: &[u8], off: usize) -> Option<u16> {
    buf.get(off..)?
        .first_chunk::<2>()
        .map(|b| u16::from_be_bytes(*b))
}

#[inline]
pub(super) fn read32(buf: &[u8], off: usize) -> Option<u32> {
    buf.get(off..)?
        .first_chunk::<4>()
        .map(|b| u32::from_be_bytes(*b))
}

#[inline]
pub(super) fn read128(buf: &[u8], off: usize) -> Option<[u8; 16]> {
    buf.get(off..)?.first_chunk::<16>().copied()
}

#[inline]
pub(super) fn write8(buf: &mut [u8], off: usize, v: u8) -> Option<()> {
    *buf.get_mut(off)? = v;
    Some(())
}

#[inline]
pub(super) fn write16(buf: &mut [u8], off: usize, v: u16) -> Option<()> {
    *buf.get_mut(off..)?.first_chunk_mut::<2>()? = v.to_be_bytes();
    Some(())
}

#[inline]
pub(super) fn write32(buf: &mut [u8], off: usize, v: u32) -> Option<()> {
    *buf.get_mut(off..)?.first_chunk_mut::<4>()? = v.to_be_bytes();
    Some(())
}

#[inline]
pub(super) fn write128(buf: &mut [u8], off: usize, v: [u8; 16]) -> Option<()> {
    *buf.get_mut(off..)?.first_chunk_mut::<16>()? = v;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_refuse_out_of_range() {
        let mut buf = [1u8, 2, 3, 4, 5];
        assert_eq!(read16(&buf, 3), Some(0x0405));
        assert_eq!(read16(&buf, 4), None);
        assert_eq!(read32(&buf, 1), Some(0x0203_0405));
        assert_eq!(read32(&buf, 2), None);
        assert_eq!(read32(&buf, usize::MAX), None);
        assert_eq!(write16(&mut buf, 4, 0), None);
        assert_eq!(write32(&mut buf, usize::MAX - 1, 0), None);
        assert_eq!(write8(&mut buf, 5, 0), None);
        assert_eq!(buf, [1, 2, 3, 4, 5]);
        assert_eq!(write32(&mut buf, 1, 0xa0b0_c0d0), Some(()));
        assert_eq!(buf, [1, 0xa0, 0xb0, 0xc0, 0xd0]);
    }
}
