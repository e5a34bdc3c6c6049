use std::time::Instant;
use ndarray::{s, Array2, linalg::general_mat_mul};
use faer_ext::IntoFaer;
fn main() {
    let w = Array2::from_shape_fn((2048, 2048), |(i, j)| ((i * 7 + j * 13) % 17) as f32 - 8.0);
    let q = Array2::from_shape_fn((2048, 74), |(i, j)| ((i * 3 + j * 5) % 11) as f32 - 5.0);
    for rep in 0..3 {
        let mut out = Array2::<f32>::zeros((2048, 74));
        let t = Instant::now();
        for r0 in (0..2048).step_by(128) {
            let mut o = out.slice_mut(s![r0..r0 + 128, ..]);
            general_mat_mul(1.0, &w.slice(s![r0..r0 + 128, ..]), &q, 0.0, &mut o);
        }
        let a = t.elapsed();
        let t = Instant::now();
        for r0 in (0..2048).step_by(128) {
            let mut o = out.slice_mut(s![r0..r0 + 128, ..]);
            general_mat_mul(1.0, &w.slice(s![.., r0..r0 + 128]).t(), &q, 0.0, &mut o);
        }
        let at = t.elapsed();
        let mut out2 = Array2::<f32>::zeros((2048, 74));
        let t = Instant::now();
        for r0 in (0..2048).step_by(128) {
            let o = out2.slice_mut(s![r0..r0 + 128, ..]);
            faer::linalg::matmul::matmul(o.into_faer(), faer::Accum::Replace, w.slice(s![r0..r0 + 128, ..]).into_faer(), q.view().into_faer(), 1.0f32, faer::Par::Seq);
        }
        let b = t.elapsed();
        let t = Instant::now();
        for r0 in (0..2048).step_by(128) {
            let o = out2.slice_mut(s![r0..r0 + 128, ..]);
            faer::linalg::matmul::matmul(o.into_faer(), faer::Accum::Replace, w.slice(s![.., r0..r0 + 128]).reversed_axes().into_faer(), q.view().into_faer(), 1.0f32, faer::Par::Seq);
        }
        let bt = t.elapsed();
        println!("rep {rep}: ndarray {a:?} (tn {at:?}), faer {b:?} (tn {bt:?})");
    }
}
