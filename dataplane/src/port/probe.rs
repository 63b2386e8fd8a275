//! What an interface supports, found out the way [`Port::open`](super::Port::open)
//! would: for `xdpgw doctor`.
//!
//! [`probe`] reads what the kernel reports (RTM_GETLINK: index, MAC, MTU,
//! attached XDP programs; ethtool: driver, channels, features; sysfs: queues)
//! and then tries, briefly, what `xdpgw run` would do:
//!
//! - **native and generic XDP**: the project's redirect program is loaded
//!   and attached with a BPF link in each mode, and the link is detached and
//!   closed at once (a link also goes away with the process, so nothing
//!   stays attached whatever happens). Attaching is skipped when any XDP
//!   program is already attached: the probe never replaces or detaches
//!   anything, not even a program of ours.
//! - **AF_XDP zero-copy and copy**: a socket with a small UMEM is bound to
//!   queue 0 with `XDP_ZEROCOPY`, then with `XDP_COPY`, and closed.
//!
//! While the program is attached, frames arriving on the interface pass to
//! the kernel stack (its map is empty: the program's fallback is
//! `XDP_PASS`), but many drivers reconfigure their rings when a native
//! program or a zero-copy socket comes and goes, which interrupts traffic
//! briefly: probe before deploying, not on a link in service.
//!
//! Afterwards the probe checks that the interface's XDP programs are what
//! they were before; [`Probe::left_attached`] says if not (a kernel that
//! did not detach).

use std::os::fd::OwnedFd;

use super::{bpf, lookup, netlink, open_umem, sys, Device, PortConfig, PortError, PortMode};
use super::{XdpAttach, XdpMode, ZeroCopy, XDP_HEADROOM};
use crate::port::xsk::Member;

/// Frames of the probe's UMEM (the smallest a socket takes).
const PROBE_FRAMES: u32 = 64;

/// Bytes of a frame beyond the MTU: the Ethernet header and one VLAN tag.
const L2_OVERHEAD: u32 = 18;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It worked.
    Yes,
    /// The kernel or the driver refused, with this errno.
    No {
        /// The errno.
        errno: i32,
    },
    /// Not tried.
    Skipped {
        /// Why.
        why: String,
    },
}

impl Check {
    /// Whether the probe worked.
    pub fn is_yes(&self) -> bool {
        matches!(self, Check::Yes)
    }
}

/// Where an XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// Offloaded to the NIC.
    Offload,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Offload => "offload",
        })
    }
}

/// A process holding a BPF link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`).
    pub comm: String,
}

/// An XDP program found attached to the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// The mode it is attached in.
    pub mode: AttachMode,
    /// Its id (`bpftool prog show id N`).
    pub id: u32,
    /// Its name; `None` when it could not be looked up (looking programs
    /// up by id needs CAP_SYS_ADMIN).
    pub name: Option<String>,
    /// The BPF link holding it (`None`: attached through netlink, e.g. by
    /// `ip link set dev IF xdp ...`, and held by the interface itself).
    pub link: Option<u32>,
    /// The processes holding that link open.
    pub holders: Vec<Holder>,
}

impl AttachedProgram {
    /// Whether it is xdpgw's program ([`PROG_NAME`](super::PROG_NAME)).
    pub fn is_ours(&self) -> bool {
        self.name.as_deref() == Some(bpf::PROG_NAME)
    }
}

/// What ETHTOOL_GDRVINFO says (`ethtool -i`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInfo {
    /// The driver's name, e.g. `ixgbe`, `virtio_net`, `veth`.
    pub driver: String,
    /// The driver's version.
    pub version: String,
    /// The firmware's version.
    pub firmware: String,
    /// The device's bus address.
    pub bus: String,
}

/// What ETHTOOL_GCHANNELS says (`ethtool -l`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    /// Receive-only channels: current, maximum.
    pub rx: (u32, u32),
    /// Transmit-only channels.
    pub tx: (u32, u32),
    /// Other channels.
    pub other: (u32, u32),
    /// Combined (receive and transmit) channels.
    pub combined: (u32, u32),
}

