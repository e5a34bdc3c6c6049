//! A small, real training engine for MLPs: dense layers, ReLU / GELU,
//! softmax cross-entropy, forward and backward passes on ndarray,
//! mini-batches, SGD with momentum and Adam, seeded deterministic
//! initialisation and shuffling.
//!
//! Around it, what compression needs from training:
//! - one layer-stack model, [`LayerStack`], generic over how a layer's
//!   weight is stored: inference through compressed weights
//!   ([`CompressedMlp`] = `LayerStack<CompressedMatrix>`), so accuracy after
//!   compression is measured, and any mix of [`LinOp`](crate::matrix::LinOp)s
//!   for the parallel runners;
//! - regularization-driven pruning ([`Regularizer`]: L1, L2, group lasso),
//!   mask-aware fine-tuning ([`Masks`]) and gradual pruning on Zhu & Gupta's
//!   schedule ([`GradualPruning`] over a [`pruning::Schedule`](crate::pruning::Schedule));
//! - compression-aware fine-tuning: the straight-through estimator through any
//!   quantizer ([`StraightThrough`]) and codebook centroid fine-tuning
//!   ([`finetune_centroids`]).
//!
//! The math is generic over [`Scalar`] (f32 to train, f64 to check gradients
//! against finite differences).

mod activation;
mod codebook;
mod compressed;
mod dense;
mod error;
mod gradients;
pub(crate) mod loss;
mod mask;
mod mlp;
mod optimizer;
mod regularization;
mod scalar;
mod schedule;
mod stack;
mod ste;
mod trainer;

pub use activation::Activation;
// The matrix side of centroid fine-tuning is sharing's; kept here at its old path.
pub use crate::compression::sharing::{centroid_gradients, decode_with_centroids, with_centroids};
pub use codebook::finetune_centroids;
pub use compressed::CompressedMlp;
pub use dense::{Dense, DenseGrad};
pub(crate) use error::check_hidden_layer;
pub use error::TrainingError;
pub use gradients::Gradients;
pub(crate) use loss::check_labels as loss_check_labels;
pub use loss::{
    accuracy, argmax_rows, half_squared_error, log_softmax, softmax, softmax_cross_entropy,
};
pub use mask::Masks;
pub use mlp::{Mlp, MlpParams, Trace};
pub use optimizer::{Optimizer, OptimizerParams, OptimizerState};
// The proximal operators and masks are pruning's; kept here at their old path.
pub use crate::pruning::{
    group_soft_threshold_rows, near_zero_mask, soft_threshold, surviving_rows,
};
pub use regularization::{Penalty, Regularizer, RegularizerParams};
pub use scalar::Scalar;
#[allow(deprecated)]
pub use schedule::{cubic_sparsity, from_schedule, GradualPruning, SparsitySchedule};
pub use stack::{Layer, LayerStack};
pub use ste::StraightThrough;
pub(crate) use trainer::{check_data, epoch_loop};
pub use trainer::{Objective, TrainReport, Trainer, TrainerParams};
