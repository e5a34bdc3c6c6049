//! int8 weights × int8 (dynamically quantized) activations → i32 → f32.
//!
//! `y[b, n] = s_b · Σ_seg s_seg·(Σ_k x_bk·w_nk − z_seg·Σ_k x_bk)` over the runs
//! of row `n` that share a weight scale `s_seg` and zero-point `z_seg`;
//! `s_b` is the activation scale of row `b`. The inner sums are exact
//! integers, so every path (VNNI, portable, reference) gives bit-identical
//! results. The VNNI path computes `(x + 128)·w` with `vpdpbusd` (unsigned ×
//! signed bytes) on 4 × 4 tiles of (weight rows × batch rows) and subtracts
//! `128·Σw`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::Array2;

use super::{segments, Isa};
use crate::matrix::{Granularity, Int8Values};
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor};
use crate::quantization::QuantizedActivations;

/// Tile edge (weight rows and batch rows).
const T: usize = 4;
/// Longest run summed in i32 at once: 255·128·2^15 < 2^31.
const CHUNK: usize = 1 << 15;

/// `[batch, rows]` product of the stored rows of `v` with `xq`.
pub(crate) fn matmul(
    v: &Int8Values,
    xq: &QuantizedActivations,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Array2<f32> {
    let isa = isa.capped();
    let rows = v.layout.rows();
    let cols = xq.cols;
    let batch = xq.rows;
    let xs = activation_sums(v, xq);
    // VNNI multiplies unsigned by signed bytes: feed x + 128 (once per call).
    let xu: Vec<u8> = if isa == Isa::Avx512Vnni {
        xq.codes.iter().map(|&c| c as u8 ^ 0x80).collect()
    } else {
        Vec::new()
    };
    // With whole 64-byte blocks, also interleave each batch tile's rows by
    // block (`[tile][block][row][64]`): one sequential stream per tile.
    let xpk: Vec<u8> = if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) {
        let nk = cols / 64;
        let mut p = vec![0u8; batch.div_ceil(T) * T * cols];
        for (i, o) in p.chunks_exact_mut(64).enumerate() {
            let (tile, kc, c) = (i / (nk * T), (i / T) % nk, i % T);
            let r = (tile * T + c).min(batch - 1);
            o.copy_from_slice(&xu[r * cols + kc * 64..r * cols + kc * 64 + 64]);
        }
        p
    } else {
        Vec::new()
    };
    let per = rows_per_task(cols, 1 << 16).next_multiple_of(T);
    let mut yt = vec![0.0f32; rows * batch];
    let nbt = batch.div_ceil(T);
    for_each_chunk_mut(exec, &mut yt, per * batch, |t, out| {
        let r0 = t * per;
        let nr = out.len() / batch;
        // Integer dots of one row tile with every batch row, and the f32 sums.
        let mut dots = vec![[[0i64; T]; T]; nbt];
        let mut acc = vec![[[0.0f32; T]; T]; nbt];
        for rt in (0..nr).step_by(T) {
            // Edge tiles repeat the last row / batch row; extra results are dropped.
            let ri: [usize; T] = std::array::from_fn(|u| r0 + (rt + u).min(nr - 1));
            acc.iter_mut().for_each(|a| *a = [[0.0; T]; T]);
            for (seg, (a, b, _)) in segments(v.params(), ri[0], cols).enumerate() {
                for (bt, d) in dots.iter_mut().enumerate() {
                    let bi: [usize; T] = std::array::from_fn(|c| (bt * T + c).min(batch - 1));
                    *d = tile(v, xq, (&xu, &xpk), ri, bi, (a, b), isa);
                }
                // (x + 128)·w was summed on VNNI: remove 128·Σw.
                let wsum: [i64; T] = ri.map(|i| {
                    if xu.is_empty() {
                        return 0;
                    }
                    128 * sum_i8(&v.codes()[i * cols + a..i * cols + b], isa)
                });
                let sz = ri.map(|i| v.params().get(v.params().index(i, a)));
                for (bt, (d, acc)) in dots.iter().zip(acc.iter_mut()).enumerate() {
                    let xsum: [i64; T] =
                        std::array::from_fn(|c| xs[(bt * T + c).min(batch - 1)][seg]);
                    for u in 0..T {
                        let (s, z) = sz[u];
                        for c in 0..T {
                            let d = d[u][c] - wsum[u] - z as i64 * xsum[c];
                            acc[u][c] += s * d as f32;
                        }
                    }
                }
            }
            for (bt, acc) in acc.iter().enumerate() {
                for (u, acc) in acc.iter().enumerate().take(nr - rt) {
                    for (c, a) in acc.iter().enumerate().take(batch - bt * T) {
                        let bc = bt * T + c;
                        out[(rt + u) * batch + bc] = a * xq.scales[bc];
                    }
                }
            }
        }
    });
    Array2::from_shape_vec((rows, batch), yt)
        .expect("sizes match")
        .reversed_axes()
        .as_standard_layout()
        .into_owned()
}

