//! [`Trainer`]: the mini-batch training loop.

use std::borrow::Cow;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::TrainingError;
use super::{Gradients, GradualPruning, Masks, Mlp, Optimizer, Regularizer, StraightThrough};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::pruning::{Magnitude, Pruner};

/// Unchecked hyperparameters of a [`Trainer`].
#[derive(Clone, Debug)]
pub struct TrainerParams {
    epochs: usize,
    batch_size: usize,
    seed: u64,
    optimizer: Optimizer,
    regularizer: Option<Regularizer>,
    gradual: Option<GradualPruning>,
    straight_through: Option<StraightThrough>,
}

/// A checked training configuration: epochs of shuffled mini-batches, an
/// optimizer, and optional regularization, gradual pruning and
/// straight-through quantization.
///
/// Deterministic: the shuffling comes from a `StdRng` seeded with
/// [`seed`](TrainerParams::seed), so the same seed gives bit-identical weights.
///
/// ```
/// use squish::data::digits;
/// use squish::training::{Mlp, Optimizer, Trainer};
/// let d = digits()?;
/// let mut mlp = Mlp::params(&[64, 32, 10]).seed(1).check()?;
/// let t = Trainer::params().epochs(5).optimizer(Optimizer::adam(3e-3).check()?).check()?;
/// t.fit(&mut mlp, &d.train)?;
/// assert!(mlp.accuracy(d.test.x(), d.test.y())? > 0.8);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trainer {
    p: TrainerParams,
}

/// What a training run did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Mean objective (plus penalty) per epoch.
    pub epoch_loss: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// The masks at the end (from the caller and from gradual pruning).
    pub masks: Masks,
}

/// The loss and gradient of a batch, given the network to evaluate and the
/// rows of the batch.
pub type Objective<'a> = dyn FnMut(&Mlp<f32>, &[usize]) -> Result<(f64, Gradients<f32>)> + 'a;

impl TrainerParams {
    /// Passes over the training rows (default 20).
    pub fn epochs(mut self, n: usize) -> Self {
        self.epochs = n;
        self
    }

    /// Rows per mini-batch (default 64; the last batch of an epoch may be smaller).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Seed of the shuffling (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The optimizer (default Adam, η = 1e-3).
    pub fn optimizer(mut self, o: Optimizer) -> Self {
        self.optimizer = o;
        self
    }

    /// A weight penalty (L1, L2 or group lasso).
    pub fn regularizer(mut self, r: Regularizer) -> Self {
        self.regularizer = Some(r);
        self
    }

    /// Gradual magnitude pruning inside the loop.
    pub fn gradual_pruning(mut self, g: GradualPruning) -> Self {
        self.gradual = Some(g);
        self
    }

    /// Train through a quantizer with the straight-through estimator.
    pub fn straight_through(mut self, s: StraightThrough) -> Self {
        self.straight_through = Some(s);
        self
    }

    /// Validates: epochs ≥ 1, batch size ≥ 1.
    pub fn check(self) -> Result<Trainer> {
        if self.epochs == 0 {
            return Err(TrainingError::Zero("epochs").into());
        }
        if self.batch_size == 0 {
            return Err(TrainingError::Zero("batch size").into());
        }
        Ok(Trainer { p: self })
    }
}

impl Trainer {
    /// Starts a builder with the defaults.
    pub fn params() -> TrainerParams {
        TrainerParams {
            epochs: 20,
            batch_size: 64,
            seed: 0,
            optimizer: Optimizer::Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            regularizer: None,
            gradual: None,
            straight_through: None,
        }
    }

    /// The epochs.
    pub fn epochs(&self) -> usize {
        self.p.epochs
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.p.batch_size
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.p.seed
    }

    /// The optimizer.
    pub fn optimizer(&self) -> Optimizer {
        self.p.optimizer
    }

    /// Minimises mean softmax cross-entropy on `data`.
    pub fn fit(&self, mlp: &mut Mlp<f32>, data: &Dataset) -> Result<TrainReport> {
        self.fit_masked(mlp, data, Masks::none(mlp.layers.len()))
    }

    /// As [`fit`](Self::fit), holding the weights outside `masks` at zero.
    pub fn fit_masked(
        &self,
        mlp: &mut Mlp<f32>,
        data: &Dataset,
        masks: Masks,
    ) -> Result<TrainReport> {
        check_data(mlp, data)?;
        self.fit_objective(mlp, data.len(), masks, &mut |net, idx| {
            let (x, y) = data.rows(idx);
            net.gradients(x.view(), &y)
        })
    }

