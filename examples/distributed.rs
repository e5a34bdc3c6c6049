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
use squish::distributed::{self, Cluster, Communicator, Metered, Wire};
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

/// The synthetic 36-layer model, and all-MiniLM-L6-v2 when
/// `SQUISH_MINILM_DIR` is set.
fn models() -> squish::Result<Vec<(Model, String)>> {
    let mut out = vec![synthetic()?];
    if let Some(dir) = std::env::var_os("SQUISH_MINILM_DIR") {
        let p = std::path::Path::new(&dir).join("model.safetensors");
        out.push((Model::load(&p)?, "all-MiniLM-L6-v2".into()));
    }
    Ok(out)
}

fn synthetic() -> squish::Result<(Model, String)> {
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
    Ok((m, "synthetic: MiniLM's 36 linear layers".into()))
}

fn data() -> squish::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(2);
    let (n, d, k) = (8192, 256, 10);
    let centers = Array2::from_shape_fn((k, d), |_| rng.random_range(-1.0f32..1.0));
    let y: Vec<usize> = (0..n).map(|i| i % k).collect();
    let x = Array2::from_shape_fn((n, d), |(i, j)| centers[[i % k, j]] + rng.random_range(-1.0f32..1.0));
    Dataset::new(x, y, k)
}

/// One rank's times (seconds) and bytes sent.
#[derive(Clone, Copy, Default)]
struct Phase {
    wall: f64,
    comm: f64,
    bytes: u64,
}

impl Wire for Phase {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.wall, (self.comm, self.bytes)).encode(out);
    }
    fn decode(input: &mut squish::distributed::Reader<'_>) -> squish::Result<Self> {
        let (wall, (comm, bytes)) = <(f64, (f64, u64))>::decode(input)?;
        Ok(Phase { wall, comm, bytes })
    }
}

/// Compresses `model` and writes the container (rank 0), timed.
fn compress<C: Communicator>(comm: &Metered<C>, model: &Model) -> squish::Result<(Phase, u32)> {
    let cluster = Cluster::new(comm, &Sequential);
    let recipe = Recipe::from_toml(RECIPE)?;
    let path = std::env::temp_dir().join(format!("squish-bench-{}.squish", std::process::id()));
    comm.reset();
    let t0 = Instant::now();
    distributed::compress_to_file(&cluster, model, &recipe, &path)?;
    let wall = t0.elapsed().as_secs_f64();
    let crc = if cluster.is_root() {
        let c = crc32fast::hash(&std::fs::read(&path).expect("rank 0 wrote it"));
        std::fs::remove_file(&path).ok();
        c
    } else {
        0
    };
    Ok((Phase { wall, comm: comm.seconds(), bytes: comm.bytes_sent() }, crc))
}

/// One epoch of data-parallel training, timed.
fn train<C: Communicator>(comm: &Metered<C>, data: &Dataset) -> squish::Result<(Phase, f64)> {
    let cluster = Cluster::new(comm, &Sequential);
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
    let wall = t0.elapsed().as_secs_f64();
    Ok((Phase { wall, comm: comm.seconds(), bytes: comm.bytes_sent() }, report.epoch_loss[0]))
}

/// Prints a phase from every rank's numbers: wall time of the slowest rank,
/// and its share spent communicating (waiting for peers included).
fn print_phase(ranks: usize, what: &str, all: &[Phase], result: &str) {
    let slowest = all.iter().copied().fold(Phase::default(), |a, p| if p.wall > a.wall { p } else { a });
    let max_comm = all.iter().map(|p| p.comm).fold(0.0, f64::max);
    let bytes: u64 = all.iter().map(|p| p.bytes).sum();
    println!(
        "ranks {ranks}: {what:45} {:7.3} s   communicating ≤ {:6.3} s ({:4.1} % of the slowest rank)   {:>10} B sent   {result}",
        slowest.wall,
        max_comm,
        100.0 * max_comm / slowest.wall,
        bytes,
    );
}

