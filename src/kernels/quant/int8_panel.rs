//! int8 weights × int8 activations at GEMM shapes, without horizontal sums:
//! the oneDNN layout for VNNI.
//!
//! The weights are repacked once into panels of 16 output rows, four input
//! columns at a time (`[panel][k/4][16][4]`), so that one `vpdpbusd`
//! multiplies four activation bytes of one token (broadcast) by four codes of
//! 16 outputs and adds them into 16 lanes, one per output. A micro-tile of
//! [`MR`] tokens × [`NV`]·16 outputs keeps its integer sums in registers for
//! one parameter group, then adds `s·(Σ(x + 128)·w − 128·Σw)` to f32 sums,
//! also in registers; nothing is reduced across lanes. Per-group scales
//! therefore cost one convert, subtract, multiply and add per 16 outputs and
//! group, which is what makes group-128 weights as fast as per-row ones.
//!
//! The integer sums are exact and the f32 steps are the reference's
//! (`acc += s·d`, then `acc·s_x`), in the same order, so the result equals
//! [`gemm_reference`](super::int8_gemm::gemm_reference) bit for bit.
//! Symmetric weights (no zero-points) in whole rows only; groups must be
//! multiples of 4 columns.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::Array2;

use super::QuantizedActivations;
use crate::matrix::{Granularity, Int8Values};
use crate::parallel::ParallelExecutor;

/// Tokens per micro-tile.
const MR: usize = 6;
/// 16-lane vectors of outputs per micro-tile.
const NV: usize = 2;
/// Output rows per panel (one vector).
const P: usize = 16;
/// Longest group summed in i32 at once: 255·127·g < 2^31.
const MAX_GROUP: usize = 1 << 15;

/// The weights repacked for [`matmul`], with what the product needs per
/// group: `128·Σw` and the scale, per output.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Panels {
    /// Output rows (stored rows of the matrix).
    rows: usize,
    /// Input columns, and rounded up to a multiple of 4.
    cols: usize,
    kp: usize,
    /// Group length in columns, and groups per row.
    g: usize,
    ng: usize,
    /// `[panel][kp/4][16][4]` codes (zero past the matrix).
    w: Vec<i8>,
    /// `128·Σw` per `[panel][group][16]`.
    comp: Vec<i32>,
    /// Scale per `[panel][group][16]`.
    scale: Vec<f32>,
}

impl Panels {
    /// The panels of `v`, or `None` when this layout does not apply
    /// (zero-points, rows of different lengths, groups not a multiple of 4
    /// or too long for i32 sums).
    pub(crate) fn new(v: &Int8Values) -> Option<Self> {
        let params = v.params();
        let rows = v.layout.rows();
        let cols = v.layout.max_row_len();
        if params.zero_points().is_some()
            || rows == 0
            || cols == 0
            || v.codes().len() != rows * cols
        {
            return None;
        }
        let g = match params.granularity() {
            Granularity::PerGroup(g) if g.is_multiple_of(4) || g >= cols => g.min(cols),
            Granularity::PerGroup(_) => return None,
            _ => cols,
        };
        if g > MAX_GROUP {
            return None;
        }
        let ng = cols.div_ceil(g);
        let kp = cols.next_multiple_of(4);
        let np = rows.div_ceil(P);
        let mut w = vec![0i8; np * kp * P];
        let mut comp = vec![0i32; np * ng * P];
        let mut scale = vec![0.0f32; np * ng * P];
        for n in 0..rows {
            let (p, l) = (n / P, n % P);
            let row = &v.codes()[n * cols..(n + 1) * cols];
            for (k, &q) in row.iter().enumerate() {
                w[((p * kp / 4 + k / 4) * P + l) * 4 + k % 4] = q;
            }
            for j in 0..ng {
                let s: i32 = row[j * g..((j + 1) * g).min(cols)]
                    .iter()
                    .map(|&q| q as i32)
                    .sum();
                comp[(p * ng + j) * P + l] = 128 * s;
                scale[(p * ng + j) * P + l] = params.get(params.index(n, j * g)).0;
            }
        }
        Some(Panels {
            rows,
            cols,
            kp,
            g,
            ng,
            w,
            comp,
            scale,
        })
    }
}

