//! IEEE 802.1Q VLAN tags: read, removed and inserted in place.
//!
//! A tagged frame carries four bytes between the source MAC and the
//! EtherType: the TPID (0x8100) and the TCI (3 bits of priority, the DEI
//! bit, 12 bits of VLAN id). The pipeline works on untagged frames: a tag is
//! removed where a frame comes in from a port ([`untag`]) and written where
//! one leaves for a VLAN interface ([`tag`]), both in place, the frame
//! keeping its first byte where it was (the bytes after the MACs move by
//! four). Both are bounds-checked and never panic, whatever the bytes and
//! lengths.

use super::field;

/// The 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// The length of a tag.
pub const TAG_LEN: usize = 4;
/// The highest VLAN id a tag may carry for a VLAN (4095 is reserved, 0
/// means "no VLAN": a priority tag).
pub const VID_MAX: u16 = 4094;

/// Where the tag sits: right after the two MACs.
const TAG_AT: usize = field::eth::ETHERTYPE;

/// What the first EtherType field of a frame says about VLANs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// No 802.1Q tag (any other EtherType, including 802.1ad's 0x88a8).
    Untagged,
    /// An 802.1Q tag with this VLAN id (0: a priority tag).
    Vlan(u16),
    /// An 802.1Q TPID with no room for the rest of the tag and an EtherType
    /// after it.
    Truncated,
}

/// Reads the tag of `frame` (the received bytes), if any; a frame too
/// short for an Ethernet header counts as untagged (the pipeline drops it
/// as `eth_truncated`).
#[inline]
pub fn read_tag(frame: &[u8]) -> Tag {
    match frame.get(TAG_AT..TAG_AT + 2) {
        Some(tpid) if tpid == TPID_8021Q.to_be_bytes() => {
            match frame.get(TAG_AT + 2..TAG_AT + 4) {
                // The tag and the EtherType after it.
                Some(tci) if frame.len() >= TAG_AT + TAG_LEN + 2 => {
                    Tag::Vlan(u16::from_be_bytes([tci[0], tci[1]]) & 0x0fff)
                }
                _ => Tag::Truncated,
            }
        }
        _ => Tag::Untagged,
    }
}

/// Removes the 802.1Q tag of the tagged frame in `buf[..len]`: the bytes
/// after it move four bytes forward. Returns the new length; None (nothing
/// changed) if the frame has no complete tag ([`read_tag`] says which).
#[inline]
pub fn untag(buf: &mut [u8], len: usize) -> Option<usize> {
    let frame = buf.get(..len)?;
    if !matches!(read_tag(frame), Tag::Vlan(_)) {
        return None;
    }
    buf.copy_within(TAG_AT + TAG_LEN..len, TAG_AT);
    Some(len - TAG_LEN)
}

/// Inserts an 802.1Q tag with VLAN id `vid` (priority 0) into the untagged
/// frame in `buf[..len]`: the bytes after the MACs move four bytes back, into
/// the room `buf` has after the frame. Returns the new length; None (nothing
/// changed) if `buf` has no room or the frame has no Ethernet header.
#[inline]
pub fn tag(buf: &mut [u8], len: usize, vid: u16) -> Option<usize> {
    let new_len = len.checked_add(TAG_LEN)?;
    if len < super::ETH_HDR || buf.len() < new_len {
        return None;
    }
    buf.copy_within(TAG_AT..len, TAG_AT + TAG_LEN);
    buf[TAG_AT..TAG_AT + 2].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[TAG_AT + 2..TAG_AT + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    Some(new_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ARP request from 02:00:00:00:10:02 in VLAN 10 (priority 0), as
    /// `xdpgw-lab vlan-bridge` and Linux's 8021q module put it on the wire.
    const TAGGED_ARP: [u8; 46] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x10, 0x02, // MACs
        0x81, 0x00, 0x00, 0x0a, // tag: VLAN 10
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // request
        0x02, 0x00, 0x00, 0x00, 0x10, 0x02, 10, 10, 0, 2, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 10, 0, 1, // target
    ];

    #[test]
    fn reads_the_vlan_id() {
        assert_eq!(read_tag(&TAGGED_ARP), Tag::Vlan(10));
        let mut prio = TAGGED_ARP;
        prio[14] = 0xe0; // priority 7, DEI 0, VLAN 0
        prio[15] = 0x00;
        assert_eq!(read_tag(&prio), Tag::Vlan(0));
        prio[14] = 0xff;
        prio[15] = 0xfe;
        assert_eq!(read_tag(&prio), Tag::Vlan(0xffe));
        assert_eq!(read_tag(&TAGGED_ARP[..17]), Tag::Truncated);
        assert_eq!(read_tag(&TAGGED_ARP[..14]), Tag::Truncated);
        assert_eq!(read_tag(&TAGGED_ARP[..13]), Tag::Untagged);
        let mut qinq = TAGGED_ARP;
        qinq[12] = 0x88;
        qinq[13] = 0xa8;
        assert_eq!(read_tag(&qinq), Tag::Untagged);
    }

    #[test]
    fn untag_then_tag_restores_the_frame() {
        let mut buf = [0u8; 64];
        buf[..46].copy_from_slice(&TAGGED_ARP);
        let len = untag(&mut buf, 46).expect("tagged");
        assert_eq!(len, 42);
        assert_eq!(buf[..12], TAGGED_ARP[..12]);
        assert_eq!(buf[12..42], TAGGED_ARP[16..46]);
        assert_eq!(read_tag(&buf[..len]), Tag::Untagged);
        assert_eq!(tag(&mut buf, len, 10), Some(46));
        assert_eq!(buf[..46], TAGGED_ARP);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut buf = TAGGED_ARP;
        // No room after the frame.
        assert_eq!(tag(&mut buf, 46, 10), None);
        assert_eq!(buf, TAGGED_ARP);
        // Shorter than an Ethernet header.
        assert_eq!(tag(&mut [0u8; 64], 13, 10), None);
        // A length beyond the buffer.
        assert_eq!(untag(&mut buf, 47), None);
        assert_eq!(tag(&mut buf, usize::MAX, 10), None);
        // Untagged and truncated frames are left alone.
        let mut short = [0u8; 17];
        short[..17].copy_from_slice(&TAGGED_ARP[..17]);
        assert_eq!(untag(&mut short, 17), None);
        assert_eq!(short[..], TAGGED_ARP[..17]);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80),
                        len in 0usize..100, vid in any::<u16>()) {
            let mut buf = bytes.clone();
            let _ = read_tag(&buf);
            let _ = untag(&mut buf, len);
            let _ = tag(&mut buf, len, vid);
        }

        #[test]
        fn tag_then_untag_is_identity(frame in proptest::collection::vec(any::<u8>(), 14..1600),
                                      vid in 0u16..4096, room in 4usize..16) {
            let mut untagged = frame.clone();
            // An untagged frame: any EtherType but 802.1Q's.
            if untagged[12..14] == [0x81, 0x00] {
                untagged[13] = 0;
            }
            let len = untagged.len();
            let mut buf = untagged.clone();
            buf.resize(len + room, 0);
            let tagged = tag(&mut buf, len, vid).expect("room");
            prop_assert_eq!(tagged, len + 4);
            prop_assert_eq!(read_tag(&buf[..tagged]), Tag::Vlan(vid & 0xfff));
            prop_assert_eq!(&buf[..12], &untagged[..12]);
            prop_assert_eq!(&buf[16..tagged], &untagged[12..]);
            prop_assert_eq!(untag(&mut buf, tagged), Some(len));
            prop_assert_eq!(&buf[..len], &untagged[..]);
        }
    }
}
