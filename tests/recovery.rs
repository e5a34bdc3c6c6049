//! Teacher-guided recovery (issue 22): it starts from the compressed weights
//! and keeps every form's structure and encoding; KD at α = 0 is plain
//! training bit for bit; jittered transfer sets and feature-input students.

use squish::compression::lowrank::{LowRank, RankSelection};
use squish::data::{digits, Dataset, Split};
use squish::distillation::*;
use squish::prelude::*;
use squish::training::*;

fn trained_teacher(d: &Split) -> Mlp {
    let mut t = Mlp::params(&[64, 32, 16, 10]).seed(3).check().unwrap();
    Trainer::params()
        .epochs(15)
        .batch_size(32)
        .optimizer(Optimizer::adam(3e-3).check().unwrap())
        .check()
        .unwrap()
        .fit(&mut t, &d.train)
        .unwrap();
    t
}

/// Every compressed form the crate has, of the teacher's layers.
fn forms(t: &Mlp) -> Vec<(&'static str, CompressedMlp)> {
    let int8 = IntQuantizer::params(8).per_row().check().unwrap();
    let int4 = IntQuantizer::params(4).per_group(16).check().unwrap();
    let asym = IntQuantizer::params(8)
        .per_tensor()
        .symmetric(false)
        .check()
        .unwrap();
    let lr = LowRank::params(RankSelection::Energy(0.8)).check().unwrap();
    let prune = Magnitude::params(0.7).check().unwrap();
    let nm = NMPruner::params(2, 4).check().unwrap();
    let km = KMeans::params(8).check().unwrap();
    let c = |f: &dyn Fn(&CompressedMatrix) -> squish::Result<CompressedMatrix>| {
        CompressedMlp::from_mlp(t, &|_, m| f(m)).unwrap()
    };
    vec![
        ("dense f32", c(&|m| Ok(m.clone()))),
        ("csr f32", c(&|m| prune.prune(m))),
        ("n:m f32", c(&|m| nm.prune(m))),
        ("int8 per-row", c(&|m| int8.quantize(m))),
        ("int8 asymmetric per-tensor", c(&|m| asym.quantize(m))),
        ("int4 group-16", c(&|m| int4.quantize(m))),
        ("binary", c(&|m| Binary.quantize(m))),
        ("ternary", c(&|m| Ternary.quantize(m))),
        ("codebook", c(&|m| km.quantize(m))),
        ("csr int8", c(&|m| int8.quantize(&prune.prune(m)?))),
        ("csr codebook", c(&|m| km.quantize(&prune.prune(m)?))),
        ("low rank f32", c(&|m| lr.apply(m, &Sequential))),
        (
            "low rank int8",
            c(&|m| int8.quantize(&lr.apply(m, &Sequential)?)),
        ),
    ]
}

/// With a vanishing step, recovery hands back exactly the matrix it was
/// given: the parameters start at the compressed values (not at any dense
/// weights) and re-encoding them is the identity. The first epoch's loss is
/// the compressed model's own cross-entropy.
#[test]
fn recovery_starts_from_the_compressed_weights() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let small = d.train.head(96).unwrap();
    let rec = Recovery::params()
        .epochs(1)
        .batch_size(96)
        .optimizer(Optimizer::sgd(1e-12).check().unwrap())
        .check()
        .unwrap();
    for (name, m) in forms(&t) {
        let out = rec.recover(&m, None, &small).unwrap();
        assert_eq!(out.model, m, "{name}: not the compressed weights");
        let logits = m.forward(small.x()).unwrap();
        let (ce, _) = softmax_cross_entropy(logits.view(), small.y()).unwrap();
        let l0 = out.report.epoch_loss[0];
        assert!(
            (l0 - ce).abs() < 1e-5 * ce,
            "{name}: first loss {l0} vs {ce}"
        );
    }
}

