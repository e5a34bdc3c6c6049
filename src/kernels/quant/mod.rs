//! Kernels that multiply quantized weights without decoding them to a dense
//! matrix, one file per family. Each has a plain reference next to it, a
//! SIMD path chosen at run time, and a portable path that every test also
//! runs (pass [`Tier::Portable`](super::Tier::Portable)).
//!
//! Weight-only products (`int8`, `int4`, `binary`, `ternary`, codebooks) take
//! f32 activations: up to 16 input rows stream W through in-register row
//! readers (`kernels::gemv`; 8-bit codebooks: 1 row through `lanes` on
//! [`tile`](super::tile)), larger batches decode tiles of rows once and
//! reuse them across the batch. All compute each output with the same dot
//! product — of the integer values, scaled once per output where a row has
//! one scale (`RowScale`) — so a row of the result never depends on the
//! batch size or the executor. On AVX-512 VNNI, symmetric int8 / int4
//! and ternary matrices instead split the f32 input into three int8 slices
//! and sum exact integer products (`sliced`): the same independence,
//! within `2⁻²⁴·max|x|` of the input. On AVX-512, binary matrices look up
//! tables of each input's signed sums over four columns (`sign_lookup`),
//! at every batch size. [`int8_gemm`] multiplies int8
//! weights by dynamically quantized int8 activations, [`int4_gemm`] int4
//! weights by the same activations.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::matrix::{
    CodebookValues, CompressedMatrix, Granularity, QuantParams, Structure, Values,
};
use crate::parallel::ParallelExecutor;

mod activations;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
pub mod binary;
#[cfg(target_arch = "x86_64")]
mod codebook4;
mod fused;
mod int4;
pub mod int4_gemm;
mod int8;
pub mod int8_gemm;
mod int8_panel;
mod lanes;
#[cfg(target_arch = "x86_64")]
mod nibbles;
pub mod sign_gemm;
pub(crate) mod sign_lookup;
pub(crate) mod sliced;
mod ternary;

pub use activations::QuantizedActivations;

// The tier under its old name inside these files (public name: `Tier`).
pub(crate) use super::Tier as Isa;

/// Where the scale of a row-scaled encoding (int8 / int4 with one scale
/// per tensor or per row, binary, ternary: see [`row_scales`]) enters.
///
/// The products defer it: their readers and decoders hand out the integer
/// values `q − z` (±1 and 0 for binary / ternary, exact in f32), every
/// output is the dot product of those with the input row, and that dot
/// product is multiplied once by the row's scale. A multiply per weight
/// cost more than the whole multiply-add at small batches (int8 at batch 1
/// ran at 0.6–0.8× dense f32 on L2-resident shapes). Every path (streamed,
/// in registers, decoded tiles, every tier's order) defers the same way, so
/// a row of the result still never depends on the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowScale {
    /// The encoding's own values, `(q − z)·s` (decoding for a caller's GEMM).
    Applied,
    /// `q − z`: the product scales each output once.
    Deferred,
}

impl RowScale {
    /// The scale a decoder multiplies by: `s`, or 1 when deferred.
    #[inline(always)]
    pub(crate) fn of(self, s: f32) -> f32 {
        match self {
            RowScale::Applied => s,
            RowScale::Deferred => 1.0,
        }
    }
}

/// The scale of each stored row where one scale covers the whole row (int8
/// and int4 per tensor or per row — int4 rows of even length — binary,
/// ternary): the products defer it ([`RowScale`]). `None` for groups,
/// codebooks and f32.
pub(crate) fn row_scales(values: &Values) -> Option<Vec<f32>> {
    let rows = values.layout().rows();
    let per_row = |p: &QuantParams| {
        (!matches!(p.granularity(), Granularity::PerGroup(_)))
            .then(|| (0..rows).map(|i| p.get(p.index(i, 0)).0).collect())
    };
    match values {
        Values::Int8(v) => per_row(v.params()),
        Values::Int4(v) if values.layout().max_row_len().is_multiple_of(2) => per_row(v.params()),
        Values::Binary(v) => Some(v.scales().to_vec()),
        Values::Ternary(v) => Some(v.scales().to_vec()),
        _ => None,
    }
}

