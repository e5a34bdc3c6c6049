//! Regression tests for the library defects of issue #20 (crashes, silent
//! Inf, NaN equality, errors that do not name their layer). Each one failed
//! before its fix.

use ndarray::{array, Array2};
use squish::compression::lowrank::{LowRank, RandomizedSvd, RankSelection, Svd, SvdBackend};
use squish::io::{CompressedModel, CompressedTensor, Dtype, Entry, Model, Tensor};
use squish::matrix::{CompressedMatrix, Granularity, QuantParams, RowLayout, Values};
use squish::parallel::Sequential;
use squish::pass::CompressionPass;
use squish::prelude::*;
use squish::recipe::{compress_model, IntSpec, MethodSpec};

/// Naive f64 `x · Wᵀ`.
fn naive(w: &Array2<f32>, x: &Array2<f32>) -> Array2<f32> {
    Array2::from_shape_fn((x.nrows(), w.nrows()), |(b, i)| {
        (0..w.ncols())
            .map(|j| x[[b, j]] as f64 * w[[i, j]] as f64)
            .sum::<f64>() as f32
    })
}

fn test_matrix(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (((i * 31 + j * 17) % 23) as f32 - 11.0) / 13.0
    })
}

// ---------- kept rows with one column ----------

#[test]
fn kept_rows_with_one_column_multiply_any_batch() {
    let w = array![[1.5f32], [2.0], [-3.0], [0.25]];
    for kept in [vec![0u32, 2], vec![0, 1, 2, 3]] {
        let m = CompressedMatrix::kept_rows(w.view(), kept.clone()).unwrap();
        let dense = m.to_dense();
        for batch in [1usize, 2, 3, 33] {
            let x = Array2::from_shape_fn((batch, 1), |(b, _)| b as f32 - 1.5);
            let y = m.matmul(x.view()).unwrap();
            assert_eq!(y, naive(&dense, &x), "kept {kept:?} batch {batch}");
        }
    }
    // The same shape class through the dense row kernel.
    let x = Array2::from_shape_fn((5, 1), |(b, _)| b as f32);
    let y = squish::pruning::kernels::dense_matmul(
        w.view(),
        x.view(),
        &Sequential,
        squish::kernels::Tier::Portable,
    )
    .unwrap();
    assert_eq!(y, naive(&w, &x));
}

// ---------- randomized SVD on huge weights ----------

#[test]
fn randomized_svd_on_huge_weights_never_panics() {
    for big in [1e30f32, f32::MAX] {
        let mut w = test_matrix(24, 16);
        w[[3, 5]] = big;
        let out = RandomizedSvd::params(2)
            .check()
            .unwrap()
            .compute(w.view(), &Sequential);
        match out {
            Ok(o) => {
                let s = o.svd.s();
                assert!(s.iter().all(|v| v.is_finite()), "{big}: {s}");
                // One weight dominates: σ₁ is that weight.
                assert!((s[0] / big - 1.0).abs() < 1e-3, "{big}: {s}");
                assert!(o.svd.u().iter().chain(o.svd.vt()).all(|v| v.is_finite()));
            }
            Err(e) => assert!(
                matches!(e, SquishError::LowRank(_)),
                "{big}: a low-rank error, got {e}"
            ),
        }
        // The pass's randomized paths (fixed rank and a spectrum rule).
        for sel in [RankSelection::Fixed(2), RankSelection::Energy(0.9)] {
            let pass = LowRank::params(sel)
                .randomized(RandomizedSvd::settings())
                .check()
                .unwrap();
            let m = CompressedMatrix::from_dense(w.view()).unwrap();
            match pass.apply(&m, &Sequential) {
                Ok(f) => assert!(f.to_dense().iter().all(|v| v.is_finite()), "{big}"),
                Err(e) => assert!(matches!(e, SquishError::LowRank(_)), "{big}: {e}"),
            }
        }
    }
    // The exact SVD agrees on 1e30 being usable or gives a typed error too.
    let mut w = test_matrix(24, 16);
    w[[3, 5]] = 1e30;
    let _ = Svd::exact(w.view(), SvdBackend::Faer);
}

// ---------- integer quantization of f32::MAX ----------

fn quantizers() -> Vec<(&'static str, IntQuantizer)> {
    let mut q = Vec::new();
    for bits in [8u8, 4] {
        for sym in [true, false] {
            q.push((
                "per-tensor",
                IntQuantizer::params(bits)
                    .symmetric(sym)
                    .per_tensor()
                    .check()
                    .unwrap(),
            ));
            q.push((
                "per-row",
                IntQuantizer::params(bits)
                    .symmetric(sym)
                    .per_row()
                    .check()
                    .unwrap(),
            ));
            q.push((
                "per-group",
                IntQuantizer::params(bits)
                    .symmetric(sym)
                    .per_group(4)
                    .check()
                    .unwrap(),
            ));
        }
    }
    q
}

