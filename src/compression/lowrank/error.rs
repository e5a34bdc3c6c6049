//! [`LowRankError`]: what can go wrong in the low-rank family.

use thiserror::Error;

/// Errors of the low-rank family, wrapped by
/// [`SquishError::LowRank`](crate::SquishError::LowRank).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum LowRankError {
    /// A rank of zero was asked for.
    #[error("rank 0 keeps nothing; ask for a rank of at least 1")]
    ZeroRank,
    /// A rank above min(rows, cols) was asked for.
    #[error("rank {rank} exceeds min(rows, cols) = {max} of a {rows}x{cols} matrix; ask for at most {max}")]
    RankTooLarge {
        /// The rank asked for.
        rank: usize,
        /// min(rows, cols).
        max: usize,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// An energy fraction outside (0, 1].
    #[error("energy fraction {0} is outside (0, 1]; pass e.g. 0.9 to keep 90% of Σσ²")]
    EnergyOutOfRange(f64),
    /// A target relative error outside (0, 1).
    #[error("target relative error {0} is outside (0, 1); pass e.g. 0.05 for ‖W−AB‖ ≤ 5% of ‖W‖")]
    ErrorTargetOutOfRange(f64),
    /// A compression ratio that is not a positive finite number.
    #[error("compression ratio {0} must be positive and finite")]
    InvalidRatio(f64),
    /// No rank ≥ 1 reaches the compression ratio.
    #[error("no rank reaches a compression ratio of {ratio} on a {rows}x{cols} matrix: rank 1 gives {best:.3}x; ask for at most that")]
    UnreachableRatio {
        /// The ratio asked for.
        ratio: f64,
        /// The ratio of rank 1, the best there is.
        best: f64,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// Not even rank 1 fits in the byte budget.
    #[error("a byte budget of {budget} B is below the {min_bytes} B that rank 1 needs; raise the budget")]
    UnreachableBudget {
        /// The budget asked for.
        budget: usize,
        /// Bytes of a rank-1 factorization.
        min_bytes: usize,
    },
    /// Randomized settings carrying a rank that the rank rule does not pick.
    #[error("the randomized settings ask for rank {given} but the rank rule is {rule}; pass RandomizedSvd::settings() (no rank) or the rule RankSelection::Fixed({given})")]
    RankConflict {
        /// The rank in the settings.
        given: usize,
        /// The rank rule.
        rule: String,
    },
    /// Randomized SVD needs at least one error probe.
    #[error("the a-posteriori error estimate needs at least one probe vector")]
    ZeroProbes,
    /// The LAPACK backend was chosen but the crate was built without it.
    #[error(
        "the LAPACK backend needs squish built with `--features lapack` (and the system OpenBLAS)"
    )]
    BackendUnavailable,
    /// The SVD backend failed (e.g. did not converge).
    #[error("SVD backend {backend} failed: {detail}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// Its message.
        detail: String,
    },
}