/// `y[b, i] *= s[i]`: the deferred row scales, once per output.
fn scale_outputs(mut y: Array2<f32>, s: Option<Vec<f32>>) -> Array2<f32> {
    if let Some(s) = s {
        crate::math::for_each_row(&mut y, |row| {
            row.iter_mut().zip(&s).for_each(|(v, s)| *v *= s)
        });
    }
    y
}

/// Whole rows of one encoding decoded to f32: one impl per encoding, in
/// plain Rust, compiled for every tier by [`decode_rows`].
pub(crate) trait DecodeRows: Sync {
    /// Decodes rows `row0..` into `out` (whole rows of `cols`), with the
    /// row scale applied or deferred. Must be `#[inline(always)]` so that
    /// each tier's copy vectorizes it.
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32], scale: RowScale);
}

/// `$e` with `$a` a const equal to `$cond`: the streamed readers take
/// run-time facts (row alignment, VBMI) as const parameters, since a test
/// per 16 weights cost a third of the product.
#[cfg(target_arch = "x86_64")]
macro_rules! with_const {
    ($cond:expr, |$a:ident| $e:expr) => {
        if $cond {
            const $a: bool = true;
            $e
        } else {
            const $a: bool = false;
            $e
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use with_const;

/// [`DecodeRows`] for an encoding whose rows the byte-wise decoder `fused::$row`
/// writes one at a time.
macro_rules! decode_rows_by_row {
    ($values:ty, $row:ident) => {
        impl super::DecodeRows for $values {
            #[inline(always)]
            fn decode_rows_portable(&self, row0: usize, out: &mut [f32], scale: super::RowScale) {
                // Byte-wise (a table per byte, not per-code bit arithmetic).
                let cols = self.layout.max_row_len();
                for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                    super::fused::$row(self, row0 + r, o, scale);
                }
            }
        }
    };
}
pub(crate) use decode_rows_by_row;

#[inline(always)]
fn decode_rows_any<V: DecodeRows>(v: &V, row0: usize, out: &mut [f32], scale: RowScale) {
    v.decode_rows_portable(row0, out, scale)
}

super::multiversion! {
    /// Decodes rows `row0..` of W into `out` (whole rows of `cols`) at the
    /// best tier of this CPU.
    pub(crate) fn decode_rows<V: DecodeRows>(v: &V, row0: usize, out: &mut [f32], scale: RowScale) => decode_rows_any;
}

/// `y = x · Wᵀ` for a block of quantized values stored as `rows` full rows of
/// `cols` (a dense or kept-rows structure); `[batch, rows]`. `None` for f32
/// values (the dense and sparse kernels take them) or ragged layouts.
pub fn matmul_block<'a>(
    values: &Values,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    let layout = values.layout();
    let rows = layout.rows();
    let cols = layout.max_row_len();
    if rows == 0 || layout.total() != rows * cols || x.ncols() != cols {
        return None;
    }
    if matches!(values, Values::F32(_)) {
        return None;
    }
    // Binary rows on AVX-512: f32 tables of the input looked up by the
    // sign bits, at every batch size.
    if let Values::Binary(v) = values {
        if isa.capped() >= Isa::Avx512 {
            if let Some(y) = sign_lookup::matmul(v, x, exec) {
                return Some(y);
            }
        }
    }
    // int8 / int4 / binary / ternary on VNNI: exact integer sums over three
    // int8 slices of x, the weight scales applied in the kernel.
    if let Some(y) = sliced::matmul(values, x, exec, isa) {
        return Some(y);
    }
    // Codebooks of cache-resident matrices: the dense kernel on their
    // decoded copy (the decoding kernels' order, so the same bits).
    if let Values::Codebook(v) = values {
        if let Some(y) = super::decoded_copy::matmul_block(v, (rows, cols), x, exec, isa) {
            return Some(y);
        }
    }
    // Cache-resident codes on AVX2: the dense kernel on their decoded copy
    // (the readers' values and order, so the same bits).
    if let Some(y) = super::decoded_copy::matmul_codes(values, (rows, cols), x, exec, isa) {
        return Some(y);
    }
    // Every batch size: one dot-product order per (input row, weight row)
    // pair; small batches read the codes in registers, larger ones decode
    // tiles once (the same values, so the same bits), each output scaled
    // once by its row's deferred scale.
    let scales = row_scales(values);
    let sc = if scales.is_some() {
        RowScale::Deferred
    } else {
        RowScale::Applied
    };
    // A few input rows: W streamed once, the same values and order.
    if let Some(y) = lanes::streamed(values, x, exec, isa, sc) {
        return Some(scale_outputs(y, scales));
    }
    // The same on AVX2: codes decoded in registers, the dense AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    if let Some(y) = avx2::streamed(values, x, exec, isa, sc) {
        return Some(scale_outputs(y, scales));
    }
    // One arm per encoding: its in-register reader and its row decoder.
    macro_rules! tiled {
        ($v:expr, $lanes:ident) => {{
            let f = lanes::$lanes::new($v, cols, sc);
            super::tile::matmul(
                rows,
                cols,
                |r, o| decode_rows($v, r, o, sc),
                f.as_ref(),
                x,
                exec,
                isa,
            )
        }};
    }
    let y = match values {
        Values::Int8(v) => tiled!(v, Int8Lanes),
        Values::Int4(v) => tiled!(v, Int4Lanes),
        Values::Binary(v) => tiled!(v, BinaryLanes),
        Values::Ternary(v) => tiled!(v, TernaryLanes),
        Values::Codebook(v) => tiled!(v, CodebookLanes),
        Values::F32(_) => unreachable!("checked above"),
    };
    Some(scale_outputs(y, scales))
}

