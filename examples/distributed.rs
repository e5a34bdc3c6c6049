//! Task-parallel compression and data-parallel training over ranks, timed.
//!
//! With the `mpi` feature, under `mpirun` (one thread per rank):
//!
//! ```text
//! cargo build --release --features mpi --example distributed
//! for n in 1 2; do mpirun --allow-run-as-root --oversubscribe -np $n \
//!     target/release/examples/distributed; done
//! ```
//!
//! Compresses all-MiniLM-L6-v2 (`SQUISH_MINILM_DIR`; 36 linear layers plus
//! embeddings) or, without it, a synthetic 36-layer model of the same shapes,
//! then trains an MLP for one epoch data-parallel. Rank 0 prints the wall
//! time, the time spent communicating (slowest rank; waiting for peers
//! included) and the bytes sent. Without the feature (or without
//! `mpirun`), the same code runs with threads standing in for 1 and 2 ranks.

use std::time::Instant;

use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::data::Dataset;
use squish::distributed::{self, Cluster, Communicator, Metered};
use squish::io::{Dtype, Model, Tensor};
use squish::parallel::{DataParallel, Sequential};
use squish::recipe::Recipe;
use squish::training::{Mlp, Optimizer, Trainer};

const RECIPE: &str = r#"
[[rule]]
pattern = "*embeddings*"
pipeline = [{ method = "int8" }]

[default]
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "kmeans", k = 16 }]
"#;

fn model() -> squish::Result<(Model, String)> {
    if let Some(dir) = std::env::var_os("SQUISH_MINILM_DIR") {
        let p = std::path::Path::new(&dir).join("model.safetensors");
        return Ok((Model::load(&p)?, "all-MiniLM-L6-v2".into()));
    }
    // MiniLM's linear shapes, 6 blocks: q, k, v, o, up, down.
    let mut rng = StdRng::seed_from_u64(1);
    let mut m = Model::new();
    for b in 0..6 {
        for (name, r, c) in [
            ("q", 384, 384),
            ("k", 384, 384),
            ("v", 384, 384),
            ("o", 384, 384),
            ("up", 1536, 384),
            ("down", 384, 1536),
        ] {
            let w: Vec<f32> = (0..r * c).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            m.insert(
                format!("layer.{b}.{name}.weight"),
                Tensor::float(Dtype::F32, vec![r, c], w)?,
            )?;
        }
    }
    Ok((m, "synthetic 36 × MiniLM-shaped layers".into()))
}

fn data() -> squish::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(2);
    let (n, d, k) = (8192, 256, 10);
    let centers = Array2::from_shape_fn((k, d), |_| rng.random_range(-1.0f32..1.0));
    let y: Vec<usize> = (0..n).map(|i| i % k).collect();
    let x = Array2::from_shape_fn((n, d), |(i, j)| centers[[i % k, j]] + rng.random_range(-1.0f32..1.0));
    Dataset::new(x, y, k)
}

struct Times {
    compress: f64,
    compress_comm: f64,
    compress_bytes: u64,
    train: f64,
    train_comm: f64,
    train_bytes: u64,
    crc: u32,
    loss: f64,
}

fn run<C: Communicator>(comm: &Metered<C>, model: &Model, data: &Dataset) -> squish::Result<Times> {
    let cluster = Cluster::new(comm, &Sequential);
    let recipe = Recipe::from_toml(RECIPE)?;
    comm.reset();
    let t0 = Instant::now();
    let out = distributed::compress_model(&cluster, model, &recipe)?;
    let crc = match out {
        Some(c) => crc32fast::hash(&c.model.to_bytes()?),
        None => 0,
    };
    let compress = t0.elapsed().as_secs_f64();
    let (compress_comm, compress_bytes) = (comm.seconds(), comm.bytes_sent());

    let trainer = Trainer::params()
        .epochs(1)
        .batch_size(512)
        .seed(3)
        .optimizer(Optimizer::adam(1e-3).check()?)
        .check()?;
    let dp = DataParallel::params().shard(64).check()?;
    let mut mlp = Mlp::params(&[256, 512, 256, 10]).seed(4).check()?;
    comm.reset();
    let t0 = Instant::now();
    let report = distributed::fit(&cluster, &trainer, &dp, &mut mlp, data)?;
    let train = t0.elapsed().as_secs_f64();
    Ok(Times {
        compress,
        compress_comm,
        compress_bytes,
        train,
        train_comm: comm.seconds(),
        train_bytes: comm.bytes_sent(),
        crc,
        loss: report.epoch_loss[0],
    })
}

fn report(ranks: usize, rank: usize, t: &Times, slowest_comm: (f64, f64)) {
    if rank != 0 {
        return;
    }
    println!(
        "ranks {ranks}: compress {:.3} s (communicating {:.3} s = {:.0} %, rank 0 sent {} B), container crc {:08x}",
        t.compress,
        slowest_comm.0,
        100.0 * slowest_comm.0 / t.compress,
        t.compress_bytes,
        t.crc
    );
    println!(
        "ranks {ranks}: train 1 epoch {:.3} s (communicating {:.3} s = {:.0} %, rank 0 sent {} B), loss {:.17}",
        t.train,
        slowest_comm.1,
        100.0 * slowest_comm.1 / t.train,
        t.train_bytes,
        t.loss
    );
}

#[cfg(feature = "mpi")]
fn main() -> squish::Result<()> {
    use squish::distributed::{from_bytes, to_bytes, MpiComm};
    let world = MpiComm::world()?;
    let comm = Metered::new(world.clone());
    let (model, what) = model()?;
    let data = data()?;
    if world.rank() == 0 {
        println!("model: {what}, {} tensors; 1 thread per rank", model.len());
    }
    let t = run(&comm, &model, &data)?;
    // The slowest rank's communication time.
    let all = world.all_gather(&to_bytes(&(t.compress_comm, t.train_comm)))?;
    let mut worst = (0.0f64, 0.0f64);
    for b in all {
        let (a, c): (f64, f64) = from_bytes(&b)?;
        worst = (worst.0.max(a), worst.1.max(c));
    }
    report(world.size(), world.rank(), &t, worst);
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn main() -> squish::Result<()> {
    use std::sync::Arc;
    let (model, what) = model()?;
    let data = data()?;
    println!("model: {what}, {} tensors; threads standing in for ranks (build with --features mpi and run under mpirun for processes)", model.len());
    for ranks in [1, 2] {
        let comms = distributed::LocalComm::group(ranks)?;
        let model = Arc::new(model.clone());
        let outs: Vec<squish::Result<Times>> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    let (model, data) = (Arc::clone(&model), &data);
                    s.spawn(move || run(&Metered::new(c), &model, data))
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("rank panicked")).collect()
        });
        let outs = outs.into_iter().collect::<squish::Result<Vec<_>>>()?;
        let worst = outs.iter().fold((0.0f64, 0.0f64), |w, t| (w.0.max(t.compress_comm), w.1.max(t.train_comm)));
        report(ranks, 0, &outs[0], worst);
    }
    Ok(())
}
