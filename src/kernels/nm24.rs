//! 2:4 rows multiplied with the input permuted in registers, at every batch
//! size (AVX-512).
//!
//! A 2:4 row keeps 2 values of every 4 columns, so a 32-column block holds
//! 16 stored values: one register. Instead of spreading them over 32 lanes
//! (half zeros, as many multiply-adds as dense f32), the kernel moves the
//! input to them: a two-register permute (`vpermt2ps`) picks, for stored
//! value `t`, the input of its column `4·⌊t/2⌋ + pos(t)`. One permute and one
//! multiply-add per 16 stored values and input row: half the multiply-adds of
//! dense f32 (the permute runs beside them: one pair a cycle, measured), and
//! fewer bytes — about half of dense f32's with f32 values, a quarter with
//! int8.
//!
//! The stored values come from any in-register reader of
//! [`Lanes`](super::tile::Lanes) (f32, int8, int4, binary, ternary,
//! codebooks): 16 of them per call, the whole register used.
//!
//! The order, per (input row, weight row) pair: one 16-lane accumulator,
//! `acc ← fma(v[16b..16b + 16], x[perm(b)], acc)` for blocks `b` ascending
//! (the last, partial block has zeros in its missing lanes), then
//! `_mm512_reduce_add_ps`. The register blocking ([`R`] rows × up to [`C`]
//! inputs) and the task split (from the shape only) never change it: **a row
//! of the result has the same bits at every batch size and on every
//! executor.** (The decoded-tile order of [`tile`](super::tile) sums by
//! column lanes instead; 2:4 rows now use this order at every batch size.)
//!
//! Which blocks: those whose f32 copy would exceed
//! [`MAX_COPY_BYTES`](super::decoded_copy::MAX_COPY_BYTES), read from
//! DRAM, where half the bytes pay for the permutes at every batch.
//! Cache-resident blocks take their spread copy and dense f32's kernel
//! ([`decoded_copy`](super::decoded_copy)): there one permute a cycle
//! lost to dense f32's two multiply-adds per 32 columns from batch 8 to 16
//! (0.75–0.94× on a Zen 5).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{Array2, ArrayView2};

use super::lane_sums::reduce_block;
use super::tile::Lanes;
use crate::matrix::NM;
use crate::parallel::{row_blocks, ParallelExecutor};

/// Weight rows per register block.
const R: usize = 4;
/// Input rows per register block (2 × 4 accumulators and 2 × 4 input
/// registers: with the constants and temporaries, no spills; 4 × 4 spilled).
const C: usize = 4;
/// Above this batch, readers that cost more than a load decode a task's
/// values once per call (at 8–16 inputs, int8 2:4 measured 0.6–0.8× dense
/// decoded once, 0.8–1.0× decoded in registers per 4 inputs).
const DECODE_ONCE_ABOVE: usize = 16;
/// Stored-value bytes (as f32) per task: the split depends on the shape only.
const TASK_BYTES: usize = 1 << 17;

/// Whether `s` (over `cols` columns) is a 2:4 structure this kernel reads:
/// two-bit positions, whole groups.
pub(crate) fn fits(s: &NM, cols: usize) -> bool {
    (s.n(), s.m()) == (2, 4) && s.positions().width() == 2 && cols.is_multiple_of(4)
}

/// `y = x · Wᵀ` (`[batch, rows]`) for a 2:4 matrix `[rows, cols]` (see
/// [`fits`]) whose stored values (rows of `cols / 2`) `vals` reads, in the
/// module's order. `decode_once`: above [`DECODE_ONCE_ABOVE`] inputs,
/// decode each task's stored values to f32 once (the same values) instead
/// of once per [`C`] inputs — for readers that cost more than a load.
///
/// # Safety
/// AVX-512 F/BW/VL, BMI2 and FMA are available; `vals` reads `rows` rows of
/// `cols / 2` values; `fits(s, cols)`; `x` has `cols` columns.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn matmul<F: Lanes>(
    s: &NM,
    vals: &F,
    decode_once: bool,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    debug_assert!(fits(s, cols) && x.ncols() == cols);
    let batch = x.nrows();
    if cols == 0 {
        return Array2::zeros((batch, rows));
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let w = Rows {
        vals,
        positions: s.positions().bytes(),
        per: cols / 2,
    };
    let per_task = (TASK_BYTES / (cols * 2)).max(1).div_ceil(R) * R;
    row_blocks(rows, batch, per_task, exec, |t, out| {
        // SAFETY: this function's contract; rows `t·per_task..` exist.
        unsafe {
            if decode_once && batch > DECODE_ONCE_ABOVE {
                decoded_products(&w, t * per_task, xs, cols, out)
            } else {
                products(&w, t * per_task, xs, cols, out)
            }
        }
    })
}

