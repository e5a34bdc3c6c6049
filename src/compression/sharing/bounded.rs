//! The exact DP restricted to the splits that can be optimal.
//!
//! The full DP fills `k − 1` layers of `m` cells, yet on real weights each
//! optimal split lies in a narrow stretch of the sorted values. This module
//! finds those stretches with a bound that is cheap and provably safe, then
//! runs the same DP only there:
//!
//! 1. **Lower bound.** Cut the `m` sorted values into `B` equal bins. Removing
//!    values from a cluster never raises its SSE, so any partition costs at
//!    least the sum, over its clusters, of the SSE of the bins lying wholly
//!    inside the cluster (each split's bin dropped). Minimizing that over the
//!    bins the splits fall in is a DP over `B` bins instead of `m` values; run
//!    forward and backward, it gives for each split `l` and bin `t` a lower
//!    bound `LB[l][t]` on every partition whose split `l` lies in bin `t`.
//! 2. **Upper bound.** The coarse optimum's bin edges are a feasible
//!    partition; a few Lloyd steps from it give an SSE `U ≥` the optimum.
//! 3. **Windows.** Split `l` of an optimal partition can only lie in a bin
//!    with `LB[l][t] ≤ U`. The DP over those windows alone returns the exact
//!    optimum: every optimal partition stays feasible, and every partition it
//!    considers is a real one.
//!
//! On 1M Gaussian weights with k = 16 the windows hold a few percent of the
//! cells. When the bound prunes too little (or the input is small) the caller
//! falls back to the full DP.

use super::optimal::Prefix;
use super::{lloyd, Clustering, Histogram};
use crate::kernels::multiversion;

/// Distinct values per bin at each refinement: the first bound covers every
/// split position with coarse bins; each later one re-bins only the windows
/// the previous one left, with smaller bins (a tighter bound: it loses the
/// SSE of one bin per split).
const LEVELS: [usize; 2] = [256, 32];

/// Below this many distinct values the full DP is fast enough.
const MIN_VALUES: usize = 1 << 15;

/// Lloyd steps that polish each upper bound.
const POLISH: usize = 16;

/// Prefix sums at the bin edges: `cost(a, b)` is the SSE of bins `a..b`.
struct Bins {
    q0: Vec<f64>,
    q1: Vec<f64>,
    q2: Vec<f64>,
}

/// Inclusive window `(lo, hi)` per split.
type Windows = Vec<(usize, usize)>;

impl Bins {
    /// Bins of `c` with edges `edges`, forward or mirrored (bin `t` of the
    /// mirror is bin `B − 1 − t`).
    fn new(c: &Prefix, edges: &[usize], mirrored: bool) -> Self {
        let last = *edges.last().expect("at least one edge");
        let at = |p: &[f64]| -> Vec<f64> {
            if mirrored {
                edges.iter().rev().map(|&e| p[last] - p[e]).collect()
            } else {
                edges.iter().map(|&e| p[e]).collect()
            }
        };
        let (p0, p1, p2) = c.sums();
        Bins {
            q0: at(p0),
            q1: at(p1),
            q2: at(p2),
        }
    }

    fn len(&self) -> usize {
        self.q0.len() - 1
    }

    /// SSE of bins `a..b` (0 when empty).
    #[inline(always)]
    fn cost(&self, a: usize, b: usize) -> f64 {
        if b <= a {
            return 0.0;
        }
        let w = self.q0[b] - self.q0[a];
        let s = self.q1[b] - self.q1[a];
        ((self.q2[b] - self.q2[a]) - s * s / w).max(0.0)
    }

    /// The bound's forward layers: `f[l][t − win[l].0]` is the least cost of
    /// the clusters before split `l + 1` when that split lies in bin `t`,
    /// counting only whole bins (each split's bin dropped):
    /// `F[1][t] = cost(0, t)`, `F[l][t] = min_{t' ≤ t} F[l−1][t'] + cost(t' + 1, t)`
    /// with `t'` in the previous window.
    ///
    /// The cost is Monge, so the best `t'` does not decrease with `t`: divide
    /// and conquer. Each layer does not decrease in `t` either (windows start
    /// no earlier layer by layer, and `F[l][t] ≤ F[l−1][t]`), which ends each
    /// scan at the first `F[l−1][t']` at or above the best.
    fn forward(&self, win: &[(usize, usize)]) -> Vec<Vec<f64>> {
        let (lo, hi) = win[0];
        let mut f = vec![(lo..=hi).map(|t| self.cost(0, t)).collect::<Vec<_>>()];
        for w in win.windows(2) {
            let ((plo, phi), (lo, hi)) = (w[0], w[1]);
            let prev = f.last().expect("one layer");
            let mut cur = vec![0.0; hi + 1 - lo];
            let mut stack = vec![(lo, hi, plo, phi)];
            while let Some((tlo, thi, jlo, jhi)) = stack.pop() {
                let mid = (tlo + thi) / 2;
                let (mut best, mut bj) = (f64::INFINITY, jlo);
                for j in jlo..=jhi.min(mid) {
                    let pv = prev[j - plo];
                    if pv >= best {
                        break;
                    }
                    let v = pv + self.cost(j + 1, mid);
                    if v < best {
                        best = v;
                        bj = j;
                    }
                }
                cur[mid - lo] = best;
                if mid > tlo {
                    stack.push((tlo, mid - 1, jlo, bj));
                }
                if mid < thi {
                    stack.push((mid + 1, thi, bj, jhi));
                }
            }
            f.push(cur);
        }
        f
    }
}

