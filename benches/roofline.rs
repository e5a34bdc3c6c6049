//! The small-batch kernels against the machine's memory roofline (issue
//! #21), in one run: the streaming-read bandwidth is measured first (an f32
//! sum over 512 MiB on 2 threads, and over 16 MiB for the L3), then every
//! encoding of a 4096 × 4096 matrix at batch 1 on 2 threads, **hot** (one
//! matrix, called again and again: it stays in L3 where it fits) and
//! **cold** (cycling over copies of the matrix totalling ≥ 128 MiB, so
//! every call reads its weights from DRAM). Each row gives the weight bytes,
//! the median time, the GB/s it reads the weights at, and that rate as a
//! fraction of the measured DRAM bandwidth: the run's (measured first), and
//! the one measured just before and after that row's cold runs (the
//! neighbours' share of the memory bus drifts within a run).
//!
//! With `SQUISH_PEER_PYTHON` naming a Python with torch, the PyTorch peer
//! (`benches/peers/peers.py linear`: `torch.nn.functional.linear` in f32 and
//! `quantize_dynamic` int8, batch 1 and 64, hot and cold the same way) runs
//! in the same sitting and its columns are filled in; its cold fraction is
//! read against the DRAM rate the peer measured just before and after its
//! own cold runs (a 512 MiB `torch.sum` on its threads), since the bus can
//! move by half between the peer's minute and ours.
//!
//! ```text
//! SQUISH_PEER_PYTHON=/work/venv/bin/python cargo bench --bench roofline
//! cargo bench --bench roofline -- 1,4        # other batch sizes (squish only)
//! ```
//!
//! Run it on an otherwise idle machine: PyTorch on 2 threads collapses when
//! anything else runs; the load average is printed next to the table.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use squish::prelude::*;
use squish::quantization::DynamicInt8;

