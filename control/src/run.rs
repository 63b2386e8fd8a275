//! `xdpgw run`: the gateway itself. Opens an AF_XDP port on every
//! configured interface, builds the shared gateway (rules, conntrack,
//! routes, neighbours), and runs one worker thread per core, each owning one
//! queue of every interface; a control thread serves the control socket
//! (`crate::api`); the main thread waits for signals (SIGINT and SIGTERM
//! stop, SIGHUP reloads the rules as `xdpgw reload` does). With `state_file`
//! configured, the connection table is restored from it before the workers
//! start and saved to it once they stopped (`crate::state_file`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpgw_dataplane::conntrack::MemInfo;
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::log::{LogEntry, LogSink};
use xdpgw_dataplane::port::{
    frame_size_for, interface_mtu, mtu_limit, GroupQueue, HostDeviceConfig, HostPath, HostQueue,
    HostRoute, HostRoute6, LinkMonitor, PortConfig, PortGroup, XdpMode, ZeroCopy, FRAME_SIZES,
    MAX_FRAME_SIZE, MAX_MTU,
};
use xdpgw_dataplane::rule::Log;
use xdpgw_dataplane::worker::{Driver, Worker};

use crate::api::server::{Control, ControlSocket, WorkerPublished};
use crate::config::{Config, XdpModeConfig, ZeroCopyConfig};
use crate::link_watch::{LinkWatch, WatchedHostDevice, WatchedPort};
use crate::service::{self, level};
use crate::state_file;

