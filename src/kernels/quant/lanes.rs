//! In-register readers ([`Lanes`]) of the weight-only encodings for the
//! small-batch path of [`tile`](crate::kernels::tile): 16 weights decoded
//! straight from the codes to exactly the values the row decoders write
//! (the encoding's values, or its integer values where the row scale is
//! deferred: [`RowScale`]), so small and large batches give the same bits. A reader exists
//! only where every 16-value block of a row shares one parameter set and
//! rows start on a byte (and, for codebooks, indices are 4 or 8 bits); other
//! shapes decode tiles with the row decoders.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::RowScale;
use crate::kernels::tile::Lanes;
use crate::matrix::{
    nibble_to_i8, BinaryValues, CodebookValues, F32Values, Granularity, Int4Values, Int8Values,
    QuantParams, TernaryValues, Values,
};

/// Whether every 16-value block of a row lies in one parameter set.
fn blocks_share_params(p: &QuantParams) -> bool {
    match p.granularity() {
        Granularity::PerGroup(g) => g.is_multiple_of(16),
        _ => true,
    }
}

/// `y = x · Wᵀ` for a block of `values` (rows of `cols`) at batch ≤
/// [`QUANT_MAX_BATCH`](crate::kernels::gemv::QUANT_MAX_BATCH) on AVX-512,
/// streamed by [`gemv`](crate::kernels::gemv) through the encoding's row
/// reader: the values and the order of the readers above, so the bits of
/// [`tile::matmul`](crate::kernels::tile::matmul). `None` where
/// the tier, the batch or the layout has no streamed path.
pub(super) fn streamed(
    values: &Values,
    x: ndarray::ArrayView2<f32>,
    exec: &dyn crate::parallel::ParallelExecutor,
    tier: crate::kernels::Tier,
    sc: RowScale,
) -> Option<ndarray::Array2<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::gemv;
        let cols = values.layout().max_row_len();
        if tier.capped() < crate::kernels::Tier::Avx512
            || x.nrows() > gemv::QUANT_MAX_BATCH
            || cols == 0
        {
            return None;
        }
        // SAFETY: AVX-512 F/BW/VL, BMI2 and FMA come with `Tier::Avx512`
        // (capped to the CPU); each reader reads `rows` rows of `cols`.
        let s = gemv::Stream { cols, x, exec };
        unsafe {
            match values {
                Values::Int8(v) => super::int8::streamed(v, s, sc),
                Values::Int4(v) => super::int4::streamed(v, s, sc),
                Values::Binary(v) => Some(super::binary::streamed(v, s, sc)),
                Values::Ternary(v) => Some(super::ternary::streamed(v, s, sc)),
                Values::Codebook(v) => super::codebook4::streamed(v, s),
                Values::F32(_) => None,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (values, x, exec, tier, sc);
        None
    }
}

/// Values per parameter set in a row, for the streamed readers of
/// [`gemv`](crate::kernels::gemv): a group (a multiple of 16), or
/// `usize::MAX` (one set per row or tensor); `None` where a block of 16
/// can span two sets.
pub(super) fn segment_len(p: &QuantParams) -> Option<usize> {
    match p.granularity() {
        Granularity::PerGroup(g) if g.is_multiple_of(16) => Some(g),
        Granularity::PerGroup(_) => None,
        _ => Some(usize::MAX),
    }
}

/// The parameter sets of uniform rows (`cols` values each), read per
/// segment by the streamed readers: `i·sets_per_row + k / group` with a
/// shift for groups of a power of two and no bounds checks (a division,
/// the general lookup and its checks per group and row cost more than the
/// group's multiply-adds at batch 1).
#[derive(Clone, Copy)]
pub(super) struct SegParams<'a> {
    scales: &'a [f32],
    zeros: Option<&'a [i8]>,
    per_row: usize,
    /// Values per set within a row; `usize::MAX` for one set per row.
    group: usize,
    shift: u32,
}

impl<'a> SegParams<'a> {
    pub(super) fn new(p: &'a QuantParams, cols: usize) -> Self {
        let (per_row, group) = match p.granularity() {
            Granularity::PerTensor => (0, usize::MAX),
            Granularity::PerRow => (1, usize::MAX),
            Granularity::PerGroup(g) => (cols.div_ceil(g.max(1)), g.max(1)),
        };
        SegParams {
            scales: p.scales(),
            zeros: p.zero_points(),
            per_row,
            group,
            shift: group.trailing_zeros(),
        }
    }

