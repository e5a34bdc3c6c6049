//! [`ParallelError`]: what can go wrong in parallel runs.

use thiserror::Error;

/// Errors of the parallel family (wrapped by [`SquishError::Parallel`](crate::SquishError::Parallel)).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParallelError {
    /// A task panicked; the panic was caught so the other tasks' results survive.
    #[error("task `{task}` panicked: {message}; the other tasks' results are kept")]
    TaskPanicked {
        /// The task's name.
        task: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A count that must be at least 1 is 0.
    #[error("{what} is 0: {why}; pass at least 1")]
    Zero {
        /// Which count.
        what: &'static str,
        /// Why it must be positive.
        why: &'static str,
    },
    /// The thread pool could not be built.
    #[error("cannot start a pool of {threads} threads: {detail}; try fewer threads")]
    PoolBuild {
        /// Threads asked for.
        threads: usize,
        /// The runtime's message.
        detail: String,
    },
}

/// The text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
