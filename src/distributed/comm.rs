//! The [`Communicator`] trait, the one-process communicator, and
//! [`Cluster`]: a communicator paired with the thread executor of a rank.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::DistributedError;
use crate::error::Result;
use crate::parallel::ParallelExecutor;

/// Message tags used by squish's collectives (kept apart so that
/// consecutive operations never take each other's messages).
pub mod tag {
    /// Partial sums going up a reduction tree.
    pub const REDUCE: u16 = 1;
    /// A result going from the root to every rank.
    pub const BROADCAST: u16 = 2;
    /// Per-rank results going to the root.
    pub const GATHER: u16 = 3;
    /// Everyone's bytes going to everyone.
    pub const ALL_GATHER: u16 = 4;
}

/// A group of ranks (processes, or threads standing in for them) that send
/// bytes to each other: the world, or a split of it.
///
/// Implementations give point-to-point `send`/`recv` with MPI's ordering
/// (messages from one sender with one tag arrive in the order they were
/// sent); the collectives have default implementations on top of them,
/// which an MPI communicator replaces with MPI's own. Every method is
/// collective except `send`/`recv`: all ranks must call it, in the same
/// order.
///
/// ```
/// use squish::distributed::{Communicator, SingleProcess};
/// let c = SingleProcess;
/// assert_eq!((c.rank(), c.size()), (0, 1));
/// assert_eq!(c.all_gather(b"hi")?, vec![b"hi".to_vec()]);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub trait Communicator: Send + Sync + fmt::Debug {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Sends `bytes` to rank `to` with `tag`.
    fn send(&self, to: usize, tag: u16, bytes: &[u8]) -> Result<()>;

    /// Receives the next message from rank `from` with `tag`.
    fn recv(&self, from: usize, tag: u16) -> Result<Vec<u8>>;

    /// Every rank's `mine`, in rank order, on every rank.
    fn all_gather(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (me, n) = (self.rank(), self.size());
        for to in (0..n).filter(|&r| r != me) {
            self.send(to, tag::ALL_GATHER, mine)?;
        }
        (0..n)
            .map(|r| {
                if r == me {
                    Ok(mine.to_vec())
                } else {
                    self.recv(r, tag::ALL_GATHER)
                }
            })
            .collect()
    }

    /// `root`'s `bytes` on every rank (other ranks' `bytes` are replaced).
    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        if self.rank() == root {
            for to in (0..self.size()).filter(|&r| r != root) {
                self.send(to, tag::BROADCAST, bytes)?;
            }
        } else {
            *bytes = self.recv(root, tag::BROADCAST)?;
        }
        Ok(())
    }

    /// Every rank's `mine`, in rank order, on `root` (`None` elsewhere).
    fn gather(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        if self.rank() != root {
            self.send(root, tag::GATHER, mine)?;
            return Ok(None);
        }
        (0..self.size())
            .map(|r| {
                if r == root {
                    Ok(mine.to_vec())
                } else {
                    self.recv(r, tag::GATHER)
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Splits the group: ranks passing the same `color` form a new group,
    /// ordered by `key` (then by their rank here).
    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn Communicator>>;
}

/// The communicator of a run with one process: rank 0 of 1. The same code
/// that runs under `mpirun` runs with it, without MPI.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn send(&self, to: usize, _tag: u16, _bytes: &[u8]) -> Result<()> {
        Err(DistributedError::Communication {
            op: "send",
            detail: format!("rank {to} does not exist in a one-process run"),
        }
        .into())
    }

    fn recv(&self, from: usize, _tag: u16) -> Result<Vec<u8>> {
        Err(DistributedError::Communication {
            op: "recv",
            detail: format!("rank {from} does not exist in a one-process run"),
        }
        .into())
    }

    fn split(&self, _color: u32, _key: u32) -> Result<Arc<dyn Communicator>> {
        Ok(Arc::new(SingleProcess))
    }
}

/// Counts the bytes a communicator sends and the time spent inside it
/// (waiting for peers included): what a benchmark reports as the time
/// spent communicating.
///
/// ```
/// use squish::distributed::{Communicator, Metered, SingleProcess};
/// let m = Metered::new(SingleProcess);
/// m.all_gather(&[1, 2, 3])?;
/// assert_eq!(m.bytes_sent(), 0); // nobody to send to
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Debug)]
pub struct Metered<C> {
    inner: C,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl<C: Communicator> Metered<C> {
    /// Wraps `inner`, counters at zero.
    pub fn new(inner: C) -> Self {
        Metered {
            inner,
            bytes: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// Bytes this rank sent (payloads, collectives included) since the start.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Seconds this rank spent in communication calls since the start.
    pub fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Sets both counters back to zero.
    pub fn reset(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.nanos.store(0, Ordering::Relaxed);
    }

    fn timed<T>(&self, sent: usize, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(sent as u64, Ordering::Relaxed);
        out
    }
}

impl<C: Communicator> Communicator for Metered<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn send(&self, to: usize, tag: u16, bytes: &[u8]) -> Result<()> {
        self.timed(bytes.len(), || self.inner.send(to, tag, bytes))
    }

    fn recv(&self, from: usize, tag: u16) -> Result<Vec<u8>> {
        self.timed(0, || self.inner.recv(from, tag))
    }

    fn all_gather(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let peers = self.size() - 1;
        self.timed(mine.len() * peers, || self.inner.all_gather(mine))
    }

    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        let sent = if self.rank() == root {
            bytes.len() * (self.size() - 1)
        } else {
            0
        };
        self.timed(sent, || self.inner.broadcast(root, bytes))
    }

    fn gather(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let sent = if self.rank() == root { 0 } else { mine.len() };
        self.timed(sent, || self.inner.gather(root, mine))
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn Communicator>> {
        self.inner.split(color, key)
    }
}

impl<C: Communicator + ?Sized> Communicator for Arc<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn send(&self, to: usize, tag: u16, bytes: &[u8]) -> Result<()> {
        (**self).send(to, tag, bytes)
    }
    fn recv(&self, from: usize, tag: u16) -> Result<Vec<u8>> {
        (**self).recv(from, tag)
    }
    fn all_gather(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        (**self).all_gather(mine)
    }
    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        (**self).broadcast(root, bytes)
    }
    fn gather(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        (**self).gather(root, mine)
    }
    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn Communicator>> {
        (**self).split(color, key)
    }
}

