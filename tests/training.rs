//! Training engine: gradients against central finite differences (f64),
//! optimizers, determinism, accuracy on real data, regularization-driven
//! pruning, compression-aware fine-tuning.

use ndarray::{array, Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::data::{digits, fashion_mnist, parse_idx};
use squish::matrix::{CodebookScope, CompressedMatrix, PackedBits, RowLayout, Structure, Values};
use squish::prelude::*;
use squish::pruning::Schedule;
use squish::quantization::{Binary, Ternary};
use squish::training::*;
use std::sync::Arc;

const H: f64 = 1e-5;

/// Element-wise |a − n| ≤ 1e-5·max(|a|, |n|) + 1e-9 (relative, with a floor
/// for gradients that are exactly 0).
fn assert_close(analytic: &[f64], numeric: &[f64], what: &str) {
    assert_eq!(analytic.len(), numeric.len());
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let tol = 1e-5 * a.abs().max(n.abs()) + 1e-9;
        assert!(
            (a - n).abs() <= tol,
            "{what}[{i}]: analytic {a} vs numeric {n}"
        );
    }
}

fn rand_array(rng: &mut StdRng, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_simple_fn((r, c), || rng.random_range(-1.5..1.5))
}

/// Central differences of `f` at every element of `x`.
fn numeric_grad(x: &Array2<f64>, f: &dyn Fn(&Array2<f64>) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    let mut xp = x.clone();
    for i in 0..x.len() {
        let v = x.as_slice().unwrap()[i];
        xp.as_slice_mut().unwrap()[i] = v + H;
        let up = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v - H;
        let down = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v;
        out.push((up - down) / (2.0 * H));
    }
    out
}

#[test]
fn activation_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    let z = rand_array(&mut rng, 4, 7);
    let up = rand_array(&mut rng, 4, 7); // upstream gradient: L = Σ up ⊙ f(z)
    for act in [Activation::Relu, Activation::Gelu, Activation::Identity] {
        let analytic = act.backward(z.view(), up.view());
        let numeric = numeric_grad(&z, &|z| (act.forward(z.view()) * &up).sum());
        assert_close(analytic.as_slice().unwrap(), &numeric, &format!("{act:?}"));
    }
    // GELU against its exact-erf cousin at a few points: the tanh form is within 1e-3.
    let g = Activation::Gelu.forward(array![[-3.0f64, -1.0, 0.0, 1.0, 3.0]].view());
    let exact = [-0.004_049_7, -0.158_655_3, 0.0, 0.841_344_7, 2.995_950_3];
    for (a, b) in g.iter().zip(exact) {
        assert!((a - b).abs() < 1e-3);
    }
}

#[test]
fn dense_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    let layer = Dense::new(
        rand_array(&mut rng, 5, 3),
        Array1::from_shape_fn(5, |i| i as f64 * 0.1),
    )
    .unwrap();
    let x = rand_array(&mut rng, 4, 3);
    let up = rand_array(&mut rng, 4, 5);
    let (g, dx) = layer.backward(x.view(), up.view(), true);
    let loss = |l: &Dense<f64>, x: &Array2<f64>| (l.forward(x.view()) * &up).sum();
    let nw = numeric_grad(&layer.weight().to_owned(), &|w| {
        loss(&Dense::new(w.clone(), layer.bias().to_owned()).unwrap(), &x)
    });
    assert_close(g.w.as_slice().unwrap(), &nw, "dW");
    let b2 = layer.bias().to_owned().insert_axis(ndarray::Axis(0));
    let nb = numeric_grad(&b2, &|b| {
        loss(
            &Dense::new(layer.weight().to_owned(), b.row(0).to_owned()).unwrap(),
            &x,
        )
    });
    assert_close(g.b.as_slice().unwrap(), &nb, "db");
    let nx = numeric_grad(&x, &|x| loss(&layer, x));
    assert_close(dx.unwrap().as_slice().unwrap(), &nx, "dx");
}

