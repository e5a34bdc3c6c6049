//! Decoded-tile products: `y = x · Wᵀ` for any weight whose rows can be
//! decoded to f32, at every batch size, with one summation order.
//!
//! A tile of W's rows is decoded once into an f32 buffer (the decoded values
//! are exactly the encoding's own [`decode_row`](crate::matrix::CompressedMatrix::decode_row),
//! or its integer values where the caller applies a row's one scale after
//! the dot product),
//! then every (input row, weight row) pair is one dot product over the whole
//! row. Register blocks of `R` weight rows × `C` input rows share each load,
//! so decoding is paid once per tile and amortised over the batch — but each
//! pair keeps its own accumulator and the same sequence of operations
//! whatever `R`, `C`, the tile, the task or the batch size: **a row of the
//! result does not depend on the batch it was computed in, nor on the
//! executor** (data-parallel shards and micro-batches give the same bits as
//! the whole batch).
//!
//! The order, per pair (`n` = row length, `L` = 16 lanes):
//! `acc[l] ← acc[l] + w[k]·x[k]` for `k ≡ l (mod L)`, `k` ascending (the last
//! partial block adds only its lanes), then the 16 lanes are summed by a
//! fixed tree. The AVX-512 path fuses each multiply-add (one rounding, so
//! its bits differ from the portable path's; each tier is deterministic on
//! its own). The AVX2 path is the dense f32 kernel's (`gemv`: 8 fused
//! lanes, a scalar tail into lane 0, a fixed horizontal sum) on the decoded
//! rows. All paths are tested against the reference kernel.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{Array2, ArrayView2};

#[cfg(target_arch = "x86_64")]
use super::lane_sums::reduce_block;
use super::Tier;
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Lanes per accumulator.
const L: usize = 16;
/// Weight elements per task (the split depends on the shape only).
const TASK_ELEMS: usize = 1 << 18;
/// Decoded-tile budget in f32 values (128 KiB: resident in L2).
const TILE_ELEMS: usize = 1 << 15;
/// Weight rows per register block.
const R: usize = 4;

/// Rows of W decoded at once for rows of `cols` values: a multiple of [`R`]
/// that keeps the tile in L2.
fn tile_rows(cols: usize) -> usize {
    (TILE_ELEMS / cols.max(1)).clamp(R, 64) / R * R
}

/// Batches up to this size read the weights through [`Lanes`] (decoding in
/// registers, no tile written); larger batches decode tiles once.
const LANES_MAX_BATCH: usize = 8;

/// `y = x · Wᵀ` (`[batch, rows]`) where `decode(row0, out)` writes whole
/// rows `row0..row0 + out.len() / cols` of W, decoded to f32, into `out`.
/// `x` must have `cols` columns. `tier` picks the dot-product path
/// (capped to the CPU): AVX-512 (fused multiply-add) or portable. Given a
/// [`Lanes`] reader (`None::<&NoLanes>`: none) and an AVX-512 tier, small
/// batches decode weights in registers instead; the reader yields exactly
/// the decoded values, so the bits are the same.
pub(crate) fn matmul<D, F>(
    rows: usize,
    cols: usize,
    decode: D,
    lanes: Option<&F>,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    tier: Tier,
) -> Array2<f32>
where
    D: Fn(usize, &mut [f32]) + Sync,
    F: Lanes,
{
    debug_assert_eq!(x.ncols(), cols);
    let tier = tier.capped();
    let batch = x.nrows();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let per = rows_per_task(cols, TASK_ELEMS);
    let tr = tile_rows(cols);
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = lanes {
        if tier >= Tier::Avx512 && batch <= f.max_batch() && cols > 0 {
            return row_blocks(rows, batch, per, exec, |t, out| {
                // SAFETY: the tier is capped to the CPU (AVX-512 F/BW/VL,
                // BMI2, FMA); rows `t·per..` exist and x holds whole rows.
                unsafe { lanes_products_avx512(f, t * per, xs, cols, out) }
            });
        }
    }
    row_blocks(rows, batch, per, exec, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch.max(1);
        let mut tile = vec![0.0f32; tr.min(nr) * cols];
        for a in (0..nr).step_by(tr) {
            let n = tr.min(nr - a);
            let tile = &mut tile[..n * cols];
            match lanes {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the tier is capped to the CPU; rows `r0 + a..` exist.
                Some(f) if tier >= Tier::Avx512 => unsafe {
                    decode_lanes_avx512(f, r0 + a, cols, tile)
                },
                _ => decode(r0 + a, tile),
            }
            products(tile, xs, cols, &mut out[a * batch..(a + n) * batch], tier);
        }
    })
}

