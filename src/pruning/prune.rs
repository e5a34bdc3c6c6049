//! [`Prune`]: a [`Pruner`] as a pipeline pass, and [`Pipeline::prune`].

use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;
use crate::pass::{CompressionPass, Pruner};
use crate::pipeline::Pipeline;

/// Adapts any [`Pruner`] into a [`CompressionPass`]; the pass runs
/// [`Pruner::prune_on`] on the pipeline's executor.
#[derive(Clone, Debug)]
pub struct Prune<P>(pub P);

impl<P: Pruner> CompressionPass for Prune<P> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn apply(&self, m: &CompressedMatrix, exec: &dyn ParallelExecutor) -> Result<CompressedMatrix> {
        self.0.prune_on(m, exec)
    }
}

impl Pipeline {
    /// Appends a pruner.
    pub fn prune(self, p: impl Pruner + 'static) -> Self {
        self.then(Prune(p))
    }
}
