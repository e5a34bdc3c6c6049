//! [`Svd`]: a (possibly truncated) singular value decomposition, and the
//! exact thin SVD on either backend.

use ndarray::{s, Array1, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::LowRankError;
use crate::error::{check_finite, check_non_empty, Result};
use crate::parallel::{ParallelExecutor, Sequential};

/// W ≈ U·diag(σ)·Vᵀ with `k` triplets, σ non-increasing.
///
/// ```
/// use ndarray::array;
/// use squish::compression::lowrank::{Svd, SvdBackend};
/// let w = array![[3.0f32, 0.0], [0.0, -2.0], [0.0, 0.0]];
/// let svd = Svd::exact(w.view(), SvdBackend::Faer).unwrap();
/// assert_eq!(svd.rank(), 2);
/// assert!((svd.s()[0] - 3.0).abs() < 1e-6 && (svd.s()[1] - 2.0).abs() < 1e-6);
/// let (a, b) = svd.truncate(1).unwrap().factors();
/// let w1 = a.dot(&b); // best rank-1 approximation
/// assert!((w1[[0, 0]] - 3.0).abs() < 1e-6 && w1[[1, 1]].abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Svd {
    u: Array2<f32>,
    s: Array1<f32>,
    vt: Array2<f32>,
}

/// Which library computes the exact SVD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SvdBackend {
    /// faer's thin SVD (pure Rust; the default).
    #[default]
    Faer,
    /// LAPACK `?gesdd` through ndarray-linalg and the system OpenBLAS; only
    /// with the `lapack` cargo feature ([`SvdBackend::check`] says so).
    Lapack,
}

impl SvdBackend {
    /// Fails with [`LowRankError::BackendUnavailable`] when this backend was
    /// not compiled in.
    pub fn check(self) -> Result<Self> {
        match self {
            SvdBackend::Lapack if !cfg!(feature = "lapack") => {
                Err(LowRankError::BackendUnavailable.into())
            }
            b => Ok(b),
        }
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            SvdBackend::Faer => "faer",
            SvdBackend::Lapack => "lapack",
        }
    }
}

impl Svd {
    /// Assembles a decomposition; crate-internal, callers pass consistent parts.
    pub(crate) fn from_parts(u: Array2<f32>, s: Array1<f32>, vt: Array2<f32>) -> Self {
        debug_assert_eq!(u.ncols(), s.len());
        debug_assert_eq!(vt.nrows(), s.len());
        Svd { u, s, vt }
    }

    /// U, σ and Vᵀ, by value.
    pub(crate) fn into_parts(self) -> (Array2<f32>, Array1<f32>, Array2<f32>) {
        (self.u, self.s, self.vt)
    }

    /// The exact thin SVD of `w` (`min(m, n)` triplets) on one thread
    /// (the same bits as [`exact_on`](Self::exact_on) on any executor).
    ///
    /// Rejects empty and non-finite matrices.
    pub fn exact<'a>(w: impl AsArray<'a, f32, Ix2>, backend: SvdBackend) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        Self::exact_on(w, backend, &Sequential)
    }

    /// [`exact`](Self::exact) with the work spread over `exec`.
    ///
    /// faer runs its parallel SVD (blocked bidiagonalization, divide and
    /// conquer) inside the executor's pool, split two ways whatever the
    /// executor's size: faer rounds according to the split alone, so the
    /// result is bit-identical on every executor (and equal to
    /// [`exact`](Self::exact)), and two or more threads run it in parallel.
    /// The LAPACK backend ignores `exec` (OpenBLAS has its own threads:
    /// `OPENBLAS_NUM_THREADS`).
    ///
    /// ```
    /// use ndarray::Array2;
    /// use squish::compression::lowrank::{Svd, SvdBackend};
    /// use squish::parallel::ThreadPool;
    /// let w = Array2::from_shape_fn((300, 200), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
    /// let svd = Svd::exact_on(w.view(), SvdBackend::Faer, &ThreadPool::new(2)?)?;
    /// let err = (&svd.reconstruct() - &w).iter().fold(0.0f32, |m, d| m.max(d.abs()));
    /// assert!(err < 1e-3);
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn exact_on<'a>(
        w: impl AsArray<'a, f32, Ix2>,
        backend: SvdBackend,
        exec: &dyn ParallelExecutor,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        check_non_empty("weight matrix", w.nrows(), w.ncols())?;
        check_finite("weight matrix", w.iter())?;
        match backend.check()? {
            SvdBackend::Faer => {
                super::faer_backend::on_executor(exec, |par| super::faer_backend::thin_svd(w, par))?
            }
            SvdBackend::Lapack => {
                #[cfg(feature = "lapack")]
                {
                    super::lapack_backend::thin_svd(w)
                }
                #[cfg(not(feature = "lapack"))]
                unreachable!("check() rejects an absent backend")
            }
        }
    }

    /// Left singular vectors, `m × k`.
    pub fn u(&self) -> ArrayView2<'_, f32> {
        self.u.view()
    }

    /// Singular values, non-increasing.
    pub fn s(&self) -> &Array1<f32> {
        &self.s
    }

    /// Right singular vectors transposed, `k × n`.
    pub fn vt(&self) -> ArrayView2<'_, f32> {
        self.vt.view()
    }

    /// Number of triplets k.
    pub fn rank(&self) -> usize {
        self.s.len()
    }

    /// The leading `r` triplets (1 ≤ r ≤ k).
    pub fn truncate(&self, r: usize) -> Result<Svd> {
        if r == 0 {
            return Err(LowRankError::ZeroRank.into());
        }
        if r > self.rank() {
            return Err(LowRankError::RankTooLarge {
                rank: r,
                max: self.rank(),
                rows: self.u.nrows(),
                cols: self.vt.ncols(),
            }
            .into());
        }
        Ok(Svd {
            u: self.u.slice(s![.., ..r]).to_owned(),
            s: self.s.slice(s![..r]).to_owned(),
            vt: self.vt.slice(s![..r, ..]).to_owned(),
        })
    }

    /// The balanced split A = U·Σ^{1/2} (`m × k`), B = Σ^{1/2}·Vᵀ (`k × n`).
    ///
    /// Both factors get the same share of each singular value, so their
    /// rows have comparable ranges and a quantizer applied to each factor
    /// loses about as much on both sides.
    pub fn factors(&self) -> (Array2<f32>, Array2<f32>) {
        let root = self.s.mapv(f32::sqrt);
        let a = &self.u * &root.view().insert_axis(Axis(0));
        let b = &self.vt * &root.view().insert_axis(Axis(1));
        (a, b)
    }

    /// U·diag(σ)·Vᵀ as a dense matrix.
    pub fn reconstruct(&self) -> Array2<f32> {
        let us = &self.u * &self.s.view().insert_axis(Axis(0));
        us.dot(&self.vt)
    }

    /// sqrt(Σ_{i>r} σᵢ²) over this decomposition's values: for a complete
    /// spectrum, the Frobenius error of the best rank-r approximation
    /// (Eckart–Young).
    pub fn tail_norm(&self, r: usize) -> f64 {
        self.s
            .iter()
            .skip(r)
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}
