//! The one seam through which `port/` talks to the kernel.
//!
//! Every system call the port layer makes itself goes through a safe wrapper
//! here: `bpf(2)` commands with their `union bpf_attr` prefixes, rtnetlink
//! socket I/O, the ethtool channel query, the UMEM mapping, and the AF_XDP
//! socket calls that xdpilone does not wrap with an error (`sendto` kicks,
//! wake-ups, `poll`, `XDP_STATISTICS`). xdpilone makes its own calls for
//! socket creation, UMEM registration, ring setup, ring mapping and `bind`.
//!
//! Errors are raw `errno` values; the callers turn them into
//! [`PortError`](super::PortError)s that name the operation.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// A raw `errno` value.
pub(crate) type Errno = i32;

fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Takes ownership of a descriptor a successful call returned.
fn owned(fd: libc::c_long) -> Result<OwnedFd, Errno> {
    let raw = RawFd::try_from(fd).map_err(|_| libc::EBADF)?;
    if raw < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: `raw` is a descriptor the kernel has just returned to us from
    // a call that creates one; nothing else owns it yet.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

// ---------------------------------------------------------------------------
// bpf(2)
// ---------------------------------------------------------------------------

pub(crate) const BPF_MAP_CREATE: u32 = 0;
pub(crate) const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub(crate) const BPF_PROG_LOAD: u32 = 5;
pub(crate) const BPF_PROG_GET_FD_BY_ID: u32 = 13;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
pub(crate) const BPF_LINK_CREATE: u32 = 28;
pub(crate) const BPF_LINK_GET_FD_BY_ID: u32 = 30;
pub(crate) const BPF_LINK_GET_NEXT_ID: u32 = 31;
pub(crate) const BPF_LINK_DETACH: u32 = 34;

pub(crate) const BPF_MAP_TYPE_XSKMAP: u32 = 17;
pub(crate) const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
pub(crate) const BPF_XDP: u32 = 37;
/// `enum bpf_link_type`: BPF_LINK_TYPE_XDP.
pub(crate) const BPF_LINK_TYPE_XDP: u32 = 6;
/// The length of `prog_name` / `map_name` in `union bpf_attr`, NUL included.
pub(crate) const BPF_OBJ_NAME_LEN: usize = 16;

/// A `union bpf_attr` prefix: plain old data the kernel reads (and, for
/// some commands, writes), at most as long as the kernel's union.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` structs made only of integers and byte
/// arrays, with no padding, laid out exactly as the prefix of `union
/// bpf_attr` that the commands they are used with expect; every address they
/// carry (as a `u64`) must point to memory that stays valid, for the access
/// the command makes, for the duration of the call that passes them.
unsafe trait BpfAttr: Sized {}

/// Calls `bpf(cmd, attr, sizeof attr)`.
fn bpf<A: BpfAttr>(cmd: u32, attr: &mut A) -> Result<libc::c_long, Errno> {
    let size = std::mem::size_of::<A>() as libc::c_uint;
    // SAFETY: `A: BpfAttr` promises the layout the kernel expects for `cmd`
    // and that every pointer inside is valid for the call; `attr` is a live,
    // exclusive reference for its whole duration, so the kernel may write
    // the output fields too.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(cmd),
            attr as *mut A as *mut libc::c_void,
            size,
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; BPF_OBJ_NAME_LEN],
}
// SAFETY: the BPF_MAP_CREATE prefix (offsets checked against <linux/bpf.h>:
// map_name at 28), integers only, 44 bytes without padding, no pointers.
unsafe impl BpfAttr for MapCreateAttr {}

/// The kernel's object-name field: `name` cut to 15 bytes, NUL-padded.
fn obj_name(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    for (dst, src) in out.iter_mut().zip(name.bytes().take(BPF_OBJ_NAME_LEN - 1)) {
        *dst = src;
    }
    out
}

