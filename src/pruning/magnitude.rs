//! Magnitude (L1) unstructured pruning.

use ndarray::{Array2, ArrayView2};

use super::Pruner;
use crate::error::{check_finite, check_non_empty, Result, SquishError};

/// Unchecked hyperparameters of a [`Magnitude`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct MagnitudeParams {
    sparsity: f64,
}

/// Zeroes exactly `⌊s·n⌋` weights of smallest `|w|`.
///
/// Selection is O(n) (`select_nth_unstable` on packed `(|w|, index)` keys),
/// not a sort. Ties in `|w|` are broken by flat row-major index: among equal
/// magnitudes the earlier weight is pruned first.
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
}

impl Magnitude {
    /// Starts a builder for target sparsity `s` (fraction of weights zeroed).
    pub fn params(sparsity: f64) -> MagnitudeParams {
        MagnitudeParams { sparsity }
    }

    /// The target sparsity.
    pub fn sparsity(&self) -> f64 {
        self.sparsity
    }
}

impl MagnitudeParams {
    /// Validates: sparsity in [0, 1).
    pub fn check(self) -> Result<Magnitude> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(SquishError::invalid(
                "sparsity",
                self.sparsity,
                "must lie in [0, 1): the fraction of weights to zero",
            ));
        }
        Ok(Magnitude {
            sparsity: self.sparsity,
        })
    }
}

/// Flat indices of the `count` smallest scores, ties broken by lower index
/// first. Scores must be finite and non-negative.
pub(crate) fn smallest_indices(scores: &[f32], count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    // For non-negative finite f32 the bit pattern orders like the value, so
    // (bits << 32 | index) orders by score, then index.
    let mut keys: Vec<u64> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| ((s.to_bits() as u64) << 32) | i as u64)
        .collect();
    if count < keys.len() {
        keys.select_nth_unstable(count - 1);
    }
    keys[..count]
        .iter()
        .map(|&k| (k & 0xFFFF_FFFF) as usize)
        .collect()
}

impl Pruner for Magnitude {
    fn name(&self) -> String {
        format!("magnitude {:.0}%", self.sparsity * 100.0)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        let (rows, cols) = w.dim();
        check_non_empty("weight matrix", rows, cols)?;
        let n = rows * cols;
        if n > u32::MAX as usize {
            return Err(SquishError::invalid(
                "elements",
                n,
                "at most 2^32 weights per matrix",
            ));
        }
        let scores: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        check_finite("weight matrix", &scores)?;
        let count = (self.sparsity * n as f64).floor() as usize;
        let mut keep = vec![true; n];
        for i in smallest_indices(&scores, count) {
            keep[i] = false;
        }
        Ok(Array2::from_shape_vec((rows, cols), keep).expect("sizes match"))
    }
}
