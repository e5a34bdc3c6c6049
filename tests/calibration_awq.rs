//! AWQ as a pipeline pass: its objective against round-to-nearest and
//! GPTQ on random correlated inputs (naive f64 objectives), the stored
//! per-input scale, the fold of attention's scale into the value layer
//! against an f64 BERT, typed errors and determinism.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use squish::calibration::{collect, compress, fold_bert_input_scales, Calibratable, Mode};
use squish::io::{CompressedModel, Dtype, Entry, Model, Tensor};
use squish::matrix::{CompressedMatrix, HessianError};
use squish::nn::{Activations, BertConfig, BertEncoder, TokenBatch, Weights};
use squish::parallel::{Sequential, ThreadPool};
use squish::pass::{CalibratedPass, CalibrationError, LayerStats};
use squish::pipeline::Pipeline;
use squish::quantization::{fold_input_scales, scale_rows, Awq, Gptq};
use squish::recipe::{compress_model_calibrated, ModelCalibration, Recipe};
use squish::training::Mlp;
use squish::SquishError;

mod common;
use common::bert::{bert_f64, build, tiny_config};

fn uniform(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0f32))
}

/// Correlated inputs with a few outlier channels, as real layers see:
/// `X = Z·A`, columns `j % 7 == 0` scaled by 15.
fn correlated(samples: usize, n: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let z = uniform(samples, n, rng);
    let a = uniform(n, n, rng) * 0.3 + Array2::<f32>::eye(n);
    let mut x = z.dot(&a);
    for (j, mut c) in x.columns_mut().into_iter().enumerate() {
        if j % 7 == 0 {
            c.mapv_inplace(|v| v * 15.0);
        }
    }
    x
}

/// `‖X·Wᵀ − X·Ŵᵀ‖²_F` in f64, straight from the activations.
fn objective(x: &Array2<f32>, w: &Array2<f32>, wq: &Array2<f32>) -> f64 {
    let x = x.mapv(f64::from);
    let d = (wq - w).mapv(f64::from);
    x.dot(&d.t()).iter().map(|v| v * v).sum()
}

fn stats_of(x: &Array2<f32>) -> LayerStats {
    let mut s = LayerStats::new(x.ncols());
    s.accumulate(x.view()).unwrap();
    s
}

/// The decoded matrix times the input scale by column.
fn effective(m: &CompressedMatrix, f: Option<&[f32]>) -> Array2<f32> {
    let mut w = m.to_dense();
    if let Some(f) = f {
        w *= &ndarray::ArrayView1::from(f);
    }
    w
}

#[test]
fn awq_objective_is_never_above_rtn_and_awq_gptq_never_above_gptq() {
    let mut scaled_wins = 0;
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (rows, n) = (24, 48);
        let x = correlated(160, n, &mut rng);
        let w = uniform(rows, n, &mut rng);
        let stats = stats_of(&x);
        for (bits, group) in [(4u8, 16usize), (3, 16), (4, 48), (8, 16)] {
            let gptq = Gptq::params(bits).per_group(group).check().unwrap();
            let rtn = gptq.round_to_nearest(w.view()).unwrap().to_dense();
            let gq = gptq
                .quantize(w.view(), stats.hessian(), &Sequential)
                .unwrap()
                .matrix
                .to_dense();
            let (o_rtn, o_gptq) = (objective(&x, &w, &rtn), objective(&x, &w, &gq));
            for (refine, search) in [(false, false), (true, false), (true, true)] {
                let awq = Awq::params(gptq.clone())
                    .gptq(refine)
                    .gptq_search(search)
                    .check()
                    .unwrap();
                let p = Pipeline::new().data_aware(awq.clone());
                let out = p
                    .run_calibrated("fc", &w, Some(&stats), &Sequential)
                    .unwrap();
                let o = objective(&x, &w, &out.effective_weight());
                let base = if refine { o_gptq } else { o_rtn };
                // α = 0 is a candidate: never worse (up to f32 scoring).
                assert!(
                    o <= base * (1.0 + 1e-4),
                    "seed {seed} int{bits} g{group} refine {refine} search {search}: {o} > {base}"
                );
                if out.input_scale.is_some() && o < base {
                    scaled_wins += 1;
                }
                // The search's own losses are the exact objective.
                let s = awq
                    .search(w.view(), &stats.mean_abs(), stats.hessian(), &Sequential)
                    .unwrap();
                assert!(
                    (s.loss - o).abs() <= 1e-3 * o.max(1e-9),
                    "{} vs {o}",
                    s.loss
                );
                assert!((s.loss_unscaled - base).abs() <= 1e-3 * base);
            }
        }
    }
    assert!(
        scaled_wins >= 40,
        "outlier channels should be scaled: {scaled_wins}"
    );
}

