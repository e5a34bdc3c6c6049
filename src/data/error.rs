//! Errors of the data loaders.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong while reading a dataset.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes do not follow the expected format.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which file or format.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl DataError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        DataError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}
