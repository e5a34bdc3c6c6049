//! SGD with momentum and Adam.

use super::TrainingError;
use super::{Dense, Gradients, Scalar};
use crate::error::{Result, SquishError};

/// A checked optimizer configuration; [`state`](Self::state) makes the
/// per-parameter state a training run updates.
///
/// ```
/// use squish::training::Optimizer;
/// let sgd = Optimizer::sgd(0.1).momentum(0.9).check().unwrap();
/// let adam = Optimizer::adam(1e-3).check().unwrap();
/// assert!(Optimizer::sgd(-1.0).check().is_err());
/// assert!(adam.learning_rate() < sgd.learning_rate());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `v ← μv + g; θ ← θ − ηv` (PyTorch's form).
    Sgd {
        /// Learning rate η.
        lr: f64,
        /// Momentum μ in [0, 1).
        momentum: f64,
    },
    /// Adam (Kingma & Ba) with bias correction.
    Adam {
        /// Learning rate η.
        lr: f64,
        /// First-moment decay β₁ in [0, 1).
        beta1: f64,
        /// Second-moment decay β₂ in [0, 1).
        beta2: f64,
        /// ε added to √v̂.
        eps: f64,
    },
}

/// Unchecked [`Optimizer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerParams(Optimizer);

impl Optimizer {
    /// SGD with learning rate `lr` (no momentum until [`OptimizerParams::momentum`]).
    pub fn sgd(lr: f64) -> OptimizerParams {
        OptimizerParams(Optimizer::Sgd { lr, momentum: 0.0 })
    }

    /// Adam with learning rate `lr`, β = (0.9, 0.999), ε = 1e-8.
    pub fn adam(lr: f64) -> OptimizerParams {
        OptimizerParams(Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }

    /// Fresh state for a run.
    pub fn state<F: Scalar>(&self) -> OptimizerState<F> {
        OptimizerState {
            config: *self,
            slots: Vec::new(),
            t: 0,
        }
    }
}

impl OptimizerParams {
    /// SGD momentum μ (ignored by Adam).
    pub fn momentum(mut self, mu: f64) -> Self {
        if let Optimizer::Sgd { momentum, .. } = &mut self.0 {
            *momentum = mu;
        }
        self
    }

    /// Adam's β₁, β₂ (ignored by SGD).
    pub fn betas(mut self, b1: f64, b2: f64) -> Self {
        if let Optimizer::Adam { beta1, beta2, .. } = &mut self.0 {
            *beta1 = b1;
            *beta2 = b2;
        }
        self
    }

    /// Validates: η > 0 and finite; μ, β₁, β₂ in [0, 1); ε > 0.
    pub fn check(self) -> Result<Optimizer> {
        let unit = |name: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(TrainingError::Hyperparameter {
                    name,
                    value: v,
                    rule: "must lie in [0, 1); pass e.g. 0.9",
                })
            }
        };
        let lr = self.0.learning_rate();
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(TrainingError::Hyperparameter {
                name: "learning rate",
                value: lr,
                rule: "must be finite and positive; pass e.g. 0.01",
            }
            .into());
        }
        match self.0 {
            Optimizer::Sgd { momentum, .. } => unit("momentum", momentum)?,
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(TrainingError::Hyperparameter {
                        name: "eps",
                        value: eps,
                        rule: "must be finite and positive; pass e.g. 1e-8",
                    }
                    .into());
                }
            }
        }
        Ok(self.0)
    }
}

/// The moving averages of one optimizer run, one slot per parameter tensor.
#[derive(Clone, Debug)]
pub struct OptimizerState<F: Scalar = f32> {
    config: Optimizer,
    /// Per tensor: (first moment or velocity, second moment).
    slots: Vec<(Vec<F>, Vec<F>)>,
    t: u64,
}

impl<F: Scalar> OptimizerState<F> {
    /// The configuration.
    pub fn config(&self) -> Optimizer {
        self.config
    }

