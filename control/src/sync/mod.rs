//! Conntrack state sync, wire-compatible with conntrackd (conntrack-tools
//! 1.4.x): see [`wire`].

pub mod session;
pub mod wire;
