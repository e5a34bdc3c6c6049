//! Pruning by importance scores, and the Wanda score from calibration data.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::magnitude::{check_matrix, check_sparsity};
use super::select::{check_non_negative, keep_mask_per_row, keep_mask_smallest, prune_count};
use super::Pruner;
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;
use crate::pass::{DataAware, LayerStats};

/// Over which weights the `⌊s·n⌋` lowest scores are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole matrix at once.
    Tensor,
    /// Each output row separately (every row ends with the same sparsity).
    Row,
}

/// Unchecked hyperparameters of an [`Importance`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportanceParams {
    sparsity: f64,
    scores: Array2<f32>,
    scope: Scope,
}

/// Removes the weights with the lowest given importance scores (a
/// non-negative matrix of W's shape), e.g. from gradients, Taylor expansions
/// or [`wanda_scores`]. Selection and ties as for
/// [`Magnitude`](super::Magnitude): O(n), the earlier of equal scores goes first.
///
/// ```
/// use ndarray::array;
/// use squish::pruning::{Importance, Pruner};
/// let w = array![[9.0f32, 1.0], [1.0, 9.0]];
/// let scores = array![[0.0f32, 5.0], [5.0, 1.0]];
/// let p = Importance::params(0.5, scores).check().unwrap();
/// assert_eq!(p.mask(w.view()).unwrap(), array![[false, true], [true, false]]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Importance {
    sparsity: f64,
    scores: Array2<f32>,
    scope: Scope,
}

impl Importance {
    /// Starts a builder for sparsity `s` with the given scores.
    pub fn params(sparsity: f64, scores: Array2<f32>) -> ImportanceParams {
        ImportanceParams {
            sparsity,
            scores,
            scope: Scope::Tensor,
        }
    }

    /// The scores.
    pub fn scores(&self) -> ArrayView2<'_, f32> {
        self.scores.view()
    }
}

impl ImportanceParams {
    /// Choose per output row instead of over the whole matrix.
    pub fn per_row(mut self) -> Self {
        self.scope = Scope::Row;
        self
    }

    /// Validates: sparsity in [0, 1); scores non-empty, finite, non-negative.
    pub fn check(self) -> Result<Importance> {
        check_sparsity(self.sparsity)?;
        check_scores(self.scores.view())?;
        Ok(Importance {
            sparsity: self.sparsity,
            scores: self.scores,
            scope: self.scope,
        })
    }
}

fn check_scores(s: ArrayView2<f32>) -> Result<()> {
    check_matrix("importance scores", s)?;
    let s = s.as_standard_layout();
    check_non_negative(s.as_slice().expect("standard layout"))
}

fn mask_by_scores(scores: ArrayView2<f32>, sparsity: f64, scope: Scope) -> Array2<bool> {
    match scope {
        Scope::Tensor => keep_mask_smallest(scores, prune_count(sparsity, scores.len())),
        Scope::Row => keep_mask_per_row(scores, sparsity),
    }
}

impl Pruner for Importance {
    fn name(&self) -> String {
        format!("importance {:.0}%", self.sparsity * 100.0)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        check_matrix("weight matrix", w)?;
        if w.dim() != self.scores.dim() {
            return Err(SquishError::shape(
                "importance pruning",
                format!("weights of the scores' shape {:?}", self.scores.dim()),
                format!("{:?}", w.dim()),
            ));
        }
        Ok(mask_by_scores(
            self.scores.view(),
            self.sparsity,
            self.scope,
        ))
    }
}

/// Column norms `‖x_j‖₂` of a calibration batch `x` `[batch, in]`, in f64.
fn column_norms(x: ArrayView2<f32>) -> Result<Vec<f32>> {
    check_non_empty("calibration batch", x.nrows(), x.ncols())?;
    check_finite("calibration batch", x.iter())?;
    let mut sq = vec![0.0f64; x.ncols()];
    for row in x.outer_iter() {
        for (s, &v) in sq.iter_mut().zip(row.iter()) {
            *s += (v as f64) * (v as f64);
        }
    }
    Ok(sq.into_iter().map(|s| s.sqrt() as f32).collect())
}

/// The Wanda score (Sun et al. 2023) `S_ij = |W_ij| · ‖X_j‖₂`, where `X_j` is
/// input feature `j` over a calibration batch `x` of shape `[batch, in]`.
///
/// ```
/// use ndarray::array;
/// use squish::pruning::wanda_scores;
/// let w = array![[1.0f32, -2.0]];
/// let x = array![[3.0f32, 0.0], [4.0, 1.0]];
/// assert_eq!(wanda_scores(w.view(), x.view()).unwrap(), array![[5.0f32, 2.0]]);
/// ```
pub fn wanda_scores<'a>(
    w: impl AsArray<'a, f32, Ix2>,
    x: impl AsArray<'a, f32, Ix2>,
) -> Result<Array2<f32>> {
    let w: ArrayView2<'a, f32> = w.into();
    let x: ArrayView2<'a, f32> = x.into();
    check_matrix("weight matrix", w)?;
    let norms = column_norms(x)?;
    scores_with_norms(w, &norms)
}

