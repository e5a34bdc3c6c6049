//! Kernels that multiply quantized weights without decoding them to a dense
//! matrix, one file per family. Each has a plain reference next to it, a
//! SIMD path chosen at run time, and a portable path that every test also
//! runs (pass [`Tier::Portable`](super::Tier::Portable)).
//!
//! Weight-only kernels (`int8`, `int4`, `binary`, `ternary`) take f32
//! activations: at batch 1 they dequantize on the fly inside the dot
//! product (GEMV, memory bound); at larger batches they decode blocks of
//! rows and use a dense GEMM on the block. [`int8_gemm`] multiplies int8
//! weights by dynamically quantized int8 activations.

use ndarray::{s, Array2, ArrayView2};

use crate::matrix::{CompressedMatrix, Granularity, QuantParams, Structure, Values};
use crate::parallel::{for_each_chunk_mut, row_blocks, rows_per_task, ParallelExecutor};

mod activations;
pub mod binary;
mod fused;
mod int4;
mod int8;
pub mod int8_gemm;
mod int8_panel;
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

/// Rows per task of the batch-1 kernels.
const GEMV_TASK_ELEMS: usize = 1 << 16;
/// Rows per task (and per decoded block) of the batched path.
const BLOCK_TASK_ELEMS: usize = 1 << 18;

/// `y = x · Wᵀ` for a block of quantized values stored as `rows` full rows of
/// `cols` (a dense or kept-rows structure); `[batch, rows]`. `None` for
/// encodings without a kernel here (f32, codebook) or ragged layouts.
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
    if !matches!(
        values,
        Values::Int8(_) | Values::Int4(_) | Values::Binary(_) | Values::Ternary(_)
    ) {
        return None;
    }
    let isa = isa.capped();
    let batch = x.nrows();
    let x = x.as_standard_layout();
    if batch == 1 {
        let mut yt = vec![0.0f32; rows];
        let xs = x.as_slice().expect("standard layout");
        let per = rows_per_task(cols, GEMV_TASK_ELEMS);
        match values {
            Values::Int8(v) => {
                let prep = int8::Prepared::new(v, xs);
                for_each_chunk_mut(exec, &mut yt, per, |t, y| {
                    int8::gemv(v, &prep, t * per, y, isa)
                });
            }
            Values::Int4(v) => {
                let prep = int4::Prepared::new(v, xs);
                for_each_chunk_mut(exec, &mut yt, per, |t, y| {
                    int4::gemv(v, &prep, t * per, y, isa)
                });
            }
            Values::Binary(v) => {
                let sum: f32 = xs.iter().sum();
                for_each_chunk_mut(exec, &mut yt, per, |t, y| {
                    binary::gemv(v, xs, sum, t * per, y, isa)
                });
            }
            Values::Ternary(v) => for_each_chunk_mut(exec, &mut yt, per, |t, y| {
                ternary::gemv(v, xs, t * per, y, isa)
            }),
            _ => unreachable!("checked above"),
        }
        return Some(Array2::from_shape_vec((1, rows), yt).expect("sizes match"));
    }
    // Batched: decode a block of rows into f32 and multiply it with GEMM.
    let per = rows_per_task(cols, BLOCK_TASK_ELEMS);
    let y = row_blocks(rows, batch, per, exec, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch;
        let mut tile = vec![0.0f32; nr * cols];
        match values {
            Values::Int8(v) => decode_rows(v, r0, &mut tile),
            Values::Int4(v) => decode_rows(v, r0, &mut tile),
            Values::Binary(v) => decode_rows(v, r0, &mut tile),
            Values::Ternary(v) => decode_rows(v, r0, &mut tile),
            _ => unreachable!("checked above"),
        }
        let tile = ArrayView2::from_shape((nr, cols), &tile).expect("sizes match");
        // out is [nr, batch]: (W_block · xᵀ).
        let mut o = ndarray::ArrayViewMut2::from_shape((nr, batch), out).expect("sizes match");
        ndarray::linalg::general_mat_mul(1.0, &tile, &x.t(), 0.0, &mut o);
    });
    Some(y)
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
