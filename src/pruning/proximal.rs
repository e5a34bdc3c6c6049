//! Pruning by regularization: the proximal operators of the L1 and group-lasso
//! penalties, and the masks of what they drove to zero. The training engine
//! applies them to a network ([`Regularizer`](crate::training::Regularizer)).

use ndarray::{Array2, ArrayView2, ArrayViewMut2, AsArray, Ix2};

/// `w ← sign(w)·max(|w| − τ, 0)`: the proximal operator of `τ‖w‖₁`.
///
/// ```
/// use ndarray::array;
/// use squish::pruning::soft_threshold;
/// let mut w = array![[0.5f32, -0.05, -2.0]];
/// soft_threshold(w.view_mut(), 0.1);
/// assert_eq!(w, array![[0.4f32, 0.0, -1.9]]);
/// ```
pub fn soft_threshold(mut w: ArrayViewMut2<f32>, tau: f32) {
    w.mapv_inplace(|v| {
        let m = v.abs() - tau;
        if m > 0.0 {
            m.copysign(v)
        } else {
            0.0
        }
    });
}

/// `W_r ← W_r·max(0, 1 − τ/‖W_r‖₂)` for every row: the proximal operator of
/// `τ·Σ_r ‖W_r‖₂`. Rows with norm ≤ τ become exactly zero.
pub fn group_soft_threshold_rows(mut w: ArrayViewMut2<f32>, tau: f64) {
    for mut r in w.outer_iter_mut() {
        let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let s = if norm > tau { 1.0 - tau / norm } else { 0.0 };
        r.mapv_inplace(|v| (v as f64 * s) as f32);
    }
}

/// Keep-mask of the weights with `|w| > tol` (what a regularizer did not
/// drive to zero).
pub fn near_zero_mask<'a>(w: impl AsArray<'a, f32, Ix2>, tol: f32) -> Array2<bool> {
    let w: ArrayView2<'a, f32> = w.into();
    w.mapv(|v| v.abs() > tol)
}

/// The rows whose largest `|w|` exceeds `tol`, increasing (the rows to keep
/// after group lasso, ready for
/// [`CompressedMatrix::kept_rows`](crate::matrix::CompressedMatrix::kept_rows)).
pub fn surviving_rows<'a>(w: impl AsArray<'a, f32, Ix2>, tol: f32) -> Vec<u32> {
    let w: ArrayView2<'a, f32> = w.into();
    w.outer_iter()
        .enumerate()
        .filter(|(_, r)| r.iter().any(|v| v.abs() > tol))
        .map(|(i, _)| i as u32)
        .collect()
}
