//! Codebook matmul without decoding W.
//!
//! Portable kernel (any k): for each output row, accumulate the inputs into
//! `k` buckets by index, then take one k-length dot with the centroids — k
//! multiplies a row instead of n. AVX-512 kernel (k ≤ 16, 4-bit indices): the
//! codebook lives in one register and `vpermps` turns 16 indices into 16
//! centroids at once, so W is read at 4 bits a weight and never written out.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use crate::error::{Result, SquishError};
use crate::matrix::{CodebookValues, CompressedMatrix, Structure, Values};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Which codebook kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodebookKernel {
    /// The kernel [`CompressedMatrix::matmul`] runs: decoded tiles, one
    /// dot-product order per output at every batch size (`kernels::tile`).
    Auto,
    /// The portable bucket kernel (every k, every CPU).
    Bucket,
    /// AVX-512 register lookup, 4-bit indices, an even number of columns.
    Lut4,
    /// AVX-512 gather from the codebook, 8-bit indices.
    Gather8,
}

/// `y = x · Wᵀ` for a dense codebook matrix with the chosen kernel.
///
/// Errors if `m` is not dense with codebook values, if `x` does not fit, or
/// if the chosen kernel cannot run here (use [`CodebookKernel::Auto`]).
pub fn codebook_matmul<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
    kernel: CodebookKernel,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    let v = match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::Codebook(v))) => v,
        (s, v) => {
            return Err(SquishError::Incompatible {
                pass: "codebook matmul".into(),
                structure: s.kind(),
                encoding: v.map_or("factored", Values::kind),
                hint: "needs a dense structure with codebook values; use CompressedMatrix::matmul",
            })
        }
    };
    m.check_input(x)?;
    match kernel {
        CodebookKernel::Auto => Ok(super::dispatch::matmul(m, x, exec)),
        CodebookKernel::Bucket => Ok(bucket(&Operands::new(m, v, x), exec)),
        CodebookKernel::Gather8 => {
            if gather8_available(v) {
                Ok(run_gather8(&Operands::new(m, v, x), exec))
            } else {
                Err(SquishError::invalid(
                    "kernel",
                    "Gather8",
                    "needs AVX-512F and 8-bit indices",
                ))
            }
        }
        CodebookKernel::Lut4 => {
            if lut4_available(m, v) {
                Ok(run_lut4(&Operands::new(m, v, x), exec))
            } else {
                Err(SquishError::invalid(
                    "kernel",
                    "Lut4",
                    "needs AVX-512F, 4-bit indices and an even number of columns",
                ))
            }
        }
    }
}

fn lut4_available(m: &CompressedMatrix, v: &CodebookValues) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        v.indices().width() == 4
            && m.cols().is_multiple_of(2)
            && super::Tier::detect() >= super::Tier::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, v);
        false
    }
}

fn gather8_available(v: &CodebookValues) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        v.indices().width() == 8 && super::Tier::detect() >= super::Tier::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = v;
        false
    }
}

// The AVX-512 kernels where they exist, the portable bucket kernel elsewhere
// (the same signature).
#[cfg(target_arch = "x86_64")]
use lut4::{gather8 as run_gather8, matmul as run_lut4};
#[cfg(not(target_arch = "x86_64"))]
use {bucket as run_gather8, bucket as run_lut4};

/// What every codebook kernel starts from: W's shape and index bytes, and
/// `x` in standard layout.
struct Operands<'a> {
    v: &'a CodebookValues,
    rows: usize,
    cols: usize,
    batch: usize,
    bytes: &'a [u8],
    x: ndarray::CowArray<'a, f32, ndarray::Ix2>,
}

impl<'a> Operands<'a> {
    fn new(m: &CompressedMatrix, v: &'a CodebookValues, x: ArrayView2<'a, f32>) -> Self {
        let (rows, cols) = m.shape();
        let batch = x.nrows();
        let bytes = v.indices().bytes();
        let x = if x.is_standard_layout() {
            x.into()
        } else {
            x.as_standard_layout().into_owned().into()
        };
        Operands {
            v,
            rows,
            cols,
            batch,
            bytes,
            x,
        }
    }

