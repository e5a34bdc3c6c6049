//! Binary and ternary weights × int8 activations (dynamic): the sign bits
//! feed `vpdpbusd` directly, 64 weights per instruction.
//!
//! A binary weight is `±α_i` (bit 1: `+`), a ternary one `{−α_i, 0, +α_i}`.
//! With the input quantized per row (`x_bk ≈ q_bk·s_b`), the product is
//! `y[b, i] = (S_bi as f32 · α_i) · s_b` where `S_bi` is an exact integer:
//!
//! * binary: `S = 2·Σ_{bit=1} q − Σ_k q`;
//! * ternary: `S = Σ_{+} q − Σ_{−} q`.
//!
//! (Ternary codes are 2 bits a weight: each code byte is copied to its four
//! weights' bytes with one `vpshufb` and tested against each weight's plus
//! and minus bit, `vptestmb`, giving both masks in two instructions.)
//!
//! `Σ_{bit=1} q` over 64 columns is one `vpdpbusd` of the bits expanded to
//! bytes of 0 / 1 (a masked move: the unsigned operand) with the signed
//! codes. Integer sums are exact in any order, and the f32 steps are the
//! reference's ([`sign_reference`]), so every path, tier, batch size and
//! executor gives the same bits. With f32 activations a binary weight
//! costs a multiply-add per lane (at batch 1 about a tenth of the memory
//! roofline); here 64 of them cost about three instructions.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::Array2;

use super::{Isa, QuantizedActivations};
use crate::matrix::{BinaryValues, TernaryValues, TERNARY_MINUS, TERNARY_PLUS};
use crate::parallel::{row_blocks, ParallelExecutor};

/// Binary or ternary values (the products take uniform rows).
#[derive(Clone, Copy)]
pub enum Signs<'a> {
    /// Sign bits.
    Binary(&'a BinaryValues),
    /// 2-bit codes.
    Ternary(&'a TernaryValues),
}

impl Signs<'_> {
    fn rows(&self) -> usize {
        match self {
            Signs::Binary(v) => v.layout.rows(),
            Signs::Ternary(v) => v.layout.rows(),
        }
    }

    fn cols(&self) -> usize {
        match self {
            Signs::Binary(v) => v.layout.max_row_len(),
            Signs::Ternary(v) => v.layout.max_row_len(),
        }
    }

    fn scales(&self) -> &[f32] {
        match self {
            Signs::Binary(v) => &v.scales,
            Signs::Ternary(v) => &v.scales,
        }
    }

    /// Whether the rows are uniform (every row holds `cols` values).
    pub(crate) fn uniform(&self) -> bool {
        let l = match self {
            Signs::Binary(v) => &v.layout,
            Signs::Ternary(v) => &v.layout,
        };
        l.total() == l.rows() * l.max_row_len()
    }
}

/// Weight rows per register block.
const R: usize = 8;
/// Input rows per register block.
const C: usize = 2;
/// Weight rows per task (the split depends on the shape only).
const TASK_ROWS: usize = 64;

