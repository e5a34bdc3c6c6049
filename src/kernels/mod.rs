//! Every fast kernel of the crate, in one place, above the representation.
//!
//! The core ([`matrix`](crate::matrix)) holds the structure × encoding
//! representation and the plain [reference kernel](crate::matrix::reference);
//! this module holds everything faster, and the one [dispatch] that
//! picks the fastest kernel for each structure × encoding pair
//! ([`CompressedMatrix::matmul`](crate::matrix::CompressedMatrix::matmul) is
//! defined there). Families build on these kernels; the kernels use only the
//! core (`matrix`, `parallel`, `error`).
//!
//! * SIMD layer: [`Tier`] (the CPU tiers and their one run-time detection),
//!   the `multiversion!` helper (one plain-Rust body compiled per tier, picked
//!   at run time), [`row_blocks`] (yᵀ built in fixed blocks of W's rows,
//!   then transposed).
//! * [`dense`]: dense f32 GEMM split by rows ([`dense_matmul`]); `gemv`:
//!   W streamed once for a few input rows (dense f32 and the encodings).
//! * [`quant`]: int8, int4, binary, ternary weights, and int8 × int8.
//! * [`sparse`]: CSR, N:M and kept rows with f32 values.
//! * [`codebook`]: dense codebook (weight sharing); [`csr_codebook`]: CSR with
//!   codebook values (Deep Compression).
//! * `nm24`: 2:4 rows with the input permuted to the stored values in
//!   registers (AVX-512), at every batch size, for blocks too large for a
//!   decoded copy ([`decoded_copy`]).
//! * [`lowrank`]: factored `(x·Bᵀ)·Aᵀ`, on the blocked products of [`gemm`].
//! * [`split`]: one weight matrix split by rows or columns over workers.
//! * [`tile`]: weight-only products at every batch size, one dot-product
//!   order per output (decoded tiles, or codes decoded in registers).
//!
//! Every kernel splits work along boundaries that depend on the matrix only,
//! so results are bit-identical on every executor, and each is tested against
//! the reference kernel.

/// Compiles one plain-Rust body per [`Tier`] (AVX-512, AVX2 + FMA, baseline)
/// as safe `#[target_feature]` functions and calls the best one the CPU has
/// ([`Tier::detect`]); the compiler vectorizes the loops. The body must be an
/// `#[inline(always)]` function so that each copy is compiled with its
/// features. No fast-math: each copy computes the same bits.
///
/// ```text
/// multiversion! {
///     /// Docs of the public function.
///     pub(crate) fn sum<V: Trait>(v: &V, x: &[f32]) -> f32 => sum_portable;
/// }
/// ```
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$($g:ident: $bound:path),+>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident;) => {
        $(#[$m])*
        $vis fn $name $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernels::Tier;
                let tier = Tier::detect();
                if tier >= Tier::Avx512 {
                    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                    fn v512 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                    // SAFETY: `Tier::Avx512` is only detected with these features.
                    return unsafe { v512($($arg),*) };
                }
                if tier >= Tier::Avx2 {
                    #[target_feature(enable = "avx2,fma")]
                    fn v256 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                    // SAFETY: `Tier::Avx2` is only detected with these features.
                    return unsafe { v256($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

pub mod cache;
pub mod codebook;
pub mod csr_codebook;
pub mod decoded_copy;
pub mod dense;
pub mod dispatch;
pub mod gemm;
pub(crate) mod gemv;
#[cfg(target_arch = "x86_64")]
mod lane_sums;
pub mod lowrank;
#[cfg(target_arch = "x86_64")]
mod nm24;
pub mod quant;
pub mod sparse;
pub mod split;
mod tier;
pub mod tile;

pub use crate::parallel::row_blocks;
pub use dense::dense_matmul;
pub use split::{ByCols, ByRows, ColSplit, RowSplit, Split, SplitAxis};
pub use tier::Tier;
