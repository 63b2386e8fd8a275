//! Frames larger than 1,500 bytes (namespace lab, through Linux with
//! conf/gateway.rules and through `xdpgw run --config conf/gateway.toml`,
//! observations compared), every link at the same MTU:
//!
//! - 9000: frames arrive and leave in several 4096-byte UMEM frames
//!   (multi-buffer AF_XDP), the program loaded for multi-buffer frames, so
//!   veth takes native XDP. An 8,000-byte UDP datagram passes as one
//!   8,028-byte packet; TCP negotiates MSS 8960 both ways through
//!   MASQUERADE (Linux's figures).
//! - 3800: one 4096-byte UMEM frame holds it; veth refuses native XDP at
//!   that MTU for a program without multi-buffer support (it takes it up to
//!   3506), so `xdp_mode = "auto"` falls back to generic mode. A 3,772-byte
//!   datagram passes as one 3,800-byte packet, MSS 3760.
//!
//! In both, a transfer's content arrives intact.

use std::net::Ipv4Addr;
use std::time::Duration;

use xdpgw_vm_tests::lab::{Backend, Lab, LabConfig, CLIENT, GATEWAY_WAN, HOST_IF, SERVER};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_config, workspace_dir};

fn jumbo_lab(backend: Backend, mtu: u16) -> Lab {
    Lab::gateway_lab(&LabConfig {
        mtu: Some(mtu),
        ..lab_config(backend, &workspace_dir().join("conf/gateway.toml"))
    })
}

/// The `mss N` option of a captured TCP packet.
fn mss(summary: &str) -> Option<u16> {
    let at = summary.find("mss ")?;
    summary[at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[derive(Debug, PartialEq)]
struct JumboObs {
    /// The datagram as the server saw it: source, and tcpdump's `UDP,
    /// length N` (one packet: no fragments).
    udp: (Ipv4Addr, String),
    /// MSS of the SYN as the server saw it, and of the SYN-ACK as the
    /// client saw it.
    syn_mss: Option<u16>,
    syn_ack_mss: Option<u16>,
    transfer: String,
}

#[test]
fn mtu_9000_udp_and_tcp_through_nat() {
    jumbo(
        "mtu_9000_udp_and_tcp_through_nat",
        9000,
        8000,
        "lan0: native xdp",
    );
}

#[test]
fn mtu_3800_udp_and_tcp_through_nat() {
    jumbo(
        "mtu_3800_udp_and_tcp_through_nat",
        3800,
        3772,
        "lan0: generic xdp",
    );
}

/// The scenario at `mtu` with a UDP datagram of `payload` bytes; xdpgw's
/// `ready` line must contain `mode`.
fn jumbo(test: &str, mtu: u16, payload: u16, mode: &str) {
    on_both_backends_in(
        test,
        |backend| jumbo_lab(backend, mtu),
        |lab| {
            if lab.backend() == Backend::Xdpgw {
                let ready = lab.gateway_output();
                assert!(ready.first().is_some_and(|l| l.contains(mode)), "{ready:?}");
            }
            let counter = lab.serve(lab.server(), &["udp-count", "9999"]);
            let capture = lab.capture(lab.server(), HOST_IF, 1, "udp and dst port 9999");
            let mut sender = lab.tool(
                lab.client(),
                &[
                    "udp-send",
                    &ip(SERVER),
                    "9999",
                    "--rate",
                    "10",
                    "--bytes",
                    &payload.to_string(),
                ],
            );
            sender.wait_line("`sending` line", Duration::from_secs(30), |l| {
                l.starts_with("sending ")
            });
            let seen = captured(capture);
            drop(sender);
            drop(counter);
            let udp = seen
                .first()
                .map(|p| {
                    let len = p
                        .summary
                        .split(", ")
                        .find(|w| w.starts_with("length "))
                        .unwrap_or("")
                        .to_owned();
                    (p.src, format!("{} {len}", p.summary.contains("UDP")))
                })
                .unwrap_or_else(|| panic!("no datagram captured"));

            let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
            let syn = lab.capture(lab.server(), HOST_IF, 1, "tcp[tcpflags] == tcp-syn");
            let syn_ack = lab.capture(
                lab.client(),
                HOST_IF,
                1,
                "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
            );
            let line = lab.tool_result(
                lab.client(),
                &[
                    "tcp-get",
                    &ip(SERVER),
                    "8080",
                    "3000000",
                    "--timeout",
                    OK_WAIT,
                ],
                TOOL_LIMIT,
            );
            drop(server);
            let syn = captured(syn);
            let syn_ack = captured(syn_ack);
            assert_eq!(syn.first().map(|p| p.src), Some(GATEWAY_WAN), "{syn:?}");
            assert_eq!(syn_ack.first().map(|p| p.dst), Some(CLIENT), "{syn_ack:?}");
            JumboObs {
                udp,
                syn_mss: syn.first().and_then(|p| mss(&p.summary)),
                syn_ack_mss: syn_ack.first().and_then(|p| mss(&p.summary)),
                transfer: outcome(&line),
            }
        },
        |o| {
            let udp_len = format!("true length {payload}");
            assert_eq!(o.udp, (GATEWAY_WAN, udp_len), "{o:?}");
            assert_eq!(o.syn_mss, Some(mtu - 40), "{o:?}");
            assert_eq!(o.syn_ack_mss, Some(mtu - 40), "{o:?}");
            assert_eq!(o.transfer, "ok bytes=3000000", "{o:?}");
        },
    );
}
