//! The fork-join team behind [`ThreadPool`](super::ThreadPool): the calling
//! thread and `threads − 1` workers that wait for the next call by spinning
//! briefly, then parking (OpenMP's model).
//!
//! rayon's `install` from a thread outside its pool queues the job, wakes a
//! worker and puts the caller to sleep until the job is done: about 20 µs a
//! call on the 2-core machines, where a 384 × 384 int8 product at batch 1
//! takes 2 µs. Here the caller works on the call's tasks at once and a
//! worker that is still spinning from the previous call joins within a
//! fraction of a microsecond, so a transformer's hundreds of small products
//! a sentence stop paying a wake-up each. micropool (external threads help,
//! spins before sleeping) aborts the process when a task panics, and
//! fork_union compiles C++ and spins until told to sleep; neither fits a
//! library.
//!
//! A call is published as a pointer to a [`Job`] on the caller's stack
//! under an odd `epoch`. A worker registers in `active`, then checks that
//! the epoch is still the one it saw; the caller, once every task is done,
//! makes the epoch even again and waits until `active` is zero, so no
//! worker touches the job after `run` returns.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next call before it parks: longer
/// than the gaps between a model's products, short enough that an idle
/// pool costs nothing.
const SPIN: Duration = Duration::from_micros(300);

/// A task with its borrow's lifetime erased while the call is published.
type Task = dyn Fn(usize) + Sync + 'static;

/// One call: tasks `0..tasks`, claimed `chunk` at a time.
struct Job {
    task: *const Task,
    tasks: usize,
    chunk: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// The first panic of a task, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job {
    /// Claims and runs chunks until none is left.
    fn work(&self) {
        // SAFETY: `task` outlives the call (see the module's protocol).
        let task = unsafe { &*self.task };
        loop {
            let lo = self.next.fetch_add(self.chunk, Relaxed);
            if lo >= self.tasks {
                return;
            }
            let hi = (lo + self.chunk).min(self.tasks);
            for i in lo..hi {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(i))) {
                    self.panic
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(p);
                }
            }
            self.done.fetch_add(hi - lo, Release);
        }
    }
}

struct Shared {
    /// Odd while a call is open.
    epoch: AtomicU64,
    job: AtomicPtr<Job>,
    /// Workers inside the open call.
    active: AtomicUsize,
    /// Whether worker `i` is parked (or about to park).
    parked: Vec<AtomicBool>,
    stop: AtomicBool,
}

/// The calling thread plus `threads − 1` workers.
pub(super) struct Team {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
    /// Taken by the call in progress: a call made meanwhile (a nested one,
    /// or another thread's) runs its tasks on its own thread instead.
    busy: AtomicBool,
}

impl Team {
    /// A team of `threads` (≥ 1) counting the caller.
    pub(super) fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            active: AtomicUsize::new(0),
            parked: (1..threads).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
        });
        let mut team = Team {
            shared: shared.clone(),
            workers: Vec::new(),
            busy: AtomicBool::new(false),
        };
        for i in 1..threads {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("squish-{i}"))
                .spawn(move || worker(&shared, i - 1))?;
            // On an early return, `team` is dropped and stops the others.
            team.workers.push((handle.thread().clone(), handle));
        }
        Ok(team)
    }

    /// Calls `task(i)` for every `i` in `0..tasks` on the team, or on this
    /// thread alone while the team is busy; every task runs even when one
    /// panics, and the first panic is then re-raised here.
    pub(super) fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if tasks <= 1 || self.workers.is_empty() || self.busy.swap(true, Acquire) {
            (0..tasks).for_each(task);
            return;
        }
        let threads = self.workers.len() + 1;
        let job = Job {
            // SAFETY: the lifetime is erased only while the job is
            // published; `run` waits for every worker to leave it.
            task: unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &Task>(task) },
            tasks,
            // A few chunks per thread: contiguous work, little contention,
            // and room to even out a slow thread.
            chunk: (tasks / (4 * threads)).max(1),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        let s = &*self.shared;
        s.job.store(&job as *const Job as *mut Job, Relaxed);
        s.epoch.fetch_add(1, SeqCst);
        for (i, (thread, _)) in self.workers.iter().enumerate() {
            if s.parked[i].swap(false, SeqCst) {
                thread.unpark();
            }
        }
        job.work();
        let mut spins = 0u32;
        while job.done.load(Acquire) < tasks {
            pause(&mut spins);
        }
        s.epoch.fetch_add(1, SeqCst);
        while s.active.load(SeqCst) != 0 {
            pause(&mut spins);
        }
        self.busy.store(false, Release);
        if let Some(p) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, SeqCst);
        s.epoch.fetch_add(2, SeqCst);
        for (thread, _) in &self.workers {
            thread.unpark();
        }
        for (_, handle) in self.workers.drain(..) {
            // A worker never panics (tasks' panics are caught).
            let _ = handle.join();
        }
    }
}