/// `SQUISH_LAYER_TIMES=1`: each layer's compression time next to its
/// estimated cost (to check the cost model), on one thread.
fn layer_times(model: &Model) -> squish::Result<()> {
    let recipe = Recipe::from_toml(RECIPE)?;
    for (name, t) in model.iter() {
        let Some(w) = t.matrix() else { continue };
        let c = recipe.choose(name);
        if c == squish::recipe::Choice::Keep {
            continue;
        }
        let p = recipe.pipeline(c)?;
        let t0 = Instant::now();
        p.run_with(w, &Sequential)?;
        let cost = distributed::layer_cost(recipe.methods(c), w.nrows(), w.ncols());
        println!(
            "{name:50} {:>5}x{:<5} {:8.1} ms  cost {:>11}  ns/cost {:.2}",
            w.nrows(),
            w.ncols(),
            t0.elapsed().as_secs_f64() * 1e3,
            cost,
            t0.elapsed().as_secs_f64() * 1e9 / cost as f64
        );
    }
    Ok(())
}

#[cfg(feature = "mpi")]
fn main() -> squish::Result<()> {
    use squish::distributed::{from_bytes, to_bytes, MpiComm};
    let world = MpiComm::world()?;
    let comm = Metered::new(world.clone());
    let models = models()?;
    if std::env::var_os("SQUISH_LAYER_TIMES").is_some() {
        return models.iter().try_for_each(|(m, _)| layer_times(m));
    }
    let (n, root) = (world.size(), world.rank() == 0);
    let gather = |p: Phase| -> squish::Result<Vec<Phase>> {
        world.all_gather(&to_bytes(&p))?.iter().map(|b| from_bytes(b)).collect()
    };
    for (model, what) in &models {
        let (p, crc) = compress(&comm, model)?;
        let all = gather(p)?;
        if root {
            print_phase(n, &format!("compress + write {what}"), &all, &format!("crc {crc:08x}"));
        }
    }
    let data = data()?;
    let (p, loss) = train(&comm, &data)?;
    let all = gather(p)?;
    if root {
        print_phase(n, "train 1 epoch (MLP 256-512-256-10, 8192 rows)", &all, &format!("loss {loss:.17}"));
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn main() -> squish::Result<()> {
    use std::sync::Arc;
    let models = models()?;
    if std::env::var_os("SQUISH_LAYER_TIMES").is_some() {
        return models.iter().try_for_each(|(m, _)| layer_times(m));
    }
    let data = data()?;
    println!("threads standing in for ranks (build with --features mpi and run under mpirun for processes)");
    for ranks in [1, 2] {
        let comms = distributed::LocalComm::group(ranks)?;
        let models = Arc::new(&models);
        let outs: Vec<squish::Result<Vec<(Phase, String)>>> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    let (models, data) = (Arc::clone(&models), &data);
                    s.spawn(move || {
                        let m = Metered::new(c);
                        let mut out = Vec::new();
                        for (model, _) in models.iter() {
                            let (p, crc) = compress(&m, model)?;
                            out.push((p, format!("crc {crc:08x}")));
                        }
                        let (p, loss) = train(&m, data)?;
                        out.push((p, format!("loss {loss:.17}")));
                        Ok(out)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("rank panicked")).collect()
        });
        let outs = outs.into_iter().collect::<squish::Result<Vec<_>>>()?;
        let names: Vec<String> = models
            .iter()
            .map(|(_, w)| format!("compress + write {w}"))
            .chain(["train 1 epoch (MLP 256-512-256-10, 8192 rows)".to_string()])
            .collect();
        for (k, name) in names.iter().enumerate() {
            let all: Vec<Phase> = outs.iter().map(|o| o[k].0).collect();
            print_phase(ranks, name, &all, &outs[0][k].1);
        }
    }
    Ok(())
}
