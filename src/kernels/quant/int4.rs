//! int4 weights (two per byte) × f32 activations, dequantizing on the fly.
//!
//! When rows and groups hold an even number of values, every row starts on
//! a byte and the low nibbles multiply the even inputs, the high nibbles the
//! odd ones: `x` is split into its even and odd halves once per call, so the
//! kernel never interleaves. Other shapes take a per-nibble path.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{segments, DecodeRows, Isa};
use crate::matrix::{nibble_to_i8, Granularity, Int4Values};

/// What the kernel precomputes from `x` once per call.
pub(crate) struct Prepared<'a> {
    x: &'a [f32],
    /// Even- and odd-indexed inputs, when rows and groups are byte-aligned.
    split: Option<(Vec<f32>, Vec<f32>)>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(v: &Int4Values, x: &'a [f32]) -> Self {
        let even_groups = match v.params().granularity() {
            Granularity::PerGroup(g) => g.is_multiple_of(2),
            _ => true,
        };
        let split = (x.len().is_multiple_of(2) && even_groups).then(|| {
            (
                x.iter().step_by(2).copied().collect(),
                x.iter().skip(1).step_by(2).copied().collect(),
            )
        });
        Prepared { x, split }
    }
}

/// `y[r] = row (row0 + r) of W · x` for `r < y.len()`.
pub(crate) fn gemv(v: &Int4Values, prep: &Prepared, row0: usize, y: &mut [f32], isa: Isa) {
    let cols = prep.x.len();
    let p = v.params();
    let bytes = v.codes().bytes();
    for (r, out) in y.iter_mut().enumerate() {
        let i = row0 + r;
        let mut acc = 0.0f32;
        for (a, b, pi) in segments(p, i, cols) {
            let (s, z) = p.get(pi);
            let d = match &prep.split {
                Some((xe, xo)) => {
                    let base = i * cols / 2;
                    dot_split(
                        &bytes[base + a / 2..base + b / 2],
                        &xe[a / 2..b / 2],
                        &xo[a / 2..b / 2],
                        z,
                        isa,
                    )
                }
                None => dot_nibbles(bytes, i * cols + a, z, &prep.x[a..b]),
            };
            acc += s * d;
        }
        *out = acc;
    }
}

/// Σ over nibbles starting at flat nibble index `start` (any alignment).
fn dot_nibbles(bytes: &[u8], start: usize, z: i32, x: &[f32]) -> f32 {
    x.iter()
        .enumerate()
        .map(|(k, &xv)| (nibble(bytes, start + k) as i32 - z) as f32 * xv)
        .sum()
}

#[inline(always)]
fn nibble(bytes: &[u8], f: usize) -> i8 {
    nibble_to_i8(u16::from(bytes[f / 2] >> (4 * (f % 2))))
}

/// Σ (low − z)·x_even + (high − z)·x_odd over byte-aligned codes.
pub(crate) fn dot_split(b: &[u8], xe: &[f32], xo: &[f32], z: i32, isa: Isa) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if isa >= Isa::Avx512 {
            // SAFETY: tiers at or above Avx512 are only reachable when detected.
            return unsafe { dot_split_avx512(b, xe, xo, z) };
        }
        if isa == Isa::Avx2 {
            // SAFETY: as above.
            return unsafe { dot_split_avx2(b, xe, xo, z) };
        }
    }
    let _ = isa;
    dot_split_portable(b, xe, xo, z)
}

#[inline(always)]
fn dot_split_portable(b: &[u8], xe: &[f32], xo: &[f32], z: i32) -> f32 {
    let mut acc = [0.0f32; 16];
    let bc = b.chunks_exact(8);
    let ec = xe.chunks_exact(8);
    let oc = xo.chunks_exact(8);
    let mut tail = 0.0f32;
    for ((&byte, &e), &o) in bc
        .remainder()
        .iter()
        .zip(ec.remainder())
        .zip(oc.remainder())
    {
        tail += (((byte << 4) as i8 >> 4) as i32 - z) as f32 * e
            + (((byte as i8) >> 4) as i32 - z) as f32 * o;
    }
    for ((bb, e), o) in bc.zip(ec).zip(oc) {
        for l in 0..8 {
            acc[l] += (((bb[l] << 4) as i8 >> 4) as i32 - z) as f32 * e[l];
            acc[8 + l] += (((bb[l] as i8) >> 4) as i32 - z) as f32 * o[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_split_avx2(b: &[u8], xe: &[f32], xo: &[f32], z: i32) -> f32 {
    dot_split_portable(b, xe, xo, z)
}

/// AVX-512: each nibble indexes a 16-entry f32 table of `code − z` with
/// `vpermps` (which reads only the low 4 bits of each index), so decoding
/// costs one permute per 16 values and no conversions.
///
/// # Safety
/// AVX-512 F/BW/VL must be available; `xe` and `xo` must hold at least
/// `b.len()` inputs each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_split_avx512(b: &[u8], xe: &[f32], xo: &[f32], z: i32) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = b.len();
        let (bp, ep, op) = (b.as_ptr(), xe.as_ptr(), xo.as_ptr());
        let table: [f32; 16] = std::array::from_fn(|t| (nibble_to_i8(t as u16) as i32 - z) as f32);
        let table = _mm512_loadu_ps(table.as_ptr());
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
        );
        let mut k = 0;
        while k + 32 <= n {
            let v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(bp.add(k) as *const __m128i));
            let v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(bp.add(k + 16) as *const __m128i));
            let lo0 = _mm512_permutexvar_ps(v0, table);
            let hi0 = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v0), table);
            let lo1 = _mm512_permutexvar_ps(v1, table);
            let hi1 = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v1), table);
            a0 = _mm512_fmadd_ps(lo0, _mm512_loadu_ps(ep.add(k)), a0);
            a1 = _mm512_fmadd_ps(hi0, _mm512_loadu_ps(op.add(k)), a1);
            a2 = _mm512_fmadd_ps(lo1, _mm512_loadu_ps(ep.add(k + 16)), a2);
            a3 = _mm512_fmadd_ps(hi1, _mm512_loadu_ps(op.add(k + 16)), a3);
            k += 32;
        }
        while k < n {
            let m: __mmask16 = if n - k >= 16 {
                0xFFFF
            } else {
                (1u16 << (n - k)) - 1
            };
            // Masked-off lanes read x = 0, so their table entry does not matter.
            let v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, bp.add(k) as *const i8));
            let lo = _mm512_permutexvar_ps(v, table);
            let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v), table);
            a0 = _mm512_fmadd_ps(lo, _mm512_maskz_loadu_ps(m, ep.add(k)), a0);
            a1 = _mm512_fmadd_ps(hi, _mm512_maskz_loadu_ps(m, op.add(k)), a1);
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)))
    }
}

impl DecodeRows for Int4Values {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        decode_rows_generic(self, row0, out)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &Int4Values, row0: usize, out: &mut [f32]) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::int4_row(v, row0 + r, o);
    }
}
