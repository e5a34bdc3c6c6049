//! Exact optimal 1-D k-means by dynamic programming (Wang & Song 2011,
//! Ckmeans.1d.dp).
//!
//! In one dimension an optimal clustering splits the sorted values into
//! contiguous runs, so the best SSE of the first `i` distinct values in `q`
//! clusters is `D[q][i] = min_j D[q−1][j] + cost(j, i)`, where `cost(j, i)` is
//! the SSE of values `j..i` about their mean (O(1) from prefix sums). The cost
//! is a Monge array, so the best split `j` never decreases with `i` and each
//! layer's matrix `prev[j] + cost(j, i)` is totally monotone. One
//! layer ([`DpLayer::Smawk`]) finds all its row minima with SMAWK (Aggarwal,
//! Klawe, Moran, Shor & Wilber 1987) in O(m) cost evaluations for `m`
//! distinct values, O(k·m) in all. The alternative
//! ([`DpLayer::DivideAndConquer`]) recurses over `i` with the split range
//! narrowed on both sides, O(m log m) per layer, with a vectorized scan that
//! stops as soon as `D[q−1][j]` alone exceeds the best value found (exact: `D`
//! does not decrease in `j`) and Knuth's bound `opt[q−1][i] ≤ opt[q][i]` on
//! its left end. Both return the leftmost best split; the divide and conquer
//! is the default because it measured faster (see [`DpLayer`]).
//!
//! [`optimal()`] first bounds where the optimal splits can lie and fills only
//! those cells (the `bounded` module: exact, 2.3% of the cells on 1M
//! Gaussian weights at k = 16); [`optimal_with_layer`] always fills every cell.
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

use std::borrow::Cow;

use super::{bounded, Clustering, Histogram};
use crate::kernels::multiversion;

/// Prefix sums over a run of distinct values, in forward or reversed order:
/// `cost(j, i)` is the SSE of points `j..i` about their mean.
pub(super) struct Prefix<'h> {
    p0: Cow<'h, [f64]>,
    p1: Cow<'h, [f64]>,
    p2: Cow<'h, [f64]>,
}

impl<'h> Prefix<'h> {
    /// Values `a..b` of `h`, forward or reversed (borrowed when it is all of `h`, forward).
    pub(super) fn new(h: &'h Histogram, a: usize, b: usize, reversed: bool) -> Self {
        let (q0, q1, q2) = h.prefix();
        let pick = |q: &'h [f64]| -> Cow<'h, [f64]> {
            if reversed {
                // Sums over the last t values of a..b.
                (0..=b - a).map(|t| q[b] - q[b - t]).collect()
            } else if a == 0 {
                Cow::Borrowed(&q[..=b])
            } else {
                q[a..=b].iter().map(|&v| v - q[a]).collect()
            }
        };
        Prefix {
            p0: pick(q0),
            p1: pick(q1),
            p2: pick(q2),
        }
    }

    /// The three prefix sums (weight, weight·x, weight·x²).
    pub(super) fn sums(&self) -> (&[f64], &[f64], &[f64]) {
        (&self.p0, &self.p1, &self.p2)
    }

    pub(super) fn len(&self) -> usize {
        self.p0.len() - 1
    }

    #[inline(always)]
    pub(super) fn cost(&self, j: usize, i: usize) -> f64 {
        let w = self.p0[i] - self.p0[j];
        let s = self.p1[i] - self.p1[j];
        (self.p2[i] - self.p2[j]) - s * s / w
    }

