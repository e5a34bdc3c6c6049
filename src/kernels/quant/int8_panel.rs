//! int8 weights × int8 activations at GEMM shapes, without horizontal sums:
//! the oneDNN layout for VNNI.
//!
//! The weights are repacked once into panels of 16 output rows, four input
//! columns at a time (`[panel][k/4][16][4]`), so that one `vpdpbusd`
//! multiplies four activation bytes of one token (broadcast) by four codes of
//! 16 outputs and adds them into 16 lanes, one per output. A micro-tile of
//! [`MR`] tokens × [`NV`]·16 outputs keeps its integer sums in registers for
//! one parameter group (starting at `−128·Σw`), then adds
//! `s·(Σ(x + 128)·w − 128·Σw)` to f32 sums, also in registers; nothing is
//! reduced across lanes (one fused multiply-add). Per-group scales
//! therefore cost one convert and one multiply-add per 16 outputs and
//! group, which is what makes group-128 weights as fast as per-row ones.
//!
//! The integer sums are exact and the f32 steps are the reference's
//! (`acc = fma(s, d, acc)`, one rounding, then `acc·s_x`), in the same
//! order, so the result equals
//! [`gemm_reference`](super::int8_gemm::gemm_reference) bit for bit.
//! Symmetric weights (no zero-points) in whole rows only; groups must be
//! multiples of 4 columns.
//!
//! int4 weights use the same panels with two codes per byte
//! (`[panel][kp/8][16][4]`, byte `j` of a lane holding column `8t + j` in its
//! low nibble and `8t + 4 + j` in its high nibble, each stored as `q + 8`):
//! one 64-byte load gives 16 outputs × 8 columns, unpacked in registers to
//! signed bytes by `(v & 0xF) − 8` and `((v >> 4) & 0xF) − 8` (ggml's Q4_0
//! trick) and fed to the same `vpdpbusd` steps against `x + 128`. On VNNI,
//! matrices of at least [`SIGNED_NIBBLES_MIN_WEIGHTS`] take the nibbles
//! `q + 8` as the unsigned operand against signed `x` instead, with `8·Σx`
//! per token and group subtracted ([`nibble_corrections`]). Either way the
//! integer sums, and the result, are those of the int8 path on the same
//! codes. Groups must then be multiples of 8 columns.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::Array2;

use super::{Isa, QuantizedActivations};
use crate::matrix::aligned::{filled, Aligned};
use crate::matrix::{nibble_to_i8, Granularity, Int4Values, Int8Values, QuantParams, RowLayout};
use crate::parallel::ParallelExecutor;