/// One device feature (`ethtool -k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name, as `ethtool -K` takes it (e.g. `rx-gro-hw`).
    pub name: String,
    /// Whether it is on.
    pub active: bool,
    /// Whether it can be changed (`[fixed]` in `ethtool -k` otherwise).
    pub changeable: bool,
}

/// The features of interface `ifname` (`ethtool -k`); an errno if they
/// cannot be read.
pub fn features(ifname: &str) -> Result<Vec<Feature>, i32> {
    sys::ethtool_features(ifname).map(|fs| {
        fs.into_iter()
            .map(|f| Feature {
                name: f.name,
                active: f.active,
                changeable: f.changeable,
            })
            .collect()
    })
}

/// Turns feature `name` of `ifname` on or off (`ethtool -K`); whether it
/// is on afterwards, or an errno.
pub fn set_feature(ifname: &str, name: &str, on: bool) -> Result<bool, i32> {
    sys::ethtool_set_feature(ifname, name, on)
}

/// The kernel's name of receive VLAN offload (`ethtool -K IF rxvlan`):
/// with it on, a NIC takes the 802.1Q tag out of the frame into its
/// descriptor, and XDP and AF_XDP see the frame untagged.
pub const RX_VLAN_OFFLOAD: &str = "rx-vlan-hw-parse";

/// Why `xdpgw run` could not use an interface (or, for
/// [`Problem::Leftover`], what it would have to do first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A privilege is missing.
    Permission {
        /// What needs which capability.
        what: String,
    },
    /// An XDP program that is not xdpgw's is attached.
    ForeignProgram {
        /// Its mode.
        mode: AttachMode,
        /// Its id.
        id: u32,
        /// Its name, if known.
        name: Option<String>,
        /// Who holds its link.
        holders: Vec<Holder>,
    },
    /// xdpgw's program is attached and held by a running process.
    InUse {
        /// Who holds it.
        holders: Vec<Holder>,
    },
    /// xdpgw's program is attached with nobody holding it (left by an
    /// earlier version or a leaked link): `xdpgw run` replaces it. Not an
    /// obstacle.
    Leftover {
        /// Its id.
        id: u32,
        /// Its mode.
        mode: AttachMode,
    },
    /// The MTU's frames do not fit a UMEM frame.
    MtuTooLarge {
        /// The interface's MTU.
        mtu: u32,
        /// The largest that fits.
        limit: u32,
        /// The UMEM frame size.
        frame_size: u32,
    },
    /// Native mode was asked for and the driver refused it.
    NoNativeXdp {
        /// The errno of the attach.
        errno: i32,
    },
    /// No XDP mode attached.
    NoXdp {
        /// The errno of the last attach.
        errno: i32,
    },
    /// Zero-copy was asked for and the driver refused it.
    NoZeroCopy {
        /// The errno of the bind.
        errno: i32,
    },
    /// No AF_XDP socket could be bound.
    NoSocket {
        /// The errno of the bind.
        errno: i32,
    },
    /// The probe found XDP programs attached after it that were not there
    /// before.
    LeftAttached {
        /// Their ids.
        ids: Vec<u32>,
    },
}

impl Problem {
    /// Whether `xdpgw run` fails because of it.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Problem::Leftover { .. })
    }
}

