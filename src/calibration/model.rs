//! The model side of calibration: a trait a model implements so its linear
//! layers can be calibrated, and the two ways of running it (all layers
//! from one pass of the original model, or sequentially as GPTQ does).

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array2, ArrayView2};

use super::{CalibrationContext, CalibrationError};
use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::ParallelExecutor;
use crate::pipeline::Pipeline;

/// A model whose linear layers (`y = x·Wᵀ (+ b)`, `W` of shape `[out, in]`)
/// can be calibrated: it names them and reports the input each one sees.
///
/// A model adapter is small: the forward pass it already has, plus a call
/// of `capture` with each linear layer's input matrix (`[tokens, in]`).
pub trait Calibratable {
    /// One calibration example (a sentence, an image batch, ...).
    type Input;

    /// The linear layers in forward order, in stages: the layers of one
    /// stage take inputs that do not depend on each other's outputs (say
    /// the query, key and value projections), so sequential calibration
    /// compresses a whole stage from one forward pass.
    fn stages(&self) -> Vec<Vec<String>>;

    /// The current weight of a layer.
    fn weight(&self, name: &str) -> Result<Array2<f32>>;

    /// Replaces a layer's weight (with the decoded compressed weight in
    /// sequential mode).
    fn set_weight(&mut self, name: &str, w: ArrayView2<f32>) -> Result<()>;

    /// Runs one example forward, calling `capture(name, x)` with the input
    /// `x` of every linear layer. Layers outside `wanted` need not be
    /// captured (the model may stop early once all were seen).
    fn forward_capturing(
        &self,
        input: &Self::Input,
        wanted: &BTreeSet<String>,
        capture: &mut dyn FnMut(&str, ArrayView2<f32>) -> Result<()>,
        exec: &dyn ParallelExecutor,
    ) -> Result<()>;
}

/// Runs `inputs` through `model` once and collects the statistics of the
/// `wanted` layers (all layers when `None`).
pub fn collect<M: Calibratable>(
    model: &M,
    inputs: &[M::Input],
    wanted: Option<&BTreeSet<String>>,
    exec: &dyn ParallelExecutor,
) -> Result<CalibrationContext> {
    let all: BTreeSet<String> = model.stages().into_iter().flatten().collect();
    let wanted = wanted.unwrap_or(&all);
    let mut ctx = CalibrationContext::new();
    for x in inputs {
        model.forward_capturing(
            x,
            wanted,
            &mut |name, a| {
                if !wanted.contains(name) {
                    return Ok(());
                }
                ctx.entry(name, a.ncols()).accumulate(a)
            },
            exec,
        )?;
    }
    Ok(ctx)
}

/// Runs `inputs` through the model being compressed (`current`) and the
/// uncompressed one (`dense`), and collects for the `wanted` layers the
/// statistics of `current`'s inputs with `dense`'s inputs as targets
/// ([`LayerStats::accumulate_with_target`](crate::pass::LayerStats::accumulate_with_target)).
pub fn collect_with_targets<M: Calibratable>(
    dense: &M,
    current: &M,
    inputs: &[M::Input],
    wanted: &BTreeSet<String>,
    exec: &dyn ParallelExecutor,
) -> Result<CalibrationContext> {
    let mut ctx = CalibrationContext::new();
    for x in inputs {
        let mut targets: BTreeMap<String, Array2<f32>> = BTreeMap::new();
        dense.forward_capturing(
            x,
            wanted,
            &mut |name, a| {
                if wanted.contains(name) {
                    targets.insert(name.to_string(), a.to_owned());
                }
                Ok(())
            },
            exec,
        )?;
        current.forward_capturing(
            x,
            wanted,
            &mut |name, a| match targets.get(name) {
                Some(t) => ctx
                    .entry(name, a.ncols())
                    .accumulate_with_target(a, t.view()),
                None => Ok(()),
            },
            exec,
        )?;
    }
    Ok(ctx)
}

