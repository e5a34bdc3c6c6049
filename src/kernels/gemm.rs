//! Dense GEMMs spread over a [`ParallelExecutor`].
//!
//! Each task owns a fixed block of output rows (`BLOCK_ROWS`, whatever the
//! thread count) and computes it with ndarray's GEMM, so every output
//! element is the same sum in the same order on any executor.
//! [`decoded_xwt`] is `x·Wᵀ` for a weight decoded block by block, on the
//! same GEMM.

use ndarray::linalg::general_mat_mul;
use std::sync::Mutex;

use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis};

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

/// Rows of W decoded per task of [`decoded_xwt`] (512 KiB of f32 at 1024
/// columns, 2 MiB at 4096).
const DECODED_W_ROWS: usize = BLOCK_ROWS;

/// `x · Wᵀ` (`x` is `b × n`, the result `b × rows`) for a `rows × n` weight
/// decoded block by block: each task decodes `BLOCK_ROWS` rows of W
/// (`decode(row0, out)` writes whole rows of f32 into `out`) into its own
/// buffer and multiplies the whole batch by them with the dense kernel's
/// GEMM (`matrixmultiply`, packed register tiles over outputs and inputs),
/// so each weight is decoded once per call whatever the batch. Block
/// boundaries depend on the shape only, and the GEMM's per-element order
/// depends on neither the number of rows nor of columns it is given: the
/// result is the same on every executor, its rows do not depend on the
/// batch, and it equals [`dense_matmul`](super::dense_matmul) on the decoded
/// weights bit for bit.
pub(crate) fn decoded_xwt<D>(
    exec: &dyn ParallelExecutor,
    x: ArrayView2<f32>,
    rows: usize,
    decode: D,
) -> Array2<f32>
where
    D: Fn(usize, &mut [f32]) + Sync,
{
    let n = x.ncols();
    let b = x.nrows();
    fill_cols(exec, b, rows, DECODED_W_ROWS, |c0, mut out| {
        let cols = out.ncols();
        let mut buf = vec![0.0f32; cols * n];
        if n > 0 {
            decode(c0, &mut buf);
        }
        let w = ArrayView2::from_shape((cols, n), &buf).expect("whole rows");
        general_mat_mul(1.0, &x, &w.t(), 0.0, &mut out);
    })
}

/// A `rows × cols` matrix (zeros on entry) filled in blocks of `per`
/// columns, one task per block: `f(c0, out)` fills columns `c0..`.
fn fill_cols<F>(
    exec: &dyn ParallelExecutor,
    rows: usize,
    cols: usize,
    per: usize,
    f: F,
) -> Array2<f32>
where
    F: Fn(usize, ArrayViewMut2<f32>) + Sync,
{
    let mut y = Array2::<f32>::zeros((rows, cols));
    let mut blocks = Vec::new();
    let mut v = y.view_mut();
    while v.ncols() > per {
        let (a, b) = v.split_at(Axis(1), per);
        blocks.push(a);
        v = b;
    }
    blocks.push(v);
    let blocks: Vec<Mutex<ArrayViewMut2<f32>>> = blocks.into_iter().map(Mutex::new).collect();
    exec.run(blocks.len(), &|t| {
        let out = &mut *blocks[t].lock().expect("a task panicked");
        f(t * per, out.view_mut());
    });
    y
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
    fn decoded_rows_do_not_depend_on_batch_or_executor() {
        let pool = ThreadPool::new(3).unwrap();
        // 300 outputs span 3 blocks; k = 700 spans several GEMM k-blocks.
        let (w, x) = (matrix(300, 700, 3), matrix(90, 700, 4));
        let decode = |r0: usize, out: &mut [f32]| {
            out.copy_from_slice(
                w.slice(s![r0..r0 + out.len() / 700, ..])
                    .as_slice()
                    .unwrap(),
            )
        };
        let all = decoded_xwt(&Sequential, x.view(), 300, decode);
        close(&all, &naive(x.view(), w.t()));
        assert_eq!(
            all,
            crate::kernels::dense_matmul(w.view(), x.view(), &pool).unwrap()
        );
        assert_eq!(decoded_xwt(&pool, x.view(), 300, decode), all);
        for (r0, b) in [(0, 1), (5, 7), (17, 64), (40, 50)] {
            let part = decoded_xwt(&pool, x.slice(s![r0..r0 + b, ..]), 300, decode);
            assert_eq!(part, all.slice(s![r0..r0 + b, ..]), "rows {r0}..+{b}");
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