/// Σ x over each weight segment, per batch row.
fn activation_sums(v: &Int8Values, xq: &QuantizedActivations) -> Vec<Vec<i64>> {
    let g = match v.params().granularity() {
        Granularity::PerGroup(g) => g,
        _ => xq.cols,
    };
    (0..xq.rows)
        .map(|b| {
            xq.row(b)
                .chunks(g)
                .map(|c| c.iter().map(|&q| q as i64).sum())
                .collect()
        })
        .collect()
}

/// Integer dots `Σ_{k∈a..b} w[ri[u], k]·x[bi[c], k]` of a tile; on VNNI
/// `x + 128` in place of `x` (the caller removes `128·Σw`).
fn tile(
    v: &Int8Values,
    xq: &QuantizedActivations,
    (xu, xpk): (&[u8], &[u8]),
    ri: [usize; T],
    bi: [usize; T],
    (a, b): (usize, usize),
    isa: Isa,
) -> [[i64; T]; T] {
    let cols = xq.cols;
    let w: [&[i8]; T] = ri.map(|i| &v.codes()[i * cols + a..i * cols + b]);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && !xpk.is_empty() && a.is_multiple_of(64) && b.is_multiple_of(64) {
        // Tile bi[0] / T of the interleaved copy, blocks a/64..b/64.
        let base = (bi[0] / T) * T * cols;
        let xp = &xpk[base + a * T..base + b * T];
        let mut out = [[0i64; T]; T];
        let mut k = 0;
        while k < b - a {
            let n = (b - a - k).min(CHUNK);
            // SAFETY: the Avx512Vnni tier is only reachable when detected.
            let d = unsafe { tile_vnni_packed(w.map(|s| &s[k..k + n]), &xp[k * T..(k + n) * T]) };
            for u in 0..T {
                for c in 0..T {
                    out[u][c] += d[u][c] as i64;
                }
            }
            k += n;
        }
        return out;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        let x: [&[u8]; T] = bi.map(|j| &xu[j * cols + a..j * cols + b]);
        let mut out = [[0i64; T]; T];
        let mut k = 0;
        while k < b - a {
            let n = (b - a - k).min(CHUNK);
            // SAFETY: the Avx512Vnni tier is only reachable when detected.
            let d = unsafe { tile_vnni(w.map(|s| &s[k..k + n]), x.map(|s| &s[k..k + n])) };
            for u in 0..T {
                for c in 0..T {
                    out[u][c] += d[u][c] as i64;
                }
            }
            k += n;
        }
        return out;
    }
    let _ = (isa, xu, xpk);
    let x: [&[i8]; T] = bi.map(|j| &xq.row(j)[a..b]);
    std::array::from_fn(|u| std::array::from_fn(|c| dot_i8(w[u], x[c])))
}

/// `Σ w` (exact).
fn sum_i8(w: &[i8], isa: Isa) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx512 {
        // SAFETY: tiers at or above Avx512 are only reachable when detected.
        return unsafe { sum_i8_avx512(w) };
    }
    let _ = isa;
    w.chunks(CHUNK)
        .map(|c| c.iter().map(|&q| q as i32).sum::<i32>() as i64)
        .sum()
}

/// `Σ w = Σ (w + 128) − 128·n`, the first with `vpsadbw` (8 bytes a lane).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn sum_i8_avx512(w: &[i8]) -> i64 {
    let n = w.len();
    let p = w.as_ptr();
    let bias = _mm512_set1_epi8(-128);
    let zero = _mm512_setzero_si512();
    let mut acc = _mm512_setzero_si512();
    let mut k = 0;
    while k < n {
        let m: __mmask64 = if n - k >= 64 {
            u64::MAX
        } else {
            (1u64 << (n - k)) - 1
        };
        // Masked-off lanes become 0 ^ 0x80 = 128 after the flip: remove them below.
        let u = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p.add(k)), bias);
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(u, zero));
        k += 64;
    }
    let lanes = n.div_ceil(64) * 64;
    _mm512_reduce_add_epi64(acc) - 128 * lanes as i64
}

/// Plain integer dot product.
fn dot_i8(w: &[i8], x: &[i8]) -> i64 {
    w.chunks(CHUNK)
        .zip(x.chunks(CHUNK))
        .map(|(w, x)| {
            w.iter()
                .zip(x)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum::<i32>() as i64
        })
        .sum()
}

