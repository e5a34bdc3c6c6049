//! The forward half of the straight-through estimator: `Q(W)` decoded to f32.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::Quantizer;
use crate::error::Result;
use crate::matrix::CompressedMatrix;

/// `W` through `quantizer` and back to f32 (`Q(W)`, "fake quantization"): the
/// weights a quantization-aware step runs forward and backward on, while the
/// gradient updates the latent f32 `W` as if `∂Q(W)/∂W = 1` (the
/// straight-through estimator, Bengio et al. 2013). The training engine
/// applies it layer by layer ([`StraightThrough`](crate::training::StraightThrough)).
///
/// ```
/// use ndarray::array;
/// use squish::quantization::{fake_quantize, Binary};
/// let w = array![[0.5f32, -1.5], [2.0, -1.0]];
/// let q = fake_quantize(w.view(), &Binary)?;
/// // Binary: sign(w) times the row's mean |w| (1.0 and 1.5).
/// assert_eq!(q, array![[1.0f32, -1.0], [1.5, -1.5]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn fake_quantize<'a>(
    w: impl AsArray<'a, f32, Ix2>,
    quantizer: &dyn Quantizer,
) -> Result<Array2<f32>> {
    let w: ArrayView2<'a, f32> = w.into();
    Ok(quantizer
        .quantize(&CompressedMatrix::from_dense(w)?)?
        .to_dense())
}
