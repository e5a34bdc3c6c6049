//! Initial centroids for Lloyd's algorithm.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Histogram;

/// How Lloyd's algorithm places its first centroids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
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
        };
        c.sort_by(f64::total_cmp);
        c
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
