//! [`Linear`]: `y = x·Wᵀ + b` with a dense or compressed weight.

use ndarray::{Array1, Array2, ArrayView2, AsArray, Ix2};

use super::gemm::{linear_f32, linear_tiled, own_kernel_wins, packed_gemm_wins};
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::{CompressedMatrix, LinOp, Structure, Values};
use crate::parallel::ParallelExecutor;
use crate::quantization::DynamicInt8;

/// How a linear layer's weight is held and multiplied.
#[derive(Clone, Debug)]
pub enum Weight {
    /// Dense f32, multiplied by the packed GEMM of [`gemm`](super::gemm) at
    /// GEMM shapes, else streamed ([`dense_matmul`](crate::kernels::dense::dense_matmul)).
    Dense(Array2<f32>),
    /// Any compressed matrix, multiplied by its own kernel without decoding.
    Compressed(CompressedMatrix),
    /// Int8 or int4 weights times int8 activations quantized per row on
    /// the fly.
    DynamicInt8(DynamicInt8),
}

/// How layers with int8 weights multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations: the weight's own kernel (exact for the stored weights).
    #[default]
    Float,
    /// Int8 and int4 weights run as int8 × int8 / int4 × int8 with
    /// activations quantized per row on the fly ([`DynamicInt8`]); other
    /// encodings keep f32 activations.
    DynamicInt8,
}

/// A linear layer `y = x·Wᵀ + b`, `W` of shape `[out, in]` (PyTorch's layout).
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::nn::Linear;
/// use squish::parallel::Sequential;
/// let w = array![[1.0f32, -1.0], [2.0, 0.0]];
/// let dense = Linear::dense(w.clone(), Some(array![0.5f32, 0.0]))?;
/// let packed = Linear::compressed(CompressedMatrix::from_dense(w.view())?, Some(array![0.5f32, 0.0]))?;
/// let x = array![[3.0f32, 1.0]];
/// assert_eq!(dense.forward(x.view(), &Sequential)?, array![[2.5f32, 6.0]]);
/// assert_eq!(packed.forward(x.view(), &Sequential)?, array![[2.5f32, 6.0]]);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Weight,
    bias: Option<Array1<f32>>,
    /// Compressed weights at GEMM shapes run as decoded tiles (default).
    tiled: bool,
    /// Per-input-channel factors `m` applied to `x` first (`y = (x ⊙ m)·Wᵀ + b`):
    /// SmoothQuant's `1/s` when `W` holds `W·diag(s)`.
    input_scale: Option<Array1<f32>>,
}

impl Linear {
    /// A dense f32 layer; rejects NaN/Inf and a bias of the wrong length.
    pub fn dense(w: Array2<f32>, bias: Option<Array1<f32>>) -> Result<Self> {
        check_finite("linear weight", w.iter())?;
        Self::with(Weight::Dense(w.as_standard_layout().into_owned()), bias)
    }

    /// A layer over a compressed weight. A dense f32 matrix runs on the
    /// dense GEMM; every other form keeps its encoding and kernel.
    pub fn compressed(m: CompressedMatrix, bias: Option<Array1<f32>>) -> Result<Self> {
        if let (Structure::Dense, Some(Values::F32(v))) = (m.structure(), m.values()) {
            let w = Array2::from_shape_vec(m.shape(), v.data().to_vec())
                .expect("dense layout is rows × cols");
            return Self::with(Weight::Dense(w), bias);
        }
        Self::with(Weight::Compressed(m), bias)
    }

    /// A layer over a compressed weight, multiplying as `mode` says: with
    /// [`Activations::DynamicInt8`], int8 and int4 weights (dense or kept
    /// rows) run int8 × int8 / int4 × int8; everything else as
    /// [`compressed`](Self::compressed).
    pub fn with_activations(
        m: CompressedMatrix,
        bias: Option<Array1<f32>>,
        mode: Activations,
    ) -> Result<Self> {
        let int = matches!(m.values(), Some(Values::Int8(_) | Values::Int4(_)))
            && matches!(m.structure(), Structure::Dense | Structure::KeptRows(_));
        if mode == Activations::DynamicInt8 && int {
            return Self::with(Weight::DynamicInt8(DynamicInt8::new(m)?), bias);
        }
        Self::compressed(m, bias)
    }

    fn with(weight: Weight, bias: Option<Array1<f32>>) -> Result<Self> {
        let l = Linear {
            weight,
            bias,
            tiled: true,
            input_scale: None,
        };
        if let Some(b) = &l.bias {
            if b.len() != l.out_features() {
                return Err(SquishError::shape(
                    "linear bias",
                    format!("{} values", l.out_features()),
                    format!("{} values", b.len()),
                ));
            }
            check_finite("linear bias", b.iter())?;
        }
        Ok(l)
    }

    /// Multiplies every input row by `scale` (one positive finite factor
    /// per input feature) before the weight: `y = (x ⊙ scale)·Wᵀ + b`.
    /// SmoothQuant stores `W·diag(s)` and serves it with `scale = 1/s`, so
    /// that the activations quantized on the fly lose their outlier
    /// channels (see [`SmoothQuant`](super::SmoothQuant)).
    ///
    /// ```
    /// use ndarray::array;
    /// use squish::nn::Linear;
    /// use squish::parallel::Sequential;
    /// let l = Linear::dense(array![[1.0f32, 4.0]], None)?.with_input_scale(array![2.0f32, 0.25])?;
    /// assert_eq!(l.forward(array![[3.0f32, 4.0]].view(), &Sequential)?, array![[10.0f32]]);
    /// assert!(Linear::dense(array![[1.0f32]], None)?.with_input_scale(array![0.0f32]).is_err());
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn with_input_scale(mut self, scale: Array1<f32>) -> Result<Self> {
        if scale.len() != self.in_features() {
            return Err(SquishError::shape(
                "linear input scale",
                format!("{} values", self.in_features()),
                format!("{} values", scale.len()),
            ));
        }
        check_finite("linear input scale", scale.iter())?;
        if let Some(v) = scale.iter().find(|v| **v <= 0.0) {
            return Err(SquishError::invalid(
                "linear input scale",
                v,
                "every factor must be positive",
            ));
        }
        self.input_scale = Some(scale);
        Ok(self)
    }

