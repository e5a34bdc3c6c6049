//! Task parallelism: independent jobs (one per layer, one per setting of a
//! sweep) run at once, largest first, under a bound on the memory in flight,
//! each with its own outcome and progress events.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::{panic_message, ParallelError};
use super::ParallelExecutor;
use crate::error::{Result, SquishError};

/// What a task is called and how much memory it needs while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Shown in progress events and panic errors.
    pub name: String,
    /// Estimated peak working set in bytes; orders the tasks (largest first)
    /// and counts against the budget while the task runs.
    pub cost_bytes: usize,
}

impl TaskSpec {
    /// A task called `name` needing about `cost_bytes` bytes.
    pub fn new(name: impl Into<String>, cost_bytes: usize) -> Self {
        TaskSpec {
            name: name.into(),
            cost_bytes,
        }
    }
}

/// A progress event of a task-parallel run; events of different tasks may
/// arrive from different threads in any order.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A task started.
    Started {
        /// The task's index in the input.
        index: usize,
        /// Its name.
        name: String,
        /// Bytes in flight now, this task included.
        in_flight_bytes: usize,
    },
    /// A task finished (successfully or not).
    Finished {
        /// The task's index in the input.
        index: usize,
        /// Its name.
        name: String,
        /// Whether it returned `Ok`.
        ok: bool,
        /// How long it ran.
        elapsed: Duration,
        /// Tasks finished so far, this one included.
        done: usize,
        /// Tasks in the run.
        total: usize,
    },
}

/// A progress callback (the CLI turns it into a progress bar).
pub type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Sync);

