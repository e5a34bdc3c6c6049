//! Quantization-aware training with the straight-through estimator.

use std::fmt;
use std::sync::Arc;

use super::Mlp;
use crate::error::Result;
use crate::quantization::{fake_quantize, Quantizer};

/// Trains through a quantizer: each step runs forward and backward on the
/// quantized weights `Q(W)` and applies the gradient to the latent f32 `W`
/// as if `∂Q(W)/∂W = 1` (the straight-through estimator, Bengio et al. 2013;
/// used by BinaryConnect, XNOR-Net, TWN). Works with any [`Quantizer`]:
/// int8, int4, binary, ternary.
#[derive(Clone)]
pub struct StraightThrough {
    quantizer: Arc<dyn Quantizer>,
    layers: Option<Vec<usize>>,
}

impl fmt::Debug for StraightThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StraightThrough")
            .field("quantizer", &self.quantizer.name())
            .field("layers", &self.layers)
            .finish()
    }
}

impl StraightThrough {
    /// Quantizes every layer with `quantizer`.
    pub fn new(quantizer: Arc<dyn Quantizer>) -> Self {
        StraightThrough {
            quantizer,
            layers: None,
        }
    }

    /// Quantizes only these layers (0-based); the others stay f32.
    pub fn layers(mut self, layers: &[usize]) -> Self {
        self.layers = Some(layers.to_vec());
        self
    }

    /// The quantizer.
    pub fn quantizer(&self) -> &dyn Quantizer {
        self.quantizer.as_ref()
    }

    /// Whether layer `l` is quantized.
    pub fn applies_to(&self, l: usize) -> bool {
        self.layers.as_ref().is_none_or(|v| v.contains(&l))
    }

    /// A copy of `mlp` whose selected weights are `Q(W)` decoded to f32: the
    /// network the forward and backward passes of a step run on.
    pub fn quantized(&self, mlp: &Mlp<f32>) -> Result<Mlp<f32>> {
        let mut q = mlp.clone();
        for (l, d) in q.layers.iter_mut().enumerate() {
            if self.applies_to(l) {
                d.w = fake_quantize(d.w.view(), self.quantizer.as_ref())?;
            }
        }
        Ok(q)
    }
}
