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
//! Compresses two synthetic encoders (MiniLM's 36 linear layers of width 384,
//! BERT-base's 72 of width 768) and all-MiniLM-L6-v2 itself when
//! `SQUISH_MINILM_DIR` is set (36 linear layers plus embeddings, the word
//! embeddings half of all weights), writing the container; then trains an
//! MLP for one epoch data-parallel. Rank 0 prints the wall
//! time, the time spent communicating (slowest rank; waiting for peers
//! included) and the bytes sent. Without the feature (or without
//! `mpirun`), the same code runs with threads standing in for 1 and 2 ranks.

use std::time::Instant;

use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::data::Dataset;
use squish::distributed::{self, Cluster, Communicator, Metered, Wire, WritePhases};
use squish::io::{Dtype, Model, Tensor};
use squish::parallel::{DataParallel, Sequential};
use squish::recipe::Recipe;
use squish::training::{Mlp, Optimizer, Trainer};

/// Every linear layer pruned to half and shared over 16 values.
const RECIPE: &str = r#"
[default]
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "kmeans", k = 16 }]
"#;

/// Every linear layer shared over 16 values (4-bit codes): compute-bound,
/// a quarter of the output bytes of the recipe above.
const KMEANS_RECIPE: &str = r#"
[default]
pipeline = [{ method = "kmeans", k = 16 }]
"#;

/// MiniLM: the same, and int8 embeddings.
const MINILM_RECIPE: &str = r#"
[[rule]]
pattern = "*embeddings*"
pipeline = [{ method = "int8" }]

[default]
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "kmeans", k = 16 }]
"#;

/// The synthetic encoders, and all-MiniLM-L6-v2 when
/// `SQUISH_MINILM_DIR` is set.
fn models() -> squish::Result<Vec<(Model, String, &'static str)>> {
    let mut out = Vec::new();
    for (blocks, d) in [(6, 384), (12, 768)] {
        if wanted(&synthetic_name(blocks, d)) {
            let (m, what) = synthetic(blocks, d)?;
            out.push((m, what, RECIPE));
        }
    }
    let what = format!("{}, k-means only", synthetic_name(12, 768));
    if wanted(&what) {
        out.push((synthetic(12, 768)?.0, what, KMEANS_RECIPE));
    }
    if let (Some(dir), true) = (
        std::env::var_os("SQUISH_MINILM_DIR"),
        wanted("all-MiniLM-L6-v2"),
    ) {
        let p = std::path::Path::new(&dir).join("model.safetensors");
        out.push((Model::load(&p)?, "all-MiniLM-L6-v2".into(), MINILM_RECIPE));
    }
    Ok(out)
}

/// What the training case is called.
const TRAIN: &str = "train 1 epoch (MLP 256-512-256-10, 8192 rows)";

/// `SQUISH_BENCH_ONLY=TEXT` runs only the cases whose name contains TEXT
/// (e.g. `72 layers, width 768` for the two BERT-base-shaped cases).
fn wanted(what: &str) -> bool {
    match std::env::var("SQUISH_BENCH_ONLY") {
        Ok(only) => what.contains(&only),
        Err(_) => true,
    }
}

fn synthetic_name(blocks: usize, d: usize) -> String {
    format!("synthetic {} layers, width {d}", 6 * blocks)
}

/// An encoder's linear layers: `blocks` × (q, k, v, o, up, down), width
/// `d` (MiniLM: 6 × 384; BERT-base: 12 × 768).
fn synthetic(blocks: usize, d: usize) -> squish::Result<(Model, String)> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut m = Model::new();
    for b in 0..blocks {
        for (name, r, c) in [
            ("q", d, d),
            ("k", d, d),
            ("v", d, d),
            ("o", d, d),
            ("up", 4 * d, d),
            ("down", d, 4 * d),
        ] {
            let w: Vec<f32> = (0..r * c).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            m.insert(
                format!("layer.{b}.{name}.weight"),
                Tensor::float(Dtype::F32, vec![r, c], w)?,
            )?;
        }
    }
    Ok((m, synthetic_name(blocks, d)))
}

fn data() -> squish::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(2);
    let (n, d, k) = (8192, 256, 10);
    let centers = Array2::from_shape_fn((k, d), |_| rng.random_range(-1.0f32..1.0));
    let y: Vec<usize> = (0..n).map(|i| i % k).collect();
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        centers[[i % k, j]] + rng.random_range(-1.0f32..1.0)
    });
    Dataset::new(x, y, k)
}

