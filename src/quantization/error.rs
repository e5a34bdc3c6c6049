//! [`QuantizationError`]: what can go wrong in the quantization family.

use thiserror::Error;

/// Errors of the quantization family, wrapped by
/// [`SquishError::Quantization`](crate::SquishError::Quantization).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum QuantizationError {
    /// A bit width the integer quantizer does not support.
    #[error("integer quantization supports 4 and 8 bits, not {0}; pass 4 or 8 (Binary and Ternary cover 1 and 2 bits)")]
    UnsupportedBits(u8),
    /// A quantization group of zero values.
    #[error(
        "quantization group size 0 holds no weights; pass a group size of at least 1 (e.g. 128)"
    )]
    ZeroGroupSize,
    /// A calibration percentile outside (50, 100].
    #[error(
        "calibration percentile {0} is outside (50, 100]; pass e.g. 99.9 to clip the top 0.1%"
    )]
    PercentileOutOfRange(f32),
    /// MSE calibration that tries no clipping ratio.
    #[error("MSE calibration with 0 steps tries no clipping ratio; pass steps >= 1 (Calibration::mse() uses 64)")]
    ZeroMseSteps,
    /// Weights so large that an int8 × int8 product's sums could leave
    /// f32 before the activation scale brings them back.
    #[error(
        "row {row}'s weights sum to {abs_sum:e} in magnitude: int8 × int8 sums of up to 127 times that would overflow f32; multiply with the weight-only kernels (CompressedMatrix::matmul) instead"
    )]
    ProductOverflow {
        /// The first such row.
        row: usize,
        /// `Σ|w|` over that row.
        abs_sum: f64,
    },
}
