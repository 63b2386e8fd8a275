//! The xdpgw control plane.
#![forbid(unsafe_code)]
