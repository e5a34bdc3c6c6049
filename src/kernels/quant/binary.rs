//! Binary weights (sign bits, one α per row).
//!
//! × f32 activations: `W_i·x = α_i·(Σ_{bit=1} x − Σ_{bit=0} x) = α_i·(2·P − Σx)`
//! with `P` the sum of the inputs under set bits: additions only, one
//! multiply per row. On AVX-512 each 16 sign bits are a mask register for a
//! masked add.
//!
//! × binarized activations ([`xnor_matmul`]): `x_b ≈ β_b·sign(x_b)` with
//! `β_b = mean|x_b|`, and `sign(w)·sign(x) = K − 2·popcount(w XOR x)`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{Array2, ArrayView2};

use super::{scatter_rows, DecodeRows, Isa};
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::{BinaryValues, CompressedMatrix, Structure, Values};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

/// `y[r] = row (row0 + r) of W · x`; `sum = Σx`.
pub(crate) fn gemv(v: &BinaryValues, x: &[f32], sum: f32, row0: usize, y: &mut [f32], isa: Isa) {
    let cols = x.len();
    let bytes = v.signs().bytes();
    let scales = v.scales();
    if cols.is_multiple_of(8) {
        let rb = cols / 8;
        let row = |i: usize| &bytes[i * rb..(i + 1) * rb];
        // Four rows at a time share each load of x. Every row is summed in
        // the same order whatever its group, so the row split between tasks
        // never changes a result.
        let mut r = 0;
        while r + 4 <= y.len() {
            let i = row0 + r;
            let pos = masked_sums([row(i), row(i + 1), row(i + 2), row(i + 3)], x, isa);
            for u in 0..4 {
                y[r + u] = scales[i + u] * (2.0 * pos[u] - sum);
            }
            r += 4;
        }
        while r < y.len() {
            let i = row0 + r;
            y[r] = scales[i] * (2.0 * masked_sum(row(i), x, isa) - sum);
            r += 1;
        }
        return;
    }
    for (r, out) in y.iter_mut().enumerate() {
        let i = row0 + r;
        let pos: f32 = (0..cols)
            .filter(|&k| bit(bytes, i * cols + k))
            .map(|k| x[k])
            .sum();
        *out = scales[i] * (2.0 * pos - sum);
    }
}

#[inline(always)]
fn bit(bytes: &[u8], f: usize) -> bool {
    (bytes[f / 8] >> (f % 8)) & 1 == 1
}

/// Σ x_k over set bits (bit k of the LSB-first stream); `x.len() = 8·bits.len()`.
pub(crate) fn masked_sum(bits: &[u8], x: &[f32], isa: Isa) -> f32 {
    masked_sums([bits], x, isa)[0]
}

/// [`masked_sum`] of `R` rows sharing `x`; each row's result is the same as
/// [`masked_sum`] of that row alone.
fn masked_sums<const R: usize>(bits: [&[u8]; R], x: &[f32], isa: Isa) -> [f32; R] {
    debug_assert!(bits.iter().all(|b| b.len() * 8 == x.len()));
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx512 {
        // SAFETY: tiers at or above Avx512 are only reachable when detected.
        return unsafe { masked_sums_avx512(bits, x) };
    }
    let _ = isa;
    bits.map(|b| masked_sum_portable(b, x))
}

fn masked_sum_portable(bits: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (&b, xc) in bits.iter().zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += if (b >> l) & 1 == 1 { xc[l] } else { 0.0 };
        }
    }
    acc.iter().sum()
}

