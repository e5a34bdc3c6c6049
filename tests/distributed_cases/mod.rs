//! Scenarios run over any communicator: by `tests/distributed.rs` with
//! threads as ranks, and by `tests/mpi.rs` under `mpirun`. Each checks its
//! result against a one-process reference computed in place and returns a
//! CRC-32 of the result, which must be the same on every rank and for any
//! rank count.
#![allow(dead_code)]

use std::path::Path;

use ndarray::{s, Array1, Array2, Axis};
use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::data::Dataset;
use squish::distillation::SoftTarget;
use squish::distributed::{self, Cluster, DistributedError, RankRowSplit};
use squish::io::{CompressedModel, Dtype, Model, Tensor};
use squish::matrix::CompressedMatrix;
use squish::parallel::{DataParallel, Forward, Sequential};
use squish::prelude::*;
use squish::recipe::{compress_model, Recipe};
use squish::training::{Activation, Layer, LayerStack};
use squish::training::{Mlp, Optimizer, Trainer};
use squish::SquishError;

pub fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn crc_f32<'a>(v: impl IntoIterator<Item = &'a f32>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    v.into_iter().for_each(|x| h.update(&x.to_le_bytes()));
    h.finalize()
}

/// A model with matrices of varied shapes, biases, an f16 matrix, a 4-D
/// conv kernel and an integer buffer.
pub fn test_model() -> Model {
    build_model(false)
}

/// [`test_model`] with a NaN in `layer1.weight`: its compression fails.
pub fn nan_model() -> Model {
    build_model(true)
}

fn build_model(nan: bool) -> Model {
    let mut m = Model::new();
    let shapes = [
        (96, 64),
        (64, 64),
        (130, 70),
        (32, 200),
        (256, 48),
        (17, 33),
        (64, 128),
        (8, 8),
    ];
    for (i, &(r, c)) in shapes.iter().enumerate() {
        let mut w = random(r, c, 100 + i as u64);
        if nan && i == 1 {
            w[[3, 5]] = f32::NAN;
        }
        m.insert(
            format!("layer{i}.weight"),
            Tensor::float(Dtype::F32, vec![r, c], w.into_raw_vec_and_offset().0).unwrap(),
        )
        .unwrap();
        let b = random(1, r, 200 + i as u64);
        m.insert(
            format!("layer{i}.bias"),
            Tensor::float(Dtype::F32, vec![r], b.into_raw_vec_and_offset().0).unwrap(),
        )
        .unwrap();
    }
    let conv = random(16, 3 * 3 * 3, 7);
    m.insert(
        "conv.weight",
        Tensor::float(
            Dtype::F32,
            vec![16, 3, 3, 3],
            conv.into_raw_vec_and_offset().0,
        )
        .unwrap(),
    )
    .unwrap();
    let h = random(40, 24, 8);
    m.insert(
        "half.weight",
        Tensor::float(Dtype::F16, vec![40, 24], h.into_raw_vec_and_offset().0).unwrap(),
    )
    .unwrap();
    let ids: Vec<u8> = (0..16i64).flat_map(|i| i.to_le_bytes()).collect();
    m.insert(
        "position_ids",
        Tensor::raw(Dtype::I64, vec![16], ids).unwrap(),
    )
    .unwrap();
    m
}

pub const RECIPE: &str = r#"
[[rule]]
pattern = "layer[0-2].weight"
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "int8" }]

[[rule]]
pattern = "layer3.weight"
pipeline = [{ method = "lowrank", rank = 8 }, { method = "int8" }]

[[rule]]
pattern = "layer7.weight"
pipeline = []

[[rule]]
pattern = "conv.weight"
pipeline = [{ method = "kmeans", k = 16 }]

[default]
pipeline = [{ method = "int4", granularity = "per-group", group_size = 8 }]
"#;

