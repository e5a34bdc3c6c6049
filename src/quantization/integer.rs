//! Integer quantization (int8, int4): symmetric or asymmetric, per tensor,
//! per row or per group, staged as calibrate → parameters → quantize.

use std::ops::Range;
use std::sync::Mutex;

use super::slice_ops::{self, Grid};
use super::{Calibration, QuantizationError, Quantizer};
use crate::error::{Result, SquishError};
use crate::matrix::{F32Values, Granularity, PackedBits, QuantParams, RowLayout, Values};
use crate::parallel::{map, ParallelExecutor, Sequential};

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
/// A code is `round(w·(1/s)) + z`: round to nearest, ties away from zero
/// (as `f32::round`), then clamped to the code range. Symmetric codes use `−(2^(b−1)−1) ..= 2^(b−1)−1`
/// with scale `max|w| / (2^(b−1)−1)`; asymmetric codes use the full
/// `−2^(b−1) ..= 2^(b−1)−1` over `[min(lo, 0), max(hi, 0)]`, so 0 is always
/// exactly representable. A parameter set whose values are all zero gets
/// scale 0 and decodes to exact zeros (never NaN). With
/// [`per_group`](IntQuantizerParams::per_group) the last group of a row is
/// shorter when the group size does not divide the row length.
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

    /// Stage 1, calibrate: the range `(lo, hi)` of each parameter set, in
    /// parameter order.
    pub fn calibrate(&self, values: &F32Values) -> Result<Vec<(f32, f32)>> {
        let sets = param_sets(&values.layout, self.params.granularity)?;
        let data = values.data();
        let grid = self.grid();
        Ok(sets
            .iter()
            .map(|r| self.params.calibration.range(&data[r.clone()], grid))
            .collect())
    }

    /// Stage 2: scales and zero-points from calibrated ranges (each range
    /// is first widened to contain 0).
    pub fn compute_params(&self, layout: &RowLayout, ranges: &[(f32, f32)]) -> Result<QuantParams> {
        let grid = self.grid();
        let (scales, zps): (Vec<f32>, Vec<i8>) = ranges
            .iter()
            .map(|&(lo, hi)| grid.scale_zero_point(lo, hi))
            .unzip();
        let zero_points = (!self.params.symmetric).then_some(zps);
        QuantParams::new(layout, self.params.granularity, scales, zero_points)
    }

    /// Old name of [`quantize_with_params`](Self::quantize_with_params).
    #[deprecated(
        since = "0.2.0",
        note = "renamed `quantize_with_params`: `_on` takes an executor, `_with_<what>` an explicit input"
    )]
    pub fn quantize_with(&self, values: &F32Values, params: &QuantParams) -> Result<Values> {
        self.quantize_with_params(values, params)
    }

    /// Stage 3: integer codes of every value under `params` (built for this
    /// layout and granularity).
    pub fn quantize_with_params(&self, values: &F32Values, params: &QuantParams) -> Result<Values> {
        let layout = &values.layout;
        if params.granularity() != self.params.granularity
            || params.zero_points().is_some() == self.params.symmetric
        {
            return Err(SquishError::inconsistent(
                "quantization parameters",
                "params were computed for another granularity or symmetry",
            ));
        }
        // Checks the parameter count against the layout.
        let params = QuantParams::new(
            layout,
            params.granularity(),
            params.scales().to_vec(),
            params.zero_points().map(<[i8]>::to_vec),
        )?;
        let sets = param_sets(layout, self.params.granularity)?;
        let grid = self.grid();
        let data = values.data();
        let mut codes = vec![0i8; layout.total()];
        for (p, r) in sets.into_iter().enumerate() {
            let (s, z) = params.get(p);
            slice_ops::quantize(&data[r.clone()], s, z, grid, &mut codes[r]);
        }
        self.encode(layout, codes, params)
    }

    /// The one-call shortcut on `exec`: calibrate, compute parameters and
    /// quantize each parameter set while it is in cache. Same result as the
    /// three stages, whatever the executor.
    pub fn quantize_values_on(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        let layout = &values.layout;
        let data = values.data();
        let grid = self.grid();
        let cal = self.params.calibration;
        let mut codes = vec![0i8; layout.total()];
        let sets = param_sets(layout, self.params.granularity)?;
        let params: Vec<(f32, i8)> = if self.params.granularity == Granularity::PerTensor {
            let (lo, hi) = cal.range(data, grid);
            let (s, z) = grid.scale_zero_point(lo, hi);
            let chunks: Vec<Mutex<&mut [i8]>> =
                codes.chunks_mut(TASK_ELEMS).map(Mutex::new).collect();
            exec.run(chunks.len(), &|t| {
                let mut out = chunks[t].lock().expect("a task panicked");
                let src = &data[t * TASK_ELEMS..][..out.len()];
                slice_ops::quantize(src, s, z as i32, grid, &mut out);
            });
            vec![(s, z)]
        } else {
            // Tasks own runs of consecutive sets of about TASK_ELEMS values;
            // their boundaries depend only on the layout.
            let mut bounds = vec![0usize];
            let mut acc = 0;
            for (p, r) in sets.iter().enumerate() {
                acc += r.len();
                if acc >= TASK_ELEMS {
                    bounds.push(p + 1);
                    acc = 0;
                }
            }
            if *bounds.last().unwrap() != sets.len() {
                bounds.push(sets.len());
            }
            let mut slots = Vec::with_capacity(bounds.len() - 1);
            let mut rest: &mut [i8] = &mut codes;
            for w in bounds.windows(2) {
                let len = sets[w[1] - 1].end - sets[w[0]].start;
                let (head, tail) = rest.split_at_mut(len);
                slots.push(Mutex::new(head));
                rest = tail;
            }
            let per_task = map(exec, slots.len(), |t| {
                let mut out = slots[t].lock().expect("a task panicked");
                let base = sets[bounds[t]].start;
                sets[bounds[t]..bounds[t + 1]]
                    .iter()
                    .map(|r| {
                        let x = &data[r.clone()];
                        let (lo, hi) = cal.range(x, grid);
                        let (s, z) = grid.scale_zero_point(lo, hi);
                        let o = &mut out[r.start - base..r.end - base];
                        slice_ops::quantize(x, s, z as i32, grid, o);
                        (s, z)
                    })
                    .collect::<Vec<_>>()
            });
            per_task.into_iter().flatten().collect()
        };
        let (scales, zps): (Vec<f32>, Vec<i8>) = params.into_iter().unzip();
        let zero_points = (!self.params.symmetric).then_some(zps);
        let params = QuantParams::new(layout, self.params.granularity, scales, zero_points)?;
        self.encode(layout, codes, params)
    }

    fn encode(&self, layout: &RowLayout, codes: Vec<i8>, params: QuantParams) -> Result<Values> {
        match self.params.bits {
            8 => Values::int8(layout.clone(), codes, params),
            _ => {
                let n = codes.len();
                let bytes = pack_nibbles(&codes);
                Values::int4(layout.clone(), PackedBits::from_bytes(4, n, bytes)?, params)
            }
        }
    }

    fn grid(&self) -> Grid {
        Grid::new(self.params.bits, self.params.symmetric)
    }
}

