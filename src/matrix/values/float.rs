//! Plain f32 values.

use crate::matrix::RowLayout;

/// Values stored as f32, four bytes each.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Values {
    pub(crate) layout: RowLayout,
    pub(crate) data: Vec<f32>,
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
