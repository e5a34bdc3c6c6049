//! Parallel computing: executors and deterministic parallel building blocks.
//!
//! Every parallel entry point in squish takes a `&dyn ParallelExecutor`.
//! [`Sequential`] is the default; [`ThreadPool`] runs tasks on the calling thread
//! and workers of its own, as many in all as you choose. On top of the executors:
//!
//! - **data parallel** ([`DataParallel`]): a batch split into fixed shards for
//!   inference through any [`Forward`] model, and per-shard gradients summed
//!   by a fixed tree for training;
//! - **model parallel**: layers as pipeline stages over micro-batches
//!   ([`LayerPipeline`]); one weight matrix split by output rows or input
//!   columns is [`kernels::RowSplit`](crate::kernels::RowSplit) /
//!   [`kernels::ColSplit`](crate::kernels::ColSplit);
//! - **task parallel** ([`TaskRunner`]): independent jobs (layers to compress,
//!   a sweep of settings) largest first under a memory budget, with progress
//!   events and per-task outcomes.
//!
//! Work is always cut along boundaries that depend on the problem, never on
//! the thread count, and reductions run in a fixed order, so every result is
//! bit-identical for any executor. See `docs/parallel.md`.

mod blocks;
mod data;
mod error;
mod executor;
mod forward;
mod ops;
mod staged;
mod tasks;
mod team;
mod transpose;

pub(crate) use blocks::fill_row_blocks;
pub use blocks::row_blocks;
pub use data::{
    data_parallel_forward, data_parallel_grad, tree_reduce, DataParallel, DataParallelParams,
};
pub use error::ParallelError;
pub use executor::{ParallelExecutor, Sequential, ThreadPool};
pub(crate) use forward::check_chain;
pub use forward::Forward;
pub(crate) use transpose::{transpose, transposed, transposed_vec};

/// Moved to [`training::Activation`](crate::training::Activation): one
/// activation type for the whole crate.
#[deprecated(since = "0.2.0", note = "moved to squish::training::Activation")]
pub type Activation = crate::training::Activation;
/// Moved to [`training::Layer`](crate::training::Layer) (`parallel` holds no model types).
#[deprecated(since = "0.2.0", note = "moved to squish::training::Layer")]
pub type Layer = crate::training::Layer;
/// Moved to [`training::LayerStack`](crate::training::LayerStack) (`parallel` holds no model types).
#[deprecated(since = "0.2.0", note = "moved to squish::training::LayerStack")]
pub type LayerStack = crate::training::LayerStack;
pub use ops::{even_ranges, for_each_chunk_mut, map, rows_per_task};
pub use staged::{LayerPipeline, LayerPipelineParams};
pub use tasks::{Progress, ProgressEvent, TaskOutcome, TaskRunner, TaskRunnerParams, TaskSpec};

// Old paths of items that moved above this leaf (kept for one release).
/// Moved to [`crate::kernels::dense_matmul`].
#[deprecated(note = "moved to squish::kernels::dense_matmul")]
pub use crate::kernels::dense_matmul;
/// Moved to [`crate::kernels::ColSplit`].
#[deprecated(note = "moved to squish::kernels::ColSplit")]
pub use crate::kernels::ColSplit;
/// Moved to [`crate::kernels::RowSplit`].
#[deprecated(note = "moved to squish::kernels::RowSplit")]
pub use crate::kernels::RowSplit;
/// Moved to [`crate::pipeline::pipeline_working_set`].
#[deprecated(note = "moved to squish::pipeline::pipeline_working_set")]
pub use crate::pipeline::pipeline_working_set;
