//! [`NnError`]: what can go wrong when building or running a network.

use std::path::PathBuf;

use thiserror::Error;

/// Errors of the `nn` family (encoder assembly, tokenization, serving).
///
/// Every message names what is wrong and what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NnError {
    /// A tensor the configuration needs is not in the weights.
    #[error("weight tensor `{name}` is missing; the weights do not belong to this config (check config.json and the model file)")]
    MissingTensor {
        /// The Hugging Face tensor name.
        name: String,
    },
    /// A tensor has a shape other than the configuration implies.
    #[error("weight tensor `{name}` has shape {got}, the config implies {expected}; use the config.json that came with these weights")]
    TensorShape {
        /// The tensor name.
        name: String,
        /// Shape the config implies.
        expected: String,
        /// Shape found.
        got: String,
    },
    /// A tensor is stored in a form the network cannot use.
    #[error("weight tensor `{name}` cannot be used: {detail}")]
    TensorForm {
        /// The tensor name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// The configuration is inconsistent or unsupported.
    #[error("invalid model config: `{field}` {detail}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what is supported.
        detail: String,
    },
    /// config.json could not be read or parsed.
    #[error("cannot read model config {path}: {message}; pass the directory holding the model's config.json")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The reader's or parser's message.
        message: String,
    },
    /// tokenizer.json is missing or malformed.
    #[error(
        "cannot load tokenizer {path}: {message}; pass the tokenizer.json that came with the model"
    )]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },
    /// Tokenization failed for one sentence.
    #[error("cannot tokenize sentence {index}: {message}")]
    Encode {
        /// Index of the sentence in the batch.
        index: usize,
        /// The tokenizer library's message.
        message: String,
    },
    /// No sentences were given.
    #[error("the batch is empty; pass at least one sentence")]
    EmptyBatch,
    /// A sentence is empty or only white space.
    #[error("sentence {index} is empty (or only white space); remove it or give it text")]
    EmptySentence {
        /// Index of the sentence in the batch.
        index: usize,
    },
    /// Input bytes are not UTF-8.
    #[error("sentence {index} is not valid UTF-8 (first bad byte at offset {offset}); convert the input to UTF-8")]
    NotUtf8 {
        /// Index of the sentence (line) in the input.
        index: usize,
        /// Byte offset of the first invalid byte within the sentence.
        offset: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} of sequence {sequence} is outside the vocabulary of {vocab}; use the tokenizer that came with the model")]
    TokenId {
        /// Index of the sequence.
        sequence: usize,
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A sequence longer than the model's position table (or empty).
    #[error("sequence {sequence} has {len} tokens; the model takes 1 to {max}: truncate it")]
    SequenceLength {
        /// Index of the sequence.
        sequence: usize,
        /// Its length.
        len: usize,
        /// The longest the model takes.
        max: usize,
    },
    /// SmoothQuant's migration strength is outside `0..=1`.
    #[error("SmoothQuant alpha {alpha} is outside 0..=1 (0.5 is the usual choice)")]
    SmoothingAlpha {
        /// The value given.
        alpha: f32,
    },
    /// SmoothQuant was given no calibration sentences.
    #[error("SmoothQuant needs at least one calibration batch")]
    NoCalibration,
}
