//! The table saved across a restart (`state_file` in the configuration):
//! [`Conntrack::save`] copies every live entry with its whole state (both
//! tuples, so NAT mappings and the ports they hold; status bits; the TCP
//! state *and* its window tracking, without which the first segments after
//! a restart would be judged INVALID by `tcp_in_window`; mark; counters) and
//! its time left; [`SavedTable`] turns them into bytes and back;
//! [`Conntrack::restore`] puts them in a new table, each with its time left
//! less the time the restart took.
//!
//! Nothing here does I/O or reads a clock: the caller passes `now` (the
//! table's monotonic time) and the wall-clock time of saving and of
//! restoring, and reads and writes the file (control's `state_file.rs`).
//!
//! The format (little-endian):
//!
//! ```text
//! header (40 bytes)
//!   0  magic "xdpgw-ct"
//!   8  format version (u32)                 1
//!  12  record length (u32)                  144
//!  16  entries (u64)
//!  24  saved at (u64)                       wall clock, ns since the Unix epoch
//!  32  CRC-32 (u32)                         of bytes 0..32 and every record
//!  36  zero (u32)
//! record (144 bytes), one per entry
//!   0  original tuple: src, dst (u32), sport, dport (u16)
//!  12  reply tuple: the same
//!  24  IP protocol (u8), zero (u8)
//!  26  status (u16: Linux's IPS_* bits)     28  mark (u32)
//!  32  time left (u64 ns)
//!  40  packets original, reply (u64)        56  bytes original, reply (u64)
//!  72  UDP: time left until a reply makes a stream (u64 ns; 0: now)
//!  80  ICMP: the query's type, code (u8)
//!  82  zero (6 bytes)
//!  88  TCP: state and window tracking (56 bytes, `TcpCt::save`); zero otherwise
//! ```
//!
//! A file is refused whole, with the reason, if anything in it is off: the
//! magic, the version, a length, the checksum, or a record whose fields
//! tracking could not have produced.

use std::net::Ipv4Addr;

use super::tcp::{self, TcpCt};
use super::{status, ConfirmError, Conn, Conntrack, CtCounters, Nanos, Pending, Proto, TcpState};
use crate::flow::{Addr, Tuple, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// The first bytes of a saved table.
pub const MAGIC: [u8; 8] = *b"xdpgw-ct";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 40;
pub const RECORD_LEN: usize = 144;

/// The status bits an entry may carry.
const KNOWN_STATUS: u16 =
    status::SEEN_REPLY | status::ASSURED | status::CONFIRMED | status::SRC_NAT | status::DST_NAT;

/// One entry with its whole state, its times relative to the moment it was
/// saved: IPv4 by default (a state file holds IPv4 entries), IPv6 for the
/// entries a peer's state sync sends ([`SavedEntry::synced`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedEntry<A: Addr = Ipv4Addr> {
    orig: Tuple<A>,
    reply: Tuple<A>,
    /// `timeout` is the time left; a UDP entry's `stream_ts` the time left
    /// until a reply makes it a stream (0: already).
    conn: Conn,
    /// TCP entries: the window tracking.
    tcp: Option<TcpCt>,
}

impl<A: Addr> SavedEntry<A> {
    pub fn orig(&self) -> Tuple<A> {
        self.orig
    }

    pub fn reply(&self) -> Tuple<A> {
        self.reply
    }

    pub fn status(&self) -> u16 {
        self.conn.status
    }

    /// The time it had left when saved.
    pub fn remaining(&self) -> Nanos {
        self.conn.timeout
    }

    /// `TcpState::None` for other protocols.
    pub fn tcp_state(&self) -> TcpState {
        self.conn.tcp_state().unwrap_or(TcpState::None)
    }
}

