//! Low-rank benches: exact vs randomized rank-64 SVD, factored vs dense
//! matmul. Compare times within one run (same machine load) as ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use squish::compression::lowrank::{RandomizedSvd, Svd, SvdBackend};
use squish::matrix::CompressedMatrix;
use squish::parallel::Sequential;

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut rng))
}

/// A weight-like matrix: Gaussian with a decaying spectrum (columns scaled).
fn weights(n: usize) -> Array2<f32> {
    let mut w = gaussian(n, n, 1);
    for (j, mut c) in w.columns_mut().into_iter().enumerate() {
        c *= 1.0 / (1.0 + j as f32 / 32.0);
    }
    w
}

fn svd(c: &mut Criterion) {
    let mut g = c.benchmark_group("svd_rank64");
    g.sample_size(10);
    let rsvd = RandomizedSvd::params(64).check().unwrap();
    for n in [1024, 2048] {
        let w = weights(n);
        g.bench_with_input(BenchmarkId::new("exact_faer", n), &w, |b, w| {
            b.iter(|| {
                Svd::exact(w.view(), SvdBackend::Faer)
                    .unwrap()
                    .truncate(64)
                    .unwrap()
            })
        });
        #[cfg(feature = "lapack")]
        g.bench_with_input(BenchmarkId::new("exact_lapack", n), &w, |b, w| {
            b.iter(|| {
                Svd::exact(w.view(), SvdBackend::Lapack)
                    .unwrap()
                    .truncate(64)
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("randomized", n), &w, |b, w| {
            b.iter(|| rsvd.compute(w.view(), &Sequential).unwrap())
        });
    }
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let (n, r) = (4096, 256);
    let dense = CompressedMatrix::from_dense(gaussian(n, n, 2).view()).unwrap();
    let factored = CompressedMatrix::low_rank(
        CompressedMatrix::from_dense(gaussian(n, r, 3).view()).unwrap(),
        CompressedMatrix::from_dense(gaussian(r, n, 4).view()).unwrap(),
    )
    .unwrap();
    let mut g = c.benchmark_group("matmul_4096_r256");
    g.sample_size(10);
    for batch in [1, 64] {
        let x = gaussian(batch, n, 5);
        g.bench_with_input(BenchmarkId::new("dense", batch), &x, |b, x| {
            b.iter(|| dense.matmul(x.view()).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("factored", batch), &x, |b, x| {
            b.iter(|| factored.matmul(x.view()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, svd, matmul);
criterion_main!(benches);