/// `y = x · Wᵀ` (`[batch, rows]`) for uniform binary / ternary rows and a
/// quantized batch, on `isa`'s path (AVX-512 VNNI, else portable): the
/// same bits on every path and executor.
pub(crate) fn matmul(
    w: Signs,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Array2<f32> {
    debug_assert!(w.uniform() && xq.cols == w.cols());
    let (rows, cols, batch) = (w.rows(), w.cols(), xq.rows);
    #[cfg(target_arch = "x86_64")]
    let vnni = isa.capped() >= Isa::Avx512Vnni && cols > 0;
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = {
        let _ = isa;
        false
    };
    // The VNNI path's operands: the codes in rows of a whole number of
    // 64-byte chunks (zeros past `cols`: their bits are masked off anyway),
    // and Σ_k q per input row (binary's correction).
    #[cfg(target_arch = "x86_64")]
    let kp = cols.next_multiple_of(64);
    #[cfg(target_arch = "x86_64")]
    let (xs, qsum) = if vnni {
        let mut v = vec![0i8; batch * kp];
        for (o, b) in v.chunks_exact_mut(kp).zip(0..batch) {
            o[..cols].copy_from_slice(xq.row(b));
        }
        let qsum: Vec<i32> = (0..batch)
            .map(|b| xq.row(b).iter().map(|&q| q as i32).sum())
            .collect();
        (v, qsum)
    } else {
        (Vec::new(), Vec::new())
    };
    let scales = w.scales();
    row_blocks(rows, batch, TASK_ROWS, exec, |t, out| {
        let r0 = t * TASK_ROWS;
        let nr = out.len() / batch;
        // Exact integer sums S[r][b] first, then the f32 steps.
        let mut s = vec![0i32; nr * batch];
        #[cfg(target_arch = "x86_64")]
        if vnni {
            // SAFETY: VNNI was checked; `xs` holds `batch` rows of `kp ≥
            // cols` codes; rows `r0..r0 + nr` exist.
            unsafe { sums_avx512(w, r0, &xs, kp, &qsum, &mut s) };
        }
        if !vnni {
            sums_portable(w, r0, xq, &mut s);
        }
        for (r, (o, s)) in out
            .chunks_exact_mut(batch)
            .zip(s.chunks_exact(batch))
            .enumerate()
        {
            let a = scales[r0 + r];
            for ((o, &s), &sx) in o.iter_mut().zip(s).zip(&xq.scales) {
                *o = (s as f32 * a) * sx;
            }
        }
    })
}

/// The plain reference: `y[b, i] = (S_bi as f32 · α_i) · s_b` with `S_bi`
/// summed one weight at a time (i64). `DynamicInt8` on binary or ternary
/// weights gives exactly these bits.
///
/// ```
/// use ndarray::Array2;
/// use squish::kernels::quant::sign_gemm::{sign_reference, Signs};
/// use squish::matrix::Values;
/// use squish::prelude::*;
/// use squish::quantization::{quantize_activations, DynamicInt8};
/// let w = Array2::from_shape_fn((3, 70), |(i, j)| ((i * 5 + j) % 15) as f32 - 7.0);
/// let m = Ternary.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let x = Array2::from_shape_fn((2, 70), |(b, k)| (b + k) as f32 - 30.0);
/// let Some(Values::Ternary(v)) = m.values() else { unreachable!() };
/// let xq = quantize_activations(x.view())?;
/// let y = sign_reference(Signs::Ternary(v), &xq);
/// assert_eq!(DynamicInt8::new(m.clone())?.matmul(x.view(), &Sequential)?, y);
/// // The product of the two dequantized operands, up to f32 rounding.
/// let exact = xq.dequantize().dot(&m.to_dense().t());
/// assert!((&y - &exact).iter().all(|d| d.abs() < 1e-3));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn sign_reference(w: Signs, xq: &QuantizedActivations) -> Array2<f32> {
    let (rows, cols) = (w.rows(), w.cols());
    assert_eq!(cols, xq.cols, "shapes");
    Array2::from_shape_fn((xq.rows, rows), |(b, i)| {
        let q = xq.row(b);
        let s: i64 = match w {
            Signs::Binary(v) => (0..cols)
                .map(|k| {
                    let bit = v.signs.get(i * cols + k);
                    if bit == 1 {
                        q[k] as i64
                    } else {
                        -(q[k] as i64)
                    }
                })
                .sum(),
            Signs::Ternary(v) => (0..cols)
                .map(|k| match v.codes.get(i * cols + k) {
                    TERNARY_PLUS => q[k] as i64,
                    TERNARY_MINUS => -(q[k] as i64),
                    _ => 0,
                })
                .sum(),
        };
        let a = w.scales()[i];
        (s as i32 as f32 * a) * xq.scales[b]
    })
}

/// The portable sums: `s[r·batch + b] = S` of row `r0 + r` and input `b`,
/// each row's weights decoded to −1 / 0 / +1 once for all inputs.
fn sums_portable(w: Signs, r0: usize, xq: &QuantizedActivations, s: &mut [i32]) {
    let (cols, batch) = (w.cols(), xq.rows);
    let mut wr = vec![0i32; cols];
    for (r, sr) in s.chunks_exact_mut(batch).enumerate() {
        let base = (r0 + r) * cols;
        for (k, o) in wr.iter_mut().enumerate() {
            *o = match w {
                Signs::Binary(v) => 2 * v.signs.get(base + k) as i32 - 1,
                Signs::Ternary(v) => match v.codes.get(base + k) {
                    TERNARY_PLUS => 1,
                    TERNARY_MINUS => -1,
                    _ => 0,
                },
            };
        }
        for (b, o) in sr.iter_mut().enumerate() {
            *o = xq.row(b).iter().zip(&wr).map(|(&q, &w)| q as i32 * w).sum();
        }
    }
}

