//! Activation-aware weight quantization (AWQ, Lin et al., 2023): scale the
//! inputs that carry large activations up before rounding, and the
//! activations down by the same factor, so the salient weights lose less.
//!
//! `y = x·Wᵀ = (x / s)·(W·diag(s))ᵀ` for any positive per-input scales `s`.
//! AWQ quantizes `W·diag(s)` and searches `s = mean|x|^α` over a grid of `α`
//! for the smallest layer-output error on the calibration data. The error
//! is computed exactly from `H = XᵀX` — `tr(D·H·Dᵀ)` with
//! `D = Q(W·diag(s))·diag(1/s) − W` — so no activations are kept. The
//! division `x / s` is folded by the caller into the operation before the
//! layer (a LayerNorm's weight and bias, or the rows of a preceding linear
//! layer); `α = 0` (no scaling, plain round-to-nearest) is always a
//! candidate, so the search never does worse than round-to-nearest on the
//! calibration data.

use ndarray::{Array2, ArrayView2, Axis};

use super::{IntQuantizer, Quantizer};
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::CompressedMatrix;
use crate::parallel::{map, ParallelExecutor};

/// Unchecked hyperparameters of [`Awq`].
#[derive(Clone, Debug, PartialEq)]
pub struct AwqParams {
    quantizer: IntQuantizer,
    grid: usize,
}

/// A checked AWQ scale search around an [`IntQuantizer`].
///
/// ```
/// use ndarray::array;
/// use squish::parallel::Sequential;
/// use squish::quantization::{Awq, IntQuantizer};
/// let w = array![[0.9f32, -0.05, 0.2, 0.01], [0.1, 0.07, -0.6, 0.03]];
/// // Input 1 carries activations 100× larger than the others.
/// let x = array![[0.1f64, 10.0, 0.1, 0.1], [-0.1, -9.0, 0.2, 0.1], [0.1, 11.0, 0.0, -0.1]];
/// let h = x.t().dot(&x);
/// let mean_abs = [0.1f32, 10.0, 0.1, 0.1];
/// let q = Awq::params(IntQuantizer::params(4).per_row().check().unwrap()).check().unwrap();
/// let out = q.search(w.view(), &mean_abs, h.view(), &Sequential).unwrap();
/// assert!(out.loss <= out.loss_unscaled);
/// assert_eq!(out.scales.len(), 4);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Awq {
    params: AwqParams,
}

/// The chosen scales and the quantized scaled weight.
#[derive(Clone, Debug)]
pub struct AwqOutput {
    /// `Q(W·diag(s))`: serve it with inputs divided by [`scales`](Self::scales).
    pub matrix: CompressedMatrix,
    /// `s`, one per input (all 1 when `α = 0` won).
    pub scales: Vec<f32>,
    /// The chosen exponent.
    pub alpha: f32,
    /// `tr(D·H·Dᵀ)` at the chosen scales.
    pub loss: f64,
    /// The same at `α = 0` (round-to-nearest).
    pub loss_unscaled: f64,
}

impl Awq {
    /// Starts a builder around `quantizer`, with a grid of 20 exponents
    /// `α = 0, 0.05, …, 0.95` as in the reference code.
    pub fn params(quantizer: IntQuantizer) -> AwqParams {
        AwqParams {
            quantizer,
            grid: 20,
        }
    }

    /// Short description.
    pub fn name(&self) -> String {
        format!("awq {}", self.params.quantizer.name())
    }

