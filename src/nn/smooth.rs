//! SmoothQuant (Xiao et al., 2023) for int8 × int8 serving: per-input-channel
//! factors that move activation outliers into the weights.
//!
//! LayerNorm outputs of BERT-family encoders carry a few channels whose
//! values are 10–50× the others; a per-token int8 scale set by them leaves
//! the other channels a handful of levels. With `s_j = max|X_j|^α /
//! max|W_j|^(1−α)` from calibration, `x·Wᵀ = (x ⊙ 1/s)·(W·diag(s))ᵀ`:
//! the stored weight is `W·diag(s)` (then quantized per row as usual) and
//! the layer multiplies its input by `1/s` before quantizing it
//! ([`Linear::with_input_scale`](super::Linear::with_input_scale)). The
//! factors cannot be folded into the preceding LayerNorm here: in a post-norm
//! encoder its output also feeds the residual, so they stay a vector per layer
//! (`{layer}.input_scale`), applied where the activations are quantized.

use ndarray::{Array1, Array2};

use super::{Activations, BertConfig, BertEncoder, NnError, TokenBatch, Weights};
use crate::error::Result;
use crate::io::{Model, Tensor};
use crate::parallel::ParallelExecutor;

/// Name suffix of the per-input-channel factors a linear layer multiplies
/// its input by (`encoder.layer.0.attention.self.query.input_scale`).
pub const INPUT_SCALE: &str = "input_scale";

/// The linear maps reading each calibration site of a layer (see
/// [`BertEncoder::input_abs_max`]): query/key/value share their input and
/// so one set of factors.
const SITES: [&[&str]; 4] = [
    &[
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
    ],
    &["attention.output.dense"],
    &["intermediate.dense"],
    &["output.dense"],
];

/// Checked SmoothQuant settings; build with [`SmoothQuant::params`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothQuantParams {
    alpha: [Option<f32>; 4],
}

/// SmoothQuant, checked: migration strength `alpha` and which inputs of each
/// layer to smooth.
///
/// ```
/// use squish::nn::SmoothQuant;
/// let sq = SmoothQuant::params().alpha(0.5).check()?;
/// // A channel with max|x| = 16 and max|w| = 1 gets s = 4: x/4 and 4·w.
/// assert_eq!(sq.factors(&[16.0, 1.0, 0.0], &[1.0, 1.0, 2.0]), vec![4.0, 1.0, 1.0]);
/// assert!(SmoothQuant::params().alpha(1.5).check().is_err());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothQuant {
    alpha: [Option<f32>; 4],
}

impl SmoothQuant {
    /// Defaults: `alpha = 0.5` at every linear input.
    pub fn params() -> SmoothQuantParams {
        SmoothQuantParams {
            alpha: [Some(0.5); 4],
        }
    }

    /// Migration strength per input: `[query/key/value, attention output,
    /// intermediate, output]`; `None` where that input is not smoothed.
    pub fn alphas(&self) -> [Option<f32>; 4] {
        self.alpha
    }

    /// The factors `s_j = max|X_j|^α / max|W_j|^(1−α)` of one input, from
    /// the calibrated activation maxima `x_max` and the weight column maxima
    /// `w_max`; 1 where either is 0 (nothing to migrate) and within
    /// `[1e-4, 1e4]`.
    pub fn factors(&self, x_max: &[f32], w_max: &[f32]) -> Vec<f32> {
        self.factors_at(self.alpha[0].unwrap_or(0.0), x_max, w_max)
    }

    fn factors_at(&self, alpha: f32, x_max: &[f32], w_max: &[f32]) -> Vec<f32> {
        let a = alpha as f64;
        x_max
            .iter()
            .zip(w_max)
            .map(|(&x, &w)| {
                if x <= 0.0 || w <= 0.0 {
                    return 1.0;
                }
                ((x as f64).powf(a) / (w as f64).powf(1.0 - a)).clamp(1e-4, 1e4) as f32
            })
            .collect()
    }

