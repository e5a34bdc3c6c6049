//! Binary (sign × α) and ternary ({−α, 0, +α}) quantizers.

use super::Quantizer;
use crate::error::Result;
use crate::kernels::quant::binary::mean_abs;
use crate::matrix::{F32Values, PackedBits, Values, TERNARY_MINUS, TERNARY_PLUS, TERNARY_ZERO};

/// Binary weights: `α·sign(w)` with `α = mean|w|` per row, the scale that
/// minimizes ‖w − α·sign(w)‖ (XNOR-Net). `sign(0) = +1`; an empty row gets α = 0.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::quantization::{Binary, Quantizer};
/// let w = array![[0.5f32, -1.5, 1.0]];
/// let m = Binary.quantize(&CompressedMatrix::from_dense(w.view()).unwrap()).unwrap();
/// assert_eq!(m.to_dense(), array![[1.0f32, -1.0, 1.0]]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binary;

impl Quantizer for Binary {
    fn name(&self) -> String {
        "binary".into()
    }

    fn quantize_values(&self, values: &F32Values) -> Result<Values> {
        let layout = values.layout.clone();
        let data = values.data();
        let signs: Vec<u16> = data.iter().map(|&w| u16::from(w >= 0.0)).collect();
        let scales = (0..layout.rows())
            .map(|i| mean_abs(&data[layout.range(i)]))
            .collect();
        Values::binary(layout, PackedBits::pack(1, &signs)?, scales)
    }
}

/// Ternary weights (Ternary Weight Networks): per row, threshold
/// `Δ = 0.7·mean|w|`; values with `|w| > Δ` become `±α` with `α` the mean of
/// their magnitudes, the rest 0. Stored at 2 bits a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ternary;

impl Quantizer for Ternary {
    fn name(&self) -> String {
        "ternary".into()
    }

    fn quantize_values(&self, values: &F32Values) -> Result<Values> {
        let layout = values.layout.clone();
        let data = values.data();
        let mut codes = vec![TERNARY_ZERO; data.len()];
        let mut scales = Vec::with_capacity(layout.rows());
        for i in 0..layout.rows() {
            let r = layout.range(i);
            let delta = 0.7 * mean_abs(&data[r.clone()]);
            let (mut sum, mut count) = (0.0f64, 0usize);
            for k in r {
                let w = data[k];
                if w.abs() > delta {
                    codes[k] = if w > 0.0 { TERNARY_PLUS } else { TERNARY_MINUS };
                    sum += w.abs() as f64;
                    count += 1;
                }
            }
            scales.push(if count == 0 {
                0.0
            } else {
                (sum / count as f64) as f32
            });
        }
        Values::ternary(layout, PackedBits::pack(2, &codes)?, scales)
    }
}
