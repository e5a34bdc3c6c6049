//! Sparsity schedules a training loop queries once per step.

use super::magnitude::check_sparsity;
use super::PruningError;
use crate::error::Result;

/// Unchecked hyperparameters of the gradual cubic schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct CubicParams {
    initial: f64,
    target: f64,
    start: u64,
    steps: u64,
    every: u64,
}

impl CubicParams {
    /// Initial sparsity `s_i` reached at the start step (default 0).
    pub fn initial(mut self, s: f64) -> Self {
        self.initial = s;
        self
    }

    /// First pruning step `t0` (default 0).
    pub fn start(mut self, t0: u64) -> Self {
        self.start = t0;
        self
    }

    /// Prune every `Δt` steps (default 1).
    pub fn every(mut self, dt: u64) -> Self {
        self.every = dt;
        self
    }

    /// Validates: `0 ≤ s_i ≤ s_f < 1`, `n ≥ 1`, `Δt ≥ 1`.
    pub fn check(self) -> Result<Schedule> {
        check_sparsity(self.initial)?;
        check_sparsity(self.target)?;
        if self.target < self.initial {
            return Err(PruningError::ScheduleTarget {
                target: self.target,
                initial: self.initial,
            }
            .into());
        }
        if self.steps == 0 {
            return Err(PruningError::Zero("the cubic schedule's pruning steps n").into());
        }
        if self.every == 0 {
            return Err(PruningError::Zero("the pruning interval Δt (every)").into());
        }
        if self
            .steps
            .checked_mul(self.every)
            .and_then(|d| d.checked_add(self.start))
            .is_none()
        {
            return Err(PruningError::ScheduleOverflow { steps: self.steps }.into());
        }
        Ok(Schedule(Kind::Cubic(self)))
    }
}

/// The sparsity a layer should have at each training step.
///
/// * [`constant`](Schedule::constant): `s` from step 0 (prune once, then
///   fine-tune with the mask fixed).
/// * [`one_shot`](Schedule::one_shot): dense before step `t`, `s` from `t` on.
/// * [`cubic`](Schedule::cubic): the gradual schedule of Zhu & Gupta (2017),
///   `s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³`, updated at
///   `t = t0, t0 + Δt, …, t0 + nΔt` and held in between: 0 before `t0`,
///   `s_i` at `t0`, `s_f` from `t0 + nΔt` on; never decreasing.
///
/// ```
/// use squish::pruning::Schedule;
/// let s = Schedule::cubic(0.9, 10).start(100).every(5).check().unwrap();
/// assert_eq!(s.sparsity_at(0), 0.0);
/// assert_eq!(s.sparsity_at(100), 0.0);
/// assert!((s.sparsity_at(125) - 0.7875).abs() < 1e-12); // 0.9·(1 − 0.5³)
/// assert_eq!(s.sparsity_at(150), 0.9);
/// assert!(s.is_update_step(105) && !s.is_update_step(106));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule(Kind);

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Constant(f64),
    OneShot { at: u64, sparsity: f64 },
    Cubic(CubicParams),
}

impl Schedule {
    /// Constant sparsity `s` in [0, 1).
    pub fn constant(s: f64) -> Result<Self> {
        check_sparsity(s)?;
        Ok(Schedule(Kind::Constant(s)))
    }

    /// Sparsity `s` in [0, 1) applied at step `at`, dense before.
    pub fn one_shot(at: u64, s: f64) -> Result<Self> {
        check_sparsity(s)?;
        Ok(Schedule(Kind::OneShot { at, sparsity: s }))
    }

    /// Starts a cubic schedule to final sparsity `s_f` over `n` updates
    /// (`s_i = 0`, `t0 = 0`, `Δt = 1` unless set).
    pub fn cubic(target: f64, steps: u64) -> CubicParams {
        CubicParams {
            initial: 0.0,
            target,
            start: 0,
            steps,
            every: 1,
        }
    }

    /// The sparsity to enforce at training step `step`.
    pub fn sparsity_at(&self, step: u64) -> f64 {
        match &self.0 {
            Kind::Constant(s) => *s,
            Kind::OneShot { at, sparsity } => {
                if step >= *at {
                    *sparsity
                } else {
                    0.0
                }
            }
            Kind::Cubic(c) => {
                if step < c.start {
                    return 0.0;
                }
                // The last update step at or before `step`, counted in Δt.
                let k = ((step - c.start) / c.every).min(c.steps);
                if k == c.steps {
                    return c.target;
                }
                let frac = 1.0 - k as f64 / c.steps as f64;
                c.target + (c.initial - c.target) * frac * frac * frac
            }
        }
    }

    /// Whether the mask should be recomputed at `step` (the sparsity may
    /// change there).
    pub fn is_update_step(&self, step: u64) -> bool {
        match &self.0 {
            Kind::Constant(_) => step == 0,
            Kind::OneShot { at, .. } => step == *at,
            Kind::Cubic(c) => {
                step >= c.start
                    && (step - c.start).is_multiple_of(c.every)
                    && (step - c.start) / c.every <= c.steps
            }
        }
    }

    /// The sparsity once the schedule is over.
    pub fn final_sparsity(&self) -> f64 {
        match &self.0 {
            Kind::Constant(s) => *s,
            Kind::OneShot { sparsity, .. } => *sparsity,
            Kind::Cubic(c) => c.target,
        }
    }
}
