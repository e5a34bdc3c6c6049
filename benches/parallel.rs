//! Each parallel mode at 1 vs 2 threads (this machine has 2 cores); the
//! ratio time(1 thread) / time(2 threads) is the speedup.
//!
//! - data parallel: batch-256 matmul through a 4096×1024 weight, shards of 64;
//! - model parallel: row-split GEMV at 4096² (8 row parts), column-split GEMV
//!   at 4096² (8 column parts), and a 4-layer pipeline over micro-batches;
//! - task parallel: compression (prune 50 % + int8 per row) of 8 layers of 1024²;
//! - a control (two spin tasks) showing what 2 threads can gain right now.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::matrix::LinOp;
use squish::parallel::{
    ColSplit, DataParallel, Forward, LayerPipeline, ParallelExecutor, RowSplit, Sequential,
    TaskRunner, ThreadPool,
};
use squish::prelude::*;
use squish::training::{Activation, Layer, LayerStack};

fn rand_mat(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn pools() -> Vec<(usize, ThreadPool)> {
    [1, 2]
        .iter()
        .map(|&t| (t, ThreadPool::new(t).unwrap()))
        .collect()
}

/// Control: two independent spin tasks. Its 1-vs-2-thread ratio is the most
/// any mode can gain on the machine at the moment (near 2 on an idle
/// 2-core machine, lower while other builds run).
fn control_spin(c: &mut Criterion) {
    let spin = |i: usize| {
        let mut x = std::hint::black_box(i as u64);
        for k in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(k));
        }
        std::hint::black_box(x);
    };
    let mut g = c.benchmark_group("control_spin_2_tasks");
    g.sample_size(10);
    for (t, pool) in pools() {
        g.bench_with_input(BenchmarkId::new("threads", t), &pool, |b, p| {
            b.iter(|| p.run(2, &spin))
        });
    }
    g.finish();
}

fn data_parallel(c: &mut Criterion) {
    let w = rand_mat(4096, 1024, 1);
    let x = rand_mat(256, 1024, 2);
    let dp = DataParallel::params().shard(64).check().unwrap();
    let mut g = c.benchmark_group("data_parallel_matmul_4096x1024_b256");
    g.sample_size(10);
    g.bench_function("dense baseline x.dot(w.t())", |b| b.iter(|| x.dot(&w.t())));
    for (t, pool) in pools() {
        g.bench_with_input(BenchmarkId::new("threads", t), &pool, |b, p| {
            b.iter(|| dp.forward(&w, x.view(), p).unwrap())
        });
    }
    g.finish();
}

fn row_split_gemv(c: &mut Criterion) {
    let w = rand_mat(4096, 4096, 3);
    let x = rand_mat(1, 4096, 4);
    let split = RowSplit::from_dense(w.view(), 8, &|_r, b| Ok(b.to_owned()), &Sequential).unwrap();
    let mut g = c.benchmark_group("row_split_gemv_4096x4096");
    g.sample_size(20);
    g.bench_function("dense baseline x.dot(w.t())", |b| b.iter(|| x.dot(&w.t())));
    for (t, pool) in pools() {
        g.bench_with_input(BenchmarkId::new("threads", t), &pool, |b, p| {
            b.iter(|| split.apply(x.view(), p).unwrap())
        });
    }
    g.finish();
}

fn col_split_gemv(c: &mut Criterion) {
    let w = rand_mat(4096, 4096, 5);
    let x = rand_mat(1, 4096, 6);
    let split = ColSplit::from_dense(w.view(), 8, &|_c, b| Ok(b.to_owned()), &Sequential).unwrap();
    let mut g = c.benchmark_group("col_split_gemv_4096x4096");
    g.sample_size(20);
    for (t, pool) in pools() {
        g.bench_with_input(BenchmarkId::new("threads", t), &pool, |b, p| {
            b.iter(|| split.apply(x.view(), p).unwrap())
        });
    }
    g.finish();
}

fn layer_pipeline(c: &mut Criterion) {
    let stack = || {
        LayerStack::new(
            (0..4)
                .map(|i| Layer::new(rand_mat(1024, 1024, 10 + i)).activation(Activation::Relu))
                .collect(),
        )
        .unwrap()
    };
    let x = rand_mat(256, 1024, 7);
    let piped = LayerPipeline::params(stack())
        .micro_batch(32)
        .check()
        .unwrap();
    let mut g = c.benchmark_group("layer_pipeline_4x1024_b256_mb32");
    g.sample_size(10);
    let plain = stack();
    g.bench_function("plain forward, 1 thread", |b| {
        b.iter(|| plain.forward(x.view(), &Sequential).unwrap())
    });
    for (t, pool) in pools() {
        g.bench_with_input(BenchmarkId::new("threads", t), &pool, |b, p| {
            b.iter(|| piped.forward(x.view(), p).unwrap())
        });
    }
    g.finish();
}

fn task_parallel(c: &mut Criterion) {
    let layers: Vec<(String, Array2<f32>)> = (0..8)
        .map(|i| (format!("layer{i}"), rand_mat(1024, 1024, 20 + i)))
        .collect();
    let views: Vec<(String, ArrayView2<f32>)> =
        layers.iter().map(|(n, w)| (n.clone(), w.view())).collect();
    let pipeline = Pipeline::new()
        .prune(Magnitude::params(0.5).check().unwrap())
        .quantize(IntQuantizer::params(8).per_row().check().unwrap());
    let runner = TaskRunner::default();
    let mut g = c.benchmark_group("task_parallel_compress_8x1024x1024");
    g.sample_size(10);
    for (t, pool) in pools() {
        let exec: &dyn ParallelExecutor = &pool;
        g.bench_with_input(BenchmarkId::new("threads", t), &exec, |b, p| {
            b.iter(|| {
                let out = runner.compress_layers(&pipeline, &views, *p, None);
                assert!(out.iter().all(|o| o.result.is_ok()));
                out
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    control_spin,
    data_parallel,
    row_split_gemv,
    col_split_gemv,
    layer_pipeline,
    task_parallel
);
criterion_main!(benches);
