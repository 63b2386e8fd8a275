//! Running as a systemd service: messages on stderr with sd-daemon's
//! syslog-level prefixes when stderr is the journal, and readiness
//! notification (`sd_notify(3)`'s protocol) for `Type=notify`.
//!
//! - **Journal**: systemd sets `$JOURNAL_STREAM` to `DEVICE:INODE` of the
//!   stream it connects stdout/stderr to. When that is our stderr, each line
//!   written there starts with `<N>`, N the syslog level (0 emerg ... 7
//!   debug), which journald takes as the line's priority and removes
//!   (sd-daemon(3)). LOG lines get the rule's `--log-level`, as the kernel
//!   logs them. Anywhere else (a terminal, a pipe, a file) lines are
//!   unchanged.
//! - **Notification**: with `$NOTIFY_SOCKET` set (a path, or `@name` for
//!   an abstract socket), one datagram `READY=1` when every interface
//!   forwards, `RELOADING=1` when a SIGHUP reload starts and `READY=1`
//!   again when it is done (or refused), `STOPPING=1` when stopping; no
//!   libsystemd.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

/// Syslog levels, as `--log-level` numbers them.
pub mod level {
    /// Errors.
    pub const ERR: u8 = 3;
    /// Warnings.
    pub const WARNING: u8 = 4;
    /// Normal but significant.
    pub const NOTICE: u8 = 5;
    /// Informational.
    pub const INFO: u8 = 6;
}

/// Whether stderr is the journal's stream (checked once).
pub fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some(var) = var.to_str() else {
            return false;
        };
        stream_identity(&std::io::stderr())
            .is_some_and(|(dev, ino)| journal_stream_is(var, dev, ino))
    })
}

/// The device and inode of an open stream (fstat).
fn stream_identity(stream: &impl std::os::fd::AsFd) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let fd = stream.as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether `$JOURNAL_STREAM`'s `DEVICE:INODE` names the stream `dev`/`ino`.
fn journal_stream_is(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// `text` with every line prefixed by `<level>` when `journal` is true,
/// unchanged otherwise.
pub fn prefixed(text: &str, level: u8, journal: bool) -> String {
    if !journal {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 4);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push('<');
        out.push(char::from(b'0' + level.min(7)));
        out.push('>');
        out.push_str(line);
    }
    out
}

/// Writes `text` (one or more lines) to stderr at `level`.
pub fn log(level: u8, text: &str) {
    let line = prefixed(text, level, stderr_is_journal());
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Sends `state` (e.g. `READY=1`) to the service manager when
/// `$NOTIFY_SOCKET` is set; `Ok(false)` when it is not.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => notify_to(&path.to_string_lossy(), state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` as one datagram to the socket `path` (`@name`: the
/// abstract socket `name`).
pub fn notify_to(path: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_every_line_only_for_the_journal() {
        assert_eq!(
            prefixed("a: bad\nb: worse", level::ERR, true),
            "<3>a: bad\n<3>b: worse"
        );
        assert_eq!(
            prefixed("xdpgw drop: IN=lan0 OUT= MAC=", 6, true),
            "<6>xdpgw drop: IN=lan0 OUT= MAC="
        );
        assert_eq!(prefixed("a\nb", 4, false), "a\nb");
        assert_eq!(prefixed("x", 9, true), "<7>x");
    }

    #[test]
    fn journal_stream_must_name_our_stream() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let (dev, ino) = stream_identity(&a).expect("fstat");
        assert!(journal_stream_is(&format!("{dev}:{ino}"), dev, ino));
        let (dev_b, ino_b) = stream_identity(&b).expect("fstat");
        assert_ne!((dev, ino), (dev_b, ino_b));
        assert!(!journal_stream_is(&format!("{dev_b}:{ino_b}"), dev, ino));
        assert!(!journal_stream_is("", dev, ino));
        assert!(!journal_stream_is("garbage", dev, ino));
    }

    #[test]
    fn notifies_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("xdpgw-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        notify_to(&path.to_string_lossy(), "READY=1").expect("notify");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("xdpgw-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        notify_to(&format!("@{name}"), "STOPPING=1").expect("notify abstract");
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(notify_to("/nonexistent/xdpgw/notify.sock", "READY=1").is_err());
    }
}