fn assert_finite_and_close(what: &str, w: &Array2<f32>, m: &CompressedMatrix) {
    let d = m.to_dense();
    assert!(d.iter().all(|v| v.is_finite()), "{what}: decoded {d}");
    // The huge weights stay huge (within one int4 step of the grid).
    for (a, b) in w.iter().zip(&d) {
        if a.abs() > 1e30 {
            assert!((b / a - 1.0).abs() < 0.2, "{what}: {a} decoded as {b}");
        }
    }
    // Products with unit inputs pick single weights: never Inf.
    let x = Array2::from_shape_fn((w.ncols(), w.ncols()), |(i, j)| (i == j) as u8 as f32);
    let y = m.matmul(x.view()).unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{what}: product {y}");
}

#[test]
fn integer_quantization_of_f32_max_stays_finite() {
    let mut w = test_matrix(8, 16);
    w[[1, 3]] = f32::MAX;
    w[[2, 7]] = -f32::MAX;
    w[[5, 0]] = f32::MAX;
    w[[5, 1]] = -f32::MAX;
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    for (name, q) in quantizers() {
        let what = format!("int{} {name} {q:?}", q.bits());
        let m = q.quantize(&dense).unwrap();
        assert_finite_and_close(&what, &w, &m);
        // After magnitude pruning (CSR) and after 2:4 (N:M).
        let pruned = Pipeline::new()
            .prune(Magnitude::params(0.5).check().unwrap())
            .quantize(q.clone())
            .run(w.view())
            .unwrap();
        assert_finite_and_close(&format!("magnitude → {what}"), &w, &pruned.matrix);
        let nm = Pipeline::new()
            .prune(NMPruner::params(2, 4).check().unwrap())
            .quantize(q.clone())
            .run(w.view())
            .unwrap();
        assert_finite_and_close(&format!("2:4 → {what}"), &w, &nm.matrix);
    }
}

/// The same class of defect in the other encodings: scales (binary, ternary),
/// centroids (k-means) and factors (low rank) of a matrix holding ±f32::MAX
/// stay finite, or the pass refuses with a typed error; never a silent Inf.
#[test]
fn every_encoding_of_f32_max_stays_finite_or_is_refused() {
    let mut w = test_matrix(8, 16);
    w[[1, 3]] = f32::MAX;
    w[[2, 7]] = -f32::MAX;
    w[[5, 0]] = f32::MAX;
    w[[5, 1]] = -f32::MAX;
    let passes: Vec<(&str, Pipeline)> = vec![
        ("binary", Pipeline::new().quantize(Binary)),
        ("ternary", Pipeline::new().quantize(Ternary)),
        (
            "k-means 4",
            Pipeline::new().quantize(KMeans::params(4).check().unwrap()),
        ),
        (
            "2:4 → k-means 4",
            Pipeline::new()
                .prune(NMPruner::params(2, 4).check().unwrap())
                .quantize(KMeans::params(4).check().unwrap()),
        ),
        (
            "low rank 3 (exact)",
            Pipeline::new().then(LowRank::params(RankSelection::Fixed(3)).check().unwrap()),
        ),
        (
            "low rank 3 (randomized)",
            Pipeline::new().then(
                LowRank::params(RankSelection::Fixed(3))
                    .randomized(RandomizedSvd::settings())
                    .check()
                    .unwrap(),
            ),
        ),
    ];
    let x = Array2::from_shape_fn((3, w.ncols()), |(i, j)| ((i + j) % 3) as f32 - 1.0);
    for (name, p) in passes {
        match p.run(w.view()) {
            Ok(out) => {
                let d = out.matrix.to_dense();
                assert!(d.iter().all(|v| v.is_finite()), "{name}: decoded {d}");
                // A product may overflow on its own (f32::MAX + f32::MAX), but
                // unit inputs pick single weights: never Inf.
                let e =
                    Array2::from_shape_fn((w.ncols(), w.ncols()), |(i, j)| (i == j) as u8 as f32);
                let y = out.matrix.matmul(e.view()).unwrap();
                assert!(y.iter().all(|v| v.is_finite()), "{name}: product {y}");
                let _ = out.matrix.matmul(x.view()).unwrap();
            }
            Err(e) => {
                // A refusal must say what is wrong, not be a panic.
                assert!(!e.to_string().is_empty(), "{name}");
            }
        }
    }
}