/// Tokens per micro-tile.
const MR: usize = 6;
/// Bytes ahead of the panel loads that the micro-kernel prefetches: 4 KiB
/// took batch-1 products from DRAM at 4096² 5–25 % faster than 1 KiB
/// (weight-only int8 / int4 / binary / ternary; three alternating runs on
/// a Zen 5, where 8 KiB, or 8–16 KiB into L2 besides, gained nothing).
const PREFETCH: usize = 4096;
/// 16-lane vectors of outputs per micro-tile.
const NV: usize = 2;
/// Output rows per panel (one vector).
const P: usize = 16;
/// Longest group summed in i32 at once: 255·127·g < 2^31.
pub(crate) const MAX_GROUP: usize = 1 << 15;

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
    /// `[panel][kp/4][16][4]` int8 codes, or `[panel][kp/8][16][4]` bytes
    /// of two int4 codes (`q + 8` per nibble) when `nib`; zero past the
    /// matrix.
    w: Aligned<i8>,
    /// Whether `w` holds int4 codes.
    nib: bool,
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
        let rows = v.layout.rows();
        let cols = v.layout.max_row_len();
        if v.codes().len() != rows * cols {
            return None;
        }
        Self::build_with(v.params(), rows, cols, 4, |n, k| v.codes()[n * cols + k])
    }

    /// The int4 panels of `v` (two codes per byte), or `None` when this
    /// layout does not apply (zero-points, rows of different lengths,
    /// groups not a multiple of 8 or too long for i32 sums).
    pub(crate) fn new_int4(v: &Int4Values) -> Option<Self> {
        let rows = v.layout.rows();
        let cols = v.layout.max_row_len();
        if v.layout.total() != rows * cols || v.codes.len() != rows * cols {
            return None;
        }
        Self::build_with(v.params(), rows, cols, 8, |n, k| {
            nibble_to_i8(v.codes.get(n * cols + k))
        })
    }

    /// The panels of ±1 / 0 codes with one scale per row (binary and
    /// ternary values; `code(i)` of the `i`-th stored value), two codes per
    /// byte like int4; `None` for rows of different lengths.
    pub(crate) fn new_signs(
        layout: &RowLayout,
        scales: &[f32],
        code: impl Fn(usize) -> i8,
    ) -> Option<Self> {
        let (rows, cols) = (layout.rows(), layout.max_row_len());
        if layout.total() != rows * cols {
            return None;
        }
        let params = QuantParams::new(layout, Granularity::PerRow, scales.to_vec(), None).ok()?;
        Self::build_with(&params, rows, cols, 8, |n, k| code(n * cols + k))
    }

    /// [`build`](Self::build) with the groups and scales of `params` over
    /// the same `rows × cols` layout.
    fn build_with(
        params: &QuantParams,
        rows: usize,
        cols: usize,
        step: usize,
        code: impl Fn(usize, usize) -> i8,
    ) -> Option<Self> {
        let g = group_len(params, rows, cols, step)?;
        let scale = |n: usize, j: usize| params.get(params.index(n, j * g)).0;
        Self::build(rows, cols, step, g, scale, code)
    }

    /// The panels of full `rows × cols` codes (`codes`, row-major) of an
    /// N:M matrix whose stored values (`n` of every `m` columns) have the
    /// scales of `params` (per tensor, per row, or per group of stored
    /// values that covers whole groups of `m` columns: a stored group of
    /// `g` spans `g·m/n` columns), `step` columns per load (4: int8, 8:
    /// nibbles); `None` where the layout does not apply.
    pub(crate) fn new_full(
        params: &QuantParams,
        (n, m): (usize, usize),
        rows: usize,
        cols: usize,
        step: usize,
        codes: &[i8],
    ) -> Option<Self> {
        if codes.len() != rows * cols || rows == 0 {
            return None;
        }
        let (gs, g) = nm_group_len(params, (n, m), cols, step)?;
        let scale = |r: usize, j: usize| params.get(params.index(r, j.saturating_mul(gs))).0;
        Self::build(rows, cols, step, g, scale, |r, k| codes[r * cols + k])
    }

    /// Panels of `rows × cols` codes `code(n, k)`, `step` columns per load
    /// (4: int8 bytes, 8: int4 nibbles), in groups of `g` columns (a
    /// multiple of `step` or the whole row) with the scale `scale_of(n, j)`
    /// of row `n`'s group `j`; `None` when a row's scaled sums could leave
    /// f32 (weights near f32::MAX), which every constructor passes on.
    fn build(
        rows: usize,
        cols: usize,
        step: usize,
        g: usize,
        scale_of: impl Fn(usize, usize) -> f32,
        code: impl Fn(usize, usize) -> i8,
    ) -> Option<Self> {
        let nib = step == 8;
        let ng = cols.div_ceil(g);
        let kp = cols.next_multiple_of(step);
        let np = rows.div_ceil(P);
        // Bytes of one panel; an int4 byte holds two codes (8 = a zero code).
        let pb = if nib { kp * P / 2 } else { kp * P };
        let mut w = filled(if nib { 0x88u8 as i8 } else { 0 }, np * pb);
        let mut comp = vec![0i32; np * ng * P];
        let mut scale = vec![0.0f32; np * ng * P];
        let mut row = vec![0i8; cols];
        for n in 0..rows {
            let (p, l) = (n / P, n % P);
            for (k, c) in row.iter_mut().enumerate() {
                *c = code(n, k);
            }
            for (k, &q) in row.iter().enumerate() {
                if nib {
                    let b = &mut w[p * pb + ((k / 8) * P + l) * 4 + k % 4];
                    let u = (q + 8) as u8;
                    *b = if k % 8 < 4 {
                        ((*b as u8 & 0xF0) | u) as i8
                    } else {
                        ((*b as u8 & 0x0F) | (u << 4)) as i8
                    };
                } else {
                    w[p * pb + ((k / 4) * P + l) * 4 + k % 4] = q;
                }
            }
            // The largest `|Σ_j s_j·S_j|` the row's f32 sums can reach
            // (activation codes within ±127), before the activation scale
            // brings it down: huge weights (scales near f32::MAX / 127)
            // overflowed there to ±Inf while the product itself is finite
            // (issue #20). Such rows take the f32 paths.
            let mut reach = 0.0f64;
            for j in 0..ng {
                let group = &row[j * g..((j + 1) * g).min(cols)];
                let s: i32 = group.iter().map(|&q| q as i32).sum();
                let abs: i32 = group.iter().map(|&q| (q as i32).abs()).sum();
                let sc = scale_of(n, j);
                comp[(p * ng + j) * P + l] = 128 * s;
                scale[(p * ng + j) * P + l] = sc;
                reach += (sc as f64).abs() * 127.0 * abs as f64;
            }
            if reach > f32::MAX as f64 {
                return None;
            }
        }
        Some(Panels {
            rows,
            cols,
            kp,
            g,
            ng,
            w,
            nib,
            comp,
            scale,
        })
    }
}

