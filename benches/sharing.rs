//! Weight sharing benches: histogram Lloyd vs a textbook O(n·k) Lloyd, the
//! exact DP, and codebook GEMV vs dense f32 GEMV at 4096², batch 1.
//!
//! The two Lloyds run from the same init with the same stopping rule and are
//! checked to reach the same centroids before anything is timed; they are
//! compared at a fixed 20 updates (where the histogram Lloyd's one-time sort
//! dominates) and to convergence.
//!
//! The bounded DP is sampled at 1M (k = 16 and 256) and 16M (k = 16); every
//! case is also timed once with the SSE comparison printed (16M at k = 256,
//! tens of seconds, only when `SQUISH_BENCH_FULL=1` is set).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use squish::compression::sharing::{Clustering, DpLayer, Histogram, Init, KMeans};
use squish::matrix::CompressedMatrix;
use squish::quantization::Quantizer;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 0.02).unwrap();
    (0..n).map(|_| d.sample(&mut r)).collect()
}

/// Textbook Lloyd: every value against every centroid, every iteration, with
/// the histogram Lloyd's stopping rule (stop after the first update whose
/// reassignment changes no label; at most `max_iter` updates). Returns the
/// centroids and the number of updates.
fn naive_lloyd(values: &[f32], mut c: Vec<f64>, max_iter: usize) -> (Vec<f64>, usize) {
    let k = c.len();
    let nearest = |x: f64, c: &[f64]| {
        let mut bi = 0;
        let mut bd = f64::INFINITY;
        for (t, &ct) in c.iter().enumerate() {
            let d = (x - ct) * (x - ct);
            if d < bd {
                bd = d;
                bi = t;
            }
        }
        bi as u16
    };
    let mut labels: Vec<u16> = values.iter().map(|&x| nearest(x as f64, &c)).collect();
    let mut s = vec![0.0f64; k];
    let mut n = vec![0.0f64; k];
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        s.fill(0.0);
        n.fill(0.0);
        for (&x, &l) in values.iter().zip(&labels) {
            s[l as usize] += x as f64;
            n[l as usize] += 1.0;
        }
        for t in 0..k {
            if n[t] > 0.0 {
                c[t] = s[t] / n[t];
            }
        }
        let mut changed = 0usize;
        for (&x, l) in values.iter().zip(labels.iter_mut()) {
            let nl = nearest(x as f64, &c);
            changed += (nl != *l) as usize;
            *l = nl;
        }
        if changed == 0 {
            break;
        }
    }
    (c, iterations)
}

/// Both Lloyds from the same init must agree (same iterations, same
/// centroids up to f64 summation order), or the timing comparison is void.
fn assert_same(label: &str, hist: &Clustering, naive: &(Vec<f64>, usize)) {
    assert_eq!(hist.iterations, naive.1, "{label}: iterations differ");
    for (a, b) in hist.centroids.iter().zip(&naive.0) {
        assert!(
            (a - b).abs() <= 1e-9 * a.abs().max(1e-3),
            "{label}: {a} vs {b}"
        );
    }
}

/// Fixed updates for the per-iteration comparison.
const ITERS: usize = 20;
/// Cap for the run to convergence (the default `max_iter` is 300; k = 16 on
/// 1M Gaussian weights from the linear init needs about 550 updates).
const CONVERGE_CAP: usize = 5000;

