//! Quantization: grids, calibration, sign quantizers, errors and kernels.

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StudentT};
use squish::compression::sharing::KMeans;
use squish::kernels::quant::{self as kernels, binary};
use squish::kernels::Tier as Isa;
use squish::matrix::{CompressedMatrix, Granularity, Values};
use squish::parallel::{ParallelExecutor, Sequential, ThreadPool};
use squish::pruning::{Magnitude, NMPruner, Pruner};
use squish::quantization::QuantizationError;
use squish::quantization::{
    quantize_activations, Binary, Calibration, DynamicInt8, IntQuantizer, Quantizer, Ternary,
};
use squish::SquishError;

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 1.0).unwrap();
    Array2::from_shape_fn((rows, cols), |_| d.sample(&mut rng))
}

fn student(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = StudentT::new(3.0f32).unwrap();
    Array2::from_shape_fn((rows, cols), |_| d.sample(&mut rng))
}

fn dense(w: &Array2<f32>) -> CompressedMatrix {
    CompressedMatrix::from_dense(w.view()).unwrap()
}

fn sq_err(a: ArrayView2<f32>, b: ArrayView2<f32>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum()
}

/// (scale, zero-point) of every element, in row-major order.
fn element_params(v: &Values) -> Vec<(f32, i32)> {
    let (p, layout) = match v {
        Values::Int8(v) => (v.params(), v.codes().len()),
        Values::Int4(v) => (v.params(), v.codes().len()),
        _ => panic!("not integer"),
    };
    let l = v.layout();
    let _ = layout;
    let mut out = Vec::new();
    for i in 0..l.rows() {
        for pos in 0..l.row_len(i) {
            out.push(p.get(p.index(i, pos)));
        }
    }
    out
}

fn quantizers() -> Vec<IntQuantizer> {
    let mut qs = Vec::new();
    for bits in [4u8, 8] {
        for sym in [true, false] {
            for g in [
                Granularity::PerTensor,
                Granularity::PerRow,
                Granularity::PerGroup(32),
                Granularity::PerGroup(7),
            ] {
                let p = IntQuantizer::params(bits).symmetric(sym);
                let p = match g {
                    Granularity::PerTensor => p.per_tensor(),
                    Granularity::PerRow => p.per_row(),
                    Granularity::PerGroup(g) => p.per_group(g),
                };
                qs.push(p.check().unwrap());
            }
        }
    }
    qs
}

#[test]
fn error_at_most_half_a_step_inside_the_clip_range() {
    let w = student(19, 101, 1);
    for cal in [
        Calibration::MinMax,
        Calibration::Percentile(99.0),
        Calibration::mse(),
    ] {
        for q in quantizers() {
            let (bits, q) = (q.bits(), q);
            let q = rebuild(&q, cal);
            let m = q.quantize(&dense(&w)).unwrap();
            let v = m.values().unwrap();
            let back = m.to_dense();
            let half = 1i32 << (bits - 1);
            let qmin = if q.name().contains(" sym") {
                1 - half
            } else {
                -half
            };
            for ((&x, &y), (s, z)) in w.iter().zip(back.iter()).zip(element_params(v)) {
                let lo = (qmin - z) as f32 * s;
                let hi = (half - 1 - z) as f32 * s;
                if x >= lo && x <= hi {
                    assert!(
                        (x - y).abs() <= s / 2.0 * (1.0 + 1e-5) + 1e-7,
                        "{} {cal:?}: {x} -> {y}, s {s}",
                        q.name()
                    );
                } else {
                    // Clipped: decodes to the nearest end of the range.
                    let end = if x < lo { lo } else { hi };
                    assert!((y - end).abs() <= 1e-5 * end.abs().max(1.0));
                }
            }
        }
    }
}

/// The same quantizer with another calibration.
fn rebuild(q: &IntQuantizer, cal: Calibration) -> IntQuantizer {
    let name = q.name();
    let sym = name.contains(" sym");
    let p = IntQuantizer::params(q.bits())
        .symmetric(sym)
        .calibration(cal);
    let p = if name.ends_with("per-tensor") {
        p.per_tensor()
    } else if name.ends_with("per-row") {
        p.per_row()
    } else {
        let g: usize = name.rsplit('-').next().unwrap().parse().unwrap();
        p.per_group(g)
    };
    p.check().unwrap()
}

#[test]
fn symmetric_int8_is_exact_on_the_grid() {
    let mut rng = StdRng::seed_from_u64(2);
    for step in [1.0f32 / 128.0, 0.0123, 3.7] {
        let k = Array2::from_shape_fn((6, 40), |(i, j)| match j {
            0 => 127,
            1 if i % 2 == 0 => -127,
            _ => rng.random_range(-127i32..=127),
        });
        let w = k.mapv(|k| k as f32 * step);
        let q = IntQuantizer::params(8).per_row().check().unwrap();
        let m = q.quantize(&dense(&w)).unwrap();
        let Some(Values::Int8(v)) = m.values() else {
            panic!()
        };
        let codes: Vec<i32> = v.codes().iter().map(|&c| c as i32).collect();
        assert_eq!(codes, k.iter().copied().collect::<Vec<_>>(), "step {step}");
        let back = m.to_dense();
        for (&a, &b) in w.iter().zip(back.iter()) {
            if step == 1.0 / 128.0 {
                assert_eq!(a, b); // power-of-two step: exact
            } else {
                assert!((a - b).abs() <= a.abs() * 2.0 * f32::EPSILON);
            }
        }
    }
}

