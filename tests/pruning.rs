//! Pruning: exact counts, selection against full sorts, global = concatenation,
//! N:M groups, structured norms, scores, schedules, and the sparse kernels
//! against the reference kernel.

use ndarray::{concatenate, s, Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use squish::kernels::dispatch::{kernel_for, Kernel};
use squish::kernels::sparse::{dense_rows_matmul as dense_matmul, sparse_matmul};
use squish::kernels::Tier as KernelPath;
use squish::matrix::{CompressedMatrix, Structure};
use squish::parallel::{Sequential, ThreadPool};
use squish::pipeline::Pipeline;
use squish::pruning::*;
use squish::quantization::IntQuantizer;
use squish::SquishError;

fn normal(rng: &mut StdRng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(rng))
}

/// Values from a tiny set (many ties), both signs, including ±0.
fn tied(rng: &mut StdRng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| {
        let v = rng.random_range(0..6) as f32 * 0.25;
        if rng.random_bool(0.5) {
            -v
        } else {
            v
        }
    })
}

/// Brute force: keep-mask after removing the `count` smallest scores in
/// ascending (score, flat index) order, by a full sort.
fn brute_keep(scores: &[f32], count: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].abs().total_cmp(&scores[b].abs()).then(a.cmp(&b)));
    let mut keep = vec![true; scores.len()];
    for &i in &order[..count] {
        keep[i] = false;
    }
    keep
}

fn flat(a: &Array2<bool>) -> Vec<bool> {
    a.iter().copied().collect()
}

fn zeros(a: &Array2<bool>) -> usize {
    a.iter().filter(|&&k| !k).count()
}

/// Whether `e` rejects the parameter `name` (the pruning family's typed variant for it).
fn is_invalid(e: SquishError, name: &str) -> bool {
    let SquishError::Pruning(e) = e else {
        return false;
    };
    match name {
        "sparsity" => matches!(e, PruningError::Sparsity(_)),
        "min_density" => matches!(e, PruningError::MinDensity(_)),
        "n" => matches!(e, PruningError::NMRatio { .. }),
        "p" => matches!(e, PruningError::NormOrder(_)),
        "target" => matches!(e, PruningError::ScheduleTarget { .. }),
        "steps" => matches!(e, PruningError::Zero(w) if w.contains("steps")),
        "every" => matches!(e, PruningError::Zero(w) if w.contains("every")),
        _ => false,
    }
}

#[test]
fn magnitude_removes_exactly_floor_s_n() {
    let mut rng = StdRng::seed_from_u64(1);
    for (r, c) in [(1, 1), (1, 7), (3, 7), (10, 10), (17, 13)] {
        let w = normal(&mut rng, r, c);
        let n = r * c;
        for i in 0..20 {
            // s = i/20 exactly in decimal; ⌊i·n/20⌋ by integer arithmetic.
            let s = i as f64 / 20.0;
            let keep = Magnitude::params(s)
                .check()
                .unwrap()
                .mask(w.view())
                .unwrap();
            assert_eq!(zeros(&keep), i * n / 20, "{r}x{c} s={s}");
        }
        // Sparsities so small that ⌊s·n⌋ = 0 prune nothing.
        let keep = Magnitude::params(0.5 / n as f64)
            .check()
            .unwrap()
            .mask(w.view())
            .unwrap();
        assert_eq!(zeros(&keep), 0);
    }
    // Decimal sparsities mean what they say (0.29 · 100 = 29, not 28).
    assert_eq!(prune_count(0.29, 100), 29);
    assert_eq!(prune_count(0.57, 100), 57);
    assert_eq!(prune_count(0.999, 10), 9);
}

#[test]
fn kept_set_is_the_top_magnitude_set_with_ties() {
    let mut rng = StdRng::seed_from_u64(2);
    for (r, c) in [(1, 1), (4, 5), (31, 17), (64, 64)] {
        for w in [tied(&mut rng, r, c), normal(&mut rng, r, c)] {
            let data: Vec<f32> = w.iter().copied().collect();
            for s in [0.0, 0.1, 0.33, 0.5, 0.9, 0.99] {
                let keep = Magnitude::params(s)
                    .check()
                    .unwrap()
                    .mask(w.view())
                    .unwrap();
                let count = prune_count(s, data.len());
                assert_eq!(flat(&keep), brute_keep(&data, count), "{r}x{c} s={s}");
            }
        }
    }
    // All equal: the earliest are pruned.
    let w = Array2::from_elem((3, 3), -2.0f32);
    let keep = Magnitude::params(0.5)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    assert_eq!(
        flat(&keep),
        [false, false, false, false, true, true, true, true, true]
    );
}