/// `out[r·batch + b] = tile row r · x row b` for a decoded tile.
fn products(tile: &[f32], xs: &[f32], cols: usize, out: &mut [f32], tier: Tier) {
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if tier >= Tier::Avx512 {
        // SAFETY: `tier` is capped to the CPU, so AVX-512 F/BW/VL, BMI2 and FMA are
        // available; every row slice holds `cols` values.
        unsafe { products_avx512(tile, xs, cols, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if tier == Tier::Avx2 {
        // The dense f32 kernel's AVX2 twin on the decoded rows (the plain
        // lanes spilled their 192 accumulators to memory: 0.05–0.1× dense).
        // SAFETY: `tier` is capped to the CPU (AVX2 + FMA); whole rows.
        unsafe { super::gemv::dense_avx2(tile, None, xs, cols, out) };
        return;
    }
    let _ = tier;
    products_plain(tile, xs, cols, out)
}

/// Walks the tile in register blocks of `R` weight rows × up to `C` input
/// rows (`R` = 4 or 1 for the last rows), calling `block` for each.
#[inline(always)]
fn for_blocks<const C: usize>(
    tile: &[f32],
    xs: &[f32],
    cols: usize,
    out: &mut [f32],
    mut block4: impl FnMut(&[&[f32]; R], &[&[f32]], &mut [[f32; C]; R]),
    mut block1: impl FnMut(&[&[f32]; 1], &[&[f32]], &mut [[f32; C]; 1]),
) {
    let nr = tile.len() / cols;
    let batch = xs.len() / cols;
    let row = |i: usize| &tile[i * cols..(i + 1) * cols];
    let xrow = |b: usize| &xs[b * cols..(b + 1) * cols];
    for b0 in (0..batch).step_by(C) {
        let nc = C.min(batch - b0);
        let xr: Vec<&[f32]> = (b0..b0 + nc).map(xrow).collect();
        let mut i = 0;
        while i + R <= nr {
            let mut res = [[0.0f32; C]; R];
            block4(&std::array::from_fn(|r| row(i + r)), &xr, &mut res);
            for (r, res) in res.iter().enumerate() {
                out[(i + r) * batch + b0..][..nc].copy_from_slice(&res[..nc]);
            }
            i += R;
        }
        while i < nr {
            let mut res = [[0.0f32; C]; 1];
            block1(&[row(i)], &xr, &mut res);
            out[i * batch + b0..][..nc].copy_from_slice(&res[0][..nc]);
            i += 1;
        }
    }
}

// ------------------------------------------------------------------ portable

/// Input rows per register block on the portable path.
const C_PLAIN: usize = 3;

#[inline(always)]
fn products_plain_any(tile: &[f32], xs: &[f32], cols: usize, out: &mut [f32]) {
    for_blocks::<C_PLAIN>(tile, xs, cols, out, block_plain, block_plain);
}

super::multiversion! {
    /// The portable products (plain Rust, vectorized per tier by the compiler;
    /// no fused multiply-add, so every tier computes the same bits).
    fn products_plain(tile: &[f32], xs: &[f32], cols: usize, out: &mut [f32]) => products_plain_any;
}

/// One register block: `res[r][c] = w[r] · x[c]` for `c < x.len()`, each
/// pair in the documented order.
#[inline(always)]
fn block_plain<const RR: usize, const C: usize>(
    w: &[&[f32]; RR],
    x: &[&[f32]],
    res: &mut [[f32; C]; RR],
) {
    let n = w[0].len();
    let full = n / L * L;
    let mut acc = [[[0.0f32; L]; C]; RR];
    let nc = x.len();
    if nc == C {
        let x: [&[f32]; C] = std::array::from_fn(|c| x[c]);
        for k in (0..full).step_by(L) {
            let xv: [&[f32; L]; C] =
                std::array::from_fn(|c| x[c][k..k + L].try_into().expect("L values"));
            for r in 0..RR {
                let wv: &[f32; L] = w[r][k..k + L].try_into().expect("L values");
                for c in 0..C {
                    for l in 0..L {
                        acc[r][c][l] += wv[l] * xv[c][l];
                    }
                }
            }
        }
    } else {
        for k in (0..full).step_by(L) {
            for r in 0..RR {
                let wv: &[f32; L] = w[r][k..k + L].try_into().expect("L values");
                for c in 0..nc {
                    let xv: &[f32; L] = x[c][k..k + L].try_into().expect("L values");
                    for l in 0..L {
                        acc[r][c][l] += wv[l] * xv[l];
                    }
                }
            }
        }
    }
    for r in 0..RR {
        for c in 0..nc {
            for l in 0..n - full {
                acc[r][c][l] += w[r][full + l] * x[c][full + l];
            }
            res[r][c] = sum_lanes(acc[r][c]);
        }
    }
}

/// The 16 lanes summed by a fixed tree (halves, then quarters, ...).
#[inline(always)]
fn sum_lanes(mut a: [f32; L]) -> f32 {
    let mut h = L / 2;
    while h > 0 {
        for l in 0..h {
            a[l] += a[l + h];
        }
        h /= 2;
    }
    a[0]
}

/// The portable order for one pair, written plainly (for tests).
#[cfg(test)]
fn dot_plain(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    for (k, (&a, &b)) in w.iter().zip(x).enumerate() {
        acc[k % L] += a * b;
    }
    sum_lanes(acc)
}

// ------------------------------------------------------------------- AVX-512

/// Input rows per register block on the AVX-512 path: 4 × 6 accumulators,
/// 6 input vectors and one weight vector fit the 32 registers.
#[cfg(target_arch = "x86_64")]
const C_512: usize = 6;

/// # Safety
/// AVX-512 F/BW/VL, BMI2 and FMA must be available; `tile` and `xs` hold
/// whole rows of `cols > 0` values and `out` holds `tile rows × xs rows`
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
unsafe fn products_avx512(tile: &[f32], xs: &[f32], cols: usize, out: &mut [f32]) {
    for_blocks::<C_512>(
        tile,
        xs,
        cols,
        out,
        // SAFETY: this function's contract (AVX-512 present, whole rows).
        |w, x, res| unsafe { block_dispatch_avx512(w, x, res) },
        // SAFETY: as above.
        |w, x, res| unsafe { block_dispatch_avx512(w, x, res) },
    );
}

/// Calls [`block_avx512`] with the number of input rows as a constant.
///
/// # Safety
/// As [`block_avx512`]; `x.len() ≤ C_512`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
#[inline]
unsafe fn block_dispatch_avx512<const RR: usize>(
    w: &[&[f32]; RR],
    x: &[&[f32]],
    res: &mut [[f32; C_512]; RR],
) {
    macro_rules! go {
        ($c:literal) => {{
            let mut r = [[0.0f32; $c]; RR];
            // SAFETY: the caller upholds `block_avx512`'s contract.
            unsafe { block_avx512::<RR, $c>(w, &std::array::from_fn(|c| x[c]), &mut r) };
            for (d, s) in res.iter_mut().zip(&r) {
                d[..$c].copy_from_slice(s);
            }
        }};
    }
    match x.len() {
        1 => go!(1),
        2 => go!(2),
        3 => go!(3),
        4 => go!(4),
        5 => go!(5),
        6 => go!(6),
        _ => unreachable!("at most C_512 input rows"),
    }
}

/// `res[r][c] = w[r] · x[c]`: the register block of [`lanes_block`] over
/// the decoded rows (one 16-lane accumulator per pair, fused multiply-adds
/// in ascending `k`, a masked last block, then `_mm512_reduce_add_ps`).
///
/// # Safety
/// AVX-512 F/BW/VL, BMI2 and FMA must be available; every slice of `w` and
/// `x` has the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
#[inline]
unsafe fn block_avx512<const RR: usize, const C: usize>(
    w: &[&[f32]; RR],
    x: &[&[f32]; C],
    res: &mut [[f32; C]; RR],
) {
    debug_assert!(w.iter().chain(x).all(|r| r.len() == x[0].len()));
    // SAFETY: this function's contract; the reader's rows are `w`.
    unsafe { lanes_block(&TileRows(w), 0, x, res) }
}

/// The rows of a decoded tile block as a [`Lanes`] reader (row `r` is
/// `w[r]`).
#[cfg(target_arch = "x86_64")]
struct TileRows<'a, const RR: usize>(&'a [&'a [f32]; RR]);

#[cfg(target_arch = "x86_64")]
impl<const RR: usize> Lanes for TileRows<'_, RR> {
    #[inline(always)]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512 {
        // SAFETY: the caller guarantees AVX-512 and that lanes in `m` lie
        // in row `i` (masked lanes are not read).
        unsafe {
            let p = self.0[i].as_ptr().add(k);
            if m == 0xFFFF {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(m, p)
            }
        }
    }
}

// ------------------------------------------------------- in-register decoding

/// Reads 16 decoded weights of one row straight from the encoded form, for
/// the small-batch path (AVX-512). Every lane must equal the encoding's own
/// decoded value bit for bit, and masked-off lanes must be `+0.0`.
pub(crate) trait Lanes: Sync {
    /// Lanes `k..k + 16` of row `i`, masked to `m`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and BMI2 are available; row `i` exists, `k` is a
    /// multiple of 16 below the row length and `m` covers only positions
    /// below it.
    #[cfg(target_arch = "x86_64")]
    unsafe fn lanes(&self, i: usize, k: usize, m: __mmask16) -> __m512;

    /// Largest batch that reads through the reader for every input row
    /// block; larger batches decode tiles (through the reader) once.
    fn max_batch(&self) -> usize {
        LANES_MAX_BATCH
    }

    /// Row `i` decoded into `o` (the whole row), for a tile: exactly the
    /// values of [`lanes`](Self::lanes). The default reads 16 lanes at a
    /// time; a reader may decode more per step.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and BMI2 are available; row `i` exists and `o` holds
    /// it.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn decode_row(&self, i: usize, o: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { decode_row_by_lanes(self, i, o) }
    }
}

/// No reader: always decode tiles.
pub(crate) enum NoLanes {}

impl Lanes for NoLanes {
    #[cfg(target_arch = "x86_64")]
    unsafe fn lanes(&self, _: usize, _: usize, _: __mmask16) -> __m512 {
        match *self {}
    }
}

/// Decodes rows `row0..` into `tile` (whole rows of `cols > 0`) through `f`.
///
/// # Safety
/// AVX-512 F/BW/VL and BMI2 are available; the rows exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
pub(crate) unsafe fn decode_lanes_avx512<F: Lanes>(
    f: &F,
    row0: usize,
    cols: usize,
    tile: &mut [f32],
) {
    for (r, o) in tile.chunks_exact_mut(cols).enumerate() {
        // SAFETY: this function's contract; `o` is one whole row.
        unsafe { f.decode_row(row0 + r, o) }
    }
}

/// [`Lanes::decode_row`]'s default: 16 lanes at a time.
///
/// # Safety
/// As [`Lanes::decode_row`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn decode_row_by_lanes<F: Lanes + ?Sized>(f: &F, i: usize, o: &mut [f32]) {
    let cols = o.len();
    let p = o.as_mut_ptr();
    let mut k = 0;
    // SAFETY: `k < cols` and the mask covers only positions below `cols`
    // (the contract of `Lanes::lanes`); stores stay within the row.
    unsafe {
        while k + L <= cols {
            _mm512_storeu_ps(p.add(k), f.lanes(i, k, 0xFFFF));
            k += L;
        }
        if k < cols {
            let m: __mmask16 = (1u16 << (cols - k)) - 1;
            _mm512_mask_storeu_ps(p.add(k), m, f.lanes(i, k, m));
        }
    }
}