    /// `x` row-major.
    fn xs(&self) -> &[f32] {
        self.x.as_slice().expect("standard layout")
    }

    /// Runs `row(i, yt_row)` for every row of W over `exec` and returns
    /// `y = ytᵀ`.
    fn by_rows(
        &self,
        exec: &dyn ParallelExecutor,
        row: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) -> Array2<f32> {
        let (batch, per_task) = (self.batch, rows_per_task(self.cols, 1 << 16));
        row_blocks(self.rows, batch, per_task, exec, |t, out| {
            for (r, y) in out.chunks_mut(batch).enumerate() {
                row(t * per_task + r, y);
            }
        })
    }
}

/// The portable bucket kernel.
fn bucket(op: &Operands, exec: &dyn ParallelExecutor) -> Array2<f32> {
    let v = op.v;
    let (cols, batch, bytes, xs) = (op.cols, op.batch, op.bytes, op.xs());
    let k = v.k();
    let width = v.indices().width() as usize;
    // Transposed input (xt[j*batch + b]) so a column's batch is contiguous.
    let xt: Vec<f32> = (0..cols)
        .flat_map(|j| (0..batch).map(move |b| xs[b * cols + j]))
        .collect();
    op.by_rows(exec, &|i, y| {
        let mut buckets = vec![0.0f32; k * batch];
        let start = i * cols;
        let mut add = |j: usize, idx: usize| {
            let src = &xt[j * batch..(j + 1) * batch];
            for (d, s) in buckets[idx * batch..(idx + 1) * batch].iter_mut().zip(src) {
                *d += s;
            }
        };
        match width {
            8 => {
                for (j, &b) in bytes[start..start + cols].iter().enumerate() {
                    add(j, b as usize);
                }
            }
            4 => {
                for j in 0..cols {
                    let e = start + j;
                    add(j, ((bytes[e / 2] >> (4 * (e % 2))) & 0xF) as usize);
                }
            }
            16 => {
                for j in 0..cols {
                    let p = 2 * (start + j);
                    add(j, u16::from_le_bytes([bytes[p], bytes[p + 1]]) as usize);
                }
            }
            _ => {
                let idx = v.indices();
                for j in 0..cols {
                    add(j, idx.get(start + j) as usize);
                }
            }
        }
        let cb = v.row_codebook(i);
        for (b, yb) in y.iter_mut().enumerate() {
            *yb = cb
                .iter()
                .enumerate()
                .map(|(t, &c)| c * buckets[t * batch + b])
                .sum();
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod lut4 {
    use std::arch::x86_64::*;

    use ndarray::Array2;

    use super::Operands;
    use crate::parallel::ParallelExecutor;

    /// Caller checked: AVX-512F, width 4, even `cols`.
    pub(super) fn matmul(op: &Operands, exec: &dyn ParallelExecutor) -> Array2<f32> {
        let v = op.v;
        let (cols, batch, bytes, xs) = (op.cols, op.batch, op.bytes, op.xs());
        let blocks = cols / 32;
        // Each 32-column block of x split into its even then odd columns,
        // matching the low and high nibbles of 16 index bytes.
        let mut xe = vec![0.0f32; batch * blocks * 32];
        for b in 0..batch {
            for blk in 0..blocks {
                for t in 0..16 {
                    let o = (b * blocks + blk) * 32;
                    xe[o + t] = xs[b * cols + blk * 32 + 2 * t];
                    xe[o + 16 + t] = xs[b * cols + blk * 32 + 2 * t + 1];
                }
            }
        }
        op.by_rows(exec, &|i, y| {
            let mut lut = [0.0f32; 16];
            let cb = v.row_codebook(i);
            lut[..cb.len()].copy_from_slice(cb);
            let row = &bytes[i * cols / 2..(i + 1) * cols / 2];
            for (b, yb) in y.iter_mut().enumerate() {
                let xb = &xe[b * blocks * 32..(b + 1) * blocks * 32];
                // SAFETY: AVX-512F was detected by the caller; slices are in bounds.
                let mut s = unsafe { row_dot(row, &lut, xb, blocks) };
                for j in blocks * 32..cols {
                    let nib = (row[j / 2] >> (4 * (j % 2))) & 0xF;
                    s += lut[nib as usize] * xs[b * cols + j];
                }
                *yb = s;
            }
        })
    }

    /// Caller checked: AVX-512F, width 8 (one index a byte).
    pub(super) fn gather8(op: &Operands, exec: &dyn ParallelExecutor) -> Array2<f32> {
        let v = op.v;
        let (cols, xs, bytes) = (op.cols, op.xs(), op.bytes);
        op.by_rows(exec, &|i, y| {
            let mut lut = [0.0f32; 256];
            let cb = v.row_codebook(i);
            lut[..cb.len()].copy_from_slice(cb);
            let row = &bytes[i * cols..(i + 1) * cols];
            let blocks = cols / 16;
            for (b, yb) in y.iter_mut().enumerate() {
                let xb = &xs[b * cols..(b + 1) * cols];
                // SAFETY: AVX-512F was detected by the caller; indices < 256 index `lut`.
                let mut s = unsafe { row_gather(row, &lut, xb, blocks) };
                for j in blocks * 16..cols {
                    s += lut[row[j] as usize] * xb[j];
                }
                *yb = s;
            }
        })
    }

    ///
    /// # Safety
    /// AVX-512F must be available; `row` must hold `blocks·16` indices and
    /// `x` `blocks·16` inputs.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_gather(row: &[u8], lut: &[f32; 256], x: &[f32], blocks: usize) -> f32 {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            debug_assert!(row.len() >= blocks * 16 && x.len() >= blocks * 16);
            let mut acc = [_mm512_setzero_ps(); 2];
            let (rp, xp, lp) = (row.as_ptr(), x.as_ptr(), lut.as_ptr());
            for blk in 0..blocks {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(rp.add(blk * 16) as *const _));
                let w = _mm512_i32gather_ps::<4>(idx, lp);
                acc[blk % 2] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xp.add(blk * 16)), acc[blk % 2]);
            }
            _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
        }
    }

    /// Σ over `blocks` 32-column blocks of centroid[index] · x.
    ///
    /// # Safety
    /// AVX-512F must be available; `row` must hold `blocks·16` bytes and `xe`
    /// `blocks·32` inputs.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_dot(row: &[u8], lut: &[f32; 16], xe: &[f32], blocks: usize) -> f32 {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            debug_assert!(row.len() >= blocks * 16 && xe.len() >= blocks * 32);
            let lut = _mm512_loadu_ps(lut.as_ptr());
            let mask = _mm512_set1_epi32(0xF);
            let mut acc = [_mm512_setzero_ps(); 4];
            let rp = row.as_ptr();
            let xp = xe.as_ptr();
            let mut blk = 0;
            while blk + 2 <= blocks {
                for u in 0..2 {
                    let w =
                        _mm512_cvtepu8_epi32(_mm_loadu_si128(rp.add((blk + u) * 16) as *const _));
                    let lo = _mm512_permutexvar_ps(_mm512_and_si512(w, mask), lut);
                    let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(w), lut);
                    let xo = xp.add((blk + u) * 32);
                    acc[2 * u] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xo), acc[2 * u]);
                    acc[2 * u + 1] =
                        _mm512_fmadd_ps(hi, _mm512_loadu_ps(xo.add(16)), acc[2 * u + 1]);
                }
                blk += 2;
            }
            if blk < blocks {
                let w = _mm512_cvtepu8_epi32(_mm_loadu_si128(rp.add(blk * 16) as *const _));
                let lo = _mm512_permutexvar_ps(_mm512_and_si512(w, mask), lut);
                let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(w), lut);
                let xo = xp.add(blk * 32);
                acc[0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xo), acc[0]);
                acc[1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xo.add(16)), acc[1]);
            }
            let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(s)
        }
    }
}
