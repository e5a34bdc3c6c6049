use std::time::Instant;
use ndarray::Array2;
use squish::matrix::CompressedMatrix;
use squish::nn::gemm::linear_f32;
use squish::parallel::{Sequential, ThreadPool, ParallelExecutor};
use squish::prelude::*;
use squish::quantization::DynamicInt8;

fn t<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..7 { let s = Instant::now(); f(); best = best.min(s.elapsed().as_secs_f64()*1e3); }
    best
}
fn main() {
    let pool = ThreadPool::new(2).unwrap();
    for &(m, n, k) in &[(32usize, 384usize, 384usize), (32, 1536, 384), (32, 384, 1536), (1000, 384, 384), (1000, 1536, 384), (1000, 384, 1536)] {
        let x = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 17) % 23) as f32 / 11.0 - 1.0);
        let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 13) % 19) as f32 / 9.0 - 1.0);
        let gflop = 2.0 * (m * n * k) as f64 / 1e9;
        let execs: [(&str, &dyn ParallelExecutor); 2] = [("seq", &Sequential), ("2t", &pool)];
        for (en, e) in execs {
            let a = t(|| { std::hint::black_box(linear_f32(x.view(), w.view(), None, e)); });
            let b = t(|| { std::hint::black_box(squish::parallel::dense_matmul(w.view(), x.view(), e).unwrap()); });
            let q = IntQuantizer::params(8).check().unwrap().quantize(&CompressedMatrix::from_dense(w.view()).unwrap()).unwrap();
            let d = DynamicInt8::new(q.clone()).unwrap();
            let c = t(|| { std::hint::black_box(d.matmul(x.view(), e).unwrap()); });
            let wo = t(|| { std::hint::black_box(q.matmul_with(x.view(), e).unwrap()); });
            println!("{m}x{n}x{k} {en}: gemm {a:.3} ms ({:.1} GF/s) ndarray {b:.3} ms  dyn-int8 {c:.3} ms  int8-wo {wo:.3} ms", gflop / a * 1e3);
        }
    }
}
