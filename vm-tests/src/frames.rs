//! Building and reading test frames (Ethernet + IPv4 + TCP/UDP/ICMP) with
//! checksums computed from scratch: an oracle independent of the dataplane's
//! incremental updates.

use std::net::Ipv4Addr;

pub type Mac = [u8; 6];

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

fn sum(data: &[u8]) -> u32 {
    let mut s = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The ones'-complement checksum of `data` (with any checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + u32::from(proto) + len as u32
}

/// What a test packet carries above IPv4.
#[derive(Clone, Debug)]
pub enum L4Spec {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        /// Include MSS, SACK-permitted and window-scale options (as a SYN does).
        syn_options: bool,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// An ICMP message: type, code, the 4 bytes after the checksum, payload.
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        payload: Vec<u8>,
    },
}

/// A frame: Ethernet II, IPv4 (no options), then `l4`.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub l4: L4Spec,
}

impl FrameSpec {
    pub fn build(&self) -> Vec<u8> {
        let (proto, mut l4) = match &self.l4 {
            L4Spec::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                syn_options,
                payload,
            } => {
                let opts: &[u8] = if *syn_options {
                    // MSS 1460, SACK permitted, timestamps omitted, NOP, window scale 7.
                    &[2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 1, 1]
                } else {
                    &[]
                };
                let hlen = 20 + opts.len();
                let mut t = Vec::with_capacity(hlen + payload.len());
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&seq.to_be_bytes());
                t.extend_from_slice(&ack.to_be_bytes());
                t.push(((hlen / 4) as u8) << 4);
                t.push(*flags);
                t.extend_from_slice(&window.to_be_bytes());
                t.extend_from_slice(&[0, 0, 0, 0]);
                t.extend_from_slice(opts);
                t.extend_from_slice(payload);
                (6u8, t)
            }
            L4Spec::Udp {
                sport,
                dport,
                payload,
            } => {
                let mut u = Vec::with_capacity(8 + payload.len());
                u.extend_from_slice(&sport.to_be_bytes());
                u.extend_from_slice(&dport.to_be_bytes());
                u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u.extend_from_slice(payload);
                (17u8, u)
            }
            L4Spec::Icmp {
                ty,
                code,
                rest,
                payload,
            } => {
                let mut i = vec![*ty, *code, 0, 0];
                i.extend_from_slice(rest);
                i.extend_from_slice(payload);
                (1u8, i)
            }
        };
        match proto {
            6 => {
                let c = !fold(pseudo(self.src, self.dst, 6, l4.len()) + sum(&l4));
                l4[16..18].copy_from_slice(&c.to_be_bytes());
            }
            17 => {
                let mut c = !fold(pseudo(self.src, self.dst, 17, l4.len()) + sum(&l4));
                if c == 0 {
                    c = 0xffff;
                }
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            }
            _ => {
                let c = checksum(&l4);
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        let total = 20 + l4.len();
        let mut f = Vec::with_capacity(14 + total);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[1] = self.tos;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.id.to_be_bytes());
        if self.df {
            ip[6] = 0x40;
        }
        ip[8] = self.ttl;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }
}

/// A decoded frame, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub proto: u8,
    /// Ports for TCP/UDP; (type, code) for ICMP.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// ICMP: the 4 bytes after the checksum.
    pub icmp_rest: [u8; 4],
    pub payload: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a frame and checks every checksum from scratch; panics (with
/// what is wrong) on a malformed frame or a bad checksum.
pub fn decode(f: &[u8]) -> Seen {
    assert!(f.len() >= 34, "frame too short: {} bytes", f.len());
    assert_eq!(&f[12..14], &[0x08, 0x00], "not IPv4");
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    assert!(total <= ip.len(), "total length {total} beyond frame");
    assert_eq!(fold(sum(&ip[..ihl])), 0xffff, "IPv4 header checksum");
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let mut s = Seen {
        dst_mac: f[0..6].try_into().expect("6"),
        src_mac: f[6..12].try_into().expect("6"),
        src,
        dst,
        ttl: ip[8],
        tos: ip[1],
        proto,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        seq: 0,
        ack: 0,
        icmp_rest: [0; 4],
        payload: Vec::new(),
    };
    match proto {
        6 => {
            assert_eq!(
                fold(pseudo(src, dst, 6, l4.len()) + sum(l4)),
                0xffff,
                "TCP checksum"
            );
            s.sport = be16(l4, 0);
            s.dport = be16(l4, 2);
            s.seq = be32(l4, 4);
            s.ack = be32(l4, 8);
            s.tcp_flags = l4[13];
            let hl = usize::from(l4[12] >> 4) * 4;
            s.payload = l4[hl..].to_vec();
        }
        17 => {
            if be16(l4, 6) != 0 {
                assert_eq!(
                    fold(pseudo(src, dst, 17, l4.len()) + sum(l4)),
                    0xffff,
                    "UDP checksum"
                );
            }
            s.sport = be16(l4, 0);
            s.dport = be16(l4, 2);
            s.payload = l4[8..].to_vec();
        }
        1 => {
            assert_eq!(fold(sum(l4)), 0xffff, "ICMP checksum");
            s.sport = u16::from(l4[0]);
            s.dport = u16::from(l4[1]);
            s.icmp_rest = l4[4..8].try_into().expect("4");
            s.payload = l4[8..].to_vec();
        }
        _ => s.payload = l4.to_vec(),
    }
    s
}

/// The ports (or ICMP id) of a frame quoted in an ICMP error payload:
/// (src, dst, sport, dport) of the quoted header.
pub fn quoted(payload: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let ihl = usize::from(payload[0] & 0x0f) * 4;
    assert_eq!(
        fold(sum(&payload[..ihl])),
        0xffff,
        "quoted IPv4 header checksum"
    );
    (
        Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]),
        Ipv4Addr::new(payload[16], payload[17], payload[18], payload[19]),
        be16(payload, ihl),
        be16(payload, ihl + 2),
    )
}