/// Stored values decoded to f32, rows `row0..` of `per`.
struct Decoded {
    data: Vec<f32>,
    row0: usize,
    per: usize,
}

impl Lanes for Decoded {
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller's contract: the lanes in `m` lie in row `i`,
        // one of the decoded rows.
        unsafe { _mm512_maskz_loadu_ps(m, self.data.as_ptr().add((i - self.row0) * self.per + k)) }
    }
}

/// [`products`] on the rows decoded once through `w`'s reader.
///
/// # Safety
/// As [`products`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
unsafe fn decoded_products<F: Lanes>(
    w: &Rows<F>,
    row0: usize,
    xs: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let (per, nr) = (w.per, out.len() / (xs.len() / cols));
    let mut d = Decoded {
        data: vec![0.0f32; nr * per],
        row0,
        per,
    };
    for (r, o) in d.data.chunks_exact_mut(per).enumerate() {
        for v0 in (0..per).step_by(16) {
            let m = mask(per - v0);
            // SAFETY: this function's contract (row `row0 + r` exists; the
            // lanes in `m` lie in it and in `o`).
            unsafe {
                _mm512_mask_storeu_ps(o.as_mut_ptr().add(v0), m, w.vals.lanes(row0 + r, v0, m))
            };
        }
    }
    let wd = Rows {
        vals: &d,
        positions: w.positions,
        per,
    };
    // SAFETY: `wd` reads the same rows.
    unsafe { products(&wd, row0, xs, cols, out) }
}

/// A 2:4 matrix's stored values and positions.
struct Rows<'a, F> {
    vals: &'a F,
    positions: &'a [u8],
    /// Stored values per row.
    per: usize,
}

/// `out[r·batch + b] = W row (row0 + r) · x row b` in blocks of [`R`] rows
/// × up to [`C`] inputs.
///
/// # Safety
/// As [`matmul`]; rows `row0..row0 + out.len() / batch` exist; `xs` holds
/// whole rows of `cols > 0` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
unsafe fn products<F: Lanes>(w: &Rows<F>, row0: usize, xs: &[f32], cols: usize, out: &mut [f32]) {
    let batch = xs.len() / cols;
    let nr = out.len() / batch;
    // Inputs outer, rows inner: the block's inputs stay in L1 while the
    // task's rows stream past (the other way round re-read every input
    // from L2 once per block of rows, half again the traffic).
    let mut b0 = 0;
    while b0 < batch {
        let nc = (batch - b0).min(C);
        let mut i = 0;
        while i < nr {
            let rr = if i + R <= nr { R } else { 1 };
            macro_rules! go {
                ($rr:literal, $c:literal) => {{
                    let mut x: [&[f32]; $c] = [&[]; $c];
                    for (c, xr) in x.iter_mut().enumerate() {
                        *xr = &xs[(b0 + c) * cols..(b0 + c + 1) * cols];
                    }
                    let mut res = [[0.0f32; $c]; $rr];
                    // SAFETY: this function's contract; the rows exist.
                    unsafe { block::<F, $rr, $c>(w, row0 + i, &x, &mut res) };
                    for (r, res) in res.iter().enumerate() {
                        out[(i + r) * batch + b0..][..$c].copy_from_slice(res);
                    }
                }};
            }
            super::gemv::by_block_shape!(rr, nc, go);
            i += rr;
        }
        b0 += nc;
    }
}

