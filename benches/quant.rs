//! Quantization benches: per-row int8 quantization of 16M weights (GB/s of
//! f32 input), GEMV at 4096² for dense f32 and each encoding, and the
//! int8 × int8 GEMM at batch 64 against dense f32. Compare within one run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use squish::matrix::{CompressedMatrix, Values};
use squish::parallel::{Sequential, ThreadPool};
use squish::quantization::{Binary, DynamicInt8, IntQuantizer, Quantizer, Ternary};
use std::hint::black_box;

const N: usize = 4096;

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 0.05).unwrap();
    Array2::from_shape_fn((rows, cols), |_| d.sample(&mut rng))
}

fn quantize_16m(c: &mut Criterion) {
    let w = gaussian(N, N, 1);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let Some(Values::F32(f)) = m.values() else {
        unreachable!()
    };
    let q = IntQuantizer::params(8).per_row().check().unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let mut g = c.benchmark_group("quantize_int8_per_row_16M");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((N * N * 4) as u64));
    g.bench_function("1 thread", |b| {
        b.iter(|| black_box(q.quantize_values_on(f, &Sequential).unwrap()))
    });
    g.bench_function("2 threads", |b| {
        b.iter(|| black_box(q.quantize_values_on(f, &pool).unwrap()))
    });
    g.finish();
}

fn gemv(c: &mut Criterion) {
    let w = gaussian(N, N, 2);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let x = gaussian(1, N, 3);
    let x1 = x.row(0).to_owned();
    let mut g = c.benchmark_group("gemv_4096");
    g.sample_size(20);
    g.bench_function("f32 dense x·Wᵀ (ndarray)", |b| {
        b.iter(|| black_box(x.dot(&w.t())))
    });
    g.bench_function("f32 dense W·x (ndarray)", |b| {
        b.iter(|| black_box(w.dot(&x1)))
    });
    let encodings: Vec<(&str, CompressedMatrix)> = vec![
        (
            "int8 per-row",
            IntQuantizer::params(8)
                .check()
                .unwrap()
                .quantize(&m)
                .unwrap(),
        ),
        (
            "int4 per-row",
            IntQuantizer::params(4)
                .check()
                .unwrap()
                .quantize(&m)
                .unwrap(),
        ),
        (
            "int4 group-128",
            IntQuantizer::params(4)
                .per_group(128)
                .check()
                .unwrap()
                .quantize(&m)
                .unwrap(),
        ),
        ("binary", Binary.quantize(&m).unwrap()),
        ("ternary", Ternary.quantize(&m).unwrap()),
    ];
    for (name, q) in &encodings {
        g.bench_function(BenchmarkId::new("squish", name), |b| {
            b.iter(|| black_box(q.matmul_on(x.view(), &Sequential).unwrap()))
        });
    }
    g.finish();
}

fn gemm_b64(c: &mut Criterion) {
    let w = gaussian(N, N, 4);
    let x = gaussian(64, N, 5);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let m8 = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&m)
        .unwrap();
    let dynamic = DynamicInt8::new(m8.clone()).unwrap();
    let mut g = c.benchmark_group("gemm_4096_batch64");
    g.sample_size(10);
    g.bench_function("f32 dense x·Wᵀ (ndarray)", |b| {
        b.iter(|| black_box(x.dot(&w.t())))
    });
    g.bench_function("int8 x int8 dynamic", |b| {
        b.iter(|| black_box(dynamic.matmul(x.view(), &Sequential).unwrap()))
    });
    g.bench_function("int8 weight-only (decode blocks + GEMM)", |b| {
        b.iter(|| black_box(m8.matmul_on(x.view(), &Sequential).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, quantize_16m, gemv, gemm_b64);
criterion_main!(benches);
