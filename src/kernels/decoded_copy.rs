//! Decoded copies: values of a cache-resident matrix multiplied through an
//! f32 copy of their decoded values, built on the first product and kept
//! with the values (in their prepacked slots, like the integer slices'
//! panels):
//!
//! * codebooks (dense, kept rows, CSR), on AVX2 and AVX-512 (`applies`);
//! * on AVX2 only, int8 / int4 / binary / ternary codes in whole rows
//!   (`applies_codes`);
//! * N:M rows spread to whole rows (`applies_spread`), on AVX2 and
//!   AVX-512: the 2:4 readers lose to dense f32 on cache-resident blocks
//!   once a weight register serves several inputs.
//!
//! Why: a centroid is an arbitrary f32, so a codebook product does all of
//! dense f32's multiply-adds *plus* a decode per weight. Where the weights
//! come from cache the decode is pure cost: 8-bit codebooks ran at
//! 0.36–0.51× dense f32 at batch 1 and 4-bit codebooks at 0.82–0.97× from
//! batch 4 (issue #20). Without AVX-512 the same holds for every code:
//! AVX2 has no integer dot product, and the in-register readers ran at
//! 0.5–0.95× dense on cache-resident layers, 2:4 rows at 0.3–0.9×. From
//! DRAM the codes' fewer bytes pay for the decode, so matrices whose copy
//! would not stay in cache ([`MAX_COPY_BYTES`]) keep decoding on the fly,
//! and so do the batches where a reader wins (`applies`,
//! `codes_min_batch`).
//!
//! The copy is exactly the decoded values in layout order (row scales that
//! the products defer left out and applied to each output once; N:M rows
//! with zeros at the pruned columns), and the kernels that read it — the
//! dense kernel (`gemv`) for dense, kept-rows and N:M blocks, the CSR f32
//! inner loops for CSR — sum in the order of the decoding kernels (on
//! AVX-512 one 16-lane fused accumulator per output, `k` ascending, then
//! `_mm512_reduce_add_ps`; on AVX2 the dense kernel's 8-lane order, which
//! the readers and the decoded tiles share; CSR: the same loops on the
//! looked-up values), so **every output has the bits it has on the
//! decoding paths**, and a row still never depends on the batch size or
//! the executor.
//!
//! The cost is memory: 4 bytes per weight beside the codes while the
//! matrix lives (cache-resident matrices only, at most [`MAX_COPY_BYTES`]
//! each, and only once a product has taken the copy). It takes no part in
//! equality, the byte accounting or files.

use ndarray::{Array2, ArrayView2};

use super::quant::RowScale;
use super::Tier;
use crate::matrix::aligned::Aligned;
use crate::matrix::{CodebookScope, CodebookValues, Granularity, Values};
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
pub(crate) struct DecodedCopy(Aligned<f32>);

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
        let mut out = crate::matrix::aligned::filled(0.0f32, layout.total());
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

/// Whether a copy of `bytes` sits in an L2 of `l2` bytes with a quarter to
/// spare for the inputs and outputs: there, dense f32's extra bytes cost
/// nothing even at batch 1. (The policies below ask of this CPU's L2,
/// [`l2_bytes`]: 384 × 384 in f32, 576 KiB, sits in a Zen 5's 1 MiB but not
/// in a Zen 3's 512 KiB, where int8's reader won at batch 1.)
///
/// [`l2_bytes`]: super::cache::l2_bytes
fn sits_in_l2(bytes: usize, l2: usize) -> bool {
    bytes <= l2 / 4 * 3
}

/// Smallest batch at which AVX2 multiplies a cache-resident block of int8 /
/// int4 / binary / ternary codes through its copy ([`matmul_codes`]):
/// int8 with one scale per row keeps its in-register reader at batch 1
/// where the copy would not sit in L2 — reading a byte per weight, it
/// measured 0.9–1.5× dense f32 there, against 0.6–1.2× for the int4 reader
/// and 0.5–1.0× for the others (sweeps in docs/results.md).
fn codes_min_batch(values: &Values) -> usize {
    let int8_rows = matches!(values, Values::Int8(v)
        if !matches!(v.params().granularity(), Granularity::PerGroup(_)));
    let bytes = values.layout().total().saturating_mul(4);
    if int8_rows && !sits_in_l2(bytes, super::cache::l2_bytes()) {
        2
    } else {
        1
    }
}

/// Whole f32 rows and the row scales the products defer
/// (`quant::RowScale`), applied to each output once.
struct ScaledRows {
    w: Aligned<f32>,
    row_scales: Option<Vec<f32>>,
}

