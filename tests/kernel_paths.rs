//! Every kernel path the dispatch chooses (issue #20, speed cliffs): each
//! encoding on each structure, at shapes whose rows do not start on a byte
//! (the MLP's 100 × 300, odd widths) and at the batch sizes where the
//! chooser switches paths, against an exact f64 product of the decoded
//! weights and against the reference kernel; tile-based paths give every
//! row bit-identical whatever the batch it was computed in, and every path
//! gives the same bits on any executor.

use ndarray::{s, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use squish::compression::sharing::KMeans;
use squish::kernels::Tier;
use squish::matrix::{CompressedMatrix, Structure};
use squish::parallel::{ParallelExecutor, Sequential, ThreadPool};
use squish::pruning::{Magnitude, NMPruner, Pruner};
use squish::quantization::{Binary, IntQuantizer, Quantizer, Ternary};

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 1.0).unwrap();
    Array2::from_shape_fn((rows, cols), |_| d.sample(&mut rng))
}

/// `|y − x·ŵᵀ| ≤ 1e-5 · (|x|·|ŵ|ᵀ) + 1e-6`, all in f64.
fn assert_close(y: ArrayView2<f32>, w_hat: ArrayView2<f32>, x: ArrayView2<f32>, what: &str) {
    let w64 = w_hat.mapv(f64::from);
    let x64 = x.mapv(f64::from);
    let exact = x64.dot(&w64.t());
    let bound = x64.mapv(f64::abs).dot(&w64.mapv(f64::abs).t());
    for ((&a, &e), &b) in y.iter().zip(exact.iter()).zip(bound.iter()) {
        assert!(
            (a as f64 - e).abs() <= 1e-5 * b + 1e-6,
            "{what}: {a} vs {e} (bound {b})"
        );
    }
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// The encodings of a structure (`s`) that the dispatch has fast paths for.
fn forms(s: &CompressedMatrix, k256: bool) -> Vec<CompressedMatrix> {
    let int = |bits: u8, g: Option<usize>| {
        let p = IntQuantizer::params(bits);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        p.check().unwrap().quantize(s).unwrap()
    };
    let mut out = vec![
        s.clone(),
        int(8, None),
        int(4, None),
        int(4, Some(32)),
        Binary.quantize(s).unwrap(),
        Ternary.quantize(s).unwrap(),
        KMeans::params(16).check().unwrap().quantize(s).unwrap(),
    ];
    if k256 {
        out.push(KMeans::params(256).check().unwrap().quantize(s).unwrap());
    }
    out
}

#[test]
fn every_chosen_path_matches_the_reference_at_every_batch() {
    let pool2 = ThreadPool::new(2).unwrap();
    let pool3 = ThreadPool::new(3).unwrap();
    for (si, &(rows, cols)) in [(100, 300), (9, 100), (7, 36), (5, 52), (3, 64)]
        .iter()
        .enumerate()
    {
        let w = gaussian(rows, cols, 10 + si as u64);
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let nm = NMPruner::params(2, 4)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap();
        let csr = Magnitude::params(0.9)
            .check()
            .unwrap()
            .prune(&dense)
            .unwrap();
        let big = rows * cols >= 4096;
        let mut all = forms(&dense, big);
        all.extend(forms(&nm, big));
        all.push(KMeans::params(32).check().unwrap().quantize(&csr).unwrap());
        all.push(csr);
        let xall = gaussian(256, cols, 100 + si as u64);
        for m in all {
            let what = format!("{} {} {rows}x{cols}", m.structure().kind(), m.encoding());
            let w_hat = m.to_dense();
            let whole = m.matmul(xall.view()).unwrap();
            assert_close(whole.view(), w_hat.view(), xall.view(), &what);
            let r = m.matmul_reference(xall.view()).unwrap();
            assert_close(r.view(), w_hat.view(), xall.view(), &what);
            // Every chosen path keeps a row's batch-1 bits at every batch
            // size (dense f32 is checked in its own tests; CSR and N:M f32 off
            // the 2:4 kernels run the sparse kernels, batch 1's partial sums
            // in every lane).
            let tiled = !matches!((m.structure(), m.encoding()), (Structure::Dense, "f32"));
            for batch in [1, 2, 3, 8, 9, 16, 64] {
                for b0 in [0, 256 - batch] {
                    let x = xall.slice(s![b0..b0 + batch, ..]);
                    let seq = m.matmul_on(x, &Sequential).unwrap();
                    assert_close(
                        seq.view(),
                        w_hat.view(),
                        x,
                        &format!("{what} batch {batch}"),
                    );
                    for exec in [&pool2 as &dyn ParallelExecutor, &pool3] {
                        let y = m.matmul_on(x, exec).unwrap();
                        assert_eq!(bits(&y), bits(&seq), "{what} batch {batch}: executor");
                    }
                    if tiled {
                        let want = whole.slice(s![b0..b0 + batch, ..]).to_owned();
                        assert_eq!(bits(&seq), bits(&want), "{what} batch {batch} at {b0}");
                    }
                }
            }
        }
    }
}

/// Every run of 1–64 rows of `xall` (first and last), on every executor,
/// gives the bits those rows have in `whole`, `m`'s product of all 64.
fn runs_keep_their_bits(
    m: &CompressedMatrix,
    xall: &Array2<f32>,
    whole: &Array2<f32>,
    execs: &[&dyn ParallelExecutor],
    what: &str,
) {
    for batch in [1, 2, 3, 7, 16, 64] {
        for b0 in [0, 64 - batch] {
            let x = xall.slice(s![b0..b0 + batch, ..]);
            let want = whole.slice(s![b0..b0 + batch, ..]).to_owned();
            for exec in execs {
                let y = m.matmul_on(x, *exec).unwrap();
                assert_eq!(bits(&y), bits(&want), "{what} batch {batch} at {b0}");
            }
        }
    }
}

/// Weight-only int8 / int4 / binary / ternary through three int8 slices of
/// the input on VNNI
/// (`Kernel::IntegerSlices`): within the slicing bound of the exact f64
/// product of the decoded weights, `Σ_k |ŵ_nk|·s₂ + (2·groups + 4)·2⁻²³·Σ_k
/// |ŵ_nk·x_bk|` (slicing, then the f32 steps) with `s₂ = max|x_b|/(127·254²)` — 254 times tighter than
/// two slices would give — every row the bits of its batch-1 product, on
/// every executor, kept rows included.
#[test]
fn integer_slices_are_within_their_bound_at_every_batch() {
    use squish::kernels::dispatch::{kernel_for, Kernel};
    let pool2 = ThreadPool::new(2).unwrap();
    let pool3 = ThreadPool::new(3).unwrap();
    let vnni = Tier::detect() == Tier::Avx512Vnni;
    let w = gaussian(300, 784, 40);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let kept = CompressedMatrix::kept_rows(w.view(), (0..300).step_by(3).collect()).unwrap();
    let nm = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .prune(&dense)
        .unwrap();
    let int = |bits: u8, g: Option<usize>, s: &CompressedMatrix| {
        let p = IntQuantizer::params(bits);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        p.check().unwrap().quantize(s).unwrap()
    };
    let mut xall = gaussian(64, 784, 41);
    // Outlier features (as in transformer activations) widen max|x|.
    xall.column_mut(5).mapv_inplace(|v| v * 40.0);
    let cases = [
        (int(8, None, &dense), 1),
        (int(4, None, &dense), 1),
        (int(4, Some(64), &dense), 13),
        (int(8, Some(32), &dense), 25),
        (int(8, None, &kept), 1),
        // (Dense binary rows take the sign lookups on AVX-512: below.)
        (Ternary.quantize(&dense).unwrap(), 1),
        // 2:4 rows: the codes spread to their columns.
        (int(8, None, &nm), 1),
        (int(4, None, &nm), 1),
        // Groups of 32 / 16 stored values: 64 / 32 columns.
        (int(4, Some(32), &nm), 13),
        (int(8, Some(16), &nm), 25),
        (Binary.quantize(&nm).unwrap(), 1),
        (Ternary.quantize(&nm).unwrap(), 1),
    ];
    for (m, groups) in cases {
        let what = format!("{} {}", m.structure().kind(), m.encoding());
        let sliced = kernel_for(&m, 1) == Kernel::IntegerSlices;
        assert_eq!(sliced, vnni, "{what}");
        let w_hat = m.to_dense().mapv(f64::from);
        let whole = m.matmul(xall.view()).unwrap();
        // The bound is the sliced path's (the f32 paths round differently).
        let checked = if sliced { 64 } else { 0 };
        for (b, (y, x)) in whole
            .outer_iter()
            .zip(xall.outer_iter())
            .enumerate()
            .take(checked)
        {
            let x64 = x.mapv(f64::from);
            let amax = x64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let s2 = (amax as f32 / 127.0 / 254.0 / 254.0) as f64;
            for (n, &yn) in y.iter().enumerate() {
                let wn = w_hat.row(n);
                let exact = wn.dot(&x64);
                let wabs: f64 = wn.iter().map(|v| v.abs()).sum();
                let prod: f64 = wn.iter().zip(&x64).map(|(a, b)| (a * b).abs()).sum();
                let bound = wabs * s2 + (2.0 * groups as f64 + 4.0) * prod / (1u64 << 23) as f64;
                assert!(
                    (yn as f64 - exact).abs() <= bound,
                    "{what} row {b} out {n}: {yn} vs {exact} (bound {bound})"
                );
            }
        }
        runs_keep_their_bits(&m, &xall, &whole, &[&Sequential, &pool2, &pool3], &what);
        if matches!(m.structure(), Structure::NM(_)) {
            continue;
        }
        // The block kernel takes unchecked input: a NaN goes through the
        // f32 paths and comes out as NaN in its row (a row whose weight on
        // that input is a ternary zero may skip it).
        let mut x = xall.slice(s![0..2, ..]).to_owned();
        x[[1, 3]] = f32::NAN;
        let y = squish::kernels::quant::matmul_block(
            m.values().unwrap(),
            x.view(),
            &Sequential,
            Tier::detect(),
        )
        .unwrap();
        assert!(y.row(0).iter().all(|v| v.is_finite()), "{what}");
        assert!(y.row(1).iter().any(|v| v.is_nan()), "{what}");
    }
}

/// Binary rows (dense and kept) on AVX-512 (`Kernel::SignLookup`): the
/// input is not quantized, so each output is within an f32 dot product's
/// bound of the exact f64 product of the decoded weights, `(⌈cols/4⌉ + 4)
/// ·2⁻²⁴·α·Σ|x|`, at any scale of input (outlier features included); every
/// row has the bits of its batch-1 product, on every executor.
#[test]
fn sign_lookups_are_within_the_f32_bound_at_every_batch() {
    use squish::kernels::dispatch::{kernel_for, Kernel};
    let pool3 = ThreadPool::new(3).unwrap();
    let w = gaussian(300, 784, 50);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let kept = CompressedMatrix::kept_rows(w.view(), (0..300).step_by(3).collect()).unwrap();
    let mut xall = gaussian(64, 784, 51);
    xall.column_mut(5).mapv_inplace(|v| v * 40.0);
    for s in [&dense, &kept] {
        let m = Binary.quantize(s).unwrap();
        let what = format!("{} {}", m.structure().kind(), m.encoding());
        let lookup = kernel_for(&m, 1) == Kernel::SignLookup;
        assert_eq!(lookup, Tier::detect() >= Tier::Avx512, "{what}");
        let whole = m.matmul(xall.view()).unwrap();
        let w_hat = m.to_dense().mapv(f64::from);
        let u = 2f64.powi(-24);
        for (y, x) in whole.outer_iter().zip(xall.outer_iter()) {
            let x64 = x.mapv(f64::from);
            let xs: f64 = x64.iter().map(|v| v.abs()).sum();
            for (n, &yn) in y.iter().enumerate() {
                let wn = w_hat.row(n);
                let a = wn.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let bound = (784f64 / 4.0 + 4.0) * u * 1.01 * a * xs;
                let exact = wn.dot(&x64);
                assert!(
                    (yn as f64 - exact).abs() <= bound,
                    "{what} out {n}: {yn} vs {exact}"
                );
            }
        }
        runs_keep_their_bits(&m, &xall, &whole, &[&Sequential, &pool3], &what);
    }
}

/// The values of a 2:4 matrix cache the panels of its full rows; panels
/// cached first by a product of the stored rows alone (`matmul_block`
/// reads any values as dense rows) are not used for the full rows, and the
/// other way round.
#[test]
fn panels_of_stored_rows_and_of_full_rows_are_not_confused() {
    let w = gaussian(256, 512, 42);
    let x = gaussian(5, 512, 43);
    let xs = gaussian(5, 256, 44);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let nm = NMPruner::params(2, 4)
        .check()
        .unwrap()
        .prune(&dense)
        .unwrap();
    let q = IntQuantizer::params(8).per_row().check().unwrap();
    let close = |got: &Array2<f32>, want: &Array2<f64>, what: &str| {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: {g} vs {w}"
            );
        }
    };
    for stored_first in [true, false] {
        let m = q.quantize(&nm).unwrap();
        let v = m.values().unwrap();
        let per = v.layout().max_row_len();
        let stored = Array2::from_shape_fn((256, per), |(i, k)| {
            let mut row = vec![0.0f32; per];
            v.decode_row(i, &mut row);
            row[k] as f64
        });
        let run_stored = || {
            let y = squish::kernels::quant::matmul_block(v, xs.view(), &Sequential, Tier::detect())
                .unwrap();
            close(&y, &xs.mapv(f64::from).dot(&stored.t()), "stored rows");
        };
        if stored_first {
            run_stored();
        }
        let want = x.mapv(f64::from).dot(&m.to_dense().mapv(f64::from).t());
        close(&m.matmul(x.view()).unwrap(), &want, "full rows");
        run_stored();
    }
}

