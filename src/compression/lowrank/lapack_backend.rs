//! LAPACK `?gesdd` (divide and conquer) through ndarray-linalg: the opt-in
//! second exact backend (`--features lapack`, system OpenBLAS).

use ndarray::ArrayView2;
use ndarray_linalg::{JobSvd, SVDDCInto};

use super::{LowRankError, Svd};
use crate::error::Result;

/// Thin SVD of `w` (`min(m, n)` triplets).
pub(crate) fn thin_svd(w: ArrayView2<f32>) -> Result<Svd> {
    let fail = |detail: String| LowRankError::Backend {
        backend: "lapack",
        detail,
    };
    let (u, s, vt) = w
        .as_standard_layout()
        .into_owned()
        .svddc_into(JobSvd::Some)
        .map_err(|e| fail(e.to_string()))?;
    let u = u.ok_or_else(|| fail("gesdd returned no U".into()))?;
    let vt = vt.ok_or_else(|| fail("gesdd returned no Vᵀ".into()))?;
    Ok(Svd::from_parts(
        u.as_standard_layout().into_owned(),
        s,
        vt.as_standard_layout().into_owned(),
    ))
}
