//! Dense f32 `y = x·Wᵀ + b` at GEMM shapes: the `gemm` crate's packed,
//! runtime-dispatched (AVX-512 / AVX2 / portable) kernels, on a task grid
//! fixed by the shapes alone.
//!
//! Each task multiplies one block of rows of `x` by one block of rows of `W`
//! with a single-threaded GEMM; blocks never share an output element, so the
//! result is bit-identical on every executor.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::matrix::{CompressedMatrix, Structure};
use crate::parallel::ParallelExecutor;

/// Rows of `x` (tokens) per task.
const ROW_BLOCK: usize = 256;
/// Rows of `W` (outputs) per task.
const COL_BLOCK: usize = 192;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint blocks of the output through this pointer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Taking `self` makes closures capture the whole (Sync) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y = x·Wᵀ (+ bias)` for `x: [m, k]`, `W: [n, k]` (PyTorch's layout),
/// `bias: [n]`. The caller checks that the shapes agree (panics otherwise).
///
/// ```
/// use ndarray::array;
/// use squish::nn::gemm::linear_f32;
/// use squish::parallel::Sequential;
/// let w = array![[1.0f32, 2.0], [0.0, -1.0], [3.0, 0.5]];
/// let x = array![[1.0f32, 1.0], [2.0, 0.0]];
/// let y = linear_f32(x.view(), w.view(), Some(&[0.5, 0.0, -1.0]), &Sequential);
/// assert_eq!(y, array![[3.5f32, -1.0, 2.5], [2.5, 0.0, 5.0]]);
/// ```
pub fn linear_f32<'a>(
    x: impl AsArray<'a, f32, Ix2>,
    w: impl AsArray<'a, f32, Ix2>,
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let x: ArrayView2<'a, f32> = x.into();
    let w: ArrayView2<'a, f32> = w.into();
    let (n, kw) = w.dim();
    let w = w.as_standard_layout();
    let wp = w.as_ptr() as usize;
    gemm_blocks(x, (n, kw), bias, exec, &|c0, _cols| {
        (wp as *const f32).wrapping_add(c0 * kw)
    })
}

/// Batches with at least this many rows may multiply by the packed GEMM
/// (dense weights directly, compressed weights one decoded block of `W`
/// rows at a time: [`packed_gemm_wins`]); smaller batches use the
/// streaming kernels (dense f32, or the matrix's own).
pub const TILE_MIN_ROWS: usize = 128;

/// Whether `m` rows times a weight of rows of `k` run faster on the packed GEMM than
/// on the streaming kernels, which read W in row blocks without packing.
/// Measured (one thread on MiniLM's shapes, two at 4096²): with `k = 384`
/// the packed GEMM was 1.0–2.4× slower at 8–64 rows and 0.64–0.93× the
/// time from 128 rows; with `k = 1536` (the FFN down-projection) it was
/// 1.3–13× slower at every row count, and at 4096² 1.3–7.7× slower at
/// batch 8–256.
///
/// ```
/// use squish::nn::gemm::packed_gemm_wins;
/// assert!(!packed_gemm_wins(8, 384));
/// assert!(packed_gemm_wins(128, 384));
/// assert!(!packed_gemm_wins(256, 1536));
/// assert!(!packed_gemm_wins(256, 4096));
/// ```
pub fn packed_gemm_wins(m: usize, k: usize) -> bool {
    m >= TILE_MIN_ROWS && k <= PACKED_MAX_K
}

/// The longest rows (`k`) measured faster on the packed GEMM (384 was;
/// 1536 and 4096 were not).
const PACKED_MAX_K: usize = 512;

