//! Calibration data for a recipe applied to a BERT-family model: the
//! sentences of a text file run through the encoder, giving what
//! [`compress_model_calibrated`](crate::recipe::compress_model_calibrated)
//! reads (what `squish compress --calibration FILE` does).

use std::path::Path;

use super::{collect, compress, Mode};
use crate::error::Result;
use crate::io::Model;
use crate::nn::{Activations, BertConfig, BertEncoder, SentenceTokenizer, TokenBatch, Weights};
use crate::parallel::ParallelExecutor;
use crate::recipe::{CalibrationModeSpec, ModelCalibration, Recipe};

/// Sentences per calibration batch.
const BATCH: usize = 32;

/// Packed token batches of `sentences` (32 a batch, in order).
pub fn sentence_batches<S: AsRef<str> + Sync>(
    tokenizer: &SentenceTokenizer,
    sentences: &[S],
    exec: &dyn ParallelExecutor,
) -> Result<Vec<TokenBatch>> {
    let ids = tokenizer.encode_all(sentences, exec)?;
    ids.chunks(BATCH).map(TokenBatch::new).collect()
}

/// Calibration data for applying `recipe` to the BERT-family `model` (its
/// `config.json` and `tokenizer.json` in `dir`), from `sentences`: the
/// recipe's `[calibration]` section draws the samples (`samples`, `seed`),
/// truncates them (`max_tokens`) and picks the mode.
///
/// - `sequential` (default): the encoder's linear layers are compressed
///   stage by stage with their recipe pipelines, each stage calibrated on
///   the outputs of the already compressed ones; the result holds them
///   ([`ModelCalibration::compressed`]).
/// - `sequential-targets`: the same, each layer aiming at the uncompressed
///   model's output ([`Mode::SequentialTargets`]).
/// - `one-shot`: statistics of every linear layer from the uncompressed
///   model ([`ModelCalibration::stats`]).
///
/// Names are the model's tensor names (`encoder.layer.0.attention.self.query.weight`,
/// with the model's `bert.` prefix if it has one). A recipe without
/// data-aware methods needs no calibration: the result is then empty.
pub fn calibrate_bert(
    model: &Model,
    dir: &Path,
    recipe: &Recipe,
    sentences: &[String],
    exec: &dyn ParallelExecutor,
) -> Result<ModelCalibration> {
    let mut out = ModelCalibration::default();
    if !recipe.needs_calibration() {
        return Ok(out);
    }
    let section = recipe.calibration().cloned().unwrap_or_default();
    let sentences = section.draw(sentences);
    let tokenizer = SentenceTokenizer::from_file(
        dir.join("tokenizer.json"),
        section.max_tokens.unwrap_or(crate::nn::DEFAULT_MAX_TOKENS),
    )?;
    let config = BertConfig::load(dir.join("config.json"))?;
    let mut encoder = BertEncoder::from_weights(config, Weights::Dense(model), Activations::Float)?;
    let batches = sentence_batches(&tokenizer, &sentences, exec)?;
    let prefix = if model
        .get("bert.embeddings.word_embeddings.weight")
        .is_some()
    {
        "bert."
    } else {
        ""
    };
    let tensor = |layer: &str| format!("{prefix}{layer}.weight");
    match section.mode {
        CalibrationModeSpec::OneShot => {
            out.stats = collect(&encoder, &batches, None, exec)?.renamed(|l| Some(tensor(l)));
        }
        seq @ (CalibrationModeSpec::Sequential | CalibrationModeSpec::SequentialTargets) => {
            let mode = match seq {
                CalibrationModeSpec::SequentialTargets => Mode::SequentialTargets,
                _ => Mode::Sequential,
            };
            // Every layer the recipe compresses takes part, so later
            // stages see the compressed versions of data-free layers too.
            let plan = |layer: &str| {
                let p = recipe.pipeline(recipe.choose(&tensor(layer))).ok()?;
                (!p.is_empty()).then_some(p)
            };
            let done = compress(&mut encoder, &batches, &plan, mode, exec)?;
            out.compressed = done
                .layers
                .into_iter()
                .map(|(l, m)| (tensor(&l), m))
                .collect();
            out.input_scales = done
                .input_scales
                .into_iter()
                .map(|(l, f)| (tensor(&l), f))
                .collect();
        }
    }
    Ok(out)
}
