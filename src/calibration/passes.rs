//! Passes that read calibration statistics, and the pipeline that mixes
//! them with data-free passes.

use ndarray::{Array2, ArrayView2};

use super::{CalibrationError, LayerStats};
use crate::error::Result;
use crate::matrix::{CompressedMatrix, Structure, Values};
use crate::parallel::ParallelExecutor;
use crate::pass::CompressionPass;
use crate::pruning::{NMPruner, Pruner, SparseGpt, SparsityPattern, Wanda};
use crate::quantization::{Gptq, IntQuantizer, Quantizer};

/// One step of a [`CalibratedPipeline`]: like a
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
}

fn need<'a>(
    pass: &dyn CalibratedPass,
    layer: &str,
    s: Option<&'a LayerStats>,
) -> Result<&'a LayerStats> {
    s.ok_or_else(|| {
        CalibrationError::MissingStats {
            pass: pass.name(),
            layer: layer.to_string(),
        }
        .into()
    })
}

fn dense(pass: &dyn CalibratedPass, m: &CompressedMatrix) -> Result<Array2<f32>> {
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(_))) => Ok(m.to_dense()),
        _ => Err(CalibrationError::NeedsDense {
            pass: pass.name(),
            structure: m.structure().kind(),
            encoding: m.encoding(),
        }
        .into()),
    }
}

/// Any data-free [`CompressionPass`] (pruning, quantization, low rank, …)
/// inside a calibrated pipeline; it ignores the statistics.
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

/// [`Gptq`] on the layer's `H`.
#[derive(Clone, Debug)]
pub struct GptqPass(pub Gptq);

impl CalibratedPass for GptqPass {
    fn name(&self) -> String {
        self.0.name()
    }

    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let s = need(self, layer, stats)?;
        let w = dense(self, m)?;
        Ok(self.0.quantize(w.view(), s.hessian(), exec)?.matrix)
    }
}

/// [`SparseGpt`] on the layer's `H` (f32 values: CSR or N:M).
#[derive(Clone, Debug)]
pub struct SparseGptPass(pub SparseGpt);

impl CalibratedPass for SparseGptPass {
    fn name(&self) -> String {
        self.0.name()
    }

    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let s = need(self, layer, stats)?;
        let w = dense(self, m)?;
        Ok(self.0.prune(w.view(), s.hessian(), exec)?.matrix)
    }
}

/// Joint SparseGPT and symmetric integer quantization: kept weights are
/// rounded as they are fixed and the rounding error is compensated with
/// the pruning error; the result is sparse int8/int4 (CSR or N:M).
///
/// Scales are per row, or per group of `group` *stored* values (for N:M
/// 2:4, a stored group of 64 spans 128 inputs), from the original weights
/// of the inputs the group spans.
#[derive(Clone, Debug)]
pub struct SparseGptQuantPass {
    /// The pruning half.
    pub sparsegpt: SparseGpt,
    /// Code width: 4 or 8.
    pub bits: u8,
    /// Stored values per scale (`None`: per row).
    pub group: Option<usize>,
}

