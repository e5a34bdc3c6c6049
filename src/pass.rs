//! [`CompressionPass`]: one step of a pipeline.

use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;
use crate::pruning::Pruner;
use crate::quantization::Quantizer;

/// A transformation of a compressed matrix into another.
///
/// Passes change the structure or the value encoding and keep the other
/// part, so they compose in a [`Pipeline`](crate::pipeline::Pipeline). A pass
/// that cannot take its input (say, pruning a binary matrix) returns
/// [`SquishError::Incompatible`](crate::SquishError::Incompatible).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `CompressionPass`; a `…Params` builder becomes one through `.check()?`",
    label = "call `.check()?` on this builder first",
    note = "builders are validated once, before any work: e.g. `LowRank::params(RankSelection::Fixed(32)).check()?`"
)]
pub trait CompressionPass: Send + Sync {
    /// Name shown in reports, with the main parameters (e.g. `"prune 50%"`).
    fn name(&self) -> String;

    /// Applies the pass. Work may be spread over `exec`; the result must not
    /// depend on it.
    fn apply(&self, m: &CompressedMatrix, exec: &dyn ParallelExecutor) -> Result<CompressedMatrix>;
}

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

/// Adapts any [`Pruner`] into a [`CompressionPass`].
#[derive(Clone, Debug)]
pub struct Prune<P>(pub P);

impl<P: Pruner> CompressionPass for Prune<P> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn apply(
        &self,
        m: &CompressedMatrix,
        _exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        self.0.prune(m)
    }
}
