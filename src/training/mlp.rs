//! [`Mlp`]: a multilayer perceptron with forward and backward passes.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::loss::{checked_accuracy, softmax_cross_entropy};
use super::{check_hidden_layer, TrainingError};
use super::{Activation, Dense, Gradients, Scalar};
use crate::error::{Result, SquishError};

/// Unchecked hyperparameters of an [`Mlp`].
#[derive(Clone, Debug, PartialEq)]
pub struct MlpParams {
    sizes: Vec<usize>,
    activation: Activation,
    seed: u64,
}

/// A multilayer perceptron: dense layers with an activation between them and
/// none after the last (it outputs logits).
///
/// ```
/// use ndarray::Array2;
/// use squish::training::Mlp;
/// let mlp: Mlp = Mlp::params(&[4, 8, 3]).seed(7).check().unwrap();
/// let logits = mlp.forward(Array2::<f32>::ones((2, 4)).view()).unwrap();
/// assert_eq!(logits.dim(), (2, 3));
/// assert_eq!(mlp, Mlp::params(&[4, 8, 3]).seed(7).check().unwrap()); // seeded
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp<F: Scalar = f32> {
    pub(crate) layers: Vec<Dense<F>>,
    pub(crate) activation: Activation,
}

/// What a forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Trace<F: Scalar = f32> {
    /// The input of each layer: `inputs[0]` is `x`, `inputs[l]` (l ≥ 1) the
    /// activation output of hidden layer `l − 1`.
    pub inputs: Vec<Array2<F>>,
    /// Pre-activations of the hidden layers.
    pub pre: Vec<Array2<F>>,
    /// The output logits.
    pub logits: Array2<F>,
}

impl MlpParams {
    /// The hidden activation (ReLU by default).
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }

    /// Seed of the initialisation (0 by default).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates (at least an input and an output size, none zero) and
    /// initialises with [`Dense::he`] from a seeded `StdRng`.
    pub fn check<F: Scalar>(self) -> Result<Mlp<F>> {
        if self.sizes.len() < 2 {
            return Err(TrainingError::Sizes {
                sizes: self.sizes,
                reason: "give at least the input and output sizes",
            }
            .into());
        }
        if self.sizes.contains(&0) {
            return Err(TrainingError::Sizes {
                sizes: self.sizes,
                reason: "every layer needs at least one unit",
            }
            .into());
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let layers = self
            .sizes
            .windows(2)
            .map(|w| Dense::he(w[0], w[1], &mut rng))
            .collect();
        Ok(Mlp {
            layers,
            activation: self.activation,
        })
    }
}

impl Mlp<f32> {
    /// Starts a builder for layer sizes `[input, hidden…, output]`;
    /// [`MlpParams::check`] picks the float type (f32 unless told).
    pub fn params(sizes: &[usize]) -> MlpParams {
        MlpParams {
            sizes: sizes.to_vec(),
            activation: Activation::Relu,
            seed: 0,
        }
    }
}

impl<F: Scalar> Mlp<F> {
    /// A network from its layers; consecutive layers must fit.
    pub fn from_layers(layers: Vec<Dense<F>>, activation: Activation) -> Result<Self> {
        if layers.is_empty() {
            return Err(TrainingError::NoLayers.into());
        }
        for (i, w) in layers.windows(2).enumerate() {
            if w[0].outputs() != w[1].inputs() {
                return Err(SquishError::shape(
                    "mlp layers",
                    format!("layer {} with {} inputs", i + 1, w[0].outputs()),
                    format!("{} inputs", w[1].inputs()),
                ));
            }
        }
        Ok(Mlp { layers, activation })
    }

    /// The layers.
    pub fn layers(&self) -> &[Dense<F>] {
        &self.layers
    }

