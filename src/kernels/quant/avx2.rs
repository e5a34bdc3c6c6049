//! AVX2 in-register readers: int8, int4, binary, ternary and 4-bit
//! codebook rows (and 2:4 rows of f32, int8 or int4 values) decoded 8 values at
//! a time for the dense f32 kernel's AVX2 driver (`gemv::rows_avx2`), at
//! small batches.
//!
//! Without AVX-512 the weight-only products decoded tiles of f32 and
//! multiplied them with the dense kernel: at batch 1 the decode and the
//! tile's write and re-read cost more than dense f32's whole product
//! (0.2–0.45× on 384 × 384). Here each weight is decoded in registers where
//! it is multiplied — a byte read for 8 int8 codes, 4 bytes for 8 int4
//! codes, 1 byte for 8 binary signs, 2 bytes for 8 ternary codes — to
//! exactly the values of the encoding's row decoder (`fused`: `q − z`,
//! times the scale unless the row's one scale is deferred, `RowScale`), and
//! summed in the dense kernel's AVX2 order. The decoded tiles run the same
//! kernel, so a row's result has the same bits at every batch size.
//!
//! Rows must start on a byte (even int4 and codebook rows, ternary rows of
//! a multiple of 4; binary rows may start anywhere) and a group of int8 /
//! int4 scales must cover whole runs of 8 values; other layouts decode
//! tiles.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2};

use super::lanes::SegParams;
use super::{with_const, RowScale, Values};
use crate::kernels::gemv::{rows_avx2, Rows8};
use crate::kernels::Tier;
use crate::matrix::{CodebookValues, Granularity, PackedBits, QuantParams, NM};
use crate::matrix::{TERNARY_MINUS, TERNARY_PLUS};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// `$e` with the readers' const parameters `Z` (zero-points) and `S`
/// (scale applied per value) set from parameters `$p` and scale `$sc`.
macro_rules! int_codes {
    ($p:expr, $sc:expr, |$z:ident, $s:ident| $e:expr) => {{
        let (z, s) = consts($p, $sc);
        with_const!(z, |$z| with_const!(s, |$s| $e))
    }};
}

/// Largest batch read through these readers: from 4 inputs each decoded
/// vector serves 4 of them (`gemv::rows_avx2`'s 2 × 4 blocks); above 16 a
/// decoded tile (once per call) costs less.
pub(crate) const MAX_BATCH: usize = 16;
/// Largest batch read through the 2:4 reader (its decode costs four
/// operations per 8 columns; above it, decoded tiles).
pub(crate) const NM_MAX_BATCH: usize = 8;

/// Largest batch read through the 2:4 reader for these values: f32 and
/// int4 rows take decoded tiles (whose decoding prefetches the next
/// block's rows) from 5 inputs — 4096², two threads, 6–8 inputs: f32
/// 1.05–1.13× dense f32 against the reader's 0.93–0.97×, int4 group 64
/// 1.05–1.09× against 0.91–0.97× — while int8, whose reader reads a byte a
/// value, keeps it to [`NM_MAX_BATCH`] (1.22–1.32× there).
pub(crate) fn nm_max_batch(values: &Values) -> usize {
    match values {
        Values::Int4(_) | Values::F32(_) => 4,
        _ => NM_MAX_BATCH,
    }
}
/// Weight values per task (a fixed split: it depends on the shape only).
const TASK_ELEMS: usize = 1 << 16;

