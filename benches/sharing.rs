//! Weight sharing benches: histogram Lloyd vs a textbook O(n·k) Lloyd, the
//! exact DP, and codebook GEMV vs dense f32 GEMV at 4096², batch 1.
//!
//! The DP at 16M weights and at k = 256 takes tens of seconds a run, more
//! than criterion's minimum of 10 samples allows in a short bench: those
//! runs are timed once (with the SSE comparison printed) when
//! `SQUISH_BENCH_FULL=1` is set.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use squish::compression::sharing::{Histogram, Init, KMeans};
use squish::matrix::CompressedMatrix;
use squish::quantization::Quantizer;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 0.02).unwrap();
    (0..n).map(|_| d.sample(&mut r)).collect()
}

/// Textbook Lloyd: every value against every centroid, every iteration.
fn naive_lloyd(values: &[f32], mut c: Vec<f64>, iters: usize) -> Vec<f64> {
    let k = c.len();
    let mut s = vec![0.0f64; k];
    let mut n = vec![0.0f64; k];
    for _ in 0..iters {
        s.fill(0.0);
        n.fill(0.0);
        for &x in values {
            let x = x as f64;
            let mut bi = 0;
            let mut bd = f64::INFINITY;
            for (t, &ct) in c.iter().enumerate() {
                let d = (x - ct) * (x - ct);
                if d < bd {
                    bd = d;
                    bi = t;
                }
            }
            s[bi] += x;
            n[bi] += 1.0;
        }
        for t in 0..k {
            if n[t] > 0.0 {
                c[t] = s[t] / n[t];
            }
        }
    }
    c
}

const ITERS: usize = 20;

fn kmeans(c: &mut Criterion) {
    let n = 1 << 20;
    let v = gaussian(n, 1);
    let mut g = c.benchmark_group("kmeans_1M");
    g.sample_size(10);
    for k in [16usize, 256] {
        let lloyd = KMeans::params(k)
            .lloyd(Init::Linear)
            .max_iter(ITERS)
            .check()
            .unwrap();
        g.bench_function(format!("lloyd_hist_k{k}"), |b| {
            b.iter(|| black_box(lloyd.fit(black_box(&v)).unwrap()))
        });
    }
    let h = Histogram::new(&v).unwrap();
    let init = Init::Linear.centroids(&h, 16);
    g.bench_function("lloyd_naive_k16", |b| {
        b.iter(|| black_box(naive_lloyd(black_box(&v), init.clone(), ITERS)))
    });
    let dp = KMeans::params(16).optimal().check().unwrap();
    g.bench_function("dp_k16", |b| {
        b.iter(|| black_box(dp.fit(black_box(&v)).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("kmeans_16M");
    g.sample_size(10);
    let v16 = gaussian(16 << 20, 2);
    for k in [16usize, 256] {
        let lloyd = KMeans::params(k).max_iter(ITERS).check().unwrap();
        g.bench_function(format!("lloyd_hist_k{k}"), |b| {
            b.iter(|| black_box(lloyd.fit(black_box(&v16)).unwrap()))
        });
    }
    g.finish();

    // SSE comparison at convergence (300 Lloyd updates) and one-shot DP timings.
    let full = std::env::var("SQUISH_BENCH_FULL").is_ok_and(|s| s == "1");
    for (label, data) in [("1M", &v), ("16M", &v16)] {
        for k in [16usize, 256] {
            let t = Instant::now();
            let l = KMeans::params(k).check().unwrap().fit(data).unwrap();
            let tl = t.elapsed();
            if !(full || label == "1M" && k == 16) {
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
