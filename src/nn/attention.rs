//! Multi-head self-attention over packed sequences.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::math::{exp_neg, max, sum, LANES};
use super::Linear;
use crate::error::{Result, SquishError};
use crate::kernels::multiversion;
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
pub fn attend<'a>(
    q: impl AsArray<'a, f32, Ix2>,
    k: impl AsArray<'a, f32, Ix2>,
    v: impl AsArray<'a, f32, Ix2>,
    segments: &[Range<usize>],
    heads: usize,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    let q: ArrayView2<'a, f32> = q.into();
    let k: ArrayView2<'a, f32> = k.into();
    let v: ArrayView2<'a, f32> = v.into();
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
    if segments.windows(2).all(|w| w[0].end <= w[1].start) {
        // Disjoint, in order (packed batches): each task writes its rows
        // and columns of `y` directly; rows outside every segment are zero.
        let len = tokens * hidden;
        let mut y = Vec::<f32>::with_capacity(len);
        let out = Out(y.as_mut_ptr());
        let mut prev = 0;
        for r in segments
            .iter()
            .cloned()
            .chain(std::iter::once(tokens..tokens))
        {
            if r.start > prev {
                // SAFETY: rows prev..r.start lie within the allocation.
                unsafe {
                    out.0
                        .add(prev * hidden)
                        .write_bytes(0, (r.start - prev) * hidden)
                };
            }
            prev = prev.max(r.end);
        }
        let out = &out;
        exec.run(segments.len() * heads, &|t| {
            let (seg, h) = (&segments[t / heads], t % heads);
            let part = head(qs, ks, vs, Head::new(hidden, seg, h, d, scale));
            for (i, row) in part.chunks_exact(d).enumerate() {
                // SAFETY: row seg.start + i < tokens, columns h·d..(h+1)·d;
                // segments are disjoint, so no other task writes them.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        row.as_ptr(),
                        out.0.add((seg.start + i) * hidden + h * d),
                        d,
                    )
                };
            }
        });
        // SAFETY: every element was written: rows of a segment by its
        // tasks (all heads), the others zeroed above.
        unsafe { y.set_len(len) };
        return Ok(Array2::from_shape_vec((tokens, hidden), y).expect("sizes match"));
    }
    let parts = map(exec, segments.len() * heads, |t| {
        let (seg, h) = (&segments[t / heads], t % heads);
        head(qs, ks, vs, Head::new(hidden, seg, h, d, scale))
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

/// The output shared by the tasks of [`attend`] (disjoint elements).
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements.
unsafe impl Sync for Out {}

/// Which block [`head`] computes: rows `start..start + n`, columns
/// `col..col + d` of `q`, `k`, `v` (row stride `hidden`), scores times `scale`.
#[derive(Clone, Copy)]
struct Head {
    hidden: usize,
    start: usize,
    n: usize,
    col: usize,
    d: usize,
    scale: f32,
}

impl Head {
    fn new(hidden: usize, seg: &Range<usize>, h: usize, d: usize, scale: f32) -> Self {
        Head {
            hidden,
            start: seg.start,
            n: seg.len(),
            col: h * d,
            d,
            scale,
        }
    }
}

multiversion! {
    /// One head of one sequence (see [`Head`]); `[n, d]` out.
    fn head(qs: &[f32], ks: &[f32], vs: &[f32], b: Head) -> Vec<f32> => head_generic;
}

/// Queries per block of [`head`].
const QB: usize = 4;

/// [`head`]: the keys transposed (`[d][n]`, `n` padded to whole [`LANES`]
/// with zeros) and the values padded to whole `LANES` columns, so that both
/// products run over vectors of 16 keys (scores) or 16 value columns
/// (output) held in registers, for [`QB`] queries at a time, with no
/// horizontal sums. Each query's arithmetic is the same whatever block it is
/// in: scores `scale·Σ_c q_c·k_c` (fused multiply-adds in order of `c`),
/// softmax over whole vectors, then `Σ_j (p_j/Σp)·v_j` (fused, in order of
/// `j`).
#[inline(always)]
fn head_generic(qs: &[f32], ks: &[f32], vs: &[f32], b: Head) -> Vec<f32> {
    let Head {
        hidden,
        start,
        n,
        col,
        d,
        scale,
    } = b;
    let mut out = vec![0.0f32; n * d];
    if n == 0 || d == 0 {
        return out;
    }
    let np = n.next_multiple_of(LANES);
    let dp = d.next_multiple_of(LANES);
    let at = |i: usize| (start + i) * hidden + col;
    let mut kt = vec![0.0f32; d * np];
    let mut vp = vec![0.0f32; n * dp];
    for j in 0..n {
        for (c, &v) in ks[at(j)..at(j) + d].iter().enumerate() {
            kt[c * np + j] = v;
        }
        vp[j * dp..j * dp + d].copy_from_slice(&vs[at(j)..at(j) + d]);
    }
    let mut s = vec![0.0f32; QB * np];
    // The output padded to whole blocks of queries and vectors of columns.
    let mut outp = vec![0.0f32; n.next_multiple_of(QB) * dp];
    for i0 in (0..n).step_by(QB) {
        // A block past the last query repeats it; those rows are dropped.
        let q: [&[f32]; QB] = std::array::from_fn(|u| {
            let i = (i0 + u).min(n - 1);
            &qs[at(i)..at(i) + d]
        });
        for jb in (0..np).step_by(LANES) {
            let mut acc = [[0.0f32; LANES]; QB];
            for c in 0..d {
                let k: &[f32; LANES] = kt[c * np + jb..][..LANES].try_into().expect("LANES");
                for u in 0..QB {
                    let qc = q[u][c];
                    for l in 0..LANES {
                        acc[u][l] = qc.mul_add(k[l], acc[u][l]);
                    }
                }
            }
            for (u, a) in acc.iter().enumerate() {
                for (o, &v) in s[u * np + jb..u * np + jb + LANES].iter_mut().zip(a) {
                    *o = v * scale;
                }
            }
        }
        for row in s.chunks_exact_mut(np) {
            // Padding repeats a real score (the maximum is unchanged), then
            // weighs nothing.
            let first = row[0];
            row[n..].fill(first);
            let m = max(row);
            row.iter_mut().for_each(|v| *v = exp_neg(*v - m));
            row[n..].fill(0.0);
            let inv = 1.0 / sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
        for db in (0..dp).step_by(LANES) {
            let mut acc = [[0.0f32; LANES]; QB];
            for j in 0..n {
                let v: &[f32; LANES] = vp[j * dp + db..][..LANES].try_into().expect("LANES");
                for u in 0..QB {
                    let w = s[u * np + j];
                    for l in 0..LANES {
                        acc[u][l] = w.mul_add(v[l], acc[u][l]);
                    }
                }
            }
            // Whole vectors into the padded output (a partial copy here
            // keeps the compiler from holding `acc` in registers).
            for (u, a) in acc.iter().enumerate() {
                let o: &mut [f32; LANES] = (&mut outp[(i0 + u) * dp + db..][..LANES])
                    .try_into()
                    .expect("LANES");
                *o = *a;
            }
        }
    }
    for (o, p) in out.chunks_exact_mut(d).zip(outp.chunks_exact(dp)) {
        o.copy_from_slice(&p[..d]);
    }
    out
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
    pub fn forward<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        segments: &[Range<usize>],
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
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
