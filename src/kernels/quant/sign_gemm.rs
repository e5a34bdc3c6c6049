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
//! `Σ_{bit=1} q` over 64 columns is one `vpdpbusd` of the bits expanded to
//! bytes of 0 / 1 (the unsigned operand) with the signed codes. Ternary
//! takes one too: its 2-bit codes become bytes `w + 1` (one GFNI affine
//! transform), and `Σ (w + 1)·q − Σ q` is the sum. Integer
//! sums are exact in any order, and the f32 steps are the reference's
//! ([`sign_reference`]), so every path, tier, batch size and executor
//! gives the same bits. With f32 activations a binary weight
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

    pub(crate) fn cols(&self) -> usize {
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
/// Input rows per register block: three, so that the three slices of a
/// weight-only product ([`sliced`](super::sliced)) decode each block of
/// weights once (8 × 3 accumulators, the three inputs, the decoded row and
/// the constants fill the 32 registers). Ternary weight-only at 4096²,
/// resident: 0.150–0.157 ms with two.
const C: usize = 3;
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
    let ternary = matches!(w, Signs::Ternary(_));
    // (Ternary rows need GFNI and to start on a byte: `cols % 4 == 0`.)
    #[cfg(target_arch = "x86_64")]
    let vnni = isa.capped() >= Isa::Avx512Vnni
        && cols > 0
        && (!ternary || (cols.is_multiple_of(4) && gfni_available()));
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = {
        let _ = isa;
        false
    };
    // How the weights become bytes: binary rows through GFNI at batch 1
    // (where the mask moves' throughput bounds the loop), through masks
    // otherwise (off the multiply units the three slices keep busy).
    #[cfg(target_arch = "x86_64")]
    let decode = if ternary {
        TERNARY
    } else if batch == 1 && gfni_available() {
        BINARY_GFNI
    } else {
        BINARY_MASK
    };
    #[cfg(target_arch = "x86_64")]
    let inputs = vnni.then(|| Inputs::new(xq, decode));
    let scales = w.scales();
    row_blocks(rows, batch, TASK_ROWS, exec, |t, out| {
        let r0 = t * TASK_ROWS;
        let nr = out.len() / batch;
        // Exact integer sums S[r][b] first, then the f32 steps.
        let mut s = vec![0i32; nr * batch];
        #[cfg(target_arch = "x86_64")]
        if let Some(x) = &inputs {
            // SAFETY: VNNI (and GFNI for `decode` other than masks) was
            // checked; `x` was built for `decode`; rows `r0..r0 + nr` exist.
            unsafe { sums_avx512(w, decode, r0, x, &mut s) };
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
pub(crate) fn bits64(bytes: &[u8], off: usize, n: usize) -> u64 {
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

/// The AVX-512 VNNI sums (see [`sums_portable`]) of binary rows, or of
/// ternary rows with `cols % 4 == 0` on a CPU with GFNI.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI and BMI2 are available, and GFNI for ternary rows
/// (whose `cols` is a multiple of 4); `decode` is [`TERNARY`] for ternary
/// rows and needs GFNI if not [`BINARY_MASK`]; `x` was built for `decode`
/// from `w.cols()` columns; rows `r0..r0 + s.len() / batch` exist.
#[cfg(target_arch = "x86_64")]
unsafe fn sums_avx512(w: Signs, decode: u8, r0: usize, x: &Inputs, s: &mut [i32]) {
    // SAFETY: this function's contract.
    unsafe {
        match decode {
            BINARY_MASK => binary_sums(w, r0, x, s),
            BINARY_GFNI => gfni_sums::<BINARY_GFNI>(w, r0, x, s),
            _ => gfni_sums::<TERNARY>(w, r0, x, s),
        }
    }
}

/// The VNNI path's operands: the batch's codes in rows of `kp` (a whole
/// number of 64-byte chunks, zeros past the columns), in the register order
/// of the weights' bytes ([`input_order`] within each chunk), and `Σ_k q`
/// per input row (the correction).
#[cfg(target_arch = "x86_64")]
struct Inputs {
    codes: Vec<i8>,
    kp: usize,
    qsum: Vec<i32>,
}

#[cfg(target_arch = "x86_64")]
impl Inputs {
    fn new(xq: &QuantizedActivations, decode: u8) -> Self {
        let (batch, cols) = (xq.rows, xq.cols);
        let kp = cols.next_multiple_of(64);
        let mut codes = vec![0i8; batch * kp];
        for (o, b) in codes.chunks_exact_mut(kp).zip(0..batch) {
            let row = xq.row(b);
            if decode == BINARY_MASK {
                o[..cols].copy_from_slice(row);
            } else {
                for (k0, o) in (0..kp).step_by(64).zip(o.chunks_exact_mut(64)) {
                    for (pos, o) in o.iter_mut().enumerate() {
                        let k = k0 + input_order(decode, pos);
                        *o = row.get(k).copied().unwrap_or(0);
                    }
                }
            }
        }
        let qsum = (0..batch)
            .map(|b| xq.row(b).iter().map(|&q| q as i32).sum())
            .collect();
        Inputs { codes, kp, qsum }
    }
}

/// [`sums_avx512`] for binary rows.
///
/// # Safety
/// As [`sums_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,bmi2")]
unsafe fn binary_sums(w: Signs, r0: usize, x: &Inputs, s: &mut [i32]) {
    // SAFETY: the caller's contract.
    unsafe { sums::<BINARY_MASK>(w, r0, x, s) }
}

/// [`sums_avx512`] through GFNI's affine byte transform: binary rows at
/// batch 1 (`D = BINARY_GFNI`) or ternary rows (`D = TERNARY`).
///
/// # Safety
/// As [`sums_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,bmi2,gfni")]
unsafe fn gfni_sums<const D: u8>(w: Signs, r0: usize, x: &Inputs, s: &mut [i32]) {
    // SAFETY: the caller's contract.
    unsafe { sums::<D>(w, r0, x, s) }
}

/// Whether this CPU has GFNI (besides the VNNI tier): the ternary VNNI
/// sums need it, binary ones at batch 1 take it.
#[cfg(target_arch = "x86_64")]
pub(crate) fn gfni_available() -> bool {
    std::arch::is_x86_feature_detected!("gfni")
}

/// Binary rows, each block's 64 sign bits a mask: a mask load and a
/// masked move of ones.
#[cfg(target_arch = "x86_64")]
const BINARY_MASK: u8 = 0;
/// Binary rows, each block's 8 bytes of bits broadcast to every qword and
/// one affine transform: qword `q` takes bit `q` of each byte.
#[cfg(target_arch = "x86_64")]
const BINARY_GFNI: u8 = 1;
/// Ternary rows, each block's 16 code bytes broadcast to every 128-bit lane
/// and one affine transform: lane `l` takes the codes at position `l` of
/// each byte (bits `2l`, `2l + 1`).
#[cfg(target_arch = "x86_64")]
const TERNARY: u8 = 2;

/// The weight (column within its block of 64) whose input byte sits at
/// byte `pos` of the block's register under `decode`: where its weight
/// byte lands.
#[cfg(target_arch = "x86_64")]
const fn input_order(decode: u8, pos: usize) -> usize {
    let (q, j) = (pos / 8, pos % 8);
    match decode {
        BINARY_MASK => pos,
        // Byte `j` of qword `q`: bit `q` of bits byte `j`.
        BINARY_GFNI => 8 * j + q,
        // Byte `j` of qword `q` (lane `q / 2`): the code at position `q / 2`
        // of code byte `8·(q % 2) + j`.
        _ => 4 * (8 * (q % 2) + j) + q / 2,
    }
}

/// The affine matrices (one per qword) of [`BINARY_GFNI`]: output bit 0 is
/// input bit `q` (matrix byte 7 gives output bit 0).
#[cfg(target_arch = "x86_64")]
const BINARY_AFFINE: [u64; 8] = {
    let mut am = [0u64; 8];
    let mut q = 0;
    while q < 8 {
        am[q] = (1u64 << q) << 56;
        q += 1;
    }
    am
};

/// The affine matrices of [`TERNARY`]: qword `q` decodes the code at
/// position `p = q / 2` (bits `2p`, `2p + 1`) to `u`; output bit 0 comes
/// from matrix byte 7, bit 1 from byte 6 (with the constant 1: bit 0 = 1 ⊕
/// plus ⊕ minus, bit 1 = plus).
#[cfg(target_arch = "x86_64")]
const TERNARY_AFFINE: [u64; 8] = {
    let mut am = [0u64; 8];
    let mut q = 0;
    while q < 8 {
        let p = 2 * (q / 2);
        am[q] = ((0b11u64 << p) << 56) | ((1u64 << p) << 48);
        q += 1;
    }
    am
};

/// The register-blocked sums, in blocks of [`R`] rows × up to [`C`]
/// inputs (8 rows: eight independent `vpdpbusd` chains at batch 1): per 64
/// columns each row's weights become unsigned bytes `u` and one `vpdpbusd`
/// per input adds `Σ u·q` into 16 lanes.
///
/// * Binary: `u` is the sign bit, so `S = 2·Σ u·q − Σ q`. [`BINARY_MASK`]:
///   a mask load and a masked move (VBMI's `vpmultishiftqb` measured no
///   faster). [`BINARY_GFNI`]: a broadcast load and one `vgf2p8affineqb`,
///   which does not wait on the mask loads (one a cycle): binary × int8 at
///   batch 1, 4096², one thread, 73 → 61 µs; with the three slices of a
///   weight-only product, where the multiply units bound the loop, the
///   affine transform took their time (124 → 130 µs).
/// * Ternary: `u = w + 1 ∈ {0, 1, 2}`, so `S = Σ u·q − Σ q`. The block's 16
///   code bytes are broadcast to every 128-bit lane and one
///   `vgf2p8affineqb` maps each byte's code at the qword's position to `u`:
///   bit 0 = 1 ⊕ plus ⊕ minus, bit 1 = plus. Three instructions per row and
///   64 weights; two masks (`vptestmb`) and two `vpdpbusd` took eight, and a
///   `vpshufb` that gave each qword its own 8 code bytes cost 25 % (4096²,
///   batch 1, one thread: 130 → 95 µs without it). (The invalid code 3,
///   refused when values are built, would give 3.)
///
/// # Safety
/// As [`sums_avx512`]; inlined into a caller with the target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sums<const D: u8>(w: Signs, r0: usize, x: &Inputs, s: &mut [i32]) {
    let qsum = &x.qsum;
    let batch = qsum.len();
    let nr = s.len() / batch;
    let mut i = 0;
    while i < nr {
        let rr = if i + R <= nr { R } else { 1 };
        let mut b0 = 0;
        while b0 < batch {
            let nc = (batch - b0).min(C);
            macro_rules! go {
                ($rr:literal, $c:literal) => {{
                    let mut res = [[0i32; $c]; $rr];
                    // SAFETY: this function's contract.
                    unsafe { block::<$rr, $c, D>(w, r0 + i, x, b0, &mut res) };
                    for r in 0..$rr {
                        for c in 0..$c {
                            let p = res[r][c];
                            s[(i + r) * batch + b0 + c] =
                                if D == TERNARY { p } else { 2 * p } - qsum[b0 + c];
                        }
                    }
                }};
            }
            match (rr, nc) {
                (R, 1) => go!(8, 1),
                (R, 2) => go!(8, 2),
                (R, _) => go!(8, 3),
                (_, 1) => go!(1, 1),
                (_, 2) => go!(1, 2),
                _ => go!(1, 3),
            }
            b0 += nc;
        }
        i += rr;
    }
}

/// One register block: `res[r][c] = Σ u·q` (see [`sums`]) for row `i0 + r`
/// and input `b0 + c`. The decode `D` a constant: the kinds share the loop,
/// not a run-time branch in it.
///
/// # Safety
/// As [`sums_avx512`]; inlined into a caller with the target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // register blocks: r, c index accumulators
unsafe fn block<const RR: usize, const CC: usize, const D: u8>(
    w: Signs,
    i0: usize,
    x: &Inputs,
    b0: usize,
    res: &mut [[i32; CC]; RR],
) {
    let (xs, kp) = (&x.codes, x.kp);
    let cols = w.cols();
    let (bytes, per_row) = match w {
        Signs::Binary(v) => (v.signs.bytes(), cols / 8),
        Signs::Ternary(v) => (v.codes.bytes(), cols / 4),
    };
    // Ternary rows start on a byte (the caller's contract), binary ones
    // when `cols % 8 == 0`: full blocks are then plain loads; binary rows
    // off a byte take every block through `bits64`.
    let ternary = D == TERNARY;
    let full = if ternary || cols.is_multiple_of(8) {
        cols / 64 * 64
    } else {
        0
    };
    // SAFETY: the caller's contract: each input row holds `kp` codes, and
    // `k < cols ≤ kp` with `k` a multiple of 64; full blocks lie in the
    // packed bits, and a ternary row's last block loads its own bytes only.
    unsafe {
        let one = _mm512_set1_epi8(1);
        let affine = _mm512_loadu_si512(if ternary {
            TERNARY_AFFINE.as_ptr().cast()
        } else {
            BINARY_AFFINE.as_ptr().cast()
        });
        let mut acc = [[_mm512_setzero_si512(); CC]; RR];
        let mut rp = [std::ptr::null::<u8>(); RR];
        for r in 0..RR {
            rp[r] = bytes.as_ptr().add((i0 + r) * per_row);
        }
        // One block of 64 columns from `k`: each row's bytes `u`, then the
        // multiply-adds. A macro, so that the full blocks' loop holds no
        // call (a call spills every accumulator).
        macro_rules! step {
            ($k:expr, |$r:ident| $u:expr) => {{
                let k = $k;
                let mut xv = [_mm512_setzero_si512(); CC];
                for c in 0..CC {
                    xv[c] = _mm512_loadu_si512(xs.as_ptr().add((b0 + c) * kp + k).cast());
                }
                for $r in 0..RR {
                    let u: __m512i = $u;
                    for c in 0..CC {
                        acc[$r][c] = _mm512_dpbusd_epi32(acc[$r][c], u, xv[c]);
                    }
                }
            }};
        }
        // A binary block's bytes `u` from its 64 bits (a macro, as `step`).
        macro_rules! binary_u {
            ($bits:expr) => {{
                let bits: u64 = $bits;
                if D == BINARY_GFNI {
                    _mm512_gf2p8affine_epi64_epi8::<0>(_mm512_set1_epi64(bits as i64), affine)
                } else {
                    _mm512_maskz_mov_epi8(bits, one)
                }
            }};
        }
        macro_rules! ternary_u {
            ($codes:expr) => {
                _mm512_gf2p8affine_epi64_epi8::<1>(_mm512_broadcast_i32x4($codes), affine)
            };
        }
        let mut k = 0;
        // The next block's rows, a line or two per block of columns: a row
        // of 4096 binary weights is 8 cache lines, too short a stream for
        // the hardware prefetcher. (Past the last row: a prefetch never
        // faults.)
        let next = bytes.as_ptr().wrapping_add((i0 + RR) * per_row);
        let lines = if ternary { 2 } else { 1 };
        while k < full {
            for l in 0..lines {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add((k / 64 * lines + l) * 64).cast());
            }
            step!(k, |r| if ternary {
                ternary_u!(_mm_loadu_si128(rp[r].add(k / 4).cast()))
            } else {
                binary_u!(rp[r].add(k / 8).cast::<u64>().read_unaligned())
            });
            k += 64;
        }
        while k < cols {
            // The last, partial block, or every block of binary rows off a
            // byte. (Ternary: `u` past the row's end meets zero inputs.)
            let n = (cols - k).min(64);
            step!(k, |r| if ternary {
                let m = ((1u32 << (n / 4)) - 1) as u16;
                ternary_u!(_mm_maskz_loadu_epi8(m, rp[r].add(k / 4).cast()))
            } else {
                binary_u!(bits64(bytes, (i0 + r) * cols + k, n))
            });
            k += 64;
        }
        for r in 0..RR {
            for c in 0..CC {
                res[r][c] = _mm512_reduce_add_epi32(acc[r][c]);
            }
        }
    }
}
