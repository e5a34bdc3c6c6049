//! Fine-tuning shared weights: codebook centroids trained by the sum of
//! their members' gradients (Deep Compression, Han et al. 2016, §3.1).

use super::trainer::{check_data, epoch_loop};
use super::{CompressedMlp, TrainReport, Trainer};
use crate::compression::sharing::{centroid_gradients, with_centroids};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::matrix::Values;

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
    let (epoch_loss, steps) = epoch_loop(
        data.len(),
        trainer.epochs(),
        trainer.batch_size(),
        trainer.seed(),
        &mut |batch, _| {
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
                    model.layers()[l].op().clone()
                };
                model.set_layer(l, w, ndarray::Array1::from(biases[l].clone()))?;
            }
            dense = model.to_mlp()?;
            Ok(loss)
        },
    )?;
    Ok(TrainReport {
        epoch_loss,
        steps,
        masks: super::Masks::none(n),
    })
}