/// Whether `w`'s own kernel multiplies `m` rows faster than
/// [`linear_tiled`]'s decoded tiles, which a [`Linear`](super::Linear)
/// layer otherwise takes where [`packed_gemm_wins`]: the integer slices,
/// the sign lookups and the CSR kernels (f32 or through a codebook's
/// copy). Measured against the tiles on two threads at 128 and 512 rows
/// (a Zen 5): int8 / int4 / ternary slices 1.03–1.45× faster at 384 × 384
/// and 1536 × 384 (int4 group-32 at 384 × 384 from 256 rows 0.97–0.99×,
/// a tie), binary lookups 1.3–2.3×, CSR at 10 % 1.3–2.4×, CSR codebooks
/// 1.4–2.7×; dense codebooks' copies lost (0.74–0.88×) and keep the tiles.
///
/// ```
/// use ndarray::Array2;
/// use squish::nn::gemm::own_kernel_wins;
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 64), |(i, j)| ((i * 7 + j) % 5) as f32 - 2.0);
/// let csr = Magnitude::params(0.9).check()?.prune(&CompressedMatrix::from_dense(w.view())?)?;
/// assert!(own_kernel_wins(&csr, 256));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn own_kernel_wins(w: &CompressedMatrix, m: usize) -> bool {
    use crate::kernels::dispatch::{kernel_for, Kernel};
    match kernel_for(w, m) {
        Kernel::IntegerSlices | Kernel::SignLookup | Kernel::Sparse | Kernel::CsrCodebook => true,
        Kernel::DecodedCopy => matches!(w.structure(), Structure::Csr(_)),
        _ => false,
    }
}

/// `y = x·Wᵀ (+ bias)` for a compressed `W` at GEMM shapes: each task decodes
/// one block of `COL_BLOCK` rows of `W` into a scratch buffer (the matrix
/// itself stays compressed) and multiplies it with the same packed GEMM as
/// the dense path, so the result equals [`linear_f32`] on the decoded
/// weights bit for bit. Low rank runs as two such products
/// (`(x·Bᵀ)·Aᵀ`), never forming `A·B`.
pub fn linear_tiled<'a>(
    x: impl AsArray<'a, f32, Ix2>,
    w: &CompressedMatrix,
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let x: ArrayView2<'a, f32> = x.into();
    if let Structure::LowRank(lr) = w.structure() {
        let t = linear_tiled(x, lr.b(), None, exec);
        return linear_tiled(t.view(), lr.a(), bias, exec);
    }
    let (n, k) = w.shape();
    // The kernels' row decoders (decoding code by code through
    // `decode_row` cost more than the GEMM at ~30 token rows: issue #20).
    let decode = |c0: usize, cols: usize, buf: &mut Vec<f32>| {
        buf.resize(cols * k, 0.0);
        crate::kernels::dispatch::decode_rows(w, c0, buf);
    };
    gemm_decoded(x, (n, k), bias, exec, &decode)
}

type Decode<'a> = dyn Fn(usize, usize, &mut Vec<f32>) + Sync + 'a;

/// One task per block of `W` rows: decode it, then multiply every row block
/// of `x` by it.
fn gemm_decoded(
    x: ArrayView2<f32>,
    (n, kw): (usize, usize),
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
    decode: &Decode,
) -> Array2<f32> {
    let tasks = |_m: usize| n.div_ceil(COL_BLOCK);
    gemm_tasks(x, (n, kw), bias, exec, &tasks, &|cb, g| {
        let c0 = cb * COL_BLOCK;
        let cols = COL_BLOCK.min(n - c0);
        let mut buf = Vec::new();
        decode(c0, cols, &mut buf);
        for r0 in (0..g.m).step_by(ROW_BLOCK) {
            let rows = ROW_BLOCK.min(g.m - r0);
            // SAFETY: `buf` holds `cols` rows of W of length k; block
            // (r0, c0) lies in y and only this task writes column block c0.
            unsafe { g.block((r0, rows), (c0, cols), buf.as_ptr()) };
        }
    })
}

/// One product `y = x·Wᵀ (+ b)` under way: `x` (`[m, k]`) and `y`
/// (`[m, n]`) in standard layout, shared by its tasks.
struct Gemm {
    m: usize,
    n: usize,
    k: usize,
    /// Address of `x` (an integer, so the tasks may share it).
    xp: usize,
    yp: SendPtr,
    /// Accumulate onto `y` (it holds the bias) rather than overwrite it.
    read_dst: bool,
}

