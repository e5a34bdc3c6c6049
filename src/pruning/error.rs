//! Errors specific to pruning.

use thiserror::Error;

/// What can go wrong in the pruning family beyond the crate-wide cases
/// (empty or non-finite input, shape mismatches), which use
/// [`SquishError`](crate::SquishError) directly.
#[derive(Debug, Error, Clone, PartialEq)]
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
    /// A sparsity outside [0, 1) (or NaN).
    #[error("sparsity {0} is outside [0, 1); pass the fraction of weights to zero, e.g. 0.5")]
    Sparsity(f64),
    /// A minimum layer density outside [0, 1].
    #[error("min_density {0} is outside [0, 1]; pass the fraction of each layer's weights kept at least, e.g. 0.01")]
    MinDensity(f64),
    /// N:M counts outside 0 < N < M.
    #[error("N:M pruning needs 0 < N < M, got {n}:{m}; keep e.g. 2 of every 4")]
    NMRatio {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// An N:M group longer than the packed positions support.
    #[error("N:M group length {0} exceeds 65536; pick a shorter group (e.g. 4 or 8)")]
    NMGroupTooLong(usize),
    /// A norm order that is not positive.
    #[error("the Ln norm needs p > 0, not {0}; pass 1 (L1), 2 (L2) or f64::INFINITY (max)")]
    NormOrder(f64),
    /// A schedule whose final sparsity is below its initial one.
    #[error(
        "schedule target sparsity {target} is below the initial {initial}; pass target >= initial"
    )]
    ScheduleTarget {
        /// Final sparsity.
        target: f64,
        /// Initial sparsity.
        initial: f64,
    },
    /// A count that must be at least 1 is 0.
    #[error("{0} is 0; pass at least 1")]
    Zero(&'static str),
    /// A schedule whose last step overflows u64.
    #[error("schedule start + steps x every overflows u64 ({steps} steps); pass fewer steps or a shorter interval")]
    ScheduleOverflow {
        /// Pruning steps.
        steps: u64,
    },
}
