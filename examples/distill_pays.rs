//! Distillation that pays: the dense model teaching its own compressed copy
//! (teacher-guided recovery), a sweep for the regime where a separate student
//! gains from soft targets, and a student that reads cached teacher outputs.
//!
//! ```text
//! cargo run --release --example distill_pays                     # UCI digits, 2 seeds (CI, seconds)
//! cargo run --release --example distill_pays -- --fashion --seeds 5
//! cargo run --release --example distill_pays -- --fashion --seeds 5 --part recovery --all
//! ```
//!
//! Options: `--part recovery|sweep|features|all` (default all), `--all` (every
//! compressed form in the recovery table, not only the three of issue 22),
//! `--only A|B` (only the recovery forms whose name contains A or B),
//! `--kd-t T`, `--kd-alpha A` (the soft-target loss of recovery and of the
//! main sweep rows),
//! `--dense-epochs N`, `--anneal-epochs N` (the teacher, and the dense
//! reference, get N more epochs at η = 1e-4 before anything else), `--rec-epochs N`, `--student-epochs N`, `--threads N`.
//!
//! Binary forms only (issue 22's binary target): `--bin-epochs N`,
//! `--bin-lr η`, `--cosine` (cosine LR decay to 0), `--learn-scales C`
//! (trained per-row scales, straight-through window `|θ| ≤ C·α`; `inf` for
//! none), `--bin-kd-t T`, `--bin-kd-alpha A`, `--bin-hint W` (hints on every
//! hidden layer), `--mixed` (an extra, mixed row: binary hidden layer, int8
//! first and last layers).
//!
//! The teacher is LeNet-300-100 (784-300-100-10, ReLU, Adam) on Fashion-MNIST
//! (64-100-10 on the digits). Per seed, each row below starts from the same
//! weights and sees the same batches; "CE" is recovery on the hard labels
//! alone, "KD" the same run with the dense teacher's soft targets mixed in.
//! Differences are paired over seeds (t-test and sign test).

use std::sync::Mutex;
use std::time::Instant;

use squish::data::{digits, fashion_mnist, Dataset, Split};
use squish::distillation::{
    distill, jittered, paired_t_test, sign_test, FeatureSource, FeatureStudent, Hint, LrDecay,
    Recovery, SoftTarget,
};
use squish::prelude::*;
use squish::training::{CompressedMlp, Dense, Mlp, Optimizer, Trainer};

struct Setup {
    name: &'static str,
    anneal_epochs: usize,
    teacher: Vec<usize>,
    side: (usize, usize),
    dense_epochs: usize,
    batch: usize,
    lr: f64,
    rec_epochs: usize,
    student_epochs: usize,
    student_lr: f64,
    widths: Vec<usize>,
    subset: usize,
    kd_t: f64,
    kd_alpha: f64,
    bin: BinarySetup,
}

/// Recovery settings of the binary forms only (issue 22's binary target).
#[derive(Clone, Default)]
struct BinarySetup {
    /// Epochs and Adam rate (`None`: the table's common ones).
    epochs: Option<usize>,
    lr: Option<f64>,
    /// Trained per-row scales with this straight-through clip.
    learned_scales: Option<f32>,
    cosine: bool,
    /// Hint weight on both hidden layers (0: none).
    hint: f64,
    /// Soft-target T and α (`None`: the common ones).
    kd_t: Option<f64>,
    kd_alpha: Option<f64>,
}

fn fashion() -> Setup {
    Setup {
        name: "Fashion-MNIST, LeNet-300-100",
        anneal_epochs: 0,
        teacher: vec![784, 300, 100, 10],
        side: (28, 28),
        dense_epochs: 20,
        batch: 128,
        lr: 1e-3,
        rec_epochs: 3,
        student_epochs: 5,
        student_lr: 1e-3,
        widths: vec![32, 128],
        subset: 1200,
        kd_t: 4.0,
        kd_alpha: 0.9,
        bin: BinarySetup::default(),
    }
}

fn small() -> Setup {
    Setup {
        name: "UCI digits, 64-100-10",
        anneal_epochs: 0,
        teacher: vec![64, 100, 10],
        side: (8, 8),
        dense_epochs: 40,
        batch: 32,
        lr: 1e-3,
        rec_epochs: 5,
        student_epochs: 60,
        student_lr: 3e-3,
        widths: vec![8, 32],
        subset: 300,
        kd_t: 4.0,
        kd_alpha: 0.9,
        bin: BinarySetup::default(),
    }
}

