//! [`SentenceTokenizer`]: a Hugging Face `tokenizer.json` (the `tokenizers`
//! crate, pure Rust) set up as sentence-transformers uses it.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::NnError;
use crate::error::Result;
use crate::parallel::{map, ParallelExecutor};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Turns sentences into token ids: the model's normaliser, pre-tokenizer
/// and WordPiece from `tokenizer.json`, `[CLS] … [SEP]` added, no padding
/// (batches are packed, see [`TokenBatch`](super::TokenBatch)), truncation
/// to `max_tokens`.
#[derive(Clone)]
pub struct SentenceTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for SentenceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentenceTokenizer(max_tokens = {})", self.max_tokens)
    }
}

impl SentenceTokenizer {
    /// Reads `tokenizer.json`, turns its fixed padding off and truncates at
    /// `max_tokens` (≥ 2: room for `[CLS]` and `[SEP]`).
    pub fn from_file(path: impl AsRef<Path>, max_tokens: usize) -> Result<Self> {
        let path = path.as_ref();
        let err = |message: String| NnError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        if max_tokens < 2 {
            return Err(err(format!("max_tokens = {max_tokens} leaves no room for [CLS] and [SEP]")).into());
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        Ok(SentenceTokenizer { inner, max_tokens })
    }

    /// The truncation length.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of one sentence; rejects an empty or all-white-space one
    /// (`index` names it in the error).
    pub fn encode(&self, index: usize, sentence: &str) -> Result<Vec<u32>> {
        if sentence.trim().is_empty() {
            return Err(NnError::EmptySentence { index }.into());
        }
        let enc = self.inner.encode(sentence, true).map_err(|e| NnError::Encode {
            index,
            message: e.to_string(),
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of every sentence, one task per sentence on `exec`;
    /// rejects an empty batch.
    pub fn encode_all<S: AsRef<str> + Sync>(
        &self,
        sentences: &[S],
        exec: &dyn ParallelExecutor,
    ) -> Result<Vec<Vec<u32>>> {
        if sentences.is_empty() {
            return Err(NnError::EmptyBatch.into());
        }
        map(exec, sentences.len(), |i| self.encode(i, sentences[i].as_ref()))
            .into_iter()
            .collect()
    }
}

/// Splits raw input (a file, stdin) into sentences, one per non-blank line;
/// input that is not UTF-8 is an error naming the line and byte.
///
/// ```
/// use squish::nn::sentences_from_bytes;
/// assert_eq!(sentences_from_bytes(b"One.\n\nTwo.\r\n").unwrap(), vec!["One.", "Two."]);
/// assert!(sentences_from_bytes(b"ok\n\xff bad\n").is_err());
/// ```
pub fn sentences_from_bytes(bytes: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let s = std::str::from_utf8(line).map_err(|e| NnError::NotUtf8 {
            index: i,
            offset: e.valid_up_to(),
        })?;
        let s = s.trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err(NnError::EmptyBatch.into());
    }
    Ok(out)
}
