//! Deep Compression (Han, Mao & Dally 2016) end to end, with the crate's
//! other compressions and a distilled student on the same accuracy-vs-bytes
//! axes.
//!
//! ```text
//! cargo run --release --example deep_compression                # Fashion-MNIST, 3 seeds
//! cargo run --release --example deep_compression -- --seeds 1   # one seed (CI)
//! cargo run --release --example deep_compression -- --digits    # UCI digits, 64-100-10
//! cargo run --release --example deep_compression -- --svg out.svg
//! ```
//!
//! LeNet-300-100 (784-300-100-10, ReLU) on Fashion-MNIST (or 64-100-10 on
//! the bundled digits when the Fashion files are absent). Per seed:
//! 1. dense training (Adam);
//! 2. Deep Compression: gradual magnitude pruning to the paper's layer
//!    densities (8 %, 9 %, 26 %) with masked fine-tuning; k-means sharing of
//!    the survivors (linear init) and centroid fine-tuning; Huffman coding
//!    of relative positions and indices;
//! 3. the dense model under int8 per-row, int4 group-64, binary (with
//!    straight-through fine-tuning) and low-rank (energy 0.9);
//! 4. a small student (784-h-10, about 1/40 of the dense bytes) trained with
//!    soft targets from the dense model;
//! 5. teacher-guided recovery (`distillation::Recovery`) of the low-rank,
//!    int4 and binary forms: each fine-tuned in its compressed form with the
//!    dense model's soft targets (T = 4, α = 0.9); binary keeps the dense
//!    weights as its straight-through latent copies. `examples/distill_pays.rs`
//!    has the full comparison (5 seeds, with and without the teacher).
//!
//! Every size is an exact storage report of the crate (weights, headers and
//! f32 biases); every accuracy is measured through the compressed kernels.
//! Seeds run in parallel (one per core); serving is timed afterwards on one
//! thread with the seed-0 models.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::{s, ArrayView2};
use plotters::prelude::*;
use squish::compression::deep::{dense_bytes, DeepCompression};
use squish::compression::lowrank::{LowRank, RankSelection};
use squish::data::{digits, fashion_mnist, Split};
use squish::distillation::{distill, Recovery, SoftTarget};
use squish::prelude::*;
use squish::quantization::Binary;
use squish::training::{CompressedMlp, Mlp, Optimizer, StraightThrough, Trainer};

/// Hyperparameters of one data set.
struct Setup {
    name: &'static str,
    sizes: Vec<usize>,
    dense_epochs: usize,
    batch: usize,
    lr: f64,
    density: Vec<f64>,
    bits: Vec<u8>,
    prune_epochs: usize,
    finetune_epochs: usize,
    centroid_epochs: usize,
    binary_epochs: usize,
    binary_lr: f64,
    student_epochs: usize,
    student_lr: f64,
    recover_epochs: usize,
}

fn fashion_setup() -> Setup {
    Setup {
        name: "Fashion-MNIST, LeNet-300-100",
        sizes: vec![784, 300, 100, 10],
        dense_epochs: 20,
        batch: 128,
        lr: 1e-3,
        density: vec![0.075, 0.09, 0.26],
        bits: vec![5, 5, 5],
        prune_epochs: 8,
        finetune_epochs: 4,
        centroid_epochs: 2,
        binary_epochs: 3,
        binary_lr: 3e-4,
        student_epochs: 20,
        student_lr: 3e-3,
        recover_epochs: 2,
    }
}

fn digits_setup() -> Setup {
    Setup {
        name: "UCI digits, 64-100-10",
        sizes: vec![64, 100, 10],
        dense_epochs: 40,
        batch: 32,
        lr: 1e-3,
        density: vec![0.15, 0.5],
        bits: vec![5, 5],
        prune_epochs: 20,
        finetune_epochs: 10,
        centroid_epochs: 5,
        binary_epochs: 20,
        binary_lr: 3e-4,
        student_epochs: 100,
        student_lr: 3e-3,
        recover_epochs: 5,
    }
}