fn holders_text(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{} (pid {})", h.comm, h.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = |errno: &i32| std::io::Error::from_raw_os_error(*errno);
        match self {
            Problem::Permission { what } => write!(f, "no privilege: {what}"),
            Problem::ForeignProgram {
                mode,
                id,
                name,
                holders,
            } => {
                write!(
                    f,
                    "another XDP program is attached ({mode} mode, id {id}, name {})",
                    name.as_deref()
                        .unwrap_or("unknown: needs CAP_SYS_ADMIN to look up")
                )?;
                if holders.is_empty() {
                    write!(f, "; xdpgw does not remove it (ip link set dev IF xdp off)")
                } else {
                    write!(f, ", held by {}", holders_text(holders))
                }
            }
            Problem::InUse { holders } if holders.is_empty() => {
                write!(f, "in use by another xdpgw")
            }
            Problem::InUse { holders } => {
                write!(f, "in use by {}", holders_text(holders))
            }
            Problem::Leftover { id, mode } => write!(
                f,
                "xdpgw's program (id {id}, {mode} mode) is attached with no process holding it; \
                 xdpgw run replaces it"
            ),
            Problem::MtuTooLarge {
                mtu,
                limit,
                frame_size,
            } if *limit == u32::from(super::MAX_MTU) => write!(
                f,
                "MTU {mtu} is too large: xdpgw takes at most {limit} (frames of {frame_size} \
                 bytes and larger ones in several)"
            ),
            Problem::MtuTooLarge {
                mtu,
                limit,
                frame_size,
            } => {
                write!(
                    f,
                    "MTU {mtu} is too large: frames must fit a {frame_size}-byte UMEM frame after \
                     the {XDP_HEADROOM}-byte XDP headroom (MTU at most {limit})"
                )?;
                Ok(())
            }
            Problem::NoNativeXdp { errno } => {
                write!(
                    f,
                    "native XDP was asked for (xdp_mode = \"native\") and the driver refuses it: {}",
                    e(errno)
                )?;
                if *errno == libc::ERANGE {
                    write!(
                        f,
                        " (the MTU is too large for native XDP with a program without \
                         multi-buffer support, which xdpgw uses up to MTU 3822; xdp_mode = \
                         \"generic\" takes it)"
                    )?;
                }
                Ok(())
            }
            Problem::NoXdp { errno } => write!(f, "the XDP program cannot attach: {}", e(errno)),
            Problem::NoZeroCopy { errno } => write!(
                f,
                "zero-copy was asked for (zero_copy = \"on\") and the driver refuses it: {}",
                e(errno)
            ),
            Problem::NoSocket { errno } => {
                write!(f, "an AF_XDP socket cannot bind to queue 0: {}", e(errno))
            }
            Problem::LeftAttached { ids } => write!(
                f,
                "XDP programs {ids:?} are attached after the probe and were not before; \
                 remove them with ip link set dev IF xdp off"
            ),
        }
    }
}

/// What [`probe`] found out about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The interface.
    pub ifname: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// The UMEM frame size the probe assumed.
    pub frame_size: u32,
    /// The largest MTU whose frames fit one UMEM frame, or with
    /// multi-buffer frames [`super::MAX_MTU`].
    pub mtu_limit: u32,
    /// Whether frames larger than a UMEM frame arrive in several (the
    /// probe's program and socket were set up so).
    pub multi_buffer: bool,
    /// The driver (`ethtool -i`), or the errno.
    pub driver: Result<DriverInfo, i32>,
    /// The channels (`ethtool -l`), or the errno (EOPNOTSUPP: the driver
    /// has no channel settings).
    pub channels: Result<Channels, i32>,
    /// Receive and transmit queues in `/sys/class/net/IF/queues` (`None`
    /// when that sysfs is not this network namespace's).
    pub sysfs_queues: Option<(u32, u32)>,
    /// How many queues `xdpgw run` opens: the channels' rx + combined
    /// count, 1 without channel settings.
    pub queues: u32,
    /// The XDP programs attached before the probe.
    pub programs: Vec<AttachedProgram>,
    /// Whether the program attaches in native mode.
    pub native: Check,
    /// Whether it attaches in generic mode.
    pub generic: Check,
    /// Whether a socket binds zero-copy to queue 0.
    pub zero_copy: Check,
    /// Whether a socket binds in copy mode to queue 0.
    pub copy: Check,
    /// The device's features (`ethtool -k`), or the errno.
    pub features: Result<Vec<Feature>, i32>,
    /// XDP programs attached after the probe that were not before (should
    /// always be empty).
    pub left_attached: Vec<u32>,
    /// The XDP mode the verdict is for.
    pub xdp_mode: XdpMode,
    /// The zero-copy setting the verdict is for.
    pub zero_copy_setting: ZeroCopy,
}

