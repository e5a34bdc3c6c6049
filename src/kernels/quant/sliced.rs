//! Weight-only int8 / int4 / ternary products (and binary N:M rows; dense
//! binary rows take [`sign_lookup`](super::sign_lookup)) as exact integer
//! sums: the f32 input split into three int8 slices, each multiplied on the
//! VNNI panels of the dynamic int8 kernel ([`int8_panel`](super::int8_panel);
//! int4, binary and ternary codes as nibbles, the sign codes ±1 / 0 with
//! the row's scale).
//!
//! Every input row `x` is written `x ≈ s·a₀ + (s/254)·a₁ + (s/254²)·a₂` with
//! `s = max|x|/127` and each `aₖ` int8 in `−127..=127` (each slice the
//! rounded remainder of the ones before, scaled by 254 so that it fits), so
//! `|x − x̃| ≤ s/(2·254²) ≈ 2⁻²⁴·max|x|`: the rounding of one f32 step. The
//! products `W·aₖ` are exact integers (the Ozaki scheme's idea, which runs
//! f64 GEMMs on int8 units), scaled like the dynamic int8 product, and
//! summed smallest first. One `vpdpbusd` multiplies 64 weight × slice pairs
//! where an f32 multiply-add does 16, so three slices take fewer vector
//! instructions than dense f32 at any batch, and int4 weights also read an
//! eighth of f32's bytes. Each output depends only on its input row and the
//! weights — the same bits at any batch size and on any executor.
//!
//! The path needs AVX-512 VNNI, at least [`MIN_WEIGHTS`] weights and the
//! panels' layout (symmetric weights in whole rows, groups of a multiple of
//! 4 (int8) or 8 (int4) columns); the panels are built on the first
//! product and kept with the values (a second copy of the codes, like
//! PyTorch's prepacked weights). Other cases take the f32 paths.

use ndarray::{Array2, ArrayView2};

use super::int8_panel::{self, Panels};
#[cfg(target_arch = "x86_64")]
use super::sign_gemm::{self, Signs};
use super::Isa;
#[cfg(target_arch = "x86_64")]
use super::QuantizedActivations;
use crate::matrix::{
    nibble_to_i8, Granularity, QuantParams, Values, NM, TERNARY_MINUS, TERNARY_PLUS,
};
use crate::parallel::ParallelExecutor;

/// Slices per input row.
const SLICES: usize = 3;
/// The factor between one slice's scale and the next: remainders of a
/// rounding lie in `[−½, ½]`, so 254 keeps the next slice within `±127`.
const RADIX: f32 = 254.0;
/// Dense matrices with fewer weights take their f32 copy instead
/// ([`SMALL_CODES_WEIGHTS`](crate::kernels::decoded_copy::SMALL_CODES_WEIGHTS)):
/// on them the slices ran at 0.76–0.93× dense f32 from batch 8 (100 × 300
/// on a Zen 5), the f32 readers at 0.65–1.1×.
const MIN_WEIGHTS: usize = crate::kernels::decoded_copy::SMALL_CODES_WEIGHTS;
/// `1.5·2²³`: adding it to an f32 of magnitude below 2²² rounds to an integer.
const ROUND: f32 = 12582912.0;

/// Whether [`matmul`] takes these values on `isa`:
/// the condition [`kernel_for`](crate::kernels::dispatch::kernel_for) reports.
pub(crate) fn applies(values: &Values, isa: Isa) -> bool {
    let layout = values.layout();
    let (rows, cols) = (layout.rows(), layout.max_row_len());
    let fits = match values {
        Values::Int8(v) => int8_panel::group_len(v.quant_params(), rows, cols, 4).is_some(),
        Values::Int4(v) => int8_panel::group_len(v.quant_params(), rows, cols, 8).is_some(),
        // One scale per row: the row is the group.
        Values::Ternary(_) => cols <= int8_panel::MAX_GROUP,
        // Binary rows take the sign lookups on every AVX-512 CPU
        // (`sign_lookup`: no slices, about half the instructions).
        Values::Binary(_) | Values::F32(_) | Values::Codebook(_) => false,
    };
    cfg!(target_arch = "x86_64")
        && isa.capped() == Isa::Avx512Vnni
        && rows * cols >= MIN_WEIGHTS
        && layout.total() == rows * cols
        && fits
}

