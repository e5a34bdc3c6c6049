//! [`DeepError`]: what can go wrong in the deep-compression family.

use thiserror::Error;

/// Errors of deep compression (prune, share, Huffman-code), wrapped by
/// [`SquishError::Deep`](crate::SquishError::Deep).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeepError {
    /// The per-layer lists are empty or of different lengths.
    #[error("{densities} densities and {bits} bit widths given; give one density and one bit width per layer")]
    LayerCount {
        /// Densities given.
        densities: usize,
        /// Bit widths given.
        bits: usize,
    },
    /// A density outside (0, 1].
    #[error("density {0} is outside (0, 1]; pass the fraction of weights kept, e.g. 0.1")]
    Density(f64),
    /// An index width outside 1..=16 bits.
    #[error("codebook index width {0} is outside 1..=16 bits; pass e.g. 5 (32 centroids)")]
    IndexBits(u8),
    /// A count that must be at least 1 is 0.
    #[error("{0} is 0; pass at least 1")]
    Zero(&'static str),
    /// A learning rate that is not finite and positive.
    #[error("{name} = {value} must be finite and positive; pass e.g. 0.01")]
    LearningRate {
        /// Which learning rate.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A relative-index span outside 1..=65535.
    #[error("relative-index span {0} is outside 1..=65535; pass e.g. 8 (3-bit gaps), or use HuffmanCsr::encode to pick it")]
    Span(u32),
}
