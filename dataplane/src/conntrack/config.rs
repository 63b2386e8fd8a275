//! Conntrack sizing and timeouts, with Linux's defaults.

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
    /// Linux's `nf_conntrack_max`.
    pub max_entries: usize,
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
            shards: 1024,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_max_retrans: 3,
            tcp_ignore_invalid_rst: false,
            timeouts: Timeouts::default(),
        }
    }
}

impl Default for ConntrackConfig {
    /// Sized for this machine's memory (`MemTotal` in /proc/meminfo); if that
    /// cannot be read, as for a 64-bit machine with more than 4 GiB.
    fn default() -> Self {
        let mem = mem_total_bytes().unwrap_or(8 << 30);
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

/// `MemTotal` from /proc/meminfo, in bytes.
fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
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
        let text = "MemTotal:       24684084 kB\nMemFree:        21863840 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_684_084 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
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