/// One named accuracy per seed, in insertion order.
#[derive(Default)]
struct Rows(Vec<(String, f64)>);

impl Rows {
    fn push(&mut self, name: impl Into<String>, acc: f64) {
        self.0.push((name.into(), acc));
    }
}

fn trainer(epochs: usize, batch: usize, lr: f64, seed: u64) -> squish::Result<Trainer> {
    Trainer::params()
        .epochs(epochs)
        .batch_size(batch)
        .seed(seed)
        .optimizer(Optimizer::adam(lr).check()?)
        .check()
}

fn acc_c(m: &CompressedMlp, d: &Dataset) -> squish::Result<f64> {
    m.accuracy_on(d.x(), d.y(), &Sequential)
}

/// The compressed forms of the recovery table, each with its fine-tuning
/// learning rate and whether quantized layers keep the dense weights as
/// their latent (straight-through) copies.
type Form = (&'static str, CompressedMlp, f64, bool);

fn forms(mlp: &Mlp, all: bool, mixed: bool) -> squish::Result<Vec<Form>> {
    let lr = LowRank::params(RankSelection::Energy(0.9)).check()?;
    let int4 = IntQuantizer::params(4).per_group(64).check()?;
    let mut f: Vec<Form> = vec![
        (
            "dense f32 (the same fine-tuning)",
            CompressedMlp::from_mlp(mlp, &|_, m| Ok(m.clone()))?,
            1e-4,
            false,
        ),
        (
            "low-rank energy 0.9",
            CompressedMlp::from_mlp(mlp, &|_, m| lr.apply(m, &Sequential))?,
            1e-3,
            false,
        ),
        (
            "binary",
            CompressedMlp::from_mlp(mlp, &|_, m| Binary.quantize(m))?,
            3e-4,
            false,
        ),
        (
            "binary (dense latent)",
            CompressedMlp::from_mlp(mlp, &|_, m| Binary.quantize(m))?,
            3e-4,
            true,
        ),
        (
            "int4 group-64",
            CompressedMlp::from_mlp(mlp, &|_, m| int4.quantize(m))?,
            1e-4,
            false,
        ),
    ];
    if mixed {
        // A mixed recipe, reported as such: first and last layers int8.
        let int8 = IntQuantizer::params(8).per_row().check()?;
        let last = mlp.layers().len() - 1;
        f.push((
            "binary hidden, int8 first + last (mixed, dense latent)",
            CompressedMlp::from_mlp(mlp, &|l, m| {
                if l == 0 || l == last {
                    int8.quantize(m)
                } else {
                    Binary.quantize(m)
                }
            })?,
            3e-4,
            true,
        ));
    }
    if all {
        let int8 = IntQuantizer::params(8).per_row().check()?;
        let prune = Magnitude::params(0.9).check()?;
        let km = KMeans::params(16).check()?;
        f.push((
            "int8 per-row",
            CompressedMlp::from_mlp(mlp, &|_, m| int8.quantize(m))?,
            1e-4,
            false,
        ));
        f.push((
            "ternary",
            CompressedMlp::from_mlp(mlp, &|_, m| Ternary.quantize(m))?,
            3e-4,
            false,
        ));
        f.push((
            "magnitude-pruned 90 % (CSR f32)",
            CompressedMlp::from_mlp(mlp, &|_, m| prune.prune(m))?,
            3e-4,
            false,
        ));
        f.push((
            "codebook k = 16 (4-bit)",
            CompressedMlp::from_mlp(mlp, &|_, m| km.quantize(m))?,
            1e-4,
            false,
        ));
    }
    Ok(f)
}

struct Opts {
    only: Option<String>,
    recovery: bool,
    sweep: bool,
    features: bool,
    all: bool,
    mixed: bool,
}

fn run_seed(data: &Split, s: &Setup, o: &Opts, seed: u64, t0: Instant) -> squish::Result<Rows> {
    let log = |msg: String| println!("[{:7.1}s seed {seed}] {msg}", t0.elapsed().as_secs_f64());
    let mut r = Rows::default();
    let (train, test) = (&data.train, &data.test);
    let mut teacher = dense_teacher(train, s, seed)?;
    if s.anneal_epochs > 0 {
        // The dense model's own low-rate fine-tuning: a stronger teacher and
        // the fair reference for fine-tuned compressed models.
        trainer(s.anneal_epochs, s.batch, 1e-4, seed + 3000)?.fit(&mut teacher, train)?;
    }
    let dense_acc = teacher.accuracy(test.x(), test.y())?;
    r.push("dense f32", dense_acc);
    log(format!("dense {dense_acc:.4}"));

    if o.recovery {
        for (name, m, lr, latent) in forms(&teacher, o.all, o.mixed)? {
            if o.only
                .as_ref()
                .is_some_and(|f| !f.split('|').any(|f| name.contains(f)))
            {
                continue;
            }
            let base = acc_c(&m, test)?;
            let b = if name.starts_with("binary") {
                s.bin.clone()
            } else {
                BinarySetup::default()
            };
            let kd = SoftTarget::params(b.kd_t.unwrap_or(s.kd_t))
                .alpha(b.kd_alpha.unwrap_or(s.kd_alpha))
                .check()?;
            let rec = |with: Option<SoftTarget>| -> squish::Result<f64> {
                let mut p = Recovery::params()
                    .epochs(b.epochs.unwrap_or(s.rec_epochs))
                    .batch_size(s.batch)
                    .seed(seed)
                    .optimizer(Optimizer::adam(b.lr.unwrap_or(lr)).check()?);
                if let Some(c) = b.learned_scales {
                    p = p.learned_scales(c);
                }
                if b.cosine {
                    p = p.lr_decay(LrDecay::Cosine);
                }
                if let Some(k) = with {
                    p = p.soft_targets(k);
                    if b.hint > 0.0 {
                        for l in 0..s.teacher.len() - 2 {
                            p = p.hint(Hint::params(l, l).weight(b.hint).check()?);
                        }
                    }
                }
                let p = p.check()?;
                let out = if latent {
                    p.recover_from_latent(&m, &teacher, Some(&teacher), train)?
                } else {
                    p.recover(&m, Some(&teacher), train)?
                };
                assert!(out.report.same_storage(), "recovery changed the storage");
                acc_c(&out.model, test)
            };
            let (ce, kdv) = (rec(None)?, rec(Some(kd))?);
            r.push(format!("{name}|none"), base);
            r.push(format!("{name}|CE"), ce);
            r.push(format!("{name}|KD"), kdv);
            log(format!("{name}: {base:.4} -> CE {ce:.4}, KD {kdv:.4}"));
        }
    }

    if o.sweep {
        let st = |epochs: usize| trainer(epochs, s.batch, s.student_lr, seed + 1000);
        let student = |h: usize| -> squish::Result<Mlp> {
            Mlp::params(&[s.teacher[0], h, *s.teacher.last().unwrap()])
                .seed(seed + 500)
                .check()
        };
        let jit = jittered(train, s.side.0, s.side.1, 2.min(s.side.0 / 4), 1, seed)?;
        let sub = subset(train, s.subset, seed)?;
        // Per transfer set, epochs keep the number of optimizer steps equal.
        let sets: Vec<(&str, &Dataset, usize)> = vec![
            ("train", train, s.student_epochs),
            ("train + jittered copy", &jit, s.student_epochs.div_ceil(2)),
            (
                "labelled subset",
                &sub,
                s.student_epochs * train.len() / sub.len() / 4,
            ),
        ];
        let wide = *s.widths.last().unwrap();
        // (width, transfer set, T, α); α = 0 is the student alone. Widths on
        // the training set; the transfer sets at the widest student; T and α
        // on the labelled subset, where each run is cheap.
        let mut grid: Vec<(usize, usize, f64, f64)> = Vec::new();
        for &h in &s.widths {
            grid.push((h, 0, 1.0, 0.0));
            grid.push((h, 0, s.kd_t, s.kd_alpha));
        }
        grid.push((wide, 1, 1.0, 0.0));
        grid.push((wide, 1, s.kd_t, s.kd_alpha));
        grid.push((wide, 2, 1.0, 0.0));
        for &(t, a) in &[(s.kd_t, s.kd_alpha), (2.0, 0.5), (8.0, 0.9), (s.kd_t, 0.5)] {
            grid.push((wide, 2, t, a));
        }
        for (h, set, t, a) in grid {
            let (sname, d, epochs) = sets[set];
            let mut m = student(h)?;
            if a == 0.0 {
                st(epochs)?.fit(&mut m, d)?;
            } else {
                let k = SoftTarget::params(t).alpha(a).check()?;
                distill(&st(epochs)?, &mut m, &teacher, &k, d)?;
            }
            let acc = m.accuracy(test.x(), test.y())?;
            let key = if a == 0.0 {
                format!("sweep|{h}|{sname}|alone")
            } else {
                format!("sweep|{h}|{sname}|T={t} α={a}")
            };
            log(format!("{key}: {acc:.4}"));
            r.push(key, acc);
        }
    }

    if o.features {
        let fst = trainer(s.student_epochs, s.batch, s.student_lr, seed + 2000)?;
        // A stale cache: teacher outputs of shifted copies of the test images.
        let stale = jittered(test, s.side.0, s.side.1, 2.min(s.side.0 / 4), 1, seed + 9)?;
        let n = test.len();
        let stale_x = stale.x().slice(ndarray::s![n.., ..]).to_owned();
        let last_hidden = s.teacher.len() - 3;
        for hidden in [vec![], vec![8]] {
            let arch = hidden
                .first()
                .map_or("linear".to_string(), |h| h.to_string());
            let mut sizes = vec![s.teacher[0]];
            sizes.extend(&hidden);
            sizes.push(*s.teacher.last().unwrap());
            let mut alone: Mlp = Mlp::params(&sizes).seed(seed + 700).check()?;
            fst.fit(&mut alone, train)?;
            r.push(
                format!("feat|{arch}|none"),
                alone.accuracy(test.x(), test.y())?,
            );
            for (name, src) in [
                ("logits", FeatureSource::Logits),
                ("last hidden", FeatureSource::Hidden(last_hidden)),
            ] {
                let (fs, _) = FeatureStudent::fit(&fst, &hidden, seed + 700, &teacher, src, train)?;
                let cached = src.compute(&teacher, test.x())?;
                let fresh = fs.accuracy(test.x(), cached.view(), test.y())?;
                let stale_f = src.compute(&teacher, stale_x.view())?;
                let old = fs.accuracy(test.x(), stale_f.view(), test.y())?;
                r.push(format!("feat|{arch}|{name}"), fresh);
                r.push(format!("feat|{arch}|{name}, stale cache"), old);
                log(format!(
                    "feature student {arch} + {name}: {fresh:.4} (stale {old:.4})"
                ));
            }
        }
    }
    Ok(r)
}

/// The dense teacher of a seed, trained once and cached under
/// `target/distill_pays/` (raw little-endian f32 weights and biases), so the
/// parts of the example can run apart and be rerun.
fn dense_teacher(train: &Dataset, s: &Setup, seed: u64) -> squish::Result<Mlp> {
    let sizes: Vec<String> = s.teacher.iter().map(|v| v.to_string()).collect();
    let dir = std::path::Path::new("target/distill_pays");
    let path = dir.join(format!(
        "teacher-{}-e{}-b{}-s{seed}.f32",
        sizes.join("-"),
        s.dense_epochs,
        s.batch
    ));
    let mut mlp: Mlp = Mlp::params(&s.teacher).seed(seed).check()?;
    let count = mlp.parameter_count();
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == 4 * count {
            let mut v = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            let layers = s
                .teacher
                .windows(2)
                .map(|io| {
                    let w = ndarray::Array2::from_shape_simple_fn((io[1], io[0]), || {
                        v.next().expect("sized")
                    });
                    let b =
                        ndarray::Array1::from_shape_simple_fn(io[1], || v.next().expect("sized"));
                    Dense::new(w, b)
                })
                .collect::<squish::Result<Vec<_>>>()?;
            return Mlp::from_layers(layers, mlp.activation());
        }
    }
    trainer(s.dense_epochs, s.batch, s.lr, seed)?.fit(&mut mlp, train)?;
    let mut bytes = Vec::with_capacity(4 * count);
    for l in mlp.layers() {
        for v in l.weight().iter().chain(l.bias().iter()) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    // Written to a temporary name first: a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, &bytes).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok(mlp)
}

/// `n` rows drawn without replacement (seeded).
fn subset(d: &Dataset, n: usize, seed: u64) -> squish::Result<Dataset> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed));
    idx.truncate(n.min(d.len()));
    let (x, y) = d.rows(&idx);
    Dataset::new(x, y, d.classes())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn col(results: &[Rows], key: &str) -> Vec<f64> {
    results
        .iter()
        .map(|r| {
            100.0
                * r.0
                    .iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("row {key}"))
                    .1
        })
        .collect()
}

