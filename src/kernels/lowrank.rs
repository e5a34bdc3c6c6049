//! Factored matmul for low rank with dense f32 factors:
//! y = x·Wᵀ = (x·Bᵀ)·Aᵀ, two GEMMs, W never formed.
//!
//! With W `m × n` of rank r this costs r(m + n) multiply-adds per input row
//! instead of mn, so it pays off when r(m + n) < mn. Both GEMMs are written
//! transposed, tᵀ = B·xᵀ then yᵀ = A·tᵀ, so that tasks own contiguous blocks
//! of output rows (fixed size, see [`super::gemm`]), and results do not
//! depend on the executor. Small batches (≤ [`GEMV_MAX_BATCH`] rows) use
//! row dot products instead of a GEMM, which would first copy (pack) the
//! factors.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::gemm::{mul, mul_rows};
use crate::matrix::{CompressedMatrix, LowRank, Structure, Values};
use crate::parallel::ParallelExecutor;

/// Batches up to this size use row dot products (one streaming pass over
/// each factor); larger ones use ndarray's GEMM.
pub const GEMV_MAX_BATCH: usize = 4;

/// A factor's f32 entries as a `rows × cols` view, when it is dense f32.
fn dense_f32(m: &CompressedMatrix) -> Option<ArrayView2<'_, f32>> {
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(v))) => {
            Some(ArrayView2::from_shape(m.shape(), v.data()).expect("dense layout"))
        }
        _ => None,
    }
}

/// True when both factors are dense f32 (this kernel's case).
pub fn supports(lr: &LowRank) -> bool {
    dense_f32(lr.a()).is_some() && dense_f32(lr.b()).is_some()
}

/// `y = (x·Bᵀ)·Aᵀ` for dense f32 factors (input already checked).
///
/// # Panics
/// When a factor is not dense f32; check with [`supports`] first.
pub fn matmul<'a>(
    lr: &LowRank,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let x: ArrayView2<'a, f32> = x.into();
    let a = dense_f32(lr.a()).expect("dense f32 factor A");
    let b = dense_f32(lr.b()).expect("dense f32 factor B");
    let yt = if x.nrows() <= GEMV_MAX_BATCH {
        let tt = mul_rows(exec, b, x); // r × batch
        let t = crate::parallel::transposed(tt.view());
        mul_rows(exec, a, t.view()) // m × batch
    } else {
        let tt = mul(exec, b, x.t());
        mul(exec, a, tt.view())
    };
    crate::parallel::transposed(yt.view())
}