fn kmeans(c: &mut Criterion) {
    let n = 1 << 20;
    let v = gaussian(n, 1);
    let h = Histogram::new(&v).unwrap();
    let init = Init::Linear.centroids(&h, 16);
    let lloyd20 = KMeans::params(16)
        .lloyd(Init::Linear)
        .max_iter(ITERS)
        .check()
        .unwrap();
    let lloyd_conv = KMeans::params(16)
        .lloyd(Init::Linear)
        .max_iter(CONVERGE_CAP)
        .check()
        .unwrap();
    // Same init, same stopping rule, same result: checked before timing.
    assert_same(
        "20 updates",
        &lloyd20.fit(&v).unwrap(),
        &naive_lloyd(&v, init.clone(), ITERS),
    );
    let conv = lloyd_conv.fit(&v).unwrap();
    let t = Instant::now();
    let naive_conv = naive_lloyd(&v, init.clone(), CONVERGE_CAP);
    let naive_conv_time = t.elapsed();
    assert_same("to convergence", &conv, &naive_conv);
    assert!(conv.iterations < CONVERGE_CAP, "did not converge");

    let mut g = c.benchmark_group("kmeans_1M");
    g.sample_size(10);
    g.bench_function("lloyd_hist_k16_20it", |b| {
        b.iter(|| black_box(lloyd20.fit(black_box(&v)).unwrap()))
    });
    g.bench_function("lloyd_naive_k16_20it", |b| {
        b.iter(|| black_box(naive_lloyd(black_box(&v), init.clone(), ITERS)))
    });
    g.bench_function("lloyd_hist_k16_converged", |b| {
        b.iter(|| black_box(lloyd_conv.fit(black_box(&v)).unwrap()))
    });
    let lloyd256 = KMeans::params(256)
        .lloyd(Init::Linear)
        .max_iter(ITERS)
        .check()
        .unwrap();
    g.bench_function("lloyd_hist_k256_20it", |b| {
        b.iter(|| black_box(lloyd256.fit(black_box(&v)).unwrap()))
    });
    let dp = KMeans::params(16).optimal().check().unwrap();
    g.bench_function("dp_k16", |b| {
        b.iter(|| black_box(dp.fit(black_box(&v)).unwrap()))
    });
    // The full DP (every cell of every layer), for the bounded DP's gain.
    let full = KMeans::params(16)
        .optimal()
        .dp_bound(false)
        .check()
        .unwrap();
    g.bench_function("dp_k16_full", |b| {
        b.iter(|| black_box(full.fit(black_box(&v)).unwrap()))
    });
    let smawk = KMeans::params(16)
        .optimal()
        .dp_bound(false)
        .dp_layer(DpLayer::Smawk)
        .check()
        .unwrap();
    g.bench_function("dp_k16_full_smawk", |b| {
        b.iter(|| black_box(smawk.fit(black_box(&v)).unwrap()))
    });
    let dp256 = KMeans::params(256).optimal().check().unwrap();
    g.bench_function("dp_k256", |b| {
        b.iter(|| black_box(dp256.fit(black_box(&v)).unwrap()))
    });
    g.finish();
    // The naive run to convergence takes seconds: timed once, not sampled.
    println!(
        "sharing 1M k=16 to convergence ({} updates, same centroids): naive Lloyd {naive_conv_time:?} (one run)",
        conv.iterations
    );

    let mut g = c.benchmark_group("kmeans_16M");
    g.sample_size(10);
    let v16 = gaussian(16 << 20, 2);
    for k in [16usize, 256] {
        let lloyd = KMeans::params(k).max_iter(ITERS).check().unwrap();
        g.bench_function(format!("lloyd_hist_k{k}_20it"), |b| {
            b.iter(|| black_box(lloyd.fit(black_box(&v16)).unwrap()))
        });
    }
    g.bench_function("dp_k16", |b| {
        b.iter(|| black_box(dp.fit(black_box(&v16)).unwrap()))
    });
    g.finish();

    // SSE comparison at the default 300 Lloyd updates and one-shot DP timings.
    let full = std::env::var("SQUISH_BENCH_FULL").is_ok_and(|s| s == "1");
    for (label, data) in [("1M", &v), ("16M", &v16)] {
        for k in [16usize, 256] {
            let t = Instant::now();
            let l = KMeans::params(k).check().unwrap().fit(data).unwrap();
            let tl = t.elapsed();
            if !(full || label == "1M" || k == 16) {
                println!(
                    "sharing {label} k={k}: lloyd (300 it) {tl:?} sse {:.6e}",
                    l.sse
                );
                continue;
            }
            let t = Instant::now();
            let o = KMeans::params(k)
                .optimal()
                .check()
                .unwrap()
                .fit(data)
                .unwrap();
            let to = t.elapsed();
            println!(
                "sharing {label} k={k}: lloyd (300 it) {tl:?} sse {:.6e}; dp {to:?} sse {:.6e}; lloyd/dp sse {:.4}",
                l.sse,
                o.sse,
                l.sse / o.sse
            );
        }
    }
}

fn gemv(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let w = Array2::from_shape_vec((rows, cols), gaussian(rows * cols, 3)).unwrap();
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let mut r = StdRng::seed_from_u64(4);
    let x = Array2::from_shape_fn((1, cols), |_| r.random_range(-1.0f32..1.0));
    let mut g = c.benchmark_group("gemv_4096");
    g.sample_size(20);
    g.bench_function("dense_f32", |b| {
        b.iter(|| black_box(dense.matmul(black_box(x.view())).unwrap()))
    });
    for k in [16usize, 256] {
        let m = KMeans::params(k)
            .max_iter(10)
            .check()
            .unwrap()
            .quantize(&dense)
            .unwrap();
        g.bench_function(format!("codebook_k{k}"), |b| {
            b.iter(|| black_box(m.matmul(black_box(x.view())).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, gemv, kmeans);
criterion_main!(benches);
