//! Products that stream W (`y = x · Wᵀ`): W is read row by row, never
//! packed, in blocks of [`R`] rows that read each input vector once per
//! block — at batch 1 to a few, once from memory.
//!
//! Two users share the one driver:
//! * dense f32 ([`dense`]), for [`dense_matmul`](super::dense_matmul) at
//!   every batch size (a packing GEMM packs all of W on every call, which at
//!   batch 1 costs more than the product; large batches pass over a task's
//!   rows once per tile of inputs, reusing them from L2, and measured as
//!   fast as `matrixmultiply` at 384² and faster at 4096²);
//! * the weight-only encodings at batch ≤ [`QUANT_MAX_BATCH`] ([`quant`]),
//!   through a [`RowReader`] per encoding that decodes 16 weights in
//!   registers to exactly the values of the tiles' decoder (the integer
//!   values `q − z` where a row has one scale, which the caller applies
//!   once per output: `quant::RowScale`), with its per-row or per-group
//!   parameters set up once per segment.
//!
//! The order, per (input row, weight row) pair: one 16-lane accumulator,
//! `acc ← fma(w[k..k+16], x[k..k+16], acc)` for `k` ascending (the last
//! partial block masked), then `_mm512_reduce_add_ps` — the order of the
//! decoded-tile products of [`tile`](super::tile), so a quantized row gives
//! the same bits here as at any larger batch. Rows never depend on the batch
//! size, the block or the task, and tasks are fixed blocks of rows (from the
//! shape only): results are bit-identical on every executor.
//!
//! Tiers: AVX-512 (the order above), AVX2 + FMA (8-lane accumulator, the
//! same pattern) and portable (16 plain lanes, summed by a fixed tree) for
//! dense f32 and the encodings' readers (AVX2: `quant::avx2`, through
//! [`rows_avx2`]; portable: decoded tiles). Each tier is deterministic; the
//! tiers round differently.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{Array2, ArrayView2};

#[cfg(target_arch = "x86_64")]
use super::lane_sums::reduce_block;
use super::Tier;
use crate::parallel::{row_blocks, ParallelExecutor};

/// Weight rows per register block (`by_block_shape!` spells it out).
const R: usize = 4;
/// Input rows per register block (AVX-512: 4 × 4 accumulators, 4 inputs
/// and one weight vector in 32 registers).
const C: usize = 4;
/// Weight bytes per task (a fixed split: it depends on the shape only).
const TASK_BYTES: usize = 1 << 18;

/// Largest batch the encodings' readers take here (above it, tiles decoded
/// once per call and reused across the batch are cheaper).
pub(crate) const QUANT_MAX_BATCH: usize = 16;

/// Input rows per pass over a task's weight rows: about [`X_TILE_BYTES`]
/// of inputs (a multiple of [`C`]), so that large batches reuse W's rows
/// from L2 without streaming every input row past each block of W.
fn batch_tile(cols: usize) -> usize {
    (X_TILE_BYTES / (4 * cols.max(1))).max(1).div_ceil(C) * C
}

/// Runs `$body` for a product's register blocks in their fixed order:
/// batch tiles of [`batch_tile`] inputs; in each, rows in blocks of [`R`]
/// (single rows at the end), inputs in blocks of up to `$c`, binding `$i`
/// (first row), `$rr` (rows), `$b0` (first input) and `$nc` (inputs). A
/// macro: the loops stay those of its caller (an iterator's state cost the
/// AVX-512 driver registers, a closure would lose its target features).
#[cfg(target_arch = "x86_64")]
macro_rules! for_blocks {
    ($nr:expr, $batch:expr, $cols:expr, $c:expr, |$i:ident, $rr:ident, $b0:ident, $nc:ident| $body:block) => {{
        let (nr, batch) = ($nr, $batch);
        let bt = batch_tile($cols);
        for t0 in (0..batch).step_by(bt) {
            let t1 = (t0 + bt).min(batch);
            let mut $i = 0;
            while $i < nr {
                let $rr = if $i + R <= nr { R } else { 1 };
                let mut $b0 = t0;
                while $b0 < t1 {
                    let $nc = (t1 - $b0).min($c);
                    $body
                    $b0 += $nc;
                }
                $i += $rr;
            }
        }
    }};
}