    /// Scale and zero-point of the segment of row `i` that starts at `k`.
    ///
    /// # Safety
    /// Row `i` exists and `k` is below the row length.
    #[inline(always)]
    pub(super) unsafe fn get(&self, i: usize, k: usize) -> (f32, i32) {
        let g = if self.group == usize::MAX {
            0
        } else if self.group.is_power_of_two() {
            k >> self.shift
        } else {
            k / self.group
        };
        let p = i * self.per_row + g;
        debug_assert!(p < self.scales.len());
        // SAFETY: row `i` and column `k` exist, so set `p` does (uniform
        // rows: row i's sets start at i·per_row).
        unsafe {
            let z = match self.zeros {
                Some(z) => *z.get_unchecked(p) as i32,
                None => 0,
            };
            (*self.scales.get_unchecked(p), z)
        }
    }
}

/// `n ≤ 8` bytes from `p` (little-endian, zero-filled).
///
/// # Safety
/// `p` points to at least `n` readable bytes.
#[inline(always)]
unsafe fn read_le(p: *const u8, n: usize) -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: the caller guarantees `n` readable bytes; `n ≤ 8`.
    unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
    u64::from_le_bytes(buf)
}

/// Eight bytes of `bytes` from `at` on (little-endian), zero past its end:
/// one unaligned load away from the end (a `read_le` of a length known only
/// at run time would be a `memcpy` call per 16 weights). Bits beyond those
/// a reader asked for are garbage that its lane mask drops.
#[inline(always)]
pub(super) fn read8(bytes: &[u8], at: usize) -> u64 {
    if at + 8 <= bytes.len() {
        // SAFETY: bytes `at..at + 8` are inside `bytes` (checked above).
        u64::from_le(unsafe { bytes.as_ptr().add(at).cast::<u64>().read_unaligned() })
    } else {
        read8_tail(bytes, at)
    }
}

/// [`read8`] near the end of the stream (out of line: the hot loop keeps
/// its registers).
#[cold]
#[inline(never)]
fn read8_tail(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    let tail = &bytes[at.min(bytes.len())..];
    let n = tail.len().min(8);
    buf[..n].copy_from_slice(&tail[..n]);
    u64::from_le_bytes(buf)
}

/// 16 nibbles starting at byte `p` as 16 lanes of table indices (low 4 bits;
/// low nibble first), reading only the bytes that lanes in `m` need.
///
/// # Safety
/// AVX-512 F/BW/VL; the bytes of the lanes in `m` are readable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibble_indices(p: *const u8, m: __mmask16) -> __m512i {
    let nbytes = (m.count_ones() as usize).div_ceil(2);
    // SAFETY: the caller guarantees `nbytes` readable bytes.
    unsafe {
        let b = _mm_cvtsi64_si128(read_le(p, nbytes) as i64);
        let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let v = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(b, dup));
        let shifts = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
        _mm512_srlv_epi32(v, shifts)
    }
}

/// int8 and int4 codes: `(q − z)·s` (`q − z` exact in f32, then one
/// product; with the row's scale deferred, `q − z`).
pub(crate) struct IntLanes<'a, V> {
    v: &'a V,
    cols: usize,
    params: SegParams<'a>,
    sc: RowScale,
}

/// int8 or int4 codes as they are: the lanes of [`IntLanes`] where the row
/// scale is deferred and there are no zero points (`q − 0` and `q · 1`
/// change no bits). A type of its own, not a flag: a run-time branch in the
/// reader cost the 2:4 kernel a third of its speed at batch 1–4.
pub(crate) struct CodeLanes<'a, V> {
    v: &'a V,
    cols: usize,
}

impl<'a, V: IntCodes> CodeLanes<'a, V> {
    pub(crate) fn new(v: &'a V, cols: usize, sc: RowScale) -> Option<Self> {
        let plain = sc == RowScale::Deferred && v.quant_params().zero_points().is_none();
        (plain && V::rows_fit(cols)).then_some(CodeLanes { v, cols })
    }
}

impl<V: IntCodes> Lanes for CodeLanes<'_, V> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { self.v.codes(i, k, self.cols, m) }
    }
}

/// int8 codes through [`IntLanes`].
pub(crate) type Int8Lanes<'a> = IntLanes<'a, Int8Values>;
/// int4 codes (signed nibbles, even `cols`) through [`IntLanes`].
pub(crate) type Int4Lanes<'a> = IntLanes<'a, Int4Values>;

