//! Dynamic activation quantization and the int8 × int8 linear layer built on it.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::slice_ops::{self, Grid};
use super::QuantizationError;
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::kernels::quant::sign_gemm::{self, Signs};
pub use crate::kernels::quant::QuantizedActivations;
use crate::kernels::quant::{self as kernels, Isa};
use crate::matrix::{CompressedMatrix, LinOp, Structure, Values};
use crate::parallel::ParallelExecutor;

/// Quantizes each row of `x` to int8 on the fly with its own scale
/// `max|x_b| / 127` (symmetric, round half away from zero). An all-zero row
/// gets scale 0 and zero codes. Rejects empty and non-finite input.
///
/// ```
/// use ndarray::array;
/// use squish::quantization::quantize_activations;
/// let q = quantize_activations(array![[1.27f32, -0.635, 0.0], [0.0, 0.0, 0.0]].view()).unwrap();
/// assert_eq!(q.row(0), &[127, -64, 0]); // -63.5 rounds away from zero
/// assert_eq!(q.scales()[1], 0.0);
/// ```
pub fn quantize_activations<'a>(x: impl AsArray<'a, f32, Ix2>) -> Result<QuantizedActivations> {
    let x: ArrayView2<'a, f32> = x.into();
    let (rows, cols) = x.dim();
    check_non_empty("activations", rows, cols)?;
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    check_finite("activations", data)?;
    let grid = Grid::new(8, true);
    let mut codes = vec![0i8; rows * cols];
    let mut scales = Vec::with_capacity(rows);
    for (src, out) in data.chunks_exact(cols).zip(codes.chunks_exact_mut(cols)) {
        let (lo, hi) = slice_ops::min_max(src);
        let (s, _) = grid.scale_zero_point(lo, hi);
        slice_ops::quantize(src, s, 0, grid, out);
        scales.push(s);
    }
    Ok(QuantizedActivations {
        rows,
        cols,
        codes,
        scales,
    })
}

/// A linear layer with int8 weights that quantizes its input dynamically
/// (per row, int8) and multiplies with integer dot products (AVX-512 VNNI
/// when the CPU has it), accumulating in i32 and scaling to f32 once per
/// parameter set: PyTorch's dynamic int8 `Linear`.
///
/// It approximates `x · Ŵᵀ` (the activations are rounded too); the error is
/// bounded by the activation rounding, `|Δy| ≤ Σ_k |ŵ_k|·scale_x/2`.
/// Weights must be int8 or int4 (any granularity, symmetric or not) in a
/// dense or kept-rows structure. int4 weights run ggml's Q4_0 × Q8_0
/// product: codes unpacked in registers, the same integer dot products
/// ([`int4_gemm`](crate::kernels::quant::int4_gemm)).
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// use squish::quantization::DynamicInt8;
/// let w = Array2::from_shape_fn((32, 64), |(i, j)| ((i * 13 + j * 7) % 17) as f32 - 8.0);
/// let m = IntQuantizer::params(8).check()?.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let x = Array2::from_shape_fn((8, 64), |(b, k)| ((b + k) % 3) as f32 - 1.0);
/// let y = DynamicInt8::new(m.clone())?.matmul(x.view(), &Sequential)?;
/// let exact = m.matmul(x.view())?;
/// // x in {-1, 0, 1} is exact in int8, so only the weights were rounded.
/// assert!((&y - &exact).iter().all(|d| d.abs() < 1e-3));
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug)]
pub struct DynamicInt8 {
    matrix: CompressedMatrix,
    /// What the kernel needs on every call, computed once.
    prep: Prep,
}

/// The per-encoding data of [`DynamicInt8`]'s kernel.
#[derive(Clone, Debug)]
enum Prep {
    /// Per-row weight sums (and VNNI panels) of int8 weights.
    Int8(kernels::int8_gemm::Prepared),
    /// Nibble panels of int4 weights.
    Int4(kernels::int4_gemm::Prepared4),
    /// Binary or ternary weights: the sign bits are read as they are.
    Signs,
}

/// Refuses weights whose integer sums, scaled by the weight scales, could
/// exceed f32 before the activation scale applies: `127·Σ|w|` over a row
/// (activation codes within ±127) must stay finite. Weights near f32::MAX
/// gave ±Inf where the product itself is finite (issue #20).
fn check_reach(m: &CompressedMatrix) -> Result<()> {
    let (rows, cols) = m.shape();
    const BLOCK: usize = 64;
    let mut buf = Vec::new();
    for r0 in (0..rows).step_by(BLOCK) {
        buf.resize(BLOCK.min(rows - r0) * cols, 0.0);
        crate::kernels::dispatch::decode_rows(m, r0, &mut buf);
        for (i, row) in buf.chunks(cols.max(1)).enumerate() {
            let abs_sum: f64 = row.iter().map(|&v| f64::from(v.abs())).sum();
            if 127.0 * abs_sum > f64::from(f32::MAX) {
                return Err(QuantizationError::ProductOverflow {
                    row: r0 + i,
                    abs_sum,
                }
                .into());
            }
        }
    }
    Ok(())
}

