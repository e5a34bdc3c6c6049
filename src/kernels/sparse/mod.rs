//! Sparse kernels for pruned matrices with f32 values: CSR, N:M and kept
//! rows, each computing `y = x · Wᵀ` without forming W.
//!
//! Work is split into blocks of W's rows whose size depends only on the
//! matrix, never on the thread count, and each output is summed by one task
//! in a fixed order: results are bit-identical for every executor. Each
//! kernel has a portable path and, on x86-64 CPUs with AVX-512F (detected at
//! run time), an AVX-512 path: indexed scalar loads for CSR rows (a 16-lane
//! gather is slower on Zen 4), a two-register permute for 2:4 rows.
//!
//! * Batch 1 (GEMV): one indexed dot product per stored row.
//! * Larger batches: the batch is transposed to `xᵀ` `[in, lanes]` (padded
//!   to 4, 8 or a multiple of 16 lanes), and each stored value adds
//!   `w_ij · xᵀ[j, ·]` to row i's lanes, one register of lanes at a time.
//!   Each output gets the multiply-adds and sums of batch 1 (eight partial
//!   sums; the portable path 4 lanes at a time), so a row's bits do not
//!   depend on the batch.
//! * Kept rows: the surviving rows are a dense block (dot products for batch
//!   1, GEMM for larger batches), then scattered into the full output.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use std::ops::Range;

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::Tier;
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::aligned::Aligned;
use crate::matrix::{
    ColIndices, CompressedMatrix, Csr, KeptRows, PackedBits, Structure, Values, NM,
};
use crate::parallel::{
    for_each_chunk_mut, rows_per_task, transpose, transposed_vec, ParallelExecutor,
};
use portable::ColIndex;

/// The inner loops the sparse kernels have (from the [`Tier`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelPath {
    /// Plain Rust, any CPU.
    Portable,
    /// The portable loops, with AVX2 lanes for CSR rows at batch ≥ 2 (x86-64
    /// only, checked at run time; the same bits).
    Avx2,
    /// AVX-512F intrinsics (x86-64 only, checked at run time).
    Avx512,
}

impl KernelPath {
    /// The path for a tier: AVX-512 from [`Tier::Avx512`] up, AVX2 at
    /// [`Tier::Avx2`].
    fn of(tier: Tier) -> Self {
        if tier >= Tier::Avx512 {
            KernelPath::Avx512
        } else if tier == Tier::Avx2 {
            KernelPath::Avx2
        } else {
            KernelPath::Portable
        }
    }
}

/// `y = x · Wᵀ` for a CSR, N:M or kept-rows matrix with f32 values, on a
/// chosen path. Errors: a bad input (see
/// [`CompressedMatrix::matmul`]), another structure or encoding
/// ([`SquishError::Incompatible`]), or a path this CPU lacks.
///
/// [`CompressedMatrix::matmul`] calls these kernels with the detected path;
/// this entry point exists to run (and test) a specific path.
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::parallel::Sequential;
/// use squish::kernels::sparse::sparse_matmul;
/// use squish::kernels::Tier;
/// let w = array![[1.0f32, 0.0, 2.0], [0.0, 0.0, 3.0]];
/// let m = CompressedMatrix::csr_from_mask(w.view(), w.mapv(|v| v != 0.0).view()).unwrap();
/// let y = sparse_matmul(&m, array![[1.0f32, 1.0, 1.0]].view(), &Sequential, Tier::Portable);
/// assert_eq!(y.unwrap(), array![[3.0f32, 3.0]]);
/// ```
pub fn sparse_matmul<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    m.check_input(x)?;
    if !tier.is_available() {
        return Err(unavailable(tier));
    }
    matmul_unchecked(m, x, exec, tier).ok_or_else(|| SquishError::Incompatible {
        pass: "sparse kernel".to_string(),
        structure: m.structure().kind(),
        encoding: m.encoding(),
        hint: "the sparse kernels take CSR, N:M or kept-rows matrices with f32 values",
    })
}

