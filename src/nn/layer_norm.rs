//! [`LayerNorm`] over the last axis, optionally fused with a residual add.

use ndarray::{Array1, Array2, ArrayView2, AsArray, Ix2};

use super::math::{fold, sum, LANES};
use crate::error::{check_finite, Result, SquishError};
use crate::kernels::multiversion;
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor};

/// `y = (x − mean)/√(var + eps)·γ + β` per row (biased variance, as PyTorch).
///
/// ```
/// use ndarray::array;
/// use squish::nn::LayerNorm;
/// use squish::parallel::Sequential;
/// let ln = LayerNorm::new(array![1.0f32, 1.0], array![0.0f32, 0.5], 1e-12)?;
/// let mut x = array![[1.0f32, 3.0]];
/// ln.forward_in_place(&mut x, &Sequential);
/// assert!((x[[0, 0]] + 1.0).abs() < 1e-6 && (x[[0, 1]] - 1.5).abs() < 1e-6);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerNorm {
    gamma: Array1<f32>,
    beta: Array1<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Checks that γ and β have one length, are finite, and `eps > 0`.
    pub fn new(gamma: Array1<f32>, beta: Array1<f32>, eps: f32) -> Result<Self> {
        if gamma.len() != beta.len() || gamma.is_empty() {
            return Err(SquishError::shape(
                "layer norm",
                format!("β with {} values", gamma.len()),
                format!("{} values", beta.len()),
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(SquishError::invalid(
                "layer_norm_eps",
                eps,
                "must be finite and > 0",
            ));
        }
        check_finite("layer norm γ", gamma.iter())?;
        check_finite("layer norm β", beta.iter())?;
        Ok(LayerNorm { gamma, beta, eps })
    }

    /// Width of the normalised axis.
    pub fn len(&self) -> usize {
        self.gamma.len()
    }

    /// Always false (checked in `new`).
    pub fn is_empty(&self) -> bool {
        self.gamma.is_empty()
    }

    fn parts(&self) -> (&[f32], &[f32]) {
        (
            self.gamma.as_slice().expect("owned"),
            self.beta.as_slice().expect("owned"),
        )
    }

    /// Normalises every row of `x` (width [`len`](Self::len)) in place.
    pub fn forward_in_place(&self, x: &mut Array2<f32>, exec: &dyn ParallelExecutor) {
        let w = self.len();
        assert_eq!(x.ncols(), w, "layer norm width");
        let data = x.as_slice_mut().expect("owned arrays are contiguous");
        let per = rows_per_task(w, 16 * 1024) * w;
        let (g, b) = self.parts();
        for_each_chunk_mut(exec, data, per, |_, c| {
            add_norm_rows(c, &[], g, b, self.eps)
        });
    }

    /// `x ← LayerNorm(x + residual)`: the post-norm residual block of BERT.
    pub fn add_forward_in_place<'a>(
        &self,
        x: &mut Array2<f32>,
        residual: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) {
        let residual: ArrayView2<'a, f32> = residual.into();
        assert_eq!(x.dim(), residual.dim(), "residual shape");
        let w = self.len();
        let res = residual.as_standard_layout();
        let res = res.as_slice().expect("standard layout");
        let data = x.as_slice_mut().expect("owned arrays are contiguous");
        let rows = rows_per_task(w, 16 * 1024);
        let (g, b) = self.parts();
        for_each_chunk_mut(exec, data, rows * w, |i, c| {
            let r0 = i * rows * w;
            add_norm_rows(c, &res[r0..r0 + c.len()], g, b, self.eps)
        });
    }
}

multiversion! {
    /// `x ← LayerNorm(x + residual)` on whole rows of `γ.len()` (no
    /// residual when `res` is empty).
    fn add_norm_rows(x: &mut [f32], res: &[f32], g: &[f32], b: &[f32], eps: f32) => add_norm_rows_generic;
}

#[inline(always)]
fn add_norm_rows_generic(x: &mut [f32], res: &[f32], g: &[f32], b: &[f32], eps: f32) {
    if !res.is_empty() {
        x.iter_mut().zip(res).for_each(|(v, &r)| *v += r);
    }
    let w = g.len();
    for r in x.chunks_exact_mut(w) {
        let n = w as f32;
        let mean = sum(r) / n;
        r.iter_mut().for_each(|v| *v -= mean);
        let mut sq = [0.0f32; LANES];
        let mut c = r.chunks_exact(LANES);
        for ch in &mut c {
            sq.iter_mut().zip(ch).for_each(|(a, &v)| *a += v * v);
        }
        let var = (fold(sq, |a, b| a + b) + c.remainder().iter().map(|v| v * v).sum::<f32>()) / n;
        let inv = 1.0 / (var + eps).sqrt();
        r.iter_mut()
            .zip(g.iter().zip(b))
            .for_each(|(v, (&g, &b))| *v = *v * inv * g + b);
    }
}