/// Calls `$go!(rows, inputs)` with the literal shape of a register block of
/// `$rr` rows ([`R`] or 1) × `$nc` inputs (1 to [`C`]): the const generics
/// of the block kernels that stream rows (here and in `nm24`).
#[cfg(target_arch = "x86_64")]
macro_rules! by_block_shape {
    ($rr:expr, $nc:expr, $go:ident) => {
        match ($rr, $nc) {
            (4, 1) => $go!(4, 1),
            (4, 2) => $go!(4, 2),
            (4, 3) => $go!(4, 3),
            (4, _) => $go!(4, 4),
            (_, 1) => $go!(1, 1),
            (_, 2) => $go!(1, 2),
            (_, 3) => $go!(1, 3),
            _ => $go!(1, 4),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use by_block_shape;

/// Smallest batch whose inputs [`dense`] copies to a cache line first.
const ALIGN_X_FROM: usize = 16;

/// Input bytes per pass over a task's weight rows.
const X_TILE_BYTES: usize = 1 << 18;

/// Rows per task for rows of `row_bytes`: a multiple of [`R`].
fn rows_per_task(row_bytes: usize) -> usize {
    (TASK_BYTES / row_bytes.max(1)).max(1).div_ceil(R) * R
}

/// `y = x · Wᵀ` for a dense row-major `w` of `rows × cols` (`w.len() ==
/// rows·cols`), `x` with `cols` columns, on the best path of `tier`
/// (capped to the CPU).
pub(crate) fn dense(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Array2<f32> {
    dense_scaled(w, rows, cols, None, x, exec, tier)
}

/// [`dense`], each output of row `i` then multiplied by `row_scales[i]`
/// (where given): `y[b, i] = (W row i · x row b)·sᵢ`, the scale applied in
/// the task as the outputs are stored (a pass over `y` afterwards cost
/// 12–14 % at 100 × 300, batch 8).
pub(crate) fn dense_scaled(
    w: &[f32],
    rows: usize,
    cols: usize,
    row_scales: Option<&[f32]>,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Array2<f32> {
    debug_assert_eq!(w.len(), rows * cols);
    debug_assert!(row_scales.is_none_or(|s| s.len() == rows));
    debug_assert_eq!(x.ncols(), cols);
    let tier = tier.capped();
    let batch = x.nrows();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    // From 16 inputs each input row is read once per block of W's rows:
    // a copy on a cache line pays for itself (384 × 384, batch 64, one
    // thread: 100–102 → 90–92 µs; at 2–8 inputs the copy cost as much).
    let aligned;
    let xs = if batch >= ALIGN_X_FROM && !crate::matrix::aligned::starts_line(xs) {
        aligned = crate::matrix::aligned::from_slice(xs);
        &aligned[..]
    } else {
        xs
    };
    let per = rows_per_task(cols * 4);
    if cols == 0 {
        return Array2::zeros((batch, rows));
    }
    row_blocks(rows, batch, per, exec, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch.max(1);
        let wb = &w[r0 * cols..(r0 + nr) * cols];
        match tier {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 | Tier::Avx512Vnni => {
                let scales = row_scales.map(|s| &s[r0..r0 + nr]);
                let f = F32Rows {
                    w: wb,
                    cols,
                    scales,
                };
                // SAFETY: the tier is capped to the CPU (AVX-512 F/BW/VL,
                // FMA); `wb` holds rows `0..nr` of `cols`, `xs` whole rows.
                unsafe { products_avx512(&f, 0, xs, cols, out) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => {
                let scales = row_scales.map(|s| &s[r0..r0 + nr]);
                // SAFETY: the tier is capped to the CPU (AVX2 + FMA);
                // `scales` holds a factor for each of the block's rows.
                unsafe { dense_avx2(wb, scales, xs, cols, out) };
                return;
            }
            _ => dense_portable(wb, xs, cols, out),
        }
        // (AVX-512 and AVX2 apply the scales as they store the outputs: a
        // pass of `batch` values a row cost 5 % of AVX2's batch 2.) At one
        // input the rows are single values: zipped, so that it vectorizes
        // (chunks of one cost 6 % of a 384 × 384 product).
        if let Some(s) = row_scales {
            let s = &s[r0..r0 + nr];
            if batch == 1 {
                out.iter_mut().zip(s).for_each(|(v, &s)| *v *= s);
            } else {
                for (o, &s) in out.chunks_exact_mut(batch).zip(s) {
                    o.iter_mut().for_each(|v| *v *= s);
                }
            }
        }
    })
}

// ------------------------------------------------------------------ portable

/// Lanes of the portable accumulators.
const L: usize = 16;

/// `out[r·batch + b] = w row r · x row b`: 16 plain lanes per pair, `k`
/// ascending, summed by a fixed tree (no fused multiply-add, so every
/// compiler tier gives the same bits).
fn dense_portable(w: &[f32], xs: &[f32], cols: usize, out: &mut [f32]) {
    let batch = xs.len() / cols;
    for (wr, o) in w.chunks_exact(cols).zip(out.chunks_exact_mut(batch)) {
        for (o, xr) in o.iter_mut().zip(xs.chunks_exact(cols)) {
            *o = dot_portable(wr, xr);
        }
    }
}

/// One pair in the portable order.
fn dot_portable(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    let (cw, cx) = (w.chunks_exact(L), x.chunks_exact(L));
    let (tw, tx) = (cw.remainder(), cx.remainder());
    for (a, b) in cw.zip(cx) {
        for l in 0..L {
            acc[l] += a[l] * b[l];
        }
    }
    for l in 0..tw.len() {
        acc[l] += tw[l] * tx[l];
    }
    let mut h = L / 2;
    while h > 0 {
        for l in 0..h {
            acc[l] += acc[l + h];
        }
        h /= 2;
    }
    acc[0]
}

// ---------------------------------------------------------------------- AVX2

/// A weight matrix read 8 values at a time in registers, for the AVX2
/// driver [`rows_avx2`]: dense f32 rows, or an encoding's codes decoded in
/// registers (`quant::avx2`) to exactly the values of its row decoder.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Rows8: Sync {
    /// Per-segment state (a broadcast scale and zero-point, a table).
    type Seg: Copy;

    /// Whether a value costs more than a load to read (a decode): such
    /// readers take register blocks of 2 rows × 4 inputs from 4 inputs up,
    /// so that each decoded value serves 4 inputs ([`rows_avx2`]).
    const DECODES: bool = false;

    /// The factor row `i`'s outputs are multiplied by as they are stored
    /// (a deferred row scale; one multiply after the sum, so the bits are
    /// those of scaling afterwards), if any.
    #[inline(always)]
    fn out_scale(&self, _i: usize) -> Option<f32> {
        None
    }

    /// Asks for row `i` to be brought toward the cache (no-op by default;
    /// `i` may be past the last row: nothing is read).
    #[inline(always)]
    fn prefetch_row(&self, _i: usize) {}

    /// Rows a register block takes at one input: 8 where a read is cheap
    /// and the segment state fits beside 8 accumulators (int8 codes), 4
    /// otherwise (the default; dense f32, reading from L2, and the
    /// table readers measured no faster with 8).
    const ROWS_AT_ONE_INPUT: usize = 4;

    /// Values per segment: a multiple of 8 (a group), or `usize::MAX` (the
    /// whole row: the default). Segments start at multiples of it.
    fn seg_len(&self) -> usize {
        usize::MAX
    }

    /// The state of the segment holding value `k` of row `i`.
    ///
    /// # Safety
    /// AVX2 is available; row `i` exists and `k` is below its length.
    unsafe fn seg(&self, i: usize, k: usize) -> Self::Seg;

    /// Values `k..k + 8` of row `i`, in segment `s`.
    ///
    /// # Safety
    /// AVX2 and FMA are available; row `i` exists, `k + 8` is at most its
    /// length and `s` is the state of the segment holding `k..k + 8`.
    unsafe fn lanes8(&self, s: &Self::Seg, i: usize, k: usize) -> __m256;

    /// Value `t` of row `i`, in segment `s` (the scalar tail).
    ///
    /// # Safety
    /// Row `i` exists, `t` is below its length and `s` is its segment's.
    unsafe fn at(&self, s: &Self::Seg, i: usize, t: usize) -> f32;
}

/// Dense f32 rows ([`F32Rows`]) read 8 at a time.
#[cfg(target_arch = "x86_64")]
impl Rows8 for F32Rows<'_> {
    #[inline(always)]
    fn out_scale(&self, i: usize) -> Option<f32> {
        self.scales.map(|s| s[i])
    }

    type Seg = ();

    #[inline(always)]
    unsafe fn seg(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn lanes8(&self, _: &(), i: usize, k: usize) -> __m256 {
        // SAFETY: the caller's contract (the row holds `k..k + 8`).
        unsafe { _mm256_loadu_ps(self.w.as_ptr().add(i * self.cols + k)) }
    }

    #[inline(always)]
    unsafe fn at(&self, _: &(), i: usize, t: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { *self.w.get_unchecked(i * self.cols + t) }
    }
}

/// The AVX2 twin for dense f32 ([`rows_avx2`] on the rows of `w`), each
/// row's outputs multiplied by its factor in `scales` (if given) as they
/// are stored.
///
/// # Safety
/// AVX2 and FMA are available; `w` and `xs` hold whole rows of `cols > 0`
/// values, `scales` (if given) one factor per row of `w`, and `out` holds
/// `w rows × xs rows` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dense_avx2(
    w: &[f32],
    scales: Option<&[f32]>,
    xs: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    // SAFETY: this function's contract.
    unsafe { rows_avx2(&F32Rows { w, cols, scales }, 0, xs, cols, out) }
}

/// `out[r·batch + b] = W row (row0 + r) · x row b`, W read through `f`:
/// blocks of [`R`] rows × up to 2 inputs (8 accumulators of 8 lanes in the
/// 16 registers; readers that decode take 2 × 4 blocks from 4 inputs,
/// [`wide_avx2`]), `k` ascending, a scalar tail added to lane 0 in order,
/// then a fixed horizontal sum. No features of its own: inlined into each
/// reader's AVX2 driver.
///
/// # Safety
/// AVX2 and FMA are available; rows `row0..row0 + out.len() / batch` exist
/// in `f`; `xs` holds whole rows of `cols > 0` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn rows_avx2<F: Rows8>(
    f: &F,
    row0: usize,
    xs: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let batch = xs.len() / cols;
    let nr = out.len() / batch;
    if F::DECODES && batch >= 4 {
        // SAFETY: this function's contract.
        return unsafe { wide_avx2(f, row0, xs, cols, out) };
    }
    if batch == 1 {
        // SAFETY: this function's contract.
        return unsafe { one_input_avx2(f, row0, xs, cols, out) };
    }
    for_blocks!(nr, batch, cols, 2, |i, rr, b0, nc| {
        let at = (row0 + i, b0, batch);
        // SAFETY: this function's contract; rows `i..i + rr` and inputs
        // `b0..b0 + nc` exist.
        unsafe {
            match (rr, nc) {
                (R, 2) => block_avx2::<F, R, 2>(f, xs, cols, at, &mut out[i * batch..]),
                (R, _) => block_avx2::<F, R, 1>(f, xs, cols, at, &mut out[i * batch..]),
                (_, 2) => block_avx2::<F, 1, 2>(f, xs, cols, at, &mut out[i * batch..]),
                _ => block_avx2::<F, 1, 1>(f, xs, cols, at, &mut out[i * batch..]),
            }
        }
    });
}

/// [`rows_avx2`] at one input: blocks of 8 rows where the reader allows
/// ([`Rows8::ROWS_AT_ONE_INPUT`]), so that 8 multiply-add chains are in
/// flight (int8's 4 chains were bound by a multiply-add's latency), then 4
/// and 1. A row's accumulator and order are those of every other block, so the
/// bits do not change.
///
/// # Safety
/// As [`rows_avx2`], with one input row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn one_input_avx2<F: Rows8>(f: &F, row0: usize, xs: &[f32], cols: usize, out: &mut [f32]) {
    let nr = out.len();
    let mut i = 0;
    // SAFETY: this function's contract; rows `i..i + step` exist.
    unsafe {
        while i < nr {
            let (at, o) = ((row0 + i, 0, 1), &mut out[i..]);
            let step = if i + 8 <= nr && F::ROWS_AT_ONE_INPUT >= 8 {
                block_avx2::<F, 8, 1>(f, xs, cols, at, o);
                8
            } else if i + R <= nr {
                block_avx2::<F, R, 1>(f, xs, cols, at, o);
                R
            } else {
                block_avx2::<F, 1, 1>(f, xs, cols, at, o);
                1
            };
            i += step;
        }
    }
}

/// [`rows_avx2`] for readers that decode, from 4 inputs: for each group of
/// [`R`] rows, inputs in blocks of 4 (2 rows × 4 inputs: a decoded vector
/// serves 4 multiply-adds, against 2 in the 4 × 2 blocks), then 2 and 1 (4
/// rows). Blocks of 1 row × 8 inputs, which reuse a decoded vector 8 times,
/// measured slower: every multiply-add then loads its input. The
/// accumulators and their order are those of every other block, so the
/// bits do not change.
///
/// # Safety
/// As [`rows_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn wide_avx2<F: Rows8>(f: &F, row0: usize, xs: &[f32], cols: usize, out: &mut [f32]) {
    let batch = xs.len() / cols;
    let nr = out.len() / batch;
    let mut i = 0;
    while i < nr {
        let group = if i + R <= nr { R } else { 1 };
        let mut b0 = 0;
        while b0 < batch {
            let nc = (batch - b0).min(4);
            let nc = if nc == 3 { 2 } else { nc };
            // SAFETY: this function's contract; rows `i..i + group` and
            // inputs `b0..b0 + nc` exist.
            unsafe {
                macro_rules! each {
                    ($rr:literal, $cc:literal) => {{
                        for r in (0..group).step_by($rr) {
                            let at = (row0 + i + r, b0, batch);
                            let o = &mut out[(i + r) * batch..];
                            block_avx2::<F, $rr, $cc>(f, xs, cols, at, o);
                        }
                    }};
                }
                match (group, nc) {
                    (R, 4) => each!(2, 4),
                    (_, 4) => each!(1, 4),
                    (R, 2) => each!(4, 2),
                    (_, 2) => each!(1, 2),
                    (R, _) => each!(4, 1),
                    _ => each!(1, 1),
                }
            }
            b0 += nc;
        }
        i += group;
    }
}

/// One AVX2 register block: rows `i..i + RR` of `f` × inputs `b0..b0 +
/// CC` (`(i, b0, batch)`), into `out[r·batch + b0 + c]`.
///
/// # Safety
/// As [`rows_avx2`]; the rows and inputs exist.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn block_avx2<F: Rows8, const RR: usize, const CC: usize>(
    f: &F,
    xs: &[f32],
    cols: usize,
    (i, b0, batch): (usize, usize, usize),
    out: &mut [f32],
) {
    let xp: [*const f32; CC] = std::array::from_fn(|c| xs[(b0 + c) * cols..].as_ptr());
    // SAFETY: AVX2 and FMA are available (the contract); `k + 8 ≤ cols`
    // inside the loop; every input pointer starts a row of `cols` values.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); CC]; RR];
        let (full, seg_len) = (cols / 8 * 8, f.seg_len());
        let mut k = 0;
        while k < full {
            let end = if seg_len >= full - k {
                full
            } else {
                k + seg_len
            };
            // A plain loop (a closure would not inline into this function).
            let mut segs = [f.seg(i, k); RR];
            for r in 1..RR {
                segs[r] = f.seg(i + r, k);
            }
            while k < end {
                let xv: [__m256; CC] = std::array::from_fn(|c| _mm256_loadu_ps(xp[c].add(k)));
                for r in 0..RR {
                    let wv = f.lanes8(&segs[r], i + r, k);
                    for c in 0..CC {
                        acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
                    }
                }
                k += 8;
            }
        }
        if k == cols && RR * CC > 1 {
            // No tail: the pairs' horizontal sums eight at a time.
            let mut v = [_mm256_setzero_ps(); 8];
            for r in 0..RR {
                for c in 0..CC {
                    v[r * CC + c] = acc[r][c];
                }
            }
            let s = hsums8(v);
            for r in 0..RR {
                let f = f.out_scale(i + r);
                for c in 0..CC {
                    let v = s[r * CC + c];
                    out[r * batch + b0 + c] = f.map_or(v, |f| v * f);
                }
            }
            return;
        }
        for r in 0..RR {
            let seg = (k < cols).then(|| f.seg(i + r, k));
            for c in 0..CC {
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][c]);
                if let Some(seg) = &seg {
                    for t in k..cols {
                        lanes[0] = f.at(seg, i + r, t).mul_add(*xp[c].add(t), lanes[0]);
                    }
                }
                let s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
                    + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
                out[r * batch + b0 + c] = f.out_scale(i + r).map_or(s, |f| s * f);
            }
        }
    }
}