impl Panels {
    /// Input columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// `[batch, rows]` product of the panels with `xq` (columns must match).
/// AVX-512 VNNI only: the caller checks the tier.
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul(
    p: &Panels,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    debug_assert_eq!(xq.cols, p.cols);
    let batch = xq.rows;
    let mut xu = vec![0x80u8; batch.next_multiple_of(MR) * p.kp];
    for b in 0..batch {
        for (o, &c) in xu[b * p.kp..b * p.kp + p.cols].iter_mut().zip(xq.row(b)) {
            *o = c as u8 ^ 0x80;
        }
    }
    product(p, &xu, &xq.scales, None, exec)
}

/// Rows quantized per task by [`linear`].
const QUANT_ROWS: usize = 16;
/// Batches of fewer values are quantized on the calling thread.
const SERIAL_QUANT: usize = 1 << 15;

/// `y = (x ⊙ m)·Wᵀ + b` in one call: each row of `x` (`[batch, cols]`,
/// row-major) is scaled by `m` (empty: not at all), quantized per row
/// and stored as the kernel's unsigned operand in one pass
/// ([`quantize_row_u8`](super::activations::quantize_row_u8), in parallel
/// over fixed row blocks), then multiplied, with the activation scale and
/// the bias applied in the micro-kernel's last step. Equal bit for bit to
/// quantizing `x ⊙ m` with `quantize_activations`, [`matmul`], then adding
/// `b`. `None` when a value of `x ⊙ m` is not finite.
/// AVX-512 VNNI only: the caller checks the tier.
#[cfg(target_arch = "x86_64")]
pub(crate) fn linear(
    p: &Panels,
    x: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
) -> Option<Array2<f32>> {
    let cols = p.cols;
    debug_assert!(x.len().is_multiple_of(cols) && (m.is_empty() || m.len() == cols));
    let batch = x.len() / cols;
    let kp = p.kp;
    let mut xu = vec![0x80u8; batch.next_multiple_of(MR) * kp];
    let mut scales = vec![0.0f32; batch];
    let ok = std::sync::atomic::AtomicBool::new(true);
    {
        let (xo, so) = (Out(xu.as_mut_ptr()), Out(scales.as_mut_ptr()));
        let (xo, so, ok) = (&xo, &so, &ok);
        let tasks = batch.div_ceil(QUANT_ROWS);
        let quantize = &|t: usize| {
            let mut tmp = if m.is_empty() {
                Vec::new()
            } else {
                vec![0.0f32; cols]
            };
            for b in t * QUANT_ROWS..((t + 1) * QUANT_ROWS).min(batch) {
                // SAFETY: row b of `xu` (kp ≥ cols bytes) and scale b are
                // written by this task only.
                let out = unsafe { std::slice::from_raw_parts_mut(xo.ptr().add(b * kp), cols) };
                match super::activations::quantize_row_u8(
                    &x[b * cols..(b + 1) * cols],
                    m,
                    &mut tmp,
                    out,
                ) {
                    // SAFETY: as above.
                    Some(s) => unsafe { *so.ptr().add(b) = s },
                    None => ok.store(false, std::sync::atomic::Ordering::Relaxed),
                }
            }
        };
        // Small batches on this thread (a parallel step costs more);
        // rows are independent, so the codes are the same either way.
        if batch * cols < SERIAL_QUANT {
            (0..tasks).for_each(quantize);
        } else {
            exec.run(tasks, quantize);
        }
    }
    if !ok.into_inner() {
        return None;
    }
    Some(product(p, &xu, &scales, bias, exec))
}

/// The product of the panels with `xu` (`x + 128`, rows of `kp` bytes,
/// zero-padded to a whole number of `MR`-row tiles) scaled by `sx` per row,
/// plus `bias` per output.
#[cfg(target_arch = "x86_64")]
fn product(
    p: &Panels,
    xu: &[u8],
    sx: &[f32],
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
) -> Array2<f32> {
    let batch = sx.len();
    let np = p.rows.div_ceil(P);
    // The bias per output, zero past the matrix (whole panels).
    let bias: Option<Vec<f32>> = bias.map(|b| {
        let mut v = vec![0.0f32; np * P];
        v[..p.rows].copy_from_slice(&b[..p.rows]);
        v
    });
    let bias = bias.as_deref();
    // Column blocks of NV panels; a task takes `per` of them.
    let nblk = np.div_ceil(NV);
    let per = 2usize;
    let ntask = nblk.div_ceil(per);
    // Every element is written below (each task all rows of its columns).
    let mut y = Vec::<f32>::with_capacity(batch * p.rows);
    let out = Out(y.as_mut_ptr());
    let out = &out;
    exec.run(ntask, &|t| {
        let mut tile = [[0.0f32; NV * P]; MR];
        for blk in t * per..((t + 1) * per).min(nblk) {
            let p0 = blk * NV;
            for b0 in (0..batch).step_by(MR) {
                // SAFETY: VNNI is checked by the caller; `xu` holds whole
                // tiles of `kp` bytes per row; panels `p0..p0 + NV` exist or
                // are clamped to the last one (their results are dropped).
                unsafe { micro(p, xu, b0, p0, np, sx, bias, &mut tile) };
                for (r, row) in tile.iter().enumerate().take(batch - b0) {
                    let n0 = p0 * P;
                    let n = (NV * P).min(p.rows - n0);
                    // SAFETY: row b0 + r < batch and columns n0..n0 + n ≤ rows;
                    // only this task writes columns of its blocks.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            row.as_ptr(),
                            out.ptr().add((b0 + r) * p.rows + n0),
                            n,
                        )
                    };
                }
            }
        }
    });
    // SAFETY: the tasks wrote every row of every column block.
    unsafe { y.set_len(batch * p.rows) };
    Array2::from_shape_vec((batch, p.rows), y).expect("sizes match")
}