const N: usize = 4096;
const THREADS: usize = 2;
/// Copies of the weights for the cold runs total at least this.
const COLD_BYTES: usize = 128 << 20;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Median of `n` timed calls of `f(call index)` (after one untimed call).
fn median(n: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    let mut t: Vec<f64> = (1..=n)
        .map(|i| {
            let s = Instant::now();
            f(i);
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

/// Streaming-read bandwidth in bytes/s over `v`: an f32 sum split in two
/// halves, one per thread (16 independent lanes each so the sum is not
/// latency-bound, and a software prefetch 4 KiB ahead); median of `passes`.
fn bandwidth(pool: &ThreadPool, v: &[f32], passes: usize) -> f64 {
    let half = v.len() / THREADS;
    let t = median(passes, |_| {
        let sums: Vec<std::sync::Mutex<f32>> = (0..THREADS).map(|_| 0.0.into()).collect();
        pool.run(THREADS, &|p| {
            let mut acc = [0.0f32; 16];
            for c in v[p * half..(p + 1) * half].chunks_exact(16) {
                // 4 KiB ahead, as the kernels fetch: without it the sum
                // reads slower than the dense kernel does.
                #[cfg(target_arch = "x86_64")]
                // SAFETY: a prefetch never faults, whatever the address.
                unsafe {
                    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                    _mm_prefetch::<_MM_HINT_T0>(c.as_ptr().wrapping_add(1024) as *const i8);
                }
                for l in 0..16 {
                    acc[l] += c[l];
                }
            }
            *sums[p].lock().unwrap() = acc.iter().sum();
        });
        black_box(sums);
    });
    std::mem::size_of_val(v) as f64 / t
}

/// `n` f32 values to stream.
fn stream(bytes: usize) -> Vec<f32> {
    (0..bytes / 4).map(|i| (i % 7) as f32).collect()
}

/// A call on copy `i` of the weights with input `x`.
type Call = Box<dyn Fn(usize, &Array2<f32>, &ThreadPool)>;

/// One case: a name, the weight bytes, and a call on copy `i` at batch `b`.
struct Case {
    name: &'static str,
    bytes: usize,
    copies: usize,
    run: Call,
}

fn case(name: &'static str, m: CompressedMatrix) -> Case {
    let bytes = m.storage().total();
    let copies = COLD_BYTES.div_ceil(bytes) + 1;
    let all: Vec<CompressedMatrix> = (0..copies).map(|_| m.clone()).collect();
    Case {
        name,
        bytes,
        copies,
        run: Box::new(move |i, x, pool| {
            black_box(all[i % all.len()].matmul_on(x, pool).unwrap());
        }),
    }
}

fn dynamic_case(name: &'static str, m: &CompressedMatrix) -> Case {
    let bytes = m.storage().total();
    let copies = COLD_BYTES.div_ceil(bytes) + 1;
    let all: Vec<DynamicInt8> = (0..copies)
        .map(|_| DynamicInt8::new(m.clone()).unwrap())
        .collect();
    Case {
        name,
        bytes,
        copies,
        run: Box::new(move |i, x, pool| {
            black_box(all[i % all.len()].matmul(x.view(), pool).unwrap());
        }),
    }
}

/// The peer script's JSON, run now (same sitting), or `None`.
fn peers() -> Option<Value> {
    let py = std::env::var("SQUISH_PEER_PYTHON").ok()?;
    println!("running the PyTorch peer with {py} (load {})", loadavg());
    let out = Command::new(py)
        .args(["benches/peers/peers.py", "2", "linear"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peers failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| a.chars().all(|c| c.is_ascii_digit() || c == ','))
        .map(|a| a.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let pool = ThreadPool::new(THREADS).unwrap();
    println!("load before: {}", loadavg());
    let peer = peers();
    let big = stream(512 << 20);
    let dram = bandwidth(&pool, &big, 7);
    let l3 = bandwidth(&pool, &stream(16 << 20), 41);
    println!(
        "streaming read, {THREADS} threads: 512 MiB {:.1} GB/s (DRAM), 16 MiB {:.1} GB/s (L3); load {}",
        dram / 1e9,
        l3 / 1e9,
        loadavg()
    );

    let mut rng = StdRng::seed_from_u64(21);
    let w = Array2::from_shape_simple_fn((N, N), || rng.random_range(-0.1f32..0.1));
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let int = |bits: u8, g: Option<usize>| {
        let p = IntQuantizer::params(bits);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        p.check().unwrap().quantize(&dense).unwrap()
    };
    let int8 = int(8, None);
    let (int4, int4_g64) = (int(4, None), int(4, Some(64)));
    let (binary, ternary) = (
        Binary.quantize(&dense).unwrap(),
        Ternary.quantize(&dense).unwrap(),
    );
    let cases = vec![
        case("dense f32", dense.clone()),
        case("int8 per-row", int8.clone()),
        case("int4 per-row", int4.clone()),
        case("int4 group-64", int4_g64.clone()),
        case("binary", binary.clone()),
        case("ternary", ternary.clone()),
        dynamic_case("int8 × int8 dynamic", &int8),
        dynamic_case("int4 × int8 dynamic", &int4),
        dynamic_case("int4 group-64 × int8 dynamic", &int4_g64),
        dynamic_case("binary × int8 dynamic", &binary),
        dynamic_case("ternary × int8 dynamic", &ternary),
    ];
    drop(w);

    let pk = |k: String| {
        peer.as_ref()
            .and_then(|p| p.get(&k))
            .and_then(Value::as_f64)
    };
    for &b in &batches {
        let x = Array2::from_shape_simple_fn((b, N), || rng.random_range(-1.0f32..1.0));
        println!(
            "\n4096 × 4096, batch {b}, {THREADS} threads; fraction = (weight bytes / time) / {:.1} GB/s (DRAM read, this run); load {}\n",
            dram / 1e9,
            loadavg()
        );
        println!("| case | weight MB | hot ms | hot GB/s | cold ms | cold GB/s | cold fraction | DRAM GB/s beside | fraction of it | PyTorch hot ms | PyTorch cold ms | PyTorch cold fraction of GB/s beside |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in &cases {
            let hot = median(41, |_| (c.run)(0, &x, &pool));
            let n = (3 * c.copies).clamp(21, 201);
            // The DRAM read rate just before and after the cold runs: the
            // neighbours' share of the memory bus drifts within a run.
            let before = bandwidth(&pool, &big, 3);
            let cold = median(n, |i| (c.run)(i, &x, &pool));
            let beside = 0.5 * (before + bandwidth(&pool, &big, 3));
            // The peer's figures for the matching case.
            let (pb, pk_name) = match c.name {
                "dense f32" => (N * N * 4, Some("f32")),
                "int8 per-row" | "int8 × int8 dynamic" => (N * N + 4 * N, Some("dynq_int8")),
                _ => (0, None),
            };
            let ph = pk_name.and_then(|n| pk(format!("torch_linear_{n}_b{b}_hot_ms")));
            let pc = pk_name.and_then(|n| pk(format!("torch_linear_{n}_b{b}_cold_ms")));
            let f = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.3}"));
            // Against the rate the peer measured beside its own cold runs
            // (older peer scripts: this run's rate).
            let prate = pk_name
                .and_then(|n| pk(format!("torch_linear_{n}_b{b}_cold_dram_gbs")))
                .map_or(dram, |g| g * 1e9);
            let pfrac = pc.map_or("—".into(), |ms| {
                format!(
                    "{:.0} % of {:.1}",
                    100.0 * pb as f64 / (ms * 1e-3) / prate,
                    prate / 1e9
                )
            });
            println!(
                "| {} | {:.1} | {:.3} | {:.1} | {:.3} | {:.1} | {:.0} % | {:.1} | {:.0} % | {} | {} | {} |",
                c.name,
                c.bytes as f64 / 1e6,
                hot * 1e3,
                c.bytes as f64 / hot / 1e9,
                cold * 1e3,
                c.bytes as f64 / cold / 1e9,
                100.0 * c.bytes as f64 / cold / dram,
                beside / 1e9,
                100.0 * c.bytes as f64 / cold / beside,
                f(ph),
                f(pc),
                pfrac
            );
        }
    }
    if let Some(p) = &peer {
        println!(
            "\nPyTorch batch 64 (same sitting): f32 hot {} ms, cold {} ms; dynamic int8 hot {} ms, cold {} ms; peer load {} → {}",
            p.get("torch_linear_f32_b64_hot_ms").map_or("—".into(), |v| v.to_string()),
            p.get("torch_linear_f32_b64_cold_ms").map_or("—".into(), |v| v.to_string()),
            p.get("torch_linear_dynq_int8_b64_hot_ms").map_or("—".into(), |v| v.to_string()),
            p.get("torch_linear_dynq_int8_b64_cold_ms").map_or("—".into(), |v| v.to_string()),
            p.get("loadavg_start").map_or("—".into(), |v| v.to_string()),
            p.get("loadavg_end").map_or("—".into(), |v| v.to_string()),
        );
    }
    println!("\nload after: {}", loadavg());
}