/// Worker `i`'s loop: wait for a new odd epoch, join its call, repeat.
fn worker(s: &Shared, i: usize) {
    let mut seen = 0u64;
    loop {
        let e = wait(s, i, seen);
        if s.stop.load(Acquire) {
            return;
        }
        seen = e;
        s.active.fetch_add(1, SeqCst);
        if s.epoch.load(SeqCst) == e {
            // SAFETY: the epoch is still `e`, so the caller has not closed
            // the call and waits for `active` to drop before its job goes.
            unsafe { &*s.job.load(Relaxed) }.work();
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

/// One step of a spin-wait: a pause, and every 64th step a yield, so that
/// a pool with more threads than cores lets a preempted thread finish its
/// task.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// The next epoch after `seen` that is odd (a call is open), or any epoch
/// once the team stops: spins for [`SPIN`], then parks.
fn wait(s: &Shared, i: usize, seen: u64) -> u64 {
    let fresh = |e: u64| (e != seen && e % 2 == 1) || s.stop.load(Acquire);
    let t0 = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(SeqCst);
        if fresh(e) {
            return e;
        }
        if t0.elapsed() < SPIN {
            pause(&mut spins);
            continue;
        }
        // Announce the park, then look again: either the caller sees the
        // flag and unparks, or this load sees its new epoch.
        s.parked[i].store(true, SeqCst);
        let e = s.epoch.load(SeqCst);
        if fresh(e) {
            s.parked[i].store(false, SeqCst);
            return e;
        }
        std::thread::park();
        s.parked[i].store(false, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU32;

    /// Every index exactly once, whatever the team size and task count.
    #[test]
    fn runs_every_task_once() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            for tasks in [0, 1, 2, 3, 7, 64, 1000] {
                let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                team.run(tasks, &|i| {
                    hits[i].fetch_add(1, Relaxed);
                });
                assert!(
                    hits.iter().all(|h| h.load(Relaxed) == 1),
                    "{threads} {tasks}"
                );
            }
        }
    }

    /// A worker joins the call, also after it has parked.
    #[test]
    fn parked_workers_wake_and_help() {
        let team = Team::new(2).unwrap();
        for _ in 0..3 {
            // Long enough for the worker to park.
            std::thread::sleep(SPIN * 10);
            let ids = Mutex::new(HashSet::new());
            team.run(16, &|_| {
                ids.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(Duration::from_millis(2));
            });
            assert_eq!(ids.into_inner().unwrap().len(), 2);
        }
    }

    /// A call from inside a task, or from another thread meanwhile, runs on
    /// its own thread instead of waiting for the team.
    #[test]
    fn nested_and_concurrent_calls_complete() {
        let team = Team::new(2).unwrap();
        let sum = AtomicUsize::new(0);
        team.run(8, &|i| {
            team.run(8, &|j| {
                sum.fetch_add(i * 8 + j, Relaxed);
            });
        });
        assert_eq!(sum.load(Relaxed), (0..64).sum::<usize>());
        let sum = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        team.run(10, &|i| {
                            sum.fetch_add(i, Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(sum.load(Relaxed), 4 * 200 * 45);
    }

    /// A task's panic reaches the caller once every task has ended, and the
    /// team keeps working.
    #[test]
    fn a_panic_reaches_the_caller() {
        let team = Team::new(3).unwrap();
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(30, &|i| {
                ran.fetch_add(1, Relaxed);
                if i % 7 == 3 {
                    panic!("task {i}");
                }
            })
        }));
        assert!(r.is_err());
        assert_eq!(ran.load(Relaxed), 30);
        let hits = AtomicUsize::new(0);
        team.run(10, &|_| {
            hits.fetch_add(1, Relaxed);
        });
        assert_eq!(hits.load(Relaxed), 10);
    }
}
