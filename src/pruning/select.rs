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
