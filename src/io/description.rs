//! The versioned JSON description a container keeps in its header metadata.
//!
//! Structures and encodings are internally tagged enums (`"kind": "csr"`),
//! so a later encoding is one more variant; readers reject tags and fields
//! they do not know (a file from a newer writer fails loudly, never decodes
//! wrongly). Incompatible changes bump [`FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

/// Metadata key marking a squish container; its value is the format version.
pub const VERSION_KEY: &str = "squish.version";
/// Metadata key holding the JSON [`ContainerDesc`].
pub const DESCRIPTION_KEY: &str = "squish.description";
/// The newest container format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// The whole container: one entry per logical tensor, in model order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerDesc {
    /// The logical tensors.
    pub tensors: Vec<EntryDesc>,
}

/// One logical tensor of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDesc {
    /// The tensor's name in the original model.
    pub name: String,
    /// Its dtype in the original model (safetensors spelling, e.g. "BF16").
    pub dtype: String,
    /// Its shape in the original model (a conv kernel keeps its 4 axes).
    pub shape: Vec<usize>,
    /// CRC-32 of the bytes of every component, in description order.
    pub crc32: u32,
    /// How it was compressed (pass names), for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The compressed matrix; absent for tensors stored as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<MatrixDesc>,
}

/// A compressed matrix: its logical shape, structure and encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixDesc {
    /// Logical rows (outputs).
    pub rows: usize,
    /// Logical columns (inputs).
    pub cols: usize,
    /// Where the values sit.
    pub structure: StructureDesc,
    /// How the values are written; absent for low rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ValuesDesc>,
}

/// The structure of a matrix. Components: `row_ptr` (U32) and `col_idx`
/// (U16/U32) for CSR, `positions` (U8, packed) for N:M, `kept_rows` (U32).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StructureDesc {
    /// Every value.
    Dense,
    /// Compressed sparse rows with 16- or 32-bit column indices.
    Csr {
        /// 16 or 32.
        index_bits: u8,
    },
    /// N of every M consecutive columns.
    #[serde(rename = "n_m")]
    NM {
        /// Values kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// Only the listed rows are stored.
    KeptRows,
    /// Two factors, each a matrix with its own prefix (`a.`, `b.`).
    LowRank {
        /// The left factor `[out, r]`.
        a: Box<MatrixDesc>,
        /// The right factor `[r, in]`.
        b: Box<MatrixDesc>,
    },
}

/// The value encoding of a matrix. Components: `values` (F32, I8, or U8
/// packed bits), `scales` (F32), `zero_points` (I8), `centroids` (F32).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValuesDesc {
    /// f32 values.
    F32,
    /// int8 codes.
    Int8 {
        /// Scale granularity and zero-points.
        quant: QuantDesc,
    },
    /// int4 codes, two a byte.
    Int4 {
        /// Scale granularity and zero-points.
        quant: QuantDesc,
    },
    /// Sign bits, a scale per row.
    Binary,
    /// 2-bit ternary codes, a scale per row.
    Ternary,
    /// Packed codebook indices and centroids.
    Codebook {
        /// Centroids per codebook.
        k: usize,
        /// One codebook, or one per row.
        per_row: bool,
    },
}

/// Quantization parameters' shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantDesc {
    /// Which values share a scale.
    pub granularity: GranularityDesc,
    /// Whether a `zero_points` component is present.
    pub zero_points: bool,
}

/// [`Granularity`](crate::matrix::Granularity) in the description.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GranularityDesc {
    /// One scale.
    PerTensor,
    /// One scale per stored row.
    PerRow,
    /// One scale per run of `size` values.
    PerGroup {
        /// Values per group.
        size: usize,
    },
}
