//! The inverse-Hessian factor that optimal-brain-surgeon (OBS) updates need.
//!
//! For a linear layer `y = x·Wᵀ` and calibration inputs `X` (`[samples, in]`),
//! the layer-output error `‖XWᵀ − XŴᵀ‖²_F` is a quadratic form in each row of
//! `W − Ŵ` with Hessian `H = XᵀX` (up to a factor 2). GPTQ and SparseGPT
//! visit the columns in order and, after fixing column `j`, move the columns
//! still free so as to cancel the error; the updates use the rows of the
//! upper Cholesky factor `U` of `H⁻¹` (`UᵀU = H⁻¹`). This module computes `U`
//! once per layer, in f64 through faer, from `H` given as a plain
//! `ArrayView2<f64>` (families never see how `H` was collected).

use faer::{Mat, Side};
use ndarray::{s, Array2, ArrayView2, AsArray, Ix2};
use thiserror::Error;

use crate::error::{Result, SquishError};

/// Why an inverse-Hessian factor could not be computed.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum HessianError {
    /// `H` holds NaN or ±Inf.
    #[error("calibration Hessian H = XᵀX holds a non-finite value at ({row}, {col}); the calibration activations overflowed or hold NaN: clean the calibration data")]
    NonFinite {
        /// Row of the first offending entry.
        row: usize,
        /// Column of the first offending entry.
        col: usize,
    },
    /// `H + λI` is not positive definite even after dampening.
    #[error("calibration Hessian is not positive definite after dampening by {damp:e} (pivot {pivot}); raise the dampening fraction (e.g. 0.1) or add calibration samples")]
    NotPositiveDefinite {
        /// The absolute dampening λ added to the diagonal.
        damp: f64,
        /// Index of the failing pivot.
        pivot: usize,
    },
    /// `H` has a negative diagonal entry, which no Gram matrix has.
    #[error("calibration Hessian has a negative diagonal entry {value} at {index}; H must be XᵀX")]
    NegativeDiagonal {
        /// Column.
        index: usize,
        /// The entry.
        value: f64,
    },
}

/// `U` with `UᵀU = (H_P + λI)⁻¹`, upper triangular, for a column order `P`.
///
/// *Dead* inputs (`H_jj = 0`: the input is always zero in the calibration
/// data) get `H_jj = 1` before dampening, as in the reference GPTQ code; the
/// weights of such inputs never influence the calibration objective and the
/// algorithms set them to zero. The dampening is `λ = frac · mean(diag H)`.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::InverseHessian;
/// // H = diag(4, 1): H⁻¹ = diag(1/4, 1), U = diag(1/2, 1).
/// let h = array![[4.0f64, 0.0], [0.0, 1.0]];
/// let f = InverseHessian::new(h.view(), 0.0, None).unwrap();
/// assert!((f.upper()[[0, 0]] - 0.5).abs() < 1e-6);
/// assert!((f.upper()[[1, 1]] - 1.0).abs() < 1e-6);
/// assert_eq!(f.upper()[[0, 1]], 0.0);
/// ```
#[derive(Clone, Debug)]
pub struct InverseHessian {
    upper: Array2<f32>,
    dead: Vec<bool>,
    damp: f64,
}

