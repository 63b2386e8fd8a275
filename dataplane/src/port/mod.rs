//! Ports: AF_XDP sockets on real interfaces. All of the crate's unsafe code
//! lives under this module.
//!
//! # Design
//!
//! A [`Port`] takes over one interface:
//!
//! - **XDP program** (`port/bpf.rs`): six raw eBPF instructions,
//!   `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`, over an XSKMAP
//!   with one slot per rx queue of the device. Queues without a socket (when
//!   [`PortConfig::queues`] opens fewer) fall back to the kernel stack. It is
//!   attached with `BPF_LINK_CREATE` (attach type `BPF_XDP`), so the kernel
//!   detaches it when the link descriptor closes: on [`Port`]'s drop, or when
//!   the process dies however it dies. When `BPF_LINK_CREATE` fails with
//!   `EBUSY`/`EEXIST` because a program is attached, and that program is
//!   ours (named [`PROG_NAME`]) — left by an earlier run the legacy way
//!   (netlink `IFLA_XDP`), or a link someone still holds — it is detached
//!   (netlink `IFLA_XDP_FD = -1` in its mode; for a link, which refuses that
//!   with `EBUSY`, the link is found by walking `BPF_LINK_GET_NEXT_ID` and
//!   `BPF_LINK_DETACH`ed) and the attach retried once. A foreign program is
//!   never removed: [`PortError::XdpBusy`] names it.
//! - **Mode**: [`XdpMode::Auto`] tries native (driver) mode, then generic
//!   (skb) mode when the driver has no XDP support (`EOPNOTSUPP`) or not at
//!   this MTU (`ERANGE`).
//!   [`ZeroCopy::Auto`] tries a zero-copy bind, then a copy bind when the
//!   driver refuses (`EOPNOTSUPP`, as veth does). Sockets are bound before
//!   the program is attached (libxdp's order): a queue still held by a live
//!   process fails our bind, so we never replace a running instance's
//!   program.
//! - **Sockets and UMEMs**: one AF_XDP socket per queue, **each with its own
//!   UMEM** of [`PortConfig::frames`] frames. No frame ever moves between
//!   queues of one interface (each queue has its own fill and completion
//!   ring, and the kernel returns a frame on the queue it was filled on), so
//!   sharing one UMEM across them would buy nothing and would couple the
//!   workers: with a UMEM per socket a [`Queue`] owns its memory outright
//!   and is `Send` with no shared state. Sockets bind with
//!   `XDP_USE_NEED_WAKEUP`, and a bind that fails with `EBUSY` (the queue is
//!   still held by a socket of a process that just exited: the kernel tears
//!   it down asynchronously, ~100 ms) is retried every 10 ms, 100 times.
//!   Each socket's descriptor is put in the XSKMAP at its queue index.
//! - **I/O** ([`Queue`]): batch-oriented, allocation-free: `rx_batch` lends
//!   each received frame to a callback which rewrites it in place and says
//!   [`RxVerdict::Tx`] (send it back out of the same interface, zero-copy) or
//!   [`RxVerdict::Drop`]; `tx_copy` sends a copy of a frame produced
//!   elsewhere (the frame of another interface's queue, or a generated
//!   packet); `flush` commits, kicks, reaps and refills.
//!
//! Forwarding between interfaces with the copy design is one memcpy:
//! `lan.rx_batch(n, |f, len| { rewrite(f); wan.tx_copy(&f[..len]); RxVerdict::Drop })`.
//! [`PortGroup`] removes that copy: it opens several interfaces with, for
//! each queue index, one UMEM shared by the sockets of all of them
//! (`XDP_SHARED_UMEM` across devices), so a frame received on one interface
//! is put on another's TX ring as it is.
//!
//! # Threads and namespaces
//!
//! [`Port::open`] must run on a thread in the interface's network namespace
//! (netlink, ethtool and `BPF_LINK_CREATE` all resolve names and indices in
//! the calling thread's namespace). Queues work from any thread afterwards:
//! a socket keeps the namespace it was created in. [`enter_netns`] moves the
//! calling thread.
//!
//! # Permissions
//!
//! Root, or CAP_BPF + CAP_NET_ADMIN (program, map, link) + CAP_NET_RAW
//! (AF_XDP sockets) + CAP_IPC_LOCK or a memlock limit of at least the UMEM
//! size (`frames * frame_size` per queue); failures name what is missing.
//!
//! # Known limits
//!
//! - One buffer per frame: no multi-buffer (`XDP_USE_SG`) frames, so the
//!   MTU must fit a UMEM frame (minus the 256-byte XDP headroom in copy
//!   mode), and Linux takes UMEM frames of at most a page ([`FRAME_SIZES`]):
//!   MTU 3822 at most. veth takes native XDP only up to MTU 3506 without a
//!   multi-buffer program (ERANGE above); [`XdpMode::Auto`] then attaches in
//!   generic mode.
//! - xdpilone's ring index arithmetic uses non-wrapping `+=` on the 32-bit
//!   ring heads: a debug build (overflow checks on) panics after 2^32
//!   frames through one ring; release builds wrap as the kernel does.

