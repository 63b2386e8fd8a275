//! The host path: one multi-queue TUN device per interface xdpgw owns,
//! carrying that interface's address, so that the gateway host's own
//! programs (sshd, a mail relay that REDIRECT sends traffic to, its HTTPS
//! console) keep working once AF_XDP has taken the NICs away from the
//! kernel. This is the exception path DPDK and VPP build with a TAP.
//!
//! Packets INPUT accepts are written into the device of the interface they
//! arrived on; what the host sends into a device is read back and sent
//! through OUTPUT and POSTROUTING like any packet the gateway originates.
//! TUN (layer 3), not TAP: the host sees no Ethernet, so it never sends or
//! answers ARP (xdpgw does that on the wire), and it never answers a ping
//! (xdpgw answers ping to its addresses before INPUT would deliver it).
//!
//! Each worker gets one queue of every device (`IFF_MULTI_QUEUE`), so
//! workers never share a descriptor. The devices are not persistent: they,
//! their addresses and their routes go away when the last descriptor
//! closes, which is when xdpgw stops, however it stops.
//!
//! Devices are configured with the classic `ioctl`s (`SIOCSIFADDR`,
//! `SIOCSIFNETMASK`, `SIOCSIFMTU`, `SIOCSIFFLAGS`, `SIOCADDRT`; on an
//! `AF_INET6` socket `SIOCSIFADDR` and `SIOCADDRT` with IPv6's structs), which is all
//! a point-to-point device needs; checksums are complete in both directions
//! (no `TUNSETOFFLOAD`, no virtio-net header).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::PortError;

/// The host side of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDeviceConfig {
    /// The TUN device's name (at most 15 bytes).
    pub name: String,
    /// The interface's address, given to the device.
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// The device's MTU (the interface's).
    pub mtu: u16,
    /// The interface's IPv6 addresses and prefix lengths (none: IPv6 off
    /// on the device).
    pub addr6: Vec<(std::net::Ipv6Addr, u8)>,
}

/// A static route the host gets through the host path (only routes whose
/// next hop is on one of the devices' networks are added, on that device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    pub to: Ipv4Addr,
    pub prefix: u8,
    pub via: Ipv4Addr,
}

/// An IPv6 static route the host gets through the host path: on the
/// device of interface `dev` when the configuration names it (a
/// link-local next hop), else on the device with an IPv6 network holding
/// `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute6 {
    pub to: Ipv6Addr,
    pub prefix: u8,
    pub via: Ipv6Addr,
    /// The interface (index into the devices), if named.
    pub dev: Option<usize>,
}

/// The devices; dropping this (and every [`HostQueue`]) removes them.
#[derive(Debug)]
pub struct HostPath {
    names: Vec<String>,
    /// The devices' interface indices, by interface index (0: unknown).
    ifindices: Vec<u32>,
    /// Routes that could not be added (e.g. the host has its own default
    /// route already): `(route, why)`.
    pub skipped_routes: Vec<(HostRoute, String)>,
    /// IPv6 routes that could not be added: `(route, why)`.
    pub skipped_routes6: Vec<(HostRoute6, String)>,
}

/// One worker's queue of every device, by interface index.
#[derive(Debug)]
pub struct HostQueue {
    fds: Vec<OwnedFd>,
}

const TUN_PATH: &[u8] = b"/dev/net/tun\0";

