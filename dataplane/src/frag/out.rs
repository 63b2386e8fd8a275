//! A datagram cut into fragments on its way out (`ip_do_fragment`).
//!
//! A reassembled datagram leaves in the fragments it arrived in, each with
//! the datagram's (rewritten) header, when every one of them fits the
//! egress MTU: Linux's fast path, which re-sends the fragments of its
//! frag list. Otherwise (and for a datagram that arrived whole) it is cut
//! to the MTU, or to the largest fragment received if that is smaller
//! (`frag_max_size`): the slow path. Later fragments carry only the options
//! whose copy flag is set, the others overwritten with NOPs so that every
//! fragment's header has the first one's length (`ip_options_fragment`).

use crate::pipeline::{ETH_HLEN, FRAME_SIZE};
use crate::wire::checksum;

/// A fragment of a datagram as received: where its data lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Offset of its data in the datagram's data (bytes, a multiple of 8).
    pub offset: u32,
    /// Bytes of data.
    pub len: u16,
}

const IP_MF: u16 = 0x2000;
const IP_DF: u16 = 0x4000;

/// Cuts the datagram in `frame` (an Ethernet header, then an IPv4 datagram
/// with a `hlen`-byte header and `total` bytes in all) into fragments of at
/// most `mtu` bytes, keeping `pieces` (the fragments it arrived in, empty
/// if it arrived whole) when each fits, else cutting it to the smaller of
/// `mtu` and `max_size` (0: none). Each fragment is built in `out` (an
/// Ethernet frame: the datagram's Ethernet header, then the fragment) and
/// handed to `send`. The fragments of the received geometry go without
/// DF (Linux's fast path clears it); cut ones keep it if `keep_df` (a
/// reassembled datagram whose largest fragment had it). Returns how many, or None if the MTU leaves no room
/// for 8 bytes of data (nothing sent).
#[allow(clippy::too_many_arguments)]
pub fn fragment(
    frame: &[u8],
    hlen: usize,
    total: usize,
    pieces: &[Piece],
    max_size: u16,
    keep_df: bool,
    mtu: u16,
    out: &mut [u8; FRAME_SIZE],
    mut send: impl FnMut(&[u8]),
) -> Option<usize> {
    let mtu = usize::from(mtu).min(FRAME_SIZE - ETH_HLEN);
    let ip = frame.get(ETH_HLEN..ETH_HLEN + total)?;
    let header = ip.get(..hlen)?;
    let data = &ip[hlen..];
    // Later fragments' header: the options without the copy flag NOPed.
    let mut later = [0u8; 60];
    let later = &mut later[..hlen];
    later.copy_from_slice(header);
    options_fragment(&mut later[20..]);
    let geometry = !pieces.is_empty()
        && pieces.iter().all(|p| hlen + usize::from(p.len) <= mtu)
        && pieces.iter().map(|p| usize::from(p.len)).sum::<usize>() == data.len();
    let mut emit = |offset: usize, len: usize, last: bool, df: bool| {
        let hdr: &[u8] = if offset == 0 { header } else { later };
        out[..ETH_HLEN].copy_from_slice(&frame[..ETH_HLEN]);
        let o = &mut out[ETH_HLEN..];
        o[..hlen].copy_from_slice(hdr);
        o[2..4].copy_from_slice(&((hlen + len) as u16).to_be_bytes());
        let mut frag = (offset / 8) as u16;
        if !last {
            frag |= IP_MF;
        }
        if df {
            frag |= IP_DF;
        }
        o[6..8].copy_from_slice(&frag.to_be_bytes());
        let sum = checksum::ipv4_header(&o[..hlen]);
        o[10..12].copy_from_slice(&sum.to_be_bytes());
        o[hlen..hlen + len].copy_from_slice(&data[offset..offset + len]);
        send(&out[..ETH_HLEN + hlen + len]);
    };
    if geometry {
        for (i, p) in pieces.iter().enumerate() {
            emit(
                p.offset as usize,
                usize::from(p.len),
                i + 1 == pieces.len(),
                false,
            );
        }
        return Some(pieces.len());
    }
    let mtu = if max_size > 0 {
        mtu.min(usize::from(max_size))
    } else {
        mtu
    };
    let space = mtu.checked_sub(hlen)? & !7;
    if space < 8 {
        return None;
    }
    let (mut offset, mut n) = (0, 0);
    while offset < data.len() {
        let len = space.min(data.len() - offset);
        emit(offset, len, offset + len == data.len(), keep_df);
        offset += len;
        n += 1;
    }
    Some(n)
}

