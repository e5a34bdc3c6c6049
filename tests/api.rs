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