mod bpf;
#[allow(unsafe_code)]
mod group;
mod mem;
mod netlink;
pub mod probe;
#[allow(unsafe_code)]
mod queue;
#[allow(unsafe_code)]
pub mod raw;
#[allow(unsafe_code)]
mod sys;
#[allow(unsafe_code)]
mod tun;
#[allow(unsafe_code)]
mod umem;
#[allow(unsafe_code)]
mod xsk;

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

pub use bpf::PROG_NAME;
pub use group::{ForwardVerdict, GroupQueue, PortGroup};
pub use mem::{MemHost, MemQueue};
pub use netlink::{LinkEvent, LinkMonitor};
pub use probe::{probe, Probe};
pub use queue::{wait_any, wait_readable, FrameAccounting, Queue, QueueStats, RxVerdict};
pub use tun::{HostDeviceConfig, HostPath, HostQueue, HostRoute, HostRoute6};

/// What the worker driver ([`crate::worker::Driver`]) needs of a queue it
/// owns: queue index `q` of every interface ([`GroupQueue`] on real
/// interfaces, [`MemQueue`] in memory).
pub trait PortQueue {
    /// How many interfaces the queue spans (ports `0..ports()`, in the
    /// gateway's interface order).
    fn ports(&self) -> usize;

    /// Receives up to `max` frames from each interface in turn. Each batch
    /// read off a ring is shown to `peek(ctx, port, frame)` (the received
    /// bytes) before `f(ctx, port, frame, len)` sees any of its frames:
    /// `frame` runs from the packet's first byte to the end of its buffer
    /// (a rewrite may grow the packet), `len` is the received length.
    /// Frames `f` sends to a port go out of it as they are. Returns how many
    /// frames were received.
    fn rx_batch_peeked<C>(
        &mut self,
        max: usize,
        ctx: &mut C,
        peek: impl FnMut(&mut C, usize, &[u8]),
        f: impl FnMut(&mut C, usize, &mut [u8], usize) -> ForwardVerdict,
    ) -> usize;

    /// Queues a copy of `frame` for transmission on interface `port`; false
    /// (counted by the queue) when it cannot.
    fn tx_copy(&mut self, port: usize, frame: &[u8]) -> bool;

    /// Sends what was queued, reaps completions, refills the receive side.
    fn flush(&mut self);
}

/// The host path as the worker driver sees it: one device per interface,
/// carrying IPv4 packets between the gateway host's stack and the worker
/// ([`HostQueue`] on TUN devices, [`MemHost`] in memory).
pub trait HostPort {
    /// How many devices (one per interface, by interface index).
    fn devices(&self) -> usize;
    /// Hands an IPv4 packet to the host as arriving through device `dev`;
    /// false if the device refused it.
    fn deliver(&mut self, dev: usize, packet: &[u8]) -> bool;
    /// Reads one IPv4 packet the host sent through device `dev` into
    /// `buf`; its length, or None when there is none (never blocks).
    fn receive(&mut self, dev: usize, buf: &mut [u8]) -> Option<usize>;
}

impl HostPort for HostQueue {
    fn devices(&self) -> usize {
        self.len()
    }
    fn deliver(&mut self, dev: usize, packet: &[u8]) -> bool {
        HostQueue::deliver(self, dev, packet)
    }
    fn receive(&mut self, dev: usize, buf: &mut [u8]) -> Option<usize> {
        HostQueue::receive(self, dev, buf)
    }
}

/// No host path: a worker whose gateway has none drives `Option::<NoHost>::None`.
#[derive(Debug)]
pub enum NoHost {}

impl HostPort for NoHost {
    fn devices(&self) -> usize {
        match *self {}
    }
    fn deliver(&mut self, _: usize, _: &[u8]) -> bool {
        match *self {}
    }
    fn receive(&mut self, _: usize, _: &mut [u8]) -> Option<usize> {
        match *self {}
    }
}