#[test]
fn asymmetric_covers_the_range_and_maps_zero_exactly() {
    let mut w = gaussian(8, 50, 3);
    // Row 0 all positive, row 1 all negative, row 2 shifted: 0 is outside
    // the observed range and must still be exact.
    w.row_mut(0).mapv_inplace(|x| x.abs() + 1.0);
    w.row_mut(1).mapv_inplace(|x| -x.abs() - 0.5);
    w.row_mut(2).mapv_inplace(|x| x + 5.0);
    for (i, j) in [(3, 0), (4, 7), (5, 49), (0, 3)] {
        w[[i, j]] = 0.0;
    }
    for bits in [4u8, 8] {
        let q = IntQuantizer::params(bits)
            .symmetric(false)
            .per_row()
            .check()
            .unwrap();
        let m = q.quantize(&dense(&w)).unwrap();
        let v = m.values().unwrap();
        let back = m.to_dense();
        let ps = element_params(v);
        let half = 1i32 << (bits - 1);
        for i in 0..w.nrows() {
            let (s, z) = ps[i * w.ncols()];
            let (lo, hi) = w
                .row(i)
                .iter()
                .fold((0.0f32, 0.0f32), |(l, h), &x| (l.min(x), h.max(x)));
            // The code range, decoded, covers [min(lo,0), max(hi,0)] to within half a step.
            assert!((-half - z) as f32 * s <= lo + s / 2.0 + 1e-6);
            assert!((half - 1 - z) as f32 * s >= hi - s / 2.0 - 1e-6);
            // Zero decodes to exactly zero (code = zero-point).
            assert!((-half..half).contains(&z));
        }
        for (i, j) in [(3, 0), (4, 7), (5, 49), (0, 3)] {
            assert_eq!(back[[i, j]], 0.0, "int{bits} at {i},{j}");
        }
    }
}

#[test]
fn mse_clipping_never_loses_to_min_max() {
    for (name, w) in [("gauss", gaussian(24, 256, 4)), ("t3", student(24, 256, 5))] {
        for q in quantizers() {
            let mm = rebuild(&q, Calibration::MinMax)
                .quantize(&dense(&w))
                .unwrap();
            let ms = rebuild(&q, Calibration::mse())
                .quantize(&dense(&w))
                .unwrap();
            let e_mm = sq_err(w.view(), mm.to_dense().view());
            let e_ms = sq_err(w.view(), ms.to_dense().view());
            assert!(
                e_ms <= e_mm * (1.0 + 1e-9),
                "{name} {}: mse {e_ms} > min-max {e_mm}",
                q.name()
            );
        }
    }
    // On heavy tails at 4 bits clipping must actually help.
    let w = student(24, 256, 6);
    let q = |c| {
        IntQuantizer::params(4)
            .per_row()
            .calibration(c)
            .check()
            .unwrap()
    };
    let e_mm = sq_err(
        w.view(),
        q(Calibration::MinMax)
            .quantize(&dense(&w))
            .unwrap()
            .to_dense()
            .view(),
    );
    let e_ms = sq_err(
        w.view(),
        q(Calibration::mse())
            .quantize(&dense(&w))
            .unwrap()
            .to_dense()
            .view(),
    );
    assert!(e_ms < 0.8 * e_mm, "{e_ms} vs {e_mm}");
}

#[test]
fn percentile_clips_at_nearest_rank() {
    let w = student(3, 201, 7);
    let q = IntQuantizer::params(8)
        .per_row()
        .calibration(Calibration::Percentile(99.0))
        .check()
        .unwrap();
    let m = q.quantize(&dense(&w)).unwrap();
    let scales = match m.values().unwrap() {
        Values::Int8(v) => v.params().scales().to_vec(),
        _ => panic!(),
    };
    for (i, &scale) in scales.iter().enumerate() {
        let mut row: Vec<f32> = w.row(i).to_vec();
        row.sort_by(f32::total_cmp);
        let hi_rank = (0.99f64 * 200.0).round() as usize;
        let (lo, hi) = (row[200 - hi_rank].min(0.0), row[hi_rank].max(0.0));
        assert_eq!(scale, lo.abs().max(hi) / 127.0);
    }
    // Percentile(100) is min-max.
    let p100 = IntQuantizer::params(8)
        .calibration(Calibration::Percentile(100.0))
        .check()
        .unwrap();
    let mm = IntQuantizer::params(8).check().unwrap();
    assert_eq!(
        p100.quantize(&dense(&w)).unwrap(),
        mm.quantize(&dense(&w)).unwrap()
    );
}

#[test]
fn staged_equals_one_call_for_any_executor() {
    let w = student(33, 77, 8);
    let m = dense(&w);
    let layout = m.values().unwrap().layout().clone();
    let Some(Values::F32(f)) = m.values() else {
        panic!()
    };
    let pool = ThreadPool::new(2).unwrap();
    for cal in [
        Calibration::MinMax,
        Calibration::Percentile(99.5),
        Calibration::mse(),
    ] {
        for q in quantizers() {
            let q = rebuild(&q, cal);
            let ranges = q.calibrate(f).unwrap();
            let params = q.compute_params(&layout, &ranges).unwrap();
            let staged = q.quantize_with_params(f, &params).unwrap();
            let one = q.quantize_values(f).unwrap();
            let par = q.quantize_values_on(f, &pool).unwrap();
            assert_eq!(staged, one, "{}", q.name());
            assert_eq!(one, par, "{}", q.name());
        }
    }
}

