//! Parallel modes: every result bit-identical for any executor, and equal to
//! (or close to) independent sequential references.

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::matrix::{CompressedMatrix, LinOp};
use squish::parallel::{
    data_parallel_grad, dense_matmul, tree_reduce, ColSplit, DataParallel, Forward, LayerPipeline,
    ParallelError, ParallelExecutor, ProgressEvent, RowSplit, Sequential, TaskRunner, TaskSpec,
    ThreadPool,
};
use squish::pipeline::{Pipeline, PipelineOutput};
use squish::prelude::*;
use squish::quantization::QuantizationError;
use squish::training::{Activation, Layer, LayerStack, TrainingError};

fn rand_mat(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Sequential plus pools of 1, 2 and 3 threads.
fn executors() -> Vec<Box<dyn ParallelExecutor>> {
    vec![
        Box::new(Sequential),
        Box::new(ThreadPool::new(1).unwrap()),
        Box::new(ThreadPool::new(2).unwrap()),
        Box::new(ThreadPool::new(3).unwrap()),
    ]
}

fn int8(w: ArrayView2<f32>) -> CompressedMatrix {
    IntQuantizer::params(8)
        .per_row()
        .check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w).unwrap())
        .unwrap()
}

/// Equal up to f32 rounding: kernels may pick another path (and summation
/// order) for another batch size, e.g. the dense GEMM's blocking.
fn assert_rounding_close(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}");
    for (x, y) in a.iter().zip(b.iter()) {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// `x · Wᵀ` in f64, the independent reference.
fn matmul_f64(w: ArrayView2<f32>, x: ArrayView2<f32>) -> Array2<f64> {
    Array2::from_shape_fn((x.nrows(), w.nrows()), |(b, i)| {
        (0..w.ncols())
            .map(|j| x[[b, j]] as f64 * w[[i, j]] as f64)
            .sum()
    })
}

fn assert_close(y: &Array2<f32>, r: &Array2<f64>, tol: f64) {
    assert_eq!(y.dim(), r.dim());
    for (a, b) in y.iter().zip(r) {
        assert!((*a as f64 - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
    }
}

// ---------------------------------------------------------------- dense kernel

/// The dense kernel streams W in fixed row blocks (`kernels::gemv`): within
/// round-off of the GEMM `x.dot(&w.t())`, the same bits on every executor,
/// and each output row the same bits at any batch size.
#[test]
fn dense_row_split_kernel_equals_gemm_bit_for_bit() {
    // 700 rows of 512: blocks of 128 rows; 1100 rows of 4096: blocks of 16.
    for &(rows, cols, batch) in &[
        (700, 512, 64),
        (1100, 4096, 1),
        (700, 512, 1),
        (700, 512, 9),
        (300, 70, 5),
        (1, 3, 2),
    ] {
        let w = rand_mat(rows, cols, 1);
        let x = rand_mat(batch, cols, 2);
        let gemm = x.dot(&w.t());
        let m = CompressedMatrix::from_dense(w.view()).unwrap();
        let reference = m.matmul_reference(x.view()).unwrap();
        let want = dense_matmul(w.view(), x.view(), &Sequential).unwrap();
        assert_close(&want, &matmul_f64(w.view(), x.view()), 1e-4);
        // Each row on its own (batch 1) gives the same bits.
        for b in [0, batch / 2, batch - 1] {
            let one = dense_matmul(w.view(), x.slice(s![b..b + 1, ..]), &Sequential).unwrap();
            assert_eq!(bits(&one), bits(&want.slice(s![b..b + 1, ..]).to_owned()));
        }
        // A strided W gives the same bits.
        let wt = w.t().to_owned();
        let strided = dense_matmul(wt.t(), x.view(), &Sequential).unwrap();
        assert_eq!(bits(&strided), bits(&want));
        for exec in executors() {
            let y = m.matmul_on(x.view(), exec.as_ref()).unwrap();
            assert_eq!(bits(&y), bits(&want), "{rows}x{cols} b{batch} {exec:?}");
            assert_eq!(
                bits(&w.apply(x.view(), exec.as_ref()).unwrap()),
                bits(&want)
            );
            assert_eq!(
                bits(&dense_matmul(w.view(), x.view(), exec.as_ref()).unwrap()),
                bits(&want)
            );
        }
        assert_close(&gemm, &matmul_f64(w.view(), x.view()), 1e-4);
        assert_close(&reference, &matmul_f64(w.view(), x.view()), 1e-4);
    }
}

#[test]
fn dense_matmul_rejects_wrong_width() {
    let w = rand_mat(4, 3, 1);
    let err = dense_matmul(w.view(), rand_mat(2, 4, 2).view(), &Sequential).unwrap_err();
    assert!(matches!(err, SquishError::ShapeMismatch { .. }));
    assert!(matches!(
        w.apply(rand_mat(2, 5, 2).view(), &Sequential),
        Err(SquishError::ShapeMismatch { .. })
    ));
}

// ---------------------------------------------------------------- data parallel

/// Dense, int8 per-row and 70 %-pruned CSR versions of one matrix.
fn weight_forms(rows: usize, cols: usize, seed: u64) -> Vec<(&'static str, Box<dyn LinOp>)> {
    let w = rand_mat(rows, cols, seed);
    let csr = Magnitude::params(0.7)
        .check()
        .unwrap()
        .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    assert_eq!(csr.structure().kind(), "csr");
    let csr_int8 = IntQuantizer::params(8)
        .per_row()
        .check()
        .unwrap()
        .quantize(&csr)
        .unwrap();
    vec![
        ("dense array", Box::new(w.clone())),
        (
            "dense compressed",
            Box::new(CompressedMatrix::from_dense(w.view()).unwrap()),
        ),
        ("int8", Box::new(int8(w.view()))),
        ("csr", Box::new(csr)),
        ("csr int8", Box::new(csr_int8)),
    ]
}

#[test]
fn data_parallel_matmul_equals_sequential_bit_for_bit() {
    let x = rand_mat(50, 96, 7);
    for (name, op) in weight_forms(160, 96, 3) {
        let whole = op.apply(x.view(), &Sequential).unwrap();
        for shard in [1, 7, 16, 64] {
            let dp = DataParallel::params().shard(shard).check().unwrap();
            let seq = dp.forward(op.as_ref(), x.view(), &Sequential).unwrap();
            assert_rounding_close(&seq, &whole, name);
            if name.contains("int8") {
                // Weight-only kernels compute each output row by the same
                // dot product at every batch size (kernels::tile).
                assert_eq!(bits(&seq), bits(&whole), "{name} shard {shard}");
            }
            if shard >= x.nrows() {
                assert_eq!(
                    bits(&seq),
                    bits(&whole),
                    "{name}: one shard is the whole batch"
                );
            }
            for exec in executors() {
                let y = dp.forward(op.as_ref(), x.view(), exec.as_ref()).unwrap();
                assert_eq!(bits(&y), bits(&seq), "{name} shard {shard} {exec:?}");
            }
        }
    }
}

fn three_layer_model(seed: u64) -> LayerStack {
    let mut rng = StdRng::seed_from_u64(seed);
    let bias =
        |n: usize, rng: &mut StdRng| Array1::from_shape_fn(n, |_| rng.random_range(-0.1f32..0.1));
    LayerStack::new(vec![
        Layer::new(int8(rand_mat(64, 32, seed).view()))
            .with_bias(bias(64, &mut rng).view())
            .unwrap()
            .activation(Activation::Relu),
        Layer::new(rand_mat(48, 64, seed + 1))
            .with_bias(bias(48, &mut rng).view())
            .unwrap()
            .activation(Activation::Tanh),
        Layer::new(
            Magnitude::params(0.5)
                .check()
                .unwrap()
                .prune(&CompressedMatrix::from_dense(rand_mat(10, 48, seed + 2).view()).unwrap())
                .unwrap(),
        )
        .activation(Activation::Sigmoid),
    ])
    .unwrap()
}

#[test]
fn data_parallel_model_forward_equals_sequential_bit_for_bit() {
    let model = three_layer_model(11);
    let x = rand_mat(37, 32, 12);
    let whole = model.forward(x.view(), &Sequential).unwrap();
    assert_eq!(whole.dim(), (37, 10));
    assert!(whole.iter().all(|&v| v > 0.0 && v < 1.0), "sigmoid outputs");
    for shard in [1, 5, 37, 100] {
        let seq =
            squish::parallel::data_parallel_forward(&model, x.view(), shard, &Sequential).unwrap();
        assert_rounding_close(&seq, &whole, "model");
        if shard >= x.nrows() {
            assert_eq!(bits(&seq), bits(&whole), "one shard is the whole batch");
        }
        for exec in executors() {
            let y = squish::parallel::data_parallel_forward(&model, x.view(), shard, exec.as_ref())
                .unwrap();
            assert_eq!(bits(&y), bits(&seq), "shard {shard} {exec:?}");
        }
    }
    // The layer stack against a hand-written forward pass.
    let mut h = x.clone();
    for l in model.layers() {
        h = l.forward(h.view(), &Sequential).unwrap();
    }
    assert_eq!(bits(&h), bits(&whole));
}

#[test]
fn layer_forward_matches_f64_reference() {
    let w = rand_mat(20, 12, 5);
    let b = Array1::from_shape_fn(20, |i| i as f32 * 0.05 - 0.5);
    let x = rand_mat(6, 12, 6);
    for act in [
        Activation::Identity,
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
    ] {
        let layer = Layer::new(w.clone())
            .with_bias(b.view())
            .unwrap()
            .activation(act);
        let y = layer
            .forward(x.view(), &ThreadPool::new(2).unwrap())
            .unwrap();
        let mut r = matmul_f64(w.view(), x.view());
        for mut row in r.outer_iter_mut() {
            for (i, v) in row.iter_mut().enumerate() {
                let z = *v + b[i] as f64;
                *v = match act {
                    Activation::Identity => z,
                    Activation::Relu => z.max(0.0),
                    Activation::Tanh => z.tanh(),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Activation::Gelu => {
                        let c = (2.0 / std::f64::consts::PI).sqrt();
                        0.5 * z * (1.0 + (c * (z + 0.044715 * z.powi(3))).tanh())
                    }
                };
            }
        }
        assert_close(&y, &r, 1e-5);
    }
}

#[test]
fn data_parallel_errors() {
    assert!(matches!(
        DataParallel::params().shard(0).check(),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "shard",
            ..
        }))
    ));
    let dp = DataParallel::params().shard(4).check().unwrap();
    let m = int8(rand_mat(8, 6, 1).view());
    // Wrong width, empty batch.
    assert!(matches!(
        dp.forward(&m, rand_mat(5, 7, 2).view(), &Sequential),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        dp.forward(&m, Array2::<f32>::zeros((0, 6)).view(), &Sequential),
        Err(SquishError::Empty { .. })
    ));
    // A NaN in the third shard (rows 8..12) surfaces as that shard's error.
    let mut x = rand_mat(14, 6, 3);
    x[[9, 2]] = f32::NAN;
    let pool = ThreadPool::new(2).unwrap();
    match dp.forward(&m, x.view(), &pool) {
        Err(SquishError::NonFinite { index, .. }) => assert_eq!(index, 6 + 2), // row 1 of the shard
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert!(matches!(
        dp.grad(&Sequential, 0, |r| r.len(), |a, b| *a += b),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "n_samples",
            ..
        }))
    ));
    // try_grad: the first failing shard's error, in shard order.
    let err = dp
        .try_grad(
            &pool,
            40,
            |r| {
                if r.start >= 20 {
                    Err(SquishError::invalid("shard_start", r.start, "test failure"))
                } else {
                    Ok(r.len())
                }
            },
            |a, b| *a += b,
        )
        .unwrap_err();
    assert!(err.to_string().contains("= 20"), "{err}");
}

