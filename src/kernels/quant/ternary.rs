//! Ternary weights (2-bit codes: 0 → 0, 1 → +α, 2 → −α) × f32 activations.
//!
//! `W_i·x = α_i·(Σ_{plus} x − Σ_{minus} x)`: additions only, one multiply
//! per row. On AVX-512 + BMI2, `pext` splits 16 codes into a plus mask (even
//! bits) and a minus mask (odd bits) for two masked adds.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{DecodeRows, Isa};
use crate::matrix::{TernaryValues, TERNARY_MINUS, TERNARY_PLUS};

/// `y[r] = row (row0 + r) of W · x`.
pub(crate) fn gemv(v: &TernaryValues, x: &[f32], row0: usize, y: &mut [f32], isa: Isa) {
    let cols = x.len();
    let bytes = v.codes().bytes();
    for (r, out) in y.iter_mut().enumerate() {
        let i = row0 + r;
        let d = if cols.is_multiple_of(4) {
            plus_minus(&bytes[i * cols / 4..(i + 1) * cols / 4], x, isa)
        } else {
            (0..cols)
                .map(|k| match code(bytes, i * cols + k) {
                    TERNARY_PLUS => x[k],
                    TERNARY_MINUS => -x[k],
                    _ => 0.0,
                })
                .sum()
        };
        *out = v.scales()[i] * d;
    }
}

#[inline(always)]
fn code(bytes: &[u8], f: usize) -> u16 {
    u16::from((bytes[f / 4] >> (2 * (f % 4))) & 3)
}

/// Σ_{plus} x − Σ_{minus} x over byte-aligned codes (`x.len() = 4·codes.len()`).
pub(crate) fn plus_minus(codes: &[u8], x: &[f32], isa: Isa) -> f32 {
    debug_assert_eq!(codes.len() * 4, x.len());
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx512 {
        // SAFETY: tiers at or above Avx512 (which include BMI2) are only
        // reachable when detected.
        return unsafe { plus_minus_avx512(codes, x) };
    }
    let _ = isa;
    plus_minus_portable(codes, x)
}

fn plus_minus_portable(codes: &[u8], x: &[f32]) -> f32 {
    let (mut p, mut m) = ([0.0f32; 4], [0.0f32; 4]);
    for (&c, xc) in codes.iter().zip(x.chunks_exact(4)) {
        for l in 0..4 {
            let t = (c >> (2 * l)) & 3;
            p[l] += if t == TERNARY_PLUS as u8 { xc[l] } else { 0.0 };
            m[l] += if t == TERNARY_MINUS as u8 { xc[l] } else { 0.0 };
        }
    }
    p.iter().sum::<f32>() - m.iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
/// AVX-512 Σx over `+` codes minus Σx over `−` codes.
///
/// # Safety
/// AVX-512 F/BW/VL and BMI2 must be available; `codes` must hold
/// `x.len().div_ceil(4)` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,bmi2")]
unsafe fn plus_minus_avx512(codes: &[u8], x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = x.len();
        let (cp, xp) = (codes.as_ptr(), x.as_ptr());
        let (mut p0, mut m0, mut p1, mut m1) = (
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
        );
        let mut k = 0;
        while k + 32 <= n {
            let w = (cp.add(k / 4) as *const u64).read_unaligned();
            let (lo, hi) = (w as u32, (w >> 32) as u32);
            let x0 = _mm512_loadu_ps(xp.add(k));
            let x1 = _mm512_loadu_ps(xp.add(k + 16));
            p0 = _mm512_mask_add_ps(p0, _pext_u32(lo, 0x5555_5555) as u16, p0, x0);
            m0 = _mm512_mask_add_ps(m0, _pext_u32(lo, 0xAAAA_AAAA) as u16, m0, x0);
            p1 = _mm512_mask_add_ps(p1, _pext_u32(hi, 0x5555_5555) as u16, p1, x1);
            m1 = _mm512_mask_add_ps(m1, _pext_u32(hi, 0xAAAA_AAAA) as u16, m1, x1);
            k += 32;
        }
        while k < n {
            // At most 16 codes (n is a multiple of 4).
            let rem = (n - k).min(16);
            let mut buf = [0u8; 4];
            std::ptr::copy_nonoverlapping(cp.add(k / 4), buf.as_mut_ptr(), rem / 4);
            let w = u32::from_le_bytes(buf);
            let len: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
            let xv = _mm512_maskz_loadu_ps(len, xp.add(k));
            p0 = _mm512_mask_add_ps(p0, _pext_u32(w, 0x5555_5555) as u16, p0, xv);
            m0 = _mm512_mask_add_ps(m0, _pext_u32(w, 0xAAAA_AAAA) as u16, m0, xv);
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(p0, p1)) - _mm512_reduce_add_ps(_mm512_add_ps(m0, m1))
    }
}

impl DecodeRows for TernaryValues {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        decode_rows_generic(self, row0, out)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &TernaryValues, row0: usize, out: &mut [f32]) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::ternary_row(v, row0 + r, o);
    }
}