fn pm(v: &[f64]) -> String {
    let (m, sd) = mean_sd(v);
    format!("{m:.2} ± {sd:.2}")
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn test_txt(a: &[f64], b: &[f64]) -> String {
    match (paired_t_test(a, b), sign_test(a, b)) {
        (Ok(t), Ok(s)) => format!(
            "{:+.2} (t p = {:.3}, sign p = {:.3})",
            t.mean_diff, t.p_value, s
        ),
        _ => "n/a (one seed)".into(),
    }
}

fn main() -> squish::Result<()> {
    let t0 = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let num = |name: &str| flag(name).and_then(|s| s.parse::<usize>().ok());
    let mut setup = small();
    let mut data = digits()?;
    if args.iter().any(|a| a == "--fashion") {
        match fashion_mnist()? {
            Some(d) => {
                data = d;
                setup = fashion();
            }
            None => println!(
                "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): UCI digits."
            ),
        }
    }
    let seeds = num("--seeds").unwrap_or(2);
    if let Some(n) = num("--dense-epochs") {
        setup.dense_epochs = n;
    }
    if let Some(n) = num("--anneal-epochs") {
        setup.anneal_epochs = n;
    }
    if let Some(n) = num("--rec-epochs") {
        setup.rec_epochs = n;
    }
    let real = |name: &str| flag(name).and_then(|s| s.parse::<f64>().ok());
    if let Some(a) = real("--kd-alpha") {
        setup.kd_alpha = a;
    }
    if let Some(t) = real("--kd-t") {
        setup.kd_t = t;
    }
    if let Some(n) = num("--bin-epochs") {
        setup.bin.epochs = Some(n);
    }
    setup.bin.lr = real("--bin-lr");
    setup.bin.kd_t = real("--bin-kd-t");
    setup.bin.kd_alpha = real("--bin-kd-alpha");
    setup.bin.hint = real("--bin-hint").unwrap_or(0.0);
    setup.bin.learned_scales = real("--learn-scales").map(|c| c as f32);
    setup.bin.cosine = args.iter().any(|a| a == "--cosine");
    if let Some(n) = num("--student-epochs") {
        setup.student_epochs = n;
    }
    let part = flag("--part").map_or("all", |s| s.as_str());
    let o = Opts {
        only: flag("--only").cloned(),
        recovery: matches!(part, "all" | "recovery"),
        sweep: matches!(part, "all" | "sweep"),
        features: matches!(part, "all" | "features"),
        all: args.iter().any(|a| a == "--all"),
        mixed: args.iter().any(|a| a == "--mixed"),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = num("--threads").unwrap_or(cores).min(seeds).max(1);
    println!(
        "{}: {} train / {} test rows, {seeds} seeds on {threads} thread(s); dense {} epochs (+ {} at η = 1e-4), recovery {} epochs, students {} epochs, KD T = {} α = {}",
        setup.name,
        data.train.len(),
        data.test.len(),
        setup.dense_epochs,
        setup.anneal_epochs,
        setup.rec_epochs,
        setup.student_epochs,
        setup.kd_t,
        setup.kd_alpha
    );
    let b = &setup.bin;
    println!(
        "binary forms: {} epochs, Adam {}, {}, {}, hints {}, KD T = {} α = {}",
        b.epochs.unwrap_or(setup.rec_epochs),
        b.lr.map_or("3e-4".to_string(), |v| v.to_string()),
        b.learned_scales
            .map_or("scales mean|θ|".to_string(), |c| format!(
                "learned scales, clip {c}"
            )),
        if b.cosine { "cosine LR" } else { "constant LR" },
        b.hint,
        b.kd_t.unwrap_or(setup.kd_t),
        b.kd_alpha.unwrap_or(setup.kd_alpha)
    );
    let pool = ThreadPool::new(threads)?;
    let slots: Vec<Mutex<Option<squish::Result<Rows>>>> =
        (0..seeds).map(|_| Mutex::new(None)).collect();
    pool.run(seeds, &|i| {
        let r = run_seed(&data, &setup, &o, i as u64, t0);
        *slots[i].lock().expect("slot") = Some(r);
    });
    let results = slots
        .into_iter()
        .map(|m| m.into_inner().expect("slot").expect("seed ran"))
        .collect::<squish::Result<Vec<_>>>()?;
    let dense = col(&results, "dense f32");
    println!(
        "\ndense f32: {} % over {seeds} seeds (mean ± sd)",
        pm(&dense)
    );

    if o.recovery {
        println!(
            "\n## Teacher-guided recovery ({} epochs)\n",
            setup.rec_epochs
        );
        println!("| form | no fine-tuning | CE fine-tuning | KD fine-tuning | Δ KD vs dense | teacher's share: KD − CE |");
        println!("|---|---|---|---|---|---|");
        let names: Vec<String> = results[0]
            .0
            .iter()
            .filter_map(|(k, _)| k.strip_suffix("|none").map(str::to_string))
            .filter(|k| !k.starts_with("feat|"))
            .collect();
        for name in &names {
            let (b, c, k) = (
                col(&results, &format!("{name}|none")),
                col(&results, &format!("{name}|CE")),
                col(&results, &format!("{name}|KD")),
            );
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                pm(&b),
                pm(&c),
                pm(&k),
                pm(&diff(&k, &dense)),
                test_txt(&k, &c)
            );
        }
        for (name, within) in [
            ("low-rank energy 0.9", 1.0),
            ("binary", 0.3),
            ("binary (dense latent)", 0.3),
            ("int4 group-64", 0.1),
        ] {
            if names.iter().any(|n| n == name) {
                let d = mean_sd(&diff(&col(&results, &format!("{name}|KD")), &dense)).0;
                println!(
                    "target {name}: within {within} of dense -> {d:+.2} {}",
                    if d >= -within { "MET" } else { "NOT MET" }
                );
            }
        }
    }

    if o.sweep {
        println!("\n## Student sweep (alone vs distilled, same init and batches)\n");
        println!("| student | transfer set | T, α | alone | distilled | gain (paired) |");
        println!("|---|---|---|---|---|---|");
        let keys: Vec<String> = results[0]
            .0
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("sweep|") && !k.ends_with("|alone"))
            .collect();
        for k in keys {
            let parts: Vec<&str> = k.split('|').collect();
            let alone = col(&results, &format!("sweep|{}|{}|alone", parts[1], parts[2]));
            let kd = col(&results, &k);
            println!(
                "| {}-{}-10 | {} | {} | {} | {} | {} |",
                setup.teacher[0],
                parts[1],
                parts[2],
                parts[3],
                pm(&alone),
                pm(&kd),
                test_txt(&kd, &alone)
            );
        }
    }

    if o.features {
        println!("\n## Student with cached teacher outputs as extra input\n");
        let t = &setup.teacher;
        let c = *t.last().unwrap();
        let teacher_macs: usize = t.windows(2).map(|w| w[0] * w[1]).sum();
        let extra = |k: &str| match k {
            "logits" => (c, teacher_macs),
            "last hidden" => (t[t.len() - 2], teacher_macs - t[t.len() - 2] * c),
            _ => (0, 0),
        };
        println!(
            "teacher: {} % at {teacher_macs} MACs per image\n",
            pm(&col(&results, "dense f32"))
        );
        println!("| student | extra input | accuracy | vs alone (paired) | MACs, cache at hand | MACs, recomputed |");
        println!("|---|---|---|---|---|---|");
        let keys: Vec<String> = results[0]
            .0
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("feat|"))
            .collect();
        for k in keys {
            let parts: Vec<&str> = k.split('|').collect();
            let (arch, input) = (parts[1], parts[2]);
            let alone = col(&results, &format!("feat|{arch}|none"));
            let v = col(&results, &k);
            let (e, cost) = extra(input.trim_end_matches(", stale cache"));
            let inputs = t[0] + e;
            let macs = match arch.parse::<usize>() {
                Ok(h) => inputs * h + h * c,
                Err(_) => inputs * c,
            };
            let name = if arch == "linear" {
                "linear".to_string()
            } else {
                format!("hidden {arch}")
            };
            println!(
                "| {name} | {input} | {} | {} | {macs} | {} |",
                pm(&v),
                test_txt(&v, &alone),
                macs + cost
            );
        }
    }
    println!("\nwall time {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
