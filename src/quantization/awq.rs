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

use ndarray::{Array2, ArrayView2, AsArray, Axis, Ix2};

use super::Gptq;
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::{
    CompressedMatrix, Granularity, HessianError, QuantParams, RowLayout, Structure, Values,
};
use crate::parallel::{map, ParallelExecutor, Sequential};
use crate::pass::{
    check_input_scales, stats_and_weight, CalibratedPass, CalibrationError, LayerStats,
    ScaledMatrix, TARGET_DAMP,
};

/// Unchecked hyperparameters of [`Awq`].
#[derive(Clone, Debug, PartialEq)]
pub struct AwqParams {
    quantizer: Gptq,
    grid: usize,
    refine: bool,
    gptq_search: bool,
}

/// A checked AWQ scale search around the integer grid of a [`Gptq`]
/// quantizer (bits 3/4/8, symmetric or not, per row or per group, its
/// range calibration): round-to-nearest on that grid scores each scale,
/// and with [`gptq`](AwqParams::gptq) the chosen scaled weight is then
/// quantized by GPTQ itself ("AWQ then GPTQ").
///
/// As a pipeline pass ([`CalibratedPass`]) it reads the layer's
/// [`LayerStats`] (`H = XᵀX` and `mean|x_j|`) and returns `Q(W·diag(s))`
/// with the per-input factors `1/s` ([`ScaledMatrix::input_scale`]); a
/// container stores them as `{layer}.input_scale`, which the serving
/// encoder multiplies the input by.
///
/// ```
/// use ndarray::array;
/// use squish::parallel::Sequential;
/// use squish::quantization::{Awq, Gptq};
/// let w = array![[0.9f32, -0.05, 0.2, 0.01], [0.1, 0.07, -0.6, 0.03]];
/// // Input 1 carries activations 100× larger than the others.
/// let x = array![[0.1f64, 10.0, 0.1, 0.1], [-0.1, -9.0, 0.2, 0.1], [0.1, 11.0, 0.0, -0.1]];
/// let h = x.t().dot(&x);
/// let mean_abs = [0.1f32, 10.0, 0.1, 0.1];
/// let q = Awq::params(Gptq::params(4).check()?).check()?;
/// let out = q.search(w.view(), &mean_abs, h.view(), &Sequential)?;
/// assert!(out.loss <= out.loss_unscaled);
/// assert_eq!(out.scales.len(), 4);
/// # Ok::<(), squish::SquishError>(())
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
    /// `tr(D·H·Dᵀ)` at the chosen scales, `D = Q(W·diag(s))·diag(1/s) − W`.
    pub loss: f64,
    /// The same for the same quantizer at `s = 1`: round-to-nearest, or
    /// GPTQ with [`gptq`](AwqParams::gptq).
    pub loss_unscaled: f64,
}

/// `diag(1/s)·H·diag(1/s)`: the Hessian of the inputs `x/s`.
fn scale_hessian(h: ArrayView2<f64>, s: &[f32]) -> Array2<f64> {
    Array2::from_shape_fn(h.dim(), |(i, j)| {
        h[[i, j]] / (f64::from(s[i]) * f64::from(s[j]))
    })
}

/// `tr(D·H·Dᵀ)` for `D = Q·diag(1/s) − W`, `H` given in f32.
fn output_loss(w: ArrayView2<f32>, q: &CompressedMatrix, s: &[f32], hf: &Array2<f32>) -> f64 {
    let mut d = q.to_dense();
    for (mut col, &sj) in d.axis_iter_mut(Axis(1)).zip(s) {
        col.mapv_inplace(|v| v / sj);
    }
    d -= &w;
    let dh = d.dot(hf);
    (&dh * &d).iter().map(|&v| v as f64).sum::<f64>()
}

impl Awq {
    /// Starts a builder around `quantizer`'s grid, with a grid of 20
    /// exponents `α = 0, 0.05, …, 0.95` as in the reference code.
    pub fn params(quantizer: Gptq) -> AwqParams {
        AwqParams {
            quantizer,
            grid: 20,
            refine: false,
            gptq_search: false,
        }
    }

