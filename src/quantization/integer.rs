//! Integer quantization (int8, int4): symmetric or asymmetric, per tensor,
//! per row or per group, staged as calibrate → parameters → quantize.

use std::ops::Range;

use super::Quantizer;
use crate::error::{Result, SquishError};
use crate::matrix::{F32Values, Granularity, PackedBits, QuantParams, RowLayout, Values};

/// How the range of each parameter set is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The observed minimum and maximum.
    MinMax,
}

/// Unchecked hyperparameters of an [`IntQuantizer`]; [`check`](Self::check) validates them.
#[derive(Clone, Debug, PartialEq)]
pub struct IntQuantizerParams {
    bits: u8,
    symmetric: bool,
    granularity: Granularity,
    calibration: Calibration,
}

/// A checked integer quantizer.
///
/// Rounding is round-to-nearest, ties away from zero (`f32::round`), then
/// clamping to the code range. Symmetric codes use `−(2^(b−1)−1) ..= 2^(b−1)−1`
/// with scale `max|w| / (2^(b−1)−1)`; asymmetric codes use the full
/// `−2^(b−1) ..= 2^(b−1)−1` over `[min(lo, 0), max(hi, 0)]`, so 0 is always
/// exactly representable. A parameter set whose values are all zero gets
/// scale 0 and decodes to exact zeros (never NaN).
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// use squish::quantization::{IntQuantizer, Quantizer};
/// let w = array![[1.27f32, -0.5, 0.0], [0.01, 0.02, -0.03]];
/// let q = IntQuantizer::params(8).per_row().check().unwrap();
/// let m = q.quantize(&CompressedMatrix::from_dense(w.view()).unwrap()).unwrap();
/// assert_eq!(m.encoding(), "int8");
/// let back = m.to_dense();
/// assert!((back[[0, 0]] - 1.27).abs() < 1e-6); // the row maximum is on the grid
/// assert!((back[[1, 2]] + 0.03).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct IntQuantizer {
    params: IntQuantizerParams,
}

impl IntQuantizer {
    /// Starts a builder for `bits`-bit codes (8 or 4): symmetric, per row, min-max.
    pub fn params(bits: u8) -> IntQuantizerParams {
        IntQuantizerParams {
            bits,
            symmetric: true,
            granularity: Granularity::PerRow,
            calibration: Calibration::MinMax,
        }
    }

    /// The code width in bits.
    pub fn bits(&self) -> u8 {
        self.params.bits
    }

    /// Stage 1, calibrate: the range `(lo, hi)` of each parameter set.
    pub fn calibrate(&self, values: &F32Values) -> Result<Vec<(f32, f32)>> {
        let sets = param_sets(&values.layout, self.params.granularity)?;
        let data = values.data();
        Ok(sets
            .iter()
            .map(|r| match self.params.calibration {
                Calibration::MinMax => data[r.clone()]
                    .iter()
                    .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v))),
            })
            .collect())
    }

    /// Stage 2: scales and zero-points from calibrated ranges.
    pub fn compute_params(&self, layout: &RowLayout, ranges: &[(f32, f32)]) -> Result<QuantParams> {
        let (qmin, qmax) = self.code_range();
        let mut scales = Vec::with_capacity(ranges.len());
        let mut zps = Vec::with_capacity(ranges.len());
        for &(lo, hi) in ranges {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            if self.params.symmetric {
                scales.push(lo.abs().max(hi) / qmax as f32);
            } else {
                let s = (hi - lo) / (qmax - qmin) as f32;
                scales.push(s);
                let z = if s > 0.0 {
                    (qmin as f32 - lo / s)
                        .round()
                        .clamp(qmin as f32, qmax as f32)
                } else {
                    0.0
                };
                zps.push(z as i8);
            }
        }
        let zero_points = (!self.params.symmetric).then_some(zps);
        QuantParams::new(layout, self.params.granularity, scales, zero_points)
    }

    /// Stage 3: integer codes of every value under `params`.
    pub fn quantize_with(&self, values: &F32Values, params: &QuantParams) -> Result<Values> {
        let layout = &values.layout;
        let (qmin, qmax) = self.code_range();
        let mut codes = Vec::with_capacity(layout.total());
        for i in 0..layout.rows() {
            for (pos, &w) in values.data()[layout.range(i)].iter().enumerate() {
                let (s, z) = params.get(params.index(i, pos));
                let q = if s > 0.0 {
                    ((w / s).round() as i32 + z).clamp(qmin, qmax)
                } else {
                    z
                };
                codes.push(q as i8);
            }
        }
        match self.params.bits {
            8 => Values::int8(layout.clone(), codes, params.clone()),
            _ => {
                let nibbles: Vec<u16> = codes.iter().map(|&q| (q as u8 & 0x0F) as u16).collect();
                Values::int4(
                    layout.clone(),
                    PackedBits::pack(4, &nibbles)?,
                    params.clone(),
                )
            }
        }
    }

    fn code_range(&self) -> (i32, i32) {
        let half = 1i32 << (self.params.bits - 1);
        if self.params.symmetric {
            (-(half - 1), half - 1)
        } else {
            (-half, half - 1)
        }
    }
}

