//! Exact optimal 1-D k-means by dynamic programming (Wang & Song 2011,
//! Ckmeans.1d.dp).
//!
//! In one dimension an optimal clustering splits the sorted values into
//! contiguous runs, so the best SSE of the first `i` distinct values in `q`
//! clusters is `D[q][i] = min_j D[q−1][j] + cost(j, i)`, where `cost(j, i)` is
//! the SSE of values `j..i` about their mean (O(1) from prefix sums). The cost
//! is a Monge array, so the best split `j` never decreases with `i`; each
//! layer is solved by divide and conquer over `i` with the split range
//! narrowed on both sides: O(m log m) per layer for `m` distinct values,
//! O(k·m log m) in all. The scan also stops as soon as `D[q−1][j]` alone
//! exceeds the best value found (exact: `D` does not decrease in `j`).
//!
//! **What is exact.** The DP runs over the distinct values with their total
//! weights, which is lossless: equal values always share a cluster in some
//! optimal solution. The minimum is exact up to f64 rounding of the prefix
//! sums (computed about the weighted mean to limit cancellation).
//!
//! **Memory.** Backtracking needs the best split of every layer (`4·k·m`
//! bytes). Above a budget the solver switches to Hirschberg's divide and
//! conquer: it runs the DP forward for `k/2` clusters and backward for the
//! rest, picks the best meeting point and recurses on both halves — about
//! twice the time, O(m) memory.

use super::{Clustering, Histogram};

/// Split-cost oracle over a run of distinct values, forward or reversed.
trait Costs: Sync {
    fn len(&self) -> usize;
    /// SSE of points `j..i` (in this oracle's order) about their mean.
    fn cost(&self, j: usize, i: usize) -> f64;
}

struct Forward<'a> {
    h: &'a Histogram,
    a: usize,
    b: usize,
}

impl Costs for Forward<'_> {
    fn len(&self) -> usize {
        self.b - self.a
    }
    #[inline(always)]
    fn cost(&self, j: usize, i: usize) -> f64 {
        self.h.segment_cost(self.a + j, self.a + i)
    }
}

struct Backward<'a> {
    h: &'a Histogram,
    a: usize,
    b: usize,
}

impl Costs for Backward<'_> {
    fn len(&self) -> usize {
        self.b - self.a
    }
    #[inline(always)]
    fn cost(&self, j: usize, i: usize) -> f64 {
        self.h.segment_cost(self.b - i, self.b - j)
    }
}

/// One DP layer: `cur[i] = min_{j < i} prev[j] + cost(j, i)` for `i ∈ lo..=m`,
/// splits restricted to `j ≥ lo − 1`; records the leftmost best `j` in `arg`.
fn layer<C: Costs>(c: &C, prev: &[f64], cur: &mut [f64], mut arg: Option<&mut [u32]>, lo: usize) {
    let m = c.len();
    for v in cur[..lo].iter_mut() {
        *v = f64::INFINITY;
    }
    // Explicit stack of (ilo, ihi, jlo, jhi), inclusive.
    let mut stack = vec![(lo, m, lo - 1, m - 1)];
    while let Some((ilo, ihi, jlo, jhi)) = stack.pop() {
        if ilo > ihi {
            continue;
        }
        let mid = (ilo + ihi) / 2;
        let jmax = jhi.min(mid - 1);
        let mut best = f64::INFINITY;
        let mut bj = jlo;
        for (j, &p) in prev.iter().enumerate().take(jmax + 1).skip(jlo) {
            if p >= best {
                break; // prev is non-decreasing and costs are ≥ 0
            }
            let v = p + c.cost(j, mid);
            if v < best {
                best = v;
                bj = j;
            }
        }
        cur[mid] = best;
        if let Some(a) = arg.as_deref_mut() {
            a[mid] = bj as u32;
        }
        if mid > ilo {
            stack.push((ilo, mid - 1, jlo, bj));
        }
        stack.push((mid + 1, ihi, bj, jhi));
    }
}

/// `D[q][i]` for `i ∈ 0..=m` after `q` layers (∞ where `i < q`), keeping only two rows.
fn last_layer<C: Costs>(c: &C, q: usize) -> Vec<f64> {
    let m = c.len();
    let mut prev: Vec<f64> = (0..=m).map(|i| c.cost(0, i)).collect();
    let mut cur = vec![0.0; m + 1];
    for l in 2..=q {
        layer(c, &prev, &mut cur, None, l);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev
}

/// The optimal partition of `hist` into `k` clusters (`2 ≤ k ≤ hist.len()`,
/// checked by the caller), using at most about `memory` bytes for backtracking
/// before switching to Hirschberg's scheme.
pub fn optimal(hist: &Histogram, k: usize, memory: usize) -> Clustering {
    let mut bounds = vec![0];
    solve(hist, 0, hist.len(), k, memory, &mut bounds);
    bounds.push(hist.len());
    Clustering::from_bounds(hist, bounds)
}

/// Appends the inner cluster starts of the best `q`-partition of `a..b` to `out`.
fn solve(h: &Histogram, a: usize, b: usize, q: usize, memory: usize, out: &mut Vec<usize>) {
    let m = b - a;
    if q <= 1 {
        return;
    }
    if q >= m {
        out.extend(a + 1..b);
        return;
    }
    let fwd = Forward { h, a, b };
    if q.saturating_mul(m + 1).saturating_mul(4) <= memory || q == 2 {
        // Direct DP with backtracking.
        let mut args = vec![0u32; (q - 1) * (m + 1)];
        let mut prev: Vec<f64> = (0..=m).map(|i| fwd.cost(0, i)).collect();
        let mut cur = vec![0.0; m + 1];
        for l in 2..=q {
            let row = &mut args[(l - 2) * (m + 1)..(l - 1) * (m + 1)];
            if l == q {
                // Only i = m is needed in the last layer.
                let mut best = f64::INFINITY;
                for (j, &p) in prev.iter().enumerate().take(m).skip(l - 1) {
                    let v = p + fwd.cost(j, m);
                    if v < best {
                        best = v;
                        row[m] = j as u32;
                    }
                }
            } else {
                layer(&fwd, &prev, &mut cur, Some(row), l);
                std::mem::swap(&mut prev, &mut cur);
            }
        }
        let mut starts = Vec::with_capacity(q - 1);
        let mut i = m;
        for l in (2..=q).rev() {
            i = args[(l - 2) * (m + 1) + i] as usize;
            starts.push(a + i);
        }
        out.extend(starts.into_iter().rev());
        return;
    }
    // Hirschberg: best meeting point of a forward and a backward half.
    let left = q / 2;
    let right = q - left;
    let f = last_layer(&fwd, left);
    let g = last_layer(&Backward { h, a, b }, right);
    let mut best = f64::INFINITY;
    let mut split = left;
    for s in left..=m - right {
        let v = f[s] + g[m - s];
        if v < best {
            best = v;
            split = s;
        }
    }
    solve(h, a, a + split, left, memory, out);
    out.push(a + split);
    solve(h, a + split, b, right, memory, out);
}
