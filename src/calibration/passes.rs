//! The data-aware pass that needs two families at once: joint SparseGPT
//! pruning and integer quantization.

use ndarray::ArrayView2;

use crate::error::Result;
use crate::matrix::{CompressedMatrix, Granularity, QuantParams, Values};
use crate::parallel::ParallelExecutor;
use crate::pass::{DataAware, LayerStats};
use crate::pruning::{SparseGpt, SparsityPattern};
use crate::quantization::{IntQuantizer, Quantizer};

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

impl DataAware for SparseGptQuantPass {
    fn name(&self) -> String {
        let g = self
            .group
            .map_or("per-row".into(), |g| format!("group-{g}"));
        format!("{} + int{} {g}", self.sparsegpt.name(), self.bits)
    }

    fn compress(
        &self,
        w: ArrayView2<f32>,
        s: &LayerStats,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
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
            .prune_rounded(w, s.hessian(), exec, &round)?
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
                Some(g) => Granularity::PerGroup(g),
                None => Granularity::PerRow,
            };
            let params = QuantParams::new(&layout, g, scales.clone(), None)?;
            quantizer.quantize_with_params(f, &params)
        })
    }
}
