//! Per-layer calibration statistics of one linear layer: `H = XᵀX`, per-input sums of squares
//! and absolute maxima, and the number of samples seen.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::error::{check_finite, Result, SquishError};

/// What the data-aware methods need to know about the inputs `X` of one
/// linear layer (`[samples, in]`, accumulated over any number of batches).
///
/// `H = XᵀX` is summed in f64 (memory `in²` whatever the number of
/// samples), so millions of tokens accumulate without losing the small
/// entries; GPTQ, SparseGPT and AWQ take it as a plain `ArrayView2<f64>`.
///
/// ```
/// use ndarray::array;
/// use squish::pass::LayerStats;
/// let mut s = LayerStats::new(2);
/// s.accumulate(array![[1.0f32, 2.0]].view()).unwrap();
/// s.accumulate(array![[3.0f32, -1.0]].view()).unwrap();
/// assert_eq!(s.samples(), 2);
/// assert_eq!(s.hessian(), array![[10.0, -1.0], [-1.0, 5.0]]);
/// assert_eq!(s.feature_norms(), vec![10f32.sqrt(), 5f32.sqrt()]);
/// assert_eq!(s.abs_max(), &[3.0, 2.0]);
/// assert_eq!(s.mean_abs(), vec![2.0, 1.5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    h: Array2<f64>,
    abs_sum: Vec<f64>,
    abs_max: Vec<f32>,
    samples: usize,
    /// `C = Σ xᵀ·x_target` when targets were given.
    cross: Option<Array2<f64>>,
}

impl LayerStats {
    /// Empty statistics for a layer with `inputs` input features.
    pub fn new(inputs: usize) -> Self {
        LayerStats {
            h: Array2::zeros((inputs, inputs)),
            abs_sum: vec![0.0; inputs],
            abs_max: vec![0.0; inputs],
            samples: 0,
            cross: None,
        }
    }