/// `y = x · Wᵀ` (`[batch, rows]`, deferred row scales not applied) through
/// an AVX2 reader of `values` (`cols` per row), where the tier is AVX2
/// (AVX-512 has its own readers), the batch is at most the reader's
/// ([`max_batch`]) and the layout has a reader; `None` elsewhere.
pub(crate) fn streamed(
    values: &Values,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
    sc: RowScale,
) -> Option<Array2<f32>> {
    let rows = values.layout().rows();
    let cols = values.layout().max_row_len();
    if tier.capped() != Tier::Avx2 || x.nrows() > max_batch(values, cols)? || cols == 0 {
        return None;
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let batch = x.nrows();
    let per = rows_per_task(cols, TASK_ELEMS);
    macro_rules! run {
        ($f:expr) => {{
            let f = $f;
            Some(row_blocks(rows, batch, per, exec, |t, out| {
                // SAFETY: the tier is AVX2 (capped to the CPU); rows
                // `t·per..` exist; `xs` holds whole rows of `cols`.
                unsafe { products(&f, t * per, xs, cols, out) }
            }))
        }};
    }
    match values {
        Values::Int8(v) => {
            let (codes, p) = (Bytes(v.codes()), Params8::new(v.params(), cols, sc)?);
            int_codes!(v.params(), sc, |Z, S| run!(IntRows::<_, Z, S> {
                codes,
                cols,
                p
            }))
        }
        Values::Int4(v) if cols.is_multiple_of(2) => {
            let codes = Nibbles(v.codes().bytes());
            let p = Params8::new(v.params(), cols, sc)?;
            int_codes!(v.params(), sc, |Z, S| run!(IntRows::<_, Z, S> {
                codes,
                cols,
                p
            }))
        }
        // One scale a row, always deferred here (`row_scales`).
        Values::Binary(v) if sc == RowScale::Deferred => {
            let (bytes, table) = (v.signs().bytes(), binary_table());
            run!(BinaryRows { bytes, cols, table })
        }
        Values::Ternary(v) if cols.is_multiple_of(4) && sc == RowScale::Deferred => {
            let (bytes, table) = (v.codes().bytes(), ternary_table());
            run!(TernaryRows { bytes, cols, table })
        }
        Values::Codebook(v) => {
            let bytes = v.indices().bytes();
            run!(Codebook4Rows { v, bytes, cols })
        }
        _ => None,
    }
}

/// The largest batch a dense block of `values` (rows of `cols`) is read at
/// here, `None` without a reader: the layouts [`streamed`] takes (with the
/// row scale deferred wherever a row has one, as `matmul_block` calls it).
/// 4-bit codebooks stop at 2 inputs: their decode (two permutes and a
/// blend) then costs more than a decoded tile.
pub(crate) fn max_batch(values: &Values, cols: usize) -> Option<usize> {
    let limit = match values {
        Values::Codebook(_) => 2,
        _ => MAX_BATCH,
    };
    reads(values, cols).then_some(limit)
}

/// Whether a dense block of `values` (rows of `cols`) has a reader here.
fn reads(values: &Values, cols: usize) -> bool {
    let groups_of_8 = |p: &QuantParams| match p.granularity() {
        Granularity::PerGroup(g) => g.is_multiple_of(8),
        _ => true,
    };
    match values {
        Values::Int8(v) => groups_of_8(v.params()),
        Values::Int4(v) => cols.is_multiple_of(2) && groups_of_8(v.params()),
        Values::Binary(_) => true,
        Values::Ternary(_) => cols.is_multiple_of(4),
        Values::Codebook(v) => v.indices().width() == 4 && cols.is_multiple_of(2),
        Values::F32(_) => false,
    }
}

/// `y = x · Wᵀ` (`[batch, rows]`, deferred row scales not applied) for a
/// 2:4 matrix `[rows, cols]` whose stored values (rows of `cols / 2`) are
/// f32, int8 or int4 (groups of a multiple of 8 stored values), read as whole rows in
/// registers ([`Nm24Rows`]): AVX2, `batch ≤ nm_max_batch`, 2-bit positions
/// and `cols` a multiple of 4; `None` elsewhere.
pub(crate) fn streamed_nm(
    s: &NM,
    values: &Values,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
    sc: RowScale,
) -> Option<Array2<f32>> {
    if tier.capped() != Tier::Avx2 || x.nrows() > nm_max_batch(values) || !reads_nm(s, values, cols)
    {
        return None;
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let batch = x.nrows();
    let per = rows_per_task(cols, TASK_ELEMS);
    let (positions, table) = (s.positions(), nm24_table());
    macro_rules! run {
        ($vals:expr) => {{
            let f = Nm24Rows {
                vals: $vals,
                positions,
                per: cols / 2,
                table,
            };
            Some(row_blocks(rows, batch, per, exec, |t, out| {
                // SAFETY: the tier is AVX2 (capped to the CPU); rows
                // `t·per..` exist; `xs` holds whole rows of `cols`.
                unsafe { products(&f, t * per, xs, cols, out) }
            }))
        }};
    }
    match values {
        Values::F32(v) => run!(Stored4F32(v.data())),
        Values::Int8(v) => {
            let (codes, p) = (Bytes(v.codes()), Params8::new(v.params(), cols / 2, sc)?);
            int_codes!(v.params(), sc, |Z, S| run!(StoredInts::<_, Z, S> {
                codes,
                p
            }))
        }
        Values::Int4(v) => {
            let codes = Nibbles(v.codes().bytes());
            let p = Params8::new(v.params(), cols / 2, sc)?;
            int_codes!(v.params(), sc, |Z, S| run!(StoredInts::<_, Z, S> {
                codes,
                p
            }))
        }
        _ => None,
    }
}

/// Decodes whole rows `row0..` of a 2:4 matrix of `cols` columns into `out`
/// through the reader of [`streamed_nm`] (the values of `decode_nm_rows`,
/// 8 columns a step instead of a scalar placement per value); `false`
/// (nothing written) where there is no reader or no AVX2.
pub(crate) fn decode_nm(
    s: &NM,
    values: &Values,
    cols: usize,
    row0: usize,
    out: &mut [f32],
    sc: RowScale,
) -> bool {
    if Tier::detect() < Tier::Avx2 || !reads_nm(s, values, cols) {
        return false;
    }
    let (positions, table) = (s.positions(), nm24_table());
    macro_rules! go {
        ($vals:expr) => {{
            let f = Nm24Rows {
                vals: $vals,
                positions,
                per: cols / 2,
                table,
            };
            // SAFETY: AVX2 was detected; `out` holds whole rows from `row0`,
            // which exist (the caller's contract: rows of the matrix).
            unsafe { decode_rows8(&f, row0, cols, out) };
            true
        }};
    }
    match values {
        Values::F32(v) => go!(Stored4F32(v.data())),
        Values::Int8(v) => {
            let Some(p) = Params8::new(v.params(), cols / 2, sc) else {
                return false;
            };
            let codes = Bytes(v.codes());
            int_codes!(v.params(), sc, |Z, S| go!(StoredInts::<_, Z, S> {
                codes,
                p
            }))
        }
        Values::Int4(v) => {
            let Some(p) = Params8::new(v.params(), cols / 2, sc) else {
                return false;
            };
            let codes = Nibbles(v.codes().bytes());
            int_codes!(v.params(), sc, |Z, S| go!(StoredInts::<_, Z, S> {
                codes,
                p
            }))
        }
        _ => false,
    }
}

/// Rows `row0..` of `f` (whole rows of `cols`) into `out`: 8 values a
/// step, the tail one by one.
///
/// # Safety
/// AVX2 is available; the rows exist in `f`.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_rows8<F: Rows8>(f: &F, row0: usize, cols: usize, out: &mut [f32]) {
    let full = cols / 8 * 8;
    let rows = out.len() / cols.max(1);
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        // The same row of the next call's block, in flight while this
        // block is multiplied (decoded tiles are decoded, then multiplied).
        f.prefetch_row(row0 + r + rows);
        // SAFETY: this function's contract; `k + 8 ≤ cols`, `t < cols`.
        unsafe {
            // A segment's parameters once per segment (a `k % seg_len`
            // per step was a division: 40 % of decoding 2:4 int4 rows).
            let seg_len = f.seg_len();
            let mut k = 0;
            while k < full {
                let g = f.seg(row0 + r, k);
                let end = if seg_len >= full - k {
                    full
                } else {
                    k + seg_len
                };
                while k < end {
                    _mm256_storeu_ps(o.as_mut_ptr().add(k), f.lanes8(&g, row0 + r, k));
                    k += 8;
                }
            }
            if full < cols {
                let g = f.seg(row0 + r, full);
                for (t, o) in o.iter_mut().enumerate().skip(full) {
                    *o = f.at(&g, row0 + r, t);
                }
            }
        }
    }
}

