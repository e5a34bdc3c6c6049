//! Recipes: first-match order, default, and every error with its line.

use squish::recipe::{Choice, MethodSpec, Recipe, RecipeError};
use squish::SquishError;

fn err(src: &str) -> RecipeError {
    match Recipe::from_toml(src) {
        Err(SquishError::Recipe(e)) => e,
        Err(e) => panic!("expected a RecipeError, got {e}"),
        Ok(_) => panic!("expected an error for\n{src}"),
    }
}

const RECIPE: &str = r#"# comment
[[rule]]
pattern = "lstm*.weight_ih"
pipeline = [{ method = "int8" }]

[[rule]]
pattern = "lstm*"
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "int4", granularity = "per-group", group_size = 32 }]

[[rule]]
regex = 'conv[0-9]+\.weight'
pipeline = []

[default]
pipeline = [{ method = "ternary" }]
"#;

#[test]
fn first_match_wins_then_default() {
    let r = Recipe::from_toml(RECIPE).unwrap();
    assert_eq!(r.rules().len(), 3);
    assert_eq!(
        r.rules().iter().map(|r| r.line()).collect::<Vec<_>>(),
        vec![3, 7, 11]
    );
    assert_eq!(r.choose("lstm_cell.weight_ih"), Choice::Rule(0));
    assert_eq!(r.choose("lstm_cell.weight_hh"), Choice::Rule(1));
    assert_eq!(r.choose("conv12.weight"), Choice::Rule(2));
    // Regexes match the whole name.
    assert_eq!(r.choose("xconv1.weight"), Choice::Default);
    assert_eq!(r.choose("conv1.weights"), Choice::Default);
    assert_eq!(r.methods(Choice::Default), &[MethodSpec::Ternary {}]);
    assert_eq!(r.methods(Choice::Rule(1)).len(), 2);
    assert!(r.methods(Choice::Rule(2)).is_empty());
    // Without a default, unmatched layers are kept.
    let r = Recipe::from_toml("[[rule]]\npattern = \"a*\"\npipeline = [{ method = \"binary\" }]\n")
        .unwrap();
    assert_eq!(r.choose("b"), Choice::Keep);
    assert_eq!(
        r.plan(&["a1", "b"], &[]).unwrap(),
        vec![Choice::Rule(0), Choice::Keep]
    );
}