use umem::{FramePool, UmemArea};
use xsk::Member;

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Whether to bind the sockets in zero-copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy if the driver supports it (in native mode), else copy.
    #[default]
    Auto,
    /// Zero-copy only.
    On,
    /// Copy only.
    Off,
}

/// The XDP mode a port ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl fmt::Display for XdpAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpAttach::Native => "native",
            XdpAttach::Generic => "generic",
        })
    }
}

/// What to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The interface, in the calling thread's network namespace.
    pub ifname: String,
    /// How many queues (0..n) to open; default: all rx queues of the device.
    pub queues: Option<u32>,
    /// How to attach the XDP program.
    pub xdp_mode: XdpMode,
    /// Zero-copy or copy sockets.
    pub zero_copy: ZeroCopy,
    /// UMEM frame size: 2048 or 4096.
    pub frame_size: u32,
    /// UMEM frames per socket (at least 64); half of them are kept on the
    /// fill ring, the rest serve transmission.
    pub frames: u32,
    /// Frames larger than a UMEM frame arrive and leave in several
    /// ([`PortGroup`] only: multi-buffer AF_XDP, `XDP_USE_SG`, Linux 6.6+,
    /// the program loaded with BPF_F_XDP_HAS_FRAGS); MTU up to [`MAX_MTU`].
    pub multi_buffer: bool,
}

impl PortConfig {
    /// The defaults for `ifname`: all queues, auto modes, 4096 frames of
    /// 2048 bytes per queue.
    pub fn new(ifname: impl Into<String>) -> PortConfig {
        PortConfig {
            ifname: ifname.into(),
            queues: None,
            xdp_mode: XdpMode::Auto,
            zero_copy: ZeroCopy::Auto,
            frame_size: 2048,
            frames: 4096,
            multi_buffer: false,
        }
    }

    fn validate(&self) -> Result<(), PortError> {
        let invalid = |what: String| Err(PortError::InvalidConfig { what });
        if self.ifname.is_empty()
            || self.ifname.len() >= libc::IFNAMSIZ
            || self
                .ifname
                .bytes()
                .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return invalid(format!(
                "interface name {:?}: 1 to {} bytes, no NUL, '/' or space",
                self.ifname,
                libc::IFNAMSIZ - 1
            ));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return invalid(format!(
                "frame_size {}: must be 2048 or 4096",
                self.frame_size
            ));
        }
        if !(64..=1 << 20).contains(&self.frames) {
            return invalid(format!("frames {}: must be 64 to 1048576", self.frames));
        }
        if self.queues == Some(0) {
            return invalid("queues: at least 1".into());
        }
        Ok(())
    }
}

/// The mode a port runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMode {
    /// How the XDP program is attached.
    pub xdp: XdpAttach,
    /// Whether the sockets are bound zero-copy.
    pub zero_copy: bool,
    /// How many queues have a socket.
    pub queues: u32,
}

impl fmt::Display for PortMode {
    /// E.g. "native xdp, copy, 1 queue".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} xdp, {}, {} queue{}",
            self.xdp,
            if self.zero_copy { "zero-copy" } else { "copy" },
            self.queues,
            if self.queues == 1 { "" } else { "s" }
        )
    }
}

