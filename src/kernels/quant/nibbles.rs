//! The inner step of the streamed 4-bit readers (int4, 4-bit codebooks):
//! 16 packed nibbles (low nibble first) looked up in a 16-entry register
//! table.

use std::arch::x86_64::*;

/// `table[nibble d]` in lane `d` for the 16 nibbles from byte `p` on; lanes
/// outside `m` are `+0.0` and their bytes are not read. With `VBMI`, one
/// `vpmultishiftqb` puts nibble `d` of a broadcast 8-byte word in the low
/// bits of lane `d` (three operations per 16 weights, not five).
///
/// # Safety
/// AVX-512 F/BW/VL (and VBMI when `VBMI`) are available; the bytes of the
/// lanes in `m` are readable, and all 8 bytes when `m` is full.
#[inline(always)]
pub(super) unsafe fn lookup<const VBMI: bool>(p: *const u8, m: __mmask16, table: __m512) -> __m512 {
    // SAFETY: this function's contract.
    unsafe {
        if VBMI && m == 0xFFFF {
            // Control byte 4d (the low byte of lane d) = bit offset 4d.
            let ctrl = _mm512_set_epi64(
                0x3C_0000_0038,
                0x34_0000_0030,
                0x2C_0000_0028,
                0x24_0000_0020,
                0x1C_0000_0018,
                0x14_0000_0010,
                0x0C_0000_0008,
                0x04_0000_0000,
            );
            let w = _mm512_set1_epi64(p.cast::<i64>().read_unaligned());
            return _mm512_permutexvar_ps(_mm512_multishift_epi64_epi8(ctrl, w), table);
        }
        let b = if m == 0xFFFF {
            _mm_loadl_epi64(p.cast())
        } else {
            let nbytes = (m.count_ones() as usize).div_ceil(2);
            _mm_maskz_loadu_epi8(((1u32 << nbytes) - 1) as u16, p.cast())
        };
        // Byte 2j: low nibble of b_j; byte 2j + 1: b_j >> 4 (bits above the
        // nibble are ignored by the permute).
        let idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, _mm_srli_epi16::<4>(b)));
        if m == 0xFFFF {
            _mm512_permutexvar_ps(idx, table)
        } else {
            _mm512_maskz_permutexvar_ps(m, idx, table)
        }
    }
}