/// One rank's times (seconds) and bytes sent.
#[derive(Clone, Copy, Default)]
struct Phase {
    wall: f64,
    comm: f64,
    bytes: u64,
    cpu: f64,
}

/// This process's CPU time in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (clock ticks of 1/100 s); the
    // state, field 3, comes first after the name.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

impl Wire for Phase {
    fn encode(&self, out: &mut Vec<u8>) {
        ((self.wall, self.cpu), (self.comm, self.bytes)).encode(out);
    }
    fn decode(input: &mut squish::distributed::Reader<'_>) -> squish::Result<Self> {
        let ((wall, cpu), (comm, bytes)) = <((f64, f64), (f64, u64))>::decode(input)?;
        Ok(Phase {
            wall,
            comm,
            bytes,
            cpu,
        })
    }
}

/// Compresses `model` and writes the container, timed; rank 0 also returns
/// the file's CRC and where its time went.
fn compress<C: Communicator>(
    comm: &Metered<C>,
    model: &Model,
    recipe: &str,
) -> squish::Result<(Phase, u32, Option<WritePhases>)> {
    let cluster = Cluster::new(comm, &Sequential);
    let recipe = Recipe::from_toml(recipe)?;
    let path = std::env::temp_dir().join(format!("squish-bench-{}.squish", std::process::id()));
    comm.reset();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let report = distributed::compress_to_file(&cluster, model, &recipe, &path)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let crc = if cluster.is_root() {
        let c = crc32fast::hash(&std::fs::read(&path).expect("rank 0 wrote it"));
        std::fs::remove_file(&path).ok();
        c
    } else {
        0
    };
    Ok((
        Phase {
            wall,
            comm: comm.seconds(),
            bytes: comm.bytes_sent(),
            cpu,
        },
        crc,
        report.map(|r| r.phases),
    ))
}

/// Rank 0's time per phase, and the serial part: exchange, layout,
/// collect and sync (waiting for the slowest rank included). Compression
/// and the positioned writes are shared over the ranks. At one rank, the
/// serial fraction `s` bounds the speedup at 2 ranks by Amdahl's law,
/// 1 / (s + (1 − s)/2).
fn print_write_phases(ranks: usize, p: &WritePhases) {
    let t = p.total();
    let serial = t - p.compute - p.write;
    let s = serial / t;
    let amdahl = if ranks == 1 {
        format!(
            "; Amdahl bound at 2 ranks {:.2}×",
            1.0 / (s + (1.0 - s) / 2.0)
        )
    } else {
        String::new()
    };
    println!(
        "         rank 0: compute {:.3} s, exchange (waiting for the slowest rank) {:.3} s, layout {:.3} s, write {:.3} s, collect {:.3} s, sync + rename {:.3} s; serial {:.3} s = {:.1} %{amdahl}",
        p.compute, p.exchange, p.layout, p.write, p.collect, p.sync, serial, 100.0 * s
    );
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
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let report = distributed::fit(&cluster, &trainer, &dp, &mut mlp, data)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    Ok((
        Phase {
            wall,
            comm: comm.seconds(),
            bytes: comm.bytes_sent(),
            cpu,
        },
        report.epoch_loss[0],
    ))
}

/// Prints a phase from every rank's numbers: wall time of the slowest rank,
/// and its share spent communicating (waiting for peers included).
fn print_phase(ranks: usize, what: &str, all: &[Phase], result: &str) {
    let slowest = all
        .iter()
        .copied()
        .fold(Phase::default(), |a, p| if p.wall > a.wall { p } else { a });
    let max_comm = all.iter().map(|p| p.comm).fold(0.0, f64::max);
    let bytes: u64 = all.iter().map(|p| p.bytes).sum();
    let cpus: Vec<String> = all.iter().map(|p| format!("{:.2}", p.cpu)).collect();
    println!(
        "ranks {ranks}: {what:45} {:7.3} s (CPU s per rank: {})   communicating ≤ {:6.3} s ({:4.1} % of the slowest rank)   {:>10} B sent   {result}",
        slowest.wall,
        cpus.join(" "),
        max_comm,
        100.0 * max_comm / slowest.wall,
        bytes,
    );
}

