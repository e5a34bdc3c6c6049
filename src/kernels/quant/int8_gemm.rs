//! int8 weights × int8 (dynamically quantized) activations → i32 → f32.
//!
//! `y[b, n] = s_b · Σ_seg s_seg·(Σ_k x_bk·w_nk − z_seg·Σ_k x_bk)` over the runs
//! of row `n` that share a weight scale `s_seg` and zero-point `z_seg`;
//! `s_b` is the activation scale of row `b`. The inner sums are exact
//! integers, so every path (VNNI, portable, reference) gives bit-identical
//! results. The VNNI paths compute `(x + 128)·w` with `vpdpbusd` (unsigned ×
//! signed bytes) and subtract `128·Σw`, with `Σw` per row and segment
//! computed once in `Prepared`.
//!
//! The fast path (VNNI, segments of whole 64-byte blocks; weights the
//! `int8_panel` layout does not take) packs the batch
//! once per call into `[batch tile][block][TB rows][64]` (`x + 128`, rows
//! padded to a whole tile, the last block zero-padded) and multiplies each
//! tile of `TR` weight rows by every batch tile in one call, so the weight
//! rows stay in L1 while the packed batch streams from L2.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::Array2;

use super::QuantizedActivations;
use super::{segments, Isa};
use crate::matrix::{Granularity, Int8Values};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// Tile edge of the generic paths (weight rows and batch rows).
const T: usize = 4;
/// Weight rows per tile of the fast path.
const TR: usize = 6;
/// Batch rows per tile of the fast path.
const TB: usize = 4;
/// Longest run summed in i32 at once: 255·128·2^15 < 2^31.
const CHUNK: usize = 1 << 15;

/// What the product needs from the weights on every call, computed once:
/// `Σw` over each segment (the runs that share a parameter set) of each row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Prepared {
    /// Segment length: the group size, or the whole row.
    seg: usize,
    /// Segments per row.
    nseg: usize,
    /// `Σw` per `[row][segment]`.
    wsum: Vec<i64>,
    /// The weights repacked for the panel paths (VNNI at GEMM shapes,
    /// AVX2 at every batch; [`int8_panel`](super::int8_panel)), when they
    /// apply.
    panels: Option<super::int8_panel::Panels>,
}

impl Prepared {
    /// Sums of `v`, a uniform layout of full rows.
    pub(crate) fn new(v: &Int8Values) -> Self {
        let cols = v.layout.max_row_len();
        let seg = segment_len(v, cols);
        let nseg = cols.div_ceil(seg);
        let wsum = if cols == 0 {
            Vec::new()
        } else {
            v.codes()
                .chunks(cols)
                .flat_map(|r| r.chunks(seg).map(|s| s.iter().map(|&q| q as i64).sum()))
                .collect()
        };
        let panels = if cfg!(target_arch = "x86_64") && Isa::detect() >= Isa::Avx2 {
            super::int8_panel::Panels::new(v)
        } else {
            None
        };
        Prepared {
            seg,
            nseg,
            wsum,
            panels,
        }
    }
}

/// Length of the runs of a row of `cols` that share one parameter set.
fn segment_len(v: &Int8Values, cols: usize) -> usize {
    match v.params().granularity() {
        Granularity::PerGroup(g) => g,
        _ => cols.max(1),
    }
}

