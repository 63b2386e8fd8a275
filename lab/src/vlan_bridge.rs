//! 802.1Q VLAN sub-interfaces made in user space, for kernels built without
//! `CONFIG_VLAN_8021Q` (where `ip link add link X name X.10 type vlan id 10`
//! fails): `xdpgw-lab vlan-bridge TRUNK ...` moves frames between an
//! AF_PACKET socket bound to the trunk and one endpoint per VLAN, removing
//! the tag on the way in and adding it on the way out, as Linux's 8021q
//! module does between a device and its VLAN devices:
//!
//! - `--tap VID=NAME`: a TAP device NAME (e.g. `lan0.10`) with the trunk's
//!   MAC, as a VLAN device inherits it: the host's VLAN interface. The
//!   Linux reference gateway of the VLAN tests runs on these.
//! - `--access VID=IF`: an existing interface IF (an access port, e.g. a
//!   veth to a client): a switch. Frames go between IF and the trunk as
//!   they are, but for the tag.
//!
//! Untagged and priority-tagged (VLAN 0) frames stay with the trunk itself
//! (the kernel handles them there); frames tagged with a VLAN that has no
//! endpoint are dropped and counted. The tag of a received frame is read
//! inline or out of band (`PACKET_AUXDATA`: a packet socket on a veth gets
//! it that way), written inline with priority 0.
//!
//! Prints `ready trunk=NAME vlans=ID,...` once every endpoint exists, and
//! when stopped (SIGTERM, SIGINT) `stopped in=N out=N unknown_vlan=N
//! errors=N`: frames to the endpoints, frames to the trunk, frames of
//! unknown VLANs, frames that could not be sent.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use xdpgw_dataplane::port::raw::{mac_of, PacketSocket, TapDevice};
use xdpgw_dataplane::port::wait_readable;
use xdpgw_dataplane::wire::vlan::{self, Tag, VID_MAX};

/// One VLAN's endpoint.
#[derive(Debug)]
pub enum Endpoint {
    /// A TAP device: the host's interface in that VLAN.
    Tap(TapDevice),
    /// An access port.
    Access(PacketSocket),
}

impl Endpoint {
    fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Endpoint::Tap(t) => t.read(buf),
            // An access port's frames come untagged (a tag there would
            // be another VLAN's business: left as is).
            Endpoint::Access(s) => Ok(s.recv(buf)?.map(|r| r.len)),
        }
    }

    fn write(&self, frame: &[u8]) -> io::Result<()> {
        match self {
            Endpoint::Tap(t) => t.write(frame),
            Endpoint::Access(s) => s.send(frame),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Endpoint::Tap(t) => t.as_raw_fd(),
            Endpoint::Access(s) => s.as_raw_fd(),
        }
    }
}

/// What the bridge moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeCounts {
    /// Frames from the trunk to an endpoint.
    pub inbound: u64,
    /// Frames from an endpoint to the trunk.
    pub outbound: u64,
    /// Tagged frames of a VLAN without an endpoint, dropped.
    pub unknown_vlan: u64,
    /// Frames that could not be sent.
    pub errors: u64,
}

/// A VLAN's endpoint, as the command line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointSpec {
    Tap { vid: u16, name: String },
    Access { vid: u16, ifname: String },
}

impl EndpointSpec {
    fn vid(&self) -> u16 {
        match self {
            EndpointSpec::Tap { vid, .. } | EndpointSpec::Access { vid, .. } => *vid,
        }
    }

    /// `VID=NAME` of `--tap` (`tap`) or `--access`.
    pub fn parse(tap: bool, s: &str) -> Result<EndpointSpec, String> {
        let (vid, name) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': expected VID=NAME"))?;
        let vid: u16 = vid
            .parse()
            .ok()
            .filter(|v| (1..=VID_MAX).contains(v))
            .ok_or_else(|| format!("'{s}': the VLAN id must be 1 to {VID_MAX}"))?;
        if name.is_empty() || name.len() > 15 {
            return Err(format!("'{s}': an interface name of 1 to 15 characters"));
        }
        let name = name.to_string();
        Ok(if tap {
            EndpointSpec::Tap { vid, name }
        } else {
            EndpointSpec::Access { vid, ifname: name }
        })
    }
}

/// The bridge: the trunk's socket and the VLANs' endpoints.
#[derive(Debug)]
pub struct VlanBridge {
    trunk: PacketSocket,
    vlans: Vec<(u16, Endpoint)>,
    pub counts: BridgeCounts,
}

impl VlanBridge {
    /// Opens the trunk and makes (`--tap`) or opens (`--access`) the
    /// endpoints.
    pub fn open(trunk: &str, specs: &[EndpointSpec]) -> io::Result<VlanBridge> {
        let mac = mac_of(trunk)?;
        let socket = PacketSocket::bind(trunk)?;
        let mut vlans = Vec::new();
        for s in specs {
            if vlans.iter().any(|(v, _)| *v == s.vid()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("VLAN {} given twice", s.vid()),
                ));
            }
            let ep = match s {
                EndpointSpec::Tap { name, .. } => Endpoint::Tap(TapDevice::create(name, mac)?),
                EndpointSpec::Access { ifname, .. } => {
                    Endpoint::Access(PacketSocket::bind(ifname)?)
                }
            };
            vlans.push((s.vid(), ep));
        }
        Ok(VlanBridge {
            trunk: socket,
            vlans,
            counts: BridgeCounts::default(),
        })
    }

    /// Moves frames until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut fds = vec![self.trunk.as_raw_fd()];
        fds.extend(self.vlans.iter().map(|(_, e)| e.fd()));
        // Room for a frame of any MTU a veth or TAP here has, and a tag.
        let mut buf = vec![0u8; 65536 + vlan::TAG_LEN];
        while !stop.load(Ordering::Relaxed) {
            wait_readable(&fds, Duration::from_millis(100));
            self.trunk_inbound(&mut buf)?;
            self.trunk_outbound(&mut buf)?;
        }
        Ok(())
    }

    fn trunk_inbound(&mut self, buf: &mut [u8]) -> io::Result<()> {
        while let Some(r) = self.trunk.recv(buf)? {
            let (vid, len) = match r.tci {
                Some(tci) => (tci & 0x0fff, r.len),
                None => match vlan::read_tag(&buf[..r.len]) {
                    Tag::Vlan(vid) => match vlan::untag(buf, r.len) {
                        Some(len) => (vid, len),
                        None => continue,
                    },
                    // The trunk's own frames (the kernel has them).
                    Tag::Untagged | Tag::Truncated => continue,
                },
            };
            if vid == 0 {
                // A priority tag: the trunk's own (`__netif_receive_skb_core`).
                continue;
            }
            match self.vlans.iter().find(|(v, _)| *v == vid) {
                Some((_, ep)) => match ep.write(&buf[..len]) {
                    Ok(()) => self.counts.inbound += 1,
                    Err(_) => self.counts.errors += 1,
                },
                None => self.counts.unknown_vlan += 1,
            }
        }
        Ok(())
    }

    fn trunk_outbound(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let room = buf.len() - vlan::TAG_LEN;
        for (vid, ep) in &self.vlans {
            while let Some(len) = ep.read(&mut buf[..room])? {
                match vlan::tag(buf, len, *vid) {
                    Some(len) => match self.trunk.send(&buf[..len]) {
                        Ok(()) => self.counts.outbound += 1,
                        Err(_) => self.counts.errors += 1,
                    },
                    None => self.counts.errors += 1,
                }
            }
        }
        Ok(())
    }
}