/// One register block: `res[r][c] = W row (i0 + r) · x[c]` in the module's
/// order. No features of its own: inlined into [`products`].
///
/// # Safety
/// As [`products`]; every `x[c]` holds one whole row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // register blocks: r indexes rows and accumulators
unsafe fn block<F: Lanes, const RR: usize, const CC: usize>(
    w: &Rows<F>,
    i0: usize,
    x: &[&[f32]; CC],
    res: &mut [[f32; CC]; RR],
) {
    let cols = x[0].len();
    let mut xp = [std::ptr::null::<f32>(); CC];
    for c in 0..CC {
        xp[c] = x[c].as_ptr();
    }
    let full = cols / 32 * 32;
    // SAFETY: AVX-512 F/BW/VL and FMA are available (the contract); full
    // blocks lie in the rows, the last, partial block is masked to the
    // row's `cols` inputs and `per` stored values; the position reads stay
    // in the buffer.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); CC]; RR];
        // Each row's first position bit.
        let mut pb = [0usize; RR];
        for r in 0..RR {
            pb[r] = 2 * (i0 + r) * w.per;
        }
        // No calls in these loops: a call spills every accumulator.
        let mut k = 0;
        while k < full {
            // Block k..k + 32: stored values k/2.., position bits from pb + k.
            let mut bits = [0u32; RR];
            for r in 0..RR {
                bits[r] = block_bits(w.positions, pb[r] + k);
            }
            step::<F, RR, CC>(w, i0, &xp, k, 0xFFFF, 0xFFFF, 0xFFFF, bits, &mut acc);
            k += 32;
        }
        if k < cols {
            // The last, partial block.
            let mut bits = [0u32; RR];
            for r in 0..RR {
                bits[r] = tail_bits(w.positions, pb[r] + k);
            }
            let (m0, m1) = (mask(cols - k), mask((cols - k).saturating_sub(16)));
            let vm = mask(w.per - k / 2);
            step::<F, RR, CC>(w, i0, &xp, k, m0, m1, vm, bits, &mut acc);
        }
        reduce_block(&acc, res, None);
    }
}

/// One 32-column block `k..k + 32` of [`block`]: inputs masked to `m0` /
/// `m1`, stored values to `vm`, `bits` each row's 16 two-bit positions.
///
/// # Safety
/// As [`block`]; the masks cover only the rows' inputs and stored values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn step<F: Lanes, const RR: usize, const CC: usize>(
    w: &Rows<F>,
    i0: usize,
    xp: &[*const f32; CC],
    k: usize,
    m0: __mmask16,
    m1: __mmask16,
    vm: __mmask16,
    bits: [u32; RR],
    acc: &mut [[__m512; CC]; RR],
) {
    // SAFETY: the caller's contract.
    unsafe {
        // Lane t of a block: stored value t, group t / 2, position bits 2t.
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let bases = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let three = _mm512_set1_epi32(3);
        let mut lo = [_mm512_setzero_ps(); CC];
        let mut hi = [_mm512_setzero_ps(); CC];
        for c in 0..CC {
            lo[c] = _mm512_maskz_loadu_ps(m0, xp[c].add(k));
            hi[c] = _mm512_maskz_loadu_ps(m1, xp[c].add(k + 16));
        }
        for r in 0..RR {
            let v = w.vals.lanes(i0 + r, k / 2, vm);
            let pos = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_set1_epi32(bits[r] as i32), shifts),
                three,
            );
            let idx = _mm512_add_epi32(bases, pos);
            for c in 0..CC {
                let xv = _mm512_permutex2var_ps(lo[c], idx, hi[c]);
                acc[r][c] = _mm512_fmadd_ps(v, xv, acc[r][c]);
            }
        }
    }
}

/// The 32 position bits of a full block from bit `off` of `bytes`: a u32
/// and, off a byte boundary, the next byte.
///
/// # Safety
/// Bits `off..off + 32` lie in `bytes`.
#[inline(always)]
unsafe fn block_bits(bytes: &[u8], off: usize) -> u32 {
    let (at, sh) = (off / 8, (off % 8) as u32);
    // SAFETY: bytes `at..at + 4` (and `at + 4` when `sh > 0`) hold bits
    // `off..off + 32` (the caller's contract).
    unsafe {
        let p = bytes.as_ptr().add(at);
        let lo = p.cast::<u32>().read_unaligned();
        if sh == 0 {
            lo
        } else {
            (lo >> sh) | ((*p.add(4) as u32) << (32 - sh))
        }
    }
}

/// The position bits from bit `off` on, as far as `bytes` goes (a partial
/// block at the end of the buffer; zeros past it).
#[inline(always)]
fn tail_bits(bytes: &[u8], off: usize) -> u32 {
    let at = off / 8;
    let mut v = 0u64;
    for j in 0..5 {
        if let Some(&b) = bytes.get(at + j) {
            v |= (b as u64) << (8 * j);
        }
    }
    (v >> (off % 8)) as u32
}

/// The low `n` lanes (all 16 from `n ≥ 16`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}
