//! Low-rank approximation: exactness, Eckart–Young, randomized accuracy,
//! rank rules, factored matmul, pass composition and backend agreement.
//!
//! References are independent of the code under test: a one-sided Jacobi
//! SVD in f64, matrices built from known singular values, naive f64 matmul.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use squish::compression::lowrank::{
    factored_bytes, factorize, kernel, LowRank, LowRankError, RandomizedSvd, RankSelection, Svd,
    SvdBackend,
};
use squish::matrix::{CompressedMatrix, Structure};
use squish::parallel::{Sequential, ThreadPool};
use squish::prelude::*;

// ---------- independent references ----------

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut rng))
}

/// `rows × k` with orthonormal columns: modified Gram–Schmidt, twice, in f64.
fn orthonormal(rows: usize, k: usize, seed: u64) -> Array2<f64> {
    let mut q = gaussian(rows, k, seed);
    for _ in 0..2 {
        for j in 0..k {
            for i in 0..j {
                let d = q.column(i).dot(&q.column(j));
                let qi = q.column(i).to_owned();
                q.column_mut(j).scaled_add(-d, &qi);
            }
            let n = q.column(j).dot(&q.column(j)).sqrt();
            q.column_mut(j).mapv_inplace(|x| x / n);
        }
    }
    q
}

/// W = U·diag(σ)·Vᵀ with random orthonormal U, V: its singular values are σ.
fn with_spectrum(m: usize, n: usize, sigma: &[f64], seed: u64) -> Array2<f32> {
    let k = sigma.len();
    let u = orthonormal(m, k, seed);
    let v = orthonormal(n, k, seed + 1);
    let us = &u * &Array1::from(sigma.to_vec()).insert_axis(Axis(0));
    us.dot(&v.t()).mapv(|x| x as f32)
}

/// Singular values by one-sided Jacobi (Hestenes) in f64, non-increasing.
fn jacobi_singular_values(w: ArrayView2<f32>) -> Vec<f64> {
    let mut a = w.mapv(|x| x as f64);
    if a.nrows() < a.ncols() {
        a = a.t().to_owned();
    }
    let n = a.ncols();
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (cp, cq) = (a.column(p), a.column(q));
                let alpha = cp.dot(&cp);
                let beta = cq.dot(&cq);
                let gamma = cp.dot(&cq);
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (ap, aq) = (a.column(p).to_owned(), a.column(q).to_owned());
                a.column_mut(p).assign(&(&ap * c - &aq * s));
                a.column_mut(q).assign(&(&ap * s + &aq * c));
            }
        }
        if !rotated {
            break;
        }
    }
    let mut s: Vec<f64> = a.axis_iter(Axis(1)).map(|c| c.dot(&c).sqrt()).collect();
    s.sort_by(|x, y| y.partial_cmp(x).unwrap());
    s
}

