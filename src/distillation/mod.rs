//! Knowledge distillation: training a small student from a large teacher.
//!
//! - [`SoftTarget`]: Hinton et al. (2015): `α·T²·KL(softmax(t/T) ‖ softmax(s/T))
//!   + (1 − α)·CE(s, y)`, with a fast multi-threaded kernel and the analytic
//!   gradient; [`soft_target_reference`] is the plain version it is tested against.
//! - [`Hint`]: FitNets (Romero et al. 2015): a student hidden layer, through a
//!   learned linear projection, regressed onto a teacher hidden layer.
//! - [`distill`] / [`distill_with_hint`]: teacher → student training, where the
//!   teacher is anything that implements [`Teacher`] (an [`Mlp`](crate::training::Mlp),
//!   a [`CompressedMlp`](crate::training::CompressedMlp), or any forward
//!   function through [`FnTeacher`]).

mod distiller;
mod error;
mod fast_exp;
mod feature_input;
mod hint;
mod paired;
mod recovery;
mod soft_target;
mod teacher;
mod train;
mod trainable;
mod transfer;

pub use distiller::Distiller;
pub use error::DistillationError;
pub use feature_input::{FeatureSource, FeatureStudent};
pub use hint::{hint_loss_and_grad, Hint, HintParams};
pub use paired::{paired_t_test, sign_test, student_t_sf, PairedTest};
pub use recovery::{LayerStorage, LrDecay, Recovered, Recovery, RecoveryParams, RecoveryReport};
pub use soft_target::{soft_target_reference, SoftTarget, SoftTargetParams};
pub use teacher::{FnTeacher, Teacher};
pub(crate) use train::distill_batch;
pub use train::{distill, distill_with_hint, teacher_outputs};
pub use transfer::jittered;