#[test]
fn round_to_nearest_is_gptq_with_identity_hessian() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w = uniform(10, 40, &mut rng);
    let eye = Array2::<f64>::eye(40);
    for bits in [3u8, 4, 8] {
        for sym in [true, false] {
            for g in [None, Some(16), Some(20)] {
                let p = Gptq::params(bits).symmetric(sym);
                let q = match g {
                    Some(g) => p.per_group(g),
                    None => p.per_row(),
                }
                .check()
                .unwrap();
                assert_eq!(
                    q.round_to_nearest(w.view()).unwrap(),
                    q.quantize(w.view(), eye.view(), &Sequential)
                        .unwrap()
                        .matrix,
                    "int{bits} sym {sym} {g:?}"
                );
            }
        }
    }
}

#[test]
fn awq_is_the_same_on_any_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = correlated(200, 64, &mut rng);
    let w = uniform(130, 64, &mut rng);
    let stats = stats_of(&x);
    for refine in [false, true] {
        let awq = Awq::params(Gptq::params(4).per_group(32).check().unwrap())
            .gptq(refine)
            .check()
            .unwrap();
        let p = Pipeline::new().data_aware(awq);
        let one = p
            .run_calibrated("fc", &w, Some(&stats), &Sequential)
            .unwrap();
        assert!(one.input_scale.is_some());
        for t in [2, 3] {
            let pool = ThreadPool::new(t).unwrap();
            let par = p.run_calibrated("fc", &w, Some(&stats), &pool).unwrap();
            assert_eq!(par.matrix, one.matrix, "{t} threads");
            assert_eq!(par.input_scale, one.input_scale, "{t} threads");
        }
    }
}

#[test]
fn bad_statistics_and_scales_are_typed_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w = uniform(8, 16, &mut rng);
    let awq = Awq::params(Gptq::params(4).check().unwrap())
        .check()
        .unwrap();
    let mut h = Array2::<f64>::eye(16);
    h[[3, 5]] = f64::NAN;
    let means = vec![1.0f32; 16];
    assert!(matches!(
        awq.search(w.view(), &means, h.view(), &Sequential),
        Err(SquishError::Hessian(HessianError::NonFinite {
            row: 3,
            col: 5
        }))
    ));
    let mut bad = means.clone();
    bad[2] = f32::INFINITY;
    let eye = Array2::<f64>::eye(16);
    assert!(awq.search(w.view(), &bad, eye.view(), &Sequential).is_err());
    assert!(Awq::params(Gptq::params(4).check().unwrap())
        .grid(0)
        .check()
        .is_err());
    // Zero, negative or NaN scales never reach a division.
    for v in [0.0f32, -1.0, f32::NAN] {
        let mut s = vec![1.0f32; 16];
        s[7] = v;
        let e = fold_input_scales(w.t().to_owned().view_mut(), None, &s).unwrap_err();
        assert!(
            matches!(
                e,
                SquishError::Calibration(CalibrationError::InputScale { index: 7, .. })
            ),
            "{e}"
        );
        let m = CompressedMatrix::from_dense(w.t()).unwrap();
        assert!(matches!(
            scale_rows(&m, &s),
            Err(SquishError::Calibration(CalibrationError::InputScale {
                index: 7,
                ..
            }))
        ));
    }
    // Without statistics, and as a bare matrix-only pass: typed.
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    assert!(matches!(
        awq.apply_scaled("fc", &m, None, &Sequential),
        Err(SquishError::Calibration(
            CalibrationError::MissingStats { .. }
        ))
    ));
    let st = stats_of(&uniform(20, 16, &mut rng));
    assert!(matches!(
        awq.apply("fc", &m, Some(&st), &Sequential),
        Err(SquishError::Calibration(
            CalibrationError::NeedsInputScale { .. }
        ))
    ));
    // A model that already has an input scale for the layer (SmoothQuant).
    let mut model = Model::new();
    model
        .insert(
            "fc.weight",
            Tensor::float(Dtype::F32, vec![8, 16], w.iter().copied().collect()).unwrap(),
        )
        .unwrap();
    model
        .insert(
            "fc.input_scale",
            Tensor::float(Dtype::F32, vec![16], vec![1.0; 16]).unwrap(),
        )
        .unwrap();
    let recipe =
        Recipe::from_toml("[default]\npipeline = [{ method = \"awq\", bits = 4 }]").unwrap();
    let x = correlated(64, 16, &mut rng);
    let mut cal = ModelCalibration::default();
    cal.stats.insert("fc.weight".into(), stats_of(&x));
    let e = compress_model_calibrated(&model, &recipe, &cal, &Sequential, &|_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            SquishError::Calibration(CalibrationError::InputScaleExists { .. })
        ),
        "{e}"
    );
}

