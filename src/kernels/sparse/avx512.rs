//! AVX-512 inner loops (x86-64 only; callers check the CPU at run time).
//!
//! Every function here has a portable twin in `portable.rs` computing the
//! same sums (in a different order); both are tested against the reference.

use std::arch::x86_64::*;

use super::portable::ColIndex;

/// Loads 16 column indices as i32 lanes.
///
/// # Safety
/// `p..p+16` must be readable; AVX-512F must be available.
pub(super) trait Lanes: ColIndex {
    /// Loads 16 indices from `p` as i32 lanes.
    ///
    /// # Safety
    /// `p..p+16` must be readable; AVX-512F must be available.
    unsafe fn load16(p: *const Self) -> __m512i;
}

impl Lanes for u16 {
    /// # Safety
    /// As [`Lanes::load16`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const u16) -> __m512i {
        // SAFETY: `p..p+16` is readable (the caller's contract).
        _mm512_cvtepu16_epi32(unsafe { _mm256_loadu_si256(p as *const __m256i) })
    }
}

impl Lanes for u32 {
    /// # Safety
    /// As [`Lanes::load16`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const u32) -> __m512i {
        // SAFETY: `p..p+16` is readable (the caller's contract).
        unsafe { _mm512_loadu_si512(p as *const __m512i) }
    }
}

#[inline]
fn tail_mask(rem: usize) -> __mmask16 {
    if rem >= 16 {
        0xffff
    } else {
        ((1u32 << rem) - 1) as __mmask16
    }
}

/// `Σ_k vals[k] · x[idx[k]]` with 16-lane gathers.
///
/// # Safety
/// AVX-512F must be available; every index must be below `x.len()` and
/// below 2^31; `idx.len() == vals.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather_dot<I: Lanes>(idx: &[I], vals: &[f32], x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(idx.len(), vals.len());
        let n = idx.len();
        let (ip, vp, xp) = (idx.as_ptr(), vals.as_ptr(), x.as_ptr());
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let mut k = 0;
        while k + 32 <= n {
            let g0 = _mm512_i32gather_ps::<4>(I::load16(ip.add(k)), xp);
            let g1 = _mm512_i32gather_ps::<4>(I::load16(ip.add(k + 16)), xp);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k)), g0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k + 16)), g1, a1);
            k += 32;
        }
        while k < n {
            let rem = n - k;
            let m = tail_mask(rem);
            // Pad the index tail with zeros (a valid index) to load 16 lanes.
            let mut buf = [I::ZERO; 16];
            buf[..rem.min(16)].copy_from_slice(&idx[k..k + rem.min(16)]);
            let g =
                _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, I::load16(buf.as_ptr()), xp);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, vp.add(k)), g, a0);
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }
}

/// `out[b] = Σ_k vals[k] · xt[idx[k]·stride + b]` for `b < out.len() ≤ 32`,
/// where `xt` is the batch transposed (`[cols, stride]`) and already offset
/// to the batch tile.
///
/// # Safety
/// AVX-512F must be available; `xt[idx·stride + b]` must be readable for
/// every index and `b < out.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scatter_tile<I: Lanes>(
    idx: &[I],
    vals: &[f32],
    xt: *const f32,
    stride: usize,
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let w = out.len();
        debug_assert!(w <= 32);
        let m0 = tail_mask(w);
        let m1 = tail_mask(w.saturating_sub(16));
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let mut b0 = _mm512_setzero_ps();
        let mut b1 = _mm512_setzero_ps();
        let n = idx.len();
        let mut k = 0;
        while k + 2 <= n {
            let v0 = _mm512_set1_ps(*vals.get_unchecked(k));
            let v1 = _mm512_set1_ps(*vals.get_unchecked(k + 1));
            let p0 = xt.add(idx.get_unchecked(k).at() * stride);
            let p1 = xt.add(idx.get_unchecked(k + 1).at() * stride);
            a0 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(m0, p0), a0);
            a1 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(m1, p0.add(16)), a1);
            b0 = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(m0, p1), b0);
            b1 = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(m1, p1.add(16)), b1);
            k += 2;
        }
        if k < n {
            let v0 = _mm512_set1_ps(vals[k]);
            let p0 = xt.add(idx[k].at() * stride);
            a0 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(m0, p0), a0);
            a1 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(m1, p0.add(16)), a1);
        }
        let o = out.as_mut_ptr();
        _mm512_mask_storeu_ps(o, m0, _mm512_add_ps(a0, b0));
        _mm512_mask_storeu_ps(o.add(16), m1, _mm512_add_ps(a1, b1));
    }
}