/// `y = x · Wᵀ` for an N:M matrix `[rows, cols]` whose values have a
/// uniform layout: on AVX-512 VNNI, int codes, binary and ternary through
/// the [integer slices](sliced::matmul_nm); with AVX-512, other 2:4 rows whose values have an in-register
/// reader run on [`nm24`](super::nm24) (the input permuted to the stored
/// values) at every batch size; other N:M rows decode whole rows into tiles
/// ([`tile`](super::tile)). `None` for f32 values off the 2:4 kernel (the
/// sparse kernels take those).
pub(crate) fn matmul_nm(
    s: &crate::matrix::NM,
    values: &Values,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    // int8 / int4 / binary / ternary on VNNI: the codes spread to their
    // columns, multiplied as exact integer sums over slices of x.
    if let Some(y) = sliced::matmul_nm(s, values, (rows, cols), x, exec, isa) {
        return Some(y);
    }
    // Cache-resident blocks (AVX2, AVX-512): the dense kernel on
    // the rows spread once (the decoded tiles' values and order, so the
    // same bits), at every batch size.
    let spread = |out: &mut [f32], sc| spread_nm(s, values, cols, 0, out, sc);
    if let Some(y) = super::decoded_copy::matmul_spread(values, (rows, cols), spread, x, exec, isa)
    {
        return Some(y);
    }
    let per = values.layout().max_row_len();
    // The stored values' rows are W's rows: their scales are deferred too.
    let scales = row_scales(values);
    let sc = if scales.is_some() {
        RowScale::Deferred
    } else {
        RowScale::Applied
    };
    #[cfg(target_arch = "x86_64")]
    if isa.capped() >= Isa::Avx512 && super::nm24::fits(s, cols) {
        macro_rules! nm24 {
            ($v:expr, $lanes:ident) => {
                if let Some(f) = lanes::$lanes::new($v, per, sc) {
                    // SAFETY: AVX-512 was checked; the reader reads `rows`
                    // rows of `per = cols / 2` values; the structure fits.
                    let once = !matches!(values, Values::F32(_));
                    let y = unsafe { super::nm24::matmul(s, &f, once, (rows, cols), x, exec) };
                    return Some(scale_outputs(y, scales));
                }
            };
        }
        match values {
            Values::F32(v) => nm24!(v, F32Lanes),
            Values::Int8(v) => {
                nm24!(v, CodeLanes);
                nm24!(v, Int8Lanes)
            }
            Values::Int4(v) => {
                nm24!(v, CodeLanes);
                nm24!(v, Int4Lanes)
            }
            Values::Binary(v) => nm24!(v, BinaryLanes),
            Values::Ternary(v) => nm24!(v, TernaryLanes),
            Values::Codebook(v) => nm24!(v, CodebookLanes),
        }
    }
    let decode = |r0: usize, out: &mut [f32]| spread_nm(s, values, cols, r0, out, sc);
    // AVX2: 2:4 rows of f32, int8 or int4 values read whole in registers
    // (small batches).
    #[cfg(target_arch = "x86_64")]
    if let Some(y) = avx2::streamed_nm(s, values, (rows, cols), x, exec, isa, sc) {
        return Some(scale_outputs(y, scales));
    }
    // Other f32 values run on the sparse kernels, except on AVX2, whose
    // tiles run the dense kernel (the values of the readers above).
    if matches!(values, Values::F32(_)) && isa.capped() != Isa::Avx2 {
        return None;
    }
    let y = super::tile::matmul(
        rows,
        cols,
        decode,
        None::<&super::tile::NoLanes>,
        x,
        exec,
        isa,
    );
    Some(scale_outputs(y, scales))
}

