//! [`MatrixError`]: what can go wrong building a compressed matrix from parts.

use thiserror::Error;

/// Errors of the core representation (structures, value encodings, packed
/// indices), wrapped by [`SquishError::Matrix`](crate::SquishError::Matrix).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum MatrixError {
    /// A packed-index width outside 1..=16 bits.
    #[error("packed index width {0} is outside 1..=16 bits; use index_bits(n) for n symbols")]
    PackWidth(u8),
    /// A value too large for the packed width.
    #[error("value {value} does not fit in {width} bits; widen the packing (index_bits(max + 1))")]
    PackedValueTooWide {
        /// The value.
        value: u16,
        /// The packed width in bits.
        width: u8,
    },
    /// A CSR matrix wider than its u32 column indices reach.
    #[error("CSR supports at most 2^32 columns, not {0}; split the matrix into column blocks")]
    CsrTooWide(usize),
    /// A CSR matrix with more stored values than its u32 row pointers reach.
    #[error(
        "CSR supports at most 2^32 - 1 stored values, not {0}; split the matrix into row blocks"
    )]
    CsrTooManyValues(usize),
    /// N:M counts outside 0 < N < M.
    #[error("N:M sparsity needs 0 < N < M, got {n}:{m}; keep e.g. 2 of every 4")]
    NMRatio {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// The N:M group length does not divide the row length (or exceeds 65 536).
    #[error("N:M group length {m} must be at most 65536 and divide the row length {cols}; pad the input dimension or pick another M")]
    NMGroupLength {
        /// Group length.
        m: usize,
        /// Row length.
        cols: usize,
    },
    /// A codebook size outside 2..=65536.
    #[error("a codebook holds 2..=65536 centroids, not {0}; pick k in that range")]
    CodebookSize(usize),
    /// A quantization group of zero values.
    #[error(
        "quantization group size 0 holds no values; use a group size of at least 1 (e.g. 128)"
    )]
    ZeroGroupSize,
    /// So many groups that a u32 group index overflows.
    #[error(
        "group size {0} makes more than 2^32 groups; use a larger group size or per-row scales"
    )]
    TooManyGroups(usize),
}