/// The integer codes an [`IntLanes`] reads.
pub(crate) trait IntCodes: Sync {
    /// The values' quantization parameters.
    fn quant_params(&self) -> &QuantParams;

    /// Whether rows of `cols` codes can be read (int4: rows start on a byte).
    fn rows_fit(cols: usize) -> bool;

    /// Codes `k..k + 16` of row `i` (rows of `cols`) as f32, masked to `m`.
    ///
    /// # Safety
    /// As [`Lanes::lanes`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn codes(&self, i: usize, k: usize, cols: usize, m: __mmask16) -> __m512;
}

impl IntCodes for Int8Values {
    fn quant_params(&self) -> &QuantParams {
        self.params()
    }

    fn rows_fit(_: usize) -> bool {
        true
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes(&self, i: usize, k: usize, cols: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller guarantees AVX-512 and that lanes in `m` lie in
        // row `i` (masked lanes are not read).
        unsafe {
            let q = _mm_maskz_loadu_epi8(m, self.codes().as_ptr().add(i * cols + k));
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))
        }
    }
}

impl IntCodes for Int4Values {
    fn quant_params(&self) -> &QuantParams {
        self.params()
    }

    fn rows_fit(cols: usize) -> bool {
        cols.is_multiple_of(2)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes(&self, i: usize, k: usize, cols: usize, m: __mmask16) -> __m512 {
        // SAFETY: rows start on a byte (even `cols`); the caller guarantees
        // AVX-512 and that the lanes in `m` lie in row `i`.
        unsafe {
            let idx = nibble_indices(self.codes().bytes().as_ptr().add((i * cols + k) / 2), m);
            // Signed nibble values −8..7 as f32 (exact).
            let table = _mm512_setr_ps(
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0,
                -1.0,
            );
            debug_assert_eq!(nibble_to_i8(8), -8);
            _mm512_permutexvar_ps(idx, table)
        }
    }
}

impl<'a, V: IntCodes> IntLanes<'a, V> {
    pub(crate) fn new(v: &'a V, cols: usize, sc: RowScale) -> Option<Self> {
        let p = v.quant_params();
        (V::rows_fit(cols) && blocks_share_params(p)).then(|| IntLanes {
            v,
            cols,
            params: SegParams::new(p, cols),
            sc,
        })
    }
}

impl<V: IntCodes> Lanes for IntLanes<'_, V> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (lanes of row `i` from column `k`).
        let (s, z) = unsafe { self.params.get(i, k) };
        let s = self.sc.of(s);
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            let q = _mm512_sub_ps(self.v.codes(i, k, self.cols, m), _mm512_set1_ps(z as f32));
            _mm512_maskz_mul_ps(m, q, _mm512_set1_ps(s))
        }
    }
}

/// Sign bits: `+α` for 1, `−α` for 0.
pub(crate) struct BinaryLanes<'a> {
    v: &'a BinaryValues,
    cols: usize,
    sc: RowScale,
}

impl<'a> BinaryLanes<'a> {
    pub(crate) fn new(v: &'a BinaryValues, cols: usize, sc: RowScale) -> Option<Self> {
        Some(BinaryLanes { v, cols, sc })
    }
}

impl Lanes for BinaryLanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        let a = self.sc.of(self.v.scales()[i]);
        // Rows need not start on a byte: read from the byte holding the
        // first sign and shift.
        let off = i * self.cols + k;
        let bits = (read8(self.v.signs().bytes(), off / 8) >> (off % 8)) as u16;
        // SAFETY: AVX-512 is available (the caller's contract); lanes
        // outside `m` (and their garbage bits) are zeroed.
        unsafe {
            let w = _mm512_mask_blend_ps(bits, _mm512_set1_ps(-a), _mm512_set1_ps(a));
            _mm512_maskz_mov_ps(m, w)
        }
    }
}

/// 2-bit codes: `+α` for 1, `−α` for 2, `0` otherwise.
pub(crate) struct TernaryLanes<'a> {
    v: &'a TernaryValues,
    cols: usize,
    sc: RowScale,
}

impl<'a> TernaryLanes<'a> {
    pub(crate) fn new(v: &'a TernaryValues, cols: usize, sc: RowScale) -> Option<Self> {
        Some(TernaryLanes { v, cols, sc })
    }
}

