//! Kernels that multiply quantized weights without decoding them to a dense
//! matrix, one file per family. Each has a plain reference next to it, a
//! SIMD path chosen at run time, and a portable path that every test also
//! runs (pass [`Tier::Portable`](super::Tier::Portable)).
//!
//! Weight-only products (`int8`, `int4`, `binary`, `ternary`, codebooks) take
//! f32 activations and run on [`tile`](super::tile): up to 8 input rows read
//! the codes straight into registers (`lanes`, AVX-512), larger batches
//! decode tiles of rows once and reuse them across the batch. Both compute
//! each output with the same dot product, so a row of the result never
//! depends on the batch size or the executor. [`int8_gemm`] multiplies int8
//! weights by dynamically quantized int8 activations.

use ndarray::{s, Array2, ArrayView2};

use crate::matrix::{
    CodebookValues, CompressedMatrix, Granularity, QuantParams, Structure, Values,
};
use crate::parallel::ParallelExecutor;

mod activations;
pub mod binary;
mod fused;
mod int4;
mod int8;
pub mod int8_gemm;
mod int8_panel;
mod lanes;
mod ternary;

pub use activations::QuantizedActivations;

// The tier under its old name inside these files (public name: `Tier`).
pub(crate) use super::Tier as Isa;

/// Whole rows of one encoding decoded to f32: one impl per encoding, in
/// plain Rust, compiled for every tier by [`decode_rows`].
pub(crate) trait DecodeRows: Sync {
    /// Decodes rows `row0..` into `out` (whole rows of `cols`). Must be
    /// `#[inline(always)]` so that each tier's copy vectorizes it.
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]);
}

#[inline(always)]
fn decode_rows_any<V: DecodeRows>(v: &V, row0: usize, out: &mut [f32]) {
    v.decode_rows_portable(row0, out)
}

super::multiversion! {
    /// Decodes rows `row0..` of W into `out` (whole rows of `cols`) at the
    /// best tier of this CPU.
    pub(crate) fn decode_rows<V: DecodeRows>(v: &V, row0: usize, out: &mut [f32]) => decode_rows_any;
}

/// `y = x · Wᵀ` for a block of quantized values stored as `rows` full rows of
/// `cols` (a dense or kept-rows structure); `[batch, rows]`. `None` for f32
/// values (the dense and sparse kernels take them) or ragged layouts.
pub fn matmul_block(
    values: &Values,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    let layout = values.layout();
    let rows = layout.rows();
    let cols = layout.max_row_len();
    if rows == 0 || layout.total() != rows * cols || x.ncols() != cols {
        return None;
    }
    if matches!(values, Values::F32(_)) {
        return None;
    }
    // Every batch size: one dot-product order per (input row, weight row)
    // pair; small batches read the codes in registers, larger ones decode
    // tiles once (the same values, so the same bits).
    let x = x.view();
    // One arm per encoding: its in-register reader and its row decoder.
    macro_rules! tiled {
        ($v:expr, $lanes:ident) => {{
            let f = lanes::$lanes::new($v, cols);
            super::tile::matmul_lanes(
                rows,
                cols,
                |r, o| decode_rows($v, r, o),
                f.as_ref(),
                x,
                exec,
                isa,
            )
        }};
    }
    Some(match values {
        Values::Int8(v) => tiled!(v, Int8Lanes),
        Values::Int4(v) => tiled!(v, Int4Lanes),
        Values::Binary(v) => tiled!(v, BinaryLanes),
        Values::Ternary(v) => tiled!(v, TernaryLanes),
        Values::Codebook(v) => tiled!(v, CodebookLanes),
        Values::F32(_) => unreachable!("checked above"),
    })
}

/// Decodes whole rows `row0..` of quantized or shared values into `out`
/// (rows of `values.layout().max_row_len()`); f32 values are copied.
pub(crate) fn decode_values(values: &Values, row0: usize, out: &mut [f32]) {
    match values {
        Values::Int8(v) => decode_rows(v, row0, out),
        Values::Int4(v) => decode_rows(v, row0, out),
        Values::Binary(v) => decode_rows(v, row0, out),
        Values::Ternary(v) => decode_rows(v, row0, out),
        Values::Codebook(v) => decode_rows(v, row0, out),
        Values::F32(v) => {
            let n = values.layout().max_row_len();
            out.copy_from_slice(&v.data()[row0 * n..row0 * n + out.len()]);
        }
    }
}

impl DecodeRows for CodebookValues {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        let cols = self.layout.max_row_len();
        let bytes = self.indices().bytes();
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

/// Spreads the `[batch, stored rows]` product of a kept-rows matrix into
/// `[batch, rows]` (zeros elsewhere); returns dense products unchanged.
pub fn scatter_rows(m: &CompressedMatrix, y: Array2<f32>) -> Array2<f32> {
    match m.structure() {
        Structure::KeptRows(k) => {
            let mut full = Array2::zeros((y.nrows(), m.rows()));
            for (j, &r) in k.rows().iter().enumerate() {
                full.column_mut(r as usize).assign(&y.slice(s![.., j]));
            }
            full
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

/// Whole rows `row0..` of an N:M matrix decoded to dense f32 rows (`out`
/// holds whole rows): the stored values of each row decoded at once, then
/// placed group by group at their in-group positions (2-bit positions, as
/// for 2:4, read with shifts).
pub(crate) fn decode_nm_rows(s: &crate::matrix::NM, values: &Values, row0: usize, out: &mut [f32]) {
    let (n, m) = (s.n, s.m);
    let per = values.layout().max_row_len();
    let cols = per / n * m;
    let mut buf = vec![0.0f32; per];
    let bytes = s.positions.bytes();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        let i = row0 + r;
        decode_values(values, i, &mut buf);
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
