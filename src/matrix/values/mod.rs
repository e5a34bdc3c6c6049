//! Value encodings: how the values a structure stores are written.
//!
//! Every encoding keeps the [`RowLayout`] of the values it holds, decodes one
//! row at a time (what the reference kernel needs) and accounts for its bytes
//! exactly.

mod binary;
mod codebook;
mod float;
mod int;
mod params;
mod prepacked;

pub use binary::{BinaryValues, TernaryValues, TERNARY_MINUS, TERNARY_PLUS, TERNARY_ZERO};
pub use codebook::{CodebookScope, CodebookValues};
pub use float::F32Values;
pub use int::{nibble_to_i8, Int4Values, Int8Values};
pub use params::{Granularity, QuantParams};
pub(crate) use prepacked::Prepacked;

use super::storage::{Component, StorageReport};
use super::{index_bits, PackedBits, RowLayout};
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::MatrixError;

/// The stored values of a compressed matrix, in one of the supported encodings.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// f32, 32 bits a value.
    F32(F32Values),
    /// int8 codes with scales (and zero-points).
    Int8(Int8Values),
    /// int4 codes, two a byte, with scales (and zero-points).
    Int4(Int4Values),
    /// Sign bits with a scale per row.
    Binary(BinaryValues),
    /// 2-bit ternary codes with a scale per row.
    Ternary(TernaryValues),
    /// Codebook indices with centroids.
    Codebook(CodebookValues),
}

fn check_len(what: &'static str, layout: &RowLayout, got: usize) -> Result<()> {
    if layout.total() != got {
        return Err(SquishError::inconsistent(
            what,
            format!(
                "layout holds {} values, encoding holds {got}",
                layout.total()
            ),
        ));
    }
    Ok(())
}

/// [`check_len`] for bit-packed codes, and their width: `bits` bits each
/// (`codes` is what the message calls them).
fn check_packed(
    what: &'static str,
    layout: &RowLayout,
    packed: &PackedBits,
    codes: &str,
    bits: u8,
) -> Result<()> {
    check_len(what, layout, packed.len())?;
    if packed.width() != bits {
        let unit = if bits == 1 { "bit" } else { "bits" };
        return Err(SquishError::inconsistent(
            what,
            format!("{codes} must be {bits} {unit} wide"),
        ));
    }
    Ok(())
}

fn check_row_scales(what: &'static str, layout: &RowLayout, scales: &[f32]) -> Result<()> {
    if scales.len() != layout.rows() {
        return Err(SquishError::inconsistent(
            what,
            format!("{} rows but {} scales", layout.rows(), scales.len()),
        ));
    }
    check_finite("scales", scales)
}

/// `params` rebuilt for `layout`: parameters come from the caller, so the
/// rebuild checks that their count fits this layout.
fn params_for(layout: &RowLayout, params: &QuantParams) -> Result<QuantParams> {
    QuantParams::new(
        layout,
        params.granularity(),
        params.scales().to_vec(),
        params.zero_points().map(<[i8]>::to_vec),
    )
}

impl Values {
    /// f32 values, checked finite.
    pub fn f32(layout: RowLayout, data: Vec<f32>) -> Result<Self> {
        check_len("f32 values", &layout, data.len())?;
        check_finite("values", &data)?;
        Ok(Values::F32(F32Values {
            layout,
            data: crate::matrix::aligned::from_slice(&data),
            prepacked: Default::default(),
        }))
    }

    /// int8 codes with their parameters (built for the same layout).
    pub fn int8(layout: RowLayout, codes: Vec<i8>, params: QuantParams) -> Result<Self> {
        check_len("int8 values", &layout, codes.len())?;
        let params = params_for(&layout, &params)?;
        let (lo, hi) = codes
            .iter()
            .fold((0i8, 0i8), |(l, h), &q| (l.min(q), h.max(q)));
        params.check_decodable(lo as i32, hi as i32)?;
        Ok(Values::Int8(Int8Values {
            layout,
            codes,
            params,
            prepacked: Default::default(),
        }))
    }

    /// int4 codes (4-bit two's complement nibbles) with their parameters.
    pub fn int4(layout: RowLayout, codes: PackedBits, params: QuantParams) -> Result<Self> {
        check_packed("int4 values", &layout, &codes, "codes", 4)?;
        if let Some(z) = params.zero_points() {
            if z.iter().any(|&z| !(-8..=7).contains(&z)) {
                return Err(SquishError::inconsistent(
                    "int4 values",
                    "zero-points must lie in -8..=7",
                ));
            }
        }
        let params = params_for(&layout, &params)?;
        // Both nibbles of every byte (a padding nibble is 0).
        let (lo, hi) = codes.bytes().iter().fold((0i8, 0i8), |(l, h), &b| {
            let (a, c) = ((b << 4) as i8 >> 4, b as i8 >> 4);
            (l.min(a).min(c), h.max(a).max(c))
        });
        params.check_decodable(lo as i32, hi as i32)?;
        Ok(Values::Int4(Int4Values {
            layout,
            codes,
            params,
            prepacked: Default::default(),
        }))
    }

    /// Sign bits (1 = +α) with one α per row.
    pub fn binary(layout: RowLayout, signs: PackedBits, scales: Vec<f32>) -> Result<Self> {
        check_packed("binary values", &layout, &signs, "signs", 1)?;
        check_row_scales("binary values", &layout, &scales)?;
        Ok(Values::Binary(BinaryValues {
            layout,
            signs,
            scales,
            prepacked: Default::default(),
        }))
    }