#[test]
fn big_parallel_quantization_matches_sequential() {
    // Several tasks' worth of values, so task boundaries matter.
    let w = gaussian(300, 1000, 9);
    let pool = ThreadPool::new(2).unwrap();
    for q in quantizers() {
        let a = q.quantize_on(&dense(&w), &Sequential).unwrap();
        let b = q.quantize_on(&dense(&w), &pool).unwrap();
        assert_eq!(a, b, "{}", q.name());
    }
}

#[test]
fn binary_alpha_is_mean_abs_and_optimal() {
    let w = student(5, 64, 10);
    let m = Binary.quantize(&dense(&w)).unwrap();
    let Some(Values::Binary(v)) = m.values() else {
        panic!()
    };
    for i in 0..5 {
        let row = w.row(i);
        let mean = row.iter().map(|x| x.abs() as f64).sum::<f64>() / 64.0;
        assert!((v.scales()[i] as f64 - mean).abs() < 1e-6 * mean);
        let err = |a: f64| -> f64 {
            row.iter()
                .map(|&x| {
                    let s = if x >= 0.0 { a } else { -a };
                    (x as f64 - s).powi(2)
                })
                .sum()
        };
        let max = row.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
        let best = (0..=4000)
            .map(|k| max * k as f64 / 2000.0)
            .min_by(|a, b| err(*a).total_cmp(&err(*b)))
            .unwrap();
        assert!(
            (best - mean).abs() <= max / 2000.0,
            "search {best} vs {mean}"
        );
        assert!(err(v.scales()[i] as f64) <= err(best) + 1e-9);
    }
}

#[test]
fn ternary_follows_twn() {
    let w = gaussian(4, 90, 11);
    let m = Ternary.quantize(&dense(&w)).unwrap();
    let back = m.to_dense();
    for i in 0..4 {
        let row = w.row(i);
        let delta = 0.7 * row.iter().map(|x| x.abs() as f64).sum::<f64>() / 90.0;
        let big: Vec<f64> = row
            .iter()
            .map(|&x| x.abs() as f64)
            .filter(|&a| a > delta)
            .collect();
        let alpha = big.iter().sum::<f64>() / big.len() as f64;
        for (&x, &y) in row.iter().zip(back.row(i).iter()) {
            let want = if (x.abs() as f64) > delta {
                alpha.copysign(x as f64)
            } else {
                0.0
            };
            assert!((y as f64 - want).abs() < 1e-5);
        }
    }
}

#[test]
fn typed_errors() {
    for bits in [0u8, 1, 2, 3, 5, 7, 16] {
        assert!(matches!(
            IntQuantizer::params(bits).check(),
            Err(SquishError::Quantization(
                QuantizationError::UnsupportedBits(_)
            ))
        ));
    }
    assert!(matches!(
        IntQuantizer::params(8).per_group(0).check(),
        Err(SquishError::Quantization(QuantizationError::ZeroGroupSize))
    ));
    for c in [
        Calibration::Percentile(50.0),
        Calibration::Percentile(100.5),
        Calibration::Percentile(f32::NAN),
        Calibration::Mse { steps: 0 },
    ] {
        assert!(matches!(
            IntQuantizer::params(8).calibration(c).check(),
            Err(SquishError::Quantization(
                QuantizationError::PercentileOutOfRange(_) | QuantizationError::ZeroMseSteps
            ))
        ));
    }
    // NaN / Inf weights and activations.
    let mut w = gaussian(3, 4, 12);
    w[[1, 2]] = f32::NAN;
    assert!(matches!(
        CompressedMatrix::from_dense(w.view()),
        Err(SquishError::NonFinite { index: 6, .. })
    ));
    let mut x = gaussian(2, 4, 13);
    x[[1, 0]] = f32::INFINITY;
    assert!(matches!(
        quantize_activations(x.view()),
        Err(SquishError::NonFinite { .. })
    ));
    assert!(matches!(
        quantize_activations(Array2::<f32>::zeros((0, 4)).view()),
        Err(SquishError::Empty { .. })
    ));
    let m8 = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&dense(&gaussian(3, 4, 14)))
        .unwrap();
    let dy = DynamicInt8::new(m8.clone()).unwrap();
    assert!(matches!(
        dy.matmul(x.view(), &Sequential),
        Err(SquishError::NonFinite { .. })
    ));
    assert!(matches!(
        dy.matmul(gaussian(2, 5, 1).view(), &Sequential),
        Err(SquishError::ShapeMismatch { .. })
    ));
    // Wrong encodings.
    assert!(matches!(
        DynamicInt8::new(dense(&gaussian(3, 4, 15))),
        Err(SquishError::Incompatible { .. })
    ));
    assert!(matches!(
        binary::xnor_matmul(&m8, gaussian(1, 4, 1).view(), &Sequential),
        Err(SquishError::Incompatible { .. })
    ));
    assert!(matches!(
        Binary.quantize(&m8),
        Err(SquishError::Incompatible { .. })
    ));
    // Staged parameters from another quantizer.
    let d = dense(&gaussian(3, 8, 16));
    let Some(Values::F32(f)) = d.values().cloned() else {
        panic!()
    };
    let a = IntQuantizer::params(8).per_row().check().unwrap();
    let b = IntQuantizer::params(8).per_group(4).check().unwrap();
    let pa = a
        .compute_params(d.values().unwrap().layout(), &a.calibrate(&f).unwrap())
        .unwrap();
    assert!(matches!(
        b.quantize_with_params(&f, &pa),
        Err(SquishError::Inconsistent { .. })
    ));
}