    /// The general loop: `objective(network, batch rows)` gives the batch
    /// loss and gradient. Per step: forward/backward (on `Q(W)` under
    /// straight-through), L2 gradient, masks on the gradient, optimizer step,
    /// proximal L1 / group-lasso step, gradual pruning, masks on the weights.
    pub fn fit_objective(
        &self,
        mlp: &mut Mlp<f32>,
        rows: usize,
        mut masks: Masks,
        objective: &mut Objective<'_>,
    ) -> Result<TrainReport> {
        if rows == 0 {
            return Err(SquishError::Empty {
                what: "training rows",
                rows: 0,
                cols: 0,
            });
        }
        masks.check(mlp)?;
        let n_layers = mlp.layers.len();
        if let Some(r) = &self.p.regularizer {
            r.check_layers(n_layers)?;
        }
        if let Some(g) = &self.p.gradual {
            if let Some(&l) = g.layers.iter().find(|&&l| l >= n_layers) {
                return Err(TrainingError::NoSuchLayer {
                    what: "pruned layer",
                    layer: l,
                    count: n_layers,
                }
                .into());
            }
        }
        masks.apply(mlp);
        let mut opt = self.p.optimizer.state::<f32>();
        let lr = self.p.optimizer.learning_rate();
        let p = &self.p;
        let (epoch_loss, steps) =
            epoch_loop(rows, p.epochs, p.batch_size, p.seed, &mut |batch, step| {
                let net: Cow<Mlp<f32>> = match &p.straight_through {
                    Some(s) => Cow::Owned(s.quantized(mlp)?),
                    None => Cow::Borrowed(&*mlp),
                };
                let (mut loss, mut grads) = objective(&net, batch)?;
                drop(net);
                if !loss.is_finite() {
                    return Err(SquishError::NonFinite {
                        what: "training loss",
                        index: step,
                        value: loss as f32,
                    });
                }
                if let Some(r) = &p.regularizer {
                    r.add_gradient(mlp, &mut grads);
                    loss += r.value(mlp);
                }
                masks.apply_to_gradients(&mut grads);
                opt.step(&mut mlp.layers, &grads)?;
                if let Some(r) = &p.regularizer {
                    r.proximal(mlp, lr);
                }
                let step = step + 1;
                if let Some(g) = &p.gradual {
                    if step.is_multiple_of(g.every) {
                        let s = (g.schedule)(step);
                        let pruner = Magnitude::params(s).check()?;
                        for &l in &g.layers {
                            let mut keep = pruner.mask(mlp.layers[l].w.view())?;
                            if let Some(old) = masks.layer(l) {
                                keep.zip_mut_with(old, |k, &o| *k &= o);
                            }
                            masks.set(l, keep);
                        }
                    }
                }
                masks.apply(mlp);
                Ok(loss)
            })?;
        Ok(TrainReport {
            epoch_loss,
            steps,
            masks,
        })
    }
}

pub(crate) fn check_data(mlp: &Mlp<f32>, data: &Dataset) -> Result<()> {
    if data.features() != mlp.inputs() || data.classes() != mlp.outputs() {
        return Err(SquishError::shape(
            "training data",
            format!("{} features, {} classes", mlp.inputs(), mlp.outputs()),
            format!("{} features, {} classes", data.features(), data.classes()),
        ));
    }
    Ok(())
}

/// The shuffled mini-batch loop every trainer runs: `epochs` passes over
/// `rows` rows, in an order shuffled each epoch by a generator seeded with
/// `seed`, in batches of `batch_size` (the last one of an epoch may be
/// smaller). `step(batch rows, steps so far)` does one step and gives the
/// batch loss. Returns the mean loss per epoch (batches weighted by their
/// rows) and the steps taken.
pub(crate) fn epoch_loop(
    rows: usize,
    epochs: usize,
    batch_size: usize,
    seed: u64,
    step: &mut dyn FnMut(&[usize], usize) -> Result<f64>,
) -> Result<(Vec<f64>, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..rows).collect();
    let mut epoch_loss = Vec::with_capacity(epochs);
    let mut steps = 0usize;
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for batch in order.chunks(batch_size) {
            let loss = step(batch, steps)?;
            sum += loss * batch.len() as f64;
            seen += batch.len();
            steps += 1;
        }
        epoch_loss.push(sum / seen as f64);
    }
    Ok((epoch_loss, steps))
}
