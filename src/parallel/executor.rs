//! The [`ParallelExecutor`] trait and its two executors.

use std::fmt;
use std::sync::Arc;

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

/// A rayon thread pool of a chosen size, owned by the executor (never
/// rayon's global pool).
#[derive(Clone)]
pub struct ThreadPool {
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
        Ok(ThreadPool {
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
        use rayon::prelude::*;
        self.pool
            .install(|| (0..tasks).into_par_iter().for_each(task));
    }
}