impl Lanes for TernaryLanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        let a = self.sc.of(self.v.scales()[i]);
        // Rows need not start on a byte: read from the byte holding the
        // first code and shift (by 0, 2, 4 or 6 bits).
        let off = 2 * (i * self.cols + k);
        let w = (read8(self.v.codes().bytes(), off / 8) >> (off % 8)) as u32;
        // SAFETY: AVX-512 + BMI2 are available (the caller's contract); lanes
        // outside `m` (and their garbage bits) are zeroed.
        unsafe {
            let lo = _pext_u32(w, 0x5555_5555) as u16;
            let hi = _pext_u32(w, 0xAAAA_AAAA) as u16;
            let plus = lo & !hi & m;
            let minus = hi & !lo & m;
            let v = _mm512_maskz_mov_ps(plus, _mm512_set1_ps(a));
            _mm512_mask_mov_ps(v, minus, _mm512_set1_ps(-a))
        }
    }
}

/// 4-bit codebook indices (k ≤ 16): the centroid of each index.
pub(crate) struct Codebook4Lanes<'a> {
    v: &'a CodebookValues,
    cols: usize,
    /// Each codebook padded to 16 entries.
    tables: Vec<[f32; 16]>,
}

impl<'a> Codebook4Lanes<'a> {
    pub(crate) fn new(v: &'a CodebookValues, cols: usize) -> Option<Self> {
        if v.indices().width() != 4 || !cols.is_multiple_of(2) || v.k() > 16 || v.k() == 0 {
            return None;
        }
        let tables = v
            .centroids()
            .chunks(v.k())
            .map(|cb| std::array::from_fn(|t| cb.get(t).copied().unwrap_or(0.0)))
            .collect();
        Some(Codebook4Lanes { v, cols, tables })
    }
}

impl Lanes for Codebook4Lanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        let t = match self.v.scope() {
            crate::matrix::CodebookScope::PerTensor => &self.tables[0],
            crate::matrix::CodebookScope::PerRow => &self.tables[i],
        };
        // SAFETY: rows start on a byte (even `cols`); the caller guarantees
        // AVX-512 and that the lanes in `m` lie in row `i`.
        unsafe {
            let idx = nibble_indices(
                self.v
                    .indices()
                    .bytes()
                    .as_ptr()
                    .add((i * self.cols + k) / 2),
                m,
            );
            _mm512_maskz_permutexvar_ps(m, idx, _mm512_loadu_ps(t.as_ptr()))
        }
    }
}

/// 8-bit codebook indices with one codebook (padded to 256 entries, so
/// every index reads inside it): the centroid of each index, gathered.
pub(crate) struct Codebook8Lanes<'a> {
    v: &'a CodebookValues,
    cols: usize,
    table: Box<[f32; 256]>,
}

impl<'a> Codebook8Lanes<'a> {
    pub(crate) fn new(v: &'a CodebookValues, cols: usize) -> Option<Self> {
        if v.indices().width() != 8 || v.scope() != crate::matrix::CodebookScope::PerTensor {
            return None;
        }
        let mut table = Box::new([0.0f32; 256]);
        for (t, &c) in table.iter_mut().zip(v.centroids()) {
            *t = c;
        }
        Some(Codebook8Lanes { v, cols, table })
    }
}

impl Lanes for Codebook8Lanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller guarantees AVX-512 and that the lanes in `m` lie
        // in row `i`; every byte index reads inside the 256-entry table.
        unsafe {
            let p = self.v.indices().bytes().as_ptr().add(i * self.cols + k);
            let idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p as *const i8));
            let w = _mm512_i32gather_ps::<4>(idx, self.table.as_ptr());
            _mm512_maskz_mov_ps(m, w)
        }
    }

    /// A gather per 16 weights costs more than the multiply-adds of a few
    /// input rows: above one row, gather each weight once into a tile.
    fn max_batch(&self) -> usize {
        1
    }
}

