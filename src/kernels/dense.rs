//! The dense f32 kernel: `y = x · Wᵀ` with W streamed row by row in blocks
//! of rows as tasks ([`dense_matmul`], on the streaming kernels of `kernels::gemv`), and the
//! dense [`LinOp`] baseline.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::error::{Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::ParallelExecutor;

/// `y = x · Wᵀ` for a dense f32 `W`, with `W`'s rows split into fixed
/// blocks that run as tasks on `exec`.
///
/// W is streamed row by row, never packed (`kernels::gemv`: AVX-512,
/// AVX2 + FMA or portable, picked at run time): at batch 1 it reads W once
/// at memory speed. Each output is one dot product in a fixed order, so the
/// result is bit-identical on every executor and **a row of the result does
/// not depend on the batch it was computed in** (shards and micro-batches
/// give the same bits); it is within round-off of `x.dot(&w.t())`, not
/// equal to it bit for bit.
///
/// ```
/// use ndarray::{s, Array2};
/// use squish::kernels::dense_matmul;
/// use squish::parallel::{Sequential, ThreadPool};
/// let w = Array2::from_shape_fn((300, 70), |(i, j)| ((i * 7 + j) % 13) as f32 - 6.0);
/// let x = Array2::from_shape_fn((5, 70), |(b, j)| (b + j) as f32 * 0.01);
/// let y = dense_matmul(w.view(), x.view(), &ThreadPool::new(2)?)?;
/// assert_eq!(y, dense_matmul(w.view(), x.view(), &Sequential)?);
/// let one = dense_matmul(w.view(), x.slice(s![2..3, ..]), &Sequential)?;
/// assert_eq!(one.row(0), y.row(2));
/// let want = x.dot(&w.t());
/// assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn dense_matmul<'a>(
    w: impl AsArray<'a, f32, Ix2>,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    let w: ArrayView2<'a, f32> = w.into();
    let x: ArrayView2<'a, f32> = x.into();
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
    // Any layout gives the same bits: a strided W is copied first (a packing
    // GEMM would copy it too).
    let w = w.as_standard_layout();
    let ws = w.as_slice().expect("standard layout");
    super::gemv::dense(ws, rows, cols, x, exec, super::Tier::detect())
}

/// The dense baseline: [`dense_matmul`] (W streamed in row blocks over
/// `exec`; the same bits on any executor and at any batch size).
impl LinOp for Array2<f32> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        dense_matmul(self.view(), x, exec)
    }
}