#[test]
fn shorter_last_group_is_allowed_and_exact_in_count() {
    let w = gaussian(3, 10, 17);
    let q = IntQuantizer::params(8).per_group(4).check().unwrap();
    let m = q.quantize(&dense(&w)).unwrap();
    let Some(Values::Int8(v)) = m.values() else {
        panic!()
    };
    assert_eq!(v.params().scales().len(), 3 * 3); // groups of 4, 4, 2
    let back = m.to_dense();
    for i in 0..3 {
        let tail_max = w.row(i).iter().skip(8).fold(0.0f32, |a, &x| a.max(x.abs()));
        assert!((v.params().scales()[i * 3 + 2] - tail_max / 127.0).abs() < 1e-7);
        for j in 8..10 {
            assert!((w[[i, j]] - back[[i, j]]).abs() <= tail_max / 254.0 + 1e-7);
        }
    }
}

#[test]
fn all_zero_rows_decode_and_multiply_to_zero() {
    let mut w = gaussian(4, 40, 18);
    w.row_mut(1).fill(0.0);
    w.row_mut(3).fill(0.0);
    let x = gaussian(9, 40, 19);
    let mut all: Vec<Box<dyn Quantizer>> = vec![Box::new(Binary), Box::new(Ternary)];
    for q in quantizers() {
        all.push(Box::new(q));
    }
    for q in all {
        let m = q.quantize(&dense(&w)).unwrap();
        let back = m.to_dense();
        assert!(back.iter().all(|v| v.is_finite()), "{}", q.name());
        for i in [1, 3] {
            assert!(back.row(i).iter().all(|&v| v == 0.0), "{}", q.name());
        }
        for b in [1, 9] {
            let y = m.matmul(x.slice(ndarray::s![..b, ..])).unwrap();
            assert!(y.iter().all(|v| v.is_finite()));
            assert!(y.column(1).iter().all(|&v| v == 0.0), "{}", q.name());
        }
    }
    // A zero activation row.
    let mut x = gaussian(8, 40, 20);
    x.row_mut(2).fill(0.0);
    let xq = quantize_activations(x.view()).unwrap();
    assert_eq!(xq.scales()[2], 0.0);
    let m8 = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&dense(&w))
        .unwrap();
    let y = DynamicInt8::new(m8)
        .unwrap()
        .matmul(x.view(), &Sequential)
        .unwrap();
    assert!(y.row(2).iter().all(|&v| v == 0.0));
}

// ---------------------------------------------------------------- kernels

const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (3, 7),
    (5, 64),
    (17, 130),
    (9, 255),
    (6, 1000),
    (33, 96),
    (7, 48), // binary: four-row groups with a 16-input tail
];

fn tiers() -> Vec<Isa> {
    let mut t = vec![Isa::Portable];
    for isa in [Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni] {
        if isa <= Isa::detect() {
            t.push(isa);
        }
    }
    t
}

/// |y − ref| ≤ tol·Σ|ŵ||x| + tiny, elementwise.
fn assert_close(y: ArrayView2<f32>, w_hat: ArrayView2<f32>, x: ArrayView2<f32>, what: &str) {
    let w64 = w_hat.mapv(f64::from);
    let x64 = x.mapv(f64::from);
    let exact = x64.dot(&w64.t());
    let bound = x64.mapv(f64::abs).dot(&w64.mapv(f64::abs).t());
    for ((&a, &e), &b) in y.iter().zip(exact.iter()).zip(bound.iter()) {
        assert!(
            (a as f64 - e).abs() <= 1e-5 * b + 1e-6,
            "{what}: {a} vs {e} (bound {b})"
        );
    }
}

fn encoded(w: &Array2<f32>) -> Vec<(String, CompressedMatrix)> {
    let mut out: Vec<(String, CompressedMatrix)> = quantizers()
        .into_iter()
        .map(|q| (q.name(), q.quantize(&dense(w)).unwrap()))
        .collect();
    out.push(("binary".into(), Binary.quantize(&dense(w)).unwrap()));
    out.push(("ternary".into(), Ternary.quantize(&dense(w)).unwrap()));
    for k in [16, 5] {
        let q = KMeans::params(k).check().unwrap();
        out.push((format!("codebook k={k}"), q.quantize(&dense(w)).unwrap()));
    }
    out
}

/// The batch sizes of the kernel table (docs/results.md).
const BATCHES: [usize; 8] = [1, 2, 3, 4, 8, 16, 64, 256];