/// Where a distributed computation runs: a group of ranks (the
/// [`Communicator`]) and, inside this rank, a thread executor.
///
/// Work is cut into items whose boundaries depend on the problem only;
/// ranks take contiguous runs of items and threads share a rank's items, so
/// results do not depend on the number of ranks or threads.
///
/// ```
/// use squish::distributed::{Cluster, SingleProcess};
/// use squish::parallel::Sequential;
/// let cluster = Cluster::new(&SingleProcess, &Sequential);
/// assert!(cluster.is_root());
/// assert_eq!(cluster.size(), 1);
/// ```
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    comm: &'a dyn Communicator,
    exec: &'a dyn ParallelExecutor,
}

impl fmt::Debug for Cluster<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cluster(rank {} of {}, {:?})",
            self.comm.rank(),
            self.comm.size(),
            self.exec
        )
    }
}

impl<'a> Cluster<'a> {
    /// Ranks of `comm`, each running its share on `exec`'s threads.
    pub fn new(comm: &'a dyn Communicator, exec: &'a dyn ParallelExecutor) -> Self {
        Cluster { comm, exec }
    }

    /// The communicator.
    pub fn comm(&self) -> &'a dyn Communicator {
        self.comm
    }

    /// This rank's thread executor.
    pub fn exec(&self) -> &'a dyn ParallelExecutor {
        self.exec
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Whether this is rank 0 (the one that writes files).
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }
}
