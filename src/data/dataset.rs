//! [`Dataset`]: feature rows with class labels.

use ndarray::{Array2, ArrayView2, Axis};

use super::DataError;
use crate::error::{check_finite, check_non_empty, Result, SquishError};

/// Feature rows `x` (`[n, features]`, f32) with a class label per row.
///
/// ```
/// use ndarray::array;
/// use squish::data::Dataset;
/// let d = Dataset::new(array![[0.0f32, 1.0], [1.0, 0.0]], vec![1, 0], 2).unwrap();
/// assert_eq!(d.len(), 2);
/// assert!(Dataset::new(array![[0.0f32, 1.0]], vec![2], 2).is_err()); // label ≥ classes
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    x: Array2<f32>,
    y: Vec<usize>,
    classes: usize,
}

/// A train / test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Rows to train on.
    pub train: Dataset,
    /// Held-out rows to measure on.
    pub test: Dataset,
}

impl Dataset {
    /// Checks that there is one label per row, every label is below
    /// `classes`, and every feature is finite.
    pub fn new(x: Array2<f32>, y: Vec<usize>, classes: usize) -> Result<Self> {
        check_non_empty("dataset features", x.nrows(), x.ncols())?;
        if y.len() != x.nrows() {
            return Err(SquishError::shape(
                "dataset",
                format!("{} labels (one per row)", x.nrows()),
                format!("{} labels", y.len()),
            ));
        }
        if classes < 2 {
            return Err(DataError::TooFewClasses(classes).into());
        }
        if let Some(&bad) = y.iter().find(|&&l| l >= classes) {
            return Err(DataError::Label {
                label: bad,
                classes,
            }
            .into());
        }
        check_finite("dataset features", x.iter())?;
        Ok(Dataset { x, y, classes })
    }

    /// The features, `[n, features]`.
    pub fn x(&self) -> ArrayView2<'_, f32> {
        self.x.view()
    }

    /// The labels.
    pub fn y(&self) -> &[usize] {
        &self.y
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Always false: a dataset holds at least one row.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of features per row.
    pub fn features(&self) -> usize {
        self.x.ncols()
    }

    /// The rows listed in `idx` (features and labels), in that order.
    pub fn rows(&self, idx: &[usize]) -> (Array2<f32>, Vec<usize>) {
        (
            self.x.select(Axis(0), idx),
            idx.iter().map(|&i| self.y[i]).collect(),
        )
    }

    /// The first `n` rows (all of them when `n ≥ len`), as a new dataset.
    pub fn head(&self, n: usize) -> Result<Dataset> {
        let n = n.min(self.len());
        Dataset::new(
            self.x.slice(ndarray::s![..n, ..]).to_owned(),
            self.y[..n].to_vec(),
            self.classes,
        )
    }
}
