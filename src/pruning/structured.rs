//! Structured pruning: whole output rows or input columns by their Ln norm.

use ndarray::{Array2, ArrayView2, AsArray, Axis, Ix2};

use super::magnitude::{check_matrix, check_sparsity};
use super::select::prune_count;
use super::Pruner;
use super::PruningError;
use crate::error::Result;
use crate::matrix::CompressedMatrix;

/// Which slices of W `[out, in]` are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slice {
    /// Output rows (neurons, channels): the result is a kept-rows matrix.
    Rows,
    /// Input columns: the result is CSR without the removed columns.
    Columns,
}

/// Unchecked hyperparameters of a [`Structured`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct StructuredParams {
    sparsity: f64,
    p: f64,
    slice: Slice,
}

/// Removes the `⌊s·k⌋` of the `k` rows (or columns) with the smallest Ln
/// norm `(Σ|w|^p)^(1/p)`; p = 1 and p = 2 are the usual choices, any p > 0
/// (and `f64::INFINITY`, the max norm) is accepted. Norms are accumulated in
/// f64. **Ties** go to the lower index: among equal norms the earlier row is
/// removed first.
///
/// Pruning rows gives a [`KeptRows`](crate::matrix::KeptRows) matrix that
/// stores and multiplies only the surviving rows; the next layer's matching
/// input columns are then dead, see [`dead_next_inputs`].
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::pruning::{Pruner, Structured};
/// let w = array![[1.0f32, 1.0], [0.1, 0.1], [3.0, 0.0]];
/// let p = Structured::params(0.5).norm(2.0).check().unwrap();
/// assert_eq!(p.kept(w.view()).unwrap(), vec![0, 2]);
/// let m = p.prune(&CompressedMatrix::from_dense(w.view()).unwrap()).unwrap();
/// assert_eq!(m.structure().kind(), "kept-rows");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Structured {
    sparsity: f64,
    p: f64,
    slice: Slice,
}

impl Structured {
    /// Starts a builder: remove fraction `s` of the output rows by L2 norm.
    pub fn params(sparsity: f64) -> StructuredParams {
        StructuredParams {
            sparsity,
            p: 2.0,
            slice: Slice::Rows,
        }
    }

    /// The norm exponent p.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Which slices are removed.
    pub fn slice(&self) -> Slice {
        self.slice
    }

    /// The norm of every row (or column), in f64.
    pub fn norms<'a>(&self, w: impl AsArray<'a, f32, Ix2>) -> Result<Vec<f64>> {
        let w: ArrayView2<'a, f32> = w.into();
        check_matrix("weight matrix", w)?;
        let axis = match self.slice {
            Slice::Rows => Axis(0),
            Slice::Columns => Axis(1),
        };
        Ok(w.axis_iter(axis)
            .map(|s| ln_norm(s.iter(), self.p))
            .collect())
    }

    /// Increasing indices of the rows (or columns) that survive.
    pub fn kept<'a>(&self, w: impl AsArray<'a, f32, Ix2>) -> Result<Vec<u32>> {
        let w: ArrayView2<'a, f32> = w.into();
        let norms = self.norms(w)?;
        let mut order: Vec<usize> = (0..norms.len()).collect();
        // Ascending (norm, index): the removed ones come first.
        order.sort_unstable_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
        let removed = prune_count(self.sparsity, norms.len());
        let mut kept: Vec<u32> = order[removed..].iter().map(|&i| i as u32).collect();
        kept.sort_unstable();
        Ok(kept)
    }
}

/// `(Σ|v|^p)^(1/p)` in f64; the max norm for p = ∞.
fn ln_norm<'a>(v: impl Iterator<Item = &'a f32>, p: f64) -> f64 {
    if p.is_infinite() {
        return v.fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    }
    let s: f64 = if p == 1.0 {
        v.map(|&x| (x as f64).abs()).sum()
    } else if p == 2.0 {
        v.map(|&x| (x as f64) * (x as f64)).sum()
    } else {
        v.map(|&x| (x as f64).abs().powf(p)).sum()
    };
    s.powf(1.0 / p)
}

impl StructuredParams {
    /// Norm exponent p > 0 (default 2; 1 for L1; `f64::INFINITY` for max).
    pub fn norm(mut self, p: f64) -> Self {
        self.p = p;
        self
    }

    /// Remove output rows (the default).
    pub fn rows(mut self) -> Self {
        self.slice = Slice::Rows;
        self
    }

    /// Remove input columns instead of output rows.
    pub fn columns(mut self) -> Self {
        self.slice = Slice::Columns;
        self
    }

    /// Validates: sparsity in [0, 1), p > 0.
    pub fn check(self) -> Result<Structured> {
        check_sparsity(self.sparsity)?;
        if self.p.is_nan() || self.p <= 0.0 {
            return Err(PruningError::NormOrder(self.p).into());
        }
        Ok(Structured {
            sparsity: self.sparsity,
            p: self.p,
            slice: self.slice,
        })
    }
}

impl Pruner for Structured {
    fn name(&self) -> String {
        let what = match self.slice {
            Slice::Rows => "rows",
            Slice::Columns => "columns",
        };
        format!("L{} {what} {:.0}%", self.p, self.sparsity * 100.0)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        let kept = self.kept(w)?;
        let mut keep = Array2::from_elem(w.dim(), false);
        for &k in &kept {
            match self.slice {
                Slice::Rows => keep.row_mut(k as usize).fill(true),
                Slice::Columns => keep.column_mut(k as usize).fill(true),
            }
        }
        Ok(keep)
    }

    /// Rows: a kept-rows matrix holding only the surviving rows. Columns: CSR.
    fn prune(&self, m: &CompressedMatrix) -> Result<CompressedMatrix> {
        let w = crate::pass::prunable_dense(&self.name(), m)?;
        match self.slice {
            Slice::Rows => CompressedMatrix::kept_rows(w.view(), self.kept(w.view())?),
            Slice::Columns => {
                let keep = self.mask(w.view())?;
                CompressedMatrix::csr_from_mask(w.view(), keep.view())
            }
        }
    }
}

/// Input columns of the **next** layer that became dead: the outputs of `m`
/// that are identically zero (the removed rows of a kept-rows matrix, or any
/// all-zero row). A model-level caller can drop those columns of the next
/// weight matrix. This assumes the layer has no bias on those outputs (or
/// that it was removed with the row) and an activation with f(0) = 0.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::pruning::dead_next_inputs;
/// let w = array![[1.0f32, 2.0], [0.0, 0.0], [3.0, 0.0]];
/// let m = CompressedMatrix::kept_rows(w.view(), vec![0, 2]).unwrap();
/// assert_eq!(dead_next_inputs(&m), vec![1]);
/// ```
pub fn dead_next_inputs(m: &CompressedMatrix) -> Vec<usize> {
    let mut row = vec![0.0f32; m.cols()];
    (0..m.rows())
        .filter(|&i| {
            m.decode_row(i, &mut row);
            row.iter().all(|&v| v == 0.0)
        })
        .collect()
}
