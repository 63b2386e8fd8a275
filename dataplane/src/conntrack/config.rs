//! Conntrack sizing and timeouts, with Linux's defaults.

use super::key_table::{BUCKET_BYTES, KEYS_PER_BUCKET, MAX_SHARDS, MAX_SLOTS};
use super::table::{Slot, TcpLine};
use super::{Nanos, TcpState};

const fn secs(s: u64) -> Nanos {
    s * 1_000_000_000
}

/// Protocol timeouts (Linux's `nf_conntrack_*_timeout*` sysctls), in
/// nanoseconds. The defaults are Linux's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Nanos,
    pub tcp_syn_recv: Nanos,
    pub tcp_established: Nanos,
    pub tcp_fin_wait: Nanos,
    pub tcp_close_wait: Nanos,
    pub tcp_last_ack: Nanos,
    pub tcp_time_wait: Nanos,
    pub tcp_close: Nanos,
    pub tcp_syn_sent2: Nanos,
    /// After `tcp_max_retrans` identical retransmissions without an ACK.
    pub tcp_max_retrans: Nanos,
    /// While data is unacknowledged (and for a picked-up connection until
    /// the other side answers).
    pub tcp_unacknowledged: Nanos,
    /// UDP before a reply, or replied within the first two seconds.
    pub udp: Nanos,
    /// UDP once replied and still active after two seconds (then ASSURED).
    pub udp_stream: Nanos,
    pub icmp: Nanos,
    /// Any other protocol.
    pub generic: Nanos,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: secs(120),
            tcp_syn_recv: secs(60),
            tcp_established: secs(432_000),
            tcp_fin_wait: secs(120),
            tcp_close_wait: secs(60),
            tcp_last_ack: secs(30),
            tcp_time_wait: secs(120),
            tcp_close: secs(10),
            tcp_syn_sent2: secs(120),
            tcp_max_retrans: secs(300),
            tcp_unacknowledged: secs(300),
            udp: secs(30),
            udp_stream: secs(120),
            icmp: secs(30),
            generic: secs(600),
        }
    }
}

impl Timeouts {
    /// How many timeouts there are ([`Timeouts::to_array`]).
    pub const COUNT: usize = 15;

    /// The timeouts in declaration order.
    pub fn to_array(&self) -> [Nanos; Self::COUNT] {
        [
            self.tcp_syn_sent,
            self.tcp_syn_recv,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_close_wait,
            self.tcp_last_ack,
            self.tcp_time_wait,
            self.tcp_close,
            self.tcp_syn_sent2,
            self.tcp_max_retrans,
            self.tcp_unacknowledged,
            self.udp,
            self.udp_stream,
            self.icmp,
            self.generic,
        ]
    }

    /// [`Timeouts::to_array`] undone.
    pub fn from_array(a: [Nanos; Self::COUNT]) -> Timeouts {
        let [tcp_syn_sent, tcp_syn_recv, tcp_established, tcp_fin_wait, tcp_close_wait, tcp_last_ack, tcp_time_wait, tcp_close, tcp_syn_sent2, tcp_max_retrans, tcp_unacknowledged, udp, udp_stream, icmp, generic] =
            a;
        Timeouts {
            tcp_syn_sent,
            tcp_syn_recv,
            tcp_established,
            tcp_fin_wait,
            tcp_close_wait,
            tcp_last_ack,
            tcp_time_wait,
            tcp_close,
            tcp_syn_sent2,
            tcp_max_retrans,
            tcp_unacknowledged,
            udp,
            udp_stream,
            icmp,
            generic,
        }
    }

    /// The timeout of a TCP state (`tcp_timeouts[state]`; NONE has none).
    pub fn tcp(&self, s: TcpState) -> Nanos {
        match s {
            TcpState::None => 0,
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
            TcpState::SynSent2 => self.tcp_syn_sent2,
        }
    }
}

/// How the conntrack table is sized and how it judges packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Linux's `nf_conntrack_max`: the most entries the table holds (at
    /// least 1, at most [`MAX_ENTRIES`]).
    pub max_entries: usize,
    /// Linux's `nf_conntrack_buckets` (`hashsize`): how many buckets the
    /// key tables have in all. A bucket is one 64-byte line holding three
    /// tuples (linear probing past full buckets), where Linux's is a
    /// pointer to a chain. At least `max_entries` (fewer are raised to
    /// that): each entry has two tuples, so the key tables are then about
    /// two thirds full at the maximum. Rounded up to whole shards, and
    /// raised where a shard's share would leave fewer than two keys per
    /// slot within 90 % of its buckets' room (shards of a few dozen
    /// entries). `None`: sized from `max_entries` (about 1.3 to 1.6
    /// buckets per entry, see [`TableLayout`]).
    pub buckets: Option<usize>,
    /// Number of lock shards; rounded up to a power of two.
    pub shards: usize,
    /// `nf_conntrack_tcp_loose`: pick up connections already established.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: only out-of-window RSTs are INVALID.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_tcp_max_retrans`: identical retransmissions before the
    /// `tcp_max_retrans` timeout applies.
    pub tcp_max_retrans: u8,
    /// `nf_conntrack_tcp_ignore_invalid_rst`: let RSTs below the window pass.
    pub tcp_ignore_invalid_rst: bool,
    pub timeouts: Timeouts,
}

