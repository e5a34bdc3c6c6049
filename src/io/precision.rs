//! Half precision in and out: little-endian bytes of f32, f16, bf16 or f64
//! widened to f32 a block at a time, and f32 written back in the dtype the
//! user picks.

use half::f16;
use safetensors::Dtype;

use super::tensor::is_float;
use super::FileError;

/// Widens the little-endian elements in `bytes` (of the float `dtype`) into
/// `out`, which holds exactly one f32 per element. bf16 and f16 widen
/// exactly; f64 rounds to nearest, as [`Model`](super::Model) loads it.
pub(crate) fn widen_into(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len() * 8, out.len() * dtype.bitsize());
    match dtype {
        // bf16 is the top half of an f32: a shift, exact, and vectorized by the compiler.
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32;
            }
        }
        _ => unreachable!("callers pass float dtypes only"),
    }
}

/// The dtype a dequantized export writes its float tensors in.
///
/// ```
/// use squish::io::{Dtype, ExportDtype};
/// assert_eq!(ExportDtype::Original.resolve(Dtype::BF16), Dtype::BF16);
/// assert_eq!(ExportDtype::F16.resolve(Dtype::F32), Dtype::F16);
/// assert_eq!("bf16".parse::<ExportDtype>()?, ExportDtype::BF16);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportDtype {
    /// Each tensor in the dtype it had in the original model.
    #[default]
    Original,
    /// Every float tensor as f32.
    F32,
    /// Every float tensor as f16 (round to nearest even).
    F16,
    /// Every float tensor as bf16 (round to nearest even).
    BF16,
}

impl ExportDtype {
    /// The dtype a float tensor stored as `original` is written in.
    pub fn resolve(self, original: Dtype) -> Dtype {
        match self {
            ExportDtype::Original => original,
            ExportDtype::F32 => Dtype::F32,
            ExportDtype::F16 => Dtype::F16,
            ExportDtype::BF16 => Dtype::BF16,
        }
    }

    /// Applies to a tensor about to be exported: float tensors change dtype
    /// (values rounded to nearest), others are returned unchanged.
    pub fn apply(self, t: super::Tensor) -> super::Tensor {
        let to = self.resolve(t.dtype());
        if to == t.dtype() || !is_float(t.dtype()) {
            return t;
        }
        let shape = t.shape().to_vec();
        let data = match t.data() {
            super::TensorData::Float(v) => v.clone(),
            super::TensorData::Raw(_) => return t,
        };
        // Round through the target dtype so the tensor holds what the file will.
        let rounded = super::Tensor::float(to, shape.clone(), data).expect("same element count");
        let bytes = rounded.to_bytes();
        let mut back = vec![0f32; bytes.len() * 8 / to.bitsize()];
        widen_into(to, &bytes, &mut back);
        super::Tensor::float(to, shape, back).expect("same element count")
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = crate::SquishError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "original" | "keep" => Ok(ExportDtype::Original),
            "f32" | "float32" => Ok(ExportDtype::F32),
            "f16" | "float16" | "half" => Ok(ExportDtype::F16),
            "bf16" | "bfloat16" => Ok(ExportDtype::BF16),
            _ => Err(FileError::UnsupportedDtype {
                tensor: String::new(),
                dtype: s.to_string(),
                hint: "export dtypes are original, f32, f16 and bf16",
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use half::bf16;

    use super::*;

    #[test]
    fn widening_matches_the_half_crate_on_every_bit_pattern() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
        let mut out = vec![0f32; 1 << 16];
        widen_into(Dtype::BF16, &bytes, &mut out);
        for (b, &x) in (0..=u16::MAX).zip(&out) {
            let want = bf16::from_bits(b).to_f32();
            assert!(x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan()));
        }
        widen_into(Dtype::F16, &bytes, &mut out);
        for (b, &x) in (0..=u16::MAX).zip(&out) {
            let want = f16::from_bits(b).to_f32();
            assert!(x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan()));
        }
    }

    #[test]
    fn export_dtype_rounds_to_nearest() {
        let t =
            super::super::Tensor::float(Dtype::F32, vec![3], vec![1.0, 1.0 + 1e-3, -3.3]).unwrap();
        let b = ExportDtype::BF16.apply(t.clone());
        assert_eq!(b.dtype(), Dtype::BF16);
        let want: Vec<f32> = [1.0f32, 1.0 + 1e-3, -3.3]
            .iter()
            .map(|&x| bf16::from_f32(x).to_f32())
            .collect();
        assert_eq!(b.as_f32().unwrap(), &want[..]);
        assert_eq!(ExportDtype::Original.apply(t.clone()), t);
        assert!("int3".parse::<ExportDtype>().is_err());
    }
}