/// The group length panels of `rows × cols` codes, `step` columns per
/// load, would use; `None` when they do not apply (zero-points, an empty
/// matrix, groups not a multiple of `step` or too long for i32 sums).
pub(crate) fn group_len(
    params: &QuantParams,
    rows: usize,
    cols: usize,
    step: usize,
) -> Option<usize> {
    if params.zero_points().is_some() || rows == 0 || cols == 0 {
        return None;
    }
    let g = match params.granularity() {
        Granularity::PerGroup(g) if g.is_multiple_of(step) || g >= cols => g.min(cols),
        Granularity::PerGroup(_) => return None,
        _ => cols,
    };
    (g <= MAX_GROUP).then_some(g)
}

/// [`group_len`] for the full rows of an N:M matrix (`n` of every `m`
/// columns stored) over `cols` columns: `(stored values, columns)` per
/// group (`usize::MAX` stored values for one scale per row or tensor);
/// `None` when the panels do not apply (zero-points, no columns, a stored
/// group that does not cover whole groups of `m` columns, or a column group
/// not a multiple of `step` short of the row, or too long for i32 sums).
pub(crate) fn nm_group_len(
    params: &QuantParams,
    (n, m): (usize, usize),
    cols: usize,
    step: usize,
) -> Option<(usize, usize)> {
    if params.zero_points().is_some() || cols == 0 {
        return None;
    }
    let (gs, g) = match params.granularity() {
        Granularity::PerGroup(gs) if gs.is_multiple_of(n) => (gs, gs / n * m),
        Granularity::PerGroup(_) => return None,
        _ => (usize::MAX, cols),
    };
    let ok = (g.is_multiple_of(step) || g >= cols) && g.min(cols) <= MAX_GROUP;
    ok.then_some((gs, g.min(cols)))
}