impl ScaledRows {
    /// `rows × cols` values written by `fill` (given whether the row
    /// scales are deferred) with `values`' deferred row scales.
    fn new(values: &Values, len: usize, fill: impl FnOnce(&mut [f32], RowScale)) -> Self {
        let row_scales = super::quant::row_scales(values);
        let sc = match row_scales {
            Some(_) => RowScale::Deferred,
            None => RowScale::Applied,
        };
        let mut w = crate::matrix::aligned::filled(0.0f32, len);
        fill(&mut w, sc);
        ScaledRows { w, row_scales }
    }

    /// `y = x · Wᵀ` by the dense kernel, each output then scaled once.
    fn matmul(
        &self,
        (rows, cols): (usize, usize),
        x: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
        tier: Tier,
    ) -> Array2<f32> {
        let s = self.row_scales.as_deref();
        super::gemv::dense_scaled(&self.w, rows, cols, s, x, exec, tier)
    }
}

/// Rows of int8 / int4 / binary / ternary codes decoded to f32.
struct CodesCopy(ScaledRows);

/// N:M rows spread to whole f32 rows (zeros at the pruned columns).
struct SpreadCopy(ScaledRows);

/// Whether a dense block of `values` is multiplied at `batch` input rows
/// through its copy: int8 / int4 / binary / ternary codes (codebooks have
/// [`applies`]), on AVX2 a copy of at most [`MAX_COPY_BYTES`] from
/// `codes_min_batch`, on AVX-512 blocks of fewer than
/// [`SMALL_CODES_WEIGHTS`] at every batch size.
///
/// Why: without an integer dot product, a product of codes does all of
/// dense f32's multiply-adds plus a decode per weight, so on cache-resident
/// matrices the AVX2 readers ran at 0.5–0.95× dense from batch 2 (issue
/// #20). AVX-512 has VNNI's integer slices and its own readers, but on
/// small blocks both lost to dense f32 from batch 4 (below).
pub(crate) fn applies_codes(values: &Values, batch: usize, tier: Tier) -> bool {
    let codes = matches!(
        values,
        Values::Int8(_) | Values::Int4(_) | Values::Binary(_) | Values::Ternary(_)
    );
    let weights = values.layout().total();
    codes
        && match tier.capped() {
            Tier::Avx2 => {
                weights.saturating_mul(4) <= MAX_COPY_BYTES && batch >= codes_min_batch(values)
            }
            Tier::Avx512 | Tier::Avx512Vnni => weights < SMALL_CODES_WEIGHTS,
            Tier::Portable => false,
        }
}

/// Dense blocks of codes with fewer weights take their copy on AVX-512 at
/// every batch size (so a row's bits never depend on the batch): 100 × 300
/// (30 000 weights) ran its integer slices at 0.76–0.93× dense f32 from
/// batch 8 to 64 on a Zen 5 (1.9× at batch 1), where the slices' three
/// products per input cost more than VNNI's four products a lane save and
/// the f32 weights sit in L2; 384 × 384 (147 456) ran them at 1.1–3.6×.
pub(crate) const SMALL_CODES_WEIGHTS: usize = 1 << 16;

