//! The TCPMSS target's rewrite (`tcpmss_mangle_packet` in Linux's
//! xt_TCPMSS.c): lower the MSS option of a TCP segment to `newmss`, never
//! raise it; a segment without the option and without payload gets one
//! (at most 536, RFC 1122's default MSS), inserted before its other
//! options.

use super::checksum::{finish, pseudo_header, pseudo_header6, sum};
use super::field;
use super::ipv6::{Ipv6Info, L4v6, IPV6_HDR};
use super::rewrite::set_word;
use super::{Ipv4Info, L4};

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
const TCPOLEN_MSS: usize = 4;
/// RFC 1122: without an MSS option a sender assumes 536.
const DEFAULT_MSS: u16 = 536;

/// What [`clamp_mss`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssEdit {
    /// Nothing to do (no TCP header, a fragment, the MSS already at most
    /// `newmss`, payload after a header without the option, no room).
    Unchanged,
    /// The option's value was lowered.
    Lowered,
    /// An option was inserted: the segment (and datagram) grew by 4 bytes.
    Inserted,
}

/// The length of the option at `opt[i]` (`optlen` in xt_TCPMSS.c: EOL, NOP
/// and malformed lengths count 1).
fn optlen(opt: &[u8], i: usize) -> usize {
    match opt.get(i) {
        Some(&TCPOPT_EOL) | Some(&TCPOPT_NOP) | None => 1,
        Some(_) => match opt.get(i + 1) {
            Some(&l) if l != 0 => usize::from(l),
            _ => 1,
        },
    }
}

/// Rewrites the MSS option of the TCP segment in `frame` (see the module)
/// and fixes the TCP checksum, and the IPv4 total length and header
/// checksum when it inserts one. `info` must be the frame's parse; it is
/// not updated (the caller re-reads `total_len` on [`MssEdit::Inserted`]).
pub fn clamp_mss(frame: &mut [u8], info: &Ipv4Info, newmss: u16) -> MssEdit {
    let L4::Tcp(tcp) = info.l4info else {
        return MssEdit::Unchanged;
    };
    if !info.first_fragment || info.fragment {
        return MssEdit::Unchanged;
    }
    let seg = Segment {
        l4: info.l4,
        hlen: tcp.header_len,
        end: info.l3 + usize::from(info.total_len),
        default_mss: DEFAULT_MSS,
    };
    let (src, dst, proto) = (info.src, info.dst, info.proto);
    let edit = seg.clamp(frame, newmss, |len| {
        pseudo_header(src, dst, proto, len as u16)
    });
    if edit == MssEdit::Inserted {
        let total = info.total_len + TCPOLEN_MSS as u16;
        let _ = set_word(frame, info.l3, field::ipv4::TOTAL_LEN, |_| total);
    }
    edit
}

/// [`clamp_mss`] for an IPv6 segment: an inserted option is at most 1,220
/// (IPv6's minimum MTU less 60, as xt_TCPMSS inserts for IPv6) and grows
/// the payload length.
pub fn clamp_mss6(frame: &mut [u8], info: &Ipv6Info, newmss: u16) -> MssEdit {
    let L4v6::Tcp(tcp) = info.l4info else {
        return MssEdit::Unchanged;
    };
    if info.fragment {
        return MssEdit::Unchanged;
    }
    let seg = Segment {
        l4: info.l4,
        hlen: tcp.header_len,
        end: info.l3 + IPV6_HDR + usize::from(info.payload_len),
        default_mss: DEFAULT_MSS6,
    };
    let (src, dst) = (info.src, info.dst);
    let edit = seg.clamp(frame, newmss, |len| {
        pseudo_header6(src, dst, super::ipv6::NEXTHDR_TCP, len as u32)
    });
    if edit == MssEdit::Inserted {
        let plen = info.payload_len + TCPOLEN_MSS as u16;
        if let Some(f) = frame.get_mut(info.l3 + 4..info.l3 + 6) {
            f.copy_from_slice(&plen.to_be_bytes());
        }
    }
    edit
}

/// IPv6's default MSS for an inserted option: 1,280 - 60.
const DEFAULT_MSS6: u16 = 1220;

/// A TCP segment in a frame: its header at `l4`, `hlen` bytes long, the
/// segment ending at `end`.
struct Segment {
    l4: usize,
    hlen: usize,
    end: usize,
    default_mss: u16,
}