fn frob(w: ArrayView2<f32>) -> f64 {
    w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// ‖W − A·B‖_F with A·B in f64.
fn error_of(w: ArrayView2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>) -> f64 {
    let ab = a.mapv(|x| x as f64).dot(&b.mapv(|x| x as f64));
    w.iter()
        .zip(ab.iter())
        .map(|(&x, &y)| (x as f64 - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// x·Wᵀ in f64.
fn naive_matmul(x: ArrayView2<f32>, w: ArrayView2<f32>) -> Array2<f64> {
    x.mapv(|v| v as f64).dot(&w.mapv(|v| v as f64).t())
}

fn backends() -> Vec<SvdBackend> {
    let mut b = vec![SvdBackend::Faer];
    if cfg!(feature = "lapack") {
        b.push(SvdBackend::Lapack);
    }
    b
}

fn low_rank_error(e: SquishError) -> LowRankError {
    match e {
        SquishError::LowRank(e) => e,
        other => panic!("expected a low-rank error, got {other}"),
    }
}

// ---------- exact SVD ----------

#[test]
fn full_rank_reconstruction_is_exact_to_round_off() {
    for (m, n) in [(64, 48), (40, 70)] {
        let w = gaussian(m, n, 1).mapv(|x| x as f32);
        for backend in backends() {
            let svd = Svd::exact(w.view(), backend).unwrap();
            assert_eq!(svd.rank(), m.min(n));
            let (a, b) = svd.factors();
            let rel = error_of(w.view(), a.view(), b.view()) / frob(w.view());
            assert!(rel < 1e-5, "{backend:?} {m}x{n}: {rel}");
            let rel = error_of(w.view(), svd.reconstruct().view(), Array2::eye(n).view())
                / frob(w.view());
            assert!(rel < 1e-5, "{backend:?} reconstruct: {rel}");
        }
    }
}

#[test]
fn eckart_young_error_matches_independent_spectrum() {
    let w = gaussian(50, 36, 2).mapv(|x| x as f32);
    let reference = jacobi_singular_values(w.view());
    for backend in backends() {
        let svd = Svd::exact(w.view(), backend).unwrap();
        for (i, (&s, &r)) in svd.s().iter().zip(&reference).enumerate() {
            assert!(
                (s as f64 - r).abs() < 1e-5 * reference[0],
                "σ{i}: {s} vs {r}"
            );
        }
        for r in [1, 5, 17, 35] {
            let (a, b) = svd.truncate(r).unwrap().factors();
            let err = error_of(w.view(), a.view(), b.view());
            let tail = reference[r..].iter().map(|s| s * s).sum::<f64>().sqrt();
            assert!(
                (err - tail).abs() < 1e-4 * tail,
                "{backend:?} r={r}: ‖W−AB‖ = {err}, tail = {tail}"
            );
        }
    }
}

#[test]
fn known_singular_values_come_back() {
    let sigma = [50.0, 20.0, 9.0, 4.0, 2.5, 1.0, 0.5, 0.125];
    let w = with_spectrum(40, 30, &sigma, 3);
    for backend in backends() {
        let svd = Svd::exact(w.view(), backend).unwrap();
        for (i, &s) in sigma.iter().enumerate() {
            assert!(
                (svd.s()[i] as f64 - s).abs() < 1e-5 * sigma[0],
                "{backend:?} σ{i}"
            );
        }
        // The rest of the spectrum is round-off.
        assert!(svd
            .s()
            .iter()
            .skip(sigma.len())
            .all(|&s| (s as f64) < 1e-5 * sigma[0]));
        // U and V are orthonormal.
        let utu = svd.u().t().dot(&svd.u());
        let vvt = svd.vt().dot(&svd.vt().t());
        for (g, k) in [(utu, 30), (vvt, 30)] {
            let eye = Array2::<f32>::eye(k);
            assert!(g.iter().zip(eye.iter()).all(|(x, y)| (x - y).abs() < 1e-5));
        }
    }
}

#[test]
fn truncate_checks_the_rank() {
    let w = gaussian(10, 6, 4).mapv(|x| x as f32);
    let svd = Svd::exact(w.view(), SvdBackend::Faer).unwrap();
    assert_eq!(
        low_rank_error(svd.truncate(0).unwrap_err()),
        LowRankError::ZeroRank
    );
    assert!(matches!(
        low_rank_error(svd.truncate(7).unwrap_err()),
        LowRankError::RankTooLarge {
            rank: 7,
            max: 6,
            ..
        }
    ));
}

#[test]
fn bad_matrices_are_rejected() {
    let mut w = Array2::<f32>::ones((5, 4));
    w[[2, 3]] = f32::NAN;
    assert!(matches!(
        Svd::exact(w.view(), SvdBackend::Faer),
        Err(SquishError::NonFinite { index: 11, .. })
    ));
    let rs = RandomizedSvd::params(2).check().unwrap();
    assert!(matches!(
        rs.compute(w.view(), &Sequential),
        Err(SquishError::NonFinite { .. })
    ));
    let empty = Array2::<f32>::zeros((0, 4));
    assert!(matches!(
        Svd::exact(empty.view(), SvdBackend::Faer),
        Err(SquishError::Empty { .. })
    ));
    assert!(matches!(
        factorize(empty.view(), RankSelection::Fixed(1)),
        Err(SquishError::Empty { .. })
    ));
}

#[cfg(not(feature = "lapack"))]
#[test]
fn lapack_backend_needs_its_feature() {
    let w = Array2::<f32>::eye(3);
    let e = Svd::exact(w.view(), SvdBackend::Lapack).unwrap_err();
    assert_eq!(low_rank_error(e), LowRankError::BackendUnavailable);
    let e = LowRank::params(RankSelection::Fixed(1))
        .backend(SvdBackend::Lapack)
        .check()
        .unwrap_err();
    assert_eq!(low_rank_error(e), LowRankError::BackendUnavailable);
}

#[cfg(feature = "lapack")]
#[test]
fn faer_and_lapack_agree() {
    let sigma: Vec<f64> = (0..60).map(|i| 0.9f64.powi(i)).collect();
    let w = with_spectrum(90, 60, &sigma, 5);
    let f = Svd::exact(w.view(), SvdBackend::Faer).unwrap();
    let l = Svd::exact(w.view(), SvdBackend::Lapack).unwrap();
    for (a, b) in f.s().iter().zip(l.s()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Singular vectors agree up to sign, so the truncations agree.
    for r in [1, 10, 30] {
        let wf = f.truncate(r).unwrap().reconstruct();
        let wl = l.truncate(r).unwrap().reconstruct();
        let diff = frob((&wf - &wl).view()) / frob(wf.view());
        assert!(diff < 1e-4, "r={r}: {diff}");
    }
    // Through the pass, the same rank is picked and the factored products agree.
    for rule in [
        RankSelection::Energy(0.9),
        RankSelection::CompressionRatio(3.0),
    ] {
        let pf = LowRank::params(rule).check().unwrap();
        let pl = LowRank::params(rule)
            .backend(SvdBackend::Lapack)
            .check()
            .unwrap();
        let (ff, fl) = (
            pf.factorize(w.view(), &Sequential).unwrap(),
            pl.factorize(w.view(), &Sequential).unwrap(),
        );
        assert_eq!(ff.rank(), fl.rank());
        assert!((ff.rel_error - fl.rel_error).abs() < 1e-5);
        let x = gaussian(3, 60, 6).mapv(|v| v as f32);
        let yf = ff.to_matrix().unwrap().matmul(x.view()).unwrap();
        let yl = fl.to_matrix().unwrap().matmul(x.view()).unwrap();
        assert!(frob((&yf - &yl).view()) < 1e-4 * frob(yf.view()));
    }
}

// ---------- randomized SVD ----------

#[test]
fn randomized_is_within_5_percent_on_decaying_spectrum() {
    let sigma: Vec<f64> = (0..100).map(|i| 0.9f64.powi(i)).collect();
    let w = with_spectrum(200, 120, &sigma, 7);
    for r in [10, 25] {
        let optimal = sigma[r..].iter().map(|s| s * s).sum::<f64>().sqrt();
        let out = RandomizedSvd::params(r)
            .seed(11)
            .check()
            .unwrap()
            .compute(w.view(), &Sequential)
            .unwrap();
        let (a, b) = out.svd.factors();
        let err = error_of(w.view(), a.view(), b.view());
        assert!(err <= 1.05 * optimal, "r={r}: {err} vs optimal {optimal}");
        assert!(err >= optimal * (1.0 - 1e-4), "cannot beat Eckart–Young");
        // The estimate is in the right range and bounds the spectral norm.
        let est = out.estimate;
        assert!(
            est.frobenius > 0.5 * err && est.frobenius < 2.0 * err,
            "{est:?} vs {err}"
        );
        let e = &w - &a.dot(&b);
        let spectral = jacobi_singular_values(e.view())[0];
        assert!(
            est.spectral_bound >= spectral,
            "{} < {spectral}",
            est.spectral_bound
        );
        assert!((est.relative - est.frobenius / frob(w.view())).abs() < 1e-12);
    }
}

#[test]
fn randomized_is_exact_on_rank_r_matrices() {
    let sigma = [9.0, 7.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.7];
    let w = with_spectrum(200, 120, &sigma, 8);
    for (p, q) in [(10, 2), (0, 0), (5, 1)] {
        let out = RandomizedSvd::params(8)
            .oversampling(p)
            .power_iterations(q)
            .check()
            .unwrap()
            .compute(w.view(), &Sequential)
            .unwrap();
        let (a, b) = out.svd.factors();
        let rel = error_of(w.view(), a.view(), b.view()) / frob(w.view());
        assert!(rel < 1e-4, "p={p} q={q}: {rel}");
        assert!(out.estimate.relative < 1e-4);
        for (i, &s) in sigma.iter().enumerate() {
            assert!((out.svd.s()[i] as f64 - s).abs() < 1e-4 * s);
        }
    }
}

#[test]
fn randomized_is_deterministic_across_executors() {
    let w = gaussian(300, 140, 9).mapv(|x| x as f32);
    let rs = RandomizedSvd::params(12).seed(3).check().unwrap();
    let seq = rs.compute(w.view(), &Sequential).unwrap();
    let pool = rs.compute(w.view(), &ThreadPool::new(2).unwrap()).unwrap();
    let pool3 = rs.compute(w.view(), &ThreadPool::new(3).unwrap()).unwrap();
    assert_eq!(seq, pool);
    assert_eq!(seq, pool3);
    assert_eq!(seq, rs.compute(w.view(), &Sequential).unwrap());
    let other = RandomizedSvd::params(12).seed(4).check().unwrap();
    assert_ne!(seq.svd, other.compute(w.view(), &Sequential).unwrap().svd);
}

#[test]
fn randomized_parameters_are_checked() {
    let e = RandomizedSvd::params(0).check().unwrap_err();
    assert_eq!(low_rank_error(e), LowRankError::ZeroRank);
    let e = RandomizedSvd::params(3).probes(0).check().unwrap_err();
    assert_eq!(low_rank_error(e), LowRankError::ZeroProbes);
    let w = Array2::<f32>::eye(5);
    let e = RandomizedSvd::params(6)
        .check()
        .unwrap()
        .compute(w.view(), &Sequential)
        .unwrap_err();
    assert!(matches!(
        low_rank_error(e),
        LowRankError::RankTooLarge {
            rank: 6,
            max: 5,
            ..
        }
    ));
    let e = LowRank::params(RankSelection::Energy(0.9))
        .randomized(RandomizedSvd::settings().probes(0))
        .check()
        .unwrap_err();
    assert_eq!(low_rank_error(e), LowRankError::ZeroProbes);
}

// ---------- rank selection ----------

#[test]
fn rank_rules_pick_the_documented_rank() {
    // σ² = 16, 9, 4, 1; Σ = 30; cumulative 16, 25, 29, 30.
    let s = [4.0f32, 3.0, 2.0, 1.0];
    let pick = |rule: RankSelection| rule.select_from_spectrum(4, 4, &s).unwrap();
    assert_eq!(pick(RankSelection::Energy(0.5)), 1); // 16/30 = 0.533
    assert_eq!(pick(RankSelection::Energy(16.0 / 30.0)), 1);
    assert_eq!(pick(RankSelection::Energy(0.54)), 2);
    assert_eq!(pick(RankSelection::Energy(0.8)), 2); // 25/30 = 0.833
    assert_eq!(pick(RankSelection::Energy(0.9)), 3); // 29/30 = 0.967
    assert_eq!(pick(RankSelection::Energy(0.97)), 4);
    assert_eq!(pick(RankSelection::Energy(1.0)), 4);
    // ε: tails after r = 1, 2, 3 are sqrt(14/30), sqrt(5/30), sqrt(1/30).
    assert_eq!(pick(RankSelection::RelativeError(0.2)), 3); // 0.183 ≤ 0.2 < 0.408
    assert_eq!(pick(RankSelection::RelativeError(0.45)), 2); // 0.408 ≤ 0.45
    assert_eq!(pick(RankSelection::RelativeError(0.69)), 1); // 0.683
    assert_eq!(pick(RankSelection::RelativeError(0.1)), 4);
    assert_eq!(pick(RankSelection::Fixed(3)), 3);

    // 100 × 100: factored bytes = 48 + 800 r, dense 40 000.
    let shape = |rule: RankSelection| rule.rank_for_shape(100, 100).unwrap().unwrap();
    assert_eq!(factored_bytes(100, 100, 12), 9_648);
    assert_eq!(shape(RankSelection::CompressionRatio(4.0)), 12); // ≤ 10 000 B
    assert_eq!(shape(RankSelection::CompressionRatio(40000.0 / 9648.0)), 12);
    assert_eq!(shape(RankSelection::CompressionRatio(40000.0 / 9647.0)), 11);
    assert_eq!(shape(RankSelection::CompressionRatio(47.0)), 1); // 40 000 / 848 = 47.17
    assert_eq!(shape(RankSelection::CompressionRatio(0.5)), 99); // 80 048 B > 80 000 at r = 100
    assert_eq!(shape(RankSelection::CompressionRatio(0.4)), 100); // capped at min(m, n)
    assert_eq!(shape(RankSelection::ByteBudget(10_000)), 12);
    assert_eq!(shape(RankSelection::ByteBudget(9_648)), 12);
    assert_eq!(shape(RankSelection::ByteBudget(9_647)), 11);
    assert_eq!(shape(RankSelection::ByteBudget(848)), 1);
    assert_eq!(shape(RankSelection::ByteBudget(usize::MAX)), 100);
    assert_eq!(
        RankSelection::Energy(0.5).rank_for_shape(100, 100).unwrap(),
        None
    );
}

#[test]
fn rank_rules_reject_bad_values() {
    use LowRankError::*;
    let err = |rule: RankSelection| low_rank_error(rule.rank_for_shape(100, 80).unwrap_err());
    assert_eq!(err(RankSelection::Fixed(0)), ZeroRank);
    assert!(matches!(
        err(RankSelection::Fixed(81)),
        RankTooLarge {
            rank: 81,
            max: 80,
            rows: 100,
            cols: 80
        }
    ));
    for e in [0.0, -0.1, 1.0001, f64::NAN] {
        assert!(matches!(err(RankSelection::Energy(e)), EnergyOutOfRange(_)));
    }
    for e in [0.0, 1.0, 2.0, f64::NAN] {
        assert!(matches!(
            err(RankSelection::RelativeError(e)),
            ErrorTargetOutOfRange(_)
        ));
    }
    for c in [0.0, -2.0, f64::INFINITY, f64::NAN] {
        assert!(matches!(
            err(RankSelection::CompressionRatio(c)),
            InvalidRatio(_)
        ));
    }
    // Rank 1 of 100 × 80 needs 48 + 720 = 768 B: ratio 32 000 / 768 = 41.67.
    match err(RankSelection::CompressionRatio(42.0)) {
        UnreachableRatio { best, .. } => assert!((best - 32000.0 / 768.0).abs() < 1e-9),
        e => panic!("{e:?}"),
    }
    assert_eq!(
        err(RankSelection::ByteBudget(767)),
        UnreachableBudget {
            budget: 767,
            min_bytes: 768
        }
    );
    // The pass checks at build time too.
    assert!(LowRank::params(RankSelection::Energy(1.5)).check().is_err());
    // And the shape at run time.
    let w = Array2::<f32>::eye(4);
    assert!(matches!(
        low_rank_error(factorize(w.view(), RankSelection::Fixed(5)).unwrap_err()),
        RankTooLarge { .. }
    ));
}

#[test]
fn ratio_and_budget_rules_meet_their_storage_target() {
    let w = gaussian(96, 64, 10).mapv(|x| x as f32);
    for c in [2.0, 5.0, 17.0] {
        let pass = LowRank::params(RankSelection::CompressionRatio(c))
            .check()
            .unwrap();
        let m = pass
            .apply(
                &CompressedMatrix::from_dense(w.view()).unwrap(),
                &Sequential,
            )
            .unwrap();
        let r = match m.structure() {
            Structure::LowRank(lr) => lr.rank(),
            _ => unreachable!(),
        };
        assert_eq!(m.storage().total(), factored_bytes(96, 64, r));
        assert!(m.storage().ratio() >= c);
        let next = (96 * 64 * 4) as f64 / factored_bytes(96, 64, r + 1) as f64;
        assert!(next < c, "rank {} would also reach {c}", r + 1);
    }
    let budget = 7_000;
    let f = factorize(w.view(), RankSelection::ByteBudget(budget)).unwrap();
    let bytes = f.to_matrix().unwrap().storage().total();
    assert!(bytes <= budget && factored_bytes(96, 64, f.rank() + 1) > budget);
}

#[test]
fn energy_and_error_rules_hold_for_exact_and_randomized() {
    let sigma: Vec<f64> = (0..80).map(|i| 0.9f64.powi(i)).collect();
    let w = with_spectrum(160, 120, &sigma, 12);
    let total: f64 = sigma.iter().map(|s| s * s).sum();
    // Smallest r with Σ_{i≤r} σ² ≥ 0.95·Σ: 1 − 0.81^r ≥ 0.95(1 − 0.81^80).
    let want = (1..=80)
        .find(|&r| sigma[..r].iter().map(|s| s * s).sum::<f64>() >= 0.95 * total)
        .unwrap();
    let exact = factorize(w.view(), RankSelection::Energy(0.95)).unwrap();
    assert_eq!(exact.rank(), want);
    let rand = LowRank::params(RankSelection::Energy(0.95))
        .randomized(RandomizedSvd::settings().seed(5))
        .check()
        .unwrap()
        .factorize(w.view(), &Sequential)
        .unwrap();
    // The randomized rule is conservative: never below the exact rank, and
    // the kept energy really reaches the target.
    assert!(
        rand.rank() >= want && rand.rank() <= want + 1,
        "{} vs {want}",
        rand.rank()
    );
    for f in [&exact, &rand] {
        let err = error_of(w.view(), f.a.view(), f.b.view());
        assert!(err * err <= 0.05 * frob(w.view()).powi(2) * 1.0001);
    }
    for eps in [0.3, 0.05] {
        for pass in [
            LowRank::params(RankSelection::RelativeError(eps))
                .check()
                .unwrap(),
            LowRank::params(RankSelection::RelativeError(eps))
                .randomized(RandomizedSvd::settings())
                .check()
                .unwrap(),
        ] {
            let f = pass.factorize(w.view(), &Sequential).unwrap();
            let rel = error_of(w.view(), f.a.view(), f.b.view()) / frob(w.view());
            assert!(rel <= eps * 1.0001, "{pass:?}: {rel}");
            let smaller = sigma[f.rank() - 1..]
                .iter()
                .map(|s| s * s)
                .sum::<f64>()
                .sqrt()
                / total.sqrt();
            assert!(smaller > eps * 0.9999, "rank {} − 1 would do", f.rank());
        }
    }
    // Exact: the reported error is the Eckart–Young tail.
    let rel = error_of(w.view(), exact.a.view(), exact.b.view()) / frob(w.view());
    assert!((exact.rel_error - rel).abs() < 1e-5);
}

// ---------- representation and factored matmul ----------

#[test]
fn factors_split_the_singular_values_evenly() {
    let sigma = [16.0, 4.0, 1.0];
    let w = with_spectrum(20, 12, &sigma, 13);
    let f = factorize(w.view(), RankSelection::Fixed(3)).unwrap();
    // Column norms of A and row norms of B are both sqrt(σ).
    for (i, &s) in sigma.iter().enumerate() {
        let na = f.a.column(i).dot(&f.a.column(i)).sqrt() as f64;
        let nb = f.b.row(i).dot(&f.b.row(i)).sqrt() as f64;
        assert!((na - s.sqrt()).abs() < 1e-5 * s.sqrt() && (nb - s.sqrt()).abs() < 1e-5 * s.sqrt());
    }
    let m = f.to_matrix().unwrap();
    assert_eq!(m.storage().total(), factored_bytes(20, 12, 3));
    assert_eq!(m.encoding(), "factored");
}

#[test]
fn factored_matmul_equals_dense_matmul_of_reconstruction() {
    let pool = ThreadPool::new(2).unwrap();
    for (m, n, r, batch) in [
        (300, 200, 17, 1),
        (130, 260, 40, 5),
        (64, 64, 64, 129),
        (7, 3, 2, 2),
    ] {
        let w = gaussian(m, n, m as u64).mapv(|x| x as f32);
        let f = factorize(w.view(), RankSelection::Fixed(r)).unwrap();
        let lr = f.to_matrix().unwrap();
        let x = gaussian(batch, n, 99).mapv(|v| v as f32);
        let y = lr.matmul(x.view()).unwrap();
        assert_eq!(y.dim(), (batch, m));
        // Against x·(AB)ᵀ in f64, W formed only in the test.
        let expect = naive_matmul(x.view(), f.a.dot(&f.b).view());
        let scale = expect.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        for (a, b) in y.iter().zip(expect.iter()) {
            assert!(
                (*a as f64 - b).abs() < 1e-4 * scale,
                "{m}x{n} r{r} b{batch}"
            );
        }
        // Against the reference kernel, and bit-identical on any executor.
        let reference = lr.matmul_reference(x.view()).unwrap();
        for (a, b) in y.iter().zip(reference.iter()) {
            assert!((a - b).abs() < 1e-4 * scale as f32);
        }
        assert_eq!(y, lr.matmul_on(x.view(), &pool).unwrap());
        match lr.structure() {
            Structure::LowRank(l) => {
                assert!(kernel::supports(l));
                assert_eq!(y, kernel::matmul(l, x.view(), &Sequential));
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn factored_matmul_checks_its_input() {
    let w = gaussian(10, 8, 14).mapv(|x| x as f32);
    let lr = factorize(w.view(), RankSelection::Fixed(3))
        .unwrap()
        .to_matrix()
        .unwrap();
    assert!(matches!(
        lr.matmul(Array2::<f32>::ones((2, 9)).view()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    let mut x = Array2::<f32>::ones((2, 8));
    x[[1, 1]] = f32::INFINITY;
    assert!(matches!(
        lr.matmul(x.view()),
        Err(SquishError::NonFinite { .. })
    ));
}

// ---------- pass and pipeline ----------

#[test]
fn pipeline_low_rank_then_quantize_quantizes_each_factor() {
    let sigma: Vec<f64> = (0..64).map(|i| 0.85f64.powi(i)).collect();
    let w = with_spectrum(128, 64, &sigma, 15);
    let out = Pipeline::new()
        .then(LowRank::params(RankSelection::Fixed(16)).check().unwrap())
        .quantize(IntQuantizer::params(8).per_row().check().unwrap())
        .run(w.view())
        .unwrap();
    let stages = &out.report.stages;
    assert_eq!(stages.len(), 3);
    assert_eq!(stages[1].structure, "low-rank");
    assert_eq!(stages[1].storage.total(), factored_bytes(128, 64, 16));
    let lr = match out.matrix.structure() {
        Structure::LowRank(lr) => lr,
        _ => panic!("not low rank"),
    };
    assert_eq!(lr.rank(), 16);
    assert_eq!(lr.a().encoding(), "int8");
    assert_eq!(lr.b().encoding(), "int8");
    // Quantizing shrinks the factors and costs little on top of truncation.
    assert!(stages[2].storage.total() < stages[1].storage.total() / 3);
    let (e1, e2) = (stages[1].error.rel_frobenius, stages[2].error.rel_frobenius);
    let tail = (sigma[16..].iter().map(|s| s * s).sum::<f64>()
        / sigma.iter().map(|s| s * s).sum::<f64>())
    .sqrt();
    assert!((e1 - tail).abs() < 1e-4, "{e1} vs {tail}");
    assert!(e2 < e1 * 1.05, "{e2} vs {e1}");
    // The quantized factored matrix multiplies like its decoded form.
    let x = gaussian(4, 64, 16).mapv(|v| v as f32);
    let y = out.matrix.matmul(x.view()).unwrap();
    let expect = naive_matmul(x.view(), out.matrix.to_dense().view());
    for (a, b) in y.iter().zip(expect.iter()) {
        assert!((*a as f64 - b).abs() < 1e-4);
    }
}

#[test]
fn pass_rejects_what_it_cannot_factor() {
    let w = gaussian(32, 16, 17).mapv(|x| x as f32);
    let pass = LowRank::params(RankSelection::Fixed(4)).check().unwrap();
    let q = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    assert!(matches!(
        pass.apply(&q, &Sequential),
        Err(SquishError::Incompatible { .. })
    ));
    let lr = pass
        .apply(
            &CompressedMatrix::from_dense(w.view()).unwrap(),
            &Sequential,
        )
        .unwrap();
    assert!(matches!(
        pass.apply(&lr, &Sequential),
        Err(SquishError::Incompatible {
            structure: "low-rank",
            ..
        })
    ));
    // Randomized pass in a pipeline on two threads equals the sequential run.
    let p = LowRank::params(RankSelection::CompressionRatio(3.0))
        .randomized(RandomizedSvd::settings().seed(1))
        .check()
        .unwrap();
    let a = Pipeline::new().then(p).run(w.view()).unwrap();
    let b = Pipeline::new()
        .then(p)
        .run_on(w.view(), &ThreadPool::new(2).unwrap())
        .unwrap();
    assert_eq!(a.matrix, b.matrix);
    assert!(a.report.stages[1].storage.ratio() >= 3.0);
    assert!(p.name().contains("rsvd"));
}

#[test]
fn exact_svd_on_a_pool_reconstructs_and_agrees_with_one_thread() {
    let w = gaussian(180, 130, 41).mapv(|x| x as f32);
    let pool = ThreadPool::new(2).unwrap();
    let seq = Svd::exact_on(w.view(), SvdBackend::Faer, &Sequential).unwrap();
    let par = Svd::exact_on(w.view(), SvdBackend::Faer, &pool).unwrap();
    // The same bits on every executor (faer's split is fixed), also where
    // faer's blocked parallel paths run (a larger matrix).
    assert_eq!(par, seq);
    assert_eq!(par, Svd::exact(w.view(), SvdBackend::Faer).unwrap());
    let big = gaussian(900, 700, 42).mapv(|x| x as f32);
    let one = Svd::exact(big.view(), SvdBackend::Faer).unwrap();
    for t in [1, 2, 3] {
        let p = ThreadPool::new(t).unwrap();
        assert_eq!(
            one,
            Svd::exact_on(big.view(), SvdBackend::Faer, &p).unwrap(),
            "{t} threads"
        );
    }
    // Against the independent Jacobi spectrum, and full reconstruction.
    let jac = jacobi_singular_values(w.view());
    for (a, b) in par.s().iter().zip(&jac) {
        assert!((*a as f64 - b).abs() <= 1e-4 * jac[0], "{a} vs {b}");
    }
    let err = frob((&par.reconstruct() - &w).view()) / frob(w.view());
    assert!(err < 1e-5, "{err}");
    // The low-rank pass on the pool: the Eckart–Young error of its rank,
    // and the same factors as on one thread.
    let pass = LowRank::params(RankSelection::Fixed(20)).check().unwrap();
    let f = pass.factorize(w.view(), &pool).unwrap();
    let f1 = pass.factorize(w.view(), &Sequential).unwrap();
    assert_eq!((&f.a, &f.b), (&f1.a, &f1.b));
    let tail: f64 = jac[20..].iter().map(|s| s * s).sum::<f64>().sqrt();
    let total: f64 = jac.iter().map(|s| s * s).sum::<f64>().sqrt();
    let got = error_of(w.view(), f.a.view(), f.b.view()) / frob(w.view());
    assert!(
        (got - tail / total).abs() < 1e-4,
        "{got} vs {}",
        tail / total
    );
}

#[test]
fn randomized_svd_matches_exact_error_and_is_the_same_on_any_executor() {
    // A decaying spectrum, as in trained weights.
    let sigma: Vec<f64> = (0..120).map(|i| 1.0 / (1.0 + i as f64 / 8.0)).collect();
    let w = with_spectrum(300, 200, &sigma, 42);
    let pool = ThreadPool::new(2).unwrap();
    let r = RandomizedSvd::params(24).check().unwrap();
    let seq = r.compute(w.view(), &Sequential).unwrap();
    assert_eq!(r.compute(w.view(), &pool).unwrap(), seq);
    let best = sigma[24..].iter().map(|s| s * s).sum::<f64>().sqrt()
        / sigma.iter().map(|s| s * s).sum::<f64>().sqrt();
    let got = frob((&seq.svd.reconstruct() - &w).view()) / frob(w.view());
    assert!(
        got >= best * (1.0 - 1e-4) && got <= best * 1.05,
        "{got} vs {best}"
    );
}
