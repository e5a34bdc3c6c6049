//! Centroid fine-tuning, the matrix side: the gradient of each shared
//! centroid, and a codebook matrix with new centroids. The training engine
//! runs the loop ([`finetune_centroids`](crate::training::finetune_centroids)).

use ndarray::{Array2, ArrayView2, AsArray, Ix2};
use num_traits::Float;

use crate::error::{Result, SquishError};
use crate::matrix::{CodebookScope, CompressedMatrix, Structure, Values};

/// Calls `f(stored row, flat value index, logical row, column)` for every
/// stored value of a non-low-rank matrix.
fn for_each_position(
    m: &CompressedMatrix,
    mut f: impl FnMut(usize, usize, usize, usize),
) -> Result<()> {
    let values = m.values().ok_or_else(|| SquishError::Incompatible {
        pass: "codebook fine-tuning".into(),
        structure: m.structure().kind(),
        encoding: m.encoding(),
        hint: "fine-tune the codebooks of each low-rank factor instead",
    })?;
    let layout = values.layout();
    for i in 0..layout.rows() {
        for (pos, k) in layout.range(i).enumerate() {
            let (row, col) = match m.structure() {
                Structure::Dense => (i, pos),
                Structure::Csr(c) => (i, c.col_idx().get(k)),
                Structure::NM(s) => (i, (pos / s.n()) * s.m() + s.positions().get(k) as usize),
                Structure::KeptRows(kr) => (kr.rows()[i] as usize, pos),
                Structure::LowRank(_) => unreachable!("low rank holds no values"),
            };
            f(i, k, row, col);
        }
    }
    Ok(())
}

/// `∂L/∂c` for every centroid of a codebook-encoded matrix, given the dense
/// gradient `∂L/∂W` (`[rows, cols]`): each centroid's gradient is the sum of
/// the gradients of the weights that share it. Centroids are in the order
/// of [`CodebookValues::centroids`](crate::matrix::CodebookValues::centroids).
///
/// ```
/// use ndarray::array;
/// use squish::matrix::{CodebookScope, CompressedMatrix, PackedBits, RowLayout, Structure, Values};
/// use squish::compression::sharing::centroid_gradients;
/// let layout = RowLayout::Uniform { rows: 1, len: 3 };
/// let idx = PackedBits::pack(1, &[0, 1, 0]).unwrap();
/// let v = Values::codebook(layout, 2, CodebookScope::PerTensor, vec![-1.0, 1.0], idx).unwrap();
/// let m = CompressedMatrix::from_parts(1, 3, Structure::Dense, v).unwrap();
/// let g = centroid_gradients(&m, array![[0.5f64, 2.0, 0.25]].view()).unwrap();
/// assert_eq!(g, vec![0.75, 2.0]);
/// ```
pub fn centroid_gradients<'a, F: Float + 'a>(
    m: &CompressedMatrix,
    dw: impl AsArray<'a, F, Ix2>,
) -> Result<Vec<F>> {
    let dw: ArrayView2<'a, F> = dw.into();
    if dw.dim() != m.shape() {
        return Err(SquishError::shape(
            "weight gradient",
            format!("{:?}", m.shape()),
            format!("{:?}", dw.dim()),
        ));
    }
    let cb = match m.values() {
        Some(Values::Codebook(cb)) => cb,
        _ => {
            return Err(SquishError::Incompatible {
                pass: "codebook fine-tuning".into(),
                structure: m.structure().kind(),
                encoding: m.encoding(),
                hint: "only codebook-encoded values have centroids to fine-tune",
            })
        }
    };
    let mut g = vec![F::zero(); cb.centroids().len()];
    let k = cb.k();
    for_each_position(m, |i, flat, row, col| {
        let book = match cb.scope() {
            CodebookScope::PerTensor => 0,
            CodebookScope::PerRow => i,
        };
        let c = &mut g[book * k + cb.indices().get(flat) as usize];
        *c = *c + dw[[row, col]];
    })?;
    Ok(g)
}

/// `m` with its codebook centroids replaced (same count), indices kept.
pub fn with_centroids(m: &CompressedMatrix, centroids: Vec<f32>) -> Result<CompressedMatrix> {
    m.map_values(&|v| match v {
        Values::Codebook(cb) => Values::codebook(
            cb.layout.clone(),
            cb.k(),
            cb.scope(),
            centroids.clone(),
            cb.indices().clone(),
        ),
        other => Err(SquishError::Incompatible {
            pass: "codebook fine-tuning".into(),
            structure: m.structure().kind(),
            encoding: other.kind(),
            hint: "only codebook-encoded values have centroids to fine-tune",
        }),
    })
}

/// A dense matrix from a codebook matrix's indices and the given centroids,
/// in any float type (used by f64 gradient checks).
pub fn decode_with_centroids<F: Float>(m: &CompressedMatrix, centroids: &[F]) -> Result<Array2<F>> {
    let cb = match m.values() {
        Some(Values::Codebook(cb)) if cb.centroids().len() == centroids.len() => cb,
        _ => {
            return Err(SquishError::inconsistent(
                "codebook decode",
                "the matrix must hold codebook values with as many centroids as given",
            ))
        }
    };
    let mut w = Array2::zeros(m.shape());
    let k = cb.k();
    for_each_position(m, |i, flat, row, col| {
        let book = match cb.scope() {
            CodebookScope::PerTensor => 0,
            CodebookScope::PerRow => i,
        };
        w[[row, col]] = centroids[book * k + cb.indices().get(flat) as usize];
    })?;
    Ok(w)
}