#[test]
fn losses_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let z = rand_array(&mut rng, 6, 5);
    let y = [0usize, 4, 2, 2, 1, 3];
    let (_, g) = softmax_cross_entropy(z.view(), &y).unwrap();
    let n = numeric_grad(&z, &|z| softmax_cross_entropy(z.view(), &y).unwrap().0);
    assert_close(g.as_slice().unwrap(), &n, "cross-entropy");
    let t = rand_array(&mut rng, 6, 5);
    let (_, g) = half_squared_error(z.view(), t.view()).unwrap();
    let n = numeric_grad(&z, &|z| half_squared_error(z.view(), t.view()).unwrap().0);
    assert_close(g.as_slice().unwrap(), &n, "squared error");
    // closed form: uniform logits over 5 classes
    let (l, _) = softmax_cross_entropy(Array2::<f64>::zeros((2, 5)).view(), &[0, 1]).unwrap();
    assert!((l - 5f64.ln()).abs() < 1e-12);
}

#[test]
fn loss_errors_are_typed() {
    let z = Array2::<f64>::zeros((2, 3));
    assert!(matches!(
        softmax_cross_entropy(z.view(), &[0]),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        softmax_cross_entropy(z.view(), &[0, 3]),
        Err(SquishError::Training(TrainingError::Label {
            label: 3,
            classes: 3
        }))
    ));
    let bad = array![[f64::NAN, 0.0]];
    assert!(matches!(
        softmax_cross_entropy(bad.view(), &[0]),
        Err(SquishError::NonFinite { .. })
    ));
    assert!(half_squared_error(z.view(), Array2::<f64>::zeros((3, 2)).view()).is_err());
}

#[test]
fn mlp_gradients_match_finite_differences() {
    for act in [Activation::Relu, Activation::Gelu] {
        let mlp: Mlp<f64> = Mlp::params(&[4, 6, 5, 3])
            .activation(act)
            .seed(9)
            .check()
            .unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let x = rand_array(&mut rng, 7, 4);
        let y = [0usize, 1, 2, 1, 0, 2, 2];
        let (_, grads) = mlp.gradients(x.view(), &y).unwrap();
        for l in 0..3 {
            let loss_w = |w: &Array2<f64>| {
                let mut m = mlp.clone();
                m.layers_mut()[l] =
                    Dense::new(w.clone(), mlp.layers()[l].bias().to_owned()).unwrap();
                m.gradients(x.view(), &y).unwrap().0
            };
            let n = numeric_grad(&mlp.layers()[l].weight().to_owned(), &loss_w);
            assert_close(
                grads.layers[l].w.as_slice().unwrap(),
                &n,
                &format!("{act:?} W{l}"),
            );
            let loss_b = |b: &Array2<f64>| {
                let mut m = mlp.clone();
                m.layers_mut()[l] =
                    Dense::new(mlp.layers()[l].weight().to_owned(), b.row(0).to_owned()).unwrap();
                m.gradients(x.view(), &y).unwrap().0
            };
            let b = mlp.layers()[l]
                .bias()
                .to_owned()
                .insert_axis(ndarray::Axis(0));
            assert_close(
                grads.layers[l].b.as_slice().unwrap(),
                &numeric_grad(&b, &loss_b),
                "b",
            );
        }
    }
}

#[test]
fn hidden_gradients_enter_backward() {
    // L = CE + Σ up ⊙ hidden(0): the backward with a hidden gradient must match.
    let mlp: Mlp<f64> = Mlp::params(&[3, 4, 2])
        .activation(Activation::Gelu)
        .seed(5)
        .check()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let x = rand_array(&mut rng, 5, 3);
    let up = rand_array(&mut rng, 5, 4);
    let y = [0usize, 1, 1, 0, 1];
    let trace = mlp.trace(x.view()).unwrap();
    let (_, g) = softmax_cross_entropy(trace.logits.view(), &y).unwrap();
    let grads = mlp.backward(&trace, g.view(), &[Some(up.clone())]).unwrap();
    let loss = |w: &Array2<f64>| {
        let mut m = mlp.clone();
        m.layers_mut()[0] = Dense::new(w.clone(), mlp.layers()[0].bias().to_owned()).unwrap();
        m.gradients(x.view(), &y).unwrap().0 + (m.hidden(x.view(), 0).unwrap() * &up).sum()
    };
    let n = numeric_grad(&mlp.layers()[0].weight().to_owned(), &loss);
    assert_close(
        grads.layers[0].w.as_slice().unwrap(),
        &n,
        "W0 with hint gradient",
    );
    assert!(mlp
        .backward(&trace, g.view(), &[Some(Array2::zeros((5, 3)))])
        .is_err());
}

