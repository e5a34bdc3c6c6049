//! Deep Compression end to end (Han, Mao & Dally 2016): prune, share
//! weights, Huffman code — on a trained [`Mlp`](crate::training::Mlp), with
//! exact byte accounting at every stage.
//!
//! - [`DeepCompression`]: the three stages (gradual magnitude pruning with
//!   masked fine-tuning, k-means sharing with centroid fine-tuning, Huffman
//!   coding), built from the crate's pruning, sharing and training parts.
//! - [`HuffmanCsr`]: the stored form of a pruned, shared layer: relative
//!   positions and codebook indices, each Huffman coded; lossless.
//! - A CSR × codebook matmul kernel (wired into
//!   [`CompressedMatrix::matmul`](crate::matrix::CompressedMatrix::matmul)),
//!   so the stage-2 model serves without decoding its weights.
//!
//! `examples/deep_compression.rs` reproduces the paper's LeNet-300-100
//! experiment on Fashion-MNIST; docs/results.md holds the numbers.

mod coded;
mod error;
mod pipeline;

pub use coded::{HuffmanCsr, CODED_HEADER_BYTES};
pub use error::DeepError;
pub use pipeline::{dense_bytes, DeepCompression, DeepCompressionOutput, DeepCompressionParams};