#[test]
fn tree_reduce_keeps_order_and_shape() {
    // A non-commutative "add" shows the order: concatenation gives 0..n in order.
    for n in 1..12 {
        for exec in executors() {
            let items: Vec<String> = (0..n).map(|i| format!("{i:x}")).collect();
            let out = tree_reduce(exec.as_ref(), items, &|a: &mut String, b: String| {
                a.push_str(&b)
            });
            let want: String = (0..n).map(|i| format!("{i:x}")).collect();
            assert_eq!(out, want);
        }
    }
    // The tree shape: ((a+b)+(c+d))+e, marked by parentheses.
    let items: Vec<String> = "abcde".chars().map(String::from).collect();
    let out = tree_reduce(&Sequential, items, &|a: &mut String, b: String| {
        *a = format!("({a}+{b})")
    });
    assert_eq!(out, "(((a+b)+(c+d))+e)");
}

// ---------------------------------------------------------------- training

/// A 1-hidden-layer tanh net with a softmax output.
#[derive(Clone, Debug, PartialEq)]
struct Net {
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
}

impl Net {
    fn new(d: usize, h: usize, c: usize) -> Self {
        Net {
            w1: rand_mat(h, d, 100) * 0.5,
            b1: Array1::zeros(h),
            w2: rand_mat(c, h, 101) * 0.5,
            b2: Array1::zeros(c),
        }
    }