/// `[batch, rows]` product of int8 / int4 / binary / ternary values (a
/// uniform layout of full rows) with f32 `x` through three int8 slices;
/// `None` where the path does not apply ([`applies`]).
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul(
    values: &Values,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    if !applies(values, isa) {
        return None;
    }
    // Large ternary matrices: the sign kernel reads the bits as stored (2
    // bits a weight, where the panels hold 4).
    if let Some(w) = sign_rows(values, x.dim()) {
        return run_signs(w, x, exec, isa);
    }
    let panels: &Option<Panels> = match values {
        Values::Int8(v) => v.prepacked.get_or_init(|| Panels::new(v)),
        Values::Int4(v) => v.prepacked.get_or_init(|| Panels::new_int4(v)),
        Values::Ternary(v) => v.prepacked.get_or_init(|| sign_panels(values)),
        // (`applies` sends binary rows to the sign lookups.)
        Values::Binary(_) | Values::F32(_) | Values::Codebook(_) => return None,
    };
    let p = panels.as_ref()?;
    // The values of an N:M matrix cache panels of its full rows instead.
    if p.cols() != x.ncols() {
        return None;
    }
    run(p, x, exec, isa)
}

/// The panels of binary (±1) or ternary (±1 / 0) rows; `None` for other
/// values or rows of different lengths.
#[cfg(target_arch = "x86_64")]
fn sign_panels(values: &Values) -> Option<Panels> {
    match values {
        Values::Binary(v) => {
            Panels::new_signs(&v.layout, &v.scales, |i| 2 * v.signs.get(i) as i8 - 1)
        }
        Values::Ternary(v) => Panels::new_signs(&v.layout, &v.scales, |i| match v.codes.get(i) {
            TERNARY_PLUS => 1,
            TERNARY_MINUS => -1,
            _ => 0,
        }),
        _ => None,
    }
}

/// The product on built panels: slice, multiply, and sum each row's three
/// slices (`(y₂ + y₁) + y₀`, smallest first) as the tiles are written.
#[cfg(target_arch = "x86_64")]
fn run(
    p: &Panels,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    let (stride, len) = int8_panel::packed_len(p, SLICES * x.nrows());
    // A NaN or an infinity (possible through `matmul_block`, which takes
    // unchecked input): the f32 paths, which carry it through.
    let (xu, scales) = slices(x, stride, len)?;
    int8_panel::matmul_u8(p, &xu, &scales, SLICES, exec, isa)
}

/// Binary and ternary matrices of at least this many weights take
/// [`run_signs`] (at small batches): there the weights stream from DRAM,
/// where reading 1 or 2 bits a weight instead of the panels' 4 wins, and a
/// layer this large belongs to a model larger than the L3. Ternary 4096²
/// at batch 1 ran at 0.12 ms from DRAM against 0.23–0.30 ms on the panels,
/// but resident in L3 at 0.115–0.131 against 0.088–0.098 ms (the 2-bit
/// decode costs more instructions than the nibbles'); binary on
/// cache-resident MiniLM shapes at batch 1–2 ran at 1.1–4.2× dense f32
/// through the sign kernel against 2.7–5.3× on the panels.
const SIGNS_MIN_WEIGHTS: usize = 1 << 22;

/// What [`run_signs`] takes at `batch` inputs of `cols` columns, in
/// matrices of at least [`SIGNS_MIN_WEIGHTS`] weights: ternary rows of a
/// multiple of 4 columns on a CPU with GFNI at 1 input (binary rows took
/// it up to 2 inputs before the sign lookups). Both paths give the same
/// bits, so the choice may follow the batch. At 4096² (resident / from
/// DRAM), binary: batch 1 0.077–0.088 /
/// 0.077–0.083 ms against 0.101–0.132 / 0.22–0.29 ms on the panels,
/// batch 2 0.131–0.170 / 0.133–0.172 against 0.140–0.156 / 0.231–0.245,
/// batch 4 0.259–0.327 / 0.261–0.316 against 0.235–0.237 / 0.299–0.308;
/// ternary at batch 2 0.22–0.24 ms either way against 0.125–0.137 /
/// 0.245–0.264, and from batch 8 both kinds lost to the panels at every
/// size (binary 0.72 against about 0.54 ms at batch 8, 46 against about 18
/// at 256).
#[cfg(target_arch = "x86_64")]
fn sign_rows(values: &Values, (batch, cols): (usize, usize)) -> Option<Signs<'_>> {
    if values.layout().total() < SIGNS_MIN_WEIGHTS {
        return None;
    }
    let w = match values {
        Values::Ternary(v)
            if batch == 1 && cols.is_multiple_of(4) && sign_gemm::gfni_available() =>
        {
            Signs::Ternary(v)
        }
        _ => return None,
    };
    (w.cols() == cols).then_some(w)
}

