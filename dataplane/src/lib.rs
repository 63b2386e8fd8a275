//! The xdpgw dataplane: the typed rule set and its compiled form
//! (`rule`, `classify`), wire views and rewrites (`wire`), flow keys
//! (`flow`), connection tracking (`conntrack`), NAT (`nat`), ICMP error
//! rate limits (`icmp_limit`), routes and
//! neighbours (`route`, `neigh`), the netfilter pipeline (`pipeline`), the
//! workers that drive it in batches over port queues (`worker`), packet
//! tracing (`trace`), LOG (`log`), counted drop reasons (`drop`), and the
//! AF_XDP ports and their in-memory stand-ins (`port`, where all unsafe code
//! lives). It does not depend on the control plane.
#![deny(unsafe_code)]

pub mod classify;
pub mod conntrack;
pub mod drop;
pub mod flow;
mod flowcache;
pub mod icmp_limit;
pub mod log;
pub mod nat;
pub mod neigh;
pub mod pipeline;
pub mod port;
pub mod route;
pub mod rule;
pub mod trace;
pub mod wire;
pub mod worker;
