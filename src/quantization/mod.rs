//! Quantization: integer codes (int8, int4) with calibrated ranges, binary
//! and ternary weights, dynamic int8 activations. The kernels that multiply
//! quantized weights without decoding them live in [`crate::kernels::quant`].

mod awq;
mod calibration;
mod dynamic;
mod error;
mod gptq;
mod integer;
mod quantize;
mod sign;
mod slice_ops;
mod ste;

pub use crate::pass::Quantizer;
pub use awq::{fold_input_scales, scale_inputs, scale_rows, Awq, AwqOutput, AwqParams};
pub use calibration::{Calibration, MSE_MIN_RATIO};
pub use dynamic::{quantize_activations, DynamicInt8, QuantizedActivations};
pub use error::QuantizationError;
pub use gptq::{Gptq, GptqOutput, GptqParams};
pub use integer::{IntQuantizer, IntQuantizerParams};
pub use quantize::Quantize;
pub use sign::{Binary, Ternary};

/// Moved to [`crate::kernels::quant`] (all kernels sit in one place).
#[deprecated(note = "the quantized kernels moved to squish::kernels::quant")]
pub mod kernels {
    pub use crate::kernels::quant::*;

    /// The one tier enum is [`crate::kernels::Tier`].
    #[deprecated(note = "use squish::kernels::Tier")]
    pub type Isa = crate::kernels::Tier;
}
pub use ste::fake_quantize;
