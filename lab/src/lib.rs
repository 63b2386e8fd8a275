//! The namespace lab of xdpgw: network namespaces (an RAII guard, [`Netns`]),
//! veth pairs, processes run inside them ([`Process`]), the gateway lab of
//! two clients, the gateway and a server ([`Lab`], IPv4 or dual-stack:
//! [`Lab::dual_stack_lab`]), the traffic tools that
//! run in it ([`traffic`]) and parsers for what `ping` and `tcpdump` print
//! ([`parse`]). Everything is removed on drop, also while unwinding from a
//! panic.
//!
//! Who uses it:
//!
//! - `xdpgw demo` builds the gateway lab and drives its traffic
//!   in-process: threads of the demo enter the lab's namespaces
//!   ([`Netns::run_in`]) and open their sockets there ([`traffic::Server`],
//!   the client functions of [`traffic`]); `ping` and `tcpdump` run as
//!   programs. The product binary links only that part.
//! - The end-to-end tests (`vm-tests`) and the packet-rate bench build the
//!   same lab and run the traffic tools as processes: the `xdpgw-lab`
//!   binary of this crate (`xdpgw-lab tcp-serve 8080`, through
//!   [`Lab::tool`]), which [`tools_binary`] builds on demand. It is a test
//!   tool, not part of the product.
//! - The AF_XDP port tests of the dataplane use the namespace guard, veth
//!   pairs and [`require_root`].
//! - The failover tests (`vm-tests/tests/ha_failover.rs`) build the
//!   two-node lab of [`ha_pair`]: a gateway pair on keepalived with
//!   conntrack state sync, Linux or xdpgw nodes.
//! - The VLAN tests run [`vlan_bridge`] (`xdpgw-lab vlan-bridge`): VLAN
//!   sub-interfaces in user space, on a kernel without 802.1Q support.
//!
//! Errors: every step panics with the command, its exit status and its
//! output instead of returning a `Result`. A lab step that fails is a
//! broken precondition of the test or demo that runs it, a panic keeps the
//! backtrace of the step that failed, and unwinding drops the guards, which
//! remove the lab. `xdpgw demo` catches the panic and reports it.
//!
//! Not published: a part of xdpgw's tests and demo, not a library of its
//! own.
#![forbid(unsafe_code)]

pub mod gateway;
pub mod ha_pair;
pub mod netns;
pub mod parse;
pub mod precondition;
pub mod process;
pub mod traffic;
pub mod vlan_bridge;
pub mod workdir;
pub mod workspace;

use std::sync::atomic::{AtomicU32, Ordering};

pub use gateway::{
    parse_router_adverts, xdpgw_ipv6_config, xdpgw_ipv6_support, Backend, ClientAddressing,
    GatewaySpec, Interface, Ipv6Spec, Ipv6Unsupported, Lab, LabConfig, Restart, RouterAdvert,
    RouterAdvertSeen, Slaac, UdpProbe6, CLIENT, CLIENT2, CLIENT2_6, CLIENT6, FAR, FAR6,
    GATEWAY_LAN, GATEWAY_LAN6, GATEWAY_WAN, GATEWAY_WAN1, GATEWAY_WAN6, HOST_IF, HOST_IF2, LAN6,
    LAN6_PREFIX_LEN, LISTEN_TIMEOUT, READY_TIMEOUT, SERVER, SERVER6, SERVER_WAN1, STOP_TIMEOUT,
    WAN6,
};
pub use netns::{host_netns, remove_stale_namespaces, veth, veth_with_queues, Netns};
pub use parse::{
    conntrack_entry, packet_counters, parse_ping, parse_tcpdump6_verbose, parse_tcpdump_verbose,
    CapturedPacket, CapturedPacket6, Ping, Probe6,
};
pub use precondition::{effective_uid, find_program, missing, require_root, skip_notice};
pub use process::{check_interrupt, interrupt_on, interrupted, Finished, Interrupted, Process};
pub use workdir::WorkDir;
pub use workspace::{tools_binary, workspace_binary, workspace_dir, xdpgw_binary};

/// Numbers the namespaces and work directories of this process so that
/// names stay unique.
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_number() -> u32 {
    // Relaxed: the counter only has to hand out distinct numbers.
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
