//! AVX2 twin of the portable CSR lanes (`portable::scatter_lanes`): the
//! same eight partial sums per output (`k mod 8`), each a multiply then an
//! add (no fused multiply-add, as batch 1's `portable::gather_dot`), folded
//! by the same tree — so every output has the bits of batch 1 — but 8 lanes
//! of the batch a register instead of the portable path's 4 (its
//! baseline-x86-64 build has 128-bit registers only). At 10 % density the
//! portable lanes ran at 0.7–0.9× dense f32 at batch 256 on AVX2.

use std::arch::x86_64::*;
use std::ops::Range;

use super::portable::ColIndex;

/// Outputs of the stored CSR rows `rows` at `batch ≥ 2`, `out` row-major
/// (`batch` outputs a row): each stored value adds `v · xᵀ[idx]` to one of
/// eight lane vectors (`k mod 8`) per tile of 8 lanes (4 where the stride
/// is 4), summed by `portable::fold8`'s tree lane by lane.
///
/// # Safety
/// AVX2 must be available; `row_ptr` holds `rows.end + 1` offsets; `idx`
/// and `vals` hold exactly the stored values of `rows` (from offset
/// `row_ptr[rows.start]` on); every index is below the input's columns and
/// `x` holds them, `stride` lanes each (4, 8 or a multiple of 16, at least
/// `batch`); `out.len() == rows.len() · batch`.
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
    debug_assert!(batch >= 2 && stride >= batch && stride.is_multiple_of(4));
    debug_assert_eq!(out.len(), rows.len() * batch);
    let first = row_ptr[rows.start] as usize;
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
                    let s = lanes8(ri, rv, x.add(t0), stride);
                    store(&s, tile);
                    t0 += 8;
                } else {
                    let s = lanes4(ri, rv, x.add(t0), stride);
                    store(&s, tile);
                    t0 += 4;
                }
            }
        }
    }
}

/// The first `out.len()` lanes of `s`.
#[inline(always)]
fn store<const W: usize>(s: &[f32; W], out: &mut [f32]) {
    let n = out.len().min(W);
    out[..n].copy_from_slice(&s[..n]);
}

/// `$name`: one tile of a row on `$w` lanes (`xt` at the tile's first
/// lane): eight partial sums (`k mod 8`), each `acc + v·x` unfused, folded
/// by `portable::fold8`'s tree. One body for the 256- and 128-bit twins.
macro_rules! lanes {
    ($name:ident, $w:literal, $zero:ident, $set1:ident, $load:ident, $add:ident, $mul:ident, $store:ident) => {
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
        ) -> [f32; $w] {
            // SAFETY: the caller's contract; `k < idx.len() == vals.len()`.
            unsafe {
                let term = |k: usize| {
                    let v = $set1(*vals.get_unchecked(k));
                    $mul(v, $load(xt.add(idx.get_unchecked(k).at() * stride)))
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
                let f = $add(
                    $add($add(acc[0], acc[4]), $add(acc[1], acc[5])),
                    $add($add(acc[2], acc[6]), $add(acc[3], acc[7])),
                );
                let mut s = [0.0f32; $w];
                $store(s.as_mut_ptr(), f);
                s
            }
        }
    };
}

lanes!(
    lanes8,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_add_ps,
    _mm256_mul_ps,
    _mm256_storeu_ps
);
lanes!(
    lanes4,
    4,
    _mm_setzero_ps,
    _mm_set1_ps,
    _mm_loadu_ps,
    _mm_add_ps,
    _mm_mul_ps,
    _mm_storeu_ps
);