impl Gemm {
    /// `y[r0.., c0..] (+)= x[r0.., ..] · rhsᵀ` for a `rows × cols` block.
    ///
    /// # Safety
    /// `r0 + rows ≤ m`, `c0 + cols ≤ n`; `rhs` points at `cols` rows of
    /// length `k`, row-major; no other task touches this block of `y`
    /// meanwhile.
    unsafe fn block(
        &self,
        (r0, rows): (usize, usize),
        (c0, cols): (usize, usize),
        rhs: *const f32,
    ) {
        // SAFETY: the block lies inside x and y (the caller's contract) and
        // is written by this task only.
        unsafe {
            block(
                (rows, cols, self.k),
                self.yp.get().add(r0 * self.n + c0),
                self.n,
                self.read_dst,
                (self.xp as *const f32).add(r0 * self.k),
                rhs,
            );
        }
    }
}

/// The scaffold of both products: the output holding the bias (shapes
/// checked), `x` in standard layout, then `tasks(m)` tasks on `exec`, task
/// `t` running `body(t, gemm)`.
fn gemm_tasks(
    x: ArrayView2<f32>,
    (n, kw): (usize, usize),
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
    tasks: &dyn Fn(usize) -> usize,
    body: &(dyn Fn(usize, &Gemm) + Sync),
) -> Array2<f32> {
    let (m, k) = x.dim();
    let mut y = biased_output((m, k), (n, kw), bias);
    let x = x.as_standard_layout();
    if m == 0 || n == 0 {
        return y;
    }
    let g = Gemm {
        m,
        n,
        k,
        xp: x.as_ptr() as usize,
        yp: SendPtr(y.as_mut_ptr()),
        read_dst: bias.is_some(),
    };
    exec.run(tasks(m), &|t| body(t, &g));
    y
}

/// The `[m, n]` output of `x·Wᵀ (+ b)`, holding the bias rows (or zeros),
/// after checking the shapes.
fn biased_output(
    (m, k): (usize, usize),
    (n, kw): (usize, usize),
    bias: Option<&[f32]>,
) -> Array2<f32> {
    assert_eq!(k, kw, "x·Wᵀ: x has {k} columns, W has {kw}");
    match bias {
        Some(b) => {
            assert_eq!(b.len(), n, "bias length");
            Array2::from_shape_fn((m, n), |(_, j)| b[j])
        }
        None => Array2::zeros((m, n)),
    }
}

