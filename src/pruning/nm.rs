//! N:M semi-structured pruning.

use ndarray::{Array2, ArrayView2};

use super::magnitude::check_matrix;
use super::{Pruner, PruningError};
use crate::error::Result;
use crate::matrix::{index_bits, CompressedMatrix, PackedBits, RowLayout, Structure, Values, NM};

/// Unchecked hyperparameters of an [`NMPruner`].
#[derive(Clone, Debug, PartialEq)]
pub struct NMPrunerParams {
    n: usize,
    m: usize,
}

/// In every group of `m` consecutive inputs of a row, keeps the `n` largest
/// `|w|` (2:4 is the pattern sparse tensor cores run; any `0 < n < m` works).
///
/// `m` must divide the row length ([`PruningError::GroupLength`] otherwise;
/// pad the input dimension first). **Ties**: weights are removed in ascending
/// `(|w|, position)` order, so among equal magnitudes the earlier one is
/// removed and the later one kept, as in [`Magnitude`](super::Magnitude).
///
/// [`prune`](Pruner::prune) gives the [`NM`] structure: `n` values a group
/// plus their in-group positions at `⌈log2 m⌉` bits each.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::{CompressedMatrix, Component};
/// use squish::pruning::{NMPruner, Pruner};
/// let w = array![[0.1f32, -4.0, 3.0, 0.2, 1.0, 1.0, 1.0, 1.0]];
/// let p = NMPruner::params(2, 4).check().unwrap();
/// let keep = p.mask(w.view()).unwrap();
/// assert_eq!(keep, array![[false, true, true, false, false, false, true, true]]);
/// let m = p.prune(&CompressedMatrix::from_dense(w.view()).unwrap()).unwrap();
/// let s = m.storage();
/// assert_eq!(s.get(Component::Values), 4 * 4); // four f32 values
/// assert_eq!(s.get(Component::Indices), 1); // four 2-bit positions
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NMPruner {
    n: usize,
    m: usize,
}

impl NMPruner {
    /// Starts a builder for `n` of every `m`.
    pub fn params(n: usize, m: usize) -> NMPrunerParams {
        NMPrunerParams { n, m }
    }

    /// Values kept per group.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Group length.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Kept in-group positions (increasing) of every group, row-major, from
    /// scores (`|w|` for magnitude; any non-negative importance works).
    pub(crate) fn positions(&self, scores: ArrayView2<f32>) -> Result<Vec<u16>> {
        let (_, cols) = scores.dim();
        if !cols.is_multiple_of(self.m) {
            return Err(PruningError::GroupLength { m: self.m, cols }.into());
        }
        let scores = scores.as_standard_layout();
        let data = scores.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(data.len() / self.m * self.n);
        let mut order: Vec<u16> = Vec::with_capacity(self.m);
        for g in data.chunks(self.m) {
            order.clear();
            order.extend(0..self.m as u16);
            // Descending (|s|, position): the first n survive.
            let key = |p: u16| g[p as usize].abs().to_bits();
            order.sort_unstable_by(|&a, &b| key(b).cmp(&key(a)).then(b.cmp(&a)));
            let kept = &mut order[..self.n];
            kept.sort_unstable();
            out.extend_from_slice(kept);
        }
        Ok(out)
    }
}

impl NMPrunerParams {
    /// Validates: 0 < n < m ≤ 65 536.
    pub fn check(self) -> Result<NMPruner> {
        if self.n == 0 || self.n >= self.m {
            return Err(PruningError::NMRatio {
                n: self.n,
                m: self.m,
            }
            .into());
        }
        if self.m > 1 << 16 {
            return Err(PruningError::NMGroupTooLong(self.m).into());
        }
        Ok(NMPruner {
            n: self.n,
            m: self.m,
        })
    }
}

impl Pruner for NMPruner {
    fn name(&self) -> String {
        format!("{}:{} sparsity", self.n, self.m)
    }

    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>> {
        check_matrix("weight matrix", w)?;
        let (rows, cols) = w.dim();
        let pos = self.positions(w)?;
        let mut keep = vec![false; rows * cols];
        for (g, p) in pos.chunks(self.n).enumerate() {
            for &q in p {
                keep[g * self.m + q as usize] = true;
            }
        }
        Ok(Array2::from_shape_vec((rows, cols), keep).expect("sizes match"))
    }

    /// The N:M structure with f32 values.
    fn prune(&self, m: &CompressedMatrix) -> Result<CompressedMatrix> {
        let w = crate::pass::prunable_dense(&self.name(), m)?;
        check_matrix("weight matrix", w.view())?;
        let (rows, cols) = w.dim();
        let pos = self.positions(w.view())?;
        let data = w.as_slice().expect("fresh arrays are contiguous");
        let values: Vec<f32> = pos
            .chunks(self.n)
            .enumerate()
            .flat_map(|(g, p)| p.iter().map(move |&q| data[g * self.m + q as usize]))
            .collect();
        let positions = PackedBits::pack(index_bits(self.m), &pos)?;
        let nm = NM::new(rows, cols, self.n, self.m, positions)?;
        let layout = RowLayout::Uniform {
            rows,
            len: cols / self.m * self.n,
        };
        CompressedMatrix::from_parts(rows, cols, Structure::NM(nm), Values::f32(layout, values)?)
    }
}
