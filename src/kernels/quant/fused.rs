//! Small batches (2 ..= [`FUSED_MAX_BATCH`]) of weight-only products: each
//! stored row is decoded once into an L1-resident buffer and dotted with
//! every input row, so the weights are read and decoded once per call and
//! no f32 copy of the matrix is formed.
//!
//! Decoding a whole block to f32 and calling a GEMM (the path above this
//! batch size) costs a full dense GEMM *plus* the decode: at batch 8 on
//! 1536 × 384 it made ternary 11× slower than dense f32 (issue #20). Here
//! the decode is byte-wise (a byte holds 2, 4 or 8 codes, so rows whose
//! codes start on a byte decode without per-code bit arithmetic) and the
//! dot products run on 16 lanes, vectorized by `multiversion!`.

use crate::matrix::{BinaryValues, Int4Values, Int8Values, TernaryValues, Values};
use crate::matrix::{TERNARY_MINUS, TERNARY_PLUS};

use super::segments;

/// Largest batch served here; larger batches decode blocks and use GEMM.
pub(crate) const FUSED_MAX_BATCH: usize = 16;

multiversion! {
    /// `out` `[nr, batch]` (row-major) = rows `r0..r0 + nr` of W times every
    /// row of `x` (`[batch, cols]`, row-major).
    pub(crate) fn rows_times_batch(values: &Values, x: &[f32], batch: usize, r0: usize, out: &mut [f32]) => rows_times_batch_generic;
}

#[inline(always)]
fn rows_times_batch_generic(values: &Values, x: &[f32], batch: usize, r0: usize, out: &mut [f32]) {
    let cols = values.layout().max_row_len();
    debug_assert_eq!(x.len(), batch * cols);
    let row = |b: usize| &x[b * cols..(b + 1) * cols];
    let mut w = vec![0.0f32; cols];
    for (r, y) in out.chunks_exact_mut(batch).enumerate() {
        decode_row(values, r0 + r, &mut w);
        // Four input rows per pass: each loaded weight feeds four sums.
        let mut b = 0;
        while b < batch {
            let k = (batch - b).min(4);
            // A short group repeats its last row; the extra sums are dropped.
            let xs = [0, 1, 2, 3].map(|j| row(b + j.min(k - 1)));
            y[b..b + k].copy_from_slice(&dot4(&w, xs)[..k]);
            b += k;
        }
    }
}

const LANES: usize = 16;

