//! Data-aware compression (GPTQ, SparseGPT, Wanda, AWQ) against data-free
//! compression (round-to-nearest, magnitude) on the MLP of
//! `examples/deep_compression.rs`.
//!
//! ```text
//! cargo run --release --example calibrate_mlp                 # Fashion-MNIST, LeNet-300-100
//! cargo run --release --example calibrate_mlp -- --epochs 3   # shorter training
//! cargo run --release --example calibrate_mlp -- --digits     # UCI digits, 64-100-10
//! cargo run --release --example calibrate_mlp -- --only gptq   # as calibrate_minilm: --only, --method, --one-shot
//! ```
//!
//! A dense model is trained (Adam), then every layer is compressed by each
//! method. Data-aware methods are calibrated on 1024 training images in
//! sequential mode (layer l sees the outputs of the compressed layers
//! before it). Reported: test accuracy through the compressed kernels, the
//! mean relative layer-output error `‖XWᵀ − XŴᵀ‖_F / ‖XWᵀ‖_F` on test
//! inputs of the dense model, and exact bytes. AWQ's per-input scales are
//! folded into the rows and bias of the layer before (exact through ReLU)
//! and, for the first layer, into the input.

mod calibration_common;

use std::time::Instant;

use calibration_common::{Args, Method};
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2};
use squish::data::{digits, fashion_mnist};
use squish::prelude::*;
use squish::quantization::scale_rows;
use squish::training::{Activation, CompressedMlp, Mlp, Optimizer, Trainer};

fn accuracy(m: &CompressedMlp, x: ArrayView2<f32>, y: &[usize]) -> squish::Result<f64> {
    let logits = m.forward(x)?;
    let hits = logits
        .outer_iter()
        .zip(y)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 == label
        })
        .count();
    Ok(hits as f64 / y.len() as f64)
}

/// Inputs of every layer of the dense model on `x`.
fn layer_inputs(mlp: &Mlp<f32>, x: ArrayView2<f32>) -> squish::Result<Vec<Array2<f32>>> {
    let mut v = vec![x.to_owned()];
    for l in 0..mlp.layers().len() - 1 {
        v.push(mlp.hidden(x, l)?);
    }
    Ok(v)
}

/// `‖x·Wᵀ − xq·Ŵᵀ‖ / ‖x·Wᵀ‖`: `xq` is `x` times the layer's input scale (AWQ).
fn rel_output_error(
    w: ArrayView2<f32>,
    wq: &CompressedMatrix,
    x: &Array2<f32>,
    xq: &Array2<f32>,
) -> f64 {
    let y = x.dot(&w.t());
    let yq = wq.matmul(xq.view()).expect("shapes match");
    let num: f64 = (&y - &yq).iter().map(|&v| (v as f64).powi(2)).sum();
    let den: f64 = y.iter().map(|&v| (v as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn main() -> squish::Result<()> {
    let args = Args::parse();
    let (data, sizes, default_epochs) = match (args.flag("--digits"), fashion_mnist()?) {
        (false, Some(d)) => (d, vec![784, 300, 100, 10], 8),
        _ => {
            println!("Fashion-MNIST not used (absent or --digits): UCI digits, 64-100-10.");
            (digits()?, vec![64, 100, 10], 40)
        }
    };
    let epochs: usize = args
        .value("--epochs")
        .and_then(|e| e.parse().ok())
        .unwrap_or(default_epochs);
    let t0 = Instant::now();
    let mut mlp = Mlp::params(&sizes).seed(0).check::<f32>()?;
    Trainer::params()
        .epochs(epochs)
        .batch_size(128)
        .seed(0)
        .optimizer(Optimizer::adam(1e-3).check()?)
        .check()?
        .fit(&mut mlp, &data.train)?;
    println!(
        "dense training: {epochs} epochs, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let n_cal = 1024.min(data.train.len());
    let cal: Vec<Array2<f32>> = (0..n_cal)
        .step_by(256)
        .map(|i| {
            data.train
                .x()
                .slice(s![i..(i + 256).min(n_cal), ..])
                .to_owned()
        })
        .collect();
    let test_x = data.test.x();
    let eval_inputs = layer_inputs(&mlp, test_x.slice(s![..2000.min(test_x.nrows()), ..]))?;
    let exec = ThreadPool::new(2)?;
    println!(
        "\n| method | test accuracy | mean layer-output rel. error | bytes (weights) | time |\n|---|---|---|---|---|"
    );
    let dense = Method::dense();
    for method in std::iter::once(dense).chain(args.methods()) {
        let (out, _, secs) = calibration_common::run(&mlp, &cal, &method, args.mode(), &exec)?;
        let name = &method.name;
        let n_layers = mlp.layers().len();
        let mut layers: Vec<CompressedMatrix> = (0..n_layers)
            .map(|i| out.layers[&format!("layers.{i}")].clone())
            .collect();
        // AWQ's per-input factors `f` (the layer computes (x ⊙ f)·Ŵᵀ).
        let scales: Vec<Option<&Vec<f32>>> = (0..n_layers)
            .map(|i| out.input_scales.get(&format!("layers.{i}")))
            .collect();
        let err: f64 = layers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let x = &eval_inputs[i];
                let xq = match scales[i] {
                    Some(f) => x * &ArrayView1::from(f.as_slice()),
                    None => x.clone(),
                };
                rel_output_error(mlp.layers()[i].weight(), m, x, &xq)
            })
            .sum::<f64>()
            / n_layers as f64;
        let bytes: usize = layers
            .iter()
            .zip(&scales)
            .map(|(m, f)| m.storage().total() + f.map_or(0, |f| f.len() * 4))
            .sum();
        // Fold the factors: layer i's into the rows and bias of layer i − 1
        // (ReLU(z)·f = ReLU(z·f) for f > 0, exact), layer 0's into the input.
        let mut biases: Vec<Array1<f32>> =
            mlp.layers().iter().map(|d| d.bias().to_owned()).collect();
        let mut test_in = test_x.to_owned();
        for i in 0..n_layers {
            let Some(f) = scales[i] else { continue };
            if i == 0 {
                test_in *= &ArrayView1::from(f.as_slice());
                continue;
            }
            assert_eq!(mlp.activation(), Activation::Relu, "folding needs ReLU");
            layers[i - 1] = scale_rows(&layers[i - 1], f)?;
            biases[i - 1] *= &ArrayView1::from(f.as_slice());
        }
        let cm = CompressedMlp::from_parts(layers, biases, mlp.activation())?;
        let acc = accuracy(&cm, test_in.view(), data.test.y())?;
        println!(
            "| {name} | {:.2} % | {err:.4} | {bytes} | {secs:.2} s |",
            acc * 100.0
        );
    }
    Ok(())
}