/// `n ≤ 64` bits of `bytes` from bit `off` (zeros above `n`), reading only
/// inside `bytes`.
#[inline(always)]
fn bits64(bytes: &[u8], off: usize, n: usize) -> u64 {
    let (at, sh) = (off / 8, (off % 8) as u32);
    let v = if at + 9 <= bytes.len() {
        // SAFETY: bytes `at..at + 9` are inside `bytes` (checked above).
        unsafe {
            let p = bytes.as_ptr().add(at);
            let lo = p.cast::<u64>().read_unaligned();
            let hi = *p.add(8) as u64;
            if sh == 0 {
                lo
            } else {
                (lo >> sh) | (hi << (64 - sh))
            }
        }
    } else {
        let mut v = 0u128;
        for j in 0..9 {
            if let Some(&b) = bytes.get(at + j) {
                v |= (b as u128) << (8 * j);
            }
        }
        (v >> sh) as u64
    };
    if n >= 64 {
        v
    } else {
        v & ((1u64 << n) - 1)
    }
}

/// The masks of 64 weights from column `k` of row `i` (`n ≤ 64` of them):
/// binary `(set, 0)`, ternary `(plus, minus)`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(w: Signs, i: usize, k: usize, n: usize) -> (u64, u64) {
    let cols = w.cols();
    match w {
        Signs::Binary(v) => (bits64(v.signs.bytes(), i * cols + k, n), 0),
        Signs::Ternary(v) => {
            // Two bits a weight: code 1 (plus) sets the low bit, 2 the high.
            let off = 2 * (i * cols + k);
            let b = v.codes.bytes();
            let lo = bits64(b, off, (2 * n).min(64));
            let hi = if n > 32 {
                bits64(b, off + 64, 2 * n - 64)
            } else {
                0
            };
            let even = 0x5555_5555_5555_5555u64;
            // SAFETY: BMI2 is part of the VNNI tier (the caller's contract).
            unsafe {
                let plus = _pext_u64(lo, even) | (_pext_u64(hi, even) << 32);
                let minus = _pext_u64(lo, even << 1) | (_pext_u64(hi, even << 1) << 32);
                (plus, minus)
            }
        }
    }
}

/// The AVX-512 VNNI sums (see [`sums_portable`]), in blocks of [`R`] rows ×
/// up to [`C`] inputs (8 rows: eight independent `vpdpbusd` chains at batch
/// 1): per 64 columns, each row's bits become bytes of 0 / 1 (a mask load
/// and a masked move; VBMI's `vpmultishiftqb` measured no faster) and one
/// `vpdpbusd` per input adds `Σ_{set} q` into 16 lanes.
///
/// # Safety
/// AVX-512 F/BW/VNNI and BMI2 are available; `xs` holds the batch in rows
/// of `kp` codes (a multiple of 64, ≥ cols); rows `r0..r0 + s.len() /
/// batch` exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,bmi2")]
unsafe fn sums_avx512(w: Signs, r0: usize, xs: &[i8], kp: usize, qsum: &[i32], s: &mut [i32]) {
    let batch = qsum.len();
    let nr = s.len() / batch;
    let ternary = matches!(w, Signs::Ternary(_));
    let mut i = 0;
    while i < nr {
        let rr = if i + R <= nr { R } else { 1 };
        let mut b0 = 0;
        while b0 < batch {
            let nc = (batch - b0).min(C);
            macro_rules! go {
                ($rr:literal, $c:literal) => {{
                    let mut res = [[(0i32, 0i32); $c]; $rr];
                    // SAFETY: this function's contract.
                    unsafe {
                        if ternary {
                            block::<$rr, $c, true>(w, r0 + i, xs, kp, b0, &mut res)
                        } else {
                            block::<$rr, $c, false>(w, r0 + i, xs, kp, b0, &mut res)
                        }
                    };
                    for r in 0..$rr {
                        for c in 0..$c {
                            let (p, m) = res[r][c];
                            s[(i + r) * batch + b0 + c] =
                                if ternary { p - m } else { 2 * p - qsum[b0 + c] };
                        }
                    }
                }};
            }
            match (rr, nc) {
                (R, 1) => go!(8, 1),
                (R, _) => go!(8, 2),
                (_, 1) => go!(1, 1),
                _ => go!(1, 2),
            }
            b0 += nc;
        }
        i += rr;
    }
}