/// The kernel for `m`'s pair, or `None` when there is none (input checked).
pub(crate) fn matmul_unchecked(
    m: &CompressedMatrix,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Option<Array2<f32>> {
    let Some(Values::F32(v)) = m.values() else {
        return None;
    };
    // Gathers take signed 32-bit indices.
    let path = if m.cols() > i32::MAX as usize {
        KernelPath::Portable
    } else {
        KernelPath::of(tier)
    };
    let (rows, cols) = m.shape();
    let x = x.as_standard_layout();
    let input = Input::new(x.view());
    let op = Operands {
        vals: v.data(),
        rows,
        cols,
        x: &input,
        exec,
        path,
    };
    let yt = match m.structure() {
        Structure::Csr(c) => csr(c, &op),
        Structure::NM(s) => nm(s, &op),
        Structure::KeptRows(k) => {
            let yk = dense_rows(v.data(), k.rows().len(), cols, x.view(), exec, path);
            scatter_kept(k, rows, x.nrows(), yk)
        }
        _ => return None,
    };
    Some(transposed_vec(yt, (rows, x.nrows())))
}

/// `y = x · Wᵀ` for a dense f32 W through the same row kernels as kept rows
/// (dot products for batch 1, blocked GEMM above). A fair dense baseline for
/// the sparse kernels, and what kept rows runs on its surviving rows.
pub fn dense_rows_matmul<'a>(
    w: impl AsArray<'a, f32, Ix2>,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Result<Array2<f32>> {
    let w: ArrayView2<'a, f32> = w.into();
    let x: ArrayView2<'a, f32> = x.into();
    let (rows, cols) = w.dim();
    crate::matrix::check_matrix("weight matrix", w)?;
    if x.ncols() != cols {
        return Err(SquishError::shape(
            "matmul x·Wᵀ",
            format!("x with {cols} columns"),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    check_non_empty("matmul input", x.nrows(), x.ncols())?;
    check_finite("matmul input", x.iter())?;
    if !tier.is_available() {
        return Err(unavailable(tier));
    }
    let path = KernelPath::of(tier);
    let w = w.as_standard_layout();
    let x = x.as_standard_layout();
    let yt = dense_rows(
        w.as_slice().expect("standard layout"),
        rows,
        cols,
        x.view(),
        exec,
        path,
    );
    Ok(transposed_vec(yt, (rows, x.nrows())))
}

fn unavailable(tier: Tier) -> SquishError {
    SquishError::invalid(
        "path",
        format!("{tier:?}"),
        "this CPU cannot run it; use Tier::detect()",
    )
}

/// The batch in the form the sparse loops read.
pub(crate) enum Input<'a> {
    /// Batch 1: the input row.
    Vector(&'a [f32]),
    /// Larger batches: `xᵀ`, `[in, stride]` row-major: padded with zeros to
    /// 4 or 8 lanes (one register) up to batch 8, to an odd multiple of 16
    /// above.
    Transposed {
        /// On a cache line: the lane loops load a register per column.
        xt: Aligned<f32>,
        batch: usize,
        stride: usize,
    },
}

impl<'a> Input<'a> {
    /// `x` must be in standard layout.
    pub(crate) fn new(x: ArrayView2<'a, f32>) -> Self {
        let (batch, cols) = x.dim();
        if batch == 1 {
            return Input::Vector(x.to_slice().expect("standard layout"));
        }
        let stride = match batch {
            ..=4 => 4,
            5..=8 => 8,
            // An odd number of 64-byte lines per column: at a power-of-two
            // stride (batch 256: 1 KiB) the columns a row reads fall into a
            // few L1 sets and evict one another.
            _ => (batch.div_ceil(16) | 1) * 16,
        };
        let xs = x.to_slice().expect("standard layout");
        let mut xt = crate::matrix::aligned::filled(0.0f32, cols * stride);
        transpose(xs, (batch, cols), &mut xt, stride);
        Input::Transposed { xt, batch, stride }
    }

    fn batch(&self) -> usize {
        match self {
            Input::Vector(_) => 1,
            Input::Transposed { batch, .. } => *batch,
        }
    }

    /// The input's values and lanes per column (1 for a vector).
    fn lanes(&self) -> (&[f32], usize) {
        match self {
            Input::Vector(x) => (x, 1),
            Input::Transposed { xt, stride, .. } => (xt, *stride),
        }
    }
}

/// Outputs of one stored row: `out[b] = Σ_k vals[k] · x[b, idx[k]]`.
#[inline]
fn sparse_row<I: ColIndex>(idx: &[I], vals: &[f32], x: &Input, out: &mut [f32], path: KernelPath) {
    #[cfg(target_arch = "x86_64")]
    if path == KernelPath::Avx512 {
        let (xs, stride) = x.lanes();
        let row_ptr = [0, idx.len() as u32];
        // SAFETY: the path was checked available; CSR and N:M indices are
        // below the input's columns, which `xs` holds (`stride` lanes each).
        unsafe {
            avx512::csr_rows(
                &row_ptr,
                idx,
                vals,
                0..1,
                xs.as_ptr(),
                stride,
                x.batch(),
                out,
            )
        };
        return;
    }
    let _ = path;
    match x {
        Input::Vector(xv) => out[0] = portable::gather_dot(idx, vals, xv),
        // Lanes of 4 with batch 1's sums (strides are multiples of 4): an
        // output has the same bits at every batch size.
        Input::Transposed { xt, batch, stride } => {
            for t0 in (0..*batch).step_by(portable::LANES) {
                let tile = &mut out[t0..(t0 + portable::LANES).min(*batch)];
                portable::scatter_lanes(idx, vals, &xt[t0..], *stride, tile);
            }
        }
    }
}

/// Outputs of the stored CSR rows `rows` (offsets `row_ptr`, columns
/// `cols` over `ncols`) whose values the caller decoded to f32 (`vals`: the
/// rows' stored values exactly), `x.batch()` outputs a row: the same inner
/// loops as CSR with f32 values, on `tier`'s path (capped to the CPU;
/// portable when column indices do not fit 32 bits).
#[allow(clippy::too_many_arguments)]
pub(crate) fn csr_rows(
    cols: &ColIndices,
    row_ptr: &[u32],
    rows: Range<usize>,
    vals: &[f32],
    x: &Input,
    out: &mut [f32],
    tier: Tier,
    ncols: usize,
) {
    let path = if ncols > i32::MAX as usize {
        KernelPath::Portable
    } else {
        KernelPath::of(tier.capped())
    };
    let stored = row_ptr[rows.start] as usize..row_ptr[rows.end] as usize;
    match cols {
        ColIndices::U16(ix) => rows_typed(row_ptr, &ix[stored], vals, rows, x, out, path),
        ColIndices::U32(ix) => rows_typed(row_ptr, &ix[stored], vals, rows, x, out, path),
    }
}

/// [`csr_rows`] for one index type, on a chosen path.
fn rows_typed<I: ColIndex>(
    row_ptr: &[u32],
    idx: &[I],
    vals: &[f32],
    rows: Range<usize>,
    x: &Input,
    out: &mut [f32],
    path: KernelPath,
) {
    let batch = x.batch();
    #[cfg(target_arch = "x86_64")]
    if path == KernelPath::Avx512 {
        let (xs, stride) = x.lanes();
        // SAFETY: the path was checked available; a valid CSR's indices are
        // below the input's columns, which `xs` holds (`stride` lanes each);
        // `idx` and `vals` are the rows' stored values.
        unsafe { avx512::csr_rows(row_ptr, idx, vals, rows, xs.as_ptr(), stride, batch, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if path == KernelPath::Avx2 {
        let (xs, stride) = x.lanes();
        // SAFETY: the path was checked available; a valid CSR's indices are
        // below the input's columns, which `xs` holds (the vector, or `xᵀ`
        // with `stride ≥ batch` lanes each, a multiple of 4); `idx` and
        // `vals` are the rows' stored values.
        unsafe { avx2::csr_rows(row_ptr, idx, vals, rows, xs.as_ptr(), stride, batch, out) };
        return;
    }
    let base = row_ptr[rows.start] as usize;
    for (i, o) in rows.zip(out.chunks_mut(batch)) {
        let (a, b) = (row_ptr[i] as usize - base, row_ptr[i + 1] as usize - base);
        sparse_row(&idx[a..b], &vals[a..b], x, o, path);
    }
}

/// The codebook values of packed indices `range` (each below `book.len()`)
/// into `out` (`range.len()` values): 16 at a time with AVX-512 for indices
/// of up to 8 bits, one by one otherwise. Both paths look up the same values.
pub(crate) fn lookup(
    idx: &PackedBits,
    range: Range<usize>,
    book: &[f32],
    out: &mut [f32],
    tier: Tier,
) {
    debug_assert_eq!(range.len(), out.len());
    let (bytes, width) = (idx.bytes(), idx.width() as usize);
    #[cfg(target_arch = "x86_64")]
    if KernelPath::of(tier.capped()) == KernelPath::Avx512 && width <= 8 && !book.is_empty() {
        // SAFETY: AVX-512F was checked; 1 ≤ width ≤ 8; the book is
        // non-empty; indices are below k (checked when the values were built).
        return unsafe { avx512::lookup16(bytes, width, range.start, book, out) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = tier;
    portable::lookup(bytes, width, range.start, book, out);
}

/// Runs `f(rows, out)` over fixed blocks of rows; `out` holds `rows.len() ·
/// batch` outputs, row-major. Returns `yᵀ` `[rows, batch]`.
fn by_row_blocks(
    exec: &dyn ParallelExecutor,
    rows: usize,
    batch: usize,
    per_task: usize,
    f: &(dyn Fn(Range<usize>, &mut [f32]) + Sync),
) -> Vec<f32> {
    let mut yt = vec![0.0f32; rows * batch];
    for_each_chunk_mut(exec, &mut yt, per_task * batch, |t, out| {
        let r0 = t * per_task;
        f(r0..r0 + out.len() / batch, out)
    });
    yt
}

/// Rows per task for a row of `len` stored values: a fixed amount of work,
/// whatever the thread count.
fn block_rows(len: usize) -> usize {
    rows_per_task(len, 1 << 15)
}

/// What the CSR and N:M kernels read: W's stored values and shape, the
/// input, the executor and the path.
#[derive(Clone, Copy)]
struct Operands<'a> {
    vals: &'a [f32],
    rows: usize,
    cols: usize,
    x: &'a Input<'a>,
    exec: &'a dyn ParallelExecutor,
    path: KernelPath,
}

fn csr(c: &Csr, op: &Operands) -> Vec<f32> {
    match c.col_idx() {
        ColIndices::U16(ix) => csr_typed(c, ix, op),
        ColIndices::U32(ix) => csr_typed(c, ix, op),
    }
}

fn csr_typed<I: ColIndex>(c: &Csr, idx: &[I], op: &Operands) -> Vec<f32> {
    let (row_ptr, vals, x, batch) = (c.row_ptr(), op.vals, op.x, op.x.batch());
    let per_task = block_rows(c.nnz() / op.rows + op.cols / 64 + 1);
    by_row_blocks(op.exec, op.rows, batch, per_task, &|r, out| {
        let stored = row_ptr[r.start] as usize..row_ptr[r.end] as usize;
        rows_typed(
            row_ptr,
            &idx[stored.clone()],
            &vals[stored],
            r,
            x,
            out,
            op.path,
        )
    })
}

fn nm(s: &NM, op: &Operands) -> Vec<f32> {
    let (vals, rows, cols, x, exec, path) = (op.vals, op.rows, op.cols, op.x, op.exec, op.path);
    let batch = x.batch();
    let (n, m) = (s.n(), s.m());
    let row_len = cols / m * n;
    let bits = s.positions();
    // 2:4 rows of whole 32-column blocks start on a byte: with AVX-512 the
    // GEMV permutes x instead of gathering and the columns decode 16 at a
    // time; everything else decodes its columns and runs as CSR.
    let fast24 = path == KernelPath::Avx512 && n == 2 && m == 4 && cols.is_multiple_of(32);
    by_row_blocks(exec, rows, batch, block_rows(row_len), &|r, out| {
        let mut idx = vec![0u32; row_len];
        for (i, o) in r.zip(out.chunks_mut(batch)) {
            let v = &vals[i * row_len..(i + 1) * row_len];
            #[cfg(target_arch = "x86_64")]
            if fast24 {
                let pos = &bits.bytes()[i * cols / 8..(i + 1) * cols / 8];
                if let Input::Vector(xv) = x {
                    // SAFETY: AVX-512F was checked; `v` has cols/2 values,
                    // `pos` cols/8 bytes, `xv` cols inputs, cols % 32 == 0.
                    o[0] = unsafe { avx512::dot_2of4(v, pos, xv) };
                    continue;
                }
                // SAFETY: as above; `idx` holds cols/2 entries.
                unsafe { avx512::columns_2of4(pos, &mut idx) };
                sparse_row(&idx, v, x, o, path);
                continue;
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = fast24;
            portable::nm_columns(bits.bytes(), bits.width(), i * row_len, n, m, &mut idx);
            sparse_row(&idx, v, x, o, path);
        }
    })
}

/// `yᵀ` `[rows, batch]` from `yk`, the products of the kept rows (zeros
/// elsewhere).
fn scatter_kept(k: &KeptRows, rows: usize, batch: usize, yk: Vec<f32>) -> Vec<f32> {
    let kept = k.rows();
    if kept.len() == rows {
        return yk;
    }
    let mut yt = vec![0.0f32; rows * batch];
    for (r, y) in kept.iter().zip(yk.chunks(batch)) {
        let r = *r as usize;
        yt[r * batch..(r + 1) * batch].copy_from_slice(y);
    }
    yt
}

/// `yᵀ` `[nrows, batch]` of a dense row-major block `v` `[nrows, cols]`.
fn dense_rows(
    v: &[f32],
    nrows: usize,
    cols: usize,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    path: KernelPath,
) -> Vec<f32> {
    let batch = x.nrows();
    if batch == 1 {
        let xv = x.to_slice().expect("standard layout");
        return by_row_blocks(exec, nrows, 1, block_rows(cols), &|r, out| {
            for (i, o) in r.zip(out.iter_mut()) {
                let w = &v[i * cols..(i + 1) * cols];
                *o = match path {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512F was checked; both slices hold `cols`.
                    KernelPath::Avx512 => unsafe { avx512::dot(w, xv) },
                    _ => portable::dot(w, xv),
                };
            }
        });
    }
    // Larger batches: GEMM on blocks big enough to amortize packing `x`.
    by_row_blocks(
        exec,
        nrows,
        batch,
        rows_per_task(cols, 1 << 20),
        &|r, out| {
            let wb = ArrayView2::from_shape((r.len(), cols), &v[r.start * cols..r.end * cols])
                .expect("block shape");
            // Written straight into `out` [rows, batch]: a product's own
            // layout is ndarray's choice (column-major for one column).
            let mut yb =
                ndarray::ArrayViewMut2::from_shape((r.len(), batch), out).expect("block shape");
            ndarray::linalg::general_mat_mul(1.0, &wb, &x.t(), 0.0, &mut yb);
        },
    )
}
