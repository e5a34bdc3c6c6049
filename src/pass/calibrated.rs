//! Passes that read calibration statistics: the [`CalibratedPass`] trait
//! every pipeline step implements, the [`DataAware`] shortcut the
//! data-aware methods use, and the per-layer [`CalibrationContext`].
//!
//! A [`Pipeline`](crate::pipeline::Pipeline) holds calibrated passes: a
//! data-free [`CompressionPass`] is wrapped in [`DataFree`] and ignores the
//! statistics, a data-aware one (GPTQ, SparseGPT, Wanda) reads the layer's
//! [`LayerStats`] and fails with [`CalibrationError::MissingStats`] when
//! none were collected.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView2};
use thiserror::Error;

use super::{CompressionPass, LayerStats};
use crate::error::Result;
use crate::matrix::{CompressedMatrix, Structure, Values};
use crate::parallel::ParallelExecutor;

/// What can go wrong in calibration beyond the crate-wide cases.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalibrationError {
    /// A data-aware pass ran on a layer with no statistics.
    #[error("`{pass}` needs calibration statistics for layer `{layer}`, but none were collected; run calibration data through the model (`calibration::collect`, `squish compress --calibration FILE`) or use a data-free method for this layer")]
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
    /// A per-input scale that is not a positive finite number (AWQ's
    /// scales, or scales to fold into a preceding operation).
    #[error("input scale {index} is {value}; every per-input scale must be positive and finite (check the calibration statistics for NaN/Inf)")]
    InputScale {
        /// Position of the bad scale.
        index: usize,
        /// Its value, as printed.
        value: String,
    },
    /// A pass that stores a per-input scale with the matrix (AWQ) ran on a
    /// layer whose model already has one (say from SmoothQuant).
    #[error("layer `{layer}` already has an input scale (`{tensor}`); AWQ stores its own per-input scale there, so apply it to the model without one")]
    InputScaleExists {
        /// The layer.
        layer: String,
        /// The existing tensor.
        tensor: String,
    },
    /// A pass that stores a per-input scale with the matrix (AWQ) was
    /// applied where only a matrix can be returned.
    #[error("`{pass}` stores a per-input scale with the matrix; run it through a `Pipeline` (or `CalibratedPass::apply_scaled`), whose output carries the scale")]
    NeedsInputScale {
        /// The pass.
        pass: String,
    },
}

/// What a [`CalibratedPass`] returns through
/// [`apply_scaled`](CalibratedPass::apply_scaled): a matrix, and for a
/// pass that rescales the layer's inputs (AWQ), the factors `m` the input
/// must be multiplied by before it: the layer computes `(x ⊙ m)·Ŵᵀ`
/// (the convention of `{layer}.input_scale` tensors and
/// [`Linear::with_input_scale`](crate::nn::Linear::with_input_scale)).
#[derive(Clone, Debug)]
pub struct ScaledMatrix {
    /// The compressed matrix.
    pub matrix: CompressedMatrix,
    /// Per-input factors applied to `x` first (`None`: none).
    pub input_scale: Option<Vec<f32>>,
}

/// Checks per-input scales: every one positive and finite
/// ([`CalibrationError::InputScale`] otherwise).
pub fn check_input_scales(s: &[f32]) -> Result<()> {
    match s.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
        Some(index) => Err(CalibrationError::InputScale {
            index,
            value: s[index].to_string(),
        }
        .into()),
        None => Ok(()),
    }
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

    /// The same statistics under new names (`rename(old)`; `None` drops a
    /// layer): e.g. from module names to tensor names (`+ ".weight"`).
    pub fn renamed(self, rename: impl Fn(&str) -> Option<String>) -> Self {
        let layers = self
            .layers
            .into_iter()
            .filter_map(|(k, v)| Some((rename(&k)?, v)))
            .collect();
        CalibrationContext { layers }
    }
}

/// One step of a [`Pipeline`](crate::pipeline::Pipeline): like a
/// [`CompressionPass`], but handed the layer's calibration statistics.
pub trait CalibratedPass: Send + Sync {
    /// Name shown in reports.
    fn name(&self) -> String;