/// Why a port could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    /// The configuration cannot work.
    InvalidConfig {
        /// What is wrong.
        what: String,
    },
    /// No interface of that name in the calling thread's namespace.
    NoSuchInterface {
        /// The name asked for.
        name: String,
    },
    /// A privilege is missing.
    Permission {
        /// What needs which capability.
        what: String,
    },
    /// A `bpf(2)` command failed.
    Bpf {
        /// The command.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// The verifier rejected the program.
    Verifier {
        /// The errno of BPF_PROG_LOAD.
        errno: i32,
        /// The verifier's log.
        log: String,
    },
    /// An rtnetlink request failed.
    Netlink {
        /// The request.
        op: &'static str,
        /// The errno.
        errno: i32,
        /// The kernel's extended-ack message, if any.
        msg: Option<String>,
    },
    /// Attaching the program failed.
    Attach {
        /// The interface.
        ifname: String,
        /// The mode tried last.
        mode: XdpAttach,
        /// The errno of BPF_LINK_CREATE.
        errno: i32,
    },
    /// Another XDP program, not ours, is attached; we do not remove it.
    XdpBusy {
        /// The interface.
        ifname: String,
        /// The attached program's id (`bpftool prog show id N`).
        prog_id: u32,
        /// Its name.
        prog_name: String,
    },
    /// Setting up an AF_XDP socket (UMEM, rings, mappings) failed.
    Socket {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The step.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// Binding an AF_XDP socket to its queue failed (after the EBUSY retries).
    Bind {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// Whether zero-copy was asked for.
        zero_copy: bool,
        /// The errno.
        errno: i32,
    },
    /// Creating or configuring a host-path (TUN) device failed.
    HostPath {
        /// The device.
        ifname: String,
        /// The step.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
}

fn strerror(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortError::InvalidConfig { what } => write!(f, "invalid port configuration: {what}"),
            PortError::NoSuchInterface { name } => write!(f, "no interface named {name:?}"),
            PortError::Permission { what } => write!(f, "permission denied: {what}"),
            PortError::Bpf { op, errno } => write!(f, "bpf({op}): {}", strerror(*errno)),
            PortError::Verifier { errno, log } => write!(
                f,
                "the kernel rejected the XDP program ({}): {log}",
                strerror(*errno)
            ),
            PortError::Netlink { op, errno, msg } => {
                write!(f, "netlink {op}: {}", strerror(*errno))?;
                match msg {
                    Some(msg) => write!(f, " ({msg})"),
                    None => Ok(()),
                }
            }
            PortError::Attach {
                ifname,
                mode,
                errno,
            } => {
                write!(
                    f,
                    "attaching the XDP program to {ifname} in {mode} mode: {}",
                    strerror(*errno)
                )?;
                if *errno == libc::ERANGE {
                    write!(
                        f,
                        " (the driver refuses native XDP at this MTU for a program without \
                         multi-buffer support, which xdpgw uses up to MTU 3822; xdp_mode = \
                         \"generic\" takes it)"
                    )?;
                }
                Ok(())
            }
            PortError::XdpBusy {
                ifname,
                prog_id,
                prog_name,
            } => write!(
                f,
                "{ifname} already runs XDP program {prog_name:?} (id {prog_id}), which is not \
                 xdpgw's; remove it first (ip link set dev {ifname} xdp off)"
            ),
            PortError::Socket {
                ifname,
                queue,
                op,
                errno,
            } => write!(
                f,
                "AF_XDP socket for {ifname} queue {queue}: {op}: {}",
                strerror(*errno)
            ),
            PortError::Bind {
                ifname,
                queue,
                zero_copy,
                errno,
            } => write!(
                f,
                "binding the AF_XDP socket to {ifname} queue {queue} ({}): {}",
                if *zero_copy { "zero-copy" } else { "copy" },
                strerror(*errno)
            ),
            PortError::HostPath { ifname, op, errno } => {
                write!(f, "host path device {ifname}: {op}: {}", strerror(*errno))
            }
        }
    }
}

impl std::error::Error for PortError {}

/// An interface taken over with AF_XDP: the XDP program's link, its map and
/// the queues' sockets. Dropping it detaches the program (the link closes);
/// queues already handed out keep their sockets until they are dropped.
pub struct Port {
    // Declared first, dropped first: the program goes before the sockets.
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    queues: Vec<Queue>,
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u16,
    mode: PortMode,
}

/// What the device and config say before any socket exists.
struct Device {
    ifindex: u32,
    mac: [u8; 6],
    mtu: u16,
    /// Rx queues of the device.
    queues: u32,
}

fn lookup(cfg: &PortConfig) -> Result<Device, PortError> {
    let link = netlink::link_by_name(&cfg.ifname).map_err(|e| match e.errno {
        libc::ENODEV => PortError::NoSuchInterface {
            name: cfg.ifname.clone(),
        },
        errno => PortError::Netlink {
            op: "RTM_GETLINK",
            errno,
            msg: e.msg,
        },
    })?;
    // Devices without ETHTOOL_GCHANNELS are single-queue.
    let queues = match sys::ethtool_channels(&cfg.ifname) {
        Ok(ch) => (ch.rx_count + ch.combined_count).max(1),
        Err(_) => 1,
    };
    Ok(Device {
        ifindex: link.ifindex,
        mac: link.mac,
        mtu: u16::try_from(link.mtu).unwrap_or(u16::MAX),
        queues,
    })
}

