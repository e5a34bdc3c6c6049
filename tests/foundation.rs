//! Foundation: representation round trips, the reference kernel against a
//! naive f64 product, exact storage accounting, composition, and every error.

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use squish::matrix::*;
use squish::parallel::{ParallelError, Sequential, ThreadPool};
use squish::prelude::*;
use squish::pruning::PruningError;
use squish::quantization::QuantizationError;
use squish::quantization::{Binary, Ternary};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// y = x · Wᵀ in f64, the independent reference.
fn naive(x: ArrayView2<f32>, w: ArrayView2<f32>) -> Array2<f64> {
    Array2::from_shape_fn((x.nrows(), w.nrows()), |(b, i)| {
        (0..x.ncols())
            .map(|j| x[[b, j]] as f64 * w[[i, j]] as f64)
            .sum()
    })
}

fn assert_close(y: ArrayView2<f32>, r: ArrayView2<f64>, cols: usize) {
    assert_eq!(y.dim(), r.dim());
    for (a, b) in y.iter().zip(r.iter()) {
        let tol = 1e-5 * (cols as f64).sqrt() * (1.0 + b.abs());
        assert!((*a as f64 - b).abs() <= tol, "{a} vs {b}");
    }
}

/// An N:M matrix from the N largest |w| of each group (built by hand here so
/// the test does not depend on a pruner).
fn nm_matrix(w: ArrayView2<f32>, n: usize, m: usize) -> CompressedMatrix {
    let (rows, cols) = w.dim();
    let (mut pos, mut vals) = (Vec::new(), Vec::new());
    for i in 0..rows {
        for g in 0..cols / m {
            let mut idx: Vec<usize> = (0..m).collect();
            idx.sort_by(|&a, &b| w[[i, g * m + b]].abs().total_cmp(&w[[i, g * m + a]].abs()));
            let mut keep = idx[..n].to_vec();
            keep.sort();
            for p in keep {
                pos.push(p as u16);
                vals.push(w[[i, g * m + p]]);
            }
        }
    }
    let nm = NM::new(
        rows,
        cols,
        n,
        m,
        PackedBits::pack(index_bits(m), &pos).unwrap(),
    )
    .unwrap();
    let layout = RowLayout::Uniform {
        rows,
        len: cols / m * n,
    };
    CompressedMatrix::from_parts(
        rows,
        cols,
        Structure::NM(nm),
        Values::f32(layout, vals).unwrap(),
    )
    .unwrap()
}

/// Every value encoding applied to `m`.
fn encodings(m: &CompressedMatrix) -> Vec<CompressedMatrix> {
    let cb = |v: &Values| match v {
        Values::F32(f) => Ok(codebook(f, &[-0.75, -0.25, 0.25, 0.75])),
        _ => unreachable!(),
    };
    vec![
        m.clone(),
        IntQuantizer::params(8)
            .per_row()
            .check()
            .unwrap()
            .quantize(m)
            .unwrap(),
        IntQuantizer::params(8)
            .symmetric(false)
            .per_tensor()
            .check()
            .unwrap()
            .quantize(m)
            .unwrap(),
        IntQuantizer::params(4)
            .per_group(3)
            .check()
            .unwrap()
            .quantize(m)
            .unwrap(),
        IntQuantizer::params(4)
            .symmetric(false)
            .per_row()
            .check()
            .unwrap()
            .quantize(m)
            .unwrap(),
        Binary.quantize(m).unwrap(),
        Ternary.quantize(m).unwrap(),
        m.map_values(&cb).unwrap(),
    ]
}

/// Every structure built from `w`.
fn structures(w: ArrayView2<f32>) -> Vec<CompressedMatrix> {
    let (rows, cols) = w.dim();
    let mut out = vec![
        CompressedMatrix::from_dense(w).unwrap(),
        Magnitude::params(0.6)
            .check()
            .unwrap()
            .prune(&CompressedMatrix::from_dense(w).unwrap())
            .unwrap(),
        CompressedMatrix::kept_rows(w, (0..rows as u32).step_by(2).collect()).unwrap(),
    ];
    if cols % 4 == 0 {
        out.push(nm_matrix(w, 2, 4));
    }
    let r = rows.min(cols).div_ceil(2);
    let a = CompressedMatrix::from_dense(random(rows, r, 7).view()).unwrap();
    let b = CompressedMatrix::from_dense(random(r, cols, 8).view()).unwrap();
    out.push(CompressedMatrix::low_rank(a, b).unwrap());
    out
}

