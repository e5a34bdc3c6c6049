//! [`LowRank`]: the low-rank [`CompressionPass`].

use ndarray::{Array1, Array2, ArrayView2, AsArray, Ix2};

use super::randomized::{check_input, RandomizedSvdParams};
use super::{ErrorEstimate, LowRankError, RandomizedSvd, RankSelection, Svd, SvdBackend};
use crate::error::{Result, SquishError};
use crate::matrix::{CompressedMatrix, Structure, Values};
use crate::parallel::{ParallelExecutor, Sequential};
use crate::pass::CompressionPass;

/// How the SVD is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvdMethod {
    /// The exact thin SVD on a backend.
    Exact(SvdBackend),
    /// A randomized SVD (its rank comes from the rank rule).
    Randomized(RandomizedSvd),
}

/// Replaces W by A·B with A = U_r·Σ_r^{1/2} (`m × r`) and B = Σ_r^{1/2}·V_rᵀ
/// (`r × n`), two dense f32 factors; a quantizer after this pass quantizes
/// each factor.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 48), |(i, j)| ((i * j) as f32 * 0.1).sin());
/// let out = Pipeline::new()
///     .then(LowRank::params(RankSelection::Energy(0.99)).check()?)
///     .quantize(IntQuantizer::params(8).per_row().check()?)
///     .run(w.view())?;
/// assert_eq!(out.matrix.structure().kind(), "low-rank");
/// let lr = match out.matrix.structure() { squish::matrix::Structure::LowRank(lr) => lr, _ => unreachable!() };
/// assert_eq!(lr.a().encoding(), "int8");
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LowRank {
    selection: RankSelection,
    method: SvdMethod,
}

/// Unchecked parameters of a [`LowRank`] pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LowRankParams {
    selection: RankSelection,
    backend: SvdBackend,
    randomized: Option<RandomizedSvdParams>,
}

/// A factorization W ≈ A·B and what is known about its error.
#[derive(Clone, Debug, PartialEq)]
pub struct Factorization {
    /// A = U_r·Σ_r^{1/2}, `m × r`.
    pub a: Array2<f32>,
    /// B = Σ_r^{1/2}·V_rᵀ, `r × n`.
    pub b: Array2<f32>,
    /// The singular values computed: the whole spectrum for the exact SVD,
    /// the sketch's leading values for the randomized one.
    pub singular_values: Array1<f32>,
    /// ‖W − A·B‖_F / ‖W‖_F: from the discarded singular values (exact) or
    /// the probe estimate (randomized).
    pub rel_error: f64,
    /// The randomized SVD's a-posteriori estimate.
    pub estimate: Option<ErrorEstimate>,
}

impl Factorization {
    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.ncols()
    }

    /// The factors as a low-rank [`CompressedMatrix`] of dense f32 factors.
    pub fn to_matrix(&self) -> Result<CompressedMatrix> {
        CompressedMatrix::low_rank(
            CompressedMatrix::from_dense(self.a.view())?,
            CompressedMatrix::from_dense(self.b.view())?,
        )
    }
}

impl LowRank {
    /// A pass choosing its rank by `selection`; exact faer SVD by default.
    pub fn params(selection: RankSelection) -> LowRankParams {
        LowRankParams {
            selection,
            backend: SvdBackend::Faer,
            randomized: None,
        }
    }

    /// The rank rule.
    pub fn selection(&self) -> RankSelection {
        self.selection
    }

    /// The SVD method.
    pub fn method(&self) -> SvdMethod {
        self.method
    }

    /// Factorizes `w`: the exact SVD or the randomized SVD's products on
    /// `exec` (bit-identical on every executor).
    pub fn factorize<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Factorization> {
        let w: ArrayView2<'a, f32> = w.into();
        check_input(w)?;
        let (m, n) = w.dim();
        let (svd, all, rel_error, estimate) = match self.method {
            SvdMethod::Exact(backend) => {
                // Same bits on every executor (faer's split is fixed).
                let full = Svd::exact_on(w, backend, exec)?;
                let r = self.selection.select_from_spectrum(
                    m,
                    n,
                    full.s().as_slice().expect("owned"),
                )?;
                let total = full.tail_norm(0);
                let rel = if total > 0.0 {
                    full.tail_norm(r) / total
                } else {
                    0.0
                };
                (full.truncate(r)?, full.s().clone(), rel, None)
            }
            SvdMethod::Randomized(rsvd) => {
                let (svd, all) = self.randomized(rsvd, w, exec)?;
                let est = rsvd.estimate(w, &svd, exec)?;
                (svd, all, est.relative, Some(est))
            }
        };
        let (a, b) = svd.factors();
        Ok(Factorization {
            a,
            b,
            singular_values: all,
            rel_error,
            estimate,
        })
    }