/// The largest batch that reads a block of `values` (rows of `cols`)
/// through an in-register reader, `None` where there is no reader (the
/// tiles are then decoded by the row decoders). [`matmul_block`] makes the
/// same choice.
pub(crate) fn reader_max_batch(values: &Values, cols: usize) -> Option<usize> {
    use super::tile::Lanes;
    match values {
        Values::Int8(v) => lanes::Int8Lanes::new(v, cols, RowScale::Applied).map(|f| f.max_batch()),
        Values::Int4(v) => lanes::Int4Lanes::new(v, cols, RowScale::Applied).map(|f| f.max_batch()),
        Values::Binary(v) => {
            lanes::BinaryLanes::new(v, cols, RowScale::Applied).map(|f| f.max_batch())
        }
        Values::Ternary(v) => {
            lanes::TernaryLanes::new(v, cols, RowScale::Applied).map(|f| f.max_batch())
        }
        Values::Codebook(v) => {
            lanes::CodebookLanes::new(v, cols, RowScale::Applied).map(|f| f.max_batch())
        }
        Values::F32(_) => None,
    }
}

/// The largest batch whose products stream W through an in-register row
/// reader ([`gemv`](super::gemv), the path of [`matmul_block`] there):
/// int8 and int4 (even rows) whose 16-value blocks share one parameter set,
/// binary, ternary, 4-bit codebooks (even rows); `None` for the others.
pub(crate) fn streamed_max_batch(values: &Values, cols: usize) -> Option<usize> {
    let fits = match values {
        Values::Int8(v) => lanes::segment_len(v.params()).is_some(),
        Values::Int4(v) => cols.is_multiple_of(2) && lanes::segment_len(v.params()).is_some(),
        Values::Binary(_) | Values::Ternary(_) => true,
        #[cfg(target_arch = "x86_64")]
        Values::Codebook(v) => codebook4::fits(v, cols),
        #[cfg(not(target_arch = "x86_64"))]
        Values::Codebook(_) => false,
        Values::F32(_) => false,
    };
    fits.then_some(super::gemv::QUANT_MAX_BATCH)
}

/// Whether [`matmul_nm`] runs N:M rows of `cols` columns on the 2:4
/// kernel (at every batch size): AVX-512, a 2:4 structure it reads, and
/// values with an in-register reader.
pub(crate) fn nm24_reads(s: &crate::matrix::NM, values: &Values, cols: usize) -> bool {
    let per = values.layout().max_row_len();
    let reader = match values {
        Values::F32(_) => true,
        v => reader_max_batch(v, per).is_some(),
    };
    #[cfg(target_arch = "x86_64")]
    let fits = super::nm24::fits(s, cols);
    #[cfg(not(target_arch = "x86_64"))]
    let fits = {
        let _ = (s, cols);
        false
    };
    Isa::detect() >= Isa::Avx512 && fits && reader
}