/// The horizontal sums of 8 accumulators, each in the scalar order of
/// [`block_avx2`]: `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`,
/// computed for all eight at once (21 vector operations instead of a store
/// and 7 dependent scalar adds each).
///
/// # Safety
/// AVX is available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn hsums8(v: [__m256; 8]) -> [f32; 8] {
    // SAFETY: the caller's contract (AVX).
    unsafe {
        // (l0 + l4, l1 + l5, l2 + l6, l3 + l7) of `a` (low half) and `b`.
        let halves = |a, b| {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        };
        // (p0 + p2, p1 + p3, q0 + q2, q1 + q3) in each half.
        let pairs = |p, q| {
            _mm256_add_ps(
                _mm256_shuffle_ps::<0b01_00_01_00>(p, q),
                _mm256_shuffle_ps::<0b11_10_11_10>(p, q),
            )
        };
        let w1 = pairs(halves(v[0], v[1]), halves(v[2], v[3]));
        let w2 = pairs(halves(v[4], v[5]), halves(v[6], v[7]));
        let z = _mm256_add_ps(
            _mm256_shuffle_ps::<0b10_00_10_00>(w1, w2),
            _mm256_shuffle_ps::<0b11_01_11_01>(w1, w2),
        );
        let mut o = [0.0f32; 8];
        _mm256_storeu_ps(o.as_mut_ptr(), z);
        // z holds v0, v2, v4, v6 in its low half, v1, v3, v5, v7 above.
        [o[0], o[4], o[1], o[5], o[2], o[6], o[3], o[7]]
    }
}

