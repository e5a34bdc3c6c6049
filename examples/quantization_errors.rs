//! Relative errors ‖W − Ŵ‖_F / ‖W‖_F of each quantization scheme on a
//! Gaussian and a heavy-tailed (Student-t, ν = 3) 1024 × 1024 matrix, with
//! bits per weight (including scales and zero-points).
//!
//! Run: `cargo run --release --example quantization_errors`

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, StudentT};
use squish::metrics::ErrorMetrics;
use squish::prelude::*;
use squish::quantization::Calibration;
use squish::quantization::{Binary, Ternary};

fn main() -> Result<()> {
    let n = 1024;
    let mut rng = StdRng::seed_from_u64(42);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let t3 = StudentT::new(3.0f32).unwrap();
    let gauss = Array2::from_shape_fn((n, n), |_| normal.sample(&mut rng));
    let heavy = Array2::from_shape_fn((n, n), |_| t3.sample(&mut rng));

    let int = |bits: u8| IntQuantizer::params(bits);
    let schemes: Vec<(&str, Box<dyn Quantizer>)> = vec![
        ("int8 sym per-row min-max", Box::new(int(8).check()?)),
        (
            "int8 sym per-row MSE",
            Box::new(int(8).calibration(Calibration::mse()).check()?),
        ),
        (
            "int8 sym per-tensor",
            Box::new(int(8).per_tensor().check()?),
        ),
        ("int4 sym per-row min-max", Box::new(int(4).check()?)),
        (
            "int4 sym per-row p99.9",
            Box::new(int(4).calibration(Calibration::Percentile(99.9)).check()?),
        ),
        (
            "int4 sym per-row MSE",
            Box::new(int(4).calibration(Calibration::mse()).check()?),
        ),
        (
            "int4 sym group-128",
            Box::new(int(4).per_group(128).check()?),
        ),
        (
            "int4 asym group-128",
            Box::new(int(4).per_group(128).symmetric(false).check()?),
        ),
        (
            "int4 sym group-32 MSE",
            Box::new(
                int(4)
                    .per_group(32)
                    .calibration(Calibration::mse())
                    .check()?,
            ),
        ),
        ("ternary (TWN)", Box::new(Ternary)),
        ("binary (XNOR-Net)", Box::new(Binary)),
    ];

    println!(
        "{:<28} {:>9} {:>14} {:>14}",
        "scheme", "bits/w", "rel.err gauss", "rel.err t(3)"
    );
    for (name, q) in &schemes {
        let mut errs = Vec::new();
        let mut bits = 0.0;
        for w in [&gauss, &heavy] {
            let m = q.quantize(&CompressedMatrix::from_dense(w.view())?)?;
            bits = m.storage().total() as f64 * 8.0 / (n * n) as f64;
            errs.push(ErrorMetrics::between(w.view(), m.to_dense().view())?.rel_frobenius);
        }
        println!(
            "{name:<28} {bits:>9.3} {:>14.4e} {:>14.4e}",
            errs[0], errs[1]
        );
    }
    Ok(())
}
