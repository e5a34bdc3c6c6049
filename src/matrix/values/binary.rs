//! Binary (sign × per-row scale) and ternary ({−1, 0, +1} × per-row scale) values.

use super::prepacked::Prepacked;
use crate::matrix::{PackedBits, RowLayout};

/// One sign bit per value (1 = +α, 0 = −α) and one scale α per row.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryValues {
    pub(crate) layout: RowLayout,
    pub(crate) signs: PackedBits,
    pub(crate) scales: Vec<f32>,
    /// The signs repacked for the VNNI kernels, built on first use.
    pub(crate) prepacked: Prepacked,
}

impl BinaryValues {
    /// The sign bits.
    pub fn signs(&self) -> &PackedBits {
        &self.signs
    }

    /// α per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    pub(crate) fn decode_row(&self, i: usize, out: &mut [f32]) {
        let a = self.scales[i];
        for (k, o) in self.layout.range(i).zip(out.iter_mut()) {
            *o = if self.signs.get(k) == 1 { a } else { -a };
        }
    }
}

/// Ternary code of a value: 0 → 0, 1 → +α, 2 → −α (3 is invalid).
pub const TERNARY_ZERO: u16 = 0;
/// Ternary code for +α.
pub const TERNARY_PLUS: u16 = 1;
/// Ternary code for −α.
pub const TERNARY_MINUS: u16 = 2;

/// Two bits per value ({0, +α, −α}) and one scale α per row.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryValues {
    pub(crate) layout: RowLayout,
    pub(crate) codes: PackedBits,
    pub(crate) scales: Vec<f32>,
    /// The codes repacked for the VNNI kernels, built on first use.
    pub(crate) prepacked: Prepacked,
}

impl TernaryValues {
    /// The 2-bit codes.
    pub fn codes(&self) -> &PackedBits {
        &self.codes
    }

    /// α per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    pub(crate) fn decode_row(&self, i: usize, out: &mut [f32]) {
        let a = self.scales[i];
        for (k, o) in self.layout.range(i).zip(out.iter_mut()) {
            *o = match self.codes.get(k) {
                TERNARY_PLUS => a,
                TERNARY_MINUS => -a,
                _ => 0.0,
            };
        }
    }
}
