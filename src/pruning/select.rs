//! O(n) selection of the `k` smallest magnitudes: a radix histogram on the
//! bits of `|v|`, then an exact pass over the one bucket that holds the cut.
//!
//! For non-negative finite f32 the bit pattern orders like the value, so
//! `bits(v) & 0x7fff_ffff` is an integer key ordered like `|v|` (and `-0.0`
//! maps to the key of `+0.0`). Pruning order is ascending `(|v|, position)`:
//! among equal magnitudes the earlier element (lower flat index, earlier
//! segment) goes first.

use ndarray::{Array2, ArrayView2};

use crate::error::Result;
use crate::kernels::multiversion;
use crate::parallel::{map, ParallelExecutor};
use crate::pruning::PruningError;

/// Bits of the first radix pass: keys have 31 significant bits.
const HIGH_SHIFT: u32 = 20;
const HIGH_BINS: usize = 1 << (31 - HIGH_SHIFT);
/// Below this many elements the histogram costs more than it saves.
const SMALL: usize = 1 << 13;

#[inline]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// Which elements the `k` smallest magnitudes are, in compact form.
///
/// Every element with `|v| < threshold` is selected, and so are the first
/// `ties` elements (in position order) with `|v| == threshold`; nothing else.
///
/// ```
/// use squish::pruning::Selection;
/// let s = Selection::smallest(&[&[0.5f32, -0.1, 0.5, 0.2, 0.5]], 3);
/// assert_eq!((s.threshold(), s.below(), s.ties()), (0.5, 2, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selection {
    threshold: u32,
    below: usize,
    ties: usize,
    /// Elements equal to the threshold, selected or not.
    equal: usize,
}

impl Selection {
    /// Selects the `count` smallest `|v|` over the concatenation of
    /// `segments` (clamped to the total length), ties by position.
    /// Values must be finite (the callers check).
    pub fn smallest(segments: &[&[f32]], count: usize) -> Selection {
        let n: usize = segments.iter().map(|s| s.len()).sum();
        let count = count.min(n);
        if count == 0 {
            return Selection {
                threshold: 0,
                below: 0,
                ties: 0,
                equal: 0,
            };
        }
        if n <= SMALL {
            // Small inputs (rows of a per-row selection): select directly.
            let mut keys: Vec<u32> = segments
                .iter()
                .flat_map(|s| s.iter().map(|&v| key(v)))
                .collect();
            let (_, &mut t, _) = keys.select_nth_unstable(count - 1);
            let below = keys.iter().filter(|&&k| k < t).count();
            let equal = keys.iter().filter(|&&k| k == t).count();
            return Selection {
                threshold: t,
                below,
                ties: count - below,
                equal,
            };
        }
        // Pass 1: histogram of the top 11 key bits (8 KiB tables, L1-resident;
        // four of them so that runs of equal bins do not serialize).
        let mut hist = vec![0u32; 4 * HIGH_BINS];
        let mut spill = vec![0usize; HIGH_BINS];
        for s in segments {
            // Flush the u32 tables before they could overflow.
            for block in s.chunks(1 << 30) {
                let mut q = block.chunks_exact(4);
                for c in &mut q {
                    for (l, &v) in c.iter().enumerate() {
                        hist[l * HIGH_BINS + (key(v) >> HIGH_SHIFT) as usize] += 1;
                    }
                }
                for &v in q.remainder() {
                    hist[(key(v) >> HIGH_SHIFT) as usize] += 1;
                }
                for (b, sp) in spill.iter_mut().enumerate() {
                    *sp += (0..4)
                        .map(|l| hist[l * HIGH_BINS + b] as usize)
                        .sum::<usize>();
                }
                hist.fill(0);
            }
        }
        let hist = spill;
        let rank = count - 1; // 0-based rank of the last selected element
        let mut below = 0usize;
        let mut bin = 0usize;
        while below + hist[bin] <= rank {
            below += hist[bin];
            bin += 1;
        }
        // Pass 2: the keys of that bucket, then an exact selection among them.
        let mut cand: Vec<u32> = Vec::with_capacity(hist[bin]);
        for s in segments {
            cand.extend(
                s.iter()
                    .map(|&v| key(v))
                    .filter(|&k| (k >> HIGH_SHIFT) as usize == bin),
            );
        }
        let r = rank - below;
        let (_, &mut t, _) = cand.select_nth_unstable(r);
        let less = cand.iter().filter(|&&k| k < t).count();
        let equal = cand.iter().filter(|&&k| k == t).count();
        let below = below + less;
        Selection {
            threshold: t,
            below,
            ties: count - below,
            equal,
        }
    }

