//! AVX2 twin of the portable CSR lanes (`portable::scatter_lanes`): the
//! same eight partial sums per output (`k mod 8`), each a multiply then an
//! add (no fused multiply-add, as batch 1's `portable::gather_dot`), folded
//! by the same tree — so every output has the bits of batch 1 — but 8 lanes
//! of the batch a register instead of the portable path's 4 (its
//! baseline-x86-64 build has 128-bit registers only). At 10 % density the
//! portable lanes ran at 0.7–0.9× dense f32 at batch 256 on AVX2.

use std::arch::x86_64::*;
use std::ops::Range;

use super::portable::{fold8, index, load, ColIndex};

/// Outputs of the stored CSR rows `rows`, `out` row-major (`batch`
/// outputs a row):
///
/// * batch 1 (`x` the input vector, `stride` 1): `portable::gather_dot`'s
///   multiplies, adds and fold, with one unchecked scalar load per index
///   and input value (the portable loop's bounds checks and indexed loads
///   ran CSR 384 × 384 at 10 % density at 0.90× dense f32);
/// * larger batches: each stored value adds `v · xᵀ[idx]` to one of eight
///   lane vectors (`k mod 8`) per tile of 8 lanes (4 where the stride is
///   4), summed by `portable::fold8`'s tree lane by lane.
///
/// # Safety
/// AVX2 must be available; `row_ptr` holds `rows.end + 1` offsets; `idx`
/// and `vals` hold exactly the stored values of `rows` (from offset
/// `row_ptr[rows.start]` on); every index is below the input's columns and
/// `x` holds them, `stride` lanes each (1 at batch 1, else 4, 8 or a
/// multiple of 16, at least `batch`); `out.len() == rows.len() · batch`.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn csr_rows<I: ColIndex>(
    row_ptr: &[u32],
    idx: &[I],
    vals: &[f32],
    rows: Range<usize>,
    x: *const f32,
    stride: usize,
    batch: usize,
    out: &mut [f32],
) {
    debug_assert!(stride >= batch && (batch == 1 || stride.is_multiple_of(4)));
    debug_assert_eq!(out.len(), rows.len() * batch);
    let first = row_ptr[rows.start] as usize;
    if batch == 1 {
        for (i, o) in rows.zip(out.iter_mut()) {
            let (a, e) = (row_ptr[i] as usize - first, row_ptr[i + 1] as usize - first);
            // SAFETY: this function's contract: indices below the columns.
            *o = unsafe { dot(&idx[a..e], &vals[a..e], x) };
        }
        return;
    }
    for (i, o) in rows.zip(out.chunks_exact_mut(batch)) {
        let (a, e) = (row_ptr[i] as usize - first, row_ptr[i + 1] as usize - first);
        let (ri, rv) = (&idx[a..e], &vals[a..e]);
        let mut t0 = 0;
        // SAFETY: this function's contract: indices below the columns,
        // `t0 + 8 ≤ stride` (or `+ 4`) lanes in each column of `x`.
        unsafe {
            while t0 < batch {
                let tile = &mut o[t0..batch.min(t0 + 8)];
                if t0 + 8 <= stride {
                    store8(lanes8(ri, rv, x.add(t0), stride), tile);
                    t0 += 8;
                } else {
                    store4(lanes4(ri, rv, x.add(t0), stride), tile);
                    t0 += 4;
                }
            }
        }
    }
}

/// Lanes `0..n` set (n ≤ 8), for masked stores: a copy of a few floats
/// was a call to `memmove` per row (13 % of CSR's batch 2).
#[inline(always)]
fn first_lanes(n: usize) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller (plain integer vectors).
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// The first `out.len()` lanes (at most 8) of `v` into `out`.
///
/// # Safety
/// AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store8(v: __m256, out: &mut [f32]) {
    let n = out.len().min(8);
    // SAFETY: the mask writes lanes `0..n` of `out` only.
    unsafe { _mm256_maskstore_ps(out.as_mut_ptr(), first_lanes(n), v) }
}

/// The first `out.len()` lanes (at most 4) of `v` into `out`.
///
/// # Safety
/// AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store4(v: __m128, out: &mut [f32]) {
    let n = out.len().min(4);
    // SAFETY: the mask writes lanes `0..n` of `out` only.
    unsafe { _mm_maskstore_ps(out.as_mut_ptr(), _mm256_castsi256_si128(first_lanes(n)), v) }
}

/// `portable::gather_dot` without bounds checks: the same eight partial
/// sums (`k mod 8`), each `acc + v·x` unfused, and the same fold.
///
/// # Safety
/// Every index is below the length of `x`.
#[inline(always)]
unsafe fn dot<I: ColIndex>(idx: &[I], vals: &[f32], x: *const f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let full = idx.len() / 8 * 8;
    // SAFETY: `k < idx.len() == vals.len()` for every read; indices are
    // below the length of `x` (the caller's contract).
    unsafe {
        let term = |k: usize| *vals.get_unchecked(k) * load(x.add(index(idx, k)));
        for k in (0..full).step_by(8) {
            for (l, a) in acc.iter_mut().enumerate() {
                *a += term(k + l);
            }
        }
        for (l, k) in (full..idx.len()).enumerate() {
            acc[l] += term(k);
        }
    }
    fold8(acc)
}

/// `$name`: one tile of a row on `$w` lanes (`xt` at the tile's first
/// lane): eight partial sums (`k mod 8`), each `acc + v·x` unfused, folded
/// by `portable::fold8`'s tree. One body for the 256- and 128-bit twins.
macro_rules! lanes {
    ($name:ident, $w:literal, $reg:ty, $zero:ident, $set1:ident, $load:ident, $add:ident, $mul:ident) => {
        /// One tile of a row on
        #[doc = concat!(stringify!($w), " lanes.")]
        ///
        /// # Safety
        /// AVX2; every index's column holds the lanes from `xt`.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn $name<I: ColIndex>(
            idx: &[I],
            vals: &[f32],
            xt: *const f32,
            stride: usize,
        ) -> $reg {
            // SAFETY: the caller's contract; `k < idx.len() == vals.len()`.
            unsafe {
                let term = |k: usize| {
                    let v = $set1(*vals.get_unchecked(k));
                    $mul(v, $load(xt.add(index(idx, k) * stride)))
                };
                let mut acc = [$zero(); 8];
                let full = idx.len() / 8 * 8;
                for k in (0..full).step_by(8) {
                    for (l, a) in acc.iter_mut().enumerate() {
                        *a = $add(*a, term(k + l));
                    }
                }
                for (l, k) in (full..idx.len()).enumerate() {
                    acc[l] = $add(acc[l], term(k));
                }
                $add(
                    $add($add(acc[0], acc[4]), $add(acc[1], acc[5])),
                    $add($add(acc[2], acc[6]), $add(acc[3], acc[7])),
                )
            }
        }
    };
}

lanes!(
    lanes8,
    8,
    __m256,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_add_ps,
    _mm256_mul_ps
);
lanes!(
    lanes4,
    4,
    __m128,
    _mm_setzero_ps,
    _mm_set1_ps,
    _mm_loadu_ps,
    _mm_add_ps,
    _mm_mul_ps
);