/// `Σ (x + 128)·w` for a 4 × 4 tile (all slices of one length ≤ CHUNK).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni(w: [&[i8]; T], x: [&[u8]; T]) -> [[i32; T]; T] {
    let n = w[0].len();
    let mut acc = [[_mm512_setzero_si512(); T]; T];
    let mut k = 0;
    while k + 64 <= n {
        let mut wv = [_mm512_setzero_si512(); T];
        for u in 0..T {
            wv[u] = _mm512_loadu_si512(w[u].as_ptr().add(k) as *const _);
        }
        for c in 0..T {
            let xv = _mm512_loadu_si512(x[c].as_ptr().add(k) as *const _);
            for u in 0..T {
                acc[u][c] = _mm512_dpbusd_epi32(acc[u][c], xv, wv[u]);
            }
        }
        k += 64;
    }
    while k < n {
        // Masked-off lanes load 0 for w, so they add nothing.
        let m: __mmask64 = if n - k >= 64 {
            u64::MAX
        } else {
            (1u64 << (n - k)) - 1
        };
        let mut wv = [_mm512_setzero_si512(); T];
        for u in 0..T {
            wv[u] = _mm512_maskz_loadu_epi8(m, w[u].as_ptr().add(k));
        }
        for c in 0..T {
            let xv = _mm512_maskz_loadu_epi8(m, x[c].as_ptr().add(k) as *const i8);
            for u in 0..T {
                acc[u][c] = _mm512_dpbusd_epi32(acc[u][c], xv, wv[u]);
            }
        }
        k += 64;
    }
    let flat: [__m512i; T * T] = std::array::from_fn(|i| acc[i / T][i % T]);
    let mut sums = [0i32; T * T];
    _mm512_storeu_si512(sums.as_mut_ptr() as *mut _, reduce16(flat));
    std::array::from_fn(|u| std::array::from_fn(|c| sums[u * T + c]))
}

/// [`tile_vnni`] with `x` interleaved by 64-byte block (`[block][row][64]`);
/// `w` rows are a whole number of blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni_packed(w: [&[i8]; T], x: &[u8]) -> [[i32; T]; T] {
    let n = w[0].len();
    debug_assert!(n.is_multiple_of(64) && x.len() == n * T);
    let xp = x.as_ptr();
    let mut acc = [[_mm512_setzero_si512(); T]; T];
    let mut k = 0;
    while k < n {
        let wv: [__m512i; T] =
            std::array::from_fn(|u| _mm512_loadu_si512(w[u].as_ptr().add(k) as *const _));
        for c in 0..T {
            let xv = _mm512_loadu_si512(xp.add(k * T + c * 64) as *const _);
            for (acc, &wu) in acc.iter_mut().zip(&wv) {
                acc[c] = _mm512_dpbusd_epi32(acc[c], xv, wu);
            }
        }
        k += 64;
    }
    let flat: [__m512i; T * T] = std::array::from_fn(|i| acc[i / T][i % T]);
    let mut sums = [0i32; T * T];
    _mm512_storeu_si512(sums.as_mut_ptr() as *mut _, reduce16(flat));
    std::array::from_fn(|u| std::array::from_fn(|c| sums[u * T + c]))
}

/// Lane `i` of the result is the sum of the 16 lanes of `v[i]` (a transposed
/// reduction: 15 adds instead of 16 separate reductions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn reduce16(v: [__m512i; 16]) -> __m512i {
    // Pairs: per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3].
    let t: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Quads: per 128-bit lane [a, b, c, d] partial sums.
    let q: [__m512i; 4] = std::array::from_fn(|i| {
        let (a, b) = (t[2 * i], t[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    });
    // Sum the four 128-bit lanes of each quad.
    let h = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(a, b),
            _mm512_shuffle_i32x4::<0xDD>(a, b),
        )
    };
    let u0 = h(q[0], q[1]);
    let u1 = h(q[2], q[3]);
    h(u0, u1)
}

/// Plain reference for the int8 × int8 product (same formula, plain loops):
/// `[batch, stored rows]`.
pub fn gemm_reference(v: &Int8Values, xq: &QuantizedActivations) -> Array2<f32> {
    let cols = xq.cols;
    Array2::from_shape_fn((xq.rows, v.layout.rows()), |(b, n)| {
        let x = xq.row(b);
        let w = &v.codes()[n * cols..(n + 1) * cols];
        let mut acc = 0.0f32;
        for (a, e, p) in segments(v.params(), n, cols) {
            let (s, z) = v.params().get(p);
            let dot: i64 = (a..e).map(|k| w[k] as i64 * x[k] as i64).sum();
            let xs: i64 = x[a..e].iter().map(|&q| q as i64).sum();
            acc += s * (dot - z as i64 * xs) as f32;
        }
        acc * xq.scales[b]
    })
}
