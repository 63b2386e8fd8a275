//! Processes the lab runs, their output read line by line as they print it
//! ([`Process`]), and the interrupt flag that ends every wait of the lab
//! ([`interrupt_on`]).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::precondition::find_program;

/// The flag that interrupts lab steps, set by [`interrupt_on`].
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The payload of the panic with which a waiting lab step stops once the
/// flag given to [`interrupt_on`] is set (by a signal handler, say).
/// Unwinding drops the lab, which removes it.
#[derive(Debug)]
pub struct Interrupted;

/// Makes every wait of the lab (for a line, for a process to exit) check
/// `flag` and, once it is set, panic with [`Interrupted`]. Only the first
/// call has an effect.
pub fn interrupt_on(flag: Arc<AtomicBool>) {
    let _ = INTERRUPT.set(flag);
}

/// Whether the flag given to [`interrupt_on`] is set.
pub fn interrupted() -> bool {
    // Relaxed: the flag carries no data; a late observation only delays the
    // stop by one poll.
    INTERRUPT.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Panics with [`Interrupted`] if the flag given to [`interrupt_on`] is set:
/// a checkpoint between lab steps.
pub fn check_interrupt() {
    if interrupted() {
        std::panic::panic_any(Interrupted);
    }
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the `kill` program;
/// true if it was delivered.
pub(crate) fn send_signal(pid: &str, signal: &str) -> bool {
    let kill = find_program("kill").unwrap_or_else(|| PathBuf::from("kill"));
    Command::new(kill)
        .args(["-s", signal, pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Which output stream of a [`Process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// What the reader threads of a [`Process`] report.
enum Event {
    Line(Stream, String),
    Closed(Stream),
}

/// A process started inside a namespace ([`crate::Netns::spawn`]), its stdout and
/// stderr read line by line as it prints them. Dropping the guard kills it.
#[derive(Debug)]
pub struct Process {
    what: String,
    child: Child,
    events: Receiver<Event>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_open: bool,
    stderr_open: bool,
    /// Lines of stdout (and stderr) already examined by the `wait_*` methods.
    stdout_seen: usize,
    stderr_seen: usize,
    status: Option<ExitStatus>,
}

/// What a process printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// The first line of stdout; panics, showing everything the process
    /// printed, if there is none.
    pub fn first_line(&self) -> &str {
        match self.stdout.first() {
            Some(l) => l,
            None => panic!(
                "`{}` printed nothing on stdout:\n{}",
                self.what,
                self.report()
            ),
        }
    }

    /// The command, its exit status and everything it printed.
    pub fn report(&self) -> String {
        report(&self.what, Some(self.status), &self.stdout, &self.stderr)
    }
}

fn report(what: &str, status: Option<ExitStatus>, stdout: &[String], stderr: &[String]) -> String {
    let mut s = format!("command: {what}\n");
    match status {
        Some(st) => {
            let _ = writeln!(s, "status: {st}");
        }
        None => s.push_str("status: still running\n"),
    }
    s.push_str("stdout:\n");
    for l in stdout {
        let _ = writeln!(s, "  {l}");
    }
    s.push_str("stderr:\n");
    for l in stderr {
        let _ = writeln!(s, "  {l}");
    }
    s
}

/// Reads `pipe` line by line into `tx` until it closes.
fn forward(pipe: impl Read + Send + 'static, stream: Stream, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Closed(stream));
    });
}

impl Process {
    /// Starts `cmd` (in this namespace) with stdout and stderr read line by
    /// line, stdin closed, in a process group of its own; the returned guard
    /// kills it when dropped.
    pub fn start(mut cmd: Command) -> Process {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Process::spawn(cmd, what)
    }

    pub(crate) fn spawn(mut cmd: Command, what: String) -> Process {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));
        let (tx, events) = mpsc::channel();
        let out = child.stdout.take().expect("stdout was piped");
        let err = child.stderr.take().expect("stderr was piped");
        forward(out, Stream::Stdout, tx.clone());
        forward(err, Stream::Stderr, tx);
        Process {
            what,
            child,
            events,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_open: true,
            stderr_open: true,
            stdout_seen: 0,
            stderr_seen: 0,
            status: None,
        }
    }

    /// The process id (of the command itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Takes one event from the reader threads, waiting at most `wait`;
    /// false if there was none.
    fn pump(&mut self, wait: Duration) -> bool {
        match self.events.recv_timeout(wait) {
            Ok(Event::Line(Stream::Stdout, l)) => self.stdout.push(l),
            Ok(Event::Line(Stream::Stderr, l)) => self.stderr.push(l),
            Ok(Event::Closed(Stream::Stdout)) => self.stdout_open = false,
            Ok(Event::Closed(Stream::Stderr)) => self.stderr_open = false,
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_open = false;
                self.stderr_open = false;
                return false;
            }
        }
        true
    }

    /// Everything printed on stdout so far (without waiting).
    pub fn lines(&mut self) -> &[String] {
        while self.pump(Duration::ZERO) {}
        &self.stdout
    }

    /// Waits at most `timeout` for the next stdout line for which `pred`
    /// holds (lines examined by earlier waits are not examined again), and returns it.
    /// Panics, showing everything the process printed, on timeout or when
    /// the process closes its stdout first; `what` names the line in the
    /// message.
    pub fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_on(Stream::Stdout, what, timeout, &pred)
    }

    /// Like [`Process::wait_line`], but None (instead of a panic) when no
    /// such line comes within `timeout` or stdout closes first.
    pub fn try_wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        self.find_line(Stream::Stdout, timeout, &pred)
    }

    /// [`Process::wait_line`] for stderr.
    pub fn wait_stderr_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_on(Stream::Stderr, what, timeout, &pred)
    }

    fn wait_on(
        &mut self,
        stream: Stream,
        what: &str,
        timeout: Duration,
        pred: &dyn Fn(&str) -> bool,
    ) -> String {
        if let Some(line) = self.find_line(stream, timeout, pred) {
            return line;
        }
        let open = match stream {
            Stream::Stdout => self.stdout_open,
            Stream::Stderr => self.stderr_open,
        };
        if open {
            panic!(
                "`{}` printed no {what} within {timeout:?}:\n{}",
                self.what,
                self.report()
            );
        }
        self.wait_exit(Duration::from_secs(1), false);
        panic!(
            "`{}` closed its {stream:?} before printing {what}:\n{}",
            self.what,
            self.report()
        );
    }

    /// The next line of `stream` (after those examined before) for which
    /// `pred` holds, waiting at most `timeout`; None on timeout or when the
    /// stream closes first.
    fn find_line(
        &mut self,
        stream: Stream,
        timeout: Duration,
        pred: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (lines, seen, open) = match stream {
                Stream::Stdout => (&self.stdout, &mut self.stdout_seen, self.stdout_open),
                Stream::Stderr => (&self.stderr, &mut self.stderr_seen, self.stderr_open),
            };
            if let Some(i) = lines[*seen..].iter().position(|l| pred(l)) {
                let at = *seen + i;
                *seen = at + 1;
                return Some(lines[at].clone());
            }
            *seen = lines.len();
            if !open {
                return None;
            }
            check_interrupt();
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.pump((deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// The command, its state and everything it printed so far.
    pub fn report(&self) -> String {
        report(&self.what, self.status, &self.stdout, &self.stderr)
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) if the process still runs.
    pub fn signal(&mut self, signal: &str) {
        // Only an unreaped child is signalled: its pid cannot have been
        // reused by another process.
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            send_signal(&self.child.id().to_string(), signal);
        }
    }

    /// Waits at most `timeout` for the process to exit on its own; panics,
    /// after killing it, if it does not.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        if !self.wait_exit(timeout, true) {
            let _ = self.child.kill();
            self.reap(Duration::from_secs(5));
            panic!(
                "`{}` did not finish within {timeout:?} (killed):\n{}",
                self.what,
                self.report()
            );
        }
        self.finish()
    }

    /// Sends SIGTERM and waits at most `timeout` for the process to exit,
    /// then kills it; returns what it printed and how it ended (killed by
    /// signal 9 if it did not stop in time).
    pub fn stop(mut self, timeout: Duration) -> Finished {
        self.terminate(timeout);
        self.finish()
    }

    /// Kills the process (SIGKILL) and returns everything it printed.
    pub fn kill(mut self) -> Finished {
        if self.status.is_none() {
            let _ = self.child.kill();
        }
        self.reap(Duration::from_secs(5));
        self.finish()
    }

    fn terminate(&mut self, timeout: Duration) {
        self.signal("TERM");
        if !self.wait_exit(timeout, false) {
            let _ = self.child.kill();
            self.reap(Duration::from_secs(5));
        }
    }

    /// Polls for the exit of the child until `timeout`; true once it exited.
    fn wait_exit(&mut self, timeout: Duration, interruptible: bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status.is_some() {
                return true;
            }
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.status = Some(st);
                    return true;
                }
                Ok(None) => {}
                Err(e) => panic!("cannot wait for `{}`: {e}", self.what),
            }
            if interruptible {
                check_interrupt();
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Keep reading its output meanwhile: a child blocked on a full
            // pipe would never exit.
            self.pump((deadline - now).min(Duration::from_millis(10)));
        }
    }

    /// Waits (bounded) for a killed child to be reaped.
    fn reap(&mut self, timeout: Duration) {
        if !self.wait_exit(timeout, false) {
            // Cannot happen after SIGKILL unless the kernel is stuck; do not
            // hang forever on it.
            eprintln!("`{}` did not exit after SIGKILL", self.what);
        }
    }

    /// Collects the rest of the output of an exited child.
    fn finish(&mut self) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(5);
        while (self.stdout_open || self.stderr_open) && Instant::now() < deadline {
            self.pump(Duration::from_millis(100));
        }
        let status = self.status.expect("finish() only after the child exited");
        Finished {
            what: self.what.clone(),
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_lines_and_exit_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; echo three; exit 4"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Process::spawn(cmd, "sh -c ...".into());
        let l = p.wait_line("three", Duration::from_secs(10), |l| l.starts_with("th"));
        assert_eq!(l, "three");
        let done = p.wait(Duration::from_secs(10));
        assert_eq!(done.status.code(), Some(4));
        assert_eq!(done.stdout, ["one", "three"]);
        assert_eq!(done.stderr, ["two"]);
        assert_eq!(done.first_line(), "one");
    }

    #[test]
    fn process_is_stopped_with_sigterm() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Process::spawn(cmd, "sh -c ...".into());
        p.wait_line("started", Duration::from_secs(10), |l| l == "started");
        let done = p.stop(Duration::from_secs(10));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(done.status.signal(), Some(15), "{}", done.report());
    }

    #[test]
    #[should_panic(expected = "closed its Stdout before printing")]
    fn waiting_for_a_line_that_never_comes_panics_at_eof() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo nope"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Process::spawn(cmd, "sh -c ...".into());
        p.wait_line("ready", Duration::from_secs(10), |l| l == "ready");
    }
}
