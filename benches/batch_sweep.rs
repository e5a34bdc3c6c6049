//! Every value encoding against dense f32 at batch 1, 2, 4, 8, 16 and 64 on
//! a 1536 × 384 matrix (a MiniLM-sized FFN projection), one thread: no
//! encoding may be slower than dense at any batch (issue #20).
//!
//! ```text
//! cargo bench --bench batch_sweep
//! cargo bench --bench batch_sweep -- "batch 8/"    # one batch size
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::prelude::*;

const ROWS: usize = 1536;
const COLS: usize = 384;
const BATCHES: [usize; 6] = [1, 2, 4, 8, 16, 64];

fn encodings(w: &Array2<f32>) -> Vec<(&'static str, CompressedMatrix)> {
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let q = |p: &dyn Quantizer| p.quantize(&dense).unwrap();
    vec![
        ("dense f32", dense.clone()),
        (
            "int8 per-row",
            q(&IntQuantizer::params(8).per_row().check().unwrap()),
        ),
        (
            "int4 group-64",
            q(&IntQuantizer::params(4).per_group(64).check().unwrap()),
        ),
        ("binary", q(&Binary)),
        ("ternary", q(&Ternary)),
        ("codebook k=16", q(&KMeans::params(16).check().unwrap())),
    ]
}

fn batch_sweep(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(20);
    let w = Array2::from_shape_simple_fn((ROWS, COLS), || rng.random_range(-0.1f32..0.1));
    let ms = encodings(&w);
    for batch in BATCHES {
        let x = Array2::from_shape_simple_fn((batch, COLS), || rng.random_range(-1.0f32..1.0));
        let mut g = c.benchmark_group(format!("batch {batch}"));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(20);
        for (name, m) in &ms {
            g.bench_with_input(BenchmarkId::from_parameter(name), &x, |b, x| {
                b.iter(|| black_box(m.matmul(black_box(x.view())).unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, batch_sweep);
criterion_main!(benches);
