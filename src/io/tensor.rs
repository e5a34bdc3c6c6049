//! [`Tensor`]: one named array of a model file, floats widened to f32.

use half::{bf16, f16};
use ndarray::ArrayView2;
pub use safetensors::Dtype;

use super::FileError;

/// The elements of a tensor.
///
/// Equality is bitwise, as the stored bytes: a NaN equals the same NaN (so a
/// model round-trips equal to itself), and `0.0 != -0.0`.
#[derive(Clone, Debug)]
pub enum TensorData {
    /// A float tensor (f32, f16, bf16 or f64 on disk), widened or narrowed to f32.
    Float(Vec<f32>),
    /// Any other dtype (integers, bools, 8-bit floats), carried byte for byte.
    Raw(Vec<u8>),
}

impl PartialEq for TensorData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TensorData::Float(a), TensorData::Float(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (TensorData::Raw(a), TensorData::Raw(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for TensorData {}

/// One tensor of a model: its dtype and shape on disk, and its elements.
///
/// Float tensors of rank ≥ 2 are weight matrices: [`matrix`](Self::matrix)
/// views a `[out, d1, …, dk]` tensor (a linear layer, or a conv kernel such
/// as `[out, in, kh, kw]`) as `[out, d1·…·dk]`, PyTorch's `weight.flatten(1)`.
/// The shape is kept, so a saved tensor gets its original shape back.
///
/// ```
/// use squish::io::{Dtype, Tensor};
/// let t = Tensor::float(Dtype::F16, vec![8, 3, 2, 2], vec![0.5; 96]).unwrap();
/// assert_eq!(t.matrix().unwrap().dim(), (8, 12));
/// assert!(Tensor::float(Dtype::F32, vec![4], vec![1.0; 4]).unwrap().matrix().is_none());
/// ```
///
/// Tensors compare equal when dtype, shape and the bytes they store agree
/// (each element as written in its own dtype): a tensor holding NaN equals
/// itself, and an F16 tensor equals its reloaded self.
#[derive(Clone, Debug)]
pub struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: TensorData,
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype
            && self.shape == other.shape
            && (self.data == other.data || self.to_bytes() == other.to_bytes())
    }
}

/// True for the dtypes that load as f32.
pub fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl Tensor {
    /// A float tensor stored on disk as `dtype` (F32, F16, BF16 or F64).
    pub fn float(dtype: Dtype, shape: Vec<usize>, data: Vec<f32>) -> Result<Self, FileError> {
        if !is_float(dtype) {
            return Err(FileError::UnsupportedDtype {
                tensor: String::new(),
                dtype: dtype.to_string(),
                hint: "float tensors are F32, F16, BF16 or F64; use Tensor::raw",
            });
        }
        if numel(&shape) != Some(data.len()) {
            return Err(FileError::description(format!(
                "shape {shape:?} does not hold {} elements",
                data.len()
            )));
        }
        Ok(Tensor {
            dtype,
            shape,
            data: TensorData::Float(data),
        })
    }

    /// A tensor of any dtype, kept as little-endian bytes.
    pub fn raw(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Result<Self, FileError> {
        let bits = numel(&shape).and_then(|n| n.checked_mul(dtype.bitsize()));
        if bits != Some(bytes.len() * 8) {
            return Err(FileError::description(format!(
                "shape {shape:?} of {dtype} does not take {} bytes",
                bytes.len()
            )));
        }
        Ok(Tensor {
            dtype,
            shape,
            data: TensorData::Raw(bytes),
        })
    }

    /// Decodes a safetensors view: floats to f32, everything else as bytes.
    pub(crate) fn from_view(view: &safetensors::tensor::TensorView<'_>) -> Self {
        let (dtype, shape, bytes) = (view.dtype(), view.shape().to_vec(), view.data());
        let data = match dtype {
            Dtype::F32 => TensorData::Float(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Dtype::F16 => TensorData::Float(
                bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            ),
            Dtype::BF16 => TensorData::Float(
                bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            ),
            Dtype::F64 => TensorData::Float(
                bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
            ),
            _ => TensorData::Raw(bytes.to_vec()),
        };
        Tensor { dtype, shape, data }
    }

    /// The little-endian bytes of this tensor in its own dtype (floats are
    /// rounded to nearest when the dtype is narrower than f32).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.data {
            TensorData::Raw(b) => b.clone(),
            TensorData::Float(v) => match self.dtype {
                Dtype::F16 => v
                    .iter()
                    .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                    .collect(),
                Dtype::BF16 => v
                    .iter()
                    .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
                    .collect(),
                Dtype::F64 => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            },
        }
    }

    /// The dtype on disk.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The shape on disk.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The f32 elements of a float tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::Float(v) => Some(v),
            TensorData::Raw(_) => None,
        }
    }

    /// A float tensor of rank ≥ 2 as an `[out, rest]` matrix (`None` for
    /// vectors, scalars, empty tensors and non-float tensors).
    pub fn matrix(&self) -> Option<ArrayView2<'_, f32>> {
        let v = self.as_f32()?;
        if self.shape.len() < 2 || v.is_empty() {
            return None;
        }
        let rows = self.shape[0];
        ArrayView2::from_shape((rows, v.len() / rows), v).ok()
    }
}

/// Shape written as `a×b×c` for tables and messages.
pub fn shape_string(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}
