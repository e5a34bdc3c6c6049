//! Plain f32 values.

use super::prepacked::Prepacked;
use crate::matrix::aligned::Aligned;
use crate::matrix::RowLayout;

/// Values stored as f32, four bytes each.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Values {
    pub(crate) layout: RowLayout,
    /// Aligned: the kernels read 16 values a load.
    pub(crate) data: Aligned<f32>,
    /// Kernels' copies (a 2:4 block's rows spread to f32 on AVX2).
    pub(crate) prepacked: Prepacked,
}

impl F32Values {
    /// The row layout.
    pub fn layout(&self) -> &RowLayout {
        &self.layout
    }

    /// The stored values in layout order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}