/// Task parallel: the container rank 0 writes equals the one-process one
/// byte for byte; returns its CRC on every rank.
pub fn compress(cluster: &Cluster<'_>, dir: &Path) -> squish::Result<u32> {
    let model = test_model();
    let recipe = Recipe::from_toml(RECIPE)?;
    let one = compress_model(&model, &recipe, &Sequential, &|_| {})?;
    let want = one.model.to_bytes()?;
    let path = dir.join(format!("model-{}.squish", cluster.size()));
    let out = distributed::compress_to_file(cluster, &model, &recipe, &path)?;
    if cluster.is_root() {
        let out = out.expect("rank 0 gets the result");
        assert_eq!(out.layers.len(), one.layers.len());
        for (a, b) in out.layers.iter().zip(&one.layers) {
            assert_eq!(
                (&a.name, &a.method, a.bytes_after),
                (&b.name, &b.method, b.bytes_after)
            );
            assert_eq!(a.error, b.error);
        }
        let file = std::fs::read(&path).expect("rank 0 wrote the file");
        assert_eq!(file, want, "container differs from the one-process one");
        assert_eq!(out.bytes, file.len() as u64);
        assert_eq!(out.tensors, model.len());
        assert_eq!(out.totals(&model), one.totals(&model));
        // It loads and decodes.
        assert!(CompressedModel::load(&path)?.len() == model.len());
    } else {
        assert!(out.is_none());
    }
    // In memory: rank 0 gets the same container.
    match distributed::compress_model(cluster, &model, &recipe)? {
        Some(m) => assert_eq!(m.model.to_bytes()?, want, "in-memory container differs"),
        None => assert!(!cluster.is_root()),
    }
    Ok(crc32fast::hash(&want))
}

/// One layer holds a NaN: every rank reports the same typed error, and the
/// output file is neither created nor, when it exists, touched.
pub fn compress_failure(cluster: &Cluster<'_>, dir: &Path) -> squish::Result<u32> {
    let model = nan_model();
    let recipe = Recipe::from_toml(RECIPE)?;
    let fresh = dir.join(format!("failed-{}.squish", cluster.size()));
    let kept = dir.join(format!("kept-{}.squish", cluster.size()));
    if cluster.is_root() {
        std::fs::write(&kept, b"old content").unwrap();
    }
    let mut seen = Vec::new();
    for path in [&fresh, &kept] {
        match distributed::compress_to_file(cluster, &model, &recipe, path) {
            Err(SquishError::Distributed(DistributedError::RankFailed {
                rank,
                task,
                message,
            })) => {
                assert_eq!(task, "layer1.weight");
                assert!(message.contains("non-finite"), "{message}");
                seen.push(rank as u8);
            }
            other => panic!("expected RankFailed, got {other:?}"),
        }
    }
    // A directory that does not exist: rank 0 cannot make the file; every
    // rank says so (after compressing: the layers are fine).
    let nowhere = dir.join("missing").join("out.squish");
    match distributed::compress_to_file(cluster, &test_model(), &recipe, &nowhere) {
        Err(SquishError::Distributed(DistributedError::RankFailed { rank, task, .. })) => {
            assert_eq!(rank, 0);
            assert!(task.starts_with("writing "), "{task}");
        }
        other => panic!("expected RankFailed, got {other:?}"),
    }
    // Every rank names the same failing rank (which one depends on the
    // rank count, so it stays out of the digest).
    let all = cluster.comm().all_gather(&seen)?;
    assert!(all.iter().all(|s| *s == seen), "ranks disagree: {all:?}");
    assert!(seen.iter().all(|&r| (r as usize) < cluster.size()));
    if cluster.is_root() {
        assert!(!fresh.exists(), "no half-written file");
        assert_eq!(std::fs::read(&kept).unwrap(), b"old content");
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    Ok(crc32fast::hash(b"layer1.weight"))
}

fn blobs(n: usize, features: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let centers = random(classes, features, seed + 1);
    let mut x = Array2::zeros((n, features));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        for j in 0..features {
            x[[i, j]] = centers[[c, j]] + 0.6 * rng.random_range(-1.0f32..1.0);
        }
        y.push(c);
    }
    Dataset::new(x, y, classes).unwrap()
}

