//! Wire views and rewrites (being written).