/// One register block: `res[r][c] = (Σ_{set} q, Σ_{minus} q)` for row
/// `i0 + r` and input `b0 + c`. No features of its own: inlined into
/// [`sums_avx512`]. `TERNARY` a constant: binary blocks then hold no minus
/// accumulators (as a run-time flag both sets lived, and spilled).
///
/// # Safety
/// As [`sums_avx512`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // register blocks: r, c index accumulators
unsafe fn block<const RR: usize, const CC: usize, const TERNARY: bool>(
    w: Signs,
    i0: usize,
    xs: &[i8],
    kp: usize,
    b0: usize,
    res: &mut [[(i32, i32); CC]; RR],
) {
    let cols = w.cols();
    // Rows start on a byte (binary: cols % 8 == 0; ternary: cols % 4 == 0):
    // a full block's masks are then plain loads; otherwise `masks` shifts.
    let (bytes, per_row) = match w {
        Signs::Binary(v) => (v.signs.bytes(), cols / 8),
        Signs::Ternary(v) => (v.codes.bytes(), cols / 4),
    };
    let aligned = if TERNARY {
        cols.is_multiple_of(4)
    } else {
        cols.is_multiple_of(8)
    };
    let full = if aligned { cols / 64 * 64 } else { 0 };
    // SAFETY: the caller's contract: each input row holds `kp` codes, and
    // `k < cols ≤ kp` with `k` a multiple of 64; full blocks of aligned
    // rows lie in the packed bits.
    unsafe {
        let one = _mm512_set1_epi8(1);
        // Ternary blocks: byte i of 128-bit lane l is weight 16l + i, whose
        // code is in byte 4l + i/4 at bits 2(i mod 4) (plus) and 2(i mod 4)
        // + 1 (minus).
        let (spread, plus_bit, minus_bit) = {
            let mut sp = [0i8; 64];
            let mut pb = [0i8; 64];
            for (j, (s, p)) in sp.iter_mut().zip(pb.iter_mut()).enumerate() {
                let (l, i) = (j / 16, j % 16);
                *s = (4 * l + i / 4) as i8;
                *p = 1 << (2 * (i % 4));
            }
            let pb = _mm512_loadu_si512(pb.as_ptr().cast());
            (
                _mm512_loadu_si512(sp.as_ptr().cast()),
                pb,
                _mm512_add_epi8(pb, pb),
            )
        };
        let mut ap = [[_mm512_setzero_si512(); CC]; RR];
        let mut am = [[_mm512_setzero_si512(); CC]; RR];
        let mut rp = [std::ptr::null::<u8>(); RR];
        for r in 0..RR {
            rp[r] = bytes.as_ptr().add((i0 + r) * per_row);
        }
        // One block of 64 columns from `k`: the rows' masks, then the
        // multiply-adds. A macro, so that the full blocks' loop holds no
        // call (a call spills every accumulator).
        macro_rules! step {
            ($k:expr, |$r:ident| $masks:expr) => {{
                let k = $k;
                let mut xv = [_mm512_setzero_si512(); CC];
                for c in 0..CC {
                    xv[c] = _mm512_loadu_si512(xs.as_ptr().add((b0 + c) * kp + k).cast());
                }
                for $r in 0..RR {
                    let (p, m): (u64, u64) = $masks;
                    let pb = _mm512_maskz_mov_epi8(p, one);
                    for c in 0..CC {
                        ap[$r][c] = _mm512_dpbusd_epi32(ap[$r][c], pb, xv[c]);
                    }
                    if TERNARY {
                        let mb = _mm512_maskz_mov_epi8(m, one);
                        for c in 0..CC {
                            am[$r][c] = _mm512_dpbusd_epi32(am[$r][c], mb, xv[c]);
                        }
                    }
                }
            }};
        }
        let mut k = 0;
        // The next block's rows, a line or two per block of columns: a row
        // of 4096 binary weights is 8 cache lines, too short a stream for
        // the hardware prefetcher. (Past the last row: a prefetch never
        // faults.)
        let next = bytes.as_ptr().wrapping_add((i0 + RR) * per_row);
        let lines = if TERNARY { 2 } else { 1 };
        while k < full {
            for l in 0..lines {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add((k / 64 * lines + l) * 64).cast());
            }
            step!(k, |r| if TERNARY {
                // The 16 code bytes in every 128-bit lane, each byte copied
                // to its 4 weights' bytes, then tested against the weight's
                // plus / minus bit (no `pext`: one port, 4 a block, was the
                // bottleneck).
                let c = _mm512_broadcast_i32x4(_mm_loadu_si128(rp[r].add(k / 4).cast()));
                let rep = _mm512_shuffle_epi8(c, spread);
                (
                    _cvtmask64_u64(_mm512_test_epi8_mask(rep, plus_bit)),
                    _cvtmask64_u64(_mm512_test_epi8_mask(rep, minus_bit)),
                )
            } else {
                (rp[r].add(k / 8).cast::<u64>().read_unaligned(), 0)
            });
            k += 64;
        }
        while k < cols {
            // The last, partial block, or every block of unaligned rows.
            let n = (cols - k).min(64);
            step!(k, |r| masks(w, i0 + r, k, n));
            k += 64;
        }
        for r in 0..RR {
            for c in 0..CC {
                res[r][c] = (
                    _mm512_reduce_add_epi32(ap[r][c]),
                    _mm512_reduce_add_epi32(am[r][c]),
                );
            }
        }
    }
}
