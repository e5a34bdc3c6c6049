//! Parallel computing: executors and deterministic parallel building blocks.
//!
//! Every parallel entry point in squish takes a `&dyn ParallelExecutor`.
//! [`Sequential`] is the default; [`ThreadPool`] owns a rayon pool of the size
//! you choose.

mod executor;
mod ops;

pub use executor::{ParallelExecutor, Sequential, ThreadPool};
pub use ops::{for_each_chunk_mut, map, rows_per_task};