    /// Summed cross-entropy gradient (and loss) over the samples in `r`, in f32.
    fn grad(&self, x: ArrayView2<f32>, y: &[usize], r: Range<usize>) -> (Net, f32) {
        let mut g = Net {
            w1: Array2::zeros(self.w1.dim()),
            b1: Array1::zeros(self.b1.len()),
            w2: Array2::zeros(self.w2.dim()),
            b2: Array1::zeros(self.b2.len()),
        };
        let mut loss = 0.0f32;
        for n in r {
            let xn = x.row(n);
            let h = (self.w1.dot(&xn) + &self.b1).mapv(f32::tanh);
            let z = self.w2.dot(&h) + &self.b2;
            let zmax = z.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e = z.mapv(|v| (v - zmax).exp());
            let p = &e / e.sum();
            loss -= p[y[n]].ln();
            let mut dz = p;
            dz[y[n]] -= 1.0;
            let dh = self.w2.t().dot(&dz) * h.mapv(|v| 1.0 - v * v);
            g.w2 += &dz
                .view()
                .insert_axis(Axis(1))
                .dot(&h.view().insert_axis(Axis(0)));
            g.b2 += &dz;
            g.w1 += &dh.view().insert_axis(Axis(1)).dot(&xn.insert_axis(Axis(0)));
            g.b1 += &dh;
        }
        (g, loss)
    }

    fn add(a: &mut (Net, f32), b: (Net, f32)) {
        a.0.w1 += &b.0.w1;
        a.0.b1 += &b.0.b1;
        a.0.w2 += &b.0.w2;
        a.0.b2 += &b.0.b2;
        a.1 += b.1;
    }

