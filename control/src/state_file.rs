//! The connection table kept across a restart (`state_file` in the
//! configuration): `xdpgw run` saves it there once its workers have stopped
//! and restores it when it starts, before its workers start, so that an
//! upgrade (a new binary, then `systemctl restart xdpgw`) keeps the
//! connections through the gateway, with their NAT mappings.
//!
//! The format and its checks are the dataplane's
//! ([`xdpgw_dataplane::conntrack::SavedTable`]); this module does the
//! file's I/O and the wall clock:
//!
//! - saving writes a temporary file next to the state file, syncs it and
//!   renames it over the state file: a reader sees the old file or the new
//!   one, never a part;
//! - a state file that was read is renamed `FILE.loaded` (`FILE.refused` if
//!   it was refused), so that it is never restored twice: a process that
//!   stops without saving (a crash) leaves no state file behind, and the
//!   next start begins with an empty table, not with an old one;
//! - each entry's time left is reduced by the wall-clock time between
//!   saving and restoring; entries whose time ran out are left out;
//! - nothing here stops the gateway from starting: a missing, cut short,
//!   corrupt or foreign file is reported and the table starts empty.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xdpgw_dataplane::conntrack::{
    Conntrack, Nanos, Restored, SavedError, SavedHeader, SavedTable, HEADER_LEN,
};

/// A state file holding more entries than this many times the table's
/// maximum is refused unread (its memory is bounded by the table's size).
pub const MAX_FILE_ENTRIES_PER_TABLE_ENTRY: u64 = 2;

/// The wall clock, in ns since the Unix epoch (0 if it is set before it).
pub fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `FILE` with `suffix` added to its name (`FILE.loaded`, ...).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What [`save`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub entries: usize,
    pub bytes: usize,
}

/// Why the table could not be saved.
#[derive(Debug, thiserror::Error)]
#[error("cannot save the connection table to {}: {what}: {source}", path.display())]
pub struct SaveError {
    pub path: PathBuf,
    pub what: &'static str,
    pub source: io::Error,
}

/// Saves the table's live entries (at `now`, the table's clock; `wall`:
/// the wall clock) to `path`, atomically; creates its directory if
/// needed.
pub fn save(path: &Path, ct: &Conntrack, now: Nanos, wall: u64) -> Result<Saved, SaveError> {
    let table = SavedTable {
        saved_at: wall,
        entries: ct.save(now),
    };
    let bytes = table.encode();
    let err = |what: &'static str| {
        move |source: io::Error| SaveError {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err("creating its directory"))?;
    let tmp = with_suffix(path, ".tmp");
    // Readable by the gateway's user alone: it lists who talks to whom.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .map_err(err("writing the temporary file"));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err("renaming the temporary file")(e));
    }
    // The rename itself lasts once the directory is synced (best effort:
    // the file is complete either way).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Saved {
        entries: table.entries.len(),
        bytes: bytes.len(),
    })
}

/// Why a state file was not restored.
#[derive(Debug)]
pub enum Refusal {
    Read(io::Error),
    Format(SavedError),
    /// More entries than [`MAX_FILE_ENTRIES_PER_TABLE_ENTRY`] times the
    /// table's maximum.
    TooMany {
        entries: u64,
        max: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Read(e) => write!(f, "cannot read it: {e}"),
            Refusal::Format(e) => write!(f, "{e}"),
            Refusal::TooMany { entries, max } => write!(
                f,
                "{entries} entries, more than {MAX_FILE_ENTRIES_PER_TABLE_ENTRY} times this \
                 table's maximum ({max})"
            ),
        }
    }
}

/// What [`load`] found and did.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: an empty table.
    Missing,
    Restored {
        /// Entries in the file.
        entries: usize,
        restored: Restored,
        /// Wall-clock time since it was saved.
        age: Duration,
        /// It was saved "in the future": the clock was set back meanwhile
        /// (no time was taken off the entries).
        clock_back: bool,
    },
    Refused(Refusal),
}

/// [`load`]'s outcome, and where the file went afterwards.
#[derive(Debug)]
pub struct LoadReport {
    pub path: PathBuf,
    pub loaded: Loaded,
    /// Where the file was moved (`FILE.loaded`, `FILE.refused`), or why it
    /// could not be.
    pub moved: Option<Result<PathBuf, io::Error>>,
}