impl Panels {
    /// Input columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// `[batch, rows]` product of the panels with `xq` (columns must match) on
/// `isa` (capped to the CPU): AVX-512 VNNI, or AVX2 (also without VNNI); `None`
/// where neither applies (the caller takes its portable path).
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul(
    p: &Panels,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    debug_assert_eq!(xq.cols, p.cols);
    kernel(isa)?;
    let (stride, len) = packed_len(p, xq.rows);
    let mut xu = vec![0x80u8; len];
    for b in 0..xq.rows {
        for (o, &c) in xu[b * stride..b * stride + p.cols]
            .iter_mut()
            .zip(xq.row(b))
        {
            *o = c as u8 ^ 0x80;
        }
    }
    matmul_u8(p, &xu, &xq.scales, 1, exec, isa)
}

/// The layout [`matmul_u8`] reads `tokens` activation rows in: the row
/// stride and the buffer length (rows padded to whole micro-tiles, padding
/// bytes `0x80`, a zero code).
#[cfg(target_arch = "x86_64")]
pub(crate) fn packed_len(p: &Panels, tokens: usize) -> (usize, usize) {
    (p.kp, tokens.next_multiple_of(MR) * p.kp)
}

/// [`matmul`] on activations already stored as `code + 128` in the
/// [`packed_len`] layout, with one scale per token in `sx`. With `group`
/// 3, the tokens are the slices of input rows, three each, and each
/// group's outputs are summed as `(y₂ + y₁) + y₀` as the tiles are written:
/// `[tokens / group, rows]`, without the `[tokens, rows]` product.
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul_u8(
    p: &Panels,
    xu: &[u8],
    sx: &[f32],
    group: usize,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    debug_assert!(xu.len() == packed_len(p, sx.len()).1 && sx.len().is_multiple_of(group));
    kernel(isa)?;
    Some(product(p, xu, sx, None, group, exec, isa))
}

/// A micro-kernel (see [`micro`]): tokens `b0..` × panels `p0..` of a
/// [`Job`] into a tile.
#[cfg(target_arch = "x86_64")]
type Micro = unsafe fn(&Job, usize, usize, &mut [[f32; NV * P]; MR]);

/// A micro-kernel for each tile width `1..=NV` panels and height `1..=MR`
/// tokens (entry `[v − 1][m − 1]`); the integer sums and f32 steps of an
/// output do not depend on the tile's shape, so neither do its bits.
#[cfg(target_arch = "x86_64")]
type Kernels = [[Micro; MR]; NV];

/// The VNNI micro-kernels (one panel: a matrix's odd last panel, which two
/// panels wide computed twice — at 100 rows, 128 outputs for 100).
#[cfg(target_arch = "x86_64")]
const VNNI: Kernels = [
    [
        micro::<1, 1>,
        micro::<2, 1>,
        micro::<3, 1>,
        micro::<4, 1>,
        micro::<5, 1>,
        micro::<6, 1>,
    ],
    [
        micro::<1, 2>,
        micro::<2, 2>,
        micro::<3, 2>,
        micro::<4, 2>,
        micro::<5, 2>,
        micro::<6, 2>,
    ],
];

/// What every micro-tile of one product reads: the panels (`np` of them),
/// the activations `xu` (`x + 128`, or `x` when `signed`; rows of `kp`
/// bytes, zero-padded to whole tiles) with their scales `sx` (one per
/// token), the bias per output (`[np·16]`) when given, and when `signed`
/// the corrections `8·Σx` per row of `xu` and group
/// ([`nibble_corrections`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Job<'a> {
    p: &'a Panels,
    xu: &'a [u8],
    np: usize,
    sx: &'a [f32],
    bias: Option<&'a [f32]>,
    /// Nibble panels against signed activations (`xu` holds `x`).
    signed: bool,
    xsum: &'a [i32],
    /// Tokens per output row: 1, or 3 (an input's slices, whose outputs
    /// the micro-kernel sums as `(y₂ + y₁) + y₀` into the first's row).
    group: usize,
}