    /// Whether the pass reads calibration statistics (data-free passes
    /// answer false, so a pipeline of only those skips calibration).
    fn needs_data(&self) -> bool {
        true
    }

    /// Applies the pass to layer `layer` (for error messages); data-aware
    /// passes fail with [`CalibrationError::MissingStats`] when `stats` is `None`.
    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix>;

    /// [`apply`](Self::apply), and the per-input factors the layer's input
    /// must be multiplied by when the pass moved a scale into the matrix
    /// (AWQ). The default is `apply` with no factors.
    fn apply_scaled(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<ScaledMatrix> {
        Ok(ScaledMatrix {
            matrix: self.apply(layer, m, stats, exec)?,
            input_scale: None,
        })
    }
}

/// Dampening of [`LayerStats::target_weight`] when a data-aware pass
/// reads statistics with targets: `λ = mean(diag H)`, a strong pull towards
/// `W` (on all-MiniLM-L6-v2 with 128 calibration sentences, 0.01 overfits
/// the few thousand calibration tokens: SparseGPT 2:4 mean cosine 0.852
/// at 0.01, 0.884 at 1).
pub const TARGET_DAMP: f64 = 1.0;

/// A data-aware method on a dense f32 weight: what GPTQ, SparseGPT and
/// Wanda implement. Every `DataAware` is a [`CalibratedPass`] that checks
/// for statistics and a dense f32 input first (typed errors).
///
/// Takes a view so the trait stays object-safe (`Box<dyn DataAware>`): pass
/// `w.view()`.
pub trait DataAware: Send + Sync {
    /// Name shown in reports.
    fn name(&self) -> String;

    /// Compresses the dense weight `w` (`[out, in]`) of a layer whose
    /// inputs have statistics `stats`.
    fn compress(
        &self,
        w: ArrayView2<f32>,
        stats: &LayerStats,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix>;
}

impl<T: DataAware> CalibratedPass for T {
    fn name(&self) -> String {
        DataAware::name(self)
    }

    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let (s, w) = stats_and_weight(&|| DataAware::name(self), layer, m, stats)?;
        // With targets (sequential calibration towards the uncompressed
        // model), aim at the weight that reproduces the uncompressed output.
        let w = s.target_weight(w.view(), TARGET_DAMP)?;
        self.compress(w.view(), s, exec)
    }
}

/// What every data-aware pass starts from: the layer's statistics
/// ([`CalibrationError::MissingStats`] without them) and its dense f32
/// weight ([`CalibrationError::NeedsDense`] otherwise). `pass` names the
/// pass, called only for an error.
pub(crate) fn stats_and_weight<'s>(
    pass: &dyn Fn() -> String,
    layer: &str,
    m: &CompressedMatrix,
    stats: Option<&'s LayerStats>,
) -> Result<(&'s LayerStats, Array2<f32>)> {
    let s = stats.ok_or_else(|| CalibrationError::MissingStats {
        pass: pass(),
        layer: layer.to_string(),
    })?;
    Ok((s, dense_f32(&pass(), m)?))
}

/// The dense f32 weight of `m`, or [`CalibrationError::NeedsDense`].
pub fn dense_f32(pass: &str, m: &CompressedMatrix) -> Result<Array2<f32>> {
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(_))) => Ok(m.to_dense()),
        _ => Err(CalibrationError::NeedsDense {
            pass: pass.to_string(),
            structure: m.structure().kind(),
            encoding: m.encoding(),
        }
        .into()),
    }
}

/// Any data-free [`CompressionPass`] (pruning, quantization, low rank, …)
/// as a [`CalibratedPass`]; it ignores the statistics.
#[derive(Clone, Debug)]
pub struct DataFree<P>(pub P);

impl<P: CompressionPass> CalibratedPass for DataFree<P> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn needs_data(&self) -> bool {
        false
    }

    fn apply(
        &self,
        _layer: &str,
        m: &CompressedMatrix,
        _stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        self.0.apply(m, exec)
    }
}
