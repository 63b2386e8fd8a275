//! The XDP redirect program, its XSKMAP, and attaching it to an interface.
//!
//! The program is six raw eBPF instructions, the equivalent of
//!
//! ```c
//! SEC("xdp") int xdpgw_xsk(struct xdp_md *ctx) {
//!     return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//! }
//! ```
//!
//! A frame whose queue has no socket in the map falls back to `XDP_PASS`
//! (the kernel stack). The program is attached with `BPF_LINK_CREATE`, so the
//! attachment lives exactly as long as the link descriptor: when the process
//! exits, however it exits, the kernel detaches it.
//!
//! # Replacing a program left behind
//!
//! A link held by a process that died is gone with it, but a program can
//! still be in the way: one attached the legacy way (netlink `IFLA_XDP`,
//! e.g. by `ip link set dev X xdp ...` or an older xdpgw), or a link whose
//! descriptor someone still holds (a leaked descriptor, a pinned link). When
//! `BPF_LINK_CREATE` fails with `EBUSY` or `EEXIST`, [`replace_existing`]
//! looks at what RTM_GETLINK reports per mode and, for each attached program
//! that is *ours* (its name is [`PROG_NAME`]): first tries the netlink detach
//! (`IFLA_XDP_FD = -1` in that mode), and when the kernel refuses that with
//! `EBUSY` because the program is held by a link, finds the link (walking
//! `BPF_LINK_GET_NEXT_ID` for an XDP link on this ifindex running that
//! program) and `BPF_LINK_DETACH`es it. Then the attach is retried once.
//! A program that is not ours is never touched: the open fails with
//! [`PortError::XdpBusy`] naming it, since removing someone else's XDP
//! program (a firewall, say) from a gateway's NIC must be an operator's
//! decision.

use std::ffi::CStr;
use std::os::fd::OwnedFd;

use super::netlink;
use super::sys::{self, Errno, Insn};
use super::{PortError, XdpAttach};

/// The program's name, as the kernel reports it (`bpftool prog`, `ip link`).
pub const PROG_NAME: &str = "xdpgw_xsk";
const MAP_NAME: &str = "xdpgw_xsks";
const LICENSE: &CStr = c"Dual BSD/GPL";

pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The redirect program for the XSKMAP `map_fd`.
pub(crate) fn program(map_fd: i32) -> [Insn; 6] {
    const fn regs(dst: u8, src: u8) -> u8 {
        dst | (src << 4)
    }
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        // BPF_LDX | BPF_MEM | BPF_W
        Insn {
            code: 0x61,
            regs: regs(2, 1),
            off: XDP_MD_RX_QUEUE_INDEX,
            imm: 0,
        },
        // r1 = map (ld_imm64, src = BPF_PSEUDO_MAP_FD), two slots
        // BPF_LD | BPF_DW | BPF_IMM
        Insn {
            code: 0x18,
            regs: regs(1, BPF_PSEUDO_MAP_FD),
            off: 0,
            imm: map_fd,
        },
        Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0,
        },
        // r3 = XDP_PASS: the action when the map has no socket at the key
        // BPF_ALU64 | BPF_MOV | BPF_K
        Insn {
            code: 0xb7,
            regs: regs(3, 0),
            off: 0,
            imm: XDP_PASS,
        },
        // r0 = bpf_redirect_map(r1, r2, r3)
        // BPF_JMP | BPF_CALL
        Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: BPF_FUNC_REDIRECT_MAP,
        },
        // return r0
        // BPF_JMP | BPF_EXIT
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

/// A loaded program and its map (not yet attached).
pub(crate) struct Loaded {
    pub map: OwnedFd,
    pub prog: OwnedFd,
}

fn bpf_error(op: &'static str, errno: Errno) -> PortError {
    if errno == libc::EPERM || errno == libc::EACCES {
        PortError::Permission {
            what: format!("{op} needs CAP_BPF and CAP_NET_ADMIN (or root)"),
        }
    } else {
        PortError::Bpf { op, errno }
    }
}

/// Creates an XSKMAP of `entries` slots and loads the program for it.
pub(crate) fn load(entries: u32) -> Result<Loaded, PortError> {
    load_named(entries, PROG_NAME, false)
}

/// [`load`] for multi-buffer frames: the program is the same (a redirect
/// looks at no byte), loaded with BPF_F_XDP_HAS_FRAGS so that drivers pass
/// it frames in several buffers (veth takes native XDP above MTU 3506 only
/// with such a program).
pub(crate) fn load_frags(entries: u32) -> Result<Loaded, PortError> {
    load_named(entries, PROG_NAME, true)
}

/// [`load`] under another program name (tests: a "foreign" program).
pub(crate) fn load_named(entries: u32, name: &str, frags: bool) -> Result<Loaded, PortError> {
    let prog_flags = if frags { sys::BPF_F_XDP_HAS_FRAGS } else { 0 };
    use std::os::fd::AsRawFd;
    let map = sys::map_create(sys::BPF_MAP_TYPE_XSKMAP, entries.max(1), MAP_NAME)
        .map_err(|e| bpf_error("BPF_MAP_CREATE", e))?;
    let insns = program(map.as_raw_fd());
    let prog = match sys::prog_load(
        sys::BPF_PROG_TYPE_XDP,
        sys::BPF_XDP,
        &insns,
        LICENSE,
        name,
        prog_flags,
        None,
    ) {
        Ok(prog) => prog,
        Err(e @ (libc::EPERM | libc::EACCES)) => return Err(bpf_error("BPF_PROG_LOAD", e)),
        Err(errno) => {
            // Load again with the verifier's log, for the error.
            let mut log = vec![0u8; 64 * 1024];
            let _ = sys::prog_load(
                sys::BPF_PROG_TYPE_XDP,
                sys::BPF_XDP,
                &insns,
                LICENSE,
                name,
                prog_flags,
                Some(&mut log),
            );
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            return Err(PortError::Verifier {
                errno,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            });
        }
    };
    Ok(Loaded { map, prog })
}

