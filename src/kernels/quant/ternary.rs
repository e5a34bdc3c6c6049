//! Ternary weights (2-bit codes: 0 → 0, 1 → +α, 2 → −α): the row decoder
//! behind [`DecodeRows`]. The products are the decoded-tile kernels of
//! [`tile`](crate::kernels::tile), with the in-register reader in
//! [`lanes`](super::lanes).

use super::{DecodeRows, RowScale};
use crate::matrix::TernaryValues;

impl DecodeRows for TernaryValues {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32], scale: RowScale) {
        decode_rows_generic(self, row0, out, scale)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &TernaryValues, row0: usize, out: &mut [f32], scale: RowScale) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::ternary_row(v, row0 + r, o, scale);
    }
}

/// Ternary rows for the streamed small-batch products of
/// [`gemv`](crate::kernels::gemv): the 32 bits of 16 codes split into a
/// `+α` mask and a `−α` mask (`pext`), α broadcast once per row. Rows of a
/// multiple of 16 columns read one `u32` per 16 codes; others shift.
#[cfg(target_arch = "x86_64")]
pub(crate) struct TernaryRows<'a> {
    v: &'a TernaryValues,
    cols: usize,
    sc: RowScale,
}

#[cfg(target_arch = "x86_64")]
impl<'a> TernaryRows<'a> {
    pub(crate) fn new(v: &'a TernaryValues, cols: usize, sc: RowScale) -> Self {
        TernaryRows { v, cols, sc }
    }
}

#[cfg(target_arch = "x86_64")]
impl crate::kernels::gemv::RowReader for TernaryRows<'_> {
    type Seg = (std::arch::x86_64::__m512, std::arch::x86_64::__m512);

    fn seg_len(&self) -> usize {
        usize::MAX
    }

    fn bytes_per_16(&self) -> usize {
        4
    }

    #[inline(always)]
    unsafe fn seg(&self, i: usize, _: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        let a = self.sc.of(self.v.scales()[i]);
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe { (_mm512_set1_ps(a), _mm512_set1_ps(-a)) }
    }

    #[inline(always)]
    unsafe fn lanes(
        &self,
        &(pos, neg): &Self::Seg,
        i: usize,
        k: usize,
        m: std::arch::x86_64::__mmask16,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let off = 2 * (i * self.cols + k);
        let bytes = self.v.codes().bytes();
        let w = if self.cols.is_multiple_of(16) && m == 0xFFFF {
            // SAFETY: `off` is a multiple of 32 and bits `off..off + 32` are
            // codes of row `i` (the caller's contract): inside the stream.
            unsafe { bytes.as_ptr().add(off / 8).cast::<u32>().read_unaligned() }.to_le()
        } else {
            (super::lanes::read8(bytes, off / 8) >> (off % 8)) as u32
        };
        // SAFETY: AVX-512 + BMI2 are available (the caller's contract);
        // lanes outside `m` (and their garbage bits) are zeroed.
        unsafe {
            let lo = _pext_u32(w, 0x5555_5555) as u16;
            let hi = _pext_u32(w, 0xAAAA_AAAA) as u16;
            let plus = lo & !hi & m;
            let minus = hi & !lo & m;
            _mm512_mask_mov_ps(_mm512_maskz_mov_ps(plus, pos), minus, neg)
        }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.v
            .codes()
            .bytes()
            .as_ptr()
            .wrapping_add((i * self.cols + k) / 4)
    }
}