impl CalibratedPass for SparseGptQuantPass {
    fn name(&self) -> String {
        let g = self
            .group
            .map_or("per-row".into(), |g| format!("group-{g}"));
        format!("{} + int{} {g}", self.sparsegpt.name(), self.bits)
    }

    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let s = need(self, layer, stats)?;
        let w = dense(self, m)?;
        let quantizer = {
            let q = IntQuantizer::params(self.bits).symmetric(true);
            match self.group {
                Some(g) => q.per_group(g),
                None => q.per_row(),
            }
            .check()?
        };
        let (rows, cols) = w.dim();
        // Inputs spanned by one scale.
        let span = match (self.group, self.sparsegpt.pattern()) {
            (None, _) => cols,
            (Some(g), SparsityPattern::NM { n, m }) => (g * m).div_ceil(n),
            (Some(g), SparsityPattern::Unstructured(_)) => g,
        };
        let qmax = ((1i32 << (self.bits - 1)) - 1) as f32;
        let groups = cols.div_ceil(span);
        let scales: Vec<f32> = (0..rows * groups)
            .map(|k| {
                let (r, g) = (k / groups, k % groups);
                let row = w.row(r);
                let hi = (g * span..((g + 1) * span).min(cols))
                    .map(|c| row[c].abs())
                    .fold(0.0f32, f32::max);
                hi / qmax
            })
            .collect();
        let round = |r: usize, c: usize, v: f32| {
            let sc = scales[r * groups + c / span];
            if sc > 0.0 {
                (v / sc).round().clamp(-qmax, qmax) * sc
            } else {
                0.0
            }
        };
        let pruned = self
            .sparsegpt
            .prune_rounded(w.view(), s.hessian(), exec, &round)?
            .matrix;
        if matches!(self.sparsegpt.pattern(), SparsityPattern::Unstructured(_))
            && self.group.is_some()
        {
            // CSR groups run over stored values, not inputs: re-derive
            // scales from the (already on-grid) kept values.
            return quantizer.quantize_on(&pruned, exec);
        }
        // Values lie on the grid of these scales: encode with exactly them.
        pruned.map_values(&|v| {
            let Values::F32(f) = v else {
                unreachable!("SparseGPT returns f32 values")
            };
            let layout = f.layout.clone();
            let g = match self.group {
                Some(g) => crate::matrix::Granularity::PerGroup(g),
                None => crate::matrix::Granularity::PerRow,
            };
            let params = crate::matrix::QuantParams::new(&layout, g, scales.clone(), None)?;
            quantizer.quantize_with_params(f, &params)
        })
    }
}

/// [`Wanda`] on the layer's input norms: unstructured per row, or N:M when
/// `nm` is set.
#[derive(Clone, Debug)]
pub struct WandaPass {
    /// Fraction removed (unstructured).
    pub sparsity: f64,
    /// `(n, m)`: keep `n` of every `m` by Wanda score instead.
    pub nm: Option<(usize, usize)>,
}

impl CalibratedPass for WandaPass {
    fn name(&self) -> String {
        match self.nm {
            Some((n, m)) => format!("wanda {n}:{m}"),
            None => format!("wanda {:.0}%", self.sparsity * 100.0),
        }
    }

    fn apply(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        _exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let s = need(self, layer, stats)?;
        let norms = s.feature_norms();
        match self.nm {
            None => Wanda::from_norms(self.sparsity, norms)?.prune(m),
            Some((n, mm)) => {
                let w = dense(self, m)?;
                let scores = wanda_scores_from_norms(w.view(), &norms);
                let keep = NMPruner::params(n, mm).check()?.mask(scores.view())?;
                crate::pruning::nm_from_mask(w.view(), keep.view(), n, mm)
            }
        }
    }
}

fn wanda_scores_from_norms(w: ArrayView2<f32>, norms: &[f32]) -> Array2<f32> {
    let mut s = w.mapv(f32::abs);
    for mut row in s.outer_iter_mut() {
        row.iter_mut().zip(norms).for_each(|(v, &n)| *v *= n);
    }
    s
}

/// A pipeline of [`CalibratedPass`]es, run on one layer at a time.
#[derive(Default)]
pub struct CalibratedPipeline {
    passes: Vec<Box<dyn CalibratedPass>>,
}

impl std::fmt::Debug for CalibratedPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.passes.iter().map(|p| p.name()))
            .finish()
    }
}

impl CalibratedPipeline {
    /// An empty pipeline (returns the dense f32 weight).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn then(mut self, p: impl CalibratedPass + 'static) -> Self {
        self.passes.push(Box::new(p));
        self
    }

    /// Appends a data-free pass.
    pub fn data_free(self, p: impl CompressionPass + 'static) -> Self {
        self.then(DataFree(p))
    }

    /// Whether any pass reads calibration statistics.
    pub fn needs_data(&self) -> bool {
        self.passes.iter().any(|p| p.needs_data())
    }

    /// Pass names joined by " → ".
    pub fn name(&self) -> String {
        self.passes
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Runs every pass on weight `w` of layer `layer`.
    pub fn run(
        &self,
        layer: &str,
        w: ArrayView2<f32>,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let mut m = CompressedMatrix::from_dense(w)?;
        for p in &self.passes {
            m = p.apply(layer, &m, stats, exec)?;
        }
        Ok(m)
    }
}