/// Real fine-tuning changes the values but not the storage: the report
/// before and after shows the same structure, encoding and bytes per layer;
/// and the teacher-guided run improves on the compressed model.
#[test]
fn recovery_keeps_structure_and_encoding_and_recovers_accuracy() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let dense = t.accuracy(d.test.x(), d.test.y()).unwrap();
    let kd = SoftTarget::params(4.0).alpha(0.9).check().unwrap();
    for (name, m) in forms(&t) {
        let rec = Recovery::params()
            .epochs(3)
            .batch_size(32)
            .seed(1)
            .optimizer(Optimizer::adam(3e-4).check().unwrap())
            .soft_targets(kd)
            .check()
            .unwrap()
            .recover(&m, Some(&t), &d.train)
            .unwrap();
        assert!(rec.report.same_storage(), "{name}");
        assert_eq!(rec.report.steps, 3 * d.train.len().div_ceil(32));
        assert_ne!(rec.model, m, "{name}: nothing was trained");
        for (a, b) in rec.model.layers().iter().zip(m.layers()) {
            assert_eq!(a.structure().kind(), b.structure().kind(), "{name}");
            assert_eq!(a.encoding(), b.encoding(), "{name}");
            assert_eq!(a.storage(), b.storage(), "{name}");
            if let (squish::matrix::Structure::LowRank(x), squish::matrix::Structure::LowRank(y)) =
                (a.structure(), b.structure())
            {
                assert_eq!(x.rank(), y.rank());
            } else {
                assert_eq!(a.structure(), b.structure(), "{name}: positions moved");
            }
        }
        let before = m.accuracy_on(d.test.x(), d.test.y(), &Sequential).unwrap();
        let after = rec
            .model
            .accuracy_on(d.test.x(), d.test.y(), &Sequential)
            .unwrap();
        // Never much worse than the compressed start, and close to dense.
        assert!(
            after >= before.min(dense - 0.03) - 0.02,
            "{name}: {before} -> {after} (dense {dense})"
        );
    }
}

/// Quantization-aware recovery keeps the dense weights as latent copies,
/// but only if they encode to exactly the compressed model.
#[test]
fn latent_weights_must_encode_to_the_compressed_model() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let int4 = IntQuantizer::params(4).per_group(16).check().unwrap();
    let tiny = Recovery::params()
        .epochs(1)
        .optimizer(Optimizer::sgd(1e-12).check().unwrap())
        .check()
        .unwrap();
    let small = d.train.head(64).unwrap();
    for m in [
        CompressedMlp::from_mlp(&t, &|_, m| Binary.quantize(m)).unwrap(),
        CompressedMlp::from_mlp(&t, &|_, m| int4.quantize(m)).unwrap(),
    ] {
        let out = tiny.recover_from_latent(&m, &t, None, &small).unwrap();
        assert_eq!(out.model, m);
        let other: Mlp = Mlp::params(&[64, 32, 16, 10]).seed(99).check().unwrap();
        let e = tiny
            .recover_from_latent(&m, &other, None, &small)
            .unwrap_err();
        assert!(e.to_string().contains("latent"), "{e}");
    }
}

/// Binary recovery with learned per-row scales and a cosine rate starts from
/// the compressed model (a vanishing step hands it back unchanged, from the
/// ±α codes and from the dense latent), keeps one sign bit per weight and
/// one scale per row after real training (the scales move from the stored
/// ones), and improves on the compressed start.
#[test]
fn learned_binary_scales_keep_the_binary_storage() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let m = CompressedMlp::from_mlp(&t, &|_, m| Binary.quantize(m)).unwrap();
    let small = d.train.head(96).unwrap();
    let tiny = Recovery::params()
        .epochs(1)
        .batch_size(96)
        .optimizer(Optimizer::sgd(1e-12).check().unwrap())
        .learned_scales(1.5)
        .lr_decay(LrDecay::Cosine)
        .check()
        .unwrap();
    assert_eq!(tiny.recover(&m, None, &small).unwrap().model, m);
    assert_eq!(
        tiny.recover_from_latent(&m, &t, None, &small)
            .unwrap()
            .model,
        m
    );
    let kd = SoftTarget::params(4.0).alpha(0.9).check().unwrap();
    let rec = Recovery::params()
        .epochs(3)
        .batch_size(32)
        .seed(2)
        .optimizer(Optimizer::adam(1e-3).check().unwrap())
        .soft_targets(kd)
        .learned_scales(1.5)
        .lr_decay(LrDecay::Cosine)
        .check()
        .unwrap()
        .recover_from_latent(&m, &t, Some(&t), &d.train)
        .unwrap();
    assert!(rec.report.same_storage());
    let mut moved = false;
    for (a, b) in rec.model.layers().iter().zip(m.layers()) {
        assert_eq!(a.encoding(), "binary");
        assert_eq!(a.storage(), b.storage());
        let w = a.to_dense();
        for (i, row) in w.rows().into_iter().enumerate() {
            let alpha = row[0].abs();
            assert!(row.iter().all(|v| v.abs() == alpha), "row {i}: one scale");
            let recomputed = b.to_dense().row(i)[0].abs();
            moved |= (alpha - recomputed).abs() > 1e-4 * recomputed;
        }
    }
    assert!(moved, "the scales were not trained");
    let acc = rec
        .model
        .accuracy_on(d.test.x(), d.test.y(), &Sequential)
        .unwrap();
    let start = m.accuracy_on(d.test.x(), d.test.y(), &Sequential).unwrap();
    assert!(acc > start, "{start} -> {acc}");
    for bad in [0.0, -1.0, f32::NAN] {
        assert!(Recovery::params().learned_scales(bad).check().is_err());
    }
}

