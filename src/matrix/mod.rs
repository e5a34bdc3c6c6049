//! The core representation: a compressed matrix is a **structure** (where the
//! stored values sit) times a **value encoding** (how they are written).
//!
//! Passes change one part and keep the other, so they compose: pruning turns
//! a dense structure into CSR and keeps f32 values; quantization keeps the
//! structure and re-encodes the values; low rank splits a matrix into two
//! factors, each again a compressed matrix.

pub(crate) mod aligned;
mod bitpack;
mod check;
mod compressed;
mod error;
mod hessian;
mod layout;
mod linop;
#[cfg(test)]
pub(crate) mod obs_testing;
pub mod reference;
mod storage;
mod structure;
mod values;

/// Moved to [`crate::kernels`] (the dispatch sits above the core).
#[deprecated(note = "the dispatch moved to squish::kernels (use CompressedMatrix::matmul)")]
pub use crate::kernels::dispatch as kernels;
pub use bitpack::{index_bits, PackedBits};
pub(crate) use check::check_matrix;
pub use compressed::CompressedMatrix;
pub use error::MatrixError;
pub(crate) use hessian::check_obs_inputs;
pub use hessian::{check_obs_knobs, obs_sweep, HessianError, InverseHessian, ObsColumns};
pub use layout::RowLayout;
pub use linop::LinOp;
pub use storage::{Component, StorageReport, METADATA_BYTES};
pub use structure::{ColIndices, Csr, KeptRows, LowRank, Structure, NM};
pub use values::{
    nibble_to_i8, BinaryValues, CodebookScope, CodebookValues, F32Values, Granularity, Int4Values,
    Int8Values, QuantParams, TernaryValues, Values, TERNARY_MINUS, TERNARY_PLUS, TERNARY_ZERO,
};