#[test]
fn reference_kernel_matches_naive_product_for_every_pair() {
    let pool = ThreadPool::new(3).unwrap();
    for (s, &(rows, cols, batch)) in [
        (1, 1, 1),
        (1, 4, 1),
        (37, 8, 1),
        (5, 64, 3),
        (70, 12, 9),
        (3, 300, 2),
    ]
    .iter()
    .enumerate()
    {
        let w = random(rows, cols, s as u64);
        let x = random(batch, cols, 100 + s as u64);
        for st in structures(w.view()) {
            for m in encodings(&st) {
                let dense = m.to_dense();
                let reference = naive(x.view(), dense.view());
                let y = m.matmul_reference(x.view()).unwrap();
                assert_close(y.view(), reference.view(), cols);
                // Dispatch and executors give the same answer, bit for bit.
                let fast = m.matmul(x.view()).unwrap();
                assert_close(fast.view(), reference.view(), cols);
                assert_eq!(
                    fast,
                    m.matmul_on(x.view(), &pool).unwrap(),
                    "{} {}",
                    st.structure().kind(),
                    m.encoding()
                );
                // Decoding row by row agrees with to_dense.
                let mut row = vec![0.0; cols];
                m.decode_row(rows - 1, &mut row);
                assert_eq!(row.as_slice(), dense.row(rows - 1).as_slice().unwrap());
            }
        }
    }
}

#[test]
fn decode_encode_within_each_encodings_bound() {
    let w = random(16, 40, 1);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    assert_eq!(m.to_dense(), w, "f32 is exact");

    for (bits, q) in [
        (8, IntQuantizer::params(8).per_row().check().unwrap()),
        (4, IntQuantizer::params(4).per_group(8).check().unwrap()),
        (
            8,
            IntQuantizer::params(8)
                .symmetric(false)
                .per_row()
                .check()
                .unwrap(),
        ),
    ] {
        let qm = q.quantize(&m).unwrap();
        let back = qm.to_dense();
        let Some(Values::Int8(_) | Values::Int4(_)) = qm.values() else {
            panic!()
        };
        let params = match qm.values().unwrap() {
            Values::Int8(v) => v.params().clone(),
            Values::Int4(v) => v.params().clone(),
            _ => unreachable!(),
        };
        for i in 0..16 {
            for j in 0..40 {
                let (s, _) = params.get(params.index(i, j));
                assert!(
                    (w[[i, j]] - back[[i, j]]).abs() <= s / 2.0 + 1e-6,
                    "int{bits}"
                );
            }
        }
    }

    let b = Binary.quantize(&m).unwrap().to_dense();
    for (i, row) in w.outer_iter().enumerate() {
        let alpha = row.iter().map(|v| v.abs() as f64).sum::<f64>() / 40.0;
        for (j, &v) in row.iter().enumerate() {
            assert!((b[[i, j]] as f64 - alpha * v.signum() as f64).abs() < 1e-6);
        }
    }

    let t = Ternary.quantize(&m).unwrap().to_dense();
    for (i, row) in w.outer_iter().enumerate() {
        let delta = 0.7 * row.iter().map(|v| v.abs()).sum::<f32>() / 40.0;
        for (j, &v) in row.iter().enumerate() {
            if v.abs() <= delta * 0.999 {
                assert_eq!(t[[i, j]], 0.0);
            } else if v.abs() > delta * 1.001 {
                assert_eq!(t[[i, j]].signum(), v.signum());
            }
        }
    }

    let centroids = [-0.75f32, -0.25, 0.25, 0.75];
    let c = m.map_values(&|v| match v {
        Values::F32(f) => Ok(codebook(f, &centroids)),
        _ => unreachable!(),
    });
    for (a, b) in w.iter().zip(c.unwrap().to_dense().iter()) {
        let best = centroids
            .iter()
            .map(|c| (a - c).abs())
            .fold(f32::MAX, f32::min);
        assert!(((a - b).abs() - best).abs() < 1e-7, "nearest centroid");
    }
}

