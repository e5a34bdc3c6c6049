//! Element-wise activations and their derivatives.

use ndarray::{Array2, ArrayView2, Zip};

use super::Scalar;

/// The hidden-layer nonlinearity of an [`Mlp`](super::Mlp).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(z, 0)`; its derivative at 0 is taken as 0.
    #[default]
    Relu,
    /// GELU, tanh form: `½z(1 + tanh(√(2/π)(z + 0.044715z³)))` (Hendrycks &
    /// Gimpel; the form BERT and GPT-2 use).
    Gelu,
    /// `z` (a linear network).
    Identity,
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_A: f64 = 0.044_715;

impl Activation {
    /// `f(z)` element-wise.
    pub fn forward<F: Scalar>(self, z: ArrayView2<F>) -> Array2<F> {
        match self {
            Activation::Relu => z.mapv(|v| v.max(F::zero())),
            Activation::Identity => z.to_owned(),
            Activation::Gelu => {
                let (c, a, half) = (F::of(GELU_C), F::of(GELU_A), F::of(0.5));
                z.mapv(|v| half * v * (F::one() + (c * (v + a * v * v * v)).tanh()))
            }
        }
    }

    /// `∂L/∂z = f'(z) ⊙ ∂L/∂f(z)`.
    pub fn backward<F: Scalar>(self, z: ArrayView2<F>, grad: ArrayView2<F>) -> Array2<F> {
        match self {
            Activation::Identity => grad.to_owned(),
            Activation::Relu => {
                Zip::from(z)
                    .and(grad)
                    .map_collect(|&v, &g| if v > F::zero() { g } else { F::zero() })
            }
            Activation::Gelu => {
                let (c, a, half) = (F::of(GELU_C), F::of(GELU_A), F::of(0.5));
                let three = F::of(3.0);
                Zip::from(z).and(grad).map_collect(|&v, &g| {
                    let t = (c * (v + a * v * v * v)).tanh();
                    let d = half * (F::one() + t)
                        + half * v * (F::one() - t * t) * c * (F::one() + three * a * v * v);
                    d * g
                })
            }
        }
    }
}
