//! Transfer sets: the rows a student learns the teacher's outputs on.

use ndarray::{concatenate, Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::Dataset;
use crate::error::{Result, SquishError};

/// `data` followed by `copies` jittered copies of it: each image (rows of
/// `width × height` pixels, row-major) moved by a random whole-pixel shift
/// of at most `max_shift` in x and y, uncovered pixels set to 0 (as Hinton
/// et al.'s MNIST transfer set, "jittered by up to two pixels"). Labels are
/// kept; a teacher labels the new rows with its soft targets. Seeded.
///
/// ```
/// use ndarray::array;
/// use squish::data::Dataset;
/// use squish::distillation::jittered;
/// let d = Dataset::new(array![[1.0f32, 2.0, 3.0, 4.0]], vec![0], 2)?;
/// let j = jittered(&d, 2, 2, 1, 3, 7)?;
/// assert_eq!(j.len(), 4);
/// assert_eq!(j.x().row(0), d.x().row(0)); // the original comes first
/// for r in 1..4 { // a shift keeps pixel values, dropping some
///     assert!(j.x().row(r).iter().all(|v| [0.0, 1.0, 2.0, 3.0, 4.0].contains(v)));
/// }
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn jittered(
    data: &Dataset,
    width: usize,
    height: usize,
    max_shift: usize,
    copies: usize,
    seed: u64,
) -> Result<Dataset> {
    if width * height != data.features() {
        return Err(SquishError::shape(
            "jittered images",
            format!("{} features per row", width * height),
            format!("{}", data.features()),
        ));
    }
    if max_shift >= width.min(height) {
        return Err(SquishError::invalid(
            "max shift",
            max_shift,
            "must be smaller than the image side",
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let s = max_shift as i64;
    let mut parts = vec![data.x().to_owned()];
    let mut y = data.y().to_vec();
    for _ in 0..copies {
        let mut out = Array2::<f32>::zeros(data.x().dim());
        for (src, mut dst) in data.x().outer_iter().zip(out.outer_iter_mut()) {
            let (dx, dy) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
            for r in 0..height as i64 {
                let sr = r - dy;
                if sr < 0 || sr >= height as i64 {
                    continue;
                }
                for c in 0..width as i64 {
                    let sc = c - dx;
                    if sc >= 0 && sc < width as i64 {
                        dst[(r * width as i64 + c) as usize] =
                            src[(sr * width as i64 + sc) as usize];
                    }
                }
            }
        }
        parts.push(out);
        y.extend_from_slice(data.y());
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let x = concatenate(Axis(0), &views)
        .map_err(|e| SquishError::inconsistent("jittered images", e.to_string()))?;
    Dataset::new(x, y, data.classes())
}