    /// The per-input-channel factors set by [`with_input_scale`](Self::with_input_scale).
    pub fn input_scale(&self) -> Option<&Array1<f32>> {
        self.input_scale.as_ref()
    }

    /// Whether a compressed weight multiplies batches of at least
    /// [`TILE_MIN_ROWS`](super::gemm::TILE_MIN_ROWS) rows, where the packed GEMM is faster
    /// ([`packed_gemm_wins`](super::gemm::packed_gemm_wins)), by decoding one
    /// block of rows at a time into the packed f32 GEMM (`true`, the
    /// default; except where its own kernel measured faster:
    /// [`own_kernel_wins`](super::gemm::own_kernel_wins)), or always with
    /// its own kernel (`false`). Results agree to kernel tolerance; both
    /// are deterministic.
    pub fn set_tiled(&mut self, tiled: bool) {
        self.tiled = tiled;
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        match &self.weight {
            Weight::Dense(w) => w.dim(),
            Weight::Compressed(m) => m.shape(),
            Weight::DynamicInt8(d) => d.shape(),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.shape().0
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.shape().1
    }

    /// The weight.
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.bias.as_ref()
    }

    /// A short name of the weight's form ("dense f32", "int8 × int8", or the
    /// structure and encoding).
    pub fn form(&self) -> String {
        match &self.weight {
            Weight::Dense(_) => "dense f32".into(),
            Weight::Compressed(m) => format!("{} {}", m.structure().kind(), m.encoding()),
            Weight::DynamicInt8(d) => match d.matrix().values() {
                Some(Values::Int4(_)) => "int4 × int8 dynamic".into(),
                _ => "int8 × int8 dynamic".into(),
            },
        }
    }

    /// Bytes the weight and bias take (exact storage for compressed forms).
    pub fn bytes(&self) -> usize {
        let b = self.bias.as_ref().map_or(0, |b| b.len() * 4);
        b + match &self.weight {
            Weight::Dense(w) => w.len() * 4,
            Weight::Compressed(m) => m.storage().total(),
            Weight::DynamicInt8(d) => d.matrix().storage().total(),
        }
    }

    /// The layer's effective weight as dense f32: decoded, times the input
    /// scale when there is one (`W·diag(m)`, so that `x·Wᵀ` with it equals the
    /// layer without its bias). For tests and comparisons, never used to serve.
    pub fn dense_weight(&self) -> Array2<f32> {
        let mut w = match &self.weight {
            Weight::Dense(w) => w.clone(),
            Weight::Compressed(m) => m.to_dense(),
            Weight::DynamicInt8(d) => d.matrix().to_dense(),
        };
        if let Some(m) = &self.input_scale {
            w *= &m.view().insert_axis(ndarray::Axis(0));
        }
        w
    }

    /// `x·Wᵀ + b` for `x: [rows, in]`; the result does not depend on the
    /// executor.
    pub fn forward<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        if x.ncols() != self.in_features() {
            return Err(SquishError::shape(
                "linear layer x·Wᵀ",
                format!("x with {} columns", self.in_features()),
                format!("x of shape {}x{}", x.nrows(), x.ncols()),
            ));
        }
        let bias = self
            .bias
            .as_ref()
            .map(|b| b.as_slice().expect("owned arrays are contiguous"));
        if let Weight::DynamicInt8(d) = &self.weight {
            // Input scale, quantization, product and bias in one kernel call
            // where it applies (the same bits as the steps below).
            let m = self.input_scale.as_ref().map_or(&[][..], |m| {
                m.as_slice().expect("owned arrays are contiguous")
            });
            if let Some(y) = d.linear_fused(x, m, bias, exec) {
                return Ok(y);
            }
        }
        let scaled;
        let x = match &self.input_scale {
            None => x,
            Some(m) => {
                scaled = &x * &m.view().insert_axis(ndarray::Axis(0));
                scaled.view()
            }
        };
        let packed = packed_gemm_wins(x.nrows(), self.in_features());
        let mut y = match &self.weight {
            Weight::Dense(w) if packed => return Ok(linear_f32(x, w.view(), bias, exec)),
            // Fewer rows, or long rows (the FFN's down-projection): W
            // streamed in row blocks (the packed GEMM's packing costs more).
            Weight::Dense(w) => crate::kernels::dense::dense_matmul(w.view(), x, exec)?,
            // At GEMM shapes a decoded tile feeds the packed f32 GEMM (faster
            // than the decoding kernels there); small batches, and kernels
            // that beat it (integer slices, sign lookups, CSR), keep theirs.
            Weight::Compressed(m) if packed && self.tiled && !own_kernel_wins(m, x.nrows()) => {
                m.check_input(x)?;
                return Ok(linear_tiled(x, m, bias, exec));
            }
            Weight::Compressed(m) => m.apply(x, exec)?,
            Weight::DynamicInt8(d) => d.apply(x, exec)?,
        };
        if let Some(b) = bias {
            crate::math::for_each_row(&mut y, |row| {
                row.iter_mut().zip(b).for_each(|(v, &c)| *v += c)
            });
        }
        Ok(y)
    }
}
