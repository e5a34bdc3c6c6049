//! Every value encoding against dense f32 at batch 1, 2, 4, 8, 16, 64 and
//! 256 (issues #20 and #21: no encoding may be slower than dense at any
//! batch), on the shapes squish serves:
//!
//! * MiniLM: 384 × 384 (attention projections), 1536 × 384 (FFN up),
//!   384 × 1536 (FFN down), one thread;
//! * the Deep Compression MLP (784-300-100-10): 300 × 784, 100 × 300, one
//!   thread (the CSR codebook rows are pruned to 8 % / 9 % like the trained
//!   model, then shared with 32 centroids);
//! * 4096 × 4096 on two threads (only when asked for: `-- 4096`).
//!
//! Prints, per shape, a markdown table of speedups over dense f32
//! (`dense time ÷ encoding time`: five bursts of each in alternation, the
//! median of their ratios, so that both sides see the same machine) and
//! the dense times, ready for docs/results.md.
//!
//! With `SQUISH_PEER_PYTHON` naming a Python with torch, the PyTorch peer
//! (`benches/peers/peers.py 1 sweep`: f32 and dynamic int8 `Linear` on the
//! same shapes and batches, one thread) runs after the sweep, and a second
//! table per shape gives every encoding's speedup over PyTorch f32.
//!
//! ```text
//! cargo bench --bench batch_sweep                       # every default shape
//! SQUISH_PEER_PYTHON=/work/venv/bin/python cargo bench --bench batch_sweep
//! cargo bench --bench batch_sweep -- 1536x384           # one shape
//! cargo bench --bench batch_sweep -- 4096x4096 1,8,64   # chosen batch sizes
//! cargo bench --bench batch_sweep -- all 1,8 "2:4"      # encodings whose name contains "2:4"
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::prelude::*;

const BATCHES: [usize; 7] = [1, 2, 4, 8, 16, 64, 256];

/// (rows, cols, threads, CSR density, in the default run).
const SHAPES: [(usize, usize, usize, f32, bool); 6] = [
    (384, 384, 1, 0.1, true),
    (1536, 384, 1, 0.1, true),
    (384, 1536, 1, 0.1, true),
    (300, 784, 1, 0.08, true),
    (100, 300, 1, 0.09, true),
    (4096, 4096, 2, 0.1, false),
];

fn encodings(w: &Array2<f32>, density: f32) -> Vec<(&'static str, CompressedMatrix)> {
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let q = |p: &dyn Quantizer, m: &CompressedMatrix| p.quantize(m).unwrap();
    let int8 = IntQuantizer::params(8).per_row().check().unwrap();
    let nm = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .prune(&dense)
        .unwrap();
    let csr = Magnitude::params(1.0 - density as f64)
        .check()
        .unwrap()
        .prune(&dense)
        .unwrap();
    let rows: Vec<u32> = (0..w.nrows() as u32).step_by(2).collect();
    let kept = CompressedMatrix::kept_rows(w.view(), rows).unwrap();
    let int4 = |g: Option<usize>| {
        let p = IntQuantizer::params(4);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        p.check().unwrap()
    };
    vec![
        ("dense f32", dense.clone()),
        ("int8 per-row", q(&int8, &dense)),
        ("int4 per-row", q(&int4(None), &dense)),
        ("int4 group-32", q(&int4(Some(32)), &dense)),
        ("int4 group-64", q(&int4(Some(64)), &dense)),
        ("binary", q(&Binary, &dense)),
        ("ternary", q(&Ternary, &dense)),
        (
            "codebook k=16",
            q(&KMeans::params(16).check().unwrap(), &dense),
        ),
        (
            "codebook k=256",
            q(&KMeans::params(256).check().unwrap(), &dense),
        ),
        ("2:4 f32", nm.clone()),
        ("2:4 int8", q(&int8, &nm)),
        // SparseGPT's joint format: groups of 64 stored values (128 inputs).
        ("2:4 int4 g64", q(&int4(Some(64)), &nm)),
        ("kept ½ rows int8", q(&int8, &kept)),
        ("CSR f32", csr.clone()),
        (
            "CSR codebook k=32",
            q(&KMeans::params(32).check().unwrap(), &csr),
        ),
    ]
}