/// `SQUISH_LAYER_TIMES=1`: each layer's compression time next to its
/// estimated cost (to check the cost model), on one thread; then how the
/// cost-based assignment shares the measured times over 2 ranks.
fn layer_times(model: &Model, recipe: &str) -> squish::Result<()> {
    let recipe = Recipe::from_toml(recipe)?;
    let (mut costs, mut times) = (Vec::new(), Vec::new());
    for (name, t) in model.iter() {
        let Some(w) = t.matrix() else { continue };
        let c = recipe.choose(name);
        if c == squish::recipe::Choice::Keep {
            continue;
        }
        let p = recipe.pipeline(c)?;
        let t0 = Instant::now();
        p.run_on(w, &Sequential)?;
        let dt = t0.elapsed().as_secs_f64();
        let cost = distributed::layer_cost(recipe.methods(c), w.nrows(), w.ncols());
        println!(
            "{name:50} {:>5}x{:<5} {:8.1} ms  cost {:>11}  ns/cost {:.2}",
            w.nrows(),
            w.ncols(),
            dt * 1e3,
            cost,
            dt * 1e9 / cost as f64
        );
        costs.push(cost);
        times.push(dt);
    }
    let owners = distributed::assign_by_cost(&costs, 2);
    let mut load = [0.0f64; 2];
    for (&r, &t) in owners.iter().zip(&times) {
        load[r] += t;
    }
    let total: f64 = times.iter().sum();
    println!(
        "2 ranks by cost: {:.3} s + {:.3} s of {total:.3} s measured; makespan {:.1} % above an even split",
        load[0],
        load[1],
        100.0 * (load[0].max(load[1]) / (total / 2.0) - 1.0)
    );
    Ok(())
}

#[cfg(feature = "mpi")]
fn main() -> squish::Result<()> {
    use squish::distributed::{from_bytes, to_bytes, MpiComm};
    let world = MpiComm::world()?;
    let comm = Metered::new(world.clone());
    let models = models()?;
    if std::env::var_os("SQUISH_LAYER_TIMES").is_some() {
        return models.iter().try_for_each(|(m, _, r)| layer_times(m, r));
    }
    let (n, root) = (world.size(), world.rank() == 0);
    let gather = |p: Phase| -> squish::Result<Vec<Phase>> {
        world
            .all_gather(&to_bytes(&p))?
            .iter()
            .map(|b| from_bytes(b))
            .collect()
    };
    for (model, what, recipe) in &models {
        let (p, crc, phases) = compress(&comm, model, recipe)?;
        let all = gather(p)?;
        if root {
            print_phase(
                n,
                &format!("compress + write {what}"),
                &all,
                &format!("crc {crc:08x}"),
            );
        }
        if let Some(phases) = phases {
            print_write_phases(n, &phases);
        }
    }
    if wanted(TRAIN) {
        let data = data()?;
        let (p, loss) = train(&comm, &data)?;
        let all = gather(p)?;
        if root {
            print_phase(n, TRAIN, &all, &format!("loss {loss:.17}"));
        }
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn main() -> squish::Result<()> {
    use std::sync::Arc;
    let models = models()?;
    if std::env::var_os("SQUISH_LAYER_TIMES").is_some() {
        return models.iter().try_for_each(|(m, _, r)| layer_times(m, r));
    }
    let data = data()?;
    println!("threads standing in for ranks; CPU seconds are the whole process's (build with --features mpi and run under mpirun for processes)");
    for ranks in [1, 2] {
        let comms = distributed::LocalComm::group(ranks)?;
        let models = Arc::new(&models);
        type Outs = Vec<(Phase, String, Option<WritePhases>)>;
        let outs: Vec<squish::Result<Outs>> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    let (models, data) = (Arc::clone(&models), &data);
                    s.spawn(move || {
                        let m = Metered::new(c);
                        let mut out = Vec::new();
                        for (model, _, recipe) in models.iter() {
                            let (p, crc, phases) = compress(&m, model, recipe)?;
                            out.push((p, format!("crc {crc:08x}"), phases));
                        }
                        if wanted(TRAIN) {
                            let (p, loss) = train(&m, data)?;
                            out.push((p, format!("loss {loss:.17}"), None));
                        }
                        Ok(out)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("rank panicked"))
                .collect()
        });
        let outs = outs.into_iter().collect::<squish::Result<Vec<_>>>()?;
        let names: Vec<String> = models
            .iter()
            .map(|(_, w, _)| format!("compress + write {w}"))
            .chain(wanted(TRAIN).then(|| TRAIN.to_string()))
            .collect();
        for (k, name) in names.iter().enumerate() {
            let all: Vec<Phase> = outs.iter().map(|o| o[k].0).collect();
            print_phase(ranks, name, &all, &outs[0][k].1);
            if let Some(p) = &outs[0][k].2 {
                print_write_phases(ranks, p);
            }
        }
    }
    Ok(())
}