#[test]
fn storage_accounting_matches_hand_count() {
    let w = Array2::from_shape_fn((3, 10), |(i, j)| {
        if (i + j) % 3 == 0 {
            1.0 + j as f32
        } else {
            0.0
        }
    });
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    let s = dense.storage();
    assert_eq!(s.get(Component::Values), 120);
    assert_eq!(s.total(), 120 + METADATA_BYTES);
    assert_eq!(s.dense_bytes(), 120);

    // 10 non-zeros: row pointer 4 u32, 10 u16 columns, 10 f32 values.
    let keep = w.mapv(|v| v != 0.0);
    let csr = CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap();
    let s = csr.storage();
    assert_eq!(s.get(Component::Indices), 4 * 4 + 10 * 2);
    assert_eq!(s.get(Component::Values), 40);

    // int8 per row on the CSR values: 10 codes, 3 scales; asymmetric adds 3 zero-points.
    let q = IntQuantizer::params(8)
        .symmetric(false)
        .per_row()
        .check()
        .unwrap();
    let s = q.quantize(&csr).unwrap().storage();
    assert_eq!(s.get(Component::Values), 10);
    assert_eq!(s.get(Component::Scales), 12);
    assert_eq!(s.get(Component::ZeroPoints), 3);
    assert_eq!(s.total(), 10 + 12 + 3 + 36 + METADATA_BYTES);

    // int4 groups of 4 on dense 3x10: 15 bytes of nibbles, 3 groups a row.
    let s = IntQuantizer::params(4)
        .per_group(4)
        .check()
        .unwrap()
        .quantize(&dense)
        .unwrap()
        .storage();
    assert_eq!(s.get(Component::Values), 15);
    assert_eq!(s.get(Component::Scales), 9 * 4);

    // binary: 30 bits -> 4 bytes + 3 scales; ternary: 60 bits -> 8 bytes.
    let s = Binary.quantize(&dense).unwrap().storage();
    assert_eq!(
        (s.get(Component::Values), s.get(Component::Scales)),
        (4, 12)
    );
    let s = Ternary.quantize(&dense).unwrap().storage();
    assert_eq!(
        (s.get(Component::Values), s.get(Component::Scales)),
        (8, 12)
    );
    assert!((s.bits_per_weight() - (8 + 12 + 16) as f64 * 8.0 / 30.0).abs() < 1e-12);

    // kept rows 0 and 2: 2 ids, 20 values.
    let s = CompressedMatrix::kept_rows(w.view(), vec![0, 2])
        .unwrap()
        .storage();
    assert_eq!(
        (s.get(Component::Indices), s.get(Component::Values)),
        (8, 80)
    );

    // low rank 3x2 · 2x10: both factors and their headers, plus its own header.
    let a = CompressedMatrix::from_dense(random(3, 2, 1).view()).unwrap();
    let b = CompressedMatrix::from_dense(random(2, 10, 2).view()).unwrap();
    let s = CompressedMatrix::low_rank(a, b).unwrap().storage();
    assert_eq!(s.get(Component::Values), (6 + 20) * 4);
    assert_eq!(s.get(Component::Metadata), 3 * METADATA_BYTES);
    assert_eq!(s.elements(), 30);
}

#[test]
fn passes_compose_in_a_pipeline() {
    let w = random(64, 48, 3);
    let out = Pipeline::new()
        .prune(Magnitude::params(0.75).check().unwrap())
        .quantize(IntQuantizer::params(8).per_row().check().unwrap())
        .run(w.view())
        .unwrap();
    let m = &out.matrix;
    assert_eq!((m.structure().kind(), m.encoding()), ("csr", "int8"));
    let Structure::Csr(c) = m.structure() else {
        panic!()
    };
    assert_eq!(c.nnz(), 64 * 48 - (0.75 * (64.0 * 48.0)) as usize);
    // The sparse int8 result decodes to the pruned matrix, quantized.
    let pruned = out.report.stages[1].storage.clone();
    assert!(out.report.stages[2].storage.total() < pruned.total());
    assert!(out.report.stages[2].error.rel_frobenius >= out.report.stages[1].error.rel_frobenius);
    // Pruning error is the energy of the 75% smallest weights (independent count).
    let mut mags: Vec<f64> = w.iter().map(|&v| (v as f64) * (v as f64)).collect();
    mags.sort_by(f64::total_cmp);
    let cut = (0.75 * mags.len() as f64) as usize;
    let expect = (mags[..cut].iter().sum::<f64>() / mags.iter().sum::<f64>()).sqrt();
    assert!((out.report.stages[1].error.rel_frobenius - expect).abs() < 1e-9);
    assert!(out.report.stages[2].error.rel_frobenius < expect + 0.01);
    // Stage errors are against the original; the first stage is exact.
    assert_eq!(out.report.stages[0].error.rel_frobenius, 0.0);
    let text = out.report.to_string();
    assert!(text.contains("magnitude 75%") && text.contains("int8 sym per-row"));

    // Low-rank factors are quantized each.
    let a = CompressedMatrix::from_dense(random(64, 4, 1).view()).unwrap();
    let b = CompressedMatrix::from_dense(random(4, 48, 2).view()).unwrap();
    let lr = CompressedMatrix::low_rank(a, b).unwrap();
    let q = IntQuantizer::params(8)
        .per_row()
        .check()
        .unwrap()
        .quantize(&lr)
        .unwrap();
    let Structure::LowRank(f) = q.structure() else {
        panic!()
    };
    assert_eq!((f.a().encoding(), f.b().encoding()), ("int8", "int8"));

    // Named runs keep order and per-layer outcomes.
    let bad = Array2::<f32>::zeros((0, 3));
    let layers = vec![("a".to_string(), w.view()), ("b".to_string(), bad.view())];
    let res = Pipeline::new()
        .quantize(Binary)
        .run_named(&layers, &Sequential);
    assert!(res[0].1.is_ok());
    assert!(matches!(res[1].1, Err(SquishError::Empty { .. })));
}