#[test]
fn sharded_gradients_combine_to_the_batch_gradient() {
    let mlp: Mlp<f64> = Mlp::params(&[4, 8, 3]).seed(2).check().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let x = rand_array(&mut rng, 10, 4);
    let y: Vec<usize> = (0..10).map(|i| i % 3).collect();
    let (_, full) = mlp.gradients(x.view(), &y).unwrap();
    let (_, mut a) = mlp
        .gradients(x.slice(ndarray::s![..6, ..]), &y[..6])
        .unwrap();
    let (_, mut b) = mlp
        .gradients(x.slice(ndarray::s![6.., ..]), &y[6..])
        .unwrap();
    a.scale(0.6);
    b.scale(0.4);
    a.add(&b).unwrap();
    for (p, q) in a.layers.iter().zip(&full.layers) {
        assert!((&p.w - &q.w).iter().all(|d| d.abs() < 1e-12));
    }
    let other: Mlp<f64> = Mlp::params(&[4, 5, 3]).check().unwrap();
    let (_, c) = other.gradients(x.view(), &y).unwrap();
    assert!(a.add(&c).is_err());
}

#[test]
fn l2_penalty_has_its_closed_form_gradient() {
    let mlp: Mlp = Mlp::params(&[3, 4, 2]).seed(1).check().unwrap();
    let r = Regularizer::params(Penalty::L2(0.3))
        .layers(&[0])
        .check()
        .unwrap();
    let mut g = Gradients {
        layers: mlp.layers().iter().map(DenseGrad::zeros_like).collect(),
    };
    r.add_gradient(&mlp, &mut g);
    let w0 = mlp.layers()[0].weight();
    for (a, w) in g.layers[0].w.iter().zip(w0.iter()) {
        assert!((a - 0.3 * w).abs() <= 1e-7);
    }
    assert!(g.layers[1].w.iter().all(|&v| v == 0.0)); // layer 1 not penalised
    let sq: f64 = w0.iter().map(|&v| (v as f64).powi(2)).sum();
    assert!((r.value(&mlp) - 0.15 * sq).abs() < 1e-9);
    // The analytic penalty gradient matches central differences of the penalty (f64 math).
    let w64 = w0.mapv(f64::from);
    let num = numeric_grad(&w64, &|w| 0.15 * w.iter().map(|v| v * v).sum::<f64>());
    assert_close(
        &w64.mapv(|v| 0.3 * v).into_raw_vec_and_offset().0,
        &num,
        "L2",
    );
}

#[test]
fn optimizers_follow_their_update_rules() {
    // One parameter, gradient 2 each step.
    let mut s = Optimizer::sgd(0.1)
        .momentum(0.9)
        .check()
        .unwrap()
        .state::<f64>();
    let mut p = [1.0f64];
    s.step_slices(&mut [&mut p[..]], &[&[2.0]]).unwrap();
    assert!((p[0] - 0.8).abs() < 1e-15); // v = 2
    s.step_slices(&mut [&mut p[..]], &[&[2.0]]).unwrap();
    assert!((p[0] - (0.8 - 0.1 * 3.8)).abs() < 1e-15); // v = 0.9·2 + 2
    let mut a = Optimizer::adam(0.01).check().unwrap().state::<f64>();
    let mut q = [1.0f64];
    a.step_slices(&mut [&mut q[..]], &[&[2.0]]).unwrap();
    // First Adam step moves by lr·g/|g| (up to ε).
    assert!((q[0] - 0.99).abs() < 1e-9);
    assert!(a.step_slices(&mut [&mut q[..]], &[&[1.0, 2.0]]).is_err());
    assert!(Optimizer::sgd(0.1).momentum(1.0).check().is_err());
    assert!(Optimizer::adam(0.1).betas(0.9, 1.5).check().is_err());
    assert!(Optimizer::adam(f64::NAN).check().is_err());
}

