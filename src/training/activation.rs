//! Element-wise activations and their derivatives.

use ndarray::{Array2, ArrayView2, AsArray, Ix2, Zip};

use super::Scalar;

/// The one element-wise nonlinearity of the crate: the hidden layers of an
/// [`Mlp`](super::Mlp) or a [`CompressedMlp`](super::CompressedMlp), and a
/// [`Layer`](super::Layer) of a [`LayerStack`](super::LayerStack).
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
    /// `tanh(z)`.
    Tanh,
    /// The logistic sigmoid `1 / (1 + e^(−z))`.
    Sigmoid,
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_A: f64 = 0.044_715;

impl Activation {
    /// `f(z)` element-wise.
    pub fn forward<'a, F: Scalar>(self, z: impl AsArray<'a, F, Ix2>) -> Array2<F> {
        let z: ArrayView2<'a, F> = z.into();
        match self {
            Activation::Relu => z.mapv(|v| v.max(F::zero())),
            Activation::Identity => z.to_owned(),
            Activation::Gelu | Activation::Tanh | Activation::Sigmoid => {
                z.mapv(|v| self.apply_scalar(v))
            }
        }
    }

    /// `f(x)` of one value (what a [`Layer`](super::Layer) applies after its bias).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        self.apply_scalar(x)
    }

    #[inline]
    fn apply_scalar<F: Scalar>(self, v: F) -> F {
        match self {
            Activation::Relu => v.max(F::zero()),
            Activation::Identity => v,
            Activation::Gelu => {
                let (c, a, half) = (F::of(GELU_C), F::of(GELU_A), F::of(0.5));
                half * v * (F::one() + (c * (v + a * v * v * v)).tanh())
            }
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => F::one() / (F::one() + (-v).exp()),
        }
    }

    /// `∂L/∂z = f'(z) ⊙ ∂L/∂f(z)`.
    pub fn backward<'a, F: Scalar>(
        self,
        z: impl AsArray<'a, F, Ix2>,
        grad: impl AsArray<'a, F, Ix2>,
    ) -> Array2<F> {
        let z: ArrayView2<'a, F> = z.into();
        let grad: ArrayView2<'a, F> = grad.into();
        match self {
            Activation::Identity => grad.to_owned(),
            Activation::Relu => {
                Zip::from(z)
                    .and(grad)
                    .map_collect(|&v, &g| if v > F::zero() { g } else { F::zero() })
            }
            Activation::Tanh => Zip::from(z).and(grad).map_collect(|&v, &g| {
                let t = v.tanh();
                (F::one() - t * t) * g
            }),
            Activation::Sigmoid => Zip::from(z).and(grad).map_collect(|&v, &g| {
                let s = F::one() / (F::one() + (-v).exp());
                s * (F::one() - s) * g
            }),
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