/// [`decode_values`] through the in-register reader where there is one
/// (AVX-512: 16 weights a step in vector registers, the same values), for
/// callers that decode whole blocks for a GEMM.
pub(crate) fn decode_values_fast(values: &Values, row0: usize, out: &mut [f32]) {
    let cols = values.layout().max_row_len();
    #[cfg(target_arch = "x86_64")]
    if cols > 0 && Isa::detect() >= Isa::Avx512 {
        macro_rules! via {
            ($v:expr, $lanes:ident) => {{
                if let Some(f) = lanes::$lanes::new($v, cols, RowScale::Applied) {
                    // SAFETY: AVX-512 F/BW/VL, BMI2 and FMA come with
                    // `Tier::Avx512`; `out` holds whole rows from `row0` on.
                    unsafe { super::tile::decode_lanes_avx512(&f, row0, cols, out) };
                    return;
                }
            }};
        }
        match values {
            Values::Int8(v) => via!(v, Int8Lanes),
            Values::Int4(v) => via!(v, Int4Lanes),
            Values::Binary(v) => via!(v, BinaryLanes),
            Values::Ternary(v) => via!(v, TernaryLanes),
            Values::Codebook(v) => via!(v, CodebookLanes),
            Values::F32(_) => {}
        }
    }
    decode_values(values, row0, out)
}

/// Decodes whole rows `row0..` of quantized or shared values into `out`
/// (rows of `values.layout().max_row_len()`); f32 values are copied.
pub(crate) fn decode_values(values: &Values, row0: usize, out: &mut [f32]) {
    decode_values_as(values, row0, out, RowScale::Applied)
}

/// [`decode_values`] with the row scales applied or deferred
/// ([`RowScale`]; deferred only for [`row_scales`] values).
pub(crate) fn decode_values_as(values: &Values, row0: usize, out: &mut [f32], scale: RowScale) {
    match values {
        Values::Int8(v) => decode_rows(v, row0, out, scale),
        Values::Int4(v) => decode_rows(v, row0, out, scale),
        Values::Binary(v) => decode_rows(v, row0, out, scale),
        Values::Ternary(v) => decode_rows(v, row0, out, scale),
        Values::Codebook(v) => decode_rows(v, row0, out, scale),
        Values::F32(v) => {
            let n = values.layout().max_row_len();
            out.copy_from_slice(&v.data()[row0 * n..row0 * n + out.len()]);
        }
    }
}

impl DecodeRows for CodebookValues {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32], scale: RowScale) {
        // Codebooks have no row scale (`row_scales`).
        debug_assert_eq!(scale, RowScale::Applied);
        let cols = self.layout.max_row_len();
        let bytes = self.indices().bytes();
        #[cfg(target_arch = "x86_64")]
        if self.indices().width() == 8
            && self.scope() == crate::matrix::CodebookScope::PerTensor
            && codebook_vbmi_available()
        {
            let mut table = [0.0f32; 256];
            for (t, &c) in table.iter_mut().zip(self.centroids()) {
                *t = c;
            }
            let idx = &bytes[row0 * cols..row0 * cols + out.len()];
            // SAFETY: VBMI and AVX-512 F/BW were detected; `idx` and `out`
            // have the same length.
            unsafe { vbmi::decode8(&table, idx, out) };
            return;
        }
        for (r, o) in out.chunks_exact_mut(cols).enumerate() {
            let i = row0 + r;
            let cb = self.row_codebook(i);
            match self.indices().width() {
                8 => {
                    for (o, &b) in o.iter_mut().zip(&bytes[i * cols..(i + 1) * cols]) {
                        *o = cb[b as usize];
                    }
                }
                4 if cols.is_multiple_of(2) => {
                    let src = &bytes[i * cols / 2..(i + 1) * cols / 2];
                    for (pair, &b) in o.chunks_exact_mut(2).zip(src) {
                        pair[0] = cb[(b & 0xF) as usize];
                        pair[1] = cb[(b >> 4) as usize];
                    }
                }
                _ => self.decode_row(i, o),
            }
        }
    }
}