/// Whether [`streamed_nm`] reads a 2:4 matrix of `cols` columns with these
/// values (at any batch up to [`nm_max_batch`] on AVX2).
pub(crate) fn reads_nm(s: &NM, values: &Values, cols: usize) -> bool {
    let two_four = (s.n(), s.m()) == (2, 4) && s.positions().width() == 2;
    // Groups of stored values: whole runs of 8 columns' 4 values.
    let groups_of_8 = |p: &QuantParams| match p.granularity() {
        Granularity::PerGroup(g) => g.is_multiple_of(8),
        _ => true,
    };
    let vals = match values {
        Values::F32(_) => true,
        Values::Int8(v) => groups_of_8(v.params()),
        Values::Int4(v) => groups_of_8(v.params()),
        _ => false,
    };
    // Whole groups of 4 columns: a row's positions start on a nibble, and a
    // row's int4 codes on a byte.
    two_four && vals && cols.is_multiple_of(4) && cols > 0
}

/// For each byte of 2:4 positions (four 2-bit fields: stored values 0–3
/// of two groups of 4 columns), the stored value each of the 8 columns
/// takes, 4 (a zero lane) where none.
fn nm24_table() -> &'static [[i32; 8]; 256] {
    static T: OnceLock<Box<[[i32; 8]; 256]>> = OnceLock::new();
    T.get_or_init(|| {
        let lanes = |b: usize| {
            let mut l = [4i32; 8];
            for t in 0..4 {
                l[(t / 2) * 4 + ((b >> (2 * t)) & 3)] = t as i32;
            }
            l
        };
        Box::new(std::array::from_fn(lanes))
    })
}

/// 4 stored values of a 2:4 row as f32 (lanes 0–3 of the result).
trait Stored4: Sync {
    type Seg: Copy;
    /// The bytes holding the stored values of row `i` (`per` a row), for
    /// prefetching; empty past the last row.
    fn row_bytes(&self, i: usize, per: usize) -> &[u8];
    /// Stored values per segment (a multiple of 8, or `usize::MAX`).
    fn seg_len(&self) -> usize {
        usize::MAX
    }
    /// # Safety
    /// AVX2 is available; row `i` exists and `j` is below its length.
    unsafe fn seg(&self, i: usize, j: usize) -> Self::Seg;
    /// Stored values `j..j + 4` of row `i` (`per` a row).
    ///
    /// # Safety
    /// AVX2 is available; the values exist; `g` is row `i`'s.
    unsafe fn four(&self, g: &Self::Seg, i: usize, per: usize, j: usize) -> __m128;
    /// Stored value `j` of row `i` (the tail of a row of 4 (mod 8) columns).
    ///
    /// # Safety
    /// The value exists; `g` is its segment's.
    unsafe fn one(&self, g: &Self::Seg, i: usize, per: usize, j: usize) -> f32;
}

struct Stored4F32<'a>(&'a [f32]);

impl Stored4 for Stored4F32<'_> {
    type Seg = ();

    fn row_bytes(&self, i: usize, per: usize) -> &[u8] {
        let row = self.0.get(i * per..(i + 1) * per).unwrap_or(&[]);
        // SAFETY: f32s viewed as their bytes (any bit pattern is a byte).
        unsafe { std::slice::from_raw_parts(row.as_ptr().cast(), std::mem::size_of_val(row)) }
    }

    #[inline(always)]
    unsafe fn seg(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn four(&self, _: &(), i: usize, per: usize, j: usize) -> __m128 {
        // SAFETY: the caller's contract.
        unsafe { _mm_loadu_ps(self.0.as_ptr().add(i * per + j)) }
    }

    #[inline(always)]
    unsafe fn one(&self, _: &(), i: usize, per: usize, j: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { *self.0.get_unchecked(i * per + j) }
    }
}

/// Int codes of a 2:4 matrix's stored values (int8 bytes or int4 nibbles,
/// `C`), with their parameters (groups of a multiple of 8 stored values).
struct StoredInts<'a, C, const Z: bool, const S: bool> {
    codes: C,
    p: Params8<'a>,
}

