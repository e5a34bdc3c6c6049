//! The `[recover]` section of a recipe: teacher-guided fine-tuning of the
//! compressed model, for callers that have training data and the dense model.

use serde::Deserialize;

use crate::distillation::{Recovery, SoftTarget};
use crate::error::Result;
use crate::training::Optimizer;

/// Parameters of [`Recovery`] in a recipe:
///
/// ```toml
/// [recover]
/// epochs = 3          # default 3
/// lr = 1e-4           # Adam learning rate, default 1e-4
/// batch_size = 128    # default 128
/// seed = 0            # default 0
/// temperature = 4.0   # soft targets from the dense teacher (omit both for
/// alpha = 0.9         # hard labels only); alpha defaults to 0.9
/// ```
///
/// A recipe only compresses weights; the section is read by whoever holds
/// the data and the teacher ([`Recipe::recover`](super::Recipe::recover)).
///
/// ```
/// use squish::recipe::Recipe;
/// let r = Recipe::from_toml("[recover]\nepochs = 2\ntemperature = 4.0\n")?;
/// let rec = r.recover().unwrap().build()?;
/// assert_eq!(rec.soft_targets().unwrap().temperature(), 4.0);
/// assert!(rec.needs_teacher());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverSpec {
    /// Passes over the data.
    pub epochs: Option<usize>,
    /// Adam learning rate.
    pub lr: Option<f64>,
    /// Rows per mini-batch.
    pub batch_size: Option<usize>,
    /// Shuffling seed.
    pub seed: Option<u64>,
    /// Soft-target temperature; with it (or `alpha`) the teacher is used.
    pub temperature: Option<f64>,
    /// Soft-target weight α in [0, 1].
    pub alpha: Option<f64>,
}

impl RecoverSpec {
    /// The checked [`Recovery`].
    pub fn build(&self) -> Result<Recovery> {
        let mut p = Recovery::params();
        if let Some(e) = self.epochs {
            p = p.epochs(e);
        }
        if let Some(b) = self.batch_size {
            p = p.batch_size(b);
        }
        if let Some(s) = self.seed {
            p = p.seed(s);
        }
        if let Some(lr) = self.lr {
            p = p.optimizer(Optimizer::adam(lr).check()?);
        }
        if self.temperature.is_some() || self.alpha.is_some() {
            let kd = SoftTarget::params(self.temperature.unwrap_or(4.0))
                .alpha(self.alpha.unwrap_or(0.9))
                .check()?;
            p = p.soft_targets(kd);
        }
        p.check()
    }
}
