//! Structures: where the stored values sit in the logical matrix.

use std::sync::Arc;

use super::storage::{Component, StorageReport};
use super::{CompressedMatrix, PackedBits, RowLayout};
use crate::error::{Result, SquishError};
use crate::matrix::MatrixError;

/// Column indices of a CSR matrix, in the narrowest type that fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColIndices {
    /// For matrices with at most 65 536 columns.
    U16(Vec<u16>),
    /// For wider matrices.
    U32(Vec<u32>),
}

impl ColIndices {
    /// Picks u16 when `cols` ≤ 65 536, u32 otherwise.
    pub fn for_cols(cols: usize, idx: impl IntoIterator<Item = usize>) -> Result<Self> {
        if cols <= 1 << 16 {
            Ok(ColIndices::U16(idx.into_iter().map(|j| j as u16).collect()))
        } else if cols <= 1 << 32 {
            Ok(ColIndices::U32(idx.into_iter().map(|j| j as u32).collect()))
        } else {
            Err(MatrixError::CsrTooWide(cols).into())
        }
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        match self {
            ColIndices::U16(v) => v.len(),
            ColIndices::U32(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index `k` as usize.
    #[inline]
    pub fn get(&self, k: usize) -> usize {
        match self {
            ColIndices::U16(v) => v[k] as usize,
            ColIndices::U32(v) => v[k] as usize,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            ColIndices::U16(v) => v.len() * 2,
            ColIndices::U32(v) => v.len() * 4,
        }
    }
}

/// Compressed sparse rows: row pointer and column index of every stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub(crate) row_ptr: Arc<[u32]>,
    pub(crate) col_idx: ColIndices,
}

impl Csr {
    /// Builds and checks a CSR index for a `rows × cols` matrix: the row
    /// pointer starts at 0 and never decreases, and column indices are
    /// strictly increasing within each row and below `cols`.
    pub fn new(rows: usize, cols: usize, row_ptr: Vec<u32>, col_idx: ColIndices) -> Result<Self> {
        if row_ptr.len() != rows + 1 || row_ptr[0] != 0 {
            return Err(SquishError::inconsistent(
                "CSR index",
                format!("row pointer needs {} entries starting at 0", rows + 1),
            ));
        }
        if row_ptr.windows(2).any(|w| w[1] < w[0])
            || *row_ptr.last().unwrap() as usize != col_idx.len()
        {
            return Err(SquishError::inconsistent(
                "CSR index",
                "row pointer must be non-decreasing and end at the number of column indices",
            ));
        }
        if matches!(col_idx, ColIndices::U32(_)) && cols <= 1 << 16 {
            return Err(SquishError::inconsistent(
                "CSR index",
                "u16 indices fit; use them",
            ));
        }
        for i in 0..rows {
            let (a, b) = (row_ptr[i] as usize, row_ptr[i + 1] as usize);
            for k in a..b {
                let j = col_idx.get(k);
                if j >= cols || (k > a && col_idx.get(k - 1) >= j) {
                    return Err(SquishError::inconsistent(
                        "CSR index",
                        format!("row {i}: column indices must increase and stay below {cols}"),
                    ));
                }
            }
        }
        Ok(Csr {
            row_ptr: row_ptr.into(),
            col_idx,
        })
    }

    /// Row pointer (`rows + 1` entries).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column indices.
    pub fn col_idx(&self) -> &ColIndices {
        &self.col_idx
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }
}

/// N:M semi-structured sparsity: in each group of `m` consecutive columns,
/// `n` values are stored with their in-group positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NM {
    pub(crate) n: usize,
    pub(crate) m: usize,
    pub(crate) positions: PackedBits,
}

impl NM {
    /// Builds and checks an N:M index for a `rows × cols` matrix. `m` must
    /// divide `cols`; positions within each group must strictly increase.
    pub fn new(
        rows: usize,
        cols: usize,
        n: usize,
        m: usize,
        positions: PackedBits,
    ) -> Result<Self> {
        if n == 0 || n >= m {
            return Err(MatrixError::NMRatio { n, m }.into());
        }
        if m > 1 << 16 || !cols.is_multiple_of(m) {
            return Err(MatrixError::NMGroupLength { m, cols }.into());
        }
        let expected = rows * cols / m * n;
        if positions.len() != expected || positions.width() != super::index_bits(m) {
            return Err(SquishError::inconsistent(
                "N:M index",
                format!(
                    "needs {expected} positions of {} bits",
                    super::index_bits(m)
                ),
            ));
        }
        for g in 0..expected / n {
            for t in 0..n {
                let p = positions.get(g * n + t) as usize;
                if p >= m || (t > 0 && positions.get(g * n + t - 1) as usize >= p) {
                    return Err(SquishError::inconsistent(
                        "N:M index",
                        format!("group {g}: positions must increase and stay below {m}"),
                    ));
                }
            }
        }
        Ok(NM { n, m, positions })
    }