impl HostPath {
    /// Creates one TUN device per entry of `devices`, each with `queues`
    /// queues, configures address, MTU and routes, and returns the queues
    /// grouped per worker (`queues` of them).
    pub fn create(
        devices: &[HostDeviceConfig],
        routes: &[HostRoute],
        routes6: &[HostRoute6],
        queues: usize,
    ) -> Result<(HostPath, Vec<HostQueue>), PortError> {
        let queues = queues.max(1);
        let mut per_worker: Vec<HostQueue> =
            (0..queues).map(|_| HostQueue { fds: Vec::new() }).collect();
        let sock = inet_socket().map_err(|errno| err("", "socket(AF_INET)", errno))?;
        let mut ifindices = Vec::with_capacity(devices.len());
        for d in devices {
            if d.name.is_empty() || d.name.len() >= libc::IFNAMSIZ || d.name.contains('\0') {
                return Err(PortError::InvalidConfig {
                    what: format!("host device name {:?}: 1 to 15 bytes", d.name),
                });
            }
            for q in per_worker.iter_mut() {
                let fd = open_queue(&d.name).map_err(|(op, errno)| match (op, errno) {
                    ("open /dev/net/tun", libc::EACCES | libc::EPERM) => PortError::Permission {
                        what: format!(
                            "the host device {} needs read and write access to /dev/net/tun \
                             (its mode; DeviceAllow= in a systemd unit)",
                            d.name
                        ),
                    },
                    (_, libc::EPERM | libc::EACCES) => PortError::Permission {
                        what: format!("creating the host device {} needs CAP_NET_ADMIN", d.name),
                    },
                    _ => err(&d.name, op, errno),
                })?;
                q.fds.push(fd);
            }
            // IPv6 on the host side only with IPv6 addresses, and then
            // without duplicate address detection (xdpgw answers for the
            // interface's addresses), router solicitations or RAs taken.
            // Missing without IPv6 in the kernel.
            let conf = |key: &str, value: &str| {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/{key}", d.name), value);
            };
            if d.addr6.is_empty() {
                conf("disable_ipv6", "1");
            } else {
                for (key, value) in [
                    ("accept_dad", "0"),
                    ("accept_ra", "0"),
                    ("router_solicitations", "0"),
                    ("disable_ipv6", "0"),
                ] {
                    conf(key, value);
                }
            }
            let mask = prefix_mask(d.prefix);
            let s = sock.as_raw_fd();
            set_int(s, &d.name, libc::SIOCSIFMTU, i32::from(d.mtu))
                .map_err(|e| err(&d.name, "SIOCSIFMTU", e))?;
            set_addr(s, &d.name, libc::SIOCSIFADDR, d.addr)
                .map_err(|e| err(&d.name, "SIOCSIFADDR", e))?;
            set_addr(s, &d.name, libc::SIOCSIFNETMASK, mask)
                .map_err(|e| err(&d.name, "SIOCSIFNETMASK", e))?;
            set_up(s, &d.name).map_err(|e| err(&d.name, "SIOCSIFFLAGS", e))?;
            ifindices.push(if_index(s, &d.name).map_or(0, |i| u32::try_from(i).unwrap_or(0)));
            if !d.addr6.is_empty() {
                let sock6 = inet6_socket().map_err(|e| err(&d.name, "socket(AF_INET6)", e))?;
                let index = if_index(s, &d.name).map_err(|e| err(&d.name, "SIOCGIFINDEX", e))?;
                for &(a, p) in &d.addr6 {
                    add_addr6(sock6.as_raw_fd(), index, a, p)
                        .map_err(|e| err(&d.name, "SIOCSIFADDR (IPv6)", e))?;
                }
            }
        }
        let mut skipped_routes = Vec::new();
        for r in routes {
            let on = devices.iter().find(|d| {
                let m = u32::from(prefix_mask(d.prefix));
                u32::from(d.addr) & m == u32::from(r.via) & m
            });
            let Some(dev) = on else {
                skipped_routes.push((*r, "its next hop is on no interface's network".into()));
                continue;
            };
            if let Err(errno) = add_route(sock.as_raw_fd(), &dev.name, r) {
                skipped_routes.push((*r, std::io::Error::from_raw_os_error(errno).to_string()));
            }
        }
        let mut skipped_routes6 = Vec::new();
        if !routes6.is_empty() {
            let sock6 = inet6_socket().map_err(|e| err("host path", "socket(AF_INET6)", e))?;
            for r in routes6 {
                match route6_device(devices, r) {
                    Err(why) => skipped_routes6.push((*r, why.into())),
                    Ok(dev) => {
                        let added = if_index(sock.as_raw_fd(), &dev.name)
                            .and_then(|index| add_route6(sock6.as_raw_fd(), index, r));
                        if let Err(errno) = added {
                            skipped_routes6
                                .push((*r, std::io::Error::from_raw_os_error(errno).to_string()));
                        }
                    }
                }
            }
        }
        let names = devices.iter().map(|d| d.name.clone()).collect();
        Ok((
            HostPath {
                names,
                ifindices,
                skipped_routes,
                skipped_routes6,
            },
            per_worker,
        ))
    }