    /// [`smallest`](Self::smallest) over one slice with the work spread over
    /// `exec`: the same selection (same threshold, same ties), for any
    /// executor.
    ///
    /// A strided sample of the keys brackets the cut between two sampled
    /// magnitudes `lo ≤ hi`; one parallel pass over fixed chunks counts the
    /// keys below `lo`, equal to `lo` and equal to `hi`, and collects the few
    /// keys strictly between them; an exact selection among those gives the
    /// cut. When the sample misjudged the bracket (the cut lies outside it)
    /// the exact histogram selection runs instead, so the result never
    /// depends on the sample, only the time does.
    ///
    /// ```
    /// use squish::parallel::{Sequential, ThreadPool};
    /// use squish::pruning::Selection;
    /// let v: Vec<f32> = (0..300_000u64).map(|i| ((i * 7919) % 1000) as f32 - 500.0).collect();
    /// let pool = ThreadPool::new(2)?;
    /// let s = Selection::smallest_on(&v, 200_000, &pool);
    /// assert_eq!(s, Selection::smallest(&[&v], 200_000));
    /// assert_eq!(s, Selection::smallest_on(&v, 200_000, &Sequential));
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn smallest_on(data: &[f32], count: usize, exec: &dyn ParallelExecutor) -> Selection {
        let n = data.len();
        let count = count.min(n);
        if count == 0 || n < SAMPLED_MIN {
            return Selection::smallest(&[data], count);
        }
        let rank = count - 1;
        let (lo, hi) = bracket(data, rank);
        let chunks = n.div_ceil(PASS_CHUNK);
        let parts = map(exec, chunks, |c| {
            let s = &data[c * PASS_CHUNK..((c + 1) * PASS_CHUNK).min(n)];
            let mut band = Vec::new();
            let counts = band_pass(s, lo, hi, &mut band);
            (counts, band)
        });
        let (mut lt, mut eq_lo, mut eq_hi) = (0usize, 0usize, 0usize);
        for ((a, b, c), _) in &parts {
            lt += a;
            eq_lo += b;
            eq_hi += c;
        }
        if lo == hi {
            eq_hi = 0; // counted once, as `eq_lo`
        }
        let strict: usize = parts.iter().map(|(_, b)| b.len()).sum();
        if rank < lt || rank >= lt + eq_lo + strict + eq_hi {
            // The sample's bracket missed the cut: select exactly.
            return Selection::smallest(&[data], count);
        }
        let (threshold, below, equal) = if rank < lt + eq_lo {
            (lo, lt, eq_lo)
        } else if rank < lt + eq_lo + strict {
            let mut cand: Vec<u32> = Vec::with_capacity(strict);
            for (_, b) in &parts {
                cand.extend_from_slice(b);
            }
            let r = rank - lt - eq_lo;
            let (_, &mut t, _) = cand.select_nth_unstable(r);
            let less = cand.iter().filter(|&&k| k < t).count();
            let equal = cand.iter().filter(|&&k| k == t).count();
            (t, lt + eq_lo + less, equal)
        } else {
            (hi, lt + eq_lo + strict, eq_hi)
        };
        Selection {
            threshold,
            below,
            ties: count - below,
            equal,
        }
    }

    /// The raw key of the threshold (`|v|`'s bits).
    pub(crate) fn threshold_key(&self) -> u32 {
        self.threshold
    }