    /// Values kept per group.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Group length.
    pub fn m(&self) -> usize {
        self.m
    }

    /// In-group positions, `n` per group, groups in row-major order.
    pub fn positions(&self) -> &PackedBits {
        &self.positions
    }
}

/// Structured pruning: the surviving rows, stored densely, and their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRows {
    pub(crate) rows: Vec<u32>,
}

impl KeptRows {
    /// Builds and checks the kept-row ids (strictly increasing, below `rows`).
    pub fn new(rows: usize, kept: Vec<u32>) -> Result<Self> {
        if kept.windows(2).any(|w| w[1] <= w[0]) || kept.last().is_some_and(|&r| r as usize >= rows)
        {
            return Err(SquishError::inconsistent(
                "kept rows",
                format!("ids must increase strictly and stay below {rows}"),
            ));
        }
        Ok(KeptRows { rows: kept })
    }

    /// Ids of the kept rows, increasing.
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }
}

/// Low rank: W ≈ A·B with A of shape `[out, r]` and B of shape `[r, in]`,
/// each itself a compressed matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct LowRank {
    pub(crate) a: CompressedMatrix,
    pub(crate) b: CompressedMatrix,
}

impl LowRank {
    /// The left factor `[out, r]`.
    pub fn a(&self) -> &CompressedMatrix {
        &self.a
    }

    /// The right factor `[r, in]`.
    pub fn b(&self) -> &CompressedMatrix {
        &self.b
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.a.cols()
    }
}

/// Where the stored values of a compressed matrix sit.
#[derive(Clone, Debug, PartialEq)]
pub enum Structure {
    /// Every value, row-major.
    Dense,
    /// Compressed sparse rows.
    Csr(Csr),
    /// N:M semi-structured.
    NM(NM),
    /// Only some rows are stored; the rest are zero.
    KeptRows(KeptRows),
    /// Two factors; values live inside them.
    LowRank(Box<LowRank>),
}

impl Structure {
    /// Short name, for reports and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Structure::Dense => "dense",
            Structure::Csr(_) => "csr",
            Structure::NM(_) => "n:m",
            Structure::KeptRows(_) => "kept-rows",
            Structure::LowRank(_) => "low-rank",
        }
    }

    /// Row layout of the values this structure stores in a `rows × cols` matrix
    /// (`None` for low rank, whose values live in its factors).
    pub fn value_layout(&self, rows: usize, cols: usize) -> Option<RowLayout> {
        match self {
            Structure::Dense => Some(RowLayout::Uniform { rows, len: cols }),
            Structure::Csr(c) => Some(RowLayout::Ragged(c.row_ptr.clone())),
            Structure::NM(s) => Some(RowLayout::Uniform {
                rows,
                len: cols / s.m * s.n,
            }),
            Structure::KeptRows(k) => Some(RowLayout::Uniform {
                rows: k.rows.len(),
                len: cols,
            }),
            Structure::LowRank(_) => None,
        }
    }

    /// Adds the index bytes of this structure to a report.
    pub(crate) fn account(&self, report: &mut StorageReport) {
        match self {
            Structure::Dense => {}
            Structure::Csr(c) => {
                report.add(Component::Indices, c.row_ptr.len() * 4 + c.col_idx.bytes())
            }
            Structure::NM(s) => report.add(Component::Indices, s.positions.bytes().len()),
            Structure::KeptRows(k) => report.add(Component::Indices, k.rows.len() * 4),
            Structure::LowRank(lr) => {
                report.absorb(&lr.a.storage());
                report.absorb(&lr.b.storage());
            }
        }
    }
}
