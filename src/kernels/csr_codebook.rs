//! `x·Wᵀ` for a CSR matrix with codebook values, straight from the
//! indices: each stored row's few values are looked up in the codebook into a
//! small buffer, then multiplied sparsely (gather dot products for one input,
//! a transposed-input scatter for batches). The matrix is never made dense.

use ndarray::{Array2, ArrayView2};

use crate::matrix::{CodebookValues, ColIndices, CompressedMatrix, Csr, PackedBits};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Inputs per tile of the batched kernel.
const TILE: usize = 64;

/// Stored values per task (about).
const TASK_NNZ: usize = 1 << 14;

/// `Σ_k vals[k] · x[cols[k]]` with eight partial sums in a fixed order.
#[inline]
fn gather_dot(cols: &[usize], vals: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut c8 = cols.chunks_exact(8);
    let mut v8 = vals.chunks_exact(8);
    for (c, v) in (&mut c8).zip(&mut v8) {
        for l in 0..8 {
            acc[l] += v[l] * x[c[l]];
        }
    }
    for (l, (&c, &v)) in c8.remainder().iter().zip(v8.remainder()).enumerate() {
        acc[l] += v * x[c];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Appends `book[index[k]]` for `k` in `a..e`, reading the packed indices
/// (LSB-first) sequentially: one unaligned 4-byte load per index.
#[inline]
fn lookup(idx: &PackedBits, a: usize, e: usize, book: &[f32], out: &mut Vec<f32>) {
    let bytes = idx.bytes();
    let w = idx.width() as usize;
    let mask = (1u32 << w) - 1;
    let mut bit = a * w;
    for _ in a..e {
        let byte = bit / 8;
        let word = match bytes.get(byte..byte + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => bytes[byte..]
                .iter()
                .enumerate()
                .fold(0u32, |acc, (k, &b)| acc | (b as u32) << (8 * k)),
        };
        out.push(book[((word >> (bit % 8)) & mask) as usize]);
        bit += w;
    }
}

/// `y = x·Wᵀ` for `m` = (`csr`, `cb`). Results are identical on every executor.
pub(crate) fn matmul(
    m: &CompressedMatrix,
    csr: &Csr,
    cb: &CodebookValues,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let (rows, batch) = (m.rows(), x.nrows());
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let row_ptr = csr.row_ptr();
    let nnz = csr.nnz().max(1);
    let avg = nnz.div_ceil(rows.max(1));
    let per_task = rows_per_task(avg.max(1), TASK_NNZ);
    // yᵀ, [rows, batch]: each task owns whole rows of it.
    let xt: Option<Vec<f32>> = (batch > 1).then(|| {
        let mut t = vec![0.0f32; m.cols() * batch];
        for (b, r) in xs.chunks_exact(m.cols()).enumerate() {
            for (j, &v) in r.iter().enumerate() {
                t[j * batch + b] = v;
            }
        }
        t
    });
    row_blocks(rows, batch, per_task, exec, |t, out| {
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for (r, orow) in out.chunks_exact_mut(batch).enumerate() {
            let i = t * per_task + r;
            let (a, e) = (row_ptr[i] as usize, row_ptr[i + 1] as usize);
            let book = cb.row_codebook(i);
            cols.clear();
            match csr.col_idx() {
                ColIndices::U16(v) => cols.extend(v[a..e].iter().map(|&c| c as usize)),
                ColIndices::U32(v) => cols.extend(v[a..e].iter().map(|&c| c as usize)),
            }
            vals.clear();
            lookup(cb.indices(), a, e, book, &mut vals);
            match &xt {
                None => {
                    for (b, o) in orow.iter_mut().enumerate() {
                        let xr = &xs[b * m.cols()..(b + 1) * m.cols()];
                        *o = gather_dot(&cols, &vals, xr);
                    }
                }
                Some(xt) => {
                    for (tile, o) in orow.chunks_mut(TILE).enumerate() {
                        let off = tile * TILE;
                        let w = o.len();
                        for (&c, &v) in cols.iter().zip(&vals) {
                            let src = &xt[c * batch + off..c * batch + off + w];
                            for (y, &xv) in o.iter_mut().zip(src) {
                                *y += v * xv;
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::compression::sharing::KMeans;
    use crate::matrix::CompressedMatrix;
    use crate::parallel::{Sequential, ThreadPool};
    use crate::pruning::{Magnitude, Pruner};
    use crate::quantization::Quantizer;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn matches_reference_on_random_shapes() {
        let pool = ThreadPool::new(3).unwrap();
        for (seed, &(rows, cols, sparsity, k, per_row)) in [
            (37, 50, 0.9, 16, false),
            (300, 784, 0.92, 32, false),
            (10, 100, 0.74, 64, true),
            (5, 3, 0.0, 2, false),
            (64, 65, 0.99, 4, true),
        ]
        .iter()
        .enumerate()
        {
            let w = random(rows, cols, seed as u64);
            let p = Magnitude::params(sparsity).check().unwrap();
            let pruned = p
                .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
                .unwrap();
            let q = if per_row {
                KMeans::params(k).per_row().check().unwrap()
            } else {
                KMeans::params(k).check().unwrap()
            };
            let m = q.quantize(&pruned).unwrap();
            for batch in [1, 2, 7, 64, 65, 130] {
                let x = random(batch, cols, 100 + seed as u64);
                let want = m.matmul_reference(x.view()).unwrap();
                let got = m.matmul_on(x.view(), &Sequential).unwrap();
                let par = m.matmul_on(x.view(), &pool).unwrap();
                assert_eq!(got, par, "executor changed the result");
                for (a, b) in got.iter().zip(want.iter()) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }
}