/// `dst[rows, cols] (+)= lhs[rows, k] · rhs[cols, k]ᵀ`, single-threaded.
///
/// # Safety
/// `dst` has row stride `dst_rs` and room for the block; `lhs` and `rhs`
/// are row-major with row length `k`.
unsafe fn block(
    (rows, cols, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    read_dst: bool,
    lhs: *const f32,
    rhs: *const f32,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract, which
    // is `gemm::gemm`'s: valid strides and room for the block.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            k,
            dst,
            1,
            dst_rs as isize,
            read_dst,
            lhs,
            1,
            k as isize,
            rhs,
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Dense `W` given by a pointer to the start of each block of its rows.
fn gemm_blocks(
    x: ArrayView2<f32>,
    (n, kw): (usize, usize),
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
    rows_of: &(dyn Fn(usize, usize) -> *const f32 + Sync),
) -> Array2<f32> {
    let col_blocks = n.div_ceil(COL_BLOCK);
    let tasks = |m: usize| m.div_ceil(ROW_BLOCK) * col_blocks;
    gemm_tasks(x, (n, kw), bias, exec, &tasks, &|t, g| {
        let (rb, cb) = (t / col_blocks, t % col_blocks);
        let r0 = rb * ROW_BLOCK;
        let c0 = cb * COL_BLOCK;
        let rows = ROW_BLOCK.min(g.m - r0);
        let cols = COL_BLOCK.min(n - c0);
        // SAFETY: `rows_of` points at `cols` rows of W of length k; block
        // (r0, c0) lies in y and is this task's alone.
        unsafe { g.block((r0, rows), (c0, cols), rows_of(c0, cols)) };
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    fn naive(x: &Array2<f32>, w: &Array2<f32>, b: &[f32]) -> Array2<f64> {
        Array2::from_shape_fn((x.nrows(), w.nrows()), |(i, j)| {
            b[j] as f64
                + (0..x.ncols())
                    .map(|t| x[[i, t]] as f64 * w[[j, t]] as f64)
                    .sum::<f64>()
        })
    }

    #[test]
    fn matches_f64_and_is_deterministic() {
        for &(m, n, k) in &[(1, 5, 3), (7, 384, 384), (300, 200, 65), (513, 1536, 40)] {
            let x = Array2::from_shape_fn((m, k), |(i, j)| {
                ((i * 31 + j * 17) % 23) as f32 / 11.0 - 1.0
            });
            let w =
                Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 13) % 19) as f32 / 9.0 - 1.0);
            let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
            let y = linear_f32(x.view(), w.view(), Some(&b), &Sequential);
            let r = naive(&x, &w, &b);
            for (a, e) in y.iter().zip(r.iter()) {
                assert!(
                    (*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{m}x{n}x{k}: {a} vs {e}"
                );
            }
            let y2 = linear_f32(x.view(), w.view(), Some(&b), &ThreadPool::new(3).unwrap());
            assert_eq!(y, y2);
            let t = w.t().to_owned();
            let y3 = linear_f32(x.view(), t.t(), Some(&b), &Sequential);
            assert_eq!(y, y3, "strided W gives the same bits");
        }
    }

    #[test]
    fn tiled_compressed_equals_dense_gemm_on_decoded_weights() {
        use crate::matrix::CompressedMatrix;
        use crate::quantization::{IntQuantizer, Quantizer};
        let (m, n, k) = (300, 400, 96);
        let x = Array2::from_shape_fn((m, k), |(i, j)| {
            ((i * 31 + j * 17) % 23) as f32 / 11.0 - 1.0
        });
        let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 13) % 19) as f32 / 9.0 - 1.0);
        let q = IntQuantizer::params(4)
            .check()
            .unwrap()
            .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
        let pool = ThreadPool::new(2).unwrap();
        let y = linear_tiled(x.view(), &q, Some(&b), &pool);
        assert_eq!(
            y,
            linear_f32(x.view(), q.to_dense().view(), Some(&b), &Sequential)
        );
        let r = q.matmul_reference(x.view()).unwrap();
        for (a, (e, c)) in y.iter().zip(r.iter().zip(b.iter().cycle())) {
            assert!((a - (e + c)).abs() < 1e-4);
        }
    }

    /// At GEMM shapes a `Linear` layer takes the decoded tiles, except
    /// where `own_kernel_wins`: then it gives the bits of the matrix's own
    /// product (plus the bias), on every executor.
    #[test]
    fn linear_layers_keep_the_kernels_that_beat_the_tiles() {
        use crate::compression::sharing::KMeans;
        use crate::matrix::CompressedMatrix;
        use crate::nn::Linear;
        use crate::pruning::{Magnitude, Pruner};
        use crate::quantization::{Binary, IntQuantizer, Quantizer};
        let (m, n, k) = (160, 300, 256);
        let x = Array2::from_shape_fn((m, k), |(i, j)| {
            ((i * 31 + j * 17) % 23) as f32 / 11.0 - 1.0
        });
        let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 13) % 19) as f32 / 9.0 - 1.0);
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let b = ndarray::Array1::from_shape_fn(n, |j| j as f32 * 0.01);
        let int8 = IntQuantizer::params(8).per_row().check().unwrap();
        let csr = Magnitude::params(0.9)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap();
        let pool = ThreadPool::new(3).unwrap();
        for q in [
            int8.quantize(&dense).unwrap(),
            Binary.quantize(&dense).unwrap(),
            KMeans::params(16)
                .check()
                .unwrap()
                .quantize(&dense)
                .unwrap(),
            csr.clone(),
        ] {
            assert!(packed_gemm_wins(m, k));
            let lin = Linear::compressed(q.clone(), Some(b.clone())).unwrap();
            let want = if own_kernel_wins(&q, m) {
                q.matmul_on(x.view(), &Sequential).unwrap() + &b
            } else {
                linear_tiled(x.view(), &q, b.as_slice(), &Sequential)
            };
            for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                assert_eq!(lin.forward(x.view(), exec).unwrap(), want);
            }
        }
        assert!(own_kernel_wins(&csr, m));
        if crate::kernels::Tier::detect() == crate::kernels::Tier::Avx512Vnni {
            assert!(own_kernel_wins(&int8.quantize(&dense).unwrap(), m));
            assert!(own_kernel_wins(&Binary.quantize(&dense).unwrap(), m));
        }
    }
}
