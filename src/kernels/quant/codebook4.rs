//! 4-bit codebook indices (k ≤ 16, rows of even length) for the streamed
//! products of [`gemv`](crate::kernels::gemv): the row's codebook (or the
//! tensor's) is the 16-entry register table of [`nibbles::lookup`](super::nibbles::lookup),
//! the values of the codebook's own decoder.

use std::arch::x86_64::*;

use ndarray::Array2;

use crate::kernels::gemv::{RowReader, Stream};
use crate::matrix::{CodebookScope, CodebookValues};

/// The reader: one padded codebook per row (or one for the tensor).
struct Codebook4Rows<'a, const VBMI: bool> {
    v: &'a CodebookValues,
    cols: usize,
    /// Each codebook padded to 16 entries.
    tables: Vec<[f32; 16]>,
}

/// Whether [`streamed`] takes these values (rows of `cols`).
pub(super) fn fits(v: &CodebookValues, cols: usize) -> bool {
    v.indices().width() == 4 && cols.is_multiple_of(2) && (1..=16).contains(&v.k())
}

/// `y = x · Wᵀ` through the reader; `None` where [`fits`] does not hold.
///
/// # Safety
/// As [`gemv::quant`](crate::kernels::gemv::quant): AVX-512 F/BW/VL, BMI2
/// and FMA are available; `v` holds rows of `s.cols`.
pub(super) unsafe fn streamed(v: &CodebookValues, s: Stream<'_>) -> Option<Array2<f32>> {
    let cols = s.cols;
    if !fits(v, cols) {
        return None;
    }
    let rows = v.layout.rows();
    let tables = v
        .centroids()
        .chunks(v.k())
        .map(|cb| std::array::from_fn(|t| cb.get(t).copied().unwrap_or(0.0)))
        .collect();
    let vbmi = std::arch::is_x86_feature_detected!("avx512vbmi");
    // SAFETY: this function's contract; the VBMI reader only where VBMI is
    // detected.
    Some(unsafe {
        super::with_const!(vbmi, |V| s
            .run(&Codebook4Rows::<V> { v, cols, tables }, rows))
    })
}

impl<const VBMI: bool> RowReader for Codebook4Rows<'_, VBMI> {
    type Seg = __m512;

    const VBMI: bool = VBMI;

    const BYTES_PER_16: usize = 8;

    #[inline(always)]
    unsafe fn seg(&self, i: usize, _: usize) -> __m512 {
        let t = match self.v.scope() {
            CodebookScope::PerTensor => &self.tables[0],
            CodebookScope::PerRow => &self.tables[i],
        };
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe { _mm512_loadu_ps(t.as_ptr()) }
    }

    #[inline(always)]
    unsafe fn lanes(&self, table: &__m512, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: rows start on a byte (even `cols`); the caller guarantees
        // AVX-512 (VBMI for this reader) and that lanes in `m` lie in row
        // `i`, so a full step's 8 bytes are in the row.
        unsafe {
            let p = self
                .v
                .indices()
                .bytes()
                .as_ptr()
                .add((i * self.cols + k) / 2);
            super::nibbles::lookup::<VBMI>(p, m, *table)
        }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.v
            .indices()
            .bytes()
            .as_ptr()
            .wrapping_add((i * self.cols + k) / 2)
    }
}