/// Every weight-only kernel against the reference kernel (and the exact
/// product of the decoded weights) at every batch size, on every tier; and
/// every row of a product bit-identical whatever the batch it was computed
/// in (a prefix or a window of a 256-row batch) and whatever the executor.
#[test]
fn weight_only_kernels_match_the_reference() {
    let pool = ThreadPool::new(2).unwrap();
    let pool3 = ThreadPool::new(3).unwrap();
    for (si, &(rows, cols)) in SHAPES.iter().enumerate() {
        let w = student(rows, cols, 100 + si as u64);
        let xall = gaussian(256, cols, 200 + si as u64);
        for (name, m) in encoded(&w) {
            let w_hat = m.to_dense();
            let v = m.values().unwrap();
            let reference = m.matmul_reference(xall.view()).unwrap();
            assert_close(reference.view(), w_hat.view(), xall.view(), "reference");
            let whole = m.matmul(xall.view()).unwrap();
            assert_close(whole.view(), w_hat.view(), xall.view(), &name);
            for isa in tiers() {
                let full = kernels::matmul_block(v, xall.view(), &Sequential, isa).unwrap();
                let what = format!("{name} {rows}x{cols} {isa:?}");
                assert_close(full.view(), w_hat.view(), xall.view(), &what);
                if isa == Isa::detect() {
                    assert_eq!(
                        bits(&full),
                        bits(&whole),
                        "{what}: the dispatch routes here"
                    );
                }
                for batch in BATCHES {
                    for b0 in [0, 256 - batch, (256 - batch) / 3] {
                        let x = xall.slice(ndarray::s![b0..b0 + batch, ..]);
                        let want = full.slice(ndarray::s![b0..b0 + batch, ..]).to_owned();
                        for exec in [&Sequential as &dyn ParallelExecutor, &pool, &pool3] {
                            let y = kernels::matmul_block(v, x, exec, isa).unwrap();
                            assert_eq!(bits(&y), bits(&want), "{what} batch {batch} at {b0}");
                        }
                    }
                }
            }
        }
    }
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// N:M and CSR structures with quantized or shared values go through decoded
/// tiles: against the reference at every batch size, rows bit-identical
/// across batches and executors.
#[test]
fn quantized_sparse_structures_match_the_reference_at_every_batch() {
    let pool = ThreadPool::new(2).unwrap();
    let w = student(37, 96, 900);
    let nm = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .prune(&dense(&w))
        .unwrap();
    let csr = Magnitude::params(0.7)
        .check()
        .unwrap()
        .prune(&dense(&w))
        .unwrap();
    let xall = gaussian(64, 96, 901);
    for s in [nm, csr] {
        let mut forms: Vec<CompressedMatrix> = vec![
            IntQuantizer::params(8)
                .per_row()
                .check()
                .unwrap()
                .quantize(&s)
                .unwrap(),
            IntQuantizer::params(4)
                .per_group(8)
                .check()
                .unwrap()
                .quantize(&s)
                .unwrap(),
            Binary.quantize(&s).unwrap(),
            Ternary.quantize(&s).unwrap(),
        ];
        if matches!(s.structure(), squish::matrix::Structure::NM(_)) {
            forms.push(KMeans::params(8).check().unwrap().quantize(&s).unwrap());
        }
        for m in forms {
            let what = format!("{} {}", m.structure().kind(), m.encoding());
            let w_hat = m.to_dense();
            let whole = m.matmul(xall.view()).unwrap();
            assert_close(whole.view(), w_hat.view(), xall.view(), &what);
            let r = m.matmul_reference(xall.view()).unwrap();
            assert_close(r.view(), w_hat.view(), xall.view(), &what);
            for batch in [1, 2, 4, 8, 16, 64] {
                let x = xall.slice(ndarray::s![64 - batch.., ..]);
                let want = whole.slice(ndarray::s![64 - batch.., ..]).to_owned();
                assert_eq!(
                    bits(&m.matmul_on(x, &pool).unwrap()),
                    bits(&want),
                    "{what} {batch}"
                );
            }
        }
    }
}

#[test]
fn kernels_work_on_kept_rows() {
    let w = gaussian(12, 70, 30);
    let kept = CompressedMatrix::kept_rows(w.view(), vec![0, 3, 4, 9, 11]).unwrap();
    let x = gaussian(5, 70, 31);
    for q in [
        Box::new(IntQuantizer::params(8).check().unwrap()) as Box<dyn Quantizer>,
        Box::new(
            IntQuantizer::params(4)
                .per_group(14)
                .symmetric(false)
                .check()
                .unwrap(),
        ),
        Box::new(Binary),
        Box::new(Ternary),
    ] {
        let m = q.quantize(&kept).unwrap();
        assert_eq!(m.structure().kind(), "kept-rows");
        for b in [1, 5] {
            let xs = x.slice(ndarray::s![..b, ..]);
            let y = m.matmul(xs).unwrap();
            assert_close(y.view(), m.to_dense().view(), xs, &q.name());
            assert!(y.column(1).iter().all(|&v| v == 0.0));
        }
    }
    let m8 = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&kept)
        .unwrap();
    let y = DynamicInt8::new(m8.clone())
        .unwrap()
        .matmul(x.view(), &Sequential)
        .unwrap();
    assert_eq!(y.dim(), (5, 12));
    assert!(y.column(2).iter().all(|&v| v == 0.0));
    let xb = CompressedMatrix::kept_rows(w.view(), vec![1, 2]).unwrap();
    let mb = Binary.quantize(&xb).unwrap();
    let yb = binary::xnor_matmul(&mb, x.view(), &Sequential).unwrap();
    let rb = binary::xnor_reference(&mb, x.view()).unwrap();
    for (&a, &e) in yb.iter().zip(rb.iter()) {
        assert!((a as f64 - e).abs() <= 1e-5 * e.abs() + 1e-6);
    }
}

