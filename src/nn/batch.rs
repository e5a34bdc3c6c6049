//! [`TokenBatch`]: sequences of token ids packed end to end, with no padding.

use std::ops::Range;

use super::NnError;
use crate::error::Result;

/// Several token sequences packed into one block of rows: sequence `s`
/// occupies rows `segments()[s]`. Layers that work per token run over all
/// rows at once (one GEMM for the whole batch); attention stays inside each
/// segment (a block-diagonal mask), so no compute goes to padding.
///
/// ```
/// use squish::nn::TokenBatch;
/// let b = TokenBatch::new(&[vec![101, 7, 102], vec![101, 102]])?;
/// assert_eq!(b.tokens(), 5);
/// assert_eq!(b.segments(), &[0..3, 3..5]);
/// assert_eq!(b.positions().collect::<Vec<_>>(), vec![0, 1, 2, 0, 1]);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    ids: Vec<u32>,
    segments: Vec<Range<usize>>,
}

impl TokenBatch {
    /// Packs `sequences`; rejects an empty batch and empty sequences.
    pub fn new<S: AsRef<[u32]>>(sequences: &[S]) -> Result<Self> {
        if sequences.is_empty() {
            return Err(NnError::EmptyBatch.into());
        }
        let mut ids = Vec::with_capacity(sequences.iter().map(|s| s.as_ref().len()).sum());
        let mut segments = Vec::with_capacity(sequences.len());
        for (i, s) in sequences.iter().enumerate() {
            let s = s.as_ref();
            if s.is_empty() {
                return Err(NnError::EmptySentence { index: i }.into());
            }
            segments.push(ids.len()..ids.len() + s.len());
            ids.extend_from_slice(s);
        }
        Ok(TokenBatch { ids, segments })
    }

    /// All token ids, sequence after sequence.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Row range of each sequence.
    pub fn segments(&self) -> &[Range<usize>] {
        &self.segments
    }

    /// Total number of tokens (rows).
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Always false (checked in `new`).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Position of each token inside its sequence.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().flat_map(|r| 0..r.len())
    }

    /// Longest sequence.
    pub fn max_len(&self) -> usize {
        self.segments.iter().map(|r| r.len()).max().unwrap_or(0)
    }
}
