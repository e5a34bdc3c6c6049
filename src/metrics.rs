//! Error metrics between a weight matrix and its reconstruction.
//!
//! All sums run in f64 so the metrics are trustworthy for large tensors.

use std::fmt;

use ndarray::ArrayView2;

use crate::error::{Result, SquishError};

/// How far a reconstruction Ŵ is from W.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorMetrics {
    /// ‖W − Ŵ‖_F / ‖W‖_F (0 when both are zero).
    pub rel_frobenius: f64,
    /// max |W − Ŵ|.
    pub max_abs: f64,
    /// Signal-to-quantization-noise ratio, 10·log10(‖W‖² / ‖W − Ŵ‖²) in dB
    /// (+∞ for an exact reconstruction).
    pub sqnr_db: f64,
}

impl ErrorMetrics {
    /// Compares `w` with its reconstruction `w_hat` (same shape).
    ///
    /// ```
    /// use ndarray::array;
    /// use squish::metrics::ErrorMetrics;
    /// let w = array![[3.0f32, 4.0]];
    /// let e = ErrorMetrics::between(w.view(), array![[3.0f32, 3.5]].view()).unwrap();
    /// assert!((e.rel_frobenius - 0.1).abs() < 1e-12);
    /// assert_eq!(e.max_abs, 0.5);
    /// assert!((e.sqnr_db - 20.0).abs() < 1e-9);
    /// ```
    pub fn between(w: ArrayView2<f32>, w_hat: ArrayView2<f32>) -> Result<Self> {
        if w.dim() != w_hat.dim() {
            return Err(SquishError::shape(
                "error metrics",
                format!("{:?}", w.dim()),
                format!("{:?}", w_hat.dim()),
            ));
        }
        let (mut signal, mut noise, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in w.iter().zip(w_hat.iter()) {
            let (a, b) = (a as f64, b as f64);
            signal += a * a;
            noise += (a - b) * (a - b);
            max_abs = max_abs.max((a - b).abs());
        }
        let rel_frobenius = if signal == 0.0 {
            if noise == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (noise / signal).sqrt()
        };
        let sqnr_db = if noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (signal / noise).log10()
        };
        Ok(ErrorMetrics {
            rel_frobenius,
            max_abs,
            sqnr_db,
        })
    }
}

impl fmt::Display for ErrorMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rel.err {:.3e}, max abs {:.3e}, SQNR {:.1} dB",
            self.rel_frobenius, self.max_abs, self.sqnr_db
        )
    }
}
