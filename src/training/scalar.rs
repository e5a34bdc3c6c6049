//! [`Scalar`]: the float types the training math runs in.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};

/// f32 (training) or f64 (gradient checks against finite differences).
///
/// The layer and loss math is written once for both, so the f64 checks test
/// the very code that trains.
pub trait Scalar:
    Float
    + FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + Send
    + Sync
    + Debug
    + Display
    + 'static
{
    /// `x` converted from f64.
    fn of(x: f64) -> Self {
        Self::from_f64(x).expect("f32 and f64 take any f64")
    }
    /// The value as f64.
    fn f64(self) -> f64 {
        self.to_f64().expect("f32 and f64 convert to f64")
    }
}

impl Scalar for f32 {}
impl Scalar for f64 {}
