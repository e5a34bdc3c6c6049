//! Kernel dispatch: the fastest kernel for each structure × encoding pair,
//! in one exhaustive match, and the user-facing
//! [`CompressedMatrix::matmul`] built on it.
//!
//! Pairs without a fast kernel use the [reference kernel](crate::matrix::reference).
//! Every fast kernel added here must have a test comparing it with the
//! reference on random shapes.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::tile::NoLanes;
use super::Tier;
use crate::error::Result;
use crate::matrix::{reference, CompressedMatrix, LinOp, Structure, Values};
use crate::parallel::{ParallelExecutor, Sequential};

impl CompressedMatrix {
    /// `y = x · Wᵀ` (PyTorch's `Linear`: `x` is `[batch, in]`, `y` is
    /// `[batch, out]`; **not** ndarray's `W.dot(x)`) on one thread; picks the
    /// fastest kernel for this pair of structure and encoding (the reference
    /// kernel when none is faster). `x` is anything ndarray can view
    /// (`&Array2`, `ArrayView2`, ...).
    pub fn matmul<'a>(&self, x: impl AsArray<'a, f32, Ix2>) -> Result<Array2<f32>> {
        self.matmul_on(x, &Sequential)
    }

    /// `y = x · Wᵀ` on `exec`. The result does not depend on the executor.
    pub fn matmul_on<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x = x.into();
        self.check_input(x)?;
        Ok(matmul(self, x, exec))
    }

    /// Old name of [`matmul_on`](Self::matmul_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed to matmul_on (`_on` = on an executor)"
    )]
    pub fn matmul_with(
        &self,
        x: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.matmul_on(x, exec)
    }
}

impl LinOp for CompressedMatrix {
    fn shape(&self) -> (usize, usize) {
        CompressedMatrix::shape(self)
    }

    fn apply(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        self.matmul_on(x, exec)
    }
}

/// Whole rows `row0..row0 + out.len() / cols` of `m` decoded to f32 into
/// `out`, bit for bit the values of [`CompressedMatrix::decode_row`], with
/// the kernels' row decoders (in-register readers, byte-wise, VBMI lookups,
/// 2:4 placement) where the pair has one. For callers that feed decoded blocks to a GEMM (the
/// transformer runtime's tiled linear layers): a decode per weight must stay
/// far cheaper than the multiply-adds it feeds.
pub(crate) fn decode_rows(m: &CompressedMatrix, row0: usize, out: &mut [f32]) {
    let cols = m.cols();
    if cols == 0 {
        return;
    }
    let uniform = |v: &Values| v.layout().total() == v.layout().rows() * v.layout().max_row_len();
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(v)) if uniform(v) => super::quant::decode_values_fast(v, row0, out),
        (Structure::NM(s), Some(v)) if uniform(v) => {
            super::quant::decode_nm_rows(s, v, row0, out, super::quant::RowScale::Applied)
        }
        _ => {
            for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                m.decode_row(row0 + r, o);
            }
        }
    }
}

/// The encodings read by decoding (quantized or shared values), as one
/// pattern for [`matmul`]'s arms; spelled out, so that a new encoding is
/// placed by hand.
macro_rules! decoded {
    () => {
        Values::Int8(_)
            | Values::Int4(_)
            | Values::Binary(_)
            | Values::Ternary(_)
            | Values::Codebook(_)
    };
}