/// Row names, in table order.
const ROWS: [&str; 14] = [
    "dense f32",
    "DC 1: pruned (CSR f32)",
    "DC 2: + shared (k-means)",
    "DC 2: + centroid fine-tune",
    "DC 3: + Huffman",
    "int8 per-row",
    "int4 group-64",
    "binary + STE fine-tune",
    "low-rank energy 0.9",
    "student alone",
    "student + KD",
    "low-rank 0.9 + KD recovery",
    "int4 group-64 + KD recovery",
    "binary + KD recovery (dense latent)",
];

/// One seed's results: accuracy and bytes per row, and the models to serve.
struct SeedResult {
    acc: Vec<f64>,
    bytes: Vec<usize>,
    models: Vec<Option<CompressedMlp>>,
    notes: Vec<String>,
}

fn log(seed: u64, t0: Instant, msg: &str) {
    println!("[{:6.1}s seed {seed}] {msg}", t0.elapsed().as_secs_f64());
}

fn trainer(epochs: usize, batch: usize, lr: f64, seed: u64) -> squish::Result<Trainer> {
    Trainer::params()
        .epochs(epochs)
        .batch_size(batch)
        .seed(seed)
        .optimizer(Optimizer::adam(lr).check()?)
        .check()
}

fn bias_bytes(m: &CompressedMlp) -> usize {
    m.biases().iter().map(|b| b.len() * 4).sum()
}

/// Hidden width of a 1-hidden-layer student whose exact bytes stay within `budget`.
fn student_width(inputs: usize, classes: usize, budget: usize) -> usize {
    let bytes = |h: usize| 4 * (inputs * h + h * classes + h + classes) + 32;
    (1..)
        .take_while(|&h| bytes(h) <= budget)
        .last()
        .unwrap_or(1)
}