/// Bytes the kernel keeps in front of a received frame (XDP_PACKET_HEADROOM).
const XDP_HEADROOM: u32 = 256;

/// The largest MTU whose frames (Ethernet header and one VLAN tag
/// included) fit a `frame_size`-byte UMEM frame after the XDP headroom.
pub fn mtu_limit(frame_size: u32) -> u16 {
    u16::try_from(frame_size.saturating_sub(XDP_HEADROOM + 18)).unwrap_or(u16::MAX)
}

/// The UMEM frame sizes xdpgw uses. Linux takes none larger than a page:
/// `xdp_umem_reg` refuses a chunk_size above PAGE_SIZE with EINVAL (measured
/// on Linux 6.18, aligned or unaligned, with or without huge pages), so
/// larger frames need multi-buffer AF_XDP (XDP_USE_SG), which xdpgw does
/// not do yet.
pub const FRAME_SIZES: [u32; 2] = [2048, 4096];

/// The largest UMEM frame size ([`FRAME_SIZES`]).
pub const MAX_FRAME_SIZE: u32 = 4096;

/// The smallest of [`FRAME_SIZES`] whose frames hold an MTU of `mtu`; None
/// when not even the largest does.
pub fn frame_size_for(mtu: u16) -> Option<u32> {
    FRAME_SIZES.into_iter().find(|&f| mtu <= mtu_limit(f))
}

/// The MTU of interface `ifname` now (RTM_GETLINK, in the calling thread's
/// network namespace).
pub fn interface_mtu(ifname: &str) -> Result<u16, PortError> {
    let cfg = PortConfig::new(ifname);
    lookup(&cfg).map(|d| d.mtu)
}

/// The largest MTU with multi-buffer frames ([`PortConfig::multi_buffer`]):
/// a jumbo frame of 9000 bytes and then some, in at most 5 buffers of 2048
/// bytes (Linux takes up to 17).
pub const MAX_MTU: u16 = 9216;

/// Refuses an MTU above [`MAX_MTU`] (multi-buffer frames).
fn check_mtu_multi_buffer(ifname: &str, dev: &Device) -> Result<(), PortError> {
    if dev.mtu > MAX_MTU {
        return Err(PortError::InvalidConfig {
            what: format!(
                "{ifname} has MTU {}: xdpgw takes at most {MAX_MTU} \
                 (`ip link set {ifname} mtu {MAX_MTU}`)",
                dev.mtu
            ),
        });
    }
    Ok(())
}

/// Refuses an MTU whose frames do not fit one UMEM frame after the headroom
/// (we do not use multi-buffer frames; the kernel would drop them).
fn check_mtu(frame_size: u32, ifname: &str, dev: &Device) -> Result<(), PortError> {
    // Ethernet header and one VLAN tag.
    const L2: u32 = 18;
    let largest = u32::from(dev.mtu) + L2;
    let room = frame_size - XDP_HEADROOM;
    if largest > room {
        let max = room - L2;
        let what = match frame_size_for(dev.mtu) {
            Some(fits) => format!(
                "{ifname} has MTU {}: frames up to {largest} bytes do not fit a {frame_size}-byte \
                 UMEM frame ({room} after the XDP headroom); set frame_size = {fits} in \
                 [dataplane] (or leave it out: it is chosen from the MTUs), or the MTU to {max} \
                 or less (`ip link set {ifname} mtu {max}`)",
                dev.mtu
            ),
            None => format!(
                "{ifname} has MTU {}: frames up to {largest} bytes do not fit the largest UMEM \
                 frame Linux takes ({MAX_FRAME_SIZE} bytes, a page; {} after the XDP headroom): \
                 set its MTU to {} or less (`ip link set {ifname} mtu {}`), or open it with \
                 multi-buffer frames (XDP_USE_SG: PortConfig::multi_buffer, in a PortGroup)",
                dev.mtu,
                MAX_FRAME_SIZE - XDP_HEADROOM,
                mtu_limit(MAX_FRAME_SIZE),
                mtu_limit(MAX_FRAME_SIZE)
            ),
        };
        return Err(PortError::InvalidConfig { what });
    }
    Ok(())
}

