//! [`Forward`]: the interface the data-parallel and pipelined runners drive.
//! The models that implement it live above (`training`, `matrix`).

use ndarray::{Array2, ArrayView2};

use crate::error::{Result, SquishError};
use crate::parallel::ParallelExecutor;

/// Anything that maps a batch `[batch, in_dim]` to `[batch, out_dim]`, row by
/// row: a weight matrix, a layer, a whole model.
///
/// Implementations must treat batch rows independently (row `b` of the output
/// depends only on row `b` of the input); the data-parallel and pipelined
/// runners rely on it to split batches. Every
/// [`LinOp`](crate::matrix::LinOp) is a `Forward`.
///
/// Takes a view so the trait stays object-safe (`&dyn Forward`): pass
/// `x.view()`.
pub trait Forward: Send + Sync {
    /// Input features.
    fn in_dim(&self) -> usize;

    /// Output features.
    fn out_dim(&self) -> usize;

    /// The output for batch `x`; work may be spread over `exec`, the result
    /// must not depend on it.
    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>>;
}

/// Checks that each `(in, out)` pair's `out` is the next pair's `in`.
pub(crate) fn check_chain(dims: impl Iterator<Item = (usize, usize)>) -> Result<()> {
    let mut prev: Option<(usize, usize)> = None;
    for (i, (d_in, d_out)) in dims.enumerate() {
        if let Some((_, p_out)) = prev {
            if p_out != d_in {
                return Err(SquishError::shape(
                    "layer chain",
                    format!("layer {i} with {p_out} inputs (layer {} outputs)", i - 1),
                    format!("layer {i} with {d_in} inputs"),
                ));
            }
        }
        prev = Some((d_in, d_out));
    }
    Ok(())
}

/// Checks a batch for a model with `in_dim` inputs: non-empty, right width.
pub(crate) fn check_batch(x: ArrayView2<f32>, in_dim: usize) -> Result<()> {
    if x.ncols() != in_dim {
        return Err(SquishError::shape(
            "forward",
            format!("x with {in_dim} columns"),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    crate::error::check_non_empty("batch", x.nrows(), x.ncols())
}