    /// The randomized rank-r SVD and the sketch's singular values. Rules
    /// that need the spectrum grow the sketch (doubling) until its leading
    /// values reach the target: since the approximation is the projection
    /// of W on the sketch's top-r directions, its error is exactly
    /// ‖W‖² − Σ_{i≤r} σ̃ᵢ², so the target holds for the result itself.
    fn randomized(
        &self,
        rsvd: RandomizedSvd,
        w: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<(Svd, Array1<f32>)> {
        let (m, n) = w.dim();
        let max = m.min(n);
        if let Some(r) = self.selection.rank_for_shape(m, n)? {
            let sk = rsvd.sketch(w, r, exec)?;
            return Ok((sk.truncate(r)?, sk.s().clone()));
        }
        let total: f64 = w.iter().map(|&x| (x as f64).powi(2)).sum();
        let mut guess = max.min(16);
        loop {
            let sk = rsvd.sketch(w, guess, exec)?;
            let complete = sk.rank() == max;
            let sigma = sk.s().as_slice().expect("owned");
            if let Some(r) = self.selection.select(m, n, sigma, total, complete)? {
                return Ok((sk.truncate(r)?, sk.s().clone()));
            }
            guess = (guess * 2).min(max);
        }
    }
}

impl LowRankParams {
    /// Exact SVD on this backend (the default is faer).
    pub fn backend(mut self, backend: SvdBackend) -> Self {
        self.backend = backend;
        self.randomized = None;
        self
    }

    /// Randomized SVD with these settings; the rank rule decides the rank.
    /// Pass [`RandomizedSvd::settings()`] (no rank); a rank set with
    /// [`RandomizedSvd::params(r)`](RandomizedSvd::params) must equal the
    /// rule's `Fixed(r)`, or [`check`](Self::check) returns
    /// [`LowRankError::RankConflict`].
    pub fn randomized(mut self, settings: RandomizedSvdParams) -> Self {
        self.randomized = Some(settings);
        self
    }

    /// Checks the rank rule, the backend and the randomized settings.
    pub fn check(self) -> Result<LowRank> {
        self.selection.check()?;
        let method = match self.randomized {
            Some(p) => {
                let given = p.rank();
                if given != 0 && self.selection != RankSelection::Fixed(given) {
                    return Err(LowRankError::RankConflict {
                        given,
                        rule: format!("{:?}", self.selection),
                    }
                    .into());
                }
                SvdMethod::Randomized(p.check_without_rank()?)
            }
            None => SvdMethod::Exact(self.backend.check()?),
        };
        Ok(LowRank {
            selection: self.selection,
            method,
        })
    }
}

impl CompressionPass for LowRank {
    fn name(&self) -> String {
        let rule = match self.selection {
            RankSelection::Fixed(r) => format!("r={r}"),
            RankSelection::Energy(e) => format!("energy {e}"),
            RankSelection::RelativeError(e) => format!("err {e}"),
            RankSelection::CompressionRatio(c) => format!("{c}x"),
            RankSelection::ByteBudget(b) => format!("{b} B"),
        };
        let method = match self.method {
            SvdMethod::Exact(b) => b.name(),
            SvdMethod::Randomized(_) => "rsvd",
        };
        format!("low-rank {rule} {method}")
    }

    /// Factorizes a matrix with f32 values (any structure but low rank; a
    /// sparse one is decoded first).
    fn apply(&self, m: &CompressedMatrix, exec: &dyn ParallelExecutor) -> Result<CompressedMatrix> {
        let hint = match (m.structure(), m.values()) {
            (Structure::LowRank(_), _) => Some("the matrix is already factored"),
            (_, Some(Values::F32(_))) => None,
            _ => Some("factor before quantizing: put the low-rank pass first"),
        };
        if let Some(hint) = hint {
            return Err(SquishError::Incompatible {
                pass: self.name(),
                structure: m.structure().kind(),
                encoding: m.encoding(),
                hint,
            });
        }
        self.factorize(m.to_dense().view(), exec)?.to_matrix()
    }
}

impl Default for LowRank {
    /// Keeps 90% of the energy, exact faer SVD.
    fn default() -> Self {
        LowRank::params(RankSelection::Energy(0.9))
            .check()
            .expect("valid defaults")
    }
}

/// Factorizes `w` with the exact faer SVD at the rank `selection` picks
/// (sequentially).
///
/// ```
/// use ndarray::Array2;
/// use squish::compression::lowrank::{factorize, RankSelection};
/// let w = Array2::from_shape_fn((32, 24), |(i, j)| (i + 2 * j) as f32);
/// let f = factorize(w.view(), RankSelection::Fixed(2))?;
/// assert!(f.rel_error < 1e-5); // (i + 2j) has rank 2
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn factorize<'a>(
    w: impl AsArray<'a, f32, Ix2>,
    selection: RankSelection,
) -> Result<Factorization> {
    let w: ArrayView2<'a, f32> = w.into();
    LowRank::params(selection)
        .check()?
        .factorize(w, &Sequential)
}
