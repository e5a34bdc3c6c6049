//! Binary weights × f32 inputs by table lookup: no multiplies, no slices.
//!
//! A binary row is `α·(±1, ±1, …)`. For each input row and each run of four
//! columns, the sixteen signed sums `±x₀ ± x₁ ± x₂ ± x₃` make one table of
//! 16 f32 — one AVX-512 register — and four sign bits of a weight row are
//! an index into it (T-MAC's idea, Wei et al. 2024, here with f32 tables).
//! The weights are repacked so that one register holds 32 columns of the
//! sign bits of 16 rows; `vpermps` then looks up 16 rows × 4 columns (64
//! weights) at once, and a shift brings the next four bits down.
//!
//! Per 64 weights and input that is one `vpermps` and one add. On a Zen 5
//! one `vpermps` issues a cycle, two `vpdpbusd` a cycle: the three int8
//! slices of the integer kernel (`sliced`) took three `vpdpbusd` and a mask
//! move for the same 64 weights, and dense f32 four fused multiply-adds.
//! Binary weight-only products at 4096², batch 1, were compute-bound there
//! (37 % of a 70 GB/s bus); see docs/results.md for the figures now.
//!
//! Precision: the input is not quantized. Each output is `α · Σ_q T_q[i]`,
//! every table entry three f32 additions and the sum of the `cols / 4`
//! looked-up entries one f32 chain in column order: the error of an f32
//! dot product of the decoded weights, `(cols/4 + 4)·2⁻²⁴·α·Σ|x|` at
//! worst. The chain of a (row, input) pair does not depend on the batch,
//! the register block or the executor, and [`lookup_reference`] gives the
//! same bits one value at a time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{Array2, ArrayView2};

use crate::matrix::aligned::{filled, Aligned};
use crate::matrix::BinaryValues;
use crate::parallel::{for_each_chunk_mut, ParallelExecutor};

/// Rows per panel (one register of 32-bit words).
const P: usize = 16;
/// Columns per word.
const W: usize = 32;
/// Entries per table (four sign bits).
const T: usize = 16;
/// Panels stored together ([`SignWords`]): the largest register block.
const G: usize = V1;

/// Where word `(p, c)` of a matrix of `chunks` words per row starts.
#[inline(always)]
fn word_at(chunks: usize, p: usize, c: usize) -> usize {
    ((p / G * chunks + c) * G + p % G) * P
}

/// The sign bits of a binary matrix, 16 rows at a time: word `(p, c)`
/// lane `r` holds columns `32c..32c + 32` of row `16p + r` (bit `t` is
/// column `32c + t`), zeros past the rows and columns. Groups of [`G`]
/// panels lie chunk by chunk (the words of one chunk of the group's panels
/// together), so that a register block reads one stream, not eight. The
/// same bytes as the stored bits (plus padding), kept with the values once
/// built.
pub(crate) struct SignWords {
    words: Aligned<u32>,
    rows: usize,
    cols: usize,
    /// Words per row (`cols / 32`, rounded up).
    chunks: usize,
}

impl SignWords {
    /// `v`'s words; `None` for ragged rows (kept rows of different
    /// lengths) or no columns.
    pub(crate) fn new(v: &BinaryValues) -> Option<Self> {
        let (rows, cols) = (v.layout.rows(), v.layout.max_row_len());
        if cols == 0 || v.layout.total() != rows * cols {
            return None;
        }
        let chunks = cols.div_ceil(W);
        let panels = rows.div_ceil(P);
        let mut words = filled(0u32, panels.div_ceil(G) * G * chunks * P);
        for r in 0..rows {
            let (p, lane) = (r / P, r % P);
            for c in 0..chunks {
                let n = (cols - c * W).min(W);
                let bits = super::sign_gemm::bits64(v.signs.bytes(), r * cols + c * W, n) as u32;
                words[word_at(chunks, p, c) + lane] = bits;
            }
        }
        Some(SignWords {
            words,
            rows,
            cols,
            chunks,
        })
    }

    /// Four-column runs per row, padding included.
    fn quads(&self) -> usize {
        self.chunks * (W / 4)
    }

    /// Sign bits `4q..4q + 4` of row `r` as a table index.
    #[cfg(test)]
    fn index(&self, r: usize, q: usize) -> usize {
        let word = self.words[word_at(self.chunks, r / P, q / 8) + r % P];
        ((word >> (4 * (q % 8))) & 0xF) as usize
    }
}