/// The result of one task, in input order.
#[derive(Debug)]
pub struct TaskOutcome<T> {
    /// The task's name.
    pub name: String,
    /// Its result; a panic becomes [`ParallelError::TaskPanicked`].
    pub result: Result<T>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Unchecked settings of a [`TaskRunner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRunnerParams {
    budget: usize,
}

/// Runs independent tasks on an executor's workers, largest first, starting
/// a task only when its cost fits in the memory budget next to the tasks
/// already running.
///
/// A task costing more than the whole budget runs alone (so the bound in
/// flight is `max(budget, largest task)`). Each task's result is its own: an
/// error or a panic in one task leaves the others' results intact. Results
/// come back in input order, so they do not depend on the executor.
///
/// Tasks should do their own work on one thread (pass them `&Sequential`):
/// the workers are the executor's threads.
///
/// ```
/// use squish::parallel::{TaskRunner, TaskSpec, ThreadPool};
/// let specs: Vec<TaskSpec> = [3usize, 1, 2].iter().map(|&mb| TaskSpec::new(format!("job{mb}"), mb << 20)).collect();
/// let runner = TaskRunner::params().budget_bytes(4 << 20).check()?;
/// let out = runner.run(&ThreadPool::new(2)?, &specs, |i| Ok(specs[i].cost_bytes >> 20), None);
/// let sizes: Vec<usize> = out.into_iter().map(|o| o.result.unwrap()).collect();
/// assert_eq!(sizes, vec![3, 1, 2]); // input order, whatever ran first
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRunner {
    budget: usize,
}

impl Default for TaskRunner {
    /// No memory bound.
    fn default() -> Self {
        TaskRunner { budget: usize::MAX }
    }
}

impl TaskRunner {
    /// Starts a builder (no memory bound).
    pub fn params() -> TaskRunnerParams {
        TaskRunnerParams { budget: usize::MAX }
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Runs `work(i)` for every task of `specs` on `exec`'s workers; returns
    /// one outcome per task, in input order.
    pub fn run<T, F>(
        &self,
        exec: &dyn ParallelExecutor,
        specs: &[TaskSpec],
        work: F,
        progress: Option<Progress<'_>>,
    ) -> Vec<TaskOutcome<T>>
    where
        T: Send,
        F: Fn(usize) -> Result<T> + Sync,
    {
        let n = specs.len();
        // Largest first; ties in input order.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            specs[b]
                .cost_bytes
                .cmp(&specs[a].cost_bytes)
                .then(a.cmp(&b))
        });
        let state = Mutex::new(Queue {
            pending: order,
            in_flight: 0,
            running: 0,
            done: 0,
        });
        let freed = Condvar::new();
        let slots: Vec<Mutex<Option<TaskOutcome<T>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let workers = exec.threads().clamp(1, n.max(1));
        exec.run(workers, &|_| loop {
            let (i, in_flight) = {
                let mut q = state.lock().expect("scheduler lock");
                loop {
                    if q.pending.is_empty() {
                        return;
                    }
                    if let Some(i) = q.next_fitting(specs, self.budget) {
                        break (i, q.in_flight);
                    }
                    // Nothing fits next to the running tasks: wait for one to end.
                    q = freed.wait(q).expect("scheduler lock");
                }
            };
            let name = &specs[i].name;
            if let Some(p) = progress {
                p(ProgressEvent::Started {
                    index: i,
                    name: name.clone(),
                    in_flight_bytes: in_flight,
                });
            }
            let t0 = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| work(i))).unwrap_or_else(|payload| {
                Err(SquishError::from(ParallelError::TaskPanicked {
                    task: name.clone(),
                    message: panic_message(payload.as_ref()),
                }))
            });
            let elapsed = t0.elapsed();
            let ok = result.is_ok();
            *slots[i].lock().expect("slot lock") = Some(TaskOutcome {
                name: name.clone(),
                result,
                elapsed,
            });
            let done = {
                let mut q = state.lock().expect("scheduler lock");
                q.in_flight = q.in_flight.saturating_sub(specs[i].cost_bytes);
                q.running -= 1;
                q.done += 1;
                q.done
            };
            freed.notify_all();
            if let Some(p) = progress {
                p(ProgressEvent::Finished {
                    index: i,
                    name: name.clone(),
                    ok,
                    elapsed,
                    done,
                    total: n,
                });
            }
        });
        slots
            .into_iter()
            .map(|s| s.into_inner().expect("slot lock").expect("every task ran"))
            .collect()
    }

    /// Runs `job` on every item of `items` at once (e.g. a sweep over bit
    /// widths); every job is costed `cost_bytes(item)`.
    pub fn sweep<C, T, F>(
        &self,
        exec: &dyn ParallelExecutor,
        items: &[C],
        name: impl Fn(&C) -> String,
        cost_bytes: impl Fn(&C) -> usize,
        job: F,
        progress: Option<Progress<'_>>,
    ) -> Vec<TaskOutcome<T>>
    where
        C: Sync,
        T: Send,
        F: Fn(&C) -> Result<T> + Sync,
    {
        let specs: Vec<TaskSpec> = items
            .iter()
            .map(|c| TaskSpec::new(name(c), cost_bytes(c)))
            .collect();
        self.run(exec, &specs, |i| job(&items[i]), progress)
    }

    // `compress_layers` (a pipeline per layer) is defined with the pipeline,
    // in `crate::pipeline`, which sits above this leaf.
}

impl TaskRunnerParams {
    /// Bound on the summed `cost_bytes` of the tasks running at once.
    pub fn budget_bytes(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Validates: a budget of at least one byte.
    pub fn check(self) -> Result<TaskRunner> {
        if self.budget == 0 {
            return Err(SquishError::from(ParallelError::Zero {
                what: "budget_bytes",
                why: "a memory budget must allow at least one byte",
            }));
        }
        Ok(TaskRunner {
            budget: self.budget,
        })
    }
}

struct Queue {
    /// Task indices not started yet, largest first.
    pending: Vec<usize>,
    in_flight: usize,
    running: usize,
    done: usize,
}

impl Queue {
    /// Takes the largest pending task that fits in the budget next to the
    /// running ones (any task when none runs), and books its cost.
    fn next_fitting(&mut self, specs: &[TaskSpec], budget: usize) -> Option<usize> {
        let pos = if self.running == 0 {
            Some(0)
        } else {
            self.pending
                .iter()
                .position(|&i| self.in_flight.saturating_add(specs[i].cost_bytes) <= budget)
        }?;
        let i = self.pending.remove(pos);
        self.in_flight = self.in_flight.saturating_add(specs[i].cost_bytes);
        self.running += 1;
        Some(i)
    }
}
