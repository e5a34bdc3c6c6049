//! [`QuantizedActivations`]: the int8 batch the int8 × int8 kernel reads
//! (made by [`quantize_activations`](crate::quantization::quantize_activations)).

use ndarray::Array2;

/// A batch quantized row by row to symmetric int8: `x[b, k] ≈ codes[b, k]·scales[b]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivations {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) codes: Vec<i8>,
    pub(crate) scales: Vec<f32>,
}

impl QuantizedActivations {
    /// `(batch, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Codes, row-major, in `−127..=127`.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// One scale per row (`max|x_b| / 127`; 0 for an all-zero row).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Codes of row `b`.
    pub fn row(&self, b: usize) -> &[i8] {
        &self.codes[b * self.cols..(b + 1) * self.cols]
    }

    /// The decoded batch.
    pub fn dequantize(&self) -> Array2<f32> {
        Array2::from_shape_fn((self.rows, self.cols), |(b, k)| {
            self.codes[b * self.cols + k] as f32 * self.scales[b]
        })
    }
}