// ------------------------------------------------------------------- AVX-512

/// A weight matrix read 16 values at a time in registers, for the AVX-512
/// driver. Segments are runs of a row that share one parameter set (a
/// group, or the whole row): their state is set up once per segment.
#[cfg(target_arch = "x86_64")]
pub(crate) trait RowReader: Sync {
    /// Per-segment state (a broadcast scale, a lookup table, ...).
    type Seg: Copy;

    /// Bytes of encoded weights per 16 values (for the prefetch stride).
    const BYTES_PER_16: usize;

    /// Values per segment: a multiple of 16 (a group), or `usize::MAX`
    /// (the whole row: the default).
    fn seg_len(&self) -> usize {
        usize::MAX
    }

    /// The state of the segment of row `i` that starts at column `k`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and BMI2 are available; row `i` exists and `k` is
    /// below the row length.
    unsafe fn seg(&self, i: usize, k: usize) -> Self::Seg;

    /// Values `k..k + 16` of row `i` (in segment `s`), masked to `m`;
    /// masked-off lanes are `+0.0`.
    ///
    /// # Safety
    /// As [`seg`](Self::seg); `k` is a multiple of 16 in the segment and `m`
    /// covers only columns below the row length.
    unsafe fn lanes(&self, s: &Self::Seg, i: usize, k: usize, m: __mmask16) -> __m512;