/// Values per task of the one-call shortcut.
const TASK_ELEMS: usize = 1 << 16;

/// Two's complement nibbles, even element in the low nibble.
pub(crate) fn pack_nibbles(codes: &[i8]) -> Vec<u8> {
    let pairs = codes.chunks_exact(2);
    let last = pairs.remainder().first().map(|&c| c as u8 & 0x0F);
    pairs
        .map(|p| (p[0] as u8 & 0x0F) | ((p[1] as u8) << 4))
        .chain(last)
        .collect()
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

    /// Validates: bits ∈ {4, 8}, group size ≥ 1, calibration parameters.
    pub fn check(self) -> Result<IntQuantizer> {
        self.calibration.check()?;
        if !matches!(self.bits, 4 | 8) {
            return Err(QuantizationError::UnsupportedBits(self.bits).into());
        }
        if self.granularity == Granularity::PerGroup(0) {
            return Err(QuantizationError::ZeroGroupSize.into());
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
        self.quantize_values_on(values, &Sequential)
    }

    fn quantize_values_on(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        IntQuantizer::quantize_values_on(self, values, exec)
    }
}

/// The flat value ranges that share one parameter set, in parameter order.
pub(crate) fn param_sets(layout: &RowLayout, g: Granularity) -> Result<Vec<Range<usize>>> {
    Ok(match g {
        Granularity::PerTensor => std::iter::once(0..layout.total()).collect(),
        Granularity::PerRow => (0..layout.rows()).map(|i| layout.range(i)).collect(),
        Granularity::PerGroup(0) => return Err(QuantizationError::ZeroGroupSize.into()),
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