/// `[batch, rows]` product of the stored rows of `v` with `xq`; `prep`
/// must come from `v`.
pub(crate) fn matmul(
    v: &Int8Values,
    prep: &Prepared,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Array2<f32> {
    let isa = isa.capped();
    // The panels at every batch where the weights allow them: at 4096²
    // on VNNI they measured 1.6–2.5× faster than `fast`'s dot products at
    // batch 1–4 too (resident weights; `fast` took batches below 6 before).
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = &prep.panels {
        if let Some(y) = super::int8_panel::matmul(p, xq, exec, isa) {
            return y;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && (prep.nseg == 1 || prep.seg.is_multiple_of(64)) {
        return fast::matmul(v, prep, xq, exec);
    }
    // Every granularity and tier: the portable path, and VNNI on segments
    // that are not whole 64-byte blocks.
    let rows = v.layout.rows();
    let cols = xq.cols;
    let batch = xq.rows;
    let xs = activation_sums(v, xq);
    // VNNI multiplies unsigned by signed bytes: feed x + 128 (once per call).
    let xu: Vec<u8> = if isa == Isa::Avx512Vnni {
        xq.codes.iter().map(|&c| c as u8 ^ 0x80).collect()
    } else {
        Vec::new()
    };
    let per = rows_per_task(cols, 1 << 16).next_multiple_of(T);
    let nbt = batch.div_ceil(T);
    row_blocks(rows, batch, per, exec, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch;
        // Integer dots of one row tile with every batch row, and the f32 sums.
        let mut dots = vec![[[0i64; T]; T]; nbt];
        let mut acc = vec![[[0.0f32; T]; T]; nbt];
        for rt in (0..nr).step_by(T) {
            // Edge tiles repeat the last row / batch row; extra results are dropped.
            let ri: [usize; T] = std::array::from_fn(|u| r0 + (rt + u).min(nr - 1));
            acc.iter_mut().for_each(|a| *a = [[0.0; T]; T]);
            for (seg, (a, b, _)) in segments(v.params(), ri[0], cols).enumerate() {
                for (bt, d) in dots.iter_mut().enumerate() {
                    let bi: [usize; T] = std::array::from_fn(|c| (bt * T + c).min(batch - 1));
                    *d = tile(v, xq, &xu, ri, bi, (a, b), isa);
                }
                // (x + 128)·w was summed on VNNI: remove 128·Σw.
                let wsum: [i64; T] = ri.map(|i| {
                    if xu.is_empty() {
                        return 0;
                    }
                    128 * prep.wsum[i * prep.nseg + seg]
                });
                let sz = ri.map(|i| v.params().get(v.params().index(i, a)));
                for (bt, (d, acc)) in dots.iter().zip(acc.iter_mut()).enumerate() {
                    let xsum: [i64; T] =
                        std::array::from_fn(|c| xs[(bt * T + c).min(batch - 1)][seg]);
                    for u in 0..T {
                        let (s, z) = sz[u];
                        for c in 0..T {
                            let d = d[u][c] - wsum[u] - z as i64 * xsum[c];
                            acc[u][c] = s.mul_add(d as f32, acc[u][c]);
                        }
                    }
                }
            }
            for (bt, acc) in acc.iter().enumerate() {
                for (u, acc) in acc.iter().enumerate().take(nr - rt) {
                    for (c, a) in acc.iter().enumerate().take(batch - bt * T) {
                        let bc = bt * T + c;
                        out[(rt + u) * batch + bc] = a * xq.scales[bc];
                    }
                }
            }
        }
    })
}

/// `y = (x ⊙ m)·Wᵀ + b` fused (see [`int8_panel::linear`](super::int8_panel)):
/// quantization of `x` (`[batch, cols]` row-major; `m` empty: no scaling),
/// product and bias in one call, equal bit for bit to quantizing `x ⊙ m`,
/// [`matmul`] and adding `b`. `None` where that path does not apply (no
/// panels) or a value is not finite: the caller takes the unfused path, which
/// reports the error.
pub(crate) fn linear(
    prep: &Prepared,
    x: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
) -> Option<Array2<f32>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = &prep.panels {
        return super::int8_panel::linear(p, x, m, bias, exec, Isa::detect());
    }
    let _ = (prep, x, m, bias, exec);
    None
}

/// Σ x over each weight segment, per batch row.
fn activation_sums(v: &Int8Values, xq: &QuantizedActivations) -> Vec<Vec<i64>> {
    let g = segment_len(v, xq.cols);
    (0..xq.rows)
        .map(|b| {
            xq.row(b)
                .chunks(g)
                .map(|c| c.iter().map(|&q| q as i64).sum())
                .collect()
        })
        .collect()
}

/// Integer dots `Σ_{k∈a..b} w[ri[u], k]·x[bi[c], k]` of a tile; on VNNI
/// `x + 128` in place of `x` (the caller removes `128·Σw`).
fn tile(
    v: &Int8Values,
    xq: &QuantizedActivations,
    xu: &[u8],
    ri: [usize; T],
    bi: [usize; T],
    (a, b): (usize, usize),
    isa: Isa,
) -> [[i64; T]; T] {
    let cols = xq.cols;
    let w: [&[i8]; T] = ri.map(|i| &v.codes()[i * cols + a..i * cols + b]);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        let x: [&[u8]; T] = bi.map(|j| &xu[j * cols + a..j * cols + b]);
        let mut out = [[0i64; T]; T];
        let mut k = 0;
        while k < b - a {
            let n = (b - a - k).min(CHUNK);
            // SAFETY: the Avx512Vnni tier is only reachable when detected.
            let d = unsafe { tile_vnni(w.map(|s| &s[k..k + n]), x.map(|s| &s[k..k + n])) };
            for u in 0..T {
                for c in 0..T {
                    out[u][c] += d[u][c] as i64;
                }
            }
            k += n;
        }
        return out;
    }
    let _ = (isa, xu);
    let x: [&[i8]; T] = bi.map(|j| &xq.row(j)[a..b]);
    std::array::from_fn(|u| std::array::from_fn(|c| dot_i8(w[u], x[c])))
}

