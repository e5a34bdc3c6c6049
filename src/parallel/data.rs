//! Data parallelism: split a batch into fixed shards, run each shard on a
//! worker, and put the results back together in shard order.
//!
//! Shard boundaries depend only on the batch size and the shard size, never
//! on the thread count, and gradients are summed by a fixed pairwise tree
//! over the shards, so results are bit-identical for any executor.

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{concatenate, s, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::forward::{check_batch, Forward};
use super::ParallelError;
use super::{map, ParallelExecutor, Sequential};
use crate::error::{Result, SquishError};

/// Unchecked settings of a [`DataParallel`] runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataParallelParams {
    shard: usize,
}

/// Splits batches into shards of a fixed number of samples.
///
/// ```
/// use ndarray::Array2;
/// use squish::parallel::{DataParallel, ThreadPool, Sequential};
/// let w = Array2::from_shape_fn((8, 4), |(i, j)| (i as f32) - (j as f32) * 0.5);
/// let x = Array2::from_shape_fn((10, 4), |(b, j)| (b * 4 + j) as f32 * 0.1);
/// let dp = DataParallel::params().shard(3).check()?;
/// let pool = ThreadPool::new(2)?;
/// // Shards of 3 samples: 0..3, 3..6, 6..9, 9..10, whatever the thread count.
/// assert_eq!(dp.shards(10), vec![0..3, 3..6, 6..9, 9..10]);
/// assert_eq!(dp.forward(&w, x.view(), &pool)?, dp.forward(&w, x.view(), &Sequential)?);
///
/// // Gradient-style reduction: the sum of squares of 0..100, shard by shard.
/// let g = dp.grad(&pool, 100, |r| r.map(|i| (i * i) as u64).sum::<u64>(), |a, b| *a += b)?;
/// assert_eq!(g, (0..100u64).map(|i| i * i).sum::<u64>());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataParallel {
    shard: usize,
}

impl Default for DataParallelParams {
    fn default() -> Self {
        DataParallelParams { shard: 64 }
    }
}

impl DataParallelParams {
    /// Samples per shard (default 64). Pick it for the work per shard, not
    /// for the thread count: results depend on it (in the last bits, for
    /// gradients), never on the threads.
    pub fn shard(mut self, samples: usize) -> Self {
        self.shard = samples;
        self
    }

    /// Validates: at least one sample per shard.
    pub fn check(self) -> Result<DataParallel> {
        if self.shard == 0 {
            return Err(SquishError::from(ParallelError::Zero {
                what: "shard",
                why: "a shard needs at least one sample",
            }));
        }
        Ok(DataParallel { shard: self.shard })
    }
}

impl DataParallel {
    /// Starts a builder (64 samples per shard).
    pub fn params() -> DataParallelParams {
        DataParallelParams::default()
    }

    /// Samples per shard.
    pub fn shard_size(&self) -> usize {
        self.shard
    }

    /// The shard ranges of `n` samples: `shard` samples each, the last one
    /// shorter. Depends only on `n` and the shard size.
    pub fn shards(&self, n: usize) -> Vec<Range<usize>> {
        (0..n.div_ceil(self.shard))
            .map(|i| i * self.shard..((i + 1) * self.shard).min(n))
            .collect()
    }

