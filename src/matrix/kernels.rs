//! Kernel dispatch: the fastest kernel for each structure × encoding pair.
//!
//! Pairs without a fast kernel use the [reference kernel](super::reference).
//! Every fast kernel added here must have a test comparing it with the
//! reference on random shapes.

use ndarray::{Array2, ArrayView2};

use super::{CompressedMatrix, Structure, Values};
use crate::parallel::ParallelExecutor;

/// `y = x · Wᵀ` with the best available kernel (input already checked).
pub fn matmul(
    m: &CompressedMatrix,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(v))) => {
            // Row-split GEMM: same bits as `x.dot(&w.t())` on any executor.
            let w = ArrayView2::from_shape(m.shape(), v.data()).expect("dense layout");
            crate::parallel::dense_matmul_unchecked(w, x, exec)
        }
        (Structure::Dense, Some(Values::Codebook(v))) => {
            crate::compression::sharing::kernel::matmul_dense(m, v, x, exec)
        }
        // Quantized dense blocks (also the stored rows of kept-rows).
        (
            Structure::Dense | Structure::KeptRows(_),
            Some(v @ (Values::Int8(_) | Values::Int4(_) | Values::Binary(_) | Values::Ternary(_))),
        ) => {
            use crate::quantization::kernels as q;
            match q::matmul_block(v, x, exec, q::Isa::detect()) {
                Some(y) => q::scatter_rows(m, y),
                None => super::reference::matmul(m, x, exec),
            }
        }
        // Pruned and shared (Deep Compression stage 2).
        (Structure::Csr(c), Some(Values::Codebook(v))) => {
            crate::compression::deep::kernel::matmul(m, c, v, x, exec)
        }
        (Structure::LowRank(lr), _) if crate::compression::lowrank::kernel::supports(lr) => {
            crate::compression::lowrank::kernel::matmul(lr, x, exec)
        }
        (Structure::LowRank(lr), _) => {
            let t = matmul(lr.b(), x, exec);
            matmul(lr.a(), t.view(), exec)
        }
        // Pruned structures with f32 values: the sparse kernels of the pruning family.
        (Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_), Some(Values::F32(_))) => {
            use crate::pruning::kernels::{matmul_unchecked, KernelPath};
            matmul_unchecked(m, x, exec, KernelPath::detect())
                .unwrap_or_else(|| super::reference::matmul(m, x, exec))
        }
        _ => super::reference::matmul(m, x, exec),
    }
}