impl InverseHessian {
    /// Factors `H` (symmetric `[n, n]`, as `XᵀX` is)
    /// with dampening fraction `damp_frac ≥ 0`, in the column order `perm`
    /// (`perm[k]` is the original column at position `k`; `None` keeps the
    /// order). Errors: non-square or mis-sized `perm` (shape), non-finite
    /// entries, a negative diagonal, or a matrix that stays indefinite.
    pub fn new<'a>(
        h: impl AsArray<'a, f64, Ix2>,
        damp_frac: f64,
        perm: Option<&[usize]>,
    ) -> Result<Self> {
        let h: ArrayView2<'a, f64> = h.into();
        let n = h.nrows();
        if h.ncols() != n || n == 0 {
            return Err(SquishError::shape(
                "inverse Hessian",
                "a non-empty square H",
                format!("{}x{}", h.nrows(), h.ncols()),
            ));
        }
        if !(damp_frac.is_finite() && damp_frac >= 0.0) {
            return Err(SquishError::invalid(
                "damp",
                damp_frac,
                "the dampening fraction must be finite and ≥ 0 (default 0.01)",
            ));
        }
        if let Some(p) = perm {
            let mut seen = vec![false; n];
            if p.len() != n
                || p.iter()
                    .any(|&j| j >= n || std::mem::replace(&mut seen[j], true))
            {
                return Err(SquishError::invalid(
                    "column order",
                    format!("{} entries", p.len()),
                    format!("must be a permutation of 0..{n}"),
                ));
            }
        }
        for ((i, j), &v) in h.indexed_iter() {
            if !v.is_finite() {
                return Err(HessianError::NonFinite { row: i, col: j }.into());
            }
        }
        let mut diag: Vec<f64> = (0..n).map(|j| h[[j, j]]).collect();
        if let Some((index, &value)) = diag.iter().enumerate().find(|(_, &d)| d < 0.0) {
            return Err(HessianError::NegativeDiagonal { index, value }.into());
        }
        let dead: Vec<bool> = diag.iter().map(|&d| d == 0.0).collect();
        diag.iter_mut()
            .filter(|d| **d == 0.0)
            .for_each(|d| *d = 1.0);
        let damp = damp_frac * diag.iter().sum::<f64>() / n as f64;
        // Reversed order: if P·H·P = L·Lᵀ (P the reversal), then
        // U = P·L⁻¹·P is upper triangular with UᵀU = H⁻¹, so one Cholesky
        // and one triangular inverse give the factor.
        let q: Vec<usize> = (0..n)
            .map(|i| perm.map_or(n - 1 - i, |p| p[n - 1 - i]))
            .collect();
        // Column j of the (column-major) matrix reads row q[j] of H, which
        // is contiguous in a standard-layout H. Dead inputs' couplings are
        // zero already (a zero column of X).
        let h = h.as_standard_layout();
        let a = Mat::<f64>::from_fn(n, n, |i, j| {
            if i == j {
                diag[q[i]] + damp
            } else {
                h[[q[j], q[i]]]
            }
        });
        let llt = a.llt(Side::Lower).map_err(|e| match e {
            faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                SquishError::from(HessianError::NotPositiveDefinite { damp, pivot: index })
            }
        })?;
        let mut inv = Mat::<f64>::zeros(n, n);
        faer::linalg::triangular_inverse::invert_lower_triangular(
            inv.as_mut(),
            llt.L(),
            faer::Par::Seq,
        );
        // U[i, j] = inv[n−1−i, n−1−j]: a reversed transpose of a
        // column-major matrix, copied in tiles so both sides stay in cache.
        let mut upper = Array2::<f32>::zeros((n, n));
        const T: usize = 64;
        for i0 in (0..n).step_by(T) {
            for j0 in (i0 / T * T..n).step_by(T) {
                for j in j0..(j0 + T).min(n) {
                    let col = inv.col(n - 1 - j);
                    for i in i0..(i0 + T).min(n).min(j + 1) {
                        upper[[i, j]] = col[n - 1 - i] as f32;
                    }
                }
            }
        }
        if let Some(index) = upper.iter().position(|v| !v.is_finite()) {
            return Err(HessianError::NotPositiveDefinite {
                damp,
                pivot: index / n,
            }
            .into());
        }
        Ok(InverseHessian { upper, dead, damp })
    }

    /// The upper factor `U` (`[n, n]`, zero below the diagonal), in the
    /// requested column order.
    pub fn upper(&self) -> ArrayView2<'_, f32> {
        self.upper.view()
    }

    /// Which inputs are dead (`H_jj = 0`), in the original column order.
    pub fn dead(&self) -> &[bool] {
        &self.dead
    }

    /// The absolute dampening `λ` that was added to the diagonal.
    pub fn damp(&self) -> f64 {
        self.damp
    }
}

/// Checks the inputs every OBS method takes: a non-empty, finite weight `w`
/// (`[out, in]`) and a Hessian `h` of `[in, in]`; `method` names the method
/// in the error.
pub(crate) fn check_obs_inputs(
    method: &'static str,
    w: ArrayView2<f32>,
    h: ArrayView2<f64>,
) -> Result<()> {
    super::check_matrix("weight matrix", w)?;
    let n = w.ncols();
    if h.dim() != (n, n) {
        return Err(SquishError::shape(
            method,
            format!("a {n}x{n} Hessian for {n} inputs"),
            format!("{}x{}", h.nrows(), h.ncols()),
        ));
    }
    Ok(())
}

/// Checks the two knobs every OBS method has: `block ≥ 1` columns per lazy
/// update and a dampening fraction that is finite and ≥ 0.
pub fn check_obs_knobs(block: usize, damp: f64) -> Result<()> {
    if block == 0 {
        return Err(SquishError::invalid("block", 0, "must be at least 1"));
    }
    if !(damp.is_finite() && damp >= 0.0) {
        return Err(SquishError::invalid(
            "damp",
            damp,
            "the dampening fraction must be finite and ≥ 0 (default 0.01)",
        ));
    }
    Ok(())
}

/// The decisions of an optimal-brain-surgeon column sweep ([`obs_sweep`]):
/// what each weight becomes when its column is fixed, with hooks where
/// masks or ranges are chosen from the weights updated so far.
pub trait ObsColumns {
    /// The block of columns `b..e` starts (`w`: current weights).
    fn block(&mut self, _b: usize, _e: usize, _w: &Array2<f32>, _u: ArrayView2<f32>) {}

    /// Column `k` is about to be fixed (`w`: current weights).
    fn column(&mut self, _k: usize, _w: &Array2<f32>, _u: ArrayView2<f32>) {}

