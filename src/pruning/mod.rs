//! Pruning: removing weights.
//!
//! * Unstructured: [`Magnitude`] (per matrix, O(n) selection), [`Global`]
//!   (one threshold over named matrices), [`Importance`] and [`Wanda`]
//!   (data-aware scores).
//! * Structured: [`Structured`] removes whole rows (→ kept rows, physically
//!   smaller) or columns by Ln norm; [`dead_next_inputs`] tells which inputs
//!   of the next layer died with them.
//! * Semi-structured: [`NMPruner`] keeps N of every M (→ the N:M structure).
//! * [`Schedule`]: the sparsity a training loop enforces at each step.
//! * [`Prune`]: a pruner as a pipeline pass. The CSR, N:M and kept-rows
//!   kernels live in [`crate::kernels::sparse`].
//!
//! Every pruner removes weights in ascending (score, row-major position)
//! order: among equal scores, the earlier weight goes first.

mod error;
mod global;
mod importance;
pub(crate) mod magnitude;
mod nm;
mod proximal;
mod prune;
mod schedule;
mod select;
mod sparsegpt;
mod structured;
mod to_csr;

pub use crate::pass::Pruner;
pub use error::PruningError;
pub use global::{Global, GlobalParams};
pub use importance::{
    wanda_scores, Importance, ImportanceParams, Scope, Wanda, WandaParams, WandaPass,
};
pub use magnitude::{Magnitude, MagnitudeParams};
pub use nm::{NMPruner, NMPrunerParams};
pub use proximal::{group_soft_threshold_rows, near_zero_mask, soft_threshold, surviving_rows};
pub use prune::Prune;
pub use schedule::{CubicParams, Schedule};
pub use select::{prune_count, Selection};
pub use sparsegpt::{
    nm_from_mask, Rounder, SparseGpt, SparseGptOutput, SparseGptParams, SparsityPattern,
};
pub use structured::{dead_next_inputs, Slice, Structured, StructuredParams};

/// Moved to [`crate::kernels::sparse`] (all kernels sit in one place).
#[deprecated(note = "the sparse kernels moved to squish::kernels::sparse")]
pub mod kernels {
    pub use crate::kernels::sparse::*;

    /// Renamed [`dense_rows_matmul`]
    /// (one `dense_matmul` is left, in [`crate::kernels`]).
    #[deprecated(note = "use squish::kernels::sparse::dense_rows_matmul")]
    pub use crate::kernels::sparse::dense_rows_matmul as dense_matmul;

    /// The one tier enum is [`crate::kernels::Tier`].
    #[deprecated(note = "use squish::kernels::Tier")]
    pub type KernelPath = crate::kernels::Tier;
}