/// Median seconds of one run of `f` over a burst of at least 3 runs and
/// about `ms` milliseconds.
fn burst<F: FnMut()>(f: &mut F, ms: u64) -> f64 {
    let start = Instant::now();
    let mut t = Vec::new();
    while t.len() < 3 || (start.elapsed() < Duration::from_millis(ms) && t.len() < 200) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Bursts per (encoding, batch) cell, alternating dense and encoding.
const ROUNDS: usize = 5;

/// `(dense seconds, encoding seconds, speedup)` of `enc` against `dense`:
/// [`ROUNDS`] bursts of each in alternation, so that both see the same
/// machine (other tenants come and go on a 2-core host); the speedup is the
/// median of the rounds' ratios, the times the medians of the bursts.
fn paired<D: FnMut(), E: FnMut()>(mut dense: D, mut enc: E) -> (f64, f64, f64) {
    dense();
    enc();
    let (mut td, mut te, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let d = burst(&mut dense, 8);
        let e = burst(&mut enc, 8);
        td.push(d);
        te.push(e);
        r.push(d / e);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (med(td), med(te), med(r))
}

/// One shape's results: encodings' names and speedups over dense f32
/// (`[encoding][batch]`, dense first with 1.0), and dense f32 seconds per
/// batch.
struct Swept {
    rows: usize,
    cols: usize,
    names: Vec<&'static str>,
    ratios: Vec<Vec<f64>>,
    dense: Vec<f64>,
}

fn sweep(
    (rows, cols, threads, density): (usize, usize, usize, f32),
    batches: &[usize],
    only: &str,
) -> Swept {
    let pool = ThreadPool::new(threads).unwrap();
    let mut rng = StdRng::seed_from_u64(20);
    let w = Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-0.1f32..0.1));
    let ms: Vec<_> = encodings(&w, density)
        .into_iter()
        .enumerate()
        .filter(|(i, (name, _))| *i == 0 || name.contains(only))
        .map(|(_, e)| e)
        .collect();
    println!(
        "\n{rows} × {cols}, {threads} thread(s): speedup over dense f32 (higher is faster; CSR at {:.0} % density)\n",
        density * 100.0
    );
    header(batches);
    let mut ratios = vec![vec![1.0; batches.len()]; ms.len()];
    let mut dense_times = vec![Vec::new(); batches.len()];
    for (j, &b) in batches.iter().enumerate() {
        let x = Array2::from_shape_simple_fn((b, cols), || rng.random_range(-1.0f32..1.0));
        let run = |m: &CompressedMatrix| {
            black_box(m.matmul_on(black_box(x.view()), &pool).unwrap());
        };
        for (i, (_, m)) in ms.iter().enumerate().skip(1) {
            let (d, _, r) = paired(|| run(&ms[0].1), || run(m));
            dense_times[j].push(d);
            ratios[i][j] = r;
        }
    }
    for (i, (name, _)) in ms.iter().enumerate().skip(1) {
        print!("| {name} |");
        for r in &ratios[i] {
            print!(" {r:.2}× |");
        }
        println!();
    }
    print!("| *dense f32 time* |");
    let times: Vec<f64> = dense_times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        })
        .collect();
    for t in &times {
        print!(" {} |", human(*t));
    }
    println!();
    Swept {
        rows,
        cols,
        names: ms.iter().map(|(n, _)| *n).collect(),
        ratios,
        dense: times,
    }
}

/// A table's header: the encoding column and one per batch size.
fn header(batches: &[usize]) {
    print!("| encoding |");
    for b in batches {
        print!(" b={b} |");
    }
    println!();
    print!("|---|");
    for _ in batches {
        print!("---|");
    }
    println!();
}

/// Seconds as µs below a millisecond, else ms.
fn human(t: f64) -> String {
    if t < 1e-3 {
        format!("{:.1} µs", t * 1e6)
    } else {
        format!("{:.3} ms", t * 1e3)
    }
}

/// The peer's figures for the one-thread shapes: `benches/peers/peers.py 1
/// sweep`, run after squish's sweep in the same sitting, when
/// `SQUISH_PEER_PYTHON` names a Python with torch.
fn peer() -> Option<serde_json::Value> {
    let py = std::env::var("SQUISH_PEER_PYTHON").ok()?;
    println!("\nrunning the PyTorch peer with {py} (load {})", loadavg());
    let out = std::process::Command::new(py)
        .args(["benches/peers/peers.py", "1", "sweep"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    println!("peer done (load {})", loadavg());
    serde_json::from_slice(&out.stdout).ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Speedups over PyTorch's f32 `Linear` (`torch f32 time ÷ squish time`)
/// for one shape, from the sweep's dense times and ratios.
fn against_peer(sw: &Swept, batches: &[usize], peer: &serde_json::Value) {
    let key = |b: usize, what: &str| {
        peer[format!("sweep_{}x{}_b{b}_{what}_us", sw.rows, sw.cols)].as_f64()
    };
    if key(batches[0], "f32").is_none() {
        return;
    }
    println!(
        "\n{} × {}, 1 thread: speedup over PyTorch f32 Linear (same sitting)\n",
        sw.rows, sw.cols
    );
    header(batches);
    for (i, name) in sw.names.iter().enumerate() {
        print!("| {name} |");
        for (j, &b) in batches.iter().enumerate() {
            let t = key(b, "f32").unwrap_or(f64::NAN) * 1e-6;
            print!(" {:.2}× |", t / sw.dense[j] * sw.ratios[i][j]);
        }
        println!();
    }
    print!("| *PyTorch dynamic int8 (int8 × int8)* |");
    for &b in batches {
        let (f, q) = (key(b, "f32"), key(b, "dynq"));
        print!(" {:.2}× |", f.unwrap_or(f64::NAN) / q.unwrap_or(f64::NAN));
    }
    println!();
    print!("| *PyTorch f32 time* |");
    for &b in batches {
        print!(" {} |", human(key(b, "f32").unwrap_or(f64::NAN) * 1e-6));
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; the rest filters.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let shape = args.first().cloned().unwrap_or_default();
    let batches: Vec<usize> = match args.get(1) {
        Some(s) if s != "all" => s
            .split(',')
            .map(|v| v.parse().expect("batch sizes"))
            .collect(),
        _ => BATCHES.to_vec(),
    };
    let only = args.get(2).cloned().unwrap_or_default();
    let mut swept = Vec::new();
    for (rows, cols, threads, density, default) in SHAPES {
        let name = format!("{rows}x{cols}");
        let chosen = match shape.as_str() {
            "" | "all" => default,
            s => s == name || s == rows.to_string(),
        };
        if chosen {
            let sw = sweep((rows, cols, threads, density), &batches, &only);
            if threads == 1 {
                swept.push(sw);
            }
        }
    }
    if let Some(peer) = (!swept.is_empty()).then(peer).flatten() {
        for sw in &swept {
            against_peer(sw, &batches, &peer);
        }
    }
}