    /// The layers, mutable (for optimizers and regularizers).
    pub fn layers_mut(&mut self) -> &mut [Dense<F>] {
        &mut self.layers
    }

    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs()
    }

    /// Output classes.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs()
    }

    /// Total parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    fn check_input(&self, x: ArrayView2<F>) -> Result<()> {
        if x.ncols() != self.inputs() || x.nrows() == 0 {
            return Err(SquishError::shape(
                "mlp input",
                format!("[batch ≥ 1, {}]", self.inputs()),
                format!("{:?}", x.dim()),
            ));
        }
        Ok(())
    }

    /// Logits `[batch, outputs]`.
    pub fn forward<'a>(&self, x: impl AsArray<'a, F, Ix2>) -> Result<Array2<F>> {
        let x: ArrayView2<'a, F> = x.into();
        self.check_input(x)?;
        let last = self.layers.len() - 1;
        let mut h = self.layers[0].forward(x);
        for l in &self.layers[1..] {
            h = l.forward(self.activation.forward(h.view()).view());
        }
        debug_assert_eq!(h.ncols(), self.layers[last].outputs());
        Ok(h)
    }

    /// The activation output of hidden layer `layer` (0-based; the input of
    /// layer `layer + 1`): the features FitNets-style hints match.
    pub fn hidden<'a>(&self, x: impl AsArray<'a, F, Ix2>, layer: usize) -> Result<Array2<F>> {
        let x: ArrayView2<'a, F> = x.into();
        self.check_input(x)?;
        check_hidden_layer(layer, self.layers.len())?;
        let mut h = self.activation.forward(self.layers[0].forward(x).view());
        for l in &self.layers[1..=layer] {
            h = self.activation.forward(l.forward(h.view()).view());
        }
        Ok(h)
    }

    /// Forward pass keeping what [`backward`](Self::backward) needs.
    pub fn trace<'a>(&self, x: impl AsArray<'a, F, Ix2>) -> Result<Trace<F>> {
        let x: ArrayView2<'a, F> = x.into();
        self.check_input(x)?;
        let n = self.layers.len();
        let mut inputs = Vec::with_capacity(n);
        let mut pre = Vec::with_capacity(n - 1);
        inputs.push(x.to_owned());
        for l in &self.layers[..n - 1] {
            let z = l.forward(inputs.last().expect("pushed").view());
            inputs.push(self.activation.forward(z.view()));
            pre.push(z);
        }
        let logits = self.layers[n - 1].forward(inputs[n - 1].view());
        Ok(Trace {
            inputs,
            pre,
            logits,
        })
    }

    /// Back-propagates `∂L/∂logits` through the network. `hidden_grads[l]`,
    /// when given, is added to `∂L/∂(output of hidden layer l)`: the way a
    /// loss on hidden features (a hint) enters.
    pub fn backward<'a>(
        &self,
        trace: &Trace<F>,
        grad_logits: impl AsArray<'a, F, Ix2>,
        hidden_grads: &[Option<Array2<F>>],
    ) -> Result<Gradients<F>> {
        let grad_logits: ArrayView2<'a, F> = grad_logits.into();
        let n = self.layers.len();
        if grad_logits.dim() != trace.logits.dim() {
            return Err(SquishError::shape(
                "logit gradient",
                format!("{:?}", trace.logits.dim()),
                format!("{:?}", grad_logits.dim()),
            ));
        }
        if hidden_grads.len() > n - 1 {
            return Err(TrainingError::HiddenGradients {
                given: hidden_grads.len(),
                hidden: n - 1,
            }
            .into());
        }
        for (l, g) in hidden_grads.iter().enumerate() {
            if let Some(g) = g {
                if g.dim() != trace.inputs[l + 1].dim() {
                    return Err(SquishError::shape(
                        "hidden gradient",
                        format!("{:?}", trace.inputs[l + 1].dim()),
                        format!("{:?}", g.dim()),
                    ));
                }
            }
        }
        let mut grads = Vec::with_capacity(n);
        let mut g = grad_logits.to_owned();
        for l in (0..n).rev() {
            let (dl, dx) = self.layers[l].backward(trace.inputs[l].view(), g.view(), l > 0);
            grads.push(dl);
            if let Some(mut dx) = dx {
                if let Some(Some(extra)) = hidden_grads.get(l - 1) {
                    dx += extra;
                }
                g = self.activation.backward(trace.pre[l - 1].view(), dx.view());
            }
        }
        grads.reverse();
        Ok(Gradients { layers: grads })
    }

    /// Mean softmax cross-entropy on the batch `(x, labels)` and its
    /// gradient: a function of the parameters and the batch rows only, so
    /// shards of a batch can be computed apart and combined with
    /// [`Gradients::add`] / [`Gradients::scale`].
    pub fn gradients<'a>(
        &self,
        x: impl AsArray<'a, F, Ix2>,
        labels: &[usize],
    ) -> Result<(f64, Gradients<F>)> {
        let x: ArrayView2<'a, F> = x.into();
        let trace = self.trace(x)?;
        let (loss, g) = softmax_cross_entropy(trace.logits.view(), labels)?;
        Ok((loss, self.backward(&trace, g.view(), &[])?))
    }

    /// Classification accuracy on `(x, labels)`.
    pub fn accuracy<'a>(&self, x: impl AsArray<'a, F, Ix2>, labels: &[usize]) -> Result<f64> {
        let x: ArrayView2<'a, F> = x.into();
        let logits = self.forward(x)?;
        checked_accuracy(logits.view(), labels)
    }

    /// The same network in another float type.
    pub fn cast<G: Scalar>(&self) -> Mlp<G> {
        Mlp {
            layers: self.layers.iter().map(Dense::cast).collect(),
            activation: self.activation,
        }
    }
}
