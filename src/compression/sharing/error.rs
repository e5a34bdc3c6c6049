//! [`SharingError`]: what can go wrong in the weight-sharing family.

use thiserror::Error;

/// Errors of weight sharing (k-means codebooks, importance weighting, Huffman
/// coding), wrapped by [`SquishError::Sharing`](crate::SquishError::Sharing).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum SharingError {
    /// A codebook size outside 2..=65536.
    #[error(
        "a codebook holds 2..=65536 centroids, not k = {0}; pick k in that range (k = 2^bits)"
    )]
    CodebookSize(usize),
    /// More centroids than distinct values to cluster.
    #[error("k = {k} centroids asked for, but the values hold only {distinct} distinct (weighted) values; use k <= {distinct}")]
    TooFewDistinct {
        /// Centroids asked for.
        k: usize,
        /// Distinct values with positive importance.
        distinct: usize,
    },
    /// Lloyd's algorithm with no iteration.
    #[error("Lloyd's k-means with max_iter = 0 never moves a centroid; pass max_iter >= 1 (default 100)")]
    ZeroIterations,
    /// A negative importance weight.
    #[error("importance {0} is negative; importances weight squared errors and must be >= 0")]
    NegativeImportance(f32),
    /// Every importance weight is zero.
    #[error("every importance is 0, so nothing is clustered; give at least one value a positive importance")]
    ZeroImportance,
    /// A Huffman code over symbols that never occur.
    #[error("a Huffman code needs at least one symbol with a positive count; pass a non-empty symbol stream")]
    EmptyAlphabet,
    /// A Huffman code (or code length) longer than the decoder supports.
    #[error("a Huffman code of {len} bits exceeds the {max}-bit limit; use fewer centroids (a smaller k)")]
    CodeTooLong {
        /// The length found.
        len: u32,
        /// The longest code supported.
        max: u8,
    },
    /// A symbol outside the alphabet.
    #[error("symbol {symbol} is outside the alphabet 0..{alphabet}; pass the alphabet size the symbols come from")]
    SymbolOutOfRange {
        /// The symbol.
        symbol: u32,
        /// The alphabet size.
        alphabet: usize,
    },
    /// A symbol the code has no codeword for (its count was 0).
    #[error("symbol {0} has no codeword (its count was 0 when the code was built); build the code from the stream being encoded")]
    NoCodeword(u32),
}
