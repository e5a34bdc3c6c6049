//! Sorted unique values with weights and prefix sums: the workspace of every
//! 1-D k-means in this module.
//!
//! Sorting once turns 1-D k-means into arithmetic on prefix sums: the cost of
//! any run of consecutive values, or its mean, is O(1).

use super::SharingError;
use crate::error::{check_finite, check_non_empty, Result, SquishError};

/// The distinct values of a tensor in increasing order, each with its total
/// weight (its count, or the sum of its importances), and prefix sums of
/// weight, weight·x and weight·x² over them.
///
/// Values whose importance is zero are left out: they do not change a
/// weighted squared error. `-0.0` and `0.0` count as one value.
///
/// ```
/// use squish::compression::sharing::Histogram;
/// let h = Histogram::new(&[3.0, 1.0, 3.0, 2.0]).unwrap();
/// assert_eq!(h.values(), &[1.0, 2.0, 3.0]);
/// assert_eq!(h.weight(2), 2.0);
/// assert!((h.segment_cost(0, 3) - 2.75).abs() < 1e-12); // Σ(x − 2.25)²
/// ```
#[derive(Clone, Debug)]
pub struct Histogram {
    values: Vec<f32>,
    /// Prefix sums (length `len + 1`) over values shifted by `shift`.
    p0: Vec<f64>,
    p1: Vec<f64>,
    p2: Vec<f64>,
    /// The weighted mean; subtracted before summing to keep the sums small.
    shift: f64,
    count: usize,
}

/// Order-preserving map of a finite f32 to u32 (`-0.0` is folded to `0.0` by the caller).
#[inline]
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline]
fn unkey(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k })
}

/// LSD radix sort by a 32-bit key (three passes of 11, 11 and 10 bits).
///
/// The three digit histograms are counted in one read of the input, and a
/// pass where every element falls in one bucket is skipped: four reads and
/// at most three scatters in all.
pub(crate) fn radix_sort_by_key<T: Copy + Default>(v: &mut Vec<T>, key: impl Fn(&T) -> u32) {
    if v.len() < 512 {
        v.sort_unstable_by_key(|t| key(t));
        return;
    }
    const DIGITS: [(u32, usize); 3] = [(0, 11), (11, 11), (22, 10)];
    let mut counts = vec![0usize; 3 << 11];
    {
        let (c0, rest) = counts.split_at_mut(1 << 11);
        let (c1, c2) = rest.split_at_mut(1 << 11);
        for t in v.iter() {
            let k = key(t);
            c0[(k & 0x7FF) as usize] += 1;
            c1[((k >> 11) & 0x7FF) as usize] += 1;
            c2[(k >> 22) as usize] += 1;
        }
    }
    let mut buf = vec![T::default(); v.len()];
    for (d, &(shift, bits)) in DIGITS.iter().enumerate() {
        let mask = (1usize << bits) - 1;
        let c = &mut counts[d << 11..(d << 11) + (1 << bits)];
        if c.contains(&v.len()) {
            continue;
        }
        let mut sum = 0;
        for x in c.iter_mut() {
            let n = *x;
            *x = sum;
            sum += n;
        }
        for t in v.iter() {
            let b = (key(t) >> shift) as usize & mask;
            buf[c[b]] = *t;
            c[b] += 1;
        }
        std::mem::swap(v, &mut buf);
    }
}

impl Histogram {
    /// The histogram of `values`, each with weight 1. Rejects empty input and NaN/Inf.
    pub fn new(values: &[f32]) -> Result<Self> {
        check_non_empty("values", 1, values.len())?;
        check_finite("values", values)?;
        let mut keys: Vec<u32> = values.iter().map(|&x| key(x + 0.0)).collect();
        radix_sort_by_key(&mut keys, |&k| k);
        let shift = values.iter().map(|&x| x as f64).sum::<f64>() / values.len() as f64;
        Ok(Self::from_sorted_keys(keys, shift))
    }

    /// The histogram of `values` with per-value `importance` (finite, ≥ 0, not
    /// all zero). Values of importance 0 are left out.
    pub fn weighted(values: &[f32], importance: &[f32]) -> Result<Self> {
        check_non_empty("values", 1, values.len())?;
        check_finite("values", values)?;
        if importance.len() != values.len() {
            return Err(SquishError::shape(
                "importance",
                format!("{} weights", values.len()),
                format!("{} weights", importance.len()),
            ));
        }
        check_finite("importance", importance)?;
        if let Some(&bad) = importance.iter().find(|&&w| w < 0.0) {
            return Err(SharingError::NegativeImportance(bad).into());
        }
        let mut pairs: Vec<(u32, f32)> = values
            .iter()
            .zip(importance)
            .filter(|(_, &w)| w > 0.0)
            .map(|(&x, &w)| (key(x + 0.0), w))
            .collect();
        if pairs.is_empty() {
            return Err(SharingError::ZeroImportance.into());
        }
        radix_sort_by_key(&mut pairs, |p| p.0);
        let (sw, swx) = pairs.iter().fold((0.0f64, 0.0f64), |(a, b), &(k, w)| {
            (a + w as f64, b + w as f64 * unkey(k) as f64)
        });
        Ok(Self::from_sorted_runs(
            pairs.iter().map(|&(k, w)| (k, w as f64)),
            swx / sw,
            values.len(),
        ))
    }

