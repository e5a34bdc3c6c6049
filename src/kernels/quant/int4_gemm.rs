//! int4 weights × int8 (dynamically quantized) activations → i32 → f32:
//! ggml's Q4_0 × Q8_0 product, on squish's int4 encodings (per row, per
//! tensor or per group of a multiple of 8 columns).
//!
//! `y[b, n] = s_b · Σ_seg s_seg·(Σ_k x_bk·w_nk − z_seg·Σ_k x_bk)`, the formula
//! of the int8 × int8 kernel ([`int8_gemm`](super::int8_gemm)): the inner sums
//! are exact integers and the f32 steps run in one fixed order, so every
//! path gives the bits of [`gemm4_reference`]. The paths, picked at run time:
//!
//! * AVX-512 VNNI: the weights repacked once into nibble panels
//!   (`kernels::quant::int8_panel`), unpacked in registers and fed to
//!   `vpdpbusd`; half the weight bytes of int8.
//! * AVX2: the same panels through `vpmaddubsw` + `vpmaddwd` (exact for
//!   4-bit weights).
//! * portable: plain Rust over the stored codes (also the path for
//!   asymmetric weights).

use ndarray::Array2;

use super::int8_panel::Panels;
use super::{segments, Isa, QuantizedActivations};
use crate::matrix::{nibble_to_i8, Int4Values};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Weight elements per task on the portable path.
const TASK_ELEMS: usize = 1 << 16;

/// What the product needs from the weights on every call, computed once:
/// the nibble panels of the SIMD paths, where they apply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Prepared4 {
    panels: Option<Panels>,
}

impl Prepared4 {
    /// The panels of `v` when this CPU runs a SIMD path (AVX2 or better)
    /// and the layout allows them (symmetric, uniform rows, groups of a
    /// multiple of 8 columns).
    pub(crate) fn new(v: &Int4Values) -> Self {
        let simd = cfg!(target_arch = "x86_64") && Isa::detect() >= Isa::Avx2;
        Prepared4 {
            panels: if simd { Panels::new_int4(v) } else { None },
        }
    }
}

/// `[batch, rows]` product of the stored rows of `v` (a uniform layout of
/// full rows) with `xq` on `isa` (capped to the CPU); `prep` must come from
/// `v`. Bit-identical on every path and executor.
pub(crate) fn matmul(
    v: &Int4Values,
    prep: &Prepared4,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Array2<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = &prep.panels {
        if let Some(y) = super::int8_panel::matmul(p, xq, exec, isa) {
            return y;
        }
    }
    let _ = (prep, isa);
    portable(v, xq, exec)
}

/// The portable path: each weight row unpacked to bytes once, then exact
/// integer dot products with every activation row.
fn portable(v: &Int4Values, xq: &QuantizedActivations, exec: &dyn ParallelExecutor) -> Array2<f32> {
    let (rows, cols, batch) = (v.layout.rows(), xq.cols, xq.rows);
    let per = rows_per_task(cols, TASK_ELEMS);
    let params = v.params();
    row_blocks(rows, batch, per, exec, |t, out| {
        let mut w = vec![0i8; cols];
        for (r, o) in out.chunks_exact_mut(batch).enumerate() {
            let n = t * per + r;
            for (k, c) in w.iter_mut().enumerate() {
                *c = nibble_to_i8(v.codes.get(n * cols + k));
            }
            for (b, o) in o.iter_mut().enumerate() {
                let x = xq.row(b);
                let mut acc = 0.0f32;
                for (a, e, p) in segments(params, n, cols) {
                    let (s, z) = params.get(p);
                    let dot: i32 = w[a..e]
                        .iter()
                        .zip(&x[a..e])
                        .map(|(&q, &c)| q as i32 * c as i32)
                        .sum();
                    let d = if z == 0 {
                        dot as i64
                    } else {
                        let xs: i64 = x[a..e].iter().map(|&c| c as i64).sum();
                        dot as i64 - z as i64 * xs
                    };
                    acc = s.mul_add(d as f32, acc);
                }
                *o = acc * xq.scales[b];
            }
        }
    })
}

