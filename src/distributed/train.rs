//! Data-parallel training and distillation across ranks: every rank runs
//! the same training loop (same seed, same shuffle) and computes the
//! gradient of only its shards of each batch; shard gradients are summed by
//! the fixed tree of [`allreduce_items`], so weights and losses are
//! bit-identical for any number of ranks and threads.

use ndarray::{concatenate, Array1, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::wire::{from_bytes, to_bytes, Reader, Wire};
use super::{allreduce_items, Cluster};
use crate::data::Dataset;
use crate::distillation::{distill_batch, teacher_outputs, Distiller, Teacher};
use crate::error::{Result, SquishError};
use crate::parallel::{even_ranges, DataParallel};
use crate::training::{check_data, DenseGrad, Gradients, Masks, Mlp, TrainReport, Trainer};

impl Wire for Gradients<f32> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.layers.len().encode(out);
        for g in &self.layers {
            g.w.encode(out);
            g.b.encode(out);
        }
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let n = input.count()?;
        let mut layers = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            layers.push(DenseGrad {
                w: Array2::<f32>::decode(input)?,
                b: Array1::<f32>::decode(input)?,
            });
        }
        Ok(Gradients { layers })
    }
}

/// The mean loss and mean gradient of a network on some rows (one shard).
pub type ShardObjective<'a> =
    dyn Fn(&Mlp<f32>, &[usize]) -> Result<(f64, Gradients<f32>)> + Sync + 'a;

/// The mean loss and gradient of `net` on the rows `batch`, computed shard
/// by shard over the ranks.
///
/// `dp` cuts the batch into shards of a fixed size; shard `i` contributes
/// `(nᵢ/n)·(loss, gradient)` of `per_shard` on its rows. Each rank computes
/// its shards ([`owned_items`](super::owned_items)) on its threads, and the
/// sum is the same tree as [`DataParallel::try_grad`] in one process, so it
/// is bit-identical to that for any rank and thread count. Collective.
///
/// ```
/// use squish::distributed::{batch_gradient, Cluster, SingleProcess};
/// use squish::parallel::{DataParallel, Sequential};
/// use squish::training::Mlp;
/// use ndarray::Array2;
/// let net = Mlp::params(&[4, 3]).seed(2).check()?;
/// let x = Array2::from_shape_fn((10, 4), |(i, j)| (i * 4 + j) as f32 * 0.1);
/// let y: Vec<usize> = (0..10).map(|i| i % 3).collect();
/// let per_shard = |n: &Mlp, rows: &[usize]| {
///     let xs = x.select(ndarray::Axis(0), rows);
///     let ys: Vec<usize> = rows.iter().map(|&r| y[r]).collect();
///     n.gradients(xs.view(), &ys)
/// };
/// let dp = DataParallel::params().shard(3).check()?;
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let batch: Vec<usize> = (0..10).collect();
/// let (loss, g) = batch_gradient(&c, &dp, &net, &batch, &per_shard)?;
/// let (full_loss, full) = net.gradients(x.view(), &y)?;
/// assert!((loss - full_loss).abs() < 1e-6);
/// assert!((g.norm() - full.norm()).abs() < 1e-5);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn batch_gradient(
    cluster: &Cluster<'_>,
    dp: &DataParallel,
    net: &Mlp<f32>,
    batch: &[usize],
    per_shard: &ShardObjective<'_>,
) -> Result<(f64, Gradients<f32>)> {
    let n = batch.len();
    let shards = dp.shards(n);
    allreduce_items(
        cluster,
        shards.len(),
        "training shard",
        |i| {
            let r = shards[i].clone();
            let (loss, mut g) = per_shard(net, &batch[r.clone()])?;
            let w = r.len() as f64 / n as f64;
            g.scale(w as f32);
            Ok((loss * w, g))
        },
        add_loss_grad,
    )
}

/// `a += b` for (loss, gradient) pairs: the reduction of
/// [`batch_gradient`]; use the same one in a one-process reference.
pub fn add_loss_grad(a: &mut (f64, Gradients<f32>), b: (f64, Gradients<f32>)) -> Result<()> {
    a.0 += b.0;
    a.1.add(&b.1)
}

/// [`Trainer::fit`] with every batch's gradient computed over the ranks
/// ([`batch_gradient`], softmax cross-entropy). Every rank ends with the
/// same weights and report, bit for bit, for any rank count. Collective.
///
/// Each rank reads only the rows of its shards; every rank must be given the
/// same `data` (e.g. memory-mapped from a shared file system).
pub fn fit(
    cluster: &Cluster<'_>,
    trainer: &Trainer,
    dp: &DataParallel,
    mlp: &mut Mlp<f32>,
    data: &Dataset,
) -> Result<TrainReport> {
    check_data(mlp, data)?;
    let per_shard = |net: &Mlp<f32>, rows: &[usize]| {
        let (x, y) = data.rows(rows);
        net.gradients(x.view(), &y)
    };
    let masks = Masks::none(mlp.layers().len());
    trainer.fit_objective(mlp, data.len(), masks, &mut |net, batch| {
        batch_gradient(cluster, dp, net, batch, &per_shard)
    })
}

/// The teacher's logits for every row of `x`, computed on contiguous row
/// ranges, one per rank, and gathered on every rank (rows are independent,
/// so this equals the one-process result).
pub fn teacher_logits<'a>(
    cluster: &Cluster<'_>,
    teacher: &dyn Teacher,
    x: impl AsArray<'a, f32, Ix2>,
    classes: usize,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    let ranges = even_ranges(x.nrows(), cluster.size());
    let mine = ranges[cluster.rank()].clone();
    let out = super::reduce::guarded(cluster.rank(), "teacher logits", || {
        teacher_outputs(x.slice(ndarray::s![mine, ..]), Some(classes), &|b| {
            teacher.logits(b)
        })
    });
    let parts = cluster.comm().all_gather(&to_bytes(&out))?;
    let parts = parts
        .iter()
        .map(|b| from_bytes::<super::reduce::Status<Array2<f32>>>(b))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|s| s.map_err(super::reduce::Failure::into_error))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views)
        .map_err(|e| SquishError::inconsistent("teacher logits", e.to_string()))
}

/// [`distill`](crate::distillation::distill) with the teacher's logits
/// computed over the ranks ([`teacher_logits`]) and every batch's gradient
/// over the ranks ([`batch_gradient`]). Bit-identical weights and losses for
/// any rank count. Collective.
pub fn distill(
    cluster: &Cluster<'_>,
    trainer: &Trainer,
    dp: &DataParallel,
    student: &mut Mlp<f32>,
    teacher: &dyn Teacher,
    distiller: &dyn Distiller,
    data: &Dataset,
) -> Result<TrainReport> {
    check_data(student, data)?;
    let t = teacher_logits(cluster, teacher, data.x(), data.classes())?;
    let per_shard = |net: &Mlp<f32>, rows: &[usize]| distill_batch(net, data, &t, distiller, rows);
    let masks = Masks::none(student.layers().len());
    trainer.fit_objective(student, data.len(), masks, &mut |net, batch| {
        batch_gradient(cluster, dp, net, batch, &per_shard)
    })
}
