//! int4 weights (two per byte): the row decoder behind [`DecodeRows`]. The
//! products are the decoded-tile kernels of [`tile`](crate::kernels::tile),
//! with the in-register reader in [`lanes`](super::lanes).

use super::DecodeRows;
use crate::matrix::Int4Values;

impl DecodeRows for Int4Values {
    #[inline(always)]
    fn decode_rows_portable(&self, row0: usize, out: &mut [f32]) {
        decode_rows_generic(self, row0, out)
    }
}

#[inline(always)]
fn decode_rows_generic(v: &Int4Values, row0: usize, out: &mut [f32]) {
    // Byte-wise decoding (a table per byte, not per-code bit arithmetic).
    let cols = v.layout.max_row_len();
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        super::fused::int4_row(v, row0 + r, o);
    }
}
