//! A [`CompressedMatrix`] as typed component tensors plus a [`MatrixDesc`],
//! and back through the foundation's validating constructors.

use safetensors::{Dtype, SafeTensors};

use super::atomic::{Named, OwnedView};
use super::description::{GranularityDesc, MatrixDesc, QuantDesc, StructureDesc, ValuesDesc};
use super::FileError;
use crate::matrix::{
    index_bits, CodebookScope, ColIndices, CompressedMatrix, Csr, Granularity, KeptRows,
    PackedBits, QuantParams, RowLayout, Structure, Values, NM,
};

/// Largest logical dimension a container may declare (CSR and kept-row ids are u32).
pub(crate) const MAX_DIM: usize = u32::MAX as usize;

fn push(out: &mut Vec<Named>, name: String, dtype: Dtype, bytes: Vec<u8>) {
    let elems = bytes.len() * 8 / dtype.bitsize();
    out.push((
        name,
        OwnedView {
            dtype,
            shape: vec![elems],
            bytes,
        },
    ));
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn quant_desc(p: &QuantParams) -> QuantDesc {
    QuantDesc {
        granularity: match p.granularity() {
            Granularity::PerTensor => GranularityDesc::PerTensor,
            Granularity::PerRow => GranularityDesc::PerRow,
            Granularity::PerGroup(size) => GranularityDesc::PerGroup { size },
        },
        zero_points: p.zero_points().is_some(),
    }
}

fn push_quant(out: &mut Vec<Named>, prefix: &str, p: &QuantParams) {
    push(
        out,
        format!("{prefix}scales"),
        Dtype::F32,
        f32_bytes(p.scales()),
    );
    if let Some(z) = p.zero_points() {
        push(out, format!("{prefix}zero_points"), Dtype::I8, i8_bytes(z));
    }
}

/// Appends the components of `m` (names start with `prefix`) and returns
/// its description. The order here is the checksum order: structure
/// components, then value components; factor `a` before factor `b`.
pub(crate) fn encode(m: &CompressedMatrix, prefix: &str, out: &mut Vec<Named>) -> MatrixDesc {
    let structure = match m.structure() {
        Structure::Dense => StructureDesc::Dense,
        Structure::Csr(c) => {
            push(
                out,
                format!("{prefix}row_ptr"),
                Dtype::U32,
                u32_bytes(c.row_ptr()),
            );
            let index_bits = match c.col_idx() {
                ColIndices::U16(v) => {
                    let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    push(out, format!("{prefix}col_idx"), Dtype::U16, b);
                    16
                }
                ColIndices::U32(v) => {
                    push(out, format!("{prefix}col_idx"), Dtype::U32, u32_bytes(v));
                    32
                }
            };
            StructureDesc::Csr { index_bits }
        }
        Structure::NM(s) => {
            push(
                out,
                format!("{prefix}positions"),
                Dtype::U8,
                s.positions().bytes().to_vec(),
            );
            StructureDesc::NM { n: s.n(), m: s.m() }
        }
        Structure::KeptRows(k) => {
            push(
                out,
                format!("{prefix}kept_rows"),
                Dtype::U32,
                u32_bytes(k.rows()),
            );
            StructureDesc::KeptRows
        }
        Structure::LowRank(lr) => StructureDesc::LowRank {
            a: Box::new(encode(lr.a(), &format!("{prefix}a."), out)),
            b: Box::new(encode(lr.b(), &format!("{prefix}b."), out)),
        },
    };
    let values = m.values().map(|v| {
        let name = format!("{prefix}values");
        match v {
            Values::F32(x) => {
                push(out, name, Dtype::F32, f32_bytes(x.data()));
                ValuesDesc::F32
            }
            Values::Int8(x) => {
                push(out, name, Dtype::I8, i8_bytes(x.codes()));
                push_quant(out, prefix, x.quant_params());
                ValuesDesc::Int8 {
                    quant: quant_desc(x.quant_params()),
                }
            }
            Values::Int4(x) => {
                push(out, name, Dtype::U8, x.codes().bytes().to_vec());
                push_quant(out, prefix, x.quant_params());
                ValuesDesc::Int4 {
                    quant: quant_desc(x.quant_params()),
                }
            }
            Values::Binary(x) => {
                push(out, name, Dtype::U8, x.signs().bytes().to_vec());
                push(
                    out,
                    format!("{prefix}scales"),
                    Dtype::F32,
                    f32_bytes(x.scales()),
                );
                ValuesDesc::Binary
            }
            Values::Ternary(x) => {
                push(out, name, Dtype::U8, x.codes().bytes().to_vec());
                push(
                    out,
                    format!("{prefix}scales"),
                    Dtype::F32,
                    f32_bytes(x.scales()),
                );
                ValuesDesc::Ternary
            }
            Values::Codebook(x) => {
                push(out, name, Dtype::U8, x.indices().bytes().to_vec());
                push(
                    out,
                    format!("{prefix}centroids"),
                    Dtype::F32,
                    f32_bytes(x.centroids()),
                );
                ValuesDesc::Codebook {
                    k: x.k(),
                    per_row: x.scope() == CodebookScope::PerRow,
                }
            }
        }
    });
    MatrixDesc {
        rows: m.rows(),
        cols: m.cols(),
        structure,
        values,
    }
}

/// Component names of `desc` with their dtypes, in [`encode`]'s order.
pub(crate) fn components(desc: &MatrixDesc, prefix: &str, out: &mut Vec<(String, Dtype)>) {
    let mut add = |part: &str, dtype| out.push((format!("{prefix}{part}"), dtype));
    match &desc.structure {
        StructureDesc::Dense => {}
        StructureDesc::Csr { index_bits } => {
            add("row_ptr", Dtype::U32);
            add(
                "col_idx",
                if *index_bits == 16 {
                    Dtype::U16
                } else {
                    Dtype::U32
                },
            );
        }
        StructureDesc::NM { .. } => add("positions", Dtype::U8),
        StructureDesc::KeptRows => add("kept_rows", Dtype::U32),
        StructureDesc::LowRank { a, b } => {
            components(a, &format!("{prefix}a."), out);
            components(b, &format!("{prefix}b."), out);
        }
    }
    let mut add = |part: &str, dtype| out.push((format!("{prefix}{part}"), dtype));
    let quant = |q: &QuantDesc, add: &mut dyn FnMut(&str, Dtype)| {
        add("scales", Dtype::F32);
        if q.zero_points {
            add("zero_points", Dtype::I8);
        }
    };
    match &desc.values {
        None => {}
        Some(ValuesDesc::F32) => add("values", Dtype::F32),
        Some(ValuesDesc::Int8 { quant: q }) => {
            add("values", Dtype::I8);
            quant(q, &mut add);
        }
        Some(ValuesDesc::Int4 { quant: q }) => {
            add("values", Dtype::U8);
            quant(q, &mut add);
        }
        Some(ValuesDesc::Binary | ValuesDesc::Ternary) => {
            add("values", Dtype::U8);
            add("scales", Dtype::F32);
        }
        Some(ValuesDesc::Codebook { .. }) => {
            add("values", Dtype::U8);
            add("centroids", Dtype::F32);
        }
    }
}

/// Reads components of one logical tensor out of a parsed file.
pub(crate) struct Source<'a> {
    pub st: &'a SafeTensors<'a>,
    pub tensor: &'a str,
}

