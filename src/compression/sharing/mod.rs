//! Weight sharing: k shared values (a codebook) and a small index per weight.
//!
//! Deep Compression (Han et al. 2016) cut weights from 32 to about 5 bits
//! with weight sharing after pruning, then Huffman-coded the indices. This
//! module provides every step, done for scalars:
//!
//! - [`Histogram`]: sort once (radix sort), merge equal values with their
//!   counts or importances, prefix sums — every cluster cost is then O(1).
//! - [`lloyd`]: Lloyd's algorithm with binary-search assignment and
//!   prefix-sum updates, O(k log n) an iteration; [`Init`]: coarse (the
//!   default: the exact optimum of a 4096-point summary), companding
//!   (centroid density ∝ p^(1/3)), linear, density, seeded k-means++.
//! - [`optimal()`]: the exact optimum by dynamic programming (Ckmeans.1d.dp,
//!   Wang & Song 2011), run only where a coarse lower bound lets an optimal
//!   split lie; each layer solved by divide and conquer or SMAWK ([`DpLayer`]).
//! - [`KMeans`]: the checked builder and the codebook [`Quantizer`](crate::quantization::Quantizer)
//!   (per-tensor or per-row codebooks, k = 2..=65536, weighted).
//! - [`codebook_matmul`]: `x·Wᵀ` straight from the indices (wired into
//!   [`CompressedMatrix::matmul`](crate::matrix::CompressedMatrix::matmul)).
//! - [`HuffmanCode`], [`HuffmanMatrix`]: canonical Huffman coding of the
//!   index stream with exact storage accounting; [`column_gaps`] for sparse
//!   relative indices.

mod bounded;
mod clustering;
mod entropy;
mod error;
mod finetune;
mod histogram;
mod huffman;
mod init;
mod kmeans;
mod lloyd;
mod optimal;

pub use crate::kernels::codebook::{codebook_matmul, CodebookKernel};
pub use clustering::Clustering;
pub use entropy::{HuffmanCodebook, HuffmanMatrix};
pub use error::SharingError;
pub use finetune::{centroid_gradients, decode_with_centroids, with_centroids};
pub use histogram::Histogram;
pub use huffman::{
    column_gaps, columns_from_gaps, entropy_bits, symbol_counts, BitStream, HuffmanCode,
    MAX_CODE_LEN,
};
pub use init::{Init, COARSE_POINTS, COMPANDING_BINS};
pub use kmeans::{KMeans, KMeansParams, Method, DEFAULT_DP_MEMORY};
pub use lloyd::lloyd;
#[allow(deprecated)]
pub use optimal::{optimal, optimal_with, optimal_with_layer, DpLayer};
