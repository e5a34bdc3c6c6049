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

/// At 8 × 16 and at 300 × 256, a size that the fast kernels take (the
/// integer slices from 65 536 weights on VNNI).
#[test]
fn integer_quantization_of_f32_max_stays_finite() {
    for (rows, cols) in [(8, 16), (300, 256)] {
        integer_quantization_of_f32_max_stays_finite_at(rows, cols);
    }
}

fn integer_quantization_of_f32_max_stays_finite_at(rows: usize, cols: usize) {
    let mut w = test_matrix(rows, cols);
    w[[1, 3]] = f32::MAX;
    w[[2, 7]] = -f32::MAX;
    w[[5, 0]] = f32::MAX;
    w[[5, 1]] = -f32::MAX;
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let mut quantizers = quantizers();
    quantizers.push((
        "per-group",
        IntQuantizer::params(4).per_group(32).check().unwrap(),
    ));
    for (name, q) in quantizers {
        let what = format!("int{} {name} {q:?}", q.bits());
        let m = q.quantize(&dense).unwrap();
        assert_finite_and_close(&what, &w, &m);
        assert_dynamic_finite_or_refused(&what, &m, true);
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

/// The int8 × int8 product of `m` (dynamic activations): finite on unit
/// inputs, or refused with `ProductOverflow` (`must_refuse`: weights near
/// f32::MAX, whose sums overflowed to ±Inf before the refusal); asymmetric
/// codes are not taken at all.
fn assert_dynamic_finite_or_refused(what: &str, m: &CompressedMatrix, must_refuse: bool) {
    use squish::quantization::{DynamicInt8, QuantizationError};
    use squish::SquishError;
    match DynamicInt8::new(m.clone()) {
        Ok(d) => {
            assert!(!must_refuse, "dynamic {what}: taken");
            let x = Array2::from_shape_fn((m.cols(), m.cols()), |(i, j)| (i == j) as u8 as f32);
            let y = d.matmul(x.view(), &Sequential).unwrap();
            assert!(y.iter().all(|v| v.is_finite()), "dynamic {what}: {y}");
        }
        Err(SquishError::Quantization(QuantizationError::ProductOverflow { .. })) => {}
        Err(SquishError::Incompatible { .. }) if must_refuse => {}
        Err(e) => panic!("dynamic {what}: {e}"),
    }
}

/// Weights large but within reach (1e36) keep their int8 × int8 product,
/// finite, at a small size and at the panels' size.
#[test]
fn dynamic_int8_of_large_weights_stays_finite() {
    for (rows, cols) in [(8, 16), (300, 256)] {
        let mut w = test_matrix(rows, cols);
        w[[1, 3]] = 1e36;
        w[[5, 0]] = -1e36;
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        for bits in [8u8, 4] {
            let q = IntQuantizer::params(bits).per_row().check().unwrap();
            let m = q.quantize(&dense).unwrap();
            assert_dynamic_finite_or_refused(&format!("int{bits} {rows}x{cols}"), &m, false);
        }
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
    let hostile = with_tensor_replaced(&bytes, "fc.weight::scales", |b| {
        assert_eq!(b, 1.0f32.to_le_bytes());
        (f32::MAX / 2.0).to_le_bytes().to_vec()
    });
    let err = CompressedModel::from_bytes(&hostile).unwrap_err();
    assert!(
        err.to_string().contains("fc.weight") && err.to_string().contains("scale"),
        "{err}"
    );
}

/// The container `bytes` with tensor `name`'s bytes rewritten by `f` and
/// the checksums made to match: a hostile file that passes the integrity
/// check.
fn with_tensor_replaced(bytes: &[u8], name: &str, f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut kv = meta.metadata().clone().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(kv.get("squish.description").unwrap()).unwrap();
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = if n == name {
                f(v.data())
            } else {
                v.data().to_vec()
            };
            (n, v.dtype(), v.shape().to_vec(), data)
        })
        .collect();
    // An entry's checksum covers its parts (tensors `entry::…`) in the
    // description's order: the order whose checksum of the original bytes
    // is the stored one.
    let entry = name.split("::").next().unwrap();
    let parts: Vec<usize> = (0..owned.len())
        .filter(|&i| owned[i].0.starts_with(&format!("{entry}::")))
        .collect();
    let original: Vec<Vec<u8>> = st
        .tensors()
        .into_iter()
        .map(|(_, v)| v.data().to_vec())
        .collect();
    let t = json["tensors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == entry)
        .unwrap();
    let crc = |order: &[usize], data: &dyn Fn(usize) -> Vec<u8>| {
        let mut h = crc32fast::Hasher::new();
        order.iter().for_each(|&i| h.update(&data(i)));
        h.finalize()
    };
    let order = permutations(&parts)
        .into_iter()
        .find(|o| crc(o, &|i| original[i].clone()) == t["crc32"].as_u64().unwrap() as u32)
        .expect("an order of the parts matches the stored checksum");
    t["crc32"] = crc(&order, &|i| owned[i].3.clone()).into();
    kv.insert("squish.description".into(), json.to_string());
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(kv)).unwrap()
}

/// Every order of `v`.
fn permutations(v: &[usize]) -> Vec<Vec<usize>> {
    if v.len() <= 1 {
        return vec![v.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..v.len() {
        let mut rest = v.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

/// Finite low-rank factors whose product leaves f32 are refused, built
/// and loaded (they decoded to infinity before).
#[test]
fn low_rank_factors_whose_product_overflows_are_refused() {
    let f = |w: Array2<f32>| CompressedMatrix::from_dense(w.view()).unwrap();
    let err = CompressedMatrix::low_rank(f(array![[1e30f32], [1.0]]), f(array![[1e30f32, 1.0]]))
        .unwrap_err();
    assert!(err.to_string().contains("A·B"), "{err}");
    // Large but representable: kept, and decodes finite.
    let ok =
        CompressedMatrix::low_rank(f(array![[1e18f32], [2.0]]), f(array![[1e18f32, 1.0]])).unwrap();
    assert!(ok.to_dense().iter().all(|v| v.is_finite()));
    let mut model = CompressedModel::new();
    model
        .insert_compressed(
            "fc.weight",
            CompressedTensor::new(ok, Dtype::F32, vec![2, 2], "low rank").unwrap(),
        )
        .unwrap();
    let bytes = model.to_bytes().unwrap();
    CompressedModel::from_bytes(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let a = st
        .names()
        .into_iter()
        .find(|n| n.starts_with("fc.weight") && n.contains('a') && n.ends_with("values"))
        .map(str::to_string);
    let a = a.unwrap_or_else(|| panic!("{:?}", st.names()));
    let hostile = with_tensor_replaced(&bytes, &a, |b| {
        let mut v: Vec<f32> = b
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        v[0] = 1e30;
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    });
    let err = CompressedModel::from_bytes(&hostile).unwrap_err();
    assert!(
        err.to_string().contains("fc.weight") && err.to_string().contains("A·B"),
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
