//! [`Masks`]: which weights stay at zero during training.

use ndarray::Array2;

use super::TrainingError;
use super::{Gradients, Mlp};
use crate::error::{Result, SquishError};
use crate::pruning::near_zero_mask;

/// One optional keep-mask (`true` = trainable) per layer's weight.
///
/// While a network trains with masks, pruned weights and their gradients are
/// held at exactly zero, so fine-tuning after pruning keeps the sparsity.
#[derive(Clone, Debug, PartialEq)]
pub struct Masks {
    layers: Vec<Option<Array2<bool>>>,
}

impl Masks {
    /// No masks for a network of `n` layers.
    pub fn none(n: usize) -> Self {
        Masks {
            layers: vec![None; n],
        }
    }

    /// Masks from explicit per-layer keep-masks, checked against `mlp`.
    pub fn new(mlp: &Mlp<f32>, layers: Vec<Option<Array2<bool>>>) -> Result<Self> {
        let m = Masks { layers };
        m.check(mlp)?;
        Ok(m)
    }

    /// Keeps `|w| > tol` in the listed layers: prunes what a regularizer
    /// drove to (near) zero.
    pub fn near_zero(mlp: &Mlp<f32>, tol: f32, layers: &[usize]) -> Result<Self> {
        let mut m = Masks::none(mlp.layers.len());
        for &l in layers {
            let d = mlp.layers.get(l).ok_or(TrainingError::NoSuchLayer {
                what: "layer",
                layer: l,
                count: mlp.layers.len(),
            })?;
            m.layers[l] = Some(near_zero_mask(d.w.view(), tol));
        }
        Ok(m)
    }

    /// The mask of layer `l`, if any.
    pub fn layer(&self, l: usize) -> Option<&Array2<bool>> {
        self.layers.get(l).and_then(Option::as_ref)
    }

    /// Sets the mask of layer `l`.
    pub(crate) fn set(&mut self, l: usize, mask: Array2<bool>) {
        self.layers[l] = Some(mask);
    }

    /// Fraction of masked (pruned) weights in layer `l` (0 without a mask).
    pub fn sparsity(&self, l: usize) -> f64 {
        self.layer(l).map_or(0.0, |m| {
            m.iter().filter(|&&k| !k).count() as f64 / m.len() as f64
        })
    }

    pub(crate) fn check(&self, mlp: &Mlp<f32>) -> Result<()> {
        if self.layers.len() != mlp.layers.len() {
            return Err(SquishError::shape(
                "masks",
                format!("{} layers", mlp.layers.len()),
                format!("{}", self.layers.len()),
            ));
        }
        for (m, d) in self.layers.iter().zip(&mlp.layers) {
            if let Some(m) = m {
                if m.dim() != d.w.dim() {
                    return Err(SquishError::shape(
                        "mask",
                        format!("{:?}", d.w.dim()),
                        format!("{:?}", m.dim()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Zeroes the pruned weights.
    pub fn apply(&self, mlp: &mut Mlp<f32>) {
        for (m, d) in self.layers.iter().zip(&mut mlp.layers) {
            if let Some(m) = m {
                d.w.zip_mut_with(m, |w, &k| {
                    if !k {
                        *w = 0.0
                    }
                });
            }
        }
    }

    /// Zeroes the gradients of pruned weights.
    pub fn apply_to_gradients(&self, grads: &mut Gradients<f32>) {
        for (m, g) in self.layers.iter().zip(&mut grads.layers) {
            if let Some(m) = m {
                g.w.zip_mut_with(m, |w, &k| {
                    if !k {
                        *w = 0.0
                    }
                });
            }
        }
    }
}