#[test]
fn scale_rows_matches_naive_rows_for_int4_int8_and_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let w = uniform(6, 40, &mut rng);
    let f: Vec<f32> = (0..6).map(|i| 0.25 + i as f32 * 0.5).collect();
    for m in [
        CompressedMatrix::from_dense(w.view()).unwrap(),
        Gptq::params(4)
            .per_group(16)
            .symmetric(false)
            .check()
            .unwrap()
            .round_to_nearest(w.view())
            .unwrap(),
        Gptq::params(8)
            .check()
            .unwrap()
            .round_to_nearest(w.view())
            .unwrap(),
    ] {
        let got = scale_rows(&m, &f).unwrap().to_dense();
        let d = m.to_dense();
        for ((r, c), &v) in got.indexed_iter() {
            let want = d[[r, c]] as f64 * f[r] as f64;
            assert!((v as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
    }
}

#[test]
fn sequential_awq_on_an_mlp_serves_the_effective_weights() {
    let mut mlp = Mlp::params(&[24, 32, 10]).seed(3).check::<f32>().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let inputs = vec![correlated(64, 24, &mut rng), correlated(64, 24, &mut rng)];
    let plan = |_: &str| {
        Some(
            Pipeline::new().data_aware(
                Awq::params(Gptq::params(4).per_group(8).check().ok()?)
                    .check()
                    .ok()?,
            ),
        )
    };
    let out = compress(&mut mlp, &inputs, &plan, Mode::Sequential, &Sequential).unwrap();
    assert!(out.input_scales.contains_key("layers.0"));
    for (name, m) in &out.layers {
        let f = out.input_scales.get(name).map(Vec::as_slice);
        assert_eq!(mlp.weight(name).unwrap(), effective(m, f), "{name}");
    }
}

// ---- A small random BERT: AWQ through a recipe, stored scales, the fold.

fn tiny_bert(c: &BertConfig, seed: u64) -> Model {
    let h = c.hidden_size;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    build(c, |name, n, scale, offset| {
        (0..n)
            .map(|k| {
                // A few large embedding channels give the layers outlier inputs.
                let boost = if name.contains("embeddings.word") && k % h == 3 {
                    6.0
                } else if name.ends_with("attention.self.value.weight") && k / h % 9 == 2 {
                    // Large value channels: outliers in attention's context.
                    8.0
                } else {
                    1.0
                };
                let v = rng.random_range(-1.0..1.0f32) * scale * boost + offset;
                // Strong LayerNorm gains on a few channels: outliers after the norm.
                match (name.ends_with("attention.output.LayerNorm.weight"), k) {
                    (true, 5) => 8.0,
                    (true, 17) => -6.0,
                    _ => v,
                }
            })
            .collect()
    })
}

/// Every tensor of a container in f64 (compressed ones decoded).
fn tensors_f64(c: &CompressedModel) -> std::collections::BTreeMap<String, Vec<f64>> {
    c.iter()
        .map(|(n, e)| {
            let v: Vec<f64> = match e {
                Entry::Plain(t) => t.as_f32().unwrap().iter().map(|&v| v as f64).collect(),
                Entry::Compressed(t) => t.matrix().to_dense().iter().map(|&v| v as f64).collect(),
            };
            (n.to_string(), v)
        })
        .collect()
}

fn sequences(count: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let len = rng.random_range(3..12);
            (0..len).map(|_| rng.random_range(0..50u32)).collect()
        })
        .collect()
}

