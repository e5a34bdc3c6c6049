//! Multi-head self-attention over packed sequences.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};

use super::math::{dot, exp_neg, max};
use super::Linear;
use crate::error::{Result, SquishError};
use crate::parallel::{map, ParallelExecutor};

/// Scaled dot-product attention of `heads` heads, each token attending to the
/// tokens of its own segment only (the block-diagonal form of a padding
/// mask). `q`, `k`, `v` are `[tokens, hidden]` with head `h` in columns
/// `h·d..(h+1)·d`; rows outside every segment (padding) come out zero.
///
/// One task per (segment, head), so the result does not depend on the
/// executor.
///
/// ```
/// use ndarray::array;
/// use squish::nn::attend;
/// use squish::parallel::Sequential;
/// // One head, two sequences of one token: each attends only to itself.
/// let q = array![[1.0f32], [1.0]];
/// let v = array![[2.0f32], [5.0]];
/// let y = attend(q.view(), q.view(), v.view(), &[0..1, 1..2], 1, &Sequential)?;
/// assert_eq!(y, v);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn attend(
    q: ArrayView2<f32>,
    k: ArrayView2<f32>,
    v: ArrayView2<f32>,
    segments: &[Range<usize>],
    heads: usize,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    let (tokens, hidden) = q.dim();
    if k.dim() != q.dim() || v.dim() != q.dim() {
        return Err(SquishError::shape(
            "attention q/k/v",
            format!("{tokens}x{hidden} each"),
            format!("q {:?}, k {:?}, v {:?}", q.dim(), k.dim(), v.dim()),
        ));
    }
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(SquishError::invalid(
            "heads",
            heads,
            format!("must divide the hidden size {hidden}"),
        ));
    }
    if let Some(r) = segments.iter().find(|r| r.start > r.end || r.end > tokens) {
        return Err(SquishError::invalid(
            "segments",
            format!("{r:?}"),
            format!("segments must lie within the {tokens} rows"),
        ));
    }
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (
        q.as_standard_layout(),
        k.as_standard_layout(),
        v.as_standard_layout(),
    );
    let (qs, ks, vs) = (
        q.as_slice().expect("standard"),
        k.as_slice().expect("standard"),
        v.as_slice().expect("standard"),
    );
    let parts = map(exec, segments.len() * heads, |t| {
        let (seg, h) = (&segments[t / heads], t % heads);
        let n = seg.len();
        // Head h of token i of this segment.
        let at = |i: usize| (seg.start + i) * hidden + h * d;
        // Keys of this head, contiguous, so each score is one short dot.
        let keys: Vec<&[f32]> = (0..n).map(|j| &ks[at(j)..at(j) + d]).collect();
        let mut out = vec![0.0f32; n * d];
        let mut p = vec![0.0f32; n];
        for i in 0..n {
            let qi = &qs[at(i)..at(i) + d];
            p.iter_mut()
                .zip(&keys)
                .for_each(|(s, kj)| *s = dot(qi, kj) * scale);
            let m = max(&p);
            p.iter_mut().for_each(|s| *s = exp_neg(*s - m));
            let inv = 1.0 / p.iter().sum::<f32>();
            let o = &mut out[i * d..(i + 1) * d];
            for (j, &pj) in p.iter().enumerate() {
                let w = pj * inv;
                o.iter_mut()
                    .zip(&vs[at(j)..at(j) + d])
                    .for_each(|(a, &b)| *a += w * b);
            }
        }
        out
    });
    let mut y = Array2::<f32>::zeros((tokens, hidden));
    for (t, part) in parts.into_iter().enumerate() {
        let (seg, h) = (&segments[t / heads], t % heads);
        for (i, row) in part.chunks_exact(d).enumerate() {
            y.row_mut(seg.start + i).as_slice_mut().expect("owned")[h * d..(h + 1) * d]
                .copy_from_slice(row);
        }
    }
    Ok(y)
}

/// BERT's self-attention block: query, key and value projections,
/// [`attend`], and the output projection (the residual and LayerNorm are
/// the caller's).
#[derive(Clone, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    heads: usize,
}

impl SelfAttention {
    /// Checks that the four projections are `[hidden, hidden]` and that
    /// `heads` divides `hidden`.
    pub fn new(
        query: Linear,
        key: Linear,
        value: Linear,
        output: Linear,
        heads: usize,
    ) -> Result<Self> {
        let hidden = query.in_features();
        for (name, l) in [
            ("query", &query),
            ("key", &key),
            ("value", &value),
            ("output", &output),
        ] {
            if l.shape() != (hidden, hidden) {
                return Err(SquishError::shape(
                    "self-attention projection",
                    format!("{name} of shape {hidden}x{hidden}"),
                    format!("{:?}", l.shape()),
                ));
            }
        }
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(SquishError::invalid(
                "heads",
                heads,
                format!("must divide the hidden size {hidden}"),
            ));
        }
        Ok(SelfAttention {
            query,
            key,
            value,
            output,
            heads,
        })
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// The block's output for packed `x: [tokens, hidden]`.
    pub fn forward(
        &self,
        x: ArrayView2<f32>,
        segments: &[Range<usize>],
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        self.forward_observed(x, segments, exec, &mut |_, _| {})
    }

    /// [`forward`](Self::forward), showing `observe` the inputs of the
    /// projections: `(0, x)` (query, key and value) and `(1, context)`
    /// (the output projection).
    pub(crate) fn forward_observed(
        &self,
        x: ArrayView2<f32>,
        segments: &[Range<usize>],
        exec: &dyn ParallelExecutor,
        observe: &mut dyn FnMut(usize, ArrayView2<f32>),
    ) -> Result<Array2<f32>> {
        observe(0, x);
        let q = self.query.forward(x, exec)?;
        let k = self.key.forward(x, exec)?;
        let v = self.value.forward(x, exec)?;
        let ctx = attend(q.view(), k.view(), v.view(), segments, self.heads, exec)?;
        observe(1, ctx.view());
        self.output.forward(ctx.view(), exec)
    }
}