    fn step(&mut self, g: &Net, lr: f32) {
        self.w1.scaled_add(-lr, &g.w1);
        self.b1.scaled_add(-lr, &g.b1);
        self.w2.scaled_add(-lr, &g.w2);
        self.b2.scaled_add(-lr, &g.b2);
    }

    fn bits(&self) -> Vec<u32> {
        self.w1
            .iter()
            .chain(&self.b1)
            .chain(&self.w2)
            .chain(&self.b2)
            .map(|v| v.to_bits())
            .collect()
    }
}

/// Three gaussian blobs in 10 dimensions.
fn blobs(n: usize) -> (Array2<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(42);
    let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let x = Array2::from_shape_fn((n, 10), |(i, j)| {
        let centre = if j % 3 == y[i] { 1.5 } else { 0.0 };
        centre + rng.random_range(-1.0f32..1.0)
    });
    (x, y)
}

/// 3 epochs of minibatch SGD, each minibatch's gradient data-parallel over shards of 8.
fn train(exec: &dyn ParallelExecutor, shard: usize) -> (Net, Vec<f32>) {
    let (x, y) = blobs(240);
    let mut net = Net::new(10, 16, 3);
    let mut losses = Vec::new();
    let batch = 48;
    for _epoch in 0..3 {
        let mut epoch_loss = 0.0;
        for b0 in (0..240).step_by(batch) {
            let xb = x.slice(s![b0..b0 + batch, ..]);
            let yb = &y[b0..b0 + batch];
            let (g, loss) =
                data_parallel_grad(exec, batch, shard, |r| net.grad(xb, yb, r), Net::add).unwrap();
            net.step(&g, 0.1 / batch as f32);
            epoch_loss += loss;
        }
        losses.push(epoch_loss / 240.0);
    }
    (net, losses)
}

#[test]
fn data_parallel_training_is_bit_identical_at_1_2_3_threads() {
    let (reference, losses) = train(&Sequential, 8);
    assert!(
        losses[2] < losses[0] * 0.8,
        "training should learn: {losses:?}"
    );
    for t in 1..=3 {
        let (net, l) = train(&ThreadPool::new(t).unwrap(), 8);
        assert_eq!(net.bits(), reference.bits(), "{t} threads");
        assert_eq!(l, losses);
    }
    // The shard size (not the thread count) fixes the summation order: another
    // shard size rounds differently, so the equality above is not vacuous.
    let (other, _) = train(&Sequential, 16);
    assert_ne!(other.bits(), reference.bits());
}

#[test]
fn data_parallel_gradient_matches_f64_reference() {
    let (x, y) = blobs(60);
    let net = Net::new(10, 16, 3);
    let (g, _) = data_parallel_grad(
        &ThreadPool::new(2).unwrap(),
        60,
        7,
        |r| net.grad(x.view(), &y, r),
        Net::add,
    )
    .unwrap();
    // Naive f64 gradient of W2 (the output layer) over all samples.
    let f = |a: &Array2<f32>| a.mapv(|v| v as f64);
    let (w1, w2) = (f(&net.w1), f(&net.w2));
    let mut gw2 = Array2::<f64>::zeros(w2.dim());
    for n in 0..60 {
        let xn = x.row(n).mapv(|v| v as f64);
        let h = w1.dot(&xn).mapv(f64::tanh);
        let z = w2.dot(&h);
        let zmax = z.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let e = z.mapv(|v| (v - zmax).exp());
        let mut p = &e / e.sum();
        p[y[n]] -= 1.0;
        for i in 0..3 {
            for j in 0..16 {
                gw2[[i, j]] += p[i] * h[j];
            }
        }
    }
    assert_close(&g.w2, &gw2, 1e-4);
}

// ---------------------------------------------------------------- model parallel

