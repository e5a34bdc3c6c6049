//! Pruning benches; every case is compared with its dense baseline in the
//! same run (read the ratios, not the absolute times).
//!
//! * `select_16M`: 90% magnitude threshold over 16M weights vs a full sort of |w|.
//! * `gemv_4096` and `batch32_4096`: CSR at 50/10/5% density, 2:4 and kept
//!   rows at 50% against dense f32 (ndarray's GEMM, the crate's dense path,
//!   and the same row kernels run on all rows).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use squish::kernels::sparse::sparse_matmul;
use squish::kernels::Tier as KernelPath;
use squish::matrix::CompressedMatrix;
use squish::parallel::Sequential;
use squish::pruning::{Magnitude, NMPruner, Pruner, Selection, Structured};

fn normal(rng: &mut StdRng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(rng))
}

fn select(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let w = normal(&mut rng, 4096, 4096);
    let data = w.as_slice().unwrap();
    let count = (0.9 * data.len() as f64) as usize;
    let mut g = c.benchmark_group("select_16M");
    g.sample_size(10);
    g.bench_function("full_sort", |b| {
        b.iter(|| {
            let mut a: Vec<f32> = data.iter().map(|v| v.abs()).collect();
            a.sort_unstable_by(f32::total_cmp);
            a[count - 1]
        })
    });
    g.bench_function("selection", |b| {
        b.iter(|| Selection::smallest(&[data], count))
    });
    let p = Magnitude::params(0.9).check().unwrap();
    g.bench_function("magnitude_mask", |b| b.iter(|| p.mask(w.view()).unwrap()));
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let n = 4096;
    let w = normal(&mut rng, n, n);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let path = KernelPath::detect();
    let all = Array2::from_elem((n, n), true);
    // Dense f32 through the same row kernels kept rows uses (all rows kept).
    let all_rows = CompressedMatrix::kept_rows(w.view(), (0..n as u32).collect()).unwrap();
    let csr_full = CompressedMatrix::csr_from_mask(w.view(), all.view()).unwrap();
    let mut cases: Vec<(String, CompressedMatrix)> = [0.5, 0.1, 0.05]
        .iter()
        .map(|&d| {
            let p = Magnitude::params(1.0 - d).check().unwrap();
            (format!("csr_{:.0}%", d * 100.0), p.prune(&dense).unwrap())
        })
        .collect();
    cases.push((
        "nm_2of4".into(),
        NMPruner::params(2, 4)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap(),
    ));
    cases.push((
        "kept_rows_50%".into(),
        Structured::params(0.5)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap(),
    ));
    for batch in [1usize, 32] {
        let x = normal(&mut rng, batch, n);
        let name = if batch == 1 {
            "gemv_4096"
        } else {
            "batch32_4096"
        };
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.bench_function("dense_f32_ndarray", |b| {
            b.iter(|| dense.matmul(x.view()).unwrap())
        });
        g.bench_function("dense_f32_rows", |b| {
            b.iter(|| sparse_matmul(&all_rows, x.view(), &Sequential, path).unwrap())
        });
        g.bench_function("csr_100%", |b| {
            b.iter(|| sparse_matmul(&csr_full, x.view(), &Sequential, path).unwrap())
        });
        for (label, m) in &cases {
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| sparse_matmul(m, x.view(), &Sequential, path).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, select, matmul);
criterion_main!(benches);
