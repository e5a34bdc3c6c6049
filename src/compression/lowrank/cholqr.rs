//! Thin QR of a tall f32 matrix by Cholesky QR in f64.
//!
//! Y = Q·R from the Gram matrix YᵀY = RᵀR: Q = Y·R⁻¹ is two products of the
//! tall matrix with a k × k one, split into fixed row blocks on the
//! executor, where a Householder QR of a 2048 × 74 sketch walks 74 panels
//! one after the other (1.6× slower on one thread here, 1.8 vs 2.8 ms,
//! Householder at faer's split included). One pass loses
//! orthogonality as about κ(Y)²·u; in f64 (u ≈ 1e-16, on f32 data) that is
//! below f32 round-off for κ up to ~1e4, and Q's orthogonality is checked,
//! not assumed: when QᵀQ is not within [`ORTHO_TOLERANCE`] of I, a second
//! pass on Q (CholQR2, orthonormal to f64 round-off for κ up to ~1e7,
//! Yamamoto et al. 2015) follows; past that, or for a rank-deficient Y,
//! [`chol_qr`] returns `None` and the caller takes the Householder QR.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_upper_triangular_in_place;
use faer::{Accum, Mat, MatRef, Par};
use faer_ext::IntoFaer;
use ndarray::{s, Array2, ArrayView2};

use crate::parallel::{for_each_chunk_mut, map, ParallelExecutor};

/// Rows of the tall matrix per task (fixed: the same sums on any executor).
const BLOCK_ROWS: usize = 256;

/// Largest entry of |QᵀQ − I| accepted after a pass (f64): far below f32
/// round-off even summed over a row of 100 columns.
const ORTHO_TOLERANCE: f64 = 1e-10;

/// A second pass whose input has |QᵀQ − I| beyond this means κ(Y) is out of
/// CholQR2's reach.
const SECOND_PASS_LIMIT: f64 = 0.5;

/// `Q` (`m × k` orthonormal columns, rounded to f32) and upper-triangular
/// `R` (`k × k`, f64) with `Y = Q·R`, or `None` when `Y` is too
/// ill-conditioned (or not finite) for Cholesky QR. Depends only on `y`,
/// never on the executor.
pub(crate) fn chol_qr(
    exec: &dyn ParallelExecutor,
    y: ArrayView2<f32>,
) -> Option<(Array2<f32>, Mat<f64>)> {
    let (m, k) = y.dim();
    if k == 0 || m < k {
        return None;
    }
    let x = y.mapv(f64::from);
    let g = gram(exec, x.view());
    let r1 = cholesky_r(g)?;
    let q1 = times_inverse(exec, x.view(), r1.as_ref())?;
    let g1 = gram(exec, q1.view());
    let err = distance_to_identity(g1.as_ref());
    if err <= ORTHO_TOLERANCE {
        return Some((q1.mapv(|v| v as f32), r1));
    }
    // (`err` is never NaN: see `distance_to_identity`.)
    if err > SECOND_PASS_LIMIT {
        return None;
    }
    let r2 = cholesky_r(g1)?;
    let q = times_inverse(exec, q1.view(), r2.as_ref())?;
    // R = R₂·R₁ (both upper triangular).
    let mut r = Mat::<f64>::zeros(k, k);
    matmul(
        r.as_mut(),
        Accum::Replace,
        r2.as_ref(),
        r1.as_ref(),
        1.0,
        Par::Seq,
    );
    Some((q.mapv(|v| v as f32), r))
}

/// `xᵀx`: one k × k product per fixed block of rows, summed in block order.
fn gram(exec: &dyn ParallelExecutor, x: ArrayView2<f64>) -> Mat<f64> {
    let (m, k) = x.dim();
    let parts = map(exec, m.div_ceil(BLOCK_ROWS), |b| {
        let xb = x.slice(s![b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(m), ..]);
        let xb = xb.into_faer();
        let mut g = Mat::<f64>::zeros(k, k);
        matmul(
            g.as_mut(),
            Accum::Replace,
            xb.transpose(),
            xb,
            1.0,
            Par::Seq,
        );
        g
    });
    let mut g = Mat::<f64>::zeros(k, k);
    for p in &parts {
        g += p;
    }
    g
}