impl<C: Codes, const Z: bool, const S: bool> Stored4 for StoredInts<'_, C, Z, S> {
    type Seg = IntSeg;

    fn row_bytes(&self, i: usize, per: usize) -> &[u8] {
        self.codes.bytes(i * per, per)
    }

    fn seg_len(&self) -> usize {
        self.p.group
    }

    #[inline(always)]
    unsafe fn seg(&self, i: usize, j: usize) -> IntSeg {
        // SAFETY: the caller's contract.
        unsafe { self.p.seg(i, j) }
    }

    #[inline(always)]
    unsafe fn four(&self, g: &IntSeg, i: usize, per: usize, j: usize) -> __m128 {
        // SAFETY: the caller's contract: codes `i·per + j..+ 4` exist and
        // start on a byte (`per` and `j` even).
        unsafe { _mm256_castps256_ps128(scaled::<Z, S>(self.codes.four(i * per + j), g)) }
    }

    #[inline(always)]
    unsafe fn one(&self, g: &IntSeg, i: usize, per: usize, j: usize) -> f32 {
        // SAFETY: the caller's contract.
        scaled1(unsafe { self.codes.one(i * per + j) }, g)
    }
}

/// A 2:4 matrix read as whole rows, 8 columns (two groups, 4 stored
/// values, one byte of positions) at a time: the 4 values are placed in
/// their columns by one permute whose indices come from a table, zeros
/// elsewhere — the values of `decode_nm_rows`, so the decoded tiles give
/// the same bits.
struct Nm24Rows<'a, V> {
    vals: V,
    positions: &'a PackedBits,
    /// Stored values per row.
    per: usize,
    table: &'static [[i32; 8]; 256],
}

impl<V: Stored4> Rows8 for Nm24Rows<'_, V> {
    const DECODES: bool = true;

    fn prefetch_row(&self, i: usize) {
        prefetch(self.vals.row_bytes(i, self.per));
        let positions = self.positions.bytes();
        let at = (2 * i * self.per / 8).min(positions.len());
        prefetch(&positions[at..(at + self.per / 4).min(positions.len())]);
    }

    type Seg = V::Seg;

    fn seg_len(&self) -> usize {
        // A group of stored values spans twice its columns.
        self.vals.seg_len().saturating_mul(2)
    }

    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> V::Seg {
        // SAFETY: the caller's contract.
        unsafe { self.vals.seg(i, k / 2) }
    }

    #[inline(always)]
    unsafe fn lanes8(&self, g: &V::Seg, i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract: columns `k..k + 8` (k a multiple
        // of 8) hold stored values `k/2..k/2 + 4`, whose 8 bits of
        // positions start at bit `2·(i·per + k/2)`: on a byte, or on a
        // nibble where a row of 4 (mod 8) columns starts mid-byte (then the
        // next byte holds the rest: the positions exist).
        unsafe {
            let j = k / 2;
            let b = bits8(self.positions.bytes(), 2 * (i * self.per + j));
            let idx = _mm256_loadu_si256(self.table.get_unchecked(b as usize).as_ptr().cast());
            let v = _mm256_zextps128_ps256(self.vals.four(g, i, self.per, j));
            _mm256_permutevar8x32_ps(v, idx)
        }
    }

    #[inline(always)]
    unsafe fn at(&self, g: &V::Seg, i: usize, t: usize) -> f32 {
        // Column `t`'s group of 4 holds stored values `j, j + 1`, whose
        // positions say which columns they take (zero elsewhere).
        let j = t / 4 * 2;
        let pos = |j: usize| usize::from(self.positions.get(i * self.per + j));
        // SAFETY: the caller's contract: column `t` of row `i` exists.
        unsafe {
            match t % 4 {
                c if pos(j) == c => self.vals.one(g, i, self.per, j),
                c if pos(j + 1) == c => self.vals.one(g, i, self.per, j + 1),
                _ => 0.0,
            }
        }
    }
}

/// # Safety
/// AVX2 and FMA are available; as [`rows_avx2`].
#[target_feature(enable = "avx2,fma")]
unsafe fn products<F: Rows8>(f: &F, row0: usize, xs: &[f32], cols: usize, out: &mut [f32]) {
    // SAFETY: this function's contract.
    unsafe { rows_avx2(f, row0, xs, cols, out) }
}

/// The parameter sets of uniform rows (`lanes::SegParams`, which finds a
/// segment's set without a division for groups of a power of two), the
/// scale deferred or applied.
struct Params8<'a> {
    p: SegParams<'a>,
    sc: RowScale,
    /// Segment length: the group, or `usize::MAX` for one set a row.
    group: usize,
}

impl<'a> Params8<'a> {
    /// `None` where a group does not cover whole runs of 8.
    fn new(p: &'a QuantParams, cols: usize, sc: RowScale) -> Option<Self> {
        let group = match p.granularity() {
            Granularity::PerGroup(g) if g.is_multiple_of(8) => g,
            Granularity::PerGroup(_) => return None,
            _ => usize::MAX,
        };
        Some(Params8 {
            p: SegParams::new(p, cols),
            sc,
            group,
        })
    }

