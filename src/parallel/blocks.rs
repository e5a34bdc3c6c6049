//! [`row_blocks`]: the one scaffold of the matmul kernels, "build yᵀ in fixed
//! blocks of W's rows, then transpose".

use ndarray::{Array2, ArrayViewMut2};

use super::{for_each_chunk_mut, ParallelExecutor};

/// `y` `[batch, rows]` built as `yᵀ` `[rows, batch]` (zeros on entry) in
/// blocks of `per_task` rows, one task per block on `exec`: `block(t, out)`
/// fills rows `t·per_task ..` of `yᵀ`, `out.len() / batch` of them. Block
/// boundaries depend only on `per_task`, and each element is written by one
/// task, so the result does not depend on the executor.
///
/// ```
/// use squish::parallel::{row_blocks, Sequential};
/// // y[b, i] = 10·i + b for 5 rows of W and a batch of 2, two rows per block.
/// let y = row_blocks(5, 2, 2, &Sequential, |t, out| {
///     for (r, yr) in out.chunks_mut(2).enumerate() {
///         for (b, v) in yr.iter_mut().enumerate() {
///             *v = (10 * (t * 2 + r) + b) as f32;
///         }
///     }
/// });
/// assert_eq!(y.row(1).to_vec(), vec![1.0, 11.0, 21.0, 31.0, 41.0]);
/// ```
pub fn row_blocks<F>(
    rows: usize,
    batch: usize,
    per_task: usize,
    exec: &dyn ParallelExecutor,
    block: F,
) -> Array2<f32>
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let mut yt = vec![0.0f32; rows * batch];
    if batch > 0 {
        for_each_chunk_mut(exec, &mut yt, per_task.max(1) * batch, block);
    }
    super::transposed_vec(yt, (rows, batch))
}

/// A `rows × cols` matrix (zeros on entry) filled in blocks of `per_task`
/// rows, one task per block on `exec`: `f(r0, r1, out)` fills rows
/// `r0..r1`. Block boundaries depend only on `per_task`, so the result does
/// not depend on the executor (the GEMMs of the kernels and the SVDs).
pub(crate) fn fill_row_blocks<F>(
    rows: usize,
    cols: usize,
    per_task: usize,
    exec: &dyn ParallelExecutor,
    f: F,
) -> Array2<f32>
where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    let per_task = per_task.max(1);
    let mut data = vec![0.0f32; rows * cols];
    if cols > 0 {
        for_each_chunk_mut(exec, &mut data, per_task * cols, |t, chunk| {
            let r0 = t * per_task;
            let nr = chunk.len() / cols;
            let out = ArrayViewMut2::from_shape((nr, cols), chunk).expect("whole rows");
            f(r0, r0 + nr, out);
        });
    }
    Array2::from_shape_vec((rows, cols), data).expect("sizes match")
}
