//! [`QuantizedActivations`]: the int8 batch the int8 × int8 kernel reads
//! (made by [`quantize_activations`](crate::quantization::quantize_activations)).

use ndarray::Array2;

/// A batch quantized row by row to symmetric int8: `x[b, k] ≈ codes[b, k]·scales[b]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivations {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) codes: Vec<i8>,
    pub(crate) scales: Vec<f32>,
}

impl QuantizedActivations {
    /// `(batch, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Codes, row-major, in `−127..=127`.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// One scale per row (`max|x_b| / 127`; 0 for an all-zero row).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Codes of row `b`.
    pub fn row(&self, b: usize) -> &[i8] {
        &self.codes[b * self.cols..(b + 1) * self.cols]
    }

    /// The decoded batch.
    pub fn dequantize(&self) -> Array2<f32> {
        Array2::from_shape_fn((self.rows, self.cols), |(b, k)| {
            self.codes[b * self.cols + k] as f32 * self.scales[b]
        })
    }
}

crate::kernels::multiversion! {
    /// One row of the int8 × int8 kernels' input, in one pass over `x`:
    /// `v = x ⊙ m` (`m` empty: `v = x`), its scale `max|v| / 127`, and the
    /// codes `round(v / scale)` stored as `code + 128` (the unsigned operand
    /// of `vpdpbusd`) into `out[..x.len()]`. The same arithmetic as
    /// [`quantize_activations`](crate::quantization::quantize_activations)
    /// on `x ⊙ m`, so the same codes and scale. `None` when a value is not
    /// finite (the caller reports it on the unfused path).
    pub(crate) fn quantize_row_u8(x: &[f32], m: &[f32], tmp: &mut [f32], out: &mut [u8]) -> Option<f32> => quantize_row_u8_generic;
}

#[inline(always)]
fn quantize_row_u8_generic(x: &[f32], m: &[f32], tmp: &mut [f32], out: &mut [u8]) -> Option<f32> {
    const L: usize = 16;
    let n = x.len();
    let v: &[f32] = if m.is_empty() {
        x
    } else {
        for ((t, &a), &b) in tmp[..n].iter_mut().zip(x).zip(&m[..n]) {
            *t = a * b;
        }
        &tmp[..n]
    };
    // max|v| in L lanes; `v·0` stays 0 unless v is ±∞ or NaN.
    let mut hi = [0.0f32; L];
    let mut bad = [0.0f32; L];
    let mut c = v.chunks_exact(L);
    for ch in &mut c {
        for l in 0..L {
            let a = ch[l].abs();
            hi[l] = if a > hi[l] { a } else { hi[l] };
            bad[l] += ch[l] * 0.0;
        }
    }
    let mut amax = 0.0f32;
    let mut nan = 0.0f32;
    for &a in hi.iter().chain(c.remainder()) {
        let a = a.abs();
        amax = if a > amax { a } else { amax };
    }
    for &b in bad.iter() {
        nan += b;
    }
    for &r in c.remainder() {
        nan += r * 0.0;
    }
    if nan != 0.0 {
        return None;
    }
    let s = amax / 127.0;
    let out = &mut out[..n];
    if s > 0.0 {
        let inv = 1.0 / s;
        if inv.is_finite() {
            for (o, &w) in out.iter_mut().zip(v) {
                *o = code_u8(w * inv);
            }
        } else {
            for (o, &w) in out.iter_mut().zip(v) {
                *o = code_u8(w / s);
            }
        }
    } else {
        out.fill(0x80);
    }
    Some(s)
}

/// `round_half_away(clamp(v, −127, 127)) + 128` (the quantizer's rounding).
#[inline(always)]
fn code_u8(v: f32) -> u8 {
    const BELOW_HALF: f32 = 0.499_999_97;
    let v = if v >= -127.0 { v } else { -127.0 };
    let v = if v <= 127.0 { v } else { 127.0 };
    // SAFETY: |v| ≤ 127.5, so the truncation is in range.
    let q = unsafe { (v + BELOW_HALF.copysign(v)).to_int_unchecked::<i32>() };
    (q + 128) as u8
}
