//! Binary weights (sign bits, one α per row).
//!
//! × f32 activations: the decoded-tile kernels of
//! [`tile`](crate::kernels::tile) (on AVX-512 each 16 sign bits are a mask
//! that blends `+α` / `−α` in a register, `quant::lanes`); this
//! file holds the row decoder behind `DecodeRows`.
//!
//! × binarized activations ([`xnor_matmul`]): `x_b ≈ β_b·sign(x_b)` with
//! `β_b = mean|x_b|`, and `sign(w)·sign(x) = K − 2·popcount(w XOR x)`.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, __mmask16};

use super::{scatter_rows, Isa, RowScale};
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::{BinaryValues, CompressedMatrix, Structure, Values};
use crate::parallel::{row_blocks, rows_per_task, ParallelExecutor};

super::decode_rows_by_row!(BinaryValues, binary_row);

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
pub fn xnor_matmul<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    xnor_matmul_isa(m, x, exec, Isa::detect())
}

/// [`xnor_matmul`] on a chosen tier ([`Isa::Portable`] forces plain Rust).
pub fn xnor_matmul_isa<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
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
pub fn xnor_reference<'a>(
    m: &CompressedMatrix,
    x: impl AsArray<'a, f32, Ix2>,
) -> Result<Array2<f64>> {
    let x: ArrayView2<'a, f32> = x.into();
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

/// Binary rows for the streamed products of
/// [`gemv`](crate::kernels::gemv): each 16 sign bits are a mask that
/// blends `+α` / `−α` (α broadcast once per row). Rows of a multiple of 16
/// columns read their bits as one aligned-to-the-row `u16`; others shift.
#[cfg(target_arch = "x86_64")]
/// `ALIGNED`: rows of a multiple of 16 signs (a const parameter: tested
/// per 16 weights at run time it cost a third of the product).
pub(crate) struct BinaryRows<'a, const ALIGNED: bool> {
    v: &'a BinaryValues,
    cols: usize,
    sc: RowScale,
}

/// [`gemv::quant`](crate::kernels::gemv::quant) over binary rows.
///
/// # Safety
/// As [`gemv::quant`](crate::kernels::gemv::quant): AVX-512 F/BW/VL, BMI2
/// and FMA are available; `v` holds rows of `s.cols`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn streamed(
    v: &BinaryValues,
    s: crate::kernels::gemv::Stream<'_>,
    sc: RowScale,
) -> ndarray::Array2<f32> {
    let (rows, cols) = (v.layout.rows(), s.cols);
    // SAFETY: this function's contract.
    // Rows of whole 16-value blocks read each block at a fixed offset.
    let aligned = cols.is_multiple_of(16);
    unsafe { super::with_const!(aligned, |A| s.run(&BinaryRows::<A> { v, cols, sc }, rows)) }
}

#[cfg(target_arch = "x86_64")]
impl<const ALIGNED: bool> crate::kernels::gemv::RowReader for BinaryRows<'_, ALIGNED> {
    type Seg = (std::arch::x86_64::__m512, std::arch::x86_64::__m512);

    const BYTES_PER_16: usize = 2;

    #[inline(always)]
    unsafe fn seg(&self, i: usize, _: usize) -> Self::Seg {
        use std::arch::x86_64::*;
        let a = self.sc.of(self.v.scales()[i]);
        // SAFETY: AVX-512 is available (the caller's contract).
        unsafe { (_mm512_set1_ps(-a), _mm512_set1_ps(a)) }
    }

    #[inline(always)]
    unsafe fn lanes(&self, &(neg, pos): &Self::Seg, i: usize, k: usize, m: __mmask16) -> __m512 {
        use std::arch::x86_64::*;
        let off = i * self.cols + k;
        let bytes = self.v.signs().bytes();
        let bits = if ALIGNED && m == 0xFFFF {
            // SAFETY: `off` is a multiple of 16 and bits `off..off + 16`
            // are signs of row `i` (the caller's contract), so both bytes
            // are inside the stream.
            unsafe { bytes.as_ptr().add(off / 8).cast::<u16>().read_unaligned() }.to_le()
        } else {
            (super::lanes::read8(bytes, off / 8) >> (off % 8)) as u16
        };
        // SAFETY: AVX-512 is available (the caller's contract); lanes
        // outside `m` (and their garbage bits) are zeroed.
        unsafe {
            let w = _mm512_mask_blend_ps(bits, neg, pos);
            if m == 0xFFFF {
                w
            } else {
                _mm512_maskz_mov_ps(m, w)
            }
        }
    }

    #[inline(always)]
    fn addr(&self, i: usize, k: usize) -> *const u8 {
        self.v
            .signs()
            .bytes()
            .as_ptr()
            .wrapping_add((i * self.cols + k) / 8)
    }
}