/// The micro-kernels on `isa` (capped to the CPU), if any.
#[cfg(target_arch = "x86_64")]
fn kernel(isa: Isa) -> Option<Kernels> {
    match isa.capped() {
        Isa::Avx512Vnni => Some(VNNI),
        Isa::Avx512 | Isa::Avx2 => Some([[micro_avx2; MR]; NV]),
        _ => None,
    }
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
/// `b` on `isa` (capped to the CPU). `None` when a value of `x ⊙ m` is not
/// finite or `isa` has no kernel for the panels.
#[cfg(target_arch = "x86_64")]
pub(crate) fn linear(
    p: &Panels,
    x: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    kernel(isa)?;
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
    Some(product(p, &xu, &scales, bias, 1, exec, isa))
}

/// The product of the panels with `xu` (`x + 128`, rows of `kp` bytes,
/// zero-padded to a whole number of `MR`-row tiles) scaled by `sx` per row,
/// plus `bias` per output, on `isa`'s micro-kernels (which must exist).
#[cfg(target_arch = "x86_64")]
fn product(
    p: &Panels,
    xu: &[u8],
    sx: &[f32],
    bias: Option<&[f32]>,
    group: usize,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Array2<f32> {
    let kernel = kernel(isa).expect("the callers checked that `isa` has a kernel");
    // Tiles hold whole groups: a tile starts on a group and a batch's last
    // tile ends on one.
    debug_assert!((group == 1 || group == 3) && MR.is_multiple_of(group));
    let batch = sx.len();
    let np = p.rows.div_ceil(P);
    // The bias per output, zero past the matrix (whole panels).
    let bias: Option<Vec<f32>> = bias.map(|b| {
        let mut v = vec![0.0f32; np * P];
        v[..p.rows].copy_from_slice(&b[..p.rows]);
        v
    });
    let bias = bias.as_deref();
    // On VNNI, nibble panels take the activations as signed codes (`x`,
    // not `x + 128`; see `nibble_corrections`), stored so that the
    // micro-kernel broadcasts them straight from memory.
    let signed =
        p.nib && isa.capped() == Isa::Avx512Vnni && p.rows * p.cols >= SIGNED_NIBBLES_MIN_WEIGHTS;
    let xsum = if signed {
        nibble_corrections(p, xu)
    } else {
        Vec::new()
    };
    let flipped: Vec<u8>;
    let xu = if signed {
        flipped = xu.iter().map(|&u| u ^ 0x80).collect();
        &flipped
    } else {
        xu
    };
    let job = Job {
        p,
        xu,
        np,
        sx,
        bias,
        signed,
        xsum: &xsum,
        group,
    };
    // Column blocks of NV panels; a task takes `per` of them.
    let nblk = np.div_ceil(NV);
    let per = 2usize;
    let ntask = nblk.div_ceil(per);
    // Every element is written below (each task all rows of its columns).
    let out_rows = batch / group;
    let mut y = Vec::<f32>::with_capacity(out_rows * p.rows);
    let out = Out(y.as_mut_ptr());
    let out = &out;
    exec.run(ntask, &|t| {
        let mut tile = [[0.0f32; NV * P]; MR];
        for blk in t * per..((t + 1) * per).min(nblk) {
            let p0 = blk * NV;
            let nv = (np - p0).min(NV);
            for b0 in (0..batch).step_by(MR) {
                // SAFETY: `kernel` comes from `kernel()` (its tier is
                // available); `xu` holds whole tiles of `kp` bytes per
                // row; panels `p0..p0 + NV` exist or
                // are clamped to the last one (their results are dropped).
                unsafe { kernel[nv - 1][(batch - b0).min(MR) - 1](&job, b0, p0, &mut tile) };
                let (n0, m) = (p0 * P, (batch - b0).min(MR));
                let n = (NV * P).min(p.rows - n0);
                for r in (0..m).step_by(group) {
                    // SAFETY: output row (b0 + r) / group < out_rows and
                    // columns n0..n0 + n ≤ rows; only this task writes
                    // columns of its blocks.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.ptr().add((b0 + r) / group * p.rows + n0),
                            n,
                        )
                    };
                    // (A whole tile row as a fixed-size copy: inlined,
                    // where `copy_from_slice` calls `memmove`.)
                    if let Ok(o) = <&mut [f32; NV * P]>::try_from(&mut *o) {
                        *o = tile[r];
                    } else {
                        o.copy_from_slice(&tile[r][..n]);
                    }
                }
            }
        }
    });
    // SAFETY: the tasks wrote every row of every column block.
    unsafe { y.set_len(out_rows * p.rows) };
    Array2::from_shape_vec((out_rows, p.rows), y).expect("sizes match")
}

/// Nibble panels of at least this many weights run the signed-activation
/// scheme on VNNI ([`nibble_corrections`]): two fewer instructions per load
/// and no correction bytes beside the weights, which wins where the
/// weights stream from DRAM (4096², batch 1, alternating: int4
/// weight-only 65–72 → 80–86 % of the DRAM rate, group-64 54–67 → 77–79 %),
/// while on cache-resident shapes its broadcasts (folded into every
/// `vpdpbusd`) and per-call set-up cost 10–20 % (384 × 384, one thread:
/// int4 weight-only 3.5 → 3.0× dense f32 at batch 1, 1.65 → 1.50× at 64).
const SIGNED_NIBBLES_MIN_WEIGHTS: usize = 1 << 22;

/// For int4 panels, `8·Σx` per activation row of `xu` (`x + 128`) and group
/// (`[row][ng]`): the VNNI kernel multiplies the stored nibbles
/// `q + 8` (unsigned) by the signed activations, and `Σ(q + 8)·x − 8·Σx`
/// is `Σq·x` exactly. One subtraction per token and group, where `x + 128`
/// against signed codes needed `128·Σq` per output (4 bytes a group and
/// output, read with the weights) and two more instructions per load.
#[cfg(target_arch = "x86_64")]
fn nibble_corrections(p: &Panels, xu: &[u8]) -> Vec<i32> {
    let mut out = Vec::with_capacity(xu.len() / p.kp * p.ng);
    for row in xu.chunks_exact(p.kp) {
        for j in 0..p.ng {
            let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(8);
            let s: i32 = row[j * p.g..k1].iter().map(|&u| u as i32 - 128).sum();
            out.push(8 * s);
        }
    }
    out
}

/// An output shared by the tasks, each writing its own elements (also the
/// sign lookups' `y`).
pub(crate) struct Out<T>(pub(crate) *mut T);
// SAFETY: tasks write disjoint elements.
unsafe impl<T> Sync for Out<T> {}

