//! [`SentenceEncoder`]: sentences in, embeddings out, in packed batches.

use std::path::Path;

use ndarray::Array2;

use super::{Activations, BertConfig, BertEncoder, SentenceTokenizer, TokenBatch, Weights};
use crate::error::{Result, SquishError};
use crate::io::{CompressedModel, Model};
use crate::parallel::ParallelExecutor;

/// A tokenizer and an encoder serving sentence embeddings.
///
/// [`embed`](Self::embed) sorts sentences by token count (longest first, as
/// sentence-transformers' `encode` does), packs up to `batch_size` of them
/// end to end into one [`TokenBatch`] — no padding, attention kept inside
/// each sentence — runs each batch through the encoder, and returns the
/// embeddings in input order. A sentence's embedding does not depend on the
/// executor.
#[derive(Clone, Debug)]
pub struct SentenceEncoder {
    tokenizer: SentenceTokenizer,
    encoder: BertEncoder,
    batch_size: usize,
}

impl SentenceEncoder {
    /// Serves `encoder` with `tokenizer`, `batch_size` sentences per batch (≥ 1).
    pub fn new(tokenizer: SentenceTokenizer, encoder: BertEncoder, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(SquishError::invalid("batch_size", 0, "must be at least 1"));
        }
        Ok(SentenceEncoder {
            tokenizer,
            encoder,
            batch_size,
        })
    }

    /// A Hugging Face model directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), dense f32, truncation at 256 tokens, batches of 32.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer = SentenceTokenizer::from_file(dir.join("tokenizer.json"), super::DEFAULT_MAX_TOKENS)?;
        Self::new(tokenizer, BertEncoder::load_dir(dir)?, 32)
    }

    /// A squish container (compressed matrices stay compressed) with the
    /// `config.json` and `tokenizer.json` of the model it was made from.
    pub fn load_container(
        container: impl AsRef<Path>,
        config_json: impl AsRef<Path>,
        tokenizer_json: impl AsRef<Path>,
        mode: Activations,
    ) -> Result<Self> {
        let tokenizer = SentenceTokenizer::from_file(tokenizer_json, super::DEFAULT_MAX_TOKENS)?;
        let config = BertConfig::load(config_json)?;
        let model = CompressedModel::load(container)?;
        let encoder = BertEncoder::from_weights(config, Weights::Container(&model), mode)?;
        Self::new(tokenizer, encoder, 32)
    }

    /// A dense model already in memory.
    pub fn from_model(tokenizer: SentenceTokenizer, config: BertConfig, model: &Model) -> Result<Self> {
        let encoder = BertEncoder::from_weights(config, Weights::Dense(model), Activations::Float)?;
        Self::new(tokenizer, encoder, 32)
    }

    /// The same encoder with another batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(SquishError::invalid("batch_size", 0, "must be at least 1"));
        }
        self.batch_size = batch_size;
        Ok(self)
    }

    /// Sentences per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &SentenceTokenizer {
        &self.tokenizer
    }

    /// The encoder.
    pub fn encoder(&self) -> &BertEncoder {
        &self.encoder
    }

    /// Packed batches of `ids` in serving order: longest first, `batch_size`
    /// per batch; with each batch, the input index of each of its sequences.
    pub fn plan(&self, ids: &[Vec<u32>]) -> Result<Vec<(TokenBatch, Vec<usize>)>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        order
            .chunks(self.batch_size)
            .map(|idx| {
                let seqs: Vec<&[u32]> = idx.iter().map(|&i| ids[i].as_slice()).collect();
                Ok((TokenBatch::new(&seqs)?, idx.to_vec()))
            })
            .collect()
    }

    /// Embeddings of token-id sequences, `[sequences, hidden]` in input order.
    pub fn embed_ids(&self, ids: &[Vec<u32>], exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        if ids.is_empty() {
            return Err(super::NnError::EmptyBatch.into());
        }
        let mut out = Array2::<f32>::zeros((ids.len(), self.encoder.config().hidden_size));
        for (batch, idx) in self.plan(ids)? {
            let e = self.encoder.embed(&batch, exec)?;
            for (row, &i) in e.rows().into_iter().zip(&idx) {
                out.row_mut(i).assign(&row);
            }
        }
        Ok(out)
    }

    /// Embeddings of `sentences`, `[sentences, hidden]` in input order, each
    /// of unit L2 norm. Rejects an empty batch and empty sentences.
    pub fn embed<S: AsRef<str> + Sync>(
        &self,
        sentences: &[S],
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let ids = self.tokenizer.encode_all(sentences, exec)?;
        self.embed_ids(&ids, exec)
    }
}
