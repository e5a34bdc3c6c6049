//! Initial centroids for Lloyd's algorithm.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::optimal::optimal_bounded;
use super::{DpLayer, Histogram, DEFAULT_DP_MEMORY};

/// Summary points of [`Init::Coarse`] (at least 16 per centroid).
pub const COARSE_POINTS: usize = 4096;
/// Density bins of [`Init::Companding`] (at least 16 per centroid).
pub const COMPANDING_BINS: usize = 4096;

/// How Lloyd's algorithm places its first centroids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Centroids spread with density ∝ p(x)^(1/3), where p is the weighted
    /// density of the values on [`COMPANDING_BINS`] (or 16·k) even bins: the
    /// density of an optimal quantizer at high resolution (Panter & Dite
    /// 1951). Centroid `t` sits at quantile `(t + ½)/k` of that density,
    /// interpolated within its bin. O(bins + k) after the sort; Lloyd from
    /// it ends within a few percent of the optimum (1M Gaussian weights,
    /// k = 256: 3 % above), where Lloyd from a linear or quantile start
    /// stalls far from it at large k. Deterministic, no seed.
    Companding,
    /// The exact optimum ([`optimal()`](super::optimal())) of a summary of
    /// the sorted values: at most [`COARSE_POINTS`] (or 16·k) runs of
    /// consecutive distinct values, cut at weighted quantiles, at even
    /// steps of the value range and at even steps of the distinct values,
    /// each run replaced by its weighted mean. Lloyd then refines it on
    /// every value. The default: Lloyd from it ends near the optimum (1M
    /// Gaussian weights, k = 256: 1.4 % above, against 3 % from
    /// [`Companding`](Init::Companding) and 180 % from a linear start);
    /// the DP over the summary costs O(k·m·log m). Deterministic, no seed.
    Coarse,
    /// Evenly spaced over `[min, max]` (Deep Compression found it best: it
    /// keeps centroids on the rare large weights).
    Linear,
    /// At the weighted quantiles `(t + ½)/k` (dense regions get more centroids).
    Density,
    /// k-means++ (D² sampling, Arthur & Vassilvitskii 2007) with a seed.
    KMeansPlusPlus {
        /// Seed of the sampler (`StdRng` of rand 0.9).
        seed: u64,
    },
}

impl Init {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Init::Companding => "companding".into(),
            Init::Coarse => "coarse".into(),
            Init::Linear => "linear".into(),
            Init::Density => "density".into(),
            Init::KMeansPlusPlus { seed } => format!("k-means++ seed {seed}"),
        }
    }

    /// `k` initial centroids (sorted) for the values of `hist`.
    pub fn centroids(&self, hist: &Histogram, k: usize) -> Vec<f64> {
        let v = hist.values();
        let (lo, hi) = (v[0] as f64, v[v.len() - 1] as f64);
        let mut c: Vec<f64> = match *self {
            Init::Linear => (0..k)
                .map(|t| lo + (hi - lo) * t as f64 / (k - 1).max(1) as f64)
                .collect(),
            Init::Density => {
                let total = hist.total_weight();
                (0..k)
                    .map(|t| {
                        let target = total * (t as f64 + 0.5) / k as f64;
                        // First value whose cumulative weight exceeds the target.
                        let mut a = 0;
                        let mut b = hist.len();
                        while a < b {
                            let m = (a + b) / 2;
                            if hist.segment_weight(0, m + 1) <= target {
                                a = m + 1;
                            } else {
                                b = m;
                            }
                        }
                        v[a.min(hist.len() - 1)] as f64
                    })
                    .collect()
            }
            Init::KMeansPlusPlus { seed } => plus_plus(hist, k, seed),
            Init::Coarse => coarse(hist, k),
            Init::Companding => companding(hist, k),
        };
        c.sort_by(f64::total_cmp);
        c
    }
}

