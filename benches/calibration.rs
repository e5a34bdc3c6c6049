//! Data-aware compression benches: GPTQ int4 group-128 and SparseGPT 50 %
//! of a 4096 × 4096 layer with a 4096² calibration Hessian, and the
//! inverse-Hessian factor alone, on 1 and 2 threads.
//!
//! `cargo bench --bench calibration` (target: GPTQ ≤ 3 s on 2 threads).

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use squish::matrix::InverseHessian;
use squish::parallel::{Sequential, ThreadPool};
use squish::pruning::SparseGpt;
use squish::quantization::Gptq;
use std::hint::black_box;

const N: usize = 4096;

fn gaussian(rows: usize, cols: usize, sd: f32, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, sd).unwrap();
    Array2::from_shape_fn((rows, cols), |_| d.sample(&mut rng))
}

/// A correlated, positive definite `H = B·Bᵀ + D` (rank-256 plus diagonal),
/// the shape of a real layer's `XᵀX`.
fn hessian() -> Array2<f64> {
    let b = gaussian(N, 256, 1.0, 7).mapv(f64::from);
    let mut h = b.dot(&b.t());
    for j in 0..N {
        h[[j, j]] += 1.0 + (j % 17) as f64;
    }
    h
}

fn bench(c: &mut Criterion) {
    let w = gaussian(N, N, 0.05, 1);
    let h = hessian();
    let pool = ThreadPool::new(2).unwrap();
    let gptq = Gptq::params(4).per_group(128).check().unwrap();
    let sgpt = SparseGpt::unstructured(0.5).check().unwrap();
    let mut g = c.benchmark_group("calibration_4096");
    g.sample_size(10);
    g.bench_function("inverse Hessian factor (faer, 1 thread)", |b| {
        b.iter(|| black_box(InverseHessian::new(h.view(), 0.01, None).unwrap()))
    });
    g.bench_function("GPTQ int4 g128, 2 threads", |b| {
        b.iter(|| black_box(gptq.quantize(w.view(), h.view(), &pool).unwrap()))
    });
    g.bench_function("GPTQ int4 g128, 1 thread", |b| {
        b.iter(|| black_box(gptq.quantize(w.view(), h.view(), &Sequential).unwrap()))
    });
    g.bench_function("SparseGPT 50%, 2 threads", |b| {
        b.iter(|| black_box(sgpt.prune(w.view(), h.view(), &pool).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
