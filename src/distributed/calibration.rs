//! Calibration statistics over data shards: per-chunk partial sums in f64
//! (`XᵀX`, column norms, any matrix of sums), reduced in a fixed order.

use std::ops::Range;

use ndarray::Array2;

use super::{allreduce_items, Cluster};
use crate::error::{Result, SquishError};

/// Sums per-chunk matrices of f64 partial sums over the ranks: `chunk(c)`
/// gives the sums of chunk `c` of `n_chunks` (fixed chunks of the
/// calibration data, never depending on the rank count); each rank
/// computes only its chunks. The sum is bit-identical on every rank and
/// for any number of ranks and threads. Collective.
///
/// ```
/// use ndarray::Array2;
/// use squish::distributed::{reduce_chunks, Cluster, SingleProcess};
/// use squish::parallel::Sequential;
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let s = reduce_chunks(&c, 4, |k| Ok(Array2::from_elem((2, 2), k as f64)))?;
/// assert_eq!(s, Array2::from_elem((2, 2), 6.0));
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn reduce_chunks<F>(cluster: &Cluster<'_>, n_chunks: usize, chunk: F) -> Result<Array2<f64>>
where
    F: Fn(usize) -> Result<Array2<f64>> + Sync,
{
    allreduce_items(cluster, n_chunks, "calibration chunk", chunk, |a, b| {
        if a.dim() != b.dim() {
            return Err(SquishError::shape(
                "calibration partial sums",
                format!("{:?}", a.dim()),
                format!("{:?}", b.dim()),
            ));
        }
        *a += &b;
        Ok(())
    })
}

/// `XᵀX` in f64 of the activations `X` (`[rows, d]`) of `rows` calibration
/// samples, read in chunks of `chunk_rows` rows through
/// `activations(row range)`. The diagonal holds the squared column norms.
/// Every rank reads only its chunks; the result is the same on every rank
/// and for any rank count. Collective.
///
/// ```
/// use ndarray::{array, s};
/// use squish::distributed::{gram, Cluster, SingleProcess};
/// use squish::parallel::Sequential;
/// let x = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let g = gram(&c, 3, 2, |r| Ok(x.slice(s![r, ..]).to_owned()))?;
/// assert_eq!(g, array![[35.0, 44.0], [44.0, 56.0]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn gram<F>(
    cluster: &Cluster<'_>,
    rows: usize,
    chunk_rows: usize,
    activations: F,
) -> Result<Array2<f64>>
where
    F: Fn(Range<usize>) -> Result<Array2<f32>> + Sync,
{
    if chunk_rows == 0 {
        return Err(SquishError::invalid(
            "chunk_rows",
            0,
            "a chunk needs at least one row",
        ));
    }
    let n_chunks = rows.div_ceil(chunk_rows);
    reduce_chunks(cluster, n_chunks, |c| {
        let r = c * chunk_rows..((c + 1) * chunk_rows).min(rows);
        let x = activations(r.clone())?;
        if x.nrows() != r.len() {
            return Err(SquishError::shape(
                "calibration activations",
                format!("{} rows", r.len()),
                format!("{} rows", x.nrows()),
            ));
        }
        let x = x.mapv(f64::from);
        Ok(x.t().dot(&x))
    })
}

/// Column norms `‖X[:, j]‖₂` from a Gram matrix `XᵀX` (its diagonal).
pub fn column_norms(gram: &Array2<f64>) -> ndarray::Array1<f64> {
    gram.diag().mapv(f64::sqrt)
}
