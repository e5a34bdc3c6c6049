//! Range calibration: how the clip range of each parameter set is chosen.

use super::slice_ops::{min_max, sq_error, Grid};
use super::QuantizationError;
use crate::error::Result;

/// Smallest clip ratio [`Calibration::Mse`] tries.
pub const MSE_MIN_RATIO: f32 = 0.2;

/// How the range `(lo, hi)` of each parameter set (tensor, row or group) is
/// chosen before scales and zero-points are computed from it.
///
/// Values outside the chosen range are clamped to the nearest code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The observed minimum and maximum: nothing is clipped.
    MinMax,
    /// Clip the tails: `lo` is the `(100 − p)`-th and `hi` the `p`-th
    /// percentile of the set (nearest rank), `50 < p ≤ 100`. `Percentile(100.0)`
    /// equals min-max.
    Percentile(f32),
    /// MSE-optimal clipping: the min-max range scaled by the ratio
    /// `r = 1 − (1 − MSE_MIN_RATIO)·k/steps`, `k = 0..=steps`, that minimizes
    /// ‖w − ŵ‖² of the set. `k = 0` is min-max, so the error is never higher
    /// than min-max's. `steps ≥ 1`.
    Mse {
        /// Number of ratios tried below 1.
        steps: usize,
    },
}

impl Calibration {
    /// MSE-optimal clipping with 64 candidate ratios in `[0.2, 1]`.
    pub fn mse() -> Self {
        Calibration::Mse { steps: 64 }
    }

    /// Rejects out-of-range hyperparameters.
    pub(crate) fn check(&self) -> Result<()> {
        match *self {
            Calibration::MinMax => Ok(()),
            Calibration::Percentile(p) if p.is_finite() && p > 50.0 && p <= 100.0 => Ok(()),
            Calibration::Percentile(p) => Err(QuantizationError::PercentileOutOfRange(p).into()),
            Calibration::Mse { steps: 0 } => Err(QuantizationError::ZeroMseSteps.into()),
            Calibration::Mse { .. } => Ok(()),
        }
    }

    /// The range of one parameter set (`grid` is used by MSE clipping).
    pub(crate) fn range(&self, x: &[f32], grid: Grid) -> (f32, f32) {
        match *self {
            Calibration::MinMax => min_max(x),
            Calibration::Percentile(p) => percentile_range(x, p),
            Calibration::Mse { steps } => mse_range(x, grid, steps),
        }
    }
}

/// `(q_{1−p}, q_p)` by nearest rank.
fn percentile_range(x: &[f32], p: f32) -> (f32, f32) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    if p >= 100.0 {
        return min_max(x);
    }
    let n = x.len();
    let hi_rank = ((p as f64 / 100.0) * (n - 1) as f64).round() as usize;
    let lo_rank = n - 1 - hi_rank;
    let mut buf = x.to_vec();
    let (_, &mut hi, _) = buf.select_nth_unstable_by(hi_rank, f32::total_cmp);
    // Everything below hi_rank is now at most hi; the low rank lies there.
    let (_, &mut lo, _) = buf[..=hi_rank].select_nth_unstable_by(lo_rank, f32::total_cmp);
    (lo, hi)
}

/// The scaled min-max range with the smallest squared error.
fn mse_range(x: &[f32], grid: Grid, steps: usize) -> (f32, f32) {
    let (lo, hi) = min_max(x);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let mut best = (f64::INFINITY, (lo, hi));
    for k in 0..=steps {
        let r = 1.0 - (1.0 - MSE_MIN_RATIO) * k as f32 / steps as f32;
        let cand = (lo * r, hi * r);
        let (s, z) = grid.scale_zero_point(cand.0, cand.1);
        let e = sq_error(x, s, z as i32, grid);
        // Strict: ties keep the wider range (min-max first).
        if e < best.0 {
            best = (e, cand);
        }
    }
    best.1
}