impl<T> Out<T> {
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

/// One micro-tile: tokens `b0..b0 + M` (`M ≤ MR`: a batch's last, partial
/// tile computes only its own tokens, batch 1 one) × outputs of panels
/// `p0..p0 + V` (`V ≤ NV`), into the tile's first `M` rows and `16·V`
/// columns, scaled by the tokens'
/// activation scales, plus the bias (`[np·16]`) when given; with the job's
/// `group` 3, each three tokens' rows summed into the first's row.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; the job's `xu` must hold `b0 + M`
/// rows of `kp` bytes and its bias, when given, `np·16` values; with
/// `group` 3, `M` must be a multiple of 3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn micro<const M: usize, const V: usize>(
    job: &Job,
    b0: usize,
    p0: usize,
    tile: &mut [[f32; NV * P]; MR],
) {
    let (p, xu, np, sx, bias) = (job.p, job.xu, job.np, job.sx, job.bias);
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let kp = p.kp;
        let pan: [usize; V] = std::array::from_fn(|v| (p0 + v).min(np - 1));
        let pb = if p.nib { kp * P / 2 } else { kp * P };
        let wp: [*const i8; V] = pan.map(|q| p.w.as_ptr().add(q * pb));
        let xp: [*const u8; M] = std::array::from_fn(|r| xu.as_ptr().add((b0 + r) * kp));
        let mut facc = [[_mm512_setzero_ps(); V]; M];
        for j in 0..p.ng {
            let k0 = j * p.g;
            // The scales, a stream of a line per group, 16 groups ahead.
            for q in pan {
                let ahead = p.scale.as_ptr().wrapping_add((q * p.ng + j + 16) * P);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            // The sums start at minus the correction (per output against
            // `x + 128`, per token against signed activations): integer
            // sums are exact in any order, so this saves the subtraction
            // per token and output at the group's end and changes no bit.
            let mut acc: [[__m512i; V]; M] = if job.signed {
                std::array::from_fn(|r| [_mm512_set1_epi32(-job.xsum[(b0 + r) * p.ng + j]); V])
            } else {
                let neg: [__m512i; V] = std::array::from_fn(|v| {
                    let o = (pan[v] * p.ng + j) * P;
                    let comp = _mm512_loadu_si512(p.comp.as_ptr().add(o) as *const _);
                    _mm512_sub_epi32(_mm512_setzero_si512(), comp)
                });
                [neg; M]
            };
            // With up to three tokens the chains of `vpdpbusd` on one
            // accumulator, not the loads, set the pace of the nibble loops:
            // a second set halves them (the integer sums are exact, so the
            // bits do not change). Batch-1 int4 × int8 at 4096², resident:
            // 0.069–0.092 → 0.046–0.061 ms; three tokens (a weight-only
            // product's slices at batch 1), int4 at 4096² on one thread
            // 149–158 → 113–122 µs, 384² 3.4–3.6× → 4.2–4.3× dense f32.
            // (The int8 loop reads twice the bytes per `vpdpbusd`; split,
            // its weight-only products ran 5–20 % slower.)
            let two = M <= 3;
            let mut acc2 = [[_mm512_setzero_si512(); V]; M];
            let mut k = k0;
            if p.nib {
                let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(8);
                let (m4, eight) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(8));
                while !job.signed && k < k1 {
                    // 16 outputs × 8 columns per load: low nibbles are
                    // columns k..k+4, high nibbles k+4..k+8, as signed codes
                    // against `x + 128`.
                    let raw: [__m512i; V] = std::array::from_fn(|v| {
                        _mm_prefetch::<_MM_HINT_T0>(wp[v].wrapping_add(k * P / 2 + PREFETCH));
                        _mm512_loadu_si512(wp[v].add(k * P / 2) as *const _)
                    });
                    let lo = raw.map(|r| _mm512_sub_epi8(_mm512_and_si512(r, m4), eight));
                    let hi = raw.map(|r| {
                        _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(r, 4), m4), eight)
                    });
                    for r in 0..M {
                        let xl = _mm512_set1_epi32((xp[r].add(k) as *const i32).read_unaligned());
                        let xh =
                            _mm512_set1_epi32((xp[r].add(k + 4) as *const i32).read_unaligned());
                        for v in 0..V {
                            acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xl, lo[v]);
                            if two {
                                acc2[r][v] = _mm512_dpbusd_epi32(acc2[r][v], xh, hi[v]);
                            } else {
                                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xh, hi[v]);
                            }
                        }
                    }
                    k += 8;
                }
                let m4 = _mm512_set1_epi8(0x0F);
                while job.signed && k < k1 {
                    // 16 outputs × 8 columns per load: low nibbles are
                    // columns k..k+4, high nibbles k+4..k+8, each `q + 8`:
                    // the unsigned operand, against signed activations.
                    let raw: [__m512i; V] = std::array::from_fn(|v| {
                        // A few tokens leave the hardware prefetcher behind
                        // when the panels come from DRAM: fetch ahead.
                        _mm_prefetch::<_MM_HINT_T0>(wp[v].wrapping_add(k * P / 2 + PREFETCH));
                        _mm512_loadu_si512(wp[v].add(k * P / 2) as *const _)
                    });
                    let lo = raw.map(|r| _mm512_and_si512(r, m4));
                    let hi = raw.map(|r| _mm512_and_si512(_mm512_srli_epi16(r, 4), m4));
                    for r in 0..M {
                        let xl = _mm512_set1_epi32((xp[r].add(k) as *const i32).read_unaligned());
                        let xh =
                            _mm512_set1_epi32((xp[r].add(k + 4) as *const i32).read_unaligned());
                        for v in 0..V {
                            acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], lo[v], xl);
                            if two {
                                acc2[r][v] = _mm512_dpbusd_epi32(acc2[r][v], hi[v], xh);
                            } else {
                                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], hi[v], xh);
                            }
                        }
                    }
                    k += 8;
                }
            } else {
                let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(4);
                while k < k1 {
                    let wv: [__m512i; V] = std::array::from_fn(|v| {
                        _mm_prefetch::<_MM_HINT_T0>(wp[v].wrapping_add(k * P + PREFETCH));
                        _mm512_loadu_si512(wp[v].add(k * P) as *const _)
                    });
                    for r in 0..M {
                        let xb = _mm512_set1_epi32((xp[r].add(k) as *const i32).read_unaligned());
                        for v in 0..V {
                            acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xb, wv[v]);
                        }
                    }
                    k += 4;
                }
            }
            if two {
                for r in 0..M {
                    for v in 0..V {
                        acc[r][v] = _mm512_add_epi32(acc[r][v], acc2[r][v]);
                    }
                }
            }
            for v in 0..V {
                let o = (pan[v] * p.ng + j) * P;
                let s = _mm512_loadu_ps(p.scale.as_ptr().add(o));
                for r in 0..M {
                    let d = _mm512_cvtepi32_ps(acc[r][v]);
                    facc[r][v] = _mm512_fmadd_ps(s, d, facc[r][v]);
                }
            }
        }
        let bv: Option<[__m512; V]> =
            bias.map(|b| pan.map(|q| _mm512_loadu_ps(b.as_ptr().add(q * P))));
        let y: [[__m512; V]; M] = std::array::from_fn(|r| {
            let s = _mm512_set1_ps(sx[b0 + r]);
            std::array::from_fn(|v| {
                let y = _mm512_mul_ps(facc[r][v], s);
                bv.map_or(y, |bv| _mm512_add_ps(y, bv[v]))
            })
        });
        // An input's three slices (`M` is then a multiple of 3): their
        // outputs summed smallest first, in registers (through the tile,
        // the sum read 64-byte stores in 16-byte pieces).
        let group = job.group;
        for r in (0..M).step_by(group) {
            let out: [__m512; V] = if group == 3 {
                std::array::from_fn(|v| {
                    _mm512_add_ps(_mm512_add_ps(y[r + 2][v], y[r + 1][v]), y[r][v])
                })
            } else {
                y[r]
            };
            for (v, out) in out.iter().enumerate() {
                _mm512_storeu_ps(tile[r].as_mut_ptr().add(v * P), *out);
            }
        }
    }
}