impl Probe {
    /// The feature named `name`, if the device has it.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.as_ref().ok()?.iter().find(|f| f.name == name)
    }

    /// Everything in the way of `xdpgw run` (and [`Problem::Leftover`],
    /// which is not), in the order `xdpgw run` would meet them.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.mtu > self.mtu_limit {
            out.push(Problem::MtuTooLarge {
                mtu: self.mtu,
                limit: self.mtu_limit,
                frame_size: self.frame_size,
            });
        }
        for p in &self.programs {
            if !p.is_ours() {
                out.push(Problem::ForeignProgram {
                    mode: p.mode,
                    id: p.id,
                    name: p.name.clone(),
                    holders: p.holders.clone(),
                });
            } else if !p.holders.is_empty() {
                out.push(Problem::InUse {
                    holders: p.holders.clone(),
                });
            } else {
                out.push(Problem::Leftover {
                    id: p.id,
                    mode: p.mode,
                });
            }
        }
        let denied = |c: &Check| matches!(c, Check::No { errno } if *errno == libc::EPERM || *errno == libc::EACCES);
        if [&self.native, &self.generic].into_iter().any(denied) {
            out.push(Problem::Permission {
                what: "loading and attaching an XDP program needs CAP_BPF and CAP_NET_ADMIN \
                       (or root)"
                    .into(),
            });
        }
        if [&self.zero_copy, &self.copy].into_iter().any(denied) {
            out.push(Problem::Permission {
                what: "AF_XDP sockets need CAP_NET_RAW, and their UMEM CAP_IPC_LOCK or a \
                       memlock limit (ulimit -l) that covers it"
                    .into(),
            });
        }
        if out.iter().any(|p| matches!(p, Problem::Permission { .. })) {
            return out;
        }
        match (self.xdp_mode, &self.native, &self.generic) {
            (XdpMode::Native, Check::No { errno }, _) => {
                out.push(Problem::NoNativeXdp { errno: *errno })
            }
            (XdpMode::Generic, _, Check::No { errno })
            | (XdpMode::Auto, Check::No { .. }, Check::No { errno }) => {
                out.push(Problem::NoXdp { errno: *errno })
            }
            _ => {}
        }
        match (self.zero_copy_setting, &self.zero_copy, &self.copy) {
            (ZeroCopy::On, Check::No { errno }, _) => {
                out.push(Problem::NoZeroCopy { errno: *errno })
            }
            (ZeroCopy::Off, _, Check::No { errno })
            | (ZeroCopy::Auto, Check::No { .. }, Check::No { errno }) => {
                out.push(Problem::NoSocket { errno: *errno })
            }
            _ => {}
        }
        if !self.left_attached.is_empty() {
            out.push(Problem::LeftAttached {
                ids: self.left_attached.clone(),
            });
        }
        out
    }

    /// The mode `xdpgw run` would open this interface in on its own (a
    /// group uses the fewest queues of its interfaces, and copy mode unless
    /// all bind zero-copy: see [`group_modes`]), or what is in the way.
    pub fn would_use(&self) -> Result<PortMode, Vec<Problem>> {
        let fatal: Vec<Problem> = self
            .problems()
            .into_iter()
            .filter(Problem::is_fatal)
            .collect();
        if !fatal.is_empty() {
            return Err(fatal);
        }
        // A leftover program of ours shows that its mode attaches.
        let leftover = self.programs.iter().find(|p| p.is_ours()).map(|p| p.mode);
        let native = self.native.is_yes() || leftover == Some(AttachMode::Native);
        let xdp = match self.xdp_mode {
            XdpMode::Native => XdpAttach::Native,
            XdpMode::Generic => XdpAttach::Generic,
            XdpMode::Auto if native => XdpAttach::Native,
            XdpMode::Auto => XdpAttach::Generic,
        };
        let zero_copy = match self.zero_copy_setting {
            ZeroCopy::On => true,
            ZeroCopy::Off => false,
            ZeroCopy::Auto => self.zero_copy.is_yes(),
        };
        Ok(PortMode {
            xdp,
            zero_copy,
            queues: self.queues,
        })
    }
}

/// The modes `xdpgw run` would open `probes` in as one
/// [`PortGroup`](super::PortGroup): each interface's XDP mode, the fewest
/// queues of them all, zero-copy only if every interface binds zero-copy.
pub fn group_modes(probes: &[Probe]) -> Vec<Result<PortMode, Vec<Problem>>> {
    let alone: Vec<_> = probes.iter().map(Probe::would_use).collect();
    let usable: Vec<PortMode> = alone
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .copied()
        .collect();
    let queues = usable.iter().map(|m| m.queues).min().unwrap_or(1);
    let zero_copy = !usable.is_empty() && usable.iter().all(|m| m.zero_copy);
    alone
        .into_iter()
        .map(|m| {
            m.map(|m| PortMode {
                queues,
                zero_copy,
                ..m
            })
        })
        .collect()
}