#[test]
fn row_split_equals_unsplit_bit_for_bit() {
    let (rows, cols) = (130, 72);
    let w = rand_mat(rows, cols, 21);
    let x = rand_mat(9, cols, 22);
    let q = IntQuantizer::params(8).per_row().check().unwrap();
    // The pruning mask is chosen on the whole matrix, then each part takes its rows.
    let keep = Magnitude::params(0.6)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    let whole_int8 = q
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let whole_csr = CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap();
    let whole_csr_int8 = q.quantize(&whole_csr).unwrap();
    for parts in [1, 3, 5, 130] {
        let pool = ThreadPool::new(2).unwrap();
        let int8_split = RowSplit::from_dense(
            w.view(),
            parts,
            &|_r, b| q.quantize(&CompressedMatrix::from_dense(b)?),
            &pool,
        )
        .unwrap();
        let csr_split = RowSplit::from_dense(
            w.view(),
            parts,
            &|r, b| CompressedMatrix::csr_from_mask(b, keep.slice(s![r, ..])),
            &pool,
        )
        .unwrap();
        let csr_int8_split = RowSplit::from_dense(
            w.view(),
            parts,
            &|r, b| q.quantize(&CompressedMatrix::csr_from_mask(b, keep.slice(s![r, ..]))?),
            &pool,
        )
        .unwrap();
        let dense_split =
            RowSplit::from_dense(w.view(), parts, &|_r, b| Ok(b.to_owned()), &pool).unwrap();
        assert_eq!(int8_split.parts(), parts);
        assert_eq!(int8_split.shape(), (rows, cols));
        let cases: [(&RowSplit, Array2<f32>); 4] = [
            (&int8_split, whole_int8.matmul(x.view()).unwrap()),
            (&csr_split, whole_csr.matmul(x.view()).unwrap()),
            (&csr_int8_split, whole_csr_int8.matmul(x.view()).unwrap()),
            (
                &dense_split,
                dense_matmul(w.view(), x.view(), &Sequential).unwrap(),
            ),
        ];
        for (split, want) in cases {
            for exec in executors() {
                let y = split.apply(x.view(), exec.as_ref()).unwrap();
                assert_eq!(bits(&y), bits(&want), "{parts} parts {exec:?}");
            }
        }
    }
}

#[test]
fn col_split_is_bit_identical_across_executors_and_close_to_f64() {
    let (rows, cols) = (40, 150);
    let w = rand_mat(rows, cols, 31);
    let x = rand_mat(7, cols, 32);
    let keep = Magnitude::params(0.5)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    let reference = matmul_f64(w.view(), x.view());
    let masked = &w * &keep.mapv(|k| if k { 1.0f32 } else { 0.0 });
    let reference_csr = matmul_f64(masked.view(), x.view());
    for parts in [1, 2, 3, 7] {
        let s = &Sequential;
        let dense = ColSplit::from_dense(w.view(), parts, &|_c, b| Ok(b.to_owned()), s).unwrap();
        let int8_split = ColSplit::from_dense(w.view(), parts, &|_c, b| Ok(int8(b)), s).unwrap();
        let csr = ColSplit::from_dense(
            w.view(),
            parts,
            &|c, b| CompressedMatrix::csr_from_mask(b, keep.slice(s![.., c])),
            s,
        )
        .unwrap();
        assert_eq!(csr.shape(), (rows, cols));
        let y_dense = dense.apply(x.view(), s).unwrap();
        let y_int8 = int8_split.apply(x.view(), s).unwrap();
        let y_csr = csr.apply(x.view(), s).unwrap();
        assert_close(&y_dense, &reference, 1e-5);
        assert_close(&y_csr, &reference_csr, 1e-5);
        // int8 per row of each part: against the decoded parts, side by side.
        let ranges = squish::parallel::even_ranges(cols, parts);
        let mut decoded = Array2::<f32>::zeros((rows, cols));
        for r in &ranges {
            let part = int8(w.slice(s![.., r.clone()])).to_dense();
            decoded.slice_mut(s![.., r.clone()]).assign(&part);
        }
        assert_close(&y_int8, &matmul_f64(decoded.view(), x.view()), 1e-5);
        // The fixed-order sum of partials, written out: ((p0 + p1) + p2) + ...
        let part = |r: &Range<usize>| {
            dense_matmul(
                w.slice(s![.., r.clone()]),
                x.slice(s![.., r.clone()]),
                &Sequential,
            )
            .unwrap()
        };
        let mut manual = part(&ranges[0]);
        for r in &ranges[1..] {
            manual += &part(r);
        }
        assert_eq!(bits(&y_dense), bits(&manual));
        for exec in executors() {
            assert_eq!(
                bits(&dense.apply(x.view(), exec.as_ref()).unwrap()),
                bits(&y_dense)
            );
            assert_eq!(
                bits(&int8_split.apply(x.view(), exec.as_ref()).unwrap()),
                bits(&y_int8)
            );
            assert_eq!(
                bits(&csr.apply(x.view(), exec.as_ref()).unwrap()),
                bits(&y_csr)
            );
        }
    }
}

