//! `xdpgw doctor IFACE...`: what each interface supports (native XDP,
//! zero-copy, queues, MTU, offloads, XDP programs already attached) and
//! what `xdpgw run` would use, in the words of its `ready` line.
//!
//! The probing is `xdpgw_dataplane::port::probe` (it attaches the program
//! and binds a socket briefly, and leaves nothing attached); this module
//! only turns its [`Probe`]s into text. Exit status 1 when an interface
//! cannot be used, with the reason on stderr.

use std::fmt::Write as _;
use std::process::ExitCode;

use xdpgw_dataplane::port::probe::{group_modes, Check, Feature};
use xdpgw_dataplane::port::{
    frame_size_for, PortConfig, PortError, Probe, XdpMode, ZeroCopy, MAX_FRAME_SIZE,
};

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native if the driver supports it, else generic.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// `--zero-copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ZeroCopyArg {
    /// Zero-copy if the driver supports it, else copy.
    Auto,
    /// Zero-copy only.
    On,
    /// Copy only.
    Off,
}

/// Entry point of `xdpgw doctor`.
pub fn main(ifaces: &[String], xdp_mode: XdpModeArg, zero_copy: ZeroCopyArg) -> ExitCode {
    let results: Vec<Result<Probe, PortError>> = ifaces
        .iter()
        .map(|name| {
            let mtu = xdpgw_dataplane::port::interface_mtu(name).ok();
            xdpgw_dataplane::port::probe(&PortConfig {
                xdp_mode: match xdp_mode {
                    XdpModeArg::Auto => XdpMode::Auto,
                    XdpModeArg::Native => XdpMode::Native,
                    XdpModeArg::Generic => XdpMode::Generic,
                },
                zero_copy: match zero_copy {
                    ZeroCopyArg::Auto => ZeroCopy::Auto,
                    ZeroCopyArg::On => ZeroCopy::On,
                    ZeroCopyArg::Off => ZeroCopy::Off,
                },
                // The frames `xdpgw run` would choose for this MTU alone.
                frame_size: mtu.and_then(frame_size_for).unwrap_or(MAX_FRAME_SIZE),
                multi_buffer: mtu.is_some_and(|m| frame_size_for(m).is_none()),
                ..PortConfig::new(name.clone())
            })
        })
        .collect();
    let Report { out, errors } = render(&results);
    print!("{out}");
    for e in &errors {
        eprintln!("xdpgw doctor: {e}");
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What `doctor` prints.
pub struct Report {
    /// The report (stdout). Its last line is `would use ...` when every
    /// interface can be used.
    pub out: String,
    /// One line per interface that cannot be used (stderr).
    pub errors: Vec<String>,
}

/// The report for `results`.
pub fn render(results: &[Result<Probe, PortError>]) -> Report {
    let mut out = String::new();
    let mut errors = Vec::new();
    let probes: Vec<Probe> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .cloned()
        .collect();
    let modes = group_modes(&probes);
    let mut modes = modes.iter();
    let mut uses = Vec::new();
    for result in results {
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        section(&mut out, p);
        match modes.next() {
            Some(Ok(mode)) => {
                let _ = writeln!(out, "  xdpgw run would use: {mode}");
                uses.push(format!("{}: {mode}", p.ifname));
            }
            Some(Err(problems)) => {
                for problem in problems {
                    let _ = writeln!(out, "  cannot be used: {problem}");
                    errors.push(format!("{}: cannot be used: {problem}", p.ifname));
                }
            }
            None => {}
        }
        out.push('\n');
    }
    if errors.is_empty() && !uses.is_empty() {
        let _ = writeln!(out, "would use {}", uses.join("; "));
    }
    Report { out, errors }
}

fn section(out: &mut String, p: &Probe) {
    let mac = p
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let _ = writeln!(out, "{}: index {}, MAC {mac}", p.ifname, p.ifindex);
    match &p.driver {
        Ok(d) => {
            let _ = write!(out, "  driver: {}", d.driver);
            for (what, v) in [
                ("version", &d.version),
                ("firmware", &d.firmware),
                ("bus", &d.bus),
            ] {
                if !v.is_empty() {
                    let _ = write!(out, ", {what} {v}");
                }
            }
            out.push('\n');
        }
        Err(errno) => {
            let _ = writeln!(out, "  driver: unknown ({})", errno_text(*errno));
        }
    }
    let too_large = if p.mtu > p.mtu_limit {
        ": too large"
    } else {
        ""
    };
    let _ = if p.multi_buffer {
        writeln!(
            out,
            "  MTU: {} (frames in several {}-byte UMEM frames: multi-buffer AF_XDP, at most {}{})",
            p.mtu, p.frame_size, p.mtu_limit, too_large
        )
    } else {
        writeln!(
            out,
            "  MTU: {} (with {}-byte UMEM frames at most {}{})",
            p.mtu, p.frame_size, p.mtu_limit, too_large
        )
    };
    let _ = write!(out, "  queues: ");
    match p.sysfs_queues {
        Some((rx, tx)) => {
            let _ = write!(out, "{rx} rx, {tx} tx (/sys/class/net/{}/queues)", p.ifname);
        }
        None => {
            let _ = write!(out, "sysfs not of this namespace");
        }
    }
    match &p.channels {
        Ok(c) => {
            let _ = write!(
                out,
                "; channels (ethtool -l): combined {} of {}, rx {} of {}, tx {} of {}",
                c.combined.0, c.combined.1, c.rx.0, c.rx.1, c.tx.0, c.tx.1
            );
        }
        Err(errno) => {
            let _ = write!(out, "; no channel settings ({})", errno_text(*errno));
        }
    }
    let _ = writeln!(
        out,
        "; xdpgw opens {} queue{}",
        p.queues,
        if p.queues == 1 { "" } else { "s" }
    );
    if p.programs.is_empty() {
        let _ = writeln!(out, "  XDP programs attached: none");
    }
    for prog in &p.programs {
        let _ = write!(
            out,
            "  XDP program attached: {} (id {}), {} mode, ",
            prog.name.as_deref().unwrap_or("name unknown"),
            prog.id,
            prog.mode
        );
        match prog.link {
            Some(link) => {
                let _ = write!(out, "BPF link {link}");
            }
            None => {
                let _ = write!(out, "through netlink (ip link)");
            }
        }
        for h in &prog.holders {
            let _ = write!(out, ", held by {} (pid {})", h.comm, h.pid);
        }
        let whose = if prog.is_ours() {
            "xdpgw's"
        } else {
            "not xdpgw's"
        };
        let _ = writeln!(out, "; {whose}");
    }
    check_line(out, "native XDP", &p.native, attach_reason);
    check_line(out, "generic XDP", &p.generic, attach_reason);
    check_line(out, "AF_XDP zero-copy", &p.zero_copy, bind_reason);
    check_line(out, "AF_XDP copy", &p.copy, bind_reason);
    offloads(out, p);
}

fn check_line(out: &mut String, what: &str, check: &Check, reason: fn(i32) -> &'static str) {
    let _ = match check {
        Check::Yes => writeln!(out, "  {what}: yes"),
        Check::No { errno } => writeln!(
            out,
            "  {what}: no ({}{})",
            errno_text(*errno),
            match reason(*errno) {
                "" => String::new(),
                r => format!(": {r}"),
            }
        ),
        Check::Skipped { why } => writeln!(out, "  {what}: not probed ({why})"),
    };
}

fn attach_reason(errno: i32) -> &'static str {
    match errno {
        libc::EOPNOTSUPP => "the driver has no support for this mode",
        libc::EINVAL => {
            "the driver refuses it now (MTU, LRO or hardware GRO on, too few queues: see dmesg)"
        }
        libc::EPERM | libc::EACCES => "needs CAP_BPF and CAP_NET_ADMIN",
        libc::EBUSY | libc::EEXIST => "another program was attached meanwhile",
        libc::ENOMEM => "the driver lacks queues or memory for XDP (see dmesg)",
        libc::ERANGE => {
            "the MTU is too large for this mode with a program without multi-buffer support, \
             which xdpgw uses up to MTU 3822 (veth: native XDP up to MTU 3506); generic mode \
             takes it"
        }
        _ => "",
    }
}

fn bind_reason(errno: i32) -> &'static str {
    match errno {
        libc::EOPNOTSUPP | libc::EPROTONOSUPPORT => "the driver has no AF_XDP zero-copy support",
        libc::EBUSY => "queue 0 is bound by another AF_XDP socket",
        libc::EPERM | libc::EACCES => {
            "needs CAP_NET_RAW, and CAP_IPC_LOCK or a memlock limit for the UMEM"
        }
        libc::ENOBUFS | libc::ENOMEM => {
            "the UMEM exceeds the memlock limit (ulimit -l) without CAP_IPC_LOCK"
        }
        _ => "",
    }
}