#[test]
fn selection_matches_a_full_sort_on_large_inputs() {
    let mut rng = StdRng::seed_from_u64(3);
    let data: Vec<f32> = (0..200_000)
        .map(|i| {
            let v: f32 = StandardNormal.sample(&mut rng);
            // Quantize a third of the values to create heavy ties.
            if i % 3 == 0 {
                (v * 8.0).round() / 8.0
            } else {
                v
            }
        })
        .collect();
    let mut sorted: Vec<f32> = data.iter().map(|v| v.abs()).collect();
    sorted.sort_by(f32::total_cmp);
    for count in [1, 17, 100_000, 180_000, 199_999, 200_000] {
        let sel = Selection::smallest(&[&data], count);
        assert_eq!(sel.count(), count);
        assert_eq!(sel.threshold(), sorted[count - 1], "count {count}");
        assert_eq!(
            sel.below(),
            sorted.iter().filter(|&&v| v < sorted[count - 1]).count()
        );
    }
    let keep = {
        let mut k = vec![true; data.len()];
        Selection::smallest(&[&data], 150_000).write_keep(&[&data], &mut [&mut k]);
        k
    };
    assert_eq!(keep, brute_keep(&data, 150_000));
}

#[test]
fn per_row_magnitude_prunes_each_row_to_the_same_count() {
    let mut rng = StdRng::seed_from_u64(4);
    let w = tied(&mut rng, 9, 20);
    let keep = Magnitude::params(0.35)
        .per_row()
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    for (wr, kr) in w.outer_iter().zip(keep.outer_iter()) {
        let data: Vec<f32> = wr.to_vec();
        assert_eq!(kr.to_vec(), brute_keep(&data, 7));
    }
}