/// Quantiles of the p^(1/3) density (see [`Init::Companding`]).
fn companding(hist: &Histogram, k: usize) -> Vec<f64> {
    let v = hist.values();
    let (lo, hi) = (v[0] as f64, v[v.len() - 1] as f64);
    if hi <= lo {
        return vec![lo; k];
    }
    let bins = COMPANDING_BINS.max(16 * k);
    let (p0, _, _) = hist.prefix();
    let width = (hi - lo) / bins as f64;
    // Weight in each bin (its share of the prefix weights), then ^(1/3).
    let mut prev = 0usize;
    let g: Vec<f64> = (1..=bins)
        .map(|b| {
            let end = if b == bins {
                hist.len()
            } else {
                hist.lower_bound(lo + width * b as f64)
            };
            let w = p0[end] - p0[prev];
            prev = end;
            w.cbrt()
        })
        .collect();
    let total: f64 = g.iter().sum();
    let mut c = Vec::with_capacity(k);
    let (mut b, mut below) = (0usize, 0.0f64);
    for t in 0..k {
        let target = total * (t as f64 + 0.5) / k as f64;
        while b + 1 < bins && below + g[b] <= target {
            below += g[b];
            b += 1;
        }
        let f = if g[b] > 0.0 {
            ((target - below) / g[b]).clamp(0.0, 1.0)
        } else {
            0.5
        };
        c.push(lo + width * (b as f64 + f));
    }
    c
}

/// The optimal centroids of a summary of `hist` (see [`Init::Coarse`]).
fn coarse(hist: &Histogram, k: usize) -> Vec<f64> {
    let len = hist.len();
    let m = COARSE_POINTS.max(16 * k);
    if len <= m {
        return optimal_bounded(hist, k, DEFAULT_DP_MEMORY, DpLayer::default()).centroids;
    }
    let third = m / 3;
    let (p0, _, _) = hist.prefix();
    let total = hist.total_weight();
    let v = hist.values();
    let (lo, hi) = (v[0] as f64, v[len - 1] as f64);
    let mut cuts: Vec<usize> = Vec::with_capacity(3 * third + 2);
    cuts.push(0);
    cuts.push(len);
    for j in 1..third {
        let f = j as f64 / third as f64;
        // Weighted quantile, value-range step, distinct-value step.
        cuts.push(p0.partition_point(|&w| w < total * f).min(len));
        cuts.push(hist.lower_bound(lo + (hi - lo) * f));
        cuts.push(j * len / third);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let (mut xs, mut ws) = (
        Vec::with_capacity(cuts.len()),
        Vec::with_capacity(cuts.len()),
    );
    for c in cuts.windows(2) {
        xs.push(hist.segment_mean(c[0], c[1]) as f32);
        ws.push(hist.segment_weight(c[0], c[1]) as f32);
    }
    match Histogram::weighted(&xs, &ws) {
        Ok(summary) if summary.len() >= k => {
            optimal_bounded(&summary, k, DEFAULT_DP_MEMORY, DpLayer::default()).centroids
        }
        // Means that round together in f32 (values packed within a few
        // ulps): the full optimum is affordable there.
        _ => optimal_bounded(hist, k, DEFAULT_DP_MEMORY, DpLayer::default()).centroids,
    }
}

/// D² sampling over the distinct values, each weighted by its total weight.
fn plus_plus(hist: &Histogram, k: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let v = hist.values();
    let w: Vec<f64> = (0..hist.len()).map(|i| hist.weight(i)).collect();
    let pick = |score: &[f64], rng: &mut StdRng| -> usize {
        let total: f64 = score.iter().sum();
        let mut r = rng.random::<f64>() * total;
        for (i, &s) in score.iter().enumerate() {
            if r < s {
                return i;
            }
            r -= s;
        }
        // Rounding left r ≥ 0: the last value with a positive score.
        score.iter().rposition(|&s| s > 0.0).unwrap_or(0)
    };
    let first = v[pick(&w, &mut rng)] as f64;
    let mut centroids = vec![first];
    let mut d2: Vec<f64> = v.iter().map(|&x| (x as f64 - first).powi(2)).collect();
    while centroids.len() < k {
        let score: Vec<f64> = d2.iter().zip(&w).map(|(d, w)| d * w).collect();
        if score.iter().all(|&s| s == 0.0) {
            break; // every distinct value is already a centroid
        }
        let c = v[pick(&score, &mut rng)] as f64;
        centroids.push(c);
        for (d, &x) in d2.iter_mut().zip(v) {
            *d = d.min((x as f64 - c).powi(2));
        }
    }
    while centroids.len() < k {
        centroids.push(first);
    }
    centroids
}