    /// The state of the segment holding value `k` of row `i`: `s` and `z`
    /// broadcast, and as scalars.
    ///
    /// # Safety
    /// AVX2 is available; `i` is a row and `k` a column.
    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> IntSeg {
        // SAFETY: the caller's contract.
        unsafe {
            let (s, z) = self.p.get(i, k);
            let s = self.sc.of(s);
            IntSeg {
                s: _mm256_set1_ps(s),
                z: _mm256_set1_epi32(z),
                scalar: (s, z),
            }
        }
    }
}

/// A segment's parameters (see [`Params8::seg`]).
#[derive(Clone, Copy)]
struct IntSeg {
    s: __m256,
    z: __m256i,
    scalar: (f32, i32),
}

/// `(q − z)·s` for 8 integer codes, as the row decoder computes it:
/// without the subtraction when no code has a zero-point (`Z`), without
/// the multiplication when the scale is deferred (`S`; `x·1` is `x`).
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
unsafe fn scaled<const Z: bool, const S: bool>(q: __m256i, g: &IntSeg) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let q = if Z { _mm256_sub_epi32(q, g.z) } else { q };
        let v = _mm256_cvtepi32_ps(q);
        if S {
            _mm256_mul_ps(v, g.s)
        } else {
            v
        }
    }
}

/// `(q − z)·s` for one code (the scalar tail).
#[inline(always)]
fn scaled1(q: i32, &IntSeg { scalar: (s, z), .. }: &IntSeg) -> f32 {
    (q - z) as f32 * s
}

/// Whether codes with parameters `p` have zero-points (`Z`) and whether
/// their scale is applied per value (`S`): the readers' const parameters.
fn consts(p: &QuantParams, sc: RowScale) -> (bool, bool) {
    (p.zero_points().is_some(), sc == RowScale::Applied)
}

/// Integer codes in a stream, read 8 or 4 at a time as i32 lanes: int8
/// bytes ([`Bytes`]) or int4 nibbles ([`Nibbles`]).
trait Codes: Sync {
    /// Rows a register block takes at one input without a zero-point or a
    /// scale in the loop (`Rows8::ROWS_AT_ONE_INPUT`): 8 for bytes, whose
    /// reads are a load and a widening; 4 for nibbles, whose unpacking
    /// measured no faster with 8.
    const ROWS_AT_ONE_INPUT: usize;

    /// Codes `n..n + 8`.
    ///
    /// # Safety
    /// AVX2 is available; the codes exist (nibbles: `n` even).
    unsafe fn eight(&self, n: usize) -> __m256i;
    /// Codes `n..n + 4` in lanes 0–3 (the rest zero).
    ///
    /// # Safety
    /// As [`eight`](Self::eight).
    unsafe fn four(&self, n: usize) -> __m256i;
    /// Code `n`.
    ///
    /// # Safety
    /// The code exists.
    unsafe fn one(&self, n: usize) -> i32;
    /// The bytes holding codes `n..n + len` (fewer past the end), for
    /// prefetching.
    fn bytes(&self, n: usize, len: usize) -> &[u8];
}

/// Asks for `bytes` to be brought toward L2, a cache line at a time.
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch reads nothing the program sees, and `line` is
        // in bounds.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
}

/// int8 codes.
struct Bytes<'a>(&'a [i8]);

impl Codes for Bytes<'_> {
    const ROWS_AT_ONE_INPUT: usize = 8;

    fn bytes(&self, n: usize, len: usize) -> &[u8] {
        let l = self.0.len();
        let b = &self.0[n.min(l)..(n + len).min(l)];
        // SAFETY: i8s viewed as u8s (the same size and alignment).
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast(), b.len()) }
    }

    #[inline(always)]
    unsafe fn eight(&self, n: usize) -> __m256i {
        // SAFETY: the caller's contract.
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(self.0.as_ptr().add(n).cast())) }
    }

    #[inline(always)]
    unsafe fn four(&self, n: usize) -> __m256i {
        // SAFETY: the caller's contract.
        unsafe {
            let w = self.0.as_ptr().add(n).cast::<i32>().read_unaligned();
            _mm256_cvtepi8_epi32(_mm_cvtsi32_si128(w))
        }
    }

    #[inline(always)]
    unsafe fn one(&self, n: usize) -> i32 {
        // SAFETY: the caller's contract.
        unsafe { *self.0.get_unchecked(n) as i32 }
    }
}

/// int4 codes: two's complement nibbles, low nibble first.
struct Nibbles<'a>(&'a [u8]);

impl Nibbles<'_> {
    /// Nibble `j` of `w` to the top of lane `j`, then back with its sign.
    ///
    /// # Safety
    /// AVX2 is available.
    #[inline(always)]
    unsafe fn spread(w: i32, shifts: __m256i) -> __m256i {
        // SAFETY: the caller's contract.
        unsafe { _mm256_srai_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(w), shifts), 28) }
    }
}