/// Cuts the IPv6 datagram in `frame` (an Ethernet header, then `total`
/// bytes of datagram whose unfragmentable part, the IPv6 header and the
/// extension headers that stay in front, is `hlen` bytes long; the byte at
/// `nh_at` in it is the next header the fragment header goes after) into
/// fragments of at most `mtu` bytes, as `ip6_fragment` does: the received
/// geometry (`pieces`) when each fits, else cut to the smaller of `mtu`
/// and `max_size` (the largest fragment received; 0: none). Each fragment
/// carries a fragment header with identification `id`; built in `out`,
/// handed to `send`. Returns how many, or None when the MTU leaves no room
/// for 8 bytes of data (nothing sent).
#[allow(clippy::too_many_arguments)]
pub fn fragment6(
    frame: &[u8],
    hlen: usize,
    nh_at: usize,
    total: usize,
    pieces: &[Piece],
    max_size: u16,
    mtu: u16,
    id: u32,
    out: &mut [u8; FRAME_SIZE],
    mut send: impl FnMut(&[u8]),
) -> Option<usize> {
    const NEXTHDR_FRAGMENT: u8 = 44;
    const FRAG_HDR: usize = 8;
    let mtu = usize::from(mtu).min(FRAME_SIZE - ETH_HLEN);
    let ip = frame.get(ETH_HLEN..ETH_HLEN + total)?;
    let header = ip.get(..hlen)?;
    let next = *header.get(nh_at)?;
    let data = &ip[hlen..];
    let head = hlen + FRAG_HDR;
    let geometry = !pieces.is_empty()
        && pieces.iter().all(|p| head + usize::from(p.len) <= mtu)
        && pieces.iter().map(|p| usize::from(p.len)).sum::<usize>() == data.len();
    let mut emit = |offset: usize, len: usize, last: bool| {
        out[..ETH_HLEN].copy_from_slice(&frame[..ETH_HLEN]);
        let o = &mut out[ETH_HLEN..];
        o[..hlen].copy_from_slice(header);
        o[nh_at] = NEXTHDR_FRAGMENT;
        o[4..6].copy_from_slice(&((head + len - 40) as u16).to_be_bytes());
        let off = (offset as u16 & !7) | u16::from(!last);
        o[hlen..hlen + 4].copy_from_slice(&[next, 0, (off >> 8) as u8, off as u8]);
        o[hlen + 4..head].copy_from_slice(&id.to_be_bytes());
        o[head..head + len].copy_from_slice(&data[offset..offset + len]);
        send(&out[..ETH_HLEN + head + len]);
    };
    if geometry {
        for (i, p) in pieces.iter().enumerate() {
            emit(p.offset as usize, usize::from(p.len), i + 1 == pieces.len());
        }
        return Some(pieces.len());
    }
    let mtu = if max_size > 0 {
        mtu.min(usize::from(max_size))
    } else {
        mtu
    };
    let space = mtu.checked_sub(head)? & !7;
    if space < 8 {
        return None;
    }
    let (mut offset, mut n) = (0, 0);
    while offset < data.len() {
        let len = space.min(data.len() - offset);
        emit(offset, len, offset + len == data.len());
        offset += len;
        n += 1;
    }
    Some(n)
}

