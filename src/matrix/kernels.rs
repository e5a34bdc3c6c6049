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
        (Structure::LowRank(lr), _) => {
            let t = matmul(lr.b(), x, exec);
            matmul(lr.a(), t.view(), exec)
        }
        _ => super::reference::matmul(m, x, exec),
    }
}
