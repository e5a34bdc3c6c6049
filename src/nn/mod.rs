//! Serving a transformer from compressed weights: building blocks over
//! [`LinOp`](crate::matrix::LinOp) and a BERT-family sentence encoder.
//!
//! - Blocks: [`Linear`] (a dense or any compressed weight plus an f32 bias),
//!   [`Embedding`], [`LayerNorm`], [`gelu`] (the erf form), multi-head
//!   self-attention ([`attend`], [`SelfAttention`]) over packed sequences.
//! - [`BertEncoder`]: assembled from a Hugging Face `config.json` and tensors
//!   by their Hugging Face names, from a safetensors model or a squish
//!   container whose compressed matrices stay compressed.
//! - [`SentenceEncoder`]: tokenization ([`SentenceTokenizer`], the
//!   `tokenizers` crate), length-sorted batches packed end to end without
//!   padding ([`TokenBatch`]), mean pooling and L2 normalisation.
//!
//! Every step splits its work at boundaries fixed by the shapes, so results
//! are bit-identical on every executor. See `docs/serving.md`.
//!
//! ```no_run
//! use squish::nn::SentenceEncoder;
//! use squish::parallel::ThreadPool;
//! let enc = SentenceEncoder::load_dir("all-MiniLM-L6-v2")?;
//! let e = enc.embed(&["A cat sat.", "A dog stood."], &ThreadPool::new(2)?)?;
//! println!("cosine {}", e.row(0).dot(&e.row(1)));
//! # Ok::<(), squish::SquishError>(())
//! ```

mod attention;
mod batch;
mod bert;
mod embedding;
mod error;
mod fidelity;
mod forms;
pub mod gemm;
mod layer_norm;
mod linear;
pub(crate) mod math;
mod pooling;
mod serve;
mod smooth;
mod tokenize;

pub use attention::{attend, SelfAttention};
pub use batch::TokenBatch;
pub use bert::{BertConfig, BertEncoder, BertLayer, Weights};
pub use embedding::Embedding;
pub use error::NnError;
pub use fidelity::{fidelity, Fidelity};
pub use forms::{EncoderForm, FORMS};
pub use layer_norm::LayerNorm;
pub use linear::{Activations, Linear, Weight};
pub use math::{gelu, gelu_in_place};
pub use pooling::mean_pool_normalize;
pub use serve::SentenceEncoder;
pub use smooth::{SmoothQuant, SmoothQuantParams, INPUT_SCALE};
pub use tokenize::{sentences_from_bytes, SentenceTokenizer, DEFAULT_MAX_TOKENS};
