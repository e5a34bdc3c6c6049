//! Kernel dispatch: the fastest kernel for each structure × encoding pair,
//! in one exhaustive match, and the user-facing
//! [`CompressedMatrix::matmul`] built on it.
//!
//! Pairs without a fast kernel use the [reference kernel](crate::matrix::reference).
//! Every fast kernel added here must have a test comparing it with the
//! reference on random shapes.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::Tier;
use crate::error::Result;
use crate::matrix::{reference, CompressedMatrix, LinOp, Structure, Values};
use crate::parallel::{ParallelExecutor, Sequential};

impl CompressedMatrix {
    /// `y = x · Wᵀ` (PyTorch's `Linear`: `x` is `[batch, in]`, `y` is
    /// `[batch, out]`; **not** ndarray's `W.dot(x)`) on one thread; picks the
    /// fastest kernel for this pair of structure and encoding (the reference
    /// kernel when none is faster). `x` is anything ndarray can view
    /// (`&Array2`, `ArrayView2`, ...).
    pub fn matmul<'a>(&self, x: impl AsArray<'a, f32, Ix2>) -> Result<Array2<f32>> {
        self.matmul_on(x, &Sequential)
    }

    /// `y = x · Wᵀ` on `exec`. The result does not depend on the executor.
    pub fn matmul_on<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x = x.into();
        self.check_input(x)?;
        Ok(matmul(self, x, exec))
    }

    /// Old name of [`matmul_on`](Self::matmul_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed to matmul_on (`_on` = on an executor)"
    )]
    pub fn matmul_with(
        &self,
        x: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.matmul_on(x, exec)
    }
}

impl LinOp for CompressedMatrix {
    fn shape(&self) -> (usize, usize) {
        CompressedMatrix::shape(self)
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.matmul_on(x, exec)
    }
}

/// `y = x · Wᵀ` with the best available kernel (input already checked).
///
/// Every (structure, encoding) pair is named: adding a structure or an
/// encoding fails to compile until it is given a kernel here.
pub fn matmul(
    m: &CompressedMatrix,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(v))) => {
            // Row-split GEMM: same bits as `x.dot(&w.t())` on any executor.
            let w = ArrayView2::from_shape(m.shape(), v.data()).expect("dense layout");
            super::dense::dense_matmul_unchecked(w, x, exec)
        }
        // Quantized and shared dense blocks (also the stored rows of kept
        // rows): one summation order per output at every batch size.
        (
            Structure::Dense | Structure::KeptRows(_),
            Some(
                v @ (Values::Int8(_)
                | Values::Int4(_)
                | Values::Binary(_)
                | Values::Ternary(_)
                | Values::Codebook(_)),
            ),
        ) => {
            use super::quant as q;
            match q::matmul_block(v, x, exec, Tier::detect()) {
                Some(y) => q::scatter_rows(m, y),
                None => reference::matmul(m, x, exec),
            }
        }
        // Pruned and shared (Deep Compression stage 2).
        (Structure::Csr(c), Some(Values::Codebook(v))) => {
            super::csr_codebook::matmul(m, c, v, x, exec)
        }
        (Structure::LowRank(lr), _) if super::lowrank::supports(lr) => {
            super::lowrank::matmul(lr, x, exec)
        }
        (Structure::LowRank(lr), _) => {
            let t = matmul(lr.b(), x, exec);
            matmul(lr.a(), t.view(), exec)
        }
        // Pruned structures with f32 values: the sparse kernels.
        (Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_), Some(Values::F32(_))) => {
            super::sparse::matmul_unchecked(m, x, exec, Tier::detect())
                .unwrap_or_else(|| reference::matmul(m, x, exec))
        }
        // N:M and CSR with quantized or shared values: whole rows decoded
        // into tiles (amortised over the batch), the same products.
        (
            Structure::NM(s),
            Some(
                v @ (Values::Int8(_)
                | Values::Int4(_)
                | Values::Binary(_)
                | Values::Ternary(_)
                | Values::Codebook(_)),
            ),
        ) if v.layout().total() == v.layout().rows() * v.layout().max_row_len() => {
            let (rows, cols) = m.shape();
            let decode = |r0: usize, out: &mut [f32]| super::quant::decode_nm_rows(s, v, r0, out);
            super::tile::matmul(rows, cols, decode, x, exec, Tier::detect())
        }
        (
            Structure::Csr(_) | Structure::NM(_),
            Some(Values::Int8(_) | Values::Int4(_) | Values::Binary(_) | Values::Ternary(_)),
        )
        | (Structure::NM(_), Some(Values::Codebook(_))) => {
            let (rows, cols) = m.shape();
            let decode = |r0: usize, out: &mut [f32]| {
                for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                    m.decode_row(r0 + r, o);
                }
            };
            super::tile::matmul(rows, cols, decode, x, exec, Tier::detect())
        }
        (
            Structure::Dense | Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_),
            None,
        ) => reference::matmul(m, x, exec),
    }
}