/// Two accumulators per row (even and odd blocks of 16 inputs); with four
/// rows that is eight independent adds in flight. The masks are read straight
/// from the packed bytes.
///
/// # Safety
/// AVX-512 F/BW/VL must be available; each `bits[r]` must hold
/// `x.len().div_ceil(8)` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn masked_sums_avx512<const R: usize>(bits: [&[u8]; R], x: &[f32]) -> [f32; R] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let n = x.len();
        let bp = bits.map(|b| b.as_ptr());
        let xp = x.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut k = 0;
        while k + 32 <= n {
            let x0 = _mm512_loadu_ps(xp.add(k));
            let x1 = _mm512_loadu_ps(xp.add(k + 16));
            for r in 0..R {
                let m0 = (bp[r].add(k / 8) as *const u16).read_unaligned();
                let m1 = (bp[r].add(k / 8 + 2) as *const u16).read_unaligned();
                acc[r][0] = _mm512_mask_add_ps(acc[r][0], m0, acc[r][0], x0);
                acc[r][1] = _mm512_mask_add_ps(acc[r][1], m1, acc[r][1], x1);
            }
            k += 32;
        }
        while k < n {
            // n is a multiple of 8: the rest is 8, 16 or 24 values.
            let len: __mmask16 = if n - k >= 16 { 0xFFFF } else { 0x00FF };
            let xv = _mm512_maskz_loadu_ps(len, xp.add(k));
            for r in 0..R {
                let m = if n - k >= 16 {
                    (bp[r].add(k / 8) as *const u16).read_unaligned()
                } else {
                    u16::from(*bp[r].add(k / 8))
                };
                acc[r][0] = _mm512_mask_add_ps(acc[r][0], m, acc[r][0], xv);
            }
            k += 16;
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])))
    }
}

impl DecodeRows for BinaryValues {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        decode_rows_generic(self, row0, out)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &BinaryValues, row0: usize, out: &mut [f32]) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::binary_row(v, row0 + r, o);
    }
}

/// `n ≤ 64` bits starting at bit `off` of an LSB-first stream.
#[inline]
fn load_bits(bytes: &[u8], off: usize, n: usize) -> u64 {
    let first = off / 8;
    let mut buf = [0u8; 16];
    let avail = (bytes.len() - first).min(9);
    buf[..avail].copy_from_slice(&bytes[first..first + avail]);
    let lo = u128::from_le_bytes(buf) >> (off % 8);
    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    lo as u64 & mask
}

/// Sign bits of `x` (1 for x ≥ 0, as for weights) packed in u64 words, the
/// last one zero-padded.
fn sign_words(x: &[f32]) -> Vec<u64> {
    x.chunks(64)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u64, |w, (l, &v)| w | (u64::from(v >= 0.0) << l))
        })
        .collect()
}

/// `Σ popcount(a XOR b)` on the chosen tier.
fn xor_popcount(a: &[u64], b: &[u64], isa: Isa) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if isa >= Isa::Avx512 && std::is_x86_feature_detected!("avx512vpopcntdq") {
            #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
            fn v(a: &[u64], b: &[u64]) -> u32 {
                xor_popcount_generic(a, b)
            }
            // SAFETY: detected above.
            return unsafe { v(a, b) };
        }
        if isa >= Isa::Avx2 {
            #[target_feature(enable = "popcnt")]
            fn v(a: &[u64], b: &[u64]) -> u32 {
                xor_popcount_generic(a, b)
            }
            // SAFETY: every tier above Portable includes POPCNT in practice;
            // checked here to be sure.
            if std::is_x86_feature_detected!("popcnt") {
                return unsafe { v(a, b) };
            }
        }
    }
    let _ = isa;
    xor_popcount_generic(a, b)
}

#[inline(always)]
fn xor_popcount_generic(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Binary weights × binarized activations with XNOR + popcount:
/// `y[b, i] = α_i·β_b·(K − 2·popcount(w_i XOR x_b))` with `β_b = mean|x_b|`
/// and `sign(0) = +1`. This approximates `x·Wᵀ` (the activations lose all
/// but their sign); it is exact for the binarized product. `m` must hold
/// binary values in a dense or kept-rows structure.
///
/// ```
/// use ndarray::array;
/// use squish::prelude::*;
/// use squish::quantization::kernels::binary::xnor_matmul;
/// let w = array![[1.0f32, -1.0, 1.0], [-2.0, -2.0, 2.0]];
/// let m = Binary.quantize(&CompressedMatrix::from_dense(w.view())?)?;
/// let y = xnor_matmul(&m, array![[3.0f32, -3.0, -3.0]].view(), &Sequential)?;
/// // signs agree on 2 of 3 → 1; on 1 of 3 → −1; α = 1, 2 and β = 3.
/// assert_eq!(y, array![[3.0f32, -6.0]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn xnor_matmul(
    m: &CompressedMatrix,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    xnor_matmul_isa(m, x, exec, Isa::detect())
}

