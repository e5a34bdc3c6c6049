//! [`Weights`]: tensors by Hugging Face name, from a safetensors model or a
//! squish container, turned into checked layers.

use ndarray::{Array1, Array2};

use crate::error::Result;
use crate::io::{CompressedModel, Entry, Model, Tensor};
use crate::matrix::CompressedMatrix;
use crate::nn::{Activations, Embedding, LayerNorm, Linear, NnError, INPUT_SCALE};

/// Where an encoder's tensors come from. Compressed matrices of a container
/// stay compressed: layers multiply them with their own kernels.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    /// A plain model (safetensors), every tensor f32 after loading.
    Dense(&'a Model),
    /// A squish container: compressed matrices and plain tensors.
    Container(&'a CompressedModel),
}

enum Found<'a> {
    Plain(&'a Tensor),
    Compressed(&'a CompressedMatrix),
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

impl<'a> Weights<'a> {
    fn find(&self, name: &str) -> Option<Found<'a>> {
        match self {
            Weights::Dense(m) => m.get(name).map(Found::Plain),
            Weights::Container(c) => c.get(name).map(|e| match e {
                Entry::Plain(t) => Found::Plain(t),
                Entry::Compressed(ct) => Found::Compressed(ct.matrix()),
            }),
        }
    }

    /// True when the model holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn get(&self, name: &str) -> Result<Found<'a>> {
        self.find(name).ok_or_else(|| {
            NnError::MissingTensor {
                name: name.to_string(),
            }
            .into()
        })
    }

    fn floats(name: &str, t: &'a Tensor) -> Result<&'a [f32]> {
        t.as_f32().ok_or_else(|| {
            NnError::TensorForm {
                name: name.to_string(),
                detail: format!("dtype {:?} is not a float type", t.dtype()),
            }
            .into()
        })
    }

    /// A 1-D f32 tensor of `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>> {
        match self.get(name)? {
            Found::Plain(t) if t.shape() == [len] => {
                Ok(Array1::from(Self::floats(name, t)?.to_vec()))
            }
            Found::Plain(t) => Err(NnError::TensorShape {
                name: name.into(),
                expected: shape_str(&[len]),
                got: shape_str(t.shape()),
            }
            .into()),
            Found::Compressed(m) => Err(NnError::TensorForm {
                name: name.into(),
                detail: format!("a vector is stored as a compressed {:?} matrix", m.shape()),
            }
            .into()),
        }
    }

    fn check_matrix(name: &str, got: &[usize], rows: usize, cols: usize) -> Result<()> {
        if got != [rows, cols] {
            return Err(NnError::TensorShape {
                name: name.into(),
                expected: shape_str(&[rows, cols]),
                got: shape_str(got),
            }
            .into());
        }
        Ok(())
    }

    fn dense_matrix(name: &str, t: &'a Tensor, rows: usize, cols: usize) -> Result<Array2<f32>> {
        Self::check_matrix(name, t.shape(), rows, cols)?;
        Ok(
            Array2::from_shape_vec((rows, cols), Self::floats(name, t)?.to_vec())
                .expect("shape checked"),
        )
    }

    /// `prefix.weight` `[out, in]` and `prefix.bias` `[out]` as a layer.
    pub fn linear(
        &self,
        prefix: &str,
        out: usize,
        inp: usize,
        mode: Activations,
    ) -> Result<Linear> {
        let wname = format!("{prefix}.weight");
        let bias = Some(self.vector(&format!("{prefix}.bias"), out)?);
        let l = match self.get(&wname)? {
            Found::Plain(t) => Linear::dense(Self::dense_matrix(&wname, t, out, inp)?, bias)?,
            Found::Compressed(m) => {
                let (r, c) = m.shape();
                Self::check_matrix(&wname, &[r, c], out, inp)?;
                Linear::with_activations(m.clone(), bias, mode)?
            }
        };
        // SmoothQuant's per-input-channel factors, when the model has them.
        let sname = format!("{prefix}.{INPUT_SCALE}");
        if !self.contains(&sname) {
            return Ok(l);
        }
        l.with_input_scale(self.vector(&sname, inp)?)
    }

    /// A `[rows, dim]` lookup table.
    pub fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        match self.get(name)? {
            Found::Plain(t) => Embedding::dense(Self::dense_matrix(name, t, rows, dim)?),
            Found::Compressed(m) => {
                let (r, c) = m.shape();
                Self::check_matrix(name, &[r, c], rows, dim)?;
                Ok(Embedding::Compressed(m.clone()))
            }
        }
    }

    /// `prefix.weight` (γ) and `prefix.bias` (β) of width `dim`.
    pub fn layer_norm(&self, prefix: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        LayerNorm::new(
            self.vector(&format!("{prefix}.weight"), dim)?,
            self.vector(&format!("{prefix}.bias"), dim)?,
            eps,
        )
    }
}
