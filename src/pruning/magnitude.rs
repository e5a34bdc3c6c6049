//! Magnitude (L1) unstructured pruning of one matrix.

use ndarray::{Array2, ArrayView2};

use super::select::{keep_mask_per_row, keep_mask_smallest, prune_count};
use super::Pruner;
use super::PruningError;
use crate::error::Result;

/// Unchecked hyperparameters of a [`Magnitude`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct MagnitudeParams {
    sparsity: f64,
    per_row: bool,
}

/// Zeroes exactly `⌊s·n⌋` weights of smallest `|w|` (see
/// [`prune_count`](super::prune_count) for how `⌊s·n⌋` is rounded).
///
/// Selection is O(n): a radix histogram over the bits of `|w|` finds the
/// bucket holding the cut, and only that bucket is examined exactly (see
/// [`Selection`](super::Selection)); no sort. **Ties** in `|w|` are broken by
/// flat row-major index: among equal magnitudes the earlier weight is pruned
/// first, so the result is a pure function of the matrix.
///
/// With [`per_row`](MagnitudeParams::per_row) each row loses `⌊s·cols⌋`
/// weights instead (same tie rule within the row).
///
/// ```
/// use ndarray::array;
/// use squish::pruning::{Magnitude, Pruner};
/// let w = array![[0.1f32, -3.0], [0.2, 1.0]];
/// let keep = Magnitude::params(0.5).check().unwrap().mask(w.view()).unwrap();
/// assert_eq!(keep, array![[false, true], [false, true]]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Magnitude {
    sparsity: f64,
    per_row: bool,
}

impl Magnitude {
    /// Starts a builder for target sparsity `s` (fraction of weights zeroed).
    pub fn params(sparsity: f64) -> MagnitudeParams {
        MagnitudeParams {
            sparsity,
            per_row: false,
        }
    }

    /// The target sparsity.
    pub fn sparsity(&self) -> f64 {
        self.sparsity
    }
}

impl MagnitudeParams {
    /// Prune every row to the same sparsity instead of the whole matrix.
    pub fn per_row(mut self) -> Self {
        self.per_row = true;
        self
    }

    /// Validates: sparsity in [0, 1).
    pub fn check(self) -> Result<Magnitude> {
        check_sparsity(self.sparsity)?;
        Ok(Magnitude {
            sparsity: self.sparsity,
            per_row: self.per_row,
        })
    }
}

/// Rejects sparsities outside [0, 1) (and NaN).
pub(crate) fn check_sparsity(s: f64) -> Result<()> {
    if !(0.0..1.0).contains(&s) {
        return Err(PruningError::Sparsity(s).into());
    }
    Ok(())
}

pub(crate) use crate::matrix::check_matrix;

impl Pruner for Magnitude {
    fn name(&self) -> String {
        let scope = if self.per_row { " per row" } else { "" };
        format!("magnitude {:.0}%{scope}", self.sparsity * 100.0)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        check_matrix("weight matrix", w)?;
        Ok(if self.per_row {
            keep_mask_per_row(w, self.sparsity)
        } else {
            keep_mask_smallest(w, prune_count(self.sparsity, w.len()))
        })
    }
}
