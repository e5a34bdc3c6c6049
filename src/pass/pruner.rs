//! The [`Pruner`] trait.

use ndarray::{Array2, ArrayView2};

use crate::error::{Result, SquishError};
use crate::matrix::{CompressedMatrix, Structure, Values};
use crate::parallel::ParallelExecutor;

/// Decides which weights survive.
///
/// [`mask`](Pruner::mask) gives a keep-mask for a dense matrix, which a
/// training loop can hold fixed while fine-tuning; [`prune`](Pruner::prune)
/// produces the compressed form (CSR by default; structured pruners override
/// it). Wrap a pruner in [`Prune`](crate::pruning::Prune) (or use
/// [`Pipeline::prune`](crate::pipeline::Pipeline::prune)) to put it in a pipeline.
///
/// Takes views so the trait stays object-safe (`Box<dyn Pruner>`): pass
/// `w.view()`.
///
/// Forgetting `.check()` on a builder points at the fix:
///
/// ```compile_fail
/// use squish::prelude::*;
/// let _ = Pipeline::new().prune(Magnitude::params(0.5)); // `.check()?` missing
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Pruner`; a `…Params` builder becomes one through `.check()?`",
    label = "call `.check()?` on this builder first",
    note = "builders are validated once, before any work: e.g. `Magnitude::params(0.5).check()?`"
)]
pub trait Pruner: Send + Sync {
    /// Name shown in reports (e.g. `"magnitude 50%"`).
    fn name(&self) -> String;

    /// Keep-mask (`true` = keep) for a dense weight matrix.
    fn mask(&self, w: ArrayView2<f32>) -> Result<Array2<bool>>;

    /// Prunes `m`, which must hold f32 values on a dense or CSR structure
    /// (prune before quantizing). The result is CSR with f32 values.
    fn prune(&self, m: &CompressedMatrix) -> Result<CompressedMatrix> {
        let w = prunable_dense(&self.name(), m)?;
        let keep = self.mask(w.view())?;
        CompressedMatrix::csr_from_mask(w.view(), keep.view())
    }

    /// [`mask`](Pruner::mask) with the work spread over `exec`; the result
    /// must not depend on the executor. Defaults to the single-threaded
    /// version.
    fn mask_on(&self, w: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<bool>> {
        let _ = exec;
        self.mask(w)
    }

    /// [`prune`](Pruner::prune) with the work spread over `exec` (what the
    /// [`Prune`](crate::pruning::Prune) pass calls); the result must not
    /// depend on the executor. Defaults to the single-threaded version.
    fn prune_on(
        &self,
        m: &CompressedMatrix,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        let _ = exec;
        self.prune(m)
    }
}

/// The dense f32 view of a matrix a pruner may take, or `Incompatible`.
pub(crate) fn prunable_dense(pass: &str, m: &CompressedMatrix) -> Result<Array2<f32>> {
    match (m.structure(), m.values()) {
        (Structure::Dense | Structure::Csr(_), Some(Values::F32(_))) => Ok(m.to_dense()),
        (s, v) => Err(SquishError::Incompatible {
            pass: pass.to_string(),
            structure: s.kind(),
            encoding: v.map_or("factored", Values::kind),
            hint: "pruning needs f32 values on a dense or CSR matrix; prune before quantizing or factoring",
        }),
    }
}
