//! Regularization-driven pruning: L1, L2 and group lasso, and pruning what
//! they drove to zero.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use super::TrainingError;
use super::{Gradients, Mlp};
use crate::error::Result;

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

/// `w ← sign(w)·max(|w| − τ, 0)`: the proximal operator of `τ‖w‖₁`.
///
/// ```
/// use ndarray::array;
/// use squish::training::soft_threshold;
/// let mut w = array![[0.5f32, -0.05, -2.0]];
/// soft_threshold(w.view_mut(), 0.1);
/// assert_eq!(w, array![[0.4f32, 0.0, -1.9]]);
/// ```
pub fn soft_threshold(mut w: ArrayViewMut2<f32>, tau: f32) {
    w.mapv_inplace(|v| {
        let m = v.abs() - tau;
        if m > 0.0 {
            m.copysign(v)
        } else {
            0.0
        }
    });
}

/// `W_r ← W_r·max(0, 1 − τ/‖W_r‖₂)` for every row: the proximal operator of
/// `τ·Σ_r ‖W_r‖₂`. Rows with norm ≤ τ become exactly zero.
pub fn group_soft_threshold_rows(mut w: ArrayViewMut2<f32>, tau: f64) {
    for mut r in w.outer_iter_mut() {
        let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let s = if norm > tau { 1.0 - tau / norm } else { 0.0 };
        r.mapv_inplace(|v| (v as f64 * s) as f32);
    }
}

/// Keep-mask of the weights with `|w| > tol` (what a regularizer did not
/// drive to zero).
pub fn near_zero_mask(w: ArrayView2<f32>, tol: f32) -> Array2<bool> {
    w.mapv(|v| v.abs() > tol)
}

/// The rows whose largest `|w|` exceeds `tol`, increasing (the rows to keep
/// after group lasso, ready for
/// [`CompressedMatrix::kept_rows`](crate::matrix::CompressedMatrix::kept_rows)).
pub fn surviving_rows(w: ArrayView2<f32>, tol: f32) -> Vec<u32> {
    w.outer_iter()
        .enumerate()
        .filter(|(_, r)| r.iter().any(|v| v.abs() > tol))
        .map(|(i, _)| i as u32)
        .collect()
}