/// Upper-triangular `R` with `g = RᵀR`, or `None` when `g` is not (numerically)
/// positive definite.
fn cholesky_r(mut g: Mat<f64>) -> Option<Mat<f64>> {
    let k = g.nrows();
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
        k,
        Par::Seq,
        Default::default(),
    ));
    cholesky_in_place(
        g.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    // faer leaves the strict upper triangle as it was: R = Lᵀ from the lower one.
    let r = Mat::from_fn(k, k, |i, j| if i <= j { g[(j, i)] } else { 0.0 });
    (0..k)
        .all(|i| r[(i, i)].is_finite() && r[(i, i)] > 0.0)
        .then_some(r)
}

/// `x·R⁻¹` (R upper triangular), in fixed row blocks on `exec`; `None` if
/// it is not finite.
fn times_inverse(
    exec: &dyn ParallelExecutor,
    x: ArrayView2<f64>,
    r: MatRef<'_, f64>,
) -> Option<Array2<f64>> {
    let (m, k) = x.dim();
    let mut inv = Mat::<f64>::identity(k, k);
    solve_upper_triangular_in_place(r, inv.as_mut(), Par::Seq);
    let mut out = vec![0.0f64; m * k];
    for_each_chunk_mut(exec, &mut out, BLOCK_ROWS * k, |b, chunk| {
        let r0 = b * BLOCK_ROWS;
        let rows = chunk.len() / k;
        let dst = faer::MatMut::from_row_major_slice_mut(chunk, rows, k);
        let xb = x.slice(s![r0..r0 + rows, ..]);
        matmul(
            dst,
            Accum::Replace,
            xb.into_faer(),
            inv.as_ref(),
            1.0,
            Par::Seq,
        );
    });
    out.iter()
        .all(|v| v.is_finite())
        .then(|| Array2::from_shape_vec((m, k), out).expect("sizes match"))
}

/// max |g − I| (NaN-safe: NaN counts as infinitely far).
fn distance_to_identity(g: MatRef<'_, f64>) -> f64 {
    let mut worst = 0.0f64;
    for j in 0..g.ncols() {
        for i in 0..g.nrows() {
            let d = (g[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs();
            worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    fn orthonormality_error(q: &Array2<f32>) -> f64 {
        let q = q.mapv(f64::from);
        distance_to_identity(q.t().dot(&q).view().into_faer())
    }

    /// A 600 × 12 matrix with singular values falling geometrically from 1
    /// to about 1 / `ratio`.
    fn graded(ratio: f64) -> Array2<f32> {
        let (m, k) = (600, 12);
        Array2::from_shape_fn((m, k), |(i, j)| {
            let s = ratio.powf(-(j as f64) / (k - 1) as f64);
            let v = ((i * 31 + j * 17) % 23) as f64 - 11.0 + if i % k == j { 40.0 } else { 0.0 };
            (v * s) as f32
        })
    }

    #[test]
    fn reproduces_y_with_orthonormal_q_on_any_executor() {
        let pool = ThreadPool::new(3).unwrap();
        // 1: one pass; 1e5: κ² u past the tolerance, so two passes.
        for ratio in [1.0, 1e5] {
            let y = graded(ratio);
            let (q, r) = chol_qr(&Sequential, y.view()).expect("well within reach");
            assert_eq!(chol_qr(&pool, y.view()).unwrap(), (q.clone(), r.clone()));
            assert!(orthonormality_error(&q) < 1e-6, "ratio {ratio}");
            let (m, k) = y.dim();
            let scale = y.iter().fold(0.0f64, |a, &v| a.max(v.abs() as f64));
            for i in 0..m {
                for j in 0..k {
                    let qr: f64 = (0..k).map(|l| q[[i, l]] as f64 * r[(l, j)]).sum();
                    assert!((qr - y[[i, j]] as f64).abs() <= 1e-5 * scale);
                }
            }
            for j in 0..k {
                for i in j + 1..k {
                    assert_eq!(r[(i, j)], 0.0);
                }
            }
        }
    }

    #[test]
    fn declines_rank_deficient_and_non_finite() {
        let mut y = graded(1.0);
        let c = y.column(0).to_owned();
        y.column_mut(3).assign(&c);
        assert!(chol_qr(&Sequential, y.view()).is_none());
        assert!(chol_qr(&Sequential, Array2::<f32>::zeros((20, 4)).view()).is_none());
        let mut y = graded(1.0);
        y[[5, 2]] = f32::NAN;
        assert!(chol_qr(&Sequential, y.view()).is_none());
        assert!(chol_qr(&Sequential, Array2::<f32>::ones((3, 4)).view()).is_none());
    }
}
