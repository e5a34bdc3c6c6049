//! The compression passes on an executor, beside their peers (PyTorch,
//! numpy, scikit-learn) from the same sitting.
//!
//! * `prune_16M`: 90 % magnitude pruning of a 4096² matrix to CSR: the old
//!   way (keep-mask, then CSR from the mask) and `prune_on` on 1 and 2
//!   threads.
//! * `rsvd_2048`: rank-64 randomized SVD (oversampling 10, 2 power
//!   iterations, as `torch.svd_lowrank(q = 74, niter = 2)`) on 1 and 2 threads.
//! * `kmeans_1M`: the default k-means (k = 256) on 1M standard-normal weights,
//!   and the codebook encoding on 2 threads.
//!
//! Then one table: medians of our cases (exact SVD 2048² included, timed a
//! few times rather than sampled), errors (relative Frobenius for the SVDs,
//! SSE for k-means, checked against naive f64), the load average, and — when
//! `SQUISH_PEER_PYTHON` names a Python with torch/numpy/scikit-learn — the
//! peers' figures from `benches/peers/peers.py`, run by this bench first.
//!
//! ```text
//! SQUISH_PEER_PYTHON=/work/venv/bin/python cargo bench --bench passes
//! SQUISH_PASSES_TABLE_ONLY=1 ...   # skip the criterion groups
//! SQUISH_PASSES_ONLY=svd ...       # only these sections (prune, svd, kmeans),
//!                                  # criterion groups, table rows and peers
//! cargo bench --bench passes -- rsvd_2048_r64   # one criterion group
//! ```

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use criterion::Criterion;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;
use squish::compression::lowrank::{RandomizedSvd, Svd, SvdBackend};
use squish::compression::sharing::KMeans;
use squish::matrix::CompressedMatrix;
use squish::parallel::{ParallelExecutor, Sequential, ThreadPool};
use squish::pruning::{Magnitude, Pruner};
use squish::quantization::Quantizer;

fn normal(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut r))
}

/// Columns scaled by 1 / (1 + j/32): a decaying spectrum, as in trained weights.
fn decaying(n: usize, seed: u64) -> Array2<f32> {
    let mut w = normal(n, n, seed);
    for (j, mut c) in w.columns_mut().into_iter().enumerate() {
        c *= 1.0 / (1.0 + j as f32 / 32.0);
    }
    w
}

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

/// The sections of this bench (and of the peer script).
const SECTIONS: [&str; 3] = ["prune", "svd", "kmeans"];

