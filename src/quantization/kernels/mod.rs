//! Kernels that multiply quantized weights without decoding them to a dense
//! matrix, one file per family. Each has a plain reference next to it, a
//! SIMD path chosen at run time, and a portable path that every test also
//! runs (pass [`Isa::Portable`]).
//!
//! Weight-only kernels (`int8`, `int4`, `binary`, `ternary`) take f32
//! activations: at batch 1 they dequantize on the fly inside the dot
//! product (GEMV, memory bound); at larger batches they decode blocks of
//! rows and use a dense GEMM on the block. [`int8_gemm`] multiplies int8
//! weights by dynamically quantized int8 activations.

use ndarray::{s, Array2, ArrayView2};

use crate::matrix::{CompressedMatrix, Granularity, QuantParams, Structure, Values};
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor};

pub mod binary;
mod fused;
mod int4;
mod int8;
pub mod int8_gemm;
mod ternary;

/// Instruction-set tiers, lowest first. A kernel given a tier above what the
/// CPU has runs at the best available one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 F/BW/VL + BMI2 + POPCNT.
    Avx512,
    /// AVX-512 with VNNI (integer dot products).
    Avx512Vnni,
}

impl Isa {
    /// The best tier this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            let avx512 = has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("bmi2")
                && has!("popcnt")
                && has!("fma");
            if avx512 && has!("avx512vnni") {
                return Isa::Avx512Vnni;
            }
            if avx512 {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// `self`, capped at what the CPU supports.
    pub fn capped(self) -> Isa {
        self.min(Isa::detect())
    }
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
    let mut yt = vec![0.0f32; rows * batch];
    if batch == 1 {
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
    // Small batches: decode each row once, dot it with every input row
    // (decode + GEMM would cost a dense GEMM plus the decode).
    if batch <= fused::FUSED_MAX_BATCH {
        let xs = x.as_slice().expect("standard layout");
        let per = rows_per_task(cols * batch, GEMV_TASK_ELEMS);
        for_each_chunk_mut(exec, &mut yt, per * batch, |t, out| {
            fused::rows_times_batch(values, xs, batch, t * per, out)
        });
        return Some(to_batch_major(yt, rows, batch));
    }
    // Batched: decode a block of rows into f32 and multiply it with GEMM.
    let per = rows_per_task(cols, BLOCK_TASK_ELEMS);
    for_each_chunk_mut(exec, &mut yt, per * batch, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch;
        let mut tile = vec![0.0f32; nr * cols];
        fused::decode_rows(values, r0, &mut tile);
        let tile = ArrayView2::from_shape((nr, cols), &tile).expect("sizes match");
        // out is [nr, batch]: (W_block · xᵀ).
        let mut o = ndarray::ArrayViewMut2::from_shape((nr, batch), out).expect("sizes match");
        ndarray::linalg::general_mat_mul(1.0, &tile, &x.t(), 0.0, &mut o);
    });
    Some(to_batch_major(yt, rows, batch))
}

/// `yᵀ` `[rows, batch]` to `y` `[batch, rows]`.
fn to_batch_major(yt: Vec<f32>, rows: usize, batch: usize) -> Array2<f32> {
    Array2::from_shape_vec((rows, batch), yt)
        .expect("sizes match")
        .reversed_axes()
        .as_standard_layout()
        .into_owned()
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
