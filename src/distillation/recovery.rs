//! Teacher-guided recovery: fine-tuning a compressed network, in its
//! compressed form, with the dense teacher's soft targets and hints.

use super::trainable::Trainable;
use super::{teacher_outputs, Distiller, Hint, SoftTarget, Teacher};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::matrix::StorageReport;
use crate::training::{
    epoch_loop, half_squared_error, softmax_cross_entropy, CompressedMlp, Dense, Mlp, Optimizer,
};
use ndarray::{Array1, Axis};

/// Unchecked [`Recovery`].
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryParams {
    epochs: usize,
    batch_size: usize,
    seed: u64,
    optimizer: Optimizer,
    soft_targets: Option<SoftTarget>,
    hints: Vec<Hint>,
    learned_scales: Option<f32>,
    decay: LrDecay,
}

/// How the learning rate of a [`Recovery`] run moves over its steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LrDecay {
    /// The optimizer's rate at every step.
    #[default]
    Constant,
    /// Cosine annealing to zero (Loshchilov & Hutter, SGDR, one cycle): step
    /// `t` of `T` uses `η·½(1 + cos(π·t/T))`.
    Cosine,
}

impl LrDecay {
    /// The factor on the base rate at step `t` (0-based) of `total`.
    ///
    /// ```
    /// use squish::distillation::LrDecay;
    /// assert_eq!(LrDecay::Constant.factor(7, 10), 1.0);
    /// assert_eq!(LrDecay::Cosine.factor(0, 10), 1.0);
    /// assert!((LrDecay::Cosine.factor(5, 10) - 0.5).abs() < 1e-12);
    /// ```
    pub fn factor(self, t: usize, total: usize) -> f64 {
        match self {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine => {
                0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total.max(1) as f64).cos())
            }
        }
    }
}

/// Fine-tunes a [`CompressedMlp`] without leaving its compressed form, on a
/// loss that mixes the hard labels with a dense teacher's soft targets
/// (Hinton et al.: `α·T²·KL + (1 − α)·CE`) and optional hints
/// (`weight·½·mean‖h_s − h_t‖²` on hidden layers of equal width).
///
/// One loop serves every form, because each layer is trained through the
/// parameters its encoding actually stores:
/// - f32 values of any structure (dense, CSR, N:M, kept rows): the stored
///   values, at fixed positions (pruned weights stay pruned);
/// - int8 / int4 / binary / ternary values: latent f32 copies trained with
///   the straight-through estimator and re-encoded every step (int codes on
///   the matrix's own scales; binary and ternary scales recomputed, or for
///   binary trained as parameters with [`learned_scales`](RecoveryParams::learned_scales));
/// - codebook values: the centroids (each gets its members' summed gradient);
/// - low rank: both factors directly (`∂L/∂A = ∂L/∂W·Bᵀ`, `∂L/∂B = Aᵀ·∂L/∂W`),
///   each factor itself through its own encoding.
///
/// Biases are trained in f32. Training starts from the compressed weights
/// (nothing else is given), and the result has the same structure, encoding
/// and storage per layer, which [`RecoveryReport`] records.
///
/// ```
/// use squish::data::digits;
/// use squish::distillation::{Recovery, SoftTarget};
/// use squish::prelude::*;
/// use squish::training::{CompressedMlp, Mlp, Optimizer, Trainer};
/// let d = digits()?;
/// let mut teacher = Mlp::params(&[64, 32, 10]).seed(1).check()?;
/// Trainer::params().epochs(10).optimizer(Optimizer::adam(3e-3).check()?).check()?
///     .fit(&mut teacher, &d.train)?;
/// let binary = CompressedMlp::from_mlp(&teacher, &|_, m| Binary.quantize(m))?;
/// let rec = Recovery::params()
///     .epochs(2)
///     .soft_targets(SoftTarget::params(4.0).alpha(0.7).check()?)
///     .check()?
///     .recover(&binary, Some(&teacher), &d.train)?;
/// assert!(rec.report.same_storage());
/// assert_eq!(rec.model.layers()[0].encoding(), "binary");
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    p: RecoveryParams,
}

