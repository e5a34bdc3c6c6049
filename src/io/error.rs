//! Errors of reading and writing model files.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong reading or writing a model file.
///
/// A hostile or damaged file always ends here, never in a panic: every size
/// the file declares is checked against the bytes it really holds before
/// anything is allocated.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused a read, write, sync or rename.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (truncated, a header that
    /// lies about sizes or offsets, bad JSON, ...).
    #[error("not a valid safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A valid safetensors file that is not a squish container.
    #[error("not a squish container (no `{key}` entry in the header metadata); use `Model::load` for plain safetensors")]
    NotAContainer {
        /// The metadata key that is missing.
        key: &'static str,
    },
    /// The container was written by a newer (or unknown) format version.
    #[error("container format version {found} is not supported (this build reads versions 1..={supported}); upgrade squish")]
    UnsupportedVersion {
        /// The version in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// The JSON description in the header is not well formed.
    #[error("bad container description: {detail}")]
    Description {
        /// What is wrong.
        detail: String,
    },
    /// A tensor the description names is not in the file.
    #[error("tensor `{tensor}`: component `{component}` is missing from the file")]
    MissingComponent {
        /// The logical tensor.
        tensor: String,
        /// The safetensors name of the component.
        component: String,
    },
    /// A component has the wrong dtype, rank or length.
    #[error("tensor `{tensor}`: component `{component}` {detail}")]
    BadComponent {
        /// The logical tensor.
        tensor: String,
        /// The safetensors name of the component.
        component: String,
        /// What is wrong.
        detail: String,
    },
    /// A declared shape that no file of this size can back.
    #[error("tensor `{tensor}`: declared shape {shape} is too large ({detail})")]
    TooLarge {
        /// The logical tensor.
        tensor: String,
        /// The shape as declared.
        shape: String,
        /// Why it is rejected.
        detail: String,
    },
    /// The stored checksum does not match the stored bytes.
    #[error("tensor `{tensor}`: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the file is corrupt")]
    Checksum {
        /// The logical tensor.
        tensor: String,
        /// CRC-32 in the description.
        stored: u32,
        /// CRC-32 of the bytes found.
        computed: u32,
    },
    /// The parts are well formed but do not make a valid matrix.
    #[error("tensor `{tensor}`: {source}")]
    Invalid {
        /// The logical tensor.
        tensor: String,
        /// The foundation constructor's error.
        #[source]
        source: Box<crate::SquishError>,
    },
    /// A tensor dtype this operation cannot handle.
    #[error("tensor `{tensor}`: dtype {dtype} is not supported here ({hint})")]
    UnsupportedDtype {
        /// The tensor.
        tensor: String,
        /// The dtype, as safetensors names it.
        dtype: String,
        /// What to do.
        hint: &'static str,
    },
    /// `CompressedMatrix::load` on a container that does not hold exactly one
    /// compressed matrix.
    #[error("the container holds {count} compressed matrices, not one; load it with `CompressedModel::load` and pick one by name")]
    NotOneMatrix {
        /// Compressed matrices found.
        count: usize,
    },
    /// The output path is one of the inputs (itself, or a link to it).
    #[error("output {output} is the input {input} (the same file, maybe through a link); write to another path, or pass --force to replace the input")]
    OutputIsInput {
        /// The output path as given.
        output: PathBuf,
        /// The input it resolves to.
        input: PathBuf,
    },
    /// The output path holds a file squish did not write.
    #[error("{path} exists and is not {expected}; choose another output path, or pass --force to overwrite it")]
    OutputExists {
        /// The output path.
        path: PathBuf,
        /// What squish would replace without asking.
        expected: &'static str,
    },
    /// A squish container where a plain safetensors model is needed.
    #[error("{what} is a squish container, not a model: `squish inspect` shows it, `squish decompress` turns it back into a model (or `CompressedModel::load`)")]
    IsAContainer {
        /// The file or model.
        what: String,
    },
    /// A sharded checkpoint is inconsistent (see [`ShardError`](super::ShardError)).
    #[error(transparent)]
    Shard(#[from] super::ShardError),
    /// Two tensors would be written under the same name.
    #[error("tensor name `{name}` is used twice; rename one of the tensors")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

impl FileError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn description(detail: impl Into<String>) -> Self {
        FileError::Description {
            detail: detail.into(),
        }
    }

    pub(crate) fn component(tensor: &str, component: &str, detail: impl Into<String>) -> Self {
        FileError::BadComponent {
            tensor: tensor.to_string(),
            component: component.to_string(),
            detail: detail.into(),
        }
    }
}