/// [`run`] for binary / ternary rows through
/// [`sign_gemm`](super::sign_gemm): the three slices of each input are
/// three rows of activations, and each output is `(y₂ + y₁) + y₀`. Each
/// slice's `(S·α)·s` is the panels' `(0 + α·S)·s` (the same exact integer
/// `S`, α ≥ 0), so the bits are those of the panels; the weights are read
/// at 1 bit (binary) or 2 bits (ternary) each instead of 4.
#[cfg(target_arch = "x86_64")]
fn run_signs(
    w: Signs,
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    let (batch, cols) = x.dim();
    let (xu, scales) = slices(x, cols, SLICES * batch * cols)?;
    let xq = QuantizedActivations {
        rows: SLICES * batch,
        cols,
        codes: xu.iter().map(|&u| (u ^ 0x80) as i8).collect(),
        scales,
    };
    let y = sign_gemm::matmul(w, &xq, exec, isa);
    Some(Array2::from_shape_fn((batch, y.ncols()), |(b, i)| {
        (y[[SLICES * b + 2, i]] + y[[SLICES * b + 1, i]]) + y[[SLICES * b, i]]
    }))
}

/// Whether [`matmul_nm`] takes these N:M values (`[rows, cols]` with
/// whole groups) on `isa`: symmetric int8 / int4 codes with one scale per
/// tensor, per row or per group of stored values that spans a multiple of
/// 4 (int8) or 8 (int4) columns, binary and ternary; at least
/// [`MIN_WEIGHTS`] weights.
pub(crate) fn applies_nm(s: &NM, values: &Values, (rows, cols): (usize, usize), isa: Isa) -> bool {
    let layout = values.layout();
    let per = layout.max_row_len();
    // The panels' groups (int8: 4 columns per load, int4: 8).
    let groups = |q: &QuantParams, step| int8_panel::nm_group_len(q, (s.n(), s.m()), cols, step);
    let fits = match values {
        Values::Int8(v) => groups(v.quant_params(), 4).is_some(),
        Values::Int4(v) => groups(v.quant_params(), 8).is_some(),
        Values::Binary(_) | Values::Ternary(_) => cols <= int8_panel::MAX_GROUP,
        Values::F32(_) | Values::Codebook(_) => false,
    };
    cfg!(target_arch = "x86_64")
        && isa.capped() == Isa::Avx512Vnni
        && rows > 0
        && rows * cols >= MIN_WEIGHTS
        && cols.is_multiple_of(s.m())
        && layout.rows() == rows
        && per * s.m() == cols * s.n()
        && layout.total() == rows * per
        && fits
}