/// `y = x · Wᵀ` for a dense block of codes (`rows` full rows of `cols`)
/// through its copy, where [`applies_codes`]; `None` elsewhere. The copy
/// holds the row decoders' values and the dense kernel sums in the
/// readers' and the decoded tiles' AVX2 order, so on AVX2 the bits are
/// theirs at every batch size (AVX-512 takes the copy at every batch).
pub(crate) fn matmul_codes(
    values: &Values,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Option<Array2<f32>> {
    if !applies_codes(values, x.nrows(), tier) {
        return None;
    }
    let copy = values.prepacked().get_or_init(|| {
        let fill = |w: &mut [f32], sc| super::quant::decode_values_as(values, 0, w, sc);
        CodesCopy(ScaledRows::new(values, rows * cols, fill))
    });
    Some(copy.0.matmul((rows, cols), x, exec, tier))
}

/// Whether an N:M block of `rows × cols` is multiplied through its spread
/// copy (at every batch size, so a row's bits never depend on the batch):
/// whole f32 rows of at most [`MAX_COPY_BYTES`], on AVX2 and AVX-512.
///
/// Why (issue #20): on cache-resident matrices the 2:4 readers cannot
/// match dense f32's two multiply-adds per 32 columns once a weight
/// register serves several inputs. On AVX2 its permutes and the decoded
/// tiles ran at 0.3–0.9× dense. On a Zen 5 the AVX-512 kernel, one input
/// permute per 16 stored values, ran at 0.75–0.94× from batch 8 to 16
/// (384 × 384, 1536 × 384, 300 × 784; 1.1–1.7× at batch 1–2), and
/// spreading the weights in registers instead (`vexpandps`, or a
/// `vpopcntd` rank and `vpermps`) at 0.78× at four inputs: the shuffle
/// units share the multiply-adds' issue slots. The copy runs dense f32's
/// kernel at 0.99–1.02× dense; it gives up the 2:4 kernel's lead at one
/// or two inputs so that no batch size is slower than dense.
pub(crate) fn applies_spread((rows, cols): (usize, usize), tier: Tier) -> bool {
    let bytes = rows.saturating_mul(cols).saturating_mul(4);
    tier.capped() >= Tier::Avx2 && bytes <= MAX_COPY_BYTES
}

/// `y = x · Wᵀ` for N:M `values` of a `rows × cols` matrix through their
/// copy spread to whole rows by `spread` (given whether the row scales are
/// deferred: the 2:4 reader's or the row decoder's placement, the values
/// of the decoded tiles), where [`applies_spread`]; `None` elsewhere.
pub(crate) fn matmul_spread(
    values: &Values,
    (rows, cols): (usize, usize),
    spread: impl FnOnce(&mut [f32], RowScale),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Option<Array2<f32>> {
    if !applies_spread((rows, cols), tier) {
        return None;
    }
    let copy = values
        .prepacked()
        .get_or_init(|| SpreadCopy(ScaledRows::new(values, rows * cols, spread)));
    Some(copy.0.matmul((rows, cols), x, exec, tier))
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

    /// A `rows × cols` test matrix of 1009 spread values.
    fn matrix(rows: usize, cols: usize) -> CompressedMatrix {
        let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 7919 + j * 104_729) % 1009) as f32 - 504.0) / 300.0
        });
        CompressedMatrix::from_dense(w.view()).unwrap()
    }

    fn codebook(rows: usize, cols: usize, k: usize, per_row: bool) -> CodebookValues {
        let m = matrix(rows, cols);
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

    type Decode<'a> = Box<dyn Fn(usize, &mut [f32]) + Sync + 'a>;

    /// The test matrix's dense and 2:4 forms in int8 / int4 per row, int4
    /// in groups of 32, binary and ternary (and f32 for 2:4).
    fn code_forms(rows: usize, cols: usize) -> Vec<CompressedMatrix> {
        use crate::pass::Pruner;
        use crate::pruning::NMPruner;
        use crate::quantization::{Binary, IntQuantizer, Ternary};
        let dense = matrix(rows, cols);
        let nm = NMPruner::params(2, 4)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap();
        let mut out = vec![nm.clone()];
        for m in [&dense, &nm] {
            for (bits, g) in [(8, None), (4, None), (4, Some(32))] {
                let p = IntQuantizer::params(bits);
                let p = match g {
                    Some(g) => p.per_group(g),
                    None => p.per_row(),
                };
                out.push(p.check().unwrap().quantize(m).unwrap());
            }
            out.push(Binary.quantize(m).unwrap());
            out.push(Ternary.quantize(m).unwrap());
        }
        out
    }

    /// Codes and 2:4 rows through their copies give, bit for bit, the
    /// decoded tiles' products (whose bits the readers share, tested with
    /// them) at every batch, on every executor and on AVX2 and AVX-512
    /// where the CPU has them; a matrix also
    /// multiplied by another kernel that keeps a copy (the VNNI panels on
    /// such a CPU) keeps both.
    #[test]
    fn the_codes_and_spread_copies_give_the_bits_of_the_decoded_tiles() {
        use crate::kernels::quant::{decode_nm_rows, decode_values_as, row_scales};
        use crate::matrix::Structure;
        let pool = ThreadPool::new(3).unwrap();
        // AVX-512 applies deferred row scales to its register blocks' lane
        // sums, AVX2 after its dense kernel: both against the tiles.
        let tiers = [Tier::Avx2, Tier::Avx512];
        for tier in tiers.into_iter().filter(|t| t.capped() == *t) {
            for (rows, cols) in [(100, 300), (37, 64), (64, 256)] {
                for m in code_forms(rows, cols) {
                    let v = m.values().unwrap();
                    let sc = match row_scales(v) {
                        Some(_) => RowScale::Deferred,
                        None => RowScale::Applied,
                    };
                    let what = format!("{} {} {rows}x{cols}", m.structure().kind(), m.encoding());
                    for batch in [1, 2, 5, 16, 33] {
                        let x = Array2::from_shape_fn((batch, cols), |(b, j)| {
                            ((b * 31 + j * 17) % 23) as f32 / 7.0 - 1.5
                        });
                        let (decode, got): (Decode, _) = match m.structure() {
                            Structure::NM(s) => (
                                Box::new(move |r, o: &mut [f32]| decode_nm_rows(s, v, r, o, sc)),
                                [&Sequential as &dyn ParallelExecutor, &pool].map(|e| {
                                    let spread = |o: &mut [f32], sc| decode_nm_rows(s, v, 0, o, sc);
                                    matmul_spread(v, (rows, cols), spread, x.view(), e, tier)
                                }),
                            ),
                            _ => (
                                Box::new(move |r, o: &mut [f32]| decode_values_as(v, r, o, sc)),
                                [&Sequential as &dyn ParallelExecutor, &pool]
                                    .map(|e| matmul_codes(v, (rows, cols), x.view(), e, tier)),
                            ),
                        };
                        let tiles = tile::matmul(
                            rows,
                            cols,
                            decode,
                            None::<&NoLanes>,
                            x.view(),
                            &Sequential,
                            tier,
                        );
                        // The copies apply the deferred row scales.
                        let mut tiles = tiles;
                        if let Some(s) = row_scales(v) {
                            for mut out in tiles.rows_mut() {
                                out.iter_mut().zip(&s).for_each(|(v, s)| *v *= s);
                            }
                        }
                        for y in got {
                            let y = y.unwrap_or_else(|| panic!("{what}: no copy at batch {batch}"));
                            assert_eq!(y, tiles, "{what} batch {batch} {tier:?}");
                        }
                        // The whole product (scales applied) against the
                        // reference kernel, and with the CPU's own kernels.
                        let want = crate::matrix::reference::matmul(&m, x.view(), &Sequential);
                        let y = m.matmul(x.view()).unwrap();
                        for (a, b) in y.iter().zip(&want) {
                            assert!(
                                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                                "{what}: {a} vs {b}"
                            );
                        }
                    }
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
        // Codes, on AVX2 only: int8 / int4 with row scales keep their
        // readers at batch 1 past L2 (384 × 384 in f32 is 576 KiB).
        // (Which L2: `SQUISH_L2_BYTES` runs a smaller CPU's policy.)
        let forms = code_forms(384, 384);
        let (int8, int4g, binary) = (
            forms[1].values().unwrap(),
            forms[3].values().unwrap(),
            forms[4].values().unwrap(),
        );
        let small = code_forms(100, 300);
        // 576 KiB: in a 1 MiB L2, not in a 512 KiB one.
        assert!(sits_in_l2(384 * 384 * 4, 1 << 20));
        assert!(!sits_in_l2(384 * 384 * 4, 512 << 10));
        assert!(sits_in_l2(384 << 10, 512 << 10));
        if avx2 {
            let in_l2 = sits_in_l2(384 * 384 * 4, super::super::cache::l2_bytes());
            assert_eq!(applies_codes(int8, 1, Tier::Avx2), in_l2);
            assert!(applies_codes(int8, 2, Tier::Avx2));
            assert!(applies_codes(int4g, 1, Tier::Avx2));
            assert!(applies_codes(binary, 1, Tier::Avx2));
            assert!(applies_codes(small[1].values().unwrap(), 1, Tier::Avx2));
            assert!(applies_spread((384, 384), Tier::Avx2));
            assert!(!applies_spread((1024, 2049), Tier::Avx2));
        }
        if avx512 {
            // AVX-512: cache-resident blocks too (the 2:4 kernel above).
            assert!(applies_spread((100, 300), Tier::Avx512));
            assert!(applies_spread((384, 1536), Tier::Avx512Vnni));
            assert!(!applies_spread((1024, 2049), Tier::Avx512));
        }
        // (A tier is capped to the CPU: AVX-512 runs AVX2 on this one.)
        assert!(!applies_spread((100, 300), Tier::Portable));
        for tier in [Tier::Portable, Tier::Avx512, Tier::Avx512Vnni] {
            if tier.capped() == Tier::Avx2 {
                continue;
            }
            // AVX-512: small blocks only, at every batch size.
            assert!(!applies_codes(binary, 16, tier));
            let small_binary = small[4].values().unwrap();
            // (Capped: on a CPU without AVX2 every tier runs portable.)
            let fast = tier.capped() != Tier::Portable;
            assert_eq!(applies_codes(small_binary, 1, tier), fast);
            assert_eq!(applies_codes(small_binary, 64, tier), fast);
        }
        let mut big = v256.clone();
        big.layout = crate::matrix::RowLayout::Uniform {
            rows: MAX_COPY_BYTES / 4 / 64 + 1,
            len: 64,
        };
        assert!(!applies(&big, true, 64, Tier::detect()));
    }
}