#[test]
fn builders_reject_bad_hyperparameters() {
    assert!(Mlp::params(&[4]).check::<f32>().is_err());
    assert!(Mlp::params(&[4, 0, 2]).check::<f32>().is_err());
    assert!(Trainer::params().epochs(0).check().is_err());
    assert!(Trainer::params().batch_size(0).check().is_err());
    assert!(Regularizer::params(Penalty::L1(f64::INFINITY))
        .check()
        .is_err());
    // The deprecated closure form still rejects what it did.
    #[allow(deprecated)]
    {
        assert!(cubic_sparsity(0.0, 1.0, 0, 10).is_err());
        assert!(cubic_sparsity(0.0, 0.5, 10, 10).is_err());
    }
    assert!(Schedule::cubic(1.0, 10).check().is_err());
    let cubic = || Schedule::cubic(0.5, 10).check().unwrap();
    assert!(GradualPruning::new(cubic(), 0, &[0]).is_err());
    assert!(GradualPruning::new(cubic(), 1, &[]).is_err());
    let mlp: Mlp = Mlp::params(&[64, 8, 10]).check().unwrap();
    assert!(mlp.forward(Array2::zeros((2, 63)).view()).is_err());
    assert!(mlp.hidden(Array2::zeros((2, 64)).view(), 1).is_err());
    assert!(Masks::near_zero(&mlp, 0.0, &[5]).is_err());
    let d = digits().unwrap();
    let wrong: Mlp = Mlp::params(&[64, 8, 9]).check().unwrap();
    let t = Trainer::params().epochs(1).check().unwrap();
    assert!(t.fit(&mut wrong.clone(), &d.train).is_err());
    let r = Regularizer::params(Penalty::L1(0.1))
        .layers(&[7])
        .check()
        .unwrap();
    let t = Trainer::params().epochs(1).regularizer(r).check().unwrap();
    assert!(t.fit(&mut mlp.clone(), &d.train).is_err());
}

