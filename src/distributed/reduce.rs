//! Deterministic reductions across ranks: the same pairwise tree as
//! [`tree_reduce`](crate::parallel::tree_reduce) over a fixed list of items,
//! cut into aligned subtrees, one per rank.
//!
//! With `n` items and `P` ranks, items are grouped into aligned blocks of
//! `2^k` (the smallest `k` leaving at most `P` blocks). Block `i` goes to rank
//! `i`, which sums its items by the pairwise tree on its threads; blocks are
//! then combined rank to rank by the same tree (rank `2^s·2j` receives from
//! rank `2^s·(2j+1)` at step `s`), and rank 0 broadcasts the sum. Every node
//! of that tree is a node of the one-process tree over the `n` items, so the
//! result is bit-identical for any number of ranks and threads.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::comm::tag;
use super::wire::{from_bytes, to_bytes, Reader, Wire};
use super::{Cluster, DistributedError};
use crate::error::{Result, SquishError};
use crate::parallel::{map, tree_reduce};

/// A failure on one rank, sent along with the data so every rank learns it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    pub rank: usize,
    pub task: String,
    pub message: String,
}

impl Failure {
    pub fn new(rank: usize, task: impl Into<String>, e: &dyn std::fmt::Display) -> Self {
        Failure {
            rank,
            task: task.into(),
            message: e.to_string(),
        }
    }

    pub fn into_error(self) -> SquishError {
        DistributedError::RankFailed {
            rank: self.rank,
            task: self.task,
            message: self.message,
        }
        .into()
    }
}

impl Wire for Failure {
    fn encode(&self, out: &mut Vec<u8>) {
        self.rank.encode(out);
        self.task.encode(out);
        self.message.encode(out);
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        Ok(Failure {
            rank: usize::decode(input)?,
            task: String::decode(input)?,
            message: String::decode(input)?,
        })
    }
}

pub(crate) type Status<T> = std::result::Result<T, Failure>;

impl<T: Wire> Wire for Status<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ok(v) => {
                out.push(0);
                v.encode(out);
            }
            Err(f) => {
                out.push(1);
                f.encode(out);
            }
        }
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        match input.take(1)?[0] {
            0 => Ok(Ok(T::decode(input)?)),
            1 => Ok(Err(Failure::decode(input)?)),
            b => Err(DistributedError::Malformed {
                what: "status",
                detail: format!("tag byte {b}"),
            }
            .into()),
        }
    }
}

/// Runs `f`, turning an error or a panic into a [`Failure`] of `rank`.
pub(crate) fn guarded<T>(rank: usize, task: &str, f: impl FnOnce() -> Result<T>) -> Status<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::new(rank, task, &e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(Failure::new(rank, task, &format!("panicked: {msg}")))
        }
    }
}

/// Items per block when `n` items are reduced over `size` ranks: the
/// smallest power of two leaving at most `size` blocks.
fn block_len(n: usize, size: usize) -> usize {
    let mut b = 1usize;
    while n.div_ceil(b) > size.max(1) {
        b *= 2;
    }
    b
}

/// The items `rank` of `size` computes when `n` items are reduced with
/// [`allreduce_items`] (empty for ranks past the last block).
///
/// ```
/// use squish::distributed::owned_items;
/// // 10 items on 3 ranks: blocks of 4.
/// let parts: Vec<_> = (0..3).map(|r| owned_items(10, 3, r)).collect();
/// assert_eq!(parts, vec![0..4, 4..8, 8..10]);
/// assert_eq!(owned_items(10, 1, 0), 0..10);
/// ```
pub fn owned_items(n: usize, size: usize, rank: usize) -> Range<usize> {
    let b = block_len(n, size);
    (rank * b).min(n)..((rank + 1) * b).min(n)
}

