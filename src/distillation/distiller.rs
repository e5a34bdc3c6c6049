//! The [`Distiller`] trait.

use ndarray::{Array2, ArrayView2};

use crate::error::Result;

/// A training signal that teaches a student from a teacher's outputs.
///
/// Given the student's and the teacher's logits for a batch (both
/// `[batch, classes]`) and the hard labels, it returns the mean loss over the
/// batch and its gradient with respect to the student logits, which a trainer
/// back-propagates through the student.
///
/// Takes views so the trait stays object-safe (`&dyn Distiller`): pass
/// `logits.view()`.
pub trait Distiller: Send + Sync {
    /// Name shown in reports.
    fn name(&self) -> String;

    /// Mean loss over the batch and ∂loss/∂(student logits).
    fn loss_and_grad(
        &self,
        student: ArrayView2<f32>,
        teacher: ArrayView2<f32>,
        labels: &[usize],
    ) -> Result<(f64, Array2<f32>)>;
}
