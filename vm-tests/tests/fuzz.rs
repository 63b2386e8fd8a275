//! The fuzz targets on stable Rust, in `cargo test`: the bodies of
//! `fuzz/fuzz_targets/pipeline.rs`, `parse_rules.rs`, `wire6.rs` and `sync_wire.rs`
//! (`xdpgw_vm_tests::fuzz`) run on inputs made by mutating their seed
//! corpora (`fuzz/seeds/`): byte flips and interesting values, cuts,
//! insertions and removals, splices of two seeds, and mutations that know
//! the format (frames: the length, offset and header-length fields of
//! IPv4, TCP, UDP, ICMP's quoted header and ARP, with checksums fixed or
//! not; rule files: lines duplicated, dropped, swapped or taken from
//! another seed, words replaced by words of the rule language). proptest
//! drives the mutations, so a failure shrinks to a short list of them
//! and is kept in `fuzz.proptest-regressions` beside this file.
//!
//! A pipeline case builds a fresh gateway, runs the seeds before the
//! chosen one unchanged (the conversation they make: a connection, NAT
//! state), then the mutated input and up to two more mutated seeds.
//!
//! `FUZZ_CASES` (default 256 per target, a few seconds in a debug build)
//! runs more: `FUZZ_CASES=100000 cargo test --release -p xdpgw-vm-tests
//! --test fuzz`. Coverage-guided fuzzing of the same bodies: cargo-fuzz on
//! nightly (see the README).

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};
use xdpgw_vm_tests::fuzz;
use xdpgw_vm_tests::workspace_dir;

/// The seed corpus of a target, by file name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = workspace_dir().join("fuzz/seeds").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn config() -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Values that sit on boundaries of the fields they land in.
const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0xffff_fffe,
    0xffff_ffff,
];

/// A change to an input that any format takes.
#[derive(Clone, Debug)]
enum ByteMutation {
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        byte: u8,
    },
    /// An interesting value, big-endian, 1, 2 or 4 bytes wide.
    Interesting {
        at: Index,
        width: u8,
        value: Index,
    },
    Truncate {
        to: Index,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: Index,
        len: u8,
    },
    /// Some bytes of another seed over or into this one.
    Splice {
        other: Index,
        from: Index,
        len: u8,
        at: Index,
        overwrite: bool,
    },
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| ByteMutation::Flip { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| ByteMutation::Set { at, byte }),
        (
            any::<Index>(),
            prop_oneof![Just(1u8), Just(2), Just(4)],
            any::<Index>()
        )
            .prop_map(|(at, width, value)| ByteMutation::Interesting { at, width, value }),
        any::<Index>().prop_map(|to| ByteMutation::Truncate { to }),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| ByteMutation::Insert { at, bytes }),
        (any::<Index>(), 1u8..32).prop_map(|(at, len)| ByteMutation::Remove { at, len }),
        (
            any::<Index>(),
            any::<Index>(),
            1u8..64,
            any::<Index>(),
            any::<bool>()
        )
            .prop_map(|(other, from, len, at, overwrite)| ByteMutation::Splice {
                other,
                from,
                len,
                at,
                overwrite
            }),
    ]
}

/// An index into `len + extra` positions (0 if there are none).
fn pos(i: &Index, len: usize, extra: usize) -> usize {
    if len + extra == 0 {
        0
    } else {
        i.index(len + extra)
    }
}

fn put_be(data: &mut [u8], at: usize, width: usize, value: u32) {
    let bytes = value.to_be_bytes();
    for (k, b) in bytes[4 - width..].iter().enumerate() {
        if let Some(d) = data.get_mut(at + k) {
            *d = *b;
        }
    }
}

