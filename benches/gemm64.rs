//! 4096 × 4096 at GEMM batch sizes (8, 16, 64, 256) on two threads, next to
//! the machine's compute peaks and PyTorch (issue #21, the compute-bound
//! regime): dense f32, int8 × int8 and int4 × int8 with dynamic per-row int8
//! activations, and the weight-only encodings (f32 activations).
//!
//! The peaks are measured in the same run: a tight loop of independent
//! `vpdpbusd` (u8 × s8 → i32, 64 multiply-adds each) and of `vfmadd` (16 f32
//! multiply-adds each) on 2 threads. The table gives each time, its speedup
//! over squish's dense f32, and the fraction of the matching peak it reaches
//! (`4096·4096·batch` multiply-adds ÷ time ÷ peak: f32 peak for f32
//! activations, VNNI peak for int8 activations).
//!
//! With `SQUISH_PEER_PYTHON` naming a Python with torch, the PyTorch peer
//! (`benches/peers/peers.py 2 gemm`: `torch.nn.functional.linear` f32 and
//! `quantize_dynamic` int8 `Linear`) runs first, in the same sitting.
//!
//! ```text
//! SQUISH_PEER_PYTHON=/work/venv/bin/python cargo bench --bench gemm64
//! cargo bench --bench gemm64 -- 8,64          # chosen batch sizes
//! cargo bench --bench gemm64 -- 64 int4       # cases whose name contains "int4"
//! ```

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;
use squish::kernels::Tier;
use squish::nn::gemm::{linear_f32, linear_tiled};
use squish::prelude::*;
use squish::quantization::DynamicInt8;

const N: usize = 4096;
const THREADS: usize = 2;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Multiply-adds per second of `f(iters)` (which does `per_iter` of them per
/// iteration) on [`THREADS`] threads, best of 3.
fn peak(f: fn(usize) -> u64, per_iter: f64) -> f64 {
    let iters = 5_000_000;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                let h: Vec<_> = (0..THREADS).map(|_| s.spawn(move || f(iters))).collect();
                h.into_iter().for_each(|h| {
                    black_box(h.join().unwrap());
                });
            });
            THREADS as f64 * iters as f64 * per_iter / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
mod loops {
    use std::arch::x86_64::*;

    /// 12 independent `vpdpbusd` chains (latency × throughput covered).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni(iters: usize) -> u64 {
        let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbusd_epi32(*v, a, b);
            }
        }
        acc.iter()
            .map(|v| _mm512_reduce_add_epi32(*v) as u32 as u64)
            .sum()
    }

    /// 12 independent `vfmadd` chains.
    #[target_feature(enable = "avx512f")]
    unsafe fn fma(iters: usize) -> u64 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-3));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm512_reduce_add_ps(*v) as u64).sum()
    }

    pub fn vnni_safe(iters: usize) -> u64 {
        // SAFETY: called only when the CPU has AVX-512 VNNI (checked by the caller).
        unsafe { vnni(iters) }
    }

    pub fn fma_safe(iters: usize) -> u64 {
        // SAFETY: called only when the CPU has AVX-512 F (checked by the caller).
        unsafe { fma(iters) }
    }
}

/// Median of repeated runs: at least 3 and until ~1.5 s or 15 runs.
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < 3 || (ts.len() < 15 && start.elapsed() < Duration::from_millis(1500)) {
        let t = Instant::now();
        f();
        ts.push(t.elapsed());
    }
    ts.sort();
    ts[ts.len() / 2]
}