/// Plain integer dot product.
fn dot_i8(w: &[i8], x: &[i8]) -> i64 {
    w.chunks(CHUNK)
        .zip(x.chunks(CHUNK))
        .map(|(w, x)| {
            w.iter()
                .zip(x)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum::<i32>() as i64
        })
        .sum()
}

/// `Σ (x + 128)·w` for a 4 × 4 tile (all slices of one length ≤ CHUNK).
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; all slices must have one length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni(w: [&[i8]; T], x: [&[u8]; T]) -> [[i32; T]; T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = w[0].len();
        let mut acc = [[_mm512_setzero_si512(); T]; T];
        let mut k = 0;
        while k + 64 <= n {
            let mut wv = [_mm512_setzero_si512(); T];
            for u in 0..T {
                wv[u] = _mm512_loadu_si512(w[u].as_ptr().add(k) as *const _);
            }
            for c in 0..T {
                let xv = _mm512_loadu_si512(x[c].as_ptr().add(k) as *const _);
                for u in 0..T {
                    acc[u][c] = _mm512_dpbusd_epi32(acc[u][c], xv, wv[u]);
                }
            }
            k += 64;
        }
        while k < n {
            // Masked-off lanes load 0 for w, so they add nothing.
            let m: __mmask64 = if n - k >= 64 {
                u64::MAX
            } else {
                (1u64 << (n - k)) - 1
            };
            let mut wv = [_mm512_setzero_si512(); T];
            for u in 0..T {
                wv[u] = _mm512_maskz_loadu_epi8(m, w[u].as_ptr().add(k));
            }
            for c in 0..T {
                let xv = _mm512_maskz_loadu_epi8(m, x[c].as_ptr().add(k) as *const i8);
                for u in 0..T {
                    acc[u][c] = _mm512_dpbusd_epi32(acc[u][c], xv, wv[u]);
                }
            }
            k += 64;
        }
        let flat: [__m512i; T * T] = std::array::from_fn(|i| acc[i / T][i % T]);
        let mut sums = [0i32; T * T];
        _mm512_storeu_si512(sums.as_mut_ptr() as *mut _, reduce16(flat));
        std::array::from_fn(|u| std::array::from_fn(|c| sums[u * T + c]))
    }
}

/// Lane `i` of the result is the sum of the 16 lanes of `v[i]` (a transposed
/// reduction: 15 adds instead of 16 separate reductions).
///
/// Safe to call from code compiled with AVX-512F (`unsafe` elsewhere).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn reduce16(v: [__m512i; 16]) -> __m512i {
    // Pairs: per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3].
    let t: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Quads: per 128-bit lane [a, b, c, d] partial sums.
    let q: [__m512i; 4] = std::array::from_fn(|i| {
        let (a, b) = (t[2 * i], t[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    });
    // Sum the four 128-bit lanes of each quad.
    let h = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(a, b),
            _mm512_shuffle_i32x4::<0xDD>(a, b),
        )
    };
    let u0 = h(q[0], q[1]);
    let u1 = h(q[2], q[3]);
    h(u0, u1)
}