/// [`xnor_matmul`] on a chosen tier ([`Isa::Portable`] forces plain Rust).
pub fn xnor_matmul_isa(
    m: &CompressedMatrix,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Result<Array2<f32>> {
    let v = binary_block(m, x)?;
    let isa = isa.capped();
    let (batch, cols) = x.dim();
    let rows = v.layout.rows();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let xw: Vec<Vec<u64>> = xs.chunks_exact(cols).map(sign_words).collect();
    let beta: Vec<f32> = xs.chunks_exact(cols).map(mean_abs).collect();
    let nw = cols.div_ceil(64);
    let per = rows_per_task(cols, 1 << 16);
    let bytes = v.signs().bytes();
    let y = row_blocks(rows, batch, per, exec, |t, out| {
        let mut w = vec![0u64; nw];
        for (r, y) in out.chunks_mut(batch).enumerate() {
            let i = t * per + r;
            for (j, wj) in w.iter_mut().enumerate() {
                *wj = load_bits(bytes, i * cols + 64 * j, (cols - 64 * j).min(64));
            }
            let a = v.scales()[i];
            for (b, yb) in y.iter_mut().enumerate() {
                let pc = xor_popcount(&w, &xw[b], isa) as i64;
                *yb = (a * beta[b]) * (cols as i64 - 2 * pc) as f32;
            }
        }
    });
    Ok(scatter_rows(m, y))
}

/// Plain reference for [`xnor_matmul`]: decoded ±α weights times ±β
/// activations, summed in f64.
pub fn xnor_reference(m: &CompressedMatrix, x: ArrayView2<f32>) -> Result<Array2<f64>> {
    binary_block(m, x)?;
    let w = m.to_dense();
    let beta: Vec<f64> = x
        .outer_iter()
        .map(|r| mean_abs(&r.to_vec()) as f64)
        .collect();
    let xb = Array2::from_shape_fn(
        x.dim(),
        |(b, k)| {
            if x[[b, k]] >= 0.0 {
                beta[b]
            } else {
                -beta[b]
            }
        },
    );
    Ok(xb.dot(&w.mapv(f64::from).t()))
}

fn binary_block<'a>(m: &'a CompressedMatrix, x: ArrayView2<f32>) -> Result<&'a BinaryValues> {
    let v = match (m.structure(), m.values()) {
        (Structure::Dense | Structure::KeptRows(_), Some(Values::Binary(v))) => v,
        _ => {
            return Err(SquishError::Incompatible {
                pass: "xnor matmul".into(),
                structure: m.structure().kind(),
                encoding: m.encoding(),
                hint: "quantize a dense or kept-rows matrix with Binary first",
            })
        }
    };
    if x.ncols() != m.cols() {
        return Err(SquishError::shape(
            "matmul x·Wᵀ",
            format!("x with {} columns", m.cols()),
            format!("x of shape {}x{}", x.nrows(), x.ncols()),
        ));
    }
    check_non_empty("matmul input", x.nrows(), x.ncols())?;
    check_finite("matmul input", x.iter())?;
    Ok(v)
}

/// mean|w| in f64, 0 for an empty slice.
pub(crate) fn mean_abs(v: &[f32]) -> f32 {
    if v.is_empty() {
        0.0
    } else {
        (v.iter().map(|&w| w.abs() as f64).sum::<f64>() / v.len() as f64) as f32
    }
}