    /// `min_{j ∈ lo..=hi} prev[j − off] + cost(j, i)` and its leftmost argmin
    /// (`prev` may hold a window of a layer starting at split `off`).
    ///
    /// Chunks of candidate splits: the costs and a lane-wise minimum are
    /// computed in loops the compiler vectorizes; only a chunk that improves
    /// on the best is searched for its first minimum (keeping the leftmost
    /// argmin). A chunk starting at a `prev` already at or above the best ends
    /// the scan (`prev` does not decrease and costs are ≥ 0).
    #[inline(always)]
    pub(super) fn scan_portable(
        &self,
        prev: &[f64],
        off: usize,
        i: usize,
        lo: usize,
        hi: usize,
    ) -> (f64, usize) {
        const CHUNK: usize = 64;
        const LANES: usize = 8;
        let (a0, a1, a2) = (self.p0[i], self.p1[i], self.p2[i]);
        let mut best = f64::INFINITY;
        let mut bj = lo;
        if hi - lo < 8 {
            // Most rows of a D&C layer have a handful of candidates: skip the chunk machinery.
            for (j, &pv) in (lo..=hi).zip(&prev[lo - off..=hi - off]) {
                let w = a0 - self.p0[j];
                let s = a1 - self.p1[j];
                let v = pv + ((a2 - self.p2[j]) - s * s / w);
                if v < best {
                    best = v;
                    bj = j;
                }
            }
            return (best, bj);
        }
        let mut buf = [0.0f64; CHUNK];
        let mut j = lo;
        while j <= hi {
            if prev[j - off] >= best {
                break;
            }
            let n = (hi + 1 - j).min(CHUNK);
            let (q0, q1, q2, pv) = (
                &self.p0[j..j + n],
                &self.p1[j..j + n],
                &self.p2[j..j + n],
                &prev[j - off..j - off + n],
            );
            for t in 0..n {
                let w = a0 - q0[t];
                let s = a1 - q1[t];
                buf[t] = pv[t] + ((a2 - q2[t]) - s * s / w);
            }
            let low = if n == CHUNK {
                let mut lanes = [f64::INFINITY; LANES];
                for c in buf.chunks_exact(LANES) {
                    for (l, &v) in lanes.iter_mut().zip(c) {
                        *l = if v < *l { v } else { *l };
                    }
                }
                lanes
                    .iter()
                    .fold(f64::INFINITY, |a, &v| if v < a { v } else { a })
            } else {
                buf[..n]
                    .iter()
                    .fold(f64::INFINITY, |a, &v| if v < a { v } else { a })
            };
            if low < best {
                best = low;
                bj = j + buf[..n].iter().position(|&v| v == low).unwrap_or(0);
            }
            j += n;
        }
        (best, bj)
    }
}

/// How each DP layer finds its row minima.
///
/// Both are exact (up to f64 rounding) and return the same leftmost best
/// split. SMAWK has the better bound, but its evaluations are scalar, jump
/// around memory and depend on each other's comparisons; the divide and
/// conquer scans runs of candidates 8 at a time, and was about 1.5x faster
/// at m = 1M, k = 16 on the development machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpLayer {
    /// The SMAWK algorithm (Aggarwal et al. 1987): O(m) cost evaluations per
    /// layer, O(k·m) in all.
    Smawk,
    /// Divide and conquer on the monotone split with a vectorized, early-stopping
    /// scan: O(m log m) per layer, but sequential, vectorized memory access.
    /// The default: measured faster than SMAWK at m = 1M here.
    #[default]
    DivideAndConquer,
}

/// One DP layer: `cur[i] = min_{j < i} prev[j] + cost(j, i)` for `i ∈ lo..=m`,
/// splits restricted to `j ≥ lo − 1`; records the leftmost best `j` in `arg`
/// (`arg[..lo]` is left alone).
fn layer(
    c: &Prefix,
    how: DpLayer,
    lo: usize,
    (prev, lower): (&[f64], &[u32]),
    cur: &mut [f64],
    arg: &mut [u32],
) {
    for v in cur[..lo].iter_mut() {
        *v = f64::INFINITY;
    }
    match how {
        DpLayer::Smawk => smawk_layer(c, prev, cur, arg, lo),
        DpLayer::DivideAndConquer => dc_layer(c, prev, cur, arg, lower, lo),
    }
}

multiversion! {
    /// Divide and conquer over `i` with the split range narrowed on both sides.
    ///
    /// `lower` holds the previous layer's best splits (empty for the first
    /// layer): with one cluster fewer the last cluster starts no later
    /// (`opt[q−1][i] ≤ opt[q][i]`, Knuth's bound for Monge costs), which trims
    /// the left end of each scan. Compiled per tier: with AVX-512 the scan's
    /// cost loop becomes 8-wide (one tier check per layer, not per row).
    fn dc_layer(c: &Prefix, prev: &[f64], cur: &mut [f64], arg: &mut [u32], lower: &[u32], lo: usize) => dc_layer_portable;
}

multiversion! {
    /// [`Prefix::scan_portable`] compiled per tier.
    fn scan_best(c: &Prefix, prev: &[f64], off: usize, i: usize, lo: usize, hi: usize) -> (f64, usize) => scan_any;
}

