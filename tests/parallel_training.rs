//! Data-parallel training of the real MLP on the bundled digits: each worker
//! computes gradients on its shard, the shards are combined by the fixed-shape
//! reduction, and three epochs give bit-identical weights at 1, 2 and 3 threads.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use squish::data::digits;
use squish::parallel::{data_parallel_grad, ParallelExecutor, Sequential, ThreadPool};
use squish::training::{Gradients, Mlp, Optimizer};

/// Trains 64-32-10 for 3 epochs with Adam, batch 64 split into shards of `shard`.
fn train(exec: &dyn ParallelExecutor, shard: usize) -> (Mlp, f64) {
    let data = digits().unwrap();
    let (train, test) = (&data.train, &data.test);
    let mut mlp: Mlp = Mlp::params(&[64, 32, 10]).seed(5).check().unwrap();
    let mut opt = Optimizer::adam(1e-2).check().unwrap().state::<f32>();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = StdRng::seed_from_u64(9);
    for _epoch in 0..3 {
        order.shuffle(&mut rng);
        for batch in order.chunks(64) {
            let (x, y) = train.rows(batch);
            let n = batch.len() as f32;
            // Each shard's mean gradient, weighted by its share of the batch.
            let grads = data_parallel_grad(
                exec,
                batch.len(),
                shard,
                |r| {
                    let (_, mut g) = mlp
                        .gradients(x.slice(ndarray::s![r.clone(), ..]), &y[r.clone()])
                        .unwrap();
                    g.scale(r.len() as f32 / n);
                    Some(g)
                },
                |acc: &mut Option<Gradients>, g| match (acc.as_mut(), g) {
                    (Some(a), Some(g)) => a.add(&g).unwrap(),
                    (None, g) => *acc = g,
                    (_, None) => {}
                },
            )
            .unwrap()
            .unwrap();
            opt.step(mlp.layers_mut(), &grads).unwrap();
        }
    }
    let acc = mlp.accuracy(test.x(), test.y()).unwrap();
    (mlp, acc)
}

fn bits(m: &Mlp) -> Vec<u32> {
    m.layers()
        .iter()
        .flat_map(|l| {
            l.weight()
                .iter()
                .chain(l.bias().iter())
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn three_epochs_are_bit_identical_at_1_2_3_threads() {
    let (reference, acc) = train(&Sequential, 16);
    assert!(acc > 0.85, "the data-parallel run really trains: {acc}");
    for threads in [1, 2, 3] {
        let pool = ThreadPool::new(threads).unwrap();
        let (m, _) = train(&pool, 16);
        assert_eq!(bits(&m), bits(&reference), "{threads} threads");
    }
    // Another shard size sums in another order: the check can fail.
    let (other, _) = train(&Sequential, 64);
    assert_ne!(bits(&other), bits(&reference));
}