/// `[Σ w·x₀, Σ w·x₁, Σ w·x₂, Σ w·x₃]` on 16 lanes each, then a fixed
/// pairwise reduction (the same order on every call, whatever the
/// executor; a sum does not depend on which four rows it is computed with).
#[inline(always)]
fn dot4(w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    // Four separate accumulator arrays: LLVM keeps each in one vector
    // register (a 2-D array defeated its vectorizer).
    let (mut a0, mut a1, mut a2, mut a3) =
        ([0.0f32; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let wc = w.chunks_exact(LANES);
    let n = w.len() - wc.remainder().len();
    let chunks = wc
        .zip(x[0].chunks_exact(LANES))
        .zip(x[1].chunks_exact(LANES))
        .zip(x[2].chunks_exact(LANES))
        .zip(x[3].chunks_exact(LANES));
    for ((((w, x0), x1), x2), x3) in chunks {
        for l in 0..LANES {
            a0[l] += w[l] * x0[l];
            a1[l] += w[l] * x1[l];
            a2[l] += w[l] * x2[l];
            a3[l] += w[l] * x3[l];
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, a), xk) in out.iter_mut().zip([a0, a1, a2, a3]).zip(x) {
        let tail: f32 = w[n..].iter().zip(&xk[n..]).map(|(p, q)| p * q).sum();
        *o = fold(a) + tail;
    }
    out
}

/// Pairwise sum of the lanes, in a fixed order.
#[inline(always)]
fn fold(mut a: [f32; LANES]) -> f32 {
    let mut m = LANES;
    while m > 1 {
        m /= 2;
        for l in 0..m {
            a[l] += a[l + m];
        }
    }
    a[0]
}

/// Row `i` of W into `o` (`cols` values).
#[inline(always)]
fn decode_row(values: &Values, i: usize, o: &mut [f32]) {
    match values {
        Values::Int4(v) => int4_row(v, i, o),
        Values::Binary(v) => binary_row(v, i, o),
        Values::Ternary(v) => ternary_row(v, i, o),
        Values::Int8(v) => int8_row(v, i, o),
        // f32 and codebooks do not come here.
        v => v.decode_row(i, o),
    }
}

#[inline(always)]
pub(super) fn int8_row(v: &Int8Values, i: usize, o: &mut [f32]) {
    let cols = o.len();
    let q = &v.codes()[i * cols..(i + 1) * cols];
    for (a, b, pi) in segments(v.params(), i, cols) {
        let (s, z) = v.params().get(pi);
        for (o, &c) in o[a..b].iter_mut().zip(&q[a..b]) {
            *o = (c as i32 - z) as f32 * s;
        }
    }
}

#[inline(always)]
pub(super) fn int4_row(v: &Int4Values, i: usize, o: &mut [f32]) {
    let cols = o.len();
    let bytes = v.codes().bytes();
    let p = v.params();
    // Byte-wise when every parameter run starts on a byte: even row length
    // and group size.
    let even = cols.is_multiple_of(2)
        && match p.granularity() {
            crate::matrix::Granularity::PerGroup(g) => g.is_multiple_of(2),
            _ => true,
        };
    if !even {
        return v.decode_row(i, o);
    }
    for (a, b, pi) in segments(p, i, cols) {
        let (s, z) = p.get(pi);
        // Runs start and end on even positions (checked above).
        let src = &bytes[(i * cols + a) / 2..(i * cols + b) / 2];
        for (pair, &byte) in o[a..b].chunks_exact_mut(2).zip(src) {
            let lo = ((byte << 4) as i8 >> 4) as i32;
            let hi = (byte as i8 >> 4) as i32;
            pair[0] = (lo - z) as f32 * s;
            pair[1] = (hi - z) as f32 * s;
        }
    }
}

#[inline(always)]
pub(super) fn binary_row(v: &BinaryValues, i: usize, o: &mut [f32]) {
    let cols = o.len();
    if !cols.is_multiple_of(8) {
        return v.decode_row(i, o);
    }
    let a = v.scales()[i];
    let src = &v.signs().bytes()[i * cols / 8..(i + 1) * cols / 8];
    for (oct, &byte) in o.chunks_exact_mut(8).zip(src) {
        for (j, w) in oct.iter_mut().enumerate() {
            *w = if (byte >> j) & 1 == 1 { a } else { -a };
        }
    }
}

#[inline(always)]
pub(super) fn ternary_row(v: &TernaryValues, i: usize, o: &mut [f32]) {
    let cols = o.len();
    if !cols.is_multiple_of(4) {
        return v.decode_row(i, o);
    }
    let a = v.scales()[i];
    let src = &v.codes().bytes()[i * cols / 4..(i + 1) * cols / 4];
    for (quad, &byte) in o.chunks_exact_mut(4).zip(src) {
        for (j, w) in quad.iter_mut().enumerate() {
            let c = u16::from((byte >> (2 * j)) & 3);
            *w = if c == TERNARY_PLUS {
                a
            } else if c == TERNARY_MINUS {
                -a
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::CompressedMatrix;
    use crate::quantization::{Binary, IntQuantizer, Quantizer, Ternary};
    use ndarray::Array2;

    fn encodings(rows: usize, cols: usize) -> Vec<CompressedMatrix> {
        let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 37 + j * 11) % 29) as f32 - 14.0) / 9.0
        });
        let d = CompressedMatrix::from_dense(w.view()).unwrap();
        vec![
            IntQuantizer::params(8)
                .per_row()
                .check()
                .unwrap()
                .quantize(&d)
                .unwrap(),
            IntQuantizer::params(4)
                .per_group(6)
                .symmetric(false)
                .check()
                .unwrap()
                .quantize(&d)
                .unwrap(),
            IntQuantizer::params(4)
                .per_group(5)
                .check()
                .unwrap()
                .quantize(&d)
                .unwrap(),
            IntQuantizer::params(4)
                .per_row()
                .check()
                .unwrap()
                .quantize(&d)
                .unwrap(),
            Binary.quantize(&d).unwrap(),
            Ternary.quantize(&d).unwrap(),
        ]
    }

    #[test]
    fn byte_wise_decoding_equals_the_encodings_own_decoder() {
        for (rows, cols) in [(5, 24), (3, 7), (4, 13), (6, 40)] {
            for m in encodings(rows, cols) {
                let v = m.values().unwrap();
                let mut fast = vec![0.0f32; rows * cols];
                for (r, o) in fast.chunks_exact_mut(cols).enumerate() {
                    decode_row(v, r, o);
                }
                assert_eq!(
                    fast,
                    m.to_dense().into_raw_vec_and_offset().0,
                    "{} {rows}x{cols}",
                    m.encoding()
                );
            }
        }
    }

    #[test]
    fn fused_product_equals_a_naive_f64_product() {
        let (rows, cols, batch) = (9, 40, 5);
        let x: Vec<f32> = (0..batch * cols)
            .map(|k| ((k * 7) % 11) as f32 - 5.0)
            .collect();
        for m in encodings(rows, cols) {
            let w = m.to_dense();
            let mut out = vec![0.0f32; rows * batch];
            rows_times_batch(m.values().unwrap(), &x, batch, 0, &mut out);
            for i in 0..rows {
                for b in 0..batch {
                    let want: f64 = (0..cols)
                        .map(|k| w[[i, k]] as f64 * x[b * cols + k] as f64)
                        .sum();
                    let got = out[i * batch + b] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{got} vs {want}"
                    );
                }
            }
        }
    }
}
