//! int8 weights: the row decoder behind [`DecodeRows`] (`(q − z)·s` per
//! value). The products themselves are the decoded-tile kernels of
//! [`tile`](crate::kernels::tile), with the in-register reader in
//! [`lanes`](super::lanes).

use super::DecodeRows;
use crate::matrix::Int8Values;

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

/// int8 rows for the streamed small-batch products of
/// [`gemv`](crate::kernels::gemv): `(q − z)·s` in registers, `s` and `z`
/// broadcast once per row or group.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Int8Rows<'a> {
    v: &'a Int8Values,
    cols: usize,
    seg: usize,
}

#[cfg(target_arch = "x86_64")]
impl<'a> Int8Rows<'a> {
    /// `None` where a 16-value block can span two parameter sets.
    pub(crate) fn new(v: &'a Int8Values, cols: usize) -> Option<Self> {
        let seg = super::lanes::segment_len(&v.params)?;
        Some(Int8Rows { v, cols, seg })
    }
}

#[cfg(target_arch = "x86_64")]
impl crate::kernels::gemv::RowReader for Int8Rows<'_> {
    type Seg = (std::arch::x86_64::__m512, std::arch::x86_64::__m512i);

    fn seg_len(&self) -> usize {
        self.seg
    }

    fn bytes_per_16(&self) -> usize {
        16
    }

    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        let p = &self.v.params;
        let (s, z) = p.get(super::lanes::seg_index(p, self.seg, i, k));
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe { (_mm512_set1_ps(s), _mm512_set1_epi32(z)) }
    }

    #[inline(always)]
    unsafe fn lanes(
        &self,
        &(s, z): &Self::Seg,
        i: usize,
        k: usize,
        m: std::arch::x86_64::__mmask16,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX-512 and that lanes in `m` lie in
        // row `i` (masked lanes are not read).
        unsafe {
            let p = self.v.codes().as_ptr().add(i * self.cols + k);
            if m == 0xFFFF {
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()));
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, z)), s)
            } else {
                let q = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p));
                _mm512_maskz_mul_ps(m, _mm512_cvtepi32_ps(_mm512_sub_epi32(q, z)), s)
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
