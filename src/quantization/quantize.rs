//! [`Quantize`]: a [`Quantizer`] as a pipeline pass, and [`Pipeline::quantize`].

use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;
use crate::pass::{CompressionPass, Quantizer};
use crate::pipeline::Pipeline;

/// Adapts any [`Quantizer`] into a [`CompressionPass`].
#[derive(Clone, Debug)]
pub struct Quantize<Q>(pub Q);

impl<Q: Quantizer> CompressionPass for Quantize<Q> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn apply(&self, m: &CompressedMatrix, exec: &dyn ParallelExecutor) -> Result<CompressedMatrix> {
        self.0.quantize_on(m, exec)
    }
}

impl Pipeline {
    /// Appends a quantizer.
    pub fn quantize(self, q: impl Quantizer + 'static) -> Self {
        self.then(Quantize(q))
    }
}