/// `[batch, rows]` product of an N:M matrix `[rows, cols]` whose values
/// are int8 / int4 / binary / ternary codes ([`applies_nm`]) with f32 `x`:
/// the codes spread to their columns (zeros between them) as panels of
/// full rows, built on the first product and kept with the values, then
/// [`matmul`]'s slices. The integer sums skip nothing but zeros, so the
/// result is that of the same codes stored dense.
#[cfg(target_arch = "x86_64")]
pub(crate) fn matmul_nm(
    s: &NM,
    values: &Values,
    (rows, cols): (usize, usize),
    x: ArrayView2<f32>,
    exec: &dyn ParallelExecutor,
    isa: Isa,
) -> Option<Array2<f32>> {
    if !applies_nm(s, values, (rows, cols), isa) || x.ncols() != cols {
        return None;
    }
    let per = values.layout().max_row_len();
    // Stored value `i`'s code at its column of the full row.
    let spread = |code: &dyn Fn(usize) -> i8| {
        let mut full = vec![0i8; rows * cols];
        for (r, row) in full.chunks_exact_mut(cols).enumerate() {
            for t in 0..per {
                let i = r * per + t;
                row[t / s.n() * s.m() + s.positions().get(i) as usize] = code(i);
            }
        }
        full
    };
    let panels: &Option<Panels> = match values {
        Values::Int8(v) => v.prepacked.get_or_init(|| {
            let full = spread(&|i| v.codes()[i]);
            Panels::new_full(v.quant_params(), (s.n(), s.m()), rows, cols, 4, &full)
        }),
        Values::Int4(v) => v.prepacked.get_or_init(|| {
            let full = spread(&|i| nibble_to_i8(v.codes.get(i)));
            Panels::new_full(v.quant_params(), (s.n(), s.m()), rows, cols, 8, &full)
        }),
        Values::Binary(v) => v.prepacked.get_or_init(|| {
            let full = spread(&|i| 2 * v.signs.get(i) as i8 - 1);
            let q = QuantParams::new(&v.layout, Granularity::PerRow, v.scales.clone(), None);
            Panels::new_full(&q.ok()?, (s.n(), s.m()), rows, cols, 8, &full)
        }),
        Values::Ternary(v) => v.prepacked.get_or_init(|| {
            let full = spread(&|i| match v.codes.get(i) {
                TERNARY_PLUS => 1,
                TERNARY_MINUS => -1,
                _ => 0,
            });
            let q = QuantParams::new(&v.layout, Granularity::PerRow, v.scales.clone(), None);
            Panels::new_full(&q.ok()?, (s.n(), s.m()), rows, cols, 8, &full)
        }),
        Values::F32(_) | Values::Codebook(_) => return None,
    };
    let p = panels.as_ref()?;
    // Panels of the stored rows alone (cached by a dense product of these
    // values through `matmul_block`) do not describe the full rows.
    if p.cols() != cols {
        return None;
    }
    run(p, x, exec, isa)
}

/// Not on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn matmul_nm(
    _: &NM,
    _: &Values,
    _: (usize, usize),
    _: ArrayView2<f32>,
    _: &dyn ParallelExecutor,
    _: Isa,
) -> Option<Array2<f32>> {
    None
}

/// Not on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn matmul(
    _: &Values,
    _: ArrayView2<f32>,
    _: &dyn ParallelExecutor,
    _: Isa,
) -> Option<Array2<f32>> {
    None
}

/// The three slices of each row of `x` as tokens `3b, 3b + 1,
/// 3b + 2` of the panels' input: `code + 128` bytes, rows `stride` apart in
/// a buffer of `len` (padding: code 0), and their scales `s`, `s/254`,
/// `s/254²`. Each remainder is taken against the f32 scales the kernel
/// uses, so the slices describe `x` to within half of the last scale (plus
/// the remainders' roundings, below 2⁻²⁵·s). `None` when a value of `x` is
/// not finite.
pub(crate) fn slices(x: ArrayView2<f32>, stride: usize, len: usize) -> Option<(Vec<u8>, Vec<f32>)> {
    let (rows, cols) = x.dim();
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    let mut xu = vec![0x80u8; len];
    let mut scales = vec![0.0f32; SLICES * rows];
    for (b, row) in data.chunks_exact(cols).enumerate() {
        let out = &mut xu[SLICES * b * stride..][..SLICES * stride];
        let sk = slice_row(row, stride, out)?;
        scales[SLICES * b..SLICES * (b + 1)].copy_from_slice(&sk);
    }
    Some((xu, scales))
}

crate::kernels::multiversion! {
    /// The slices of one row `x` as `code + 128` bytes into three rows of
    /// `out` `stride` apart, and their scales; the same bits on every tier
    /// (IEEE f32 steps, remainders by fused multiply-adds). `None` (and
    /// `out` unspecified) when a value is not finite.
    fn slice_row(x: &[f32], stride: usize, out: &mut [u8]) -> Option<[f32; SLICES]> => slice_row_generic;
}

