//! Wall and CPU time of GPTQ int4 group-128 and SparseGPT 50 % on a
//! 4096 × 4096 layer with a 4096² Hessian, on 2 threads. CPU time / 2 is a
//! fair estimate of the idle-machine wall time when the machine is loaded.
//!
//! `cargo run --release --example calibration_speed [n]`

use std::time::Instant;

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use squish::matrix::InverseHessian;
use squish::parallel::ThreadPool;
use squish::pruning::SparseGpt;
use squish::quantization::Gptq;

/// Process CPU seconds (user + system) from /proc/self/stat (Linux).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

fn time<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let (w, c) = (Instant::now(), cpu_seconds());
    let r = f();
    println!(
        "{what}: wall {:.2} s, cpu {:.2} s",
        w.elapsed().as_secs_f64(),
        cpu_seconds() - c
    );
    r
}

fn main() -> squish::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4096);
    let mut rng = StdRng::seed_from_u64(1);
    let d = Normal::new(0.0f32, 1.0).unwrap();
    let w = Array2::from_shape_fn((n, n), |_| d.sample(&mut rng) * 0.05);
    let b = Array2::from_shape_fn((n, 256), |_| d.sample(&mut rng) as f64);
    let mut h = b.dot(&b.t());
    for j in 0..n {
        h[[j, j]] += 1.0 + (j % 17) as f64;
    }
    let pool = ThreadPool::new(2)?;
    time("inverse Hessian factor", || {
        InverseHessian::new(h.view(), 0.01, None)
    })?;
    let q = Gptq::params(4).per_group(128).check()?;
    time("GPTQ int4 g128, 2 threads", || {
        q.quantize(w.view(), h.view(), &pool)
    })?;
    let p = SparseGpt::unstructured(0.5).check()?;
    time("SparseGPT 50%, 2 threads", || {
        p.prune(w.view(), h.view(), &pool)
    })?;
    Ok(())
}