    /// Short description: `"awq int4 sym group-128"`, or
    /// `"awq + gptq int4 sym group-128"` with GPTQ after the scaling.
    pub fn name(&self) -> String {
        let g = self.params.quantizer.name();
        match (self.params.refine, self.params.gptq_search) {
            (_, true) => format!("awq (gptq search) + {g}"),
            (true, false) => format!("awq + {g}"),
            (false, false) => format!("awq {}", g.strip_prefix("gptq ").unwrap_or(&g)),
        }
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
    ///
    /// With [`gptq`](AwqParams::gptq), GPTQ then quantizes `W·diag(s)`
    /// against `H' = diag(1/s)·H·diag(1/s)` (the Hessian of the scaled
    /// inputs `x/s`), and the result is kept only if its exact loss is
    /// below that of GPTQ on `W` itself.
    pub fn search<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        mean_abs: &[f32],
        h: impl AsArray<'a, f64, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<AwqOutput> {
        let w: ArrayView2<'a, f32> = w.into();
        let h: ArrayView2<'a, f64> = h.into();
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
        if let Some(k) = h.iter().position(|v| !v.is_finite()) {
            return Err(HessianError::NonFinite {
                row: k / n,
                col: k % n,
            }
            .into());
        }
        let hf = h.mapv(|v| v as f32);
        let grid = self.params.grid;
        let quantizer = &self.params.quantizer;
        let gptq_search = self.params.gptq_search;
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
                let ws = scale_inputs(w, &s);
                let m = if gptq_search {
                    // One candidate per task: GPTQ itself runs on one thread.
                    let hs = scale_hessian(h, &s);
                    quantizer
                        .quantize(ws.view(), hs.view(), &Sequential)?
                        .matrix
                } else {
                    quantizer.round_to_nearest(ws.view())?
                };
                Ok((output_loss(w, &m, &s, &hf), s, m))
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
        let out = AwqOutput {
            matrix,
            scales,
            alpha: k as f32 / grid as f32,
            loss,
            loss_unscaled,
        };
        if self.params.refine && !gptq_search {
            return self.refine(w, h, &hf, out, exec);
        }
        Ok(out)
    }

    /// GPTQ on `W·diag(s)` with `H' = diag(1/s)·H·diag(1/s)`, kept when it
    /// beats GPTQ on `W` with `H` (exact losses).
    fn refine(
        &self,
        w: ArrayView2<f32>,
        h: ArrayView2<f64>,
        hf: &Array2<f32>,
        found: AwqOutput,
        exec: &dyn ParallelExecutor,
    ) -> Result<AwqOutput> {
        let q = &self.params.quantizer;
        let n = w.ncols();
        let ones = vec![1.0f32; n];
        let plain = q.quantize(w, h, exec)?.matrix;
        let loss_unscaled = output_loss(w, &plain, &ones, hf);
        let unscaled = AwqOutput {
            matrix: plain,
            scales: ones,
            alpha: 0.0,
            loss: loss_unscaled,
            loss_unscaled,
        };
        if found.alpha == 0.0 {
            return Ok(unscaled);
        }
        let s = &found.scales;
        let hs = Array2::from_shape_fn((n, n), |(i, j)| {
            h[[i, j]] / (f64::from(s[i]) * f64::from(s[j]))
        });
        let m = q
            .quantize(scale_inputs(w, s).view(), hs.view(), exec)?
            .matrix;
        let loss = output_loss(w, &m, s, hf);
        if loss < loss_unscaled {
            Ok(AwqOutput {
                matrix: m,
                loss,
                loss_unscaled,
                ..found
            })
        } else {
            Ok(unscaled)
        }
    }
}

impl CalibratedPass for Awq {
    fn name(&self) -> String {
        Awq::name(self)
    }

    /// Refused with [`CalibrationError::NeedsInputScale`]: the matrix alone
    /// computes the wrong function; use [`apply_scaled`](Self::apply_scaled)
    /// (what a [`Pipeline`](crate::pipeline::Pipeline) calls).
    fn apply(
        &self,
        _layer: &str,
        _m: &CompressedMatrix,
        _stats: Option<&LayerStats>,
        _exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        Err(CalibrationError::NeedsInputScale { pass: self.name() }.into())
    }

    fn apply_scaled(
        &self,
        layer: &str,
        m: &CompressedMatrix,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<ScaledMatrix> {
        let (st, w) = stats_and_weight(&|| self.name(), layer, m, stats)?;
        if st.inputs() != w.ncols() {
            return Err(SquishError::shape(
                "AWQ statistics",
                format!("{} inputs", w.ncols()),
                format!("{} inputs", st.inputs()),
            ));
        }
        // With targets, aim at the weight reproducing the uncompressed output.
        let w = st.target_weight(w.view(), TARGET_DAMP)?;
        let out = self.search(w.view(), &st.mean_abs(), st.hessian(), exec)?;
        let input_scale: Option<Vec<f32>> =
            (out.alpha > 0.0).then(|| out.scales.iter().map(|s| 1.0 / s).collect());
        if let Some(f) = &input_scale {
            check_input_scales(f)?;
        }
        Ok(ScaledMatrix {
            matrix: out.matrix,
            input_scale,
        })
    }
}

impl AwqParams {
    /// Number of exponents tried, `α = k / grid` for `k = 0..grid` (20 default).
    pub fn grid(mut self, grid: usize) -> Self {
        self.grid = grid;
        self
    }

