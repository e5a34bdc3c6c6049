//! Low-rank approximation: W ≈ A·B from a truncated SVD.
//!
//! - [`Svd::exact`]: the thin SVD on faer (default, pure Rust) or LAPACK
//!   (`--features lapack`, system OpenBLAS).
//! - [`RandomizedSvd`]: Halko–Martinsson–Tropp with oversampling, power
//!   iterations and an a-posteriori error estimate; seeded and deterministic.
//! - [`RankSelection`]: fixed rank, energy fraction, target error, target
//!   compression ratio or byte budget, all checked.
//! - [`LowRank`]: the [`CompressionPass`](crate::pass::CompressionPass); it
//!   stores A = U_r·Σ_r^{1/2} and B = Σ_r^{1/2}·V_rᵀ as dense f32 compressed
//!   matrices, so a later quantizer quantizes each factor.
//! - [`kernel`]: y = (x·Bᵀ)·Aᵀ without forming W.
//!
//! See `docs/lowrank.md` for the method and the rules.

mod cholqr;
mod error;
mod faer_backend;
#[cfg(feature = "lapack")]
mod lapack_backend;
mod pass;
mod randomized;
mod rank;
mod svd;

pub use error::LowRankError;
pub use pass::{factorize, Factorization, LowRank, LowRankParams, SvdMethod};
pub use randomized::{ErrorEstimate, RandomizedOutput, RandomizedSvd, RandomizedSvdParams};
pub use rank::{factored_bytes, RankSelection};
pub use svd::{Svd, SvdBackend};

/// Moved to [`crate::kernels::lowrank`] (all kernels sit in one place).
#[deprecated(note = "the factored kernel moved to squish::kernels::lowrank")]
pub use crate::kernels::lowrank as kernel;