/// Data parallel training: weights and epoch losses equal, bit for bit, a
/// one-process run whose batch gradients are the same shards summed by
/// `DataParallel::try_grad` (the thread-parallel reduction).
pub fn train(cluster: &Cluster<'_>) -> squish::Result<u32> {
    let data = blobs(300, 12, 4, 5);
    let trainer = Trainer::params()
        .epochs(3)
        .batch_size(50)
        .seed(9)
        .optimizer(Optimizer::adam(1e-2).check()?)
        .check()?;
    let dp = DataParallel::params().shard(8).check()?;
    let start = Mlp::params(&[12, 16, 4]).seed(3).check()?;

    let mut mlp = start.clone();
    let report = distributed::fit(cluster, &trainer, &dp, &mut mlp, &data)?;

    let mut reference = start.clone();
    let want = trainer.fit_objective(
        &mut reference,
        data.len(),
        squish::training::Masks::none(2),
        &mut |net, batch| {
            let n = batch.len();
            dp.try_grad(
                &Sequential,
                n,
                |r| {
                    let (x, y) = data.rows(&batch[r.clone()]);
                    let (l, mut g) = net.gradients(x.view(), &y)?;
                    let w = r.len() as f64 / n as f64;
                    g.scale(w as f32);
                    Ok((l * w, g))
                },
                |a, b| distributed::add_loss_grad(a, b).unwrap(),
            )
        },
    )?;
    assert_eq!(report.epoch_loss, want.epoch_loss);
    assert_eq!(report.steps, want.steps);
    for (a, b) in mlp.layers().iter().zip(reference.layers()) {
        assert_eq!(a.weight(), b.weight());
        assert_eq!(a.bias(), b.bias());
    }
    // And it learns.
    assert!(report.epoch_loss[2] < report.epoch_loss[0]);
    let mut h = crc32fast::Hasher::new();
    for l in mlp.layers() {
        h.update(&crc_f32(l.weight().iter()).to_le_bytes());
        h.update(&crc_f32(l.bias().iter()).to_le_bytes());
    }
    report
        .epoch_loss
        .iter()
        .for_each(|l| h.update(&l.to_le_bytes()));
    Ok(h.finalize())
}

/// Data parallel distillation from a larger teacher: the same weights and
/// losses at any rank count (checked through the CRC by the caller).
pub fn distill(cluster: &Cluster<'_>) -> squish::Result<u32> {
    let data = blobs(200, 10, 3, 11);
    let teacher = Mlp::params(&[10, 32, 3]).seed(4).check()?;
    let mut student = Mlp::params(&[10, 8, 3]).seed(6).check()?;
    let trainer = Trainer::params().epochs(2).batch_size(40).seed(2).check()?;
    let dp = DataParallel::params().shard(6).check()?;
    let kd = SoftTarget::params(2.0).alpha(0.5).check()?;
    let report = distributed::distill(cluster, &trainer, &dp, &mut student, &teacher, &kd, &data)?;
    // The teacher logits gathered from the ranks are the one-process ones.
    let t = distributed::teacher_logits(cluster, &teacher, data.x(), 3)?;
    assert_eq!(t, teacher.forward(data.x())?);
    let mut h = crc32fast::Hasher::new();
    for l in student.layers() {
        h.update(&crc_f32(l.weight().iter()).to_le_bytes());
    }
    report
        .epoch_loss
        .iter()
        .for_each(|l| h.update(&l.to_le_bytes()));
    Ok(h.finalize())
}