/// Inclusive windows `[lo, hi]` of split positions (cluster starts) for
/// splits `1..k`, or `None` when bounding is not worth it here (small input,
/// many clusters, windows too wide to pay off, or over `memory` bytes).
pub(super) fn windows(h: &Histogram, c: &Prefix, k: usize, memory: usize) -> Option<Windows> {
    let m = c.len();
    if m < MIN_VALUES || k < 3 || 8 * k > m / LEVELS[0] {
        return None;
    }
    let win = windows_with(h, c, k, memory, &LEVELS)?;
    let cells: usize = win.iter().map(|&(a, b)| b + 1 - a).sum();
    (cells <= m * (k - 1) / 4).then_some(win)
}

/// [`windows`] with the given bin sizes, always bounding (`2 ≤ k ≤ m`).
/// `None` only when the cells exceed `memory` (or, through rounding, a
/// window comes out empty).
fn windows_with(
    h: &Histogram,
    c: &Prefix,
    k: usize,
    memory: usize,
    levels: &[usize],
) -> Option<Windows> {
    let m = c.len();
    let mut win: Windows = (1..k).map(|l| (l, m - (k - l))).collect();
    let mut upper = f64::INFINITY;
    // Rounding slack: costs are differences of prefix sums of size ~ cost(0, m).
    let slack = 1e-9 * c.cost(0, m).max(f64::MIN_POSITIVE);
    for &bin in levels {
        let edges = bin_edges(h.values(), bin);
        let nb = edges.len() - 1;
        // The bins each window touches (bin t holds values edges[t]..edges[t+1]).
        let of = |v: usize| edges.partition_point(|&e| e <= v) - 1;
        let bw: Windows = win.iter().map(|&(a, b)| (of(a), of(b))).collect();
        let cells: usize = bw.iter().map(|&(a, b)| b + 1 - a).sum();
        if 16 * cells > memory {
            return None;
        }
        let fwd = Bins::new(c, &edges, false);
        let f = fwd.forward(&bw);
        upper = upper.min(upper_bound(h, &fwd, &edges, &f, &bw));
        let limit = upper + slack;
        // Backward: the same recursion over the mirrored bins and windows.
        let mirror: Windows = bw
            .iter()
            .rev()
            .map(|&(a, b)| (nb - 1 - b, nb - 1 - a))
            .collect();
        let g = Bins::new(c, &edges, true).forward(&mirror);
        for l in 0..k - 1 {
            let (lo, hi) = bw[l];
            let (fl, gl, glo) = (&f[l], &g[k - 2 - l], mirror[k - 2 - l].0);
            let mut inside = (lo..=hi).filter(|&t| fl[t - lo] + gl[nb - 1 - t - glo] <= limit);
            let first = inside.next()?;
            let last = inside.next_back().unwrap_or(first);
            let (a, b) = win[l];
            win[l] = (edges[first].max(a), (edges[last + 1] - 1).min(b));
        }
        // Splits increase: split l > split l−1 ≥ lo[l−1], and split l < hi[l+1].
        for l in 1..k - 1 {
            win[l].0 = win[l].0.max(win[l - 1].0 + 1);
        }
        for l in (0..k - 2).rev() {
            win[l].1 = win[l].1.min(win[l + 1].1 - 1);
        }
        if win.iter().any(|&(a, b)| a > b) {
            return None;
        }
    }
    let cells: usize = win.iter().map(|&(a, b)| b + 1 - a).sum();
    (4 * cells <= memory).then_some(win)
}

/// Edges of bins over the sorted `values`: at most `bin` values a bin, and
/// none wider than `bin / len` of the range, so that sparse tails (where
/// dropping one bin would lose a large SSE) get small bins. At most about
/// `2·len/bin` bins.
fn bin_edges(values: &[f32], bin: usize) -> Vec<usize> {
    let m = values.len();
    let span = (values[m - 1] as f64 - values[0] as f64) * bin as f64 / m as f64;
    let mut edges = vec![0];
    let mut e = 0;
    while e < m {
        let stop = values[e] as f64 + span;
        let far = (e + bin).min(m);
        // Up to the first value past `stop`, within the next `bin` values.
        e = e + 1 + values[e + 1..far].partition_point(|&x| (x as f64) <= stop);
        edges.push(e);
    }
    edges
}

