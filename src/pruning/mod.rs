//! Pruning: removing weights.

mod magnitude;
mod pruner;

pub use magnitude::{Magnitude, MagnitudeParams};
pub use pruner::Pruner;