impl<A: Addr> SavedEntry<A> {
    /// An entry learnt from a peer gateway (conntrackd's state sync), as
    /// `conntrackd -c` commits one (`nl_create_conntrack`): both tuples (the
    /// reply one says the NAT), its status (CONFIRMED added; bits xdpgw
    /// does not keep dropped), mark, time left, TCP state without window
    /// history (both sides liberal), ICMP (ICMPv6) query type and code.
    /// Counters start at zero. Refused: a TCP state Linux does not have.
    pub fn synced(
        orig: Tuple<A>,
        reply: Tuple<A>,
        status: u16,
        mark: u32,
        remaining: Nanos,
        tcp_state: u8,
        icmp: (u8, u8),
    ) -> Result<SavedEntry<A>, &'static str> {
        let (proto, tcp) = match orig.proto {
            IPPROTO_TCP => {
                let state = TcpState::ALL
                    .get(usize::from(tcp_state))
                    .copied()
                    .filter(|s| *s != TcpState::None)
                    .ok_or("bad TCP state")?;
                (Proto::Tcp(state), Some(TcpCt::synced(state)))
            }
            IPPROTO_UDP => (Proto::Udp { stream_ts: 0 }, None),
            p if p == A::ICMP => (
                Proto::Icmp {
                    ty: icmp.0,
                    code: icmp.1,
                },
                None,
            ),
            _ => (Proto::Generic, None),
        };
        Ok(SavedEntry {
            orig,
            reply,
            conn: Conn {
                status: (status & KNOWN_STATUS) | status::CONFIRMED,
                mark,
                timeout: remaining,
                packets: [0; 2],
                bytes: [0; 2],
                proto,
            },
            tcp,
        })
    }
}

/// What [`Conntrack::restore`] did with the entries it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// In the table now.
    pub restored: usize,
    /// Their time ran out meanwhile: left out.
    pub expired: usize,
    /// A tuple was taken already: left out.
    pub clashed: usize,
    /// The table was full: left out (unassured entries first).
    pub no_room: usize,
    /// [`Conntrack::commit`]: entries in the way, deleted first.
    pub replaced: usize,
}

impl Conntrack {
    /// Every live entry that has not expired at `now`, with its whole state
    /// and its time left (control plane, e.g. once the workers stopped; one
    /// shard lock at a time).
    pub fn save(&self, now: Nanos) -> Vec<SavedEntry> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.shards.len() {
            let g = self.lock(i);
            for (slot, s) in g.slab.iter().enumerate() {
                if !s.live || s.conn.timeout <= now {
                    continue;
                }
                let mut conn = s.conn;
                conn.timeout -= now;
                if let Proto::Udp { stream_ts } = &mut conn.proto {
                    *stream_ts = stream_ts.saturating_sub(now);
                }
                let tcp = match conn.proto {
                    Proto::Tcp(_) => g.tcp.get(slot).and_then(|l| l.0),
                    _ => None,
                };
                out.push(SavedEntry {
                    orig: s.orig,
                    reply: s.reply,
                    conn,
                    tcp,
                });
            }
        }
        out
    }
}

impl<A: Addr> Conntrack<A> {
    /// Puts saved entries in the table at `now`, each with the time it had
    /// left less `elapsed` (the time between saving and now; an entry whose
    /// time ran out is left out, as gc would have removed it). Never more
    /// than the table's maximum: ASSURED entries go first, so that a
    /// smaller table keeps the connections Linux would least like to drop
    /// (`early_drop` spares them). An entry one of whose tuples is taken is
    /// left out. Counted as inserts in [`Conntrack::stats`]; their NEW
    /// events (when someone listens) come from userspace (`at: None`).
    pub fn restore(&self, now: Nanos, entries: &[SavedEntry<A>], elapsed: Nanos) -> Restored {
        let mut r = Restored::default();
        let assured = |e: &&SavedEntry<A>| e.conn.status & status::ASSURED != 0;
        let first = entries.iter().filter(assured);
        let then = entries.iter().filter(|e| !assured(e));
        let mut counted = CtCounters::default();
        for e in first.chain(then) {
            let left = e.conn.timeout.saturating_sub(elapsed);
            if left == 0 {
                r.expired += 1;
                continue;
            }
            let mut conn = e.conn;
            conn.timeout = left;
            if let Proto::Udp { stream_ts } = &mut conn.proto {
                *stream_ts = now.saturating_add(stream_ts.saturating_sub(elapsed));
            }
            let p = Pending {
                orig: e.orig,
                reply: e.reply,
                status: conn.status,
                conn,
                tcp: e.tcp,
            };
            if !self.reserve() {
                r.no_room += 1;
                continue;
            }
            let oh = self.hash(&p.orig);
            match self.insert_reserved(now, &p, (oh, self.shard_of(oh)), &mut counted, None) {
                Ok(_) => r.restored += 1,
                Err(ConfirmError::Clash) => r.clashed += 1,
                Err(ConfirmError::TableFull) => r.no_room += 1,
            }
        }
        r
    }
}

