//! Raw layer-2 endpoints for the namespace lab's 802.1Q bridge
//! (`xdpgw-lab vlan-bridge`, the user-space stand-in for Linux's VLAN
//! devices on a kernel built without `CONFIG_VLAN_8021Q`): an AF_PACKET
//! socket bound to an interface, whose received frames' VLAN tags are read
//! whether inline or out of band, and a TAP device. The gateway itself does
//! not use them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::tun::{ifreq_ioctl, inet_socket, last_errno, set_up, Ifreq};

const TUN_PATH: &[u8] = b"/dev/net/tun\0";
/// `ETH_P_ALL`, in network byte order as `socket(2)` and `bind(2)` take it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

fn io_err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The index of interface `name`.
fn ifindex(name: &str) -> io::Result<i32> {
    let sock = inet_socket().map_err(io_err)?;
    let mut ifr = Ifreq::new(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr).map_err(io_err)?;
    Ok(i32::from_ne_bytes([
        ifr.data[0],
        ifr.data[1],
        ifr.data[2],
        ifr.data[3],
    ]))
}

/// The MAC address of interface `name`.
pub fn mac_of(name: &str) -> io::Result<[u8; 6]> {
    let sock = inet_socket().map_err(io_err)?;
    let mut ifr = Ifreq::new(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr).map_err(io_err)?;
    // struct sockaddr: family (2 bytes), then the address.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&ifr.data[2..8]);
    Ok(mac)
}

/// A frame received by a [`PacketSocket`]: its length in the buffer, and
/// the tag (TCI) the kernel took out of it, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    /// The 802.1Q TCI delivered out of band (`PACKET_AUXDATA` with
    /// `TP_STATUS_VLAN_VALID`): the frame in the buffer is untagged.
    pub tci: Option<u16>,
}

/// An AF_PACKET socket bound to one interface: every frame it receives
/// (not those sent through it or by the host on that interface), frames
/// sent as given. Non-blocking.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Binds to interface `name`.
    pub fn bind(name: &str) -> io::Result<PacketSocket> {
        let index = ifindex(name)?;
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL_BE),
            )
        };
        if fd < 0 {
            return Err(io_err(last_errno()));
        }
        // SAFETY: a descriptor socket(2) just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for (opt, what) in [(libc::PACKET_AUXDATA, 1), (libc::PACKET_IGNORE_OUTGOING, 1)] {
            let v: libc::c_int = what;
            // SAFETY: setsockopt(2) reads an int from a live local.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io_err(last_errno()));
            }
        }
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL_BE;
        sll.sll_ifindex = index;
        // SAFETY: bind(2) reads a sockaddr_ll of the length given from a
        // live local.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io_err(last_errno()));
        }
        Ok(PacketSocket { fd })
    }

    /// Receives one frame into `buf`; None when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one cmsg carrying a tpacket_auxdata (8-byte aligned).
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all zeroes is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: recvmsg(2) writes at most iov_len bytes into `buf` and at
        // most msg_controllen bytes into `control`, both live and exclusive
        // for the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        let len = (n as usize).min(buf.len());
        let mut tci = None;
        // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
        // within msg_controllen; the PACKET_AUXDATA payload is a
        // tpacket_auxdata, read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        tci = Some(aux.tp_vlan_tci);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(Received { len, tci }))
    }

    /// Sends `frame` as it is.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) reads `frame.len()` bytes from a live slice.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A TAP device (Ethernet frames, no packet information header), up, with
/// the MAC given; removed when dropped. Non-blocking.
#[derive(Debug)]
pub struct TapDevice {
    fd: OwnedFd,
}

impl TapDevice {
    /// Creates TAP device `name` with address `mac`, and sets it up.
    pub fn create(name: &str, mac: [u8; 6]) -> io::Result<TapDevice> {
        // SAFETY: open(2) of a NUL-terminated constant path.
        let fd = unsafe {
            libc::open(
                TUN_PATH.as_ptr().cast(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io_err(last_errno()));
        }
        // SAFETY: a descriptor open(2) just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ifr = Ifreq::new(name);
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        ifr.data[..2].copy_from_slice(&flags.to_ne_bytes());
        ifreq_ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr).map_err(io_err)?;
        let sock = inet_socket().map_err(io_err)?;
        let mut ifr = Ifreq::new(name);
        ifr.data[..2].copy_from_slice(&libc::ARPHRD_ETHER.to_ne_bytes());
        ifr.data[2..8].copy_from_slice(&mac);
        ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFHWADDR, &mut ifr).map_err(io_err)?;
        set_up(sock.as_raw_fd(), name).map_err(io_err)?;
        Ok(TapDevice { fd })
    }

    /// Reads one frame the host sent into the device; None when none is
    /// waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: read(2) writes at most `buf.len()` bytes into a live,
        // exclusive slice.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(n as usize))
    }

    /// Hands `frame` to the host as received on the device.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: write(2) reads `frame.len()` bytes from a live slice.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
