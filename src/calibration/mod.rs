//! Compression that sees the data: calibration statistics per linear layer
//! and the passes that use them (GPTQ, SparseGPT, AWQ, Wanda).
//!
//! Methods that look only at the weights minimise `‖W − Ŵ‖`; what a served
//! model needs is the layer's output on the inputs it really sees,
//! `‖XWᵀ − XŴᵀ‖`. This module runs calibration data through a model
//! ([`Calibratable`]), keeps per layer what the methods need
//! ([`LayerStats`]: `H = XᵀX` in f64, input norms and maxima), and applies
//! [`Pipeline`](crate::pipeline::Pipeline)s that mix data-free passes (any
//! [`CompressionPass`](crate::pass::CompressionPass)) with data-aware ones
//! ([`Gptq`](crate::quantization::Gptq), [`SparseGpt`](crate::pruning::SparseGpt),
//! [`WandaPass`](crate::pruning::WandaPass), [`SparseGptQuantPass`]), one-shot
//! or sequentially ([`Mode`]).
//!
//! AWQ ([`Awq`](crate::quantization::Awq)) changes the layer's input
//! (`x / s`): as a pipeline pass it returns `Q(W·diag(s))` with the factors
//! `1/s` stored next to the matrix (`{layer}.input_scale`, applied by the
//! serving encoder); where the graph allows it, [`fold_bert_input_scales`]
//! moves them into the preceding operation.
//!
//! The algorithms themselves live in their families and take plain arrays
//! (`H` as `ArrayView2<f64>`): [`Gptq`](crate::quantization::Gptq),
//! [`Awq`](crate::quantization::Awq), [`SparseGpt`](crate::pruning::SparseGpt),
//! [`Wanda`](crate::pruning::Wanda).
//!
//! ```
//! use ndarray::Array2;
//! use squish::calibration::{collect, compress, Mode};
//! use squish::prelude::*;
//! use squish::quantization::Gptq;
//! use squish::training::Mlp;
//! let mut mlp = Mlp::params(&[16, 8, 4]).seed(1).check::<f32>()?;
//! let x = Array2::from_shape_fn((64, 16), |(i, j)| ((i * j + 1) % 5) as f32 - 2.0);
//! // Statistics of every layer's inputs, by layer name.
//! let ctx = collect(&mlp, &[x.clone()], None, &Sequential)?;
//! assert_eq!(ctx.get("layers.1").unwrap().samples(), 64);
//! // GPTQ on every layer, each calibrated on the compressed layers' outputs.
//! let plan = |_: &str| Some(Pipeline::new().data_aware(Gptq::params(4).check().ok()?));
//! let out = compress(&mut mlp, &[x], &plan, Mode::Sequential, &Sequential)?;
//! assert_eq!(out.layers["layers.0"].encoding(), "int4");
//! # Ok::<(), squish::SquishError>(())
//! ```

mod bert;
mod mlp;
mod model;
mod passes;
mod recipe;

/// The statistics and pass traits live in the core ([`crate::pass`]), so
/// families and recipes can use them; they are re-exported here.
pub use crate::pass::{
    CalibratedPass, CalibrationContext, CalibrationError, DataAware, DataFree, LayerStats,
};
pub use bert::{fold_bert_input_scales, set_compressed, set_compressed_scaled, BERT_LINEARS};
pub use model::{collect, collect_with_targets, compress, Calibratable, CalibratedModel, Mode};
pub use passes::SparseGptQuantPass;
pub use recipe::{calibrate_bert, sentence_batches};
