//! Gradual pruning inside the training loop (Zhu & Gupta 2017).

use std::fmt;
use std::sync::Arc;

use super::TrainingError;
use crate::error::Result;
use crate::pruning::Schedule;

/// A sparsity target as a function of the optimizer step.
pub type SparsitySchedule = Arc<dyn Fn(usize) -> f64 + Send + Sync>;

/// Zhu & Gupta's cubic schedule: `s_t = s_f + (s_i − s_f)(1 − (t − t₀)/(t₁ − t₀))³`
/// for `t₀ ≤ t ≤ t₁`, 0 before and `s_f` after: prune fast while many
/// redundant weights remain, slowly near the target. A closure over
/// [`pruning::Schedule`](crate::pruning::Schedule) updated every step; any
/// other `Schedule` works too through [`from_schedule`].
///
/// ```
/// use squish::training::cubic_sparsity;
/// let s = cubic_sparsity(0.0, 0.8, 100, 1100).unwrap();
/// assert_eq!(s(0), 0.0);
/// assert!((s(600) - 0.7).abs() < 1e-12); // 0.8·(1 − 0.5³)
/// assert_eq!(s(5000), 0.8);
/// ```
pub fn cubic_sparsity(
    initial: f64,
    target: f64,
    start: usize,
    end: usize,
) -> Result<SparsitySchedule> {
    if end <= start {
        return Err(TrainingError::ScheduleEnd { start, end }.into());
    }
    let schedule = Schedule::cubic(target, (end - start) as u64)
        .initial(initial)
        .start(start as u64)
        .check()?;
    Ok(from_schedule(schedule))
}

/// A pruning [`Schedule`] as the per-step function the trainer queries.
pub fn from_schedule(schedule: Schedule) -> SparsitySchedule {
    Arc::new(move |t: usize| schedule.sparsity_at(t as u64))
}

/// Magnitude pruning of some layers to `schedule(step)` every `every` steps
/// while training; pruned weights stay at zero.
#[derive(Clone)]
pub struct GradualPruning {
    pub(crate) schedule: SparsitySchedule,
    pub(crate) every: usize,
    pub(crate) layers: Vec<usize>,
}

impl fmt::Debug for GradualPruning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GradualPruning")
            .field("every", &self.every)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl GradualPruning {
    /// Prunes `layers` following `schedule` (any `Fn(step) -> sparsity`)
    /// every `every` steps; `every` must be ≥ 1 and `layers` non-empty.
    pub fn new(schedule: SparsitySchedule, every: usize, layers: &[usize]) -> Result<Self> {
        if every == 0 {
            return Err(TrainingError::Zero("pruning interval `every`").into());
        }
        if layers.is_empty() {
            return Err(TrainingError::NoPrunedLayers.into());
        }
        Ok(GradualPruning {
            schedule,
            every,
            layers: layers.to_vec(),
        })
    }
}
