//! Magnitude (L1) unstructured pruning of one matrix.

use ndarray::{Array2, ArrayView2};

use super::select::{keep_mask_per_row, keep_mask_smallest, prune_count, Selection};
use super::to_csr::{csr_without, keep_without};
use super::Pruner;
use super::PruningError;
use crate::error::Result;
use crate::matrix::{CompressedMatrix, Structure, Values};
use crate::parallel::{map, rows_per_task, ParallelExecutor};
use crate::pass::prunable_dense;

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
/// [`prune_on`](Pruner::prune_on) (what a pipeline runs) goes straight to
/// CSR without a keep-mask: a sampled bracket and one parallel counting pass
/// find the cut ([`Selection::smallest_on`](super::Selection::smallest_on)),
/// then fixed blocks of rows compact their survivors on the executor. The
/// kept set is the one [`mask`](Pruner::mask) gives, bit for bit, on any
/// executor.
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

    fn mask_on(&self, w: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<bool>> {
        check_matrix("weight matrix", w)?;
        let (rows, cols) = w.dim();
        let w = w.as_standard_layout();
        let data = w.as_slice().expect("standard layout");
        let keep = if self.per_row {
            let rpt = rows_per_task(cols, 1 << 16);
            let count = prune_count(self.sparsity, cols);
            map(exec, rows.div_ceil(rpt), |b| {
                let block = &data[b * rpt * cols..((b + 1) * rpt).min(rows) * cols];
                let mut keep = vec![true; block.len()];
                for (row, k) in block.chunks(cols).zip(keep.chunks_mut(cols)) {
                    Selection::smallest(&[row], count).write_keep(&[row], &mut [k]);
                }
                keep
            })
            .concat()
        } else {
            let sel = Selection::smallest_on(data, prune_count(self.sparsity, data.len()), exec);
            keep_without(data, &sel, exec)
        };
        Ok(Array2::from_shape_vec((rows, cols), keep).expect("sizes match"))
    }

    fn prune_on(
        &self,
        m: &CompressedMatrix,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        if self.per_row {
            let w = prunable_dense(&self.name(), m)?;
            let keep = self.mask_on(w.view(), exec)?;
            return CompressedMatrix::csr_from_mask(w.view(), keep.view());
        }
        let (rows, cols) = m.shape();
        // A dense f32 matrix is read in place; anything else is decoded once.
        let decoded;
        let data: &[f32] = match (m.structure(), m.values()) {
            (Structure::Dense, Some(Values::F32(v))) => v.data(),
            _ => {
                decoded = prunable_dense(&self.name(), m)?;
                decoded.as_slice().expect("standard layout")
            }
        };
        let sel = Selection::smallest_on(data, prune_count(self.sparsity, data.len()), exec);
        csr_without(rows, cols, data, &sel, exec)
    }
}