/// Attaches in `mode`, falling back from native to generic for Auto.
fn attach(
    prog: &OwnedFd,
    dev: &Device,
    cfg: &PortConfig,
) -> Result<(OwnedFd, XdpAttach), PortError> {
    let tries: &[XdpAttach] = match cfg.xdp_mode {
        XdpMode::Auto => &[XdpAttach::Native, XdpAttach::Generic],
        XdpMode::Native => &[XdpAttach::Native],
        XdpMode::Generic => &[XdpAttach::Generic],
    };
    let mut last = None;
    for &mode in tries {
        match bpf::attach(prog, dev.ifindex, &cfg.ifname, mode) {
            Ok(link) => return Ok((link, mode)),
            // ERANGE: the driver takes native XDP only up to an MTU
            // (veth without a multi-buffer program: a page's worth, MTU
            // 3506 measured on Linux 6.18); generic mode takes any.
            Err(PortError::Attach {
                errno: libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE,
                ..
            }) if mode == XdpAttach::Native && tries.len() > 1 => {}
            Err(e) => return Err(e),
        }
        last = Some(mode);
    }
    Err(PortError::Attach {
        ifname: cfg.ifname.clone(),
        mode: last.unwrap_or(XdpAttach::Generic),
        errno: libc::EOPNOTSUPP,
    })
}

/// Zero-copy attempts for a config, in order.
fn zero_copy_tries(cfg: ZeroCopy) -> &'static [bool] {
    match cfg {
        ZeroCopy::On => &[true],
        ZeroCopy::Off => &[false],
        ZeroCopy::Auto => &[true, false],
    }
}

/// Builds the sockets for `members` on one fresh UMEM of
/// `frames * members.len()` frames, trying each zero-copy setting in turn.
fn open_umem(
    members: &[Member],
    frame_size: u32,
    frames: u32,
    tries: &[bool],
    multi_buffer: bool,
) -> Result<(Arc<sys::Mapping>, Vec<xsk::Xsk>), PortError> {
    let count = members.len().max(1);
    let bytes = (frames as usize)
        .checked_mul(frame_size as usize)
        .and_then(|b| b.checked_mul(count))
        .ok_or_else(|| PortError::InvalidConfig {
            what: "UMEM size overflows".into(),
        })?;
    let mapping = Arc::new(sys::Mapping::anonymous(bytes).map_err(|errno| {
        let first = members.first();
        PortError::Socket {
            ifname: first.map(|m| m.ifname.clone()).unwrap_or_default(),
            queue: first.map(|m| m.queue_id).unwrap_or(0),
            op: "mmap(UMEM)",
            errno,
        }
    })?);
    let mut last = None;
    for (i, &zc) in tries.iter().enumerate() {
        match xsk::build(&mapping, frame_size, frames, members, zc, multi_buffer) {
            Ok(xsks) => return Ok((mapping, xsks)),
            Err(PortError::Bind {
                errno: libc::EOPNOTSUPP | libc::EPROTONOSUPPORT,
                ..
            }) if zc && i + 1 < tries.len() => {}
            Err(e) => return Err(e),
        }
        last = Some(zc);
    }
    Err(PortError::Bind {
        ifname: members
            .first()
            .map(|m| m.ifname.clone())
            .unwrap_or_default(),
        queue: 0,
        zero_copy: last.unwrap_or(false),
        errno: libc::EOPNOTSUPP,
    })
}

impl Port {
    /// Opens `cfg.ifname` in the calling thread's network namespace: loads
    /// and attaches the program, binds one socket per queue, and fills the
    /// fill rings. See the module docs for the modes tried.
    pub fn open(cfg: &PortConfig) -> Result<Port, PortError> {
        cfg.validate()?;
        let dev = lookup(cfg)?;
        let queues = cfg.queues.unwrap_or(dev.queues);
        if queues > dev.queues {
            return Err(PortError::InvalidConfig {
                what: format!(
                    "queues {queues}: {} has {} rx queue{}",
                    cfg.ifname,
                    dev.queues,
                    if dev.queues == 1 { "" } else { "s" }
                ),
            });
        }
        check_mtu(cfg.frame_size, &cfg.ifname, &dev)?;
        let loaded = bpf::load(dev.queues)?;
        // Sockets first, program last (as libxdp does): a queue still bound
        // by a live process (another xdpgw on this interface) fails the bind
        // with EBUSY before we would replace that process's program.
        let mut tries = zero_copy_tries(cfg.zero_copy);
        let mut out = Vec::with_capacity(queues as usize);
        for queue_id in 0..queues {
            let member = Member {
                ifname: cfg.ifname.clone(),
                ifindex: dev.ifindex,
                queue_id,
            };
            let (mapping, xsks) = open_umem(
                std::slice::from_ref(&member),
                cfg.frame_size,
                cfg.frames,
                tries,
                false,
            )?;
            for xsk in xsks {
                // Later queues use the mode the first one settled on.
                tries = if xsk.zero_copy() { &[true] } else { &[false] };
                insert(&loaded.map, &xsk, &cfg.ifname)?;
                let pool = FramePool::new(UmemArea::new(mapping.clone(), cfg.frame_size));
                out.push(Queue::new(xsk, pool, cfg.ifname.clone()));
            }
        }
        let (link, xdp) = attach(&loaded.prog, &dev, cfg)?;
        let zero_copy = out.first().is_some_and(Queue::zero_copy);
        Ok(Port {
            _link: link,
            _prog: loaded.prog,
            _map: loaded.map,
            queues: out,
            ifname: cfg.ifname.clone(),
            ifindex: dev.ifindex,
            mac: dev.mac,
            mtu: dev.mtu,
            mode: PortMode {
                xdp,
                zero_copy,
                queues,
            },
        })
    }