    /// Whether some elements equal to the threshold survive (then the
    /// first [`ties`](Self::ties) of them, in position order, are pruned).
    pub(crate) fn splits_ties(&self) -> bool {
        self.equal != self.ties
    }

    /// The magnitude at the cut (0 when nothing is selected).
    pub fn threshold(&self) -> f32 {
        f32::from_bits(self.threshold)
    }

    /// Number of selected elements strictly below the threshold.
    pub fn below(&self) -> usize {
        self.below
    }

    /// Number of selected elements equal to the threshold (the first ones).
    pub fn ties(&self) -> usize {
        self.ties
    }

    /// Total number selected.
    pub fn count(&self) -> usize {
        self.below + self.ties
    }

    /// Writes `keep[i] = !selected(i)` for every element of the
    /// concatenation, segment by segment; `keep` has one slice per segment.
    pub fn write_keep(&self, segments: &[&[f32]], keep: &mut [&mut [bool]]) {
        if self.count() == 0 {
            keep.iter_mut().for_each(|k| k.fill(true));
            return;
        }
        let t = self.threshold;
        // Vectorizable pass: keep exactly what is above the threshold…
        for (s, k) in segments.iter().zip(keep.iter_mut()) {
            for (&v, kk) in s.iter().zip(k.iter_mut()) {
                *kk = key(v) > t;
            }
        }
        if self.equal == self.ties {
            return;
        }
        // …then give back the elements at the threshold past the first `ties`.
        let mut ties_left = self.ties;
        for (s, k) in segments.iter().zip(keep.iter_mut()) {
            for (&v, kk) in s.iter().zip(k.iter_mut()) {
                if key(v) == t {
                    if ties_left > 0 {
                        ties_left -= 1;
                    } else {
                        *kk = true;
                    }
                }
            }
        }
    }

    /// Number of selected elements in each segment.
    pub fn per_segment(&self, segments: &[&[f32]]) -> Vec<usize> {
        let t = self.threshold;
        let mut ties_left = self.ties;
        segments
            .iter()
            .map(|s| {
                let (lt, eq) = s.iter().fold((0usize, 0usize), |(lt, eq), &v| {
                    let k = key(v);
                    (lt + (k < t) as usize, eq + (k == t) as usize)
                });
                let take = eq.min(ties_left);
                ties_left -= take;
                lt + take
            })
            .collect()
    }
}

/// Inputs shorter than this are selected by [`Selection::smallest`] directly.
const SAMPLED_MIN: usize = 1 << 18;
/// Elements per task of the parallel pass (fixed: results never depend on
/// the thread count).
const PASS_CHUNK: usize = 1 << 16;
/// Sampled runs of consecutive elements, and their length.
const SAMPLE_RUNS: usize = 512;
const SAMPLE_RUN: usize = 128;

/// Two keys `lo ≤ hi` from a sample of `data` that bracket the key of rank
/// `rank` with high probability (four standard deviations of the sample
/// quantile, and more).
fn bracket(data: &[f32], rank: usize) -> (u32, u32) {
    let n = data.len();
    let stride = n / SAMPLE_RUNS;
    let run = SAMPLE_RUN.min(stride);
    let mut sample: Vec<u32> = Vec::with_capacity(SAMPLE_RUNS * run);
    for r in 0..SAMPLE_RUNS {
        let start = r * stride + (stride - run) / 2;
        sample.extend(data[start..start + run].iter().map(|&v| key(v)));
    }
    let m = sample.len();
    let q = (rank as f64 + 0.5) / n as f64;
    let sd = (m as f64 * q * (1.0 - q)).sqrt();
    let margin = (4.0 * sd + 8.0).ceil() as usize;
    let centre = (q * m as f64) as usize;
    let lo_rank = centre.saturating_sub(margin);
    let hi_rank = (centre + margin).min(m - 1);
    let lo = if lo_rank == 0 {
        0
    } else {
        *sample.select_nth_unstable(lo_rank).1
    };
    let hi = if hi_rank == m - 1 {
        u32::MAX
    } else {
        *sample.select_nth_unstable(hi_rank).1
    };
    (lo, hi.max(lo))
}

