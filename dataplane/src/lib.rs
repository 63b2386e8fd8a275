//! The xdpgw dataplane: the typed rule set, and (as the project grows) wire
//! views, the classifier, connection tracking, NAT, the pipeline, ports and
//! workers. It does not depend on the control plane.
#![deny(unsafe_code)]

pub mod classify;
pub mod conntrack;
pub mod drop;
pub mod flow;
pub mod rule;
pub mod wire;
