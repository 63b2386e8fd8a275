//! CPU and memory hints for the packet path's data structures: a cache
//! prefetch (`prefetch`) and transparent huge pages for large tables
//! (`hugemem`). No I/O: they change no state the program can see, so the
//! sans-I/O core (conntrack, the flow cache, the pipeline) may use them.
//! Their intrinsic and foreign function are unsafe to call, so this is,
//! beside `port`, the one other place with unsafe code; every block says
//! why it is sound.

#[allow(unsafe_code)]
pub mod hugemem;
#[allow(unsafe_code)]
pub mod prefetch;
