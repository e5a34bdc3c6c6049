//! The one layer-stack model: [`LayerStack`], a stack of [`Layer`]s (a
//! weight, an optional bias, an [`Activation`]), generic over how each
//! layer's weight is stored. `LayerStack` (the default, `Box<dyn LinOp>`)
//! mixes any weights and is what the parallel runners drive through
//! [`Forward`]; [`CompressedMlp`](super::CompressedMlp) is the same type
//! over [`CompressedMatrix`](crate::matrix::CompressedMatrix) weights.

use std::ops::Deref;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, AsArray, Ix1, Ix2};

use super::loss::checked_accuracy;
use super::{check_hidden_layer, Activation, TrainingError};
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::{check_chain, Forward, ParallelExecutor};

/// One layer: `act(x · Wᵀ + b)` with any [`LinOp`] as `W` (dense or
/// compressed). `Layer` (the default) boxes its weight, so layers of
/// different kinds stack together; `Layer<W>` stores a `W` as it is. A layer
/// dereferences to its weight (`layer.shape()`, `layer.storage()`).
///
/// ```
/// use ndarray::array;
/// use squish::parallel::{Forward, Sequential};
/// use squish::training::{Activation, Layer};
/// let layer = Layer::new(array![[1.0f32, -1.0], [2.0, 0.0]])
///     .with_bias(array![0.5f32, -5.0].view())?
///     .activation(Activation::Relu);
/// let y = layer.forward(array![[1.0f32, 2.0]].view(), &Sequential)?;
/// assert_eq!(y, array![[0.0f32, 0.0]]); // relu(-0.5), relu(-3)
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Layer<W = Box<dyn LinOp>> {
    pub(super) op: W,
    pub(super) bias: Option<Array1<f32>>,
    pub(super) act: Activation,
}

impl Layer {
    /// A layer with weight `op` (boxed), no bias and the identity activation.
    pub fn new(op: impl LinOp + 'static) -> Self {
        Self::boxed(Box::new(op))
    }

    /// A layer from a boxed weight.
    pub fn boxed(op: Box<dyn LinOp>) -> Self {
        Layer::of(op)
    }
}

impl<W: LinOp> Layer<W> {
    /// A layer with weight `op` stored as it is, no bias and the identity
    /// activation.
    pub fn of(op: W) -> Self {
        Layer {
            op,
            bias: None,
            act: Activation::Identity,
        }
    }

    /// Sets the bias; it must have `out` finite entries.
    pub fn with_bias<'a>(mut self, bias: impl AsArray<'a, f32, Ix1>) -> Result<Self> {
        let bias: ArrayView1<'a, f32> = bias.into();
        let out = self.op.shape().0;
        if bias.len() != out {
            return Err(SquishError::shape(
                "layer bias",
                format!("{out} entries (the layer's outputs)"),
                format!("{} entries", bias.len()),
            ));
        }
        check_finite("layer bias", bias.iter())?;
        self.bias = Some(bias.to_owned());
        Ok(self)
    }

    /// Sets the activation.
    pub fn activation(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    /// The weight.
    pub fn op(&self) -> &W {
        &self.op
    }

    /// The bias, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.bias.as_ref()
    }

    /// The activation applied after the bias.
    pub fn act(&self) -> Activation {
        self.act
    }
}

impl<W> Deref for Layer<W> {
    type Target = W;

    fn deref(&self) -> &W {
        &self.op
    }
}

impl<W: LinOp> Forward for Layer<W> {
    fn in_dim(&self) -> usize {
        self.op.shape().1
    }

    fn out_dim(&self) -> usize {
        self.op.shape().0
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        let mut y = self.op.apply(x, exec)?;
        // Elementwise and per-row, so it stays on this thread: cheap next to the matmul.
        for mut row in y.outer_iter_mut() {
            match &self.bias {
                Some(b) => row
                    .iter_mut()
                    .zip(b)
                    .for_each(|(v, &bi)| *v = self.act.apply(*v + bi)),
                None => row.iter_mut().for_each(|v| *v = self.act.apply(*v)),
            }
        }
        Ok(y)
    }
}

/// Layers applied in order; each layer's outputs feed the next one's inputs.
///
/// `LayerStack` (weights behind `Box<dyn LinOp>`) takes any mix of weights;
/// [`CompressedMlp`](super::CompressedMlp) is `LayerStack<CompressedMatrix>`,
/// with the MLP constructors and storage accounting.
///
/// ```
/// use ndarray::{array, Array2};
/// use squish::parallel::{Forward, Sequential};
/// use squish::training::{Activation, Layer, LayerStack};
/// let model = LayerStack::new(vec![
///     Layer::new(Array2::<f32>::eye(3)).activation(Activation::Relu),
///     Layer::new(array![[1.0f32, 1.0, 1.0]]),
/// ])?;
/// assert_eq!((model.in_dim(), model.out_dim()), (3, 1));
/// let y = model.forward(array![[1.0f32, -2.0, 3.0]].view(), &Sequential)?;
/// assert_eq!(y, array![[4.0f32]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStack<W = Box<dyn LinOp>> {
    layers: Vec<Layer<W>>,
}

