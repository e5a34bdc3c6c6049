//! Data-aware recipe methods (gptq, sparsegpt, wanda, awq) and the
//! `[calibration]` section: parsing, typed errors without data, and
//! results against closed forms.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use squish::io::{CompressedModel, Dtype, Entry, Model, Tensor};
use squish::matrix::{CompressedMatrix, Structure};
use squish::parallel::{Sequential, ThreadPool};
use squish::pass::{CalibrationError, LayerStats};
use squish::recipe::{
    compress_model, compress_model_calibrated, AwqSpec, CalibrationModeSpec, CalibrationSection,
    GptqSpec, GranularitySpec, MethodSpec, ModelCalibration, Recipe, RecipeError, SparseGptSpec,
    WandaSpec,
};
use squish::SquishError;

fn recipe_err(src: &str) -> RecipeError {
    match Recipe::from_toml(src) {
        Err(SquishError::Recipe(e)) => e,
        Err(e) => panic!("expected a RecipeError, got {e}"),
        Ok(_) => panic!("expected an error for\n{src}"),
    }
}

fn default_of(method: &str) -> Recipe {
    Recipe::from_toml(&format!("[default]\npipeline = [{method}]\n"))
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0f32))
}

fn model_of(layers: &[(&str, &Array2<f32>)]) -> Model {
    let mut m = Model::new();
    for (name, w) in layers {
        let t = Tensor::float(
            Dtype::F32,
            vec![w.nrows(), w.ncols()],
            w.iter().copied().collect(),
        );
        m.insert(*name, t.unwrap()).unwrap();
    }
    m.insert(
        "norm.weight",
        Tensor::float(Dtype::F32, vec![4], vec![1.0; 4]).unwrap(),
    )
    .unwrap();
    m
}

fn matrix(c: &CompressedModel, name: &str) -> CompressedMatrix {
    match c.get(name) {
        Some(Entry::Compressed(t)) => t.matrix().clone(),
        _ => panic!("{name} is not compressed"),
    }
}

/// Statistics whose `H = XᵀX` is exactly `scale²·I` (X = scale·I).
fn identity_stats(n: usize, scale: f32) -> LayerStats {
    let mut s = LayerStats::new(n);
    s.accumulate((Array2::<f32>::eye(n) * scale).view())
        .unwrap();
    s
}