/// The tables of `x` (`[batch, cols]`): input `b`, run `q`, entry `i` at
/// `(b·quads + q)·16 + i` is `((s₀x₀ + s₁x₁) + s₂x₂) + s₃x₃` over columns
/// `4q..4q + 4` (zero past the columns), `sₜ = +1` where bit `t` of `i` is
/// set, else `−1`. Plain f32 operations, the same bits on every path.
fn tables(x: ArrayView2<f32>, quads: usize, exec: &dyn ParallelExecutor) -> Aligned<f32> {
    let (batch, cols) = x.dim();
    let mut t = filled(0.0f32, batch * quads * T);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    for_each_chunk_mut(exec, &mut t, quads * T, |b, out| {
        let row = &xs[b * cols..(b + 1) * cols];
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX-512F was detected.
            unsafe { fill_avx512(row, out) };
            return;
        }
        fill(row, out);
    });
    t
}

/// One input row's tables (see [`tables`]) by plain loops: the reference's
/// tables, the last partial run on AVX-512, and CPUs without it.
#[inline(always)]
fn fill(row: &[f32], out: &mut [f32]) {
    for (q, e) in out.chunks_exact_mut(T).enumerate() {
        let x: [f32; 4] = std::array::from_fn(|t| row.get(4 * q + t).copied().unwrap_or(0.0));
        for (i, e) in e.iter_mut().enumerate() {
            let s = |t: usize| if (i >> t) & 1 == 1 { x[t] } else { -x[t] };
            *e = ((s(0) + s(1)) + s(2)) + s(3);
        }
    }
}

/// [`fill`] in registers: a run's sixteen entries are one vector, each
/// `±xₜ` a broadcast with lane `i`'s sign flipped where bit `t` of `i` is
/// clear (an exact negation), then the same three additions.
///
/// # Safety
/// AVX-512F is available; `out` holds whole tables (16 values each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512(row: &[f32], out: &mut [f32]) {
    // Sign bit of lane i where bit t of i is clear.
    let flip: [__m512i; 4] = std::array::from_fn(|t| {
        let lanes: [i32; 16] =
            std::array::from_fn(|i| if (i >> t) & 1 == 1 { 0 } else { i32::MIN });
        // SAFETY: AVX-512F (the contract); 16 lanes read.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    });
    let full = row.len() / 4;
    // SAFETY: runs `q < full` read columns `4q..4q + 4 ≤ row.len()`; each
    // table writes its 16 values of `out`.
    unsafe {
        for (q, e) in out.chunks_exact_mut(T).enumerate().take(full) {
            let s = |t: usize| {
                let x = _mm512_castps_si512(_mm512_set1_ps(*row.get_unchecked(4 * q + t)));
                _mm512_castsi512_ps(_mm512_xor_si512(x, flip[t]))
            };
            let v = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s(0), s(1)), s(2)), s(3));
            _mm512_storeu_ps(e.as_mut_ptr(), v);
        }
    }
    // The last, partial run and the padding.
    fill(&row[full * 4..], &mut out[full * T..]);
}

/// The plain reference: `y[b, i] = α_i · Σ_q T_bq[index(i, q)]`, one value
/// at a time, in the kernels' order (so the same bits).
#[cfg(test)]
pub(crate) fn lookup_reference(v: &BinaryValues, x: ArrayView2<f32>) -> Option<Array2<f32>> {
    let w = SignWords::new(v)?;
    let quads = w.quads();
    // The tables by the plain loops, compiled for no particular CPU.
    let tb: Vec<Vec<f32>> = x
        .outer_iter()
        .map(|row| {
            let mut t = vec![0.0f32; quads * T];
            fill(&row.to_vec(), &mut t);
            t
        })
        .collect();
    Some(Array2::from_shape_fn((x.nrows(), w.rows), |(b, i)| {
        let tb = &tb[b];
        let s = (0..quads).fold(0.0f32, |acc, q| acc + tb[q * T + w.index(i, q)]);
        s * v.scales[i]
    }))
}