#[inline(always)]
fn scan_any(c: &Prefix, prev: &[f64], off: usize, i: usize, lo: usize, hi: usize) -> (f64, usize) {
    c.scan_portable(prev, off, i, lo, hi)
}

#[inline(always)]
fn dc_layer_portable(
    c: &Prefix,
    prev: &[f64],
    cur: &mut [f64],
    arg: &mut [u32],
    lower: &[u32],
    lo: usize,
) {
    let m = c.len();
    // Explicit stack of (ilo, ihi, jlo, jhi), inclusive.
    let mut stack = vec![(lo, m, lo - 1, m - 1)];
    while let Some((ilo, ihi, jlo, jhi)) = stack.pop() {
        if ilo > ihi {
            continue;
        }
        if jlo == jhi {
            // One candidate left for the whole block of rows (jlo < ilo here).
            for i in ilo..=ihi {
                cur[i] = prev[jlo] + c.cost(jlo, i);
                arg[i] = jlo as u32;
            }
            continue;
        }
        let mid = (ilo + ihi) / 2;
        let hi = jhi.min(mid - 1);
        let from = lower.get(mid).map_or(jlo, |&l| jlo.max(l as usize).min(hi));
        let (best, bj) = c.scan_portable(prev, 0, mid, from, hi);
        cur[mid] = best;
        arg[mid] = bj as u32;
        if mid > ilo {
            stack.push((ilo, mid - 1, jlo, bj));
        }
        stack.push((mid + 1, ihi, bj, jhi));
    }
}

/// The matrix SMAWK searches: rows `i`, columns `j` (split points), entry
/// `prev[j] + cost(j, i)`, and +∞ where `j ≥ i`.
///
/// Why SMAWK applies: for `j < i` the cost is a Monge array (the 1-D
/// squared-error cost satisfies the quadrangle inequality), and adding
/// `prev[j]` keeps it Monge. The +∞ entries fill the upper right (`j ≥ i`, a
/// staircase that moves right as `i` grows), which keeps the matrix totally
/// monotone: whenever `M[i][j] > M[i][j']` for `j < j'`, the entry `M[i][j']`
/// is finite, so all four entries of the 2×2 minor are finite and Monge.
struct Rows<'a> {
    pts: &'a [Pt],
    /// Row `r` of the current subproblem is `i = row0 + r·step`.
    row0: usize,
    step: usize,
}

/// Everything one cost evaluation reads about a split or row index, in one
/// 32-byte slot: SMAWK's accesses jump around, so one cache line instead of
/// four separate arrays.
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
struct Pt {
    p0: f64,
    p1: f64,
    p2: f64,
    prev: f64,
}

impl Rows<'_> {
    #[inline(always)]
    fn i(&self, r: usize) -> usize {
        self.row0 + r * self.step
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f64 {
        if j >= i {
            return f64::INFINITY;
        }
        let (a, b) = (&self.pts[i], &self.pts[j]);
        let w = a.p0 - b.p0;
        let s = a.p1 - b.p1;
        b.prev + ((a.p2 - b.p2) - s * s / w)
    }
}

/// SMAWK over rows `lo..=m` and columns `lo − 1..m`: leftmost row minima.
fn smawk_layer(c: &Prefix, prev: &[f64], cur: &mut [f64], arg: &mut [u32], lo: usize) {
    let m = c.len();
    let pts: Vec<Pt> = (0..=m)
        .map(|j| Pt {
            p0: c.p0[j],
            p1: c.p1[j],
            p2: c.p2[j],
            prev: prev[j],
        })
        .collect();
    let rows = Rows {
        pts: &pts,
        row0: lo,
        step: 1,
    };
    let cols: Vec<u32> = (lo as u32 - 1..m as u32).collect();
    smawk(&rows, m + 1 - lo, &cols, arg);
    for i in lo..=m {
        cur[i] = rows.at(i, arg[i] as usize);
    }
}

