//! Softmax, cross-entropy and squared error, with their gradients.

use ndarray::{Array2, ArrayView2, AsArray, Axis, Ix2};

use super::Scalar;
use super::TrainingError;
use crate::error::{check_non_empty, Result, SquishError};

/// Row-wise softmax of `z / temperature`, computed stably (max subtracted).
pub fn softmax<'a, F: Scalar>(z: impl AsArray<'a, F, Ix2>, temperature: F) -> Array2<F> {
    let z: ArrayView2<'a, F> = z.into();
    let mut out = z.mapv(|v| v / temperature);
    for mut row in out.axis_iter_mut(Axis(0)) {
        let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s: F = row.iter().copied().sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}

/// Row-wise log-softmax of `z / temperature`.
pub fn log_softmax<'a, F: Scalar>(z: impl AsArray<'a, F, Ix2>, temperature: F) -> Array2<F> {
    let z: ArrayView2<'a, F> = z.into();
    let mut out = z.mapv(|v| v / temperature);
    for mut row in out.axis_iter_mut(Axis(0)) {
        let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<F>().ln();
        row.mapv_inplace(|v| v - lse);
    }
    out
}

/// [`accuracy`] of `logits` on `labels`, one label per logit row.
pub(crate) fn checked_accuracy<F: Scalar>(logits: ArrayView2<F>, labels: &[usize]) -> Result<f64> {
    if labels.len() != logits.nrows() {
        return Err(SquishError::shape(
            "labels",
            format!("{}", logits.nrows()),
            format!("{}", labels.len()),
        ));
    }
    Ok(accuracy(logits, labels))
}

/// Checks `[batch, classes]` logits against one label per row.
pub(crate) fn check_labels<F: Scalar>(logits: ArrayView2<F>, labels: &[usize]) -> Result<()> {
    check_non_empty("logits", logits.nrows(), logits.ncols())?;
    if labels.len() != logits.nrows() {
        return Err(SquishError::shape(
            "labels",
            format!("{} labels (one per logit row)", logits.nrows()),
            format!("{}", labels.len()),
        ));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= logits.ncols()) {
        return Err(TrainingError::Label {
            label: l,
            classes: logits.ncols(),
        }
        .into());
    }
    if let Some((index, v)) = logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SquishError::NonFinite {
            what: "logits",
            index,
            value: v.to_f32().unwrap_or(f32::NAN),
        });
    }
    Ok(())
}

/// Mean softmax cross-entropy over the batch and its gradient
/// `(softmax(z) − onehot(y)) / batch` with respect to the logits.
///
/// ```
/// use ndarray::array;
/// use squish::training::softmax_cross_entropy;
/// let (loss, g) = softmax_cross_entropy(array![[0.0f64, 0.0]].view(), &[1]).unwrap();
/// assert!((loss - 2f64.ln()).abs() < 1e-12);
/// assert_eq!(g, array![[0.5, -0.5]]);
/// ```
pub fn softmax_cross_entropy<'a, F: Scalar>(
    logits: impl AsArray<'a, F, Ix2>,
    labels: &[usize],
) -> Result<(f64, Array2<F>)> {
    let logits: ArrayView2<'a, F> = logits.into();
    check_labels(logits, labels)?;
    let batch = F::of(logits.nrows() as f64);
    let logp = log_softmax(logits, F::one());
    let loss = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| -logp[[i, l]].f64())
        .sum::<f64>()
        / logits.nrows() as f64;
    let mut grad = logp.mapv(|v| v.exp());
    for (i, &l) in labels.iter().enumerate() {
        grad[[i, l]] -= F::one();
    }
    grad.mapv_inplace(|v| v / batch);
    Ok((loss, grad))
}

/// `½·mean over rows of ‖a − b‖²` and its gradient `(a − b) / batch` with
/// respect to `a`.
pub fn half_squared_error<'a, F: Scalar>(
    a: impl AsArray<'a, F, Ix2>,
    b: impl AsArray<'a, F, Ix2>,
) -> Result<(f64, Array2<F>)> {
    let a: ArrayView2<'a, F> = a.into();
    let b: ArrayView2<'a, F> = b.into();
    if a.dim() != b.dim() {
        return Err(SquishError::shape(
            "squared error",
            format!("{:?}", a.dim()),
            format!("{:?}", b.dim()),
        ));
    }
    check_non_empty("squared error input", a.nrows(), a.ncols())?;
    let diff = &a - &b;
    let loss = 0.5 * diff.iter().map(|v| v.f64() * v.f64()).sum::<f64>() / a.nrows() as f64;
    let batch = F::of(a.nrows() as f64);
    Ok((loss, diff.mapv(|v| v / batch)))
}

/// Index of the largest logit of each row (the first on ties).
pub fn argmax_rows<'a, F: Scalar>(logits: impl AsArray<'a, F, Ix2>) -> Vec<usize> {
    let logits: ArrayView2<'a, F> = logits.into();
    logits
        .outer_iter()
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows whose largest logit is the label.
pub fn accuracy<'a, F: Scalar>(logits: impl AsArray<'a, F, Ix2>, labels: &[usize]) -> f64 {
    let logits: ArrayView2<'a, F> = logits.into();
    let pred = argmax_rows(logits);
    let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    hits as f64 / labels.len().max(1) as f64
}
