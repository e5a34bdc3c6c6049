//! Applying a recipe to a whole model, one task per layer.

use std::collections::BTreeMap;

use ndarray::ArrayView2;

use super::{Choice, Recipe, RecipeError};
use crate::error::Result;
use crate::io::{CompressedModel, CompressedTensor, Model};
use crate::matrix::CompressedMatrix;
use crate::metrics::ErrorMetrics;
use crate::parallel::{map, ParallelExecutor, Sequential};
use crate::pass::CalibrationContext;
use crate::pipeline::{Pipeline, PipelineOutput, PipelineReport, StageReport};

/// Bytes of a tensor in its own dtype.
pub(crate) fn file_bytes(t: &crate::io::Tensor) -> usize {
    t.shape().iter().product::<usize>() * t.dtype().bitsize() / 8
}

/// What compression did to one weight matrix.
#[derive(Clone, Debug)]
pub struct LayerReport {
    /// Tensor name.
    pub name: String,
    /// Original shape.
    pub shape: Vec<usize>,
    /// Pass names joined by " → " ("kept" when untouched).
    pub method: String,
    /// Bytes of the tensor in the input file, in its own dtype (an f16
    /// matrix counts 2 bytes a weight).
    pub bytes_before: usize,
    /// Bytes of the same matrix as dense f32 (what the kernels compare with).
    pub bytes_f32: usize,
    /// Bytes compressed (exact storage of every component, with a per-input
    /// scale stored next to the matrix).
    pub bytes_after: usize,
    /// Error against the original weights.
    pub error: ErrorMetrics,
}

impl LayerReport {
    /// The report of a pipeline's run on the tensor `name` of `shape`
    /// (`bytes_before` of it in the input file), and the pass names it
    /// records as the method.
    pub(crate) fn of_run(
        name: &str,
        shape: &[usize],
        bytes_before: usize,
        out: &crate::pipeline::PipelineOutput,
    ) -> LayerReport {
        let method = out.report.stages[1..]
            .iter()
            .map(|s| s.method.as_str())
            .collect::<Vec<_>>()
            .join(" → ");
        let last = out.report.stages.last().expect("the input stage");
        // A per-input scale is stored next to the matrix (4 bytes a factor).
        let scale_bytes = out.input_scale.as_ref().map_or(0, |f| f.len() * 4);
        LayerReport {
            name: name.to_string(),
            shape: shape.to_vec(),
            method,
            bytes_before,
            bytes_f32: last.storage.dense_bytes(),
            bytes_after: last.storage.total() + scale_bytes,
            error: last.error,
        }
    }

    /// `bytes_before / bytes_after`: how much smaller than in the input file.
    pub fn ratio(&self) -> f64 {
        self.bytes_before as f64 / self.bytes_after as f64
    }

    /// `bytes_f32 / bytes_after`: how much smaller than dense f32.
    pub fn ratio_vs_f32(&self) -> f64 {
        self.bytes_f32 as f64 / self.bytes_after as f64
    }
}

/// The compressed model and one report per weight matrix the recipe touched.
#[derive(Clone, Debug)]
pub struct Compressed {
    /// The container contents.
    pub model: CompressedModel,
    /// One report per compressed matrix, in model order.
    pub layers: Vec<LayerReport>,
}

/// Totals over layers given with their weights' energy `Σw²`: (bytes
/// before, bytes after, relative error of the concatenated weights).
pub(crate) fn layer_totals<'a>(
    layers: impl Iterator<Item = (&'a LayerReport, f64)>,
) -> (usize, usize, f64) {
    let (mut before, mut after, mut signal, mut noise) = (0, 0, 0.0f64, 0.0f64);
    for (l, s) in layers {
        before += l.bytes_before;
        after += l.bytes_after;
        signal += s;
        noise += l.error.rel_frobenius.powi(2) * s;
    }
    let rel = if signal > 0.0 {
        (noise / signal).sqrt()
    } else {
        0.0
    };
    (before, after, rel)
}

impl Compressed {
    /// Totals over all layers: (bytes before as in the input file, bytes
    /// after, relative error of the concatenated weights).
    pub fn totals(&self, original: &Model) -> (usize, usize, f64) {
        layer_totals(self.layers.iter().map(|l| {
            let s = original
                .get(&l.name)
                .and_then(|t| t.as_f32())
                .map_or(0.0, crate::metrics::sum_squares);
            (l, s)
        }))
    }
}

