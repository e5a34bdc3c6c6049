//! int8 weights: the row decoder behind [`DecodeRows`] (`(q − z)·s` per
//! value). The products themselves are the decoded-tile kernels of
//! [`tile`](crate::kernels::tile), with the in-register reader in
//! [`lanes`](super::lanes).

use super::RowScale;
use crate::matrix::Int8Values;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, __mmask16};

super::decode_rows_by_row!(Int8Values, int8_row);

/// int8 rows for the streamed small-batch products of
/// [`gemv`](crate::kernels::gemv): `q − z` in registers (`z` skipped when
/// symmetric), times `s` per group — per row the scale is deferred
/// ([`RowScale`]), so a weight costs a widening load, a convert and the
/// multiply-add. `SCALED`: scales applied here (groups), not deferred;
/// `ZERO`: zero points to subtract (const parameters: as run-time flags the
/// compiler turned the skipped multiply into a multiply by a selected 1).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Int8Rows<'a, const SCALED: bool, const ZERO: bool> {
    v: &'a Int8Values,
    cols: usize,
    seg: usize,
    params: super::lanes::SegParams<'a>,
}

/// [`gemv::quant`](crate::kernels::gemv::quant) over int8 rows, with the
/// reader for these values' zero points and `sc`; `None` where a 16-value
/// block can span two parameter sets.
///
/// # Safety
/// As [`gemv::quant`](crate::kernels::gemv::quant): AVX-512 F/BW/VL, BMI2
/// and FMA are available; `v` holds rows of `s.cols`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn streamed(
    v: &Int8Values,
    s: crate::kernels::gemv::Stream<'_>,
    sc: RowScale,
) -> Option<ndarray::Array2<f32>> {
    let seg = super::lanes::segment_len(&v.params)?;
    let params = super::lanes::SegParams::new(&v.params, s.cols);
    let cols = s.cols;
    let (scaled, zero) = (sc == RowScale::Applied, v.params.zero_points().is_some());
    // SAFETY: this function's contract.
    Some(unsafe {
        super::with_const!(scaled, |S| super::with_const!(zero, |Z| {
            s.run(
                &Int8Rows::<S, Z> {
                    v,
                    cols,
                    seg,
                    params,
                },
                v.layout.rows(),
            )
        }))
    })
}

#[cfg(target_arch = "x86_64")]
impl<const SCALED: bool, const ZERO: bool> crate::kernels::gemv::RowReader
    for Int8Rows<'_, SCALED, ZERO>
{
    type Seg = (std::arch::x86_64::__m512, std::arch::x86_64::__m512i);

    fn seg_len(&self) -> usize {
        self.seg
    }

    const BYTES_PER_16: usize = 16;

    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (row `i`, column `k` exist).
        let (s, z) = unsafe { self.params.get(i, k) };
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe { (_mm512_set1_ps(s), _mm512_set1_epi32(z)) }
    }

    #[inline(always)]
    unsafe fn lanes(&self, &(s, z): &Self::Seg, i: usize, k: usize, m: __mmask16) -> __m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX-512 and that lanes in `m` lie in
        // row `i` (masked lanes are not read).
        unsafe {
            let p = self.v.codes().as_ptr().add(i * self.cols + k);
            // Masked-off lanes are zeroed at the end, as in a decoded tile.
            let q = if m == 0xFFFF {
                _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))
            } else {
                _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p))
            };
            let q = if ZERO { _mm512_sub_epi32(q, z) } else { q };
            let u = _mm512_cvtepi32_ps(q);
            match (SCALED, m == 0xFFFF) {
                (false, true) => u,
                (false, false) => _mm512_maskz_mov_ps(m, u),
                (true, true) => _mm512_mul_ps(u, s),
                (true, false) => _mm512_maskz_mul_ps(m, u, s),
            }
        }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.v
            .codes()
            .as_ptr()
            .wrapping_add(i * self.cols + k)
            .cast()
    }
}