    /// Adds a batch of layer inputs `x` (`[batch, in]`, finite).
    pub fn accumulate<'a>(&mut self, x: impl AsArray<'a, f32, Ix2>) -> Result<()> {
        let x: ArrayView2<'a, f32> = x.into();
        self.add(x, None)
    }

    /// Adds a batch of layer inputs `x` of the model being compressed
    /// together with `target`, the inputs the *uncompressed* model gives
    /// the same layer on the same tokens (same shape). `H` comes from `x`,
    /// and the cross term `C = Σ xᵀ·target` lets the data-aware methods aim
    /// at the uncompressed output, `‖X_target·Wᵀ − X·Ŵᵀ‖`, instead of
    /// `‖X·Wᵀ − X·Ŵᵀ‖` ([`target_weight`](Self::target_weight)), so a layer
    /// also corrects the error the compressed layers before it made.
    ///
    /// ```
    /// use ndarray::array;
    /// use squish::pass::LayerStats;
    /// let x = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
    /// let t = &x * 2.0; // the uncompressed model's inputs: twice as large
    /// let mut s = LayerStats::new(2);
    /// s.accumulate_with_target(x.view(), t.view())?;
    /// // Ŵ = 2W reproduces the uncompressed output exactly.
    /// let w = array![[0.5f32, -1.0]];
    /// let target = s.target_weight(w.view(), 0.0)?;
    /// assert!((target[[0, 0]] - 1.0).abs() < 1e-5 && (target[[0, 1]] + 2.0).abs() < 1e-5);
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn accumulate_with_target<'a>(
        &mut self,
        x: impl AsArray<'a, f32, Ix2>,
        target: impl AsArray<'a, f32, Ix2>,
    ) -> Result<()> {
        let x: ArrayView2<'a, f32> = x.into();
        let target: ArrayView2<'a, f32> = target.into();
        if target.dim() != x.dim() {
            return Err(SquishError::shape(
                "calibration targets",
                format!("{:?} like the inputs", x.dim()),
                format!("{:?}", target.dim()),
            ));
        }
        self.add(x, Some(target))
    }

    fn add(&mut self, x: ArrayView2<f32>, target: Option<ArrayView2<f32>>) -> Result<()> {
        let n = self.h.nrows();
        if x.ncols() != n {
            return Err(SquishError::shape(
                "calibration statistics",
                format!("inputs with {n} features"),
                format!("{} features", x.ncols()),
            ));
        }
        if x.nrows() == 0 {
            return Ok(());
        }
        check_finite("calibration activations", x.iter())?;
        let xd = x.mapv(f64::from);
        if let Some(t) = target {
            check_finite("calibration targets", t.iter())?;
            // Batches seen without a target had target = input.
            let c = self.cross.get_or_insert_with(|| self.h.clone());
            let td = t.mapv(f64::from);
            ndarray::linalg::general_mat_mul(1.0, &xd.t(), &td, 1.0, c);
        } else if let Some(c) = &mut self.cross {
            ndarray::linalg::general_mat_mul(1.0, &xd.t(), &xd, 1.0, c);
        }
        ndarray::linalg::general_mat_mul(1.0, &xd.t(), &xd, 1.0, &mut self.h);
        for row in x.outer_iter() {
            for (j, &v) in row.iter().enumerate() {
                self.abs_sum[j] += v.abs() as f64;
                self.abs_max[j] = self.abs_max[j].max(v.abs());
            }
        }
        self.samples += x.nrows();
        Ok(())
    }

    /// Merges statistics gathered separately (e.g. on other threads) on
    /// the same layer.
    pub fn merge(&mut self, other: &LayerStats) -> Result<()> {
        if other.h.dim() != self.h.dim() {
            return Err(SquishError::shape(
                "calibration statistics",
                format!("{} features", self.h.nrows()),
                format!("{} features", other.h.nrows()),
            ));
        }
        match (&mut self.cross, &other.cross) {
            (Some(c), Some(o)) => *c += o,
            (Some(c), None) => *c += &other.h,
            (None, Some(o)) => self.cross = Some(&self.h + o),
            (None, None) => {}
        }
        self.h += &other.h;
        for j in 0..self.abs_sum.len() {
            self.abs_sum[j] += other.abs_sum[j];
            self.abs_max[j] = self.abs_max[j].max(other.abs_max[j]);
        }
        self.samples += other.samples;
        Ok(())
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.h.nrows()
    }

    /// Number of samples (rows of `X`) seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// `H = XᵀX` (`[in, in]`, f64).
    pub fn hessian(&self) -> ArrayView2<'_, f64> {
        self.h.view()
    }

    /// The cross term `C = Σ xᵀ·target` (`[in, in]`), when targets were
    /// given ([`accumulate_with_target`](Self::accumulate_with_target)).
    pub fn cross(&self) -> Option<ArrayView2<'_, f64>> {
        self.cross.as_ref().map(|c| c.view())
    }

    /// The weight `W*` whose output on the inputs `X` is closest to the
    /// target output `X_target·Wᵀ`, regularised towards `W`:
    /// `W*ᵀ = (H + λI)⁻¹ (C + λI) Wᵀ` with `λ = damp · mean(diag H)`, so
    /// `‖X_target Wᵀ − X Ŵᵀ‖² = ‖X (W* − Ŵ)ᵀ‖² + const` and a data-aware
    /// method compressing `W*` against `H` minimises the error to the
    /// uncompressed output. Without targets (or when they equal the inputs)
    /// `W* = W`, returned as it is.
    pub fn target_weight<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        damp: f64,
    ) -> Result<Array2<f32>> {
        let w: ArrayView2<'a, f32> = w.into();
        let n = self.inputs();
        let Some(c) = &self.cross else {
            return Ok(w.to_owned());
        };
        if w.ncols() != n {
            return Err(SquishError::shape(
                "target weight",
                format!("a weight with {n} inputs"),
                format!("{} inputs", w.ncols()),
            ));
        }
        if !(damp.is_finite() && damp >= 0.0) {
            return Err(SquishError::invalid(
                "damp",
                damp,
                "the dampening fraction must be finite and ≥ 0",
            ));
        }
        let mean = (0..n).map(|j| self.h[[j, j]]).sum::<f64>() / n as f64;
        let lambda = (damp * mean).max(f64::MIN_POSITIVE);
        let a = faer::Mat::<f64>::from_fn(n, n, |i, j| {
            self.h[[i, j]] + if i == j { lambda } else { 0.0 }
        });
        let llt = a.llt(faer::Side::Lower).map_err(|_| {
            crate::matrix::HessianError::NotPositiveDefinite {
                damp: lambda,
                pivot: 0,
            }
        })?;
        // rhs = (C + λI)·Wᵀ, [in, out].
        let wt = w.t().mapv(f64::from);
        let mut cw = c.dot(&wt);
        cw.scaled_add(lambda, &wt);
        let mut rhs = faer::Mat::<f64>::from_fn(n, w.nrows(), |i, r| cw[[i, r]]);
        faer::linalg::solvers::Solve::solve_in_place(&llt, rhs.as_mut());
        let out = Array2::from_shape_fn(w.dim(), |(r, i)| rhs[(i, r)] as f32);
        check_finite("target weight", out.iter())?;
        Ok(out)
    }

    /// `‖X_j‖₂` per input feature (the Wanda norms).
    pub fn feature_norms(&self) -> Vec<f32> {
        (0..self.inputs())
            .map(|j| self.h[[j, j]].sqrt() as f32)
            .collect()
    }

    /// `max |X_j|` per input feature.
    pub fn abs_max(&self) -> &[f32] {
        &self.abs_max
    }

    /// `mean |X_j|` per input feature (the AWQ activation scale); zeros
    /// before any sample.
    pub fn mean_abs(&self) -> Vec<f32> {
        let n = self.samples.max(1) as f64;
        self.abs_sum.iter().map(|&s| (s / n) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn batches_sum_to_the_whole() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = Array2::from_shape_fn((50, 7), |_| rng.random_range(-3.0..3.0f32));
        let mut whole = LayerStats::new(7);
        whole.accumulate(x.view()).unwrap();
        let mut a = LayerStats::new(7);
        let mut b = LayerStats::new(7);
        a.accumulate(x.slice(ndarray::s![..20, ..])).unwrap();
        b.accumulate(x.slice(ndarray::s![20.., ..])).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.samples(), 50);
        // Naive f64 reference.
        for i in 0..7 {
            for j in 0..7 {
                let want: f64 = (0..50).map(|r| x[[r, i]] as f64 * x[[r, j]] as f64).sum();
                assert!((whole.hessian()[[i, j]] - want).abs() < 1e-9 * want.abs().max(1.0));
                assert!((a.hessian()[[i, j]] - want).abs() < 1e-9 * want.abs().max(1.0));
            }
        }
        assert_eq!(a.abs_max(), whole.abs_max());
        assert!(LayerStats::new(3).accumulate(x.view()).is_err());
        let mut bad = x.clone();
        bad[[3, 3]] = f32::NAN;
        assert!(LayerStats::new(7).accumulate(bad.view()).is_err());
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn target_weight_solves_the_regularised_least_squares() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (t, n, out) = (60, 7, 5);
        let x = Array2::from_shape_fn((t, n), |_| rng.random_range(-1.0..1.0f32));
        let noise = Array2::from_shape_fn((t, n), |_| rng.random_range(-0.2..0.2f32));
        let target = &x + &noise;
        let w = Array2::from_shape_fn((out, n), |_| rng.random_range(-1.0..1.0f32));
        let mut s = LayerStats::new(n);
        s.accumulate_with_target(
            x.slice(ndarray::s![..25, ..]),
            target.slice(ndarray::s![..25, ..]),
        )
        .unwrap();
        let mut rest = LayerStats::new(n);
        rest.accumulate_with_target(
            x.slice(ndarray::s![25.., ..]),
            target.slice(ndarray::s![25.., ..]),
        )
        .unwrap();
        s.merge(&rest).unwrap();
        let damp = 0.05;
        let ws = s.target_weight(w.view(), damp).unwrap();
        // Naive f64: the gradient (XᵀX + λI)W*ᵀ − (XᵀT + λI)Wᵀ vanishes.
        let (xd, td) = (x.mapv(f64::from), target.mapv(f64::from));
        let h = xd.t().dot(&xd);
        let lambda = damp * (0..n).map(|j| h[[j, j]]).sum::<f64>() / n as f64;
        let eye = Array2::<f64>::eye(n) * lambda;
        let lhs = (&h + &eye).dot(&ws.t().mapv(f64::from));
        let rhs = (xd.t().dot(&td) + &eye).dot(&w.t().mapv(f64::from));
        for (a, b) in lhs.iter().zip(rhs.iter()) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Targets equal to the inputs (or none): W itself.
        let mut same = LayerStats::new(n);
        same.accumulate_with_target(x.view(), x.view()).unwrap();
        let back = same.target_weight(w.view(), damp).unwrap();
        assert!(back.iter().zip(w.iter()).all(|(a, b)| (a - b).abs() < 1e-4));
        let mut plain = LayerStats::new(n);
        plain.accumulate(x.view()).unwrap();
        assert_eq!(plain.target_weight(w.view(), damp).unwrap(), w);
        // A batch without targets counts as its own target.
        let mut mixed = LayerStats::new(n);
        mixed.accumulate(x.slice(ndarray::s![..10, ..])).unwrap();
        mixed
            .accumulate_with_target(
                x.slice(ndarray::s![10.., ..]),
                x.slice(ndarray::s![10.., ..]),
            )
            .unwrap();
        let c = mixed.cross().unwrap();
        for (a, b) in c.iter().zip(mixed.hessian().iter()) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()));
        }
        assert!(s
            .accumulate_with_target(x.view(), x.slice(ndarray::s![..3, ..]))
            .is_err());
    }
}
