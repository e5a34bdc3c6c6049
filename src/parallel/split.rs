//! Model parallelism inside one weight matrix: split `W` by output rows
//! ([`RowSplit`]) or by input columns ([`ColSplit`]), one part per worker.
//!
//! Also the deterministic row-split dense kernel ([`dense_matmul`]) that the
//! dense f32 paths of the crate use.

use std::ops::Range;
use std::sync::Mutex;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis};

use super::{for_each_chunk_mut, map, rows_per_task, ParallelExecutor, Sequential};
use crate::error::{Result, SquishError};
use crate::matrix::LinOp;

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
/// use squish::parallel::{dense_matmul, ThreadPool};
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

/// Even boundaries of `n` items into `parts` parts: part `i` is
/// `i·n/parts .. (i+1)·n/parts`.
pub fn even_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts)
        .map(|i| i * n / parts..(i + 1) * n / parts)
        .collect()
}

fn check_parts(name: &'static str, parts: usize, n: usize) -> Result<()> {
    if parts == 0 || parts > n {
        return Err(SquishError::invalid(
            name,
            parts,
            format!("needs 1 ..= {n} parts (one or more rows or columns each)"),
        ));
    }
    Ok(())
}

fn check_x(op: &'static str, x: ArrayView2<f32>, cols: usize) -> Result<()> {
    if x.ncols() != cols {
        return Err(SquishError::shape(
            op,
            format!("x with {cols} columns"),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    crate::error::check_non_empty("matmul input", x.nrows(), x.ncols())
}

type Build<'a, B> = &'a (dyn Fn(Range<usize>, ArrayView2<f32>) -> Result<B> + Sync);

/// `W` split by output rows: part `i` owns rows `rᵢ..rᵢ₊₁` of `W` (in any
/// [`LinOp`] form) and computes columns `rᵢ..rᵢ₊₁` of `y`; the parts are
/// concatenated.
///
/// Every output element is computed by exactly one part, so the result equals
/// the unsplit matrix's bit for bit when each part holds the same rows in the
/// same encoding (per-row quantization, a global pruning mask sliced by rows),
/// on any executor.
///
/// ```
/// use ndarray::Array2;
/// use squish::matrix::CompressedMatrix;
/// use squish::parallel::{RowSplit, ThreadPool};
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 32), |(i, j)| ((i * 5 + j * 3) % 17) as f32 - 8.0);
/// let q = IntQuantizer::params(8).per_row().check()?;
/// let whole = q.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let split = RowSplit::from_dense(w.view(), 4, &|_rows, block| {
///     q.quantize(&CompressedMatrix::from_dense(block)?)
/// }, &Sequential)?;
/// let x = Array2::from_shape_fn((3, 32), |(b, j)| (b * 32 + j) as f32 * 0.01);
/// assert_eq!(split.apply(x.view(), &ThreadPool::new(2)?)?, whole.matmul(x.view())?);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub struct RowSplit {
    parts: Vec<Box<dyn LinOp>>,
    starts: Vec<usize>,
    rows: usize,
    cols: usize,
}

impl RowSplit {
    /// Stacks `parts` by rows; they must all take the same number of inputs.
    pub fn new(parts: Vec<Box<dyn LinOp>>) -> Result<Self> {
        let (starts, rows, cols) = stack(&parts, Stacking::Rows)?;
        Ok(RowSplit {
            parts,
            starts,
            rows,
            cols,
        })
    }

    /// Splits dense `w` into `parts` even row blocks and turns each into a
    /// part with `build(rows, block)` (e.g. a compression pipeline), one task
    /// per block on `exec`.
    pub fn from_dense<B: LinOp + 'static>(
        w: ArrayView2<f32>,
        parts: usize,
        build: Build<'_, B>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Self> {
        check_parts("row parts", parts, w.nrows())?;
        let ranges = even_ranges(w.nrows(), parts);
        let built = map(exec, parts, |i| {
            build(ranges[i].clone(), w.slice(s![ranges[i].clone(), ..]))
                .map(|b| Box::new(b) as Box<dyn LinOp>)
        });
        Self::new(built.into_iter().collect::<Result<_>>()?)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
}

impl LinOp for RowSplit {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// One task per part (each on one thread); an error is the first failing
    /// part's, in part order.
    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        check_x("row split x·Wᵀ", x, self.cols)?;
        let outs = map(exec, self.parts.len(), |i| {
            self.parts[i].apply(x, &Sequential)
        });
        let mut y = Array2::zeros((x.nrows(), self.rows));
        for (i, o) in outs.into_iter().enumerate() {
            let o = o?;
            let r0 = self.starts[i];
            y.slice_mut(s![.., r0..r0 + o.ncols()]).assign(&o);
        }
        Ok(y)
    }
}

