//! [`RandomizedSvd`]: Halko, Martinsson & Tropp (2011), with an a-posteriori
//! error estimate.

use ndarray::{Array2, ArrayView2, AsArray, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use faer::MatRef;
use ndarray::Array1;

use super::cholqr::chol_qr;
use super::faer_backend::{self, mul, on_executor};
use super::{LowRankError, Svd};
use crate::error::{check_finite, check_non_empty, Result};
use crate::parallel::ParallelExecutor;

/// Randomized truncated SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1).
///
/// 1. Sketch Y = W·Ω with a Gaussian Ω of `rank + oversampling` columns.
/// 2. `power_iterations` times: Q = qr(Y), Z = qr(Wᵀ·Q), Y = W·Z
///    (re-orthonormalizing each time keeps small singular directions from
///    drowning in f32 round-off).
/// 3. Q = qr(Y); B = Qᵀ·W is small; its thin SVD B = Û·Σ·Vᵀ gives U = Q·Û.
///
/// Multiplications with W run on the executor (fixed blocks of output rows,
/// one faer GEMM each); the QRs (Cholesky QR in f64, Householder where Y is
/// too ill-conditioned for it) and the small SVD run at faer's fixed split
/// inside the executor's pool. The Gaussian numbers come from ChaCha8
/// seeded with `seed`, so the output is bit-identical for a given seed
/// whatever the executor.
///
/// ```
/// use ndarray::Array2;
/// use squish::compression::lowrank::RandomizedSvd;
/// use squish::parallel::Sequential;
/// // An exactly rank-2 matrix.
/// let w = Array2::from_shape_fn((60, 40), |(i, j)| (i as f32).sin() * (j as f32) + (j as f32).cos());
/// let out = RandomizedSvd::params(2).seed(7).check()?.compute(w.view(), &Sequential)?;
/// assert_eq!(out.svd.rank(), 2);
/// assert!(out.estimate.relative < 1e-4);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomizedSvd {
    rank: usize,
    oversampling: usize,
    power_iterations: usize,
    seed: u64,
    probes: usize,
}

/// Unchecked parameters of a [`RandomizedSvd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomizedSvdParams(RandomizedSvd);

/// A posteriori estimate of ‖W − U_r·Σ_r·V_rᵀ‖ from `probes` Gaussian test
/// vectors ω (Halko et al. §4.3): E = W − U_r·Σ_r·V_rᵀ is applied to each
/// ω directly, so there is no cancellation even when the error is tiny.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorEstimate {
    /// sqrt(mean ‖E·ω‖²): an unbiased estimate of ‖E‖_F² under the root.
    pub frobenius: f64,
    /// `frobenius / ‖W‖_F` (‖W‖_F computed exactly).
    pub relative: f64,
    /// 10·sqrt(2/π)·max ‖E·ω‖, an upper bound on the spectral norm ‖E‖₂
    /// that holds with probability at least 1 − 10^(−probes).
    pub spectral_bound: f64,
    /// Number of test vectors.
    pub probes: usize,
}

/// A randomized SVD and its error estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomizedOutput {
    /// The rank-r decomposition.
    pub svd: Svd,
    /// How far U·Σ·Vᵀ is from W.
    pub estimate: ErrorEstimate,
}

impl RandomizedSvd {
    /// Parameters for a rank-`rank` approximation; defaults: oversampling
    /// 10, 2 power iterations, seed 0, 10 probes.
    pub fn params(rank: usize) -> RandomizedSvdParams {
        RandomizedSvdParams(RandomizedSvd {
            rank,
            oversampling: 10,
            power_iterations: 2,
            seed: 0,
            probes: 10,
        })
    }

