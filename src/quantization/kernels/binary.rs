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

use super::{scatter_rows, Isa};
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::{BinaryValues, CompressedMatrix, Structure, Values};
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor};

/// `y[r] = row (row0 + r) of W · x`; `sum = Σx`.
pub(crate) fn gemv(v: &BinaryValues, x: &[f32], sum: f32, row0: usize, y: &mut [f32], isa: Isa) {
    let cols = x.len();
    let bytes = v.signs().bytes();
    for (r, out) in y.iter_mut().enumerate() {
        let i = row0 + r;
        let pos = if cols.is_multiple_of(8) {
            let row = &bytes[i * cols / 8..(i + 1) * cols / 8];
            masked_sum(row, x, isa)
        } else {
            (0..cols)
                .filter(|&k| bit(bytes, i * cols + k))
                .map(|k| x[k])
                .sum()
        };
        *out = v.scales()[i] * (2.0 * pos - sum);
    }
}

#[inline(always)]
fn bit(bytes: &[u8], f: usize) -> bool {
    (bytes[f / 8] >> (f % 8)) & 1 == 1
}

/// Σ x_k over set bits (bit k of the LSB-first stream); `x.len() = 8·bits.len()`.
pub(crate) fn masked_sum(bits: &[u8], x: &[f32], isa: Isa) -> f32 {
    debug_assert_eq!(bits.len() * 8, x.len());
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx512 {
        // SAFETY: tiers at or above Avx512 are only reachable when detected.
        return unsafe { masked_sum_avx512(bits, x) };
    }
    let _ = isa;
    masked_sum_portable(bits, x)
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn masked_sum_avx512(bits: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let (bp, xp) = (bits.as_ptr(), x.as_ptr());
    // Eight accumulators: enough independent adds to cover their latency.
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut k = 0;
    while k + 128 <= n {
        let w0 = (bp.add(k / 8) as *const u64).read_unaligned();
        let w1 = (bp.add(k / 8 + 8) as *const u64).read_unaligned();
        for u in 0..4 {
            let m0 = (w0 >> (16 * u)) as u16;
            let m1 = (w1 >> (16 * u)) as u16;
            let x0 = _mm512_loadu_ps(xp.add(k + 16 * u));
            let x1 = _mm512_loadu_ps(xp.add(k + 64 + 16 * u));
            acc[u] = _mm512_mask_add_ps(acc[u], m0, acc[u], x0);
            acc[4 + u] = _mm512_mask_add_ps(acc[4 + u], m1, acc[4 + u], x1);
        }
        k += 128;
    }
    while k + 64 <= n {
        let w = (bp.add(k / 8) as *const u64).read_unaligned();
        for (u, a) in acc.iter_mut().take(4).enumerate() {
            let m = (w >> (16 * u)) as u16;
            *a = _mm512_mask_add_ps(*a, m, *a, _mm512_loadu_ps(xp.add(k + 16 * u)));
        }
        k += 64;
    }
    while k < n {
        // n is a multiple of 8: the rest is 8 or 16 values.
        let (m, len): (u16, __mmask16) = if n - k >= 16 {
            ((bp.add(k / 8) as *const u16).read_unaligned(), 0xFFFF)
        } else {
            (u16::from(*bp.add(k / 8)), 0x00FF)
        };
        let xv = _mm512_maskz_loadu_ps(len, xp.add(k));
        acc[0] = _mm512_mask_add_ps(acc[0], m & len, acc[0], xv);
        k += 16;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let t = _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]), _mm512_add_ps(acc[6], acc[7]));
    _mm512_reduce_add_ps(_mm512_add_ps(s, t))
}

multiversion! {
    /// Decodes rows `row0..` of W into `out` (whole rows of `cols`).
    pub(crate) fn decode_rows(v: &BinaryValues, row0: usize, out: &mut [f32]) => decode_rows_generic;
}

#[inline(always)]
fn decode_rows_generic(v: &BinaryValues, row0: usize, out: &mut [f32]) {
    let cols = v.layout.max_row_len();
    let bytes = v.signs().bytes();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        let i = row0 + r;
        let a = v.scales()[i];
        for (k, o) in o.iter_mut().enumerate() {
            *o = if bit(bytes, i * cols + k) { a } else { -a };
        }
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
    let beta: Vec<f32> = xs
        .chunks_exact(cols)
        .map(crate::quantization::sign::mean_abs)
        .collect();
    let nw = cols.div_ceil(64);
    let mut yt = vec![0.0f32; rows * batch];
    let per = rows_per_task(cols, 1 << 16);
    let bytes = v.signs().bytes();
    for_each_chunk_mut(exec, &mut yt, per * batch, |t, out| {
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
    let y = Array2::from_shape_vec((rows, batch), yt)
        .expect("sizes match")
        .reversed_axes()
        .as_standard_layout()
        .into_owned();
    Ok(scatter_rows(m, y))
}

/// Plain reference for [`xnor_matmul`]: decoded ±α weights times ±β
/// activations, summed in f64.
pub fn xnor_reference(m: &CompressedMatrix, x: ArrayView2<f32>) -> Result<Array2<f64>> {
    binary_block(m, x)?;
    let w = m.to_dense();
    let beta: Vec<f64> = x
        .outer_iter()
        .map(|r| crate::quantization::sign::mean_abs(&r.to_vec()) as f64)
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
