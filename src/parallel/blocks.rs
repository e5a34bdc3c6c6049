//! [`row_blocks`]: the one scaffold of the matmul kernels, "build yᵀ in fixed
//! blocks of W's rows, then transpose".

use ndarray::Array2;

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
    let yt = Array2::from_shape_vec((rows, batch), yt).expect("sizes match");
    if batch == 1 {
        // One column: the transpose is the same buffer.
        yt.into_shape_with_order((1, rows)).expect("one column")
    } else {
        yt.reversed_axes().as_standard_layout().into_owned()
    }
}
