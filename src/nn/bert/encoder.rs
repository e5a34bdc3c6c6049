//! [`BertEncoder`]: a BERT-family encoder over dense or compressed weights.

use std::path::Path;

use ndarray::{Array2, ArrayView2};

use super::{BertConfig, Weights};
use crate::error::Result;
use crate::io::{CompressedModel, Model};
use crate::nn::math::gelu_in_place;
use crate::nn::{
    mean_pool_normalize, Activations, Embedding, LayerNorm, Linear, NnError, SelfAttention,
    TokenBatch,
};
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor};

/// One encoder layer: self-attention, add & norm, feed-forward (GELU), add & norm.
#[derive(Clone, Debug)]
pub struct BertLayer {
    /// Self-attention with its output projection.
    pub attention: SelfAttention,
    /// LayerNorm after the attention residual.
    pub attention_norm: LayerNorm,
    /// Feed-forward up-projection (`intermediate.dense`).
    pub intermediate: Linear,
    /// Feed-forward down-projection (`output.dense`).
    pub output: Linear,
    /// LayerNorm after the feed-forward residual.
    pub output_norm: LayerNorm,
}

impl BertLayer {
    /// Hugging Face names of the six linear maps, in [`linears`](Self::linears)
    /// order (after `encoder.layer.{i}.`, before `.weight` / `.bias`).
    pub const LINEAR_NAMES: [&'static str; 6] = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];

    /// The six linear maps, mutable, in [`linears`](Self::linears) order.
    pub fn linears_mut(&mut self) -> [&mut Linear; 6] {
        let a = &mut self.attention;
        [
            &mut a.query,
            &mut a.key,
            &mut a.value,
            &mut a.output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }

    /// The layer's six linear maps in Hugging Face order (query, key, value,
    /// attention output, intermediate, output).
    pub fn linears(&self) -> [&Linear; 6] {
        let a = &self.attention;
        [
            &a.query,
            &a.key,
            &a.value,
            &a.output,
            &self.intermediate,
            &self.output,
        ]
    }

    /// The layer on packed `x: [tokens, hidden]`.
    pub fn forward(
        &self,
        x: &Array2<f32>,
        batch: &TokenBatch,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.forward_observed(x, batch, exec, &mut |_, _| {})
    }

    /// [`forward`](Self::forward), showing `observe` the input of every
    /// linear map: `(site, x)` with site 0 for query/key/value, 1 for the
    /// attention output, 2 for the intermediate and 3 for the output map.
    pub(crate) fn forward_observed(
        &self,
        x: &Array2<f32>,
        batch: &TokenBatch,
        exec: &dyn ParallelExecutor,
        observe: &mut dyn FnMut(usize, ArrayView2<f32>),
    ) -> Result<Array2<f32>> {
        let mut a = self
            .attention
            .forward_observed(x.view(), batch.segments(), exec, observe)?;
        self.attention_norm
            .add_forward_in_place(&mut a, x.view(), exec);
        observe(2, a.view());
        let mut h = self.intermediate.forward(a.view(), exec)?;
        let w = h.ncols();
        let data = h.as_slice_mut().expect("owned");
        for_each_chunk_mut(exec, data, rows_per_task(w, 32 * 1024) * w, |_, c| {
            gelu_in_place(c)
        });
        observe(3, h.view());
        let mut o = self.output.forward(h.view(), exec)?;
        self.output_norm
            .add_forward_in_place(&mut o, a.view(), exec);
        Ok(o)
    }
}

/// A BERT-family encoder (embeddings, `num_hidden_layers` layers) with the
/// sentence-transformers head: mean pooling over each sentence's tokens, L2
/// normalised.
///
/// Built from a [`BertConfig`] and tensors addressed by their Hugging Face
/// names (`embeddings.word_embeddings.weight`,
/// `encoder.layer.{i}.attention.self.query.weight`, …; a `bert.` prefix is
/// accepted). Each linear layer keeps the form it was given: dense f32 runs
/// the packed GEMM, compressed matrices their own kernels.
#[derive(Clone, Debug)]
pub struct BertEncoder {
    config: BertConfig,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    /// Assembles the encoder, checking every tensor against `config`;
    /// `mode` says how int8 layers multiply.
    pub fn from_weights(config: BertConfig, weights: Weights, mode: Activations) -> Result<Self> {
        let p = if !weights.contains("embeddings.word_embeddings.weight")
            && weights.contains("bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let (h, eps) = (config.hidden_size, config.layer_norm_eps as f32);
        let word = weights.embedding(
            &format!("{p}embeddings.word_embeddings.weight"),
            config.vocab_size,
            h,
        )?;
        let position = weights.embedding(
            &format!("{p}embeddings.position_embeddings.weight"),
            config.max_position_embeddings,
            h,
        )?;
        let token_type = weights.embedding(
            &format!("{p}embeddings.token_type_embeddings.weight"),
            config.type_vocab_size,
            h,
        )?;
        let embedding_norm = weights.layer_norm(&format!("{p}embeddings.LayerNorm"), h, eps)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = format!("{p}encoder.layer.{i}");
                let lin = |name: &str, o, n| weights.linear(&format!("{l}.{name}"), o, n, mode);
                Ok(BertLayer {
                    attention: SelfAttention::new(
                        lin("attention.self.query", h, h)?,
                        lin("attention.self.key", h, h)?,
                        lin("attention.self.value", h, h)?,
                        lin("attention.output.dense", h, h)?,
                        config.num_attention_heads,
                    )?,
                    attention_norm: weights.layer_norm(
                        &format!("{l}.attention.output.LayerNorm"),
                        h,
                        eps,
                    )?,
                    intermediate: lin("intermediate.dense", config.intermediate_size, h)?,
                    output: lin("output.dense", h, config.intermediate_size)?,
                    output_norm: weights.layer_norm(&format!("{l}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BertEncoder {
            config,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` (a Hugging Face
    /// model directory).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::load(dir.join("config.json"))?;
        let model = Model::load(dir.join("model.safetensors"))?;
        Self::from_weights(config, Weights::Dense(&model), Activations::Float)
    }

    /// Loads a squish container whose matrices stay compressed, with the
    /// architecture from `config_json`.
    pub fn load_container(
        config_json: impl AsRef<Path>,
        container: impl AsRef<Path>,
        mode: Activations,
    ) -> Result<Self> {
        let config = BertConfig::load(config_json)?;
        let model = CompressedModel::load(container)?;
        Self::from_weights(config, Weights::Container(&model), mode)
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The encoder layers.
    pub fn layers(&self) -> &[BertLayer] {
        &self.layers
    }

    /// The encoder layers, to replace or retune (e.g. per-layer kernels).
    pub fn layers_mut(&mut self) -> &mut [BertLayer] {
        &mut self.layers
    }

    /// Every linear layer, layer by layer in Hugging Face order.
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| l.linears())
    }

    /// Sets [`Linear::set_tiled`] on every linear layer.
    pub fn set_tiled(&mut self, tiled: bool) {
        for l in &mut self.layers {
            for lin in l.linears_mut() {
                lin.set_tiled(tiled);
            }
        }
    }

    /// Bytes of all weights (exact storage of compressed ones).
    pub fn bytes(&self) -> usize {
        let norms = (2 * self.layers.len() + 1) * 2 * self.config.hidden_size * 4;
        self.word.bytes()
            + self.position.bytes()
            + self.token_type.bytes()
            + norms
            + self.linears().map(Linear::bytes).sum::<usize>()
    }

    /// Token + position + type embeddings after their LayerNorm: the input
    /// of the first layer (calibration captures from here).
    pub(crate) fn embed_tokens(
        &self,
        batch: &TokenBatch,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let (max, vocab) = (self.config.max_position_embeddings, self.config.vocab_size);
        for (s, seg) in batch.segments().iter().enumerate() {
            if seg.len() > max {
                return Err(NnError::SequenceLength {
                    sequence: s,
                    len: seg.len(),
                    max,
                }
                .into());
            }
            if let Some(&id) = batch.ids()[seg.clone()]
                .iter()
                .find(|&&id| id as usize >= vocab)
            {
                return Err(NnError::TokenId {
                    sequence: s,
                    id,
                    vocab,
                }
                .into());
            }
        }
        let h = self.config.hidden_size;
        let mut x = Array2::<f32>::zeros((batch.tokens(), h));
        let positions: Vec<usize> = batch.positions().collect();
        let rows = rows_per_task(h, 16 * 1024);
        for_each_chunk_mut(exec, x.as_slice_mut().expect("owned"), rows * h, |i, c| {
            for (r, out) in c.chunks_exact_mut(h).enumerate() {
                let t = i * rows + r;
                self.word.add_row(batch.ids()[t] as usize, out);
                self.position.add_row(positions[t], out);
                self.token_type.add_row(0, out);
            }
        });
        self.embedding_norm.forward_in_place(&mut x, exec);
        Ok(x)
    }

    /// Last hidden states `[tokens, hidden]` of a packed batch (token type 0).
    pub fn hidden_states(
        &self,
        batch: &TokenBatch,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let mut x = self.embed_tokens(batch, exec)?;
        for l in &self.layers {
            x = l.forward(&x, batch, exec)?;
        }
        Ok(x)
    }

    /// The largest `|x_j|` seen in each input channel `j` of every linear
    /// map over `batches`: per layer, `[query/key/value input, attention
    /// output input, intermediate input, output input]` (what SmoothQuant
    /// calibrates on). Order-free maxima, so the same on every executor.
    pub fn input_abs_max(
        &self,
        batches: &[TokenBatch],
        exec: &dyn ParallelExecutor,
    ) -> Result<Vec<[Vec<f32>; 4]>> {
        let (h, f) = (self.config.hidden_size, self.config.intermediate_size);
        let mut out: Vec<[Vec<f32>; 4]> = (0..self.layers.len())
            .map(|_| [vec![0.0; h], vec![0.0; h], vec![0.0; h], vec![0.0; f]])
            .collect();
        for batch in batches {
            let mut x = self.embed_tokens(batch, exec)?;
            for (l, layer) in self.layers.iter().enumerate() {
                let sites = &mut out[l];
                x = layer.forward_observed(&x, batch, exec, &mut |site, v| {
                    for row in v.rows() {
                        for (m, &a) in sites[site].iter_mut().zip(row) {
                            *m = m.max(a.abs());
                        }
                    }
                })?;
            }
        }
        Ok(out)
    }

    /// Sentence embeddings `[sequences, hidden]`: mean over each sequence's
    /// tokens, L2 normalised. Bit-identical on every executor.
    pub fn embed(&self, batch: &TokenBatch, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        let h = self.hidden_states(batch, exec)?;
        Ok(mean_pool_normalize(h.view(), batch.segments()))
    }
}