impl Codes for Nibbles<'_> {
    const ROWS_AT_ONE_INPUT: usize = 4;

    fn bytes(&self, n: usize, len: usize) -> &[u8] {
        let end = (n + len).div_ceil(2).min(self.0.len());
        &self.0[(n / 2).min(end)..end]
    }

    #[inline(always)]
    unsafe fn eight(&self, n: usize) -> __m256i {
        // SAFETY: the caller's contract: codes `n..n + 8` (n even) are the
        // 4 bytes from `n / 2`.
        unsafe {
            let w = self.0.as_ptr().add(n / 2).cast::<i32>().read_unaligned();
            Self::spread(w, _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0))
        }
    }

    #[inline(always)]
    unsafe fn four(&self, n: usize) -> __m256i {
        // SAFETY: the caller's contract: codes `n..n + 4` (n even) are the
        // 2 bytes from `n / 2`; lanes 4–7 shift by 32 (zero), then 28.
        unsafe {
            let w = self
                .0
                .as_ptr()
                .add(n / 2)
                .cast::<u16>()
                .read_unaligned()
                .to_le();
            Self::spread(w as i32, _mm256_setr_epi32(28, 24, 20, 16, 32, 32, 32, 32))
        }
    }

    #[inline(always)]
    unsafe fn one(&self, n: usize) -> i32 {
        // SAFETY: the caller's contract.
        let b = unsafe { *self.0.get_unchecked(n / 2) };
        let q = if n.is_multiple_of(2) {
            (b << 4) as i8 >> 4
        } else {
            b as i8 >> 4
        };
        q as i32
    }
}

/// Int codes (`C`) of uniform rows of `cols`, with their parameters.
struct IntRows<'a, C, const Z: bool, const S: bool> {
    codes: C,
    cols: usize,
    p: Params8<'a>,
}

impl<C: Codes, const Z: bool, const S: bool> Rows8 for IntRows<'_, C, Z, S> {
    const DECODES: bool = true;

    // Without a zero-point or a scale in the loop, a segment holds no
    // register: 8 rows' chains fit (int8 per row at batch 1: the 4 rows'
    // chains bounded it at the latency of a multiply-add).
    const ROWS_AT_ONE_INPUT: usize = if Z || S { 4 } else { C::ROWS_AT_ONE_INPUT };

    type Seg = IntSeg;

    fn seg_len(&self) -> usize {
        self.p.group
    }

    #[inline(always)]
    unsafe fn seg(&self, i: usize, k: usize) -> IntSeg {
        // SAFETY: the caller's contract.
        unsafe { self.p.seg(i, k) }
    }

    #[inline(always)]
    unsafe fn lanes8(&self, g: &IntSeg, i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract: codes `i·cols + k..+ 8` exist (int4
        // rows are even, so they start on a byte).
        unsafe { scaled::<Z, S>(self.codes.eight(i * self.cols + k), g) }
    }

    #[inline(always)]
    unsafe fn at(&self, g: &IntSeg, i: usize, t: usize) -> f32 {
        // SAFETY: the caller's contract.
        scaled1(unsafe { self.codes.one(i * self.cols + t) }, g)
    }
}

/// Bits `n..n + 8` of a bit stream (least significant first): byte `n / 8`
/// and, off a byte boundary, the next one (binary signs of a row that
/// starts mid-byte, 2:4 positions of a row of 4 (mod 8) columns).
///
/// # Safety
/// Bits `n..n + 8` are in `bytes`.
#[inline(always)]
unsafe fn bits8(bytes: &[u8], n: usize) -> u8 {
    // SAFETY: the caller's contract: the byte, and off a boundary the next.
    unsafe {
        let p = bytes.as_ptr().add(n / 8);
        match n % 8 {
            0 => *p,
            s => (p.cast::<u16>().read_unaligned().to_le() >> s) as u8,
        }
    }
}

/// The values of 8 binary signs (bit `j` of the byte: lane `j`), ±1.
fn binary_table() -> &'static [[f32; 8]; 256] {
    static T: OnceLock<Box<[[f32; 8]; 256]>> = OnceLock::new();
    T.get_or_init(|| {
        let lanes = |b: usize| std::array::from_fn(|j| if (b >> j) & 1 == 1 { 1.0 } else { -1.0 });
        Box::new(std::array::from_fn(lanes))
    })
}

/// The values of 4 ternary codes (bits `2j..2j + 2` of the byte: lane `j`),
/// ±1 and 0 (the row decoder's values with the scale deferred).
fn ternary_table() -> &'static [[f32; 4]; 256] {
    static T: OnceLock<Box<[[f32; 4]; 256]>> = OnceLock::new();
    T.get_or_init(|| {
        let value = |c: u16| {
            if c == TERNARY_PLUS {
                1.0
            } else if c == TERNARY_MINUS {
                -1.0
            } else {
                0.0
            }
        };
        let lanes = |b: usize| std::array::from_fn(|j| value(((b >> (2 * j)) & 3) as u16));
        Box::new(std::array::from_fn(lanes))
    })
}

/// 4-bit codebook indices (low nibble first) of even rows: each index
/// picks its centroid from the row's book, 16 centroids in two registers
/// (a permute of each and a blend).
struct Codebook4Rows<'a> {
    v: &'a CodebookValues,
    bytes: &'a [u8],
    cols: usize,
}

