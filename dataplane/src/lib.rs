//! The xdpgw dataplane: the typed rule set and its compiled form
//! (`rule`, `classify`), wire views and rewrites (`wire`), flow keys
//! (`flow`), IPv4 reassembly and fragmentation (`frag`), connection tracking (`conntrack`), NAT (`nat`), ICMP error
//! rate limits (`icmp_limit`), interfaces on ports and VLANs (`link`), routes and neighbours (`route`, `neigh`),
//! what the workers share (`gateway`), the host path devices' addresses
//! (`host_addr`), the netfilter pipeline
//! (`pipeline`) and what it decides for a frame (`action`), the
//! established-flow fast path (`fastpath`), the workers that drive both in
//! batches over port queues (`worker`) and their counters (`stats`, defined
//! once with the views' table: `counter`), packet
//! tracing (`trace`), LOG (`log`), counted drop reasons (`drop`), the
//! CPU and memory hints (`hint`: prefetch, huge pages) and the AF_XDP
//! ports and their in-memory stand-ins (`port`); unsafe code lives only in
//! `port` and `hint`. It does not depend on the control plane.
#![deny(unsafe_code)]

pub mod action;
pub(crate) mod bucket_slab;
pub mod classify;
pub mod connlimit;
pub mod conntrack;
pub mod counter;
pub mod drop;
mod fastpath;
pub mod flow;
pub mod frag;
pub mod gateway;
pub mod hashlimit;
pub mod hint;
pub mod host_addr;
pub mod icmp_limit;
pub mod ipset;
pub mod link;
pub mod log;
pub mod nat;
pub mod neigh;
pub mod pipeline;
pub mod port;
pub mod ra;
pub mod recent;
pub mod route;
pub mod rule;
pub mod stateful;
pub mod stats;
pub mod trace;
pub mod wire;
pub mod worker;
