//! Scales and zero-points of integer encodings, and their granularity.

use crate::error::{Result, SquishError};
use crate::matrix::MatrixError;
use crate::matrix::RowLayout;

/// Which values share one scale (and zero-point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per stored row (output channel).
    PerRow,
    /// One scale per run of `g` consecutive stored values within a row; the
    /// last group of a row may be shorter.
    PerGroup(usize),
}

impl Granularity {
    /// Number of parameter sets for a layout, and the index of the first set
    /// of each row (`rows + 1` entries) for group granularity.
    pub(crate) fn plan(&self, layout: &RowLayout) -> Result<(usize, Vec<u32>)> {
        match *self {
            Granularity::PerTensor => Ok((1, Vec::new())),
            Granularity::PerRow => Ok((layout.rows(), Vec::new())),
            Granularity::PerGroup(0) => Err(MatrixError::ZeroGroupSize.into()),
            Granularity::PerGroup(g) => {
                let mut first = Vec::with_capacity(layout.rows() + 1);
                let mut acc = 0usize;
                first.push(0);
                for i in 0..layout.rows() {
                    acc += layout.row_len(i).div_ceil(g);
                    first.push(
                        u32::try_from(acc)
                            .map_err(|_| SquishError::from(MatrixError::TooManyGroups(g)))?,
                    );
                }
                Ok((acc, first))
            }
        }
    }
}

/// Scales and optional zero-points: value = (q − zero_point) · scale.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    granularity: Granularity,
    scales: Vec<f32>,
    zero_points: Option<Vec<i8>>,
    /// First parameter index of each row, for group granularity (derived from
    /// the layout, not stored).
    row_first: Vec<u32>,
}

impl QuantParams {
    /// Builds parameters for `layout`, checking the counts.
    pub fn new(
        layout: &RowLayout,
        granularity: Granularity,
        scales: Vec<f32>,
        zero_points: Option<Vec<i8>>,
    ) -> Result<Self> {
        let (count, row_first) = granularity.plan(layout)?;
        if scales.len() != count {
            return Err(SquishError::inconsistent(
                "quantization parameters",
                format!("{granularity:?} needs {count} scales, got {}", scales.len()),
            ));
        }
        if let Some(z) = &zero_points {
            if z.len() != count {
                return Err(SquishError::inconsistent(
                    "quantization parameters",
                    format!("{count} scales but {} zero-points", z.len()),
                ));
            }
        }
        crate::error::check_finite("scales", &scales)?;
        Ok(QuantParams {
            granularity,
            scales,
            zero_points,
            row_first,
        })
    }

    /// The granularity.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// One scale per parameter set.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Zero-points, when asymmetric.
    pub fn zero_points(&self) -> Option<&[i8]> {
        self.zero_points.as_deref()
    }

    /// Parameter-set index of the value at position `pos` of row `row`.
    #[inline]
    pub fn index(&self, row: usize, pos: usize) -> usize {
        match self.granularity {
            Granularity::PerTensor => 0,
            Granularity::PerRow => row,
            Granularity::PerGroup(g) => self.row_first[row] as usize + pos / g,
        }
    }

    /// Scale and zero-point of parameter set `p`.
    #[inline]
    pub fn get(&self, p: usize) -> (f32, i32) {
        let z = self.zero_points.as_ref().map_or(0, |z| z[p] as i32);
        (self.scales[p], z)
    }

    /// Checks that codes in `lo..=hi` decode to finite values under every
    /// parameter set: a finite but huge scale (a damaged or hostile file)
    /// would otherwise turn `(q − z)·s` into ±Inf.
    pub(crate) fn check_decodable(&self, lo: i32, hi: i32) -> Result<()> {
        for p in 0..self.scales.len() {
            let (s, z) = self.get(p);
            let q = if (hi - z).abs() >= (lo - z).abs() {
                hi
            } else {
                lo
            };
            if !((q - z) as f32 * s).is_finite() {
                return Err(SquishError::inconsistent(
                    "quantization parameters",
                    format!(
                        "scale {s:e} of parameter set {p} decodes code {q} (zero-point {z}) to \
                         infinity; (code − zero-point)·scale must stay within f32"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Bytes of scales (f32) and zero-points (one byte each).
    pub(crate) fn bytes(&self) -> (usize, usize) {
        (
            self.scales.len() * 4,
            self.zero_points.as_ref().map_or(0, |z| z.len()),
        )
    }

    /// Decodes row `row` from its integer codes.
    #[inline]
    pub(crate) fn dequantize_row(
        &self,
        row: usize,
        codes: impl Iterator<Item = i32>,
        out: &mut [f32],
    ) {
        for (pos, (q, o)) in codes.zip(out.iter_mut()).enumerate() {
            let (s, z) = self.get(self.index(row, pos));
            *o = (q - z) as f32 * s;
        }
    }
}
