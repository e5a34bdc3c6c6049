//! [`CompressedMlp`]: inference through compressed weight matrices.

use ndarray::{Array1, Array2, ArrayView2};

use super::loss::accuracy;
use super::TrainingError;
use super::{Activation, Dense, Mlp};
use crate::error::{Result, SquishError};
use crate::matrix::CompressedMatrix;
use crate::parallel::{ParallelExecutor, Sequential};

/// An MLP whose weights are [`CompressedMatrix`]es (any structure ×
/// encoding), multiplied without decompressing. Accuracy after compression
/// is measured with it, not guessed.
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
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedMlp {
    layers: Vec<CompressedMatrix>,
    biases: Vec<Array1<f32>>,
    activation: Activation,
}

impl CompressedMlp {
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
        Ok(CompressedMlp {
            layers,
            biases,
            activation,
        })
    }

    /// The compressed weights.
    pub fn layers(&self) -> &[CompressedMatrix] {
        &self.layers
    }

    /// The biases.
    pub fn biases(&self) -> &[Array1<f32>] {
        &self.biases
    }

    /// Replaces the weight and bias of layer `i` (same shapes).
    pub fn set_layer(&mut self, i: usize, w: CompressedMatrix, b: Array1<f32>) -> Result<()> {
        let old = self.layers.get(i).ok_or(TrainingError::NoSuchLayer {
            what: "layer",
            layer: i,
            count: self.layers.len(),
        })?;
        if old.shape() != w.shape() || b.len() != w.rows() {
            return Err(SquishError::shape(
                "set_layer",
                format!("{:?} with {} biases", old.shape(), old.rows()),
                format!("{:?} with {} biases", w.shape(), b.len()),
            ));
        }
        self.layers[i] = w;
        self.biases[i] = b;
        Ok(())
    }

    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Total stored bytes of the weights and f32 biases.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|m| m.storage().total())
            .sum::<usize>()
            + self.biases.iter().map(|b| b.len() * 4).sum::<usize>()
    }

    /// Logits on one thread.
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.forward_on(x, &Sequential)
    }

    /// Logits, each layer's product on `exec` (`CompressedMatrix::matmul_on`).
    pub fn forward_on(
        &self,
        x: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.hidden_or_logits(x, self.layers.len(), exec)
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

    /// Activation output of hidden layer `layer` (as [`Mlp::hidden`]).
    pub fn hidden(&self, x: ArrayView2<f32>, layer: usize) -> Result<Array2<f32>> {
        if layer + 1 >= self.layers.len() {
            return Err(TrainingError::NoSuchLayer {
                what: "hidden layer",
                layer,
                count: self.layers.len() - 1,
            }
            .into());
        }
        self.hidden_or_logits(x, layer + 1, &Sequential)
    }

    /// Runs the first `upto` layers; the activation follows all but the last layer.
    fn hidden_or_logits(
        &self,
        x: ArrayView2<f32>,
        upto: usize,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let n = self.layers.len();
        let mut h = self.layers[0].matmul_on(x, exec)? + &self.biases[0];
        for i in 1..upto {
            h = self.activation.forward(h.view());
            h = self.layers[i].matmul_on(h.view(), exec)? + &self.biases[i];
        }
        if upto < n {
            h = self.activation.forward(h.view());
        }
        Ok(h)
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

    /// Classification accuracy, each layer's product on `exec`.
    pub fn accuracy_on(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        exec: &dyn ParallelExecutor,
    ) -> Result<f64> {
        let logits = self.forward_on(x, exec)?;
        if labels.len() != logits.nrows() {
            return Err(SquishError::shape(
                "labels",
                format!("{}", logits.nrows()),
                format!("{}", labels.len()),
            ));
        }
        Ok(accuracy(logits.view(), labels))
    }

    /// The dense network these weights decode to.
    pub fn to_mlp(&self) -> Result<Mlp<f32>> {
        let layers = self
            .layers
            .iter()
            .zip(&self.biases)
            .map(|(w, b)| Dense::new(w.to_dense(), b.clone()))
            .collect::<Result<Vec<_>>>()?;
        Mlp::from_layers(layers, self.activation)
    }
}

/// The model-parallel runners ([`DataParallel`](crate::parallel::DataParallel),
/// [`LayerPipeline`](crate::parallel::LayerPipeline)) drive a compressed
/// network like any other model.
impl crate::parallel::Forward for CompressedMlp {
    fn in_dim(&self) -> usize {
        self.layers[0].cols()
    }

    fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].rows()
    }

    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.forward_on(x, exec)
    }
}