/// Leftmost minima of `nrows` rows of `a` over the increasing columns `cols`,
/// written to `arg[i]` for each row `i`.
fn smawk(a: &Rows, nrows: usize, cols: &[u32], arg: &mut [u32]) {
    if nrows == 0 {
        return;
    }
    // REDUCE: keep at most `nrows` columns that can still hold a leftmost
    // minimum. Column `s[t]` is dead for rows `< t`.
    let mut s: Vec<u32> = Vec::with_capacity(nrows.min(cols.len()));
    for &j in cols {
        while let Some(&top) = s.last() {
            let i = a.i(s.len() - 1);
            if a.at(i, top as usize) <= a.at(i, j as usize) {
                break;
            }
            s.pop();
        }
        if s.len() < nrows {
            s.push(j);
        }
    }
    // The odd rows, recursively.
    let odd = Rows {
        pts: a.pts,
        row0: a.row0 + a.step,
        step: a.step * 2,
    };
    smawk(&odd, nrows / 2, &s, arg);
    // The even rows lie between their odd neighbours' minima.
    let mut t = 0;
    for r in (0..nrows).step_by(2) {
        let i = a.i(r);
        let stop = if r + 1 < nrows {
            arg[a.i(r + 1)]
        } else {
            *s.last().expect("at least one column")
        };
        let mut bj = s[t];
        let mut best = a.at(i, bj as usize);
        while s[t] < stop {
            t += 1;
            let v = a.at(i, s[t] as usize);
            if v < best {
                best = v;
                bj = s[t];
            }
        }
        arg[i] = bj;
    }
}
/// `D[q][i]` for `i ∈ 0..=m` after `q` layers (∞ where `i < q`), keeping only two rows.
fn last_layer(c: &Prefix, q: usize, how: DpLayer) -> Vec<f64> {
    let m = c.len();
    let mut prev: Vec<f64> = (0..=m).map(|i| c.cost(0, i)).collect();
    prev[0] = 0.0;
    let mut cur = vec![0.0; m + 1];
    let mut arg = vec![0u32; m + 1];
    let mut lower = Vec::new();
    for l in 2..=q {
        layer(c, how, l, (&prev, &lower), &mut cur, &mut arg);
        std::mem::swap(&mut prev, &mut cur);
        if l == 2 {
            lower = vec![0u32; m + 1];
        }
        std::mem::swap(&mut arg, &mut lower);
    }
    prev
}

/// The optimal partition of `hist` into `k` clusters (`2 ≤ k ≤ hist.len()`,
/// checked by the caller), using at most about `memory` bytes for backtracking
/// before switching to Hirschberg's scheme.
///
/// On large inputs the DP runs only where a coarse lower bound says an
/// optimal split can lie (see the `bounded` module docs: exact, typically a
/// few percent of the cells); otherwise, or when the bound prunes too
/// little, it is [`optimal_with_layer`] and the default [`DpLayer`].
///
/// ```
/// use squish::compression::sharing::{optimal, Histogram};
/// let h = Histogram::new(&[0.0, 0.1, 0.2, 5.0, 5.1, 9.0]).unwrap();
/// let c = optimal(&h, 3, 1 << 20);
/// assert_eq!(c.bounds, vec![0, 3, 5, 6]);
/// assert!((c.sse - 0.025).abs() < 1e-6); // 0.02 + 0.005 + 0
/// ```
pub fn optimal(hist: &Histogram, k: usize, memory: usize) -> Clustering {
    optimal_bounded(hist, k, memory, DpLayer::default())
}

/// [`optimal()`] with `how` for the full DP when bounding does not apply.
pub(crate) fn optimal_bounded(
    hist: &Histogram,
    k: usize,
    memory: usize,
    how: DpLayer,
) -> Clustering {
    // Borrowed sums: nothing is built when bounding does not apply.
    let c = Prefix::new(hist, 0, hist.len(), false);
    if let Some(win) = bounded::windows(hist, &c, k, memory) {
        let mut bounds = vec![0];
        bounds.extend(bounded::solve_windows(&c, &win));
        bounds.push(hist.len());
        return Clustering::from_bounds(hist, bounds);
    }
    optimal_with_layer(hist, k, memory, how)
}

/// Old name of [`optimal_with_layer`].
#[deprecated(
    since = "0.2.0",
    note = "renamed `optimal_with_layer`: `_on` takes an executor, `_with_<what>` an explicit input"
)]
pub fn optimal_with(hist: &Histogram, k: usize, memory: usize, how: DpLayer) -> Clustering {
    optimal_with_layer(hist, k, memory, how)
}

