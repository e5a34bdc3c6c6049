//! Model parallelism across ranks: a linear layer split by output rows,
//! each rank holding only its (compressed) slice, outputs gathered.

use std::ops::Range;
use std::sync::Arc;

use ndarray::{concatenate, s, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::reduce::{agree, guarded, Failure, Status};
use super::wire::{from_bytes, to_bytes};
use super::{Communicator, DistributedError};
use crate::error::{Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::{even_ranges, ParallelExecutor};

/// A weight `W` (`[rows, cols]`) split by output rows over the ranks of a
/// communicator: rank `r` holds rows `even_ranges(rows, size)[r]` only, in
/// any [`LinOp`] form (e.g. compressed), and `apply` gathers every rank's
/// columns of `y = x·Wᵀ` so that every rank gets the whole output.
///
/// Every output element is computed by one rank with the same kernel as in
/// one process, so the output equals the unsplit matrix's bit for bit when
/// the slices hold the same rows in the same encoding (per-row quantization,
/// a row-sliced pruning mask). Being a [`LinOp`], it goes into a
/// [`Layer`](crate::parallel::Layer) and a
/// [`LayerStack`](crate::parallel::LayerStack): an MLP served over the
/// ranks. `apply` is collective: all ranks call it with the same batch.
///
/// ```
/// use std::sync::Arc;
/// use ndarray::Array2;
/// use squish::distributed::{RankRowSplit, SingleProcess};
/// use squish::matrix::{CompressedMatrix, LinOp};
/// use squish::parallel::Sequential;
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 32), |(i, j)| ((i * 5 + j * 3) % 17) as f32 - 8.0);
/// let q = IntQuantizer::params(8).per_row().check()?;
/// let split = RankRowSplit::from_dense(Arc::new(SingleProcess), w.view(), &|_rows, block| {
///     q.quantize(&CompressedMatrix::from_dense(block)?)
/// })?;
/// let whole = q.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let x = Array2::from_shape_fn((3, 32), |(b, j)| (b * 32 + j) as f32 * 0.01);
/// assert_eq!(split.apply(x.view(), &Sequential)?, whole.matmul(x.view())?);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub struct RankRowSplit {
    comm: Arc<dyn Communicator>,
    part: Box<dyn LinOp>,
    ranges: Vec<Range<usize>>,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for RankRowSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RankRowSplit({}x{}, rank {} holds rows {:?})",
            self.rows,
            self.cols,
            self.comm.rank(),
            self.ranges[self.comm.rank()]
        )
    }
}

type Build<'a, B> = &'a (dyn Fn(Range<usize>, ArrayView2<f32>) -> Result<B> + Sync);

impl RankRowSplit {
    /// Each rank builds its slice of dense `w` with `build(rows, block)`
    /// (e.g. a compression pipeline). Collective: if any rank's build fails,
    /// every rank returns [`DistributedError::RankFailed`].
    pub fn from_dense<'a, B: LinOp + 'static>(
        comm: Arc<dyn Communicator>,
        w: impl AsArray<'a, f32, Ix2>,
        build: Build<'_, B>,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let (rows, cols) = w.dim();
        let size = comm.size();
        if size > rows {
            return Err(SquishError::invalid(
                "ranks",
                size,
                format!("a {rows}-row matrix splits over at most {rows} ranks"),
            ));
        }
        let ranges = even_ranges(rows, size);
        let mine = ranges[comm.rank()].clone();
        let part = guarded(comm.rank(), "building its row slice", || {
            build(mine.clone(), w.slice(s![mine.clone(), ..]))
        });
        Self::from_part(
            comm,
            part.map(|b| Box::new(b) as Box<dyn LinOp>),
            rows,
            cols,
        )
    }

    /// This rank's slice (rows `even_ranges(rows, size)[rank]`, all `cols`
    /// inputs), built elsewhere (e.g. loaded from this rank's file).
    /// Collective: checks that the slices fit together.
    pub fn from_slice(
        comm: Arc<dyn Communicator>,
        part: Box<dyn LinOp>,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        Self::from_part(comm, Ok(part), rows, cols)
    }

    fn from_part(
        comm: Arc<dyn Communicator>,
        part: Status<Box<dyn LinOp>>,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let ranges = even_ranges(rows, comm.size());
        let rank = comm.rank();
        let part = part.and_then(|p| {
            let want = (ranges[rank].len(), cols);
            if p.shape() != want {
                return Err(Failure::new(
                    rank,
                    "building its row slice",
                    &format!("slice of shape {:?}, expected {want:?}", p.shape()),
                ));
            }
            Ok(p)
        });
        let status = part.as_ref().map(|_| ()).map_err(Clone::clone);
        let cluster_status = agree_comm(comm.as_ref(), status);
        cluster_status?;
        let part = part.map_err(Failure::into_error)?;
        Ok(RankRowSplit {
            comm,
            part,
            ranges,
            rows,
            cols,
        })
    }

    /// The rows this rank holds.
    pub fn local_rows(&self) -> Range<usize> {
        self.ranges[self.comm.rank()].clone()
    }
}

fn agree_comm(comm: &dyn Communicator, mine: Status<()>) -> Result<()> {
    let exec = crate::parallel::Sequential;
    agree(&super::Cluster::new(comm, &exec), mine)
}

impl LinOp for RankRowSplit {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// This rank's columns of `y` on `exec`, then an all-gather; an error on
    /// any rank is returned by every rank.
    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        if x.ncols() != self.cols {
            return Err(SquishError::shape(
                "rank row split x·Wᵀ",
                format!("x with {} columns", self.cols),
                format!("x of shape {}x{}", x.nrows(), x.ncols()),
            ));
        }
        let rank = self.comm.rank();
        let mine = guarded(rank, "its rows of the output", || self.part.apply(x, exec));
        let parts = self.comm.all_gather(&to_bytes(&mine))?;
        let mut outs = Vec::with_capacity(parts.len());
        for b in &parts {
            let s: Status<Array2<f32>> = from_bytes(b)?;
            outs.push(s.map_err(Failure::into_error)?);
        }
        for (o, r) in outs.iter().zip(&self.ranges) {
            if o.dim() != (x.nrows(), r.len()) {
                return Err(DistributedError::Mismatch {
                    what: "row-split output",
                    detail: format!("a part of shape {:?} for rows {r:?}", o.dim()),
                }
                .into());
            }
        }
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        concatenate(Axis(1), &views)
            .map_err(|e| SquishError::inconsistent("row-split output", e.to_string()))
    }
}
