//! [`DistributedError`]: what can go wrong in a run over several ranks.

use thiserror::Error;

/// Errors of the distributed family (wrapped by
/// [`SquishError::Distributed`](crate::SquishError::Distributed)).
///
/// Every collective operation returns the same error on every rank: a
/// failure on one rank's share travels with the data, so no rank hangs and
/// none carries on alone.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// One rank's share of the work failed; every rank reports this error.
    #[error("rank {rank} failed on {task}: {message}; no output was written; fix the cause on that rank's share and rerun")]
    RankFailed {
        /// The rank whose work failed (the first in task order).
        rank: usize,
        /// What it was doing (a layer name, a shard).
        task: String,
        /// The error it got.
        message: String,
    },
    /// Sending or receiving failed (a peer is gone or timed out).
    #[error("communication failed in {op}: {detail}; check that every rank runs the same program and is still alive")]
    Communication {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
    },
    /// A message could not be decoded.
    #[error("malformed message ({what}): {detail}; every rank must run the same build of squish")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The ranks were given different inputs.
    #[error(
        "ranks disagree on {what}: {detail}; give every rank the same model, recipe and settings"
    )]
    Mismatch {
        /// What differs.
        what: &'static str,
        /// How.
        detail: String,
    },
    /// MPI could not be started.
    #[error("MPI could not be initialized: {detail}")]
    MpiInit {
        /// Why.
        detail: String,
    },
}