    /// Settings without a rank, for [`LowRankParams::randomized`](super::LowRankParams::randomized),
    /// where the rank rule picks the rank; same defaults as [`params`](Self::params).
    /// (On its own, [`check`](RandomizedSvdParams::check) rejects it: rank 0.)
    ///
    /// ```
    /// use squish::compression::lowrank::{LowRank, RandomizedSvd, RankSelection};
    /// let pass = LowRank::params(RankSelection::Energy(0.9))
    ///     .randomized(RandomizedSvd::settings().seed(7))
    ///     .check()?;
    /// // A rank in the settings must agree with the rule: it is never ignored.
    /// assert!(LowRank::params(RankSelection::Energy(0.9))
    ///     .randomized(RandomizedSvd::params(64))
    ///     .check()
    ///     .is_err());
    /// assert!(LowRank::params(RankSelection::Fixed(64))
    ///     .randomized(RandomizedSvd::params(64))
    ///     .check()
    ///     .is_ok());
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn settings() -> RandomizedSvdParams {
        Self::params(0)
    }

    /// Target rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Oversampling p.
    pub fn oversampling(&self) -> usize {
        self.oversampling
    }

    /// Power iterations q.
    pub fn power_iterations(&self) -> usize {
        self.power_iterations
    }

    /// Seed of the Gaussian sketch.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of test vectors of the error estimate.
    pub fn probes(&self) -> usize {
        self.probes
    }

    /// The rank-r approximation of `w` and its error estimate.
    ///
    /// Fails when r exceeds min(m, n), or on an empty or non-finite `w`.
    pub fn compute<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<RandomizedOutput> {
        let w: ArrayView2<'a, f32> = w.into();
        check_input(w)?;
        let (m, n) = w.dim();
        if self.rank > m.min(n) {
            return Err(LowRankError::RankTooLarge {
                rank: self.rank,
                max: m.min(n),
                rows: m,
                cols: n,
            }
            .into());
        }
        // One pass over W for its scale and norm (each a pass of its own
        // before: ~1 ms apiece at 2048²).
        let scan = Scan::of(w);
        let svd = self
            .sketch_scanned(w, self.rank, scan, exec)?
            .truncate(self.rank)?;
        let estimate = self.estimate_scanned(w, &svd, scan, exec)?;
        Ok(RandomizedOutput { svd, estimate })
    }

    /// The `min(r + p, min(m, n))` triplets of the sketch of W for target
    /// rank `r` (input already checked).
    ///
    /// A matrix with huge (or tiny) weights is sketched as `W / 2^e`, with
    /// `2^e` near its largest magnitude, and σ is scaled back: the products
    /// and QR norms of the sketch square their inputs, which overflows f32
    /// from about 1e19 on. Scaling by a power of two is exact, and matrices
    /// within `2^±40` are not scaled at all. A σ that itself exceeds f32 is
    /// a typed error, as from the exact SVD.
    pub(crate) fn sketch(
        &self,
        w: ArrayView2<f32>,
        r: usize,
        exec: &dyn ParallelExecutor,
    ) -> Result<Svd> {
        self.sketch_scanned(w, r, Scan::of(w), exec)
    }

    /// [`sketch`](Self::sketch) with W's scan done.
    fn sketch_scanned(
        &self,
        w: ArrayView2<f32>,
        r: usize,
        scan: Scan,
        exec: &dyn ParallelExecutor,
    ) -> Result<Svd> {
        let Some(k) = scan.exponent() else {
            return self.sketch_unscaled(w, r, exec);
        };
        let scaled = w.mapv(|x| x * 2f32.powi(-k));
        let svd = self.sketch_unscaled(scaled.view(), r, exec)?;
        let (u, s, vt) = svd.into_parts();
        let up = 2f64.powi(k);
        let s = s.mapv(|v| (v as f64 * up) as f32);
        if let Some(v) = s.iter().find(|v| !v.is_finite()) {
            return Err(LowRankError::Backend {
                backend: "randomized",
                detail: format!(
                    "a singular value ({v}) exceeds the f32 range; scale the matrix down first"
                ),
            }
            .into());
        }
        Ok(Svd::from_parts(u, s, vt))
    }