/// The VNNI path for segments of whole 64-byte blocks (see the module docs).
#[cfg(target_arch = "x86_64")]
mod fast {
    use super::*;

    /// Bytes of one 64-lane block.
    const BLK: usize = 64;

    pub(super) fn matmul(
        v: &Int8Values,
        prep: &Prepared,
        xq: &QuantizedActivations,
        exec: &dyn ParallelExecutor,
    ) -> Array2<f32> {
        // One activation row per tile at batch 1: a tile of `TB` would
        // multiply three rows of padding (4× the VNNI work of a GEMV). The
        // integer sums are exact, so the bits do not depend on the tile.
        if xq.rows == 1 {
            matmul_tiles::<1>(v, prep, xq, exec)
        } else {
            matmul_tiles::<TB>(v, prep, xq, exec)
        }
    }

    /// [`matmul`] with `B` activation rows per batch tile.
    fn matmul_tiles<const B: usize>(
        v: &Int8Values,
        prep: &Prepared,
        xq: &QuantizedActivations,
        exec: &dyn ParallelExecutor,
    ) -> Array2<f32> {
        let rows = v.layout.rows();
        let (batch, cols) = (xq.rows, xq.cols);
        let nkb = cols.div_ceil(BLK);
        let nbt = batch.div_ceil(B);
        let bp = nbt * B;
        let xpk = pack::<B>(xq, nkb, nbt);
        // Σx per [segment][padded batch row], exact in f64.
        let mut xs = vec![0.0f64; prep.nseg * bp];
        for b in 0..batch {
            for (s, c) in xq.row(b).chunks(prep.seg).enumerate() {
                xs[s * bp + b] = c.iter().map(|&q| q as i64).sum::<i64>() as f64;
            }
        }
        let ctx = Ctx {
            v,
            prep,
            xq,
            xpk: &xpk,
            xs: &xs,
            nkb,
            nbt,
            bp,
        };
        // Whole cache lines of output per batch row when the task is copied out.
        let per = rows_per_task(cols, 1 << 18).next_multiple_of(TR * 16);
        let mut y = vec![0.0f32; batch * rows];
        let out = Out(y.as_mut_ptr());
        exec.run(rows.div_ceil(per), &|t| {
            let r0 = t * per;
            ctx.rows::<B>(r0, per.min(rows - r0), rows, &out)
        });
        Array2::from_shape_vec((batch, rows), y).expect("sizes match")
    }

    /// `x + 128` as `[batch tile][block][B rows][64]`; padding (rows past
    /// the batch, lanes past the row) is `x = 0`.
    fn pack<const B: usize>(xq: &QuantizedActivations, nkb: usize, nbt: usize) -> Vec<u8> {
        let mut p = vec![0x80u8; nbt * nkb * B * BLK];
        for b in 0..xq.rows {
            let (bt, c) = (b / B, b % B);
            for (kb, src) in xq.row(b).chunks(BLK).enumerate() {
                let o = &mut p[((bt * nkb + kb) * B + c) * BLK..][..src.len()];
                for (o, &q) in o.iter_mut().zip(src) {
                    *o = q as u8 ^ 0x80;
                }
            }
        }
        p
    }

    /// The `[batch, rows]` output, shared by the tasks: task `t` writes
    /// only its own columns.
    struct Out(*mut f32);
    // SAFETY: tasks write disjoint elements (see `Ctx::rows`).
    unsafe impl Sync for Out {}