fn peers() -> Option<Value> {
    let py = std::env::var("SQUISH_PEER_PYTHON").ok()?;
    println!("running the PyTorch peer with {py} (load {})", loadavg());
    let out = Command::new(py)
        .args(["benches/peers/peers.py", "2", "gemm"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let batches: Vec<usize> = args
        .first()
        .map(|a| a.split(',').filter_map(|b| b.parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or(vec![8, 16, 64, 256]);
    let filter = args.get(1).cloned().unwrap_or_default();

    let peer = peers();
    let load0 = loadavg();
    let tier = Tier::detect();
    #[cfg(target_arch = "x86_64")]
    let (vnni_peak, fma_peak) = (
        (tier >= Tier::Avx512Vnni).then(|| peak(loops::vnni_safe, 12.0 * 64.0)),
        (tier >= Tier::Avx512).then(|| peak(loops::fma_safe, 12.0 * 16.0)),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (vnni_peak, fma_peak): (Option<f64>, Option<f64>) = (None, None);
    println!("tier {tier:?}, {THREADS} threads, load {load0}");
    if let Some(p) = vnni_peak {
        println!(
            "VNNI peak (vpdpbusd zmm): {:.0} G int8 MAC/s -> 4096²×64 roofline {:.2} ms",
            p / 1e9,
            (N * N * 64) as f64 / p * 1e3
        );
    }
    if let Some(p) = fma_peak {
        println!(
            "f32 FMA peak (vfmadd zmm): {:.0} G f32 MAC/s -> 4096²×64 roofline {:.2} ms",
            p / 1e9,
            (N * N * 64) as f64 / p * 1e3
        );
    }

    let mut rng = StdRng::seed_from_u64(21);
    let w = Array2::from_shape_simple_fn((N, N), || {
        let v: f32 = StandardNormal.sample(&mut rng);
        v * 0.02
    });
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let q = |bits: u8, g: Option<usize>| {
        let p = IntQuantizer::params(bits);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        p.check().unwrap().quantize(&dense).unwrap()
    };
    let int8 = q(8, None);
    let int4: Vec<(usize, CompressedMatrix)> = [None, Some(32), Some(64), Some(128)]
        .into_iter()
        .map(|g| (g.unwrap_or(0), q(4, g)))
        .collect();
    let binary = Binary.quantize(&dense).unwrap();
    let ternary = Ternary.quantize(&dense).unwrap();
    let pool = ThreadPool::new(THREADS).unwrap();

    // (name, activations are int8, run)
    type Case<'a> = (String, bool, Box<dyn Fn(&Array2<f32>) -> Array2<f32> + 'a>);
    let mut cases: Vec<Case> = Vec::new();
    let p = &pool;
    cases.push((
        "dense f32 (CompressedMatrix)".into(),
        false,
        Box::new(|x| dense.matmul_on(x, p).unwrap()),
    ));
    cases.push((
        "dense f32 (nn::gemm, packed GEMM)".into(),
        false,
        Box::new(|x| linear_f32(x.view(), w.view(), None, p)),
    ));
    let d8 = DynamicInt8::new(int8.clone()).unwrap();
    cases.push((
        "int8 × int8 per-row".into(),
        true,
        Box::new(move |x| d8.matmul(x.view(), p).unwrap()),
    ));
    for (g, m) in &int4 {
        let d = DynamicInt8::new(m.clone()).unwrap();
        let name = if *g == 0 {
            "int4 × int8 per-row".to_string()
        } else {
            format!("int4 × int8 group-{g}")
        };
        cases.push((
            name,
            true,
            Box::new(move |x| d.matmul(x.view(), p).unwrap()),
        ));
    }
    let wo: Vec<(&str, &CompressedMatrix)> = vec![
        ("int8", &int8),
        ("int4 per-row", &int4[0].1),
        ("int4 group-64", &int4[2].1),
        ("binary", &binary),
        ("ternary", &ternary),
    ];
    for (name, m) in wo {
        cases.push((
            format!("{name} weight-only (matmul)"),
            false,
            Box::new(move |x| m.matmul_on(x, p).unwrap()),
        ));
        if name == "int8" {
            cases.push((
                format!("{name} weight-only (nn tiled GEMM)"),
                false,
                Box::new(move |x| linear_tiled(x.view(), m, None, p)),
            ));
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut header = "| case |".to_string();
    let mut sep = "|---|".to_string();
    for b in &batches {
        header += &format!(" b{b} ms | ×dense | %peak |");
        sep += "---:|---:|---:|";
    }
    let mut lines = vec![header, sep];
    if let Some(pv) = &peer {
        for (key, name, int8act) in [
            ("f32", "PyTorch f32 (F.linear)", false),
            ("dyn_int8", "PyTorch dynamic int8", true),
        ] {
            let mut l = format!("| {name} |");
            for b in &batches {
                match pv[format!("gemm_{b}_{key}_ms")].as_f64() {
                    Some(t) => {
                        let pk = if int8act { vnni_peak } else { fma_peak };
                        let frac = pk.map_or(String::from("–"), |p| {
                            format!("{:.0} %", (N * N * b) as f64 / (t * 1e-3) / p * 100.0)
                        });
                        l += &format!(" {t:.2} | | {frac} |");
                    }
                    None => l += " – | | |",
                }
            }
            lines.push(l);
        }
    }
    let mut dense_ms = vec![0.0; batches.len()];
    for (name, int8act, run) in &cases {
        if !filter.is_empty() && !name.contains(&filter) && !name.starts_with("dense f32 (C") {
            continue;
        }
        let mut l = format!("| {name} |");
        for (i, &b) in batches.iter().enumerate() {
            let x = Array2::from_shape_simple_fn((b, N), || {
                let v: f32 = StandardNormal.sample(&mut rng);
                v
            });
            let t = ms(median(|| {
                black_box(run(&x));
            }));
            if name.starts_with("dense f32 (C") {
                dense_ms[i] = t;
            }
            let pk = if *int8act { vnni_peak } else { fma_peak };
            let frac = pk.map_or(String::from("–"), |p| {
                format!("{:.0} %", (N * N * b) as f64 / (t * 1e-3) / p * 100.0)
            });
            l += &format!(" {t:.2} | {:.2} | {frac} |", dense_ms[i] / t);
        }
        println!("{l}");
        lines.push(l);
    }
    println!(
        "\n4096 × 4096, {THREADS} threads, medians; load {load0} at start, {} at end",
        loadavg()
    );
    if let Some(pv) = &peer {
        println!(
            "PyTorch peer run first in this sitting (load {:?} → {:?})",
            pv["loadavg_start"], pv["loadavg_end"]
        );
    }
    for l in lines {
        println!("{l}");
    }
}
