//! Test-only references for the optimal-brain-surgeon methods (the
//! inverse-Hessian factor, GPTQ, SparseGPT): naive f64 algebra that does
//! not share code with what it checks, and the inputs the tests draw.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Naive Gauss-Jordan inverse in f64 with partial pivoting (independent
/// of faer and of the Cholesky factor under test).
pub(crate) fn inverse(a: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut m = a.clone();
    let mut inv = Array2::<f64>::eye(n);
    for c in 0..n {
        let p = (c..n)
            .max_by(|&x, &y| m[[x, c]].abs().total_cmp(&m[[y, c]].abs()))
            .expect("a non-empty column");
        for k in 0..n {
            m.swap([c, k], [p, k]);
            inv.swap([c, k], [p, k]);
        }
        let d = m[[c, c]];
        for k in 0..n {
            m[[c, k]] /= d;
            inv[[c, k]] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[[r, c]];
                for k in 0..n {
                    m[[r, k]] -= f * m[[c, k]];
                    inv[[r, k]] -= f * inv[[c, k]];
                }
            }
        }
    }
    inv
}

/// A `rows × cols` weight, uniform in [-1, 1) from ChaCha8 (`seed`).
pub(crate) fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0f32))
}

/// Calibration inputs with strongly correlated features: `X = Z·M` plus
/// a little noise, `samples × n`.
pub(crate) fn correlated_x(samples: usize, n: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = n / 3 + 1;
    let z = Array2::from_shape_fn((samples, k), |_| rng.random_range(-1.0..1.0f64));
    let m = Array2::from_shape_fn((k, n), |_| rng.random_range(-1.0..1.0f64));
    let noise = Array2::from_shape_fn((samples, n), |_| rng.random_range(-0.05..0.05f64));
    z.dot(&m) + noise
}

/// `tr((W − Ŵ) H (W − Ŵ)ᵀ) = ‖X(W − Ŵ)ᵀ‖²`, naive f64: the calibration
/// objective the OBS methods minimise.
pub(crate) fn objective(w: &Array2<f32>, wq: &Array2<f32>, h: &Array2<f64>) -> f64 {
    let d = (w - wq).mapv(f64::from);
    (d.dot(h) * &d).sum()
}
