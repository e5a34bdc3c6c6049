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
//! use ndarray::Array2;
//! use squish::prelude::*;
//!
//! let w = Array2::from_shape_fn((256, 128), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5);
//! let out = Pipeline::new()
//!     .prune(Magnitude::params(0.5).check()?)
//!     .quantize(IntQuantizer::params(8).per_row().check()?)
//!     .run(w.view())?;
//! let x = Array2::<f32>::ones((4, 128));
//! let y = out.matrix.matmul(x.view())?; // sparse int8, never made dense
//! assert_eq!(y.dim(), (4, 256));
//! assert!(out.report.stages.last().unwrap().storage.ratio() > 2.0);
//! # Ok::<(), squish::SquishError>(())
//! ```

#![warn(missing_docs)]

pub mod compression;
pub mod data;
pub mod distillation;
pub mod distributed;
pub mod error;
pub mod io;
pub mod matrix;
pub mod metrics;
pub mod parallel;
pub mod pass;
pub mod pipeline;
pub mod pruning;
pub mod quantization;
pub mod recipe;
pub mod training;

pub use error::{Result, SquishError};

/// The names most programs need.
pub mod prelude {
    pub use crate::compression::lowrank::{LowRank, RandomizedSvd, RankSelection, SvdBackend};
    pub use crate::compression::sharing::KMeans;
    pub use crate::distillation::Distiller;
    pub use crate::error::{Result, SquishError};
    pub use crate::io::{CompressedModel, Model};
    pub use crate::matrix::{CompressedMatrix, LinOp, StorageReport};
    pub use crate::metrics::ErrorMetrics;
    pub use crate::parallel::{
        DataParallel, Forward, ParallelExecutor, ProgressEvent, Sequential, TaskRunner, ThreadPool,
    };
    pub use crate::pass::{CompressionPass, Prune, Quantize};
    pub use crate::pipeline::{Pipeline, PipelineOutput, PipelineReport};
    pub use crate::pruning::{
        Global, Importance, Magnitude, NMPruner, Pruner, Schedule, Structured, Wanda,
    };
    pub use crate::quantization::{
        Binary, Calibration, DynamicInt8, IntQuantizer, Quantizer, Ternary,
    };
    pub use crate::recipe::Recipe;
}
