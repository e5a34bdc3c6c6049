//! Fine-tuning shared weights: codebook centroids trained by the sum of
//! their members' gradients (Deep Compression, Han et al. 2016, §3.1).

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::trainer::check_data;
use super::{CompressedMlp, Scalar, TrainReport, Trainer};
use crate::data::Dataset;
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
/// use squish::training::centroid_gradients;
/// let layout = RowLayout::Uniform { rows: 1, len: 3 };
/// let idx = PackedBits::pack(1, &[0, 1, 0]).unwrap();
/// let v = Values::codebook(layout, 2, CodebookScope::PerTensor, vec![-1.0, 1.0], idx).unwrap();
/// let m = CompressedMatrix::from_parts(1, 3, Structure::Dense, v).unwrap();
/// let g = centroid_gradients(&m, array![[0.5f64, 2.0, 0.25]].view()).unwrap();
/// assert_eq!(g, vec![0.75, 2.0]);
/// ```
pub fn centroid_gradients<F: Scalar>(m: &CompressedMatrix, dw: ArrayView2<F>) -> Result<Vec<F>> {
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
        g[book * k + cb.indices().get(flat) as usize] += dw[[row, col]];
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

/// Fine-tunes the centroids of every codebook-encoded layer of `model`, and
/// all biases, on softmax cross-entropy, with the trainer's epochs, batch
/// size, seed and optimizer. The indices (which weight shares which
/// centroid) and the structure never change, so the storage stays the same.
pub fn finetune_centroids(
    trainer: &Trainer,
    model: &mut CompressedMlp,
    data: &Dataset,
) -> Result<TrainReport> {
    let mut dense = model.to_mlp()?;
    check_data(&dense, data)?;
    let n = model.layers().len();
    let coded: Vec<bool> = model
        .layers()
        .iter()
        .map(|m| matches!(m.values(), Some(Values::Codebook(_))))
        .collect();
    if !coded.iter().any(|&c| c) {
        return Err(SquishError::Incompatible {
            pass: "codebook fine-tuning".into(),
            structure: model.layers()[0].structure().kind(),
            encoding: model.layers()[0].encoding(),
            hint: "no layer holds codebook values",
        });
    }
    let mut centroids: Vec<Vec<f32>> = model
        .layers()
        .iter()
        .map(|m| match m.values() {
            Some(Values::Codebook(cb)) => cb.centroids().to_vec(),
            _ => Vec::new(),
        })
        .collect();
    let mut biases: Vec<Vec<f32>> = model.biases().iter().map(|b| b.to_vec()).collect();
    let mut opt = trainer.optimizer().state::<f32>();
    let mut rng = StdRng::seed_from_u64(trainer.seed());
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut epoch_loss = Vec::with_capacity(trainer.epochs());
    let mut steps = 0;
    for _ in 0..trainer.epochs() {
        order.shuffle(&mut rng);
        let (mut sum, mut seen) = (0.0, 0);
        for batch in order.chunks(trainer.batch_size()) {
            let (x, y) = data.rows(batch);
            let (loss, grads) = dense.gradients(x.view(), &y)?;
            let mut cg = Vec::with_capacity(n);
            for ((m, &c), g) in model.layers().iter().zip(&coded).zip(&grads.layers) {
                cg.push(if c {
                    centroid_gradients(m, g.w.view())?
                } else {
                    Vec::new()
                });
            }
            let gb: Vec<Vec<f32>> = grads.layers.iter().map(|g| g.b.to_vec()).collect();
            {
                let mut params: Vec<&mut [f32]> =
                    centroids.iter_mut().map(|c| c.as_mut_slice()).collect();
                params.extend(biases.iter_mut().map(|b| b.as_mut_slice()));
                let mut gs: Vec<&[f32]> = cg.iter().map(|c| c.as_slice()).collect();
                gs.extend(gb.iter().map(|b| b.as_slice()));
                opt.step_slices(&mut params, &gs)?;
            }
            for l in 0..n {
                let w = if coded[l] {
                    with_centroids(&model.layers()[l], centroids[l].clone())?
                } else {
                    model.layers()[l].clone()
                };
                model.set_layer(l, w, ndarray::Array1::from(biases[l].clone()))?;
            }
            dense = model.to_mlp()?;
            sum += loss * batch.len() as f64;
            seen += batch.len();
            steps += 1;
        }
        epoch_loss.push(sum / seen as f64);
    }
    Ok(TrainReport {
        epoch_loss,
        steps,
        masks: super::Masks::none(n),
    })
}

/// Test helper shape: a dense matrix from a codebook matrix's centroids,
/// in any float type (used by f64 gradient checks).
pub fn decode_with_centroids<F: Scalar>(
    m: &CompressedMatrix,
    centroids: &[F],
) -> Result<Array2<F>> {
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