/// The full DP over every cell with a chosen layer algorithm (both give the
/// optimum and check each other, and the bounded DP, in the tests).
pub fn optimal_with_layer(hist: &Histogram, k: usize, memory: usize, how: DpLayer) -> Clustering {
    let mut bounds = vec![0];
    solve(hist, 0, hist.len(), k, memory, how, &mut bounds);
    bounds.push(hist.len());
    Clustering::from_bounds(hist, bounds)
}

/// Appends the inner cluster starts of the best `q`-partition of `a..b` to `out`.
fn solve(
    h: &Histogram,
    a: usize,
    b: usize,
    q: usize,
    memory: usize,
    how: DpLayer,
    out: &mut Vec<usize>,
) {
    let m = b - a;
    if q <= 1 {
        return;
    }
    if q >= m {
        out.extend(a + 1..b);
        return;
    }
    let fwd = Prefix::new(h, a, b, false);
    if q.saturating_mul(m + 1).saturating_mul(4) <= memory || q == 2 {
        // Direct DP with backtracking.
        let mut args = vec![0u32; (q - 1) * (m + 1)];
        let mut prev: Vec<f64> = (0..=m).map(|i| fwd.cost(0, i)).collect();
        prev[0] = 0.0;
        let mut cur = vec![0.0; m + 1];
        for l in 2..=q {
            let (done, rest) = args.split_at_mut((l - 2) * (m + 1));
            let lower: &[u32] = if l >= 3 {
                &done[(l - 3) * (m + 1)..]
            } else {
                &[]
            };
            let row = &mut rest[..m + 1];
            if l == q {
                // Only i = m is needed in the last layer.
                let from = lower.get(m).map_or(l - 1, |&j| (j as usize).max(l - 1));
                row[m] = scan_best(&fwd, &prev, 0, m, from, m - 1).1 as u32;
            } else {
                layer(&fwd, how, l, (&prev, lower), &mut cur, row);
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
    let f = last_layer(&fwd, left, how);
    let g = last_layer(&Prefix::new(h, a, b, true), right, how);
    let mut best = f64::INFINITY;
    let mut split = left;
    for s in left..=m - right {
        let v = f[s] + g[m - s];
        if v < best {
            best = v;
            split = s;
        }
    }
    solve(h, a, a + split, left, memory, how, out);
    out.push(a + split);
    solve(h, a + split, b, right, memory, how, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row minima of one layer by scanning every split: the reference for both layers.
    fn naive_layer(c: &Prefix, prev: &[f64], lo: usize) -> Vec<(f64, u32)> {
        (lo..=c.len())
            .map(|i| {
                let mut best = (f64::INFINITY, 0u32);
                for (j, &pv) in prev.iter().enumerate().take(i).skip(lo - 1) {
                    let v = pv + c.cost(j, i);
                    if v < best.0 {
                        best = (v, j as u32);
                    }
                }
                best
            })
            .collect()
    }

    #[test]
    fn layers_match_naive_row_minima() {
        // Distinct, irregular values (no ties), several layers deep.
        let v: Vec<f32> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) % 10_007) as f32 / 97.0 - 40.0)
            .collect();
        let h = Histogram::new(&v).unwrap();
        let c = Prefix::new(&h, 0, h.len(), false);
        let m = c.len();
        let mut prev: Vec<f64> = (0..=m).map(|i| c.cost(0, i)).collect();
        prev[0] = 0.0;
        let mut lower: Vec<u32> = Vec::new();
        for lo in 2..=6 {
            let want = naive_layer(&c, &prev, lo);
            let mut next = None;
            for how in [DpLayer::Smawk, DpLayer::DivideAndConquer] {
                let mut cur = vec![0.0; m + 1];
                let mut arg = vec![0u32; m + 1];
                layer(&c, how, lo, (&prev, &lower), &mut cur, &mut arg);
                for (i, &(d, j)) in (lo..=m).zip(&want) {
                    assert_eq!(arg[i], j, "{how:?} layer {lo} row {i}");
                    assert!((cur[i] - d).abs() <= 1e-12 * d.abs().max(1.0));
                }
                next = Some(cur);
            }
            prev = next.unwrap();
            lower = (0..lo).map(|_| 0).chain(want.iter().map(|w| w.1)).collect();
        }
    }
}
