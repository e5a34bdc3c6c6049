//! Byte-wise row decoders of the weight-only encodings, behind each
//! encoding's [`DecodeRows`](super::DecodeRows): a byte holds 2, 4 or 8
//! codes, so rows whose codes start on a byte decode without per-code bit
//! arithmetic. Decoding code by code made a decode + GEMM at batch 8 on
//! 1536 × 384 slower than dense f32 (issue #20).
//!
//! (A fused small-batch product — decode a row once, dot it with every
//! input row — was faster still at batch 2–16 but summed in another order
//! than the GEMM path, so a row's result depended on the batch size and
//! data-parallel / micro-batched inference lost bit-identity; it is not used.)

use crate::matrix::{BinaryValues, Int4Values, Int8Values, TernaryValues};
use crate::matrix::{TERNARY_MINUS, TERNARY_PLUS};

use super::{segments, RowScale};

#[inline(always)]
pub(super) fn int8_row(v: &Int8Values, i: usize, o: &mut [f32], scale: RowScale) {
    let cols = o.len();
    let q = &v.codes()[i * cols..(i + 1) * cols];
    for (a, b, pi) in segments(v.params(), i, cols) {
        let (s, z) = v.params().get(pi);
        let s = scale.of(s);
        for (o, &c) in o[a..b].iter_mut().zip(&q[a..b]) {
            *o = (c as i32 - z) as f32 * s;
        }
    }
}

#[inline(always)]
pub(super) fn int4_row(v: &Int4Values, i: usize, o: &mut [f32], scale: RowScale) {
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
        // Deferred scales need even rows (`row_scales`).
        debug_assert_eq!(scale, RowScale::Applied);
        return v.decode_row(i, o);
    }
    for (a, b, pi) in segments(p, i, cols) {
        let (s, z) = p.get(pi);
        let s = scale.of(s);
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

/// 64 bits of an LSB-first stream from bit `off` on (zero past its end);
/// the low `64 − off % 8 ≥ 57` of them are the stream's.
#[inline(always)]
fn bits_from(bytes: &[u8], off: usize) -> u64 {
    let first = off / 8;
    let word = match bytes.get(first..first + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => {
            let mut buf = [0u8; 8];
            let n = bytes.len().saturating_sub(first).min(8);
            buf[..n].copy_from_slice(&bytes[first..first + n]);
            u64::from_le_bytes(buf)
        }
    };
    word >> (off % 8)
}

#[inline(always)]
pub(super) fn binary_row(v: &BinaryValues, i: usize, o: &mut [f32], scale: RowScale) {
    let cols = o.len();
    let a = scale.of(v.scales()[i]);
    let bytes = v.signs().bytes();
    if !cols.is_multiple_of(8) {
        // Rows that do not start on a byte: 56 signs per unaligned read.
        for (c, chunk) in o.chunks_mut(56).enumerate() {
            let bits = bits_from(bytes, i * cols + 56 * c);
            for (j, w) in chunk.iter_mut().enumerate() {
                *w = if (bits >> j) & 1 == 1 { a } else { -a };
            }
        }
        return;
    }
    let src = &bytes[i * cols / 8..(i + 1) * cols / 8];
    for (oct, &byte) in o.chunks_exact_mut(8).zip(src) {
        for (j, w) in oct.iter_mut().enumerate() {
            *w = if (byte >> j) & 1 == 1 { a } else { -a };
        }
    }
}

/// The value of one 2-bit ternary code.
#[inline(always)]
fn ternary_value(c: u16, a: f32) -> f32 {
    if c == TERNARY_PLUS {
        a
    } else if c == TERNARY_MINUS {
        -a
    } else {
        0.0
    }
}

#[inline(always)]
pub(super) fn ternary_row(v: &TernaryValues, i: usize, o: &mut [f32], scale: RowScale) {
    let cols = o.len();
    let a = scale.of(v.scales()[i]);
    let bytes = v.codes().bytes();
    if !cols.is_multiple_of(4) {
        // Rows that do not start on a byte: 28 codes per unaligned read.
        for (c, chunk) in o.chunks_mut(28).enumerate() {
            let bits = bits_from(bytes, 2 * (i * cols + 28 * c));
            for (j, w) in chunk.iter_mut().enumerate() {
                *w = ternary_value(((bits >> (2 * j)) & 3) as u16, a);
            }
        }
        return;
    }
    let src = &bytes[i * cols / 4..(i + 1) * cols / 4];
    for (quad, &byte) in o.chunks_exact_mut(4).zip(src) {
        for (j, w) in quad.iter_mut().enumerate() {
            *w = ternary_value(u16::from((byte >> (2 * j)) & 3), a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Values;

    /// Row `i` of W into `o` (`cols` values).
    fn decode_row(values: &Values, i: usize, o: &mut [f32]) {
        match values {
            Values::Int4(v) => int4_row(v, i, o, RowScale::Applied),
            Values::Binary(v) => binary_row(v, i, o, RowScale::Applied),
            Values::Ternary(v) => ternary_row(v, i, o, RowScale::Applied),
            Values::Int8(v) => int8_row(v, i, o, RowScale::Applied),
            // f32 and codebooks do not come here.
            v => v.decode_row(i, o),
        }
    }

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
        for (rows, cols) in [
            (5, 24),
            (3, 7),
            (4, 13),
            (6, 40),
            (9, 100),
            (7, 61),
            (3, 300),
        ] {
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
}