impl IntQuantizerParams {
    /// Symmetric (zero-point 0) or asymmetric codes.
    pub fn symmetric(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric;
        self
    }

    /// One scale for the whole tensor.
    pub fn per_tensor(mut self) -> Self {
        self.granularity = Granularity::PerTensor;
        self
    }

    /// One scale per stored row.
    pub fn per_row(mut self) -> Self {
        self.granularity = Granularity::PerRow;
        self
    }

    /// One scale per group of `g` consecutive values in a row.
    pub fn per_group(mut self, g: usize) -> Self {
        self.granularity = Granularity::PerGroup(g);
        self
    }

    /// Range calibration.
    pub fn calibration(mut self, c: Calibration) -> Self {
        self.calibration = c;
        self
    }

    /// Validates: bits ∈ {4, 8}, group size ≥ 1.
    pub fn check(self) -> Result<IntQuantizer> {
        if !matches!(self.bits, 4 | 8) {
            return Err(SquishError::invalid(
                "bits",
                self.bits,
                "integer quantization supports 4 and 8 bits",
            ));
        }
        if self.granularity == Granularity::PerGroup(0) {
            return Err(SquishError::invalid("group size", 0, "must be at least 1"));
        }
        Ok(IntQuantizer { params: self })
    }
}

impl Quantizer for IntQuantizer {
    fn name(&self) -> String {
        let p = &self.params;
        let g = match p.granularity {
            Granularity::PerTensor => "per-tensor".to_string(),
            Granularity::PerRow => "per-row".to_string(),
            Granularity::PerGroup(g) => format!("group-{g}"),
        };
        format!(
            "int{} {} {g}",
            p.bits,
            if p.symmetric { "sym" } else { "asym" }
        )
    }

    fn quantize_values(&self, values: &F32Values) -> Result<Values> {
        let ranges = self.calibrate(values)?;
        let params = self.compute_params(&values.layout, &ranges)?;
        self.quantize_with(values, &params)
    }
}

/// The flat value ranges that share one parameter set, in parameter order.
pub(crate) fn param_sets(layout: &RowLayout, g: Granularity) -> Result<Vec<Range<usize>>> {
    Ok(match g {
        Granularity::PerTensor => std::iter::once(0..layout.total()).collect(),
        Granularity::PerRow => (0..layout.rows()).map(|i| layout.range(i)).collect(),
        Granularity::PerGroup(0) => {
            return Err(SquishError::invalid("group size", 0, "must be at least 1"))
        }
        Granularity::PerGroup(g) => (0..layout.rows())
            .flat_map(|i| {
                let r = layout.range(i);
                (r.start..r.end)
                    .step_by(g)
                    .map(move |s| s..(s + g).min(r.end))
            })
            .collect(),
    })
}