    /// `model` with every smoothed linear weight replaced by `W·diag(s)` and
    /// `{layer}.input_scale = 1/s` added, `s` from the activation maxima of
    /// the dense encoder over `calibration`. Compress the result as usual
    /// (e.g. the `int8` recipe on `encoder.*.weight`): the encoder loaded
    /// from it applies the factors, and in f32 it computes the same function
    /// as `model` (up to rounding).
    pub fn apply(
        &self,
        config: &BertConfig,
        model: &Model,
        calibration: &[TokenBatch],
        exec: &dyn ParallelExecutor,
    ) -> Result<Model> {
        if calibration.is_empty() {
            return Err(NnError::NoCalibration.into());
        }
        let dense =
            BertEncoder::from_weights(config.clone(), Weights::Dense(model), Activations::Float)?;
        let stats = dense.input_abs_max(calibration, exec)?;
        let p = if model.get("embeddings.word_embeddings.weight").is_none()
            && model
                .get("bert.embeddings.word_embeddings.weight")
                .is_some()
        {
            "bert."
        } else {
            ""
        };
        let mut replaced: Vec<(String, Tensor)> = Vec::new();
        for (l, sites) in stats.iter().enumerate() {
            for (site, x_max) in sites.iter().enumerate() {
                let Some(alpha) = self.alpha[site] else {
                    continue;
                };
                let names: Vec<String> = SITES[site]
                    .iter()
                    .map(|n| format!("{p}encoder.layer.{l}.{n}"))
                    .collect();
                let ws: Vec<Array2<f32>> = names
                    .iter()
                    .map(|n| dense_weight(&dense, l, site, n))
                    .collect();
                let mut w_max = vec![0.0f32; x_max.len()];
                for w in &ws {
                    for row in w.rows() {
                        for (m, &v) in w_max.iter_mut().zip(row) {
                            *m = m.max(v.abs());
                        }
                    }
                }
                let s = Array1::from(self.factors_at(alpha, x_max, &w_max));
                for (n, w) in names.iter().zip(ws) {
                    let shape = vec![w.nrows(), w.ncols()];
                    let w = w * s.view().insert_axis(ndarray::Axis(0));
                    let data = w.into_raw_vec_and_offset().0;
                    replaced.push((format!("{n}.weight"), f32_tensor(shape, data)?));
                    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
                    replaced.push((
                        format!("{n}.{INPUT_SCALE}"),
                        f32_tensor(vec![inv.len()], inv)?,
                    ));
                }
            }
        }
        let mut out = Model::new();
        for (name, t) in model.iter() {
            match replaced.iter().position(|(n, _)| n == name) {
                Some(i) => out.insert(name, replaced[i].1.clone())?,
                None => out.insert(name, t.clone())?,
            }
        }
        for (name, t) in replaced {
            if name.ends_with(INPUT_SCALE) {
                out.insert(name, t)?;
            }
        }
        Ok(out)
    }
}

/// The dense weight of the map `name` (site `site` of layer `l`).
fn dense_weight(enc: &BertEncoder, l: usize, site: usize, name: &str) -> Array2<f32> {
    let layer = &enc.layers()[l];
    let a = &layer.attention;
    let lin = match (site, name.rsplit('.').next()) {
        (0, Some("query")) => &a.query,
        (0, Some("key")) => &a.key,
        (0, _) => &a.value,
        (1, _) => &a.output,
        (2, _) => &layer.intermediate,
        _ => &layer.output,
    };
    lin.dense_weight()
}

fn f32_tensor(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
    Ok(Tensor::float(crate::io::Dtype::F32, shape, data)?)
}

impl SmoothQuantParams {
    /// Migration strength in `0..=1` at every input (0: the activations
    /// keep their range; 1: all of it moves into the weights).
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = [Some(alpha); 4];
        self
    }

    /// Migration strength per input of each layer, `[query/key/value,
    /// attention output, intermediate, output]`; `None` leaves that input
    /// as it is.
    pub fn alphas(mut self, alphas: [Option<f32>; 4]) -> Self {
        self.alpha = alphas;
        self
    }

    /// Checks every `alpha`.
    pub fn check(self) -> Result<SmoothQuant> {
        if let Some(alpha) = self
            .alpha
            .iter()
            .flatten()
            .find(|a| !(0.0..=1.0).contains(*a))
        {
            return Err(NnError::SmoothingAlpha { alpha: *alpha }.into());
        }
        Ok(SmoothQuant { alpha: self.alpha })
    }
}