/// Compresses every weight matrix of `model` as `recipe` says, one task per
/// matrix on `exec`; `progress` is called with each finished layer's name
/// (from worker threads). Tensors that are not matrices, and matrices the
/// recipe keeps, are stored as they are. The result does not depend on the
/// executor. A recipe with data-aware methods needs
/// [`compress_model_calibrated`].
pub fn compress_model(
    model: &Model,
    recipe: &Recipe,
    exec: &dyn ParallelExecutor,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Compressed> {
    compress_model_calibrated(model, recipe, &ModelCalibration::default(), exec, progress)
}

/// What the data-aware methods of a recipe read when it is applied to a
/// whole model, by tensor name (`encoder.layer.0.attention.self.query.weight`).
#[derive(Clone, Debug, Default)]
pub struct ModelCalibration {
    /// Statistics of each layer's inputs (one-shot calibration).
    pub stats: CalibrationContext,
    /// Layers already compressed by their recipe pipeline elsewhere (say by
    /// sequential calibration through the model's forward pass): stored
    /// and reported as they are.
    pub compressed: BTreeMap<String, CompressedMatrix>,
    /// Per-input factors of layers in [`compressed`](Self::compressed)
    /// whose pass moved a scale into the matrix (AWQ), by tensor name:
    /// stored as `{layer}.input_scale`.
    pub input_scales: BTreeMap<String, Vec<f32>>,
}

/// The name of the per-input scale stored with weight `name`:
/// `encoder.layer.0.attention.self.query.weight` →
/// `encoder.layer.0.attention.self.query.input_scale` (what the serving
/// encoder reads); `{name}.input_scale` for a name without `.weight`.
pub fn input_scale_name(name: &str) -> String {
    let prefix = name.strip_suffix(".weight").unwrap_or(name);
    format!("{prefix}.input_scale")
}

/// [`compress_model`] with calibration data: each data-aware pass reads
/// its layer's statistics from `calibration.stats`, and the layers in
/// `calibration.compressed` are taken as they are. A data-aware method on a
/// layer with neither is refused before any work
/// ([`RecipeError::NeedsCalibration`], naming the rule, the method and the
/// layer).
///
/// ```
/// use ndarray::Array2;
/// use squish::io::{Dtype, Model, Tensor};
/// use squish::pass::LayerStats;
/// use squish::parallel::Sequential;
/// use squish::recipe::{compress_model, compress_model_calibrated, ModelCalibration, Recipe};
/// let w: Vec<f32> = (0..8 * 16).map(|k| ((k * 7) % 11) as f32 - 5.0).collect();
/// let mut model = Model::new();
/// model.insert("fc.weight", Tensor::float(Dtype::F32, vec![8, 16], w)?)?;
/// let recipe = Recipe::from_toml(r#"
/// [default]
/// pipeline = [{ method = "gptq", bits = 4 }]
/// "#)?;
/// // No calibration data: refused, naming the method and the layer.
/// let e = compress_model(&model, &recipe, &Sequential, &|_| {}).unwrap_err();
/// assert!(e.to_string().contains("needs calibration data for layer `fc.weight`"));
/// let x = Array2::from_shape_fn((32, 16), |(i, j)| ((i * j + 1) % 5) as f32 - 2.0);
/// let mut cal = ModelCalibration::default();
/// cal.stats.entry("fc.weight", 16).accumulate(x.view())?;
/// let out = compress_model_calibrated(&model, &recipe, &cal, &Sequential, &|_| {})?;
/// assert_eq!(out.layers[0].method, "gptq int4 sym per-row");
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn compress_model_calibrated(
    model: &Model,
    recipe: &Recipe,
    calibration: &ModelCalibration,
    exec: &dyn ParallelExecutor,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Compressed> {
    if model.is_container() {
        return Err(crate::io::FileError::IsAContainer {
            what: "the model to compress".into(),
        }
        .into());
    }
    let mut matrices: Vec<(&str, ArrayView2<f32>)> = Vec::new();
    let mut others = Vec::new();
    for (name, t) in model.iter() {
        match t.matrix() {
            Some(m) => matrices.push((name, m)),
            None => others.push(name),
        }
    }
    let names: Vec<&str> = matrices.iter().map(|(n, _)| *n).collect();
    let choices = recipe.plan(&names, &others)?;
    let pipelines: Vec<(Choice, Pipeline)> = [Choice::Default]
        .into_iter()
        .chain((0..recipe.rules().len()).map(Choice::Rule))
        .map(|c| Ok((c, recipe.pipeline(c)?)))
        .collect::<Result<_>>()?;
    let pipeline_of = |c: Choice| pipelines.iter().find(|(d, _)| *d == c).map(|(_, p)| p);
    for (&(name, _), &c) in matrices.iter().zip(&choices) {
        let Some(p) = pipeline_of(c).filter(|p| p.needs_data()) else {
            continue;
        };
        if c != Choice::Keep
            && calibration.stats.get(name).is_none()
            && !calibration.compressed.contains_key(name)
        {
            return Err(RecipeError::NeedsCalibration {
                rule: recipe.origin(c),
                method: p.pass_names(),
                layer: name.to_string(),
            }
            .into());
        }
    }

    let outs = map(exec, matrices.len(), |i| {
        let (name, w) = matrices[i];
        let out = match pipeline_of(choices[i]) {
            Some(p) if !p.is_empty() && choices[i] != Choice::Keep => {
                if let Some(m) = calibration.compressed.get(name) {
                    progress(name);
                    let scale = calibration.input_scales.get(name).map(Vec::as_slice);
                    return Some(done(p, w, m, scale).map_err(|e| RecipeError::Layer {
                        layer: name.to_string(),
                        stage: format!("pass `{}`", p.pass_names()),
                        source: Box::new(e),
                    }));
                }
                let stats = calibration.stats.get(name);
                Some(
                    p.run_staged(name, w, stats, &Sequential)
                        .map_err(|e| RecipeError::in_layer(name, "", p, e)),
                )
            }
            _ => None,
        };
        progress(name);
        out
    });

    let mut result = Compressed {
        model: CompressedModel::new(),
        layers: Vec::new(),
    };
    let mut outs = outs.into_iter();
    let mut scales = Vec::new();
    for (name, t) in model.iter() {
        if t.matrix().is_none() {
            result.model.insert_plain(name, t.clone())?;
            continue;
        }
        let Some(out) = outs.next().expect("one result per matrix") else {
            result.model.insert_plain(name, t.clone())?;
            continue;
        };
        let out = out.map_err(crate::SquishError::from)?;
        let report = LayerReport::of_run(name, t.shape(), file_bytes(t), &out);
        let method = report.method.clone();
        result.layers.push(report);
        let ct = CompressedTensor::new(out.matrix, t.dtype(), t.shape().to_vec(), method)?;
        result.model.insert_compressed(name, ct)?;
        if let Some(f) = out.input_scale {
            let sname = input_scale_name(name);
            if model.get(&sname).is_some() {
                return Err(crate::pass::CalibrationError::InputScaleExists {
                    layer: name.to_string(),
                    tensor: sname,
                }
                .into());
            }
            let t = crate::io::Tensor::float(crate::io::Dtype::F32, vec![f.len()], f)?;
            scales.push((sname, t));
        }
    }
    for (n, t) in scales {
        result.model.insert_plain(&n, t)?;
    }
    Ok(result)
}

/// The report of a layer compressed elsewhere by pipeline `p` (served with
/// per-input factors `scale` when given): the input stage and one stage for
/// the whole pipeline.
fn done(
    p: &Pipeline,
    w: ArrayView2<f32>,
    m: &CompressedMatrix,
    scale: Option<&[f32]>,
) -> Result<PipelineOutput> {
    if m.rows() != w.nrows() || m.cols() != w.ncols() {
        return Err(crate::SquishError::shape(
            "a layer compressed by calibration",
            format!("{}x{}", w.nrows(), w.ncols()),
            format!("{}x{}", m.rows(), m.cols()),
        ));
    }
    let input = CompressedMatrix::from_dense(w)?;
    let stages = vec![
        StageReport::measure("dense f32".into(), w, &input)?,
        StageReport::measure_scaled(p.pass_names(), w, m, scale)?,
    ];
    Ok(PipelineOutput {
        matrix: m.clone(),
        report: PipelineReport { stages },
        input_scale: scale.map(<[f32]>::to_vec),
    })
}
