//! The library as a dependency (issue #20): what a new user writes first
//! compiles and does what it says.

use squish::compression::lowrank::LowRankError;
use squish::io::FileError;
use squish::matrix::CompressedMatrix;
use squish::ndarray::{array, Array2};
use squish::prelude::*;

fn weights() -> Array2<f32> {
    Array2::from_shape_fn((24, 16), |(i, j)| {
        ((i * 7 + j * 13) % 29) as f32 / 29.0 - 0.5
    })
}

#[test]
fn owned_arrays_and_views_are_both_accepted() {
    let w = weights();
    let pipeline = Pipeline::new().quantize(IntQuantizer::params(8).per_row().check().unwrap());
    let by_ref = pipeline.run(&w).unwrap();
    let by_view = pipeline.run(w.view()).unwrap();
    assert_eq!(by_ref.matrix, by_view.matrix);
    let x = Array2::from_shape_fn((3, 16), |(b, j)| (b + j) as f32 / 10.0);
    let y = by_ref.matrix.matmul(&x).unwrap();
    assert_eq!(y, by_ref.matrix.matmul(x.view()).unwrap());
    assert_eq!(
        y,
        by_ref
            .matrix
            .matmul_on(&x, &ThreadPool::new(2).unwrap())
            .unwrap()
    );
    assert_eq!(CompressedMatrix::from_dense(&w).unwrap().to_dense(), w);
}

#[test]
fn matmul_is_x_times_w_transposed() {
    // Independent reference: the f64 sum Σ_j x[b, j]·w[o, j] written out.
    let w = weights();
    let x = Array2::from_shape_fn((2, 16), |(b, j)| (b as f32 + 1.0) * (j as f32 - 7.5) / 8.0);
    let y = CompressedMatrix::from_dense(&w)
        .unwrap()
        .matmul(&x)
        .unwrap();
    assert_eq!(y.dim(), (2, 24));
    for b in 0..2 {
        for o in 0..24 {
            let want: f64 = (0..16).map(|j| x[[b, j]] as f64 * w[[o, j]] as f64).sum();
            assert!((y[[b, o]] as f64 - want).abs() < 1e-5, "{b} {o}");
        }
    }
    // The dense kernel (W streamed by rows; within round-off of x.dot).
    let k = squish::kernels::dense_matmul(w.view(), x.view(), &squish::parallel::Sequential);
    assert_eq!(y, k.unwrap());
}

#[test]
fn io_errors_convert_with_question_mark() {
    fn read(path: &std::path::Path) -> squish::Result<Vec<u8>> {
        Ok(std::fs::read(path)?)
    }
    let e = read(std::path::Path::new("/nonexistent/squish/file")).unwrap_err();
    assert!(matches!(e, SquishError::Io(ref io) if io.kind() == std::io::ErrorKind::NotFound));
    assert!(e.to_string().contains("check the path"), "{e}");
}

#[test]
fn one_matrix_saves_and_loads_in_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.squish");
    let m = Pipeline::new()
        .prune(Magnitude::params(0.5).check().unwrap())
        .quantize(IntQuantizer::params(4).per_group(8).check().unwrap())
        .run(&weights())
        .unwrap()
        .matrix;
    m.save(&path).unwrap();
    let back = CompressedMatrix::load(&path).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.storage(), m.storage());
    // A container of two matrices is refused with a typed error.
    let mut model = CompressedModel::new();
    for name in ["a", "b"] {
        let t =
            squish::io::CompressedTensor::new(m.clone(), squish::io::Dtype::F32, vec![24, 16], "")
                .unwrap();
        model.insert_compressed(name, t).unwrap();
    }
    model.save(&path).unwrap();
    assert!(matches!(
        CompressedMatrix::load(&path),
        Err(SquishError::File(FileError::NotOneMatrix { count: 2 }))
    ));
}

#[test]
fn randomized_settings_never_ignore_a_rank() {
    let conflict = LowRank::params(RankSelection::Energy(0.9))
        .randomized(RandomizedSvd::params(64))
        .check()
        .unwrap_err();
    assert!(matches!(
        conflict,
        SquishError::LowRank(LowRankError::RankConflict { given: 64, .. })
    ));
    // The rank rule and the settings agree: the factor has that rank.
    let w = weights();
    let pass = LowRank::params(RankSelection::Fixed(3))
        .randomized(RandomizedSvd::params(3))
        .check()
        .unwrap();
    let out = Pipeline::new().then(pass).run(&w).unwrap();
    assert!(out.matrix.structure().kind().contains("low"));
    let f = LowRank::params(RankSelection::Fixed(3))
        .randomized(RandomizedSvd::settings())
        .check()
        .unwrap()
        .factorize(w.view(), &Sequential)
        .unwrap();
    assert_eq!(f.rank(), 3);
}