#[test]
fn syntax_errors_name_their_line() {
    let e = err("[[rule]]\npattern = \"x\"\npipeline = [{ method = \"int8\" }]\ncolour = 3\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("colour"), "{e}");
    let e = err("[default]\npipeline = [\n  { method = \"int8\", bitz = 3 },\n]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 3, .. }), "{e}");
    let e = err("[default]\npipeline = [\n\n  { method = \"quantum\" },\n]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("quantum"), "{e}");
    let e = err("[default]\npipeline = [{ method = \"magnitude\", sparsity = \"half\" }]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 2, .. }), "{e}");
    let e = err("[default\n");
    assert!(matches!(e, RecipeError::Syntax { line: 1, .. }), "{e}");
    let e = err("\n\n[[rule]]\npipeline = []\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    let e = err("[[rule]]\npattern = \"a\"\nregex = \"a\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
}

#[test]
fn bad_values_and_patterns_name_their_line() {
    let e = err("[default]\npipeline = [\n  { method = \"int8\" },\n  { method = \"magnitude\", sparsity = 1.5 },\n]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("sparsity"), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int4\", granularity = \"per-group\" }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int4\", granularity = \"per-group\", group_size = 0 }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int8\", group_size = 8 }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("\n[[rule]]\npattern = \"a[\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::BadPattern { line: 3, .. }), "{e}");
    let e = err("[[rule]]\nregex = \"(\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::BadPattern { line: 2, .. }), "{e}");
}

#[test]
fn patterns_that_select_nothing_name_their_line() {
    let r = Recipe::from_toml(RECIPE).unwrap();
    let matrices = ["lstm_cell.weight_ih", "lstm_cell.weight_hh", "fc.weight"];
    let e = r.plan(&matrices, &["conv1.bias"]).unwrap_err();
    let SquishError::Recipe(RecipeError::Unmatched {
        line,
        ref pattern,
        ref detail,
    }) = e
    else {
        panic!("{e}")
    };
    assert_eq!((line, pattern.as_str()), (11, "conv[0-9]+\\.weight"));
    assert!(detail.contains("matches no tensor"), "{detail}");
    // Only non-matrix tensors match.
    let r2 = Recipe::from_toml("[[rule]]\npattern = \"*.bias\"\npipeline = []\n").unwrap();
    let e = r2.plan(&["fc.weight"], &["fc.bias"]).unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("fc.bias"),
        "{e}"
    );
    // Shadowed by an earlier rule.
    let r3 = Recipe::from_toml(
        "[[rule]]\npattern = \"*\"\npipeline = []\n[[rule]]\npattern = \"fc*\"\npipeline = []\n",
    )
    .unwrap();
    let e = r3.plan(&["fc.weight"], &[]).unwrap_err();
    assert!(
        matches!(
            e,
            SquishError::Recipe(RecipeError::Unmatched { line: 5, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn recipe_compresses_a_model_deterministically_across_thread_counts() {
    use squish::io::{Dtype, Entry, Model, Tensor};
    use squish::parallel::{Sequential, ThreadPool};
    let mut m = Model::new();
    for (i, name) in [
        "lstm_cell.weight_ih",
        "lstm_cell.weight_hh",
        "conv1.weight",
        "fc.weight",
    ]
    .iter()
    .enumerate()
    {
        let data: Vec<f32> = (0..64 * 12)
            .map(|k| ((k * 37 + i * 11) % 101) as f32 / 50.0 - 1.0)
            .collect();
        m.insert(
            *name,
            Tensor::float(Dtype::F32, vec![64, 4, 3], data).unwrap(),
        )
        .unwrap();
    }
    m.insert(
        "conv1.bias",
        Tensor::float(Dtype::F32, vec![64], vec![0.1; 64]).unwrap(),
    )
    .unwrap();
    let r = Recipe::from_toml(RECIPE).unwrap();
    let seq = squish::recipe::compress_model(&m, &r, &Sequential, &|_| {}).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let par = squish::recipe::compress_model(&m, &r, &pool, &|_| {}).unwrap();
    assert_eq!(seq.model, par.model);
    let kinds: Vec<(String, String)> = seq
        .model
        .iter()
        .map(|(n, e)| {
            let k = match e {
                Entry::Compressed(c) => format!(
                    "{} {}",
                    c.matrix().structure().kind(),
                    c.matrix().encoding()
                ),
                Entry::Plain(_) => "plain".into(),
            };
            (n.to_string(), k)
        })
        .collect();
    let want = [
        ("lstm_cell.weight_ih", "dense int8"),
        ("lstm_cell.weight_hh", "csr int4"),
        ("conv1.weight", "plain"),
        ("fc.weight", "dense ternary"),
        ("conv1.bias", "plain"),
    ];
    for ((n, k), (wn, wk)) in kinds.iter().zip(want) {
        assert_eq!((n.as_str(), k.as_str()), (wn, wk));
    }
    assert_eq!(seq.layers.len(), 3);
    assert_eq!(seq.layers[1].method, "magnitude 50% → int4 sym group-32");
    // The report's error is the measured error of the stored matrix.
    let Some(Entry::Compressed(c)) = seq.model.get("fc.weight") else {
        panic!()
    };
    let w = m.get("fc.weight").unwrap().matrix().unwrap();
    let e = squish::metrics::ErrorMetrics::between(w, c.matrix().to_dense().view()).unwrap();
    assert_eq!(e, seq.layers[2].error);
}

// ---------------------------------------------------------------------------
// The families wired in after the first recipe methods: low rank, k-means,
// N:M, structured pruning and integer calibration.

use ndarray::{Array2, ArrayView2};
use squish::io::{CompressedModel, Dtype, Entry, Model, Tensor};
use squish::matrix::{CompressedMatrix, Structure};
use squish::parallel::{Sequential, ThreadPool};
use squish::recipe::{
    compress_model, families, sweep, AxisSpec, CalibrationSpec, InitSpec, KMeansSpec, LowRankSpec,
    StructuredSpec,
};

/// The single default method of a one-method recipe.
fn one(method: &str) -> MethodSpec {
    let r = Recipe::from_toml(&format!("[default]\npipeline = [{method}]\n"))
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    r.default_methods().unwrap()[0].clone()
}

/// Runs a one-method recipe (as a pipeline) on `w`.
fn run(methods: &[MethodSpec], w: ArrayView2<f32>) -> CompressedMatrix {
    MethodSpec::pipeline(methods)
        .unwrap()
        .run(w)
        .unwrap()
        .matrix
}

/// ‖a − b‖_F / ‖a‖_F in f64.
fn rel(a: ArrayView2<f32>, b: ArrayView2<f32>) -> f64 {
    let n: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let d: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
    (n / d).sqrt()
}

/// Orthonormal DCT-II vector k of length n.
fn dct(n: usize, k: usize, i: usize) -> f64 {
    let s = if k == 0 { 1.0 } else { 2.0 } / n as f64;
    s.sqrt() * (std::f64::consts::PI * (i as f64 + 0.5) * k as f64 / n as f64).cos()
}

/// `rows × cols` with singular values exactly `sigma` (orthonormal DCT
/// singular vectors), so the SVD is known in closed form.
fn with_spectrum(rows: usize, cols: usize, sigma: &[f64]) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        sigma
            .iter()
            .enumerate()
            .map(|(k, s)| s * dct(rows, k, i) * dct(cols, k, j))
            .sum::<f64>() as f32
    })
}

/// A deterministic pseudo-random matrix in [-1, 1).
fn noise(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let h = (i * 7919 + j * 104_729 + seed * 1_299_709) as u64;
        let h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        (h as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
    })
}

#[test]
fn new_methods_parse_to_their_specs() {
    assert_eq!(
        one(r#"{ method = "lowrank", energy = 0.95 }"#),
        MethodSpec::LowRank(LowRankSpec {
            energy: Some(0.95),
            ..LowRankSpec::default()
        })
    );
    assert_eq!(
        one(
            r#"{ method = "lowrank", rank = 8, randomized = true, oversampling = 4, power_iters = 1, seed = 3 }"#
        ),
        MethodSpec::LowRank(LowRankSpec {
            rank: Some(8),
            randomized: Some(true),
            oversampling: Some(4),
            power_iters: Some(1),
            seed: Some(3),
            ..LowRankSpec::default()
        })
    );
    for rule in ["rel_error = 0.1", "ratio = 4.0", "bytes = 4096"] {
        assert!(matches!(
            one(&format!("{{ method = \"lowrank\", {rule} }}")),
            MethodSpec::LowRank(_)
        ));
    }
    assert_eq!(
        one(r#"{ method = "kmeans", k = 12, init = "kmeans++", seed = 9, per_row = true }"#),
        MethodSpec::KMeans(KMeansSpec {
            k: Some(12),
            init: Some(InitSpec::KMeansPlusPlus),
            seed: Some(9),
            per_row: Some(true),
            ..KMeansSpec::default()
        })
    );
    assert_eq!(
        one(r#"{ method = "kmeans", bits = 3, optimal = true }"#),
        MethodSpec::KMeans(KMeansSpec {
            bits: Some(3),
            optimal: Some(true),
            ..KMeansSpec::default()
        })
    );
    assert_eq!(
        one(r#"{ method = "nm", n = 2, m = 4 }"#),
        MethodSpec::NM { n: 2, m: 4 }
    );
    assert_eq!(
        one(r#"{ method = "structured", sparsity = 0.25, p = 1.0, axis = "cols" }"#),
        MethodSpec::Structured(StructuredSpec {
            sparsity: 0.25,
            p: Some(1.0),
            axis: AxisSpec::Cols,
        })
    );
    for (text, want) in [
        (r#""minmax""#, CalibrationSpec::MinMax),
        (r#""mse""#, CalibrationSpec::Mse),
        ("{ percentile = 99.9 }", CalibrationSpec::Percentile(99.9)),
    ] {
        let MethodSpec::Int8(s) = one(&format!("{{ method = \"int8\", calibration = {text} }}"))
        else {
            panic!()
        };
        assert_eq!(s.calibration, Some(want));
    }
}

#[test]
fn new_methods_reject_bad_keys_and_values_with_their_line() {
    // (method on line 3 of the recipe, expected error kind, text in the message)
    let cases: &[(&str, bool, &str)] = &[
        // Syntax: unknown keys, wrong types, unknown choices.
        (r#"{ method = "lowrank", rnak = 4 }"#, true, "rnak"),
        (r#"{ method = "lowrank", rank = -1 }"#, true, ""),
        (
            r#"{ method = "kmeans", bits = 4, init = "random" }"#,
            true,
            "random",
        ),
        (
            r#"{ method = "kmeans", k = 8, per_tensor = true }"#,
            true,
            "per_tensor",
        ),
        (r#"{ method = "nm", n = 2 }"#, true, "m"),
        (r#"{ method = "nm", n = 2, m = 4, k = 1 }"#, true, "k"),
        (
            r#"{ method = "structured", sparsity = 0.5, axis = "diag" }"#,
            true,
            "diag",
        ),
        (r#"{ method = "structured" }"#, true, "sparsity"),
        (r#"{ method = "int8", calibration = "max" }"#, true, "max"),
        (
            r#"{ method = "int8", calibration = { percentile = 99.0, x = 1 } }"#,
            true,
            "",
        ),
        // Bad values: out of range or contradictory.
        (r#"{ method = "lowrank" }"#, false, "rank rule"),
        (
            r#"{ method = "lowrank", rank = 4, energy = 0.9 }"#,
            false,
            "exactly one",
        ),
        (r#"{ method = "lowrank", energy = 1.5 }"#, false, "energy"),
        (r#"{ method = "lowrank", rank = 0 }"#, false, "rank 0"),
        (
            r#"{ method = "lowrank", rel_error = 1.0 }"#,
            false,
            "relative error",
        ),
        (
            r#"{ method = "lowrank", energy = 0.9, seed = 1 }"#,
            false,
            "randomized = true",
        ),
        (
            r#"{ method = "lowrank", energy = 0.9, randomized = false, power_iters = 1 }"#,
            false,
            "power_iters",
        ),
        (r#"{ method = "kmeans" }"#, false, "bits"),
        (
            r#"{ method = "kmeans", k = 4, bits = 2 }"#,
            false,
            "not both",
        ),
        (r#"{ method = "kmeans", bits = 17 }"#, false, "1..=16"),
        (r#"{ method = "kmeans", k = 1 }"#, false, "2..=65536"),
        (
            r#"{ method = "kmeans", k = 8, optimal = true, init = "density" }"#,
            false,
            "init",
        ),
        (
            r#"{ method = "kmeans", k = 8, seed = 2 }"#,
            false,
            "kmeans++",
        ),
        (
            r#"{ method = "kmeans", k = 8, max_iter = 0 }"#,
            false,
            "max_iter",
        ),
        (r#"{ method = "nm", n = 4, m = 4 }"#, false, "N < M"),
        (r#"{ method = "nm", n = 0, m = 4 }"#, false, "N < M"),
        (
            r#"{ method = "structured", sparsity = 1.0 }"#,
            false,
            "sparsity",
        ),
        (
            r#"{ method = "structured", sparsity = 0.5, p = 0.0 }"#,
            false,
            "p > 0",
        ),
        (
            r#"{ method = "int8", calibration = { percentile = 40.0 } }"#,
            false,
            "percentile",
        ),
    ];
    for &(method, syntax, text) in cases {
        let src = format!("[default]\npipeline = [\n  {method},\n]\n");
        let e = err(&src);
        match (&e, syntax) {
            (RecipeError::Syntax { line: 3, .. }, true)
            | (RecipeError::BadValue { line: 3, .. }, false) => {}
            _ => panic!("{method}: wrong error {e:?}"),
        }
        assert!(e.to_string().contains(text), "{method}: {e}");
        assert!(e.to_string().starts_with("recipe line 3:"), "{method}: {e}");
    }
}

#[test]
fn lowrank_by_energy_keeps_the_smallest_rank_reaching_it() {
    let sigma: Vec<f64> = (0..20).map(|k| 0.8f64.powi(k)).collect();
    let w = with_spectrum(48, 40, &sigma);
    let total: f64 = sigma.iter().map(|s| s * s).sum();
    for e in [0.5, 0.9, 0.95, 0.99] {
        // Closed form: the smallest r with Σ_{k<r} σ² ≥ e·Σσ².
        let r = (1..=sigma.len())
            .find(|&r| sigma[..r].iter().map(|s| s * s).sum::<f64>() >= e * total)
            .unwrap();
        let tail = (sigma[r..].iter().map(|s| s * s).sum::<f64>() / total).sqrt();
        let m = run(
            &[one(&format!("{{ method = \"lowrank\", energy = {e} }}"))],
            w.view(),
        );
        assert_eq!(
            (m.structure().kind(), m.encoding()),
            ("low-rank", "factored")
        );
        let Structure::LowRank(lr) = m.structure() else {
            unreachable!()
        };
        assert_eq!(lr.a().shape(), (48, r), "energy {e}");
        assert_eq!(lr.b().shape(), (r, 40), "energy {e}");
        let got = rel(w.view(), m.to_dense().view());
        assert!((got - tail).abs() < 1e-4, "energy {e}: {got} vs {tail}");
        assert!(got <= (1.0 - e).sqrt() + 1e-6);
    }
    // Then int8: each factor is quantized, the structure stays.
    let m = run(
        &[
            one(r#"{ method = "lowrank", rank = 5 }"#),
            one(r#"{ method = "int8" }"#),
        ],
        w.view(),
    );
    let Structure::LowRank(lr) = m.structure() else {
        panic!("{}", m.structure().kind())
    };
    assert_eq!((lr.a().encoding(), lr.b().encoding()), ("int8", "int8"));
    assert_eq!(lr.a().shape(), (48, 5));
    // Randomized and seeded: the same rank on this spectrum, and the same
    // bits whatever the run.
    let rs = one(r#"{ method = "lowrank", energy = 0.95, randomized = true, seed = 7 }"#);
    let a = run(std::slice::from_ref(&rs), w.view());
    let b = run(std::slice::from_ref(&rs), w.view());
    assert_eq!(a, b);
    let Structure::LowRank(lr) = a.structure() else {
        panic!()
    };
    assert_eq!(lr.a().cols(), 7);
    // A factored matrix cannot be pruned afterwards: a typed error at run time.
    let p = MethodSpec::pipeline(&[
        one(r#"{ method = "lowrank", rank = 2 }"#),
        one(r#"{ method = "nm", n = 2, m = 4 }"#),
    ])
    .unwrap();
    assert!(p.run(w.view()).is_err());
}

/// The optimal sum of squared errors of 1-D k-means by brute force over the
/// contiguous partitions of the sorted values.
fn brute_force_sse(values: &[f32], k: usize) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    v.sort_by(f64::total_cmp);
    let cost = |a: usize, b: usize| {
        let s = &v[a..b];
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        s.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
    };
    fn go(v: &[f64], start: usize, k: usize, cost: &dyn Fn(usize, usize) -> f64) -> f64 {
        if k == 1 {
            return cost(start, v.len());
        }
        (start + 1..=v.len() - k + 1)
            .map(|end| cost(start, end) + go(v, end, k - 1, cost))
            .fold(f64::INFINITY, f64::min)
    }
    go(&v, 0, k, &cost)
}

#[test]
fn kmeans_shares_values_and_optimal_matches_brute_force() {
    let w = noise(16, 24, 1);
    let distinct = |m: &CompressedMatrix| {
        let mut d: Vec<u32> = m.to_dense().iter().map(|x| x.to_bits()).collect();
        d.sort_unstable();
        d.dedup();
        d.len()
    };
    let sse = |a: ArrayView2<f32>, m: &CompressedMatrix| -> f64 {
        a.iter()
            .zip(m.to_dense().iter())
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum()
    };
    let lloyd = run(&[one(r#"{ method = "kmeans", bits = 2 }"#)], w.view());
    assert_eq!(
        (lloyd.structure().kind(), lloyd.encoding()),
        ("dense", "codebook")
    );
    assert!(distinct(&lloyd) <= 4);
    let opt = run(
        &[one(r#"{ method = "kmeans", k = 4, optimal = true }"#)],
        w.view(),
    );
    assert_eq!(opt.encoding(), "codebook");
    assert!(sse(w.view(), &opt) <= sse(w.view(), &lloyd) + 1e-9);
    // The exact DP against brute force on a small tensor.
    let small = noise(2, 7, 3);
    let opt = run(
        &[one(r#"{ method = "kmeans", k = 3, optimal = true }"#)],
        small.view(),
    );
    let want = brute_force_sse(small.as_slice().unwrap(), 3);
    assert!((sse(small.view(), &opt) - want).abs() < 1e-5, "{want}");
    // Per row: at most k values in every row; k-means++ seeds are reproducible.
    let pr = one(r#"{ method = "kmeans", k = 3, per_row = true, init = "kmeans++", seed = 5 }"#);
    let m = run(std::slice::from_ref(&pr), w.view());
    for row in m.to_dense().rows() {
        let mut d: Vec<u32> = row.iter().map(|x| x.to_bits()).collect();
        d.sort_unstable();
        d.dedup();
        assert!(d.len() <= 3);
    }
    assert_eq!(m, run(&[pr], w.view()));
    // After pruning only the survivors are clustered: zeros stay zeros.
    let m = run(
        &[
            one(r#"{ method = "magnitude", sparsity = 0.5 }"#),
            one(r#"{ method = "kmeans", bits = 4, init = "density" }"#),
        ],
        w.view(),
    );
    assert_eq!((m.structure().kind(), m.encoding()), ("csr", "codebook"));
    let zeros = m.to_dense().iter().filter(|&&x| x == 0.0).count();
    assert!(zeros >= w.len() / 2);
}

#[test]
fn nm_keeps_the_largest_n_of_every_m() {
    let w = noise(8, 16, 2);
    let m = run(&[one(r#"{ method = "nm", n = 2, m = 4 }"#)], w.view());
    assert_eq!((m.structure().kind(), m.encoding()), ("n:m", "f32"));
    let d = m.to_dense();
    for (wr, dr) in w.rows().into_iter().zip(d.rows()) {
        for (g, h) in wr.as_slice().unwrap().chunks(4).zip(dr.to_vec().chunks(4)) {
            let mut order: Vec<usize> = (0..4).collect();
            order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            for (rank, &p) in order.iter().enumerate() {
                let want = if rank < 2 { g[p] } else { 0.0 };
                assert_eq!(h[p], want);
            }
        }
    }
    // Then int4: values quantized, pattern kept.
    let q = run(
        &[
            one(r#"{ method = "nm", n = 2, m = 4 }"#),
            one(r#"{ method = "int4" }"#),
        ],
        w.view(),
    );
    assert_eq!((q.structure().kind(), q.encoding()), ("n:m", "int4"));
    // m must divide the row length: a typed error when applied.
    let p = MethodSpec::pipeline(&[one(r#"{ method = "nm", n = 1, m = 3 }"#)]).unwrap();
    assert!(p.run(w.view()).is_err());
}

#[test]
fn structured_removes_the_smallest_rows_or_columns() {
    // Row i scaled by a distinct factor so the norms are strictly ordered.
    let base = noise(10, 12, 4);
    let w = Array2::from_shape_fn((10, 12), |(i, j)| {
        base[[i, j]] * (1.0 + ((i * 7) % 10) as f32)
    });
    let norms: Vec<f64> = w
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>())
        .collect();
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]));
    let m = run(
        &[one(r#"{ method = "structured", sparsity = 0.3 }"#)],
        w.view(),
    );
    assert_eq!(m.structure().kind(), "kept-rows");
    let d = m.to_dense();
    for (rank, &i) in order.iter().enumerate() {
        if rank < 3 {
            assert!(d.row(i).iter().all(|&x| x == 0.0), "row {i}");
        } else {
            assert_eq!(d.row(i), w.row(i), "row {i}");
        }
    }
    let m = run(
        &[one(
            r#"{ method = "structured", sparsity = 0.5, axis = "cols", p = 1.0 }"#,
        )],
        w.t(),
    );
    assert_eq!(m.structure().kind(), "csr");
    let d = m.to_dense();
    for (rank, &i) in order.iter().enumerate() {
        let col = d.column(i);
        assert_eq!(col.iter().all(|&x| x == 0.0), rank < 5, "column {i}");
    }
}

#[test]
fn calibration_clips_outliers_or_minimizes_the_error() {
    let mut w = noise(4, 256, 5);
    w[[0, 3]] = 40.0; // one outlier in row 0
    let minmax = run(
        &[one(r#"{ method = "int8", calibration = "minmax" }"#)],
        w.view(),
    );
    let pct = run(
        &[one(
            r#"{ method = "int8", calibration = { percentile = 99.0 } }"#,
        )],
        w.view(),
    );
    let mse = run(
        &[one(r#"{ method = "int8", calibration = "mse" }"#)],
        w.view(),
    );
    let default = run(&[one(r#"{ method = "int8" }"#)], w.view());
    assert_eq!(default, minmax);
    // Min-max keeps the outlier on the grid; the percentile clips it.
    assert!((minmax.to_dense()[[0, 3]] - 40.0).abs() < 1e-4);
    assert!(pct.to_dense()[[0, 3]] < 2.0);
    // MSE clipping never does worse than min-max (ratio 1 is a candidate).
    assert!(rel(w.view(), mse.to_dense().view()) <= rel(w.view(), minmax.to_dense().view()));
}

/// A transformer-like model: embeddings, two blocks of attention
/// projections (nearly low rank) and feed-forward layers, norms, a head.
fn transformer_like() -> Model {
    let d = 64;
    let mut m = Model::new();
    let mut put = |name: &str, w: Array2<f32>| {
        let shape = vec![w.nrows(), w.ncols()];
        m.insert(
            name,
            Tensor::float(Dtype::F32, shape, w.into_raw_vec_and_offset().0).unwrap(),
        )
        .unwrap();
    };
    put("model.embed_tokens.weight", noise(100, d, 1));
    let sigma: Vec<f64> = (0..d).map(|k| 4.0 * 0.6f64.powi(k as i32)).collect();
    for l in 0..2 {
        for (p, proj) in ["q", "k", "v", "o"].iter().enumerate() {
            let w = with_spectrum(d, d, &sigma) + noise(d, d, 10 * l + p).mapv(|x| x * 1e-3);
            put(&format!("model.layers.{l}.attn.{proj}_proj.weight"), w);
        }
        put(
            &format!("model.layers.{l}.mlp.up.weight"),
            noise(2 * d, d, 20 + l),
        );
        put(
            &format!("model.layers.{l}.mlp.down.weight"),
            noise(d, 2 * d, 30 + l),
        );
    }
    put("lm_head.weight", noise(100, d, 40));
    m.insert(
        "model.norm.weight",
        Tensor::float(Dtype::F32, vec![d], vec![1.0; d]).unwrap(),
    )
    .unwrap();
    m
}

#[test]
fn transformer_like_recipe_applies_and_round_trips() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/transformer_like.toml"
    );
    let r = Recipe::load(path).unwrap();
    assert_eq!(r.rules().len(), 3);
    assert_eq!(
        r.methods(Choice::Rule(1))[0],
        MethodSpec::LowRank(LowRankSpec {
            energy: Some(0.95),
            ..LowRankSpec::default()
        })
    );
    let model = transformer_like();
    let out = compress_model(&model, &r, &Sequential, &|_| {}).unwrap();
    let par = compress_model(&model, &r, &ThreadPool::new(2).unwrap(), &|_| {}).unwrap();
    assert_eq!(out.model, par.model);
    assert_eq!(out.layers.len(), 14);
    let kind = |name: &str| -> (String, &'static str) {
        let Some(Entry::Compressed(c)) = out.model.get(name) else {
            panic!("{name} is not compressed")
        };
        let m = c.matrix();
        let enc = match m.structure() {
            Structure::LowRank(lr) => {
                assert_eq!(lr.a().encoding(), lr.b().encoding());
                lr.a().encoding()
            }
            _ => m.encoding(),
        };
        (m.structure().kind().to_string(), enc)
    };
    assert_eq!(kind("model.embed_tokens.weight"), ("dense".into(), "int8"));
    assert_eq!(kind("lm_head.weight"), ("dense".into(), "int8"));
    for l in 0..2 {
        for proj in ["q", "k", "v", "o"] {
            let name = format!("model.layers.{l}.attn.{proj}_proj.weight");
            assert_eq!(kind(&name), ("low-rank".into(), "int8"));
            let Some(Entry::Compressed(c)) = out.model.get(&name) else {
                panic!()
            };
            let Structure::LowRank(lr) = c.matrix().structure() else {
                panic!()
            };
            // σ_k = 4·0.6^k: 95% of Σσ² is reached at rank 3 (1 − 0.36³ = 0.953).
            assert_eq!(lr.a().cols(), 3, "{name}");
        }
        for ff in ["up", "down"] {
            let name = format!("model.layers.{l}.mlp.{ff}.weight");
            assert_eq!(kind(&name), ("csr".into(), "codebook"));
        }
    }
    assert!(matches!(
        out.model.get("model.norm.weight"),
        Some(Entry::Plain(_))
    ));
    let report = |n: &str| out.layers.iter().find(|l| l.name == n).unwrap();
    assert_eq!(
        report("model.layers.0.attn.q_proj.weight").method,
        "low-rank energy 0.95 faer → int8 sym per-row"
    );
    assert!(report("model.layers.0.attn.q_proj.weight").ratio() > 5.0);
    assert!(report("model.layers.1.mlp.up.weight")
        .method
        .starts_with("magnitude 50% → k-means k=16"));

    // Save → load: the same matrices bit for bit and the same products.
    let bytes = out.model.to_bytes().unwrap();
    let back = CompressedModel::from_bytes(&bytes).unwrap();
    assert_eq!(back, out.model);
    let x = noise(3, 64, 99);
    for (name, e) in out.model.iter() {
        let (Entry::Compressed(a), Some(Entry::Compressed(b))) = (e, back.get(name)) else {
            continue;
        };
        if a.matrix().shape().1 == 64 {
            assert_eq!(
                a.matrix().matmul(x.view()).unwrap(),
                b.matrix().matmul(x.view()).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn sweep_covers_every_family_and_orders_each_by_rate() {
    let w1 = noise(64, 64, 7);
    let sigma: Vec<f64> = (0..48).map(|k| 0.9f64.powi(k)).collect();
    let w2 = with_spectrum(64, 48, &sigma);
    let layers = vec![("a".to_string(), w1.view()), ("b".to_string(), w2.view())];
    let fams = families();
    let start = std::time::Instant::now();
    let seq = sweep(&fams, &layers, &Sequential).unwrap();
    let par = sweep(&fams, &layers, &ThreadPool::new(2).unwrap()).unwrap();
    assert!(start.elapsed().as_secs() < 20);
    assert_eq!(seq, par);
    let names: Vec<&str> = fams.iter().map(|f| f.name).collect();
    for want in ["low rank by energy + int8", "k-means sharing (per tensor)"] {
        assert!(names.contains(&want), "{names:?}");
    }
    for f in &fams {
        let pts: Vec<_> = seq.iter().filter(|p| p.family == f.name).collect();
        assert_eq!(pts.len(), f.settings.len());
        assert!(pts
            .iter()
            .all(|p| p.rel_error.is_finite() && p.bits_per_weight > 0.0));
    }
    // More energy / more bits: more bits per weight, less error.
    for family in ["low rank by energy + int8", "k-means sharing (per tensor)"] {
        let pts: Vec<_> = seq.iter().filter(|p| p.family == family).collect();
        for pair in pts.windows(2) {
            assert!(
                pair[0].bits_per_weight < pair[1].bits_per_weight,
                "{family}"
            );
            assert!(pair[0].rel_error > pair[1].rel_error, "{family}");
        }
    }
    // k-means with b bits costs b bits per weight plus the codebook.
    let k3 = seq.iter().find(|p| p.setting == "k-means 3 bits").unwrap();
    let n = (64 * 64 + 64 * 48) as f64;
    assert!(k3.bits_per_weight > 3.0 && k3.bits_per_weight < 3.0 + 2000.0 / n);
}