/// Probes `cfg.ifname` in the calling thread's network namespace (see the
/// module docs) for the modes `cfg` asks for. Fails only when the interface
/// cannot be looked up at all (`PortError::NoSuchInterface`, a netlink
/// error) or `cfg` is invalid; everything else is in the [`Probe`].
pub fn probe(cfg: &PortConfig) -> Result<Probe, PortError> {
    cfg.validate()?;
    let dev = lookup(cfg)?;
    let before = attached_ids(dev.ifindex);
    let programs = attached_programs(dev.ifindex);
    let driver = sys::ethtool_driver(&cfg.ifname).map(|d| DriverInfo {
        driver: d.driver,
        version: d.version,
        firmware: d.firmware,
        bus: d.bus,
    });
    let channels = sys::ethtool_channels(&cfg.ifname).map(|c| Channels {
        rx: (c.rx_count, c.max_rx),
        tx: (c.tx_count, c.max_tx),
        other: (c.other_count, c.max_other),
        combined: (c.combined_count, c.max_combined),
    });
    let features = sys::ethtool_features(&cfg.ifname).map(|fs| {
        fs.into_iter()
            .map(|f| Feature {
                name: f.name,
                active: f.active,
                changeable: f.changeable,
            })
            .collect()
    });
    let mtu = u32::from(dev.mtu);
    let mtu_limit = if cfg.multi_buffer {
        u32::from(super::MAX_MTU)
    } else {
        cfg.frame_size - XDP_HEADROOM - L2_OVERHEAD
    };

    let in_use = programs
        .iter()
        .any(|p| p.is_ours() && !p.holders.is_empty());
    let (native, generic) = if let Some(p) = programs.first() {
        let why = format!(
            "XDP program {} (id {}) is attached; the probe does not replace it",
            p.name.as_deref().unwrap_or("?"),
            p.id
        );
        (Check::Skipped { why: why.clone() }, Check::Skipped { why })
    } else {
        probe_attach(&dev, cfg.multi_buffer)
    };
    let (zero_copy, copy) = if in_use {
        let why = "a running xdpgw holds the queues".to_owned();
        (Check::Skipped { why: why.clone() }, Check::Skipped { why })
    } else {
        let zero_copy = if cfg.zero_copy == ZeroCopy::Off {
            Check::Skipped {
                why: "zero-copy is off".into(),
            }
        } else {
            probe_bind(cfg, &dev, true)
        };
        (zero_copy, probe_bind(cfg, &dev, false))
    };

    let left_attached = attached_ids(dev.ifindex)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    Ok(Probe {
        ifname: cfg.ifname.clone(),
        ifindex: dev.ifindex,
        mac: dev.mac,
        mtu,
        frame_size: cfg.frame_size,
        mtu_limit,
        multi_buffer: cfg.multi_buffer,
        driver,
        channels,
        sysfs_queues: sysfs_queues(&cfg.ifname, dev.ifindex),
        queues: dev.queues,
        programs,
        native,
        generic,
        zero_copy,
        copy,
        features,
        left_attached,
        xdp_mode: cfg.xdp_mode,
        zero_copy_setting: cfg.zero_copy,
    })
}

