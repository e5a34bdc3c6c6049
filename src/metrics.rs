//! Error metrics between a weight matrix and its reconstruction.
//!
//! All sums run in f64 so the metrics are trustworthy for large tensors.

use std::fmt;

use ndarray::{ArrayView2, AsArray, Ix2};

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
    pub fn between<'a>(
        w: impl AsArray<'a, f32, Ix2>,
        w_hat: impl AsArray<'a, f32, Ix2>,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let w_hat: ArrayView2<'a, f32> = w_hat.into();
        if w.dim() != w_hat.dim() {
            return Err(SquishError::shape(
                "error metrics",
                format!("{:?}", w.dim()),
                format!("{:?}", w_hat.dim()),
            ));
        }
        let mut sums = ErrorSums::default();
        for (a, b) in w.rows().into_iter().zip(w_hat.rows()) {
            let (ca, cb);
            let a = match a.as_slice() {
                Some(a) => a,
                None => {
                    ca = a.to_vec();
                    &ca
                }
            };
            let b = match b.as_slice() {
                Some(b) => b,
                None => {
                    cb = b.to_vec();
                    &cb
                }
            };
            sums.add(a, b);
        }
        Ok(sums.metrics())
    }
}

/// The sums behind [`ErrorMetrics`] (Σw², Σ(w − ŵ)², max |w − ŵ|, in f64),
/// fed a row at a time, so a reconstruction can be measured one decoded row
/// at a time instead of as a whole dense matrix.
/// [`ErrorMetrics::between`] feeds it the rows in order: both give the
/// same bits for the same rows.
///
/// ```
/// use ndarray::array;
/// use squish::metrics::{ErrorMetrics, ErrorSums};
/// let (w, w_hat) = (array![[3.0f32, 4.0], [1.0, 0.0]], array![[3.0f32, 3.5], [1.0, 0.5]]);
/// let mut sums = ErrorSums::default();
/// for (a, b) in w.rows().into_iter().zip(w_hat.rows()) {
///     sums.add(a.as_slice().unwrap(), b.as_slice().unwrap());
/// }
/// assert_eq!(sums.signal(), 26.0);
/// assert_eq!(sums.metrics(), ErrorMetrics::between(w.view(), w_hat.view())?);
/// assert!((sums.metrics().rel_frobenius - (0.5f64 / 26.0).sqrt()).abs() < 1e-15);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSums {
    signal: f64,
    noise: f64,
    max_abs: f64,
}

/// Lanes of the partial sums: independent chains the compiler vectorizes.
const LANES: usize = 8;

impl ErrorSums {
    /// Adds a row of W and the same row of Ŵ (equal lengths; extra
    /// elements of the longer are ignored).
    pub fn add(&mut self, w: &[f32], w_hat: &[f32]) {
        let n = w.len().min(w_hat.len());
        let (w, w_hat) = (&w[..n], &w_hat[..n]);
        let (mut s, mut e, mut m) = ([0.0f64; LANES], [0.0f64; LANES], [0.0f64; LANES]);
        let (wc, hc) = (w.chunks_exact(LANES), w_hat.chunks_exact(LANES));
        let (wr, hr) = (wc.remainder(), hc.remainder());
        for (a, b) in wc.zip(hc) {
            for k in 0..LANES {
                let (x, d) = (a[k] as f64, a[k] as f64 - b[k] as f64);
                s[k] += x * x;
                e[k] += d * d;
                // A select, not f64::max (its NaN rule keeps it scalar); inputs are finite.
                m[k] = if d.abs() > m[k] { d.abs() } else { m[k] };
            }
        }
        for (&a, &b) in wr.iter().zip(hr) {
            let (x, d) = (a as f64, a as f64 - b as f64);
            s[0] += x * x;
            e[0] += d * d;
            m[0] = m[0].max(d.abs());
        }
        self.signal += s.iter().sum::<f64>();
        self.noise += e.iter().sum::<f64>();
        self.max_abs = m.iter().fold(self.max_abs, |a, &b| a.max(b));
    }

    /// Σw² so far.
    pub fn signal(&self) -> f64 {
        self.signal
    }

    /// The metrics of the rows added so far.
    pub fn metrics(&self) -> ErrorMetrics {
        let (signal, noise, max_abs) = (self.signal, self.noise, self.max_abs);
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
        ErrorMetrics {
            rel_frobenius,
            max_abs,
            sqnr_db,
        }
    }
}

/// Σx² in f64 (in [`ErrorSums`]' lanes, so it vectorizes): the signal of a
/// weight tensor, for totals over many layers.
///
/// ```
/// assert_eq!(squish::metrics::sum_squares(&[3.0, 4.0, 1.0]), 26.0);
/// ```
pub fn sum_squares(x: &[f32]) -> f64 {
    let mut s = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    for &v in chunks.remainder() {
        s[0] += v as f64 * v as f64;
    }
    for c in chunks {
        for k in 0..LANES {
            s[k] += c[k] as f64 * c[k] as f64;
        }
    }
    s.iter().sum()
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
