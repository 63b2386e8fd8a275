//! The namespace lab: network namespaces, veth pairs, addresses, routes and
//! processes run inside them; everything is removed on drop, also while
//! unwinding from a panic.
//!
//! Commands run in a namespace through `ip netns exec` subprocesses: this
//! crate forbids `unsafe`, so it never calls `setns` itself, and the calling
//! thread never changes namespace.
//!
//! [`Lab::gateway_lab`] builds the lab that `xdpgw demo` and the end-to-end
//! tests (`vm-tests/tests/e2e_*.rs`) use:
//!
//! ```text
//!  client   eth0 192.168.10.2/24 ─┐
//!                                 ├─ lan: bridge br0 ─── lan0 ┐
//!  client2  eth0 192.168.10.3/24 ─┘                           gateway (Linux or xdpgw)
//!                                 server eth0 203.0.113.254/24 ─── wan0 ┘
//!                                        lo   198.51.100.20/32 (a "far" host behind it)
//! ```
//!
//! The clients' default route is 192.168.10.1 (the gateway's lan0); the
//! server is the upstream router the configuration's default route points
//! at, with a route back to 192.168.10.0/24 via 203.0.113.1 so that inbound
//! attempts and un-NATed replies really reach the gateway.
//!
//! Every veth pair is created with both ends directly in their namespaces
//! (`ip link add A type veth peer name B netns NS`, run inside the first
//! namespace), so nothing is ever created in the root namespace: names only
//! have to be unique inside their namespace, labs can run in parallel, and
//! an interrupted test cannot leave a veth behind. This is also how the
//! gateway's ends get exactly the names `lan0` and `wan0` that the
//! configuration and the rules use.
//!
//! Errors: every step panics with the command, its exit status and its
//! output instead of returning a `Result`. A lab step that fails is a broken
//! precondition of the test or demo that runs it, a panic keeps the
//! backtrace of the step that failed, and unwinding drops the guards, which
//! remove the lab. `xdpgw demo` catches the panic and reports it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Config;

/// The first client's address (its default route is [`GATEWAY_LAN`]).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
/// The second client's address, on the same LAN as [`CLIENT`].
pub const CLIENT2: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 3);
/// The gateway's address on lan0.
pub const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
/// The gateway's address on wan0: what MASQUERADE gives office traffic.
pub const GATEWAY_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The server: the upstream router the gateway's default route points at.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// A "far" Internet host: an address on the server's loopback.
pub const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// The interface name of the clients and the server.
pub const HOST_IF: &str = "eth0";