/// The ids of the programs attached to `ifindex` (empty if unknown).
fn attached_ids(ifindex: u32) -> Vec<u32> {
    match netlink::link_by_index(ifindex) {
        Ok(l) => [l.xdp_drv_prog, l.xdp_skb_prog, l.xdp_hw_prog]
            .into_iter()
            .filter(|&id| id != 0)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The programs attached to `ifindex`, with their names and holders where
/// the privileges allow.
fn attached_programs(ifindex: u32) -> Vec<AttachedProgram> {
    let Ok(link) = netlink::link_by_index(ifindex) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (mode, id) in [
        (AttachMode::Native, link.xdp_drv_prog),
        (AttachMode::Generic, link.xdp_skb_prog),
        (AttachMode::Offload, link.xdp_hw_prog),
    ] {
        if id == 0 {
            continue;
        }
        let name = sys::prog_fd_by_id(id)
            .and_then(|fd| sys::prog_info(&fd))
            .ok()
            .map(|i| i.name);
        let link = find_link(ifindex, id);
        let holders = link.map(link_holders).unwrap_or_default();
        out.push(AttachedProgram {
            mode,
            id,
            name,
            link,
            holders,
        });
    }
    out
}

/// The id of the XDP link on `ifindex` running `prog_id`, if any (needs
/// CAP_SYS_ADMIN to walk the links).
fn find_link(ifindex: u32, prog_id: u32) -> Option<u32> {
    let mut id = 0;
    for _ in 0..1_000_000 {
        id = sys::link_next_id(id).ok()??;
        let Ok(fd) = sys::link_fd_by_id(id) else {
            continue;
        };
        let Ok(info) = sys::link_info(&fd) else {
            continue;
        };
        if info.link_type == sys::BPF_LINK_TYPE_XDP
            && info.xdp_ifindex == ifindex
            && info.prog_id == prog_id
        {
            return Some(info.id);
        }
    }
    None
}

/// The processes (other than this one) with a descriptor of BPF link
/// `link_id` open: `/proc/PID/fdinfo/FD` says `link_id:\tN` for a link.
fn link_holders(link_id: u32) -> Vec<Holder> {
    let me = std::process::id();
    let want = format!("link_id:\t{link_id}");
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|t| t.lines().any(|l| l == want))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push(Holder {
                pid,
                comm: comm.trim().to_owned(),
            });
        }
    }
    out
}

/// Attaches the program in each mode and detaches it at once.
fn probe_attach(dev: &Device, frags: bool) -> (Check, Check) {
    let loaded = if frags {
        bpf::load_frags(dev.queues)
    } else {
        bpf::load(dev.queues)
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            let errno = match e {
                PortError::Permission { .. } => libc::EPERM,
                PortError::Bpf { errno, .. } | PortError::Verifier { errno, .. } => errno,
                _ => libc::EIO,
            };
            return (Check::No { errno }, Check::No { errno });
        }
    };
    let once = |mode: XdpAttach| -> Check {
        match sys::link_create_xdp(&loaded.prog, dev.ifindex, bpf::mode_flags(mode)) {
            Ok(link) => {
                detach(link);
                Check::Yes
            }
            Err(errno) => Check::No { errno },
        }
    };
    let native = once(XdpAttach::Native);
    let generic = once(XdpAttach::Generic);
    (native, generic)
}

/// Detaches a probe's link now (closing it would too, but only once the
/// last reference goes).
fn detach(link: OwnedFd) {
    let _ = sys::link_detach(&link);
    drop(link);
}

/// Binds one socket to queue 0, zero-copy or copy, and closes it.
fn probe_bind(cfg: &PortConfig, dev: &Device, zero_copy: bool) -> Check {
    let member = Member {
        ifname: cfg.ifname.clone(),
        ifindex: dev.ifindex,
        queue_id: 0,
    };
    match open_umem(
        std::slice::from_ref(&member),
        cfg.frame_size,
        PROBE_FRAMES,
        &[zero_copy],
        cfg.multi_buffer,
    ) {
        Ok(_) => Check::Yes,
        Err(PortError::Bind { errno, .. } | PortError::Socket { errno, .. }) => Check::No { errno },
        Err(PortError::Permission { .. }) => Check::No { errno: libc::EPERM },
        Err(_) => Check::No { errno: libc::EIO },
    }
}