    /// The address of the encoded value `(i, k)` (prefetched ahead; it may
    /// point past the data, which a prefetch never reads).
    fn addr(&self, i: usize, k: usize) -> *const u8;

    /// The factors that the outputs of rows `i0..i0 + RR` are multiplied by
    /// once summed (deferred row scales), if any.
    #[inline(always)]
    fn out_scales<const RR: usize>(&self, _i0: usize) -> Option<[f32; RR]> {
        None
    }

    /// Whether [`lanes`](Self::lanes) uses AVX-512 VBMI (the driver is
    /// then compiled with it; the reader is only built where it is detected).
    const VBMI: bool = false;
}

/// Dense f32 rows of `cols` values, for both drivers ([`Rows8`] on AVX2,
/// [`RowReader`] on AVX-512).
#[cfg(target_arch = "x86_64")]
struct F32Rows<'a> {
    w: &'a [f32],
    cols: usize,
    /// Factors for each row's outputs (deferred row scales), if any.
    scales: Option<&'a [f32]>,
}

#[cfg(target_arch = "x86_64")]
impl RowReader for F32Rows<'_> {
    type Seg = ();

    const BYTES_PER_16: usize = 64;

    #[inline(always)]
    unsafe fn seg(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn lanes(&self, _: &(), i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller's contract: lanes in `m` lie in row `i`.
        unsafe { _mm512_maskz_loadu_ps(m, self.w.as_ptr().add(i * self.cols + k)) }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.w.as_ptr().wrapping_add(i * self.cols + k).cast::<u8>()
    }

    #[inline(always)]
    fn out_scales<const RR: usize>(&self, i0: usize) -> Option<[f32; RR]> {
        let s = self.scales?;
        let mut a = [0.0f32; RR];
        a.copy_from_slice(&s[i0..i0 + RR]);
        Some(a)
    }
}

