//! The [`ParallelExecutor`] trait and its two executors.

use std::fmt;
use std::sync::Arc;

use super::team::Team;
use super::ParallelError;
use crate::error::{Result, SquishError};

/// Runs independent tasks, possibly at once.
///
/// Parallelism in squish is always an explicit parameter (faer's `Par` is the
/// model): kernels and passes take a `&dyn ParallelExecutor` and never spawn
/// threads of their own. Work is split into tasks whose boundaries do not
/// depend on the thread count, and every reduction runs in task order, so
/// results are bit-identical for any executor.
///
/// ```
/// use squish::parallel::{ParallelExecutor, Sequential, ThreadPool, map};
/// let pool = ThreadPool::new(2).unwrap();
/// let squares = map(&pool, 5, |i| i * i);
/// assert_eq!(squares, map(&Sequential, 5, |i| i * i));
/// assert_eq!(pool.threads(), 2);
/// ```
pub trait ParallelExecutor: Send + Sync + fmt::Debug {
    /// Number of worker threads (1 for sequential).
    fn threads(&self) -> usize;

    /// Calls `task(i)` once for every `i` in `0..tasks`, in any order and
    /// possibly concurrently; returns when all have finished.
    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync));

    /// Calls `f` once where rayon's parallel calls inside it (faer's
    /// `Par::rayon`) run on this executor's threads. The default runs it on
    /// the calling thread, where they go to rayon's global pool.
    fn install(&self, f: &(dyn Fn() + Sync)) {
        f()
    }
}

/// Runs every task on the calling thread, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl ParallelExecutor for Sequential {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(task);
    }
}

/// A pool of a chosen number of threads, counting the caller's: a call to
/// [`run`](ParallelExecutor::run) works on the calling thread and wakes
/// `threads − 1` workers that spin a short while for the next call before
/// they park, so a call costs about a microsecond, not a sleep and a
/// wake-up. A call made while another is in progress on the same pool (from
/// inside a task, or from another thread) runs on its own thread. faer's
/// rayon work ([`install`](ParallelExecutor::install)) gets a rayon pool of
/// the same size, never rayon's global one.
#[derive(Clone)]
pub struct ThreadPool {
    team: Arc<Team>,
    pool: Arc<rayon::ThreadPool>,
}

impl ThreadPool {
    /// A pool of `threads` workers (at least 1).
    pub fn new(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(SquishError::from(ParallelError::Zero {
                what: "threads",
                why: "a pool needs at least one thread",
            }));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("squish-{i}"))
            .build()
            .map_err(|e| ParallelError::PoolBuild {
                threads,
                detail: e.to_string(),
            })?;
        let team = Team::new(threads).map_err(|e| ParallelError::PoolBuild {
            threads,
            detail: e.to_string(),
        })?;
        Ok(ThreadPool {
            team: Arc::new(team),
            pool: Arc::new(pool),
        })
    }

    /// A pool with one worker per available core.
    pub fn all_cores() -> Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads())
    }
}

impl ParallelExecutor for ThreadPool {
    fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        self.team.run(tasks, task);
    }

    fn install(&self, f: &(dyn Fn() + Sync)) {
        self.pool.install(f);
    }
}
