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
    let per = per_task.max(1);
    if batch <= 1 || rows == 0 {
        // `yᵀ` is `y`: the tasks fill it in place.
        let mut y = vec![0.0f32; rows * batch];
        if batch > 0 {
            for_each_chunk_mut(exec, &mut y, per, block);
        }
        return Array2::from_shape_vec((batch, rows), y).expect("sizes match");
    }
    // Each task builds its block of `yᵀ` in a buffer of its thread, kept
    // between calls, and transposes it into its own columns of `y`. (Two
    // fresh buffers of `rows × batch` a call, `yᵀ` and `y`, cost a page
    // fault per 4 KiB once the allocator hands large blocks to `mmap`: a
    // 1536 × 384 dense product at 344 inputs took 3.8 ms against 1.9 ms at
    // 300.)
    let n = rows * batch;
    let mut y: Vec<f32> = Vec::with_capacity(n);
    let out = SharedOut(y.as_mut_ptr());
    exec.run(rows.div_ceil(per), &|t| {
        let (r0, nr) = (t * per, per.min(rows - t * per));
        // Taken out of the thread's slot while in use: a product nested in
        // `block` on this thread gets a buffer of its own.
        let mut yt = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        yt.clear();
        yt.resize(nr * batch, 0.0);
        block(t, &mut yt);
        // SAFETY: `y` has room for `batch · rows` values, and columns
        // `r0..r0 + nr` of its rows are this task's alone.
        unsafe { super::transpose::transpose_to(&yt, (nr, batch), out.at(r0), rows) };
        SCRATCH.with(|s| *s.borrow_mut() = yt);
    });
    // SAFETY: the tasks wrote every column of every row (they cover
    // `0..rows`), and `exec.run` returns once all of them have run.
    unsafe { y.set_len(n) };
    Array2::from_shape_vec((batch, rows), y).expect("sizes match")
}

thread_local! {
    /// [`row_blocks`]' buffer for a task's block of `yᵀ`.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The output of [`row_blocks`], written by every task in its own columns.
struct SharedOut(*mut f32);

// SAFETY: the tasks write disjoint elements (their own columns).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The address of element `i` (a method, so that closures capture the
    /// `Sync` wrapper rather than the pointer).
    fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    /// Every element where its task put it, at batch 1 and above, blocks
    /// that do not divide the rows, on one thread and three; a product
    /// nested in a task (on the same thread) keeps its own buffer.
    #[test]
    fn every_task_writes_its_own_columns() {
        let pool = ThreadPool::new(3).unwrap();
        let value = |i: usize, b: usize| (1000 * i + b) as f32;
        for (rows, batch, per) in [(5, 1, 2), (7, 3, 2), (100, 16, 7), (33, 40, 32), (1, 9, 4)] {
            let want = Array2::from_shape_fn((batch, rows), |(b, i)| value(i, b));
            for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                let y = row_blocks(rows, batch, per, exec, |t, out| {
                    // A nested product on this thread, then this block.
                    let inner = row_blocks(3, 2, 1, &Sequential, |u, o| o.fill(u as f32));
                    assert_eq!(inner.row(1).to_vec(), vec![0.0, 1.0, 2.0]);
                    assert!(out.iter().all(|&v| v == 0.0), "zeros on entry");
                    for (r, o) in out.chunks_mut(batch).enumerate() {
                        for (b, o) in o.iter_mut().enumerate() {
                            *o = value(t * per + r, b);
                        }
                    }
                });
                assert_eq!(y, want, "{rows}x{batch} per {per}");
            }
        }
    }
}
