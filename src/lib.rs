//! # squish
//!
//! Compress trained neural-network weights and multiply them without
//! decompressing.
//!
//! A weight matrix (`[out, in]`, PyTorch's layout) becomes a
//! [`CompressedMatrix`](matrix::CompressedMatrix): a **structure** (dense,
//! CSR, N:M, kept rows, low rank) times a **value encoding** (f32, int8, int4,
//! binary, ternary, codebook). [Passes](pass::CompressionPass) change one part
//! and keep the other, so they chain in a [`Pipeline`](pipeline::Pipeline):
//!
//! ```
//! use squish::ndarray::Array2;
//! use squish::prelude::*;
//!
//! let w = Array2::from_shape_fn((256, 128), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5);
//! let out = Pipeline::new()
//!     .prune(Magnitude::params(0.5).check()?)
//!     .quantize(IntQuantizer::params(8).per_row().check()?)
//!     .run(&w)?; // anything ndarray can view: &Array2, ArrayView2, ...
//! let x = Array2::<f32>::ones((4, 128));
//! // `matmul(x)` is x·Wᵀ (PyTorch's `Linear`, x is [batch, in]); sparse int8, never made dense.
//! let y = out.matrix.matmul(&x)?;
//! assert_eq!(y.dim(), (4, 256));
//! assert!(out.report.stages.last().unwrap().storage.ratio() > 2.0);
//! # Ok::<(), squish::SquishError>(())
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod calibration;
pub mod compression;
pub mod data;
pub mod distillation;
pub mod distributed;
pub mod error;
pub mod io;
pub mod kernels;
pub(crate) mod math;
pub mod matrix;
pub mod metrics;
pub mod nn;
pub mod parallel;
pub mod pass;
pub mod pipeline;
pub mod plan;
pub mod pruning;
pub mod quantization;
pub mod recipe;
pub mod training;

pub use error::{Result, SquishError};
/// The ndarray this crate is built against: use it to build inputs so the
/// versions always match.
pub use ndarray;

/// What the pipeline path needs: build passes, run a [`Pipeline`](pipeline::Pipeline)
/// on a matrix or a model, multiply the result, save it.
///
/// Everything else stays at its module path (`squish::pruning::Global`,
/// `squish::parallel::TaskRunner`, `squish::distillation::Distiller`, ...).
pub mod prelude {
    pub use crate::compression::lowrank::{LowRank, RandomizedSvd, RankSelection};
    pub use crate::compression::sharing::KMeans;
    pub use crate::error::{Result, SquishError};
    pub use crate::io::{CompressedModel, Model};
    pub use crate::matrix::{CompressedMatrix, LinOp};
    pub use crate::parallel::{ParallelExecutor, Sequential, ThreadPool};
    pub use crate::pass::CompressionPass;
    pub use crate::pipeline::{Pipeline, PipelineOutput};
    pub use crate::pruning::{Magnitude, NMPruner, Prune, Pruner};
    pub use crate::quantization::{Binary, IntQuantizer, Quantize, Quantizer, Ternary};
    pub use crate::recipe::Recipe;
}
