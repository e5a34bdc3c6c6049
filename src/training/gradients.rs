//! [`Gradients`]: ∂L/∂(every parameter) of an [`Mlp`](super::Mlp).

use super::{DenseGrad, Scalar};
use crate::error::{Result, SquishError};

/// One [`DenseGrad`] per layer, in layer order.
///
/// Gradients of shards of a batch combine by [`add`](Self::add) and
/// [`scale`](Self::scale): the gradient of the mean loss over a batch split
/// into shards of sizes `n_k` is `Σ_k (n_k / n)·g_k`. Reducing the shards in
/// a fixed order makes data-parallel training independent of the thread count.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<F: Scalar = f32> {
    /// Per-layer gradients.
    pub layers: Vec<DenseGrad<F>>,
}

impl<F: Scalar> Gradients<F> {
    /// `self += other`; the shapes must match.
    pub fn add(&mut self, other: &Gradients<F>) -> Result<()> {
        if self.layers.len() != other.layers.len()
            || self
                .layers
                .iter()
                .zip(&other.layers)
                .any(|(a, b)| a.w.dim() != b.w.dim() || a.b.len() != b.b.len())
        {
            return Err(SquishError::shape(
                "gradients add",
                "gradients of the same network",
                "gradients of a different shape",
            ));
        }
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.w += &b.w;
            a.b += &b.b;
        }
        Ok(())
    }

    /// `self *= s`.
    pub fn scale(&mut self, s: F) {
        for g in &mut self.layers {
            g.w.mapv_inplace(|v| v * s);
            g.b.mapv_inplace(|v| v * s);
        }
    }

    /// The Euclidean norm over all parameters (in f64).
    pub fn norm(&self) -> f64 {
        self.layers
            .iter()
            .flat_map(|g| g.w.iter().chain(g.b.iter()))
            .map(|v| v.f64() * v.f64())
            .sum::<f64>()
            .sqrt()
    }
}