#[test]
fn splits_reject_bad_input() {
    let w = rand_mat(6, 4, 1);
    let id = |_: Range<usize>, b: ArrayView2<f32>| Ok(b.to_owned());
    for parts in [0, 7] {
        assert!(matches!(
            RowSplit::from_dense(w.view(), parts, &id, &Sequential),
            Err(SquishError::InvalidParameter {
                name: "row parts",
                ..
            })
        ));
    }
    assert!(matches!(
        ColSplit::from_dense(w.view(), 5, &id, &Sequential),
        Err(SquishError::InvalidParameter {
            name: "column parts",
            ..
        })
    ));
    assert!(matches!(
        RowSplit::new(vec![]),
        Err(SquishError::InvalidParameter { .. })
    ));
    assert!(matches!(
        ColSplit::new(vec![]),
        Err(SquishError::InvalidParameter { .. })
    ));
    let mismatched: Vec<Box<dyn LinOp>> =
        vec![Box::new(rand_mat(3, 4, 1)), Box::new(rand_mat(3, 5, 2))];
    assert!(matches!(
        RowSplit::new(mismatched),
        Err(SquishError::ShapeMismatch { .. })
    ));
    let mismatched: Vec<Box<dyn LinOp>> =
        vec![Box::new(rand_mat(3, 4, 1)), Box::new(rand_mat(2, 4, 2))];
    assert!(matches!(
        ColSplit::new(mismatched),
        Err(SquishError::ShapeMismatch { .. })
    ));
    let rs = RowSplit::from_dense(w.view(), 2, &id, &Sequential).unwrap();
    let cs = ColSplit::from_dense(w.view(), 2, &id, &Sequential).unwrap();
    for op in [&rs as &dyn LinOp, &cs] {
        assert!(matches!(
            op.apply(rand_mat(2, 5, 3).view(), &Sequential),
            Err(SquishError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            op.apply(Array2::zeros((0, 4)).view(), &Sequential),
            Err(SquishError::Empty { .. })
        ));
    }
    // A failing build surfaces as that build's error.
    let err = RowSplit::from_dense(
        w.view(),
        3,
        &|r, b| {
            if r.start == 2 {
                Err(SquishError::invalid("part", r.start, "test failure"))
            } else {
                Ok(b.to_owned())
            }
        },
        &ThreadPool::new(2).unwrap(),
    )
    .err()
    .unwrap();
    assert!(matches!(
        err,
        SquishError::InvalidParameter { name: "part", .. }
    ));
    // A part that rejects its input (NaN) fails the whole product.
    let mut x = rand_mat(2, 4, 4);
    x[[1, 1]] = f32::INFINITY;
    let q = RowSplit::from_dense(
        w.view(),
        2,
        &|_r, b| CompressedMatrix::from_dense(b),
        &Sequential,
    )
    .unwrap();
    assert!(matches!(
        q.apply(x.view(), &Sequential),
        Err(SquishError::NonFinite { .. })
    ));
}

#[test]
fn layer_pipeline_equals_plain_forward_bit_for_bit() {
    let x = rand_mat(45, 32, 41);
    let plain = three_layer_model(51)
        .forward(x.view(), &Sequential)
        .unwrap();
    for mb in [1, 4, 16, 45, 64] {
        let piped = LayerPipeline::params(three_layer_model(51))
            .micro_batch(mb)
            .check()
            .unwrap();
        assert_eq!(piped.stages(), 3);
        assert_eq!((piped.in_dim(), piped.out_dim()), (32, 10));
        let seq = piped.forward(x.view(), &Sequential).unwrap();
        assert_rounding_close(&seq, &plain, "pipeline");
        if mb >= x.nrows() {
            assert_eq!(
                bits(&seq),
                bits(&plain),
                "one micro-batch is the whole batch"
            );
        }
        for exec in executors() {
            let y = piped.forward(x.view(), exec.as_ref()).unwrap();
            assert_eq!(bits(&y), bits(&seq), "micro-batch {mb} {exec:?}");
        }
    }
    // Stages made of several layers, and a pipeline inside data parallelism.
    let stages: Vec<Box<dyn Forward>> = vec![Box::new(three_layer_model(51))];
    let one = LayerPipeline::params_stages(stages)
        .micro_batch(8)
        .check()
        .unwrap();
    let dp = DataParallel::params().shard(20).check().unwrap();
    assert_eq!(
        bits(
            &dp.forward(&one, x.view(), &ThreadPool::new(2).unwrap())
                .unwrap()
        ),
        bits(&plain)
    );
}

#[test]
fn model_builders_reject_bad_input() {
    assert!(matches!(
        LayerStack::new(vec![]),
        Err(SquishError::Training(TrainingError::NoLayers))
    ));
    let bad_chain = || vec![Layer::new(rand_mat(5, 3, 1)), Layer::new(rand_mat(2, 4, 2))];
    assert!(matches!(
        LayerStack::new(bad_chain()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    let stages: Vec<Box<dyn Forward>> = bad_chain()
        .into_iter()
        .map(|l| Box::new(l) as Box<dyn Forward>)
        .collect();
    assert!(matches!(
        LayerPipeline::params_stages(stages).check(),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        LayerPipeline::params_stages(vec![]).check(),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "stages",
            ..
        }))
    ));
    assert!(matches!(
        LayerPipeline::params(three_layer_model(1))
            .micro_batch(0)
            .check(),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "micro_batch",
            ..
        }))
    ));
    assert!(matches!(
        Layer::new(rand_mat(5, 3, 1)).with_bias(Array1::zeros(4).view()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Layer::new(rand_mat(2, 3, 1)).with_bias(ndarray::array![0.0f32, f32::NAN].view()),
        Err(SquishError::NonFinite { .. })
    ));
    let piped = LayerPipeline::params(three_layer_model(1))
        .micro_batch(4)
        .check()
        .unwrap();
    assert!(matches!(
        piped.forward(rand_mat(3, 31, 2).view(), &Sequential),
        Err(SquishError::ShapeMismatch { .. })
    ));
    // A NaN in micro-batch 2 stops the pipeline with that micro-batch's error.
    let mut x = rand_mat(12, 32, 3);
    x[[9, 0]] = f32::NAN;
    assert!(matches!(
        piped.forward(x.view(), &ThreadPool::new(2).unwrap()),
        Err(SquishError::NonFinite { .. })
    ));
}

