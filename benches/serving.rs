//! Serving LeNet-300-100 (784-300-100-10): batch-1 and batch-256 inference
//! through the dense f32 model and its compressed forms.
//!
//! The weights are **not trained**: He-initialised (seeded) networks of the
//! right shapes, pruned by magnitude to Deep Compression's layer densities
//! (8 %, 9 %, 26 %) and shared with 32-centroid k-means, so the structures,
//! sparsities and encodings are those of the trained model in
//! `examples/deep_compression.rs` (inference cost does not depend on the
//! values). The inputs are random pixels in [0, 1]. One thread.
//!
//! ```text
//! cargo bench --bench serving -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::compression::deep::DeepCompression;
use squish::prelude::*;
use squish::quantization::Binary;
use squish::training::{CompressedMlp, Masks, Mlp};

fn models() -> Vec<(&'static str, CompressedMlp)> {
    let mlp: Mlp = Mlp::params(&[784, 300, 100, 10]).seed(7).check().unwrap();
    let dc = DeepCompression::params(&[0.08, 0.09, 0.26], &[5, 5, 5])
        .check()
        .unwrap();
    let keep = mlp
        .layers()
        .iter()
        .zip([0.92, 0.91, 0.74])
        .map(|(l, s)| {
            Some(
                Magnitude::params(s)
                    .check()
                    .unwrap()
                    .mask(l.weight())
                    .unwrap(),
            )
        })
        .collect();
    let masks = Masks::new(&mlp, keep).unwrap();
    let pruned = dc.sparse(&mlp, &masks).unwrap();
    let shared = dc.share(&pruned).unwrap();
    let int8 = IntQuantizer::params(8).per_row().check().unwrap();
    let int4 = IntQuantizer::params(4).per_group(64).check().unwrap();
    vec![
        (
            "dense f32",
            CompressedMlp::from_mlp(&mlp, &|_, m| Ok(m.clone())).unwrap(),
        ),
        ("pruned CSR f32", pruned),
        ("pruned + shared (DC)", shared),
        (
            "int8 per-row",
            CompressedMlp::from_mlp(&mlp, &|_, m| int8.quantize(m)).unwrap(),
        ),
        (
            "int4 group-64",
            CompressedMlp::from_mlp(&mlp, &|_, m| int4.quantize(m)).unwrap(),
        ),
        (
            "binary",
            CompressedMlp::from_mlp(&mlp, &|_, m| Binary.quantize(m)).unwrap(),
        ),
    ]
}

fn serving(c: &mut Criterion) {
    let models = models();
    let mut rng = StdRng::seed_from_u64(1);
    for batch in [1usize, 256] {
        let x = Array2::from_shape_fn((batch, 784), |_| rng.random_range(0.0f32..1.0));
        let mut g = c.benchmark_group(format!("lenet300_batch{batch}"));
        if batch > 1 {
            g.sample_size(10);
        }
        for (name, m) in &models {
            g.bench_with_input(BenchmarkId::from_parameter(name), &x, |b, x| {
                b.iter(|| black_box(m.forward_on(x.view(), &Sequential).unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, serving);
criterion_main!(benches);