    fn sketch_unscaled(
        &self,
        w: ArrayView2<f32>,
        r: usize,
        exec: &dyn ParallelExecutor,
    ) -> Result<Svd> {
        let (m, n) = w.dim();
        let k = (r + self.oversampling).min(m.min(n));
        let omega = gaussian(n, k, self.seed, 0);
        // Products with W and the Cholesky QRs on the executor; Householder
        // QRs (the fallback) and SVDs at faer's fixed split in its pool.
        let orth = |y: Array2<f32>| orthonormal(exec, y.view());
        let mut q = orth(mul(exec, w, omega.view()))?;
        for _ in 0..self.power_iterations {
            let z = orth(mul(exec, w.t(), q.view()))?;
            q = orth(mul(exec, w, z.view()))?;
        }
        // Bᵀ = Wᵀ·Q is n × k; its SVD Bᵀ = Û'·Σ·V'ᵀ gives B = V'·Σ·Û'ᵀ and
        // U = Q·V'.
        let bt = mul(exec, w.t(), q.view());
        let (s, u_small, vt) = small_svd(exec, bt.view())?;
        let u = mul(exec, q.view(), u_small.view());
        Ok(Svd::from_parts(u, s, vt))
    }

    /// The probe estimate of ‖W − U·Σ·Vᵀ‖.
    pub(crate) fn estimate(
        &self,
        w: ArrayView2<f32>,
        svd: &Svd,
        exec: &dyn ParallelExecutor,
    ) -> Result<ErrorEstimate> {
        self.estimate_scanned(w, svd, Scan::of(w), exec)
    }

    /// [`estimate`](Self::estimate) with W's scan done.
    fn estimate_scanned(
        &self,
        w: ArrayView2<f32>,
        svd: &Svd,
        scan: Scan,
        exec: &dyn ParallelExecutor,
    ) -> Result<ErrorEstimate> {
        // Huge weights: estimate on W / 2^k and scale the norms back (see
        // `sketch`).
        if let Some(k) = scan.exponent() {
            let down = 2f32.powi(-k);
            let ws = w.mapv(|x| x * down);
            let (u, s, vt) = svd.clone().into_parts();
            let ss = Svd::from_parts(u, s.mapv(|v| v * down), vt);
            let e = self.estimate_unscaled(ws.view(), &ss, Scan::of(ws.view()).norm, exec)?;
            let up = 2f64.powi(k);
            return Ok(ErrorEstimate {
                frobenius: e.frobenius * up,
                spectral_bound: e.spectral_bound * up,
                ..e
            });
        }
        self.estimate_unscaled(w, svd, scan.norm, exec)
    }

    /// The estimate for W of Frobenius norm `w_norm`.
    fn estimate_unscaled(
        &self,
        w: ArrayView2<f32>,
        svd: &Svd,
        w_norm: f64,
        exec: &dyn ParallelExecutor,
    ) -> Result<ErrorEstimate> {
        let omega = gaussian(w.ncols(), self.probes, self.seed, 1);
        let exact = mul(exec, w, omega.view());
        let coeff = svd.vt().dot(&omega) * svd.s().view().insert_axis(Axis(1));
        let residual = exact - svd.u().dot(&coeff);
        let norms: Vec<f64> = residual
            .axis_iter(Axis(1))
            .map(|c| c.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt())
            .collect();
        let frobenius = (norms.iter().map(|x| x * x).sum::<f64>() / self.probes as f64).sqrt();
        let max = norms.iter().cloned().fold(0.0, f64::max);
        Ok(ErrorEstimate {
            frobenius,
            relative: if w_norm > 0.0 {
                frobenius / w_norm
            } else {
                0.0
            },
            spectral_bound: 10.0 * (2.0 / std::f64::consts::PI).sqrt() * max,
            probes: self.probes,
        })
    }
}

