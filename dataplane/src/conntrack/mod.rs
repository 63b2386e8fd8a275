//! Connection tracking (being written).