#[test]
fn every_error_variant_is_reachable() {
    let w = random(4, 8, 1);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    let mut nan = w.clone();
    nan[[1, 2]] = f32::NAN;
    assert!(matches!(
        CompressedMatrix::from_dense(nan.view()),
        Err(SquishError::NonFinite { index: 10, .. })
    ));
    let mut inf = w.clone();
    inf[[0, 0]] = f32::INFINITY;
    assert!(matches!(
        m.matmul(inf.view()),
        Err(SquishError::NonFinite { .. })
    ));
    assert!(matches!(
        CompressedMatrix::from_dense(Array2::<f32>::zeros((0, 5)).view()),
        Err(SquishError::Empty { .. })
    ));
    assert!(matches!(
        m.matmul(random(2, 7, 1).view()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Magnitude::params(1.0).check(),
        Err(SquishError::Pruning(PruningError::Sparsity(_)))
    ));
    assert!(matches!(
        Magnitude::params(-0.1).check(),
        Err(SquishError::Pruning(PruningError::Sparsity(_)))
    ));
    assert!(matches!(
        IntQuantizer::params(3).check(),
        Err(SquishError::Quantization(
            QuantizationError::UnsupportedBits(3)
        ))
    ));
    assert!(matches!(
        IntQuantizer::params(8).per_group(0).check(),
        Err(SquishError::Quantization(QuantizationError::ZeroGroupSize))
    ));
    assert!(matches!(
        ThreadPool::new(0),
        Err(SquishError::Parallel(ParallelError::Zero {
            what: "threads",
            ..
        }))
    ));
    // Pruning a binary matrix, quantizing twice: incompatible compositions.
    let b = Binary.quantize(&m).unwrap();
    let e = Magnitude::params(0.5)
        .check()
        .unwrap()
        .prune(&b)
        .unwrap_err();
    assert!(matches!(e, SquishError::Incompatible { .. }));
    assert!(e.to_string().contains("prune before quantizing"));
    assert!(matches!(
        Ternary.quantize(&b),
        Err(SquishError::Incompatible { .. })
    ));
    // Inconsistent parts.
    assert!(matches!(
        Values::f32(RowLayout::Uniform { rows: 2, len: 2 }, vec![1.0; 3]),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(matches!(
        Csr::new(2, 4, vec![0, 2, 1], ColIndices::U16(vec![0])),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(matches!(
        Csr::new(1, 4, vec![0, 2], ColIndices::U16(vec![3, 1])),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(matches!(
        KeptRows::new(3, vec![2, 1]),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(NM::new(1, 8, 4, 4, PackedBits::pack(2, &[0; 8]).unwrap()).is_err());
    assert!(NM::new(1, 6, 2, 4, PackedBits::pack(2, &[0; 3]).unwrap()).is_err());
    assert!(matches!(
        Values::ternary(
            RowLayout::Uniform { rows: 1, len: 1 },
            PackedBits::pack(2, &[3]).unwrap(),
            vec![1.0]
        ),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(matches!(
        Values::codebook(
            RowLayout::Uniform { rows: 1, len: 2 },
            1,
            CodebookScope::PerTensor,
            vec![0.0],
            PackedBits::pack(1, &[0, 0]).unwrap()
        ),
        Err(SquishError::Matrix(MatrixError::CodebookSize(1)))
    ));
    assert!(matches!(
        Values::codebook(
            RowLayout::Uniform { rows: 1, len: 1 },
            3,
            CodebookScope::PerTensor,
            vec![0.0; 3],
            PackedBits::pack(2, &[3]).unwrap()
        ),
        Err(SquishError::Inconsistent { .. })
    ));
    assert!(PackedBits::pack(17, &[0]).is_err());
    assert!(PackedBits::pack(3, &[8]).is_err());
    assert!(PackedBits::from_bytes(4, 3, vec![0; 1]).is_err());
    let a = CompressedMatrix::from_dense(random(4, 2, 1).view()).unwrap();
    assert!(matches!(
        CompressedMatrix::low_rank(a.clone(), a),
        Err(SquishError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        squish::metrics::ErrorMetrics::between(w.view(), random(3, 8, 1).view()),
        Err(SquishError::ShapeMismatch { .. })
    ));
    // Messages say what to do.
    let msg = CompressedMatrix::from_dense(nan.view())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("NaN") && msg.contains("clean or clip"));
}

#[test]
fn all_zero_rows_quantize_to_exact_zeros() {
    let mut w = random(3, 16, 4);
    w.row_mut(1).fill(0.0);
    let m = CompressedMatrix::from_dense(w.view()).unwrap();
    for q in [
        IntQuantizer::params(8).per_row().check().unwrap(),
        IntQuantizer::params(4)
            .symmetric(false)
            .per_group(4)
            .check()
            .unwrap(),
    ] {
        let back = q.quantize(&m).unwrap().to_dense();
        assert!(back.row(1).iter().all(|&v| v == 0.0));
        assert!(back.iter().all(|v| v.is_finite()));
    }
    let all_zero = CompressedMatrix::from_dense(Array2::<f32>::zeros((2, 2)).view()).unwrap();
    assert_eq!(
        Binary.quantize(&all_zero).unwrap().to_dense(),
        Array2::<f32>::zeros((2, 2))
    );
}

#[test]
fn packed_bits_round_trip_every_width() {
    let mut rng = StdRng::seed_from_u64(9);
    for width in 1..=16u8 {
        for len in [0usize, 1, 7, 65] {
            let v: Vec<u16> = (0..len)
                .map(|_| (rng.random::<u32>() & ((1 << width) - 1)) as u16)
                .collect();
            let p = PackedBits::pack(width, &v).unwrap();
            assert_eq!(p.bytes().len(), (len * width as usize).div_ceil(8));
            assert_eq!(p.unpack(), v);
            assert_eq!(
                PackedBits::from_bytes(width, len, p.bytes().to_vec()).unwrap(),
                p
            );
        }
    }
    assert_eq!(
        (
            index_bits(2),
            index_bits(3),
            index_bits(16),
            index_bits(17),
            index_bits(65536)
        ),
        (1, 2, 4, 5, 16)
    );
}

#[test]
fn magnitude_prunes_exact_count_with_index_tie_break() {
    // All equal magnitudes: the earliest weights go first.
    let w = Array2::from_elem((2, 5), 0.5f32);
    let keep = Magnitude::params(0.35)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    assert_eq!(keep.iter().filter(|&&k| !k).count(), 3);
    assert_eq!(keep.as_slice().unwrap()[..4], [false, false, false, true]);
    // floor(s·n) = 0 prunes nothing.
    let keep = Magnitude::params(0.05)
        .check()
        .unwrap()
        .mask(w.view())
        .unwrap();
    assert!(keep.iter().all(|&k| k));
}

/// Nearest-centroid codebook encoding of f32 values (a test-side encoder).
fn codebook(v: &F32Values, centroids: &[f32]) -> Values {
    let idx: Vec<u16> = v
        .data()
        .iter()
        .map(|&x| {
            (0..centroids.len())
                .min_by(|&a, &b| {
                    (x - centroids[a])
                        .abs()
                        .total_cmp(&(x - centroids[b]).abs())
                })
                .unwrap() as u16
        })
        .collect();
    let k = centroids.len();
    Values::codebook(
        v.layout().clone(),
        k,
        CodebookScope::PerTensor,
        centroids.to_vec(),
        PackedBits::pack(index_bits(k), &idx).unwrap(),
    )
    .unwrap()
}