/// SSE of a real partition near the bound's optimum: the bin edges of the
/// best bound splits, polished by a few Lloyd steps.
fn upper_bound(h: &Histogram, bins: &Bins, edges: &[usize], f: &[Vec<f64>], bw: &Windows) -> f64 {
    let m = h.len();
    let (k, nb) = (bw.len() + 1, bins.len());
    // Backtrack the bound's DP: the last split's bin minimizes F + the last
    // cluster's bins; each earlier one minimizes F + the bins up to the next.
    let best = |l: usize, t: usize, end: usize| -> usize {
        let lo = bw[l].0;
        (lo..=t.min(bw[l].1))
            .min_by(|&a, &b| {
                let va = f[l][a - lo] + bins.cost(a + 1, end);
                let vb = f[l][b - lo] + bins.cost(b + 1, end);
                va.total_cmp(&vb)
            })
            .expect("a non-empty window")
    };
    let mut splits = vec![0usize; k - 1];
    let mut t = best(k - 2, nb - 1, nb);
    splits[k - 2] = t;
    for l in (0..k - 2).rev() {
        t = best(l, t, t);
        splits[l] = t;
    }
    // Bin edges as cluster starts, made strictly increasing.
    let mut bounds = vec![0usize];
    for (l, &t) in splits.iter().enumerate() {
        let prev = *bounds.last().expect("start");
        bounds.push(edges[t].max(prev + 1).min(m - (k - 1 - l)));
    }
    bounds.push(m);
    let start = Clustering::from_bounds(h, bounds);
    start.sse.min(lloyd(h, start.centroids, POLISH).sse)
}

/// The DP over the windows: cluster starts `s_1 < … < s_{k−1}` with `s_l` in
/// `win[l − 1]`, minimizing the total SSE. Each layer is the full DP's divide
/// and conquer over the window (the monotone best split holds on any
/// window); every optimal partition lies inside the windows, so the result
/// is the exact optimum.
///
/// The scan's early exit needs each layer to be non-decreasing in the split,
/// which the restricted layers still are because windows start strictly
/// later layer by layer: for `i ≥ s` in the previous window, `s − 1` is in it
/// too, and a last cluster of one value costs 0, so
/// `F[l](s) ≤ F[l−1](s − 1) ≤ F[l−1](i)`.
///
/// Compiled per tier (with AVX-512 the scan becomes 8-wide).
pub(super) fn solve_windows(c: &Prefix, win: &[(usize, usize)]) -> Vec<usize> {
    solve_windows_best(c, win)
}

multiversion! {
    fn solve_windows_best(c: &Prefix, win: &[(usize, usize)]) -> Vec<usize> => solve_windows_portable;
}

#[inline(always)]
fn solve_windows_portable(c: &Prefix, win: &[(usize, usize)]) -> Vec<usize> {
    let m = c.len();
    let (lo1, hi1) = win[0];
    let mut prev: Vec<f64> = (lo1..=hi1).map(|j| c.cost(0, j)).collect();
    // args[l][s − lo] = the best previous split for split l+2 at s.
    let mut args: Vec<Vec<u32>> = Vec::with_capacity(win.len());
    for w in win.windows(2) {
        let ((plo, phi), (lo, hi)) = (w[0], w[1]);
        let mut cur = vec![0.0; hi + 1 - lo];
        let mut arg = vec![0u32; hi + 1 - lo];
        let mut stack = vec![(lo, hi, plo, phi)];
        while let Some((ilo, ihi, jlo, jhi)) = stack.pop() {
            let mid = (ilo + ihi) / 2;
            let (best, bj) = c.scan_portable(&prev, plo, mid, jlo, jhi.min(mid - 1));
            cur[mid - lo] = best;
            arg[mid - lo] = bj as u32;
            if mid > ilo {
                stack.push((ilo, mid - 1, jlo, bj));
            }
            if mid < ihi {
                stack.push((mid + 1, ihi, bj, jhi));
            }
        }
        prev = cur;
        args.push(arg);
    }
    let (plo, phi) = *win.last().expect("at least one split");
    let mut s = c.scan_portable(&prev, plo, m, plo, phi).1;
    let mut starts = vec![s];
    for (l, arg) in args.iter().enumerate().rev() {
        s = arg[s - win[l + 1].0] as usize;
        starts.push(s);
    }
    starts.reverse();
    starts
}

