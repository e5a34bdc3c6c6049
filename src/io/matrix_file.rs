//! One compressed matrix in a file: [`CompressedMatrix::save`] and
//! [`CompressedMatrix::load`] over the container format.

use std::path::Path;

use super::{CompressedModel, CompressedTensor, Dtype, Entry, FileError};
use crate::error::Result;
use crate::matrix::CompressedMatrix;

/// The name the single matrix is stored under.
const WEIGHT: &str = "weight";

impl CompressedMatrix {
    /// Writes this matrix alone to a squish container at `path`, atomically
    /// (temporary file, fsync, rename). It loads back bit for bit with
    /// [`CompressedMatrix::load`]; for a whole model use
    /// [`CompressedModel`](crate::io::CompressedModel).
    ///
    /// ```
    /// use squish::matrix::CompressedMatrix;
    /// use squish::ndarray::Array2;
    /// use squish::prelude::*;
    ///
    /// let w = Array2::from_shape_fn((8, 16), |(i, j)| (i as f32 - j as f32) / 16.0);
    /// let m = Pipeline::new().quantize(IntQuantizer::params(8).check()?).run(&w)?.matrix;
    /// let path = std::env::temp_dir().join(format!("squish-doc-{}.squish", std::process::id()));
    /// m.save(&path)?;
    /// assert_eq!(CompressedMatrix::load(&path)?, m);
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let t =
            CompressedTensor::new(self.clone(), Dtype::F32, vec![self.rows(), self.cols()], "")?;
        let mut model = CompressedModel::new();
        model.insert_compressed(WEIGHT, t)?;
        model.save(path)
    }

    /// Reads a container holding exactly one compressed matrix (as
    /// [`save`](Self::save) writes it).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let model = CompressedModel::load(path)?;
        let mut matrices = model.iter().filter_map(|(_, e)| match e {
            Entry::Compressed(t) => Some(t.matrix()),
            Entry::Plain(_) => None,
        });
        match (matrices.next(), matrices.next()) {
            (Some(m), None) => Ok(m.clone()),
            (None, _) => Err(FileError::NotOneMatrix { count: 0 }.into()),
            (Some(_), Some(_)) => Err(FileError::NotOneMatrix {
                count: 2 + matrices.count(),
            }
            .into()),
        }
    }
}