fn apply_bytes(data: &mut Vec<u8>, m: &ByteMutation, seeds: &[Vec<u8>]) {
    let len = data.len();
    match m {
        ByteMutation::Flip { at, bit } => {
            if len > 0 {
                data[at.index(len)] ^= 1 << bit;
            }
        }
        ByteMutation::Set { at, byte } => {
            if len > 0 {
                data[at.index(len)] = *byte;
            }
        }
        ByteMutation::Interesting { at, width, value } => {
            if len > 0 {
                let v = INTERESTING[value.index(INTERESTING.len())];
                put_be(data, at.index(len), usize::from(*width), v);
            }
        }
        ByteMutation::Truncate { to } => data.truncate(pos(to, len, 1)),
        ByteMutation::Insert { at, bytes } => {
            let at = pos(at, len, 1);
            data.splice(at..at, bytes.iter().copied());
        }
        ByteMutation::Remove { at, len: n } => {
            if len > 0 {
                let at = at.index(len);
                let end = (at + usize::from(*n)).min(len);
                data.drain(at..end);
            }
        }
        ByteMutation::Splice {
            other,
            from,
            len: n,
            at,
            overwrite,
        } => {
            let o = &seeds[other.index(seeds.len())];
            if o.is_empty() {
                return;
            }
            let from = from.index(o.len());
            let piece = &o[from..(from + usize::from(*n)).min(o.len())];
            let at = pos(at, len, 1);
            if *overwrite {
                let end = (at + piece.len()).min(len);
                data.splice(at..end, piece.iter().copied());
            } else {
                data.splice(at..at, piece.iter().copied());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The pipeline.

/// A field of a frame whose value says where something is or how long it
/// is (offsets within the fuzz input: the selector byte comes first).
#[derive(Clone, Copy, Debug)]
enum FrameField {
    EtherType,
    Ipv4VersionIhl,
    Ipv4TotalLength,
    Ipv4FlagsFragment,
    Ipv4Ttl,
    Ipv4Protocol,
    TcpDataOffset,
    UdpLength,
    IcmpType,
    /// The IPv4 header an ICMP error quotes: its version/IHL and length.
    QuotedVersionIhl,
    QuotedTotalLength,
    ArpLengths,
}

const FRAME_FIELDS: [FrameField; 12] = [
    FrameField::EtherType,
    FrameField::Ipv4VersionIhl,
    FrameField::Ipv4TotalLength,
    FrameField::Ipv4FlagsFragment,
    FrameField::Ipv4Ttl,
    FrameField::Ipv4Protocol,
    FrameField::TcpDataOffset,
    FrameField::UdpLength,
    FrameField::IcmpType,
    FrameField::QuotedVersionIhl,
    FrameField::QuotedTotalLength,
    FrameField::ArpLengths,
];

/// What to write into a field: near its current value, or anything.
#[derive(Clone, Copy, Debug)]
enum FieldValue {
    Plus(u8),
    Minus(u8),
    Interesting(Index),
    Any(u16),
}

#[derive(Clone, Debug)]
enum FrameMutation {
    Bytes(ByteMutation),
    Field { field: Index, value: FieldValue },
}

fn frame_mutation() -> impl Strategy<Value = FrameMutation> {
    let value = prop_oneof![
        (1u8..8).prop_map(FieldValue::Plus),
        (1u8..8).prop_map(FieldValue::Minus),
        any::<Index>().prop_map(FieldValue::Interesting),
        any::<u16>().prop_map(FieldValue::Any),
    ];
    prop_oneof![
        3 => byte_mutation().prop_map(FrameMutation::Bytes),
        2 => (any::<Index>(), value).prop_map(|(field, value)| FrameMutation::Field { field, value }),
    ]
}

/// Where the layers of a fuzz input's frame start, as far as it has them.
struct Layout {
    /// The IPv4 header, its length, and the protocol above it.
    ip: Option<(usize, usize, u8)>,
    is_arp: bool,
}

const ETH: usize = 1; // after the selector byte
const IP: usize = ETH + 14;

fn layout(d: &[u8]) -> Layout {
    let et = d
        .get(ETH + 12..ETH + 14)
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ip = match (et, d.get(IP)) {
        (Some(0x0800), Some(v)) => {
            let ihl = usize::from(v & 0x0f) * 4;
            d.get(IP + 9).map(|p| (IP, ihl.max(20), *p))
        }
        _ => None,
    };
    Layout {
        ip,
        is_arp: et == Some(0x0806),
    }
}

/// The field's offset and width in `d`, if the frame has it.
fn field_at(d: &[u8], f: FrameField) -> Option<(usize, usize)> {
    let l = layout(d);
    let l4 = l.ip.map(|(ip, ihl, proto)| (ip + ihl, proto));
    let at = match f {
        FrameField::EtherType => Some((ETH + 12, 2)),
        FrameField::Ipv4VersionIhl => l.ip.map(|(ip, _, _)| (ip, 1)),
        FrameField::Ipv4TotalLength => l.ip.map(|(ip, _, _)| (ip + 2, 2)),
        FrameField::Ipv4FlagsFragment => l.ip.map(|(ip, _, _)| (ip + 6, 2)),
        FrameField::Ipv4Ttl => l.ip.map(|(ip, _, _)| (ip + 8, 1)),
        FrameField::Ipv4Protocol => l.ip.map(|(ip, _, _)| (ip + 9, 1)),
        FrameField::TcpDataOffset => l4.filter(|(_, p)| *p == 6).map(|(at, _)| (at + 12, 1)),
        FrameField::UdpLength => l4.filter(|(_, p)| *p == 17).map(|(at, _)| (at + 4, 2)),
        FrameField::IcmpType => l4.filter(|(_, p)| *p == 1).map(|(at, _)| (at, 1)),
        FrameField::QuotedVersionIhl => l4.filter(|(_, p)| *p == 1).map(|(at, _)| (at + 8, 1)),
        FrameField::QuotedTotalLength => l4.filter(|(_, p)| *p == 1).map(|(at, _)| (at + 10, 2)),
        FrameField::ArpLengths => l.is_arp.then_some((IP + 4, 2)),
    }?;
    (at.0 + at.1 <= d.len()).then_some(at)
}

fn get_be(d: &[u8], at: usize, width: usize) -> u32 {
    d[at..at + width]
        .iter()
        .fold(0u32, |v, b| (v << 8) | u32::from(*b))
}

fn apply_frame(d: &mut Vec<u8>, m: &FrameMutation, seeds: &[Vec<u8>]) {
    match m {
        FrameMutation::Bytes(b) => apply_bytes(d, b, seeds),
        FrameMutation::Field { field, value } => {
            set_field(d, FRAME_FIELDS[field.index(FRAME_FIELDS.len())], *value);
        }
    }
}

/// Writes `value` into field `f` of the frame, if it has the field.
fn set_field(d: &mut [u8], f: FrameField, value: FieldValue) {
    let Some((at, width)) = field_at(d, f) else {
        return;
    };
    let cur = get_be(d, at, width);
    let mask = if width == 4 {
        u32::MAX
    } else {
        (1u32 << (8 * width)) - 1
    };
    let v = match value {
        FieldValue::Plus(n) => cur.wrapping_add(u32::from(n)),
        FieldValue::Minus(n) => cur.wrapping_sub(u32::from(n)),
        FieldValue::Interesting(i) => INTERESTING[i.index(INTERESTING.len())],
        FieldValue::Any(v) => u32::from(v),
    };
    put_be(d, at, width, v & mask);
}

/// The ones'-complement sum of `data`, folded.
fn ones_sum(data: &[u8], mut s: u32) -> u32 {
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// Recomputes the IPv4 header checksum, and the TCP/UDP/ICMP checksum
/// over what the frame holds, so that a mutation gets past the checks into
/// the stages behind them.
fn fix_checksums(d: &mut [u8]) {
    let Some((ip, ihl, proto)) = layout(d).ip else {
        return;
    };
    if ip + ihl > d.len() {
        return;
    }
    d[ip + 10] = 0;
    d[ip + 11] = 0;
    let c = !(ones_sum(&d[ip..ip + ihl], 0) as u16);
    d[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([d[ip + 2], d[ip + 3]]));
    let end = (ip + total).min(d.len());
    let l4 = ip + ihl;
    if end <= l4 {
        return;
    }
    let off = match proto {
        6 => 16,
        17 => 6,
        1 => 2,
        _ => return,
    };
    if l4 + off + 2 > end {
        return;
    }
    d[l4 + off] = 0;
    d[l4 + off + 1] = 0;
    let mut s = 0;
    if proto != 1 {
        s = ones_sum(&d[ip + 12..ip + 20], u32::from(proto) + (end - l4) as u32);
    }
    let mut c = !(ones_sum(&d[l4..end], s) as u16);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    d[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// One mutated input: a seed, what happens to it, whether its checksums
/// are fixed afterwards.
#[derive(Clone, Debug)]
struct MutatedFrame {
    seed: Index,
    mutations: Vec<FrameMutation>,
    fix: bool,
}

fn mutated_frame() -> impl Strategy<Value = MutatedFrame> {
    (
        any::<Index>(),
        prop::collection::vec(frame_mutation(), 1..6),
        any::<bool>(),
    )
        .prop_map(|(seed, mutations, fix)| MutatedFrame {
            seed,
            mutations,
            fix,
        })
}

impl MutatedFrame {
    fn build(&self, seeds: &[Vec<u8>]) -> (usize, Vec<u8>) {
        let i = self.seed.index(seeds.len());
        let mut d = seeds[i].clone();
        for m in &self.mutations {
            apply_frame(&mut d, m, seeds);
        }
        if self.fix {
            fix_checksums(&mut d);
        }
        (i, d)
    }
}

proptest! {
    #![proptest_config(config())]

    /// The pipeline target's body on mutated seeds, after the seeds before
    /// the first one (their conversation's state).
    #[test]
    fn pipeline_on_mutated_seeds(
        first in mutated_frame(),
        more in prop::collection::vec(mutated_frame(), 0..3),
    ) {
        let seeds = seeds("pipeline");
        let gw = fuzz::pipeline::gateway();
        let (i, input) = first.build(&seeds);
        for s in &seeds[..i] {
            fuzz::pipeline::run(&gw, s);
        }
        fuzz::pipeline::run(&gw, &input);
        for m in &more {
            fuzz::pipeline::run(&gw, &m.build(&seeds).1);
        }
    }
}

// ---------------------------------------------------------------------------
// The IPv6 wire functions.

/// Makes an IPv6 frame's payload length match the frame and recomputes the
/// transport checksum of a TCP, UDP or ICMPv6 header right after the IPv6
/// header (RFC 8200 pseudo-header), so that mutations reach past the
/// checks.
fn fix_checksums6(d: &mut [u8]) {
    if d.len() < 54 || d[12..14] != [0x86, 0xdd] {
        return;
    }
    let plen = (d.len() - 54).min(0xffff);
    d[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    let nh = d[20];
    let off = match nh {
        6 => 16,
        17 => 6,
        58 => 2,
        _ => return,
    };
    let end = 54 + plen;
    if 54 + off + 2 > end {
        return;
    }
    d[54 + off] = 0;
    d[54 + off + 1] = 0;
    let s = ones_sum(&d[22..54], u32::from(nh) + plen as u32);
    let mut c = !(ones_sum(&d[54..end], s) as u16);
    if nh == 17 && c == 0 {
        c = 0xffff;
    }
    d[54 + off..54 + off + 2].copy_from_slice(&c.to_be_bytes());
}

proptest! {
    #![proptest_config(config())]

    /// The wire6 target's body on mutated seeds, checksums fixed or not.
    #[test]
    fn wire6_on_mutated_seeds(
        seed in any::<Index>(),
        mutations in prop::collection::vec(byte_mutation(), 1..6),
        fix in any::<bool>(),
    ) {
        let seeds = seeds("wire6");
        let mut d = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply_bytes(&mut d, m, &seeds);
        }
        if fix {
            fix_checksums6(&mut d);
        }
        fuzz::wire6::run(&d);
    }

}

proptest! {
    #![proptest_config(config())]

    /// The pipeline on mutated IPv6 frames (the wire6 seeds) through the
    /// dual-stack gateway: nothing panics, every frame is accounted for.
    #[test]
    fn pipeline_on_mutated_ipv6_frames(
        seed in any::<Index>(),
        iface in 0u8..3,
        mutations in prop::collection::vec(byte_mutation(), 0..6),
        fix in any::<bool>(),
    ) {
        let seeds = seeds("wire6");
        let mut d = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply_bytes(&mut d, m, &seeds);
        }
        if fix {
            fix_checksums6(&mut d);
        }
        let gw = fuzz::pipeline::gateway();
        let mut input = vec![iface];
        input.extend_from_slice(&d);
        fuzz::pipeline::run(&gw, &input);
    }

    /// The sync_wire target's body on mutated seeds (and splices of two:
    /// datagrams of several messages).
    #[test]
    fn sync_wire_on_mutated_seeds(
        seed in any::<Index>(),
        mutations in prop::collection::vec(byte_mutation(), 0..6),
    ) {
        let seeds = seeds("sync_wire");
        let mut d = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply_bytes(&mut d, m, &seeds);
        }
        fuzz::sync_wire::run(&d);
    }
}

/// Every sync_wire seed, unchanged, is read whole without an error.
#[test]
fn sync_wire_seeds_parse() {
    use xdpgw_control::sync::wire::messages;
    for d in seeds("sync_wire") {
        assert!(messages(&d).all(|m| m.is_ok()), "{d:02x?}");
        fuzz::sync_wire::run(&d);
    }
}

/// Every wire6 seed, unchanged, parses, or is refused for an option Linux
/// answers with a parameter problem (so the mutations start from frames
/// that reach every layer), and passes the body.
#[test]
fn wire6_seeds_parse() {
    use xdpgw_dataplane::wire::ipv6::{hop_by_hop_problem, parse_ipv6};
    for d in seeds("wire6") {
        let ok = parse_ipv6(&d).is_ok() || hop_by_hop_problem(&d).is_some();
        assert!(ok, "{d:02x?}");
        fuzz::wire6::run(&d);
    }
}

// ---------------------------------------------------------------------------
// The rule parser.

/// Words of the rule language (and a few that are not), for replacing
/// and inserting words.
const WORDS: &[&str] = &[
    "-A",
    "-I",
    "-D",
    "-R",
    "-N",
    "-X",
    "-P",
    "-F",
    "-Z",
    "-E",
    "-t",
    "-j",
    "-g",
    "-p",
    "-s",
    "-d",
    "-i",
    "-o",
    "!",
    "-m",
    "-f",
    "--dport",
    "--sport",
    "--dports",
    "--ports",
    "--tcp-flags",
    "--syn",
    "--icmp-type",
    "--ctstate",
    "--state",
    "--comment",
    "--to-ports",
    "--to-source",
    "--to-destination",
    "--set-dscp",
    "--set-dscp-class",
    "--set-mark",
    "--set-xmark",
    "--limit",
    "--limit-burst",
    "--src-range",
    "--dst-range",
    "--log-prefix",
    "--log-level",
    "--reject-with",
    "--random",
    "--mark",
    "--dscp",
    "*filter",
    "*nat",
    "*mangle",
    "*raw",
    "*security",
    "COMMIT",
    ":INPUT",
    ":FOO",
    "-",
    "ACCEPT",
    "DROP",
    "RETURN",
    "MASQUERADE",
    "REJECT",
    "LOG",
    "DNAT",
    "SNAT",
    "REDIRECT",
    "NOTRACK",
    "CT",
    "MARK",
    "DSCP",
    "tcp",
    "udp",
    "icmp",
    "all",
    "multiport",
    "conntrack",
    "comment",
    "limit",
    "iprange",
    "[0:0]",
    "[1:2]",
    "[:]",
    "\"",
    "\"a b\"",
    "'",
    "\\",
    "#",
    "iptables",
    "sudo",
    "$X",
    ";",
    "|",
    "0",
    "1",
    "65535",
    "65536",
    "-1",
    "4294967296",
    "0x3f",
    "0/0",
    "1.2.3.4",
    "1.2.3.4/33",
    "10.0.0.0/255.0.255.0",
    "255.255.255.255",
    "1.2.3.4-1.2.3.1",
    "1:",
    ":1",
    "2:1",
    "::",
    "80,443",
    ",",
    "SYN,ACK",
    "ALL",
    "NONE",
    "3/4",
    "echo-request",
    "ESTABLISHED,RELATED",
    "INVALID",
    "5/sec",
    "1/day",
    "eth+",
    "+",
    "lan0",
    "wan0",
    "a\tb",
    "\u{a0}",
    "\u{3000}",
    "é",
    "\u{feff}",
    "\r",
    "",
];

#[derive(Clone, Debug)]
enum TextMutation {
    Bytes(ByteMutation),
    DuplicateLine(Index),
    RemoveLine(Index),
    SwapLines(Index, Index),
    /// A line of another seed inserted before a line of this one.
    LineFrom {
        other: Index,
        line: Index,
        at: Index,
    },
    /// A word replaced by a word of `WORDS`, or one inserted before it.
    Word {
        at: Index,
        word: Index,
        replace: bool,
    },
}

fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        3 => byte_mutation().prop_map(TextMutation::Bytes),
        1 => any::<Index>().prop_map(TextMutation::DuplicateLine),
        1 => any::<Index>().prop_map(TextMutation::RemoveLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| TextMutation::SwapLines(a, b)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(other, line, at)| TextMutation::LineFrom { other, line, at }),
        4 => (any::<Index>(), any::<Index>(), any::<bool>())
            .prop_map(|(at, word, replace)| TextMutation::Word { at, word, replace }),
    ]
}

/// `data` split after each `\n` (the last piece may lack one).
fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply_text(d: &mut Vec<u8>, m: &TextMutation, seeds: &[Vec<u8>]) {
    let mut lines = lines_of(d);
    match m {
        TextMutation::Bytes(b) => return apply_bytes(d, b, seeds),
        TextMutation::DuplicateLine(i) => {
            if !lines.is_empty() {
                let i = i.index(lines.len());
                let l = lines[i].clone();
                lines.insert(i, l);
            }
        }
        TextMutation::RemoveLine(i) => {
            if !lines.is_empty() {
                lines.remove(i.index(lines.len()));
            }
        }
        TextMutation::SwapLines(a, b) => {
            if !lines.is_empty() {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
        }
        TextMutation::LineFrom { other, line, at } => {
            let o = lines_of(&seeds[other.index(seeds.len())]);
            if !o.is_empty() {
                let mut l = o[line.index(o.len())].clone();
                if l.last() != Some(&b'\n') {
                    l.push(b'\n');
                }
                let at = pos(at, lines.len(), 1);
                lines.insert(at, l);
            }
        }
        TextMutation::Word { at, word, replace } => {
            // Word boundaries: runs of bytes other than blanks and newlines.
            let words: Vec<(usize, usize)> = {
                let mut v = Vec::new();
                let mut start = None;
                for (k, b) in d.iter().enumerate() {
                    let blank = matches!(b, b' ' | b'\t' | b'\n');
                    match (start, blank) {
                        (None, false) => start = Some(k),
                        (Some(s), true) => {
                            v.push((s, k));
                            start = None;
                        }
                        _ => {}
                    }
                }
                if let Some(s) = start {
                    v.push((s, d.len()));
                }
                v
            };
            let w = WORDS[word.index(WORDS.len())].as_bytes();
            match words.get(pos(at, words.len(), 0)) {
                Some(&(s, e)) if *replace => {
                    d.splice(s..e, w.iter().copied());
                }
                Some(&(s, _)) => {
                    let mut ins = w.to_vec();
                    ins.push(b' ');
                    d.splice(s..s, ins);
                }
                None => d.extend_from_slice(w),
            }
            return;
        }
    }
    *d = lines.concat();
}

proptest! {
    #![proptest_config(config())]

    /// The rule parser target's body on mutated seed rule files.
    #[test]
    fn rule_parser_on_mutated_seeds(
        seed in any::<Index>(),
        mutations in prop::collection::vec(text_mutation(), 1..8),
    ) {
        let seeds = seeds("parse_rules");
        let mut text = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply_text(&mut text, m, &seeds);
        }
        fuzz::rules::run(&text);
    }
}

/// Inputs on which a target's body failed once, kept (the fix is named
/// at the test beside it).
#[test]
fn regressions() {
    // A column counted in bytes past an indentation of non-ASCII blanks
    // (`parse::tests::columns_count_characters_after_unicode_blanks`).
    fuzz::rules::run("\u{3000}\u{3000}\u{3000} x\n".as_bytes());
    fuzz::rules::run("*filter\n\u{a0}\u{a0}-A FOO -j ACCEPT\nCOMMIT\n".as_bytes());
}

/// The seeds themselves pass, unmutated (and the rule seeds load).
#[test]
fn seeds_pass_unmutated() {
    let gw = fuzz::pipeline::gateway();
    for s in seeds("pipeline") {
        fuzz::pipeline::run(&gw, &s);
    }
    for s in seeds("parse_rules") {
        let text = String::from_utf8(s.clone()).expect("a rule seed is UTF-8");
        xdpgw_control::load_rules_str(fuzz::rules::FILE, &text).unwrap_or_else(|e| panic!("{e}"));
        fuzz::rules::run(&s);
    }
}

/// The harness's own pieces: a field mutation lands on the field, fixed
/// checksums are right (the pipeline then takes the frame as before).
#[test]
fn field_mutations_and_checksum_fixes() {
    let seeds = seeds("pipeline");
    let syn = seeds
        .iter()
        .find(|s| {
            let l = layout(s);
            l.ip.is_some_and(|(_, _, p)| p == 6)
                && s.len() > IP + 20 + 13
                && s[IP + 20 + 13] == 0x02
        })
        .expect("a TCP SYN seed");
    let (at, width) = field_at(syn, FrameField::Ipv4TotalLength).expect("total length");
    assert_eq!((at, width), (IP + 2, 2));
    let mut d = syn.clone();
    set_field(&mut d, FrameField::Ipv4TotalLength, FieldValue::Plus(3));
    assert_eq!(get_be(&d, at, 2), get_be(syn, at, 2) + 3);
    set_field(&mut d, FrameField::TcpDataOffset, FieldValue::Any(0xf0));
    assert_eq!(d[IP + 20 + 12], 0xf0);
    // A field the frame does not have is left alone.
    let before = d.clone();
    set_field(&mut d, FrameField::UdpLength, FieldValue::Any(1));
    assert_eq!(d, before);
    // Checksums recomputed over an unchanged frame give the same bytes.
    for s in &seeds {
        let mut d = s.clone();
        fix_checksums(&mut d);
        assert_eq!(&d, s);
    }
}
