//! Model parallelism inside one weight matrix: split `W` by output rows
//! ([`RowSplit`]) or by input columns ([`ColSplit`]), one part per worker.

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{s, Array2, ArrayView2, AsArray, Axis, Ix2};

use crate::error::{Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::{even_ranges, for_each_chunk_mut, map, ParallelExecutor, Sequential};

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

/// `W` split into parts along one axis ([`ByRows`] or [`ByCols`]), each part
/// in any [`LinOp`] form. Use it as [`RowSplit`] or [`ColSplit`].
pub struct Split<A: SplitAxis> {
    parts: Vec<Box<dyn LinOp>>,
    starts: Vec<usize>,
    rows: usize,
    cols: usize,
    axis: PhantomData<A>,
}

/// The axis a [`Split`] cuts `W` along (sealed: [`ByRows`], [`ByCols`]).
pub trait SplitAxis: sealed::Sealed + Send + Sync + 'static {
    /// The stacking of the parts.
    #[doc(hidden)]
    const STACKING: Stacking;
}

/// Parts stacked by output rows (they share the inputs).
pub enum ByRows {}
/// Parts side by side along the inputs (they share the outputs).
pub enum ByCols {}

impl SplitAxis for ByRows {
    const STACKING: Stacking = Stacking::Rows;
}
impl SplitAxis for ByCols {
    const STACKING: Stacking = Stacking::Cols;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ByRows {}
    impl Sealed for super::ByCols {}
}

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
/// use squish::kernels::RowSplit;
/// use squish::parallel::ThreadPool;
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
pub type RowSplit = Split<ByRows>;

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
/// use squish::kernels::ColSplit;
/// use squish::parallel::{Sequential, ThreadPool};
/// use squish::matrix::LinOp;
/// let w = Array2::from_shape_fn((16, 40), |(i, j)| ((i * 3 + j) % 7) as f32 - 3.0);
/// let split = ColSplit::from_dense(w.view(), 3, &|_cols, block| Ok(block.to_owned()), &Sequential)?;
/// let x = Array2::from_shape_fn((2, 40), |(b, j)| (b + j) as f32);
/// let y = split.apply(x.view(), &ThreadPool::new(2)?)?;
/// assert_eq!(y, split.apply(x.view(), &Sequential)?);
/// assert_eq!(y, x.dot(&w.t())); // small integers: exact in any order
/// # Ok::<(), squish::SquishError>(())
/// ```
pub type ColSplit = Split<ByCols>;

impl<A: SplitAxis> Split<A> {
    /// Stacks `parts` along the axis: by rows they must all take the same
    /// number of inputs; by columns they must all have the same number of
    /// outputs.
    pub fn new(parts: Vec<Box<dyn LinOp>>) -> Result<Self> {
        let (starts, along, across) = stack(&parts, A::STACKING)?;
        let (rows, cols) = match A::STACKING {
            Stacking::Rows => (along, across),
            Stacking::Cols => (across, along),
        };
        Ok(Split {
            parts,
            starts,
            rows,
            cols,
            axis: PhantomData,
        })
    }

    /// Splits dense `w` into `parts` even blocks along the axis and turns
    /// each into a part with `build(range, block)` (e.g. a compression
    /// pipeline), one task per block on `exec`.
    pub fn from_dense<'a, B: LinOp + 'static>(
        w: impl AsArray<'a, f32, Ix2>,
        parts: usize,
        build: Build<'_, B>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let (name, axis) = match A::STACKING {
            Stacking::Rows => ("row parts", Axis(0)),
            Stacking::Cols => ("column parts", Axis(1)),
        };
        check_parts(name, parts, w.len_of(axis))?;
        let ranges = even_ranges(w.len_of(axis), parts);
        let built = map(exec, parts, |i| {
            let r = ranges[i].clone();
            build(r.clone(), w.slice_axis(axis, r.into())).map(|b| Box::new(b) as Box<dyn LinOp>)
        });
        Self::new(built.into_iter().collect::<Result<_>>()?)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
}

impl<A: SplitAxis> LinOp for Split<A> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// One task per part (each on one thread); an error is the first failing
    /// part's, in part order. By rows the parts' outputs are concatenated;
    /// by columns the partials are summed in part order, in chunks of the
    /// output.
    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        match A::STACKING {
            Stacking::Rows => self.apply_rows(x, exec),
            Stacking::Cols => self.apply_cols(x, exec),
        }
    }
}

impl<A: SplitAxis> Split<A> {
    fn apply_rows(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
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

    fn apply_cols(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
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
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Stacking {
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