fn run_seed(data: &Split, s: &Setup, seed: u64, t0: Instant) -> squish::Result<SeedResult> {
    let (tx, ty) = (data.test.x(), data.test.y());
    let n = ROWS.len();
    let mut r = SeedResult {
        acc: vec![0.0; n],
        bytes: vec![0; n],
        models: vec![None; n],
        notes: Vec::new(),
    };
    let record = |r: &mut SeedResult, i: usize, m: CompressedMlp, b: usize| -> squish::Result<()> {
        r.acc[i] = m.accuracy_on(tx, ty, &Sequential)?;
        r.bytes[i] = b;
        r.models[i] = Some(m);
        Ok(())
    };

    // Dense baseline.
    let mut mlp: Mlp = Mlp::params(&s.sizes).seed(seed).check()?;
    trainer(s.dense_epochs, s.batch, s.lr, seed)?.fit(&mut mlp, &data.train)?;
    let dense = CompressedMlp::from_mlp(&mlp, &|_, m| Ok(m.clone()))?;
    let dense_b = dense_bytes(&mlp)?;
    assert_eq!(dense_b, dense.bytes());
    record(&mut r, 0, dense, dense_b)?;
    log(seed, t0, &format!("dense: {:.4}", r.acc[0]));

    // Deep Compression, stage by stage.
    let dc = DeepCompression::params(&s.density, &s.bits)
        .prune_epochs(s.prune_epochs)
        .finetune_epochs(s.finetune_epochs)
        .centroid_epochs(s.centroid_epochs)
        .batch_size(s.batch)
        .seed(seed)
        .check()?;
    let mut pruned_mlp = mlp.clone();
    let masks = dc.prune(&mut pruned_mlp, &data.train)?;
    let pruned = dc.sparse(&pruned_mlp, &masks)?;
    let b = pruned.bytes();
    record(&mut r, 1, pruned.clone(), b)?;
    log(
        seed,
        t0,
        &format!(
            "pruned: {:.4}, kept {}",
            r.acc[1],
            (0..s.sizes.len() - 1)
                .map(|l| format!("{:.1}%", 100.0 * (1.0 - masks.sparsity(l))))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    );
    let mut shared = dc.share(&pruned)?;
    let b = shared.bytes();
    record(&mut r, 2, shared.clone(), b)?;
    dc.finetune(&mut shared, &data.train)?;
    let b = shared.bytes();
    record(&mut r, 3, shared.clone(), b)?;
    log(
        seed,
        t0,
        &format!(
            "shared: {:.4}, centroid fine-tune: {:.4}",
            r.acc[2], r.acc[3]
        ),
    );
    let coded = DeepCompression::encode(&shared)?;
    for (c, l) in coded.iter().zip(shared.layers()) {
        if c.decode()? != *l.op() {
            return Err(SquishError::inconsistent(
                "Huffman stage",
                "decoding did not give back the layer",
            ));
        }
    }
    let coded_b = coded.iter().map(|c| c.storage().total()).sum::<usize>() + bias_bytes(&shared);
    record(&mut r, 4, shared.clone(), coded_b)?;
    r.notes.push(
        coded
            .iter()
            .enumerate()
            .map(|(l, c)| {
                format!(
                    "fc{}: {} kept, {:.2} bits/position, {:.2} bits/index, span {}",
                    l + 1,
                    c.nnz(),
                    c.position_bits() as f64 / c.nnz() as f64,
                    c.index_bits() as f64 / c.nnz() as f64,
                    c.span()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    log(seed, t0, &format!("Huffman: {coded_b} B"));

    // The dense model under other compressions.
    let int8 = IntQuantizer::params(8).per_row().check()?;
    let m = CompressedMlp::from_mlp(&mlp, &|_, m| int8.quantize(m))?;
    let b = m.bytes();
    record(&mut r, 5, m, b)?;
    let int4 = IntQuantizer::params(4).per_group(64).check()?;
    let m = CompressedMlp::from_mlp(&mlp, &|_, m| int4.quantize(m))?;
    let b = m.bytes();
    record(&mut r, 6, m, b)?;
    let mut bin = mlp.clone();
    Trainer::params()
        .epochs(s.binary_epochs)
        .batch_size(s.batch)
        .seed(seed)
        .optimizer(Optimizer::adam(s.binary_lr).check()?)
        .straight_through(StraightThrough::new(Arc::new(Binary)))
        .check()?
        .fit(&mut bin, &data.train)?;
    let m = CompressedMlp::from_mlp(&bin, &|_, m| Binary.quantize(m))?;
    let b = m.bytes();
    record(&mut r, 7, m, b)?;
    let lr = LowRank::params(RankSelection::Energy(0.9)).check()?;
    let m = CompressedMlp::from_mlp(&mlp, &|_, m| lr.apply(m, &Sequential))?;
    let b = m.bytes();
    let ranks = m
        .layers()
        .iter()
        .map(|l| match l.structure() {
            squish::matrix::Structure::LowRank(f) => f.rank().to_string(),
            _ => "full".into(),
        })
        .collect::<Vec<_>>()
        .join("/");
    record(&mut r, 8, m, b)?;
    log(
        seed,
        t0,
        &format!(
            "int8 {:.4}, int4 {:.4}, binary {:.4}, low-rank {:.4} (ranks {})",
            r.acc[5], r.acc[6], r.acc[7], r.acc[8], ranks
        ),
    );

    // Teacher-guided recovery: each compressed form fine-tuned in its own
    // form, the dense model's soft targets mixed into the loss.
    let kd = SoftTarget::params(4.0).alpha(0.9).check()?;
    let recover = |epochs: usize, lr: f64| -> squish::Result<Recovery> {
        Recovery::params()
            .epochs(epochs)
            .batch_size(s.batch)
            .seed(seed)
            .optimizer(Optimizer::adam(lr).check()?)
            .soft_targets(kd)
            .check()
    };
    let lowrank = r.models[8].clone().expect("low-rank row");
    let m = recover(s.recover_epochs, 1e-3)?
        .recover(&lowrank, Some(&mlp), &data.train)?
        .model;
    let b = m.bytes();
    record(&mut r, 11, m, b)?;
    let int4_m = r.models[6].clone().expect("int4 row");
    let m = recover(s.recover_epochs, 1e-4)?
        .recover(&int4_m, Some(&mlp), &data.train)?
        .model;
    let b = m.bytes();
    record(&mut r, 12, m, b)?;
    let bin_m = CompressedMlp::from_mlp(&mlp, &|_, m| Binary.quantize(m))?;
    let m = recover(s.binary_epochs, s.binary_lr)?
        .recover_from_latent(&bin_m, &mlp, Some(&mlp), &data.train)?
        .model;
    let b = m.bytes();
    record(&mut r, 13, m, b)?;
    log(
        seed,
        t0,
        &format!(
            "KD recovery: low-rank {:.4}, int4 {:.4}, binary {:.4}",
            r.acc[11], r.acc[12], r.acc[13]
        ),
    );

    // A student of about 1/40 of the dense bytes, alone and distilled.
    let h = student_width(s.sizes[0], *s.sizes.last().unwrap(), dense_b / 40);
    let sizes = [s.sizes[0], h, *s.sizes.last().unwrap()];
    let st = trainer(s.student_epochs, s.batch, s.student_lr, seed)?;
    let mut alone: Mlp = Mlp::params(&sizes).seed(seed + 1000).check()?;
    st.fit(&mut alone, &data.train)?;
    let mut student = Mlp::params(&sizes).seed(seed + 1000).check()?;
    let kd = SoftTarget::params(2.0).alpha(0.5).check()?;
    distill(&st, &mut student, &mlp, &kd, &data.train)?;
    for (i, m) in [(9, &alone), (10, &student)] {
        let c = CompressedMlp::from_mlp(m, &|_, m| Ok(m.clone()))?;
        let b = c.bytes();
        record(&mut r, i, c, b)?;
    }
    log(
        seed,
        t0,
        &format!(
            "student {sizes:?}: alone {:.4}, KD {:.4}",
            r.acc[9], r.acc[10]
        ),
    );
    Ok(r)
}

fn mean_spread(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (m, (hi - lo) / 2.0)
}

/// Seconds per pass over `x` in batches of `batch` rows (at most `limit` rows).
fn time_forward(m: &CompressedMlp, x: ArrayView2<f32>, batch: usize, limit: usize) -> f64 {
    let x = x.slice(s![..limit.min(x.nrows()), ..]);
    let pass = || {
        for chunk in x.axis_chunks_iter(ndarray::Axis(0), batch) {
            std::hint::black_box(m.forward_on(chunk, &Sequential).expect("forward"));
        }
    };
    pass(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        pass();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn plot(
    path: &str,
    title: &str,
    points: &[(&str, f64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (xmin, xmax) = points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    let (ymin, ymax) = points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.2), b.max(p.2))
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            ((xmin / 1.5)..(xmax * 1.5)).log_scale(),
            ((ymin - 2.0).max(0.0))..(ymax + 1.0).min(100.0),
        )?;
    chart
        .configure_mesh()
        .x_desc("size (KB, log scale)")
        .y_desc("test accuracy (%)")
        .draw()?;
    for (i, &(name, kb, acc)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(std::iter::once(Circle::new((kb, acc), 5, color.filled())))?
            .label(format!("{name}: {kb:.1} KB, {acc:.2}%"))
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> squish::Result<()> {
    let t0 = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let seeds: u64 = flag("--seeds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let svg = flag("--svg")
        .cloned()
        .unwrap_or_else(|| "target/deep_compression.svg".into());
    let fashion = if args.iter().any(|a| a == "--digits") {
        None
    } else {
        fashion_mnist()?
    };
    let (data, setup) = match fashion {
        Some(d) => (d, fashion_setup()),
        None => {
            println!("Fashion-MNIST not used (absent or --digits): UCI digits, 64-100-10.");
            (digits()?, digits_setup())
        }
    };
    println!(
        "{}: {} train / {} test rows, {} seed(s); loaded in {:.1}s",
        setup.name,
        data.train.len(),
        data.test.len(),
        seeds,
        t0.elapsed().as_secs_f64()
    );

    // Seeds in parallel, one per core; each seed's work is sequential and seeded.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = ThreadPool::new(cores.min(seeds as usize).max(1))?;
    let slots: Vec<Mutex<Option<squish::Result<SeedResult>>>> =
        (0..seeds).map(|_| Mutex::new(None)).collect();
    pool.run(seeds as usize, &|i| {
        let r = run_seed(&data, &setup, i as u64, t0);
        *slots[i].lock().expect("seed slot") = Some(r);
    });
    let results = slots
        .into_iter()
        .map(|m| m.into_inner().expect("seed slot").expect("seed ran"))
        .collect::<squish::Result<Vec<_>>>()?;
    let train_s = t0.elapsed().as_secs_f64();

    // Table: accuracy mean ± half-range over seeds, bytes of seed 0 (and the range).
    let dense_kb = results[0].bytes[0] as f64 / 1000.0;
    let dense_acc: Vec<f64> = results.iter().map(|r| r.acc[0]).collect();
    println!("\n## {} — {} seed(s)\n", setup.name, seeds);
    println!(
        "| model | test accuracy % (mean ± half-range) | Δ vs dense (points) | size KB | ratio |"
    );
    println!("|---|---|---|---|---|");
    let mut points = Vec::new();
    for (i, name) in ROWS.iter().enumerate() {
        let acc: Vec<f64> = results.iter().map(|r| 100.0 * r.acc[i]).collect();
        let delta: Vec<f64> = results
            .iter()
            .zip(&dense_acc)
            .map(|(r, d)| 100.0 * (r.acc[i] - d))
            .collect();
        let (m, sp) = mean_spread(&acc);
        let (dm, _) = mean_spread(&delta);
        let kb: Vec<f64> = results.iter().map(|r| r.bytes[i] as f64 / 1000.0).collect();
        let (kbm, kbs) = mean_spread(&kb);
        let kb_txt = if kbs > 0.0005 {
            format!("{kbm:.2} ± {kbs:.2}")
        } else {
            format!("{kbm:.2}")
        };
        println!(
            "| {name} | {m:.2} ± {sp:.2} | {dm:+.2} | {kb_txt} | {:.1}x |",
            dense_kb / kbm
        );
        if i != 2 && i != 3 {
            points.push((*name, kbm, m));
        }
    }
    for (k, r) in results.iter().enumerate() {
        for n in &r.notes {
            println!("\nseed {k}: {n}");
        }
    }
    let dc_ratio = dense_kb * 1000.0
        / (results.iter().map(|r| r.bytes[4] as f64).sum::<f64>() / results.len() as f64);
    let dc_loss = mean_spread(
        &results
            .iter()
            .map(|r| 100.0 * (r.acc[0] - r.acc[4]))
            .collect::<Vec<_>>(),
    )
    .0;
    println!(
        "\nTarget (>= 40x smaller, <= 0.5 points lost, mean of seeds): {:.1}x, {:.2} points lost -> {}",
        dc_ratio,
        dc_loss,
        if dc_ratio >= 40.0 && dc_loss <= 0.5 {
            "MET"
        } else {
            "NOT MET"
        }
    );

    // Serving: seed-0 models, one thread.
    let models = &results[0].models;
    let (tx, n1) = (data.test.x(), 2000);
    println!("\n## Serving (seed-0 models, 1 thread, best of 3 passes)\n");
    println!("| model | batch 1, µs/image | speedup | batch 256, µs/image | speedup |");
    println!("|---|---|---|---|---|");
    let serve = [0usize, 1, 3, 5, 6, 7, 8, 10];
    let mut base = (0.0, 0.0);
    for &i in &serve {
        let m = models[i].as_ref().expect("model kept");
        let b1 = time_forward(m, tx, 1, n1) / n1.min(tx.nrows()) as f64 * 1e6;
        let b256 = time_forward(m, tx, 256, tx.nrows()) / tx.nrows() as f64 * 1e6;
        if i == 0 {
            base = (b1, b256);
        }
        let name = if i == 3 {
            "DC 2/3: pruned + shared"
        } else {
            ROWS[i]
        };
        println!(
            "| {name} | {b1:.1} | {:.2}x | {b256:.2} | {:.2}x |",
            base.0 / b1,
            base.1 / b256
        );
    }
    if let Err(e) = plot(
        &svg,
        &format!("{}: accuracy vs size ({} seeds)", setup.name, seeds),
        &points,
    ) {
        println!("\nplot not written: {e}");
    } else {
        println!("\nplot: {svg}");
    }
    println!(
        "\nwall time: {:.1}s (training and compression {:.1}s, {} thread(s))",
        t0.elapsed().as_secs_f64(),
        train_s,
        pool.threads()
    );
    Ok(())
}