// ---------------------------------------------------------------- task parallel

fn twelve_layers() -> Vec<(String, Array2<f32>)> {
    (0..12)
        .map(|i| {
            let (r, c) = (32 + 16 * (i % 5), 48 + 8 * (i % 4));
            (format!("layer{i}"), rand_mat(r, c, 200 + i as u64))
        })
        .collect()
}

fn compression() -> Pipeline {
    Pipeline::new()
        .prune(Magnitude::params(0.5).check().unwrap())
        .quantize(IntQuantizer::params(8).per_row().check().unwrap())
}

fn same_output(a: &PipelineOutput, b: &PipelineOutput) {
    assert_eq!(a.matrix, b.matrix);
    // Debug prints floats exactly (shortest round trip), so equal text = equal bits.
    assert_eq!(format!("{:?}", a.report), format!("{:?}", b.report));
}

#[test]
fn task_parallel_compression_of_12_layers_equals_sequential() {
    let layers = twelve_layers();
    let views: Vec<(String, ArrayView2<f32>)> =
        layers.iter().map(|(n, w)| (n.clone(), w.view())).collect();
    let pipeline = compression();
    let sequential: Vec<PipelineOutput> = layers
        .iter()
        .map(|(_, w)| pipeline.run(w.view()).unwrap())
        .collect();
    let largest = views
        .iter()
        .map(|(_, w)| squish::parallel::pipeline_working_set(w.nrows(), w.ncols(), 2))
        .max()
        .unwrap();
    for budget in [usize::MAX, 2 * largest, 1] {
        let runner = TaskRunner::params().budget_bytes(budget).check().unwrap();
        for exec in executors() {
            let events = Mutex::new(Vec::new());
            let progress = |e: ProgressEvent| events.lock().unwrap().push(e);
            let out = runner.compress_layers(&pipeline, &views, exec.as_ref(), Some(&progress));
            assert_eq!(out.len(), 12);
            for (i, o) in out.iter().enumerate() {
                assert_eq!(o.name, format!("layer{i}"));
                same_output(o.result.as_ref().unwrap(), &sequential[i]);
            }
            // Memory in flight never exceeds max(budget, largest task).
            let events = events.into_inner().unwrap();
            for e in &events {
                if let ProgressEvent::Started {
                    in_flight_bytes, ..
                } = e
                {
                    assert!(
                        *in_flight_bytes <= budget.max(largest),
                        "{in_flight_bytes} > {budget}"
                    );
                }
            }
            check_progress(&events, 12, &[]);
        }
    }
    // run_named delegates to the task runner and keeps input order.
    let named = pipeline.run_named(&views, &ThreadPool::new(2).unwrap());
    for (i, (name, r)) in named.iter().enumerate() {
        assert_eq!(name, &format!("layer{i}"));
        same_output(r.as_ref().unwrap(), &sequential[i]);
    }
}

/// Started and Finished once per task, `done` counts up to `total`, `ok` as expected.
fn check_progress(events: &[ProgressEvent], n: usize, failing: &[usize]) {
    let mut started = vec![0; n];
    let mut finished = vec![0; n];
    let mut dones = Vec::new();
    for e in events {
        match e {
            ProgressEvent::Started { index, .. } => started[*index] += 1,
            ProgressEvent::Finished {
                index,
                ok,
                done,
                total,
                ..
            } => {
                assert_eq!(*total, n);
                assert_eq!(*ok, !failing.contains(index), "task {index}");
                assert_eq!(started[*index], 1, "finished after started");
                finished[*index] += 1;
                dones.push(*done);
            }
        }
    }
    assert_eq!(started, vec![1; n]);
    assert_eq!(finished, vec![1; n]);
    dones.sort();
    assert_eq!(dones, (1..=n).collect::<Vec<_>>());
}

#[test]
fn tasks_start_largest_first() {
    let specs: Vec<TaskSpec> = [5usize, 9, 1, 9, 3]
        .iter()
        .enumerate()
        .map(|(i, &c)| TaskSpec::new(format!("t{i}"), c))
        .collect();
    let order = Mutex::new(Vec::new());
    let progress = |e: ProgressEvent| {
        if let ProgressEvent::Started { index, .. } = e {
            order.lock().unwrap().push(index)
        }
    };
    let out = TaskRunner::default().run(&Sequential, &specs, |i| Ok(i * 10), Some(&progress));
    assert_eq!(order.into_inner().unwrap(), vec![1, 3, 0, 4, 2]);
    let none: Vec<squish::parallel::TaskOutcome<usize>> =
        TaskRunner::default().run(&ThreadPool::new(2).unwrap(), &[], Ok, None);
    assert!(none.is_empty());
    assert_eq!(
        out.iter()
            .map(|o| *o.result.as_ref().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 10, 20, 30, 40]
    );
}

