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
    // x + 128 as u8, rows padded with zeros to kp, and MR−1 spare rows so
    // that edge tiles can read past the batch.
    let bp = batch.next_multiple_of(MR);
    let mut xu = vec![0x80u8; bp * p.kp];
    for b in 0..batch {
        for (o, &c) in xu[b * p.kp..b * p.kp + p.cols].iter_mut().zip(xq.row(b)) {
            *o = c as u8 ^ 0x80;
        }
    }
    let np = p.rows.div_ceil(P);
    // Column blocks of NV panels; a task takes `per` of them.
    let nblk = np.div_ceil(NV);
    let per = 2usize;
    let ntask = nblk.div_ceil(per);
    let mut y = vec![0.0f32; batch * p.rows];
    let out = Out(y.as_mut_ptr());
    let (xu, out) = (&xu, &out);
    exec.run(ntask, &|t| {
        let mut tile = [[0.0f32; NV * P]; MR];
        for blk in t * per..((t + 1) * per).min(nblk) {
            let p0 = blk * NV;
            for b0 in (0..batch).step_by(MR) {
                // SAFETY: VNNI is checked by the caller; `xu` holds `bp ≥ b0 + MR`
                // rows of `kp` bytes; panels `p0..p0 + NV` exist or are
                // clamped to the last one (their results are dropped).
                unsafe { micro(p, xu, b0, p0, np, &xq.scales, batch, &mut tile) };
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
    Array2::from_shape_vec((batch, p.rows), y).expect("sizes match")
}

/// The `[batch, rows]` output shared by the tasks (disjoint columns).
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements.
unsafe impl Sync for Out {}

impl Out {
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// One micro-tile: tokens `b0..b0 + MR` × outputs of panels `p0..p0 + NV`,
/// scaled by the tokens' activation scales (rows past the batch read the
/// spare zero rows and scale 0).
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `xu` must hold `b0 + MR` rows of
/// `p.kp` bytes.
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
    batch: usize,
    tile: &mut [[f32; NV * P]; MR],
) {
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
        for r in 0..MR {
            let s = if b0 + r < batch { sx[b0 + r] } else { 0.0 };
            let s = _mm512_set1_ps(s);
            for (v, acc) in facc[r].iter().enumerate() {
                _mm512_storeu_ps(tile[r].as_mut_ptr().add(v * P), _mm512_mul_ps(*acc, s));
            }
        }
    }
}