/// A reader for whichever codebook layout has one.
pub(crate) enum CodebookLanes<'a> {
    Four(Codebook4Lanes<'a>),
    Eight(Codebook8Lanes<'a>),
}

impl<'a> CodebookLanes<'a> {
    /// Codebooks have no row scale: `sc` is always `Applied`.
    pub(crate) fn new(v: &'a CodebookValues, cols: usize, sc: RowScale) -> Option<Self> {
        debug_assert_eq!(sc, RowScale::Applied);
        Codebook4Lanes::new(v, cols)
            .map(CodebookLanes::Four)
            .or_else(|| {
                // With VBMI, tiles decode 64 indices in a few byte lookups,
                // far cheaper than a gather per 16 weights.
                if super::codebook_vbmi_available() {
                    return None;
                }
                Codebook8Lanes::new(v, cols).map(CodebookLanes::Eight)
            })
    }
}

impl Lanes for CodebookLanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe {
            match self {
                CodebookLanes::Four(f) => f.lanes(i, k, m),
                CodebookLanes::Eight(f) => f.lanes(i, k, m),
            }
        }
    }

    fn max_batch(&self) -> usize {
        match self {
            CodebookLanes::Four(f) => f.max_batch(),
            CodebookLanes::Eight(f) => f.max_batch(),
        }
    }
}

/// f32 values, read as stored (the values of N:M rows with f32 values).
pub(crate) struct F32Lanes<'a> {
    data: &'a [f32],
    cols: usize,
}

impl<'a> F32Lanes<'a> {
    /// f32 values have no row scale: `sc` is always `Applied`.
    pub(crate) fn new(v: &'a F32Values, cols: usize, sc: RowScale) -> Option<Self> {
        debug_assert_eq!(sc, RowScale::Applied);
        Some(F32Lanes {
            data: v.data(),
            cols,
        })
    }
}

