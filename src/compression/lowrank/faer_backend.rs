//! faer decompositions (thin SVD, thin QR) and the GEMMs of the randomized
//! SVD.
//!
//! faer's high-level solvers use a process-wide parallelism setting; the
//! low-level calls here take it explicitly, so results never depend on a
//! global pool (parallel work in squish goes through a `ParallelExecutor`).
//! The exact SVD runs faer's own parallel algorithm, at a fixed degree,
//! inside the executor's pool ([`on_executor`]); the GEMMs split their output into fixed row
//! blocks, one single-threaded faer GEMM each.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::matmul::matmul;
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::{Accum, Conj, Mat, Par};
use faer_ext::{IntoFaer, IntoNdarray};
use ndarray::{s, Array1, Array2, ArrayView2, ArrayViewMut2};

use super::{LowRankError, Svd};
use crate::error::Result;
use crate::parallel::{fill_row_blocks, map, ParallelExecutor, ThreadPool};

/// The degree of faer's parallel split (`Par::rayon(FAER_DEGREE)`), fixed
/// whatever the executor: faer's parallel SVD rounds according to the degree
/// alone (bit-identical in pools of 1, 2, 3 and 5 threads, run after run;
/// `Par::Seq` and other degrees round differently), so one degree gives the
/// same bits on every executor while a pool of several threads still runs
/// it in parallel.
pub(crate) const FAER_DEGREE: usize = 2;

/// Runs `f(Par::rayon(FAER_DEGREE))` as one task of `exec`, so that faer's
/// rayon work lands in the executor's own pool; an executor of one thread
/// gets a one-thread pool of its own (faer's joins then run in order on it,
/// never on rayon's global pool).
pub(crate) fn on_executor<T: Send>(
    exec: &dyn ParallelExecutor,
    f: impl Fn(Par) -> T + Sync,
) -> Result<T> {
    let run = |exec: &dyn ParallelExecutor| {
        map(exec, 1, |_| f(Par::rayon(FAER_DEGREE)))
            .pop()
            .expect("one task")
    };
    if exec.threads() <= 1 {
        return Ok(run(&ThreadPool::new(1)?));
    }
    Ok(run(exec))
}

/// Output rows per GEMM task (fixed: the same sums on any executor).
const GEMM_ROWS: usize = 128;

/// `lhs · rhs` (`m × n` times `n × k`) on `exec`.
pub(crate) fn mul(
    exec: &dyn ParallelExecutor,
    lhs: ArrayView2<f32>,
    rhs: ArrayView2<f32>,
) -> Array2<f32> {
    let (m, k) = (lhs.nrows(), rhs.ncols());
    fill_row_blocks(m, k, GEMM_ROWS, exec, |r0, r1, out| {
        gemm(out, lhs.slice(s![r0..r1, ..]), rhs)
    })
}

/// `lhsᵀ · rhs` (`lhs` is `m × n`, `rhs` is `m × k`; the result is `n × k`).
pub(crate) fn mul_tn(
    exec: &dyn ParallelExecutor,
    lhs: ArrayView2<f32>,
    rhs: ArrayView2<f32>,
) -> Array2<f32> {
    let (n, k) = (lhs.ncols(), rhs.ncols());
    fill_row_blocks(n, k, GEMM_ROWS, exec, |r0, r1, out| {
        gemm(out, lhs.slice(s![.., r0..r1]).reversed_axes(), rhs)
    })
}

/// `out = lhs · rhs` with faer's GEMM on one thread.
fn gemm(out: ArrayViewMut2<f32>, lhs: ArrayView2<f32>, rhs: ArrayView2<f32>) {
    matmul(
        out.into_faer(),
        Accum::Replace,
        lhs.into_faer(),
        rhs.into_faer(),
        1.0f32,
        Par::Seq,
    );
}

/// A faer matrix as a row-major ndarray.
fn to_ndarray(m: &Mat<f32>) -> Array2<f32> {
    m.as_ref().into_ndarray().as_standard_layout().into_owned()
}

/// Thin SVD of `w` (`min(m, n)` triplets) with faer's parallelism `par`.
pub(crate) fn thin_svd(w: ArrayView2<f32>, par: Par) -> Result<Svd> {
    let a = w.into_faer();
    let (m, n) = (a.nrows(), a.ncols());
    let k = m.min(n);
    let mut s = Diag::<f32>::zeros(k);
    let mut u = Mat::<f32>::zeros(m, k);
    let mut v = Mat::<f32>::zeros(n, k);
    let mut mem = MemBuffer::new(svd_scratch::<f32>(
        m,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        par,
        Default::default(),
    ));
    svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| LowRankError::Backend {
        backend: "faer",
        detail: format!("{e:?}"),
    })?;
    let sigma: Array1<f32> = s.column_vector().iter().copied().collect();
    let vt = v
        .as_ref()
        .transpose()
        .into_ndarray()
        .as_standard_layout()
        .into_owned();
    Ok(Svd::from_parts(to_ndarray(&u), sigma, vt))
}

/// An orthonormal basis of the column space of `y` (`m × k`, m ≥ k): the
/// thin Q of its Householder QR, at faer's split `par` (run it through
/// [`on_executor`] for the same bits on every executor).
pub(crate) fn thin_q(y: ArrayView2<f32>, par: Par) -> Array2<f32> {
    let (m, k) = y.dim();
    debug_assert!(m >= k);
    // Column-major copy: faer's QR works in place and prefers that layout.
    let mut qr = y.into_faer().to_owned();
    let bs = recommended_block_size::<f32>(m, k);
    let mut coeff = Mat::<f32>::zeros(bs, k);
    let mut mem = MemBuffer::new(qr_in_place_scratch::<f32>(
        m,
        k,
        bs,
        par,
        Default::default(),
    ));
    qr_in_place(
        qr.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let mut q = Mat::<f32>::identity(m, k);
    let mut mem = MemBuffer::new(
        apply_block_householder_sequence_on_the_left_in_place_scratch::<f32>(m, bs, k),
    );
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        qr.as_ref(),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut mem),
    );
    to_ndarray(&q)
}