#[test]
fn family_errors_say_what_to_do() {
    use squish::compression::sharing::SharingError;
    use squish::quantization::QuantizationError;
    let e = IntQuantizer::params(3).check().unwrap_err();
    assert!(matches!(
        e,
        SquishError::Quantization(QuantizationError::UnsupportedBits(3))
    ));
    assert!(e.to_string().contains("pass 4 or 8"), "{e}");
    let e = KMeans::params(1).check().unwrap_err();
    assert!(matches!(
        e,
        SquishError::Sharing(SharingError::CodebookSize(1))
    ));
    assert!(e.to_string().contains("pick k"), "{e}");
    let _ = array![[1.0f32]]; // the re-exported ndarray's macros work too
}

/// Every public function and inherent method that reads arrays takes
/// anything ndarray can view (issue #20: `run(&w)` compiled, `fidelity(&a, &b)`
/// did not): `&owned` and `.view()` give the same bits.
#[test]
fn every_public_array_input_takes_owned_arrays_and_views() {
    use squish::compression::lowrank::{factorize, kernel as lowrank_kernel, Svd, SvdBackend};
    use squish::compression::sharing::centroid_gradients;
    use squish::kernels::dense_matmul;
    use squish::matrix::{
        reference, CodebookScope, InverseHessian, PackedBits, RowLayout, Structure, Values,
    };
    use squish::metrics::ErrorMetrics;
    use squish::ndarray::Array1;
    use squish::nn::{attend, fidelity, mean_pool_normalize, Linear};
    use squish::pass::LayerStats;
    use squish::plan::mean_cosine;
    use squish::pruning::{near_zero_mask, surviving_rows, wanda_scores, Structured};
    use squish::quantization::kernels::binary::xnor_reference;
    use squish::quantization::{
        fake_quantize, quantize_activations, scale_inputs, DynamicInt8, Gptq,
    };
    use squish::training::{accuracy, argmax_rows, log_softmax, softmax, Activation, Mlp};

    let w = weights(); // [24, 16]
    let w2 = w.mapv(|v| v * 0.9 + 0.01);
    let x = Array2::from_shape_fn((5, 16), |(b, j)| ((b * 5 + j * 3) % 11) as f32 / 11.0 - 0.4);
    let labels = [0, 3, 1, 2, 3];
    let seq = Sequential;

    // nn
    assert_eq!(fidelity(&w, &w2, 3), fidelity(w.view(), w2.view(), 3));
    assert_eq!(
        mean_pool_normalize(&x, &[0..2, 2..5]),
        mean_pool_normalize(x.view(), &[0..2, 2..5])
    );
    let linear = Linear::dense(w.clone(), Some(Array1::linspace(-1.0, 1.0, 24))).unwrap();
    assert_eq!(
        linear.forward(&x, &seq).unwrap(),
        linear.forward(x.view(), &seq).unwrap()
    );
    assert_eq!(
        attend(&x, &x, &x, &[0..2, 2..5], 2, &seq).unwrap(),
        attend(x.view(), x.view(), x.view(), &[0..2, 2..5], 2, &seq).unwrap()
    );

    // training
    let logits = Array2::from_shape_fn((5, 4), |(b, c)| ((b * 3 + c * 7) % 5) as f32 - 2.0);
    assert_eq!(softmax(&logits, 2.0), softmax(logits.view(), 2.0));
    assert_eq!(log_softmax(&logits, 2.0), log_softmax(logits.view(), 2.0));
    assert_eq!(argmax_rows(&logits), argmax_rows(logits.view()));
    assert_eq!(accuracy(&logits, &labels), accuracy(logits.view(), &labels));
    let g = logits.mapv(|v| v * 0.5);
    assert_eq!(
        Activation::Gelu.forward(&logits),
        Activation::Gelu.forward(logits.view())
    );
    assert_eq!(
        Activation::Tanh.backward(&logits, &g),
        Activation::Tanh.backward(logits.view(), g.view())
    );
    let mlp: Mlp = Mlp::params(&[16, 8, 4]).seed(7).check().unwrap();
    assert_eq!(mlp.forward(&x).unwrap(), mlp.forward(x.view()).unwrap());
    assert_eq!(mlp.hidden(&x, 0).unwrap(), mlp.hidden(x.view(), 0).unwrap());
    assert_eq!(
        mlp.gradients(&x, &labels).unwrap(),
        mlp.gradients(x.view(), &labels).unwrap()
    );
    assert_eq!(
        mlp.accuracy(&x, &labels).unwrap(),
        mlp.accuracy(x.view(), &labels).unwrap()
    );
    assert_eq!(
        mlp.layers()[0].forward(&x),
        mlp.layers()[0].forward(x.view())
    );

    // pruning
    assert_eq!(
        wanda_scores(&w, &x).unwrap(),
        wanda_scores(w.view(), x.view()).unwrap()
    );
    assert_eq!(near_zero_mask(&w, 0.1), near_zero_mask(w.view(), 0.1));
    assert_eq!(surviving_rows(&w, 0.1), surviving_rows(w.view(), 0.1));
    let structured = Structured::params(0.5).rows().check().unwrap();
    assert_eq!(
        structured.norms(&w).unwrap(),
        structured.norms(w.view()).unwrap()
    );
    assert_eq!(
        structured.kept(&w).unwrap(),
        structured.kept(w.view()).unwrap()
    );

    // quantization
    assert_eq!(
        quantize_activations(&x).unwrap(),
        quantize_activations(x.view()).unwrap()
    );
    let s: Vec<f32> = (0..16).map(|j| 0.5 + j as f32 / 16.0).collect();
    assert_eq!(scale_inputs(&w, &s), scale_inputs(w.view(), &s));
    assert_eq!(
        fake_quantize(&w, &Binary).unwrap(),
        fake_quantize(w.view(), &Binary).unwrap()
    );
    let int8 = Pipeline::new()
        .quantize(IntQuantizer::params(8).per_row().check().unwrap())
        .run(&w)
        .unwrap()
        .matrix;
    let dynamic = DynamicInt8::new(int8).unwrap();
    assert_eq!(
        dynamic.matmul(&x, &seq).unwrap(),
        dynamic.matmul(x.view(), &seq).unwrap()
    );
    let gptq = Gptq::params(4).check().unwrap();
    assert_eq!(
        gptq.round_to_nearest(&w).unwrap(),
        gptq.round_to_nearest(w.view()).unwrap()
    );
    let mut stats = LayerStats::new(16);
    stats.accumulate(&x).unwrap();
    let mut stats_v = LayerStats::new(16);
    stats_v.accumulate(x.view()).unwrap();
    assert_eq!(stats, stats_v);
    let h = stats.hessian().to_owned();
    assert_eq!(
        gptq.quantize(&w, &h, &seq).unwrap().matrix,
        gptq.quantize(w.view(), h.view(), &seq).unwrap().matrix
    );
    assert_eq!(
        stats.target_weight(&w, 0.01).unwrap(),
        stats.target_weight(w.view(), 0.01).unwrap()
    );

    // compression::lowrank
    assert_eq!(
        factorize(&w, RankSelection::Fixed(3)).unwrap(),
        factorize(w.view(), RankSelection::Fixed(3)).unwrap()
    );
    assert_eq!(
        Svd::exact(&w, SvdBackend::Faer).unwrap(),
        Svd::exact(w.view(), SvdBackend::Faer).unwrap()
    );
    let low_rank = Pipeline::new()
        .then(LowRank::params(RankSelection::Fixed(3)).check().unwrap())
        .run(&w)
        .unwrap()
        .matrix;
    let Structure::LowRank(lr) = low_rank.structure() else {
        panic!("a low-rank pass gives a low-rank structure");
    };
    assert_eq!(
        lowrank_kernel::matmul(lr, &x, &seq),
        lowrank_kernel::matmul(lr, x.view(), &seq)
    );

    // matrix and kernels
    let keep = w.mapv(|v| v.abs() > 0.2);
    assert_eq!(
        CompressedMatrix::csr_from_mask(&w, &keep).unwrap(),
        CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap()
    );
    assert_eq!(
        CompressedMatrix::kept_rows(&w, vec![1, 5, 20]).unwrap(),
        CompressedMatrix::kept_rows(w.view(), vec![1, 5, 20]).unwrap()
    );
    assert_eq!(
        InverseHessian::new(&h, 0.01, None).unwrap().upper(),
        InverseHessian::new(h.view(), 0.01, None).unwrap().upper()
    );
    let m = CompressedMatrix::from_dense(&w).unwrap();
    assert_eq!(
        reference::matmul(&m, &x, &seq),
        reference::matmul(&m, x.view(), &seq)
    );
    assert_eq!(
        dense_matmul(&w, &x, &seq).unwrap(),
        dense_matmul(w.view(), x.view(), &seq).unwrap()
    );
    let binary = Binary.quantize(&m).unwrap();
    assert_eq!(
        xnor_reference(&binary, &x).unwrap(),
        xnor_reference(&binary, x.view()).unwrap()
    );
    let layout = RowLayout::Uniform { rows: 1, len: 3 };
    let idx = PackedBits::pack(1, &[0, 1, 0]).unwrap();
    let v = Values::codebook(layout, 2, CodebookScope::PerTensor, vec![-1.0, 1.0], idx).unwrap();
    let codebook = CompressedMatrix::from_parts(1, 3, Structure::Dense, v).unwrap();
    let dw = array![[0.5f64, 2.0, 0.25]];
    assert_eq!(
        centroid_gradients(&codebook, &dw).unwrap(),
        centroid_gradients(&codebook, dw.view()).unwrap()
    );

    // metrics and plan
    assert_eq!(
        ErrorMetrics::between(&w, &w2).unwrap(),
        ErrorMetrics::between(w.view(), w2.view()).unwrap()
    );
    assert_eq!(mean_cosine(&w, &w2), mean_cosine(w.view(), w2.view()));
}
