//! Quantization: integer codes (int8, int4) and binary / ternary weights.

mod integer;
mod quantizer;
mod sign;

pub use integer::{Calibration, IntQuantizer, IntQuantizerParams};
pub use quantizer::Quantizer;
pub use sign::{Binary, Ternary};