    /// Sets the learning rate of the next steps (a schedule's hook); the
    /// moments and the step count are kept.
    ///
    /// ```
    /// use squish::training::Optimizer;
    /// let mut s = Optimizer::adam(1e-3).check()?.state::<f32>();
    /// s.set_learning_rate(5e-4);
    /// assert_eq!(s.config().learning_rate(), 5e-4);
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn set_learning_rate(&mut self, rate: f64) {
        match &mut self.config {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr = rate,
        }
    }

    /// One update of flat parameter tensors with their gradients; the list
    /// of tensors (and their lengths) must be the same on every call.
    pub fn step_slices(&mut self, params: &mut [&mut [F]], grads: &[&[F]]) -> Result<()> {
        if params.len() != grads.len() || params.iter().zip(grads).any(|(p, g)| p.len() != g.len())
        {
            return Err(SquishError::shape(
                "optimizer step",
                "one gradient of the same length per parameter",
                "a different set",
            ));
        }
        if self.slots.is_empty() {
            self.slots = params
                .iter()
                .map(|p| (vec![F::zero(); p.len()], vec![F::zero(); p.len()]))
                .collect();
        } else if self.slots.len() != params.len()
            || self
                .slots
                .iter()
                .zip(params.iter())
                .any(|(s, p)| s.0.len() != p.len())
        {
            return Err(SquishError::shape(
                "optimizer step",
                "the parameters of the first step",
                "a different set",
            ));
        }
        self.t += 1;
        match self.config {
            Optimizer::Sgd { lr, momentum } => {
                let (lr, mu) = (F::of(lr), F::of(momentum));
                for ((p, g), (v, _)) in params.iter_mut().zip(grads).zip(&mut self.slots) {
                    for ((p, &g), v) in p.iter_mut().zip(g.iter()).zip(v.iter_mut()) {
                        *v = mu * *v + g;
                        *p -= lr * *v;
                    }
                }
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let t = self.t as i32;
                // Bias corrections folded into the step size (Kingma & Ba, §2).
                let step = lr * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
                let eps_hat = eps * (1.0 - beta2.powi(t)).sqrt();
                let (b1, b2, step, eps) = (F::of(beta1), F::of(beta2), F::of(step), F::of(eps_hat));
                let (one_b1, one_b2) = (F::one() - b1, F::one() - b2);
                for ((p, g), (m, v)) in params.iter_mut().zip(grads).zip(&mut self.slots) {
                    for (((p, &g), m), v) in p
                        .iter_mut()
                        .zip(g.iter())
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                    {
                        *m = b1 * *m + one_b1 * g;
                        *v = b2 * *v + one_b2 * g * g;
                        *p -= step * *m / (v.sqrt() + eps);
                    }
                }
            }
        }
        Ok(())
    }

    /// One update of every layer of a network.
    pub fn step(&mut self, layers: &mut [Dense<F>], grads: &Gradients<F>) -> Result<()> {
        if layers.len() != grads.layers.len() {
            return Err(SquishError::shape(
                "optimizer step",
                format!("{} layer gradients", layers.len()),
                format!("{}", grads.layers.len()),
            ));
        }
        let mut params: Vec<&mut [F]> = Vec::with_capacity(2 * layers.len());
        for l in layers.iter_mut() {
            params.push(l.w.as_slice_mut().expect("owned layers are contiguous"));
            params.push(l.b.as_slice_mut().expect("owned layers are contiguous"));
        }
        let mut gs: Vec<&[F]> = Vec::with_capacity(2 * grads.layers.len());
        let owned: Vec<_>;
        // Gradients built by ndarray ops may be non-standard layout; copy then.
        if grads.layers.iter().all(|g| g.w.is_standard_layout()) {
            for g in &grads.layers {
                gs.push(g.w.as_slice().expect("standard layout"));
                gs.push(g.b.as_slice().expect("1-D owned"));
            }
        } else {
            owned = grads
                .layers
                .iter()
                .map(|g| (g.w.as_standard_layout().into_owned(), g.b.to_vec()))
                .collect();
            for (w, b) in &owned {
                gs.push(w.as_slice().expect("standard layout"));
                gs.push(b);
            }
        }
        self.step_slices(&mut params, &gs)
    }
}
