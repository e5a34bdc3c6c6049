//! [`DistillationError`]: what can go wrong in the distillation family.

use thiserror::Error;

/// Errors of knowledge distillation (soft targets, hints), wrapped by
/// [`SquishError::Distillation`](crate::SquishError::Distillation).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum DistillationError {
    /// A softmax temperature that is not finite and positive.
    #[error(
        "temperature {0} must be finite and positive; pass e.g. 4.0 (1.0 = the plain softmax)"
    )]
    Temperature(f64),
    /// A loss mix outside [0, 1].
    #[error("alpha {0} is outside [0, 1]; it weights the soft-target loss against the hard-label loss, e.g. 0.9")]
    Alpha(f64),
    /// A hint weight that is negative or not finite.
    #[error("hint weight {0} must be finite and >= 0; pass e.g. 1.0")]
    HintWeight(f64),
    /// A hint layer the student does not have.
    #[error("student hint layer {layer} does not exist: the student has {hidden} hidden layers; pass a layer in 0..{hidden}")]
    StudentLayer {
        /// The layer asked for.
        layer: usize,
        /// Hidden layers of the student.
        hidden: usize,
    },
    /// A hint regressor to a teacher of width 0.
    #[error("teacher width 0: a hint needs a teacher layer with at least one unit")]
    ZeroTeacherWidth,
    /// Hint training with a teacher that exposes no hidden features.
    #[error("this teacher exposes no hidden features (hint layer {0} asked for); use an Mlp or CompressedMlp teacher, or distill without a hint")]
    NoFeatures(usize),
}
