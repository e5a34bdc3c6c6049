//! Errors of sharded checkpoints: an index and the shards it names.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can be wrong with a sharded checkpoint (a directory or a
/// `model.safetensors.index.json` and its shards), each naming the file and,
/// where there is one, the tensor.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The index file is not Hugging Face's `{"weight_map": {tensor: file}}`.
    #[error("{path}: not a safetensors index ({detail}); expected {{\"weight_map\": {{\"tensor\": \"shard.safetensors\"}}}}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A directory with neither an index nor any `.safetensors` file.
    #[error("{path}: no `*.safetensors.index.json` and no `*.safetensors` file; pass a model file, an index or a directory holding them")]
    NoShards {
        /// The directory.
        path: PathBuf,
    },
    /// A directory with more than one index file.
    #[error("{path}: {count} index files (`*.safetensors.index.json`); pass the one to use")]
    AmbiguousIndex {
        /// The directory.
        path: PathBuf,
        /// How many there are.
        count: usize,
    },
    /// The index names a shard by a path that leaves the index's directory
    /// (absolute, or with `..`).
    #[error("{index}: tensor `{tensor}` is placed in `{shard}`, a path outside the index's directory; shards must be plain relative names")]
    PathEscapes {
        /// The index file.
        index: PathBuf,
        /// The offending shard path, as written.
        shard: String,
        /// A tensor placed there.
        tensor: String,
    },
    /// A shard the index names cannot be opened.
    #[error(
        "{shard}: cannot open this shard (the index places tensor `{tensor}` in it): {source}"
    )]
    MissingShard {
        /// The shard file.
        shard: PathBuf,
        /// A tensor placed there.
        tensor: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A shard whose header is not valid safetensors.
    #[error("{shard}: not a valid safetensors shard: {source}")]
    BadShard {
        /// The shard file.
        shard: PathBuf,
        /// What safetensors found.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A shard shorter than its header says (a cut-off download or copy).
    #[error("{shard}: truncated: tensor `{tensor}` ends at byte {needed} but the file has {len} bytes; download or copy the shard again")]
    Truncated {
        /// The shard file.
        shard: PathBuf,
        /// The first tensor that does not fit.
        tensor: String,
        /// The byte its data ends at.
        needed: u64,
        /// The file's length.
        len: u64,
    },
    /// The same tensor name in two shards.
    #[error("tensor `{tensor}` is in two shards, {first} and {second}; remove one copy")]
    DuplicateTensor {
        /// The tensor.
        tensor: String,
        /// The shard seen first.
        first: PathBuf,
        /// The other shard.
        second: PathBuf,
    },
    /// The index and a shard's header disagree about a tensor.
    #[error("{shard}: tensor `{tensor}`: {detail}; the index and the shard are from different checkpoints")]
    HeaderMismatch {
        /// The shard file.
        shard: PathBuf,
        /// The tensor.
        tensor: String,
        /// What disagrees.
        detail: String,
    },
    /// A tensor's bytes could not be read back (the shard changed or shrank
    /// since it was opened).
    #[error("{shard}: reading tensor `{tensor}`: {source}")]
    Read {
        /// The shard file.
        shard: PathBuf,
        /// The tensor.
        tensor: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
