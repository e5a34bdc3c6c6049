//! The three parallel modes on a small model: task-parallel compression of
//! its layers with progress, data-parallel and pipelined inference, and a
//! data-parallel gradient that is bit-identical at 1 and 2 threads.

use ndarray::{Array2, ArrayView2};
use squish::matrix::LinOp;
use squish::parallel::{DataParallel, Forward, LayerPipeline, ProgressEvent, RowSplit, TaskRunner};
use squish::prelude::*;
use squish::training::{Activation, Layer, LayerStack};

fn weight(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (((i * 131 + j * 71 + seed * 37) % 1009) as f32 / 1009.0 - 0.5) * 0.2
    })
}

fn main() -> squish::Result<()> {
    let pool = ThreadPool::new(2)?;
    let dims = [256, 512, 512, 256, 10];
    let weights: Vec<(String, Array2<f32>)> = dims
        .windows(2)
        .enumerate()
        .map(|(i, d)| (format!("fc{i}"), weight(d[1], d[0], i)))
        .collect();

    // Task parallel: one task per layer, largest first, at most ~8 MB in flight.
    let views: Vec<(String, ArrayView2<f32>)> =
        weights.iter().map(|(n, w)| (n.clone(), w.view())).collect();
    let pipeline = Pipeline::new()
        .prune(Magnitude::params(0.5).check()?)
        .quantize(IntQuantizer::params(8).per_row().check()?);
    let runner = TaskRunner::params().budget_bytes(8 << 20).check()?;
    let progress = |e: ProgressEvent| {
        if let ProgressEvent::Finished {
            name,
            done,
            total,
            elapsed,
            ok,
            ..
        } = e
        {
            println!(
                "[{done}/{total}] {name} {} in {elapsed:.1?}",
                if ok { "ok" } else { "FAILED" }
            );
        }
    };
    let outs = runner.compress_layers(&pipeline, &views, &pool, Some(&progress));
    let mut layers = Vec::new();
    for (i, o) in outs.into_iter().enumerate() {
        let out = o.result?;
        println!(
            "{}: {:.2}x smaller",
            o.name,
            out.report.stages.last().unwrap().storage.ratio()
        );
        let act = if i + 1 < dims.len() - 1 {
            Activation::Relu
        } else {
            Activation::Identity
        };
        layers.push(Layer::new(out.matrix).activation(act));
    }
    let model = LayerStack::new(layers)?;

    // Data parallel and pipelined inference give the plain forward pass, bit for bit.
    let x = weight(200, 256, 9) * 10.0;
    let plain = model.forward(x.view(), &Sequential)?;
    let dp = DataParallel::params().shard(32).check()?;
    assert_eq!(dp.forward(&model, x.view(), &pool)?, plain);
    let piped = LayerPipeline::params(model).micro_batch(25).check()?;
    assert_eq!(piped.forward(x.view(), &pool)?, plain);
    println!(
        "data-parallel and pipelined outputs equal the sequential one ({:?})",
        plain.dim()
    );

    // Model parallel: a 4096×256 matrix split into 4 row parts.
    let big = weight(4096, 256, 3);
    let split = RowSplit::from_dense(big.view(), 4, &|_r, b| Ok(b.to_owned()), &pool)?;
    // The parts run the dense kernel, so the split equals the unsplit dense
    // product bit for bit (and ndarray's `dot` to round-off).
    let whole = big.apply(x.view(), &Sequential)?;
    assert_eq!(split.apply(x.view(), &pool)?, whole);
    let gap = (&whole - &x.dot(&big.t()))
        .mapv(f32::abs)
        .fold(0.0f32, |a, &b| a.max(b));
    assert!(gap <= 1e-3 * whole.mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b)));
    println!("row split over 4 parts equals the unsplit product");

    // Training: the gradient of ½‖x·wᵀ − t‖² summed over shards, same bits at 1 and 2 threads.
    let w = weight(1, 256, 5);
    let grad = |exec: &dyn ParallelExecutor| {
        dp.grad(
            exec,
            x.nrows(),
            |r| {
                let xs = x.slice(ndarray::s![r, ..]);
                let err = xs.dot(&w.t()) - 1.0;
                err.t().dot(&xs)
            },
            |a, b| *a += &b,
        )
    };
    assert_eq!(grad(&Sequential)?, grad(&pool)?);
    println!("data-parallel gradient identical at 1 and 2 threads");
    Ok(())
}
