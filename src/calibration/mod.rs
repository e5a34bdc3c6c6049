//! Compression that sees the data: calibration statistics per linear layer
//! and the passes that use them (GPTQ, SparseGPT, AWQ, Wanda).
//!
//! Methods that look only at the weights minimise `‖W − Ŵ‖`; what a served
//! model needs is the layer's output on the inputs it really sees,
//! `‖XWᵀ − XŴᵀ‖`. This module runs calibration data through a model
//! ([`Calibratable`]), keeps per layer what the methods need
//! ([`LayerStats`]: `H = XᵀX` in f64, input norms and maxima), and applies
//! [`CalibratedPipeline`]s that mix data-free passes (any
//! [`CompressionPass`](crate::pass::CompressionPass)) with data-aware ones ([`GptqPass`], [`SparseGptPass`],
//! [`WandaPass`]), one-shot or sequentially ([`Mode`]).
//!
//! AWQ changes the layer's input (`x / s`), so it is applied at the model
//! level, where the scales can be folded into the preceding operation
//! ([`fold_input_scales`](crate::quantization::fold_input_scales)).
//!
//! The algorithms themselves live in their families and take plain arrays
//! (`H` as `ArrayView2<f64>`): [`Gptq`](crate::quantization::Gptq),
//! [`Awq`](crate::quantization::Awq), [`SparseGpt`](crate::pruning::SparseGpt),
//! [`Wanda`](crate::pruning::Wanda).
//!
//! ```
//! use ndarray::Array2;
//! use squish::calibration::{CalibratedPipeline, GptqPass, LayerStats};
//! use squish::parallel::Sequential;
//! use squish::quantization::Gptq;
//! let w = Array2::from_shape_fn((8, 16), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
//! let x = Array2::from_shape_fn((64, 16), |(i, j)| ((i * j + 1) % 5) as f32 - 2.0);
//! let mut stats = LayerStats::new(16);
//! stats.accumulate(x.view())?;
//! let p = CalibratedPipeline::new().then(GptqPass(Gptq::params(4).per_group(8).check()?));
//! let m = p.run("fc1", w.view(), Some(&stats), &Sequential)?;
//! assert_eq!(m.encoding(), "int4");
//! # Ok::<(), squish::SquishError>(())
//! ```

mod bert;
mod mlp;
mod model;
mod passes;
mod stats;

use std::collections::BTreeMap;

use thiserror::Error;

pub use bert::{set_compressed, BERT_LINEARS};
pub use model::{collect, compress, Calibratable, CalibratedModel, Mode};
pub use passes::{
    CalibratedPass, CalibratedPipeline, DataFree, GptqPass, SparseGptPass, SparseGptQuantPass,
    WandaPass,
};
pub use stats::LayerStats;

/// What can go wrong in calibration beyond the crate-wide cases.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalibrationError {
    /// A data-aware pass ran on a layer with no statistics.
    #[error("`{pass}` needs calibration statistics for layer `{layer}`, but none were collected; run calibration data through the model (calibration::collect) or use a data-free method for this layer")]
    MissingStats {
        /// The pass.
        pass: String,
        /// The layer.
        layer: String,
    },
    /// Calibration was asked to run on no data.
    #[error("calibration needs at least one sample; pass a non-empty calibration set")]
    NoSamples,
    /// A data-aware pass needs a dense f32 input.
    #[error("`{pass}` needs a dense f32 weight, got {structure} with {encoding} values; put it first in the pipeline")]
    NeedsDense {
        /// The pass.
        pass: String,
        /// The input structure.
        structure: &'static str,
        /// The input encoding.
        encoding: &'static str,
    },
}

/// Per-layer calibration statistics by layer name: what data-aware passes
/// read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationContext {
    layers: BTreeMap<String, LayerStats>,
}

impl CalibrationContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The statistics of `layer`, if collected.
    pub fn get(&self, layer: &str) -> Option<&LayerStats> {
        self.layers.get(layer)
    }

    /// Sets the statistics of `layer`.
    pub fn insert(&mut self, layer: String, stats: LayerStats) {
        self.layers.insert(layer, stats);
    }

    /// The statistics of `layer`, created empty for `inputs` features.
    pub fn entry(&mut self, layer: &str, inputs: usize) -> &mut LayerStats {
        self.layers
            .entry(layer.to_string())
            .or_insert_with(|| LayerStats::new(inputs))
    }

    /// Layer names with statistics, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.keys().map(String::as_str)
    }
}
