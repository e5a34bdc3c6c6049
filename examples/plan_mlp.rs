//! Byte-budget planning on LeNet-300-100 / Fashion-MNIST: per-layer
//! sensitivity, the planned mix at three budgets, and each against the
//! uniform recipe of the same bytes.
//!
//! ```text
//! cargo run --release --example plan_mlp                 # 8 dense epochs
//! cargo run --release --example plan_mlp -- --epochs 20
//! ```
//!
//! Sensitivity is the mean KL divergence of the compressed model's class
//! distribution from the dense model's, on 5 000 training images (the
//! calibration set), with one layer compressed at a time; accuracy is
//! measured on the 10 000 test images. Falls back to the bundled UCI digits
//! (64-100-10) when the Fashion-MNIST files are absent.

use ndarray::{Array2, ArrayView2};
use squish::data::{digits, fashion_mnist};
use squish::parallel::{ParallelExecutor, Sequential, ThreadPool};
use squish::plan::{
    default_candidates, measure, Budget, Evaluator, Layer, MixEvaluator, Planner, RefineParams,
};
use squish::prelude::*;
use squish::recipe::MethodSpec;
use squish::training::{log_softmax, CompressedMlp, Mlp, Optimizer, Trainer};

/// KL(dense ‖ compressed) over the calibration images, one layer swapped.
struct Kl<'a> {
    dense: &'a CompressedMlp,
    x: ArrayView2<'a, f32>,
    logp: Array2<f32>,
}

fn mean_kl(logp: &Array2<f32>, logits: ArrayView2<f32>) -> f64 {
    let logq = log_softmax(logits, 1.0);
    let mut kl = 0.0f64;
    for (p, q) in logp.iter().zip(logq.iter()) {
        kl += (p.exp() as f64) * (*p as f64 - *q as f64);
    }
    kl / logp.nrows() as f64
}

impl Evaluator for Kl<'_> {
    fn distortion(&self, layer: usize, m: &CompressedMatrix) -> squish::Result<f64> {
        let mut net = self.dense.clone();
        net.set_layer(layer, m.clone(), self.dense.biases()[layer].clone())?;
        Ok(mean_kl(
            &self.logp,
            net.forward_on(self.x, &Sequential)?.view(),
        ))
    }
}

impl MixEvaluator for Kl<'_> {
    fn mix_distortion(&self, mix: &[Option<&CompressedMatrix>]) -> squish::Result<f64> {
        let mut net = self.dense.clone();
        for (layer, m) in mix.iter().enumerate() {
            if let Some(m) = m {
                net.set_layer(layer, (*m).clone(), self.dense.biases()[layer].clone())?;
            }
        }
        Ok(mean_kl(
            &self.logp,
            net.forward_on(self.x, &Sequential)?.view(),
        ))
    }
}

/// The model with every layer compressed by `methods_of(layer)`.
fn apply(
    dense: &CompressedMlp,
    methods_of: &dyn Fn(usize) -> Vec<MethodSpec>,
) -> squish::Result<CompressedMlp> {
    let mut net = dense.clone();
    for l in 0..dense.layers().len() {
        let w = dense.layers()[l].to_dense();
        let out = MethodSpec::pipeline(&methods_of(l))?.run(w.view())?;
        net.set_layer(l, out.matrix, dense.biases()[l].clone())?;
    }
    Ok(net)
}

fn weight_bytes(net: &CompressedMlp) -> usize {
    net.layers().iter().map(|m| m.storage().total()).sum()
}