    /// The scales `mean|x|^α`, normalised so `max(s)·min(s) = 1` as in the
    /// reference code (the normalisation does not change the error up to
    /// rounding of the ranges, it keeps `s` near 1).
    pub fn scales(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
        let s: Vec<f32> = mean_abs
            .iter()
            .map(|&a| a.max(1e-4).powf(alpha).max(1e-4))
            .collect();
        let (lo, hi) = s
            .iter()
            .fold((f32::INFINITY, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
        let norm = (lo * hi).sqrt();
        s.into_iter().map(|v| v / norm).collect()
    }

    /// Searches the exponent for `w` (`[out, in]`) given the mean absolute
    /// input activations (`[in]`) and `H = XᵀX` (`[in, in]`). One task per
    /// candidate exponent on `exec`; the result does not depend on it.
    pub fn search(
        &self,
        w: ArrayView2<f32>,
        mean_abs: &[f32],
        h: ArrayView2<f64>,
        exec: &dyn ParallelExecutor,
    ) -> Result<AwqOutput> {
        let (rows, n) = w.dim();
        check_non_empty("weight matrix", rows, n)?;
        check_finite("weight matrix", w.iter())?;
        check_finite("activation means", mean_abs)?;
        if mean_abs.len() != n || h.dim() != (n, n) {
            return Err(SquishError::shape(
                "AWQ",
                format!("{n} activation means and a {n}x{n} Hessian"),
                format!("{} means and {}x{}", mean_abs.len(), h.nrows(), h.ncols()),
            ));
        }
        if h.iter().any(|v| !v.is_finite()) {
            return Err(crate::matrix::HessianError::NonFinite { row: 0, col: 0 }.into());
        }
        let hf = h.mapv(|v| v as f32);
        let grid = self.params.grid;
        let results = map(
            exec,
            grid,
            |k| -> Result<(f64, Vec<f32>, CompressedMatrix)> {
                let alpha = k as f32 / grid as f32;
                let s = if k == 0 {
                    vec![1.0; n]
                } else {
                    Self::scales(mean_abs, alpha)
                };
                let mut ws = w.to_owned();
                for (mut col, &sj) in ws.axis_iter_mut(Axis(1)).zip(&s) {
                    col.mapv_inplace(|v| v * sj);
                }
                let m = self
                    .params
                    .quantizer
                    .quantize(&CompressedMatrix::from_dense(ws.view())?)?;
                let mut d = m.to_dense();
                for (mut col, &sj) in d.axis_iter_mut(Axis(1)).zip(&s) {
                    col.mapv_inplace(|v| v / sj);
                }
                d -= &w;
                let dh = d.dot(&hf);
                let loss = (&dh * &d).iter().map(|&v| v as f64).sum::<f64>();
                Ok((loss, s, m))
            },
        );
        let mut best: Option<(usize, f64, Vec<f32>, CompressedMatrix)> = None;
        let mut loss_unscaled = f64::NAN;
        for (k, r) in results.into_iter().enumerate() {
            let (loss, s, m) = r?;
            if k == 0 {
                loss_unscaled = loss;
            }
            // Strict: ties keep the smaller exponent (α = 0 first).
            if best.as_ref().is_none_or(|b| loss < b.1) {
                best = Some((k, loss, s, m));
            }
        }
        let (k, loss, scales, matrix) = best.expect("the grid is not empty");
        Ok(AwqOutput {
            matrix,
            scales,
            alpha: k as f32 / grid as f32,
            loss,
            loss_unscaled,
        })
    }
}

impl AwqParams {
    /// Number of exponents tried, `α = k / grid` for `k = 0..grid` (20 default).
    pub fn grid(mut self, grid: usize) -> Self {
        self.grid = grid;
        self
    }

    /// Validates: grid ≥ 1.
    pub fn check(self) -> Result<Awq> {
        if self.grid == 0 {
            return Err(SquishError::invalid(
                "grid",
                0,
                "at least one exponent (α = 0)",
            ));
        }
        Ok(Awq { params: self })
    }
}

/// Divides the outputs of a preceding affine operation by `s` so the next
/// layer sees `x / s`: `weight` rows (or a LayerNorm's γ, as a column) and
/// `bias` are scaled in place.
///
/// ```
/// use ndarray::array;
/// use squish::quantization::fold_input_scales;
/// let mut gamma = array![[2.0f32], [4.0]];
/// let mut beta = vec![1.0f32, 1.0];
/// fold_input_scales(gamma.view_mut(), Some(&mut beta), &[2.0, 0.5]).unwrap();
/// assert_eq!(gamma, array![[1.0f32], [8.0]]);
/// assert_eq!(beta, vec![0.5, 2.0]);
/// ```
pub fn fold_input_scales(
    mut weight: ndarray::ArrayViewMut2<f32>,
    bias: Option<&mut [f32]>,
    s: &[f32],
) -> Result<()> {
    if weight.nrows() != s.len() || bias.as_ref().is_some_and(|b| b.len() != s.len()) {
        return Err(SquishError::shape(
            "folding AWQ scales",
            format!("{} output rows", s.len()),
            format!("{} rows", weight.nrows()),
        ));
    }
    for (mut row, &sj) in weight.outer_iter_mut().zip(s) {
        row.mapv_inplace(|v| v / sj);
    }
    if let Some(b) = bias {
        b.iter_mut().zip(s).for_each(|(v, &sj)| *v /= sj);
    }
    Ok(())
}

/// `W·diag(s)` for a plain weight (helper for stacking layers that share an input).
pub fn scale_inputs(w: ArrayView2<f32>, s: &[f32]) -> Array2<f32> {
    let mut ws = w.to_owned();
    for (mut col, &sj) in ws.axis_iter_mut(Axis(1)).zip(s) {
        col.mapv_inplace(|v| v * sj);
    }
    ws
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn search_never_loses_to_rtn_and_equal_activations_give_rtn() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (rows, n) = (16, 32);
        let w = Array2::from_shape_fn((rows, n), |_| rng.random_range(-1.0..1.0f32));
        // A few inputs with much larger activations, as in real layers.
        let x = Array2::from_shape_fn((200, n), |(_, j)| {
            rng.random_range(-1.0..1.0f64) * if j % 8 == 0 { 20.0 } else { 1.0 }
        });
        let h = x.t().dot(&x);
        let mean_abs: Vec<f32> = (0..n)
            .map(|j| (x.column(j).iter().map(|v| v.abs()).sum::<f64>() / 200.0) as f32)
            .collect();
        let q = IntQuantizer::params(4).per_group(16).check().unwrap();
        let awq = Awq::params(q.clone()).check().unwrap();
        let out = awq
            .search(w.view(), &mean_abs, h.view(), &Sequential)
            .unwrap();
        assert!(out.loss <= out.loss_unscaled);
        assert!(out.alpha > 0.0, "outlier inputs should be scaled");
        // Independent check of the loss at the chosen scales.
        let mut d = out.matrix.to_dense();
        for (mut col, &s) in d.axis_iter_mut(Axis(1)).zip(&out.scales) {
            col.mapv_inplace(|v| v / s);
        }
        let d = (d - &w).mapv(f64::from);
        let want = (d.dot(&h) * &d).sum();
        assert!((want - out.loss).abs() <= 1e-3 * want);
        let par = awq
            .search(w.view(), &mean_abs, h.view(), &ThreadPool::new(2).unwrap())
            .unwrap();
        assert_eq!(par.matrix, out.matrix);
        // Equal activations: every α gives s = 1, so the result is RTN.
        let flat = vec![0.5f32; n];
        let out = awq.search(w.view(), &flat, h.view(), &Sequential).unwrap();
        let rtn = q
            .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        assert_eq!(out.matrix.to_dense(), rtn.to_dense());
        assert!(awq
            .search(w.view(), &flat[..3], h.view(), &Sequential)
            .is_err());
    }
}