impl LoadReport {
    /// Whether this is worth a warning (a refused file, or one that could
    /// not be moved aside).
    pub fn is_warning(&self) -> bool {
        matches!(self.loaded, Loaded::Refused(_)) || matches!(self.moved, Some(Err(_)))
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.loaded {
            Loaded::Missing => write!(
                f,
                "no saved connection table at {path}: starting with an empty table"
            )?,
            Loaded::Restored {
                entries,
                restored: r,
                age,
                clock_back,
            } => {
                write!(
                    f,
                    "restored {} of {entries} connections from {path} (saved {:.3} s ago",
                    r.restored,
                    age.as_secs_f64()
                )?;
                if *clock_back {
                    f.write_str(", by a clock ahead of this one")?;
                }
                f.write_str(")")?;
                let left = [
                    (r.expired, "had expired"),
                    (r.clashed, "clashed with another entry"),
                    (r.no_room, "did not fit the table"),
                ];
                for (n, why) in left.iter().filter(|(n, _)| *n > 0) {
                    write!(f, "; {n} {why}")?;
                }
            }
            Loaded::Refused(why) => write!(
                f,
                "{path}: saved connection table not restored: {why}; starting with an empty table"
            )?,
        }
        match &self.moved {
            None => Ok(()),
            Some(Ok(to)) => write!(f, "; the file is now {}", to.display()),
            Some(Err(e)) => write!(
                f,
                "; cannot move the file aside ({e}): remove it before the next start, or it \
                 is restored again"
            ),
        }
    }
}

/// Restores the table saved at `path` into `ct` (at `now`, the table's
/// clock; `wall`: the wall clock) and moves the file aside. Never fails:
/// what happened is in the report.
pub fn load(path: &Path, ct: &Conntrack, now: Nanos, wall: u64) -> LoadReport {
    let loaded = match read(path, ct.max_entries()) {
        Err(Refusal::Read(e)) if e.kind() == io::ErrorKind::NotFound => Loaded::Missing,
        Err(why) => Loaded::Refused(why),
        Ok(table) => {
            let clock_back = table.saved_at > wall;
            let elapsed = wall.saturating_sub(table.saved_at);
            Loaded::Restored {
                entries: table.entries.len(),
                restored: ct.restore(now, &table.entries, elapsed),
                age: Duration::from_nanos(elapsed),
                clock_back,
            }
        }
    };
    let moved = match &loaded {
        Loaded::Missing => None,
        Loaded::Restored { .. } => Some(move_aside(path, ".loaded")),
        Loaded::Refused(_) => Some(move_aside(path, ".refused")),
    };
    LoadReport {
        path: path.to_path_buf(),
        loaded,
        moved,
    }
}

/// Renames `path` to `path` + `suffix`; if that fails, removes it.
fn move_aside(path: &Path, suffix: &str) -> Result<PathBuf, io::Error> {
    let to = with_suffix(path, suffix);
    match std::fs::rename(path, &to) {
        Ok(()) => Ok(to),
        Err(e) => {
            std::fs::remove_file(path).map_err(|_| e)?;
            Ok(PathBuf::from("(removed)"))
        }
    }
}