/// `out[r·batch + b] = W row (row0 + r) · x row b`, weights read through `f`.
///
/// # Safety
/// AVX-512 F/BW/VL, BMI2 and FMA are available; rows `row0..row0 + out.len()
/// / batch` exist; `xs` holds whole rows of `cols > 0` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
unsafe fn lanes_products_avx512<F: Lanes>(
    f: &F,
    row0: usize,
    xs: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    let batch = xs.len() / cols;
    let nr = out.len() / batch;
    let xrow = |b: usize| &xs[b * cols..(b + 1) * cols];
    macro_rules! run {
        ($c:literal, $b0:expr) => {{
            let x: [&[f32]; $c] = std::array::from_fn(|c| xrow($b0 + c));
            let mut i = 0;
            while i + R <= nr {
                let mut res = [[0.0f32; $c]; R];
                // SAFETY: this function's contract.
                unsafe { lanes_block::<F, R, $c>(f, row0 + i, &x, &mut res) };
                for (r, res) in res.iter().enumerate() {
                    out[(i + r) * batch + $b0..][..$c].copy_from_slice(res);
                }
                i += R;
            }
            while i < nr {
                let mut res = [[0.0f32; $c]; 1];
                // SAFETY: as above.
                unsafe { lanes_block::<F, 1, $c>(f, row0 + i, &x, &mut res) };
                out[i * batch + $b0..][..$c].copy_from_slice(&res[0]);
                i += 1;
            }
        }};
    }
    let mut b0 = 0;
    while b0 < batch {
        match batch - b0 {
            1 => run!(1, b0),
            2 => run!(2, b0),
            3 => run!(3, b0),
            _ => run!(4, b0),
        }
        b0 += 4;
    }
}

