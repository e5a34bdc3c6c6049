//! Compression families built on the core representation.

pub mod deep;
pub mod lowrank;
pub mod sharing;
