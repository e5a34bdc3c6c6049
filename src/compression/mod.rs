//! Compression families built on the core representation.

pub mod deep;
pub mod sharing;