/// Sums `item(0) + item(1) + … + item(n−1)` over the ranks of `cluster` by
/// the fixed pairwise tree, and returns the sum on every rank.
///
/// Each rank computes only its items ([`owned_items`]), on its thread
/// executor. The result is bit-identical to
/// [`tree_reduce`](crate::parallel::tree_reduce) over all `n` items in one
/// process, whatever the number of ranks and threads. If any item fails
/// (an error or a panic), every rank returns
/// [`DistributedError::RankFailed`] for the first failing item; `what`
/// names the items in that error. Collective: every rank must call it with
/// the same `n`.
///
/// ```
/// use squish::distributed::{allreduce_items, Cluster, SingleProcess};
/// use squish::parallel::Sequential;
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let s = allreduce_items(&c, 100, "term", |i| Ok(1.0f64 / (i + 1) as f64), |a, b| { *a += b; Ok(()) })?;
/// let seq = squish::parallel::tree_reduce(&Sequential, (0..100).map(|i| 1.0f64 / (i + 1) as f64).collect(), &|a: &mut f64, b| *a += b);
/// assert_eq!(s.to_bits(), seq.to_bits());
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn allreduce_items<T, F, A>(
    cluster: &Cluster<'_>,
    n: usize,
    what: &str,
    item: F,
    add: A,
) -> Result<T>
where
    T: Wire + Send,
    F: Fn(usize) -> Result<T> + Sync,
    A: Fn(&mut T, T) -> Result<()> + Sync,
{
    if n == 0 {
        return Err(SquishError::invalid(
            "items",
            0,
            "a reduction needs at least one item",
        ));
    }
    let (rank, size) = (cluster.rank(), cluster.size());
    let b = block_len(n, size);
    let blocks = n.div_ceil(b);
    let mine = owned_items(n, size, rank);
    let combine = |a: &mut Status<T>, b: Status<T>| match (a.as_mut(), b) {
        (Ok(x), Ok(y)) => {
            if let Err(e) = add(x, y) {
                *a = Err(Failure::new(rank, format!("adding {what}s"), &e));
            }
        }
        (Ok(_), Err(f)) => *a = Err(f),
        (Err(_), _) => {}
    };
    let mut node: Option<Status<T>> = None;
    if !mine.is_empty() {
        let items = map(cluster.exec(), mine.len(), |j| {
            let i = mine.start + j;
            guarded(rank, &format!("{what} {i}"), || item(i))
        });
        node = Some(tree_reduce(cluster.exec(), items, &combine));
    }
    // The upper tree, rank to rank.
    let comm = cluster.comm();
    let mut stride = 1usize;
    while stride < blocks && rank < blocks {
        if rank % (2 * stride) == 0 {
            let partner = rank + stride;
            if partner < blocks {
                let theirs: Status<T> = from_bytes(&comm.recv(partner, tag::REDUCE)?)?;
                combine(node.as_mut().expect("a block below the last"), theirs);
            }
        } else {
            let bytes = to_bytes(node.as_ref().expect("a block below the last"));
            comm.send(rank - stride, tag::REDUCE, &bytes)?;
            break;
        }
        stride *= 2;
    }
    let mut bytes = if rank == 0 {
        to_bytes(node.as_ref().expect("rank 0 owns block 0"))
    } else {
        Vec::new()
    };
    comm.broadcast(0, &mut bytes)?;
    let total: Status<T> = if rank == 0 {
        node.expect("rank 0 owns block 0")
    } else {
        from_bytes(&bytes)?
    };
    total.map_err(Failure::into_error)
}

/// Agrees on an outcome: every rank passes its own; if any failed, every
/// rank returns the lowest rank's failure as [`DistributedError::RankFailed`].
pub(crate) fn agree(cluster: &Cluster<'_>, mine: Status<()>) -> Result<()> {
    let all = cluster.comm().all_gather(&to_bytes(&mine))?;
    for b in all {
        let s: Status<()> = from_bytes(&b)?;
        s.map_err(Failure::into_error)?;
    }
    Ok(())
}

impl Wire for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(_input: &mut Reader<'_>) -> Result<Self> {
        Ok(())
    }
}
