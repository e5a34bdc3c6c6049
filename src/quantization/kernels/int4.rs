//! int4 weights (two per byte) × f32 activations, dequantizing on the fly.
//!
//! When rows and groups hold an even number of values, every row starts on
//! a byte and the low nibbles multiply the even inputs, the high nibbles the
//! odd ones: `x` is split into its even and odd halves once per call, so the
//! kernel never interleaves. Other shapes take a per-nibble path.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{segments, Isa};
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
unsafe fn dot_split_avx2(b: &[u8], xe: &[f32], xo: &[f32], z: i32) -> f32 {
    dot_split_portable(b, xe, xo, z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_split_avx512(b: &[u8], xe: &[f32], xo: &[f32], z: i32) -> f32 {
    let n = b.len();
    let zv = _mm512_set1_epi32(z);
    let (bp, ep, op) = (b.as_ptr(), xe.as_ptr(), xo.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut k = 0;
    while k + 32 <= n {
        for u in 0..2 {
            let v = _mm512_cvtepi8_epi32(_mm_loadu_si128(bp.add(k + 16 * u) as *const __m128i));
            acc[2 * u] =
                _mm512_fmadd_ps(lo(v, zv), _mm512_loadu_ps(ep.add(k + 16 * u)), acc[2 * u]);
            acc[2 * u + 1] = _mm512_fmadd_ps(
                hi(v, zv),
                _mm512_loadu_ps(op.add(k + 16 * u)),
                acc[2 * u + 1],
            );
        }
        k += 32;
    }
    while k < n {
        let m: __mmask16 = if n - k >= 16 {
            0xFFFF
        } else {
            (1u16 << (n - k)) - 1
        };
        let v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, bp.add(k) as *const i8));
        acc[0] = _mm512_fmadd_ps(lo(v, zv), _mm512_maskz_loadu_ps(m, ep.add(k)), acc[0]);
        acc[1] = _mm512_fmadd_ps(hi(v, zv), _mm512_maskz_loadu_ps(m, op.add(k)), acc[1]);
        k += 16;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

/// Low nibble of each byte-valued i32 lane, sign-extended, minus `z`, as f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn lo(v: __m512i, z: __m512i) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_sub_epi32(
        _mm512_srai_epi32::<28>(_mm512_slli_epi32::<28>(v)),
        z,
    ))
}

/// High nibble of each byte-valued i32 lane, sign-extended, minus `z`, as f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn hi(v: __m512i, z: __m512i) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_sub_epi32(
        _mm512_srai_epi32::<28>(_mm512_slli_epi32::<24>(v)),
        z,
    ))
}

multiversion! {
    /// Decodes rows `row0..` of W into `out` (whole rows of `cols`).
    pub(crate) fn decode_rows(v: &Int4Values, row0: usize, out: &mut [f32]) => decode_rows_generic;
}

#[inline(always)]
fn decode_rows_generic(v: &Int4Values, row0: usize, out: &mut [f32]) {
    let cols = v.layout.max_row_len();
    let bytes = v.codes().bytes();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        let i = row0 + r;
        for (a, b, pi) in segments(v.params(), i, cols) {
            let (s, z) = v.params().get(pi);
            for (k, o) in o[a..b].iter_mut().enumerate() {
                *o = (nibble(bytes, i * cols + a + k) as i32 - z) as f32 * s;
            }
        }
    }
}
