//! Baseline: the reference kernel of each encoding against dense f32
//! `Array2::dot` on a 1024×1024 matrix, batch 1 and 32.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::prelude::*;
use squish::quantization::{Binary, Ternary};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let w = Array2::from_shape_fn((1024, 1024), |_| rng.random_range(-1.0f32..1.0));
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let encoded = vec![
        ("f32", dense.clone()),
        (
            "int8",
            IntQuantizer::params(8)
                .per_row()
                .check()
                .unwrap()
                .quantize(&dense)
                .unwrap(),
        ),
        (
            "int4",
            IntQuantizer::params(4)
                .per_group(64)
                .check()
                .unwrap()
                .quantize(&dense)
                .unwrap(),
        ),
        ("binary", Binary.quantize(&dense).unwrap()),
        ("ternary", Ternary.quantize(&dense).unwrap()),
    ];
    let mut g = c.benchmark_group("reference_1024");
    g.sample_size(10);
    for batch in [1usize, 32] {
        let x = Array2::from_shape_fn((batch, 1024), |_| rng.random_range(-1.0f32..1.0));
        g.bench_with_input(BenchmarkId::new("dense_dot", batch), &x, |b, x| {
            b.iter(|| black_box(x.dot(&w.t())))
        });
        for (name, m) in &encoded {
            g.bench_with_input(BenchmarkId::new(*name, batch), &x, |b, x| {
                b.iter(|| black_box(m.matmul_reference(x.view()).unwrap()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
