//! Compression families built on the core representation.

pub mod lowrank;
pub mod sharing;