#[inline(always)]
fn slice_row_generic(x: &[f32], stride: usize, out: &mut [u8]) -> Option<[f32; SLICES]> {
    // max|x| in 16 lanes, so that it vectorizes (a single running max is a
    // chain the compiler keeps serial); `v·0` stays 0 unless v is ±∞ or NaN.
    let (mut hi, mut bad) = ([0.0f32; 16], [0.0f32; 16]);
    let mut chunks = x.chunks_exact(16);
    for ch in &mut chunks {
        for ((h, b), v) in hi.iter_mut().zip(&mut bad).zip(ch) {
            *h = if v.abs() > *h { v.abs() } else { *h };
            *b += v * 0.0;
        }
    }
    let rest = chunks.remainder();
    let nan = bad.iter().sum::<f32>() + rest.iter().map(|v| v * 0.0).sum::<f32>();
    if nan != 0.0 {
        return None;
    }
    let amax = hi
        .iter()
        .chain(rest)
        .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let s0 = amax / 127.0;
    if s0 == 0.0 {
        return Some([0.0; SLICES]);
    }
    let sk = [s0, s0 / RADIX, s0 / RADIX / RADIX];
    if !sk[SLICES - 1].is_normal() {
        // So small (max|x| < 1e-31) that the last scale would be subnormal:
        // one slice, an error far below f32's smallest normal product, by
        // division (1/s overflows for the smallest s).
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (((v / s0 + ROUND) - ROUND).clamp(-127.0, 127.0) as i32 + 128) as u8;
        }
        return Some([s0, 0.0, 0.0]);
    }
    let inv = sk.map(|s| 1.0 / s);
    // 16 values at a time, the last few padded with zeros (a scalar tail
    // cost as much as the vector part on a 300-column row).
    let block = |xs: &[f32; 16], q: &mut [[u8; 16]; SLICES]| {
        for (l, &v) in xs.iter().enumerate() {
            let mut r = v;
            for j in 0..SLICES {
                // Round to nearest even by adding and removing 1.5·2²³
                // (`round_ties_even` is a libm call on baseline x86-64).
                let c = ((r * inv[j] + ROUND) - ROUND).clamp(-127.0, 127.0);
                // SAFETY: x is finite (checked above) and the scales
                // normal, so `c` is an integer in −127..=127, which i32
                // holds; `as` would check for NaN one lane at a time.
                q[j][l] = (unsafe { c.to_int_unchecked::<i32>() } + 128) as u8;
                // The remainder, exact or within 2⁻²⁵ of it (one rounding).
                r = (-c).mul_add(sk[j], r);
            }
        }
    };
    let mut q = [[0u8; 16]; SLICES];
    let mut chunks = x.chunks_exact(16);
    let mut k = 0;
    for ch in &mut chunks {
        block(ch.try_into().expect("16 values"), &mut q);
        for (j, qj) in q.iter().enumerate() {
            out[j * stride + k..][..16].copy_from_slice(qj);
        }
        k += 16;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut xs = [0.0f32; 16];
        xs[..rest.len()].copy_from_slice(rest);
        block(&xs, &mut q);
        for (j, qj) in q.iter().enumerate() {
            out[j * stride + k..][..rest.len()].copy_from_slice(&qj[..rest.len()]);
        }
    }
    Some(sk)
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    /// Binary and ternary rows through the sign kernel give the bits of
    /// the nibble panels (the path they took before), at several batch
    /// sizes, magnitudes and executors; the mutation that sums the slices
    /// largest first fails here.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sign_rows_give_the_panels_bits() {
        use crate::matrix::CompressedMatrix;
        use crate::parallel::{Sequential, ThreadPool};
        use crate::quantization::{Binary, Quantizer, Ternary};
        if Isa::detect() != Isa::Avx512Vnni {
            return;
        }
        let (rows, cols) = (300, 256);
        let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * 7919 + j * 104729) % 1009) as f32 - 504.0) / 300.0
        });
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let pool = ThreadPool::new(3).unwrap();
        for m in [
            Binary.quantize(&dense).unwrap(),
            Ternary.quantize(&dense).unwrap(),
        ] {
            let v = m.values().unwrap();
            let panels = sign_panels(v).unwrap();
            // (Ternary rows this small keep the panels in `matmul`.)
            let w = match v {
                Values::Binary(b) => Signs::Binary(b),
                Values::Ternary(t) if sign_gemm::gfni_available() => Signs::Ternary(t),
                _ => continue,
            };
            for batch in [1, 2, 5, 9] {
                for mag in [1e-3f32, 1.0, 1e4] {
                    let x = Array2::from_shape_fn((batch, cols), |(b, k)| {
                        ((b * cols + k) as f32 * 0.37).sin() * mag
                    });
                    let want = run(&panels, x.view(), &Sequential, Isa::Avx512Vnni).unwrap();
                    for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                        let got = run_signs(w, x.view(), exec, Isa::Avx512Vnni).unwrap();
                        assert!(
                            got.iter()
                                .zip(&want)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{} batch {batch} magnitude {mag}",
                            m.encoding()
                        );
                    }
                }
            }
        }
    }

    /// The slices rebuild each row to within half of the last scale, with
    /// codes in `−127..=127`: three for ordinary magnitudes, one for rows
    /// below 1e-31 (also when the scale is subnormal), none for a zero row;
    /// a NaN or an infinity gives `None`.
    #[test]
    fn slices_rebuild_the_input() {
        let mag = [1e-7, 1.0, 1e7, 0.0, 1e30, 1e-33, 1e-38, 3e-45];
        let n = mag.len();
        let x = Array2::from_shape_fn((n, 301), |(b, k)| {
            ((b * 301 + k) as f32 * 0.618).sin() * mag[b]
        });
        // Rows 304 apart in a buffer with two rows of padding.
        let (stride, len) = (304, SLICES * n * 304 + 2 * 304);
        let (xu, scales) = slices(x.view(), stride, len).unwrap();
        assert!(xu[SLICES * n * stride..].iter().all(|&u| u == 0x80));
        let code = |t: usize, k: usize| xu[t * stride + k] as i32 - 128;
        for (b, row) in x.outer_iter().enumerate() {
            let sk = &scales[SLICES * b..SLICES * (b + 1)];
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let last = match b {
                3 => {
                    assert_eq!(sk, &[0.0; SLICES]);
                    0.0
                }
                5 | 6 => {
                    assert!(sk[0] > 0.0 && sk[1] == 0.0 && sk[2] == 0.0, "{sk:?}");
                    sk[0] as f64
                }
                7 => 2.0 * amax, // below the smallest scale: anything small
                _ => {
                    assert!(sk.iter().all(|s| s.is_normal()), "{sk:?}");
                    sk[2] as f64
                }
            };
            for (k, &v) in row.iter().enumerate() {
                let got: f64 = (0..SLICES)
                    .map(|j| code(SLICES * b + j, k) as f64 * sk[j] as f64)
                    .sum();
                let err = (got - v as f64).abs();
                assert!(err <= 0.51 * last, "row {b} col {k}: {err} > {last}/2");
                // The documented bound: 2⁻²⁴·max|x| (slightly above: 254² < 2¹⁶).
                if [0, 1, 2, 4].contains(&b) {
                    assert!(err <= 1.04 * amax / (1u64 << 24) as f64);
                }
            }
            for t in SLICES * b..SLICES * (b + 1) {
                assert!((0..301).all(|k| code(t, k).abs() <= 127));
                assert!((301..stride).all(|k| code(t, k) == 0), "padding");
            }
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut y = x.clone();
            y[[2, 17]] = bad;
            assert!(slices(y.view(), stride, len).is_none(), "{bad}");
        }
    }

    /// Every tier slices with the same bits.
    #[test]
    fn slicing_is_the_same_on_every_tier() {
        let x: Vec<f32> = (0..1000).map(|k| (k as f32 * 0.37).cos() * 3.0).collect();
        let (mut a, mut b) = (vec![0u8; 3000], vec![0u8; 3000]);
        let sa = slice_row(&x, 1000, &mut a);
        let sb = slice_row_generic(&x, 1000, &mut b);
        assert_eq!((a, sa), (b, sb));
    }
}
