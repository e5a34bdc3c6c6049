//! Ternary weights (2-bit codes: 0 → 0, 1 → +α, 2 → −α): the row decoder
//! behind [`DecodeRows`]. The products are the decoded-tile kernels of
//! [`tile`](crate::kernels::tile), with the in-register reader in
//! [`lanes`](super::lanes).

use super::RowScale;
use crate::matrix::{TernaryValues, TERNARY_MINUS, TERNARY_PLUS};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, __mmask16};

super::decode_rows_by_row!(TernaryValues, ternary_row);

/// Ternary rows for the streamed products of [`gemv`](crate::kernels::gemv):
/// the 32 bits of 16 codes index a 16-entry register table of the row's
/// values (0, ±α; ±1 with the scale deferred). Rows of a multiple of 16
/// columns read one `u32` per 16 codes; others shift.
#[cfg(target_arch = "x86_64")]
/// `ALIGNED`: rows of a multiple of 16 codes, so each 16 codes are one
/// `u32` broadcast straight from memory.
pub(crate) struct TernaryRows<'a, const ALIGNED: bool> {
    v: &'a TernaryValues,
    cols: usize,
    sc: RowScale,
}

/// [`gemv::quant`](crate::kernels::gemv::quant) over ternary rows.
///
/// # Safety
/// As [`gemv::quant`](crate::kernels::gemv::quant): AVX-512 F/BW/VL, BMI2
/// and FMA are available; `v` holds rows of `s.cols`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn streamed(
    v: &TernaryValues,
    s: crate::kernels::gemv::Stream<'_>,
    sc: RowScale,
) -> ndarray::Array2<f32> {
    let (rows, cols) = (v.layout.rows(), s.cols);
    // SAFETY: this function's contract.
    // Rows of whole 16-value blocks read each block at a fixed offset.
    let aligned = cols.is_multiple_of(16);
    unsafe { super::with_const!(aligned, |A| s.run(&TernaryRows::<A> { v, cols, sc }, rows)) }
}

#[cfg(target_arch = "x86_64")]
impl<const ALIGNED: bool> crate::kernels::gemv::RowReader for TernaryRows<'_, ALIGNED> {
    /// A 16-entry table: entry `e` is the value of code `e & 3` (the bits
    /// above the code are the next code's, which the lookup ignores).
    type Seg = std::arch::x86_64::__m512;

    const BYTES_PER_16: usize = 4;

    #[inline(always)]
    unsafe fn seg(&self, i: usize, _: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        let a = self.sc.of(self.v.scales()[i]);
        debug_assert_eq!((TERNARY_PLUS, TERNARY_MINUS), (1, 2));
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe {
            let t = _mm512_maskz_mov_ps(0x2222, _mm512_set1_ps(a));
            _mm512_mask_mov_ps(t, 0x4444, _mm512_set1_ps(-a))
        }
    }

    #[inline(always)]
    unsafe fn lanes(&self, table: &Self::Seg, i: usize, k: usize, m: __mmask16) -> __m512 {
        use std::arch::x86_64::*;
        let off = 2 * (i * self.cols + k);
        let bytes = self.v.codes().bytes();
        let w = if ALIGNED && m == 0xFFFF {
            // SAFETY: `off` is a multiple of 32 and bits `off..off + 32` are
            // codes of row `i` (the caller's contract): inside the stream.
            unsafe { bytes.as_ptr().add(off / 8).cast::<u32>().read_unaligned() }.to_le()
        } else {
            (super::lanes::read8(bytes, off / 8) >> (off % 8)) as u32
        };
        // Lane d: the word shifted right by 2d, so its low 4 bits index the
        // table by code d (a broadcast, a shift and a lookup, no scalar bit
        // extraction). Lanes outside `m` (and their garbage bits) are zeroed.
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe {
            let shifts =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let idx = _mm512_srlv_epi32(_mm512_set1_epi32(w as i32), shifts);
            if m == 0xFFFF {
                _mm512_permutexvar_ps(idx, *table)
            } else {
                _mm512_maskz_permutexvar_ps(m, idx, *table)
            }
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