/// `y = x · Wᵀ` with the best available kernel (input already checked).
///
/// Every (structure, encoding) pair is named: adding a structure or an
/// encoding fails to compile until it is given a kernel here.
pub fn matmul<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let x: ArrayView2<'a, f32> = x.into();
    // A one-thread pool runs its tasks on the calling thread: handing them to
    // the pool's worker costs a wake-up per call (several µs, more than the
    // whole product of a small layer), and the dense kernel never pays it.
    // Results do not depend on the executor, so the bits are the same.
    let exec: &dyn ParallelExecutor = if exec.threads() == 1 {
        &Sequential
    } else {
        exec
    };
    match (m.structure(), m.values()) {
        (Structure::Dense, Some(Values::F32(v))) => {
            // W streamed in row blocks: the same bits on any executor and
            // at any batch size.
            let w = ArrayView2::from_shape(m.shape(), v.data()).expect("dense layout");
            super::dense::dense_matmul_unchecked(w, x, exec)
        }
        // Quantized and shared dense blocks (also the stored rows of kept
        // rows): one summation order per output at every batch size.
        (Structure::Dense | Structure::KeptRows(_), Some(v @ decoded!())) => {
            use super::quant as q;
            match q::matmul_block(v, x, exec, Tier::detect()) {
                Some(y) => q::scatter_rows(m, y),
                None => reference::matmul(m, x, exec),
            }
        }
        // Pruned and shared (Deep Compression stage 2).
        (Structure::Csr(c), Some(Values::Codebook(v))) => {
            super::csr_codebook::matmul(m, c, v, x, exec)
        }
        (Structure::LowRank(lr), _) if super::lowrank::supports(lr) => {
            super::lowrank::matmul(lr, x, exec)
        }
        (Structure::LowRank(lr), _) => {
            let t = matmul(lr.b(), x, exec);
            matmul(lr.a(), t.view(), exec)
        }
        // N:M of whole rows: 2:4 on AVX-512 with the input permuted to the
        // stored values (`nm24`, every batch size), other N:M rows decoded
        // into tiles (amortised over the batch); f32 values off the 2:4
        // kernel run on the sparse kernels.
        (Structure::NM(s), Some(v @ (Values::F32(_) | decoded!())))
            if v.layout().total() == v.layout().rows() * v.layout().max_row_len() =>
        {
            super::quant::matmul_nm(s, v, m.shape(), x, exec, Tier::detect())
                .or_else(|| super::sparse::matmul_unchecked(m, x, exec, Tier::detect()))
                .unwrap_or_else(|| reference::matmul(m, x, exec))
        }
        // Pruned structures with f32 values: the sparse kernels.
        (Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_), Some(Values::F32(_))) => {
            super::sparse::matmul_unchecked(m, x, exec, Tier::detect())
                .unwrap_or_else(|| reference::matmul(m, x, exec))
        }
        (
            Structure::Csr(_) | Structure::NM(_),
            Some(Values::Int8(_) | Values::Int4(_) | Values::Binary(_) | Values::Ternary(_)),
        )
        | (Structure::NM(_), Some(Values::Codebook(_))) => {
            let (rows, cols) = m.shape();
            let decode = |r0: usize, out: &mut [f32]| {
                for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                    m.decode_row(r0 + r, o);
                }
            };
            super::tile::matmul(
                rows,
                cols,
                decode,
                None::<&NoLanes>,
                x,
                exec,
                Tier::detect(),
            )
        }
        (
            Structure::Dense | Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_),
            None,
        ) => reference::matmul(m, x, exec),
    }
}

/// The kernel [`CompressedMatrix::matmul`] runs for a matrix and a batch
/// size ([`kernel_for`]). The choice depends on the structure, the encoding,
/// the shape, the batch size and the CPU only — never on the executor — and
/// every choice computes each output with one fixed order, so results are
/// bit-identical at any thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Dense f32: W streamed in row blocks over the executor, one dot
    /// product per output (no packing).
    DenseGemm,
    /// Weight-only (quantized or shared values): the codes are decoded in
    /// registers (AVX-512) and each output is one dot product. Small
    /// batches, where decoding each weight once per few inputs costs less
    /// than writing and re-reading a decoded tile. Also 2:4 rows (values
    /// with a reader, off the integer slices) at every batch size, the
    /// input permuted to the stored values.
    Registers,
    /// Weight-only: tiles of whole rows decoded once per call (through the
    /// register reader where there is one, else the row decoders:
    /// byte-wise, VBMI byte lookups for 8-bit codebooks) and reused across
    /// the batch, the same dot products as [`Registers`](Self::Registers).
    DecodedTiles,
    /// Weight-only int8 / int4 / ternary on AVX-512 VNNI: each
    /// input row split into three int8 slices (`x ≈ s·(a₀ + a₁/254 +
    /// a₂/254²)`, within `2⁻²⁴·max|x|`), multiplied as exact integer sums on
    /// VNNI panels of the codes (built on the first product and kept with
    /// the values) and summed: at every batch size, for symmetric int codes
    /// in whole rows with groups of a multiple of 4 (int8) or 8 (int4)
    /// columns, ternary rows (in matrices of at least 4 M weights, at 1
    /// input, through the sign kernel, which reads their bits as stored),
    /// and at least 65 536 weights; N:M rows of such codes and of binary
    /// codes (per-row or per-tensor scales) spread to full rows.
    IntegerSlices,
    /// Binary rows (dense or kept) on AVX-512, at every batch size: each
    /// input's signed sums over four columns as 16-entry f32 tables, looked
    /// up by four sign bits of 16 rows at once (`vpermps`)
    /// (`kernels::quant::sign_lookup`).
    SignLookup,
    /// A matrix whose f32 copy fits
    /// [`MAX_COPY_BYTES`](super::decoded_copy::MAX_COPY_BYTES): the f32
    /// kernel of the structure (dense, or the CSR loops) on a decoded copy
    /// kept with the values, in the decoding kernels' order
    /// ([`decoded_copy`](super::decoded_copy)). Codebook values (dense,
    /// kept rows or CSR) on AVX2 or AVX-512 — on AVX-512, 4-bit (and
    /// narrower) dense blocks from 4 inputs (their streamed readers win
    /// below), the others at every batch size; on AVX2, int8 / int4 /
    /// binary / ternary codes in whole rows (int8 with row scales from 2
    /// inputs where the copy would not sit in L2) and N:M rows
    /// spread to whole rows, at every batch size; on AVX-512, the same for
    /// blocks of fewer than 65 536 weights.
    DecodedCopy,
    /// Sparse f32 kernels (CSR, N:M without a register reader, kept rows).
    Sparse,
    /// CSR with codebook values: each row's values looked up, then the CSR
    /// f32 inner loops.
    CsrCodebook,
    /// Low rank, through its factors.
    Factored,
    /// The reference kernel: no fast kernel for this pair.
    Reference,
}

