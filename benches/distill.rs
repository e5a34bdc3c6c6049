//! KD loss + gradient on 4096×1000 logits (PyTorch autograd: 141 ms here),
//! and one training epoch of the digits teacher.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use squish::data::digits;
use squish::distillation::{soft_target_reference, Distiller, SoftTarget};
use squish::parallel::ThreadPool;
use squish::training::{Mlp, Optimizer, Trainer};

fn kd(c: &mut Criterion) {
    let (b, k) = (4096, 1000);
    let s = Array2::from_shape_fn((b, k), |(i, j)| {
        ((i * 31 + j * 17) % 113) as f32 / 11.0 - 5.0
    });
    let t = Array2::from_shape_fn((b, k), |(i, j)| {
        ((i * 13 + j * 29) % 127) as f32 / 12.0 - 5.0
    });
    let y: Vec<usize> = (0..b).map(|i| (i * 7) % k).collect();
    let kd = SoftTarget::params(4.0).alpha(0.9).check().unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let mut g = c.benchmark_group("kd_loss_grad_4096x1000");
    g.sample_size(10);
    g.bench_function("squish 1 thread", |bch| {
        bch.iter(|| kd.loss_and_grad(s.view(), t.view(), &y).unwrap())
    });
    g.bench_function("squish 2 threads", |bch| {
        bch.iter(|| kd.loss_and_grad_on(s.view(), t.view(), &y, &pool).unwrap())
    });
    g.bench_function("plain reference (ndarray softmax)", |bch| {
        bch.iter(|| soft_target_reference(s.view(), t.view(), &y, 4.0, 0.9).unwrap())
    });
    g.finish();
}

fn epoch(c: &mut Criterion) {
    let d = digits().unwrap();
    let t = Trainer::params()
        .epochs(1)
        .batch_size(32)
        .optimizer(Optimizer::adam(1e-3).check().unwrap())
        .check()
        .unwrap();
    let mut g = c.benchmark_group("digits_teacher_epoch");
    g.sample_size(10);
    g.bench_function("64-256-256-10, batch 32, 1437 rows", |bch| {
        bch.iter(|| {
            let mut m: Mlp = Mlp::params(&[64, 256, 256, 10]).check().unwrap();
            t.fit(&mut m, &d.train).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, kd, epoch);
criterion_main!(benches);