/// `y = x · Wᵀ` (`[batch, rows]`) with W read through `f` (AVX-512): the
/// encodings' path for batches up to [`QUANT_MAX_BATCH`].
///
/// # Safety
/// AVX-512 F/BW/VL, BMI2 and FMA are available; `f` reads `rows` rows of
/// `cols` values; `x` has `cols` columns.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn quant<F: RowReader>(
    f: &F,
    rows: usize,
    cols: usize,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    debug_assert_eq!(x.ncols(), cols);
    let batch = x.nrows();
    if cols == 0 {
        return Array2::zeros((batch, rows));
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let per = rows_per_task(cols * F::BYTES_PER_16 / 16);
    row_blocks(rows, batch, per, exec, |t, out| {
        // SAFETY: this function's contract; rows `t·per..` exist; a VBMI
        // reader is only built where VBMI was detected.
        unsafe {
            if F::VBMI {
                products_avx512_vbmi(f, t * per, xs, cols, out)
            } else {
                products_avx512(f, t * per, xs, cols, out)
            }
        }
    })
}

/// The operands of a streamed product: `x` (`[batch, cols]`) over `exec`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Stream<'a> {
    pub(crate) cols: usize,
    pub(crate) x: ArrayView2<'a, f32>,
    pub(crate) exec: &'a dyn ParallelExecutor,
}