impl DynamicInt8 {
    /// Wraps an int8, int4, binary or ternary matrix with a dense or
    /// kept-rows structure, and prepares what the integer kernel needs on
    /// every call once (per-row sums of the codes, repacked panels; binary
    /// and ternary sign bits are read as they are).
    pub fn new(matrix: CompressedMatrix) -> Result<Self> {
        let ok_structure = matches!(
            matrix.structure(),
            Structure::Dense | Structure::KeptRows(_)
        );
        let prep = match matrix.values() {
            Some(Values::Int8(v)) if ok_structure => Prep::Int8(kernels::int8_gemm::Prepared::new(v)),
            Some(Values::Int4(v))
                if ok_structure && v.layout.total() == v.layout.rows() * v.layout.max_row_len() =>
            {
                Prep::Int4(kernels::int4_gemm::Prepared4::new(v))
            }
            Some(Values::Binary(v)) if ok_structure && Signs::Binary(v).uniform() => Prep::Signs,
            Some(Values::Ternary(v)) if ok_structure && Signs::Ternary(v).uniform() => Prep::Signs,
            _ => {
                return Err(SquishError::Incompatible {
                    pass: "dynamic int8 matmul".into(),
                    structure: matrix.structure().kind(),
                    encoding: matrix.encoding(),
                    hint: "quantize a dense or kept-rows matrix with IntQuantizer::params(8) or params(4), Binary or Ternary first",
                })
            }
        };
        check_reach(&matrix)?;
        Ok(DynamicInt8 { matrix, prep })
    }

    /// The wrapped matrix.
    pub fn matrix(&self) -> &CompressedMatrix {
        &self.matrix
    }

    /// `y ≈ x · Wᵀ` with dynamically quantized `x`; the result does not
    /// depend on the executor (integer sums are exact).
    pub fn matmul<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        self.matmul_isa(x, exec, Isa::detect())
    }

    /// [`matmul`](Self::matmul) on a chosen instruction set (capped at what
    /// the CPU has); [`Isa::Portable`] forces the plain-Rust path.
    pub fn matmul_isa<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
        isa: Isa,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        if x.ncols() != self.matrix.cols() {
            return Err(SquishError::shape(
                "matmul x·Wᵀ",
                format!("x with {} columns", self.matrix.cols()),
                format!("x of shape {}x{}", x.nrows(), x.ncols()),
            ));
        }
        let xq = quantize_activations(x)?;
        let y = match (self.matrix.values(), &self.prep) {
            (Some(Values::Int8(v)), Prep::Int8(p)) => {
                kernels::int8_gemm::matmul(v, p, &xq, exec, isa)
            }
            (Some(Values::Int4(v)), Prep::Int4(p)) => {
                kernels::int4_gemm::matmul(v, p, &xq, exec, isa)
            }
            (Some(Values::Binary(v)), Prep::Signs) => {
                sign_gemm::matmul(Signs::Binary(v), &xq, exec, isa)
            }
            (Some(Values::Ternary(v)), Prep::Signs) => {
                sign_gemm::matmul(Signs::Ternary(v), &xq, exec, isa)
            }
            _ => unreachable!("checked in new"),
        };
        Ok(kernels::scatter_rows(&self.matrix, y))
    }
}

impl DynamicInt8 {
    /// `(x ⊙ m)·Wᵀ + b` with quantization, product and bias fused into one
    /// kernel call (`m` empty: no scaling), equal bit for bit to
    /// [`matmul`](Self::matmul) on `x ⊙ m` plus `b`; `None` where the fused
    /// kernel does not apply (no AVX2 or AVX-512 VNNI, weights other than
    /// symmetric dense int8, a non-finite value), for the caller
    /// to take the unfused path.
    pub(crate) fn linear_fused(
        &self,
        x: ArrayView2<f32>,
        m: &[f32],
        bias: Option<&[f32]>,
        exec: &dyn ParallelExecutor,
    ) -> Option<Array2<f32>> {
        if !matches!(self.matrix.structure(), Structure::Dense) || x.ncols() != self.matrix.cols() {
            return None;
        }
        match &self.prep {
            Prep::Int8(p) => kernels::int8_gemm::linear(p, x.as_slice()?, m, bias, exec),
            Prep::Int4(_) | Prep::Signs => None,
        }
    }
}

impl LinOp for DynamicInt8 {
    fn shape(&self) -> (usize, usize) {
        self.matrix.shape()
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.matmul(x, exec)
    }
}