/// Entry point of `xdpgw run --config FILE`; with `report`, a summary of
/// what the gateway did is printed to stderr when it stops.
pub fn main(config: &Path, report: bool) -> ExitCode {
    match run(config, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            service::log(level::ERR, &format!("xdpgw run: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Why `xdpgw run` could not start or ended in error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{errors}\n{}: rules not loaded", file.display())]
    Rules {
        errors: crate::error::RuleErrors,
        file: std::path::PathBuf,
    },
    #[error("signal handling: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Port(#[from] xdpgw_dataplane::port::PortError),
    #[error(transparent)]
    Gateway(#[from] xdpgw_dataplane::gateway::GatewayError),
    #[error(transparent)]
    Socket(#[from] crate::api::socket::SocketError),
    #[error(transparent)]
    Metrics(#[from] crate::api::metrics::MetricsBindError),
    #[error("a worker thread panicked")]
    WorkerPanicked,
}

fn run(path: &Path, report: bool) -> Result<(), RunError> {
    let cfg = Config::load(path)?;
    let conntrack = cfg.conntrack_config();
    if let Some(mem) = MemInfo::read() {
        cfg.check_conntrack_memory(&conntrack.layout(), &mem)?;
    }
    let (sets, rules) = crate::load_sets_and_rules(cfg.ipsets.as_deref(), &cfg.rules)
        .map_err(|(file, errors)| RunError::Rules { errors, file })?;
    // The IPv6 rules (`rules6`), refused as the IPv4 ones are.
    let rules6 = match &cfg.rules6 {
        Some(r6) => {
            crate::load_rule_file_family(
                r6,
                &Default::default(),
                xdpgw_dataplane::rule::Family::Ipv6,
            )
            .map_err(|errors| RunError::Rules {
                errors,
                file: r6.clone(),
            })?
            .set6
        }
        None => Default::default(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signal)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(RunError::Signal)?;
    // And each of them wakes the main thread at once (after setting its
    // flag: handlers run in the order registered), so that a stop does not
    // wait out a polling interval: the workers stop at the signal, and
    // until the interfaces are released and the next process takes them,
    // nothing is forwarded.
    let (mut wake, wake_tx) = std::os::unix::net::UnixStream::pair().map_err(RunError::Signal)?;
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let tx = wake_tx.try_clone().map_err(RunError::Signal)?;
        signal_hook::low_level::pipe::register(sig, tx).map_err(RunError::Signal)?;
    }
    wake.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(RunError::Signal)?;

    // Link changes from here on (subscribed before the links are read, so
    // that none in between is missed); without it the links are as read.
    let monitor = match LinkMonitor::open() {
        Ok(m) => Some(m),
        Err(e) => {
            service::log(
                level::WARNING,
                &format!("xdpgw: {e}: MTU, address and link changes are not followed"),
            );
            None
        }
    };

    // The UMEM frame size: as configured, else the smaller that holds every
    // interface's MTU; an MTU larger than the largest frame holds: frames in
    // several (multi-buffer AF_XDP).
    let largest = cfg
        .interfaces
        .iter()
        .filter_map(|i| interface_mtu(&i.name).ok())
        .max()
        .unwrap_or(1500);
    let frame_size = cfg
        .dataplane
        .frame_size
        .unwrap_or_else(|| frame_size_for(largest).unwrap_or(MAX_FRAME_SIZE));
    let multi_buffer = largest > mtu_limit(frame_size);
    let mtu_cap = if multi_buffer {
        MAX_MTU
    } else {
        mtu_limit(frame_size)
    };
    if multi_buffer {
        service::log(
            level::INFO,
            &format!(
                "xdpgw: {frame_size}-byte UMEM frames, larger frames in several (multi-buffer, \
                 MTU at most {MAX_MTU})"
            ),
        );
    } else if frame_size != FRAME_SIZES[0] {
        service::log(
            level::INFO,
            &format!(
                "xdpgw: {frame_size}-byte UMEM frames (MTU at most {})",
                mtu_limit(frame_size)
            ),
        );
    }

    // All interfaces as one port group: for each queue index, the sockets of
    // every interface share one UMEM, so a frame forwarded from one interface
    // to another moves as a descriptor, without a copy. A failure detaches
    // whatever was attached.
    // The ports are the kernel interfaces: each interface's own, or its
    // VLAN's trunk (once); `Config::links` says which interface is where.
    let port_names = cfg.ports();
    let pcs: Vec<PortConfig> = port_names
        .iter()
        .map(|name| PortConfig {
            ifname: name.clone(),
            queues: None,
            xdp_mode: match cfg.dataplane.xdp_mode {
                XdpModeConfig::Auto => XdpMode::Auto,
                XdpModeConfig::Native => XdpMode::Native,
                XdpModeConfig::Generic => XdpMode::Generic,
            },
            zero_copy: match cfg.dataplane.zero_copy {
                ZeroCopyConfig::Auto => ZeroCopy::Auto,
                ZeroCopyConfig::On => ZeroCopy::On,
                ZeroCopyConfig::Off => ZeroCopy::Off,
            },
            frame_size,
            frames: 4096,
            multi_buffer,
        })
        .collect();
    // Trunks must hand VLAN tags to AF_XDP in the frame: receive VLAN
    // offload off while xdpgw runs (restored when `_rx_vlan` drops).
    let _rx_vlan = RxVlanOffload::turn_off(&cfg);
    let mut group = PortGroup::open(&pcs).map_err(|e| match &e {
        // Which line of the configuration names it.
        xdpgw_dataplane::port::PortError::NoSuchInterface { name } => match cfg.port_place(name) {
            Some((line, column)) => RunError::Config(crate::config::ConfigError {
                file: cfg.path.display().to_string(),
                line,
                column,
                message: format!("no interface named '{name}' on this machine (ip link)"),
            }),
            None => RunError::Port(e),
        },
        _ => RunError::Port(e),
    })?;

    let gw_cfg = cfg.gateway_config(
        |k| {
            (
                group.mac(k).unwrap_or_default(),
                group.mtu(k).unwrap_or(1500),
            )
        },
        conntrack.clone(),
    );
    let gw = Arc::new(Gateway::with_sets(gw_cfg, sets, &rules)?);
    gw.install6(&rules6)
        .map_err(|e| RunError::Gateway(xdpgw_dataplane::gateway::GatewayError::Compile(e)))?;
    let mut link_watch = monitor.map(|m| {
        let links = cfg.links();
        let ports = (0..group.len())
            .map(|k| {
                let name = group.ifname(k).unwrap_or_default().to_string();
                let ifaces = links
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| usize::from(l.port) == k)
                    .map(|(i, _)| (i as u8, cfg.interfaces[i].name == name))
                    .collect();
                WatchedPort {
                    ifindex: group.ifindex(k).unwrap_or(0),
                    name,
                    ifaces,
                }
            })
            .collect();
        LinkWatch::new(m, ports, mtu_cap)
    });

    // Queue index q of every interface (one shared UMEM) goes to worker q.
    let group_queues = group.queues();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg
        .dataplane
        .workers
        .unwrap_or(cores)
        .min(group_queues.len())
        .max(1);
    let mut assignments: Vec<Vec<GroupQueue>> = (0..workers).map(|_| Vec::new()).collect();
    for (q, gq) in group_queues.into_iter().enumerate() {
        assignments[q % workers].push(gq);
    }
    // The host path: a TUN device per interface with its address, one
    // queue per worker (removed with the last descriptor, however we stop).
    let (host_path, mut host_queues) = if cfg.dataplane.host_path {
        // One per interface: a VLAN interface has its own, with its
        // trunk's MTU.
        let devices: Vec<HostDeviceConfig> = cfg
            .interfaces
            .iter()
            .zip(cfg.links())
            .map(|(i, l)| HostDeviceConfig {
                name: i.host_device.clone(),
                addr: i.addr,
                prefix: i.prefix,
                mtu: group.mtu(usize::from(l.port)).unwrap_or(1500),
                addr6: i.addr6.clone(),
            })
            .collect();
        let routes: Vec<HostRoute> = cfg
            .routes
            .iter()
            .filter_map(|(to, via)| {
                Some(HostRoute {
                    to: to.addr(),
                    prefix: to.prefix_len()?,
                    via: *via,
                })
            })
            .collect();
        // IPv6 static routes of the main table (`[[route]]` with IPv6
        // addresses), on the device of their next hop's interface.
        let routes6: Vec<HostRoute6> = cfg
            .routes6
            .iter()
            .map(|r| HostRoute6 {
                to: r.to.addr,
                prefix: r.to.len,
                via: r.via,
                dev: r.dev.map(usize::from),
            })
            .collect();
        let (path, queues) = HostPath::create(&devices, &routes, &routes6, workers)?;
        if let Some(w) = &mut link_watch {
            // The addresses the host gives the devices (keepalived's).
            w.watch_host_devices(
                &gw,
                path.ifindices()
                    .iter()
                    .zip(path.names())
                    .enumerate()
                    .map(|(i, (&ifindex, name))| WatchedHostDevice {
                        ifindex,
                        name: name.clone(),
                        iface: i as u8,
                    })
                    .collect(),
            );
        }
        for (r, why) in &path.skipped_routes {
            eprintln!(
                "xdpgw: host path: route {}/{} via {} not added to the host: {why}",
                r.to, r.prefix, r.via
            );
        }
        for (r, why) in &path.skipped_routes6 {
            eprintln!(
                "xdpgw: host path: route {}/{} via {} not added to the host: {why}",
                r.to, r.prefix, r.via
            );
        }
        (Some(path), queues.into_iter().map(Some).collect())
    } else {
        (None, Vec::new())
    };
    host_queues.resize_with(workers, || None);
    let names: Vec<String> = cfg.interfaces.iter().map(|i| i.name.clone()).collect();
    let modes: Vec<String> = port_names
        .iter()
        .enumerate()
        .map(|(k, n)| match group.mode(k) {
            Some(m) => format!("{n}: {m}"),
            None => format!("{n}: ?"),
        })
        .collect();
    let start = *START.get_or_init(Instant::now);
    // The connections saved when the last `xdpgw run` stopped, in the table
    // before any worker looks at it.
    if let Some(path) = &cfg.state_file {
        let r = state_file::load(path, &gw.conntrack, gw_now(), state_file::wall_now());
        let lvl = if r.is_warning() {
            level::WARNING
        } else {
            level::INFO
        };
        service::log(lvl, &format!("xdpgw: {r}"));
    }
    let published: Vec<Arc<WorkerPublished>> = assignments
        .iter()
        .map(|qs| {
            Arc::new(WorkerPublished::new(
                qs.iter()
                    .flat_map(|gq| (0..gq.ports()).map(move |p| (p as u8, gq.queue_id())))
                    .collect(),
            ))
        })
        .collect();
    let control = Control {
        gw: Arc::clone(&gw),
        rules_file: cfg.rules.clone(),
        state: std::sync::Mutex::new(rules),
        workers: published.clone(),
        names: names.clone(),
        ports: port_names.clone(),
        now: gw_now,
        events: Default::default(),
        events6: Default::default(),
        config_file: Some(path.to_path_buf()),
        conntrack: std::sync::Mutex::new(conntrack),
        nat_log: Default::default(),
        rules6: std::sync::Mutex::new(rules6),
        reloads: Default::default(),
        sync: cfg
            .sync
            .clone()
            .map(|c| Arc::new(crate::sync::SyncShared::new(c))),
    };
    // The ports are open: now the control socket (removed when dropped).
    let socket = ControlSocket::bind(&cfg.control_socket)?;
    let metrics = cfg
        .metrics_listen
        .map(crate::api::metrics::MetricsServer::bind)
        .transpose()?;

    let result = crossbeam::scope(|s| {
        let mut handles = Vec::new();
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let server = s.spawn(|_| socket.serve(&control, &stop));
        let http = metrics
            .as_ref()
            .map(|m| s.spawn(|_| m.serve(&control, &stop)));
        let nat_log = cfg.nat_log.as_deref().and_then(|p| {
            let Some(id) = crate::nat_log::subscribe(&control) else {
                service::log(level::ERR, "xdpgw: nat_log: no event listener free");
                return None;
            };
            let (control, stop) = (&control, &stop);
            Some(s.spawn(move |_| {
                crate::nat_log::serve(control, id, p, stop, &|m| {
                    service::log(level::WARNING, &format!("xdpgw: {m}"))
                })
            }))
        });
        let sync = match control.sync.as_deref() {
            Some(shared) => match crate::sync::subscribe(&control) {
                None => {
                    service::log(level::ERR, "xdpgw: sync: no event listener free");
                    None
                }
                Some(id) => {
                    let (control, stop) = (&control, &stop);
                    Some(s.spawn(move |_| {
                        crate::sync::serve(control, shared, id, stop, &|m| {
                            service::log(level::WARNING, &format!("xdpgw: {m}"))
                        })
                    }))
                }
            },
            None => None,
        };
        for ((w, queues), host) in assignments.into_iter().enumerate().zip(host_queues) {
            let gw = Arc::clone(&gw);
            let stop = Arc::clone(&stop);
            let names = names.clone();
            let publish = Arc::clone(&published[w]);
            // Worker w on the last cores first: core 0 keeps the kernel's
            // softirq work (veth NAPI, IRQs) when there is a choice.
            let cpu = (cpus.len() > 1).then(|| cpus[cpus.len() - 1 - (w % cpus.len())]);
            handles.push(s.spawn(move |_| {
                if let Some(c) = cpu {
                    core_affinity::set_for_current(c);
                }
                // Made on its own thread (its memory first touched there).
                let driver = Driver::new(Worker::new(gw, w as u64 + 1), queues, host);
                worker_loop(driver, &names, &stop, start, &publish)
            }));
        }
        if let Some(h) = &host_path {
            eprintln!(
                "xdpgw: host path: {}",
                h.names()
                    .iter()
                    .zip(&cfg.interfaces)
                    .map(|(d, i)| format!("{d} {}/{} (for {})", i.addr, i.prefix, i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(m) = &metrics {
            eprintln!("xdpgw: metrics on http://{}/metrics", m.addr());
        }
        println!("ready {}", modes.join("; "));
        let _ = std::io::stdout().flush();
        // Type=notify: systemd counts the service started from here.
        if let Err(e) = service::notify(&format!("READY=1\nSTATUS=ready {}", modes.join("; "))) {
            service::log(level::WARNING, &format!("xdpgw: sd_notify: {e}"));
        }
        while !stop.load(Ordering::Relaxed) {
            if reload.swap(false, Ordering::Relaxed) {
                control.nat_log.reopen.store(true, Ordering::Relaxed);
                // systemd shows the unit `reloading` until READY=1
                // (sd_notify(3)); a refused reload is ready too, with the
                // old rules.
                let _ = service::notify("RELOADING=1");
                let status = match control.reload(None, crate::api::reload::Scope::FileTables) {
                    Ok(r) => {
                        service::log(
                            if r.everywhere {
                                level::INFO
                            } else {
                                level::WARNING
                            },
                            &format!("xdpgw: {}", r.summary()),
                        );
                        "reloaded"
                    }
                    Err(e) => {
                        service::log(
                            level::ERR,
                            &format!(
                                "{}\nxdpgw: reload failed; the running rules stay in force",
                                e.lines().join("\n")
                            ),
                        );
                        "reload failed; the running rules stay in force"
                    }
                };
                let _ = service::notify(&format!("READY=1\nSTATUS={status}"));
            }
            if let Some(w) = &mut link_watch {
                w.poll(&gw);
            }
            // A signal, or 50 ms.
            let _ = wake.read(&mut [0u8; 16]);
        }
        let _ = service::notify("STOPPING=1");
        ControlSocket::wake(socket.path());
        let _ = server.join();
        if let (Some(m), Some(h)) = (metrics.as_ref(), http) {
            m.wake();
            let _ = h.join();
        }
        if let Some(h) = nat_log {
            let _ = h.join();
        }
        if let Some(h) = sync {
            let _ = h.join();
        }
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| ()))
            .collect::<Result<Vec<WorkerReport>, ()>>()
    });
    let Ok(Ok(mut reports)) = result else {
        return Err(RunError::WorkerPanicked);
    };
    // The workers have stopped (and flushed what they credited): the table
    // is final. (Saving is part of a restart's forwarding gap, as is all
    // that comes before the interfaces are released.)
    if let Some(path) = &cfg.state_file {
        let began = Instant::now();
        match state_file::save(path, &gw.conntrack, gw_now(), state_file::wall_now()) {
            Ok(saved) => service::log(
                level::INFO,
                &format!(
                    "xdpgw: saved {} connections to {} ({} bytes, {:.1} ms)",
                    saved.entries,
                    path.display(),
                    saved.bytes,
                    began.elapsed().as_secs_f64() * 1e3
                ),
            ),
            Err(e) => service::log(
                level::ERR,
                &format!("xdpgw: {e}; the next start begins with an empty table"),
            ),
        }
    }
    drop(socket);
    release(&mut reports, host_path, group);
    if report {
        let rules = control
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let rules6 = cfg.rules6.is_some().then(|| control.with_counters6());
        eprint!(
            "{}",
            exit_report(&gw, &rules, rules6.as_ref(), &names, &reports)
        );
    }
    service::log(level::INFO, "xdpgw: stopped");
    Ok(())
}

/// Releases the interfaces: the host path's devices, the AF_XDP sockets,
/// the XDP programs. Closing each waits for the kernel (`xsk_release`'s
/// `synchronize_net`, a TUN device's unregistration): one after the other,
/// those of two interfaces took about 100 ms (namespace lab), on threads of
/// their own at once about 40 ms, and a restart's forwarding gap is that
/// much shorter. A thread that cannot start: its part is closed here
/// instead.
fn release(reports: &mut [WorkerReport], host_path: Option<HostPath>, group: PortGroup) {
    let hosts: Vec<HostQueue> = reports.iter_mut().filter_map(|r| r.host.take()).collect();
    let queues: Vec<GroupQueue> = reports
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.queues))
        .collect();
    std::thread::scope(|s| {
        let spawn = |f: Box<dyn FnOnce() + Send>| {
            let b = std::thread::Builder::new().name("xdpgw-release".into());
            // On failure the closure is dropped, and its part with it.
            let _ = b.spawn_scoped(s, f);
        };
        for h in hosts {
            spawn(Box::new(move || drop(h)));
        }
        for q in queues {
            spawn(Box::new(move || drop(q)));
        }
        drop(host_path);
        drop(group);
    });
}

/// What a worker hands back when it stops.
struct WorkerReport {
    stats: xdpgw_dataplane::stats::WorkerStats,
    /// Its sockets and host path queues, released by `run` (`release`).
    queues: Vec<GroupQueue>,
    host: Option<HostQueue>,
}

/// The summary `--report-on-exit` prints: per-worker counters and drop
/// reasons, the conntrack tables as /proc/net/nf_conntrack shows them
/// (IPv4's, then IPv6's), and the rules with their counters in
/// `iptables-save -c` form (then `rules6`'s, given with their counters, in
/// `ip6tables-save -c` form).
fn exit_report(
    gw: &Gateway,
    rules: &xdpgw_dataplane::rule::RuleSet,
    rules6: Option<&xdpgw_dataplane::rule::RuleSet>,
    _names: &[String],
    reports: &[WorkerReport],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let current = gw.rules();
    for (w, r) in reports.iter().enumerate() {
        let st = &r.stats;
        let _ = writeln!(
            out,
            "# worker {w}: {}",
            crate::api::stats::counters_line(st)
        );
        for reason in xdpgw_dataplane::drop::DropReason::ALL {
            let n = st.drop_count(*reason);
            if n > 0 {
                let _ = writeln!(out, "#   drop {}: {n}", reason.name());
            }
        }
    }
    let (global, host) = gw.icmp_limit.refused();
    if global + host > 0 {
        let _ = writeln!(
            out,
            "# icmp errors not sent (rate limits): per destination {host}, global {global}"
        );
    }
    let ct = &gw.conntrack;
    let stats = ct.stats();
    for reason in xdpgw_dataplane::conntrack::InvalidReason::ALL {
        let n = stats.invalid_count(*reason);
        if n > 0 {
            let _ = writeln!(
                out,
                "# conntrack invalid {}: {n} ({})",
                reason.name(),
                reason.text()
            );
        }
    }
    let _ = writeln!(out, "# conntrack: {} entries", ct.len());
    let now_ns = gw_now();
    for e in &ct.listing(now_ns) {
        let _ = writeln!(out, "{}", xdpgw_dataplane::conntrack::proc_line(e, now_ns));
    }
    if let Some(ct6) = &gw.conntrack6 {
        let _ = writeln!(out, "# conntrack6: {} entries", ct6.len());
        for e in &ct6.listing(now_ns) {
            let _ = writeln!(out, "{}", xdpgw_dataplane::conntrack::proc_line(e, now_ns));
        }
    }
    // Rule counters, summed over the workers (live: `classify::RuleCounters`).
    let sums = current.live.totals();
    let _ = writeln!(out, "# rules with counters [packets:bytes]");
    out.push_str(&crate::save::render_with(&rules.with_counters(&sums), true));
    if let Some(set6) = rules6 {
        let _ = writeln!(out, "# rules6 with counters [packets:bytes]");
        out.push_str(&crate::save::render_family(
            set6,
            xdpgw_dataplane::rule::Family::Ipv6,
            true,
        ));
    }
    out
}

/// The time the workers' clock shows (ns since start): set by `run`.
fn gw_now() -> u64 {
    START.get().map_or(0, |s| s.elapsed().as_nanos() as u64)
}

/// Receive VLAN offload turned off on the trunks (the ports that carry VLAN
/// interfaces): with it on, a NIC takes the 802.1Q tag out of the frame
/// into its receive descriptor and AF_XDP sees the frame untagged, as the
/// trunk's own. Turned back on when dropped, where xdpgw turned it off.
struct RxVlanOffload {
    turned_off: Vec<String>,
}

impl RxVlanOffload {
    fn turn_off(cfg: &Config) -> RxVlanOffload {
        use xdpgw_dataplane::port::probe::{features, set_feature, RX_VLAN_OFFLOAD};
        let mut turned_off = Vec::new();
        let mut trunks: Vec<&str> = cfg
            .interfaces
            .iter()
            .filter_map(|i| i.vlan.as_ref().map(|v| v.parent.as_str()))
            .collect();
        trunks.sort_unstable();
        trunks.dedup();
        for trunk in trunks {
            let Ok(fs) = features(trunk) else { continue };
            let Some(f) = fs.iter().find(|f| f.name == RX_VLAN_OFFLOAD && f.active) else {
                continue;
            };
            let off = f.changeable && set_feature(trunk, RX_VLAN_OFFLOAD, false) == Ok(false);
            if off {
                service::log(
                    level::INFO,
                    &format!(
                        "xdpgw: {trunk}: receive VLAN offload turned off while xdpgw runs \
                         (ethtool -K {trunk} rxvlan off): VLAN tags must reach AF_XDP in the frame"
                    ),
                );
                turned_off.push(trunk.to_string());
            } else {
                service::log(
                    level::WARNING,
                    &format!(
                        "xdpgw: {trunk}: receive VLAN offload is on and could not be turned off \
                         (ethtool -K {trunk} rxvlan off): the NIC may take VLAN tags out of the \
                         frames, which then count as {trunk}'s own untagged frames"
                    ),
                );
            }
        }
        RxVlanOffload { turned_off }
    }
}

impl Drop for RxVlanOffload {
    fn drop(&mut self) {
        for trunk in &self.turned_off {
            let _ = xdpgw_dataplane::port::probe::set_feature(
                trunk,
                xdpgw_dataplane::port::probe::RX_VLAN_OFFLOAD,
                true,
            );
        }
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// One worker: runs its driver's rounds on the clock that `start` began
/// until `stop`, waits when idle, and publishes its counters for the
/// control thread.
fn worker_loop(
    mut driver: Driver<GroupQueue, HostQueue>,
    names: &[String],
    stop: &AtomicBool,
    start: Instant,
    publish: &WorkerPublished,
) -> WorkerReport {
    // Everything an idle worker waits on: its sockets and its host queues.
    let wait_fds: Vec<_> = driver
        .queues()
        .iter()
        .flat_map(|gq| gq.raw_fds().iter().copied())
        .chain(driver.host().into_iter().flat_map(|h| h.raw_fds()))
        .collect();
    let mut logs = StderrLog {
        names,
        journal: service::stderr_is_journal(),
    };
    let mut published_queues = 0u64;
    // Publishing runs at most every millisecond under load (and whenever a
    // round found nothing), not once per batch.
    let mut last_publish = 0u64;
    let mut dirty = false;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_nanos() as u64;
        let round = driver.round(now, &mut logs);
        // Counters for the control thread: the worker's at most every
        // millisecond while busy and as soon as it is idle, the queues' (a
        // system call each) every 200 ms.
        let got = round.received;
        dirty |= got > 0;
        if dirty && (got == 0 || now.saturating_sub(last_publish) >= 1_000_000) {
            last_publish = now;
            dirty = false;
            publish.publish(driver.worker().stats());
        }
        if now.saturating_sub(published_queues) >= 200_000_000 {
            published_queues = now;
            publish.publish(driver.worker().stats());
            publish_queues(publish, driver.queues());
        }
        if round.idle {
            // Sleep in poll() until a frame arrives, at most 10 ms so that
            // timers (ARP, expiry) and the stop flag are served.
            xdpgw_dataplane::port::wait_readable(&wait_fds, Duration::from_millis(10));
        }
    }
    let (worker, queues, host) = driver.finish();
    publish.publish(worker.stats());
    publish_queues(publish, &queues);
    WorkerReport {
        stats: worker.stats().clone(),
        queues,
        host,
    }
}

/// Each socket's counters, in the order `WorkerPublished::new` got them.
fn publish_queues(publish: &WorkerPublished, queues: &[GroupQueue]) {
    let mut k = 0;
    for gq in queues {
        for p in 0..gq.ports() {
            if let Some(st) = gq.stats(p) {
                publish.publish_queue(k, &st);
            }
            k += 1;
        }
    }
}

/// LOG lines, formatted off the packet path, to stderr (with the rule's
/// `--log-level` as a `<N>` prefix when stderr is the journal).
struct StderrLog<'a> {
    names: &'a [String],
    journal: bool,
}

impl LogSink for StderrLog<'_> {
    fn log(&mut self, target: Option<&Log>, e: &LogEntry) {
        let name = |i: Option<u8>| {
            i.and_then(|i| self.names.get(usize::from(i)))
                .map_or("", |s| s.as_str())
        };
        let prefix = target.map_or("", |l| l.prefix.as_str());
        let log_level = target.map_or(Log::DEFAULT_LEVEL, |l| l.level);
        let line = xdpgw_dataplane::log::format(
            prefix,
            name(e.in_iface),
            name(e.out_iface),
            0,
            &e.bytes[..e.len],
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            service::prefixed(&line, log_level, self.journal)
        );
    }
}