/// Whether 8-bit codebook indices decode with AVX-512 VBMI byte lookups
/// (`vpermi2b`), 64 at a time, instead of gathers.
pub(crate) fn codebook_vbmi_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::Tier::detect() >= super::Tier::Avx512
            && std::arch::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// 8-bit codebook indices decoded 64 at a time with byte lookups.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

    /// `out[t] = table[idx[t]]`, bit for bit. The table is split into its
    /// four byte planes (256 bytes each, two `vpermi2b` tables of 128); each
    /// plane's bytes are looked up for 64 indices at once, and the planes
    /// are interleaved back into f32s. The indices are first permuted by
    /// 4-byte blocks so that the in-lane interleaves come out in order.
    ///
    /// # Safety
    /// AVX-512 F/BW/VBMI are available; `idx.len() == out.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn decode8(table: &[f32; 256], idx: &[u8], out: &mut [f32]) {
        debug_assert_eq!(idx.len(), out.len());
        let mut planes = [[0u8; 256]; 4];
        for (t, v) in table.iter().enumerate() {
            for (p, b) in v.to_bits().to_le_bytes().into_iter().enumerate() {
                planes[p][t] = b;
            }
        }
        let n = idx.len();
        // SAFETY: every load reads 64 bytes inside `planes` or `idx`
        // (`k + 64 ≤ n`), every store writes 16 f32 inside `out`.
        unsafe {
            let tl: [[__m512i; 4]; 4] = std::array::from_fn(|p| {
                std::array::from_fn(|q| _mm512_loadu_si512(planes[p].as_ptr().add(64 * q).cast()))
            });
            // Dword d of the permuted indices is dword (d % 4)·4 + d / 4.
            let perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            let ip = idx.as_ptr();
            let op = out.as_mut_ptr();
            let mut k = 0;
            while k + 64 <= n {
                let i = _mm512_permutexvar_epi32(perm, _mm512_loadu_si512(ip.add(k).cast()));
                let high = _mm512_movepi8_mask(i);
                let b: [__m512i; 4] = std::array::from_fn(|p| {
                    let lo = _mm512_permutex2var_epi8(tl[p][0], i, tl[p][1]);
                    let hi = _mm512_permutex2var_epi8(tl[p][2], i, tl[p][3]);
                    _mm512_mask_blend_epi8(high, lo, hi)
                });
                let b01l = _mm512_unpacklo_epi8(b[0], b[1]);
                let b01h = _mm512_unpackhi_epi8(b[0], b[1]);
                let b23l = _mm512_unpacklo_epi8(b[2], b[3]);
                let b23h = _mm512_unpackhi_epi8(b[2], b[3]);
                _mm512_storeu_si512(op.add(k).cast(), _mm512_unpacklo_epi16(b01l, b23l));
                _mm512_storeu_si512(op.add(k + 16).cast(), _mm512_unpackhi_epi16(b01l, b23l));
                _mm512_storeu_si512(op.add(k + 32).cast(), _mm512_unpacklo_epi16(b01h, b23h));
                _mm512_storeu_si512(op.add(k + 48).cast(), _mm512_unpackhi_epi16(b01h, b23h));
                k += 64;
            }
        }
        for (o, &b) in out[n / 64 * 64..].iter_mut().zip(&idx[n / 64 * 64..]) {
            *o = table[b as usize];
        }
    }
}