/// An output shared by the tasks, each writing its own elements.
struct Out<T>(*mut T);
// SAFETY: tasks write disjoint elements.
unsafe impl<T> Sync for Out<T> {}

impl<T> Out<T> {
    fn ptr(&self) -> *mut T {
        self.0
    }
}

/// One micro-tile: tokens `b0..b0 + MR` × outputs of panels `p0..p0 + NV`,
/// scaled by the tokens' activation scales (rows past the batch read the
/// spare zero rows and scale 0), plus the bias (`[np·16]`) when given.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `xu` must hold `b0 + MR` rows of
/// `p.kp` bytes; `bias`, when given, `np·16` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    p: &Panels,
    xu: &[u8],
    b0: usize,
    p0: usize,
    np: usize,
    sx: &[f32],
    bias: Option<&[f32]>,
    tile: &mut [[f32; NV * P]; MR],
) {
    let batch = sx.len();
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let kp = p.kp;
        let pan: [usize; NV] = std::array::from_fn(|v| (p0 + v).min(np - 1));
        let wp: [*const i8; NV] = pan.map(|q| p.w.as_ptr().add(q * kp * P));
        let xp: [*const u8; MR] = std::array::from_fn(|r| xu.as_ptr().add((b0 + r) * kp));
        let mut facc = [[_mm512_setzero_ps(); NV]; MR];
        for j in 0..p.ng {
            let k0 = j * p.g;
            let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(4);
            let mut acc = [[_mm512_setzero_si512(); NV]; MR];
            let mut k = k0;
            while k < k1 {
                let wv: [__m512i; NV] =
                    std::array::from_fn(|v| _mm512_loadu_si512(wp[v].add(k * P) as *const _));
                for r in 0..MR {
                    let xb = _mm512_set1_epi32((xp[r].add(k) as *const i32).read_unaligned());
                    for v in 0..NV {
                        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xb, wv[v]);
                    }
                }
                k += 4;
            }
            for v in 0..NV {
                let o = (pan[v] * p.ng + j) * P;
                let comp = _mm512_loadu_si512(p.comp.as_ptr().add(o) as *const _);
                let s = _mm512_loadu_ps(p.scale.as_ptr().add(o));
                for r in 0..MR {
                    let d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], comp));
                    facc[r][v] = _mm512_add_ps(facc[r][v], _mm512_mul_ps(s, d));
                }
            }
        }
        let bv: Option<[__m512; NV]> =
            bias.map(|b| pan.map(|q| _mm512_loadu_ps(b.as_ptr().add(q * P))));
        for r in 0..MR {
            let s = if b0 + r < batch { sx[b0 + r] } else { 0.0 };
            let s = _mm512_set1_ps(s);
            for (v, acc) in facc[r].iter().enumerate() {
                let mut y = _mm512_mul_ps(*acc, s);
                if let Some(bv) = &bv {
                    y = _mm512_add_ps(y, bv[v]);
                }
                _mm512_storeu_ps(tile[r].as_mut_ptr().add(v * P), y);
            }
        }
    }
}