multiversion! {
    /// Counts the keys of `s` below `lo`, equal to `lo` and equal to `hi`,
    /// and appends the keys strictly between them to `band` (in order).
    /// `s` is one task's chunk (shorter than 2³² elements).
    fn band_pass(s: &[f32], lo: u32, hi: u32, band: &mut Vec<u32>) -> (usize, usize, usize) => band_pass_generic;
}

#[inline(always)]
fn band_pass_generic(s: &[f32], lo: u32, hi: u32, band: &mut Vec<u32>) -> (usize, usize, usize) {
    const B: usize = 64;
    let (mut lt, mut eq_lo, mut eq_hi) = (0u32, 0u32, 0u32);
    let blocks = s.chunks_exact(B);
    let tail = blocks.remainder();
    for b in blocks {
        let mut mask = 0u64;
        for (i, &v) in b.iter().enumerate() {
            let k = key(v);
            lt += (k < lo) as u32;
            eq_lo += (k == lo) as u32;
            eq_hi += (k == hi) as u32;
            mask |= ((k > lo && k < hi) as u64) << i;
        }
        while mask != 0 {
            band.push(key(b[mask.trailing_zeros() as usize]));
            mask &= mask - 1;
        }
    }
    for &v in tail {
        let k = key(v);
        lt += (k < lo) as u32;
        eq_lo += (k == lo) as u32;
        eq_hi += (k == hi) as u32;
        if k > lo && k < hi {
            band.push(k);
        }
    }
    (lt as usize, eq_lo as usize, eq_hi as usize)
}

/// Keep-mask of a matrix with its `count` smallest `|v|` removed.
pub(crate) fn keep_mask_smallest(v: ArrayView2<f32>, count: usize) -> Array2<bool> {
    let v = v.as_standard_layout();
    let data = v.as_slice().expect("standard layout");
    let sel = Selection::smallest(&[data], count);
    let mut keep = vec![true; data.len()];
    sel.write_keep(&[data], &mut [&mut keep]);
    Array2::from_shape_vec(v.dim(), keep).expect("sizes match")
}

/// Keep-mask removing the `⌊s·len⌋` smallest of every row separately.
pub(crate) fn keep_mask_per_row(v: ArrayView2<f32>, sparsity: f64) -> Array2<bool> {
    let (rows, cols) = v.dim();
    let count = prune_count(sparsity, cols);
    let v = v.as_standard_layout();
    let data = v.as_slice().expect("standard layout");
    let mut keep = vec![true; rows * cols];
    for (row, k) in data.chunks(cols).zip(keep.chunks_mut(cols)) {
        Selection::smallest(&[row], count).write_keep(&[row], &mut [k]);
    }
    Array2::from_shape_vec((rows, cols), keep).expect("sizes match")
}

/// Checks that scores are non-negative (they are already finite).
pub(crate) fn check_non_negative(scores: &[f32]) -> Result<()> {
    match scores.iter().position(|&s| s < 0.0) {
        Some(index) => Err(PruningError::NegativeScore {
            index,
            value: scores[index].to_string(),
        }
        .into()),
        None => Ok(()),
    }
}

/// Number of weights removed at sparsity `s` from `n`: `⌊s·n⌋`.
///
/// A product within a relative 1e-9 of an integer counts as that integer, so
/// a decimal sparsity means what it says: `0.29` of 100 is 29, although the
/// f64 nearest 0.29 times 100 is 28.999…
pub fn prune_count(sparsity: f64, n: usize) -> usize {
    let x = sparsity * n as f64;
    let r = x.round();
    let c = if (x - r).abs() <= 1e-9 * x.max(1.0) {
        r
    } else {
        x.floor()
    };
    (c.max(0.0) as usize).min(n)
}
