//! Regularization-driven pruning: L1, L2 and group lasso, and pruning what
//! they drove to zero.

use super::TrainingError;
use super::{Gradients, Mlp};
use crate::error::Result;
use crate::pruning::{group_soft_threshold_rows, soft_threshold};

/// The penalty on the weights (biases are never penalised).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Penalty {
    /// `λ/2·‖W‖²` (weight decay), applied through the gradient `λW`.
    L2(f64),
    /// `λ·‖W‖₁`, applied as a proximal soft-threshold after each step
    /// (`w ← sign(w)·max(|w| − ηλ, 0)`), so weights reach exact zeros.
    L1(f64),
    /// Group lasso `λ·Σ_rows ‖W_r‖₂` (L2,1 over the rows, i.e. over output
    /// units), applied as a proximal group shrink
    /// (`W_r ← W_r·max(0, 1 − ηλ/‖W_r‖)`), so whole rows reach zero.
    GroupLasso(f64),
}

/// A checked penalty on the weights of some layers.
///
/// The proximal steps use the optimizer's base learning rate η: with SGD
/// that is exact proximal gradient descent; with Adam it is the usual
/// approximation.
///
/// ```
/// use squish::training::{Penalty, Regularizer};
/// let r = Regularizer::params(Penalty::L1(1e-4)).layers(&[0]).check().unwrap();
/// assert!(Regularizer::params(Penalty::L2(-1.0)).check().is_err());
/// # let _ = r;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Regularizer {
    penalty: Penalty,
    layers: Option<Vec<usize>>,
}

/// Unchecked [`Regularizer`].
#[derive(Clone, Debug, PartialEq)]
pub struct RegularizerParams(Regularizer);

impl Regularizer {
    /// Starts a builder; every layer is penalised until [`RegularizerParams::layers`].
    pub fn params(penalty: Penalty) -> RegularizerParams {
        RegularizerParams(Regularizer {
            penalty,
            layers: None,
        })
    }

    /// The penalty.
    pub fn penalty(&self) -> Penalty {
        self.penalty
    }

    /// Whether layer `l` is penalised.
    pub fn applies_to(&self, l: usize) -> bool {
        self.layers.as_ref().is_none_or(|v| v.contains(&l))
    }

    pub(crate) fn check_layers(&self, n: usize) -> Result<()> {
        if let Some(&l) = self.layers.iter().flatten().find(|&&l| l >= n) {
            return Err(TrainingError::NoSuchLayer {
                what: "regularized layer",
                layer: l,
                count: n,
            }
            .into());
        }
        Ok(())
    }

    /// The penalty's value on `mlp`'s weights.
    pub fn value(&self, mlp: &Mlp<f32>) -> f64 {
        let ws = mlp
            .layers
            .iter()
            .enumerate()
            .filter(|(l, _)| self.applies_to(*l))
            .map(|(_, d)| d.w.view());
        match self.penalty {
            Penalty::L2(lam) => ws
                .map(|w| 0.5 * lam * w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
                .sum(),
            Penalty::L1(lam) => ws
                .map(|w| lam * w.iter().map(|&v| (v as f64).abs()).sum::<f64>())
                .sum(),
            Penalty::GroupLasso(lam) => ws
                .map(|w| {
                    lam * w
                        .outer_iter()
                        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
                        .sum::<f64>()
                })
                .sum(),
        }
    }

    /// Adds the gradient of a smooth penalty (L2: `λW`) to `grads`.
    pub fn add_gradient(&self, mlp: &Mlp<f32>, grads: &mut Gradients<f32>) {
        if let Penalty::L2(lam) = self.penalty {
            for (l, (d, g)) in mlp.layers.iter().zip(&mut grads.layers).enumerate() {
                if self.applies_to(l) {
                    g.w.scaled_add(lam as f32, &d.w);
                }
            }
        }
    }

    /// Applies the proximal operator of a non-smooth penalty (L1, group
    /// lasso) for step size `lr`.
    pub fn proximal(&self, mlp: &mut Mlp<f32>, lr: f64) {
        for (l, d) in mlp.layers.iter_mut().enumerate() {
            if !self.applies_to(l) {
                continue;
            }
            match self.penalty {
                Penalty::L2(_) => {}
                Penalty::L1(lam) => soft_threshold(d.w.view_mut(), (lr * lam) as f32),
                Penalty::GroupLasso(lam) => group_soft_threshold_rows(d.w.view_mut(), lr * lam),
            }
        }
    }
}

impl RegularizerParams {
    /// Penalise only these layers (0-based).
    pub fn layers(mut self, layers: &[usize]) -> Self {
        self.0.layers = Some(layers.to_vec());
        self
    }

    /// Validates: λ ≥ 0 and finite.
    pub fn check(self) -> Result<Regularizer> {
        let lam = match self.0.penalty {
            Penalty::L2(l) | Penalty::L1(l) | Penalty::GroupLasso(l) => l,
        };
        if !(lam >= 0.0 && lam.is_finite()) {
            return Err(TrainingError::Hyperparameter {
                name: "lambda",
                value: lam,
                rule: "must be finite and >= 0; pass e.g. 1e-4",
            }
            .into());
        }
        Ok(self.0)
    }
}