impl RandomizedSvdParams {
    /// Extra sketch columns p (default 10).
    pub fn oversampling(mut self, p: usize) -> Self {
        self.0.oversampling = p;
        self
    }

    /// Power iterations q (default 2); each costs two passes over W.
    pub fn power_iterations(mut self, q: usize) -> Self {
        self.0.power_iterations = q;
        self
    }

    /// Seed of the Gaussian test matrices (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Test vectors of the error estimate (default 10, at least 1).
    pub fn probes(mut self, t: usize) -> Self {
        self.0.probes = t;
        self
    }

    /// Checks the parameters: rank ≥ 1, probes ≥ 1.
    pub fn check(self) -> Result<RandomizedSvd> {
        if self.0.rank == 0 {
            return Err(LowRankError::ZeroRank.into());
        }
        if self.0.probes == 0 {
            return Err(LowRankError::ZeroProbes.into());
        }
        Ok(self.0)
    }

    /// Checks everything but the rank (the rank comes from a rule later).
    pub(crate) fn check_without_rank(self) -> Result<RandomizedSvd> {
        self.with_rank_one().check()
    }

    /// The rank set in these settings (0 for [`RandomizedSvd::settings`]).
    pub(crate) fn rank(&self) -> usize {
        self.0.rank
    }

    fn with_rank_one(mut self) -> Self {
        self.0.rank = 1;
        self
    }
}

/// W's largest magnitude and Frobenius norm, from one pass (W finite).
#[derive(Clone, Copy, Debug)]
struct Scan {
    max: f32,
    norm: f64,
}

impl Scan {
    /// Sixteen lanes of partial maxima and f64 sums, folded in a fixed
    /// order: vectorized, and the same result on every executor.
    fn of(w: ArrayView2<f32>) -> Scan {
        const L: usize = 16;
        let (mut max, mut sum) = ([0.0f32; L], [0.0f64; L]);
        let mut add = |c: &[f32]| {
            for ((m, s), &x) in max.iter_mut().zip(sum.iter_mut()).zip(c) {
                let a = x.abs();
                // Not `f32::max`: its NaN rule keeps it from vectorizing.
                *m = if a > *m { a } else { *m };
                *s += (x as f64) * (x as f64);
            }
        };
        match w.as_slice_memory_order() {
            Some(all) => all.chunks(L).for_each(&mut add),
            None => w.rows().into_iter().for_each(|r| {
                r.to_vec().chunks(L).for_each(&mut add);
            }),
        }
        let sum = sum.iter().sum::<f64>();
        Scan {
            max: max.iter().fold(0.0f32, |m, &x| m.max(x)),
            norm: sum.sqrt(),
        }
    }

    /// `Some(k)` when W's largest magnitude is outside `2^±40` (where the
    /// sketch's squared norms could leave f32): W is then handled as `W / 2^k`,
    /// with `2^k` near that magnitude, k within f32's normal exponents.
    fn exponent(self) -> Option<i32> {
        if self.max == 0.0 {
            return None;
        }
        let e = self.max.log2().floor() as i32;
        (!(-40..=40).contains(&e)).then_some(e.clamp(-126, 127))
    }
}

/// An orthonormal basis of the columns of `y` (`m × k`, m ≥ k): Cholesky
/// QR in f64 where `y` is well enough conditioned (every sketch of a matrix
/// of full numerical rank k), else the Householder QR.
fn orthonormal(exec: &dyn ParallelExecutor, y: ArrayView2<f32>) -> Result<Array2<f32>> {
    match chol_qr(exec, y) {
        Some((q, _)) => Ok(q),
        None => on_executor(exec, |par| faer_backend::thin_q(y, par)),
    }
}

