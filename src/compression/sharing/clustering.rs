//! [`Clustering`]: the result of a 1-D k-means.

use super::Histogram;

/// Sorted centroids and the contiguous runs of distinct values they serve.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// Centroids, increasing.
    pub centroids: Vec<f64>,
    /// `k + 1` offsets into the histogram's distinct values: cluster `t`
    /// holds `bounds[t]..bounds[t + 1]` (nearest-centroid assignment).
    pub bounds: Vec<usize>,
    /// Weighted squared error of the values against their centroids.
    pub sse: f64,
    /// Lloyd iterations (centroid updates) run; 0 for the exact DP.
    pub iterations: usize,
    /// Lloyd: the SSE after every assignment step (never increases). Empty for the DP.
    pub sse_history: Vec<f64>,
}

impl Clustering {
    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.centroids.len()
    }

    /// Centroids rounded to f32 (what a codebook stores).
    pub fn centroids_f32(&self) -> Vec<f32> {
        self.centroids.iter().map(|&c| c as f32).collect()
    }

    /// A clustering with every value at its nearest centroid and centroids at
    /// the means of their runs, from a partition of `hist` given by `bounds`.
    pub(crate) fn from_bounds(hist: &Histogram, bounds: Vec<usize>) -> Self {
        let centroids: Vec<f64> = bounds
            .windows(2)
            .map(|w| hist.segment_mean(w[0], w[1]))
            .collect();
        let sse = bounds
            .windows(2)
            .map(|w| hist.segment_cost(w[0], w[1]))
            .sum();
        Clustering {
            centroids,
            bounds,
            sse,
            iterations: 0,
            sse_history: Vec::new(),
        }
    }
}
