//! `x·Wᵀ` for a CSR matrix with codebook values, straight from the
//! indices: each stored row's few values are looked up in the codebook into a
//! small buffer, then multiplied by the CSR f32 inner loops of
//! [`sparse`] (AVX-512 gathered dot products for one input, a
//! transposed-input scatter over 32 batch lanes for batches). The matrix is
//! never made dense. (The portable scatter that ran here before was 0.8×
//! dense f32 at batch 256 on the Deep Compression MLP: issue #20.)

use ndarray::{Array2, ArrayView2};

use super::sparse::{self, Input};
use super::Tier;
use crate::matrix::{CodebookValues, CompressedMatrix, Csr, PackedBits};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Stored values per task (about).
const TASK_NNZ: usize = 1 << 14;

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
///
/// Each stored row's values are looked up in the codebook into a small
/// buffer (the matrix stays compressed), then multiplied by the CSR f32
/// inner loops (`sparse::csr_row`: AVX-512 gathers at batch 1, a
/// transposed-input scatter over 32 batch lanes above).
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
    // yᵀ, [rows, batch]: each task owns whole rows of it.
    row_blocks(rows, batch, per_task, exec, |t, out| {
        let mut vals = Vec::new();
        for (r, orow) in out.chunks_exact_mut(batch).enumerate() {
            let i = t * per_task + r;
            let (a, e) = (row_ptr[i] as usize, row_ptr[i + 1] as usize);
            vals.clear();
            lookup(cb.indices(), a, e, cb.row_codebook(i), &mut vals);
            sparse::csr_row(csr.col_idx(), a..e, &vals, &input, orow, tier, m.cols());
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