/// [`block_avx512`] with the weights of rows `i0..i0 + RR` read through `f`.
///
/// # Safety
/// As [`lanes_products_avx512`]; every `x[c]` holds one whole row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi2")]
#[inline]
#[allow(clippy::needless_range_loop)] // register blocks: r indexes rows and accumulators
unsafe fn lanes_block<F: Lanes, const RR: usize, const C: usize>(
    f: &F,
    i0: usize,
    x: &[&[f32]; C],
    res: &mut [[f32; C]; RR],
) {
    let n = x[0].len();
    let xp = x.map(|r| r.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); C]; RR];
    let mut k = 0;
    // SAFETY: `k + L ≤ n` in the loop, the last block is masked, and the
    // reader's contract holds (rows exist, `k < n`).
    unsafe {
        while k + L <= n {
            let xv: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(xp[c].add(k)));
            for r in 0..RR {
                let wv = f.lanes(i0 + r, k, 0xFFFF);
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
                }
            }
            k += L;
        }
        if k < n {
            let m: __mmask16 = (1u16 << (n - k)) - 1;
            let xv: [__m512; C] = std::array::from_fn(|c| _mm512_maskz_loadu_ps(m, xp[c].add(k)));
            for r in 0..RR {
                let wv = f.lanes(i0 + r, k, m);
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
                }
            }
        }
    }
    // SAFETY: AVX-512F (this function's features).
    unsafe { reduce_block(&acc, res, None) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{Sequential, ThreadPool};

    fn data(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((((i + seed) * 2654435761) % 1009) as f32 - 504.0) / 97.0)
            .collect()
    }

    /// Every pair equals the plain one-pair order (portable) or is close to
    /// it (AVX-512), and every row is bit-identical whatever the batch.
    #[test]
    fn each_pair_is_the_same_dot_at_every_batch() {
        let pool = ThreadPool::new(3).unwrap();
        for (rows, cols) in [(1, 1), (7, 15), (9, 16), (13, 33), (70, 300), (5, 4100)] {
            let w = data(rows, cols, 1);
            let dec = |r0: usize, out: &mut [f32]| {
                out.copy_from_slice(&w[r0 * cols..r0 * cols + out.len()])
            };
            let xall = Array2::from_shape_vec((23, cols), data(23, cols, 7)).unwrap();
            for tier in [Tier::Portable, Tier::Avx512] {
                let whole = matmul(
                    rows,
                    cols,
                    dec,
                    None::<&NoLanes>,
                    xall.view(),
                    &Sequential,
                    tier,
                );
                for b in 0..23 {
                    for i in 0..rows {
                        let x = xall.row(b);
                        let x = x.as_slice().unwrap();
                        let wr = &w[i * cols..(i + 1) * cols];
                        let exact: f64 = wr.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let bound: f64 = wr
                            .iter()
                            .zip(x)
                            .map(|(&a, &b)| (a as f64 * b as f64).abs())
                            .sum();
                        let got = whole[[b, i]];
                        assert!((got as f64 - exact).abs() <= 1e-5 * bound + 1e-6);
                        if tier.capped() == Tier::Portable {
                            assert_eq!(got.to_bits(), dot_plain(wr, x).to_bits());
                        }
                    }
                }
                for batch in [1, 2, 3, 4, 5, 6, 7, 8, 12, 16] {
                    for b0 in [0, 23 - batch] {
                        let xs = xall.slice(ndarray::s![b0..b0 + batch, ..]);
                        for y in [
                            matmul(rows, cols, dec, None::<&NoLanes>, xs, &Sequential, tier),
                            matmul(rows, cols, dec, None::<&NoLanes>, xs, &pool, tier),
                        ] {
                            let want = whole.slice(ndarray::s![b0..b0 + batch, ..]);
                            assert!(
                                y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{rows}x{cols} batch {batch} at {b0} {tier:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