    /// Ternary 2-bit codes ([`TERNARY_ZERO`], [`TERNARY_PLUS`], [`TERNARY_MINUS`]) with one α per row.
    pub fn ternary(layout: RowLayout, codes: PackedBits, scales: Vec<f32>) -> Result<Self> {
        check_packed("ternary values", &layout, &codes, "codes", 2)?;
        if (0..codes.len()).any(|i| codes.get(i) == 3) {
            return Err(SquishError::inconsistent(
                "ternary values",
                "code 3 is not a ternary code",
            ));
        }
        check_row_scales("ternary values", &layout, &scales)?;
        Ok(Values::Ternary(TernaryValues {
            layout,
            codes,
            scales,
            prepacked: Default::default(),
        }))
    }

    /// Codebook values: `k` centroids per codebook, indices packed at `ceil(log2 k)` bits.
    pub fn codebook(
        layout: RowLayout,
        k: usize,
        scope: CodebookScope,
        centroids: Vec<f32>,
        indices: PackedBits,
    ) -> Result<Self> {
        if !(2..=65536).contains(&k) {
            return Err(MatrixError::CodebookSize(k).into());
        }
        check_len("codebook values", &layout, indices.len())?;
        let books = match scope {
            CodebookScope::PerTensor => 1,
            CodebookScope::PerRow => layout.rows(),
        };
        if centroids.len() != books * k {
            return Err(SquishError::inconsistent(
                "codebook values",
                format!(
                    "{books} codebooks of {k} need {} centroids, got {}",
                    books * k,
                    centroids.len()
                ),
            ));
        }
        check_finite("centroids", &centroids)?;
        if indices.width() != index_bits(k) {
            return Err(SquishError::inconsistent(
                "codebook values",
                format!(
                    "k = {k} needs {}-bit indices, got {}",
                    index_bits(k),
                    indices.width()
                ),
            ));
        }
        if let Some(i) = (0..indices.len()).find(|&i| indices.get(i) as usize >= k) {
            return Err(SquishError::inconsistent(
                "codebook values",
                format!("index {} at {i} is not below k = {k}", indices.get(i)),
            ));
        }
        Ok(Values::Codebook(CodebookValues {
            layout,
            k,
            scope,
            centroids,
            indices,
            prepacked: Default::default(),
        }))
    }

    /// Short name of the encoding, for reports and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Values::F32(_) => "f32",
            Values::Int8(_) => "int8",
            Values::Int4(_) => "int4",
            Values::Binary(_) => "binary",
            Values::Ternary(_) => "ternary",
            Values::Codebook(_) => "codebook",
        }
    }

    /// The row layout of the values.
    pub fn layout(&self) -> &RowLayout {
        match self {
            Values::F32(v) => &v.layout,
            Values::Int8(v) => &v.layout,
            Values::Int4(v) => &v.layout,
            Values::Binary(v) => &v.layout,
            Values::Ternary(v) => &v.layout,
            Values::Codebook(v) => &v.layout,
        }
    }

    /// The kernels' kept copies of these values.
    pub(crate) fn prepacked(&self) -> &Prepacked {
        match self {
            Values::F32(v) => &v.prepacked,
            Values::Int8(v) => &v.prepacked,
            Values::Int4(v) => &v.prepacked,
            Values::Binary(v) => &v.prepacked,
            Values::Ternary(v) => &v.prepacked,
            Values::Codebook(v) => &v.prepacked,
        }
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.layout().total()
    }

    /// True when no values are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes stored row `i` into `out` (length = that row's length).
    pub fn decode_row(&self, i: usize, out: &mut [f32]) {
        match self {
            Values::F32(v) => out.copy_from_slice(&v.data[v.layout.range(i)]),
            Values::Int8(v) => v.decode_row(i, out),
            Values::Int4(v) => v.decode_row(i, out),
            Values::Binary(v) => v.decode_row(i, out),
            Values::Ternary(v) => v.decode_row(i, out),
            Values::Codebook(v) => v.decode_row(i, out),
        }
    }

    /// All values decoded to f32, in layout order.
    pub fn decode(&self) -> Vec<f32> {
        let layout = self.layout();
        let mut out = vec![0.0; layout.total()];
        for i in 0..layout.rows() {
            let r = layout.range(i);
            self.decode_row(i, &mut out[r]);
        }
        out
    }

    /// Adds this encoding's components to a storage report.
    pub(crate) fn account(&self, report: &mut StorageReport) {
        match self {
            Values::F32(v) => report.add(Component::Values, v.data.len() * 4),
            Values::Int8(v) => {
                report.add(Component::Values, v.codes.len());
                let (s, z) = v.params.bytes();
                report.add(Component::Scales, s);
                report.add(Component::ZeroPoints, z);
            }
            Values::Int4(v) => {
                report.add(Component::Values, v.codes.bytes().len());
                let (s, z) = v.params.bytes();
                report.add(Component::Scales, s);
                report.add(Component::ZeroPoints, z);
            }
            Values::Binary(v) => {
                report.add(Component::Values, v.signs.bytes().len());
                report.add(Component::Scales, v.scales.len() * 4);
            }
            Values::Ternary(v) => {
                report.add(Component::Values, v.codes.bytes().len());
                report.add(Component::Scales, v.scales.len() * 4);
            }
            Values::Codebook(v) => {
                report.add(Component::Values, v.indices.bytes().len());
                report.add(Component::Codebook, v.centroids.len() * 4);
            }
        }
    }
}