/// The thin SVD of Bᵀ (`n × k`, n ≥ k) as (Σ, V', Û'ᵀ): Cholesky QR
/// Bᵀ = Q_b·R_b and the SVD R_b = U_r·Σ·V_rᵀ of the k × k factor give
/// Û' = Q_b·U_r and V' = V_r. faer's thin SVD of Bᵀ does the same with a
/// Householder QR; this way the tall work is the Cholesky QR of the power
/// steps, on the executor, and only the k × k SVD runs at faer's split.
/// faer's thin SVD of Bᵀ where the Cholesky QR declines.
fn small_svd(
    exec: &dyn ParallelExecutor,
    bt: ArrayView2<f32>,
) -> Result<(Array1<f32>, Array2<f32>, Array2<f32>)> {
    let Some((qb, rb)) = chol_qr(exec, bt) else {
        let (u, s, vt) = on_executor(exec, |par| faer_backend::thin_svd(bt, par))??.into_parts();
        let ut = u.t().as_standard_layout().into_owned();
        return Ok((s, vt.reversed_axes(), ut));
    };
    let (s, ur, vr) = on_executor(exec, |par| faer_backend::svd_parts(rb.as_ref(), par))??;
    let ub = mul(exec, qb.view(), to_f32(ur.as_ref()).view());
    let s = s.column_vector().iter().map(|&v| v as f32).collect();
    let vt = ub.t().as_standard_layout().into_owned();
    Ok((s, to_f32(vr.as_ref()), vt))
}

/// A faer f64 matrix as a row-major f32 ndarray.
fn to_f32(m: MatRef<'_, f64>) -> Array2<f32> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)] as f32)
}

/// Rejects empty and non-finite matrices.
pub(crate) fn check_input(w: ArrayView2<f32>) -> Result<()> {
    check_non_empty("weight matrix", w.nrows(), w.ncols())?;
    check_finite("weight matrix", w.iter())
}

/// A `rows × cols` standard Gaussian matrix from ChaCha8 (`seed`, `stream`),
/// drawn in row-major order on one thread.
fn gaussian(rows: usize, cols: usize, seed: u64, stream: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};
    use faer::Par;

    fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        gaussian(rows, cols, seed, 7)
    }

    fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn small_svd_agrees_with_faers_thin_svd() {
        let bt = matrix(300, 12, 1);
        let (s, v, ut) = small_svd(&Sequential, bt.view()).unwrap();
        assert_eq!(
            small_svd(&ThreadPool::new(3).unwrap(), bt.view()).unwrap(),
            (s.clone(), v.clone(), ut.clone())
        );
        let faer = faer_backend::thin_svd(bt.view(), Par::Seq).unwrap();
        let rel = s
            .iter()
            .zip(faer.s())
            .map(|(a, b)| (a - b).abs() / b)
            .fold(0.0, f32::max);
        assert!(rel < 1e-5, "singular values differ by {rel}");
        // Bᵀ = Û'·Σ·V'ᵀ, with orthonormal Û' (the rows of `ut`).
        let rebuilt = (ut.t().to_owned() * &s).dot(&v.t());
        assert!(max_abs_diff(&rebuilt, &bt) < 1e-4);
        let gram = ut.dot(&ut.t());
        assert!(max_abs_diff(&gram, &Array2::eye(12)) < 1e-5);
    }

    #[test]
    fn rank_deficient_sketches_take_the_householder_qr() {
        // Two equal columns: the Cholesky QR declines, the basis is still
        // orthonormal and spans Y.
        let mut y = matrix(200, 8, 2);
        let c = y.column(1).to_owned();
        y.column_mut(5).assign(&c);
        assert!(chol_qr(&Sequential, y.view()).is_none());
        let q = orthonormal(&Sequential, y.view()).unwrap();
        assert!(max_abs_diff(&q.t().dot(&q), &Array2::eye(8)) < 1e-5);
        let residual = &y - &q.dot(&q.t().dot(&y));
        assert!(residual.iter().all(|v| v.abs() < 1e-4));
    }
}
