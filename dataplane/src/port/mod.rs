//! Ports: AF_XDP sockets on real interfaces (all of the crate's unsafe code
//! lives here), and an in-memory port for tests and benchmarks.