/// BPF_MAP_CREATE of a map with 4-byte keys and values.
pub(crate) fn map_create(map_type: u32, max_entries: u32, name: &str) -> Result<OwnedFd, Errno> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_name: obj_name(name),
        ..MapCreateAttr::default()
    };
    owned(bpf(BPF_MAP_CREATE, &mut attr)?)
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
// SAFETY: the BPF_MAP_*_ELEM prefix (key at 8, value at 16, flags at 24);
// `_pad` makes the padding explicit; callers pass addresses of live locals.
unsafe impl BpfAttr for MapElemAttr {}

/// BPF_MAP_UPDATE_ELEM `map[key] = value` for a map of u32 keys and values.
pub(crate) fn map_update_u32(map: &OwnedFd, key: u32, value: u32) -> Result<(), Errno> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // A live descriptor is never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}
// SAFETY: the BPF_PROG_LOAD prefix (offsets checked against <linux/bpf.h>:
// insns 8, license 16, log_buf 32, prog_name 48, expected_attach_type 68),
// 72 bytes without padding; `prog_load` fills the addresses from borrows that
// outlive the call.
unsafe impl BpfAttr for ProgLoadAttr {}

/// `prog_flags`: the program handles multi-buffer frames (`xdp.frags`).
pub(crate) const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// BPF_PROG_LOAD. With `log`, the verifier writes its log there (level 1).
pub(crate) fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[Insn],
    license: &CStr,
    name: &str,
    prog_flags: u32,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, Errno> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| libc::E2BIG)?;
    let mut attr = ProgLoadAttr {
        prog_type,
        prog_flags,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: obj_name(name),
        expected_attach_type,
        ..ProgLoadAttr::default()
    };
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    owned(bpf(BPF_PROG_LOAD, &mut attr)?)
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}
// SAFETY: the BPF_LINK_CREATE prefix (target_ifindex 4, attach_type 8,
// flags 12), integers only.
unsafe impl BpfAttr for LinkCreateAttr {}

/// BPF_LINK_CREATE of an XDP link on `ifindex` in the calling thread's
/// network namespace.
pub(crate) fn link_create_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> Result<OwnedFd, Errno> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    owned(bpf(BPF_LINK_CREATE, &mut attr)?)
}

#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}
// SAFETY: the BPF_LINK_DETACH prefix, one integer.
unsafe impl BpfAttr for LinkDetachAttr {}

/// BPF_LINK_DETACH: detaches a link from its hook, whoever holds it.
pub(crate) fn link_detach(link: &OwnedFd) -> Result<(), Errno> {
    let mut attr = LinkDetachAttr {
        link_fd: fd_u32(link),
    };
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct ObjIdAttr {
    /// `start_id`, `prog_id`, `map_id`, `link_id`: one union.
    id: u32,
    next_id: u32,
    open_flags: u32,
}
// SAFETY: the BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID prefix (next_id 4,
// open_flags 8), integers only; the kernel writes `next_id`.
unsafe impl BpfAttr for ObjIdAttr {}

/// BPF_LINK_GET_NEXT_ID: the id of the next link after `start`, or `None`
/// at the end.
pub(crate) fn link_next_id(start: u32) -> Result<Option<u32>, Errno> {
    let mut attr = ObjIdAttr {
        id: start,
        ..ObjIdAttr::default()
    };
    match bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// BPF_LINK_GET_FD_BY_ID.
pub(crate) fn link_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = ObjIdAttr {
        id,
        ..ObjIdAttr::default()
    };
    owned(bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)?)
}

/// BPF_PROG_GET_FD_BY_ID.
pub(crate) fn prog_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = ObjIdAttr {
        id,
        ..ObjIdAttr::default()
    };
    owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}
// SAFETY: the BPF_OBJ_GET_INFO_BY_FD prefix (info_len 4, info 8); `obj_info`
// points `info` at a buffer of `info_len` bytes that outlives the call.
unsafe impl BpfAttr for InfoAttr {}

/// BPF_OBJ_GET_INFO_BY_FD into `buf` (the kernel fills at most `buf.len()`
/// bytes of its `bpf_*_info`); returns how many bytes it wrote.
fn obj_info(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(fd),
        info_len: u32::try_from(buf.len()).map_err(|_| libc::E2BIG)?,
        info: buf.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((attr.info_len as usize).min(buf.len()))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}