#[cfg(target_arch = "x86_64")]
impl Stream<'_> {
    /// [`quant`] over `rows` rows of W read through `f`.
    ///
    /// # Safety
    /// As [`quant`].
    pub(crate) unsafe fn run<F: RowReader>(&self, f: &F, rows: usize) -> Array2<f32> {
        // SAFETY: forwarded contract.
        unsafe { quant(f, rows, self.cols, self.x, self.exec) }
    }
}

/// [`products`] compiled with one feature set: its readers' intrinsics
/// inline there.
macro_rules! driver {
    ($(#[$doc:meta])* $name:ident, $features:literal) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<F: RowReader>(
            f: &F,
            row0: usize,
            xs: &[f32],
            cols: usize,
            out: &mut [f32],
        ) {
            // SAFETY: this function's contract.
            unsafe { products(f, row0, xs, cols, out) }
        }
    };
}

driver!(
    /// The AVX-512 driver with its base features.
    ///
    /// # Safety
    /// As [`products`]: AVX-512 F/BW/VL, BMI2 and FMA are available.
    products_avx512,
    "avx512f,avx512bw,avx512vl,avx2,fma,bmi2"
);

driver!(
    /// The AVX-512 driver with VBMI, for readers that use it.
    ///
    /// # Safety
    /// As [`products_avx512`], and AVX-512 VBMI is available.
    products_avx512_vbmi,
    "avx512f,avx512bw,avx512vl,avx2,fma,bmi2,avx512vbmi"
);

/// `out[r·batch + b] = W row (row0 + r) · x row b`, weights read through
/// `f`, in blocks of [`R`] rows × up to [`C`] inputs. No features of its
/// own: it is inlined into each feature set's driver above.
///
/// # Safety
/// As [`quant`]; rows `row0..row0 + out.len() / batch` exist; `xs` holds
/// whole rows of `cols > 0` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn products<F: RowReader>(f: &F, row0: usize, xs: &[f32], cols: usize, out: &mut [f32]) {
    let batch = xs.len() / cols;
    let nr = out.len() / batch;
    for_blocks!(nr, batch, cols, C, |i, rr, b0, nc| {
        macro_rules! go {
            ($rr:literal, $c:literal) => {{
                let x: [&[f32]; $c] =
                    std::array::from_fn(|c| &xs[(b0 + c) * cols..(b0 + c + 1) * cols]);
                let mut res = [[0.0f32; $c]; $rr];
                // SAFETY: this function's contract; rows exist.
                unsafe { block::<F, $rr, $c>(f, row0 + i, &x, &mut res) };
                for (r, res) in res.iter().enumerate() {
                    out[(i + r) * batch + b0..][..$c].copy_from_slice(res);
                }
            }};
        }
        by_block_shape!(rr, nc, go)
    });
}