    /// The mode the port runs in.
    pub fn mode(&self) -> PortMode {
        self.mode
    }

    /// Hands out the queues (once; later calls return none), to be moved
    /// into worker threads.
    pub fn queues(&mut self) -> Vec<Queue> {
        std::mem::take(&mut self.queues)
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Puts a socket into the XSKMAP at its queue index.
fn insert(map: &OwnedFd, xsk: &xsk::Xsk, ifname: &str) -> Result<(), PortError> {
    let fd = u32::try_from(xsk.fd()).map_err(|_| PortError::Socket {
        ifname: ifname.to_owned(),
        queue: xsk.queue_id,
        op: "XSKMAP insert",
        errno: libc::EBADF,
    })?;
    sys::map_update_u32(map, xsk.queue_id, fd).map_err(|errno| PortError::Bpf {
        op: "BPF_MAP_UPDATE_ELEM (XSKMAP)",
        errno,
    })
}

/// Moves the calling thread into the network namespace at `path` (e.g.
/// `/var/run/netns/NAME`). Only this thread moves (setns is per thread):
/// open ports on a thread dedicated to that namespace.
pub fn enter_netns(path: &std::path::Path) -> std::io::Result<()> {
    sys::enter_netns(path).map_err(std::io::Error::from_raw_os_error)
}

/// Helpers for tests that need a program of ours left attached the ways an
/// earlier, killed run could leave it. Not for production use.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// How a leftover program was attached.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Leftover {
        /// The legacy way, netlink IFLA_XDP (stays attached with no
        /// descriptor open).
        Netlink,
        /// A BPF link whose descriptor is leaked (stays attached while this
        /// process lives).
        Link,
    }

    /// Loads our program on `ifname` (calling thread's namespace) in `mode`
    /// and leaves it attached, as a killed run would. Returns its program id.
    pub fn leave_program_attached(
        ifname: &str,
        mode: XdpAttach,
        how: Leftover,
    ) -> Result<u32, PortError> {
        let dev = lookup(&PortConfig::new(ifname))?;
        let loaded = bpf::load(dev.queues)?;
        let id = sys::prog_info(&loaded.prog)
            .map_err(|errno| PortError::Bpf {
                op: "BPF_OBJ_GET_INFO_BY_FD",
                errno,
            })?
            .id;
        match how {
            Leftover::Netlink => {
                use std::os::fd::AsRawFd;
                netlink::set_xdp_fd(dev.ifindex, loaded.prog.as_raw_fd(), bpf::mode_flags(mode))
                    .map_err(|e| PortError::Netlink {
                        op: "RTM_SETLINK IFLA_XDP_FD",
                        errno: e.errno,
                        msg: e.msg,
                    })?;
            }
            Leftover::Link => {
                let link = sys::link_create_xdp(&loaded.prog, dev.ifindex, bpf::mode_flags(mode))
                    .map_err(|errno| PortError::Attach {
                    ifname: ifname.to_owned(),
                    mode,
                    errno,
                })?;
                std::mem::forget(link);
            }
        }
        Ok(id)
    }