/// `DynamicInt8` on every tier and on 2 threads gives `reference`'s bits
/// for every `bits`-wide quantizer of the suite, and the reference is the
/// product of the dequantized operands.
fn dynamic_matches_reference(
    bits: u8,
    shapes: &[(usize, usize)],
    batches: &[usize],
    seeds: (u64, u64),
    reference: &dyn Fn(&Values, &squish::quantization::QuantizedActivations) -> Array2<f32>,
) {
    let pool = ThreadPool::new(2).unwrap();
    for (si, &(rows, cols)) in shapes.iter().enumerate() {
        let w = student(rows, cols, seeds.0 + si as u64);
        for q in quantizers().into_iter().filter(|q| q.bits() == bits) {
            let m = q.quantize(&dense(&w)).unwrap();
            let lin = DynamicInt8::new(m.clone()).unwrap();
            for &batch in batches {
                let x = gaussian(batch, cols, seeds.1 + batch as u64);
                let xq = quantize_activations(x.view()).unwrap();
                let reference = reference(m.values().expect("quantized values"), &xq);
                for isa in tiers() {
                    let y = lin.matmul_isa(x.view(), &pool, isa).unwrap();
                    assert_eq!(y, reference, "{} {rows}x{cols} b{batch} {isa:?}", q.name());
                }
                assert_close(
                    reference.view(),
                    m.to_dense().view(),
                    xq.dequantize().view(),
                    "dynamic int8 gemm",
                );
            }
        }
    }
}

#[test]
fn int8_gemm_is_bit_identical_on_every_path() {
    let mut shapes = SHAPES.to_vec();
    shapes.push((3, 40_000)); // longer than one i32 chunk
    dynamic_matches_reference(
        8,
        &shapes,
        &[1, 2, 5, 7, 8, 13, 16],
        (300, 400),
        &|v, xq| match v {
            Values::Int8(v) => kernels::int8_gemm::gemm_reference(v, xq),
            _ => panic!("int8 values"),
        },
    );
}