    /// What every task reads.
    struct Ctx<'a> {
        v: &'a Int8Values,
        prep: &'a Prepared,
        xq: &'a QuantizedActivations,
        xpk: &'a [u8],
        xs: &'a [f64],
        nkb: usize,
        nbt: usize,
        bp: usize,
    }

    impl Ctx<'_> {
        /// Columns `r0..r0 + nr` of the `[batch, rows]` product, into `y`.
        fn rows<const B: usize>(&self, r0: usize, nr: usize, rows: usize, y: &Out) {
            let (cols, bp) = (self.xq.cols, self.bp);
            let (seg, nseg) = (self.prep.seg, self.prep.nseg);
            let params = self.v.params();
            // Integer dots of one row tile with every (padded) batch row, [TR][bp].
            let mut dots = vec![0.0f64; TR * bp];
            let mut acc = vec![0.0f32; TR * bp];
            // This task's columns, `[batch][nr]`, copied out whole at the end
            // (scattered stores into `y` would touch a page per batch row per tile).
            let batch = self.xq.rows;
            let mut out = vec![0.0f32; batch * nr];
            for rt in (0..nr).step_by(TR) {
                // An edge tile repeats its last row; the extra results are dropped.
                let ri: [usize; TR] = std::array::from_fn(|u| r0 + (rt + u).min(nr - 1));
                acc.fill(0.0);
                for s in 0..nseg {
                    let (a, e) = (s * seg, (s * seg + seg).min(cols));
                    let mut k = a;
                    while k < e {
                        let n = (e - k).min(CHUNK);
                        let w = ri.map(|i| self.v.codes()[i * cols + k..].as_ptr());
                        // Rows two tiles ahead, prefetched while this tile computes:
                        // each weight row is its own run of pages, which the
                        // hardware prefetcher does not follow across.
                        let pf: [*const i8; TR] = std::array::from_fn(|u| {
                            let i = (r0 + rt + 2 * TR + u).min(self.v.layout.rows() - 1);
                            self.v.codes()[i * cols + k..].as_ptr()
                        });
                        let x = &self.xpk[k / BLK * B * BLK..];
                        // SAFETY: this path is only taken when VNNI was
                        // detected; `w` rows hold `n` codes from `k`, and the
                        // packed batch holds every tile's blocks from `k / 64`
                        // to `⌈(k + n) / 64⌉` (k is a multiple of 64).
                        unsafe {
                            row_tile::<B>(
                                w,
                                pf,
                                n,
                                x.as_ptr(),
                                self.nkb * B * BLK,
                                self.nbt,
                                &mut dots,
                                k > a,
                            )
                        };
                        k += n;
                    }
                    let sz = ri.map(|i| params.get(params.index(i, a)));
                    let wsum = ri.map(|i| self.prep.wsum[i * nseg + s]);
                    // SAFETY: as above.
                    unsafe { epilogue(&dots, &mut acc, &self.xs[s * bp..(s + 1) * bp], sz, wsum) };
                }
                for u in 0..TR.min(nr - rt) {
                    for (b, (&a, &sb)) in acc[u * bp..].iter().zip(&self.xq.scales).enumerate() {
                        out[b * nr + rt + u] = a * sb;
                    }
                }
            }
            for (b, src) in out.chunks_exact(nr).enumerate() {
                // SAFETY: row b < batch, columns r0..r0 + nr ≤ rows, and no
                // other task writes these columns.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), y.0.add(b * rows + r0), nr) };
            }
        }
    }

    /// `acc[u][b] += s_u·(dots[u][b] − 128·Σw_u − z_u·Σx_b)` rounded to f32
    /// exactly as the reference does (the difference is an exact integer in
    /// f64, rounded once). AVX-512 so that the loop vectorizes wide.
    #[target_feature(enable = "avx512f")]
    fn epilogue(dots: &[f64], acc: &mut [f32], xs: &[f64], sz: [(f32, i32); TR], wsum: [i64; TR]) {
        let bp = xs.len();
        for u in 0..TR {
            let (s, z) = sz[u];
            let (wc, zf) = (128.0 * wsum[u] as f64, z as f64);
            let d = &dots[u * bp..(u + 1) * bp];
            for ((a, &d), &x) in acc[u * bp..(u + 1) * bp].iter_mut().zip(d).zip(xs) {
                *a = s.mul_add((d - (wc + zf * x)) as f32, *a);
            }
        }
    }

    /// `Σ (x + 128)·w` over `n ≤ CHUNK` lanes of `TR` weight rows and every
    /// batch tile (`x` at the tiles' first block, `stride` bytes apart),
    /// stored (or added, with `add`) into `dots` as `[TR][bp]`. The `n`
    /// codes of the rows at `pf` are prefetched, spread evenly over the steps.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI must be available; each `w[u]` must point at `n`
    /// readable codes and each `pf[u]` into (or one past) a live allocation;
    /// `x` must point at `nbt` batch tiles `stride` bytes apart, each with
    /// `B ≤ TB` rows of `n.div_ceil(64)·64` bytes; `dots` must hold `TR·nbt·B`
    /// values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_tile<const B: usize>(
        w: [*const i8; TR],
        pf: [*const i8; TR],
        n: usize,
        x: *const u8,
        stride: usize,
        nbt: usize,
        dots: &mut [f64],
        add: bool,
    ) {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            debug_assert!(B <= TB && n <= CHUNK && dots.len() == TR * nbt * B);
            let bp = nbt * B;
            let full = n / BLK;
            let rem = n % BLK;
            // Bresenham spread: `lines` prefetches over `steps` block steps.
            let lines = TR * full;
            let steps = nbt * full;
            let (mut debt, mut pu, mut po) = (0, 0, 0);
            for bt in 0..nbt {
                let xb = x.add(bt * stride);
                let mut acc = [[_mm512_setzero_si512(); B]; TR];
                let mut step = |kb: usize, wv: [__m512i; TR]| {
                    for c in 0..B {
                        let xv = _mm512_loadu_si512(xb.add((kb * B + c) * BLK) as *const _);
                        for (acc, &wu) in acc.iter_mut().zip(&wv) {
                            acc[c] = _mm512_dpbusd_epi32(acc[c], xv, wu);
                        }
                    }
                };
                for kb in 0..full {
                    debt += lines;
                    while debt >= steps && pu < TR {
                        debt -= steps;
                        _mm_prefetch::<_MM_HINT_T1>(pf[pu].add(po));
                        po += BLK;
                        if po == full * BLK {
                            (pu, po) = (pu + 1, 0);
                        }
                    }
                    step(
                        kb,
                        w.map(|p| _mm512_loadu_si512(p.add(kb * BLK) as *const _)),
                    );
                }
                if rem > 0 {
                    // Lanes past the row load w = 0 and add nothing.
                    let m: __mmask64 = (1u64 << rem) - 1;
                    step(
                        full,
                        w.map(|p| _mm512_maskz_loadu_epi8(m, p.add(full * BLK))),
                    );
                }
                // Reduced 16 accumulators at a time (zero-padded to whole 16s).
                let mut sums = [0i32; TR * TB + 15];
                for g in 0..(TR * B).div_ceil(16) {
                    let flat: [__m512i; 16] = std::array::from_fn(|i| {
                        let i = g * 16 + i;
                        if i < TR * B {
                            acc[i / B][i % B]
                        } else {
                            _mm512_setzero_si512()
                        }
                    });
                    _mm512_storeu_si512(sums.as_mut_ptr().add(g * 16) as *mut _, reduce16(flat));
                }
                for u in 0..TR {
                    let d = &mut dots[u * bp + bt * B..][..B];
                    for (d, &s) in d.iter_mut().zip(&sums[u * B..(u + 1) * B]) {
                        *d = if add { *d + s as f64 } else { s as f64 };
                    }
                }
            }
        }
    }
}

/// Plain reference for the int8 × int8 product (same formula, plain loops):
/// `[batch, stored rows]`.
pub fn gemm_reference(v: &Int8Values, xq: &QuantizedActivations) -> Array2<f32> {
    let cols = xq.cols;
    Array2::from_shape_fn((xq.rows, v.layout.rows()), |(b, n)| {
        let x = xq.row(b);
        let w = &v.codes()[n * cols..(n + 1) * cols];
        let mut acc = 0.0f32;
        for (a, e, p) in segments(v.params(), n, cols) {
            let (s, z) = v.params().get(p);
            let dot: i64 = (a..e).map(|k| w[k] as i64 * x[k] as i64).sum();
            let xs: i64 = x[a..e].iter().map(|&q| q as i64).sum();
            acc = s.mul_add((dot - z as i64 * xs) as f32, acc);
        }
        acc * xq.scales[b]
    })
}