/// An errno as its name and text, e.g. `EOPNOTSUPP, Operation not supported`.
fn errno_text(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENODEV => "ENODEV",
        libc::ERANGE => "ERANGE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        _ => "",
    };
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    if name.is_empty() {
        format!("errno {errno}, {text}")
    } else {
        format!("{name}, {text}")
    }
}

/// The offloads that matter for XDP: their state and what to do.
fn offloads(out: &mut String, p: &Probe) {
    let features = match &p.features {
        Ok(f) => f,
        Err(errno) => {
            let _ = writeln!(out, "  offloads: unknown ({})", errno_text(*errno));
            return;
        }
    };
    let _ = writeln!(out, "  offloads:");
    let generic = match p.would_use() {
        Ok(m) => m.xdp == xdpgw_dataplane::port::XdpAttach::Generic,
        Err(_) => p.xdp_mode == XdpMode::Generic,
    };
    let state = |f: &Feature| {
        format!(
            "{}{}",
            if f.active { "on" } else { "off" },
            if f.changeable { "" } else { " [fixed]" }
        )
    };
    let find = |name: &str| features.iter().find(|f| f.name == name);
    let advice: [(&str, &str, &str, bool); 3] = [
        (
            "rx-lro",
            "lro",
            "LRO merges received segments into frames larger than a UMEM frame; drivers refuse \
             native XDP with it or drop such frames",
            true,
        ),
        (
            "rx-gro-hw",
            "rx-gro-hw",
            "hardware GRO merges like LRO (virtio-net: the host's guest offloads)",
            true,
        ),
        (
            "rx-gro",
            "gro",
            "generic XDP runs after GRO, whose merged packets do not fit a UMEM frame",
            generic,
        ),
    ];
    for (name, ethtool_name, why, must_be_off) in advice {
        let Some(f) = find(name) else {
            continue;
        };
        let _ = write!(out, "    {name}: {}", state(f));
        if f.active && must_be_off && !f.changeable {
            let _ = writeln!(
                out,
                ": should be off ({why}) but the driver does not let it change; on virtio-net \
                 the host must stop offering the guest offloads (QEMU: guest_tso4=off, \
                 guest_tso6=off, guest_ecn=off, guest_ufo=off on the device)"
            );
        } else if f.active && must_be_off {
            let _ = writeln!(
                out,
                ": turn it off ({why}): ethtool -K {} {ethtool_name} off",
                p.ifname
            );
        } else if f.active && name == "rx-gro" {
            let _ = writeln!(out, ": harmless in native mode (XDP runs before GRO)");
        } else {
            out.push('\n');
        }
    }
    if let Some(f) = find(xdpgw_dataplane::port::probe::RX_VLAN_OFFLOAD) {
        let _ = write!(out, "    rx-vlan-hw-parse: {}", state(f));
        if f.active && f.changeable {
            let _ = writeln!(
                out,
                ": a VLAN trunk needs it off (the NIC takes 802.1Q tags out of the frames XDP \
                 sees); xdpgw run turns it off on its trunks while it runs: ethtool -K {} rxvlan \
                 off",
                p.ifname
            );
        } else if f.active {
            let _ = writeln!(
                out,
                ": a VLAN trunk needs it off (the NIC takes 802.1Q tags out of the frames XDP \
                 sees), but the driver does not let it change: no VLAN interfaces on {}",
                p.ifname
            );
        } else {
            out.push('\n');
        }
    }
    if matches!(&p.driver, Ok(d) if d.driver == "veth") {
        let _ = writeln!(
            out,
            "    veth: the peer's stack must send complete checksums (ethtool -K PEER tx off on \
             the other end); AF_XDP receives what the peer sent, partial checksums included"
        );
        let _ = writeln!(
            out,
            "    veth: for a VLAN trunk, the peer must send tags in the frame (ethtool -K PEER \
             txvlan off on the other end); a tag the peer's stack keeps out of band (a bridge \
             forwarding tagged frames) does not reach XDP"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdpgw_dataplane::port::probe::{AttachMode, AttachedProgram, Channels, DriverInfo};

    fn veth(name: &str) -> Probe {
        Probe {
            ifname: name.into(),
            ifindex: 4,
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            frame_size: 2048,
            mtu_limit: 1774,
            multi_buffer: false,
            driver: Ok(DriverInfo {
                driver: "veth".into(),
                version: "1.0".into(),
                firmware: String::new(),
                bus: String::new(),
            }),
            channels: Ok(Channels {
                rx: (1, 2),
                tx: (1, 2),
                other: (0, 0),
                combined: (0, 0),
            }),
            sysfs_queues: Some((1, 1)),
            queues: 1,
            programs: Vec::new(),
            native: Check::Yes,
            generic: Check::Yes,
            zero_copy: Check::No {
                errno: libc::EOPNOTSUPP,
            },
            copy: Check::Yes,
            features: Ok(vec![
                Feature {
                    name: "rx-gro".into(),
                    active: true,
                    changeable: true,
                },
                Feature {
                    name: "rx-lro".into(),
                    active: true,
                    changeable: true,
                },
                Feature {
                    name: "rx-gro-hw".into(),
                    active: true,
                    changeable: false,
                },
                Feature {
                    name: "rx-vlan-hw-parse".into(),
                    active: true,
                    changeable: true,
                },
            ]),
            left_attached: Vec::new(),
            xdp_mode: XdpMode::Auto,
            zero_copy_setting: ZeroCopy::Auto,
        }
    }

    #[test]
    fn report_of_usable_interfaces() {
        let Report { out, errors } = render(&[Ok(veth("lan0")), Ok(veth("wan0"))]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out.lines().last(),
            Some("would use lan0: native xdp, copy, 1 queue; wan0: native xdp, copy, 1 queue")
        );
        for want in [
            "lan0: index 4, MAC 02:00:00:00:00:01",
            "  driver: veth, version 1.0",
            "  MTU: 1500 (with 2048-byte UMEM frames at most 1774)",
            "  queues: 1 rx, 1 tx (/sys/class/net/lan0/queues); channels (ethtool -l): combined 0 \
             of 0, rx 1 of 2, tx 1 of 2; xdpgw opens 1 queue",
            "  XDP programs attached: none",
            "  native XDP: yes",
            "  AF_XDP zero-copy: no (EOPNOTSUPP, Operation not supported: the driver has no \
             AF_XDP zero-copy support)",
            "    rx-lro: on: turn it off (LRO merges received segments into frames larger than a \
             UMEM frame; drivers refuse native XDP with it or drop such frames): ethtool -K lan0 \
             lro off",
            "    rx-gro: on: harmless in native mode (XDP runs before GRO)",
            "    rx-vlan-hw-parse: on: a VLAN trunk needs it off (the NIC takes 802.1Q tags out \
             of the frames XDP sees); xdpgw run turns it off on its trunks while it runs: \
             ethtool -K lan0 rxvlan off",
            "    rx-gro-hw: on [fixed]: should be off (hardware GRO merges like LRO (virtio-net: \
             the host's guest offloads)) but the driver does not let it change; on virtio-net the \
             host must stop offering the guest offloads (QEMU: guest_tso4=off, guest_tso6=off, \
             guest_ecn=off, guest_ufo=off on the device)",
            "  xdpgw run would use: native xdp, copy, 1 queue",
        ] {
            assert!(out.lines().any(|l| l == want), "no line {want:?} in\n{out}");
        }
    }

    #[test]
    fn missing_and_foreign() {
        let mut busy = veth("wan0");
        busy.programs.push(AttachedProgram {
            mode: AttachMode::Generic,
            id: 31,
            name: Some("other_fw".into()),
            link: None,
            holders: Vec::new(),
        });
        busy.native = Check::Skipped {
            why: "attached".into(),
        };
        let Report { out, errors } = render(&[
            Err(PortError::NoSuchInterface {
                name: "nope0".into(),
            }),
            Ok(busy),
        ]);
        assert_eq!(errors[0], "no interface named \"nope0\"");
        assert!(
            errors[1].starts_with("wan0: cannot be used: another XDP program is attached (generic mode, id 31, name other_fw)"),
            "{errors:?}"
        );
        assert!(!out.contains("would use"), "{out}");
        assert!(out.contains(
            "  XDP program attached: other_fw (id 31), generic mode, through netlink (ip link); not xdpgw's"
        ), "{out}");
    }
}
