//! LOG: the packet path only copies the headers of a logged packet into a
//! per-worker ring (no allocation, no formatting); the worker's owner drains
//! the ring off the hot path and formats each entry as the kernel's
//! nf_log_ipv4 does.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// Bytes of a logged packet kept: the Ethernet header and enough of IPv4,
/// its options and the L4 header (and an ICMP error's quoted headers).
pub const LOG_BYTES: usize = 160;

/// One logged packet.
#[derive(Clone, Copy, Debug)]
pub struct LogEntry {
    /// Index into the rule set's LOG targets (prefix and level).
    pub log: u32,
    pub in_iface: Option<u8>,
    pub out_iface: Option<u8>,
    /// An IPv6 packet: `log` indexes the IPv6 rule set's LOG targets.
    pub ipv6: bool,
    pub len: usize,
    pub bytes: [u8; LOG_BYTES],
}

/// A bounded ring of log entries; when full, new entries are counted and
/// dropped (as the kernel's ratelimited printk would lose them).
pub struct LogRing {
    entries: Box<[LogEntry]>,
    head: usize,
    len: usize,
    pub lost: u64,
}

impl LogRing {
    pub fn new(capacity: usize) -> LogRing {
        let empty = LogEntry {
            log: 0,
            in_iface: None,
            out_iface: None,
            ipv6: false,
            len: 0,
            bytes: [0; LOG_BYTES],
        };
        LogRing {
            entries: vec![empty; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            lost: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, log: u32, in_iface: Option<u8>, out_iface: Option<u8>, frame: &[u8]) {
        self.push_family(log, in_iface, out_iface, frame, false);
    }

    /// [`LogRing::push`] for an entry of either family's rule set.
    pub fn push_family(
        &mut self,
        log: u32,
        in_iface: Option<u8>,
        out_iface: Option<u8>,
        frame: &[u8],
        ipv6: bool,
    ) {
        if self.len == self.entries.len() {
            self.lost += 1;
            return;
        }
        let i = (self.head + self.len) % self.entries.len();
        let e = &mut self.entries[i];
        let n = frame.len().min(LOG_BYTES);
        e.log = log;
        e.in_iface = in_iface;
        e.out_iface = out_iface;
        e.ipv6 = ipv6;
        e.len = n;
        e.bytes[..n].copy_from_slice(&frame[..n]);
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<LogEntry> {
        if self.len == 0 {
            return None;
        }
        let e = self.entries[self.head];
        self.head = (self.head + 1) % self.entries.len();
        self.len -= 1;
        Some(e)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a worker hands its LOG entries, off the packet path
/// ([`crate::worker::Worker::drain_logs`]): with the rule's LOG target
/// (prefix and level; None if the rule set changed under the entry), to
/// be formatted ([`format()`]) and written.
pub trait LogSink {
    fn log(&mut self, target: Option<&crate::rule::Log>, entry: &LogEntry);
}

/// Collects the entries (tests, tools).
impl LogSink for Vec<(Option<crate::rule::Log>, LogEntry)> {
    fn log(&mut self, target: Option<&crate::rule::Log>, entry: &LogEntry) {
        self.push((target.cloned(), *entry));
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    be32(b, at).map(Ipv4Addr::from)
}

/// Formats an IPv4 header and what follows as nf_log_dump_ipv4_packet
/// does, starting at `l3` in `b`; `inner` for an ICMP error's quoted packet.
fn dump_ipv4(out: &mut String, b: &[u8], l3: usize, inner: bool) -> Option<()> {
    let vihl = *b.get(l3)?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    let tos = *b.get(l3 + 1)?;
    let tot = be16(b, l3 + 2)?;
    let id = be16(b, l3 + 4)?;
    let frag = be16(b, l3 + 6)?;
    let ttl = *b.get(l3 + 8)?;
    let proto = *b.get(l3 + 9)?;
    let _ = write!(
        out,
        "SRC={} DST={} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        addr(b, l3 + 12)?,
        addr(b, l3 + 16)?,
        tot,
        tos & 0x1e,
        tos & 0xe0,
        ttl,
        id
    );
    if frag & 0x8000 != 0 {
        out.push_str("CE ");
    }
    if frag & 0x4000 != 0 {
        out.push_str("DF ");
    }
    if frag & 0x2000 != 0 {
        out.push_str("MF ");
    }
    if frag & 0x1fff != 0 {
        let _ = write!(out, "FRAG:{} ", frag & 0x1fff);
        return Some(());
    }
    let l4 = l3 + ihl;
    match proto {
        6 => dump_tcp(out, b, l4, inner),
        17 => dump_udp(out, b, l4),
        1 => {
            out.push_str("PROTO=ICMP ");
            let (Some(&ty), Some(&code)) = (b.get(l4), b.get(l4 + 1)) else {
                let _ = write!(out, "INCOMPLETE [{} bytes] ", b.len().saturating_sub(l4));
                return Some(());
            };
            let _ = write!(out, "TYPE={ty} CODE={code} ");
            match ty {
                0 | 8 => {
                    if let (Some(id), Some(seq)) = (be16(b, l4 + 4), be16(b, l4 + 6)) {
                        let _ = write!(out, "ID={id} SEQ={seq} ");
                    }
                }
                3 | 4 | 5 | 11 | 12 if !inner => {
                    if ty == 3 && code == 4 {
                        let _ = write!(out, "MTU={} ", be16(b, l4 + 6).unwrap_or(0));
                    }
                    if ty == 5 {
                        if let Some(gw) = addr(b, l4 + 4) {
                            let _ = write!(out, "GATEWAY={gw} ");
                        }
                    }
                    out.push('[');
                    if dump_ipv4(out, b, l4 + 8, true).is_none() {
                        out.push_str("INCOMPLETE ");
                    }
                    // The kernel closes the bracket right after the inner dump's trailing space.
                    out.push_str("] ");
                }
                _ => {}
            }
        }
        p => {
            let _ = write!(out, "PROTO={p} ");
        }
    }
    Some(())
}

/// `nf_log_dump_tcp_header` (without the sequence numbers and options,
/// which LOG prints only when asked).
fn dump_tcp(out: &mut String, b: &[u8], l4: usize, inner: bool) {
    out.push_str("PROTO=TCP ");
    let (Some(sp), Some(dp)) = (be16(b, l4), be16(b, l4 + 2)) else {
        let _ = write!(out, "INCOMPLETE [{} bytes] ", b.len().saturating_sub(l4));
        return;
    };
    let _ = write!(out, "SPT={sp} DPT={dp} ");
    if inner {
        return;
    }
    let (Some(win), Some(flags)) = (be16(b, l4 + 14), b.get(l4 + 13)) else {
        return;
    };
    let res = b.get(l4 + 12).map_or(0, |x| x & 0x0f);
    let _ = write!(out, "WINDOW={win} RES=0x{res:02x} ");
    for (bit, name) in [
        (0x80, "CWR"),
        (0x40, "ECE"),
        (0x20, "URG"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x04, "RST"),
        (0x02, "SYN"),
        (0x01, "FIN"),
    ] {
        if flags & bit != 0 {
            out.push_str(name);
            out.push(' ');
        }
    }
    let _ = write!(out, "URGP={} ", be16(b, l4 + 18).unwrap_or(0));
}

/// `nf_log_dump_udp_header`.
fn dump_udp(out: &mut String, b: &[u8], l4: usize) {
    out.push_str("PROTO=UDP ");
    match (be16(b, l4), be16(b, l4 + 2), be16(b, l4 + 4)) {
        (Some(sp), Some(dp), Some(len)) => {
            let _ = write!(out, "SPT={sp} DPT={dp} LEN={len} ");
        }
        _ => {
            let _ = write!(out, "INCOMPLETE [{} bytes] ", b.len().saturating_sub(l4));
        }
    }
}

/// Formats an IPv6 header and what follows as `dump_ipv6_packet` does,
/// from `l3` in `b`: the fixed header (addresses as `%pI6`, unabbreviated),
/// the fragment header if any, then the transport header; `inner` for an
/// ICMPv6 error's quoted packet.
fn dump_ipv6(out: &mut String, b: &[u8], l3: usize, inner: bool) -> Option<()> {
    let word = be32(b, l3)?;
    let plen = be16(b, l3 + 4)?;
    let mut next = *b.get(l3 + 6)?;
    let hop_limit = *b.get(l3 + 7)?;
    let addr6 = |at: usize| -> Option<String> {
        let a = b.get(at..at + 16)?;
        let mut s = String::with_capacity(39);
        for (i, pair) in a.chunks(2).enumerate() {
            if i > 0 {
                s.push(':');
            }
            let _ = write!(s, "{:02x}{:02x}", pair[0], pair[1]);
        }
        Some(s)
    };
    let _ = write!(
        out,
        "SRC={} DST={} LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
        addr6(l3 + 8)?,
        addr6(l3 + 24)?,
        usize::from(plen) + 40,
        (word & 0x0ff0_0000) >> 20,
        hop_limit,
        word & 0x000f_ffff
    );
    let mut at = l3 + 40;
    let mut fragment = false;
    // The extension headers: nothing printed but a fragment header's.
    while matches!(next, 0 | 43 | 44 | 60 | 51 | 50) {
        match next {
            44 => {
                out.push_str("FRAG:");
                let (Some(off), Some(id)) = (be16(b, at + 2), be32(b, at + 4)) else {
                    out.push_str("TRUNCATED ");
                    return Some(());
                };
                let _ = write!(out, "{} ", off & 0xfff8);
                if off & 1 != 0 {
                    out.push_str("INCOMPLETE ");
                }
                let _ = write!(out, "ID:{id:08x} ");
                fragment |= off & 0xfff8 != 0;
                next = *b.get(at)?;
                at += 8;
            }
            0 | 43 | 60 => {
                if fragment {
                    return Some(());
                }
                next = *b.get(at)?;
                at += (usize::from(*b.get(at + 1)?) + 1) * 8;
            }
            // AH and ESP: their SPI, as the kernel prints it.
            51 => {
                out.push_str("AH ");
                return Some(());
            }
            _ => {
                out.push_str("ESP ");
                return Some(());
            }
        }
    }
    match next {
        6 if fragment => out.push_str("PROTO=TCP "),
        17 if fragment => out.push_str("PROTO=UDP "),
        // The whole TCP header, quoted or not (`nf_log_dump_tcp_header`).
        6 => dump_tcp(out, b, at, false),
        17 => dump_udp(out, b, at),
        58 => {
            out.push_str("PROTO=ICMPv6 ");
            if fragment {
                return Some(());
            }
            let (Some(&ty), Some(&code)) = (b.get(at), b.get(at + 1)) else {
                let _ = write!(out, "INCOMPLETE [{} bytes] ", b.len().saturating_sub(at));
                return Some(());
            };
            let _ = write!(out, "TYPE={ty} CODE={code} ");
            match ty {
                128 | 129 => {
                    if let (Some(id), Some(seq)) = (be16(b, at + 4), be16(b, at + 6)) {
                        let _ = write!(out, "ID={id} SEQ={seq} ");
                    }
                }
                1..=4 => {
                    if ty == 4 {
                        let _ = write!(out, "POINTER={:08x} ", be32(b, at + 4).unwrap_or(0));
                    }
                    if !inner {
                        out.push('[');
                        if dump_ipv6(out, b, at + 8, true).is_none() {
                            out.push_str("TRUNCATED");
                        }
                        out.push_str("] ");
                    }
                    if ty == 2 {
                        let _ = write!(out, "MTU={} ", be32(b, at + 4).unwrap_or(0));
                    }
                }
                _ => {}
            }
        }
        p => {
            let _ = write!(out, "PROTO={p} ");
        }
    }
    Some(())
}

/// A LOG line as the kernel prints it (without the syslog level):
/// `PREFIX IN=lan0 OUT=wan0 MAC=... SRC=... DST=... LEN=... ...`.
pub fn format(prefix: &str, in_name: &str, out_name: &str, mark: u32, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(200);
    let _ = write!(out, "{prefix}IN={in_name} OUT={out_name} ");
    if !in_name.is_empty() && bytes.len() >= 14 {
        out.push_str("MAC=");
        for (i, b) in bytes[..14].iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            let _ = write!(out, "{b:02x}");
        }
        out.push(' ');
    }
    let dumped = if bytes.get(12..14) == Some(&[0x86, 0xdd]) {
        dump_ipv6(&mut out, bytes, 14, false)
    } else {
        dump_ipv4(&mut out, bytes, 14, false)
    };
    if dumped.is_none() {
        out.push_str("TRUNCATED ");
    }
    if mark != 0 {
        let _ = write!(out, "MARK=0x{mark:x} ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN 192.168.10.2:40000 -> 203.0.113.9:80, TTL 63, DF.
    const SYN: [u8; 54] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x28, 0xd4, 0x31, 0x40, 0x00, 0x3f, 0x06, 0, 0, //
        192, 168, 10, 2, 203, 0, 113, 9, //
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
    ];

    #[test]
    fn kernel_format_for_a_syn() {
        let line = format("xdpgw drop: ", "lan0", "wan0", 0, &SYN);
        assert_eq!(
            line,
            "xdpgw drop: IN=lan0 OUT=wan0 MAC=02:00:00:00:00:02:02:00:00:00:00:01:08:00 \
             SRC=192.168.10.2 DST=203.0.113.9 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF \
             PROTO=TCP SPT=40000 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 "
        );
        // Truncated input never panics.
        for n in 0..SYN.len() {
            let _ = format("", "lan0", "", 0, &SYN[..n]);
        }
    }

    #[test]
    fn ring_keeps_order_and_counts_losses() {
        let mut r = LogRing::new(2);
        r.push(1, Some(0), None, &SYN);
        r.push(2, Some(0), None, &SYN);
        r.push(3, Some(0), None, &SYN);
        assert_eq!(r.lost, 1);
        assert_eq!(r.pop().map(|e| e.log), Some(1));
        assert_eq!(r.pop().map(|e| (e.log, e.len)), Some((2, 54)));
        assert!(r.pop().is_none());
    }

    /// An IPv6 TCP SYN fd00:10::2:40000 -> 2001:db8:113::9:80, traffic
    /// class 0x28, flow label 0x12345, hop limit 63.
    fn syn6() -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
        f.extend_from_slice(&[0x62, 0x81, 0x23, 0x45, 0, 20, 6, 63]);
        let src: std::net::Ipv6Addr = "fd00:10::2".parse().expect("v6");
        let dst: std::net::Ipv6Addr = "2001:db8:113::9".parse().expect("v6");
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&[
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
        ]);
        f
    }

    #[test]
    fn kernel_format_for_an_ipv6_syn_and_an_error_about_it() {
        let line = format("drop6: ", "lan0", "wan0", 0, &syn6());
        assert_eq!(
            line,
            "drop6: IN=lan0 OUT=wan0 MAC=02:00:00:00:00:02:02:00:00:00:00:01:86:dd \
             SRC=fd00:0010:0000:0000:0000:0000:0000:0002 \
             DST=2001:0db8:0113:0000:0000:0000:0000:0009 LEN=60 TC=40 HOPLIMIT=63 \
             FLOWLBL=74565 PROTO=TCP SPT=40000 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 "
        );
        // A packet too big quoting it (from 2001:db8:113::1).
        let quote = &syn6()[14..];
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
        let plen = (8 + quote.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[58, 64]);
        let gw: std::net::Ipv6Addr = "2001:db8:113::1".parse().expect("v6");
        f.extend_from_slice(&gw.octets());
        f.extend_from_slice(&quote[8..24]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0x05, 0x00]);
        f.extend_from_slice(quote);
        let line = format("", "wan0", "", 0, &f);
        assert!(
            line.ends_with(
                "PROTO=ICMPv6 TYPE=2 CODE=0 [SRC=fd00:0010:0000:0000:0000:0000:0000:0002 \
                 DST=2001:0db8:0113:0000:0000:0000:0000:0009 LEN=60 TC=40 HOPLIMIT=63 \
                 FLOWLBL=74565 PROTO=TCP SPT=40000 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 ] \
                 MTU=1280 "
            ),
            "{line}"
        );
        for n in 0..f.len() {
            let _ = format("", "lan0", "", 0, &f[..n]);
        }
    }
}
