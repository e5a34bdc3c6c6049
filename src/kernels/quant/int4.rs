//! int4 weights (two per byte): the row decoder behind [`DecodeRows`]. The
//! products are the decoded-tile kernels of [`tile`](crate::kernels::tile),
//! with the in-register reader in [`lanes`](super::lanes).

use super::RowScale;
use crate::matrix::Int4Values;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, __mmask16};

super::decode_rows_by_row!(Int4Values, int4_row);

/// int4 rows (even `cols`, so rows start on a byte) for the streamed
/// small-batch products of [`gemv`](crate::kernels::gemv): the 16 values
/// `(q − z)·s` of a row or group are a register table, set up once per
/// segment; 16 nibbles index it (`nibbles::lookup`, with VBMI where
/// detected).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Int4Rows<'a, const VBMI: bool> {
    v: &'a Int4Values,
    cols: usize,
    seg: usize,
    params: super::lanes::SegParams<'a>,
    sc: RowScale,
}

/// [`gemv::quant`](crate::kernels::gemv::quant) over int4 rows (VBMI
/// nibble extraction where detected); `None` for odd `cols` or where a
/// 16-value block can span two parameter sets.
///
/// # Safety
/// As [`gemv::quant`](crate::kernels::gemv::quant): AVX-512 F/BW/VL, BMI2
/// and FMA are available; `v` holds rows of `s.cols`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn streamed(
    v: &Int4Values,
    s: crate::kernels::gemv::Stream<'_>,
    sc: RowScale,
) -> Option<ndarray::Array2<f32>> {
    let seg = super::lanes::segment_len(&v.params)?;
    let cols = s.cols;
    if !cols.is_multiple_of(2) {
        return None;
    }
    let params = super::lanes::SegParams::new(&v.params, cols);
    let rows = v.layout.rows();
    let vbmi = std::arch::is_x86_feature_detected!("avx512vbmi");
    // SAFETY: this function's contract; the VBMI reader only where VBMI is
    // detected.
    Some(unsafe {
        super::with_const!(vbmi, |V| s.run(
            &Int4Rows::<V> {
                v,
                cols,
                seg,
                params,
                sc
            },
            rows
        ))
    })
}

#[cfg(target_arch = "x86_64")]
impl<const VBMI: bool> crate::kernels::gemv::RowReader for Int4Rows<'_, VBMI> {
    type Seg = std::arch::x86_64::__m512;

    const VBMI: bool = VBMI;

    fn seg_len(&self) -> usize {
        self.seg
    }

    const BYTES_PER_16: usize = 8;

    /// The table `(q − z)·s` for the 16 nibbles, with the operations (and so
    /// the bits) of the encoding's decoder: `q − z` exact, then one product.
    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (row `i`, column `k` exist).
        let (s, z) = unsafe { self.params.get(i, k) };
        let s = self.sc.of(s);
        debug_assert_eq!(crate::matrix::nibble_to_i8(8), -8);
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe {
            let q = _mm512_setr_ps(
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0,
                -1.0,
            );
            // `q − 0` is `q` (no −0 among the codes): skip it when symmetric.
            let q = if z == 0 {
                q
            } else {
                _mm512_sub_ps(q, _mm512_set1_ps(z as f32))
            };
            _mm512_mul_ps(q, _mm512_set1_ps(s))
        }
    }

    #[inline(always)]
    unsafe fn lanes(&self, table: &Self::Seg, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: rows start on a byte (even `cols`); the caller guarantees
        // AVX-512 (VBMI for this reader) and that lanes in `m` lie in row
        // `i`, so a full step's 8 bytes are in the row.
        unsafe {
            let p = self.v.codes.bytes().as_ptr().add((i * self.cols + k) / 2);
            super::nibbles::lookup::<VBMI>(p, m, *table)
        }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.v
            .codes
            .bytes()
            .as_ptr()
            .wrapping_add((i * self.cols + k) / 2)
    }
}
