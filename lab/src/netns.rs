//! The RAII network-namespace guard ([`Netns`]), the lab's hosts
//! ([`host_netns`]) and veth pairs between namespaces ([`veth`]).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::next_number;
use crate::process::{check_interrupt, send_signal, Finished, Process};

/// An RAII guard for a Linux network namespace.
///
/// [`Netns::new`] runs `ip netns add`; dropping the guard kills what still
/// runs inside and runs `ip netns del`, also while unwinding from a panic.
/// Commands run in the namespace through `ip netns exec`; code of this
/// process runs in it on a thread of its own ([`Netns::run_in`]): the
/// calling thread never changes namespace.
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

    /// The file that names the namespace, `/var/run/netns/NAME` (what
    /// `setns` takes, e.g. through `xdpgw_dataplane::port::enter_netns`).
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `f` on a new thread of this process that has entered the
    /// namespace, and returns its result: the sockets `f` opens belong to
    /// the namespace, and keep it whatever thread uses them later (setns(2)
    /// moves only the calling thread, so the namespace is entered by a
    /// thread made for it; `enter_netns` of the dataplane's port layer is
    /// the one place that calls it).
    ///
    /// A panic of `f` is resumed here. The wait checks the interrupt flag
    /// ([`crate::interrupt_on`]): when it is set this panics with
    /// [`crate::Interrupted`] and leaves the thread to finish on its own.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("in {}", self.name))
            .spawn(move || {
                if let Err(e) = xdpgw_dataplane::port::enter_netns(&path) {
                    panic!("cannot enter the namespace {}: {e}", path.display());
                }
                // The waiter may be gone (interrupted).
                let _ = tx.send(f());
            })
            .unwrap_or_else(|e| panic!("cannot start a thread for {}: {e}", self.name));
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(v) => {
                    // It has sent its result: it ends without panicking.
                    let _ = thread.join();
                    return v;
                }
                Err(RecvTimeoutError::Timeout) => check_interrupt(),
                Err(RecvTimeoutError::Disconnected) => match thread.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => panic!("the thread in {} ended without a result", self.name),
                },
            }
        }
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
}

/// Kills whatever still runs inside the namespace `name` (a namespace with
/// processes in it outlives `ip netns del`, interfaces and all).
fn kill_leftovers(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if pid.parse::<u32>().is_ok() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            eprintln!(
                "netns {name}: killing leftover process {pid} ({})",
                comm.trim()
            );
            send_signal(pid, "KILL");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_leftovers(&self.name);
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

/// Deletes the namespaces that [`Netns`] guards of processes no longer
/// running left behind (`xg-<tag>-<pid>-<counter>` whose pid is gone: a
/// process killed by SIGKILL drops nothing), with whatever they hold.
/// Returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if stale_owner(&name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            kill_leftovers(&name);
            let deleted = Command::new("ip")
                .args(["netns", "del", &name])
                .output()
                .is_ok_and(|o| o.status.success());
            if deleted {
                removed.push(name);
            }
        }
    }
    removed
}

/// The pid in a name `xg-<tag>-<pid>-<counter>` of another process.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("xg-")?;
    let mut from_right = rest.rsplitn(3, '-');
    from_right.next()?.parse::<u32>().ok()?;
    let pid: u32 = from_right.next()?.parse().ok()?;
    from_right.next()?;
    (pid != std::process::id()).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_owner_reads_the_pid_from_the_right() {
        assert_eq!(stale_owner("xg-client-4242-7"), Some(4242));
        assert_eq!(stale_owner("xg-a-b-c-4242-7"), Some(4242));
        assert_eq!(
            stale_owner(&format!("xg-gw-{}-0", std::process::id())),
            None
        );
        assert_eq!(stale_owner("xg-4242-7"), None);
        assert_eq!(stale_owner("xp-client-4242-7"), None);
        assert_eq!(stale_owner("xg-client-x-7"), None);
    }
}