/// Codes at their extremes (every weight and activation ±127, in runs of
/// one sign and alternating): the AVX2 panels' 16-bit pair sums reach
/// `2·127·127`, and would saturate had they multiplied `x + 128` by `w`.
#[test]
fn int8_gemm_is_exact_at_the_extreme_codes() {
    let (rows, cols, batch) = (33, 260, 7);
    let w = Array2::from_shape_fn((rows, cols), |(i, k)| match i % 3 {
        0 => 1.0,
        1 => -1.0,
        _ => [1.0, -1.0][(k / (1 + i % 5)) % 2],
    });
    let x = Array2::from_shape_fn((batch, cols), |(b, k)| match b % 3 {
        0 => 2.0,
        1 => -2.0,
        _ => [2.0f32, -2.0][(k * (b + 1) / 3) % 2],
    });
    let m = IntQuantizer::params(8)
        .per_row()
        .check()
        .unwrap()
        .quantize(&dense(&w))
        .unwrap();
    let Some(Values::Int8(v)) = m.values() else {
        panic!("int8 values")
    };
    assert!(v.codes().iter().all(|&c| c.abs() == 127));
    let xq = quantize_activations(x.view()).unwrap();
    assert!(xq.codes().iter().all(|&c| c.abs() == 127));
    let reference = kernels::int8_gemm::gemm_reference(v, &xq);
    // The product of ±1 weights and ±2 inputs, to f32 rounding.
    for (a, e) in reference.iter().zip(x.dot(&w.t()).iter()) {
        assert!((a - e).abs() <= 1e-5 * cols as f32, "{a} vs {e}");
    }
    let lin = DynamicInt8::new(m.clone()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    for isa in tiers() {
        assert_eq!(
            lin.matmul_isa(x.view(), &pool, isa).unwrap(),
            reference,
            "{isa:?}"
        );
    }
}

/// int4 weights through `DynamicInt8` (nibble panels on VNNI / AVX2, the
/// portable path otherwise): the reference's bits on every tier, for every
/// int4 quantizer of the suite (per row, per group, asymmetric).
#[test]
fn int4_x_int8_is_bit_identical_on_every_path() {
    dynamic_matches_reference(
        4,
        SHAPES,
        &[1, 2, 5, 7, 13, 16],
        (500, 600),
        &|v, xq| match v {
            Values::Int4(v) => kernels::int4_gemm::gemm4_reference(v, xq),
            _ => panic!("int4 values"),
        },
    );
}

/// The packed VNNI path works on 6-row weight tiles × 4-row batch tiles ×
/// 64-byte blocks, with groups of whole blocks; these shapes sit on and
/// around every edge (and span several parallel tasks), and every tier,
/// the portable one included, must equal the reference bit for bit.
#[test]
fn int8_gemm_matches_reference_on_tile_and_block_edges() {
    let pool = ThreadPool::new(2).unwrap();
    // (rows, cols, batch)
    let cases = [
        (1, 1, 1),
        (5, 63, 3),
        (6, 64, 4),
        (7, 65, 5),
        (13, 127, 64),
        (12, 129, 65),
        (25, 320, 9),
        (19, 200, 2),
        (200, 4096, 6), // several tasks of whole output lines
        // The panel path (≥ 6 rows): panels of 16 outputs, pairs of them,
        // tiles of 6 tokens, columns not a multiple of 4.
        (40, 384, 33),
        (17, 102, 12),
    ];
    for (ci, &(rows, cols, batch)) in cases.iter().enumerate() {
        let w = student(rows, cols, 900 + ci as u64);
        let mut x = gaussian(batch, cols, 950 + ci as u64);
        if batch > 2 {
            x.row_mut(1).fill(0.0); // scale 0: an all-zero output row
        }
        for g in [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(64),
            Granularity::PerGroup(128),
        ] {
            for sym in [true, false] {
                let p = IntQuantizer::params(8).symmetric(sym);
                let p = match g {
                    Granularity::PerTensor => p.per_tensor(),
                    Granularity::PerRow => p.per_row(),
                    Granularity::PerGroup(g) => p.per_group(g),
                };
                let m = p.check().unwrap().quantize(&dense(&w)).unwrap();
                let Some(Values::Int8(v)) = m.values() else {
                    panic!()
                };
                let xq = quantize_activations(x.view()).unwrap();
                let reference = kernels::int8_gemm::gemm_reference(v, &xq);
                let lin = DynamicInt8::new(m.clone()).unwrap();
                for isa in tiers() {
                    let what = format!("{rows}x{cols} b{batch} {g:?} sym={sym} {isa:?}");
                    let y = lin.matmul_isa(x.view(), &pool, isa).unwrap();
                    assert_eq!(y, reference, "{what}");
                    let y1 = lin.matmul_isa(x.view(), &Sequential, isa).unwrap();
                    assert_eq!(y1, reference, "{what}, sequential");
                    if batch > 2 {
                        assert!(y.row(1).iter().all(|&v| v == 0.0), "{what}");
                    }
                }
            }
        }
    }
}

/// The reference itself, against an independent f64 product of the
/// dequantized operands with the integers summed exactly.
#[test]
fn int8_gemm_reference_is_the_product_of_the_dequantized_operands() {
    let w = student(9, 130, 990);
    let x = gaussian(5, 130, 991);
    for p in [
        IntQuantizer::params(8).per_row(),
        IntQuantizer::params(8).symmetric(false).per_group(64),
    ] {
        let m = p.check().unwrap().quantize(&dense(&w)).unwrap();
        let Some(Values::Int8(v)) = m.values() else {
            panic!()
        };
        let xq = quantize_activations(x.view()).unwrap();
        let y = kernels::int8_gemm::gemm_reference(v, &xq);
        let wd = m.to_dense();
        let xd = xq.dequantize();
        for b in 0..5 {
            for n in 0..9 {
                let e: f64 = (0..130)
                    .map(|k| wd[[n, k]] as f64 * xd[[b, k]] as f64)
                    .sum();
                let tol = 1e-5
                    * (0..130)
                        .map(|k| (wd[[n, k]] as f64 * xd[[b, k]] as f64).abs())
                        .sum::<f64>();
                assert!((y[[b, n]] as f64 - e).abs() <= tol + 1e-6, "{b},{n}");
            }
        }
    }
}

/// A non-finite activation is reported with its position (the fast
/// finiteness check falls back to the locating one).
#[test]
fn dynamic_int8_reports_the_first_non_finite_activation() {
    let m8 = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&dense(&gaussian(4, 1500, 16)))
        .unwrap();
    let lin = DynamicInt8::new(m8).unwrap();
    for (pos, bad) in [
        (1234, f32::NAN),
        (2999, f32::NEG_INFINITY),
        (0, f32::INFINITY),
    ] {
        let mut x = gaussian(2, 1500, 17);
        x[[pos / 1500, pos % 1500]] = bad;
        match lin.matmul(x.view(), &Sequential) {
            Err(SquishError::NonFinite { index, .. }) => assert_eq!(index, pos),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn xnor_popcount_matches_its_reference() {
    for (si, &(rows, cols)) in SHAPES
        .iter()
        .chain(&[(4, 64), (3, 128), (2, 200)])
        .enumerate()
    {
        let w = gaussian(rows, cols, 500 + si as u64);
        let m = Binary.quantize(&dense(&w)).unwrap();
        for batch in [1, 6] {
            let x = student(batch, cols, 600 + si as u64);
            let r = binary::xnor_reference(&m, x.view()).unwrap();
            for isa in tiers() {
                let y = binary::xnor_matmul_isa(&m, x.view(), &Sequential, isa).unwrap();
                for (&a, &e) in y.iter().zip(r.iter()) {
                    assert!(
                        (a as f64 - e).abs() <= 1e-5 * e.abs() + 1e-6,
                        "{rows}x{cols} {isa:?}: {a} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn dynamic_activation_quantization_is_per_row_and_bounded() {
    let x = student(7, 33, 700);
    let q = quantize_activations(x.view()).unwrap();
    for b in 0..7 {
        let max = x.row(b).iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        assert_eq!(q.scales()[b], max / 127.0);
        assert!(q.row(b).iter().any(|&c| c.abs() == 127));
        for (k, &c) in q.row(b).iter().enumerate() {
            assert!((c as f32 * q.scales()[b] - x[[b, k]]).abs() <= q.scales()[b] / 2.0 * 1.0001);
        }
    }
}

#[test]
fn quantizers_reencode_every_structure() {
    use squish::pass::{CompressionPass, Quantize};
    let w = gaussian(20, 48, 800);
    let keep = w.mapv(|v| v.abs() > 0.7);
    let csr = CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap();
    let kept = CompressedMatrix::kept_rows(w.view(), vec![1, 5, 19]).unwrap();
    let a = CompressedMatrix::from_dense(gaussian(20, 6, 801).view()).unwrap();
    let b = CompressedMatrix::from_dense(gaussian(6, 48, 802).view()).unwrap();
    let low = CompressedMatrix::low_rank(a, b).unwrap();
    let x = gaussian(3, 48, 803);
    let pool = ThreadPool::new(2).unwrap();
    for m in [csr, kept, low] {
        for q in [
            Box::new(Quantize(
                IntQuantizer::params(8).per_group(5).check().unwrap(),
            )) as Box<dyn CompressionPass>,
            Box::new(Quantize(
                IntQuantizer::params(4).symmetric(false).check().unwrap(),
            )),
            Box::new(Quantize(Binary)),
            Box::new(Quantize(Ternary)),
        ] {
            let out = q.apply(&m, &pool).unwrap();
            assert_eq!(out, q.apply(&m, &Sequential).unwrap());
            assert_eq!(out.structure().kind(), m.structure().kind());
            let y = out.matmul(x.view()).unwrap();
            let r = out.matmul_reference(x.view()).unwrap();
            for (&p, &e) in y.iter().zip(r.iter()) {
                assert!((p - e).abs() <= 1e-4 * (1.0 + e.abs()), "{}", q.name());
            }
        }
    }
}

#[test]
fn tiny_scales_do_not_break_rounding() {
    // max|w| ~ 1e-38: the scale is subnormal and 1/s overflows.
    let w = gaussian(3, 17, 900).mapv(|v| v * 1e-38);
    for q in quantizers() {
        let m = q.quantize(&dense(&w)).unwrap();
        let back = m.to_dense();
        assert!(back.iter().all(|v| v.is_finite()));
        let e = squish::metrics::ErrorMetrics::between(w.view(), back.view()).unwrap();
        let limit = if q.bits() == 8 { 0.05 } else { 0.6 };
        assert!(e.rel_frobenius < limit, "{}: {}", q.name(), e.rel_frobenius);
    }
}

/// Binary and ternary weights through `DynamicInt8` (the sign bits straight
/// into `vpdpbusd` on VNNI, the portable sums otherwise): the reference's
/// bits on every tier, batch and executor, at widths on and around the
/// 64-column blocks and rows that do not start on a byte; the reference is
/// the product of the dequantized operands; kept rows leave their zeros.
#[test]
fn binary_and_ternary_x_int8_are_bit_identical_on_every_path() {
    use kernels::sign_gemm::{sign_reference, Signs};
    let pool = ThreadPool::new(2).unwrap();
    let mut shapes = SHAPES.to_vec();
    shapes.extend([(9, 63), (6, 65), (5, 127), (7, 129), (70, 300), (3, 784)]);
    for (si, &(rows, cols)) in shapes.iter().enumerate() {
        let w = student(rows, cols, 700 + si as u64);
        for q in [&Binary as &dyn Quantizer, &Ternary] {
            let m = q.quantize(&dense(&w)).unwrap();
            let lin = DynamicInt8::new(m.clone()).unwrap();
            for batch in [1, 2, 5, 7, 13, 16] {
                let x = gaussian(batch, cols, 800 + batch as u64);
                let xq = quantize_activations(x.view()).unwrap();
                let reference = match m.values() {
                    Some(Values::Binary(v)) => sign_reference(Signs::Binary(v), &xq),
                    Some(Values::Ternary(v)) => sign_reference(Signs::Ternary(v), &xq),
                    _ => panic!("binary or ternary values"),
                };
                let what = format!("{} {rows}x{cols} b{batch}", q.name());
                for isa in tiers() {
                    for exec in [&Sequential as &dyn ParallelExecutor, &pool] {
                        let y = lin.matmul_isa(x.view(), exec, isa).unwrap();
                        assert_eq!(y, reference, "{what} {isa:?}");
                    }
                }
                assert_close(
                    reference.view(),
                    m.to_dense().view(),
                    xq.dequantize().view(),
                    &what,
                );
            }
        }
    }
    // Kept rows: the dropped rows' outputs stay zero.
    let w = student(6, 130, 790);
    let kept = CompressedMatrix::kept_rows(w.view(), vec![0, 3, 4]).unwrap();
    let x = gaussian(3, 130, 791);
    for q in [&Binary as &dyn Quantizer, &Ternary] {
        let m = q.quantize(&kept).unwrap();
        let y = DynamicInt8::new(m.clone())
            .unwrap()
            .matmul(x.view(), &Sequential)
            .unwrap();
        let xq = quantize_activations(x.view()).unwrap();
        assert_close(
            y.view(),
            m.to_dense().view(),
            xq.dequantize().view(),
            "kept",
        );
        assert!(y.column(1).iter().all(|&v| v == 0.0));
    }
}