impl<A: Addr> Conntrack<A> {
    /// Puts entries learnt from a peer in the table (`conntrackd -c`): as
    /// [`Conntrack::restore`] with no time elapsed, except that an entry
    /// whose tuple is taken replaces the entries in its way, as conntrackd
    /// deletes and creates again an entry the kernel says exists
    /// (`cache_ct_commit_step`, `EEXIST`); those deletions are events
    /// (DESTROY, from userspace). Their reply tuples hold the NAT
    /// ports they use, so that NAT allocation (`tuple_in_use`) leaves them
    /// to them and replies find them.
    pub fn commit(&self, now: Nanos, entries: &[SavedEntry<A>]) -> Restored {
        let taken: std::collections::HashSet<Tuple<A>> =
            entries.iter().flat_map(|e| [e.orig, e.reply]).collect();
        let replaced = self.remove_if(|s| taken.contains(&s.orig) || taken.contains(&s.reply));
        let mut r = self.restore(now, entries, 0);
        r.replaced = replaced.len();
        r
    }
}

/// A saved table: the entries and when they were saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedTable {
    /// Wall-clock time of saving, ns since the Unix epoch.
    pub saved_at: u64,
    pub entries: Vec<SavedEntry>,
}

/// What the header of a saved table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedHeader {
    pub entries: u64,
    pub saved_at: u64,
}

impl SavedHeader {
    /// Reads the header at the start of `b` (at least [`HEADER_LEN`]
    /// bytes); checks the magic, the version and the record length.
    pub fn parse(b: &[u8]) -> Result<SavedHeader, SavedError> {
        let Some(h) = b.get(..HEADER_LEN) else {
            return Err(SavedError::Length {
                expected: HEADER_LEN as u64,
                found: b.len() as u64,
            });
        };
        if h[..8] != MAGIC {
            return Err(SavedError::NotSaved);
        }
        let version = le32(&h[8..12]);
        if version != FORMAT_VERSION {
            return Err(SavedError::Version { found: version });
        }
        let record = le32(&h[12..16]);
        if record as usize != RECORD_LEN {
            return Err(SavedError::RecordLen { found: record });
        }
        Ok(SavedHeader {
            entries: le64(&h[16..24]),
            saved_at: le64(&h[24..32]),
        })
    }

    /// The length of the whole table (`None`: not a length a file has).
    pub fn table_len(&self) -> Option<u64> {
        self.entries
            .checked_mul(RECORD_LEN as u64)?
            .checked_add(HEADER_LEN as u64)
    }
}

/// Why bytes are not a saved table this build can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavedError {
    /// Not a saved connection table (the magic is wrong).
    NotSaved,
    /// Another format version.
    Version { found: u32 },
    /// Records of another length.
    RecordLen { found: u32 },
    /// Cut short, or longer than its header says.
    Length { expected: u64, found: u64 },
    /// The checksum does not match: the bytes changed after saving.
    Checksum { stored: u32, computed: u32 },
    /// Record `index` (from 0) holds a value tracking could not have made.
    Entry { index: u64, what: &'static str },
}

impl std::fmt::Display for SavedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            SavedError::NotSaved => f.write_str("not a saved connection table"),
            SavedError::Version { found } => write!(
                f,
                "saved in format version {found}; this xdpgw reads version {FORMAT_VERSION}"
            ),
            SavedError::RecordLen { found } => write!(
                f,
                "records of {found} bytes; format version {FORMAT_VERSION} has {RECORD_LEN}"
            ),
            SavedError::Length { expected, found } if found < expected => {
                write!(f, "cut short: {found} bytes of {expected}")
            }
            SavedError::Length { expected, found } => {
                write!(f, "{found} bytes where the header announces {expected}")
            }
            SavedError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt"
            ),
            SavedError::Entry { index, what } => write!(f, "entry {index}: {what}"),
        }
    }
}

impl std::error::Error for SavedError {}