    /// [`from_sorted_runs`](Self::from_sorted_runs) for unit weights: the
    /// same sums in the same order (so the same bits), without the pair
    /// stream, and with the distinct values written over the sorted keys (one
    /// allocation less: fresh pages cost a fault each).
    fn from_sorted_keys(mut keys: Vec<u32>, shift: f64) -> Self {
        let n = keys.len();
        let mut pre = Prefix::with_capacity(n + 1);
        let (mut s0, mut s1, mut s2) = (0.0f64, 0.0f64, 0.0f64);
        let (mut i, mut distinct) = (0, 0);
        while i < n {
            let k = keys[i];
            let d = unkey(k) as f64 - shift;
            let mut r = i;
            while r < n && keys[r] == k {
                s0 += 1.0;
                s1 += d;
                s2 += d * d;
                r += 1;
            }
            keys[distinct] = k;
            distinct += 1;
            pre.push(s0, s1, s2);
            i = r;
        }
        keys.truncate(distinct);
        // Same size and alignment: collected in place.
        let values: Vec<f32> = keys.into_iter().map(unkey).collect();
        // Many duplicates: give the spare capacity back.
        pre.into_histogram(values, shift, n, distinct < n / 2)
    }

    /// One pass over sorted `(key, weight)` pairs: merges equal keys and
    /// accumulates prefix sums about `shift`.
    fn from_sorted_runs(
        pairs: impl ExactSizeIterator<Item = (u32, f64)>,
        shift: f64,
        count: usize,
    ) -> Self {
        let cap = pairs.len() + 1;
        let mut values: Vec<f32> = Vec::with_capacity(cap);
        let mut pre = Prefix::with_capacity(cap);
        let (mut s0, mut s1, mut s2) = (0.0f64, 0.0f64, 0.0f64);
        let mut last = None;
        for (k, w) in pairs {
            let x = unkey(k);
            let d = x as f64 - shift;
            s0 += w;
            s1 += w * d;
            s2 += w * d * d;
            if last == Some(k) {
                pre.set_last(s0, s1, s2);
            } else {
                values.push(x);
                pre.push(s0, s1, s2);
                last = Some(k);
            }
        }
        pre.into_histogram(values, shift, count, true)
    }

    /// Prefix sums of weight, weight·(x − shift) and weight·(x − shift)²
    /// (`len + 1` entries each, starting at 0).
    pub(crate) fn prefix(&self) -> (&[f64], &[f64], &[f64]) {
        (&self.p0, &self.p1, &self.p2)
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Never true: a histogram holds at least one value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of input values (before merging duplicates).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The distinct values, increasing.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Total weight of distinct value `i`.
    pub fn weight(&self, i: usize) -> f64 {
        self.p0[i + 1] - self.p0[i]
    }

    /// Total weight of all values.
    pub fn total_weight(&self) -> f64 {
        self.p0[self.len()]
    }

    /// Weight of the distinct values `a..b`.
    #[inline]
    pub fn segment_weight(&self, a: usize, b: usize) -> f64 {
        self.p0[b] - self.p0[a]
    }

    /// Weighted mean of the distinct values `a..b` (`a < b`).
    #[inline]
    pub fn segment_mean(&self, a: usize, b: usize) -> f64 {
        (self.p1[b] - self.p1[a]) / (self.p0[b] - self.p0[a]) + self.shift
    }

    /// Weighted squared error of `a..b` about its mean (0 for an empty run).
    #[inline]
    pub fn segment_cost(&self, a: usize, b: usize) -> f64 {
        if b <= a {
            return 0.0;
        }
        let w = self.p0[b] - self.p0[a];
        let s = self.p1[b] - self.p1[a];
        ((self.p2[b] - self.p2[a]) - s * s / w).max(0.0)
    }

    /// Weighted squared error of `a..b` about the point `c`.
    #[inline]
    pub fn segment_cost_about(&self, a: usize, b: usize, c: f64) -> f64 {
        if b <= a {
            return 0.0;
        }
        let d = c - self.shift;
        let w = self.p0[b] - self.p0[a];
        let s = self.p1[b] - self.p1[a];
        ((self.p2[b] - self.p2[a]) - 2.0 * d * s + d * d * w).max(0.0)
    }

    /// Index of the first distinct value `>= x`.
    #[inline]
    pub fn lower_bound(&self, x: f64) -> usize {
        self.values.partition_point(|&v| (v as f64) < x)
    }

    /// Where each cluster starts when every value goes to its nearest of the
    /// sorted `centroids`: `k + 1` offsets, cluster `t` is `bounds[t]..bounds[t + 1]`.
    /// A value exactly halfway between two centroids goes to the upper one.
    pub fn assign(&self, centroids: &[f64]) -> Vec<usize> {
        let mut b = Vec::with_capacity(centroids.len() + 1);
        b.push(0);
        for w in centroids.windows(2) {
            b.push(self.lower_bound(0.5 * (w[0] + w[1])));
        }
        b.push(self.len());
        b
    }

    /// Weighted squared error of the partition `bounds` with `centroids`.
    pub fn partition_cost(&self, bounds: &[usize], centroids: &[f64]) -> f64 {
        centroids
            .iter()
            .enumerate()
            .map(|(t, &c)| self.segment_cost_about(bounds[t], bounds[t + 1], c))
            .sum()
    }

    /// Weighted squared error when every value goes to its nearest centroid
    /// (`centroids` need not be sorted).
    pub fn sse(&self, centroids: &[f64]) -> f64 {
        let mut c = centroids.to_vec();
        c.sort_by(f64::total_cmp);
        self.partition_cost(&self.assign(&c), &c)
    }
}

/// The three prefix-sum columns of a histogram being built, each starting
/// at 0.
struct Prefix {
    p0: Vec<f64>,
    p1: Vec<f64>,
    p2: Vec<f64>,
}

impl Prefix {
    fn with_capacity(cap: usize) -> Self {
        let mut p = Prefix {
            p0: Vec::with_capacity(cap),
            p1: Vec::with_capacity(cap),
            p2: Vec::with_capacity(cap),
        };
        p.push(0.0, 0.0, 0.0);
        p
    }