#[test]
fn awq_recipe_on_bert_stores_scales_and_the_value_fold_is_exact() {
    let c = tiny_config();
    let model = tiny_bert(&c, 21);
    let dense =
        BertEncoder::from_weights(c.clone(), Weights::Dense(&model), Activations::Float).unwrap();
    let cal: Vec<TokenBatch> = (0..3)
        .map(|k| TokenBatch::new(&sequences(8, 100 + k)).unwrap())
        .collect();
    let recipe = Recipe::from_toml(
        r#"
[[rule]]
pattern = "encoder.layer.*.attention.*.weight"
pipeline = [{ method = "awq", bits = 4, granularity = "per-group", group_size = 16, gptq = true }]

[[rule]]
pattern = "encoder.layer.*.*.dense.weight"
pipeline = [{ method = "awq", bits = 3, granularity = "per-group", group_size = 16 }]

[default]
pipeline = []
"#,
    )
    .unwrap();
    // One-shot statistics of the dense encoder, by tensor name.
    let mc = ModelCalibration {
        stats: collect(&dense, &cal, None, &Sequential)
            .unwrap()
            .renamed(|l| Some(format!("{l}.weight"))),
        ..ModelCalibration::default()
    };
    let out = compress_model_calibrated(&model, &recipe, &mc, &Sequential, &|_| {}).unwrap();
    let names: Vec<String> = dense.stages().into_iter().flatten().collect();
    assert_eq!(out.layers.len(), names.len());
    let scaled = names
        .iter()
        .filter(|n| out.model.get(&format!("{n}.input_scale")).is_some())
        .count();
    assert!(scaled >= 6, "outlier inputs get scales: {scaled} of 12");
    let att = "encoder.layer.0.attention.output.dense";
    assert!(out.model.get(&format!("{att}.input_scale")).is_some());
    let r = &out
        .layers
        .iter()
        .find(|l| l.name.contains("query"))
        .unwrap();
    assert!(r.method.starts_with("awq + gptq int4"), "{}", r.method);

    let seqs = sequences(6, 7);
    let batch = TokenBatch::new(&seqs).unwrap();
    let served = |cm: &CompressedModel| {
        BertEncoder::from_weights(c.clone(), Weights::Container(cm), Activations::Float)
            .unwrap()
            .embed(&batch, &Sequential)
            .unwrap()
    };
    let stored = served(&out.model);
    let (folded, n) = fold_bert_input_scales(&out.model).unwrap();
    assert_eq!(n, 2, "one value layer per encoder layer");
    assert!(folded.get(&format!("{att}.input_scale")).is_none());
    let via_fold = served(&folded);
    // Both against BERT in f64 on the same effective weights.
    let (t_stored, t_folded) = (tensors_f64(&out.model), tensors_f64(&folded));
    for (s, ids) in seqs.iter().enumerate() {
        let want = bert_f64(&t_stored, &c, ids);
        let want_folded = bert_f64(&t_folded, &c, ids);
        for j in 0..c.hidden_size {
            assert!(
                (want[j] - want_folded[j]).abs() < 1e-6,
                "f64 fold {s},{j}: {} vs {}",
                want[j],
                want_folded[j]
            );
            assert!(
                (stored[[s, j]] as f64 - want[j]).abs() < 5e-5,
                "stored {s},{j}"
            );
            assert!(
                (via_fold[[s, j]] as f64 - want[j]).abs() < 5e-5,
                "folded {s},{j}"
            );
        }
    }
    // The compressed model is close to the dense one (sanity, not exact).
    let d = dense.embed(&batch, &Sequential).unwrap();
    let cos: f32 = (0..seqs.len())
        .map(|s| d.row(s).dot(&stored.row(s)))
        .sum::<f32>()
        / seqs.len() as f32;
    assert!(cos > 0.9, "mean cosine {cos}");
    // Saved and loaded, the container serves the same embeddings.
    let bytes = out.model.to_bytes().unwrap();
    let back = CompressedModel::from_bytes(&bytes).unwrap();
    assert_eq!(served(&back), stored);
    let _ = Array1::<f32>::zeros(1);
}