#[test]
fn recovery_is_deterministic_and_alpha_zero_is_no_teacher() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let m = CompressedMlp::from_mlp(&t, &|_, m| Binary.quantize(m)).unwrap();
    let base = Recovery::params().epochs(1).batch_size(64).seed(5);
    let plain = base.clone().check().unwrap();
    let a = plain.recover(&m, None, &d.train).unwrap();
    let b = plain.recover(&m, None, &d.train).unwrap();
    assert_eq!(a.model, b.model);
    let zero = base
        .soft_targets(SoftTarget::params(3.0).alpha(0.0).check().unwrap())
        .check()
        .unwrap();
    assert!(!zero.needs_teacher());
    let z = zero.recover(&m, Some(&t), &d.train).unwrap();
    assert_eq!(z.model, a.model);
    assert_eq!(z.report.epoch_loss, a.report.epoch_loss);
}

#[test]
fn recovery_hints_pull_hidden_features() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let lr = LowRank::params(RankSelection::Energy(0.6)).check().unwrap();
    let m = CompressedMlp::from_mlp(&t, &|_, m| lr.apply(m, &Sequential)).unwrap();
    let gap = |c: &CompressedMlp| -> f32 {
        let (a, b) = (
            c.hidden(d.train.x(), 1).unwrap(),
            t.hidden(d.train.x(), 1).unwrap(),
        );
        (&a - &b).mapv(|v| v * v).mean().unwrap()
    };
    let run = |w: f64| {
        Recovery::params()
            .epochs(2)
            .batch_size(32)
            .optimizer(Optimizer::adam(1e-3).check().unwrap())
            .hint(Hint::params(1, 1).weight(w).check().unwrap())
            .check()
            .unwrap()
            .recover(&m, Some(&t), &d.train)
            .unwrap()
            .model
    };
    let (weak, strong) = (run(1e-6), run(1.0));
    let (gs, gw) = (gap(&strong), gap(&weak));
    println!("hidden-feature gap: hinted {gs}, unhinted {gw}");
    assert!(gs < 0.8 * gw, "{gs} vs {gw}");
}

#[test]
fn recovery_errors_are_typed() {
    let d = digits().unwrap();
    let t: Mlp = Mlp::params(&[64, 16, 10]).check().unwrap();
    let m = CompressedMlp::from_mlp(&t, &|_, m| Ok(m.clone())).unwrap();
    assert!(Recovery::params().epochs(0).check().is_err());
    assert!(Recovery::params().batch_size(0).check().is_err());
    let kd = Recovery::params()
        .soft_targets(SoftTarget::params(2.0).check().unwrap())
        .check()
        .unwrap();
    assert!(kd.needs_teacher());
    let e = kd.recover(&m, None, &d.train).unwrap_err();
    assert!(e.to_string().contains("teacher"), "{e}");
    let wrong = Dataset::new(ndarray::Array2::zeros((4, 5)), vec![0; 4], 10).unwrap();
    assert!(Recovery::params()
        .check()
        .unwrap()
        .recover(&m, None, &wrong)
        .is_err());
    let hint = Recovery::params()
        .hint(Hint::params(3, 0).check().unwrap())
        .check()
        .unwrap();
    assert!(hint.recover(&m, Some(&t), &d.train).is_err());
}