#[test]
fn data_aware_methods_parse_to_their_specs() {
    let r = Recipe::from_toml(
        r#"
[calibration]
file = "sentences.txt"
samples = 64
seed = 3
max_tokens = 96
mode = "one-shot"

[[rule]]
pattern = "*.q.weight"
pipeline = [{ method = "gptq", bits = 3, granularity = "per-group", group_size = 128, calibration = "mse", act_order = true, damp = 0.005 }]

[[rule]]
pattern = "*.k.weight"
pipeline = [{ method = "sparsegpt", n = 2, m = 4, block = 64 }]

[default]
pipeline = [{ method = "wanda", sparsity = 0.5 }]
"#,
    )
    .unwrap();
    assert!(r.needs_calibration());
    let c = r.calibration().unwrap();
    assert_eq!(c.samples, Some(64));
    assert_eq!(c.mode, CalibrationModeSpec::OneShot);
    assert_eq!(
        c.file.as_deref(),
        Some(std::path::Path::new("sentences.txt"))
    );
    assert_eq!(
        r.rules()[0].methods()[0],
        MethodSpec::Gptq(GptqSpec {
            bits: 3,
            granularity: GranularitySpec::PerGroup,
            group_size: Some(128),
            symmetric: None,
            calibration: Some(squish::recipe::CalibrationSpec::Mse),
            damp: Some(0.005),
            block: None,
            act_order: Some(true),
            static_groups: None,
        })
    );
    assert_eq!(
        r.rules()[1].methods()[0],
        MethodSpec::SparseGpt(SparseGptSpec {
            n: Some(2),
            m: Some(4),
            block: Some(64),
            ..SparseGptSpec::default()
        })
    );
    assert_eq!(
        r.default_methods().unwrap()[0],
        MethodSpec::Wanda(WandaSpec {
            sparsity: Some(0.5),
            ..WandaSpec::default()
        })
    );
    assert!(!default_of(r#"{ method = "int4" }"#).needs_calibration());
}

#[test]
fn bad_data_aware_keys_name_their_line() {
    for (src, line) in [
        (
            "[default]\npipeline = [\n{ method = \"gptq\", bits = 5 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"gptq\", bits = 4, group_size = 64 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"gptq\", bits = 4, damp = -1.0 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"sparsegpt\", sparsity = 0.5, n = 2, m = 4 }]\n",
            3,
        ),
        ("[default]\npipeline = [\n{ method = \"sparsegpt\" }]\n", 3),
        (
            "[default]\npipeline = [\n{ method = \"sparsegpt\", n = 4, m = 4 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"wanda\", sparsity = 1.0 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"awq\", bits = 4, damp = 0.1 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"awq\", bits = 2 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"awq\", bits = 4, grid = 0 }]\n",
            3,
        ),
        (
            "[default]\npipeline = [\n{ method = \"awq\", bits = 4, search = \"gptq\", gptq = false }]\n",
            3,
        ),
        ("\n[calibration]\nsamples = 0\n", 2),
    ] {
        match recipe_err(src) {
            RecipeError::BadValue { line: l, .. } => assert_eq!(l, line, "{src}"),
            e => panic!("{src}: expected BadValue, got {e}"),
        }
    }
    match recipe_err("[default]\npipeline = [{ method = \"gptq\", bits = 4, colour = 1 }]\n") {
        RecipeError::Syntax { line: 2, .. } => {}
        e => panic!("expected Syntax on line 2, got {e}"),
    }
    match recipe_err("[calibration]\nsentences = \"a.txt\"\n") {
        RecipeError::Syntax { .. } => {}
        e => panic!("expected Syntax, got {e}"),
    }
}

#[test]
fn data_aware_method_without_data_is_a_typed_error_before_any_work() {
    let w = random(8, 16, 1);
    let model = model_of(&[("fc.weight", &w), ("head.weight", &w)]);
    let r = Recipe::from_toml(
        "[[rule]]\npattern = \"head.*\"\npipeline = [{ method = \"sparsegpt\", sparsity = 0.5 }]\n\n[default]\npipeline = [{ method = \"int8\" }]\n",
    )
    .unwrap();
    match compress_model(&model, &r, &Sequential, &|_| panic!("no work expected")) {
        Err(SquishError::Recipe(RecipeError::NeedsCalibration {
            rule,
            method,
            layer,
        })) => {
            assert_eq!(rule, "recipe line 2");
            assert_eq!(method, "sparsegpt 50%");
            assert_eq!(layer, "head.weight");
        }
        other => panic!("expected NeedsCalibration, got {other:?}"),
    }
    // Statistics for another layer only: still refused, naming the layer.
    let mut cal = ModelCalibration::default();
    cal.stats
        .insert("fc.weight".into(), identity_stats(16, 1.0));
    let e = compress_model_calibrated(&model, &r, &cal, &Sequential, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("`head.weight`"), "{e}");
    // A bare pipeline without statistics: the pass's own typed error.
    let p = MethodSpec::pipeline(r.rules()[0].methods()).unwrap();
    assert!(matches!(
        p.run(&w),
        Err(SquishError::Calibration(
            CalibrationError::MissingStats { .. }
        ))
    ));
}

#[test]
fn gptq_with_identity_hessian_is_the_int_recipe_and_wanda_with_equal_norms_is_magnitude_nm() {
    let w = random(24, 64, 2);
    let model = model_of(&[("fc.weight", &w)]);
    let mut cal = ModelCalibration::default();
    cal.stats
        .insert("fc.weight".into(), identity_stats(64, 3.0));
    let run = |method: &str, cal: &ModelCalibration| {
        let out = compress_model_calibrated(&model, &default_of(method), cal, &Sequential, &|_| {})
            .unwrap();
        out.model
            .decompress()
            .get("fc.weight")
            .unwrap()
            .as_f32()
            .unwrap()
            .to_vec()
    };
    let none = ModelCalibration::default();
    for (aware, free) in [
        (
            r#"{ method = "gptq", bits = 4, granularity = "per-group", group_size = 16 }"#,
            r#"{ method = "int4", granularity = "per-group", group_size = 16 }"#,
        ),
        (
            r#"{ method = "gptq", bits = 8, symmetric = false }"#,
            r#"{ method = "int8", symmetric = false }"#,
        ),
        (
            r#"{ method = "wanda", n = 2, m = 4 }"#,
            r#"{ method = "nm", n = 2, m = 4 }"#,
        ),
        // Equal activations: every exponent gives s = 1, AWQ is round-to-nearest.
        (
            r#"{ method = "awq", bits = 4, granularity = "per-group", group_size = 16 }"#,
            r#"{ method = "int4", granularity = "per-group", group_size = 16 }"#,
        ),
        (
            r#"{ method = "awq", bits = 8, symmetric = false, gptq = true }"#,
            r#"{ method = "int8", symmetric = false }"#,
        ),
    ] {
        assert_eq!(run(aware, &cal), run(free, &none), "{aware} vs {free}");
    }
    // No scale won: no input scale is stored.
    let out = compress_model_calibrated(
        &model,
        &default_of(r#"{ method = "awq", bits = 4 }"#),
        &cal,
        &Sequential,
        &|_| {},
    )
    .unwrap();
    assert!(out.model.get("fc.input_scale").is_none());
}

#[test]
fn awq_parses_runs_and_stores_its_scale_with_the_matrix() {
    let r = default_of(
        r#"{ method = "awq", bits = 3, granularity = "per-group", group_size = 32, gptq = true, act_order = true, grid = 10 }"#,
    );
    assert!(r.needs_calibration());
    match &r.default_methods().unwrap()[0] {
        MethodSpec::Awq(s) => {
            assert_eq!(
                *s,
                AwqSpec {
                    bits: 3,
                    granularity: GranularitySpec::PerGroup,
                    group_size: Some(32),
                    gptq: Some(true),
                    act_order: Some(true),
                    grid: Some(10),
                    ..AwqSpec::default()
                }
            );
        }
        m => panic!("expected awq, got {m:?}"),
    }
    let r = default_of(r#"{ method = "awq", bits = 4, search = "gptq", damp = 0.1 }"#);
    let p = MethodSpec::pipeline(r.default_methods().unwrap()).unwrap();
    assert_eq!(p.pass_names(), "awq (gptq search) + gptq int4 sym per-row");
    let (rows, n) = (24, 64);
    let w = random(rows, n, 11);
    let model = model_of(&[("fc.weight", &w)]);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = Array2::from_shape_fn((256, n), |(_, j)| {
        rng.random_range(-1.0..1.0f32) * if j % 9 == 0 { 25.0 } else { 1.0 }
    });
    let mut cal = ModelCalibration::default();
    cal.stats
        .entry("fc.weight", n)
        .accumulate(x.view())
        .unwrap();
    let recipe =
        default_of(r#"{ method = "awq", bits = 4, granularity = "per-group", group_size = 32 }"#);
    let out = compress_model_calibrated(&model, &recipe, &cal, &Sequential, &|_| {}).unwrap();
    let m = matrix(&out.model, "fc.weight");
    let f = match out.model.get("fc.input_scale") {
        Some(Entry::Plain(t)) => t.as_f32().unwrap().to_vec(),
        _ => panic!("AWQ stores fc.input_scale"),
    };
    assert_eq!(f.len(), n);
    assert!(f.iter().all(|v| v.is_finite() && *v > 0.0));
    // Outlier inputs are scaled up in the weight, so divided in the input.
    let mean_f = |pick: bool| {
        let v: Vec<f32> = (0..n)
            .filter(|j| (j % 9 == 0) == pick)
            .map(|j| f[j])
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(mean_f(true) < mean_f(false));
    let report = &out.layers[0];
    assert_eq!(report.method, "awq int4 sym group-32");
    assert_eq!(report.bytes_after, m.storage().total() + 4 * n);
    // The report's error is that of the effective weight Q·diag(f).
    let mut eff = m.to_dense();
    eff *= &ndarray::ArrayView1::from(f.as_slice());
    let num: f64 = (&eff - &w).iter().map(|&v| (v as f64).powi(2)).sum();
    let den: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
    assert!((report.error.rel_frobenius - (num / den).sqrt()).abs() < 1e-6);
    // Its output error on the calibration inputs beats round-to-nearest.
    let rtn = compress_model_calibrated(
        &model,
        &default_of(r#"{ method = "int4", granularity = "per-group", group_size = 32 }"#),
        &ModelCalibration::default(),
        &Sequential,
        &|_| {},
    )
    .unwrap();
    let out_err = |wq: &Array2<f32>| -> f64 {
        let d = (wq - &w).mapv(f64::from);
        x.mapv(f64::from).dot(&d.t()).iter().map(|v| v * v).sum()
    };
    assert!(out_err(&eff) < out_err(&matrix(&rtn.model, "fc.weight").to_dense()));
}

#[test]
fn sparsegpt_and_wanda_give_exact_patterns_and_the_same_result_on_any_executor() {
    let (rows, n) = (40, 64);
    let w = random(rows, n, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = Array2::from_shape_fn((300, n), |(_, j)| {
        rng.random_range(-1.0..1.0f32) * (1.0 + (j % 5) as f32)
    });
    let mut stats = LayerStats::new(n);
    stats.accumulate(x.view()).unwrap();
    let model = model_of(&[("fc.weight", &w)]);
    let mut cal = ModelCalibration::default();
    cal.stats.insert("fc.weight".into(), stats);
    for (method, per_row, structure) in [
        (r#"{ method = "sparsegpt", sparsity = 0.5 }"#, n / 2, "csr"),
        (r#"{ method = "sparsegpt", n = 2, m = 4 }"#, n / 2, "n:m"),
        (r#"{ method = "wanda", sparsity = 0.75 }"#, n / 4, "csr"),
    ] {
        let r = default_of(method);
        let a = compress_model_calibrated(&model, &r, &cal, &Sequential, &|_| {}).unwrap();
        let b = compress_model_calibrated(&model, &r, &cal, &ThreadPool::new(3).unwrap(), &|_| {})
            .unwrap();
        let ma = matrix(&a.model, "fc.weight");
        assert_eq!(ma, matrix(&b.model, "fc.weight"), "{method}");
        assert_eq!(ma.structure().kind(), structure);
        let d = ma.to_dense();
        for row in d.outer_iter() {
            assert_eq!(
                row.iter().filter(|&&v| v != 0.0).count(),
                per_row,
                "{method}"
            );
        }
        if let Structure::NM(_) = ma.structure() {
            for row in d.outer_iter() {
                for g in row.as_slice().unwrap().chunks(4) {
                    assert!(g.iter().filter(|&&v| v != 0.0).count() <= 2);
                }
            }
        }
    }
}

#[test]
fn layers_compressed_elsewhere_are_stored_and_reported_as_they_are() {
    let w = random(8, 16, 5);
    let model = model_of(&[("fc.weight", &w)]);
    let r = default_of(r#"{ method = "gptq", bits = 4 }"#);
    let stats = identity_stats(16, 1.0);
    let m = MethodSpec::pipeline(r.default_methods().unwrap())
        .unwrap()
        .run_calibrated("fc.weight", &w, Some(&stats), &Sequential)
        .unwrap()
        .matrix;
    let mut cal = ModelCalibration::default();
    cal.compressed.insert("fc.weight".into(), m.clone());
    let out = compress_model_calibrated(&model, &r, &cal, &Sequential, &|_| {}).unwrap();
    assert_eq!(matrix(&out.model, "fc.weight"), m);
    assert_eq!(out.layers[0].method, "gptq int4 sym per-row");
    assert_eq!(out.layers[0].bytes_after, m.storage().total());
    // The wrong shape is refused.
    cal.compressed.insert(
        "fc.weight".into(),
        CompressedMatrix::from_dense(w.t()).unwrap(),
    );
    assert!(compress_model_calibrated(&model, &r, &cal, &Sequential, &|_| {}).is_err());
}

#[test]
fn calibration_draw_is_seeded_and_keeps_file_order() {
    let all: Vec<usize> = (0..500).collect();
    let c = |seed| CalibrationSection {
        samples: Some(128),
        seed: Some(seed),
        ..CalibrationSection::default()
    };
    let a = c(1).draw(&all);
    assert_eq!(a.len(), 128);
    assert!(a.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(a, c(1).draw(&all));
    assert_ne!(a, c(2).draw(&all));
    assert_eq!(c(1).draw(&all[..100]), all[..100].to_vec());
    assert_eq!(CalibrationSection::default().draw(&all).len(), 128);
}
