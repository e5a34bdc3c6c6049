//! faer decompositions (thin SVD, thin QR) and the GEMMs of the randomized
//! SVD.
//!
//! faer's high-level solvers use a process-wide parallelism setting; the
//! low-level calls here take it explicitly, so results never depend on a
//! global pool (parallel work in squish goes through a `ParallelExecutor`).
//! The exact SVD runs faer's own parallel algorithm, at a fixed degree,
//! inside the executor's pool ([`on_executor`]); the GEMMs split their output
//! into fixed row blocks, one single-threaded faer GEMM each.

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
use faer::traits::RealField;
use faer::{Accum, Conj, Mat, MatMut, MatRef, Par};
use faer_ext::{IntoFaer, IntoNdarray};
use ndarray::{s, Array1, Array2, ArrayView2};

use super::{LowRankError, Svd};
use crate::error::Result;
use crate::parallel::{fill_row_blocks, ParallelExecutor, ThreadPool};

/// The degree of faer's parallel split (`Par::rayon(FAER_DEGREE)`), fixed
/// whatever the executor: faer's parallel SVD rounds according to the degree
/// alone (bit-identical in pools of 1, 2, 3 and 5 threads, run after run;
/// `Par::Seq` and other degrees round differently), so one degree gives the
/// same bits on every executor while a pool of several threads still runs
/// it in parallel.
pub(crate) const FAER_DEGREE: usize = 2;

/// Runs `f(Par::rayon(FAER_DEGREE))` under the executor's
/// [`install`](ParallelExecutor::install), so that faer's rayon work lands in
/// the executor's own pool; an executor of one thread gets a one-thread pool
/// of its own (faer's joins then run in order on it, never on rayon's global
/// pool).
pub(crate) fn on_executor<T: Send>(
    exec: &dyn ParallelExecutor,
    f: impl Fn(Par) -> T + Sync,
) -> Result<T> {
    let run = |exec: &dyn ParallelExecutor| {
        let out = std::sync::Mutex::new(None);
        exec.install(&|| *out.lock().expect("one call") = Some(f(Par::rayon(FAER_DEGREE))));
        out.into_inner()
            .expect("one call")
            .expect("install calls f")
    };
    if exec.threads() <= 1 {
        return Ok(run(&ThreadPool::new(1)?));
    }
    Ok(run(exec))
}

/// Output rows per GEMM task (fixed: the same sums on any executor).
const GEMM_ROWS: usize = 128;

/// `a · z` (`m × n` times `n × k`, k small) on `exec`: fixed blocks of
/// output rows, one single-threaded faer GEMM each. Each block is computed in
/// the layout that lets faer read `a` in place: row-major output for a
/// row-major `a` (W·Z: faer computes it as zᵀ·aᵀ, `aᵀ` column-major),
/// column-major output, then copied, for a column-major `a` (Wᵀ·Q with
/// `a = w.t()`: about 30 % faster than row-major output there, where faer
/// reads W with a stride per element).
pub(crate) fn mul(
    exec: &dyn ParallelExecutor,
    a: ArrayView2<f32>,
    z: ArrayView2<f32>,
) -> Array2<f32> {
    let (m, k) = (a.nrows(), z.ncols());
    let col_major = a.ncols() > 1 && a.strides()[0] == 1;
    fill_row_blocks(m, k, GEMM_ROWS, exec, |r0, r1, out| {
        let a = a.slice(s![r0..r1, ..]);
        if col_major {
            let mut block = Mat::<f32>::zeros(r1 - r0, k);
            gemm(block.as_mut(), a, z);
            out.into_faer().copy_from(block.as_ref());
        } else {
            gemm(out.into_faer(), a, z);
        }
    })
}

/// `out = a · z` with faer's GEMM on one thread.
fn gemm(out: MatMut<'_, f32>, a: ArrayView2<f32>, z: ArrayView2<f32>) {
    matmul(
        out,
        Accum::Replace,
        a.into_faer(),
        z.into_faer(),
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
    let (s, u, v) = svd_parts(w.into_faer(), par)?;
    let sigma: Array1<f32> = s.column_vector().iter().copied().collect();
    let vt = v
        .as_ref()
        .transpose()
        .into_ndarray()
        .as_standard_layout()
        .into_owned();
    Ok(Svd::from_parts(to_ndarray(&u), sigma, vt))
}

/// faer's thin SVD `a = U·diag(s)·Vᵀ` (s non-increasing) at the split `par`.
pub(crate) fn svd_parts<T: RealField>(
    a: MatRef<'_, T>,
    par: Par,
) -> Result<(Diag<T>, Mat<T>, Mat<T>)> {
    let (m, n) = (a.nrows(), a.ncols());
    let k = m.min(n);
    let mut s = Diag::<T>::zeros(k);
    let mut u = Mat::<T>::zeros(m, k);
    let mut v = Mat::<T>::zeros(n, k);
    let mut mem = MemBuffer::new(svd_scratch::<T>(
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
    Ok((s, u, v))
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
