//! Decoded copies: codebook values of a cache-resident matrix multiplied
//! through an f32 copy of their decoded values, built on the first product
//! and kept with the values (in their prepacked slot, like the integer
//! slices' panels).
//!
//! Why: a centroid is an arbitrary f32, so a codebook product does all of
//! dense f32's multiply-adds *plus* a decode per weight. Where the weights
//! come from cache the decode is pure cost: 8-bit codebooks ran at
//! 0.36–0.51× dense f32 at batch 1 and 4-bit codebooks at 0.82–0.97× from
//! batch 4 (issue #20). From DRAM the codes' fewer bytes pay for the
//! decode, so matrices whose copy would not stay in cache
//! ([`MAX_COPY_BYTES`]) keep decoding on the fly, and so do the batches
//! where the 4-bit readers win (`applies`).
//!
//! The copy is exactly the decoded values in layout order, and the kernels
//! that read it — the dense kernel (`gemv`) for dense and kept-rows blocks,
//! the CSR f32 inner loops for CSR — sum in the order of the decoding
//! kernels (one 16-lane fused accumulator per output, `k` ascending, then
//! `_mm512_reduce_add_ps`; CSR: the same loops on the looked-up values), so
//! **every output has the bits it has on the decoding paths**, and a row
//! still never depends on the batch size or the executor.
//!
//! The cost is memory: 4 bytes per stored value beside the codes while the
//! matrix lives (cache-resident matrices only, at most [`MAX_COPY_BYTES`]
//! each). It takes no part in equality, the byte accounting or files.

use ndarray::{Array2, ArrayView2};

use super::Tier;
use crate::matrix::{CodebookScope, CodebookValues};
use crate::parallel::ParallelExecutor;

/// The largest decoded copy kept (8 MiB, 2 M values): a quarter of this
/// machine class's 32 MiB L3, so that a layer's copy is read from cache
/// (a 1536 × 384 layer is 2.4 MB).
pub const MAX_COPY_BYTES: usize = 8 << 20;

/// Smallest batch at which a dense block of 4-bit (or narrower) codebook
/// indices takes its copy: below it, the streamed in-register readers,
/// which read half a byte per weight, measured faster than dense f32.
const NARROW_MIN_BATCH: usize = 4;

/// The decoded values of a codebook, in layout order.
pub(crate) struct DecodedCopy(Vec<f32>);

impl DecodedCopy {
    /// The slice of decoded values.
    pub(crate) fn values(&self) -> &[f32] {
        &self.0
    }
}

/// `v`'s copy, decoded on the first call and kept with the values.
pub(crate) fn copy_of(v: &CodebookValues) -> &DecodedCopy {
    v.prepacked.get_or_init(|| {
        let layout = &v.layout;
        let mut out = vec![0.0f32; layout.total()];
        let tier = Tier::detect();
        match v.scope() {
            CodebookScope::PerTensor => {
                let n = out.len();
                super::sparse::lookup(v.indices(), 0..n, v.row_codebook(0), &mut out, tier)
            }
            CodebookScope::PerRow => {
                for i in 0..layout.rows() {
                    let r = layout.range(i);
                    let book = v.row_codebook(i);
                    super::sparse::lookup(v.indices(), r.clone(), book, &mut out[r], tier);
                }
            }
        }
        DecodedCopy(out)
    })
}

/// Whether a product of `v` (all of its stored values) at `batch` input
/// rows on `tier` runs through the decoded copy: AVX2 or AVX-512 (where the
/// copy's kernels sum in the decoding kernels' order), a copy of at most
/// [`MAX_COPY_BYTES`], and, on AVX-512 for a dense block (`dense`) of
/// indices of at most 4 bits, at least [`NARROW_MIN_BATCH`] inputs.
pub(crate) fn applies(v: &CodebookValues, dense: bool, batch: usize, tier: Tier) -> bool {
    let tier = tier.capped();
    let bytes = v.layout.total().saturating_mul(4);
    // Only AVX-512 has the streamed readers.
    let readers_win =
        tier >= Tier::Avx512 && dense && v.indices().width() <= 4 && batch < NARROW_MIN_BATCH;
    tier >= Tier::Avx2 && bytes <= MAX_COPY_BYTES && !readers_win
}