    /// Attaches (netlink, `mode`) a program that is not ours, named `name`,
    /// as another tool would. Returns its program id.
    pub fn attach_foreign_program(
        ifname: &str,
        mode: XdpAttach,
        name: &str,
    ) -> Result<u32, PortError> {
        use std::os::fd::AsRawFd;
        let dev = lookup(&PortConfig::new(ifname))?;
        let loaded = bpf::load_named(dev.queues, name, false)?;
        netlink::set_xdp_fd(dev.ifindex, loaded.prog.as_raw_fd(), bpf::mode_flags(mode)).map_err(
            |e| PortError::Netlink {
                op: "RTM_SETLINK IFLA_XDP_FD",
                errno: e.errno,
                msg: e.msg,
            },
        )?;
        sys::prog_info(&loaded.prog)
            .map(|info| info.id)
            .map_err(|errno| PortError::Bpf {
                op: "BPF_OBJ_GET_INFO_BY_FD",
                errno,
            })
    }

    /// The ids of the XDP programs attached to `ifname`: (native, generic).
    pub fn attached_programs(ifname: &str) -> Result<(u32, u32), PortError> {
        let link = netlink::link_by_name(ifname).map_err(|e| PortError::Netlink {
            op: "RTM_GETLINK",
            errno: e.errno,
            msg: e.msg,
        })?;
        Ok((link.xdp_drv_prog, link.xdp_skb_prog))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_display() {
        let mode = PortMode {
            xdp: XdpAttach::Native,
            zero_copy: false,
            queues: 1,
        };
        assert_eq!(mode.to_string(), "native xdp, copy, 1 queue");
        let mode = PortMode {
            xdp: XdpAttach::Generic,
            zero_copy: true,
            queues: 4,
        };
        assert_eq!(mode.to_string(), "generic xdp, zero-copy, 4 queues");
    }

    #[test]
    fn an_mtu_too_large_names_its_interface_and_the_mtu_that_fits() {
        let dev = |mtu| Device {
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, 1],
            mtu,
            queues: 1,
        };
        assert!(check_mtu(2048, "wan0", &dev(1500)).is_ok());
        let Err(PortError::InvalidConfig { what }) = check_mtu(2048, "wan0", &dev(9000)) else {
            panic!("MTU 9000 fits a 2048-byte frame?")
        };
        assert!(what.starts_with("wan0 has MTU 9000"), "{what}");
        assert!(what.contains("`ip link set wan0 mtu 3822`"), "{what}");
        assert!(what.contains("multi-buffer frames (XDP_USE_SG"), "{what}");
        let max = 2048 - XDP_HEADROOM - 18;
        assert!(check_mtu(2048, "wan0", &dev(max as u16)).is_ok());
        let Err(PortError::InvalidConfig { what }) = check_mtu(2048, "wan0", &dev(max as u16 + 1))
        else {
            panic!("MTU 1775 fits a 2048-byte frame?")
        };
        assert!(what.contains("set frame_size = 4096"), "{what}");
        assert!(check_mtu(4096, "wan0", &dev(3822)).is_ok());
        assert!(check_mtu(4096, "wan0", &dev(3823)).is_err());
        assert_eq!(frame_size_for(1500), Some(2048));
        assert_eq!(frame_size_for(1774), Some(2048));
        assert_eq!(frame_size_for(1775), Some(4096));
        assert_eq!(frame_size_for(3822), Some(4096));
        assert_eq!(frame_size_for(9000), None);
    }

    #[test]
    fn config_validation() {
        assert!(PortConfig::new("eth0").validate().is_ok());
        for bad in [
            PortConfig::new(""),
            PortConfig::new("a-name-much-too-long"),
            PortConfig {
                frame_size: 1000,
                ..PortConfig::new("eth0")
            },
            PortConfig {
                frames: 8,
                ..PortConfig::new("eth0")
            },
            PortConfig {
                queues: Some(0),
                ..PortConfig::new("eth0")
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(PortError::InvalidConfig { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_copy_order() {
        assert_eq!(zero_copy_tries(ZeroCopy::Auto), &[true, false]);
        assert_eq!(zero_copy_tries(ZeroCopy::Off), &[false]);
        assert_eq!(zero_copy_tries(ZeroCopy::On), &[true]);
    }

    #[test]
    fn errors_name_what_failed() {
        let e = PortError::Bind {
            ifname: "lan0".into(),
            queue: 1,
            zero_copy: true,
            errno: libc::EOPNOTSUPP,
        };
        let text = e.to_string();
        assert!(
            text.contains("lan0 queue 1") && text.contains("zero-copy"),
            "{text}"
        );
        let e = PortError::NoSuchInterface {
            name: "nope0".into(),
        };
        assert_eq!(e.to_string(), "no interface named \"nope0\"");
    }
}