/// What `bpf_prog_info` says of a program: its id and name.
pub(crate) struct ProgInfo {
    pub id: u32,
    pub name: String,
}

/// BPF_OBJ_GET_INFO_BY_FD on a program.
pub(crate) fn prog_info(prog: &OwnedFd) -> Result<ProgInfo, Errno> {
    // struct bpf_prog_info: id at 4, name[16] at 64 (checked against
    // <linux/bpf.h>); 80 bytes cover both.
    let mut buf = [0u8; 80];
    let len = obj_info(prog, &mut buf)?;
    let name = buf.get(64..len.min(80)).unwrap_or(&[]);
    let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
    Ok(ProgInfo {
        id: u32_at(&buf, 4),
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// What `bpf_link_info` says of a link.
pub(crate) struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// For XDP links: the interface.
    pub xdp_ifindex: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD on a link.
pub(crate) fn link_info(link: &OwnedFd) -> Result<LinkInfo, Errno> {
    // struct bpf_link_info: type 0, id 4, prog_id 8, xdp.ifindex 16; 48
    // bytes in all (checked against <linux/bpf.h>).
    let mut buf = [0u8; 48];
    obj_info(link, &mut buf)?;
    Ok(LinkInfo {
        link_type: u32_at(&buf, 0),
        id: u32_at(&buf, 4),
        prog_id: u32_at(&buf, 8),
        xdp_ifindex: u32_at(&buf, 16),
    })
}

// ---------------------------------------------------------------------------
// rtnetlink
// ---------------------------------------------------------------------------

/// A NETLINK_ROUTE socket in the calling thread's network namespace, with
/// extended and capped acks on (so errors carry the kernel's message and do
/// not echo the request).
pub(crate) fn netlink_route_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) with constant arguments; no memory is passed.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    let fd = owned(libc::c_long::from(fd))?;
    for opt in [libc::NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
        // Best effort: without these the kernel still answers, only with
        // less detail.
        let _ = setsockopt_int(&fd, libc::SOL_NETLINK, opt, 1);
    }
    Ok(fd)
}

/// A non-blocking NETLINK_ROUTE socket subscribed to the multicast
/// `groups` (an `nl_groups` bit mask, e.g. RTMGRP_LINK), in the calling
/// thread's network namespace.
pub(crate) fn netlink_route_listener(groups: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) with constant arguments; no memory is passed.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    let fd = owned(libc::c_long::from(fd))?;
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    // SAFETY: `sa` is a live sockaddr_nl and the length passed is its size.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(fd)
}

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, value: i32) -> Result<(), Errno> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Sends one datagram on a socket (to the kernel, for netlink).
pub(crate) fn send(fd: &OwnedFd, buf: &[u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receives one datagram if one is waiting (`EAGAIN` if none).
pub(crate) fn recv_nonblocking(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receives one datagram; blocks.
pub(crate) fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

// ---------------------------------------------------------------------------
// ethtool
// ---------------------------------------------------------------------------

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Runs one SIOCETHTOOL request for `ifname` (calling thread's namespace).
///
/// # Safety
///
/// `data` must point to a live, writable buffer laid out as the ethtool
/// command in its first four bytes expects, and large enough for everything
/// the kernel reads and writes for that command (for the variable-length
/// commands: as large as the counts inside the buffer say).
unsafe fn ethtool_ioctl(ifname: &str, data: *mut libc::c_void) -> Result<(), Errno> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.bytes().any(|b| b == 0) {
        return Err(libc::EINVAL);
    }
    // SAFETY: socket(2) with constant arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(last_errno());
    }
    let sock = owned(libc::c_long::from(sock))?;
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    for (dst, src) in ifr.name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads a `struct ifreq` (name + data pointer; ours
    // is padded to the kernel's 40 bytes) and accesses the command buffer
    // through `data`, which the caller promises is valid for that command.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// ETHTOOL_GCHANNELS for `ifname` in the calling thread's namespace.
pub(crate) fn ethtool_channels(ifname: &str) -> Result<EthtoolChannels, Errno> {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: `channels` is a live `struct ethtool_channels`, the buffer
    // ETHTOOL_GCHANNELS reads and writes.
    unsafe { ethtool_ioctl(ifname, (&mut channels as *mut EthtoolChannels).cast())? };
    Ok(channels)
}

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
/// `enum ethtool_stringset`: ETH_SS_FEATURES.
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// `struct ethtool_drvinfo` (196 bytes).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// What ETHTOOL_GDRVINFO says (`ethtool -i`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DriverInfo {
    pub driver: String,
    pub version: String,
    pub firmware: String,
    pub bus: String,
}

fn c_text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// ETHTOOL_GDRVINFO for `ifname` in the calling thread's namespace.
pub(crate) fn ethtool_driver(ifname: &str) -> Result<DriverInfo, Errno> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: `info` is a live `struct ethtool_drvinfo`, the buffer
    // ETHTOOL_GDRVINFO writes.
    unsafe { ethtool_ioctl(ifname, (&mut info as *mut EthtoolDrvinfo).cast())? };
    Ok(DriverInfo {
        driver: c_text(&info.driver),
        version: c_text(&info.version),
        firmware: c_text(&info.fw_version),
        bus: c_text(&info.bus_info),
    })
}

/// One device feature as `ethtool -k` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Feature {
    /// The kernel's name, e.g. `rx-gro-hw`.
    pub name: String,
    pub active: bool,
    /// Whether `ethtool -K` can change it (`[fixed]` otherwise).
    pub changeable: bool,
}

/// Every feature of `ifname`: ETHTOOL_GSSET_INFO for the number of
/// ETH_SS_FEATURES strings, ETHTOOL_GSTRINGS for their names and
/// ETHTOOL_GFEATURES for their state.
pub(crate) fn ethtool_features(ifname: &str) -> Result<Vec<Feature>, Errno> {
    // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, u32 data[];
    // with one bit in the mask the kernel writes at most one count.
    let mut sset = [0u32; 5];
    sset[0] = ETHTOOL_GSSET_INFO;
    let mask = 1u64 << ETH_SS_FEATURES;
    sset[2] = mask as u32;
    sset[3] = (mask >> 32) as u32;
    // SAFETY: `sset` is 20 bytes: the 16-byte header and room for the one
    // count a one-bit mask can produce.
    unsafe { ethtool_ioctl(ifname, sset.as_mut_ptr().cast())? };
    let supported = u64::from(sset[2]) | u64::from(sset[3]) << 32;
    if supported & mask == 0 {
        return Err(libc::EOPNOTSUPP);
    }
    let count = sset[4] as usize;
    if count == 0 || count > 4096 {
        return Err(libc::EPROTO);
    }
    // struct ethtool_gstrings: cmd, string_set, len, u8 data[len * 32].
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count as u32;
    // SAFETY: the buffer holds the 12-byte header and `count` strings of
    // ETH_GSTRING_LEN bytes, as many as `len` asks for.
    unsafe { ethtool_ioctl(ifname, strings.as_mut_ptr().cast())? };
    let got = (strings[2] as usize).min(count);
    // struct ethtool_gfeatures: cmd, size, blocks of {available,
    // requested, active, never_changed}.
    let blocks = count.div_ceil(32);
    let mut features = vec![0u32; 2 + blocks * 4];
    features[0] = ETHTOOL_GFEATURES;
    features[1] = blocks as u32;
    // SAFETY: the buffer holds the 8-byte header and `size` blocks; the
    // kernel copies at most `size` blocks back.
    unsafe { ethtool_ioctl(ifname, features.as_mut_ptr().cast())? };
    let names: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = Vec::with_capacity(got);
    for i in 0..got {
        let name = c_text(&names[i * ETH_GSTRING_LEN..(i + 1) * ETH_GSTRING_LEN]);
        let block = 2 + (i / 32) * 4;
        let bit = 1u32 << (i % 32);
        let (available, active, never_changed) =
            (features[block], features[block + 2], features[block + 3]);
        out.push(Feature {
            name,
            active: active & bit != 0,
            changeable: available & bit != 0 && never_changed & bit == 0,
        });
    }
    Ok(out)
}

/// Turns feature `name` of `ifname` on or off (ETHTOOL_SFEATURES, as
/// `ethtool -K` does); whether it is active afterwards (the driver may
/// refuse, or change it only with another).
pub(crate) fn ethtool_set_feature(ifname: &str, name: &str, on: bool) -> Result<bool, Errno> {
    let features = ethtool_features(ifname)?;
    let i = features
        .iter()
        .position(|f| f.name == name)
        .ok_or(libc::EOPNOTSUPP)?;
    // struct ethtool_sfeatures: cmd, size, blocks of {valid, requested}.
    let blocks = features.len().div_ceil(32);
    let mut set = vec![0u32; 2 + blocks * 2];
    set[0] = ETHTOOL_SFEATURES;
    set[1] = blocks as u32;
    let bit = 1u32 << (i % 32);
    set[2 + (i / 32) * 2] = bit;
    if on {
        set[3 + (i / 32) * 2] = bit;
    }
    // SAFETY: the buffer holds the 8-byte header and `size` blocks of two
    // u32s, as many as the kernel reads.
    unsafe { ethtool_ioctl(ifname, set.as_mut_ptr().cast())? };
    let now = ethtool_features(ifname)?;
    Ok(now.iter().any(|f| f.name == name && f.active))
}

// ---------------------------------------------------------------------------
// Memory for the UMEM
// ---------------------------------------------------------------------------

/// An anonymous, private, populated mapping, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving the owner
// to another thread moves nothing the thread could observe.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` itself hands out no references to the memory; callers
// that touch the bytes (the frame accessors in `umem`) own disjoint frames.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of zeroed, page-aligned memory.
    pub(crate) fn anonymous(len: usize) -> Result<Mapping, Errno> {
        if len == 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(libc::ENOMEM)?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn as_non_null_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and the mapping
        // is unmapped only here, once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// ---------------------------------------------------------------------------
// AF_XDP socket calls
// ---------------------------------------------------------------------------

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: tells the kernel to process the TX
/// ring (in copy mode it transmits a limited batch per call).
pub(crate) fn kick_tx(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: a zero-length send with null buffer and address is the
    // documented AF_XDP wake-up; no memory is read.
    let ret = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Sets FD_CLOEXEC on a descriptor someone else created.
pub(crate) fn set_cloexec(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl(2) flag get/set on a descriptor; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(last_errno());
    }
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: wakes the driver's RX side when
/// the fill ring carries XDP_RING_NEED_WAKEUP.
pub(crate) fn wake_rx(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: a zero-length receive with null buffer and address; the
    // kernel writes no memory.
    let ret = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `struct xdp_statistics` (Linux 5.9+ layout).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// getsockopt(SOL_XDP, XDP_STATISTICS).
pub(crate) fn xdp_statistics(fd: RawFd) -> Result<XdpStatistics, Errno> {
    let mut stats = XdpStatistics::default();
    let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `stats`, a live
    // local of that size, and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut stats as *mut XdpStatistics).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(stats)
    }
}

/// poll(2) for readability on up to 64 descriptors; `Ok(true)` if any is
/// readable before `timeout_ms` (negative: forever).
pub(crate) fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> Result<bool, Errno> {
    let mut set = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 64];
    let n = fds.len().min(set.len());
    for (slot, &fd) in set.iter_mut().zip(fds) {
        slot.fd = fd;
        slot.events = libc::POLLIN;
    }
    // SAFETY: `set[..n]` is a live array of initialised pollfds.
    let ret = unsafe { libc::poll(set.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    match ret {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => match last_errno() {
            libc::EINTR => Ok(false),
            e => Err(e),
        },
    }
}

// ---------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------

/// setns(2) of the calling thread into the network namespace at `path`
/// (e.g. `/var/run/netns/NAME`).
pub(crate) fn enter_netns(path: &std::path::Path) -> Result<(), Errno> {
    let file = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: setns(2) on a descriptor we hold open; it changes only the
    // calling thread's namespace.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}