impl Segment {
    /// The rewrite of either family; `pseudo(len)` is the pseudo-header's
    /// sum for a segment of `len` bytes. The caller grows the IP length
    /// when it returns [`MssEdit::Inserted`].
    fn clamp(&self, frame: &mut [u8], newmss: u16, pseudo: impl Fn(usize) -> u32) -> MssEdit {
        let Segment {
            l4,
            hlen,
            end,
            default_mss,
        } = *self;
        if end > frame.len() || l4 + hlen > end {
            return MssEdit::Unchanged;
        }
        let seg_len = end - l4;
        let mut i = field::tcp::MIN_LEN;
        while i + TCPOLEN_MSS <= hlen {
            let opt = &frame[l4..l4 + hlen];
            if opt[i] == TCPOPT_MSS && opt[i + 1] as usize == TCPOLEN_MSS {
                let old = u16::from_be_bytes([opt[i + 2], opt[i + 3]]);
                if old <= newmss {
                    return MssEdit::Unchanged;
                }
                frame[l4 + i + 2..l4 + i + 4].copy_from_slice(&newmss.to_be_bytes());
                fix_tcp_checksum(frame, l4, seg_len, pseudo(seg_len));
                return MssEdit::Lowered;
            }
            i += optlen(opt, i);
        }
        // Data after the header: the option cannot be added without moving
        // it. A header already 60 bytes long has no room for one.
        if seg_len > hlen || hlen + TCPOLEN_MSS > 60 || end + TCPOLEN_MSS > frame.len() {
            return MssEdit::Unchanged;
        }
        let newmss = newmss.min(default_mss);
        let opts = l4 + field::tcp::MIN_LEN;
        frame.copy_within(opts..end, opts + TCPOLEN_MSS);
        frame[opts] = TCPOPT_MSS;
        frame[opts + 1] = TCPOLEN_MSS as u8;
        frame[opts + 2..opts + 4].copy_from_slice(&newmss.to_be_bytes());
        // Data offset (the upper 4 bits of byte 12) grows by one word.
        let doff = ((hlen + TCPOLEN_MSS) / 4) as u8;
        frame[l4 + 12] = (doff << 4) | (frame[l4 + 12] & 0x0f);
        let len = seg_len + TCPOLEN_MSS;
        fix_tcp_checksum(frame, l4, len, pseudo(len));
        MssEdit::Inserted
    }
}

