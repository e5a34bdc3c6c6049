//! Every value encoding against dense f32 at batch 1, 2, 4, 8, 16, 64 and
//! 256, on a 1536 × 384 matrix (a MiniLM-sized FFN projection, one thread)
//! and a 4096 × 4096 matrix (two threads): no encoding may be slower than
//! dense at any batch (issues #20 and #21). Prints a markdown table of
//! speedups over dense f32 (`dense time ÷ encoding time`, medians of one
//! run) and the dense times, ready for docs/results.md.
//!
//! ```text
//! cargo bench --bench batch_sweep                 # both shapes
//! cargo bench --bench batch_sweep -- 1536         # one shape
//! cargo bench --bench batch_sweep -- 4096 1,8,64  # chosen batch sizes
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::prelude::*;

const BATCHES: [usize; 7] = [1, 2, 4, 8, 16, 64, 256];

fn encodings(w: &Array2<f32>) -> Vec<(&'static str, CompressedMatrix)> {
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let q = |p: &dyn Quantizer, m: &CompressedMatrix| p.quantize(m).unwrap();
    let int8 = IntQuantizer::params(8).per_row().check().unwrap();
    let nm = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .prune(&dense)
        .unwrap();
    let rows: Vec<u32> = (0..w.nrows() as u32).step_by(2).collect();
    let kept = CompressedMatrix::kept_rows(w.view(), rows).unwrap();
    vec![
        ("dense f32", dense.clone()),
        ("int8 per-row", q(&int8, &dense)),
        (
            "int4 per-row",
            q(&IntQuantizer::params(4).per_row().check().unwrap(), &dense),
        ),
        (
            "int4 group-64",
            q(
                &IntQuantizer::params(4).per_group(64).check().unwrap(),
                &dense,
            ),
        ),
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
        ("2:4 int8", q(&int8, &nm)),
        ("kept ½ rows int8", q(&int8, &kept)),
    ]
}

/// Median seconds of `f` over at least 5 runs and ~0.3 s.
fn median<F: FnMut()>(mut f: F) -> f64 {
    f();
    let start = Instant::now();
    let mut t = Vec::new();
    while t.len() < 5 || (start.elapsed() < Duration::from_millis(300) && t.len() < 200) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn sweep(rows: usize, cols: usize, threads: usize, batches: &[usize]) {
    let pool = ThreadPool::new(threads).unwrap();
    let mut rng = StdRng::seed_from_u64(20);
    let w = Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-0.1f32..0.1));
    let ms = encodings(&w);
    println!("\n{rows} × {cols}, {threads} thread(s): speedup over dense f32 (higher is faster)\n");
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
    let mut times = vec![vec![0.0; batches.len()]; ms.len()];
    for (j, &b) in batches.iter().enumerate() {
        let x = Array2::from_shape_simple_fn((b, cols), || rng.random_range(-1.0f32..1.0));
        for (i, (_, m)) in ms.iter().enumerate() {
            times[i][j] = median(|| {
                black_box(m.matmul_on(black_box(x.view()), &pool).unwrap());
            });
        }
    }
    for (i, (name, _)) in ms.iter().enumerate().skip(1) {
        print!("| {name} |");
        for (d, t) in times[0].iter().zip(&times[i]) {
            print!(" {:.2}× |", d / t);
        }
        println!();
    }
    print!("| *dense f32 time* |");
    for t in &times[0] {
        print!(" {:.3} ms |", t * 1e3);
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
    let batches: Vec<usize> = args.get(1).map_or(BATCHES.to_vec(), |s| {
        s.split(',')
            .map(|v| v.parse().expect("batch sizes"))
            .collect()
    });
    for (rows, cols, threads) in [(1536, 384, 1), (4096, 4096, 2)] {
        if shape.is_empty() || shape.parse() == Ok(rows) {
            sweep(rows, cols, threads, &batches);
        }
    }
}
