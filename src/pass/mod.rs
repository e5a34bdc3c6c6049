//! The pass traits of the core: [`CompressionPass`] (one step of a
//! pipeline), [`Pruner`] and [`Quantizer`]. The families implement them; the
//! [`Prune`] and [`Quantize`]
//! adapters that turn a pruner or quantizer into a pass live in the families.
//! Data-aware passes ([`CalibratedPass`], [`DataAware`]) read a layer's
//! calibration statistics ([`LayerStats`], by layer name in a
//! [`CalibrationContext`]).

mod calibrated;
mod pruner;
mod quantizer;
mod stats;

pub use calibrated::{
    check_input_scales, dense_f32, CalibratedPass, CalibrationContext, CalibrationError, DataAware,
    DataFree, ScaledMatrix, TARGET_DAMP,
};
pub use stats::LayerStats;

pub(crate) use calibrated::stats_and_weight;
pub(crate) use pruner::prunable_dense;
pub use pruner::Pruner;
pub use quantizer::Quantizer;

use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;

/// A transformation of a compressed matrix into another.
///
/// Passes change the structure or the value encoding and keep the other
/// part, so they compose in a [`Pipeline`](crate::pipeline::Pipeline). A pass
/// that cannot take its input (say, pruning a binary matrix) returns
/// [`SquishError::Incompatible`](crate::SquishError::Incompatible).
///
/// Forgetting `.check()` on a builder points at the fix (the compiler's
/// message names `.check()?`):
///
/// ```compile_fail
/// use squish::prelude::*;
/// let _ = Pipeline::new().then(LowRank::params(RankSelection::Fixed(8))); // `.check()?` missing
/// ```
///
/// ```
/// use squish::prelude::*;
/// let _ = Pipeline::new().then(LowRank::params(RankSelection::Fixed(8)).check()?);
/// # Ok::<(), squish::SquishError>(())
/// ```
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

impl<P: CompressionPass + ?Sized> CompressionPass for Box<P> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn apply(&self, m: &CompressedMatrix, exec: &dyn ParallelExecutor) -> Result<CompressedMatrix> {
        (**self).apply(m, exec)
    }
}

// Old paths of the adapters, which moved into their families (kept for one release).
/// Moved to [`crate::pruning::Prune`].
#[deprecated(note = "moved to squish::pruning::Prune")]
pub use crate::pruning::Prune;
/// Moved to [`crate::quantization::Quantize`].
#[deprecated(note = "moved to squish::quantization::Quantize")]
pub use crate::quantization::Quantize;