/// Plain reference for the int4 × int8 product (the formula above, plain
/// loops, i64 sums): `[batch, stored rows]`.
///
/// ```
/// use ndarray::Array2;
/// use squish::kernels::quant::int4_gemm::gemm4_reference;
/// use squish::matrix::Values;
/// use squish::prelude::*;
/// use squish::quantization::quantize_activations;
/// let w = Array2::from_shape_fn((3, 16), |(i, j)| ((i * 5 + j) % 15) as f32 - 7.0);
/// let m = IntQuantizer::params(4).check()?.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let x = Array2::from_shape_fn((2, 16), |(b, k)| (b + k) as f32 - 8.0);
/// let Some(Values::Int4(v)) = m.values() else { unreachable!() };
/// let xq = quantize_activations(x.view())?;
/// let y = gemm4_reference(v, &xq);
/// // The product of the two dequantized operands, up to f32 rounding.
/// let exact = xq.dequantize().dot(&m.to_dense().t());
/// assert!((&y - &exact).iter().all(|d| d.abs() < 1e-3));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn gemm4_reference(v: &Int4Values, xq: &QuantizedActivations) -> Array2<f32> {
    let cols = xq.cols;
    Array2::from_shape_fn((xq.rows, v.layout.rows()), |(b, n)| {
        let x = xq.row(b);
        let w = |k: usize| nibble_to_i8(v.codes.get(n * cols + k)) as i64;
        let mut acc = 0.0f32;
        for (a, e, p) in segments(v.params(), n, cols) {
            let (s, z) = v.params().get(p);
            let dot: i64 = (a..e).map(|k| w(k) * x[k] as i64).sum();
            let xs: i64 = x[a..e].iter().map(|&q| q as i64).sum();
            acc = s.mul_add((dot - z as i64 * xs) as f32, acc);
        }
        acc * xq.scales[b]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{CompressedMatrix, Values};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::quantization::{quantize_activations, IntQuantizer, Quantizer};

    fn int4(rows: usize, cols: usize, group: Option<usize>, sym: bool) -> CompressedMatrix {
        let w = ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 37 + j * 101) % 211) as f32 / 105.0 - 1.0) * (1.0 + (i % 3) as f32)
        });
        let p = IntQuantizer::params(4).symmetric(sym);
        let p = match group {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        let m = CompressedMatrix::from_dense(w.view()).unwrap();
        p.check().unwrap().quantize(&m).unwrap()
    }

    #[test]
    fn every_path_equals_the_reference_bit_for_bit() {
        let pool = ThreadPool::new(3).unwrap();
        // Shapes on and off the tile edges (16 outputs, 6 tokens, 8 columns).
        for &(rows, cols, batch, group, sym) in &[
            (33, 64, 7, Some(32), true),
            (16, 128, 13, Some(64), true),
            (40, 256, 6, Some(128), true),
            (17, 40, 1, None, true),
            (50, 100, 9, None, true),
            (21, 96, 5, Some(32), false),
            (9, 36, 4, Some(12), true),
            // At least 4 M weights: on VNNI, nibbles against signed
            // activations (`int8_panel::SIGNED_NIBBLES_MIN_WEIGHTS`).
            (2048, 2048, 7, Some(64), true),
            (2048, 2056, 2, None, true),
        ] {
            let m = int4(rows, cols, group, sym);
            let Some(Values::Int4(v)) = m.values() else {
                panic!("int4 values")
            };
            let x = ndarray::Array2::from_shape_fn((batch, cols), |(b, k)| {
                ((b * 29 + k * 13) % 31) as f32 - 15.0 + (k % 5) as f32 * 0.1
            });
            let xq = quantize_activations(x.view()).unwrap();
            let want = gemm4_reference(v, &xq);
            let prep = Prepared4::new(v);
            for isa in Isa::ALL {
                for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                    let got = matmul(v, &prep, &xq, exec, isa);
                    assert_eq!(got, want, "{rows}x{cols} b{batch} {group:?} {isa:?}");
                }
            }
            assert_eq!(portable(v, &xq, &Sequential), want);
        }
    }

    #[test]
    fn panels_apply_to_symmetric_groups_of_eight() {
        if Isa::detect() < Isa::Avx2 {
            return;
        }
        let ok = |m: &CompressedMatrix| match m.values() {
            Some(Values::Int4(v)) => Prepared4::new(v).panels.is_some(),
            _ => unreachable!(),
        };
        assert!(ok(&int4(4, 64, Some(32), true)));
        assert!(ok(&int4(4, 30, None, true)));
        assert!(!ok(&int4(4, 64, Some(12), true)));
        assert!(!ok(&int4(4, 64, Some(32), false)));
    }

    #[test]
    fn reference_is_the_product_of_the_dequantized_operands() {
        let m = int4(24, 64, Some(32), true);
        let Some(Values::Int4(v)) = m.values() else {
            panic!("int4 values")
        };
        let x = ndarray::Array2::from_shape_fn((5, 64), |(b, k)| ((b + 3 * k) % 17) as f32 - 8.0);
        let xq = quantize_activations(x.view()).unwrap();
        let y = gemm4_reference(v, &xq);
        let exact = xq.dequantize().dot(&m.to_dense().t());
        for (a, e) in y.iter().zip(&exact) {
            assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "{a} vs {e}");
        }
    }
}