/// Attaches `prog` to `ifindex` with a link in `mode`, replacing a program
/// of ours that is in the way (see the module docs).
pub(crate) fn attach(
    prog: &OwnedFd,
    ifindex: u32,
    ifname: &str,
    mode: XdpAttach,
) -> Result<OwnedFd, PortError> {
    let flags = mode_flags(mode);
    match sys::link_create_xdp(prog, ifindex, flags) {
        Ok(link) => Ok(link),
        Err(libc::EBUSY | libc::EEXIST) => {
            replace_existing(ifindex, ifname)?;
            sys::link_create_xdp(prog, ifindex, flags).map_err(|errno| PortError::Attach {
                ifname: ifname.to_owned(),
                mode,
                errno,
            })
        }
        Err(e @ (libc::EPERM | libc::EACCES)) => Err(bpf_error("BPF_LINK_CREATE", e)),
        Err(errno) => Err(PortError::Attach {
            ifname: ifname.to_owned(),
            mode,
            errno,
        }),
    }
}

pub(crate) fn mode_flags(mode: XdpAttach) -> u32 {
    match mode {
        XdpAttach::Native => XDP_FLAGS_DRV_MODE,
        XdpAttach::Generic => XDP_FLAGS_SKB_MODE,
    }
}

/// Detaches every program of ours attached to `ifindex` (driver and generic
/// mode); fails on a program that is not ours.
pub(crate) fn replace_existing(ifindex: u32, ifname: &str) -> Result<(), PortError> {
    let state = netlink::link_by_index(ifindex).map_err(|e| PortError::Netlink {
        op: "RTM_GETLINK",
        errno: e.errno,
        msg: e.msg,
    })?;
    for (flags, prog_id) in [
        (XDP_FLAGS_DRV_MODE, state.xdp_drv_prog),
        (XDP_FLAGS_SKB_MODE, state.xdp_skb_prog),
    ] {
        if prog_id == 0 {
            continue;
        }
        let name = match sys::prog_fd_by_id(prog_id).and_then(|fd| sys::prog_info(&fd)) {
            Ok(info) => info.name,
            // Gone meanwhile: nothing to detach.
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_error("BPF_PROG_GET_FD_BY_ID", e)),
        };
        if name != PROG_NAME {
            return Err(PortError::XdpBusy {
                ifname: ifname.to_owned(),
                prog_id,
                prog_name: name,
            });
        }
        match netlink::set_xdp_fd(ifindex, -1, flags) {
            Ok(()) => {}
            // "Can't replace active BPF XDP link": it is held by a link.
            Err(e) if e.errno == libc::EBUSY => detach_link(ifindex, prog_id)?,
            Err(e) => {
                return Err(PortError::Netlink {
                    op: "RTM_SETLINK IFLA_XDP_FD=-1",
                    errno: e.errno,
                    msg: e.msg,
                })
            }
        }
    }
    Ok(())
}

/// Finds the XDP link on `ifindex` running `prog_id` and detaches it.
fn detach_link(ifindex: u32, prog_id: u32) -> Result<(), PortError> {
    let mut id = 0;
    // Bounded walk: link ids only grow, and a system has far fewer links.
    for _ in 0..1_000_000 {
        id = match sys::link_next_id(id).map_err(|e| bpf_error("BPF_LINK_GET_NEXT_ID", e))? {
            Some(next) => next,
            None => break,
        };
        let link = match sys::link_fd_by_id(id) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_error("BPF_LINK_GET_FD_BY_ID", e)),
        };
        let info = sys::link_info(&link).map_err(|e| bpf_error("BPF_OBJ_GET_INFO_BY_FD", e))?;
        if info.link_type == sys::BPF_LINK_TYPE_XDP
            && info.xdp_ifindex == ifindex
            && info.prog_id == prog_id
        {
            return sys::link_detach(&link).map_err(|e| bpf_error("BPF_LINK_DETACH", e));
        }
    }
    Err(PortError::Bpf {
        op: "BPF_LINK_GET_NEXT_ID (no link holds the attached program)",
        errno: libc::ENOENT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = program(5);
        // ldxw r2, [r1 + 16]
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 16,
                imm: 0
            }
        );
        // lddw r1, map_fd 5 (pseudo map fd)
        assert_eq!(p[1].code, 0x18);
        assert_eq!(p[1].regs, 0x11);
        assert_eq!(p[1].imm, 5);
        assert_eq!(
            p[2],
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        // mov r3, XDP_PASS; call bpf_redirect_map; exit
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 0x03, 2));
        assert_eq!((p[4].code, p[4].imm), (0x85, 51));
        assert_eq!(p[5].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
