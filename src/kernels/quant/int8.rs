//! int8 weights × f32 activations, dequantizing on the fly.
//!
//! Row `i` of `y = W·x` is `Σ_seg s·Σ_k (q_k − z)·x_k` over the runs of the
//! row that share a scale `s` and zero-point `z`: the codes are converted to
//! f32 inside the dot product and scaled once per run.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{segments, DecodeRows, Isa};
use crate::matrix::Int8Values;

/// What the kernel precomputes from `x` once per call (nothing for int8).
pub(crate) struct Prepared<'a> {
    x: &'a [f32],
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(_v: &Int8Values, x: &'a [f32]) -> Self {
        Prepared { x }
    }
}

/// `y[r] = row (row0 + r) of W · x` for `r < y.len()`.
pub(crate) fn gemv(v: &Int8Values, prep: &Prepared, row0: usize, y: &mut [f32], isa: Isa) {
    let cols = prep.x.len();
    let p = v.params();
    for (r, out) in y.iter_mut().enumerate() {
        let i = row0 + r;
        let q = &v.codes()[i * cols..(i + 1) * cols];
        let mut acc = 0.0f32;
        for (a, b, pi) in segments(p, i, cols) {
            let (s, z) = p.get(pi);
            acc += s * dot(&q[a..b], z, &prep.x[a..b], isa);
        }
        *out = acc;
    }
}

/// Σ (q_k − z)·x_k on the chosen instruction set (already capped to the
/// CPU). Subtracting the zero-point in integers keeps zero weights exact.
pub(crate) fn dot(q: &[i8], z: i32, x: &[f32], isa: Isa) -> f32 {
    debug_assert_eq!(q.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if isa >= Isa::Avx512 {
            // SAFETY: Isa tiers at or above Avx512 are only reachable when
            // detected (callers cap the tier with `Isa::capped`).
            return unsafe { dot_avx512(q, z, x) };
        }
        if isa == Isa::Avx2 {
            // SAFETY: as above.
            return unsafe { dot_avx2(q, z, x) };
        }
    }
    let _ = isa;
    dot_portable(q, z, x)
}

/// The portable dot product: 16 partial sums, then a tail.
#[inline(always)]
fn dot_portable(q: &[i8], z: i32, x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let qc = q.chunks_exact(16);
    let xc = x.chunks_exact(16);
    let tail: f32 = qc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&a, &b)| (a as i32 - z) as f32 * b)
        .sum();
    for (a, b) in qc.zip(xc) {
        for l in 0..16 {
            acc[l] += (a[l] as i32 - z) as f32 * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(q: &[i8], z: i32, x: &[f32]) -> f32 {
    dot_portable(q, z, x)
}

#[cfg(target_arch = "x86_64")]
/// AVX-512 dot product of int8 codes (minus `z`) with `x`.
///
/// # Safety
/// AVX-512 F/BW/VL must be available; `x` must hold at least `q.len()`
/// inputs.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_avx512(q: &[i8], z: i32, x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = q.len();
        let zv = _mm512_set1_epi32(z);
        let (qp, xp) = (q.as_ptr(), x.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut k = 0;
        while k + 64 <= n {
            for (u, a) in acc.iter_mut().enumerate() {
                let b = _mm_loadu_si128(qp.add(k + 16 * u) as *const __m128i);
                let w = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(b), zv));
                *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(xp.add(k + 16 * u)), *a);
            }
            k += 64;
        }
        while k < n {
            let m: __mmask16 = if n - k >= 16 {
                0xFFFF
            } else {
                (1u16 << (n - k)) - 1
            };
            let b = _mm_maskz_loadu_epi8(m, qp.add(k));
            let w = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(b), zv));
            acc[0] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, xp.add(k)), acc[0]);
            k += 16;
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }
}

impl DecodeRows for Int8Values {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        decode_rows_generic(self, row0, out)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &Int8Values, row0: usize, out: &mut [f32]) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::int8_row(v, row0 + r, o);
    }
}
