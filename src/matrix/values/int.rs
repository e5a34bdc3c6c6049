//! Integer codes: int8 (one byte each) and int4 (two per byte).

use super::prepacked::Prepacked;
use super::QuantParams;
use crate::matrix::{PackedBits, RowLayout};

/// The accessors both integer encodings share: `codes()` (of type `$codes`,
/// documented by `$doc`), `quant_params()` and its old name `params()`.
macro_rules! int_accessors {
    ($t:ty, $codes:ty, $doc:literal) => {
        impl $t {
            #[doc = $doc]
            pub fn codes(&self) -> &$codes {
                &self.codes
            }

            /// Scales and zero-points.
            pub fn quant_params(&self) -> &QuantParams {
                &self.params
            }

            /// Old name of [`quant_params`](Self::quant_params) (`params()` is a
            /// builder everywhere else in the crate). To be marked `#[deprecated]`
            /// once the kernels call `quant_params`.
            pub fn params(&self) -> &QuantParams {
                &self.params
            }
        }
    };
}

int_accessors!(Int8Values, [i8], "The codes in layout order.");
int_accessors!(Int4Values, PackedBits, "The packed nibbles.");

/// int8 codes: value = (q − zero_point) · scale, q in −128..=127.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Values {
    pub(crate) layout: RowLayout,
    pub(crate) codes: Vec<i8>,
    pub(crate) params: QuantParams,
    /// The codes repacked for the VNNI kernels, built on first use.
    pub(crate) prepacked: Prepacked,
}

impl Int8Values {
    pub(crate) fn decode_row(&self, i: usize, out: &mut [f32]) {
        let r = self.layout.range(i);
        self.params
            .dequantize_row(i, self.codes[r].iter().map(|&q| q as i32), out);
    }
}

/// int4 codes, two's complement nibbles packed two per byte (even element in
/// the low nibble): value = (q − zero_point) · scale, q in −8..=7.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Values {
    pub(crate) layout: RowLayout,
    pub(crate) codes: PackedBits,
    pub(crate) params: QuantParams,
    /// The codes repacked for the VNNI kernels, built on first use.
    pub(crate) prepacked: Prepacked,
}

/// Sign-extends a 4-bit two's complement nibble.
#[inline]
pub fn nibble_to_i8(n: u16) -> i8 {
    ((n as u8) << 4) as i8 >> 4
}

impl Int4Values {
    pub(crate) fn decode_row(&self, i: usize, out: &mut [f32]) {
        let r = self.layout.range(i);
        self.params
            .dequantize_row(i, r.map(|k| nibble_to_i8(self.codes.get(k)) as i32), out);
    }
}