    /// Inference: `model` on each shard of `x` (one task per shard, each on
    /// one thread), outputs stacked in shard order.
    ///
    /// Equals `model.forward(x)` bit for bit whenever the model treats rows
    /// independently (every kernel in squish does). An error is the first
    /// failing shard's, in shard order.
    pub fn forward<'a, M: Forward + ?Sized>(
        &self,
        model: &M,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        check_batch(x, model.in_dim())?;
        let shards = self.shards(x.nrows());
        let outs = map(exec, shards.len(), |i| {
            model.forward(x.slice(s![shards[i].clone(), ..]), &Sequential)
        });
        let outs = outs.into_iter().collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        concatenate(Axis(0), &views).map_err(|e| {
            SquishError::inconsistent("data-parallel forward", format!("shard outputs: {e}"))
        })
    }

    /// Training: `f(range)` computes the gradient of one shard of the
    /// `n_samples` samples; shard gradients are combined with `add` by a
    /// fixed pairwise tree (`((g0+g1)+(g2+g3))+…`), so the result is
    /// bit-identical for 1, 2 or N threads.
    ///
    /// All shard gradients are alive at once before the reduction: choose the
    /// shard size so `n_samples / shard` gradients fit in memory.
    pub fn grad<G: Send>(
        &self,
        exec: &dyn ParallelExecutor,
        n_samples: usize,
        f: impl Fn(Range<usize>) -> G + Sync,
        add: impl Fn(&mut G, G) + Sync,
    ) -> Result<G> {
        self.try_grad(exec, n_samples, |r| Ok(f(r)), add)
    }

    /// [`grad`](Self::grad) for a fallible `f`; returns the first failing
    /// shard's error, in shard order.
    pub fn try_grad<G, F, A>(
        &self,
        exec: &dyn ParallelExecutor,
        n_samples: usize,
        f: F,
        add: A,
    ) -> Result<G>
    where
        G: Send,
        F: Fn(Range<usize>) -> Result<G> + Sync,
        A: Fn(&mut G, G) + Sync,
    {
        if n_samples == 0 {
            return Err(SquishError::from(ParallelError::Zero {
                what: "n_samples",
                why: "a gradient needs at least one sample",
            }));
        }
        let shards = self.shards(n_samples);
        let grads = map(exec, shards.len(), |i| f(shards[i].clone()));
        let grads = grads.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(tree_reduce(exec, grads, &add))
    }
}

/// Sums `items` by a pairwise tree whose shape depends only on their number:
/// level by level, item `2i` absorbs item `2i+1`. Pairs of a level run as
/// tasks on `exec`; the result does not depend on it.
pub fn tree_reduce<G, A>(exec: &dyn ParallelExecutor, items: Vec<G>, add: &A) -> G
where
    G: Send,
    A: Fn(&mut G, G) + Sync,
{
    assert!(!items.is_empty(), "tree_reduce needs at least one item");
    let mut level = items;
    while level.len() > 1 {
        let n = level.len();
        let slots: Vec<Mutex<Option<G>>> = level.into_iter().map(|g| Mutex::new(Some(g))).collect();
        let take = |i: usize| {
            slots[i]
                .lock()
                .expect("a task panicked")
                .take()
                .expect("each item is taken once")
        };
        level = map(exec, n.div_ceil(2), |i| {
            let mut a = take(2 * i);
            if 2 * i + 1 < n {
                add(&mut a, take(2 * i + 1));
            }
            a
        });
    }
    level.pop().expect("one item left")
}

/// [`DataParallel::forward`] with `shard` samples per shard.
pub fn data_parallel_forward<'a, M: Forward + ?Sized>(
    model: &M,
    x: impl AsArray<'a, f32, Ix2>,
    shard: usize,
    exec: &dyn ParallelExecutor,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    DataParallel::params()
        .shard(shard)
        .check()?
        .forward(model, x, exec)
}

/// [`DataParallel::grad`] with `shard` samples per shard: each worker
/// computes `f(range)` on its shard, gradients are summed in a fixed tree.
///
/// ```
/// use squish::parallel::{data_parallel_grad, ThreadPool};
/// // Gradient of Σ (w·xᵢ − yᵢ)² / 2 over 1000 samples, for w = 0.5.
/// let (xs, ys): (Vec<f32>, Vec<f32>) = (0..1000).map(|i| (i as f32 * 0.01, i as f32 * 0.02)).unzip();
/// let g = |r: std::ops::Range<usize>| r.map(|i| (0.5 * xs[i] - ys[i]) * xs[i]).sum::<f32>();
/// let pool = ThreadPool::new(2)?;
/// let g2 = data_parallel_grad(&pool, 1000, 100, &g, |a, b| *a += b)?;
/// let g1 = data_parallel_grad(&squish::parallel::Sequential, 1000, 100, &g, |a, b| *a += b)?;
/// assert_eq!(g1.to_bits(), g2.to_bits());
/// assert!(g1 < 0.0); // w should grow toward 2
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn data_parallel_grad<G: Send>(
    exec: &dyn ParallelExecutor,
    n_samples: usize,
    shard: usize,
    f: impl Fn(Range<usize>) -> G + Sync,
    add: impl Fn(&mut G, G) + Sync,
) -> Result<G> {
    DataParallel::params()
        .shard(shard)
        .check()?
        .grad(exec, n_samples, f, add)
}
