//! A matrix-free linear operator: shape and apply.

use ndarray::{Array2, ArrayView2};

use super::CompressedMatrix;
use crate::error::Result;
use crate::parallel::{Forward, ParallelExecutor};

/// A linear map given by its shape and how it multiplies, never by its
/// entries (faer's `LinOp` is the model). A compressed matrix is a drop-in
/// weight for inference through this trait.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::{CompressedMatrix, LinOp};
/// use squish::parallel::Sequential;
/// let w = array![[2.0f32, 0.0], [0.0, 3.0]];
/// let ops: Vec<Box<dyn LinOp>> =
///     vec![Box::new(w.clone()), Box::new(CompressedMatrix::from_dense(w.view()).unwrap())];
/// for op in &ops {
///     assert_eq!(op.apply(array![[1.0f32, 1.0]].view(), &Sequential).unwrap(), array![[2.0f32, 3.0]]);
/// }
/// ```
pub trait LinOp: Send + Sync {
    /// `(out, in)`.
    fn shape(&self) -> (usize, usize);

    /// `y = x · Wᵀ` for `x` of shape `[batch, in]`; `y` is `[batch, out]`.
    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>>;
}

impl LinOp for CompressedMatrix {
    fn shape(&self) -> (usize, usize) {
        CompressedMatrix::shape(self)
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.matmul_on(x, exec)
    }
}

/// The dense baseline: `x · Wᵀ` with ndarray's GEMM, split by rows of `W`
/// over `exec` (the same bits as `x.dot(&w.t())` on any executor).
impl LinOp for Array2<f32> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        crate::parallel::dense_matmul(self.view(), x, exec)
    }
}

/// Every linear operator is a [`Forward`] model of one layer.
impl<T: LinOp + ?Sized> Forward for T {
    fn in_dim(&self) -> usize {
        self.shape().1
    }

    fn out_dim(&self) -> usize {
        self.shape().0
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.apply(x, exec)
    }
}
