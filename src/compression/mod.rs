//! Compression families built on the core representation.

pub mod sharing;
pub mod deep;