fn scores_with_norms(w: ArrayView2<f32>, norms: &[f32]) -> Result<Array2<f32>> {
    if norms.len() != w.ncols() {
        return Err(SquishError::shape(
            "Wanda score",
            format!("calibration inputs with {} features", w.ncols()),
            format!("{} features", norms.len()),
        ));
    }
    let mut s = w.mapv(f32::abs);
    for mut row in s.outer_iter_mut() {
        row.iter_mut().zip(norms).for_each(|(v, &n)| *v *= n);
    }
    Ok(s)
}

/// Unchecked hyperparameters of a [`Wanda`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct WandaParams {
    sparsity: f64,
    calibration: Array2<f32>,
    scope: Scope,
}

/// Wanda pruning: removes the lowest [`wanda_scores`], per output row by
/// default as in the paper (no weight update, no retraining).
///
/// ```
/// use ndarray::array;
/// use squish::pruning::{Pruner, Wanda};
/// // Feature 1 is large in the data, so its small weight survives.
/// let x = array![[0.1f32, 10.0], [0.1, 10.0]];
/// let w = array![[1.0f32, 0.5]];
/// let p = Wanda::params(0.5, x).check().unwrap();
/// assert_eq!(p.mask(w.view()).unwrap(), array![[false, true]]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Wanda {
    sparsity: f64,
    norms: Vec<f32>,
    scope: Scope,
}

impl Wanda {
    /// Starts a builder: sparsity `s`, calibration inputs `[batch, in]`.
    pub fn params(sparsity: f64, calibration: Array2<f32>) -> WandaParams {
        WandaParams {
            sparsity,
            calibration,
            scope: Scope::Row,
        }
    }

    /// Wanda from input-feature norms `‖X_j‖₂` already collected (e.g. by
    /// calibration statistics over many batches), per output row: sparsity
    /// in [0, 1), norms finite and non-negative.
    ///
    /// ```
    /// use ndarray::array;
    /// use squish::pruning::{Pruner, Wanda};
    /// let p = Wanda::from_norms(0.5, vec![0.1, 10.0]).unwrap();
    /// assert_eq!(p.mask(array![[1.0f32, 0.5]].view()).unwrap(), array![[false, true]]);
    /// ```
    pub fn from_norms(sparsity: f64, norms: Vec<f32>) -> Result<Wanda> {
        check_sparsity(sparsity)?;
        check_finite("feature norms", &norms)?;
        check_non_negative(&norms)?;
        Ok(Wanda {
            sparsity,
            norms,
            scope: Scope::Row,
        })
    }

    /// The input-feature norms `‖X_j‖₂` from calibration.
    pub fn feature_norms(&self) -> &[f32] {
        &self.norms
    }
}

impl WandaParams {
    /// Compare scores over the whole matrix instead of per output row.
    pub fn per_tensor(mut self) -> Self {
        self.scope = Scope::Tensor;
        self
    }

    /// Validates the sparsity and the calibration batch (non-empty, finite)
    /// and computes the feature norms.
    pub fn check(self) -> Result<Wanda> {
        check_sparsity(self.sparsity)?;
        Ok(Wanda {
            sparsity: self.sparsity,
            norms: column_norms(self.calibration.view())?,
            scope: self.scope,
        })
    }
}

/// Wanda on the input norms of a layer's calibration statistics
/// ([`LayerStats::feature_norms`]): unstructured per output row, or N:M
/// (keep `n` of every `m` by Wanda score) when `nm` is set.
///
/// ```
/// use ndarray::array;
/// use squish::pass::LayerStats;
/// use squish::prelude::*;
/// use squish::pruning::WandaPass;
/// let mut stats = LayerStats::new(4);
/// stats.accumulate(array![[0.1f32, 10.0, 1.0, 1.0], [0.1, 10.0, 1.0, 1.0]].view())?;
/// let w = array![[1.0f32, 0.5, 0.2, 0.3]];
/// let p = Pipeline::new().data_aware(WandaPass { sparsity: 0.5, nm: None });
/// let d = p.run_calibrated("fc", &w, Some(&stats), &Sequential)?.matrix.to_dense();
/// assert_eq!(d, array![[0.0f32, 0.5, 0.0, 0.3]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WandaPass {
    /// Fraction removed (unstructured), in [0, 1).
    pub sparsity: f64,
    /// `(n, m)`: keep `n` of every `m` by Wanda score instead.
    pub nm: Option<(usize, usize)>,
}

impl DataAware for WandaPass {
    fn name(&self) -> String {
        match self.nm {
            Some((n, m)) => format!("wanda {n}:{m}"),
            None => format!("wanda {:.0}%", self.sparsity * 100.0),
        }
    }

    fn compress(
        &self,
        w: ArrayView2<f32>,
        stats: &LayerStats,
        _exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let norms = stats.feature_norms();
        match self.nm {
            None => {
                let keep = Wanda::from_norms(self.sparsity, norms)?.mask(w)?;
                CompressedMatrix::csr_from_mask(w, keep.view())
            }
            Some((n, m)) => {
                check_matrix("weight matrix", w)?;
                let scores = scores_with_norms(w, &norms)?;
                let keep = super::NMPruner::params(n, m).check()?.mask(scores.view())?;
                super::nm_from_mask(w, keep.view(), n, m)
            }
        }
    }
}

impl Pruner for Wanda {
    fn name(&self) -> String {
        format!("wanda {:.0}%", self.sparsity * 100.0)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        check_matrix("weight matrix", w)?;
        let s = scores_with_norms(w, &self.norms)?;
        Ok(mask_by_scores(s.view(), self.sparsity, self.scope))
    }
}
