//! Quantization: integer codes (int8, int4) with calibrated ranges, binary
//! and ternary weights, dynamic int8 activations, and the kernels that
//! multiply quantized weights without decoding them to a dense matrix.

/// Compiles a plain-Rust function body three times (AVX-512, AVX2 + FMA,
/// baseline) and picks one at run time; the compiler vectorizes the loops.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $generic:ident;) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
                    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                    fn v512($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                    // SAFETY: the features were detected just above.
                    return unsafe { v512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    fn v256($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                    // SAFETY: the features were detected just above.
                    return unsafe { v256($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

mod awq;
mod calibration;
mod dynamic;
mod gptq;
mod integer;
pub mod kernels;
mod quantizer;
mod sign;
mod slice_ops;

pub use awq::{fold_input_scales, scale_inputs, Awq, AwqOutput, AwqParams};
pub use calibration::{Calibration, MSE_MIN_RATIO};
pub use dynamic::{quantize_activations, DynamicInt8, QuantizedActivations};
pub use gptq::{Gptq, GptqOutput, GptqParams};
pub use integer::{IntQuantizer, IntQuantizerParams};
pub use quantizer::Quantizer;
pub use sign::{Binary, Ternary};
