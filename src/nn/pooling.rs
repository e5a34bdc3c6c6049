//! Sentence embeddings from token states: mean pooling and L2 normalisation.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

/// Mean of each segment's rows, then scaled to unit L2 norm (norm clamped at
/// 1e-12, as `torch.nn.functional.normalize`): sentence-transformers'
/// `Pooling(mean)` + `Normalize` with padding excluded by the mask.
///
/// ```
/// use ndarray::array;
/// use squish::nn::mean_pool_normalize;
/// let h = array![[1.0f32, 0.0], [3.0, 0.0], [0.0, 2.0]];
/// let e = mean_pool_normalize(h.view(), &[0..2, 2..3]);
/// assert_eq!(e, array![[1.0f32, 0.0], [0.0, 1.0]]);
/// ```
pub fn mean_pool_normalize<'a>(
    hidden: impl AsArray<'a, f32, Ix2>,
    segments: &[Range<usize>],
) -> Array2<f32> {
    let hidden: ArrayView2<'a, f32> = hidden.into();
    let dim = hidden.ncols();
    let mut out = Array2::<f32>::zeros((segments.len(), dim));
    for (seg, mut row) in segments.iter().zip(out.rows_mut()) {
        let mut acc = vec![0.0f64; dim];
        for t in seg.clone() {
            acc.iter_mut()
                .zip(hidden.row(t))
                .for_each(|(a, &v)| *a += v as f64);
        }
        let n = seg.len().max(1) as f64;
        acc.iter_mut().for_each(|a| *a /= n);
        let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut()
            .zip(&acc)
            .for_each(|(r, &a)| *r = (a / norm) as f32);
    }
    out
}
