//! Fashion-MNIST from the Debian package `dataset-fashion-mnist`.

use std::path::Path;

use ndarray::Array2;

use super::idx::read_idx_gz;
use super::{DataError, Dataset, IdxArray, Split};
use crate::error::Result;

/// Where the Debian package `dataset-fashion-mnist` installs the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// Fashion-MNIST (Zalando, MIT licence) from [`FASHION_MNIST_DIR`]: 60 000
/// training and 10 000 test images of 28×28 pixels (flattened to 784
/// features, scaled to [0, 1]) in 10 classes.
///
/// Returns `Ok(None)` when the files are not installed
/// (`apt-get install dataset-fashion-mnist`), and an error when they are
/// present but unreadable or malformed.
pub fn fashion_mnist() -> Result<Option<Split>> {
    fashion_mnist_from(Path::new(FASHION_MNIST_DIR))
}

/// Fashion-MNIST (or MNIST: the files have the same names and format) from
/// `dir`; `Ok(None)` when any of the four files is missing.
pub fn fashion_mnist_from(dir: &Path) -> Result<Option<Split>> {
    if FILES.iter().any(|f| !dir.join(f).is_file()) {
        return Ok(None);
    }
    let load = |i: usize, l: usize| -> Result<Dataset> {
        let images = read_idx_gz(&dir.join(FILES[i]))?;
        let labels = read_idx_gz(&dir.join(FILES[l]))?;
        to_dataset(images, labels)
    };
    Ok(Some(Split {
        train: load(0, 1)?,
        test: load(2, 3)?,
    }))
}

/// Images `[n, h, w]` and labels `[n]` into a dataset of `h·w` features in [0, 1].
pub(crate) fn to_dataset(images: IdxArray, labels: IdxArray) -> Result<Dataset> {
    if images.dims.len() != 3 || labels.dims.len() != 1 {
        return Err(DataError::malformed(
            "idx images/labels",
            format!(
                "images need 3 dimensions and labels 1; got {:?} and {:?}",
                images.dims, labels.dims
            ),
        )
        .into());
    }
    let n = images.dims[0];
    if labels.dims[0] != n {
        return Err(DataError::malformed(
            "idx images/labels",
            format!("{n} images but {} labels", labels.dims[0]),
        )
        .into());
    }
    let features = images.dims[1] * images.dims[2];
    let x: Vec<f32> = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let x = Array2::from_shape_vec((n, features), x).expect("idx sizes checked");
    let y = labels.data.iter().map(|&l| l as usize).collect();
    Dataset::new(x, y, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_directory_is_none() {
        assert!(fashion_mnist_from(Path::new("/nonexistent/squish"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn images_and_labels_must_agree() {
        let images = IdxArray {
            dims: vec![2, 2, 2],
            data: vec![0, 255, 0, 0, 51, 0, 0, 0],
        };
        let labels = IdxArray {
            dims: vec![2],
            data: vec![3, 9],
        };
        let d = to_dataset(images.clone(), labels.clone()).unwrap();
        assert_eq!(d.x()[[0, 1]], 1.0);
        assert_eq!(d.x()[[1, 0]], 0.2);
        assert_eq!(d.y(), &[3, 9]);
        let one_label = IdxArray {
            dims: vec![1],
            data: vec![3],
        };
        assert!(to_dataset(images.clone(), one_label).is_err());
        assert!(to_dataset(labels.clone(), labels.clone()).is_err());
        let bad_label = IdxArray {
            dims: vec![2],
            data: vec![3, 10],
        };
        assert!(to_dataset(images, bad_label).is_err());
    }
}