    /// The devices' names, by interface index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The devices' kernel interface indices, by interface index (0 where
    /// it could not be read).
    pub fn ifindices(&self) -> &[u32] {
        &self.ifindices
    }
}

impl HostQueue {
    /// Hands the IPv4 packet `packet` to the host, as arriving on interface
    /// `iface`'s device. False if the device refused it.
    pub fn deliver(&self, iface: usize, packet: &[u8]) -> bool {
        let Some(fd) = self.fds.get(iface) else {
            return false;
        };
        // SAFETY: write(2) from a live slice on a descriptor we own.
        let n = unsafe { libc::write(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        n == packet.len() as isize
    }

    /// Reads one packet the host sent through interface `iface`'s device
    /// into `buf`; its length, or None when there is none (non-blocking).
    pub fn receive(&self, iface: usize, buf: &mut [u8]) -> Option<usize> {
        let fd = self.fds.get(iface)?;
        // SAFETY: read(2) into a live, exclusively borrowed slice of
        // `buf.len()` bytes on a descriptor we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).ok().filter(|&n| n > 0)
    }

    /// How many devices (interfaces) this queue spans.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The descriptors, for poll(2).
    pub fn raw_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds.iter().map(AsRawFd::as_raw_fd)
    }
}

fn err(name: &str, op: &'static str, errno: i32) -> PortError {
    PortError::HostPath {
        ifname: name.to_string(),
        op,
        errno,
    }
}

/// The device an IPv6 route goes on: the one named, else the one with an
/// IPv6 network holding the next hop; `Err(why)` when there is none or it
/// has no IPv6 address (IPv6 is off on a device without one).
fn route6_device<'a>(
    devices: &'a [HostDeviceConfig],
    r: &HostRoute6,
) -> Result<&'a HostDeviceConfig, &'static str> {
    let dev = match r.dev {
        Some(i) => devices.get(i).ok_or("its interface has no host device")?,
        None => devices
            .iter()
            .find(|d| d.addr6.iter().any(|&(a, p)| same_net6(a, r.via, p)))
            .ok_or("its next hop is on no interface's IPv6 network")?,
    };
    if dev.addr6.is_empty() {
        return Err("its interface has no IPv6 address");
    }
    Ok(dev)
}

/// Whether `a` and `b` share their first `prefix` bits.
fn same_net6(a: Ipv6Addr, b: Ipv6Addr, prefix: u8) -> bool {
    let p = u32::from(prefix.min(128));
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    u128::from(a) & mask == u128::from(b) & mask
}

fn prefix_mask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

pub(super) fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `struct ifreq`: the name and a 24-byte union (8-byte aligned: 40 bytes).
#[repr(C, align(8))]
pub(super) struct Ifreq {
    name: [libc::c_char; libc::IFNAMSIZ],
    pub(super) data: [u8; 24],
}

impl Ifreq {
    pub(super) fn new(name: &str) -> Ifreq {
        let mut r = Ifreq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        for (d, s) in r.name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
            *d = s as libc::c_char;
        }
        r
    }
}

/// A `struct sockaddr_in` for `a`, as 16 bytes.
fn sockaddr_in(a: Ipv4Addr) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    s[4..8].copy_from_slice(&a.octets());
    s
}

pub(super) fn inet_socket() -> Result<OwnedFd, i32> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a descriptor socket(2) just returned; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn inet6_socket() -> Result<OwnedFd, i32> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a descriptor socket(2) just returned; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface index of `name` (SIOCGIFINDEX).
fn if_index(sock: RawFd, name: &str) -> Result<i32, i32> {
    let mut ifr = Ifreq::new(name);
    ifreq_ioctl(sock, libc::SIOCGIFINDEX, &mut ifr)?;
    Ok(i32::from_ne_bytes([
        ifr.data[0],
        ifr.data[1],
        ifr.data[2],
        ifr.data[3],
    ]))
}

