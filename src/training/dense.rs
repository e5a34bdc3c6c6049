//! [`Dense`]: a fully connected layer `y = x·Wᵀ + b`.

use ndarray::{Array1, Array2, ArrayView2, AsArray, Axis, Ix2};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::Scalar;
use crate::error::{check_non_empty, Result, SquishError};

/// A fully connected layer with weight `W` of shape `[out, in]` (PyTorch's
/// layout, the one [`CompressedMatrix`](crate::matrix::CompressedMatrix)
/// uses) and bias `b` of length `out`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense<F: Scalar = f32> {
    pub(crate) w: Array2<F>,
    pub(crate) b: Array1<F>,
}

/// The gradient of a loss with respect to one [`Dense`] layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGrad<F: Scalar = f32> {
    /// ∂L/∂W, `[out, in]`.
    pub w: Array2<F>,
    /// ∂L/∂b, `[out]`.
    pub b: Array1<F>,
}

impl<F: Scalar> Dense<F> {
    /// A layer from its weight `[out, in]` and bias `[out]`.
    pub fn new(w: Array2<F>, b: Array1<F>) -> Result<Self> {
        check_non_empty("dense weight", w.nrows(), w.ncols())?;
        if b.len() != w.nrows() {
            return Err(SquishError::shape(
                "dense bias",
                format!("{} values (one per output)", w.nrows()),
                format!("{}", b.len()),
            ));
        }
        if let Some((index, v)) = w
            .iter()
            .chain(b.iter())
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(SquishError::NonFinite {
                what: "dense parameters",
                index,
                value: v.to_f32().unwrap_or(f32::NAN),
            });
        }
        Ok(Dense { w, b })
    }

    /// He (Kaiming) normal initialisation, `W ~ N(0, 2/in)`, zero bias: keeps
    /// activation variance steady through ReLU/GELU layers.
    pub fn he(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let normal = Normal::new(0.0, (2.0 / inputs as f64).sqrt()).expect("positive std");
        let w = Array2::from_shape_simple_fn((outputs, inputs), || F::of(normal.sample(rng)));
        Dense {
            w,
            b: Array1::zeros(outputs),
        }
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> ArrayView2<'_, F> {
        self.w.view()
    }

    /// The bias.
    pub fn bias(&self) -> ndarray::ArrayView1<'_, F> {
        self.b.view()
    }

    /// Inputs.
    pub fn inputs(&self) -> usize {
        self.w.ncols()
    }

    /// Outputs.
    pub fn outputs(&self) -> usize {
        self.w.nrows()
    }

    /// `x·Wᵀ + b` for `x` of shape `[batch, in]` (shape not checked: callers do).
    pub fn forward<'a>(&self, x: impl AsArray<'a, F, Ix2>) -> Array2<F> {
        let x: ArrayView2<'a, F> = x.into();
        x.dot(&self.w.t()) + &self.b
    }

    /// Given the layer input `x` and `g = ∂L/∂y`, returns `∂L/∂(W, b)` and,
    /// when `need_input_grad`, `∂L/∂x = g·W`.
    pub fn backward<'a>(
        &self,
        x: impl AsArray<'a, F, Ix2>,
        g: impl AsArray<'a, F, Ix2>,
        need_input_grad: bool,
    ) -> (DenseGrad<F>, Option<Array2<F>>) {
        let x: ArrayView2<'a, F> = x.into();
        let g: ArrayView2<'a, F> = g.into();
        let grad = DenseGrad {
            w: g.t().dot(&x),
            b: g.sum_axis(Axis(0)),
        };
        let dx = need_input_grad.then(|| g.dot(&self.w));
        (grad, dx)
    }

    /// The same layer in another float type.
    pub fn cast<G: Scalar>(&self) -> Dense<G> {
        Dense {
            w: self.w.mapv(|v| G::of(v.f64())),
            b: self.b.mapv(|v| G::of(v.f64())),
        }
    }
}

impl<F: Scalar> DenseGrad<F> {
    /// Zeros shaped like `layer`.
    pub fn zeros_like(layer: &Dense<F>) -> Self {
        DenseGrad {
            w: Array2::zeros(layer.w.raw_dim()),
            b: Array1::zeros(layer.b.len()),
        }
    }
}