/// Soft targets at α = 0 are the hard labels alone, computed by the same
/// code as plain training: the distilled student is bit-identical.
#[test]
fn kd_with_alpha_zero_is_plain_training_bit_for_bit() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let tr = Trainer::params()
        .epochs(3)
        .batch_size(32)
        .seed(9)
        .optimizer(Optimizer::adam(2e-3).check().unwrap())
        .check()
        .unwrap();
    let init: Mlp = Mlp::params(&[64, 12, 10]).seed(4).check().unwrap();
    let mut plain = init.clone();
    let rp = tr.fit(&mut plain, &d.train).unwrap();
    for temp in [1.0, 4.0] {
        let mut kd = init.clone();
        let k = SoftTarget::params(temp).alpha(0.0).check().unwrap();
        let rk = distill(&tr, &mut kd, &t, &k, &d.train).unwrap();
        assert_eq!(kd, plain, "T = {temp}");
        assert_eq!(rk.epoch_loss, rp.epoch_loss);
    }
}

/// Each jittered row is its original moved by one whole-pixel shift within
/// the bound (found by brute force), zeros filling the uncovered border.
#[test]
fn jittered_rows_are_shifted_originals() {
    let d = digits().unwrap().train.head(50).unwrap();
    let j = jittered(&d, 8, 8, 2, 2, 11).unwrap();
    assert_eq!(j.len(), 150);
    assert_eq!(&j.y()[100..], d.y());
    let shift = |row: ndarray::ArrayView1<f32>, dx: i64, dy: i64| -> Vec<f32> {
        (0..64i64)
            .map(|p| {
                let (r, c) = (p / 8 - dy, p % 8 - dx);
                if (0..8).contains(&r) && (0..8).contains(&c) {
                    row[(r * 8 + c) as usize]
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut moved = 0;
    let dx_all = d.x();
    for k in 50..150 {
        let orig = dx_all.row(k % 50);
        let got: Vec<f32> = j.x().row(k).to_vec();
        let found = (-2..=2)
            .flat_map(|dx| (-2..=2).map(move |dy| (dx, dy)))
            .find(|&(dx, dy)| shift(orig, dx, dy) == got);
        let (dx, dy) = found.unwrap_or_else(|| panic!("row {k} is no shift of its original"));
        moved += usize::from(dx != 0 || dy != 0);
    }
    assert!(moved > 50, "most rows should move ({moved})");
    assert!(jittered(&d, 8, 7, 1, 1, 0).is_err());
    assert!(jittered(&d, 8, 8, 8, 1, 0).is_err());
}

/// A linear student that reads the teacher's cached logits does far better
/// than the same student alone; fed a stale cache (logits of other images)
/// it does far worse.
#[test]
fn feature_input_student_helps_with_a_fresh_cache_only() {
    let d = digits().unwrap();
    let t = trained_teacher(&d);
    let tr = Trainer::params()
        .epochs(30)
        .batch_size(32)
        .optimizer(Optimizer::adam(3e-3).check().unwrap())
        .check()
        .unwrap();
    let mut alone: Mlp = Mlp::params(&[64, 10]).seed(1).check().unwrap();
    tr.fit(&mut alone, &d.train).unwrap();
    let a = alone.accuracy(d.test.x(), d.test.y()).unwrap();
    let (s, _) = FeatureStudent::fit(&tr, &[], 1, &t, FeatureSource::Logits, &d.train).unwrap();
    let cached = FeatureSource::Logits.compute(&t, d.test.x()).unwrap();
    let fresh = s.accuracy(d.test.x(), cached.view(), d.test.y()).unwrap();
    let teacher = t.accuracy(d.test.x(), d.test.y()).unwrap();
    println!("alone {a}, fresh cache {fresh}, teacher {teacher}");
    // On the digits a linear model is nearly as good as the teacher, so the
    // cache can only add the last point: it reaches the teacher.
    assert!(fresh > a, "fresh cache {fresh} vs alone {a}");
    assert!(
        fresh >= teacher - 0.01,
        "fresh cache {fresh} vs teacher {teacher}"
    );
    // Stale: every row reads the cached logits of another image.
    let n = cached.nrows();
    let stale = ndarray::Array2::from_shape_fn(cached.dim(), |(i, j)| cached[[(i + 7) % n, j]]);
    let old = s.accuracy(d.test.x(), stale.view(), d.test.y()).unwrap();
    assert!(old < a - 0.1, "stale cache {old} vs alone {a}");
    assert!(s
        .forward(d.test.x(), cached.slice(ndarray::s![.., ..3]))
        .is_err());
}