/// `y = x · Wᵀ` for a dense block of codebook values (`rows` full rows of
/// `cols`) through the decoded copy, where [`applies`]; `None` elsewhere.
pub(crate) fn matmul_block(
    v: &CodebookValues,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Option<Array2<f32>> {
    if !applies(v, true, x.nrows(), tier) {
        return None;
    }
    let w = copy_of(v).values();
    debug_assert_eq!(w.len(), rows * cols);
    Some(super::gemv::dense(w, rows, cols, x, exec, tier))
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::compression::sharing::KMeans;
    use crate::kernels::quant::{decode_rows, RowScale};
    use crate::kernels::tile::{self, NoLanes};
    use crate::matrix::{CompressedMatrix, Values};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::quantization::Quantizer;

    fn codebook(rows: usize, cols: usize, k: usize, per_row: bool) -> CodebookValues {
        let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 7919 + j * 104_729) % 1009) as f32 - 504.0) / 300.0
        });
        let m = CompressedMatrix::from_dense(w.view()).unwrap();
        let p = KMeans::params(k);
        let p = if per_row { p.per_row() } else { p };
        match p.check().unwrap().quantize(&m).unwrap().values() {
            Some(Values::Codebook(v)) => v.clone(),
            _ => unreachable!("k-means gives codebook values"),
        }
    }

    /// The copy is the decoded values, and the dense kernel on it gives the
    /// bits of the decoded-tile products (the decoding order) at every
    /// batch, on every executor.
    #[test]
    fn the_copy_gives_the_bits_of_the_decoding_kernels() {
        let tier = Tier::detect();
        let pool = ThreadPool::new(3).unwrap();
        for &(rows, cols, k, per_row) in &[
            (100, 300, 16, false),
            (37, 70, 256, false),
            (20, 33, 8, true),
            (64, 256, 200, true),
        ] {
            let v = codebook(rows, cols, k, per_row);
            let mut want = vec![0.0f32; rows * cols];
            decode_rows(&v, 0, &mut want, RowScale::Applied);
            assert_eq!(copy_of(&v).values(), &want[..], "{rows}x{cols} k={k}");
            for batch in [1, 2, 5, 16, 33] {
                let x = Array2::from_shape_fn((batch, cols), |(b, j)| {
                    ((b * 31 + j * 17) % 23) as f32 / 7.0 - 1.5
                });
                let tiles = tile::matmul(
                    rows,
                    cols,
                    |r, o| decode_rows(&v, r, o, RowScale::Applied),
                    None::<&NoLanes>,
                    x.view(),
                    &Sequential,
                    tier,
                );
                let w = copy_of(&v).values();
                for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                    let y = crate::kernels::gemv::dense(w, rows, cols, x.view(), exec, tier);
                    if tier >= Tier::Avx2 {
                        assert_eq!(y, tiles, "{rows}x{cols} k={k} batch {batch}");
                    }
                    let got = matmul_block(&v, (rows, cols), x.view(), exec, tier);
                    assert_eq!(got.is_some(), applies(&v, true, batch, tier));
                }
            }
        }
    }

    /// Copies stop at [`MAX_COPY_BYTES`]; narrow indices start at
    /// [`NARROW_MIN_BATCH`] for dense blocks on AVX-512 only; no copy
    /// without AVX2.
    #[test]
    fn applies_by_size_width_batch_and_tier() {
        let v16 = codebook(16, 64, 16, false);
        let v256 = codebook(32, 64, 256, false);
        let t = Tier::detect();
        let (avx2, avx512) = (t >= Tier::Avx2, t >= Tier::Avx512);
        assert_eq!(applies(&v16, true, 3, t), avx2 && !avx512);
        assert_eq!(applies(&v16, true, 4, t), avx2);
        assert_eq!(applies(&v16, false, 1, t), avx2);
        assert_eq!(applies(&v256, true, 1, t), avx2);
        if avx512 {
            assert!(applies(&v16, true, 1, Tier::Avx2));
        }
        assert!(!applies(&v256, true, 64, Tier::Portable));
        let mut big = v256.clone();
        big.layout = crate::matrix::RowLayout::Uniform {
            rows: MAX_COPY_BYTES / 4 / 64 + 1,
            len: 64,
        };
        assert!(!applies(&big, true, 64, Tier::detect()));
    }
}