#[test]
fn int8_values_whose_decoding_overflows_are_refused() {
    let layout = RowLayout::Uniform { rows: 1, len: 2 };
    let p = QuantParams::new(&layout, Granularity::PerTensor, vec![f32::MAX / 2.0], None).unwrap();
    let err = Values::int8(layout.clone(), vec![127, -127], p).unwrap_err();
    assert!(err.to_string().contains("scale"), "{err}");
    // A scale that keeps every code finite is fine.
    let p = QuantParams::new(
        &layout,
        Granularity::PerTensor,
        vec![f32::MAX / 128.0],
        None,
    )
    .unwrap();
    Values::int8(layout, vec![127, -128], p).unwrap();
}

/// A container whose int8 scale is patched to a huge finite number (with the
/// checksum recomputed, as a hostile writer would).
#[test]
fn container_with_huge_scales_is_refused_on_load() {
    let w = array![[127.0f32, -127.0], [1.0, 2.0]];
    let q = IntQuantizer::params(8).per_tensor().check().unwrap();
    let m = q
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let mut model = CompressedModel::new();
    model
        .insert_compressed(
            "fc.weight",
            CompressedTensor::new(m, Dtype::F32, vec![2, 2], "int8").unwrap(),
        )
        .unwrap();
    let bytes = model.to_bytes().unwrap();
    CompressedModel::from_bytes(&bytes).unwrap();

    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut kv = meta.metadata().clone().unwrap();
    let names = ["fc.weight::values", "fc.weight::scales"];
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    owned.sort_by_key(|(n, ..)| names.iter().position(|k| k == n).expect("known"));
    assert_eq!(owned[1].3, 1.0f32.to_le_bytes());
    owned[1].3 = (f32::MAX / 2.0).to_le_bytes().to_vec();
    let mut h = crc32fast::Hasher::new();
    for (.., b) in &owned {
        h.update(b);
    }
    let desc = kv.get_mut("squish.description").unwrap();
    let mut json: serde_json::Value = serde_json::from_str(desc).unwrap();
    json["tensors"][0]["crc32"] = h.finalize().into();
    *desc = json.to_string();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let hostile = safetensors::serialize(views, Some(kv)).unwrap();
    let err = CompressedModel::from_bytes(&hostile).unwrap_err();
    assert!(
        err.to_string().contains("fc.weight") && err.to_string().contains("scale"),
        "{err}"
    );
}

// ---------- NaN in a kept tensor: equality is bitwise ----------

#[test]
fn nan_in_a_kept_tensor_round_trips_equal() {
    let mut m = Model::new();
    m.insert(
        "fc.bias",
        Tensor::float(Dtype::F32, vec![3], vec![1.0, f32::NAN, -0.0]).unwrap(),
    )
    .unwrap();
    m.insert(
        "ln.bias",
        Tensor::float(Dtype::F16, vec![2], vec![f32::NAN, 2.0]).unwrap(),
    )
    .unwrap();
    let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.clone(), back);

    let mut c = CompressedModel::new();
    for (n, t) in m.iter() {
        c.insert_plain(n, t.clone()).unwrap();
    }
    let cb = CompressedModel::from_bytes(&c.to_bytes().unwrap()).unwrap();
    assert_eq!(cb, c);
    // Bitwise: 0.0 and -0.0 are different stored tensors.
    let a = Tensor::float(Dtype::F32, vec![1], vec![0.0]).unwrap();
    let b = Tensor::float(Dtype::F32, vec![1], vec![-0.0]).unwrap();
    assert_ne!(a, b);
    let Some(Entry::Plain(t)) = cb.get("fc.bias") else {
        panic!()
    };
    assert!(t.as_f32().unwrap()[1].is_nan());
}

// ---------- errors name the layer and the pass ----------

#[test]
fn errors_while_compressing_name_the_layer_and_the_pass() {
    let mut m = Model::new();
    m.insert(
        "enc.ok.weight",
        Tensor::float(Dtype::F32, vec![4, 4], vec![0.5; 16]).unwrap(),
    )
    .unwrap();
    let mut bad = vec![0.5f32; 16];
    bad[9] = f32::NAN;
    m.insert(
        "enc.fc.weight",
        Tensor::float(Dtype::F32, vec![4, 4], bad).unwrap(),
    )
    .unwrap();
    let recipe = Recipe::uniform(vec![
        MethodSpec::Magnitude { sparsity: 0.5 },
        MethodSpec::Int8(IntSpec::default()),
    ])
    .unwrap();
    let err = compress_model(&m, &recipe, &Sequential, &|_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("enc.fc.weight"), "{msg}");
    assert!(msg.contains("magnitude"), "{msg}");
    assert!(msg.contains("NaN"), "{msg}");
}