/// [`micro`] on AVX2: `vpmaddubsw` + `vpmaddwd` instead of `vpdpbusd`,
/// eight outputs at a time, with the same integer sums and f32 steps, so
/// the same bits. The i16 steps never saturate:
/// - int4 panels: `(x + 128)·w` as the VNNI path, `|255·8·2| < 2^15`;
/// - int8 panels: `x + 128` would reach `255·127·2`, so the pairs are
///   `|w|·(x·sign w)` (ggml's `mul_sum_i8_pairs`), at most `128·127·2`
///   because activation codes lie in `−127..=127`; this sums `x·w` itself,
///   so `128·Σw` is not subtracted.
///
/// # Safety
/// AVX2 must be available; all `MR` tokens are computed (rows past the
/// batch read the spare zero rows and scale 0), so `xu` holds `b0 + MR`
/// rows, whose codes are `x + 128` for `x` in `−127..=127`; otherwise as
/// [`micro`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(job: &Job, b0: usize, p0: usize, tile: &mut [[f32; NV * P]; MR]) {
    let (p, xu, np, sx, bias) = (job.p, job.xu, job.np, job.sx, job.bias);
    let batch = sx.len();
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let pb = if p.nib { p.kp * P / 2 } else { p.kp * P };
        let xp: [*const u8; MR] = std::array::from_fn(|r| xu.as_ptr().add((b0 + r) * p.kp));
        let (m4, eight) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(8));
        let (ones, flip) = (_mm256_set1_epi16(1), _mm256_set1_epi8(-128));
        for v in 0..NV {
            let q = (p0 + v).min(np - 1);
            for h in 0..2 {
                let wp = p.w.as_ptr().add(q * pb + h * 32);
                let mut facc = [_mm256_setzero_ps(); MR];
                for j in 0..p.ng {
                    let mut acc = [_mm256_setzero_si256(); MR];
                    let mut k = j * p.g;
                    if p.nib {
                        let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(8);
                        while k < k1 {
                            let raw = _mm256_loadu_si256(wp.add(k * P / 2) as *const __m256i);
                            let lo = _mm256_sub_epi8(_mm256_and_si256(raw, m4), eight);
                            let hi = _mm256_sub_epi8(
                                _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                                eight,
                            );
                            for r in 0..MR {
                                let xl = _mm256_set1_epi32(
                                    (xp[r].add(k) as *const i32).read_unaligned(),
                                );
                                let xh = _mm256_set1_epi32(
                                    (xp[r].add(k + 4) as *const i32).read_unaligned(),
                                );
                                let s16 = _mm256_add_epi16(
                                    _mm256_maddubs_epi16(xl, lo),
                                    _mm256_maddubs_epi16(xh, hi),
                                );
                                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s16, ones));
                            }
                            k += 8;
                        }
                    } else {
                        let k1 = ((j + 1) * p.g).min(p.cols).next_multiple_of(4);
                        while k < k1 {
                            // 8 outputs × 4 columns.
                            let w = _mm256_loadu_si256(wp.add(k * P) as *const __m256i);
                            let aw = _mm256_abs_epi8(w);
                            for r in 0..MR {
                                let xb = _mm256_set1_epi32(
                                    (xp[r].add(k) as *const i32).read_unaligned(),
                                );
                                let xs = _mm256_sign_epi8(_mm256_xor_si256(xb, flip), w);
                                let s16 = _mm256_maddubs_epi16(aw, xs);
                                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s16, ones));
                            }
                            k += 4;
                        }
                    }
                    let o = (q * p.ng + j) * P + h * 8;
                    let comp = if p.nib {
                        _mm256_loadu_si256(p.comp.as_ptr().add(o) as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    };
                    let s = _mm256_loadu_ps(p.scale.as_ptr().add(o));
                    for r in 0..MR {
                        let d = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r], comp));
                        facc[r] = _mm256_fmadd_ps(s, d, facc[r]);
                    }
                }
                let bv = bias.map(|b| _mm256_loadu_ps(b.as_ptr().add(q * P + h * 8)));
                let y: [__m256; MR] = std::array::from_fn(|r| {
                    let s = if b0 + r < batch { sx[b0 + r] } else { 0.0 };
                    let y = _mm256_mul_ps(facc[r], _mm256_set1_ps(s));
                    bv.map_or(y, |bv| _mm256_add_ps(y, bv))
                });
                // An input's slices summed smallest first, as in `micro`.
                for r in (0..MR).step_by(job.group) {
                    let out = if job.group == 3 {
                        _mm256_add_ps(_mm256_add_ps(y[r + 2], y[r + 1]), y[r])
                    } else {
                        y[r]
                    };
                    _mm256_storeu_ps(tile[r].as_mut_ptr().add(v * P + h * 8), out);
                }
            }
        }
    }
}
