//! A minimal model abstraction for parallel inference: [`Forward`], and a
//! stack of [`Layer`]s (a [`LinOp`] weight, an optional bias, an activation).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::ParallelError;
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::LinOp;
use crate::parallel::ParallelExecutor;

/// Anything that maps a batch `[batch, in_dim]` to `[batch, out_dim]`, row by
/// row: a weight matrix, a layer, a whole model.
///
/// Implementations must treat batch rows independently (row `b` of the output
/// depends only on row `b` of the input); the data-parallel and pipelined
/// runners rely on it to split batches. Every [`LinOp`] is a `Forward`.
pub trait Forward: Send + Sync {
    /// Input features.
    fn in_dim(&self) -> usize;

    /// Output features.
    fn out_dim(&self) -> usize;

    /// The output for batch `x`; work may be spread over `exec`, the result
    /// must not depend on it.
    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>>;
}

impl<T: LinOp + ?Sized> Forward for T {
    fn in_dim(&self) -> usize {
        self.shape().1
    }

    fn out_dim(&self) -> usize {
        self.shape().0
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.apply(x, exec)
    }
}

/// An elementwise activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// `x`.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^(−x))`.
    Sigmoid,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

/// One layer: `act(x · Wᵀ + b)` with any [`LinOp`] as `W` (dense or compressed).
///
/// ```
/// use ndarray::array;
/// use squish::parallel::{Activation, Forward, Layer, Sequential};
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
/// use squish::parallel::{Activation, Forward, Layer, LayerStack, Sequential};
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
            return Err(SquishError::from(ParallelError::Zero {
                what: "layers",
                why: "a model needs at least one layer",
            }));
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

/// Checks that each `(in, out)` pair's `out` is the next pair's `in`.
pub(crate) fn check_chain(dims: impl Iterator<Item = (usize, usize)>) -> Result<()> {
    let mut prev: Option<(usize, usize)> = None;
    for (i, (d_in, d_out)) in dims.enumerate() {
        if let Some((_, p_out)) = prev {
            if p_out != d_in {
                return Err(SquishError::shape(
                    "layer chain",
                    format!("layer {i} with {p_out} inputs (layer {} outputs)", i - 1),
                    format!("layer {i} with {d_in} inputs"),
                ));
            }
        }
        prev = Some((d_in, d_out));
    }
    Ok(())
}

/// Checks a batch for a model with `in_dim` inputs: non-empty, right width.
pub(crate) fn check_batch(x: ArrayView2<f32>, in_dim: usize) -> Result<()> {
    if x.ncols() != in_dim {
        return Err(SquishError::shape(
            "forward",
            format!("x with {in_dim} columns"),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    crate::error::check_non_empty("batch", x.nrows(), x.ncols())
}