#[test]
fn global_equals_magnitude_on_the_concatenation() {
    let mut rng = StdRng::seed_from_u64(5);
    let (a, b, c) = (
        tied(&mut rng, 5, 8),
        normal(&mut rng, 11, 8),
        tied(&mut rng, 3, 8),
    );
    let stack = concatenate(Axis(0), &[a.view(), b.view(), c.view()]).unwrap();
    for s in [0.0, 0.2, 0.5, 0.75, 0.95] {
        let g = Global::params(s).check().unwrap();
        let masks = g
            .masks(&[("a", a.view()), ("b", b.view()), ("c", c.view())])
            .unwrap();
        let whole = Magnitude::params(s)
            .check()
            .unwrap()
            .mask(stack.view())
            .unwrap();
        let joined = concatenate(
            Axis(0),
            &[masks[0].1.view(), masks[1].1.view(), masks[2].1.view()],
        )
        .unwrap();
        assert_eq!(joined, whole, "s={s}");
        assert_eq!(
            masks.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
    // Different shapes: the concatenation of the flattened matrices.
    let (p, q) = (tied(&mut rng, 4, 9), tied(&mut rng, 7, 3));
    let g = Global::params(0.6).check().unwrap();
    let masks = g.masks(&[("p", p.view()), ("q", q.view())]).unwrap();
    let all: Vec<f32> = p.iter().chain(q.iter()).copied().collect();
    let got: Vec<bool> = masks[0]
        .1
        .iter()
        .chain(masks[1].1.iter())
        .copied()
        .collect();
    assert_eq!(got, brute_keep(&all, prune_count(0.6, all.len())));
}

#[test]
fn global_minimum_density_equals_greedy_with_floors() {
    let mut rng = StdRng::seed_from_u64(6);
    // Layer 0 has tiny weights: without a floor it would be wiped out.
    let layers = [
        normal(&mut rng, 6, 10).mapv(|v| v * 0.01),
        tied(&mut rng, 8, 5),
        normal(&mut rng, 4, 12),
    ];
    for (s, d) in [(0.5, 0.3), (0.8, 0.1), (0.9, 0.5), (0.3, 0.0), (0.95, 1.0)] {
        let named: Vec<(&str, ArrayView2<f32>)> = ["x", "y", "z"]
            .iter()
            .zip(&layers)
            .map(|(n, w)| (*n, w.view()))
            .collect();
        let masks = Global::params(s)
            .min_density(d)
            .check()
            .unwrap()
            .masks(&named)
            .unwrap();
        // Greedy: walk (|w|, layer, index) ascending, skip layers at their floor.
        let mut all: Vec<(f32, usize, usize)> = layers
            .iter()
            .enumerate()
            .flat_map(|(l, w)| {
                w.iter()
                    .enumerate()
                    .map(move |(i, v)| (v.abs(), l, i))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let total: usize = layers.iter().map(|w| w.len()).sum();
        let caps: Vec<usize> = layers
            .iter()
            .map(|w| w.len() - (d * w.len() as f64).ceil() as usize)
            .collect();
        let mut left = prune_count(s, total);
        let mut pruned: Vec<Vec<bool>> = layers.iter().map(|w| vec![false; w.len()]).collect();
        let mut used = [0usize; 3];
        for (_, l, i) in all {
            if left == 0 {
                break;
            }
            if used[l] < caps[l] {
                used[l] += 1;
                pruned[l][i] = true;
                left -= 1;
            }
        }
        for l in 0..3 {
            let want: Vec<bool> = pruned[l].iter().map(|p| !p).collect();
            assert_eq!(flat(&masks[l].1), want, "s={s} d={d} layer {l}");
            assert!(
                layers[l].len() - zeros(&masks[l].1)
                    >= (d * layers[l].len() as f64).ceil() as usize
            );
        }
    }
}

#[test]
fn global_prune_gives_csr_and_rejects_bad_input() {
    let mut rng = StdRng::seed_from_u64(7);
    let a = CompressedMatrix::from_dense(normal(&mut rng, 8, 8).view()).unwrap();
    let b = CompressedMatrix::from_dense(normal(&mut rng, 4, 16).view()).unwrap();
    let g = Global::params(0.75).check().unwrap();
    let out = g.prune(&[("a", &a), ("b", &b)]).unwrap();
    assert_eq!(out[0].1.structure().kind(), "csr");
    let nnz: usize = out.iter().map(|(_, m)| m.values().unwrap().len()).sum();
    assert_eq!(nnz, 32);
    assert!(matches!(
        g.masks(&[]).unwrap_err(),
        SquishError::Pruning(PruningError::NoLayers)
    ));
    let w = normal(&mut rng, 2, 2);
    assert!(matches!(
        g.masks(&[("a", w.view()), ("a", w.view())]).unwrap_err(),
        SquishError::Pruning(PruningError::DuplicateName(_))
    ));
    let empty = Array2::<f32>::zeros((0, 3));
    assert!(matches!(
        g.masks(&[("e", empty.view())]).unwrap_err(),
        SquishError::Empty { .. }
    ));
    assert!(is_invalid(
        Global::params(1.0).check().unwrap_err(),
        "sparsity"
    ));
    assert!(is_invalid(
        Global::params(0.5).min_density(1.5).check().unwrap_err(),
        "min_density"
    ));
}

#[test]
fn nm_groups_hold_exactly_n_of_the_largest() {
    let mut rng = StdRng::seed_from_u64(8);
    for (n, m, rows, cols) in [
        (2, 4, 5, 16),
        (1, 2, 3, 6),
        (4, 8, 4, 24),
        (3, 7, 2, 14),
        (2, 4, 1, 4),
    ] {
        for w in [normal(&mut rng, rows, cols), tied(&mut rng, rows, cols)] {
            let p = NMPruner::params(n, m).check().unwrap();
            let keep = p.mask(w.view()).unwrap();
            for (wr, kr) in w.outer_iter().zip(keep.outer_iter()) {
                for (wg, kg) in wr.to_vec().chunks(m).zip(kr.to_vec().chunks(m)) {
                    assert_eq!(kg.iter().filter(|&&k| k).count(), n);
                    assert_eq!(kg, brute_keep(wg, m - n).as_slice());
                }
            }
            let c = p
                .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
                .unwrap();
            assert!(matches!(c.structure(), Structure::NM(s) if s.n() == n && s.m() == m));
            assert_eq!(c.to_dense(), &w * &keep.mapv(|k| k as u8 as f32));
        }
    }
    let w = normal(&mut rng, 2, 6);
    let err = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap_err();
    assert!(matches!(
        err,
        SquishError::Pruning(PruningError::GroupLength { m: 4, cols: 6 })
    ));
    assert!(is_invalid(NMPruner::params(4, 4).check().unwrap_err(), "n"));
    assert!(is_invalid(NMPruner::params(5, 4).check().unwrap_err(), "n"));
    assert!(is_invalid(NMPruner::params(0, 4).check().unwrap_err(), "n"));
    let empty = Array2::<f32>::zeros((3, 0));
    assert!(matches!(
        NMPruner::params(2, 4)
            .check()
            .unwrap()
            .mask(empty.view())
            .unwrap_err(),
        SquishError::Empty { .. }
    ));
}

fn brute_norms(w: &Array2<f32>, p: f64, rows: bool) -> Vec<f64> {
    let slices: Vec<Vec<f32>> = if rows {
        w.outer_iter().map(|r| r.to_vec()).collect()
    } else {
        w.t().outer_iter().map(|r| r.to_vec()).collect()
    };
    slices
        .iter()
        .map(|v| {
            if p.is_infinite() {
                v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
            } else {
                v.iter()
                    .map(|&x| (x as f64).abs().powf(p))
                    .sum::<f64>()
                    .powf(1.0 / p)
            }
        })
        .collect()
}

#[test]
fn structured_pruning_removes_the_smallest_norms() {
    let mut rng = StdRng::seed_from_u64(9);
    let w = normal(&mut rng, 12, 9);
    for p in [1.0, 2.0, 3.0, 0.5, f64::INFINITY] {
        for rows in [true, false] {
            let params = Structured::params(0.5).norm(p);
            let pr = if rows {
                params.rows()
            } else {
                params.columns()
            }
            .check()
            .unwrap();
            let norms = brute_norms(&w, p, rows);
            let got = pr.norms(w.view()).unwrap();
            for (a, b) in got.iter().zip(&norms) {
                assert!((a - b).abs() <= 1e-12 * b.max(1.0), "p={p}");
            }
            let mut order: Vec<usize> = (0..norms.len()).collect();
            order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
            let removed = norms.len() / 2;
            let mut want: Vec<u32> = order[removed..].iter().map(|&i| i as u32).collect();
            want.sort();
            assert_eq!(pr.kept(w.view()).unwrap(), want, "p={p} rows={rows}");

            let m = pr
                .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
                .unwrap();
            let keep = pr.mask(w.view()).unwrap();
            assert_eq!(m.to_dense(), &w * &keep.mapv(|k| k as u8 as f32));
            if rows {
                assert_eq!(m.structure().kind(), "kept-rows");
                // Physically smaller: half the values, plus 4-byte row ids.
                assert_eq!(m.values().unwrap().len(), 6 * 9);
                let dead: Vec<usize> = (0..12).filter(|i| !want.contains(&(*i as u32))).collect();
                assert_eq!(dead_next_inputs(&m), dead);
            } else {
                assert_eq!(m.values().unwrap().len(), 12 * (9 - 4));
            }
        }
    }
    // Equal norms: the earlier row goes first.
    let eq = Array2::from_elem((4, 3), 1.0f32);
    let pr = Structured::params(0.5).norm(1.0).check().unwrap();
    assert_eq!(pr.kept(eq.view()).unwrap(), vec![2, 3]);
    for p in [0.0, -1.0, f64::NAN] {
        assert!(is_invalid(
            Structured::params(0.5).norm(p).check().unwrap_err(),
            "p"
        ));
    }
    assert!(is_invalid(
        Structured::params(-0.1).check().unwrap_err(),
        "sparsity"
    ));
    let empty = Array2::<f32>::zeros((0, 0));
    assert!(matches!(
        pr.kept(empty.view()).unwrap_err(),
        SquishError::Empty { .. }
    ));
}

#[test]
fn importance_and_wanda_use_the_scores() {
    let mut rng = StdRng::seed_from_u64(10);
    let w = normal(&mut rng, 7, 11);
    // Scores = |w| reproduce magnitude pruning.
    let imp = Importance::params(0.4, w.mapv(f32::abs)).check().unwrap();
    let mag = Magnitude::params(0.4).check().unwrap();
    assert_eq!(imp.mask(w.view()).unwrap(), mag.mask(w.view()).unwrap());
    // Arbitrary scores: the lowest scores go, whatever the weights.
    let scores = tied(&mut rng, 7, 11).mapv(f32::abs);
    let imp = Importance::params(0.6, scores.clone()).check().unwrap();
    let data: Vec<f32> = scores.iter().copied().collect();
    assert_eq!(
        flat(&imp.mask(w.view()).unwrap()),
        brute_keep(&data, prune_count(0.6, 77))
    );

    // Wanda score against a naive f64 formula.
    let x = normal(&mut rng, 5, 11);
    let sc = wanda_scores(w.view(), x.view()).unwrap();
    for ((i, j), &v) in sc.indexed_iter() {
        let norm = (0..5)
            .map(|b| (x[[b, j]] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let want = (w[[i, j]] as f64).abs() * norm;
        assert!((v as f64 - want).abs() <= 1e-5 * want.max(1e-6));
    }
    // Wanda prunes per output row by default.
    let wanda = Wanda::params(0.5, x.clone()).check().unwrap();
    let keep = wanda.mask(w.view()).unwrap();
    for (sr, kr) in sc.outer_iter().zip(keep.outer_iter()) {
        assert_eq!(kr.to_vec(), brute_keep(&sr.to_vec(), 5));
    }
    let wt = Wanda::params(0.5, x.clone()).per_tensor().check().unwrap();
    let data: Vec<f32> = sc.iter().copied().collect();
    assert_eq!(
        flat(&wt.mask(w.view()).unwrap()),
        brute_keep(&data, prune_count(0.5, 77))
    );

    // Errors.
    let mut neg = scores.clone();
    neg[[1, 2]] = -0.5;
    assert!(matches!(
        Importance::params(0.5, neg).check().unwrap_err(),
        SquishError::Pruning(PruningError::NegativeScore { index: 13, .. })
    ));
    let imp = Importance::params(0.5, scores).check().unwrap();
    assert!(matches!(
        imp.mask(w.t()).unwrap_err(),
        SquishError::ShapeMismatch { .. }
    ));
    assert!(matches!(
        Wanda::params(0.5, Array2::zeros((0, 11)))
            .check()
            .unwrap_err(),
        SquishError::Empty { .. }
    ));
    assert!(matches!(
        wanda.mask(w.slice(s![.., ..10])).unwrap_err(),
        SquishError::ShapeMismatch { .. }
    ));
    assert!(is_invalid(
        Wanda::params(f64::NAN, x).check().unwrap_err(),
        "sparsity"
    ));
}

#[test]
fn cubic_schedule_hits_its_ends_and_is_monotone() {
    let (si, sf, t0, n, dt) = (0.2, 0.9, 50u64, 20u64, 10u64);
    let s = Schedule::cubic(sf, n)
        .initial(si)
        .start(t0)
        .every(dt)
        .check()
        .unwrap();
    assert_eq!(s.sparsity_at(0), 0.0);
    assert_eq!(s.sparsity_at(t0 - 1), 0.0);
    assert!((s.sparsity_at(t0) - si).abs() < 1e-15);
    assert_eq!(s.sparsity_at(t0 + n * dt), sf);
    assert_eq!(s.sparsity_at(10_000), sf);
    let mut prev = 0.0;
    for t in 0..400 {
        let v = s.sparsity_at(t);
        assert!(v >= prev, "not monotone at {t}");
        prev = v;
        if t >= t0 && t <= t0 + n * dt && (t - t0) % dt == 0 {
            assert!(s.is_update_step(t));
            let frac = 1.0 - (t - t0) as f64 / (n * dt) as f64;
            assert!((v - (sf + (si - sf) * frac.powi(3))).abs() < 1e-12);
        } else {
            assert!(!s.is_update_step(t));
            // Held constant between updates.
            if t > t0 {
                assert_eq!(v, s.sparsity_at(t - 1));
            }
        }
    }
    let c = Schedule::constant(0.7).unwrap();
    assert_eq!(
        (c.sparsity_at(0), c.sparsity_at(99), c.final_sparsity()),
        (0.7, 0.7, 0.7)
    );
    let o = Schedule::one_shot(10, 0.5).unwrap();
    assert_eq!(
        (o.sparsity_at(9), o.sparsity_at(10), o.sparsity_at(11)),
        (0.0, 0.5, 0.5)
    );
    assert!(is_invalid(Schedule::constant(1.0).unwrap_err(), "sparsity"));
    assert!(is_invalid(
        Schedule::one_shot(1, -0.1).unwrap_err(),
        "sparsity"
    ));
    assert!(is_invalid(
        Schedule::cubic(0.5, 0).check().unwrap_err(),
        "steps"
    ));
    assert!(is_invalid(
        Schedule::cubic(0.5, 3).every(0).check().unwrap_err(),
        "every"
    ));
    assert!(is_invalid(
        Schedule::cubic(0.3, 3).initial(0.5).check().unwrap_err(),
        "target"
    ));
    assert!(is_invalid(
        Schedule::cubic(1.2, 3).check().unwrap_err(),
        "sparsity"
    ));
}

/// `|y − y_ref| ≤ 1e-5 · (|W|·|x|ᵀ + 1)` elementwise.
fn assert_close(y: &Array2<f32>, yr: &Array2<f32>, w: &Array2<f32>, x: &Array2<f32>, what: &str) {
    assert_eq!(y.dim(), yr.dim(), "{what}");
    let bound = x.mapv(f32::abs).dot(&w.mapv(f32::abs).t());
    for ((a, b), s) in y.iter().zip(yr.iter()).zip(bound.iter()) {
        assert!((a - b).abs() <= 1e-5 * (s + 1.0), "{what}: {a} vs {b}");
    }
}

fn paths() -> Vec<KernelPath> {
    [KernelPath::Portable, KernelPath::Avx2, KernelPath::Avx512]
        .into_iter()
        .filter(|p| p.is_available())
        .collect()
}

/// Every path and executor against the reference, and the dispatcher.
fn check_kernels(m: &CompressedMatrix, rng: &mut StdRng, batches: &[usize], what: &str) {
    let pool = ThreadPool::new(2).unwrap();
    let w = m.to_dense();
    for &b in batches {
        let x = normal(rng, b, m.cols());
        let yr = m.matmul_reference(x.view()).unwrap();
        for path in paths() {
            let y = sparse_matmul(m, x.view(), &Sequential, path).unwrap();
            assert_close(&y, &yr, &w, &x, &format!("{what} b={b} {path:?}"));
            let yp = sparse_matmul(m, x.view(), &pool, path).unwrap();
            assert_eq!(y, yp, "{what}: thread count changed the bits");
        }
        let yd = m.matmul(x.view()).unwrap();
        // 2:4 with AVX-512 runs on the weight-only tile scaffold instead
        // (issue #20): checked against the reference there.
        if kernel_for(m, b) == Kernel::Sparse {
            assert_eq!(
                yd,
                sparse_matmul(m, x.view(), &Sequential, KernelPath::detect()).unwrap()
            );
        } else {
            assert_close(&yd, &yr, &w, &x, &format!("{what} b={b} dispatch"));
        }
    }
}

#[test]
fn csr_kernels_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    for (r, c, s) in [
        (1, 1, 0.0),
        (1, 1, 0.5),
        (3, 70, 0.9),
        (37, 45, 0.5),
        (130, 200, 0.95),
        (64, 33, 0.0),
    ] {
        let w = normal(&mut rng, r, c);
        let m = Magnitude::params(s).check().unwrap();
        let m = m
            .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        check_kernels(
            &m,
            &mut rng,
            &[1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 70],
            &format!("csr {r}x{c} s={s}"),
        );
        rows_keep_their_bits_at_every_batch(&m, &mut rng);
    }
    // Some empty rows, and u32 column indices (more than 65 536 columns).
    let mut w = normal(&mut rng, 6, 70_000);
    w.row_mut(2).fill(0.0);
    let keep = w.mapv(|v| v.abs() > 1.5);
    let m = CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap();
    assert!(
        matches!(m.structure(), Structure::Csr(c) if matches!(c.col_idx(), squish::matrix::ColIndices::U32(_)))
    );
    check_kernels(&m, &mut rng, &[1, 3, 8, 16], "csr u32");
    rows_keep_their_bits_at_every_batch(&m, &mut rng);
}

/// On every path, a CSR product's row has the bits of that input alone at
/// every batch size (registers of batch lanes, the same multiply-adds and
/// sums as batch 1); the AVX2 lanes are the portable lanes' twin, bit for
/// bit.
fn rows_keep_their_bits_at_every_batch(m: &CompressedMatrix, rng: &mut StdRng) {
    let x = normal(rng, 40, m.cols());
    for path in paths() {
        for b in [2, 3, 4, 5, 8, 9, 16, 17, 40] {
            let y = sparse_matmul(m, x.slice(s![..b, ..]), &Sequential, path).unwrap();
            for r in 0..b {
                let one = sparse_matmul(m, x.slice(s![r..r + 1, ..]), &Sequential, path);
                let one = one.unwrap();
                let same = y
                    .row(r)
                    .iter()
                    .zip(one.row(0))
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{path:?} batch {b}, row {r}: not the bits of batch 1");
            }
            if path == KernelPath::Avx2 {
                let p = sparse_matmul(m, x.slice(s![..b, ..]), &Sequential, KernelPath::Portable);
                assert_eq!(
                    y,
                    p.unwrap(),
                    "AVX2 lanes against the portable lanes, batch {b}"
                );
            }
        }
    }
}

#[test]
fn nm_kernels_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(12);
    for (n, m, r, c) in [
        (1, 2, 1, 2),
        (2, 4, 1, 4),
        (2, 4, 9, 64),
        (2, 4, 5, 36),
        (4, 8, 7, 40),
        (3, 16, 3, 48),
        (2, 4, 33, 96),
    ] {
        let w = normal(&mut rng, r, c);
        let p = NMPruner::params(n, m).check().unwrap();
        let mm = p
            .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        check_kernels(&mm, &mut rng, &[1, 5, 32, 40], &format!("{n}:{m} {r}x{c}"));
    }
}

#[test]
fn kept_rows_kernels_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(13);
    for (r, c, s) in [
        (1, 1, 0.0),
        (2, 3, 0.5),
        (50, 77, 0.5),
        (300, 40, 0.9),
        (17, 128, 0.0),
    ] {
        let w = normal(&mut rng, r, c);
        let p = Structured::params(s).check().unwrap();
        let m = p
            .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        check_kernels(
            &m,
            &mut rng,
            &[1, 4, 65],
            &format!("kept rows {r}x{c} s={s}"),
        );
    }
    // No rows kept at all, and a CSR matrix with no stored values.
    let w = normal(&mut rng, 5, 9);
    let none = CompressedMatrix::kept_rows(w.view(), vec![]).unwrap();
    check_kernels(&none, &mut rng, &[1, 3], "no kept rows");
    let empty = CompressedMatrix::csr_from_mask(w.view(), w.mapv(|_| false).view()).unwrap();
    check_kernels(&empty, &mut rng, &[1, 3], "csr nnz 0");
    // The dense baseline through the same kernels.
    let w = normal(&mut rng, 20, 30);
    let x = normal(&mut rng, 3, 30);
    for path in paths() {
        let y = dense_matmul(w.view(), x.view(), &Sequential, path).unwrap();
        assert_close(&y, &x.dot(&w.t()), &w, &x, "dense rows");
    }
}

#[test]
fn kernel_entry_point_rejects_bad_input() {
    let w = Array2::from_elem((2, 4), 1.0f32);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let x = Array2::from_elem((1, 4), 1.0f32);
    assert!(matches!(
        sparse_matmul(&m, x.view(), &Sequential, KernelPath::Portable).unwrap_err(),
        SquishError::Incompatible { .. }
    ));
    let csr = Magnitude::params(0.5).check().unwrap().prune(&m).unwrap();
    let bad = Array2::from_elem((1, 3), 1.0f32);
    assert!(matches!(
        sparse_matmul(&csr, bad.view(), &Sequential, KernelPath::Portable).unwrap_err(),
        SquishError::ShapeMismatch { .. }
    ));
    if !KernelPath::Avx512.is_available() {
        assert!(sparse_matmul(&csr, x.view(), &Sequential, KernelPath::Avx512).is_err());
    }
}

#[test]
fn pruned_structures_can_be_quantized_and_still_multiply() {
    let mut rng = StdRng::seed_from_u64(14);
    let w = normal(&mut rng, 16, 32);
    let x = normal(&mut rng, 3, 32);
    for (name, out) in [
        (
            "nm",
            Pipeline::new().prune(NMPruner::params(2, 4).check().unwrap()),
        ),
        (
            "rows",
            Pipeline::new().prune(Structured::params(0.5).check().unwrap()),
        ),
        (
            "wanda",
            Pipeline::new().prune(Wanda::params(0.5, x.clone()).check().unwrap()),
        ),
    ] {
        let out = out
            .quantize(IntQuantizer::params(8).check().unwrap())
            .run(w.view())
            .unwrap();
        assert_eq!(out.matrix.encoding(), "int8", "{name}");
        let y = out.matrix.matmul(x.view()).unwrap();
        let yd = x.dot(&out.matrix.to_dense().t());
        for (a, b) in y.iter().zip(yd.iter()) {
            assert!((a - b).abs() < 1e-3, "{name}");
        }
    }
}

/// CSR from a keep-mask, built by hand: the oracle for `prune_on`.
fn csr_of(w: &Array2<f32>, keep: &[bool]) -> (Vec<u32>, Vec<usize>, Vec<f32>) {
    let cols = w.ncols();
    let (mut ptr, mut idx, mut val) = (vec![0u32], Vec::new(), Vec::new());
    for (i, row) in w.outer_iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if keep[i * cols + j] {
                idx.push(j);
                val.push(v);
            }
        }
        ptr.push(val.len() as u32);
    }
    (ptr, idx, val)
}

fn csr_parts(m: &CompressedMatrix) -> (Vec<u32>, Vec<usize>, Vec<f32>) {
    let Structure::Csr(c) = m.structure() else {
        panic!("not CSR: {}", m.structure().kind())
    };
    let Some(squish::matrix::Values::F32(v)) = m.values() else {
        panic!("not f32")
    };
    let idx = (0..c.col_idx().len()).map(|k| c.col_idx().get(k)).collect();
    (c.row_ptr().to_vec(), idx, v.data().to_vec())
}

#[test]
fn magnitude_to_csr_keeps_exactly_the_sort_oracle_set_on_any_executor() {
    let mut rng = StdRng::seed_from_u64(21);
    let pools = [ThreadPool::new(2).unwrap(), ThreadPool::new(3).unwrap()];
    // Large enough for the sampled selection (≥ 2^18 weights), with and
    // without heavy ties (zeros and a tiny value set: ties split across
    // row blocks), and a row length that is not a power of two.
    let gaussian = normal(&mut rng, 700, 600);
    let ties = tied(&mut rng, 520, 640);
    let mut zeros = normal(&mut rng, 300, 1000);
    zeros.iter_mut().step_by(3).for_each(|v| *v = 0.0);
    // A sorted matrix: a strided sample sees a skewed picture of it.
    let mut skewed = normal(&mut rng, 512, 512);
    let mut flat: Vec<f32> = skewed.iter().copied().collect();
    flat.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    skewed.iter_mut().zip(flat).for_each(|(w, v)| *w = v);
    for (name, w) in [
        ("gaussian", gaussian),
        ("ties", ties),
        ("zeros", zeros),
        ("skewed", skewed),
    ] {
        let data: Vec<f32> = w.iter().copied().collect();
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        for s in [0.0, 0.1, 0.5, 0.9, 0.97] {
            let p = Magnitude::params(s).check().unwrap();
            let count = prune_count(s, data.len());
            let keep = brute_keep(&data, count);
            let want = csr_of(&w, &keep);
            let seq = p.prune_on(&dense, &Sequential).unwrap();
            assert_eq!(csr_parts(&seq), want, "{name} s={s}");
            assert_eq!(seq, p.prune(&dense).unwrap(), "{name} s={s}");
            let mask = p.mask_on(w.view(), &Sequential).unwrap();
            assert_eq!(
                mask.iter().copied().collect::<Vec<_>>(),
                keep,
                "{name} s={s}"
            );
            for pool in &pools {
                assert_eq!(p.prune_on(&dense, pool).unwrap(), seq, "{name} s={s}");
                assert_eq!(p.mask_on(w.view(), pool).unwrap(), mask, "{name} s={s}");
            }
            // The sampled selection equals the exact one.
            assert_eq!(
                Selection::smallest_on(&data, count, &pools[0]),
                Selection::smallest(&[&data], count),
                "{name} s={s}"
            );
        }
    }
}

#[test]
fn magnitude_to_csr_from_csr_and_per_row_match_the_mask() {
    let mut rng = StdRng::seed_from_u64(22);
    let w = tied(&mut rng, 64, 96);
    let pool = ThreadPool::new(2).unwrap();
    let half = Magnitude::params(0.5)
        .check()
        .unwrap()
        .prune(&CompressedMatrix::from_dense(w.view()).unwrap());
    let half = half.unwrap();
    for p in [
        Magnitude::params(0.8).check().unwrap(),
        Magnitude::params(0.8).per_row().check().unwrap(),
    ] {
        let dense = half.to_dense();
        let keep = p.mask(dense.view()).unwrap();
        let want = CompressedMatrix::csr_from_mask(dense.view(), keep.view()).unwrap();
        assert_eq!(p.prune_on(&half, &pool).unwrap(), want);
        assert_eq!(p.mask_on(dense.view(), &pool).unwrap(), keep);
        // Through a pipeline on a pool: the same matrix.
        let out = Pipeline::new()
            .prune(p.clone())
            .run_on(half.to_dense().view(), &pool)
            .unwrap();
        assert_eq!(out.matrix, want);
    }
}