/// Whether this CPU runs the lookup kernel (AVX-512F: `vpermps` on 16
/// lanes).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::Tier::detect() >= crate::kernels::Tier::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `y = x · Wᵀ` (`[batch, rows]`) for binary values of uniform rows on an
/// AVX-512 CPU; `None` elsewhere (ragged rows, no columns, no AVX-512).
pub(crate) fn matmul(
    v: &BinaryValues,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Option<Array2<f32>> {
    if !available() {
        return None;
    }
    let w = v.prepacked.get_or_init(|| SignWords::new(v));
    let w = w.as_ref()?;
    debug_assert_eq!(x.ncols(), w.cols);
    Some(run(w, &v.scales, x, exec))
}

/// Panels per register block at one input (eight independent chains, one
/// `vpermps` each per step) and at more (four, × up to four inputs).
const V1: usize = 8;
const V: usize = 4;
/// Inputs per register block.
const C: usize = 4;
/// Rows per task: a multiple of both blocks' rows (the split depends on
/// the shape only).
const TASK_ROWS: usize = 256;

#[cfg(target_arch = "x86_64")]
fn run(
    w: &SignWords,
    scales: &[f32],
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let (batch, rows) = (x.nrows(), w.rows);
    let quads = w.quads();
    let t = tables(x, quads, exec);
    // Each task writes its rows' columns of `y` straight from the
    // registers. (Built as `yᵀ`, `[rows, batch]`, then transposed, the
    // stores of a block went `batch` floats apart, and at 512 inputs
    // 2 KiB apart, into two sets of the L1: 384 × 384 at 512 inputs took
    // as long as dense f32, and 1.75× less time at 448 and 640.)
    let mut y = Vec::<f32>::with_capacity(batch * rows);
    let out = super::int8_panel::Out(y.as_mut_ptr());
    let out = &out;
    exec.run(rows.div_ceil(TASK_ROWS), &|task| {
        let r0 = task * TASK_ROWS;
        let nr = TASK_ROWS.min(rows - r0);
        // SAFETY: AVX-512F was checked (`available`); the panels of rows
        // `r0..r0 + nr` exist, the tables hold `batch` inputs, and `y`
        // has room for `batch` rows of `rows`, of which this task alone
        // writes columns `r0..r0 + nr`.
        unsafe { task_avx512(w, scales, &t, batch, r0, nr, (out.ptr(), rows)) };
    });
    // SAFETY: the tasks wrote every column (they cover `0..rows`) of every
    // row, and `exec.run` returns once all of them have run.
    unsafe { y.set_len(batch * rows) };
    Array2::from_shape_vec((batch, rows), y).expect("sizes match")
}

#[cfg(not(target_arch = "x86_64"))]
fn run(_: &SignWords, _: &[f32], _: ArrayView2<f32>, _: &dyn ParallelExecutor) -> Array2<f32> {
    unreachable!("`available` is false")
}

/// Rows `r0..r0 + nr` of the product into columns `r0..r0 + nr` of `y`
/// (`[batch, rows]`), in register blocks of panels × inputs.
///
/// # Safety
/// AVX-512F is available; `r0` is a multiple of 16; `t` holds `batch`
/// inputs' tables of `w.quads()` runs; `y` is valid for writes of `batch`
/// rows of `rows` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(
    w: &SignWords,
    scales: &[f32],
    t: &[f32],
    batch: usize,
    r0: usize,
    nr: usize,
    (y, rows): (*mut f32, usize),
) {
    let (p0, np) = (r0 / P, nr.div_ceil(P));
    let mut p = 0;
    // SAFETY: the panels `p0 + p..` below `p0 + np` exist; inputs below
    // `batch` have tables; rows `r0..r0 + nr` of `y`'s `batch` rows are
    // this task's to write (this function's contract).
    unsafe {
        macro_rules! go {
            ($v:expr, $c:expr, $b0:expr) => {{
                let mut acc = [[_mm512_setzero_ps(); $c]; $v];
                block::<$v, $c>(w, p0 + p, t, $b0, &mut acc);
                for (v, acc) in acc.iter().enumerate() {
                    // Rows of this panel inside the task, and their scales.
                    let r = (p + v) * P;
                    let m: __mmask16 = if nr - r >= P {
                        !0
                    } else {
                        (1u16 << (nr - r)) - 1
                    };
                    let a = _mm512_maskz_loadu_ps(m, scales.as_ptr().add(r0 + r));
                    for (c, &acc) in acc.iter().enumerate() {
                        let o = y.add(($b0 + c) * rows + r0 + r);
                        _mm512_mask_storeu_ps(o, m, _mm512_mul_ps(acc, a));
                    }
                }
            }};
        }
        while p < np {
            if batch == 1 && p + V1 <= np {
                go!(V1, 1, 0);
                p += V1;
                continue;
            }
            // The last one to three panels in one block.
            let v = (np - p).min(V);
            let mut b0 = 0;
            while b0 < batch {
                macro_rules! inputs {
                    ($v:literal) => {
                        match (batch - b0).min(C) {
                            1 => go!($v, 1, b0),
                            2 => go!($v, 2, b0),
                            3 => go!($v, 3, b0),
                            _ => go!($v, 4, b0),
                        }
                    };
                }
                match v {
                    1 => inputs!(1),
                    2 => inputs!(2),
                    3 => inputs!(3),
                    _ => inputs!(4),
                }
                b0 += C;
            }
            p += v;
        }
    }
}

