//! The reference kernel: correct for every structure × encoding pair.
//!
//! It decodes one row of W at a time into a small buffer and takes dot
//! products with the batch. Low rank multiplies through its factors,
//! `y = (x·Bᵀ)·Aᵀ`, so W is never formed. Fast kernels are tested against it.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::{CompressedMatrix, Structure};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// `y = x · Wᵀ` (input already checked).
pub fn matmul<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let x: ArrayView2<'a, f32> = x.into();
    if let Structure::LowRank(lr) = m.structure() {
        let t = matmul(lr.b(), x, exec);
        return matmul(lr.a(), t.view(), exec);
    }
    let (rows, cols) = m.shape();
    let batch = x.nrows();
    let x = x.as_standard_layout();
    // yt[i, b] = row i of W · x[b]; tasks own disjoint blocks of W's rows.
    let per_task = rows_per_task(cols, 1 << 16);
    row_blocks(rows, batch, per_task, exec, |t, out| {
        let mut w_row = vec![0.0f32; cols];
        for (r, y) in out.chunks_mut(batch).enumerate() {
            m.decode_row(t * per_task + r, &mut w_row);
            for (b, yb) in y.iter_mut().enumerate() {
                let xb = x.row(b);
                *yb = dot(xb.as_slice().expect("standard layout"), &w_row);
            }
        }
    })
}

/// Plain dot product, accumulated in f32 in index order.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