/// Whether `SQUISH_PASSES_ONLY` (a comma-separated list; all when unset)
/// names `section`.
fn wanted(section: &str) -> bool {
    std::env::var("SQUISH_PASSES_ONLY").map_or(true, |v| v.split(',').any(|s| s.trim() == section))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The peer script's JSON, run now (same sitting), or `None`.
fn peers() -> Option<Value> {
    let py = std::env::var("SQUISH_PEER_PYTHON").ok()?;
    println!("running the peers with {py} (load {})", loadavg());
    let out = Command::new(py)
        .args(["benches/peers/peers.py", "2"])
        .args(SECTIONS.iter().filter(|s| wanted(s)))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peers failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn rel_err(w: &Array2<f32>, svd: &Svd) -> f64 {
    let r = svd.reconstruct();
    let num: f64 = w
        .iter()
        .zip(&r)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = w.iter().map(|&a| (a as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn naive_sse(v: &[f32], c: &[f64]) -> f64 {
    v.iter()
        .map(|&x| {
            c.iter()
                .map(|&c| (x as f64 - c).powi(2))
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

fn criterion_groups(c: &mut Criterion, pool: &ThreadPool) {
    let execs: [(&str, &dyn ParallelExecutor); 2] = [("1t", &Sequential), ("2t", pool)];
    if wanted("prune") {
        let w = normal(4096, 4096, 1);
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let p = Magnitude::params(0.9).check().unwrap();
        let mut g = c.benchmark_group("prune_16M");
        g.sample_size(10);
        g.bench_function("mask_then_csr_1t", |b| {
            b.iter(|| black_box(p.prune(&dense).unwrap()))
        });
        for (name, e) in execs {
            g.bench_function(format!("to_csr_{name}"), |b| {
                b.iter(|| black_box(p.prune_on(&dense, e).unwrap()))
            });
            g.bench_function(format!("mask_{name}"), |b| {
                b.iter(|| black_box(p.mask_on(w.view(), e).unwrap()))
            });
        }
        g.finish();
    }
    if wanted("svd") {
        let a = normal(2048, 2048, 2);
        let rs = RandomizedSvd::params(64).check().unwrap();
        let mut g = c.benchmark_group("rsvd_2048_r64");
        g.sample_size(10);
        for (name, e) in execs {
            g.bench_function(name, |b| {
                b.iter(|| black_box(rs.compute(a.view(), e).unwrap()))
            });
        }
        g.finish();
    }
    if wanted("kmeans") {
        let v: Vec<f32> = normal(1, 1 << 20, 3).into_raw_vec_and_offset().0;
        let km = KMeans::params(256).check().unwrap();
        let m = CompressedMatrix::from_dense(
            Array2::from_shape_vec((1024, 1024), v.clone())
                .unwrap()
                .view(),
        )
        .unwrap();
        let mut g = c.benchmark_group("kmeans_1M_k256");
        g.sample_size(10);
        g.bench_function("fit_default", |b| b.iter(|| black_box(km.fit(&v).unwrap())));
        g.bench_function("encode_2t", |b| {
            b.iter(|| black_box(km.quantize_on(&m, pool).unwrap()))
        });
        g.finish();
    }
}

fn table(pool: &ThreadPool, peer: Option<&Value>) {
    let pf = |k: &str| {
        peer.and_then(|p| p.get(k))
            .and_then(Value::as_f64)
            .map_or("—".to_string(), |v| format!("{v:.4}"))
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if wanted("prune") {
        // Pruning.
        let w = normal(4096, 4096, 1);
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let p = Magnitude::params(0.9).check().unwrap();
        let old = median_ms(5, || {
            black_box(p.prune(&dense).unwrap());
        });
        let t1 = median_ms(9, || {
            black_box(p.prune_on(&dense, &Sequential).unwrap());
        });
        let t2 = median_ms(9, || {
            black_box(p.prune_on(&dense, pool).unwrap());
        });
        assert_eq!(p.prune_on(&dense, pool).unwrap(), p.prune(&dense).unwrap());
        rows.push((
            "90 % magnitude prune → CSR, 16M (ms)".into(),
            format!("{t2:.1} (2t), {t1:.1} (1t); mask + CSR {old:.1} (1t)"),
            format!(
                "torch.nn.utils.prune {} / kthvalue→CSR {} / np.partition {}",
                pf("torch_l1_unstructured_16M_90pct_ms"),
                pf("torch_kthvalue_to_csr_16M_90pct_ms"),
                pf("numpy_partition_threshold_16M_ms")
            ),
        ));
    }
    if wanted("svd") {
        // Randomized SVD.
        let rs = RandomizedSvd::params(64).check().unwrap();
        let a = normal(2048, 2048, 2);
        let t1 = median_ms(5, || {
            black_box(rs.compute(a.view(), &Sequential).unwrap());
        });
        let t2 = median_ms(7, || {
            black_box(rs.compute(a.view(), pool).unwrap());
        });
        rows.push((
            "rank-64 randomized SVD 2048² (ms)".into(),
            format!("{t2:.1} (2t), {t1:.1} (1t)"),
            format!("torch.svd_lowrank {}", pf("torch_svd_lowrank64_2048_ms")),
        ));
        for (name, m) in [("gaussian", a.clone()), ("decay", decaying(2048, 4))] {
            let e = rel_err(&m, &rs.compute(m.view(), pool).unwrap().svd);
            rows.push((
                format!("rank-64 rel. Frobenius error, {name}"),
                format!("{e:.5}"),
                format!(
                    "torch {} (best rank 64: {})",
                    pf(&format!("torch_svd_lowrank64_2048_{name}_relerr")),
                    pf(&format!("best_rank64_2048_{name}_relerr"))
                ),
            ));
        }
        // Exact SVD.
        let t1 = median_ms(1, || {
            black_box(Svd::exact_on(a.view(), SvdBackend::Faer, &Sequential).unwrap());
        });
        let t2 = median_ms(3, || {
            black_box(Svd::exact_on(a.view(), SvdBackend::Faer, pool).unwrap());
        });
        rows.push((
            "exact thin SVD 2048² (ms)".into(),
            format!("{t2:.0} (2t), {t1:.0} (1t; the same bits)"),
            format!("torch.linalg.svd {}", pf("torch_svd_full_2048_ms")),
        ));
    }
    if wanted("kmeans") {
        // k-means.
        let v: Vec<f32> = normal(1, 1_000_000, 3).into_raw_vec_and_offset().0;
        for k in [16usize, 256] {
            let km = KMeans::params(k).check().unwrap();
            let c = km.fit(&v).unwrap();
            let naive = naive_sse(&v, &c.centroids);
            assert!((naive - c.sse).abs() <= 1e-9 * naive);
            let t = median_ms(5, || {
                black_box(km.fit(&v).unwrap());
            });
            let opt = KMeans::params(k).optimal().check().unwrap();
            let s = Instant::now();
            let o = opt.fit(&v).unwrap();
            let to = s.elapsed().as_secs_f64() * 1e3;
            rows.push((
                format!("k-means 1M, k = {k}: ms / SSE"),
                format!(
                    "{t:.1} / {:.2} ({} updates); exact DP {to:.0} / {:.2}",
                    c.sse, c.iterations, o.sse
                ),
                format!(
                    "scikit-learn {} / {}",
                    pf(&format!("sklearn_kmeans_1M_k{k}_ms")),
                    pf(&format!("sklearn_kmeans_1M_k{k}_sse"))
                ),
            ));
        }
    }
    println!("\n| case | squish | peer |\n|---|---|---|");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    println!(
        "\nload average after: {}; peers' load: {} → {}",
        loadavg(),
        peer.and_then(|p| p.get("loadavg_start"))
            .map_or("—".into(), |v| v.to_string()),
        peer.and_then(|p| p.get("loadavg_end"))
            .map_or("—".into(), |v| v.to_string()),
    );
}

fn main() {
    let pool = ThreadPool::new(2).unwrap();
    let peer = peers();
    if std::env::var("SQUISH_PASSES_TABLE_ONLY").is_err() {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c, &pool);
        c.final_summary();
    }
    table(&pool, peer.as_ref());
}