/// Words ahead of the loads that [`block`] prefetches: 4 KiB further down
/// the one stream that groups of panels make (measured at 4096², batch 1,
/// from DRAM: 0.055 ms, against 0.060–0.066 ms for the same line of the
/// next block of panels; 8 KiB was no better).
const AHEAD: usize = 1024;

/// One register block: lane `l` of `res[v][c]` (zeros on entry) becomes
/// `Σ_q T_{b0+c, q}[index(16(p0+v) + l, q)]`, `q` ascending, one chain per
/// (row, input).
///
/// # Safety
/// AVX-512F is available; panels `p0..p0 + VV` exist; inputs
/// `b0..b0 + CC` have tables in `t`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // register blocks: v, c index accumulators
unsafe fn block<const VV: usize, const CC: usize>(
    w: &SignWords,
    p0: usize,
    t: &[f32],
    b0: usize,
    res: &mut [[__m512; CC]; VV],
) {
    let (chunks, quads) = (w.chunks, w.quads());
    // SAFETY: the contract: every pointer below stays in its panel's words
    // or its input's tables (prefetches may point past them; they never
    // fault).
    unsafe {
        let wp: [*const u32; VV] =
            std::array::from_fn(|v| w.words.as_ptr().add(word_at(chunks, p0 + v, 0)));
        let tp: [*const f32; CC] = std::array::from_fn(|c| t.as_ptr().add((b0 + c) * quads * T));
        let acc = res;
        for k in 0..chunks {
            let mut idx: [__m512i; VV] = std::array::from_fn(|v| {
                _mm_prefetch::<_MM_HINT_T0>(wp[v].wrapping_add(k * G * P + AHEAD).cast());
                _mm512_load_si512(wp[v].add(k * G * P).cast())
            });
            for s in 0..W / 4 {
                let q = k * (W / 4) + s;
                let tb: [__m512; CC] = std::array::from_fn(|c| _mm512_load_ps(tp[c].add(q * T)));
                for v in 0..VV {
                    for c in 0..CC {
                        acc[v][c] = _mm512_add_ps(acc[v][c], _mm512_permutexvar_ps(idx[v], tb[c]));
                    }
                    idx[v] = _mm512_srli_epi32::<4>(idx[v]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{CompressedMatrix, Values};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::quantization::{Binary, Quantizer};

    fn binary(rows: usize, cols: usize, seed: u64) -> CompressedMatrix {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let w = Array2::from_shape_simple_fn((rows, cols), || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        });
        Binary
            .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap()
    }

    fn input(batch: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((batch, cols), |(b, k)| {
            let v = ((b * 131 + k * 71) % 97) as f32 / 13.0 - 3.5;
            // Magnitudes far apart, so that another order rounds differently.
            v * 2f32.powi(((b + 3 * k) % 17) as i32 - 8)
        })
    }

    /// The kernel gives the reference's bits at every shape class (rows
    /// around the panel and block sizes, columns around the word and the
    /// run), batch and executor; and the reference is the f32 product of
    /// the decoded weights to within its error bound.
    #[test]
    fn lookups_give_the_reference_bits_within_the_f32_bound() {
        if !available() {
            return;
        }
        let pool = ThreadPool::new(3).unwrap();
        for (rows, cols) in [
            (1, 1),
            (16, 32),
            (17, 31),
            (37, 70),
            (100, 300),
            (129, 64),
            (300, 257),
        ] {
            let m = binary(rows, cols, (rows * 1000 + cols) as u64);
            let Some(Values::Binary(v)) = m.values() else {
                unreachable!()
            };
            let w_hat = m.to_dense().mapv(f64::from);
            for batch in [1, 2, 3, 5, 16, 33] {
                let x = input(batch, cols);
                let want = lookup_reference(v, x.view()).unwrap();
                for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                    let y = matmul(v, x.view(), exec).unwrap();
                    let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{rows}x{cols} batch {batch}");
                }
                let x64 = x.mapv(f64::from);
                let exact = x64.dot(&w_hat.t());
                let u = 2f64.powi(-24);
                for ((b, i), &e) in exact.indexed_iter() {
                    let a = v.scales[i] as f64;
                    let xs: f64 = x64.row(b).iter().map(|v| v.abs()).sum();
                    let bound = ((cols.div_ceil(4) + 4) as f64 * u * 1.01) * a * xs;
                    let got = want[[b, i]] as f64;
                    assert!(
                        (got - e).abs() <= bound,
                        "{rows}x{cols} ({b}, {i}): {got} vs {e}"
                    );
                }
            }
        }
    }
}
