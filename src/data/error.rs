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
    /// A classification dataset with fewer than 2 classes.
    #[error("a classification dataset needs at least 2 classes, not {0}; pass the number of label values")]
    TooFewClasses(usize),
    /// A label outside `0..classes`.
    #[error(
        "label {label} is outside 0..{classes}; pass labels in that range or a larger class count"
    )]
    Label {
        /// The label.
        label: usize,
        /// The number of classes.
        classes: usize,
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
