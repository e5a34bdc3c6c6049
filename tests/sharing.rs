//! Weight sharing: exact and Lloyd 1-D k-means, codebook encoding, codebook
//! matmul, Huffman coding.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use squish::compression::sharing::*;
use squish::matrix::{CodebookScope, Component, CompressedMatrix, PackedBits, Values};
use squish::parallel::{Sequential, ThreadPool};
use squish::prelude::*;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 0.05).unwrap();
    (0..n).map(|_| d.sample(&mut r)).collect()
}

/// Weight-like data: a heavy-tailed mixture with exact zeros and repeats.
fn real_shaped(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    let narrow = Normal::new(0.0f32, 0.02).unwrap();
    let wide = Normal::new(0.0f32, 0.2).unwrap();
    (0..n)
        .map(|_| match r.random_range(0..10) {
            0 => 0.0,
            1 => wide.sample(&mut r),
            2 => (narrow.sample(&mut r) * 64.0).round() / 64.0,
            _ => narrow.sample(&mut r),
        })
        .collect()
}

/// SSE of nearest-centroid assignment, naive f64.
fn naive_sse(values: &[f32], centroids: &[f64]) -> f64 {
    values
        .iter()
        .map(|&x| {
            centroids
                .iter()
                .map(|&c| (x as f64 - c).powi(2))
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// Minimum SSE over all partitions of `values` into exactly `k` non-empty
/// sets (restricted growth strings), naive f64.
fn brute_force(values: &[f32], k: usize) -> f64 {
    let n = values.len();
    let mut labels = vec![0usize; n];
    let mut best = f64::INFINITY;
    fn rec(i: usize, used: usize, k: usize, v: &[f32], l: &mut Vec<usize>, best: &mut f64) {
        let n = v.len();
        if n - i < k - used {
            return;
        }
        if i == n {
            if used == k {
                let mut s = vec![0.0f64; k];
                let mut c = vec![0.0f64; k];
                for (x, &g) in v.iter().zip(l.iter()) {
                    s[g] += *x as f64;
                    c[g] += 1.0;
                }
                let sse: f64 = v
                    .iter()
                    .zip(l.iter())
                    .map(|(x, &g)| (*x as f64 - s[g] / c[g]).powi(2))
                    .sum();
                *best = best.min(sse);
            }
            return;
        }
        for g in 0..=used.min(k - 1) {
            l[i] = g;
            rec(i + 1, used.max(g + 1), k, v, l, best);
        }
    }
    rec(0, 0, k, values, &mut labels, &mut best);
    best
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-12
}

#[test]
fn dp_equals_brute_force_on_small_inputs() {
    let mut r = StdRng::seed_from_u64(7);
    for case in 0..40 {
        let n = r.random_range(2..=12);
        // Some cases with repeated values.
        let values: Vec<f32> = (0..n)
            .map(|_| {
                if case % 3 == 0 {
                    r.random_range(0..5) as f32 * 0.5
                } else {
                    r.random_range(-1.0f32..1.0)
                }
            })
            .collect();
        let distinct = Histogram::new(&values).unwrap().len();
        for k in 2..=distinct.min(if n > 10 { 4 } else { 5 }) {
            let brute = brute_force(&values, k);
            let dp = KMeans::params(k).optimal().check().unwrap();
            let c = dp.fit(&values).unwrap();
            assert!(
                close(c.sse, brute, 1e-9),
                "n={n} k={k}: dp {} brute {brute}",
                c.sse
            );
            assert!(close(naive_sse(&values, &c.centroids), brute, 1e-9));
            // The Hirschberg path (no backtracking memory) finds the same optimum.
            let h = KMeans::params(k).optimal().dp_memory(0).check().unwrap();
            assert!(close(h.fit(&values).unwrap().sse, brute, 1e-9));
            // So does the divide-and-conquer layer, with and without Hirschberg.
            for mem in [0, DEFAULT_DP_MEMORY] {
                let d = KMeans::params(k)
                    .optimal()
                    .dp_layer(DpLayer::DivideAndConquer)
                    .dp_memory(mem)
                    .check()
                    .unwrap();
                assert!(close(d.fit(&values).unwrap().sse, brute, 1e-9));
            }
        }
    }
}

#[test]
fn dp_never_worse_than_lloyd_for_any_seed() {
    for (name, values) in [
        ("gaussian", gaussian(20_000, 1)),
        ("real-shaped", real_shaped(20_000, 2)),
    ] {
        for k in [2, 5, 16, 64] {
            let opt = KMeans::params(k)
                .optimal()
                .check()
                .unwrap()
                .fit(&values)
                .unwrap();
            assert!(close(naive_sse(&values, &opt.centroids), opt.sse, 1e-9));
            let mut inits = vec![Init::Linear, Init::Density];
            inits.extend((0..8).map(|seed| Init::KMeansPlusPlus { seed }));
            for init in inits {
                let l = KMeans::params(k)
                    .lloyd(init)
                    .check()
                    .unwrap()
                    .fit(&values)
                    .unwrap();
                assert!(
                    opt.sse <= l.sse * (1.0 + 1e-12),
                    "{name} k={k} {init:?}: dp {} > lloyd {}",
                    opt.sse,
                    l.sse
                );
                assert!(close(naive_sse(&values, &l.centroids), l.sse, 1e-9));
            }
        }
    }
}

#[test]
fn smawk_layer_matches_divide_and_conquer_layer() {
    // Exact ties are possible with repeated structure, so compare partitions
    // only on continuous data, and SSE everywhere.
    for (name, values, same_bounds) in [
        ("gaussian", gaussian(20_000, 11), true),
        ("real-shaped", real_shaped(20_000, 12), false),
        (
            "uniform",
            {
                let mut r = StdRng::seed_from_u64(13);
                (0..5_000).map(|_| r.random_range(-1.0f32..1.0)).collect()
            },
            true,
        ),
    ] {
        let h = Histogram::new(&values).unwrap();
        for k in [2, 3, 7, 16, 40] {
            for mem in [0, DEFAULT_DP_MEMORY] {
                let a = optimal_with_layer(&h, k, mem, DpLayer::Smawk);
                let b = optimal_with_layer(&h, k, mem, DpLayer::DivideAndConquer);
                assert!(
                    close(a.sse, b.sse, 1e-12),
                    "{name} k={k} mem={mem}: {} vs {}",
                    a.sse,
                    b.sse
                );
                if same_bounds {
                    assert_eq!(a.bounds, b.bounds, "{name} k={k} mem={mem}");
                }
            }
        }
    }
}

#[test]
fn hirschberg_matches_direct_dp() {
    let values = real_shaped(30_000, 5);
    for k in [3, 16, 33] {
        let a = KMeans::params(k)
            .optimal()
            .check()
            .unwrap()
            .fit(&values)
            .unwrap();
        let b = KMeans::params(k)
            .optimal()
            .dp_memory(0)
            .check()
            .unwrap()
            .fit(&values)
            .unwrap();
        assert!(close(a.sse, b.sse, 1e-10), "k={k}: {} vs {}", a.sse, b.sse);
    }
}

#[test]
fn lloyd_never_increases_sse() {
    for seed in 0..10 {
        let values = real_shaped(5_000, 100 + seed);
        for init in [Init::Linear, Init::Density, Init::KMeansPlusPlus { seed }] {
            let c = KMeans::params(32)
                .lloyd(init)
                .check()
                .unwrap()
                .fit(&values)
                .unwrap();
            assert!(c.sse_history.len() >= 2);
            for w in c.sse_history.windows(2) {
                assert!(
                    w[1] <= w[0] * (1.0 + 1e-12),
                    "{init:?}: {} -> {}",
                    w[0],
                    w[1]
                );
            }
            // Converged: centroids are the means of their clusters.
            if c.iterations < 300 {
                let h = Histogram::new(&values).unwrap();
                for (t, w) in c.bounds.windows(2).enumerate() {
                    if w[1] > w[0] {
                        assert!((h.segment_mean(w[0], w[1]) - c.centroids[t]).abs() < 1e-9);
                    }
                }
            }
        }
    }
}

/// Textbook O(n·k) Lloyd in f64, the independent reference.
fn naive_lloyd(values: &[f32], mut c: Vec<f64>, iters: usize) -> Vec<f64> {
    for _ in 0..iters {
        let mut s = vec![0.0; c.len()];
        let mut n = vec![0.0; c.len()];
        for &x in values {
            let x = x as f64;
            let (mut bi, mut bd) = (0, f64::INFINITY);
            for (t, &ct) in c.iter().enumerate() {
                let d = (x - ct).abs();
                // Ties go to the upper centroid, as in the histogram version.
                if d <= bd {
                    bi = t;
                    bd = d;
                }
            }
            s[bi] += x;
            n[bi] += 1.0;
        }
        for t in 0..c.len() {
            if n[t] > 0.0 {
                c[t] = s[t] / n[t];
            }
        }
    }
    c
}

#[test]
fn histogram_lloyd_matches_textbook_lloyd() {
    let values = gaussian(4_000, 9);
    let h = Histogram::new(&values).unwrap();
    let init = Init::KMeansPlusPlus { seed: 3 }.centroids(&h, 8);
    let fast = lloyd(&h, init.clone(), 5);
    let slow = naive_lloyd(&values, init, 5);
    for (a, b) in fast.centroids.iter().zip(&slow) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
}

#[test]
fn weighted_equals_repeated_values() {
    let mut r = StdRng::seed_from_u64(11);
    let values: Vec<f32> = (0..300).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let weights: Vec<f32> = (0..300).map(|_| r.random_range(0..4) as f32).collect();
    let repeated: Vec<f32> = values
        .iter()
        .zip(&weights)
        .flat_map(|(&v, &w)| std::iter::repeat_n(v, w as usize))
        .collect();
    let km = KMeans::params(7).optimal().check().unwrap();
    let a = km.fit_weighted(&values, &weights).unwrap();
    let b = km.fit(&repeated).unwrap();
    assert!(close(a.sse, b.sse, 1e-9));
    for (x, y) in a.centroids.iter().zip(&b.centroids) {
        assert!((x - y).abs() < 1e-9);
    }
    // Importance in the quantizer: a heavily weighted value is reproduced almost exactly.
    let w = Array2::from_shape_vec((1, 300), values.clone()).unwrap();
    let mut imp = vec![1.0f32; 300];
    imp[17] = 1e6;
    let q = KMeans::params(4).optimal().importance(imp).check().unwrap();
    let m = q
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    assert!((m.to_dense()[[0, 17]] - values[17]).abs() < 1e-3);
}

#[test]
fn packed_indices_round_trip_every_width() {
    let mut r = StdRng::seed_from_u64(3);
    for width in 1u8..=16 {
        let vals: Vec<u16> = (0..1000)
            .map(|_| r.random_range(0..(1u32 << width)) as u16)
            .collect();
        let p = PackedBits::pack(width, &vals).unwrap();
        assert_eq!(p.unpack(), vals);
        assert_eq!(p.bytes().len(), (1000 * width as usize).div_ceil(8));
        // Through the quantizer: k with this index width, indices decode to nearest centroids.
        let k = if width == 1 {
            2
        } else {
            (1usize << (width - 1)) + 1
        };
        let n = (2 * k).max(64);
        let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32 * 0.001).collect();
        let w = Array2::from_shape_vec((1, n), data.clone()).unwrap();
        // A linear start: the default's coarse DP costs O(k²) at k = 32769.
        let q = KMeans::params(k)
            .lloyd(Init::Linear)
            .max_iter(3)
            .check()
            .unwrap();
        let m = q
            .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        let Some(Values::Codebook(cb)) = m.values() else {
            panic!("codebook expected")
        };
        assert_eq!(cb.indices().width(), width);
        assert_eq!(cb.indices().len(), n);
        let cents = cb.centroids();
        assert!(cents.windows(2).all(|p| p[0] <= p[1]));
        for (j, &x) in data.iter().enumerate() {
            // Distance to sorted centroids is unimodal: nearest = no closer neighbour.
            let i = cb.indices().get(j) as usize;
            let d = (cents[i] - x).abs();
            assert!(i == 0 || d <= (cents[i - 1] - x).abs(), "width {width}");
            assert!(i + 1 == k || d <= (cents[i + 1] - x).abs(), "width {width}");
        }
    }
}

#[test]
fn huffman_round_trip_and_entropy_bound() {
    let mut r = StdRng::seed_from_u64(21);
    let cases: Vec<(usize, Vec<u32>)> = vec![
        (1, vec![0; 100]),
        (2, vec![0, 1, 1, 1]),
        (16, (0..10_000).map(|_| r.random_range(0..16)).collect()),
        // Geometric: very skewed, long codes.
        (
            40,
            (0..50_000)
                .map(|_| {
                    let mut s = 0;
                    while s < 39 && r.random::<f64>() < 0.6 {
                        s += 1;
                    }
                    s
                })
                .collect(),
        ),
        // Quantized Gaussian-like indices over 256 symbols.
        (
            256,
            gaussian(20_000, 4)
                .iter()
                .map(|&x| ((x * 400.0).round() as i32 + 128).clamp(0, 255) as u32)
                .collect(),
        ),
    ];
    for (alpha, syms) in cases {
        let code = HuffmanCode::from_symbols(&syms, alpha).unwrap();
        let stream = code.encode(&syms).unwrap();
        assert_eq!(code.decode(&stream, syms.len()).unwrap(), syms);
        let counts = symbol_counts(&syms, alpha);
        let exact: u64 = syms
            .iter()
            .map(|&s| code.lengths()[s as usize] as u64)
            .sum();
        assert_eq!(stream.bits(), exact);
        assert_eq!(code.coded_bits(&counts), exact);
        assert_eq!(stream.bytes().len() as u64, exact.div_ceil(8));
        let h = entropy_bits(&counts);
        let l = exact as f64 / syms.len() as f64;
        // One used symbol still costs 1 bit (H = 0): the bound is L ≤ H + 1 there.
        let used = counts.iter().filter(|&&c| c > 0).count();
        assert!(
            l >= h - 1e-9 && (l < h + 1.0 || (used == 1 && l == 1.0)),
            "alphabet {alpha}: L {l} H {h}"
        );
        // Kraft: a complete prefix code.
        let kraft: f64 = code
            .lengths()
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| (-(l as f64)).exp2())
            .sum();
        assert!(kraft <= 1.0 + 1e-12);
    }
    // A classic example.
    let code = HuffmanCode::from_counts(&[4, 2, 1, 1]).unwrap();
    assert_eq!(code.lengths(), &[1, 2, 3, 3]);
}

#[test]
fn huffman_errors() {
    assert!(HuffmanCode::from_counts(&[0, 0]).is_err());
    assert!(HuffmanCode::from_counts(&[]).is_err());
    assert!(HuffmanCode::from_symbols(&[5], 4).is_err());
    let code = HuffmanCode::from_counts(&[3, 0, 1]).unwrap();
    assert!(code.encode(&[1]).is_err()); // symbol without a code
    let s = code.encode(&[0, 2, 0]).unwrap();
    assert!(code.decode(&s, 4).is_err()); // truncated
    assert!(HuffmanCode::from_lengths(vec![1, 1, 1]).is_err()); // Kraft
    assert!(HuffmanCode::from_lengths(vec![60]).is_err());
    assert!(BitStream::from_bytes(vec![0; 2], 20).is_err());
}

#[test]
fn sparse_gaps_round_trip_and_code() {
    let w = Array2::from_shape_fn((20, 300), |(i, j)| ((i * 131 + j * 71) % 97) as f32 - 48.0);
    let m = Magnitude::params(0.9)
        .check()
        .unwrap()
        .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let squish::matrix::Structure::Csr(csr) = m.structure() else {
        panic!("csr expected")
    };
    let cols: Vec<usize> = (0..csr.col_idx().len())
        .map(|k| csr.col_idx().get(k))
        .collect();
    let gaps = column_gaps(csr.row_ptr(), |k| cols[k]);
    assert_eq!(columns_from_gaps(csr.row_ptr(), &gaps), cols);
    let code = HuffmanCode::from_symbols(&gaps, 300).unwrap();
    let s = code.encode(&gaps).unwrap();
    assert_eq!(code.decode(&s, gaps.len()).unwrap(), gaps);
    // Gaps code below the 16 bits a u16 column index takes.
    assert!((s.bits() as f64) < 16.0 * gaps.len() as f64);
}

#[test]
fn huffman_matrix_storage_is_exact_and_lossless() {
    let w = Array2::from_shape_vec((64, 128), real_shaped(64 * 128, 8)).unwrap();
    for per_row in [false, true] {
        let mut p = KMeans::params(16).optimal();
        if per_row {
            p = p.per_row();
        }
        let m = Pipeline::new()
            .prune(Magnitude::params(0.6).check().unwrap())
            .quantize(p.check().unwrap())
            .run(w.view())
            .unwrap()
            .matrix;
        let h = HuffmanMatrix::encode(&m).unwrap();
        assert_eq!(h.decode().unwrap(), m);
        let Some(Values::Codebook(cb)) = m.values() else {
            panic!()
        };
        let syms: Vec<u32> = cb.indices().unpack().iter().map(|&s| s as u32).collect();
        let counts = symbol_counts(&syms, 16);
        let bits: u64 = counts
            .iter()
            .zip(h.values().code().lengths())
            .map(|(&c, &l)| c * l as u64)
            .sum();
        assert_eq!(h.values().coded_bits(), bits);
        let plain = m.storage();
        let coded = h.storage();
        assert_eq!(coded.get(Component::Values) as u64, bits.div_ceil(8));
        assert_eq!(
            coded.get(Component::Codebook),
            plain.get(Component::Codebook) + 16
        );
        assert_eq!(coded.get(Component::Indices), plain.get(Component::Indices));
        assert_eq!(
            coded.get(Component::Metadata),
            plain.get(Component::Metadata)
        );
        let l = bits as f64 / syms.len() as f64;
        let e = h.values().entropy_bits_per_index();
        assert!(l >= e - 1e-9 && l < e + 1.0);
    }
    // Only codebook values can be coded.
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    assert!(matches!(
        HuffmanMatrix::encode(&dense),
        Err(SquishError::Incompatible { .. })
    ));
}

fn codebook_matrix(
    rows: usize,
    cols: usize,
    k: usize,
    per_row: bool,
    seed: u64,
) -> CompressedMatrix {
    let w = Array2::from_shape_vec((rows, cols), gaussian(rows * cols, seed)).unwrap();
    let mut p = KMeans::params(k).max_iter(10);
    if per_row {
        p = p.per_row();
    }
    p.check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap()
}

#[test]
fn codebook_matmul_equals_reference() {
    let pool = ThreadPool::new(2).unwrap();
    let mut r = StdRng::seed_from_u64(42);
    let shapes = [
        (1, 2),
        (3, 7),
        (17, 32),
        (9, 64),
        (33, 100),
        (40, 257),
        (8, 1030),
    ];
    for (s, &(rows, cols)) in shapes.iter().enumerate() {
        for k in [2, 3, 9, 16, 17, 256, 300] {
            for per_row in [false, true] {
                if k > rows * cols || (per_row && k > cols) {
                    continue;
                }
                let m = codebook_matrix(rows, cols, k, per_row, s as u64);
                let batch = r.random_range(1..=4);
                let x = Array2::from_shape_fn((batch, cols), |_| r.random_range(-1.0f32..1.0));
                let reference = m.matmul_reference(x.view()).unwrap();
                let scale = x.iter().map(|v| v.abs()).sum::<f32>() / batch as f32 * 0.2;
                let mut kernels = vec![CodebookKernel::Auto, CodebookKernel::Bucket];
                let lut_ok = std::arch::is_x86_feature_detected!("avx512f")
                    && (9..=16).contains(&k)
                    && cols % 2 == 0;
                if lut_ok {
                    kernels.push(CodebookKernel::Lut4);
                }
                let gather_ok =
                    std::arch::is_x86_feature_detected!("avx512f") && (129..=256).contains(&k);
                if gather_ok {
                    kernels.push(CodebookKernel::Gather8);
                } else {
                    assert!(
                        codebook_matmul(&m, x.view(), &Sequential, CodebookKernel::Gather8)
                            .is_err()
                    );
                }
                for kern in kernels {
                    let y = codebook_matmul(&m, x.view(), &Sequential, kern).unwrap();
                    let err = (&y - &reference).iter().fold(0.0f32, |a, d| a.max(d.abs()));
                    assert!(
                        err <= 1e-5 * scale.max(1.0),
                        "{rows}x{cols} k={k} {kern:?}: {err}"
                    );
                    // Bit-identical on any executor.
                    let y2 = codebook_matmul(&m, x.view(), &pool, kern).unwrap();
                    assert_eq!(y, y2);
                }
                // The generic matmul routes here.
                assert_eq!(
                    m.matmul(x.view()).unwrap(),
                    codebook_matmul(&m, x.view(), &Sequential, CodebookKernel::Auto).unwrap()
                );
                if !lut_ok {
                    assert!(
                        codebook_matmul(&m, x.view(), &Sequential, CodebookKernel::Lut4).is_err()
                    );
                }
            }
        }
    }
}

#[test]
fn codebook_matmul_errors() {
    let w = Array2::from_shape_fn((4, 6), |(i, j)| (i + j) as f32);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let x = Array2::<f32>::ones((1, 6));
    assert!(matches!(
        codebook_matmul(&dense, x.view(), &Sequential, CodebookKernel::Auto),
        Err(SquishError::Incompatible { .. })
    ));
    let m = codebook_matrix(4, 6, 4, false, 1);
    let bad = Array2::<f32>::ones((1, 5));
    assert!(matches!(
        codebook_matmul(&m, bad.view(), &Sequential, CodebookKernel::Bucket),
        Err(SquishError::ShapeMismatch { .. })
    ));
}

#[test]
fn sharing_a_pruned_matrix_clusters_only_the_nonzeros() {
    let w = Array2::from_shape_vec((32, 64), gaussian(32 * 64, 12)).unwrap();
    let pruned = Magnitude::params(0.8)
        .check()
        .unwrap()
        .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let nnz = pruned.values().unwrap().len();
    let kept: Vec<f32> = pruned.values().unwrap().decode();
    let km = KMeans::params(8).optimal().check().unwrap();
    let shared = km.quantize(&pruned).unwrap();
    assert_eq!(shared.structure().kind(), "csr");
    let Some(Values::Codebook(cb)) = shared.values() else {
        panic!()
    };
    assert_eq!(cb.indices().len(), nnz);
    // The codebook is the optimum for the non-zeros alone.
    let alone = km.fit(&kept).unwrap();
    for (a, b) in cb.centroids().iter().zip(alone.centroids_f32()) {
        assert_eq!(*a, b);
    }
    // Pruned positions stay exactly zero; kept ones are within the codebook.
    let d = shared.to_dense();
    let p = pruned.to_dense();
    for (x, y) in d.iter().zip(p.iter()) {
        if *y == 0.0 {
            assert_eq!(*x, 0.0);
        } else {
            assert!(cb.centroids().contains(x));
        }
    }
    // Sparse matmul through the reference equals dense decode.
    let x = Array2::from_shape_fn((2, 64), |(b, j)| (b + j) as f32 * 0.01);
    let y = shared.matmul(x.view()).unwrap();
    let yd = x.dot(&d.t());
    assert!((&y - &yd).iter().all(|e| e.abs() < 1e-4));
    // 5-bit-ish storage: far below f32 CSR.
    assert!(shared.storage().total() < pruned.storage().total());
}

#[test]
fn per_row_codebooks_and_fewer_distinct_values() {
    // Row 0 has 2 distinct values, row 1 has many: k = 4 pads row 0 exactly.
    let mut w = Array2::from_shape_fn((2, 16), |(_, j)| j as f32 * 0.1);
    for j in 0..16 {
        w[[0, j]] = if j % 2 == 0 { 1.0 } else { -1.0 };
    }
    let m = KMeans::params(4)
        .per_row()
        .optimal()
        .check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let Some(Values::Codebook(cb)) = m.values() else {
        panic!()
    };
    assert_eq!(cb.scope(), CodebookScope::PerRow);
    assert_eq!(cb.centroids().len(), 8);
    assert_eq!(cb.row_codebook(0), &[-1.0, 1.0, 1.0, 1.0]);
    let d = m.to_dense();
    assert_eq!(d.row(0), w.row(0));
    // Row 1: 16 evenly spaced values in 4 clusters of 4: SSE = 4 · Σ(±0.05, ±0.15)² = 0.2.
    let sse: f64 = d
        .row(1)
        .iter()
        .zip(w.row(1))
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    assert!((sse - 0.2).abs() < 1e-6, "{sse}");
    // Per-row encoding is the same on any executor.
    let v = CompressedMatrix::from_dense(w.view()).unwrap();
    let Some(Values::F32(f)) = v.values() else {
        panic!()
    };
    let q = KMeans::params(4).per_row().check().unwrap();
    assert_eq!(
        q.quantize_values_on(f, &Sequential).unwrap(),
        q.quantize_values_on(f, &ThreadPool::new(2).unwrap())
            .unwrap()
    );
    // fit itself rejects k above the number of distinct values.
    assert!(matches!(
        KMeans::params(3).check().unwrap().fit(&[1.0, 1.0, 2.0]),
        Err(SquishError::Sharing(SharingError::TooFewDistinct {
            k: 3,
            distinct: 2
        }))
    ));
}

#[test]
fn typed_errors() {
    for k in [0, 1, 65537] {
        assert!(matches!(
            KMeans::params(k).check(),
            Err(SquishError::Sharing(SharingError::CodebookSize(_)))
        ));
    }
    assert!(KMeans::params(65536).check().is_ok());
    assert!(matches!(
        KMeans::params(4).max_iter(0).check(),
        Err(SquishError::Sharing(SharingError::ZeroIterations))
    ));
    let km = KMeans::params(2).check().unwrap();
    assert!(matches!(
        km.fit(&[1.0, f32::NAN, 2.0]),
        Err(SquishError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        km.fit(&[1.0, f32::INFINITY]),
        Err(SquishError::NonFinite { .. })
    ));
    assert!(matches!(km.fit(&[]), Err(SquishError::Empty { .. })));
    assert!(km.fit_weighted(&[1.0, 2.0], &[1.0]).is_err());
    assert!(km.fit_weighted(&[1.0, 2.0], &[1.0, -1.0]).is_err());
    assert!(km.fit_weighted(&[1.0, 2.0], &[0.0, 0.0]).is_err());
    assert!(km.fit_weighted(&[1.0, 2.0], &[1.0, f32::NAN]).is_err());
    assert!(KMeans::params(2).importance(vec![-1.0]).check().is_err());
    // Importance of the wrong length is caught when quantizing.
    let w = Array2::<f32>::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
    let q = KMeans::params(2).importance(vec![1.0; 5]).check().unwrap();
    assert!(matches!(
        q.quantize(&CompressedMatrix::from_dense(w.view()).unwrap()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    // Values that are already shared cannot be shared again.
    let m = KMeans::params(2)
        .check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    assert!(matches!(
        KMeans::params(2).check().unwrap().quantize(&m),
        Err(SquishError::Incompatible { .. })
    ));
}

#[test]
fn kmeans_plus_plus_is_deterministic() {
    let values = gaussian(10_000, 77);
    let f = |seed| {
        KMeans::params(16)
            .lloyd(Init::KMeansPlusPlus { seed })
            .check()
            .unwrap()
            .fit(&values)
            .unwrap()
    };
    assert_eq!(f(5), f(5));
    assert_ne!(f(5).centroids, f(6).centroids);
}

#[test]
fn default_kmeans_is_near_the_optimum_where_linear_lloyd_stalls() {
    for (name, v, k) in [
        ("gaussian", gaussian(200_000, 31), 64usize),
        ("real-shaped", real_shaped(200_000, 32), 64),
        ("gaussian k=256", gaussian(300_000, 33), 256),
    ] {
        let def = KMeans::params(k).check().unwrap().fit(&v).unwrap();
        assert_eq!(def.k(), k, "{name}");
        // The reported SSE is the SSE of its centroids (naive f64).
        let naive = naive_sse(&v, &def.centroids);
        assert!(
            (def.sse - naive).abs() <= 1e-9 * naive,
            "{name}: {} vs {naive}",
            def.sse
        );
        let opt = KMeans::params(k)
            .optimal()
            .check()
            .unwrap()
            .fit(&v)
            .unwrap();
        let linear = KMeans::params(k)
            .lloyd(Init::Linear)
            .check()
            .unwrap()
            .fit(&v)
            .unwrap();
        assert!(
            def.sse >= opt.sse * (1.0 - 1e-12),
            "{name}: below the optimum?"
        );
        assert!(
            def.sse <= opt.sse * 1.02,
            "{name}: default {} vs optimum {}",
            def.sse,
            opt.sse
        );
        assert!(
            def.sse <= linear.sse,
            "{name}: {} vs linear {}",
            def.sse,
            linear.sse
        );
        assert!(def.iterations < 300, "{name}: did not converge");
    }
    // The companding init: sorted, inside the range, and Lloyd from it
    // within a few percent of the optimum.
    let v = gaussian(200_000, 35);
    let h = Histogram::new(&v).unwrap();
    let c = Init::Companding.centroids(&h, 64);
    assert!(c.windows(2).all(|w| w[0] <= w[1]));
    assert!(c[0] >= h.values()[0] as f64 && c[63] <= h.values()[h.len() - 1] as f64);
    let l = KMeans::params(64)
        .lloyd(Init::Companding)
        .check()
        .unwrap()
        .fit(&v)
        .unwrap();
    let opt = KMeans::params(64)
        .optimal()
        .check()
        .unwrap()
        .fit(&v)
        .unwrap();
    assert!(l.sse <= opt.sse * 1.05, "{} vs {}", l.sse, opt.sse);
    // Fewer distinct values than k: the typed error, as before.
    let few: Vec<f32> = (0..10_000).map(|i| (i % 40) as f32).collect();
    assert!(matches!(
        KMeans::params(64).check().unwrap().fit(&few),
        Err(SquishError::Sharing(SharingError::TooFewDistinct {
            k: 64,
            distinct: 40
        }))
    ));
    // Exactly k distinct values (and a summary that could merge them): zero error.
    let exact: Vec<f32> = (0..200_000).map(|i| (i % 5000) as f32 * 1e-3).collect();
    let c = KMeans::params(5000).check().unwrap().fit(&exact).unwrap();
    // (The reported SSE is a difference of prefix sums: 0 up to round-off.)
    assert!(naive_sse(&exact, &c.centroids) < 1e-9, "{}", c.sse);
}

#[test]
fn codebook_encoding_is_the_same_on_any_executor() {
    let v = real_shaped(300_000, 34);
    let w = Array2::from_shape_vec((300, 1000), v.clone()).unwrap();
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    for km in [
        KMeans::params(256).check().unwrap(),
        KMeans::params(16).per_row().check().unwrap(),
    ] {
        let seq = km.quantize_on(&m, &Sequential).unwrap();
        assert_eq!(km.quantize_on(&m, &pool).unwrap(), seq);
    }
    // Per tensor: every weight decodes to its nearest centroid of the fit.
    let km = KMeans::params(256).check().unwrap();
    let book = km.fit(&v).unwrap().centroids_f32();
    let back = km.quantize_on(&m, &pool).unwrap().to_dense();
    for (&x, &y) in v.iter().zip(back.iter()) {
        let best = book
            .iter()
            .map(|&c| (x as f64 - c as f64).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(book.contains(&y), "{y} is not a centroid");
        assert!((x as f64 - y as f64).abs() <= best + 1e-12, "{x} -> {y}");
    }
}