/// Calibration statistics: XᵀX over fixed chunks equals the 1-rank result
/// bit for bit and a naive f64 triple loop to rounding.
pub fn calibration(cluster: &Cluster<'_>) -> squish::Result<u32> {
    let x = random(1000, 24, 21);
    let g = distributed::gram(cluster, 1000, 64, |r| Ok(x.slice(s![r, ..]).to_owned()))?;
    let one = distributed::gram(
        &Cluster::new(&distributed::SingleProcess, &Sequential),
        1000,
        64,
        |r| Ok(x.slice(s![r, ..]).to_owned()),
    )?;
    assert_eq!(g, one);
    for i in 0..24 {
        for j in 0..24 {
            let naive: f64 = (0..1000).map(|k| x[[k, i]] as f64 * x[[k, j]] as f64).sum();
            assert!((g[[i, j]] - naive).abs() <= 1e-10 * naive.abs().max(1.0));
        }
    }
    let norms = distributed::column_norms(&g);
    let naive0 = x
        .column(0)
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norms[0] - naive0).abs() < 1e-10);
    Ok(crc32fast::hash(
        &g.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    ))
}

/// Model parallel: an MLP whose layers are split by rows over the ranks,
/// each rank holding only its int8 slice, serves the same outputs as the
/// whole compressed MLP in one process.
pub fn serve(
    cluster: &Cluster<'_>,
    comm: std::sync::Arc<dyn distributed::Communicator>,
) -> squish::Result<u32> {
    let sizes = [(96, 40), (64, 96), (10, 64)];
    let q = IntQuantizer::params(8).per_row().check()?;
    let mut split_layers = Vec::new();
    let mut whole_layers = Vec::new();
    for (i, &(r, c)) in sizes.iter().enumerate() {
        let w = random(r, c, 300 + i as u64);
        let b: Array1<f32> = random(1, r, 400 + i as u64)
            .index_axis(Axis(0), 0)
            .to_owned();
        let act = if i + 1 < sizes.len() {
            Activation::Relu
        } else {
            Activation::Identity
        };
        let split = RankRowSplit::from_dense(comm.clone(), w.view(), &|_rows, block| {
            q.quantize(&CompressedMatrix::from_dense(block)?)
        })?;
        assert!(split.local_rows().len() <= r.div_ceil(cluster.size()));
        split_layers.push(Layer::new(split).with_bias(b.view())?.activation(act));
        let whole = q.quantize(&CompressedMatrix::from_dense(w.view())?)?;
        whole_layers.push(Layer::new(whole).with_bias(b.view())?.activation(act));
    }
    let split = LayerStack::new(split_layers)?;
    let whole = LayerStack::new(whole_layers)?;
    let x = random(7, 40, 500);
    let y = split.forward(x.view(), cluster.exec())?;
    assert_eq!(y, whole.forward(x.view(), &Sequential)?);
    Ok(crc_f32(y.iter()))
}

/// A split of the world (even / odd ranks) reduces within each half.
pub fn split(cluster: &Cluster<'_>) -> squish::Result<u32> {
    let half = cluster
        .comm()
        .split((cluster.rank() % 2) as u32, cluster.rank() as u32)?;
    let sub = Cluster::new(half.as_ref(), cluster.exec());
    let members: Vec<usize> = (0..cluster.size())
        .filter(|r| r % 2 == cluster.rank() % 2)
        .collect();
    assert_eq!(sub.size(), members.len());
    let s = distributed::allreduce_items(
        &sub,
        5,
        "item",
        |i| Ok((i * 10 + sub.size()) as u64),
        |a, b| {
            *a += b;
            Ok(())
        },
    )?;
    assert_eq!(s, 100 + 5 * members.len() as u64);
    Ok(0)
}

/// The reduction tree equals the one-process tree for awkward f32 sums.
pub fn reduce(cluster: &Cluster<'_>) -> squish::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    for n in 1..=19 {
        let v: Vec<f32> = (0..n)
            .map(|i| 1.0 / (i as f32 + 0.3) * if i % 3 == 0 { -1e3 } else { 1.0 })
            .collect();
        let s = distributed::allreduce_items(
            cluster,
            n,
            "term",
            |i| Ok(v[i]),
            |a, b| {
                *a += b;
                Ok(())
            },
        )?;
        let want = squish::parallel::tree_reduce(&Sequential, v.clone(), &|a: &mut f32, b| *a += b);
        assert_eq!(s.to_bits(), want.to_bits(), "n = {n}");
        h.update(&s.to_le_bytes());
    }
    Ok(h.finalize())
}