impl Rows8 for Codebook4Rows<'_> {
    const DECODES: bool = true;

    /// The row's book: centroids 0–7 and 8–15 in registers, and its slice.
    type Seg = (__m256, __m256, usize);

    #[inline(always)]
    unsafe fn seg(&self, i: usize, _: usize) -> Self::Seg {
        let book = self.v.row_codebook(i);
        let c = |t: usize| book.get(t).copied().unwrap_or(0.0);
        // SAFETY: AVX2 is available (the caller's contract).
        unsafe {
            let lo = _mm256_setr_ps(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7));
            let hi = _mm256_setr_ps(c(8), c(9), c(10), c(11), c(12), c(13), c(14), c(15));
            (lo, hi, i)
        }
    }

    #[inline(always)]
    unsafe fn lanes8(&self, &(lo, hi, _): &Self::Seg, i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract: indices `k..k + 8` of the (even)
        // row are the 4 bytes from `(i·cols + k) / 2`.
        unsafe {
            let p = self.bytes.as_ptr().add((i * self.cols + k) / 2);
            let w = _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
            let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
            let idx = _mm256_and_si256(_mm256_srlv_epi32(w, shifts), _mm256_set1_epi32(15));
            let high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
            _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(lo, idx),
                _mm256_permutevar8x32_ps(hi, idx),
                high,
            )
        }
    }

    #[inline(always)]
    unsafe fn at(&self, &(_, _, row): &Self::Seg, i: usize, t: usize) -> f32 {
        let n = i * self.cols + t;
        // SAFETY: the caller's contract.
        let b = unsafe { *self.bytes.get_unchecked(n / 2) };
        let ix = if n.is_multiple_of(2) { b & 15 } else { b >> 4 };
        self.v.row_codebook(row)[ix as usize]
    }
}

/// Binary signs, the row scale deferred: 8 signs are one byte (two, shifted,
/// where a row does not start on a byte), and a byte's 8 values one load
/// from a table.
struct BinaryRows<'a> {
    bytes: &'a [u8],
    cols: usize,
    table: &'static [[f32; 8]; 256],
}

impl Rows8 for BinaryRows<'_> {
    const DECODES: bool = true;

    type Seg = ();

    #[inline(always)]
    unsafe fn seg(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn lanes8(&self, _: &(), i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract: signs `k..k + 8` of row `i` are
        // bits `n..n + 8` of the stream, in its byte `n / 8` and, off a byte
        // boundary, the next one.
        unsafe {
            let b = bits8(self.bytes, i * self.cols + k);
            _mm256_loadu_ps(self.table.get_unchecked(b as usize).as_ptr())
        }
    }

    #[inline(always)]
    unsafe fn at(&self, _: &(), i: usize, t: usize) -> f32 {
        let n = i * self.cols + t;
        // SAFETY: the caller's contract.
        let b = unsafe { *self.bytes.get_unchecked(n / 8) } >> (n % 8);
        self.table[(b & 1) as usize][0]
    }
}

/// Ternary codes of rows of a multiple of 4 values, the row scale
/// deferred: 8 codes are two bytes, each byte's 4 values a 16-byte load
/// from a table.
struct TernaryRows<'a> {
    bytes: &'a [u8],
    cols: usize,
    table: &'static [[f32; 4]; 256],
}

