//! The dense f32 kernel: `y = x · Wᵀ` as one GEMM, or blocks of W's rows
//! as tasks ([`dense_matmul`]), and the dense [`LinOp`] baseline.

use std::sync::Mutex;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis};

use crate::error::{Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::{rows_per_task, ParallelExecutor};

/// `y = x · Wᵀ` for a dense f32 `W`, with `W`'s rows split into blocks that
/// run as tasks on `exec`.
///
/// Block boundaries depend only on the shapes, and each block is the same
/// GEMM (`matrixmultiply`, whose per-element summation order does not depend
/// on how many rows or columns it is given), so the result equals
/// `x.dot(&w.t())` bit for bit on every executor. A one-thread executor runs
/// a single GEMM.
///
/// ```
/// use ndarray::Array2;
/// use squish::kernels::dense_matmul;
/// use squish::parallel::ThreadPool;
/// let w = Array2::from_shape_fn((300, 70), |(i, j)| ((i * 7 + j) % 13) as f32 - 6.0);
/// let x = Array2::from_shape_fn((5, 70), |(b, j)| (b + j) as f32 * 0.01);
/// let y = dense_matmul(w.view(), x.view(), &ThreadPool::new(2)?)?;
/// assert_eq!(y, x.dot(&w.t()));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn dense_matmul(
    w: ArrayView2<f32>,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    if x.ncols() != w.ncols() {
        return Err(SquishError::shape(
            "matmul x·Wᵀ",
            format!("x with {} columns", w.ncols()),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    Ok(dense_matmul_unchecked(w, x, exec))
}

/// [`dense_matmul`] without the shape check (the caller has checked).
pub(crate) fn dense_matmul_unchecked(
    w: ArrayView2<f32>,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let (rows, cols) = w.dim();
    let batch = x.nrows();
    let mut y = Array2::<f32>::zeros((batch, rows));
    if exec.threads() == 1 {
        // One GEMM: the same bits as the blocks below (the per-element order
        // does not depend on n; tested), without re-packing x per block.
        general_mat_mul(1.0, &x, &w.t(), 0.0, &mut y);
        return y;
    }
    // ~2M multiply-adds per task, and at least 128 rows so each GEMM call
    // amortizes packing x.
    let per = rows_per_task(cols * batch.max(1), 1 << 21).max(128);
    let blocks = split_cols_mut(y.view_mut(), per);
    let blocks: Vec<Mutex<ArrayViewMut2<f32>>> = blocks.into_iter().map(Mutex::new).collect();
    exec.run(blocks.len(), &|t| {
        let mut out = blocks[t].lock().expect("a task panicked");
        let r0 = t * per;
        let wb = w.slice(s![r0..r0 + out.ncols(), ..]);
        general_mat_mul(1.0, &x, &wb.t(), 0.0, &mut *out);
    });
    y
}

/// Column blocks of `per` columns (the last may be narrower), left to right.
fn split_cols_mut(mut v: ArrayViewMut2<'_, f32>, per: usize) -> Vec<ArrayViewMut2<'_, f32>> {
    let mut out = Vec::new();
    while v.ncols() > per {
        let (a, b) = v.split_at(Axis(1), per);
        out.push(a);
        v = b;
    }
    out.push(v);
    out
}

/// The dense baseline: `x · Wᵀ` with ndarray's GEMM, split by rows of `W`
/// over `exec` (the same bits as `x.dot(&w.t())` on any executor).
impl LinOp for Array2<f32> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        dense_matmul(self.view(), x, exec)
    }
}