/// How long the gateway may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a lab server may take to print `listening`.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped process may take to exit before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers the namespaces and work directories of this process so that
/// names stay unique.
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_number() -> u32 {
    // Relaxed: the counter only has to hand out distinct numbers.
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

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

/// An RAII guard for a Linux network namespace.
///
/// [`Netns::new`] runs `ip netns add`; dropping the guard kills what still
/// runs inside and runs `ip netns del`, also while unwinding from a panic.
/// Commands run in the namespace through `ip netns exec`, so the guard
/// never changes the namespace of the calling thread.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `xg-<tag>-<pid>-<counter>`.
    ///
    /// Panics if `ip netns add` fails.
    pub fn new(tag: &str) -> Netns {
        let name = format!("xg-{tag}-{}-{}", std::process::id(), next_number());
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        if !out.status.success() {
            panic!(
                "`ip netns add {name}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Netns { name }
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec NAME args...` and returns its output, whatever the
    /// exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Like [`Netns::exec`], but panics with the command, its exit status and
    /// its stderr unless it succeeds; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        self.check(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Netns::exec`], with `stdin` written to the command's standard
    /// input.
    pub fn exec_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{}`: {e}", self.display(args)));
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // Write from another thread so that a command that fills its stdout
        // before reading all its input cannot deadlock us.
        let input = stdin.to_owned();
        let writer = std::thread::spawn(move || {
            // A command may exit without reading its input: ignore EPIPE.
            let _ = pipe.write_all(input.as_bytes());
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for `{}`: {e}", self.display(args)));
        writer.join().expect("stdin writer panicked");
        out
    }

    /// Like [`Netns::exec_stdin`], but panics unless the command succeeds;
    /// returns stdout.
    pub fn exec_stdin_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.exec_stdin(args, stdin);
        self.check(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `args` inside the namespace with stdout and stderr read line by
    /// line; the returned guard kills it when dropped.
    pub fn spawn(&self, args: &[&str]) -> Process {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Process::spawn(cmd, self.display(args))
    }

    /// Runs `args` inside the namespace to its end, at most `timeout` (then
    /// it is killed and this panics); returns what it printed, whatever its
    /// exit status.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Finished {
        self.spawn(args).wait(timeout)
    }

    /// Sets a sysctl inside the namespace (`sysctl -qw key=value`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        // A process group of its own: a Ctrl-C at the terminal reaches only
        // the program that runs the lab, which then stops what it started.
        cmd.process_group(0);
        cmd
    }

    fn display(&self, args: &[&str]) -> String {
        format!("ip netns exec {} {}", self.name, args.join(" "))
    }

    fn check(&self, args: &[&str], out: &Output) {
        if !out.status.success() {
            panic!(
                "`{}` failed ({}):\nstderr: {}\nstdout: {}",
                self.display(args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
    }

    /// Kills whatever still runs inside (a namespace with processes in it
    /// outlives `ip netns del`, interfaces and all).
    fn kill_leftovers(&self) {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.parse::<u32>().is_ok() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                eprintln!(
                    "netns {}: killing leftover process {pid} ({})",
                    self.name,
                    comm.trim()
                );
                send_signal(pid, "KILL");
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_leftovers();
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let failed = match &out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            // Panicking in drop while unwinding would abort: only report.
            if std::thread::panicking() {
                eprintln!("`ip netns del {}` failed: {why}", self.name);
            } else {
                panic!("`ip netns del {}` failed: {why}", self.name);
            }
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Sends `signal` (a name such as `TERM`) to `pid` with the `kill` program;
/// true if it was delivered.
fn send_signal(pid: &str, signal: &str) -> bool {
    let kill = find_program("kill").unwrap_or_else(|| PathBuf::from("kill"));
    Command::new(kill)
        .args(["-s", signal, pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds an executable in `PATH`, or in the sbin directories that a non-root
/// `PATH` often lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The effective uid of this process, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
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

/// A process started inside a namespace ([`Netns::spawn`]), its stdout and
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

    fn spawn(mut cmd: Command, what: String) -> Process {
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

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new(tag: &str) -> WorkDir {
        let path = std::env::temp_dir().join(format!(
            "xdpgw-{tag}-{}-{}",
            std::process::id(),
            next_number()
        ));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        WorkDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// What forwards between the lab's LAN and WAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The Linux kernel: the configuration's addresses and routes on lan0
    /// and wan0, IP forwarding on, its rules loaded with `iptables-restore`.
    /// The oracle.
    Linux,
    /// `xdpgw run --config ...`: lan0 and wan0 up without any kernel IP
    /// configuration, xdpgw answers ARP and ping for its addresses itself.
    Xdpgw,
}

/// How to build a [`Lab::gateway_lab`].
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub backend: Backend,
    /// The appliance configuration (e.g. conf/gateway.toml); its interfaces
    /// must be lan0 192.168.10.1/24 and wan0 203.0.113.1/24.
    pub config: PathBuf,
    /// The xdpgw binary: it runs the gateway (Backend::Xdpgw) and the lab's
    /// traffic tools (`xdpgw lab-tool`).
    pub xdpgw: PathBuf,
    /// More arguments for `xdpgw run` (Backend::Xdpgw), e.g.
    /// `--report-on-exit`.
    pub run_args: Vec<String>,
    /// RX/TX queues of the gateway's veths (lan0, wan0) and their peers
    /// (1 unless a test wants several workers).
    pub queues: u32,
}

/// The gateway lab: two clients on a LAN, the gateway, a server; see the
/// module documentation for the picture.
///
/// Dropping it stops the gateway (Backend::Xdpgw: SIGTERM, then it must
/// exit with status 0, or the drop panics unless already unwinding), kills
/// whatever still runs in its namespaces and deletes them.
#[derive(Debug)]
pub struct Lab {
    backend: Backend,
    xdpgw: PathBuf,
    /// The running `xdpgw run` (Backend::Xdpgw).
    gateway_process: Option<Process>,
    /// Its extra arguments, for a restart.
    run_args: Vec<String>,
    /// The lab's copy of the configuration (Backend::Xdpgw).
    workdir: Option<WorkDir>,
    /// The configuration the gateway runs (Backend::Xdpgw: the lab's copy).
    config: PathBuf,
    // The namespaces come last: fields drop in order, processes first.
    client: Netns,
    client2: Netns,
    lan: Netns,
    gateway: Netns,
    server: Netns,
}

/// A namespace for the lab, with IPv6 off (no router solicitations, DAD or
/// MLD reports in captures or in front of the gateway) and loopback up.
pub fn host_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    // Without IPv6 in the kernel these keys do not exist: ignore failures.
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns
}

/// Creates a veth pair with `a_name` in `a` and `b_name` in `b` (both ends
/// made in their namespaces directly, never in the root namespace) and sets
/// both up.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) {
    veth_with_queues(a, a_name, b, b_name, 1);
}

/// [`veth`] with `queues` RX and TX queues on both ends.
pub fn veth_with_queues(a: &Netns, a_name: &str, b: &Netns, b_name: &str, queues: u32) {
    for n in [a_name, b_name] {
        assert!(
            !n.is_empty() && n.len() <= 15,
            "interface name '{n}' must be 1 to 15 characters"
        );
    }
    let q = queues.max(1).to_string();
    a.exec_ok(&[
        "ip",
        "link",
        "add",
        a_name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        b.name(),
    ]);
    a.exec_ok(&["ip", "link", "set", a_name, "up"]);
    b.exec_ok(&["ip", "link", "set", b_name, "up"]);
}

/// Checks that `config` is the one the lab's hosts are addressed for.
fn check_config_fits(config: &Config) {
    let want = [("lan0", GATEWAY_LAN), ("wan0", GATEWAY_WAN)];
    for (name, addr) in want {
        let found = config.interfaces.iter().find(|i| i.name == name);
        match found {
            Some(i) if i.addr == addr && i.prefix == 24 => {}
            _ => panic!(
                "{}: the lab needs interface {name} with address {addr}/24 (its clients are \
                 192.168.10.2-3/24 and its server 203.0.113.254/24); the configuration has {:?}",
                config.path.display(),
                config.interfaces
            ),
        }
    }
}

impl Lab {
    /// Builds the gateway lab with `cfg.backend` forwarding; panics (after
    /// removing whatever it had built) if any step fails or the gateway
    /// does not get ready within [`READY_TIMEOUT`].
    pub fn gateway_lab(cfg: &LabConfig) -> Lab {
        let config = Config::load(&cfg.config).unwrap_or_else(|e| panic!("{e}"));
        check_config_fits(&config);
        let xdpgw = std::fs::canonicalize(&cfg.xdpgw)
            .unwrap_or_else(|e| panic!("the xdpgw binary {}: {e}", cfg.xdpgw.display()));
        let mut lab = Lab {
            backend: cfg.backend,
            xdpgw,
            gateway_process: None,
            run_args: cfg.run_args.clone(),
            workdir: None,
            config: cfg.config.clone(),
            client: host_netns("client"),
            client2: host_netns("client2"),
            lan: host_netns("lan"),
            gateway: host_netns("gw"),
            server: host_netns("server"),
        };
        lab.wire(cfg.queues);
        match cfg.backend {
            Backend::Linux => lab.start_linux(&config),
            Backend::Xdpgw => lab.start_xdpgw(&config, &cfg.run_args),
        }
        lab
    }

    /// Cables and addresses everything but the gateway's own configuration.
    fn wire(&self, queues: u32) {
        let lan = &self.lan;
        lan.exec_ok(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        lan.exec_ok(&["ip", "link", "set", "br0", "up"]);
        for (port, host, addr) in [
            ("to-client", &self.client, CLIENT),
            ("to-client2", &self.client2, CLIENT2),
        ] {
            veth(lan, port, host, HOST_IF);
            lan.exec_ok(&["ip", "link", "set", port, "master", "br0"]);
            host.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", HOST_IF]);
            host.exec_ok(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &GATEWAY_LAN.to_string(),
            ]);
        }
        veth_with_queues(lan, "to-gw", &self.gateway, "lan0", queues);
        lan.exec_ok(&["ip", "link", "set", "to-gw", "master", "br0"]);

        let server = &self.server;
        veth_with_queues(server, HOST_IF, &self.gateway, "wan0", queues);
        server.exec_ok(&["ip", "addr", "add", &format!("{SERVER}/24"), "dev", HOST_IF]);
        server.exec_ok(&["ip", "addr", "add", &format!("{FAR}/32"), "dev", "lo"]);
        server.exec_ok(&[
            "ip",
            "route",
            "add",
            "192.168.10.0/24",
            "via",
            &GATEWAY_WAN.to_string(),
        ]);

        // Checksums complete in software on the hosts: with offload on, TCP
        // and UDP leave a veth with a partial checksum that only the kernel
        // at the other end would complete, and AF_XDP never does.
        for host in [&self.client, &self.client2, &self.server] {
            host.exec_ok(&["ethtool", "-K", HOST_IF, "tx", "off"]);
        }
    }

    fn start_linux(&self, config: &Config) {
        let gw = &self.gateway;
        for i in &config.interfaces {
            gw.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/{}", i.addr, i.prefix),
                "dev",
                &i.name,
            ]);
        }
        gw.sysctl("net.ipv4.ip_forward", "1");
        for (to, via) in &config.routes {
            let prefix = to
                .prefix_len()
                .unwrap_or_else(|| panic!("route to {to:?}: not a prefix"));
            gw.exec_ok(&[
                "ip",
                "route",
                "add",
                &format!("{}/{prefix}", to.addr()),
                "via",
                &via.to_string(),
            ]);
        }
        gw.exec_stdin_ok(&["iptables-restore"], &restore_text(&config.rules));
    }

    fn start_xdpgw(&mut self, config: &Config, run_args: &[String]) {
        let workdir = WorkDir::new("lab");
        let path = workdir.path.join("gateway.toml");
        std::fs::write(&path, lab_config_text(config, &workdir.path))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self.config = path.clone();
        self.workdir = Some(workdir);
        self.run_args = run_args.to_vec();
        let xdpgw = self.xdpgw.clone();
        self.spawn_gateway(&xdpgw);
    }

    /// Starts `binary run --config` (the lab's copy) with the lab's run
    /// arguments and waits for its `ready` line.
    fn spawn_gateway(&mut self, binary: &Path) {
        let xdpgw = binary.display().to_string();
        let config_arg = self.config.display().to_string();
        let mut args = vec![xdpgw.as_str(), "run", "--config", &config_arg];
        args.extend(self.run_args.iter().map(String::as_str));
        let mut gw = self.gateway.spawn(&args);
        gw.wait_line("`ready` line", READY_TIMEOUT, |l| l.starts_with("ready"));
        self.gateway_process = Some(gw);
    }

    /// Restarts `xdpgw run` (Backend::Xdpgw) as `systemctl restart` does:
    /// SIGTERM, and once it exited (with status 0, or this panics), `binary`
    /// (another build, say) starts with the same configuration file, as it
    /// is now, and arguments; returns once it printed `ready`.
    pub fn restart_gateway(&mut self, binary: &Path) -> Restart {
        let began = Instant::now();
        let stopped = self
            .stop_gateway()
            .expect("a restart needs a running `xdpgw run` (Backend::Xdpgw)");
        let stop = began.elapsed();
        self.spawn_gateway(binary);
        Restart {
            stopped,
            stop,
            start: began.elapsed() - stop,
        }
    }

    /// Which backend forwards.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configuration the gateway runs: for Backend::Xdpgw the lab's
    /// copy (its own control socket, the rules file by absolute path).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The client 192.168.10.2.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The second client 192.168.10.3, on the same LAN.
    pub fn client2(&self) -> &Netns {
        &self.client2
    }

    /// The LAN switch (bridge br0).
    pub fn lan(&self) -> &Netns {
        &self.lan
    }

    /// The gateway's namespace (lan0, wan0).
    pub fn gateway(&self) -> &Netns {
        &self.gateway
    }

    /// The server 203.0.113.254 (and 198.51.100.20 on its loopback).
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// Starts `xdpgw lab-tool args...` in `ns`.
    pub fn tool(&self, ns: &Netns, args: &[&str]) -> Process {
        let xdpgw = self.xdpgw.display().to_string();
        let mut all = vec![xdpgw.as_str(), "lab-tool"];
        all.extend_from_slice(args);
        ns.spawn(&all)
    }

    /// Starts a lab-tool server (`tcp-serve`, `udp-echo`) in `ns` and waits
    /// for its `listening` line.
    pub fn serve(&self, ns: &Netns, args: &[&str]) -> Process {
        let mut p = self.tool(ns, args);
        p.wait_line("`listening` line", LISTEN_TIMEOUT, |l| {
            l.starts_with("listening")
        });
        p
    }

    /// Runs a lab-tool client in `ns` to its end (at most `timeout`) and
    /// returns its result: the first line it printed.
    pub fn tool_result(&self, ns: &Netns, args: &[&str], timeout: Duration) -> String {
        self.tool(ns, args).wait(timeout).first_line().to_owned()
    }

    /// Starts `tcpdump -n -v` on `iface` in `ns` that exits after `count`
    /// packets matching `filter`, and waits until it captures.
    pub fn capture(&self, ns: &Netns, iface: &str, count: usize, filter: &str) -> Process {
        let count = count.to_string();
        let mut p = ns.spawn(&[
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-v",
            "-l",
            "--immediate-mode",
            "-c",
            &count,
            filter,
        ]);
        p.wait_stderr_line("`listening on` line", LISTEN_TIMEOUT, |l| {
            l.starts_with("tcpdump: listening on")
        });
        p
    }

    /// Runs `ping -n -c COUNT -i 0.2 -W 2 [extra...] DST` in `ns` (bounded
    /// by `-w`) and parses what it printed.
    pub fn ping(&self, ns: &Netns, dst: Ipv4Addr, count: u32, extra: &[&str]) -> Ping {
        let count_arg = count.to_string();
        let deadline = (count + 5).to_string();
        let dst = dst.to_string();
        let mut args = vec!["ping", "-n", "-c", &count_arg, "-i", "0.2", "-W", "2"];
        args.extend_from_slice(&["-w", &deadline]);
        args.extend_from_slice(extra);
        args.push(&dst);
        let done = ns.run(&args, Duration::from_secs(u64::from(count) + 30));
        let ping = parse_ping(&done.stdout);
        if ping.transmitted == 0 {
            panic!("ping sent nothing:\n{}", done.report());
        }
        ping
    }

    /// What `xdpgw run` printed on stdout so far, from its `ready` line on
    /// (nothing for Backend::Linux).
    pub fn gateway_output(&mut self) -> Vec<String> {
        match &mut self.gateway_process {
            Some(p) => p.lines().to_vec(),
            None => Vec::new(),
        }
    }

    /// Sends SIGHUP to `xdpgw run` (Backend::Xdpgw), which reloads its
    /// rules file, and returns the line it logs when done (`xdpgw: reloaded
    /// ...` or `xdpgw: reload failed; ...`), waiting at most `timeout`.
    /// Panics for Backend::Linux.
    pub fn sighup_gateway(&mut self, timeout: Duration) -> String {
        let p = self
            .gateway_process
            .as_mut()
            .expect("SIGHUP needs a running `xdpgw run` (Backend::Xdpgw)");
        p.signal("HUP");
        p.wait_stderr_line("reload message", timeout, |l| {
            l.contains("xdpgw: reloaded ") || l.contains("xdpgw: reload failed")
        })
    }

    /// Waits at most `timeout` for the next line `xdpgw run` (Backend::Xdpgw)
    /// prints on stderr for which `pred` holds (its log: what it restored,
    /// reloaded, ...), and returns it; panics if none comes.
    pub fn wait_gateway_stderr(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.gateway_process
            .as_mut()
            .expect("a running `xdpgw run` (Backend::Xdpgw)")
            .wait_stderr_line(what, timeout, pred)
    }

    /// Stops `xdpgw run` (SIGTERM) and returns what it printed; panics
    /// unless it exits with status 0 within [`STOP_TIMEOUT`]. None for
    /// Backend::Linux, or when already stopped.
    pub fn stop_gateway(&mut self) -> Option<Finished> {
        let p = self.gateway_process.take()?;
        let done = p.stop(STOP_TIMEOUT);
        if !done.status.success() {
            panic!(
                "the gateway did not exit with status 0 on SIGTERM:\n{}",
                done.report()
            );
        }
        Some(done)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(p) = self.gateway_process.take() {
                let done = p.stop(STOP_TIMEOUT);
                if !done.status.success() {
                    eprintln!(
                        "the gateway did not exit with status 0 on SIGTERM:\n{}",
                        done.report()
                    );
                }
            }
        } else {
            self.stop_gateway();
        }
    }
}

/// What [`Lab::restart_gateway`] did.
#[derive(Debug)]
pub struct Restart {
    /// The old process, as it ended.
    pub stopped: Finished,
    /// From SIGTERM until it exited.
    pub stop: Duration,
    /// From then until the new one printed `ready`.
    pub start: Duration,
}

/// The rules file as `iptables-restore` input: an iptables-save file as it
/// is; a script of `iptables` lines in xdpgw's canonical save form (which
/// is Linux's).
fn restore_text(rules: &Path) -> String {
    let text = std::fs::read_to_string(rules)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", rules.display()));
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.starts_with('*')) {
        return text;
    }
    let set = crate::load_rules(rules).unwrap_or_else(|e| panic!("{e}"));
    crate::save::render_with(&set, false)
}

