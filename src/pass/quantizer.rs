//! The [`Quantizer`] trait.

use crate::error::{Result, SquishError};
use crate::matrix::{CompressedMatrix, F32Values, Values};
use crate::parallel::ParallelExecutor;

/// Re-encodes stored f32 values with fewer bits, keeping the structure.
///
/// A quantizer sees only the values and their [row layout](crate::matrix::RowLayout),
/// so it works on every structure: dense, CSR, N:M, kept rows and each factor
/// of a low-rank matrix. Wrap it in [`Quantize`](crate::quantization::Quantize) (or use
/// [`Pipeline::quantize`](crate::pipeline::Pipeline::quantize)) to put it in a pipeline.
///
/// Forgetting `.check()` on a builder points at the fix:
///
/// ```compile_fail
/// use squish::prelude::*;
/// let _ = Pipeline::new().quantize(IntQuantizer::params(8)); // `.check()?` missing
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Quantizer`; a `…Params` builder becomes one through `.check()?`",
    label = "call `.check()?` on this builder first",
    note = "builders are validated once, before any work: e.g. `IntQuantizer::params(8).check()?`"
)]
pub trait Quantizer: Send + Sync {
    /// Name shown in reports (e.g. `"int8 sym per-row"`).
    fn name(&self) -> String;

    /// Encodes f32 values; the result must have the same layout.
    fn quantize_values(&self, values: &F32Values) -> Result<Values>;

    /// [`quantize_values`](Self::quantize_values) with the work spread over
    /// `exec`; the result must not depend on the executor. Defaults to the
    /// single-threaded version.
    fn quantize_values_on(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        // An implementation written against the old name keeps its override.
        #[allow(deprecated)]
        self.quantize_values_with(values, exec)
    }

    /// Old name of [`quantize_values_on`](Self::quantize_values_on); implement
    /// that one instead.
    #[deprecated(
        since = "0.2.0",
        note = "renamed `quantize_values_on`: `_on` takes an executor"
    )]
    fn quantize_values_with(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        let _ = exec;
        self.quantize_values(values)
    }

    /// Re-encodes the values of `m` (each factor, for low rank). Values that
    /// are already quantized are rejected: quantize once, from f32.
    fn quantize(&self, m: &CompressedMatrix) -> Result<CompressedMatrix> {
        self.quantize_on(m, &crate::parallel::Sequential)
    }

    /// [`quantize`](Self::quantize) on `exec` (same result for any executor).
    fn quantize_on(
        &self,
        m: &CompressedMatrix,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        m.map_values(&|v| match v {
            Values::F32(f) => self.quantize_values_on(f, exec),
            other => Err(SquishError::Incompatible {
                pass: self.name(),
                structure: m.structure().kind(),
                encoding: other.kind(),
                hint: "values are already encoded; quantize from f32 values",
            }),
        })
    }
}