impl ConntrackConfig {
    /// Linux's defaults for a machine with `mem_bytes` of RAM.
    pub fn for_memory(mem_bytes: u64) -> ConntrackConfig {
        ConntrackConfig {
            max_entries: nf_conntrack_max_for_memory(mem_bytes),
            buckets: None,
            shards: 1024,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_max_retrans: 3,
            tcp_ignore_invalid_rst: false,
            timeouts: Timeouts::default(),
        }
    }
}

/// The most entries a table can be configured for: keys name a shard in
/// 16 bits and a slot in 23 (memory runs out long before).
pub const MAX_ENTRIES: usize = MAX_SHARDS * (MAX_SLOTS / 2);

/// Where a table's memory goes, computed from its configuration alone
/// (`ConntrackConfig::layout`): `Conntrack::new` builds exactly this, and
/// the control plane checks its size against the machine's memory before
/// building it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLayout {
    /// `nf_conntrack_max`.
    pub max_entries: usize,
    /// Lock shards (a power of two).
    pub shards: usize,
    /// Slab slots preallocated per shard: the shard's share of
    /// `max_entries` plus room for an uneven spread, eight standard
    /// deviations of the binomial spread (6 % more for 16,384 per shard,
    /// 50 % for 256, more for smaller shares).
    pub slots_per_shard: usize,
    /// Key-table buckets per shard.
    pub buckets_per_shard: usize,
    /// Keys a shard's key table takes before refusing one: two per slot
    /// and a quarter more (the reply tuples of a shard's entries hash to
    /// any shard), at most 90 % of the buckets' room (and never fewer
    /// than two per slot: `buckets` are raised for that).
    pub keys_per_shard: usize,
}

impl TableLayout {
    /// `nf_conntrack_buckets`: key-table buckets in all.
    pub fn buckets(&self) -> usize {
        self.shards.saturating_mul(self.buckets_per_shard)
    }

    /// The table's memory when full: every slab slot with its TCP line,
    /// and the key tables. The slabs and key tables of a table from 16 MiB
    /// on are resident from the start (huge pages, see `Conntrack::new`);
    /// the TCP lines as entries first use them.
    pub fn bytes(&self) -> u64 {
        let slot = (std::mem::size_of::<Slot>() + std::mem::size_of::<TcpLine>()) as u64;
        let shard = (self.slots_per_shard as u64)
            .saturating_mul(slot)
            .saturating_add((self.buckets_per_shard as u64).saturating_mul(BUCKET_BYTES as u64));
        shard.saturating_mul(self.shards as u64)
    }

    /// The part resident from the start for a table with huge pages: the
    /// slabs (without their TCP lines) and the key tables.
    pub fn preallocated_bytes(&self) -> u64 {
        let shard = (self.slots_per_shard as u64)
            .saturating_mul(std::mem::size_of::<Slot>() as u64)
            .saturating_add((self.buckets_per_shard as u64).saturating_mul(BUCKET_BYTES as u64));
        shard.saturating_mul(self.shards as u64)
    }
}

impl ConntrackConfig {
    /// How a table of this configuration is laid out.
    pub fn layout(&self) -> TableLayout {
        let max = self.max_entries.clamp(1, MAX_ENTRIES);
        // Keys name shards and slots in 16 and 23 bits: more shards when
        // a shard would hold more entries than that.
        let shards = self
            .shards
            .max(1)
            .max(max.div_ceil(MAX_SLOTS / 2))
            .next_power_of_two()
            .min(MAX_SHARDS);
        let per_shard = max.div_ceil(shards);
        // Eight standard deviations of the binomial spread of entries over
        // the shards (the hash is keyed with a random secret: no shard can
        // be aimed at, and none overflows in practice before the table is
        // full, even for tables of a few entries per shard).
        let slack = 8 * per_shard.isqrt().max(1);
        let slots = per_shard + slack + 4;
        // Two keys per entry on average (original here, reply wherever it
        // hashes), plus a quarter for an uneven spread of reply keys.
        let keys_wanted = slots * 2 + slots / 2;
        let buckets_per_shard = match self.buckets {
            // Each bucket holds three keys: at most two thirds used.
            None => keys_wanted.div_ceil(2),
            // At least two keys per slot within 90 % of the buckets' room
            // (raises only small shards' share of `max`).
            Some(b) => b
                .max(max)
                .div_ceil(shards)
                .max((2 * slots * 10).div_ceil(KEYS_PER_BUCKET * 9)),
        }
        .max(1);
        let room = buckets_per_shard.saturating_mul(KEYS_PER_BUCKET * 9) / 10;
        TableLayout {
            max_entries: max,
            shards,
            slots_per_shard: slots,
            buckets_per_shard,
            keys_per_shard: keys_wanted.min(room).max(1),
        }
    }
}