/// `frame` with an 802.1Q tag of VLAN `vid` (priority 0) after its MACs.
pub fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// The VLAN id of a tagged frame and the frame without its tag; (None,
/// the frame) for an untagged one.
pub fn untagged(frame: &[u8]) -> (Option<u16>, Vec<u8>) {
    if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&frame[16..]);
        (Some(vid), f)
    } else {
        (None, frame.to_vec())
    }
}

/// A broadcast ARP request (Ethernet, IPv4) from `mac`/`ip` for `target`.
pub fn arp_request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The fragments of the IPv4 datagram in `frame` (Ethernet II, IPv4
/// without options): one frame per `(offset, len)` of data, in the order
/// given, each with the datagram's header, MF set on all but the one that
/// ends the datagram, and its checksum.
pub fn fragments(frame: &[u8], cuts: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let data = &frame[34..];
    cuts.iter()
        .map(|&(off, len)| {
            let mut f = frame[..34].to_vec();
            f.extend_from_slice(&data[off..off + len]);
            f[16..18].copy_from_slice(&((20 + len) as u16).to_be_bytes());
            let mut flags = (off / 8) as u16;
            if off + len < data.len() {
                flags |= 0x2000;
            }
            f[20..22].copy_from_slice(&flags.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

/// Cuts of `len` bytes of data into pieces of `size` (the last shorter).
pub fn even_cuts(len: usize, size: usize) -> Vec<(usize, usize)> {
    (0..len)
        .step_by(size)
        .map(|off| (off, size.min(len - off)))
        .collect()
}

/// One fragment as it left: (offset, more fragments, IP id, TTL, total
/// length).
pub fn fragment_fields(frame: &[u8]) -> (usize, bool, u16, u8, usize) {
    let ip = &frame[14..];
    let flags = be16(ip, 6);
    (
        usize::from(flags & 0x1fff) * 8,
        flags & 0x2000 != 0,
        be16(ip, 4),
        ip[8],
        usize::from(be16(ip, 2)),
    )
}

/// The datagram fragment frames (in any order, Ethernet II, same header
/// length) make up, as one frame: the first fragment's headers with the
/// total length and fragment field of a whole datagram. Panics if they do
/// not make one exactly (a gap, an overlap, a header checksum wrong).
pub fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut fs: Vec<&Vec<u8>> = frames.iter().collect();
    fs.sort_by_key(|f| fragment_fields(f).0);
    let first = fs.first().expect("no fragments");
    let ihl = usize::from(first[14] & 0x0f) * 4;
    let mut out = first[..14 + ihl].to_vec();
    for f in &fs {
        assert_eq!(
            fold(sum(&f[14..14 + ihl])),
            0xffff,
            "fragment header checksum"
        );
        let (off, _, _, _, total) = fragment_fields(f);
        assert_eq!(out.len() - 14 - ihl, off, "fragments contiguous");
        out.extend_from_slice(&f[14 + ihl..14 + total]);
    }
    assert!(!fragment_fields(fs[fs.len() - 1]).1, "the last one ends it");
    let total = out.len() - 14;
    out[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    out[20..22].copy_from_slice(&[0, 0]);
    out[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&out[14..14 + ihl]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out
}