/// `struct in6_ifreq` (<linux/ipv6.h>).
#[repr(C)]
struct In6Ifreq {
    addr: [u8; 16],
    prefixlen: u32,
    ifindex: i32,
}

/// Adds IPv6 address `a/prefix` to interface `index` (SIOCSIFADDR on an
/// AF_INET6 socket, as `ip -6 addr add` did before netlink).
fn add_addr6(sock6: RawFd, index: i32, a: std::net::Ipv6Addr, prefix: u8) -> Result<(), i32> {
    let mut req = In6Ifreq {
        addr: a.octets(),
        prefixlen: u32::from(prefix),
        ifindex: index,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a `struct
    // in6_ifreq`, which `In6Ifreq` lays out (16 + 4 + 4 bytes); `req` is
    // live and exclusively borrowed for the call.
    let r = unsafe { libc::ioctl(sock6, libc::SIOCSIFADDR, &mut req as *mut In6Ifreq) };
    if r < 0 {
        let e = last_errno();
        // Already there (a restart before the device went away).
        return if e == libc::EEXIST { Ok(()) } else { Err(e) };
    }
    Ok(())
}

/// ioctl(2) with an ifreq.
pub(super) fn ifreq_ioctl(fd: RawFd, req: libc::Ioctl, ifr: &mut Ifreq) -> Result<(), i32> {
    // SAFETY: every request used here reads (and SIOCGIFFLAGS writes) a
    // `struct ifreq`, which `Ifreq` lays out (name, then the 24-byte union,
    // 40 bytes); `ifr` is a live exclusive reference for the call.
    let r = unsafe { libc::ioctl(fd, req, ifr as *mut Ifreq) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Opens one queue of the multi-queue TUN device `name` (created by the
/// first), non-blocking.
fn open_queue(name: &str) -> Result<OwnedFd, (&'static str, i32)> {
    // SAFETY: open(2) of a NUL-terminated constant path.
    let fd = unsafe {
        libc::open(
            TUN_PATH.as_ptr().cast(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(("open /dev/net/tun", last_errno()));
    }
    // SAFETY: a descriptor open(2) just returned; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = Ifreq::new(name);
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
    ifr.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ifreq_ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr).map_err(|e| ("TUNSETIFF", e))?;
    Ok(fd)
}

fn set_int(sock: RawFd, name: &str, req: libc::Ioctl, v: i32) -> Result<(), i32> {
    let mut ifr = Ifreq::new(name);
    ifr.data[..4].copy_from_slice(&v.to_ne_bytes());
    ifreq_ioctl(sock, req, &mut ifr)
}

fn set_addr(sock: RawFd, name: &str, req: libc::Ioctl, a: Ipv4Addr) -> Result<(), i32> {
    let mut ifr = Ifreq::new(name);
    ifr.data[..16].copy_from_slice(&sockaddr_in(a));
    ifreq_ioctl(sock, req, &mut ifr)
}

pub(super) fn set_up(sock: RawFd, name: &str) -> Result<(), i32> {
    let mut ifr = Ifreq::new(name);
    ifreq_ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr)?;
    let flags = i16::from_ne_bytes([ifr.data[0], ifr.data[1]]) | libc::IFF_UP as i16;
    ifr.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ifreq_ioctl(sock, libc::SIOCSIFFLAGS, &mut ifr)
}

/// `struct rtentry` (<linux/route.h>), 120 bytes on 64-bit.
#[repr(C)]
struct RtEntry {
    pad1: libc::c_ulong,
    dst: [u8; 16],
    gateway: [u8; 16],
    genmask: [u8; 16],
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    dev: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

/// `struct in6_rtmsg` (<linux/ipv6_route.h>), 80 bytes on 64-bit.
#[repr(C)]
struct In6Rtmsg {
    dst: [u8; 16],
    src: [u8; 16],
    gateway: [u8; 16],
    rtmsg_type: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: i32,
}

/// Adds IPv6 route `r` via interface `index` (SIOCADDRT on an AF_INET6
/// socket, as `route -A inet6 add` does: `ipv6_route_ioctl`).
fn add_route6(sock6: RawFd, index: i32, r: &HostRoute6) -> Result<(), i32> {
    let p = u32::from(r.prefix.min(128));
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    let mut rt = In6Rtmsg {
        dst: (u128::from(r.to) & mask).to_be_bytes(),
        src: [0; 16],
        gateway: r.via.octets(),
        rtmsg_type: 0,
        dst_len: p as u16,
        src_len: 0,
        // Ahead of the host's own routes through the interfaces AF_XDP
        // took (`ip -6 route add` gives 1024): their replies would never
        // reach the kernel. A route exactly like one the host has is
        // refused (EEXIST) and skipped.
        metric: 1,
        info: 0,
        flags: u32::from(RTF_UP | RTF_GATEWAY),
        ifindex: index,
    };
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads a `struct in6_rtmsg`,
    // which `In6Rtmsg` lays out; `rt` is live and exclusively borrowed for
    // the call.
    let ret = unsafe { libc::ioctl(sock6, SIOCADDRT, &mut rt as *mut In6Rtmsg) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;
const SIOCADDRT: libc::Ioctl = 0x890B;

fn add_route(sock: RawFd, dev: &str, r: &HostRoute) -> Result<(), i32> {
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(dev.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    let mask = prefix_mask(r.prefix);
    let mut rt = RtEntry {
        pad1: 0,
        dst: sockaddr_in(Ipv4Addr::from(u32::from(r.to) & u32::from(mask))),
        gateway: sockaddr_in(r.via),
        genmask: sockaddr_in(mask),
        flags: RTF_UP | RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        pad4: std::ptr::null_mut(),
        // The kernel stores rt_metric - 1 (route(8)'s convention).
        metric: 1,
        dev: name.as_mut_ptr(),
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    // SAFETY: SIOCADDRT reads a `struct rtentry`, which `RtEntry` lays out,
    // and the NUL-terminated device name `dev` points to, which lives on
    // this frame for the call.
    let ret = unsafe { libc::ioctl(sock, SIOCADDRT, &mut rt as *mut RtEntry) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<Ifreq>(), 40);
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::offset_of!(RtEntry, flags), 56);
        assert_eq!(std::mem::offset_of!(RtEntry, dev), 88);
        assert_eq!(std::mem::size_of::<In6Rtmsg>(), 80);
        assert_eq!(std::mem::offset_of!(In6Rtmsg, metric), 56);
        assert_eq!(std::mem::offset_of!(In6Rtmsg, flags), 72);
        assert_eq!(std::mem::size_of::<In6Ifreq>(), 24);
    }

    fn device(name: &str, addr6: &[(&str, u8)]) -> HostDeviceConfig {
        HostDeviceConfig {
            name: name.into(),
            addr: Ipv4Addr::new(192, 0, 2, 1),
            prefix: 24,
            mtu: 1500,
            addr6: addr6
                .iter()
                .map(|&(a, p)| (a.parse().expect("an address"), p))
                .collect(),
        }
    }

    #[test]
    fn an_ipv6_route_goes_on_its_next_hops_device() {
        let devices = [
            device("xg-lan0", &[("fd00:10::1", 64)]),
            device("xg-wan0", &[("2001:db8:113::1", 64)]),
            device("xg-mgmt0", &[]),
        ];
        let route = |via: &str, dev: Option<usize>| HostRoute6 {
            to: Ipv6Addr::UNSPECIFIED,
            prefix: 0,
            via: via.parse().expect("an address"),
            dev,
        };
        let on = |r: HostRoute6| route6_device(&devices, &r).map(|d| d.name.as_str());
        assert_eq!(on(route("2001:db8:113::254", None)), Ok("xg-wan0"));
        assert_eq!(on(route("fd00:10::fe", None)), Ok("xg-lan0"));
        assert_eq!(on(route("fe80::1", Some(1))), Ok("xg-wan0"));
        assert_eq!(
            on(route("2001:db8:114::1", None)),
            Err("its next hop is on no interface's IPv6 network")
        );
        assert_eq!(
            on(route("fe80::1", Some(2))),
            Err("its interface has no IPv6 address")
        );
        assert_eq!(
            on(route("fe80::1", Some(3))),
            Err("its interface has no host device")
        );
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(prefix_mask(32), Ipv4Addr::BROADCAST);
    }
}
