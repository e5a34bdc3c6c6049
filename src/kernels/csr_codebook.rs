//! `x·Wᵀ` for a CSR matrix with codebook values, straight from the
//! indices: a task's stored values are looked up in the codebook into a
//! small buffer (`sparse::lookup`: 16 packed indices at a time with
//! AVX-512, the whole block at once for one shared codebook), then
//! multiplied by the CSR f32 inner loops of [`sparse`] (`sparse::csr_rows`).
//! The matrix is never made dense.
//! (A scalar lookup made this 0.87× dense f32 at batch 2 on 384 × 384, and a
//! portable scatter 0.8× at batch 256 on the Deep Compression MLP: issue #20.)

use ndarray::{Array2, ArrayView2};

use super::sparse::{self, Input};
use super::{decoded_copy, Tier};
use crate::matrix::{CodebookScope, CodebookValues, CompressedMatrix, Csr};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Stored values per task (about).
const TASK_NNZ: usize = 1 << 14;

/// `y = x·Wᵀ` for `m` = (`csr`, `cb`). Results are identical on every executor.
///
/// Each task's stored values are looked up in the codebook into a small
/// buffer (the matrix stays compressed), then multiplied by the CSR f32
/// inner loops (`sparse::csr_rows`). The sums are those of CSR f32 on the
/// decoded values, in a fixed order per row.
pub(crate) fn matmul(
    m: &CompressedMatrix,
    csr: &Csr,
    cb: &CodebookValues,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let (rows, batch) = (m.rows(), x.nrows());
    let x = x.as_standard_layout();
    let input = Input::new(x.view());
    let row_ptr = csr.row_ptr();
    let nnz = csr.nnz().max(1);
    let avg = nnz.div_ceil(rows.max(1));
    let per_task = rows_per_task(avg.max(1), TASK_NNZ);
    let tier = Tier::detect();
    // Cache-resident matrices: the values decoded once and kept (the same
    // values, so the same sums).
    let copy = decoded_copy::applies(cb, false, batch, tier).then(|| decoded_copy::copy_of(cb));
    // yᵀ, [rows, batch]: each task owns whole rows of it.
    row_blocks(rows, batch, per_task, exec, |t, out| {
        let r = t * per_task..t * per_task + out.len() / batch;
        let a0 = row_ptr[r.start] as usize;
        if let Some(c) = copy {
            let vals = &c.values()[a0..row_ptr[r.end] as usize];
            let cols = csr.col_idx();
            sparse::csr_rows(cols, row_ptr, r, vals, &input, out, tier, m.cols());
            return;
        }
        let mut vals = vec![0.0f32; row_ptr[r.end] as usize - a0];
        if cb.scope() == CodebookScope::PerTensor {
            // One book: the block's codes in one run (16 at a time).
            let e0 = a0 + vals.len();
            sparse::lookup(cb.indices(), a0..e0, cb.row_codebook(0), &mut vals, tier);
        } else {
            for i in r.clone() {
                let (a, e) = (row_ptr[i] as usize, row_ptr[i + 1] as usize);
                let book = cb.row_codebook(i);
                sparse::lookup(cb.indices(), a..e, book, &mut vals[a - a0..e - a0], tier);
            }
        }
        sparse::csr_rows(
            csr.col_idx(),
            row_ptr,
            r,
            &vals,
            &input,
            out,
            tier,
            m.cols(),
        );
    })
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::{sparse, Tier};
    use crate::compression::sharing::KMeans;
    use crate::matrix::{CompressedMatrix, PackedBits};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::pruning::{Magnitude, Pruner};
    use crate::quantization::Quantizer;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
    }

    /// Every path of `sparse::lookup` returns `book[index]` for every width
    /// up to 8 bits (permute and gather), start offset and length, up to the
    /// last byte of the packed indices.
    #[test]
    fn lookup_matches_packed_indices_on_every_path() {
        let mut rng = StdRng::seed_from_u64(5);
        for k in [2usize, 3, 16, 17, 32, 33, 64, 200, 256, 300, 4096] {
            let width = crate::matrix::index_bits(k);
            let len = 83;
            let ix: Vec<u16> = (0..len).map(|_| rng.random_range(0..k as u16)).collect();
            let packed = PackedBits::pack(width, &ix).unwrap();
            let book: Vec<f32> = (0..k).map(|i| i as f32 * 0.5 - 3.0).collect();
            for tier in Tier::ALL.into_iter().filter(|t| t.is_available()) {
                for a in 0..20 {
                    for e in a..=len {
                        let mut out = vec![f32::NAN; e - a];
                        sparse::lookup(&packed, a..e, &book, &mut out, tier);
                        let want: Vec<f32> = ix[a..e].iter().map(|&i| book[i as usize]).collect();
                        assert_eq!(out, want, "k = {k}, {tier:?}, {a}..{e}");
                    }
                }
            }
        }
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
            (40, 90, 0.8, 256, false),
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
