//! A stack of [`Layer`]s (a [`LinOp`] weight, an optional bias, an
//! [`Activation`]) that the parallel runners drive through [`Forward`].

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::{Activation, TrainingError};
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::{check_chain, Forward, ParallelExecutor};

/// One layer: `act(x · Wᵀ + b)` with any [`LinOp`] as `W` (dense or compressed).
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
pub struct Layer {
    op: Box<dyn LinOp>,
    bias: Option<Array1<f32>>,
    act: Activation,
}

impl Layer {
    /// A layer with weight `op`, no bias and the identity activation.
    pub fn new(op: impl LinOp + 'static) -> Self {
        Self::boxed(Box::new(op))
    }

    /// A layer from a boxed weight.
    pub fn boxed(op: Box<dyn LinOp>) -> Self {
        Layer {
            op,
            bias: None,
            act: Activation::Identity,
        }
    }

    /// Sets the bias; it must have `out` finite entries.
    pub fn with_bias(mut self, bias: ArrayView1<f32>) -> Result<Self> {
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
    pub fn op(&self) -> &dyn LinOp {
        self.op.as_ref()
    }
}

impl Forward for Layer {
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
pub struct LayerStack {
    layers: Vec<Layer>,
}

impl LayerStack {
    /// Checks that there is at least one layer and that the widths chain.
    pub fn new(layers: Vec<Layer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(TrainingError::NoLayers.into());
        }
        check_chain(layers.iter().map(|l| (l.in_dim(), l.out_dim())))?;
        Ok(LayerStack { layers })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Gives the layers back (e.g. to make each one a pipeline stage).
    pub fn into_layers(self) -> Vec<Layer> {
        self.layers
    }
}

impl Forward for LayerStack {
    fn in_dim(&self) -> usize {
        self.layers[0].in_dim()
    }

    fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].out_dim()
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        let mut h = self.layers[0].forward(x, exec)?;
        for l in &self.layers[1..] {
            h = l.forward(h.view(), exec)?;
        }
        Ok(h)
    }
}

/// A stack's layers as pipeline stages, for
/// [`LayerPipeline::params`](crate::parallel::LayerPipeline::params).
impl From<LayerStack> for Vec<Box<dyn Forward>> {
    fn from(stack: LayerStack) -> Self {
        stack
            .into_layers()
            .into_iter()
            .map(|l| Box::new(l) as Box<dyn Forward>)
            .collect()
    }
}
