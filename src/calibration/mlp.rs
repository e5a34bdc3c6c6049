//! [`Calibratable`] for the training module's [`Mlp`]: layers are named
//! `layers.0`, `layers.1`, …; one input is a batch `[batch, inputs]`.

use std::collections::BTreeSet;

use ndarray::{Array2, ArrayView2};

use super::Calibratable;
use crate::error::{Result, SquishError};
use crate::parallel::ParallelExecutor;
use crate::training::{Dense, Mlp};

fn index(mlp: &Mlp<f32>, name: &str) -> Result<usize> {
    name.strip_prefix("layers.")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i < mlp.layers().len())
        .ok_or_else(|| {
            SquishError::invalid(
                "layer name",
                name,
                format!(
                    "an MLP names its layers layers.0 .. layers.{}",
                    mlp.layers().len() - 1
                ),
            )
        })
}

impl Calibratable for Mlp<f32> {
    type Input = Array2<f32>;

    fn stages(&self) -> Vec<Vec<String>> {
        (0..self.layers().len())
            .map(|i| vec![format!("layers.{i}")])
            .collect()
    }

    fn weight(&self, name: &str) -> Result<Array2<f32>> {
        Ok(self.layers()[index(self, name)?].weight().to_owned())
    }

    fn set_weight(&mut self, name: &str, w: ArrayView2<f32>) -> Result<()> {
        let i = index(self, name)?;
        let b = self.layers()[i].bias().to_owned();
        self.layers_mut()[i] = Dense::new(w.to_owned(), b)?;
        Ok(())
    }

    fn forward_capturing(
        &self,
        input: &Array2<f32>,
        wanted: &BTreeSet<String>,
        capture: &mut dyn FnMut(&str, ArrayView2<f32>) -> Result<()>,
        _exec: &dyn ParallelExecutor,
    ) -> Result<()> {
        let layers = self.layers();
        let last = (0..layers.len())
            .rev()
            .find(|i| wanted.contains(&format!("layers.{i}")));
        let Some(last) = last else { return Ok(()) };
        let mut h = input.clone();
        for (i, l) in layers.iter().enumerate().take(last + 1) {
            capture(&format!("layers.{i}"), h.view())?;
            if i < last {
                h = self.activation().forward(l.forward(h.view()).view());
            }
        }
        Ok(())
    }
}