/// Dense dot product with four 16-lane accumulators.
///
/// # Safety
/// AVX-512F must be available; `a.len() == b.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(a.len(), b.len());
        let n = a.len();
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut k = 0;
        while k + 64 <= n {
            for (l, s) in acc.iter_mut().enumerate() {
                let o = k + 16 * l;
                *s = _mm512_fmadd_ps(_mm512_loadu_ps(ap.add(o)), _mm512_loadu_ps(bp.add(o)), *s);
            }
            k += 64;
        }
        while k < n {
            let m = tail_mask(n - k);
            acc[0] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, ap.add(k)),
                _mm512_maskz_loadu_ps(m, bp.add(k)),
                acc[0],
            );
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

/// One row of a 2:4 matrix times `x`: 16 stored values cover 32 columns;
/// their 2-bit positions select the matching entries of `x` with one
/// two-register permute, so no gather is needed.
///
/// `vals` holds `cols / 2` values, `pos` the row's `cols / 8` position bytes
/// (LSB-first, 2 bits each), `x` the `cols` inputs; `cols % 32 == 0`.
///
/// # Safety
/// AVX-512F must be available; the lengths must be as stated.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_2of4(vals: &[f32], pos: &[u8], x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(x.len() % 32, 0);
        debug_assert_eq!(vals.len() * 2, x.len());
        debug_assert_eq!(pos.len() * 8, x.len());
        // Lane t holds value t of the block: group t / 2, position bits 2t..2t+2.
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let bases = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let (vp, pp, xp) = (vals.as_ptr(), pos.as_ptr(), x.as_ptr());
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let blocks = x.len() / 32;
        let mut blk = 0;
        while blk + 2 <= blocks {
            a0 = step_2of4(blk, vp, pp, xp, shifts, bases, a0);
            a1 = step_2of4(blk + 1, vp, pp, xp, shifts, bases, a1);
            blk += 2;
        }
        if blk < blocks {
            a0 = step_2of4(blk, vp, pp, xp, shifts, bases, a0);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }
}

/// One 32-column block of [`dot_2of4`].
///
/// # Safety
/// As [`dot_2of4`], for block `blk`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn step_2of4(
    blk: usize,
    vp: *const f32,
    pp: *const u8,
    xp: *const f32,
    shifts: __m512i,
    bases: __m512i,
    acc: __m512,
) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bits = (pp.add(blk * 4) as *const u32).read_unaligned();
        let p = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_set1_epi32(bits as i32), shifts),
            _mm512_set1_epi32(3),
        );
        let xs = _mm512_permutex2var_ps(
            _mm512_loadu_ps(xp.add(blk * 32)),
            _mm512_add_epi32(bases, p),
            _mm512_loadu_ps(xp.add(blk * 32 + 16)),
        );
        _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(blk * 16)), xs, acc)
    }
}

/// Column indices of one 2:4 row (`pos` holds `cols / 8` bytes, `out`
/// `cols / 2` entries, `cols % 32 == 0`): 16 at a time from one u32 of
/// positions.
///
/// # Safety
/// AVX-512F must be available; the lengths must be as stated.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn columns_2of4(pos: &[u8], out: &mut [u32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(pos.len() * 4, out.len());
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let bases = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let (pp, op) = (pos.as_ptr(), out.as_mut_ptr());
        for blk in 0..out.len() / 16 {
            let bits = (pp.add(blk * 4) as *const u32).read_unaligned();
            let p = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_set1_epi32(bits as i32), shifts),
                _mm512_set1_epi32(3),
            );
            let cols = _mm512_add_epi32(
                _mm512_add_epi32(bases, p),
                _mm512_set1_epi32(blk as i32 * 32),
            );
            _mm512_storeu_si512(op.add(blk * 16) as *mut __m512i, cols);
        }
    }
}