#[cfg(test)]
mod tests {
    use super::super::optimal_with_layer;
    use super::super::DpLayer;
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal, StudentT};

    /// The bounded DP's SSE and splits, with the given bin sizes.
    fn bounded(h: &Histogram, k: usize, levels: &[usize]) -> (f64, Vec<usize>, Windows) {
        let c = Prefix::new(h, 0, h.len(), false);
        let win = windows_with(h, &c, k, usize::MAX, levels).expect("windows");
        let mut bounds = vec![0];
        bounds.extend(solve_windows(&c, &win));
        bounds.push(h.len());
        let sse = Clustering::from_bounds(h, bounds.clone()).sse;
        (sse, bounds, win)
    }

    /// Least SSE over every split of the sorted distinct values into `k` runs.
    fn brute_force(h: &Histogram, k: usize) -> f64 {
        fn go(h: &Histogram, start: usize, left: usize) -> f64 {
            let m = h.len();
            if left == 1 {
                return h.segment_cost(start, m);
            }
            (start + 1..=m - (left - 1))
                .map(|s| h.segment_cost(start, s) + go(h, s, left - 1))
                .fold(f64::INFINITY, f64::min)
        }
        go(h, 0, k)
    }

    fn sample(kind: usize, n: usize, rng: &mut StdRng) -> Vec<f32> {
        let t3 = StudentT::new(3.0f32).unwrap();
        let g = Normal::new(0.0f32, 1.0).unwrap();
        (0..n)
            .map(|_| match kind {
                0 => g.sample(rng),
                1 => t3.sample(rng),
                // Well-separated blobs: splits pinned in the gaps.
                2 => rng.random_range(0..5) as f32 * 10.0 + 0.1 * g.sample(rng),
                // Few distinct values: heavy duplicates.
                _ => (g.sample(rng) * 4.0).round() / 4.0,
            })
            .collect()
    }

    #[test]
    fn equals_brute_force_on_small_inputs() {
        let mut rng = StdRng::seed_from_u64(7);
        for trial in 0..300 {
            let n = rng.random_range(2..=11);
            let v = sample(trial % 4, n, &mut rng);
            let h = Histogram::new(&v).unwrap();
            let m = h.len();
            if m < 2 {
                continue;
            }
            for k in 2..=m {
                let want = brute_force(&h, k);
                for levels in [&[1usize][..], &[2, 1], &[3]] {
                    let (got, ..) = bounded(&h, k, levels);
                    assert!(
                        (got - want).abs() <= 1e-9 * want.max(1e-12),
                        "trial {trial} k {k} {levels:?}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn equals_full_dp_and_keeps_its_splits() {
        let mut rng = StdRng::seed_from_u64(11);
        for trial in 0..48 {
            let n = rng.random_range(200..3000);
            let v = sample(trial % 4, n, &mut rng);
            let h = if trial % 3 == 0 {
                let w: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..2.0)).collect();
                Histogram::weighted(&v, &w).unwrap()
            } else {
                Histogram::new(&v).unwrap()
            };
            let m = h.len();
            for k in [2usize, 3, 5, 9, 17, 33] {
                if k > m {
                    continue;
                }
                let full = optimal_with_layer(&h, k, usize::MAX, DpLayer::DivideAndConquer);
                for levels in [&[16usize, 4][..], &[8], &[32, 8, 2]] {
                    let (sse, bounds, win) = bounded(&h, k, levels);
                    assert!(
                        (sse - full.sse).abs() <= 1e-10 * full.sse.max(1e-12),
                        "trial {trial} k {k} {levels:?}: {sse} vs {}",
                        full.sse
                    );
                    if bounds == full.bounds {
                        continue;
                    }
                    // A tie: the full DP's partition is another optimum, which
                    // the windows must contain too.
                    for (l, &(a, b)) in win.iter().enumerate() {
                        assert!((a..=b).contains(&full.bounds[l + 1]), "trial {trial} k {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn default_plan_prunes_large_inputs_and_stays_exact() {
        let mut rng = StdRng::seed_from_u64(3);
        for kind in [0, 1] {
            let v = sample(kind, 50_000, &mut rng);
            let h = Histogram::new(&v).unwrap();
            let c = Prefix::new(&h, 0, h.len(), false);
            let k = 16;
            let win = windows(&h, &c, k, usize::MAX).expect("bounded");
            let cells: usize = win.iter().map(|&(a, b)| b + 1 - a).sum();
            assert!(4 * cells < h.len() * (k - 1), "{cells} cells");
            let got = super::super::optimal(&h, k, usize::MAX);
            let full = optimal_with_layer(&h, k, usize::MAX, DpLayer::DivideAndConquer);
            assert!((got.sse - full.sse).abs() <= 1e-12 * full.sse);
        }
    }
}
