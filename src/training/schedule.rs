//! Gradual pruning inside the training loop (Zhu & Gupta 2017).

use std::fmt;
use std::sync::Arc;

use super::TrainingError;
use crate::error::Result;
use crate::pruning::Schedule;

/// A sparsity target as a function of the optimizer step: any closure, or a
/// pruning [`Schedule`] (the crate's one schedule type) through `.into()`.
pub type SparsitySchedule = Arc<dyn Fn(usize) -> f64 + Send + Sync>;

/// The trainer queries a pruning [`Schedule`] at each optimizer step.
impl From<Schedule> for SparsitySchedule {
    fn from(schedule: Schedule) -> Self {
        Arc::new(move |t: usize| schedule.sparsity_at(t as u64))
    }
}

/// Zhu & Gupta's cubic schedule from step `start` to `end`, as a closure.
/// Use [`Schedule::cubic`] directly: `Schedule::cubic(target, end - start)
/// .initial(initial).start(start).check()?` is the same schedule, and
/// [`GradualPruning::new`] takes it as it is.
#[deprecated(
    since = "0.2.0",
    note = "use squish::pruning::Schedule::cubic(..).check()? (the one schedule type); GradualPruning::new takes it directly"
)]
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
    Ok(schedule.into())
}

/// A pruning [`Schedule`] as the per-step function the trainer queries.
#[deprecated(
    since = "0.2.0",
    note = "use `schedule.into()` (From<Schedule> for SparsitySchedule)"
)]
pub fn from_schedule(schedule: Schedule) -> SparsitySchedule {
    schedule.into()
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
    pub fn new(
        schedule: impl Into<SparsitySchedule>,
        every: usize,
        layers: &[usize],
    ) -> Result<Self> {
        if every == 0 {
            return Err(TrainingError::Zero("pruning interval `every`").into());
        }
        if layers.is_empty() {
            return Err(TrainingError::NoPrunedLayers.into());
        }
        Ok(GradualPruning {
            schedule: schedule.into(),
            every,
            layers: layers.to_vec(),
        })
    }
}
