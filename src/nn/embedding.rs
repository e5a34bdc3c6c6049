//! [`Embedding`]: a lookup table whose rows are token vectors.

use ndarray::Array2;

use crate::error::{check_finite, Result};
use crate::matrix::CompressedMatrix;

/// A table of `rows` vectors of width `dim`, dense or compressed; a lookup
/// decodes just the rows it reads.
///
/// ```
/// use ndarray::array;
/// use squish::nn::Embedding;
/// let e = Embedding::dense(array![[1.0f32, 2.0], [3.0, 4.0]])?;
/// let mut out = [10.0f32, 10.0];
/// e.add_row(1, &mut out);
/// assert_eq!(out, [13.0, 14.0]);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug)]
pub enum Embedding {
    /// Dense f32 rows.
    Dense(Array2<f32>),
    /// A compressed table (rows decoded on lookup).
    Compressed(CompressedMatrix),
}

impl Embedding {
    /// A dense table; rejects NaN/Inf.
    pub fn dense(table: Array2<f32>) -> Result<Self> {
        check_finite("embedding table", table.iter())?;
        Ok(Embedding::Dense(table.as_standard_layout().into_owned()))
    }

    /// `(rows, dim)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Embedding::Dense(t) => t.dim(),
            Embedding::Compressed(m) => m.shape(),
        }
    }

    /// Number of rows (vocabulary size).
    pub fn rows(&self) -> usize {
        self.shape().0
    }

    /// Adds row `i` to `out` (length `dim`). Panics if `i` is out of range
    /// (callers check ids first).
    pub fn add_row(&self, i: usize, out: &mut [f32]) {
        match self {
            Embedding::Dense(t) => out
                .iter_mut()
                .zip(t.row(i))
                .for_each(|(o, &v)| *o += v),
            Embedding::Compressed(m) => {
                let mut buf = vec![0.0f32; out.len()];
                m.decode_row(i, &mut buf);
                out.iter_mut().zip(&buf).for_each(|(o, &v)| *o += v);
            }
        }
    }

    /// Bytes the table takes.
    pub fn bytes(&self) -> usize {
        match self {
            Embedding::Dense(t) => t.len() * 4,
            Embedding::Compressed(m) => m.storage().total(),
        }
    }
}
