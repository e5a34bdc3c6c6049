//! Shared values: a codebook of centroids and a packed index per value.

use super::prepacked::Prepacked;
use crate::matrix::{PackedBits, RowLayout};

/// Whether one codebook serves the whole tensor or each row has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodebookScope {
    /// One codebook of `k` centroids.
    PerTensor,
    /// `k` centroids per row.
    PerRow,
}

/// Centroids (f32) and indices packed at `ceil(log2 k)` bits.
#[derive(Clone, Debug, PartialEq)]
pub struct CodebookValues {
    pub(crate) layout: RowLayout,
    pub(crate) k: usize,
    pub(crate) scope: CodebookScope,
    pub(crate) centroids: Vec<f32>,
    pub(crate) indices: PackedBits,
    /// The decoded copy of cache-resident matrices (`kernels::decoded_copy`).
    pub(crate) prepacked: Prepacked,
}

impl CodebookValues {
    /// Centroids per codebook.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Per tensor or per row.
    pub fn scope(&self) -> CodebookScope {
        self.scope
    }

    /// All centroids (`k` per codebook, codebooks in row order).
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// The packed indices in layout order.
    pub fn indices(&self) -> &PackedBits {
        &self.indices
    }

    /// The codebook used by row `i`.
    #[inline]
    pub fn row_codebook(&self, i: usize) -> &[f32] {
        match self.scope {
            CodebookScope::PerTensor => &self.centroids,
            CodebookScope::PerRow => &self.centroids[i * self.k..(i + 1) * self.k],
        }
    }

    pub(crate) fn decode_row(&self, i: usize, out: &mut [f32]) {
        let cb = self.row_codebook(i);
        for (k, o) in self.layout.range(i).zip(out.iter_mut()) {
            *o = cb[self.indices.get(k) as usize];
        }
    }
}