/// One register block: `res[r][c] = W row (i0 + r) · x[c]` in the
/// documented order, segment state set up at each segment start, and the
/// same columns of the next block's rows prefetched into L2 once per cache
/// line: each line a whole block ahead. (A fixed distance ahead within the
/// row, 1 KiB into L1, left the first lines of every block's rows — a row
/// is a page or so — to demand misses: int8 at 4096² batch 1 read its
/// weights from DRAM at 0.79–1.2 ms, now 0.63–0.66 ms; dense f32 1.9–2.0 ms
/// from 2.2–2.7 ms.)
///
/// # Safety
/// As [`products_avx512`]; every `x[c]` holds one whole row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // register blocks: r indexes rows and accumulators
unsafe fn block<F: RowReader, const RR: usize, const CC: usize>(
    f: &F,
    i0: usize,
    x: &[&[f32]; CC],
    res: &mut [[f32; CC]; RR],
) {
    let n = x[0].len();
    let xp = x.map(|r| r.as_ptr());
    // SAFETY: AVX-512F is available (the contract).
    let mut acc = [[unsafe { _mm512_setzero_ps() }; CC]; RR];
    let seg_len = f.seg_len();
    // Steps of 16 values per cache line of encoded weights.
    let line_steps = (64 / F::BYTES_PER_16.max(1)).max(1);
    let mut k = 0;
    // SAFETY: `k + 16 ≤ n` in the full steps and the last step is masked to
    // `n − k` lanes; `k` stays below the row length; the reader's contract
    // holds (rows exist).
    unsafe {
        while k < n {
            let end = if seg_len >= n - k { n } else { k + seg_len };
            // A plain loop, not `array::from_fn`: its closure is not
            // inlined into this AVX-512 function, and a call per row and
            // segment cost more than a group's multiply-adds.
            let s0 = f.seg(i0, k);
            let mut segs = [s0; RR];
            for (r, s) in segs.iter_mut().enumerate().skip(1) {
                *s = f.seg(i0 + r, k);
            }
            while k + 16 <= end {
                if (k / 16).is_multiple_of(line_steps) {
                    for r in 0..RR {
                        let p = f.addr(i0 + r + RR, k);
                        _mm_prefetch::<_MM_HINT_T1>(p.cast());
                    }
                }
                let xv: [__m512; CC] = std::array::from_fn(|c| _mm512_loadu_ps(xp[c].add(k)));
                for r in 0..RR {
                    let wv = f.lanes(&segs[r], i0 + r, k, 0xFFFF);
                    for c in 0..CC {
                        acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
                    }
                }
                k += 16;
            }
            if k < end {
                let m: __mmask16 = (1u16 << (end - k)) - 1;
                let xv: [__m512; CC] =
                    std::array::from_fn(|c| _mm512_maskz_loadu_ps(m, xp[c].add(k)));
                for r in 0..RR {
                    let wv = f.lanes(&segs[r], i0 + r, k, m);
                    for c in 0..CC {
                        acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
                    }
                }
                k = end;
            }
        }
    }
    // SAFETY: AVX-512F is available (the contract).
    unsafe { reduce_block(&acc, res, f.out_scales::<RR>(i0)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((((i + seed) * 2654435761) % 1009) as f32 - 504.0) / 97.0)
            .collect()
    }

    /// Every tier is within round-off of an f64 product, bit-identical on
    /// any executor, and a row of the result does not depend on the batch.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_horizontal_sums_keep_the_scalar_order() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        let d = data(64, 3);
        // Magnitudes far apart, so that another order would round otherwise.
        let l: Vec<f32> = d
            .iter()
            .enumerate()
            .map(|(j, v)| v * 8f32.powi((j % 8) as i32))
            .collect();
        let scalar = |l: &[f32]| ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        // SAFETY: AVX is available (checked above); 8 rows of 8 values.
        let got = unsafe {
            hsums8(std::array::from_fn(|a| {
                _mm256_loadu_ps(l[a * 8..].as_ptr())
            }))
        };
        for a in 0..8 {
            assert_eq!(
                got[a].to_bits(),
                scalar(&l[a * 8..a * 8 + 8]).to_bits(),
                "{a}"
            );
        }
    }

    #[test]
    fn dense_matches_f64_on_every_tier_and_executor() {
        let pool = ThreadPool::new(3).unwrap();
        for (rows, cols) in [(1, 1), (7, 15), (9, 16), (13, 33), (70, 300), (5, 4100)] {
            let w = data(rows * cols, 1);
            let xall = Array2::from_shape_vec((9, cols), data(9 * cols, 7)).unwrap();
            for tier in Tier::ALL {
                let whole = dense(&w, rows, cols, xall.view(), &Sequential, tier);
                for b in 0..9 {
                    let x = xall.row(b);
                    let x = x.as_slice().unwrap();
                    for i in 0..rows {
                        let wr = &w[i * cols..(i + 1) * cols];
                        let exact: f64 = wr.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let bound: f64 =
                            wr.iter().zip(x).map(|(&a, &b)| (a * b).abs() as f64).sum();
                        let got = whole[[b, i]] as f64;
                        assert!((got - exact).abs() <= 1e-5 * bound + 1e-6, "{tier:?}");
                        if tier.capped() == Tier::Portable {
                            assert_eq!(whole[[b, i]].to_bits(), dot_portable(wr, x).to_bits());
                        }
                    }
                }
                for batch in [1, 2, 3, 4, 5, 8] {
                    let xs = xall.slice(ndarray::s![9 - batch.., ..]);
                    let want = whole.slice(ndarray::s![9 - batch.., ..]);
                    for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                        let y = dense(&w, rows, cols, xs, exec, tier);
                        assert!(
                            y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{rows}x{cols} batch {batch} {tier:?}"
                        );
                    }
                }
            }
        }
    }
}