impl Source<'_> {
    /// The bytes of a rank-1 component of the given dtype.
    pub(crate) fn bytes(&self, name: &str, dtype: Dtype) -> Result<&[u8], FileError> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| FileError::MissingComponent {
                tensor: self.tensor.to_string(),
                component: name.to_string(),
            })?;
        if view.dtype() != dtype || view.shape().len() != 1 {
            return Err(FileError::component(
                self.tensor,
                name,
                format!(
                    "must be a 1-D {dtype} tensor, found {} of shape {:?}",
                    view.dtype(),
                    view.shape()
                ),
            ));
        }
        Ok(view.data())
    }

    fn f32s(&self, name: &str) -> Result<Vec<f32>, FileError> {
        Ok(self
            .bytes(name, Dtype::F32)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn u32s(&self, name: &str) -> Result<Vec<u32>, FileError> {
        Ok(self
            .bytes(name, Dtype::U32)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn u16s(&self, name: &str) -> Result<Vec<u16>, FileError> {
        Ok(self
            .bytes(name, Dtype::U16)?
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect())
    }

    fn i8s(&self, name: &str) -> Result<Vec<i8>, FileError> {
        Ok(self
            .bytes(name, Dtype::I8)?
            .iter()
            .map(|&b| b as i8)
            .collect())
    }

    fn packed(&self, name: &str, width: u8, len: usize) -> Result<PackedBits, FileError> {
        let bytes = self.bytes(name, Dtype::U8)?;
        PackedBits::from_bytes(width, len, bytes.to_vec()).map_err(|e| self.invalid(e))
    }

    fn invalid(&self, e: crate::SquishError) -> FileError {
        FileError::Invalid {
            tensor: self.tensor.to_string(),
            source: Box::new(e),
        }
    }

    fn too_large(&self, rows: usize, cols: usize, detail: &str) -> FileError {
        FileError::TooLarge {
            tensor: self.tensor.to_string(),
            shape: format!("{rows}×{cols}"),
            detail: detail.to_string(),
        }
    }

    fn count(&self, name: &str, found: usize, expected: usize) -> Result<(), FileError> {
        if found != expected {
            return Err(FileError::component(
                self.tensor,
                name,
                format!("holds {found} elements; the description needs {expected}"),
            ));
        }
        Ok(())
    }

    fn quant(
        &self,
        prefix: &str,
        q: &QuantDesc,
        layout: &RowLayout,
    ) -> Result<QuantParams, FileError> {
        let g = match q.granularity {
            GranularityDesc::PerTensor => Granularity::PerTensor,
            GranularityDesc::PerRow => Granularity::PerRow,
            GranularityDesc::PerGroup { size } => Granularity::PerGroup(size),
        };
        let scales = self.f32s(&format!("{prefix}scales"))?;
        let zp = if q.zero_points {
            Some(self.i8s(&format!("{prefix}zero_points"))?)
        } else {
            None
        };
        QuantParams::new(layout, g, scales, zp).map_err(|e| self.invalid(e))
    }

    /// Rebuilds the matrix `desc` describes from components named `prefix…`.
    /// Every count is checked against the bytes present before anything of
    /// that size is allocated.
    pub(crate) fn decode(
        &self,
        desc: &MatrixDesc,
        prefix: &str,
    ) -> Result<CompressedMatrix, FileError> {
        let (rows, cols) = (desc.rows, desc.cols);
        if rows == 0 || cols == 0 {
            return Err(self.invalid(crate::SquishError::Empty {
                what: "stored matrix",
                rows,
                cols,
            }));
        }
        if rows > MAX_DIM || cols > MAX_DIM {
            return Err(self.too_large(rows, cols, "dimensions are limited to 2^32 - 1"));
        }
        let elements = rows
            .checked_mul(cols)
            .ok_or_else(|| self.too_large(rows, cols, "the element count overflows"))?;
        let name = |part: &str| format!("{prefix}{part}");
        let structure = match &desc.structure {
            StructureDesc::LowRank { a, b } => {
                if desc.values.is_some() {
                    return Err(FileError::description(format!(
                        "tensor `{}`: a low-rank matrix keeps its values in its factors",
                        self.tensor
                    )));
                }
                let a = self.decode(a, &name("a."))?;
                let b = self.decode(b, &name("b."))?;
                if a.rows() != rows || b.cols() != cols {
                    return Err(self.invalid(crate::SquishError::shape(
                        "low-rank factors",
                        format!("A with {rows} rows and B with {cols} columns"),
                        format!("{}×{} and {}×{}", a.rows(), a.cols(), b.rows(), b.cols()),
                    )));
                }
                return CompressedMatrix::low_rank(a, b).map_err(|e| self.invalid(e));
            }
            StructureDesc::Dense => Structure::Dense,
            StructureDesc::Csr { index_bits } => {
                let row_ptr = self.u32s(&name("row_ptr"))?;
                self.count(&name("row_ptr"), row_ptr.len(), rows + 1)?;
                let col_idx = match index_bits {
                    16 => ColIndices::U16(self.u16s(&name("col_idx"))?),
                    32 => ColIndices::U32(self.u32s(&name("col_idx"))?),
                    b => {
                        return Err(FileError::description(format!(
                            "tensor `{}`: CSR index_bits must be 16 or 32, got {b}",
                            self.tensor
                        )))
                    }
                };
                Structure::Csr(Csr::new(rows, cols, row_ptr, col_idx).map_err(|e| self.invalid(e))?)
            }
            StructureDesc::NM { n, m } => {
                let (n, m) = (*n, *m);
                if n == 0 || n >= m || m > 1 << 16 || !cols.is_multiple_of(m) {
                    return Err(self.invalid(crate::SquishError::invalid(
                        "n:m",
                        format!("{n}:{m}"),
                        format!("needs 0 < N < M ≤ 65536 with M dividing {cols}"),
                    )));
                }
                let count = rows * (cols / m * n); // ≤ rows·cols, no overflow
                let positions = self.packed(&name("positions"), index_bits(m), count)?;
                Structure::NM(NM::new(rows, cols, n, m, positions).map_err(|e| self.invalid(e))?)
            }
            StructureDesc::KeptRows => {
                let kept = self.u32s(&name("kept_rows"))?;
                Structure::KeptRows(KeptRows::new(rows, kept).map_err(|e| self.invalid(e))?)
            }
        };
        let layout = structure
            .value_layout(rows, cols)
            .expect("only low rank has no value layout");
        let count = match &layout {
            RowLayout::Uniform { rows, len } => rows * len, // ≤ elements
            RowLayout::Ragged(_) => layout.total(),
        };
        debug_assert!(count <= elements);
        let vname = name("values");
        let values = match &desc.values {
            None => {
                return Err(FileError::description(format!(
                    "tensor `{}`: a {} matrix needs a `values` encoding",
                    self.tensor,
                    structure.kind()
                )))
            }
            Some(ValuesDesc::F32) => {
                let data = self.f32s(&vname)?;
                self.count(&vname, data.len(), count)?;
                Values::f32(layout, data)
            }
            Some(ValuesDesc::Int8 { quant }) => {
                let codes = self.i8s(&vname)?;
                self.count(&vname, codes.len(), count)?;
                let params = self.quant(prefix, quant, &layout)?;
                Values::int8(layout, codes, params)
            }
            Some(ValuesDesc::Int4 { quant }) => {
                let codes = self.packed(&vname, 4, count)?;
                let params = self.quant(prefix, quant, &layout)?;
                Values::int4(layout, codes, params)
            }
            Some(ValuesDesc::Binary) => {
                let signs = self.packed(&vname, 1, count)?;
                let scales = self.f32s(&name("scales"))?;
                Values::binary(layout, signs, scales)
            }
            Some(ValuesDesc::Ternary) => {
                let codes = self.packed(&vname, 2, count)?;
                let scales = self.f32s(&name("scales"))?;
                Values::ternary(layout, codes, scales)
            }
            Some(ValuesDesc::Codebook { k, per_row }) => {
                if !(2..=1 << 16).contains(k) {
                    return Err(self.invalid(crate::SquishError::invalid(
                        "k",
                        k,
                        "codebooks hold 2..=65536 centroids",
                    )));
                }
                let indices = self.packed(&vname, index_bits(*k), count)?;
                let centroids = self.f32s(&name("centroids"))?;
                let scope = if *per_row {
                    CodebookScope::PerRow
                } else {
                    CodebookScope::PerTensor
                };
                Values::codebook(layout, *k, scope, centroids, indices)
            }
        }
        .map_err(|e| self.invalid(e))?;
        CompressedMatrix::from_parts(rows, cols, structure, values).map_err(|e| self.invalid(e))
    }
}