/// What a recovery run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryReport {
    /// Mean training objective per epoch.
    pub epoch_loss: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Per layer: structure, encoding and storage before fine-tuning.
    pub before: Vec<LayerStorage>,
    /// The same after fine-tuning.
    pub after: Vec<LayerStorage>,
}

/// Structure, encoding and exact storage of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerStorage {
    /// Structure name (`dense`, `csr`, `low-rank`, …).
    pub structure: &'static str,
    /// Value encoding name (`f32`, `int4`, `binary`, `codebook`, …).
    pub encoding: &'static str,
    /// Exact bytes by component.
    pub storage: StorageReport,
}

impl RecoveryReport {
    /// Whether every layer kept its structure, encoding and storage.
    pub fn same_storage(&self) -> bool {
        self.before == self.after
    }
}

/// A recovered network and its report.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The fine-tuned network, in the same compressed form.
    pub model: CompressedMlp,
    /// What the run did.
    pub report: RecoveryReport,
}

impl Recovery {
    /// Starts a builder: 3 epochs, batch 128, seed 0, Adam η = 1e-4, hard
    /// labels only (no teacher).
    pub fn params() -> RecoveryParams {
        RecoveryParams {
            epochs: 3,
            batch_size: 128,
            seed: 0,
            optimizer: Optimizer::Adam {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            soft_targets: None,
            hints: Vec::new(),
            learned_scales: None,
            decay: LrDecay::Constant,
        }
    }

    /// The soft-target loss, if any.
    pub fn soft_targets(&self) -> Option<&SoftTarget> {
        self.p.soft_targets.as_ref()
    }

    /// The hints.
    pub fn hints(&self) -> &[Hint] {
        &self.p.hints
    }

    /// Whether a teacher is needed (soft targets with α > 0, or hints).
    pub fn needs_teacher(&self) -> bool {
        self.p.soft_targets.is_some_and(|s| s.alpha() > 0.0) || !self.p.hints.is_empty()
    }

    /// Fine-tunes `model` on `data`; `teacher` gives the soft targets and
    /// hint features (required when [`needs_teacher`](Self::needs_teacher)).
    /// The teacher's outputs are computed once, up front. Deterministic for
    /// a seed.
    pub fn recover(
        &self,
        model: &CompressedMlp,
        teacher: Option<&dyn Teacher>,
        data: &Dataset,
    ) -> Result<Recovered> {
        self.run(model, None, teacher, data)
    }

    /// As [`recover`](Self::recover), for quantized layers keeping `latent`'s
    /// weights (the dense network `model` was quantized from) as the latent
    /// copies the straight-through estimator updates: quantization-aware
    /// fine-tuning, teacher-guided. Each quantized layer's latent weights must
    /// encode to exactly that layer (so the first step still sees the
    /// compressed network); f32, codebook and low-rank layers ignore `latent`.
    pub fn recover_from_latent(
        &self,
        model: &CompressedMlp,
        latent: &Mlp<f32>,
        teacher: Option<&dyn Teacher>,
        data: &Dataset,
    ) -> Result<Recovered> {
        if latent.layers().len() != model.layers().len() {
            return Err(SquishError::shape(
                "latent network",
                format!("{} layers", model.layers().len()),
                format!("{}", latent.layers().len()),
            ));
        }
        self.run(model, Some(latent), teacher, data)
    }

    fn run(
        &self,
        model: &CompressedMlp,
        latent: Option<&Mlp<f32>>,
        teacher: Option<&dyn Teacher>,
        data: &Dataset,
    ) -> Result<Recovered> {
        let n = model.layers().len();
        let (inputs, outputs) = (model.layers()[0].cols(), model.layers()[n - 1].rows());
        if data.features() != inputs || data.classes() != outputs {
            return Err(SquishError::shape(
                "recovery data",
                format!("{inputs} features, {outputs} classes"),
                format!("{} features, {} classes", data.features(), data.classes()),
            ));
        }
        let teacher = match (teacher, self.needs_teacher()) {
            (None, true) => {
                return Err(SquishError::invalid(
                    "teacher",
                    "none",
                    "soft targets with α > 0 and hints need a teacher; pass the dense model",
                ))
            }
            (t, _) => t,
        };
        for h in &self.p.hints {
            let sl = h.student_layer();
            if sl + 1 >= n {
                return Err(SquishError::invalid(
                    "hint layer",
                    sl,
                    format!("the network has {} hidden layers", n - 1),
                ));
            }
        }
        let before = storage_of(model);
        let logits = match (teacher, &self.p.soft_targets) {
            (Some(t), Some(kd)) if kd.alpha() > 0.0 => {
                Some(teacher_outputs(data.x(), Some(outputs), &|x| t.logits(x))?)
            }
            _ => None,
        };
        let mut feats = Vec::with_capacity(self.p.hints.len());
        for h in &self.p.hints {
            let t = teacher.expect("checked above");
            let width = model.layers()[h.student_layer()].rows();
            // Recovery hints compare layers of the same width directly.
            let f = teacher_outputs(data.x(), Some(width), &|x| t.features(x, h.teacher_layer()))?;
            feats.push(f);
        }

        let mut layers = model
            .layers()
            .iter()
            .enumerate()
            .map(|(l, m)| match latent {
                Some(d) => Trainable::from_matrix_with_latent(m, d.layers()[l].weight()),
                None => Trainable::from_matrix(m),
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(clip) = self.p.learned_scales {
            for (t, m) in layers.iter_mut().zip(model.layers()) {
                t.learn_binary_scales(m, clip)?;
            }
        }
        let mut biases: Vec<Vec<f32>> = model.biases().iter().map(|b| b.to_vec()).collect();
        let mut opt = self.p.optimizer.state::<f32>();
        let total = self.p.epochs * data.len().div_ceil(self.p.batch_size);
        let base_lr = self.p.optimizer.learning_rate();
        let p = &self.p;
        let (epoch_loss, steps) = epoch_loop(
            data.len(),
            p.epochs,
            p.batch_size,
            p.seed,
            &mut |batch, steps| {
                let dense = layers
                    .iter()
                    .zip(&biases)
                    .map(|(t, b)| Dense::new(t.weight()?, Array1::from(b.clone())))
                    .collect::<Result<Vec<_>>>()?;
                let net = Mlp::from_layers(dense, model.activation())?;
                let (x, y) = data.rows(batch);
                let trace = net.trace(x.view())?;
                let (mut loss, g) = match (&self.p.soft_targets, &logits) {
                    (Some(kd), Some(t)) => {
                        let tb = t.select(Axis(0), batch);
                        kd.loss_and_grad(trace.logits.view(), tb.view(), &y)?
                    }
                    _ => softmax_cross_entropy(trace.logits.view(), &y)?,
                };
                let mut hidden = vec![None; n - 1];
                for (h, f) in self.p.hints.iter().zip(&feats) {
                    let sl = h.student_layer();
                    let fb = f.select(Axis(0), batch);
                    let (hl, hg) = half_squared_error(trace.inputs[sl + 1].view(), fb.view())?;
                    loss += h.weight() * hl;
                    let hg = hg * h.weight() as f32;
                    hidden[sl] = Some(match hidden[sl].take() {
                        Some(prev) => prev + &hg,
                        None => hg,
                    });
                }
                if !loss.is_finite() {
                    return Err(SquishError::NonFinite {
                        what: "recovery loss",
                        index: steps,
                        value: loss as f32,
                    });
                }
                let grads = net.backward(&trace, g.view(), &hidden)?;
                let mut gs: Vec<Vec<f32>> = Vec::new();
                for (t, dl) in layers.iter().zip(&grads.layers) {
                    gs.extend(t.grads(dl.w.view())?);
                }
                gs.extend(grads.layers.iter().map(|dl| dl.b.to_vec()));
                let mut params: Vec<&mut [f32]> =
                    layers.iter_mut().flat_map(|t| t.slices_mut()).collect();
                params.extend(biases.iter_mut().map(|b| b.as_mut_slice()));
                let gref: Vec<&[f32]> = gs.iter().map(|g| g.as_slice()).collect();
                if self.p.decay != LrDecay::Constant {
                    opt.set_learning_rate(base_lr * self.p.decay.factor(steps, total));
                }
                opt.step_slices(&mut params, &gref)?;
                layers.iter_mut().for_each(Trainable::project);
                Ok(loss)
            },
        )?;
        let recovered = CompressedMlp::from_parts(
            layers
                .iter()
                .map(Trainable::to_matrix)
                .collect::<Result<Vec<_>>>()?,
            biases.into_iter().map(Array1::from).collect(),
            model.activation(),
        )?;
        let after = storage_of(&recovered);
        Ok(Recovered {
            model: recovered,
            report: RecoveryReport {
                epoch_loss,
                steps,
                before,
                after,
            },
        })
    }
}

fn storage_of(m: &CompressedMlp) -> Vec<LayerStorage> {
    m.layers()
        .iter()
        .map(|l| LayerStorage {
            structure: l.structure().kind(),
            encoding: l.encoding(),
            storage: l.storage(),
        })
        .collect()
}

impl RecoveryParams {
    /// Passes over the data (default 3).
    pub fn epochs(mut self, n: usize) -> Self {
        self.epochs = n;
        self
    }

    /// Rows per mini-batch (default 128).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Seed of the shuffling (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The optimizer (default Adam, η = 1e-4).
    pub fn optimizer(mut self, o: Optimizer) -> Self {
        self.optimizer = o;
        self
    }

    /// Mix the teacher's soft targets into the loss (without it, or with
    /// α = 0, the loss is the hard labels' cross-entropy alone).
    pub fn soft_targets(mut self, kd: SoftTarget) -> Self {
        self.soft_targets = Some(kd);
        self
    }

    /// Adds a hint: student hidden layer `student_layer` pulled towards the
    /// teacher's hidden layer `teacher_layer` (same width; no projection).
    pub fn hint(mut self, h: Hint) -> Self {
        self.hints.push(h);
        self
    }

    /// Binary layers train their per-row scales `α` as parameters instead
    /// of recomputing `mean|θ|` after each update (XNOR-Net's scale, learned
    /// as LSQ learns step sizes), with the straight-through gradient passed
    /// only where `|θ| ≤ clip·α` and `θ` clamped into that window after each
    /// update (BinaryConnect's clipping, relative to the row's scale; pass
    /// `f32::INFINITY` for no window). The stored form is unchanged: one
    /// sign bit per weight and one scale per row. Other encodings ignore it.
    ///
    /// ```
    /// use squish::distillation::{LrDecay, Recovery};
    /// let r = Recovery::params().learned_scales(1.5).lr_decay(LrDecay::Cosine).check()?;
    /// assert!(!r.needs_teacher());
    /// assert!(Recovery::params().learned_scales(0.0).check().is_err());
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn learned_scales(mut self, clip: f32) -> Self {
        self.learned_scales = Some(clip);
        self
    }

    /// How the learning rate moves over the run (default constant).
    pub fn lr_decay(mut self, d: LrDecay) -> Self {
        self.decay = d;
        self
    }

    /// Validates: epochs ≥ 1, batch size ≥ 1, a learned-scale clip > 0.
    pub fn check(self) -> Result<Recovery> {
        if self.epochs == 0 {
            return Err(SquishError::invalid(
                "epochs",
                0,
                "recover for at least one epoch",
            ));
        }
        if self.batch_size == 0 {
            return Err(SquishError::invalid(
                "batch size",
                0,
                "a batch needs at least one row",
            ));
        }
        if let Some(c) = self.learned_scales {
            if c.is_nan() || c <= 0.0 {
                return Err(SquishError::invalid(
                    "binary clip",
                    c,
                    "the straight-through window |θ| ≤ clip·α needs clip > 0 (f32::INFINITY: none)",
                ));
            }
        }
        Ok(Recovery { p: self })
    }
}
