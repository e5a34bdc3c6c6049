//! Errors specific to pruning.

use thiserror::Error;

/// What can go wrong in the pruning family beyond the crate-wide cases
/// (bad hyperparameters, empty or non-finite input), which use
/// [`SquishError`](crate::SquishError) directly.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PruningError {
    /// The N:M group length does not divide the row length.
    #[error("N:M group length {m} does not divide the row length {cols}; pad the input dimension to a multiple of {m} or pick another M")]
    GroupLength {
        /// Group length M.
        m: usize,
        /// Row length (input dimension).
        cols: usize,
    },
    /// Global pruning was given no matrices.
    #[error("global pruning needs at least one named matrix")]
    NoLayers,
    /// Two matrices in a global pruning call share a name.
    #[error("matrix name `{0}` appears twice; names must be unique")]
    DuplicateName(String),
    /// A score matrix holds a negative value.
    #[error("importance scores must be non-negative; score {value} at flat index {index}")]
    NegativeScore {
        /// Flat (row-major) index.
        index: usize,
        /// The value, as text.
        value: String,
    },
}
