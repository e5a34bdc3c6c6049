//! How a run of stored values splits into rows.

use std::sync::Arc;

/// The row layout of the values a structure stores.
///
/// A dense or kept-rows block has `rows` rows of equal length; a CSR matrix
/// has ragged rows described by its row pointer. Value encodings use the
/// layout for per-row and per-group parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowLayout {
    /// `rows` rows of `len` values each.
    Uniform {
        /// Number of rows.
        rows: usize,
        /// Values per row.
        len: usize,
    },
    /// Row `i` holds values `offsets[i]..offsets[i + 1]` (a CSR row pointer).
    Ragged(Arc<[u32]>),
}

impl RowLayout {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            RowLayout::Uniform { rows, .. } => *rows,
            RowLayout::Ragged(o) => o.len().saturating_sub(1),
        }
    }

    /// Total number of values.
    pub fn total(&self) -> usize {
        match self {
            RowLayout::Uniform { rows, len } => rows * len,
            RowLayout::Ragged(o) => o.last().map_or(0, |&v| v as usize),
        }
    }

    /// The flat range of row `i`.
    #[inline]
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        match self {
            RowLayout::Uniform { len, .. } => i * len..(i + 1) * len,
            RowLayout::Ragged(o) => o[i] as usize..o[i + 1] as usize,
        }
    }

    /// Length of row `i`.
    #[inline]
    pub fn row_len(&self, i: usize) -> usize {
        let r = self.range(i);
        r.end - r.start
    }

    /// Length of the longest row.
    pub fn max_row_len(&self) -> usize {
        match self {
            RowLayout::Uniform { rows, len } => {
                if *rows == 0 {
                    0
                } else {
                    *len
                }
            }
            RowLayout::Ragged(o) => o
                .windows(2)
                .map(|w| (w[1] - w[0]) as usize)
                .max()
                .unwrap_or(0),
        }
    }
}