impl Default for ConntrackConfig {
    /// Sized for this machine's memory (`MemTotal` in /proc/meminfo); if that
    /// cannot be read, as for a 64-bit machine with more than 4 GiB.
    fn default() -> Self {
        let mem = MemInfo::read().map_or(8 << 30, |m| m.total);
        ConntrackConfig::for_memory(mem)
    }
}

/// `nf_conntrack_max` as Linux sizes it at boot (`nf_conntrack_init_start`
/// in net/netfilter/nf_conntrack_core.c, with no `hashsize=` given):
///
/// ```text
/// buckets = RAM / 16384 / sizeof(struct hlist_head)      (= RAM / 131072)
/// if 64-bit and RAM > 4 GiB: buckets = 262144
/// else if RAM > 1 GiB:       buckets = 65536
/// buckets = max(buckets, 1024), rounded up to a multiple of
///           PAGE_SIZE / sizeof(struct hlist_nulls_head)  (= 512)
/// nf_conntrack_max = 1 * buckets                          (max_factor 1)
/// ```
///
/// RAM is `totalram_pages() << PAGE_SHIFT`, which is what /proc/meminfo
/// shows as `MemTotal`.
pub fn nf_conntrack_max_for_memory(mem_bytes: u64) -> usize {
    const PAGE: u64 = 4096;
    const HEAD: u64 = 8; // sizeof(struct hlist_head) on 64-bit
    let nr_pages = mem_bytes / PAGE;
    let mut buckets = (nr_pages * PAGE) / 16384 / HEAD;
    if nr_pages > 4 * ((1 << 30) / PAGE) {
        buckets = 262_144;
    } else if nr_pages > (1 << 30) / PAGE {
        buckets = 65_536;
    }
    buckets = buckets.max(1024);
    let per_page = PAGE / HEAD;
    buckets = buckets.div_ceil(per_page) * per_page;
    usize::try_from(buckets).unwrap_or(usize::MAX)
}

/// The machine's memory, from /proc/meminfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`: what Linux sizes its own conntrack table from.
    pub total: u64,
    /// `MemAvailable`: what can be allocated now without swapping (free
    /// memory plus reclaimable caches); `total` if the kernel does not
    /// say.
    pub available: u64,
}

impl MemInfo {
    /// This machine's, or `None` if /proc/meminfo cannot be read.
    pub fn read() -> Option<MemInfo> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        MemInfo::parse(&text)
    }

    /// From the text of /proc/meminfo.
    pub fn parse(meminfo: &str) -> Option<MemInfo> {
        let total = meminfo_field(meminfo, "MemTotal:")?;
        let available = meminfo_field(meminfo, "MemAvailable:").unwrap_or(total);
        Some(MemInfo { total, available })
    }
}

/// A field of /proc/meminfo, in bytes.
fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(name))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_sizing() {
        // 24 GiB-class machine (this one): the 64-bit > 4 GiB branch.
        assert_eq!(nf_conntrack_max_for_memory(24_684_084 * 1024), 262_144);
        // 2 GiB: > 1 GiB branch.
        assert_eq!(nf_conntrack_max_for_memory(2 << 30), 65_536);
        // 512 MiB: RAM / 131072 = 4096.
        assert_eq!(nf_conntrack_max_for_memory(512 << 20), 4096);
        // 100 MiB: 800, raised to the 1024 floor.
        assert_eq!(nf_conntrack_max_for_memory(100 << 20), 1024);
        // 300 MiB: 2400, rounded up to a multiple of 512.
        assert_eq!(nf_conntrack_max_for_memory(300 << 20), 2560);
    }

    #[test]
    fn meminfo_parse() {
        let text = "MemTotal:       24684084 kB\nMemFree:        21863840 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(
            MemInfo::parse(text),
            Some(MemInfo {
                total: 24_684_084 * 1024,
                available: 22_000_000 * 1024
            })
        );
        let old = "MemTotal:       24684084 kB\nMemFree:        21863840 kB\n";
        assert_eq!(
            MemInfo::parse(old).map(|m| m.available),
            Some(24_684_084 * 1024)
        );
        assert_eq!(MemInfo::parse("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn defaults_are_linux_defaults() {
        let c = ConntrackConfig::for_memory(8 << 30);
        assert!(c.tcp_loose && !c.tcp_be_liberal);
        assert_eq!(c.tcp_max_retrans, 3);
        assert!(c.shards.is_power_of_two());
        assert_eq!(c.timeouts.tcp(TcpState::Established), secs(5 * 24 * 3600));
        assert_eq!(c.timeouts.tcp(TcpState::None), 0);
    }
}