/// Counts `rx-*` and `tx-*` in `/sys/class/net/IF/queues`, if that sysfs
/// shows this namespace's interface (its `ifindex` file matches).
fn sysfs_queues(ifname: &str, ifindex: u32) -> Option<(u32, u32)> {
    let dir = std::path::Path::new("/sys/class/net").join(ifname);
    let index: u32 = std::fs::read_to_string(dir.join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if index != ifindex {
        return None;
    }
    let (mut rx, mut tx) = (0, 0);
    for entry in std::fs::read_dir(dir.join("queues")).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("rx-") {
            rx += 1;
        } else if name.starts_with("tx-") {
            tx += 1;
        }
    }
    Some((rx, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_of(native: Check, zero_copy: Check) -> Probe {
        Probe {
            ifname: "lan0".into(),
            ifindex: 3,
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            frame_size: 2048,
            mtu_limit: 1774,
            multi_buffer: false,
            driver: Ok(DriverInfo::default()),
            channels: Err(libc::EOPNOTSUPP),
            sysfs_queues: Some((1, 1)),
            queues: 1,
            programs: Vec::new(),
            native,
            generic: Check::Yes,
            zero_copy,
            copy: Check::Yes,
            features: Ok(Vec::new()),
            left_attached: Vec::new(),
            xdp_mode: XdpMode::Auto,
            zero_copy_setting: ZeroCopy::Auto,
        }
    }

    #[test]
    fn verdicts_follow_the_settings() {
        let p = probe_of(Check::Yes, Check::No { errno: 95 });
        assert_eq!(
            p.would_use().map(|m| m.to_string()),
            Ok("native xdp, copy, 1 queue".to_owned())
        );
        let p = probe_of(Check::No { errno: 95 }, Check::Yes);
        assert_eq!(
            p.would_use().map(|m| m.to_string()),
            Ok("generic xdp, zero-copy, 1 queue".to_owned())
        );
        let p = Probe {
            xdp_mode: XdpMode::Native,
            ..probe_of(Check::No { errno: 95 }, Check::Yes)
        };
        assert_eq!(p.would_use(), Err(vec![Problem::NoNativeXdp { errno: 95 }]));
        let p = Probe {
            zero_copy_setting: ZeroCopy::On,
            ..probe_of(Check::Yes, Check::No { errno: 95 })
        };
        assert_eq!(p.would_use(), Err(vec![Problem::NoZeroCopy { errno: 95 }]));
    }

    #[test]
    fn foreign_programs_and_permissions_are_fatal() {
        let mut p = probe_of(
            Check::Skipped { why: "x".into() },
            Check::No { errno: libc::EPERM },
        );
        p.programs.push(AttachedProgram {
            mode: AttachMode::Generic,
            id: 7,
            name: Some("other_fw".into()),
            link: None,
            holders: Vec::new(),
        });
        let problems = p.would_use().expect_err("not usable");
        assert!(matches!(problems[0], Problem::ForeignProgram { id: 7, .. }));
        assert!(matches!(problems[1], Problem::Permission { .. }));
        assert!(
            problems[0].to_string().contains("other_fw"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_leftover_of_ours_is_not_fatal() {
        let mut p = probe_of(Check::Skipped { why: "x".into() }, Check::No { errno: 95 });
        p.programs.push(AttachedProgram {
            mode: AttachMode::Native,
            id: 9,
            name: Some(bpf::PROG_NAME.into()),
            link: None,
            holders: Vec::new(),
        });
        assert_eq!(
            p.would_use().map(|m| m.to_string()),
            Ok("native xdp, copy, 1 queue".to_owned())
        );
        p.programs[0].holders.push(Holder {
            pid: 42,
            comm: "xdpgw".into(),
        });
        let problems = p.would_use().expect_err("in use");
        assert_eq!(problems[0].to_string(), "in use by xdpgw (pid 42)");
    }

    #[test]
    fn mtu_limit_and_group() {
        let mut p = probe_of(Check::Yes, Check::Yes);
        p.mtu = 9000;
        assert!(matches!(
            p.would_use().expect_err("too large")[0],
            Problem::MtuTooLarge { limit: 1774, .. }
        ));
        let a = Probe {
            queues: 4,
            ..probe_of(Check::Yes, Check::Yes)
        };
        let b = Probe {
            queues: 2,
            ..probe_of(Check::Yes, Check::No { errno: 95 })
        };
        let modes = group_modes(&[a, b]);
        let text: Vec<String> = modes
            .iter()
            .map(|m| m.as_ref().map(ToString::to_string).unwrap_or_default())
            .collect();
        assert_eq!(
            text,
            ["native xdp, copy, 2 queues", "native xdp, copy, 2 queues"]
        );
    }
}