/// Reads and checks a state file, its header before the rest (a file too
/// large for the table is not read).
fn read(path: &Path, max: usize) -> Result<SavedTable, Refusal> {
    let mut f = File::open(path).map_err(Refusal::Read)?;
    let len = f.metadata().map_err(Refusal::Read)?.len();
    let mut head = [0u8; HEADER_LEN];
    let got = read_up_to(&mut f, &mut head).map_err(Refusal::Read)?;
    let h = SavedHeader::parse(&head[..got]).map_err(Refusal::Format)?;
    let limit = (max as u64).saturating_mul(MAX_FILE_ENTRIES_PER_TABLE_ENTRY);
    if h.entries > limit {
        return Err(Refusal::TooMany {
            entries: h.entries,
            max,
        });
    }
    let expected = h.table_len().unwrap_or(u64::MAX);
    if len != expected {
        return Err(Refusal::Format(SavedError::Length {
            expected,
            found: len,
        }));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    bytes.extend_from_slice(&head);
    f.take(len - HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Read)?;
    SavedTable::decode(&bytes).map_err(Refusal::Format)
}

/// Reads until `buf` is full or the file ends; how much it read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;
    use xdpgw_dataplane::conntrack::{ConntrackConfig, PacketMeta, TcpSeg, TcpState, Track};
    use xdpgw_dataplane::flow::{Tuple, IPPROTO_TCP, IPPROTO_UDP};

    const SEC: Nanos = 1_000_000_000;

    fn table(max: usize) -> Conntrack {
        Conntrack::new(ConntrackConfig {
            max_entries: max,
            shards: 4,
            ..ConntrackConfig::for_memory(8 << 30)
        })
    }

    fn pkt(t: Tuple, tcp: Option<TcpSeg>) -> PacketMeta {
        PacketMeta {
            tuple: t,
            len: 60,
            tcp,
            icmp: None,
        }
    }

    fn seg(flags: u8, seq: u32, ack: u32) -> TcpSeg {
        TcpSeg {
            flags,
            seq,
            ack,
            window: 1000,
            payload_len: 0,
            wscale: None,
            sack_perm: false,
        }
    }

    fn tuple(sport: u16, proto: u8) -> Tuple {
        Tuple {
            src: Ipv4Addr::new(192, 168, 10, 2),
            dst: Ipv4Addr::new(203, 0, 113, 254),
            sport,
            dport: 80,
            proto,
        }
    }

    /// A masqueraded TCP connection through the handshake (ESTABLISHED,
    /// ASSURED) and an unreplied UDP flow.
    fn filled(now: Nanos) -> Conntrack {
        let ct = table(1024);
        let t = tuple(40000, IPPROTO_TCP);
        let Track::New(mut p) = ct.track(now, &pkt(t, Some(seg(0x02, 1, 0)))) else {
            panic!("a new connection");
        };
        p.reply = Tuple {
            src: t.dst,
            dst: Ipv4Addr::new(203, 0, 113, 1),
            sport: 80,
            dport: 61000,
            proto: IPPROTO_TCP,
        };
        p.status |= xdpgw_dataplane::conntrack::status::SRC_NAT;
        let reply = p.reply;
        ct.confirm(now, &p).expect("confirm");
        ct.track(now, &pkt(reply, Some(seg(0x12, 100, 2))));
        ct.track(now, &pkt(t, Some(seg(0x10, 2, 101))));
        let u = tuple(5353, IPPROTO_UDP);
        let Track::New(p) = ct.track(now, &pkt(u, None)) else {
            panic!("a new flow");
        };
        ct.confirm(now, &p).expect("confirm");
        ct
    }

    #[test]
    fn saved_then_loaded_once() {
        let dir = xdpgw_lab::WorkDir::new("state-file");
        let path = dir.path().join("sub/ct.state");
        let ct = filled(50 * SEC);
        let wall = 1_700_000_000 * SEC;
        let saved = save(&path, &ct, 50 * SEC, wall).expect("save");
        assert_eq!(saved.entries, 2);
        assert_eq!(saved.bytes, 40 + 2 * 144);
        assert!(!with_suffix(&path, ".tmp").exists());
        let mode = std::fs::metadata(&path)
            .expect("saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // 10 s later, in a process whose clock reads 1 s.
        let new = table(1024);
        let r = load(&path, &new, SEC, wall + 10 * SEC);
        match &r.loaded {
            Loaded::Restored {
                entries: 2,
                restored,
                age,
                clock_back: false,
            } => {
                assert_eq!(restored.restored, 2);
                assert_eq!(*age, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert!(!r.is_warning());
        let text = r.to_string();
        assert!(
            text.starts_with(&format!(
                "restored 2 of 2 connections from {} (saved 10.000 s ago); the file is now ",
                path.display()
            )),
            "{text}"
        );
        let l = new.listing(SEC);
        let tcp = l.iter().find(|s| s.orig.proto == IPPROTO_TCP).expect("tcp");
        assert_eq!(tcp.tcp_state, TcpState::Established);
        assert_eq!(tcp.reply.dport, 61000);
        assert_eq!(tcp.expires, SEC + 432_000 * SEC - 10 * SEC);
        let udp = l.iter().find(|s| s.orig.proto == IPPROTO_UDP).expect("udp");
        assert_eq!(udp.expires, SEC + 20 * SEC);
        assert!(!path.exists());
        assert!(with_suffix(&path, ".loaded").exists());

        // Not restored twice.
        let again = table(1024);
        let r = load(&path, &again, SEC, wall + 11 * SEC);
        assert!(matches!(r.loaded, Loaded::Missing), "{r:?}");
        assert!(r.moved.is_none());
        assert_eq!(
            r.to_string(),
            format!(
                "no saved connection table at {}: starting with an empty table",
                path.display()
            )
        );
        assert!(again.is_empty());
    }

    #[test]
    fn old_entries_expire_and_a_clock_set_back_takes_nothing_off() {
        let dir = xdpgw_lab::WorkDir::new("state-file");
        let path = dir.path().join("ct.state");
        let wall = 1_700_000_000 * SEC;
        save(&path, &filled(0), 0, wall).expect("save");
        // 40 s later the UDP flow's 30 s ran out.
        let new = table(1024);
        let r = load(&path, &new, 0, wall + 40 * SEC);
        assert!(
            r.to_string().contains("restored 1 of 2 connections")
                && r.to_string().contains("; 1 had expired"),
            "{r}"
        );
        assert_eq!(new.len(), 1);
        save(&path, &filled(0), 0, wall).expect("save");
        let new = table(1024);
        let r = load(&path, &new, 0, wall - 5 * SEC);
        assert!(
            matches!(
                r.loaded,
                Loaded::Restored {
                    clock_back: true,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(
            r.to_string().contains("by a clock ahead of this one"),
            "{r}"
        );
        let udp = new
            .listing(0)
            .into_iter()
            .find(|s| s.orig.proto == IPPROTO_UDP);
        assert_eq!(udp.map(|s| s.expires), Some(30 * SEC));
    }

    #[test]
    fn bad_files_are_refused_set_aside_and_the_table_starts_empty() {
        let dir = xdpgw_lab::WorkDir::new("state-file");
        let path = dir.path().join("ct.state");
        let wall = 1_700_000_000 * SEC;
        let good = {
            save(&path, &filled(0), 0, wall).expect("save");
            std::fs::read(&path).expect("read")
        };
        let mut corrupt = good.clone();
        corrupt[100] ^= 4;
        let mut v2 = good.clone();
        v2[8] = 2;
        let cases: [(&[u8], &str); 5] = [
            (&good[..good.len() - 10], "cut short: 318 bytes of 328"),
            (&good[..20], "cut short: 20 bytes of 40"),
            (&corrupt, "checksum mismatch"),
            (&v2, "saved in format version 2; this xdpgw reads version 1"),
            (
                b"something else entirely, longer than a header",
                "not a saved connection table",
            ),
        ];
        for (bytes, why) in cases {
            std::fs::write(&path, bytes).expect("write");
            let new = table(1024);
            let r = load(&path, &new, 0, wall);
            assert!(matches!(r.loaded, Loaded::Refused(_)), "{why}: {r:?}");
            assert!(r.is_warning());
            let text = r.to_string();
            assert!(
                text.starts_with(&format!(
                    "{}: saved connection table not restored: ",
                    path.display()
                )) && text.contains(why)
                    && text.contains("starting with an empty table; the file is now ")
                    && text.ends_with("ct.state.refused"),
                "{text}"
            );
            assert!(new.is_empty());
            assert!(!path.exists());
            assert_eq!(
                std::fs::read(with_suffix(&path, ".refused")).expect("kept"),
                bytes
            );
        }
        // More entries than twice the table holds: refused unread (the
        // header alone says so; the rest is not looked at).
        let mut many = good.clone();
        many[16..24].copy_from_slice(&3u64.to_le_bytes());
        std::fs::write(&path, &many).expect("write");
        let r = load(&path, &table(1), 0, wall);
        assert!(
            r.to_string()
                .contains("3 entries, more than 2 times this table's maximum (1)"),
            "{r}"
        );
    }

    #[test]
    fn a_smaller_table_restores_what_fits() {
        let dir = xdpgw_lab::WorkDir::new("state-file");
        let path = dir.path().join("ct.state");
        let wall = 1_700_000_000 * SEC;
        save(&path, &filled(0), 0, wall).expect("save");
        let tiny = table(1);
        let r = load(&path, &tiny, 0, wall);
        assert!(
            r.to_string().contains("restored 1 of 2 connections")
                && r.to_string().contains("; 1 did not fit the table"),
            "{r}"
        );
        // The assured TCP connection is the one kept.
        assert_eq!(
            tiny.listing(0).first().map(|s| s.orig.proto),
            Some(IPPROTO_TCP)
        );
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_it() {
        let dir = xdpgw_lab::WorkDir::new("state-file");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").expect("write");
        let path = blocker.join("ct.state");
        let e = save(&path, &filled(0), 0, 0).expect_err("not a directory");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot save the connection table to {}: creating its directory: ",
                path.display()
            )),
            "{e}"
        );
    }
}