    fn push(&mut self, s0: f64, s1: f64, s2: f64) {
        self.p0.push(s0);
        self.p1.push(s1);
        self.p2.push(s2);
    }

    /// Overwrites the last sums (a run of an equal key goes on).
    fn set_last(&mut self, s0: f64, s1: f64, s2: f64) {
        let last = self.p0.len() - 1;
        (self.p0[last], self.p1[last], self.p2[last]) = (s0, s1, s2);
    }

    /// The histogram of `values` with these sums; `shrink` gives the spare
    /// capacity back.
    fn into_histogram(
        mut self,
        mut values: Vec<f32>,
        shift: f64,
        count: usize,
        shrink: bool,
    ) -> Histogram {
        if shrink {
            values.shrink_to_fit();
            self.p0.shrink_to_fit();
            self.p1.shrink_to_fit();
            self.p2.shrink_to_fit();
        }
        Histogram {
            values,
            p0: self.p0,
            p1: self.p1,
            p2: self.p2,
            shift,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_float_order() {
        let xs = [-3.5f32, -1.0, -1e-30, 0.0, 1e-30, 2.0, f32::MAX, f32::MIN];
        for &a in &xs {
            assert_eq!(unkey(key(a)), a);
            for &b in &xs {
                assert_eq!(a < b, key(a) < key(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn radix_sort_sorts() {
        let mut v: Vec<u32> = (0..5000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let mut w = v.clone();
        radix_sort_by_key(&mut v, |&k| k);
        w.sort_unstable();
        assert_eq!(v, w);
    }

    #[test]
    fn matches_a_sort_and_dedup_reference() {
        // Large enough for the radix path, with many repeats and both signs.
        let v: Vec<f32> = (0..20_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 20) as f32 - 2048.0) / 64.0)
            .collect();
        let h = Histogram::new(&v).unwrap();
        let mut s = v.clone();
        s.sort_by(f32::total_cmp);
        let mut want: Vec<(f32, f64)> = Vec::new();
        for x in s {
            match want.last_mut() {
                Some((y, c)) if *y == x => *c += 1.0,
                _ => want.push((x, 1.0)),
            }
        }
        assert!(want.len() < v.len() / 2);
        assert_eq!(h.len(), want.len());
        let ones = vec![1.0f32; v.len()];
        let w = Histogram::weighted(&v, &ones).unwrap();
        let (q0, q1, q2) = h.prefix();
        let (r0, r1, r2) = w.prefix();
        for (i, &(x, c)) in want.iter().enumerate() {
            assert_eq!(h.values()[i], x);
            assert_eq!(h.weight(i), c);
            // Same sums as the weighted path (which may differ in the shift's last bits).
            assert!((q0[i + 1] - r0[i + 1]).abs() < 1e-9);
            let (a, b) = (
                q1[i + 1] + q0[i + 1] * h.shift,
                r1[i + 1] + r0[i + 1] * w.shift,
            );
            assert!((a - b).abs() < 1e-6, "{a} {b}");
            assert!(q2[i + 1] >= 0.0 && r2[i + 1] >= 0.0);
        }
        assert!((h.segment_cost(0, h.len()) - w.segment_cost(0, w.len())).abs() < 1e-6);
    }

    #[test]
    fn merges_signed_zeros_and_counts() {
        let h = Histogram::new(&[-0.0, 0.0, 1.0]).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.weight(0), 2.0);
        assert_eq!(h.count(), 3);
    }
}