/// `W` split by input columns: part `i` owns columns `cᵢ..cᵢ₊₁` of `W` and
/// computes the partial product `x[:, cᵢ..cᵢ₊₁] · Wᵢᵀ`; the partials are
/// summed in part order, `((p₀ + p₁) + p₂) + …`, for every output element.
///
/// The summation order is fixed by the parts, not the threads, so the result
/// is bit-identical on every executor (it differs from the unsplit product
/// only by float rounding, since the sum over the inputs is regrouped).
///
/// ```
/// use ndarray::Array2;
/// use squish::parallel::{ColSplit, Sequential, ThreadPool};
/// use squish::matrix::LinOp;
/// let w = Array2::from_shape_fn((16, 40), |(i, j)| ((i * 3 + j) % 7) as f32 - 3.0);
/// let split = ColSplit::from_dense(w.view(), 3, &|_cols, block| Ok(block.to_owned()), &Sequential)?;
/// let x = Array2::from_shape_fn((2, 40), |(b, j)| (b + j) as f32);
/// let y = split.apply(x.view(), &ThreadPool::new(2)?)?;
/// assert_eq!(y, split.apply(x.view(), &Sequential)?);
/// assert_eq!(y, x.dot(&w.t())); // small integers: exact in any order
/// # Ok::<(), squish::SquishError>(())
/// ```
pub struct ColSplit {
    parts: Vec<Box<dyn LinOp>>,
    starts: Vec<usize>,
    rows: usize,
    cols: usize,
}

impl ColSplit {
    /// Joins `parts` side by side; they must all have the same number of
    /// outputs.
    pub fn new(parts: Vec<Box<dyn LinOp>>) -> Result<Self> {
        let (starts, cols, rows) = stack(&parts, Stacking::Cols)?;
        Ok(ColSplit {
            parts,
            starts,
            rows,
            cols,
        })
    }

    /// Splits dense `w` into `parts` even column blocks and turns each into a
    /// part with `build(cols, block)`, one task per block on `exec`.
    pub fn from_dense<B: LinOp + 'static>(
        w: ArrayView2<f32>,
        parts: usize,
        build: Build<'_, B>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Self> {
        check_parts("column parts", parts, w.ncols())?;
        let ranges = even_ranges(w.ncols(), parts);
        let built = map(exec, parts, |i| {
            build(ranges[i].clone(), w.slice(s![.., ranges[i].clone()]))
                .map(|b| Box::new(b) as Box<dyn LinOp>)
        });
        Self::new(built.into_iter().collect::<Result<_>>()?)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
}

impl LinOp for ColSplit {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// One task per part for the partial products, then the fixed-order sum
    /// in chunks of the output; an error is the first failing part's.
    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        check_x("column split x·Wᵀ", x, self.cols)?;
        let partials = map(exec, self.parts.len(), |i| {
            let c0 = self.starts[i];
            let c1 = c0 + self.parts[i].shape().1;
            self.parts[i]
                .apply(x.slice(s![.., c0..c1]), &Sequential)
                .map(|p| p.as_standard_layout().into_owned())
        });
        let mut partials = partials.into_iter().collect::<Result<Vec<_>>>()?;
        let mut y = partials.remove(0);
        let flat = y.as_slice_mut().expect("standard layout");
        for_each_chunk_mut(exec, flat, 1 << 16, |t, out| {
            let base = t * (1 << 16);
            for p in &partials {
                let p = &p.as_slice().expect("standard layout")[base..base + out.len()];
                out.iter_mut().zip(p).for_each(|(o, &v)| *o += v);
            }
        });
        Ok(y)
    }
}

/// Which way parts are stacked.
#[derive(Clone, Copy)]
enum Stacking {
    /// Parts stacked by output rows (they share the inputs).
    Rows,
    /// Parts side by side along the inputs (they share the outputs).
    Cols,
}

/// Start offset of each part along `axis`, the total along it, and the shared
/// extent across it (which every part must have).
fn stack(parts: &[Box<dyn LinOp>], axis: Stacking) -> Result<(Vec<usize>, usize, usize)> {
    let (op, across) = match axis {
        Stacking::Rows => ("row split", "inputs"),
        Stacking::Cols => ("column split", "outputs"),
    };
    let split = |p: &dyn LinOp| {
        let (r, c) = p.shape();
        match axis {
            Stacking::Rows => (r, c),
            Stacking::Cols => (c, r),
        }
    };
    let first = parts
        .first()
        .ok_or_else(|| SquishError::invalid("parts", 0, "a split needs at least one part"))?;
    let shared = split(first.as_ref()).1;
    let mut starts = Vec::with_capacity(parts.len());
    let mut total = 0;
    for (i, p) in parts.iter().enumerate() {
        let (along, other) = split(p.as_ref());
        if other != shared {
            return Err(SquishError::shape(
                op,
                format!("part {i} with {shared} {across}"),
                format!("part {i} with {other} {across}"),
            ));
        }
        starts.push(total);
        total += along;
    }
    Ok((starts, total, shared))
}
