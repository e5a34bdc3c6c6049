//! [`CompressedMlp`]: the layer stack over compressed weight matrices, with
//! the MLP constructors and storage accounting.

use ndarray::{Array1, Array2, ArrayView2, AsArray, Ix2};

use super::{Activation, Dense, Layer, LayerStack, Mlp};
use crate::error::{Result, SquishError};
use crate::matrix::CompressedMatrix;
use crate::parallel::{ParallelExecutor, Sequential};

/// An MLP whose weights are [`CompressedMatrix`]es (any structure ×
/// encoding), multiplied without decompressing: the one layer stack,
/// [`LayerStack`], over compressed weights. The hidden layers share one
/// activation; the last layer gives logits. Accuracy after compression is
/// measured with it, not guessed.
///
/// ```
/// use squish::prelude::*;
/// use squish::training::{CompressedMlp, Mlp};
/// let mlp: Mlp = Mlp::params(&[8, 16, 4]).check()?;
/// let q = IntQuantizer::params(8).check()?;
/// let c = CompressedMlp::from_mlp(&mlp, &|_, m| q.quantize(m))?;
/// let x = ndarray::Array2::<f32>::ones((3, 8));
/// let (a, b) = (mlp.forward(x.view())?, c.forward(x.view())?);
/// assert!((&a - &b).iter().all(|d| d.abs() < 0.05));
/// assert_eq!(c.layers()[0].encoding(), "int8"); // a layer derefs to its weight
/// # Ok::<(), squish::SquishError>(())
/// ```
pub type CompressedMlp = LayerStack<CompressedMatrix>;

impl LayerStack<CompressedMatrix> {
    /// Compresses every layer of `mlp` with `compress(layer index, dense
    /// weight)`; biases stay f32.
    pub fn from_mlp(
        mlp: &Mlp<f32>,
        compress: &dyn Fn(usize, &CompressedMatrix) -> Result<CompressedMatrix>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(mlp.layers.len());
        for (i, d) in mlp.layers.iter().enumerate() {
            layers.push(compress(i, &CompressedMatrix::from_dense(d.w.view())?)?);
        }
        let biases = mlp.layers.iter().map(|d| d.b.clone()).collect();
        Self::from_parts(layers, biases, mlp.activation)
    }

    /// A network from compressed weights and f32 biases; shapes must chain.
    /// `activation` follows every layer but the last.
    pub fn from_parts(
        layers: Vec<CompressedMatrix>,
        biases: Vec<Array1<f32>>,
        activation: Activation,
    ) -> Result<Self> {
        if layers.is_empty() || layers.len() != biases.len() {
            return Err(SquishError::shape(
                "compressed mlp",
                "one bias per layer, at least one layer",
                format!("{} layers, {} biases", layers.len(), biases.len()),
            ));
        }
        for (i, (w, b)) in layers.iter().zip(&biases).enumerate() {
            if w.rows() != b.len() {
                return Err(SquishError::shape(
                    "compressed mlp bias",
                    format!("layer {i}: {} values", w.rows()),
                    format!("{}", b.len()),
                ));
            }
            if i > 0 && layers[i - 1].rows() != w.cols() {
                return Err(SquishError::shape(
                    "compressed mlp layers",
                    format!("layer {i} with {} inputs", layers[i - 1].rows()),
                    format!("{} inputs", w.cols()),
                ));
            }
        }
        let n = layers.len();
        let stack = layers
            .into_iter()
            .zip(biases)
            .enumerate()
            .map(|(i, (w, b))| {
                let act = if i + 1 < n {
                    activation
                } else {
                    Activation::Identity
                };
                Layer {
                    op: w,
                    bias: Some(b),
                    act,
                }
            })
            .collect();
        Ok(Self::from_checked(stack))
    }

    /// The hidden activation (the identity for a single layer: it has no
    /// hidden layer).
    pub fn activation(&self) -> Activation {
        match self.layers() {
            [first, _, ..] => first.act(),
            _ => Activation::Identity,
        }
    }

    /// Total stored bytes of the weights and f32 biases.
    pub fn bytes(&self) -> usize {
        self.layers()
            .iter()
            .map(|l| l.storage().total() + l.bias().map_or(0, |b| b.len() * 4))
            .sum()
    }

    /// Logits on one thread.
    pub fn forward<'a>(&self, x: impl AsArray<'a, f32, Ix2>) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        self.forward_on(x, &Sequential)
    }

    /// Old name of [`forward_on`](Self::forward_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed `forward_on`: `_on` takes an executor"
    )]
    pub fn forward_with(
        &self,
        x: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.forward_on(x, exec)
    }

    /// Old name of [`accuracy_on`](Self::accuracy_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed `accuracy_on`: `_on` takes an executor"
    )]
    pub fn accuracy_with(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        exec: &dyn ParallelExecutor,
    ) -> Result<f64> {
        self.accuracy_on(x, labels, exec)
    }

    /// The dense network these weights decode to.
    pub fn to_mlp(&self) -> Result<Mlp<f32>> {
        let layers = self
            .layers()
            .iter()
            .zip(self.biases())
            .map(|(w, b)| Dense::new(w.to_dense(), b))
            .collect::<Result<Vec<_>>>()?;
        Mlp::from_layers(layers, self.activation())
    }
}