impl Lanes for F32Lanes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller guarantees AVX-512 and that the lanes in `m`
        // lie in row `i` (masked lanes are not read).
        unsafe { _mm512_maskz_loadu_ps(m, self.data.as_ptr().add(i * self.cols + k)) }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::super::decode_rows;
    use super::*;
    use crate::compression::sharing::KMeans;
    use crate::kernels::tile::{self, NoLanes};
    use crate::kernels::Tier;
    use crate::matrix::{CompressedMatrix, Values};
    use crate::parallel::Sequential;
    use crate::quantization::{Binary, IntQuantizer, Quantizer, Ternary};

    fn encodings(rows: usize, cols: usize) -> Vec<CompressedMatrix> {
        let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 37 + j * 11) % 29) as f32 - 14.0) / 9.0
        });
        let d = CompressedMatrix::from_dense(w.view()).unwrap();
        let int = |bits: u8, group: Option<usize>, sym: bool| {
            let p = IntQuantizer::params(bits).symmetric(sym);
            let p = match group {
                Some(g) => p.per_group(g),
                None => p.per_row(),
            };
            p.check().unwrap().quantize(&d).unwrap()
        };
        vec![
            int(8, None, true),
            int(8, Some(32), false),
            int(4, None, true),
            int(4, None, false),
            int(4, Some(16), false),
            int(4, Some(64), true),
            int(4, Some(48), false),
            int(8, Some(48), true),
            Binary.quantize(&d).unwrap(),
            Ternary.quantize(&d).unwrap(),
            KMeans::params(16).check().unwrap().quantize(&d).unwrap(),
            KMeans::params(5).check().unwrap().quantize(&d).unwrap(),
            KMeans::params(200).check().unwrap().quantize(&d).unwrap(),
        ]
    }

    /// Each matrix with the scale modes its products can use: applied, and
    /// deferred where one scale covers a row.
    fn scale_modes(m: &CompressedMatrix) -> Vec<(&CompressedMatrix, RowScale)> {
        let mut v = vec![(m, RowScale::Applied)];
        if super::super::row_scales(m.values().unwrap()).is_some() {
            v.push((m, RowScale::Deferred));
        }
        v
    }

    /// Shapes with rows that do and do not start on a byte or a 16-value
    /// block.
    const SHAPES: [(usize, usize); 8] = [
        (5, 64),
        (9, 200),
        (6, 24),
        (7, 1000),
        (3, 18),
        (5, 100),
        (4, 300),
        (3, 37),
    ];

    fn input(batch: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((batch, cols), |(b, j)| {
            ((b * 131 + j * 71) % 97) as f32 / 13.0 - 3.5
        })
    }

    /// The AVX-512 tile product on one thread, through `lanes` if given.
    fn on_one_thread<F: Lanes>(
        rows: usize,
        cols: usize,
        decode: &(dyn Fn(usize, &mut [f32]) + Sync),
        lanes: Option<&F>,
        x: &Array2<f32>,
    ) -> Array2<f32> {
        tile::matmul(
            rows,
            cols,
            decode,
            lanes,
            x.view(),
            &Sequential,
            Tier::Avx512,
        )
    }

    /// The AVX-512 product over tiles decoded by `decode`, on one thread.
    fn on_tiles(
        rows: usize,
        cols: usize,
        decode: &(dyn Fn(usize, &mut [f32]) + Sync),
        x: &Array2<f32>,
    ) -> Array2<f32> {
        on_one_thread(rows, cols, decode, None::<&NoLanes>, x)
    }

    /// In-register decoding equals the row decoders bit for bit: products
    /// through a reader (small batch: registers; large batch: tiles decoded
    /// by the reader) equal products over tiles decoded by `decode_rows`.
    #[test]
    fn readers_decode_exactly_what_the_row_decoders_write() {
        if !Tier::Avx512.is_available() {
            return;
        }
        for (rows, cols) in SHAPES {
            for (m, sc) in encodings(rows, cols).iter().flat_map(scale_modes) {
                let v = m.values().unwrap();
                for batch in [1, 3, 8, 9, 20] {
                    let x = input(batch, cols);
                    macro_rules! both {
                        ($v:expr, $f:expr) => {{
                            let dec = |r, o: &mut [f32]| decode_rows($v, r, o, sc);
                            let f = $f;
                            let fast = on_one_thread(rows, cols, &dec, f.as_ref(), &x);
                            (on_tiles(rows, cols, &dec, &x), fast, f.is_some())
                        }};
                    }
                    let (plain, fast, has) = match v {
                        Values::Int8(v) => both!(v, Int8Lanes::new(v, cols, sc)),
                        Values::Int4(v) => both!(v, Int4Lanes::new(v, cols, sc)),
                        Values::Binary(v) => both!(v, BinaryLanes::new(v, cols, sc)),
                        Values::Ternary(v) => both!(v, TernaryLanes::new(v, cols, sc)),
                        Values::Codebook(v) => both!(v, CodebookLanes::new(v, cols, sc)),
                        Values::F32(_) => unreachable!(),
                    };
                    let what = format!("{} {rows}x{cols} batch {batch} {sc:?}", m.encoding());
                    // Every case has a reader except indices of 3 or 5 bits
                    // and 8-bit indices where VBMI decodes tiles instead.
                    let odd_width =
                        matches!(v, Values::Codebook(c) if c.indices().width() % 4 != 0);
                    let vbmi8 = matches!(v, Values::Codebook(c) if c.indices().width() == 8)
                        && super::super::codebook_vbmi_available();
                    let odd_nibbles = cols % 2 == 1
                        && match v {
                            Values::Int4(_) => true,
                            Values::Codebook(c) => c.indices().width() == 4,
                            _ => false,
                        };
                    assert_eq!(has, !odd_width && !vbmi8 && !odd_nibbles, "{what}");
                    let eq = plain
                        .iter()
                        .zip(&fast)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(eq, "{what}");
                }
            }
        }
    }

    /// The streamed small-batch path (`gemv` through the encodings' row
    /// readers) gives the bits of the decoded-tile products at batch 1-4,
    /// on rows that do and do not start on a byte, on any executor.
    #[test]
    fn streamed_rows_equal_the_tile_products() {
        if !Tier::Avx512.is_available() {
            return;
        }
        let pool = crate::parallel::ThreadPool::new(2).unwrap();
        for (rows, cols) in SHAPES {
            for (m, sc) in encodings(rows, cols).iter().flat_map(scale_modes) {
                let v = m.values().unwrap();
                for batch in [1, 2, 3, 4, 5, 9, 16] {
                    let x = input(batch, cols);
                    let what = format!("{} {rows}x{cols} batch {batch} {sc:?}", m.encoding());
                    let dec = |r, o: &mut [f32]| super::super::decode_values_as(v, r, o, sc);
                    let plain = on_tiles(rows, cols, &dec, &x);
                    let has = match v {
                        Values::Int4(_) => cols % 2 == 0,
                        Values::Codebook(c) => c.indices().width() == 4 && cols % 2 == 0,
                        Values::F32(_) => false,
                        _ => true,
                    };
                    for exec in [&Sequential as &dyn crate::parallel::ParallelExecutor, &pool] {
                        let got = streamed(v, x.view(), exec, Tier::Avx512, sc);
                        assert_eq!(got.is_some(), has, "{what}");
                        if let Some(got) = got {
                            let eq = plain
                                .iter()
                                .zip(&got)
                                .all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(eq, "{what}");
                        }
                    }
                }
            }
        }
    }
}
