//! A matrix-free linear operator: shape and apply.

use ndarray::{Array2, ArrayView2};

use crate::error::Result;
use crate::parallel::{Forward, ParallelExecutor};

/// A linear map given by its shape and how it multiplies, never by its
/// entries (faer's `LinOp` is the model). A compressed matrix is a drop-in
/// weight for inference through this trait.
///
/// Takes a view so the trait stays object-safe (`Box<dyn LinOp>`): pass
/// `x.view()`.
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

// The impls for `CompressedMatrix` and the dense `Array2<f32>` sit with
// their kernels, in `crate::kernels`.

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

/// A boxed operator is an operator (so a [`Layer`](crate::training::Layer)
/// may hold any weight behind a `Box<dyn LinOp>`).
impl<T: LinOp + ?Sized> LinOp for Box<T> {
    fn shape(&self) -> (usize, usize) {
        (**self).shape()
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        (**self).apply(x, exec)
    }
}
