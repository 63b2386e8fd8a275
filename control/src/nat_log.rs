//! The NAT event log (`nat_log` in the configuration): the creation and
//! deletion of every NATed connection, with the time, the inside and the
//! outside address and port, written to a file off the packet path, one
//! line each, as `conntrack -E -o timestamp` prints conntrack's events
//! (`[seconds.microseconds]` in wall-clock time, a tab, then the event as
//! `conntrack -E` shows it). Operators keep such logs to answer the legal
//! requests that name an outside address, port and time.
//!
//! Both families' NATed connections are logged, IPv6 ones (NAT66) in the
//! same form with IPv6 addresses, in the order they happened.
//!
//! It is one more listener of the conntrack event rings ([`EventHub`]),
//! of both connection tables:
//! the workers record events under the shard locks they hold anyway, this
//! thread drains and formats them every [`POLL`]. Events lost when a ring
//! or this listener's queue is full (a storm of new connections faster than
//! the file takes them) are counted (`nat_log lost` in `xdpgw stats`, the
//! `xdpgw_nat_log_events_total{result="lost"}` metric) and reported in the
//! log itself as a line starting with `#`. After a reload (SIGHUP, `xdpgw
//! reload`) the file is opened again, so that logrotate can move it away.
//!
//! [`EventHub`]: crate::api::events::EventHub

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use xdpgw_dataplane::conntrack::{event_line, status, CtEvent, EventKind};
use xdpgw_dataplane::flow::Addr;

use crate::api::events::Listening;
use crate::api::server::Control;

/// How often the rings are drained.
pub const POLL: Duration = Duration::from_millis(20);

/// What the log has done, for stats and metrics.
#[derive(Debug, Default)]
pub struct NatLogCounters {
    /// Lines written.
    pub written: AtomicU64,
    /// Events of NATed connections lost (buffers full).
    pub lost: AtomicU64,
    /// Set to reopen the file before the next write (after a reload).
    pub reopen: AtomicBool,
}

/// Whether an event belongs in the log: a NATed connection created or
/// deleted.
pub fn logged<A: Addr>(e: &CtEvent<A>) -> bool {
    e.snap.status & (status::SRC_NAT | status::DST_NAT) != 0
        && matches!(e.kind, EventKind::New | EventKind::Destroy)
}

/// The log line of an event (without newline): `wall` is the wall-clock
/// time (ns since the epoch) at `now` on the workers' clock; an event is
/// stamped with the wall-clock time it happened.
pub fn line<A: Addr>(e: &CtEvent<A>, now: u64, wall: u64) -> String {
    let at = wall.saturating_sub(now.saturating_sub(e.at.unwrap_or(now)));
    format!(
        "[{}.{:06}]\t{}",
        at / 1_000_000_000,
        (at % 1_000_000_000) / 1_000,
        event_line(e, now, (std::process::id(), "xdpgw"))
    )
}

fn open(path: &Path) -> std::io::Result<BufWriter<File>> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
}

/// Starts listening to the conntrack events of both families (before the
/// gateway says it is ready, so that no connection escapes the log): the
/// listener's ids for [`serve`]. `None` if there are too many listeners
/// already.
pub fn subscribe(control: &Control) -> Option<Listening> {
    Listening::subscribe(control)
}

/// The lines of the logged events of both families since the last poll,
/// in the order they happened, and how many events were lost.
fn poll(control: &Control, ids: Listening, now: u64, wall: u64) -> (Vec<String>, u64) {
    let polled = ids.poll(control, now);
    let lines = polled.lines(
        now,
        logged,
        logged,
        |e| line(e, now, wall),
        |e| line(e, now, wall),
    );
    (lines, polled.lost)
}

