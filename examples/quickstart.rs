//! Compress a generated weight matrix through several pipelines and print the
//! per-stage report (method, bytes, ratio, error), then multiply with the
//! compressed result.
//!
//! Run: `cargo run --release --example quickstart`

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, StudentT};
use squish::metrics::ErrorMetrics;
use squish::prelude::*;
use squish::quantization::Ternary;

/// A 512×512 weight matrix shaped like a trained layer: a few strong
/// directions plus heavy-tailed noise (Student-t, ν = 3).
fn layer_like(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = Normal::new(0.0f32, 1.0).unwrap();
    let t = StudentT::new(3.0f32).unwrap();
    let u = Array2::from_shape_fn((rows, 8), |_| n.sample(&mut rng));
    let v = Array2::from_shape_fn((8, cols), |_| n.sample(&mut rng));
    let noise = Array2::from_shape_fn((rows, cols), |_| t.sample(&mut rng));
    (u.dot(&v) * 0.05 + noise * 0.02) / (cols as f32).sqrt()
}

fn main() -> squish::Result<()> {
    let w = layer_like(512, 512, 42);
    let pipelines: Vec<(&str, Pipeline)> = vec![
        (
            "int8 per row",
            Pipeline::new().quantize(IntQuantizer::params(8).per_row().check()?),
        ),
        (
            "int4 group 64",
            Pipeline::new().quantize(IntQuantizer::params(4).per_group(64).check()?),
        ),
        ("ternary", Pipeline::new().quantize(Ternary)),
        (
            "prune 50% + int8",
            Pipeline::new()
                .prune(Magnitude::params(0.5).check()?)
                .quantize(IntQuantizer::params(8).per_row().check()?),
        ),
        (
            "prune 90% + int4",
            Pipeline::new()
                .prune(Magnitude::params(0.9).check()?)
                .quantize(IntQuantizer::params(4).symmetric(false).per_row().check()?),
        ),
    ];
    let x = layer_like(4, 512, 7);
    let exact = x.dot(&w.t());
    for (name, p) in &pipelines {
        let out = p.run(w.view())?;
        println!("== {name}\n{}", out.report);
        let y = out.matrix.matmul(x.view())?;
        let e = ErrorMetrics::between(exact.view(), y.view())?;
        println!("output of x·Wᵀ through the compressed matrix: {e}\n");
    }
    Ok(())
}