    /// After the scale search, quantize `W·diag(s)` with GPTQ (the
    /// quantizer's own knobs: dampening, block, activation order) against
    /// the scaled inputs' Hessian (default false: round-to-nearest).
    pub fn gptq(mut self, on: bool) -> Self {
        self.refine = on;
        self
    }

    /// Score every candidate exponent by GPTQ on the scaled weight (against
    /// `H' = diag(1/s)·H·diag(1/s)`) instead of round-to-nearest, and keep
    /// the best GPTQ result (default false). `grid` GPTQ runs per layer;
    /// `α = 0` is plain GPTQ, so it never does worse than GPTQ on the
    /// calibration data. Implies [`gptq`](Self::gptq).
    pub fn gptq_search(mut self, on: bool) -> Self {
        self.gptq_search = on;
        self.refine |= on;
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
/// `bias` are scaled in place. Every scale must be positive and finite
/// ([`CalibrationError::InputScale`]).
///
/// Exact only where the operation's output feeds nothing but the scaled
/// layer (and through maps that commute with a positive per-channel scale:
/// attention's weighted sum of values, ReLU): in a post-norm encoder
/// (BERT) a LayerNorm's output is also the residual, so folding there
/// changes the model.
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
    check_input_scales(s)?;
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

/// `diag(f)·M`: every row of `m` times its factor, for dense f32, int8
/// and int4 matrices quantized per row or per group (the row's scales are
/// multiplied, the codes kept, so a quantized matrix stays exactly on its
/// grid). This folds the input scale of a following layer into the rows of
/// a preceding linear layer (its bias is divided by the same factors).
/// Other forms are [`SquishError::Incompatible`]; every factor must be
/// positive and finite ([`CalibrationError::InputScale`]).
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::quantization::scale_rows;
/// let m = CompressedMatrix::from_dense(array![[1.0f32, 2.0], [3.0, 4.0]].view())?;
/// let out = scale_rows(&m, &[2.0, 0.5])?;
/// assert_eq!(out.to_dense(), array![[2.0f32, 4.0], [1.5, 2.0]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn scale_rows(m: &CompressedMatrix, f: &[f32]) -> Result<CompressedMatrix> {
    check_input_scales(f)?;
    if f.len() != m.rows() {
        return Err(SquishError::shape(
            "scaling rows",
            format!("{} factors", m.rows()),
            format!("{} factors", f.len()),
        ));
    }
    let incompatible = || SquishError::Incompatible {
        pass: "scale_rows".into(),
        structure: m.structure().kind(),
        encoding: m.encoding(),
        hint:
            "rows can be scaled in dense f32, int8 or int4 matrices quantized per row or per group",
    };
    if !matches!(m.structure(), Structure::Dense) {
        return Err(incompatible());
    }
    let cols = m.cols();
    let rescale = |p: &QuantParams, layout: &RowLayout| -> Result<QuantParams> {
        let g = match p.granularity() {
            Granularity::PerRow => cols,
            Granularity::PerGroup(g) => g,
            Granularity::PerTensor => return Err(incompatible()),
        };
        let mut scales = p.scales().to_vec();
        for (r, &fr) in f.iter().enumerate() {
            for pos in (0..cols).step_by(g.max(1)) {
                let i = p.index(r, pos);
                scales[i] = p.scales()[i] * fr;
            }
        }
        QuantParams::new(
            layout,
            p.granularity(),
            scales,
            p.zero_points().map(<[i8]>::to_vec),
        )
    };
    m.map_values(&|v| match v {
        Values::F32(x) => {
            let mut data = x.data().to_vec();
            for (row, &fr) in data.chunks_mut(cols.max(1)).zip(f) {
                row.iter_mut().for_each(|w| *w *= fr);
            }
            Values::f32(x.layout().clone(), data)
        }
        Values::Int8(x) => {
            let layout = v.layout();
            Values::int8(
                layout.clone(),
                x.codes().to_vec(),
                rescale(x.params(), layout)?,
            )
        }
        Values::Int4(x) => {
            let layout = v.layout();
            Values::int4(
                layout.clone(),
                x.codes().clone(),
                rescale(x.params(), layout)?,
            )
        }
        _ => Err(incompatible()),
    })
}

/// `W·diag(s)` for a plain weight (helper for stacking layers that share an input).
pub fn scale_inputs<'a>(w: impl AsArray<'a, f32, Ix2>, s: &[f32]) -> Array2<f32> {
    let w: ArrayView2<'a, f32> = w.into();
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
    use crate::quantization::{IntQuantizer, Quantizer};
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
        let q = Gptq::params(4).per_group(16).check().unwrap();
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
        let rtn = IntQuantizer::params(4)
            .per_group(16)
            .check()
            .unwrap()
            .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        assert_eq!(out.matrix.to_dense(), rtn.to_dense());
        assert!(awq
            .search(w.view(), &flat[..3], h.view(), &Sequential)
            .is_err());
    }
}