/// Writes the log to `path` until `stop` is set, for the listener `id`
/// ([`subscribe`]). Runs on its own thread. A file that cannot be opened
/// or written is reported (`report`) once per failure spell and tried
/// again at the next poll; the events meanwhile are counted as lost.
pub fn serve(
    control: &Control,
    ids: Listening,
    path: &Path,
    stop: &AtomicBool,
    report: &dyn Fn(String),
) {
    let counters = &control.nat_log;
    let mut file: Option<BufWriter<File>> = None;
    let mut failing = false;
    let mut pending_lost = 0u64;
    let path: PathBuf = path.to_path_buf();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let now = (control.now)();
        let wall = crate::state_file::wall_now();
        let (logged, lost) = poll(control, ids, now, wall);
        if counters.reopen.swap(false, Ordering::Relaxed) {
            file = None;
        }
        if file.is_none() {
            match open(&path) {
                Ok(f) => {
                    file = Some(f);
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        report(format!("nat_log {}: {e}", path.display()));
                    }
                    failing = true;
                }
            }
        }
        // Lost events may or may not have been NATed ones: count them all.
        pending_lost += lost;
        let Some(f) = file.as_mut() else {
            pending_lost += logged.len() as u64;
            counters
                .lost
                .fetch_add(lost + logged.len() as u64, Ordering::Relaxed);
            continue;
        };
        counters.lost.fetch_add(lost, Ordering::Relaxed);
        let mut out = String::new();
        if pending_lost > 0 {
            out.push_str(&format!(
                "# {pending_lost} conntrack events lost (buffers full) before {}\n",
                wall / 1_000_000_000
            ));
        }
        for l in &logged {
            out.push_str(l);
            out.push('\n');
        }
        if out.is_empty() {
            continue;
        }
        match f.write_all(out.as_bytes()).and_then(|()| f.flush()) {
            Ok(()) => {
                pending_lost = 0;
                counters
                    .written
                    .fetch_add(logged.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                report(format!("nat_log {}: {e}", path.display()));
                counters
                    .lost
                    .fetch_add(logged.len() as u64, Ordering::Relaxed);
                pending_lost += logged.len() as u64;
                file = None;
                failing = true;
            }
        }
    }
    ids.unsubscribe(control);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use xdpgw_dataplane::conntrack::{Snapshot, TcpState};
    use xdpgw_dataplane::flow::{Tuple, IPPROTO_UDP};

    use super::*;

    fn event(kind: EventKind, st: u16, at: u64) -> CtEvent {
        let orig = Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 254),
            sport: 40000,
            dport: 53,
            proto: IPPROTO_UDP,
        };
        let reply = Tuple {
            src: orig.dst,
            dst: Ipv4Addr::new(203, 0, 113, 1),
            sport: 53,
            dport: 40000,
            proto: IPPROTO_UDP,
        };
        CtEvent {
            kind,
            at: Some(at),
            protoinfo: false,
            snap: Snapshot {
                orig,
                reply,
                status: st,
                tcp_state: TcpState::None,
                mark: 0,
                expires: at + 30_000_000_000,
                packets: [1, 0],
                bytes: [60, 0],
                icmp_type: 0,
                icmp_code: 0,
            },
        }
    }

    #[test]
    fn nated_creations_and_deletions_in_conntrack_timestamp_form() {
        let nat = status::CONFIRMED | status::SRC_NAT;
        assert!(logged(&event(EventKind::New, nat, 0)));
        assert!(logged(&event(EventKind::Destroy, nat, 0)));
        assert!(!logged(&event(EventKind::Update, nat, 0)));
        assert!(!logged(&event(EventKind::New, status::CONFIRMED, 0)));
        // Happened 0.25 s before now, whose wall time is 1796297326.5.
        let e = event(EventKind::New, nat, 750_000_000);
        let l = line(&e, 1_000_000_000, 1_796_297_326_500_000_000);
        assert_eq!(
            l,
            "[1796297326.250000]\t    [NEW] udp      17 30 src=192.168.10.2 dst=203.0.113.254 \
             sport=40000 dport=53 [UNREPLIED] src=203.0.113.254 dst=203.0.113.1 sport=53 \
             dport=40000"
        );
    }

    #[test]
    fn nat66_lines_have_the_addresses_as_conntrack_tools_writes_them() {
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("an address");
        let e4 = event(
            EventKind::New,
            status::CONFIRMED | status::SRC_NAT,
            750_000_000,
        );
        let t = |t: Tuple| Tuple {
            src: v6(if t.src == Ipv4Addr::new(192, 168, 10, 2) {
                "fd00:10::2"
            } else {
                "2001:db8:113::254"
            }),
            dst: v6(if t.dst == Ipv4Addr::new(203, 0, 113, 1) {
                "::203.0.113.1"
            } else {
                "2001:db8:113::254"
            }),
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
        };
        let e = CtEvent {
            kind: e4.kind,
            at: e4.at,
            protoinfo: e4.protoinfo,
            snap: Snapshot {
                orig: t(e4.snap.orig),
                reply: t(e4.snap.reply),
                status: e4.snap.status,
                tcp_state: e4.snap.tcp_state,
                mark: 0,
                expires: e4.snap.expires,
                packets: e4.snap.packets,
                bytes: e4.snap.bytes,
                icmp_type: 0,
                icmp_code: 0,
            },
        };
        assert!(logged(&e));
        assert_eq!(
            line(&e, 1_000_000_000, 1_796_297_326_500_000_000),
            "[1796297326.250000]\t    [NEW] udp      17 30 src=fd00:10::2 dst=2001:db8:113::254 \
             sport=40000 dport=53 [UNREPLIED] src=2001:db8:113::254 dst=::203.0.113.1 sport=53 \
             dport=40000"
        );
    }
}