/// Recomputes the TCP checksum of the `seg_len`-byte segment at `l4`.
fn fix_tcp_checksum(frame: &mut [u8], l4: usize, seg_len: usize, pseudo: u32) {
    let at = l4 + field::tcp::CHECKSUM;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let c = finish(pseudo + sum(&frame[l4..l4 + seg_len]));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::transport_ok;
    use crate::wire::parse_ipv4;

    /// An Ethernet + IPv4 + TCP SYN frame with `options` and `payload`, in a
    /// 2048-byte buffer; returns it and its length.
    fn syn(options: &[u8], payload: &[u8]) -> (Vec<u8>, usize) {
        let hlen = 20 + options.len();
        let total = 20 + hlen + payload.len();
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let c = crate::wire::checksum::ipv4_header(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0];
        tcp.push(((hlen / 4) as u8) << 4);
        tcp.extend_from_slice(&[0x02, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(payload);
        let c = finish(
            pseudo_header(
                [10, 0, 0, 1].into(),
                [10, 0, 0, 2].into(),
                6,
                tcp.len() as u16,
            ) + sum(&tcp),
        );
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&tcp);
        let len = f.len();
        f.resize(2048, 0);
        (f, len)
    }

    /// The MSS option's value and whether the checksums hold.
    fn read(f: &[u8]) -> (Option<u16>, usize, bool) {
        let info = parse_ipv4(f).expect("parses");
        let L4::Tcp(t) = info.l4info else {
            panic!("not tcp")
        };
        let end = info.l3 + usize::from(info.total_len);
        let hdr = &f[info.l4..info.l4 + t.header_len];
        let mut mss = None;
        let mut i = 20;
        while i + 4 <= hdr.len() {
            if hdr[i] == 2 && hdr[i + 1] == 4 {
                mss = Some(u16::from_be_bytes([hdr[i + 2], hdr[i + 3]]));
                break;
            }
            i += optlen(hdr, i);
        }
        let ok = crate::wire::checksum::ipv4_header(&f[14..34])
            == u16::from_be_bytes([f[24], f[25]])
            && transport_ok(info.src, info.dst, 6, &f[info.l4..end]);
        (mss, t.header_len, ok)
    }

    #[test]
    fn lowers_never_raises() {
        let (mut f, _) = syn(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7], &[]);
        let info = parse_ipv4(&f).expect("parses");
        assert_eq!(clamp_mss(&mut f, &info, 1460), MssEdit::Unchanged);
        assert_eq!(clamp_mss(&mut f, &info, 1400), MssEdit::Lowered);
        assert_eq!(read(&f), (Some(1400), 28, true));
        let info = parse_ipv4(&f).expect("parses");
        assert_eq!(clamp_mss(&mut f, &info, 1452), MssEdit::Unchanged);
        assert_eq!(read(&f).0, Some(1400));
    }

    #[test]
    fn inserts_at_most_536_before_the_other_options() {
        let (mut f, len) = syn(&[1, 3, 3, 7], &[]);
        let info = parse_ipv4(&f).expect("parses");
        assert_eq!(clamp_mss(&mut f, &info, 1400), MssEdit::Inserted);
        assert_eq!(read(&f), (Some(536), 28, true));
        assert_eq!(&f[len - 4..len + 4], &[2, 4, 2, 0x18, 1, 3, 3, 7]);
        let (mut f, _) = syn(&[], &[]);
        let info = parse_ipv4(&f).expect("parses");
        assert_eq!(clamp_mss(&mut f, &info, 500), MssEdit::Inserted);
        assert_eq!(read(&f), (Some(500), 24, true));
    }

    #[test]
    fn payload_without_the_option_is_left_alone() {
        let (mut f, _) = syn(&[], b"data");
        let before = f.clone();
        let info = parse_ipv4(&f).expect("parses");
        assert_eq!(clamp_mss(&mut f, &info, 500), MssEdit::Unchanged);
        assert_eq!(f, before);
    }

    proptest::proptest! {
        /// Whatever the options and the MSS asked for: the result parses,
        /// its checksums hold, the MSS is never raised, and only the MSS
        /// option changes.
        #[test]
        fn any_options_stay_valid(
            opts in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10usize),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4usize),
            newmss in proptest::prelude::any::<u16>(),
        ) {
            let mut opts = opts;
            opts.resize(opts.len().div_ceil(4) * 4, 1);
            let (mut f, _) = syn(&opts, &payload);
            let Ok(info) = parse_ipv4(&f) else { return Ok(()) };
            let (before, _, _) = read(&f);
            let edit = clamp_mss(&mut f, &info, newmss);
            let (after, _, ok) = read(&f);
            proptest::prop_assert!(ok);
            match edit {
                MssEdit::Unchanged => proptest::prop_assert_eq!(after, before),
                MssEdit::Lowered => proptest::prop_assert_eq!(after, Some(newmss)),
                MssEdit::Inserted => {
                    proptest::prop_assert_eq!(after, Some(newmss.min(536)));
                }
            }
            if let (Some(b), Some(a)) = (before, after) {
                proptest::prop_assert!(a <= b);
            }
        }
    }

    /// An Ethernet + IPv6 + TCP SYN frame with `options`, in a 2048-byte
    /// buffer; returns it and its length.
    fn syn6(options: &[u8]) -> (Vec<u8>, usize) {
        let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
            "fd00:10::2".parse().expect("v6"),
            "2001:db8::9".parse().expect("v6"),
        );
        let hlen = 20 + options.len();
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        ip[4..6].copy_from_slice(&(hlen as u16).to_be_bytes());
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0];
        tcp.push(((hlen / 4) as u8) << 4);
        tcp.extend_from_slice(&[0x02, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        let c = finish(pseudo_header6(src, dst, 6, tcp.len() as u32) + sum(&tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&tcp);
        let len = f.len();
        f.resize(2048, 0);
        (f, len)
    }

    /// The MSS option of an IPv6 segment, its header length, whether its
    /// checksum holds.
    fn read6(f: &[u8]) -> (Option<u16>, usize, bool) {
        let info = crate::wire::ipv6::parse_ipv6(f).expect("parses");
        let L4v6::Tcp(t) = info.l4info else {
            panic!("not tcp")
        };
        let end = info.l3 + IPV6_HDR + usize::from(info.payload_len);
        let hdr = &f[info.l4..info.l4 + t.header_len];
        let mss = (hdr.len() >= 24 && hdr[20] == 2 && hdr[21] == 4)
            .then(|| u16::from_be_bytes([hdr[22], hdr[23]]));
        let ok = crate::wire::checksum::transport_ok6(info.src, info.dst, 6, &f[info.l4..end]);
        (mss, t.header_len, ok)
    }

    #[test]
    fn ipv6_lowered_and_inserted_at_most_1220() {
        let (mut f, _) = syn6(&[2, 4, 0x05, 0xa0, 1, 3, 3, 7]);
        let info = crate::wire::ipv6::parse_ipv6(&f).expect("parses");
        assert_eq!(clamp_mss6(&mut f, &info, 1500), MssEdit::Unchanged);
        assert_eq!(clamp_mss6(&mut f, &info, 1340), MssEdit::Lowered);
        assert_eq!(read6(&f), (Some(1340), 28, true));
        let (mut f, len) = syn6(&[1, 3, 3, 7]);
        let info = crate::wire::ipv6::parse_ipv6(&f).expect("parses");
        assert_eq!(
            clamp_mss6(&mut f[..len + 4], &info, 1400),
            MssEdit::Inserted
        );
        assert_eq!(read6(&f), (Some(1220), 28, true));
    }
}
