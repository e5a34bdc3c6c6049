//! Dense GEMMs spread over a [`ParallelExecutor`].
//!
//! Each task owns a fixed block of output rows (`BLOCK_ROWS`, whatever the
//! thread count) and computes it with ndarray's GEMM, so every output
//! element is the same sum in the same order on any executor.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};

use crate::parallel::{fill_row_blocks, ParallelExecutor};

/// Output rows per task.
pub(crate) const BLOCK_ROWS: usize = 128;

/// `lhs · rhs` (`lhs` is `m × n`, `rhs` is `n × k`).
pub(crate) fn mul(
    exec: &dyn ParallelExecutor,
    lhs: ArrayView2<f32>,
    rhs: ArrayView2<f32>,
) -> Array2<f32> {
    let (m, k) = (lhs.nrows(), rhs.ncols());
    block_rows(exec, m, k, |r0, r1, mut out| {
        general_mat_mul(1.0, &lhs.slice(s![r0..r1, ..]), &rhs, 0.0, &mut out)
    })
}

/// `lhs · rhsᵀ` by row dot products (`lhs` is `m × n`, `rhs` is `b × n`,
/// both standard layout; the result is `m × b`). For a few right-hand rows
/// this streams `lhs` once, where a GEMM would first pack it.
pub(crate) fn mul_rows(
    exec: &dyn ParallelExecutor,
    lhs: ArrayView2<f32>,
    rhs: ArrayView2<f32>,
) -> Array2<f32> {
    let (lhs, rhs) = (lhs.as_standard_layout(), rhs.as_standard_layout());
    let (m, b) = (lhs.nrows(), rhs.nrows());
    block_rows(exec, m, b, |r0, _, mut out| {
        for (i, mut o) in out.outer_iter_mut().enumerate() {
            let row = lhs.row(r0 + i);
            let row = row.as_slice().expect("standard layout");
            for (o, x) in o.iter_mut().zip(rhs.outer_iter()) {
                *o = dot_lanes(row, x.as_slice().expect("standard layout"));
            }
        }
    })
}

/// Dot product with 16 independent partial sums (so the compiler can keep
/// them in vector registers), combined in a fixed order: the result depends
/// only on the inputs.
#[inline]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += xa[l] * xb[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Builds a `rows × cols` matrix; `f(r0, r1, out)` fills rows `r0..r1`.
fn block_rows<F>(exec: &dyn ParallelExecutor, rows: usize, cols: usize, f: F) -> Array2<f32>
where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    fill_row_blocks(rows, cols, BLOCK_ROWS, exec, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    fn matrix(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 131 + j * 71 + seed * 17) % 97) as f32 - 48.0) / 17.0
        })
    }

    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f64> {
        a.mapv(f64::from).dot(&b.mapv(f64::from))
    }

    fn close(got: &Array2<f32>, want: &Array2<f64>) {
        assert_eq!(got.dim(), want.dim());
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn products_match_naive_f64_on_any_executor() {
        let pool = ThreadPool::new(2).unwrap();
        for (m, n, k) in [(1, 1, 1), (300, 17, 5), (129, 33, 2), (7, 200, 15)] {
            let (a, b) = (matrix(m, n, 1), matrix(n, k, 2));
            let want = naive(a.view(), b.view());
            close(&mul(&Sequential, a.view(), b.view()), &want);
            close(&mul_rows(&Sequential, a.view(), b.t()), &want);
            assert_eq!(
                mul(&pool, a.view(), b.view()),
                mul(&Sequential, a.view(), b.view())
            );
            assert_eq!(
                mul_rows(&pool, a.view(), b.t()),
                mul_rows(&Sequential, a.view(), b.t())
            );
        }
    }

    #[test]
    fn dot_lanes_matches_plain_dot() {
        for len in [0, 1, 15, 16, 17, 47, 64] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot_lanes(&a, &b) as f64 - want).abs() < 1e-5);
        }
    }
}
