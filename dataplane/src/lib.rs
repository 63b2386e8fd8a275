//! The xdpgw dataplane: the typed rule set and its compiled form
//! (`rule`, `classify`), wire views and rewrites (`wire`), flow keys
//! (`flow`), connection tracking (`conntrack`), NAT (`nat`), ICMP error
//! rate limits (`icmp_limit`), routes and
//! neighbours (`route`, `neigh`), the netfilter pipeline and its workers
//! (`pipeline`), packet tracing (`trace`), LOG (`log`), counted drop
//! reasons (`drop`), CPU and memory hints (`hint`: prefetch, huge pages)
//! and the AF_XDP ports (`port`); unsafe code lives only in `port` and
//! `hint`. It does not depend on the control plane.
#![deny(unsafe_code)]

pub mod classify;
pub mod conntrack;
pub mod drop;
pub mod flow;
mod flowcache;
pub mod hint;
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