/// 2:4 rows above the spread copies' size (`MAX_COPY_BYTES` of f32) run
/// the 2:4 kernel itself (on AVX-512): f32 values, and k-means codes
/// (decoded once per task above 16 inputs); a last block of more than 16
/// columns (2040) and of fewer (1000). Every row keeps its batch-1 bits at
/// every batch size and on every executor (full register blocks sum their
/// lanes through the transposed network, single rows one register at a
/// time), and agrees with the exact product.
#[test]
fn large_2_4_rows_keep_their_bits_at_every_batch() {
    use squish::kernels::dispatch::{kernel_for, Kernel};
    let pool2 = ThreadPool::new(2).unwrap();
    let pool3 = ThreadPool::new(3).unwrap();
    for (si, &(rows, cols)) in [(1031, 2040), (2101, 1000)].iter().enumerate() {
        assert!(rows * cols * 4 > squish::kernels::decoded_copy::MAX_COPY_BYTES);
        let w = gaussian(rows, cols, 50 + si as u64);
        let nm = NMPruner::params(2, 4)
            .check()
            .unwrap()
            .prune(&CompressedMatrix::from_dense(w.view()).unwrap())
            .unwrap();
        let cb = KMeans::params(16).check().unwrap().quantize(&nm).unwrap();
        let xall = gaussian(64, cols, 60 + si as u64);
        for m in [nm.clone(), cb] {
            let what = format!("2:4 {} {rows}x{cols}", m.encoding());
            if Tier::detect() >= Tier::Avx512 {
                assert_eq!(kernel_for(&m, 8), Kernel::Registers, "{what}");
            }
            let execs = [&Sequential as &dyn ParallelExecutor, &pool2, &pool3];
            rows_keep_their_bits(&m, xall.view(), &[2, 4, 5, 8, 16, 17, 64], &execs, &what);
        }
    }
}

