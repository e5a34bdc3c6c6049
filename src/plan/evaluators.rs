//! Ready-made [`Evaluator`]s: data-free weight error, and the embedding
//! cosine of a BERT-family sentence encoder on calibration sentences.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::{Evaluator, MixEvaluator, PlanError};
use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::nn::{BertEncoder, BertLayer, Linear, SentenceEncoder, SentenceTokenizer};
use crate::parallel::{ParallelExecutor, Sequential};

/// Data-free distortion: the layer's squared weight error as a fraction of
/// the energy of all planned weights, ‖W − Ŵ‖²_F / Σ‖W_l‖²_F (additive over
/// layers by construction).
#[derive(Clone, Debug)]
pub struct WeightError<'a> {
    weights: Vec<ArrayView2<'a, f32>>,
    total: f64,
}

impl<'a> WeightError<'a> {
    /// Over the planned layers' weights, in plan order.
    pub fn new(weights: Vec<ArrayView2<'a, f32>>) -> Self {
        let total = weights
            .iter()
            .flat_map(|w| w.iter())
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        WeightError { weights, total }
    }
}

impl Evaluator for WeightError<'_> {
    fn distortion(&self, layer: usize, m: &CompressedMatrix) -> Result<f64> {
        let d = m.to_dense();
        let err: f64 = self.weights[layer]
            .iter()
            .zip(d.iter())
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        Ok(err / self.total)
    }
}

impl MixEvaluator for WeightError<'_> {
    fn mix_distortion(&self, mix: &[Option<&CompressedMatrix>]) -> Result<f64> {
        mix.iter()
            .enumerate()
            .map(|(l, m)| m.map_or(Ok(0.0), |m| self.distortion(l, m)))
            .sum()
    }
}

/// Hugging Face names of a BERT layer's six linear weights, in
/// [`BertLayer::linears`](crate::nn::BertLayer::linears) order.
pub const BERT_LINEARS: [&str; 6] = BertLayer::LINEAR_NAMES;

/// The linear map `index` of `enc` (`6 · layer + position` in [`BERT_LINEARS`] order).
pub fn bert_linear_mut(enc: &mut BertEncoder, index: usize) -> &mut Linear {
    let [q, k, v, o, up, down] = enc.layers_mut()[index / 6].linears_mut();
    match index % 6 {
        0 => q,
        1 => k,
        2 => v,
        3 => o,
        4 => up,
        _ => down,
    }
}

/// `(name, dense weight)` of every encoder linear layer, in plan order.
pub fn bert_linear_weights(enc: &BertEncoder) -> Vec<(String, Array2<f32>)> {
    let mut enc = enc.clone();
    (0..6 * enc.layers().len())
        .map(|i| {
            (
                format!("encoder.layer.{}.{}.weight", i / 6, BERT_LINEARS[i % 6]),
                bert_linear_mut(&mut enc, i).dense_weight(),
            )
        })
        .collect()
}

/// Mean cosine of paired rows of unit-norm embeddings.
pub fn mean_cosine<'a>(a: impl AsArray<'a, f32, Ix2>, b: impl AsArray<'a, f32, Ix2>) -> f64 {
    let a: ArrayView2<'a, f32> = a.into();
    let b: ArrayView2<'a, f32> = b.into();
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| *p as f64 * *q as f64)
                .sum::<f64>()
        })
        .sum::<f64>()
        / a.nrows().max(1) as f64
}

/// 1 − mean cosine of a sentence encoder's embeddings of calibration
/// sentences to the uncompressed encoder's, with one linear layer swapped
/// for its compressed form (multiplied by its own kernel).
pub struct EncoderCosine<'a> {
    tokenizer: &'a SentenceTokenizer,
    dense: &'a BertEncoder,
    ids: Vec<Vec<u32>>,
    reference: Array2<f32>,
}

impl<'a> EncoderCosine<'a> {
    /// Tokenizes `sentences` and embeds them with the dense encoder.
    pub fn new<S: AsRef<str> + Sync>(
        tokenizer: &'a SentenceTokenizer,
        dense: &'a BertEncoder,
        sentences: &[S],
        exec: &dyn ParallelExecutor,
    ) -> Result<Self> {
        let ids = tokenizer.encode_all(sentences, exec)?;
        let reference =
            SentenceEncoder::new(tokenizer.clone(), dense.clone(), 32)?.embed_ids(&ids, exec)?;
        Ok(EncoderCosine {
            tokenizer,
            dense,
            ids,
            reference,
        })
    }
}

impl Evaluator for EncoderCosine<'_> {
    fn distortion(&self, layer: usize, m: &CompressedMatrix) -> Result<f64> {
        let mut mix = vec![None; 6 * self.dense.layers().len()];
        *mix.get_mut(layer).ok_or(PlanError::NoCandidates {
            what: format!("layer {layer} beyond the encoder's linear layers"),
        })? = Some(m);
        self.mix_distortion(&mix)
    }
}

impl MixEvaluator for EncoderCosine<'_> {
    fn mix_distortion(&self, mix: &[Option<&CompressedMatrix>]) -> Result<f64> {
        let mut enc = self.dense.clone();
        for (layer, m) in mix.iter().enumerate() {
            if let Some(m) = m {
                let slot = bert_linear_mut(&mut enc, layer);
                let bias = slot.bias().cloned();
                *slot = Linear::compressed((*m).clone(), bias)?;
            }
        }
        let e = SentenceEncoder::new(self.tokenizer.clone(), enc, 32)?
            .embed_ids(&self.ids, &Sequential)?;
        Ok(1.0 - mean_cosine(e.view(), self.reference.view()))
    }
}