/// The lab's copy of the configuration: the rules file by absolute path and
/// a control socket inside the lab's work directory, so that labs running
/// in parallel do not share one.
fn lab_config_text(config: &Config, workdir: &Path) -> String {
    let text = std::fs::read_to_string(&config.path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", config.path.display()));
    let mut table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", config.path.display()));
    let rules = std::fs::canonicalize(&config.rules)
        .unwrap_or_else(|e| panic!("the rules file {}: {e}", config.rules.display()));
    table.insert(
        "rules".into(),
        toml::Value::String(rules.display().to_string()),
    );
    table.insert(
        "control_socket".into(),
        toml::Value::String(workdir.join("xdpgw.sock").display().to_string()),
    );
    toml::to_string(&table).expect("a TOML table serializes")
}

/// What `ping -n` printed: replies, errors and its summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ping {
    pub transmitted: u32,
    pub received: u32,
    /// Each echo reply: who sent it and its TTL.
    pub replies: Vec<(Ipv4Addr, u8)>,
    /// Each ICMP error reported: who sent it and ping's text for it, e.g.
    /// `Time to live exceeded`.
    pub errors: Vec<(Ipv4Addr, String)>,
}

/// Parses the output of `ping -n` (iputils).
pub fn parse_ping(lines: &[String]) -> Ping {
    let mut p = Ping::default();
    for line in lines {
        if let Some((_, rest)) = line.split_once(" bytes from ") {
            // 64 bytes from 203.0.113.254: icmp_seq=1 ttl=63 time=0.1 ms
            let Some((from, fields)) = rest.split_once(": ") else {
                continue;
            };
            let ttl = fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix("ttl="))
                .and_then(|t| t.parse().ok());
            if let (Ok(from), Some(ttl)) = (from.parse(), ttl) {
                p.replies.push((from, ttl));
            }
        } else if let Some(rest) = line.strip_prefix("From ") {
            // From 192.168.10.1 icmp_seq=1 Time to live exceeded
            let mut words = rest.splitn(3, ' ');
            let (Some(from), Some(_seq), Some(message)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            if let Ok(from) = from.trim_end_matches(':').parse() {
                p.errors.push((from, message.to_owned()));
            }
        } else if line.contains(" packets transmitted, ") {
            // 3 packets transmitted, 3 received, 0% packet loss, time 402ms
            let mut fields = line.split(", ");
            let num = |f: Option<&str>| {
                f.and_then(|f| f.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            p.transmitted = num(fields.next());
            p.received = num(fields.next());
        }
    }
    p
}

/// One packet from `tcpdump -n -v` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    pub src: Ipv4Addr,
    pub src_port: Option<u16>,
    pub dst: Ipv4Addr,
    pub dst_port: Option<u16>,
    /// The whole TOS byte (DSCP << 2 | ECN).
    pub tos: u8,
    pub ttl: u8,
    /// The rest of the packet's second line (flags, lengths, ...).
    pub summary: String,
}

/// Parses the IPv4 packets of `tcpdump -n -v` output: a header line
/// `... IP (tos 0xb8, ttl 63, ...)` followed by a line
/// `SRC[.PORT] > DST[.PORT]: ...`. Other lines are skipped.
pub fn parse_tcpdump_verbose(lines: &[String]) -> Vec<CapturedPacket> {
    let mut packets = Vec::new();
    let mut header: Option<(u8, u8)> = None;
    for line in lines {
        if let Some(rest) = line.split_once(" IP (").map(|(_, r)| r) {
            header = parse_ip_header(rest);
            continue;
        }
        let Some((tos, ttl)) = header.take() else {
            continue;
        };
        let Some((endpoints, summary)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some((src, dst)) = endpoints.split_once(" > ") else {
            continue;
        };
        let (Some((src, src_port)), Some((dst, dst_port))) = (endpoint(src), endpoint(dst)) else {
            continue;
        };
        packets.push(CapturedPacket {
            src,
            src_port,
            dst,
            dst_port,
            tos,
            ttl,
            summary: summary.to_owned(),
        });
    }
    packets
}

/// `tos 0xb8, ttl 63, id 0, ...` → (0xb8, 63).
fn parse_ip_header(s: &str) -> Option<(u8, u8)> {
    let mut tos = None;
    let mut ttl = None;
    for field in s.split(", ") {
        if let Some(v) = field.strip_prefix("tos 0x") {
            let hex: String = v.chars().take_while(char::is_ascii_hexdigit).collect();
            tos = u8::from_str_radix(&hex, 16).ok();
        } else if let Some(v) = field.strip_prefix("ttl ") {
            ttl = v.parse().ok();
        }
    }
    Some((tos?, ttl?))
}

/// `192.168.10.2.40000` → (192.168.10.2, Some(40000)); `192.168.10.2` →
/// (192.168.10.2, None).
fn endpoint(s: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    if let Ok(ip) = s.parse() {
        return Some((ip, None));
    }
    let (ip, port) = s.rsplit_once('.')?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn parses_tcpdump_verbose_tcp_and_icmp() {
        let out = lines(
            "12:00:00.000001 IP (tos 0xb8, ttl 63, id 0, offset 0, flags [DF], proto TCP (6), length 60)\n\
             \x20   203.0.113.254.443 > 192.168.10.2.40000: Flags [S.], cksum 0x1234 (correct), seq 1, length 0\n\
             12:00:00.000002 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 84)\n\
             \x20   192.168.10.2 > 203.0.113.254: ICMP echo request, id 1, seq 1, length 64\n\
             12:00:00.000003 IP (tos 0x2,ECT(0), ttl 5, id 1, offset 0, flags [DF], proto UDP (17), length 33)\n\
             \x20   192.168.10.2.5000 > 203.0.113.254.7777: UDP, length 5\n",
        );
        let p = parse_tcpdump_verbose(&out);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].src, SERVER);
        assert_eq!(p[0].src_port, Some(443));
        assert_eq!(p[0].dst, CLIENT);
        assert_eq!(p[0].dst_port, Some(40000));
        assert_eq!((p[0].tos, p[0].ttl), (0xb8, 63));
        assert!(p[0].summary.starts_with("Flags [S.]"), "{}", p[0].summary);
        assert_eq!((p[1].src_port, p[1].dst_port), (None, None));
        assert_eq!((p[1].tos, p[1].ttl), (0, 64));
        assert_eq!((p[2].tos, p[2].ttl), (2, 5));
        assert_eq!(p[2].dst_port, Some(7777));
    }

    #[test]
    fn parses_ping_output() {
        let out = lines(
            "PING 203.0.113.254 (203.0.113.254) 56(84) bytes of data.\n\
             64 bytes from 203.0.113.254: icmp_seq=1 ttl=63 time=0.123 ms\n\
             64 bytes from 203.0.113.254: icmp_seq=2 ttl=63 time=0.1 ms\n\
             \n\
             --- 203.0.113.254 ping statistics ---\n\
             3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n",
        );
        let p = parse_ping(&out);
        assert_eq!((p.transmitted, p.received), (3, 2));
        assert_eq!(p.replies, [(SERVER, 63), (SERVER, 63)]);
        assert!(p.errors.is_empty());

        let out = lines(
            "PING 198.51.100.20 (198.51.100.20) 56(84) bytes of data.\n\
             From 192.168.10.1 icmp_seq=1 Time to live exceeded\n\
             \n\
             --- 198.51.100.20 ping statistics ---\n\
             1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms\n",
        );
        let p = parse_ping(&out);
        assert_eq!((p.transmitted, p.received), (1, 0));
        assert_eq!(
            p.errors,
            [(GATEWAY_LAN, "Time to live exceeded".to_owned())]
        );
    }

    #[test]
    fn skips_lines_without_a_header() {
        let out = lines(
            "tcpdump: listening on eth0\n\
             \x20   192.168.10.2 > 203.0.113.254: ICMP echo request\n\
             2 packets captured\n",
        );
        assert!(parse_tcpdump_verbose(&out).is_empty());
    }

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

    #[test]
    fn lab_config_copy_points_at_absolute_rules_and_own_socket() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/gateway.toml");
        let config = Config::load(&conf).expect("conf/gateway.toml loads");
        check_config_fits(&config);
        let dir = WorkDir::new("labtest");
        let text = lab_config_text(&config, &dir.path);
        let path = dir.path.join("gateway.toml");
        std::fs::write(&path, &text).expect("write");
        let copy = Config::load(&path).expect("the copy loads");
        assert!(copy.rules.is_absolute(), "{text}");
        assert_eq!(copy.control_socket, dir.path.join("xdpgw.sock"));
        assert_eq!(copy.interfaces, config.interfaces);
        assert_eq!(copy.routes, config.routes);
        let removed = dir.path.clone();
        drop(dir);
        assert!(!removed.exists());
    }
}