    /// The value row `r` takes at column `k`, whose current value is `x`
    /// (rounded, zero for a pruned weight, or `x` itself).
    fn fix(&mut self, r: usize, k: usize, x: f32) -> f32;
}

/// The column loop GPTQ and SparseGPT share, on the rows of `w` (columns
/// in the order of the factor `u` of [`InverseHessian`]): each column `k`
/// in turn is fixed to `q = fix(r, k, w[r, k])` and the error moves the
/// columns still free by `w[r, k+1..] −= (w_rk − q)/U_kk · U[k, k+1..]`,
/// immediately inside a block of `block` columns and by one matrix product
/// for the rest of the row at the end of each block (lazy batch updates).
/// `w` ends holding the fixed values; returns `Σ ((w_rk − q)/U_kk)²`
/// (twice the predicted increase of the calibration objective).
pub fn obs_sweep<'a>(
    w: &mut Array2<f32>,
    u: impl AsArray<'a, f32, Ix2>,
    block: usize,
    cols: &mut impl ObsColumns,
) -> f64 {
    let u: ArrayView2<'a, f32> = u.into();
    let (rc, n) = w.dim();
    let block = block.max(1);
    let mut err = Array2::<f32>::zeros((rc, block.min(n)));
    let mut loss = 0.0f64;
    for b in (0..n).step_by(block) {
        let e = (b + block).min(n);
        cols.block(b, e, w, u);
        for k in b..e {
            cols.column(k, w, u);
            let d = u[[k, k]];
            let urow = u.slice(s![k, k + 1..e]);
            let urow = urow.as_slice().expect("standard layout");
            for r in 0..rc {
                let mut row = w.row_mut(r);
                let row = row.as_slice_mut().expect("owned rows are contiguous");
                let x = row[k];
                let q = cols.fix(r, k, x);
                row[k] = q;
                let e_k = (x - q) / d;
                loss += (e_k as f64) * (e_k as f64);
                err[[r, k - b]] = e_k;
                for (v, &h) in row[k + 1..e].iter_mut().zip(urow) {
                    *v -= e_k * h;
                }
            }
        }
        if e < n {
            let lhs = err.slice(s![.., ..e - b]);
            let rhs = u.slice(s![b..e, e..]);
            let mut rest = w.slice_mut(s![.., e..]);
            ndarray::linalg::general_mat_mul(-1.0, &lhs, &rhs, 1.0, &mut rest);
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::obs_testing::inverse;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gram(samples: usize, n: usize, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((samples, n), |_| rng.random_range(-1.0..1.0f64));
        x.t().dot(&x)
    }

    #[test]
    fn factor_inverts_the_dampened_permuted_hessian() {
        let n = 9;
        let h = gram(30, n, 1);
        let perm = [3usize, 0, 8, 1, 7, 2, 6, 4, 5];
        for p in [None, Some(&perm[..])] {
            let f = InverseHessian::new(h.view(), 0.01, p).unwrap();
            let u = f.upper().mapv(f64::from);
            let mean = (0..n).map(|j| h[[j, j]]).sum::<f64>() / n as f64;
            let hp = Array2::from_shape_fn((n, n), |(i, j)| {
                let (a, b) = p.map_or((i, j), |p| (p[i], p[j]));
                h[[a, b]] + if i == j { 0.01 * mean } else { 0.0 }
            });
            let want = inverse(&hp);
            let got = u.t().dot(&u);
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() < 1e-5 * want.iter().map(|v| v.abs()).fold(0.0, f64::max));
            }
        }
    }

    #[test]
    fn dead_inputs_and_bad_input() {
        let mut h = gram(20, 4, 2);
        for k in 0..4 {
            h[[1, k]] = 0.0;
            h[[k, 1]] = 0.0;
        }
        let f = InverseHessian::new(h.view(), 0.01, None).unwrap();
        assert_eq!(f.dead(), &[false, true, false, false]);
        assert!(f.upper().iter().all(|v| v.is_finite()));
        // Rank-deficient without dampening: refused, never NaN.
        let sing = gram(2, 6, 3);
        let e = InverseHessian::new(sing.view(), 0.0, None).unwrap_err();
        assert!(matches!(
            e,
            SquishError::Hessian(HessianError::NotPositiveDefinite { .. })
        ));
        // ... and fixed by dampening.
        let f = InverseHessian::new(sing.view(), 0.01, None).unwrap();
        assert!(f.upper().iter().all(|v| v.is_finite()));
        let mut bad = gram(10, 3, 4);
        bad[[2, 1]] = f64::NAN;
        assert!(matches!(
            InverseHessian::new(bad.view(), 0.01, None).unwrap_err(),
            SquishError::Hessian(HessianError::NonFinite { row: 2, col: 1 })
        ));
        assert!(InverseHessian::new(bad.view(), -1.0, None).is_err());
        assert!(InverseHessian::new(h.view(), 0.01, Some(&[0, 0, 1, 2])).is_err());
    }
}