impl Rows8 for TernaryRows<'_> {
    const DECODES: bool = true;

    type Seg = ();

    #[inline(always)]
    unsafe fn seg(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn lanes8(&self, _: &(), i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract: codes `k..k + 8` of row `i` are
        // the two bytes from `(i·cols + k) / 4` (rows and runs start on a
        // byte).
        unsafe {
            let p = self.bytes.as_ptr().add((i * self.cols + k) / 4);
            let lo = _mm_loadu_ps(self.table.get_unchecked(*p as usize).as_ptr());
            let hi = _mm_loadu_ps(self.table.get_unchecked(*p.add(1) as usize).as_ptr());
            _mm256_set_m128(hi, lo)
        }
    }

    #[inline(always)]
    unsafe fn at(&self, _: &(), i: usize, t: usize) -> f32 {
        let n = i * self.cols + t;
        // SAFETY: the caller's contract.
        let b = unsafe { *self.bytes.get_unchecked(n / 4) };
        self.table[b as usize][n % 4]
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};

    use super::*;
    use crate::compression::sharing::KMeans;
    use crate::kernels::gemv;
    use crate::matrix::{CompressedMatrix, Structure};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::quantization::{Binary, IntQuantizer, Quantizer, Ternary};

    /// Rows of `v` decoded by the row decoders with the scale `sc`.
    fn decoded(v: &Values, out: &mut [f32], sc: RowScale) {
        match v {
            Values::Int8(v) => super::super::decode_rows(v, 0, out, sc),
            Values::Int4(v) => super::super::decode_rows(v, 0, out, sc),
            Values::Binary(v) => super::super::decode_rows(v, 0, out, sc),
            Values::Ternary(v) => super::super::decode_rows(v, 0, out, sc),
            Values::Codebook(v) => super::super::decode_rows(v, 0, out, sc),
            Values::F32(_) => unreachable!("encoded values only"),
        }
    }

    /// The 2:4 reader gives the dense AVX2 kernel on `decode_nm_rows`' full
    /// rows (the decoded tiles' path) bit for bit, f32 and int8 values;
    /// other values, widths and shapes give `None`.
    #[test]
    fn nm_reader_gives_the_bits_of_the_decoded_rows() {
        use crate::pass::Pruner;
        use crate::pruning::NMPruner;
        if Tier::detect() < Tier::Avx2 {
            return;
        }
        let pool = ThreadPool::new(2).unwrap();
        for (rows, cols) in [(21, 64), (9, 104), (5, 36), (7, 12), (6, 300)] {
            let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
                (((i * 37 + j * 11) % 29) as f32 - 14.0) / 9.0
            });
            let d = CompressedMatrix::from_dense(w.view()).unwrap();
            let nm = NMPruner::params(2, 4).check().unwrap().prune(&d).unwrap();
            let int8 = |sym: bool| {
                let p = IntQuantizer::params(8).per_row().symmetric(sym);
                p.check().unwrap().quantize(&nm).unwrap()
            };
            let int4 = |g: Option<usize>| {
                let p = IntQuantizer::params(4);
                let p = match g {
                    Some(g) => p.per_group(g),
                    None => p.per_row(),
                };
                p.check().unwrap().quantize(&nm).unwrap()
            };
            let forms = [
                (nm.clone(), true),
                (int8(true), true),
                (int8(false), true),
                (int4(None), true),
                (int4(Some(8)), true),
                (int4(Some(16)), true),
                (int4(Some(6)), false),
                (Ternary.quantize(&nm).unwrap(), false),
            ];
            let x = Array2::from_shape_fn((NM_MAX_BATCH, cols), |(b, j)| {
                ((b * 13 + j * 7) % 19) as f32 / 5.0 - 1.8
            });
            for (m, reads) in &forms {
                let (Structure::NM(st), Some(v)) = (m.structure(), m.values()) else {
                    unreachable!("2:4 matrices")
                };
                let sc = if super::super::row_scales(v).is_some() {
                    RowScale::Deferred
                } else {
                    RowScale::Applied
                };
                let mut dec = vec![0.0f32; rows * cols];
                super::super::decode_nm_rows(st, v, 0, &mut dec, sc);
                let reads = *reads && cols % 4 == 0;
                assert_eq!(reads_nm(st, v, cols), reads, "{} {cols}", m.encoding());
                let mut fast = vec![f32::NAN; (rows - 1) * cols];
                assert_eq!(decode_nm(st, v, cols, 1, &mut fast, sc), reads);
                if reads {
                    assert_eq!(fast, dec[cols..], "{} {cols}: decode_nm", m.encoding());
                }
                for batch in 1..=NM_MAX_BATCH {
                    let xb = x.slice(s![..batch, ..]);
                    let want = gemv::dense(&dec, rows, cols, xb, &Sequential, Tier::Avx2);
                    for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                        let got = streamed_nm(st, v, (rows, cols), xb, exec, Tier::Avx2, sc);
                        assert_eq!(got.is_some(), reads && batch <= nm_max_batch(v));
                        if let Some(got) = got {
                            assert_eq!(got, want, "{} {rows}x{cols} batch {batch}", m.encoding());
                        }
                    }
                }
            }
        }
    }

    /// Each reader gives the dense AVX2 kernel on the decoded rows (the
    /// decoded tiles' path) bit for bit, at every batch it takes, on every
    /// executor; layouts without a reader and larger batches give `None`.
    #[test]
    fn readers_give_the_bits_of_the_decoded_rows() {
        if Tier::detect() < Tier::Avx2 {
            return;
        }
        let pool = ThreadPool::new(3).unwrap();
        for (rows, cols) in [(37, 64), (9, 100), (5, 300), (6, 36), (3, 24)] {
            let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
                (((i * 37 + j * 11) % 29) as f32 - 14.0) / 9.0
            });
            let d = CompressedMatrix::from_dense(w.view()).unwrap();
            let int = |bits: u8, g: Option<usize>, sym: bool| {
                let p = IntQuantizer::params(bits).symmetric(sym);
                let p = match g {
                    Some(g) => p.per_group(g),
                    None => p.per_row(),
                };
                p.check().unwrap().quantize(&d).unwrap()
            };
            let book = |k: usize, per_row: bool| {
                let p = KMeans::params(k);
                let p = if per_row { p.per_row() } else { p };
                p.check().unwrap().quantize(&d).unwrap()
            };
            // (matrix, whether it has a reader)
            let forms = [
                (int(8, None, true), true),
                (int(8, None, false), true),
                (int(8, Some(8), true), true),
                (int(8, Some(12), true), false),
                (int(4, None, true), true),
                (int(4, Some(16), false), true),
                (int(4, Some(6), true), false),
                (Binary.quantize(&d).unwrap(), true),
                (Ternary.quantize(&d).unwrap(), cols % 4 == 0),
                (book(16, false), true),
                (book(12, true), true),
                (book(8, false), false),
            ];
            let x = Array2::from_shape_fn((MAX_BATCH + 1, cols), |(b, j)| {
                ((b * 31 + j * 17) % 23) as f32 / 7.0 - 1.5
            });
            for (m, reads) in &forms {
                let v = m.values().unwrap();
                let sc = if super::super::row_scales(v).is_some() {
                    RowScale::Deferred
                } else {
                    RowScale::Applied
                };
                let mut dec = vec![0.0f32; rows * cols];
                decoded(v, &mut dec, sc);
                let what = format!("{} {:?} {rows}x{cols}", m.encoding(), sc);
                for batch in 1..=MAX_BATCH {
                    let xb = x.slice(s![..batch, ..]);
                    let want = gemv::dense(&dec, rows, cols, xb, &Sequential, Tier::Avx2);
                    for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                        let got = streamed(v, xb, exec, Tier::Avx2, sc);
                        let limit = max_batch(v, cols);
                        assert_eq!(limit.is_some(), *reads, "{what}");
                        assert_eq!(got.is_some(), batch <= limit.unwrap_or(0), "{what}");
                        if let Some(got) = got {
                            assert_eq!(got, want, "{what} batch {batch}");
                        }
                    }
                }
                assert!(streamed(v, x.view(), &Sequential, Tier::Avx2, sc).is_none());
                assert!(
                    streamed(v, x.slice(s![..1, ..]), &Sequential, Tier::Portable, sc).is_none()
                );
            }
        }
    }
}
