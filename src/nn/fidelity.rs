//! Fidelity of compressed embeddings: cosine to the reference embeddings
//! and recall of nearest neighbours.

use ndarray::{ArrayView2, AsArray, Ix2};

/// How close one set of embeddings is to a reference set (rows paired).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fidelity {
    /// Mean cosine of paired rows.
    pub mean_cosine: f64,
    /// Smallest cosine of paired rows.
    pub min_cosine: f64,
    /// Mean over rows of |top-k(ref) ∩ top-k(test)| / k, the neighbours of
    /// each row among all other rows by cosine.
    pub recall_at_k: f64,
    /// The k of `recall_at_k`.
    pub k: usize,
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    d / (na * nb).max(1e-300)
}

fn top_k(e: &[Vec<f64>], i: usize, k: usize) -> Vec<usize> {
    let mut s: Vec<(f64, usize)> = (0..e.len())
        .filter(|&j| j != i)
        .map(|j| (cosine(&e[i], &e[j]), j))
        .collect();
    // Ties broken by index, so the set is well defined.
    s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    s.into_iter().take(k).map(|(_, j)| j).collect()
}

/// Compares `test` with `reference` (same shape, one embedding per row).
/// `k` is capped at `rows − 1`.
///
/// ```
/// use ndarray::array;
/// use squish::nn::fidelity;
/// let r = array![[1.0f32, 0.0], [0.0, 1.0], [0.7, 0.7]];
/// let f = fidelity(r.view(), r.view(), 1);
/// assert!((f.min_cosine - 1.0).abs() < 1e-12 && f.recall_at_k == 1.0);
/// ```
pub fn fidelity<'a>(
    reference: impl AsArray<'a, f32, Ix2>,
    test: impl AsArray<'a, f32, Ix2>,
    k: usize,
) -> Fidelity {
    let reference: ArrayView2<'a, f32> = reference.into();
    let test: ArrayView2<'a, f32> = test.into();
    assert_eq!(reference.dim(), test.dim(), "paired embeddings");
    let rows = |a: ArrayView2<f32>| -> Vec<Vec<f64>> {
        a.rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect()
    };
    let (r, t) = (rows(reference), rows(test));
    let n = r.len();
    let cos: Vec<f64> = r.iter().zip(&t).map(|(a, b)| cosine(a, b)).collect();
    let k = k.min(n.saturating_sub(1));
    let recall = if k == 0 {
        1.0
    } else {
        (0..n)
            .map(|i| {
                let a = top_k(&r, i, k);
                let b = top_k(&t, i, k);
                a.iter().filter(|j| b.contains(j)).count() as f64 / k as f64
            })
            .sum::<f64>()
            / n as f64
    };
    Fidelity {
        mean_cosine: cos.iter().sum::<f64>() / n.max(1) as f64,
        min_cosine: cos.iter().cloned().fold(f64::INFINITY, f64::min),
        recall_at_k: recall,
        k,
    }
}