/// How layers are calibrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Statistics of every layer from the original model (one pass).
    OneShot,
    /// GPTQ's order: compress a stage, then feed the compressed stage's
    /// outputs forward to calibrate the next one (one pass per stage).
    Sequential,
    /// Sequential, and each layer aims at the *uncompressed* model's output
    /// on the same tokens: `‖X_dense·Wᵀ − X·Ŵᵀ‖` with `X` its inputs in the
    /// partly compressed model, so it also corrects the error of the layers
    /// before it (two forward passes per stage; statistics with targets,
    /// [`collect_with_targets`]).
    SequentialTargets,
}

/// The compressed layers of a model, by name.
#[derive(Clone, Debug, Default)]
pub struct CalibratedModel {
    /// Each compressed layer.
    pub layers: BTreeMap<String, CompressedMatrix>,
    /// Per-input factors of the layers whose pass moved a scale into the
    /// matrix (AWQ): the layer computes `(x ⊙ f)·Ŵᵀ`.
    pub input_scales: BTreeMap<String, Vec<f32>>,
}

/// Compresses every layer `plan` gives a pipeline for (others are kept),
/// with statistics collected on `inputs` in `mode`. In sequential mode the
/// model's weights are replaced by the decoded compressed ones as it goes
/// (so `model` ends up holding the compressed model); in one-shot mode they
/// are replaced at the end.
pub fn compress<M: Calibratable + Clone>(
    model: &mut M,
    inputs: &[M::Input],
    plan: &dyn Fn(&str) -> Option<Pipeline>,
    mode: Mode,
    exec: &dyn ParallelExecutor,
) -> Result<CalibratedModel> {
    if inputs.is_empty() {
        return Err(CalibrationError::NoSamples.into());
    }
    let stages = model.stages();
    let dense = (mode == Mode::SequentialTargets).then(|| model.clone());
    let mut out = CalibratedModel::default();
    let one_shot = match mode {
        Mode::OneShot => Some(collect(model, inputs, None, exec)?),
        Mode::Sequential | Mode::SequentialTargets => None,
    };
    let mut pending = Vec::new();
    for stage in stages {
        let todo: Vec<(String, Pipeline)> = stage
            .iter()
            .filter_map(|n| plan(n).map(|p| (n.clone(), p)))
            .collect();
        if todo.is_empty() {
            continue;
        }
        // Layers whose pipelines are all data-free need no statistics.
        let wanted: BTreeSet<String> = todo
            .iter()
            .filter(|(_, p)| p.needs_data())
            .map(|(n, _)| n.clone())
            .collect();
        let fresh;
        let ctx = match &one_shot {
            Some(c) => c,
            None if wanted.is_empty() => {
                fresh = CalibrationContext::new();
                &fresh
            }
            None => {
                fresh = match &dense {
                    Some(d) => collect_with_targets(d, model, inputs, &wanted, exec)?,
                    None => collect(model, inputs, Some(&wanted), exec)?,
                };
                &fresh
            }
        };
        for (name, pipeline) in todo {
            let w = model.weight(&name)?;
            let run = pipeline.run_calibrated(&name, &w, ctx.get(&name), exec)?;
            // The weight the layer applies (with an input scale folded in).
            let decoded = run.effective_weight();
            match mode {
                Mode::OneShot => pending.push((name.clone(), decoded)),
                _ => model.set_weight(&name, decoded.view())?,
            }
            if let Some(f) = run.input_scale {
                out.input_scales.insert(name.clone(), f);
            }
            out.layers.insert(name, run.matrix);
        }
    }
    for (name, w) in pending {
        model.set_weight(&name, w.view())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::Sequential;
    use crate::pruning::SparseGpt;
    use crate::quantization::Gptq;
    use crate::training::Mlp;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn setup() -> (Mlp<f32>, Vec<Array2<f32>>) {
        let mlp = Mlp::params(&[12, 16, 8, 4]).seed(3).check::<f32>().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let inputs = (0..3)
            .map(|_| Array2::from_shape_fn((20, 12), |_| rng.random_range(-1.0..1.0f32)))
            .collect();
        (mlp, inputs)
    }

    fn gptq() -> Pipeline {
        Pipeline::new().data_aware(Gptq::params(4).check().unwrap())
    }

    #[test]
    fn sequential_mode_calibrates_on_compressed_outputs() {
        let (mlp, inputs) = setup();
        let mut seq = mlp.clone();
        let out = compress(
            &mut seq,
            &inputs,
            &|_| Some(gptq()),
            Mode::Sequential,
            &Sequential,
        )
        .unwrap();
        assert_eq!(out.layers.len(), 3);
        // Layer 1 by hand: statistics from the model whose layer 0 is
        // already compressed, GPTQ of the original weight.
        let mut half = mlp.clone();
        half.set_weight("layers.0", out.layers["layers.0"].to_dense().view())
            .unwrap();
        let wanted: BTreeSet<String> = ["layers.1".to_string()].into();
        let ctx = collect(&half, &inputs, Some(&wanted), &Sequential).unwrap();
        let w1 = mlp.weight("layers.1").unwrap();
        let want = gptq()
            .run_calibrated("layers.1", &w1, ctx.get("layers.1"), &Sequential)
            .unwrap()
            .matrix;
        assert_eq!(out.layers["layers.1"], want);
        // One-shot uses the original model's inputs instead.
        let mut one = mlp.clone();
        let o = compress(
            &mut one,
            &inputs,
            &|_| Some(gptq()),
            Mode::OneShot,
            &Sequential,
        )
        .unwrap();
        let ctx = collect(&mlp, &inputs, None, &Sequential).unwrap();
        let want = gptq()
            .run_calibrated(
                "layers.2",
                &mlp.weight("layers.2").unwrap(),
                ctx.get("layers.2"),
                &Sequential,
            )
            .unwrap()
            .matrix;
        assert_eq!(o.layers["layers.2"], want);
        assert_eq!(
            seq.weight("layers.2").unwrap(),
            out.layers["layers.2"].to_dense()
        );
    }

    #[test]
    fn targets_are_the_uncompressed_models_inputs() {
        let (mlp, inputs) = setup();
        let mut half = mlp.clone();
        let w0 = mlp
            .weight("layers.0")
            .unwrap()
            .mapv(|v| (v * 4.0).round() / 4.0);
        half.set_weight("layers.0", w0.view()).unwrap();
        let wanted: BTreeSet<String> = ["layers.1".to_string()].into();
        let ctx = collect_with_targets(&mlp, &half, &inputs, &wanted, &Sequential).unwrap();
        let s = ctx.get("layers.1").unwrap();
        // Naive f64: C = Σ X̂ᵀX, H = Σ X̂ᵀX̂ over the batches.
        let mut c = Array2::<f64>::zeros((16, 16));
        let mut h = Array2::<f64>::zeros((16, 16));
        for x in &inputs {
            let xh = half.hidden(x.view(), 0).unwrap().mapv(f64::from);
            let xt = mlp.hidden(x.view(), 0).unwrap().mapv(f64::from);
            c += &xh.t().dot(&xt);
            h += &xh.t().dot(&xh);
        }
        let close = |a: ArrayView2<f64>, b: &Array2<f64>| {
            a.iter()
                .zip(b.iter())
                .all(|(p, q)| (p - q).abs() <= 1e-6 * (1.0 + q.abs()))
        };
        assert!(close(s.cross().unwrap(), &c));
        assert!(close(s.hessian(), &h));
        assert!(c != h, "the compressed layer changes the inputs");
        // The mode runs end to end, every layer compressed.
        let mut m = mlp.clone();
        let out = compress(
            &mut m,
            &inputs,
            &|_| Some(gptq()),
            Mode::SequentialTargets,
            &Sequential,
        )
        .unwrap();
        assert_eq!(out.layers.len(), 3);
    }

    #[test]
    fn missing_statistics_and_data_are_typed_errors() {
        let (mut mlp, inputs) = setup();
        let w = mlp.weight("layers.0").unwrap();
        let p = Pipeline::new().data_aware(SparseGpt::unstructured(0.5).check().unwrap());
        assert!(matches!(
            p.run_calibrated("layers.0", &w, None, &Sequential),
            Err(crate::SquishError::Calibration(
                CalibrationError::MissingStats { .. }
            ))
        ));
        assert!(matches!(
            compress(
                &mut mlp,
                &inputs[..0],
                &|_| Some(gptq()),
                Mode::Sequential,
                &Sequential
            ),
            Err(crate::SquishError::Calibration(CalibrationError::NoSamples))
        ));
        assert!(mlp.weight("layers.9").is_err());
    }
}