/// `ip_options_fragment`: options without the copy flag become NOPs.
fn options_fragment(opts: &mut [u8]) {
    const END: u8 = 0;
    const NOOP: u8 = 1;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            END => return,
            NOOP => i += 1,
            ty => {
                let Some(&len) = opts.get(i + 1) else {
                    return;
                };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return;
                }
                if ty & 0x80 == 0 {
                    opts[i..i + len].fill(NOOP);
                }
                i += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(hlen: usize, data: usize) -> Vec<u8> {
        let total = hlen + data;
        let mut f = vec![0u8; ETH_HLEN + total];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[ETH_HLEN..];
        ip[0] = 0x40 | (hlen / 4) as u8;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        for (i, b) in ip[hlen..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    fn cut(f: &[u8], hlen: usize, pieces: &[Piece], max: u16, mtu: u16) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut out = [0u8; FRAME_SIZE];
        let total = f.len() - ETH_HLEN;
        let n = fragment(f, hlen, total, pieces, max, false, mtu, &mut out, |x| {
            got.push(x[ETH_HLEN..].to_vec())
        });
        assert_eq!(n, Some(got.len()));
        got
    }

    fn frag_field(ip: &[u8]) -> (usize, bool) {
        let v = u16::from_be_bytes([ip[6], ip[7]]);
        (usize::from(v & 0x1fff) * 8, v & IP_MF != 0)
    }

    #[test]
    fn a_datagram_over_the_mtu_is_cut_to_it_as_ip_fragment_does() {
        // 1,400 bytes onto a 1,280 link: 1,276 + 144 (measured on Linux).
        let f = datagram(20, 1380);
        let got = cut(&f, 20, &[], 0, 1280);
        let lens: Vec<usize> = got.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [1276, 144]);
        assert_eq!(frag_field(&got[0]), (0, true));
        assert_eq!(frag_field(&got[1]), (1256, false));
        for p in &got {
            assert_eq!(&p[4..6], &0x1234u16.to_be_bytes(), "id kept");
            assert!(checksum::verify(checksum::sum(&p[..20])));
        }
        assert_eq!(&got[1][20..], &f[ETH_HLEN + 20 + 1256..]);
    }

    #[test]
    fn the_received_geometry_is_kept_when_every_fragment_fits() {
        let f = datagram(20, 3008);
        let pieces = [
            Piece {
                offset: 0,
                len: 1200,
            },
            Piece {
                offset: 1200,
                len: 400,
            },
            Piece {
                offset: 1600,
                len: 800,
            },
            Piece {
                offset: 2400,
                len: 608,
            },
        ];
        let got = cut(&f, 20, &pieces, 1220, 1500);
        let lens: Vec<usize> = got.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [1220, 420, 820, 628]);
        // Onto a smaller MTU: cut to it (the slow path).
        let got = cut(&f, 20, &pieces, 1220, 1000);
        let lens: Vec<usize> = got.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [996, 996, 996, 100]);
        // Fragments that do not fit: cut to the largest fragment received
        // when it is smaller than the MTU (`frag_max_size`).
        let got = cut(
            &f,
            20,
            &[Piece {
                offset: 0,
                len: 3008,
            }],
            1000,
            1100,
        );
        assert_eq!(got[0].len(), 996);
    }

    #[test]
    fn later_fragments_copy_only_options_with_the_copy_flag() {
        // Record route (7, not copied) and a copied option (0x94: router
        // alert), 4 + 4 bytes of options.
        let mut f = datagram(28, 100);
        f[ETH_HLEN + 20..ETH_HLEN + 28].copy_from_slice(&[7, 4, 4, 0, 0x94, 4, 0, 0]);
        let got = cut(&f, 28, &[], 0, 28 + 56);
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][20..28], &[7, 4, 4, 0, 0x94, 4, 0, 0]);
        assert_eq!(&got[1][20..28], &[1, 1, 1, 1, 0x94, 4, 0, 0]);
        assert!(checksum::verify(checksum::sum(&got[1][..28])));
    }

    #[test]
    fn an_mtu_without_room_for_data_fails() {
        let f = datagram(60, 100);
        let mut out = [0u8; FRAME_SIZE];
        assert_eq!(
            fragment(&f, 60, 160, &[], 0, false, 64, &mut out, |_| panic!("sent")),
            None
        );
    }
}