/// The kernel [`CompressedMatrix::matmul`] picks for `m` at `batch` input
/// rows on this CPU: the chooser's rules, written out so they can be
/// tested (the dispatch makes the same decisions from the same readers).
///
/// * dense f32 → [`Kernel::DenseGemm`];
/// * symmetric int8 / int4, binary and ternary of at least 65 536 weights
///   on AVX-512 VNNI → [`Kernel::IntegerSlices`] at every batch size
///   (but dense and kept binary rows on any AVX-512 CPU →
///   [`Kernel::SignLookup`], at every size and batch); also
///   N:M rows with such values (one scale per row or per tensor), their
///   codes spread to full rows; int8 / int4 / ternary codes of
///   fewer weights on AVX-512 → [`Kernel::DecodedCopy`] at every batch
///   size;
/// * weight-only encodings with an in-register reader → [`Kernel::Registers`]
///   up to the reader's batch limit (16 for the streamed int8 / int4 /
///   binary / ternary / 4-bit codebook rows; 1 for gathered 8-bit
///   codebooks, which do not use gathers at all where AVX-512 VBMI decodes
///   tiles), else [`Kernel::DecodedTiles`]; on AVX2, int8 / int4 (groups
///   of a multiple of 8), binary and byte-aligned ternary rows past the
///   copy's size (below) up to 16 inputs, 4-bit codebook rows up to 2 →
///   [`Kernel::Registers`];
/// * other 2:4 (values with a reader, f32 included) → [`Kernel::Registers`]
///   at every batch size: the input permuted to the stored values, which
///   are read through the values' reader (decoded once per call above 16
///   inputs);
/// * codebooks (dense, kept rows, CSR) whose decoded f32 copy fits
///   [`MAX_COPY_BYTES`](super::decoded_copy::MAX_COPY_BYTES), on AVX2 or
///   AVX-512 → [`Kernel::DecodedCopy`] (on AVX-512, 4-bit and narrower
///   dense blocks from 4 inputs); on AVX2 only, the same for int8 / int4 /
///   binary / ternary codes in whole rows (before the readers above; int8
///   with row scales from 2 inputs where the copy exceeds 256 KiB) and N:M
///   rows of any values;
/// * other CSR with a codebook → [`Kernel::CsrCodebook`]; other f32 sparse
///   structures → [`Kernel::Sparse`].
///
/// ```
/// use ndarray::Array2;
/// use squish::kernels::dispatch::{kernel_for, Kernel};
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((8, 64), |(i, j)| (i * 64 + j) as f32 / 512.0 - 0.5);
/// let m = CompressedMatrix::from_dense(w.view())?;
/// assert_eq!(kernel_for(&m, 4), Kernel::DenseGemm);
/// let q = IntQuantizer::params(8).per_row().check()?.quantize(&m)?;
/// assert!(matches!(kernel_for(&q, 256), Kernel::DecodedTiles | Kernel::DecodedCopy));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn kernel_for(m: &CompressedMatrix, batch: usize) -> Kernel {
    use super::quant::{nm24_reads, reader_max_batch, streamed_max_batch};
    let tier = Tier::detect();
    let cols = m.cols();
    let regs = |max: Option<usize>, cols: usize| match max {
        Some(b) if tier >= Tier::Avx512 && batch <= b && cols > 0 => Kernel::Registers,
        _ => Kernel::DecodedTiles,
    };
    // AVX2's readers (`quant::avx2`), for dense blocks.
    #[cfg(target_arch = "x86_64")]
    let avx2_reads = |v: &Values, cols: usize| {
        use super::quant::avx2;
        tier == Tier::Avx2 && cols > 0 && avx2::max_batch(v, cols).is_some_and(|b| batch <= b)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let avx2_reads = |_: &Values, _: usize| false;
    // N:M rows on AVX2: 2:4 f32 / int8 / int4 rows read whole in registers
    // up to the 2:4 reader's batch for their values, decoded tiles above.
    #[cfg(target_arch = "x86_64")]
    let nm_avx2 = |s: &crate::matrix::NM, v: &Values| {
        use super::quant::avx2;
        if batch <= avx2::nm_max_batch(v) && avx2::reads_nm(s, v, cols) {
            Kernel::Registers
        } else {
            Kernel::DecodedTiles
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let nm_avx2 = |_: &crate::matrix::NM, _: &Values| Kernel::DecodedTiles;
    let uniform = |v: &Values| v.layout().total() == v.layout().rows() * v.layout().max_row_len();
    let copied = |c: &crate::matrix::CodebookValues, dense: bool| {
        super::decoded_copy::applies(c, dense, batch, tier)
    };
    let spread = super::decoded_copy::applies_spread(m.shape(), tier);
    match (m.structure(), m.values()) {
        (Structure::LowRank(_), _) => Kernel::Factored,
        (Structure::Dense, Some(Values::F32(_))) => Kernel::DenseGemm,
        (Structure::NM(_), Some(v @ Values::F32(_))) if uniform(v) && spread => Kernel::DecodedCopy,
        (Structure::NM(s), Some(v @ Values::F32(_))) if uniform(v) && nm24_reads(s, v, cols) => {
            Kernel::Registers
        }
        (Structure::NM(s), Some(v @ Values::F32(_))) if uniform(v) && tier == Tier::Avx2 => {
            nm_avx2(s, v)
        }
        (Structure::Csr(_) | Structure::NM(_) | Structure::KeptRows(_), Some(Values::F32(_))) => {
            Kernel::Sparse
        }
        (Structure::Dense | Structure::KeptRows(_), Some(v)) => {
            let (rows, c) = (v.layout().rows(), v.layout().max_row_len());
            if rows == 0 || !uniform(v) {
                Kernel::Reference
            } else if matches!(v, Values::Binary(_)) && tier >= Tier::Avx512 && c > 0 {
                Kernel::SignLookup
            } else if super::quant::sliced::applies(v, tier) {
                Kernel::IntegerSlices
            } else if matches!(v, Values::Codebook(c) if copied(c, true))
                || super::decoded_copy::applies_codes(v, batch, tier)
            {
                Kernel::DecodedCopy
            } else if avx2_reads(v, c) {
                Kernel::Registers
            } else {
                regs(streamed_max_batch(v, c).or(reader_max_batch(v, c)), c)
            }
        }
        (Structure::Csr(_), Some(Values::Codebook(c))) if copied(c, false) => Kernel::DecodedCopy,
        (Structure::Csr(_), Some(Values::Codebook(_))) => Kernel::CsrCodebook,
        (Structure::NM(s), Some(v)) if super::quant::sliced::applies_nm(s, v, m.shape(), tier) => {
            Kernel::IntegerSlices
        }
        (Structure::NM(_), Some(v)) if uniform(v) && spread => Kernel::DecodedCopy,
        (Structure::NM(s), Some(v)) if uniform(v) && nm24_reads(s, v, cols) => Kernel::Registers,
        (Structure::NM(s), Some(v)) if uniform(v) && tier == Tier::Avx2 => nm_avx2(s, v),
        (Structure::NM(_), Some(v)) if uniform(v) => Kernel::DecodedTiles,
        (Structure::Csr(_) | Structure::NM(_), Some(_)) => Kernel::DecodedTiles,
        (_, None) => Kernel::Reference,
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::compression::sharing::KMeans;
    use crate::pass::Pruner;
    use crate::pruning::{Magnitude, NMPruner};
    use crate::quantization::{Binary, IntQuantizer, Quantizer, Ternary};

    fn matrix(rows: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 7919 + j * 104729) % 1009) as f32 - 504.0) / 300.0
        })
    }

    /// The test matrix dense and pruned 2:4.
    fn dense_and_2of4(rows: usize, cols: usize) -> (CompressedMatrix, CompressedMatrix) {
        let dense = CompressedMatrix::from_dense(matrix(rows, cols).view()).unwrap();
        let nm = NMPruner::params(2, 4).check().unwrap().prune(&dense);
        (dense, nm.unwrap())
    }

    fn forms(s: &CompressedMatrix) -> Vec<CompressedMatrix> {
        let int = |bits: u8, g: Option<usize>| {
            let p = IntQuantizer::params(bits);
            let p = match g {
                Some(g) => p.per_group(g),
                None => p.per_row(),
            };
            p.check().unwrap().quantize(s).unwrap()
        };
        vec![
            int(8, None),
            int(4, None),
            int(4, Some(32)),
            Binary.quantize(s).unwrap(),
            Ternary.quantize(s).unwrap(),
            KMeans::params(16).check().unwrap().quantize(s).unwrap(),
            KMeans::params(256).check().unwrap().quantize(s).unwrap(),
        ]
    }

    /// No groups, or groups of whole runs of 8 values.
    fn groups_of_8(p: &crate::matrix::QuantParams) -> bool {
        match p.granularity() {
            crate::matrix::Granularity::PerGroup(g) => g % 8 == 0,
            _ => true,
        }
    }

    /// The chooser's rules, on shapes whose rows do not start on a byte
    /// (the MLP's 300 and 100 columns): no supported pair falls back to the
    /// reference kernel; the paths known to be slower than dense f32 are
    /// never picked (per-code `decode_row` for binary / ternary rows that do
    /// not start on a byte, the sparse scatter for 2:4 with AVX-512, 8-bit
    /// codebook gathers above batch 1 or at all with VBMI).
    #[test]
    fn chooser_rules() {
        let avx2 = Tier::detect() >= Tier::Avx2;
        let avx512 = Tier::detect() >= Tier::Avx512;
        let vnni = Tier::detect() == Tier::Avx512Vnni;
        let vbmi = super::super::quant::codebook_vbmi_available();
        for (rows, cols) in [(100, 300), (40, 100), (16, 64)] {
            let (dense, nm) = dense_and_2of4(rows, cols);
            let csr = Magnitude::params(0.9)
                .check()
                .unwrap()
                .prune(&dense)
                .unwrap();
            let csr_cb = KMeans::params(32).check().unwrap().quantize(&csr).unwrap();
            for batch in [1, 2, 8, 9, 16, 64, 256] {
                assert_eq!(kernel_for(&dense, batch), Kernel::DenseGemm);
                // Small matrices: codebooks multiply through their decoded copy.
                let csr_cb_kernel = if avx2 {
                    Kernel::DecodedCopy
                } else {
                    Kernel::CsrCodebook
                };
                assert_eq!(kernel_for(&csr_cb, batch), csr_cb_kernel);
                assert_eq!(kernel_for(&csr, batch), Kernel::Sparse);
                let nm_f32 = kernel_for(&nm, batch);
                let what = format!("2:4 f32 {rows}x{cols} batch {batch}");
                if avx2 {
                    // AVX2 cache-resident, AVX-512 below 65 536 weights: the
                    // rows spread once, the dense kernel.
                    assert_eq!(nm_f32, Kernel::DecodedCopy, "{what}");
                } else {
                    assert_eq!(nm_f32, Kernel::Sparse);
                }
                for m in forms(&dense).iter().chain(&forms(&nm)) {
                    let what = format!(
                        "{} {} {rows}x{cols} batch {batch}",
                        m.structure().kind(),
                        m.encoding()
                    );
                    let k = kernel_for(m, batch);
                    assert_ne!(k, Kernel::Reference, "{what}");
                    let cb8 =
                        matches!(m.values(), Some(Values::Codebook(c)) if c.indices().width() == 8);
                    let is_nm = matches!(m.structure(), Structure::NM(_));
                    let streamed = match m.values() {
                        Some(Values::Int8(_) | Values::Binary(_) | Values::Ternary(_)) => true,
                        Some(Values::Int4(_)) => cols % 2 == 0,
                        Some(Values::Codebook(c)) => c.indices().width() == 4 && cols % 2 == 0,
                        _ => false,
                    };
                    // AVX2 reads 2:4 int8 / int4 rows in registers.
                    let avx2_nm = avx2
                        && !avx512
                        && is_nm
                        && batch <= 8
                        && cols % 4 == 0
                        && match m.values() {
                            Some(Values::Int8(q)) => groups_of_8(q.params()),
                            Some(Values::Int4(q)) => groups_of_8(q.params()),
                            _ => false,
                        };
                    let limit = match (is_nm, streamed) {
                        // 2:4 reads in registers at every batch size.
                        (true, _) => usize::MAX,
                        (false, true) => 16,
                        (false, false) => 8,
                    };
                    let cb8_tiles = cb8 && (vbmi || (batch > 1 && !is_nm));
                    // Symmetric int codes (per row, or groups of 32 values:
                    // 32 / 64 columns), binary and ternary, dense or 2:4, of
                    // 65 536 weights and more take the integer slices on VNNI
                    // (none of these shapes).
                    let int_codes = matches!(
                        m.values(),
                        Some(
                            Values::Int8(_)
                                | Values::Int4(_)
                                | Values::Binary(_)
                                | Values::Ternary(_)
                        )
                    );
                    let sliced = vnni && int_codes && rows * cols >= 65_536;
                    let copy = avx2
                        && !is_nm
                        && matches!(m.values(), Some(Values::Codebook(c))
                            if !avx512 || c.indices().width() > 4 || batch >= 4);
                    // AVX2 alone: these L2-sized matrices' codes and 2:4 rows
                    // multiply through their copies at every batch size;
                    // AVX-512: the codes and 2:4 rows of these small matrices
                    // too (below 65 536 weights).
                    let copy = copy || (avx2 && (is_nm || int_codes));
                    // AVX2 reads int codes in registers up to 16 inputs.
                    let avx2_regs = avx2
                        && !avx512
                        && !is_nm
                        && match m.values() {
                            Some(Values::Int8(_)) => batch <= 16,
                            Some(Values::Int4(_)) => batch <= 16 && cols % 2 == 0,
                            Some(Values::Binary(_)) => batch <= 16,
                            Some(Values::Ternary(_)) => batch <= 16 && cols % 4 == 0,
                            Some(Values::Codebook(c)) => {
                                batch <= 2 && c.indices().width() == 4 && cols % 2 == 0
                            }
                            _ => false,
                        };
                    let lookup = avx512 && !is_nm && matches!(m.values(), Some(Values::Binary(_)));
                    let want = if lookup {
                        Kernel::SignLookup
                    } else if sliced {
                        Kernel::IntegerSlices
                    } else if copy {
                        Kernel::DecodedCopy
                    } else if avx2_regs || avx2_nm {
                        Kernel::Registers
                    } else if !avx512 || batch > limit || cb8_tiles {
                        Kernel::DecodedTiles
                    } else {
                        Kernel::Registers
                    };
                    assert_eq!(k, want, "{what}");
                }
            }
        }
    }

    /// The row decoders behind [`decode_rows`] (byte-wise, VBMI lookups, 2:4
    /// placement) write exactly the encoding's own decoded values, also for
    /// rows that do not start on a byte and across row boundaries.
    #[test]
    fn decode_rows_equals_decode_row() {
        for (rows, cols) in [(100, 300), (9, 100), (5, 36), (70, 64)] {
            let (dense, nm) = dense_and_2of4(rows, cols);
            let mut all = forms(&dense);
            all.extend(forms(&nm));
            all.push(nm);
            for m in all {
                let want = m.to_dense();
                for r0 in [0, 1, rows / 2] {
                    let mut out = vec![f32::NAN; (rows - r0) * cols];
                    decode_rows(&m, r0, &mut out);
                    let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    let w: Vec<u32> = want
                        .slice(ndarray::s![r0.., ..])
                        .iter()
                        .map(|v| v.to_bits())
                        .collect();
                    assert_eq!(
                        got,
                        w,
                        "{} {} {rows}x{cols} from {r0}",
                        m.structure().kind(),
                        m.encoding()
                    );
                }
            }
        }
    }
}
