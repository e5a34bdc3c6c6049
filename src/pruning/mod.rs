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
//! * [`kernels`]: the CSR, N:M and kept-rows multiplication kernels
//!   [`CompressedMatrix::matmul`](crate::matrix::CompressedMatrix::matmul) uses.
//!
//! Every pruner removes weights in ascending (score, row-major position)
//! order: among equal scores, the earlier weight goes first.

mod error;
mod global;
mod importance;
pub mod kernels;
pub(crate) mod magnitude;
mod nm;
mod pruner;
mod schedule;
mod select;
mod sparsegpt;
mod structured;

pub use error::PruningError;
pub use global::{Global, GlobalParams};
pub use importance::{wanda_scores, Importance, ImportanceParams, Scope, Wanda, WandaParams};
pub use magnitude::{Magnitude, MagnitudeParams};
pub use nm::{NMPruner, NMPrunerParams};
pub use pruner::Pruner;
pub use schedule::{CubicParams, Schedule};
pub use select::{prune_count, Selection};
pub use sparsegpt::{
    nm_from_mask, Rounder, SparseGpt, SparseGptOutput, SparseGptParams, SparsityPattern,
};
pub use structured::{dead_next_inputs, Slice, Structured, StructuredParams};
