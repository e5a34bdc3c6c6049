//! [`Teacher`]: anything that gives logits (and maybe hidden features).

use ndarray::{Array2, ArrayView2};

use super::DistillationError;
use crate::error::Result;
use crate::training::{CompressedMlp, Mlp};

/// A teacher network: any forward function, so a compressed teacher works
/// as well as a dense one.
///
/// Takes views so the trait stays object-safe (`&dyn Teacher`): pass
/// `x.view()`.
pub trait Teacher: Sync {
    /// Logits `[batch, classes]` for `x`.
    fn logits(&self, x: ArrayView2<f32>) -> Result<Array2<f32>>;

    /// Output of hidden layer `layer` (for hints); teachers without
    /// accessible features return an error.
    fn features(&self, x: ArrayView2<f32>, layer: usize) -> Result<Array2<f32>> {
        let _ = (x, layer);
        Err(DistillationError::NoFeatures(layer).into())
    }
}

impl Teacher for Mlp<f32> {
    fn logits(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.forward(x)
    }

    fn features(&self, x: ArrayView2<f32>, layer: usize) -> Result<Array2<f32>> {
        self.hidden(x, layer)
    }
}

impl Teacher for CompressedMlp {
    fn logits(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.forward(x)
    }

    fn features(&self, x: ArrayView2<f32>, layer: usize) -> Result<Array2<f32>> {
        self.hidden(x, layer)
    }
}

/// A teacher from a closure giving logits.
///
/// ```
/// use ndarray::{Array2, ArrayView2};
/// use squish::distillation::{FnTeacher, Teacher};
/// let t = FnTeacher(|x: ArrayView2<f32>| Ok(Array2::zeros((x.nrows(), 3))));
/// assert_eq!(t.logits(Array2::ones((2, 5)).view()).unwrap().dim(), (2, 3));
/// ```
pub struct FnTeacher<L>(pub L);

impl<L> Teacher for FnTeacher<L>
where
    L: Fn(ArrayView2<f32>) -> Result<Array2<f32>> + Sync,
{
    fn logits(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        (self.0)(x)
    }
}