/// Weight-only int4 of at least 4 M weights: on VNNI the panels take
/// signed activations and, at batch 1 (three slices), split accumulators.
/// Every row has its batch-1 bits at every batch and on every executor,
/// and agrees with the exact product.
#[test]
fn large_int4_weight_only_rows_keep_their_bits_at_every_batch() {
    let pool2 = ThreadPool::new(2).unwrap();
    let w = gaussian(2048, 2048, 70);
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let xall = gaussian(7, 2048, 71);
    for g in [None, Some(64)] {
        let p = IntQuantizer::params(4);
        let p = match g {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        let m = p.check().unwrap().quantize(&dense).unwrap();
        let what = format!("int4 {g:?} 2048²");
        let execs = [&Sequential as &dyn ParallelExecutor, &pool2];
        rows_keep_their_bits(&m, xall.view(), &[1, 2, 3, 7], &execs, &what);
    }
}

/// For every batch size in `batches` (the first rows of `xall`) and every
/// executor: the product is within the exact product's bound, and each
/// row has the bits of that input's batch-1 product (computed on the first
/// executor).
fn rows_keep_their_bits(
    m: &CompressedMatrix,
    xall: ArrayView2<f32>,
    batches: &[usize],
    execs: &[&dyn ParallelExecutor],
    what: &str,
) {
    let w_hat = m.to_dense();
    let ones: Vec<Array2<f32>> = (0..xall.nrows())
        .map(|b| m.matmul_on(xall.slice(s![b..b + 1, ..]), execs[0]).unwrap())
        .collect();
    for &batch in batches {
        let x = xall.slice(s![..batch, ..]);
        for &exec in execs {
            let y = m.matmul_on(x, exec).unwrap();
            assert_close(y.view(), w_hat.view(), x, what);
            for (b, one) in ones.iter().take(batch).enumerate() {
                let row = y.slice(s![b..b + 1, ..]).to_owned();
                assert_eq!(bits(&row), bits(one), "{what} batch {batch} row {b}");
            }
        }
    }
}