impl LayerStack {
    /// Checks that there is at least one layer and that the widths chain.
    pub fn new(layers: Vec<Layer>) -> Result<Self> {
        Self::from_layers(layers)
    }
}

impl<W: LinOp> LayerStack<W> {
    /// As [`LayerStack::new`], for layers that store a `W` each.
    pub fn from_layers(layers: Vec<Layer<W>>) -> Result<Self> {
        if layers.is_empty() {
            return Err(TrainingError::NoLayers.into());
        }
        check_chain(layers.iter().map(|l| (l.in_dim(), l.out_dim())))?;
        Ok(LayerStack { layers })
    }

    /// A stack from layers already checked to chain (at least one).
    pub(super) fn from_checked(layers: Vec<Layer<W>>) -> Self {
        debug_assert!(!layers.is_empty());
        LayerStack { layers }
    }

    /// The layers, in order (each dereferences to its weight).
    pub fn layers(&self) -> &[Layer<W>] {
        &self.layers
    }

    /// Gives the layers back (e.g. to make each one a pipeline stage).
    pub fn into_layers(self) -> Vec<Layer<W>> {
        self.layers
    }

    /// The biases, one per layer (zeros where a layer has none).
    pub fn biases(&self) -> Vec<Array1<f32>> {
        self.layers
            .iter()
            .map(|l| match &l.bias {
                Some(b) => b.clone(),
                None => Array1::zeros(l.out_dim()),
            })
            .collect()
    }

    /// Replaces the weight and bias of layer `i` (same shapes); its
    /// activation stays.
    pub fn set_layer(&mut self, i: usize, w: W, b: Array1<f32>) -> Result<()> {
        let count = self.layers.len();
        let old = self.layers.get_mut(i).ok_or(TrainingError::NoSuchLayer {
            what: "layer",
            layer: i,
            count,
        })?;
        if old.op.shape() != w.shape() || b.len() != w.shape().0 {
            return Err(SquishError::shape(
                "set_layer",
                format!("{:?} with {} biases", old.op.shape(), old.op.shape().0),
                format!("{:?} with {} biases", w.shape(), b.len()),
            ));
        }
        old.op = w;
        old.bias = Some(b);
        Ok(())
    }

    /// The outputs, each layer's product on `exec` (as [`Forward::forward`]).
    pub fn forward_on<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        self.run(x, self.layers.len(), exec)
    }

    /// Output of hidden layer `layer` (after its activation, as
    /// [`Mlp::hidden`](super::Mlp::hidden)), on one thread.
    pub fn hidden<'a>(&self, x: impl AsArray<'a, f32, Ix2>, layer: usize) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        check_hidden_layer(layer, self.layers.len())?;
        self.run(x, layer + 1, &crate::parallel::Sequential)
    }

    /// Classification accuracy of the outputs (logits), each layer's
    /// product on `exec`.
    pub fn accuracy_on<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        labels: &[usize],
        exec: &dyn ParallelExecutor,
    ) -> Result<f64> {
        let x: ArrayView2<'a, f32> = x.into();
        let logits = self.forward_on(x, exec)?;
        checked_accuracy(logits.view(), labels)
    }

    /// Runs the first `upto` layers.
    fn run(
        &self,
        x: ArrayView2<f32>,
        upto: usize,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let mut h = self.layers[0].forward(x, exec)?;
        for l in &self.layers[1..upto] {
            h = l.forward(h.view(), exec)?;
        }
        Ok(h)
    }
}

/// The model-parallel runners ([`DataParallel`](crate::parallel::DataParallel),
/// [`LayerPipeline`](crate::parallel::LayerPipeline)) drive any stack.
impl<W: LinOp> Forward for LayerStack<W> {
    fn in_dim(&self) -> usize {
        self.layers[0].in_dim()
    }

    fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].out_dim()
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.forward_on(x, exec)
    }
}

/// A stack's layers as pipeline stages, for
/// [`LayerPipeline::params`](crate::parallel::LayerPipeline::params).
impl<W: LinOp + 'static> From<LayerStack<W>> for Vec<Box<dyn Forward>> {
    fn from(stack: LayerStack<W>) -> Self {
        stack
            .into_layers()
            .into_iter()
            .map(|l| Box::new(l) as Box<dyn Forward>)
            .collect()
    }
}