impl SavedTable {
    /// The table as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * RECORD_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(RECORD_LEN as u32).to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.saved_at.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        for e in &self.entries {
            out.extend_from_slice(&record(e));
        }
        let crc = checksum(&out);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Bytes [`SavedTable::encode`] made, checked.
    pub fn decode(b: &[u8]) -> Result<SavedTable, SavedError> {
        let h = SavedHeader::parse(b)?;
        let expected = h.table_len().unwrap_or(u64::MAX);
        if b.len() as u64 != expected {
            return Err(SavedError::Length {
                expected,
                found: b.len() as u64,
            });
        }
        let stored = le32(&b[32..36]);
        let computed = checksum(b);
        if stored != computed {
            return Err(SavedError::Checksum { stored, computed });
        }
        if le32(&b[36..40]) != 0 {
            return Err(SavedError::Entry {
                index: 0,
                what: "header padding is not zero",
            });
        }
        let entries = b[HEADER_LEN..]
            .chunks_exact(RECORD_LEN)
            .enumerate()
            .map(|(i, r)| {
                entry(r).map_err(|what| SavedError::Entry {
                    index: i as u64,
                    what,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SavedTable {
            saved_at: h.saved_at,
            entries,
        })
    }
}

fn le16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn put_tuple(b: &mut [u8], t: &Tuple) {
    b[0..4].copy_from_slice(&u32::from(t.src).to_le_bytes());
    b[4..8].copy_from_slice(&u32::from(t.dst).to_le_bytes());
    b[8..10].copy_from_slice(&t.sport.to_le_bytes());
    b[10..12].copy_from_slice(&t.dport.to_le_bytes());
}

fn tuple_at(b: &[u8], proto: u8) -> Tuple {
    Tuple {
        src: Ipv4Addr::from(le32(&b[0..4])),
        dst: Ipv4Addr::from(le32(&b[4..8])),
        sport: le16(&b[8..10]),
        dport: le16(&b[10..12]),
        proto,
    }
}

/// One entry's record.
fn record(e: &SavedEntry) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    let c = &e.conn;
    put_tuple(&mut r[0..12], &e.orig);
    put_tuple(&mut r[12..24], &e.reply);
    r[24] = e.orig.proto;
    r[26..28].copy_from_slice(&c.status.to_le_bytes());
    r[28..32].copy_from_slice(&c.mark.to_le_bytes());
    r[32..40].copy_from_slice(&c.timeout.to_le_bytes());
    r[40..48].copy_from_slice(&c.packets[0].to_le_bytes());
    r[48..56].copy_from_slice(&c.packets[1].to_le_bytes());
    r[56..64].copy_from_slice(&c.bytes[0].to_le_bytes());
    r[64..72].copy_from_slice(&c.bytes[1].to_le_bytes());
    match c.proto {
        Proto::Udp { stream_ts } => r[72..80].copy_from_slice(&stream_ts.to_le_bytes()),
        Proto::Icmp { ty, code } => {
            r[80] = ty;
            r[81] = code;
        }
        Proto::Tcp(_) => {
            if let Some(ct) = &e.tcp {
                r[88..].copy_from_slice(&ct.save());
            }
        }
        Proto::Generic => {}
    }
    r
}

/// A record back as an entry; why not.
fn entry(r: &[u8]) -> Result<SavedEntry, &'static str> {
    let proto = r[24];
    let zero = |range: std::ops::Range<usize>| r[range].iter().all(|b| *b == 0);
    if !zero(25..26) || !zero(82..88) {
        return Err("padding is not zero");
    }
    let status = le16(&r[26..28]);
    if status & !KNOWN_STATUS != 0 {
        return Err("unknown status bits");
    }
    if status & status::CONFIRMED == 0 {
        return Err("not a confirmed entry");
    }
    let (proto_state, tcp) = match proto {
        IPPROTO_TCP => {
            let mut b = [0u8; tcp::SAVED_LEN];
            b.copy_from_slice(&r[88..]);
            let ct = TcpCt::load(&b)?;
            (Proto::Tcp(ct.state), Some(ct))
        }
        _ if !zero(88..RECORD_LEN) => return Err("TCP state in an entry of another protocol"),
        IPPROTO_UDP => (
            Proto::Udp {
                stream_ts: le64(&r[72..80]),
            },
            None,
        ),
        IPPROTO_ICMP => (
            Proto::Icmp {
                ty: r[80],
                code: r[81],
            },
            None,
        ),
        _ => (Proto::Generic, None),
    };
    if proto != IPPROTO_UDP && !zero(72..80) || proto != IPPROTO_ICMP && !zero(80..82) {
        return Err("another protocol's state");
    }
    Ok(SavedEntry {
        orig: tuple_at(&r[0..12], proto),
        reply: tuple_at(&r[12..24], proto),
        conn: Conn {
            status,
            mark: le32(&r[28..32]),
            timeout: le64(&r[32..40]),
            packets: [le64(&r[40..48]), le64(&r[48..56])],
            bytes: [le64(&r[56..64]), le64(&r[64..72])],
            proto: proto_state,
        },
        tcp,
    })
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`) of a saved table: its header
/// with the checksum field left out, and its records.
fn checksum(b: &[u8]) -> u32 {
    let head = b.get(..32).unwrap_or(b);
    let rest = b.get(HEADER_LEN..).unwrap_or(&[]);
    !crc32_update(crc32_update(!0, head), rest)
}

/// Runs the CRC register `crc` over `b`, eight bytes at a time
/// ("slicing-by-8": a full table's 38 MB in a few ms instead of tens).
fn crc32_update(mut crc: u32, b: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let lo = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(w[4])]
            ^ t[2][usize::from(w[5])]
            ^ t[1][usize::from(w[6])]
            ^ t[0][usize::from(w[7])];
    }
    for &byte in words.remainder() {
        crc = t[0][usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    crc
}

/// `CRC_TABLES[0]` is the byte-at-a-time table of the reflected polynomial
/// 0xEDB88320; `CRC_TABLES[k][i]` runs `CRC_TABLES[0][i]` through k more
/// zero bytes.
static CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
            i += 1;
        }
        k += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit-at-a-time definition, as the oracle.
    fn crc32_bitwise(b: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in b {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc_is_zlibs() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(!crc32_update(!0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_bitwise(b"123456789"), 0xCBF4_3926);
    }

    proptest::proptest! {
        #[test]
        fn crc_slicing_agrees_with_the_definition(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            split in 0usize..100,
        ) {
            let split = split.min(bytes.len());
            let (a, b) = bytes.split_at(split);
            proptest::prop_assert_eq!(!crc32_update(crc32_update(!0, a), b), crc32_bitwise(&bytes));
        }
    }

    fn t(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> Tuple {
        Tuple {
            src: src.into(),
            dst: dst.into(),
            sport,
            dport,
            proto,
        }
    }

    fn udp_entry() -> SavedEntry {
        SavedEntry {
            orig: t([192, 168, 10, 2], 5353, [203, 0, 113, 254], 53, IPPROTO_UDP),
            reply: t([203, 0, 113, 254], 53, [203, 0, 113, 1], 1024, IPPROTO_UDP),
            conn: Conn {
                status: status::CONFIRMED | status::SRC_NAT | status::SEEN_REPLY,
                mark: 0x0102_0304,
                timeout: 29_000_000_000,
                packets: [1, 2],
                bytes: [60, 120],
                proto: Proto::Udp {
                    stream_ts: 1_500_000_000,
                },
            },
            tcp: None,
        }
    }

    /// The bytes of a table holding `udp_entry()`, saved at 1 s past the
    /// epoch, written out by hand from the format in the module's
    /// documentation.
    fn fixture() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"xdpgw-ct");
        b.extend_from_slice(&[1, 0, 0, 0, 144, 0, 0, 0]);
        b.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&[0; 8]); // CRC below
                                      // 192.168.10.2 as a little-endian u32, and so on.
        b.extend_from_slice(&[2, 10, 168, 192, 254, 113, 0, 203, 0xe9, 0x14, 53, 0]);
        b.extend_from_slice(&[254, 113, 0, 203, 1, 113, 0, 203, 53, 0, 0, 4]);
        b.extend_from_slice(&[17, 0, 0x1a, 0, 4, 3, 2, 1]);
        b.extend_from_slice(&29_000_000_000u64.to_le_bytes());
        for v in [1u64, 2, 60, 120, 1_500_000_000] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[0; 56]);
        let crc = checksum(&b);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn the_format_is_as_documented() {
        let table = SavedTable {
            saved_at: 1_000_000_000,
            entries: vec![udp_entry()],
        };
        let bytes = table.encode();
        assert_eq!(bytes.len(), HEADER_LEN + RECORD_LEN);
        assert_eq!(bytes, fixture());
        assert_eq!(SavedTable::decode(&bytes), Ok(table));
    }

    #[test]
    fn an_empty_table_round_trips() {
        let table = SavedTable {
            saved_at: 7,
            entries: Vec::new(),
        };
        let bytes = table.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(SavedTable::decode(&bytes), Ok(table));
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let good = fixture();
        // Cut short, anywhere (also inside the header).
        for n in [0, 7, 39, 40, 100, good.len() - 1] {
            let e = SavedTable::decode(&good[..n]).expect_err("short");
            assert!(
                matches!(e, SavedError::Length { found, .. } if found == n as u64),
                "{n}: {e:?}"
            );
        }
        assert_eq!(
            SavedTable::decode(&good[..100]).map_err(|e| e.to_string()),
            Err("cut short: 100 bytes of 184".into())
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            SavedTable::decode(&long).map_err(|e| e.to_string()),
            Err("185 bytes where the header announces 184".into())
        );
        // Any flipped bit outside the checksum is caught.
        for i in (0..good.len()).filter(|i| !(32..36).contains(i)) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(SavedTable::decode(&bad).is_err(), "bit flip at {i} passed");
        }
        let mut bad = good.clone();
        bad[HEADER_LEN + 30] ^= 1;
        let e = SavedTable::decode(&bad).expect_err("corrupt");
        assert!(matches!(e, SavedError::Checksum { .. }), "{e:?}");
        assert!(e.to_string().ends_with("the file is corrupt"), "{e}");
        // Another version, another record length, not a table at all.
        let mut v2 = good.clone();
        v2[8] = 2;
        assert_eq!(
            SavedTable::decode(&v2).map_err(|e| e.to_string()),
            Err("saved in format version 2; this xdpgw reads version 1".into())
        );
        let mut rl = good.clone();
        rl[12] = 128;
        assert_eq!(
            SavedTable::decode(&rl),
            Err(SavedError::RecordLen { found: 128 })
        );
        assert_eq!(
            SavedTable::decode(b"[conntrack]\nnot this at all, but long enough to be a header"),
            Err(SavedError::NotSaved)
        );
        // An entry count that no file can have.
        let mut huge = good.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            SavedTable::decode(&huge),
            Err(SavedError::Length {
                expected: u64::MAX,
                ..
            })
        ));
    }

    /// A record changed and the checksum made to fit again: what only a
    /// buggy or foreign writer makes.
    fn with_record(f: impl Fn(&mut [u8])) -> Result<SavedTable, SavedError> {
        let mut b = fixture();
        f(&mut b[HEADER_LEN..]);
        let crc = checksum(&b);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        SavedTable::decode(&b)
    }

    #[test]
    fn records_tracking_could_not_make_are_refused() {
        let what = |f: &dyn Fn(&mut [u8])| match with_record(f) {
            Err(SavedError::Entry { index: 0, what }) => what,
            other => panic!("expected a refused entry, got {other:?}"),
        };
        assert_eq!(what(&|r| r[27] = 0x80), "unknown status bits");
        assert_eq!(what(&|r| r[26] &= !0x08), "not a confirmed entry");
        assert_eq!(what(&|r| r[25] = 1), "padding is not zero");
        assert_eq!(
            what(&|r| r[100] = 1),
            "TCP state in an entry of another protocol"
        );
        assert_eq!(what(&|r| r[80] = 8), "another protocol's state");
        // As a TCP entry: its state must be one.
        let tcp = |f: &dyn Fn(&mut [u8])| {
            what(&|r| {
                r[24] = IPPROTO_TCP;
                r[72..80].fill(0);
                f(r)
            })
        };
        assert_eq!(tcp(&|r| r[88 + 36] = 10), "bad TCP state");
        assert_eq!(tcp(&|r| r[88 + 16] = 15), "bad TCP window scale");
        assert_eq!(tcp(&|r| r[88 + 37] = 2), "bad TCP last segment");
        // And with all that in order, it loads.
        let ok = with_record(|r: &mut [u8]| {
            r[24] = IPPROTO_TCP;
            r[72..80].fill(0);
            r[88 + 36] = TcpState::Established as u8;
        })
        .expect("a TCP entry");
        assert_eq!(ok.entries[0].tcp_state(), TcpState::Established);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = SavedTable::decode(&bytes);
            let mut with_header = fixture();
            with_header.truncate(HEADER_LEN);
            with_header.extend_from_slice(&bytes);
            let _ = SavedTable::decode(&with_header);
        }
    }
}
