//! Input checks on dense weight matrices, shared by the kernels and the
//! families.

use ndarray::ArrayView2;

use crate::error::{check_finite, check_non_empty, Result};

/// Checks a matrix is non-empty, finite and small enough to index.
pub(crate) fn check_matrix(what: &'static str, w: ArrayView2<f32>) -> Result<()> {
    let (rows, cols) = w.dim();
    check_non_empty(what, rows, cols)?;
    // A branch-free scan first (it vectorizes); locate the culprit only on failure.
    let finite = match w.as_slice_memory_order() {
        Some(s) => s.iter().fold(true, |ok, v| ok & v.is_finite()),
        None => w.iter().all(|v| v.is_finite()),
    };
    if finite {
        Ok(())
    } else {
        check_finite(what, w.iter())
    }
}