/// Spreads the `[batch, stored rows]` product of a kept-rows matrix into
/// `[batch, rows]` (zeros elsewhere); returns dense products unchanged.
pub fn scatter_rows(m: &CompressedMatrix, y: Array2<f32>) -> Array2<f32> {
    match m.structure() {
        Structure::KeptRows(k) => {
            // Slices, not column views: 50 strided assigns cost a third of
            // a 100 × 300 kept-rows product at batch 1.
            let (batch, n) = y.dim();
            let y = y.as_standard_layout();
            let ys = y.as_slice().expect("standard layout");
            let mut full = vec![0.0f32; batch * m.rows()];
            if n > 0 {
                for (o, yr) in full.chunks_exact_mut(m.rows()).zip(ys.chunks_exact(n)) {
                    for (&r, &v) in k.rows().iter().zip(yr) {
                        o[r as usize] = v;
                    }
                }
            }
            Array2::from_shape_vec((batch, m.rows()), full).expect("sizes match")
        }
        _ => y,
    }
}

/// The runs of a row of `cols` values that share one parameter set, as
/// `(start, end, param index)`, for uniform-layout row `i`.
#[inline]
pub(crate) fn segments(
    params: &QuantParams,
    i: usize,
    cols: usize,
) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let g = match params.granularity() {
        Granularity::PerGroup(g) => g,
        _ => cols.max(1),
    };
    (0..cols)
        .step_by(g)
        .map(move |a| (a, (a + g).min(cols), params.index(i, a)))
}

/// Plain reference for the weight-only kernels: `W·x` for one input row,
/// each row decoded by the encoding's own decoder and summed in f64.
pub fn reference_gemv(values: &Values, x: &[f32]) -> Vec<f64> {
    let layout = values.layout();
    let mut row = vec![0.0f32; layout.max_row_len()];
    (0..layout.rows())
        .map(|i| {
            let w = &mut row[..layout.row_len(i)];
            values.decode_row(i, w);
            w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
        })
        .collect()
}

/// Rows `row0..` of an N:M matrix of `cols` columns spread to whole rows
/// in `out`: on AVX2 by the 2:4 reader (8 columns a step) where it reads
/// these values, else by [`decode_nm_rows`] (the same values).
fn spread_nm(
    s: &crate::matrix::NM,
    values: &Values,
    cols: usize,
    row0: usize,
    out: &mut [f32],
    sc: RowScale,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::decode_nm(s, values, cols, row0, out, sc) {
        return;
    }
    let _ = cols;
    decode_nm_rows(s, values, row0, out, sc)
}

/// Whole rows `row0..` of an N:M matrix decoded to dense f32 rows (`out`
/// holds whole rows): the stored values of each row decoded at once, then
/// placed group by group at their in-group positions (2-bit positions, as
/// for 2:4, read with shifts).
pub(crate) fn decode_nm_rows(
    s: &crate::matrix::NM,
    values: &Values,
    row0: usize,
    out: &mut [f32],
    scale: RowScale,
) {
    let (n, m) = (s.n, s.m);
    let per = values.layout().max_row_len();
    let cols = per / n * m;
    let mut buf = vec![0.0f32; per];
    let bytes = s.positions.bytes();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        let i = row0 + r;
        decode_values_as(values, i, &mut buf, scale);
        o.fill(0.0);
        let base = i * per;
        if (n, m) == (2, 4) {
            // 2:4: one nibble holds a group's two positions.
            for (g, (og, v)) in o.chunks_exact_mut(4).zip(buf.chunks_exact(2)).enumerate() {
                let f = base + 2 * g;
                let p = bytes[f >> 2] >> (2 * (f & 3));
                og[(p & 3) as usize] = v[0];
                og[((p >> 2) & 3) as usize] = v[1];
            }
        } else if s.positions.width() == 2 {
            // 2-bit positions (m = 3 or 4): four to a byte, shifts only.
            for g in 0..per / n {
                for u in 0..n {
                    let f = base + g * n + u;
                    let pos = (bytes[f >> 2] >> (2 * (f & 3))) & 3;
                    o[g * m + pos as usize] = buf[g * n + u];
                }
            }
        } else {
            for g in 0..per / n {
                for u in 0..n {
                    let t = g * n + u;
                    o[g * m + s.positions.get(base + t) as usize] = buf[t];
                }
            }
        }
    }
}