#[test]
fn digits_split_is_the_writer_split() {
    let d = digits().unwrap();
    assert_eq!(
        (d.train.len(), d.test.len(), d.train.features()),
        (1437, 360, 64)
    );
    // First row of the CSV: a zero, pixels 0,0,5,13,9,1,0,0 / 16.
    assert_eq!(d.train.y()[0], 0);
    assert_eq!(d.train.x()[[0, 2]], 5.0 / 16.0);
    assert!(d.train.x().iter().all(|&v| (0.0..=1.0).contains(&v)));
    let mut counts = [0usize; 10];
    for &l in d.train.y().iter().chain(d.test.y()) {
        counts[l] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), 1797);
    assert!(
        counts.iter().all(|&c| (170..=190).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn idx_parser_reads_a_small_buffer_and_fashion_mnist_when_present() {
    let mut b = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    b.extend([7, 8, 9, 10]);
    let a = parse_idx(&b).unwrap();
    assert_eq!(a.dims, vec![2, 1, 2]);
    assert_eq!(a.data, vec![7, 8, 9, 10]);
    if let Some(f) = fashion_mnist().unwrap() {
        assert_eq!(
            (f.train.len(), f.test.len(), f.train.features()),
            (60_000, 10_000, 784)
        );
        let mut counts = [0usize; 10];
        f.test.y().iter().for_each(|&l| counts[l] += 1);
        assert!(counts.iter().all(|&c| c == 1000)); // balanced test set
        assert!(f.train.x().iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
}

fn teacher_trainer(seed: u64) -> Trainer {
    Trainer::params()
        .epochs(40)
        .batch_size(32)
        .seed(seed)
        .optimizer(Optimizer::adam(1e-3).check().unwrap())
        .check()
        .unwrap()
}

#[test]
fn digits_teacher_reaches_92_percent_and_is_deterministic() {
    let d = digits().unwrap();
    let mut a: Mlp = Mlp::params(&[64, 256, 256, 10]).seed(0).check().unwrap();
    let report = teacher_trainer(0).fit(&mut a, &d.train).unwrap();
    assert!(report.epoch_loss.last().unwrap() < &report.epoch_loss[0]);
    let acc = a.accuracy(d.test.x(), d.test.y()).unwrap();
    assert!(acc >= 0.92, "teacher accuracy {acc}");
    // Same seed, bit-identical weights.
    let mut b: Mlp = Mlp::params(&[64, 256, 256, 10]).seed(0).check().unwrap();
    Trainer::params()
        .epochs(2)
        .seed(3)
        .check()
        .unwrap()
        .fit(&mut b, &d.train)
        .unwrap();
    let mut c: Mlp = Mlp::params(&[64, 256, 256, 10]).seed(0).check().unwrap();
    Trainer::params()
        .epochs(2)
        .seed(3)
        .check()
        .unwrap()
        .fit(&mut c, &d.train)
        .unwrap();
    assert_eq!(b, c);
    // Inference through compressed layers: int8 keeps the accuracy within a point,
    // and the compressed forward agrees with the decoded dense network.
    let q = IntQuantizer::params(8).check().unwrap();
    let cm = CompressedMlp::from_mlp(&a, &|_, m| q.quantize(m)).unwrap();
    let acc8 = cm
        .accuracy_on(d.test.x(), d.test.y(), &ThreadPool::new(2).unwrap())
        .unwrap();
    assert!((acc - acc8).abs() <= 0.01, "{acc} vs int8 {acc8}");
    let dense = cm.to_mlp().unwrap().forward(d.test.x()).unwrap();
    let comp = cm.forward(d.test.x()).unwrap();
    assert!((&dense - &comp).iter().all(|v| v.abs() < 1e-3));
    assert!(cm.bytes() * 3 < (a.parameter_count() * 4));
}

#[test]
fn l1_drives_70_percent_of_the_first_layer_to_exact_zero() {
    let d = digits().unwrap();
    let opt = Optimizer::sgd(0.05).momentum(0.9).check().unwrap();
    let base_t = Trainer::params()
        .epochs(30)
        .batch_size(32)
        .seed(1)
        .optimizer(opt)
        .check()
        .unwrap();
    let init: Mlp = Mlp::params(&[64, 64, 10]).seed(1).check().unwrap();
    let mut plain = init.clone();
    base_t.fit(&mut plain, &d.train).unwrap();
    let plain_acc = plain.accuracy(d.test.x(), d.test.y()).unwrap();

    let l1 = Regularizer::params(Penalty::L1(2e-2))
        .layers(&[0])
        .check()
        .unwrap();
    let t = Trainer::params()
        .epochs(30)
        .batch_size(32)
        .seed(1)
        .optimizer(opt)
        .regularizer(l1)
        .check()
        .unwrap();
    let mut sparse = init.clone();
    t.fit(&mut sparse, &d.train).unwrap();
    let w0 = sparse.layers()[0].weight();
    let zeros = w0.iter().filter(|&&v| v == 0.0).count() as f64 / w0.len() as f64;
    // Prune what L1 left near zero, then fine-tune with the mask held.
    let masks = Masks::near_zero(&sparse, 1e-3, &[0]).unwrap();
    let ft = Trainer::params()
        .epochs(5)
        .batch_size(32)
        .seed(2)
        .optimizer(Optimizer::sgd(0.01).momentum(0.9).check().unwrap())
        .check()
        .unwrap();
    let report = ft.fit_masked(&mut sparse, &d.train, masks.clone()).unwrap();
    let w0 = sparse.layers()[0].weight();
    for (w, k) in w0.iter().zip(masks.layer(0).unwrap()) {
        if !k {
            assert_eq!(*w, 0.0, "a pruned weight came back");
        }
    }
    assert_eq!(report.masks, masks);
    let acc = sparse.accuracy(d.test.x(), d.test.y()).unwrap();
    println!(
        "L1: {:.1}% exact zeros, accuracy {acc:.4} vs {plain_acc:.4}",
        100.0 * zeros
    );
    assert!(zeros >= 0.70, "only {:.1}% zeros", 100.0 * zeros);
    assert!(acc >= plain_acc - 0.01, "accuracy {acc} vs {plain_acc}");
    // The pruned layer as CSR gives the same logits.
    let csr = CompressedMlp::from_mlp(&sparse, &|l, m| {
        if l == 0 {
            let w = m.to_dense();
            CompressedMatrix::csr_from_mask(w.view(), near_zero_mask(w.view(), 0.0).view())
        } else {
            Ok(m.clone())
        }
    })
    .unwrap();
    assert_eq!(csr.layers()[0].structure().kind(), "csr");
    let diff = &csr.forward(d.test.x()).unwrap() - &sparse.forward(d.test.x()).unwrap();
    assert!(diff.iter().all(|v| v.abs() < 1e-4));
}

#[test]
fn group_lasso_removes_whole_rows() {
    let d = digits().unwrap();
    let opt = Optimizer::sgd(0.05).momentum(0.9).check().unwrap();
    let gl = Regularizer::params(Penalty::GroupLasso(1e-1))
        .layers(&[0])
        .check()
        .unwrap();
    let t = Trainer::params()
        .epochs(20)
        .batch_size(32)
        .seed(4)
        .optimizer(opt)
        .regularizer(gl)
        .check()
        .unwrap();
    let mut mlp: Mlp = Mlp::params(&[64, 64, 10]).seed(4).check().unwrap();
    t.fit(&mut mlp, &d.train).unwrap();
    let w0 = mlp.layers()[0].weight();
    let dead = w0
        .outer_iter()
        .filter(|r| r.iter().all(|&v| v == 0.0))
        .count();
    // Zeros outside the removed rows (rare: the shrink acts on whole rows).
    let stray: usize = w0
        .outer_iter()
        .filter(|r| r.iter().any(|&v| v != 0.0))
        .map(|r| r.iter().filter(|&&v| v == 0.0).count())
        .sum();
    let acc = mlp.accuracy(d.test.x(), d.test.y()).unwrap();
    println!("group lasso: {dead}/64 rows removed, {stray} stray zeros, accuracy {acc:.4}");
    assert!(dead >= 16, "only {dead} rows removed");
    assert!(
        stray * 100 <= w0.len(),
        "{stray} zeros outside removed rows"
    );
    assert!(acc > 0.88);
    let kept = surviving_rows(w0, 0.0);
    assert_eq!(kept.len(), 64 - dead);
    let m = CompressedMatrix::kept_rows(w0, kept).unwrap();
    assert_eq!(m.to_dense(), w0.to_owned());
}

#[test]
fn proximal_operators_have_their_closed_forms() {
    let mut w = array![[3.0f32, 4.0], [0.3, 0.4]];
    group_soft_threshold_rows(w.view_mut(), 1.0);
    // row 0: norm 5 → scaled by 0.8; row 1: norm 0.5 ≤ 1 → zero.
    assert!((w[[0, 0]] - 2.4).abs() < 1e-6 && (w[[0, 1]] - 3.2).abs() < 1e-6);
    assert_eq!(w.row(1).to_vec(), vec![0.0, 0.0]);
    let mut v = array![[-0.3f32, 0.2, 0.05]];
    soft_threshold(v.view_mut(), 0.1);
    assert!((v[[0, 0]] + 0.2).abs() < 1e-7 && (v[[0, 1]] - 0.1).abs() < 1e-7 && v[[0, 2]] == 0.0);
}

#[test]
fn gradual_pruning_follows_the_cubic_schedule() {
    let d = digits().unwrap();
    let steps_per_epoch = 1437usize.div_ceil(64);
    let end = 6 * steps_per_epoch;
    let sched = Schedule::cubic(0.8, end as u64).check().unwrap();
    assert!((sched.sparsity_at(end as u64 / 2) - 0.7).abs() < 0.01);
    let gp = GradualPruning::new(sched, 10, &[0]).unwrap();
    let t = Trainer::params()
        .epochs(15)
        .seed(5)
        .optimizer(Optimizer::adam(2e-3).check().unwrap())
        .gradual_pruning(gp)
        .check()
        .unwrap();
    let mut mlp: Mlp = Mlp::params(&[64, 64, 10]).seed(5).check().unwrap();
    let report = t.fit(&mut mlp, &d.train).unwrap();
    for l in 0..1 {
        let w = mlp.layers()[l].weight();
        let zeros = w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64;
        assert!((zeros - 0.8).abs() < 0.01, "layer {l}: {zeros}");
        assert!((report.masks.sparsity(l) - 0.8).abs() < 0.01);
    }
    let acc = mlp.accuracy(d.test.x(), d.test.y()).unwrap();
    assert!(acc > 0.83, "80% sparse accuracy {acc}");
    assert_eq!(report.masks.sparsity(1), 0.0);
}

#[test]
fn straight_through_training_recovers_ternary_accuracy() {
    let d = digits().unwrap();
    let mut base: Mlp = Mlp::params(&[64, 64, 10]).seed(6).check().unwrap();
    Trainer::params()
        .epochs(20)
        .seed(6)
        .optimizer(Optimizer::adam(2e-3).check().unwrap())
        .check()
        .unwrap()
        .fit(&mut base, &d.train)
        .unwrap();
    for (name, q) in [
        ("ternary", Arc::new(Ternary) as Arc<dyn Quantizer>),
        ("int4", Arc::new(IntQuantizer::params(4).check().unwrap())),
        ("binary", Arc::new(Binary)),
    ] {
        let ptq = CompressedMlp::from_mlp(&base, &|_, m| q.quantize(m)).unwrap();
        let before = ptq
            .accuracy_on(d.test.x(), d.test.y(), &Sequential)
            .unwrap();
        let ste = StraightThrough::new(q.clone());
        let t = Trainer::params()
            .epochs(10)
            .seed(7)
            .optimizer(Optimizer::adam(1e-3).check().unwrap())
            .straight_through(ste)
            .check()
            .unwrap();
        let mut tuned = base.clone();
        t.fit(&mut tuned, &d.train).unwrap();
        let qat = CompressedMlp::from_mlp(&tuned, &|_, m| q.quantize(m)).unwrap();
        let after = qat
            .accuracy_on(d.test.x(), d.test.y(), &Sequential)
            .unwrap();
        println!("{name}: post-training {before:.4} → straight-through fine-tuned {after:.4}");
        assert!(after >= before - 0.01, "{name}: {before} → {after}");
        if name != "int4" {
            assert!(after > before + 0.02, "{name}: {before} → {after}"); // 1-2 bit weights gain most
        }
        assert!(after > 0.8, "{name}: {after}");
    }
}

/// A per-tensor codebook of `k` evenly spaced levels over W's range.
fn uniform_codebook(w: ndarray::ArrayView2<f32>, k: usize) -> CompressedMatrix {
    let (lo, hi) = w
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let c: Vec<f32> = (0..k)
        .map(|i| lo + (hi - lo) * i as f32 / (k - 1) as f32)
        .collect();
    let idx: Vec<u16> = w
        .iter()
        .map(|&v| (((v - lo) / (hi - lo)) * (k - 1) as f32).round() as u16)
        .collect();
    let bits = squish::matrix::index_bits(k);
    let v = Values::codebook(
        RowLayout::Uniform {
            rows: w.nrows(),
            len: w.ncols(),
        },
        k,
        CodebookScope::PerTensor,
        c,
        PackedBits::pack(bits, &idx).unwrap(),
    )
    .unwrap();
    CompressedMatrix::from_parts(w.nrows(), w.ncols(), Structure::Dense, v).unwrap()
}

#[test]
fn centroid_gradients_match_finite_differences() {
    let mlp: Mlp<f64> = Mlp::params(&[4, 5, 3]).seed(8).check().unwrap();
    let w32 = mlp.layers()[0].weight().mapv(|v| v as f32);
    let cb = uniform_codebook(w32.view(), 4);
    let centroids: Vec<f64> = match cb.values() {
        Some(Values::Codebook(c)) => c.centroids().iter().map(|&v| v as f64).collect(),
        _ => unreachable!(),
    };
    let mut rng = StdRng::seed_from_u64(9);
    let x = rand_array(&mut rng, 6, 4);
    let y = [0usize, 1, 2, 0, 1, 2];
    let with = |c: &[f64]| {
        let mut m = mlp.clone();
        m.layers_mut()[0] = Dense::new(
            decode_with_centroids(&cb, c).unwrap(),
            mlp.layers()[0].bias().to_owned(),
        )
        .unwrap();
        m
    };
    let (_, g) = with(&centroids).gradients(x.view(), &y).unwrap();
    let analytic = centroid_gradients(&cb, g.layers[0].w.view()).unwrap();
    let c2 = Array2::from_shape_vec((1, 4), centroids.clone()).unwrap();
    let numeric = numeric_grad(&c2, &|c| {
        with(c.as_slice().unwrap())
            .gradients(x.view(), &y)
            .unwrap()
            .0
    });
    assert_close(&analytic, &numeric, "centroid gradient");
    // A CSR codebook matrix and a non-codebook matrix.
    let dense = CompressedMatrix::from_dense(w32.view()).unwrap();
    assert!(matches!(
        centroid_gradients(&dense, g.layers[0].w.view()),
        Err(SquishError::Incompatible { .. })
    ));
    assert!(centroid_gradients(&cb, Array2::<f64>::zeros((2, 2)).view()).is_err());
}

#[test]
fn codebook_finetuning_recovers_accuracy_and_keeps_storage() {
    let d = digits().unwrap();
    let mut base: Mlp = Mlp::params(&[64, 64, 10]).seed(10).check().unwrap();
    Trainer::params()
        .epochs(20)
        .seed(10)
        .optimizer(Optimizer::adam(2e-3).check().unwrap())
        .check()
        .unwrap()
        .fit(&mut base, &d.train)
        .unwrap();
    let full = base.accuracy(d.test.x(), d.test.y()).unwrap();
    let mut model =
        CompressedMlp::from_mlp(&base, &|_, m| Ok(uniform_codebook(m.to_dense().view(), 4)))
            .unwrap();
    let before = model
        .accuracy_on(d.test.x(), d.test.y(), &Sequential)
        .unwrap();
    let bytes = model.bytes();
    let idx_before: Vec<_> = model
        .layers()
        .iter()
        .map(|m| match m.values() {
            Some(Values::Codebook(c)) => c.indices().clone(),
            _ => unreachable!(),
        })
        .collect();
    let t = Trainer::params()
        .epochs(5)
        .seed(11)
        .optimizer(Optimizer::adam(1e-3).check().unwrap())
        .check()
        .unwrap();
    finetune_centroids(&t, &mut model, &d.train).unwrap();
    let after = model
        .accuracy_on(d.test.x(), d.test.y(), &Sequential)
        .unwrap();
    println!("2-bit codebook: {full:.4} dense, {before:.4} quantized, {after:.4} after centroid fine-tuning");
    assert!(after > before, "{before} → {after}");
    assert_eq!(model.bytes(), bytes);
    for (m, old) in model.layers().iter().zip(&idx_before) {
        match m.values() {
            Some(Values::Codebook(c)) => assert_eq!(c.indices(), old),
            _ => unreachable!(),
        }
    }
    let plain = CompressedMlp::from_mlp(&base, &|_, m| Ok(m.clone())).unwrap();
    assert!(finetune_centroids(&t, &mut plain.clone(), &d.train).is_err());
}