#[test]
fn budget_bounds_concurrency() {
    // Four tasks of 10 bytes under a budget of 15: never two at once, even on 3 threads.
    let specs: Vec<TaskSpec> = (0..4).map(|i| TaskSpec::new(format!("t{i}"), 10)).collect();
    let running = Mutex::new((0usize, 0usize)); // (now, max)
    let work = |i: usize| {
        {
            let mut r = running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        running.lock().unwrap().0 -= 1;
        Ok(i)
    };
    let runner = TaskRunner::params().budget_bytes(15).check().unwrap();
    runner.run(&ThreadPool::new(3).unwrap(), &specs, work, None);
    assert_eq!(running.lock().unwrap().1, 1);
    // With room for two, two run at once on a 2-thread pool.
    let runner = TaskRunner::params().budget_bytes(20).check().unwrap();
    *running.lock().unwrap() = (0, 0);
    runner.run(
        &ThreadPool::new(2).unwrap(),
        &specs,
        |i| {
            let r = work(i);
            std::thread::sleep(std::time::Duration::from_millis(20));
            r
        },
        None,
    );
    assert_eq!(running.lock().unwrap().1, 2);
    assert!(matches!(
        TaskRunner::params().budget_bytes(0).check(),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "budget_bytes",
            ..
        }))
    ));
}

#[test]
fn a_failing_task_keeps_the_others_results() {
    let mut layers = twelve_layers();
    layers[4].1[[3, 7]] = f32::NAN;
    let views: Vec<(String, ArrayView2<f32>)> =
        layers.iter().map(|(n, w)| (n.clone(), w.view())).collect();
    let pipeline = compression();
    for exec in executors() {
        let events = Mutex::new(Vec::new());
        let progress = |e: ProgressEvent| events.lock().unwrap().push(e);
        let out = TaskRunner::default().compress_layers(
            &pipeline,
            &views,
            exec.as_ref(),
            Some(&progress),
        );
        for (i, o) in out.iter().enumerate() {
            if i == 4 {
                assert!(
                    matches!(o.result, Err(SquishError::NonFinite { .. })),
                    "{:?}",
                    o.result
                );
            } else {
                same_output(
                    o.result.as_ref().unwrap(),
                    &pipeline.run(views[i].1).unwrap(),
                );
            }
        }
        check_progress(&events.into_inner().unwrap(), 12, &[4]);
    }
    // A panicking task becomes that task's error.
    let specs: Vec<TaskSpec> = (0..6)
        .map(|i| TaskSpec::new(format!("job{i}"), 1))
        .collect();
    let out = TaskRunner::default().run(
        &ThreadPool::new(2).unwrap(),
        &specs,
        |i| {
            if i == 2 {
                panic!("boom in job 2");
            }
            Ok(i * i)
        },
        None,
    );
    for (i, o) in out.iter().enumerate() {
        match &o.result {
            Ok(v) => assert_eq!(*v, i * i),
            Err(SquishError::Parallel(ParallelError::TaskPanicked { task, message })) => {
                assert_eq!(i, 2);
                assert_eq!(task, "job2");
                assert!(message.contains("boom"));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn sweep_over_bit_widths_runs_concurrently_with_per_job_outcomes() {
    let w = rand_mat(96, 64, 7);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let x = rand_mat(4, 64, 8);
    let exact = matmul_f64(w.view(), x.view());
    let widths = [8u8, 4, 3];
    let job = |&bits: &u8| -> squish::Result<f64> {
        let q = IntQuantizer::params(bits).per_row().check()?.quantize(&m)?;
        let y = q.matmul(x.view())?;
        Ok(y.iter()
            .zip(&exact)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
            .sqrt())
    };
    let runner = TaskRunner::default();
    let par = runner.sweep(
        &ThreadPool::new(2).unwrap(),
        &widths,
        |b| format!("int{b}"),
        |_| 96 * 64 * 4,
        job,
        None,
    );
    let seq: Vec<_> = widths.iter().map(job).collect();
    assert_eq!(par[0].name, "int8");
    assert_eq!(
        par[0].result.as_ref().unwrap().to_bits(),
        seq[0].as_ref().unwrap().to_bits()
    );
    assert_eq!(
        par[1].result.as_ref().unwrap().to_bits(),
        seq[1].as_ref().unwrap().to_bits()
    );
    // Fewer bits, more error; 3 bits is not supported and fails on its own.
    assert!(par[0].result.as_ref().unwrap() < par[1].result.as_ref().unwrap());
    assert!(matches!(
        par[2].result,
        Err(SquishError::Quantization(
            QuantizationError::UnsupportedBits(3)
        ))
    ));
}