fn main() -> squish::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let epochs = args
        .iter()
        .position(|a| a == "--epochs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (data, sizes, name) = match fashion_mnist()? {
        Some(d) => (d, vec![784, 300, 100, 10], "Fashion-MNIST, LeNet-300-100"),
        None => (digits()?, vec![64, 100, 10], "UCI digits, 64-100-10"),
    };
    let pool = ThreadPool::new(2)?;
    let exec: &dyn ParallelExecutor = &pool;
    println!("{name}: training the dense model ({epochs} epochs)");
    let mut mlp: Mlp = Mlp::params(&sizes).seed(0).check()?;
    Trainer::params()
        .epochs(epochs)
        .batch_size(128)
        .seed(0)
        .optimizer(Optimizer::adam(1e-3).check()?)
        .check()?
        .fit(&mut mlp, &data.train)?;
    let dense = CompressedMlp::from_mlp(&mlp, &|_, m| Ok(m.clone()))?;
    let (tx, ty) = (data.test.x(), data.test.y());
    let dense_acc = dense.accuracy_on(tx, ty, exec)?;

    let calib_n = data.train.x().nrows().min(5000);
    let cx = data.train.x().slice_move(ndarray::s![..calib_n, ..]);
    let logp = log_softmax(dense.forward_on(cx, exec)?.view(), 1.0);
    let eval = Kl {
        dense: &dense,
        x: cx,
        logp,
    };
    let weights: Vec<Array2<f32>> = mlp.layers().iter().map(|d| d.weight().to_owned()).collect();
    let inputs: Vec<Array2<f32>> = (0..weights.len())
        .map(|l| {
            if l == 0 {
                Ok(cx.to_owned())
            } else {
                mlp.hidden(cx, l - 1)
            }
        })
        .collect::<squish::Result<_>>()?;
    let layers: Vec<Layer> = weights
        .iter()
        .zip(&inputs)
        .enumerate()
        .map(|(i, (w, x))| Layer {
            name: format!("layers.{i}.weight"),
            weight: w.view(),
            inputs: Some(x.view()),
        })
        .collect();
    let candidates = default_candidates();
    let table = measure(&layers, &candidates, &eval, exec, &|_, _| {})?;
    println!(
        "\nSensitivity (KL on {calib_n} calibration images):\n{}",
        table.to_text()
    );
    let rho = table.proxy_rank_agreement();
    println!(
        "proxy vs KL rank agreement (Spearman ρ per layer): {}",
        rho.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );

    println!(
        "\n{:<22} {:>12} {:>8} {:>10} {:>10} {:>12} {:>10} {:>12}",
        "uniform recipe", "bytes", "bpw", "uniform %", "sum-plan %", "bytes", "planned %", "bytes"
    );
    println!("dense f32: {:.2} %", 100.0 * dense_acc);
    let n_weights: usize = weights.iter().map(|w| w.len()).sum();
    for uniform in [
        "ternary",
        "kmeans 8",
        "kmeans 16",
        "int4 g32",
        "2:4 + int8",
        "int4 g128",
        "rank e.80 + int8",
    ] {
        let Some(c) = candidates.iter().find(|c| c.name() == uniform) else {
            continue;
        };
        let u = apply(&dense, &|_| c.methods().to_vec())?;
        let bytes = weight_bytes(&u);
        let planner = Planner::params(Budget::Bytes(bytes as u64)).check()?;
        let first = planner.plan(&table)?;
        let refine = RefineParams {
            max_evaluations: 48,
            moves_per_round: 4,
        };
        let plan = planner
            .refine(&table, &layers, &first, &eval, refine, exec)?
            .plan;
        let net = |plan: &squish::plan::Plan| {
            apply(&dense, &|l| {
                candidates[plan.choices[l].1].methods().to_vec()
            })
        };
        let (f, p) = (net(&first)?, net(&plan)?);
        println!(
            "{:<22} {:>12} {:>8.3} {:>10.2} {:>10.2} {:>12} {:>10.2} {:>12}   [{}]",
            uniform,
            bytes,
            8.0 * bytes as f64 / n_weights as f64,
            100.0 * u.accuracy_on(tx, ty, exec)?,
            100.0 * f.accuracy_on(tx, ty, exec)?,
            weight_bytes(&f),
            100.0 * p.accuracy_on(tx, ty, exec)?,
            weight_bytes(&p),
            plan.choices
                .iter()
                .map(|c| c.2.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
